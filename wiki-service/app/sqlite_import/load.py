"""The PostgreSQL side: the fast load into an empty database, the staged load into one that
already has rows, the secondary indexes and the foreign key, sequences, and the read-back.

Fast path (users and posts both empty): one transaction locks both tables, drops the foreign
key, both primary keys and the two secondary indexes, COPYs users then posts (FREEZE), builds
the primary keys (a sort beats 4M one-row index inserts), adds the key NOT VALID and commits.
The secondary indexes, the key's validation and ANALYZE then run on one connection, beside
the read-back on another, with the definitions of the models (app/schema.py). If the
process dies before the commit, nothing is there; if it dies after, `missing_schema_parts`
(checked at the start of every run) finds what is missing, and the rerun takes the staged
path, which finds every row already there.

Staged path: per batch, COPY into a temporary table, `INSERT ... ON CONFLICT (id) DO NOTHING`,
mark the posts' buckets stale for search's bitmaps, then report the staged rows whose id exists
with other values (conflicts: never overwritten), all in one transaction per batch.
"""

from __future__ import annotations

import hashlib
import io
import time
from typing import Any

import asyncpg

from app.posts.models import SEARCH_BUCKET_BITS
from app.schema import (
    FOREIGN_KEY,
    FOREIGN_KEY_DDL,
    INDEX_BUILD_MEMORY,
    PRIMARY_KEY_DDL,
    SEARCH_INDEX,
    SEARCH_TRIGGER,
    SECONDARY_INDEXES,
    fill_search_column,
    index_is_valid,
)
from app.sqlite_import.copy_binary import COLUMNS, HEADER, TRAILER

SERVER_SETTINGS = {
    "application_name": "wiki-service migrate-sqlite",
    # The read-back must print timestamps exactly as the reader wrote them.
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "statement_timeout": "0",
}


async def connect(dsn: str, timeout: float = 10.0) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, timeout=timeout, server_settings=SERVER_SETTINGS)


async def key_is_valid(conn: asyncpg.Connection) -> bool | None:
    """True when the foreign key is validated, False when it is NOT VALID, None when absent."""
    valid: bool | None = await conn.fetchval(
        "SELECT convalidated FROM pg_constraint WHERE conrelid = 'posts'::regclass AND conname = $1",
        FOREIGN_KEY,
    )
    return valid


async def missing_schema_parts(conn: asyncpg.Connection) -> list[str]:
    """Which of the two secondary indexes and the foreign key are absent (or invalid)."""
    missing = [name for name in SECONDARY_INDEXES if not await index_is_valid(conn, name)]
    if not await key_is_valid(conn):
        missing.append(FOREIGN_KEY)
    return missing


async def build_schema_parts(dsn: str, parts: list[str], *, analyze: bool = False) -> dict[str, float]:
    """Create the given indexes and the key (or validate it), then ANALYZE if asked, on one
    connection; returns how long each step took.

    They cannot run side by side: each takes a lock on posts that conflicts with the others'.
    The search index goes last, so that everything else is in place while it builds; posts.search
    is filled first where it is NULL, and ANALYZE runs again after it (its statistics are what a
    search's plan depends on).
    """
    steps = [part for part in parts if part != SEARCH_INDEX] + ["analyze"] * analyze
    if SEARCH_INDEX in parts:
        steps += [SEARCH_INDEX] + ["analyze"] * analyze
    took: dict[str, float] = {}
    conn = await connect(dsn)
    try:
        await conn.execute(f"SET maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
        for step in steps:
            started = time.monotonic()
            if step == "analyze":  # fresh statistics for the planner, as after any bulk load
                await conn.execute("ANALYZE users, posts")
            elif step == FOREIGN_KEY:
                if await key_is_valid(conn) is None:
                    await conn.execute(FOREIGN_KEY_DDL)
                else:
                    await conn.execute(f"ALTER TABLE posts VALIDATE CONSTRAINT {FOREIGN_KEY}")
            else:
                if step == SEARCH_INDEX:
                    await fill_search_column(conn)
                await conn.execute(f"DROP INDEX IF EXISTS {step}")  # an invalid leftover
                await conn.execute(SECONDARY_INDEXES[step])
            took[step] = took.get(step, 0.0) + time.monotonic() - started
    finally:
        await conn.close()
    return took


async def begin_fast_load(conn: asyncpg.Connection, *, fill_search: bool) -> list[str] | None:
    """In an open transaction: lock both tables; if both are empty, get them ready for COPY.

    Returns None (and changes nothing) when either table already has rows, else what
    finish_fast_load puts back. Without fill_search, that is the search trigger, dropped so
    that COPY leaves posts.search NULL: a disabled row trigger would still cost COPY its
    multi-row inserts.
    """
    await conn.execute("LOCK TABLE users, posts IN ACCESS EXCLUSIVE MODE")
    empty = await conn.fetchval("SELECT NOT EXISTS (SELECT FROM users) AND NOT EXISTS (SELECT FROM posts)")
    if not empty:
        return None
    # TRUNCATE (of empty tables) in this transaction lets COPY write frozen rows.
    await conn.execute("TRUNCATE users, posts")
    await conn.execute(f"ALTER TABLE posts DROP CONSTRAINT {FOREIGN_KEY}")
    for table in PRIMARY_KEY_DDL:
        key = await conn.fetchval(
            "SELECT conname FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'p'", table
        )
        await conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {key}")
    for name in SECONDARY_INDEXES:
        await conn.execute(f"DROP INDEX IF EXISTS {name}")  # absent when a fill was left for later
    restore = []
    if not fill_search:
        restore.append(
            await conn.fetchval(
                "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'posts'::regclass "
                "AND tgname = $1",
                SEARCH_TRIGGER,
            )
        )
        await conn.execute(f"DROP TRIGGER {SEARCH_TRIGGER} ON posts")
    return restore


async def finish_fast_load(conn: asyncpg.Connection, restore: list[str]) -> None:
    """In the load's transaction, after COPY: the primary keys, and the key NOT VALID (the
    reader already made sure that every post's user landed; it is validated after the commit)."""
    await conn.execute(f"SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")  # sorts in memory
    for ddl in PRIMARY_KEY_DDL.values():
        await conn.execute(ddl)
    await conn.execute(f"{FOREIGN_KEY_DDL} NOT VALID")
    for statement in restore:
        await conn.execute(statement)


class Staging:
    """The staged path for one connection: temporary tables, one transaction per batch."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def create(self) -> None:
        for table in COLUMNS:
            await self.conn.execute(
                f"CREATE TEMP TABLE stage_{table} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            await self.conn.execute(f"CREATE TEMP TABLE landed_{table} (id bigint PRIMARY KEY)")

    async def load(self, table: str, tuples: bytes) -> tuple[int, list[asyncpg.Record]]:
        """Insert the batch's new rows; return (inserted, conflicts). Conflicting rows stay as they are."""
        columns = COLUMNS[table]
        names = ", ".join(columns)
        differs = " OR ".join(f"t.{c} IS DISTINCT FROM s.{c}" for c in columns[1:])
        async with self.conn.transaction():
            await self.conn.copy_to_table(
                f"stage_{table}",
                source=io.BytesIO(HEADER + tuples + TRAILER),
                columns=columns,
                format="binary",
            )
            status = await self.conn.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM stage_{table} ON CONFLICT (id) DO NOTHING"
            )
            if table == "posts":  # the source's ids may land in sealed buckets (app/posts/bitmaps.py)
                await self.conn.execute(
                    "INSERT INTO search_bitmap_stale (bucket) "
                    f"SELECT DISTINCT id >> {SEARCH_BUCKET_BITS} FROM stage_posts"
                )
            conflicts = await self.conn.fetch(
                f"SELECT s.id, {', '.join(f's.{c}::text AS source_{c}' for c in columns[1:])}, "
                f"{', '.join(f't.{c}::text AS target_{c}' for c in columns[1:])} "
                f"FROM stage_{table} s JOIN {table} t USING (id) WHERE {differs} ORDER BY s.id"
            )
            await self.conn.execute(
                f"INSERT INTO landed_{table} SELECT id FROM stage_{table} "
                f"WHERE id <> ALL($1::bigint[]) ON CONFLICT DO NOTHING",
                [row["id"] for row in conflicts],
            )
        return int(status.split()[-1]), conflicts


async def set_sequences(
    conn: asyncpg.Connection, source_highest: dict[str, int | None]
) -> dict[str, int | None]:
    """Move each identity sequence past the highest id in the table and in the source, so
    that the API's next row collides with no row that is, or will be, migrated."""
    result: dict[str, int | None] = {}
    for table in COLUMNS:
        sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
        ids = (await conn.fetchval(f"SELECT max(id) FROM {table}"), source_highest[table])
        highest = max((i for i in ids if i is not None), default=None)
        last_value, is_called = await conn.fetchrow(f"SELECT last_value, is_called FROM {sequence}")
        upcoming = last_value + 1 if is_called else last_value
        if highest is not None and highest >= upcoming:
            await conn.execute("SELECT setval($1::regclass, $2, true)", sequence, highest)
        result[table] = highest
    return result


async def read_back(conn: asyncpg.Connection, table: str, whole_table: bool) -> tuple[int, str]:
    """(rows, checksum) of the migrated rows as PostgreSQL has them, in id order.

    The checksum is SHA-256 over the COPY binary tuples ordered by id (the stream without its
    header and trailer): the same bytes the reader produced when every value arrived unaltered.
    """
    names = ", ".join(f"t.{c}" for c in COLUMNS[table])
    join = "" if whole_table else f" JOIN landed_{table} l USING (id)"
    digest = hashlib.sha256()
    skip = len(HEADER)
    held = b""  # the last bytes seen, held back until we know they are not the trailer

    async def take(chunk: bytes) -> None:
        nonlocal skip, held
        if skip:
            chunk, skip = chunk[skip:], max(0, skip - len(chunk))
        chunk = held + chunk
        digest.update(chunk[: -len(TRAILER)])
        held = chunk[-len(TRAILER) :]

    status = await conn.copy_from_query(
        f"SELECT {names} FROM {table} t{join} ORDER BY t.id", output=take, format="binary"
    )
    assert held == TRAILER, held
    return int(status.split()[-1]), digest.hexdigest()


def record_values(record: Any, side: str, table: str) -> dict[str, Any]:
    return {c: record[f"{side}_{c}"] for c in COLUMNS[table][1:]}
