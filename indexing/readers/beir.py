"""BEIR dataset directories: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from xlir.indexing.documents import CorpusError, Document
from xlir.indexing.readers.jsonl import iter_jsonl, read_jsonl
from xlir.indexing.readers.report import OnError, ReadReport, corpus_file, require_dir


def read_beir_corpus(
    directory: str | Path,
    *,
    lang: str | None = None,
    on_error: OnError = "stop",
    report: ReadReport | None = None,
) -> Iterator[Document]:
    """Documents from a BEIR dataset directory's ``corpus.jsonl`` (``_id``, ``title``, ``text``)."""
    d = Path(directory)
    require_dir(d)
    corpus = corpus_file(d, "corpus")
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
    require_dir(d)
    path = corpus_file(d, "queries")
    if path is None:
        raise CorpusError(
            str(d), "has no queries.jsonl", 'It must hold one {"_id": ..., "text": ...} a line', "not_found"
        )
    queries: dict[str, str] = {}
    first_seen: dict[str, str] = {}
    for doc in iter_jsonl(path, None, "stop", ReadReport()):
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
    require_dir(d)
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
