"""Migrations: the schema Alembic builds, run from many replicas at once."""

import asyncio
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import httpx

from tests.support.cli import SERVICE_DIR, run_cli, service_env
from tests.support.db import admin_execute


def test_concurrent_upgrades_all_succeed(fresh_database):
    url = fresh_database()
    env = service_env(DATABASE_URL=url)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: run_cli("db", "upgrade", env=env), range(4)))
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "is at revision 0004 (head)" in result.stdout
    ran = sum("Running upgrade" in result.stdout for result in results)
    assert ran == 1  # exactly one replica migrated; the others waited on the lock, then found head

    async def version() -> str:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval("SELECT version_num FROM alembic_version")
        finally:
            await conn.close()

    assert asyncio.run(version()) == "0004"
    current = run_cli("db", "current", env=env)
    assert current.returncode == 0 and "current: 0004" in current.stdout


def test_db_current_exits_3_when_behind(fresh_database):
    result = run_cli("db", "current", env=service_env(DATABASE_URL=fresh_database()))
    assert result.returncode == 3
    assert "current: none" in result.stdout


def test_upgrade_against_an_unreachable_database_is_one_line():
    result = run_cli("db", "upgrade", env=service_env(DATABASE_URL="postgresql://u:hunter2@127.0.0.1:1/x"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: migration of u@127.0.0.1:1/x failed")
    assert "hunter2" not in result.stdout + result.stderr


def test_build_indexes_against_an_unreachable_database_is_one_line():
    result = run_cli(
        "db", "build-indexes", env=service_env(DATABASE_URL="postgresql://u:hunter2@127.0.0.1:1/x")
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: building the indexes of u@127.0.0.1:1/x failed")
    )
    assert "hunter2" not in result.stdout + result.stderr


async def test_migrations_match_the_models(db_url):
    """Alembic's autogenerate finds nothing to add: models and migrations agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    import app.posts.models
    import app.users.models  # noqa: F401
    from app.models_base import Base

    engine = create_async_engine(db_url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []


async def test_schema_types_and_constraints(db):
    columns = {
        (row["table_name"], row["column_name"]): row
        for row in await db.fetch(
            "SELECT table_name, column_name, data_type, is_identity, column_default "
            "FROM information_schema.columns WHERE table_name IN ('users', 'posts')"
        )
    }
    for table in ("users", "posts"):
        assert columns[(table, "id")]["data_type"] == "bigint"
        assert columns[(table, "id")]["is_identity"] == "YES"
        assert columns[(table, "created_time")]["data_type"] == "timestamp with time zone"
        assert columns[(table, "created_time")]["column_default"] == "now()"
    assert columns[("posts", "user_id")]["data_type"] == "bigint"
    foreign_keys = await db.fetch(
        "SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid = 'posts'::regclass"
    )
    assert [row["conname"] for row in foreign_keys] == ["posts_user_id_fkey"]


async def test_length_checks_count_characters_not_bytes(db):
    """The cheap checks of revision 0002 accept exactly what char_length BETWEEN 1 AND n does."""
    outer = db.transaction()  # rolled back: the rows stay out of the other tests
    await outer.start()
    try:
        await check_lengths(db)
    finally:
        await outer.rollback()


async def stored(db, sql: str, *args) -> bool:
    """Whether the insert passed the CHECK constraints (in a savepoint, rolled back on failure)."""
    try:
        async with db.transaction():
            await db.execute(sql, *args)
    except asyncpg.CheckViolationError:
        return False
    return True


async def check_lengths(db) -> None:
    user_id = await db.fetchval("INSERT INTO users (name) VALUES ('checker') RETURNING id")
    contents = {
        "": False,
        " ": True,
        "é" * 100_000: True,  # 200,000 bytes, 100,000 characters
        "a" * 100_000: True,
        "a" * 100_001: False,
        "é" * 100_001: False,
        "😀" * 30_000 + "a" * 70_000: True,
    }
    for content, accepted in contents.items():
        ok = await stored(db, "INSERT INTO posts (user_id, content) VALUES ($1, $2)", user_id, content)
        assert ok is accepted, (len(content), len(content.encode()))
    for name, accepted in {"": False, "ü" * 200: True, "ü" * 201: False}.items():
        assert await stored(db, "INSERT INTO users (name) VALUES ($1)", name) is accepted, len(name)


def test_upgrade_of_a_populated_database_defers_the_fill_and_keeps_serving(fresh_database, serve):
    """Above 100,000 posts, revision 0003 only adds the column and the trigger (instant);
    search answers 503 until `db build-indexes` has filled, indexed and analyzed, while the
    rest of the API serves; then the old expression index is gone."""
    url = fresh_database()
    env = service_env(DATABASE_URL=url)
    to_0002 = subprocess.run(
        [
            sys.executable,
            "-c",
            "from alembic import command; from app.schema import alembic_config; "
            "command.upgrade(alembic_config(), '0002')",
        ],
        cwd=SERVICE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert to_0002.returncode == 0, to_0002.stderr
    asyncio.run(
        admin_execute(
            url,
            "INSERT INTO users (name) VALUES ('author')",
            "INSERT INTO posts (user_id, content) SELECT 1, 'post number ' || i || "
            "CASE WHEN i % 25000 = 0 THEN ' needle' ELSE '' END "
            "FROM generate_series(1, 100001) AS i",
        )
    )

    upgraded = run_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "run `wiki-service db build-indexes`" in upgraded.stdout + upgraded.stderr
    assert asyncio.run(fetch(url, "SELECT count(search) FROM posts")) == [(0,)]
    server = serve({**env, "SEARCH_SEAL_INTERVAL_SECONDS": "0"})  # build-indexes seals, below
    search = httpx.get(f"{server.base_url}/posts", params={"q": "needle"}, timeout=10)
    assert search.status_code == 503 and search.headers["Retry-After"] == "30"
    assert (
        httpx.post(
            f"{server.base_url}/posts", json={"user_id": 1, "content": "written needle"}, timeout=10
        ).status_code
        == 201
    )  # the trigger fills this one

    built = run_cli("db", "build-indexes", env=env, timeout=300)
    assert built.returncode == 0, built.stderr
    assert "built posts_search_idx" in built.stdout
    assert asyncio.run(
        fetch(url, "SELECT count(*) FROM posts WHERE search IS DISTINCT FROM to_tsvector('simple', content)")
    ) == [(0,)]
    assert asyncio.run(
        fetch(
            url,
            "SELECT to_regclass('posts_content_search_idx') IS NULL, "
            "to_regclass('posts_search_idx') IS NOT NULL",
        )
    ) == [(True, True)]
    assert asyncio.run(
        fetch(
            url,
            "SELECT most_common_elems IS NOT NULL FROM pg_stats "
            "WHERE tablename = 'posts' AND attname = 'search'",
        )
    ) == [(True,)]
    deadline = time.monotonic() + 30  # the service looks at the index every 10 s
    while (
        search := httpx.get(f"{server.base_url}/posts", params={"q": "needle"}, timeout=10)
    ).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert search.status_code == 200, server.output()[-3000:]
    assert [item["content"] for item in search.json()["items"]] == [
        "written needle",
        *(f"post number {i} needle" for i in (100000, 75000, 50000, 25000)),
    ]
    # Ids 1..100,002 fill buckets 0..5 of 16,384 ids; the newest, partial one stays unsealed.
    assert "search bitmaps: 6 buckets sealed" in built.stdout
    assert asyncio.run(fetch(url, "SELECT array_agg(bucket ORDER BY bucket) FROM search_bitmap_buckets")) == [
        ([0, 1, 2, 3, 4, 5],)
    ]


async def fetch(url: str, sql: str) -> list[tuple]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()
