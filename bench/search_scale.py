"""Search latency as the posts grow, per query shape; and POST /users beside worst-case searches.

    .venv/bin/python bench/search_scale.py [--sizes 300000,3000000]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres] [--runs 15] [--workers 2]
        [--seconds 10] [--searchers 16]

For each size: the corpus of bench/search_corpus.py (generated once into bench/results/), a
fresh database, `wiki-service db upgrade`, `wiki-service migrate-sqlite` (the full schema),
`wiki-service db build-indexes` (which seals the search bitmaps of every full bucket), then
`wiki-service serve`; every size's service stays up. Every shape is asked --runs times
over HTTP, one request at a time, the sizes interleaved request by request (their order rotated
every round) so that other load on the machine falls on each size alike; each answer must
be 200 and equal, id for id, to the plain SQL definition (asked with index scans off, on the
stored posts.search, which the test suite proves equal to to_tsvector(content)).
The relevance shapes are compared with the ranked definition over the service's default
1,000 candidates. Prints, per shape, the plan that answered (from search_plans_total), median
and max at each size and the growth of the median from the smallest size to the largest.

Then, on the largest size: wrk's POST /users for --seconds alone, and again while --searchers
clients ask the slowest shape in a loop (honouring Retry-After on 503); prints both rates,
their ratio and the searches' statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

BENCH_DIR = Path(__file__).resolve().parent
SERVICE_DIR = BENCH_DIR.parent / "wiki-service"
RESULTS_DIR = BENCH_DIR / "results"
sys.path[:0] = [str(SERVICE_DIR), str(BENCH_DIR)]
from measure import parse_wrk  # noqa: E402 - the harness's wrk parsing, one definition

from app.embedded import create_database, drop_database  # noqa: E402
from tests.support.cli import run_cli, service_env  # noqa: E402
from tests.support.server import Server  # noqa: E402

QUERIES = {
    "common": "probecommon",
    "rare": "proberare",
    "absent": "probeabsent",
    "old only": "probeold",
    "rare pair": "probepaira probepairb",
    "phrase": '"probepaira probepairb"',
    "negation": "probecommon -probepaira",
    "or": "proberare or probeabsent",
}
# order=relevance over the service's default SEARCH_RANK_CANDIDATES: the most candidates to
# gather (a common word) and an intersection (the rare pair).
RANKED = {"common, by relevance": "probecommon", "rare pair, by relevance": "probepaira probepairb"}
RANK_CANDIDATES = 1000
PROLIFIC_USER = 1  # wrote 5% of the posts (bench/search_corpus.py)
PAGE = 20
DEFINITION = (
    "SELECT id FROM posts WHERE id < $1 AND ($3::bigint IS NULL OR user_id = $3) "
    "AND search @@ websearch_to_tsquery('simple', $2) ORDER BY id DESC LIMIT $4"
)
RANKED_DEFINITION = (
    f"SELECT id FROM ({DEFINITION.replace('SELECT id', 'SELECT id, search')}) candidates "
    "ORDER BY ts_rank(search, websearch_to_tsquery('simple', $2), 1) DESC, id DESC LIMIT $5"
)


def cursor_for(post_id: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{post_id}".encode()).decode().rstrip("=")


def shapes(posts: int) -> dict[str, dict]:
    """name -> the query's parameters: each query alone, for the prolific user, below mid-table."""
    out = {}
    for name, q in QUERIES.items():
        out[name] = {"q": q}
        out[f"{name} + user"] = {"q": q, "user_id": PROLIFIC_USER}
        out[f"{name} + cursor"] = {"q": q, "cursor": cursor_for(posts // 2)}
    for name, q in RANKED.items():
        out[name] = {"q": q, "order": "relevance"}
    return out


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`wiki-service ARGS`; a failure ends the benchmark with the command's last words."""
    result = run_cli(*args, env=env, timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"wiki-service {args[0]} failed: {(result.stderr or result.stdout)[-500:]}")
    return result


async def definition(url: str, params: dict) -> list[int]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET enable_indexscan = off; SET enable_bitmapscan = off")
        before = 2**63 - 1
        if "cursor" in params:
            raw = params["cursor"] + "=" * (-len(params["cursor"]) % 4)
            before = int(base64.urlsafe_b64decode(raw).decode().split(":")[1])
        if params.get("order") == "relevance":
            rows = await conn.fetch(
                RANKED_DEFINITION, before, params["q"], params.get("user_id"), RANK_CANDIDATES, PAGE
            )
        else:
            rows = await conn.fetch(DEFINITION, before, params["q"], params.get("user_id"), PAGE)
        return [row["id"] for row in rows]
    finally:
        await conn.close()


def plans(base: str) -> dict[str, float]:
    counts = {}
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith("search_plans_total{"):
            counts[line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
    return counts


def measure(sizes: dict[int, tuple[str, str]], runs: int) -> dict[int, dict[str, dict]]:
    """Every shape at every size: sizes maps posts -> (service base URL, database URL).

    The sizes are interleaved request by request (their order rotated every round), so that
    other load on the machine falls on every size alike and the growth ratios hold.
    """
    clients = {size: httpx.Client(base_url=base, timeout=60) for size, (base, _url) in sizes.items()}
    names = list(shapes(min(sizes)))
    expected, used, timings = {}, {}, {}
    try:
        for size, (base, url) in sizes.items():
            for name, params in shapes(size).items():
                expected[size, name] = asyncio.run(definition(url, params))
                before = plans(base)
                ask(clients[size], name, params, expected[size, name])  # warms caches, gates, pools
                after = plans(base)
                used[size, name] = "+".join(sorted(p for p in after if after[p] != before.get(p, 0)))
                timings[size, name] = []
        order = list(sizes)
        for run in range(runs):
            for name in names:
                for size in order[run % len(order) :] + order[: run % len(order)]:
                    params = shapes(size)[name]
                    timings[size, name].append(ask(clients[size], name, params, expected[size, name]))
    finally:
        for client in clients.values():
            client.close()
    return {
        size: {
            name: {
                "median": statistics.median(timings[size, name]),
                "max": max(timings[size, name]),
                "plan": used[size, name],
                "found": len(expected[size, name]),
            }
            for name in names
        }
        for size in sizes
    }


def ask(http: httpx.Client, name: str, params: dict, expected: list[int]) -> float:
    """One search over HTTP, checked against the definition; its latency in ms."""
    started = time.perf_counter()
    response = http.get("/posts", params=params)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise SystemExit(f"{name}: {response.status_code} {response.text[:200]}")
    got = [item["post_id"] for item in response.json()["items"]]
    if got != expected:
        raise SystemExit(f"{name}: wrong answer {got[:5]}... expected {expected[:5]}...")
    return elapsed


def load_under_searches(
    base: str, query: dict, seconds: int, searchers: int, user_range: tuple[int, int]
) -> dict:
    env = {**os.environ, "WRK_USER_ID_MIN": str(user_range[0]), "WRK_USER_ID_MAX": str(user_range[1])}
    argv = [
        "wrk",
        "-t2",
        "-c32",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(BENCH_DIR / "wrk" / "post_users.lua"),
        base,
    ]
    alone = parse_wrk(subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout)
    statuses: dict[int, int] = {}
    stop = threading.Event()

    def search_loop() -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            while not stop.is_set():
                response = http.get("/posts", params=query)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 503:
                    stop.wait(float(response.headers.get("Retry-After", "1")))

    threads = [threading.Thread(target=search_loop) for _ in range(searchers)]
    for thread in threads:
        thread.start()
    time.sleep(1)  # every searcher in flight
    try:
        beside = parse_wrk(subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    return {"alone": alone, "beside": beside, "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="300000,3000000")
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--searchers", type=int, default=16)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BENCH_DIR
    ).stdout.strip()
    print(
        f"search_scale at {commit} on {platform.node()}, {os.cpu_count()} cores, "
        f"{args.runs} runs a shape, serve --workers {args.workers}",
        flush=True,
    )

    services: dict[int, Server] = {}
    urls: dict[int, str] = {}
    databases: list[str] = []
    bulkhead = None
    try:
        for size in sizes:
            corpus = RESULTS_DIR / f"search-{size}.db"
            if not corpus.exists():
                subprocess.run(
                    [sys.executable, str(BENCH_DIR / "search_corpus.py"), "--posts", str(size), str(corpus)],
                    check=True,
                )
            name = f"search_scale_{size}_{uuid.uuid4().hex[:8]}"
            asyncio.run(create_database(args.admin_url, name))
            databases.append(name)
            url = args.admin_url.rsplit("/", 1)[0] + f"/{name}"
            env = service_env(DATABASE_URL=url)
            cli("db", "upgrade", env=env)
            started = time.monotonic()
            loaded = cli("migrate-sqlite", str(corpus), "--reject-report", os.devnull, env=env)
            timings = [line for line in loaded.stdout.splitlines() if line.startswith("timings:")]
            print(
                f"{size:,} posts: migrate-sqlite {time.monotonic() - started:.1f} s; {timings[0]}", flush=True
            )
            started = time.monotonic()
            sealed = cli("db", "build-indexes", env=env).stdout.strip().splitlines()[-1]
            took = time.monotonic() - started
            print(f"{size:,} posts: db build-indexes {took:.1f} s; {sealed}", flush=True)
            services[size] = Server(env, workers=args.workers).wait_healthy(60, path="/readyz")
            urls[size] = url
        results = measure(
            {size: (service.base_url, urls[size]) for size, service in services.items()}, args.runs
        )
        largest = sizes[-1]
        for size in sizes[:-1]:  # the bulkhead runs on the largest size alone
            services.pop(size).stop()
        slowest = max(results[largest], key=lambda shape: results[largest][shape]["median"])
        bulkhead = (
            slowest,
            load_under_searches(
                services[largest].base_url,
                shapes(largest)[slowest],
                args.seconds,
                args.searchers,
                (1, largest // 3),
            ),
        )
    finally:
        for service in services.values():
            service.stop()
        asyncio.run(drop_database(args.admin_url, *databases))

    small, large = sizes[0], sizes[-1]
    print(
        f"\n| shape | plan at {large:,} | median {small:,} | max {small:,} | median {large:,} "
        f"| max {large:,} | growth |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for shape in results[large]:
        a, b = results[small][shape], results[large][shape]
        print(
            f"| {shape} | {b['plan']} | {a['median']:.1f} ms | {a['max']:.1f} ms | "
            f"{b['median']:.1f} ms | {b['max']:.1f} ms | {b['median'] / a['median']:.2f} |"
        )
    if bulkhead:
        shape, figures = bulkhead
        alone, beside = figures["alone"]["rps"], figures["beside"]["rps"]
        print(
            f"\nPOST /users at {large:,} posts, wrk -t2 -c32 {args.seconds} s: alone {alone:.0f} req/s, "
            f"beside {args.searchers} clients searching '{shape}' {beside:.0f} req/s "
            f"({beside / alone:.2f}x); p99 {figures['alone']['p99_ms']:.1f} -> "
            f"{figures['beside']['p99_ms']:.1f} ms; POST non-2xx {figures['beside']['non2xx']}; "
            f"search statuses {dict(sorted(figures['statuses'].items()))}"
        )


if __name__ == "__main__":
    main()
