"""Security checks: the database password never leaks, SQL injection is plain data,
oversized bodies are refused before they are read, and the docs need no third party."""

from __future__ import annotations

import contextlib
import socket
import time
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser

import httpx
import pytest
from sqlalchemy import URL

from app.embedded import EmbeddedPostgres, free_port
from tests.support.cli import run_cli, run_python, service_env
from tests.support.db import private_server
from tests.support.server import Server, Servers

PASSWORD = "p@ss:/#%'\" w0rd\\;$"
# The raw password and every way a URL or a log line could spell it.
SECRET_FORMS = {
    PASSWORD,
    urllib.parse.quote(PASSWORD),
    urllib.parse.quote(PASSWORD, safe=""),
    urllib.parse.quote_plus(PASSWORD),
    URL.create("postgresql", username="u", password=PASSWORD, host="h")
    .render_as_string(hide_password=False)
    .split("//u:", 1)[1]
    .rsplit("@h", 1)[0],
    PASSWORD.replace("\\", "\\\\").replace('"', '\\"'),  # as a JSON string
}


def assert_no_secret(text: str, where: str) -> None:
    for form in SECRET_FORMS:
        assert form not in text, f"the password ({form!r}) appears in {where}"


# -- a PostgreSQL whose password is full of special characters --------------------------


@pytest.fixture(scope="module")
def secret_pg() -> Iterator[EmbeddedPostgres]:
    with private_server("wiki-secret-pg-", PASSWORD) as server:
        server.create_database("wikisecret")
        yield server


def db_env(server: EmbeddedPostgres, **overrides: str) -> dict[str, str]:
    """DB_* variables with the raw password."""
    env = service_env(
        DB_HOST=server.host,
        DB_PORT=str(server.port),
        DB_USER="postgres",
        DB_PASSWORD=PASSWORD,
        DB_NAME="wikisecret",
    )
    env.pop("DATABASE_URL", None)
    env.update(overrides)
    return env


def url_env(server: EmbeddedPostgres, **overrides: str) -> dict[str, str]:
    """DATABASE_URL with the URL-encoded password."""
    env = service_env(DATABASE_URL=server.url("wikisecret"))
    env.update(overrides)
    return env


@pytest.mark.parametrize("config", [db_env, url_env], ids=["DB_vars", "DATABASE_URL"])
def test_password_absent_from_migrations_check_db_and_the_printed_url(secret_pg, config):
    for echo in ("false", "true"):
        env = config(secret_pg, DB_ECHO=echo, LOG_LEVEL="debug")
        upgrade = run_cli("db", "upgrade", env=env)
        assert upgrade.returncode == 0, upgrade.stderr
        assert "INFO" in upgrade.stdout + upgrade.stderr or "alembic" in upgrade.stdout + upgrade.stderr
        assert_no_secret(upgrade.stdout + upgrade.stderr, f"`db upgrade` (DB_ECHO={echo})")
        current = run_cli("db", "current", env=env)
        assert current.returncode == 0, current.stderr
        assert_no_secret(current.stdout + current.stderr, "`db current`")
        check = run_cli("check-db", env=env)
        assert check.returncode == 0 and "Connected to: PostgreSQL" in check.stdout, check.stderr
        assert_no_secret(check.stdout + check.stderr, "`check-db`")

    # Failures name the server, not the password.
    for broken in (
        config(secret_pg, DB_PORT=str(free_port()))
        if config is db_env
        else service_env(
            DATABASE_URL=secret_pg.url("wikisecret").replace(f":{secret_pg.port}/", f":{free_port()}/")
        ),
        config(secret_pg, DB_NAME="nosuchdb")
        if config is db_env
        else service_env(DATABASE_URL=secret_pg.url("nosuchdb")),
    ):
        for args in (("check-db",), ("db", "upgrade")):
            result = run_cli(*args, env=broken)
            assert result.returncode != 0
            assert_no_secret(result.stdout + result.stderr, f"failing `{' '.join(args)}`")

    printed = run_python(
        "from app.database import DATABASE_URL; print(DATABASE_URL); print(repr(DATABASE_URL))",
        config(secret_pg),
    )
    assert printed.returncode == 0, printed.stderr
    assert "***" in printed.stdout
    assert_no_secret(printed.stdout + printed.stderr, "the printed DATABASE_URL")


def test_password_absent_from_logs_errors_and_metrics_with_sql_echo(secret_pg, serve):
    assert run_cli("db", "upgrade", env=db_env(secret_pg)).returncode == 0
    server = serve(db_env(secret_pg, DB_ECHO="true", LOG_LEVEL="debug", DB_POOL_TIMEOUT="2"))
    answers: list[str] = []
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            user = http.post("/users", json={"name": "echo"}).json()
            for method, path, kwargs in [
                ("GET", f"/users/{user['id']}", {}),
                ("GET", "/users/999999", {}),
                ("POST", "/posts", {"json": {"user_id": 999999, "content": "x"}}),
                ("POST", "/users", {"json": {"name": ""}}),
                ("GET", "/posts?cursor=%27%3B--", {}),
                ("GET", "/posts?q=a%00b", {}),
                ("POST", "/users", {"content": b"\xff"}),
                ("GET", "/readyz", {}),
                ("GET", "/metrics", {}),
                ("GET", "/", {}),
                ("GET", "/nowhere", {}),
            ]:
                response = http.request(method, path, **kwargs)
                answers.append(f"{response.status_code} {response.headers} {response.text}")
            # And while the database is away: 503s, reconnect attempts, warnings in the log.
            secret_pg.stop("fast")
            try:
                for path in ("/users", f"/users/{user['id']}", "/readyz", "/metrics"):
                    response = http.get(path)
                    answers.append(f"{response.status_code} {response.headers} {response.text}")
                    assert response.status_code in (200, 503)
            finally:
                secret_pg.start()
    finally:
        server.stop()
    output = server.log_path.read_text(errors="replace")
    assert '"logger":"app.sql"' in output  # DB_ECHO really logged the statements
    assert_no_secret(output, "the service's logs (DB_ECHO=true, LOG_LEVEL=debug)")
    assert_no_secret("\n".join(answers), "the HTTP answers (errors and /metrics)")


# -- SQL injection is data -----------------------------------------------------------------

INJECTIONS = [
    "'); DROP TABLE users; --",
    "1; DROP TABLE posts",
    "' OR '1'='1",
    '"; DELETE FROM users WHERE ""="',
    "$1) UNION SELECT version() --",
    "1' AND pg_sleep(5) --",
    "\\'; TRUNCATE posts; --",
    "':: text) @@ to_tsquery('x",
]


async def test_sql_injection_in_bodies_is_stored_verbatim(client, db):
    for text in INJECTIONS:
        user = await client.post("/users", json={"name": text})
        assert user.status_code == 201
        assert user.json()["name"] == text
        post = await client.post("/posts", json={"user_id": user.json()["id"], "content": text})
        assert post.status_code == 201
        assert await db.fetchval("SELECT name FROM users WHERE id = $1", user.json()["id"]) == text
        assert await db.fetchval("SELECT content FROM posts WHERE id = $1", post.json()["post_id"]) == text
    assert await db.fetchval("SELECT count(*) FROM users") == len(INJECTIONS)
    assert await db.fetchval("SELECT count(*) FROM posts") == len(INJECTIONS)
    tables = {r[0] for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"users", "posts", "alembic_version"} <= tables


async def test_sql_injection_in_every_query_and_path_parameter_is_rejected_or_data(client, db):
    user_id = (await client.post("/users", json={"name": "target"})).json()["id"]
    await client.post("/posts", json={"user_id": user_id, "content": "hello world"})
    for text in INJECTIONS:
        quoted = urllib.parse.quote(text, safe="")
        for path, params in [
            ("/posts", {"q": text}),
            ("/posts", {"cursor": text}),
            ("/users", {"cursor": text}),
            ("/posts", {"user_id": text}),
            ("/posts", {"limit": text}),
            ("/users", {"limit": text}),
            (f"/users/{user_id}/posts", {"cursor": text}),
            (f"/users/{quoted}", {}),
            (f"/user/{quoted}", {}),
            (f"/posts/{quoted}", {}),
            (f"/users/{quoted}/posts", {}),
        ]:
            response = await client.get(path, params=params)
            assert response.status_code in (200, 400, 404, 422), (path, params, response.text)
            if response.status_code == 200 and "q" in params:
                assert response.json()["items"] == []  # searched for, as words
    assert await db.fetchval("SELECT count(*) FROM users") == 1
    assert await db.fetchval("SELECT count(*) FROM posts") == 1


# -- bodies over the limit -------------------------------------------------------------------


@pytest.fixture(scope="module")
def live() -> Iterator[Server]:
    with Servers() as serve:
        yield serve()


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def test_a_declared_10_mib_body_is_refused_before_it_is_sent(live):
    port = int(live.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /users HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b'Content-Length: 10485760\r\n\r\n{"name":'
        )  # 8 of 10 MiB bytes
        started = time.monotonic()
        # The server must answer now: if it waited for the body, this recv times out (10 s).
        answer = _read_response(sock)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert waited < 10


def test_a_chunked_body_over_1_mib_is_refused(live):
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(40):  # 40 x 32 KiB = 1.25 MiB, no Content-Length
            yield b"x" * 32768
        yield b'"}'

    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        try:
            response = http.post("/users", content=chunks(), headers={"content-type": "application/json"})
        except httpx.WriteError:  # the server answered and closed before the whole body went
            pytest.fail("the server closed the connection without a 413")
        assert response.status_code == 413, response.text
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.request.headers
        # The server still serves.
        assert http.get("/healthz").status_code == 200


def test_a_body_just_under_the_limit_is_read(live):
    with httpx.Client(base_url=live.base_url, timeout=30) as http:
        body = b'{"name": "' + b"x" * (1024 * 1024 - 20) + b'"}'
        response = http.post("/users", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422  # read and validated (too long a name), not refused


# -- docs without third parties ------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


async def test_docs_load_no_third_party_assets(client):
    page = await client.get("/docs")
    assert page.status_code == 200
    parser = _Links()
    parser.feed(page.text)
    assert len(parser.urls) >= 3
    for url in parser.urls:
        parsed = urllib.parse.urlsplit(url)
        assert not parsed.scheme and not parsed.netloc, f"/docs loads {url} from elsewhere"
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0
    assert "http://" not in page.text and "https://" not in page.text
    assert '"validatorUrl": null' in page.text
    assert "url: '/openapi.json'" in page.text
    assert (await client.get("/openapi.json")).status_code == 200
    assert (await client.get("/docs/oauth2-redirect")).status_code == 200
