"""Benchmark of downstream validation: the default CPU grid of ``python -m mads_core evaluate``.

    .venv/bin/python bench/evaluate.py                       # the default grid
    .venv/bin/python bench/evaluate.py --steps 2 --seeds 2   # any evaluate flag overrides a default

Default grid: the bundled SmolLM2-135M, the default demo (718 samples, 5% held out), MADS /
random / k-center on embeddings × 5% / 15% × 3 seeds, plus the base model and the whole pool
(3 seeds): 22 cells, 21 LoRA trainings of 8 steps × 4 samples (96 tokens max), each scored on
24 held-out evals items (8 tasks × 3, loss + greedy accuracy) and the pool's 36 held-out
samples (loss). Cells are cached: a second run reads them (set ``MADS_CACHE_DIR`` to a fresh
folder to time a cold run). Prints progress with ETA, the tables (mean ± seed sd), the wall
time, the process CPU time (wall time on an otherwise idle machine is about CPU time / cores)
and the 1-minute load average at start and end, so a run on a shared machine can be read.

The last line printed is
``evaluate: cells=<n> minutes=<t> mads_vs_random=<mean diff> noise=<seed sd> full_data=<score>``
where mads_vs_random is the paired mean of (MADS − random) held-out task loss at the largest
budget (negative = MADS better), noise the seed sd of those two methods, full_data the
whole-pool cells' mean held-out task loss.
"""

from __future__ import annotations

import os
import sys

# bench/ holds a select.py: drop this folder from sys.path so it cannot shadow the standard
# library's ``select`` module (imported by subprocess).
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import time  # noqa: E402


def main(argv: list[str]) -> int:
    from mads_core.cli import build_parser
    from mads_core.validate.command import print_tables, run_from_args, write_outputs
    from mads_core.validate.report import headline

    args = build_parser().parse_args(["evaluate", *argv])
    load0 = os.getloadavg()[0]
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = run_from_args(args)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print_tables(result)
    if args.out:
        for path in write_outputs(result, args.out):
            print(f"wrote {path}")
    h = headline(result.cells)
    trained = int((result.cells["status"] == "trained").sum())
    print(f"wall {wall / 60:.1f} min, process CPU {cpu / 60:.1f} min ({os.cpu_count()} cores), "
          f"{trained} cells trained now, {len(result.cells) - trained} from the cache; "
          f"load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    print(f"evaluate: cells={len(result.cells)} minutes={wall / 60:.1f} mads_vs_random={h['mads_vs_random']:+.4f} "
          f"noise={h['noise']:.4f} full_data={h['full_data']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
