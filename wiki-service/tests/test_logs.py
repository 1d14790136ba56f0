"""One JSON line per request; SQL only with DB_ECHO; the password never."""

import json

import httpx

from tests.support.cli import service_env


def _json_lines(output: str) -> list[dict]:
    lines = [line for line in output.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is JSON
    return parsed


def test_one_json_access_line_per_request(serve):
    server = serve()
    httpx.post(f"{server.base_url}/users", json={"name": "logged"}, headers={"x-request-id": "req-42"})
    httpx.get(f"{server.base_url}/user/999999")
    server.stop()
    entries = _json_lines(server.output())
    access = [entry for entry in entries if entry["logger"] == "app.access"]
    created = next(entry for entry in access if entry["request_id"] == "req-42")
    assert created["method"] == "POST" and created["route"] == "/users" and created["status"] == 201
    assert isinstance(created["duration_ms"], float)
    missing = next(entry for entry in access if entry["status"] == 404)
    assert missing["route"] == "/user/{id}" and missing["path"] == "/user/999999"
    assert len(access) == 3  # the two requests and the healthz probe of the fixture


def test_sql_is_logged_only_with_db_echo(serve):
    quiet = serve()
    httpx.get(f"{quiet.base_url}/user/1")
    quiet.stop()
    assert not [e for e in _json_lines(quiet.output()) if e["logger"] == "app.sql"]

    loud = serve(service_env(DB_ECHO="true"))
    httpx.get(f"{loud.base_url}/user/1")
    loud.stop()
    sql = [e for e in _json_lines(loud.output()) if e["logger"] == "app.sql"]
    assert any("FROM users WHERE id = $1" in e["sql"] for e in sql)
