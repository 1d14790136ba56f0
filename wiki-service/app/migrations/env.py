"""Alembic environment: async engine, and an advisory lock so replicas can migrate at once."""

import asyncio

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import app.posts.models
import app.users.models  # noqa: F401 - both imports register their tables on Base.metadata
from app.config import get_settings
from app.database import connect_args
from app.models_base import Base

# Any fixed 64-bit number; every `wiki-service db upgrade` takes the same lock.
MIGRATION_LOCK_ID = 0x77696B695F6D6967  # "wiki_mig"

target_metadata = Base.metadata
settings = get_settings()


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (`alembic upgrade head --sql`)."""
    context.configure(url=settings.url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        # Held until commit: a second replica waits here, then finds the schema at head.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        connection.execute(text("SET LOCAL statement_timeout = 0"))  # migrations may run long
        context.run_migrations()
        store_statement_timeout(connection)


def store_statement_timeout(connection: Connection) -> None:
    """DB_STATEMENT_TIMEOUT_MS as this role's default in this database.

    The server applies it when a session starts, so it holds on every path to the database,
    PgBouncer and CloudNativePG's Pooler included (they refuse or drop it as a startup
    parameter); admin commands that run long override it with statement_timeout=0.
    """
    database = connection.execute(text("SELECT current_database()")).scalar_one()
    quoted = '"' + database.replace('"', '""') + '"'
    timeout_ms = int(settings.db_statement_timeout_ms)
    connection.execute(
        text(f"ALTER ROLE CURRENT_USER IN DATABASE {quoted} SET statement_timeout = {timeout_ms}")
    )


async def run_migrations_online() -> None:
    connectable = create_async_engine(
        settings.url, poolclass=pool.NullPool, connect_args=connect_args(settings)
    )
    try:
        async with connectable.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await connectable.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
