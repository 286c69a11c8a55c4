"""Loading and validating instruction records (contract part; loaders TBD by data owner)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class DataError(ValueError):
    """A record or file could not be read. Message names file, record/line and field."""

    def __init__(self, path: str, record: int | None, field_name: str | None, reason: str):
        self.path, self.record, self.field_name, self.reason = path, record, field_name, reason
        where = path
        if record is not None:
            where += f", record {record}"
        if field_name is not None:
            where += f", field {field_name!r}"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class LoadReport:
    """What loading did besides returning records: skipped / duplicate records."""

    n_read: int = 0
    n_kept: int = 0
    skipped: tuple[str, ...] = ()     # one reason per skipped record ("file, record N, field: why")
    duplicates: tuple[str, ...] = ()  # one line per dropped duplicate

    def summary(self, first: int = 3) -> str: ...


@dataclass(frozen=True)
class Dataset:
    """Records in a uniform shape. Turns are (role, content); roles: system/user/assistant.

    ``records`` keeps every original field for export; ``format`` is the input format
    ("alpaca", "chat", "table") so exports can be written back in it.
    """

    name: str
    format: str
    ids: tuple[str, ...]
    turns: tuple[tuple[tuple[str, str], ...], ...]
    categories: tuple[str | None, ...]
    sources: tuple[str, ...]
    records: tuple[dict[str, Any], ...]
    report: LoadReport = field(default_factory=LoadReport)

    def __len__(self) -> int:
        return len(self.ids)
