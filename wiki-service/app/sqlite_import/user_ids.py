"""Which users landed: what a reader knows when it checks each post's user_id.

A reader fills one while it reads its share of the users, sends it to the parent, and gets the
other readers' in return (their id ranges are disjoint from its own), so that each can check
the posts of any user.
"""

from __future__ import annotations

# User ids below this are tracked with one byte each; others (rare) in a set.
DENSE_ID_LIMIT = 64 * 1024 * 1024


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
        if first >= 0 and last < len(self.flags) and last - first + 1 == len(user_ids):
            self.flags[first : last + 1] = b"\x01" * len(user_ids)  # ids in order, no gaps
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
        return min(user_ids) >= 0 and max(user_ids) < len(flags) and all(map(flags.__getitem__, user_ids))
