"""Prometheus metrics, right with one worker process or many.

With several workers (`serve --workers N`) every process writes its samples to files in
PROMETHEUS_MULTIPROC_DIR and a scrape of any worker sums them all, so counters add up to
what was created across the processes. `serve` sets that folder up before the workers start.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

USERS_CREATED = Counter("users_created", "Users created.")
POSTS_CREATED = Counter("posts_created", "Posts created.")

HTTP_REQUESTS = Counter("http_requests", "HTTP requests answered.", ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time from request to the end of the response.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

SEARCH_PLANS = Counter(
    "search_plans", "Searches answered, by the plan that finished them (app/posts/search.py).", ["plan"]
)
SEARCHES_REFUSED = Counter(
    "searches_refused", "Searches answered 503: no turn in time (busy) or over their timeout.", ["reason"]
)
SEARCH_BUCKETS_SEALED = Counter(
    "search_buckets_sealed", "Buckets of posts whose search bitmaps were written (app/posts/bitmaps.py)."
)

DB_CONNECTIONS_OPENED = Counter(
    "db_pool_connections_opened", "Connections the pool opened to PostgreSQL (churn shows here)."
)

# livesum: the sum over the worker processes that are alive.
POOL_GAUGES = {
    name: Gauge(f"db_pool_{name}", help_text, multiprocess_mode="livesum")
    for name, help_text in {
        "size": "Connections the pool keeps open (pool size).",
        "checked_out": "Connections in use by requests.",
        "checked_in": "Idle connections in the pool.",
        "overflow": "Connections open beyond the pool size.",
    }.items()
}

CONTENT_TYPE = CONTENT_TYPE_LATEST


def observe_pool(status: dict[str, int]) -> None:
    """Copy this process's pool counts into the gauges."""
    for name, gauge in POOL_GAUGES.items():
        gauge.set(status[name])


def render() -> bytes:
    """The text exposition of every metric, summed over the worker processes."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


def forget_dead_workers() -> None:
    """Drop the live gauges of workers that have exited (killed ones leave their files)."""
    if not MULTIPROCESS:
        return
    for path in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("gauge_live*_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid)
        except PermissionError:  # alive, owned by someone else
            pass


class RequestMetrics:
    """Per-request counter and histogram, with the labelled children cached."""

    def __init__(self) -> None:
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._histograms: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = self._counters[(method, route, status)] = HTTP_REQUESTS.labels(
                method, route, str(status)
            )
        histogram = self._histograms.get((method, route))
        if histogram is None:
            histogram = self._histograms[(method, route)] = HTTP_DURATION.labels(method, route)
        counter.inc()
        histogram.observe(seconds)
