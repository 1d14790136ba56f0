"""The FastAPI application: `uvicorn app.main:app`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from app import __version__, metrics
from app.config import get_settings
from app.database import Database
from app.errors import install_error_handlers
from app.fastlane import FastLane
from app.middleware import RequestContextMiddleware
from app.posts import bitmaps
from app.posts.routes import router as posts_router
from app.posts.search import SearchGate
from app.system import install_docs
from app.system import router as system_router
from app.users.routes import router as users_router

log = logging.getLogger("app")

POOL_GAUGE_INTERVAL_SECONDS = 1.0
# Buckets a process seals per look: it keeps up with 13,000 posts/s at the default interval,
# and after a bulk load spreads the work (0.2 s of PostgreSQL CPU a bucket) over time.
SEAL_BUCKETS_PER_LOOK = 8


async def _publish_pool_gauges(db: Database) -> None:
    # With several workers a scrape reaches one of them; each writes its own pool counts.
    while True:
        metrics.observe_pool(db.pool_status())
        await asyncio.sleep(POOL_GAUGE_INTERVAL_SECONDS)


async def _seal_search_buckets(db: Database, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            sealed = await bitmaps.seal_ready_buckets(db.checkout, max_buckets=SEAL_BUCKETS_PER_LOOK)
        except Exception as error:  # the next look tries again; search is right without bitmaps
            log.warning("sealing search buckets failed: %s", type(error).__name__)
        else:
            if sealed:
                metrics.SEARCH_BUCKETS_SEALED.inc(len(sealed))
                log.info("sealed search buckets", extra={"buckets": sealed})


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The composition root: what the routes reach through app.state (app/deps.py), made on
    # this event loop, which its gates bind to.
    settings = get_settings()
    app.state.db = db = Database(settings)
    app.state.search_gate = SearchGate(settings.search_max_concurrency, settings.search_queue_seconds)
    metrics.forget_dead_workers()  # a restarted worker replaces one that was killed
    # Everything loaded so far lives as long as the process: keep it out of the collector's
    # sweeps, so a full collection under load walks only the objects requests create.
    gc.freeze()
    tasks = [asyncio.create_task(_publish_pool_gauges(db))]
    if settings.search_seal_interval_seconds:
        tasks.append(asyncio.create_task(_seal_search_buckets(db, settings.search_seal_interval_seconds)))
    log.info("started", extra={"database": str(settings.url), "version": __version__})
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await db.dispose()


def _without_native_telemetry() -> dict[str, Any]:
    # FastAPI's built-in OpenTelemetry (newer releases) looks up the global providers on every
    # request, ~20 us of CPU; this service exports Prometheus metrics and JSON logs instead.
    if "telemetry" in inspect.signature(FastAPI).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


class WikiAPI(FastAPI):
    """FastAPI with the request-context middleware and the fast lane outside its stack.

    Outside rather than `add_middleware`: the hot endpoints then skip FastAPI's own outer
    layers too, and the access log and metrics see every request, errors included.
    """

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        return RequestContextMiddleware(
            FastLane(inner, self.routes, self.state), max_body_bytes=get_settings().max_body_bytes
        )


def create_app() -> FastAPI:
    """Build the application: routes, error mapping, middleware, offline docs."""
    app = WikiAPI(
        **_without_native_telemetry(),
        title="wiki-service",
        version=__version__,
        summary="Users and their posts, on PostgreSQL.",
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, without a CDN
        redoc_url=None,
    )
    app.include_router(system_router)
    app.include_router(users_router)
    app.include_router(posts_router)
    install_error_handlers(app)
    install_docs(app)
    return app


app = create_app()
