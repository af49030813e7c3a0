"""The learned sparse channel's searcher: query -> sparse vector -> dot products over the inverted index.

Scores are exact dot products between the query's sparse vector and every document's, computed as a
sparse (query x terms) @ (terms x documents) product, so only the posting lists of the query's non-zero
terms are read. Documents that share no term with the query are not candidates. The language filter
and the ``allowed`` ids mask the candidates before the top-k cut, so ``k`` hits come back whenever
that many documents passing both share a term with the query.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse as sp

from xlir.indexing.channels.base import Allowed, ChannelSearcher, DocidPositions, QueryLangs, mask_restriction
from xlir.indexing.channels.sparse.store import SparseIndexError, SparseStore
from xlir.indexing.ranking import Ranking
from xlir.models.encoders.sparse import encoder_for_index
from xlir.models.encoders.sparse_base import SparseEncoder

log = logging.getLogger(__name__)

SOURCE = "sparse"


class SparseSearcher(ChannelSearcher):
    """Searches the ``sparse`` channel of an index with the encoder and settings it was built with."""

    source = SOURCE

    def __init__(
        self, directory: Path | str, details: dict[str, Any], encoder: SparseEncoder | None = None
    ) -> None:
        self.directory = Path(directory)
        self.details = dict(details)
        store = SparseStore.load(self.directory, self.details)
        self._index: sp.csr_matrix = store.postings
        self._docids: list[str] = store.docids
        langs = store.langs
        terms = self._index.shape[0]
        self._langs = langs
        self._lang_names = sorted({lang for lang in langs if lang})
        codes = {lang: i for i, lang in enumerate(self._lang_names)}
        self._lang_codes = np.array([codes[lang] if lang else -1 for lang in langs], dtype=np.int32)
        self._positions = DocidPositions(self._docids)
        self.encoder: SparseEncoder = encoder or encoder_for_index(self.details)
        if self.encoder.dim != terms:
            raise SparseIndexError(
                f"the sparse channel at {self.directory} has {terms} terms but encoder "
                f"{self.encoder.name} has {self.encoder.dim}: the index was built with another model."
            )

    def __len__(self) -> int:
        return len(self._docids)

    def _restrict(self, langs: frozenset[str] | None, allowed: Allowed) -> Any:
        """A mask over documents for the languages and allowed ids together (None = all)."""
        by_lang = None
        if langs:
            wanted = [self._lang_names.index(lang) for lang in langs if lang in self._lang_names]
            by_lang = self._lang_codes_mask(wanted)
        return mask_restriction(self._positions.narrow(by_lang, allowed))

    def _search_batch(
        self, queries: list[str], k: int, restriction: np.ndarray | None, query_langs: QueryLangs
    ) -> list[Ranking]:
        """The top ``k`` documents for each query (restricted to ``langs`` and ``allowed`` if given): a
        single encoder call and one sparse matrix product for all of them."""
        vectors = self.encoder.encode_queries([q.strip() for q in queries]).tocsr()
        scores = (vectors @ self._index).tocsr()  # queries x documents, only candidates stored
        return [self._top(scores, row, k, restriction) for row in range(len(queries))]

    def _lang_codes_mask(self, wanted: list[int]) -> np.ndarray:
        return np.isin(self._lang_codes, np.array(wanted, dtype=np.int32))

    def _top(self, scores: sp.csr_matrix, row: int, k: int, allowed: np.ndarray | None) -> Ranking:
        start, end = scores.indptr[row], scores.indptr[row + 1]
        cols = scores.indices[start:end]
        vals = scores.data[start:end]
        keep = vals > 0
        if allowed is not None:
            keep &= allowed[cols]
        cols, vals = cols[keep], vals[keep]
        if len(cols) > k:
            part = np.argpartition(-vals, k - 1)[:k]
            cols, vals = cols[part], vals[part]
        order = sorted(range(len(cols)), key=lambda i: (-float(vals[i]), self._docids[cols[i]]))
        ranked = ((self._docids[int(cols[i])], float(vals[i]), self._langs[int(cols[i])]) for i in order)
        return Ranking.in_order(SOURCE, ranked)

    def close(self) -> None:
        """Release the encoder's worker threads and the in-memory index."""
        close = getattr(self.encoder, "close", None)
        if callable(close):
            close()
        self._index = sp.csr_matrix((0, 0), dtype=np.float32)
