"""Replace several files of a channel directory together, so that a crash leaves the old set or the new.

A channel updater that rewrites more than one file (the FAISS index and its id list, say) cannot rely
on one atomic rename: a crash between two renames would pair a new index with old ids. So the new
files are first written, fsynced, into ``<directory>/.staging/``; then a ``COMMITTED`` marker (listing
the files) is written there atomically - the commit point - and only then is each staged file moved
over its old version with ``os.replace``. :func:`recover`, run whenever an updater opens the directory,
finishes the moves of a committed staging folder (roll forward) and discards an uncommitted one (roll
back). Each move is itself atomic, and a move already done is skipped, so recovery is idempotent.

:func:`atomic_write_text` (one file replaced atomically and durably: the marker here, the update
journal and the manifest in :mod:`xlir.indexing.updater`) and :func:`fsync` are the two primitives.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

STAGING = ".staging"
MARKER = "COMMITTED"


def commit_files(directory: Path, writers: Mapping[str, Callable[[Path], None]]) -> None:
    """Replace the files named in ``writers`` inside ``directory`` all together.

    ``writers`` maps a file name to a function that writes that file's new content at the path it is
    given (a path inside the staging folder). Returns once every file is in place and durable.
    """
    directory = Path(directory)
    stage = directory / STAGING
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    for name, write in writers.items():
        path = stage / name
        write(path)
        fsync(path)
    atomic_write_text(stage / MARKER, json.dumps(list(writers)))
    _finish(directory)


def recover(directory: Path) -> None:
    """Complete a committed, half-moved set of files in ``directory``; drop an uncommitted one."""
    stage = Path(directory) / STAGING
    if not stage.is_dir():
        return
    if (stage / MARKER).is_file():
        log.warning("completing an interrupted update of %s", directory)
        _finish(Path(directory))
    else:
        log.warning("discarding the uncommitted files of an interrupted update of %s", directory)
        shutil.rmtree(stage)


def _finish(directory: Path) -> None:
    stage = directory / STAGING
    names: list[str] = json.loads((stage / MARKER).read_text(encoding="utf-8"))
    for name in names:
        staged = stage / name
        if staged.exists():
            os.replace(staged, directory / name)
    fsync(directory)
    shutil.rmtree(stage)
    fsync(directory)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash leaves either the old or the new file, fsynced.

    The text goes to ``.<name>.tmp`` beside ``path``, is fsynced and renamed over ``path``; then the
    directory is fsynced, so that the rename itself is durable.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync(path.parent)


def fsync(path: Path) -> None:
    """Flush a file's content, or a directory's entries (renames, removals), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
