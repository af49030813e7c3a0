"""The document store kept beside every index: id -> text, title, language, metadata, typed field values.

Channels keep only what they search with; the docstore keeps what a person reads (snippets,
``GET /documents/{id}``, eval debugging) and what filters, facets and sorts read: one row per (document,
field, value) of every typed metadata field (:mod:`xlir.indexing.fields`), kept in the same transactions
as the documents, indexed by (field, keyword) and (field, number). Filters (:mod:`xlir.indexing.filters`),
facet counts and histograms are compiled to SQL over that table; ``lang`` is read from the documents'
own column. SQLite: one file, transactional, readable from many threads, updatable in place.

An index built before fields existed has no field table: it is created empty on open, the store is
:attr:`DocStore.legacy`, and a filter on metadata answers a :class:`~xlir.indexing.filters.FilterError`
saying to rebuild the index (``lang`` still works).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from xlir.indexing.documents import Document
from xlir.indexing.errors import IndexIncompleteError
from xlir.indexing.fields import LANG_FIELD, FieldsError, check_fields, date_key, field_rows, is_numeric
from xlir.indexing.filters import (
    And,
    Exists,
    Filter,
    FilterError,
    Not,
    Or,
    Range,
    Term,
    Terms,
    check_filter,
    coerce,
    fields_of,
)

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

#: The typed fields (``lang`` is recorded too, by builds only: its absence marks a store from before
#: fields) and their values: ``kw`` for keyword and date text, ``num`` for integer, float and date (days).
_FIELD_SCHEMA = """
CREATE TABLE IF NOT EXISTS field_types (
    fid INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS field_values (
    doc TEXT NOT NULL,
    fid INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    kw TEXT,
    num REAL,
    PRIMARY KEY (doc, fid, pos)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS field_values_kw ON field_values (fid, kw, doc);
CREATE INDEX IF NOT EXISTS field_values_num ON field_values (fid, num, doc);
"""

#: Calendar intervals of date histograms -> the SQL of a bucket's key (the first day, ISO) from a Julian day.
CALENDAR_INTERVALS = {
    "year": "strftime('%Y-01-01', {jd})",
    "quarter": "printf('%s-%02d-01', strftime('%Y', {jd}), ((CAST(strftime('%m', {jd}) AS INTEGER) - 1) / 3) * 3 + 1)",
    "month": "strftime('%Y-%m-01', {jd})",
    "week": "date({jd}, '-6 days', 'weekday 1')",
    "day": "date({jd})",
}

#: The documents a query may look at, given as one JSON array parameter (no temporary table, any size).
_IN_IDS = "IN (SELECT value FROM json_each(?))"

#: The language of a document as filters and facets see it (unknown = "und").
_LANG = "COALESCE(d.lang, 'und')"


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
            self._db.executescript(_FIELD_SCHEMA)
            with self._db:
                self._db.execute(
                    "INSERT OR IGNORE INTO field_types (name, type) VALUES (?, 'keyword')", (LANG_FIELD,)
                )
        else:
            self._open_fields()
        self._load_fields()

    def _open_fields(self) -> None:
        """Create the field tables of a store from before fields (empty: such a store is :attr:`legacy`)."""
        present = self._db.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('field_types', 'field_values')"
        ).fetchone()[0]
        if present == 2:
            return
        try:
            self._db.executescript(_FIELD_SCHEMA)
        except sqlite3.OperationalError:  # a read-only index: the tables stay absent, queries say rebuild
            pass

    def _load_fields(self) -> None:
        try:
            rows = self._db.execute("SELECT fid, name, type FROM field_types ORDER BY fid").fetchall()
        except sqlite3.OperationalError:
            rows = []
        self._fids = {name: fid for fid, name, _ in rows}
        self._types = {name: kind for _, name, kind in rows}
        #: True for a store built before xlir kept typed fields: only ``lang`` can be filtered.
        self.legacy = LANG_FIELD not in self._types

    @property
    def fields(self) -> dict[str, str]:
        """The typed metadata fields, name -> type (``lang`` not included: it is always a keyword)."""
        return {name: kind for name, kind in self._types.items() if name != LANG_FIELD}

    def field_type(self, name: str) -> str | None:
        """The type of a field (``lang``: keyword); None if the index has no such field."""
        return "keyword" if name == LANG_FIELD else self._types.get(name)

    def declare_fields(self, fields: Mapping[str, str]) -> None:
        """Add typed fields and index the values the stored documents already have for them.

        The build declares its declared fields before the first document and its inferred ones after the
        last (every stored value of an inferred field fits it by construction).
        """
        new = {name: kind for name, kind in check_fields(fields).items() if name not in self._types}
        clash = {
            n: (self._types[n], k) for n, k in fields.items() if n in self._types and self._types[n] != k
        }
        if clash:
            raise FieldsError(f"fields already declared with another type: {clash}")
        if not new:
            return
        with self._db:
            self._db.executemany("INSERT INTO field_types (name, type) VALUES (?, ?)", list(new.items()))
        self._load_fields()
        if len(self) == 0:
            return
        rows: list[tuple[str, int, int, str | None, float | None]] = []
        cursor = self._db.cursor()  # read in batches while the values are written (another table)
        cursor.execute("SELECT id, metadata FROM docs WHERE metadata != '{}'")
        with self._db:
            while batch := cursor.fetchmany(5000):
                for docid, metadata in batch:
                    meta = json.loads(metadata)
                    if any(name in meta for name in new):
                        rows.extend(self._rows(docid, meta, new))
                self._db.executemany("INSERT INTO field_values VALUES (?, ?, ?, ?, ?)", rows)
                rows.clear()

    def _rows(
        self, docid: str, metadata: Mapping[str, Any], fields: Mapping[str, str] | None = None
    ) -> list[tuple[str, int, int, str | None, float | None]]:
        fids = self._fids
        return [
            (docid, fids[name], pos, kw, num)
            for name, pos, kw, num in field_rows(metadata, fields or self.fields, docid=docid)
        ]

    def _field_rows(self, docs: list[Document]) -> list[tuple[str, int, int, str | None, float | None]]:
        if len(self._types) <= 1:
            return []
        fields = self.fields
        rows: list[tuple[str, int, int, str | None, float | None]] = []
        for d in docs:
            if d.metadata:
                rows.extend(self._rows(d.id, d.metadata, fields))
        return rows

    @classmethod
    def in_directory(cls, directory: Path, *, create: bool = False) -> DocStore:
        return cls(Path(directory) / DOCSTORE_NAME, create=create)

    def add_many(self, docs: Iterable[Document]) -> None:
        """Insert new documents and their field values in one transaction (an id already stored raises
        ``sqlite3.IntegrityError``; a value that does not fit its field raises
        :class:`~xlir.indexing.fields.FieldValueError` before anything is written)."""
        docs = list(docs)
        rows = [
            (d.id, d.lang, d.title, d.text, _dumps(d.metadata) if d.metadata else "{}", d.origin)
            for d in docs
        ]
        values = self._field_rows(docs)
        with self._db:
            self._db.executemany("INSERT INTO docs VALUES (?, ?, ?, ?, ?, ?)", rows)
            if values:
                self._db.executemany("INSERT INTO field_values VALUES (?, ?, ?, ?, ?)", values)

    def upsert_many(self, docs: Iterable[Document]) -> None:
        """Add documents, replacing any stored under the same id (one transaction; idempotent)."""
        docs = list(docs)
        rows = [
            (d.id, d.lang, d.title, d.text, json.dumps(d.metadata, ensure_ascii=False), d.origin)
            for d in docs
        ]
        values = self._field_rows(docs)
        with self._db:
            self._delete_values([d.id for d in docs])
            self._db.executemany("INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?, ?)", rows)
            if values:
                self._db.executemany("INSERT INTO field_values VALUES (?, ?, ?, ?, ?)", values)

    def delete_many(self, docids: Iterable[str]) -> int:
        """Remove the documents with these ids (absent ids are ignored); returns how many were removed."""
        ids = list(dict.fromkeys(docids))
        removed = 0
        with self._db:
            self._delete_values(ids)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                removed += self._db.execute(f"DELETE FROM docs WHERE id IN ({marks})", chunk).rowcount
        return removed

    def _delete_values(self, ids: list[str]) -> None:
        if ids and not self.legacy:
            self._db.execute(f"DELETE FROM field_values WHERE doc {_IN_IDS}", (json.dumps(ids),))

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
        """Documents per language (``und``: unknown), counted now from the store, in code order.

        The manifest's ``languages`` are these counts, taken when a build finishes and again after every
        update batch under the index's writer lock, so that another writer's batches are never lost from
        them (the docstore is the one record every writer process commits to).
        """
        rows = self._db.execute("SELECT COALESCE(lang, 'und'), COUNT(*) FROM docs GROUP BY 1 ORDER BY 1")
        return dict(rows.fetchall())

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]

    def __iter__(self) -> Iterator[Document]:
        for row in self._db.execute("SELECT * FROM docs ORDER BY id"):
            yield _document(row)

    # -- filters, facets, histograms, sort values -----------------------------------------------------

    def check_filter(self, filter: Filter | None) -> None:  # noqa: A002
        """Raise :class:`~xlir.indexing.filters.FilterError` unless ``filter`` can run on this index."""
        if self.legacy:
            names = sorted(fields_of(filter) - {LANG_FIELD})
            if names:
                raise FilterError(
                    f"filter on field {names[0]!r}: this index was built before xlir kept typed metadata "
                    "fields, so only 'lang' can be filtered; rebuild the index to filter on metadata"
                )
        check_filter(filter, self.fields)

    def matching(self, filter: Filter | None) -> set[str]:  # noqa: A002
        """The ids of the documents that match ``filter`` (None: every document)."""
        where, params = self._where(filter)
        return {row[0] for row in self._db.execute(f"SELECT d.id FROM docs d WHERE {where}", params)}

    def count(self, filter: Filter | None) -> int:  # noqa: A002
        """How many documents match ``filter`` (None: every document)."""
        where, params = self._where(filter)
        return self._db.execute(f"SELECT COUNT(*) FROM docs d WHERE {where}", params).fetchone()[0]

    def facet_counts(
        self, docids: Collection[str] | None, field: str, size: int = 10
    ) -> list[tuple[Any, int]]:
        """The ``size`` most frequent values of ``field`` among ``docids`` (None: every document) with the
        number of those documents having each; most frequent first, ties by value."""
        if not isinstance(size, int) or size < 1:
            raise FieldsError(f"facet size must be a positive whole number, not {size!r}")
        field_type = self._require(field, "facet")
        if field == LANG_FIELD:
            ids, params = self._ids(docids, "d.id")
            sql = f"SELECT {_LANG} AS v, COUNT(*) AS c FROM docs d WHERE 1 {ids} GROUP BY v"
        else:
            ids, params = self._ids(docids, "doc")
            column = "num" if field_type in ("integer", "float") else "kw"
            sql = f"SELECT {column} AS v, COUNT(DISTINCT doc) AS c FROM field_values WHERE fid = ? {ids} GROUP BY v"
            params = [self._fids[field], *params]
        rows = self._db.execute(f"{sql} ORDER BY c DESC, v LIMIT ?", [*params, size]).fetchall()
        if field_type == "integer":
            return [(int(v), c) for v, c in rows]
        return [(v, c) for v, c in rows]

    def histogram(
        self, docids: Collection[str] | None, field: str, interval: float | str
    ) -> list[tuple[Any, int]]:
        """Documents among ``docids`` per bucket of ``field``: the key is ``floor(value / interval) * interval``
        (a float; for a date field the interval is in days and the key an ISO date); empty buckets omitted,
        in key order. A document with several values in one bucket counts once.

        A date field also takes a calendar interval, one of :data:`CALENDAR_INTERVALS` (``"year"``: keys
        ``2021-01-01``, ...; weeks start on Monday; in UTC), as Elasticsearch's ``calendar_interval``.
        """
        field_type = self._require(field, "histogram")
        if not is_numeric(field_type):
            raise FieldsError(
                f"histogram on {field!r}: it is a {field_type} field; histograms work on integer, float and "
                "date fields (use a facet for keywords)"
            )
        if isinstance(interval, str):
            return self._calendar_histogram(docids, field, field_type, interval)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
            raise FieldsError(
                f"histogram on {field!r}: the interval must be a positive number, not {interval!r}"
            )
        if interval == float("inf"):
            raise FieldsError(f"histogram on {field!r}: the interval must be finite")
        ids, params = self._ids(docids, "doc")
        ratio = "(num / ?)"
        bucket = f"(CAST({ratio} AS INTEGER) - ({ratio} < CAST({ratio} AS INTEGER)))"  # floor, in SQL
        sql = f"SELECT {bucket} AS b, COUNT(DISTINCT doc) FROM field_values WHERE fid = ? {ids} GROUP BY b ORDER BY b"
        interval = float(interval)
        rows = self._db.execute(sql, [interval] * 3 + [self._fids[field], *params]).fetchall()
        if field_type == "date":
            return [(date_key(b * interval), c) for b, c in rows]
        return [(b * interval, c) for b, c in rows]

    def _calendar_histogram(
        self, docids: Collection[str] | None, field: str, field_type: str, interval: str
    ) -> list[tuple[Any, int]]:
        bucket = CALENDAR_INTERVALS.get(interval)
        if field_type != "date" or bucket is None:
            raise FieldsError(
                f"histogram on {field!r}: interval {interval!r} is not supported; give a positive number"
                + (f" (days), or one of {', '.join(CALENDAR_INTERVALS)}" if field_type == "date" else "")
            )
        ids, params = self._ids(docids, "doc")
        sql = (
            f"SELECT {bucket.format(jd='(num + 2440587.5)')} AS b, COUNT(DISTINCT doc) FROM field_values "
            f"WHERE fid = ? {ids} GROUP BY b ORDER BY b"
        )
        return self._db.execute(sql, [self._fids[field], *params]).fetchall()

    def field_values(self, docids: Collection[str] | None, field: str) -> dict[str, Any]:
        """The first value of ``field`` of each of ``docids`` that has one (for sorting): numbers for integer
        and float fields, the text for keyword and date fields (ISO dates of one form sort by time)."""
        field_type = self._require(field, "sort")
        if field == LANG_FIELD:
            ids, params = self._ids(docids, "d.id")
            sql = f"SELECT d.id, d.lang FROM docs d WHERE d.lang IS NOT NULL {ids}"
            return dict(self._db.execute(sql, params).fetchall())
        ids, params = self._ids(docids, "doc")
        column = "num" if field_type in ("integer", "float") else "kw"
        sql = f"SELECT doc, {column} FROM field_values WHERE fid = ? AND pos = 0 {ids}"
        rows = self._db.execute(sql, [self._fids[field], *params])
        if field_type == "integer":
            return {docid: int(v) for docid, v in rows}
        return dict(rows.fetchall())

    def field_table(self) -> list[tuple[str, str, int, str | None, float | None]]:
        """Every stored field value as ``(doc, field, position, keyword text, number)``, sorted (for checks)."""
        rows = self._db.execute(
            "SELECT v.doc, t.name, v.pos, v.kw, v.num FROM field_values v JOIN field_types t USING (fid) "
            "ORDER BY v.doc, t.name, v.pos"
        )
        return rows.fetchall()

    def _require(self, field: str, use: str) -> str:
        field_type = self.field_type(field)
        if field_type is not None:
            return field_type
        if self.legacy:
            raise FieldsError(
                f"{use} on field {field!r}: this index was built before xlir kept typed metadata fields "
                "(only 'lang' works); rebuild the index to use metadata"
            )
        known = ", ".join(f"{n} ({t})" for n, t in sorted({LANG_FIELD: "keyword", **self.fields}.items()))
        raise FieldsError(f"{use} on unknown field {field!r}; the index's fields: {known}")

    @staticmethod
    def _ids(docids: Collection[str] | None, column: str) -> tuple[str, list[Any]]:
        """``AND <column> IN (docids)`` and its one parameter; nothing for None (every document)."""
        if docids is None:
            return "", []
        return f"AND {column} {_IN_IDS}", [json.dumps(list(docids), ensure_ascii=False)]

    def _where(self, filter: Filter | None) -> tuple[str, list[Any]]:  # noqa: A002
        self.check_filter(filter)
        if filter is None:
            return "1", []
        params: list[Any] = []
        return self._compile(filter, params), params

    def _compile(self, f: Filter, params: list[Any]) -> str:
        """``f`` as an SQL condition on ``docs d`` (values appended to ``params``)."""
        if isinstance(f, And):
            return "(" + " AND ".join(self._compile(i, params) for i in f.items) + ")" if f.items else "1"
        if isinstance(f, Or):
            return "(" + " OR ".join(self._compile(i, params) for i in f.items) + ")" if f.items else "0"
        if isinstance(f, Not):
            return f"(NOT {self._compile(f.item, params)})"
        field_type = self.field_type(f.field) or "keyword"
        if f.field == LANG_FIELD:
            if isinstance(f, Exists):
                return "(d.lang IS NOT NULL)"
            values = [f.value] if isinstance(f, Term) else list(f.values)  # type: ignore[union-attr]
            params.extend(coerce(LANG_FIELD, "keyword", v)[0] for v in values)
            return f"({_LANG} IN ({','.join('?' * len(values))}))"
        params.append(self._fids[f.field])
        inner = "SELECT doc FROM field_values WHERE fid = ?"
        column = "kw" if field_type == "keyword" else "num"
        if isinstance(f, Exists):
            pass
        elif isinstance(f, (Term, Terms)):
            values = [f.value] if isinstance(f, Term) else list(f.values)
            coerced = [coerce(f.field, field_type, v) for v in values]
            params.extend(kw if column == "kw" else num for kw, num in coerced)
            inner += f" AND {column} IN ({','.join('?' * len(values))})"
        elif isinstance(f, Range):
            for key, op in (("gte", ">="), ("gt", ">"), ("lte", "<="), ("lt", "<")):
                bound = getattr(f, key)
                if bound is not None:
                    params.append(coerce(f.field, field_type, bound)[1])
                    inner += f" AND num {op} ?"
        else:
            raise FilterError(f"not a filter: {f!r}")
        return f"(d.id IN ({inner}))"

    def close(self) -> None:
        self._db.close()


_dumps = json.JSONEncoder(ensure_ascii=False).encode


def _document(row: tuple) -> Document:
    docid, lang, title, text, metadata, origin = row
    return Document(id=docid, text=text, lang=lang, title=title, metadata=json.loads(metadata), origin=origin)
