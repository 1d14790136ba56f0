"""PostgreSQL's COPY binary format, as migrate-sqlite writes it and reads it back.

A header, then per row a field count and each field as its length and bytes (integers and
timestamps 8 bytes big-endian), then a trailer. A timestamptz is microseconds since
2000-01-01 00:00 UTC. The tuples are the very bytes `COPY ... TO STDOUT (FORMAT binary)`
prints, so the checksum of the tuples sent equals the checksum of the tuples read back when
nothing was altered. (Binary, not text: PostgreSQL parses it in half the time, with no
timestamp or escaping to parse.) The standard library only: the reader processes import it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
TRAILER = b"\xff\xff"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# The columns of a tuple, the text last, so that everything before it packs in one call.
COLUMNS = {
    "users": ("id", "created_time", "name"),
    "posts": ("id", "user_id", "created_time", "content"),
}
_USER_HEAD = struct.Struct(">hiqiqi")  # 3 fields; id; created_time; name's length
_POST_HEAD = struct.Struct(">hiqiqiqi")  # 4 fields; id; user_id; created_time; content's length


def user_tuples(rows: Iterable[tuple[Any, ...]]) -> bytes:
    """COPY binary tuples of (id, microseconds, name) rows."""
    head = _USER_HEAD.pack
    out: list[bytes] = []
    append = out.append
    for user_id, micros, name in rows:  # one join at the end: cheaper than concatenating
        append(head(3, 8, user_id, 8, micros, len(name)))
        append(name)
    return b"".join(out)


def post_tuples(rows: Iterable[tuple[Any, ...]]) -> bytes:
    """COPY binary tuples of (id, user_id, microseconds, content) rows."""
    head = _POST_HEAD.pack
    out: list[bytes] = []
    append = out.append
    for post_id, user_id, micros, content in rows:
        append(head(4, 8, post_id, 8, user_id, 8, micros, len(content)))
        append(content)
    return b"".join(out)


PACK = {"users": user_tuples, "posts": post_tuples}


def drop_tuples(tuples: bytes, ids: set[int]) -> bytes:
    """The tuples without those of the given ids (the id is every tuple's first field)."""
    kept, offset = [], 0
    while offset < len(tuples):
        start = offset
        (fields,) = struct.unpack_from(">h", tuples, offset)
        offset += 2
        row_id = struct.unpack_from(">q", tuples, offset + 4)[0]
        for _ in range(fields):
            (length,) = struct.unpack_from(">i", tuples, offset)
            offset += 4 + length
        if row_id not in ids:
            kept.append(tuples[start:offset])
    return b"".join(kept)
