"""Fault-test fixtures: a PostgreSQL of their own, which they stop, restart and starve.

Never the machine's shared server, and never the suite's server either: the fault tests start
an EmbeddedPostgres in a temporary folder, with a password full of special characters, create
a database on it, migrate it with `wiki-service db upgrade`, and point `wiki-service serve`
subprocesses at it through the DB_* variables.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from app.embedded import EmbeddedPostgres
from tests.conftest import Server, run_cli, service_env

# Every character that breaks a naively built URL, a shell line or a SQL literal.
FAULT_PASSWORD = "p@ss:/#%'\" w0rd\\;$"
SECRET_FORMS = (FAULT_PASSWORD, urllib.parse.quote(FAULT_PASSWORD), urllib.parse.quote_plus(FAULT_PASSWORD))


@dataclass
class FaultDatabase:
    """A migrated database on the private server, and how to reach it."""

    server: EmbeddedPostgres
    name: str

    @property
    def url(self) -> str:
        """Superuser libpq URL of this database (for checks and locks from the test)."""
        return self.server.url(self.name)

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of a service process: DB_* pointing here, raw password included."""
        env = service_env(
            DB_HOST=self.server.host,
            DB_PORT=str(self.server.port),
            DB_USER="postgres",
            DB_PASSWORD=FAULT_PASSWORD,
            DB_NAME=self.name,
            LOG_LEVEL="info",
        )
        env.pop("DATABASE_URL", None)  # the suite's own database; DB_* must win here
        env.update(overrides)
        return env

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.url)


@pytest.fixture(scope="session")
def private_pg() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL only the fault tests use; they may stop it, so each test restarts it."""
    root = Path(tempfile.mkdtemp(prefix="wiki-faults-pg-"))
    server = EmbeddedPostgres(root / "data", password=FAULT_PASSWORD).start()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


async def _create(server: EmbeddedPostgres, name: str) -> None:
    conn = await asyncpg.connect(server.url())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


_counter = iter(range(1, 10_000))


@pytest.fixture
def fault_db(private_pg: EmbeddedPostgres) -> FaultDatabase:
    """A new database on the private server, migrated by `wiki-service db upgrade`."""
    if not private_pg.is_running():  # a previous test left it stopped
        private_pg.start()
    database = FaultDatabase(private_pg, f"faults_{next(_counter)}")
    asyncio.run(_create(private_pg, database.name))
    result = run_cli("db", "upgrade", env=database.env())
    assert result.returncode == 0, result.stderr
    for secret in SECRET_FORMS:
        assert secret not in result.stdout + result.stderr
    return database


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    """Factory: `wiki-service serve` subprocesses (healthy when returned), stopped at the end."""
    servers: list[Server] = []

    def start(env: dict[str, str], *, workers: int = 1, port: int | None = None,
              extra_args: tuple[str, ...] = ()) -> Server:
        server = Server(env, workers=workers, port=port, extra_args=extra_args)
        servers.append(server)
        return server.wait_healthy()

    yield start
    for server in servers:
        server.stop()
        # Shown by pytest when the test failed: what went wrong inside the service.
        errors = [line for line in server.log_path.read_text(errors="replace").splitlines() if '"level":"error"' in line]
        if errors:
            print(f"--- {server.base_url} logged {len(errors)} errors; the first:\n" + "\n".join(errors[:3]))
