#!/usr/bin/env python3
"""Summarize a py-spy `--format raw` (collapsed stacks) profile: where the time goes.

    python bench/pyspy_summary.py bench/results/profile-.../service-get_user.txt

Prints the share of samples by package of the innermost Python frame (self time), the top
functions by self time, and the top functions by inclusive time (any frame in the stack).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def parse(text: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        try:
            stacks.append((stack.split(";"), int(count)))
        except ValueError:
            continue
    return stacks


def _func(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame or "<no Python frame>"
    return f"{match.group('func')} ({match.group('file')})"


def package(frame: str) -> str:
    match = _FRAME.match(frame)
    path = match.group("file") if match else frame
    path = path.replace("\\", "/")
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif "/lib/python3" in path:
        return "stdlib"
    first = path.split("/", 1)[0]
    if first.endswith(".py"):
        first = first[:-3]
    if first in (
        "asyncio",
        "json",
        "typing",
        "inspect",
        "contextlib",
        "functools",
        "enum",
        "dataclasses",
        "logging",
        "threading",
        "socket",
        "selectors",
        "abc",
        "re",
        "collections",
        "copy",
        "uuid",
        "datetime",
        "weakref",
        "traceback",
    ):
        return "stdlib"
    return first or "?"


# Frames that only start the server or the event loop: they sit under every stack that is
# not an event-loop callback, so they say nothing about where request time goes.
_ROOT_FRAMES = re.compile(
    r"\((<frozen runpy>|click/|uvicorn/(main|server|_compat|__main__)\.py|asyncio/(runners|base_events)\.py"
    r"|multiprocessing/|uvicorn/supervisors/|app/cli\.py)"
)


# Layers of a request, matched against each frame from the innermost outwards: a sample
# belongs to the first layer found, so time in a helper (contextlib, ssl, re...) is charged
# to the layer that called it.
LAYERS: list[tuple[str, re.Pattern[str]]] = [
    (
        "db: opening connections",
        re.compile(
            r"asyncpg/connect_utils\.py|^connect \(asyncpg/connection\.py"
            r"|AsyncAdapt_dbapi_connection\.create"
        ),
    ),
    ("db: closing/aborting connections", re.compile(r"(_abort|terminate|__del__|close) \(asyncpg/")),
    ("logging", re.compile(r"\(logging/|\(app/logs\.py")),
    ("metrics", re.compile(r"prometheus_client/|\(app/metrics\.py")),
    ("db: asyncpg queries and protocol", re.compile(r"\(asyncpg/")),
    ("db: SQLAlchemy pool/ORM", re.compile(r"\(sqlalchemy/")),
    ("pydantic", re.compile(r"\(pydantic")),
    ("JSON encoding", re.compile(r"orjson|\(json/|\(app/responses\.py")),
    ("service code (app/)", re.compile(r"\(app/")),
    ("FastAPI/Starlette/anyio (routing, DI, middleware)", re.compile(r"\((fastapi|starlette|anyio)/")),
    ("uvicorn/httptools (HTTP)", re.compile(r"\((uvicorn|httptools)/")),
    ("event loop (asyncio/uvloop, no request frame)", re.compile(r"\(asyncio/|\(uvloop/")),
]


def layer(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in LAYERS:
            if pattern.search(frame):
                return name
    return "other"


def _strip_process(frames: list[str]) -> list[str]:
    """py-spy --subprocesses roots each stack at a "process PID:cmdline" frame."""
    while frames and frames[0].startswith(("process ", "thread ")):
        frames = frames[1:]
    return frames or ["<native code, no Python frame (GC, event loop internals)>"]


def summarize(text: str, top: int = 15) -> dict:
    stacks = parse(text)
    total = sum(count for _, count in stacks)
    by_package: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_layer: Counter[str] = Counter()
    for frames, count in stacks:
        frames = _strip_process(frames)
        by_layer[layer(frames)] += count
        leaf = frames[-1]
        # py-spy may add a "process ..." or "thread ..." root frame with --subprocesses.
        by_package[package(leaf)] += count
        self_time[_func(leaf)] += count
        for func in {_func(f) for f in frames if not _ROOT_FRAMES.search(f)}:
            inclusive[func] += count
    pct = (lambda n: 100.0 * n / total) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "by_package": [(name, n, pct(n)) for name, n in by_package.most_common()],
        "by_layer": [(name, n, pct(n)) for name, n in by_layer.most_common()],
        "self": [(name, n, pct(n)) for name, n in self_time.most_common(top)],
        "inclusive": [(name, n, pct(n)) for name, n in inclusive.most_common(top * 2)],
    }


def render(summary: dict, title: str = "") -> str:
    lines = []
    if title:
        lines.append(f"### {title}")
    lines.append(f"{summary['samples']} samples (active Python threads only)")
    lines.append("")
    lines.append("time by layer (each sample charged to the innermost known layer):")
    for name, _, p in summary["by_layer"]:
        lines.append(f"  {p:5.1f}%  {name}")
    lines.append("")
    lines.append(
        "self time by package: "
        + ", ".join(f"{name} {p:.1f}%" for name, _, p in summary["by_package"] if p >= 0.5)
    )
    lines.append("")
    lines.append("top self time:")
    for name, _, p in summary["self"]:
        lines.append(f"  {p:5.1f}%  {name}")
    lines.append("")
    lines.append("top inclusive time:")
    for name, _, p in summary["inclusive"]:
        lines.append(f"  {p:5.1f}%  {name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    for path in args.files:
        print(render(summarize(path.read_text(errors="replace"), args.top), str(path)))
        print()


if __name__ == "__main__":
    main()
