"""A reader process: reads its share of the users, then of the posts, and sends the batches.

Spawned, not forked (pool.py): it imports this module, source.py and the standard library,
not the app the command loaded, so that the readers do not each hold (and count) the same
hundred megabytes of pydantic and SQLAlchemy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from app.sqlite_import.messages import (
    Batch,
    IdRange,
    Landed,
    RangeDone,
    ReaderFailed,
    ReadPosts,
    ReadUsers,
    TableDone,
)
from app.sqlite_import.source import highest_id, open_source, read_rows
from app.sqlite_import.user_ids import UserIds

if TYPE_CHECKING:
    from multiprocessing.connection import Connection


def reader_main(path: str, batch_size: int, pipe: Connection) -> None:
    """The process's body; the order of the messages is in messages.py. Any failure is sent
    as ReaderFailed."""
    try:
        db = open_source(path)
        request = pipe.recv()
        if not isinstance(request, ReadUsers):
            return
        users = UserIds(highest_id(db, "users"))
        _send_ranges(
            pipe,
            "users",
            request.ranges,
            lambda id_range: read_rows(db, "users", batch_size, users, id_range),
        )
        pipe.send(Landed(users))
        request = pipe.recv()
        if not isinstance(request, ReadPosts):
            return
        for other in request.others:
            users.update(other)
        for user_id, reason in request.refused.items():
            users.discard(user_id, reason)
        _send_ranges(
            pipe,
            "posts",
            request.ranges,
            lambda id_range: read_rows(db, "posts", batch_size, users, id_range),
        )
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        pass
    except Exception as error:
        with contextlib.suppress(BrokenPipeError, OSError):
            pipe.send(ReaderFailed(f"reading the source failed: {type(error).__name__}: {error}"))


def _send_ranges(
    pipe: Connection, table: str, ranges: list[IdRange], read: Callable[[IdRange], Iterator[Batch]]
) -> None:
    for id_range in ranges:
        for batch in read(id_range):
            pipe.send(batch)
        pipe.send(RangeDone(table))
    pipe.send(TableDone(table))
