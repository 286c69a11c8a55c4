"""Fingerprinting speed on the demo with the bundled model.

Measures, in one run and on the same padded batches:
  * fingerprinting (hooks + pooling + bit packing) vs a plain forward pass of the
    base model (target: overhead <= 1.10);
  * length-sorted vs unsorted batching, both fingerprinting (target: >= 1.3x);
  * samples/s and tokens/s (real tokens, template included; padding excluded).
Passes are interleaved and repeated; the fastest repeat of each is kept, since
these machines are noisy. Last line:
  fingerprint: overhead=<x> bucketing_speedup=<y> tokens_per_s=<z>

Usage: python bench/fingerprint.py [--n 384] [--repeats 2] [--batch-size 16] [--device auto]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/select.py would shadow the standard library's `select` module: drop bench/ from the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from mads_core.config import FingerprintConfig, ModelSpec  # noqa: E402
from mads_core.data.demo import load_demo  # noqa: E402
from mads_core.model.fingerprint import (  # noqa: E402
    ActivationRecorder,
    encode_sample,
    fingerprint_batch,
    forward_batch,
    make_batch,
    pad_token_id,
)
from mads_core.model.models import load_model  # noqa: E402


def batches_in(order, encoded, batch_size, pad_id):
    return [
        make_batch([encoded[i] for i in order[s : s + batch_size]], pad_id) for s in range(0, len(order), batch_size)
    ]


def time_pass(fn, batches) -> float:
    start = time.perf_counter()
    for batch in batches:
        fn(batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=384, help="demo samples to time (seeded subset)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--model", default="bundled")
    parser.add_argument("--data", default="default", help="demo preset")
    args = parser.parse_args()

    import torch

    dataset = load_demo(args.data)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(dataset), size=min(args.n, len(dataset)), replace=False))
    loaded = load_model(ModelSpec(name=args.model, device=args.device, dtype=args.dtype))
    config = FingerprintConfig(batch_size=args.batch_size)
    encoded = [encode_sample(loaded.tokenizer, dataset.turns[i], config, config.max_tokens) for i in rows]
    lengths = np.array([len(s.input_ids) for s in encoded])
    pad_id = pad_token_id(loaded.tokenizer)
    sorted_batches = batches_in(np.argsort(lengths, kind="stable"), encoded, args.batch_size, pad_id)
    shuffled_batches = batches_in(rng.permutation(len(encoded)), encoded, args.batch_size, pad_id)
    recorder = ActivationRecorder(loaded.model, None, config)
    n_tokens = int(lengths.sum())
    padded = {
        "sorted": sum(b.input_ids.numel() for b in sorted_batches),
        "unsorted": sum(b.input_ids.numel() for b in shuffled_batches),
    }
    print(
        f"model={loaded.identity['name']} device={loaded.device} dtype={loaded.dtype} "
        f"threads={torch.get_num_threads()} samples={len(encoded)} tokens={n_tokens} "
        f"padded_tokens sorted={padded['sorted']} unsorted={padded['unsorted']}"
    )

    def fingerprint(batch):
        fingerprint_batch(loaded, recorder, batch)

    def plain(batch):
        forward_batch(loaded, batch)

    times: dict[str, list[float]] = {"plain": [], "fingerprint": [], "unsorted": []}
    with torch.inference_mode():
        time_pass(plain, sorted_batches[:2])  # warm-up
        for repeat in range(args.repeats):
            times["plain"].append(time_pass(plain, sorted_batches))
            with recorder:
                times["fingerprint"].append(time_pass(fingerprint, sorted_batches))
                times["unsorted"].append(time_pass(fingerprint, shuffled_batches))
            print(f"repeat {repeat + 1}: " + "  ".join(f"{k}={v[-1]:.2f}s" for k, v in times.items()))
    best = {k: min(v) for k, v in times.items()}
    overhead = best["fingerprint"] / best["plain"]
    speedup = best["unsorted"] / best["fingerprint"]
    tokens_per_s = n_tokens / best["fingerprint"]
    print(f"samples_per_s={len(encoded) / best['fingerprint']:.1f} (fingerprinting, length-sorted)")
    print(f"plain forward tokens_per_s={n_tokens / best['plain']:.0f}")
    print(f"fingerprint: overhead={overhead:.3f} bucketing_speedup={speedup:.2f} tokens_per_s={tokens_per_s:.0f}")


if __name__ == "__main__":
    main()
