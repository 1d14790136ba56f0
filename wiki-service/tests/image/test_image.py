"""The service's image, built and run for real with podman against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
from packaging.utils import canonicalize_name

from app.embedded import free_port
from tests.image.database import SECRET_FORMS, ImageDatabase
from tests.image.podman import (
    APP_UID,
    BASE_IMAGE,
    FIGURES,
    OWN_LAYERS_BUDGET,
    SERVICE,
    Container,
    image_size,
    inspect,
    podman,
    run_once,
)
from tests.support.sqlite_source import clean_source

pytestmark = pytest.mark.image

GRACE_SECONDS = 25  # what the chart gives a pod; `serve` finishes in-flight requests in 20


def start_server(image: str, image_db: ImageDatabase, **env: str) -> Container:
    port = free_port()
    container = Container(image, env=image_db.env(PORT=str(port), **env), volumes=image_db.volumes)
    container.port = port
    container.wait_http(f"http://127.0.0.1:{port}/healthz")
    return container


@pytest.fixture(scope="module")
def migrated(image: str, image_db: ImageDatabase) -> ImageDatabase:
    result = run_once(image, "wiki-service", "db", "upgrade", env=image_db.env(), volumes=image_db.volumes)
    assert result.returncode == 0, result.stdout + result.stderr
    return image_db


@pytest.fixture(scope="module")
def served(image: str, migrated: ImageDatabase) -> Iterator[Container]:
    """The image's own CMD (`wiki-service serve`), on a port that is not 8000."""
    container = start_server(image, migrated)
    yield container
    container.remove()


def test_image_builds_within_its_size_budget(image):
    own = image_size(image) - image_size(BASE_IMAGE)
    assert 0 < own <= OWN_LAYERS_BUDGET, FIGURES["image size"]


def test_build_installs_exactly_the_lock(image):
    """The venv in the image holds the lock's pins and nothing else (the build used the lock)."""
    lock = (SERVICE / "requirements.lock").read_text()
    locked = {
        canonicalize_name(name): version
        for name, version in re.findall(r"^([A-Za-z0-9._-]+)==(\S+)", lock, re.M)
    }
    proc = podman(
        "run",
        "--rm",
        image,
        "python",
        "-m",
        "pip",
        "list",
        "--format",
        "json",
        "--exclude",
        "pip",
        "--exclude",
        "setuptools",
    )
    installed = {canonicalize_name(p["name"]): p["version"] for p in json.loads(proc.stdout)}
    assert installed.pop("wiki-service") == "0.1.0"
    assert installed == locked


def test_check_db_and_db_upgrade(image, image_db):
    check = run_once(image, "wiki-service", "check-db", env=image_db.env(), volumes=image_db.volumes)
    assert check.returncode == 0 and check.stdout.startswith("Connected to: PostgreSQL"), check.stderr
    upgrade = run_once(image, "wiki-service", "db", "upgrade", env=image_db.env(), volumes=image_db.volumes)
    assert upgrade.returncode == 0 and "(head)" in upgrade.stdout, upgrade.stderr
    current = run_once(image, "wiki-service", "db", "current", env=image_db.env(), volumes=image_db.volumes)
    assert current.returncode == 0, current.stdout + current.stderr


def test_runs_hardened(served):
    assert served.exec("id", "-u").stdout.strip() == str(APP_UID)
    status = dict(
        line.split(":\t", 1)
        for line in served.exec("cat", "/proc/1/status").stdout.splitlines()
        if ":\t" in line
    )
    for caps in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[caps], 16) == 0, (caps, status[caps])
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Uid"].split()[0] == str(APP_UID)
    write = served.exec("touch", "/opt/venv/x", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    assert served.exec("touch", "/tmp/x").returncode == 0


async def test_serves_against_postgresql(served, migrated):
    base = f"http://127.0.0.1:{served.port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        created = await http.post("/users", json={"name": "from the image"})
        assert created.status_code == 201, created.text
        user = created.json()
        fetched = await http.get(f"/users/{user['id']}")
        assert fetched.status_code == 200 and fetched.json() == user
        post = await http.post("/posts", json={"user_id": user["id"], "content": "hello"})
        assert post.status_code == 201, post.text
    conn = await asyncpg.connect(migrated.url)
    try:
        assert await conn.fetchval("SELECT name FROM users WHERE id = $1", user["id"]) == "from the image"
    finally:
        await conn.close()


def test_healthcheck_probes_port(image, served):
    healthcheck = inspect("image", image)["Healthcheck"]["Test"]
    assert healthcheck[0] == "CMD"
    assert served.healthcheck().returncode == 0, served.logs()[-2000:]
    # The same command with PORT naming a port nobody listens on fails: it follows PORT.
    elsewhere = served.exec("env", f"PORT={free_port()}", *healthcheck[1:], check=False)
    assert elsewhere.returncode != 0


def test_sigterm_exits_zero_within_the_grace_period(image, migrated):
    container = start_server(image, migrated)
    try:
        assert container.stop(GRACE_SECONDS) == 0, container.logs()[-2000:]
    finally:
        container.remove()


def test_migrate_sqlite_from_the_image(image, empty_image_db, tmp_path):
    target = empty_image_db
    upgrade = run_once(image, "wiki-service", "db", "upgrade", env=target.env(), volumes=target.volumes)
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    source = clean_source(tmp_path / "app.db", users=30, posts=60)
    source.chmod(0o444)
    result = run_once(
        image,
        "wiki-service",
        "migrate-sqlite",
        "/data/app.db",
        "--reject-report",
        "/tmp/rejects.jsonl",
        "--no-progress",
        env=target.env(),
        volumes=(*target.volumes, f"{source}:/data/app.db:ro"),
    )
    assert result.returncode == 0, result.stdout + result.stderr

    async def counts() -> tuple[int, int]:
        conn = await asyncpg.connect(target.url)
        try:
            return (
                await conn.fetchval("SELECT count(*) FROM users"),
                await conn.fetchval("SELECT count(*) FROM posts"),
            )
        finally:
            await conn.close()

    assert asyncio.run(counts()) == (30, 60)


def test_no_password_in_env_labels_history_or_logs(image, served):
    """Last in this module: the served container's log then holds every request above."""
    exposed = {
        "container config": json.dumps(inspect("container", served.name)),
        "image config and labels": json.dumps(inspect("image", image)),
        "layer history": podman("history", "--no-trunc", image).stdout,
        "logs": served.logs(),
    }
    assert "Application startup complete" in exposed["logs"]
    for where, text in exposed.items():
        for secret in SECRET_FORMS:
            assert secret not in text, f"the password is in the {where}"
