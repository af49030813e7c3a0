"""The BM25 channel searcher: searches each language's Lucene sub-index with that language's analyzer.

Built from the details :class:`xlir.indexing.channels.bm25.writer.BM25Writer` returned (k1, b, and per sub-index its path,
analyzer and document count). A query is analyzed separately by every searched sub-index's own analyzer
(German stemming for the German sub-index, CJK bigrams for Chinese, ...), and the hits of all searched
sub-indexes are merged by BM25 score.

An ``allowed`` set of document ids becomes a Lucene filter clause on the id field inside each
sub-index's search (:mod:`xlir.indexing.channels.bm25.idfilter`), so the top ``k`` are the best allowed
documents sharing a term with the query; ``langs`` still selects the sub-indexes searched.

This talks to Anserini's ``SimpleSearcher`` (the Java class Pyserini's ``LuceneSearcher`` wraps) through
``jnius`` directly: importing ``pyserini.search.lucene`` also imports torch and transformers for
Pyserini's neural encoders (about 4 s), which a BM25 search never needs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xlir.indexing.channels.base import NO_DOCUMENTS, Allowed, ChannelSearcher, Langs, QueryLangs
from xlir.indexing.channels.bm25.analyzers import check_analyzer, java_analyzer, prepare_text
from xlir.indexing.channels.bm25.idfilter import IdFilters, restricted_query
from xlir.indexing.channels.bm25.java import ensure_jvm
from xlir.indexing.channels.bm25.store import UNKNOWN_LANG, bm25_params, subindex_details
from xlir.indexing.errors import IndexIncompleteError
from xlir.indexing.ranking import Ranking

logger = logging.getLogger(__name__)

SOURCE = "bm25"


class _Sub:
    """One open sub-index: its language, analyzer name and Anserini searcher."""

    def __init__(self, lang: str, analyzer: str, searcher: Any) -> None:
        self.lang = lang
        self.analyzer = analyzer
        self.searcher = searcher

    @property
    def hit_lang(self) -> str | None:
        return None if self.lang == UNKNOWN_LANG else self.lang


class BM25Searcher(ChannelSearcher):
    """Channel searcher for BM25 over per-language Lucene sub-indexes.

    ``details``: what the writer returned (``k1``, ``b``, ``subindexes``: lang -> path/analyzer/documents).
    ``langs`` filters select sub-indexes by language; ``"und"`` selects documents of unknown language.
    """

    source = SOURCE

    def __init__(self, directory: Path, details: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.k1, self.b = bm25_params(details)
        subindexes = subindex_details(details)
        ensure_jvm()
        from jnius import autoclass

        simple_searcher = autoclass("io.anserini.search.SimpleSearcher")
        self._subs: dict[str, _Sub] = {}
        self._filters = IdFilters()
        try:
            for lang, info in sorted(subindexes.items()):
                analyzer = check_analyzer(str(info.get("analyzer")))
                path = self.directory / str(info.get("path", lang))
                if not any(path.glob("segments_*")):
                    raise IndexIncompleteError(
                        f"BM25 sub-index {lang!r} is missing at {path}; the index directory is incomplete: "
                        "rebuild the index"
                    )
                searcher = simple_searcher(str(path))
                self._subs[lang] = _Sub(lang, analyzer, searcher)
                searcher.set_analyzer(java_analyzer(analyzer))
                searcher.set_bm25(self.k1, self.b)
        except BaseException:
            self.close()
            raise

    @property
    def languages(self) -> list[str]:
        """Languages (sub-index names) this searcher holds."""
        return sorted(self._subs)

    def _select(self, langs: frozenset[str] | None) -> list[_Sub]:
        if langs is None:
            return list(self._subs.values())
        return [self._subs[lang] for lang in sorted(langs) if lang in self._subs]

    def batch_search(
        self,
        queries: Sequence[str],
        k: int = 10,
        langs: Langs = None,
        threads: int = 1,
        *,
        query_langs: QueryLangs = None,
        allowed: Allowed = None,
    ) -> list[Ranking]:
        """:meth:`search` for many queries, each sub-index searched with ``threads`` Java threads (one
        query at a time when restricted to ``allowed`` ids)."""
        return self._run_batch(queries, k, langs, query_langs, allowed, threads=threads)

    def _check_ready(self, threads: int | None = None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")

    def _restrict(self, langs: frozenset[str] | None, allowed: Allowed) -> Any:
        """The sub-indexes searched, and the filter clause keeping only the ``allowed`` ids (None: no filter)."""
        subs = self._select(langs)
        if allowed is None:
            return subs, None
        if not allowed or not subs:
            return NO_DOCUMENTS
        return subs, self._filters.get(allowed)

    def _search_batch(
        self,
        queries: list[str],
        k: int,
        restriction: Any,
        query_langs: QueryLangs,
        threads: int | None = None,
    ) -> list[Ranking]:
        """Top ``k`` documents for each query over the sub-indexes of ``langs`` (all if None), by BM25
        score, among the ``allowed`` ids when given: with the filter clause one query at a time, else all
        queries in one batch per sub-index (``threads``; None, from :meth:`search`: one query at a time)."""
        subs, id_filter = restriction
        if id_filter is not None:
            return [self._restricted(query, k, subs, id_filter) for query in queries]
        if threads is None:
            return [self._single(query, k, subs) for query in queries]
        from jnius import autoclass

        array_list = autoclass("java.util.ArrayList")
        qids = array_list()
        for i in range(len(queries)):
            qids.add(str(i))
        scored: list[list[tuple[str, float, str | None]]] = [[] for _ in queries]
        for sub in subs:
            texts = array_list()
            for query in queries:
                texts.add(prepare_text(sub.analyzer, query))
            results = sub.searcher.batch_search(texts, qids, int(k), int(threads))
            for i in range(len(queries)):
                for hit in results.get(str(i)) or ():
                    scored[i].append((str(hit.docid), float(hit.score), sub.hit_lang))
        return [Ranking.from_scored(SOURCE, hits, k) for hits in scored]

    def _single(self, query: str, k: int, subs: list[_Sub]) -> Ranking:
        scored: list[tuple[str, float, str | None]] = []
        for sub in subs:
            for hit in sub.searcher.search(prepare_text(sub.analyzer, query), k):
                scored.append((str(hit.docid), float(hit.score), sub.hit_lang))
        return Ranking.from_scored(SOURCE, scored, k)

    def _restricted(self, query: str, k: int, subs: list[_Sub], id_filter: Any) -> Ranking:
        """``query`` searched with a filter clause keeping only the allowed ids."""
        scored: list[tuple[str, float, str | None]] = []
        for sub in subs:
            text = prepare_text(sub.analyzer, query)
            for hit in sub.searcher.search(restricted_query(sub.searcher, text, id_filter), int(k)):
                scored.append((str(hit.docid), float(hit.score), sub.hit_lang))
        return Ranking.from_scored(SOURCE, scored, k)

    def close(self) -> None:
        """Close every sub-index searcher (idempotent)."""
        subs, self._subs = self._subs, {}
        self._filters.clear()
        for sub in subs.values():
            try:
                sub.searcher.close()
            except Exception:  # closing is best effort; the index files are read-only here
                logger.debug("closing BM25 sub-index %s failed", sub.lang, exc_info=True)
