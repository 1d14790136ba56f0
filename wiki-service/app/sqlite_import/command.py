"""`wiki-service migrate-sqlite SOURCE`: the orchestration, the progress and the summary.

Exit codes: 0 every row landed (and the read-back matches); 2 some rows were rejected or
conflicted (see the reject report); 3 the read-back does not match; 1 the command could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import multiprocessing
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.config import describe, fail, get_settings
from app.schema import SEARCH_INDEX, SECONDARY_INDEXES, upgrade_to_head
from app.sqlite_import import load
from app.sqlite_import.report import RejectReport
from app.sqlite_import.source import (
    COPY_COLUMNS,
    COPY_HEADER,
    COPY_TRAILER,
    TABLES,
    Batch,
    SourceError,
    count_rows,
    highest_id,
    id_ranges,
    open_source,
    reader_main,
)

# Two: with COPY binary, PostgreSQL's side of the load needs less than one core, and one reader
# could not keep it busy (measured: the parent waited 8 of the 12 s of COPY for batches).
READERS = 2
DEFAULT_BATCH_SIZE = 10_000  # 50k rows per batch: same speed, the reader peaked at 93 MB instead of 34


class ImportFailed(Exception):
    """A one-line reason the run stopped."""


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

            self.bar = tqdm(total=total, desc=table, unit=" rows", unit_scale=True,
                            dynamic_ncols=True, file=sys.stderr)

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


class Readers:
    """The child processes that read and check the source, and their pipes.

    Each reads its share of the id ranges of users, then of posts; the batches are taken range
    by range, in id order. spawn, not fork: a child imports only source.py, not the app this
    process loaded, so they do not all hold (and count) the same hundred megabytes. They start
    first, so that their start-up overlaps the connection check and the schema migration.
    """

    def __init__(self, source: str, batch_size: int, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Any] = []
        self.processes: list[Any] = []
        for number in range(count):
            pipe, child = context.Pipe()
            process = context.Process(target=reader_main, daemon=True,
                                      args=(source, batch_size, child))
            process.start()
            child.close()
            self.pipes.append(pipe)
            self.processes.append(process)

    def stop(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(5)


@dataclass
class Plan:
    counts: dict[str, int]  # rows per table
    highest: dict[str, int | None]  # the highest integer id per table
    post_ranges: list[list]  # each reader's share of the posts (source.id_ranges)


def make_plan(source: str, batch_size: int, pipes: list[Any]) -> Plan:
    """Count the rows of the source, send each reader its share of the users, and plan the posts."""
    db = open_source(source)
    try:
        users = count_rows(db, "users")
        for pipe, ranges in zip(pipes, id_ranges(db, "users", users, batch_size, len(pipes))):
            pipe.send(("users", ranges))  # before counting the posts: the readers are waiting
        posts = count_rows(db, "posts")
        return Plan({"users": users, "posts": posts},
                    {table: highest_id(db, table) for table in TABLES},
                    id_ranges(db, "posts", posts, batch_size, len(pipes)))
    finally:
        db.close()


async def readable(fd: int) -> None:
    """Wait in the event loop until the file descriptor has something to read (or EOF)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


class Migration:
    def __init__(self, args: argparse.Namespace, dsn: str, report: RejectReport,
                 readers: Readers, planned: Future) -> None:
        self.args = args
        self.pipes = readers.pipes
        self.planned = planned  # make_plan()'s result, computed in a thread meanwhile
        self.dsn = dsn
        self.report = report
        self.stats = {table: TableStats() for table in TABLES}
        self.progress = Progress(args.progress)
        self.fast = False
        self.timings: dict[str, float] = {}

    # -- the reader processes ------------------------------------------------------------
    async def plan(self) -> Plan:
        return await asyncio.wrap_future(self.planned)

    async def receive(self, reader: int) -> Any:
        pipe = self.pipes[reader]
        try:
            if not pipe.poll():
                await readable(pipe.fileno())
            # A message has begun: its sender holds all of it, so this is a copy, not a wait
            # (cheaper than handing each message to a thread, which this process used to do).
            message = pipe.recv()
        except (EOFError, OSError):
            raise ImportFailed("the source reader stopped unexpectedly") from None
        if isinstance(message, tuple) and message[0] == "error":
            raise ImportFailed(message[1])
        return message

    async def batches(self, table: str):
        """The readers' batches for `table` in id order, range by range round the readers, one
        received ahead while the caller works."""
        counts = (await self.plan()).counts
        self.stats[table].source = counts[table]
        self.progress.start(table, counts[table])
        active = list(range(len(self.pipes)))
        current = 0
        pending = asyncio.ensure_future(self.receive(current))
        try:
            while True:
                message = await pending
                if isinstance(message, tuple):  # ("range", lo) or ("done", table)
                    if message[0] == "done":
                        active.remove(current)
                        if not active:
                            return
                    current = min((r for r in active if r > current), default=active[0])
                    pending = asyncio.ensure_future(self.receive(current))
                    continue
                pending = asyncio.ensure_future(self.receive(current))
                self.take(message)
                yield message
        finally:
            if not pending.done():
                pending.cancel()
            self.progress.finish()

    async def start_posts(self, refused: dict[int, str]) -> None:
        """Send each reader its posts message: the users the target refused, the users that
        landed in the other readers' ranges, and its share of the posts."""
        landed = []
        for number in range(len(self.pipes)):
            kind, ids = await self.receive(number)
            assert kind == "landed", kind
            landed.append(ids)
        ranges = (await self.plan()).post_ranges
        for number, pipe in enumerate(self.pipes):
            others = landed[:number] + landed[number + 1:]
            pipe.send(("posts", refused, others, ranges[number]))

    def take(self, batch: Batch) -> None:
        stats = self.stats[batch.table]
        stats.good += batch.good
        for reject in batch.rejects:
            self.report.write(reject.as_json())
        self.progress.advance(batch.rows)

    # -- the run -------------------------------------------------------------------------
    async def run(self) -> None:
        if self.args.dry_run:
            await self.dry_run()
            return
        conn = await load.connect(self.dsn)
        try:
            # The secondary indexes this run builds: the search index only with --search-index now.
            indexes = [name for name in SECONDARY_INDEXES
                       if name != SEARCH_INDEX or self.args.search_index == "now"]
            missing = [part for part in await load.missing_schema_parts(conn)
                       if part in (*indexes, load.FOREIGN_KEY)]
            if missing:  # a previous run died between its commit and its index builds
                print(f"rebuilding after an interrupted run: {', '.join(missing)}", flush=True)
                await load.build_schema_parts(self.dsn, missing)
            # First, so that rows the service creates meanwhile take ids above every source id,
            # even a rejected row's, which a rerun after a fix to the source then lands.
            self.sequences = await load.set_sequences(conn, (await self.plan()).highest)
            started = time.monotonic()
            transaction = conn.transaction()
            await transaction.start()
            restore = await load.begin_fast_load(conn, fill_search=self.args.search_index == "now")
            self.fast = restore is not None
            if restore is not None:
                await self.fast_load(conn)
                key_started = time.monotonic()
                await load.finish_fast_load(conn, restore)
                self.timings["primary keys"] = time.monotonic() - key_started
                await transaction.commit()
                self.timings["copy and keys"] = time.monotonic() - started
                started = time.monotonic()
                took, _ = await asyncio.gather(
                    load.build_schema_parts(self.dsn, [*indexes, load.FOREIGN_KEY], analyze=True),
                    self.verify(self.dsn),
                )
                self.timings["indexes, key and read-back (in parallel)"] = time.monotonic() - started
                self.timings.update(took)
            else:
                await transaction.rollback()
                await self.staged_load(conn)
                self.timings["staged load"] = time.monotonic() - started
                started = time.monotonic()
                await self.verify_on(conn)
                self.timings["read-back"] = time.monotonic() - started
        finally:
            await conn.close()

    async def dry_run(self) -> None:
        async for batch in self.batches("users"):
            self.stats["users"].checksum.update(batch.tuples)
        await self.start_posts({})
        async for batch in self.batches("posts"):
            self.stats["posts"].checksum.update(batch.tuples)

    async def fast_load(self, conn: Any) -> None:
        for table in TABLES:
            stats = self.stats[table]

            async def stream(table: str = table, stats: TableStats = stats):
                yield COPY_HEADER
                async for batch in self.batches(table):
                    if batch.tuples:
                        stats.checksum.update(batch.tuples)
                        stats.inserted += batch.good
                        yield batch.tuples
                yield COPY_TRAILER

            await conn.copy_to_table(table, source=stream(), columns=COPY_COLUMNS[table],
                                     format="binary", freeze=True)
            if table == "users":  # an empty target refuses nobody
                await self.start_posts({})

    async def staged_load(self, conn: Any) -> None:
        staging = load.Staging(conn)
        await staging.create()
        for table in TABLES:
            stats = self.stats[table]
            conflicting: dict[int, str] = {}
            async for batch in self.batches(table):
                if not batch.tuples:
                    continue
                inserted, conflicts = await staging.load(table, batch.tuples)
                tuples = batch.tuples
                if conflicts:
                    tuples = load.drop_tuples(tuples, {row["id"] for row in conflicts})
                    for row in conflicts:
                        self.report.write({
                            "table": table, "id": row["id"],
                            "reason": "conflict: PostgreSQL already has a different row with "
                                      "this id; it was not overwritten",
                            "values": load.record_values(row, "source", table),
                            "target": load.record_values(row, "target", table),
                        }, conflict=True)
                        if table == "users":
                            conflicting[row["id"]] = (
                                "it conflicts with a different user already in PostgreSQL")
                stats.checksum.update(tuples)
                stats.inserted += inserted
                stats.already += batch.good - inserted - len(conflicts)
            if table == "users":
                await self.start_posts(conflicting)

    async def verify(self, dsn: str) -> None:
        conn = await load.connect(dsn)
        try:
            await self.verify_on(conn)
        finally:
            await conn.close()

    async def verify_on(self, conn: Any) -> None:
        for table, stats in self.stats.items():
            stats.target_rows, stats.target_checksum = await load.read_back(conn, table, self.fast)

    # -- the summary ---------------------------------------------------------------------
    def summary(self) -> int:
        report = self.report
        dry = self.args.dry_run
        print("dry run: nothing was written to PostgreSQL" if dry else
              f"loaded by the {'fast (empty target)' if self.fast else 'staged'} path")
        for table, stats in self.stats.items():
            rejected, conflicts = report.counts[table], report.conflicts[table]
            if dry:
                print(f"{table}: {stats.source} in source, {stats.good} would land, "
                      f"{rejected} rejected")
            else:
                print(f"{table}: {stats.source} in source, {stats.landed} landed "
                      f"({stats.inserted} new, {stats.already} already there), "
                      f"{rejected} rejected, {conflicts} conflicts")
        mismatch = False
        print("verification (rows that should have landed; sha256 of the id-ordered COPY binary tuples):")
        print(f"  {'table':<6} {'source rows':>11} {'target rows':>11}  {'source checksum':<16} "
              f"{'target checksum':<16} result")
        for table, stats in self.stats.items():
            expected = stats.good - self.report.conflicts[table]
            source_sum = stats.checksum.hexdigest()[:16]
            if dry:
                print(f"  {table:<6} {expected:>11} {'-':>11}  {source_sum:<16} {'-':<16} dry run")
                continue
            ok = expected == stats.target_rows and stats.checksum.hexdigest() == stats.target_checksum
            mismatch |= not ok
            print(f"  {table:<6} {expected:>11} {stats.target_rows:>11}  {source_sum:<16} "
                  f"{(stats.target_checksum or '')[:16]:<16} {'match' if ok else 'MISMATCH'}")
        if not dry:
            print("sequences continue after: " + ", ".join(
                f"{table} {highest}" for table, highest in self.sequences.items()))
        if not dry and self.args.search_index == "later":
            print(f"search index {SEARCH_INDEX} not built and posts.search not filled (--search-index later): search answers "
                  f"503 until `wiki-service db build-indexes` fills and builds them while the service runs")
        if self.timings:
            print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.timings.items()))
        print(f"reject report: {report.path} ({report.total} rows)")
        if mismatch:
            print("error: the read-back does not match the source", file=sys.stderr)
            return 3
        if report.total:
            print(f"error: {report.total} rows did not land; see {report.path}", file=sys.stderr)
            return 2
        return 0


def run(args: argparse.Namespace) -> int:
    """The command; returns the exit code. Every failure is one line on stderr."""
    args.batch_size = getattr(args, "batch_size", None) or DEFAULT_BATCH_SIZE
    args.progress = getattr(args, "progress", None)
    args.search_index = getattr(args, "search_index", "now")
    try:
        open_source(args.source).close()
    except SourceError as error:
        fail(str(error))
    settings = get_settings()
    where = settings.where
    readers = Readers(args.source, args.batch_size, READERS)
    planned = ThreadPoolExecutor(1).submit(make_plan, args.source, args.batch_size, readers.pipes)
    dsn = settings.asyncpg_dsn

    async def probe() -> str:
        conn = await load.connect(dsn)
        try:
            return await conn.fetchval("SHOW server_encoding")
        finally:
            await conn.close()

    try:
        encoding = asyncio.run(probe())
    except Exception as error:  # noqa: BLE001 - any failure to connect is one line
        fail(f"cannot connect to PostgreSQL at {where}: {describe(error)}")
    if encoding != "UTF8":
        fail(f"the database {where} has encoding {encoding}; it must be UTF8")
    if not args.dry_run:
        try:
            upgrade_to_head()
        except Exception as error:  # noqa: BLE001
            fail(f"migration of the schema of {where} failed: {describe(error)}")

    path = Path(args.reject_report or f"{args.source}.rejects.jsonl")
    try:
        report = RejectReport(path)
    except OSError as error:
        fail(f"cannot write the reject report {path}: {error.strerror}")
    migration = Migration(args, dsn, report, readers, planned)
    try:
        asyncio.run(migration.run())
    except ImportFailed as error:
        fail(f"{error} (target {where})")
    except Exception as error:  # noqa: BLE001 - e.g. the connection dropped mid-load
        fail(f"migrating into {where} failed: {describe(error)}")
    finally:
        readers.stop()
        report.close()
    code = migration.summary()
    # Nothing is left to clean up: spare the interpreter's exit from garbage-collecting every
    # object (0.2-0.4 s, measured, of tearing down SQLAlchemy, pydantic and Alembic).
    gc.freeze()
    return code
