"""podman for the image tests: the machine's setup, builds, hardened containers.

Every podman call goes through `podman()`, which points podman at tests/image/containers.conf
and chroot isolation for builds (see that file for why).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
SERVICE = REPO / "wiki-service"
CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
BASE_IMAGE = "localhost/bookworm-python:3.11"
IMAGE = "localhost/wiki-service:test"
OWN_LAYERS_BUDGET = 150 * 1000 * 1000  # bytes, as podman counts image sizes
FIGURES: dict[str, str] = {}  # name: figure, for the run's summary (the image tests' conftest)
APP_UID = 10001
# What the chart and compose.yaml ask for: nothing writable but /tmp, no capabilities.
HARDENED = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF), "BUILDAH_ISOLATION": "chroot"}


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["podman", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=podman_env(),
        stdin=subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"podman {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
            f"\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    return proc


def run_script(name: str, timeout: float = 900) -> None:
    """scripts/lib/NAME (installs system tools, builds the stand-in base); FAIL with its output."""
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "lib" / name)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=podman_env(),
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/lib/{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}", pytrace=False
        )


def build(context: Path, tag: str, *args: str) -> str:
    """`podman build` the way these machines can: chroot isolation, host network, and the CA
    bundle pip needs mounted at the same path. Docker format keeps the HEALTHCHECK."""
    cert = os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt"
    mount = ("-v", f"{cert}:{cert}:ro") if Path(cert).is_file() else ()
    proc = podman(
        "build",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--format",
        "docker",
        *mount,
        "--build-arg",
        f"PYTHON_IMAGE={BASE_IMAGE}",
        *args,
        "-t",
        tag,
        str(context),
        timeout=900,
    )
    return proc.stdout + proc.stderr


def inspect(kind: str, name: str) -> dict:
    return json.loads(podman(kind, "inspect", name).stdout)[0]


def image_size(name: str) -> int:
    return int(inspect("image", name)["Size"])


def logs(container: str) -> str:
    proc = podman("logs", container, check=False)
    return proc.stdout + proc.stderr


def wait_http(url: str, container: str, timeout: float = 60) -> None:
    """Polls `url` until it answers 200; FAILs with the container's logs if it exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = inspect("container", container)["State"]
        if not state["Running"]:
            pytest.fail(f"{container} exited {state['ExitCode']}:\n{logs(container)[-3000:]}", pytrace=False)
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.3)
    pytest.fail(f"{url} not answering after {timeout}s:\n{logs(container)[-3000:]}", pytrace=False)


class Container:
    """One detached container, removed by `remove()`."""

    def __init__(
        self,
        image: str,
        *args: str,
        env: dict[str, str] | None = None,
        volumes: tuple[str, ...] = (),
        command: tuple[str, ...] = (),
    ) -> None:
        self.name = f"wiki-test-{uuid.uuid4().hex[:10]}"
        env_args = [part for key, value in (env or {}).items() for part in ("-e", f"{key}={value}")]
        volume_args = [part for volume in volumes for part in ("-v", volume)]
        # No systemd here to run health checks on a timer; the tests run them on demand.
        podman(
            "run",
            "-d",
            "--name",
            self.name,
            "--health-interval",
            "disable",
            *HARDENED,
            *env_args,
            *volume_args,
            *args,
            image,
            *command,
        )

    def logs(self) -> str:
        return logs(self.name)

    def state(self) -> dict:
        return inspect("container", self.name)["State"]

    def exec(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *command, check=check)

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        """Runs the image's HEALTHCHECK command inside the container (exit 0: healthy)."""
        return podman("healthcheck", "run", self.name, check=False)

    def wait_http(self, url: str, timeout: float = 60) -> None:
        wait_http(url, self.name, timeout)

    def stop(self, grace: int) -> int:
        """`podman stop`: SIGTERM, then SIGKILL after `grace` seconds. Returns the exit code."""
        podman("stop", "--time", str(grace), self.name, timeout=grace + 60)
        return int(self.state()["ExitCode"])

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, check=False)


def run_once(
    image: str, *command: str, env: dict[str, str] | None = None, volumes: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`podman run --rm`, hardened, for a one-shot command; the result is returned, not checked."""
    env_args = [part for key, value in (env or {}).items() for part in ("-e", f"{key}={value}")]
    volume_args = [part for volume in volumes for part in ("-v", volume)]
    return podman(
        "run",
        "--rm",
        "--health-interval",
        "disable",
        *HARDENED,
        *env_args,
        *volume_args,
        image,
        *command,
        check=False,
    )
