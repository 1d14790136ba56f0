"""`wiki-service dev`: embedded PostgreSQL, migrated, served; data kept across restarts."""

import signal
import subprocess
import sys
import time

import httpx

from tests.conftest import SERVICE_DIR, free_port, service_env


def _start_dev(data_dir, port, db_port):
    env = service_env()
    env.pop("DATABASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "dev", "--data-dir", str(data_dir),
         "--port", str(port), "--db-port", str(db_port)],
        cwd=SERVICE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, text=True,
    )


def _wait_ready(process, url, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("dev never became ready")


def _stop(process):
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    return output


def test_dev_serves_and_keeps_data_across_restarts(tmp_path):
    data_dir, port, db_port = tmp_path / "dev", free_port(), free_port()
    url = f"http://127.0.0.1:{port}"

    first = _start_dev(data_dir, port, db_port)
    try:
        _wait_ready(first, url)
        user = httpx.post(f"{url}/users", json={"name": "newcomer"}).json()
    finally:
        output = _stop(first)
    assert "is at revision 0003 (head)" in output
    assert (data_dir / "pgdata" / "PG_VERSION").exists()

    second = _start_dev(data_dir, port, db_port)
    try:
        _wait_ready(second, url)
        assert httpx.get(f"{url}/user/{user['id']}").json() == user
    finally:
        _stop(second)
