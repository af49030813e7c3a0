"""The HTTP search service: FastAPI over one index directory, with a search page at ``/``.

``create_app(index_dir)`` assembles the app; ``serve(index_dir, host, port)`` runs it with uvicorn (one
process: the JVM behind BM25 lives in-process, and Lucene searchers are thread-safe, so requests run
concurrently on uvicorn's thread pool).

Endpoints: ``GET/POST /search`` (:mod:`xlir.server.routes_search`), ``GET /documents/{id}``,
``POST /documents`` and ``DELETE /documents/{id}`` (incremental updates, API key required;
:mod:`xlir.server.routes_documents`), ``GET /healthz``, ``GET /readyz``, ``GET /metrics`` (Prometheus),
``GET /`` (the search page; :mod:`xlir.server.routes_operations`), ``GET /docs`` (Swagger UI) and
``GET /redoc`` (ReDoc) over ``/openapi.json``, their assets bundled (``/docs-assets``, no CDN).
Several worker processes: set ``PROMETHEUS_MULTIPROC_DIR`` (:mod:`xlir.server.metrics`).
The index behind them, its lock and updates: :mod:`xlir.server.service`; errors: :mod:`xlir.server.errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from xlir.server import routes_documents, routes_elasticsearch, routes_operations, routes_search
from xlir.server.auth import ApiKeyCheck, load_api_key
from xlir.server.errors import add_error_handlers
from xlir.server.metrics import Metrics
from xlir.server.middleware import BodyLimitMiddleware, MetricsMiddleware
from xlir.server.service import DEFAULT_RERANK_BUDGET_MS, ServedIndex

#: Largest request body accepted (bytes); POST /documents batches are the big ones.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: Seconds an idle keep-alive connection is held open (longer than common client pool expiries).
KEEP_ALIVE_S = 75.0


def create_app(
    index_dir: Path | str,
    *,
    api_key: str | None = None,
    api_key_file: Path | str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    search_threads: int | None = None,
    reranker: str | None = None,
    rerank_budget_ms: int | None = DEFAULT_RERANK_BUDGET_MS,
) -> FastAPI:
    """The FastAPI app serving the index at ``index_dir`` (opened at startup).

    ``search_threads`` caps the searches that run at once (default: the CPU count); more wait their turn.
    ``reranker``: what ``rerank=true`` uses (a name or folder for :func:`xlir.models.rerankers.registry.reranker_for`;
    default the shipped one), loaded on the first reranked search; ``rerank_budget_ms`` its default time
    budget per query (None = no limit).

    Writes need an API key: ``api_key``, else the first line of ``api_key_file``, else the environment
    variable ``XLIR_API_KEY``; with none, ``POST/DELETE /documents`` answer 403.
    """
    if search_threads is not None and search_threads < 1:
        raise ValueError(f"search_threads must be at least 1, got {search_threads}")
    metrics = Metrics()
    index = ServedIndex(
        Path(index_dir),
        ApiKeyCheck(load_api_key(api_key, api_key_file)),
        metrics,
        search_threads,
        reranker=reranker,
        rerank_budget_ms=rerank_budget_ms,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import anyio

        await anyio.to_thread.run_sync(index.open)
        yield
        await anyio.to_thread.run_sync(index.close)

    app = FastAPI(
        title="xlir search",
        version="0.1.0",
        description="Cross-lingual search over one xlir index: ask in one language, find answers in another.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc: routes_operations, with the assets mounted below (no CDN)
        redoc_url=None,
    )
    app.state.index = index
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    add_error_handlers(app)
    for routes in (routes_search, routes_documents, routes_operations, routes_elasticsearch):
        app.include_router(routes.router)
    app.mount(
        routes_operations.DOCS_ASSETS_URL,
        StaticFiles(directory=routes_operations.docs_assets()),
        name="docs-assets",
    )
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
    :class:`xlir.server.auth.ApiKeyConfigError` for an unreadable API key file.
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
