"""The one way the tests start the service as a process: `Servers`, a factory that stops what
it started (the `serve` fixture is one per test; module-scoped fixtures open their own)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from app.embedded import free_port
from tests.support.cli import SERVICE_DIR, service_env


class Server:
    """`wiki-service serve` (or `command`, listening on `port`) in a subprocess, its output in a file."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 1,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        command: Sequence[str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="wiki-serve-", suffix=".log")[1])
        self._log = self.log_path.open("wb")
        argv = command or [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(workers),
            *extra_args,
        ]
        self.process = subprocess.Popen(
            list(argv),
            cwd=SERVICE_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def wait_healthy(self, timeout: float = 30, path: str = "/healthz") -> Server:
        """Wait until `path` answers 200; fail with the output's tail if the process exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}: {self.output()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}{path}", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise TimeoutError(f"server not healthy after {timeout}s: {self.output()[-2000:]}")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send `sig`, wait up to `timeout` (then SIGKILL); return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


class Servers:
    """Factory: start servers (healthy when returned unless wait=False); `close` stops them all."""

    def __init__(self) -> None:
        self.started: list[Server] = []

    def __call__(self, env: dict[str, str] | None = None, *, wait: bool = True, **kwargs) -> Server:
        server = Server(env if env is not None else service_env(), **kwargs)
        self.started.append(server)
        return server.wait_healthy() if wait else server

    def close(self) -> None:
        for server in self.started:
            server.stop()
            # Shown by pytest when the test failed: what went wrong inside the service.
            errors = [line for line in server.output().splitlines() if '"level":"error"' in line]
            if errors:
                print(
                    f"--- {server.base_url} logged {len(errors)} errors; the first:\n" + "\n".join(errors[:3])
                )

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
