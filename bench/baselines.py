"""Baselines and MADS at N = 52,000 in seconds (issue 14, "What to build" 1-2, library side).

Reuses the seeded synthetic inputs of ``bench/app_scale.py`` under ``bench/out/app_scale/``
(built there once if missing, ~2 min): N Alpaca-like texts, 384-d unit "MiniLM" embeddings
clustered by topic, and fingerprints of the bundled model's geometry (D = 46,080, ~3.5% of
bits set, ``mads_core.synthetic.synth_planes``). Then it times, in one process, each stage in
wall and CPU seconds (this process, all threads) with the load average:

1. ``kcenter-embed``: ``select_kcenter_embed(emb, k)`` to 15% and to 30% of N.
2. ``kcenter-tfidf``: ``select_kcenter_tfidf(dataset, k)`` to 15% (TF-IDF build and
   reduction included: the user waits for them), with its parts timed on their own.
3. MADS: ``select_mads(bits, D, k, SelectConfig())`` (default settings, continuation
   "rounds") to 15% and to 30%, best of ``--repeats``.
4. ``kmeans-embed``: one clustering at 15% (``select_kmeans_embed``), the per-budget cost.
5. FAISS vs numba: the first ``--faiss-picks`` farthest-first picks on the embeddings with a
   FAISS-backed update (``faiss.pairwise_distances`` of the new pick to every row, a numpy
   minimum and argmax) against the numba kernel ``DenseSpace.farthest_first`` on the same
   picks; ``faiss_vs_numba`` = FAISS seconds / numba seconds (above 1: numba is faster), and
   whether both made the same picks. Needs ``faiss-cpu`` importable (not a project
   dependency); without it the ratio prints as ``nan``.

Numba compilation and cache loads are excluded: every kernel runs once on a small instance
first. Figures go to ``bench/out/baselines.json``; the last line is
``baselines: n=<N> kcenter_embed_s=<t> kcenter_tfidf_s=<t> mads_15_s=<t> mads_30_s=<t>
kmeans_s=<t> faiss_vs_numba=<x>`` (wall seconds at 15%).

    python bench/baselines.py                       # N = 52,000
    python bench/baselines.py --n 10000 --only kcenter-embed,mads
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds select.py, which would shadow the standard library's ``select`` module.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

import numpy as np  # noqa: E402

from mads_core.timing import Timer  # noqa: E402

ROOT = HERE.parent
OUT = ROOT / "bench" / "out"
INPUTS = OUT / "app_scale"
STAGES = ("kcenter-embed", "kcenter-tfidf", "mads", "kmeans", "faiss")


def load_inputs(n: int):
    """(dataset, fingerprints, embeddings) of the N-sample synthetic set (built once)."""
    from mads_core import pipeline
    from mads_core.config import FingerprintConfig, ModelSpec
    from mads_core.model.fingerprint import cached_fingerprints
    from mads_core.synthetic import build_app_inputs

    cache = INPUTS / "cache"
    path, _ = build_app_inputs(n, INPUTS, cache)
    ds = pipeline.load_data(str(path))
    fp = cached_fingerprints(ds, ModelSpec(), FingerprintConfig(), cache=cache)
    emb = np.ascontiguousarray(pipeline.dataset_embeddings_cached(ds, cache), dtype=np.float32)
    return ds, fp, emb


def warm_up(ds, fp, emb) -> None:
    """Compile (or load from numba's cache) every kernel on a small instance."""
    from mads_core.config import SelectConfig
    from mads_core.select.baselines import select_kcenter_embed, select_kcenter_tfidf, select_kmeans_embed
    from mads_core.select.greedy import select_mads

    select_kcenter_embed(emb[:400], 40)
    select_kcenter_tfidf(ds.subset(range(400)), 40)
    select_mads(np.ascontiguousarray(fp.bits[:400]), fp.n_neurons, 40, SelectConfig())
    select_kmeans_embed(emb[:400], 40)


def faiss_farthest_first(x: np.ndarray, k: int, start: int) -> np.ndarray:
    """First ``k`` farthest-first picks (cosine on unit rows) with FAISS computing each pick's distances."""
    import faiss

    n = x.shape[0]
    mind = np.full(n, np.inf)
    picked = np.zeros(n, dtype=bool)
    ranking = np.empty(k, dtype=np.int64)
    j = start
    for i in range(k):
        ranking[i] = j
        picked[j] = True
        dots = faiss.pairwise_distances(x[j:j + 1], x, metric=faiss.METRIC_INNER_PRODUCT)[0]
        np.minimum(mind, np.clip(1.0 - dots.astype(np.float64), 0.0, 2.0), out=mind)
        j = int(np.argmax(np.where(picked, -1.0, mind)))
    return ranking


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=52_000, help="samples (default 52,000)")
    parser.add_argument("--only", default=",".join(STAGES), help=f"comma-separated stages of {STAGES}")
    parser.add_argument("--no-30", action="store_true", help="skip the 30%% rankings of kcenter-embed and MADS")
    parser.add_argument("--repeats", type=int, default=2, help="MADS runs per budget, best kept (default 2)")
    parser.add_argument("--faiss-picks", type=int, default=1000, help="picks in the FAISS comparison (default 1,000)")
    args = parser.parse_args(argv)
    stages = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = stages - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; choose from {STAGES}")
    sys.path.insert(0, str(ROOT))
    from mads_core.config import SelectConfig
    from mads_core.select import baselines as bl
    from mads_core.select.greedy import resolve_budget, select_mads

    print(f"baselines: N = {args.n:,}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    ds, fp, emb = load_inputs(args.n)
    warm_up(ds, fp, emb)
    n = len(ds)
    k15, k30 = resolve_budget(0.15, n), resolve_budget(0.30, n)
    budgets = ((k15, "15"),) if args.no_30 else ((k15, "15"), (k30, "30"))
    res: dict[str, float | str] = {"n": n}

    def report(label: str, name: str, t: Timer) -> None:
        res[name], res[name + "_cpu"] = t.wall, t.cpu
        print(f"  {label}: {t.wall:.2f} s wall, {t.cpu:.2f} s CPU (load {os.getloadavg()[0]:.1f})", flush=True)

    if "kcenter-embed" in stages:
        for k, tag in budgets:
            with Timer() as t:
                bl.select_kcenter_embed(emb, k)
            report(f"kcenter-embed to {k:,} ({tag}%)", f"kcenter_embed_{tag}_s", t)
    if "kcenter-tfidf" in stages:
        texts = [ds.display_text(i) for i in range(n)]
        with Timer() as t:
            x = bl.tfidf_matrix(texts)
        report(f"  TF-IDF matrix {x.shape[0]:,} x {x.shape[1]:,} ({x.nnz:,} non-zeros)", "tfidf_matrix_s", t)
        if hasattr(bl, "tfidf_reduce"):
            with Timer() as t:
                bl.tfidf_reduce(x)
            report("  TF-IDF reduction (TruncatedSVD)", "tfidf_reduce_s", t)
        with Timer() as t:
            bl.select_kcenter_tfidf(ds, k15)
        report(f"kcenter-tfidf to {k15:,} (15%, TF-IDF included)", "kcenter_tfidf_15_s", t)
    if "mads" in stages:
        config = SelectConfig()
        for k, tag in budgets:
            best: Timer | None = None
            for _ in range(max(1, args.repeats)):
                with Timer() as t:
                    sel = select_mads(fp.bits, fp.n_neurons, k, config)
                if best is None or t.wall < best.wall:
                    best = t
            report(f"MADS to {k:,} ({tag}%, {int(sel.rounds[-1]) + 1} rounds), best of {args.repeats}",
                   f"mads_{tag}_s", best)
    if "kmeans" in stages:
        with Timer() as t:
            sel = bl.select_kmeans_embed(emb, k15)
        report(f"kmeans-embed at {k15:,} (15%, {sel.settings.get('algorithm')})", "kmeans_15_s", t)
    res["faiss_vs_numba"] = float("nan")
    if "faiss" in stages:
        try:
            import faiss  # noqa: F401
        except ImportError:
            print("  FAISS: faiss-cpu is not installed here (pip install faiss-cpu); ratio not measured", flush=True)
        else:
            from mads_core.select.baselines import KCENTER_PRUNE_DIMS
            from mads_core.select.farthest import DenseSpace

            picks = min(args.faiss_picks, n)
            unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-30)
            start = int(np.argmax(unit @ unit.mean(axis=0)))
            with Timer() as tn:
                space = DenseSpace(unit, "cosine", dims=KCENTER_PRUNE_DIMS)
                ours = space.farthest_first(picks, start)[0]
            report(f"numba kernel, first {picks:,} picks (projection included)", "numba_picks_s", tn)
            with Timer() as tf:
                theirs = faiss_farthest_first(unit, picks, start)
            report(f"FAISS-backed update, first {picks:,} picks", "faiss_picks_s", tf)
            res["faiss_vs_numba"] = tf.wall / tn.wall
            same = int(np.sum(ours == theirs))
            res["faiss_same_picks"] = same
            print(f"  faiss_vs_numba = {tf.wall / tn.wall:.2f} (wall; CPU {tf.cpu / tn.cpu:.2f}); "
                  f"same pick at {same:,} of {picks:,} ranks", flush=True)
    res["load_average_end"] = os.getloadavg()[0]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "baselines.json").write_text(json.dumps(res, indent=1, sort_keys=True))

    def fmt(key: str) -> str:
        v = res.get(key, float("nan"))
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    print(f"baselines: n={n} kcenter_embed_s={fmt('kcenter_embed_15_s')} kcenter_tfidf_s={fmt('kcenter_tfidf_15_s')} "
          f"mads_15_s={fmt('mads_15_s')} mads_30_s={fmt('mads_30_s')} kmeans_s={fmt('kmeans_15_s')} "
          f"faiss_vs_numba={fmt('faiss_vs_numba')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
