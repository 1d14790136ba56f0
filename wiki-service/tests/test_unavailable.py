"""Errors that mean "this connection is no good" answer 503 and never reach another request."""

import asyncpg


async def test_connection_out_of_step_is_503_and_is_discarded(client, monkeypatch):
    # What a request got when PostgreSQL shut down: the server's FATAL reached an idle pooled
    # connection a moment before its socket closed, and the next query on it found asyncpg's
    # protocol still consuming that error.
    used: list[asyncpg.Connection] = []

    async def out_of_step(conn, *args, **kwargs):
        used.append(conn)
        raise asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")

    monkeypatch.setattr(asyncpg.Connection, "fetchrow", out_of_step)
    response = await client.get("/users/1")
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json() == {"detail": "Database unavailable, retry later"}
    assert used[0].is_closed()  # invalidated, not checked in for the next request
