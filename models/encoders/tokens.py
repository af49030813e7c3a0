"""Token-vector encoders for the multi-vector (late-interaction) channel, and the one a channel config asks for.

* :class:`HFTokenEncoder` - the last hidden states of a transformers encoder (by default
  multilingual-e5-small, from :mod:`xlir.models.registry`), with the model's query/passage prompts as markers
  and optionally a trained :class:`~xlir.models.encoders.heads.ColBERTHead` projecting them (e.g. 384 -> 128).
  Untrained (no head), the raw mE5 token states already beat the same model's pooled embedding on
  cross-lingual XQuAD.
* :class:`~xlir.models.encoders.colbert_xm.ColBERTXMEncoder` - a ColBERT-XM checkpoint with per-text
  language adapters.

:func:`open_token_encoder` picks one from the channel's config. The protocol they share and the model cache
are in :mod:`xlir.models.encoders.token_base`; heads (shipped in ``xlir/data/heads``) in
:mod:`xlir.models.encoders.heads`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xlir.models.devices import resolve_device
from xlir.models.encoders.colbert_xm import ColBERTXMEncoder
from xlir.models.encoders.token_base import (
    TokenEncoder,
    TokenEncoderError,
    check_texts,
    load_hf_model,
    normalize_rows,
)
from xlir.models.registry import resolve_model

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def _folder_prompts(path: Path) -> dict[str, str]:
    config = path / "config_sentence_transformers.json"
    if not config.is_file():
        return {}
    prompts = json.loads(config.read_text("utf-8")).get("prompts") or {}
    found: dict[str, str] = {}
    if prompts.get("query"):
        found["query"] = prompts["query"]
    for name in ("passage", "document", "corpus"):
        if prompts.get(name):
            found["passage"] = prompts[name]
            break
    return found


class HFTokenEncoder:
    """Token vectors from a transformers encoder's last hidden states, optionally through a trained head.

    ``model``: a name :func:`xlir.models.registry.resolve_model` knows (default multilingual-e5-small), a hub id
    in the local cache, or a folder. ``head``: None (raw states, ``dim`` = hidden size) or a head name/folder
    (:func:`~xlir.models.encoders.heads.resolve_head`). ``prompts``: the query/passage prefixes; None = the model folder's own (e5:
    ``"query: "`` / ``"passage: "``). ``query_augment``: pad queries with mask tokens up to this many tokens
    (ColBERT's query augmentation; 0 = off; a head records the value it was trained with).
    """

    def __init__(
        self,
        model: str = "multilingual-e5-small",
        head: str | None = None,
        *,
        batch_size: int = 32,
        query_max_length: int = 64,
        doc_max_length: int = 512,
        prompts: dict[str, str] | None = None,
        query_augment: int | None = None,
        device: str = "auto",
    ) -> None:
        import torch

        from xlir.models.encoders.heads import default_head, load_head

        if batch_size < 1 or query_max_length < 4 or doc_max_length < 4:
            raise TokenEncoderError(
                "batch_size must be >= 1 and query/doc max lengths >= 4; fix the multivector config."
            )
        self.model_name = model
        self.path = Path(resolve_model(model))
        if self.path.is_file():
            raise TokenEncoderError(
                f"{model!r} resolves to the file {self.path}, not a transformers model folder; the multivector "
                "channel needs a model with token states (e.g. multilingual-e5-small)."
            )
        self.device = resolve_device(device)
        self.tokenizer, self.model = load_hf_model(str(self.path), self.device)
        hidden = int(self.model.config.hidden_size)
        limit = int(getattr(self.model.config, "max_position_embeddings", 512) or 512)
        if getattr(self.model.config, "model_type", "") in ("xlm-roberta", "roberta", "camembert", "xmod"):
            limit -= 2
        self.batch_size = int(batch_size)
        self.query_max_length = min(int(query_max_length), limit)
        self.doc_max_length = min(int(doc_max_length), limit)
        if head == "auto":
            head = default_head(model)
        self.head_name = head
        self.head = None
        head_info: dict[str, Any] = {}
        if head:
            self.head, head_info = load_head(head)
            if self.head.in_dim != hidden:
                raise TokenEncoderError(
                    f"head {head!r} expects {self.head.in_dim}-d token states but {model!r} makes {hidden}-d "
                    "ones: it was trained on another backbone."
                )
            if head_info.get("backbone") and head_info["backbone"] != model:
                log.warning("head %r was trained on %r, used here on %r", head, head_info["backbone"], model)
            self.head.to(self.device)
        self.prompts = dict(prompts) if prompts is not None else (_folder_prompts(self.path) or {})
        if query_augment is None:
            query_augment = int(head_info.get("query_augment", 0))
        self.query_augment = int(query_augment)
        if self.query_augment and self.tokenizer.mask_token_id is None:
            raise TokenEncoderError(f"query_augment needs a mask token, and {model!r}'s tokenizer has none.")
        self.dim: int = int(self.head.out_dim) if self.head is not None else hidden
        self.hidden_size = hidden
        self._torch = torch

    def describe(self) -> dict[str, Any]:
        """What the manifest records to rebuild this encoder at search time."""
        return {
            "encoder": "hf",
            "model": self.model_name,
            "model_path": str(self.path),
            "head": self.head_name,
            "dim": self.dim,
            "prompts": self.prompts,
            "query_augment": self.query_augment,
            "query_max_length": self.query_max_length,
            "doc_max_length": self.doc_max_length,
        }

    def encode_queries(
        self, texts: Sequence[str], langs: Sequence[str | None] | None = None
    ) -> list[np.ndarray]:
        """Query token vectors (the query prompt prepended; mask-token augmentation when configured)."""
        states = self.token_states(texts, is_query=True)
        return self.project(states)

    def encode_documents(
        self, texts: Sequence[str], langs: Sequence[str | None] | None = None
    ) -> list[np.ndarray]:
        """Document token vectors (the passage prompt prepended)."""
        return self.project(self.token_states(texts, is_query=False))

    def project(self, states: list[np.ndarray]) -> list[np.ndarray]:
        """Apply the head (if any) to raw token states and L2-normalize each row."""
        torch = self._torch
        out: list[np.ndarray] = []
        for matrix in states:
            if self.head is not None:
                with torch.inference_mode():
                    t = torch.from_numpy(np.asarray(matrix, dtype=np.float32)).to(self.device)
                    matrix = self.head(t).float().cpu().numpy()
            out.append(normalize_rows(matrix))
        return out

    def token_states(self, texts: Sequence[str], is_query: bool) -> list[np.ndarray]:
        """Raw last hidden states (float32, not normalized) of each text's kept tokens, in order.

        Kept: every token but special ones (CLS, SEP, padding); augmentation mask tokens of queries are kept.
        """
        texts = check_texts(texts)
        if not texts:
            return []
        torch = self._torch
        prefix = self.prompts.get("query" if is_query else "passage", "")
        max_length = self.query_max_length if is_query else self.doc_max_length
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        result: list[np.ndarray | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [prefix + texts[i] for i in chunk],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_special_tokens_mask=True,
                return_tensors="pt",
            )
            special = batch.pop("special_tokens_mask").bool()
            keep = ~special & batch["attention_mask"].bool()
            if is_query and self.query_augment:
                batch, keep = self._augment(batch, keep)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state.float().cpu()
            for row, i in enumerate(chunk):
                result[i] = hidden[row][keep[row]].numpy()
        return [r if r is not None else np.zeros((0, self.hidden_size), np.float32) for r in result]

    def _augment(self, batch: Any, keep: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Append mask tokens so each query has at least ``query_augment`` tokens (ColBERT's augmentation)."""
        torch = self._torch
        ids, attention = batch["input_ids"], batch["attention_mask"]
        width = max(int(ids.shape[1]), self.query_augment)
        pad = self.tokenizer.pad_token_id
        new_ids = torch.full((ids.shape[0], width), pad, dtype=ids.dtype)
        new_att = torch.zeros((ids.shape[0], width), dtype=attention.dtype)
        new_keep = torch.zeros((ids.shape[0], width), dtype=torch.bool)
        new_ids[:, : ids.shape[1]] = ids
        new_att[:, : ids.shape[1]] = attention
        new_keep[:, : ids.shape[1]] = keep
        lengths = attention.sum(1)
        for row, length in enumerate(lengths.tolist()):
            if length < self.query_augment:
                new_ids[row, length : self.query_augment] = self.tokenizer.mask_token_id
                new_att[row, length : self.query_augment] = 1
                new_keep[row, length : self.query_augment] = True
        out = {"input_ids": new_ids, "attention_mask": new_att}
        if "token_type_ids" in batch:
            out["token_type_ids"] = torch.zeros_like(new_ids)
        return out, new_keep


def open_token_encoder(config: dict[str, Any], device: str | None = None) -> TokenEncoder:
    """The token encoder a multivector config (or the manifest details) asks for.

    ``encoder``: ``"hf"`` (default; ``model`` + optional ``head``, ``"auto"`` = the shipped head of the default
    model, see :func:`~xlir.models.encoders.heads.default_head`) or ``"colbert-xm"`` (``model`` a ColBERT-XM
    folder). ``"auto"`` picks ``colbert-xm`` when the model folder is an X-MOD model.
    """
    from xlir.models.encoders.heads import default_head

    kind = str(config.get("encoder") or "auto")
    model = str(config.get("model") or "multilingual-e5-small")
    device = device or str(config.get("device") or "auto")
    batch_size = int(config.get("batch_size", 32))
    if kind == "auto":
        kind = "colbert-xm" if _is_xmod(model) else "hf"
    if kind == "colbert-xm":
        return ColBERTXMEncoder(
            model,
            batch_size=batch_size,
            query_max_length=config.get("query_max_length"),
            doc_max_length=config.get("doc_max_length"),
            device=device,
        )
    if kind != "hf":
        raise TokenEncoderError(f"unknown multivector encoder {kind!r}; choose 'auto', 'hf' or 'colbert-xm'.")
    head = default_head(model) if config.get("head") == "auto" else config.get("head")
    return HFTokenEncoder(
        model,
        head=str(head) if head else None,
        batch_size=batch_size,
        query_max_length=int(config.get("query_max_length") or 64),
        doc_max_length=int(config.get("doc_max_length") or 512),
        prompts=config.get("prompts"),
        query_augment=config.get("query_augment"),
        device=device,
    )


def _is_xmod(model: str) -> bool:
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        return False
    try:
        return json.loads((path / "config.json").read_text("utf-8")).get("model_type") == "xmod"
    except (OSError, ValueError):
        return False
