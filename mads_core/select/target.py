"""Selection aimed at a target capability: a set of examples of what the user cares about.

The target set is any file the loader reads; it is fingerprinted with the same model
and settings as the pool (its own cache entry), so its bits share the pool's neurons.

* ``target-mads`` — target-aware coverage (a MADS mode): the greedy of
  ``mads_core.select.greedy`` with each neuron weighted by **how many target samples
  fire it** (integer weights, so ties stay exact), so it covers first what the target
  uses; neurons the target never fires weigh 0 and never count. The pool filters of
  ``SelectConfig`` (``min_support``, ``max_neuron_share``, ``layer_subset``) apply as in
  MADS, as does ``continuation`` (except ``"states"``, which needs per-plane target
  counts: refused). ``gains[r]`` = the summed target firing counts of the neurons pick r
  newly covered ("target-weighted neurons").
* ``nait`` — a NAIT-style ranking (neuron-activation alignment with in-domain
  directions; "NAIT", Liu et al. 2025, ranks candidates by how well their activation
  features align with the principal directions of in-domain examples). Here the
  features are the binary fingerprints: the top ``n_directions`` right singular vectors
  ``V`` (D x r) of the target's fingerprint matrix (uncentred, so the first is the
  target's mean firing direction), and a sample's score is the share of its unit
  fingerprint's energy inside that subspace, ``||V^T x||^2 / ||x||^2`` in [0, 1]
  (sign-free; 0 for a sample that fires nothing). Highest first, ties to the lowest
  index. Differs from NAIT in using thresholded bits instead of continuous activations.
  ``gains[r]`` = that score.
"""

from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np
import scipy.sparse as sp

from mads_core.config import SelectConfig
from mads_core.select import bitops
from mads_core.select import greedy as _greedy_mod
from mads_core.select.bitops import ctz64
from mads_core.select.greedy import Selection, element_weights, resolve_budget
from mads_core.select.ranking import make_selection, order_by_score, settings_hash

DEFAULT_DIRECTIONS = 8


def _rows(bits: np.ndarray, n_neurons: int, name: str) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(bits))
    if x.dtype != np.uint64 or x.ndim != 2 or x.shape[1] != -(-n_neurons // 64):
        raise ValueError(f"{name} must be (N, ceil({n_neurons}/64)) packed uint64, got {x.dtype} {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} has no rows")
    return x


def target_counts(target_bits: np.ndarray, n_neurons: int) -> np.ndarray:
    """(W*64,) int64: how many target samples fire each neuron (padding bits 0)."""
    t = _rows(target_bits, n_neurons, "target bits")
    return bitops.column_counts(t.reshape(1, *t.shape), bitops.n_threads())[0]


def select_target_mads(
    bits: np.ndarray,
    n_neurons: int,
    target_bits: np.ndarray,
    budget: int | float,
    config: SelectConfig | None = None,
    layer_offsets=None,
) -> Selection:
    """Target-aware MADS: coverage with neuron weight = target firing count (module docstring)."""
    config = config or SelectConfig()
    if config.continuation == "states":
        raise ValueError('target-mads does not support continuation="states" (needs per-plane target counts)')
    if config.weighting != "uniform":
        raise ValueError("target-mads sets its own weights (target firing counts): use weighting='uniform'")
    x = _rows(bits, n_neurons, "bits")
    n, n_words = x.shape
    k = resolve_budget(budget, n)
    mat = x.reshape(1, n, n_words)
    layer_mask = _greedy_mod._layer_mask(n_neurons, n_words, config, layer_offsets)
    pool_counts = bitops.column_counts(mat, bitops.n_threads())
    keep = element_weights(pool_counts, n, config, layer_mask)  # 0/1 under uniform weighting
    weights = np.ascontiguousarray(keep * target_counts(target_bits, n_neurons)[None, :])
    ranking, gains, rounds, ptr, ids, filler_from = _greedy_mod._greedy(mat, weights, True, k, config, n_neurons)
    union = bitops.union_curve(x, ranking, bitops.valid_mask(n_neurons, n_words))
    sel = _greedy_mod._result("target-mads", n, n_neurons, config, ranking, gains, rounds, ptr, ids, union,
                              filler_from, False)
    settings = {**config.to_dict(), "budget": budget, "target_samples": int(np.asarray(target_bits).shape[0]),
                "gain": "target-weighted neurons newly covered (sum of target firing counts)"}
    return replace(sel, settings=settings, settings_hash=settings_hash("target-mads", settings))


def _target_matrix(target_bits: np.ndarray, n_neurons: int) -> sp.csr_matrix:
    rows, cols = np.nonzero(bitops.unpack_bits(np.asarray(target_bits), n_neurons))
    data = np.ones(rows.size, dtype=np.float64)
    return sp.csr_matrix((data, (rows, cols)), shape=(np.asarray(target_bits).shape[0], n_neurons))


def target_directions(target_bits: np.ndarray, n_neurons: int, n_directions: int = DEFAULT_DIRECTIONS
                      ) -> np.ndarray:
    """(D, r) float64 top right singular vectors of the target's 0/1 fingerprint matrix (uncentred).

    Exact SVD of the small T x T Gram matrix (T = target samples), so it is deterministic.
    """
    t = _target_matrix(_rows(target_bits, n_neurons, "target bits"), n_neurons)
    gram = (t @ t.T).toarray().astype(np.float64)
    vals, vecs = np.linalg.eigh(gram)
    order = np.argsort(-vals, kind="stable")
    r = int(min(n_directions, int(np.sum(vals > 1e-9 * max(vals.max(), 1.0)))))
    if r < 1:
        raise ValueError("the target set fires no neuron: no directions to align with")
    vals, vecs = vals[order[:r]], vecs[:, order[:r]]
    v = np.asarray(t.T @ vecs) / np.sqrt(vals)[None, :]  # (D, r) orthonormal columns
    return v


@numba.njit(cache=True, parallel=True)
def _projection_energy(bits, v, out):
    n, n_words = bits.shape
    r = v.shape[1]
    d = v.shape[0]
    for i in numba.prange(n):
        acc = np.zeros(r)
        pop = 0
        for w in range(n_words):
            word = bits[i, w]
            while word:
                j = w * 64 + ctz64(word)
                if j < d:
                    pop += 1
                    for c in range(r):
                        acc[c] += v[j, c]
                word &= word - np.uint64(1)
        if pop == 0:
            out[i] = 0.0
        else:
            s = 0.0
            for c in range(r):
                s += acc[c] * acc[c]
            out[i] = s / pop


def nait_scores(bits: np.ndarray, n_neurons: int, target_bits: np.ndarray,
                n_directions: int = DEFAULT_DIRECTIONS) -> np.ndarray:
    """(N,) float64 share of each unit fingerprint's energy in the target's principal subspace."""
    x = _rows(bits, n_neurons, "bits")
    v = target_directions(target_bits, n_neurons, n_directions)
    out = np.empty(x.shape[0])
    _projection_energy(x, np.ascontiguousarray(v), out)
    return out


def select_nait(bits: np.ndarray, n_neurons: int, target_bits: np.ndarray, budget: int | float,
                n_directions: int = DEFAULT_DIRECTIONS) -> Selection:
    """NAIT-style ranking by alignment with the target's principal directions (module docstring)."""
    x = _rows(bits, n_neurons, "bits")
    k = resolve_budget(budget, x.shape[0])
    scores = nait_scores(x, n_neurons, target_bits, n_directions)
    ranking = order_by_score(scores)[:k]
    settings = {"budget": budget, "n_directions": int(n_directions),
                "target_samples": int(np.asarray(target_bits).shape[0]),
                "gain": "share of the fingerprint's energy in the target's top principal directions"}
    return make_selection("nait", x.shape[0], ranking, scores[ranking], settings, n_neurons=n_neurons)
