"""The Document record, the corpus readers that produce it, and the errors they raise.

Readers stream: they yield one :class:`Document` at a time and never hold a corpus in memory.
Every document carries ``origin`` ("file:line") so that a later stage (duplicate ids, empty text)
can point the user at the exact line to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Document:
    """One retrievable unit: an id, its text, and what is known about it."""

    id: str
    text: str
    lang: str | None = None
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)
    origin: str = field(default="", compare=False)


class CorpusError(ValueError):
    """A corpus problem a user can fix: names the place (``file:line``), the problem and what to do."""

    def __init__(self, where: str, problem: str, hint: str, reason: str = "invalid") -> None:
        self.where = where
        self.problem = problem
        self.hint = hint
        self.reason = reason
        super().__init__(f"{where}: {problem}. {hint}")
