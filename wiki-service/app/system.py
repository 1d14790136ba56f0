"""Service info, liveness, readiness, metrics, and API docs that need no CDN."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import fastapi_offline
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response

from app import __version__, metrics
from app.database import DatabaseUnavailable
from app.deps import DatabaseDep
from app.responses import JSON
from app.schema import current_revision, head_revision

READY_TIMEOUT_SECONDS = 2.0
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"

router = APIRouter(tags=["system"])


@router.get("/")
async def service_info() -> JSON:
    """What this service is, and where to look next."""
    return JSON(
        {
            "service": "wiki-service",
            "version": __version__,
            "docs": "/docs",
            "openapi": "/openapi.json",
            "health": {"liveness": "/healthz", "readiness": "/readyz"},
            "metrics": "/metrics",
        }
    )


@router.get("/healthz")
async def liveness() -> JSON:
    """Liveness: the process answers. Never touches the database, so a database outage
    does not make Kubernetes restart healthy pods."""
    return JSON({"status": "ok"})


@router.get("/readyz", responses={503: {"description": "Database unreachable or schema not at head"}})
async def readiness(db: DatabaseDep) -> JSON:
    """Readiness: the database answers within 2 s and its schema is at the code's head."""
    head = head_revision()
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), db.checkout() as conn:
            current = await current_revision(conn)
    except (DatabaseUnavailable, TimeoutError, asyncpg.PostgresError):
        return JSON(
            {"status": "unavailable", "database": "unreachable"},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    if current != head:
        return JSON(
            {"status": "unavailable", "database": "ok", "schema": {"current": current, "head": head}},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return JSON({"status": "ok", "database": "ok", "schema": {"current": current, "head": head}})


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(db: DatabaseDep) -> Response:
    """Prometheus text format, summed over every worker process."""
    metrics.observe_pool(db.pool_status())
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)


def install_docs(app: FastAPI) -> None:
    """Swagger UI from assets shipped in a wheel: air-gapped clusters have no CDN."""
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
            # Swagger UI otherwise sends the spec to validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
