"""Search: every plan returns exactly the plain SQL definition; searches cannot starve the rest.

The corpus (tests/support/search_corpus.py) spreads 6,000 posts over eleven of
posts_search_idx's buckets, so that the probe, the sparse bitmap, the buckets and the walk each
meet dense, rare, absent and old-only words, pairs, phrases, negations and `or`. The bitmaps
plan has its own tests (test_search_bitmaps.py).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

import asyncpg
import httpx

from app.posts.search import most_relevant, newest_matches
from tests.support.api import every_page
from tests.support.cli import run_cli, service_env
from tests.support.search_corpus import (
    DEFINITION,
    ID_STEP,
    POSTS,
    PROLIFIC,
    QUERIES,
    check_against_definition,
    plans_used,
)

# order=relevance: the newest $4 matches, by ts_rank (normalized by length), ties newest first.
RANKED_DEFINITION = """
    WITH candidates AS (
        SELECT id, content FROM posts WHERE id < $1 AND ($3::bigint IS NULL OR user_id = $3)
        AND to_tsvector('simple', content) @@ websearch_to_tsquery('simple', $2)
        ORDER BY id DESC LIMIT $4
    )
    SELECT id FROM candidates ORDER BY
        ts_rank(to_tsvector('simple', content), websearch_to_tsquery('simple', $2), 1) DESC, id DESC"""
# probe_rows and sparse_rows that force each way to finish a search.
PLANS = {
    "auto": {},
    "sparse": {"probe_rows": 1, "sparse_rows": float("inf")},
    "buckets": {"probe_rows": 1, "sparse_rows": -1},
    "long probe": {"probe_rows": 5000},
}


async def test_every_plan_returns_exactly_the_definition(search_conn, db):
    conn = search_conn
    before = plans_used()
    checked = await check_against_definition(
        conn,
        db,
        plans=PLANS,
        users=(None, PROLIFIC, 7, 999),
        cursors=(2**63 - 1, POSTS * ID_STEP // 2, 3 * ID_STEP + 1, 1),
        limits=(1, 20),
    )
    used = plans_used()
    assert checked == len(QUERIES) * 4 * 4 * 2 * len(PLANS)
    # Each way of finishing a search was taken, many times.
    for plan in ("probe", "sparse", "buckets", "walk"):
        assert used.get(plan, 0) - before.get(plan, 0) > 20, plan


async def test_the_answer_has_the_definitions_rows_and_sees_new_posts(search_conn, db):
    """Whole rows come back, and a post written after the load is found by its words."""
    conn = search_conn
    new_id = await db.fetchval(
        "INSERT INTO posts (user_id, content) VALUES (7, 'A fresh rare word: zyxt') RETURNING id"
    )
    rows = await newest_matches(
        conn, query="zyxt rare", before_id=2**63 - 1, limit=20, user_id=None, timeout_ms=10_000
    )
    assert [tuple(row) for row in rows] == [
        tuple(row)
        for row in await db.fetch(
            "SELECT id, content, user_id, created_time FROM posts WHERE id = $1", new_id
        )
    ]
    await db.execute("UPDATE posts SET content = 'now about something else' WHERE id = $1", new_id)
    assert (
        await newest_matches(
            conn, query="zyxt", before_id=2**63 - 1, limit=20, user_id=None, timeout_ms=10_000
        )
        == []
    )


async def test_relevance_ranks_exactly_the_newest_candidates(search_conn, db):
    """Every candidate-set size, page size, user and upper bound: the ranked definition."""
    conn = search_conn
    checked = 0
    for query in QUERIES:
        for user_id in (None, PROLIFIC, 999):
            for below in (2**63 - 1, POSTS * ID_STEP // 2):
                for candidates in (1, 30, 300, 5000):
                    expected = [
                        row["id"]
                        for row in await db.fetch(RANKED_DEFINITION, below, query, user_id, candidates)
                    ]
                    seen, after, next_below = [], None, below
                    while True:  # pages of 13, each resumed from the last (rank, id)
                        next_below, ranked = await most_relevant(
                            conn,
                            query=query,
                            below=next_below,
                            after=after,
                            limit=13,
                            user_id=user_id,
                            candidates=candidates,
                            timeout_ms=10_000,
                        )
                        seen += [row["id"] for row, _rank in ranked]
                        if len(ranked) < 13:
                            break
                        after = (ranked[-1][1], ranked[-1][0]["id"])
                    assert seen == expected, (query, user_id, below, candidates)
                    checked += 1
    assert checked == len(QUERIES) * 3 * 2 * 4
    # The ranks order something: a query whose candidates differ in rank is not newest first.
    ranked = [row["id"] for row in await db.fetch(RANKED_DEFINITION, 2**63 - 1, "dense", None, 300)]
    assert ranked != sorted(ranked, reverse=True)


async def test_relevance_pages_rank_the_same_candidates_while_posts_arrive(client, db):
    await db.execute("INSERT INTO users (id, name) VALUES (1, 'a')")
    rng = random.Random(3)
    await db.copy_records_to_table(
        "posts",
        columns=["id", "user_id", "content"],
        records=[
            (i, 1, " ".join(rng.choice(["kappa", "delta", "omega"]) for _ in range(rng.randint(1, 9))))
            for i in range(1, 300)
        ],
    )
    await db.execute("SELECT setval(pg_get_serial_sequence('posts', 'id'), 300)")
    expected = [row["id"] for row in await db.fetch(RANKED_DEFINITION, 2**63 - 1, "kappa", None, 1000)]
    assert len(expected) > 30

    async def a_new_post() -> None:  # highly relevant: it must not join the pages under way
        await db.execute("INSERT INTO posts (user_id, content) VALUES (1, 'kappa kappa kappa')")

    params = {"q": "kappa", "order": "relevance", "limit": 9}
    assert await every_page(client, "/posts", params, between_pages=a_new_post) == expected


async def test_relevance_input_errors(client):
    for params in ({"order": "relevance"}, {"order": "rank", "q": "x"}):
        response = await client.get("/posts", params=params)
        assert response.status_code == 422, params
        assert response.json()["detail"][0]["loc"] == ["query", "order"]
    newest_cursor = "djE6Mw"  # v1:3
    response = await client.get("/posts", params={"q": "x", "order": "relevance", "cursor": newest_cursor})
    assert response.status_code == 400 and response.json() == {"detail": "Invalid cursor"}
    ranked = await client.get(
        "/posts", params={"q": "x", "order": "relevance", "cursor": "cgAAAAAAAAAKPwAAAAAAAAAAAAAF"}
    )
    assert ranked.status_code == 200, ranked.text  # a well-formed relevance cursor
    response = await client.get("/posts", params={"q": "x", "cursor": "cgAAAAAAAAAKPwAAAAAAAAAAAAAF"})
    assert response.status_code == 400 and response.json() == {"detail": "Invalid cursor"}


async def test_pages_of_a_search_concatenate_to_the_definition(client, db):
    await db.execute("INSERT INTO users (id, name) VALUES (1, 'a'), (2, 'b')")
    rng = random.Random(5)
    await db.copy_records_to_table(
        "posts",
        columns=["id", "user_id", "content"],
        records=[
            (
                i * 97,
                1 + i % 2,
                " ".join(rng.choice(["kappa", "delta", "omega", "sigma"]) for _ in range(rng.randint(1, 5))),
            )
            for i in range(1, 400)
        ],
    )
    queries = (("kappa delta", None), ("omega -sigma", 2), ('"delta omega"', None), ("-kappa", 1))
    for query, user_id in queries:
        expected = [row["id"] for row in await db.fetch(DEFINITION, 2**63 - 1, query, user_id, 10_000)]
        assert expected, query
        params = {"q": query, "limit": 7, **({"user_id": user_id} if user_id else {})}
        assert await every_page(client, "/posts", params) == expected, query


def test_search_has_its_turns_and_timeout_and_the_rest_keeps_answering(fresh_database, serve):
    url = fresh_database()
    assert run_cli("db", "upgrade", env=service_env(DATABASE_URL=url)).returncode == 0
    server = serve(
        service_env(
            DATABASE_URL=url,
            SEARCH_MAX_CONCURRENCY="1",
            SEARCH_QUEUE_SECONDS="0.2",
            SEARCH_STATEMENT_TIMEOUT_MS="3000",
        )
    )
    base = server.base_url
    assert httpx.get(f"{base}/posts", params={"q": "warm"}, timeout=10).status_code == 200

    async def hold_posts(locked: threading.Event, release: threading.Event) -> None:
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
                locked.set()
                while not release.is_set():
                    await asyncio.sleep(0.05)
        finally:
            await conn.close()

    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=asyncio.run, args=(hold_posts(locked, release),))
    holder.start()
    try:
        assert locked.wait(10)
        first: dict[str, httpx.Response] = {}
        searcher = threading.Thread(
            target=lambda: first.setdefault(
                "response", httpx.get(f"{base}/posts", params={"q": "held"}, timeout=30)
            )
        )
        searcher.start()
        wait_for_a_search_waiting_on_a_lock(url)

        second = httpx.get(f"{base}/posts", params={"q": "other"}, timeout=10)
        assert second.status_code == 503 and second.headers["Retry-After"] == "1"
        assert second.json() == {"detail": "Too many searches in progress; retry later"}
        created = httpx.post(f"{base}/users", json={"name": "meanwhile"}, timeout=10)
        assert created.status_code == 201
        assert httpx.get(f"{base}/users/{created.json()['id']}", timeout=10).status_code == 200

        searcher.join(30)  # the held search runs into its own timeout, while posts stays locked
        assert first["response"].status_code == 503, first["response"].text
        assert first["response"].headers["Retry-After"] == "5"
        assert first["response"].json() == {"detail": "The search took too long; retry later"}
    finally:
        release.set()
        holder.join(10)
    assert httpx.get(f"{base}/posts", params={"q": "meanwhile"}, timeout=10).status_code == 200
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    assert 'searches_refused_total{reason="busy"} 1.0' in metrics
    assert 'searches_refused_total{reason="timeout"} 1.0' in metrics


def wait_for_a_search_waiting_on_a_lock(url: str, timeout: float = 10) -> None:
    async def waiting() -> bool:
        conn = await asyncpg.connect(url)
        try:
            return (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wiki-service' "
                    "AND wait_event_type = 'Lock' AND query LIKE '%websearch_to_tsquery%'"
                )
                > 0
            )
        finally:
            await conn.close()

    deadline = time.monotonic() + timeout
    while not asyncio.run(waiting()):
        assert time.monotonic() < deadline, "the first search never reached the lock"
        time.sleep(0.05)
