"""Full-text search, newest first, with bounded work per request whatever the query.

The answer is defined by plain SQL, and every plan below returns exactly it:

    SELECT id, content, user_id, created_time FROM posts
    WHERE id < :before [AND user_id = :user] AND search @@ websearch_to_tsquery('simple', :q)
    ORDER BY id DESC LIMIT :limit

All steps of one search run in one REPEATABLE READ READ ONLY transaction (one snapshot), with
the search's own statement timeout and planner settings scoped to it by SET LOCAL, which a
transaction-mode pooler passes through.

1. The probe: the newest PROBE_ROWS posts below the cursor (of the user, if given) through the
   primary key (or posts_user_id_id_idx), filtered on the stored tsvector. A word in more than
   about one post in twelve is answered here.
2. Below the probe, if the page is not full yet, one of:
   - bitmaps: when two or more words that every match holds have bitmaps in most sealed
     buckets (app/posts/bitmaps.py), their bitmaps are ANDed bucket by bucket, newest first,
     and the candidates rechecked against posts; GIN answers in a bucket that has no bitmaps
     to use. Two words each common but rarely together end here.
   - sparse: when the planner, from the statistics on posts.search, expects at most
     SPARSE_ROWS matches, one GIN bitmap over the whole table, sorted. Rare and absent words
     end here.
   - buckets: otherwise posts_search_idx is asked bucket by bucket (2**SEARCH_BUCKET_BITS
     ids), newest first, until the page is full: a word that is common only in old posts
     costs the empty buckets above them (a few µs each) and one bucket of matches.
   - walk: a query with no positive word (`-word` alone) cannot use GIN; it walks the primary
     key, bounded by the search timeout.

Relevance (`most_relevant`) ranks a bounded candidate set: the newest `candidates` matches
found by the steps above, ordered by ts_rank, then newest first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from app.database import StatementMixedUp
from app.errors import SearchBusy, SearchTimedOut
from app.metrics import SEARCH_PLANS, SEARCHES_REFUSED
from app.posts import bitmaps
from app.posts.models import SEARCH_BUCKET_BITS, SEARCH_CONFIG

PROBE_ROWS = 256
SPARSE_ROWS = 10_000

COLUMNS = "id, content, user_id, created_time"
TSQUERY = f"websearch_to_tsquery('{SEARCH_CONFIG}', $2)"
# force_custom_plan: a prepared search must be planned for its own words and cursor, never
# from a generic plan that guessed them. No JIT: compiling costs more than these queries.
SEARCH_SETTINGS = (
    "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off; "
    "SET LOCAL max_parallel_workers_per_gather = 0"
)

# $1 the id to search below, $2 the query, $3 the user or NULL, $4 how many; the probe's $5 is
# how many posts it reads. Custom plans fold `$3 IS NULL` away, so each search is planned for
# exactly its filter.
USER = "($3::bigint IS NULL OR user_id = $3)"
_BITS = SEARCH_BUCKET_BITS

# One row at least (the probe's size and lowest id), then one per hit.
PROBE_SQL = f"""
    WITH probe AS MATERIALIZED (
        SELECT {COLUMNS}, search FROM posts WHERE id < $1 AND {USER} ORDER BY id DESC LIMIT $5
    ), hits AS (
        SELECT {COLUMNS} FROM probe WHERE search @@ {TSQUERY} ORDER BY id DESC LIMIT $4
    )
    SELECT hits.*, s.probed, s.lowest, numnode({TSQUERY}) AS nodes, querytree({TSQUERY}) AS tree,
           (SELECT min(id) FROM posts) AS oldest
    FROM (SELECT count(*) AS probed, min(id) AS lowest FROM probe) s
    LEFT JOIN hits ON true
    ORDER BY hits.id DESC"""

WALK_SQL = (
    f"SELECT {COLUMNS} FROM posts WHERE id < $1 AND {USER} AND search @@ {TSQUERY} ORDER BY id DESC LIMIT $4"
)
# Every match below $1 (few, by the estimate) from one GIN bitmap, then the user's: the user's
# index would cost as many of their posts as there are, however rare the words.
SPARSE_SQL = f"""
    WITH matches AS MATERIALIZED (
        SELECT {COLUMNS} FROM posts WHERE id < $1 AND search @@ {TSQUERY}
    )
    SELECT * FROM matches WHERE {USER} ORDER BY id DESC LIMIT $4"""


# One bucket's matches (the bucket is `bucket`). The id range bounds every other plan the planner
# could pick to the bucket, too. OFFSET 0 keeps the user's filter out of the bucket's scan:
# through the user's index an empty bucket would cost all their posts in it, through the GIN
# index alone next to nothing.
IN_BUCKET = f"""
    LATERAL (
        SELECT * FROM (
            SELECT {COLUMNS} FROM posts
            WHERE (id >> {_BITS}) = bucket AND id >= bucket << {_BITS}
              AND id < least($1, (bucket + 1) << {_BITS}) AND search @@ {TSQUERY}
            OFFSET 0
        ) in_bucket
        WHERE {USER} ORDER BY id DESC LIMIT $4
    ) found"""
BUCKETS_SQL = (
    f"SELECT found.* FROM generate_series($1::bigint >> {_BITS}, 0, -1) AS bucket, {IN_BUCKET} LIMIT $4"
)
# The bitmaps plan's rows: the candidates $5 that the bitmaps gave, rechecked against the whole
# query, and the matches in buckets $6, where there are no bitmaps to use.
BITMAP_ROWS_SQL = f"""
    SELECT * FROM (
        SELECT {COLUMNS} FROM posts
        WHERE id = ANY($5::bigint[]) AND id < $1 AND {USER} AND search @@ {TSQUERY}
        UNION ALL
        SELECT found.* FROM unnest($6::bigint[]) AS bucket, {IN_BUCKET}
    ) rows ORDER BY id DESC LIMIT $4"""
ESTIMATE_SQL = f"EXPLAIN (FORMAT JSON) SELECT 1 FROM posts WHERE id < $1 AND search @@ {TSQUERY}"
# Normalization 1 divides by 1 + log(length): a long post does not win by length alone.
RANK_SQL = (
    f"SELECT id, ts_rank(search, {TSQUERY}, 1) AS rank "
    f"FROM unnest($1::bigint[]) AS candidate(id) JOIN posts USING (id)"
)


async def newest_matches(
    conn: asyncpg.Connection,
    *,
    query: str,
    before_id: int,
    limit: int,
    user_id: int | None,
    timeout_ms: int,
    probe_rows: int = PROBE_ROWS,
    sparse_rows: float = SPARSE_ROWS,
    use_bitmaps: bool = True,
) -> list[asyncpg.Record]:
    """Up to limit posts matching the web-search query, below before_id, newest first.

    probe_rows, sparse_rows and use_bitmaps choose the plan (tests force each plan with them).
    """
    async with _search_transaction(conn, timeout_ms):
        return await _newest(
            conn,
            query=query,
            before_id=before_id,
            limit=limit,
            user_id=user_id,
            probe_rows=probe_rows,
            sparse_rows=sparse_rows,
            use_bitmaps=use_bitmaps,
        )


async def most_relevant(
    conn: asyncpg.Connection,
    *,
    query: str,
    below: int,
    after: tuple[float, int] | None,
    limit: int,
    user_id: int | None,
    candidates: int,
    timeout_ms: int,
) -> tuple[int, list[tuple[asyncpg.Record, float]]]:
    """Up to limit of the newest `candidates` matches below `below`, most relevant first.

    Ties keep newest first. `after` is the (rank, id) of the last post of the previous page.
    Also returns the id that the next pages' candidates stay below, so that every page ranks
    the same candidates while new posts arrive.
    """
    async with _search_transaction(conn, timeout_ms):
        rows = await _newest(conn, query=query, before_id=below, limit=candidates, user_id=user_id)
        if not rows:
            return below, []
        # The plan above may have turned an index scan kind off; the ranks are read by id.
        await conn.execute("SET LOCAL enable_indexscan = on; SET LOCAL enable_bitmapscan = on")
        ranks = dict(await conn.fetch(RANK_SQL, [row["id"] for row in rows], query))
    if len(ranks) != len(rows):  # one snapshot: every candidate is there to rank
        raise StatementMixedUp
    ranked = sorted(((row, ranks[row["id"]]) for row in rows), key=lambda pair: (-pair[1], -pair[0]["id"]))
    if after is not None:
        ranked = [(row, rank) for row, rank in ranked if (rank, row["id"]) < after]
    return min(rows[0]["id"] + 1, below), ranked[:limit]


@contextlib.asynccontextmanager
async def _search_transaction(conn: asyncpg.Connection, timeout_ms: int) -> AsyncIterator[None]:
    """One snapshot for all steps of a search, with its own timeout and planner settings."""
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}; {SEARCH_SETTINGS}")
            yield
    except asyncpg.QueryCanceledError:  # the search's statement timeout
        SEARCHES_REFUSED.labels("timeout").inc()
        raise SearchTimedOut from None


async def _newest(
    conn: asyncpg.Connection,
    *,
    query: str,
    before_id: int,
    limit: int,
    user_id: int | None,
    probe_rows: int = PROBE_ROWS,
    sparse_rows: float = SPARSE_ROWS,
    use_bitmaps: bool = True,
) -> list[asyncpg.Record]:
    """newest_matches' steps, inside _search_transaction."""
    args = [before_id, query, user_id, limit]
    probe = await conn.fetch(PROBE_SQL, *args, probe_rows)
    if not probe:  # it always has its summary row, unless another statement answered
        raise StatementMixedUp
    found = [row for row in probe if row["id"] is not None]
    head = probe[0]
    if len(found) == limit or head["probed"] < probe_rows or head["nodes"] == 0:
        SEARCH_PLANS.labels("probe").inc()
        return found
    args[0], args[3] = head["lowest"], limit - len(found)
    common = []
    if use_bitmaps and len(required := bitmaps.required_lexemes(head["tree"])) > 1:
        common = await bitmaps.common_lexemes(conn, required)
    if head["tree"] == "T":  # no positive word: nothing for an index to find
        plan, sql, setting = "walk", WALK_SQL, "enable_bitmapscan"
    elif len(common) > 1:
        plan, sql, setting = "bitmaps", BITMAP_ROWS_SQL, "enable_indexscan"
    elif await _expected_matches(conn, args[:2]) <= sparse_rows:
        plan, sql, setting = "sparse", SPARSE_SQL, "enable_indexscan"
    else:
        plan, sql, setting = "buckets", BUCKETS_SQL, "enable_indexscan"
    await conn.execute(f"SET LOCAL {setting} = off")
    SEARCH_PLANS.labels(plan).inc()
    if plan == "bitmaps":
        return found + await _from_bitmaps(conn, args, common, oldest=head["oldest"])
    rest: list[asyncpg.Record] = await conn.fetch(sql, *args)
    return found + rest


async def _from_bitmaps(
    conn: asyncpg.Connection, args: list[Any], lexemes: list[str], *, oldest: int
) -> list[asyncpg.Record]:
    """The matches below args[0], newest first, from the bitmaps of `lexemes` (which every
    match holds), a batch of buckets at a time; GIN where a bucket has none to use."""
    before, query, user_id, limit = args
    rows: list[asyncpg.Record] = []
    top, bottom = (before - 1) >> _BITS, oldest >> _BITS
    while len(rows) < limit and top >= bottom:
        wanted = limit - len(rows)
        buckets = await conn.fetch(bitmaps.BUCKET_HITS_SQL, top, lexemes, wanted, bottom)
        candidates: list[int] = []
        elsewhere: list[int] = []
        for bucket, hits in buckets:
            if hits is None:
                elsewhere.append(bucket)
            else:
                candidates += bitmaps.posts_in(bucket, hits)
        if buckets:
            rows += await conn.fetch(BITMAP_ROWS_SQL, before, query, user_id, wanted, candidates, elsewhere)
        if len(buckets) < wanted:  # no bucket left below
            break
        top = buckets[-1]["bucket"] - 1
    return rows


async def _expected_matches(conn: asyncpg.Connection, args: Sequence[object]) -> float:
    """The planner's estimate of the matches below $1 (any user's), from the statistics on
    posts.search."""
    plan = await conn.fetchval(ESTIMATE_SQL, *args)
    if isinstance(plan, str):  # SQLAlchemy's pool decodes json itself; bare asyncpg does not
        plan = json.loads(plan)
    rows: float = plan[0]["Plan"]["Plan Rows"]
    return rows


class SearchGate:
    """At most `limit` searches at once in this process, so that searches cannot take the
    pool (and the database's cores) from the other endpoints; a search waits at most `wait`
    seconds for its turn, then gets SearchBusy (503 + Retry-After)."""

    def __init__(self, limit: int, wait: float) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._wait = wait

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._wait):
                await self._slots.acquire()
        except TimeoutError:
            SEARCHES_REFUSED.labels("busy").inc()
            raise SearchBusy from None
        try:
            yield
        finally:
            self._slots.release()
