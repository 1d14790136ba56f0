"""A fast lane for the hot endpoints, in front of FastAPI's routing.

GET /user/{id} (and /users/{id}), POST /users and POST /posts carry most of the traffic.
For them FastAPI's routing, dependency solving and request objects cost more CPU than the
query itself (see docs/performance.md). A route joins the lane with one edit, `@fast_lane`
under its route decorator; the lane reads the app's routes at startup and serves only their
*happy path*: a path parameter that the endpoint's own annotated type accepts, or a JSON body
that the endpoint's own Pydantic model accepts. It then calls the endpoint itself, which
answers with its own response class. Anything else (a bad id, a body that fails validation,
another content type, another method) goes on to FastAPI unchanged, with the body replayed,
so every error answer and the OpenAPI document come from one place. Errors the endpoint
raises reach the same mapping (errors.expected_error_response, applied to the lane by the
outer middleware, which also adds the request id, metrics and access log to both).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi.params import Path
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import State
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.deps import DatabaseDep

Endpoint = Callable[..., Awaitable[Response]]

_MARKED: set[Endpoint] = set()


def fast_lane(endpoint: Endpoint) -> Endpoint:
    """Serve this route's happy path in the fast lane too (put it under the route decorator).

    The endpoint may take the Database (DatabaseDep), one path parameter at the end of the
    path, or one JSON body model: what the lane knows how to supply.
    """
    _MARKED.add(endpoint)
    return endpoint


@dataclass(frozen=True)
class _Lane:
    """One marked route: how the lane recognises its happy path and calls its endpoint."""

    route: APIRoute
    call: Callable[[Any, Any], Awaitable[Response]]  # (db, the id or the body model)
    parse: Callable[[Any], Any]  # the path parameter's or the body's validator


def _routes_with_paths(routes: Iterable[Any]) -> Iterator[tuple[Any, str]]:
    """Each route of the app with its full path, however FastAPI keeps the included routers
    (newer releases keep them as they are and resolve them lazily)."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if contexts is None:
        yield from ((route, route.path) for route in routes if hasattr(route, "path"))
        return
    for context in contexts(list(routes)):
        if context.path is not None:
            yield context.original_route, context.path


def _lane_for(route: APIRoute, path: str) -> tuple[_Lane, str | None]:
    """The lane of a marked route, and the path before its parameter (None: no parameter)."""
    endpoint = route.endpoint
    hints = typing.get_type_hints(endpoint, include_extras=True)
    db_name = value_name = None
    parse: Callable[[Any], Any] | None = None
    prefix = None
    for name in inspect.signature(endpoint).parameters:
        hint = hints[name]
        metadata = getattr(hint, "__metadata__", ())
        if hint == DatabaseDep:
            db_name = name
        elif inspect.isclass(hint) and issubclass(hint, BaseModel) and value_name is None:
            value_name, parse = name, hint.model_validate_json
        elif any(isinstance(meta, Path) for meta in metadata) and value_name is None:
            alias = next(meta.alias for meta in metadata if isinstance(meta, Path)) or name
            if not path.endswith(f"/{{{alias}}}") or path.count("{") != 1:
                raise TypeError(f"fast lane: {path}: only a last path parameter is served")
            value_name, parse, prefix = name, TypeAdapter(hint).validate_python, path[: -len(alias) - 2]
        else:
            raise TypeError(f"fast lane: {path}: cannot supply parameter {name!r}")
    if db_name is None or value_name is None or parse is None:
        raise TypeError(f"fast lane: {path}: needs the database and one id or body")

    def call(
        db: Any, value: Any, _endpoint: Endpoint = endpoint, _db: str = db_name, _value: str = value_name
    ) -> Awaitable[Response]:
        return _endpoint(**{_db: db, _value: value})

    return _Lane(route, call, parse), prefix


class FastLane:
    """ASGI middleware: serve the marked routes' happy paths directly, pass everything else on."""

    def __init__(self, app: ASGIApp, routes: Iterable[Any], state: State) -> None:
        self.app = app
        self.state = state
        # GET: by the path before the parameter; POST: by the exact path (a JSON body).
        self.by_prefix: list[tuple[str, int, _Lane]] = []
        self.by_path: dict[str, _Lane] = {}
        for route, path in _routes_with_paths(routes):
            if not isinstance(route, APIRoute) or route.endpoint not in _MARKED:
                continue
            lane, prefix = _lane_for(route, path)
            if route.methods == {"GET"} and prefix is not None:
                self.by_prefix.append((prefix, len(prefix), lane))
            elif route.methods == {"POST"} and prefix is None:
                self.by_path[path] = lane
            else:
                raise TypeError(f"fast lane: {path}: serves GET /x/{{id}} and POST /x with a body")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if method == "GET":
                for prefix, length, lane in self.by_prefix:
                    if path.startswith(prefix) and "/" not in (tail := path[length:]) and tail:
                        try:
                            value = lane.parse(tail)
                        except ValidationError:
                            break
                        return await self._answer(scope, receive, send, lane, value)
            elif method == "POST" and (post_lane := self.by_path.get(path)) is not None and _is_json(scope):
                body = await _read_body(receive)
                try:
                    value = post_lane.parse(body)
                except ValidationError:
                    return await self.app(scope, _replay(body), send)
                return await self._answer(scope, receive, send, post_lane, value)
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, send: Send, lane: _Lane, value: Any) -> None:
        # What the metrics and the access log read: the route, as FastAPI's routing sets it.
        scope["route"] = lane.route
        # A domain error or the database being away propagates to the request-context
        # middleware, which answers it through the same mapping as FastAPI's handlers.
        response = await lane.call(self.state.db, value)
        await response(scope, receive, send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value == b"application/json" or value.startswith(b"application/json;"))
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
