"""Command line: ``python -m mads_core <command> ...`` (also installed as ``mads``).

The CLI and the app call the same ``mads_core`` functions, so the same data,
model and settings give byte-identical results in both. Bad input exits with
code 2 and a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mads_core.config import FingerprintConfig, ModelSpec
from mads_core.data.loader import DataError, Dataset

EXIT_BAD_INPUT = 2


class UsageError(ValueError):
    """Bad command-line input (reported in one line, exit code 2)."""


# ---------------------------------------------------------------- parsing helpers


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    """'all' / None -> all layers; '0,5,10' and ranges '0-9,20' -> tuple of ints."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    layers: list[int] = []
    for part in text.split(","):
        part = part.strip()
        span = re.fullmatch(r"(\d+)-(\d+)", part)
        try:
            if span:
                layers.extend(range(int(span.group(1)), int(span.group(2)) + 1))
            else:
                layers.append(int(part))
        except ValueError:
            raise UsageError(f"--layers: cannot read {part!r} (use e.g. 'all', '0,5,10' or '0-9')") from None
    return tuple(layers)


def parse_floats(text: str | None, name: str) -> tuple[float, ...]:
    if text is None or text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"{name}: cannot read {text!r} as comma-separated numbers") from None


def add_data_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--data", default="demo", help="'demo', 'demo:<preset>' or a file (JSON/JSONL/CSV/Parquet)")
    g.add_argument("--format", default="auto", help="auto | alpaca | chat | table")
    g.add_argument("--text-column", default=None, help="text column for CSV/Parquet")
    g.add_argument("--response-column", default=None, help="optional response column for CSV/Parquet")
    g.add_argument("--category-column", default=None, help="optional category column")
    g.add_argument("--on-error", default="raise", choices=["raise", "skip"], help="bad records: stop or skip+report")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    defaults = FingerprintConfig()
    g = parser.add_argument_group("model and fingerprint settings")
    g.add_argument("--model", default="bundled", help="'bundled', a local model folder, or a hub id")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda")
    g.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    g.add_argument("--trust-remote-code", action="store_true", help="allow code from the model repo (off)")
    g.add_argument("--layers", default="all", help="'all', '0,5,10' or '0-9' (default: all)")
    g.add_argument("--rule", default=defaults.rule, choices=["threshold", "topk"])
    g.add_argument("--threshold", type=float, default=defaults.threshold, help=f"tau (default {defaults.threshold})")
    g.add_argument(
        "--levels",
        default=",".join(str(x) for x in defaults.levels),
        help="extra thresholds for finer activation states, comma-separated, or 'none'",
    )
    g.add_argument("--top-k", type=int, default=defaults.top_k, help="neurons per token for --rule topk")
    g.add_argument("--pooling", default=defaults.pooling, choices=["max", "mean"])
    g.add_argument("--template", default=defaults.template, choices=["chat", "plain"])
    g.add_argument("--max-tokens", type=int, default=defaults.max_tokens)
    g.add_argument("--batch-size", type=int, default=defaults.batch_size)
    g.add_argument("--count-template-tokens", action="store_true", help="pool template/system tokens too (off)")
    g.add_argument("--cache-dir", default=None, help="cache root (default: $MADS_CACHE_DIR or user cache dir)")
    g.add_argument("--chunk-size", type=int, default=256, help="samples per resumable cache chunk")


def dataset_from_args(args: argparse.Namespace) -> Dataset:
    from mads_core.pipeline import load_data

    return load_data(
        args.data,
        fmt=args.format,
        text_column=args.text_column,
        response_column=args.response_column,
        category_column=args.category_column,
        on_error=args.on_error,
    )


def parse_budget(text: str) -> int | float:
    """'0.15' -> fraction, '120' -> count (validated later against N by resolve_budget)."""
    try:
        return int(text) if re.fullmatch(r"[+-]?\d+", text.strip()) else float(text)
    except ValueError:
        raise UsageError(f"budget {text!r} is neither a count nor a fraction") from None


def add_select_args(parser: argparse.ArgumentParser) -> None:
    from mads_core.config import SelectConfig

    d = SelectConfig()
    g = parser.add_argument_group("MADS selection settings (see SelectConfig)")
    g.add_argument("--continuation", default=d.continuation, choices=["rounds", "mcover", "states", "none"])
    g.add_argument("--m", type=int, default=d.m, help="multiplicity for --continuation mcover")
    g.add_argument("--weighting", default=d.weighting, choices=["uniform", "idf"])
    g.add_argument("--max-neuron-share", type=float, default=d.max_neuron_share)
    g.add_argument("--min-support", type=int, default=d.min_support)
    g.add_argument("--seed", type=int, default=0, help="seed for random / k-means baselines")


def select_config_from_args(args: argparse.Namespace):
    from mads_core.config import SelectConfig

    return SelectConfig(
        continuation=args.continuation,
        m=args.m,
        weighting=args.weighting,
        max_neuron_share=args.max_neuron_share,
        min_support=args.min_support,
    )


def model_record(fp: Any) -> dict[str, Any]:
    """What the manifest records about the model side of a selection."""
    return {**fp.meta.get("model", {}), "fingerprint_key": fp.key, "fingerprint_settings": fp.meta.get("settings")}


def model_spec_from_args(args: argparse.Namespace) -> ModelSpec:
    return ModelSpec(name=args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code)


def fingerprint_config_from_args(args: argparse.Namespace) -> FingerprintConfig:
    return FingerprintConfig(
        layers=parse_layers(args.layers),
        rule=args.rule,
        threshold=args.threshold,
        levels=parse_floats(args.levels, "--levels") if args.rule == "threshold" else (),
        top_k=args.top_k,
        pooling=args.pooling,
        template=args.template,
        count_template_tokens=args.count_template_tokens,
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
    )


def tqdm_progress(desc: str) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A (progress, close) pair driving a tqdm bar on stderr."""
    from tqdm import tqdm

    state: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, desc=desc, unit="sample", file=sys.stderr, dynamic_ncols=True)
        bar.update(done - bar.n)

    def close() -> None:
        if state.get("bar") is not None:
            state["bar"].close()

    return progress, close


def compute_fingerprints(args: argparse.Namespace, dataset: Dataset, quiet: bool = False):
    """Fingerprints for the CLI's settings (cache first), with a progress bar."""
    from mads_core.model.fingerprint import RunStats, fingerprint_dataset

    stats = RunStats()
    progress, close = tqdm_progress("fingerprinting") if not quiet else (None, lambda: None)
    common = {
        "cache": args.cache_dir,
        "progress": progress,
        "chunk_size": args.chunk_size,
        "stats": stats,
        "batch_tokens": getattr(args, "batch_tokens", 0),
    }
    spec, config = model_spec_from_args(args), fingerprint_config_from_args(args)
    try:
        if getattr(args, "engine", "local") == "ray":
            from mads_core.distributed import fingerprint_dataset_ray

            fp = fingerprint_dataset_ray(
                dataset,
                spec,
                config,
                address=args.ray_address,
                workers=args.workers,
                num_gpus_per_worker=args.num_gpus_per_worker,
                **common,
            )
        else:
            fp = fingerprint_dataset(dataset, spec, config, **common)
    finally:
        close()
    return fp, stats


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """Where the forward passes run (none of these change results, only speed)."""
    g = parser.add_argument_group("engine (results are identical; see README 'Scaling out')")
    g.add_argument("--engine", default="local", choices=["local", "ray"], help="local process or Ray actors")
    g.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local instance)")
    g.add_argument("--workers", type=int, default=None, help="model replicas (default: GPUs / G, else CPUs)")
    g.add_argument("--num-gpus-per-worker", type=float, default=0.0, help="GPUs per replica G (0 = CPU)")
    g.add_argument("--batch-tokens", type=int, default=0, help="padded tokens per batch (0 = use --batch-size)")


# ---------------------------------------------------------------- commands


def cmd_fingerprint(args: argparse.Namespace) -> int:
    if args.batch_tokens < 0 or (args.workers is not None and args.workers < 1) or args.num_gpus_per_worker < 0:
        raise UsageError("--batch-tokens must be >= 0, --workers >= 1, --num-gpus-per-worker >= 0")
    if args.engine == "local" and (args.ray_address or args.workers or args.num_gpus_per_worker):
        raise UsageError("--ray-address / --workers / --num-gpus-per-worker need --engine ray")
    dataset = dataset_from_args(args)
    if dataset.report.skipped or dataset.report.duplicates:
        print(dataset.report.summary(), file=sys.stderr)
    fp, stats = compute_fingerprints(args, dataset, quiet=args.json)
    summary = fp.summary()
    report = {
        "dataset": dataset.name,
        "engine": args.engine,
        "N": fp.n_samples,
        "D": fp.n_neurons,
        "layers": len(fp.layers),
        "cache_hit": fp.cache_hit,
        "cache_path": fp.path,
        "chunks_cached": stats.chunks_cached,
        "chunks_computed": stats.chunks_computed,
        "samples_computed": stats.samples_computed,
        **summary,
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return 0
    print(f"N={fp.n_samples} samples  D={fp.n_neurons} neurons ({len(fp.layers)} layers)")
    print(
        "firing per sample: mean {:.2%}  p10 {:.2%}  p50 {:.2%}  p90 {:.2%}; neurons ever firing {:.1%}".format(
            summary["fired_per_sample_mean"],
            summary["fired_per_sample_p10"],
            summary["fired_per_sample_p50"],
            summary["fired_per_sample_p90"],
            summary["neurons_ever_firing"],
        )
    )
    if summary["n_truncated"]:
        print(f"truncated at the token window: {summary['n_truncated']} samples")
    if fp.cache_hit:
        print(f"cache: hit (no forward pass)  {fp.path}")
    else:
        print(
            f"cache: miss, computed {stats.chunks_computed} chunk(s), reused {stats.chunks_cached}"
            f" of {stats.chunks_total}  {fp.path}"
        )
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from mads_core.data.export import export_selection
    from mads_core.pipeline import method_needs, run_method
    from mads_core.select.greedy import resolve_budget

    dataset = dataset_from_args(args)
    budget = parse_budget(args.budget)
    resolve_budget(budget, len(dataset))  # fail fast, before any model work
    select_config = select_config_from_args(args)
    fp = None
    if method_needs(args.method) == "bits":
        fp, _ = compute_fingerprints(args, dataset)
    selection = run_method(
        args.method, dataset, fp, budget, select_config=select_config, cache=args.cache_dir, seed=args.seed
    )
    result = export_selection(dataset, selection, budget, args.out, model=model_record(fp) if fp else None)
    print(f"{args.method}: {result.k} of {len(dataset)} samples -> {result.data_path}")
    print(f"manifest -> {result.manifest_path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mads_core.analysis.metrics import metrics_table
    from mads_core.pipeline import METHODS, dataset_embeddings_cached, run_method
    from mads_core.select.greedy import resolve_budget

    dataset = dataset_from_args(args)
    budgets = [parse_budget(b) for b in args.budgets.split(",") if b.strip()]
    if not budgets:
        raise UsageError("--budgets: give at least one budget, e.g. 0.05,0.1,0.15")
    ks = [resolve_budget(b, len(dataset)) for b in budgets]
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise UsageError(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    fp, _ = compute_fingerprints(args, dataset)
    progress, close = tqdm_progress("embedding")
    try:
        emb = dataset_embeddings_cached(dataset, args.cache_dir, progress=progress)
    finally:
        close()
    top = max(ks)
    select_config = select_config_from_args(args)
    selections = {
        m: run_method(
            m, dataset, fp, top, select_config=select_config, cache=args.cache_dir, embeddings=emb, seed=args.seed
        )
        for m in methods
    }
    table = metrics_table(
        selections,
        budgets,
        bits=fp.bits,
        n_neurons=fp.n_neurons,
        emb=emb,
        categories=dataset.categories,
        lengths=fp.token_counts,
    )
    text = table.to_csv(index=False, float_format="%.6g", lineterminator="\n")
    if args.out:
        from mads_core.data.export import write_atomic

        write_atomic(args.out, text.encode("utf-8"))
        print(f"report -> {args.out}")
    show = [c for c in ("method", "budget", "k", "coverage", "mean_nn_distance", "radius") if c in table]
    show += [c for c in ("category_coverage", "category_entropy", "len_mean") if c in table]
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table[show].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mads_core", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fp = sub.add_parser("fingerprint", help="compute (or load cached) activation fingerprints")
    add_data_args(fp)
    add_model_args(fp)
    add_engine_args(fp)
    fp.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    fp.set_defaults(func=cmd_fingerprint)

    from mads_core.pipeline import METHODS

    sel = sub.add_parser("select", help="rank with one method and export the subset + manifest")
    add_data_args(sel)
    add_model_args(sel)
    add_select_args(sel)
    sel.add_argument("--method", default="mads", choices=list(METHODS))
    sel.add_argument("--budget", default="0.15", help="fraction in (0, 1] or a count in [1, N]")
    sel.add_argument("--out", required=True, help="output file (.json, .jsonl, .csv, .parquet)")
    sel.set_defaults(func=cmd_select)

    cmp_ = sub.add_parser("compare", help="metrics of every method at several budgets")
    add_data_args(cmp_)
    add_model_args(cmp_)
    add_select_args(cmp_)
    cmp_.add_argument("--budgets", default="0.05,0.1,0.15", help="comma-separated fractions or counts")
    cmp_.add_argument("--methods", default=None, help=f"comma-separated subset of: {', '.join(METHODS)}")
    cmp_.add_argument("--out", default=None, help="write the metrics table as CSV")
    cmp_.set_defaults(func=cmd_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mads_core.model.fingerprint import FingerprintError
    from mads_core.model.models import ModelError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DataError, ModelError, FingerprintError, UsageError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: finished chunks are kept in the cache; run again to resume", file=sys.stderr)
        return 130
