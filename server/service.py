"""The index the server serves: its open :class:`xlir.retrieval.searcher.Searcher`, readiness, and updates.

Consistency: searches hold the read side of a readers-writer lock; an update batch is applied to every
channel and the docstore (:class:`xlir.indexing.updater.IndexUpdater`) and the searcher is reopened while
the write side is held, so every search sees the index either before or after a whole batch.

Following other writers: a background thread looks at the index's ``manifest.json`` every
:data:`FOLLOW_INTERVAL_S` (a ``stat``; the file is read only when it changed) and, when its committed
state (build id, generation: :attr:`xlir.indexing.manifest.Manifest.state`) differs from the one served
(another process's batch, a rebuild published over the directory), opens a new searcher beside the old
one and swaps it in under the write side; searches in flight finish on the old one. If the new state
does not open, the old one keeps serving and ``/readyz`` says so (``status: "stale"``, ``reload_error``);
the next change of the manifest (or :data:`RETRY_S` later) is tried again.

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
#: How often the server looks for a newer committed state of its index (seconds).
FOLLOW_INTERVAL_S = 0.5
#: How long after a failed reopen the same manifest is tried again (seconds).
RETRY_S = 10.0


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
        #: why the newest committed state could not be opened (the older one is served), else None
        self.reload_error: str | None = None
        self._seen: tuple[int, int, int, int] | None = None  # the manifest file last looked at
        self._retry_at = 0.0
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None

    # -- lifecycle and readiness ---------------------------------------------------------------------

    def open(self) -> None:
        """Replay an interrupted update if one is journaled, then open the index."""
        from xlir.indexing.locking import IndexLockedError
        from xlir.indexing.updater import JOURNAL_DIR

        try:
            if any((self.index_dir / JOURNAL_DIR).glob("*.json")):
                log.warning("%s has an unfinished update; replaying it before serving", self.index_dir)
                try:
                    self._get_updater()
                except IndexLockedError as exc:  # its holder (or the next batch here) replays it
                    log.warning("not replaying now: %s", exc)
            self._seen = self._manifest_stat()
            self.searcher = self._open_searcher()
            self.error = None
        except Exception as exc:  # the process stays up; /readyz and every search say why
            log.exception("cannot open the index %s", self.index_dir)
            self.error = f"the index {self.index_dir} cannot be opened: {exc}"
            self._retry_at = time.monotonic() + RETRY_S  # the follower tries again
        self._start_following()

    def _open_searcher(self, previous: Searcher | None = None) -> Searcher:
        from xlir.retrieval.searcher import Searcher

        loaded = getattr(previous, "_reranker", None)  # kept: loading a reranker takes seconds
        return Searcher(
            self.index_dir,
            reranker=loaded if loaded is not None else self.reranker or "default",
            channel_timer=self.metrics.observe_channel,  # per-channel latency for /metrics
        )

    def close(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.join(timeout=5)
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
    def state(self) -> tuple[str, int] | None:
        """The committed state served: (build id, generation); None while no index is open."""
        searcher = self.searcher
        return None if searcher is None else searcher.manifest.state

    # -- following the newest committed state ---------------------------------------------------------

    def _start_following(self) -> None:
        if self._follower is None and FOLLOW_INTERVAL_S > 0:
            self._follower = threading.Thread(target=self._follow_loop, name="xlir-follow", daemon=True)
            self._follower.start()

    def _follow_loop(self) -> None:
        while not self._stop.wait(FOLLOW_INTERVAL_S):
            try:
                self.follow()
            except Exception:  # never let the thread die; the next tick tries again
                log.exception("following %s failed", self.index_dir)

    def _manifest_stat(self) -> tuple[int, int, int, int] | None:
        from xlir.indexing.manifest import MANIFEST_NAME

        try:
            st = os.stat(self.index_dir / MANIFEST_NAME)
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size

    def follow(self) -> bool:
        """Serve the newest committed state of the index if it changed; whether a new searcher was swapped in.

        Cheap when nothing changed (one ``stat``). A manifest that is missing (a publish between its
        renames) or unreadable is looked at again on the next call.
        """
        from xlir.indexing.manifest import Manifest

        stat = self._manifest_stat()
        if stat is None:
            return False
        if stat == self._seen:
            failed = self.reload_error is not None or self.searcher is None
            if not failed or time.monotonic() < self._retry_at:
                return False
        newest = Manifest.peek_state(self.index_dir)
        if newest is None:
            return False
        with self._update_lock:  # not while this process applies a batch (it reopens by itself)
            if newest == self.state:
                self._seen, self.reload_error = stat, None
                return False
            log.info("%s changed on disk (%s -> %s): reopening", self.index_dir, self.state, newest)
            self._seen = stat
            return self._swap()

    def _swap(self) -> bool:
        """Open a new searcher on the index as it is now and swap it in; keep the old one if that fails."""
        previous = self.searcher
        try:
            searcher = self._open_searcher(previous)
        except Exception as exc:
            log.exception("reopening %s failed; still serving %s", self.index_dir, self.state)
            self._retry_at = time.monotonic() + RETRY_S
            message = f"the newest state of the index cannot be opened: {exc}"
            if previous is None:
                self.error = f"the index {self.index_dir} cannot be opened: {exc}"
            else:
                self.reload_error = message + f"; still serving build {previous.manifest.identity}, "
                self.reload_error += f"generation {previous.manifest.generation}"
            return False
        if self._stop.is_set():  # the server is closing
            searcher.close()
            return False
        with self.lock.write():  # searches in flight finish on the previous searcher first
            self.searcher, self.error, self.reload_error = searcher, None, None
            if previous is not None:
                previous.close()
        return True

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
        """Reopen the searcher after this process's batch (the caller holds the write side)."""
        previous = self.require()
        self._seen = self._manifest_stat()
        try:
            self.searcher = self._open_searcher(previous)
        except Exception as exc:  # keep the previous searcher; the follower tries again
            log.exception("reopening %s after an update failed", self.index_dir)
            self._retry_at = time.monotonic() + RETRY_S
            self.reload_error = f"the index could not be reopened after an update: {exc}"
            return
        self.reload_error = None
        previous.close()


async def served_index(request: Request) -> ServedIndex:
    """The :class:`ServedIndex` of the app handling ``request`` (a FastAPI dependency of the routes)."""
    index: ServedIndex = request.app.state.index
    return index
