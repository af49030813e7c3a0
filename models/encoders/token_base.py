"""What every token encoder shares: the :class:`TokenEncoder` protocol, its error, row normalization, and
the Hugging Face model loader that loads each (folder, device) once per process.

A token encoder returns, per text, a float32 matrix ``(tokens, dim)`` whose rows are L2-normalized token
vectors (special and padding tokens dropped), so that a query-document score is ColBERT's MaxSim: the sum
over query tokens of the best cosine with any document token. Implementations:
:class:`xlir.models.encoders.tokens.HFTokenEncoder` and
:class:`xlir.models.encoders.colbert_xm.ColBERTXMEncoder`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

import numpy as np

from xlir.errors import UserError
from xlir.models.hub import offline_hub

log = logging.getLogger(__name__)

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


def check_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list; a single string is refused (a common slip: it would encode its characters)."""
    if isinstance(texts, str):
        raise TypeError("encode a list of texts, not a single string (wrap it: [text]).")
    return list(texts)


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as float32."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.ascontiguousarray(matrix / np.maximum(norms, 1e-12), dtype=np.float32)


def load_hf_model(path: str, device: str, kind: str = "auto") -> tuple[Any, Any]:
    """(tokenizer, model) for a local folder, loaded once per process with the hub switched off."""
    key = (path, device, kind)
    with _LOCK:
        cached = _MODELS.get(key)
        if cached is None:
            from transformers import AutoModel, AutoTokenizer

            with offline_hub(), quiet_transformers():
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
def quiet_transformers() -> Iterator[None]:
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
