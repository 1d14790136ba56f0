"""The service through Debian's PgBouncer in transaction pooling mode (issue 14).

Two service processes with DB_PREPARED_STATEMENTS=false share a pool of 4 server connections.
PostgreSQL logs every statement of the database, so the test sees that none was a named
prepared statement; the statement timeout, stored by `db upgrade`, still applies.
"""

from __future__ import annotations

import asyncio
import re

import asyncpg
import httpx
import pytest

from tests.faults.database import FAULT_PASSWORD
from tests.faults.load import Load, TableLock, assert_acknowledged_writes_stored, describe, wait_for_blocked
from tests.faults.pgbouncer import PgBouncer
from tests.support.cli import run_cli
from tests.support.search_corpus import ONE_BUCKET, assert_sealed_and_used

pytestmark = pytest.mark.faults

POOL_SIZE = 4
STATEMENT_TIMEOUT_MS = 1000
EXECUTE = re.compile(r"LOG:  execute (\S+?):")


@pytest.fixture
def bouncer(fault_db):
    server = fault_db.server
    bouncer = PgBouncer(
        host=server.host,
        server_port=server.port,
        database=fault_db.name,
        user="postgres",
        password=FAULT_PASSWORD,
        pool_size=POOL_SIZE,
    ).start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


def _through(bouncer: PgBouncer, fault_db, **overrides: str) -> dict[str, str]:
    return fault_db.env(DB_HOST=bouncer.host, DB_PORT=str(bouncer.port), DB_NAME=bouncer.name, **overrides)


async def test_mixed_traffic_through_pgbouncer_in_transaction_mode(fault_db, bouncer, serve):
    # db upgrade talks to PostgreSQL directly and stores the statement timeout for the role.
    upgrade = run_cli("db", "upgrade", env=fault_db.env(DB_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS)))
    assert upgrade.returncode == 0, upgrade.stderr
    admin = await fault_db.connect()
    await admin.execute(f"ALTER DATABASE \"{fault_db.name}\" SET log_statement = 'all'")
    await admin.close()
    log = fault_db.server.data_dir / "server.log"
    log_start = log.stat().st_size

    env = _through(bouncer, fault_db, DB_PREPARED_STATEMENTS="false")
    servers = [serve(env), serve(env)]
    urls = [s.base_url for s in servers]
    # One reader: one search at a time, so a per-process search limit never turns one away.
    async with Load(urls, writers=4, readers=1) as load:
        await asyncio.sleep(6)
    with log.open("rb") as server_log:
        server_log.seek(log_start)
        executed = EXECUTE.findall(server_log.read().decode(errors="replace"))

    wrong = [o for o in load.outcomes if not o.ok]
    assert not wrong, describe(wrong)  # zero errors, 503s included
    for kind in ("POST /users", "POST /posts", "GET /posts/", "GET /user/", "GET /posts?q=", "cursor="):
        assert any(kind in f"{o.method} {o.path}" for o in load.outcomes), f"no {kind} request was made"
    assert len(load.users) > 20 and len(load.posts) > 20
    await assert_acknowledged_writes_stored(load, fault_db.url)
    assert "<unnamed>" in executed
    named = sorted({name for name in executed if name != "<unnamed>"})
    assert not named, f"named prepared statements went through the pooler: {named[:5]}"
    assert "unsupported startup parameter" not in bouncer.log()
    print(
        f"\npgbouncer: {len(load.outcomes)} requests from 2 processes over a pool of {POOL_SIZE}, "
        f"{len(load.users)} users and {len(load.posts)} posts acknowledged, "
        f"{len(executed)} statements executed, all unnamed"
    )

    # The timeout applies to the pooled sessions: a request stuck behind a lock is canceled.
    async with TableLock(fault_db.url, "users") as lock, httpx.AsyncClient(timeout=30) as http:
        pooled = await asyncpg.connect(
            host=bouncer.host,
            port=bouncer.port,
            user="postgres",
            password=FAULT_PASSWORD,
            database=bouncer.name,
            statement_cache_size=0,
        )
        assert await pooled.fetchval("SHOW statement_timeout") == f"{STATEMENT_TIMEOUT_MS // 1000}s"
        await pooled.close()
        blocked = asyncio.create_task(http.post(f"{urls[0]}/users", json={"name": "blocked"}))
        await wait_for_blocked(fault_db.url, 1)
        response = await blocked
        assert not lock.released
        assert response.status_code == 503 and response.headers["retry-after"], response.text


async def test_prepared_statements_left_on_through_pgbouncer_are_never_500(fault_db, bouncer, serve):
    """The misconfiguration the issue measured: the driver's errors answer 503 + Retry-After."""
    env = _through(bouncer, fault_db)  # DB_PREPARED_STATEMENTS defaults to true
    servers = [serve(env), serve(env)]
    async with Load([s.base_url for s in servers], writers=4, readers=2) as load:
        await asyncio.sleep(4)
    # A statement bound to another session's statement of the same name can run it, so a read
    # may even answer 404 for a row that exists (seen once), and acknowledged writes are not
    # checked: only DB_PREPARED_STATEMENTS=false is safe. What holds: never a 500, never a hang
    # or a dropped connection; a clash is 503 + Retry-After.
    wrong = [
        o
        for o in load.outcomes
        if o.status is None or (o.status >= 500 and not (o.status == 503 and o.retry_after))
    ]
    assert not wrong, describe(wrong)
    unavailable = [o for o in load.outcomes if o.status == 503]
    assert unavailable, "no prepared statement clashed: the pool is too large to show the failure"
    assert any("DB_PREPARED_STATEMENTS=false" in server.output() for server in servers)
    print(
        f"\npgbouncer with prepared statements on: {len(unavailable)} of {len(load.outcomes)} requests "
        "answered 503"
    )


async def test_search_bitmaps_are_sealed_and_used_through_pgbouncer(fault_db, bouncer, serve):
    """The sealer's transaction-scoped advisory lock, its REPEATABLE READ snapshot and its COPY
    all work through transaction pooling, and so does the bitmaps plan."""
    assert run_cli("db", "upgrade", env=fault_db.env()).returncode == 0
    admin = await fault_db.connect()
    try:
        for statement in ONE_BUCKET:
            await admin.execute(statement)
    finally:
        await admin.close()
    env = _through(bouncer, fault_db, DB_PREPARED_STATEMENTS="false", SEARCH_SEAL_INTERVAL_SECONDS="0.5")
    server = serve(env)
    await asyncio.to_thread(assert_sealed_and_used, server, fault_db.url)
