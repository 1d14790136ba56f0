"""The SQLite side: open and check the file, read each table in id order, check every row.

A row that PostgreSQL can store exactly as it is becomes one tuple of COPY binary format: the
very bytes PostgreSQL prints back (`COPY ... TO STDOUT (FORMAT binary)`), so the checksum of
the tuples sent equals the checksum of the tuples read back when nothing was altered. (Binary,
not text: PostgreSQL parses it in half the time, with no timestamp or escaping to parse.)
A row that cannot be stored becomes a reject: its table, id, reasons and original values.

The reading runs in child processes (`reader_main`), so that SQLite and the checks use the
cores PostgreSQL's COPY leaves free while the parent drives it.
"""

from __future__ import annotations

import re
import sqlite3
import struct
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import itemgetter
from pathlib import Path
from typing import Any

from app.limits import CONTENT_MAX_LENGTH, NAME_MAX_LENGTH

TABLES = {
    "users": ("id", "name", "created_time"),
    "posts": ("id", "user_id", "content", "created_time"),
}

# COPY binary format: a header, then per row a field count and each field as its length and
# bytes (integers and timestamps 8 bytes big-endian), then a trailer. created_time is
# microseconds since 2000-01-01 00:00 UTC.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, no header extension
COPY_TRAILER = b"\xff\xff"
# The columns of a tuple, the text last, so that everything before it packs in one call.
COPY_COLUMNS = {
    "users": ("id", "created_time", "name"),
    "posts": ("id", "user_id", "created_time", "content"),
}
_USER_HEAD = struct.Struct(">hiqiqi")  # 3 fields; id; created_time; name's length
_POST_HEAD = struct.Struct(">hiqiqiqi")  # 4 fields; id; user_id; created_time; content's length
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_FRACTION = re.compile(r"[.,](\d+)")

# User ids below this are tracked with one byte each; others (rare) in a set.
DENSE_ID_LIMIT = 64 * 1024 * 1024


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
        tables = {row[0].decode() for row in
                  db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
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
        instant = instant.replace(tzinfo=timezone.utc)
    return (instant - _PG_EPOCH) // timedelta(microseconds=1)


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


@dataclass
class Reject:
    table: str
    id: Any
    reason: str
    values: dict[str, Any]
    storage: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        return {"table": self.table, "id": self.id, "reason": self.reason,
                "values": self.values, "storage": self.storage}


def _reject(table: str, row: tuple, reasons: list[str]) -> Reject:
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


class UserIds:
    """Which user ids landed (a byte per id from 0 up to the highest, within a limit; a set for
    the others) and why the others did not."""

    def __init__(self, high: int | None) -> None:
        size = min(high, DENSE_ID_LIMIT - 1) + 1 if type(high) is int and high >= 0 else 0
        self.flags = bytearray(size)
        self.members: set[int] = set()
        self.rejected: dict[int, str] = {}

    def add(self, user_id: int) -> None:
        if 0 <= user_id < len(self.flags):
            self.flags[user_id] = 1
        else:
            self.members.add(user_id)

    def add_all(self, user_ids: list[int]) -> None:
        first, last = user_ids[0], user_ids[-1]
        if 0 <= first and last < len(self.flags) and last - first + 1 == len(user_ids):
            self.flags[first:last + 1] = b"\x01" * len(user_ids)  # ids in order, no gaps
        else:
            for user_id in user_ids:
                self.add(user_id)

    def discard(self, user_id: int, reason: str) -> None:
        if 0 <= user_id < len(self.flags):
            self.flags[user_id] = 0
        self.members.discard(user_id)
        self.rejected[user_id] = reason

    def update(self, other: UserIds) -> None:
        """Add the users another reader found landed (from id ranges disjoint from ours)."""
        flags, theirs, step = self.flags, other.flags, 1 << 20
        assert len(flags) == len(theirs)
        for start in range(0, len(flags), step):  # a flag is 0 or 1: OR them, a chunk at a time
            chunk = slice(start, start + step)
            merged = int.from_bytes(flags[chunk], "little") | int.from_bytes(theirs[chunk], "little")
            flags[chunk] = merged.to_bytes(len(flags[chunk]), "little")
        self.members |= other.members
        self.rejected.update(other.rejected)

    def __contains__(self, user_id: int) -> bool:
        if 0 <= user_id < len(self.flags):
            return self.flags[user_id] == 1
        return user_id in self.members

    def all_landed(self, user_ids: list[int]) -> bool:
        """True when every id is a landed user in the byte range (a batch-at-a-time check)."""
        flags = self.flags
        return (min(user_ids) >= 0 and max(user_ids) < len(flags)
                and all(map(flags.__getitem__, user_ids)))


@dataclass
class Batch:
    """What the reader sends per batch: COPY binary tuples (in id order) and the rejects."""

    table: str
    tuples: bytes
    rows: int  # rows read from the source in this batch (landing + rejected)
    good: int  # tuples in `tuples`
    rejects: list[Reject] = field(default_factory=list)


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
_USERS_QUERY = (
    f"SELECT id, CASE WHEN typeof(name) = 'text' AND {_PLAIN_STAMP}, name "
    f"FROM users {{where}} ORDER BY id"
)
_POSTS_QUERY = (
    f"SELECT id, user_id, CASE WHEN typeof(content) = 'text' AND {_PLAIN_STAMP}, content "
    f"FROM posts {{where}} ORDER BY id"
)


def _full_row(db: sqlite3.Connection, table: str, row_id: Any) -> tuple:
    """The row again, each value followed by its storage class (the slow path)."""
    columns = ", ".join(f"{c}, typeof({c})" for c in TABLES[table])
    return db.execute(f"SELECT {columns} FROM {table} WHERE id IS ?", (row_id,)).fetchone()


def _user_reasons(row: tuple) -> list[str]:
    user_id, id_type, name, name_type, stamp, stamp_type = row
    when = convert_timestamp(stamp, stamp_type)
    return [r for r in (
        _check_id("id", user_id, id_type),
        check_text("name", name, name_type, NAME_MAX_LENGTH),
        when if type(when) is str else None,
    ) if r is not None]


def _user_tuples(rows: list[tuple]) -> bytes:
    """COPY binary tuples of (id, microseconds, name) rows."""
    head, out = _USER_HEAD.pack, []
    append = out.append
    for user_id, micros, name in rows:  # one join at the end: cheaper than concatenating
        append(head(3, 8, user_id, 8, micros, len(name)))
        append(name)
    return b"".join(out)


def _post_tuples(rows: list[tuple]) -> bytes:
    """COPY binary tuples of (id, user_id, microseconds, content) rows."""
    head, out = _POST_HEAD.pack, []
    append = out.append
    for post_id, user_id, micros, content in rows:
        append(head(4, 8, post_id, 8, user_id, 8, micros, len(content)))
        append(content)
    return b"".join(out)


_TUPLES = {"users": (_user_tuples, NAME_MAX_LENGTH), "posts": (_post_tuples, CONTENT_MAX_LENGTH)}


def plain_tuples(rows: list[tuple], table: str) -> bytes | None:
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


def _select(db: sqlite3.Connection, query: str, id_range: tuple[int, int] | None) -> sqlite3.Cursor:
    cursor = db.cursor()
    if id_range is None:
        return cursor.execute(query.format(where=""))
    return cursor.execute(query.format(where="WHERE id >= ? AND id < ?"), id_range)


def read_users(db: sqlite3.Connection, batch_size: int, ids: UserIds,
               id_range: tuple[int, int] | None = None):
    """Yield Batch objects for users (those with lo <= id < hi, given a range), in id order;
    fills `ids` with the users that can land."""
    cursor = _select(db, _USERS_QUERY, id_range)
    while rows := cursor.fetchmany(batch_size):
        tuples = plain_tuples(rows, "users")
        if tuples is not None:
            ids.add_all(list(map(itemgetter(0), rows)))
            yield Batch("users", tuples, len(rows), len(rows))
            continue
        out: list[bytes] = []
        rejects: list[Reject] = []
        for row in rows:  # the batch has a row that is not plain: find it, row by row
            user_id = row[0]
            one = plain_tuples([row], "users")
            if one is not None:
                out.append(one)
                ids.add(user_id)
                continue
            full = _full_row(db, "users", user_id)
            reasons = _user_reasons(full)
            if reasons:
                rejects.append(_reject("users", full, reasons))
                if type(user_id) is int:
                    ids.discard(user_id, "; ".join(reasons))
                continue
            when = convert_timestamp(full[4], full[5])
            out.append(_user_tuples([(user_id, when, full[2])]))
            ids.add(user_id)
        yield Batch("users", b"".join(out), len(rows), len(out), rejects)


def read_posts(db: sqlite3.Connection, batch_size: int, users: UserIds,
               id_range: tuple[int, int] | None = None):
    """Yield Batch objects for posts (those with lo <= id < hi, given a range), in id order;
    a post lands only if its user landed."""
    cursor = _select(db, _POSTS_QUERY, id_range)
    while rows := cursor.fetchmany(batch_size):
        try:
            landed = users.all_landed(list(map(itemgetter(1), rows)))
        except TypeError:  # a user_id that is not an integer
            landed = False
        tuples = plain_tuples(rows, "posts") if landed else None
        if tuples is not None:
            yield Batch("posts", tuples, len(rows), len(rows))
            continue
        out: list[bytes] = []
        rejects: list[Reject] = []
        for row in rows:  # the batch has a row that is not plain: find it, row by row
            if type(row[1]) is int and row[1] in users:
                one = plain_tuples([row], "posts")
                if one is not None:
                    out.append(one)
                    continue
            full = _full_row(db, "posts", row[0])
            post_id, id_type, user_id, user_type, content, content_type, stamp, stamp_type = full
            when = convert_timestamp(stamp, stamp_type)
            reasons = [r for r in (
                _check_id("id", post_id, id_type),
                _check_id("user_id", user_id, user_type),
                check_text("content", content, content_type, CONTENT_MAX_LENGTH),
                when if type(when) is str else None,
            ) if r is not None]
            if type(user_id) is int and user_id not in users:
                if user_id in users.rejected:
                    reasons.append(f"user {user_id} was rejected: {users.rejected[user_id]}")
                else:
                    reasons.append(f"user_id {user_id} does not exist in users (orphan post)")
            if reasons:
                rejects.append(_reject("posts", full, reasons))
                continue
            out.append(_post_tuples([(post_id, user_id, when, content)]))
        yield Batch("posts", b"".join(out), len(rows), len(out), rejects)


def count_rows(db: sqlite3.Connection, table: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def highest_id(db: sqlite3.Connection, table: str) -> int | None:
    """The highest integer id (SQLite sorts a text or a blob above every number)."""
    highest = db.execute(f"SELECT max(id) FROM {table}").fetchone()[0]
    if highest is None or type(highest) is int:
        return highest
    return db.execute(f"SELECT max(id) FROM {table} WHERE typeof(id) = 'integer'").fetchone()[0]


def id_ranges(db: sqlite3.Connection, table: str, rows: int, batch_size: int,
              parts: int) -> list[list]:
    """Id ranges [lo, hi) of about batch_size rows of `table`, dealt round-robin to `parts`
    readers.

    Only when the id is SQLite's rowid (INTEGER PRIMARY KEY: every id an integer, a range a
    b-tree seek); otherwise, or for a small table, the first reader takes every row.
    """
    keys = [(row[1], row[2].upper()) for row in db.execute(f"PRAGMA table_info({table})") if row[5]]
    ddl = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0] or b""
    # Apart: SQLite answers a lone min() or max() from the b-tree, but scans for both at once.
    low, high = db.execute(f"SELECT (SELECT min(id) FROM {table}), (SELECT max(id) FROM {table})"
                           ).fetchone()
    if (keys != [(b"id", b"INTEGER")] or b"WITHOUT ROWID" in ddl.upper() or type(low) is not int
            or rows < 4 * batch_size or parts < 2):
        return [[None]] + [[] for _ in range(parts - 1)]
    width = max(batch_size, (high - low + 1) * batch_size // rows)
    ranges = [(lo, min(lo + width, high + 1)) for lo in range(low, high + 1, width)]
    return [ranges[part::parts] for part in range(parts)]


def _send_ranges(pipe: Any, read: Any, ranges: list) -> None:
    """Each range's batches, then ("range", lo): the parent then turns to the next reader."""
    for id_range in ranges:
        for batch in read(id_range):
            pipe.send(batch)
        pipe.send(("range", id_range and id_range[0]))


def reader_main(path: str, batch_size: int, pipe: Any) -> None:
    """A child process: read its share of the users, then of the posts.

    Receives ("users", [id ranges]) and sends, per range, Batch objects then ("range", lo);
    then ("done", "users") and ("landed", UserIds of its users). Receives ("posts", {user_id:
    reason the target refused it}, [the other readers' UserIds], [id ranges]) and sends the
    posts the same way, then ("done", "posts"). Any failure is sent as ("error", text).
    """
    try:
        db = open_source(path)
        kind, ranges = pipe.recv()
        if kind != "users":
            return
        ids = UserIds(highest_id(db, "users"))
        _send_ranges(pipe, lambda id_range: read_users(db, batch_size, ids, id_range), ranges)
        pipe.send(("done", "users"))
        pipe.send(("landed", ids))
        kind, refused, others, ranges = pipe.recv()
        if kind != "posts":
            return
        for other in others:
            ids.update(other)
        for user_id, reason in refused.items():
            ids.discard(user_id, reason)
        _send_ranges(pipe, lambda id_range: read_posts(db, batch_size, ids, id_range), ranges)
        pipe.send(("done", "posts"))
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        pass
    except Exception as error:  # noqa: BLE001 - reported by the parent in one line
        try:
            pipe.send(("error", f"reading the source failed: {type(error).__name__}: {error}"))
        except (BrokenPipeError, OSError):
            pass
