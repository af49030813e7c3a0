"""The translate channel searcher: BM25 over documents translated into one language at index time.

Built from the details :class:`xlir.indexing.channels.translate.writer.TranslatedWriter` returned. A query in the index's
target language is searched as it is; a query detected in another language is first translated into the
target when a translator for that pair exists here (query translation on top of document translation),
else searched as it is. Hits carry each document's ORIGINAL id and language (from ``langs.json``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from xlir.indexing.analyzers import check_analyzer, java_analyzer, prepare_text
from xlir.indexing.channels.bm25.writer import bm25_params
from xlir.indexing.channels.translate.writer import UNKNOWN_LANG, translate_settings
from xlir.indexing.java import ensure_jvm
from xlir.retrieval.ranking import ChannelScore, Hit, Ranking

logger = logging.getLogger(__name__)

SOURCE = "translate"
#: Confidence the query-language detector needs before a query is translated.
QUERY_LANG_CONFIDENCE = 0.5


class TranslatedSearcher:
    """Channel searcher for the translate channel (same shape as :class:`xlir.indexing.channels.bm25.searcher.BM25Searcher`).

    ``langs`` filters hits by the documents' original languages.
    """

    def __init__(self, directory: Path, details: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.target, self.engine, self.models = translate_settings(details)
        self.k1, self.b = bm25_params(details)
        self.analyzer = check_analyzer(str(details.get("analyzer")))
        path = self.directory / str(details.get("path", self.target))
        langs_file = self.directory / "langs.json"
        if not any(path.glob("segments_*")) or not langs_file.is_file():
            raise FileNotFoundError(
                f"translate channel files are missing under {self.directory}; the index is incomplete: rebuild it"
            )
        self._langs: dict[str, str] = json.loads(langs_file.read_text(encoding="utf-8"))
        self.documents = len(self._langs)
        self._translators: dict[str, Any] = {}
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

    def translate_queries(self, queries: Sequence[str]) -> list[str]:
        """Each query in the target language: detected, and translated when it is not and a translator exists."""
        from xlir.models.languages import detect_languages

        queries = list(queries)
        out = list(queries)
        by_lang: dict[str, list[int]] = {}
        for i, (code, confidence) in enumerate(detect_languages(queries)):
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

    @staticmethod
    def _check(query: str, k: int, where: str = "query") -> None:
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"{where} is empty; the translate channel needs at least one word to search for")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")

    def _wanted(self, langs: Collection[str] | None) -> set[str] | None:
        if langs is None:
            return None
        return {langs} if isinstance(langs, str) else set(langs)

    def _hits(self, query: str, k: int, wanted: set[str] | None) -> Ranking:
        text = prepare_text(self.analyzer, query)
        depth = k if wanted is None else min(max(4 * k, 100), max(self.documents, 1))
        while True:
            hits = self._searcher.search(text, depth)
            scored = []
            for hit in hits:
                docid = str(hit.docid)
                lang = self._langs.get(docid, UNKNOWN_LANG)
                if wanted is None or lang in wanted:
                    scored.append((float(hit.score), docid, None if lang == UNKNOWN_LANG else lang))
            if len(scored) >= k or len(hits) < depth or depth >= self.documents:
                return _ranking(scored, k)
            depth = min(depth * 4, self.documents)

    def search(self, query: str, k: int = 10, langs: Collection[str] | None = None) -> Ranking:
        """Top ``k`` documents (original ids, languages) for ``query``, translated to the target if needed."""
        self._check(query, k)
        (translated,) = self.translate_queries([query])
        return self._hits(translated, k, self._wanted(langs))

    def batch_search(
        self, queries: Sequence[str], k: int = 10, langs: Collection[str] | None = None, threads: int = 1
    ) -> list[Ranking]:
        """:meth:`search` for many queries (translated in batches per detected language)."""
        for i, query in enumerate(queries):
            self._check(query, k, where=f"query {i}")
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        wanted = self._wanted(langs)
        return [self._hits(query, k, wanted) for query in self.translate_queries(queries)]

    def close(self) -> None:
        """Close the Lucene searcher (idempotent)."""
        searcher, self._searcher = self._searcher, None
        if searcher is not None:
            try:
                searcher.close()
            except Exception:  # best effort: read-only files
                logger.debug("closing the translate searcher failed", exc_info=True)


def _ranking(scored: list[tuple[float, str, str | None]], k: int) -> Ranking:
    ordered = sorted(scored, key=lambda item: (-item[0], item[1]))[:k]
    hits = tuple(
        Hit(docid=docid, score=score, lang=lang, sources={SOURCE: ChannelScore(rank=rank, score=score)})
        for rank, (score, docid, lang) in enumerate(ordered, start=1)
    )
    return Ranking(source=SOURCE, hits=hits)
