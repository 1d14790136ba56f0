"""A corpus that looks like real text, with planted probe terms, as an old-service app.db.

    .venv/bin/python bench/search_corpus.py --posts 3000000 bench/results/search-3000000.db

Posts of 8-60 words drawn from a Zipf-like vocabulary of 50,000 made-up words (the rank-r word
has weight 1/r), ids and created_time rising together, one user per 3 posts. The probe terms are
words the vocabulary cannot produce (it has no two consonants in a row), planted at known rates:

| term | where |
| --- | --- |
| probecommon | 10% of posts, everywhere |
| proberare | 1 post in 20,000 |
| probeabsent | nowhere |
| probeold | 20% of the oldest half, nowhere in the newest half |
| probepaira, probepairb | each in 5% of posts; together, as "probepaira probepairb", in 1 in 100,000 |

User 1 wrote 5% of the posts (the prolific user of the `user_id` probes).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_sqlite import SCHEMA

VOCABULARY = 50_000
PROLIFIC_USER = 1
PROBES = {
    "common": 0.10,
    "rare": 1 / 20_000,
    "old": 0.20,  # of the oldest half
    "pair": 0.05,  # each of the two words
    "together": 1 / 100_000,
}
CONSONANTS = "bdfgklmnstvz"
VOWELS = "aeiou"


def vocabulary() -> list[str]:
    """50,000 distinct words of consonant-vowel syllables; rank 0 is the most frequent."""
    syllables = [c + v for c in CONSONANTS for v in VOWELS]  # 60
    words = []
    for number in range(VOCABULARY):
        parts = []
        number += len(syllables)  # at least two syllables
        while number:
            number, digit = divmod(number, len(syllables))
            parts.append(syllables[digit])
        words.append("".join(parts))
    return words


def posts(count: int, seed: int) -> list[str]:
    """The contents of posts 1..count, in id order."""
    rng = np.random.default_rng(seed)
    words = np.array(vocabulary(), dtype=object)
    weights = 1.0 / np.arange(1, VOCABULARY + 1)
    lengths = rng.integers(8, 61, size=count)
    drawn = rng.choice(VOCABULARY, size=int(lengths.sum()), p=weights / weights.sum())
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    text = words[drawn]

    common = rng.random(count) < PROBES["common"]
    rare = rng.random(count) < PROBES["rare"]
    old = (rng.random(count) < PROBES["old"]) & (np.arange(1, count + 1) <= count // 2)
    pair = rng.random(count)
    pair_a = pair < PROBES["pair"]
    pair_b = (pair >= PROBES["pair"]) & (pair < 2 * PROBES["pair"])  # never with pair_a
    together = rng.random(count) < PROBES["together"]
    contents = []
    for i in range(count):
        post = list(text[bounds[i] : bounds[i + 1]])
        position = int(rng.integers(0, len(post)))
        extra = [
            name
            for name, planted in (
                ("probecommon", common),
                ("proberare", rare),
                ("probeold", old),
                ("probepaira", pair_a),
                ("probepairb", pair_b),
            )
            if planted[i]
        ]
        if together[i]:
            extra.append("probepaira probepairb")
        post[position:position] = extra
        contents.append(" ".join(post).capitalize() + ".")
    return contents


def write(out: Path, contents: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed + 1)
    count = len(contents)
    users = max(count // 3, 1)
    authors = rng.integers(1, users + 1, size=count)
    authors[rng.random(count) < 0.05] = PROLIFIC_USER
    base = datetime(2015, 1, 1)
    step = 10 * 365 * 86400 / count  # ten years of posts, in id order

    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    db = sqlite3.connect(out, isolation_level=None)
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.executescript(SCHEMA)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO users (id, name, created_time) VALUES (?, ?, ?)",
        ((i, f"user {i}", base.strftime("%Y-%m-%d %H:%M:%S")) for i in range(1, users + 1)),
    )
    db.executemany(
        "INSERT INTO posts (id, content, user_id, created_time) VALUES (?, ?, ?, ?)",
        (
            (
                i + 1,
                contents[i],
                int(authors[i]),
                (base + timedelta(seconds=int(i * step))).strftime("%Y-%m-%d %H:%M:%S"),
            )
            for i in range(count)
        ),
    )
    db.execute("COMMIT")
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--posts", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    write(args.out, posts(args.posts, args.seed), args.seed)
    print(
        f"{args.out}: {args.posts} posts, {args.out.stat().st_size / 1e6:.0f} MB "
        f"in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
