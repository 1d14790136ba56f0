"""Domain errors, and the one place that turns every error into an HTTP answer.

Every error body is `{"detail": ...}`. No body ever carries a driver message, SQL or a
credential: unexpected errors are logged with their traceback and answered with a fixed text.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from app.database import DatabaseUnavailable, SchemaNotReady
from app.responses import JSON

log = logging.getLogger("app.errors")

RETRY_AFTER_SECONDS = "1"
SCHEMA_RETRY_AFTER_SECONDS = "5"  # as /readyz says while the schema is not at head


class DomainError(Exception):
    """An expected failure that the client can act on."""

    status_code = 400
    detail = "Bad request"
    headers: dict[str, str] | None = None

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.detail)
        if detail is not None:
            self.detail = detail


class UserNotFound(DomainError):
    status_code = 404
    detail = "User not found"


class PostNotFound(DomainError):
    status_code = 404
    detail = "Post not found"


class InvalidCursor(DomainError):
    status_code = 400
    detail = "Invalid cursor"


class SearchIndexBuilding(DomainError):
    status_code = 503
    detail = "Search is unavailable while its index is being built; retry later"
    headers = {"Retry-After": "30"}


class SearchBusy(DomainError):
    status_code = 503
    detail = "Too many searches in progress; retry later"
    headers = {"Retry-After": RETRY_AFTER_SECONDS}


class SearchTimedOut(DomainError):
    status_code = 503
    detail = "The search took too long; retry later"
    headers = {"Retry-After": "5"}


def expected_error_response(error: Exception) -> JSON | None:
    """The answer to an expected error (a domain error, the database away), else None."""
    if isinstance(error, DomainError):
        return JSON({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
    if isinstance(error, SchemaNotReady):
        return JSON(
            {"detail": "Database schema not ready, retry later"},
            status_code=503,
            headers={"Retry-After": SCHEMA_RETRY_AFTER_SECONDS},
        )
    if isinstance(error, DatabaseUnavailable):
        return JSON(
            {"detail": "Database unavailable, retry later"},
            status_code=503,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    if isinstance(error, HTTPException):
        return JSON({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
    return None


async def _expected_error(_request: Request, error: Exception) -> JSON:
    response = expected_error_response(error)
    assert response is not None
    return response


async def _validation_error(_request: Request, error: Exception) -> JSON:
    assert isinstance(error, RequestValidationError)
    # Pydantic's own entries also echo the input (up to a megabyte) and a docs URL; drop them.
    detail = [
        {"loc": list(entry.get("loc", ())), "msg": entry.get("msg", ""), "type": entry.get("type", "")}
        for entry in error.errors()
    ]
    return JSON({"detail": detail}, status_code=422)


async def _unexpected(request: Request, error: Exception) -> JSON:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return JSON({"detail": "Internal server error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error class to its status and body, in one place."""
    for expected in (DomainError, DatabaseUnavailable, HTTPException):
        app.add_exception_handler(expected, _expected_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


class ErrorBody(BaseModel):
    """Every error answer: a message, or for 422 a list of what is wrong where."""

    detail: str | list[dict[str, Any]]


_ERROR_DESCRIPTIONS = {
    400: "Bad request (an invalid cursor, or a body that is not UTF-8 JSON)",
    404: "Not found",
    413: "Request body larger than the limit (1 MiB by default)",
    422: "Invalid input",
    503: "Database unavailable, or (search) busy or its index being built; retry after the "
    "Retry-After seconds",
}


def error_responses(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer (503 always)."""
    return {
        code: {"model": ErrorBody, "description": _ERROR_DESCRIPTIONS[code]} for code in (*status_codes, 503)
    }
