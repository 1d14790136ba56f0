"""The floor: a raw ASGI callable on one asyncpg pool. No framework, no ORM.

Same endpoints, status codes and bodies as the service, minimal validation, one round
trip per request (`POST /posts` lets the foreign key say whether the user exists).
The service is asked to reach at least 0.75x of this.

    DATABASE_URL=postgresql://... uvicorn bare_app:app --app-dir bench/reference \
        --loop uvloop --http httptools --no-access-log

Pool size: BARE_POOL_MIN/BARE_POOL_MAX (default 10/30, the same connection cap as the
design's pool 10 + overflow 20).
"""

from __future__ import annotations

import os

import asyncpg
import orjson

_pool: asyncpg.Pool | None = None

_JSON = [(b"content-type", b"application/json")]
_NOT_FOUND = orjson.dumps({"detail": "User not found"})
_NO_ROUTE = orjson.dumps({"detail": "Not Found"})


def _dsn() -> str:
    url = os.environ["DATABASE_URL"]
    scheme, sep, rest = url.partition("://")
    if "+" in scheme:  # postgresql+asyncpg:// -> postgresql://
        url = scheme.split("+", 1)[0] + sep + rest
    return url


async def _send(send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _invalid(message: str) -> bytes:
    return orjson.dumps({"detail": message})


async def _lifespan(receive, send) -> None:
    global _pool
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                _pool = await asyncpg.create_pool(
                    _dsn(),
                    min_size=int(os.environ.get("BARE_POOL_MIN", "10")),
                    max_size=int(os.environ.get("BARE_POOL_MAX", "30")),
                )
            except Exception as exc:  # report to uvicorn, which exits
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _pool is not None:
                await _pool.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    method = scope["method"]
    path = scope["path"]
    assert _pool is not None

    if method == "GET" and path.startswith("/user/"):
        try:
            user_id = int(path[6:])
        except ValueError:
            await _send(send, 404, _NOT_FOUND)
            return
        row = await _pool.fetchrow("SELECT id, name, created_time FROM users WHERE id = $1", user_id)
        if row is None:
            await _send(send, 404, _NOT_FOUND)
            return
        await _send(send, 200, orjson.dumps(dict(row), option=orjson.OPT_UTC_Z))
        return

    if method == "POST" and path == "/users":
        try:
            name = orjson.loads(await _read_body(receive))["name"]
            if not isinstance(name, str) or not 1 <= len(name) <= 200:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            await _send(send, 422, _invalid("name must be a string of 1 to 200 characters"))
            return
        row = await _pool.fetchrow(
            "INSERT INTO users (name) VALUES ($1) RETURNING id, name, created_time", name
        )
        await _send(send, 201, orjson.dumps(dict(row), option=orjson.OPT_UTC_Z))
        return

    if method == "POST" and path == "/posts":
        try:
            body = orjson.loads(await _read_body(receive))
            user_id, content = body["user_id"], body["content"]
            if type(user_id) is not int or not isinstance(content, str):
                raise ValueError
            if not 1 <= len(content) <= 100_000:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            await _send(send, 422, _invalid("user_id must be an integer, content 1 to 100000 characters"))
            return
        try:
            row = await _pool.fetchrow(
                "INSERT INTO posts (user_id, content) VALUES ($1, $2) "
                "RETURNING id AS post_id, content, user_id, created_time",
                user_id,
                content,
            )
        except asyncpg.ForeignKeyViolationError:
            await _send(send, 404, _NOT_FOUND)
            return
        except (asyncpg.DataError, OverflowError):  # user_id out of BIGINT range
            await _send(send, 404, _NOT_FOUND)
            return
        await _send(send, 201, orjson.dumps(dict(row), option=orjson.OPT_UTC_Z))
        return

    await _send(send, 404, _NO_ROUTE)
