"""Debian's PgBouncer as a real process: its own ini and userlist, a free port, transaction pooling."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from app.embedded import SERVICE_USER, free_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"  # scripts/lib/install-db-tools


class PgBouncer:
    """One database `name` on 127.0.0.1:port, pooled onto the server at host:server_port."""

    def __init__(
        self,
        *,
        host: str,
        server_port: int,
        database: str,
        user: str,
        password: str,
        name: str = "wiki",
        pool_size: int = 4,
        pool_mode: str = "transaction",
    ) -> None:
        self.name, self.user, self.port = name, user, free_port()
        self.host = "127.0.0.1"
        self.root = Path(tempfile.mkdtemp(prefix="wiki-pgbouncer-"))
        self.log_path = self.root / "pgbouncer.log"
        quoted = password.replace('"', '""')
        (self.root / "userlist.txt").write_text(f'"{user}" "{quoted}"\n')
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{name} = host={host} port={server_port} dbname={database}\n"
            "[pgbouncer]\n"
            f"listen_addr = {self.host}\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = scram-sha-256\nauth_file = {self.root / 'userlist.txt'}\n"
            f"pool_mode = {pool_mode}\ndefault_pool_size = {pool_size}\nmin_pool_size = 0\n"
            "max_client_conn = 500\n"
            f"logfile = {self.log_path}\n"
        )
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> PgBouncer:
        if not os.path.exists(PGBOUNCER):
            raise RuntimeError("pgbouncer is not installed: run scripts/lib/install-db-tools")
        as_user = None
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            as_user = SERVICE_USER
            for path in (self.root, *self.root.iterdir()):
                shutil.chown(path, SERVICE_USER, SERVICE_USER)
        self.process = subprocess.Popen(
            [PGBOUNCER, str(self.root / "pgbouncer.ini")],
            user=as_user,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited {self.process.returncode}: {self.log()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=1):
                return self
            time.sleep(0.05)
        raise TimeoutError(f"pgbouncer not listening after {timeout}s: {self.log()[-2000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
