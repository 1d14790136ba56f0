"""`wiki-service migrate-sqlite`: small generated SQLite files into real PostgreSQL databases."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.support.cli import SERVICE_DIR, run_cli, service_env
from tests.support.sqlite_source import clean_source, make_source


def env_for(url: str) -> dict[str, str]:
    return service_env(DATABASE_URL=url)


def migrate(url: str, source: Path, *args: str) -> subprocess.CompletedProcess:
    report = source.with_suffix(".rejects.jsonl")
    return run_cli("migrate-sqlite", str(source), "--reject-report", str(report), *args, env=env_for(url))


def rejects(source: Path) -> dict[tuple[str, int], dict]:
    lines = source.with_suffix(".rejects.jsonl").read_text().splitlines()
    return {(entry["table"], entry["id"]): entry for entry in map(json.loads, lines)}


def query(url: str, sql: str, *args):
    async def go():
        conn = await asyncpg.connect(url, server_settings={"TimeZone": "UTC"})
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def execute(url: str, sql: str) -> None:
    query(url, sql)


def schema_of(url: str) -> list[tuple]:
    """Indexes and constraints of users and posts, as PostgreSQL prints their definitions."""
    indexes = query(
        url,
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
        "AND tablename IN ('users', 'posts') ORDER BY 1",
    )
    constraints = query(
        url,
        "SELECT conname, pg_get_constraintdef(oid), convalidated "
        "FROM pg_constraint WHERE conrelid IN ('users'::regclass, "
        "'posts'::regclass) ORDER BY 1",
    )
    return [tuple(row) for row in indexes] + [tuple(row) for row in constraints]


def search_statistics(url: str) -> dict[str, bool]:
    """Which of what a search's plan reads has planner statistics: posts.search (True when it
    has its most common words) and the bucket expression of posts_search_idx."""
    rows = query(
        url,
        "SELECT tablename || '.' || attname, most_common_elems IS NOT NULL FROM pg_stats "
        "WHERE (tablename, attname) IN (('posts', 'search'), ('posts_search_idx', 'expr'))",
    )
    return dict(rows)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


# -- clean files ---------------------------------------------------------------------------


def test_clean_file_lands_exactly_with_ids_instants_sequences_and_schema(tmp_path, fresh_database, db_url):
    source = make_source(
        tmp_path / "app.db",
        users=[
            (1, "naive", "2024-03-01 12:34:56"),
            (2, "fraction", "2024-03-01 12:34:56.789"),
            (3, "T separator", "2024-03-01T12:34:56"),
            (4, "offset", "2024-03-01 14:34:56+02:00"),
            (5, "zulu and micro", "2024-03-01T12:34:56.000001Z"),
            (7, "négative offset ✓", "2024-03-01 07:34:56.5-05:00"),
            (10, "x" * 200, "1999-12-31 23:59:59"),
        ],
        posts=[
            (100, 1, "hello\\world\ttab\nnewline\rcr\x08\x0b\x0c", "2024-03-02 00:00:00"),
            (205, 7, "y" * 100_000, "2024-03-02 00:00:00.123456"),
        ],
    )
    url = fresh_database()
    result = migrate(url, source)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    users = {row["id"]: (row["name"], row["created_time"]) for row in query(url, "SELECT * FROM users")}
    instant = utc(2024, 3, 1, 12, 34, 56)
    assert users[1] == ("naive", instant)
    assert users[2] == ("fraction", instant.replace(microsecond=789000))
    assert users[3] == ("T separator", instant)
    assert users[4] == ("offset", instant)
    assert users[5] == ("zulu and micro", instant.replace(microsecond=1))
    assert users[7] == ("négative offset ✓", instant.replace(microsecond=500000))
    assert users[10] == ("x" * 200, utc(1999, 12, 31, 23, 59, 59))
    posts = {
        row["id"]: tuple(row) for row in query(url, "SELECT id, user_id, content, created_time FROM posts")
    }
    assert posts[100][1:3] == (1, "hello\\world\ttab\nnewline\rcr\x08\x0b\x0c")
    assert posts[205][1:] == (7, "y" * 100_000, utc(2024, 3, 2, 0, 0, 0, 123456))
    # The verification is printed and matches; the report is named and empty.
    assert "verification" in result.stdout
    assert "users            7           7" in result.stdout
    assert result.stdout.count(" match") == 2
    assert "reject report:" in result.stdout and "(0 rows)" in result.stdout
    # The identity sequences continue after the highest migrated id.
    assert query(url, "INSERT INTO users (name) VALUES ('next') RETURNING id")[0]["id"] == 11
    assert query(url, "INSERT INTO posts (user_id, content) VALUES (1, 'next') RETURNING id")[0]["id"] == 206
    # The fast path dropped and rebuilt indexes and the key: the schema is Alembic's.
    assert schema_of(url) == schema_of(db_url)
    # COPY filled posts.search, and ANALYZE ran after the search index was built.
    assert (
        query(url, "SELECT count(*) FROM posts WHERE search IS DISTINCT FROM to_tsvector('simple', content)")[
            0
        ][0]
        == 0
    )
    assert search_statistics(url) == {"posts.search": True, "posts_search_idx.expr": False}


def test_progress_lines_when_not_a_terminal(tmp_path, fresh_database):
    source = clean_source(tmp_path / "app.db", users=50, posts=100)
    result = migrate(fresh_database(), source, "--batch-size", "10")
    assert result.returncode == 0, result.stderr
    assert "users: 10/50 rows read" in result.stdout
    assert "posts: 100/100 rows read" in result.stdout
    assert "rows/s" in result.stdout


# -- dirty files ---------------------------------------------------------------------------


def test_dirty_rows_are_rejected_with_reasons_and_original_values(tmp_path, fresh_database):
    ok = "2024-01-01 00:00:00"
    source = make_source(
        tmp_path / "app.db",
        users=[
            (1, "good", ok),
            (2, None, ok),
            (3, 42, ok),
            (4, "", ok),
            (5, "n" * 201, ok),
            (6, "ok name", None),
            (7, "ok name", "yesterday"),
            (8, "ok name", "2024-02-30 10:00:00"),
            (9, "ok name", 1700000000),
            (10, "   ", ok),
            (11, "ok", "2024-01-01 00:00:00.1234567"),
        ],
        posts=[
            (1, 1, "fine", ok),
            (2, 999, "orphan", ok),
            (3, 2, "user 2 was rejected", ok),
            (4, 1, None, ok),
            (5, 1, "", ok),
            (6, 1, "c" * 100_001, ok),
            (7, 1, "ok", "nope"),
            (8, None, "no user", ok),
            (9, 1.5, "user id is real", ok),
        ],
        raw_users=[
            "INSERT INTO users VALUES (20, CAST(x'41ff42' AS TEXT), '2024-01-01 00:00:00')",
            "INSERT INTO users VALUES (21, CAST(x'410042' AS TEXT), '2024-01-01 00:00:00')",
            "INSERT INTO users VALUES (22, x'0102', '2024-01-01 00:00:00')",
        ],
        raw_posts=[
            "INSERT INTO posts VALUES (30, CAST(x'c328' AS TEXT), 1, '2024-01-01 00:00:00')",
            "INSERT INTO posts VALUES (31, CAST(x'6100' AS TEXT), 1, '2024-01-01 00:00:00')",
            "INSERT INTO posts VALUES (32, 'by the NUL user', 21, '2024-01-01 00:00:00')",
        ],
    )
    url = fresh_database()
    result = migrate(url, source)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    report_path = str(source.with_suffix(".rejects.jsonl"))
    assert report_path in result.stdout and report_path in result.stderr
    found = rejects(source)
    expected = {
        ("users", 2): "name is NULL",
        ("users", 3): "name is integer, expected text",
        ("users", 4): "name is empty",
        ("users", 5): "name is 201 characters, more than 200",
        ("users", 6): "created_time is NULL",
        ("users", 7): "created_time 'yesterday' is not a timestamp",
        ("users", 8): "created_time '2024-02-30 10:00:00' is not a timestamp",
        ("users", 9): "created_time is integer, expected timestamp text",
        ("users", 11): "more precise than a microsecond",
        ("users", 20): "name is not valid UTF-8 (byte 0xff at offset 1)",
        ("users", 21): "name contains NUL",
        ("users", 22): "name is blob, expected text",
        ("posts", 2): "user_id 999 does not exist in users (orphan post)",
        ("posts", 3): "user 2 was rejected: name is NULL",
        ("posts", 4): "content is NULL",
        ("posts", 5): "content is empty",
        ("posts", 6): "content is 100001 characters, more than 100000",
        ("posts", 7): "created_time 'nope' is not a timestamp",
        ("posts", 8): "user_id is NULL",
        ("posts", 9): "user_id is real, expected integer",
        ("posts", 30): "content is not valid UTF-8",
        ("posts", 31): "content contains NUL",
        ("posts", 32): "user 21 was rejected: name contains NUL",
    }
    assert set(found) == set(expected)
    for key, reason in expected.items():
        assert reason in found[key]["reason"], (key, found[key])
    # Original values, shown safely: invalid UTF-8 and blobs as hex, NUL escaped by JSON.
    assert found[("users", 20)]["values"]["name"] == {"hex": "41ff42", "storage": "text"}
    assert found[("users", 22)]["values"]["name"] == {"hex": "0102", "storage": "blob"}
    assert found[("users", 21)]["values"]["name"] == "A\x00B"
    assert '"A\\u0000B"' in source.with_suffix(".rejects.jsonl").read_text()
    assert found[("users", 3)]["values"]["name"] == 42
    assert found[("users", 9)]["values"]["created_time"] == 1700000000
    assert found[("users", 7)]["storage"]["created_time"] == "text"
    # Only the storable rows landed (a blank-but-not-empty name is storable, so it lands).
    assert [row["id"] for row in query(url, "SELECT id FROM users ORDER BY id")] == [1, 10]
    assert [row["id"] for row in query(url, "SELECT id FROM posts ORDER BY id")] == [1]
    assert "users: 14 in source, 2 landed (2 new, 0 already there), 12 rejected" in result.stdout
    assert result.stdout.count(" match") == 2


def test_two_readers_by_id_range_give_what_one_reader_gives(tmp_path, fresh_database):
    """Users and posts read by two processes, range by range (sparse ids, dirty rows in many
    ranges, posts of users rejected in the other reader's ranges), land exactly as when one
    process reads them all, with the same reasons in the reject report."""
    ok = "2024-01-01 00:00:00"
    users = [(i, f"user {i}" if i % 501 else "", ok) for i in range(1, 3001)]
    posts = [(i * 3 + i % 7, 1 + i % 3100, f"post {i}" if i % 997 else "", ok) for i in range(1, 20001)]
    source = make_source(tmp_path / "app.db", users, posts)
    outcomes = []
    for batch_size in ("100", "100000"):  # 2 readers over 600 ranges; 1 reader
        url = fresh_database()
        result = migrate(url, source, "--batch-size", batch_size)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stdout.count(" match") == 2
        summary = [line for line in result.stdout.splitlines() if line.startswith(("  users", "  posts"))]
        outcomes.append(
            (summary, rejects(source), [tuple(row) for row in query(url, "SELECT * FROM posts ORDER BY id")])
        )
    assert outcomes[0] == outcomes[1]
    good_users = {user_id for user_id, name, _ in users if name}
    landing = sorted(post_id for post_id, user_id, content, _ in posts if content and user_id in good_users)
    assert [row[0] for row in outcomes[0][2]] == landing
    assert len(outcomes[0][1]) == 3000 - len(good_users) + 20000 - len(landing)


# -- reruns, conflicts, interruptions -------------------------------------------------------


def test_rerun_adds_no_duplicates_and_conflicts_are_reported_not_overwritten(tmp_path, fresh_database):
    source = clean_source(tmp_path / "app.db", users=20, posts=40)
    url = fresh_database()
    assert migrate(url, source).returncode == 0
    again = migrate(url, source)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "loaded by the staged path" in again.stdout
    assert "users: 20 in source, 20 landed (0 new, 20 already there), 0 rejected, 0 conflicts" in again.stdout
    assert query(url, "SELECT count(*) FROM users")[0][0] == 20
    assert query(url, "SELECT count(*) FROM posts")[0][0] == 40

    db = sqlite3.connect(source)
    db.execute("UPDATE users SET name = 'renamed' WHERE id = 3")
    db.execute("UPDATE posts SET content = 'edited' WHERE id = 5")
    db.execute("INSERT INTO users VALUES (21, 'new user', '2024-05-05 05:05:05')")
    db.execute("INSERT INTO posts VALUES (41, 'new post', 21, '2024-05-05 05:05:05')")
    db.commit()
    db.close()
    conflicted = migrate(url, source)
    assert conflicted.returncode == 2, conflicted.stdout + conflicted.stderr
    found = rejects(source)
    assert found[("users", 3)]["reason"].startswith("conflict")
    assert found[("users", 3)]["values"]["name"] == "renamed"
    assert found[("users", 3)]["target"]["name"] == "user 3"
    assert found[("posts", 5)]["reason"].startswith("conflict")
    # Posts of user 3 would now belong to a different person: rejected, with the reason.
    posts_of_3 = [key for key in found if key[0] == "posts" and key[1] != 5]
    assert posts_of_3 and all(
        "user 3 was rejected: it conflicts" in found[key]["reason"] for key in posts_of_3
    )
    assert query(url, "SELECT name FROM users WHERE id = 3")[0][0] == "user 3"
    assert query(url, "SELECT content FROM posts WHERE id = 5")[0][0] != "edited"
    assert query(url, "SELECT name FROM users WHERE id = 21")[0][0] == "new user"
    assert query(url, "SELECT user_id FROM posts WHERE id = 41")[0][0] == 21
    assert "1 conflicts" in conflicted.stdout
    assert conflicted.stdout.count(" match") == 2  # verified over the rows that landed
    assert query(url, "INSERT INTO users (name) VALUES ('next') RETURNING id")[0]["id"] == 22


def test_staged_rows_in_a_sealed_bucket_make_it_stale_until_resealed(tmp_path, fresh_database):
    """The staged path writes the source's own ids, which may land in a bucket whose search
    bitmaps are written (app/posts/bitmaps.py): it marks those buckets for the sealer."""
    url = fresh_database()
    assert migrate(url, clean_source(tmp_path / "a.db", users=20, posts=40)).returncode == 0
    execute(url, "SELECT setval(pg_get_serial_sequence('posts', 'id'), 16383)")  # bucket 0 handed out
    sealed = run_cli("db", "build-indexes", env=env_for(url))
    assert "search bitmaps: 1 buckets sealed" in sealed.stdout, sealed.stdout + sealed.stderr
    more = make_source(
        tmp_path / "b.db",
        users=[(1, "user 1", "2024-01-02 10:00:01")],
        posts=[(i, 1, f"later post {i}", "2024-03-01 00:00:00") for i in (100, 20000)],
    )
    staged = migrate(url, more)
    assert "loaded by the staged path" in staged.stdout, staged.stdout + staged.stderr
    assert query(url, "SELECT DISTINCT bucket FROM search_bitmap_stale ORDER BY 1") == [(0,), (1,)]
    resealed = run_cli("db", "build-indexes", env=env_for(url))
    assert "search bitmaps: 1 buckets sealed" in resealed.stdout, resealed.stdout + resealed.stderr
    assert query(url, "SELECT DISTINCT bucket FROM search_bitmap_stale") == [(1,)]  # not sealed yet


def test_ids_the_service_creates_never_take_a_rejected_rows_id(tmp_path, fresh_database):
    """The sequences pass the source's highest ids even when those rows were rejected, so the
    rerun after the source is fixed lands them with their own ids, beside the rows the
    service created in between."""
    source = make_source(
        tmp_path / "app.db",
        users=[(1, "ann", "2024-01-01 00:00:00"), (9, "", "2024-01-01 00:00:00")],
        posts=[(1, 1, "kept", "2024-01-01 00:00:00"), (7, 9, "of the rejected user", "2024-01-01 00:00:00")],
    )
    url = fresh_database()
    first = migrate(url, source)
    assert first.returncode == 2, first.stdout + first.stderr
    assert set(rejects(source)) == {("users", 9), ("posts", 7)}
    assert query(url, "INSERT INTO users (name) VALUES ('new') RETURNING id")[0]["id"] == 10
    assert query(url, "INSERT INTO posts (user_id, content) VALUES (1, 'new') RETURNING id")[0]["id"] == 8

    db = sqlite3.connect(source)
    db.execute("UPDATE users SET name = 'bob' WHERE id = 9")
    db.commit()
    db.close()
    fixed = migrate(url, source)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert [tuple(r) for r in query(url, "SELECT id, name FROM users ORDER BY id")] == [
        (1, "ann"),
        (9, "bob"),
        (10, "new"),
    ]
    assert [tuple(r) for r in query(url, "SELECT id, user_id FROM posts ORDER BY id")] == [
        (1, 1),
        (7, 9),
        (8, 1),
    ]


@pytest.mark.parametrize("path", ["fast", "staged"])
def test_killed_run_then_rerun_lands_everything_exactly_once(tmp_path, fresh_database, db_url, path):
    source = clean_source(tmp_path / "app.db", users=3000, posts=30000)
    url = fresh_database()
    if path == "staged":  # one identical row already there: the staged path is taken
        execute(url, "SELECT 1")
        first = subprocess.run(
            [sys.executable, "-m", "app.cli", "db", "upgrade"],
            cwd=SERVICE_DIR,
            env=env_for(url),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert first.returncode == 0, first.stderr
        execute(url, "INSERT INTO users VALUES (1, 'user 1', '2024-01-02 10:00:01+00')")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "migrate-sqlite",
            str(source),
            "--batch-size",
            "100",
            "--reject-report",
            str(tmp_path / "r.jsonl"),
        ],
        cwd=SERVICE_DIR,
        env=env_for(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:
        if line.startswith("posts: "):
            break  # mid-COPY of posts
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    assert process.returncode == -signal.SIGKILL
    landed = query(url, "SELECT count(*) FROM posts")[0][0]
    assert landed < 30000  # it really was interrupted

    rerun = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "migrate-sqlite",
            str(source),
            "--reject-report",
            str(tmp_path / "r.jsonl"),
        ],
        cwd=SERVICE_DIR,
        env=env_for(url),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert query(url, "SELECT count(*), count(DISTINCT id), max(id) FROM users")[0][:] == (3000, 3000, 3000)
    assert query(url, "SELECT count(*), count(DISTINCT id), max(id) FROM posts")[0][:] == (
        30000,
        30000,
        30000,
    )
    assert rerun.stdout.count(" match") == 2
    assert schema_of(url) == schema_of(db_url)


def test_killed_after_commit_before_indexes_is_repaired(tmp_path, fresh_database, db_url):
    source = clean_source(tmp_path / "app.db")
    url = fresh_database()
    assert migrate(url, source).returncode == 0
    # What a kill between the fast path's commit and its index builds leaves behind.
    execute(url, "DROP INDEX posts_search_idx")
    execute(url, "ALTER TABLE posts DROP CONSTRAINT posts_user_id_fkey")
    rerun = migrate(url, source)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "rebuilding after an interrupted run" in rerun.stdout
    assert schema_of(url) == schema_of(db_url)


def test_search_index_later_then_built_while_the_service_serves(tmp_path, fresh_database, db_url, serve):
    source = clean_source(tmp_path / "app.db")
    url = fresh_database()
    result = migrate(url, source, "--search-index", "later")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "posts_search_idx not built and posts.search not filled (--search-index later)" in result.stdout
    assert query(url, "SELECT to_regclass('posts_search_idx')")[0][0] is None
    assert query(url, "SELECT count(*) FROM posts WHERE search IS NOT NULL")[0][0] == 0
    assert schema_of(url) == [part for part in schema_of(db_url) if part[0] != "posts_search_idx"]
    assert search_statistics(url) == {"posts.search": False}  # ANALYZEd before the fill
    # The trigger, dropped for the COPY, is back: the service's posts get their tsvector.
    assert query(
        url,
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'posts'::regclass "
        "AND NOT tgisinternal ORDER BY tgname",
    ) == query(
        db_url,
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger "
        "WHERE tgrelid = 'posts'::regclass AND NOT tgisinternal ORDER BY tgname",
    )

    server = serve(env_for(url))
    search = httpx.get(f"{server.base_url}/posts", params={"q": "post"}, timeout=10)
    assert search.status_code == 503 and search.headers["Retry-After"] == "30"
    assert "index is being built" in search.json()["detail"]
    assert httpx.get(f"{server.base_url}/posts", timeout=10).status_code == 200  # the rest serves

    built = run_cli("db", "build-indexes", env=env_for(url))
    assert built.returncode == 0, built.stdout + built.stderr
    assert "built posts_search_idx in" in built.stdout
    assert schema_of(url) == schema_of(db_url)
    assert (
        query(url, "SELECT count(*) FROM posts WHERE search IS DISTINCT FROM to_tsvector('simple', content)")[
            0
        ][0]
        == 0
    )
    assert search_statistics(url) == {"posts.search": True, "posts_search_idx.expr": False}
    deadline = time.monotonic() + 30  # the service looks again every SEARCH_INDEX_RECHECK_SECONDS
    while (
        search := httpx.get(f"{server.base_url}/posts", params={"q": "post"}, timeout=10)
    ).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert search.status_code == 200 and len(search.json()["items"]) == 20

    again = run_cli("db", "build-indexes", env=env_for(url))
    assert again.returncode == 0 and "every secondary index is present and valid" in again.stdout


def test_build_indexes_replaces_an_invalid_leftover(tmp_path, fresh_database, db_url):
    source = clean_source(tmp_path / "app.db")
    url = fresh_database()
    assert migrate(url, source, "--search-index", "later").returncode == 0
    # What a CREATE INDEX CONCURRENTLY that died leaves: an invalid index under the name.
    with pytest.raises(asyncpg.UniqueViolationError):
        execute(url, "CREATE UNIQUE INDEX CONCURRENTLY posts_search_idx ON posts (user_id)")
    assert (
        query(url, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'posts_search_idx'::regclass")[0][0]
        is False
    )
    built = run_cli("db", "build-indexes", env=env_for(url))
    assert built.returncode == 0, built.stdout + built.stderr
    assert schema_of(url) == schema_of(db_url)


# -- dry run and bad invocations --------------------------------------------------------------


def test_dry_run_checks_and_reports_but_writes_nothing(tmp_path, fresh_database):
    source = clean_source(tmp_path / "app.db", users=10, posts=10)
    db = sqlite3.connect(source)
    db.execute("INSERT INTO posts VALUES (99, 'orphan', 12345, '2024-01-01 00:00:00')")
    db.commit()
    db.close()
    url = fresh_database()
    result = migrate(url, source, "--dry-run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "dry run: nothing was written" in result.stdout
    assert "posts: 11 in source, 10 would land, 1 rejected" in result.stdout
    assert ("posts", 99) in rejects(source)
    # Not even the schema: the database is as empty as it was.
    assert query(url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")[0][0] == 0


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_missing_file(tmp_path, db_url):
    line = _one_line_error(migrate(db_url, tmp_path / "nope.db"))
    assert "no such file" in line


def test_not_sqlite(tmp_path, db_url):
    bogus = tmp_path / "app.db"
    bogus.write_text("this is not a database, just some words " * 100)
    line = _one_line_error(migrate(db_url, bogus))
    assert "is not an SQLite database" in line


def test_source_without_the_tables(tmp_path, db_url):
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, created_time TEXT)")
    db.close()
    line = _one_line_error(migrate(db_url, other))
    assert "has no table 'posts'" in line


def test_unreachable_target_does_not_print_the_password(tmp_path):
    from app.embedded import free_port

    source = clean_source(tmp_path / "app.db", users=1, posts=1)
    url = f"postgresql://someone:s3cret-pw@127.0.0.1:{free_port()}/wikidb"
    line = _one_line_error(migrate(url, source))
    assert "cannot connect to PostgreSQL at someone@127.0.0.1" in line
    assert "s3cret-pw" not in line


def test_reader_enforces_the_models_limits(tmp_path):
    from app.posts.models import CONTENT_MAX_LENGTH
    from app.users.models import NAME_MAX_LENGTH

    ok = "2024-01-01 00:00:00"
    source = make_source(
        tmp_path / "app.db",
        users=[(1, "n" * NAME_MAX_LENGTH, ok), (2, "n" * (NAME_MAX_LENGTH + 1), ok)],
        posts=[(1, 1, "c" * CONTENT_MAX_LENGTH, ok), (2, 1, "c" * (CONTENT_MAX_LENGTH + 1), ok)],
    )
    rejected = {(reject["table"], reject["id"]) for reject in read_everything(source, 10)[2]}
    assert rejected == {("users", 2), ("posts", 2)}


def read_everything(path: Path, batch_size: int) -> tuple[bytes, bytes, list[dict], int]:
    from app.sqlite_import import source

    db = source.open_source(path)
    ids = source.UserIds(source.highest_id(db, "users"))
    users = list(source.read_rows(db, "users", batch_size, ids))
    posts = list(source.read_rows(db, "posts", batch_size, ids))
    db.close()
    rejects = [reject.as_json() for batch in users + posts for reject in batch.rejects]
    return (
        b"".join(b.tuples for b in users),
        b"".join(b.tuples for b in posts),
        rejects,
        sum(b.good for b in posts),
    )


def test_batch_checks_agree_with_the_row_by_row_checks(tmp_path, monkeypatch):
    """The batch-at-a-time fast path gives exactly the lines and rejects of the slow path."""

    def ok(i: int) -> str:  # plenty of instants, to check SQLite's and Python's arithmetic agree
        date = f"{1 + i * 37 % 9999:04d}-{1 + i % 12:02d}-{1 + i % 28:02d}"
        return f"{date} {i % 24:02d}:{i % 60:02d}:{i * 7 % 60:02d}"

    weird = [
        "plain",
        "tab\there",
        "back\\slash",
        "new\nline",
        "ünïcödé ✓",
        "😀" * 3,
        "a" * 200,
        "a" * 201,
        "é" * 200,
        "é" * 201,
        "",
        "nul\x00",
        "\r\x08\x0b\x0c",
    ]
    users = [
        (
            i,
            weird[i % len(weird)] if i % 97 == 0 else f"user {i}",
            ok(i) if i % 89 else "2024-01-01T00:00:00.5+01:00",
        )
        for i in range(1, 3001)
    ]
    # Texts SQLite's date functions take but normalise, or that are not the canonical form.
    edges = [
        "bad",
        "0000-01-01 00:00:00",
        "0001-01-01 00:00:00",
        "9999-12-31 23:59:59",
        "2023-02-29 00:00:00",
        "2024-02-29 12:00:00",
        "2023-04-31 00:00:00",
        "2023-01-01 24:00:00",
        "2023-13-01 00:00:00",
        "2023-00-10 00:00:00",
        "2023-01-00 00:00:00",
        "2023-01-01 00:60:00",
        "2023-01-01 00:00:60",
        "2024-01-01 00:00:00Z",
        "2024-01-01 00:00:00.000",
        " 2024-01-01 00:00:00",
        "2024-01-01  00:00:00",
        "2024-1-01 00:00:00",
        "2460000.5",
        "now",
    ]
    posts = [
        (
            i,
            1 + (i * 7) % 3100,
            weird[i % len(weird)] * (1 + i % 3),
            ok(i) if i % 83 else edges[i // 83 % len(edges)],
        )
        for i in range(1, 20001)
    ]
    source = make_source(
        tmp_path / "app.db",
        users,
        posts,
        raw_posts=[
            "INSERT INTO posts VALUES (20001, CAST(x'c328' AS TEXT), 5, '2024-01-01 00:00:00')",
            "INSERT INTO posts VALUES (20002, 'real user id', 5.0, '2024-01-01 00:00:00')",
            "INSERT INTO posts VALUES (20003, 'text user id', '5', '2024-01-01 00:00:00')",
            "INSERT INTO posts VALUES (20004, 'negative user', -3, '2024-01-01 00:00:00')",
            "INSERT INTO posts VALUES (20005, printf('%.*c', 100001, 'c'), 5, '2024-01-01 00:00:00')",
            "INSERT INTO posts VALUES (20006, 'integer time', 5, 1700000000)",
            "INSERT INTO posts VALUES (20007, 'real time', 5, 2460000.5)",
            "INSERT INTO posts VALUES (20008, 'blob time', 5, CAST('2024-01-01 00:00:00' AS BLOB))",
            "INSERT INTO posts VALUES (20009, CAST('blob content' AS BLOB), 5, '2024-01-01 00:00:00')",
        ],
    )
    fast = read_everything(source, 1000)
    from app.sqlite_import import source as reader

    monkeypatch.setattr(reader, "plain_tuples", lambda *args: None)
    slow = read_everything(source, 1000)
    assert fast == slow
    assert len(fast[2]) > 100 and fast[3] > 15000  # both kinds, plenty of each
