"""Compare: MADS against the baselines at one budget — maps, coverage curves, metrics, categories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from mads_core import session
from mads_core.analysis import metrics
from mads_core.config import SELECT_CONTINUATIONS, SELECT_WEIGHTINGS, SelectConfig
from mads_core.select.greedy import Selection
from mads_core.views import plots
from pages import _common as ui

ui.page_setup(__file__)

# Above this N x k, text diversity (O(N * k * d)) is left out of the live table.
DIVERSITY_LIMIT = 400_000_000
METRIC_COLUMNS = {
    "coverage": "neuron coverage",
    "mean_nn_distance": "text spread (mean NN cos dist)",
    "radius": "text radius (max dist to a pick)",
    "category_coverage": "category coverage",
    "category_entropy": "category entropy (norm.)",
    "len_mean": "tokens (mean)",
    "len_median": "tokens (median)",
}

st.title("Compare selections")
s = ui.settings()
ds = ui.dataset(s)
n = len(ds)


# ---------------------------------------------------------------- controls


def _keep(widget_key: str, store_key: str, default: object) -> None:
    """Give a widget its remembered value (widget state is dropped when another page runs)."""
    if widget_key not in st.session_state:
        st.session_state[widget_key] = st.session_state.get(store_key, default)


def _mads_settings() -> SelectConfig:
    current = st.session_state.get(ui.SELECT_CONFIG) or SelectConfig()
    defaults = {"w_cont": current.continuation, "w_m": current.m, "w_weighting": current.weighting,
                "w_min_support": current.min_support, "w_max_share": float(current.max_neuron_share)}
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)
    c1, c2 = st.columns(2)
    c1.selectbox("After saturation", SELECT_CONTINUATIONS, key="w_cont",
                 help="rounds: reset coverage and keep covering; mcover: a neuron counts until m picks fire it; "
                 "states: cover (neuron, activation level) pairs; none: plain greedy, then zero-gain filler.")
    c1.number_input("m (m-cover)", min_value=1, step=1, key="w_m", disabled=st.session_state["w_cont"] != "mcover")
    c2.selectbox("Neuron weights", SELECT_WEIGHTINGS, key="w_weighting",
                 help="idf: rarer neurons weigh more (log N / count).")
    c2.number_input("Minimum support (samples per neuron)", min_value=1, step=1, key="w_min_support",
                    help="Neurons fired by fewer samples never count: stops the tail chasing one-off outliers.")
    st.slider("Ignore neurons firing on more than this share of samples", 0.05, 1.0, step=0.05, key="w_max_share")
    config = SelectConfig(continuation=st.session_state["w_cont"], m=int(st.session_state["w_m"]),
                          weighting=st.session_state["w_weighting"],
                          min_support=int(st.session_state["w_min_support"]),
                          max_neuron_share=float(st.session_state["w_max_share"]))
    st.session_state[ui.SELECT_CONFIG] = config
    return config


def _baseline_settings(method: str, store: dict) -> None:
    own = dict(store.get(method, {}))
    if method in session.SEEDED_METHODS:
        key = f"w_seed_{method}"
        st.session_state.setdefault(key, int(own.get("seed", 0)))
        st.number_input("Seed", min_value=0, step=1, key=key)
        own["seed"] = int(st.session_state[key])
    else:
        st.caption("No settings (fixed, recorded in each selection's settings).")
    store[method] = own


k = ui.budget_control(n, "compare")
_keep("w_methods", ui.METHODS, list(session.DEFAULT_METHODS))
st.multiselect("Methods", session.METHODS, key="w_methods", format_func=plots.method_label,
               help="MADS and every baseline; each is ranked once and every budget is a prefix of its ranking.")
methods = list(st.session_state["w_methods"]) or ["mads"]
st.session_state[ui.METHODS] = methods

method_store = dict(st.session_state.get(ui.METHOD_SETTINGS) or {})
cols = st.columns(min(len(methods), 3) or 1)
for pos, method in enumerate(methods):
    with cols[pos % len(cols)].expander(f"{plots.method_label(method)} settings"):
        st.caption(session.METHOD_HELP[method])
        if method == "mads":
            with ui.guard("MADS settings"):
                _mads_settings()
        else:
            _baseline_settings(method, method_store)
st.session_state[ui.METHOD_SETTINGS] = method_store

with st.expander("Map settings (UMAP)"):
    ps = ui.projection_settings()
    a, b, c = st.columns(3)
    st.session_state.setdefault("w_nn", ps.n_neighbors)
    st.session_state.setdefault("w_min_dist", ps.min_dist)
    st.session_state.setdefault("w_svd", ps.svd_dims)
    a.number_input("Neighbours", min_value=2, max_value=200, step=1, key="w_nn")
    b.number_input("Minimum distance", min_value=0.0, max_value=1.0, step=0.05, key="w_min_dist")
    c.number_input("SVD dims before UMAP (fingerprints; 0 = none)", min_value=0, max_value=200, step=10,
                   key="w_svd", help="Fingerprints have tens of thousands of bits: an SVD pre-reduction makes UMAP "
                   "fast. 0 runs Jaccard UMAP on the raw bits (small N only).")
    st.session_state[ui.PROJ_SETTINGS] = ui.ProjectionSettings(int(st.session_state["w_nn"]),
                                                               float(st.session_state["w_min_dist"]),
                                                               int(st.session_state["w_svd"]))

# ---------------------------------------------------------------- compute (cached)

fp = ui.require_fingerprints(ds, s)
emb = ui.embeddings(ds)
sels: dict[str, Selection] = ui.selections(methods, ds, fp, k, emb)
picked = {m: np.asarray(sel.ranking[:k]) for m, sel in sels.items()}
hover = ui.hover_labels(ds)
linked = ui.linked_rows()

# ---------------------------------------------------------------- (a) (b) maps
st.header("Where the picks fall", divider="gray")
st.session_state.setdefault("w_highlight", [m for m in ("mads", "random") if m in picked] or list(picked)[:1])
st.session_state["w_highlight"] = [m for m in st.session_state["w_highlight"] if m in picked]
shown_methods = st.pills("Highlight on the maps", list(picked), selection_mode="multi", key="w_highlight",
                         format_func=plots.method_label,
                         help="Picks of each highlighted method at the current budget; grey: picked by none of them.")
highlight = {m: picked[m] for m in shown_methods or []}
left, right = st.columns(2)
fp_proj = ui.fingerprint_projection(fp)
text_proj = ui.embedding_projection(ds, emb)
focus = st.session_state.get(ui.INSPECT_ROW)
for col, proj, title, key in ((left, fp_proj, "(a) Activation fingerprints", "compare_map_fp"),
                              (right, text_proj, "(b) Text embeddings (MiniLM)", "compare_map_text")):
    fig = plots.projection_scatter(proj.coords, highlight, title=title, subtitle=proj.method, linked=linked,
                                   focus=focus, hover=hover)
    col.plotly_chart(fig, key=key, on_select=ui.on_map_select(key), selection_mode=("points", "box", "lasso"),
                     width="stretch")
st.caption("Grey: not picked by any highlighted method. Lasso or box-select in one map to ring the same samples in the "
           "other (linked views); click a point to open it on **Inspect**.")
if len(linked):
    lc1, lc2 = st.columns([4, 1])
    in_sel = {plots.method_label(m): int(np.isin(linked, idx).sum()) for m, idx in picked.items()}
    lc1.info(f"Linked selection: {len(linked):,} samples — picked among them: "
             + ", ".join(f"{name} {count}" for name, count in in_sel.items()), icon=":material/link:")
    lc2.button("Clear linked selection", on_click=lambda: st.session_state.update({ui.LINKED: []}))

# ---------------------------------------------------------------- (c) coverage
st.header("Coverage vs budget", divider="gray")
curve_key = "|".join(f"{m}:{sel.settings_hash}:{len(sel.ranking)}" for m, sel in sels.items())
frame, coverable = ui.memo("coverage-frame", f"{fp.key}|{curve_key}",
                           lambda: session.coverage_frame(sels, fp.bits, fp.n_neurons))
saturation = None
sat_method = "mads" if "mads" in sels else None
if sat_method is not None:
    part = frame[frame["method"] == sat_method]
    point = plots.saturation_point(part["k"].to_numpy(), part["covered"].to_numpy())
    if point is not None and part["covered"].max() >= coverable:
        saturation = (sat_method, point[0], point[1] / coverable)
left, right = st.columns(2)
left.plotly_chart(plots.coverage_curves(frame, n=n, budget=k, saturation=saturation), width="stretch")
note = ("k-means is re-run for each budget, so its curve stops at the current budget. " if "kmeans-embed" in sels
        else "")
left.caption(f"Plain neuron coverage: share of the {coverable:,} neurons that fire on at least one sample. "
             + note + (f"Plain coverage saturates after {saturation[1]:,} picks: every later pick adds nothing "
                       "to it." if saturation else ""))
if "mads" in sels:
    mads = sels["mads"]
    unit = "nats (idf)" if mads.settings.get("weighting") == "idf" else "neurons"
    right.plotly_chart(plots.gain_per_pick(mads.gains, mads.rounds, budget=k, n=n,
                                           filler_from=mads.filler_from if mads.filler_from < len(mads) else None,
                                           unit=unit), width="stretch")
    right.caption("Late picks of plain coverage each add a few rare neurons (the tail chases outliers). Raise "
                  "*minimum support*, use idf weights, or switch the continuation in MADS settings to tame it.")
else:
    right.info("Add MADS to the methods to see its gain per pick.", icon=":material/info:")

# ---------------------------------------------------------------- (d) metrics
st.header(f"Metrics at k = {k:,}", divider="gray")
use_emb = emb if n * k <= DIVERSITY_LIMIT else None
table_key = f"{fp.key}|{curve_key}|{k}|{use_emb is not None}"


def _metrics() -> pd.DataFrame:
    return metrics.metrics_table(sels, [k], bits=fp.bits, n_neurons=fp.n_neurons, emb=use_emb,
                                 categories=ds.categories, lengths=ui.lengths(fp))


with ui.guard("Metrics failed"):
    table = ui.memo("metrics", table_key, _metrics, recent=True)
shown = table[["method", *[c for c in METRIC_COLUMNS if c in table.columns]]].rename(columns=METRIC_COLUMNS)
shown["method"] = shown["method"].map(plots.method_label)
st.dataframe(shown, hide_index=True, width="stretch",
             column_config={label: st.column_config.NumberColumn(format="%.3f") for label in METRIC_COLUMNS.values()})
st.caption("Neuron coverage: share of coverable neurons the picks fire (MADS maximises it). Text spread: mean "
           "cosine distance from each pick to its nearest other pick (higher = more varied); text radius: worst "
           "distance of any sample to its nearest pick (lower = better covered). Coverage rewards samples that fire "
           "many neurons, which are often long ones — compare the token columns.")
if use_emb is None:
    st.caption("Text spread/radius left out at this size (N × k too large for a live table).")
st.plotly_chart(plots.metrics_bars(table, [(c, label) for c, label in METRIC_COLUMNS.items()
                                           if c in ("coverage", "mean_nn_distance", "category_coverage",
                                                    "category_entropy")]), width="stretch")
if any(c is not None for c in ds.categories):
    st.plotly_chart(plots.category_bars(ds.categories, picked), width="stretch")
else:
    st.caption("This dataset has no categories: category coverage is not available.")
st.page_link("pages/3_Inspect.py", label="Inspect the picks one by one →", icon=":material/search:")
