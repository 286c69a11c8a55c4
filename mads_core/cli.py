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
    """'all' / None -> all layers; '0,5,10', ranges '0-9,20', negatives '-1', '-4--1' -> tuple of ints.

    Negative indices are resolved against the model later (``FingerprintConfig.with_layers``).
    """
    from mads_core.config import parse_layer_spec

    try:
        return parse_layer_spec(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def parse_floats(text: str | None, name: str) -> tuple[float, ...]:
    if text is None or text.strip().lower() in ("", "none"):
        return ()
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"{name}: cannot read {text!r} as comma-separated numbers") from None


def add_data_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    from mads_core.data.formats import FORMAT_NAMES

    g.add_argument("--data", default="demo", help="'demo', 'demo:<preset>', a file (JSON/JSONL/CSV/TSV/Parquet) "
                   "or a Hugging Face datasets folder")
    g.add_argument("--format", default="auto", choices=["auto", *FORMAT_NAMES],
                   help="record format (default: detected; README 'Data formats')")
    g.add_argument("--text-column", default=None, help="text column of table records (any container)")
    g.add_argument("--response-column", default=None, help="optional response column of table records")
    g.add_argument("--category-column", default=None, help="field used as the category, any format")
    g.add_argument("--id-field", default=None, help="field holding sample ids, any format ('none': ignore ids)")
    g.add_argument("--dedupe", default="records", choices=["records", "text", "none"],
                   help="drop identical records (default), also samples with the same model text, or nothing")
    g.add_argument("--on-error", default="raise", choices=["raise", "skip"], help="bad records: stop or skip+report")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    defaults = FingerprintConfig()
    g = parser.add_argument_group("model and fingerprint settings")
    g.add_argument("--model", default="bundled", help="'bundled', a local model folder, or a hub id")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda")
    g.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    g.add_argument("--trust-remote-code", action="store_true", help="allow code from the model repo (off)")
    g.add_argument(
        "--layers", default="all", help="'all', '0,5,10', '0-9', '-1' (last) or '--layers=-4--1' (default: all)"
    )
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
    g.add_argument("--max-tokens", type=int, default=defaults.max_tokens,
                   help=f"token window per sample (default {defaults.max_tokens}; README 'Token window')")
    g.add_argument("--truncation", default=defaults.truncation, choices=["context_first", "tail"],
                   help="what a long sample loses: context, then the prompt's middle, then the response (default), "
                   "or the sequence's end")
    g.add_argument("--response-share", type=float, default=defaults.response_share,
                   help=f"share of the window kept for the response (default {defaults.response_share})")
    g.add_argument("--batch-size", type=int, default=defaults.batch_size)
    g.add_argument("--count-template-tokens", action="store_true", help="pool template/system tokens too (off)")
    g.add_argument(
        "--site",
        default=defaults.site,
        choices=["gate", "product"],
        help="gated MLPs: read act_fn(gate) ('gate', default) or act_fn(gate)*up, the input of down_proj",
    )
    g.add_argument(
        "--moe-granularity",
        default=defaults.moe_granularity,
        choices=["unit", "expert"],
        help="mixture-of-experts layers: one neuron per (expert, unit) (default) or per expert",
    )
    g.add_argument("--router-bits", action="store_true", help="MoE: add one bit per expert the router picked (off)")
    g.add_argument("--cache-dir", default=None, help="cache root (default: $MADS_CACHE_DIR or user cache dir)")
    g.add_argument("--chunk-size", type=int, default=256, help="samples per resumable cache chunk")


def dataset_from_args(args: argparse.Namespace) -> Dataset:
    from mads_core.pipeline import load_data

    dataset = load_data(
        args.data,
        fmt=args.format,
        text_column=args.text_column,
        response_column=args.response_column,
        category_column=args.category_column,
        on_error=args.on_error,
        id_field=getattr(args, "id_field", None),
        dedupe=getattr(args, "dedupe", "records"),
    )
    dataset = with_window_report(args, dataset)
    print(dataset.report.summary(), file=sys.stderr)
    return dataset


def with_window_report(args: argparse.Namespace, dataset: Dataset) -> Dataset:
    """The dataset with its load report's token-window fields filled (truncated, response cut, no own token).

    Needs only the model's tokenizer; when it cannot be loaded the report stays as loading left it.
    """
    if not hasattr(args, "max_tokens"):
        return dataset
    from mads_core.model.encode import window_report

    try:
        from transformers import AutoTokenizer

        from mads_core.model.models import model_source

        spec = model_spec_from_args(args)
        tokenizer = AutoTokenizer.from_pretrained(model_source(spec), trust_remote_code=spec.trust_remote_code,
                                                  local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - the model run reports model problems itself
        print(f"note: token-window report skipped (tokenizer not loaded: {str(exc)[:200]})", file=sys.stderr)
        return dataset
    return dataset.with_report(window_report(dataset, tokenizer, fingerprint_config_from_args(args)))


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
    add_peer_args(parser)


def add_peer_args(parser: argparse.ArgumentParser) -> None:
    """Settings of the peer methods (``PeerConfig``; README "Methods")."""
    from mads_core.config import PeerConfig

    d = PeerConfig()
    g = parser.add_argument_group("peer method settings (see PeerConfig)")
    g.add_argument("--ifd-top", type=float, default=d.ifd_top,
                   help=f"superfilter: share of samples kept by IFD before facility location (default {d.ifd_top})")
    g.add_argument("--n-neighbors", type=int, default=d.n_neighbors,
                   help=f"facility location: neighbours per sample in the sparse similarity (default {d.n_neighbors})")
    g.add_argument("--deita-score", default=d.deita_score,
                   help="deita: score to sort by: ifd | length | column:<field> (default ifd)")
    g.add_argument("--score-column", default=None,
                   help="deita: sort by this numeric field of the records (same as --deita-score column:<field>)")
    g.add_argument("--deita-threshold", type=float, default=d.deita_threshold,
                   help=f"deita: max cosine similarity to every kept sample (default {d.deita_threshold})")
    g.add_argument("--lenctl-alpha", type=float, default=d.lenctl_alpha,
                   help=f"mads-lenctl: gains divided by own_tokens**alpha (default {d.lenctl_alpha})")
    g.add_argument("--nait-directions", type=int, default=d.nait_directions,
                   help=f"nait: principal directions of the target set (default {d.nait_directions})")
    g.add_argument("--target", default=None,
                   help="target-mads / nait: a file of examples of the capability you care about (any format)")


def peer_config_from_args(args: argparse.Namespace):
    from mads_core.config import PeerConfig

    score = f"column:{args.score_column}" if getattr(args, "score_column", None) else args.deita_score
    return PeerConfig(ifd_top=args.ifd_top, n_neighbors=args.n_neighbors, deita_score=score,
                      deita_threshold=args.deita_threshold, lenctl_alpha=args.lenctl_alpha,
                      nait_directions=args.nait_directions)


def target_fingerprints(args: argparse.Namespace):
    """Fingerprints of the ``--target`` file with the pool's model and settings (cached), or None."""
    if not getattr(args, "target", None):
        return None
    from mads_core.pipeline import load_data

    target = load_data(args.target)
    fp, _ = compute_fingerprints(args, target)
    return fp




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
        truncation=getattr(args, "truncation", "context_first"),
        response_share=getattr(args, "response_share", 0.5),
        site=getattr(args, "site", "gate"),
        moe_granularity=getattr(args, "moe_granularity", "unit"),
        router_bits=getattr(args, "router_bits", False),
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
    dataset = dataset_from_args(args)  # prints the load report
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
    from mads_core.pipeline import method_requirements, run_method
    from mads_core.select.greedy import resolve_budget

    dataset = dataset_from_args(args)
    budget = parse_budget(args.budget)
    resolve_budget(budget, len(dataset))  # fail fast, before any model work
    select_config = select_config_from_args(args)
    peer_config = peer_config_from_args(args)
    needs = method_requirements(args.method, peer_config)
    if "target" in needs and not args.target:
        raise UsageError(f"--method {args.method} needs --target FILE (examples of the capability you care about)")
    fp = None
    if "bits" in needs:
        fp, _ = compute_fingerprints(args, dataset)
    progress, close = tqdm_progress("IFD (2 passes)") if "ifd" in needs else (None, lambda: None)
    try:
        selection = run_method(
            args.method, dataset, fp, budget, select_config=select_config, cache=args.cache_dir, seed=args.seed,
            peer_config=peer_config, model_spec=model_spec_from_args(args),
            target=target_fingerprints(args) if "target" in needs else None, progress=progress,
        )
    finally:
        close()
    result = export_selection(dataset, selection, budget, args.out, model=model_record(fp) if fp else None)
    print(f"{args.method}: {result.k} of {len(dataset)} samples -> {result.data_path}")
    print(f"manifest -> {result.manifest_path}")
    if getattr(args, "trainer_configs", False):  # LLaMA-Factory + axolotl configs beside the subset
        from mads_core.validate.trainer_configs import write_trainer_configs

        for kind, path in write_trainer_configs(dataset, selection.ranking[: result.k], result.data_path).items():
            print(f"{kind} -> {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from mads_core.pipeline import METHODS, compare_table, dataset_embeddings_cached, run_method, selections_by_budget
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
    from mads_core.pipeline import method_requirements

    peer_config = peer_config_from_args(args)
    if not args.target:
        skipped = [m for m in methods if "target" in method_requirements(m, peer_config)]
        if skipped and args.methods:
            raise UsageError(f"--methods {','.join(skipped)} need --target FILE")
        if skipped:
            print(f"skipped (they need --target FILE): {', '.join(skipped)}", file=sys.stderr)
        methods = [m for m in methods if m not in skipped]
    fp, _ = compute_fingerprints(args, dataset)
    target = target_fingerprints(args)
    if any("ifd" in method_requirements(m, peer_config) for m in methods):  # fill the IFD cache, with progress
        from mads_core.pipeline import fingerprint_config_of
        from mads_core.select.ifd import ifd_scores

        progress, close = tqdm_progress("IFD (2 passes)")
        try:
            ifd_scores(dataset, model_spec_from_args(args), fingerprint_config_of(fp), args.cache_dir, progress)
        finally:
            close()
    progress, close = tqdm_progress("embedding")
    try:
        emb = dataset_embeddings_cached(dataset, args.cache_dir, progress=progress)
    finally:
        close()
    select_config = select_config_from_args(args)

    def run(m: str, k: int):
        return run_method(
            m, dataset, fp, k, select_config=select_config, cache=args.cache_dir, embeddings=emb, seed=args.seed,
            peer_config=peer_config, model_spec=model_spec_from_args(args), target=target,
        )

    # k-means is clustered at each budget (as the app does); every other method ranks once to the top budget.
    selections = selections_by_budget(methods, ks, run)
    table = compare_table(
        selections,
        budgets,
        len(dataset),
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
    sel.add_argument("--trainer-configs", action="store_true",
                     help="also write LLaMA-Factory and axolotl configs (+ a messages JSONL) beside --out")
    sel.set_defaults(func=cmd_select)

    cmp_ = sub.add_parser("compare", help="metrics of every method at several budgets")
    add_data_args(cmp_)
    add_model_args(cmp_)
    add_select_args(cmp_)
    cmp_.add_argument("--budgets", default="0.05,0.1,0.15", help="comma-separated fractions or counts")
    cmp_.add_argument("--methods", default=None, help=f"comma-separated subset of: {', '.join(METHODS)}")
    cmp_.add_argument("--out", default=None, help="write the metrics table as CSV")
    cmp_.set_defaults(func=cmd_compare)

    from mads_core.validate.command import add_evaluate_parser

    add_evaluate_parser(sub)  # python -m mads_core evaluate (downstream validation grid)
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
