"""Seeded synthetic inputs of the paper's geometry, for benchmarks and scale tests (no model runs).

Used by ``bench/select.py``, ``bench/scale.py``, ``bench/app_scale.py`` and
``tests/test_app_scale.py``; nothing in the product reads them.

* :func:`skewed_bits`: (N, ceil(D/64)) uint64 packed fingerprints with skewed, heterogeneous
  firing — neuron *d* has a base probability from a lognormal (median ``median_p``, sigma 2,
  capped at 95%), each block of 512 rows an activity *a* (lognormal, sigma 0.6, mean 1) and
  fires *d* with ``1 - (1 - p_d) ** a`` (max pooling over *a*-times as many tokens);
  ``uniform=p`` fires every bit with probability p (the lazy greedy's worst case). Filled by a
  numba geometric-skip kernel directly in packed form (a bit costs nothing unless set).
* :func:`synth_texts` / :func:`synth_embeddings`: Alpaca-like texts (Zipf words over an
  80,000-word vocabulary, 400 Zipf-sized topics with their own words, lognormal lengths:
  ~590 characters, ~66 distinct words per record) and 384-d unit "MiniLM" embeddings
  clustered by topic, tuned to the real demo's statistics (mean pairwise cosine 0.18, mean
  nearest-neighbour cosine 0.74, top-16/32/64 singular directions holding 55/65/75% of the
  variance).
* :func:`synth_planes`: the bundled model's geometry (D = 30 x 1,536 = 46,080, ~3.5% of
  bits set), planes 1.. random subsets of plane 0.
* :func:`build_app_inputs`: a JSONL dataset + fingerprints under the key the app looks up for
  the bundled model and default settings + embeddings under the embedding cache key, written
  once into a cache root, so the app opens an N-sample synthetic dataset without a model.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numba
import numpy as np

GEN_VERSION = 1
N_LAYERS, WIDTH = 30, 1536  # the bundled SmolLM2-135M: D = 46,080
EMB_DIM = 384
BLOCK_ROWS = 512


@numba.njit(cache=True, inline="always")
def _splitmix(state):
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@numba.njit(cache=True, parallel=True)
def _fill(out, probs, block_act, block_rows, seed):
    """Set bit (i, d) with probability 1 - (1 - probs[d]) ** act(i); geometric skips, row blocks."""
    n, n_words = out.shape
    d = probs.shape[0]
    for blk in numba.prange(block_act.shape[0]):
        r0 = blk * block_rows
        rows = min(n, r0 + block_rows) - r0
        act = block_act[blk]
        for j in range(d):
            p = 1.0 - (1.0 - probs[j]) ** act
            if p <= 0.0:
                continue
            w = j >> 6
            bit = np.uint64(1) << np.uint64(j & 63)
            if p >= 1.0:
                for i in range(rows):
                    out[r0 + i, w] |= bit
                continue
            st = np.uint64(seed) * np.uint64(0x632BE59BD9B4E019) + np.uint64(blk) * np.uint64(1000003)
            st = st ^ (np.uint64(j) * np.uint64(0xD6E8FEB86659FD93))
            lq = math.log1p(-p)
            i = -1
            while True:
                st, z = _splitmix(st)
                u = ((z >> np.uint64(11)) + np.uint64(1)) * (1.0 / 9007199254740992.0)
                i += 1 + int(math.log(u) / lq)
                if i >= rows:
                    break
                out[r0 + i, w] |= bit


def skewed_bits(n: int, d: int, seed: int = 0, uniform: float | None = None,
                median_p: float = 0.003) -> np.ndarray:
    """(n, ceil(d/64)) uint64 packed fingerprints (module docstring); deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    n_blocks = -(-n // BLOCK_ROWS)
    if uniform is None:
        probs = np.minimum(rng.lognormal(math.log(median_p), 2.0, d), 0.95)
        act = np.exp(rng.normal(0.0, 0.6, n_blocks))
        act /= act.mean()
    else:
        probs = np.full(d, float(uniform))
        act = np.ones(n_blocks)
    out = np.zeros((n, -(-d // 64)), dtype=np.uint64)
    _fill(out, probs, act, BLOCK_ROWS, seed)
    return out


def synth_texts(n: int, seed: int = 0, vocab: int = 80_000, topics: int = 400) -> tuple[list[str], np.ndarray]:
    """(texts, topic of each) — Zipf words plus topic words, lognormal lengths (see module docstring)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = np.array(["".join(rng.choice(letters, size=int(length))) for length in rng.integers(3, 10, size=vocab)],
                     dtype=object)
    p = 1.0 / np.arange(1, vocab + 1) ** 1.07
    p /= p.sum()
    topic = np.minimum(rng.zipf(1.3, size=n) - 1, topics - 1)
    topic_words = rng.integers(0, vocab, size=(topics, 300))
    n_words = np.clip(rng.lognormal(math.log(60), 0.8, size=n).astype(int), 3, 1500)
    total = int(n_words.sum())
    general = rng.choice(vocab, size=total, p=p)
    own = topic_words[np.repeat(topic, n_words), rng.integers(0, 300, size=total)]
    ids = np.where(rng.random(total) < 0.3, own, general)
    ends = np.cumsum(n_words)
    texts = [" ".join(words[ids[e - c:e]]) for c, e in zip(n_words, ends, strict=True)]
    return texts, topic


def synth_embeddings(n: int, topic: np.ndarray, seed: int = 1, local: int = 24) -> np.ndarray:
    """(n, 384) float32 unit rows clustered by ``topic`` (see module docstring)."""
    rng = np.random.default_rng(seed)
    topics = int(topic.max()) + 1
    centres = rng.standard_normal((topics, EMB_DIM)).astype(np.float32)
    common = rng.standard_normal(EMB_DIM).astype(np.float32)
    centres = centres / np.linalg.norm(centres, axis=1, keepdims=True) + 0.5 * common / np.linalg.norm(common)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    basis = rng.standard_normal((topics, EMB_DIM, local)).astype(np.float32) / np.sqrt(EMB_DIM * local)
    out = np.empty((n, EMB_DIM), dtype=np.float32)
    for s in range(0, n, 4096):
        t = topic[s:s + 4096]
        z = rng.standard_normal((len(t), local)).astype(np.float32)
        noise = rng.standard_normal((len(t), EMB_DIM)).astype(np.float32) / np.sqrt(EMB_DIM)
        out[s:s + 4096] = centres[t] + 0.55 * np.einsum("ndl,nl->nd", basis[t], z) + 0.45 * noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def synth_planes(n: int, n_planes: int, seed: int = 0) -> np.ndarray:
    """(P, n, 720) packed planes: skewed firing (~3.5% of bits), planes 1.. random subsets of plane 0."""
    d = N_LAYERS * WIDTH
    rng = np.random.default_rng(seed)
    block_rows = BLOCK_ROWS
    probs = np.minimum(rng.lognormal(math.log(0.006), 2.0, d), 0.95)
    act = np.exp(rng.normal(0.0, 0.6, -(-n // block_rows)))
    act /= act.mean()
    planes = np.zeros((n_planes, n, d // 64), dtype=np.uint64)
    _fill(planes[0], probs, act, block_rows, seed)
    for p in range(1, n_planes):
        keep = np.zeros((n, d // 64), dtype=np.uint64)
        _fill(keep, np.full(d, 0.35), np.ones(len(act)), block_rows, seed + p)
        planes[p] = planes[p - 1] & keep
    return planes


def build_app_inputs(n: int, out_dir: Path, cache: Path) -> tuple[Path, dict[str, float]]:
    """Write the dataset file, fingerprints and embeddings once; returns (dataset path, build seconds)."""
    from mads_core.config import FingerprintConfig, ModelSpec
    from mads_core.model.embed import CACHE_KIND, embedding_key
    from mads_core.model.fingerprint import (
        _column_counts,
        cached_fingerprints,
        canonical_config,
        fingerprint_key,
    )
    from mads_core.model.models import model_identity
    from mads_core.model.store import artifact_dir, save_arrays
    from mads_core.pipeline import load_data

    times: dict[str, float] = {}
    path = Path(out_dir) / f"synth_v{GEN_VERSION}_{n}.jsonl"
    t0 = time.perf_counter()
    texts, topic = synth_texts(n)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            for i, (text, t) in enumerate(zip(texts, topic, strict=True)):
                words = text.split(" ")
                cut = max(1, min(12, len(words) - 1))
                rec = {"id": f"s{i}", "instruction": " ".join(words[:cut]), "input": "",
                       "output": " ".join(words[cut:]), "category": f"topic-{int(t):03d}"}
                fh.write(json.dumps(rec) + "\n")
        tmp.replace(path)
    times["texts_s"] = time.perf_counter() - t0
    ds = load_data(str(path))
    spec, config = ModelSpec(), canonical_config(FingerprintConfig(), spec=ModelSpec())
    if cached_fingerprints(ds, spec, config, cache=cache) is None:
        t0 = time.perf_counter()
        key = fingerprint_key(ds.content_hash(), model_identity(spec), config)
        planes = synth_planes(n, len(config.planes))
        d = N_LAYERS * WIDTH
        meta = {"key": key, "dataset_name": ds.name, "dataset_hash": ds.content_hash(), "model": model_identity(spec),
                "settings": config.to_dict(), "layers": list(range(N_LAYERS)),
                "layer_offsets": [i * WIDTH for i in range(N_LAYERS + 1)], "n_neurons": d, "n_samples": n,
                "plane_thresholds": [float(t) for t in config.planes], "window": config.max_tokens,
                "synthetic": "mads_core.synthetic"}
        lengths = np.array([len(t.split(" ")) for t in texts], dtype=np.int32)
        save_arrays(artifact_dir("fingerprints", key, cache) / "result",
                    {"planes": planes, "firing_counts": _column_counts(planes[0], d), "token_counts": lengths,
                     "truncated": np.zeros(n, dtype=bool)}, meta)
        times["fingerprints_build_s"] = time.perf_counter() - t0
    key = embedding_key(ds)
    folder = artifact_dir(CACHE_KIND, key, cache)
    if not (folder / "embeddings.npy").exists():
        save_arrays(folder, {"embeddings": synth_embeddings(n, topic)},
                    {"kind": CACHE_KIND, "key": key, "n": n, "synthetic": "mads_core.synthetic"})
    return path, times
