"""PostgreSQL stops for a few seconds under load from two service processes, then returns."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.faults.load import Load, Probe, assert_acknowledged_writes_stored, describe

pytestmark = pytest.mark.faults

POOL_TIMEOUT = 2.0
MARGIN = 3.0  # generous: the machine is shared; this only separates "bounded" from "hung"
OUTAGE_SECONDS = 4.0
RECOVERY_BOUND = 5.0


async def test_database_restart_under_load(fault_db, serve):
    env = fault_db.env(DB_POOL_TIMEOUT=str(POOL_TIMEOUT))
    servers = [serve(env), serve(env)]
    pids = [s.process.pid for s in servers]
    urls = [s.base_url for s in servers]
    pg = fault_db.server

    async with (
        Load(urls, writers=4) as load,
        Probe(urls, "/healthz") as live,
        Probe(urls, "/readyz") as ready,
    ):
        await asyncio.sleep(2)  # steady state first
        steady_end = time.monotonic()

        await asyncio.to_thread(pg.stop, "fast")
        down_at = time.monotonic()
        await asyncio.sleep(OUTAGE_SECONDS)
        up_begin = time.monotonic()
        await asyncio.to_thread(pg.start)  # the same data folder and the same port
        up_at = time.monotonic()

        # Poll until a write and a read succeed on both processes; then everything must.
        async with httpx.AsyncClient(timeout=30) as http:
            while True:
                answers = await asyncio.gather(
                    *(http.post(f"{url}/users", json={"name": "probe"}) for url in urls),
                    *(http.get(f"{url}/users?limit=1") for url in urls),
                )
                if all(a.status_code in (200, 201) for a in answers):
                    break
                assert time.monotonic() - up_at <= RECOVERY_BOUND, [a.status_code for a in answers]
                await asyncio.sleep(0.1)
        recovered_at = time.monotonic()
        await asyncio.sleep(3)  # load after the recovery
        end = time.monotonic()

    recovery = recovered_at - up_at
    assert recovery <= RECOVERY_BOUND

    everything = load.outcomes + live.outcomes + ready.outcomes
    # Never a 500, never a dropped connection, never a hang: 2xx or 503 + Retry-After, bounded.
    wrong = [o for o in everything if not (o.ok or (o.status == 503 and o.retry_after))]
    assert not wrong, describe(wrong)
    slow = [o for o in everything if o.latency > POOL_TIMEOUT + MARGIN]
    assert not slow, describe(slow)

    # Answered before the stop began: a request still in flight then may meet the stop.
    steady = [o for o in load.outcomes if o.started + o.latency < steady_end]
    assert steady and all(o.ok for o in steady), describe([o for o in steady if not o.ok])
    outage = load.between(down_at, up_begin)
    assert outage and all(o.status == 503 for o in outage), describe([o for o in outage if o.status != 503])
    # Liveness never depends on the database; readiness says it is away.
    assert all(o.status == 200 for o in live.outcomes)
    assert ready.between(down_at, up_begin) and all(o.status == 503 for o in ready.between(down_at, up_begin))
    after = load.between(recovered_at, end) + ready.between(recovered_at, end)
    assert after and all(o.ok for o in after), describe([o for o in after if not o.ok])

    # No process restarted.
    assert [s.process.pid for s in servers] == pids and all(s.process.poll() is None for s in servers)
    await assert_acknowledged_writes_stored(load, fault_db.url)
    assert len(load.users) > 20 and len(load.posts) > 20
    print(
        f"\nrestart: {len(load.outcomes)} requests, {len(load.users)} users and {len(load.posts)} "
        f"posts acknowledged, {len(outage)} answered 503 during the outage, "
        f"max latency {max(o.latency for o in everything):.2f}s, recovered {recovery:.2f}s after start()"
    )
