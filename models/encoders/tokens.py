"""Token-vector encoders for the multi-vector (late-interaction) channel: texts in, one matrix per text out.

Every encoder returns, per text, a float32 matrix ``(tokens, dim)`` whose rows are L2-normalized token
vectors (special and padding tokens dropped), so that a query-document score is ColBERT's MaxSim: the sum
over query tokens of the best cosine with any document token.

* :class:`HFTokenEncoder` - the last hidden states of a transformers encoder (by default
  multilingual-e5-small, from :mod:`xlir.models.registry`), with the model's query/passage prompts as markers
  and optionally a trained :class:`ColBERTHead` projecting them (e.g. 384 -> 128). Untrained (no head), the
  raw mE5 token states already beat the same model's pooled embedding on cross-lingual XQuAD.
* :class:`ColBERTXMEncoder` - a ColBERT-XM checkpoint (colbert-ai layout: an X-MOD backbone plus a
  ``linear`` projection) whose language adapter is chosen per text from its language (given, or detected),
  falling back to English; ColBERT's ``[Q]``/``[D]`` markers and query augmentation with mask tokens.

:func:`open_token_encoder` picks one from the channel's config; :func:`resolve_head` finds a head by name
(those shipped in ``xlir/data/heads``) or path. Models are cached per process (path, device).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from xlir.errors import UserError
from xlir.models.paths import shipped

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Where the shipped heads live (inside the installed package).
HEADS_DIR = shipped("heads")
HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "head.json"
#: The head trained by ``xlir train colbert`` and shipped for multilingual-e5-small (384 -> 384: on XQuAD
#: cross-lingual pairs it beat raw-state MaxSim on all 7 measured pairs, mean nDCG@10 0.920 vs 0.907; a
#: 384 -> 128 head lost, 0.883). See its head.json for command, data, seed and scores.
DEFAULT_HEAD = "me5-small-colbert-en"
#: Prompts used when a model folder names none (e5's own).
E5_PROMPTS = {"query": "query: ", "passage": "passage: "}
#: X-MOD adapter used when a text's language has none.
FALLBACK_XMOD_LANGUAGE = "en_XX"

_MODELS: dict[tuple[str, str, str], Any] = {}
_LOCK = threading.Lock()


class TokenEncoderError(UserError, ValueError):
    """A token encoder cannot be built from what was given; the message says what to change."""


@runtime_checkable
class TokenEncoder(Protocol):
    """Encodes texts into per-token vectors (one ``(tokens, dim)`` float32 matrix per text, rows unit-length).

    ``langs`` gives each text's language (ISO 639-1) where known; encoders that switch language modules use
    it, others ignore it.
    """

    dim: int

    def encode_queries(
        self, texts: Sequence[str], langs: Sequence[str | None] | None = None
    ) -> list[np.ndarray]: ...

    def encode_documents(
        self, texts: Sequence[str], langs: Sequence[str | None] | None = None
    ) -> list[np.ndarray]: ...

    def describe(self) -> dict[str, Any]: ...


def _resolve_device(device: str | None) -> str:
    from xlir.models.encoders.dense import resolve_device

    return resolve_device(device or "auto")


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("encode a list of texts, not a single string (wrap it: [text]).")
    return list(texts)


# ----------------------------------------------------------------------------------------------------------
# The trained projection head
# ----------------------------------------------------------------------------------------------------------


def _head_module() -> Any:
    import torch

    class ColBERTHead(torch.nn.Module):
        """ColBERT's projection: ``Linear(in_dim, out_dim, bias=False)``, optionally plus a residual MLP.

        ``hidden`` > 0 adds ``Linear(in, hidden) -> GELU -> Linear(hidden, out)`` to the linear map.
        Outputs are not normalized here; the encoder L2-normalizes each token vector.
        """

        def __init__(self, in_dim: int, out_dim: int, hidden: int = 0) -> None:
            super().__init__()
            self.in_dim, self.out_dim, self.hidden = int(in_dim), int(out_dim), int(hidden)
            self.linear = torch.nn.Linear(self.in_dim, self.out_dim, bias=False)
            self.mlp = (
                torch.nn.Sequential(
                    torch.nn.Linear(self.in_dim, self.hidden),
                    torch.nn.GELU(),
                    torch.nn.Linear(self.hidden, self.out_dim),
                )
                if self.hidden > 0
                else None
            )
            if self.mlp is not None:
                torch.nn.init.zeros_(self.mlp[2].weight)
                torch.nn.init.zeros_(self.mlp[2].bias)

        def forward(self, states: torch.Tensor) -> torch.Tensor:
            out = self.linear(states)
            if self.mlp is not None:
                out = out + self.mlp(states)
            return out

    return ColBERTHead


def make_head(in_dim: int, out_dim: int, hidden: int = 0) -> torch.nn.Module:
    """A fresh (untrained) :class:`ColBERTHead`."""
    return _head_module()(in_dim, out_dim, hidden)


def save_head(head: torch.nn.Module, directory: Path | str, info: dict[str, Any]) -> Path:
    """Write ``head`` as ``head.safetensors`` + ``head.json`` (its shape and ``info``: provenance, settings)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(directory / HEAD_WEIGHTS))
    config = {"in_dim": head.in_dim, "out_dim": head.out_dim, "hidden": head.hidden, **info}
    (directory / HEAD_CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", "utf-8")
    return directory


def resolve_head(name: str) -> Path:
    """The folder of head ``name``: a shipped head (``xlir/data/heads/<name>``) or a local folder."""
    if not isinstance(name, str) or not name.strip():
        raise TokenEncoderError("the head name is empty: give a shipped head name or a head folder path.")
    shipped = HEADS_DIR / name
    path = shipped if (shipped / HEAD_CONFIG).is_file() else Path(name).expanduser()
    if not (path / HEAD_CONFIG).is_file() or not (path / HEAD_WEIGHTS).is_file():
        known = (
            sorted(p.name for p in HEADS_DIR.iterdir() if (p / HEAD_CONFIG).is_file())
            if HEADS_DIR.is_dir()
            else []
        )
        raise TokenEncoderError(
            f"no ColBERT head {name!r}: expected a folder with {HEAD_CONFIG} and {HEAD_WEIGHTS} "
            f"(shipped heads: {', '.join(known) or 'none'}); train one with `xlir train colbert`."
        )
    return path


def load_head(name: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load head ``name`` (see :func:`resolve_head`): the module (eval mode, CPU) and its ``head.json``."""
    from safetensors.torch import load_file

    path = resolve_head(name)
    config = json.loads((path / HEAD_CONFIG).read_text("utf-8"))
    head = make_head(int(config["in_dim"]), int(config["out_dim"]), int(config.get("hidden", 0)))
    head.load_state_dict(load_file(str(path / HEAD_WEIGHTS)))
    head.eval()
    return head, config


# ----------------------------------------------------------------------------------------------------------
# Hugging Face encoders (mE5 and any BERT/XLM-R-like encoder)
# ----------------------------------------------------------------------------------------------------------


def _load_hf(path: str, device: str, kind: str = "auto") -> tuple[Any, Any]:
    """(tokenizer, model) for a local folder, loaded once per process with the hub switched off."""
    key = (path, device, kind)
    with _LOCK:
        cached = _MODELS.get(key)
        if cached is None:
            from transformers import AutoModel, AutoTokenizer

            from xlir.models.registry import offline_hub

            with offline_hub(), _quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                if kind == "xmod":
                    from transformers import XmodModel

                    model = XmodModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)
                else:
                    try:
                        model = AutoModel.from_pretrained(
                            path, local_files_only=True, add_pooling_layer=False
                        )
                    except TypeError:  # architectures without a pooler take no such argument
                        model = AutoModel.from_pretrained(path, local_files_only=True)
            model.to(device).eval()
            cached = _MODELS[key] = (SerializedTokenizer(tokenizer), model)
            log.info("loaded token encoder %s on %s", path, device)
        return cached


class SerializedTokenizer:
    """A Hugging Face fast tokenizer shared by several encoders and threads, called one call at a time.

    A fast tokenizer keeps its truncation and padding settings in the Rust object and changes them per
    call; two threads calling it with different settings fail with ``RuntimeError: Already borrowed``.
    The server's load test hit exactly that: the sparse and multivector channels share this process-wide
    tokenizer, and concurrent searches broke. Tokenizing is cheap next to the model, so calls queue.
    Everything else (ids, vocabulary lookups) passes through unchanged.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return self._tokenizer(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hold back transformers' load-time notices (e.g. "weights of the checkpoint were not used:
    pooler.dense.*", which is intended: the pooler is dropped on purpose); errors still show."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def clear_token_model_cache() -> None:
    """Forget every cached token-encoder model."""
    with _LOCK:
        _MODELS.clear()


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
    (:func:`resolve_head`). ``prompts``: the query/passage prefixes; None = the model folder's own (e5:
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

        from xlir.models.registry import resolve_model

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
        self.device = _resolve_device(device)
        self.tokenizer, self.model = _load_hf(str(self.path), self.device)
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
        texts = _texts(texts)
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


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as float32."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------
# ColBERT-XM (X-MOD backbone, per-text language adapters)
# ----------------------------------------------------------------------------------------------------------


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

        from xlir.models.registry import resolve_model

        self.model_name = model
        self.path = Path(resolve_model(model))
        config_file = self.path / "config.json"
        if not config_file.is_file():
            raise TokenEncoderError(f"{self.path} has no config.json: it is not a ColBERT-XM model folder.")
        if json.loads(config_file.read_text("utf-8")).get("model_type") != "xmod":
            raise TokenEncoderError(
                f"{model!r} is not an X-MOD model (config model_type is not 'xmod'); use encoder 'hf' for it."
            )
        self.device = _resolve_device(device)
        self.tokenizer, self.model = _load_hf(str(self.path), self.device, kind="xmod")
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
        from xlir.models.languages import LanguageError, detect_language

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
        return self._encode(_texts(texts), langs, is_query=True)

    def encode_documents(
        self, texts: Sequence[str], langs: Sequence[str | None] | None = None
    ) -> list[np.ndarray]:
        """Document vectors: ``[CLS] [D] text [SEP]`` (every non-padding token, as colbert-ai keeps them)."""
        return self._encode(_texts(texts), langs, is_query=False)

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


# ----------------------------------------------------------------------------------------------------------
# Choosing an encoder from the channel config
# ----------------------------------------------------------------------------------------------------------


def open_token_encoder(config: dict[str, Any], device: str | None = None) -> TokenEncoder:
    """The token encoder a multivector config (or the manifest details) asks for.

    ``encoder``: ``"hf"`` (default; ``model`` + optional ``head``, ``"auto"`` = the shipped head of the default
    model, see :func:`default_head`) or ``"colbert-xm"`` (``model`` a ColBERT-XM
    folder). ``"auto"`` picks ``colbert-xm`` when the model folder is an X-MOD model.
    """
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


def default_head(model: str) -> str | None:
    """The shipped head for ``model`` (``head="auto"``): :data:`DEFAULT_HEAD` for multilingual-e5-small, else None."""
    from xlir.models.registry import DEFAULT_MODEL, _canonical

    if _canonical(model) == DEFAULT_MODEL and (HEADS_DIR / DEFAULT_HEAD / HEAD_CONFIG).is_file():
        return DEFAULT_HEAD
    return None


def _is_xmod(model: str) -> bool:
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        return False
    try:
        return json.loads((path / "config.json").read_text("utf-8")).get("model_type") == "xmod"
    except (OSError, ValueError):
        return False
