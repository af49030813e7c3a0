"""ASGI middleware of the search service: request body limits, and request counts and timings for /metrics."""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.exceptions import HTTPException

from xlir.server.errors import error_response
from xlir.server.metrics import Metrics

#: A path parameter's converter (``{doc_id:path}``), dropped from metric labels.
_CONVERTER = re.compile(r"\{(\w+):\w+\}")


class _BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit: an HTTPException, so that FastAPI's body
    parsing passes it on (it answers any other exception there with 400) and the app's handler answers 413."""

    def __init__(self, limit: int, size: int) -> None:
        super().__init__(413, too_large(limit, size), headers={"Connection": "close"})


def too_large(limit: int, size: int) -> str:
    return (
        f"the request body is over {limit:,} bytes (got at least {size:,}); "
        "send fewer documents per POST /documents batch"
    )


class BodyLimitMiddleware:
    """Answer 413 to request bodies over ``limit`` bytes, before the app reads them: at once when the
    ``Content-Length`` says so, else (a chunked body) as soon as the bytes received pass the limit."""

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
                    raise _BodyTooLarge(self.limit, received)
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
        response = error_response(too_large(self.limit, size), 413, {"Connection": "close"})
        await response({"type": "http"}, None, send)


def route_template(scope: dict) -> str:
    """The template of the route that served ``scope`` (``/documents/{doc_id}``, as in the OpenAPI paths), a
    mount's prefix for static files, or ``unmatched``: never the raw path, so labels stay few."""
    path = getattr(scope.get("route"), "path", None)
    return _CONVERTER.sub(r"{\1}", path) if path else "unmatched"


class MetricsMiddleware:
    """Counts requests by route template, method and status, and times them (:mod:`xlir.server.metrics`)."""

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
            endpoint = route_template(scope)
            self.metrics.observe_request(
                endpoint, scope.get("method", ""), status, time.perf_counter() - started
            )
