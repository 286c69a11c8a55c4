"""Compare: MADS against the baselines at one budget — maps, coverage curves, metrics, categories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from mads_core import session
from mads_core.analysis import metrics
from mads_core.config import SELECT_CONTINUATIONS, SELECT_WEIGHTINGS
from mads_core.views import plots
from pages import _common as ui
from pages import _state as state

ui.page_setup(__file__)

METRIC_COLUMNS = {
    "coverage": "neuron coverage",
    "mean_nn_distance": "text spread (mean NN cos dist)",
    "radius": "text radius (max dist to a pick)",
    "category_coverage": "category coverage",
    "category_entropy": "category entropy (norm.)",
    "len_mean": "tokens (mean)",
    "len_median": "tokens (median)",
}

COMPARE_BUDGETS = (0.05, 0.10, 0.15)  # the CLI ``compare`` default budgets

st.title("Compare selections")
s = ui.settings()
ds = ui.dataset(s)
n = len(ds)


# ---------------------------------------------------------------- controls (full reruns: they change rankings)


def _mads_settings() -> None:
    c1, c2 = st.columns(2)
    cont = state.bound(c1.selectbox, "After saturation", state.MADS_CONTINUATION, options=list(SELECT_CONTINUATIONS),
                       help="rounds: reset coverage and keep covering; mcover: a neuron counts until m picks fire "
                       "it; states: cover (neuron, activation level) pairs; none: plain greedy, then zero-gain "
                       "filler.")
    state.bound(c1.number_input, "m (m-cover)", state.MADS_M, min_value=1, step=1, disabled=cont != "mcover")
    state.bound(c2.selectbox, "Neuron weights", state.MADS_WEIGHTING, options=list(SELECT_WEIGHTINGS),
                help="idf: rarer neurons weigh more (log N / count).")
    state.bound(c2.number_input, "Minimum support (samples per neuron)", state.MADS_MIN_SUPPORT, min_value=1, step=1,
                help="Neurons fired by fewer samples never count: stops the tail chasing one-off outliers.")
    state.bound(st.slider, "Ignore neurons firing on more than this share of samples", state.MADS_MAX_SHARE,
                min_value=0.05, max_value=1.0, step=0.05)
    state.select_config()  # raises on an invalid combination (shown by the guard)


def _baseline_settings(method: str) -> None:
    if method in state.SEEDS:
        state.bound(st.number_input, "Seed", state.SEEDS[method], min_value=0, step=1)
    else:
        st.caption("No settings (fixed, recorded in each selection's settings).")


ui.follow_click_to_inspect()
state.bound(st.multiselect, "Methods", state.METHODS, options=list(session.METHODS), format_func=plots.method_label,
            help="MADS and every baseline; each is ranked once and every budget is a prefix of its ranking "
            "(k-means: clustered once per budget).")
methods, select_config, method_settings = ui.method_state()
cols = st.columns(min(len(methods), 3) or 1)
for pos, method in enumerate(methods):
    with cols[pos % len(cols)].expander(f"{plots.method_label(method)} settings"):
        st.caption(session.METHOD_HELP.get(method, ""))
        if method == "mads":
            with ui.guard("MADS settings"):
                _mads_settings()
        else:
            _baseline_settings(method)
methods, select_config, method_settings = ui.method_state()
st.session_state[ui.SELECT_CONFIG] = select_config

with st.expander("Map settings (UMAP)"):
    a, b, c = st.columns(3)
    state.bound(a.number_input, "Neighbours", state.MAP_NEIGHBORS, min_value=2, max_value=200, step=1)
    state.bound(b.number_input, "Minimum distance", state.MAP_MIN_DIST, min_value=0.0, max_value=1.0, step=0.05)
    state.bound(c.number_input, "SVD dims before UMAP (fingerprints; 0 = none)", state.MAP_SVD, min_value=0,
                max_value=200, step=10, help="Fingerprints have tens of thousands of bits: an SVD pre-reduction makes "
                "UMAP fast. 0 runs Jaccard UMAP on the raw bits (small N only).")

with st.expander("Settings in effect", icon=":material/tune:"):
    st.markdown(ui.settings_summary(s, ds, methods, select_config, method_settings))

# ---------------------------------------------------------------- compute what every budget shares (cached)

fp = ui.require_fingerprints(ds, s)
emb = ui.embeddings(ds)
hover = ui.hover_labels(ds)
fp_proj = ui.fingerprint_projection(fp)
text_proj = ui.embedding_projection(ds, emb)
color_options = ui.color_columns(ds)


# ---------------------------------------------------------------- everything that depends on the budget
# A fragment: moving the budget (or selecting on a map) reruns only this part of the page.


@st.fragment
def budget_view() -> None:
    ui.follow_click_to_inspect()
    k = ui.budget_control(n, "compare")
    sels = ui.selections(methods, ds, fp, k, emb)
    picked = {m: np.asarray(sel.ranking[:k]) for m, sel in sels.items()}
    linked = ui.linked_rows()

    # (a) (b) maps
    st.header("Where the picks fall", divider="gray")
    c1, c2 = st.columns([3, 1])
    shown = state.bound(c1.pills, "Highlight on the maps", state.HIGHLIGHT, options=list(picked),
                        selection_mode="multi", format_func=plots.method_label,
                        help="Picks of each highlighted method at the current budget; grey: picked by none of them.")
    color_by = state.bound(c2.selectbox, "Colour the rest by", state.COLOR_BY, options=["", *color_options],
                           format_func=lambda c: c or "nothing (grey)",
                           help="Colour the points no highlighted method picked by a metadata column.")
    highlight = {m: picked[m] for m in shown or []}
    colors = ui.color_values(ds, color_by) if color_by else None
    focus = state.get(ui.INSPECT_ROW)
    left, right = st.columns(2)
    for col, proj, title, key in ((left, fp_proj, "(a) Activation fingerprints", "compare_map_fp"),
                                  (right, text_proj, "(b) Text embeddings (MiniLM)", "compare_map_text")):
        if not getattr(proj, "ready", True):  # a large map still computed in the background: no NaN scatter
            col.info(f"**{title}** — {proj.method}", icon=":material/hourglass_top:")
            continue
        fig = plots.projection_scatter(proj.coords, highlight, title=title, subtitle=proj.method, linked=linked,
                                       focus=focus, hover=hover, color_by=colors, color_label=color_by)
        with col:
            ui.chart(fig, key=key, on_select=ui.on_map_select(key, open_inspect=True),
                     selection_mode=("points", "box", "lasso"),
                     data=lambda proj=proj: ui.map_frame(ds, proj.coords, picked), name=key)
    st.caption("Grey: not picked by any highlighted method. **Click a point** to open that sample on Inspect; "
               "pick the lasso or box tool in a map's toolbar to ring the same samples in the other map (linked "
               "views).")
    if len(linked):
        lc1, lc2, lc3 = st.columns([4, 1, 1])
        in_sel = {plots.method_label(m): int(np.isin(linked, idx).sum()) for m, idx in picked.items()}
        lc1.info(f"Linked selection: {len(linked):,} samples — picked among them: "
                 + ", ".join(f"{name} {count}" for name, count in in_sel.items()), icon=":material/link:")
        lc2.download_button("Download selection", lambda: ui.selection_bytes(ds, linked),
                            file_name="lasso-selection.jsonl",
                            mime="application/jsonl", icon=":material/download:", on_click="ignore",
                            help="The ringed samples' original records (JSONL, in row order).")
        lc3.button("Clear linked selection", on_click=lambda: st.session_state.update({ui.LINKED: []}))

    # (c) coverage
    st.header("Coverage vs budget", divider="gray")
    # per ranking, once: coverage of every prefix and text spread of every prefix; a move only reads them
    counts, coverable = ui.coverage_counts(fp, sels)
    curve_key = "|".join(f"{m}:{ui._digest(sel)}" for m, sel in sels.items())
    frame, coverable = ui.memo("coverage-frame", f"{fp.key}|{curve_key}",
                               lambda: session.coverage_frame(sels, fp.bits, fp.n_neurons, counts=counts,
                                                              coverable=coverable))
    saturation = []
    for m in sels:
        part = frame[frame["method"] == m]
        point = plots.saturation_point(part["k"].to_numpy(), part["covered"].to_numpy())
        if point is not None and part["covered"].max() >= coverable:
            saturation.append((m, point[0], point[1] / coverable))
    left, right = st.columns(2)
    with left:
        ui.chart(plots.coverage_curves(frame, n=n, budget=k, saturation=saturation), data=frame, name="coverage")
    note = ("k-means is clustered at each budget (its picks depend on k, so a new budget clusters again, once), "
            "so its curve stops at the current budget. " if "kmeans-embed" in sels else "")
    sat_text = "; ".join(f"{plots.method_label(m)} at k = {ks:,}" for m, ks, _ in saturation)
    left.caption(f"Plain neuron coverage: share of the {coverable:,} neurons that fire on at least one sample. "
                 + note + (f"Plain coverage saturates (every later pick adds nothing to it): {sat_text}."
                           if saturation else "No method reaches full plain coverage within its ranking."))
    if "mads" in sels:
        mads = sels["mads"]
        unit = "nats (idf)" if mads.settings.get("weighting") == "idf" else "neurons"
        with right:
            ui.chart(plots.gain_per_pick(mads.gains, mads.rounds, budget=k, n=n,
                                         filler_from=mads.filler_from if mads.filler_from < len(mads) else None,
                                         unit=unit),
                     data=pd.DataFrame({"pick": np.arange(1, len(mads) + 1), "row": mads.ranking,
                                        "gain": mads.gains, "round": np.asarray(mads.rounds) + 1}), name="gains")
        right.caption("Late picks of plain coverage each add a few rare neurons (the tail chases outliers). Raise "
                      "*minimum support*, use idf weights, or switch the continuation in MADS settings to tame it. "
                      "Rounds count from 1 (round 1 = the first greedy pass), as in the picks table.")
    else:
        right.info("Add MADS to the methods to see its gain per pick.", icon=":material/info:")

    # (d) metrics
    st.header(f"Metrics at k = {k:,}", divider="gray")
    curves = ui.diversity(ds, emb, sels)  # here, not earlier: the maps and curves above draw while it first runs
    table_key = f"{fp.key}|{curve_key}|{k}|{','.join(sorted(curves))}"  # a table without pending spreads is redone

    def _metrics() -> pd.DataFrame:  # lookups in the per-ranking curves: no distance, no fingerprint row read
        return metrics.metrics_table(sels, [k], n_neurons=fp.n_neurons, coverage=counts, coverable=coverable,
                                     diversity=curves, categories=ds.categories, lengths=ui.lengths(fp))

    with ui.guard("Metrics failed"):
        table = ui.memo("metrics", table_key, _metrics, recent=True)
    ui.diversity_progress(sels, curves)
    shown_table = table[["method", *[c for c in METRIC_COLUMNS if c in table.columns]]].rename(
        columns=METRIC_COLUMNS)
    shown_table["method"] = shown_table["method"].map(plots.method_label)
    st.dataframe(shown_table, hide_index=True, width="stretch",
                 column_config={"method": st.column_config.TextColumn(width="medium"),
                                **{label: st.column_config.NumberColumn(label, format="%.3f", width="small")
                                   for label in METRIC_COLUMNS.values()}})
    st.caption("Neuron coverage: share of coverable neurons the picks fire (MADS maximises it). Text spread: mean "
               "cosine distance from each pick to its nearest other pick (higher = more varied); text radius: "
               "worst distance of any sample to its nearest pick (lower = better covered). Coverage rewards samples "
               "that fire many neurons, which are often long ones — compare the token columns.")
    d1, d2 = st.columns(2)
    d1.download_button("Download this table (CSV)", table.to_csv(index=False).encode(), file_name=f"metrics-k{k}.csv",
                       mime="text/csv", icon=":material/table:", on_click="ignore")
    d2.download_button(f"Download the {'/'.join(f'{100 * b:g}' for b in COMPARE_BUDGETS)}% comparison (CSV)",
                       lambda: ui.compare_csv(ds, fp, emb, methods, COMPARE_BUDGETS), file_name="compare.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore",
                       help="The same table as `python -m mads_core compare` writes with `--out` (every method at "
                       "5, 10 and 15%; k-means clustered at each budget).")
    bars = plots.metrics_bars(table, [(c, label) for c, label in METRIC_COLUMNS.items()
                                      if c in ("coverage", "mean_nn_distance", "category_coverage",
                                               "category_entropy")])
    ui.chart(bars, data=table, name="metrics")
    if any(c is not None for c in ds.categories):
        ui.chart(plots.category_bars(ds.categories, picked),
                 data=lambda: ui.category_frame(ds.categories, picked), name="categories")
    else:
        st.caption("This dataset has no categories: category coverage is not available.")


budget_view()
st.page_link("pages/3_Inspect.py", label="Inspect the picks one by one →", icon=":material/search:")
