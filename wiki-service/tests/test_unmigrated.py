"""A database without the tables (never migrated) means "not ready": 503 + Retry-After, not 500."""

import httpx

from tests.support.cli import run_cli, service_env


def test_unmigrated_database_answers_503_then_serves_after_upgrade(fresh_database, serve):
    env = service_env(DATABASE_URL=fresh_database())
    server = serve(env)
    requests = [
        ("POST", "/users", {"name": "early"}),
        ("POST", "/posts", {"user_id": 1, "content": "early"}),
        ("GET", "/users/1", None),
        ("GET", "/user/1", None),
        ("GET", "/users?limit=5", None),
        ("GET", "/posts?limit=5", None),
        ("GET", "/users/1/posts", None),
    ]
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for method, path, body in requests:
            response = http.request(method, path, json=body)
            assert response.status_code == 503, (method, path, response.text)
            assert response.headers["retry-after"].isdigit()
            assert response.json() == {"detail": "Database schema not ready, retry later"}
        assert http.get("/readyz").status_code == 503

        upgrade = run_cli("db", "upgrade", env=env)
        assert upgrade.returncode == 0, upgrade.stderr
        # The same process, no restart: the schema is there now.
        created = http.post("/users", json={"name": "after"})
        assert created.status_code == 201, created.text
        assert http.get(f"/users/{created.json()['id']}").status_code == 200
        assert http.get("/readyz").status_code == 200
    assert '"level":"error"' not in server.output()
