#!/usr/bin/env python3
"""Throughput through PgBouncer (transaction pooling) against a direct connection, in one run.

    .venv/bin/python bench/pgbouncer.py            # 3 rounds x 5 s per endpoint and setup
    .venv/bin/python bench/pgbouncer.py --rounds 1 --seconds 2   # smoke

One embedded PostgreSQL, migrated and seeded; three `wiki-service serve` processes (one
worker each) against it: direct with named prepared statements (the default), direct with
DB_PREPARED_STATEMENTS=false (the cost of unnamed statements alone), and through Debian's
PgBouncer in transaction mode with DB_PREPARED_STATEMENTS=false. wrk drives each in turn,
the order rotated per round; the table has the medians over rounds and the ratio to direct.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
SERVICE_DIR = BENCH_DIR.parent / "wiki-service"
sys.path[:0] = [str(SERVICE_DIR), str(BENCH_DIR)]

from measure import WRK_DIR, cpu_model, parse_wrk  # noqa: E402

from app.embedded import EmbeddedPostgres  # noqa: E402
from tests.faults.pgbouncer import PgBouncer  # noqa: E402
from tests.support.cli import run_cli, service_env  # noqa: E402
from tests.support.server import Server  # noqa: E402

PASSWORD = "bench-pw"
DATABASE = "bench"
ENDPOINTS = {"GET /user/{id}": "get_user.lua", "mixed 80/20": "mixed.lua"}
USERS = 10_000


async def _seed(server: EmbeddedPostgres) -> None:
    import asyncpg

    conn = await asyncpg.connect(server.url(DATABASE))
    await conn.execute(f"INSERT INTO users (name) SELECT 'user ' || n FROM generate_series(1, {USERS}) n")
    await conn.execute("INSERT INTO posts (user_id, content) SELECT id, 'first post of ' || name FROM users")
    await conn.execute("ANALYZE")
    await conn.close()


def _wrk(url: str, script: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "WRK_USER_ID_MIN": "1", "WRK_USER_ID_MAX": str(USERS)}
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{args.connections}",
            f"-d{args.seconds}s",
            "--latency",
            "-s",
            str(WRK_DIR / script),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=args.seconds + 60,
    )
    return parse_wrk(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--pool-size", type=int, default=10, help="PgBouncer's default_pool_size")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="wiki-bench-pgbouncer-"))
    pg = EmbeddedPostgres(root / "data", password=PASSWORD).start()
    bouncer = None
    servers: dict[str, Server] = {}
    try:
        pg.create_database(DATABASE)
        direct = service_env(
            DB_HOST=pg.host,
            DB_PORT=str(pg.port),
            DB_USER="postgres",
            DB_PASSWORD=PASSWORD,
            DB_NAME=DATABASE,
            LOG_LEVEL="warning",
        )
        direct.pop("DATABASE_URL", None)
        upgrade = run_cli("db", "upgrade", env=direct)
        if upgrade.returncode != 0:
            raise SystemExit(upgrade.stderr.strip())
        asyncio.run(_seed(pg))
        bouncer = PgBouncer(
            host=pg.host,
            server_port=pg.port,
            database=DATABASE,
            user="postgres",
            password=PASSWORD,
            pool_size=args.pool_size,
        ).start()
        setups = {
            "direct": direct,
            "direct, unnamed statements": {**direct, "DB_PREPARED_STATEMENTS": "false"},
            "pgbouncer (transaction)": {
                **direct,
                "DB_HOST": bouncer.host,
                "DB_PORT": str(bouncer.port),
                "DB_NAME": bouncer.name,
                "DB_PREPARED_STATEMENTS": "false",
            },
        }
        servers = {name: Server(env).wait_healthy() for name, env in setups.items()}
        results: dict[tuple[str, str], list[dict]] = {}
        names = list(servers)
        for round_number in range(args.rounds):
            order = names[round_number % len(names) :] + names[: round_number % len(names)]
            for endpoint, script in ENDPOINTS.items():
                for name in order:
                    run = _wrk(servers[name].base_url, script, args)
                    if run["non2xx"] or run["socket_errors"]:
                        raise SystemExit(
                            f"{name} {endpoint}: {run['non2xx']} non-2xx, "
                            f"{run['socket_errors_detail']} {run['statuses']}"
                        )
                    results.setdefault((endpoint, name), []).append(run)
        _report(results, names, args)
    finally:
        for server in servers.values():
            server.stop()
        if bouncer is not None:
            bouncer.stop()
        pg.stop("immediate")


def _report(results: dict[tuple[str, str], list[dict]], names: list[str], args: argparse.Namespace) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BENCH_DIR
    ).stdout.strip()
    cpu = cpu_model()
    print(
        f"\ncommit {commit}; {cpu}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
        f"{args.rounds} rounds x {args.seconds} s, wrk -t1 -c{args.connections}, one worker each, "
        f"PgBouncer pool {args.pool_size}\n"
    )
    print("| endpoint | setup | req/s (median) | p50 ms (median) | p99 ms (median) | req/s vs direct |")
    print("|---|---|---:|---:|---:|---:|")
    for endpoint in ENDPOINTS:
        base = statistics.median(r["rps"] for r in results[(endpoint, "direct")])
        for name in names:
            runs = results[(endpoint, name)]
            rps = statistics.median(r["rps"] for r in runs)
            p50 = statistics.median(r["p50_ms"] for r in runs)
            p99 = statistics.median(r["p99_ms"] for r in runs)
            print(f"| {endpoint} | {name} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {rps / base:.2f} |")


if __name__ == "__main__":
    main()
