"""The search tests' corpus: 6,000 posts over eleven of posts_search_idx's buckets, with
words planted at known rates, so that every plan meets dense, rare, absent and old-only words,
pairs, phrases, negations and `or`; and the plain SQL definition every plan must equal."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable

import asyncpg
import httpx

from app.metrics import SEARCH_PLANS
from app.posts.search import newest_matches
from tests.support.server import Server

POSTS = 6000
ID_STEP = 29  # ids 29 .. 174,000: eleven buckets of 16,384 ids
PROLIFIC = 1
WORDS = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
]
QUERIES = [
    "dense",
    "common",
    "rare",
    "absent",
    "old",
    "pa pb",
    '"pa pb"',
    "common -dense",
    "rare or absent",
    "-dense",
    "-dense -common",
    "common or -pa",
    "!!! ???",
    "dolor",
    '"lorem ipsum" -old',
]
# The definition: to_tsvector on the content itself, not the stored column.
DEFINITION = (
    "SELECT id FROM posts WHERE id < $1 AND ($3::bigint IS NULL OR user_id = $3) "
    "AND to_tsvector('simple', content) @@ websearch_to_tsquery('simple', $2) "
    "ORDER BY id DESC LIMIT $4"
)


def corpus() -> list[tuple[int, int, str]]:
    rng = random.Random(11)
    rows = []
    for i in range(1, POSTS + 1):
        post_id = i * ID_STEP
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
        for word, planted in (
            ("dense", rng.random() < 0.5),
            ("common", rng.random() < 0.1),
            ("rare", i % 1400 == 0),
            ("old", i <= POSTS // 2 and rng.random() < 0.3),
        ):
            if planted:
                words.insert(rng.randrange(len(words) + 1), word)
        pair = rng.random()
        if pair < 0.2:
            words.append("pa")
        elif pair < 0.4:
            words.insert(0, "pb")
        if i in (700, 3100, 5900):  # together: once as the phrase, twice apart
            words += ["pa", "pb"] if i != 3100 else ["pb", "x", "pa"]
        user = PROLIFIC if rng.random() < 0.3 else rng.randint(2, 50)
        rows.append((post_id, user, " ".join(words).capitalize()))
    return rows


async def load_corpus(db: asyncpg.Connection) -> None:
    """The corpus and its 50 users; COPY fires the trigger that fills posts.search, as the
    service's inserts do."""
    await db.executemany(
        "INSERT INTO users (id, name) VALUES ($1, $2)", [(i, f"user {i}") for i in range(1, 51)]
    )
    await db.copy_records_to_table("posts", records=corpus(), columns=["id", "user_id", "content"])
    await db.execute("ANALYZE posts")


def plans_used() -> dict[str, float]:
    return {
        sample.labels["plan"]: sample.value
        for metric in SEARCH_PLANS.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


async def check_against_definition(
    conn: asyncpg.Connection,
    db: asyncpg.Connection,
    *,
    plans: dict[str, dict],
    users: Iterable[int | None],
    cursors: Iterable[int],
    limits: Iterable[int],
) -> int:
    """Every query, user, cursor and limit, under each plan's thresholds: exactly the
    definition's ids, in its order. Returns the cases checked."""
    checked = 0
    for query in QUERIES:
        for user_id in users:
            for cursor in cursors:
                for limit in limits:
                    answer = await db.fetch(DEFINITION, cursor, query, user_id, limit)
                    expected = [row["id"] for row in answer]
                    for plan, thresholds in plans.items():
                        rows = await newest_matches(
                            conn,
                            query=query,
                            before_id=cursor,
                            limit=limit,
                            user_id=user_id,
                            timeout_ms=10_000,
                            **thresholds,
                        )
                        assert [row["id"] for row in rows] == expected, (query, user_id, cursor, limit, plan)
                        checked += 1
    return checked


# Bucket 0 but for its last id: 'alpha' and 'beta' each common there, together in 16 posts.
ONE_BUCKET = (
    "INSERT INTO users (name) VALUES ('author')",
    "INSERT INTO posts (user_id, content) SELECT 1, 'beta gamma' FROM generate_series(1, 300)",
    "INSERT INTO posts (user_id, content) SELECT 1, 'alpha ' || i || CASE WHEN i % 1000 = 0 "
    "THEN ' beta' ELSE '' END FROM generate_series(1, 16082) AS i",
)


def assert_sealed_and_used(server: Server, url: str) -> None:
    """On ONE_BUCKET: a post through the API fills bucket 0; the service's sealer writes its
    bitmaps, counts them, and a search for both words goes through them."""
    assert httpx.post(f"{server.base_url}/posts", json={"user_id": 1, "content": "x"}).status_code == 201
    deadline = time.monotonic() + 30
    while not asyncio.run(_fetch_value(url, "SELECT count(*) FROM search_bitmap_buckets")):
        assert time.monotonic() < deadline, server.output()[-3000:]
        time.sleep(0.2)
    assert asyncio.run(_fetch_value(url, "SELECT array_agg(bucket) FROM search_bitmap_buckets")) == [0]
    page = httpx.get(f"{server.base_url}/posts", params={"q": "beta alpha", "limit": 100}).json()
    assert [item["content"] for item in page["items"]] == [f"alpha {i} beta" for i in range(16000, 0, -1000)]
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert "search_buckets_sealed_total 1.0" in metrics
    assert 'search_plans_total{plan="bitmaps"} 1.0' in metrics
    assert "sealing search buckets failed" not in server.output()


async def _fetch_value(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()
