"""Incremental updates of a built sparse channel: posting columns dropped and appended in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse as sp

from xlir.indexing.channels.base import PositionalUpdater
from xlir.indexing.channels.files import directory_bytes
from xlir.indexing.channels.sparse.store import SparseStore
from xlir.indexing.channels.sparse.writer import l2_normalize_rows, sparse_text
from xlir.indexing.documents import Document
from xlir.indexing.filecommit import commit_files
from xlir.indexing.pending import PendingBatch
from xlir.models.encoders.sparse import encoder_for_index
from xlir.models.encoders.sparse_base import SparseModelError


class SparseUpdater(PositionalUpdater[tuple[str | None, sp.csr_matrix]]):
    """Incremental updates of a built sparse channel (the :class:`xlir.indexing.channels.base.ChannelUpdater` protocol).

    New documents are encoded with the encoder the manifest details record (``model``, ``doc_top_k``,
    ``query_top_k``, ``batch_size``) and L2-normalized when the details say ``normalize``, exactly as
    :class:`SparseWriter` did. ``delete`` and ``add`` only record the batch; ``close`` drops the deleted
    documents' columns from the (terms x documents) postings, appends the new documents' columns, and
    replaces ``postings.npz``, ``docids.json`` and ``langs.json`` together
    (:func:`xlir.indexing.filecommit.commit_files`). Scores are per-document dot products, so they equal a
    fresh build's; only the column order differs, which the searcher does not expose (ties are broken by
    document id). Cost: one O(postings) rewrite of the matrix per batch (:func:`update_postings`; 25M
    postings, i.e. 50k documents x 512 terms: about 1.5 s plus the file write, on 2 busy cores).
    """

    def __init__(
        self, directory: Path | str, details: dict[str, Any], config: dict[str, Any] | None = None
    ) -> None:
        super().__init__(directory, details, config)
        store = SparseStore.load(self.directory, self.details)
        self._postings: sp.csr_matrix = store.postings
        self._docids: list[str] = store.docids
        self._langs: list[str | None] = store.langs
        self.normalize = bool(self.details.get("normalize", False))
        self._batch = PendingBatch(self._docids)
        self._encoder: Any = None

    def _encode(self, docs: list[Document]) -> list[tuple[str | None, sp.csr_matrix]]:
        """Each document's language and row, encoded (and normalized) as the writer did."""
        if self._encoder is None:
            self._encoder = encoder_for_index(self.details)
            if self._encoder.dim != self._postings.shape[0]:
                raise SparseModelError(
                    f"the sparse channel at {self.directory} has {self._postings.shape[0]} terms but "
                    f"encoder {self._encoder.name} has {self._encoder.dim}: restore the model the index "
                    "was built with or rebuild the index."
                )
        vectors = self._encoder.encode_documents([sparse_text(doc) for doc in docs]).tocsr()
        if self.normalize:
            vectors = l2_normalize_rows(vectors)
        vectors = vectors.astype(np.float32)
        return [(doc.lang, vectors[row]) for row, doc in enumerate(docs)]

    def close(self) -> dict[str, Any]:
        """Rewrite the postings without the deleted documents and with the new ones; return new details."""
        self._check_open()
        self._closed = True
        try:
            batch = self._batch
            if batch.changed:
                added = (
                    sp.vstack([v for _, v in batch.added.values()], format="csr", dtype=np.float32)
                    if batch.added
                    else None
                )
                inverted = update_postings(self._postings, batch.keep, added)
                docids = batch.result_ids()
                langs = [*batch.kept(self._langs), *(lang for lang, _ in batch.added.values())]
                commit_files(self.directory, SparseStore(inverted, docids, langs).files())
                self._postings = inverted
            self.details["documents"] = int(self._postings.shape[1])
            self.details["postings"] = int(self._postings.nnz)
            if "bytes" in self.details:
                self.details["bytes"] = directory_bytes(self.directory)
            return self.details
        finally:
            self._release()

    def abort(self) -> None:
        """Discard the batch (nothing was written)."""
        super().abort()
        self._release()

    def _release(self) -> None:
        close = getattr(self._encoder, "close", None)
        if callable(close):
            close()
        self._encoder = None


def update_postings(
    inverted: sp.csr_matrix, keep: np.ndarray, added: sp.csr_matrix | None = None
) -> sp.csr_matrix:
    """The (terms x documents) postings with only the columns where ``keep`` is true (renumbered, in
    order), followed by the columns of ``added`` (a documents x terms matrix).

    Works on the CSR arrays directly, in O(postings) with no sort: each row keeps its surviving entries
    and gets its new entries appended (their columns are greater, so rows stay sorted). On 25M postings
    this is about 3x faster than column slicing through CSC.
    """
    terms, documents = inverted.shape
    if keep.shape != (documents,):
        raise ValueError(f"keep has shape {keep.shape}; expected ({documents},)")
    if keep.all():
        indices, data, indptr = inverted.indices, inverted.data, inverted.indptr.astype(np.int64)
    else:
        mask = keep[inverted.indices]
        renumber = np.cumsum(keep, dtype=np.int64) - 1
        indices = renumber[inverted.indices[mask]]
        data = inverted.data[mask]
        indptr = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])[inverted.indptr]
    kept = int(keep.sum())
    if added is None or added.shape[0] == 0:
        result = sp.csr_matrix((data, indices, indptr), shape=(terms, kept), dtype=np.float32)
        result.sort_indices()
        return result
    if added.shape[1] != terms:
        raise ValueError(f"added documents have {added.shape[1]} terms; the postings have {terms}")
    extra = added.T.tocsr()
    extra.sort_indices()
    extra_indptr = extra.indptr.astype(np.int64)
    counts, extra_counts = np.diff(indptr), np.diff(extra_indptr)
    total = len(indices) + extra.nnz
    out_indices = np.empty(total, dtype=np.int64)
    out_data = np.empty(total, dtype=np.float32)
    # an old entry moves right by the new entries of the rows above it; a new one follows its row's old
    old_at = np.arange(len(indices), dtype=np.int64) + np.repeat(extra_indptr[:-1], counts)
    new_at = np.arange(extra.nnz, dtype=np.int64) + np.repeat(indptr[1:], extra_counts)
    out_indices[old_at], out_data[old_at] = indices, data
    out_indices[new_at], out_data[new_at] = extra.indices.astype(np.int64) + kept, extra.data
    out_indptr = indptr + extra_indptr
    result = sp.csr_matrix(
        (out_data, out_indices, out_indptr), shape=(terms, kept + added.shape[0]), dtype=np.float32
    )
    result.sort_indices()
    return result
