"""Loading instruction records into one uniform ``Dataset``: detection, ids, duplicates, load report.

``load_records`` reads a file (JSON, JSON Lines, CSV, TSV, Parquet) or a Hugging Face
``datasets`` folder (``mads_core.data.readers``), recognises the record format
(``mads_core.data.formats``: Alpaca, Dolly, Self-Instruct, OpenAI/ShareGPT chat with tools,
preference pairs, OpenAI evals, lists of strings, MT-bench, prompt/response tables) and
returns a ``Dataset``: every sample is a tuple of ``Turn(role, text, own)``, with a stable
id, an optional category and its original record (kept unchanged for export).

Why so strict: everything downstream (fingerprints, selections, exports) is keyed on
``Dataset.content_hash()``, so a record must mean one thing. Bad records fail loudly
with a ``DataError`` naming file, line/record and field, or are skipped and listed in the
``LoadReport`` when the caller asks for ``on_error="skip"``. Records in = records kept +
records reported (skipped or dropped as exact duplicates), always.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mads_core.config import LOADER_FORMAT_VERSION
from mads_core.data.formats import (
    FORMAT_NAMES,
    MESSAGE_FIELDS,
    RESPONSE_CANDIDATES,
    RecordError,
    Turn,
    Turns,
    as_turns,
    chat_turns,
    detect_format,
    evals_turns,
    format_spec,
    guess_pair,
    is_missing,
    record_turns,
    self_instruct_turns,
    type_name,
)
from mads_core.data.readers import DataError, check_path, container_of, open_records

__all__ = [
    "DataError", "Dataset", "LoadReport", "RecordError", "Sample", "Assembler", "Turn", "FieldDetection",
    "load_records", "detect_fields", "chat_turns", "evals_turns", "turns_key", "content_id",
]

FORMATS = FORMAT_NAMES
ID_FIELDS = ("id", "key", "uid")
CATEGORY_FIELD = "category"
DEDUPE_MODES = ("records", "text", "none")
ID_HASH_CHARS = 16
_TITLES = {"alpaca": "Alpaca", "dolly": "Dolly", "self_instruct": "Self-Instruct", "preference": "preference (DPO)",
           "string_list": "list-of-strings (LIMA / UltraChat)", "mtbench": "MT-bench",
           "oasst_rows": "oasst message-row", "segments": "axolotl input_output"}


@dataclass(frozen=True)
class LoadReport:
    """What loading did besides returning samples; the same account in the CLI, app and manifests.

    Loading fills ``n_read`` / ``n_kept`` / ``skipped`` / ``duplicates`` (dropped: identical
    records) / ``same_text`` (kept: same model text as an earlier sample, other fields
    differ) / ``notes`` (how the file was read). Tokenizing fills the window fields (see
    ``mads_core.model.encode.window_report``): ``truncated`` (context cut to fit
    ``max_tokens``), ``response_cut`` (the response itself was cut) and ``no_own`` (no own
    token in the window: such a sample cannot be fingerprinted). Each entry is one line
    "where/id: what". Invariant: ``n_read == n_kept + n_skipped + n_duplicates``; counts are
    of samples (a Self-Instruct record with k instances counts k).
    """

    n_read: int = 0
    n_kept: int = 0
    skipped: tuple[str, ...] = ()
    duplicates: tuple[str, ...] = ()
    same_text: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    truncated: tuple[str, ...] = ()
    response_cut: tuple[str, ...] = ()
    no_own: tuple[str, ...] = ()

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    @property
    def n_duplicates(self) -> int:
        return len(self.duplicates)

    def lines(self, first: int = 3) -> list[str]:
        """Human-readable account: counts, then the first ``first`` reasons of each kind."""
        out = [f"Read {self.n_read} records, kept {self.n_kept}."]
        out.extend(f"Note: {n}" for n in self.notes)
        kinds = (
            ("Skipped {n} malformed record{s}:", self.skipped),
            ("Dropped {n} exact duplicate{s}:", self.duplicates),
            ("Kept {n} sample{s} with the same model text as an earlier one (other fields differ):", self.same_text),
            ("Truncated {n} sample{s} (context cut to fit the token window):", self.truncated),
            ("Cut the response of {n} sample{s} (it did not fit its share of the window):", self.response_cut),
            ("No own token in the window for {n} sample{s} (refused: raise --max-tokens or drop them):", self.no_own),
        )
        for title, items in kinds:
            if not items:
                continue
            out.append(title.format(n=len(items), s="s" if len(items) != 1 else ""))
            out.extend(f"  - {item}" for item in items[:first])
            if len(items) > first:
                out.append(f"  ... and {len(items) - first} more")
        return out

    def summary(self, first: int = 3) -> str:
        return "\n".join(self.lines(first))

    def is_clean(self) -> bool:
        """Nothing to say beyond the counts."""
        return not (self.skipped or self.duplicates or self.same_text or self.notes or self.truncated
                    or self.response_cut or self.no_own)

    def to_dict(self, first: int = 20) -> dict[str, Any]:
        """JSON-ready counts and the first ``first`` lines of each kind (export manifests, the app)."""
        out: dict[str, Any] = {"read": self.n_read, "kept": self.n_kept, "notes": list(self.notes)}
        for name in ("skipped", "duplicates", "same_text", "truncated", "response_cut", "no_own"):
            items = getattr(self, name)
            out[name] = {"count": len(items), "first": list(items[:first])}
        return out


@dataclass(frozen=True)
class Dataset:
    """Samples in a uniform shape: each a tuple of ``Turn(role, text, own)``.

    ``records`` keeps every original record for export; ``format`` is the record format
    (``mads_core.data.formats``) and ``container`` the input file type, so exports can be
    written back as they came. Turns may be given as (role, text) pairs: ``own`` then
    follows the role (user/assistant/tool_call own; system/tools/tool context).
    """

    name: str
    format: str
    ids: tuple[str, ...]
    turns: tuple[Turns, ...]
    categories: tuple[str | None, ...]
    sources: tuple[str, ...]
    records: tuple[dict[str, Any], ...]
    report: LoadReport = field(default_factory=LoadReport)
    container: str = ""

    def __post_init__(self) -> None:
        if any(not isinstance(t, Turn) for sample in self.turns for t in sample):
            object.__setattr__(self, "turns", tuple(as_turns(sample) for sample in self.turns))

    def __len__(self) -> int:
        return len(self.ids)

    def content_hash(self) -> str:
        """sha256 hex over the loader format version, ids and turns (in order).

        The cache key of everything downstream. Names, categories, sources and the
        original records do not enter it: they do not change what a model reads.
        """
        cached = self.__dict__.get("_content_hash")
        if cached is None:
            digest = hashlib.sha256(f"mads-dataset-v1 loader-{LOADER_FORMAT_VERSION}\n".encode())
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
        return "\n\n".join(t.text for t in upto if t.role == "user")

    def response(self, i: int) -> str:
        """Text of the last assistant turn, or "" when the sample has none."""
        end = _last_assistant(self.turns[i])
        return "" if end is None else self.turns[i][end].text

    def display_text(self, i: int, max_chars: int | None = None) -> str:
        """The whole sample as readable text (a lone user turn is shown bare), optionally cut."""
        turns = self.turns[i]
        if len(turns) == 1 and turns[0].role == "user":
            text = turns[0].text
        else:
            text = "\n\n".join(f"{t.role.replace('_', ' ').capitalize()}: {t.text}" for t in turns)
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
            container=self.container,
        )

    def with_report(self, report: LoadReport) -> Dataset:
        """The same samples with another load report (e.g. with the token-window fields filled)."""
        out = replace(self, report=report)
        if "_content_hash" in self.__dict__:
            object.__setattr__(out, "_content_hash", self.__dict__["_content_hash"])
        return out

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
        if turns[j].role == "assistant":
            return j
    return None


def _canonical(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def turns_key(turns: Turns) -> str:
    """Canonical JSON text of a sample's turns: equal keys <=> the model reads the same sample."""
    return _canonical([list(t) for t in as_turns(turns)])


def content_id(turns: Turns) -> str:
    """Stable id of a sample without its own id: first 16 hex chars of sha256 of its (role, text) pairs.

    ``own`` is left out so that ids stay those of earlier loader versions.
    """
    pairs = [[t[0], t[1]] for t in turns]
    return hashlib.sha256(_canonical(pairs).encode("utf-8")).hexdigest()[:ID_HASH_CHARS]


def _record_key(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=repr)


# --------------------------------------------------------------------------- field values


def _scalar_text(value: Any) -> str | None:
    """str of a scalar id/category (1.0 -> "1"); None when missing; RecordError-free."""
    if is_missing(value) or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float, bool)):
        return str(value)
    return None


def _category(record: dict[str, Any], name: str | None) -> str | None:
    if name is None:
        return None
    value = record.get(name)
    text = _scalar_text(value)
    if text is None and not (is_missing(value) or value == ""):
        raise RecordError(name, f"category must be a string or number, got {type_name(value)}")
    return text


def _explicit_id(record: dict[str, Any], name: str | None, required: bool) -> str | None:
    if name is None:
        return None
    value = record.get(name)
    text = _scalar_text(value)
    if text is None:
        if not (is_missing(value) or value == ""):
            raise RecordError(name, f"id must be a string or number, got {type_name(value)}")
        if required:
            raise RecordError(name, "missing id" if value is None else "id is empty")
    return text


# --------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class FieldDetection:
    """What ``load_records`` does with a file: container, format and which fields play which part."""

    path: str
    container: str                    # "json" | "jsonl" | "csv" | "tsv" | "parquet" | "hf"
    format: str                       # one of formats.FORMAT_NAMES
    fields: tuple[str, ...]           # fields of the first record
    messages_field: str | None = None
    text_column: str | None = None
    response_column: str | None = None
    category_column: str | None = None
    id_field: str | None = None

    def describe(self) -> str:
        """One line for the app/CLI: container, format and which fields play which part."""
        if self.format == "evals":
            what = "chat records (OpenAI evals: messages in 'input', answer in 'ideal')"
        elif self.format == "chat":
            what = f"chat records (conversation in {self.messages_field!r})"
        elif self.format == "table":
            what = f"table records (text in {self.text_column!r}"
            what += f", response in {self.response_column!r})" if self.response_column else ", no response)"
        else:
            what = f"{_TITLES.get(self.format, self.format)} records ({format_spec(self.format).example})"
        ids = f"ids from {self.id_field!r}" if self.id_field else "ids = content hash"
        cats = f"categories from {self.category_column!r}" if self.category_column else "no categories"
        return f"{self.container.upper()} file: {what}; {ids}; {cats}."


def _absent(path: str, name: str, what: str, fields: Sequence[str]) -> DataError:
    return DataError(path, None, name, f"no such {what} in any record; fields are {list(fields)}")


def _all_fields(records: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        seen.update(dict.fromkeys(r))
    return list(seen)


def _detect(path: str, container: str, records: Sequence[dict[str, Any]], fmt: str, text_column: str | None,
            response_column: str | None, category_column: str | None, id_field: str | None) -> FieldDetection:
    """Format from the first record; optional fields (category, id) over all ``records``."""
    first = records[0]
    fields = _all_fields(records)
    no_ids = id_field is not None and id_field.lower() == "none"
    id_field = None if no_ids else id_field
    for name, what in ((text_column, "text column"), (response_column, "response column"),
                       (category_column, "category column"), (id_field, "id field")):
        if name is not None and name not in fields:
            raise _absent(path, name, what, fields)
    if fmt == "auto":
        fmt = "table" if text_column is not None else (detect_format(first) or "")
        if not fmt:
            raise DataError(
                path, None, None,
                f"cannot tell the record format from the first record's fields {list(first)}: expected e.g. "
                "'messages'/'conversations' (chat), 'instruction' + 'output' (Alpaca), 'instruction' + "
                "'response' (Dolly), 'prompt' + 'completion', or a text column (pass text_column=... / "
                "--text-column); see the README format table" + _casing_hint(first),
            )
    messages_field = next((f for f in MESSAGE_FIELDS if f in first), None) if fmt == "chat" else None
    if fmt == "chat" and messages_field is None:
        raise DataError(path, None, "messages", f"chat format needs a 'messages' or 'conversations' field; "
                        f"fields are {list(first)}")
    if fmt == "table":
        guess_text, guess_response = guess_pair(first)
        if text_column is None:
            text_column, response_column = guess_text, response_column or guess_response
        elif response_column is None:
            response_column = next((c for c in RESPONSE_CANDIDATES if c in first and c != text_column), None)
        if text_column is None:
            raise DataError(path, None, None, f"table format needs text_column=...; fields are {list(first)}")
    if category_column is None and CATEGORY_FIELD in fields:
        category_column = CATEGORY_FIELD
    if id_field is None and not no_ids:
        id_field = next((f for f in ID_FIELDS if f in fields), None)
    return FieldDetection(
        path=path, container=container, format=fmt, fields=tuple(first), messages_field=messages_field,
        text_column=text_column if fmt == "table" else None,
        response_column=response_column if fmt == "table" else None,
        category_column=category_column, id_field=id_field,
    )


_KNOWN_FIELDS = ("instruction", "input", "output", "response", "context", "messages", "conversations",
                 "prompt", "completion", "chosen", "rejected", "query", "question", "answer", "text", "system")


def _casing_hint(record: dict[str, Any]) -> str:
    """A sentence naming fields that differ from known ones only in letter case ("" if none)."""
    known = {k.lower(): k for k in _KNOWN_FIELDS}
    near = [(f, known[f.lower()]) for f in record
            if isinstance(f, str) and f.lower() in known and f != known[f.lower()]]
    if not near:
        return ""
    pairs = ", ".join(f"{f!r} -> {k!r}" for f, k in near)
    return f". Field names are case-sensitive: rename {pairs} (or pass --text-column/--response-column)"


def also_matches(record: dict[str, Any], fmt: str) -> list[str]:
    """Other formats (besides the generic table and chat-inside-preference) whose fields ``record`` also has."""
    skip = {fmt, "table"} | ({"chat"} if fmt == "preference" else set())
    return [name for name in FORMATS if name not in skip and format_spec(name).matches(record)]


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _read_items(p: Path, container: str) -> tuple[str, list, tuple[str, ...]]:
    opened = open_records(p, container)
    return opened.unit, list(opened.items), opened.notes


SKIP_HINT = ("fix this record, or pass on_error='skip' (CLI: --on-error skip) to leave bad records out "
             "and list them in the load report")


def with_skip_hint(error: DataError) -> DataError:
    """``error`` with what to do appended, for a record-level error raised under on_error='raise'."""
    if error.record is None or "on-error skip" in error.reason:
        return error
    return DataError(error.path, error.record, error.field_name, f"{error.reason} ({SKIP_HINT})", unit=error.unit)


def _good_records(path: str, items: list, on_error: str) -> list[dict[str, Any]]:
    good = [v for _, v in items if isinstance(v, dict)]
    bad = [v for _, v in items if not isinstance(v, dict)]
    if bad and on_error == "raise":
        raise with_skip_hint(bad[0])
    if not good:
        if bad:
            raise DataError(path, None, None, f"no valid records ({len(bad)} malformed; first: {bad[0]})")
        raise DataError(path, None, None, "no records")
    return good


def detect_fields(
    path: str | os.PathLike[str],
    *,
    fmt: str = "auto",
    text_column: str | None = None,
    response_column: str | None = None,
    category_column: str | None = None,
    id_field: str | None = None,
) -> FieldDetection:
    """Preview what ``load_records`` will detect (format from the first record, optional fields from all)."""
    _check_choice("fmt", fmt, ("auto", *FORMATS))
    p = Path(path)
    check_path(p)
    container = container_of(p)
    _, items, _ = _read_items(p, container)
    good = _good_records(str(p), items, "skip")
    return _detect(str(p), container, good, fmt, text_column, response_column, category_column, id_field)


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

    def __post_init__(self) -> None:
        self.turns = as_turns(self.turns)

    @property
    def where(self) -> str:
        return f"{self.source}, {self.unit} {self.number}"


class Assembler:
    """Collects samples into a Dataset: ids, duplicate handling, id conflicts.

    dedupe: ``"records"`` (default; ``True`` means the same) drops a sample whose record
    is identical to an earlier one — an exact duplicate — and reports a sample with the
    same model text but other fields differing (``same_text``), keeping it; ``"text"``
    also drops those; ``"none"`` (or ``False``) keeps everything. Kept repeats of an id
    get a suffix ``~2``, ``~3``... so ids stay unique. Two samples with the same explicit
    id and different model text are an error.
    """

    def __init__(self, *, dedupe: bool | str = "records", on_error: str = "raise", id_field: str | None = None):
        mode = {True: "records", False: "none"}.get(dedupe, dedupe) if isinstance(dedupe, bool) else dedupe
        _check_choice("dedupe", mode, DEDUPE_MODES)
        self.dedupe, self.on_error, self.id_field = mode, on_error, id_field
        self.samples: list[Sample] = []
        self.ids: list[str] = []
        self.skipped: list[str] = []
        self.duplicates: list[str] = []
        self.same_text: list[str] = []
        self.notes: list[str] = []
        self.n_read = 0
        self._by_record: dict[str, str] = {}
        self._by_content: dict[str, str] = {}
        self._by_id: dict[str, tuple[str, str]] = {}
        self._used: set[str] = set()

    def reject(self, error: DataError) -> None:
        """A record that could not be read or validated: raise, or remember it when skipping."""
        self.n_read += 1
        self._fail(error)

    def _fail(self, error: DataError) -> None:
        if self.on_error == "raise":
            raise with_skip_hint(error)
        self.skipped.append(str(error))

    def add(self, sample: Sample) -> None:
        """Keep ``sample`` under a unique id, or list it as a duplicate / id conflict."""
        self.n_read += 1
        key = turns_key(sample.turns)
        record_key = _record_key(sample.record)
        same_record = self._by_record.get(record_key)
        same_text = self._by_content.get(key)
        if self.dedupe != "none" and same_record is not None:
            self.duplicates.append(f"{sample.where}: exact duplicate of {same_record}")
            return
        if self.dedupe == "text" and same_text is not None:
            self.duplicates.append(f"{sample.where}: same model text as {same_text} (dropped: dedupe='text')")
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
        if same_text is not None and self.dedupe != "none":
            self.same_text.append(f"{sample.where}: same model text as {same_text}, other fields differ (kept)")
        self._by_record.setdefault(record_key, sample.where)
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

    def report(self) -> LoadReport:
        return LoadReport(n_read=self.n_read, n_kept=len(self.samples), skipped=tuple(self.skipped),
                          duplicates=tuple(self.duplicates), same_text=tuple(self.same_text),
                          notes=tuple(self.notes))

    def build(self, name: str, fmt: str, container: str = "") -> Dataset:
        """The kept samples, in the order added, with the load report."""
        return Dataset(
            name=name,
            format=fmt,
            ids=tuple(self.ids),
            turns=tuple(s.turns for s in self.samples),
            categories=tuple(s.category for s in self.samples),
            sources=tuple(s.source for s in self.samples),
            records=tuple(s.record for s in self.samples),
            report=self.report(),
            container=container,
        )


def _samples_of(record: dict[str, Any], det: FieldDetection, id_required: bool, number: int,
                unit: str) -> list[Sample]:
    """One record -> its sample(s) (Self-Instruct: one per instance, the record narrowed to it)."""
    category = _category(record, det.category_column)
    explicit = _explicit_id(record, det.id_field, id_required)
    if det.format == "self_instruct":
        instances = record.get("instances")
        if not isinstance(instances, list) or not instances:
            raise RecordError("instances", f"must be a non-empty list of {{input, output}}, got "
                              f"{type_name(instances)}")
        out = []
        for k in range(len(instances)):
            turns = self_instruct_turns(record, k)
            sid = f"{explicit or content_id(turns)}#{k + 1}"
            out.append(Sample({**record, "instances": [instances[k]]}, turns, category, det.path, number, sid, unit))
        return out
    turns = record_turns(record, det.format, messages_field=det.messages_field, text_column=det.text_column,
                         response_column=det.response_column)
    return [Sample(record, turns, category, det.path, number, explicit, unit)]


def load_records(
    path: str | os.PathLike[str],
    *,
    fmt: str = "auto",
    text_column: str | None = None,
    response_column: str | None = None,
    category_column: str | None = None,
    id_field: str | None = None,
    on_error: str = "raise",
    dedupe: bool | str = "records",
    name: str | None = None,
) -> Dataset:
    """Load instruction records from a file or ``datasets`` folder into a Dataset.

    fmt: "auto" (from the first record's fields; see ``mads_core.data.formats.FORMATS``
        and the README table) or a format name: alpaca, dolly, self_instruct, chat,
        preference, evals, string_list, mtbench, table (oasst_rows and segments are
        recognised and refused with a message saying what to do).
    text_column / response_column: table fields (guessed from common pairs if not given).
    category_column: any field (a ``category`` field is used when a record has one).
    id_field: defaults to ``id``, ``key`` or ``uid`` when a record has one; ``"none"``
        ignores ids. Records without one get the content hash of their turns. Scalar
        ids of any type are accepted (``1.0`` -> ``"1"``).
    on_error: "raise" stops at the first bad record; "skip" drops it and lists it in
        ``dataset.report.skipped``. Missing, empty or unreadable files always raise.
    dedupe: "records" (default, or True) drops identical records; "text" also drops
        samples whose model text repeats an earlier one; "none" (or False) keeps all.
    """
    _check_choice("fmt", fmt, ("auto", *FORMATS))
    _check_choice("on_error", on_error, ("raise", "skip"))
    p = Path(path)
    check_path(p)
    container = container_of(p)
    unit, items, notes = _read_items(p, container)
    good = _good_records(str(p), items, on_error)
    det = _detect(str(p), container, good, fmt, text_column, response_column, category_column, id_field)
    assembler = Assembler(dedupe=dedupe, on_error=on_error, id_field=det.id_field)
    assembler.notes.extend(notes)
    if fmt == "auto" and text_column is None:
        others = also_matches(good[0], det.format)
        if others:
            assembler.notes.append(
                f"the first record also has the fields of format {', '.join(map(repr, others))}; read as "
                f"{det.format!r} (pass fmt= / --format {others[0]} to read it that way)")
    if det.format == "table" and det.response_column is None:
        assembler.notes.append(
            f"table format with no response column (text column {det.text_column!r}; fields "
            f"{list(det.fields)}): each sample is the prompt alone; pass response_column= / "
            "--response-column FIELD if the answers are in another field")
    spec_note = format_spec(det.format).note
    if spec_note:
        assembler.notes.append(spec_note)
    id_required = id_field is not None and id_field.lower() != "none"
    for number, value in items:
        if isinstance(value, DataError):
            assembler.reject(value)
            continue
        try:
            samples = _samples_of(value, det, id_required, number, unit)
        except RecordError as err:
            assembler.reject(DataError(str(p), number, err.field_name, err.reason, unit=unit))
            continue
        for sample in samples:
            assembler.add(sample)
    if not assembler.samples:
        first_bad = assembler.skipped[0] if assembler.skipped else "none"
        raise DataError(str(p), None, None,
                        f"no valid records ({len(assembler.skipped)} malformed; first: {first_bad})")
    return assembler.build(name or p.stem, det.format, container)
