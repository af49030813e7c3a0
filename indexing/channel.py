"""What an index channel's writer is, and where each channel's writer lives.

A channel is a pair (writer in ``indexing``, searcher in ``retrieval``) plus its encoder. Adding a
channel adds one module here and one in ``retrieval`` and a line in each registry; nothing else.
Writers are looked up by dotted path so that heavy imports (the JVM, torch) happen only when the
channel is used.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

from indexing.documents import Document


class ChannelWriter(Protocol):
    """Writes one channel of an index into its own directory.

    ``add`` receives every document of the corpus (language already resolved, text non-empty);
    ``close`` finishes the channel on disk and returns the details the manifest records for it
    (its config, model names, counts) - the searcher is built from exactly those details.
    """

    def add(self, doc: Document) -> None: ...

    def close(self) -> dict[str, Any]: ...


#: channel name -> "module:Class" of its writer. Constructor: ``Writer(directory, config)``.
WRITERS: dict[str, str] = {
    "bm25": "indexing.bm25:BM25Writer",
    "dense": "indexing.dense:DenseWriter",
    "sparse": "indexing.sparse:SparseWriter",
}


def load_class(dotted: str) -> Any:
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


def open_writer(channel: str, directory: Path, config: dict[str, Any]) -> ChannelWriter:
    if channel not in WRITERS:
        known = ", ".join(sorted(WRITERS))
        raise ValueError(f"unknown channel {channel!r}; known channels: {known}")
    directory.mkdir(parents=True, exist_ok=True)
    return load_class(WRITERS[channel])(directory, config)
