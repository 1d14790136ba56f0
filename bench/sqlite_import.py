"""pgloader against `wiki-service migrate-sqlite`, same app.db, same PostgreSQL, one run.

    .venv/bin/python bench/sqlite_import.py [--users 1000000 --posts 3000000]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Generates bench/results/app.db if missing (bench/make_sqlite.py), creates two uniquely named
databases on the server, loads the file with pgloader into one and with migrate-sqlite into the
other (one after the other), measures wall time and peak RSS of each command's whole process
tree (psutil, sampled every 50 ms), drops both databases and prints a table with the ratios.
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
    args = parser.parse_args()

    if not args.file.exists():
        subprocess.run([sys.executable, str(ROOT / "bench/make_sqlite.py"), "--users",
                        str(args.users), "--posts", str(args.posts), str(args.file)], check=True)
    tag = uuid.uuid4().hex[:8]
    pg_db, ours_db = f"bench_pgloader_{tag}", f"bench_migrate_{tag}"
    base = args.admin_url.rsplit("/", 1)[0]
    version = asyncio.run(admin(args.admin_url, "SELECT version()"))[0]
    asyncio.run(admin(args.admin_url, f'CREATE DATABASE "{pg_db}"', f'CREATE DATABASE "{ours_db}"'))
    logs = ROOT / "bench/results"
    logs.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        load_before = os.getloadavg()
        if not args.skip_pgloader:
            results["pgloader"] = run_measured(
                ["pgloader", f"sqlite://{args.file.resolve()}", f"{base}/{pg_db}"],
                dict(os.environ), logs / "pgloader.log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
        env["DATABASE_URL"] = f"{base}/{ours_db}"
        venv_cli = ROOT / ".venv/bin/wiki-service"
        results["migrate-sqlite"] = run_measured(
            [str(venv_cli), "migrate-sqlite", str(args.file.resolve()), "--no-progress",
             "--reject-report", str(logs / "rejects.jsonl")], env, logs / "migrate-sqlite.log")
        load_after = os.getloadavg()
    finally:
        asyncio.run(admin(args.admin_url, f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)',
                          f'DROP DATABASE IF EXISTS "{ours_db}" WITH (FORCE)'))

    size = args.file.stat().st_size / 1e6
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print(f"server: {base.split('@')[-1]} ({version.split(',')[0]}), shared with other users")
    print(f"source: {args.file} ({size:.0f} MB)")
    print(f"{'tool':<16} {'exit':>4} {'wall s':>8} {'peak RSS MB':>12}")
    for tool, result in results.items():
        print(f"{tool:<16} {result['rc']:>4} {result['wall']:>8.1f} {result['rss_mb']:>12.0f}")
    if "pgloader" in results:
        ours, theirs = results["migrate-sqlite"], results["pgloader"]
        print(f"ratio migrate-sqlite / pgloader: wall {ours['wall'] / theirs['wall']:.2f} "
              f"(target <= 0.50), peak RSS {ours['rss_mb']:.0f} MB (target <= 256)")
    text = (logs / "migrate-sqlite.log").read_text()
    for line in text.splitlines():
        if line.startswith(("timings:", "loaded by", "  users", "  posts")):
            print(f"migrate-sqlite {line.strip()}")
    if "pgloader" in results:
        for line in (logs / "pgloader.log").read_text().splitlines():
            if re.search(r"^\s+(users|posts|Create Indexes|Index Build Completion|Create Foreign "
                         r"Keys|Total import time)\s", line):
                print(f"pgloader {line.strip()}")


if __name__ == "__main__":
    main()
