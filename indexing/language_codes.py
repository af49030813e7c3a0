"""Document languages as small integer codes, as the dense and multivector channels store them.

Each document gets an int16 code (-1 = unknown language) so that a language filter is one vectorized
comparison; the table (code -> language) is saved beside the vectors as ``languages.json``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
