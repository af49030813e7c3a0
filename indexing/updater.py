"""Incremental updates of a built index: add, replace and delete documents without a rebuild.

:class:`IndexUpdater` changes an index directory in place. One batch (``upsert(docs)`` or
``delete(ids)``) is applied to the document store and to **every** channel of the index, then the
manifest (channel details, documents per language) is rewritten. The result equals a fresh build over
the same final documents (for BM25: the same ids and scores, because deletions are expunged so that
Lucene's collection statistics match; see :class:`xlir.indexing.channels.bm25.updater.BM25Updater`).

Design
------
* **Per-channel protocol.** Each channel offers a :class:`xlir.indexing.channels.base.ChannelUpdater` named in
  :data:`xlir.indexing.channels.CHANNELS` (like the writers): ``delete(ids)``, ``add(docs)``,
  ``close() -> details``. An upsert is "delete every id of the batch, then add the batch", so a replaced
  document may change language (BM25 sub-index) freely. BM25, dense and sparse have updaters; an
  index with a channel that has none refuses updates with
  :class:`xlir.indexing.channels.base.UpdateNotSupportedError` before anything is written.
* **Crash safety: a write-ahead journal.** Before a batch touches anything it is written, with the
  documents' languages already resolved, to ``journal/<sequence>.json`` in the index directory
  (temporary file, fsync, atomic rename, fsync of the directory). Then the channels, the docstore and
  the manifest (temporary file + atomic rename) are updated, and the journal file is removed last.
  Opening an :class:`IndexUpdater` (and every new batch) first replays journal entries left by an
  interrupted process, in order. Replay is safe because both operations are idempotent: an upsert
  deletes its ids before adding them, a delete of an absent id does nothing, and each channel
  recomputes its manifest details from what is on disk.
* **Fields.** The docstore's typed field values change in the same transaction as its documents. The
  field types are fixed at build (``Manifest.fields``): a value that does not fit is refused before the
  batch is journaled, and a metadata key that is not a field of the index is kept as metadata only.
* **One writer at a time.** Each batch holds the index's writer lock (:mod:`xlir.indexing.locking`: an
  ``flock`` beside the index, shared with builds and servers); another writer gets
  :class:`xlir.indexing.locking.IndexLockedError` naming the holder, or waits (``wait``, ``timeout``).
  Searchers opened before a batch keep seeing the state they opened (Lucene readers are point-in-time);
  :meth:`xlir.retrieval.searcher.Searcher.reload` opens the new state. The HTTP server applies a batch
  and reloads under a writer lock, so no search sees half a batch.
* **Never a stale manifest.** Under the lock, before each batch, the manifest is read again from disk
  (another process may have written a batch, or a rebuild replaced the index: its ``build_id`` differs).
  A replaced index is followed: its config is taken, the batch is checked against it and applied to it
  (:attr:`IndexUpdater.replaced` counts such switches). The manifest written after the batch is always
  the one just read plus this batch's changes, its ``generation`` one higher: the commit readers
  follow (a server reopens its searcher when the manifest's (build_id, generation) changes). A
  replayed journal entry is committed again, so it counts as one more generation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xlir.errors import UserError
from xlir.indexing.channels.base import UpdateNotSupportedError, open_updater, updatable
from xlir.indexing.config import IndexConfig
from xlir.indexing.docstore import DocStore
from xlir.indexing.documents import Document
from xlir.indexing.fields import FieldValueError, field_rows
from xlir.indexing.filecommit import atomic_write_text, fsync
from xlir.indexing.locking import hold
from xlir.indexing.manifest import MANIFEST_NAME, Manifest
from xlir.indexing.publish import recover

log = logging.getLogger(__name__)

JOURNAL_DIR = "journal"


class UpdateError(UserError, ValueError):
    """A batch that cannot be applied as given (empty, duplicate ids, empty text, bad language)."""


@dataclass
class UpdateReport:
    """What one batch did: documents added (new ids), replaced, deleted, and ids not found (delete)."""

    operation: str
    added: int = 0
    replaced: int = 0
    deleted: int = 0
    missing: list[str] = field(default_factory=list)
    documents: int = 0
    languages: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class IndexUpdater:
    """Apply document batches to the index at ``index_dir`` in place (see the module docstring).

    Raises :class:`xlir.indexing.manifest.IndexNotFoundError` if ``index_dir`` is not an index and
    :class:`xlir.indexing.channels.base.UpdateNotSupportedError` if one of its channels cannot be updated.
    Pending journal entries of an interrupted update are replayed on construction. Another writer on
    the index: :class:`xlir.indexing.locking.IndexLockedError` at once, or with ``wait`` after waiting
    up to ``timeout`` seconds (None: as long as it takes); ``holder`` is what the lock names this writer.
    """

    def __init__(
        self,
        index_dir: Path | str,
        *,
        wait: bool = False,
        timeout: float | None = None,
        holder: str = "update",
    ) -> None:
        self.index_dir = Path(index_dir)
        self.manifest = Manifest.read(self.index_dir)
        self._check_updatable(self.manifest)
        self._config = IndexConfig.from_dict(self.manifest.config)
        self._wait, self._timeout, self._holder = wait, timeout, holder
        #: how many times a batch found the index replaced by a rebuild and followed it
        self.replaced = 0
        self._depth = 0
        with self.exclusive():
            pass  # replays what an interrupted process journaled

    @staticmethod
    def _check_updatable(manifest: Manifest) -> None:
        unsupported = [c for c in manifest.channels if not updatable(c)]
        if unsupported:
            raise UpdateNotSupportedError(unsupported)

    # -- public operations -------------------------------------------------------------------------

    def upsert(self, docs: Sequence[Document]) -> UpdateReport:
        """Add ``docs``, replacing stored documents with the same ids, in every channel and the docstore."""
        replaced = self.replaced
        prepared = self._prepare(docs)  # outside the lock: language detection takes its time
        with self.exclusive():
            if self.replaced != replaced:  # checked against an index a rebuild has replaced since
                prepared = self._prepare(docs)
            entry = {"op": "upsert", "docs": [_doc_to_json(d) for d in prepared]}
            return self._run(entry)

    def delete(self, ids: Iterable[str]) -> UpdateReport:
        """Remove the documents with these ids; ids the index does not hold are reported as missing."""
        unique = list(dict.fromkeys(ids))
        if not unique:
            raise UpdateError("no document ids to delete: give at least one id")
        bad = [docid for docid in unique if not isinstance(docid, str) or not docid.strip()]
        if bad:
            raise UpdateError(f"invalid document id(s) {bad[:5]!r}: ids are non-empty strings")
        with self.exclusive():
            return self._run({"op": "delete", "ids": unique})

    def pending(self) -> list[Path]:
        """Journal entries not yet applied (left by an interrupted update), oldest first."""
        directory = self.index_dir / JOURNAL_DIR
        if not directory.is_dir():
            return []
        return sorted(p for p in directory.glob("*.json"))

    # -- internals -----------------------------------------------------------------------------------

    def _prepare(self, docs: Sequence[Document]) -> list[Document]:
        from xlir.indexing.builder import _with_language
        from xlir.models.languages import normalize_language

        if not docs:
            raise UpdateError("no documents to add: give at least one document")
        seen: set[str] = set()
        prepared: list[Document] = []
        for position, doc in enumerate(docs):
            where = f"document #{position} ({doc.id!r})"
            if not isinstance(doc.id, str) or not doc.id.strip():
                raise UpdateError(f"document #{position}: invalid id {doc.id!r}; give a non-empty id")
            if doc.id in seen:
                raise UpdateError(f"{where}: the id occurs twice in this batch; send each document once")
            seen.add(doc.id)
            if not isinstance(doc.text, str) or not doc.text.strip():
                raise UpdateError(f"{where}: the text is empty; give the document some text")
            if doc.lang is not None:
                try:
                    doc = Document(
                        id=doc.id,
                        text=doc.text,
                        lang=normalize_language(doc.lang),
                        title=doc.title,
                        metadata=doc.metadata,
                        origin=doc.origin,
                    )
                except ValueError as exc:
                    raise UpdateError(f"{where}: {exc}") from exc
            if doc.metadata and self.manifest.fields:
                _check_fields(doc, self.manifest.fields, where)
            prepared.append(_with_language(doc, self._config))
        return prepared

    @contextmanager
    def exclusive(self, *, wait: bool | None = None, timeout: float | None = None) -> Iterator[None]:
        """Hold the index's writer lock (re-entrant); on first entry, catch up with the index on disk.

        Catching up: restore an interrupted publish, read the manifest again (following a rebuild, see
        the module docstring) and replay what an interrupted process journaled. ``wait`` and
        ``timeout`` default to the updater's.
        """
        wait = self._wait if wait is None else wait
        timeout = self._timeout if timeout is None else timeout
        with hold(self.index_dir, self._holder, wait=wait, timeout=timeout):
            self._depth += 1
            try:
                if self._depth == 1:
                    self._refresh()
                    self._replay()
                yield
            finally:
                self._depth -= 1

    def _refresh(self) -> None:
        """Read the manifest from disk again (the caller holds the lock); follow a rebuilt index."""
        recover(self.index_dir.resolve())
        manifest = Manifest.read(self.index_dir, recover=False)
        if manifest.identity != self.manifest.identity:
            self._check_updatable(manifest)
            log.warning(
                "%s was rebuilt (build %s, was %s): applying batches to the new index",
                self.index_dir,
                manifest.identity,
                self.manifest.identity,
            )
            self._config = IndexConfig.from_dict(manifest.config)
            self.replaced += 1
        self.manifest = manifest

    def _replay(self) -> None:
        for path in self.pending():
            try:
                entry = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise RuntimeError(
                    f"journal entry {path} cannot be read ({exc}); move it aside and rebuild the index "
                    "if its batch matters"
                ) from exc
            log.warning("replaying interrupted update %s (%s)", path.name, entry.get("op"))
            self._apply(entry)
            _remove(path)

    def _run(self, entry: dict[str, Any]) -> UpdateReport:
        started = time.perf_counter()
        path = self._journal(entry)
        report = self._apply(entry)
        _remove(path)
        report.seconds = round(time.perf_counter() - started, 4)
        return report

    def _journal(self, entry: dict[str, Any]) -> Path:
        directory = self.index_dir / JOURNAL_DIR
        directory.mkdir(exist_ok=True)
        sequence = max((int(p.stem) for p in directory.glob("*.json") if p.stem.isdigit()), default=0) + 1
        path = directory / f"{sequence:012d}.json"
        atomic_write_text(path, json.dumps(entry, ensure_ascii=False))
        return path

    def _apply(self, entry: dict[str, Any]) -> UpdateReport:
        op = entry.get("op")
        if op == "upsert":
            docs = [_doc_from_json(d) for d in entry["docs"]]
            ids = [d.id for d in docs]
        elif op == "delete":
            docs = []
            ids = list(entry["ids"])
        else:
            raise RuntimeError(f"unknown journal operation {op!r}; the journal is damaged")
        store = DocStore.in_directory(self.index_dir)
        try:
            present = store.existing(ids)
            channels = dict(self.manifest.channels)
            for name, details in self.manifest.channels.items():
                updater = open_updater(
                    name, self.index_dir / name, details, self._config.channel_config(name)
                )
                try:
                    updater.delete(ids)
                    if docs:
                        updater.add(docs)
                except BaseException:
                    updater.abort()
                    raise
                channels[name] = updater.close()
            if docs:
                store.upsert_many(docs)
            else:
                store.delete_many(ids)
            languages = store.language_counts()
            count = len(store)
        finally:
            store.close()
        self.manifest.channels = channels
        self.manifest.languages = languages
        self.manifest.documents = count
        self.manifest.generation += 1  # the commit: readers follow the new (build_id, generation)
        atomic_write_text(self.index_dir / MANIFEST_NAME, self.manifest.to_json())
        if op == "upsert":
            return UpdateReport(
                "upsert",
                added=len(ids) - len(present),
                replaced=len(present),
                documents=count,
                languages=languages,
            )
        missing = [docid for docid in ids if docid not in present]
        return UpdateReport(
            "delete", deleted=len(present), missing=missing, documents=count, languages=languages
        )


def _check_fields(doc: Document, fields: dict[str, str], where: str) -> None:
    """Raise :class:`FieldValueError` if a value of ``doc`` does not fit the index's field types."""
    try:
        for _ in field_rows(doc.metadata, fields):
            pass
    except FieldValueError as exc:
        raise FieldValueError(
            where,
            exc.problem,
            "Fix the value: the index's field types were fixed when it was built (see `xlir index info`)",
            exc.reason,
        ) from None


def _doc_to_json(doc: Document) -> dict[str, Any]:
    return {
        "id": doc.id,
        "text": doc.text,
        "lang": doc.lang,
        "title": doc.title,
        "metadata": doc.metadata,
        "origin": doc.origin,
    }


def _doc_from_json(data: dict[str, Any]) -> Document:
    return Document(
        id=data["id"],
        text=data["text"],
        lang=data.get("lang"),
        title=data.get("title"),
        metadata=data.get("metadata") or {},
        origin=data.get("origin") or "",
    )


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    fsync(path.parent)
