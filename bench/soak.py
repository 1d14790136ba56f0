#!/usr/bin/env python3
"""Soak: minutes of mixed load on `wiki-service serve --workers 2`, watching memory and connections.

Not a test: a bench script that prints what it saw. It starts its own embedded PostgreSQL (a
password full of special characters) unless --admin-url is given, migrates a fresh database
with `wiki-service db upgrade`, serves it with `wiki-service serve --workers N`, and drives an
asyncio httpx load generator (a mix of writes, reads, lists and searches) for --minutes.

Every second it counts the service's connections in pg_stat_activity (application_name =
'wiki-service'); every 10 s it samples each worker's RSS. At the end it reports RSS per worker
after the warm-up and at the end, the connection counts against the pool bound
(workers x (DB_POOL_SIZE + DB_MAX_OVERFLOW)), statuses, errors and latency percentiles, and
checks that every acknowledged write is in the database.

    .venv/bin/python bench/soak.py --minutes 10
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
SERVICE_DIR = ROOT / "wiki-service"
sys.path.insert(0, str(SERVICE_DIR))

from app.embedded import EmbeddedPostgres, create_database  # noqa: E402
from tests.support.cli import run_cli, service_env  # noqa: E402
from tests.support.server import Server  # noqa: E402

PASSWORD = "p@ss:/#%'\" w0rd\\;$"
WORDS = ["alpha", "beta", "gamma", "delta", "wiki", "postgres", "river", "mountain", "quantum", "tea"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32, help="simultaneous client requests")
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--max-overflow", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before the first RSS figure")
    parser.add_argument(
        "--admin-url",
        default=None,
        help="superuser libpq URL of a PostgreSQL to use (default: an embedded one)",
    )
    return parser.parse_args()


class Stats:
    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.users: dict[int, str] = {}
        self.posts: dict[int, str] = {}
        self.user_ids: list[int] = []
        self.post_ids: list[int] = []


async def client_loop(http: httpx.AsyncClient, stats: Stats, stop: asyncio.Event) -> None:
    rng = random.Random()
    while not stop.is_set():
        roll = rng.random()
        try:
            started = time.perf_counter()
            if roll < 0.15 or not stats.users:
                name = f"soak {uuid.uuid4().hex[:8]} {rng.choice(WORDS)}"
                response = await http.post("/users", json={"name": name})
                if response.status_code == 201:
                    stats.users[response.json()["id"]] = name
                    stats.user_ids.append(response.json()["id"])
                kind = "POST /users"
            elif roll < 0.40:
                user_id = rng.choice(stats.user_ids[-1000:])
                content = " ".join(rng.choices(WORDS, k=12)) + f" {uuid.uuid4().hex}"
                response = await http.post("/posts", json={"user_id": user_id, "content": content})
                if response.status_code == 201:
                    stats.posts[response.json()["post_id"]] = content
                    stats.post_ids.append(response.json()["post_id"])
                kind = "POST /posts"
            elif roll < 0.60 and stats.posts:
                response = await http.get(f"/posts/{rng.choice(stats.post_ids[-500:])}")
                kind = "GET /posts/{id}"
            elif roll < 0.75:
                response = await http.get("/posts", params={"limit": 20})
                kind = "GET /posts"
            elif roll < 0.85:
                response = await http.get("/posts", params={"q": rng.choice(WORDS), "limit": 10})
                kind = "GET /posts?q="
            elif roll < 0.95:
                response = await http.get(
                    f"/users/{rng.choice(stats.user_ids[-500:])}/posts", params={"limit": 10}
                )
                kind = "GET /users/{id}/posts"
            else:
                response = await http.get(f"/users/{rng.choice(stats.user_ids[-500:])}")
                kind = "GET /users/{id}"
            stats.latencies.append(time.perf_counter() - started)
            stats.statuses[f"{kind} {response.status_code}"] += 1
        except httpx.HTTPError as error:
            stats.errors[type(error).__name__] += 1


def worker_processes(serve: psutil.Process) -> list[psutil.Process]:
    children = serve.children(recursive=True)
    return [p for p in children if "resource_tracker" not in " ".join(p.cmdline())]


async def sample_connections(admin_url: str, samples: list[int], stop: asyncio.Event) -> None:
    conn = await asyncpg.connect(admin_url, server_settings={"application_name": "soak-monitor"})
    try:
        while not stop.is_set():
            samples.append(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'wiki-service'"
                )
            )
            await asyncio.sleep(1)
    finally:
        await conn.close()


async def sample_rss(
    workers: list[psutil.Process], rss: dict[int, list[tuple[float, int]]], stop: asyncio.Event, start: float
) -> None:
    while not stop.is_set():
        for worker in workers:
            rss.setdefault(worker.pid, []).append((time.monotonic() - start, worker.memory_info().rss))
        await asyncio.sleep(10)


def mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


async def soak(args: argparse.Namespace, base_url: str, serve: psutil.Process, db_url: str) -> int:
    stats, stop = Stats(), asyncio.Event()
    connections: list[int] = []
    rss: dict[int, list[tuple[float, int]]] = {}
    workers = worker_processes(serve)
    start = time.monotonic()
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:
        tasks = [asyncio.create_task(client_loop(http, stats, stop)) for _ in range(args.concurrency)]
        samplers = [
            asyncio.create_task(sample_connections(db_url, connections, stop)),
            asyncio.create_task(sample_rss(workers, rss, stop, start)),
        ]
        deadline = start + args.minutes * 60
        next_report = start + 60
        while time.monotonic() < deadline:
            await asyncio.sleep(1)
            if time.monotonic() >= next_report:
                next_report += 60
                done = sum(stats.statuses.values())
                print(
                    f"  {int(time.monotonic() - start):4d}s  {done} requests, {sum(stats.errors.values())} "
                    f"errors, connections now {connections[-1] if connections else '?'}",
                    flush=True,
                )
        stop.set()
        await asyncio.gather(*tasks, *samplers)
        for worker in workers:  # the final figure
            rss.setdefault(worker.pid, []).append((time.monotonic() - start, worker.memory_info().rss))
    elapsed = time.monotonic() - start

    total = sum(stats.statuses.values())
    non_2xx = {k: v for k, v in stats.statuses.items() if not k.rsplit(" ", 1)[1].startswith("2")}
    bound = args.workers * (args.pool_size + args.max_overflow)
    latencies = sorted(stats.latencies)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    print(
        f"\n== soak: {elapsed / 60:.1f} min, serve --workers {args.workers}, {args.concurrency} "
        f"concurrent clients, pool {args.pool_size} + {args.max_overflow} per worker"
    )
    print(
        f"requests: {total} ({total / elapsed:.0f}/s); non-2xx: {sum(non_2xx.values())} {non_2xx or ''}; "
        f"client errors: {sum(stats.errors.values())} {dict(stats.errors) or ''}"
    )
    print(
        f"latency ms: p50 {pct(0.5):.1f}, p95 {pct(0.95):.1f}, p99 {pct(0.99):.1f}, "
        f"max {latencies[-1] * 1000:.0f}"
    )
    for kind, count in sorted(stats.statuses.items()):
        print(f"  {kind}: {count}")
    print(
        f"connections (pg_stat_activity, application_name = 'wiki-service', {len(connections)} samples "
        f"at 1 s): min {min(connections)}, median {statistics.median(connections):.0f}, "
        f"max {max(connections)}; "
        f"bound {args.workers} x ({args.pool_size} + {args.max_overflow}) = {bound}: "
        f"{'within' if max(connections) <= bound else 'EXCEEDED'}"
    )
    growth_ok = True
    for pid, points in rss.items():
        after_warmup = next((v for t, v in points if t >= args.warmup), points[0][1])
        end = points[-1][1]
        peak = max(v for _, v in points)
        growth = end - after_warmup
        growth_ok &= growth < 50 * 2**20
        print(
            f"RSS worker {pid}: first {mib(points[0][1])}, after warm-up {mib(after_warmup)}, "
            f"end {mib(end)} (change {growth / 2**20:+.1f} MiB), peak {mib(peak)}, {len(points)} samples"
        )

    conn = await asyncpg.connect(db_url)
    try:
        users = dict(
            await conn.fetch("SELECT id, name FROM users WHERE id = ANY($1::bigint[])", list(stats.users))
        )
        posts = dict(
            await conn.fetch("SELECT id, content FROM posts WHERE id = ANY($1::bigint[])", list(stats.posts))
        )
    finally:
        await conn.close()
    lost = sum(users.get(k) != v for k, v in stats.users.items()) + sum(
        posts.get(k) != v for k, v in stats.posts.items()
    )
    print(
        f"acknowledged writes: {len(stats.users)} users, {len(stats.posts)} posts; "
        f"missing or changed in the database: {lost}"
    )
    ok = not non_2xx and not stats.errors and max(connections) <= bound and lost == 0 and growth_ok
    print("RESULT:", "ok" if ok else "PROBLEMS (see above)")
    return 0 if ok else 1


def main() -> int:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wiki-soak-"))
    server = None
    try:
        if args.admin_url:
            admin_url = args.admin_url
        else:
            server = EmbeddedPostgres(tmp / "pg", password=PASSWORD).start()
            admin_url = server.url()
        name = f"soak_{uuid.uuid4().hex[:8]}"
        asyncio.run(create_database(admin_url, name))
        from sqlalchemy import make_url

        db_url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        env = service_env(
            DATABASE_URL=db_url,
            DB_POOL_SIZE=str(args.pool_size),
            DB_MAX_OVERFLOW=str(args.max_overflow),
            LOG_LEVEL="warning",
        )
        upgrade = run_cli("db", "upgrade", env=env)
        if upgrade.returncode != 0:
            raise SystemExit(f"db upgrade failed: {upgrade.stderr.strip()[-500:]}")
        service = Server(env, workers=args.workers)
        try:
            service.wait_healthy(60, "/readyz")
            time.sleep(1)  # every worker up
            print(
                f"soak: serve --workers {args.workers} on {service.base_url}, database {name}, "
                f"{args.minutes} min",
                flush=True,
            )
            code = asyncio.run(soak(args, service.base_url, psutil.Process(service.process.pid), db_url))
        finally:
            returncode = service.stop(timeout=60)
            errors = [line for line in service.output().splitlines() if '"level":"error"' in line]
            print(f"serve exited {returncode}; {len(errors)} error lines in its log")
            for line in errors[:3]:
                print("  " + line[:300] + " ... " + line[-700:])
        return code
    finally:
        if server is not None:
            server.stop("immediate")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
