"""Bitmaps of the lexemes common in each bucket of post ids, for searches of two common words.

GIN intersects two posting lists at about 37 ns per entry, so two words that are each in 5% of
posts but rarely together cost about 4 µs per 1,000 posts of the table. Here
each bucket of 2**SEARCH_BUCKET_BITS ids keeps, for every lexeme that at least `min_posts` of
its posts hold, a 2 KB bitmap of those posts (search_bitmaps); intersecting two words in a
bucket is an AND of two such rows: a few µs per 16,384 posts.

Sealing. A bucket's bitmaps are written once every post it will hold is committed: every id in
it was handed out by the posts' sequence before `settle` seconds ago, and no transaction that
could still be writing one is running (the sealing snapshot's xmin is past the next xid read
after the settle). An insert that takes its id from the sequence cannot land in a sealed
bucket. Writers that can:
- an UPDATE of content: the trigger of revision 0004 marks the bucket stale, and search uses
  only buckets that are sealed and not stale, in its own snapshot;
- migrate-sqlite's staged load, which inserts the source's ids: it marks its buckets stale;
- any other writer of explicit ids below the sequence must do the same (or TRUNCATE posts,
  which empties the bitmaps).
The sealer reseals stale buckets. A bitmap may name a post since deleted: search rechecks
every candidate against posts.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager

import asyncpg

from app.posts.models import SEARCH_BUCKET_BITS

BUCKET_SIZE = 1 << SEARCH_BUCKET_BITS
# A lexeme gets a bitmap in a bucket when 1% of a full bucket's posts hold it: the words whose
# posting lists make an intersection long. Rarer ones cost GIN little.
COMMON_IN_BUCKET = BUCKET_SIZE // 100
SEAL_LOCK_ID = 0x77696B695F626D70  # "wiki_bmp": one sealer at a time, across processes
# An INSERT takes its id and its xid within microseconds; a second covers it many times over.
SETTLE_SECONDS = 1.0
_BITS = SEARCH_BUCKET_BITS

# Ids handed out so far; None while the sequence caches values (each backend then holds ids
# ahead of the sequence, which this rule cannot see).
ASSIGNED_SQL = """
    SELECT CASE WHEN s.seqcache = 1 THEN q.last_value - (NOT q.is_called)::int END
    FROM pg_sequence s, LATERAL (SELECT last_value, is_called FROM {sequence}) q
    WHERE s.seqrelid = '{sequence}'::regclass"""
# The newest bucket, at or below $1, that is unsealed or stale; none below the oldest post.
NEXT_TO_SEAL_SQL = f"""
    SELECT b FROM generate_series($1::bigint, (SELECT coalesce(min(id), 0) FROM posts) >> {_BITS}, -1) AS b
    WHERE NOT EXISTS (SELECT FROM search_bitmap_buckets s WHERE s.bucket = b)
       OR EXISTS (SELECT FROM search_bitmap_stale t WHERE t.bucket = b)
    LIMIT 1"""
# Each common lexeme of bucket $1 with its posts' offsets. A bucket with a post whose tsvector
# is not filled yet (a bulk load that left it to `db build-indexes`) is not sealed.
OFFSETS_SQL = f"""
    SELECT w.lexeme, array_agg((p.id & {BUCKET_SIZE - 1})::int) AS offsets
    FROM posts p, unnest(p.search) AS w
    WHERE p.id >= $1::bigint << {_BITS} AND p.id < ($1::bigint + 1) << {_BITS}
    GROUP BY w.lexeme HAVING count(*) >= $2"""
UNFILLED_SQL = f"""
    SELECT EXISTS (SELECT FROM posts WHERE id >= $1::bigint << {_BITS}
                   AND id < ($1::bigint + 1) << {_BITS} AND search IS NULL)"""

# True when every transaction that had an xid below $1 has ended, as this snapshot sees it.
HORIZON_PASSED = "pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8"

# For a search: the lexemes of $1 that have bitmaps in at least half of the sealed buckets.
COMMON_SQL = """
    SELECT lexeme FROM search_bitmaps WHERE lexeme = ANY($1::text[]) GROUP BY lexeme
    HAVING count(*) * 2 >= (SELECT count(*) FROM search_bitmap_buckets)"""
# Buckets $1 down to $4, newest first, at most $3 of them: a sealed, fresh bucket with the AND
# of lexemes $2 when that is not empty, or any other bucket with NULL (search asks the GIN
# index there: not sealed, stale, or a lexeme too rare there to have a bitmap). All of it by
# hash and merge joins: a nested loop would cost a few index probes a bucket.
BUCKET_HITS_SQL = """
    WITH hits AS (
        SELECT bucket, bit_and(posts) AS hits FROM search_bitmaps
        WHERE lexeme = ANY($2::text[]) AND bucket BETWEEN $4 AND $1
        GROUP BY bucket HAVING count(*) = cardinality($2::text[])
    )
    SELECT g.bucket, CASE WHEN s.bucket IS NOT NULL AND t.bucket IS NULL THEN h.hits END AS hits
    FROM generate_series($1::bigint, $4::bigint, -1) AS g (bucket)
    LEFT JOIN search_bitmap_buckets s ON s.bucket = g.bucket
    LEFT JOIN (SELECT DISTINCT bucket FROM search_bitmap_stale) t ON t.bucket = g.bucket
    LEFT JOIN hits h ON h.bucket = g.bucket
    WHERE s.bucket IS NULL OR t.bucket IS NOT NULL OR h.hits IS NULL OR bit_count(h.hits) > 0
    ORDER BY g.bucket DESC LIMIT $3"""

# A tsquery as querytree() prints it: quoted lexemes (with '' and \\ escaped), operators.
_TSQUERY_TOKEN = re.compile(r"'((?:[^'\\]|''|\\.)*)'(?::[*A-D]+)?|([()!|])")


def required_lexemes(tree: str) -> list[str]:
    """The lexemes every match of the query holds: those joined by & or a phrase operator at
    the top level, not negated. None if the top level is an `or`."""
    depth, negated, required = 0, False, []
    for match in _TSQUERY_TOKEN.finditer(tree):
        lexeme, operator = match.groups()
        if operator == "|" and depth == 0:
            return []
        if operator == "(":
            depth += 1
        elif operator == ")":
            depth -= 1
        elif lexeme is not None and depth == 0 and not negated:
            required.append(re.sub(r"''|\\(.)", lambda m: m.group(1) or "'", lexeme))
        negated = operator == "!"
    return list(dict.fromkeys(required))


def posts_in(bucket: int, bits: asyncpg.BitString) -> list[int]:
    """The ids whose bits are set, newest first."""
    value = bits.to_int()
    base = (bucket << _BITS) + BUCKET_SIZE - 1  # the lowest bit is the bucket's highest id
    ids = []
    while value:
        lowest = value & -value
        ids.append(base - lowest.bit_length() + 1)
        value ^= lowest
    return ids


def bitmap_of(offsets: Iterable[int]) -> asyncpg.BitString:
    """A bucket's bitmap with the bits of these offsets set."""
    data = bytearray(BUCKET_SIZE // 8)
    for offset in offsets:
        data[offset >> 3] |= 0x80 >> (offset & 7)
    return asyncpg.BitString.frombytes(bytes(data), BUCKET_SIZE)


async def common_lexemes(conn: asyncpg.Connection, lexemes: Sequence[str]) -> list[str]:
    """Those of `lexemes` with bitmaps in most sealed buckets."""
    return [row["lexeme"] for row in await conn.fetch(COMMON_SQL, list(lexemes))]


async def assigned_ids(conn: asyncpg.Connection) -> int | None:
    """The highest id posts' sequence has handed out (None: it caches ids; never seal)."""
    sequence = await conn.fetchval("SELECT pg_get_serial_sequence('posts', 'id')")
    assigned: int | None = await conn.fetchval(ASSIGNED_SQL.format(sequence=sequence))
    return assigned


async def seal_next_bucket(
    conn: asyncpg.Connection, *, top: int, horizon: int, min_posts: int = COMMON_IN_BUCKET
) -> int | None:
    """Write the bitmaps of the newest bucket at or below `top` that is unsealed or stale.
    `horizon`: the next xid, read after every id of bucket `top` was handed out (and settled).
    Returns the bucket, or None if there is nothing to seal now (all sealed, another sealer at
    work, a writer older than the horizon still running, or tsvectors not filled yet)."""
    async with conn.transaction(isolation="repeatable_read"):
        ready = await conn.fetchval(
            f"SELECT pg_try_advisory_xact_lock({SEAL_LOCK_ID}) AND {HORIZON_PASSED}", str(horizon)
        )
        bucket: int | None = await conn.fetchval(NEXT_TO_SEAL_SQL, top) if ready else None
        if bucket is None or await conn.fetchval(UNFILLED_SQL, bucket):
            return None
        rows = await conn.fetch(OFFSETS_SQL, bucket, min_posts)
        await conn.execute("DELETE FROM search_bitmaps WHERE bucket = $1", bucket)
        await conn.copy_records_to_table(
            "search_bitmaps",
            records=[(row["lexeme"], bucket, bitmap_of(row["offsets"])) for row in rows],
            columns=["lexeme", "bucket", "posts"],
        )
        # Only the marks this snapshot sees: a change it cannot see keeps its mark.
        await conn.execute("DELETE FROM search_bitmap_stale WHERE bucket = $1", bucket)
        await conn.execute(
            "INSERT INTO search_bitmap_buckets (bucket) VALUES ($1) "
            "ON CONFLICT (bucket) DO UPDATE SET sealed_time = now()",
            bucket,
        )
    return bucket


Checkout = Callable[[], AbstractAsyncContextManager[asyncpg.Connection]]


def on_connection(conn: asyncpg.Connection) -> Checkout:
    """A checkout that hands out this one connection (a CLI command's, a test's)."""

    @contextlib.asynccontextmanager
    async def checkout() -> AsyncIterator[asyncpg.Connection]:
        yield conn

    return checkout


async def seal_ready_buckets(
    checkout: Checkout,
    *,
    max_buckets: int | None = None,
    wait_for_writers: float = 0.0,
    settle: float = SETTLE_SECONDS,
    min_posts: int = COMMON_IN_BUCKET,
) -> list[int]:
    """Seal every bucket that is ready (up to max_buckets), newest first, one transaction
    each. Waits up to `wait_for_writers` seconds for transactions older than the ids to end.
    Returns the buckets sealed."""
    async with checkout() as conn:
        assigned = await assigned_ids(conn)
    if assigned is None or assigned < BUCKET_SIZE - 1:
        return []
    await asyncio.sleep(settle)
    sealed: list[int] = []
    async with checkout() as conn:
        horizon = int(await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text"))
        deadline = time.monotonic() + wait_for_writers
        while not await conn.fetchval(f"SELECT {HORIZON_PASSED}", str(horizon)):
            if time.monotonic() >= deadline:
                return sealed
            await asyncio.sleep(0.2)
    # Newest first, each look below the last bucket sealed: a bucket that turns stale above it
    # meanwhile waits for the next call.
    top = ((assigned + 1) >> _BITS) - 1  # the newest bucket whose every id is handed out
    while top >= 0 and (max_buckets is None or len(sealed) < max_buckets):
        async with checkout() as conn:
            bucket = await seal_next_bucket(conn, top=top, horizon=horizon, min_posts=min_posts)
        if bucket is None:
            break
        sealed.append(bucket)
        top = bucket - 1
    return sealed
