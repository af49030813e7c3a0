"""How a channel writes its files: one function per file name, for a build and for an update alike.

A channel's store describes its files as ``{file name: function writing it at a path}``. A build
writes them straight into the channel directory (:func:`write_files`); an update hands the same
mapping to :func:`xlir.indexing.filecommit.commit_files`, which stages them and replaces the old set
together. The savers write to exactly the path given (``np.save`` would append ``.npy`` to a staging
name without one).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

FileWriters = Mapping[str, Callable[[Path], None]]


def write_files(directory: Path, writers: FileWriters) -> None:
    """Write every file of ``writers`` into ``directory`` (a fresh build; no staging)."""
    for name, write in writers.items():
        write(directory / name)


def save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` to exactly ``path``."""
    with open(path, "wb") as handle:
        np.save(handle, array)


def save_json(path: Path, value: Any, *, ensure_ascii: bool = False) -> None:
    """``value`` as compact UTF-8 JSON (non-ASCII characters kept as they are unless ``ensure_ascii``)."""
    path.write_text(json.dumps(value, ensure_ascii=ensure_ascii), encoding="utf-8")


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def directory_bytes(directory: Path) -> int:
    """Total size of the files under ``directory``."""
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
