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

MADS_COLOR = "#d62728"      # the app's MADS colour (mads_core.views.plots.METHOD_COLORS)
KCENTER_COLOR = "#2ca02c"   # the app's k-center embeddings colour
COVER_COLOR = "#1f77b4"
GREY = "#b8b8b8"
OUTLINE = "#222222"
LIGHT = "#e9e9e9"
TIE_COLOR = "#ff9f40"
FONT = dict(size=15)
# Cell colours of the fingerprint grid by code: 0-2 does not fire (column open / partly covered /
# covered), 3-5 fires at level 1-3 in an open column (grey, darker = stronger), 6-8 the same in a
# covered column (blue), 9 newly covered by the current pick (drawn in the method's colour).
GRID_COLORS = ("#ffffff", "#eaf2fb", "#d3e4f5", "#a6a6a6", "#6e6e6e", "#2b2b2b", "#7fb2e0", "#2f7bc4",
               "#0b3d78", MADS_COLOR)
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
    kw.setdefault("margin", dict(l=10, r=10, t=56, b=10))
    fig.update_layout(title=dict(text=title, x=0.0, xanchor="left", font=dict(size=18)), height=height,
                      font=FONT, template="plotly_white", **kw)
    return fig


def _colorscale(colors: Sequence[str]) -> list[list[object]]:
    """Discrete colour scale for integer codes 0..len(colors)-1."""
    n = len(colors)
    scale: list[list[object]] = []
    for i, color in enumerate(colors):
        scale += [[i / n, color], [(i + 1) / n, color]]
    return scale


def _cell_codes(levels: np.ndarray, cover: np.ndarray, show_levels: bool, current: int | None,
                new_cols: np.ndarray | None) -> np.ndarray:
    """(N, D) colour codes of the grid cells (index into ``GRID_COLORS``)."""
    n = levels.shape[0]
    strength = np.clip(levels, 0, 3) if show_levels else (levels > 0).astype(np.int64) * 2
    band = np.where(cover >= 1.0, 2, np.where(cover > 0, 1, 0))[None, :].repeat(n, axis=0)
    code = np.where(strength > 0, np.where(band > 0, 5 + strength, 2 + strength), band)
    if current is not None and new_cols is not None:
        code[current, np.asarray(new_cols, dtype=bool) & (levels[current] > 0)] = len(GRID_COLORS) - 1
    return code


def walk_figure(
    levels: np.ndarray,
    row_labels: Sequence[str],
    row_hover: Sequence[str],
    col_labels: Sequence[str],
    col_cover: np.ndarray,
    values: np.ndarray,
    new_cols: np.ndarray | None = None,
    current: int | None = None,
    tied: Sequence[int] = (),
    done: dict[int, int] | None = None,
    color: str = MADS_COLOR,
    bar_title: str = "Gain of every candidate",
    value_name: str = "gain",
    number_format: str = "d",
    level_names: Sequence[str] = ("fires",),
    show_levels: bool = False,
    height: int = 390,
) -> go.Figure:
    """One step of a walk: the samples × neurons grid and, on the same rows, the bars the pick is chosen by.

    Grid (trace "fingerprints", ``z`` = codes into ``GRID_COLORS``): levels (N, D) int, 0 =
    does not fire, k = reaches plane k (shades when ``show_levels``); col_cover (D,) in
    [0, 1] per column (the "covered" strip on top; covered columns turn blue, partly
    covered ones get a tint); new_cols (D,) bool: neurons the ``current`` row's pick
    newly counted, drawn in ``color`` with the row outlined.

    Bars: values (N,) the gain (MADS) or distance (k-center) of each candidate, NaN for
    samples picked earlier; ``current`` in ``color``, other ``tied`` rows in orange, the
    rest grey; ``done`` maps earlier picks to their pick number (a label, no bar). Bar
    traces "pick", "tied", "candidates", "picked" carry their rows in ``customdata``.
    """
    levels = np.asarray(levels, dtype=np.int64)
    n, d = levels.shape
    cover = np.clip(np.asarray(col_cover, dtype=np.float64), 0.0, 1.0)
    code = _cell_codes(levels, cover, show_levels, current, new_cols)
    colors = [*GRID_COLORS[:-1], color]
    state_names = ["does not fire", *[f"fires ({name})" for name in level_names]]
    custom = np.empty((n, d), dtype=object)
    for i in range(n):
        for j in range(d):
            lvl = int(levels[i, j])
            state = state_names[min(lvl, len(state_names) - 1)] if show_levels else state_names[min(lvl, 1)]
            extra = " — <b>newly covered by this pick</b>" if code[i, j] == len(colors) - 1 else ""
            custom[i, j] = (f"{row_hover[i]}<br><br>neuron <b>{col_labels[j]}</b>: {state}{extra}"
                            f"<br>column covered: {cover[j]:.0%}")
    fig = make_subplots(rows=2, cols=2, specs=[[{}, None], [{}, {}]], column_widths=[0.7, 0.3],
                        row_heights=[0.06, 0.94], vertical_spacing=0.015, horizontal_spacing=0.015)
    fig.add_trace(go.Heatmap(z=cover[None, :], x=np.arange(d), y=[0], zmin=0.0, zmax=1.0, showscale=False,
                             colorscale=[[0.0, "#ffffff"], [1.0, COVER_COLOR]], xgap=1, name="covered",
                             customdata=np.array([[f"{col_labels[j]}: covered {cover[j]:.0%}" for j in range(d)]]),
                             hovertemplate="%{customdata}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Heatmap(z=code, x=np.arange(d), y=np.arange(n), zmin=-0.5, zmax=len(colors) - 0.5,
                             colorscale=_colorscale(colors), showscale=False, xgap=1, ygap=1, name="fingerprints",
                             customdata=custom, hovertemplate="%{customdata}<extra></extra>"), row=2, col=1)
    if current is not None:
        fig.add_shape(type="rect", x0=-0.5, x1=d - 0.5, y0=current - 0.5, y1=current + 0.5,
                      line=dict(color=OUTLINE, width=2), row=2, col=1)
    _add_bars(fig, np.asarray(values, dtype=np.float64), current, tied, done or {}, color, value_name,
              number_format)
    legend = [("fires", GRID_COLORS[4]), ("fires, covered", GRID_COLORS[7]), ("new with this pick", color),
              ("tie", TIE_COLOR)]
    for name, swatch in legend:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, showlegend=True, hoverinfo="skip",
                                 marker=dict(symbol="square", size=13, color=swatch)), row=2, col=1)
    rows = list(range(n))
    fig.update_yaxes(tickvals=[0], ticktext=["covered"], row=1, col=1, fixedrange=True, tickfont=dict(size=12))
    fig.update_yaxes(tickvals=rows, ticktext=list(row_labels), range=[n - 0.5, -0.5], row=2, col=1,
                     fixedrange=True, tickfont=dict(size=14))
    fig.update_yaxes(tickvals=rows, showticklabels=False, range=[n - 0.5, -0.5], row=2, col=2, fixedrange=True)
    fig.update_xaxes(showticklabels=False, row=1, col=1, fixedrange=True)
    fig.update_xaxes(showticklabels=False, row=2, col=1, fixedrange=True)
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite) & (finite >= 0)]
    top = float(finite.max()) if finite.size else 1.0
    fig.update_xaxes(range=[0, max(top, 1e-9) * 1.35], row=2, col=2, fixedrange=True, showticklabels=False,
                     showgrid=False)
    fig.add_annotation(text=f"<b>{bar_title}</b>", x=0.0, y=1.0, xref="x3 domain", yref="paper", xanchor="left",
                       yanchor="bottom", showarrow=False, font=dict(size=15))
    return _layout(fig, "", height, barmode="overlay", bargap=0.25, margin=dict(l=10, r=10, t=30, b=34),
                   legend=dict(orientation="h", yanchor="top", y=-0.01, x=0.0, xanchor="left", font=dict(size=13)),
                   hoverlabel=dict(font_size=14))


def _add_bars(fig: go.Figure, vals: np.ndarray, pick: int | None, tied: Sequence[int], done: dict[int, int],
              color: str, value_name: str, number_format: str) -> None:
    """The candidate bars of :func:`walk_figure` (row 2, column 2)."""
    n = len(vals)
    tied_set = {int(i) for i in tied}

    def fmt(v: float) -> str:
        return f"{int(round(v))}" if number_format == "d" else f"{v:{number_format}}"

    groups = [("candidates", [i for i in range(n) if i not in done and i != pick and i not in tied_set], GREY),
              ("tied", [i for i in sorted(tied_set) if i != pick and i not in done], TIE_COLOR),
              ("pick", [pick] if pick is not None else [], color)]
    for name, rows, swatch in groups:
        fig.add_trace(go.Bar(
            x=[vals[i] for i in rows], y=rows, orientation="h", name=name, marker_color=swatch, width=0.72,
            customdata=rows, text=[fmt(vals[i]) for i in rows], textposition="outside", cliponaxis=False,
            textfont=dict(size=14, color="#555" if name == "candidates" else swatch), showlegend=False,
            hovertemplate=f"#%{{customdata}}: {value_name} %{{x}}<extra></extra>"), row=2, col=2)
    picked = sorted(done)
    fig.add_trace(go.Bar(x=[0] * len(picked), y=picked, orientation="h", name="picked", marker_color=LIGHT,
                         width=0.72, customdata=picked, showlegend=False, cliponaxis=False,
                         text=[f"picked {rank_mark(done[i])}" for i in picked], textposition="outside",
                         textfont=dict(size=13, color="#777"),
                         hovertemplate="#%{customdata}: already picked<extra></extra>"), row=2, col=2)


def coverage_race(
    curves: dict[str, np.ndarray],
    colors: dict[str, str],
    total: int,
    step: int,
    saturation: int | None = None,
    title: str = "Neurons covered as picks accumulate",
    height: int = 360,
) -> go.Figure:
    """Plain coverage (neurons of the slice fired by the first t picks) per method, walked part solid.

    Each method gets a faint full line (trace ``"<name> (to come)"``) and a solid line up to
    ``step`` (trace ``name``); ``saturation`` marks where MADS's plain coverage is complete.
    """
    fig = go.Figure()
    for name, curve in curves.items():
        y = np.asarray(curve, dtype=np.int64)
        x = np.arange(1, len(y) + 1)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=f"{name} (to come)", showlegend=False,
                                 line=dict(color=colors.get(name), width=2, dash="dot"), opacity=0.3,
                                 hoverinfo="skip"))
    for name, curve in curves.items():
        y = np.asarray(curve, dtype=np.int64)[:step]
        fig.add_trace(go.Scatter(x=np.arange(1, len(y) + 1), y=y, mode="lines+markers", name=name,
                                 line=dict(color=colors.get(name), width=3), marker=dict(size=9),
                                 hovertemplate=f"{name}: %{{y}} of {total} after %{{x}} picks<extra></extra>"))
    fig.add_hline(y=total, line=dict(color="#888", dash="dot"), annotation_text=f"all {total}",
                  annotation_position="bottom right")
    if step > 0:
        fig.add_vline(x=step, line=dict(color="#444", dash="dash"), annotation_text=f"step {step}",
                      annotation_position="bottom left")
    if saturation is not None:
        fig.add_vline(x=saturation, line=dict(color=MADS_COLOR, width=1, dash="dot"),
                      annotation_text="MADS saturates", annotation_position="top left",
                      annotation_font=dict(color=MADS_COLOR, size=13))
    n = max((len(c) for c in curves.values()), default=1)
    fig.update_xaxes(title_text="picks", range=[0.5, n + 0.5], dtick=1, fixedrange=True)
    fig.update_yaxes(title_text="neurons covered", range=[0, total * 1.1], fixedrange=True)
    return _layout(fig, title, height, legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1.0,
                                                   xanchor="right"))
