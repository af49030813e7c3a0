"""The shared collection layout: ``<collection>/corpus/<name>.jsonl``, one file a corpus (or a bitext side)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from xlir.indexing.documents import CorpusError, Document
from xlir.indexing.readers.jsonl import read_jsonl_files
from xlir.indexing.readers.report import (
    ACCEPTED_LAYOUTS,
    OnError,
    ReadReport,
    check_lang,
    check_on_error,
    is_jsonl,
    require_dir,
)
from xlir.models.languages import LanguageError, normalize_language


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
    check_on_error(on_error)
    norm_lang = check_lang(lang)
    return read_jsonl_files(
        selected_files(collection_dir, names), norm_lang, on_error, report, file_lang=_file_language
    )


def selected_files(collection_dir: str | Path, names: list[str] | None = None) -> list[Path]:
    """The corpus files of a collection that :func:`read_collection_corpus` reads, in its order."""
    d = Path(collection_dir)
    require_dir(d)
    corpus_dir = d / "corpus"
    if not corpus_dir.is_dir():
        raise CorpusError(str(d), "has no corpus/ directory", f"Accepted: {ACCEPTED_LAYOUTS}", "bad_layout")
    available = {_stem(p): p for p in sorted(corpus_dir.iterdir()) if p.is_file() and is_jsonl(p)}
    if not available:
        raise CorpusError(
            str(corpus_dir), "holds no .jsonl files", "Put one <name>.jsonl a corpus there", "bad_layout"
        )
    if names is None:
        return [available[n] for n in sorted(available)]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise CorpusError(
            str(corpus_dir),
            f"has no corpus named {', '.join(map(repr, unknown))}",
            f"Available: {', '.join(sorted(available))}",
            "not_found",
        )
    return [available[n] for n in names]


def _file_language(path: Path) -> str | None:
    return _side_language(_stem(path))


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
