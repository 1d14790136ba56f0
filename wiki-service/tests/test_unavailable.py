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


async def test_insert_that_returns_no_row_is_503_not_500(client, db):
    # What a statement mixed up between sessions behind a transaction-mode pooler gave once
    # (tests/faults/test_pgbouncer.py): INSERT ... RETURNING answered by a statement with no
    # row. A real trigger that skips the insert makes PostgreSQL answer the same, every time.
    user = (await client.post("/users", json={"name": "author"})).json()
    await db.execute(
        "CREATE FUNCTION skip_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;"
        "CREATE TRIGGER skip_user BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION skip_row();"
        "CREATE TRIGGER skip_post BEFORE INSERT ON posts FOR EACH ROW EXECUTE FUNCTION skip_row()"
    )
    try:
        answers = [
            await client.post("/users", json={"name": "never written"}),
            await client.post("/posts", json={"user_id": user["id"], "content": "never written"}),
        ]
    finally:
        await db.execute(
            "DROP TRIGGER skip_user ON users; DROP TRIGGER skip_post ON posts; DROP FUNCTION skip_row()"
        )
    for answer in answers:
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"]
