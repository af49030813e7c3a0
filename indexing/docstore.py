"""The document store kept beside every index: id -> text, title, language, metadata.

Channels keep only what they search with; the docstore keeps what a person reads (snippets,
``GET /documents/{id}``, eval debugging). SQLite: one file, transactional, readable from many threads,
and updatable in place for incremental indexing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from xlir.indexing.documents import Document
from xlir.indexing.errors import IndexIncompleteError

DOCSTORE_NAME = "docs.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    id TEXT PRIMARY KEY,
    lang TEXT,
    title TEXT,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    origin TEXT NOT NULL
) WITHOUT ROWID;
"""


class DocStore:
    """SQLite-backed store of the documents of one index."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise IndexIncompleteError(f"{self.path}: the index has no document store; rebuild the index.")
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        if create:
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.executescript(_SCHEMA)

    @classmethod
    def in_directory(cls, directory: Path, *, create: bool = False) -> DocStore:
        return cls(Path(directory) / DOCSTORE_NAME, create=create)

    def add_many(self, docs: Iterable[Document]) -> None:
        """Insert new documents in one transaction (an id already stored raises ``sqlite3.IntegrityError``)."""
        rows = [
            (d.id, d.lang, d.title, d.text, _dumps(d.metadata) if d.metadata else "{}", d.origin)
            for d in docs
        ]
        with self._db:
            self._db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?)", rows)

    def upsert_many(self, docs: Iterable[Document]) -> None:
        """Add documents, replacing any stored under the same id (one transaction; idempotent)."""
        rows = [
            (d.id, d.lang, d.title, d.text, json.dumps(d.metadata, ensure_ascii=False), d.origin)
            for d in docs
        ]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?, ?)", rows)

    def delete_many(self, docids: Iterable[str]) -> int:
        """Remove the documents with these ids (absent ids are ignored); returns how many were removed."""
        ids = list(dict.fromkeys(docids))
        removed = 0
        with self._db:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                removed += self._db.execute(f"DELETE FROM docs WHERE id IN ({marks})", chunk).rowcount
        return removed

    def existing(self, docids: Iterable[str]) -> set[str]:
        """Which of these ids the store holds."""
        ids = list(dict.fromkeys(docids))
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0] for row in self._db.execute(f"SELECT id FROM docs WHERE id IN ({marks})", chunk)
            )
        return found

    def get(self, docid: str) -> Document | None:
        row = self._db.execute("SELECT * FROM docs WHERE id = ?", (docid,)).fetchone()
        return _document(row) if row else None

    def get_many(self, docids: Iterable[str]) -> dict[str, Document]:
        ids = list(dict.fromkeys(docids))
        found: dict[str, Document] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._db.execute(f"SELECT * FROM docs WHERE id IN ({marks})", chunk):
                found[row[0]] = _document(row)
        return found

    def origin_of(self, docid: str) -> str | None:
        row = self._db.execute("SELECT origin FROM docs WHERE id = ?", (docid,)).fetchone()
        return row[0] if row else None

    def language_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT COALESCE(lang, 'und'), COUNT(*) FROM docs GROUP BY 1 ORDER BY 1")
        return dict(rows.fetchall())

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]

    def __iter__(self) -> Iterator[Document]:
        for row in self._db.execute("SELECT * FROM docs ORDER BY id"):
            yield _document(row)

    def close(self) -> None:
        self._db.close()


_dumps = json.JSONEncoder(ensure_ascii=False).encode


def _document(row: tuple) -> Document:
    docid, lang, title, text, metadata, origin = row
    return Document(id=docid, text=text, lang=lang, title=title, metadata=json.loads(metadata), origin=origin)
