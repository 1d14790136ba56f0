"""Bad input gets a clear 4xx JSON error, never a 500, and never a driver message."""

import json

import pytest

from app.posts.models import CONTENT_MAX_LENGTH
from app.users.models import NAME_MAX_LENGTH
from tests.support.api import create_user

FORBIDDEN_IN_ERRORS = ("asyncpg", "sqlalchemy", "INSERT", "SELECT", "violates", "postgres", "Traceback")


def assert_clean_error(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert "detail" in body
    for word in FORBIDDEN_IN_ERRORS:
        assert word.lower() not in response.text.lower()


@pytest.mark.parametrize("name", ["", " ", "\t\n ", "\u3000"])
async def test_blank_names_are_refused(client, name):
    assert_clean_error(await client.post("/users", json={"name": name}), 422)


async def test_name_length_limit(client):
    assert (await client.post("/users", json={"name": "n" * NAME_MAX_LENGTH})).status_code == 201
    assert_clean_error(await client.post("/users", json={"name": "n" * (NAME_MAX_LENGTH + 1)}), 422)


async def test_content_length_limit(client):
    user = await create_user(client, "writer")
    ok = await client.post("/posts", json={"user_id": user, "content": "c" * CONTENT_MAX_LENGTH})
    assert ok.status_code == 201
    too_long = await client.post("/posts", json={"user_id": user, "content": "c" * (CONTENT_MAX_LENGTH + 1)})
    assert_clean_error(too_long, 422)


@pytest.mark.parametrize("text", ["nul\x00inside", "\x00"])
async def test_nul_cannot_be_stored_and_is_refused(client, text):
    user = await create_user(client, "writer")
    assert_clean_error(await client.post("/users", json={"name": text}), 422)
    assert_clean_error(await client.post("/posts", json={"user_id": user, "content": text}), 422)


@pytest.mark.parametrize("raw", ['"\\ud800"', '"a\\udfffb"', '"x\\ud83d"'])
async def test_lone_surrogates_are_refused(client, raw):
    body = '{"name": ' + raw + "}"
    response = await client.post("/users", content=body, headers={"content-type": "application/json"})
    assert_clean_error(response, 422)


async def test_non_bmp_and_combining_text_is_stored_exactly(client):
    name = "Zoë 🦄 \u0301 עברית"
    body = (await client.post("/users", json={"name": name})).json()
    assert (await client.get(f"/users/{body['id']}")).json()["name"] == name


@pytest.mark.parametrize("user_id", ["abc", "-1", "0", "1.5", str(2**63), str(2**64), "9" * 40, "1e3"])
async def test_bad_ids_in_paths(client, user_id):
    for path in (f"/user/{user_id}", f"/users/{user_id}", f"/posts/{user_id}", f"/users/{user_id}/posts"):
        assert_clean_error(await client.get(path), 422)


async def test_largest_id_is_valid_and_simply_not_found(client):
    assert (await client.get(f"/user/{2**63 - 1}")).status_code == 404


@pytest.mark.parametrize("user_id", [-1, 0, 2**63, 2**64, "1", 1.5, True, None, [1], {"id": 1}])
async def test_bad_user_id_in_post_body(client, user_id):
    assert_clean_error(await client.post("/posts", json={"user_id": user_id, "content": "x"}), 422)


@pytest.mark.parametrize(
    "body",
    [
        '{"name": ',
        "not json at all",
        "[]",
        "null",
        '"just a string"',
        '{"name": 12}',
        '{"name": ["a"]}',
        '{"name": null}',
        "{}",
        '{"nom": "x"}',
    ],
)
async def test_malformed_json_and_wrong_types(client, body):
    response = await client.post("/users", content=body, headers={"content-type": "application/json"})
    assert_clean_error(response, 422)


async def test_invalid_utf8_body_is_refused(client):
    response = await client.post(
        "/users", content=b'{"name": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 422)
    assert "detail" in response.json()


async def test_validation_errors_do_not_echo_the_input(client):
    huge = "x" * (NAME_MAX_LENGTH + 50_000)
    response = await client.post("/users", json={"name": huge})
    assert_clean_error(response, 422)
    assert huge not in response.text
    assert len(response.content) < 1000


async def test_bodies_over_one_mebibyte_are_refused(client):
    user = await create_user(client, "writer")
    content = "a" * (1024 * 1024)
    response = await client.post("/posts", json={"user_id": user, "content": content})
    assert_clean_error(response, 413)


async def test_chunked_bodies_over_the_limit_are_refused(client):
    async def chunks():
        for _ in range(20):
            yield b"x" * (100 * 1024)

    response = await client.post("/users", content=chunks(), headers={"content-type": "application/json"})
    assert_clean_error(response, 413)


async def test_bad_content_length_is_400(client):
    response = await client.post(
        "/users", content=b"{}", headers={"content-type": "application/json", "content-length": "abc"}
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"cursor": "djE6LTU"},  # v1:-5
        {"cursor": "djI6MTA"},  # v2:10
        {"cursor": "x" * 65},
        {"limit": "ten"},
        {"user_id": "-3"},
        {"user_id": str(2**63)},
        {"q": ""},
        {"q": "x" * 201},
        {"q": "nul\x00"},
    ],
)
async def test_bad_list_parameters(client, params):
    response = await client.get("/posts", params=params)
    assert response.status_code in (400, 422), response.text
    assert "detail" in response.json()


async def test_unknown_routes_and_methods(client):
    assert_clean_error(await client.get("/nope"), 404)
    assert_clean_error(await client.delete("/users"), 405)


async def test_error_bodies_are_json_for_every_status(client):
    statuses = set()
    for response in [
        await client.get("/user/1"),
        await client.get("/user/x"),
        await client.post("/users", content="{", headers={"content-type": "application/json"}),
    ]:
        statuses.add(response.status_code)
        json.loads(response.text)
    assert statuses == {404, 422}
