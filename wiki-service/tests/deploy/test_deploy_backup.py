"""Backups of the bundled PostgreSQL: the rendered CronJob's own script dumps a populated server,
the rendered restore Job's script (the chart README's procedure) loads the dump into a fresh
server, and every row, checksum and identity sequence is compared. Two private PostgreSQL
servers are started here; nothing else is touched."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg
import pytest

from app.embedded import EmbeddedPostgres
from deploy_helpers import CHART, by_kind, containers, one, pod_spec, render, resolve_env
from tests.support.db import admin_execute, create_role

BACKUP = CHART / "ci" / "backup-values.yaml"
SERVICE_BIN = Path(sys.executable).parent / "wiki-service"
OLD_DUMPS = ["wikidb-20200101T000000Z.dump", "wikidb-20200102T000000Z.dump", "wikidb-20200103T000000Z.dump"]


def _rendered(sets: dict) -> tuple[list[dict], dict, dict]:
    objects = render(BACKUP, {"backup.restore.enabled": True, **sets})
    return (
        objects,
        one(objects, "CronJob", "backup"),
        next(j for j in by_kind(objects, "Job") if j["metadata"]["name"].endswith("-restore")),
    )


def test_backup_cronjob_shape():
    objects, cron, restore = _rendered({})
    assert cron["spec"]["schedule"] == "15 1 * * *" and cron["spec"]["timeZone"] == "Etc/UTC"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    ((_, dump),) = containers(cron)
    script = dump["command"][-1]
    assert "pg_dump --format=custom" in script
    env = {e["name"]: e.get("value") for e in dump["env"]}
    assert env["BACKUP_RETENTION"] == "14"
    # its own volume, kept on uninstall like the data
    (claim,) = [
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec(cron)["volumes"]
        if "persistentVolumeClaim" in v
    ]
    pvc = next(p for p in by_kind(objects, "PersistentVolumeClaim") if p["metadata"]["name"] == claim)
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # it dumps the database the app uses, as the app's user, with the password from a file
    cm = one(objects, "ConfigMap", "api")["data"]
    assert (env["PGHOST"], env["PGPORT"], env["PGDATABASE"], env["PGUSER"]) == (
        cm["DB_HOST"],
        cm["DB_PORT"],
        cm["DB_NAME"],
        cm["DB_USER"],
    )
    assert env["DB_PASSWORD_FILE"] and "DB_PASSWORD" not in env
    # the restore Job reads the same volume
    restore_volumes = [v for v in pod_spec(restore)["volumes"] if "persistentVolumeClaim" in v]
    assert restore_volumes[0]["persistentVolumeClaim"]["claimName"] == claim
    assert not by_kind(render(), "CronJob")


async def _snapshot(url: str) -> dict:
    """Per table: row count and an md5 over all rows; per identity column: max id and the
    sequence's next value."""
    conn = await asyncpg.connect(url)
    try:
        tables = [
            r["table_name"]
            for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
            )
        ]
        snap = {}
        for table in tables:
            snap[table] = tuple(
                await conn.fetchrow(
                    f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                    f"FROM {table} t"
                )
            )
        for row in await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND is_identity = 'YES'"
        ):
            seq = await conn.fetchval(
                "SELECT pg_get_serial_sequence($1, $2)", row["table_name"], row["column_name"]
            )
            last = await conn.fetchrow(f"SELECT last_value, is_called FROM {seq}")
            snap[f"{row['table_name']}.max_id"] = await conn.fetchval(
                f"SELECT max(id) FROM {row['table_name']}"
            )
            snap[f"{row['table_name']}.sequence"] = tuple(last)
        return snap
    finally:
        await conn.close()


def _run(command: list[str], env: dict, secret: str) -> str:
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert secret not in output
    return output


@pytest.fixture(scope="module")
def servers():
    """A populated-to-be source server and a fresh target, both requiring passwords over TCP."""
    root = Path(tempfile.mkdtemp(prefix="wiki-backup-pg-"))
    started = []
    try:
        for name in ("source", "target"):
            started.append(EmbeddedPostgres(root / name, password="admin-pw-x").start())
        yield started
    finally:
        for server in started:
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def _pod_env(obj: dict, objects: list[dict], root: Path, server: EmbeddedPostgres) -> tuple[list[str], dict]:
    """The container's command and environment, pointed at `server` instead of the Service."""
    ((_, container),) = containers(obj)
    env = resolve_env(pod_spec(obj), container, objects, root)
    env.update(
        PGHOST=server.host,
        PGPORT=str(server.port),
        PATH=f"{server.bin_dir}:/usr/local/bin:/usr/bin:/bin",
        HOME=str(root),
        TMPDIR=str(root),
    )
    return container["command"] + container.get("args", []), env


def _prepare_database(server: EmbeddedPostgres, user: str, database: str, password: str, root: Path) -> None:
    """What the bundled PostgreSQL and the migration init containers leave: the app's role owning
    its database, migrated to head."""
    asyncio.run(create_role(server.url(), user, password))
    server.create_database(database, owner=user)
    url = f"postgresql://{user}:{password}@{server.host}:{server.port}/{database}"
    env = {"PATH": os.environ["PATH"], "HOME": str(root), "DATABASE_URL": url}
    _run([str(SERVICE_BIN), "db", "upgrade"], env, password)


def test_rendered_backup_restores_every_row_into_a_fresh_server(servers, tmp_path):
    source, target = servers
    objects, cron, restore = _rendered({"backup.retention": 2})
    _, env = _pod_env(cron, objects, tmp_path, source)
    user, database = env["PGUSER"], env["PGDATABASE"]
    password = Path(env["DB_PASSWORD_FILE"]).read_text()
    assert len(password) == 32 and "PGPASSWORD" not in env and "DB_PASSWORD" not in env

    def app_url(server):
        return f"postgresql://{user}:{password}@{server.host}:{server.port}/{database}"

    _prepare_database(source, user, database, password, tmp_path)
    asyncio.run(
        admin_execute(
            app_url(source),
            "INSERT INTO users (name) SELECT 'user ' || g || ' ünïcødé ''quoted''' "
            "FROM generate_series(1, 600) g",
            "INSERT INTO posts (user_id, content) "
            "SELECT 1 + (g % 600), repeat('post ' || g || E'\\n', 1 + g % 7) FROM generate_series(1, 3000) g",
            # gaps, and the highest ids gone: the sequences are ahead of max(id)
            "DELETE FROM posts WHERE id % 10 = 0 OR id > 2990",
            "DELETE FROM users WHERE id > 595 AND NOT EXISTS (SELECT 1 FROM posts WHERE user_id = users.id)",
        )
    )
    before = asyncio.run(_snapshot(app_url(source)))
    assert before["users"][0] > 500 and before["posts"][0] > 2500
    assert before["posts.sequence"][0] > before["posts.max_id"]

    # earlier dumps on the volume, a leftover of a killed run, and a file that is not ours
    backups = Path(env["BACKUP_DIR"])
    for name in OLD_DUMPS:
        (backups / name).write_text("old")
    (backups / f".{database}-20200104T000000Z.dump.partial").write_text("half")
    (backups / "notes.txt").write_text("keep me")

    command, env = _pod_env(cron, objects, tmp_path, source)
    output = _run(command, env, password)
    dumps = sorted(p.name for p in backups.glob(f"{database}-*.dump"))
    # retention 2: the new dump and the newest old one
    assert len(dumps) == 2 and dumps[0] == OLD_DUMPS[-1], dumps
    new = dumps[1]
    assert f"wrote {new}" in output and f"deleted {OLD_DUMPS[0]}" in output
    assert sorted(p.name for p in backups.iterdir()) == sorted([*dumps, "notes.txt"])
    listing = subprocess.run(
        [str(source.bin_dir / "pg_restore"), "--list", str(backups / new)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "TABLE DATA public users" in listing and "TABLE DATA public posts" in listing

    # the fresh server as a new install leaves it (migrated, empty), then the restore Job
    _prepare_database(target, user, database, password, tmp_path)
    command, env = _pod_env(restore, objects, tmp_path, target)
    assert "RESTORE_FILE" in env and env["RESTORE_FILE"] == ""  # the newest dump
    output = _run(command, env, password)
    assert f"restored {new}" in output

    after = asyncio.run(_snapshot(app_url(target)))
    assert after == before

    # identity sequences continue: new rows get ids above every id the old server handed out
    async def insert() -> tuple[int, int]:
        conn = await asyncpg.connect(app_url(target))
        try:
            uid = await conn.fetchval("INSERT INTO users (name) VALUES ('after restore') RETURNING id")
            pid = await conn.fetchval(
                "INSERT INTO posts (user_id, content) VALUES ($1, 'x') RETURNING id", uid
            )
            return uid, pid
        finally:
            await conn.close()

    uid, pid = asyncio.run(insert())
    assert uid > before["users.max_id"] and pid > before["posts.sequence"][0] > before["posts.max_id"]


def test_restore_names_a_missing_dump(servers, tmp_path):
    _, target = servers
    objects, _, restore = _rendered({"backup.restore.file": "wikidb-19990101T000000Z.dump"})
    command, env = _pod_env(restore, objects, tmp_path, target)
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"no dump wikidb-19990101T000000Z.dump in {env['BACKUP_DIR']}"
