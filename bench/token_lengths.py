"""Token lengths of the demo presets as the model reads them: what the default ``--max-tokens`` is chosen from.

Renders every sample with the bundled SmolLM2 tokenizer and the default settings
(chat template, empty system prompt), without truncation, and prints percentiles of
the total length and of the own (pooled) tokens, and the share of samples a window
of 128 / 256 / 512 tokens would cut. No model forward pass.

    python bench/token_lengths.py [preset ...]      (default: default chatterbot ifbench evals-8k)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

# the repository root instead of bench/ (whose select.py would shadow the standard library's select)
sys.path[0] = str(Path(__file__).resolve().parents[1])

from mads_core.config import FingerprintConfig  # noqa: E402
from mads_core.data.demo import load_demo  # noqa: E402
from mads_core.model.encode import encode_sample  # noqa: E402

PERCENTILES = (50, 90, 95, 99)
WINDOWS = (128, 256, 512)


def main(argv: list[str]) -> int:
    from transformers import AutoTokenizer

    from mads_core.model.models import bundled_model_dir

    tok = AutoTokenizer.from_pretrained(bundled_model_dir())
    cfg = FingerprintConfig()
    presets = argv or ["default", "chatterbot", "ifbench", "evals-8k"]
    head = " ".join(f"{'p' + str(p):>6}" for p in PERCENTILES)
    cut = " ".join(f"{'>' + str(w):>6}" for w in WINDOWS)
    print(f"{'preset':<11} {'N':>6} {'what':<6} {head} {'max':>6}   share cut by a window of {cut}")
    for name in presets:
        ds = load_demo(name)
        enc = [encode_sample(tok, t, cfg, 1 << 30) for t in ds.turns]
        for what, values in (("total", [len(e.input_ids) for e in enc]), ("own", [e.n_own for e in enc])):
            v = np.asarray(values)
            pct = " ".join(f"{int(np.percentile(v, p)):>6}" for p in PERCENTILES)
            shares = " ".join(f"{np.mean(v > w):>6.1%}" for w in WINDOWS) if what == "total" else ""
            print(f"{name:<11} {len(v):>6} {what:<6} {pct} {v.max():>6}   {shares}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
