"""Inspect: the picks in order, why each was chosen, linked maps, and two methods side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from mads_core import session
from mads_core.analysis import metrics
from mads_core.data.loader import Dataset
from mads_core.model.fingerprint import Fingerprints
from mads_core.select.greedy import Selection
from mads_core.views import plots
from pages import _common as ui

ui.page_setup(__file__)

TABLE_KEY = "inspect_table"

st.title("Inspect the picks")
s = ui.settings()
ds = ui.dataset(s)
n = len(ds)
fp = ui.require_fingerprints(ds, s)

methods, _, _ = ui.method_state()
k = ui.budget_control(n, "inspect")
if st.session_state.get("inspect_method") not in methods:
    st.session_state["inspect_method"] = methods[0]
st.session_state.setdefault("w_inspect_method", st.session_state["inspect_method"])
if st.session_state["w_inspect_method"] not in methods:
    st.session_state["w_inspect_method"] = methods[0]
method = st.selectbox("Method", methods, key="w_inspect_method", format_func=plots.method_label,
                      help="The methods chosen on Compare.")
st.session_state["inspect_method"] = method
emb = ui.embeddings(ds)
sels = ui.selections(methods, ds, fp, k, emb)
if method not in sels:
    st.stop()
sel = sels[method]
chosen = np.asarray(sel.ranking[:k], dtype=np.int64)
token_counts = ui.lengths(fp)


# ---------------------------------------------------------------- picks table


def _open_from_table() -> None:
    event = st.session_state.get(TABLE_KEY)
    rows = []
    try:
        rows = list(event["selection"]["rows"])
    except (KeyError, TypeError):
        rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    if rows:
        st.session_state[ui.INSPECT_ROW] = int(st.session_state["inspect_table_rows"][rows[0]])


st.header(f"{plots.method_label(method)}: {k:,} picks in order", divider="gray")
frame = session.picks_frame(ds, sel, k, token_counts)
st.session_state["inspect_table_rows"] = frame["row"].to_numpy()
gain_label = "distance at pick" if method.startswith("kcenter") else "cluster size" if method == "kmeans-embed" \
    else "gain at pick"
st.dataframe(
    frame, key=TABLE_KEY, on_select=_open_from_table, selection_mode="single-row", hide_index=True,
    width="stretch", height=300,
    column_config={"gain": st.column_config.NumberColumn(gain_label, format="%.4g"),
                   "text": st.column_config.TextColumn(width="large"),
                   "tokens": st.column_config.NumberColumn("own tokens")},
)
st.caption("Select a row — or click a point in either map below — to open the sample.")

# ---------------------------------------------------------------- linked maps
linked = ui.linked_rows()
focus = st.session_state.get(ui.INSPECT_ROW)
hover = ui.hover_labels(ds)
left, right = st.columns(2)
for col, proj, title, key in ((left, ui.fingerprint_projection(fp), "Activation fingerprints", "inspect_map_fp"),
                              (right, ui.embedding_projection(ds, emb), "Text embeddings", "inspect_map_text")):
    fig = plots.projection_scatter(proj.coords, {method: chosen}, title=title, subtitle=proj.method,
                                   linked=linked, focus=focus, hover=hover, height=400)
    col.plotly_chart(fig, key=key, on_select=ui.on_map_select(key), selection_mode=("points", "box", "lasso"),
                     width="stretch")
if len(linked):
    in_chosen = np.isin(linked, chosen)
    c1, c2 = st.columns([4, 1])
    c1.info(f"Linked selection: {len(linked):,} samples, {int(in_chosen.sum()):,} of them picked by "
            f"{plots.method_label(method)} — ringed in both maps.", icon=":material/link:")
    c2.button("Clear linked selection", on_click=lambda: st.session_state.update({ui.LINKED: []}))
    with st.expander("Linked samples"):
        st.dataframe(pd.DataFrame({"row": linked, "picked": in_chosen,
                                   "category": [ds.categories[i] or "" for i in linked],
                                   "text": [session.sample_label(ds, int(i), 160) for i in linked]}),
                     hide_index=True, width="stretch")


# ---------------------------------------------------------------- one sample


def _nearest_table(rows: np.ndarray, sims: np.ndarray, ranks: dict[int, int]) -> pd.DataFrame:
    return pd.DataFrame({"rank": [ranks.get(int(r), 0) for r in rows], "row": rows,
                         "fingerprint Jaccard": sims, "category": [ds.categories[int(r)] or "" for r in rows],
                         "text": [session.sample_label(ds, int(r), 140) for r in rows]})


def _sample(ds: Dataset, fp: Fingerprints, sel: Selection, row: int) -> None:
    st.header(f"Sample row {row:,}", divider="gray")
    meta = (f"id `{ds.ids[row]}` · category **{ds.categories[row] or '—'}** · source `{ds.sources[row]}` · "
            f"{int(token_counts[row]):,} own tokens" + (" · truncated" if bool(fp.truncated[row]) else ""))
    st.markdown(meta)
    with st.container(height=240):
        st.text(ds.display_text(row))
    positions = np.flatnonzero(chosen == row)
    ranks = {int(r): i + 1 for i, r in enumerate(chosen)}
    if len(positions):
        rank = int(positions[0])
        gain = float(sel.gains[rank])
        rnd = int(sel.rounds[rank]) if len(sel.rounds) > rank else 0
        round_text = f", in round {rnd + 1}" if method == "mads" else ""
        st.success(f"**Chosen by {plots.method_label(method)}** as pick **{rank + 1:,}** of {k:,}{round_text}"
                   + (f", gain {gain:,.4g}" if np.isfinite(gain) else "") + ".", icon=":material/check_circle:")
        new = session.newly_covered(sel, fp.bits, fp.n_neurons, rank)
        counts = session.layer_counts(new, fp.n_neurons, fp.layer_offsets)
        title = "Neurons this pick newly covered" if method == "mads" else "Neurons this pick added to the union"
        st.plotly_chart(plots.newly_covered_bars(counts, fp.layers, title), width="stretch")
        before = chosen[:rank]
        if len(before):
            rows, sims = session.nearest(fp.bits, row, before, top=5)
            st.markdown("**Nearest already-chosen samples** (by fingerprint):")
            st.dataframe(_nearest_table(rows, sims, ranks), hide_index=True, width="stretch")
        else:
            st.caption("The first pick: nothing was chosen before it.")
        return
    added = session.would_add(fp.bits, fp.n_neurons, chosen, row)
    last_gain = float(sel.gains[k - 1]) if k - 1 < len(sel.gains) else float("nan")
    st.warning(f"**Not chosen by {plots.method_label(method)}** at k = {k:,}. It fires "
               f"{len(added):,} neurons that none of the {k:,} picks fires — what it would add to their plain "
               f"coverage" + (f" (the last pick's gain was {last_gain:,.4g})" if np.isfinite(last_gain) else "")
               + ".", icon=":material/block:")
    counts = session.layer_counts(added, fp.n_neurons, fp.layer_offsets)
    st.plotly_chart(plots.newly_covered_bars(counts, fp.layers, "Neurons it would add"), width="stretch")
    rows, sims = session.nearest(fp.bits, row, chosen, top=5)
    st.markdown("**Nearest chosen samples** (by fingerprint) — why it was not needed:")
    st.dataframe(_nearest_table(rows, sims, ranks), hide_index=True, width="stretch")


row = st.session_state.get(ui.INSPECT_ROW)
if row is not None and 0 <= int(row) < n:
    _sample(ds, fp, sel, int(row))
else:
    st.info("No sample open yet: select a row in the table or a point in a map.", icon=":material/touch_app:")

# ---------------------------------------------------------------- two methods
st.header("Two methods side by side", divider="gray")
if len(sels) < 2:
    st.info("Choose at least two methods on Compare to compare their picks.", icon=":material/info:")
    st.stop()
names = list(sels)
st.session_state.setdefault("w_cmp_a", names[0])
st.session_state.setdefault("w_cmp_b", names[1])
for key, fallback in (("w_cmp_a", names[0]), ("w_cmp_b", names[1])):
    if st.session_state[key] not in names:
        st.session_state[key] = fallback
ca, cb = st.columns(2)
a = ca.selectbox("Method A", names, key="w_cmp_a", format_func=plots.method_label)
b = cb.selectbox("Method B", names, key="w_cmp_b", format_func=plots.method_label)
ov = metrics.overlap(sels[a].ranking[:k], sels[b].ranking[:k])
st.plotly_chart(plots.overlap_bars(ov["n_only_a"], ov["n_both"], ov["n_only_b"], plots.method_label(a),
                                   plots.method_label(b)), width="stretch")
st.caption(f"Jaccard overlap of the two selections: {ov['jaccard']:.3f}.")
tabs = st.tabs([f"Only {plots.method_label(a)} ({ov['n_only_a']:,})", f"Both ({ov['n_both']:,})",
                f"Only {plots.method_label(b)} ({ov['n_only_b']:,})"])
for tab, rows in zip(tabs, (ov["only_a"], ov["both"], ov["only_b"]), strict=True):
    with tab:
        sample = np.asarray(rows[:10], dtype=np.int64)
        if len(sample) == 0:
            st.caption("None.")
            continue
        st.dataframe(pd.DataFrame({"row": sample, "category": [ds.categories[i] or "" for i in sample],
                                   "own tokens": token_counts[sample],
                                   "text": [session.sample_label(ds, int(i), 200) for i in sample]}),
                     hide_index=True, width="stretch")
        if len(rows) > 10:
            st.caption(f"First 10 of {len(rows):,} in pick order.")
