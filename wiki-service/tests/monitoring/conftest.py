"""Monitoring fixtures: the chart's monitoring objects, and a live Prometheus on loopback that
scrapes two running `wiki-service serve` processes labelled as the Prometheus Operator labels
the pods behind a ServiceMonitor (namespace, service, pod)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import Server, free_port, service_env
from tests.deploy.deploy_helpers import NAMESPACE, by_kind, render
from tests.image.podman import run_script

# The ci scenarios that turn the monitoring objects on, one feature each.
MONITORING = {"metrics.serviceMonitor.enabled": True, "metrics.prometheusRule.enabled": True,
              "metrics.grafanaDashboard.enabled": True}


@pytest.fixture(scope="session")
def monitoring_objects() -> list[dict]:
    return render(sets=MONITORING)


@pytest.fixture(scope="session")
def service_name(monitoring_objects) -> str:
    """The api Service's name: what the operator puts in the `service` label."""
    (service,) = [s for s in by_kind(monitoring_objects, "Service")
                  if s["metadata"]["labels"].get("app.kubernetes.io/component") == "api"]
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


@dataclass
class LivePrometheus:
    url: str
    api_a: Server  # serve --workers 2 on the suite's database
    api_b: Server  # a second "pod" whose database is unreachable: it answers 503s

    def query(self, expr: str) -> list[dict]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]


def _traffic(healthy: str, broken: str) -> None:
    with httpx.Client(base_url=healthy, timeout=10) as http:
        for i in range(20):
            user = http.post("/users", json={"name": f"monitored {i}"}).json()
            http.post("/posts", json={"user_id": user["id"], "content": f"post {i}"})
            http.get(f"/users/{user['id']}")
        http.get("/users/999999999")  # 404
        http.post("/users", json={"name": ""})  # 422
    with httpx.Client(base_url=broken, timeout=30) as http:
        for _ in range(5):
            assert http.get("/readyz").status_code == 503
            assert http.post("/users", json={"name": "lost"}).status_code == 503


@pytest.fixture(scope="module")
def live_prometheus(prometheus_tools, db_url, service_name, rules_file,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePrometheus]:
    folder = tmp_path_factory.mktemp("prometheus")
    api_a = Server(service_env(), workers=2).wait_healthy()
    unreachable = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/nothing"
    api_b = Server(service_env(DATABASE_URL=unreachable, DB_POOL_TIMEOUT="1")).wait_healthy()
    port = free_port()
    labels = {"namespace": NAMESPACE, "service": service_name, "endpoint": "http"}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_file)],
        "scrape_configs": [{
            "job_name": service_name,
            "static_configs": [
                {"targets": [f"127.0.0.1:{api_a.port}"], "labels": {**labels, "pod": "api-a"}},
                {"targets": [f"127.0.0.1:{api_b.port}"], "labels": {**labels, "pod": "api-b"}},
            ],
        }],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (folder / "prometheus.log").open("wb")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    live = LivePrometheus(f"http://127.0.0.1:{port}", api_a, api_b)
    try:
        _wait_until(lambda: len(live.query("up == 1")) == 2, process, folder, "both targets up")
        _traffic(api_a.base_url, api_b.base_url)
        # the scrapes after the traffic, so every series has samples in a rate window
        # two scrapes of the last series the traffic made (the 503s), so rate() has a window
        _wait_until(lambda: live.query("sum(users_created_total) >= 20")
                    and live.query('count_over_time(http_requests_total{status="503"}[30s]) >= 2'),
                    process, folder, "the traffic scraped")
        yield live
    finally:
        process.terminate()
        process.wait(20)
        log.close()
        api_a.stop()
        api_b.stop()


def _wait_until(check, process: subprocess.Popen, folder: Path, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError, AssertionError):
            if check():
                return
        time.sleep(0.5)
    pytest.fail(f"prometheus: no {what}:\n{(folder / 'prometheus.log').read_text()[-3000:]}", pytrace=False)
