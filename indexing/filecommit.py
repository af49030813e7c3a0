"""Replace several files of a channel directory together, so that a crash leaves the old set or the new.

A channel updater that rewrites more than one file (the FAISS index and its id list, say) cannot rely
on one atomic rename: a crash between two renames would pair a new index with old ids. So the new
files are first written, fsynced, into ``<directory>/.staging/``; then a ``COMMITTED`` marker (listing
the files) is written there atomically - the commit point - and only then is each staged file moved
over its old version with ``os.replace``. :func:`recover`, run whenever an updater opens the directory,
finishes the moves of a committed staging folder (roll forward) and discards an uncommitted one (roll
back). Each move is itself atomic, and a move already done is skipped, so recovery is idempotent.
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
        _fsync_file(path)
    marker = stage / MARKER
    tmp = stage / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(list(writers)), encoding="utf-8")
    _fsync_file(tmp)
    os.replace(tmp, marker)
    _fsync_dir(stage)
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
    _fsync_dir(directory)
    shutil.rmtree(stage)
    _fsync_dir(directory)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
