"""One of two service processes is killed with SIGKILL under load, then started again."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.faults.load import Load, assert_acknowledged_writes_stored, describe

pytestmark = pytest.mark.faults


async def test_sigkill_one_process_under_load(fault_db, serve):
    env = fault_db.env(DB_POOL_TIMEOUT="2")
    victim, survivor = serve(env), serve(env)

    async with Load([victim.base_url, survivor.base_url], writers=4) as load:
        await asyncio.sleep(2)
        killed_at = time.monotonic()
        victim.process.kill()  # SIGKILL: no shutdown, no lifespan, connections dropped
        await asyncio.to_thread(victim.process.wait)
        await asyncio.sleep(2)
        restarted = await asyncio.to_thread(serve, env, port=victim.port)
        back_at = time.monotonic()
        await asyncio.sleep(2)
        end = time.monotonic()

    assert victim.process.returncode == -9
    on_survivor = [o for o in load.outcomes if o.base_url == survivor.base_url]
    on_victim = [o for o in load.outcomes if o.base_url == victim.base_url]
    # The other process carries on: every request it got succeeded, including during the kill.
    assert all(o.ok for o in on_survivor), describe([o for o in on_survivor if not o.ok])
    assert [o for o in on_survivor if killed_at <= o.started < back_at]
    # The killed one answered 2xx or nothing at all (refused / cut off); never an error status.
    assert all(o.ok or o.status is None for o in on_victim), describe([o for o in on_victim if o.status])
    assert all(o.ok for o in on_victim if o.started + o.latency < killed_at)
    # It starts again cleanly on the same port, and serves and is ready at once.
    after = [o for o in on_victim if back_at <= o.started < end]
    assert after and all(o.ok for o in after), describe([o for o in after if not o.ok])
    async with httpx.AsyncClient(base_url=restarted.base_url, timeout=30) as http:
        assert (await http.get("/readyz")).status_code == 200
    output = restarted.output()
    assert "Application startup complete" in output
    assert '"level":"error"' not in output and "Traceback" not in output

    await assert_acknowledged_writes_stored(load, fault_db.url)
    print(
        f"\nsigkill: {len(load.outcomes)} requests, {len(on_survivor)} on the survivor (all 2xx), "
        f"{sum(o.status is None for o in on_victim)} cut off or refused on the killed process, "
        f"{len(load.users)} users and {len(load.posts)} posts acknowledged and stored"
    )
