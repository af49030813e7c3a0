"""Text encoders shared by the neural channels: texts in, L2-normalized float32 vectors out.

:class:`DenseEncoder` is the interface every dense channel (and reranker or head built on one) relies
on. :class:`SentenceTransformerEncoder` implements it over a sentence-transformers checkpoint obtained
from :mod:`xlir.models.registry` (a name such as the default ``multilingual-e5-small``, a hub id, or a local
folder). Models that define query/passage prompts in their config (e5 needs ``"query: "`` and
``"passage: "``) get them applied; others are encoded plainly.

Loaded models are cached per (name, device) in the process, so the writer and the searcher of one
process (a test, an eval run, the server after a rebuild) share one copy of the weights.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from xlir.errors import UserError
from xlir.models.devices import resolve_device

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

#: Prompt names looked up in a model's config, in order of preference, for each side.
QUERY_PROMPTS = ("query",)
DOCUMENT_PROMPTS = ("passage", "document", "corpus")

_MODELS: dict[tuple[str, str], SentenceTransformer] = {}
_LOCK = threading.Lock()


class DenseModelError(UserError, ValueError):
    """The dense model named cannot be used (no name, not a sentence encoder) or a setting is out of range."""


@runtime_checkable
class DenseEncoder(Protocol):
    """Encodes queries and documents into one vector space (rows float32 and L2-normalized)."""

    dim: int

    def encode_queries(self, texts: list[str]) -> np.ndarray: ...

    def encode_documents(self, texts: list[str]) -> np.ndarray: ...


def load_model(name: str, device: str = "auto") -> SentenceTransformer:
    """The sentence-transformers model ``name`` on ``device``, loaded once per process (cached)."""
    resolved = resolve_device(device)
    key = (name, resolved)
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            from xlir.models.registry import load_sentence_transformer

            model = load_sentence_transformer(name, device=resolved)
            model.eval()
            _MODELS[key] = model
            log.info("loaded encoder %s on %s", name, resolved)
        return model


def clear_model_cache() -> None:
    """Forget every cached model (frees their memory once no encoder holds them)."""
    with _LOCK:
        _MODELS.clear()


def _pick_prompt(prompts: dict[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        if prompts.get(name):
            return name
    return None


class SentenceTransformerEncoder:
    """A :class:`DenseEncoder` over a sentence-transformers checkpoint.

    ``model`` is a name :func:`xlir.models.registry.resolve_model` knows, a hub id or a local folder;
    ``max_length`` caps tokens per text (texts are truncated, never rejected); ``device`` is ``"auto"``
    (CUDA when available, else CPU), ``"cpu"`` or ``"cuda[:n]"``.
    """

    def __init__(self, model: str, batch_size: int = 32, max_length: int = 512, device: str = "auto") -> None:
        if not isinstance(model, str) or not model.strip():
            raise DenseModelError("the dense model name is empty: give a model name, hub id or local folder.")
        if batch_size < 1:
            raise DenseModelError(f"batch_size must be at least 1 (got {batch_size}).")
        if max_length < 1:
            raise DenseModelError(f"max_length must be at least 1 (got {max_length}).")
        self.name = model
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        self.model = load_model(model, self.device)
        limit = _model_token_limit(self.model)
        self.max_length = min(int(max_length), limit) if limit else int(max_length)
        dim = self.model.get_embedding_dimension()
        if not dim:
            raise DenseModelError(
                f"model {model!r} does not report its embedding dimension; is it a sentence encoder?"
            )
        self.dim: int = int(dim)
        prompts = dict(getattr(self.model, "prompts", None) or {})
        self._query_prompt = _pick_prompt(prompts, QUERY_PROMPTS)
        self._document_prompt = _pick_prompt(prompts, DOCUMENT_PROMPTS)

    @property
    def prompts(self) -> dict[str, str]:
        """The prompts this encoder prepends: ``{"query": ..., "passage": ...}`` (either may be absent)."""
        prompts = dict(getattr(self.model, "prompts", None) or {})
        used: dict[str, str] = {}
        if self._query_prompt:
            used["query"] = prompts[self._query_prompt]
        if self._document_prompt:
            used["passage"] = prompts[self._document_prompt]
        return used

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Query vectors, one row per text, in order."""
        return self._encode(texts, self._query_prompt)

    def encode_documents(self, texts: list[str]) -> np.ndarray:
        """Document vectors, one row per text, in order."""
        return self._encode(texts, self._document_prompt)

    def _encode(self, texts: list[str], prompt_name: str | None) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode a list of texts, not a single string (wrap it: [text]).")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # The model is shared between encoders; set this encoder's limit before each call.
        self.model.max_seq_length = self.max_length
        kwargs: dict[str, Any] = {"prompt_name": prompt_name} if prompt_name else {}
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
            **kwargs,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _model_token_limit(model: SentenceTransformer) -> int | None:
    """The most tokens the model's position embeddings allow, when it says (None when unknown)."""
    try:
        config = model[0].auto_model.config
    except (AttributeError, IndexError, TypeError):
        return None
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or limit <= 0:
        return None
    # RoBERTa-style models (XLM-R, e5) offset positions by padding_idx + 1.
    if getattr(config, "model_type", "") in ("xlm-roberta", "roberta", "camembert"):
        limit -= 2
    return limit
