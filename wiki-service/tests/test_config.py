"""The design's configuration contract: DB_* with defaults, DATABASE_URL, DB_PASSWORD_FILE."""

import pytest

from tests.support.cli import PRINT_URL, bare_env, run_cli, run_python
from tests.support.db import SPECIAL_PASSWORD


def test_the_design_command_prints_the_masked_default_url():
    result = run_python(PRINT_URL, bare_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout == "postgresql+asyncpg://postgres:***@localhost:5432/wikidb\n"


def test_each_part_comes_from_its_variable():
    result = run_python(
        PRINT_URL,
        bare_env(
            DB_USER="wiki",
            DB_PASSWORD="s3cret-value",
            DB_HOST="db.internal",
            DB_PORT="6543",
            DB_NAME="articles",
        ),
    )
    assert result.stdout == "postgresql+asyncpg://wiki:***@db.internal:6543/articles\n"
    assert "s3cret-value" not in result.stdout + result.stderr


def test_special_character_password_round_trips_into_the_url():
    code = "from app.database import DATABASE_URL as u; print(repr(u.password)); print(u)"
    result = run_python(code, bare_env(DB_PASSWORD=SPECIAL_PASSWORD))
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == repr(SPECIAL_PASSWORD)
    assert second == "postgresql+asyncpg://postgres:***@localhost:5432/wikidb"


def _parts(server, **extra):
    return bare_env(DB_HOST=server.host, DB_PORT=str(server.port), DB_NAME="postgres", **extra)


def test_special_character_password_authenticates(password_server):
    result = run_cli("check-db", env=_parts(password_server, DB_PASSWORD=SPECIAL_PASSWORD))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Connected to: PostgreSQL ")
    assert SPECIAL_PASSWORD not in result.stdout + result.stderr


def test_a_wrong_password_is_refused_in_one_line(password_server):
    result = run_cli("check-db", env=_parts(password_server, DB_PASSWORD="wrong"))
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "password authentication failed" in lines[0]


def test_password_file_wins_and_keeps_spaces(password_server, tmp_path):
    secret = tmp_path / "password"
    secret.write_text(SPECIAL_PASSWORD + "\n")
    env = _parts(password_server, DB_PASSWORD="not-this-one", DB_PASSWORD_FILE=str(secret))
    result = run_cli("check-db", env=env)
    assert result.returncode == 0, result.stderr


def test_password_file_applies_to_database_url_too(password_server, tmp_path):
    secret = tmp_path / "password"
    secret.write_text(SPECIAL_PASSWORD)
    url = f"postgresql://postgres@{password_server.host}:{password_server.port}/postgres"
    result = run_cli("check-db", env=bare_env(DATABASE_URL=url, DB_PASSWORD_FILE=str(secret)))
    assert result.returncode == 0, result.stderr


def test_database_url_overrides_the_parts(password_server):
    url = password_server.url("postgres")
    env = bare_env(DATABASE_URL=url, DB_HOST="nowhere.invalid", DB_PORT="1")
    result = run_cli("check-db", env=env)
    assert result.returncode == 0, result.stderr
    printed = run_python(PRINT_URL, env).stdout
    assert printed.startswith("postgresql+asyncpg://postgres:***@127.0.0.1:")
    assert "w0rd" not in printed


@pytest.mark.parametrize(
    "name, value",
    [
        ("DB_PORT", "abc"),
        ("DB_PORT", "70000"),
        ("DB_POOL_SIZE", "0"),
        ("DB_POOL_SIZE", "ten"),
        ("DB_MAX_OVERFLOW", "-1"),
        ("DB_POOL_TIMEOUT", "soon"),
        ("DB_ECHO", "maybe"),
        ("DB_POOL_PRE_PING", "perhaps"),
        ("LOG_LEVEL", "loud"),
        ("DB_PASSWORD_FILE", "/nonexistent/secret"),
        ("DATABASE_URL", "mysql://u:p@h/db"),
        ("DATABASE_URL", "postgresql://u:leak-me@h:notaport/db"),
    ],
)
def test_a_bad_value_stops_with_one_line_naming_the_variable(name, value):
    env = bare_env(**{name: value})
    for result in (run_python(PRINT_URL, env), run_cli("check-db", env=env)):
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert name in lines[0]
        assert "leak-me" not in result.stderr


def test_pool_settings_follow_the_design_and_can_be_overridden():
    code = (
        "from sqlalchemy import event; from app.config import get_settings; "
        "from app.database import Database; db = Database(get_settings()); p = db.pool; "
        "print(p.size(), p._max_overflow, p._timeout, "
        "db.ping is not None and event.contains(p, 'checkout', db.ping.on_checkout))"
    )
    assert run_python(code, bare_env()).stdout.split() == ["10", "20", "5.0", "True"]
    custom = bare_env(DB_POOL_SIZE="3", DB_MAX_OVERFLOW="4", DB_POOL_TIMEOUT="2.5", DB_POOL_PRE_PING="false")
    assert run_python(code, custom).stdout.split() == ["3", "4", "2.5", "False"]


def test_importing_the_app_reads_no_settings_and_builds_no_engine():
    # A setting that stops every command: importing must not read it, let alone connect.
    code = (
        "import gc; import app.main, app.cli, app.users.schemas, app.posts.schemas, app.validation; "
        "from sqlalchemy.ext.asyncio import AsyncEngine; "
        "print(sum(isinstance(o, AsyncEngine) for o in gc.get_objects()))"
    )
    result = run_python(code, bare_env(DATABASE_URL="mysql://u:p@h/db"))
    assert (result.returncode, result.stdout, result.stderr) == (0, "0\n", "")


def test_check_db_against_an_unreachable_server_is_one_line():
    result = run_cli("check-db", env=bare_env(DB_HOST="127.0.0.1", DB_PORT="1"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: cannot connect to PostgreSQL at postgres@127.0.0.1:1/wikidb")
    assert len(result.stderr.strip().splitlines()) == 1
