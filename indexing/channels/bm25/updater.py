"""Incremental updates of a built BM25 channel: Lucene sub-indexes opened in append mode."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from xlir.indexing.channels.base import ChannelUpdater
from xlir.indexing.channels.bm25.analyzers import analyzer_for, indexer_args
from xlir.indexing.channels.bm25.java import ensure_jvm
from xlir.indexing.channels.bm25.store import (
    UNKNOWN_LANG,
    bm25_params,
    count_documents,
    document_contents,
    loss_message,
    lucene_json,
    subindex_details,
    subindex_name,
)
from xlir.indexing.documents import Document

logger = logging.getLogger(__name__)


class BM25Updater(ChannelUpdater):
    """Incremental updates of a built BM25 channel (the :class:`xlir.indexing.channels.base.ChannelUpdater` protocol).

    Each touched sub-index is opened with Anserini's ``SimpleIndexer`` in append mode, with exactly the
    arguments the writer used (so the same analyzer and Lucene document generator): ``delete`` removes
    documents by their ``id`` term from every sub-index (a replaced document may change language),
    ``add`` routes documents to their language's sub-index (a new language gets a new sub-index, with
    :func:`xlir.indexing.channels.bm25.analyzers.analyzer_for` as at build time). ``close`` expunges the deleted documents
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
        subindexes = subindex_details(details)
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
                raise RuntimeError(loss_message(name, self._analyzers[name], len(batch), accepted))

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
