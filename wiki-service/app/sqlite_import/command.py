"""`wiki-service migrate-sqlite SOURCE`: the options and the run, from the schema check to the
read-back.

Exit codes: 0 every row landed (and the read-back matches); 2 some rows were rejected or
conflicted (see the reject report); 3 the read-back does not match; 1 the command could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import asyncpg

from app.config import describe, fail, get_settings
from app.schema import FOREIGN_KEY, SEARCH_INDEX, SECONDARY_INDEXES, upgrade_to_head
from app.sqlite_import import copy_binary, load
from app.sqlite_import.messages import Batch
from app.sqlite_import.pool import ImportFailed, ReaderPool
from app.sqlite_import.report import Progress, RejectReport, TableStats, print_summary
from app.sqlite_import.source import TABLES, SourceError, open_source

DEFAULT_BATCH_SIZE = 10_000  # 50k rows per batch: same speed, the reader peaked at 93 MB instead of 34


@dataclass(frozen=True)
class Options:
    source: str
    reject_report: Path
    dry_run: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    search_index: Literal["now", "later"] = "now"
    progress: bool | None = None  # None: a bar when stderr is a terminal

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        """The options of `wiki-service migrate-sqlite` (app/cli.py)."""
        return cls(
            source=args.source,
            reject_report=Path(args.reject_report or f"{args.source}.rejects.jsonl"),
            dry_run=args.dry_run,
            batch_size=args.batch_size or DEFAULT_BATCH_SIZE,
            search_index=args.search_index,
            progress=args.progress,
        )


@dataclass
class Migration:
    options: Options
    dsn: str
    report: RejectReport
    readers: ReaderPool
    stats: dict[str, TableStats] = field(default_factory=lambda: {t: TableStats() for t in TABLES})
    fast: bool = False  # the fast path (an empty target) was taken
    sequences: dict[str, int | None] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    progress: Progress = field(init=False)

    def __post_init__(self) -> None:
        self.progress = Progress(self.options.progress)

    async def batches(self, table: str) -> AsyncIterator[Batch]:
        """The source's batches of `table`, in id order, counted, reported and shown."""
        stats = self.stats[table]
        stats.source = (await self.readers.plan()).counts[table]
        self.progress.start(table, stats.source)
        try:
            async for batch in self.readers.batches(table):
                stats.good += batch.good
                for reject in batch.rejects:
                    self.report.write(reject.as_json())
                self.progress.advance(batch.rows)
                yield batch
        finally:
            self.progress.finish()

    async def run(self) -> None:
        if self.options.dry_run:
            await self.dry_run()
            return
        conn = await load.connect(self.dsn)
        try:
            # The secondary indexes this run builds: the search index only with --search-index now.
            indexes = [
                name
                for name in SECONDARY_INDEXES
                if name != SEARCH_INDEX or self.options.search_index == "now"
            ]
            missing = [
                part for part in await load.missing_schema_parts(conn) if part in (*indexes, FOREIGN_KEY)
            ]
            if missing:  # a previous run died between its commit and its index builds
                print(f"rebuilding after an interrupted run: {', '.join(missing)}", flush=True)
                await load.build_schema_parts(self.dsn, missing)
            # First, so that rows the service creates meanwhile take ids above every source id,
            # even a rejected row's, which a rerun after a fix to the source then lands.
            self.sequences = await load.set_sequences(conn, (await self.readers.plan()).highest)
            started = time.monotonic()
            transaction = conn.transaction()
            await transaction.start()
            restore = await load.begin_fast_load(conn, fill_search=self.options.search_index == "now")
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
                    load.build_schema_parts(self.dsn, [*indexes, FOREIGN_KEY], analyze=True),
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
        await self.readers.start_posts({})
        async for batch in self.batches("posts"):
            self.stats["posts"].checksum.update(batch.tuples)

    async def fast_load(self, conn: asyncpg.Connection) -> None:
        for table in TABLES:
            stats = self.stats[table]

            async def stream(table: str = table, stats: TableStats = stats) -> AsyncIterator[bytes]:
                yield copy_binary.HEADER
                async for batch in self.batches(table):
                    if batch.tuples:
                        stats.checksum.update(batch.tuples)
                        stats.inserted += batch.good
                        yield batch.tuples
                yield copy_binary.TRAILER

            await conn.copy_to_table(
                table, source=stream(), columns=copy_binary.COLUMNS[table], format="binary", freeze=True
            )
            if table == "users":  # an empty target refuses nobody
                await self.readers.start_posts({})

    async def staged_load(self, conn: asyncpg.Connection) -> None:
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
                    tuples = copy_binary.drop_tuples(tuples, {row["id"] for row in conflicts})
                    for row in conflicts:
                        self.report.write(
                            {
                                "table": table,
                                "id": row["id"],
                                "reason": "conflict: PostgreSQL already has a different row with "
                                "this id; it was not overwritten",
                                "values": load.record_values(row, "source", table),
                                "target": load.record_values(row, "target", table),
                            },
                            conflict=True,
                        )
                        if table == "users":
                            conflicting[row["id"]] = (
                                "it conflicts with a different user already in PostgreSQL"
                            )
                stats.checksum.update(tuples)
                stats.inserted += inserted
                stats.already += batch.good - inserted - len(conflicts)
            if table == "users":
                await self.readers.start_posts(conflicting)

    async def verify(self, dsn: str) -> None:
        conn = await load.connect(dsn)
        try:
            await self.verify_on(conn)
        finally:
            await conn.close()

    async def verify_on(self, conn: asyncpg.Connection) -> None:
        for table, stats in self.stats.items():
            stats.target_rows, stats.target_checksum = await load.read_back(conn, table, self.fast)

    def summary(self) -> int:
        return print_summary(
            self.report,
            self.stats,
            dry_run=self.options.dry_run,
            fast=self.fast,
            sequences=self.sequences,
            timings=self.timings,
            search_index_left=SEARCH_INDEX if self.options.search_index == "later" else None,
        )


def run(options: Options) -> int:
    """The command; returns the exit code. Every failure is one line on stderr."""
    try:
        open_source(options.source).close()
    except SourceError as error:
        fail(str(error))
    settings = get_settings()
    where = settings.where
    readers = ReaderPool(options.source, options.batch_size)
    dsn = settings.asyncpg_dsn

    async def probe() -> str:
        conn = await load.connect(dsn)
        try:
            encoding: str = await conn.fetchval("SHOW server_encoding")
            return encoding
        finally:
            await conn.close()

    try:
        encoding = asyncio.run(probe())
    except Exception as error:
        fail(f"cannot connect to PostgreSQL at {where}: {describe(error)}")
    if encoding != "UTF8":
        fail(f"the database {where} has encoding {encoding}; it must be UTF8")
    if not options.dry_run:
        try:
            upgrade_to_head()
        except Exception as error:
            fail(f"migration of the schema of {where} failed: {describe(error)}")

    try:
        report = RejectReport(options.reject_report)
    except OSError as error:
        fail(f"cannot write the reject report {options.reject_report}: {error.strerror}")
    migration = Migration(options, dsn, report, readers)
    try:
        asyncio.run(migration.run())
    except ImportFailed as error:
        fail(f"{error} (target {where})")
    except Exception as error:
        fail(f"migrating into {where} failed: {describe(error)}")
    finally:
        readers.stop()
        report.close()
    code = migration.summary()
    # Nothing is left to clean up: spare the interpreter's exit from garbage-collecting every
    # object (0.2-0.4 s, measured, of tearing down SQLAlchemy, pydantic and Alembic).
    gc.freeze()
    return code
