"""The service as a subprocess: its environment, `wiki-service ARGS`, `python -c CODE`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SERVICE_DIR = Path(__file__).resolve().parents[2]
PRINT_URL = "from app.database import DATABASE_URL; print(DATABASE_URL)"


def service_env(**overrides: str) -> dict[str, str]:
    """The environment a subprocess of the service gets: the run's database, no DB_* left over."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DB_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(overrides)
    return env


def bare_env(**values: str) -> dict[str, str]:
    """`service_env` without the run's DATABASE_URL unless `values` sets one: the defaults apply."""
    env = service_env(**values)
    if "DATABASE_URL" not in values:
        env.pop("DATABASE_URL", None)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """`wiki-service ARGS` as a subprocess in wiki-service/, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=SERVICE_DIR,
        env=env if env is not None else service_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_python(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """`python -c CODE` in wiki-service/ (so `app` imports), output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=SERVICE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
