"""Seed statistics of a validation grid: mean ± spread per cell, paired method differences.

A grid runs every method with the same seeds; seed ``s`` of method A and seed ``s`` of method
B share the training order and LoRA initialisation, so their scores are compared *paired*:
d_s = score_A,s − score_B,s. The difference "exceeds seed noise" when a paired t-test on the
d_s rejects zero at the two-sided 5% level (|mean d| > t_{0.975, n−1} · sd(d)/√n; Student
1908, via ``scipy.stats.t``). With 3 seeds t_{0.975,2} = 4.30, so only large, consistent
differences pass — which is the honest reading of three seeds. ``noise`` is the seed standard
deviation of the two methods' scores (root mean of their variances, ddof=1).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

LOWER_IS_BETTER = ("loss",)


def lower_is_better(metric: str) -> bool:
    return metric.endswith(LOWER_IS_BETTER)


def summary_table(cells: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (method, budget): mean, sd (ddof=1; NaN for one seed), n seeds, min, max of ``metric``."""
    grouped = cells.groupby(["method", "budget"], sort=False)[metric]
    out = grouped.agg(mean="mean", sd=lambda x: x.std(ddof=1) if len(x) > 1 else float("nan"), n="count",
                      min="min", max="max").reset_index()
    return out


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Paired statistics of a − b over seeds (arrays aligned by seed).

    Returns mean, sd (ddof=1), n, se = sd/√n, t = mean/se, t_crit (two-sided 5%), ci_low/ci_high
    (mean ∓ t_crit·se), noise (seed sd of a and b: √((var a + var b)/2)) and exceeds (1.0/0.0).
    Needs n ≥ 2; raises ValueError otherwise or on arrays of different length.
    """
    from scipy.stats import t as student_t

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired difference needs two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    n = len(a)
    if n < 2:
        raise ValueError("a paired difference across seeds needs at least 2 seeds")
    d = a - b
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    t_crit = float(student_t.ppf(0.975, n - 1))
    t_value = mean / se if se > 0 else (0.0 if mean == 0 else math.copysign(math.inf, mean))
    noise = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return {"mean": mean, "sd": sd, "n": n, "se": se, "t": t_value, "t_crit": t_crit,
            "ci_low": mean - t_crit * se, "ci_high": mean + t_crit * se, "noise": noise,
            "exceeds": float(abs(t_value) > t_crit)}


def paired_table(cells: pd.DataFrame, metric: str, methods: list[str] | None = None) -> pd.DataFrame:
    """Every pair of methods at every budget they share: paired difference of ``metric`` over common seeds.

    Rows: budget, a, b, the fields of :func:`paired_difference`, and ``statement`` (plain words).
    Pairs with fewer than 2 common seeds are left out.
    """
    methods = methods or list(dict.fromkeys(cells["method"]))
    rows = []
    for budget in dict.fromkeys(cells["budget"]):
        at = cells[cells["budget"] == budget]
        present = [m for m in methods if m in set(at["method"])]
        for i, a in enumerate(present):
            for b in present[i + 1:]:
                sa = at[at["method"] == a].set_index("seed")[metric]
                sb = at[at["method"] == b].set_index("seed")[metric]
                seeds = sorted(set(sa.index) & set(sb.index))
                if len(seeds) < 2:
                    continue
                stats = paired_difference(sa.loc[seeds].to_numpy(), sb.loc[seeds].to_numpy())
                rows.append({"budget": budget, "a": a, "b": b, **stats,
                             "statement": statement(a, b, metric, stats)})
    return pd.DataFrame(rows)


def statement(a: str, b: str, metric: str, stats: dict[str, float]) -> str:
    """One plain sentence: which method scored better and whether the gap exceeds seed noise."""
    mean = stats["mean"]
    if abs(mean) < 1e-12:
        return f"{a} and {b} score the same {metric} on every seed."
    better_a = (mean < 0) if lower_is_better(metric) else (mean > 0)
    winner, loser = (a, b) if better_a else (b, a)
    gap = f"{metric} {a} − {b} = {mean:+.4f} (95% CI {stats['ci_low']:+.4f} … {stats['ci_high']:+.4f}, " \
          f"{int(stats['n'])} seeds; seed noise sd {stats['noise']:.4f})"
    if stats["exceeds"]:
        return f"{winner} beats {loser}: {gap} — the gap exceeds seed noise."
    return f"{winner} is ahead of {loser} but within seed noise: {gap}."
