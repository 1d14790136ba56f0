"""The FastAPI application: `uvicorn app.main:app`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from app import __version__, metrics
from app.database import engine, pool_status, reset_pool_gate, settings
from app.errors import install_error_handlers
from app.middleware import RequestContextMiddleware
from app.posts.routes import router as posts_router
from app.system import install_docs
from app.system import router as system_router
from app.users.routes import router as users_router

log = logging.getLogger("app")

POOL_GAUGE_INTERVAL_SECONDS = 1.0


async def _publish_pool_gauges() -> None:
    # With several workers a scrape reaches one of them; each writes its own pool counts.
    while True:
        metrics.observe_pool(pool_status())
        await asyncio.sleep(POOL_GAUGE_INTERVAL_SECONDS)


@contextlib.asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    reset_pool_gate()
    publisher = asyncio.create_task(_publish_pool_gauges())
    log.info("started", extra={"database": str(settings.url), "version": __version__})
    try:
        yield
    finally:
        publisher.cancel()
        await engine.dispose()


def create_app() -> FastAPI:
    """Build the application: routes, error mapping, middleware, offline docs."""
    app = FastAPI(
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
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    return app


app = create_app()
