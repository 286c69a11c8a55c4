"""``python -m mads_core evaluate``: run a validation grid from the command line.

Fingerprints (for MADS) come from the same model and settings flags as ``select``; the target
model that is fine-tuned is ``--target-model`` (default: the same as ``--model``). Writes the
per-cell CSV (``--out``), ``<out>.summary.csv`` (mean ± sd per method × budget × metric),
``<out>.paired.csv`` (paired differences with their plain statements) and ``<out>.json``
(figure data: the cells as records). Progress and ETA go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_evaluate_parser(sub: Any) -> None:
    """Register the ``evaluate`` subcommand on the CLI's subparsers."""
    from mads_core.cli import add_data_args, add_model_args, add_select_args
    from mads_core.validate.grid import GridSpec
    from mads_core.validate.train import TrainSettings

    g0, t0 = GridSpec(), TrainSettings()
    p = sub.add_parser("evaluate", help="fine-tune on each method's subset and score held-out tasks (a grid)")
    add_data_args(p)
    add_model_args(p)
    add_select_args(p)
    g = p.add_argument_group("grid")
    g.add_argument("--methods", default=",".join(g0.methods), help="comma-separated selection methods")
    g.add_argument("--budgets", default=",".join(str(b) for b in g0.budgets), help="fractions or counts")
    g.add_argument("--seeds", default=str(len(g0.seeds)), help="a count (3 -> 0,1,2) or a list '0,1,2'")
    g.add_argument("--holdout", type=float, default=g0.holdout, help="pool share set aside, never selectable")
    g.add_argument("--no-references", action="store_true", help="skip the base-model and whole-pool cells")
    g.add_argument("--eval-tasks", default=None, help="held-out evals task folders (default: the 8 documented)")
    g.add_argument("--eval-per-task", type=int, default=g0.eval_per_task, help="items per held-out task")
    g.add_argument("--eval-data", default=None, help="your own evaluation set (any format the loader reads)")
    g.add_argument("--max-new-tokens", type=int, default=g0.max_new_tokens, help="greedy generation length")
    g.add_argument("--out", default=None, help="per-cell CSV (+ .summary.csv, .paired.csv, .json beside it)")
    t = p.add_argument_group("training (the same for every cell)")
    t.add_argument("--target-model", default=None, help="model to fine-tune (default: --model)")
    t.add_argument("--train-device", default=t0.device, help="auto | cpu | cuda (auto: follows --device)")
    t.add_argument("--train-dtype", default=t0.dtype, help="auto | float32 | bfloat16 (auto: follows --dtype)")
    t.add_argument("--finetune", default=t0.method, choices=["lora", "full"], help="LoRA (peft) or full")
    t.add_argument("--schedule", default=t0.schedule, choices=["steps", "epochs"],
                   help="same optimizer steps for every cell, or same epochs")
    t.add_argument("--steps", type=int, default=t0.steps, help="optimizer steps per cell (--schedule steps)")
    t.add_argument("--epochs", type=float, default=t0.epochs, help="passes over the subset (--schedule epochs)")
    t.add_argument("--train-batch-size", type=int, default=t0.batch_size)
    t.add_argument("--grad-accum", type=int, default=t0.grad_accum)
    t.add_argument("--lr", type=float, default=t0.learning_rate)
    t.add_argument("--lora-r", type=int, default=t0.lora_r)
    t.add_argument("--lora-alpha", type=int, default=t0.lora_alpha)
    t.add_argument("--max-length", type=int, default=t0.max_length, help="tokens per training/eval sample")
    p.set_defaults(func=cmd_evaluate)


def _seeds(text: str) -> tuple[int, ...]:
    from mads_core.cli import UsageError

    try:
        if "," in text:
            return tuple(int(s) for s in text.split(",") if s.strip())
        n = int(text)
    except ValueError:
        raise UsageError(f"--seeds: {text!r} is neither a count nor a comma-separated list") from None
    if n < 1:
        raise UsageError("--seeds must be >= 1")
    return tuple(range(n))


def _follow(own: str, shared: str, allowed: tuple[str, ...]) -> str:
    """A training flag left at 'auto' follows the shared --device/--dtype flag when that one is set."""
    if own == "auto" and shared != "auto" and shared.split(":")[0] in allowed:
        return shared
    return own


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def stderr_progress(event: dict[str, Any]) -> None:
    row = event["row"]
    score = f"tasks_loss {row.get('tasks_loss', float('nan')):.4f}"
    print(f"[{event['done']}/{event['total']}] {event['label']}: {event['status']} in "
          f"{fmt_seconds(row['cell_seconds'])}, {score} | elapsed {fmt_seconds(event['elapsed_s'])}, "
          f"ETA {fmt_seconds(event['eta_s'])}", file=sys.stderr, flush=True)


def write_outputs(result: Any, out: str | Path) -> list[Path]:
    """CSV of cells + summary + paired tables + JSON figure data; returns the paths written."""
    from mads_core.data.export import write_atomic
    from mads_core.validate.report import paired_tables, score_table

    out = Path(out)
    stem = out.with_suffix("")
    paths = [out, Path(f"{stem}.summary.csv"), Path(f"{stem}.paired.csv"), Path(f"{stem}.json")]
    tables = [result.cells, score_table(result.cells), paired_tables(result.cells)]
    for path, table in zip(paths, tables, strict=False):
        write_atomic(path, table.to_csv(index=False, float_format="%.6g", lineterminator="\n").encode("utf-8"))
    data = {"cells": json.loads(result.cells.to_json(orient="records")), "eval_hash": result.eval_hash,
            "holdout_rows": result.holdout_rows.tolist(), "seconds": result.seconds, **result.meta}
    write_atomic(paths[3], json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))
    return paths


def run_from_args(args: argparse.Namespace) -> Any:
    """Build the grid and training settings from the flags, compute fingerprints if needed, run the grid."""
    from mads_core.cli import (
        UsageError,
        compute_fingerprints,
        dataset_from_args,
        model_spec_from_args,
        parse_budget,
        select_config_from_args,
    )
    from mads_core.config import ModelSpec
    from mads_core.pipeline import METHODS, load_data, method_needs
    from mads_core.validate.grid import GridSpec, run_grid
    from mads_core.validate.train import TrainSettings

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    budgets = tuple(parse_budget(b) for b in args.budgets.split(",") if b.strip())
    if not budgets:
        raise UsageError("--budgets: give at least one budget, e.g. 0.05,0.15")
    if not methods:
        raise UsageError("--methods: give at least one method, e.g. mads,random")
    tasks = tuple(t.strip() for t in args.eval_tasks.split(",") if t.strip()) if args.eval_tasks else None
    if args.eval_tasks is not None and not tasks:
        raise UsageError("--eval-tasks: give at least one evals task folder, e.g. sarcasm,quartz")
    grid = GridSpec(methods=methods, budgets=budgets, seeds=_seeds(args.seeds), holdout=args.holdout,
                    references=not args.no_references, eval_tasks=tasks, eval_per_task=args.eval_per_task,
                    max_new_tokens=args.max_new_tokens)
    settings = TrainSettings(method=args.finetune, schedule=args.schedule, steps=args.steps, epochs=args.epochs,
                             batch_size=args.train_batch_size, grad_accum=args.grad_accum, learning_rate=args.lr,
                             lora_r=args.lora_r, lora_alpha=args.lora_alpha, max_length=args.max_length,
                             dtype=_follow(args.train_dtype, args.dtype, ("float32", "bfloat16")),
                             device=_follow(args.train_device, args.device, ("cpu", "cuda")))
    dataset = dataset_from_args(args)
    fp = None
    if any(method_needs(m) == "bits" for m in methods):
        fp, _ = compute_fingerprints(args, dataset)
    spec = model_spec_from_args(args)
    target = ModelSpec(name=args.target_model, trust_remote_code=args.trust_remote_code) if args.target_model \
        else ModelSpec(name=spec.name, trust_remote_code=spec.trust_remote_code, revision=spec.revision)
    user_eval = load_data(args.eval_data) if args.eval_data else None
    n_cells = len(budgets) * len(methods) * len(grid.seeds) + (1 + len(grid.seeds) if grid.references else 0)
    print(f"evaluate: {n_cells} cells on {dataset.name} ({len(dataset)} samples, {grid.holdout * 100:g}% held out); "
          f"{settings.schedule}={settings.steps if settings.schedule == 'steps' else settings.epochs}, "
          f"batch {settings.batch_size}x{settings.grad_accum}, {settings.method}", file=sys.stderr)
    result = run_grid(dataset, grid, settings, target=target, fingerprints=fp,
                      select_config=select_config_from_args(args), user_eval=user_eval,
                      cache=args.cache_dir, progress=stderr_progress)
    return result


def print_tables(result: Any) -> None:
    """The per-metric method × budget tables (mean ± seed sd) on stdout."""
    import pandas as pd

    from mads_core.validate.report import metrics_of, wide_table

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        for metric in metrics_of(result.cells):
            print(f"\n{metric} (mean ± seed sd, n seeds)")
            print(wide_table(result.cells, metric).to_string())


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mads_core.validate.report import headline

    result = run_from_args(args)
    print_tables(result)
    h = headline(result.cells)
    parts = []
    if h["budget"]:
        parts.append(f"mads - random ({h['budget']}, tasks_loss): {h['mads_vs_random']:+.4f}, "
                     f"seed noise sd {h['noise']:.4f}")
    elif len(set(result.cells.get("seed", [])) - {-1}) < 2:
        parts.append("paired comparisons need at least 2 seeds (--seeds 3)")
    if h["full_data"] == h["full_data"]:  # not NaN: the whole-pool reference ran
        parts.append(f"whole pool {h['full_data']:.4f}")
    parts.append(f"{result.trainer_runs} trainer runs, {fmt_seconds(result.seconds)}")
    print("\n" + "; ".join(parts))
    if args.out:
        for path in write_outputs(result, args.out):
            print(f"wrote {path}")
    return 0
