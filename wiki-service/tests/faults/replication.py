"""A primary and a synchronous standby with real streaming replication (Debian's PostgreSQL 15).

The standby is a pg_basebackup -R of the primary; the primary names it in
synchronous_standby_names, so a commit is acknowledged only once the standby has flushed it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from pathlib import Path

import asyncpg

from app.embedded import EmbeddedPostgres

PG15_BIN = Path("/usr/lib/postgresql/15/bin")  # scripts/lib/install-db-tools installs it
STANDBY_NAME = "wiki_standby"


class ReplicatedPair:
    """Two clusters in a temporary folder: `primary` streams to its synchronous `standby`."""

    def __init__(self, password: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="wiki-failover-"))
        self.password = password
        self.primary = EmbeddedPostgres(
            self.root / "primary",
            password=password,
            bin_dir=PG15_BIN,
            settings={"synchronous_standby_names": STANDBY_NAME},
        )
        # cluster_name is the walreceiver's application_name: the name the primary waits for.
        # Without synchronous_standby_names of its own, the promoted standby never waits.
        self.standby = EmbeddedPostgres(
            self.root / "standby",
            password=password,
            bin_dir=PG15_BIN,
            settings={"cluster_name": STANDBY_NAME},
        )
        self._orphans: list[int] = []

    def start(self) -> ReplicatedPair:
        self.primary.start()
        self.standby.run(
            "pg_basebackup",
            "-D",
            str(self.standby.data_dir),
            "-h",
            self.primary.host,
            "-p",
            str(self.primary.port),
            "-U",
            "postgres",
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            env={"PGPASSWORD": self.password},
        )
        self.standby.start()
        asyncio.run(self._wait_synchronous())
        return self

    async def _wait_synchronous(self, timeout: float = 60) -> None:
        conn = await asyncpg.connect(self.primary.url())
        try:
            async with asyncio.timeout(timeout):
                while (
                    await conn.fetchval(
                        "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1", STANDBY_NAME
                    )
                    != "sync"
                ):
                    await asyncio.sleep(0.1)
        finally:
            await conn.close()

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster (a crashed machine, as far as clients can tell)."""
        pid = int((self.primary.data_dir / "postmaster.pid").read_text().split()[0])
        self._orphans = _children(pid)  # they exit by themselves once they notice; checked at stop
        os.kill(pid, signal.SIGKILL)

    def promote_standby(self) -> None:
        self.standby.run("pg_ctl", "-D", str(self.standby.data_dir), "-w", "-t", "60", "promote")

    def stop(self) -> None:
        self.standby.stop("immediate")
        if self.primary.is_running():
            self.primary.stop("immediate")
        for pid in self._orphans:  # a backend of the killed postmaster that has not exited yet
            if _is_postgres(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The command may contain spaces and parentheses: the fields after the last ")".
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == pid:
                children.append(int(entry.name))
    return children


def _is_postgres(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().startswith(b"postgres")
    except OSError:
        return False
