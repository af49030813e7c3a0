"""The endpoints for operators and people: liveness, readiness, Prometheus metrics, and the search page."""

from __future__ import annotations

from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, PlainTextResponse

from xlir.server.metrics import CONTENT_TYPE
from xlir.server.schemas import ErrorResponse, HealthResponse, ReadyResponse
from xlir.server.service import ServedIndex, served_index

Index = Annotated[ServedIndex, Depends(served_index)]
#: The search page: one self-contained HTML file shipped in the package.
SEARCH_PAGE = files("xlir.server") / "static" / "index.html"

router = APIRouter(tags=["operations"])


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
    """The index is open: its channels, documents and languages."""
    with index.lock.read():
        searcher = index.require()
        manifest = searcher.manifest
        return ReadyResponse(
            status="ready",
            index=str(index.index_dir),
            channels=searcher.channels,
            documents=manifest.documents,
            languages=dict(manifest.languages),
            writes_enabled=index.auth.enabled,
            updatable=index.updatable,
        )


@router.get("/metrics", response_class=PlainTextResponse)
def metrics_endpoint(index: Index) -> PlainTextResponse:
    """Prometheus metrics (text exposition format)."""
    searcher = index.searcher
    documents = searcher.manifest.documents if searcher is not None else None
    return PlainTextResponse(index.metrics.render(documents), media_type=CONTENT_TYPE)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def page() -> HTMLResponse:
    return HTMLResponse(SEARCH_PAGE.read_text(encoding="utf-8"))
