"""Several worker processes: the counters summed over them equal what was created."""

import asyncio
import json
import re

import httpx

from tests.conftest import service_env, truncate


def _value(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert match, f"{name} missing"
    return float(match.group(1))


async def test_counters_add_up_across_two_workers(serve, db_url, db):
    await truncate(db_url)
    server = serve(service_env(), workers=2)
    created_users = created_posts = 0

    async with httpx.AsyncClient(base_url=server.base_url, timeout=30,
                                 limits=httpx.Limits(max_keepalive_connections=0)) as http:
        for round_ in range(4):
            users = await asyncio.gather(*[
                http.post("/users", json={"name": f"w{round_}-{i}"}) for i in range(25)
            ])
            assert all(r.status_code == 201 for r in users)
            created_users += len(users)
            posts = await asyncio.gather(*[
                http.post("/posts", json={"user_id": r.json()["id"], "content": "hi"}) for r in users[:10]
            ])
            assert all(r.status_code == 201 for r in posts)
            created_posts += len(posts)
            # Every scrape, whichever worker answers it, reports the totals of all workers.
            for _ in range(6):
                scrape = await http.get("/metrics")
                assert _value(scrape.text, "users_created_total") == created_users
                assert _value(scrape.text, "posts_created_total") == created_posts
    assert await db.fetchval("SELECT count(*) FROM users") == created_users
    text = httpx.get(f"{server.base_url}/metrics").text
    assert _value(text, 'http_requests_total{method="POST",route="/users",status="201"}') == created_users
    assert _value(text, "db_pool_size") == 20  # livesum: 10 for each live worker
    server.stop()
    writers = {
        entry["pid"] for entry in map(json.loads, server.output().splitlines())
        if entry.get("route") == "/users" and entry.get("status") == 201
    }
    assert len(writers) == 2  # both workers created users, so the sums above span processes
