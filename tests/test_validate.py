"""Downstream validation: held-out tasks, paired statistics, a real one-cell grid and its cache."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mads_core.data.demo import DEFAULT_EVALS_TASKS, evals_samples, load_demo
from mads_core.data.loader import Assembler
from mads_core.validate import train as train_mod
from mads_core.validate.evaluate import chance_level, is_match
from mads_core.validate.stats import paired_difference, paired_table
from mads_core.validate.tasks import HELDOUT_TASKS, assert_disjoint, heldout_task_items, items_hash, pool_tasks


@pytest.fixture(scope="module")
def demo():
    return load_demo("default")


def test_heldout_tasks_are_disjoint_from_the_default_pool(demo):
    items = heldout_task_items(2)
    assert {i.task for i in items} == set(HELDOUT_TASKS)
    assert len(items) == 2 * len(HELDOUT_TASKS)
    in_pool = pool_tasks(demo)
    assert set(DEFAULT_EVALS_TASKS) <= in_pool  # the check sees the pool's evals tasks ...
    assert not set(HELDOUT_TASKS) & in_pool  # ... and none of them is held out
    assert_disjoint(items, demo)
    assert all(i.short for i in items)  # every held-out task gets an accuracy
    assert items_hash(items) == items_hash(heldout_task_items(2))  # deterministic
    assert items_hash(items) != items_hash(heldout_task_items(3))


def test_a_pool_containing_a_heldout_task_is_refused():
    assembler = Assembler(dedupe=True, on_error="skip", id_field="id")
    for sample in evals_samples(3, ["sarcasm", "rot13"]):
        assembler.add(sample)
    pool = assembler.build("leaky", "chat")
    with pytest.raises(ValueError, match="sarcasm"):
        assert_disjoint(heldout_task_items(1, ["sarcasm", "anagrams"]), pool)


def test_matching_and_chance_level():
    assert is_match(" Yes.", ["yes"]) and is_match("'False' because", ["False"])
    assert not is_match("4800", ["480"]) and not is_match("", ["0"])
    assert chance_level(["Yes", "No", "yes", "Yes"]) == 0.75
    assert chance_level(["a", "b", "c", "d"]) == 0.25


def test_paired_difference_on_a_hand_computed_example():
    # d = a - b = [0.10, 0.05, 0.15]: mean 0.10, sd 0.05, se 0.05/sqrt(3) = 0.028868, t = 3.4641 < t_0.975,2 = 4.3027
    s = paired_difference(np.array([0.50, 0.40, 0.45]), np.array([0.40, 0.35, 0.30]))
    assert s["mean"] == pytest.approx(0.10)
    assert s["sd"] == pytest.approx(0.05)
    assert s["se"] == pytest.approx(0.05 / math.sqrt(3))
    assert s["t"] == pytest.approx(2 * math.sqrt(3))
    assert s["t_crit"] == pytest.approx(4.302653, abs=1e-6)
    assert s["ci_low"] == pytest.approx(0.10 - 4.302653 * 0.05 / math.sqrt(3), abs=1e-6)
    assert s["noise"] == pytest.approx(0.05)  # var a = var b = 0.0025
    assert s["exceeds"] == 0.0
    # Four seeds, d = [0.2, 0.21, 0.19, 0.2]: sd 0.008165, t = 48.99 > t_0.975,3 = 3.1824
    s = paired_difference(np.array([1.2, 1.21, 1.19, 1.2]), np.array([1.0, 1.0, 1.0, 1.0]))
    assert s["t"] == pytest.approx(0.2 / (0.008164966 / 2), rel=1e-6) and s["exceeds"] == 1.0
    with pytest.raises(ValueError):
        paired_difference(np.array([1.0]), np.array([2.0]))


def test_paired_table_pairs_by_seed_and_says_which_is_better():
    cells = pd.DataFrame({
        "method": ["mads"] * 3 + ["random"] * 3,
        "budget": ["5%"] * 6,
        "seed": [2, 0, 1, 0, 1, 2],
        "tasks_loss": [2.0, 1.9, 2.1, 2.0, 2.2, 2.3],  # mads by seed 0,1,2: 1.9, 2.1, 2.0
    })
    table = paired_table(cells, "tasks_loss")
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["a"], row["b"]) == ("mads", "random")
    assert row["mean"] == pytest.approx(((1.9 - 2.0) + (2.1 - 2.2) + (2.0 - 2.3)) / 3)
    assert row["statement"].startswith("mads is ahead of random but within seed noise")


@pytest.mark.model
def test_one_cell_grid_trains_for_real_and_cached_cells_are_not_retrained(demo, tmp_path):
    from mads_core.config import ModelSpec
    from mads_core.model.store import artifact_dir
    from mads_core.validate.evaluate import answer_losses
    from mads_core.validate.grid import GridSpec, run_grid

    pool = demo.subset(range(40))
    grid = GridSpec(methods=("random",), budgets=(4,), seeds=(0,), holdout=0.1, references=False,
                    eval_tasks=("sarcasm", "which_is_heavier"), eval_per_task=2, max_new_tokens=2)
    settings = train_mod.TrainSettings(steps=3, batch_size=2, max_length=64, learning_rate=2e-3, device="cpu")
    runs = train_mod.TRAINER_RUNS
    first = run_grid(pool, grid, settings, cache=tmp_path)
    assert train_mod.TRAINER_RUNS - runs == first.trainer_runs == 1
    row = first.cells.iloc[0]
    assert (row["method"], row["k"], row["status"]) == ("random", 4, "trained")
    assert not set(first.holdout_rows) & set(first.selectable_rows)
    assert {"tasks_loss", "tasks_acc", "tasks_chance", "pool_loss"} <= set(first.cells.columns)
    assert 0.0 <= row["tasks_acc"] <= 1.0 and row["tasks_chance"] >= 0.5  # two yes/no-style tasks

    # The loss of the subset's own answers goes down after training (base vs the kept adapter).
    folder = artifact_dir("validate/train", row["key"], tmp_path)
    from mads_core.model.store import read_meta

    ids = read_meta(folder)["ids"]
    turns = [pool.turns[pool.index_of(i)] for i in ids]
    base, tok = train_mod.load_trained(ModelSpec(), settings, None)
    before, _ = answer_losses(base, tok, turns, max_length=64)
    tuned, tok = train_mod.load_trained(ModelSpec(), settings, folder)
    after, _ = answer_losses(tuned, tok, turns, max_length=64)
    assert np.nanmean(after) < np.nanmean(before) - 0.05

    # Run again: the cell is read from the cache, no trainer runs.
    runs = train_mod.TRAINER_RUNS
    again = run_grid(pool, grid, settings, cache=tmp_path)
    assert runs == train_mod.TRAINER_RUNS and again.trainer_runs == 0
    assert again.cells.iloc[0]["status"] == "cached"
    assert again.cells.iloc[0]["tasks_loss"] == row["tasks_loss"]
    # A new evaluation set re-scores the kept adapter without retraining.
    rescored = run_grid(pool, GridSpec(**{**grid.__dict__, "eval_per_task": 1}), settings, cache=tmp_path)
    assert runs == train_mod.TRAINER_RUNS and rescored.cells.iloc[0]["status"] == "scored"


def test_trainer_configs_are_written_beside_an_export_and_merge(demo, tmp_path):
    import json

    import yaml

    from mads_core.validate.trainer_configs import write_trainer_configs

    rows = [5, 0, 17]
    paths = write_trainer_configs(demo, rows, tmp_path / "core_a.jsonl")
    lines = paths["messages"].read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == [demo.ids[i] for i in rows]
    first = json.loads(lines[0])["messages"]
    assert [m["content"] for m in first] == [t[1] for t in demo.turns[5]]
    lf = yaml.safe_load(paths["llamafactory"].read_text(encoding="utf-8"))
    ax = yaml.safe_load(paths["axolotl"].read_text(encoding="utf-8"))
    assert lf["dataset"] == "core_a" and lf["finetuning_type"] == "lora"
    assert ax["datasets"][0]["path"] == "./core_a.messages.jsonl" and ax["datasets"][0]["type"] == "chat_template"
    write_trainer_configs(demo, [1], tmp_path / "core_b.json")
    info = json.loads((tmp_path / "dataset_info.json").read_text(encoding="utf-8"))
    assert set(info) == {"core_a", "core_b"} and info["core_a"]["file_name"] == "core_a.messages.jsonl"


def test_selection_never_sees_the_holdout_and_seeds_only_move_seeded_methods(demo):
    from mads_core.model.fingerprint import Fingerprints
    from mads_core.select.bitops import pack_bits
    from mads_core.validate.grid import GridSpec, holdout_split, plan_cells, restrict_fingerprints

    pool = demo.subset(range(120))
    rng = np.random.default_rng(0)
    fired = rng.random((len(pool), 300)) < 0.05
    planes = pack_bits(fired)[None]
    fp = Fingerprints(planes=planes, n_neurons=300, layers=(0,), layer_offsets=(0, 300), plane_thresholds=(1.0,),
                      firing_counts=fired.sum(0), token_counts=np.full(len(pool), 10),
                      truncated=np.zeros(len(pool), bool), key="synthetic")
    held, rest = holdout_split(pool, 0.1)
    assert len(held) == 12 and not set(held) & set(rest) and len(held) + len(rest) == len(pool)
    assert np.array_equal(held, holdout_split(pool, 0.1)[0])
    sub = restrict_fingerprints(fp, rest)
    assert np.array_equal(sub.firing_counts, fired[rest].sum(0)) and sub.n_samples == len(rest)

    grid = GridSpec(methods=("mads", "random"), budgets=(0.1,), seeds=(0, 1, 2), holdout=0.1)
    cells = plan_cells(pool, grid, fp, rest, None, None, None)
    by = {(c.method, c.seed): set(c.rows.tolist()) for c in cells}
    assert by[("base", None)] == set()
    assert all(rows <= set(rest.tolist()) for rows in by.values())  # nothing held out is ever trained on
    assert by[("full", 0)] == set(rest.tolist())
    assert len(by[("mads", 0)]) == round(0.1 * len(rest))
    assert by[("mads", 0)] == by[("mads", 1)] == by[("mads", 2)]  # deterministic method: one subset
    assert len({frozenset(by[("random", s)]) for s in (0, 1, 2)}) == 3  # random draws with the seed


def test_evaluate_command_rejects_bad_flags_with_exit_code_2(capsys):
    from mads_core.cli import main

    assert main(["evaluate", "--methods", "mads,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["evaluate", "--seeds", "x"]) == 2


def test_grid_spec_refuses_repeats_empty_grids_and_no_items():
    """A repeated method or budget counted one seed twice (n=2, sd 0); 0 items crashed after training."""
    from mads_core.validate.grid import GridSpec

    for bad in ({"methods": ("random", "random")}, {"budgets": (0.05, 0.05)}, {"methods": ()}, {"budgets": ()},
                {"eval_tasks": ("quartz", "quartz")}, {"eval_per_task": 0}, {"eval_per_task": -1},
                {"seeds": (-1, 0)}):
        with pytest.raises(ValueError):
            GridSpec(**bad)


def test_heldout_task_names_must_be_folder_names():
    """'' is the registry root: --eval-tasks ',' scanned every task under one empty name."""
    for bad in ("", "..", "sarcasm/../quartz", " sarcasm"):
        with pytest.raises(ValueError, match="not a task folder name"):
            heldout_task_items(1, [bad])
    with pytest.raises(ValueError, match=">= 1"):
        heldout_task_items(-1, ["sarcasm"])


def test_evaluate_command_refuses_empty_lists_before_any_work(capsys):
    from mads_core.cli import main

    assert main(["evaluate", "--methods", ","]) == 2
    assert "at least one method" in capsys.readouterr().err
    assert main(["evaluate", "--methods", "random", "--eval-tasks", ","]) == 2
    assert "--eval-tasks" in capsys.readouterr().err


def test_paired_csv_of_one_seed_keeps_its_header():
    from mads_core.validate.report import PAIRED_COLUMNS, paired_tables

    cells = pd.DataFrame({"method": ["random", "mads"], "budget": ["5%", "5%"], "seed": [0, 0],
                          "tasks_loss": [1.0, 2.0]})
    t = paired_tables(cells)
    assert t.empty and list(t.columns) == PAIRED_COLUMNS


def test_user_eval_set_overlapping_the_pool_is_refused(demo):
    """--eval-data holding pool samples (which cells can train on) was scored silently."""
    from dataclasses import replace

    from mads_core.validate.grid import GridSpec, evaluation_items

    grid = GridSpec(eval_per_task=1)
    held = np.array([0])
    with pytest.raises(ValueError, match="also in the pool"):
        evaluation_items(demo, grid, held, demo.subset(np.array([5, 6])))
    one = demo.subset(np.array([5]))
    no_answers = replace(one, turns=(tuple(t for t in one.turns[0] if t[0] != "assistant"),))
    with pytest.raises(ValueError, match="no sample has an assistant turn"):
        evaluation_items(demo, grid, held, no_answers)


def test_settings_that_only_failed_at_training_or_scoring_time_are_refused_up_front(capsys):
    """--train-device tpu was a torch traceback; --max-new-tokens 0 failed only after a cell had trained."""
    from mads_core.cli import main
    from mads_core.validate.grid import GridSpec
    from mads_core.validate.train import TrainSettings

    for bad in ({"device": "tpu"}, {"device": "cuda:x"}, {"learning_rate": 0.0}, {"lora_r": 0}, {"lora_alpha": 0}):
        with pytest.raises(ValueError):
            TrainSettings(**bad)
    assert TrainSettings(device="cuda:1").device == "cuda:1"
    with pytest.raises(ValueError, match="max_new_tokens"):
        GridSpec(max_new_tokens=0)
    assert main(["evaluate", "--methods", "random", "--train-device", "tpu"]) == 2
    assert "training device" in capsys.readouterr().err


def test_a_budget_beyond_the_selectable_pool_names_the_holdout(demo):
    """'exceeds ... N = 682' for a 718-sample file read as a wrong count; now it says why."""
    from mads_core.validate.grid import GridSpec, holdout_split, plan_cells

    grid = GridSpec(methods=("random",), budgets=(700,), seeds=(0,), references=False)
    held, rest = holdout_split(demo, grid.holdout)
    with pytest.raises(ValueError, match=f"{len(demo)} samples minus {len(held)} held out"):
        plan_cells(demo, grid, None, rest, None, None, None)
