"""Figures of the "How MADS chooses" page: plain data in, ``plotly`` Figure out (no Streamlit).

Sized for a presenter (1280×720 full screen): large fonts, samples as rows in the same
order in every figure (row 0 on top), so the fingerprint grid and the bar charts
line up. Every bar carries its instance row in ``customdata``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

MADS_COLOR = "#d62728"      # the app's MADS colour (mads_core.plots.METHOD_COLORS)
KCENTER_COLOR = "#2ca02c"   # the app's k-center embeddings colour
COVER_COLOR = "#1f77b4"
GREY = "#b8b8b8"
LIGHT = "#e9e9e9"
TIE_COLOR = "#ff9f40"
FONT = dict(size=15)
# Cell colours by activation level: 0 = does not fire, 1.. = fires (darker = stronger).
LEVEL_COLORS = ("#ffffff", "#8c8c8c", "#525252", "#1a1a1a")
CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"


def rank_mark(rank: int) -> str:
    """A compact pick number for axis labels: ① .. ⑳, then (21)."""
    return CIRCLED[rank - 1] if 1 <= rank <= len(CIRCLED) else f"({rank})"


def row_label(row: int, category: str, short: str, marks: str = "") -> str:
    """Axis label of one sample: pick marks, row number, category and the start of its prompt."""
    cat = category.split(":")[-1]
    return f"{marks} #{row} {cat} · {short}".strip()


def hover_text(text: str, width: int = 64, max_chars: int = 420) -> str:
    """A sample's text wrapped for a hover box (HTML line breaks, cut at ``max_chars``)."""
    flat = " ".join(text.split())
    if len(flat) > max_chars:
        flat = flat[: max_chars - 1] + "…"
    return "<br>".join(textwrap.wrap(flat, width)) or "(empty)"


def _layout(fig: go.Figure, title: str, height: int, **kw: object) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left", font=dict(size=18)), height=height,
                      font=FONT, template="plotly_white", margin=dict(l=10, r=10, t=56, b=10), **kw)
    return fig


def _colorscale(colors: Sequence[str]) -> list[list[object]]:
    """Discrete colour scale for integer codes 0..len(colors)-1."""
    n = len(colors)
    scale: list[list[object]] = []
    for i, color in enumerate(colors):
        scale += [[i / n, color], [(i + 1) / n, color]]
    return scale


def fingerprint_grid(
    levels: np.ndarray,
    row_labels: Sequence[str],
    row_hover: Sequence[str],
    col_labels: Sequence[str],
    col_cover: np.ndarray,
    new_cols: np.ndarray | None = None,
    current: int | None = None,
    color: str = MADS_COLOR,
    title: str = "Fingerprints",
    level_names: Sequence[str] = ("fires",),
    show_levels: bool = False,
    tick_every: Sequence[int] | None = None,
    tick_text: Sequence[str] | None = None,
    height: int = 470,
) -> go.Figure:
    """Samples × neurons heatmap: fired cells dark, covered columns shaded, the pick's new neurons coloured.

    levels (N, D) int: 0 = does not fire, k = reaches plane k (shown as shades when
    ``show_levels``, else every firing cell alike). col_cover (D,) in [0, 1]: how far each
    column is covered (drawn as a strip on top and as a tint over the column). new_cols
    (D,) bool: neurons the ``current`` row's pick newly covers, coloured ``color``.
    """
    levels = np.asarray(levels, dtype=np.int64)
    n, d = levels.shape
    n_levels = len(LEVEL_COLORS) - 1
    shade = np.clip(levels, 0, n_levels) if show_levels else (levels > 0).astype(np.int64)
    code = shade.copy()
    if current is not None and new_cols is not None:
        code[current, np.asarray(new_cols, dtype=bool) & (levels[current] > 0)] = n_levels + 1
    colors = [*LEVEL_COLORS, color]
    cover = np.clip(np.asarray(col_cover, dtype=np.float64), 0.0, 1.0)
    state_names = ["does not fire", *[f"fires: {name}" for name in level_names]]
    custom = np.empty((n, d), dtype=object)
    for i in range(n):
        for j in range(d):
            lvl = int(levels[i, j])
            state = state_names[min(lvl, len(state_names) - 1)] if show_levels else state_names[min(lvl, 1)]
            extra = " — <b>newly covered by this pick</b>" if code[i, j] == n_levels + 1 else ""
            custom[i, j] = f"{row_hover[i]}<br><br>neuron <b>{col_labels[j]}</b>: {state}{extra}" \
                           f"<br>column covered: {cover[j]:.0%}"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.06, 0.94], vertical_spacing=0.015)
    fig.add_trace(go.Heatmap(z=cover[None, :], x=np.arange(d), y=[0], zmin=0.0, zmax=1.0, showscale=False,
                             colorscale=[[0.0, "#ffffff"], [1.0, COVER_COLOR]], xgap=1, name="covered",
                             customdata=np.array([[f"{col_labels[j]}: covered {cover[j]:.0%}" for j in range(d)]]),
                             hovertemplate="%{customdata}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Heatmap(z=code, x=np.arange(d), y=np.arange(n), zmin=-0.5, zmax=len(colors) - 0.5,
                             colorscale=_colorscale(colors), showscale=False, xgap=1, ygap=1, name="fingerprints",
                             customdata=custom, hovertemplate="%{customdata}<extra></extra>"), row=2, col=1)
    for j in np.flatnonzero(cover > 0):
        fig.add_vrect(x0=j - 0.5, x1=j + 0.5, fillcolor=COVER_COLOR, opacity=0.12 + 0.2 * cover[j], line_width=0,
                      layer="above", row=2, col=1)
    if current is not None:
        fig.add_shape(type="rect", x0=-0.5, x1=d - 0.5, y0=current - 0.5, y1=current + 0.5,
                      line=dict(color=color, width=3), row=2, col=1)
    legend = [("fires", LEVEL_COLORS[2]), ("newly covered by this pick", color), ("covered column", COVER_COLOR)]
    for name, swatch in legend:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, showlegend=True,
                                 marker=dict(symbol="square", size=14, color=swatch)), row=2, col=1)
    fig.update_yaxes(tickvals=[0], ticktext=["covered"], row=1, col=1, fixedrange=True)
    fig.update_yaxes(tickvals=list(range(n)), ticktext=list(row_labels), autorange="reversed", row=2, col=1,
                     fixedrange=True, tickfont=dict(size=14))
    ticks = list(tick_every) if tick_every is not None else []
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_xaxes(tickvals=ticks, ticktext=list(tick_text or []), tickangle=0, row=2, col=1, fixedrange=True,
                     title_text="neurons (model layers left → right)", title_font=dict(size=14))
    return _layout(fig, title, height, legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1.0,
                                                   xanchor="right", font=dict(size=13)))


def choice_bars(
    values: np.ndarray,
    row_labels: Sequence[str],
    pick: int | None,
    tied: Sequence[int] = (),
    done: dict[int, int] | None = None,
    color: str = MADS_COLOR,
    title: str = "Gain of every candidate",
    value_name: str = "gain (new neurons)",
    number_format: str = "d",
    height: int = 470,
) -> go.Figure:
    """Horizontal bars, one per sample (same order as the grid): the value each candidate is judged by.

    values (N,): the gain (MADS) or distance (k-center) of each candidate; NaN or negative
    for samples picked earlier. ``pick`` is drawn in ``color``, other members of
    ``tied`` in orange, candidates in grey; ``done`` maps earlier picks to their pick
    number (drawn as a label only). Trace names: "pick", "tied", "candidates", "picked".
    """
    vals = np.asarray(values, dtype=np.float64)
    n = len(vals)
    done = done or {}
    picked_rows = [i for i in range(n) if i in done]
    fmt = (lambda v: f"{v:.3f}") if number_format != "d" else (lambda v: f"{int(round(v))}")
    fig = go.Figure()
    groups = [("candidates", [i for i in range(n) if i not in done and i != pick and i not in tied], GREY),
              ("tied", [i for i in tied if i != pick and i not in done], TIE_COLOR),
              ("pick", [pick] if pick is not None else [], color)]
    for name, rows, swatch in groups:
        fig.add_trace(go.Bar(
            x=[vals[i] for i in rows], y=rows, orientation="h", name=name, marker_color=swatch,
            customdata=rows, text=[fmt(vals[i]) for i in rows], textposition="outside",
            cliponaxis=False, textfont=dict(size=14),
            hovertemplate=f"#%{{customdata}}: {value_name} %{{x}}<extra>{name}</extra>"))
    fig.add_trace(go.Bar(x=[0] * len(picked_rows), y=picked_rows, orientation="h", name="picked",
                         marker_color=LIGHT, customdata=picked_rows, showlegend=False,
                         text=[f"picked {rank_mark(done[i])}" for i in picked_rows], textposition="outside",
                         cliponaxis=False, textfont=dict(size=13, color="#777"),
                         hovertemplate="#%{customdata}: already picked<extra></extra>"))
    finite = vals[np.isfinite(vals) & (vals >= 0)]
    top = float(finite.max()) if finite.size else 1.0
    fig.update_yaxes(tickvals=list(range(n)), ticktext=list(row_labels), autorange="reversed", fixedrange=True,
                     tickfont=dict(size=14), range=[n - 0.5, -0.5])
    fig.update_xaxes(title_text=value_name, range=[0, max(top, 1e-9) * 1.25], fixedrange=True)
    return _layout(fig, title, height, barmode="overlay", bargap=0.25,
                   legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1.0, xanchor="right",
                               font=dict(size=13)))


def coverage_race(
    curves: dict[str, np.ndarray],
    colors: dict[str, str],
    total: int,
    step: int,
    saturation: int | None = None,
    title: str = "Neurons covered as picks accumulate",
    height: int = 360,
) -> go.Figure:
    """Plain coverage (neurons of the slice fired by the first t picks) for each method, current step marked."""
    fig = go.Figure()
    for name, curve in curves.items():
        y = np.asarray(curve, dtype=np.int64)
        x = np.arange(1, len(y) + 1)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name, line=dict(color=colors.get(name), width=3),
                                 marker=dict(size=8), hovertemplate=f"{name}: %{{y}} of {total} after %{{x}} picks"
                                 "<extra></extra>"))
    fig.add_hline(y=total, line=dict(color="#888", dash="dot"), annotation_text=f"all {total}",
                  annotation_position="bottom right")
    if step > 0:
        fig.add_vline(x=step, line=dict(color="#444", dash="dash"), annotation_text=f"step {step}",
                      annotation_position="top left")
    if saturation is not None:
        fig.add_vrect(x0=saturation, x1=saturation + 0.02, line=dict(color=MADS_COLOR, width=1, dash="dot"),
                      annotation_text="MADS saturates", annotation_position="bottom left",
                      annotation_font=dict(color=MADS_COLOR, size=13))
    n = max((len(c) for c in curves.values()), default=1)
    fig.update_xaxes(title_text="picks", range=[0.5, n + 0.5], dtick=1, fixedrange=True)
    fig.update_yaxes(title_text="neurons covered", range=[0, total * 1.08], fixedrange=True)
    return _layout(fig, title, height, legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1.0,
                                                   xanchor="right"))
