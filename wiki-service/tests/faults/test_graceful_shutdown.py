"""SIGTERM while requests are in flight: they complete, new connections are refused, exit 0."""

from __future__ import annotations

import asyncio
import signal
import time

import asyncpg
import httpx
import pytest

from tests.faults.load import TableLock, wait_for_blocked

pytestmark = pytest.mark.faults

IN_FLIGHT = 3


async def test_sigterm_finishes_in_flight_requests_and_refuses_new_ones(fault_db, serve):
    server = serve(fault_db.env(DB_POOL_TIMEOUT="2"))
    async with (
        httpx.AsyncClient(base_url=server.base_url, timeout=60) as http,
        TableLock(fault_db.url, "users") as lock,
    ):
        # Writes held inside PostgreSQL by the lock: in flight when the signal comes.
        in_flight = [
            asyncio.create_task(http.post("/users", json={"name": f"in flight {n}"}))
            for n in range(IN_FLIGHT)
        ]
        await wait_for_blocked(fault_db.url, IN_FLIGHT)
        server.process.send_signal(signal.SIGTERM)

        deadline = time.monotonic() + 10
        while True:  # the listening socket closes at once; poll a few times for slow machines
            try:
                async with httpx.AsyncClient(timeout=5) as fresh:
                    await fresh.get(f"{server.base_url}/healthz")
            except httpx.ConnectError:
                break
            assert time.monotonic() < deadline, "new connections still accepted after SIGTERM"
            await asyncio.sleep(0.1)
        assert not any(task.done() for task in in_flight)
        assert server.process.poll() is None  # waiting for its requests

        await lock.release()
        responses = await asyncio.wait_for(asyncio.gather(*in_flight), 30)

    assert [r.status_code for r in responses] == [201] * IN_FLIGHT
    code = await asyncio.to_thread(server.process.wait, 30)
    assert code == 0, server.output()[-2000:]
    conn = await asyncpg.connect(fault_db.url)
    try:
        for response in responses:
            body = response.json()
            assert await conn.fetchval("SELECT name FROM users WHERE id = $1", body["id"]) == body["name"]
    finally:
        await conn.close()
