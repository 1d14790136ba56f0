"""What migrate-sqlite tells: the progress, the reject report and the summary.

The reject report has one JSON object per line for every row that did not land. Each line
has the table, the id, the reason(s), the original values and their SQLite storage classes.
Text that is valid UTF-8 is a JSON string (JSON escapes NUL and control characters);
anything else (invalid UTF-8, blobs) is shown as {"hex": ..., "storage": ...}. Conflicts also
carry the row PostgreSQL already has, under "target".
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO


class RejectReport:
    """Written as rows are rejected; rewritten from scratch on every run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts: dict[str, int] = {"users": 0, "posts": 0}
        self.conflicts: dict[str, int] = {"users": 0, "posts": 0}
        self._file: TextIO = path.open("w", encoding="utf-8")

    def write(self, entry: dict[str, Any], *, conflict: bool = False) -> None:
        table = entry["table"]
        (self.conflicts if conflict else self.counts)[table] += 1
        self._file.write(json.dumps(entry, ensure_ascii=True) + "\n")

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + sum(self.conflicts.values())

    def close(self) -> None:
        self._file.close()


@dataclass
class TableStats:
    source: int = 0  # rows in the SQLite table
    good: int = 0  # rows that can land (checked)
    inserted: int = 0
    already: int = 0  # identical rows that were already in PostgreSQL
    checksum: Any = field(default_factory=hashlib.sha256)
    target_rows: int | None = None
    target_checksum: str | None = None

    @property
    def landed(self) -> int:
        return self.inserted + self.already


class Progress:
    """tqdm (rows, rows/s) on a terminal; plain lines on stdout, at most one a second, otherwise."""

    def __init__(self, mode: bool | None) -> None:
        self.tty = sys.stderr.isatty() if mode is None else mode
        self.bar: Any = None
        self.table = ""
        self.total = 0
        self.done = 0
        self.started = self.last = 0.0

    def start(self, table: str, total: int) -> None:
        self.table, self.total, self.done = table, total, 0
        self.started = self.last = time.monotonic()
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, desc=table, unit=" rows", unit_scale=True, dynamic_ncols=True, file=sys.stderr
            )

    def advance(self, rows: int) -> None:
        self.done += rows
        if self.bar is not None:
            self.bar.update(rows)
            return
        now = time.monotonic()
        if now - self.last >= 1.0 or self.done == rows or self.done >= self.total:
            self.last = now
            rate = self.done / max(now - self.started, 1e-6)
            print(f"{self.table}: {self.done}/{self.total} rows read, {rate:,.0f} rows/s", flush=True)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def print_summary(
    report: RejectReport,
    stats: dict[str, TableStats],
    *,
    dry_run: bool,
    fast: bool,
    sequences: dict[str, int | None],
    search_index_left: str | None,
    timings: dict[str, float],
) -> int:
    """Print what landed and how the read-back compares with the source; return the exit code:
    0 every row landed, 2 some were rejected or conflicted, 3 the read-back does not match."""
    print(
        "dry run: nothing was written to PostgreSQL"
        if dry_run
        else f"loaded by the {'fast (empty target)' if fast else 'staged'} path"
    )
    for table, table_stats in stats.items():
        rejected, conflicts = report.counts[table], report.conflicts[table]
        if dry_run:
            print(
                f"{table}: {table_stats.source} in source, {table_stats.good} would land, {rejected} rejected"
            )
        else:
            print(
                f"{table}: {table_stats.source} in source, {table_stats.landed} landed "
                f"({table_stats.inserted} new, {table_stats.already} already there), "
                f"{rejected} rejected, {conflicts} conflicts"
            )
    mismatch = False
    print("verification (rows that should have landed; sha256 of the id-ordered COPY binary tuples):")
    print(
        f"  {'table':<6} {'source rows':>11} {'target rows':>11}  {'source checksum':<16} "
        f"{'target checksum':<16} result"
    )
    for table, table_stats in stats.items():
        expected = table_stats.good - report.conflicts[table]
        source_sum = table_stats.checksum.hexdigest()[:16]
        if dry_run:
            print(f"  {table:<6} {expected:>11} {'-':>11}  {source_sum:<16} {'-':<16} dry run")
            continue
        ok = (
            expected == table_stats.target_rows
            and table_stats.checksum.hexdigest() == table_stats.target_checksum
        )
        mismatch |= not ok
        print(
            f"  {table:<6} {expected:>11} {table_stats.target_rows:>11}  {source_sum:<16} "
            f"{(table_stats.target_checksum or '')[:16]:<16} {'match' if ok else 'MISMATCH'}"
        )
    if not dry_run:
        print(
            "sequences continue after: "
            + ", ".join(f"{table} {highest}" for table, highest in sequences.items())
        )
        if search_index_left:
            print(
                f"search index {search_index_left} not built and posts.search not filled "
                f"(--search-index later): search answers 503 until `wiki-service db "
                f"build-indexes` fills and builds them while the service runs"
            )
    if timings:
        print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"reject report: {report.path} ({report.total} rows)")
    if mismatch:
        print("error: the read-back does not match the source", file=sys.stderr)
        return 3
    if report.total:
        print(f"error: {report.total} rows did not land; see {report.path}", file=sys.stderr)
        return 2
    return 0
