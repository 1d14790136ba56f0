"""The SQLite side: open and check the file, read each table in id order, check every row.

A row that PostgreSQL can store exactly as it is becomes one tuple of COPY binary format
(copy_binary.py). A row that cannot be stored becomes a reject: its table, id, reasons and
original values. This runs in the reader processes (reader.py), so that SQLite and the checks
use the cores PostgreSQL's COPY leaves free while the command drives it.
"""

from __future__ import annotations

import re
import sqlite3
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any

from app.limits import CONTENT_MAX_LENGTH, NAME_MAX_LENGTH
from app.sqlite_import.copy_binary import EPOCH, PACK
from app.sqlite_import.messages import Batch, IdRange, Reject
from app.sqlite_import.user_ids import UserIds

# Each table's columns; the text and then created_time last.
TABLES = {
    "users": ("id", "name", "created_time"),
    "posts": ("id", "user_id", "content", "created_time"),
}
TEXT_LIMITS = {"name": NAME_MAX_LENGTH, "content": CONTENT_MAX_LENGTH}
_FRACTION = re.compile(r"[.,](\d+)")


class SourceError(Exception):
    """The source is unusable as a whole (missing, not SQLite, wrong tables): one line."""


def open_source(path: str | Path) -> sqlite3.Connection:
    """Open the file read-only and check that it holds the two tables with their columns."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"no such file: {path}")
    if not path.is_file():
        raise SourceError(f"not a file: {path}")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        db.text_factory = bytes
        tables = {
            row[0].decode() for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    except sqlite3.Error as error:
        raise SourceError(f"{path} is not an SQLite database ({error})") from None
    for table, columns in TABLES.items():
        if table not in tables:
            raise SourceError(f"{path} has no table {table!r}: is it the old service's app.db?")
        present = {row[1].decode() for row in db.execute(f"PRAGMA table_info({table})")}
        missing = [column for column in columns if column not in present]
        if missing:
            raise SourceError(f"{path}: table {table!r} has no column {', '.join(missing)}")
    return db


def convert_timestamp(raw: Any, storage: bytes) -> int | str:
    """SQLite timestamp text -> microseconds since 2000-01-01 UTC (timestamptz's own value),
    or the reason it cannot be.

    Naive text (what CURRENT_TIMESTAMP writes) is UTC; an offset or Z is honoured; a T
    separator and 1-6 fractional digits are fine. More precision than PostgreSQL keeps
    (microseconds) would be altered, so it is refused.
    """
    if raw is None:
        return "created_time is NULL"
    if storage != b"text":
        return f"created_time is {storage.decode()}, expected timestamp text"
    try:
        text = raw.decode("ascii")
        fraction = _FRACTION.search(text)
        if fraction and len(fraction.group(1).rstrip("0")) > 6:
            return f"created_time {text!r} is more precise than a microsecond"
        instant = datetime.fromisoformat(text)
    except (UnicodeDecodeError, ValueError, OverflowError):
        return f"created_time {_safe(raw)} is not a timestamp"
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return (instant - EPOCH) // timedelta(microseconds=1)


def check_text(column: str, raw: Any, storage: bytes, limit: int) -> str | None:
    """Why this value cannot be stored in a TEXT column with 1..limit characters, or None."""
    if raw is None:
        return f"{column} is NULL"
    if storage != b"text":
        return f"{column} is {storage.decode()}, expected text"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"{column} is not valid UTF-8 (byte {raw[error.start]:#04x} at offset {error.start})"
    if "\x00" in text:
        return f"{column} contains NUL (\\x00), which PostgreSQL text cannot hold"
    if not text:
        return f"{column} is empty"
    if len(text) > limit:
        return f"{column} is {len(text)} characters, more than {limit}"
    return None


def _safe(raw: Any) -> str:
    if isinstance(raw, bytes):
        try:
            return repr(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return f"x'{raw.hex()}'"
    return repr(raw)


def render_value(raw: Any, storage: bytes) -> Any:
    """An original value for the JSON report: text as a (JSON-escaped) string, other bytes as hex."""
    if isinstance(raw, bytes):
        if storage == b"text":
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"hex": raw.hex(), "storage": storage.decode()}
    return raw


def _reject(table: str, row: tuple[Any, ...], reasons: list[str]) -> Reject:
    columns = TABLES[table]
    values = {c: render_value(row[2 * i], row[2 * i + 1]) for i, c in enumerate(columns)}
    storage = {c: row[2 * i + 1].decode() for i, c in enumerate(columns)}
    return Reject(table, render_value(row[0], row[1]), "; ".join(reasons), values, storage)


def _check_id(column: str, value: Any, storage: bytes) -> str | None:
    if value is None:
        return f"{column} is NULL"
    if type(value) is not int:
        return f"{column} is {storage.decode()}, expected integer"
    if not -(2**63) <= value < 2**63:
        return f"{column} {value} does not fit in a bigint"
    return None


# SQLite itself vouches for the common case: the text stored as text, and the timestamp in
# the canonical 'YYYY-MM-DD HH:MM:SS' form of a real date from year 1 on (the round trip
# through julianday() turns Feb 30 or 24:00 into another text; `+` compares as text, with no
# numeric affinity), which it turns into microseconds since 2000 (julianday() counts whole
# milliseconds, so the rounding to a second is exact). The timestamp comes back NULL for any
# other row, which sends it down the slow path. An id or user_id that is not an integer
# fails to pack there.
_PLAIN_STAMP = (
    "+created_time = datetime(julianday(created_time)) AND +created_time >= '0001' THEN "
    "CAST(round((julianday(created_time) - 2451544.5) * 86400) AS INTEGER) * 1000000 END"
)
# The rows in COPY column order (copy_binary.COLUMNS).
_QUERIES = {
    "users": f"SELECT id, CASE WHEN typeof(name) = 'text' AND {_PLAIN_STAMP}, name "
    f"FROM users {{where}} ORDER BY id",
    "posts": f"SELECT id, user_id, CASE WHEN typeof(content) = 'text' AND {_PLAIN_STAMP}, "
    f"content FROM posts {{where}} ORDER BY id",
}


def _full_row(db: sqlite3.Connection, table: str, row_id: Any) -> tuple[Any, ...]:
    """The row again, each value followed by its storage class (the slow path)."""
    columns = ", ".join(f"{c}, typeof({c})" for c in TABLES[table])
    row: tuple[Any, ...] = db.execute(f"SELECT {columns} FROM {table} WHERE id IS ?", (row_id,)).fetchone()
    return row


def _reasons(table: str, row: tuple[Any, ...], users: UserIds) -> list[str]:
    """Every reason the full row (each value followed by its storage class) cannot land."""
    reasons = []
    for i, column in enumerate(TABLES[table]):
        value, storage = row[2 * i], row[2 * i + 1]
        if column in TEXT_LIMITS:
            reason = check_text(column, value, storage, TEXT_LIMITS[column])
        elif column == "created_time":
            when = convert_timestamp(value, storage)
            reason = when if type(when) is str else None
        else:
            reason = _check_id(column, value, storage)
        if reason is not None:
            reasons.append(reason)
    if table == "posts" and type(user_id := row[2]) is int and user_id not in users:
        if user_id in users.rejected:
            reasons.append(f"user {user_id} was rejected: {users.rejected[user_id]}")
        else:
            reasons.append(f"user_id {user_id} does not exist in users (orphan post)")
    return reasons


def _tuple_of(table: str, row: tuple[Any, ...]) -> bytes:
    """The COPY tuple of a full row that can land."""
    *head, text, stamp = row[0::2]
    return PACK[table]([(*head, convert_timestamp(stamp, row[-1]), text)])


_TUPLES = {"users": (PACK["users"], NAME_MAX_LENGTH), "posts": (PACK["posts"], CONTENT_MAX_LENGTH)}


def plain_tuples(rows: list[tuple[Any, ...]], table: str) -> bytes | None:
    """The COPY tuples of a batch in which every row is plainly storable, or None.

    The checks run a batch at a time, in C. Joined with a space, the texts (the last column)
    are valid UTF-8 only if each one is (a cut sequence meets the ASCII space); a text of
    1..limit bytes has 1..limit characters. A NULL or a number where text, an id or the
    timestamp belongs is a TypeError or a struct.error.
    """
    build, limit = _TUPLES[table]
    try:
        texts = list(map(itemgetter(-1), rows))
        joined = b" ".join(texts)
        if b"\x00" in joined or not (joined.isascii() or _is_utf8(joined)):
            return None
        lengths = list(map(len, texts))
        if min(lengths) == 0 or max(lengths) > limit:
            return None
        return build(rows)
    except (TypeError, struct.error):
        return None


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _select(db: sqlite3.Connection, query: str, id_range: IdRange) -> sqlite3.Cursor:
    cursor = db.cursor()
    if id_range is None:
        return cursor.execute(query.format(where=""))
    return cursor.execute(query.format(where="WHERE id >= ? AND id < ?"), id_range)


def read_rows(
    db: sqlite3.Connection, table: str, batch_size: int, users: UserIds, id_range: IdRange = None
) -> Iterator[Batch]:
    """Batches of `table` (the rows with lo <= id < hi, given a range), in id order.

    Reading users fills `users` with those that can land; a post lands only if its user did.
    """
    reading_users = table == "users"
    cursor = _select(db, _QUERIES[table], id_range)
    while rows := cursor.fetchmany(batch_size):
        tuples = plain_tuples(rows, table) if reading_users or _authors_landed(rows, users) else None
        if tuples is not None:
            if reading_users:
                users.add_all(list(map(itemgetter(0), rows)))
            yield Batch(table, tuples, len(rows), len(rows))
            continue
        out: list[bytes] = []
        rejects: list[Reject] = []
        for row in rows:  # the batch has a row that is not plain: find it, row by row
            row_id = row[0]
            one = plain_tuples([row], table) if reading_users or _author_landed(row[1], users) else None
            if one is None:
                full = _full_row(db, table, row_id)
                reasons = _reasons(table, full, users)
                if reasons:
                    rejects.append(_reject(table, full, reasons))
                    if reading_users and type(row_id) is int:
                        users.discard(row_id, "; ".join(reasons))
                    continue
                one = _tuple_of(table, full)
            out.append(one)
            if reading_users:
                users.add(row_id)
        yield Batch(table, b"".join(out), len(rows), len(out), rejects)


def _authors_landed(rows: list[tuple[Any, ...]], users: UserIds) -> bool:
    try:
        return users.all_landed(list(map(itemgetter(1), rows)))
    except TypeError:  # a user_id that is not an integer
        return False


def _author_landed(user_id: Any, users: UserIds) -> bool:
    return type(user_id) is int and user_id in users


def count_rows(db: sqlite3.Connection, table: str) -> int:
    count: int = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return count


def highest_id(db: sqlite3.Connection, table: str) -> int | None:
    """The highest integer id (SQLite sorts a text or a blob above every number)."""
    highest = db.execute(f"SELECT max(id) FROM {table}").fetchone()[0]
    if highest is None or type(highest) is int:
        return highest
    sql = f"SELECT max(id) FROM {table} WHERE typeof(id) = 'integer'"
    integer: int | None = db.execute(sql).fetchone()[0]
    return integer


def id_ranges(
    db: sqlite3.Connection, table: str, rows: int, batch_size: int, parts: int
) -> list[list[IdRange]]:
    """Id ranges [lo, hi) of about batch_size rows of `table`, dealt round-robin to `parts`
    readers.

    Only when the id is SQLite's rowid (INTEGER PRIMARY KEY: every id an integer, a range a
    b-tree seek); otherwise, or for a small table, the first reader takes every row.
    """
    keys = [(row[1], row[2].upper()) for row in db.execute(f"PRAGMA table_info({table})") if row[5]]
    ddl = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0] or b""
    # Apart: SQLite answers a lone min() or max() from the b-tree, but scans for both at once.
    low, high = db.execute(f"SELECT (SELECT min(id) FROM {table}), (SELECT max(id) FROM {table})").fetchone()
    if (
        keys != [(b"id", b"INTEGER")]
        or b"WITHOUT ROWID" in ddl.upper()
        or type(low) is not int
        or rows < 4 * batch_size
        or parts < 2
    ):
        whole: list[IdRange] = [None]
        return [whole] + [[] for _ in range(parts - 1)]
    width = max(batch_size, (high - low + 1) * batch_size // rows)
    ranges: list[IdRange] = [(lo, min(lo + width, high + 1)) for lo in range(low, high + 1, width)]
    return [ranges[part::parts] for part in range(parts)]
