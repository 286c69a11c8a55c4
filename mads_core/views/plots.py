"""Figure builders: plain data in, ``plotly.graph_objects.Figure`` out (no Streamlit).

Every chart the app draws is built here so it can be tested without a browser and
reused from notebooks. Conventions: each method keeps one colour everywhere
(``METHOD_COLORS``); scatter plots use ``Scattergl`` (52K+ points stay fast) and
carry the global row id of every point in ``customdata`` so a click or lasso maps
back to a sample; budgets are marked with a vertical line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

METHOD_COLORS: dict[str, str] = {
    "mads": "#d62728",
    "random": "#8c564b",
    "kcenter-tfidf": "#1f77b4",
    "kcenter-embed": "#2ca02c",
    "kmeans-embed": "#9467bd",
    "kcenter-act": "#ff7f0e",
    "longest": "#7f7f7f",
    "ifd": "#17becf",
    "superfilter": "#bcbd22",
    "facility-embed": "#e377c2",
    "deita": "#393b79",
    "mads-lenctl": "#ff9896",
    "target-mads": "#843c39",
    "nait": "#637939",
}
METHOD_LABELS: dict[str, str] = {
    "mads": "MADS",
    "random": "random",
    "kcenter-tfidf": "k-center TF-IDF",
    "kcenter-embed": "k-center embeddings",
    "kmeans-embed": "k-means embeddings",
    "kcenter-act": "k-center fingerprints",
    "longest": "longest responses",
    "ifd": "IFD",
    "superfilter": "Superfiltering (IFD + facility location)",
    "facility-embed": "facility location embeddings",
    "deita": "DEITA-style filter",
    "mads-lenctl": "MADS length-controlled",
    "target-mads": "MADS target-aware",
    "nait": "NAIT-style",
}
EXTRA_COLORS = ("#17becf", "#bcbd22", "#e377c2", "#393b79")
GREY = "#c7c7c7"
LINKED_COLOR = "#111111"
SYMBOLS = ("circle", "diamond-open", "square-open", "triangle-up-open", "cross-open", "star-open", "x-thin-open")
DEFAULT_MAX_BACKGROUND = 60_000
FONT = dict(size=12)
# plotly_white's layout part only, built once: plotly copies and validates a template into every figure
# (the whole of plotly_white, with its per-trace-type defaults, took ~40 ms per figure on a busy core:
# a quarter of a Compare rerun), and the traces here set their own styles.
TEMPLATE = go.layout.Template(layout=pio.templates["plotly_white"].layout)


def method_color(name: str, position: int = 0) -> str:
    """Stable colour of a method (unknown names get a colour by position)."""
    return METHOD_COLORS.get(name, EXTRA_COLORS[position % len(EXTRA_COLORS)])


def method_label(name: str) -> str:
    """Display name of a method (the name itself when unknown)."""
    return METHOD_LABELS.get(name, name)


def _layout(fig: go.Figure, title: str, height: int = 380, **kw: object) -> go.Figure:
    fig.update_layout(
        title=dict(text=title, x=0.0, xanchor="left", font=dict(size=14)),
        height=height,
        margin=dict(l=10, r=10, t=50, b=10),
        font=FONT,
        template=TEMPLATE,
        **kw,
    )
    return fig


def _budget_line(fig: go.Figure, k: int | None, n: int | None, position: str = "top right") -> None:
    if k is None:
        return
    text = f"budget k={k:,}" + (f" ({100.0 * k / n:.1f}%)" if n else "")
    fig.add_vline(x=k, line=dict(color="#444", dash="dash", width=1), annotation_text=text,
                  annotation_position=position, annotation_font_size=11)


# ---------------------------------------------------------------- firing picture


def firing_histogram(fired_per_sample: np.ndarray, n_neurons: int, threshold_label: str = "") -> go.Figure:
    """Histogram of the share of neurons each sample fires (plane 0)."""
    share = 100.0 * np.asarray(fired_per_sample, dtype=np.float64) / max(n_neurons, 1)
    fig = go.Figure(go.Histogram(x=share, nbinsx=min(60, max(5, len(share) // 5)), marker_color="#4c78a8",
                                 hovertemplate="%{x:.2f}% of neurons: %{y} samples<extra></extra>"))
    mean = float(share.mean()) if len(share) else 0.0
    fig.add_vline(x=mean, line=dict(color="#d62728", dash="dot"), annotation_text=f"mean {mean:.2f}%",
                  annotation_position="top right")
    fig.update_xaxes(title_text=f"neurons firing per sample, % of {n_neurons:,}")
    fig.update_yaxes(title_text="samples")
    suffix = f" ({threshold_label})" if threshold_label else ""
    return _layout(fig, f"Neurons firing per sample{suffix}")


def layer_firing_rates(rates: np.ndarray, layers: Sequence[int]) -> go.Figure:
    """Mean share of each hooked layer's neurons that fire per sample."""
    rates = 100.0 * np.asarray(rates, dtype=np.float64)
    fig = go.Figure(go.Bar(x=[str(layer) for layer in layers], y=rates, marker_color="#4c78a8",
                           hovertemplate="layer %{x}: %{y:.2f}% firing<extra></extra>"))
    fig.update_xaxes(title_text="model layer", type="category")
    fig.update_yaxes(title_text="% of the layer's neurons per sample")
    return _layout(fig, "Firing rate per layer")


# ---------------------------------------------------------------- projections


def projection_scatter(
    coords: np.ndarray,
    highlights: Mapping[str, np.ndarray],
    *,
    title: str,
    subtitle: str = "",
    linked: np.ndarray | None = None,
    focus: int | None = None,
    hover: Sequence[str] | None = None,
    max_background: int = DEFAULT_MAX_BACKGROUND,
    seed: int = 0,
    height: int = 460,
    color_by: Sequence[object] | None = None,
    color_label: str = "",
) -> go.Figure:
    """2-D map: the rest in grey, each method's selection highlighted, optional linked/focused points.

    ``highlights`` maps method name -> selected row ids. ``linked`` are rows picked in
    the other view (drawn as black rings), ``focus`` one opened sample (a star). Every
    trace's ``customdata`` holds global row ids. When more than ``max_background``
    grey points would be drawn, a deterministic sample of them is drawn and the
    title says so (highlighted points are always drawn). ``color_by`` (one value per
    row, e.g. a metadata column named ``color_label``) colours the unpicked points:
    one trace per value (the ``MAX_COLOR_GROUPS`` largest; the rest "other"), or a
    colour scale when every value is a number.

    Clicks: no ``dragmode`` is set, so Streamlit keeps its default (pan) with
    ``clickmode="event+select"``: a click selects one point and reaches the app's
    ``on_select``. (Streamlit turns clicks into plain events when the default drag
    is lasso or box; those tools stay one click away in the toolbar.)
    """
    coords = np.asarray(coords, dtype=np.float32)
    n = coords.shape[0]
    chosen = np.zeros(n, dtype=bool)
    for idx in highlights.values():
        chosen[np.asarray(idx, dtype=np.int64)] = True
    rest = np.flatnonzero(~chosen)
    note = ""
    if len(rest) > max_background:
        keep = np.sort(np.random.default_rng(seed).choice(len(rest), size=max_background, replace=False))
        note = f"grey: {max_background:,} of {len(rest):,} unselected points drawn (thinned for speed)"
        rest = rest[keep]
    fig = go.Figure()
    if color_by is None:
        fig.add_trace(_scatter(coords, rest, hover, "not selected", dict(color=GREY, size=5, opacity=0.75)))
        fig.data[-1].legendrank = 50
    else:
        for trace in _colored(coords, rest, hover, list(color_by), color_label):
            trace.legendrank = 50
            fig.add_trace(trace)
    # The first method (MADS by convention) is drawn last so it sits on top; the legend keeps the given order.
    for pos, (name, idx) in reversed(list(enumerate(highlights.items()))):
        idx = np.asarray(idx, dtype=np.int64)
        symbol = SYMBOLS[pos % len(SYMBOLS)]
        size = 7 if pos == 0 else 8 + pos
        marker = dict(color=method_color(name, pos), size=size, symbol=symbol, line=dict(width=1.5,
                      color=method_color(name, pos)), opacity=0.9)
        trace = _scatter(coords, idx, hover, f"{method_label(name)} ({len(idx):,})", marker)
        trace.legendrank = 100 + pos
        fig.add_trace(trace)
    if linked is not None and len(linked):
        idx = np.asarray(linked, dtype=np.int64)
        marker = dict(color=LINKED_COLOR, size=11, symbol="circle-open", line=dict(width=1.2, color=LINKED_COLOR))
        fig.add_trace(_scatter(coords, idx, hover, f"linked selection ({len(idx):,})", marker))
    if focus is not None and 0 <= focus < n:
        marker = dict(color="#ffd700", size=18, symbol="star", line=dict(width=1.5, color=LINKED_COLOR))
        fig.add_trace(_scatter(coords, np.array([focus]), hover, "opened sample", marker))
    full_title = title + (f"<br><sup>{subtitle}</sup>" if subtitle else "")
    if note:
        full_title += f"<br><sup>{note}</sup>"
    fig.update_xaxes(showticklabels=False, title_text="", zeroline=False, showgrid=False)
    fig.update_yaxes(showticklabels=False, title_text="", zeroline=False, showgrid=False)
    return _layout(fig, full_title, height=height, uirevision="keep", hovermode="closest",
                   legend=dict(orientation="h", yanchor="top", y=-0.02, x=0.0), meta={"thinned": bool(note)})


MAX_COLOR_GROUPS = 12
QUALITATIVE = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac", "#eeca3b",
               "#72b7b2", "#e45756", "#79706e", "#d67195")


def _colored(coords: np.ndarray, rows: np.ndarray, hover: Sequence[str] | None, values: list[object],
             label: str) -> list[go.Scattergl]:
    """Unpicked points coloured by a metadata value: a colour scale for numbers, else one trace per value."""
    picked = [values[int(i)] for i in rows]
    numbers = [v for v in picked if v is not None]
    if numbers and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        shade = np.array([np.nan if v is None else float(v) for v in picked])
        marker = dict(color=shade, colorscale="Viridis", size=5, opacity=0.8, showscale=True,
                      colorbar=dict(title=label, thickness=10, len=0.6))
        return [_scatter(coords, rows, hover, f"not selected, by {label}", marker)]
    counts = pd.Series([str(v) if v is not None else "(none)" for v in picked], dtype=object).value_counts()
    top = list(counts.index[:MAX_COLOR_GROUPS])
    keys = np.array([str(v) if v is not None else "(none)" for v in picked], dtype=object)
    keys = np.where(np.isin(keys, top), keys, "other")
    traces = []
    for pos, key in enumerate([*top, "other"]):
        members = rows[keys == key]
        if len(members):
            color = QUALITATIVE[pos % len(QUALITATIVE)] if key != "other" else GREY
            traces.append(_scatter(coords, members, hover, f"{label}: {key}",
                                   dict(color=color, size=5, opacity=0.7)))
    return traces


def _scatter(coords: np.ndarray, idx: np.ndarray, hover: Sequence[str] | None, name: str, marker: dict) -> go.Scattergl:
    text = [hover[i] for i in idx] if hover is not None else None
    template = "%{text}<extra>row %{customdata}</extra>" if hover is not None else "row %{customdata}<extra></extra>"
    return go.Scattergl(
        x=coords[idx, 0], y=coords[idx, 1], mode="markers", name=name, marker=marker,
        customdata=np.asarray(idx, dtype=np.int64), text=text, hovertemplate=template,
    )


# ---------------------------------------------------------------- coverage


def saturation_point(k: np.ndarray, covered: np.ndarray) -> tuple[int, float] | None:
    """(k, value) where a coverage curve first reaches its final maximum, or None if it is still rising.

    "Saturated" means the curve reached its maximum before its last point: every
    later pick adds nothing to plain coverage.
    """
    k = np.asarray(k)
    covered = np.asarray(covered, dtype=np.float64)
    if len(covered) < 2:
        return None
    top = covered.max()
    first = int(np.argmax(covered >= top))
    if first >= len(covered) - 1:
        return None
    return int(k[first]), float(covered[first])


def coverage_curves(
    curves: pd.DataFrame,
    *,
    n: int,
    budget: int | None = None,
    saturation: tuple[str, int, float] | Sequence[tuple[str, int, float]] | None = None,
    y: str = "coverage",
) -> go.Figure:
    """Neuron coverage vs budget, one line per method; budget and saturation points marked.

    ``curves`` has columns ``method``, ``k`` and ``y`` (a fraction in [0, 1]).
    ``saturation`` = (method, k, coverage) where a method's plain coverage stops growing,
    or a list of them (one per method that saturates), each marked in its method's colour.
    """
    fig = go.Figure()
    for pos, (name, part) in enumerate(curves.groupby("method", sort=False)):
        part = part.sort_values("k")
        fig.add_trace(go.Scattergl(  # float32: half the bytes of every rerun, far finer than a pixel
            x=part["k"].to_numpy(), y=(100.0 * part[y].to_numpy(dtype=np.float64)).astype(np.float32),
            mode="lines", name=method_label(str(name)),
            line=dict(color=method_color(str(name), pos), width=2.5 if name == "mads" else 1.8),
            customdata=(100.0 * part["k"].to_numpy(dtype=np.float64) / max(n, 1)).astype(np.float32),
            hovertemplate="k=%{x:,} (%{customdata:.1f}%)<br>coverage %{y:.1f}%<extra>" + method_label(str(name))
            + "</extra>",
        ))
    _budget_line(fig, budget, n, "bottom right")
    points = [saturation] if isinstance(saturation, tuple) else list(saturation or [])
    order = [str(m) for m in curves["method"].drop_duplicates()]
    for j, (name, k_sat, value) in enumerate(points):
        pos = order.index(name) if name in order else j
        fig.add_trace(go.Scatter(
            x=[k_sat], y=[100.0 * value], mode="markers+text", name="plain coverage saturates",
            legendgroup="saturation", showlegend=j == 0,
            marker=dict(symbol="x", size=12, color=method_color(name, pos), line=dict(width=1, color="#000")),
            text=[f"k={k_sat:,}"], textposition="bottom center", cliponaxis=False,
            hovertemplate=f"{method_label(name)}: plain coverage saturates at k={k_sat:,} "
            f"({100.0 * k_sat / max(n, 1):.0f}%): every neuron any sample fires is covered<extra></extra>",
        ))
    fig.update_xaxes(title_text=f"budget k (picks, of N={n:,})", rangemode="tozero")
    fig.update_yaxes(title_text="% of coverable neurons covered", range=[0, 102])
    return _layout(fig, "Neuron coverage vs budget", legend=dict(orientation="h", y=-0.2, x=0.0))


def gain_per_pick(
    gains: np.ndarray,
    rounds: np.ndarray | None = None,
    *,
    budget: int | None = None,
    n: int | None = None,
    filler_from: int | None = None,
    unit: str = "neurons",
    label: str = "MADS",
) -> go.Figure:
    """Gain of every pick in rank order (log scale), coloured by greedy round (1 = first pass).

    Shows where plain coverage runs out: late picks that add one rare neuron each,
    then resets (rounds) or zero-gain filler.
    """
    gains = np.asarray(gains, dtype=np.float64)
    ranks = np.arange(1, len(gains) + 1)
    rounds = np.zeros(len(gains), dtype=np.int64) if rounds is None else np.asarray(rounds, dtype=np.int64)
    shown = np.where(gains > 0, gains, np.nan).astype(np.float32)  # float32: half the bytes per rerun
    fig = go.Figure(go.Scattergl(
        x=ranks, y=shown, mode="markers", name="gain",
        marker=dict(size=4, color=rounds + 1, colorscale="Viridis", showscale=bool(rounds.max(initial=0) > 0),
                    colorbar=dict(title="round", thickness=10, dtick=1)),
        customdata=rounds + 1,
        hovertemplate="pick %{x:,}: +%{y:,.4g} " + unit + " (round %{customdata})<extra></extra>",
    ))
    _budget_line(fig, budget, n)
    if filler_from is not None and 0 <= filler_from < len(gains):
        fig.add_vrect(x0=filler_from + 0.5, x1=len(gains) + 0.5, fillcolor="#999", opacity=0.15, line_width=0,
                      annotation_text="zero-gain filler", annotation_position="top left")
    fig.update_xaxes(title_text="pick (rank)")
    fig.update_yaxes(title_text=f"gain at pick ({unit}, log)", type="log")
    return _layout(fig, f"{label}: gain per pick")


# ---------------------------------------------------------------- metrics


def metrics_bars(table: pd.DataFrame, metrics: Sequence[tuple[str, str]]) -> go.Figure:
    """One small bar chart per metric column, one bar per method (``table`` has a ``method`` column)."""
    present = [(col, label) for col, label in metrics if col in table.columns]
    fig = make_subplots(rows=1, cols=max(1, len(present)), subplot_titles=[label for _, label in present])
    names = [str(m) for m in table["method"]]
    colors = [method_color(m, i) for i, m in enumerate(names)]
    for j, (col, label) in enumerate(present, start=1):
        fig.add_trace(go.Bar(
            x=[method_label(m) for m in names], y=table[col].astype(float), marker_color=colors, name=label,
            showlegend=False, hovertemplate="%{x}: %{y:.4g}<extra>" + label + "</extra>",
        ), row=1, col=j)
    fig.update_xaxes(tickangle=-35)
    fig = _layout(fig, "Metrics at the current budget", height=360)
    fig.update_layout(margin=dict(t=80))
    return fig


def category_bars(
    categories: Sequence[str | None],
    selections: Mapping[str, np.ndarray],
    top: int = 50,
) -> go.Figure:
    """Share of each method's picks per category next to the whole dataset's share.

    Categories in dataset order of size. With more than ``top`` categories, those
    with the largest share in the dataset or in any method's picks are drawn and the
    title says how many were left out. Unlabelled samples are ignored.
    """
    counts = pd.Series([c for c in categories if c is not None], dtype=object).value_counts()
    total = max(int(counts.sum()), 1)
    dataset_share = 100.0 * counts / total
    shares: dict[str, pd.Series] = {}
    for name, idx in selections.items():
        pc = pd.Series([categories[int(i)] for i in idx if categories[int(i)] is not None], dtype=object)
        vc = pc.value_counts()
        shares[name] = 100.0 * vc / max(int(vc.sum()), 1)
    peak = pd.concat([dataset_share, *shares.values()], axis=1).max(axis=1)
    keep = set(peak.sort_values(ascending=False, kind="stable").index[:top])
    shown = [c for c in counts.index if c in keep]
    fig = go.Figure()
    fig.add_trace(go.Bar(y=shown, x=[dataset_share[c] for c in shown], orientation="h", name="whole dataset",
                         marker_color=GREY, hovertemplate="%{y}: %{x:.1f}% of the dataset<extra></extra>"))
    for pos, (name, share) in enumerate(shares.items()):
        fig.add_trace(go.Bar(y=shown, x=[float(share.get(c, 0.0)) for c in shown], orientation="h",
                             name=method_label(name), marker_color=method_color(name, pos),
                             hovertemplate="%{y}: %{x:.1f}% of picks<extra>" + method_label(name) + "</extra>"))
    title = "Share of picks per category"
    if len(counts) > len(shown):
        title += f" ({len(shown)} of {len(counts)} categories: the largest in the dataset or in the picks)"
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(title_text="% of picks (grey: % of the dataset)")
    height = 160 + len(shown) * (8 + 5 * (len(shares) + 1))
    # The legend sits in the right margin (it covered the top axis labels when drawn over the plot).
    return _layout(fig, title, height=height, barmode="group", bargap=0.25,
                   legend=dict(orientation="v", x=1.01, xanchor="left", y=1.0, yanchor="top"))


def newly_covered_bars(counts: np.ndarray, layers: Sequence[int], title: str = "Neurons newly covered") -> go.Figure:
    """Per hooked layer: how many neurons a sample newly covered (or would add)."""
    counts = np.asarray(counts, dtype=np.int64)
    fig = go.Figure(go.Bar(x=[str(layer) for layer in layers], y=counts, marker_color="#d62728",
                           hovertemplate="layer %{x}: %{y} neurons<extra></extra>"))
    fig.update_xaxes(title_text="model layer", type="category")
    fig.update_yaxes(title_text="neurons")
    return _layout(fig, f"{title} (total {int(counts.sum()):,})", height=300)


def overlap_bars(n_only_a: int, n_both: int, n_only_b: int, label_a: str, label_b: str,
                 color_a: str | None = None, color_b: str | None = None) -> go.Figure:
    """Stacked bar of two selections: only in A, in both, only in B (each method in its own colour)."""
    fig = go.Figure()
    color_a = color_a or method_color("mads")
    color_b = color_b or method_color("kcenter-tfidf")
    for value, name, color in ((n_only_a, f"only {label_a}", color_a), (n_both, "both", "#555"),
                               (n_only_b, f"only {label_b}", color_b)):
        fig.add_trace(go.Bar(y=["picks"], x=[value], name=f"{name} ({value:,})", orientation="h",
                             marker_color=color, hovertemplate=f"{name}: {value:,}<extra></extra>"))
    return _layout(fig, "Overlap of the two selections", height=180, barmode="stack",
                   legend=dict(orientation="h", y=-0.3, x=0.0))
