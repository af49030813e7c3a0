"""The search endpoints: ``GET /search`` (query parameters) and ``POST /search`` (a JSON body)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from xlir.errors import UserError
from xlir.retrieval.matching import MATCH_DEPTH, MAX_MATCH_DEPTH, parse_histogram_specs
from xlir.retrieval.query import MAX_QUERY_CHARS
from xlir.server.schemas import (
    ERROR_RESPONSES,
    MAX_K,
    MAX_OFFSET,
    MAX_RERANK_BUDGET_MS,
    MAX_RERANK_K,
    FacetBucket,
    FusionName,
    HistogramBucket,
    SearchHitOut,
    SearchRequest,
    SearchResponse,
    TotalOut,
)
from xlir.server.service import Answer, ServedIndex, served_index
from xlir.server.snippets import query_terms

router = APIRouter(tags=["search"])
Index = Annotated[ServedIndex, Depends(served_index)]


class ParameterError(UserError, ValueError):
    """A query parameter that cannot be read (a 400)."""


class UnknownParameterError(UserError, ValueError):
    """A query parameter GET /search does not take (a 422: never silently ignored)."""

    http_status = 422


#: The query parameters GET /search reads; any other is answered 422 (never silently ignored).
GET_PARAMETERS = frozenset(
    """q k offset from size langs channels fusion rrf_k weights rerank rerank_k rerank_budget_ms explain
    filter sort facets facet_size histogram match_depth""".split()
)


@router.get("/search", response_model=SearchResponse, responses=ERROR_RESPONSES)
def search_get(
    http: Request,
    index: Index,
    q: Annotated[
        str | None,
        Query(
            max_length=MAX_QUERY_CHARS, description="What to search for (leave out with a filter to browse)."
        ),
    ] = None,
    k: Annotated[int | None, Query(ge=1, le=MAX_K, description="Hits per page (default 10).")] = None,
    offset: Annotated[int | None, Query(ge=0, le=MAX_OFFSET, description="Hits to skip (default 0).")] = None,
    from_: Annotated[
        int | None, Query(alias="from", ge=0, le=MAX_OFFSET, description="Alias of offset.")
    ] = None,
    size: Annotated[int | None, Query(ge=1, le=MAX_K, description="Alias of k.")] = None,
    langs: Annotated[list[str] | None, Query(description="Repeat or comma-separate: langs=de,zh")] = None,
    channels: Annotated[list[str] | None, Query(description="Repeat or comma-separate.")] = None,
    fusion: FusionName = "rrf",
    rrf_k: Annotated[int, Query(ge=1, le=100_000)] = 60,
    weights: Annotated[str | None, Query(description="channel:weight pairs, e.g. bm25:1,dense:0.5")] = None,
    rerank: bool = False,
    rerank_k: Annotated[int, Query(ge=1, le=MAX_RERANK_K)] = 100,
    rerank_budget_ms: Annotated[int | None, Query(ge=0, le=MAX_RERANK_BUDGET_MS)] = None,
    explain: bool = False,
    filter: Annotated[  # noqa: A002  (the API's name)
        list[str] | None,
        Query(description="Repeat, ANDed: filter=year>=2000&filter=venue=ACL,EMNLP&filter=has:doi"),
    ] = None,
    sort: Annotated[
        list[str] | None, Query(description="field:asc|desc, _score or _id; repeat or comma-separate")
    ] = None,
    facets: Annotated[
        list[str] | None, Query(description="Fields to count values of; repeat or comma-separate.")
    ] = None,
    histogram: Annotated[
        list[str] | None, Query(description="field:interval, e.g. year:10 (days for dates)")
    ] = None,
    facet_size: Annotated[int, Query(ge=1, le=1000, description="Values per facet.")] = 10,
    match_depth: Annotated[int, Query(ge=1, le=MAX_MATCH_DEPTH)] = MATCH_DEPTH,
) -> SearchResponse:
    """Search (query parameters). See POST /search for the same as a JSON body."""
    unknown = sorted(set(http.query_params) - GET_PARAMETERS)
    if unknown:
        raise UnknownParameterError(
            f"unknown query parameter(s) {unknown}; GET /search takes: {', '.join(sorted(GET_PARAMETERS))}"
        )
    fields: dict[str, object] = {
        "q": q,
        "langs": _split(langs),
        "channels": _split(channels),
        "fusion": fusion,
        "rrf_k": rrf_k,
        "weights": _parse_weights(weights),
        "rerank": rerank,
        "rerank_k": rerank_k,
        "rerank_budget_ms": rerank_budget_ms,
        "explain": explain,
        "filter": [item for item in filter or () if item.strip()] or None,
        "sort": _split(sort),
        "facets": _split(facets),
        "histogram": parse_histogram_specs(histogram) or None,
        "facet_size": facet_size,
        "match_depth": match_depth,
    }
    given = {"k": k, "offset": offset, "from": from_, "size": size}
    fields.update({name: value for name, value in given.items() if value is not None})
    try:
        request = SearchRequest.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("query", *error.get("loc", ()))} for error in exc.errors(include_url=False)]
        ) from None
    return search_response(request, index.search(request))


@router.post("/search", response_model=SearchResponse, responses=ERROR_RESPONSES)
def search_post(index: Index, request: SearchRequest) -> SearchResponse:
    """Search: hits with language, highlighted snippet, metadata and (explain) per-channel evidence.

    `from` / `size` are accepted as aliases of `offset` / `k`; `filter`, `sort`, `facets` and `histogram`
    narrow, order and count the matches (`total`, `facets`, `histograms`; `matched_over` says what matched).
    """
    return search_response(request, index.search(request))


def search_response(request: SearchRequest, answer: Answer) -> SearchResponse:
    """The page of hits ``request`` asked for (``answer`` holds one more, which tells ``has_more``)."""
    result = answer.result
    terms = query_terms(request.q or "")
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
        total=TotalOut(value=result.total, relation=result.total_relation),  # type: ignore[arg-type]
        facets={
            name: [FacetBucket(value=value, count=count) for value, count in buckets]
            for name, buckets in result.facets.items()
        },
        histograms={
            name: [HistogramBucket(key=key, count=count) for key, count in buckets]
            for name, buckets in result.histograms.items()
        },
        matched_over=result.matched_over,
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
