"""DB_STATEMENT_TIMEOUT_MS is stored by `db upgrade` as the role's default in the database, so
that it holds through a pooler (which refuses or drops it as a startup parameter)."""

import uuid

import asyncpg
from sqlalchemy import URL

from app.embedded import create_database
from tests.support.cli import run_cli, service_env
from tests.support.db import create_role, drop_role_and_database

APP_PASSWORD = "app-pw:@/ x"


async def test_upgrade_stores_the_timeout_for_its_own_role_and_database(password_server):
    role, database = f"wiki_app_{uuid.uuid4().hex[:8]}", f"st_{uuid.uuid4().hex[:8]}"
    await create_role(password_server.url(), role, APP_PASSWORD)
    await create_database(password_server.url(), database, owner=role)

    def url(name: str) -> str:
        return URL.create(
            "postgresql",
            username=role,
            password=APP_PASSWORD,
            host=password_server.host,
            port=password_server.port,
            database=name,
        ).render_as_string(hide_password=False)

    async def timeout_in(name: str) -> str:
        conn = await asyncpg.connect(url(name))
        try:
            return await conn.fetchval("SHOW statement_timeout")
        finally:
            await conn.close()

    try:
        # An ordinary role (no superuser, no CREATEROLE) may set its own defaults.
        env = service_env(DATABASE_URL=url(database), DB_STATEMENT_TIMEOUT_MS="1234")
        result = run_cli("db", "upgrade", env=env)
        assert result.returncode == 0, result.stderr
        assert await timeout_in(database) == "1234ms"
        assert await timeout_in("postgres") == "0"  # only this database
        env = service_env(DATABASE_URL=url(database), DB_STATEMENT_TIMEOUT_MS="0")
        result = run_cli("db", "upgrade", env=env)
        assert result.returncode == 0, result.stderr
        assert await timeout_in(database) == "0"
    finally:
        await drop_role_and_database(password_server.url(), database, role)
