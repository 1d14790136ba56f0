"""More requests than the pool holds: the excess waits up to the pool timeout, then 503."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.faults.load import TableLock, wait_for_blocked

pytestmark = pytest.mark.faults

POOL_TIMEOUT = 1.0
MARGIN = 3.0


async def _timed(request) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def test_pool_exhaustion_answers_503_after_the_pool_timeout(fault_db, serve):
    server = serve(fault_db.env(DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0", DB_POOL_TIMEOUT=str(POOL_TIMEOUT)))
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        user_id = (await http.post("/users", json={"name": "held"})).json()["id"]
        async with TableLock(fault_db.url, "users") as lock:
            # The pool's only connection is now busy inside PostgreSQL, waiting for the lock.
            held = asyncio.create_task(http.get(f"/users/{user_id}"))
            await wait_for_blocked(fault_db.url, 1)
            excess = await asyncio.gather(
                *(_timed(http.get(f"/users/{user_id}")) for _ in range(4)),
                _timed(http.post("/users", json={"name": "excess"})),
                _timed(http.get("/posts")),
                _timed(http.get("/readyz")),
            )
            live = await http.get("/healthz")
            assert not held.done()
            await lock.release()
            first = await asyncio.wait_for(held, 30)
        after = await http.get(f"/users/{user_id}")

    for response, latency in excess:
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"]
        # It waited for a connection (the pool timeout), and not forever.
        assert POOL_TIMEOUT * 0.9 <= latency <= POOL_TIMEOUT + MARGIN, latency
    assert live.status_code == 200
    assert first.status_code == 200 and first.json()["name"] == "held"
    assert after.status_code == 200
    print(
        f"\npool exhaustion: {len(excess)} excess requests answered 503 in "
        f"{min(t for _, t in excess):.2f}-{max(t for _, t in excess):.2f}s (pool timeout {POOL_TIMEOUT}s)"
    )
