"""``open_corpus``: the one entry point that reads any accepted corpus layout, picked by what it finds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from xlir.indexing.documents import CorpusError, Document
from xlir.indexing.readers.beir import read_beir_corpus
from xlir.indexing.readers.collection import read_collection_corpus, selected_files
from xlir.indexing.readers.ids import check_unique_ids
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


class Corpus(Iterator[Document]):
    """The documents of a corpus, read once as they are iterated, and the JSON Lines files they come from.

    :meth:`check_unique_ids` finds a duplicate id before any document is read: the index builder calls
    it first when it stops at duplicates (``on_error="stop"``), so that a duplicate at line 5,000 fails
    the build at once, not after the channels have encoded the lines before it.
    """

    def __init__(self, documents: Iterator[Document], files: Sequence[Path]) -> None:
        self._documents = documents
        #: the corpus files, in reading order
        self.files = list(files)

    def __iter__(self) -> Corpus:
        return self

    def __next__(self) -> Document:
        return next(self._documents)

    def check_unique_ids(self) -> int | None:
        """Raise the ``duplicate_id`` CorpusError (naming both lines) of the first id the files hold twice.

        One quick pass over the ids (:func:`~xlir.indexing.readers.ids.check_unique_ids`); a line whose id
        cannot be read is left to the reader, which reports it in its turn. Returns the non-blank lines
        counted on the way (None if a file could not be read to its end).
        """
        return check_unique_ids(self.files)


def open_corpus(
    path: str | Path,
    *,
    lang: str | None = None,
    on_error: OnError = "stop",
    report: ReadReport | None = None,
) -> Corpus:
    """Documents from any accepted corpus layout; the one entry point for the index builder and the CLI.

    Accepts a ``.jsonl`` / ``.jsonl.gz`` file, a BEIR directory (has ``corpus.jsonl``), a collection
    directory (has ``corpus/*.jsonl``) or a directory of ``.jsonl`` files (read in name order). Anything
    else raises a CorpusError that lists these layouts. See :func:`read_jsonl` for ``lang``,
    ``on_error`` and ``report``; :class:`Corpus` for the duplicate ids found before reading.
    """
    return Corpus(*_open(path, lang, on_error, report))


def _open(
    path: str | Path, lang: str | None, on_error: OnError, report: ReadReport | None
) -> tuple[Iterator[Document], list[Path]]:
    """The documents of the corpus at ``path`` and the JSON Lines files they come from, in order."""
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
        return read_jsonl(p, lang=norm_lang, on_error=on_error, report=report), [p]
    if not p.is_dir():
        raise CorpusError(
            str(p), "is neither a file nor a directory", f"Accepted: {ACCEPTED_LAYOUTS}", "bad_layout"
        )
    beir = corpus_file(p, "corpus")
    if beir is not None:
        return read_beir_corpus(p, lang=norm_lang, on_error=on_error, report=report), [beir]
    if (p / "corpus").is_dir():
        documents = read_collection_corpus(p, lang=norm_lang, on_error=on_error, report=report)
        return documents, selected_files(p)
    files = sorted(f for f in p.iterdir() if f.is_file() and is_jsonl(f))
    if files:
        return read_jsonl_files(files, norm_lang, on_error, report), files
    raise CorpusError(
        str(p), "holds no corpus this reader knows", f"Accepted: {ACCEPTED_LAYOUTS}", "bad_layout"
    )
