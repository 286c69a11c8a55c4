"""DEITA-style score-first diversity filter (Liu et al., "What Makes Good Data for Alignment?", ICLR 2024).

Samples are visited by a per-sample score, highest first (ties: lowest row index); a
sample is kept only if its cosine similarity to **every** already-kept sample is at
most ``threshold`` (DEITA's "Repr Filter"; DEITA uses 0.9 on Llama embeddings, here
the bundled MiniLM sentence embeddings). Visiting stops at the budget. If the whole
dataset is visited before the budget is reached, the rejected samples follow in score
order as filler (``Selection.filler_from`` marks where).

Scores: ``ifd`` (instruction-following difficulty from the fingerprinting model, see
``mads_core.select.ifd``; NaN/undefined scores go last), ``length`` (response
characters, as ``longest``), or ``column:<name>`` — a numeric field of the user's
records. ``gains[r]`` = the score of pick r; ``coverage[r]`` = its largest cosine
similarity to the picks before it (at most ``threshold`` for kept picks).

Cost: one (block x kept) dot product per block of candidates and a sequential check
inside the block, so O(visited x kept x d) flops, never N x N memory.
"""

from __future__ import annotations

import math

import numpy as np

from mads_core.data.loader import DataError, Dataset
from mads_core.select.greedy import Selection, resolve_budget
from mads_core.select.ranking import make_selection, order_by_score

DEFAULT_THRESHOLD = 0.9
DEFAULT_SCORE = "ifd"
BLOCK = 256


def score_column(dataset: Dataset, name: str) -> np.ndarray:
    """(N,) float64 scores from a numeric field ``name`` of every original record.

    Raises DataError naming the record (row and id) and field when it is missing or
    not a finite number (booleans and numeric strings are refused: nothing is guessed).
    """
    out = np.empty(len(dataset), dtype=np.float64)
    for i, record in enumerate(dataset.records):
        value = record.get(name) if isinstance(record, dict) else None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
        if not ok:
            what = "missing" if value is None else f"not a finite number ({value!r})"
            raise DataError(dataset.name, i, name, f"score of sample id {dataset.ids[i]!r} is {what}")
        out[i] = float(value)
    return out


def _unit(emb: np.ndarray) -> np.ndarray:
    x = np.asarray(emb, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, d), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0))


def deita_filter(scores: np.ndarray, emb: np.ndarray, k: int, threshold: float = DEFAULT_THRESHOLD
                 ) -> tuple[np.ndarray, np.ndarray, int]:
    """(ranking (k,), max similarity of each pick to the earlier picks (k,), filler_from).

    scores: (N,) float (NaN = no score: visited after every scored row, index order).
    emb: (N, d) embeddings (cosine similarity). threshold in [-1, 1].
    """
    if not (-1.0 <= threshold <= 1.0):
        raise ValueError(f"threshold must be in [-1, 1], got {threshold!r}")
    scores = np.asarray(scores, dtype=np.float64)
    x = _unit(emb)
    n = x.shape[0]
    if scores.shape != (n,):
        raise ValueError(f"scores has shape {scores.shape}, embeddings have {n} rows")
    scored = np.isfinite(scores)
    order = np.concatenate([order_by_score(scores, np.flatnonzero(scored)), np.flatnonzero(~scored)])
    kept = np.empty(k, dtype=np.int64)
    kept_sim = np.empty(k)
    kept_vecs = np.empty((k, x.shape[1]), dtype=np.float32)
    n_kept = 0
    rejected: list[int] = []
    rejected_sim: list[float] = []
    for start in range(0, n, BLOCK):
        if n_kept >= k:
            break
        cand = order[start:start + BLOCK]
        vecs = x[cand]
        to_kept = vecs @ kept_vecs[:n_kept].T if n_kept else np.full((cand.size, 0), -np.inf, np.float32)
        best = to_kept.max(axis=1) if n_kept else np.full(cand.size, -np.inf, np.float32)
        inner = vecs @ vecs.T
        accepted: list[int] = []
        for j in range(cand.size):
            if n_kept >= k:
                break
            s = float(best[j])
            if accepted:
                s = max(s, float(inner[j, accepted].max()))
            if s <= threshold:
                kept[n_kept], kept_sim[n_kept], kept_vecs[n_kept] = cand[j], s, vecs[j]
                n_kept += 1
                accepted.append(j)
            else:
                rejected.append(int(cand[j]))
                rejected_sim.append(s)
    filler_from = n_kept
    if n_kept < k:
        need = k - n_kept
        kept[n_kept:] = rejected[:need]
        kept_sim[n_kept:] = rejected_sim[:need]
    return kept, np.where(np.isfinite(kept_sim), kept_sim, np.nan), filler_from


def select_deita(
    scores: np.ndarray,
    emb: np.ndarray,
    budget: int | float,
    threshold: float = DEFAULT_THRESHOLD,
    score_name: str = DEFAULT_SCORE,
) -> Selection:
    """DEITA-style filter as a Selection (see module docstring); ``gains`` = each pick's score."""
    n = np.asarray(emb).shape[0]
    k = resolve_budget(budget, n)
    ranking, sims, filler_from = deita_filter(scores, emb, k, threshold)
    settings = {"budget": budget, "threshold": float(threshold), "score": score_name,
                "embeddings": "all-MiniLM-L6-v2",
                "gain": f"score ({score_name}) of the pick; coverage = its max cosine similarity to earlier picks"}
    return make_selection("deita", n, ranking, np.asarray(scores, dtype=np.float64)[ranking], settings,
                          coverage=sims, filler_from=filler_from)
