"""Exact farthest-point kernel (numba) for dense rows: greedy k-center and prefix spread curves.

Both walk a pick order over N rows and keep, for every row, the distance to its nearest
pick (for a picked row: to its nearest *other* pick). Greedy k-center (Gonzalez's
farthest-first traversal) chooses the next pick as the farthest row (ties to the lowest
row index); :meth:`DenseSpace.prefix_curves` follows a given ranking instead and reports,
for every prefix, the k-center radius (largest distance of any row to its nearest pick)
and the mean nearest-neighbour distance among the picks.

Dense rows (sentence embeddings). A pick needs the distance of every row to it, which at
N = 52,000 x 384 float32 means streaming 80 MB per pick. Most rows cannot get closer to
the new pick than to their current nearest pick, and a cheap lower bound proves it: with
``V`` (d x r) orthonormal (the top right singular vectors of a row sample),
``||V^T (x - y)||^2 + (|x_perp| - |y_perp|)^2 <= ||x - y||^2`` (``x_perp``: the part of x
outside the projection), read from an (N, r) float32 projection that fits in cache and
summed in blocks of 8 dimensions so that most rows are ruled out after a few. Only
rows whose bound is below their current distance (plus a safety margin far above the
rounding error) get an exact distance. Cosine distance ``1 - cos`` is monotone in the
euclidean distance between unit rows, ``e = sqrt(2 (1 - cos))``, so the same bound holds
(an all-zero row is at cosine distance 1 from everything, i.e. e = sqrt(2) >= any bound).
Skipping a row is therefore exact: its nearest distance would not have changed.

Greedy k-center (:meth:`DenseSpace.farthest_first`, ``_farthest_dense``) keeps the first 8
projected dimensions of every row in their own contiguous (N, 8) array (ruling a row out
usually reads 32 bytes), skips picked rows, and measures the rows the bound lets through
two at a time (two independent 8-lane chains). Measured at N = 52,000 x 384, 7,800 picks,
128-d projection: the same picks as the previous kernel in 17.5 s CPU instead of 30.7 s
(``bench/baselines.py``); a FAISS flat-index update of every row per pick was 1.6-1.7x slower.

Arithmetic. Exact distances are sums of products in a fixed order, so results do not depend
on BLAS, threads or the pruning: the same input gives the same picks on every machine.
Products and sums are in the rows' dtype (float32 embeddings: float32, relative error
~1e-7, like BLAS), 8 interleaved lanes, combined pairwise. Cosine: ``clip(1 - dot, 0, 2)`` of unit rows;
euclidean: ``sqrt(max(|x|^2 - 2 x.y + |y|^2, 0))``.
"""

from __future__ import annotations

import numba
import numpy as np

# Dimensions of the pruning projection and the rows sampled to fit it.
PRUNE_DIMS = 64
PRUNE_FIT_ROWS = 8192
# Safety margin of the bound, in units of the largest row norm (rounding error is ~1e-6).
PRUNE_MARGIN = 1e-4


def prune_basis(x: np.ndarray, dims: int = PRUNE_DIMS, fit_rows: int = PRUNE_FIT_ROWS, seed: int = 0) -> np.ndarray:
    """(d, r) float64 orthonormal columns: the top eigenvectors of ``S^T S`` for a seeded row sample S of ``x``.

    (The top right singular vectors of S.) One BLAS thread: on shared cores OpenBLAS's
    spinning threads made this 6x slower, and one thread also fixes the rounding.
    """
    from threadpoolctl import threadpool_limits

    n, d = x.shape
    r = max(1, min(dims, d))
    if d <= r:
        return np.eye(d, dtype=np.float64)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(fit_rows, n), replace=False))
    sample = np.asarray(x[rows], dtype=np.float64)
    with threadpool_limits(limits=1, user_api="blas"):
        _, vectors = np.linalg.eigh(sample.T @ sample)  # ascending eigenvalues
    return np.ascontiguousarray(vectors[:, ::-1][:, :r])


@numba.njit(cache=True, nogil=True, inline="always")
def _distance(dot, sq_p, sq_j, cosine):
    """Cosine ``clip(1 - dot, 0, 2)`` of unit rows, or euclidean from squared norms and the dot."""
    if cosine:
        return min(max(1.0 - dot, 0.0), 2.0)
    return np.sqrt(max(sq_p - 2.0 * dot + sq_j, 0.0))


@numba.njit(cache=True, nogil=True, inline="always")
def _dot8(x, p, xj, acc):
    """Dot product of row ``p`` of ``x`` with ``xj`` in ``x``'s dtype: 8 interleaved lanes, fixed order."""
    d = x.shape[1]
    d8 = d - d % 8
    acc[:] = 0
    for t in range(0, d8, 8):
        for u in range(8):
            acc[u] += x[p, t + u] * xj[t + u]
    for t in range(d8, d):
        acc[0] += x[p, t] * xj[t]
    return np.float64(((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])))


@numba.njit(cache=True, nogil=True, inline="always")
def _dot8_rows(x, p, xj, zero):
    """:func:`_dot8` with the 8 lanes in local variables (no memory round trip): the same sums.

    ``zero`` is a 0 of ``x``'s dtype, so every product and sum stays in that dtype.
    """
    d = x.shape[1]
    d8 = d - d % 8
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zero
    for t in range(0, d8, 8):
        a0 += x[p, t] * xj[t]
        a1 += x[p, t + 1] * xj[t + 1]
        a2 += x[p, t + 2] * xj[t + 2]
        a3 += x[p, t + 3] * xj[t + 3]
        a4 += x[p, t + 4] * xj[t + 4]
        a5 += x[p, t + 5] * xj[t + 5]
        a6 += x[p, t + 6] * xj[t + 6]
        a7 += x[p, t + 7] * xj[t + 7]
    for t in range(d8, d):
        a0 += x[p, t] * xj[t]
    return np.float64(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)))


@numba.njit(cache=True, nogil=True, inline="always")
def _dot8_two(x, p, q, xj, zero):
    """:func:`_dot8_rows` of rows ``p`` and ``q`` at once (two independent chains: twice the throughput)."""
    d = x.shape[1]
    d8 = d - d % 8
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = zero
    b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = zero
    for t in range(0, d8, 8):
        y0, y1, y2, y3 = xj[t], xj[t + 1], xj[t + 2], xj[t + 3]
        y4, y5, y6, y7 = xj[t + 4], xj[t + 5], xj[t + 6], xj[t + 7]
        a0 += x[p, t] * y0
        a1 += x[p, t + 1] * y1
        a2 += x[p, t + 2] * y2
        a3 += x[p, t + 3] * y3
        a4 += x[p, t + 4] * y4
        a5 += x[p, t + 5] * y5
        a6 += x[p, t + 6] * y6
        a7 += x[p, t + 7] * y7
        b0 += x[q, t] * y0
        b1 += x[q, t + 1] * y1
        b2 += x[q, t + 2] * y2
        b3 += x[q, t + 3] * y3
        b4 += x[q, t + 4] * y4
        b5 += x[q, t + 5] * y5
        b6 += x[q, t + 6] * y6
        b7 += x[q, t + 7] * y7
    for t in range(d8, d):
        a0 += x[p, t] * xj[t]
        b0 += x[q, t] * xj[t]
    return (np.float64(((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))),
            np.float64(((b0 + b1) + (b2 + b3)) + ((b4 + b5) + (b6 + b7))))


@numba.njit(cache=True, nogil=True, inline="always")
def _bound_limit(m, cosine, margin):
    """Squared limit below which the projection bound cannot rule a row out (row's distance ``m``)."""
    lim = (np.sqrt(2.0 * m) if cosine else m) + margin
    return lim * lim


@numba.njit(cache=True, nogil=True)
def _pick_update(x, z, z8, rest, sq, cosine, margin, xj, zj, rest_j, sqj, val, lim2, lo, hi, cand, zero):
    """One pick's update of rows ``lo:hi``; returns (farthest row's distance, its index, exact distances).

    A row whose projection bound exceeds its limit (``lim2``; -1 for picked rows) keeps its
    distance; the others are listed in ``cand[lo:]`` and measured exactly, two at a time.
    The farthest row is the first index on ties.
    """
    r = z.shape[1]
    r8 = r - r % 8
    best = -1.0
    arg = -1
    n_cand = lo
    for p in range(lo, hi):
        lim = lim2[p]
        if lim < 0.0:  # picked
            continue
        if lim < np.inf:
            q = rest[p] - rest_j
            lb = q * q
            part = z8[p, 0] - zj[0]
            acc = part * part
            for u in range(1, 8):
                part = z8[p, u] - zj[u]
                acc += part * part
            lb += acc
            if lb > lim:
                if val[p] > best:
                    best = val[p]
                    arg = p
                continue
            t = 8
            while t < r8:
                for u in range(t, t + 8):
                    part = z[p, u] - zj[u]
                    lb += part * part
                t += 8
                if lb > lim:
                    break
            if lb <= lim:
                for u in range(max(r8, 8), r):  # dims 0-7 are in z8 (zero beyond r)
                    part = z[p, u] - zj[u]
                    lb += part * part
            if lb > lim:
                if val[p] > best:
                    best = val[p]
                    arg = p
                continue
        cand[n_cand] = p
        n_cand += 1
    c = lo
    while c < n_cand:
        p = cand[c]
        if c + 1 < n_cand:
            q = cand[c + 1]
            dot_p, dot_q = _dot8_two(x, p, q, xj, zero)
            best, arg = _settle(p, dot_p, sq, sqj, cosine, margin, val, lim2, best, arg)
            best, arg = _settle(q, dot_q, sq, sqj, cosine, margin, val, lim2, best, arg)
            c += 2
        else:
            best, arg = _settle(p, _dot8_rows(x, p, xj, zero), sq, sqj, cosine, margin, val, lim2, best, arg)
            c += 1
    return best, arg, n_cand - lo


@numba.njit(cache=True, nogil=True, inline="always")
def _settle(p, dot, sq, sqj, cosine, margin, val, lim2, best, arg):
    """Row ``p``'s exact distance to the pick lowers its nearest distance if smaller; the running farthest."""
    dist = _distance(dot, sq[p], sqj, cosine)
    m = val[p]
    if dist < m:
        val[p] = dist
        lim2[p] = _bound_limit(dist, cosine, margin)
        m = dist
    if m > best or (m == best and p < arg):
        return m, p
    return best, arg


@numba.njit(cache=True, nogil=True)
def _farthest_dense(x, z, rest, sq, cosine, margin, start, k, ranking, gains, radius, stats):
    """Greedy k-center from ``start``: see :meth:`DenseSpace.farthest_first`.

    One thread: each pick is one pass of :func:`_pick_update` over all rows. (A numba
    ``prange`` over row ranges per pick was measured 2.5x *more* CPU on the shared, loaded
    2 cores — 57.7 s against 23.1 s for 7,800 picks at N = 52,000 — its threads spin while
    waiting for each other.) Picked rows are never measured again (not needed here).
    """
    n, d = x.shape
    r = z.shape[1]
    z8 = np.zeros((n, 8), dtype=z.dtype)
    for p in range(n):
        for u in range(min(8, r)):
            z8[p, u] = z[p, u]
    val = np.full(n, np.inf)
    lim2 = np.full(n, np.inf)
    cand = np.empty(n, dtype=np.int64)
    xj = np.empty(d, dtype=x.dtype)
    zero = np.zeros(1, dtype=x.dtype)[0]
    zj = np.zeros(max(r, 8), dtype=z.dtype)
    n_exact = 0
    j = start
    for i in range(k):
        ranking[i] = j
        gains[i] = val[j] if i > 0 else np.nan
        val[j] = -1.0
        lim2[j] = -1.0
        for t in range(d):
            xj[t] = x[j, t]
        for t in range(r):
            zj[t] = z[j, t]
        rest_j = rest[j]
        sqj = sq[j]
        best, nxt, n_cand = _pick_update(x, z, z8, rest, sq, cosine, margin, xj, zj, rest_j, sqj, val, lim2, 0, n,
                                         cand, zero)
        n_exact += n_cand
        radius[i] = max(best, 0.0)
        j = nxt
    stats[0] = n_exact


@numba.njit(cache=True, nogil=True)
def _walk_dense(x, z, rest, sq, cosine, margin, follow, order, start, k, ranking, gains, radius, mean_nn, stats):
    """Farthest-first (``follow`` False) or a given ``order``: see :class:`DenseSpace`."""
    n, d = x.shape
    r = z.shape[1]
    r8 = r - r % 8
    val = np.full(n, np.inf)
    picked = np.zeros(n, dtype=np.bool_)
    xj = np.empty(d, dtype=x.dtype)
    acc = np.zeros(8, dtype=x.dtype)
    zj = np.empty(r, dtype=np.float64)
    nn_total = 0.0
    n_finite = 0
    n_exact = 0
    j = order[0] if follow else start
    for i in range(k):
        ranking[i] = j
        gains[i] = val[j] if i > 0 else np.nan
        picked[j] = True
        if val[j] < np.inf:
            nn_total += val[j]
            n_finite += 1
        for t in range(d):
            xj[t] = x[j, t]
        for t in range(r):
            zj[t] = z[j, t]
        sqj = sq[j]
        rest_j = rest[j]
        best = -1.0
        nxt = -1
        rad = 0.0
        for p in range(n):
            if p == j:
                continue
            m = val[p]
            compute = True
            if m < np.inf:
                lim = (np.sqrt(2.0 * m) if cosine else m) + margin
                lim2 = lim * lim
                q = rest[p] - rest_j
                lb = q * q
                t = 0
                while t < r8:
                    for u in range(t, t + 8):
                        q = z[p, u] - zj[u]
                        lb += q * q
                    t += 8
                    if lb > lim2:
                        break
                if lb <= lim2:
                    for u in range(r8, r):
                        q = z[p, u] - zj[u]
                        lb += q * q
                if lb > lim2:
                    compute = False
            if compute:
                n_exact += 1
                dist = _distance(_dot8(x, p, xj, acc), sq[p], sqj, cosine)
                if dist < m:
                    if picked[p]:
                        if m < np.inf:
                            nn_total -= m
                        else:
                            n_finite += 1
                        nn_total += dist
                    val[p] = dist
                    m = dist
            if not picked[p]:
                if m > rad:
                    rad = m
                if m > best:
                    best = m
                    nxt = p
        radius[i] = rad
        mean_nn[i] = nn_total / (i + 1) if i >= 1 and n_finite == i + 1 else np.nan
        if follow:
            if i + 1 < k:
                j = order[i + 1]
        else:
            j = nxt
    stats[0] = n_exact


class DenseSpace:
    """Rows of a dense matrix under cosine (rows scaled to unit length) or euclidean distance.

    ``x``: (N, d) float32/float64 rows exactly as they enter the distances (for cosine:
    already unit rows, all-zero rows kept at zero). Built once (an SVD of at most
    ``PRUNE_FIT_ROWS`` rows and an (N, r) projection), then used for any number of walks.
    """

    def __init__(self, x: np.ndarray, metric: str, dims: int = PRUNE_DIMS, seed: int = 0):
        if metric not in ("cosine", "euclidean"):
            raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"rows must be a non-empty 2-D array, got shape {x.shape}")
        self.metric = metric
        self.x = np.ascontiguousarray(x if x.dtype in (np.float32, np.float64) else x.astype(np.float64))
        self.sq = np.einsum("ij,ij->i", self.x, self.x, dtype=np.float64)
        from threadpoolctl import threadpool_limits

        basis = prune_basis(self.x, dims, seed=seed)
        with threadpool_limits(limits=1, user_api="blas"):
            z = self.x.astype(np.float64) @ basis
        self.z = np.ascontiguousarray(z.astype(np.float32))
        # norm of each row outside the projection: | |x_p - P x_p| - |x_j - P x_j| | also bounds |x_p - x_j|
        self.rest = np.sqrt(np.maximum(self.sq - np.einsum("ij,ij->i", z, z), 0.0))
        scale = float(np.sqrt(self.sq.max(initial=0.0))) if metric == "euclidean" else 1.0
        self.margin = PRUNE_MARGIN * max(1.0, scale)
        self.exact_distances = 0  # rows measured exactly in the last walk (the rest were pruned)

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def _walk(self, follow: bool, order: np.ndarray, start: int, k: int):
        ranking = np.empty(k, dtype=np.int64)
        gains, radius, mean_nn = (np.empty(k, dtype=np.float64) for _ in range(3))
        stats = np.zeros(1, dtype=np.int64)
        _walk_dense(self.x, self.z, self.rest, self.sq, self.metric == "cosine", self.margin, follow, order, int(start),
                    int(k), ranking, gains, radius, mean_nn, stats)
        self.exact_distances = int(stats[0])
        return ranking, gains, radius, mean_nn

    def farthest_first(self, k: int, start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ranking int64, gains float64, radius float64), each (k,): greedy k-center from ``start``.

        ``gains[i]``: pick i's distance to the earlier picks (NaN for the first);
        ``radius[i]``: largest distance of any row to its nearest pick after pick i.
        """
        ranking = np.empty(k, dtype=np.int64)
        gains, radius = np.empty(k, dtype=np.float64), np.empty(k, dtype=np.float64)
        stats = np.zeros(1, dtype=np.int64)
        _farthest_dense(self.x, self.z, self.rest, self.sq, self.metric == "cosine", self.margin, int(start), int(k),
                        ranking, gains, radius, stats)
        self.exact_distances = int(stats[0])
        return ranking, gains, radius

    def prefix_curves(self, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean_nn, radius) float64 (K,) of every prefix of ``order`` (distinct row ids).

        ``mean_nn[i]``: mean over the first i + 1 picks of the distance to the nearest other
        pick (NaN for i = 0); ``radius[i]``: largest distance of any row to its nearest
        pick among the first i + 1.
        """
        order = np.ascontiguousarray(order, dtype=np.int64)
        if order.size == 0:
            return np.zeros(0), np.zeros(0)
        if order.min() < 0 or order.max() >= self.n or np.unique(order).size != order.size:
            raise ValueError(f"order must hold distinct row ids in [0, {self.n})")
        _, _, radius, mean_nn = self._walk(True, order, int(order[0]), order.size)
        return mean_nn, radius
