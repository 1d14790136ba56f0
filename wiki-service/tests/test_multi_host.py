"""Several database hosts, tried in order as libpq does (issue 14): the settings and the CLI.

The failover itself (a primary dies, its standby is promoted) is tests/faults/test_failover.py.
"""

import urllib.parse

import pytest
from sqlalchemy import make_url

from app.embedded import free_port
from tests.support.cli import PRINT_URL, bare_env, run_cli, run_python
from tests.support.db import SPECIAL_PASSWORD


def _dead() -> str:
    return f"127.0.0.1:{free_port()}"  # nothing listens there


def test_db_host_list_prints_masked_and_defaults_to_read_write():
    env = bare_env(DB_HOST="db-a:6543,db-b", DB_PASSWORD=SPECIAL_PASSWORD)
    result = run_python(PRINT_URL, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "postgresql+asyncpg://postgres:***@/wikidb?host=db-a%3A6543&host=db-b%3A5432"
        "&target_session_attrs=read-write\n"
    )
    assert SPECIAL_PASSWORD not in result.stdout + result.stderr


def test_target_session_attrs_variable_and_url_parameter():
    code = "from app.database import DATABASE_URL as u; print(u.query.get('target_session_attrs'))"
    assert run_python(code, bare_env()).stdout == "None\n"  # one host: asyncpg's default, any
    assert run_python(code, bare_env(DB_TARGET_SESSION_ATTRS="primary")).stdout == "primary\n"
    url = "postgresql://u:pw@a:1,b:2/db?target_session_attrs=any"
    assert run_python(code, bare_env(DATABASE_URL=url, DB_TARGET_SESSION_ATTRS="primary")).stdout == "any\n"


@pytest.mark.parametrize(
    "name, value",
    [
        ("DB_TARGET_SESSION_ATTRS", "primary-please"),
        ("DB_HOST", "a:1,b:port"),
        ("DB_HOST", "[::1]:5432,b:1"),
        ("DATABASE_URL", "postgresql://u:leak-me@a:1,b:2/db?target_session_attrs=writable"),
        ("DATABASE_URL", "postgresql://u:leak-me@a:1,b:notaport/db"),
    ],
)
def test_a_bad_host_list_or_mode_is_one_line(name, value):
    result = run_cli("check-db", env=bare_env(**{name: value}))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "leak-me" not in result.stderr
    assert name in lines[0]


def test_db_host_list_skips_a_dead_host(db_url):
    """check-db (the engine) and build-indexes (plain asyncpg) both reach the live second host."""
    live = make_url(db_url)
    env = bare_env(
        DB_HOST=f"{_dead()},{live.host}:{live.port}",
        DB_USER=live.username,
        DB_PASSWORD=live.password or "",
        DB_NAME=live.database,
    )
    result = run_cli("check-db", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Connected to: PostgreSQL ")
    result = run_cli("db", "build-indexes", env=env)
    assert result.returncode == 0, result.stderr
    assert f"{live.host}:{live.port}" in result.stdout


def test_libpq_url_with_a_host_list_and_a_special_password(password_server):
    password = urllib.parse.quote(SPECIAL_PASSWORD, safe="")
    url = (
        f"postgresql://postgres:{password}@{_dead()},{password_server.host}:{password_server.port}"
        "/postgres?target_session_attrs=read-write"
    )
    result = run_cli("check-db", env=bare_env(DATABASE_URL=url))
    assert result.returncode == 0, result.stderr
    printed = run_python(PRINT_URL, bare_env(DATABASE_URL=url)).stdout
    assert printed.startswith("postgresql+asyncpg://postgres:***@/postgres?host=127.0.0.1")
    for secret in (SPECIAL_PASSWORD, password, "w0rd"):
        assert secret not in printed + result.stdout + result.stderr


def test_every_host_down_is_one_line_naming_them():
    hosts = f"{_dead()},{_dead()}"
    result = run_cli("check-db", env=bare_env(DB_HOST=hosts, DB_PASSWORD="hunter2-secret"))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot connect to PostgreSQL at postgres@{hosts}/wikidb")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "hunter2-secret" not in result.stdout + result.stderr
