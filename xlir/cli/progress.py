"""How a build shows its progress: a live table on a terminal, plain lines every few seconds otherwise."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from xlir.indexing.progress import ProgressState, StageState

if TYPE_CHECKING:
    pass


class LiveProgress(ProgressState):
    """A build's stages as a live table on a terminal: done/total, docs/s, time left (redrawn 4 times a second)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: Live | None = None

    def changed(self, state: StageState) -> None:
        if self.live is not None:
            self.live.update(self.table())

    def table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        for state in list(self.stages.values()):
            mark = "[green]done[/]" if state.finished else "[cyan]...[/]"
            table.add_row(mark, state.line(), style=None)
        return table


class PlainProgress(ProgressState):
    """A build's progress as plain lines (``build: dense 480/960 docs, 12.3 docs/s, eta 39 s``) every few seconds.

    For a log or a pipe: a thread writes a line per running stage every ``every`` seconds (so a stage
    that reports nothing for a while, a FAISS or k-means ``write``, still shows), and one line when each
    stage finishes.
    """

    def __init__(self, write: Any, every: float) -> None:
        super().__init__()
        self.write = write
        self.every = every
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    def changed(self, state: StageState) -> None:
        if state.finished:
            self.emit([state])

    def emit(self, states: list[StageState]) -> None:
        with self.lock:
            for state in states:
                self.write(f"build: {state.line()}")

    def run(self) -> None:
        shown: dict[str, int] = {}
        while not self.stopped.wait(self.every):
            active = self.active()
            moving = [s for s in active if shown.get(s.name) != s.done or (s.total is None and not s.done)]
            self.emit(moving or active[-1:])  # what moved; else a sign of life from the latest stage
            shown.update((s.name, s.done) for s in active)


@contextmanager
def build_progress(target: Console, every: float = 5.0) -> Iterator[ProgressState]:
    """The progress display of a build: live on a terminal, plain lines every ``every`` seconds otherwise."""
    if target.is_terminal:
        live_progress = LiveProgress()
        with Live(live_progress.table(), console=target, refresh_per_second=4, transient=True) as live:
            live_progress.live = live
            yield live_progress
        return

    def write(line: str) -> None:
        print(line, file=target.file, flush=True)

    plain = PlainProgress(write, every)
    thread = threading.Thread(target=plain.run, name="build-progress", daemon=True)
    thread.start()
    try:
        yield plain
    finally:
        plain.stopped.set()
        thread.join(timeout=1)
