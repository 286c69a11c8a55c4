"""Scale-out benchmark: local vs Ray fingerprinting throughput, GreeDi vs exact greedy coverage.

    python bench/scale.py                 # ~5 min on 2 CPU cores (first run also fingerprints the demo)
    python bench/scale.py --n 32 --chunk-size 8 --repeats 1 --skip-real --synthetic 4000x8192   # smoke run

1. Fingerprinting: the same demo subset (``--n`` samples, default settings, all 30 layers
   of the bundled model, ``--chunk-size`` shards) through ``fingerprint_dataset`` (local
   engine: one process, torch on both cores as a user runs it; and, as a control, torch
   on 1 thread) and ``fingerprint_dataset_ray`` (a fresh
   local Ray instance, one model replica per CPU, one torch thread each), each into a
   fresh cache, alternating ``--repeats`` times (best kept: the machine's load drifts).
   Wall time end to end, Ray start-up and actor model loads included (that is what a
   user waits for); the Ray rate between its first and last committed shard is printed
   too. All caches are checked byte for byte.
2. Selection: GreeDi (``greedi_select``, Ray tasks, random partitions, one run per
   budget with kappa = k) vs the exact single-machine greedy (``select_mads``), plain
   coverage (continuation "none"), ratio of neurons covered at 5/10/15% budgets, for
   m = 2, 4, 8 partitions, on
   synthetic skewed fingerprints (bench/select.py's generator) and on the real default
   demo's fingerprints (cached after the first run).

Last line: ``scale: ray_vs_local=<x> greedi_coverage_ratio=<y>`` where x is Ray's
end-to-end throughput over the local engine's as a user runs it (torch on both cores;
below 1 means Ray is slower here; the line before gives the ratio against the 1-thread
control) and y the smallest coverage ratio over the budgets for m = 4 on the synthetic
instance.
"""

from __future__ import annotations

import os
import sys

# bench/ holds select.py: drop this folder from sys.path so that it does not shadow the
# standard library's ``select`` module.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from mads_core.config import FingerprintConfig, ModelSpec, SelectConfig  # noqa: E402
from mads_core.data.demo import load_demo  # noqa: E402
from mads_core.distributed import (  # noqa: E402
    coverage_ratio,
    fingerprint_dataset_ray,
    greedi_select,
    ray_session,
)
from mads_core.model.fingerprint import RunStats, fingerprint_dataset  # noqa: E402
from mads_core.select.greedy import select_mads  # noqa: E402

OUT = ROOT / "bench" / "out"
BUDGETS = (0.05, 0.10, 0.15)


def _digest(folder: str | None) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(str(folder)).iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def bench_fingerprint(n: int, chunk_size: int, workers: int, repeats: int) -> dict:
    """End-to-end wall time of both engines on the same samples, fresh caches, best of alternating runs."""
    import torch

    torch.set_num_threads(2)
    demo = load_demo("default")
    step = max(1, len(demo) // n)
    data = demo.subset(list(range(0, len(demo), step))[:n])
    config = FingerprintConfig()
    out: dict = {"n": len(data), "chunk_size": chunk_size, "workers": workers, "repeats": repeats}
    for name in ("local_runs_s", "local_1thread_runs_s", "ray_runs_s", "ray_first_shard_s",
                 "ray_compute_samples_per_s"):
        out[name] = []
    digests = set()
    for _ in range(repeats):  # alternate the engines: this machine's load drifts
        with tempfile.TemporaryDirectory(prefix="mads-scale-") as tmp:
            for threads, label in ((2, "local_runs_s"), (1, "local_1thread_runs_s")):
                torch.set_num_threads(threads)
                t0 = time.perf_counter()
                local = fingerprint_dataset(data, ModelSpec(), config, cache=Path(tmp) / label, chunk_size=chunk_size)
                out[label].append(time.perf_counter() - t0)
                digests.add(_digest(local.path))
                print(f"local engine, torch {threads} thread(s): {len(data)} samples in {out[label][-1]:.1f} s",
                      flush=True)
            torch.set_num_threads(2)

            marks: list[float] = []
            t0 = time.perf_counter()
            remote = fingerprint_dataset_ray(
                data, ModelSpec(), config, cache=Path(tmp) / "ray", chunk_size=chunk_size, stats=RunStats(),
                workers=workers, num_cpus=2, progress=lambda _done, _total, mk=marks: mk.append(time.perf_counter()),
            )
            out["ray_runs_s"].append(time.perf_counter() - t0)
            digests.add(_digest(remote.path))
            shard_marks = marks[1:]  # marks[0] is the initial call (nothing computed yet)
            out["ray_first_shard_s"].append(shard_marks[0] - t0)
            if len(shard_marks) > 1:
                per_shard = (shard_marks[-1] - shard_marks[0]) / (len(shard_marks) - 1)
                out["ray_compute_samples_per_s"].append(chunk_size / per_shard)
            print(f"ray engine ({workers} actors x 1 CPU): {out['ray_runs_s'][-1]:.1f} s end to end, first shard "
                  f"after {out['ray_first_shard_s'][-1]:.1f} s (Ray start + model loads)", flush=True)
    out["identical"] = len(digests) == 1
    out["local_s"], out["ray_s"] = min(out["local_runs_s"]), min(out["ray_runs_s"])
    out["local_samples_per_s"] = out["n"] / out["local_s"]
    out["local_1thread_samples_per_s"] = out["n"] / min(out["local_1thread_runs_s"])
    out["ray_samples_per_s"] = out["n"] / out["ray_s"]
    out["ray_vs_local"] = out["ray_samples_per_s"] / out["local_samples_per_s"]
    steady = max(out["ray_compute_samples_per_s"], default=float("nan"))
    print(f"best of {repeats}: local {out['local_samples_per_s']:.2f} samples/s (torch 1 thread: "
          f"{out['local_1thread_samples_per_s']:.2f}), ray {out['ray_samples_per_s']:.2f} samples/s end to end "
          f"({steady:.2f} between first and last shard); all caches identical: {out['identical']}", flush=True)
    return out


def synthetic(n: int, d: int) -> np.ndarray:
    """Skewed synthetic fingerprints from bench/select.py (same generator, fixed seed)."""
    spec = importlib.util.spec_from_file_location("bench_select", ROOT / "bench" / "select.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.synthetic_bits(n, d, seed=0)


def bench_greedi(name: str, bits: np.ndarray, d: int, partitions: tuple[int, ...]) -> dict:
    """Coverage ratio GreeDi / exact at each budget, per partition count (Ray engine)."""
    config = SelectConfig(continuation="none")
    n = bits.shape[0]
    t0 = time.perf_counter()
    exact = select_mads(bits, d, max(BUDGETS), config)
    out: dict = {"n": n, "d": d, "exact_s": time.perf_counter() - t0,
                 "exact_saturates_at": int(exact.filler_from)}
    for m in partitions:
        ratios, union_rows, t0 = {}, [], time.perf_counter()
        for budget in BUDGETS:  # one GreeDi run per budget, kappa = k (the guarantee's setting)
            sel = greedi_select(bits, d, budget, partitions=m, config=config, engine="ray")
            ratios.update(coverage_ratio(sel, exact, [budget]))
            union_rows.append(sel.settings["greedi"]["union_size"])
        out[f"m{m}"] = {"ratios": ratios, "s": time.perf_counter() - t0, "union_rows": union_rows}
        shown = "  ".join(f"{float(b):.0%}: {r:.4f}" for b, r in ratios.items())
        rows = "/".join(str(r) for r in union_rows)
        print(f"  {name} N={n} D={d} m={m}: {shown}  (stage-2 rows {rows}, {out[f'm{m}']['s']:.1f} s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=128, help="demo samples to fingerprint")
    ap.add_argument("--repeats", type=int, default=2, help="alternating local/ray runs (best kept)")
    ap.add_argument("--chunk-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--synthetic", default="20000x57344", help="NxD of the synthetic selection instance")
    ap.add_argument("--skip-real", action="store_true", help="skip the real demo selection instance")
    args = ap.parse_args(argv)

    fp = bench_fingerprint(args.n, args.chunk_size, args.workers, args.repeats)
    sn, sd = (int(x) for x in args.synthetic.lower().split("x"))
    results: dict = {"fingerprint": fp}
    print("GreeDi vs exact greedy (plain coverage, random partitions, kappa = k):", flush=True)
    with ray_session(num_cpus=2):
        results["synthetic"] = bench_greedi("synthetic", synthetic(sn, sd), sd, (2, 4, 8))
        if not args.skip_real:
            demo = fingerprint_dataset(load_demo("default"), ModelSpec(), FingerprintConfig())
            results["real"] = bench_greedi("demo", np.asarray(demo.bits), demo.n_neurons, (2, 4, 8))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps(results, indent=1, default=str))
    ratio = min(results["synthetic"]["m4"]["ratios"].values())
    control = fp["ray_samples_per_s"] / fp["local_1thread_samples_per_s"]
    print(f"ray vs the local engine pinned to 1 torch thread (control for thread contention): {control:.2f}")
    print(f"scale: ray_vs_local={fp['ray_vs_local']:.2f} greedi_coverage_ratio={ratio:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
