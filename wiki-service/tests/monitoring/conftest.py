"""Monitoring fixtures: the chart's monitoring objects, and a live Prometheus on loopback that
scrapes two running `wiki-service serve` processes labelled as the Prometheus Operator labels
the pods behind a ServiceMonitor (namespace, service, pod)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from app.embedded import free_port
from tests.deploy.deploy_helpers import NAMESPACE, by_kind, render
from tests.image.podman import run_script
from tests.monitoring.prometheus import MONITORING, LivePrometheus, traffic, wait_until
from tests.support.cli import service_env
from tests.support.server import Servers


@pytest.fixture(scope="session")
def monitoring_objects() -> list[dict]:
    return render(sets=MONITORING)


@pytest.fixture(scope="session")
def service_name(monitoring_objects) -> str:
    """The api Service's name: what the operator puts in the `service` label."""
    (service,) = [
        s
        for s in by_kind(monitoring_objects, "Service")
        if s["metadata"]["labels"].get("app.kubernetes.io/component") == "api"
    ]
    return service["metadata"]["name"]


@pytest.fixture(scope="session")
def rules_file(monitoring_objects, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The PrometheusRule's groups as a Prometheus rules file."""
    (rule,) = by_kind(monitoring_objects, "PrometheusRule")
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


@pytest.fixture(scope="session")
def prometheus_tools() -> None:
    run_script("install-image-tools")


@pytest.fixture(scope="module")
def live_prometheus(
    prometheus_tools, db_url, service_name, rules_file, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LivePrometheus]:
    folder = tmp_path_factory.mktemp("prometheus")
    with Servers() as servers:
        api_a = servers(workers=2)
        unreachable = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/nothing"
        api_b = servers(service_env(DATABASE_URL=unreachable, DB_POOL_TIMEOUT="1"))
        port = free_port()
        labels = {"namespace": NAMESPACE, "service": service_name, "endpoint": "http"}
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules_file)],
            "scrape_configs": [
                {
                    "job_name": service_name,
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{api_a.port}"], "labels": {**labels, "pod": "api-a"}},
                        {"targets": [f"127.0.0.1:{api_b.port}"], "labels": {**labels, "pod": "api-b"}},
                    ],
                }
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = (folder / "prometheus.log").open("wb")
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        live = LivePrometheus(f"http://127.0.0.1:{port}", api_a, api_b)
        try:
            wait_until(lambda: len(live.query("up == 1")) == 2, process, folder, "both targets up")
            traffic(api_a.base_url, api_b.base_url)
            # the scrapes after the traffic, so every series has samples in a rate window
            # two scrapes of the last series the traffic made (the 503s), so rate() has a window
            wait_until(
                lambda: (
                    live.query("sum(users_created_total) >= 20")
                    and live.query('count_over_time(http_requests_total{status="503"}[30s]) >= 2')
                ),
                process,
                folder,
                "the traffic scraped",
            )
            yield live
        finally:
            process.terminate()
            process.wait(20)
            log.close()
