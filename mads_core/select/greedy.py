"""MADS selection: exact greedy max-coverage over packed activation fingerprints.

A sample's fingerprint is the set of MLP neurons it fires. MADS ranks samples by
greedy maximum coverage: each pick is the sample whose still-counting neurons
("elements") weigh the most. The objective is monotone submodular, so the greedy is a
(1 - 1/e)-approximation and every budget is a prefix of one ranking.

Exactness and ties. :func:`select_mads` makes exactly the picks of the brute-force
:func:`naive_greedy`: highest gain first, ties to the **lowest row index**. Gains are
integers (idf weights are quantised to ``round(1024 * ln(N / count))``) so ties are
exact and implementation-independent.

Speed. The greedy is lazy: each row keeps its last computed gain, an upper bound of its
current gain by submodularity; only a stale top of the priority queue is re-evaluated
(popcount over packed uint64 words in numba; weighted gains use bit-sliced weights).
When the still-counting elements fit in a quarter of the current words, the remaining
rows are compacted to those elements, so later evaluations read less memory
(``mads_core.select.bitops``). Setup passes (initial gains, firing counts, compaction) run in
parallel; the lazy loop itself is sequential.

Memory. Besides the input (read in place, memmaps included) the greedy holds O(N + D)
state, the newly-covered lists (one int64 per counted element) and, after the first
compaction, a compacted copy of at most a quarter of the rows' words.

Saturation. Plain coverage stops gaining after a few hundred picks on real data; see
``SelectConfig.continuation`` for what happens then (rounds, m-cover, finer states,
or index-order filler).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mads_core.config import SelectConfig
from mads_core.select import bitops

IDF_SCALE = 1024  # idf weights are integers in units of 1/1024 nat

__all__ = ["IDF_SCALE", "Selection", "naive_greedy", "resolve_budget", "select_mads"]


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class Selection:
    """One method's full ranking; any budget is a prefix of ``ranking``.

    ranking: int64 (K,) row indices in pick order.
    gains: float64 (K,) objective gain of each pick (elements, or nats under idf).
    coverage: float64 (K,) objective after each pick: the running sum of ``gains``
        (under "rounds" it keeps growing across rounds; monotone in every case).
    rounds: int32 (K,) number of resets before each pick (0 for the first round and
        for continuations that never reset).
    n_neurons: D. Element ids in ``newly_ids`` are ``plane * n_neurons + neuron``;
        plane is always 0 except under ``continuation="states"``.
    newly_ptr, newly_ids: CSR list of the elements each pick counted: pick ``r``
        counted ``newly_ids[newly_ptr[r]:newly_ptr[r + 1]]`` (see :meth:`newly_covered`).
    neurons_covered: int64 (K,) distinct neurons (plane 0, unfiltered, unweighted)
        fired by the first ``r + 1`` picks — the plain union coverage of each prefix.
    filler_from: rank where zero-gain filler (remaining rows in index order) begins;
        ``len(ranking)`` when every pick had a positive gain.
    """

    method: str
    n: int
    ranking: np.ndarray      # int64 (K,) row indices, pick order
    gains: np.ndarray        # float64 (K,) objective gain at pick (NaN where a method has none)
    coverage: np.ndarray     # float64 (K,) objective after each pick (NaN where n/a)
    rounds: np.ndarray       # int32 (K,) round of each pick (0 when not applicable)
    settings: dict[str, Any] = field(default_factory=dict)
    settings_hash: str = ""
    n_neurons: int = 0
    newly_ptr: np.ndarray | None = None
    newly_ids: np.ndarray | None = None
    neurons_covered: np.ndarray | None = None
    filler_from: int = -1

    def __len__(self) -> int:
        return int(self.ranking.shape[0])

    def prefix(self, budget: int | float) -> np.ndarray:
        """Row indices of the first ``budget`` picks (a count, or a fraction of ``n``)."""
        k = resolve_budget(budget, self.n)
        if k > len(self):
            raise ValueError(f"budget {budget!r} -> {k} picks, but this ranking holds only {len(self)}")
        return self.ranking[:k]

    def newly_covered(self, rank: int) -> np.ndarray:
        """Element ids (ascending) that pick ``rank`` (0-based) counted, as int64.

        For plain coverage these are the neurons it covered first; under "mcover" the
        elements whose count it raised while still below ``m``; under "states"
        ``plane * n_neurons + neuron``. Zero-gain filler picks count nothing.
        """
        if self.newly_ptr is None or self.newly_ids is None:
            raise ValueError(f"method {self.method!r} records no covered elements")
        if not -len(self) <= rank < len(self):
            raise IndexError(f"rank {rank} out of range for {len(self)} picks")
        rank %= len(self)
        return self.newly_ids[self.newly_ptr[rank]:self.newly_ptr[rank + 1]]


def resolve_budget(budget: int | float, n: int) -> int:
    """A budget as a pick count: an int in [1, n], or a float fraction in (0, 1] of ``n``.

    Fractions round half up and give at least one pick. Raises ValueError naming the
    value and ``n`` for 0, negatives, NaN, inf, non-integer values > 1, or more than ``n``.
    """
    if isinstance(budget, (bool, np.bool_)) or not isinstance(budget, (int, float, np.integer, np.floating)):
        raise ValueError(f"budget must be a count or a fraction, got {budget!r} (N = {n})")
    if isinstance(budget, (int, np.integer)):
        k = int(budget)
    else:
        b = float(budget)
        if not math.isfinite(b) or b <= 0:
            raise ValueError(f"budget must be >= 1 or a fraction in (0, 1], got {budget!r} (N = {n})")
        if b <= 1.0:
            k = max(1, math.floor(b * n + 0.5))
        elif b.is_integer():
            k = int(b)
        else:
            raise ValueError(f"budget {budget!r} is neither a whole count nor a fraction in (0, 1] (N = {n})")
    if k < 1:
        raise ValueError(f"budget must be at least 1 pick, got {budget!r} (N = {n})")
    if k > n:
        raise ValueError(f"budget {budget!r} exceeds the number of samples N = {n}")
    return k


# --------------------------------------------------------------------------- ground set


def _as_rows(arr: np.ndarray, name: str, ndim: int) -> np.ndarray:
    """Plain C-contiguous uint64 ndarray view of ``arr`` (no copy for memmaps)."""
    out = np.asarray(arr)
    if out.dtype != np.uint64:
        raise TypeError(f"{name} must be packed uint64 words, got dtype {out.dtype}")
    if out.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {out.shape}")
    return out if out.flags.c_contiguous else np.ascontiguousarray(out)


def _ground(bits: np.ndarray, n_neurons: int, planes: np.ndarray | None, config: SelectConfig) -> np.ndarray:
    """The (P, N, W) rows the objective counts: all planes for "states", else bits."""
    b = _as_rows(bits, "bits", 2)
    n, w = b.shape
    if n < 1:
        raise ValueError("bits has no rows (N = 0)")
    if n_neurons < 1 or w != -(-n_neurons // 64):
        need = -(-n_neurons // 64)
        raise ValueError(f"bits has {w} words per row but n_neurons = {n_neurons} needs {need}")
    if config.continuation != "states":
        return b.reshape(1, n, w)
    if planes is None:
        raise ValueError('continuation="states" needs the fingerprint planes (planes=None given)')
    p = _as_rows(planes, "planes", 3)
    if p.shape[1:] != b.shape:
        raise ValueError(f"planes shape {p.shape} does not match bits shape {b.shape}")
    return p


def _layer_mask(n_neurons: int, n_words: int, config: SelectConfig, layer_offsets) -> np.ndarray:
    """(W*64,) bool: neuron positions that exist and belong to the chosen layers."""
    mask = np.zeros(n_words * 64, dtype=bool)
    if config.layer_subset is None:
        mask[:n_neurons] = True
        return mask
    if layer_offsets is None:
        raise ValueError("layer_subset needs layer_offsets (the fingerprint's first neuron of each layer)")
    offs = [int(o) for o in layer_offsets]
    rising = all(a <= b for a, b in zip(offs, offs[1:], strict=False))
    if len(offs) < 2 or offs[0] != 0 or offs[-1] != n_neurons or not rising:
        raise ValueError(f"layer_offsets must rise from 0 to n_neurons = {n_neurons}, got {tuple(offs)}")
    for pos in config.layer_subset:
        if pos >= len(offs) - 1:
            raise ValueError(f"layer_subset position {pos} out of range: {len(offs) - 1} hooked layers")
        mask[offs[pos]:offs[pos + 1]] = True
    return mask


def element_weights(counts: np.ndarray, n: int, config: SelectConfig, layer_mask: np.ndarray) -> np.ndarray:
    """Integer weight of every element (0 = never counts) from per-element firing counts.

    ``counts`` is (P, L) (L >= D); ``layer_mask`` (L,) marks real, selected neurons.
    Shared by the fast and the naive greedy, so both see identical weights.
    """
    counts = np.asarray(counts, dtype=np.int64)
    keep = layer_mask[None, :] & (counts >= max(1, config.min_support))
    keep &= counts <= config.max_neuron_share * n
    if config.weighting == "uniform":
        return keep.astype(np.int64)
    with np.errstate(divide="ignore"):
        idf = np.log(n / np.maximum(counts, 1).astype(np.float64))
    w = np.rint(idf * IDF_SCALE).astype(np.int64)
    return np.where(keep, w, 0)


def _needs_counts(config: SelectConfig) -> bool:
    return config.weighting != "uniform" or config.min_support > 1 or config.max_neuron_share < 1.0


# --------------------------------------------------------------------------- fast greedy


def select_mads(
    bits: np.ndarray,
    n_neurons: int,
    budget: int | float,
    config: SelectConfig | None = None,
    planes: np.ndarray | None = None,
    layer_offsets: tuple[int, ...] | list[int] | np.ndarray | None = None,
) -> Selection:
    """Rank samples by exact lazy greedy max coverage of their fingerprints (MADS).

    bits: (N, W) packed uint64 fingerprints (plane 0; may be a read-only memmap).
    n_neurons: D, the neurons per fingerprint (``W == ceil(D / 64)``).
    budget: picks to rank — a count in [1, N] or a fraction in (0, 1] of N.
    config: :class:`SelectConfig` (default: rounds, uniform weights, no filters).
    planes: (P, N, W) finer activation planes, needed for ``continuation="states"``.
    layer_offsets: first neuron of each hooked layer (+ D), for ``layer_subset``.
    """
    config = config or SelectConfig()
    mat = _ground(bits, n_neurons, planes, config)
    n_planes, n, n_words = mat.shape
    k = resolve_budget(budget, n)
    layer_mask = _layer_mask(n_neurons, n_words, config, layer_offsets)
    weighted = config.weighting != "uniform"
    if _needs_counts(config):
        weights = element_weights(bitops.column_counts(mat, bitops.n_threads()), n, config, layer_mask)
    else:
        weights = np.broadcast_to(layer_mask.astype(np.int64), (n_planes, layer_mask.size))
    ranking, gains, rounds, ptr, ids, filler_from = _greedy(mat, weights, weighted, k, config, n_neurons)
    plane0 = mat[0] if config.continuation == "states" else mat.reshape(n, n_words)
    union = bitops.union_curve(plane0, ranking, bitops.valid_mask(n_neurons, n_words))
    return _result("mads", n, n_neurons, config, ranking, gains, rounds, ptr, ids, union, filler_from,
                   weighted)


def _greedy(mat, weights, weighted, budget, config, n_neurons, batch=True):
    """Drive ``bitops.greedy_run`` through compactions, round resets and the zero-gain tail.

    ``weights`` (P, W*64) int64: element weights, 0 = never counts. Returns ranking,
    integer gains, rounds, newly-covered CSR (ptr, ids) and the filler start.
    """
    n_planes, n, n_words = mat.shape
    m = config.m if config.continuation == "mcover" else 1
    reset = config.continuation != "none"
    base_cov = bitops.pack_bits(weights <= 0)
    wts = np.ascontiguousarray(weights) if weighted else np.zeros((1, 1), dtype=np.int64)
    wsl = bitops.weight_slices(wts) if weighted else np.zeros((1, 1, 1), dtype=np.uint64)
    colmap0 = np.arange(n_words * 64, dtype=np.int64)[None, :] + n_neurons * np.arange(n_planes)[:, None]
    colmap0[:, n_neurons:] = -1
    left0 = int(sum(bitops.popcount_words(~base_cov[p]) for p in range(n_planes)))
    ucnt0 = np.empty(n, dtype=np.int64)
    g0 = bitops.initial_gains(mat, base_cov, wts, wsl, ucnt0, weighted)

    def fresh():
        cnt = np.zeros((n_planes, n_words * 64) if m > 1 else (1, 1), dtype=np.int32)
        return mat, base_cov.copy(), colmap0, wts, wsl, cnt

    rep = fresh()
    ucnt = ucnt0.copy()
    heap = np.arange(n, dtype=np.int64)
    ub = g0.copy()
    stamp = np.zeros(n, dtype=np.int64)
    bitops.heapify(heap, n, ub)
    sc = np.zeros(bitops.N_SC, dtype=np.int64)
    sc[bitops.SC_SIZE] = n
    sc[bitops.SC_LEFT] = left0
    ranking = np.empty(budget, dtype=np.int64)
    gains = np.zeros(budget, dtype=np.int64)
    rounds = np.zeros(budget, dtype=np.int32)
    ptr = np.zeros(budget + 1, dtype=np.int64)
    ids = np.empty(max(1024, min(left0, 1 << 22)), dtype=np.int64)
    filler_from = budget
    threads = bitops.n_threads()
    cand = np.empty(bitops.BATCH_SIZE, dtype=np.int64)
    vals = np.empty(bitops.BATCH_SIZE, dtype=np.int64)
    batch_min = bitops.BATCH_MIN if threads > 1 and batch else budget * n + 1
    with ThreadPoolExecutor(max_workers=max(1, threads - 1)) as pool:
        while True:
            status, ids = bitops.greedy_run(
                *rep, weighted, m, ucnt, heap, ub, stamp, sc, ranking, gains, rounds, ptr, ids, budget, True,
                bitops.COMPACT_SHRINK, bitops.COMPACT_HORIZON, cand, vals, batch_min)
            done = int(sc[bitops.SC_K])
            if status == bitops.DONE:
                break
            if status == bitops.BATCH:
                _eval_parallel(pool, threads, rep, weighted, ucnt, cand, vals, int(sc[bitops.SC_NCAND]))
                continue
            if status == bitops.COMPACT:
                alive = ub > 0
                alive[ranking[:done]] = False
                rep = bitops.compact(*rep, weighted, m, alive)
                continue
            remaining = heap[: int(sc[bitops.SC_SIZE])]
            if reset and bool(np.any(g0[remaining] > 0)):
                rep = fresh()
                ucnt[:] = ucnt0
                sc[bitops.SC_VERSION] += 1
                sc[bitops.SC_ROUND] += 1
                sc[bitops.SC_LEFT] = left0
                ub[remaining] = g0[remaining]
                stamp[remaining] = sc[bitops.SC_VERSION]
                bitops.heapify(heap, remaining.size, ub)
                continue
            filler_from = done
            ranking[done:] = np.sort(remaining)[: budget - done]
            rounds[done:] = sc[bitops.SC_ROUND]
            ptr[done + 1:] = ptr[done]
            break
    return ranking, gains, rounds, ptr, ids[: ptr[budget]].copy(), filler_from


def _eval_parallel(pool, threads, rep, weighted, ucnt, cand, vals, n_cand) -> None:
    """Evaluate ``cand[:n_cand]`` on ``threads`` threads (numba kernels release the GIL)."""
    mat, cov, _, wts, wsl, _ = rep
    cuts = np.linspace(0, n_cand, threads + 1).astype(int)
    futures = [pool.submit(bitops.eval_rows, mat, cov, wts, wsl, ucnt, weighted, cand, vals, int(lo), int(hi))
               for lo, hi in zip(cuts[1:-1], cuts[2:], strict=True)]
    bitops.eval_rows(mat, cov, wts, wsl, ucnt, weighted, cand, vals, 0, int(cuts[1]))
    for fut in futures:
        fut.result()


def _result(method, n, n_neurons, config, ranking, gains, rounds, ptr, ids, union, filler_from, weighted):
    gains_int = np.asarray(gains, dtype=np.int64)
    scale = float(IDF_SCALE) if weighted else 1.0
    sel = Selection(
        method=method,
        n=n,
        ranking=np.asarray(ranking, dtype=np.int64),
        gains=gains_int.astype(np.float64) / scale,
        coverage=np.cumsum(gains_int).astype(np.float64) / scale,
        rounds=np.asarray(rounds, dtype=np.int32),
        settings=config.to_dict(),
        settings_hash=config.cache_hash(),
        n_neurons=int(n_neurons),
        newly_ptr=np.asarray(ptr, dtype=np.int64),
        newly_ids=np.asarray(ids, dtype=np.int64),
        neurons_covered=np.asarray(union, dtype=np.int64),
        filler_from=int(filler_from),
    )
    for name in ("ranking", "gains", "coverage", "rounds", "newly_ptr", "newly_ids", "neurons_covered"):
        getattr(sel, name).setflags(write=False)  # the result is frozen, its arrays too
    return sel


# --------------------------------------------------------------------------- brute-force reference


def naive_greedy(
    fired: np.ndarray,
    budget: int | float,
    config: SelectConfig | None = None,
    layer_offsets: tuple[int, ...] | list[int] | np.ndarray | None = None,
) -> Selection:
    """Brute-force reference greedy over unpacked bool fingerprints (tests, small data).

    fired: (N, D) bool, or (P, N, D) bool planes (plane 0 = fires; all planes are the
    ground set under ``continuation="states"``, only plane 0 otherwise). Recomputes every
    remaining gain at every step; picks the highest gain, ties to the lowest row index.
    """
    config = config or SelectConfig()
    x = np.asarray(fired, dtype=bool)
    if x.ndim == 2:
        x = x[None]
    if config.continuation == "states" and np.asarray(fired).ndim != 3:
        raise ValueError('continuation="states" needs (P, N, D) planes')
    if config.continuation != "states":
        x = x[:1]
    n_planes, n, d = x.shape
    k = resolve_budget(budget, n)
    layer_mask = _layer_mask(d, -(-d // 64), config, layer_offsets)[:d]
    weights = element_weights(x.sum(axis=1), n, config, layer_mask)
    m = config.m if config.continuation == "mcover" else 1
    reset = config.continuation != "none"
    xi = x.astype(np.int64)
    g0 = np.einsum("pnd,pd->n", xi, weights)
    taken = np.zeros(n, dtype=bool)
    hits = np.zeros((n_planes, d), dtype=np.int64)
    ranking, gains, rounds, newly = [], [], [], []
    rnd, filler_from = 0, k
    while len(ranking) < k:
        live = np.where(hits < m, weights, 0)
        g = np.where(taken, -1, np.einsum("pnd,pd->n", xi, live))
        if g.max() <= 0:
            if reset and np.any(g0[~taken] > 0):
                hits[:] = 0
                rnd += 1
                continue
            filler_from = len(ranking)
            rest = np.flatnonzero(~taken)[: k - len(ranking)]
            ranking += rest.tolist()
            gains += [0] * rest.size
            rounds += [rnd] * rest.size
            newly += [np.zeros(0, dtype=np.int64)] * rest.size
            break
        i = int(np.argmax(g))
        counted = x[:, i, :] & (live > 0)
        hits += counted
        taken[i] = True
        ranking.append(i)
        gains.append(int(g[i]))
        rounds.append(rnd)
        p_idx, d_idx = np.nonzero(counted)
        newly.append(np.sort(p_idx * d + d_idx))
    ptr = np.concatenate([[0], np.cumsum([a.size for a in newly])]).astype(np.int64)
    ids = np.concatenate(newly).astype(np.int64) if newly else np.zeros(0, dtype=np.int64)
    union = np.logical_or.accumulate(np.asarray(fired, dtype=bool).reshape(-1, n, d)[0][ranking], axis=0)
    weighted = config.weighting != "uniform"
    return _result("mads_naive", n, d, config, ranking, gains, rounds, ptr, ids, union.sum(axis=1),
                   filler_from, weighted)

