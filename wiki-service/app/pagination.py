"""Keyset pagination: newest first, an opaque cursor naming the last id seen."""

from __future__ import annotations

import base64
import binascii
import struct
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from app.errors import InvalidCursor
from app.limits import BIGINT_MAX

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


def page(items: list[dict[str, Any]], limit: int, *, key: str) -> dict[str, Any]:
    """A page body from up to limit + 1 items fetched: the extra one says there is more."""
    if len(items) <= limit:
        return {"items": items, "next_cursor": None}
    items = items[:limit]
    return {"items": items, "next_cursor": encode_cursor(items[-1][key])}


# A relevance cursor: the candidate set's upper id, then the last post's rank (a float4, as
# ts_rank returns it, so it survives the round trip exactly) and id.
_RANKED = struct.Struct(">cqfq")


def encode_ranked_cursor(*, below: int, rank: float, last_id: int) -> str:
    """An opaque cursor for the relevance page after the post (rank, last_id)."""
    return base64.urlsafe_b64encode(_RANKED.pack(b"r", below, rank, last_id)).decode().rstrip("=")


def decode_ranked_cursor(cursor: str) -> tuple[int, float, int]:
    """(below, rank, last_id) of a relevance cursor; InvalidCursor for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, below, rank, last_id = _RANKED.unpack(raw)
    except (binascii.Error, ValueError, struct.error):
        raise InvalidCursor from None
    if kind != b"r" or not 1 <= below <= BIGINT_MAX or not 1 <= last_id <= BIGINT_MAX or rank != rank:
        raise InvalidCursor
    return below, rank, last_id


def ranked_page(ranked: list[tuple[dict[str, Any], float]], limit: int, *, below: int) -> dict[str, Any]:
    """A relevance page body from up to limit + 1 (post, rank) pairs fetched."""
    items = [post for post, _rank in ranked[:limit]]
    if len(ranked) <= limit:
        return {"items": items, "next_cursor": None}
    last, rank = ranked[limit - 1]
    next_cursor = encode_ranked_cursor(below=below, rank=rank, last_id=last["post_id"])
    return {"items": items, "next_cursor": next_cursor}
