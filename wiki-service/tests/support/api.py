"""Requests and answers the API tests share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx


async def create_user(client: httpx.AsyncClient, name: str = "author") -> int:
    """POST /users; the new user's id."""
    return (await client.post("/users", json={"name": name})).json()["id"]


def metric_value(text: str, name: str) -> float:
    """The value of the sample `name` (labels included, as exposed) in a /metrics text."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in metrics")


async def every_page(
    client: httpx.AsyncClient,
    path: str,
    params: dict[str, Any],
    between_pages: Callable[[], Awaitable[None]] | None = None,
) -> list[int]:
    """The ids of every item of a list, following next_cursor until it is null."""
    seen: list[int] = []
    cursor = None
    while True:
        response = await client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [item.get("post_id", item.get("id")) for item in body["items"]]
        if (cursor := body["next_cursor"]) is None:
            return seen
        if between_pages is not None:
            await between_pages()
