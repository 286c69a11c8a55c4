"""Conformance over every record format: load -> turns -> export -> reload gives the same records and turns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mads_core.config import FingerprintConfig
from mads_core.data.export import export_selection, merge_instances
from mads_core.data.loader import load_records
from mads_core.select.greedy import Selection

CASES = Path(__file__).parent / "cases" / "loader"

# (case file, format it must be read as, first sample's turns written out by hand)
FORMATS = [
    ("lf_alpaca_system_history.json", "alpaca", None),
    ("dolly_context.jsonl", "dolly",
     (("user", "Suggest a name for a pet turtle.", True), ("assistant", "Shelby.", True))),
    ("self_instruct_instances.jsonl", "self_instruct", None),
    ("dpo_sharegpt_pairs.json", "preference", None),
    ("dpo_messages_pairs.jsonl", "preference", None),
    ("kto_labels.jsonl", "chat", None),
    ("lima_conversations_strings.jsonl", "string_list", None),
    ("ultrachat_data_list.jsonl", "string_list", None),
    ("mtbench_turns.jsonl", "mtbench", None),
    ("axolotl_oasst_upper.jsonl", "table", None),
    ("metamath_query_response.jsonl", "table", None),
    ("instruction_response.jsonl", "table", None),
    ("openai_legacy_prompt_completion.jsonl", "table", None),
    ("sharegpt_toolcall_llamafactory.json", "chat", None),
    ("openai_tool_calls.jsonl", "chat", None),
    ("b27_plain.tsv", "table", (("user", "Name a colour.", True), ("assistant", "Blue", True))),
    ("i03_bom_heterogeneous.jsonl", "chat", None),
]


def everything(n: int) -> Selection:
    """A selection ranking all n samples in reverse order (so the export reorders them)."""
    ranking = np.arange(n - 1, -1, -1, dtype=np.int64)
    gains = np.ones(n, dtype=np.float64)
    return Selection("mads", n, ranking, gains, np.cumsum(gains), np.zeros(n, np.int32), {}, "h")


def original_records(path: Path) -> list[dict]:
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    if path.suffix == ".tsv":
        lines = path.read_text(encoding="utf-8").splitlines()
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    return [json.loads(line) for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]


@pytest.mark.parametrize(("name", "fmt", "second"), FORMATS)
@pytest.mark.parametrize("suffix", ["", ".parquet", ".jsonl"])
def test_load_export_reload_same_records(tmp_path: Path, name: str, fmt: str, second, suffix: str) -> None:
    src = CASES / name
    ds = load_records(src)
    assert ds.format == fmt
    if second is not None:
        assert ds.turns[1] == second
    res = export_selection(ds, everything(len(ds)), len(ds), tmp_path / f"out{suffix}")
    if not suffix:  # the input's own container
        assert res.data_path.suffix == src.suffix
    back = load_records(res.data_path)
    assert back.format == fmt
    if fmt == "self_instruct":  # one record per seed task again, instances in rank order
        assert sorted(merge_instances(back.records), key=lambda r: r["id"]) == [
            {**original_records(src)[0], "instances": original_records(src)[0]["instances"][::-1]},
            original_records(src)[1],
        ]
        assert sorted(back.turns) == sorted(ds.turns)
        return
    assert list(back.records) == list(ds.records)[::-1]
    assert list(back.records)[::-1] == original_records(src)  # exactly the records of the file
    assert back.turns == ds.turns[::-1]


def test_tsv_export_refuses_values_it_cannot_carry(tmp_path: Path) -> None:
    src = tmp_path / "t.jsonl"
    src.write_text(json.dumps({"text": "a\tb", "response": "x"}) + "\n", encoding="utf-8")
    ds = load_records(src)
    with pytest.raises(ValueError, match="record 1, field 'text' holds a tab"):
        export_selection(ds, everything(1), 1, tmp_path / "o.tsv")


def test_datasets_folders_read_with_the_datasets_library(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"q{i}"},
                                         {"role": "assistant", "content": f"a{i}"}], "category": "c"}
            for i in range(3)]
    data = datasets.Dataset.from_list(rows)
    data.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": data, "test": data.select([0])}).save_to_disk(str(tmp_path / "dict"))
    (tmp_path / "hub" / "data").mkdir(parents=True)
    data.to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for folder in ("saved", "dict", "hub", "shards"):
        ds = load_records(tmp_path / folder)
        assert ds.container == "hf" and ds.format == "chat"
        assert ds.ids == ("r0", "r1", "r2")
        assert ds.turns[2] == (("user", "q2", True), ("assistant", "a2", True))
        assert list(ds.records) == rows
    assert any("read split 'train'" in n for n in load_records(tmp_path / "dict").report.notes)


def test_cache_key_changes_with_the_loader_format_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import mads_core.data.loader as loader
    from mads_core.model.fingerprint import fingerprint_key

    identity = {"hash": "m"}
    before = fingerprint_key(load_records(CASES / "dolly_context.jsonl").content_hash(), identity, FingerprintConfig())
    monkeypatch.setattr(loader, "LOADER_FORMAT_VERSION", loader.LOADER_FORMAT_VERSION + 1)
    after = fingerprint_key(load_records(CASES / "dolly_context.jsonl").content_hash(), identity, FingerprintConfig())
    assert before != after


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".json"])
def test_trl_conversational_prompt_completion_round_trip(tmp_path: Path, suffix: str) -> None:
    rows = [
        {"prompt": [{"role": "user", "content": "2+2?"}], "completion": [{"role": "assistant", "content": "4"}]},
        {"prompt": [{"role": "user", "content": "3+3?"}], "completion": [{"role": "assistant", "content": "6"}]},
    ]
    src = tmp_path / "pc.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ds = load_records(src)
    assert ds.format == "table"
    assert ds.turns[1] == (("user", "3+3?", True), ("assistant", "6", True))
    res = export_selection(ds, everything(2), 2, tmp_path / f"out{suffix}")
    back = load_records(res.data_path)
    assert list(back.records)[::-1] == rows
    assert back.turns == ds.turns[::-1]


def test_parquet_export_keeps_mixed_scalar_types(tmp_path: Path) -> None:
    # ids of any scalar type are accepted; a Parquet column cannot hold int, float, bool and str
    # at once, and Arrow would cast True -> 1.0 (then clashing with id 1) and 0 -> "0".
    rows = [
        {"id": 1, "instruction": "q1", "output": "a1", "score": 1},
        {"id": 2.5, "instruction": "q2", "output": "a2", "score": 0.5},
        {"id": True, "instruction": "q3", "output": "a3", "score": None},
        {"id": "x", "instruction": "q4", "output": "a4", "score": 2},
    ]
    src = tmp_path / "ids.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ds = load_records(src)
    assert ds.ids == ("1", "2.5", "True", "x")
    res = export_selection(ds, everything(4), 4, tmp_path / "out.parquet")
    back = load_records(res.data_path)
    assert back.ids == ("x", "True", "2.5", "1")
    kept = list(back.records)[::-1]
    assert json.dumps(kept) == json.dumps(rows)  # types too: == would take True for 1
