"""What a benchmark runs against: PostgreSQL (embedded, or a fresh database on a given
server) migrated by `wiki-service db upgrade` and seeded, and the apps, each in its own
process group on a free port, checked to speak the same API."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
REFERENCE_DIR = BENCH_DIR / "reference"
RESULTS_DIR = BENCH_DIR / "results"
ALL_APPS = ("design", "bare", "service", "service-w2")


def app_kind(name: str) -> str:
    """`service+LOG_LEVEL=warning` is the service with that setting: its kind is `service`."""
    return name.split("+", 1)[0]


def app_settings(name: str) -> dict[str, str]:
    """The settings a variant's name adds to its environment (`+KEY=VALUE` each)."""
    settings = {}
    for item in name.split("+")[1:]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(f"app {name!r}: write each setting as +KEY=VALUE")
        settings[key] = value
    return settings


class BenchError(Exception):
    """A failure to report as one line and exit 1."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def plain_url(url: str) -> str:
    """postgresql+asyncpg://... -> postgresql://... (what asyncpg and psql take)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise BenchError(f"not a database URL: {url!r}")
    scheme = scheme.split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    return f"{scheme}://{rest}"


def with_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


def asyncpg_url(url: str) -> str:
    scheme, _, rest = plain_url(url).partition("://")
    return f"postgresql+asyncpg://{rest}"


class Database:
    """PostgreSQL for the run: an embedded server, or a fresh database on a given server."""

    def __init__(self, given_url: str | None, keep: bool) -> None:
        self.given_url = plain_url(given_url) if given_url else None
        self.keep = keep
        self.embedded = None
        self.tmpdir: str | None = None
        self.name = f"wiki_bench_{os.getpid()}_{int(time.time())}"
        self.url = ""  # plain postgresql:// URL of the fresh database
        self.version = ""
        self.max_connections = 0
        self.created = False

    def start(self) -> None:
        if self.given_url:
            admin = self.given_url
        else:
            try:
                import warnings

                warnings.filterwarnings("ignore", module="platformdirs")
                from app.embedded import EmbeddedPostgres
            except ImportError as exc:
                raise BenchError(f"cannot import the embedded PostgreSQL runner: {exc}") from exc
            self.tmpdir = tempfile.mkdtemp(prefix="wiki-bench-pg-")
            log(f"starting embedded PostgreSQL in {self.tmpdir}")
            try:
                self.embedded = EmbeddedPostgres(Path(self.tmpdir) / "data").start()
            except Exception as exc:
                raise BenchError(f"embedded PostgreSQL did not start: {_one_line(exc)}") from exc
            admin = self.embedded.url("postgres")
        self.url = with_database(admin, self.name)

        from app.embedded import create_database

        async def create() -> None:
            conn = await _connect(admin)
            try:
                self.version = await conn.fetchval("SHOW server_version")
                self.max_connections = int(await conn.fetchval("SHOW max_connections"))
            finally:
                await conn.close()
            await create_database(plain_url(admin), self.name)
            self.created = True

        asyncio.run(create())
        log(f"PostgreSQL {self.version}: fresh database {self.name}")

    def stop(self) -> None:
        if self.given_url and self.created and not self.keep:

            async def drop() -> None:
                conn = await _connect(self.given_url)
                try:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
                finally:
                    await conn.close()

            try:
                asyncio.run(drop())
            except Exception as exc:  # best effort at exit
                log(f"could not drop database {self.name}: {_one_line(exc)}")
        if self.embedded is not None:
            with contextlib.suppress(Exception):
                self.embedded.stop()
            self.embedded = None
        if self.tmpdir and not self.keep:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


async def _connect(url: str):
    import asyncpg

    try:
        return await asyncio.wait_for(asyncpg.connect(plain_url(url)), 30)
    except Exception as exc:
        raise BenchError(f"cannot connect to PostgreSQL at {_redact(url)}: {_one_line(exc)}") from exc


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def service_cli() -> str:
    """The `wiki-service` executable beside this Python, or on PATH."""
    candidate = Path(sys.executable).parent / "wiki-service"
    found = str(candidate) if candidate.exists() else shutil.which("wiki-service")
    if not found:
        raise BenchError(
            "the `wiki-service` command is not installed (pip install -e './wiki-service[embedded]')"
        )
    return found


def migrate(env: dict[str, str]) -> None:
    """The service's schema, by its own migrations."""
    log("migrating: wiki-service db upgrade")
    result = subprocess.run(
        [service_cli(), "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
        raise BenchError(f"`wiki-service db upgrade` failed ({result.returncode}): {tail[0]}")


def seed(db: Database, users: int, posts: int) -> tuple[int, int]:
    async def run() -> tuple[int, int]:
        conn = await _connect(db.url)
        try:
            await conn.execute(
                "INSERT INTO users (name) SELECT 'seed user ' || g FROM generate_series(1, $1) g",
                users,
            )
            lo, hi = await conn.fetchrow("SELECT min(id), max(id) FROM users")
            if hi - lo + 1 != users:
                raise BenchError(f"seeded user ids are not contiguous: {lo}..{hi} for {users}")
            await conn.execute(
                "INSERT INTO posts (user_id, content) "
                "SELECT $2 + (g % $3), repeat('seed post ', 10) || g "
                "FROM generate_series(1, $1) g",
                posts,
                lo,
                users,
            )
            await conn.execute("VACUUM ANALYZE users")
            await conn.execute("VACUUM ANALYZE posts")
            return lo, hi
        finally:
            await conn.close()

    return asyncio.run(run())


@dataclass
class App:
    name: str
    argv: list[str]
    port: int
    log_path: Path
    settings: dict[str, str] = field(default_factory=dict)  # added to the shared environment
    proc: subprocess.Popen | None = None
    peak_rss: dict[int, int] = field(default_factory=dict)  # pid -> bytes
    cmdlines: dict[int, str] = field(default_factory=dict)
    children: dict[int, bool] = field(default_factory=dict)  # pid -> had children when seen

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def uvicorn_argv(module: str, port: int) -> list[str]:
    # The same server settings as the service: uvloop + httptools, no access log, 1 process.
    return [
        sys.executable,
        "-m",
        "uvicorn",
        f"{module}:app",
        "--app-dir",
        str(REFERENCE_DIR),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        "--workers",
        "1",
    ]


def build_apps(names: list[str], logdir: Path) -> list[App]:
    apps = []
    for name in names:
        port, kind = free_port(), app_kind(name)
        if kind in ("design", "bare"):
            argv = uvicorn_argv(f"{kind}_app", port)
        else:
            argv = [service_cli(), "serve", "--host", "127.0.0.1", "--port", str(port)]
            if kind == "service-w2":
                argv += ["--workers", "2"]
        log_name = name.replace("/", "_")
        apps.append(App(name, argv, port, logdir / f"{log_name}.log", app_settings(name)))
    return apps


def start_apps(apps: list[App], env: dict[str, str], timeout: float) -> None:
    for app in apps:
        log(
            f"starting {app.name} on port {app.port}: "
            + " ".join(Path(a).name if i == 0 else a for i, a in enumerate(app.argv))
        )
        with open(app.log_path, "wb") as handle:  # the child keeps its own descriptor
            app.proc = subprocess.Popen(
                app.argv,
                env={**env, **app.settings},
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(REPO_DIR),
            )
    for app in apps:
        wait_ready(app, timeout)


def last_log_line(app: App) -> str:
    try:
        lines = [ln for ln in app.log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def wait_ready(app: App, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if app.proc.poll() is not None:
            raise BenchError(
                f"app {app.name} exited with {app.proc.returncode} on startup: "
                f"{last_log_line(app)} (log: {app.log_path})"
            )
        try:
            status, _ = http(app, "GET", "/user/1", timeout=2)
            if status in (200, 404):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(
                f"app {app.name} did not answer on port {app.port} within {timeout:.0f}s: "
                f"{last_log_line(app)} (log: {app.log_path})"
            )
        time.sleep(0.2)


def stop_apps(apps: list[App]) -> None:
    for app in apps:
        if app.proc and app.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(app.proc.pid, signal.SIGTERM)
    for app in apps:
        if not app.proc:
            continue
        try:
            app.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(app.proc.pid, signal.SIGKILL)
            app.proc.wait(timeout=5)


def http(app: App, method: str, path: str, body: dict | None = None, timeout: float = 10):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        app.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw or b"null")
        except ValueError:
            return err.code, raw.decode(errors="replace")


def check_contract(app: App, user_id_max: int) -> None:
    """Each app must speak the same API, or the comparison means nothing."""

    def expect(cond: bool, what: str) -> None:
        if not cond:
            raise BenchError(f"app {app.name} breaks the API contract: {what}")

    status, body = http(app, "POST", "/users", {"name": "contract check"})
    expect(
        status == 201
        and isinstance(body, dict)
        and set(body) >= {"id", "name", "created_time"}
        and body["name"] == "contract check",
        f"POST /users -> {status} {body!r}",
    )
    user_id = body["id"]
    status, got = http(app, "GET", f"/user/{user_id}")
    expect(
        status == 200 and got.get("id") == user_id and got.get("name") == "contract check",
        f"GET /user/{user_id} -> {status} {got!r}",
    )
    status, got = http(app, "GET", f"/user/{user_id_max * 1000 + 7}")
    expect(status == 404 and got == {"detail": "User not found"}, f"GET /user/<missing> -> {status} {got!r}")
    status, got = http(app, "POST", "/posts", {"user_id": user_id, "content": "contract check"})
    expect(
        status == 201
        and isinstance(got, dict)
        and set(got) >= {"post_id", "content", "user_id", "created_time"}
        and got["user_id"] == user_id,
        f"POST /posts -> {status} {got!r}",
    )
    status, got = http(app, "POST", "/posts", {"user_id": user_id_max * 1000 + 7, "content": "x"})
    expect(status == 404, f"POST /posts for a missing user -> {status} {got!r}")
