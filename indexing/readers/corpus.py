"""``open_corpus``: the one entry point that reads any accepted corpus layout, picked by what it finds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from xlir.indexing.documents import CorpusError, Document
from xlir.indexing.readers.beir import read_beir_corpus
from xlir.indexing.readers.collection import read_collection_corpus
from xlir.indexing.readers.jsonl import read_jsonl, read_jsonl_files
from xlir.indexing.readers.report import (
    ACCEPTED_LAYOUTS,
    OnError,
    ReadReport,
    check_lang,
    check_on_error,
    corpus_file,
    is_jsonl,
)


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
    check_on_error(on_error)
    norm_lang = check_lang(lang)
    p = Path(path)
    if not p.exists():
        raise CorpusError(
            str(p), "no such file or directory", f"Check the path. Accepted: {ACCEPTED_LAYOUTS}", "not_found"
        )
    if p.is_file():
        if not is_jsonl(p):
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
    if corpus_file(p, "corpus") is not None:
        return read_beir_corpus(p, lang=norm_lang, on_error=on_error, report=report)
    if (p / "corpus").is_dir():
        return read_collection_corpus(p, lang=norm_lang, on_error=on_error, report=report)
    files = sorted(f for f in p.iterdir() if f.is_file() and is_jsonl(f))
    if files:
        return read_jsonl_files(files, norm_lang, on_error, report)
    raise CorpusError(
        str(p), "holds no corpus this reader knows", f"Accepted: {ACCEPTED_LAYOUTS}", "bad_layout"
    )
