"""The reject report: one JSON object per line for every row that did not land.

Each line has the table, the id, the reason(s), the original values and their SQLite storage
classes. Text that is valid UTF-8 is a JSON string (JSON escapes NUL and control characters);
anything else (invalid UTF-8, blobs) is shown as {"hex": ..., "storage": ...}. Conflicts also
carry the row PostgreSQL already has, under "target".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO


class RejectReport:
    """Written as rows are rejected; rewritten from scratch on every run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts: dict[str, int] = {"users": 0, "posts": 0}
        self.conflicts: dict[str, int] = {"users": 0, "posts": 0}
        self._file: TextIO = path.open("w", encoding="utf-8")

    def write(self, entry: dict[str, Any], *, conflict: bool = False) -> None:
        table = entry["table"]
        (self.conflicts if conflict else self.counts)[table] += 1
        self._file.write(json.dumps(entry, ensure_ascii=True) + "\n")

    @property
    def total(self) -> int:
        return sum(self.counts.values()) + sum(self.conflicts.values())

    def close(self) -> None:
        self._file.close()
