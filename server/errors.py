"""How the search service answers errors: every error body is ``{"error": message}`` (plus ``details``).

One handler maps any :class:`xlir.errors.UserError` to its ``http_status`` with its message, wherever in
the layers below it was raised (an empty query is a 400, a missing document a 404, an index that cannot
be updated in place a 409); request validation, unknown routes and crashes get their own handlers here.
No body shows where the index lies on the server: a message that names its directory shows its name
only (:func:`without_index_path`), as ``/readyz`` does.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from xlir.errors import UserError

log = logging.getLogger(__name__)


class ServiceUnavailableError(UserError):
    """The server cannot answer this now (the index is not open, the reranker cannot load): a 503."""

    http_status = 503


def error_response(
    message: str,
    status: int,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    """The JSON error body every failure of the service is answered with."""
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = details
    return JSONResponse(body, status_code=status, headers=headers)


def without_index_path(message: str, index_dir: Path | None) -> str:
    """``message`` with every path inside ``index_dir`` shown from the index's name on: ``/srv/data/news/
    docs.sqlite`` becomes ``news/docs.sqlite``. Where an index lies is the operator's business, not a
    client's; the folders above it can name people, hosts and layouts."""
    if index_dir is None:
        return message
    forms = {str(p.parent) for p in (index_dir, index_dir.absolute(), index_dir.resolve())}
    for parent in sorted(forms - {".", ""}, key=len, reverse=True):
        message = message.replace(parent if parent.endswith(os.sep) else parent + os.sep, "")
    return message


def _index_dir(request: Request) -> Path | None:
    index = getattr(request.app.state, "index", None)
    return getattr(index, "index_dir", None)


async def _user_error(request: Request, exc: UserError) -> JSONResponse:
    # 401 means "send credentials": say which kind (the only one this service takes).
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
    return error_response(without_index_path(str(exc), _index_dir(request)), exc.http_status, headers)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
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
        return error_response("the request body is not valid JSON; send a JSON object", 400, details=details)
    if any(e.get("type") == "model_attributes_type" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return error_response(
            "the request body must be a JSON object (with Content-Type: application/json); "
            "see /docs for its fields",
            422,
            details=details,
        )
    message = "; ".join(f"{d['location']}: {d['message']}" for d in details[:5])
    return error_response(f"invalid request: {message}", 422, details=details)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = without_index_path(str(exc.detail), _index_dir(request))
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint {request.url.path}; see /docs for the API"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}; see /docs for the API"
    return error_response(message, exc.status_code, exc.headers)


async def _crash(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(f"internal error ({type(exc).__name__}); see the server log", 500)


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error ``app`` raises as an ``{"error": ...}`` body with the right status."""
    app.add_exception_handler(UserError, _user_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _crash)
