"""The endpoints for operators and people: liveness, readiness, Prometheus metrics, the search page, and the
API documentation (``/docs``: Swagger UI, ``/redoc``: ReDoc) served from bundled assets, no CDN."""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

from xlir.server.errors import without_index_path
from xlir.server.schemas import ErrorResponse, HealthResponse, ReadyResponse
from xlir.server.service import ServedIndex, served_index

Index = Annotated[ServedIndex, Depends(served_index)]
#: The search page: one self-contained HTML file shipped in the package.
SEARCH_PAGE = files("xlir.server") / "static" / "index.html"
#: Where the Swagger UI and ReDoc assets are mounted (:func:`docs_assets`).
DOCS_ASSETS_URL = "/docs-assets"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
#: The documentation pages may load nothing from elsewhere: ReDoc's bundle, for one, shows a logo from its
#: vendor's CDN, which the browser then never requests (and the page works the same without the internet).
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:"
)

router = APIRouter(tags=["operations"])


def docs_assets() -> Path:
    """The folder of Swagger UI's and ReDoc's JavaScript and CSS (shipped by the pinned ``fastapi-offline``)."""
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


@router.get("/healthz", response_model=HealthResponse)
def healthz() -> HealthResponse:
    """The process is alive."""
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={503: {"model": ErrorResponse, "description": "The index is not open."}},
)
def readyz(index: Index) -> ReadyResponse:
    """The index is open: its name (its directory's name, never the path), channels, documents, languages,
    metadata fields, and the committed state served (build id, generation). The server follows the
    newest committed state within about a second; ``status`` is ``"stale"`` (with ``reload_error``)
    while a newer one cannot be opened and the older one is still served."""
    with index.lock.read():
        searcher = index.require()
        manifest = searcher.manifest
        reload_error = index.reload_error
        return ReadyResponse(
            status="stale" if reload_error else "ready",
            index=index.index_dir.resolve().name,
            channels=searcher.channels,
            documents=manifest.documents,
            languages=dict(manifest.languages),
            writes_enabled=index.auth.enabled,
            updatable=index.updatable,
            fields=dict(getattr(manifest, "fields", None) or {}),
            build_id=manifest.identity,
            generation=manifest.generation,
            reload_error=reload_error and without_index_path(reload_error, index.index_dir),
        )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition."}},
)
def metrics_endpoint(request: Request, index: Index) -> Response:
    """Prometheus metrics: per-route request latency, per-channel search latency, process metrics.

    OpenMetrics when the ``Accept`` header asks for it, else the Prometheus text format. With
    ``PROMETHEUS_MULTIPROC_DIR`` set, the sum over every worker process (see :mod:`xlir.server.metrics`).
    """
    searcher = index.searcher
    index.metrics.documents = lambda: searcher.manifest.documents if searcher is not None else None
    body, content_type = index.metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(SEARCH_PAGE.read_text(encoding="utf-8"))


@router.get("/docs", include_in_schema=False)
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over /openapi.json, its script and style from this server."""
    root = request.scope.get("root_path", "")
    return _same_origin_only(
        get_swagger_ui_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            # no "validator badge": it would send the spec to an outside validator
            swagger_ui_parameters={"validatorUrl": None},
        )
    )


@router.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get(f"{DOCS_ASSETS_URL}/redoc.standalone.js", include_in_schema=False)
def redoc_script() -> Response:
    """ReDoc's bundle, its one outside URL (the vendor's logo in the menu's footer) replaced by our icon."""
    return Response(_redoc_script(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})


@functools.cache
def _redoc_script() -> bytes:
    script = (docs_assets() / "redoc.standalone.js").read_bytes()
    return script.replace(REDOC_LOGO, f"{DOCS_ASSETS_URL}/favicon.png".encode())


@router.get("/redoc", include_in_schema=False)
def redoc(request: Request) -> HTMLResponse:
    """ReDoc over /openapi.json, its script from this server and no web fonts."""
    root = request.scope.get("root_path", "")
    return _same_origin_only(
        get_redoc_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
    )


def _same_origin_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page
