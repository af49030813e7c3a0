"""TREC-style evaluation files: topics (queries), qrels (judgments) and runs.

Formats read and written:

* topics - ``qid<TAB>text`` one a line (``.tsv``, as in ``shared/data/*/queries``); BEIR/ir_datasets
  ``queries.jsonl`` (``{"_id": ..., "text": ...}``, also ``id``/``qid``/``query_id`` and ``query``/``title``);
  classic TREC SGML topics (``<top><num> Number: 401 <title> ...</top>``, the title is the query).
* qrels - TREC ``qid iteration docid relevance`` (whitespace-separated), or BEIR ``qrels/*.tsv``
  (``query-id<TAB>corpus-id<TAB>score``, with or without its header line).
* runs - TREC ``qid Q0 docid rank score tag`` (whitespace-separated).

Every malformed line raises :class:`TrecFormatError` naming ``file:line``, the problem and the fix.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from xlir.eval.errors import EvalError, EvalFileNotFoundError
from xlir.indexing.ranking import ChannelScore, Hit, Ranking

logger = logging.getLogger(__name__)

Topics = dict[str, str]
Qrels = dict[str, dict[str, int]]
#: A run: each query's ranking (``{qid: Ranking}``), as a TREC run file holds it.
Run = dict[str, Ranking]

_QID_KEYS = ("_id", "id", "qid", "query_id")
_TEXT_KEYS = ("text", "query", "title")
_BEIR_HEADER = ("query-id", "corpus-id", "score")


class TrecFormatError(EvalError):
    """A malformed topics, qrels or run file: ``where`` is ``file:line`` (or the file)."""

    def __init__(self, where: str, problem: str, hint: str) -> None:
        self.where = where
        self.problem = problem
        self.hint = hint
        super().__init__(f"{where}: {problem}. {hint}")


def read_topics(path: str | Path) -> Topics:
    """Read queries into ``{qid: text}`` (file order), from a TSV, JSONL or TREC SGML topics file."""
    path = _existing(path, "topics")
    head = _first_content(path)
    if head.startswith("<top>"):
        return _read_sgml_topics(path)
    if path.suffix == ".jsonl" or head.startswith("{"):
        return _read_jsonl_topics(path)
    topics: Topics = {}
    for where, line in _lines(path):
        qid, sep, text = line.partition("\t")
        qid, text = qid.strip(), text.strip()
        if not sep:
            raise TrecFormatError(
                where, f"no TAB in {_show(line)}", "topics lines are 'qid<TAB>text' (one query a line)"
            )
        if not qid:
            raise TrecFormatError(where, "empty query id", "put the query id before the TAB")
        if not text:
            raise TrecFormatError(where, f"query {qid!r} has no text", "put the query text after the TAB")
        _add_topic(topics, qid, text, where)
    return topics


def read_qrels(path: str | Path) -> Qrels:
    """Read judgments into ``{qid: {docid: relevance}}`` from TREC 4-column or BEIR 3-column qrels."""
    path = _existing(path, "qrels")
    qrels: Qrels = {}
    first = True
    for where, line in _lines(path):
        fields = line.split()
        if first:
            first = False
            if tuple(field.lower() for field in fields) == _BEIR_HEADER:
                continue
        if len(fields) == 4:
            qid, _, docid, rel_text = fields
        elif len(fields) == 3:
            qid, docid, rel_text = fields
        else:
            raise TrecFormatError(
                where,
                f"expected 4 fields (qid 0 docid relevance) or 3 (qid docid relevance), got {len(fields)} "
                f"in {_show(line)}",
                "fix the line; ids must not contain spaces",
            )
        try:
            rel = int(rel_text)
        except ValueError:
            try:
                as_float = float(rel_text)
            except ValueError:
                as_float = math.nan
            if not as_float.is_integer():
                layout = "qid 0 docid relevance" if len(fields) == 4 else "qid docid relevance (3 fields)"
                raise TrecFormatError(
                    where,
                    f"relevance {rel_text!r} is not an integer",
                    f"the line was read as {layout}; relevance grades are integers (0, 1, 2...)",
                ) from None
            rel = int(as_float)
        judged = qrels.setdefault(qid, {})
        if docid in judged and judged[docid] != rel:
            raise TrecFormatError(
                where,
                f"document {docid!r} is judged again for query {qid!r} with a different relevance "
                f"({judged[docid]} before, {rel} here)",
                "keep one judgment per (query, document)",
            )
        judged[docid] = rel
    return qrels


def write_run(path: str | Path, rankings: Mapping[str, Ranking], tag: str) -> Path:
    """Write ``{qid: Ranking}`` as a TREC run: ``qid Q0 docid rank score tag``, ranks from 1 in list order.

    Scores are written as given; tools such as trec_eval re-sort by score, so write rankings whose scores
    do not increase down the list (every Ranking built by this project satisfies this). Returns ``path``.
    """
    if not tag or any(ch.isspace() for ch in tag):
        raise EvalError(f"run tag {tag!r} must be a non-empty word without spaces (it is the 6th column)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for qid, ranking in rankings.items():
        _check_token(qid, "query id")
        if not isinstance(ranking, Ranking):
            raise TypeError(f"run entry for query {qid!r} must be a Ranking, got {type(ranking).__name__}")
        for rank, hit in enumerate(ranking.hits, start=1):
            _check_token(hit.docid, f"docid (query {qid!r})")
            score = float(hit.score)
            if not math.isfinite(score):
                raise ValueError(
                    f"query {qid!r}, document {hit.docid!r}: score {score!r} cannot go in a run file"
                )
            lines.append(f"{qid} Q0 {hit.docid} {rank} {score!r} {tag}\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(path)
    return path


def read_run(path: str | Path) -> Run:
    """Read a TREC run into ``{qid: Ranking}`` ordered by the rank column; ``Ranking.source`` = the tag.

    Each hit's ``sources`` is ``{tag: ChannelScore(rank, score)}`` with the rank and score from the file.
    """
    path = _existing(path, "run")
    rows: dict[str, list[tuple[int, float, str]]] = {}
    tags: dict[str, str] = {}
    seen: dict[str, set[str]] = {}
    for where, line in _lines(path):
        fields = line.split()
        if len(fields) != 6:
            raise TrecFormatError(
                where,
                f"expected 6 fields (qid Q0 docid rank score tag), got {len(fields)} in {_show(line)}",
                "fix the line; ids and the tag must not contain spaces",
            )
        qid, _, docid, rank_text, score_text, tag = fields
        try:
            rank = int(rank_text)
        except ValueError:
            raise TrecFormatError(
                where, f"rank {rank_text!r} is not an integer", "column 4 is the rank"
            ) from None
        try:
            score = float(score_text)
        except ValueError:
            raise TrecFormatError(
                where, f"score {score_text!r} is not a number", "column 5 is the score"
            ) from None
        if tags.setdefault(qid, tag) != tag:
            raise TrecFormatError(
                where,
                f"query {qid!r} mixes run tags {tags[qid]!r} and {tag!r}",
                "split the file into one run per tag",
            )
        docs = seen.setdefault(qid, set())
        if docid in docs:
            raise TrecFormatError(
                where,
                f"document {docid!r} appears twice for query {qid!r}",
                "keep one line per (query, document)",
            )
        docs.add(docid)
        rows.setdefault(qid, []).append((rank, score, docid))
    run: dict[str, Ranking] = {}
    for qid, entries in rows.items():
        entries.sort(key=lambda entry: (entry[0], -entry[1], entry[2]))
        tag = tags[qid]
        hits = tuple(
            Hit(docid=docid, score=score, sources={tag: ChannelScore(rank=rank, score=score)})
            for rank, score, docid in entries
        )
        run[qid] = Ranking(source=tag, hits=hits)
    return run


def json_safe(value: Any) -> Any:
    """``value`` ready for strict JSON (the reports written beside run files): NaN and infinities become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


# --- helpers -----------------------------------------------------------------------------------------


def _existing(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise EvalFileNotFoundError(f"{what} file {path} does not exist (or is not a file); check the path")
    return path


def _lines(path: Path) -> Iterator[tuple[str, str]]:
    """Non-blank lines with their ``file:line``; a UTF-8 BOM on the first line is dropped."""
    try:
        with path.open(encoding="utf-8") as handle:
            for number, raw in enumerate(handle, start=1):
                line = raw.rstrip("\r\n")
                if number == 1:
                    line = line.lstrip("\ufeff")
                if line.strip():
                    yield f"{path}:{number}", line
    except UnicodeDecodeError as exc:
        raise TrecFormatError(
            str(path), f"not UTF-8 text ({exc.reason})", "re-encode the file as UTF-8"
        ) from None


def _first_content(path: Path) -> str:
    for _, line in _lines(path):
        return line.lstrip()
    return ""


def _show(line: str, width: int = 60) -> str:
    return repr(line if len(line) <= width else line[:width] + "...")


def _check_token(value: str, what: str) -> None:
    if not isinstance(value, str) or not value or any(ch.isspace() for ch in value):
        raise EvalError(
            f"{what} {value!r} cannot go in a TREC file: it must be a non-empty string without spaces"
        )


def _add_topic(topics: Topics, qid: str, text: str, where: str) -> None:
    if qid in topics:
        raise TrecFormatError(where, f"query id {qid!r} occurs twice", "give every query a unique id")
    topics[qid] = text


def _read_jsonl_topics(path: Path) -> Topics:
    topics: Topics = {}
    for where, line in _lines(path):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrecFormatError(where, f"invalid JSON ({exc.msg})", "one JSON object a line") from None
        if not isinstance(record, dict):
            raise TrecFormatError(where, "the line is not a JSON object", 'write {"_id": ..., "text": ...}')
        qid = next((record[key] for key in _QID_KEYS if record.get(key) not in (None, "")), None)
        text = next(
            (record[key] for key in _TEXT_KEYS if isinstance(record.get(key), str) and record[key].strip()),
            None,
        )
        if qid is None:
            raise TrecFormatError(
                where, f"no query id (looked for {list(_QID_KEYS)})", 'add "_id" to the object'
            )
        if text is None:
            raise TrecFormatError(
                where,
                f"query {qid!r} has no text (looked for {list(_TEXT_KEYS)})",
                'add "text" to the object',
            )
        _add_topic(topics, str(qid), text.strip(), where)
    return topics


_NUM = re.compile(r"<num>\s*(?:Number:)?\s*(\S+)", re.IGNORECASE)
_TITLE = re.compile(r"<title>\s*(?:Topic:)?\s*(.*?)\s*(?=<[a-z]+>|</top>|$)", re.IGNORECASE | re.DOTALL)


def _read_sgml_topics(path: Path) -> Topics:
    text = path.read_text(encoding="utf-8")
    topics: Topics = {}
    for match in re.finditer(r"<top>(.*?)</top>", text, re.IGNORECASE | re.DOTALL):
        body = match.group(1)
        where = f"{path}:{text.count(chr(10), 0, match.start()) + 1}"
        num = _NUM.search(body)
        title = _TITLE.search(body)
        if num is None:
            raise TrecFormatError(where, "topic without <num>", "give every <top> a '<num> Number: ID' line")
        if title is None or not " ".join(title.group(1).split()):
            raise TrecFormatError(where, f"topic {num.group(1)!r} has no <title>", "add a <title> line")
        _add_topic(topics, num.group(1), " ".join(title.group(1).split()), where)
    if not topics:
        raise TrecFormatError(
            str(path), "no <top>...</top> topics found", "check the file is TREC SGML topics"
        )
    return topics
