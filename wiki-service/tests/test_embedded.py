"""app.embedded's database helpers: any name is quoted as an identifier, never run as SQL."""

import uuid

import asyncpg

from app.embedded import create_database, drop_database


async def test_create_database_quotes_a_hostile_name_and_drop_removes_it(admin_url):
    name = f'wt_{uuid.uuid4().hex[:8]} "; DROP DATABASE postgres; -- 100%'
    owner = f'wt owner "{uuid.uuid4().hex[:8]}'
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"""CREATE ROLE "{owner.replace('"', '""')}" """)
        await create_database(admin_url, name, owner=owner)
        await create_database(admin_url, name, exist_ok=True)  # already there: no error
        found = await conn.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", name
        )
        assert found == owner
        await drop_database(admin_url, name)
        assert await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", name) == 0
        assert await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = 'postgres'") == 1
    finally:
        await drop_database(admin_url, name)
        await conn.execute(f"""DROP ROLE IF EXISTS "{owner.replace('"', '""')}" """)
        await conn.close()
