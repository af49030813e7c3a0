"""The dense channel searcher: encode the query, search the FAISS index, filter by language inside FAISS.

Opens what :class:`xlir.indexing.channels.dense.writer.DenseWriter` wrote, with the model, prompts and search settings the
manifest recorded. A language filter becomes a FAISS ID selector (a bitmap over the index's vectors)
passed in the search parameters, so a filtered search ranks only documents of those languages and still
returns ``k`` hits when there are ``k`` of them. Approximate indexes can miss allowed neighbors under a
selective filter; when that leaves fewer than ``k`` hits, the search is repeated exhaustively over the
allowed documents (all inverted lists for ``ivfpq``, exact scores of the allowed vectors for ``hnsw``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xlir.indexing.channels.base import ChannelSearcher, Langs, QueryLangs, check_queries
from xlir.indexing.channels.dense.store import DenseStore
from xlir.indexing.errors import IndexDamagedError
from xlir.indexing.ranking import Ranking
from xlir.models.encoders.dense import SentenceTransformerEncoder

log = logging.getLogger(__name__)

SOURCE = "dense"


class DenseSearcher(ChannelSearcher):
    """Searches a dense channel directory: ``search(query, k, langs) -> Ranking`` (source ``"dense"``)."""

    def __init__(self, directory: Path, details: dict[str, Any], device: str = "auto") -> None:
        self.directory = Path(directory)
        self.details = dict(details)
        store = DenseStore.load(self.directory)
        self.index = store.index
        self.docids: list[str] = store.documents.docids
        codes, table = store.documents.codes, store.documents.table
        self.kind: str = str(self.details.get("index", "flat"))
        self.ef_search = int(self.details.get("ef_search", 128))
        self.nprobe = int(self.details.get("nprobe", 1))
        self.doc_langs: list[str | None] = store.documents.langs
        self._ids_by_lang: dict[str, np.ndarray] = {
            lang: np.flatnonzero(codes == code).astype(np.int64) for code, lang in enumerate(table)
        }
        self._selectors: dict[frozenset[str], tuple[np.ndarray, Any]] = {}
        model = self.details.get("model")
        if not model:
            raise IndexDamagedError(
                f"{self.directory}: the manifest names no dense model; rebuild the index."
            )
        self.encoder = SentenceTransformerEncoder(
            str(model),
            batch_size=int(self.details.get("batch_size", 32)),
            max_length=int(self.details.get("max_length", 512)),
            device=device,
        )
        if self.encoder.dim != self.index.d:
            raise IndexDamagedError(
                f"model {model!r} makes {self.encoder.dim}-dimensional vectors but the index holds "
                f"{self.index.d}-dimensional ones: the model is not the one the index was built with."
            )
        recorded = self.details.get("prompts")
        if recorded is not None and dict(recorded) != self.encoder.prompts:
            log.warning(
                "the index was built with prompts %s but model %r now has %s; results will suffer. "
                "Rebuild the index or restore the model.",
                recorded,
                model,
                self.encoder.prompts,
            )

    def batch_search(
        self, queries: Sequence[str], k: int = 10, langs: Langs = None, *, query_langs: QueryLangs = None
    ) -> list[Ranking]:
        """The ``k`` documents nearest to each query (restricted to ``langs`` when given); all queries are
        encoded in one batch and searched in one FAISS call."""
        check_queries(queries, k)
        if self.index is None:
            raise RuntimeError("this dense searcher is closed; open the index again to search it.")
        if not queries:
            return []
        allowed = self._allowed(langs)
        available = self.index.ntotal if allowed is None else len(allowed[0])
        depth = min(k, available)
        if depth == 0:
            return [Ranking(source=SOURCE) for _ in queries]
        vectors = self.encoder.encode_queries([q.strip() for q in queries])
        return self.search_vectors(vectors, depth, langs)

    def search_vectors(
        self, vectors: np.ndarray, k: int = 10, langs: Collection[str] | None = None
    ) -> list[Ranking]:
        """Rankings for already-encoded query vectors (rows L2-normalized, as the encoder makes them)."""
        if self.index is None:
            raise RuntimeError("this dense searcher is closed; open the index again to search it.")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        allowed = self._allowed(langs)
        available = self.index.ntotal if allowed is None else len(allowed[0])
        k = min(k, available)
        if k <= 0:
            return [Ranking(source=SOURCE) for _ in range(len(vectors))]
        scores, ids = self.index.search(vectors, k, params=self._params(allowed, exhaustive=False))
        short = np.flatnonzero((ids < 0).any(axis=1))
        if len(short):
            scores[short], ids[short] = self._exhaustive(vectors[short], k, allowed)
        return [self._ranking(row_scores, row_ids) for row_scores, row_ids in zip(scores, ids, strict=True)]

    def close(self) -> None:
        """Release the index (the encoder's model stays cached for the process)."""
        self.index = None
        self._selectors.clear()

    def _allowed(self, langs: Collection[str] | None) -> tuple[np.ndarray, Any] | None:
        """(allowed vector ids, FAISS selector) for a language filter; None when there is no filter."""
        if not langs:
            return None
        key = frozenset(langs)
        cached = self._selectors.get(key)
        if cached is None:
            import faiss

            parts = [self._ids_by_lang[lang] for lang in key if lang in self._ids_by_lang]
            ids = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
            mask = np.zeros(self.index.ntotal, dtype=bool)
            mask[ids] = True
            bitmap = np.packbits(mask, bitorder="little")
            cached = self._selectors[key] = (ids, faiss.IDSelectorBitmap(bitmap))
        return cached

    def _params(self, allowed: tuple[np.ndarray, Any] | None, exhaustive: bool) -> Any:
        import faiss

        selector = allowed[1] if allowed is not None else None
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.ef_search)
        if self.kind == "ivfpq":
            nlist = faiss.extract_index_ivf(self.index).nlist
            return faiss.SearchParametersIVF(sel=selector, nprobe=nlist if exhaustive else self.nprobe)
        return faiss.SearchParameters(sel=selector)

    def _exhaustive(
        self, vectors: np.ndarray, k: int, allowed: tuple[np.ndarray, Any] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search again, visiting every allowed vector (approximate indexes missed some neighbors)."""
        import faiss

        if self.kind == "ivfpq":
            return self.index.search(vectors, k, params=self._params(allowed, exhaustive=True))
        if self.kind == "hnsw":
            ids = allowed[0] if allowed is not None else np.arange(self.index.ntotal, dtype=np.int64)
            stored = self.index.reconstruct_batch(ids)
            scores, positions = faiss.knn(vectors, stored, k, metric=faiss.METRIC_INNER_PRODUCT)
            return scores, np.where(positions >= 0, ids[np.maximum(positions, 0)], -1)
        return self.index.search(vectors, k, params=self._params(allowed, exhaustive=True))

    def _ranking(self, scores: np.ndarray, ids: np.ndarray) -> Ranking:
        ranked = (
            (self.docids[position], score, self.doc_langs[position])
            for score, position in zip(scores.tolist(), ids.tolist(), strict=True)
            if position >= 0
        )
        return Ranking.in_order(SOURCE, ranked)
