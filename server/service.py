"""The index the server serves: its open :class:`xlir.retrieval.searcher.Searcher`, readiness, and updates.

Consistency: searches hold the read side of a readers-writer lock; an update batch is applied to every
channel and the docstore (:class:`xlir.indexing.updater.IndexUpdater`) and the searcher is reopened while
the write side is held, so every search sees the index either before or after a whole batch.

Failures a client or operator can act on are raised as :class:`xlir.errors.UserError` subclasses; the
app's one handler (:mod:`xlir.server.errors`) answers them with their status.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

from xlir.errors import NotFoundError
from xlir.server.auth import ApiKeyCheck
from xlir.server.errors import ServiceUnavailableError
from xlir.server.metrics import Metrics
from xlir.server.rwlock import ReadWriteLock

if TYPE_CHECKING:
    from xlir.indexing.documents import Document
    from xlir.indexing.updater import IndexUpdater, UpdateReport
    from xlir.retrieval.searcher import Searcher, SearchResult
    from xlir.server.schemas import SearchRequest

log = logging.getLogger(__name__)

#: Default time budget for reranking one query (rerank=true), in milliseconds.
DEFAULT_RERANK_BUDGET_MS = 5000
#: How long a batch waits for the index's writer lock held by another process before answering 409.
WRITE_LOCK_WAIT_S = 2.0


class DocumentNotFoundError(NotFoundError):
    """The index holds no document with the id asked for."""


@dataclass(frozen=True)
class Answer:
    """One search as the service ran it: the result, and the settings it resolved for the response."""

    result: SearchResult
    langs: list[str] | None  # the language filter, normalized
    rerank_budget_ms: int | None  # the budget used (the request's, else the server's)
    seconds: float


class ServedIndex:
    """One index directory as the server holds it: searcher, lock, updater, API key check and metrics."""

    def __init__(
        self,
        index_dir: Path,
        auth: ApiKeyCheck,
        metrics: Metrics,
        search_threads: int | None = None,
        reranker: str | None = None,
        rerank_budget_ms: int | None = DEFAULT_RERANK_BUDGET_MS,
    ) -> None:
        self.index_dir = index_dir
        self.reranker = reranker
        self.rerank_budget_ms = rerank_budget_ms
        self.auth = auth
        self.metrics = metrics
        self.lock = ReadWriteLock()
        self.searcher: Searcher | None = None
        self.error: str | None = None
        self._updater: IndexUpdater | None = None
        self._update_lock = threading.Lock()
        # Searches run on uvicorn's thread pool; more of them at once than cores only adds GIL and JVM
        # contention (measured: 8 concurrent clients got less throughput than 1), so they queue here.
        self._search_slots = threading.BoundedSemaphore(search_threads or os.cpu_count() or 2)

    # -- lifecycle and readiness ---------------------------------------------------------------------

    def open(self) -> None:
        """Replay an interrupted update if one is journaled, then open the index."""
        from xlir.indexing.locking import IndexLockedError
        from xlir.indexing.updater import JOURNAL_DIR
        from xlir.retrieval.searcher import Searcher

        try:
            if any((self.index_dir / JOURNAL_DIR).glob("*.json")):
                log.warning("%s has an unfinished update; replaying it before serving", self.index_dir)
                try:
                    self._get_updater()
                except IndexLockedError as exc:  # its holder (or the next batch here) replays it
                    log.warning("not replaying now: %s", exc)
            self.searcher = Searcher(
                self.index_dir,
                reranker=self.reranker or "default",
                channel_timer=self.metrics.observe_channel,  # per-channel latency for /metrics
            )
            self.error = None
        except Exception as exc:  # the process stays up; /readyz and every search say why
            log.exception("cannot open the index %s", self.index_dir)
            self.error = f"the index {self.index_dir} cannot be opened: {exc}"

    def close(self) -> None:
        with self.lock.write():
            if self.searcher is not None:
                self.searcher.close()
                self.searcher = None

    def require(self) -> Searcher:
        """The open searcher; :class:`ServiceUnavailableError` (503) while there is none."""
        if self.searcher is None:
            raise ServiceUnavailableError(
                self.error or "the index is not open yet; retry in a moment (see /readyz)"
            )
        return self.searcher

    @property
    def updatable(self) -> bool:
        """Whether every channel of the open index can take documents in place."""
        from xlir.indexing.channels.base import updatable

        searcher = self.searcher
        return searcher is not None and all(updatable(c) for c in searcher.manifest.channels)

    # -- reads ---------------------------------------------------------------------------------------

    def search(self, request: SearchRequest) -> Answer:
        """Run ``request`` (one hit more than asked, to tell whether a next page exists)."""
        from xlir.models.languages import normalize_language
        from xlir.models.rerankers.base import RerankerError

        started = time.perf_counter()
        with self._search_slots, self.lock.read():
            searcher = self.require()
            channels = list(request.channels) if request.channels else searcher.channels
            langs = sorted({normalize_language(code) for code in request.langs}) if request.langs else None
            budget_ms = (
                self.rerank_budget_ms if request.rerank_budget_ms is None else request.rerank_budget_ms
            )
            try:
                result = searcher.search(
                    request.q,
                    k=request.k + 1,
                    langs=langs,
                    channels=channels,
                    offset=request.offset,
                    fusion=request.fusion,
                    rrf_k=request.rrf_k,
                    weights=request.weights,
                    rerank=request.rerank,
                    rerank_k=request.rerank_k,
                    rerank_budget_s=None if budget_ms is None else budget_ms / 1000,
                    **request.search_options(),
                )
            except RerankerError as exc:  # the server's reranker cannot be loaded: not the client's fault
                raise ServiceUnavailableError(
                    f"reranking is unavailable on this server: {exc}. Search with rerank=false."
                ) from exc
        seconds = time.perf_counter() - started
        self.metrics.observe_search(sorted(channels) + (["rerank"] if request.rerank else []), seconds)
        return Answer(result=result, langs=langs, rerank_budget_ms=budget_ms, seconds=seconds)

    def document(self, doc_id: str) -> Document:
        """The stored document ``doc_id``; :class:`DocumentNotFoundError` (404) if there is none."""
        with self.lock.read():
            doc = self.require().docstore.get(doc_id)
        if doc is None:
            raise DocumentNotFoundError(f"no document with id {doc_id!r} in this index")
        return doc

    # -- updates -------------------------------------------------------------------------------------

    def upsert(self, docs: Sequence[Document]) -> UpdateReport:
        """Add ``docs``, replacing stored documents with the same ids, in every channel."""
        return self._update("upsert", lambda updater: updater.upsert(docs))

    def delete(self, doc_id: str) -> UpdateReport:
        """Remove ``doc_id`` from every channel; :class:`DocumentNotFoundError` (404) if it is not there."""
        with self.lock.read():
            present = self.require().docstore.get(doc_id) is not None
        if not present:
            raise DocumentNotFoundError(f"no document with id {doc_id!r} in this index; nothing to delete")
        return self._update("delete", lambda updater: updater.delete([doc_id]))

    def _update(self, operation: str, apply: Callable[[IndexUpdater], UpdateReport]) -> UpdateReport:
        with self._update_lock:  # one batch at a time; searches go on until the swap
            self.require()
            updater = self._get_updater()
            # The index's writer lock (another process's build or batch: wait a little, then 409) also
            # re-reads the manifest: a rebuild since the last batch is followed, never written over.
            with updater.exclusive(), self.lock.write():
                try:
                    report = apply(updater)
                finally:
                    self._reload()
        self.metrics.observe_update(operation)
        return report

    def _get_updater(self) -> IndexUpdater:
        from xlir.indexing.updater import IndexUpdater

        if self._updater is None:  # UpdateNotSupportedError, IndexLockedError: a 409
            self._updater = IndexUpdater(
                self.index_dir, wait=True, timeout=WRITE_LOCK_WAIT_S, holder="server"
            )
        return self._updater

    def _reload(self) -> None:
        try:
            self.require().reload()
        except Exception as exc:
            log.exception("reopening %s after an update failed", self.index_dir)
            self.searcher = None
            self.error = f"the index could not be reopened after an update: {exc}; restart the server"


async def served_index(request: Request) -> ServedIndex:
    """The :class:`ServedIndex` of the app handling ``request`` (a FastAPI dependency of the routes)."""
    index: ServedIndex = request.app.state.index
    return index
