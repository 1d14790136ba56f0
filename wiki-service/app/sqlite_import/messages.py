"""What the command and its reader processes send each other through their pipes (pickled).

command -> reader: ReadUsers; later ReadPosts.
reader -> command, per table: for each id range, its Batches then RangeDone (the command then
turns to the next reader's range); then TableDone. After the users, Landed. ReaderFailed, at
any point, ends the run.
The standard library only: the reader processes import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from app.sqlite_import.user_ids import UserIds

# Ids lo <= id < hi; None stands for the whole table (a reader that reads it all).
IdRange = tuple[int, int] | None


@dataclass
class Reject:
    """A source row that cannot land: why, and its original values and storage classes."""

    table: str
    id: Any
    reason: str
    values: dict[str, Any]
    storage: dict[str, str]

    def as_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "id": self.id,
            "reason": self.reason,
            "values": self.values,
            "storage": self.storage,
        }


@dataclass
class Batch:
    """Some rows of one table: COPY binary tuples (in id order) and the rejects."""

    table: str
    tuples: bytes
    rows: int  # rows read from the source in this batch (landing + rejected)
    good: int  # tuples in `tuples`
    rejects: list[Reject] = field(default_factory=list)


class ReadUsers(NamedTuple):
    ranges: list[IdRange]  # this reader's share of the users


class ReadPosts(NamedTuple):
    refused: dict[int, str]  # users the target refused (conflicts): user id -> reason
    others: list[UserIds]  # the users that landed in the other readers' ranges
    ranges: list[IdRange]  # this reader's share of the posts


class RangeDone(NamedTuple):
    table: str


class TableDone(NamedTuple):
    table: str


class Landed(NamedTuple):
    users: UserIds  # the users of this reader's ranges that can land


class ReaderFailed(NamedTuple):
    reason: str  # one line


FromReader = Batch | RangeDone | TableDone | Landed | ReaderFailed
