"""`wiki-service dev`: embedded PostgreSQL, migrated, served; data kept across restarts."""

import signal
import sys

import httpx

from app.embedded import free_port
from tests.support.cli import service_env


def _start_dev(serve, data_dir, port, db_port):
    env = service_env()
    env.pop("DATABASE_URL", None)
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "dev",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--db-port",
        str(db_port),
    ]
    return serve(env, command=command, port=port, wait=False).wait_healthy(90, path="/readyz")


def _stop(server):
    assert server.stop(signal.SIGINT, timeout=60) != -signal.SIGKILL, "dev did not stop on Ctrl-C"
    return server.output()


def test_dev_serves_and_keeps_data_across_restarts(tmp_path, serve):
    data_dir, port, db_port = tmp_path / "dev", free_port(), free_port()
    url = f"http://127.0.0.1:{port}"

    first = _start_dev(serve, data_dir, port, db_port)
    try:
        user = httpx.post(f"{url}/users", json={"name": "newcomer"}).json()
    finally:
        output = _stop(first)
    assert "is at revision 0003 (head)" in output
    assert (data_dir / "pgdata" / "PG_VERSION").exists()

    second = _start_dev(serve, data_dir, port, db_port)
    try:
        assert httpx.get(f"{url}/user/{user['id']}").json() == user
    finally:
        _stop(second)
