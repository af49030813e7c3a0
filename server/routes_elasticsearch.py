"""``GET/POST /{index}/_search``: Elasticsearch's search API (the common subset) over the same search.

An adapter, not a second search path: the request is translated (:mod:`xlir.server.elasticsearch_request`)
into the :class:`xlir.server.schemas.SearchRequest` that ``/search`` runs, through the same
:meth:`xlir.server.service.ServedIndex.search`, and the result is answered in Elasticsearch's shape
(:mod:`xlir.server.elasticsearch_response`). ``index`` is the served index's name (its directory name),
``_all`` or ``*``; another name is a 404 as Elasticsearch words it. Errors are answered as Elasticsearch does: ``{"error": {"type", "reason"},
"status"}``. xlir does not claim to be Elasticsearch (no ``GET /`` banner): clients that speak the
search API without checking the product (opensearch-py) work; the official Elasticsearch client refuses.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from xlir.errors import UserError
from xlir.server.elasticsearch_request import (
    TOP_LEVEL,
    ElasticsearchParseError,
    ElasticsearchRequestError,
    parse_request,
)
from xlir.server.elasticsearch_response import es_response
from xlir.server.schemas import SearchRequest
from xlir.server.service import ServedIndex, served_index
from xlir.server.snippets import query_terms

router = APIRouter(tags=["elasticsearch"])
Index = Annotated[ServedIndex, Depends(served_index)]

_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "An Elasticsearch search body; keys: " + ", ".join(TOP_LEVEL),
                    "example": {
                        "query": {
                            "bool": {
                                "must": [{"match": {"text": "Super Bowl"}}],
                                "filter": [{"range": {"year": {"gte": 2000}}}],
                            }
                        },
                        "from": 0,
                        "size": 10,
                        "aggs": {"langs": {"terms": {"field": "lang"}}},
                    },
                }
            }
        },
    }
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Elasticsearch's error shape: {error: {type, reason}, status}."},
    404: {"description": "No index of that name (Elasticsearch's index_not_found_exception)."},
}


@router.get(
    "/{index}/_search",
    operation_id="elasticsearch_search_get",
    openapi_extra=_BODY,
    responses=_RESPONSES,
)
@router.post(
    "/{index}/_search",
    operation_id="elasticsearch_search_post",
    openapi_extra=_BODY,
    responses=_RESPONSES,
)
async def elasticsearch_search(index: str, request: Request, served: Index) -> JSONResponse:
    """Elasticsearch's search API, the common subset: query (match, multi_match, bool, term, terms, range,
    exists, match_all), from, size, sort, aggs (terms, histogram, date_histogram), highlight, _source.
    Text clauses are searched in title and text by every channel; scores are xlir's fused scores."""
    name = served.index_dir.name
    if any(part not in (name, "_all", "*") for part in index.split(",")):
        return _error(
            "index_not_found_exception", f"no such index [{index}]; this server serves [{name}]", 404
        )
    try:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ElasticsearchParseError(f"the request body is not valid JSON: {exc}") from None
        search = parse_request(body, dict(request.query_params))
        try:
            native = SearchRequest.model_validate(search.search_fields())
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise ElasticsearchRequestError(f"{where}: {first.get('msg')}".strip(": ")) from None
        answer = await run_in_threadpool(served.search, native)
    except UserError as exc:
        kind = getattr(exc, "es_type", "illegal_argument_exception")
        return _error(kind, str(exc), exc.http_status)
    terms = query_terms(search.text or "")
    return JSONResponse(es_response(search, answer.result, name, answer.seconds * 1000, terms))


def _error(kind: str, reason: str, status: int) -> JSONResponse:
    cause = {"type": kind, "reason": reason}
    return JSONResponse({"error": {**cause, "root_cause": [cause]}, "status": status}, status_code=status)
