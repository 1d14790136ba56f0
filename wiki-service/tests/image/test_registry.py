"""A registry round trip: Debian's docker-registry on loopback, the image pushed and pulled back
by digest into an empty image store, the chart pushed as OCI and rendered from oci://."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from app.embedded import free_port
from tests.deploy.deploy_helpers import CHART, helm_bin
from tests.image.podman import inspect, podman

pytestmark = pytest.mark.image


@pytest.fixture(scope="module")
def registry(image_tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a docker-registry (distribution) with its storage in a temporary folder."""
    folder = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(folder / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    (folder / "config.yml").write_text(yaml.safe_dump(config))
    log = (folder / "registry.log").open("wb")
    process = subprocess.Popen(
        ["docker-registry", "serve", str(folder / "config.yml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{address}/v2/", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"docker-registry did not start:\n{(folder / 'registry.log').read_text()}", pytrace=False
                )
            time.sleep(0.2)
        yield address
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture(scope="module")
def pushed(image: str, registry: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(repository, manifest digest) of the image pushed to the registry."""
    repository = f"{registry}/wiki-service"
    digest_file = tmp_path_factory.mktemp("push") / "digest"
    podman("push", "--tls-verify=false", "--digestfile", str(digest_file), image, f"{repository}:test")
    return repository, digest_file.read_text().strip()


def test_image_push_then_pull_by_digest_into_an_empty_store(image, pushed, tmp_path):
    repository, digest = pushed
    assert digest.startswith("sha256:")
    manifest = httpx.get(
        f"http://{repository.replace('/', '/v2/', 1)}/manifests/{digest}",
        timeout=10,
        headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
            "application/vnd.oci.image.manifest.v1+json"
        },
    )
    assert manifest.status_code == 200
    # A store of its own: every layer comes from the registry, none from the local cache.
    runroot = tempfile.mkdtemp(prefix="wiki-run-")  # podman wants a short runroot path
    store = ("--root", str(tmp_path / "root"), "--runroot", runroot, "--storage-driver", "vfs")
    pulled = podman(*store, "pull", "--quiet", "--tls-verify=false", f"{repository}@{digest}").stdout.strip()
    try:
        assert pulled == inspect("image", image)["Id"]
        (config,) = json.loads(podman(*store, "image", "inspect", pulled).stdout)
        assert config["Healthcheck"] == inspect("image", image)["Healthcheck"]  # docker format kept it
    finally:
        podman(*store, "rmi", "--all", "--force", check=False)
        shutil.rmtree(runroot, ignore_errors=True)


def helm(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """helm with its config, cache and registry login kept in `home`."""
    env = {
        **os.environ,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
        "HELM_REGISTRY_CONFIG": str(home / "registry.json"),
    }
    proc = subprocess.run([helm_bin(), *args], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_chart_push_as_oci_then_template_from_the_registry(registry, pushed, tmp_path):
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    helm("package", str(CHART), "--destination", str(tmp_path / "dist"), home=tmp_path)
    (package,) = (tmp_path / "dist").glob("wiki-service-*.tgz")
    pushed_chart = helm("push", str(package), f"oci://{registry}/charts", "--plain-http", home=tmp_path)
    assert f"{registry}/charts/wiki-service:{version}" in pushed_chart.stdout + pushed_chart.stderr
    repository, digest = pushed
    rendered = helm(
        "template",
        "wiki",
        f"oci://{registry}/charts/wiki-service",
        "--version",
        version,
        "--plain-http",
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.digest={digest}",
        home=tmp_path,
    ).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    images = {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert images == {f"{repository}@{digest}"}
