"""The translate channel's files: one Lucene index in the target language, and each document's language.

- ``<target>/``: the Lucene index of every document, translated or already in the target language,
  in the form of a BM25 sub-index (:mod:`xlir.indexing.channels.bm25.store`);
- ``langs.json``: each document id's ORIGINAL language (``und`` = unknown), so hits carry it.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from xlir.indexing.channels.bm25.store import UNKNOWN_LANG
from xlir.indexing.channels.files import FileWriters, load_json, save_json

__all__ = ["LANGS_FILE", "UNKNOWN_LANG", "langs_files", "load_langs"]

LANGS_FILE = "langs.json"


def load_langs(directory: Path) -> dict[str, str]:
    return load_json(directory / LANGS_FILE)


def langs_files(langs: dict[str, str]) -> FileWriters:
    """``langs.json``, for ``write_files`` (build) or ``commit_files`` (update)."""
    return {LANGS_FILE: partial(save_json, value=langs, ensure_ascii=True)}
