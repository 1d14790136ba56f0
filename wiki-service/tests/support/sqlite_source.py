"""Old SQLite `app.db` files, as the service before PostgreSQL wrote them, for `migrate-sqlite`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

# The old service's tables, as SQLAlchemy created them, minus NOT NULL so that the tests can
# write the NULLs real files hold anyway (SQLite enforces neither types nor foreign keys), and
# with `name` untyped so that an integer stays an integer (VARCHAR affinity would turn it to text).
OLD_SCHEMA = """
CREATE TABLE users (id INTEGER NOT NULL, name, created_time DATETIME
    DEFAULT (CURRENT_TIMESTAMP), PRIMARY KEY (id));
CREATE TABLE posts (id INTEGER NOT NULL, content TEXT, user_id INTEGER, created_time DATETIME
    DEFAULT (CURRENT_TIMESTAMP), PRIMARY KEY (id), FOREIGN KEY(user_id) REFERENCES users (id));
"""


def make_source(path: Path, users=(), posts=(), *, raw_users=(), raw_posts=()) -> Path:
    """users: (id, name, created_time); posts: (id, user_id, content, created_time); raw_*: SQL."""
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.executemany("INSERT INTO users (id, name, created_time) VALUES (?, ?, ?)", users)
    db.executemany("INSERT INTO posts (id, user_id, content, created_time) VALUES (?, ?, ?, ?)", posts)
    for sql in (*raw_users, *raw_posts):
        db.execute(sql)
    db.commit()
    db.close()
    return path


def clean_source(path: Path, users: int = 30, posts: int = 60) -> Path:
    return make_source(
        path,
        users=[(i, f"user {i}", f"2024-01-{1 + i % 28:02d} 10:00:{i % 60:02d}") for i in range(1, users + 1)],
        posts=[
            (i, 1 + i % users, f"post {i}\twith a tab, a \\ and\na newline", "2024-02-01 00:00:00")
            for i in range(1, posts + 1)
        ],
    )
