"""One writer per index: an exclusive OS file lock beside the index directory, naming its holder.

Every process that changes an index holds :func:`hold` on it while it does: a build (from its start to
its publish), an :class:`xlir.indexing.updater.IndexUpdater` batch, a server applying a batch, ``xlir
index gc`` and the recovery of an interrupted publish. The lock is ``fcntl.flock`` on ``.IDX.lock`` in
the directory that holds ``IDX`` (beside it, not inside: a build replaces the directory, the lock must
outlive it), so the OS releases it when the holder dies, even by SIGKILL. Its holder writes who it is
(pid, host, since when, what) into the lock file; a second writer that cannot have the lock gets
:class:`IndexLockedError` naming that holder, or waits (``wait=True``, up to ``timeout`` seconds).

Within one process the lock is re-entrant per thread (an updater batch inside a server's hold, a
recovery inside a build) and threads take turns. The holder removes the file before it unlocks it; a
process that locked a file that was removed meanwhile retries on the new one (the usual check of the
inode), so no two processes ever hold the lock at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from xlir.errors import ConflictError

#: What a holder can be doing (written into the lock file), as errors name it.
WRITERS = {
    "build": "a build",
    "update": "an updater",
    "server": "a server applying a batch",
    "gc": "`xlir index gc`",
    "recover": "the recovery of an interrupted publish",
}
_POLL_S = 0.05


class IndexLockedError(ConflictError):
    """Another process (or thread) is writing the index: wait for it, or stop it."""

    def __init__(self, target: Path, holder: dict[str, Any] | None, waited: float | None = None) -> None:
        self.target = target
        self.holder = holder or {}
        super().__init__(_locked_message(target, self.holder, waited))


def lock_path(target: Path) -> Path:
    """The lock file of the index at ``target``: ``.NAME.lock`` beside it."""
    target = Path(target).resolve()
    return target.parent / f".{target.name}.lock"


def holder(target: Path) -> dict[str, Any] | None:
    """Who holds the lock of ``target`` now (pid, host, since, what), or None if nobody does."""
    path = lock_path(target)
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(handle)
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


@dataclass
class _Entry:
    """This process's state of one index lock: the thread lock, the depth and the open lock file."""

    threads: threading.RLock
    depth: int = 0
    handle: IO[bytes] | None = None
    info: dict[str, Any] | None = None


_ENTRIES: dict[Path, _Entry] = {}
_ENTRIES_LOCK = threading.Lock()


def _entry(path: Path) -> _Entry:
    with _ENTRIES_LOCK:
        return _ENTRIES.setdefault(path, _Entry(threading.RLock()))


@contextmanager
def hold(
    target: Path | str, what: str, *, wait: bool = False, timeout: float | None = None
) -> Iterator[dict[str, Any]]:
    """Hold the writer lock of the index at ``target`` (which need not exist yet) as ``what``.

    ``wait=False``: :class:`IndexLockedError` at once if another process or thread holds it;
    ``wait=True``: wait for it, up to ``timeout`` seconds (None: as long as it takes), then raise.
    Yields the holder record written into the lock file.
    """
    target = Path(target).resolve()
    path = lock_path(target)
    entry = _entry(path)
    deadline = None if not wait or timeout is None else time.monotonic() + timeout
    started = time.monotonic()
    if not entry.threads.acquire(blocking=False):
        if not wait or not entry.threads.acquire(timeout=-1 if deadline is None else max(0.0, timeout)):
            raise IndexLockedError(target, entry.info, time.monotonic() - started if wait else None)
    try:
        if entry.depth == 0:
            entry.handle = _lock_file(path, target, deadline if wait else started, started)
            entry.info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "since": datetime.now(UTC).isoformat(timespec="seconds"),
                "what": what,
            }
            try:
                _write_holder(entry.handle, entry.info)
            except BaseException:
                _release(path, entry)
                raise
        entry.depth += 1
        try:
            yield dict(entry.info or {})
        finally:
            entry.depth -= 1
            if entry.depth == 0:
                _release(path, entry)
    finally:
        entry.threads.release()


def _lock_file(path: Path, target: Path, deadline: float | None, started: float) -> IO[bytes]:
    """Open and flock ``path`` (created if missing), retrying until ``deadline`` (None: forever)."""
    while True:
        handle = open(path, "a+b")  # noqa: SIM115 (kept open while the lock is held)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _read_holder(handle)
            handle.close()
            if deadline is not None and time.monotonic() >= deadline:
                waited = time.monotonic() - started
                raise IndexLockedError(target, info, waited if waited > _POLL_S else None) from None
            time.sleep(_POLL_S)
            continue
        except BaseException:
            handle.close()
            raise
        try:  # the file we locked may have been removed by its last holder: lock the current one
            if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                return handle
        except FileNotFoundError:
            pass
        handle.close()


def _release(path: Path, entry: _Entry) -> None:
    handle, entry.handle, entry.info = entry.handle, None, None
    if handle is None:
        return
    try:
        path.unlink(missing_ok=True)  # before unlocking: a waiter that gets this inode retries
    except OSError:
        pass
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _write_holder(handle: IO[bytes], info: dict[str, Any]) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(info).encode())
    handle.flush()


def _read_holder(handle: IO[bytes]) -> dict[str, Any] | None:
    try:
        handle.seek(0)
        data = json.loads(handle.read().decode() or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _locked_message(target: Path, info: dict[str, Any], waited: float | None) -> str:
    if info:
        who = (
            f"{WRITERS.get(info.get('what', ''), 'a writer')} (pid {info.get('pid', '?')} on {info.get('host', '?')}, "
            f"since {info.get('since', '?')})"
        )
    else:
        who = "another writer (it is just starting)"
    after = f" after waiting {waited:.1f} s" if waited else ""
    return (
        f"the index {target} is being written by {who}{after}: one writer at a time. Retry when it "
        "has finished (the CLI's --wait waits for it), or stop that process: the OS releases its lock "
        "when it exits."
    )
