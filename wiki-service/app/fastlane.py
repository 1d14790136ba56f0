"""A fast lane for the three hot endpoints, in front of FastAPI's routing.

GET /user/{id} (and /users/{id}), POST /users and POST /posts carry most of the traffic.
For them FastAPI's routing, dependency solving and request objects cost more CPU than the
query itself (see README "Performance"). This lane serves only their *happy path*: a
plain decimal id in range, or a JSON body that the same Pydantic request model accepts.
Anything else (a bad id, a body that fails validation, another content type, another
method) goes on to FastAPI unchanged, with the body replayed, so every error answer and the
OpenAPI document come from one place. Both paths call the same service functions and the
same error mapping (errors.expected_error_response, applied to the lane by the outer
middleware, which also adds the request id, metrics and access log to both).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.posts import service as posts
from app.posts.schemas import PostCreate
from app.users import service as users
from app.users.schemas import UserCreate
from app.validation import BIGINT_MAX

_JSON_HEADERS = (b"content-type", b"application/json")


@dataclass(frozen=True)
class RouteLabel:
    """What the metrics and the access log read from scope["route"]: the path template."""

    path: str


_USER_BY_ID = RouteLabel("/user/{id}")
_USERS_BY_ID = RouteLabel("/users/{id}")
_USERS = RouteLabel("/users")
_POSTS = RouteLabel("/posts")


def _plain_id(text: str) -> int | None:
    if text.isascii() and text.isdigit() and len(text) <= 19:
        value = int(text)
        if 1 <= value <= BIGINT_MAX:
            return value
    return None


class FastLane:
    """ASGI middleware: serve the hot happy paths directly, pass everything else on."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if method == "GET":
                if path.startswith("/user/"):
                    if (user_id := _plain_id(path[6:])) is not None:
                        scope["route"] = _USER_BY_ID
                        return await self._answer(send, 200, users.get, db=self.state.db, user_id=user_id)
                elif path.startswith("/users/") and (user_id := _plain_id(path[7:])) is not None:
                    scope["route"] = _USERS_BY_ID
                    return await self._answer(send, 200, users.get, db=self.state.db, user_id=user_id)
            elif method == "POST" and (path == "/users" or path == "/posts") and _is_json(scope):
                body = await _read_body(receive)
                model: type[BaseModel] = UserCreate if path == "/users" else PostCreate
                try:
                    fields = model.model_validate_json(body).__dict__
                except ValidationError:
                    return await self.app(scope, _replay(body), send)
                scope["route"] = _USERS if path == "/users" else _POSTS
                create = users.create if path == "/users" else posts.create
                return await self._answer(send, 201, create, db=self.state.db, **fields)
        await self.app(scope, receive, send)

    @staticmethod
    async def _answer(send: Send, status: int, call: Callable[..., Awaitable[dict]], **kwargs: Any) -> None:
        # A domain error or the database being away propagates to the request-context
        # middleware, which answers it through the same mapping as FastAPI's handlers.
        content = orjson.dumps(await call(**kwargs))
        headers = [_JSON_HEADERS, (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value == b"application/json" or value.startswith(b"application/json;")
    return False


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
