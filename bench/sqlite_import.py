"""pgloader against `wiki-service migrate-sqlite`, same app.db, same PostgreSQL, one run.

    .venv/bin/python bench/sqlite_import.py [--users 1000000 --posts 3000000]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres] [--skip-pgloader] [--skip-full]

Generates bench/results/app.db if missing (bench/make_sqlite.py), creates a uniquely named
database per run on the server, loads the file with pgloader, with `migrate-sqlite
--search-index later` (everything pgloader does and more, but not the full-text index, which
pgloader does not build) and with plain `migrate-sqlite` (the full schema), one after the
other; measures wall time and peak RSS of each command's whole process tree (psutil, sampled
every 50 ms), drops the databases and prints a table with the ratios to pgloader.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "wiki-service"


def sample(process: subprocess.Popen) -> dict[str, float]:
    """Wait for the process; return wall seconds and the peak summed RSS of its tree."""
    peak = 0
    started = time.monotonic()
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            total = root.memory_info().rss
            for child in root.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    pass
            peak = max(peak, total)
        except psutil.Error:
            pass
        time.sleep(0.05)
    return {"wall": time.monotonic() - started, "rss_mb": peak / 2**20}


def run_measured(command: list[str], env: dict[str, str], log: Path) -> dict[str, float]:
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=SERVICE, stdin=subprocess.DEVNULL)
        result = sample(process)
    result["rc"] = process.returncode
    return result


async def admin(url: str, *statements: str) -> list:
    conn = await asyncpg.connect(url)
    try:
        return [await conn.fetchval(s) if s.startswith("SELECT") else await conn.execute(s)
                for s in statements]
    finally:
        await conn.close()


def main() -> None:
    import asyncio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--posts", type=int, default=3_000_000)
    parser.add_argument("--file", type=Path, default=ROOT / "bench/results/app.db")
    parser.add_argument("--admin-url", default=os.environ.get(
        "BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--skip-pgloader", action="store_true")
    parser.add_argument("--skip-full", action="store_true",
                        help="leave out the run that also builds the full-text index")
    args = parser.parse_args()

    if not args.file.exists():
        subprocess.run([sys.executable, str(ROOT / "bench/make_sqlite.py"), "--users",
                        str(args.users), "--posts", str(args.posts), str(args.file)], check=True)
    tag = uuid.uuid4().hex[:8]
    runs = {"pgloader": None, "migrate-sqlite --search-index later": ["--search-index", "later"],
            "migrate-sqlite": []}
    if args.skip_pgloader:
        del runs["pgloader"]
    if args.skip_full:
        del runs["migrate-sqlite"]
    databases = {tool: f"bench_{i}_{tag}" for i, tool in enumerate(runs)}
    base = args.admin_url.rsplit("/", 1)[0]
    version = asyncio.run(admin(args.admin_url, "SELECT version()"))[0]
    asyncio.run(admin(args.admin_url, *(f'CREATE DATABASE "{name}"' for name in databases.values())))
    logs = ROOT / "bench/results"
    logs.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        load_before = os.getloadavg()
        for tool, extra in runs.items():
            target = f"{base}/{databases[tool]}"
            log = logs / f"{tool.replace(' --search-index ', '-')}.log"
            if extra is None:
                results[tool] = run_measured(["pgloader", f"sqlite://{args.file.resolve()}", target],
                                             dict(os.environ), log)
            else:
                env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
                env["DATABASE_URL"] = target
                results[tool] = run_measured(
                    [str(ROOT / ".venv/bin/wiki-service"), "migrate-sqlite", str(args.file.resolve()),
                     "--no-progress", "--reject-report", str(logs / "rejects.jsonl"), *extra],
                    env, log)
            results[tool]["log"] = log
        load_after = os.getloadavg()
    finally:
        asyncio.run(admin(args.admin_url, *(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
                                            for name in databases.values())))

    size = args.file.stat().st_size / 1e6
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"server: {base.split('@')[-1]} ({version.split(',')[0]}), shared with other users")
    print(f"source: {args.file} ({size:.0f} MB)")
    theirs = results.get("pgloader")
    print(f"{'tool':<38} {'exit':>4} {'wall s':>7} {'/ pgloader':>10} {'peak RSS MB':>12}")
    for tool, result in results.items():
        ratio = f"{result['wall'] / theirs['wall']:.2f}" if theirs else "-"
        print(f"{tool:<38} {result['rc']:>4} {result['wall']:>7.1f} {ratio:>10} {result['rss_mb']:>12.0f}")
    print("targets: wall <= 0.50 of pgloader's, peak RSS <= 256 MB")
    for tool, result in results.items():
        for line in result["log"].read_text().splitlines():
            if tool != "pgloader" and line.startswith(("timings:", "loaded by", "  users", "  posts")):
                print(f"{tool}: {line.strip()}")
            if tool == "pgloader" and re.search(
                    r"^\s+(users|posts|Create Indexes|Index Build Completion|Create Foreign "
                    r"Keys|Total import time)\s", line):
                print(f"pgloader {line.strip()}")


if __name__ == "__main__":
    main()
