"""The BM25 channel's files: one Lucene index per document language, and how documents go into one.

``directory/<lang>/`` holds the documents of one language, analyzed by that language's analyzer (see
:mod:`xlir.indexing.channels.bm25.analyzers`); documents of unknown language go to ``directory/und/``
(language-neutral). Only ids and analyzed contents (title + text) are indexed; texts live in the
separate docstore. The manifest details record ``k1``, ``b`` and per sub-index its path, analyzer and
document count. The translate channel keeps its one Lucene index in the same form.

Each document crosses into the JVM as one JSON string ``{"id": ..., "contents": ...}`` in a ``String[]``
per batch (``addRawDocuments``), which Anserini parses into the same ``JsonCollection`` document that
``JsonCollection.Document.fromFields`` makes: one JNI conversion per document instead of a Java method
call and a Java object proxy per document, about a fifth of the Python-side cost.
"""

from __future__ import annotations

import re
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any

from xlir.indexing.channels.bm25.analyzers import indexer_args, prepare_text
from xlir.indexing.channels.bm25.java import ensure_jvm
from xlir.indexing.documents import Document, document_text
from xlir.indexing.errors import ConfigError, IndexDamagedError

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
        raise ConfigError(
            f"language code {lang!r} cannot name a BM25 sub-index; use an ISO 639 code such as 'de' or 'ast'"
        )
    return lang


def document_contents(analyzer: str, doc: Document) -> str:
    """What the ``contents`` field of ``doc`` receives: title and text, pretokenized for ``analyzer``."""
    return prepare_text(analyzer, document_text(doc, "\n"))


def lucene_json(docid: str, contents: str) -> str:
    """The JSON record Anserini's ``JsonCollection`` reads for one document: its id and contents.

    Non-ASCII characters are written as ``\\u`` escapes, so the string crosses into Java as plain ASCII
    and Jackson restores every character (astral ones as surrogate pairs) exactly.
    """
    return f'{{"id":{encode_basestring_ascii(docid)},"contents":{encode_basestring_ascii(contents)}}}'


def subindex_details(details: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``subindexes`` mapping of a BM25 channel's manifest details (name -> path, analyzer, documents)."""
    subindexes = details.get("subindexes")
    if not isinstance(subindexes, dict):
        raise IndexDamagedError(
            "BM25 details have no 'subindexes' mapping; the manifest is damaged: rebuild the index"
        )
    return subindexes


def bm25_params(config: dict[str, Any]) -> tuple[float, float]:
    """Validated (k1, b) from a channel config or manifest details."""
    try:
        k1 = float(config.get("k1", DEFAULT_K1))
        b = float(config.get("b", DEFAULT_B))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"BM25 k1 and b must be numbers, got k1={config.get('k1')!r}, b={config.get('b')!r}"
        ) from exc
    if k1 < 0:
        raise ConfigError(f"BM25 k1 must be >= 0, got {k1}")
    if not 0.0 <= b <= 1.0:
        raise ConfigError(f"BM25 b must be between 0 and 1, got {b}")
    return k1, b


class LuceneSubIndex:
    """One Lucene index being written (Anserini's indexer), its analyzer and what has been sent to it."""

    def __init__(self, path: Path, analyzer: str, threads: int) -> None:
        from pyserini.index.lucene import LuceneIndexer

        self.path = path
        self.analyzer = analyzer
        self.buffer: list[Any] = []
        self.added = 0
        self.accepted = 0
        args = ["-index", str(path), *indexer_args(analyzer)]
        self.indexer = LuceneIndexer(str(path), args=args, threads=threads)

    def queue(self, doc: Document) -> None:
        """Buffer ``doc`` (analyzed for this index) for the next :meth:`flush`."""
        self.buffer.append(lucene_json(doc.id, document_contents(self.analyzer, doc)))

    def flush(self) -> None:
        """Send the buffer to Lucene; raise if Lucene dropped any document of it."""
        if not self.buffer:
            return
        sent = len(self.buffer)
        self.accepted += self.indexer.object.addRawDocuments(self.buffer)
        self.added += sent
        self.buffer = []
        if self.accepted != self.added:
            raise RuntimeError(loss_message(self.path.name, self.analyzer, self.added, self.accepted))

    def verified_count(self) -> int:
        """Documents in the committed index, read back from disk; raise if Lucene lost any it was sent."""
        count = count_documents(self.path)
        if count != self.added:
            raise RuntimeError(loss_message(self.path.name, self.analyzer, self.added, count))
        return count


def loss_message(name: str, analyzer: str, added: int, indexed: int) -> str:
    """What to say when Lucene indexed fewer documents than it was given (an analyzer failed in the JVM)."""
    return (
        f"BM25 sub-index {name!r} (analyzer {analyzer!r}) indexed {indexed} of {added} documents: "
        "Lucene failed to analyze the rest (for example a language whose analyzer this Java runtime "
        "cannot run). Index this language with the language-neutral analyzer or report it."
    )


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
