"""Streaming corpus readers: JSON Lines files, BEIR directories and the shared ``<collection>/corpus`` layout.

Each reader yields :class:`~xlir.indexing.documents.Document` objects one at a time with ``origin="file:line"``.
A line the reader cannot use raises a :class:`~xlir.indexing.documents.CorpusError` naming ``file:line``, the
problem and the fix (``on_error="stop"``, the default), or is skipped, logged and counted in a
:class:`ReadReport` (``on_error="skip"``). Nothing is ever dropped silently. Blank lines are not
errors and are passed over.

Error reasons (``CorpusError.reason`` and the keys of ``ReadReport.skipped``): ``invalid_utf8``,
``malformed_json``, ``missing_field`` (not an object, or no id / text), ``bad_field`` (an id, text,
title or lang of the wrong type), ``empty_text``, ``bad_lang``; the index builder adds ``duplicate_id``.
Whole-file problems (``not_found``, ``bad_layout``, ``bad_gzip``, ``unreadable``) always raise.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from xlir.indexing.documents import CorpusError, Document, make_document
from xlir.indexing.errors import ConfigError
from xlir.models.languages import LanguageError, normalize_language

logger = logging.getLogger(__name__)

OnError = Literal["stop", "skip"]

ID_FIELDS = ("id", "_id", "docid")
TEXT_FIELDS = ("text", "contents")

ACCEPTED_LAYOUTS = (
    "a .jsonl or .jsonl.gz file (one JSON object a line: id, text, optional lang and title); "
    "a BEIR directory (corpus.jsonl, queries.jsonl, qrels/<split>.tsv); "
    "a collection directory with corpus/<name>.jsonl files; "
    "or a directory of .jsonl / .jsonl.gz files"
)

_RECORD_EXAMPLE = '{"id": "d1", "text": "...", "lang": "de"}'


@dataclass
class ReadReport:
    """What a read did: documents read, lines skipped by reason, and the first few error messages.

    Pass one to a reader with ``on_error="skip"`` to learn what was skipped; the index builder records
    its own findings (``duplicate_id``) in the same report through :meth:`record`.
    """

    read: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    max_messages: int = 10

    @property
    def total_skipped(self) -> int:
        """How many lines or documents were skipped, all reasons together."""
        return sum(self.skipped.values())

    def record(self, error: CorpusError) -> None:
        """Count a skipped line or document; keep and log its message if it is one of the first few."""
        self.skipped[error.reason] += 1
        if len(self.first_errors) < self.max_messages:
            self.first_errors.append(str(error))
            logger.warning("skipped %s", error)
            if len(self.first_errors) == self.max_messages:
                logger.warning("further skipped lines are counted in the read report but not logged")

    def summary(self) -> str:
        """One line: documents read and skipped lines by reason."""
        if not self.skipped:
            return f"{self.read} documents read, none skipped"
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
        return f"{self.read} documents read, {self.total_skipped} skipped ({reasons})"


def _check_on_error(on_error: str) -> None:
    if on_error not in ("stop", "skip"):
        raise ConfigError(f"on_error must be 'stop' or 'skip', got {on_error!r}")


def _check_lang(lang: str | None) -> str | None:
    """The normalized language argument of a reader; an invalid one is the caller's error, raised now."""
    return None if lang is None else normalize_language(lang)


def _is_gzip(path: Path) -> bool:
    return path.name.endswith(".gz")


def _is_jsonl(path: Path) -> bool:
    return path.name.endswith((".jsonl", ".jsonl.gz"))


def _open_binary(path: Path) -> IO[bytes]:
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

    used: list[str] = []
    doc_id: Any = None
    for key in ID_FIELDS:
        if key in obj:
            doc_id = obj[key]
            used.append(key)
            break
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
        raise CorpusError(
            where,
            f"document id {doc_id!r} is a {_type_name(doc_id)}",
            "Use a string or integer id",
            "bad_field",
        )
    elif not doc_id:
        raise CorpusError(
            where, "document id is an empty string", "Give every document a non-empty id", "missing_field"
        )

    text: Any = None
    for key in TEXT_FIELDS:
        if key in obj:
            text = obj[key]
            used.append(key)
            break
    if text is None:
        raise CorpusError(
            where,
            f"document {doc_id!r} has no text (looked for {', '.join(map(repr, TEXT_FIELDS))}; "
            f"found fields {sorted(obj)})",
            'Give the document a "text" field',
            "missing_field",
        )
    if type(text) is not str:
        raise CorpusError(
            where,
            f"the text of document {doc_id!r} is a {_type_name(text)}",
            "Make it a JSON string",
            "bad_field",
        )
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
            raise CorpusError(
                where,
                f"the title of document {doc_id!r} is a {_type_name(title)}",
                "Make it a string",
                "bad_field",
            )
        title = title or None

    doc_lang = lang
    if "lang" in obj:
        used.append("lang")
        if lang is None:
            raw_lang = obj["lang"]
            if raw_lang is not None and raw_lang != "":
                if type(raw_lang) is not str:
                    raise CorpusError(
                        where,
                        f"the lang of document {doc_id!r} is a {_type_name(raw_lang)}",
                        'Use a language code string like "de"',
                        "bad_field",
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


#: The C JSON scanner behind ``json.loads``, called directly: it skips ``loads``' encoding detection and
#: whitespace regexes, a third of the cost of reading a short record. Anything it does not accept as one
#: whole object goes through :func:`_parse_line`, which raises the exact error.
_scan_json = json.scanner.make_scanner(json.JSONDecoder())


def _iter_jsonl(path: Path, lang: str | None, on_error: OnError, report: ReadReport) -> Iterator[Document]:
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
    with _open_binary(path) as stream:
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
                    if type(doc_id) is str and doc_id and type(text) is str and text and not text.isspace():
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
    _check_on_error(on_error)
    norm_lang = _check_lang(lang)
    p = Path(path)
    if not p.is_file():
        _open_binary(p).close()  # raises the matching CorpusError (missing, a directory, unreadable)
    return _iter_jsonl(p, norm_lang, on_error, report if report is not None else ReadReport())


def _read_many(
    paths: Iterable[Path], lang: str | None, on_error: OnError, report: ReadReport | None
) -> Iterator[Document]:
    report = report if report is not None else ReadReport()
    for p in paths:
        yield from _iter_jsonl(p, lang, on_error, report)


def _corpus_file(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _require_dir(directory: Path) -> None:
    if not directory.exists():
        raise CorpusError(
            str(directory), "no such directory", f"Check the path. Accepted: {ACCEPTED_LAYOUTS}", "not_found"
        )
    if not directory.is_dir():
        raise CorpusError(str(directory), "is not a directory", f"Accepted: {ACCEPTED_LAYOUTS}", "bad_layout")


def read_beir_corpus(
    directory: str | Path,
    *,
    lang: str | None = None,
    on_error: OnError = "stop",
    report: ReadReport | None = None,
) -> Iterator[Document]:
    """Documents from a BEIR dataset directory's ``corpus.jsonl`` (``_id``, ``title``, ``text``)."""
    d = Path(directory)
    _require_dir(d)
    corpus = _corpus_file(d, "corpus")
    if corpus is None:
        raise CorpusError(
            str(d),
            "has no corpus.jsonl",
            "A BEIR directory holds corpus.jsonl, queries.jsonl and qrels/",
            "bad_layout",
        )
    return read_jsonl(corpus, lang=lang, on_error=on_error, report=report)


def read_beir_queries(directory: str | Path) -> dict[str, str]:
    """Query id -> query text from a BEIR directory's ``queries.jsonl``. Any bad line raises."""
    d = Path(directory)
    _require_dir(d)
    path = _corpus_file(d, "queries")
    if path is None:
        raise CorpusError(
            str(d), "has no queries.jsonl", 'It must hold one {"_id": ..., "text": ...} a line', "not_found"
        )
    queries: dict[str, str] = {}
    first_seen: dict[str, str] = {}
    for doc in _iter_jsonl(path, None, "stop", ReadReport()):
        if doc.id in queries:
            raise CorpusError(
                doc.origin,
                f"query id {doc.id!r} occurs twice (first at {first_seen[doc.id]})",
                "Give every query a unique id",
                "duplicate_id",
            )
        queries[doc.id] = doc.text
        first_seen[doc.id] = doc.origin
    return queries


def read_beir_qrels(directory: str | Path, split: str = "test") -> dict[str, dict[str, int]]:
    """Relevance judgments ``{query id: {doc id: grade}}`` from a BEIR directory's ``qrels/<split>.tsv``.

    The file is tab-separated ``query-id corpus-id score`` with an optional header line. Any bad line raises.
    """
    d = Path(directory)
    _require_dir(d)
    path = d / "qrels" / f"{split}.tsv"
    if not path.is_file():
        available = sorted(p.stem for p in (d / "qrels").glob("*.tsv")) if (d / "qrels").is_dir() else []
        raise CorpusError(
            str(path),
            f"no qrels for split {split!r}",
            f"Available splits: {', '.join(available) or 'none (no qrels/*.tsv)'}",
            "not_found",
        )
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as stream:
        try:
            for lineno, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                parts = line.rstrip("\r\n").split("\t")
                if lineno == 1 and parts[0].strip().lower() in ("query-id", "query_id", "qid", "query"):
                    continue
                where = f"{path}:{lineno}"
                if len(parts) != 3:
                    raise CorpusError(
                        where,
                        f"expected 3 tab-separated columns (query-id, corpus-id, score), found {len(parts)}",
                        "Fix the line; BEIR qrels are TSV with a header line",
                        "malformed_qrels",
                    )
                qid, docid, score = (s.strip() for s in parts)
                try:
                    grade = int(score)
                except ValueError:
                    raise CorpusError(
                        where, f"score {score!r} is not an integer", "Use integer grades", "malformed_qrels"
                    ) from None
                qrels.setdefault(qid, {})[docid] = grade
        except UnicodeDecodeError as err:
            raise CorpusError(
                str(path), f"is not valid UTF-8 ({err.reason})", "Re-encode it as UTF-8", "invalid_utf8"
            ) from None
    return qrels


def read_collection_corpus(
    collection_dir: str | Path,
    names: list[str] | None = None,
    *,
    lang: str | None = None,
    on_error: OnError = "stop",
    report: ReadReport | None = None,
) -> Iterator[Document]:
    """Documents of a collection in the shared layout, ``<collection>/corpus/<name>.jsonl``.

    ``names`` picks corpus files by name without suffix (``["de", "en"]``); ``None`` reads them all in
    name order. An unknown name raises a CorpusError listing the available ones.
    """
    _check_on_error(on_error)
    norm_lang = _check_lang(lang)
    d = Path(collection_dir)
    _require_dir(d)
    corpus_dir = d / "corpus"
    if not corpus_dir.is_dir():
        raise CorpusError(str(d), "has no corpus/ directory", f"Accepted: {ACCEPTED_LAYOUTS}", "bad_layout")
    available = {_stem(p): p for p in sorted(corpus_dir.iterdir()) if p.is_file() and _is_jsonl(p)}
    if not available:
        raise CorpusError(
            str(corpus_dir), "holds no .jsonl files", "Put one <name>.jsonl a corpus there", "bad_layout"
        )
    if names is None:
        paths = [available[n] for n in sorted(available)]
    else:
        unknown = [n for n in names if n not in available]
        if unknown:
            raise CorpusError(
                str(corpus_dir),
                f"has no corpus named {', '.join(map(repr, unknown))}",
                f"Available: {', '.join(sorted(available))}",
                "not_found",
            )
        paths = [available[n] for n in names]
    return _read_sides(paths, norm_lang, on_error, report)


def _read_sides(
    paths: list[Path], lang: str | None, on_error: OnError, report: ReadReport | None
) -> Iterator[Document]:
    report = report if report is not None else ReadReport()
    for path in paths:
        yield from _iter_jsonl(path, lang or _side_language(_stem(path)), on_error, report)


def _side_language(stem: str) -> str | None:
    """The language of a shared-layout file named ``<lang>-for-<X>`` (Tatoeba's ``eng-for-fra``: English).

    Such files hold one language's side of a bitext whose records carry ``"lang": "eng-for-fra"``,
    which is a file name, not a language code; the part before ``-for-`` is the documents' language.
    """
    side, sep, _ = stem.partition("-for-")
    if not sep:
        return None
    try:
        return normalize_language(side)
    except LanguageError:
        return None


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".jsonl.gz")] if name.endswith(".jsonl.gz") else name[: -len(".jsonl")]


def open_corpus(
    path: str | Path,
    *,
    lang: str | None = None,
    on_error: OnError = "stop",
    report: ReadReport | None = None,
) -> Iterator[Document]:
    """Documents from any accepted corpus layout; the one entry point for the index builder and the CLI.

    Accepts a ``.jsonl`` / ``.jsonl.gz`` file, a BEIR directory (has ``corpus.jsonl``), a collection
    directory (has ``corpus/*.jsonl``) or a directory of ``.jsonl`` files (read in name order). Anything
    else raises a CorpusError that lists these layouts. See :func:`read_jsonl` for ``lang``,
    ``on_error`` and ``report``.
    """
    _check_on_error(on_error)
    norm_lang = _check_lang(lang)
    p = Path(path)
    if not p.exists():
        raise CorpusError(
            str(p), "no such file or directory", f"Check the path. Accepted: {ACCEPTED_LAYOUTS}", "not_found"
        )
    if p.is_file():
        if not _is_jsonl(p):
            raise CorpusError(
                str(p),
                f"is not a JSON Lines file (suffix {''.join(p.suffixes) or 'none'})",
                f"Accepted: {ACCEPTED_LAYOUTS}",
                "bad_layout",
            )
        return read_jsonl(p, lang=norm_lang, on_error=on_error, report=report)
    if not p.is_dir():
        raise CorpusError(
            str(p), "is neither a file nor a directory", f"Accepted: {ACCEPTED_LAYOUTS}", "bad_layout"
        )
    if _corpus_file(p, "corpus") is not None:
        return read_beir_corpus(p, lang=norm_lang, on_error=on_error, report=report)
    if (p / "corpus").is_dir():
        return read_collection_corpus(p, lang=norm_lang, on_error=on_error, report=report)
    files = sorted(f for f in p.iterdir() if f.is_file() and _is_jsonl(f))
    if files:
        return _read_many(files, norm_lang, on_error, report)
    raise CorpusError(
        str(p), "holds no corpus this reader knows", f"Accepted: {ACCEPTED_LAYOUTS}", "bad_layout"
    )
