"""Exports round-trip through the loader in every container, in rank order, reproducibly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mads_core.data.export import export_selection, manifest_path_for, resolve_output
from mads_core.data.loader import load_records
from mads_core.select.greedy import Selection

ALPACA = [
    {"instruction": "Name a colour.", "input": "", "output": "Blue.", "category": "easy"},
    {"instruction": "Translate to English.", "input": "Grüß Gott", "output": "Hello (Austrian greeting).",
     "category": "lang", "extra": {"level": 2}},
    {"instruction": "Add the numbers.", "input": "2, 3", "output": "5", "category": "math"},
    {"instruction": "Write a haiku.", "input": "", "output": "Leaves fall / wind carries / silence",
     "category": "poem"},
]
CHAT = [
    {"id": "c1", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
    {"id": "c2", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                              {"role": "assistant", "content": "4"}], "category": "math"},
    {"id": "c3", "messages": [{"role": "user", "content": "Café?"},
                              {"role": "assistant", "content": "Oui ☕"}]},
]


def write_json(path: Path, rows: list) -> Path:
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return path


def selection(ranking: list[int], n: int, gains: list[float] | None = None) -> Selection:
    k = len(ranking)
    g = np.asarray(gains if gains is not None else np.arange(k, 0, -1), dtype=np.float64)
    return Selection("mads", n, np.asarray(ranking, dtype=np.int64), g, np.cumsum(g), np.zeros(k, np.int32),
                     {"threshold": 2.0, "layers": (0, 1)}, "abc123")


@pytest.fixture()
def alpaca(tmp_path: Path):
    return load_records(write_json(tmp_path / "in.json", ALPACA))


def test_alpaca_json_round_trip_in_rank_order(alpaca, tmp_path):
    sel = selection([2, 0, 3, 1], 4, gains=[5.0, 3.0, float("nan"), 1.0 / 3])
    res = export_selection(alpaca, sel, 3, tmp_path / "out" / "core.json", model={"name": "m", "sha": "x"})
    raw = json.loads(res.data_path.read_text(encoding="utf-8"))
    assert isinstance(raw, list)
    assert raw == [ALPACA[2], ALPACA[0], ALPACA[3]]  # every original field, rank order
    back = load_records(res.data_path)
    assert back.format == "alpaca"
    assert list(back.records) == [ALPACA[2], ALPACA[0], ALPACA[3]]
    assert list(back.ids) == [alpaca.ids[i] for i in (2, 0, 3)]
    man = json.loads(res.manifest_path.read_text(encoding="utf-8"))
    assert res.manifest_path == tmp_path / "out" / "core.json.manifest.json"
    assert man["method"] == "mads" and man["budget"] == {"given": 3, "count": 3}
    assert man["settings"] == {"threshold": 2.0, "layers": [0, 1]} and man["settings_hash"] == "abc123"
    assert man["model"] == {"name": "m", "sha": "x"}
    assert man["dataset"]["content_hash"] == alpaca.content_hash() and man["dataset"]["name"] == "in"
    assert [p["row"] for p in man["picks"]] == [2, 0, 3]
    assert [p["rank"] for p in man["picks"]] == [1, 2, 3]
    assert [p["id"] for p in man["picks"]] == [alpaca.ids[i] for i in (2, 0, 3)]
    assert [p["gain"] for p in man["picks"]] == [5.0, 3.0, None]  # NaN -> null
    assert "created" not in man


def test_export_is_byte_identical_and_leaves_no_temp_files(alpaca, tmp_path):
    sel = selection([1, 3], 4, gains=[2.0 / 3, 0.1 + 0.2])
    a = export_selection(alpaca, sel, 0.5, tmp_path / "a" / "x.json", model={"k": 1})
    b = export_selection(alpaca, sel, 0.5, tmp_path / "b" / "x.json", model={"k": 1})
    assert a.data_path.read_bytes() == b.data_path.read_bytes()
    assert a.manifest_path.read_bytes() == b.manifest_path.read_bytes()
    text = a.manifest_path.read_text(encoding="utf-8")
    assert json.loads(text)["budget"] == {"given": 0.5, "count": 2}
    assert "0.666666666667" in text and "0.3," in text  # 12 significant digits
    assert "Grüß" in a.data_path.read_text(encoding="utf-8")  # ensure_ascii=False
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.json", "x.json.manifest.json"]
    stamped = export_selection(alpaca, sel, 2, tmp_path / "c.json", created="2025-01-01T00:00:00Z")
    assert stamped.manifest["created"] == "2025-01-01T00:00:00Z"


def test_chat_jsonl_round_trip(tmp_path):
    src = tmp_path / "chat.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in CHAT), encoding="utf-8")
    ds = load_records(src)
    res = export_selection(ds, selection([2, 0], 3), 2, tmp_path / "sel")  # no suffix: chat -> .jsonl
    assert res.data_path.name == "sel.jsonl" and res.container == "jsonl"
    back = load_records(res.data_path)
    assert back.format == "chat" and list(back.ids) == ["c3", "c1"]
    assert list(back.records) == [CHAT[2], CHAT[0]]
    assert back.turns == (ds.turns[2], ds.turns[0])
    with pytest.raises(ValueError, match="CSV"):
        export_selection(ds, selection([2, 0], 3), 2, tmp_path / "sel.csv")


def test_csv_table_round_trip(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text('id,text,response,category\n1,"Hello, world",Hi,greet\n2,Bye,"line1\nline2",farewell\n'
                   "3,Odd,Fine,\n", encoding="utf-8")
    ds = load_records(src)
    res = export_selection(ds, selection([1, 2, 0], 3), 3, tmp_path / "o.csv")
    back = load_records(res.data_path)
    assert back.format == "table" and list(back.ids) == ["2", "3", "1"]
    assert list(back.records) == [ds.records[1], ds.records[2], ds.records[0]]


def test_parquet_round_trip_alpaca(alpaca, tmp_path):
    res = export_selection(alpaca, selection([3, 1], 4), 2, tmp_path / "o.parquet")
    assert res.container == "parquet"
    back = load_records(res.data_path)
    assert back.format == "alpaca" and list(back.ids) == [alpaca.ids[3], alpaca.ids[1]]
    for got, want in zip(back.records, (ALPACA[3], ALPACA[1]), strict=True):
        assert got == want  # absent fields stay absent, nested objects get no keys
    again = export_selection(alpaca, selection([3, 1], 4), 2, tmp_path / "p" / "o.parquet")
    assert again.data_path.read_bytes() == res.data_path.read_bytes()


def test_export_rejects_bad_requests(alpaca, tmp_path):
    with pytest.raises(ValueError, match="ranking"):
        export_selection(alpaca, selection([0, 1], 4), 3, tmp_path / "x.json")
    with pytest.raises(ValueError, match="dataset has 4"):
        export_selection(alpaca, selection([0, 1], 5), 2, tmp_path / "x.json")
    with pytest.raises(ValueError, match="export"):
        resolve_output(tmp_path / "x.txt", "alpaca")
    with pytest.raises(ValueError):
        export_selection(alpaca, selection([0, 1], 4), 0, tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
    assert manifest_path_for(tmp_path / "x.json").name == "x.json.manifest.json"


def test_manifest_and_cli_carry_the_load_report(tmp_path, capsys):
    from mads_core.cli import main

    cases = Path(__file__).parent / "cases" / "loader"
    ds = load_records(cases / "prompt_completions_list.jsonl")
    res = export_selection(ds, selection([2, 0], 3), 2, tmp_path / "o")
    assert res.data_path.suffix == ".jsonl"  # the input's own container
    report = res.manifest["load_report"]
    assert (report["read"], report["kept"], report["same_text"]["count"]) == (3, 3, 1)

    out = tmp_path / "cli" / "core"
    code = main(["select", "--data", str(cases / "i09b_long_system_prompt.jsonl"), "--method", "random",
                 "--budget", "2", "--max-tokens", "256", "--out", str(out)])
    assert code == 0
    err = capsys.readouterr().err
    assert "Read 3 records, kept 3." in err and "Truncated 2 samples (context cut to fit the token window):" in err
    manifest = json.loads(manifest_path_for(out.with_suffix(".jsonl")).read_text(encoding="utf-8"))
    assert manifest["load_report"]["truncated"]["count"] == 2
    assert manifest["load_report"]["no_own"]["count"] == 0
