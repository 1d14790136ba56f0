"""Several worker processes: the counters summed over them equal what was created."""

import asyncio
import json
import subprocess
import sys

import httpx

from tests.support.api import metric_value
from tests.support.cli import run_python, service_env
from tests.support.db import truncate


async def test_counters_add_up_across_two_workers(serve, db_url, db):
    await truncate(db_url)
    server = serve(service_env(), workers=2)
    created_users = created_posts = 0

    async with httpx.AsyncClient(
        base_url=server.base_url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
    ) as http:
        for round_ in range(4):
            users = await asyncio.gather(
                *[http.post("/users", json={"name": f"w{round_}-{i}"}) for i in range(25)]
            )
            assert all(r.status_code == 201 for r in users)
            created_users += len(users)
            posts = await asyncio.gather(
                *[http.post("/posts", json={"user_id": r.json()["id"], "content": "hi"}) for r in users[:10]]
            )
            assert all(r.status_code == 201 for r in posts)
            created_posts += len(posts)
            # Every scrape, whichever worker answers it, reports the totals of all workers.
            for _ in range(6):
                scrape = await http.get("/metrics")
                assert metric_value(scrape.text, "users_created_total") == created_users
                assert metric_value(scrape.text, "posts_created_total") == created_posts
    assert await db.fetchval("SELECT count(*) FROM users") == created_users
    text = httpx.get(f"{server.base_url}/metrics").text
    created = metric_value(text, 'http_requests_total{method="POST",route="/users",status="201"}')
    assert created == created_users
    assert metric_value(text, "db_pool_size") == 20  # livesum: 10 for each live worker
    server.stop()
    writers = {
        entry["pid"]
        for entry in map(json.loads, server.output().splitlines())
        if entry.get("route") == "/users" and entry.get("status") == 201
    }
    assert len(writers) == 2  # both workers created users, so the sums above span processes


def test_a_killed_workers_pool_gauges_are_dropped_when_workers_start(tmp_path):
    """A worker killed with SIGKILL leaves its gauge file; the next start forgets it."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    code = (
        "import os, sys\n"
        "from prometheus_client import values\n"
        "from app import metrics\n"
        f"values.ValueClass = values.MultiProcessValue(lambda: {dead.pid})\n"
        "from prometheus_client import Gauge\n"
        "Gauge('db_pool_size_ghost', 'x', multiprocess_mode='livesum').set(10)\n"
        "files = sorted(os.listdir(os.environ['PROMETHEUS_MULTIPROC_DIR']))\n"
        "assert any(str(%d) in f for f in files), files\n"
        "metrics.forget_dead_workers()\n"
        "left = sorted(os.listdir(os.environ['PROMETHEUS_MULTIPROC_DIR']))\n"
        "assert not any(f.startswith('gauge_live') and str(%d) in f for f in left), left\n"
        "print('ok')\n"
    ) % (dead.pid, dead.pid)
    result = run_python(code, service_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path)))
    assert result.stdout.strip() == "ok", result.stderr
