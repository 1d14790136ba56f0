"""The command's side of the reader processes: start them, deal them the id ranges, and take
their batches in id order."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from app.sqlite_import.messages import (
    Batch,
    FromReader,
    IdRange,
    Landed,
    RangeDone,
    ReaderFailed,
    ReadPosts,
    ReadUsers,
    TableDone,
)
from app.sqlite_import.reader import reader_main
from app.sqlite_import.source import (
    TABLES,
    count_rows,
    highest_id,
    id_ranges,
    open_source,
)

# Two: with COPY binary, PostgreSQL's side of the load needs less than one core, and one reader
# could not keep it busy (measured: the parent waited 8 of the 12 s of COPY for batches).
READERS = 2


class ImportFailed(Exception):
    """A one-line reason the run stopped."""


@dataclass
class Plan:
    counts: dict[str, int]  # rows per table
    highest: dict[str, int | None]  # the highest integer id per table
    post_ranges: list[list[IdRange]]  # each reader's share of the posts (source.id_ranges)


def make_plan(source: str, batch_size: int, pipes: list[Connection]) -> Plan:
    """Count the rows of the source, send each reader its share of the users, and plan the posts."""
    db = open_source(source)
    try:
        users = count_rows(db, "users")
        for pipe, ranges in zip(pipes, id_ranges(db, "users", users, batch_size, len(pipes)), strict=False):
            pipe.send(ReadUsers(ranges))  # before counting the posts: the readers are waiting
        posts = count_rows(db, "posts")
        return Plan(
            {"users": users, "posts": posts},
            {table: highest_id(db, table) for table in TABLES},
            id_ranges(db, "posts", posts, batch_size, len(pipes)),
        )
    finally:
        db.close()


async def readable(fd: int) -> None:
    """Wait in the event loop until the file descriptor has something to read (or EOF)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


class ReaderPool:
    """The reader processes (reader.py) and their pipes.

    They start first, so that their start-up overlaps the connection check and the schema
    migration; meanwhile a thread counts the source, deals the readers their users and plans
    the posts.
    """

    def __init__(self, source: str, batch_size: int, count: int = READERS) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[BaseProcess] = []
        for _ in range(count):
            pipe, child = context.Pipe()
            process = context.Process(target=reader_main, daemon=True, args=(source, batch_size, child))
            process.start()
            child.close()
            self.pipes.append(pipe)
            self.processes.append(process)
        self._planned = ThreadPoolExecutor(1).submit(make_plan, source, batch_size, self.pipes)

    async def plan(self) -> Plan:
        return await asyncio.wrap_future(self._planned)

    async def receive(self, reader: int) -> FromReader:
        pipe = self.pipes[reader]
        try:
            if not pipe.poll():
                await readable(pipe.fileno())
            # A message has begun: its sender holds all of it, so this is a copy, not a wait
            # (cheaper than handing each message to a thread, which this process used to do).
            message: FromReader = pipe.recv()
        except (EOFError, OSError):
            raise ImportFailed("the source reader stopped unexpectedly") from None
        if isinstance(message, ReaderFailed):
            raise ImportFailed(message.reason)
        return message

    async def batches(self, table: str) -> AsyncIterator[Batch]:
        """The readers' batches of `table` in id order, range by range round the readers, one
        received ahead while the caller works."""
        active = list(range(len(self.pipes)))
        current = 0
        pending = asyncio.ensure_future(self.receive(current))
        try:
            while True:
                message = await pending
                if isinstance(message, Batch):
                    pending = asyncio.ensure_future(self.receive(current))
                    yield message
                    continue
                assert isinstance(message, (RangeDone, TableDone)), message
                if isinstance(message, TableDone):
                    active.remove(current)
                    if not active:
                        return
                current = min((r for r in active if r > current), default=active[0])
                pending = asyncio.ensure_future(self.receive(current))
        finally:
            if not pending.done():
                pending.cancel()

    async def start_posts(self, refused: dict[int, str]) -> None:
        """Send each reader its share of the posts, with the users the target refused and the
        users that landed in the other readers' ranges."""
        landed = []
        for number in range(len(self.pipes)):
            message = await self.receive(number)
            assert isinstance(message, Landed), message
            landed.append(message.users)
        ranges = (await self.plan()).post_ranges
        for number, pipe in enumerate(self.pipes):
            others = landed[:number] + landed[number + 1 :]
            pipe.send(ReadPosts(refused, others, ranges[number]))

    def stop(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(5)
