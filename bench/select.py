"""Benchmark of the MADS coverage greedy (``mads_core.select.greedy``) and two peer libraries.

Run it in the benchmark venv (bench/README.md, "select"):

    .venv-bench/bin/python bench/select.py            # full run (~5-10 min)
    .venv-bench/bin/python bench/select.py --quick    # smoke run (~1 min)

1. Paper scale: synthetic fingerprints with Llama-3.2-3B geometry (N = 52,000 samples,
   D = 28 x 8192 = 229,376 neurons), skewed firing, built once (fixed seed) in packed
   form and cached under bench/out/. Times ``select_mads`` to 15% (7,800 picks) with the
   default settings, setup included (numba compile excluded: a warm-up runs first), and
   its peak extra memory (peak RSS high-water mark reset before the call, plus an RSS
   sampling thread; tracemalloc cannot see numba allocations).
2. Peers, at a scale they finish: apricot-select ``MaxCoverageSelection`` (its default
   optimizer and ``optimizer="naive"``, the exact greedy) and submodlib
   ``SetCoverFunction`` (``LazyGreedy``, its fastest exact optimizer), all plain greedy
   (``continuation="none"``), same budget. Coverage (distinct neurons) is compared at
   every prefix with apricot naive. Ratios use each peer's fastest optimizer.

The last line printed is
``select: paper_scale_s=<t> peak_extra_mib=<m> vs_apricot=<r> vs_submodlib=<r> same_coverage=<yes|no>``.
"""

from __future__ import annotations

import os
import sys

# This file is named select.py: drop its folder from sys.path so that it does not shadow
# the standard library's ``select`` module (imported by numba's dependencies).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mads_core.config import SelectConfig  # noqa: E402
from mads_core.select import bitops  # noqa: E402
from mads_core.select.greedy import select_mads  # noqa: E402
from mads_core.synthetic import skewed_bits  # noqa: E402

OUT = ROOT / "bench" / "out"
GEN_VERSION = 1
MIB = 1 << 20


# --------------------------------------------------------------------------- synthetic fingerprints


def synthetic_bits(n: int, d: int, seed: int = 0, cache: bool = True, uniform: float | None = None):
    """(n, ceil(d/64)) packed fingerprints with skewed, heterogeneous firing.

    Neuron d fires with a base probability from a lognormal (median 0.3%, sigma 2,
    capped at 95%): a few hundred neurons fire on most samples, ~75% on under 1%, mean
    ~2% per sample. Samples differ in "length": each block of 512 rows gets an activity
    a (lognormal, sigma 0.6, mean 1) and fires neuron d with 1 - (1 - p_d) ** a (max
    pooling over a-times as many tokens). ``uniform=p`` instead fires every neuron of
    every sample with probability p (the lazy greedy's worst case: all gains near-tied).
    Cached as .npy under bench/out/.
    """
    kind = "skewed" if uniform is None else f"uniform{uniform:g}"
    path = OUT / f"synth_select_v{GEN_VERSION}_{kind}_{n}x{d}_s{seed}.npy"
    if cache and path.exists():
        return np.load(path)
    out = skewed_bits(n, d, seed=seed, uniform=uniform)
    if cache:
        OUT.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.replace(path)
    return out


# --------------------------------------------------------------------------- memory


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def _hwm() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakRSS:
    """Peak resident memory above the level at entry (HWM reset + a 2 ms sampling thread)."""

    def __enter__(self) -> PeakRSS:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset the peak-RSS high-water mark (Linux >= 4.0)
            self._hwm_ok = True
        except OSError:
            self._hwm_ok = False
        self.base = _rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        hwm = _hwm() if self._hwm_ok else None
        if hwm is not None:
            self.peak = max(self.peak, hwm)

    @property
    def extra(self) -> int:
        return max(0, self.peak - self.base)


# --------------------------------------------------------------------------- measurements


def time_select(bits: np.ndarray, d: int, budget, config: SelectConfig, repeats: int = 1):
    """Best wall time over ``repeats`` runs, peak extra RSS of the first, and the Selection."""
    best, extra, sel = math.inf, 0, None
    for rep in range(repeats):
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            sel = select_mads(bits, d, budget, config)
            dt = time.perf_counter() - t0
        best = min(best, dt)
        if rep == 0:
            extra = mem.extra
    return best, extra, sel


def warm_up(configs: list[SelectConfig]) -> None:
    """Compile (or load from numba's cache) every kernel the timed runs use."""
    small = synthetic_bits(1500, 4096, seed=99, cache=False)
    for cfg in configs:
        select_mads(small, 4096, 300, cfg)


def coverage_curve(bits: np.ndarray, d: int, ranking: np.ndarray) -> np.ndarray:
    return bitops.union_curve(bits, np.asarray(ranking, dtype=np.int64), bitops.valid_mask(d, bits.shape[1]))


def run_peers(n: int, d: int, k: int, seed: int) -> dict:
    """MADS plain greedy vs apricot (naive, default) and submodlib (LazyGreedy) at one scale."""
    import scipy.sparse as sp
    from apricot import MaxCoverageSelection
    from submodlib import SetCoverFunction

    bits = synthetic_bits(n, d, seed=seed)
    fired = bitops.unpack_bits(bits, d)
    res: dict = {"n": n, "d": d, "k": k, "density": float(fired.mean())}
    cfg = SelectConfig(continuation="none")
    warm_up([cfg])
    t_mads, _, sel = time_select(bits, d, k, cfg, repeats=3)
    res["mads_s"] = t_mads
    curves = {"mads": coverage_curve(bits, d, sel.ranking)}
    rankings = {"mads": sel.ranking}

    t0 = time.perf_counter()
    x = sp.csr_matrix(fired.astype(np.float64))
    res["apricot_input_s"] = time.perf_counter() - t0
    del fired
    for name, opt in (("apricot_naive", "naive"), ("apricot_default", "two-stage")):
        t0 = time.perf_counter()
        model = MaxCoverageSelection(k, optimizer=opt).fit(x)
        res[f"{name}_s"] = time.perf_counter() - t0
        rankings[name] = np.asarray(model.ranking, dtype=np.int64)
        curves[name] = coverage_curve(bits, d, rankings[name])
        print(f"  {name}: {res[f'{name}_s']:.1f} s", flush=True)

    t0 = time.perf_counter()
    sets = [set(row.indices.tolist()) for row in x]
    res["submodlib_input_s"] = time.perf_counter() - t0
    del x
    t0 = time.perf_counter()
    func = SetCoverFunction(n=n, cover_set=sets, num_concepts=d)
    picked = func.maximize(budget=k, optimizer="LazyGreedy", stopIfZeroGain=False, stopIfNegativeGain=False,
                           verbose=False, show_progress=False)
    res["submodlib_lazy_s"] = time.perf_counter() - t0
    rankings["submodlib_lazy"] = np.array([i for i, _ in picked], dtype=np.int64)
    curves["submodlib_lazy"] = coverage_curve(bits, d, rankings["submodlib_lazy"])
    print(f"  submodlib_lazy: {res['submodlib_lazy_s']:.1f} s", flush=True)

    ref = curves["apricot_naive"]
    for name, curve in curves.items():
        res[f"{name}_same_coverage"] = bool(curve.shape == ref.shape and np.array_equal(curve, ref))
        res[f"{name}_same_ranking"] = bool(np.array_equal(rankings[name], rankings["apricot_naive"]))
        res[f"{name}_final_coverage"] = int(curve[-1])
        res[f"{name}_max_shortfall"] = int(np.max(ref[: curve.size] - curve[: ref.size])) if curve.size else 0
    res["vs_apricot"] = min(res["apricot_naive_s"], res["apricot_default_s"]) / t_mads
    res["vs_submodlib"] = res["submodlib_lazy_s"] / t_mads
    return res


def worst_case(n: int, d: int, budget: float, seed: int) -> dict:
    """Default settings on uniform 5% firing (every gain near-tied: lazy evaluation helps least)."""
    bits = synthetic_bits(n, d, seed=seed, uniform=0.05)
    t, mem, sel = time_select(bits, d, budget, SelectConfig(), repeats=1)
    print(f"  worst case, uniform 5% firing: default {t:.2f} s, peak extra {mem / MIB:.0f} MiB, "
          f"{int(sel.rounds[-1]) + 1} rounds", flush=True)
    return {"uniform5_default_s": t, "uniform5_peak_extra_mib": mem / MIB, "rounds": int(sel.rounds[-1]) + 1}


def paper_scale(n: int, d: int, budget: float, seed: int, extra: bool) -> dict:
    t0 = time.perf_counter()
    bits = synthetic_bits(n, d, seed=seed)
    density = float(bitops.popcount_words(bits.ravel()) / (n * d))
    out: dict = {"n": n, "d": d, "budget": budget, "load_s": time.perf_counter() - t0,
                 "packed_mib": bits.nbytes / MIB, "density": density}
    default = SelectConfig()
    others = [SelectConfig(continuation="none"), SelectConfig(continuation="mcover", m=2),
              SelectConfig(weighting="idf"), SelectConfig(min_support=2)] if extra else []
    warm_up([default, *others])
    t, mem, sel = time_select(bits, d, budget, default, repeats=2)
    out.update(default_s=t, peak_extra_mib=mem / MIB, rounds=int(sel.rounds[-1]) + 1, picks=len(sel),
               filler_from=sel.filler_from, union=int(sel.neurons_covered[-1]))
    print(f"paper scale N={n} D={d} ({out['packed_mib']:.0f} MiB packed, {out['density']:.2%} bits set): "
          f"default (rounds) to {len(sel)} picks {t:.2f} s, peak extra {mem / MIB:.0f} MiB, "
          f"{out['rounds']} round(s), neurons covered {out['union']}", flush=True)
    for cfg in others:
        t, mem, sel = time_select(bits, d, budget, cfg, repeats=1)
        label = ",".join(f"{k}={v}" for k, v in cfg.to_dict().items() if v != getattr(default, k))
        out[label] = {"s": t, "peak_extra_mib": mem / MIB, "rounds": int(sel.rounds[-1]) + 1,
                      "filler_from": sel.filler_from}
        print(f"  {label}: {t:.2f} s, peak extra {mem / MIB:.0f} MiB, rounds {int(sel.rounds[-1]) + 1}, "
              f"zero-gain filler from pick {sel.filler_from}", flush=True)
    return out


def peers_52k(n: int, d: int, budget: float, seed: int, only: tuple[str, ...] = ()) -> dict:
    """Peer methods (mads_core.select.peers) at N samples: synthetic embeddings, scores and fingerprints.

    Embeddings: 384-d, 500 Gaussian clusters (unit rows). IFD: uniform in [0, 1.2) (about
    1/6 above 1). Fingerprints: the paper-scale synthetic bits above; own-token counts
    lognormal; target set: 500 rows of the same generator (another seed). One run each,
    numba/apricot compilation included (apricot compiles its kernels on every fit).
    """
    from mads_core.data.loader import Dataset
    from mads_core.select.deita import select_deita
    from mads_core.select.facility import select_facility
    from mads_core.select.ifd import select_ifd, select_superfilter
    from mads_core.select.length import select_longest, select_mads_lenctl
    from mads_core.select.target import select_nait, select_target_mads

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(500, 384))
    emb = (centres[rng.integers(0, 500, n)] + 0.8 * rng.normal(size=(n, 384))).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ifd = rng.uniform(0.0, 1.2, n)
    lengths = rng.lognormal(5.0, 1.0, n).astype(np.int64) + 1
    ds = Dataset("synthetic", "chat", tuple(f"s{i}" for i in range(n)),
                 tuple((("user", "q"), ("assistant", "x" * int(min(v, 4000)))) for v in lengths),
                 (None,) * n, ("synthetic",) * n, tuple({} for _ in range(n)))
    bits = synthetic_bits(n, d, seed=seed)
    target = synthetic_bits(500, d, seed=seed + 1, cache=False)
    tokens = np.minimum(lengths, 256)
    runs = {
        "longest": lambda: select_longest(ds, budget),
        "ifd": lambda: select_ifd(ifd, budget),
        "deita": lambda: select_deita(ifd, emb, budget),
        "facility-embed": lambda: select_facility(emb, budget),
        "superfilter": lambda: select_superfilter(ifd, emb, budget),
        "mads-lenctl": lambda: select_mads_lenctl(bits, d, tokens, budget),
        "target-mads": lambda: select_target_mads(bits, d, target, budget),
        "nait": lambda: select_nait(bits, d, target, budget),
    }
    out: dict = {"n": n, "d": d, "budget": budget}
    for name, fn in runs.items():
        if only and name not in only:
            continue
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            sel = fn()
            out[name] = time.perf_counter() - t0
        out[f"{name}_filler_from"] = int(sel.filler_from)
        out[f"{name}_peak_extra_mib"] = mem.extra / MIB
        print(f"  {name}: {out[name]:.1f} s ({len(sel)} picks, filler from {sel.filler_from}, "
              f"peak extra {mem.extra / MIB:.0f} MiB)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small smoke run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-peers", action="store_true")
    ap.add_argument("--worst-case", action="store_true", help="also time uniform 5%% firing at paper scale")
    ap.add_argument("--peers-52k", action="store_true",
                    help="only time the peer methods (IFD, facility location, DEITA, ...) at N = 52,000")
    ap.add_argument("--peers", default="", help="with --peers-52k: comma-separated subset of the peer methods")
    args = ap.parse_args(argv)
    if args.peers_52k:
        n, d = (8000, 28 * 1024) if args.quick else (52_000, 28 * 8192)
        print(f"peers at N={n} D={d} budget 15%:", flush=True)
        res = peers_52k(n, d, 0.15, args.seed, tuple(p for p in args.peers.split(",") if p))
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / ("peers_quick.json" if args.quick else "peers_52k.json")).write_text(json.dumps(res, indent=1))
        names = [k for k, v in res.items() if isinstance(v, float) and k != "budget" and not k.endswith("_mib")]
        print("select: peers_52k_s=" + ",".join(f"{k}:{res[k]:.1f}" for k in names))
        return 0
    if args.quick:
        n, d, pn, pd, pk = 8000, 28 * 1024, 1000, 32768, 200
    else:
        n, d, pn, pd, pk = 52_000, 28 * 8192, 3000, 65_536, 600
    print(f"numba {numba.__version__}, {numba.get_num_threads()} threads, pext={bitops.HAS_PEXT}", flush=True)
    paper = paper_scale(n, d, 0.15, args.seed, extra=not args.quick)
    if args.worst_case:
        paper["worst_case"] = worst_case(n, d, 0.15, args.seed)
    peers = {}
    if not args.skip_peers:
        print(f"peers N={pn} D={pd} K={pk} (plain greedy):", flush=True)
        peers = run_peers(pn, pd, pk, args.seed)
        shown = (f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in peers.items())
        print("  " + ", ".join(shown), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / ("select_quick.json" if args.quick else "select.json")).write_text(
        json.dumps({"paper": paper, "peers": peers}, indent=1, default=str))
    same = "yes" if peers.get("mads_same_coverage") else "no"
    print(f"select: paper_scale_s={paper['default_s']:.2f} peak_extra_mib={paper['peak_extra_mib']:.0f} "
          f"vs_apricot={peers.get('vs_apricot', float('nan')):.0f} "
          f"vs_submodlib={peers.get('vs_submodlib', float('nan')):.0f} same_coverage={same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
