"""Write a selected subset back out, in the input's own format, plus a manifest.

The data file holds the chosen records with all their original fields, in rank
order (pick 1 first), so it can be fed to a training script as-is: an Alpaca
dataset exported to ``.json`` is a JSON list of {instruction, input, output, ...}.
Next to it, ``<out>.manifest.json`` says how it was chosen: method, budget (as
given and as a count), every setting and its hash, the model, the dataset's name
and content hash, the data file's sha256 and, per pick, rank, row, id and gain.

Reproducible: identical inputs give byte-identical files (manifest keys sorted,
floats rounded to 12 significant digits, NaN written as null, no timestamp
unless one is passed in, ``ensure_ascii=False`` everywhere, "\\n" line ends).
Both files are written to a temporary file in the target folder, then renamed
into place, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mads_core.select.greedy import Selection, resolve_budget

EXPORT_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
CONTAINERS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv",
              ".parquet": "parquet", ".pq": "parquet"}
# Suffix used when the output path has none: the input's own container, else by record format.
CONTAINER_SUFFIX = {"json": ".json", "jsonl": ".jsonl", "csv": ".csv", "tsv": ".tsv", "parquet": ".parquet",
                    "hf": ".parquet"}
DEFAULT_SUFFIX = {"alpaca": ".json", "chat": ".jsonl", "table": ".csv"}
# Parquet schema metadata written when a tabular file cannot carry records as they are:
# columns stored as JSON text (nested objects whose keys differ between records, which
# Arrow would otherwise pad with null keys) and keys absent from some records.
PARQUET_JSON_COLUMNS = b"mads.json_columns"
PARQUET_ABSENT_KEYS = b"mads.absent_keys"
FLOAT_DIGITS = 12


@dataclass(frozen=True)
class ExportResult:
    """Where the export went and what it holds."""

    data_path: Path
    manifest_path: Path
    container: str
    k: int
    manifest: dict[str, Any]


# ------------------------------------------------------------------ naming


def default_suffix(dataset_format: str, container: str = "") -> str:
    """The input's own container's suffix, else the record format's usual one (.jsonl if none)."""
    return CONTAINER_SUFFIX.get(container) or DEFAULT_SUFFIX.get(dataset_format, ".jsonl")


def resolve_output(out_path: str | os.PathLike[str], dataset_format: str, container: str = "") -> tuple[Path, str]:
    """(data path, container) from the output path; no suffix -> the input's own container."""
    path = Path(out_path)
    if not path.suffix:
        path = path.with_name(path.name + default_suffix(dataset_format, container))
    container = CONTAINERS.get(path.suffix.lower())
    if container is None:
        raise ValueError(f"cannot export to {path.name!r}: use one of {', '.join(sorted(CONTAINERS))}")
    return path, container


def manifest_path_for(data_path: str | os.PathLike[str]) -> Path:
    """``<data file>.manifest.json``."""
    p = Path(data_path)
    return p.with_name(p.name + MANIFEST_SUFFIX)


def default_filename(dataset: Any, selection: Selection, k: int) -> str:
    """A descriptive file name: ``<dataset>-<method>-<k><suffix>`` (unsafe characters -> '_')."""
    stem = f"{dataset.name}-{selection.method}-{k}"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return safe + default_suffix(dataset.format, getattr(dataset, "container", ""))


# ------------------------------------------------------------- JSON values


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy -> Python, tuples -> lists, NaN/inf -> None, floats rounded."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return float(f"{f:.{FLOAT_DIGITS}g}") if math.isfinite(f) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _record_value(value: Any) -> Any:
    """Record field for JSON output: unchanged, except non-finite floats (not JSON) -> None."""
    if isinstance(value, Mapping):
        return {k: _record_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_record_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _record_value(value.item())
    return value


# ----------------------------------------------------------------- writers


def _json_bytes(records: Sequence[Mapping[str, Any]]) -> bytes:
    text = json.dumps([_record_value(r) for r in records], ensure_ascii=False, indent=2, allow_nan=False)
    return (text + "\n").encode("utf-8")


def _jsonl_bytes(records: Sequence[Mapping[str, Any]]) -> bytes:
    lines = [json.dumps(_record_value(r), ensure_ascii=False, allow_nan=False) for r in records]
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _columns(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Union of field names, in first-seen order."""
    seen: dict[str, None] = {}
    for r in records:
        for k in r:
            seen.setdefault(k, None)
    return list(seen)


def _csv_cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (Mapping, list, tuple)):
        return json.dumps(_record_value(value), ensure_ascii=False, allow_nan=False)
    return str(value.item() if isinstance(value, np.generic) else value)


def _check_flat(records: Sequence[Mapping[str, Any]], what: str) -> None:
    """Records with nested values (lists, objects) cannot be written to CSV/TSV as they are."""
    for i, r in enumerate(records, start=1):
        for k, v in r.items():
            if isinstance(v, (Mapping, list, tuple)):
                raise ValueError(f"record {i}, field {k!r} holds a nested {type(v).__name__}, which {what} cannot "
                                 "carry as it is: export to .jsonl, .json or .parquet instead")


def _csv_bytes(records: Sequence[Mapping[str, Any]], dataset_format: str = "") -> bytes:
    _check_flat(records, "CSV")
    cols = _columns(records)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    for r in records:
        writer.writerow([_csv_cell(r.get(c)) for c in cols])
    return buf.getvalue().encode("utf-8")


def _tsv_bytes(records: Sequence[Mapping[str, Any]]) -> bytes:
    """TSV as the loader reads it: no quoting (quotes are literal); a tab or line break in a value is an error."""
    _check_flat(records, "TSV")
    cols = _columns(records)
    lines = ["\t".join(cols)]
    for i, r in enumerate(records, start=1):
        cells = [_csv_cell(r.get(c)) for c in cols]
        for c, cell in zip(cols, cells, strict=True):
            if any(ch in cell for ch in "\t\r\n"):
                raise ValueError(f"record {i}, field {c!r} holds a tab or line break, which TSV cannot carry "
                                 "(quotes are literal in TSV): export to .csv, .jsonl or .parquet instead")
        lines.append("\t".join(cells))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _arrow_column(values: list[Any]) -> Any:
    """An Arrow array of one field; mixed types fall back to text (JSON for nested values)."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else _csv_cell(v) for v in values], type=pa.string())


def _typed(values: list[Any]) -> str:
    """Values as JSON text, so 1, 1.0, True and "1" compare unequal (Python's == says 1 == 1.0 == True);
    non-finite floats count as null, as ``_record_value`` writes them."""
    return json.dumps(_record_value(values), ensure_ascii=False, default=repr)


def _parquet_bytes(records: Sequence[Mapping[str, Any]]) -> bytes:
    """Parquet whose rows read back as the records were: a column Arrow would change (null keys added
    to nested objects) is stored as JSON text, and keys absent from a record are listed; both in the
    schema metadata, which ``mads_core.data.readers`` applies on reading."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = _columns(records)
    arrays, json_cols = {}, []
    for c in cols:
        values = [r.get(c) for r in records]
        array = _arrow_column(values)
        plain = [_record_value(v) for v in values]
        if _typed(array.to_pylist()) != _typed(plain):  # nested keys added, or mixed scalar types cast
            array = pa.array([None if v is None else json.dumps(v, ensure_ascii=False, sort_keys=False)
                              for v in plain], type=pa.string())
            json_cols.append(c)
        arrays[c] = array
    absent = {str(i): [c for c in cols if c not in r] for i, r in enumerate(records)}
    absent = {i: keys for i, keys in absent.items() if keys}
    meta = {}
    if json_cols:
        meta[PARQUET_JSON_COLUMNS] = json.dumps(json_cols).encode()
    if absent:
        meta[PARQUET_ABSENT_KEYS] = json.dumps(absent).encode()
    table = pa.table(arrays)
    if meta:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def records_bytes(
    records: Sequence[Mapping[str, Any]], container: str, dataset_format: str = "alpaca"
) -> bytes:
    """The file content for ``records`` in ``container`` ("json", "jsonl", "csv", "parquet")."""
    if container == "json":
        return _json_bytes(records)
    if container == "jsonl":
        return _jsonl_bytes(records)
    if container == "csv":
        return _csv_bytes(records, dataset_format)
    if container == "tsv":
        return _tsv_bytes(records)
    if container == "parquet":
        return _parquet_bytes(records)
    raise ValueError(f"unknown container {container!r}")


def merge_instances(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Self-Instruct: picks of one seed task (records equal but for ``instances``) become one record again.

    Each sample's record holds only its own instance; the exported record holds the
    picked instances in rank order, at the rank of its first pick, every other field as it was.
    """
    groups: dict[str, dict[str, Any]] = {}
    for r in records:
        key = json.dumps({k: v for k, v in r.items() if k != "instances"}, sort_keys=True, ensure_ascii=False,
                         default=repr)
        if key in groups:
            groups[key]["instances"] = [*groups[key]["instances"], *r.get("instances", [])]
        else:
            groups[key] = dict(r)
    return list(groups.values())


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path``, fsync, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------- manifest


def build_manifest(
    dataset: Any,
    selection: Selection,
    budget: int | float,
    k: int,
    data_name: str,
    data_sha256: str,
    container: str,
    model: Mapping[str, Any] | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    """The manifest dict (JSON-ready) describing an export of ``selection.ranking[:k]``."""
    rows = np.asarray(selection.ranking[:k], dtype=np.int64)
    gains = np.asarray(selection.gains[:k], dtype=np.float64)
    rounds = np.asarray(selection.rounds[:k]) if len(selection.rounds) >= k else np.zeros(k, dtype=np.int32)
    picks = [
        {"rank": r + 1, "row": int(i), "id": dataset.ids[int(i)], "gain": _plain(g), "round": int(rd)}
        for r, (i, g, rd) in enumerate(zip(rows, gains, rounds, strict=True))
    ]
    manifest: dict[str, Any] = {
        "export_version": EXPORT_VERSION,
        "method": selection.method,
        "budget": {"given": _plain(budget), "count": int(k)},
        "settings": _plain(selection.settings),
        "settings_hash": selection.settings_hash,
        "model": _plain(dict(model)) if model is not None else None,
        "dataset": {"name": dataset.name, "content_hash": dataset.content_hash(), "format": dataset.format,
                    "size": len(dataset)},
        "file": {"name": data_name, "container": container, "sha256": data_sha256, "records": int(k)},
        "picks": picks,
    }
    report = getattr(dataset, "report", None)
    if report is not None and hasattr(report, "to_dict"):
        manifest["load_report"] = report.to_dict()
    if created is not None:
        manifest["created"] = created
    return manifest


def manifest_bytes(manifest: Mapping[str, Any]) -> bytes:
    """Canonical manifest text: sorted keys, 2-space indent, UTF-8, trailing newline."""
    text = json.dumps(_plain(manifest), sort_keys=True, ensure_ascii=False, indent=2, allow_nan=False)
    return (text + "\n").encode("utf-8")


# ------------------------------------------------------------------- export


def export_selection(
    dataset: Any,
    selection: Selection,
    budget: int | float,
    out_path: str | os.PathLike[str],
    *,
    model: Mapping[str, Any] | None = None,
    created: str | None = None,
) -> ExportResult:
    """Write the first ``budget`` picks of ``selection`` from ``dataset`` to ``out_path`` + manifest.

    The container comes from the suffix of ``out_path`` (.json = JSON array,
    .jsonl/.ndjson, .csv, .parquet/.pq; none = the dataset format's default:
    Alpaca .json, chat .jsonl, table .csv). ``model`` is the model identity dict
    to record (None for text-only methods); ``created`` an optional timestamp.
    """
    if int(selection.n) != len(dataset):
        raise ValueError(f"selection is over {selection.n} samples but the dataset has {len(dataset)}")
    k = resolve_budget(budget, len(dataset))
    if k > len(selection.ranking):
        raise ValueError(f"budget {budget!r} needs {k} picks; the {selection.method} ranking has "
                         f"{len(selection.ranking)}")
    data_path, container = resolve_output(out_path, dataset.format, getattr(dataset, "container", ""))
    records = [dataset.records[int(i)] for i in selection.ranking[:k]]
    if dataset.format == "self_instruct":
        records = merge_instances(records)
    data = records_bytes(records, container, dataset.format)
    write_atomic(data_path, data)
    manifest = build_manifest(dataset, selection, budget, k, data_path.name, hashlib.sha256(data).hexdigest(),
                              container, model, created)
    mpath = manifest_path_for(data_path)
    write_atomic(mpath, manifest_bytes(manifest))
    return ExportResult(data_path, mpath, container, k, manifest)
