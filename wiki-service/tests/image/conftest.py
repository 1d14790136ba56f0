"""Image-test fixtures: the machine's tools, the image built once per run, a database for it.

The tools come from scripts/lib/install-image-tools (Debian packages, once per machine) and
the stand-in base from scripts/lib/image-base (cached as a tarball and in podman's store), so
a second run only rebuilds the image's own layers, and podman's layer cache makes that quick.
"""

from __future__ import annotations

import asyncio
import os
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import make_url

from tests.conftest import admin_execute
from tests.image.podman import APP_UID, BASE_IMAGE, SERVICE, build, image_size, run_script

IMAGE = "localhost/wiki-service:test"
# Every character that breaks a naively built URL, a shell line or a SQL literal.
IMAGE_PASSWORD = "im@ge:/#%'\" pw\\;$&?="
SECRET_FORMS = (IMAGE_PASSWORD, urllib.parse.quote(IMAGE_PASSWORD), urllib.parse.quote_plus(IMAGE_PASSWORD))
SECRET_FILE = "/run/secrets/db-password"
OWN_LAYERS_BUDGET = 150 * 1000 * 1000  # bytes, as podman counts image sizes

FIGURES: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    if FIGURES:
        terminalreporter.section("image figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def image_tools() -> None:
    """podman, buildah, runc, docker-registry, skopeo, prometheus, ... and the stand-in base."""
    run_script("install-image-tools")
    run_script("image-base")


@pytest.fixture(scope="session")
def image(image_tools) -> str:
    """The service's image, built from wiki-service/Dockerfile on the stand-in base."""
    log = build(SERVICE, IMAGE)
    total, base = image_size(IMAGE), image_size(BASE_IMAGE)
    FIGURES["image size"] = (f"{total / 1e6:.1f} MB in all, {(total - base) / 1e6:.1f} MB of own layers "
                             f"on the {base / 1e6:.1f} MB stand-in base (budget {OWN_LAYERS_BUDGET / 1e6:.0f} MB)")
    assert "Successfully tagged" in log or "COMMIT" in log
    return IMAGE


@dataclass
class ImageDatabase:
    """A database owned by a role with a hostile password, on the suite's server."""

    host: str
    port: int
    user: str
    name: str
    password_file: Path

    def env(self, **extra: str) -> dict[str, str]:
        """What a container gets: no password, only the path of the mounted secret."""
        return {"DB_HOST": self.host, "DB_PORT": str(self.port), "DB_USER": self.user,
                "DB_NAME": self.name, "DB_PASSWORD_FILE": SECRET_FILE, **extra}

    @property
    def volumes(self) -> tuple[str, ...]:
        return (f"{self.password_file}:{SECRET_FILE}:ro",)

    @property
    def url(self) -> str:
        """libpq URL with the password, for the test's own checks."""
        return make_url(f"postgresql://{self.host}:{self.port}").set(
            username=self.user, password=IMAGE_PASSWORD, database=self.name
        ).render_as_string(hide_password=False)


def create_image_database(admin_url: str, directory: Path) -> ImageDatabase:
    """A role with IMAGE_PASSWORD owning a new database; its password file in `directory`."""
    server = make_url(admin_url)
    role = f"image_{uuid.uuid4().hex[:10]}"
    quoted = IMAGE_PASSWORD.replace("'", "''")
    asyncio.run(admin_execute(admin_url, f"CREATE ROLE {role} LOGIN PASSWORD '{quoted}'",
                              f"CREATE DATABASE {role} OWNER {role}"))
    # The Secret as Kubernetes mounts it: a file the app's uid can read, ending in a newline.
    password_file = directory / "db-password"
    password_file.write_text(IMAGE_PASSWORD + "\n")
    os.chown(password_file, APP_UID, APP_UID)
    password_file.chmod(0o400)
    return ImageDatabase(server.host or "127.0.0.1", server.port or 5432, role, role, password_file)


def drop_image_database(admin_url: str, database: ImageDatabase) -> None:
    asyncio.run(admin_execute(admin_url, f"DROP DATABASE IF EXISTS {database.name} WITH (FORCE)",
                              f"DROP ROLE IF EXISTS {database.user}"))


@pytest.fixture(scope="session")
def image_db(admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageDatabase]:
    database = create_image_database(admin_url, tmp_path_factory.mktemp("secret"))
    yield database
    drop_image_database(admin_url, database)


@pytest.fixture
def empty_image_db(admin_url: str, tmp_path: Path) -> Iterator[ImageDatabase]:
    database = create_image_database(admin_url, tmp_path)
    yield database
    drop_image_database(admin_url, database)
