"""The image tests' database: a role with a hostile password owning a database on the suite's
server, and the password as a mounted Secret file."""

from __future__ import annotations

import asyncio
import os
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url

from app.embedded import create_database
from tests.image.podman import APP_UID
from tests.support.db import create_role, drop_role_and_database

# Every character that breaks a naively built URL, a shell line or a SQL literal.
IMAGE_PASSWORD = "im@ge:/#%'\" pw\\;$&?="
SECRET_FORMS = (IMAGE_PASSWORD, urllib.parse.quote(IMAGE_PASSWORD), urllib.parse.quote_plus(IMAGE_PASSWORD))
SECRET_FILE = "/run/secrets/db-password"


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
        return {
            "DB_HOST": self.host,
            "DB_PORT": str(self.port),
            "DB_USER": self.user,
            "DB_NAME": self.name,
            "DB_PASSWORD_FILE": SECRET_FILE,
            **extra,
        }

    @property
    def volumes(self) -> tuple[str, ...]:
        return (f"{self.password_file}:{SECRET_FILE}:ro",)

    @property
    def url(self) -> str:
        """libpq URL with the password, for the test's own checks."""
        return (
            make_url(f"postgresql://{self.host}:{self.port}")
            .set(username=self.user, password=IMAGE_PASSWORD, database=self.name)
            .render_as_string(hide_password=False)
        )


def create_image_database(admin_url: str, directory: Path) -> ImageDatabase:
    """A role with IMAGE_PASSWORD owning a new database; its password file in `directory`."""
    server = make_url(admin_url)
    role = f"image_{uuid.uuid4().hex[:10]}"
    asyncio.run(create_role(admin_url, role, IMAGE_PASSWORD))
    asyncio.run(create_database(admin_url, role, owner=role))
    # The Secret as Kubernetes mounts it: a file the app's uid can read, ending in a newline.
    password_file = directory / "db-password"
    password_file.write_text(IMAGE_PASSWORD + "\n")
    os.chown(password_file, APP_UID, APP_UID)
    password_file.chmod(0o400)
    return ImageDatabase(server.host or "127.0.0.1", server.port or 5432, role, role, password_file)


def drop_image_database(admin_url: str, database: ImageDatabase) -> None:
    asyncio.run(drop_role_and_database(admin_url, database.name, database.user))
