"""The dense channel searcher: encode the query, search the FAISS index, filter inside FAISS.

Opens what :class:`xlir.indexing.channels.dense.writer.DenseWriter` wrote, with the model, prompts and search settings the
manifest recorded. A language filter and an ``allowed`` set of document ids (both together when both are
given) become one FAISS ID selector (a bitmap over the index's vectors) passed in the search parameters,
so a filtered search ranks only those documents and still returns ``k`` hits when there are ``k`` of
them. Approximate indexes can miss allowed neighbors under a selective filter, so a restriction by
``allowed`` ids that keeps few vectors (at most :data:`EXHAUSTIVE_MAX`, or :data:`EXHAUSTIVE_SHARE` of
the index) is searched exhaustively from the start, and any restriction is searched again exhaustively
when the approximate search comes back short (all inverted lists for ``ivfpq``, exact scores of the allowed vectors for
``hnsw``; ``flat`` is exhaustive anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from xlir.indexing.channels.base import NO_DOCUMENTS, Allowed, ChannelSearcher, DocidPositions, QueryLangs
from xlir.indexing.channels.dense.store import DenseStore
from xlir.indexing.errors import IndexDamagedError
from xlir.indexing.ranking import Ranking
from xlir.models.encoders.dense import SentenceTransformerEncoder

log = logging.getLogger(__name__)

SOURCE = "dense"
#: A restriction that keeps at most this many vectors, or at most this share of the index, is searched
#: exhaustively (an HNSW graph walk under a very selective selector misses neighbors).
EXHAUSTIVE_MAX = 4096
EXHAUSTIVE_SHARE = 0.05

#: (allowed vector ids, sorted; FAISS selector; the bitmap the selector reads, kept alive with it)
Restriction = tuple[np.ndarray, Any, np.ndarray]


class DenseSearcher(ChannelSearcher):
    """Searches a dense channel directory: ``search(query, k, langs) -> Ranking`` (source ``"dense"``)."""

    source = SOURCE

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
        self._selectors: dict[frozenset[str], Restriction] = {}
        self._positions = DocidPositions(self.docids)
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

    def _check_ready(self) -> None:
        if self.index is None:
            raise RuntimeError("this dense searcher is closed; open the index again to search it.")

    def _restrict(self, langs: frozenset[str] | None, allowed: Allowed) -> Any:
        restriction = self._restriction(langs, allowed)
        available = self.index.ntotal if restriction is None else len(restriction[0])
        return NO_DOCUMENTS if available == 0 else (restriction, allowed is not None)

    def _search_batch(
        self, queries: list[str], k: int, restriction: Any, query_langs: QueryLangs
    ) -> list[Ranking]:
        """The ``k`` documents nearest to each query (restricted to ``langs`` and ``allowed`` when given);
        all queries are encoded in one batch and searched in one FAISS call."""
        selected, by_ids = restriction
        vectors = self.encoder.encode_queries([q.strip() for q in queries])
        return self._search(vectors, k, selected, by_ids=by_ids)

    def search_vectors(
        self,
        vectors: np.ndarray,
        k: int = 10,
        langs: Collection[str] | None = None,
        allowed: Allowed = None,
    ) -> list[Ranking]:
        """Rankings for already-encoded query vectors (rows L2-normalized, as the encoder makes them)."""
        self._check_ready()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        return self._search(vectors, k, self._restriction(langs, allowed), by_ids=allowed is not None)

    def close(self) -> None:
        """Release the index (the encoder's model stays cached for the process)."""
        self.index = None
        self._selectors.clear()

    def _search(
        self, vectors: np.ndarray, k: int, restriction: Restriction | None, *, by_ids: bool
    ) -> list[Ranking]:
        """``by_ids``: the restriction includes allowed ids (only then does a small one go straight to the
        exhaustive search: a language filter alone searches as it always has)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        available = self.index.ntotal if restriction is None else len(restriction[0])
        k = min(k, available)
        if k <= 0:
            return [Ranking(source=SOURCE) for _ in range(len(vectors))]
        if by_ids and restriction is not None and self.kind != "flat" and self._few(available):
            scores, ids = self._exhaustive(vectors, k, restriction)
        else:
            scores, ids = self.index.search(vectors, k, params=self._params(restriction, exhaustive=False))
            short = np.flatnonzero((ids < 0).any(axis=1))
            if len(short):
                scores[short], ids[short] = self._exhaustive(vectors[short], k, restriction)
        return [self._ranking(row_scores, row_ids) for row_scores, row_ids in zip(scores, ids, strict=True)]

    def _few(self, count: int) -> bool:
        """Whether a restriction to ``count`` vectors is searched exhaustively from the start."""
        return count <= EXHAUSTIVE_MAX or count <= EXHAUSTIVE_SHARE * self.index.ntotal

    def _restriction(self, langs: Collection[str] | None, allowed: Allowed) -> Restriction | None:
        """The vectors a search may return (languages and allowed ids together); None = every vector."""
        if allowed is None:
            return self._allowed(langs)
        ids = self._positions.positions(allowed)
        by_lang = self._allowed(langs)
        if by_lang is not None:
            ids = np.intersect1d(ids, by_lang[0], assume_unique=True)
        return self._selector(ids)

    def _allowed(self, langs: Collection[str] | None) -> Restriction | None:
        """The restriction to a language filter (cached per set of languages); None when there is none."""
        if not langs:
            return None
        key = frozenset([langs] if isinstance(langs, str) else langs)
        cached = self._selectors.get(key)
        if cached is None:
            parts = [self._ids_by_lang[lang] for lang in key if lang in self._ids_by_lang]
            ids = np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
            cached = self._selectors[key] = self._selector(ids)
        return cached

    def _selector(self, ids: np.ndarray) -> Restriction:
        import faiss

        mask = np.zeros(self.index.ntotal, dtype=bool)
        mask[ids] = True
        bitmap = np.packbits(mask, bitorder="little")
        return ids.astype(np.int64), faiss.IDSelectorBitmap(bitmap), bitmap

    def _params(self, allowed: Restriction | None, exhaustive: bool) -> Any:
        import faiss

        selector = allowed[1] if allowed is not None else None
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=selector, efSearch=self.ef_search)
        if self.kind == "ivfpq":
            nlist = faiss.extract_index_ivf(self.index).nlist
            return faiss.SearchParametersIVF(sel=selector, nprobe=nlist if exhaustive else self.nprobe)
        return faiss.SearchParameters(sel=selector)

    def _exhaustive(
        self, vectors: np.ndarray, k: int, allowed: Restriction | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search visiting every allowed vector (approximate indexes miss neighbors under a selector)."""
        import faiss

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
