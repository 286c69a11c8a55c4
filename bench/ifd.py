"""IFD with the fingerprinting model: what sharing the conditioned forward pass saves.

    .venv/bin/python bench/ifd.py            # 96 demo samples, best of 2 alternating runs
    .venv/bin/python bench/ifd.py --n 256

IFD needs two passes per sample (response given instruction; response alone). The
conditioned one reads exactly the fingerprint's tokens, so ``mads_core.select.ifd.shared_pass``
runs it once with the fingerprint hooks attached. On the same length-sorted batches this
times (1) the fingerprint pass (hooks, stops after the last hooked layer, no LM head),
(2) the conditioned IFD pass (full decoder, LM head at response positions only), (3) the
shared pass (both from one pass) and (4) the response-alone pass. Separate = 1 + 2 + 4,
shared = 3 + 4. Last line: ``ifd: shared_vs_separate=<x> saving_s_per_1k=<s> ifd_pass_vs_fingerprint=<r>``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# bench/ holds select.py: drop this folder from sys.path so it cannot shadow the standard ``select`` module.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from mads_core.config import FingerprintConfig, ModelSpec
    from mads_core.data.demo import load_demo
    from mads_core.model.fingerprint import ActivationRecorder, fingerprint_batch, make_batch, pad_token_id
    from mads_core.model.models import load_model
    from mads_core.select.ifd import (
        DEFAULT_BATCH_TOKENS,
        _batches,
        _start_id,
        encode_ifd_sample,
        response_losses,
        shared_pass,
    )

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    ds = load_demo("default")
    ds = ds.subset(np.random.default_rng(0).permutation(len(ds))[: args.n])
    loaded = load_model(ModelSpec())
    config = FingerprintConfig()
    window = min(config.max_tokens, loaded.max_positions or config.max_tokens)
    samples = [encode_ifd_sample(loaded.tokenizer, t, config, window) for t in ds.turns]
    lengths = np.array([len(s.encoded.input_ids) for s in samples])
    batches = _batches(lengths, DEFAULT_BATCH_TOKENS)
    pad = pad_token_id(loaded.tokenizer)
    start = _start_id(loaded.tokenizer)
    resp = [(start, *[t for t, m in zip(s.encoded.input_ids, s.response, strict=True) if m]) for s in samples]
    resp_batches = _batches(np.array([len(r) for r in resp]), DEFAULT_BATCH_TOKENS)

    def fingerprint_only():
        rec = ActivationRecorder(loaded.model, config.layers, config)
        with torch.inference_mode(), rec:
            for b in batches:
                fingerprint_batch(loaded, rec, make_batch([samples[i].encoded for i in b], pad))

    def conditioned_only():
        with torch.inference_mode():
            for b in batches:
                response_losses(loaded, [samples[i].encoded.input_ids for i in b], [samples[i].response for i in b])

    def shared():
        shared_pass(ds, loaded, config)

    def response_alone():
        with torch.inference_mode():
            for b in resp_batches:
                response_losses(loaded, [resp[i] for i in b], [(False,) + (True,) * (len(resp[i]) - 1) for i in b])

    steps = {"fingerprint": fingerprint_only, "conditioned": conditioned_only, "shared": shared,
             "response_alone": response_alone}
    best = dict.fromkeys(steps, float("inf"))
    fingerprint_only()  # warm-up
    for _ in range(args.repeats):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    separate = best["fingerprint"] + best["conditioned"] + best["response_alone"]
    together = best["shared"] + best["response_alone"]
    n_tok = int(lengths.sum())
    print(f"{args.n} demo samples, {n_tok} tokens, {len(batches)} batches: " +
          ", ".join(f"{k} {v:.2f} s" for k, v in best.items()))
    print(f"fingerprints + IFD separately {separate:.2f} s, sharing the conditioned pass {together:.2f} s")
    saving = (separate - together) / args.n * 1000
    print(f"ifd: shared_vs_separate={together / separate:.2f} saving_s_per_1k={saving:.1f} "
          f"ifd_pass_vs_fingerprint={(best['conditioned'] + best['response_alone']) / best['fingerprint']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
