"""Fault-test fixtures: a PostgreSQL of their own, which they stop, restart and starve.

Never the machine's shared server, and never the suite's server either: the fault tests start
an EmbeddedPostgres in a temporary folder, with a password full of special characters, create
a database on it, migrate it with `wiki-service db upgrade`, and point `wiki-service serve`
subprocesses (the suite's `serve` fixture) at it through the DB_* variables.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.embedded import EmbeddedPostgres
from tests.faults.database import FAULT_PASSWORD, SECRET_FORMS, FaultDatabase
from tests.support.cli import run_cli
from tests.support.db import private_server

_counter = iter(range(1, 10_000))


@pytest.fixture(scope="session")
def private_pg() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL only the fault tests use; they may stop it, so each test restarts it."""
    with private_server("wiki-faults-pg-", FAULT_PASSWORD) as server:
        yield server


@pytest.fixture
def fault_db(private_pg: EmbeddedPostgres) -> FaultDatabase:
    """A new database on the private server, migrated by `wiki-service db upgrade`."""
    if not private_pg.is_running():  # a previous test left it stopped
        private_pg.start()
    database = FaultDatabase(private_pg, f"faults_{next(_counter)}")
    private_pg.create_database(database.name)
    result = run_cli("db", "upgrade", env=database.env())
    assert result.returncode == 0, result.stderr
    for secret in SECRET_FORMS:
        assert secret not in result.stdout + result.stderr
    return database
