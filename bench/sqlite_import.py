"""pgloader against `wiki-service migrate-sqlite`, same app.db, same PostgreSQL, one run.

    .venv/bin/python bench/sqlite_import.py [--users 1000000 --posts 3000000]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres] [--rounds 3]
        [--skip-pgloader] [--skip-full]

Generates bench/results/app.db if missing (bench/make_sqlite.py). Each run gets a fresh
database on the server (dropped after it). Rounds of pgloader and `migrate-sqlite
--search-index later` (everything pgloader does and more, but not the full-text index, which
pgloader does not build) alternate; then plain `migrate-sqlite` (the full schema) runs once.
Wall time and peak RSS of each command's whole process tree (psutil, sampled every 50 ms);
prints each round, the medians and the ratios to pgloader's median.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "wiki-service"
sys.path.insert(0, str(SERVICE))
from measure import cpu_model  # noqa: E402 - bench/ is on the path as the script's folder

from app.embedded import create_database, drop_database  # noqa: E402


def sample(process: subprocess.Popen) -> dict[str, float]:
    """Wait for the process; return wall seconds and the peak summed RSS of its tree."""
    peak = 0
    started = time.monotonic()
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            total = root.memory_info().rss
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # a child that just ended
                    total += child.memory_info().rss
            peak = max(peak, total)
        except psutil.Error:
            pass
        time.sleep(0.05)
    return {"wall": time.monotonic() - started, "rss_mb": peak / 2**20}


def run_measured(command: list[str], env: dict[str, str], log: Path) -> dict[str, float]:
    with log.open("w") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=SERVICE, stdin=subprocess.DEVNULL
        )
        result = sample(process)
    result["rc"] = process.returncode
    return result


async def admin(url: str, *statements: str) -> list:
    conn = await asyncpg.connect(url)
    try:
        return [
            await conn.fetchval(s) if s.startswith("SELECT") else await conn.execute(s) for s in statements
        ]
    finally:
        await conn.close()


def main() -> None:
    import asyncio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--posts", type=int, default=3_000_000)
    parser.add_argument("--file", type=Path, default=ROOT / "bench/results/app.db")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of pgloader and the like-for-like run (default 3)"
    )
    parser.add_argument("--skip-pgloader", action="store_true")
    parser.add_argument(
        "--skip-full", action="store_true", help="leave out the run that also builds the full-text index"
    )
    args = parser.parse_args()

    if not args.file.exists():
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench/make_sqlite.py"),
                "--users",
                str(args.users),
                "--posts",
                str(args.posts),
                str(args.file),
            ],
            check=True,
        )
    tools = {"pgloader": None, "migrate-sqlite --search-index later": ["--search-index", "later"]}
    if args.skip_pgloader:
        del tools["pgloader"]
    # pgloader and the like-for-like run alternate, round after round; the full schema once.
    plan = [(n, tool) for n in range(1, args.rounds + 1) for tool in tools]
    if not args.skip_full:
        tools["migrate-sqlite"] = []
        plan.append((1, "migrate-sqlite"))
    base = args.admin_url.rsplit("/", 1)[0]
    version = asyncio.run(admin(args.admin_url, "SELECT version()"))[0]
    logs = ROOT / "bench/results"
    logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {tool: [] for tool in tools}
    load_before = os.getloadavg()
    for round_number, tool in plan:
        database = f"bench_{uuid.uuid4().hex[:8]}"
        target = f"{base}/{database}"
        log = logs / f"{tool.replace(' --search-index ', '-')}-{round_number}.log"
        asyncio.run(create_database(args.admin_url, database))
        try:
            if tools[tool] is None:
                result = run_measured(
                    ["pgloader", f"sqlite://{args.file.resolve()}", target], dict(os.environ), log
                )
            else:
                env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
                env["DATABASE_URL"] = target
                result = run_measured(
                    [
                        str(ROOT / ".venv/bin/wiki-service"),
                        "migrate-sqlite",
                        str(args.file.resolve()),
                        "--no-progress",
                        "--reject-report",
                        str(logs / "rejects.jsonl"),
                        *tools[tool],
                    ],
                    env,
                    log,
                )
        finally:
            asyncio.run(drop_database(args.admin_url, database))
        result["log"] = log
        results[tool].append(result)
        print(
            f"round {round_number}: {tool}: exit {result['rc']}, {result['wall']:.1f} s, "
            f"{result['rss_mb']:.0f} MB",
            file=sys.stderr,
            flush=True,
        )
    load_after = os.getloadavg()

    size = args.file.stat().st_size / 1e6
    cpu = cpu_model()
    print(
        f"machine: {os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    print(f"server: {base.split('@')[-1]} ({version.split(',')[0]}), shared with other users")
    print(
        f"source: {args.file} ({size:.0f} MB); {args.rounds} rounds, pgloader and the "
        f"like-for-like run alternating"
    )
    pgloader = results.get("pgloader")
    print(
        f"{'tool':<38} {'exit':>6} {'wall s per round':>22} {'median':>7} {'/ pgloader':>10} "
        f"{'peak RSS MB':>12}"
    )
    for tool, runs in results.items():
        walls = [run["wall"] for run in runs]
        ratio = (
            f"{statistics.median(walls) / statistics.median(r['wall'] for r in pgloader):.2f}"
            if pgloader
            else "-"
        )
        print(
            f"{tool:<38} {','.join(str(run['rc']) for run in runs):>6} "
            f"{' '.join(f'{w:.1f}' for w in walls):>22} {statistics.median(walls):>7.1f} "
            f"{ratio:>10} {max(run['rss_mb'] for run in runs):>12.0f}"
        )
    if pgloader and "migrate-sqlite --search-index later" in results:
        per_round = [
            ours["wall"] / theirs["wall"]
            for ours, theirs in zip(results["migrate-sqlite --search-index later"], pgloader, strict=False)
        ]
        print("like-for-like / pgloader, per round: " + " ".join(f"{ratio:.2f}" for ratio in per_round))
    print("targets: wall <= 0.50 of pgloader's, peak RSS <= 256 MB")
    for tool, runs in results.items():
        for line in runs[-1]["log"].read_text().splitlines():
            if tool != "pgloader" and line.startswith(("timings:", "loaded by", "  users", "  posts")):
                print(f"{tool}: {line.strip()}")
            if tool == "pgloader" and re.search(
                r"^\s+(users|posts|Create Indexes|Index Build Completion|Create Foreign "
                r"Keys|Total import time)\s",
                line,
            ):
                print(f"pgloader {line.strip()}")


if __name__ == "__main__":
    main()
