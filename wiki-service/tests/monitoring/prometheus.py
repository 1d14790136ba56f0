"""A live Prometheus for the monitoring tests: what it scrapes, the traffic it sees, waiting on it."""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.server import Server

# The ci scenarios that turn the monitoring objects on, one feature each.
MONITORING = {
    "metrics.serviceMonitor.enabled": True,
    "metrics.prometheusRule.enabled": True,
    "metrics.grafanaDashboard.enabled": True,
}


@dataclass
class LivePrometheus:
    url: str
    api_a: Server  # serve --workers 2 on the suite's database
    api_b: Server  # a second "pod" whose database is unreachable: it answers 503s

    def query(self, expr: str) -> list[dict]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert answer["status"] == "success", (expr, answer)
        return answer["data"]["result"]


def traffic(healthy: str, broken: str) -> None:
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


def wait_until(check, process: subprocess.Popen, folder: Path, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError, AssertionError):
            if check():
                return
        time.sleep(0.5)
    pytest.fail(f"prometheus: no {what}:\n{(folder / 'prometheus.log').read_text()[-3000:]}", pytrace=False)
