"""Service info, liveness, readiness, metrics and the offline docs."""

import re
import time

import httpx

from tests.support.cli import service_env


async def test_service_info(client):
    body = (await client.get("/")).json()
    assert body["service"] == "wiki-service"
    assert body["docs"] == "/docs"


async def test_liveness(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_when_database_and_schema_are_current(client):
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["schema"]["current"] == response.json()["schema"]["head"]


def test_readiness_is_503_fast_while_the_database_is_down_and_liveness_stays_200(serve):
    server = serve(service_env(DATABASE_URL="postgresql://postgres:pw@127.0.0.1:1/wikidb"))
    started = time.monotonic()
    ready = httpx.get(f"{server.base_url}/readyz", timeout=30)
    assert ready.status_code == 503
    assert ready.headers["retry-after"]
    assert time.monotonic() - started < 10  # bounded: the probe never hangs
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    write = httpx.post(f"{server.base_url}/users", json={"name": "x"}, timeout=30)
    assert write.status_code == 503
    assert write.headers["retry-after"] == "1"
    assert write.json() == {"detail": "Database unavailable, retry later"}


def test_readiness_is_503_while_the_schema_is_behind(serve, fresh_database):
    url = fresh_database()  # empty: no migration has run
    server = serve(service_env(DATABASE_URL=url))
    response = httpx.get(f"{server.base_url}/readyz", timeout=30)
    assert response.status_code == 503
    assert response.json()["schema"] == {"current": None, "head": "0004"}


async def test_metrics_exposition(client):
    await client.get("/user/1")
    await client.get("/users/2")
    await client.get("/no/such/path/12345")
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        "users_created_total",
        "posts_created_total",
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "db_pool_size",
        "db_pool_checked_out",
    ):
        assert re.search(rf"^{name}[ {{]", text, re.M), name
    assert 'route="/user/{id}"' in text
    assert 'route="/users/{id}"' in text
    assert "/user/1" not in text and '/users/2"' not in text and "12345" not in text
    assert 'route="unmatched"' in text


async def test_request_id_is_returned_and_propagated(client):
    generated = (await client.get("/healthz")).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    given = await client.get("/healthz", headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    hostile = await client.get("/healthz", headers={"x-request-id": 'a"b{}' * 50})
    assert hostile.headers["x-request-id"] != 'a"b{}' * 50


async def test_docs_need_no_cdn(client):
    page = await client.get("/docs")
    assert page.status_code == 200
    html = page.text
    assert "swagger-ui" in html.lower()
    references = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert references
    for reference in references:
        assert not re.match(r"^(https?:)?//", reference), reference
        assert (await client.get(reference)).status_code == 200, reference
    assert "cdn" not in html.lower()
    assert '"validatorUrl": null' in html
    spec = (await client.get("/openapi.json")).json()
    paths = {"/users", "/user/{id}", "/users/{id}", "/posts", "/posts/{id}", "/users/{id}/posts"}
    assert paths <= set(spec["paths"])
