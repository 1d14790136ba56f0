"""Users: the queries behind the API.

Each function holds a pooled connection only for its one statement, not for the request:
under load that keeps the connections in use near the statements in flight, well inside the
pool, instead of one per request waiting on the event loop.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from app.database import Database, inserted_row
from app.errors import UserNotFound
from app.metrics import USERS_CREATED

_COLUMNS = "id, name, created_time"


def _user(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row[0], "name": row[1], "created_time": row[2]}


async def create(*, db: Database, name: str) -> dict[str, Any]:
    """Insert a user and return it."""
    async with db.checkout() as conn:
        row = await inserted_row(conn, f"INSERT INTO users (name) VALUES ($1) RETURNING {_COLUMNS}", name)
    USERS_CREATED.inc()
    return _user(row)


async def get(*, db: Database, user_id: int) -> dict[str, Any]:
    """The user with this id, or UserNotFound."""
    async with db.checkout() as conn:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id)
    if row is None:
        raise UserNotFound
    return _user(row)


async def exists(*, db: Database, user_id: int) -> bool:
    """Whether a user with this id exists."""
    async with db.checkout() as conn:
        return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)", user_id))


async def list_page(*, db: Database, before_id: int, limit: int) -> list[dict[str, Any]]:
    """Up to limit users with ids below before_id, newest first."""
    async with db.checkout() as conn:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM users WHERE id < $1 ORDER BY id DESC LIMIT $2", before_id, limit
        )
    return [_user(row) for row in rows]
