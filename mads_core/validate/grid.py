"""A validation grid: method × budget × seed cells plus two references, cached and resumable.

Each cell fine-tunes the target model on one subset (``mads_core.validate.train``) and scores
it on held-out items (``mads_core.validate.evaluate``). References: ``base`` (the target model
before fine-tuning: one cell, no seed dependence) and ``full`` (fine-tuned on every selectable
pool sample, once per seed).

**Held-out split.** Before any selection, ``holdout`` of the pool (the samples with the
smallest sha256 of their id: deterministic, independent of the method) is set aside. The
fingerprints and embeddings are computed for the whole dataset once (their caches are keyed
on it) and every method selects among the remaining rows only (a sub-``Dataset`` with the
matching fingerprint rows). A budget fraction is a fraction of the selectable rows.

**Cache.** Two content-addressed levels under ``<cache root>/validate`` (``mads_core.model.store``:
temp folder + atomic rename, checksummed arrays):
``train/<train key>`` holds the LoRA adapter of one training run, keyed by (sorted subset ids
hash, target model identity, training settings, seed); ``scores/<train key>-<eval hash>`` holds
the per-item scores on one evaluation set. An interrupted grid resumes with the missing
cells; a new evaluation set re-scores the kept adapters without retraining.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mads_core.config import ModelSpec, SelectConfig, canonical_json, sha256_text
from mads_core.data.loader import Dataset
from mads_core.model.store import artifact_dir, commit_folder, load_arrays, new_tmp_folder, read_meta
from mads_core.validate import train as train_mod
from mads_core.validate.evaluate import ItemScores, score_items, summarize
from mads_core.validate.tasks import (
    EvalItem,
    assert_disjoint,
    assert_user_disjoint,
    dataset_items,
    heldout_task_items,
    items_hash,
)
from mads_core.validate.train import TrainSettings

REFERENCES = ("base", "full")
SEEDED_METHODS = frozenset({"random", "kmeans-embed"})
GENERATE_SETS = ("tasks", "user")  # sets whose short answers get greedy-generation accuracy
ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class GridSpec:
    """What a grid runs.

    methods: selection methods (``mads_core.pipeline.METHODS``). budgets: fractions of the
    selectable pool or counts. seeds: training seeds (≥ 3 recommended); seeded selection
    methods (random, k-means) also draw their subset with the cell's seed.
    holdout: fraction of the pool set aside, never selectable, scored by loss.
    references: add the ``base`` and ``full`` cells. eval_tasks / eval_per_task: held-out evals
    tasks (default ``HELDOUT_TASKS``) and items per task. max_new_tokens: greedy generation length.
    eval_batch_size: items per scoring forward pass.
    """

    methods: tuple[str, ...] = ("mads", "random", "kcenter-embed")
    budgets: tuple[float | int, ...] = (0.05, 0.15)
    seeds: tuple[int, ...] = (0, 1, 2)
    holdout: float = 0.05
    references: bool = True
    eval_tasks: tuple[str, ...] | None = None
    eval_per_task: int = 3
    max_new_tokens: int = 8
    eval_batch_size: int = 16

    def __post_init__(self) -> None:
        if not self.methods or not self.budgets:
            raise ValueError("give at least one method and one budget")
        for name, values in (("methods", self.methods), ("budgets", self.budgets),
                             ("eval_tasks", self.eval_tasks or ())):
            if len(set(values)) != len(values):  # a repeat would count one seed twice (n, sd, paired tests)
                raise ValueError(f"{name} repeat: {tuple(values)}")
        if self.eval_per_task < 1:
            raise ValueError(f"eval_per_task must be >= 1, got {self.eval_per_task}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 < self.holdout < 0.5:
            raise ValueError(f"holdout must be in (0, 0.5), got {self.holdout}")
        if not self.seeds:
            raise ValueError("give at least one seed")
        if any(not 0 <= s < 2**32 for s in self.seeds):
            raise ValueError(f"seeds must be in 0 .. 2**32-1, got {self.seeds}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds repeat: {self.seeds}")


@dataclass
class GridResult:
    """Cells (one row per cell: method, budget, k, seed, scores, timing, cached) and the split used."""

    cells: pd.DataFrame
    holdout_rows: np.ndarray
    selectable_rows: np.ndarray
    eval_hash: str
    trainer_runs: int
    seconds: float
    meta: dict[str, Any] = field(default_factory=dict)


def budget_label(budget: float | int) -> str:
    return f"{budget:.0%}" if isinstance(budget, float) else str(budget)


def holdout_split(dataset: Dataset, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(held-out rows, selectable rows), both sorted; held out = the ``round(fraction·N)`` smallest sha256(id)."""
    n = len(dataset)
    k = max(1, round(fraction * n))
    order = sorted(range(n), key=lambda i: hashlib.sha256(dataset.ids[i].encode("utf-8")).hexdigest())
    held = np.array(sorted(order[:k]), dtype=np.int64)
    rest = np.setdiff1d(np.arange(n, dtype=np.int64), held)
    return held, rest


def restrict_fingerprints(fp: Any, rows: np.ndarray) -> Any:
    """The same fingerprints for ``rows`` only (planes, token counts, truncation flags, firing counts)."""
    planes = np.ascontiguousarray(np.asarray(fp.planes)[:, rows])
    bits = planes[0]
    unpacked = np.unpackbits(bits.view(np.uint8), axis=1, bitorder="little")[:, : fp.n_neurons]
    counts = unpacked.sum(axis=0, dtype=np.int64)
    return replace(fp, planes=planes, token_counts=np.asarray(fp.token_counts)[rows],
                   truncated=np.asarray(fp.truncated)[rows], firing_counts=counts, path=None, cache_hit=False)


def evaluation_items(dataset: Dataset, grid: GridSpec, holdout_rows: np.ndarray,
                     user_eval: Dataset | None = None) -> list[EvalItem]:
    """Held-out task items (disjoint from the pool: asserted) + the pool's held-out split + the user's set."""
    tasks = heldout_task_items(grid.eval_per_task, grid.eval_tasks)
    assert_disjoint(tasks, dataset)
    items = [*tasks, *dataset_items(dataset, "pool", holdout_rows)]
    if user_eval is not None:
        assert_user_disjoint(user_eval, dataset)
        user_items = dataset_items(user_eval, "user")
        if not user_items:
            raise ValueError(f"--eval-data {user_eval.name!r}: no sample has an assistant turn to score")
        items += user_items
    return items


def train_key(subset_ids: Sequence[str], model_hash: str, settings: TrainSettings, seed: int) -> str:
    """Cache key of one training run (subset as a set: its order is not a seed effect)."""
    ids_hash = sha256_text(canonical_json(sorted(subset_ids)))
    return sha256_text(canonical_json(["mads-train-v1", ids_hash, model_hash, settings.cache_hash(), seed]))[:20]


def base_key(model_hash: str, settings: TrainSettings) -> str:
    return sha256_text(canonical_json(["mads-base-v1", model_hash, settings.max_length]))[:20]


@dataclass(frozen=True)
class CellPlan:
    method: str
    budget: float | int | None
    seed: int | None
    rows: np.ndarray  # dataset rows to train on (empty for base)

    @property
    def label(self) -> str:
        b = "" if self.budget is None else f" {budget_label(self.budget)}"
        s = "" if self.seed is None else f" seed {self.seed}"
        return f"{self.method}{b}{s}"


def plan_cells(dataset: Dataset, grid: GridSpec, fingerprints: Any, selectable: np.ndarray,
               select_config: SelectConfig | None, cache: str | Path | None,
               embeddings: np.ndarray | None) -> list[CellPlan]:
    """Every cell's training rows: selections among the selectable rows, then the references."""
    from mads_core.pipeline import method_needs, run_method
    from mads_core.select.greedy import resolve_budget

    for budget in grid.budgets:  # before any embedding: a bad budget fails at once
        try:
            resolve_budget(budget, len(selectable))
        except ValueError as exc:  # name the held-out rows: N here is not the dataset's size
            raise ValueError(f"{exc} (the selectable pool: {len(dataset)} samples minus "
                             f"{len(dataset) - len(selectable)} held out by --holdout)") from None
    sub = dataset.subset(selectable)
    sub_fp = None
    if fingerprints is not None and any(method_needs(m) == "bits" for m in grid.methods):
        sub_fp = restrict_fingerprints(fingerprints, selectable)
    needs_emb = any(method_needs(m) == "embeddings" for m in grid.methods)
    if needs_emb and embeddings is None:
        from mads_core.pipeline import dataset_embeddings_cached

        embeddings = dataset_embeddings_cached(dataset, cache)
    sub_emb = None if embeddings is None else np.asarray(embeddings)[selectable]
    fixed: dict[tuple[str, float | int], np.ndarray] = {}

    def rows_of(method: str, budget: float | int, seed: int) -> np.ndarray:
        if method not in SEEDED_METHODS and (method, budget) in fixed:
            return fixed[(method, budget)]
        sel = run_method(method, sub, sub_fp, budget, select_config=select_config, cache=cache,
                         embeddings=sub_emb, seed=seed)
        picked = selectable[np.asarray(sel.prefix(budget), dtype=np.int64)]
        fixed[(method, budget)] = picked
        return picked

    # Seed-major order: a grid stopped part-way holds whole replicates (every method at every
    # budget for the first seeds), which the paired comparison needs.
    cells = [CellPlan("base", None, None, np.zeros(0, dtype=np.int64))] if grid.references else []
    for seed in grid.seeds:
        for budget in grid.budgets:
            for method in grid.methods:
                cells.append(CellPlan(method, budget, seed, rows_of(method, budget, seed)))
        if grid.references:
            cells.append(CellPlan("full", None, seed, selectable))
    return cells


def _score(model: Any, tokenizer: Any, items: Sequence[EvalItem], grid: GridSpec, max_length: int) -> ItemScores:
    parts: list[ItemScores] = []
    order: list[int] = []
    for set_name in dict.fromkeys(i.set_name for i in items):
        rows = [j for j, i in enumerate(items) if i.set_name == set_name]
        parts.append(score_items(model, tokenizer, [items[j] for j in rows], batch_size=grid.eval_batch_size,
                                 max_length=max_length, generate=set_name in GENERATE_SETS,
                                 max_new_tokens=grid.max_new_tokens))
        order += rows
    inv = np.argsort(np.array(order))
    return ItemScores(np.concatenate([p.loss for p in parts])[inv],
                      np.concatenate([p.n_tokens for p in parts])[inv],
                      np.concatenate([p.correct for p in parts])[inv],
                      tuple(np.array([o for p in parts for o in p.outputs], dtype=object)[inv]))


def _save_scores(folder: Path, scores: ItemScores, meta: dict[str, Any]) -> None:
    tmp = new_tmp_folder(folder)
    for name, arr in (("loss", scores.loss), ("n_tokens", scores.n_tokens), ("correct", scores.correct)):
        with open(tmp / f"{name}.npy", "wb") as fh:
            np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
    (tmp / "outputs.json").write_text(json.dumps(list(scores.outputs), ensure_ascii=False), encoding="utf-8")
    commit_folder(tmp, folder, meta)


def _load_scores(folder: Path) -> dict[str, Any] | None:
    loaded = load_arrays(folder, mmap=False)
    if loaded is None:
        return None
    return loaded[1]


def run_grid(dataset: Dataset, grid: GridSpec, settings: TrainSettings, *, target: ModelSpec | None = None,
             fingerprints: Any = None, embeddings: np.ndarray | None = None,
             select_config: SelectConfig | None = None, user_eval: Dataset | None = None,
             cache: str | Path | None = None, progress: ProgressFn | None = None,
             cached_only: bool = False) -> GridResult:
    """Run (or read from the cache) every cell of ``grid``; returns one row per cell.

    ``fingerprints`` (of the whole ``dataset``) are needed when a method reads them (MADS);
    ``embeddings`` are computed (cached) when a method needs them and none are given.
    ``progress(event)`` gets dicts with done, total, label, status ('cached' / 'trained' /
    'scored'), elapsed_s and eta_s (mean seconds of computed cells × cells left).
    ``cached_only``: read the cells already in the cache, train and score nothing (the app's
    first view); missing cells are left out of ``cells`` and counted in ``meta['missing']``.
    """
    from mads_core.model.models import model_identity

    start = time.perf_counter()
    target = target or ModelSpec()
    model_hash = model_identity(target)["hash"]
    held, selectable = holdout_split(dataset, grid.holdout)
    items = evaluation_items(dataset, grid, held, user_eval)
    eval_hash = items_hash(items)
    plans = plan_cells(dataset, grid, fingerprints, selectable, select_config, cache, embeddings)
    runs_before = train_mod.TRAINER_RUNS
    rows: list[dict[str, Any]] = []
    computed_seconds: list[float] = []
    missing = 0
    for done, plan in enumerate(plans):
        cell_start = time.perf_counter()
        ids = [dataset.ids[i] for i in plan.rows]
        key = base_key(model_hash, settings) if plan.method == "base" else train_key(ids, model_hash, settings,
                                                                                      plan.seed)
        train_dir = artifact_dir("validate/train", key, cache)
        score_dir = artifact_dir("validate/scores", f"{key}-{eval_hash}", cache)
        score_meta = _load_scores(score_dir)
        status = "cached"
        if score_meta is None and cached_only:
            missing += 1
            continue
        if score_meta is None:
            train_meta = None if plan.method == "base" else read_meta(train_dir)
            if plan.method == "base":
                model, tokenizer = train_mod.load_trained(target, settings, None)
                train_info: dict[str, Any] = {}
                status = "scored"
            elif train_meta is not None and (train_dir / train_mod.ADAPTER_DIR).is_dir():
                model, tokenizer = train_mod.load_trained(target, settings, train_dir)
                train_info = train_meta.get("train", {})
                status = "scored"
            else:
                tmp = new_tmp_folder(train_dir)
                turns = [dataset.turns[i] for i in plan.rows]
                try:
                    model, tokenizer, result = train_mod.train_subset(target, turns, settings, plan.seed,
                                                                      out_dir=tmp)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                train_info = {"steps": result.steps, "samples_seen": result.samples_seen,
                              "first_loss": result.first_loss, "last_loss": result.last_loss,
                              "train_seconds": result.seconds, "dropped": result.dropped}
                commit_folder(tmp, train_dir, {"kind": "validate-train", "key": key, "method": plan.method,
                                               "seed": plan.seed, "n": len(ids), "ids": ids,
                                               "settings": settings.to_dict(), "model_hash": model_hash,
                                               "train": train_info})
                status = "trained"
            scores = _score(model, tokenizer, items, grid, settings.max_length)
            score_meta = {"kind": "validate-scores", "key": key, "eval_hash": eval_hash,
                          "summary": summarize(items, scores), "train": train_info}
            _save_scores(score_dir, scores, score_meta)
            del model
            computed_seconds.append(time.perf_counter() - cell_start)
        row = {"method": plan.method, "budget": "—" if plan.budget is None else budget_label(plan.budget),
               "k": len(plan.rows), "seed": -1 if plan.seed is None else plan.seed, "status": status,
               "key": key, **score_meta["summary"],
               **{k: v for k, v in score_meta.get("train", {}).items() if k in ("first_loss", "last_loss",
                                                                               "train_seconds", "samples_seen")},
               "cell_seconds": time.perf_counter() - cell_start}
        rows.append(row)
        if progress is not None:
            left = len(plans) - done - 1
            per = float(np.mean(computed_seconds)) if computed_seconds else 0.0
            progress({"done": done + 1, "total": len(plans), "label": plan.label, "status": status,
                      "elapsed_s": time.perf_counter() - start, "eta_s": per * left, "row": row})
    cells = pd.DataFrame(rows)
    return GridResult(cells, held, selectable, eval_hash, train_mod.TRAINER_RUNS - runs_before,
                      time.perf_counter() - start,
                      {"n_items": len(items), "sets": sorted({i.set_name for i in items}),
                       "settings": settings.to_dict(), "model_hash": model_hash, "missing": missing,
                       "n_planned": len(plans)})
