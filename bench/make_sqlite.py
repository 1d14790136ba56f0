"""Generate an old-service app.db (SQLite, the schema SQLAlchemy created) for benchmarks.

    python bench/make_sqlite.py --users 1000000 --posts 3000000 bench/results/app.db

Clean rows only (the test suite covers dirty ones): naive UTC CURRENT_TIMESTAMP text, posts of
about 150 bytes of words. Written with executemany in big transactions, journal and syncs off.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

SCHEMA = """
CREATE TABLE users (
    id INTEGER NOT NULL,
    name VARCHAR NOT NULL,
    created_time DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
    PRIMARY KEY (id)
);
CREATE TABLE posts (
    id INTEGER NOT NULL,
    content TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    created_time DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(user_id) REFERENCES users (id)
);
"""

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "her",
    "an",
    "which",
    "were",
    "are",
    "this",
    "be",
    "history",
    "city",
    "river",
    "music",
    "science",
    "war",
    "film",
    "album",
    "team",
    "season",
    "species",
    "church",
    "school",
    "station",
    "village",
    "population",
    "university",
    "government",
    "language",
    "game",
    "series",
    "county",
    "district",
    "born",
    "world",
    "national",
    "first",
    "new",
    "year",
    "years",
    "also",
    "after",
    "united",
    "states",
    "century",
    "region",
    "known",
    "called",
    "part",
    "wiki",
    "article",
    "edit",
    "page",
    "source",
    "cite",
    "reference",
    "category",
    "portal",
    "talk",
    "user",
    "revision",
]


def texts(rng: random.Random, count: int, mean: int) -> list[str]:
    """`count` texts of about `mean` bytes, from a pool (fast) with a unique suffix each."""
    pool = []
    for _ in range(4096):
        words: list[str] = []
        size = 0
        target = rng.randint(mean // 2, mean * 3 // 2)
        while size < target:
            word = rng.choice(WORDS)
            words.append(word)
            size += len(word) + 1
        pool.append(" ".join(words).capitalize() + ".")
    return pool


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--posts", type=int, default=3_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists():
        args.out.unlink()
    started = time.perf_counter()
    db = sqlite3.connect(args.out, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.executescript(SCHEMA)

    base = datetime(2015, 1, 1)
    span = 10 * 365 * 86400
    names = texts(rng, 4096, 14)
    contents = texts(rng, 4096, 140)

    def stamp(i: int) -> str:
        return (base + timedelta(seconds=(i * 7919) % span)).strftime("%Y-%m-%d %H:%M:%S")

    for start in range(1, args.users + 1, args.batch):
        stop = min(start + args.batch, args.users + 1)
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO users (id, name, created_time) VALUES (?, ?, ?)",
            ((i, f"{names[i % 4096][:180]} {i}", stamp(i)) for i in range(start, stop)),
        )
        db.execute("COMMIT")
    for start in range(1, args.posts + 1, args.batch):
        stop = min(start + args.batch, args.posts + 1)
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO posts (id, content, user_id, created_time) VALUES (?, ?, ?, ?)",
            (
                (i, f"{contents[i % 4096]} #{i}", rng.randint(1, args.users), stamp(i * 3))
                for i in range(start, stop)
            ),
        )
        db.execute("COMMIT")
    db.close()
    size = args.out.stat().st_size / 1e6
    print(
        f"{args.out}: {args.users} users, {args.posts} posts, {size:.0f} MB "
        f"in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
