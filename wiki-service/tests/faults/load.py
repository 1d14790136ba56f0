"""Concurrent writers spread over several service processes, recording everything they saw."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

REQUEST_TIMEOUT = 60.0  # far above any bound the tests assert: a hang shows up as a latency


@dataclass
class Outcome:
    """One request: where it went, when, how long it took and what came back."""

    base_url: str
    method: str
    path: str
    started: float  # time.monotonic()
    latency: float
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    error: str | None = None
    retry_after: str | None = None
    body: Any = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def __str__(self) -> str:
        answer = self.status if self.status is not None else self.error
        return f"{self.method} {self.base_url}{self.path} -> {answer} in {self.latency:.2f}s"


@dataclass
class Load:
    """Writers that create users and posts, round-robin over base_urls, and read back."""

    base_urls: list[str]
    writers: int = 4
    readers: int = 0  # lists, cursors and searches over what the writers wrote
    pause: float = 0.01
    outcomes: list[Outcome] = field(default_factory=list)
    users: dict[int, str] = field(default_factory=dict)  # acknowledged (2xx) writes
    posts: dict[int, tuple[int, str]] = field(default_factory=dict)
    duplicate_ids: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    async def __aenter__(self) -> Load:
        self._clients = [httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT) for url in self.base_urls]
        self._tasks = [asyncio.create_task(self._writer(n)) for n in range(self.writers)]
        self._tasks += [asyncio.create_task(self._reader(n)) for n in range(self.readers)]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        for client in self._clients:
            await client.aclose()

    async def request(self, client: httpx.AsyncClient, method: str, path: str, **kwargs) -> Outcome:
        started = time.monotonic()
        status = error = retry_after = body = None
        try:
            response = await client.request(method, path, **kwargs)
        except httpx.HTTPError as failure:
            response, error = None, type(failure).__name__
        latency = time.monotonic() - started
        if response is not None:
            status, retry_after = response.status_code, response.headers.get("retry-after")
            if response.headers.get("content-type", "").startswith("application/json"):
                body = response.json()
        outcome = Outcome(
            str(client.base_url).rstrip("/"), method, path, started, latency, status, error, retry_after, body
        )
        self.outcomes.append(outcome)
        return outcome

    async def _writer(self, number: int) -> None:
        # Each writer alternates between the processes, starting at a different one.
        shift = number % len(self._clients)
        clients = itertools.cycle(self._clients[shift:] + self._clients[:shift])
        my_users: list[int] = []
        while not self._stop.is_set():
            name = f"writer {number} 'x\" {uuid.uuid4().hex}"
            outcome = await self.request(next(clients), "POST", "/users", json={"name": name})
            if outcome.ok:
                self._ack(self.users, outcome.body["id"], name, outcome)
                my_users.append(outcome.body["id"])
            if my_users:
                user_id = my_users[-1]
                content = f"post by {user_id}: {uuid.uuid4().hex} ünïcode ✓"
                outcome = await self.request(
                    next(clients), "POST", "/posts", json={"user_id": user_id, "content": content}
                )
                if outcome.ok:
                    body = outcome.body
                    self._ack(self.posts, body["post_id"], (body["user_id"], content), outcome)
                    await self.request(next(clients), "GET", f"/posts/{body['post_id']}")
                await self.request(next(clients), "GET", f"/users/{user_id}/posts?limit=5")
            await asyncio.sleep(self.pause)

    async def _reader(self, number: int) -> None:
        clients = itertools.cycle(self._clients[number % len(self._clients) :] + self._clients)
        while not self._stop.is_set():
            for path in ("/users?limit=3", "/posts?limit=3"):
                outcome = await self.request(next(clients), "GET", path)
                if outcome.ok and outcome.body["next_cursor"]:  # the next page, from another process
                    await self.request(next(clients), "GET", f"{path}&cursor={outcome.body['next_cursor']}")
            if self.posts:
                post_id, (user_id, content) = next(reversed(self.posts.items()))
                word = content.split()[3]  # the post's random hex word
                await self.request(next(clients), "GET", f"/posts?q={word}&limit=5")
                await self.request(next(clients), "GET", f"/user/{user_id}")
            await asyncio.sleep(self.pause)

    def _ack(self, table: dict, key: int, value: object, outcome: Outcome) -> None:
        if key in table:
            self.duplicate_ids.append(f"{outcome.path} id {key} acknowledged twice")
        table[key] = value

    def between(self, start: float, end: float) -> list[Outcome]:
        """Requests that started in [start, end)."""
        return [o for o in self.outcomes if start <= o.started < end]


async def assert_acknowledged_writes_stored(load: Load, db_url: str) -> None:
    """Every 2xx write is in the database with its content; ids unique; no orphan posts."""
    assert not load.duplicate_ids, load.duplicate_ids[:5]
    conn = await asyncpg.connect(db_url)
    try:
        users = dict(
            await conn.fetch("SELECT id, name FROM users WHERE id = ANY($1::bigint[])", list(load.users))
        )
        posts = {
            row[0]: (row[1], row[2])
            for row in await conn.fetch(
                "SELECT id, user_id, content FROM posts WHERE id = ANY($1::bigint[])", list(load.posts)
            )
        }
        orphans = await conn.fetchval(
            "SELECT count(*) FROM posts p LEFT JOIN users u ON u.id = p.user_id WHERE u.id IS NULL"
        )
        duplicates = await conn.fetchval(
            "SELECT (SELECT count(*) - count(DISTINCT id) FROM users)"
            " + (SELECT count(*) - count(DISTINCT id) FROM posts)"
        )
    finally:
        await conn.close()
    missing_users = {k: v for k, v in load.users.items() if users.get(k) != v}
    missing_posts = {k: v for k, v in load.posts.items() if posts.get(k) != v}
    assert not missing_users, f"acknowledged users lost or changed: {list(missing_users.items())[:5]}"
    assert not missing_posts, f"acknowledged posts lost or changed: {list(missing_posts.items())[:5]}"
    assert orphans == 0
    assert duplicates == 0


@dataclass
class Probe:
    """GETs one path on every process at a steady pace (liveness / readiness probes)."""

    base_urls: list[str]
    path: str
    interval: float = 0.2
    outcomes: list[Outcome] = field(default_factory=list)

    async def __aenter__(self) -> Probe:
        self._load = Load(self.base_urls, writers=0, outcomes=self.outcomes)
        self._clients = [httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT) for url in self.base_urls]
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        while not self._stop.is_set():
            await asyncio.gather(*(self._load.request(c, "GET", self.path) for c in self._clients))
            await asyncio.sleep(self.interval)

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        await self._task
        for client in self._clients:
            await client.aclose()

    def between(self, start: float, end: float) -> list[Outcome]:
        return [o for o in self.outcomes if start <= o.started < end]


def describe(outcomes: list[Outcome], limit: int = 10) -> str:
    return "\n".join(str(o) for o in outcomes[:limit])


async def wait_for_blocked(db_url: str, count: int, timeout: float = 30.0) -> None:
    """Wait until `count` service sessions are waiting for a lock inside PostgreSQL."""
    conn = await asyncpg.connect(db_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'wiki-service' AND wait_event_type = 'Lock'"
            )
            if waiting >= count:
                return
            assert time.monotonic() < deadline, f"only {waiting} of {count} requests blocked"
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


class TableLock:
    """`LOCK TABLE ... IN ACCESS EXCLUSIVE MODE` held in an open transaction until release()."""

    def __init__(self, db_url: str, table: str = "users") -> None:
        self.db_url, self.table = db_url, table

    async def __aenter__(self) -> TableLock:
        self.conn = await asyncpg.connect(self.db_url)
        self.transaction = self.conn.transaction()
        await self.transaction.start()
        await self.conn.execute(f"LOCK TABLE {self.table} IN ACCESS EXCLUSIVE MODE")
        self.released = False
        return self

    async def release(self) -> None:
        if not self.released:
            self.released = True
            await self.transaction.rollback()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.release()
        await self.conn.close()
