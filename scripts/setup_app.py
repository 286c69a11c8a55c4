"""One-time set-up the app would otherwise do on a user's first click (``make`` runs it).

1. Converts the bundled GGUF model to a plain local folder (~10-100 s, once).
2. Unpacks the bundled demo asset (``assets/demo/default.tar.xz``) into the cache.
3. Compiles the numba kernels of the selection methods on a tiny input (numba caches them),
   so the first ranking in the app does not wait for the compiler.

Idempotent: a second run finds everything done and returns in about a second.
"""

from __future__ import annotations

import time

import numpy as np


def main() -> int:
    t0 = time.perf_counter()
    from mads_core.model.models import bundled_model_dir

    print(f"bundled model: {bundled_model_dir()} ({time.perf_counter() - t0:.1f} s)", flush=True)
    from mads_core.data import demo_asset

    t1 = time.perf_counter()
    found = demo_asset.root()
    print(f"demo asset: {found or 'none in this checkout'} ({time.perf_counter() - t1:.1f} s)", flush=True)
    t2 = time.perf_counter()
    from mads_core.config import SelectConfig
    from mads_core.select.baselines import select_kcenter_act
    from mads_core.select.bitops import pack_bits
    from mads_core.select.greedy import select_mads

    fired = np.random.default_rng(0).random((64, 256)) < 0.1
    bits = pack_bits(fired)
    select_mads(bits, 256, 16, SelectConfig())
    select_kcenter_act(bits, 256, 8)
    print(f"selection kernels compiled ({time.perf_counter() - t2:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
