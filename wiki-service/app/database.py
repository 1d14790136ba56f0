"""The database: SQLAlchemy's async engine and pool on asyncpg, as the design has it.

`Database` is the composition root of everything that talks to PostgreSQL: the app's
lifespan creates one (app.state.db) and so does each CLI command; nothing connects at
import. Queries run on the asyncpg connection that SQLAlchemy's pool hands out, so each
request is one checkout, one prepared statement (an unnamed one with
DB_PREPARED_STATEMENTS=false) and one check-in; the pool keeps the design's settings
(pre-ping, 10 + 20 connections, a timeout). See docs/performance.md for the measurements.

`from app.database import DATABASE_URL` still gives the configured URL (password masked
when printed): a URL, not an engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType
from typing import Any

import asyncpg
from sqlalchemy import URL, event, exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import PoolProxiedConnection, QueuePool

from app import metrics
from app.config import Settings, get_settings

log = logging.getLogger("app.database")
sql_log = logging.getLogger("app.sql")


def __getattr__(name: str) -> URL:
    # The design's `from app.database import DATABASE_URL`: read when asked for, not at import.
    if name == "DATABASE_URL":
        return get_settings().url  # str() shows the password as ***
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached, is restarting, or no pooled connection came in time."""


class SchemaNotReady(DatabaseUnavailable):
    """The tables are not (yet) what the code expects: an unmigrated database, or a pending
    migration. Not ready, as /readyz says, rather than a server error."""


# -- error classification -------------------------------------------------------------


class StatementMixedUp(Exception):
    """A statement answered what it cannot (no row from INSERT ... RETURNING): the server ran
    another session's statement of the same name (prepared statements behind a pooler in
    transaction mode)."""


# The statement the server bound is not the one this connection prepared: a pooler in
# transaction mode shares server sessions and prepared statements are on. Validated input
# cannot cause the last two (a bad binary parameter, a bad UTF-8 byte): a mixed-up one can.
SESSION_MIXUP_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.DuplicatePreparedStatementError,
    asyncpg.InvalidSQLStatementNameError,
    asyncpg.InvalidBinaryRepresentationError,
    asyncpg.CharacterNotInRepertoireError,
    StatementMixedUp,
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


async def inserted_row(conn: asyncpg.Connection, sql: str, *args: object) -> asyncpg.Record:
    """The row an `INSERT ... RETURNING` statement wrote; StatementMixedUp (503) if none came."""
    row = await conn.fetchrow(sql, *args)
    if row is None:
        raise StatementMixedUp
    return row


def leaves_connection_broken(error: BaseException | None, conn: asyncpg.Connection) -> bool:
    """Whether the connection must not be handed out again: the server is away, or a cancel
    or a lost server left a statement or a transaction in flight."""
    if error is not None and (isinstance(error, UNAVAILABLE_ERRORS) or not isinstance(error, Exception)):
        return True
    return bool(conn.is_in_transaction())


def as_unavailable(error: BaseException | None) -> DatabaseUnavailable | None:
    """What a statement's error means for the client: the database away (503), the schema not
    ready (503), or None when the error is the statement's own."""
    if isinstance(error, SCHEMA_MISSING_ERRORS):
        log.warning("database schema not ready: %s", type(error).__name__)
        return SchemaNotReady()
    if isinstance(error, SESSION_MIXUP_ERRORS):
        log.warning(
            "statement mixed up between sessions (%s): behind PgBouncer in transaction "
            "mode set DB_PREPARED_STATEMENTS=false",
            type(error).__name__,
        )
    if isinstance(error, UNAVAILABLE_ERRORS):
        return DatabaseUnavailable()
    return None


# -- the engine -----------------------------------------------------------------------


def connect_args(settings: Settings) -> dict[str, Any]:
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


class CheapPing:
    """The design's pre-ping without a round trip on every checkout (pool checkout/checkin
    listeners, in place of the pool's own pre-ping).

    asyncpg notices a closed socket by itself (a restarted PostgreSQL closes every session),
    so a closed connection fails at once, and the pool replaces it and all older ones. A
    connection idle longer than DB_PING_IDLE_SECONDS, which a NAT or firewall may have dropped
    silently, still gets the real round-trip ping.
    """

    def __init__(self, engine: AsyncEngine, idle_seconds: float) -> None:
        self._dialect = engine.sync_engine.dialect
        self._idle_seconds = idle_seconds
        event.listen(engine.sync_engine.pool, "checkout", self.on_checkout)
        event.listen(engine.sync_engine.pool, "checkin", self.on_checkin)

    def on_checkin(self, _dbapi_connection: Any, record: Any) -> None:
        # record.info lives as long as this DBAPI connection: a new one starts empty.
        record.info["checked_in_at"] = time.monotonic()

    def on_checkout(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise exc.InvalidatePoolError("connection closed")
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < self._idle_seconds:
            return  # just connected, or used a moment ago
        try:
            self._dialect.do_ping(dbapi_connection)
        except self._dialect.loaded_dbapi.Error as error:
            if self._dialect.is_disconnect(error, dbapi_connection, None):
                raise exc.InvalidatePoolError("ping failed") from error
            raise


def create_engine(settings: Settings) -> AsyncEngine:
    """The engine with the design's pool: pre-ping, 10 + 20 connections, a bounded wait."""
    engine = create_async_engine(
        settings.url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        connect_args=connect_args(settings),
    )
    event.listen(engine.sync_engine, "connect", lambda *_: metrics.DB_CONNECTIONS_OPENED.inc())
    if settings.db_echo:
        event.listen(engine.sync_engine, "connect", _log_queries)
    return engine


def _log_queries(dbapi_connection: Any, _record: Any) -> None:
    def log_query(record: Any) -> None:
        sql_log.info(
            "sql",
            extra={"sql": record.query, "params": record.args, "elapsed_ms": round(record.elapsed * 1000, 3)},
        )

    dbapi_connection.driver_connection.add_query_logger(log_query)


# -- admission and checkout -------------------------------------------------------------

# Under steady load a QueuePool closes an overflow connection as soon as it comes back (the
# pool keeps only pool_size idle), so a load just above pool_size opens and closes connections
# all the time. Checkouts therefore queue here for the pool_size warm connections first, and
# only one that waited longer than this goes on to the pool's overflow: spikes and slow
# queries still get the design's 20 extra connections; steady load does not churn them.
OVERFLOW_AFTER_SECONDS = 0.05


class AdmissionGate:
    """Who may take one of the pool's warm connections; the rest wait OVERFLOW_AFTER_SECONDS
    for one, then go on to the overflow. Bound to the event loop that first uses it."""

    __slots__ = ("_warm",)

    def __init__(self, warm_connections: int) -> None:
        self._warm = asyncio.Semaphore(warm_connections)

    async def enter(self) -> bool:
        """Wait for a warm slot, up to OVERFLOW_AFTER_SECONDS when all are taken; True if one
        was taken (give it back with leave)."""
        warm = self._warm
        if not warm.locked():
            await warm.acquire()
            return True
        try:
            async with asyncio.timeout(OVERFLOW_AFTER_SECONDS):
                await warm.acquire()
        except TimeoutError:
            return False
        return True

    def leave(self) -> None:
        self._warm.release()


class _Checkout:
    """`async with db.checkout() as conn`: an asyncpg connection from SQLAlchemy's pool."""

    __slots__ = ("_db", "_connection", "_warm")

    def __init__(self, db: Database) -> None:
        self._db = db
        self._connection: PoolProxiedConnection | None = None
        self._warm = False

    async def __aenter__(self) -> asyncpg.Connection:
        db = self._db
        try:
            async with asyncio.timeout(db.pool_timeout):
                self._warm = await db.gate.enter()
                self._connection = connection = await db.engine.raw_connection()
        except Exception as error:  # any failure to get a connection means "unavailable"
            self._leave_gate()
            log.warning("database unavailable: %s", type(error).__name__)
            raise DatabaseUnavailable from error
        return connection.driver_connection

    def _leave_gate(self) -> None:
        if self._warm:
            self._warm = False
            self._db.gate.leave()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None
        assert connection is not None
        self._leave_gate()
        driver: asyncpg.Connection = connection.driver_connection  # not None while checked out
        if leaves_connection_broken(error, driver):
            connection.invalidate(error)  # outside SQLAlchemy's greenlet: the socket closes now
        elif self._db.pool.checkedin() < self._db.pool.size():
            connection.close()  # back to the pool's queue: no transaction open, no I/O at all
        else:
            # The pool keeps only pool_size idle connections and would close this overflow one
            # itself, which is I/O it can do only inside SQLAlchemy's greenlet.
            connection.detach()
            try:
                await driver.close()
            except Exception:  # it is going away either way
                driver.terminate()
        if (unavailable := as_unavailable(error)) is not None:
            raise unavailable from error


class Database:
    """The engine, its pool, the admission gate and the checkout, built from the settings.

    Created by the app's lifespan and by each CLI command (the gate binds to one event
    loop); `await dispose()` closes the pool's connections.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool_timeout = settings.db_pool_timeout
        self.engine = create_engine(settings)
        pool = self.engine.sync_engine.pool
        assert isinstance(pool, QueuePool)
        self.pool = pool
        self.ping = (
            CheapPing(self.engine, settings.db_ping_idle_seconds) if settings.db_pool_pre_ping else None
        )
        self.gate = AdmissionGate(settings.db_pool_size)

    def checkout(self) -> _Checkout:
        """A pooled asyncpg connection; failures to reach PostgreSQL become DatabaseUnavailable."""
        return _Checkout(self)

    async def server_version(self) -> str:
        """`PostgreSQL 18.1 on x86_64...`: what `SELECT version()` says."""
        async with self.checkout() as conn:
            version: str = await conn.fetchval("SELECT version()")
        return version

    def pool_status(self) -> dict[str, int]:
        """Pool size, checked-out and overflow connections of this process."""
        pool = self.pool
        return {
            "size": pool.size(),
            "checked_out": pool.checkedout(),
            "overflow": max(pool.overflow(), 0),
            "checked_in": pool.checkedin(),
        }

    async def dispose(self) -> None:
        """Close the pooled connections."""
        await self.engine.dispose()
