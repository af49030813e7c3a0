"""Publishing a finished build over its target, crash-safe at every step; recovery and leftovers.

A build writes into ``.IDX.tmp-XXXX`` beside the target ``IDX``; its manifest, written last and
atomically, marks it complete. :func:`publish` then renames ``IDX`` -> ``.IDX.old-XXXX``, the staging
folder -> ``IDX``, removes the old manifest (so a half-removed old index is never taken for a whole one)
and the rest of the old folder. A crash between the two renames leaves no index at ``IDX``: the next
open (:meth:`xlir.indexing.manifest.Manifest.read`: searchers, updaters, servers, ``xlir index info``)
or build calls :func:`recover`, which renames the newest complete staged build (else the newest complete
old index) back to ``IDX``, under the writer lock (:mod:`xlir.indexing.locking`) so that it never races
a live build. :func:`remove_leftovers` removes the staging and old folders of dead builds (the next build
and ``xlir index gc`` call it under the lock, so no live build's folder is touched).

``XLIR_FAULT=<point>`` makes the process exit (status :data:`FAULT_EXIT`, no cleanup) at that point,
and ``XLIR_PAUSE=<point>=<seconds or a path>`` makes it sleep there (until the path exists): test hooks
that kill a build between any two file operations of the publish step (:data:`PUBLISH_POINTS`) or keep
it holding its lock (``build:started``).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from xlir.indexing.filecommit import fsync
from xlir.indexing.locking import IndexLockedError, hold

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
FAULT_EXIT = 70
#: The points of the publish step where ``XLIR_FAULT`` can stop a build (in the order they are reached).
PUBLISH_POINTS = (
    "publish:start",
    "publish:after-old-rename",
    "publish:after-new-rename",
    "publish:after-old-manifest-removed",
)
#: How long an opener waits for a writer that holds the lock while the target is missing (a publish
#: between its two renames takes milliseconds).
RECOVER_WAIT_S = 10.0


def fault(point: str) -> None:
    """The fault-injection hook: exit at once (``XLIR_FAULT``) or sleep (``XLIR_PAUSE``) at ``point``."""
    if os.environ.get("XLIR_FAULT") == point:
        log.warning("XLIR_FAULT=%s: exiting here", point)
        os._exit(FAULT_EXIT)
    name, _, until = os.environ.get("XLIR_PAUSE", "").partition("=")
    if name == point:
        try:
            time.sleep(float(until))
        except ValueError:  # a path: wait until it exists (at most ten minutes)
            deadline = time.monotonic() + 600
            while not Path(until).exists() and time.monotonic() < deadline:
                time.sleep(0.05)


def staging_dir(target: Path) -> Path:
    return _sibling(target, "tmp")


def _sibling(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{uuid.uuid4().hex[:8]}"


def _siblings(target: Path, kind: str) -> list[Path]:
    pattern = f".{glob.escape(target.name)}.{kind}-*"
    return sorted(p for p in target.parent.glob(pattern) if p.is_dir() and not p.is_symlink())


def _complete(directory: Path) -> bool:
    return (directory / MANIFEST_NAME).is_file()


def publish(staging: Path, target: Path) -> None:
    """Swap the complete build in ``staging`` in as ``target`` (the caller holds the writer lock)."""
    fault("publish:start")
    if target.exists():
        retired = _sibling(target, "old")
        os.replace(target, retired)
        fault("publish:after-old-rename")
        os.replace(staging, target)
        fsync(target.parent)
        fault("publish:after-new-rename")
        discard(retired, point="publish:after-old-manifest-removed")
    else:
        os.replace(staging, target)
        fsync(target.parent)


def discard(directory: Path, point: str | None = None) -> None:
    """Remove a staging or retired folder: its manifest first, so that what is left is never complete."""
    try:
        (directory / MANIFEST_NAME).unlink(missing_ok=True)
    except OSError:
        pass
    if point:
        fault(point)
    shutil.rmtree(directory, ignore_errors=True)


def recover(target: Path) -> Path | None:
    """If ``target`` holds no index, rename the best complete leftover to it; return what was restored.

    The newest complete staged build (its build finished, its publish did not) wins over the newest
    complete old index. The caller holds the writer lock of ``target``.
    """
    if _complete(target) or not target.parent.is_dir():
        return None
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        return None  # something that is not an index: not ours to replace
    for kind in ("tmp", "old"):
        candidates = [p for p in _siblings(target, kind) if _complete(p)]
        if candidates:
            best = max(candidates, key=lambda p: (p / MANIFEST_NAME).stat().st_mtime_ns)
            os.replace(best, target)  # onto a missing or empty directory: atomic
            fsync(target.parent)
            log.warning("restored the index %s from %s (an interrupted publish)", target, best.name)
            return best
    return None


def recover_for_reading(target: Path) -> None:
    """:func:`recover` for an opener that finds no index at ``target``: take the lock, then recover.

    Does nothing quickly when there is nothing to restore, when the lock file cannot be created (a
    read-only place), or when a writer keeps the lock longer than :data:`RECOVER_WAIT_S`.
    """
    target = Path(target).resolve()
    if _complete(target) or not any(_complete(p) for k in ("tmp", "old") for p in _siblings(target, k)):
        return
    try:
        with hold(target, "recover", wait=True, timeout=RECOVER_WAIT_S):
            recover(target)
    except (IndexLockedError, OSError) as exc:
        log.warning("cannot restore %s now: %s", target, exc)


@dataclass
class Cleanup:
    """What :func:`collect_garbage` did: the index restored from a leftover, and the leftovers removed."""

    restored: Path | None = None
    removed: list[Path] = field(default_factory=list)


def remove_leftovers(target: Path) -> list[Path]:
    """Remove the staging and old folders of dead builds of ``target`` (the caller holds its lock)."""
    removed = []
    for kind in ("tmp", "old"):
        for path in _siblings(target, kind):
            discard(path)
            removed.append(path)
    if removed:
        log.info("removed leftovers of interrupted builds: %s", ", ".join(p.name for p in removed))
    return removed


def collect_garbage(target: Path | str, *, wait: bool = False, timeout: float | None = None) -> Cleanup:
    """Under the writer lock: restore an interrupted publish, then remove every leftover of ``target``."""
    target = Path(target).resolve()
    with hold(target, "gc", wait=wait, timeout=timeout):
        restored = recover(target)
        return Cleanup(restored=restored, removed=remove_leftovers(target))
