"""Tables and the figure of a validation grid (shared by the CLI, ``bench/evaluate.py`` and the Validate page).

- :func:`score_table`: per (method, budget) mean ± sd over seeds of every headline metric, with
  the references (``base``: deterministic, sd NaN and n = 1 — no training, nothing random).
- :func:`paired_tables`: every pair of methods at every budget, paired over seeds
  (``mads_core.validate.stats``).
- :func:`figure`: score vs budget per method, mean ± sd error bars, the two references as
  horizontal lines (full pool: mean ± sd band). Pure: data in, ``go.Figure`` out.
- :func:`headline`: the numbers ``bench/evaluate.py`` prints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mads_core.validate.stats import lower_is_better, paired_table, summary_table

HEADLINE_METRICS = ("tasks_loss", "tasks_acc", "pool_loss", "user_loss", "user_acc")
METRIC_LABELS = {
    "tasks_loss": "held-out tasks: gold-answer loss (nats/token, lower is better)",
    "tasks_acc": "held-out tasks: exact-match accuracy (greedy)",
    "pool_loss": "pool held-out split: answer loss (nats/token, lower is better)",
    "user_loss": "your evaluation set: answer loss (nats/token)",
    "user_acc": "your evaluation set: exact-match accuracy",
}
PAIRED_COLUMNS = ["budget", "metric", "a", "b", "mean", "sd", "n", "se", "t", "t_crit", "ci_low", "ci_high",
                  "noise", "exceeds", "statement"]


def metrics_of(cells: pd.DataFrame) -> list[str]:
    return [m for m in HEADLINE_METRICS if m in cells.columns]


def score_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Long table: method, budget, metric, mean, sd, n, min, max (plus chance for accuracies)."""
    frames = []
    for metric in metrics_of(cells):
        t = summary_table(cells, metric)
        t.insert(2, "metric", metric)
        chance_col = metric.replace("_acc", "_chance")
        if metric.endswith("_acc") and chance_col in cells:
            t["chance"] = float(cells[chance_col].mean())
        frames.append(t)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def paired_tables(cells: pd.DataFrame, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Paired differences of every headline metric (references excluded: base has no seeds)."""
    body = cells[~cells["method"].isin(["base"])]
    frames = []
    for metric in metrics_of(cells):
        t = paired_table(body, metric, list(methods) if methods else None)
        if len(t):
            t.insert(1, "metric", metric)
            frames.append(t)
    if not frames:  # one seed (or one method): no pairs, but a CSV reader still gets the header
        return pd.DataFrame(columns=PAIRED_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def wide_table(cells: pd.DataFrame, metric: str) -> pd.DataFrame:
    """method × budget table of "mean ± sd (n)" strings for one metric (what the README/page show)."""
    t = summary_table(cells, metric)

    def fmt(r: pd.Series) -> str:
        sd = "—" if np.isnan(r["sd"]) else f"{r['sd']:.3f}"
        return f"{r['mean']:.3f} ± {sd} (n={int(r['n'])})"

    t["value"] = t.apply(fmt, axis=1)
    wide = t.pivot(index="method", columns="budget", values="value").fillna("")
    return wide.reindex(index=list(dict.fromkeys(t["method"])), columns=list(dict.fromkeys(t["budget"])))


def headline(cells: pd.DataFrame, metric: str = "tasks_loss", a: str = "mads", b: str = "random") -> dict[str, float]:
    """mads − random paired mean difference of ``metric`` at the largest budget both ran, its seed noise,
    and the full-pool mean (NaN where missing)."""
    out = {"mads_vs_random": float("nan"), "noise": float("nan"), "full_data": float("nan"), "budget": ""}
    full = cells[cells["method"] == "full"][metric]
    if len(full):
        out["full_data"] = float(full.mean())
    pairs = paired_table(cells[cells["method"].isin([a, b])], metric, [a, b])
    if len(pairs):
        last = pairs.iloc[-1]
        out.update(mads_vs_random=float(last["mean"]), noise=float(last["noise"]), budget=str(last["budget"]))
    return out


def figure(cells: pd.DataFrame, metric: str = "tasks_loss"):
    """Score vs budget per method (mean ± sd over seeds), base and full-pool references as lines."""
    import plotly.graph_objects as go

    from mads_core.views.plots import method_color, method_label

    fig = go.Figure()
    body = cells[~cells["method"].isin(["base", "full"])]
    budgets = list(dict.fromkeys(body["budget"]))
    for i, method in enumerate(dict.fromkeys(body["method"])):
        t = summary_table(body[body["method"] == method], metric)
        t = t.set_index("budget").reindex(budgets).reset_index()
        fig.add_trace(go.Scatter(
            x=t["budget"], y=t["mean"], mode="lines+markers", name=method_label(method),
            line={"color": method_color(method, i)},
            error_y={"type": "data", "array": t["sd"].fillna(0), "visible": True},
            customdata=np.stack([t["sd"], t["n"]], axis=1),
            hovertemplate="%{x}: %{y:.4f} ± %{customdata[0]:.4f} (n=%{customdata[1]})<extra>" + method + "</extra>",
        ))
    base = cells[cells["method"] == "base"][metric]
    if len(base):
        fig.add_hline(y=float(base.mean()), line={"dash": "dot", "color": "#444"},
                      annotation_text="base model (no fine-tuning)", annotation_position="top left")
    full = cells[cells["method"] == "full"][metric]
    if len(full):
        mean, sd = float(full.mean()), float(full.std(ddof=1)) if len(full) > 1 else 0.0
        fig.add_hrect(y0=mean - sd, y1=mean + sd, fillcolor="#888", opacity=0.15, line_width=0)
        fig.add_hline(y=mean, line={"dash": "dash", "color": "#888"},
                      annotation_text=f"whole pool (± sd, n={len(full)})", annotation_position="bottom left")
    arrow = "↓ better" if lower_is_better(metric) else "↑ better"
    fig.update_layout(title=f"{METRIC_LABELS.get(metric, metric)}", height=420, margin={"t": 50, "b": 40},
                      xaxis_title="budget (share of the selectable pool)", yaxis_title=f"{metric} ({arrow})",
                      legend={"orientation": "h", "y": -0.2})
    return fig
