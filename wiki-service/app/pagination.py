"""Keyset pagination: newest first, an opaque cursor naming the last id seen."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from app.errors import InvalidCursor
from app.validation import BIGINT_MAX

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1-100).")]
Cursor = Annotated[
    str | None,
    Query(max_length=64, description="`next_cursor` of the previous page; omit for the first."),
]

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    """One page of a list, newest first."""

    items: list[Item]
    next_cursor: str | None


def encode_cursor(last_id: int) -> str:
    """An opaque cursor for the page after `last_id`."""
    return base64.urlsafe_b64encode(f"v1:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The id below which the next page starts; the first page when there is no cursor."""
    if cursor is None:
        return BIGINT_MAX
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, value = raw.partition(":")
        last_id = int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor from None
    if version != "v1" or not 1 <= last_id <= BIGINT_MAX:
        raise InvalidCursor
    return last_id


def page(items: list[dict], limit: int, *, key: str) -> dict:
    """A page body from up to limit + 1 items fetched: the extra one says there is more."""
    if len(items) <= limit:
        return {"items": items, "next_cursor": None}
    items = items[:limit]
    return {"items": items, "next_cursor": encode_cursor(items[-1][key])}
