"""Requests and answers the API tests share."""

from __future__ import annotations

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
