"""The posts API: creation, reading, per-user lists, filters and full-text search."""

from tests.support.api import create_user, metric_value


async def test_create_post_returns_201_with_the_old_body(client, db):
    user_id = await create_user(client)
    response = await client.post("/posts", json={"user_id": user_id, "content": "First!"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"post_id", "content", "user_id", "created_time"}
    assert body["user_id"] == user_id and body["content"] == "First!"
    assert body["created_time"].endswith("+00:00")
    assert await db.fetchval("SELECT content FROM posts WHERE id = $1", body["post_id"]) == "First!"


async def test_post_for_unknown_user_is_404_and_nothing_is_stored(client, db):
    response = await client.post("/posts", json={"user_id": 999999, "content": "orphan"})
    assert response.status_code == 404
    assert response.json() == {"detail": "User not found"}
    assert await db.fetchval("SELECT count(*) FROM posts") == 0


async def test_read_post_and_404(client):
    user_id = await create_user(client)
    post = (await client.post("/posts", json={"user_id": user_id, "content": "hello"})).json()
    assert (await client.get(f"/posts/{post['post_id']}")).json() == post
    missing = await client.get("/posts/987654")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Post not found"}


async def test_user_posts_are_listed_newest_first_and_paged(client):
    alice, bob = await create_user(client, "alice"), await create_user(client, "bob")
    alice_posts = [
        (await client.post("/posts", json={"user_id": alice, "content": f"a{i}"})).json()["post_id"]
        for i in range(5)
    ]
    await client.post("/posts", json={"user_id": bob, "content": "b"})
    first = (await client.get(f"/users/{alice}/posts", params={"limit": 3})).json()
    second = (
        await client.get(f"/users/{alice}/posts", params={"limit": 3, "cursor": first["next_cursor"]})
    ).json()
    listed = [p["post_id"] for p in first["items"] + second["items"]]
    assert listed == sorted(alice_posts, reverse=True)
    assert second["next_cursor"] is None


async def test_posts_of_unknown_user_is_404_but_of_a_quiet_user_is_empty(client):
    quiet = await create_user(client, "quiet")
    assert (await client.get(f"/users/{quiet}/posts")).json() == {"items": [], "next_cursor": None}
    response = await client.get("/users/555555/posts")
    assert response.status_code == 404
    assert response.json() == {"detail": "User not found"}


async def test_list_posts_filtered_by_user(client):
    alice, bob = await create_user(client, "alice"), await create_user(client, "bob")
    await client.post("/posts", json={"user_id": alice, "content": "from alice"})
    await client.post("/posts", json={"user_id": bob, "content": "from bob"})
    everything = (await client.get("/posts")).json()["items"]
    only_bob = (await client.get("/posts", params={"user_id": bob})).json()["items"]
    assert len(everything) == 2
    assert [p["content"] for p in only_bob] == ["from bob"]


async def test_full_text_search(client):
    author = await create_user(client)
    for content in (
        "PostgreSQL full-text search is built in",
        "Kubernetes runs the pods",
        "Searching PostgreSQL and kubernetes together",
    ):
        await client.post("/posts", json={"user_id": author, "content": content})

    async def search(q, **params):
        response = await client.get("/posts", params={"q": q, **params})
        assert response.status_code == 200, response.text
        return [p["content"] for p in response.json()["items"]]

    assert await search("postgresql") == [
        "Searching PostgreSQL and kubernetes together",
        "PostgreSQL full-text search is built in",
    ]
    assert await search("postgresql kubernetes") == ["Searching PostgreSQL and kubernetes together"]
    assert await search('"full-text search"') == ["PostgreSQL full-text search is built in"]
    assert await search("postgresql -kubernetes") == ["PostgreSQL full-text search is built in"]
    assert await search("nothing-matches-this") == []
    assert await search("!!! ???") == []  # no searchable words: no match, no error
    assert await search("kubernetes", user_id=999) == []


async def test_user_posts_list_uses_the_user_index(client, db):
    await db.execute("SET enable_seqscan = off")
    plan = "\n".join(
        row[0]
        for row in await db.fetch(
            "EXPLAIN SELECT id FROM posts WHERE user_id = 1 AND id < 100 ORDER BY id DESC LIMIT 21"
        )
    )
    assert "posts_user_id_id_idx" in plan


async def test_new_post_counter_counts(client):
    author = await create_user(client)
    before = metric_value((await client.get("/metrics")).text, "posts_created_total")
    await client.post("/posts", json={"user_id": author, "content": "one"})
    await client.post("/posts", json={"user_id": 123456, "content": "refused"})
    after = metric_value((await client.get("/metrics")).text, "posts_created_total")
    assert after == before + 1
