"""The BM25 channel writer: routes each document to its language's Lucene sub-index.

Documents are buffered per language and handed to Anserini's ``SimpleIndexer`` (through Pyserini's
``LuceneIndexer``) in batches, which Anserini analyzes on its own thread pool (the files:
:mod:`xlir.indexing.channels.bm25.store`). ``close`` commits every sub-index and re-opens it to check
that it holds exactly the documents that were added: an analyzer that fails inside the JVM makes
Anserini skip documents without raising, and that must not go unseen.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from xlir.indexing.channels.base import ChannelWriter
from xlir.indexing.channels.bm25 import analyzers
from xlir.indexing.channels.bm25.analyzers import NEUTRAL, analyzer_for
from xlir.indexing.channels.bm25.java import ensure_jvm
from xlir.indexing.channels.bm25.store import (
    BATCH_SIZE,
    UNKNOWN_LANG,
    LuceneSubIndex,
    bm25_params,
    subindex_name,
)
from xlir.indexing.documents import Document
from xlir.indexing.errors import ConfigError

logger = logging.getLogger(__name__)


@contextmanager
def _quiet_analyzer_choice() -> Iterator[None]:
    """Hold back :func:`analyzer_for`'s per-language fallback warnings (the writer logs one summary)."""
    analyzers.logger.addFilter(_drop_record)
    try:
        yield
    finally:
        analyzers.logger.removeFilter(_drop_record)


def _drop_record(record: logging.LogRecord) -> bool:
    return False


class BM25Writer(ChannelWriter):
    """Channel writer for BM25: routes each document to its language's Lucene sub-index.

    ``config``: ``k1`` (default 0.9) and ``b`` (default 0.4), recorded for the searcher; ``threads``
    (default: the CPU count) for Anserini's analysis threads; ``batch_size`` (default 2000).
    """

    def __init__(self, directory: Path, config: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.k1, self.b = bm25_params(config)
        self.threads = int(config.get("threads") or os.cpu_count() or 1)
        self.batch_size = int(config.get("batch_size", BATCH_SIZE))
        if self.threads < 1 or self.batch_size < 1:
            raise ConfigError(
                f"BM25 threads and batch_size must be >= 1, got {self.threads}, {self.batch_size}"
            )
        self._subindexes: dict[str, LuceneSubIndex] = {}
        self._by_lang: dict[str | None, LuceneSubIndex] = {}
        self._closed = False
        ensure_jvm()

    def _subindex(self, lang: str | None) -> LuceneSubIndex:
        sub = self._by_lang.get(lang)
        if sub is not None:  # the common case: a language seen before, no name check per document
            return sub
        name = subindex_name(lang)
        sub = self._subindexes.get(name)
        if sub is None:
            path = self.directory / name
            if path.exists() and any(path.iterdir()):
                raise RuntimeError(
                    f"BM25 sub-index {path} already exists; build into an empty directory "
                    "(delete the old index first)"
                )
            with _quiet_analyzer_choice():
                analyzer = analyzer_for(lang)
            sub = LuceneSubIndex(path, analyzer, self.threads)
            self._subindexes[name] = sub
        self._by_lang[lang] = sub
        return sub

    def add(self, doc: Document) -> None:
        """Queue ``doc`` for its language's sub-index (sent to Lucene in batches)."""
        self.add_many((doc,))

    def add_many(self, docs: Iterable[Document]) -> None:
        """Queue documents for their languages' sub-indexes; full buffers are sent to Lucene at once."""
        if self._closed:
            raise RuntimeError("BM25Writer.add() after close(); open a new writer")
        by_lang = self._by_lang
        batch_size = self.batch_size
        for doc in docs:
            sub = by_lang.get(doc.lang) or self._subindex(doc.lang)
            sub.queue(doc)
            if len(sub.buffer) >= batch_size:
                sub.flush()

    def close(self) -> dict[str, Any]:
        """Commit every sub-index, verify its document count, and return the manifest details."""
        if self._closed:
            raise RuntimeError("BM25Writer.close() called twice")
        self._closed = True
        try:
            for sub in self._subindexes.values():
                sub.flush()
        finally:
            for sub in self._subindexes.values():
                sub.indexer.close()
        subindexes: dict[str, dict[str, Any]] = {}
        for name, sub in sorted(self._subindexes.items()):
            subindexes[name] = {"path": name, "analyzer": sub.analyzer, "documents": sub.verified_count()}
        logger.debug("BM25 index at %s: %s", self.directory, subindexes)
        _warn_neutral(subindexes)
        return {"k1": self.k1, "b": self.b, "subindexes": subindexes}


def _warn_neutral(subindexes: dict[str, dict[str, Any]]) -> None:
    """One warning naming every sub-index analyzed language-neutrally (no stemming, no stopwords)."""
    neutral = sorted(name for name, info in subindexes.items() if info["analyzer"] == NEUTRAL)
    if not neutral:
        return
    langs = [name for name in neutral if name != UNKNOWN_LANG]
    parts = []
    if langs:
        parts.append(f"{len(langs)} language(s) without a Lucene analyzer ({', '.join(langs)})")
    if UNKNOWN_LANG in neutral:
        parts.append(f"documents of unknown language (sub-index {UNKNOWN_LANG!r})")
    logger.warning(
        "BM25: %s indexed with the language-neutral analyzer (lowercased words, no stemming, no stopwords)",
        " and ".join(parts),
    )
