"""What every corpus reader shares: the ``on_error`` policy, the :class:`ReadReport`, the accepted layouts.

Also the small path checks the directory readers make (a directory that exists, a ``<stem>.jsonl`` or
``<stem>.jsonl.gz`` file in it), so that each layout reports a missing or misplaced corpus alike.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from xlir.indexing.documents import CorpusError
from xlir.indexing.errors import ConfigError
from xlir.models.languages import normalize_language

logger = logging.getLogger(__name__)

OnError = Literal["stop", "skip"]

ACCEPTED_LAYOUTS = (
    "a .jsonl or .jsonl.gz file (one JSON object a line: id, text, optional lang and title); "
    "a BEIR directory (corpus.jsonl, queries.jsonl, qrels/<split>.tsv); "
    "a collection directory with corpus/<name>.jsonl files; "
    "or a directory of .jsonl / .jsonl.gz files"
)


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


def check_on_error(on_error: str) -> None:
    if on_error not in ("stop", "skip"):
        raise ConfigError(f"on_error must be 'stop' or 'skip', got {on_error!r}")


def check_lang(lang: str | None) -> str | None:
    """The normalized language argument of a reader; an invalid one is the caller's error, raised now."""
    return None if lang is None else normalize_language(lang)


def is_jsonl(path: Path) -> bool:
    return path.name.endswith((".jsonl", ".jsonl.gz"))


def corpus_file(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def require_dir(directory: Path) -> None:
    if not directory.exists():
        raise CorpusError(
            str(directory), "no such directory", f"Check the path. Accepted: {ACCEPTED_LAYOUTS}", "not_found"
        )
    if not directory.is_dir():
        raise CorpusError(str(directory), "is not a directory", f"Accepted: {ACCEPTED_LAYOUTS}", "bad_layout")
