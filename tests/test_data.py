"""Loading and validating records: formats, ids, errors, duplicates, Dataset helpers."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from turns import A, S, U

from mads_core.data.loader import DataError, Dataset, LoadReport, detect_fields, load_records

ALPACA = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue.", "category": "easy", "extra": 1},
    {"instruction": "Translate.", "input": "Bonjour", "output": "Hello.", "category": "lang"},
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_json(path: Path, rows: list) -> Path:
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def hash_id(turns: list[list[str]]) -> str:
    text = json.dumps(turns, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------- formats


def test_alpaca_json_array(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a.json", ALPACA)
    ds = load_records(path)
    assert ds.format == "alpaca"
    assert ds.name == "a"
    assert ds.turns[0] == (U("Name a colour."), A("Blue."))
    assert ds.turns[1] == (U("Translate.\n\nBonjour"), A("Hello."))
    assert ds.ids[1] == hash_id([["user", "Translate.\n\nBonjour"], ["assistant", "Hello."]])
    assert ds.categories == ("easy", "lang")
    assert ds.sources == (str(path), str(path))
    assert ds.records[0] == ALPACA[0]  # every original field kept, untouched
    assert ds.report == LoadReport(n_read=2, n_kept=2)


def test_json_and_jsonl_of_same_records_are_the_same_dataset(tmp_path: Path) -> None:
    a = load_records(write_json(tmp_path / "a.json", ALPACA))
    b = load_records(write_jsonl(tmp_path / "a.jsonl", ALPACA))
    assert a.content_hash() == b.content_hash()
    assert len(a.content_hash()) == 64


def test_json_file_holding_json_lines_is_read_as_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "lines.json", ALPACA)
    assert len(load_records(path)) == 2
    assert detect_fields(path).format == "alpaca"


@pytest.mark.parametrize("id_name", ["id", "key", "uid"])
def test_own_id_field_is_used(tmp_path: Path, id_name: str) -> None:
    rows = [{**r, id_name: f"r{i}"} for i, r in enumerate(ALPACA)]
    ds = load_records(write_jsonl(tmp_path / "a.jsonl", rows))
    assert ds.ids == ("r0", "r1")


def test_integer_ids_and_custom_id_field(tmp_path: Path) -> None:
    rows = [{**r, "row": i + 10} for i, r in enumerate(ALPACA)]
    ds = load_records(write_jsonl(tmp_path / "a.jsonl", rows), id_field="row")
    assert ds.ids == ("10", "11")


def test_openai_chat_records(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"},
                      {"role": "assistant", "content": "Goodbye"}], "category": "greet"},
    ]
    ds = load_records(write_jsonl(tmp_path / "c.jsonl", rows))
    assert ds.format == "chat"
    assert ds.turns[0][0] == S("Be brief.")
    assert len(ds.turns[0]) == 5
    assert ds.prompt(0) == "Hi\n\nBye"
    assert ds.response(0) == "Goodbye"
    assert ds.display_text(0).startswith("System: Be brief.\n\nUser: Hi")
    assert ds.records[0] is not None and ds.records[0]["category"] == "greet"


def test_sharegpt_roles_are_mapped(tmp_path: Path) -> None:
    rows = [{"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]}]
    ds = load_records(write_json(tmp_path / "s.json", rows))
    assert ds.format == "chat"
    assert ds.turns[0] == (U("2+2?"), A("4"))


def test_openai_content_parts_and_empty_system_turn(tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "system", "content": ""},
                          {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}]
    ds = load_records(write_jsonl(tmp_path / "p.jsonl", rows))
    assert ds.turns[0] == (U("a\nb"),)
    assert ds.response(0) == ""


def test_openai_evals_records_become_chat(tmp_path: Path) -> None:
    rows = [{"input": [{"role": "system", "content": "Answer."}, {"role": "user", "content": "Q?"}],
             "ideal": ["A", "alt"]}]
    path = write_jsonl(tmp_path / "e.jsonl", rows)
    ds = load_records(path)
    assert ds.format == "evals"
    assert ds.turns[0] == (S("Answer."), U("Q?"), A("A"))
    assert "ideal" in detect_fields(path).describe()


def test_csv_table_with_response_and_category(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["q", "a", "topic"],
                     [["What is 2+2?", "4", "math"], ["Multi\nline question", "yes", ""]])
    ds = load_records(path, text_column="q", response_column="a", category_column="topic")
    assert ds.format == "table"
    assert ds.turns == ((U("What is 2+2?"), A("4")),
                        (U("Multi\nline question"), A("yes")))
    assert ds.categories == ("math", None)
    assert ds.records[0] == {"q": "What is 2+2?", "a": "4", "topic": "math"}


def test_table_without_response_and_guessed_text_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["text"], [["just text"]])
    ds = load_records(path)
    assert ds.turns == ((U("just text"),),)
    assert ds.display_text(0) == "just text"
    assert ds.prompt(0) == "just text"


def test_tsv_file(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("text\tcategory\nhello, world\tx\n", encoding="utf-8")
    ds = load_records(path)
    assert ds.turns[0] == (U("hello, world"),)
    assert ds.categories == ("x",)


def test_parquet_table_and_chat(tmp_path: Path) -> None:
    table_path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"prompt": ["p1", "p2"], "response": ["r1", "r2"], "id": [7, 8]}), table_path)
    ds = load_records(table_path)
    assert ds.format == "table"
    assert ds.ids == ("7", "8")
    assert ds.turns[1] == (U("p2"), A("r2"))

    chat_path = tmp_path / "c.parquet"
    messages = [[{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]]
    pq.write_table(pa.table({"messages": messages}), chat_path)
    assert load_records(chat_path).turns == ((U("u"), A("a")),)


def test_csv_and_parquet_of_same_table_hash_equal(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "t.csv", ["text", "response"], [["a", "b"], ["c", "d"]])
    pq_path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["a", "c"], "response": ["b", "d"]}), pq_path)
    assert load_records(csv_path).content_hash() == load_records(pq_path).content_hash()


def test_bom_and_windows_line_endings(tmp_path: Path) -> None:
    jsonl = tmp_path / "w.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(r).encode() + b"\r\n" for r in ALPACA))
    assert load_records(jsonl).turns[0] == (U("Name a colour."), A("Blue."))
    table = tmp_path / "w.csv"
    table.write_bytes(b"\xef\xbb\xbftext,response\r\nq1,a1\r\nq2,a2\r\n")
    assert load_records(table).turns[1] == (U("q2"), A("a2"))


# --------------------------------------------------------------------------- detection


def test_detect_fields_reports_roles(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{**ALPACA[0], "id": "x"}])
    det = detect_fields(path)
    assert (det.container, det.format, det.id_field, det.category_column) == ("jsonl", "alpaca", "id", "category")
    assert "instruction" in det.fields
    assert "Alpaca" in det.describe() and "'id'" in det.describe()

    table = detect_fields(write_csv(tmp_path / "t.csv", ["question", "answer"], [["q", "a"]]))
    assert (table.format, table.text_column, table.response_column) == ("table", "question", "answer")


def test_undetectable_format_names_the_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"foo": "bar"}])
    with pytest.raises(DataError, match=r"cannot tell the record format.*'foo'"):
        load_records(path)


def test_forced_format_must_fit(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", ALPACA)
    with pytest.raises(DataError, match="messages"):
        load_records(path, fmt="chat")
    with pytest.raises(DataError, match="no such text column") as info:
        load_records(path, text_column="nope")
    assert info.value.field_name == "nope"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="on_error"):
        load_records("x.jsonl", on_error="ignore")
    with pytest.raises(ValueError, match="fmt"):
        load_records("x.jsonl", fmt="sharegpt")


# --------------------------------------------------------------------------- errors


def test_missing_file_and_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as info:
        load_records(tmp_path / "nope.jsonl")
    assert info.value.path.endswith("nope.jsonl")
    odd = tmp_path / "data.txt"
    odd.write_text("hello", encoding="utf-8")
    with pytest.raises(DataError, match="unknown file type '.txt'"):
        load_records(odd)


@pytest.mark.parametrize(
    ("name", "content"),
    [("e.jsonl", ""), ("w.jsonl", "\n  \n"), ("e.json", "[]"), ("h.csv", "text,response\n"), ("z.parquet", "")],
)
def test_empty_files_have_no_records(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match="no records"):
        load_records(path)


def test_empty_parquet_table(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)
    with pytest.raises(DataError, match="no records"):
        load_records(path)


def test_invalid_json_line_raises_then_skips(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(ALPACA[0]) + "\n\n{oops\n" + json.dumps(ALPACA[1]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a\.jsonl, line 3: invalid JSON") as info:
        load_records(path)
    assert (info.value.record, info.value.unit) == (3, "line")
    ds = load_records(path, on_error="skip")
    assert len(ds) == 2
    assert ds.report.n_read == 3 and ds.report.n_skipped == 1
    summary = ds.report.summary()
    assert "Skipped 1 malformed record:" in summary and "line 3: invalid JSON" in summary


def test_non_utf8_jsonl_names_line_and_byte_offset(tmp_path: Path) -> None:
    first = (json.dumps(ALPACA[0]) + "\n").encode()
    bad = b'{"instruction": "caf\xe9", "output": "x"}\n'
    path = tmp_path / "a.jsonl"
    path.write_bytes(first + bad)
    with pytest.raises(DataError, match="not valid UTF-8") as info:
        load_records(path)
    assert info.value.record == 2
    offset = len(first) + bad.index(b"\xe9")
    assert f"byte offset {offset}" in str(info.value)
    assert "byte 0xe9" in str(info.value)
    assert len(load_records(path, on_error="skip")) == 1


def test_non_utf8_csv_and_json(tmp_path: Path) -> None:
    csv_path = tmp_path / "t.csv"
    csv_path.write_bytes(b"text\nfine\ncaf\xe9 au lait\n")
    expected = r"line 3: not valid UTF-8: byte 0xe9 at byte offset 13 of the file \(column 4\)"
    with pytest.raises(DataError, match=expected):
        load_records(csv_path)
    assert load_records(csv_path, on_error="skip").turns == ((U("fine"),),)

    json_path = tmp_path / "a.json"
    json_path.write_bytes(b'[\n{"instruction": "a", "output": "b"},\n{"instruction": "\xff", "output": "b"}\n]')
    with pytest.raises(DataError, match=r"line 3: not valid UTF-8: byte 0xff"):
        load_records(json_path)


@pytest.mark.parametrize(
    ("record", "field", "reason"),
    [
        ({"instruction": "do", "input": ""}, "output", "missing required field"),
        ({"instruction": "   ", "output": "x"}, "instruction", "is empty"),
        ({"instruction": 5, "output": "x"}, "instruction", "must be a string, got int"),
        ({"instruction": "do", "input": ["x"], "output": "x"}, "input", "must be a string, got list"),
        ({"instruction": "do", "output": None}, "output", "must be a string, got null"),
    ],
)
def test_bad_alpaca_fields(tmp_path: Path, record: dict, field: str, reason: str) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [ALPACA[0], record])
    with pytest.raises(DataError) as info:
        load_records(path)
    assert (info.value.record, info.value.field_name) == (2, field)
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{path}, line 2, field {field!r}: ")


@pytest.mark.parametrize(
    ("messages", "field", "reason"),
    [
        ([{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}], "messages[1].role", "unknown role"),
        ([{"from": "human", "value": "hi"}, {"from": "bot9", "value": "x"}], "messages[1].from", "unknown role"),
        ([{"role": "user"}], "messages[0].content", "missing content"),
        ([{"role": "user", "content": ""}], "messages[0].content", "is empty"),
        ([{"role": "system", "content": "only system"}], "messages", "no user or assistant"),
        ("hi", "messages", "must be a list"),
        (["hi"], "messages[0]", "must be an object"),
    ],
)
def test_bad_chat_records(tmp_path: Path, messages: object, field: str, reason: str) -> None:
    good = {"messages": [{"role": "user", "content": "ok"}]}
    path = write_json(tmp_path / "c.json", [good, {"messages": messages}])
    with pytest.raises(DataError) as info:
        load_records(path)
    assert (info.value.record, info.value.field_name, info.value.unit) == (2, field, "record")
    assert reason in info.value.reason


def test_csv_errors_name_lines_after_multiline_fields(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["text", "response"],
                     [["two\nlines", "ok"], ["", "empty text"], ["x", "y"]])
    with pytest.raises(DataError) as info:
        load_records(path)
    assert (info.value.record, info.value.field_name) == (4, "text")  # header 1, record 2-3, bad at 4
    path.write_text("text,response\na,b,c\nd,e\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2: has 3 fields, the header has 2"):
        load_records(path)


def test_parquet_errors_name_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["a", None, "c"]}), path)
    with pytest.raises(DataError, match=r"record 2, field 'text': must be a string, got null"):
        load_records(path)
    assert load_records(path, on_error="skip").report.n_skipped == 1


def test_non_object_records(tmp_path: Path) -> None:
    path = write_json(tmp_path / "a.json", [ALPACA[0], [1, 2]])
    with pytest.raises(DataError, match="record 2: expected a JSON object, got list"):
        load_records(path)
    obj = write_json(tmp_path / "o.json", {"data": ALPACA})  # type: ignore[arg-type]
    assert obj.read_text().startswith("{")
    with pytest.raises(DataError, match="missing required field|cannot tell"):
        load_records(obj)


def test_unreadable_parquet_and_missing_messages(tmp_path: Path) -> None:
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"this is not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_records(junk)
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "user", "content": "x"}]}, {"text": "y"}])
    with pytest.raises(DataError, match=r"line 2, field 'messages': missing required field"):
        load_records(path)


def test_all_records_bad_is_an_error_even_when_skipping(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text("{bad\n{worse\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no valid records \(2 malformed"):
        load_records(path, on_error="skip")


# --------------------------------------------------------------------------- duplicates


def test_exact_duplicates_are_dropped_and_listed(tmp_path: Path) -> None:
    rows = [ALPACA[0], ALPACA[1], dict(ALPACA[0]), {**ALPACA[0], "category": "other"}]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    ds = load_records(path)
    assert len(ds) == 3  # only the identical record (line 3) is an exact duplicate
    assert ds.report.duplicates == (f"{path}, line 3: exact duplicate of {path}, line 1",)
    assert ds.report.same_text == (f"{path}, line 4: same model text as {path}, line 1, other fields differ (kept)",)
    assert ds.categories == ("easy", "lang", "other")
    assert "Dropped 1 exact duplicate:" in ds.report.summary()
    assert ds.report.n_read == ds.report.n_kept + ds.report.n_skipped + ds.report.n_duplicates

    by_text = load_records(path, dedupe="text")
    assert len(by_text) == 2 and by_text.report.n_duplicates == 2

    kept = load_records(path, dedupe=False)
    assert len(kept) == 4
    assert kept.ids[2] == kept.ids[0] + "~2"  # ids stay unique
    assert len(set(kept.ids)) == 4


def test_same_id_different_content_names_both_records(tmp_path: Path) -> None:
    rows = [{**ALPACA[0], "id": "a"}, {**ALPACA[1], "id": "b"}, {**ALPACA[1], "output": "Hi.", "id": "a"}]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    with pytest.raises(DataError, match=r"line 3, field 'id': id 'a' is also used by .*line 1") as info:
        load_records(path)
    assert info.value.record == 3
    ds = load_records(path, on_error="skip")
    assert ds.ids == ("a", "b")
    assert ds.report.n_skipped == 1 and ds.report.n_read == 3


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c d", "é"]), st.sampled_from(["x", "y"])), min_size=1))
def test_dedupe_keeps_first_occurrences_in_order(tmp_path_factory: pytest.TempPathFactory,
                                                 pairs: list[tuple[str, str]]) -> None:
    path = tmp_path_factory.mktemp("h") / "a.jsonl"
    write_jsonl(path, [{"instruction": i, "output": o} for i, o in pairs])
    ds = load_records(path)
    expected = list(dict.fromkeys(pairs))
    assert [(t[0][1], t[1][1]) for t in ds.turns] == expected
    assert ds.report.n_duplicates == len(pairs) - len(expected)
    assert len(set(ds.ids)) == len(ds)


# --------------------------------------------------------------------------- Dataset helpers


def small_dataset(tmp_path: Path) -> Dataset:
    rows = [{"instruction": f"task {i}", "output": f"answer {i}", "category": f"c{i % 2}"} for i in range(5)]
    return load_records(write_jsonl(tmp_path / "s.jsonl", rows))


def test_content_hash_is_stable_and_content_sensitive(tmp_path: Path) -> None:
    ds = small_dataset(tmp_path)
    again = small_dataset(tmp_path)
    assert ds.content_hash() == again.content_hash()
    recategorised = Dataset(ds.name, ds.format, ds.ids, ds.turns, (None,) * 5, ds.sources, ds.records)
    assert recategorised.content_hash() == ds.content_hash()  # categories do not change what the model reads
    changed = Dataset(ds.name, ds.format, ds.ids, ds.turns[:4] + ((U("other"),),),
                      ds.categories, ds.sources, ds.records)
    assert changed.content_hash() != ds.content_hash()


def test_subset_keeps_given_order(tmp_path: Path) -> None:
    ds = small_dataset(tmp_path)
    sub = ds.subset([3, 0, 4])
    assert sub.ids == (ds.ids[3], ds.ids[0], ds.ids[4])
    assert sub.categories == ("c1", "c0", "c0")
    assert sub.records[0]["instruction"] == "task 3"
    assert sub.content_hash() != ds.content_hash()
    assert ds.subset(range(5)).content_hash() == ds.content_hash()
    assert sub.index_of(ds.ids[0]) == 1
    with pytest.raises(IndexError):
        ds.subset([5])
    with pytest.raises(ValueError, match="repeated"):
        ds.subset([1, 1])


def test_display_text_truncates(tmp_path: Path) -> None:
    ds = small_dataset(tmp_path)
    assert ds.display_text(0) == "User: task 0\n\nAssistant: answer 0"
    assert ds.display_text(0, max_chars=10) == "User: tas…"
    frame = ds.to_frame()
    assert list(frame["prompt"]) == [f"task {i}" for i in range(5)]
    assert list(frame["response"])[2] == "answer 2"


def test_report_summary_lists_first_reasons() -> None:
    report = LoadReport(n_read=9, n_kept=4, skipped=tuple(f"f, line {i}: bad" for i in range(5)))
    text = report.summary(first=2)
    assert text.splitlines() == [
        "Read 9 records, kept 4.",
        "Skipped 5 malformed records:",
        "  - f, line 0: bad",
        "  - f, line 1: bad",
        "  ... and 3 more",
    ]
