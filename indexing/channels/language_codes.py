"""Document languages as small integer codes, as the dense and multivector channels store them.

Each document gets an int16 code (-1 = unknown language) so that a language filter is one vectorized
comparison; the table (code -> language) is saved beside the vectors as ``languages.json``.
:class:`DocumentLanguages` is the three files those channels keep beside their vectors: the ids in
vector order (``docids.json``), each one's code (``langs.npy``) and the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from xlir.indexing.channels.files import FileWriters, load_json, save_array, save_json

DOCIDS_FILE = "docids.json"
LANGS_FILE = "langs.npy"
LANGUAGES_FILE = "languages.json"


class LanguageCodes:
    """Language -> code, growing as new languages arrive; ``table()`` is the list to save (code order)."""

    def __init__(self, table: Sequence[str] = (), channel: str = "this") -> None:
        self._codes: dict[str, int] = {lang: code for code, lang in enumerate(table)}
        self._channel = channel

    def code(self, lang: str | None) -> int:
        if lang is None:
            return -1
        code = self._codes.get(lang)
        if code is None:
            code = len(self._codes)
            if code > np.iinfo(np.int16).max:
                raise ValueError(
                    f"more distinct document languages than the {self._channel} channel can record (32767)."
                )
            self._codes[lang] = code
        return code

    def table(self) -> list[str]:
        return sorted(self._codes, key=self._codes.__getitem__)


@dataclass
class DocumentLanguages:
    """Document ids in vector order, each one's language code (int16, -1 unknown) and the code table."""

    docids: list[str]
    codes: np.ndarray
    table: list[str]

    @classmethod
    def load(cls, directory: Path) -> DocumentLanguages:
        return cls(
            docids=load_json(directory / DOCIDS_FILE),
            codes=np.load(directory / LANGS_FILE),
            table=load_json(directory / LANGUAGES_FILE),
        )

    @property
    def langs(self) -> list[str | None]:
        """Each document's language (None = unknown)."""
        return [self.table[c] if c >= 0 else None for c in self.codes.tolist()]

    def files(self) -> FileWriters:
        """The three files, for :func:`xlir.indexing.channels.files.write_files` or ``commit_files``."""
        return {
            DOCIDS_FILE: partial(save_json, value=self.docids),
            LANGS_FILE: partial(save_array, array=np.asarray(self.codes, dtype=np.int16)),
            LANGUAGES_FILE: partial(save_json, value=self.table),
        }
