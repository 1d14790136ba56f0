"""The database: SQLAlchemy's async engine and pool on asyncpg, as the design has it.

Queries run on the asyncpg connection that SQLAlchemy's pool hands out, so each request is
one checkout, one prepared statement (an unnamed one with DB_PREPARED_STATEMENTS=false) and
one check-in; the pool keeps the design's settings
(pre-ping, 10 + 20 connections, a timeout). See README "Performance" for the measurements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from types import TracebackType
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.util import greenlet_spawn

from app import metrics
from app.config import get_settings

settings = get_settings()

DATABASE_URL = settings.url  # str() shows the password as ***

log = logging.getLogger("app.database")
sql_log = logging.getLogger("app.sql")


class Base(DeclarativeBase):
    """Declarative base of the models; Alembic's target metadata."""


def length_check(column: str, limit: int) -> str:
    """SQL true when the text has 1..limit characters; counts them only past `limit` bytes."""
    return f"{column} <> '' AND (octet_length({column}) <= {limit} OR char_length({column}) <= {limit})"


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached, is restarting, or no pooled connection came in time."""


class SchemaNotReady(DatabaseUnavailable):
    """The tables are not (yet) what the code expects: an unmigrated database, or a pending
    migration. Not ready, as /readyz says, rather than a server error."""


# The statement the server bound is not the one this connection prepared: a pooler in
# transaction mode shares server sessions and prepared statements are on. Validated input
# cannot cause the last two (a bad binary parameter, a bad UTF-8 byte): a mixed-up one can.
SESSION_MIXUP_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DuplicatePreparedStatementError,
    asyncpg.InvalidSQLStatementNameError,
    asyncpg.InvalidBinaryRepresentationError,
    asyncpg.CharacterNotInRepertoireError,
)
# Errors that mean "the database is away", as opposed to "this statement is wrong".
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.OperatorInterventionError,  # class 57: shutdown, crash, query canceled
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.InterfaceError,  # connection closed under us
    # The protocol is out of step: when PostgreSQL shuts down, its FATAL can reach an idle
    # pooled connection just before the socket closes, and the next query on it fails here.
    asyncpg.InternalClientError,  # also TargetServerAttributeNotMatched: no primary yet
    # The server was demoted under us (a failover): another connection finds the new primary.
    asyncpg.ReadOnlySQLTransactionError,
    *SESSION_MIXUP_ERRORS,
    OSError,
    TimeoutError,
)
# Errors that mean "the schema is not there": the statement is right, the database is behind.
SCHEMA_MISSING_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.UndefinedTableError,
    asyncpg.UndefinedColumnError,
)


def connect_args() -> dict[str, Any]:
    """asyncpg.connect's arguments, for the app's engine and Alembic's.

    statement_timeout is not among them: PgBouncer refuses it as a startup parameter, so
    `db upgrade` stores it as the role's default in the database instead (migrations/env.py).
    """
    args: dict[str, Any] = {
        "timeout": settings.db_pool_timeout,
        "server_settings": {"application_name": "wiki-service"},
    }
    if not settings.db_prepared_statements:
        # Only unnamed statements (asyncpg's cache, then SQLAlchemy's): they live until the
        # next statement of the same transaction, so a transaction-mode pooler may mix them.
        args |= {"statement_cache_size": 0, "prepared_statement_cache_size": 0}
    return args


def create_engine() -> AsyncEngine:
    """The engine with the design's pool: pre-ping, 10 + 20 connections, a bounded wait."""
    engine = create_async_engine(
        DATABASE_URL,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        connect_args=connect_args(),
    )
    _install_cheap_ping(engine)
    event.listen(engine.sync_engine, "connect", lambda *_: metrics.DB_CONNECTIONS_OPENED.inc())
    if settings.db_echo:
        event.listen(engine.sync_engine, "connect", _log_queries)
    return engine


def _install_cheap_ping(engine: AsyncEngine) -> None:
    """Keep pre-ping's protection without a round trip on every checkout.

    asyncpg notices a closed socket by itself (a restarted PostgreSQL closes every session),
    so a connection that is closed fails the ping at once and SQLAlchemy replaces it and all
    older ones. A connection idle longer than DB_PING_IDLE_SECONDS, which a NAT or firewall
    may have dropped silently, still gets the real round-trip ping.
    """
    dialect = engine.sync_engine.dialect
    real_ping = dialect.do_ping
    idle_limit = settings.db_ping_idle_seconds
    # id(DBAPI connection) -> when it was last checked in; the adapter takes no attributes.
    checked_in_at: dict[int, float] = {}

    def do_ping(dbapi_connection: Any) -> bool:
        if dbapi_connection.driver_connection.is_closed():
            return False
        idle = time.monotonic() - checked_in_at.get(id(dbapi_connection), 0.0)
        return True if idle < idle_limit else real_ping(dbapi_connection)

    dialect.do_ping = do_ping  # type: ignore[method-assign]

    @event.listens_for(engine.sync_engine, "checkin")
    def _remember_checkin(dbapi_connection: Any, _record: Any) -> None:
        if dbapi_connection is not None:
            checked_in_at[id(dbapi_connection)] = time.monotonic()

    @event.listens_for(engine.sync_engine, "close")
    def _forget(dbapi_connection: Any, _record: Any) -> None:
        checked_in_at.pop(id(dbapi_connection), None)


def _log_queries(dbapi_connection: Any, _record: Any) -> None:
    def log_query(record: Any) -> None:
        sql_log.info("sql", extra={"sql": record.query, "params": record.args,
                                    "elapsed_ms": round(record.elapsed * 1000, 3)})

    dbapi_connection.driver_connection.add_query_logger(log_query)


engine = create_engine()


# Under steady load a QueuePool closes an overflow connection as soon as it comes back (the
# pool keeps only pool_size idle), so a load just above pool_size opens and closes connections
# all the time. Checkouts therefore queue here for the pool_size warm connections first, and
# only one that waited longer than this goes on to the pool's overflow: spikes and slow
# queries still get the design's 20 extra connections; steady load does not churn them.
OVERFLOW_AFTER_SECONDS = 0.05
_warm = asyncio.Semaphore(settings.db_pool_size)


def reset_pool_gate() -> None:
    """A fresh gate for a new event loop (asyncio primitives bind to the loop that uses them)."""
    global _warm
    _warm = asyncio.Semaphore(settings.db_pool_size)


class _Checkout:
    """`async with checkout() as conn`: an asyncpg connection from SQLAlchemy's pool."""

    __slots__ = ("_fairy", "_warm")

    def __init__(self) -> None:
        self._fairy: Any = None
        self._warm = False

    async def __aenter__(self) -> asyncpg.Connection:
        try:
            async with asyncio.timeout(settings.db_pool_timeout):
                if not _warm.locked():
                    await _warm.acquire()
                    self._warm = True
                else:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(OVERFLOW_AFTER_SECONDS):
                            await _warm.acquire()
                            self._warm = True
                self._fairy = await greenlet_spawn(engine.sync_engine.pool.connect)
        except Exception as error:  # any failure to get a connection means "unavailable"
            self._release_warm()
            log.warning("database unavailable: %s", type(error).__name__)
            raise DatabaseUnavailable from error
        return self._fairy.driver_connection

    def _release_warm(self) -> None:
        if self._warm:
            self._warm = False
            _warm.release()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        fairy, self._fairy = self._fairy, None
        self._release_warm()
        conn = fairy.driver_connection
        # A cancel or a lost server can leave a statement in flight: never hand that out again.
        broken = (
            exc is not None and (isinstance(exc, UNAVAILABLE_ERRORS) or not isinstance(exc, Exception))
        ) or conn.is_in_transaction()
        if not broken:
            pool = engine.sync_engine.pool
            if pool.checkedin() < pool.size():  # type: ignore[attr-defined]
                fairy.close()  # back to the pool's queue: no transaction open, no I/O at all
            else:
                # The pool keeps only pool_size idle connections and closes this overflow
                # one, which is I/O: done outside a greenlet it failed (MissingGreenlet, logged
                # by the pool) and left the connection open until garbage collection.
                await greenlet_spawn(fairy.close)
            if isinstance(exc, SCHEMA_MISSING_ERRORS):
                log.warning("database schema not ready: %s", type(exc).__name__)
                raise SchemaNotReady from exc
            return
        await greenlet_spawn(fairy.invalidate)
        if isinstance(exc, SESSION_MIXUP_ERRORS):
            log.warning("statement mixed up between sessions (%s): behind PgBouncer in transaction "
                        "mode set DB_PREPARED_STATEMENTS=false", type(exc).__name__)
        if isinstance(exc, UNAVAILABLE_ERRORS):
            raise DatabaseUnavailable from exc


def checkout() -> _Checkout:
    """A pooled asyncpg connection; failures to reach PostgreSQL become DatabaseUnavailable."""
    return _Checkout()


async def server_version() -> str:
    """`PostgreSQL 18.1 on x86_64...`: what `SELECT version()` says."""
    async with checkout() as conn:
        return await conn.fetchval("SELECT version()")


def pool_status() -> dict[str, int]:
    """Pool size, checked-out and overflow connections of this process."""
    pool = engine.sync_engine.pool
    return {
        "size": pool.size(),  # type: ignore[attr-defined]
        "checked_out": pool.checkedout(),  # type: ignore[attr-defined]
        "overflow": max(pool.overflow(), 0),  # type: ignore[attr-defined]
        "checked_in": pool.checkedin(),  # type: ignore[attr-defined]
    }
