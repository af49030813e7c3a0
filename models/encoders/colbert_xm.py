"""ColBERT-XM token encoder: an X-MOD backbone whose language adapter is chosen per text, plus ColBERT's
``linear`` projection (colbert-ai checkpoint layout).

Each text's adapter comes from its given language, else language identification, falling back to English;
ColBERT's ``[Q]``/``[D]`` markers and query augmentation with mask tokens are applied as colbert-ai does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xlir.models.devices import resolve_device
from xlir.models.encoders.token_base import TokenEncoderError, check_texts, load_hf_model, normalize_rows
from xlir.models.languages import LanguageError, detect_language
from xlir.models.registry import resolve_model

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: X-MOD adapter used when a text's language has none.
FALLBACK_XMOD_LANGUAGE = "en_XX"


def xmod_language(code: str | None, available: Sequence[str], fallback: str = FALLBACK_XMOD_LANGUAGE) -> str:
    """The X-MOD adapter name for an ISO 639-1 code (``"de"`` -> ``"de_DE"``), else ``fallback``.

    ``available`` is the model's ``config.languages``; matching is on the part before ``_``, and an exact
    adapter name is accepted as is. Falls back to English (``en_XX``), or the first adapter when the model
    has no English one.
    """
    if code:
        if code in available:
            return code
        base = code.split("-")[0].split("_")[0].lower()
        for name in available:
            if name.split("_")[0].lower() == base:
                return name
    if fallback in available:
        return fallback
    english = [n for n in available if n.lower().startswith("en")]
    return english[0] if english else available[0]


class ColBERTXMEncoder:
    """A ColBERT-XM checkpoint: X-MOD backbone + ColBERT ``linear`` projection, per-text language adapters.

    ``model``: a local folder or a hub id in the local cache, in colbert-ai's layout (``config.json`` of an
    X-MOD model, weights with the backbone under ``roberta.`` and the projection as ``linear.weight``; an
    ``artifact.metadata`` JSON, when present, gives ``query_maxlen``/``doc_maxlen``/markers). Each text's
    adapter comes from ``langs`` where given, else from language identification, falling back to English.
    """

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 32,
        query_max_length: int | None = None,
        doc_max_length: int | None = None,
        device: str = "auto",
    ) -> None:
        import torch

        self.model_name = model
        self.path = Path(resolve_model(model))
        config_file = self.path / "config.json"
        if not config_file.is_file():
            raise TokenEncoderError(f"{self.path} has no config.json: it is not a ColBERT-XM model folder.")
        if json.loads(config_file.read_text("utf-8")).get("model_type") != "xmod":
            raise TokenEncoderError(
                f"{model!r} is not an X-MOD model (config model_type is not 'xmod'); use encoder 'hf' for it."
            )
        self.device = resolve_device(device)
        self.tokenizer, self.model = load_hf_model(str(self.path), self.device, kind="xmod")
        meta = self._metadata()
        self.query_max_length = int(query_max_length or meta.get("query_maxlen", 32))
        self.doc_max_length = int(doc_max_length or meta.get("doc_maxlen", 300))
        self.batch_size = int(batch_size)
        self.attend_to_mask = bool(meta.get("attend_to_mask_tokens", False))
        weight = self._linear_weight()
        self.linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
        self.linear.to(self.device).eval()
        self.dim: int = int(weight.shape[0])
        self.languages: list[str] = list(getattr(self.model.config, "languages", []) or [])
        if not self.languages:
            raise TokenEncoderError(f"{model!r} lists no X-MOD languages in its config; it cannot be used.")
        unk = self.tokenizer.unk_token_id
        self.q_marker = self._marker(meta.get("query_token_id", "[unused0]"), unk)
        self.d_marker = self._marker(meta.get("doc_token_id", "[unused1]"), unk)
        self._torch = torch

    def _metadata(self) -> dict[str, Any]:
        path = self.path / "artifact.metadata"
        if path.is_file():
            try:
                return dict(json.loads(path.read_text("utf-8")))
            except (ValueError, TypeError):
                log.warning("%s is not valid JSON; using ColBERT's default settings", path)
        return {}

    def _marker(self, token: str, unk: int | None) -> int:
        marker = self.tokenizer.convert_tokens_to_ids(token)
        return int(marker if marker is not None else unk)

    def _linear_weight(self) -> torch.Tensor:
        import torch

        st = self.path / "model.safetensors"
        if st.is_file():
            from safetensors import safe_open

            with safe_open(str(st), framework="pt") as f:
                if "linear.weight" in f.keys():  # noqa: SIM118 - safe_open has no __contains__
                    return f.get_tensor("linear.weight").float()
        binary = self.path / "pytorch_model.bin"
        if binary.is_file():
            state = torch.load(str(binary), map_location="cpu", weights_only=True)
            if "linear.weight" in state:
                return state["linear.weight"].float()
        raise TokenEncoderError(
            f"{self.path} holds no ColBERT projection 'linear.weight'; is it a ColBERT(-XM) checkpoint?"
        )

    def describe(self) -> dict[str, Any]:
        """What the manifest records to rebuild this encoder at search time."""
        return {
            "encoder": "colbert-xm",
            "model": self.model_name,
            "model_path": str(self.path),
            "dim": self.dim,
            "languages": self.languages,
            "query_max_length": self.query_max_length,
            "doc_max_length": self.doc_max_length,
        }

    def adapters_for(self, texts: Sequence[str], langs: Sequence[str | None] | None) -> list[str]:
        """The X-MOD adapter for each text: its given language, else the detected one, else English."""
        chosen: list[str] = []
        for i, text in enumerate(texts):
            code = langs[i] if langs is not None and i < len(langs) else None
            if not code:
                try:
                    code = detect_language(text)[0]
                except LanguageError:
                    code = None
            chosen.append(xmod_language(code, self.languages))
        return chosen

    def encode_queries(
        self, texts: Sequence[str], langs: Sequence[str | None] | None = None
    ) -> list[np.ndarray]:
        """Query vectors: ``[CLS] [Q] text [SEP]`` padded with mask tokens to ``query_max_length``."""
        return self._encode(check_texts(texts), langs, is_query=True)

    def encode_documents(
        self, texts: Sequence[str], langs: Sequence[str | None] | None = None
    ) -> list[np.ndarray]:
        """Document vectors: ``[CLS] [D] text [SEP]`` (every non-padding token, as colbert-ai keeps them)."""
        return self._encode(check_texts(texts), langs, is_query=False)

    def _encode(
        self, texts: list[str], langs: Sequence[str | None] | None, is_query: bool
    ) -> list[np.ndarray]:
        torch = self._torch
        if not texts:
            return []
        adapters = self.adapters_for(texts, langs)
        max_length = (self.query_max_length if is_query else self.doc_max_length) - 1
        out: list[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            part = texts[start : start + self.batch_size]
            enc = self.tokenizer(part, truncation=True, max_length=max_length)
            marker = self.q_marker if is_query else self.d_marker
            # colbert-ai keeps every non-padding token, [CLS], the marker and [SEP] included.
            rows = [([ids[0], marker, *ids[1:]], [True] * (len(ids) + 1)) for ids in enc["input_ids"]]
            width = max(len(ids) for ids, _ in rows)
            if is_query:
                width = max(width, self.query_max_length)
            pad = self.tokenizer.pad_token_id
            mask_id = self.tokenizer.mask_token_id
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            keep_t = torch.zeros((len(rows), width), dtype=torch.bool)
            for r, (ids, keep) in enumerate(rows):
                input_ids[r, : len(ids)] = torch.tensor(ids)
                attention[r, : len(ids)] = 1
                keep_t[r, : len(ids)] = torch.tensor(keep)
                if is_query and mask_id is not None and len(ids) < width:
                    input_ids[r, len(ids) :] = mask_id
                    keep_t[r, len(ids) :] = True
                    if self.attend_to_mask:
                        attention[r, len(ids) :] = 1
            lang_ids = torch.tensor([self.languages.index(a) for a in adapters[start : start + len(part)]])
            with torch.inference_mode():
                hidden = self.model(
                    input_ids=input_ids.to(self.device),
                    attention_mask=attention.to(self.device),
                    lang_ids=lang_ids.to(self.device),
                ).last_hidden_state
                projected = self.linear(hidden).float().cpu()
            for r in range(len(rows)):
                out.append(normalize_rows(projected[r][keep_t[r]].numpy()))
        return out
