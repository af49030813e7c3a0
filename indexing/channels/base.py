"""What a channel's writer, updater and searcher are, and how to open one by channel name.

The three base classes are the channel protocol: a channel subclasses them (its classes are named in
:data:`xlir.indexing.channels.CHANNELS`) and inherits the defaults here (``add_many`` as a loop over
``add``, ``abort`` doing nothing, ``search`` as a batch of one). :func:`open_writer`,
:func:`open_updater` and :func:`open_searcher` load a channel's class on first use.

Two partial implementations hold what several channels do alike: :class:`ChunkedWriter` (documents
encoded a chunk at a time, files written on ``close``: dense, multivector, sparse) and
:class:`StagedUpdater` / :class:`PositionalUpdater` (files replaced together with
:func:`xlir.indexing.filecommit.commit_files`; a batch collected in a
:class:`xlir.indexing.pending.PendingBatch` before one rewrite).
"""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence, Set
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from xlir.errors import ConflictError
from xlir.indexing.channels import CHANNELS
from xlir.indexing.documents import Document
from xlir.indexing.errors import ConfigError, IndexDamagedError
from xlir.indexing.filecommit import recover
from xlir.indexing.pending import PendingBatch
from xlir.indexing.progress import NO_PROGRESS, BuildProgress
from xlir.indexing.ranking import Ranking

T = TypeVar("T")

#: A query's detected language and the detector's confidence, e.g. ``("de", 0.98)``: detected once per
#: query by the searcher facade (:mod:`xlir.retrieval.query`); each channel applies its own threshold.
DetectedLanguage = tuple[str, float]
#: Document languages a search is restricted to (ISO 639-1 codes); None = all.
Langs = Collection[str] | None
#: One detected language per query of a batch, when the caller has them.
QueryLangs = Sequence[DetectedLanguage] | None
#: The external document ids a hit may come from (a metadata filter's matches); None = no restriction.
#: Ids the channel does not hold are ignored; an empty set allows nothing.
Allowed = Set[str] | None


class ChannelWriter(ABC):
    """Writes one channel of an index into its own directory: ``Writer(directory, config)``.

    ``add`` / ``add_many`` receive every document of the corpus (language already resolved, text
    non-empty); ``close`` finishes the channel on disk and returns the details the manifest records
    for it (its config, model names, counts) - the searcher is built from exactly those details.
    """

    @abstractmethod
    def add(self, doc: Document) -> None: ...

    def add_many(self, docs: Iterable[Document]) -> None:
        """Add a batch of documents (a writer that can take them at once overrides this)."""
        for doc in docs:
            self.add(doc)

    @abstractmethod
    def close(self) -> dict[str, Any]: ...


class ChannelUpdater(ABC):
    """Changes one channel of a built index in place (see :mod:`xlir.indexing.updater`).

    ``Updater(directory, details, config)``: the channel's directory, the details its writer (or last
    updater) recorded in the manifest, and the channel's config section. The caller applies one batch
    as ``delete(ids)`` (every id being replaced or removed; ids the channel does not hold are ignored)
    then ``add(docs)`` (documents whose ids the channel no longer holds, language resolved, text
    non-empty), then ``close()``, which makes the batch durable and returns the channel's new manifest
    details; or ``abort()`` instead of ``close()`` when the batch fails. Both steps must be idempotent
    under replay: applying the same batch twice leaves the same channel as applying it once.
    """

    @abstractmethod
    def delete(self, ids: list[str]) -> None: ...

    @abstractmethod
    def add(self, docs: list[Document]) -> None: ...

    @abstractmethod
    def close(self) -> dict[str, Any]: ...

    def abort(self) -> None:
        """Discard the uncommitted batch (nothing to do for an updater that writes only in ``close``)."""
        return None


class ChunkedWriter(ChannelWriter):
    """A writer that encodes documents a chunk at a time as they arrive and writes its files on ``close``.

    ``add`` keeps each id in arrival order and queues the document; a queue of ``chunk_size`` documents
    is encoded at once. A subclass names its ``channel`` (for messages), sets ``chunk_size``, and says
    how a chunk is encoded (:meth:`_encode`, the timed model work) and kept (:meth:`_keep`); its
    ``close`` starts with :meth:`_finish` and reports :meth:`_encode_stats`. After each chunk it tells
    ``progress`` (a :class:`~xlir.indexing.progress.BuildProgress`; the builder sets it) how many documents
    are encoded, under the stage named after the channel.
    """

    channel = "this"
    chunk_size = 1
    #: where each encoded chunk is reported (the builder sets it; nothing by default)
    progress: BuildProgress = NO_PROGRESS

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._pending: list[Document] = []
        self._docids: list[str] = []
        self._encode_seconds = 0.0
        self._chunk_seconds = 0.0
        self._closed = False

    def add(self, doc: Document) -> None:
        """Queue one document; it is encoded with the next full chunk."""
        if self._closed:
            raise RuntimeError(
                f"this {self.channel} writer is closed; open a new one to index more documents."
            )
        self._docids.append(doc.id)
        self._pending.append(doc)
        if len(self._pending) >= self.chunk_size:
            self._flush()

    @abstractmethod
    def _encode(self, docs: list[Document]) -> Any:
        """The encoder's output for a chunk of documents (only this step counts as encoding time)."""

    @abstractmethod
    def _keep(self, docs: list[Document], encoded: Any) -> None:
        """Store what :meth:`_encode` returned for ``docs`` (and their languages) until ``close``."""

    def _flush(self) -> None:
        if not self._pending:
            return
        started = time.perf_counter()
        encoded = self._encode(self._pending)
        self._encode_seconds += time.perf_counter() - started
        self._keep(self._pending, encoded)
        self._pending = []
        self._chunk_seconds += time.perf_counter() - started
        self.progress.advance(self.channel, len(self._docids), self._chunk_seconds)

    def _finish(self, *, allow_empty: bool = False) -> int:
        """Encode what is left and close the writer; the number of documents (none: ValueError, unless allowed)."""
        if self._closed:
            raise RuntimeError(f"this {self.channel} writer is already closed.")
        self._flush()
        self._closed = True
        if not self._docids and not allow_empty:
            raise ValueError(f"the {self.channel} channel received no documents; there is nothing to index.")
        return len(self._docids)

    def _encode_stats(self, count: int) -> dict[str, Any]:
        """``encode_seconds`` and ``docs_per_second`` for the manifest details."""
        seconds = self._encode_seconds
        return {
            "encode_seconds": round(seconds, 3),
            "docs_per_second": round(count / seconds, 2) if seconds > 0 else None,
        }


class StagedUpdater(ChannelUpdater):
    """An updater that replaces its channel's files with :func:`xlir.indexing.filecommit.commit_files`.

    Opening it first finishes or discards an interrupted commit (:func:`xlir.indexing.filecommit.recover`)
    and copies the manifest details (returned, updated, by ``close``) and the channel config.
    """

    def __init__(
        self, directory: Path | str, details: dict[str, Any], config: dict[str, Any] | None = None
    ) -> None:
        self.directory = Path(directory)
        recover(self.directory)
        self.details = dict(details)
        self.config = dict(config or {})
        self._closed = False

    def abort(self) -> None:
        """Discard the batch (nothing was written)."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} used after close()/abort(); open a new updater")


class PositionalUpdater(StagedUpdater, Generic[T]):
    """An updater of a channel stored in positional order (dense, multivector, sparse).

    ``delete`` and ``add`` only record the batch in ``self._batch`` (a :class:`PendingBatch` over the
    stored ids, which the subclass creates); ``close`` rewrites the channel once. A subclass says what
    the batch appends for each added document (:meth:`_encode`).
    """

    _batch: PendingBatch[T]

    def delete(self, ids: list[str]) -> None:
        """Forget the documents with these ids (ids the channel does not hold are ignored)."""
        self._check_open()
        self._batch.delete(ids)

    def add(self, docs: list[Document]) -> None:
        """Encode ``docs`` as the writer did; an id the channel already holds is replaced."""
        self._check_open()
        if not docs:
            return
        self._batch.delete([doc.id for doc in docs])
        for doc, item in zip(docs, self._encode(docs), strict=True):
            self._batch.add(doc.id, item)

    @abstractmethod
    def _encode(self, docs: list[Document]) -> list[T]:
        """What the batch appends for each of ``docs`` (its encoding and language), in order."""


class ChannelSearcher(ABC):
    """Searches one channel of an index: ``Searcher(directory, details)``, details from the manifest.

    ``langs`` (ISO 639-1 codes) restricts hits to documents in those languages; ``None`` = all.
    ``allowed`` restricts hits to documents with those ids (see :data:`Allowed`); ``None`` = all. Both
    apply together, and both apply during retrieval, not to its hits afterwards: a channel returns ``k``
    hits whenever ``k`` documents it would rank (a lexical channel: documents sharing a term with the
    query) pass both restrictions.
    ``query_lang`` / ``query_langs``: the queries' detected languages when the caller has them (a
    channel that needs them and gets none detects them itself).

    :meth:`search` and :meth:`batch_search` are template methods: the queries and ``k`` are checked
    (:func:`check_queries`), the searcher asked whether it can search (:meth:`_check_ready`), an empty
    batch answered with no rankings, ``langs`` made a set (:func:`language_set`) and resolved with
    ``allowed`` into the channel's own restriction (:meth:`_restrict`), where no document passes it every
    query gets an empty ranking (:data:`NO_DOCUMENTS`), and otherwise the channel searches the batch
    (:meth:`_search_batch`). A channel names its ``source`` (the channel name its rankings carry).
    """

    source: str

    def search(
        self,
        query: str,
        k: int = 10,
        langs: Collection[str] | None = None,
        *,
        query_lang: DetectedLanguage | None = None,
        allowed: Allowed = None,
    ) -> Ranking:
        """The ``k`` best documents for ``query``: a batch of one."""
        query_langs = None if query_lang is None else [query_lang]
        return self._run_batch([query], k, langs, query_langs, allowed)[0]

    def batch_search(
        self,
        queries: Sequence[str],
        k: int = 10,
        langs: Langs = None,
        *,
        query_langs: QueryLangs = None,
        allowed: Allowed = None,
    ) -> list[Ranking]:
        """One ranking per query (a channel encodes them in one batch where it can)."""
        return self._run_batch(queries, k, langs, query_langs, allowed)

    def _run_batch(
        self,
        queries: Sequence[str],
        k: int,
        langs: Langs,
        query_langs: QueryLangs,
        allowed: Allowed,
        **options: Any,
    ) -> list[Ranking]:
        """The steps :meth:`search` and :meth:`batch_search` share (see the class docstring); ``options``
        (a channel's own search options) go to :meth:`_check_ready` and :meth:`_search_batch`."""
        check_queries(queries, k)
        self._check_ready(**options)
        if not queries:
            return []
        restriction = self._restrict(language_set(langs), allowed)
        if restriction is NO_DOCUMENTS:
            return [Ranking(source=self.source) for _ in queries]
        return self._search_batch(list(queries), k, restriction, query_langs, **options)

    def _check_ready(self, **options: Any) -> None:
        """Refuse a search this searcher cannot run (closed, a bad option); by default every one runs."""
        return None

    @abstractmethod
    def _restrict(self, langs: frozenset[str] | None, allowed: Allowed) -> Any:
        """``langs`` and ``allowed`` together as what this channel's search needs (a selector, a mask, a
        filter clause...), or :data:`NO_DOCUMENTS` when no document passes them."""

    @abstractmethod
    def _search_batch(
        self, queries: list[str], k: int, restriction: Any, query_langs: QueryLangs, **options: Any
    ) -> list[Ranking]:
        """One ranking per query (checked, at least one) under ``restriction`` (what :meth:`_restrict` made)."""

    @abstractmethod
    def close(self) -> None: ...


#: What :meth:`ChannelSearcher._restrict` returns when no document passes a search's restrictions.
NO_DOCUMENTS: Any = object()


def language_set(langs: Langs) -> frozenset[str] | None:
    """A language filter as a set (one code given as a bare string included); None stays None (all)."""
    if langs is None:
        return None
    return frozenset([langs] if isinstance(langs, str) else langs)


class DocidPositions:
    """External document ids -> a positional channel's internal positions (its ``docids.json`` order).

    The id -> position dictionary is built on first use and kept, so a searcher maps a restriction of
    100k ids with one dictionary lookup each and numpy for the rest.
    """

    def __init__(self, docids: Sequence[str]) -> None:
        self._docids = docids
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self._docids)

    def positions(self, allowed: Iterable[str]) -> np.ndarray:
        """The sorted, distinct positions (int64) of the ``allowed`` ids this channel holds."""
        if self._index is None:
            self._index = {docid: i for i, docid in enumerate(self._docids)}
        get = self._index.get
        found = np.fromiter((get(docid, -1) for docid in allowed), dtype=np.int64)
        return np.unique(found[found >= 0])

    def mask(self, allowed: Iterable[str]) -> np.ndarray:
        """A boolean mask over positions: True where the document's id is in ``allowed``."""
        mask = np.zeros(len(self._docids), dtype=bool)
        mask[self.positions(allowed)] = True
        return mask

    def narrow(self, by_lang: np.ndarray | None, allowed: Allowed) -> np.ndarray | None:
        """A mask over positions (``by_lang``; None = every position) narrowed to the ``allowed`` ids."""
        if allowed is None:
            return by_lang
        by_id = self.mask(allowed)
        return by_id if by_lang is None else by_lang & by_id


def mask_restriction(mask: np.ndarray | None) -> Any:
    """A mask over positions as :meth:`ChannelSearcher._restrict` returns it (:data:`NO_DOCUMENTS` when
    it keeps none)."""
    return NO_DOCUMENTS if mask is not None and not mask.any() else mask


def check_queries(queries: Sequence[str], k: int) -> None:
    """Refuse a bare string, an empty query (named by its position in a batch) or ``k`` below 1."""
    if isinstance(queries, str):
        raise TypeError("batch_search takes a list of queries; use search() for one.")
    for i, query in enumerate(queries):
        if not isinstance(query, str) or not query.strip():
            where = "the query" if len(queries) == 1 else f"query {i}"
            raise ValueError(f"{where} is empty: give some words to search for.")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be >= 1 (got {k!r}).")


def positive_int(config: dict[str, Any], key: str, default: int, *, channel: str, minimum: int = 1) -> int:
    """``config[key]`` (``default`` when absent or None), checked to be an integer >= ``minimum``."""
    value = config.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        wanted = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{channel}.{key} must be {wanted} (got {value!r}); fix the {channel} config.")
    return value


class UpdateNotSupportedError(ConflictError, RuntimeError):
    """The index has a channel that cannot be updated incrementally (it has no registered updater)."""

    def __init__(self, channels: list[str]) -> None:
        self.channels = channels
        names = ", ".join(repr(c) for c in channels)
        super().__init__(
            f"this index has channel(s) {names} which do not support incremental updates yet; "
            "rebuild with `xlir index build --overwrite` to change its documents"
        )


def updatable(channel: str) -> bool:
    """Whether ``channel`` can be updated in place (it is known and has an updater)."""
    spec = CHANNELS.get(channel)
    return spec is not None and spec.updater is not None


def open_writer(channel: str, directory: Path, config: dict[str, Any]) -> ChannelWriter:
    """The writer of ``channel`` into ``directory`` (created), with its config section as a dict."""
    if channel not in CHANNELS:
        raise ConfigError(f"unknown channel {channel!r}; known channels: {', '.join(sorted(CHANNELS))}")
    directory.mkdir(parents=True, exist_ok=True)
    return _load(CHANNELS[channel].writer)(directory, config)


def open_updater(
    channel: str, directory: Path, details: dict[str, Any], config: dict[str, Any] | None = None
) -> ChannelUpdater:
    """The incremental updater of ``channel`` over ``directory`` (raises UpdateNotSupportedError)."""
    if not updatable(channel):
        raise UpdateNotSupportedError([channel])
    return _load(CHANNELS[channel].updater)(directory, details, config or {})


def open_searcher(channel: str, directory: Path, details: dict[str, Any]) -> ChannelSearcher:
    """The searcher of ``channel`` over ``directory``, built from its manifest ``details``."""
    if channel not in CHANNELS:
        raise IndexDamagedError(
            f"this xlir has no searcher for channel {channel!r} (known: {sorted(CHANNELS)})"
        )
    return _load(CHANNELS[channel].searcher)(directory, details)


def _load(relative: str) -> Any:
    """The class named by ``"module:Class"`` relative to :mod:`xlir.indexing.channels`."""
    module, _, name = relative.partition(":")
    return getattr(importlib.import_module(f"xlir.indexing.channels.{module}"), name)
