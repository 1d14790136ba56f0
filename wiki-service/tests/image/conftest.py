"""Image-test fixtures: the machine's tools, the image built once per run, a database for it.

The tools come from scripts/lib/install-image-tools (Debian packages, once per machine) and
the stand-in base from scripts/lib/image-base (cached as a tarball and in podman's store), so
a second run only rebuilds the image's own layers, and podman's layer cache makes that quick.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.image.database import ImageDatabase, create_image_database, drop_image_database
from tests.image.podman import (
    BASE_IMAGE,
    FIGURES,
    IMAGE,
    OWN_LAYERS_BUDGET,
    SERVICE,
    build,
    image_size,
    run_script,
)


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
    FIGURES["image size"] = (
        f"{total / 1e6:.1f} MB in all, {(total - base) / 1e6:.1f} MB of own layers "
        f"on the {base / 1e6:.1f} MB stand-in base (budget {OWN_LAYERS_BUDGET / 1e6:.0f} MB)"
    )
    assert "Successfully tagged" in log or "COMMIT" in log
    return IMAGE


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
