"""Containers: read a file (or a Hugging Face ``datasets`` folder) into numbered records.

Each reader yields ``(number, record dict | DataError)``: a bad line or row comes back
as a ``DataError`` so the loader can stop or skip it; a file that cannot be read at all
raises. Numbering: JSON Lines and CSV/TSV count 1-based *lines* of the file (a CSV
header is line 1); JSON arrays, Parquet and ``datasets`` folders count 1-based records.

Strictness, so that nothing is silently changed:

- CSV is read with ``csv.reader(strict=True)``: a stray quote that would swallow the
  following rows into one field is an error naming the line where the quoted field
  opened, never merged rows.
- TSV quotes are literal characters (``quoting=csv.QUOTE_NONE``): ``"Hi" is a greeting``
  stays exactly that, and a row with the wrong number of tabs is an error.
- A Git LFS pointer, a whitespace-only file and a JSON array saved as ``.jsonl`` each
  get a message (or a note) saying what they are.
- ``datasets`` folders (``save_to_disk`` output, or Parquet/JSON shards as the hub lays
  them out) are read with the ``datasets`` library itself.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mads_core.data.formats import type_name

CONTAINERS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
HF_SPLIT_ORDER = ("train",)
_BOM = b"\xef\xbb\xbf"
_LFS = b"version https://git-lfs.github.com/spec/"
_SHARD_SUFFIXES = (".parquet", ".arrow", ".json", ".jsonl", ".csv")

Item = tuple[int, Any]  # (line/record number, dict | DataError)


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


class Opened:
    """What a container gave: numbering unit, items, and notes for the load report."""

    def __init__(self, unit: str, items: Iterable[Item], notes: tuple[str, ...] = ()):
        self.unit, self.items, self.notes = unit, items, notes


def container_of(path: Path) -> str:
    """"jsonl" | "json" | "csv" | "tsv" | "parquet" | "hf" (a folder); DataError otherwise."""
    if path.is_dir():
        return "hf"
    container = CONTAINERS.get(path.suffix.lower())
    if container is None:
        raise DataError(
            str(path), None, None,
            f"unknown file type {path.suffix or '(none)'!r}; expected one of {', '.join(sorted(CONTAINERS))} "
            "or a Hugging Face datasets folder",
        )
    return container


def check_path(path: Path) -> None:
    """Missing, empty, whitespace-only files and Git LFS pointers raise a DataError that says so."""
    if not path.exists():
        raise DataError(str(path), None, None, "file does not exist")
    if path.is_dir():
        return
    size = path.stat().st_size
    if size == 0:
        raise DataError(str(path), None, None, "no records (file is empty)")
    with path.open("rb") as fh:
        head = fh.read(1024)
    if head.startswith(_LFS):
        raise DataError(str(path), None, None, "this is a Git LFS pointer, not the data: run `git lfs pull` "
                        "(or download the file itself) and load it again")
    if size <= len(head) and not head.replace(_BOM, b"", 1).strip():
        raise DataError(str(path), None, None, "no records (the file holds only whitespace)")


def utf8_error(path: str, data: bytes, base: int, line: int) -> DataError:
    """DataError for the first byte of ``data`` that is not valid UTF-8 (``data`` starts a line at ``base``)."""
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
    return DataError(path, number, None, f"expected a JSON object, got {type_name(value)}", unit=unit)


def _file_lines(path: Path) -> Iterator[bytes]:
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
            yield number, utf8_error(path, line, start, number)
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            yield number, DataError(path, number, None, f"invalid JSON: {err.msg} (column {err.colno})", unit="line")
            continue
        yield number, _as_record(value, path, number, "line")


def _decode(path: str, raw: bytes) -> str:
    body = raw[len(_BOM):] if raw.startswith(_BOM) else raw
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as err:
        offset = err.start + (len(raw) - len(body))
        raise utf8_error(path, raw, 0, raw.count(b"\n", 0, offset) + 1) from None


def _array(path: str, text: str) -> list[Item]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(path, err.lineno, None, f"invalid JSON: {err.msg} (column {err.colno})",
                        unit="line") from None
    if not isinstance(value, list):
        raise DataError(path, None, None, f"expected a JSON array of records, got {type_name(value)}")
    return [(i, _as_record(v, path, i, "record")) for i, v in enumerate(value, start=1)]


def _open_json(path: str, raw: bytes) -> Opened:
    """A .json file: a JSON array of records, one object, or (as many exports write) JSON Lines."""
    text = _decode(path, raw)
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return Opened("line", _iter_jsonl(path, io.BytesIO(raw)))
        return Opened("record", [(1, _as_record(value, path, 1, "record"))])
    return Opened("record", _array(path, text))


def _open_jsonl(path: Path) -> Opened:
    with path.open("rb") as fh:
        head = fh.read(64)
    if head.replace(_BOM, b"", 1).lstrip().startswith(b"["):
        items = _array(str(path), _decode(str(path), path.read_bytes()))
        note = (f"{path.name} holds a JSON array (not one JSON object per line); read it as an array "
                f"of {len(items)} records")
        return Opened("record", items, (note,))
    return Opened("line", _iter_jsonl(str(path), _file_lines(path)))


def _iter_csv(path: str, raw: bytes, delimiter: str) -> Iterator[Item]:
    """CSV (strict quoting) or TSV (quotes literal); every row must have the header's field count."""
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # long responses exceed 128 KiB
    text = raw.decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    tsv = delimiter == "\t"
    options: dict[str, Any] = {"quoting": csv.QUOTE_NONE} if tsv else {"strict": True}
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, **options)
    last = 0
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
            if any("\udc80" <= ch <= "\udcff" for v in row for ch in v):
                start = _line_start(raw, number)
                yield number, utf8_error(path, raw[start:], start, number)
                continue
            yield number, dict(zip(header, row, strict=True))
    except csv.Error as err:
        start = last + 1
        raise DataError(path, start, None, (
            f"malformed CSV quoting: the row starting on line {start} does not parse ({err}; read up to line "
            f"{reader.line_num}). A field that starts with '\"' must end with '\"' and inner quotes are "
            "doubled (\"\"). Fix the quotes, or save the file as .tsv (quotes are literal there)"),
            unit="line") from None


def _line_start(raw: bytes, line: int) -> int:
    offset = 0
    for _ in range(line - 1):
        offset = raw.index(b"\n", offset) + 1
    return offset


def _iter_parquet(path: str) -> Iterator[Item]:
    """Rows in batches, so a preview reads only the first batch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        meta = pf.schema_arrow.metadata or {}
        json_cols = json.loads(meta.get(b"mads.json_columns", b"[]"))  # written by mads_core.data.export
        absent = json.loads(meta.get(b"mads.absent_keys", b"{}"))
        number = 0
        for batch in pf.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                for c in json_cols:
                    if isinstance(row.get(c), str):
                        row[c] = json.loads(row[c])
                for c in absent.get(str(number), ()):
                    row.pop(c, None)
                number += 1
                yield number, row
    except (pa.ArrowException, OSError) as err:
        raise DataError(path, None, None, f"not a readable Parquet file: {err}") from None


def _hf_split(path: Path, splits: list[str]) -> str:
    for name in HF_SPLIT_ORDER:
        if name in splits:
            return name
    if len(splits) == 1:
        return splits[0]
    raise DataError(str(path), None, None, f"the datasets folder has splits {splits} and none is 'train'; "
                    "point at one split's folder")


def _open_hf(path: Path) -> Opened:
    """A ``datasets`` folder: ``save_to_disk`` output (Dataset or DatasetDict) or data shards."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - it is in requirements.txt
        raise DataError(str(path), None, None, "reading a datasets folder needs `pip install datasets`") from None
    try:
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            loaded = datasets.load_from_disk(str(path))
            how = "datasets.load_from_disk"
        else:
            if not any(p.suffix in _SHARD_SUFFIXES for p in path.rglob("*") if p.is_file()):
                raise DataError(str(path), None, None, "is a folder without data files (.parquet, .arrow, .json, "
                                ".jsonl, .csv) and not a datasets save_to_disk folder")
            with tempfile.TemporaryDirectory(prefix="mads-hf-") as tmp:  # no cache left behind
                loaded = datasets.load_dataset(str(path), cache_dir=tmp, keep_in_memory=True)
            how = "datasets.load_dataset"
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - the library raises many kinds; say which and where
        raise DataError(str(path), None, None, f"not a readable datasets folder: {type(err).__name__}: {err}") from None
    notes = []
    if isinstance(loaded, datasets.DatasetDict):
        split = _hf_split(path, list(loaded))
        if len(loaded) > 1:
            notes.append(f"datasets folder with splits {list(loaded)}: read split {split!r}")
        loaded = loaded[split]
    notes.append(f"read with {how} ({loaded.num_rows} rows)")
    return Opened("record", ((i, row) for i, row in enumerate(loaded, start=1)), tuple(notes))


def open_records(path: Path, container: str) -> Opened:
    """Numbered records of ``path`` read as ``container`` (see module docstring)."""
    if container == "hf":
        return _open_hf(path)
    if container == "parquet":
        return Opened("record", _iter_parquet(str(path)))
    if container == "jsonl":
        return _open_jsonl(path)
    raw = path.read_bytes()
    if container == "json":
        return _open_json(str(path), raw)
    return Opened("line", _iter_csv(str(path), raw, "\t" if container == "tsv" else ","))
