"""The PostgreSQL side: the fast load into an empty database, the staged load into one that
already has rows, the secondary indexes and the foreign key, sequences, and the read-back.

Fast path (users and posts both empty): one transaction locks both tables, drops the two
secondary indexes and the foreign key, COPYs users then posts (FREEZE), and commits. The
indexes and the key are then rebuilt in parallel on two connections, with exactly the
definitions of Alembic revision 0001. If the process dies before the commit, nothing is
there; if it dies after, `ensure_schema` (run at the start of every run) rebuilds what is
missing, and the rerun takes the staged path, which finds every row already there.

Staged path: per batch, COPY into a temporary table, `INSERT ... ON CONFLICT (id) DO NOTHING`,
then report the staged rows whose id exists with other values (conflicts: never overwritten),
all in one transaction per batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
from typing import Any

import asyncpg

SERVER_SETTINGS = {
    "application_name": "wiki-service migrate-sqlite",
    # The read-back must print timestamps exactly as the reader wrote them.
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "statement_timeout": "0",
}

# Alembic revision 0001's secondary indexes and key, as pg_get_indexdef/constraintdef show them.
INDEXES = {
    "posts_user_id_id_idx": "CREATE INDEX posts_user_id_id_idx ON public.posts USING btree (user_id, id)",
    "posts_content_search_idx": (
        "CREATE INDEX posts_content_search_idx ON public.posts "
        "USING gin (to_tsvector('simple'::regconfig, content))"
    ),
}
FOREIGN_KEY = "posts_user_id_fkey"
FOREIGN_KEY_DDL = (
    "ALTER TABLE posts ADD CONSTRAINT posts_user_id_fkey FOREIGN KEY (user_id) REFERENCES users(id)"
)
COLUMNS = {"users": ("id", "name", "created_time"),
           "posts": ("id", "user_id", "content", "created_time")}
# Index builds get more memory than the server's default (64 MB on a stock install).
MAINTENANCE_WORK_MEM = "1GB"


async def connect(dsn: str, timeout: float = 10.0) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, timeout=timeout, server_settings=SERVER_SETTINGS)


async def missing_schema_parts(conn: asyncpg.Connection) -> list[str]:
    """Which of the two secondary indexes and the foreign key are absent (or invalid)."""
    present = {row["indexname"] for row in await conn.fetch(
        "SELECT c.relname AS indexname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = 'posts'::regclass AND i.indisvalid"
    )}
    missing = [name for name in INDEXES if name not in present]
    has_key = await conn.fetchval(
        "SELECT convalidated FROM pg_constraint WHERE conrelid = 'posts'::regclass AND conname = $1",
        FOREIGN_KEY,
    )
    if not has_key:
        missing.append(FOREIGN_KEY)
    return missing


async def build_schema_parts(dsn: str, parts: list[str]) -> dict[str, float]:
    """Create the given indexes / key: the GIN index on one connection, the rest on another.

    Returns how long each took.
    """
    took: dict[str, float] = {}

    async def build(names: list[str]) -> None:
        if not names:
            return
        conn = await connect(dsn)
        try:
            await conn.execute(f"SET maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
            for name in names:
                started = time.monotonic()
                if name == FOREIGN_KEY:
                    # An invalid leftover (NOT VALID) is replaced by a validated one.
                    await conn.execute(f"ALTER TABLE posts DROP CONSTRAINT IF EXISTS {FOREIGN_KEY}")
                    await conn.execute(FOREIGN_KEY_DDL)
                else:
                    await conn.execute(f"DROP INDEX IF EXISTS {name}")
                    await conn.execute(INDEXES[name])
                took[name] = time.monotonic() - started
        finally:
            await conn.close()

    gin = [p for p in parts if p == "posts_content_search_idx"]
    rest = [p for p in parts if p != "posts_content_search_idx"]
    await asyncio.gather(build(gin), build(rest))
    return took


async def begin_fast_load(conn: asyncpg.Connection) -> bool:
    """In an open transaction: lock both tables; if both are empty, get them ready for COPY.

    Returns False (and changes nothing) when either table already has rows.
    """
    await conn.execute("LOCK TABLE users, posts IN ACCESS EXCLUSIVE MODE")
    empty = await conn.fetchval(
        "SELECT NOT EXISTS (SELECT FROM users) AND NOT EXISTS (SELECT FROM posts)"
    )
    if not empty:
        return False
    # TRUNCATE (of empty tables) in this transaction lets COPY write frozen rows.
    await conn.execute("TRUNCATE users, posts")
    await conn.execute(f"ALTER TABLE posts DROP CONSTRAINT {FOREIGN_KEY}")
    for name in INDEXES:
        await conn.execute(f"DROP INDEX {name}")
    return True


class Staging:
    """The staged path for one connection: temporary tables, one transaction per batch."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def create(self) -> None:
        for table in COLUMNS:
            await self.conn.execute(
                f"CREATE TEMP TABLE stage_{table} (LIKE {table} INCLUDING DEFAULTS) "
                f"ON COMMIT DELETE ROWS"
            )
            await self.conn.execute(f"CREATE TEMP TABLE landed_{table} (id bigint PRIMARY KEY)")

    async def load(self, table: str, lines: bytes) -> tuple[int, list[asyncpg.Record]]:
        """Insert the batch's new rows; return (inserted, conflicts). Conflicting rows stay as they are."""
        columns = COLUMNS[table]
        names = ", ".join(columns)
        differs = " OR ".join(f"t.{c} IS DISTINCT FROM s.{c}" for c in columns[1:])
        async with self.conn.transaction():
            await self.conn.copy_to_table(f"stage_{table}", source=io.BytesIO(lines),
                                          columns=columns, format="text")
            status = await self.conn.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM stage_{table} "
                f"ON CONFLICT (id) DO NOTHING"
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


async def set_sequences(conn: asyncpg.Connection) -> dict[str, int | None]:
    """Move each identity sequence past the highest id, so the API's next row does not collide."""
    result: dict[str, int | None] = {}
    for table in COLUMNS:
        sequence = await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
        highest = await conn.fetchval(f"SELECT max(id) FROM {table}")
        last_value, is_called = await conn.fetchrow(f"SELECT last_value, is_called FROM {sequence}")
        upcoming = last_value + 1 if is_called else last_value
        if highest is not None and highest >= upcoming:
            await conn.execute("SELECT setval($1::regclass, $2, true)", sequence, highest)
        result[table] = highest
    return result


async def read_back(conn: asyncpg.Connection, table: str, whole_table: bool) -> tuple[int, str]:
    """(rows, checksum) of the migrated rows as PostgreSQL has them, in id order.

    The checksum is SHA-256 over the COPY text lines ordered by id: the same bytes the reader
    produced when every value arrived unaltered.
    """
    names = ", ".join(f"t.{c}" for c in COLUMNS[table])
    join = "" if whole_table else f" JOIN landed_{table} l USING (id)"
    digest = hashlib.sha256()
    rows = 0

    async def take(chunk: bytes) -> None:
        nonlocal rows
        digest.update(chunk)
        rows += chunk.count(b"\n")

    await conn.copy_from_query(
        f"SELECT {names} FROM {table} t{join} ORDER BY t.id", output=take, format="text"
    )
    return rows, digest.hexdigest()


def drop_lines(lines: bytes, ids: set[int]) -> bytes:
    """The batch without the lines of the given ids (conflicts do not count as landed)."""
    kept = [line for line in lines.split(b"\n")[:-1] if int(line.split(b"\t", 1)[0]) not in ids]
    return b"".join(line + b"\n" for line in kept)


def record_values(record: Any, side: str, table: str) -> dict[str, Any]:
    return {c: record[f"{side}_{c}"] for c in COLUMNS[table][1:]}
