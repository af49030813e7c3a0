"""The BM25 channel writer: one Lucene index (Anserini, in-process) per document language.

``directory/<lang>/`` holds the documents of one language, analyzed by that language's analyzer (see
:mod:`xlir.indexing.analyzers`); documents of unknown language go to ``directory/und/`` (language-neutral).
Only ids and analyzed contents (title + text) are indexed; texts live in the separate docstore.

Documents are buffered per language and handed to Anserini's ``SimpleIndexer`` (through Pyserini's
``LuceneIndexer``) in batches, which Anserini analyzes on its own thread pool. Each document crosses into
the JVM as one JSON string ``{"id": ..., "contents": ...}`` in a ``String[]`` per batch
(``addRawDocuments``), which Anserini parses into the same ``JsonCollection`` document that
``JsonCollection.Document.fromFields`` makes: one JNI conversion per document instead of a Java method call
and a Java object proxy per document, about a fifth of the Python-side cost. ``close`` commits every
sub-index and re-opens it to check that it holds exactly the documents that were added: an analyzer
that fails inside the JVM makes Anserini skip documents without raising, and that must not go unseen.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

from xlir.indexing import analyzers
from xlir.indexing.analyzers import NEUTRAL, analyzer_for, indexer_args, prepare_text
from xlir.indexing.documents import Document
from xlir.indexing.java import ensure_jvm

logger = logging.getLogger(__name__)

#: Sub-index name for documents without a language.
UNKNOWN_LANG = "und"
DEFAULT_K1 = 0.9
DEFAULT_B = 0.4
#: Documents handed to Anserini per call (per language).
BATCH_SIZE = 2000

_SAFE_LANG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


def subindex_name(lang: str | None) -> str:
    """Directory name of the sub-index for language ``lang`` (``und`` for unknown)."""
    if lang is None:
        return UNKNOWN_LANG
    if not _SAFE_LANG.fullmatch(lang):
        raise ValueError(
            f"language code {lang!r} cannot name a BM25 sub-index; use an ISO 639 code such as 'de' or 'ast'"
        )
    return lang


def document_contents(analyzer: str, doc: Document) -> str:
    """What the ``contents`` field of ``doc`` receives: title and text, pretokenized for ``analyzer``."""
    contents = f"{doc.title}\n{doc.text}" if doc.title else doc.text
    return prepare_text(analyzer, contents)


def lucene_json(docid: str, contents: str) -> str:
    """The JSON record Anserini's ``JsonCollection`` reads for one document: its id and contents.

    Non-ASCII characters are written as ``\\u`` escapes, so the string crosses into Java as plain ASCII
    and Jackson restores every character (astral ones as surrogate pairs) exactly.
    """
    return f'{{"id":{encode_basestring_ascii(docid)},"contents":{encode_basestring_ascii(contents)}}}'


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


def bm25_params(config: dict[str, Any]) -> tuple[float, float]:
    """Validated (k1, b) from a channel config or manifest details."""
    try:
        k1 = float(config.get("k1", DEFAULT_K1))
        b = float(config.get("b", DEFAULT_B))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"BM25 k1 and b must be numbers, got k1={config.get('k1')!r}, b={config.get('b')!r}"
        ) from exc
    if k1 < 0:
        raise ValueError(f"BM25 k1 must be >= 0, got {k1}")
    if not 0.0 <= b <= 1.0:
        raise ValueError(f"BM25 b must be between 0 and 1, got {b}")
    return k1, b


class _SubIndex:
    """One language's Anserini indexer, its analyzer and what has been sent to it."""

    def __init__(self, path: Path, analyzer: str, threads: int) -> None:
        from pyserini.index.lucene import LuceneIndexer

        self.path = path
        self.analyzer = analyzer
        self.buffer: list[Any] = []
        self.added = 0
        self.accepted = 0
        args = ["-index", str(path), *indexer_args(analyzer)]
        self.indexer = LuceneIndexer(str(path), args=args, threads=threads)


class BM25Writer:
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
            raise ValueError(
                f"BM25 threads and batch_size must be >= 1, got {self.threads}, {self.batch_size}"
            )
        self._subindexes: dict[str, _SubIndex] = {}
        self._by_lang: dict[str | None, _SubIndex] = {}
        self._closed = False
        ensure_jvm()

    def _subindex(self, lang: str | None) -> _SubIndex:
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
            sub = _SubIndex(path, analyzer, self.threads)
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
            sub.buffer.append(lucene_json(doc.id, document_contents(sub.analyzer, doc)))
            if len(sub.buffer) >= batch_size:
                self._flush(sub)

    def _flush(self, sub: _SubIndex) -> None:
        if not sub.buffer:
            return
        sent = len(sub.buffer)
        sub.accepted += sub.indexer.object.addRawDocuments(sub.buffer)
        sub.added += sent
        sub.buffer = []
        if sub.accepted != sub.added:
            raise RuntimeError(self._loss_message(sub.path.name, sub.analyzer, sub.added, sub.accepted))

    @staticmethod
    def _loss_message(lang: str, analyzer: str, added: int, indexed: int) -> str:
        return (
            f"BM25 sub-index {lang!r} (analyzer {analyzer!r}) indexed {indexed} of {added} documents: "
            "Lucene failed to analyze the rest (for example a language whose analyzer this Java runtime "
            "cannot run). Index this language with the language-neutral analyzer or report it."
        )

    def close(self) -> dict[str, Any]:
        """Commit every sub-index, verify its document count, and return the manifest details."""
        if self._closed:
            raise RuntimeError("BM25Writer.close() called twice")
        self._closed = True
        try:
            for sub in self._subindexes.values():
                self._flush(sub)
        finally:
            for sub in self._subindexes.values():
                sub.indexer.close()
        subindexes: dict[str, dict[str, Any]] = {}
        for name, sub in sorted(self._subindexes.items()):
            count = count_documents(sub.path)
            if count != sub.added:
                raise RuntimeError(self._loss_message(name, sub.analyzer, sub.added, count))
            subindexes[name] = {"path": name, "analyzer": sub.analyzer, "documents": count}
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


class BM25Updater:
    """Incremental updates of a built BM25 channel (the :class:`xlir.indexing.channels.base.ChannelUpdater` protocol).

    Each touched sub-index is opened with Anserini's ``SimpleIndexer`` in append mode, with exactly the
    arguments the writer used (so the same analyzer and Lucene document generator): ``delete`` removes
    documents by their ``id`` term from every sub-index (a replaced document may change language),
    ``add`` routes documents to their language's sub-index (a new language gets a new sub-index, with
    :func:`xlir.indexing.analyzers.analyzer_for` as at build time). ``close`` expunges the deleted documents
    (``forceMergeDeletes`` with no tolerance), so that Lucene's collection statistics, and with them
    every BM25 score, equal those of a fresh build over the same documents; it then commits each
    sub-index and returns the new details with recounted documents. ``abort`` rolls back.

    Cost: expunging rewrites each segment that lost a document, so replacing one document of a large
    sub-index rewrites that segment; batches amortize it.
    """

    def __init__(
        self, directory: Path, details: dict[str, Any], config: dict[str, Any] | None = None
    ) -> None:
        self.directory = Path(directory)
        self.k1, self.b = bm25_params(details)
        subindexes = details.get("subindexes")
        if not isinstance(subindexes, dict):
            raise ValueError("BM25 details have no 'subindexes' mapping; the manifest is damaged: rebuild")
        self._analyzers: dict[str, str] = {
            name: str(info.get("analyzer")) for name, info in subindexes.items()
        }
        self._paths: dict[str, str] = {name: str(info.get("path", name)) for name, info in subindexes.items()}
        self._counts: dict[str, int] = {
            name: int(info["documents"]) for name, info in subindexes.items() if "documents" in info
        }
        # A sub-index created by an interrupted update (not yet in the manifest) is picked up from disk.
        for path in sorted(self.directory.iterdir()) if self.directory.is_dir() else ():
            if path.is_dir() and path.name not in self._paths and any(path.glob("segments_*")):
                lang = None if path.name == UNKNOWN_LANG else path.name
                self._analyzers[path.name] = analyzer_for(lang)
                self._paths[path.name] = path.name
        self._open: dict[str, Any] = {}
        self._sent: dict[str, int] = {}
        self._accepted: dict[str, int] = {}
        self._closed = False
        ensure_jvm()
        from jnius import autoclass

        self._term = autoclass("org.apache.lucene.index.Term")
        self._term_query = autoclass("org.apache.lucene.search.TermQuery")

    def _indexer(self, name: str) -> Any:
        indexer = self._open.get(name)
        if indexer is None:
            from pyserini.index.lucene import LuceneIndexer

            path = self.directory / self._paths[name]
            args = ["-index", str(path), *indexer_args(self._analyzers[name])]
            indexer = LuceneIndexer(str(path), args=args, append=True, threads=1)
            self._open[name] = indexer
        return indexer

    def delete(self, ids: list[str]) -> None:
        """Remove the documents with these ids from every sub-index that holds one (absent ids are ignored).

        Each sub-index is first checked with a reader, so that only the sub-indexes that hold one of the
        ids are opened for writing (and rewritten by ``close``).
        """
        self._check_open()
        if not ids:
            return
        for name in sorted(self._paths):
            # A sub-index already open for writing may hold uncommitted documents: delete every id there.
            held = ids if name in self._open else sorted(self._holding(name, ids))
            if not held:
                continue
            writer = self._indexer(name).object.writer
            for docid in held:
                writer.deleteDocuments(self._term_query(self._term("id", docid)))

    def _holding(self, name: str, ids: list[str]) -> set[str]:
        """Which of ``ids`` the committed sub-index ``name`` holds."""
        from jnius import autoclass

        path = self.directory / self._paths[name]
        if not any(path.glob("segments_*")):
            return set()
        paths = autoclass("java.nio.file.Paths")
        directory = autoclass("org.apache.lucene.store.FSDirectory").open(paths.get(str(path)))
        try:
            reader = autoclass("org.apache.lucene.index.DirectoryReader").open(directory)
            try:
                return {docid for docid in ids if reader.docFreq(self._term("id", docid)) > 0}
            finally:
                reader.close()
        finally:
            directory.close()

    def add(self, docs: list[Document]) -> None:
        """Add documents (ids not present any more) to their language's sub-index."""
        self._check_open()
        by_name: dict[str, list[Any]] = {}
        for doc in docs:
            name = subindex_name(doc.lang)
            if name not in self._paths:
                self._analyzers[name] = analyzer_for(doc.lang)
                self._paths[name] = name
            by_name.setdefault(name, []).append(
                lucene_json(doc.id, document_contents(self._analyzers[name], doc))
            )
        for name, batch in by_name.items():
            accepted = int(self._indexer(name).object.addRawDocuments(batch))
            self._sent[name] = self._sent.get(name, 0) + len(batch)
            self._accepted[name] = self._accepted.get(name, 0) + accepted
            if accepted != len(batch):
                raise RuntimeError(
                    BM25Writer._loss_message(name, self._analyzers[name], len(batch), accepted)
                )

    def close(self) -> dict[str, Any]:
        """Expunge deletions, commit every touched sub-index and return the new manifest details."""
        self._check_open()
        self._closed = True
        from jnius import cast

        try:
            for indexer in self._open.values():
                writer = indexer.object.writer
                policy = writer.getConfig().getMergePolicy()
                if policy.getClass().getName() == "org.apache.lucene.index.TieredMergePolicy":
                    cast("org.apache.lucene.index.TieredMergePolicy", policy).setForceMergeDeletesPctAllowed(
                        0.0
                    )
                writer.forceMergeDeletes()
        except BaseException:
            self._rollback()
            raise
        opened, self._open = self._open, {}
        for indexer in opened.values():
            indexer.object.writer.commit()
            indexer.close()
        subindexes: dict[str, dict[str, Any]] = {}
        for name in sorted(self._paths):
            path = self.directory / self._paths[name]
            if name in opened or name not in self._counts:
                self._counts[name] = count_documents(path)
            subindexes[name] = {
                "path": self._paths[name],
                "analyzer": self._analyzers[name],
                "documents": self._counts[name],
            }
        return {"k1": self.k1, "b": self.b, "subindexes": subindexes}

    def abort(self) -> None:
        """Discard every change of this batch (nothing was committed)."""
        if not self._closed:
            self._closed = True
            self._rollback()

    def _rollback(self) -> None:
        opened, self._open = self._open, {}
        for name, indexer in opened.items():
            try:
                indexer.object.writer.rollback()
            except Exception:  # best effort: the journal replays the batch on the next open
                logger.warning("rolling back BM25 sub-index %s failed", name, exc_info=True)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("BM25Updater used after close()/abort(); open a new updater")


def count_documents(path: Path) -> int:
    """Number of live documents in the Lucene index at ``path`` (opened afresh from disk)."""
    ensure_jvm()
    from jnius import autoclass

    paths = autoclass("java.nio.file.Paths")
    directory = autoclass("org.apache.lucene.store.FSDirectory").open(paths.get(str(path)))
    try:
        reader = autoclass("org.apache.lucene.index.DirectoryReader").open(directory)
        try:
            return int(reader.numDocs())
        finally:
            reader.close()
    finally:
        directory.close()
