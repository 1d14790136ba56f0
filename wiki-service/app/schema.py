"""Schema migrations: Alembic to head under an advisory lock, the revision checks, and the
parts of the schema a bulk load leaves out (secondary indexes, the foreign key, the primary
keys), built without blocking writes where they can be.

The revisions (migrations/versions/) are history: each keeps the DDL it ran, and never
changes. The models are the schema of today, and `test_migrations_match_the_models` holds them
equal to what the revisions build. So `db build-indexes` and `migrate-sqlite` compile their
DDL from the models, and state none of their own.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import cast

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import AddConstraint, CreateIndex, DDLElement

from app.posts.models import SEARCH_CONFIG, Post
from app.users.models import User

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

_USERS = cast(Table, User.__table__)
_POSTS = cast(Table, Post.__table__)


def _sql(element: DDLElement) -> str:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it unannotated
    return str(element.compile(dialect=dialect))


# The secondary indexes, name -> CREATE INDEX; the search index last, the slowest to build.
# migrate-sqlite drops them for its bulk load and builds them after.
SEARCH_INDEX = "posts_search_idx"
SECONDARY_INDEXES = {
    str(index.name): _sql(CreateIndex(index))
    for index in sorted(_POSTS.indexes, key=lambda index: (index.name == SEARCH_INDEX, str(index.name)))
}
# The foreign key, and each table's primary key (unnamed in the models: PostgreSQL names it
# <table>_pkey, as it did when Alembic created the table).
(_POSTS_USER,) = _POSTS.foreign_key_constraints
FOREIGN_KEY = str(_POSTS_USER.name)
FOREIGN_KEY_DDL = _sql(AddConstraint(_POSTS_USER))
PRIMARY_KEY_DDL = {table.name: _sql(AddConstraint(table.primary_key)) for table in (_USERS, _POSTS)}
# Revision 0003's trigger, which sets posts.search (a bulk load that leaves the fill for later
# drops it, and puts back the definition PostgreSQL prints for it).
SEARCH_TRIGGER = "posts_search_fill"
# What the trigger sets posts.search to, for the rows a bulk load left NULL.
SEARCH_VECTOR = f"to_tsvector('{SEARCH_CONFIG}'::regconfig, content)"
# Revision 0001's search index, on the expression: dropped once SEARCH_INDEX is valid.
LEGACY_SEARCH_INDEX = "posts_content_search_idx"
# Rows per UPDATE when posts.search is filled after a bulk load: short transactions, so the
# service's writes never wait long for a row lock.
FILL_BATCH_ROWS = 10_000
# Index builds get more memory than the server's default (64 MB on a stock install).
INDEX_BUILD_MEMORY = "1GB"
INDEX_BUILD_LOCK_ID = 0x77696B695F696478  # "wiki_idx": one index builder at a time


def alembic_config() -> Config:
    """Alembic's config, pointing at the packaged migrations; the URL comes from settings."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_to_head() -> str:
    """Bring the configured database to the newest revision; safe to run from many replicas."""
    command.upgrade(alembic_config(), "head")
    return head_revision()


@lru_cache
def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


async def current_revision(conn: asyncpg.Connection) -> str | None:
    """The revision the database is at, or None before the first migration."""
    exists = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
    if not exists:
        return None
    revision: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
    return revision


async def index_is_valid(conn: asyncpg.Connection, name: str) -> bool | None:
    """True when the index is usable, False when a build left it invalid, None when absent."""
    valid: bool | None = await conn.fetchval(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", f"public.{name}"
    )
    return valid


async def fill_search_column(conn: asyncpg.Connection) -> int:
    """Set posts.search where a bulk load left it NULL, in batches by id (autocommit, so each
    batch is its own short transaction). Returns the rows filled."""
    low, high = await conn.fetchrow("SELECT min(id), max(id) FROM posts WHERE search IS NULL")
    filled = 0
    while low is not None and low <= high:
        status = await conn.execute(
            f"UPDATE posts SET search = {SEARCH_VECTOR} WHERE id >= $1 AND id < $2 AND search IS NULL",
            low,
            low + FILL_BATCH_ROWS,
        )
        filled += int(status.split()[-1])
        low += FILL_BATCH_ROWS
    return filled


async def build_missing_indexes(conn: asyncpg.Connection) -> list[str]:
    """CREATE INDEX CONCURRENTLY each secondary index that is absent or invalid, filling
    posts.search first; reads and writes go on meanwhile. ANALYZE follows every build, so
    the planner has statistics for what it indexes. Returns the names built."""
    built = []
    await conn.execute("SELECT pg_advisory_lock($1)", INDEX_BUILD_LOCK_ID)
    try:
        await conn.execute(f"SET maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
        for name, ddl in SECONDARY_INDEXES.items():
            valid = await index_is_valid(conn, name)
            if valid:
                continue
            if name == SEARCH_INDEX and await fill_search_column(conn):
                await conn.execute("VACUUM posts")  # the fill left a dead version of each row
            if valid is False:  # a build that died; under the lock, nobody else is building it
                await conn.execute(f"DROP INDEX CONCURRENTLY {name}")
            await conn.execute(ddl.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY", 1))
            built.append(name)
        if built:
            await conn.execute("ANALYZE posts")
        if await index_is_valid(conn, SEARCH_INDEX):
            await conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {LEGACY_SEARCH_INDEX}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", INDEX_BUILD_LOCK_ID)
    return built
