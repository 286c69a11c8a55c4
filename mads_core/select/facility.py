"""Facility location on sentence embeddings, with a sparse k-nearest-neighbour similarity.

Objective (Krause & Golovin 2014; used for instruction data by QDIT, Bukharin et al.
2024, and Superfiltering.D, Li et al. ACL 2024)::

    f(S) = sum_j max_{i in S} sim(i, j)

where ``sim(i, j) = max(0, cos(e_i, e_j))`` when ``j`` is among the ``n_neighbors``
most similar samples of ``i`` (itself included), else 0. f is monotone submodular (a
facility location over a non-negative matrix), so greedy is within (1 - 1/e) of the
optimum *of this sparse objective*. Picks are representative: each new pick stands
for the most still-poorly-represented neighbourhood.

Memory: the similarity is never N x N. Rows are built in blocks of at most
``block_bytes`` (64 MiB default: block x N float32 dot products), keeping ``n_neighbors``
entries per row, so the graph holds N * n_neighbors entries at 12 bytes (float64 value
+ int32 column): 52,000 x 20 -> 12 MiB (+ the embeddings, 52,000 x 384 float32 = 76 MiB).

Optimiser: apricot-select's ``FacilityLocationSelection`` (Schreiber et al., JMLR 2020)
on the precomputed sparse graph with its ``lazy`` optimiser: an exact lazy greedy (ties in
apricot's own deterministic order). Picked over submodlib's ``FacilityLocationFunction``
(sparse mode, LazyGreedy): on 5,000 clustered embeddings, 750 picks, apricot 28.9 s,
submodlib 33.1 s on the same graph. Measured at 52K in ``bench/select.py --peers-52k``:
~40 s of each fit is apricot compiling its numba kernels (not cached), see README "Methods".
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mads_core.select.greedy import Selection, resolve_budget
from mads_core.select.ranking import make_selection

DEFAULT_NEIGHBORS = 20
BLOCK_BYTES = 64 << 20


def _unit_rows(emb: np.ndarray) -> np.ndarray:
    x = np.asarray(emb, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty (N, d) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("embeddings contain NaN or inf")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0))


def knn_similarity(emb: np.ndarray, n_neighbors: int = DEFAULT_NEIGHBORS,
                   block_bytes: int = BLOCK_BYTES) -> sp.csr_matrix:
    """(N, N) CSR float64: row i holds max(0, cos) to its ``n_neighbors`` nearest rows (itself included).

    emb: (N, d) float embeddings (normalised here). Neighbours are exact (blocked dot
    products); ties go to the lower column index. ``n_neighbors`` is capped at N.
    Peak extra memory: one block (<= ``block_bytes``) plus N * n_neighbors * 12 bytes.
    """
    x = _unit_rows(emb)
    n = x.shape[0]
    if n_neighbors < 1:
        raise ValueError(f"n_neighbors must be >= 1, got {n_neighbors}")
    k = min(int(n_neighbors), n)
    block = max(1, min(n, block_bytes // max(1, 4 * n)))
    cols = np.empty((n, k), dtype=np.int32)
    vals = np.empty((n, k), dtype=np.float64)
    idx = np.arange(n, dtype=np.int64)
    for start in range(0, n, block):
        sims = x[start:start + block] @ x.T  # (b, N) float32
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = np.float32(1.0)  # a sample represents itself exactly
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < n else np.broadcast_to(idx, sims.shape).copy()
        top = np.take_along_axis(sims, part, axis=1)
        order = np.lexsort((part, -top), axis=1)  # by similarity desc, then column asc
        cols[start:start + block] = np.take_along_axis(part, order, axis=1)
        vals[start:start + block] = np.maximum(np.take_along_axis(top, order, axis=1), 0.0)
    # Rows keep their k entries sorted by column (CSR convention); zero entries are kept (harmless).
    srt = np.argsort(cols, axis=1, kind="stable")
    cols = np.take_along_axis(cols, srt, axis=1)
    vals = np.take_along_axis(vals, srt, axis=1)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int32)
    return sp.csr_matrix((vals.ravel(), cols.ravel(), indptr), shape=(n, n))


def facility_greedy(sim: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy facility location on a precomputed non-negative CSR similarity (apricot, lazy greedy).

    Row i lists what candidate i represents. Returns (ranking (k,) int64, gains (k,) float64).
    """
    from apricot import FacilityLocationSelection

    model = FacilityLocationSelection(k, metric="precomputed", optimizer="lazy", verbose=False)
    model.fit(sp.csr_matrix(sim, dtype=np.float64))
    ranking = np.asarray(model.ranking, dtype=np.int64)
    gains = np.asarray(model.gains, dtype=np.float64)
    if ranking.shape[0] < k:  # apricot stops early once every gain is 0: fill in index order
        taken = np.zeros(sim.shape[0], dtype=bool)
        taken[ranking] = True
        rest = np.flatnonzero(~taken)[: k - ranking.shape[0]]
        ranking = np.concatenate([ranking, rest])
        gains = np.concatenate([gains, np.zeros(rest.size)])
    return ranking, gains


def naive_facility(sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force greedy facility location on a dense (N, N) similarity (tests, small data).

    Row i = what candidate i represents. Each step recomputes every gain; ties to the lowest index.
    """
    s = np.asarray(sim, dtype=np.float64)
    cur = np.zeros(s.shape[1])
    taken = np.zeros(s.shape[0], dtype=bool)
    ranking, gains = [], []
    for _ in range(k):
        g = np.maximum(s, cur[None, :]).sum(axis=1) - cur.sum()
        g[taken] = -np.inf
        i = int(np.argmax(g))
        ranking.append(i)
        gains.append(float(g[i]))
        taken[i] = True
        cur = np.maximum(cur, s[i])
    return np.array(ranking, dtype=np.int64), np.array(gains)


def select_facility(
    emb: np.ndarray,
    budget: int | float,
    n_neighbors: int = DEFAULT_NEIGHBORS,
    rows: np.ndarray | None = None,
    method: str = "facility-embed",
    extra_settings: dict | None = None,
) -> Selection:
    """Rank samples by greedy facility location on their embeddings (see module docstring).

    emb: (N, d) embeddings. budget: count or fraction of N. rows: restrict the ground
    set (candidates *and* the points to represent) to these rows (Superfiltering's
    second stage); fractions are then of N, and more picks than rows is an error.
    ``gains[r]``: increase of f (sum of best similarities, in cosine units) from pick r;
    ``coverage[r]``: f after pick r divided by the ground-set size (mean best similarity).
    """
    n = np.asarray(emb).shape[0]
    k = resolve_budget(budget, n)
    ground = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    if k > ground.size:
        raise ValueError(f"{method}: budget {k} exceeds the {ground.size} candidate rows")
    sim = knn_similarity(np.asarray(emb)[ground], n_neighbors)
    local, gains = facility_greedy(sim, k)
    settings = {"budget": budget, "n_neighbors": int(n_neighbors), "similarity": "max(0, cosine), kNN",
                "optimizer": "apricot lazy greedy", "embeddings": "all-MiniLM-L6-v2",
                "gain": "increase of the facility-location objective (sum of best cosine similarities)",
                **(extra_settings or {})}
    return make_selection(method, n, ground[local], gains, settings, coverage=np.cumsum(gains) / ground.size)
