"""The repository's compose.yaml brought up for real with podman-compose.

db runs a stand-in (compose.stand-in-db.yaml: postgres:16-alpine cannot be pulled here); the
rest runs as written: the healthcheck, `env_file`, `read_only`, `tmpfs`, the published port,
the named volume, then `down --volumes`.

`depends_on` is the one part podman-compose cannot do on Debian's podman 4.3: it skips
`service_healthy` below podman 4.6, podman runs healthchecks on systemd timers (none here),
and `podman start` of api fails on 4.3 because api `--requires` migrate, which requires db
("not found in input list"). So this test honours compose.yaml's conditions itself, in the
file's dependency order: before `up --detach --no-deps SERVICE`, each dependency of SERVICE
meets its condition (service_healthy: its healthcheck, compose.yaml's pg_isready, run with
`podman healthcheck run` until it passes; service_completed_successfully: `podman wait`
exits 0). Podman's records (health log, start and finish times) show the order afterwards;
tests/deploy/test_deploy_tooling.py checks that compose.yaml declares these conditions.
"""

from __future__ import annotations

import graphlib
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml

from app.embedded import free_port
from tests.image.podman import REPO, build, inspect, logs, podman, podman_env, wait_http

pytestmark = pytest.mark.image

STAND_IN_DIR = Path(__file__).with_name("stand-in-postgres")
STAND_IN_OVERRIDE = Path(__file__).with_name("compose.stand-in-db.yaml")
STAND_IN_DB_IMAGE = "localhost/stand-in-postgres:15"
COMPOSE_APP_IMAGE = "localhost/wiki-service:dev"  # compose.yaml's `image: wiki-service:dev`
# Breaks a naively built URL or shell line; single-quoted in .env, so taken literally.
COMPOSE_PASSWORD = "c0mp@se:/#%? pw;&="
HEALTHY_WITHIN = 60  # seconds: compose.yaml's start_period 10s + retries 10 x interval 5s


@pytest.fixture(scope="module")
def stand_in_db_image(image_tools) -> str:
    """Built once; later runs reuse podman's layer cache (a few seconds)."""
    build(STAND_IN_DIR, STAND_IN_DB_IMAGE)
    return STAND_IN_DB_IMAGE


def podman_time(text: str) -> datetime:
    """podman's RFC 3339 times carry nanoseconds; datetime takes microseconds."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00"))


@dataclass
class Compose:
    """One podman-compose project: the real compose.yaml (linked into `directory`, so that
    its relative `.env` is the test's) plus the stand-in override, under a unique name."""

    directory: Path
    project: str
    api_port: int

    def __call__(self, *args: str) -> str:
        command = [
            sys.executable,
            "-m",
            "podman_compose",
            "--project-name",
            self.project,
            "--file",
            str(self.directory / "compose.yaml"),
            "--file",
            str(STAND_IN_OVERRIDE),
            *args,
        ]
        proc = subprocess.run(
            command,
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
            # "${API_PORT:-8000}:8000" then publishes on loopback only
            env={**podman_env(), "API_PORT": f"127.0.0.1:{self.api_port}"},
        )
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            pytest.fail(
                f"podman-compose {' '.join(args)} failed ({proc.returncode}):\n{output[-3000:]}",
                pytrace=False,
            )
        return output

    def container(self, service: str) -> str:
        names = podman(
            "ps",
            "--all",
            "--format",
            "{{.Names}}",
            "--filter",
            f"label=io.podman.compose.project={self.project}",
            "--filter",
            f"label=com.docker.compose.service={service}",
        ).stdout.split()
        assert len(names) == 1, (service, names)
        return names[0]

    def leftovers(self) -> dict[str, list[str]]:
        """What podman still holds of this project (empty lists once it is down)."""
        label = f"label=io.podman.compose.project={self.project}"
        return {
            "containers": podman("ps", "--all", "--format", "{{.Names}}", "--filter", label).stdout.split(),
            "networks": [
                name
                for name in podman("network", "ls", "--format", "{{.Name}}").stdout.split()
                if name.startswith(f"{self.project}_")
            ],
            "volumes": [
                name
                for name in podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
                if name.startswith(f"{self.project}_")
            ],
        }


@dataclass
class Stack:
    compose: Compose
    env_file: dict[str, str]
    output: str  # what podman-compose printed
    healthy_at: datetime  # end of db's first passing healthcheck

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.compose.api_port}"

    def inspect(self, service: str) -> dict:
        return inspect("container", self.compose.container(service))


def write_env_file(directory: Path) -> dict[str, str]:
    """What the README says to do: copy .env.example and set DB_PASSWORD."""
    lines = [
        f"DB_PASSWORD='{COMPOSE_PASSWORD}'" if line.startswith("DB_PASSWORD=") else line
        for line in (REPO / ".env.example").read_text().splitlines()
    ]
    (directory / ".env").write_text("\n".join(lines) + "\n")
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {**values, "DB_PASSWORD": COMPOSE_PASSWORD}


def wait_healthy(container: str) -> datetime:
    """Runs the container's healthcheck until it passes; when the first pass ended."""
    deadline = time.monotonic() + HEALTHY_WITHIN
    while podman("healthcheck", "run", container, check=False).returncode != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"{container} not healthy after {HEALTHY_WITHIN}s:\n{logs(container)}", pytrace=False)
        time.sleep(1)
    health = inspect("container", container)["State"]["Health"]
    assert health["Status"] == "healthy"
    return min(podman_time(entry["End"]) for entry in health["Log"] if entry["ExitCode"] == 0)


def declared_conditions() -> dict[str, dict[str, str]]:
    """compose.yaml's depends_on, per service: {dependency: condition}."""
    services = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]
    return {
        name: {dependency: spec["condition"] for dependency, spec in service.get("depends_on", {}).items()}
        for name, service in services.items()
    }


def meet(compose: Compose, dependency: str, condition: str, healthy_at: dict[str, datetime]) -> None:
    """Waits until `dependency` meets `condition`, as compose would before starting a dependant."""
    container = compose.container(dependency)
    if condition == "service_healthy":
        passed_at = wait_healthy(container)  # checked again for each dependant; the first pass counts
        healthy_at.setdefault(dependency, passed_at)
    elif condition == "service_completed_successfully":
        exit_code = podman("wait", container, timeout=120).stdout.strip()
        if exit_code != "0":
            pytest.fail(f"{dependency} exited {exit_code}:\n{logs(container)}", pytrace=False)
    else:
        assert condition == "service_started", condition
        assert inspect("container", container)["State"]["Running"]


@pytest.fixture(scope="module")
def stack(image: str, stand_in_db_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # compose.yaml's app services use the image it would build; the session built it already.
    podman("tag", image, COMPOSE_APP_IMAGE)
    directory = tmp_path_factory.mktemp("compose")
    (directory / "compose.yaml").symlink_to(REPO / "compose.yaml")
    env_file = write_env_file(directory)
    compose = Compose(directory, f"wikicompose{uuid.uuid4().hex[:8]}", free_port())
    conditions = declared_conditions()
    output, healthy_at = "", {}
    try:
        for service in graphlib.TopologicalSorter(conditions).static_order():
            for dependency, condition in conditions[service].items():
                meet(compose, dependency, condition, healthy_at)
            output += compose("up", "--detach", "--no-build", "--no-deps", service)
        stack = Stack(compose, env_file, output, healthy_at["db"])
        wait_http(f"{stack.url}/readyz", compose.container("api"))
        yield stack
    finally:
        compose("down", "--volumes")
        podman("untag", image, COMPOSE_APP_IMAGE, check=False)


def test_db_healthcheck_is_compose_files_pg_isready(stack):
    health = stack.inspect("db")["Config"]["Healthcheck"]
    assert "pg_isready" in " ".join(health["Test"]), health
    assert stack.inspect("db")["State"]["Health"]["Status"] == "healthy"


def test_stand_in_db_takes_postgres_user_password_and_db(stack):
    """The app's login works (the other tests); a wrong password does not."""
    db = stack.compose.container("db")
    sql = (
        "psql",
        "--no-psqlrc",
        "--tuples-only",
        "--no-align",
        "-h",
        "127.0.0.1",
        "-U",
        stack.env_file["DB_USER"],
        "-d",
        stack.env_file["DB_NAME"],
        "-c",
        "SELECT current_user || ' ' || current_database()",
    )
    right = podman("exec", "-e", f"PGPASSWORD={COMPOSE_PASSWORD}", db, *sql)
    assert right.stdout.strip() == f"{stack.env_file['DB_USER']} {stack.env_file['DB_NAME']}"
    wrong = podman("exec", "-e", "PGPASSWORD=not-the-password", db, *sql, check=False)
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr


def test_migrate_runs_to_completion_after_db_is_healthy_then_api_starts(stack):
    migrate, api = stack.inspect("migrate")["State"], stack.inspect("api")["State"]
    assert migrate["Status"] == "exited" and migrate["ExitCode"] == 0, migrate
    assert "(head)" in logs(stack.compose.container("migrate"))
    assert stack.healthy_at <= podman_time(migrate["StartedAt"])
    assert podman_time(migrate["FinishedAt"]) <= podman_time(api["StartedAt"])
    assert api["Running"], api


def test_api_answers_on_the_published_port(stack):
    bindings = stack.inspect("api")["HostConfig"]["PortBindings"]["8000/tcp"]
    assert bindings == [{"HostIp": "127.0.0.1", "HostPort": str(stack.compose.api_port)}]
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        assert http.get("/readyz").status_code == 200
        created = http.post("/users", json={"name": "from compose"})
        assert created.status_code == 201, created.text
        fetched = http.get(f"/users/{created.json()['id']}")
        assert fetched.status_code == 200 and fetched.json()["name"] == "from compose"


def test_api_runs_read_only_with_tmpfs(stack):
    host = stack.inspect("api")["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert "/tmp" in host["Tmpfs"], host["Tmpfs"]
    assert "no-new-privileges" in " ".join(host["SecurityOpt"]), host["SecurityOpt"]
    api = stack.compose.container("api")
    assert podman("exec", api, "touch", "/tmp/written").returncode == 0
    readonly = podman("exec", api, "touch", "/opt/written", check=False)
    assert readonly.returncode != 0 and "Read-only file system" in readonly.stderr


def test_env_file_reaches_the_app_containers(stack):
    for service in ("migrate", "api"):
        env = dict(item.split("=", 1) for item in stack.inspect(service)["Config"]["Env"])
        missing = sorted(key for key, value in stack.env_file.items() if env.get(key) != value)
        assert not missing, f"{service}: .env values not in the container: {missing}"
        assert (env["DB_HOST"], env["DB_PORT"]) == ("db", "5432")  # compose.yaml's environment


def test_no_password_in_logs(stack):
    texts = {service: logs(stack.compose.container(service)) for service in ("db", "migrate", "api")}
    assert "stand-in postgres: initialised" in texts["db"]
    for where, text in {**texts, "podman-compose": stack.output}.items():
        assert COMPOSE_PASSWORD not in text, f"the password is in the {where} output"


def test_down_removes_everything(stack):
    assert all(stack.compose.leftovers().values())  # containers, network and volume exist
    stack.compose("down", "--volumes")
    assert stack.compose.leftovers() == {"containers": [], "networks": [], "volumes": []}
