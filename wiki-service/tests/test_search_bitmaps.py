"""Search through the bitmaps of sealed buckets (app/posts/bitmaps.py): the same answers as the
plain SQL definition, with buckets unsealed, stale, or sealed while a writer is still at work."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app.posts.bitmaps import on_connection, required_lexemes, seal_ready_buckets
from app.posts.search import newest_matches
from tests.support.cli import run_cli, service_env
from tests.support.db import admin_execute
from tests.support.search_corpus import (
    DEFINITION,
    ID_STEP,
    ONE_BUCKET,
    POSTS,
    PROLIFIC,
    QUERIES,
    assert_sealed_and_used,
    check_against_definition,
    plans_used,
)

# In a bucket of the corpus (about 545 posts), the words in 10% of posts or more get bitmaps.
MIN_POSTS = 50
NEWEST_ID = POSTS * ID_STEP  # 174,000: bucket 10, which the corpus leaves partly empty


async def seal(db: asyncpg.Connection, *, wait_for_writers: float = 10.0) -> list[int]:
    return await seal_ready_buckets(
        on_connection(db), settle=0, min_posts=MIN_POSTS, wait_for_writers=wait_for_writers
    )


async def equals_definition(conn: asyncpg.Connection, db: asyncpg.Connection) -> None:
    """Every query, user, cursor and page size, with the probe and without: the definition."""
    checked = await check_against_definition(
        conn,
        db,
        plans={"auto": {}, "no probe to speak of": {"probe_rows": 1}},
        users=(None, PROLIFIC, 7),
        cursors=(2**63 - 1, NEWEST_ID // 2, 3 * ID_STEP + 1),
        limits=(1, 20, 500),
    )
    assert checked == len(QUERIES) * 3 * 3 * 3 * 2


@pytest.fixture
async def sealed(search_conn, db) -> asyncpg.Connection:
    """The corpus with every full bucket sealed: ids up to NEWEST_ID handed out."""
    await db.execute("SELECT setval(pg_get_serial_sequence('posts', 'id'), $1)", NEWEST_ID)
    assert await seal(db) == list(range(9, -1, -1))  # newest first; bucket 10 is not full
    return search_conn


async def test_bitmaps_answer_exactly_the_definition(sealed, db):
    before = plans_used()
    await equals_definition(sealed, db)
    used = plans_used()
    assert used.get("bitmaps", 0) - before.get("bitmaps", 0) > 50
    # The pair's bitmaps are there, in every sealed bucket.
    assert await db.fetchval("SELECT count(*) FROM search_bitmaps WHERE lexeme IN ('pa', 'pb')") == 20


async def test_a_changed_post_makes_its_bucket_stale_until_resealed(sealed, db):
    """A post whose content changes after its bucket was sealed is still found (GIN answers in
    that bucket); the sealer then writes the bucket again, and its bitmaps find it."""
    changed = 100 * ID_STEP  # bucket 0
    await db.execute("UPDATE posts SET content = 'pa and then pb' WHERE id = $1", changed)
    assert await db.fetch("SELECT bucket FROM search_bitmap_stale") == [(0,)]
    for query in ("pa pb", "pa -pb", "pb pa dense"):
        expected = [row["id"] for row in await db.fetch(DEFINITION, 2**63 - 1, query, None, 10_000)]
        rows = await newest_matches(
            sealed, query=query, before_id=2**63 - 1, limit=10_000, user_id=None, timeout_ms=10_000
        )
        assert [row["id"] for row in rows] == expected, query
        assert (changed in expected) is (query == "pa pb"), query
    assert await seal(db) == [0]
    assert await db.fetch("SELECT bucket FROM search_bitmap_stale") == []
    assert await db.fetchval(
        "SELECT get_bit(posts, $1) FROM search_bitmaps WHERE lexeme = 'pa' AND bucket = 0", changed
    )
    await equals_definition(sealed, db)


async def test_a_bucket_is_not_sealed_while_a_writer_of_its_ids_is_running(sealed, db, db_url):
    """An id handed out to a transaction that has not committed: the sealer leaves its bucket
    until the transaction ends, then seals it with the post."""
    writer = await asyncpg.connect(db_url)
    try:
        writer_tx = writer.transaction()
        await writer_tx.start()
        late = await writer.fetchval(
            "INSERT INTO posts (user_id, content) VALUES (7, 'pa late pb') RETURNING id"
        )
        assert late >> 14 == 10
        await db.execute("SELECT setval(pg_get_serial_sequence('posts', 'id'), $1)", (11 << 14) - 1)
        assert await seal(db, wait_for_writers=0.5) == []
        await writer_tx.commit()
    finally:
        await writer.close()
    assert await seal(db) == [10]
    rows = await newest_matches(
        sealed, query='"late pb" pa', before_id=2**63 - 1, limit=5, user_id=None, timeout_ms=10_000
    )
    assert [row["id"] for row in rows] == [late]
    await equals_definition(sealed, db)


async def test_truncate_empties_the_bitmaps(sealed, db):
    await db.execute("TRUNCATE posts")
    for table in ("search_bitmaps", "search_bitmap_buckets", "search_bitmap_stale"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table


@pytest.mark.parametrize(
    ("query", "required"),
    [
        ("pa pb", ["pa", "pb"]),
        ('"pa pb" dense', ["pa", "pb", "dense"]),
        ("pa -pb", ["pa"]),
        ("pa or pb", []),
        ("pa pb or dense", []),
        ('"it\'s" pa', ["it", "s", "pa"]),
        ("-pa", []),
        ("pa pa", ["pa"]),
    ],
)
async def test_required_lexemes_of_postgresqls_own_query_trees(db, query, required):
    tree = await db.fetchval("SELECT querytree(websearch_to_tsquery('simple', $1))", query)
    assert required_lexemes(tree) == required, tree


def test_the_service_seals_full_buckets_by_itself(fresh_database, serve):
    """The sealer in the service's lifespan writes the bitmaps of the bucket the API filled,
    counts them, and the service answers two common words through them."""
    url = fresh_database()
    env = service_env(DATABASE_URL=url, SEARCH_SEAL_INTERVAL_SECONDS="0.5")
    assert run_cli("db", "upgrade", env=env).returncode == 0
    asyncio.run(admin_execute(url, *ONE_BUCKET))
    assert_sealed_and_used(serve(env), url)
