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

from xlir.errors import ConflictError
from xlir.indexing.documents import Document


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
    "bm25": "xlir.indexing.channels.bm25.writer:BM25Writer",
    "dense": "xlir.indexing.channels.dense.writer:DenseWriter",
    "sparse": "xlir.indexing.channels.sparse.writer:SparseWriter",
    "multivector": "xlir.indexing.channels.multivector.writer:MultiVectorWriter",
    "translate": "xlir.indexing.channels.translate.writer:TranslatedWriter",
}


class ChannelUpdater(Protocol):
    """Changes one channel of a built index in place (incremental updates, see :mod:`xlir.indexing.updater`).

    Opened on the channel's directory with the details its writer (or last updater) recorded in the
    manifest and the channel's config section. The caller applies one batch as ``delete(ids)`` (every id
    being replaced or removed; ids the channel does not hold are ignored) then ``add(docs)`` (documents
    whose ids the channel no longer holds, language resolved, text non-empty), then ``close()``, which
    makes the batch durable and returns the channel's new manifest details. Both steps must be
    idempotent under replay: applying the same batch twice leaves the same channel as applying it once.
    An updater may also define ``abort()`` (discard uncommitted changes), called instead of ``close()``
    when the batch fails.
    """

    def delete(self, ids: list[str]) -> None: ...

    def add(self, docs: list[Document]) -> None: ...

    def close(self) -> dict[str, Any]: ...


#: channel name -> "module:Class" of its incremental updater. Constructor:
#: ``Updater(directory, details, config)`` (manifest details and the channel's config section).
#: Channels missing here cannot be updated in place: their indexes must be rebuilt.
UPDATERS: dict[str, str] = {
    "bm25": "xlir.indexing.channels.bm25.writer:BM25Updater",
    "dense": "xlir.indexing.channels.dense.writer:DenseUpdater",
    "sparse": "xlir.indexing.channels.sparse.writer:SparseUpdater",
    "translate": "xlir.indexing.channels.translate.writer:TranslatedUpdater",
    "multivector": "xlir.indexing.channels.multivector.writer:MultiVectorUpdater",
}


class UpdateNotSupportedError(ConflictError, RuntimeError):
    """The index has a channel that cannot be updated incrementally (it has no registered updater)."""

    def __init__(self, channels: list[str]) -> None:
        self.channels = channels
        names = ", ".join(repr(c) for c in channels)
        super().__init__(
            f"this index has channel(s) {names} which do not support incremental updates yet; "
            "rebuild with `xlir index build --overwrite` to change its documents"
        )


def open_updater(
    channel: str, directory: Path, details: dict[str, Any], config: dict[str, Any] | None = None
) -> ChannelUpdater:
    """The incremental updater of ``channel`` over ``directory`` (raises UpdateNotSupportedError)."""
    if channel not in UPDATERS:
        raise UpdateNotSupportedError([channel])
    return load_class(UPDATERS[channel])(directory, details, config or {})


def load_class(dotted: str) -> Any:
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


def open_writer(channel: str, directory: Path, config: dict[str, Any]) -> ChannelWriter:
    if channel not in WRITERS:
        known = ", ".join(sorted(WRITERS))
        raise ValueError(f"unknown channel {channel!r}; known channels: {known}")
    directory.mkdir(parents=True, exist_ok=True)
    return load_class(WRITERS[channel])(directory, config)
