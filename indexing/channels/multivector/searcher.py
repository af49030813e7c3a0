"""The multi-vector channel searcher: PLAID-style candidate generation, then MaxSim over decompressed tokens.

Opens what :class:`xlir.indexing.channels.multivector.writer.MultiVectorWriter` wrote, with the encoder the manifest recorded.
A query is searched in three stages (Santhanam et al., PLAID, 2022):

1. candidate generation: each query token's ``ncells`` nearest centroids; the documents with a token in
   any of those cells are the candidates (restricted to the requested languages and ``allowed`` ids);
2. centroid interaction: each candidate is scored by MaxSim with every token replaced by its centroid
   (no residuals touched), counting only tokens whose centroid is among the ``cell_fraction`` best cells
   for the query (PLAID's centroid pruning);
3. exact-ish MaxSim: the best ``max(k, ndocs / 4)`` have their tokens decompressed (centroid + quantized
   residual) and scored.

When the cells hold fewer than ``max(k, ndocs)`` allowed documents (of the requested languages and ids),
every allowed document is a candidate, so a filtered search returns ``k`` hits whenever there are ``k``
such documents. A restriction by ``allowed`` ids that keeps few documents (at most
``max(k, ndocs, EXHAUSTIVE_MAX)``) skips the first two stages: every allowed document is scored exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from xlir.indexing.channels.base import (
    NO_DOCUMENTS,
    Allowed,
    ChannelSearcher,
    DocidPositions,
    QueryLangs,
    mask_restriction,
)
from xlir.indexing.channels.multivector.store import TokenStore, load_codec
from xlir.indexing.errors import ConfigError, IndexDamagedError
from xlir.indexing.ranking import Ranking
from xlir.models.encoders.token_base import TokenEncoder
from xlir.models.encoders.tokens import open_token_encoder

log = logging.getLogger(__name__)

SOURCE = "multivector"
#: A restriction that keeps at most this many documents is scored exhaustively (exact MaxSim of each).
EXHAUSTIVE_MAX = 1024
#: Documents decompressed and scored at once (bounds the memory of an exhaustive scoring).
SCORE_CHUNK = 256


class MultiVectorSearcher(ChannelSearcher):
    """Searches a multivector channel directory: ``search(query, k, langs) -> Ranking`` (source ``"multivector"``).

    ``encoder`` replaces the encoder the manifest describes (it must make the same vectors); ``ncells`` /
    ``ndocs`` / ``cell_fraction`` override the recorded search settings.
    """

    source = SOURCE

    def __init__(
        self,
        directory: Path,
        details: dict[str, Any],
        encoder: TokenEncoder | None = None,
        *,
        ncells: int | None = None,
        ndocs: int | None = None,
        cell_fraction: float | None = None,
        device: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.details = dict(details)
        store = TokenStore.load(self.directory, mmap=True)
        self.codec = load_codec(self.directory, int(self.details.get("nbits", 2)))
        self.codes = store.codes
        self.residuals = store.residuals
        self.offsets = store.offsets
        self.ivf = store.ivf
        self.ivf_offsets = store.ivf_offsets
        self.docids: list[str] = store.documents.docids
        codes, table = store.documents.codes, store.documents.table
        self.doc_langs: list[str | None] = store.documents.langs
        self._lang_codes = codes
        self._table = table
        self._allowed_cache: dict[frozenset[str], np.ndarray] = {}
        self._positions = DocidPositions(self.docids)
        self.ncells = int(ncells or self.details.get("ncells", 2))
        self.ndocs = int(ndocs or self.details.get("ndocs", 256))
        self.cell_fraction = float(cell_fraction or self.details.get("cell_fraction", 0.05))
        if not 0 < self.cell_fraction <= 1:
            raise ConfigError(f"cell_fraction must be in (0, 1] (got {self.cell_fraction}).")
        self.encoder = encoder if encoder is not None else open_token_encoder(self.details, device=device)
        if self.encoder.dim != self.codec.dim:
            raise IndexDamagedError(
                f"the query encoder makes {self.encoder.dim}-d token vectors but the index holds "
                f"{self.codec.dim}-d ones: the model or head is not the one the index was built with."
            )
        self._lengths = np.diff(self.offsets)
        self._closed = False

    # --- searching (the base class's hooks) and the public API -----------------------------------------

    def _restrict(self, langs: frozenset[str] | None, allowed: Allowed) -> Any:
        mask = mask_restriction(self._mask(langs, allowed))
        return NO_DOCUMENTS if mask is NO_DOCUMENTS else (mask, allowed is not None)

    def _search_batch(
        self, queries: list[str], k: int, restriction: Any, query_langs: QueryLangs
    ) -> list[Ranking]:
        """The ``k`` best documents for each query by MaxSim (restricted to ``langs`` and ``allowed`` when
        given); queries are encoded in one batch."""
        mask, by_ids = restriction
        vectors = self.encoder.encode_queries([q.strip() for q in queries])
        return [self._search(v, k, mask, by_ids=by_ids) for v in vectors]

    def search_vectors(
        self,
        query: np.ndarray,
        k: int = 10,
        langs: Collection[str] | None = None,
        allowed: Allowed = None,
    ) -> Ranking:
        """The ranking for one already-encoded query (a ``(tokens, dim)`` matrix of unit rows)."""
        self._check_ready()
        return self._search(query, k, self._mask(langs, allowed), by_ids=allowed is not None)

    def _search(self, query: np.ndarray, k: int, allowed: np.ndarray | None, *, by_ids: bool) -> Ranking:
        """``allowed``: the documents a hit may be (None = all); ``by_ids``: whether the caller restricted
        them by id (only then does a small restriction skip PLAID's stages: a language filter alone
        searches as it always has)."""
        query = np.ascontiguousarray(query, dtype=np.float32)
        if query.ndim != 2 or query.shape[1] != self.codec.dim or len(query) == 0:
            raise ValueError(
                f"a query must be a non-empty (tokens, {self.codec.dim}) matrix, got {query.shape}"
            )
        centroid_scores = query @ self.codec.centroids.T  # (q, K)
        exact = max(k, self.ndocs // 4)  # PLAID: ndocs after centroid interaction, a quarter re-scored
        if by_ids and allowed is not None and int(allowed.sum()) <= max(k, self.ndocs, EXHAUSTIVE_MAX):
            candidates = np.flatnonzero(allowed)  # few allowed: every one scored exactly
            exact = len(candidates)
        else:
            candidates = self._candidates(centroid_scores, allowed, k)
        if len(candidates) == 0:
            return Ranking(source=SOURCE)
        if len(candidates) > exact:
            approx = self._approximate(centroid_scores, candidates)
            keep = np.argpartition(-approx, exact - 1)[:exact]
            candidates = candidates[keep]
        scores = np.concatenate(
            [
                self._maxsim(centroid_scores, candidates[i : i + SCORE_CHUNK], exact=True, query=query)
                for i in range(0, len(candidates), SCORE_CHUNK)
            ]
        )
        top = min(k, len(candidates))
        best = (
            np.argpartition(-scores, top - 1)[:top] if top < len(candidates) else np.arange(len(candidates))
        )
        best = best[np.lexsort((candidates[best], -scores[best]))]
        positions = candidates[best].tolist()
        ranked = (
            (self.docids[p], float(s), self.doc_langs[p])
            for p, s in zip(positions, scores[best].tolist(), strict=True)
        )
        return Ranking.in_order(SOURCE, ranked)

    def maxsim(self, query: np.ndarray, documents: np.ndarray) -> np.ndarray:
        """Exact MaxSim of one query against the given document positions, from the decompressed vectors."""
        query = np.ascontiguousarray(query, dtype=np.float32)
        return self._maxsim(query @ self.codec.centroids.T, np.asarray(documents), exact=True, query=query)

    def close(self) -> None:
        """Release the index arrays (the encoder's model stays cached for the process)."""
        self._closed = True
        self.codes = self.residuals = np.zeros(0)

    # --- internals -------------------------------------------------------------------------------------

    def _check_ready(self) -> None:
        if self._closed:
            raise RuntimeError("this multivector searcher is closed; open the index again to search it.")

    def _mask(self, langs: Collection[str] | None, allowed: Allowed) -> np.ndarray | None:
        """Boolean mask over documents for the languages and allowed ids together; None = no restriction."""
        return self._positions.narrow(self._allowed(langs), allowed)

    def _allowed(self, langs: Collection[str] | None) -> np.ndarray | None:
        """Boolean mask over documents for a language filter; None when there is no filter."""
        if not langs:
            return None
        key = frozenset([langs] if isinstance(langs, str) else langs)
        mask = self._allowed_cache.get(key)
        if mask is None:
            wanted = [i for i, lang in enumerate(self._table) if lang in key]
            mask = np.isin(self._lang_codes, wanted) if wanted else np.zeros(len(self.docids), dtype=bool)
            self._allowed_cache[key] = mask
        return mask

    def _candidates(self, centroid_scores: np.ndarray, allowed: np.ndarray | None, k: int) -> np.ndarray:
        ncells = min(self.ncells, centroid_scores.shape[1])
        if ncells < centroid_scores.shape[1]:
            cells = np.unique(np.argpartition(-centroid_scores, ncells - 1, axis=1)[:, :ncells])
        else:
            cells = np.arange(centroid_scores.shape[1])
        starts, ends = self.ivf_offsets[cells], self.ivf_offsets[cells + 1]
        docs = np.unique(np.concatenate([self.ivf[s:e] for s, e in zip(starts, ends, strict=True)]))
        docs = docs.astype(np.int64)
        if allowed is not None:
            docs = docs[allowed[docs]]
        enough = self.ndocs if allowed is None else max(self.ndocs, k)
        if len(docs) < enough:  # few in the cells: every (allowed) document is a candidate
            docs = np.flatnonzero(allowed) if allowed is not None else np.arange(len(self.docids))
        return docs

    def _approximate(self, centroid_scores: np.ndarray, docs: np.ndarray) -> np.ndarray:
        """Centroid-only MaxSim of ``docs``, over the tokens whose centroid is among the query's best cells.

        PLAID's centroid pruning: a token whose centroid scores low against every query token cannot
        decide a document's MaxSim, so only tokens in the top ``cell_fraction`` of cells (by their best
        score over query tokens) are gathered; a query token that meets none of a document's kept tokens
        contributes 0.
        """
        lengths = self._lengths[docs]
        bounds = np.zeros(len(docs), dtype=np.int64)
        np.cumsum(lengths[:-1], out=bounds[1:])
        tokens = np.repeat(self.offsets[docs] - bounds, lengths) + np.arange(
            int(lengths.sum()), dtype=np.int64
        )
        codes = np.asarray(self.codes[tokens], dtype=np.int64)
        best = centroid_scores.max(axis=0)
        keep_cells = max(1, int(len(best) * self.cell_fraction))
        threshold = np.partition(best, len(best) - keep_cells)[len(best) - keep_cells]
        kept = best[codes] >= threshold
        owner = np.repeat(np.arange(len(docs)), lengths)[kept]
        sims = centroid_scores[:, codes[kept]]  # (q, kept tokens)
        out = np.zeros((centroid_scores.shape[0], len(docs)), dtype=np.float32)
        if sims.shape[1]:
            starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
            out[:, owner[starts]] = np.maximum.reduceat(sims, starts, axis=1)
        return np.maximum(out, 0).sum(axis=0)

    def _maxsim(
        self, centroid_scores: np.ndarray, docs: np.ndarray, *, exact: bool, query: np.ndarray
    ) -> np.ndarray:
        lengths = self._lengths[docs]
        starts = self.offsets[docs]
        bounds = np.zeros(len(docs), dtype=np.int64)
        np.cumsum(lengths[:-1], out=bounds[1:])
        tokens = np.repeat(starts - bounds, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)
        if exact:
            vectors = self.codec.decompress(self.codes[tokens], self.residuals[tokens])
            sims = query @ vectors.T  # (q, T)
        else:
            sims = centroid_scores[:, np.asarray(self.codes[tokens], dtype=np.int64)]
        return np.maximum.reduceat(sims, bounds, axis=1).sum(axis=0)
