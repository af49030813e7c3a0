"""Build progress: what a build reports while it runs, for whoever shows it (no terminal code here).

A build goes through stages: ``read`` (documents read and checked), one per channel (``dense``: documents
encoded or written), ``<channel> write`` (its files finished on ``close``: FAISS, k-means, Lucene merge),
``docstore`` and ``publish``. The builder and :class:`~xlir.indexing.channels.base.ChunkedWriter` call a
:class:`BuildProgress`: :meth:`~BuildProgress.start` a stage with its total (None when unknown),
:meth:`~BuildProgress.advance` it with the number done and the seconds spent on it so far, and
:meth:`~BuildProgress.finish` it. :class:`StageState` holds one stage's counts and computes the rate and
the time left; the CLI renders them (a live display on a terminal, a plain line every few seconds in a
log). :data:`NO_PROGRESS` is the default: it does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

_COUNT_BLOCK = 1 << 20


class BuildProgress(Protocol):
    """What a build calls as it goes; every call is cheap and must not raise."""

    def start(self, stage: str, total: int | None = None) -> None:
        """``stage`` begins (again, for a stage a build returns to batch after batch: then nothing changes)."""

    def advance(self, stage: str, done: int, seconds: float | None = None) -> None:
        """``done`` documents of ``stage`` so far, in ``seconds`` spent on it (None: since it started)."""

    def finish(self, stage: str) -> None:
        """``stage`` is over."""


class NullProgress:
    """Reports nothing."""

    def start(self, stage: str, total: int | None = None) -> None:
        return None

    def advance(self, stage: str, done: int, seconds: float | None = None) -> None:
        return None

    def finish(self, stage: str) -> None:
        return None


#: The progress of a build nobody watches.
NO_PROGRESS: BuildProgress = NullProgress()


@dataclass
class StageState:
    """One stage's counts: done of total (None: unknown), the seconds spent on it, whether it is over."""

    name: str
    total: int | None = None
    done: int = 0
    seconds: float | None = None
    started: float = field(default_factory=time.perf_counter)
    finished: bool = False

    def elapsed(self) -> float:
        """Seconds spent on the stage: as reported, else since it started."""
        return self.seconds if self.seconds is not None else time.perf_counter() - self.started

    def rate(self) -> float | None:
        """Documents per second; None before the first document."""
        elapsed = self.elapsed()
        return self.done / elapsed if self.done and elapsed > 0 else None

    def eta(self) -> float | None:
        """Seconds left at the current rate; None when the total or the rate is unknown."""
        rate = self.rate()
        if self.total is None or rate is None:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def line(self) -> str:
        """``dense 480/960 docs, 12.3 docs/s, eta 39 s`` (what is known of it)."""
        if self.total is None and not self.done:
            text = f"{self.name} {'done' if self.finished else 'running'}, {self.elapsed():.1f} s"
            return text
        counts = f"{self.done:,}/{self.total:,}" if self.total is not None else f"{self.done:,}"
        parts = [f"{self.name} {counts} docs"]
        rate = self.rate()
        if rate is not None:
            parts.append(f"{rate:.1f} docs/s")
        eta = self.eta()
        if self.finished:
            parts.append(f"done in {self.elapsed():.1f} s")
        elif eta is not None:
            parts.append(f"eta {eta:.0f} s")
        return ", ".join(parts)


class ProgressState:
    """A :class:`BuildProgress` that keeps every stage's :class:`StageState`, in the order they started.

    Renderers subclass it (or read :attr:`stages`) and override :meth:`changed`, called after each call.
    """

    def __init__(self) -> None:
        self.stages: dict[str, StageState] = {}

    def start(self, stage: str, total: int | None = None) -> None:
        state = self.stages.get(stage)
        if state is None or state.finished:
            self.stages[stage] = StageState(stage, total)
        elif total is not None:
            state.total = total
        self.changed(self.stages[stage])

    def advance(self, stage: str, done: int, seconds: float | None = None) -> None:
        state = self.stages.get(stage)
        if state is None:
            state = self.stages[stage] = StageState(stage)
        state.done = done
        if seconds is not None:
            state.seconds = seconds
        self.changed(state)

    def finish(self, stage: str) -> None:
        state = self.stages.get(stage)
        if state is None:
            state = self.stages[stage] = StageState(stage)
        if state.seconds is None:
            state.seconds = time.perf_counter() - state.started
        state.finished = True
        self.changed(state)

    def active(self) -> list[StageState]:
        """The stages started and not finished."""
        return [s for s in list(self.stages.values()) if not s.finished]

    def changed(self, state: StageState) -> None:
        """Called after every change of ``state`` (nothing here)."""
        return None


def corpus_size(documents: Iterable[object]) -> int | None:
    """The number of documents ``documents`` will yield, when it can be known cheaply; else None.

    A sized collection gives its length; an :func:`~xlir.indexing.readers.open_corpus` corpus, the
    non-blank lines of its JSON Lines files (counted in blocks of raw bytes, not parsed: lines a reader
    skips are counted too). A file that cannot be read leaves it unknown (the reader reports it).
    """
    if hasattr(documents, "__len__"):
        return len(documents)  # type: ignore[arg-type]
    files = getattr(documents, "files", None)
    if not files:
        return None
    try:
        return sum(_count_lines(Path(f)) for f in files)
    except Exception:  # noqa: BLE001 - a count is only a nicety; the reader reports a bad file
        return None


def _count_lines(path: Path) -> int:
    """The non-blank lines of ``path`` (gzip or plain)."""
    from xlir.indexing.readers.jsonl import open_binary

    count = 0
    tail = b""
    with open_binary(path) as stream:
        while block := stream.read(_COUNT_BLOCK):
            lines = (tail + block).split(b"\n")
            tail = lines.pop()
            count += sum(1 for line in lines if line.strip())
    return count + (1 if tail.strip() else 0)
