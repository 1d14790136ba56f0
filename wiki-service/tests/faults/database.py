"""The fault tests' database: a private server with a hostile password, reached through DB_*."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

import asyncpg

from app.embedded import EmbeddedPostgres
from tests.support.cli import service_env

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
