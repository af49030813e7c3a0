"""The HTTP search service: FastAPI over one index directory, with a search page at ``/``.

``create_app(index_dir)`` builds the app; ``serve(index_dir, host, port)`` runs it with uvicorn (one
process: the JVM behind BM25 lives in-process, and Lucene searchers are thread-safe, so requests run
concurrently on uvicorn's thread pool).

Endpoints: ``GET/POST /search``, ``GET /documents/{id}``, ``POST /documents`` and
``DELETE /documents/{id}`` (incremental updates, API key required), ``GET /healthz``, ``GET /readyz``,
``GET /metrics`` (Prometheus), ``GET /`` (the search page), ``GET /docs`` (OpenAPI).

Consistency: searches hold the read side of a readers-writer lock; an update batch is applied to every
channel and the docstore (:class:`xlir.indexing.updater.IndexUpdater`) and the searcher is reopened while the
write side is held, so every search sees the index either before or after a whole batch.
"""

from __future__ import annotations

import html
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from xlir.retrieval.searcher import MAX_QUERY_CHARS
from xlir.server.auth import ApiKeyCheck, AuthError, load_api_key
from xlir.server.metrics import CONTENT_TYPE, Metrics
from xlir.server.schemas import (
    MAX_K,
    MAX_OFFSET,
    MAX_RERANK_BUDGET_MS,
    MAX_RERANK_K,
    DocumentBatch,
    DocumentOut,
    ErrorResponse,
    FusionName,
    HealthResponse,
    ReadyResponse,
    SearchHit,
    SearchRequest,
    SearchResponse,
    UpdateResponse,
)

log = logging.getLogger(__name__)

#: Largest request body accepted (bytes); POST /documents batches are the big ones.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: Seconds an idle keep-alive connection is held open (longer than common client pool expiries).
KEEP_ALIVE_S = 75.0
#: Default time budget for reranking one query (rerank=true), in milliseconds.
DEFAULT_RERANK_BUDGET_MS = 5000
STATIC = Path(__file__).parent / "static"

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorResponse,
        "description": "The request cannot be run as given (the message says why).",
    },
    413: {"model": ErrorResponse, "description": "The request body is too large."},
    422: {"model": ErrorResponse, "description": "A parameter is missing, malformed or out of range."},
    503: {"model": ErrorResponse, "description": "The index is not open (see /readyz)."},
}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    401: {"model": ErrorResponse, "description": "No API key, or a wrong one."},
    403: {"model": ErrorResponse, "description": "Writes are disabled (no API key configured)."},
    409: {"model": ErrorResponse, "description": "The index has a channel that cannot be updated in place."},
}


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.message = message
        self.headers = headers
        super().__init__(message)


class ReadWriteLock:
    """Many readers or one writer; a waiting writer blocks new readers (no writer starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class SearchService:
    """What the app serves: one open :class:`xlir.retrieval.searcher.Searcher`, its lock, the updater, metrics."""

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
        self.searcher: Any = None
        self.error: str | None = None
        self._updater: Any = None
        self._update_lock = threading.Lock()
        # Searches run on uvicorn's thread pool; more of them at once than cores only adds GIL and JVM
        # contention (measured: 8 concurrent clients got less throughput than 1), so they queue here.
        self._search_slots = threading.BoundedSemaphore(search_threads or os.cpu_count() or 2)

    def open(self) -> None:
        """Replay an interrupted update if one is journaled, then open the index."""
        from xlir.indexing.updater import JOURNAL_DIR, IndexUpdater
        from xlir.retrieval.searcher import Searcher

        try:
            if any((self.index_dir / JOURNAL_DIR).glob("*.json")):
                log.warning("%s has an unfinished update; replaying it before serving", self.index_dir)
                self._updater = IndexUpdater(self.index_dir)
            self.searcher = Searcher(self.index_dir, reranker=self.reranker or "default")
            self.error = None
        except Exception as exc:  # the process stays up; /readyz and every search say why
            log.exception("cannot open the index %s", self.index_dir)
            self.error = f"the index {self.index_dir} cannot be opened: {exc}"

    def close(self) -> None:
        with self.lock.write():
            if self.searcher is not None:
                self.searcher.close()
                self.searcher = None

    def require(self) -> Any:
        if self.searcher is None:
            raise ApiError(503, self.error or "the index is not open yet; retry in a moment (see /readyz)")
        return self.searcher

    @property
    def updatable(self) -> bool:
        from xlir.indexing.channels.base import UPDATERS

        searcher = self.searcher
        return searcher is not None and all(c in UPDATERS for c in searcher.manifest.channels)

    # -- search --------------------------------------------------------------------------------------

    def search(self, request: SearchRequest) -> SearchResponse:
        from xlir.models.languages import LanguageError, normalize_language
        from xlir.retrieval.rerank import RerankerError
        from xlir.retrieval.searcher import QueryError

        started = time.perf_counter()
        with self._search_slots, self.lock.read():
            searcher = self.require()
            try:
                channels = list(request.channels) if request.channels else searcher.channels
                langs = (
                    sorted({normalize_language(code) for code in request.langs}) if request.langs else None
                )
                budget_ms = (
                    self.rerank_budget_ms if request.rerank_budget_ms is None else request.rerank_budget_ms
                )
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
                )
            except (QueryError, LanguageError) as exc:
                raise ApiError(400, str(exc)) from exc
            except RerankerError as exc:  # the server's reranker cannot be loaded: not the client's fault
                raise ApiError(
                    503, f"reranking is unavailable on this server: {exc}. Search with rerank=false."
                ) from exc
        seconds = time.perf_counter() - started
        self.metrics.observe_search(sorted(channels) + (["rerank"] if request.rerank else []), seconds)
        terms = query_terms(request.q)
        hits = [
            SearchHit(
                rank=hit.rank,
                id=hit.docid,
                score=hit.score,
                language=hit.lang,
                title=hit.title,
                snippet=snippet(hit.text, terms),
                metadata=hit.metadata,
                explain=(
                    {name: {"rank": s.rank, "score": s.score} for name, s in hit.sources.items()}
                    if request.explain
                    else None
                ),
            )
            for hit in result.hits[: request.k]
        ]
        notices = []
        if result.rerank == "partial":
            notices.append(
                f"rerank: the time budget ({budget_ms} ms) ran out before all {request.rerank_k} hits were "
                "rescored; the rest keep their first-stage order"
            )
        return SearchResponse(
            query=result.query,
            query_lang=result.query_lang,
            channels=result.channels,
            fusion=request.fusion if len(result.channels) > 1 else None,
            k=request.k,
            offset=request.offset,
            langs=langs,
            hits=hits,
            has_more=len(result.hits) > request.k,
            reranked=result.rerank == "reranked",
            notices=notices,
            took_ms=round(seconds * 1000, 3),
        )

    def document(self, doc_id: str) -> DocumentOut:
        with self.lock.read():
            doc = self.require().docstore.get(doc_id)
        if doc is None:
            raise ApiError(404, f"no document with id {doc_id!r} in this index")
        return DocumentOut(id=doc.id, text=doc.text, lang=doc.lang, title=doc.title, metadata=doc.metadata)

    # -- updates ---------------------------------------------------------------------------------------

    def _get_updater(self) -> Any:
        from xlir.indexing.channels.base import UpdateNotSupportedError
        from xlir.indexing.updater import IndexUpdater

        if self._updater is None:
            try:
                self._updater = IndexUpdater(self.index_dir)
            except UpdateNotSupportedError as exc:
                raise ApiError(409, str(exc)) from exc
        return self._updater

    def upsert(self, batch: DocumentBatch) -> UpdateResponse:
        from xlir.indexing.documents import Document

        docs = [
            Document(
                id=d.id, text=d.text, lang=d.lang, title=d.title, metadata=dict(d.metadata), origin="api"
            )
            for d in batch.documents
        ]
        return self._update("upsert", lambda updater: updater.upsert(docs))

    def delete(self, doc_id: str) -> UpdateResponse:
        with self.lock.read():
            present = self.require().docstore.get(doc_id) is not None
        if not present:
            raise ApiError(404, f"no document with id {doc_id!r} in this index; nothing to delete")
        return self._update("delete", lambda updater: updater.delete([doc_id]))

    def _update(self, operation: str, apply: Any) -> UpdateResponse:
        from xlir.indexing.updater import UpdateError

        started = time.perf_counter()
        with self._update_lock:  # one batch at a time; searches go on until the swap
            self.require()
            updater = self._get_updater()
            with self.lock.write():
                try:
                    report = apply(updater)
                except UpdateError as exc:
                    raise ApiError(400, str(exc)) from exc
                finally:
                    self._reload()
        self.metrics.observe_update(operation)
        return UpdateResponse(
            operation=report.operation,
            added=report.added,
            replaced=report.replaced,
            deleted=report.deleted,
            missing=report.missing,
            documents=report.documents,
            languages=report.languages,
            took_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    def _reload(self) -> None:
        try:
            self.searcher.reload()
        except Exception as exc:
            log.exception("reopening %s after an update failed", self.index_dir)
            self.searcher = None
            self.error = f"the index could not be reopened after an update: {exc}; restart the server"


# -- snippets and highlighting ----------------------------------------------------------------------

SNIPPET_CHARS = 260
# Scripts written without spaces between words: CJK (Han, kana, Hangul) and Thai, Lao, Khmer, Burmese.
_NO_SPACE = (
    "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
    "\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff"
)
_RUN = re.compile(f"[{_NO_SPACE}]+")
_WORD = re.compile(rf"[^\W{_NO_SPACE}]+")
_STOPWORDS = frozenset(
    """a an and are as at be by did do does for from had has have how in is it its many much of on or
    that the this to was were what when where which who whom why with der die das den dem des und ist
    ein eine einer wer wie wo el la los las de del y en que un una por con le les des et du qui est""".split()
)


def query_terms(query: str) -> tuple[frozenset[str], frozenset[str]]:
    """(words, character grams) of a query, lowercased, for highlighting.

    Words come from space-separated scripts (stopwords dropped); grams are the character bigrams of
    runs in scripts written without spaces (a run of one character stays one character), as the
    BM25 analyzers of those languages index them.
    """
    lowered = query.lower()
    grams: set[str] = set()
    for run in _RUN.findall(lowered):
        grams.update([run] if len(run) == 1 else (run[i : i + 2] for i in range(len(run) - 1)))
    words = {w for w in _WORD.findall(lowered) if w not in _STOPWORDS and (len(w) > 1 or w.isdigit())}
    return frozenset(words), frozenset(grams)


def _word_matches(token: str, words: frozenset[str]) -> bool:
    if token in words:
        return True
    # Crude stemming: "defense" highlights "defensive", "surrender" highlights "surrendered".
    return any(len(w) >= 4 and token.startswith(w[: max(4, len(w) - 2)]) for w in words)


def match_spans(text: str, terms: tuple[frozenset[str], frozenset[str]]) -> list[tuple[int, int]]:
    """Character spans of ``text`` that match the query terms, sorted and merged."""
    words, grams = terms
    spans: list[tuple[int, int]] = []
    if grams:
        for run in _RUN.finditer(text):
            chunk = run.group().lower()
            for gram in grams:
                start = chunk.find(gram)
                while start != -1:
                    spans.append((run.start() + start, run.start() + start + len(gram)))
                    start = chunk.find(gram, start + 1)
    if words:
        for match in _WORD.finditer(text):
            if _word_matches(match.group().lower(), words):
                spans.append(match.span())
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def snippet(text: str, terms: tuple[frozenset[str], frozenset[str]], width: int = SNIPPET_CHARS) -> str:
    """HTML: the ``width`` characters of ``text`` with the most matches, escaped, matches in <mark>."""
    text = " ".join(text.replace("\ufeff", "").split())
    spans = match_spans(text, terms)
    start = 0
    if spans and len(text) > width:
        best = -1
        for first, _ in spans:
            candidate = max(0, min(first - width // 5, len(text) - width))
            covered = sum(1 for s, e in spans if s >= candidate and e <= candidate + width)
            if covered > best:
                best, start = covered, candidate
    end = min(len(text), start + width)
    if start > 0:  # begin at a word boundary where the script has them
        space = text.find(" ", start, start + 25)
        start = space + 1 if space != -1 else start
    if end < len(text):
        space = text.rfind(" ", end - 25, end)
        end = space if space > start else end
    parts = ["…"] if start > 0 else []
    position = start
    for s, e in spans:
        if e <= start or s >= end:
            continue
        s, e = max(s, start), min(e, end)
        parts.append(html.escape(text[position:s]))
        parts.append(f"<mark>{html.escape(text[s:e])}</mark>")
        position = e
    parts.append(html.escape(text[position:end]))
    if end < len(text):
        parts.append("…")
    return "".join(parts)


# -- the app ------------------------------------------------------------------------------------------


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Answer 413 to request bodies over ``limit`` bytes (declared or streamed), before the app reads them."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(send, int(declared))
            return
        received = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _BodyTooLarge()
            return message

        async def tracking_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(send, received)

    async def _reject(self, send: Any, size: int) -> None:
        response = JSONResponse(
            {
                "error": f"the request body is over {self.limit:,} bytes (got at least {size:,}); "
                "send fewer documents per POST /documents batch"
            },
            status_code=413,
        )
        await response({"type": "http"}, None, send)


class MetricsMiddleware:
    """Counts requests by route template, method and status, and times them."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracking_send(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(
                endpoint, scope.get("method", ""), status, time.perf_counter() - started
            )


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key")


def _split(values: list[str] | None) -> list[str] | None:
    """Repeated and comma-separated query values (``langs=de&langs=zh`` or ``langs=de,zh``)."""
    if not values:
        return None
    items = [item.strip() for value in values for item in value.split(",") if item.strip()]
    return items or None


def _parse_weights(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    weights: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.partition(":")
        try:
            if not sep or not name.strip():
                raise ValueError
            weights[name.strip()] = float(value)
        except ValueError:
            raise ApiError(
                400,
                f"weights must look like 'bm25:1.0,dense:0.5' (channel:number, comma-separated); got {text!r}",
            ) from None
    return weights


def create_app(
    index_dir: Path | str,
    *,
    api_key: str | None = None,
    api_key_file: Path | str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    search_threads: int | None = None,
    reranker: str | None = None,
    rerank_budget_ms: int | None = DEFAULT_RERANK_BUDGET_MS,
) -> Any:
    """The FastAPI app serving the index at ``index_dir`` (opened at startup).

    ``search_threads`` caps the searches that run at once (default: the CPU count); more wait their turn.
    ``reranker``: what ``rerank=true`` uses (a name or folder for :func:`xlir.retrieval.rerank.reranker_for`;
    default the shipped one), loaded on the first reranked search; ``rerank_budget_ms`` its default time
    budget per query (None = no limit).

    Writes need an API key: ``api_key``, else the first line of ``api_key_file``, else the environment
    variable ``XLIR_API_KEY``; with none, ``POST/DELETE /documents`` answer 403.
    """
    metrics = Metrics()
    if search_threads is not None and search_threads < 1:
        raise ValueError(f"search_threads must be at least 1, got {search_threads}")
    service = SearchService(
        Path(index_dir),
        ApiKeyCheck(load_api_key(api_key, api_key_file)),
        metrics,
        search_threads,
        reranker=reranker,
        rerank_budget_ms=rerank_budget_ms,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        import anyio

        await anyio.to_thread.run_sync(service.open)
        yield
        await anyio.to_thread.run_sync(service.close)

    app = FastAPI(
        title="xlir search",
        version="0.1.0",
        description="Cross-lingual search over one xlir index: ask in one language, find answers in another.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        details = [
            {
                "location": ".".join(str(p) for p in e.get("loc", ())),
                "message": e.get("msg", ""),
                "type": e.get("type"),
            }
            for e in errors
        ]
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse(
                {"error": "the request body is not valid JSON; send a JSON object", "details": details},
                status_code=400,
            )
        if any(
            e.get("type") == "model_attributes_type" and tuple(e.get("loc", ())) == ("body",) for e in errors
        ):
            return JSONResponse(
                {
                    "error": "the request body must be a JSON object (with Content-Type: application/json); "
                    "see /docs for its fields",
                    "details": details,
                },
                status_code=422,
            )
        message = "; ".join(f"{d['location']}: {d['message']}" for d in details[:5])
        return JSONResponse({"error": f"invalid request: {message}", "details": details}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see /docs for the API"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": f"internal error ({type(exc).__name__}); see the server log"}, status_code=500
        )

    def require_key(
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header_key: Annotated[str | None, Depends(_api_key_header)],
    ) -> None:
        service.auth.check(bearer.credentials if bearer else None, header_key)

    @app.get("/search", response_model=SearchResponse, responses=_ERRORS, tags=["search"])
    def search_get(
        q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="What to search for.")],
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
        langs: Annotated[list[str] | None, Query(description="Repeat or comma-separate: langs=de,zh")] = None,
        channels: Annotated[list[str] | None, Query(description="Repeat or comma-separate.")] = None,
        fusion: FusionName = "rrf",
        rrf_k: Annotated[int, Query(ge=1, le=100_000)] = 60,
        weights: Annotated[
            str | None, Query(description="channel:weight pairs, e.g. bm25:1,dense:0.5")
        ] = None,
        rerank: bool = False,
        rerank_k: Annotated[int, Query(ge=1, le=MAX_RERANK_K)] = 100,
        rerank_budget_ms: Annotated[int | None, Query(ge=0, le=MAX_RERANK_BUDGET_MS)] = None,
        explain: bool = False,
    ) -> SearchResponse:
        """Search (query parameters). See POST /search for the same as a JSON body."""
        request = SearchRequest(
            q=q,
            k=k,
            offset=offset,
            langs=_split(langs),
            channels=_split(channels),
            fusion=fusion,
            rrf_k=rrf_k,
            weights=_parse_weights(weights),
            rerank=rerank,
            rerank_k=rerank_k,
            rerank_budget_ms=rerank_budget_ms,
            explain=explain,
        )
        return service.search(request)

    @app.post("/search", response_model=SearchResponse, responses=_ERRORS, tags=["search"])
    def search_post(request: SearchRequest) -> SearchResponse:
        """Search: hits with language, highlighted snippet, metadata and (explain) per-channel evidence."""
        return service.search(request)

    @app.get(
        "/documents/{doc_id:path}",
        response_model=DocumentOut,
        responses={**_ERRORS, 404: {"model": ErrorResponse, "description": "No such document."}},
        tags=["documents"],
    )
    def get_document(doc_id: str) -> DocumentOut:
        """One stored document by id."""
        return service.document(doc_id)

    @app.post(
        "/documents",
        response_model=UpdateResponse,
        responses=_WRITE_ERRORS,
        tags=["documents"],
        dependencies=[Depends(require_key)],
    )
    def post_documents(batch: DocumentBatch) -> UpdateResponse:
        """Add documents or replace those with the same ids, in every channel; visible to the next search."""
        return service.upsert(batch)

    @app.delete(
        "/documents/{doc_id:path}",
        response_model=UpdateResponse,
        responses={**_WRITE_ERRORS, 404: {"model": ErrorResponse, "description": "No such document."}},
        tags=["documents"],
        dependencies=[Depends(require_key)],
    )
    def delete_document(doc_id: str) -> UpdateResponse:
        """Remove a document from every channel; gone for the next search."""
        return service.delete(doc_id)

    @app.get("/healthz", response_model=HealthResponse, tags=["operations"])
    def healthz() -> HealthResponse:
        """The process is alive."""
        return HealthResponse(status="ok")

    @app.get(
        "/readyz",
        response_model=ReadyResponse,
        responses={503: {"model": ErrorResponse, "description": "The index is not open."}},
        tags=["operations"],
    )
    def readyz() -> ReadyResponse:
        """The index is open: its channels, documents and languages."""
        with service.lock.read():
            searcher = service.require()
            manifest = searcher.manifest
            return ReadyResponse(
                status="ready",
                index=str(service.index_dir),
                channels=searcher.channels,
                documents=manifest.documents,
                languages=dict(manifest.languages),
                writes_enabled=service.auth.enabled,
                updatable=service.updatable,
            )

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
    def metrics_endpoint() -> PlainTextResponse:
        """Prometheus metrics (text exposition format)."""
        searcher = service.searcher
        documents = searcher.manifest.documents if searcher is not None else None
        return PlainTextResponse(metrics.render(documents), media_type=CONTENT_TYPE)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    return app


def serve(
    index_dir: Path | str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_key_file: Path | str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    search_threads: int | None = None,
    log_level: str = "info",
    keep_alive_s: float = KEEP_ALIVE_S,
    reranker: str | None = None,
    rerank_budget_ms: int | None = DEFAULT_RERANK_BUDGET_MS,
) -> None:
    """Serve ``index_dir`` over HTTP until interrupted (one process; see the module docstring).

    ``keep_alive_s``: how long an idle client connection stays open. It must outlast the clients' own
    idle expiry, or a client reuses a connection the server is closing at that moment and sees it
    drop (uvicorn's default is 5 s, the same as httpx's pool expiry).

    Raises :class:`xlir.indexing.manifest.IndexNotFoundError` at once if ``index_dir`` is not an index, and
    ValueError for an unreadable API key file.
    """
    import uvicorn

    from xlir.indexing.manifest import Manifest

    Manifest.read(Path(index_dir))  # fail fast, with the message that says how to build one
    app = create_app(
        index_dir,
        api_key_file=api_key_file,
        max_body_bytes=max_body_bytes,
        search_threads=search_threads,
        reranker=reranker,
        rerank_budget_ms=rerank_budget_ms,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=int(keep_alive_s))
