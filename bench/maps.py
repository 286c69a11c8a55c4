"""2-D maps at N = 52,000 (issue 14): both projections timed from a fresh cache, with a quality check.

Inputs: the synthetic N-sample set of ``bench/app_scale.py`` (``mads_core.synthetic.build_app_inputs``,
built once under ``bench/out/app_scale/``): fingerprints of 52,000 × 46,080 packed bits
(~3.5 % set) and 52,000 × 384 unit embeddings. Every projection is computed into a fresh,
temporary cache folder (``bench/out/maps/``, removed at the end), so nothing is read from
an earlier run.

1. ``compile``: a 4,200-row map of each kind with the same recipe (UMAP searches
   neighbours with pynndescent from 4,096 rows on), so numba compiles (or loads from its
   on-disk cache) UMAP's, pynndescent's and the SVD's kernels; reported apart.
2. ``fingerprint_map_s``: ``project_fingerprints`` (SVD of the packed bits, then UMAP with
   the large-N recipe: ``project.large_recipe()``), split from the progress callback into
   SVD / neighbour graph + start / layout epochs.
3. ``text_map_s``: ``project_embeddings`` (cosine UMAP, large-N recipe), split likewise.
4. Quality on 2,000 seeded rows: **kNN preservation** = the mean share of each row's 10
   nearest neighbours in the input space (fingerprints: the 50-d SVD scores; text: cosine
   of the embeddings; searched over all N rows) that are also among its 10 nearest in the
   map; and scikit-learn's ``trustworthiness`` (k = 10) on the 2,000 rows. ``--old`` also
   computes both maps with UMAP's own defaults (the recipe used below
   ``project.LARGE_ROWS``, and at every N before issue 14) and prints the same figures.

Wall and CPU seconds (this process, all threads) are printed with the load average. The
last line is ``maps: n=<N> fingerprint_map_s=<t> text_map_s=<t>`` (compile excluded).

    python bench/maps.py              # N = 52,000 (~3 min on 2 idle cores, inputs built once: ~2 min)
    python bench/maps.py --n 5000     # smoke run
    python bench/maps.py --old        # + the old recipe for comparison (~10 min more at 52K)
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
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from mads_core.timing import Timer  # noqa: E402

ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from mads_core.synthetic import build_app_inputs  # noqa: E402

INPUTS = ROOT / "bench" / "out" / "app_scale"
OUT = ROOT / "bench" / "out" / "maps"
SAMPLE, K = 2_000, 10
WARM_ROWS = 4_200  # UMAP uses pynndescent from 4,096 rows on: the warm-up must reach it


class Stages:
    """A progress callback that records when each stage (its label up to the first ':' or ' of ') begins."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float, float]] = []

    def __call__(self, label: str, fraction: float) -> None:
        name = label.split(":")[0].split(" of ")[0].strip()
        if not self.marks or self.marks[-1][0] != name:
            self.marks.append((name, time.perf_counter(), time.process_time()))

    def split(self, end_wall: float, end_cpu: float) -> list[tuple[str, float, float]]:
        ends = [(w, c) for _, w, c in self.marks[1:]] + [(end_wall, end_cpu)]
        return [(name, we - w, ce - c) for (name, w, c), (we, ce) in zip(self.marks, ends, strict=True)
                if name != "done"]


def load_inputs(n: int) -> tuple[object, np.ndarray, str]:
    from mads_core import pipeline
    from mads_core.config import FingerprintConfig, ModelSpec
    from mads_core.model.embed import embedding_key
    from mads_core.model.fingerprint import cached_fingerprints

    cache = INPUTS / "cache"
    path, _ = build_app_inputs(n, INPUTS, cache)
    ds = pipeline.load_data(str(path))
    fp = cached_fingerprints(ds, ModelSpec(), FingerprintConfig(), cache=cache)
    emb = np.asarray(pipeline.dataset_embeddings_cached(ds, cache))
    return fp, emb, embedding_key(ds)


def knn_preservation(reference: np.ndarray, coords: np.ndarray, rows: np.ndarray, metric: str) -> float:
    """Mean share of each sampled row's K input-space neighbours (over all rows) kept among its K map neighbours."""
    from sklearn.neighbors import NearestNeighbors

    high = NearestNeighbors(n_neighbors=K + 1, metric=metric, algorithm="brute").fit(reference)
    low = NearestNeighbors(n_neighbors=K + 1).fit(coords)
    a = high.kneighbors(reference[rows], return_distance=False)
    b = low.kneighbors(coords[rows], return_distance=False)
    shares = [len((set(x) - {r}) & (set(y) - {r})) / K for r, x, y in zip(rows, a, b, strict=True)]
    return float(np.mean(shares))


def quality(reference: np.ndarray, coords: np.ndarray, metric: str) -> dict[str, float]:
    from sklearn.manifold import trustworthiness

    rows = np.sort(np.random.default_rng(0).choice(len(coords), size=min(SAMPLE, len(coords)), replace=False))
    return {"knn_preservation": knn_preservation(reference, coords, rows, metric),
            "trustworthiness": float(trustworthiness(reference[rows], coords[rows], n_neighbors=K, metric=metric))}


def timed_map(name: str, run, **kw) -> tuple[object, dict[str, float]]:
    stages = Stages()
    with Timer() as t:
        proj = run(progress=stages, **kw)
    out = {f"{name}_s": t.wall, f"{name}_s_cpu": t.cpu}
    print(f"  {name}: {t.wall:.1f} s wall, {t.cpu:.1f} s CPU ({proj.method})", flush=True)
    for stage, wall, cpu in stages.split(t.wall0 + t.wall, t.cpu0 + t.cpu):
        print(f"    {stage}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    return proj, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=52_000, help="samples (default 52,000)")
    parser.add_argument("--old", action="store_true", help="also time UMAP's own defaults (the previous recipe)")
    args = parser.parse_args(argv)
    from mads_core.analysis import project

    print(f"maps: N = {args.n:,}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    fp, emb, emb_key = load_inputs(args.n)
    bits = np.asarray(fp.bits)
    results: dict[str, float] = {"load_average_start": os.getloadavg()[0]}
    OUT.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix="cache-", dir=OUT))
    try:
        with Timer() as t:  # same kernels as the large-N recipe, on a small input
            warm = min(WARM_ROWS, len(emb))
            project.project_fingerprints(bits[:warm], fp.n_neurons, svd_dims=10, use_cache=False, large_rows=0)
            project.project_embeddings(emb[:warm], use_cache=False, large_rows=0)
        results["compile_s"], results["compile_s_cpu"] = t.wall, t.cpu
        print(f"  compile (numba kernels compiled or loaded from their cache, with a {WARM_ROWS:,}-row warm-up "
              f"map of each kind): {t.wall:.1f} s wall, "
              f"{t.cpu:.1f} s CPU", flush=True)
        fmap, out = timed_map("fingerprint_map", project.project_fingerprints, bits=bits, n_neurons=fp.n_neurons,
                              input_key=fp.key, cache=fresh)
        results |= out
        tmap, out = timed_map("text_map", project.project_embeddings, emb=emb, input_key=emb_key, cache=fresh)
        results |= out
        with Timer() as t:
            again = project.project_fingerprints(bits, fp.n_neurons, input_key=fp.key, cache=fresh)
        print(f"  cached fingerprint map read back: {t.wall:.2f} s (hit: {again.cache_hit})", flush=True)
        maps = {"current": (fmap, tmap)}
        if args.old:
            never = 1 << 62
            fold, out = timed_map("fingerprint_map_old", project.project_fingerprints, bits=bits,
                                  n_neurons=fp.n_neurons, input_key=fp.key, cache=fresh, large_rows=never)
            results |= out
            told, out = timed_map("text_map_old", project.project_embeddings, emb=emb, input_key=emb_key,
                                  cache=fresh, large_rows=never)
            results |= out
            maps["umap-defaults"] = (fold, told)
        with Timer() as t:
            svd = project.svd_bits(bits, fp.n_neurons, project.DEFAULT_SVD_DIMS)
        print(f"  quality reference: SVD scores again ({t.wall:.1f} s)", flush=True)
        for recipe, (fm, tm) in maps.items():
            for name, proj, ref, metric in (("fingerprint", fm, svd, "euclidean"), ("text", tm, emb, "cosine")):
                q = quality(ref, proj.coords, metric)
                results |= {f"{name}_{recipe}_{k}": v for k, v in q.items()}
                print(f"  quality {name} map ({recipe} recipe), {min(SAMPLE, len(proj.coords)):,} rows, k = {K}: "
                      f"kNN preservation {q['knn_preservation']:.3f}, trustworthiness {q['trustworthiness']:.3f}",
                      flush=True)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    results["load_average_end"] = os.getloadavg()[0]
    (OUT / f"results_{args.n}.json").write_text(json.dumps(results, indent=1, sort_keys=True))
    print(f"  load average at the end {results['load_average_end']:.1f}; figures in "
          f"{(OUT / f'results_{args.n}.json').relative_to(ROOT)}", flush=True)
    print(f"maps: n={args.n} fingerprint_map_s={results['fingerprint_map_s']:.1f} "
          f"text_map_s={results['text_map_s']:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
