"""Length, the obvious confounder: the ``longest`` baseline and a length-controlled MADS.

Under max pooling a longer sample has more chances to fire each neuron, so plain MADS
coverage favours long samples (on the demo its first picks sit at the token cap).

* ``longest`` — the samples with the longest responses first ("Long Is More for
  Alignment", Zhao et al., ICML 2024: the 1,000 longest responses are a strong
  instruction-tuning baseline). Length = characters of the last assistant turn; for a
  sample with no assistant turn, the characters of all its turns. ``gains[r]`` = that
  length (characters).
* ``mads-lenctl`` — MADS with length-normalised gains (cost-benefit greedy for a
  knapsack-style budget, Leskovec et al., KDD 2007): each pick maximises
  ``gain / own_tokens ** alpha`` where ``gain`` is the number of still-uncovered neurons
  the sample fires and ``own_tokens`` its own (pooled) token count from the
  fingerprints. ``alpha = 0`` is plain MADS, ``alpha = 1`` is coverage per token.
  Lazy greedy (the ratio of a submodular gain to a fixed cost only shrinks), ties to
  the lowest row index; after saturation the covered set resets (as MADS's default
  ``rounds``). ``gains[r]`` = neurons newly covered by pick r (not the ratio);
  ``coverage`` = running sum of gains.
"""

from __future__ import annotations

import heapq

import numba
import numpy as np

from mads_core.data.loader import Dataset
from mads_core.select.bitops import popcount64
from mads_core.select.greedy import Selection, resolve_budget
from mads_core.select.ranking import make_selection, order_by_score

DEFAULT_ALPHA = 0.75


def response_lengths(dataset: Dataset) -> np.ndarray:
    """(N,) int64 characters of each sample's last assistant turn (all turns when it has none)."""
    out = np.empty(len(dataset), dtype=np.int64)
    for i in range(len(dataset)):
        response = dataset.response(i)
        out[i] = len(response) if response else sum(len(c) for _, c in dataset.turns[i])
    return out


def select_longest(dataset: Dataset, budget: int | float) -> Selection:
    """Longest responses first (Zhao et al., ICML 2024); ties to the lowest row index."""
    n = len(dataset)
    k = resolve_budget(budget, n)
    lengths = response_lengths(dataset)
    ranking = order_by_score(lengths.astype(np.float64))[:k]
    settings = {"budget": budget, "length": "characters of the last assistant turn (all turns if none)",
                "gain": "response length in characters"}
    return make_selection("longest", n, ranking, lengths[ranking].astype(np.float64), settings)


@numba.njit(cache=True, nogil=True)
def _gain(bits, i, cov):
    """Set bits of row ``i`` not in ``cov`` (the row's coverage gain)."""
    total = 0
    for w in range(bits.shape[1]):
        total += popcount64(bits[i, w] & ~cov[w])
    return total


@numba.njit(cache=True, parallel=True)
def _all_gains(bits, cov, out):
    for i in numba.prange(bits.shape[0]):
        out[i] = _gain(bits, i, cov)


def select_mads_lenctl(
    bits: np.ndarray,
    n_neurons: int,
    own_tokens: np.ndarray,
    budget: int | float,
    alpha: float = DEFAULT_ALPHA,
) -> Selection:
    """Length-controlled MADS: greedy on ``gain / own_tokens ** alpha`` (see module docstring).

    bits: (N, W) packed uint64 fingerprints (plane 0). own_tokens: (N,) own-token counts
    (``Fingerprints.token_counts``; a count below 1 is treated as 1). alpha >= 0.
    """
    x = np.ascontiguousarray(np.asarray(bits))
    n, n_words = x.shape
    if x.dtype != np.uint64 or n_words != -(-n_neurons // 64):
        raise ValueError(f"bits must be (N, ceil({n_neurons}/64)) uint64, got {x.dtype} {x.shape}")
    if not (alpha >= 0 and np.isfinite(alpha)):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    cost = np.maximum(np.asarray(own_tokens, dtype=np.float64), 1.0) ** float(alpha)
    if cost.shape != (n,):
        raise ValueError(f"own_tokens has shape {cost.shape}, expected ({n},)")
    k = resolve_budget(budget, n)
    empty = np.zeros(n_words, dtype=np.uint64)
    g0 = np.empty(n, dtype=np.int64)
    _all_gains(x, empty, g0)
    cov = empty.copy()
    # heap of (-ratio upper bound, row, stamp); stamp = covered-set version the bound was computed at
    version = 0
    heap = [(-(g0[i] / cost[i]), i, 0) for i in range(n)]
    heapq.heapify(heap)
    ranking, gains, rounds = [], [], []
    rnd = 0
    while len(ranking) < k:
        neg, i, stamp = heapq.heappop(heap)
        if stamp != version:
            g = _gain(x, i, cov)
            heapq.heappush(heap, (-(g / cost[i]), i, version))
            continue
        if -neg <= 0:  # every remaining gain is 0: reset (next round) or stop
            heapq.heappush(heap, (neg, i, stamp))
            if not any(g0[j] > 0 for _, j, _ in heap):
                break
            rnd += 1
            version += 1
            cov = empty.copy()
            heap = [(-(g0[j] / cost[j]), j, version) for _, j, _ in heap]
            heapq.heapify(heap)
            continue
        ranking.append(i)
        gains.append(_gain(x, i, cov))
        rounds.append(rnd)
        cov |= x[i]
        version += 1
    filler_from = len(ranking)
    if filler_from < k:
        rest = sorted(j for _, j, _ in heap)[: k - filler_from]
        ranking += rest
        gains += [0] * len(rest)
        rounds += [rnd] * len(rest)
    settings = {"budget": budget, "alpha": float(alpha), "length": "own tokens (fingerprint token_counts)",
                "continuation": "rounds",
                "gain": "neurons newly covered (picks maximise gain / own_tokens**alpha)"}
    gains_arr = np.array(gains, dtype=np.float64)
    return make_selection("mads-lenctl", n, np.array(ranking, dtype=np.int64), gains_arr, settings,
                          coverage=np.cumsum(gains_arr), filler_from=filler_from,
                          rounds=np.array(rounds, dtype=np.int32), n_neurons=n_neurons)
