"""Incremental updates of a built dense channel: FAISS vectors removed and added in place.

See :class:`DenseUpdater` for how each index kind (flat, hnsw, ivfpq) is changed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from xlir.indexing.channels.base import PositionalUpdater
from xlir.indexing.channels.dense.store import DenseStore
from xlir.indexing.channels.dense.writer import dense_text
from xlir.indexing.channels.files import directory_bytes
from xlir.indexing.channels.language_codes import DocumentLanguages, LanguageCodes
from xlir.indexing.documents import Document
from xlir.indexing.errors import IndexDamagedError
from xlir.indexing.filecommit import commit_files
from xlir.indexing.pending import PendingBatch
from xlir.models.encoders.dense import SentenceTransformerEncoder

log = logging.getLogger(__name__)


class DenseUpdater(PositionalUpdater[tuple[int, np.ndarray]]):
    """Incremental updates of a built dense channel (the :class:`xlir.indexing.channels.base.ChannelUpdater` protocol).

    Opened with the channel's manifest details, it encodes added documents with exactly the model,
    ``batch_size`` and ``max_length`` recorded there (and refuses a model whose prompts or dimension
    changed since the build). ``delete`` and ``add`` only record the batch; ``close`` applies it to the
    FAISS index, keeping vector ``i`` = ``docids[i]`` with no holes, so the searcher reads an updated
    channel exactly like a freshly built one:

    * ``flat``: ``remove_ids`` (which compacts the stored vectors, keeping their order), then ``add``;
      exact, so scores equal a fresh build's. Cost: one copy of the vectors per batch.
    * ``hnsw``: new vectors are inserted into the graph; when the batch deletes (or replaces) a
      document, the graph is rebuilt from the vectors it stores (``IndexHNSWFlat`` keeps them in full
      precision, so nothing is re-encoded). Cost of a rebuild: a fresh HNSW build over the corpus.
    * ``ivfpq``: ``remove_ids`` on the inverted lists, ids renumbered to stay contiguous, new vectors
      encoded with the quantizers trained at build time (not retrained: rebuild after the corpus has
      drifted far). Cost: one pass over the inverted lists per batch with deletions.

    The index keeps the kind it was built with (an ``auto`` flat index does not turn into HNSW when it
    grows past ``ann_threshold``; rebuild for that). The channel's files are replaced together with
    :func:`xlir.indexing.filecommit.commit_files` (a crash leaves the old set or the new one).
    """

    def __init__(
        self, directory: Path, details: dict[str, Any], config: dict[str, Any] | None = None
    ) -> None:
        super().__init__(directory, details, config)
        self.kind = str(self.details.get("index", "flat"))
        if self.kind not in ("flat", "hnsw", "ivfpq"):
            raise IndexDamagedError(
                f"the dense channel at {self.directory} records index kind {self.kind!r}, which cannot be "
                "updated; the manifest is damaged: rebuild the index."
            )
        model = self.details.get("model")
        if not model:
            raise IndexDamagedError(
                f"{self.directory}: the manifest names no dense model; rebuild the index."
            )
        self.model_name = str(model)
        store = DenseStore.load(self.directory)
        self.index = store.index
        self._docids: list[str] = store.documents.docids
        self._codes = store.documents.codes.astype(np.int16)
        table = store.documents.table
        self._lang_codes = LanguageCodes(table, channel="dense")
        self._batch = PendingBatch(self._docids)
        self._encoder: SentenceTransformerEncoder | None = None
        self._encode_seconds = 0.0

    def _encode(self, docs: list[Document]) -> list[tuple[int, np.ndarray]]:
        """Each document's language code and vector, encoded with the recorded model."""
        encoder = self._get_encoder()
        started = time.perf_counter()
        vectors = encoder.encode_documents([dense_text(doc) for doc in docs])
        self._encode_seconds += time.perf_counter() - started
        return [(self._lang_codes.code(doc.lang), vector) for doc, vector in zip(docs, vectors, strict=True)]

    def close(self) -> dict[str, Any]:
        """Apply the batch to the FAISS index, replace the channel's files and return the new details."""
        self._check_open()
        self._closed = True
        batch = self._batch
        if batch.changed:
            started = time.perf_counter()
            removed = batch.removed
            index = self._updated_index(removed)
            docids = batch.result_ids()
            codes = np.concatenate(
                [self._codes[batch.keep], np.asarray([c for c, _ in batch.added.values()], dtype=np.int16)]
            )
            if index.ntotal != len(docids):
                raise RuntimeError(
                    f"dense update produced {index.ntotal} vectors for {len(docids)} documents; nothing was "
                    "written. Report this as a bug."
                )
            documents = DocumentLanguages(docids, codes, self._lang_codes.table())
            commit_files(self.directory, DenseStore(index, documents).files())
            log.info(
                "dense update: -%d +%d documents (%s index) in %.2f s",
                len(removed),
                len(batch.added),
                self.kind,
                time.perf_counter() - started,
            )
            self.details["documents"] = len(docids)
        else:
            self.details["documents"] = int(self.index.ntotal)
        if "bytes" in self.details:
            self.details["bytes"] = directory_bytes(self.directory)
        self.index = None
        return self.details

    def abort(self) -> None:
        """Discard the batch (nothing was written)."""
        super().abort()
        self.index = None

    def _updated_index(self, removed: np.ndarray) -> Any:
        import faiss

        index = self.index
        new = (
            np.ascontiguousarray(np.stack([v for _, v in self._batch.added.values()]), dtype=np.float32)
            if self._batch.added
            else np.zeros((0, index.d), dtype=np.float32)
        )
        if self.kind == "flat":
            if len(removed):
                index.remove_ids(faiss.IDSelectorBatch(removed))  # compacts, keeping the order
        elif self.kind == "hnsw":
            if len(removed):
                kept = index.reconstruct_n(0, index.ntotal)[self._batch.keep]
                return self._hnsw(np.concatenate([kept, new]))
        else:
            if len(removed):
                _remove_ivf(index, removed, self._batch.keep)
        if len(new):
            index.add(new)
        return index

    def _hnsw(self, vectors: np.ndarray) -> Any:
        import faiss

        m = int(self.details.get("hnsw_m", 32))
        index = faiss.IndexHNSWFlat(self.index.d, m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(self.details.get("ef_construction", max(40, 2 * m)))
        index.hnsw.efSearch = int(self.details.get("ef_search", 128))
        if len(vectors):
            index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return index

    def _get_encoder(self) -> SentenceTransformerEncoder:
        if self._encoder is None:
            encoder = SentenceTransformerEncoder(
                self.model_name,
                batch_size=int(self.details.get("batch_size", 32)),
                max_length=int(self.details.get("max_length", 512)),
                device=str(self.config.get("device") or "auto"),
            )
            if encoder.dim != self.index.d:
                raise IndexDamagedError(
                    f"model {self.model_name!r} now makes {encoder.dim}-dimensional vectors but the index "
                    f"holds {self.index.d}-dimensional ones: restore the model the index was built with "
                    "or rebuild the index."
                )
            recorded = self.details.get("prompts")
            if recorded is not None and dict(recorded) != encoder.prompts:
                raise IndexDamagedError(
                    f"the index was built with prompts {recorded} but model {self.model_name!r} now has "
                    f"{encoder.prompts}: new documents would not match the indexed ones. Restore the model "
                    "or rebuild the index."
                )
            self._encoder = encoder
        return self._encoder


def _remove_ivf(index: Any, removed: np.ndarray, keep: np.ndarray) -> None:
    """Remove vectors ``removed`` from an IVF index and renumber the others 0..n-1 in their old order."""
    import faiss

    index.remove_ids(faiss.IDSelectorBatch(removed))
    renumber = np.cumsum(keep, dtype=np.int64) - 1
    invlists = faiss.extract_index_ivf(index).invlists
    for number in range(invlists.nlist):
        size = invlists.list_size(number)
        if size == 0:
            continue
        ids = faiss.rev_swig_ptr(invlists.get_ids(number), size).copy()
        codes = faiss.rev_swig_ptr(invlists.get_codes(number), size * invlists.code_size).copy()
        fresh = np.ascontiguousarray(renumber[ids], dtype=np.int64)
        invlists.update_entries(number, 0, size, faiss.swig_ptr(fresh), faiss.swig_ptr(codes))
