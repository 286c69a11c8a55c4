"""Shared pieces of the score-based and peer selectors: deterministic top-k and the Selection they return.

Every peer method (``ifd``, ``longest``, ``deita``, ``facility-embed``, ``nait``, ...)
returns the same :class:`mads_core.select.greedy.Selection` as MADS and the baselines:
one ranking (every budget is a prefix), a per-pick number in ``gains`` whose meaning
is stated in ``settings["gain"]``, and a running ``coverage`` (the objective after
each pick where there is one, else NaN). Ties always go to the lowest row index.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mads_core.config import canonical_json, sha256_text
from mads_core.select.greedy import Selection


def settings_hash(method: str, settings: dict[str, Any]) -> str:
    """Stable 16-hex hash of a method name and its settings (manifests, app memo keys)."""
    return sha256_text(canonical_json({"method": method, "settings": settings}))[:16]


def order_by_score(scores: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows sorted by score descending, ties to the lowest row index (int64).

    ``scores``: (N,) float; NaN rows must be excluded by the caller (via ``rows``).
    ``rows``: candidate row indices (default all).
    """
    scores = np.asarray(scores, dtype=np.float64)
    rows = np.arange(scores.shape[0], dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    return rows[np.lexsort((rows, -scores[rows]))]


def make_selection(
    method: str,
    n: int,
    ranking: np.ndarray,
    gains: np.ndarray,
    settings: dict[str, Any],
    coverage: np.ndarray | None = None,
    filler_from: int = -1,
    rounds: np.ndarray | None = None,
    n_neurons: int = 0,
) -> Selection:
    """A frozen :class:`Selection` with read-only arrays.

    ``gains`` (K,) float64: the per-pick number (its meaning in ``settings["gain"]``);
    ``coverage`` (K,) float64 (NaN when the method has no objective); ``filler_from``:
    rank where picks stop being chosen by the method's rule (index-order filler),
    ``len(ranking)`` when every pick follows the rule (-1 = same).
    """
    ranking = np.asarray(ranking, dtype=np.int64)
    k = ranking.shape[0]
    gains = np.asarray(gains, dtype=np.float64)
    if gains.shape != (k,):
        raise ValueError(f"{method}: {gains.shape[0]} gains for {k} picks")
    cov = np.full(k, np.nan) if coverage is None else np.asarray(coverage, dtype=np.float64)
    sel = Selection(
        method=method,
        n=int(n),
        ranking=ranking,
        gains=gains,
        coverage=cov,
        rounds=np.zeros(k, dtype=np.int32) if rounds is None else np.asarray(rounds, dtype=np.int32),
        settings=dict(settings),
        settings_hash=settings_hash(method, settings),
        n_neurons=int(n_neurons),
        filler_from=int(k if filler_from < 0 else filler_from),
    )
    for name in ("ranking", "gains", "coverage", "rounds"):
        getattr(sel, name).setflags(write=False)
    return sel


def rank_scores_with_filler(scores: np.ndarray, valid: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Top ``k`` valid rows by score (desc, ties lowest index), then invalid rows in index order.

    Returns (ranking (k,) int64, filler_from): the rank where the filler starts (= k
    when enough rows are valid).
    """
    valid = np.asarray(valid, dtype=bool)
    good = order_by_score(scores, np.flatnonzero(valid))
    if good.size >= k:
        return good[:k], k
    rest = np.flatnonzero(~valid)[: k - good.size]
    return np.concatenate([good, rest]).astype(np.int64), int(good.size)
