"""Check-in of pooled connections: an overflow connection the pool does not keep is closed."""

import contextlib
import logging

from app.main import app


async def test_an_overflow_connection_given_back_to_a_full_pool_is_closed(client, caplog):
    # `client` runs the app's lifespan: its Database, a fresh pool and gate on this test's loop.
    caplog.set_level(logging.ERROR, logger="sqlalchemy.pool")
    db = app.state.db
    pool = db.pool
    async with contextlib.AsyncExitStack() as stack:
        held = [await stack.enter_async_context(db.checkout()) for _ in range(db.settings.db_pool_size + 1)]
        assert pool.overflow() >= 1  # the last one is beyond the pool size
    # Back in the pool: pool_size kept idle, the extra one closed (that is I/O).
    assert pool.checkedin() == db.settings.db_pool_size
    assert sum(conn.is_closed() for conn in held) == 1
    assert not [r for r in caplog.records if r.name.startswith("sqlalchemy.pool")], caplog.text
