"""The learned sparse channel's searcher: query -> sparse vector -> dot products over the inverted index.

Scores are exact dot products between the query's sparse vector and every document's, computed as a
sparse (query x terms) @ (terms x documents) product, so only the posting lists of the query's non-zero
terms are read. Documents that share no term with the query are not candidates. The language filter
is applied to the candidates before the top-k cut, so ``k`` hits come back whenever that many
documents in those languages share a term with the query.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse as sp

from xlir.indexing.channels.sparse.writer import DOCIDS, FORMAT_VERSION, LANGS, POSTINGS
from xlir.models.encoders.sparse import SparseEncoder, encoder_for_index
from xlir.retrieval.ranking import ChannelScore, Hit, Ranking

log = logging.getLogger(__name__)

SOURCE = "sparse"


class SparseIndexError(RuntimeError):
    """The sparse channel on disk is missing, incomplete or from another version of xlir."""


class SparseSearcher:
    """Searches the ``sparse`` channel of an index with the encoder and settings it was built with."""

    def __init__(
        self, directory: Path | str, details: dict[str, Any], encoder: SparseEncoder | None = None
    ) -> None:
        self.directory = Path(directory)
        self.details = dict(details)
        version = self.details.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise SparseIndexError(
                f"the sparse channel at {self.directory} has format version {version}; this xlir reads "
                f"version {FORMAT_VERSION}. Rebuild the index with this version."
            )
        missing = [name for name in (POSTINGS, DOCIDS, LANGS) if not (self.directory / name).is_file()]
        if missing:
            raise SparseIndexError(
                f"the sparse channel at {self.directory} is incomplete (missing {', '.join(missing)}): "
                "rebuild the index."
            )
        self._index: sp.csr_matrix = sp.load_npz(self.directory / POSTINGS).tocsr()
        self._docids: list[str] = json.loads((self.directory / DOCIDS).read_text(encoding="utf-8"))
        langs: list[str | None] = json.loads((self.directory / LANGS).read_text(encoding="utf-8"))
        terms, documents = self._index.shape
        if len(self._docids) != documents or len(langs) != documents:
            raise SparseIndexError(
                f"the sparse channel at {self.directory} is inconsistent ({documents} document columns, "
                f"{len(self._docids)} ids, {len(langs)} languages): rebuild the index."
            )
        self._langs = langs
        self._lang_names = sorted({lang for lang in langs if lang})
        codes = {lang: i for i, lang in enumerate(self._lang_names)}
        self._lang_codes = np.array([codes[lang] if lang else -1 for lang in langs], dtype=np.int32)
        self.encoder: SparseEncoder = encoder or encoder_for_index(self.details)
        if self.encoder.dim != terms:
            raise SparseIndexError(
                f"the sparse channel at {self.directory} has {terms} terms but encoder "
                f"{self.encoder.name} has {self.encoder.dim}: the index was built with another model."
            )

    def __len__(self) -> int:
        return len(self._docids)

    def search(self, query: str, k: int = 10, langs: Collection[str] | None = None) -> Ranking:
        """The top ``k`` documents for ``query`` (restricted to ``langs`` if given)."""
        return self.batch_search([query], k, langs)[0]

    def batch_search(
        self, queries: Sequence[str], k: int = 10, langs: Collection[str] | None = None
    ) -> list[Ranking]:
        """One ranking per query: a single encoder call and one sparse matrix product for all of them."""
        if isinstance(queries, str):
            raise TypeError("batch_search takes a list of queries; use search() for one.")
        texts = list(queries)
        for i, query in enumerate(texts):
            if not isinstance(query, str) or not query.strip():
                raise ValueError(f"query #{i} is empty: give some words to search for.")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer (got {k!r}).")
        if not texts:
            return []
        allowed = self._allowed(langs)
        vectors = self.encoder.encode_queries([q.strip() for q in texts]).tocsr()
        scores = (vectors @ self._index).tocsr()  # queries x documents, only candidates stored
        return [self._top(scores, row, k, allowed) for row in range(len(texts))]

    def _allowed(self, langs: Collection[str] | None) -> np.ndarray | None:
        if not langs:
            return None
        if isinstance(langs, str):
            langs = [langs]
        wanted = [self._lang_names.index(lang) for lang in set(langs) if lang in self._lang_names]
        return self._lang_codes_mask(wanted)

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
        hits = []
        for rank, i in enumerate(order, start=1):
            doc = int(cols[i])
            score = float(vals[i])
            hits.append(
                Hit(
                    docid=self._docids[doc],
                    score=score,
                    lang=self._langs[doc],
                    sources={SOURCE: ChannelScore(rank=rank, score=score)},
                )
            )
        return Ranking(source=SOURCE, hits=tuple(hits))

    def close(self) -> None:
        """Release the encoder's worker threads and the in-memory index."""
        close = getattr(self.encoder, "close", None)
        if callable(close):
            close()
        self._index = sp.csr_matrix((0, 0), dtype=np.float32)
