"""The users API: the migrated service's paths and bodies, and keyset pagination."""

from datetime import UTC, datetime, timedelta

from tests.support.api import metric_value


async def test_create_user_returns_201_with_the_old_body(client, db):
    response = await client.post("/users", json={"name": "Ada Lovelace"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "name", "created_time"}
    assert body["name"] == "Ada Lovelace"
    assert await db.fetchval("SELECT name FROM users WHERE id = $1", body["id"]) == "Ada Lovelace"


async def test_created_time_is_iso_8601_utc_with_the_zone(client):
    body = (await client.post("/users", json={"name": "Grace"})).json()
    created = datetime.fromisoformat(body["created_time"])
    assert created.utcoffset() == timedelta(0)
    assert body["created_time"].endswith("+00:00")
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)


async def test_read_user_by_both_paths(client):
    created = (await client.post("/users", json={"name": "Linus"})).json()
    for path in (f"/user/{created['id']}", f"/users/{created['id']}"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.json() == created


async def test_unknown_user_is_404_with_the_old_message(client):
    for path in ("/user/424242", "/users/424242"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json() == {"detail": "User not found"}


async def test_ids_are_bigint_identity(client, db):
    await db.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), 5000000000)")
    body = (await client.post("/users", json={"name": "Big"})).json()
    assert body["id"] == 5000000001
    assert (await client.get("/user/5000000001")).json()["name"] == "Big"


async def test_list_users_pages_newest_first_without_gaps_or_repeats(client):
    ids = [(await client.post("/users", json={"name": f"user {i}"})).json()["id"] for i in range(7)]
    seen, cursor = [], None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/users", params=params)).json()
        assert len(body["items"]) <= 3
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)


async def test_list_users_default_and_maximum_limit(client):
    for i in range(25):
        await client.post("/users", json={"name": f"n{i}"})
    assert len((await client.get("/users")).json()["items"]) == 20
    assert len((await client.get("/users", params={"limit": 100})).json()["items"]) == 25
    assert (await client.get("/users", params={"limit": 101})).status_code == 422
    assert (await client.get("/users", params={"limit": 0})).status_code == 422


async def test_a_page_after_the_last_is_empty(client):
    await client.post("/users", json={"name": "only"})
    body = (await client.get("/users", params={"limit": 1})).json()
    assert body["next_cursor"] is None
    assert len(body["items"]) == 1


async def test_new_user_counter_counts(client):
    before = metric_value((await client.get("/metrics")).text, "users_created_total")
    await client.post("/users", json={"name": "counted"})
    await client.post("/users", json={"name": ""})  # refused, not counted
    after = metric_value((await client.get("/metrics")).text, "users_created_total")
    assert after == before + 1
