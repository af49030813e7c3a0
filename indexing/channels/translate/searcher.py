"""The translate channel searcher: BM25 over documents translated into one language at index time.

Built from the details :class:`xlir.indexing.channels.translate.writer.TranslatedWriter` returned. A query in the index's
target language is searched as it is; a query detected in another language is first translated into the
target when a translator for that pair exists here (query translation on top of document translation),
else searched as it is. Hits carry each document's ORIGINAL id and language (from ``langs.json``).

An ``allowed`` set of document ids (narrowed to the requested languages, which ``langs.json`` knows)
becomes a Lucene filter clause on the id field inside the search
(:mod:`xlir.indexing.channels.bm25.idfilter`); a language filter alone keeps the hits of a search
deepened until ``k`` of them are in those languages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xlir.indexing.channels.base import NO_DOCUMENTS, Allowed, ChannelSearcher, DetectedLanguage, QueryLangs
from xlir.indexing.channels.bm25.analyzers import check_analyzer, java_analyzer, prepare_text
from xlir.indexing.channels.bm25.idfilter import IdFilters, restricted_query
from xlir.indexing.channels.bm25.java import ensure_jvm
from xlir.indexing.channels.bm25.store import bm25_params
from xlir.indexing.channels.translate.store import LANGS_FILE, UNKNOWN_LANG, load_langs
from xlir.indexing.channels.translate.writer import translate_settings
from xlir.indexing.errors import IndexIncompleteError
from xlir.indexing.ranking import Ranking

logger = logging.getLogger(__name__)

SOURCE = "translate"
#: Confidence the query-language detector needs before a query is translated.
QUERY_LANG_CONFIDENCE = 0.5


class TranslatedSearcher(ChannelSearcher):
    """Channel searcher for the translate channel (same shape as :class:`xlir.indexing.channels.bm25.searcher.BM25Searcher`).

    ``langs`` filters hits by the documents' original languages.
    """

    source = SOURCE

    def __init__(self, directory: Path, details: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.target, self.engine, self.models = translate_settings(details)
        self.k1, self.b = bm25_params(details)
        self.analyzer = check_analyzer(str(details.get("analyzer")))
        path = self.directory / str(details.get("path", self.target))
        langs_file = self.directory / LANGS_FILE
        if not any(path.glob("segments_*")) or not langs_file.is_file():
            raise IndexIncompleteError(
                f"translate channel files are missing under {self.directory}; the index is incomplete: rebuild it"
            )
        self._langs: dict[str, str] = load_langs(self.directory)
        self.documents = len(self._langs)
        self._translators: dict[str, Any] = {}
        self._filters = IdFilters()
        ensure_jvm()
        from jnius import autoclass

        self._searcher: Any = autoclass("io.anserini.search.SimpleSearcher")(str(path))
        self._searcher.set_analyzer(java_analyzer(self.analyzer))
        self._searcher.set_bm25(self.k1, self.b)

    @property
    def languages(self) -> list[str]:
        """Original languages of the indexed documents."""
        return sorted(set(self._langs.values()))

    def _translator(self, lang: str) -> Any | None:
        from xlir.models.translators import TranslationUnavailableError, translator_for

        if lang not in self._translators:
            try:
                self._translators[lang] = translator_for(lang, self.target, self.engine, self.models)
            except TranslationUnavailableError:
                logger.info(
                    "no %s->%s query translator; %s queries are searched as they are", lang, self.target, lang
                )
                self._translators[lang] = None
        return self._translators[lang]

    def translate_queries(
        self, queries: Sequence[str], query_langs: Sequence[DetectedLanguage] | None = None
    ) -> list[str]:
        """Each query in the target language: translated when its language (``query_langs``, else detected
        here) is confidently another and a translator exists."""
        queries = list(queries)
        if query_langs is None:
            from xlir.models.languages import detect_languages

            query_langs = detect_languages(queries)
        out = list(queries)
        by_lang: dict[str, list[int]] = {}
        for i, (code, confidence) in enumerate(query_langs):
            if confidence >= QUERY_LANG_CONFIDENCE and code != self.target:
                by_lang.setdefault(code, []).append(i)
        for lang, positions in by_lang.items():
            translator = self._translator(lang)
            if translator is None:
                continue
            for i, text in zip(positions, translator.translate([queries[i] for i in positions]), strict=True):
                if text.strip():
                    out[i] = text
        return out

    def _hits(self, query: str, k: int, wanted: frozenset[str] | None) -> Ranking:
        text = prepare_text(self.analyzer, query)
        depth = k if wanted is None else min(max(4 * k, 100), max(self.documents, 1))
        while True:
            hits = self._searcher.search(text, depth)
            scored = []
            for hit in hits:
                docid = str(hit.docid)
                lang = self._langs.get(docid, UNKNOWN_LANG)
                if wanted is None or lang in wanted:
                    scored.append((docid, float(hit.score), None if lang == UNKNOWN_LANG else lang))
            if len(scored) >= k or len(hits) < depth or depth >= self.documents:
                return Ranking.from_scored(SOURCE, scored, k)
            depth = min(depth * 4, self.documents)

    def _filtered_hits(self, query: str, k: int, id_filter: Any) -> Ranking:
        text = prepare_text(self.analyzer, query)
        scored = []
        for hit in self._searcher.search(restricted_query(self._searcher, text, id_filter), int(k)):
            docid = str(hit.docid)
            lang = self._langs.get(docid, UNKNOWN_LANG)
            scored.append((docid, float(hit.score), None if lang == UNKNOWN_LANG else lang))
        return Ranking.from_scored(SOURCE, scored, k)

    def _restrict(self, langs: frozenset[str] | None, allowed: Allowed) -> Any:
        """The original languages a hit may be in (None = all), or, with ``allowed`` ids (narrowed to those
        languages), the filter clause keeping only them."""
        if allowed is None:
            return langs, None
        if langs is not None:
            allowed = frozenset(d for d in allowed if self._langs.get(d, UNKNOWN_LANG) in langs)
        if not allowed:
            return NO_DOCUMENTS
        return None, self._filters.get(allowed)

    def _search_batch(
        self, queries: list[str], k: int, restriction: Any, query_langs: QueryLangs
    ) -> list[Ranking]:
        """Top ``k`` documents (original ids, languages) for each query, translated to the target if
        needed (in batches per query language), among the ``allowed`` ids when given."""
        wanted, id_filter = restriction
        translated = self.translate_queries(queries, query_langs)
        if id_filter is None:
            return [self._hits(query, k, wanted) for query in translated]
        return [self._filtered_hits(query, k, id_filter) for query in translated]

    def close(self) -> None:
        """Close the Lucene searcher (idempotent)."""
        searcher, self._searcher = self._searcher, None
        self._filters.clear()
        if searcher is not None:
            try:
                searcher.close()
            except Exception:  # best effort: read-only files
                logger.debug("closing the translate searcher failed", exc_info=True)
