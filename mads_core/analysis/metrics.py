"""How good is a selection? Pure functions: index arrays in, numbers / frames out.

* neuron coverage — fraction of *coverable* neurons (fired by at least one
  sample of the whole set) that the subset fires, overall and per layer;
* text diversity — mean nearest-neighbour cosine distance inside the subset
  (are picks spread out?) and the k-center radius (how far is the worst-served
  sample from its nearest pick?);
* category coverage and normalised entropy, length statistics, and the overlap
  of two selections.

``coverage_curves`` and ``metrics_table`` evaluate many budgets of many methods
in one call. Budgets of one method are prefixes of its ranking, so every curve
is built incrementally along the ranking (a running OR of fingerprint rows, a
running min-distance vector) instead of recomputing each budget from scratch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mads_core.select.farthest import DenseSpace
from mads_core.select.greedy import Selection, resolve_budget

_CHUNK = 4096


# ----------------------------------------------------------------- helpers


def _as_index(idx: Sequence[int] | np.ndarray) -> np.ndarray:
    arr = np.asarray(idx, dtype=np.int64).ravel()
    return arr


def _or_rows(bits: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
    """Bitwise OR of the rows ``idx`` (all rows when None), read in chunks."""
    acc = np.zeros(bits.shape[1], dtype=np.uint64)
    n = bits.shape[0] if idx is None else len(idx)
    for s in range(0, n, _CHUNK):
        block = bits[s:s + _CHUNK] if idx is None else bits[np.sort(idx[s:s + _CHUNK])]
        if len(block):
            acc |= np.bitwise_or.reduce(np.asarray(block), axis=0)
    return acc


def _unpack(words: np.ndarray, n_neurons: int) -> np.ndarray:
    """Packed uint64 words -> one 0/1 byte per neuron (neuron d = word d // 64, bit d % 64)."""
    w = np.ascontiguousarray(words, dtype="<u8")
    return np.unpackbits(w.view(np.uint8), bitorder="little")[:n_neurons]


def _popcount(words: np.ndarray) -> int:
    return int(np.bitwise_count(words).sum(dtype=np.int64))


def _unit(emb: np.ndarray) -> np.ndarray:
    e = np.asarray(emb, dtype=np.float32)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    return np.divide(e, norms, out=np.zeros_like(e), where=norms > 0)


# ---------------------------------------------------------- neuron coverage


def neuron_coverage(
    bits: np.ndarray,
    n_neurons: int,
    idx: Sequence[int] | np.ndarray,
    layer_offsets: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Neuron coverage of the subset ``idx`` of packed fingerprint rows ``bits`` (N, W) uint64.

    Returns ``covered`` (neurons the subset fires), ``coverable`` (fired by any
    sample), ``coverage`` = covered / coverable (NaN when nothing fires),
    ``coverage_all`` = covered / n_neurons, and with ``layer_offsets`` (first
    neuron of each layer + final D) ``per_layer`` float array of per-layer
    covered / coverable (NaN for a layer where nothing fires).
    """
    idx = _as_index(idx)
    sub, whole = _or_rows(bits, idx), _or_rows(bits)
    covered, coverable = _popcount(sub), _popcount(whole)
    out: dict[str, Any] = {
        "covered": covered,
        "coverable": coverable,
        "coverage": covered / coverable if coverable else float("nan"),
        "coverage_all": covered / n_neurons if n_neurons else float("nan"),
    }
    if layer_offsets is not None:
        out["per_layer"] = _per_layer(_unpack(sub, n_neurons), _unpack(whole, n_neurons), layer_offsets)
    return out


def _per_layer(sub: np.ndarray, whole: np.ndarray, offsets: Sequence[int]) -> np.ndarray:
    starts = np.asarray(offsets[:-1], dtype=np.int64)
    c = np.add.reduceat(sub.astype(np.int64), starts) if len(starts) else np.zeros(0)
    t = np.add.reduceat(whole.astype(np.int64), starts) if len(starts) else np.zeros(0)
    # reduceat on an empty layer (start == next start) returns the element, not 0
    empty = np.diff(np.asarray(offsets)) == 0
    c, t = np.where(empty, 0, c), np.where(empty, 0, t)
    return np.divide(c, t, out=np.full(len(t), np.nan), where=t > 0)


def coverage_counts(bits: np.ndarray, ranking: Sequence[int] | np.ndarray, upto: int | None = None) -> np.ndarray:
    """covered[i] = distinct neurons fired by the first i + 1 picks of ``ranking`` (int64, (K,)).

    ``bits``: (N, W) packed uint64 fingerprint rows (a memory map works: rows are read in
    ascending order). One running OR along the ranking in blocks of 1,024 rows, O(K * W);
    ``upto`` stops after that many picks. Every budget's coverage is then a lookup
    (``covered[k - 1]``), which is how the app reads coverage at each slider position.
    """
    order = _as_index(ranking)
    if upto is not None:
        order = order[:upto]
    counts = np.empty(len(order), dtype=np.int64)
    acc = np.zeros(bits.shape[1], dtype=np.uint64)
    for s in range(0, len(order), 1024):
        part = order[s:s + 1024]
        sort = np.argsort(part, kind="stable")
        rows = np.empty((len(part), bits.shape[1]), dtype=np.uint64)
        rows[sort] = np.asarray(bits[part[sort]])  # ascending reads (memmaps), rows back in pick order
        running = np.bitwise_or.accumulate(rows, axis=0) | acc
        counts[s:s + len(part)] = np.bitwise_count(running).sum(axis=1, dtype=np.int64)
        acc = running[-1]
    return counts


def coverable_count(bits: np.ndarray) -> int:
    """Neurons fired by at least one row of ``bits`` ((N, W) packed uint64): coverage's denominator."""
    return _popcount(_or_rows(bits))


def _resolved(budgets: Sequence[int | float], n: int) -> list[int]:
    return [resolve_budget(b, n) for b in budgets]


def coverage_curves(
    selections: Mapping[str, Selection],
    bits: np.ndarray | None,
    n_neurons: int,
    budgets: Sequence[int | float],
    counts: Mapping[str, np.ndarray] | None = None,
    coverable: int | None = None,
) -> pd.DataFrame:
    """Neuron coverage of every method at every budget, one row per (method, budget).

    Columns: method, budget (as given), k (resolved count), k_used (picks
    actually available: min(k, len(ranking))), covered, coverable, coverage,
    coverage_all. One running OR per method up to its largest budget.

    ``counts`` maps a method to its precomputed :func:`coverage_counts` (at least as long
    as its largest budget) and ``coverable`` is :func:`coverable_count`: given both, no
    fingerprint row is read for those methods (``bits`` may then be None). Raises
    ValueError when a method's coverage must be measured and ``bits`` is None.
    """
    n = bits.shape[0] if bits is not None else _pool_size(selections)
    if coverable is None:
        if bits is None:
            raise ValueError("coverage_curves: pass bits, or coverable with precomputed counts")
        coverable = coverable_count(bits)
    ks = _resolved(budgets, n)
    rows = []
    for name, sel in selections.items():
        upto = min(max(ks, default=0), len(sel.ranking))
        known, given = sel.neurons_covered, (counts or {}).get(name)
        if given is not None and len(given) >= upto:
            prefix = np.asarray(given[:upto], dtype=np.int64)
        elif known is not None and len(known) >= upto and sel.n == n:
            prefix = np.asarray(known[:upto], dtype=np.int64)  # recorded by the method (MADS)
        elif bits is None:
            raise ValueError(f"coverage_curves: no coverage counts for {name!r} and no bits to measure them")
        else:
            prefix = coverage_counts(bits, sel.ranking, upto)
        for k in ks:
            used = min(k, len(sel.ranking))
            cov = int(prefix[used - 1]) if used else 0
            rows.append({
                "method": name, "k": k, "k_used": used, "covered": cov, "coverable": coverable,
                "coverage": cov / coverable if coverable else np.nan,
                "coverage_all": cov / n_neurons if n_neurons else np.nan,
            })
    return _with_budget_column(rows, [b for _ in selections for b in budgets])


def _with_budget_column(rows: list[dict[str, Any]], budgets: list[int | float]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df.insert(1, "budget", pd.Series(budgets, dtype=object))
    return df


# ----------------------------------------------------------- text diversity


@dataclass(frozen=True)
class DiversityCurves:
    """Text spread of every prefix of one ranking (cosine distance = 1 - cos of embeddings).

    ``mean_nn[i]``: mean over the first i + 1 picks of the distance to the nearest other
    pick (NaN for i = 0); ``radius[i]``: largest distance of any sample to its nearest pick
    among the first i + 1 (a pick is at distance 0 from itself, even an all-zero row, which
    is at distance 1 from every other sample). Both float64 (K,). Read a budget k as ``[k - 1]``.
    """

    mean_nn: np.ndarray
    radius: np.ndarray

    def __len__(self) -> int:
        return int(self.radius.shape[0])

    def at(self, k: int) -> tuple[float, float]:
        """(mean_nn, radius) of the first ``k`` picks (NaN, NaN for k = 0)."""
        if k <= 0:
            return float("nan"), float("nan")
        if k > len(self):
            raise ValueError(f"curves hold {len(self)} prefixes, asked for k = {k}")
        return float(self.mean_nn[k - 1]), float(self.radius[k - 1])


def text_space(emb: np.ndarray) -> DenseSpace:
    """The structure every text-spread curve of these embeddings is read from, built once.

    emb: (N, d) float embeddings; rows are scaled to unit length (all-zero rows stay zero,
    cosine distance 1 to everything). Building it costs an SVD of at most 8,192 rows and an
    (N, 64) float32 projection (see :mod:`mads_core.select.farthest`); keep it while the
    embeddings are in use.
    """
    return DenseSpace(_unit(emb), "cosine")


def diversity_curves(
    emb_or_space: np.ndarray | DenseSpace, ranking: Sequence[int] | np.ndarray, upto: int | None = None
) -> DiversityCurves:
    """Mean nearest-pick distance and k-center radius of every prefix of ``ranking`` (up to ``upto``).

    One pass along the ranking: each pick updates every sample's distance to its nearest
    pick, exactly, with the pruned kernel of :class:`mads_core.select.farthest.DenseSpace`
    (a pick only measures the samples a projection bound cannot rule out). Pass a
    :func:`text_space` to reuse it across rankings.
    """
    space = emb_or_space if isinstance(emb_or_space, DenseSpace) else text_space(emb_or_space)
    order = _as_index(ranking)
    if upto is not None:
        order = order[:upto]
    mean_nn, radius = space.prefix_curves(order)
    return DiversityCurves(mean_nn, radius)


def text_diversity(emb: np.ndarray | DenseSpace, idx: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Spread of the subset ``idx`` in embedding space (cosine distance = 1 - cos).

    ``mean_nn_distance``: mean over picks of the distance to the nearest other
    pick (NaN for fewer than 2 picks). ``radius``: max over ALL samples of the
    distance to the nearest pick (NaN for no picks). Higher spread, lower radius = more diverse.
    """
    idx = _as_index(idx)
    mean_nn, radius = diversity_curves(emb, idx).at(len(idx))
    return {"mean_nn_distance": mean_nn, "radius": radius}


# ------------------------------------------------------- categories, length


def category_stats(categories: Sequence[str | None], idx: Sequence[int] | np.ndarray) -> dict[str, Any]:
    """Category coverage of the subset; records without a category (None) are ignored.

    ``categories_covered`` / ``categories_total`` (distinct labels in subset / in
    the whole set), ``category_coverage`` (their ratio), ``category_entropy``:
    Shannon entropy of the subset's label distribution divided by log(total
    labels), so 1 means spread evenly over every label of the dataset. NaN where
    undefined (no labels, or a single label in the dataset).
    """
    idx = _as_index(idx)
    labels = sorted({c for c in categories if c is not None})
    total = len(labels)
    picked = [categories[int(i)] for i in idx]
    counts = pd.Series([c for c in picked if c is not None], dtype=object).value_counts()
    covered = int(len(counts))
    entropy = np.nan
    if total >= 2 and counts.sum() > 0:
        p = counts.to_numpy(dtype=np.float64) / counts.sum()
        entropy = float(-(p * np.log(p)).sum() / np.log(total))
    return {
        "categories_total": total,
        "categories_covered": covered,
        "category_coverage": covered / total if total else np.nan,
        "category_entropy": entropy,
        "labelled": int(counts.sum()),
    }


def length_stats(lengths: Sequence[float] | np.ndarray, idx: Sequence[int] | np.ndarray) -> dict[str, float]:
    """Length summary (tokens or characters, whatever ``lengths`` holds) of the subset."""
    idx = _as_index(idx)
    v = np.asarray(lengths, dtype=np.float64)[idx]
    if len(v) == 0:
        return {k: np.nan for k in ("len_mean", "len_median", "len_p10", "len_p90", "len_min", "len_max")} | {
            "len_total": 0.0}
    p10, med, p90 = np.percentile(v, [10, 50, 90])
    return {
        "len_mean": float(v.mean()), "len_median": float(med), "len_p10": float(p10), "len_p90": float(p90),
        "len_min": float(v.min()), "len_max": float(v.max()), "len_total": float(v.sum()),
    }


# ------------------------------------------------------------------ overlap


def overlap(idx_a: Sequence[int] | np.ndarray, idx_b: Sequence[int] | np.ndarray) -> dict[str, Any]:
    """How two selections overlap.

    ``only_a`` and ``both`` keep A's order, ``only_b`` keeps B's order (rank order
    when given rankings); ``n_*`` are their sizes; ``jaccard`` = |A & B| / |A | B|
    (1.0 for two empty selections: they are identical).
    """
    a, b = _as_index(idx_a), _as_index(idx_b)
    in_b, in_a = np.isin(a, b), np.isin(b, a)
    only_a, both, only_b = a[~in_b], a[in_b], b[~in_a]
    ua, ub = np.unique(a), np.unique(b)
    inter = len(np.intersect1d(ua, ub))
    union = len(ua) + len(ub) - inter
    return {
        "jaccard": inter / union if union else 1.0,
        "only_a": only_a, "only_b": only_b, "both": both,
        "n_only_a": len(only_a), "n_only_b": len(only_b), "n_both": len(both),
    }


# -------------------------------------------------------------------- table


def metrics_table(
    selections: Mapping[str, Selection],
    budgets: Sequence[int | float],
    bits: np.ndarray | None = None,
    n_neurons: int | None = None,
    emb: np.ndarray | DenseSpace | None = None,
    categories: Sequence[str | None] | None = None,
    lengths: Sequence[float] | np.ndarray | None = None,
    diversity: Mapping[str, DiversityCurves] | None = None,
    coverage: Mapping[str, np.ndarray] | None = None,
    coverable: int | None = None,
) -> pd.DataFrame:
    """One row per method x budget with every metric whose input is given.

    Always: method, budget, k, k_used. With ``bits`` + ``n_neurons``: covered,
    coverable, coverage, coverage_all. With ``emb`` (embeddings or a :func:`text_space`)
    or ``diversity``: mean_nn_distance, radius. With ``categories``: category columns.
    With ``lengths``: len_* columns.

    ``diversity`` maps a method to its precomputed :func:`diversity_curves` (at least as
    long as the largest budget): its text columns are then read, not computed, so a
    table at a new budget costs no distance at all. Methods missing from it are measured
    from ``emb``. Likewise ``coverage`` (a method -> its :func:`coverage_counts`) with
    ``coverable`` (:func:`coverable_count`) and ``n_neurons`` give the coverage columns
    without reading ``bits``.
    """
    size_of = emb.n if isinstance(emb, DenseSpace) else emb
    n = _pool_size(selections, bits, size_of, categories, lengths)
    ks = _resolved(budgets, n)
    precounted = coverage is not None and coverable is not None and all(m in coverage for m in selections)
    cov = (coverage_curves(selections, bits, n_neurons, budgets, counts=coverage, coverable=coverable)
           if n_neurons and (bits is not None or precounted) else None)
    space = None
    rows, given = [], []
    for m, (name, sel) in enumerate(selections.items()):
        used = [min(k, len(sel.ranking)) for k in ks]
        curves = (diversity or {}).get(name)
        if curves is not None and len(curves) < max(used, default=0):
            curves = None
        if curves is None and emb is not None:
            if space is None:
                space = emb if isinstance(emb, DenseSpace) else text_space(emb)
            curves = diversity_curves(space, sel.ranking, max(used, default=0))
        for j, (b, k) in enumerate(zip(budgets, ks, strict=True)):
            idx = np.asarray(sel.ranking[:used[j]], dtype=np.int64)
            row: dict[str, Any] = {"method": name, "k": k, "k_used": used[j]}
            if cov is not None:
                rec = cov.iloc[m * len(budgets) + j]
                row |= {c: rec[c] for c in ("covered", "coverable", "coverage", "coverage_all")}
            if curves is not None:
                mean_nn, radius = curves.at(used[j])
                row |= {"mean_nn_distance": mean_nn, "radius": radius}
            if categories is not None:
                row |= category_stats(categories, idx)
            if lengths is not None:
                row |= length_stats(lengths, idx)
            rows.append(row)
            given.append(b)
    return _with_budget_column(rows, given)


def _pool_size(selections: Mapping[str, Selection], *arrays: Any) -> int:
    for a in arrays:
        if a is not None:
            return len(a)
    for sel in selections.values():
        return int(sel.n)
    return 0
