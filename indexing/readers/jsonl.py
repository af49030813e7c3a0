"""JSON Lines corpora: one JSON object a line (plain or gzip), and the one parser every reader uses.

:func:`read_jsonl` reads one file, :func:`read_jsonl_files` several in order (the directory layouts);
:func:`_parse_line` turns one line into a :class:`~xlir.indexing.documents.Document` or a
:class:`~xlir.indexing.documents.CorpusError` naming the problem and its fix.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from xlir.indexing.documents import CorpusError, Document, make_document
from xlir.indexing.readers.report import ACCEPTED_LAYOUTS, OnError, ReadReport, check_lang, check_on_error
from xlir.models.languages import LanguageError, normalize_language

logger = logging.getLogger(__name__)

ID_FIELDS = ("id", "_id", "docid")
TEXT_FIELDS = ("text", "contents")

_RECORD_EXAMPLE = '{"id": "d1", "text": "...", "lang": "de"}'

#: A ``\uXXXX`` escape of a UTF-16 surrogate that is not half of a pair (``\ud800`` alone): JSON accepts it,
#: but it decodes to a string that no UTF-8 file, SQLite or tokenizer can hold. Only a trigger (an escaped
#: backslash before ``ud800`` matches too): :func:`_lone_surrogate` decides on the decoded strings.
_LONE_SURROGATE_ESCAPE = (
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)
_LONE_SURROGATE_IN_TEXT = re.compile(_LONE_SURROGATE_ESCAPE).search
_LONE_SURROGATE_IN_BYTES = re.compile(_LONE_SURROGATE_ESCAPE.encode()).search


def _is_gzip(path: Path) -> bool:
    return path.name.endswith(".gz")


def open_binary(path: Path) -> IO[bytes]:
    try:
        return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")
    except FileNotFoundError:
        raise CorpusError(
            str(path), "no such file", f"Check the path. Accepted: {ACCEPTED_LAYOUTS}", "not_found"
        ) from None
    except IsADirectoryError:
        raise CorpusError(
            str(path), "is a directory, not a file", "Use open_corpus for directories", "bad_layout"
        ) from None
    except OSError as err:
        raise CorpusError(
            str(path), f"cannot be read ({err.strerror or err})", "Check its permissions", "unreadable"
        ) from err


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _wrong_type(where: str, subject: str, value: Any, fix: str) -> CorpusError:
    """A ``bad_field`` error: ``subject`` (a document's id, text, title or lang) is of the wrong JSON type."""
    return CorpusError(where, f"{subject} is a {_type_name(value)}", fix, "bad_field")


def _first_field(obj: dict[str, Any], keys: tuple[str, ...], used: list[str]) -> Any:
    """The value of the first of ``keys`` that ``obj`` holds (its name added to ``used``); None if none."""
    for key in keys:
        if key in obj:
            used.append(key)
            return obj[key]
    return None


def _parse_line(raw: bytes, where: str, lang: str | None) -> Document:
    """One JSON Lines record -> Document, or a CorpusError saying what is wrong with it."""
    try:
        obj = json.loads(raw)
    except UnicodeDecodeError as err:
        raise CorpusError(
            where,
            f"line is not valid UTF-8 (byte 0x{err.object[err.start]:02x} at byte offset {err.start})",
            "Re-encode the file as UTF-8 (for example `iconv -f latin1 -t utf-8`)",
            "invalid_utf8",
        ) from None
    except json.JSONDecodeError as err:
        raise CorpusError(
            where,
            f"malformed JSON ({err.msg} at column {err.colno})",
            f"Each line must be one complete JSON object like {_RECORD_EXAMPLE}; fix or remove the line",
            "malformed_json",
        ) from None
    if type(obj) is not dict:
        raise CorpusError(
            where,
            f"expected a JSON object, found {_type_name(obj)}",
            f"Each line must be one JSON object like {_RECORD_EXAMPLE}",
            "missing_field",
        )
    if b"\\u" in raw and _LONE_SURROGATE_IN_BYTES(raw):
        _check_unicode(obj, where)

    used: list[str] = []
    doc_id = _first_field(obj, ID_FIELDS, used)
    if doc_id is None:
        raise CorpusError(
            where,
            f"no document id (looked for {', '.join(map(repr, ID_FIELDS))}; found fields {sorted(obj)})",
            'Give every document a unique "id" (string or integer)',
            "missing_field",
        )
    if type(doc_id) is int:
        doc_id = str(doc_id)
    elif type(doc_id) is not str:
        raise _wrong_type(where, f"document id {doc_id!r}", doc_id, "Use a string or integer id")
    elif not doc_id:
        raise CorpusError(
            where, "document id is an empty string", "Give every document a non-empty id", "missing_field"
        )

    text = _first_field(obj, TEXT_FIELDS, used)
    if text is None:
        raise CorpusError(
            where,
            f"document {doc_id!r} has no text (looked for {', '.join(map(repr, TEXT_FIELDS))}; "
            f"found fields {sorted(obj)})",
            'Give the document a "text" field',
            "missing_field",
        )
    if type(text) is not str:
        raise _wrong_type(where, f"the text of document {doc_id!r}", text, "Make it a JSON string")
    if not text or text.isspace():
        raise CorpusError(
            where,
            f"document {doc_id!r} has empty text",
            "Give it text or remove the line (on_error='skip' skips such documents)",
            "empty_text",
        )

    title = obj.get("title")
    if "title" in obj:
        used.append("title")
        if title is not None and type(title) is not str:
            raise _wrong_type(where, f"the title of document {doc_id!r}", title, "Make it a string")
        title = title or None

    doc_lang = lang
    if "lang" in obj:
        used.append("lang")
        if lang is None:
            raw_lang = obj["lang"]
            if raw_lang is not None and raw_lang != "":
                if type(raw_lang) is not str:
                    raise _wrong_type(
                        where,
                        f"the lang of document {doc_id!r}",
                        raw_lang,
                        'Use a language code string like "de"',
                    )
                try:
                    doc_lang = normalize_language(raw_lang)
                except LanguageError as err:
                    raise CorpusError(
                        where,
                        f"document {doc_id!r}: {err}",
                        "Fix the lang field, or give the language for the whole file (lang=... / --lang), "
                        "which overrides it",
                        "bad_lang",
                    ) from None

    metadata = {k: v for k, v in obj.items() if k not in used} if len(obj) > len(used) else {}
    return Document(id=doc_id, text=text, lang=doc_lang, title=title, metadata=metadata, origin=where)


def _check_unicode(obj: dict[str, Any], where: str) -> None:
    """Raise an ``invalid_unicode`` CorpusError if a string of the record holds a lone surrogate."""
    for key, value in obj.items():
        char = _lone_surrogate(key) or _lone_surrogate(value)
        if char is not None:
            raise CorpusError(
                where,
                f"the {key!r} field holds a lone surrogate \\u{ord(char):04x} (a \\uXXXX escape that is not "
                "half of a pair), which is not valid Unicode text",
                "Fix the escape (a surrogate pair looks like \\ud83d\\ude00) or remove the line "
                "(on_error='skip' / --on-error skip skips such lines)",
                "invalid_unicode",
            )


def _lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate character in a decoded JSON value (its strings, keys and items), or None."""
    if type(value) is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            return value[err.start]
        return None
    if type(value) is list:
        items: Iterable[Any] = value
    elif type(value) is dict:
        items = (part for item in value.items() for part in item)
    else:
        return None
    for item in items:
        char = _lone_surrogate(item)
        if char is not None:
            return char
    return None


#: The C JSON scanner behind ``json.loads``, called directly: it skips ``loads``' encoding detection and
#: whitespace regexes, a third of the cost of reading a short record. Anything it does not accept as one
#: whole object goes through :func:`_parse_line`, which raises the exact error.
_scan_json = json.scanner.make_scanner(json.JSONDecoder())


def iter_jsonl(path: Path, lang: str | None, on_error: OnError, report: ReadReport) -> Iterator[Document]:
    """The documents of one JSON Lines file.

    Hot path: a record of exactly ``id`` and ``text`` (and ``lang``), all non-empty strings, becomes a
    Document inline, with every check :func:`_parse_line` makes on it; any other line (other fields,
    integer ids, titles, errors, a BOM, blank lines) goes through :func:`_parse_line`, so both paths accept
    and refuse the same lines with the same messages.
    """
    name = str(path)
    report.files.append(name)
    skip = on_error == "skip"
    skipped_before = report.total_skipped
    scan = _scan_json
    make = make_document
    langs: dict[str, str] = {}  # the record's lang -> its normalized code, for this file
    with open_binary(path) as stream:
        try:
            for lineno, raw in enumerate(stream, 1):
                try:
                    line = raw.decode()
                    obj, end = scan(line, 0)
                except (ValueError, StopIteration):  # UnicodeDecodeError and JSONDecodeError too
                    obj = None
                else:
                    if end != len(line) and not line[end:].isspace():
                        obj = None
                if type(obj) is dict:
                    doc_id = obj.get("id")
                    text = obj.get("text")
                    if (
                        type(doc_id) is str
                        and doc_id
                        and type(text) is str
                        and text
                        and not text.isspace()
                        and ("\\u" not in line or not _LONE_SURROGATE_IN_TEXT(line))
                    ):
                        size = len(obj)
                        doc_lang: str | None = lang
                        if size == 3 and lang is None:
                            raw_lang = obj.get("lang")
                            if type(raw_lang) is str:
                                doc_lang = langs.get(raw_lang) or _known_language(raw_lang, langs)
                                if doc_lang is None and raw_lang:
                                    size = 0  # not a language code: _parse_line says so
                            elif raw_lang is not None:
                                size = 0  # not a string: _parse_line says so
                        if size == 2 or (size == 3 and "lang" in obj):
                            report.read += 1
                            yield make(doc_id, text, doc_lang, None, {}, f"{name}:{lineno}")
                            continue
                if raw.isspace():
                    continue
                try:
                    doc = _parse_line(raw, f"{name}:{lineno}", lang)
                except CorpusError as err:
                    if not skip:
                        raise
                    report.record(err)
                    continue
                report.read += 1
                yield doc
        except (gzip.BadGzipFile, EOFError, zlib.error) as err:
            raise CorpusError(
                name,
                f"is not a complete gzip file ({err})",
                "Re-create it with gzip, or remove the .gz suffix if it is plain text",
                "bad_gzip",
            ) from None
    skipped = report.total_skipped - skipped_before
    if skipped:
        logger.warning("%s: skipped %d unusable lines (see the read report)", name, skipped)


def _known_language(raw_lang: str, langs: dict[str, str]) -> str | None:
    """The normalized code of a record's ``lang`` string (remembered in ``langs``); None if empty or invalid."""
    if not raw_lang:
        return None
    try:
        code = normalize_language(raw_lang)
    except LanguageError:
        return None
    langs[raw_lang] = code
    return code


def read_jsonl(
    path: str | Path,
    *,
    lang: str | None = None,
    on_error: OnError = "stop",
    report: ReadReport | None = None,
) -> Iterator[Document]:
    """Documents from a JSON Lines file (``.jsonl`` or ``.jsonl.gz``), one JSON object a line.

    Fields: ``id`` (or ``_id``, ``docid``; string or integer), ``text`` (or ``contents``), optional
    ``lang`` (normalized with :func:`~xlir.models.languages.normalize_language`) and ``title``; every other
    field goes into ``metadata``. ``lang``, when given, is the language of every document in the file and
    overrides the records' own. A missing file, a bad ``lang`` or ``on_error`` raise at once; line
    errors raise (or are skipped) while iterating.
    """
    check_on_error(on_error)
    norm_lang = check_lang(lang)
    p = Path(path)
    if not p.is_file():
        open_binary(p).close()  # raises the matching CorpusError (missing, a directory, unreadable)
    return iter_jsonl(p, norm_lang, on_error, report if report is not None else ReadReport())


def read_jsonl_files(
    paths: Iterable[Path],
    lang: str | None,
    on_error: OnError,
    report: ReadReport | None,
    file_lang: Callable[[Path], str | None] | None = None,
) -> Iterator[Document]:
    """The documents of several JSON Lines files, in order, counted in one report.

    ``lang`` (already normalized) is every document's language; without it, ``file_lang(path)`` (when
    given) is the language of a file's documents, else each record's own ``lang``.
    """
    report = report if report is not None else ReadReport()
    for path in paths:
        path_lang = lang or (file_lang(path) if file_lang is not None else None)
        yield from iter_jsonl(path, path_lang, on_error, report)
