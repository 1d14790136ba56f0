"""Render the chart, then run the service exactly as the rendered pod would: same command, same
environment (ConfigMap, Secret refs, mounted Secret files), against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from sqlalchemy import make_url

from app.embedded import create_database, free_port
from deploy_helpers import CHART, one, render, resolve_env
from tests.support.db import create_role, drop_role_and_database

VENV_BIN = Path(sys.executable).parent
SERVICE_BIN = VENV_BIN / "wiki-service"


def _http(method: str, url: str, body: dict | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.parametrize(
    "values_file,sets",
    [
        (None, {}),
        # password as an env var, and two workers (Prometheus multiprocess dir under /tmp)
        (CHART / "ci" / "password-env-values.yaml", {"config.workers": 2}),
    ],
    ids=["chart-defaults", "password-env-2-workers"],
)
def test_rendered_pod_runs_against_postgresql(values_file, sets, admin_url, serve, tmp_path):
    assert SERVICE_BIN.exists(), f"{SERVICE_BIN} missing: pip install ./wiki-service into this venv"
    suffix = uuid.uuid4().hex[:10]
    objects = render(
        values_file,
        {
            **sets,
            "postgresql.auth.username": f"wiki_{suffix}",
            "postgresql.auth.database": f"wikidb_{suffix}",
        },
    )
    pod = one(objects, "Deployment", "api")["spec"]["template"]["spec"]
    api = next(c for c in pod["containers"] if c["name"] == "api")
    migrate = next(c for c in pod["initContainers"] if c["name"] == "migrate")
    job = one(objects, "Job", "migration")["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == migrate["command"]

    env = resolve_env(pod, api, objects, tmp_path / "secrets")
    user, database = env["DB_USER"], env["DB_NAME"]
    assert (user, database) == (f"wiki_{suffix}", f"wikidb_{suffix}")
    password = env.get("DB_PASSWORD") or Path(env["DB_PASSWORD_FILE"]).read_text()
    assert len(password) == 32 and password.isalnum()
    if "DB_PASSWORD_FILE" in env:
        assert "DB_PASSWORD" not in env

    admin = make_url(admin_url)
    asyncio.run(create_role(admin_url, user, password))
    asyncio.run(create_database(admin_url, database, owner=user))
    # A clean environment like the image's: nothing from this test process leaks in.
    work = tmp_path / "tmp"
    work.mkdir()
    base = {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(work),
        "TMPDIR": str(work),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    point_at_test_server = {"DB_HOST": admin.host or "127.0.0.1", "DB_PORT": str(admin.port or 5432)}
    try:
        migrate_env = {
            **base,
            **resolve_env(pod, migrate, objects, tmp_path / "secrets"),
            **point_at_test_server,
        }
        proc = subprocess.run(
            migrate["command"] + migrate.get("args", []),
            env=migrate_env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, f"migration failed:\n{proc.stdout}\n{proc.stderr}"
        assert password not in proc.stdout + proc.stderr

        port = free_port()
        command = api["command"] + api.get("args", [])
        assert command[0] == "wiki-service"
        command = [str(SERVICE_BIN), *command[1:]]
        command[command.index("--port") + 1] = str(port)
        server = serve({**base, **env, **point_at_test_server}, command=command, port=port, wait=False)
        server.wait_healthy(60)
        base_url = server.base_url

        status, body = _http("GET", base_url + "/healthz")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        status, body = _http("GET", base_url + "/readyz")
        assert status == 200, body
        status, body = _http("POST", base_url + "/users", {"name": "render-and-run"})
        assert status == 201, body
        created = json.loads(body)
        status, body = _http("GET", f"{base_url}/users/{created['id']}")
        assert status == 200, body
        assert json.loads(body)["name"] == "render-and-run"

        # the series the dashboard and the alerts query exist, with the labels they use
        status, metrics = _http("GET", base_url + "/metrics")
        assert status == 200
        for name in (
            "users_created_total",
            "posts_created_total",
            "http_requests_total",
            "http_request_duration_seconds_bucket",
            "db_pool_checked_out",
            "db_pool_size",
        ):
            assert re.search(rf"^{name}[{{ ]", metrics, re.M), f"{name} missing from /metrics"
        sample = re.search(r"^http_requests_total\{(.*)\}", metrics, re.M).group(1)
        for label in ("method", "route", "status"):
            assert f"{label}=" in sample

        # uvicorn re-raises the signal after a clean shutdown, so "killed by SIGTERM" is normal too
        assert server.stop(signal.SIGTERM, timeout=60) in (0, -signal.SIGTERM), server.output()
        output = server.output()
        assert "Application shutdown complete" in output, output
        assert password not in output
        json_lines = [line for line in output.splitlines() if line.startswith("{")]
        assert json_lines, "expected JSON log lines on stdout"
    finally:
        asyncio.run(drop_role_and_database(admin_url, database, user))
