#!/usr/bin/env python3
"""Benchmark the service against the design's literal data path and a bare ASGI app.

One command (see bench/README.md):

    .venv/bin/python bench/run.py                 # embedded PostgreSQL, 3 rounds x 10 s
    .venv/bin/python bench/run.py --quick         # smoke: 1 round x 2 s
    .venv/bin/python bench/run.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

It starts PostgreSQL (embedded, or uses the server given by URL, in a fresh database it
creates and drops), migrates (`wiki-service db upgrade`), seeds users and posts, starts every app
in its own process on a free port with the same environment, checks that each speaks the
same API, warms up, then for each round and endpoint runs wrk against every app in turn
(rotating the order per round so machine noise hits all alike). It prints the medians over
rounds as a markdown table with the ratios service/design and service/bare, the peak RSS
per server worker, and the machine; and saves everything as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import (
    ENDPOINTS,
    RssSampler,
    machine_info,
    profile_apps,
    run_wrk,
    scan_log,
    worker_peaks,
)
from report import render, summarize
from stack import (
    ALL_APPS,
    REPO_DIR,
    RESULTS_DIR,
    App,
    BenchError,
    Database,
    app_kind,
    asyncpg_url,
    build_apps,
    check_contract,
    log,
    migrate,
    seed,
    start_apps,
    stop_apps,
)

ENDPOINT_KEYS = {
    "get": "GET /user/{id}",
    "users": "POST /users",
    "posts": "POST /posts",
    "mixed": "mixed 80/20",
}


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL"),
        help="a PostgreSQL server to use (a fresh database is created on it and "
        "dropped after); default: start an embedded PostgreSQL",
    )
    parser.add_argument(
        "--apps",
        default=None,
        help=f"comma list among {','.join(ALL_APPS)} (default: all); a variant with settings of "
        "its own, to A/B a setting in one run: service+LOG_LEVEL=warning",
    )
    parser.add_argument(
        "--endpoints", default="get,users,posts,mixed", help="comma list among get,users,posts,mixed"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (whole)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per app and endpoint")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--wrk-timeout", type=int, default=10, help="wrk --timeout, seconds")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds of rest between wrk runs")
    parser.add_argument("--seed-users", type=int, default=10_000)
    parser.add_argument("--seed-posts", type=int, default=20_000)
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument(
        "--profile",
        default="",
        help="comma list of apps to py-spy under wrk after the measured rounds "
        "(raw stacks and summaries in bench/results/profile-*/)",
    )
    parser.add_argument("--profile-duration", type=int, default=10)
    parser.add_argument("--profile-rate", type=int, default=100, help="py-spy samples/s")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 1 round x 2 s, 1 s warm-up")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 if any run saw a non-2xx response or a socket error, or an app "
        "logged an error line "
        "(correctness only: never a timing)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and logs after the run")
    parser.add_argument("--output", type=Path, default=None, help="JSON result path (default bench/results/)")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2, 1
    args.apps = [a.strip() for a in (args.apps or ",".join(ALL_APPS)).split(",") if a.strip()]
    args.profile = [a.strip() for a in args.profile.split(",") if a.strip()]
    unknown = [a for a in args.apps + args.profile if app_kind(a) not in ALL_APPS]
    if unknown:
        parser.error(f"unknown app(s) {unknown}; choose among {','.join(ALL_APPS)}")
    try:
        args.endpoints = [ENDPOINT_KEYS[e.strip()] for e in args.endpoints.split(",") if e.strip()]
    except KeyError as exc:
        parser.error(f"unknown endpoint {exc}; choose among {','.join(ENDPOINT_KEYS)}")
    return args


def benchmark(args) -> int:
    if not shutil.which(args.wrk) and not Path(args.wrk).exists():
        raise BenchError("wrk is not installed (apt-get install -y wrk)")
    try:
        import asyncpg  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as exc:
        raise BenchError(
            f"missing Python package: {exc.name} (pip install -e './wiki-service[embedded]')"
        ) from exc

    started = dt.datetime.now(dt.UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    logdir = Path(tempfile.mkdtemp(prefix=f"wiki-bench-logs-{stamp}-"))
    db = Database(args.database_url, args.keep)
    apps: list[App] = []
    sampler: RssSampler | None = None
    ok = False
    try:
        db.start()
        env = {**os.environ, "DATABASE_URL": asyncpg_url(db.url), "PYTHONUNBUFFERED": "1"}
        for key in ("DB_HOST", "DB_PORT", "DB_USER", "DB_PASSWORD", "DB_NAME"):
            env.pop(key, None)  # one source of truth for where the database is: DATABASE_URL
        migrate(env)
        id_range = seed(db, args.seed_users, args.seed_posts)
        log(f"seeded {args.seed_users} users (ids {id_range[0]}..{id_range[1]}) and {args.seed_posts} posts")

        apps = build_apps(args.apps, logdir)
        cap = sum({"design": 30, "bare": 30, "service": 30, "service-w2": 60}[app_kind(a.name)] for a in apps)
        if db.max_connections and cap > db.max_connections - 10:
            log(
                f"warning: the apps may open up to ~{cap} connections, the server allows "
                f"{db.max_connections}; use fewer --apps or the embedded server"
            )
        sampler = RssSampler(apps)
        sampler.start()
        start_apps(apps, env, args.startup_timeout)
        for app in apps:
            check_contract(app, id_range[1])
        log(f"apps up and speaking the same API: {', '.join(a.name for a in apps)}")

        for endpoint in args.endpoints:
            for app in apps:
                log(f"warm-up {endpoint} on {app.name} ({args.warmup:g} s)")
                run_wrk(app, ENDPOINTS[endpoint], args.warmup, args, id_range, db)

        runs = []
        total = args.rounds * len(args.endpoints) * len(apps)
        for rnd in range(args.rounds):
            shift = rnd % len(apps)
            order = apps[shift:] + apps[:shift]
            for endpoint in args.endpoints:
                for app in order:
                    time.sleep(args.pause)
                    result = run_wrk(app, ENDPOINTS[endpoint], args.duration, args, id_range, db)
                    result.update(round=rnd, endpoint=endpoint, app=app.name)
                    runs.append(result)
                    log(
                        f"[{len(runs)}/{total}] round {rnd + 1} {endpoint:<15} {app.name:<10} "
                        f"{result['rps']:>9,.0f} req/s  p50 {result['p50_ms']:.2f} ms  "
                        f"p99 {result['p99_ms']:.2f} ms  non-2xx {result['non2xx']}  "
                        f"sock err {result['socket_errors']}  "
                        f"cpu {result['cpu_us_per_req'] or 0:.0f} us/req  cores: "
                        + " ".join(f"{k} {v:.2f}" for k, v in result["cores"].items())
                    )
        sampler.stop()

        profiles = {}
        if args.profile:
            profiles = profile_apps(apps, args, id_range, RESULTS_DIR / f"profile-{stamp}")

        machine = machine_info(db, args)
        summary = summarize(runs, [a.name for a in apps], args.endpoints)
        memory = {
            a.name: {
                "workers": worker_peaks(a),
                "log": scan_log(a),
                "processes": {
                    str(pid): {
                        "peak_rss": rss,
                        "cmdline": a.cmdlines.get(pid, ""),
                        "had_children": a.children.get(pid, False),
                    }
                    for pid, rss in a.peak_rss.items()
                },
            }
            for a in apps
        }
        meta = {
            "threads": args.threads,
            "connections": args.connections,
            "duration": args.duration,
            "rounds": args.rounds,
            "seed_users": args.seed_users,
            "seed_posts": args.seed_posts,
            "warmup": args.warmup,
            "apps": args.apps,
            "quick": args.quick,
            "started": started.isoformat(),
            "git": _git_head(),
        }
        others = [r["cores"]["other"] + r["cores"]["steal"] for r in runs]
        meta["noise_cores"] = {"median": statistics.median(others), "max": max(others)}
        table = render(summary, memory, machine, meta)
        print(table, flush=True)
        for text in profiles.values():
            print("\n" + text, flush=True)

        out = args.output or RESULTS_DIR / f"bench-{stamp}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "meta": meta,
                    "machine": machine,
                    "summary": summary,
                    "memory": memory,
                    "runs": runs,
                    "table": table,
                    "profiles": profiles,
                },
                indent=2,
            )
        )
        log(f"saved {out}")
        ok = True
        errors = sum(r["non2xx"] + r["socket_errors"] for r in runs)
        logged = sum(m["log"]["errors"] for m in memory.values())
        if args.strict and (errors or logged):
            print(
                f"bench: error: {errors} non-2xx responses or socket errors, {logged} error "
                f"lines in the apps' logs (--strict)",
                file=sys.stderr,
            )
            return 2
        return 0
    finally:
        if sampler is not None:
            sampler.stop()
        stop_apps(apps)
        db.stop()
        if ok and not args.keep:
            shutil.rmtree(logdir, ignore_errors=True)
        elif apps:
            log(f"kept app logs in {logdir}")


def _git_head() -> str:
    result = subprocess.run(
        ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM -> KeyboardInterrupt so the finally blocks stop the apps and PostgreSQL.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return benchmark(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
