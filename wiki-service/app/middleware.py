"""One pure ASGI middleware for every request: request id, body limit, metrics, access log.

Pure ASGI (not BaseHTTPMiddleware) because it runs on every request of the hot path. It is
the outermost layer (see main.py), so it also answers for what escapes everything inside.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import expected_error_response
from app.metrics import RequestMetrics
from app.responses import JSON

access_log = logging.getLogger("app.access")
error_log = logging.getLogger("app.errors")

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED_ROUTE = "unmatched"  # keeps label cardinality bounded for unknown paths

# Request ids: a random prefix per process and a counter; unique without a syscall per request.
_ID_PREFIX = os.urandom(8).hex()
_id_counter = itertools.count(1)


def new_request_id() -> bytes:
    """A request id unique across processes and restarts."""
    return f"{_ID_PREFIX}{next(_id_counter):016x}".encode()


# The rest of the body is never read, so the connection cannot carry another request.
_CLOSE = {"Connection": "close"}


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body larger than {limit} bytes", headers=_CLOSE)


class RequestContextMiddleware:
    """Request id, a body-size limit enforced before reading, metrics and one JSON log line."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = RequestMetrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = content_length = None
        for name, value in scope["headers"]:
            if name == b"x-request-id" and _REQUEST_ID.match(value):
                request_id = value
            elif name == b"content-length":
                content_length = value
        if request_id is None:
            request_id = new_request_id()
        status = 0  # no response started yet
        limit = self.max_body_bytes

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        try:
            if content_length is not None:  # refused before a byte of the body is read
                if not content_length.isdigit():
                    raise HTTPException(400, "Invalid Content-Length", headers=_CLOSE)
                if int(content_length) > limit:
                    raise BodyTooLarge(limit)
            await self.app(scope, self._limited(receive, limit), send_with_id)
        except Exception as error:
            if status:  # the answer is already on its way; nothing else can be sent
                raise
            response = expected_error_response(error)
            if response is None:
                error_log.error("unhandled error on %s %s", scope["method"], scope["path"], exc_info=error)
                response = JSON({"detail": "Internal server error"}, status_code=500)
            await response(scope, receive, send_with_id)
        finally:
            self._record(scope, status or 500, time.perf_counter() - started, request_id)

    @staticmethod
    def _limited(receive: Receive, limit: int) -> Receive:
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # a chunked body with no Content-Length
                    raise BodyTooLarge(limit)
            return message

        return receive_limited

    def _record(self, scope: Scope, status: int, seconds: float, request_id: bytes) -> None:
        route: Any = scope.get("route")
        template = getattr(route, "path", None) or UNMATCHED_ROUTE
        method = scope["method"]
        self.metrics.observe(method, template, status, seconds)
        access_log.info(
            "request",
            extra={
                "method": method,
                "route": template,
                "path": scope["path"],
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "request_id": request_id.decode(),
            },
        )
