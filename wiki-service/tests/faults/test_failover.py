"""The primary dies under write load and its synchronous standby is promoted (issue 14).

Two service processes get both servers as DB_HOST=primary,standby (read-write by default),
so they use only the primary; after the promotion they find the new one by themselves.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest

from app.embedded import create_database
from tests.faults.database import FAULT_PASSWORD, SECRET_FORMS
from tests.faults.load import Load, Probe, assert_acknowledged_writes_stored, describe
from tests.faults.replication import ReplicatedPair
from tests.support.cli import run_cli, service_env

pytestmark = pytest.mark.faults

DATABASE = "wiki"
RECOVERY_BOUND = 10.0  # the requirement: writes succeed within 10 s of the promotion
OUTAGE_SECONDS = 2.0  # primary dead, standby not promoted yet: nothing may accept a write


@pytest.fixture
def pair():
    pair = ReplicatedPair(FAULT_PASSWORD).start()
    try:
        yield pair
    finally:
        pair.stop()


async def _writes_everywhere(urls: list[str]) -> bool:
    async with httpx.AsyncClient(timeout=30) as http:
        answers = await asyncio.gather(*(http.post(f"{url}/users", json={"name": "probe"}) for url in urls))
    return all(a.status_code == 201 for a in answers)


async def test_primary_killed_standby_promoted_under_load(pair, serve):
    primary, standby = pair.primary, pair.standby
    await create_database(primary.url(), DATABASE)
    env = service_env(
        DB_HOST=f"{primary.host}:{primary.port},{standby.host}:{standby.port}",
        DB_USER="postgres",
        DB_PASSWORD=FAULT_PASSWORD,
        DB_NAME=DATABASE,
        DB_POOL_TIMEOUT="2",
        LOG_LEVEL="info",
    )
    env.pop("DATABASE_URL", None)
    upgrade = run_cli("db", "upgrade", env=env)  # read-write: it must pick the primary
    assert upgrade.returncode == 0, upgrade.stderr
    servers = [serve(env), serve(env)]
    pids = [s.process.pid for s in servers]
    urls = [s.base_url for s in servers]

    async with Load(urls, writers=4) as load, Probe(urls, "/healthz") as live:
        await asyncio.sleep(2)  # steady state on the primary
        steady_end = time.monotonic()
        pair.kill_primary()
        killed_at = time.monotonic()
        await asyncio.sleep(OUTAGE_SECONDS)
        promote_at = time.monotonic()
        await asyncio.to_thread(pair.promote_standby)
        promoted_at = time.monotonic()
        while not await _writes_everywhere(urls):
            assert time.monotonic() - promote_at <= RECOVERY_BOUND, "no write succeeded after the promotion"
            await asyncio.sleep(0.05)
        recovered_at = time.monotonic()
        await asyncio.sleep(3)  # load on the new primary
        end = time.monotonic()

    recovery = recovered_at - promote_at
    assert recovery <= RECOVERY_BOUND
    everything = load.outcomes + live.outcomes
    wrong = [o for o in everything if not (o.ok or (o.status == 503 and o.retry_after))]
    assert not wrong, describe(wrong)  # never a 500, never a dropped connection
    steady = [o for o in load.outcomes if o.started + o.latency < steady_end]  # answered before the kill
    assert steady and all(o.ok for o in steady), describe([o for o in steady if not o.ok])
    outage = [
        o
        for o in load.between(killed_at + 0.5, promote_at)
        if o.method == "POST" and o.started + o.latency < promote_at
    ]
    assert outage and not [o for o in outage if o.ok], describe([o for o in outage if o.ok])
    after = load.between(recovered_at, end)
    assert after and all(o.ok for o in after), describe([o for o in after if not o.ok])
    assert all(o.status == 200 for o in live.outcomes)

    # Both processes are the ones that started; the standby is the primary now and has
    # every write that was acknowledged, before the kill and after the promotion.
    assert [s.process.pid for s in servers] == pids and all(s.process.poll() is None for s in servers)
    new_primary = standby.url(DATABASE)
    check = await asyncpg.connect(new_primary)
    assert await check.fetchval("SELECT pg_is_in_recovery()") is False
    await check.close()
    await assert_acknowledged_writes_stored(load, new_primary)
    acknowledged_before_kill = [o for o in load.between(0, killed_at) if o.ok and o.method == "POST"]
    assert len(acknowledged_before_kill) > 20
    for server in servers:
        output = server.output()
        assert '"level":"error"' not in output
        assert not any(secret in output for secret in SECRET_FORMS)
    print(
        f"\nfailover: {len(load.outcomes)} requests, {len(load.users)} users and {len(load.posts)} posts "
        f"acknowledged ({len(acknowledged_before_kill)} writes before the kill), "
        f"{sum(o.status == 503 for o in load.outcomes)} answered 503; pg_ctl promote took "
        f"{promoted_at - promote_at:.2f}s; writes succeeded on both processes {recovery:.2f}s after "
        f"promote was issued ({recovered_at - promoted_at:.2f}s after it returned); "
        f"max latency {max(o.latency for o in everything):.2f}s"
    )
