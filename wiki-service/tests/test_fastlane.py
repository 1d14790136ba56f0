"""The fast lane and FastAPI answer alike: same bodies, statuses, metrics and log fields."""

import pytest

LANE = {"content-type": "application/json"}
# FastAPI parses any JSON media type; the lane takes only application/json, so this goes
# through FastAPI's routing.
FASTAPI = {"content-type": "application/merge-patch+json"}


@pytest.mark.parametrize("headers", [LANE, FASTAPI])
async def test_create_user_and_post_on_both_paths(client, headers):
    user = await client.post("/users", content=b'{"name": "both"}', headers=headers)
    assert user.status_code == 201
    assert set(user.json()) == {"id", "name", "created_time"}
    post = await client.post(
        "/posts", content=b'{"user_id": %d, "content": "c"}' % user.json()["id"], headers=headers
    )
    assert post.status_code == 201
    assert set(post.json()) == {"post_id", "content", "user_id", "created_time"}
    missing = await client.post("/posts", content=b'{"user_id": 99999, "content": "c"}', headers=headers)
    assert (missing.status_code, missing.json()) == (404, {"detail": "User not found"})


async def test_reads_agree_between_lane_and_fastapi(client):
    created = (await client.post("/users", json={"name": "same"})).json()
    via_lane = await client.get(f"/user/{created['id']}")
    via_fastapi = await client.get(f"/user/{created['id']}?unused=1")  # same route, lane too
    head_style = await client.get(f"/users/0{created['id']}")  # leading zero: the lane takes it
    assert via_lane.json() == via_fastapi.json() == head_style.json() == created
    assert via_lane.headers["content-type"] == "application/json"
    assert int(via_lane.headers["content-length"]) == len(via_lane.content)


async def test_invalid_bodies_fall_through_to_fastapi_with_the_body_replayed(client):
    response = await client.post("/users", content=b'{"name": ""}', headers=LANE)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "name"]


async def test_lane_requests_are_counted_under_their_route_template(client):
    created = (await client.post("/users", json={"name": "m"})).json()
    await client.get(f"/user/{created['id']}")
    await client.get("/users/987654")
    text = (await client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/user/{id}",status="200"}' in text
    assert 'http_requests_total{method="GET",route="/users/{id}",status="404"}' in text
    assert 'http_requests_total{method="POST",route="/users",status="201"}' in text


def test_the_lane_is_built_from_the_marked_routes():
    from app.fastlane import FastLane
    from app.main import app

    lane = FastLane(app, app.routes, app.state)
    served = {("GET", entry.route.path) for _, _, entry in lane.by_prefix}
    served |= {("POST", entry.route.path) for entry in lane.by_path.values()}
    assert served == {("GET", "/user/{id}"), ("GET", "/users/{id}"), ("POST", "/users"), ("POST", "/posts")}


def test_a_marked_route_the_lane_cannot_serve_is_refused_at_startup():
    from fastapi import FastAPI

    from app.fastlane import FastLane, fast_lane

    app = FastAPI()

    @app.get("/things/{id}")
    @fast_lane
    async def read_thing(id: int, verbose: bool = False) -> dict:  # `id`: the path parameter's name
        return {}

    with pytest.raises(TypeError, match="/things/{id}"):
        FastLane(app, app.routes, app.state)
