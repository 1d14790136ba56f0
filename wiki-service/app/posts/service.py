"""Posts: the queries behind the API (each holds a pooled connection for one statement)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from app.database import Database, inserted_row
from app.errors import PostNotFound, SearchIndexBuilding, UserNotFound
from app.metrics import POSTS_CREATED
from app.posts.search import SearchGate, most_relevant, newest_matches
from app.schema import SEARCH_INDEX, index_is_valid
from app.users import service as users

_COLUMNS = "id, content, user_id, created_time"
# Without its index a search reads every post (minutes on millions): answer 503 instead,
# after a bulk load that left the index to `db build-indexes`. Looked up again every so often.
SEARCH_INDEX_RECHECK_SECONDS = 10.0


@dataclass
class _IndexCheck:
    """Whether the search index was valid when last looked up, and when that was (monotonic)."""

    valid: bool = False
    checked: float = -SEARCH_INDEX_RECHECK_SECONDS


_search_index = _IndexCheck()


def _post(row: asyncpg.Record) -> dict[str, Any]:
    return {"post_id": row[0], "content": row[1], "user_id": row[2], "created_time": row[3]}


async def create(*, db: Database, user_id: int, content: str) -> dict[str, Any]:
    """Insert a post; the foreign key, not a prior SELECT, says whether the user exists."""
    try:
        async with db.checkout() as conn:
            row = await inserted_row(
                conn,
                f"INSERT INTO posts (user_id, content) VALUES ($1, $2) RETURNING {_COLUMNS}",
                user_id,
                content,
            )
    except asyncpg.ForeignKeyViolationError:
        raise UserNotFound from None
    POSTS_CREATED.inc()
    return _post(row)


async def get(*, db: Database, post_id: int) -> dict[str, Any]:
    """The post with this id, or PostNotFound."""
    async with db.checkout() as conn:
        row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM posts WHERE id = $1", post_id)
    if row is None:
        raise PostNotFound
    return _post(row)


async def list_page(
    *,
    db: Database,
    before_id: int,
    limit: int,
    user_id: int | None = None,
    query: str | None = None,
    search_gate: SearchGate | None = None,
) -> list[dict[str, Any]]:
    """Up to limit posts with ids below before_id, newest first, optionally filtered.

    `query` is full-text search in web-search syntax ("quoted phrase", or, -not): see
    app/posts/search.py. Searches take turns at `search_gate` (SEARCH_MAX_CONCURRENCY per process).
    """
    if query is not None:
        assert search_gate is not None, "a search needs the search gate"
        async with search_gate.turn(), db.checkout() as conn:
            if not await _search_index_valid(conn):
                raise SearchIndexBuilding
            rows = await newest_matches(
                conn,
                query=query,
                before_id=before_id,
                limit=limit,
                user_id=user_id,
                timeout_ms=db.settings.search_statement_timeout_ms,
            )
        return [_post(row) for row in rows]
    conditions, args = ["id < $1"], [before_id]
    if user_id is not None:
        args.append(user_id)
        conditions.append(f"user_id = ${len(args)}")
    args.append(limit)
    sql = f"SELECT {_COLUMNS} FROM posts WHERE {' AND '.join(conditions)} ORDER BY id DESC LIMIT ${len(args)}"
    async with db.checkout() as conn:
        rows = await conn.fetch(sql, *args)
    return [_post(row) for row in rows]


async def search_by_relevance(
    *,
    db: Database,
    search_gate: SearchGate,
    query: str,
    below: int,
    after: tuple[float, int] | None,
    limit: int,
    user_id: int | None = None,
) -> tuple[int, list[tuple[dict[str, Any], float]]]:
    """The most relevant of the newest SEARCH_RANK_CANDIDATES matches, with their ranks."""
    async with search_gate.turn(), db.checkout() as conn:
        if not await _search_index_valid(conn):
            raise SearchIndexBuilding
        below, ranked = await most_relevant(
            conn,
            query=query,
            below=below,
            after=after,
            limit=limit,
            user_id=user_id,
            candidates=db.settings.search_rank_candidates,
            timeout_ms=db.settings.search_statement_timeout_ms,
        )
    return below, [(_post(row), rank) for row, rank in ranked]


async def _search_index_valid(conn: asyncpg.Connection) -> bool:
    now = time.monotonic()
    if now - _search_index.checked >= SEARCH_INDEX_RECHECK_SECONDS:
        _search_index.valid = bool(await index_is_valid(conn, SEARCH_INDEX))
        _search_index.checked = now
    return _search_index.valid


async def list_for_user(*, db: Database, user_id: int, before_id: int, limit: int) -> list[dict[str, Any]]:
    """A page of one user's posts; UserNotFound when the user does not exist."""
    posts = await list_page(db=db, before_id=before_id, limit=limit, user_id=user_id)
    if not posts and not await users.exists(db=db, user_id=user_id):
        raise UserNotFound
    return posts
