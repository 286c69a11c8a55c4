"""Loading and validating instruction records.

``load_records`` reads Alpaca records (instruction/input/output), chat records (a
``messages`` or ``conversations`` list in OpenAI ``role``/``content`` or ShareGPT
``from``/``value`` form) and tables (a text column, optional response column) from
JSON, JSON Lines, CSV/TSV or Parquet, and returns one uniform ``Dataset``: every
sample is a tuple of (role, content) turns with role in system/user/assistant, a
stable id, an optional category and all of its original fields.

Why so strict: everything downstream (fingerprints, selections, exports) is keyed on
``Dataset.content_hash()``, so a record must mean one thing. Bad records fail loudly
with a ``DataError`` naming file, line/record and field, or are skipped and listed in
``LoadReport`` when the caller asks for ``on_error="skip"``.

Numbering: JSON Lines and CSV/TSV count 1-based *lines* of the file (a CSV header is
line 1); JSON arrays and Parquet count 1-based *records*/rows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")
# Accepted spellings of a turn's role (lower-cased) -> canonical role. ShareGPT writes
# human/gpt; Gemini-style exports write model. Anything else (tool, function, ...) is an error.
ROLE_MAP = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
}
FORMATS = ("alpaca", "chat", "table")
ID_FIELDS = ("id", "key", "uid")
CATEGORY_FIELD = "category"
MESSAGE_FIELDS = ("messages", "conversations")
EVALS_INPUT = "input"  # OpenAI evals registry records: {"input": [messages], "ideal": answer}
# Guessed (in this order) for table records when no text_column / response_column is given.
TEXT_CANDIDATES = ("text", "prompt", "question", "query", "content")
RESPONSE_CANDIDATES = ("response", "answer", "completion", "output")
CONTAINERS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
ID_HASH_CHARS = 16
_SURROGATE = re.compile("[\ud800-\udfff]")
_BOM = b"\xef\xbb\xbf"


class DataError(ValueError):
    """A record or file could not be read. Message names file, record/line and field.

    ``unit`` is "record" (JSON arrays, Parquet rows, demo sources) or "line" (JSON Lines,
    CSV); it only changes the wording of the message.
    """

    def __init__(
        self, path: str, record: int | None, field_name: str | None, reason: str, *, unit: str = "record"
    ):
        self.path, self.record, self.field_name, self.reason = path, record, field_name, reason
        self.unit = unit
        where = path
        if record is not None:
            where += f", {unit} {record}"
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

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    @property
    def n_duplicates(self) -> int:
        return len(self.duplicates)

    def summary(self, first: int = 3) -> str:
        """Human-readable account: counts, then the first ``first`` reasons of each kind."""
        lines = [f"Read {self.n_read} records, kept {self.n_kept}."]
        kinds = (("Skipped", "malformed record", self.skipped), ("Dropped", "exact duplicate", self.duplicates))
        for verb, title, items in kinds:
            if not items:
                continue
            lines.append(f"{verb} {len(items)} {title}{'s' if len(items) != 1 else ''}:")
            lines.extend(f"  - {item}" for item in items[:first])
            if len(items) > first:
                lines.append(f"  ... and {len(items) - first} more")
        return "\n".join(lines)


Turns = tuple[tuple[str, str], ...]


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

    def content_hash(self) -> str:
        """sha256 hex over ids + turns (in order): the cache key of everything downstream.

        Names, categories, sources and the original records do not enter it: they do
        not change what a model reads.
        """
        cached = self.__dict__.get("_content_hash")
        if cached is None:
            digest = hashlib.sha256(b"mads-dataset-v1\n")
            for sample_id, turns in zip(self.ids, self.turns, strict=True):
                digest.update(_canonical([sample_id, [list(t) for t in turns]]).encode("utf-8"))
                digest.update(b"\n")
            cached = digest.hexdigest()
            object.__setattr__(self, "_content_hash", cached)
        return cached

    def prompt(self, i: int) -> str:
        """User turns before the last assistant turn (all user turns if none), blank-line joined."""
        turns = self.turns[i]
        end = _last_assistant(turns)
        upto = turns if end is None else turns[:end]
        return "\n\n".join(content for role, content in upto if role == "user")

    def response(self, i: int) -> str:
        """Content of the last assistant turn, or "" when the sample has none."""
        turns = self.turns[i]
        end = _last_assistant(turns)
        return "" if end is None else turns[end][1]

    def display_text(self, i: int, max_chars: int | None = None) -> str:
        """The whole sample as readable text (a lone user turn is shown bare), optionally cut."""
        turns = self.turns[i]
        if len(turns) == 1 and turns[0][0] == "user":
            text = turns[0][1]
        else:
            text = "\n\n".join(f"{role.capitalize()}: {content}" for role, content in turns)
        if max_chars is not None and len(text) > max_chars:
            text = text[: max(max_chars - 1, 0)] + "…"
        return text

    def index_of(self, sample_id: str) -> int:
        """Row of the sample with this id (KeyError if absent)."""
        lookup = self.__dict__.get("_index")
        if lookup is None:
            lookup = {sid: i for i, sid in enumerate(self.ids)}
            object.__setattr__(self, "_index", lookup)
        return lookup[sample_id]

    def subset(self, indices: Iterable[int]) -> Dataset:
        """The samples at ``indices``, in the order given (no repeats, so ids stay unique).

        Name, format and load report are kept; the content hash is that of the subset.
        """
        rows = [int(i) for i in indices]
        n = len(self)
        bad = [i for i in rows if not 0 <= i < n]
        if bad:
            raise IndexError(f"subset of {self.name!r}: indices out of range 0..{n - 1}: {bad[:5]}")
        if len(set(rows)) != len(rows):
            raise ValueError(f"subset of {self.name!r}: repeated indices")

        def pick(values: tuple) -> tuple:
            return tuple(values[i] for i in rows)

        return Dataset(
            name=self.name,
            format=self.format,
            ids=pick(self.ids),
            turns=pick(self.turns),
            categories=pick(self.categories),
            sources=pick(self.sources),
            records=pick(self.records),
            report=self.report,
        )

    def to_frame(self) -> Any:
        """A pandas DataFrame (id, category, source, prompt, response, n_turns) for tables."""
        import pandas as pd

        return pd.DataFrame(
            {
                "id": list(self.ids),
                "category": list(self.categories),
                "source": list(self.sources),
                "prompt": [self.prompt(i) for i in range(len(self))],
                "response": [self.response(i) for i in range(len(self))],
                "n_turns": [len(t) for t in self.turns],
            }
        )


def _last_assistant(turns: Turns) -> int | None:
    for j in range(len(turns) - 1, -1, -1):
        if turns[j][0] == "assistant":
            return j
    return None


def _canonical(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def turns_key(turns: Turns) -> str:
    """Canonical JSON text of a sample's turns: equal keys <=> identical content."""
    return _canonical([list(t) for t in turns])


def content_id(turns: Turns) -> str:
    """Stable id of a sample without its own id: first 16 hex chars of sha256(canonical turns)."""
    return hashlib.sha256(turns_key(turns).encode("utf-8")).hexdigest()[:ID_HASH_CHARS]


# --------------------------------------------------------------------------- field checks


class RecordError(Exception):
    """A problem with one field of one record (becomes a DataError once file/record are known)."""

    def __init__(self, field_name: str | None, reason: str):
        super().__init__(reason)
        self.field_name, self.reason = field_name, reason


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_text(value: Any, name: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise RecordError(name, f"must be a string, got {_type_name(value)}")
    if not allow_empty and not value.strip():
        raise RecordError(name, "is empty")
    if _SURROGATE.search(value):
        raise RecordError(name, "contains invalid Unicode (lone surrogate or non-UTF-8 bytes)")
    return value


def _required(record: dict[str, Any], name: str) -> str:
    if name not in record:
        raise RecordError(name, "missing required field")
    return _check_text(record[name], name)


def _optional(record: dict[str, Any], name: str | None) -> str:
    if name is None:
        return ""
    value = record.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return _check_text(value, name, allow_empty=True)


def alpaca_turns(record: dict[str, Any]) -> Turns:
    """(("user", instruction [+ "\\n\\n" + input]), ("assistant", output))."""
    instruction = _required(record, "instruction")
    extra = _optional(record, "input")
    output = _required(record, "output")
    prompt = instruction + ("\n\n" + extra if extra.strip() else "")
    return (("user", prompt), ("assistant", output))


def _message_content(value: Any, name: str) -> str:
    if isinstance(value, list):  # OpenAI content parts: keep the text parts
        parts = [p.get("text") for p in value if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) != len(value) or not all(isinstance(p, str) for p in parts):
            raise RecordError(name, "content parts other than text are not supported")
        value = "\n".join(parts)
    return _check_text(value, name, allow_empty=True)


def chat_turns(record: dict[str, Any], messages_field: str | None = None) -> Turns:
    """Turns of an OpenAI (role/content) or ShareGPT (from/value) conversation.

    Empty system turns are dropped; empty user/assistant turns and unknown roles are errors.
    """
    present = [f for f in (messages_field, *MESSAGE_FIELDS) if f is not None and f in record]
    if not present:
        raise RecordError(messages_field or MESSAGE_FIELDS[0], "missing required field")
    name = present[0]
    messages = record[name]
    if not isinstance(messages, list):
        raise RecordError(name, f"must be a list of messages, got {_type_name(messages)}")
    turns = []
    for j, message in enumerate(messages):
        where = f"{name}[{j}]"
        if not isinstance(message, dict):
            raise RecordError(where, f"must be an object with role and content, got {_type_name(message)}")
        role_key = "role" if "role" in message else "from"
        content_key = "content" if "content" in message else "value"
        if role_key not in message:
            raise RecordError(f"{where}.role", "missing role (or ShareGPT 'from')")
        raw_role = message[role_key]
        role = ROLE_MAP.get(raw_role.strip().lower()) if isinstance(raw_role, str) else None
        if role is None:
            raise RecordError(
                f"{where}.{role_key}",
                f"unknown role {raw_role!r} (expected system/user/assistant or ShareGPT human/gpt)",
            )
        if content_key not in message:
            raise RecordError(f"{where}.content", "missing content (or ShareGPT 'value')")
        content = _message_content(message[content_key], f"{where}.{content_key}")
        if not content.strip():
            if role == "system":
                continue
            raise RecordError(f"{where}.{content_key}", "is empty")
        turns.append((role, content))
    if not any(role != "system" for role, _ in turns):
        raise RecordError(name, "no user or assistant message")
    return tuple(turns)


def _first_ideal(record: dict[str, Any]) -> str:
    if "ideal" not in record:
        raise RecordError("ideal", "missing required field")
    ideal = record["ideal"]
    if isinstance(ideal, list):
        if not ideal:
            raise RecordError("ideal", "is an empty list")
        ideal = ideal[0]
    return _check_text(ideal, "ideal")


def evals_turns(record: dict[str, Any]) -> Turns:
    """OpenAI evals sample: the ``input`` messages, then ``ideal`` (its first item if a list) as the answer."""
    turns = chat_turns(record, EVALS_INPUT)
    return (*turns, ("assistant", _first_ideal(record)))


def table_turns(record: dict[str, Any], text_column: str, response_column: str | None = None) -> Turns:
    """(("user", text),) or, with a response column, also ("assistant", response)."""
    text = _required(record, text_column)
    if response_column is None:
        return (("user", text),)
    return (("user", text), ("assistant", _required(record, response_column)))


def _category(record: dict[str, Any], name: str | None) -> str | None:
    if name is None:
        return None
    value = record.get(name)
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (str, int, float, bool)):
        return str(value)
    raise RecordError(name, f"category must be a string, got {_type_name(value)}")


def _explicit_id(record: dict[str, Any], name: str | None, required: bool) -> str | None:
    if name is None:
        return None
    value = record.get(name)
    if value is None or value == "":
        if required:
            raise RecordError(name, "missing id" if value is None else "id is empty")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordError(name, f"id must be a string or an integer, got {_type_name(value)}")
    return str(value)


# --------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class FieldDetection:
    """What ``load_records`` would do with a file, decided from its extension and first record."""

    path: str
    container: str                    # "json" | "jsonl" | "csv" | "tsv" | "parquet"
    format: str                       # "alpaca" | "chat" | "table"
    fields: tuple[str, ...]           # fields of the first record
    messages_field: str | None = None
    text_column: str | None = None
    response_column: str | None = None
    category_column: str | None = None
    id_field: str | None = None

    def describe(self) -> str:
        """One line for the app/CLI: container, format and which fields play which part."""
        if self.format == "chat" and self.messages_field == EVALS_INPUT:
            what = "chat records (OpenAI evals: messages in 'input', answer in 'ideal')"
        elif self.format == "chat":
            what = f"chat records (conversation in {self.messages_field!r})"
        elif self.format == "alpaca":
            what = "Alpaca records (instruction / input / output)"
        else:
            what = f"table records (text in {self.text_column!r}"
            what += f", response in {self.response_column!r})" if self.response_column else ", no response)"
        ids = f"ids from {self.id_field!r}" if self.id_field else "ids = content hash"
        cats = f"categories from {self.category_column!r}" if self.category_column else "no categories"
        return f"{self.container.upper()} file: {what}; {ids}; {cats}."


def _container(path: Path) -> str:
    container = CONTAINERS.get(path.suffix.lower())
    if container is None:
        raise DataError(
            str(path), None, None,
            f"unknown file type {path.suffix or '(none)'!r}; expected one of {', '.join(sorted(CONTAINERS))}",
        )
    return container


def _absent(path: str, name: str, what: str, fields: Sequence[str]) -> DataError:
    return DataError(path, None, name, f"no such {what} in the first record; fields are {list(fields)}")


def _looks_like_evals(record: dict[str, Any]) -> bool:
    value = record.get(EVALS_INPUT)
    return "ideal" in record and isinstance(value, list) and all(isinstance(m, dict) for m in value)


def _detect(
    path: str,
    container: str,
    first: dict[str, Any],
    fmt: str,
    text_column: str | None,
    response_column: str | None,
    category_column: str | None,
    id_field: str | None,
) -> FieldDetection:
    fields = tuple(first)
    for name, what in ((text_column, "text column"), (response_column, "response column"),
                       (category_column, "category column"), (id_field, "id field")):
        if name is not None and name not in first:
            raise _absent(path, name, what, fields)
    messages_field = next((f for f in MESSAGE_FIELDS if f in first), None)
    if messages_field is None and _looks_like_evals(first) and text_column is None:
        messages_field = EVALS_INPUT
    if fmt == "auto":
        if text_column is not None:
            fmt = "table"
        elif messages_field is not None:
            fmt = "chat"
        elif "instruction" in first:
            fmt = "alpaca"
        elif any(c in first for c in TEXT_CANDIDATES):
            fmt = "table"
        else:
            raise DataError(
                path, None, None,
                f"cannot tell the record format from the first record's fields {list(fields)}: expected "
                "'messages'/'conversations' (chat), 'instruction' + 'output' (Alpaca) or a text column "
                "(pass text_column=...)",
            )
    if fmt == "chat" and messages_field is None:
        raise DataError(path, None, "messages", f"chat format needs a 'messages' or 'conversations' field; "
                        f"fields are {list(fields)}")
    if fmt == "table":
        text_column = text_column or next((c for c in TEXT_CANDIDATES if c in first), None)
        if text_column is None:
            raise DataError(path, None, None, f"table format needs text_column=...; fields are {list(fields)}")
        if response_column is None:
            response_column = next((c for c in RESPONSE_CANDIDATES if c in first and c != text_column), None)
    return FieldDetection(
        path=path,
        container=container,
        format=fmt,
        fields=fields,
        messages_field=messages_field if fmt == "chat" else None,
        text_column=text_column if fmt == "table" else None,
        response_column=response_column if fmt == "table" else None,
        category_column=category_column or (CATEGORY_FIELD if CATEGORY_FIELD in first else None),
        id_field=id_field or next((f for f in ID_FIELDS if f in first), None),
    )


# --------------------------------------------------------------------------- readers

Item = tuple[int, Any]  # (line/record number, dict | DataError)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(str(path), None, None, "file does not exist")
    if path.is_dir():
        raise DataError(str(path), None, None, "is a directory, not a file")
    if path.stat().st_size == 0:
        raise DataError(str(path), None, None, "no records (file is empty)")


def _utf8_error(path: str, data: bytes, base: int, line: int) -> DataError:
    """DataError for the first byte of ``data`` that is not valid UTF-8.

    ``data`` starts at a line start, at byte offset ``base`` of the file.
    """
    try:
        data.decode("utf-8")
        pos = 0
    except UnicodeDecodeError as err:
        pos = err.start
    column = pos - (data.rfind(b"\n", 0, pos) + 1) + 1
    reason = (f"not valid UTF-8: byte 0x{data[pos]:02x} at byte offset {base + pos} of the file "
              f"(column {column}); re-save the file as UTF-8")
    return DataError(path, line, None, reason, unit="line")


def _as_record(value: Any, path: str, number: int, unit: str) -> Any:
    if isinstance(value, dict):
        return value
    return DataError(path, number, None, f"expected a JSON object, got {_type_name(value)}", unit=unit)


def _file_lines(path: Path) -> Iterator[bytes]:
    """Lines of a file (with their b"\\n"), read lazily so previews need not read it all."""
    with path.open("rb") as fh:
        yield from fh


def _iter_jsonl(path: str, lines: Iterable[bytes]) -> Iterator[Item]:
    offset = 0
    for number, line in enumerate(lines, start=1):
        start, offset = offset, offset + len(line)
        body = line[len(_BOM):] if number == 1 and line.startswith(_BOM) else line
        if not body.strip():
            continue
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            yield number, _utf8_error(path, line, start, number)
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            yield number, DataError(path, number, None, f"invalid JSON: {err.msg} (column {err.colno})", unit="line")
            continue
        yield number, _as_record(value, path, number, "line")


def _iter_json(path: str, raw: bytes) -> tuple[str, Iterator[Item]]:
    """A .json file: a JSON array of records, or (as many exports write) JSON Lines."""
    body = raw[len(_BOM):] if raw.startswith(_BOM) else raw
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        offset = err.start + (len(raw) - len(body))
        raise _utf8_error(path, raw, 0, raw.count(b"\n", 0, offset) + 1) from None
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return "line", _iter_jsonl(path, io.BytesIO(raw))
        return "record", iter([(1, _as_record(value, path, 1, "record"))])
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, err.lineno, None, f"invalid JSON: {err.msg} (column {err.colno})", unit="line") from None
    if not isinstance(value, list):
        raise DataError(path, None, None, f"expected a JSON array of records, got {_type_name(value)}")
    return "record", ((i, _as_record(v, path, i, "record")) for i, v in enumerate(value, start=1))


def _line_start(raw: bytes, line: int) -> int:
    """Byte offset where 1-based ``line`` starts."""
    offset = 0
    for _ in range(line - 1):
        offset = raw.index(b"\n", offset) + 1
    return offset


def _iter_csv(path: str, raw: bytes, delimiter: str) -> Iterator[Item]:
    # Long responses exceed the csv module's default 128 KiB field limit.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    text = raw.decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if not header:
            return
        if len(set(header)) != len(header):
            raise DataError(path, 1, None, f"repeated column names in the header {header}", unit="line")
        last = reader.line_num
        for row in reader:
            number, last = last + 1, reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                yield number, DataError(path, number, None,
                                        f"has {len(row)} fields, the header has {len(header)}", unit="line")
                continue
            record = dict(zip(header, row, strict=True))
            if any(_SURROGATE.search(v) for v in row):
                start = _line_start(raw, number)
                yield number, _utf8_error(path, raw[start:], start, number)
                continue
            yield number, record
    except csv.Error as err:
        raise DataError(path, reader.line_num, None, f"unreadable CSV: {err}", unit="line") from None


def _iter_parquet(path: str) -> Iterator[Item]:
    """Rows in batches, so a preview reads only the first batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=4096)
        number = 0
        for batch in batches:
            for row in batch.to_pylist():
                number += 1
                yield number, row
    except (pa.ArrowException, OSError) as err:
        raise DataError(path, None, None, f"not a readable Parquet file: {err}") from None


def _open(path: Path, container: str) -> tuple[str, Iterator[Item]]:
    """(numbering unit, iterator of (number, record dict or DataError))."""
    if container == "parquet":
        return "record", _iter_parquet(str(path))
    if container == "jsonl":
        return "line", _iter_jsonl(str(path), _file_lines(path))
    raw = path.read_bytes()
    if container == "json":
        return _iter_json(str(path), raw)
    return "line", _iter_csv(str(path), raw, "\t" if container == "tsv" else ",")


def _first_record(path: str, items: Iterator[Item], on_error: str) -> tuple[list[Item], dict[str, Any]]:
    """Items read up to and including the first good record (which decides the format)."""
    seen: list[Item] = []
    for item in items:
        seen.append(item)
        if isinstance(item[1], dict):
            return seen, item[1]
        if on_error == "raise":
            raise item[1]
    bad = [str(v) for _, v in seen]
    if bad:
        raise DataError(path, None, None, f"no valid records ({len(bad)} malformed; first: {bad[0]})")
    raise DataError(path, None, None, "no records")


def detect_fields(
    path: str | os.PathLike[str],
    *,
    fmt: str = "auto",
    text_column: str | None = None,
    response_column: str | None = None,
    category_column: str | None = None,
    id_field: str | None = None,
) -> FieldDetection:
    """Preview what ``load_records`` will detect (format and field roles) from the first record."""
    _check_choice("fmt", fmt, ("auto", *FORMATS))
    p = Path(path)
    _check_file(p)
    container = _container(p)
    _, items = _open(p, container)
    _, first = _first_record(str(p), items, "raise")
    return _detect(str(p), container, first, fmt, text_column, response_column, category_column, id_field)


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


# --------------------------------------------------------------------------- assembling


@dataclass
class Sample:
    """One validated record before assembly (also built directly by the demo sources)."""

    record: dict[str, Any]
    turns: Turns
    category: str | None
    source: str
    number: int                        # line / record number within ``source``
    explicit_id: str | None = None
    unit: str = "record"

    @property
    def where(self) -> str:
        return f"{self.source}, {self.unit} {self.number}"


class Assembler:
    """Collects samples into a Dataset: ids, exact-duplicate removal, id conflicts.

    Exact duplicates (identical turns) are dropped when ``dedupe`` (the first is kept);
    without dedupe a repeated id gets a suffix ``~2``, ``~3``... so ids stay unique.
    Two samples with the same explicit id and different content are an error.
    """

    def __init__(self, *, dedupe: bool = True, on_error: str = "raise", id_field: str | None = None):
        self.dedupe, self.on_error, self.id_field = dedupe, on_error, id_field
        self.samples: list[Sample] = []
        self.ids: list[str] = []
        self.skipped: list[str] = []
        self.duplicates: list[str] = []
        self.n_read = 0
        self._by_content: dict[str, str] = {}
        self._by_id: dict[str, tuple[str, str]] = {}
        self._used: set[str] = set()

    def reject(self, error: DataError) -> None:
        """A record that could not be read or validated: raise, or remember it when skipping."""
        self.n_read += 1
        self._fail(error)

    def _fail(self, error: DataError) -> None:
        if self.on_error == "raise":
            raise error
        self.skipped.append(str(error))

    def add(self, sample: Sample) -> None:
        """Keep ``sample`` under a unique id, or list it as a duplicate / id conflict."""
        self.n_read += 1
        key = turns_key(sample.turns)
        first = self._by_content.get(key)
        if self.dedupe and first is not None:
            self.duplicates.append(f"{sample.where}: exact duplicate of {first}")
            return
        if sample.explicit_id is not None:
            seen = self._by_id.get(sample.explicit_id)
            if seen is not None and seen[0] != key:
                self._fail(DataError(
                    sample.source, sample.number, self.id_field,
                    f"id {sample.explicit_id!r} is also used by {seen[1]} with different content",
                    unit=sample.unit,
                ))
                return
            self._by_id.setdefault(sample.explicit_id, (key, sample.where))
        self._by_content.setdefault(key, sample.where)
        self.ids.append(self._unique(sample.explicit_id or content_id(sample.turns)))
        self.samples.append(sample)

    def _unique(self, sample_id: str) -> str:
        candidate, k = sample_id, 1
        while candidate in self._used:
            k += 1
            candidate = f"{sample_id}~{k}"
        self._used.add(candidate)
        return candidate

    def build(self, name: str, fmt: str) -> Dataset:
        """The kept samples, in the order added, with the load report."""
        report = LoadReport(
            n_read=self.n_read,
            n_kept=len(self.samples),
            skipped=tuple(self.skipped),
            duplicates=tuple(self.duplicates),
        )
        return Dataset(
            name=name,
            format=fmt,
            ids=tuple(self.ids),
            turns=tuple(s.turns for s in self.samples),
            categories=tuple(s.category for s in self.samples),
            sources=tuple(s.source for s in self.samples),
            records=tuple(s.record for s in self.samples),
            report=report,
        )


def _to_sample(record: dict[str, Any], det: FieldDetection, id_required: bool, number: int, unit: str) -> Sample:
    if det.format == "chat" and det.messages_field == EVALS_INPUT:
        turns = evals_turns(record)
    elif det.format == "chat":
        turns = chat_turns(record, det.messages_field)
    elif det.format == "alpaca":
        turns = alpaca_turns(record)
    else:
        turns = table_turns(record, det.text_column or "", det.response_column)
    return Sample(
        record=record,
        turns=turns,
        category=_category(record, det.category_column),
        source=det.path,
        number=number,
        explicit_id=_explicit_id(record, det.id_field, id_required),
        unit=unit,
    )


def load_records(
    path: str | os.PathLike[str],
    *,
    fmt: str = "auto",
    text_column: str | None = None,
    response_column: str | None = None,
    category_column: str | None = None,
    id_field: str | None = None,
    on_error: str = "raise",
    dedupe: bool = True,
    name: str | None = None,
) -> Dataset:
    """Load Alpaca / chat / table records from JSON, JSONL, CSV, TSV or Parquet into a Dataset.

    fmt: "auto" (from the first record's fields: messages/conversations -> chat, OpenAI
        evals input+ideal -> chat, instruction -> alpaca, a text column -> table), or
        "alpaca" / "chat" / "table".
    text_column / response_column: table fields (guessed from common names if not given).
    category_column: defaults to a ``category`` field when present.
    id_field: defaults to ``id``, ``key`` or ``uid`` when present; records without one
        (or files without any) get the content hash of their turns.
    on_error: "raise" stops at the first bad record; "skip" drops it and lists it in
        ``dataset.report.skipped``. Missing, empty or unreadable files always raise.
    dedupe: drop records whose turns exactly repeat an earlier record's.
    """
    _check_choice("fmt", fmt, ("auto", *FORMATS))
    _check_choice("on_error", on_error, ("raise", "skip"))
    p = Path(path)
    _check_file(p)
    container = _container(p)
    unit, items = _open(p, container)
    seen, first = _first_record(str(p), items, on_error)
    det = _detect(str(p), container, first, fmt, text_column, response_column, category_column, id_field)
    assembler = Assembler(dedupe=dedupe, on_error=on_error, id_field=det.id_field)
    for number, value in _chain(seen, items):
        if isinstance(value, DataError):
            assembler.reject(value)
            continue
        try:
            sample = _to_sample(value, det, id_field is not None, number, unit)
        except RecordError as err:
            assembler.reject(DataError(str(p), number, err.field_name, err.reason, unit=unit))
            continue
        assembler.add(sample)
    if not assembler.samples:
        first_bad = assembler.skipped[0] if assembler.skipped else "none"
        raise DataError(str(p), None, None,
                        f"no valid records ({len(assembler.skipped)} malformed; first: {first_bad})")
    return assembler.build(name or p.stem, det.format)


def _chain(head: list[Item], tail: Iterator[Item]) -> Iterator[Item]:
    yield from head
    yield from tail
