"""Duplicate document ids found up front: one quick pass over the ids of a corpus before any document is read.

A build stops at a duplicate id (``on_error="stop"``), but a reader streams: met at line 5,000, the
duplicate would be reported only after the channels had encoded the lines before it (minutes for the
neural ones). :func:`check_unique_ids` reads only the ids, a line at a time (the id is the first key of
almost every corpus line, matched in the raw bytes without parsing the text), and raises the
``duplicate_id`` :class:`~xlir.indexing.documents.CorpusError` naming both lines before the first
document is handed on. Lines it cannot read an id from are left to the reader, which reports them in
their turn; a duplicate is confirmed with the reader's own parser before it is reported.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from xlir.indexing.documents import CorpusError, Document
from xlir.indexing.readers.jsonl import ID_FIELDS, _parse_line, open_binary

#: The first key of a record when it is an id field, and its value: a JSON string or an integer.
_FIRST_KEY_ID = re.compile(
    rb'\s*\{\s*"(id|_id|docid)"\s*:\s*(?:"((?:[^"\\]|\\.)*)"|(-?(?:0|[1-9][0-9]*))(?=\s*[,}]))'
)
#: The id fields that take precedence over each (the reader picks the first of ``ID_FIELDS`` present).
_BEFORE = {b"id": (), b"_id": (b'"id"',), b"docid": (b'"id"', b'"_id"')}
#: A line number packed with the index of its file: ``file << _LINE_BITS | line``.
_LINE_BITS = 40

DUPLICATE_HINT = (
    "Ids must be unique across the corpus: fix the id, or pass --on-error skip to keep the first."
)


class _LineCount:
    """The non-blank lines read, and whether every file was read to its end."""

    def __init__(self) -> None:
        self.lines = 0
        self.complete = True


def check_unique_ids(paths: Sequence[Path]) -> int | None:
    """Raise the ``duplicate_id`` CorpusError of the first id of ``paths`` (JSON Lines files) seen twice.

    Returns the number of non-blank lines the files hold (what a build shows as its total, so that it
    need not read the corpus once more to count them), or None when a file could not be read to its end.
    """
    seen: dict[str, int] = {}
    count = _LineCount()
    for number, path in enumerate(paths):
        for lineno, raw, docid in _ids(path, count):
            first = seen.setdefault(docid, number << _LINE_BITS | lineno)
            if first != number << _LINE_BITS | lineno:
                error = _confirmed(paths, first, f"{path}:{lineno}", raw)
                if error is not None:
                    raise error
    return count.lines if count.complete else None


def _ids(path: Path, count: _LineCount) -> Iterator[tuple[int, bytes, str]]:
    """``(line number, line, id)`` for each line of ``path`` whose id can be read; the others are skipped.
    Every non-blank line is counted in ``count``."""
    try:
        with open_binary(path) as stream:
            for lineno, raw in enumerate(stream, 1):
                if raw.strip():
                    count.lines += 1
                docid = _line_id(raw)
                if docid is not None:
                    yield lineno, raw, docid
    except (CorpusError, OSError, EOFError, zlib.error, gzip.BadGzipFile):
        count.complete = False  # the reader reports an unreadable file when it gets there


def _line_id(raw: bytes) -> str | None:
    """The document id of one JSON Lines record as the reader would take it; None if it has none."""
    match = _FIRST_KEY_ID.match(raw)
    if match is not None and not any(key in raw for key in _BEFORE[match[1]]):
        string, number = match[2], match[3]
        if number is not None:
            return str(int(number))
        if b"\\" not in string:
            try:
                return string.decode() or None
            except UnicodeDecodeError:
                return None
    if not raw.strip():
        return None
    try:  # the id is not the first key, or it holds escapes: parse the whole line
        obj: Any = json.loads(raw)
    except ValueError:
        return None
    if type(obj) is not dict:
        return None
    for key in ID_FIELDS:
        if key in obj:
            value = obj[key]
            return str(value) if type(value) is int else value if type(value) is str and value else None
    return None


def _confirmed(paths: Sequence[Path], first: int, where: str, raw: bytes) -> CorpusError | None:
    """The duplicate id error for the line at ``where``, if the reader reads the same id at both lines."""
    path = paths[first >> _LINE_BITS]
    lineno = first & ((1 << _LINE_BITS) - 1)
    try:
        with open_binary(path) as stream:
            first_raw = next(islice(stream, lineno - 1, None))
        earlier = _parse_line(first_raw, f"{path}:{lineno}", None)
        later = _parse_line(raw, where, None)
    except (CorpusError, OSError, EOFError, StopIteration, zlib.error, gzip.BadGzipFile):
        return None  # one of the lines is itself bad: the reader says so in its turn
    if earlier.id != later.id:
        return None
    return duplicate_id_error(later, earlier.origin)


def duplicate_id_error(doc: Document, first_origin: str) -> CorpusError:
    """The error for ``doc``, whose id was first seen at ``first_origin``."""
    return CorpusError(
        doc.origin,
        f"duplicate document id {doc.id!r} (first seen at {first_origin})",
        DUPLICATE_HINT,
        "duplicate_id",
    )
