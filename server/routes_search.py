"""The search endpoints: ``GET /search`` (query parameters) and ``POST /search`` (a JSON body)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from xlir.errors import UserError
from xlir.retrieval.query import MAX_QUERY_CHARS
from xlir.server.schemas import (
    ERROR_RESPONSES,
    MAX_K,
    MAX_OFFSET,
    MAX_RERANK_BUDGET_MS,
    MAX_RERANK_K,
    FusionName,
    SearchHitOut,
    SearchRequest,
    SearchResponse,
)
from xlir.server.service import Answer, ServedIndex, served_index
from xlir.server.snippets import query_terms

router = APIRouter(tags=["search"])
Index = Annotated[ServedIndex, Depends(served_index)]


class ParameterError(UserError, ValueError):
    """A query parameter that cannot be read (a 400)."""


@router.get("/search", response_model=SearchResponse, responses=ERROR_RESPONSES)
def search_get(
    index: Index,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="What to search for.")],
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    langs: Annotated[list[str] | None, Query(description="Repeat or comma-separate: langs=de,zh")] = None,
    channels: Annotated[list[str] | None, Query(description="Repeat or comma-separate.")] = None,
    fusion: FusionName = "rrf",
    rrf_k: Annotated[int, Query(ge=1, le=100_000)] = 60,
    weights: Annotated[str | None, Query(description="channel:weight pairs, e.g. bm25:1,dense:0.5")] = None,
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
    return search_response(request, index.search(request))


@router.post("/search", response_model=SearchResponse, responses=ERROR_RESPONSES)
def search_post(index: Index, request: SearchRequest) -> SearchResponse:
    """Search: hits with language, highlighted snippet, metadata and (explain) per-channel evidence."""
    return search_response(request, index.search(request))


def search_response(request: SearchRequest, answer: Answer) -> SearchResponse:
    """The page of hits ``request`` asked for (``answer`` holds one more, which tells ``has_more``)."""
    result = answer.result
    terms = query_terms(request.q)
    notices = []
    if result.rerank == "partial":
        notices.append(
            f"rerank: the time budget ({answer.rerank_budget_ms} ms) ran out before all {request.rerank_k} "
            "hits were rescored; the rest keep their first-stage order"
        )
    return SearchResponse(
        query=result.query,
        query_lang=result.query_lang,
        channels=result.channels,
        fusion=request.fusion if len(result.channels) > 1 else None,
        k=request.k,
        offset=request.offset,
        langs=answer.langs,
        hits=[SearchHitOut.from_hit(hit, terms, request.explain) for hit in result.hits[: request.k]],
        has_more=len(result.hits) > request.k,
        reranked=result.rerank == "reranked",
        notices=notices,
        took_ms=round(answer.seconds * 1000, 3),
    )


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
            raise ParameterError(
                f"weights must look like 'bm25:1.0,dense:0.5' (channel:number, comma-separated); got {text!r}"
            ) from None
    return weights
