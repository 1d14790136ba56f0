"""The suite's PostgreSQL: its databases for this run, and statements run as the superuser."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
from sqlalchemy import make_url

from app.embedded import EmbeddedPostgres, create_database, drop_database, quote_identifier

# Every character that breaks a naively built URL, a shell line or a SQL literal (and é).
SPECIAL_PASSWORD = "p@ss:/#%'\" w0rd\\;$&?=+é"


def libpq_url(url: str, database: str | None = None) -> str:
    """`url` as a plain libpq URL (no +driver), on `database` when given, password included."""
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


async def create_role(admin_url: str, role: str, password: str) -> None:
    """A login role with `password` (any characters)."""
    literal = "'" + password.replace("'", "''") + "'"
    await admin_execute(admin_url, f"CREATE ROLE {quote_identifier(role)} LOGIN PASSWORD {literal}")


async def drop_role_and_database(admin_url: str, name: str, role: str) -> None:
    """Drop database `name` (connections forced out), then `role`."""
    await drop_database(admin_url, name)
    await admin_execute(admin_url, f"DROP ROLE IF EXISTS {quote_identifier(role)}")


async def truncate(url: str) -> None:
    """Empty tables, identities restarted."""
    await admin_execute(url, "TRUNCATE users, posts RESTART IDENTITY CASCADE")


class ScratchDatabases:
    """Empty databases made on the test server for this run; `drop_all` removes them at its end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.names: list[str] = []

    def create(self, prefix: str = "wikitest") -> str:
        """A new empty database; its libpq URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        asyncio.run(create_database(self.admin_url, name))
        self.names.append(name)
        return libpq_url(self.admin_url, name)

    def drop_all(self) -> None:
        asyncio.run(drop_database(self.admin_url, *self.names))


@contextlib.contextmanager
def private_server(prefix: str, password: str) -> Iterator[EmbeddedPostgres]:
    """An EmbeddedPostgres of a test's own, started in a new temporary folder; on exit stopped
    (as a crash) and removed. Not under pytest's basetemp: other pytest runs on the machine
    prune basetemps, and were seen to stop a server whose data lived there mid-run."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    server = EmbeddedPostgres(root / "data", password=password).start()
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
