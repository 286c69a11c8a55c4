"""Inspect: the picks in order, why each was chosen, linked maps, and two methods side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from mads_core import session
from mads_core.analysis import metrics
from mads_core.select.greedy import Selection
from mads_core.views import plots
from pages import _common as ui
from pages import _state as state

ui.page_setup(__file__)

TABLE_KEY = "inspect_table"
SEARCH_LIMIT = 50

st.title("Inspect the picks")
s = ui.settings()
ds = ui.dataset(s)
n = len(ds)
fp = ui.require_fingerprints(ds, s)
methods, _, _ = ui.method_state()
method = state.bound(st.selectbox, "Method", state.INSPECT_METHOD, options=methods, format_func=plots.method_label,
                     help="The methods chosen on Compare.")
emb = ui.embeddings(ds)
token_counts = ui.lengths(fp)
hover = ui.hover_labels(ds)
fp_proj = ui.fingerprint_projection(fp)
text_proj = ui.embedding_projection(ds, emb)


def _open_from_table() -> None:
    event = st.session_state.get(TABLE_KEY)
    rows = []
    try:
        rows = list(event["selection"]["rows"])
    except (KeyError, TypeError):
        rows = list(getattr(getattr(event, "selection", None), "rows", []) or [])
    if rows:
        state.put(ui.INSPECT_ROW, int(st.session_state["inspect_table_rows"][rows[0]]))


def _nearest_table(rows: np.ndarray, sims: np.ndarray, ranks: dict[int, int], label: str) -> pd.DataFrame:
    return pd.DataFrame({"rank": [ranks.get(int(r), 0) or None for r in rows], "row": rows, label: sims,
                         "category": [ds.categories[int(r)] or "" for r in rows],
                         "text": [session.sample_label(ds, int(r), 140) for r in rows]})


def _sample(sel: Selection, chosen: np.ndarray, k: int, row: int) -> None:
    st.subheader(f"Sample row {row:,}")
    meta = (f"id `{ds.ids[row]}` · category **{ds.categories[row] or '—'}** · source `{ds.sources[row]}` · "
            f"{int(token_counts[row]):,} own tokens" + (" · truncated" if bool(fp.truncated[row]) else ""))
    st.markdown(meta)
    with st.container(height=200):
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
            st.dataframe(_nearest_table(rows, sims, ranks, "fingerprint Jaccard"), hide_index=True, width="stretch")
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
    st.dataframe(_nearest_table(rows, sims, ranks, "fingerprint Jaccard"), hide_index=True, width="stretch")


def _search() -> None:
    """Find samples by text, or the nearest neighbours of the opened sample (fingerprints or text)."""
    with st.expander("Find samples: by text, or nearest neighbours of the opened sample",
                     icon=":material/manage_search:"):
        query = state.bound(st.text_input, "Text contains (case-insensitive)", state.SEARCH_TEXT,
                            placeholder="e.g. photosynthesis")
        if query.strip():
            hits = session.search_text(ds, query, limit=SEARCH_LIMIT)
            more = f" (the first {SEARCH_LIMIT})" if len(hits) >= SEARCH_LIMIT else ""
            st.caption(f"{len(hits):,} match(es){more} — select a row to open it.")
            frame = pd.DataFrame({"row": hits, "category": [ds.categories[i] or "" for i in hits],
                                  "text": [session.sample_label(ds, int(i), 160) for i in hits]})
            st.session_state["inspect_search_rows"] = frame["row"].to_numpy()
            st.dataframe(frame, key="inspect_search", on_select=_open_from("inspect_search", "inspect_search_rows"),
                         selection_mode="single-row", hide_index=True, width="stretch", height=200)
        row = state.get(ui.INSPECT_ROW)
        if row is not None and 0 <= int(row) < n:
            space = st.radio("Nearest neighbours of the opened sample by", ["fingerprint (Jaccard)",
                             "text embedding (cosine)"], horizontal=True, key="inspect_nn_space")
            if space.startswith("fingerprint"):  # a whole pass over the data: once per opened sample
                rows, sims = ui.memo("nearest-fp", f"{fp.key}|{int(row)}",
                                     lambda: session.nearest(fp.bits, int(row), np.arange(n), top=10), recent=True)
                label = "fingerprint Jaccard"
            else:
                rows, sims = ui.memo("nearest-text", f"{ds.content_hash()}|{int(row)}",
                                     lambda: session.nearest_embedding(emb, int(row), top=10), recent=True)
                label = "cosine similarity"
            frame = _nearest_table(rows, sims, {}, label).drop(columns=["rank"])
            st.session_state["inspect_nn_rows"] = frame["row"].to_numpy()
            st.dataframe(frame, key="inspect_nn", on_select=_open_from("inspect_nn", "inspect_nn_rows"),
                         selection_mode="single-row", hide_index=True, width="stretch")


def _open_from(key: str, rows_key: str):
    def callback() -> None:
        event = st.session_state.get(key)
        try:
            picked = list(event["selection"]["rows"])
        except (KeyError, TypeError):
            picked = []
        if picked:
            state.put(ui.INSPECT_ROW, int(st.session_state[rows_key][picked[0]]))
    return callback


# ---------------------------------------------------------------- everything that depends on the budget
# A fragment: moving the budget, opening a sample or selecting on a map reruns only this part.


@st.fragment
def budget_view() -> None:
    k = ui.budget_control(n, "inspect")
    sels = ui.selections(methods, ds, fp, k, emb)
    if method not in sels:
        st.stop()
    sel = sels[method]
    chosen = np.asarray(sel.ranking[:k], dtype=np.int64)

    # picks table and the opened sample side by side: opening a row shows it at once, in view
    left, right = st.columns([1, 1], gap="large")
    with left:
        st.subheader(f"{plots.method_label(method)}: {k:,} picks in order")
        # the whole ranking's table is built once per ranking; a budget move slices it
        full = ui.memo("picks-frame", f"{ds.content_hash()}|{fp.key}|{method}|{sel.settings_hash}|{ui._digest(sel)}",
                       lambda: session.picks_frame(ds, sel, len(sel.ranking), token_counts),
                       recent=method in session.PER_BUDGET_METHODS)
        frame = full.iloc[:k]
        st.session_state["inspect_table_rows"] = frame["row"].to_numpy()
        gain_label = "distance at pick" if method.startswith("kcenter") else "cluster size" \
            if method == "kmeans-embed" else "gain at pick"
        st.dataframe(
            frame, key=TABLE_KEY, on_select=_open_from_table, selection_mode="single-row", hide_index=True,
            width="stretch", height=520,
            column_config={"gain": st.column_config.NumberColumn(gain_label, format="%.4g"),
                           "rank": st.column_config.NumberColumn("pick", help="1 = the first pick"),
                           "round": st.column_config.NumberColumn("round", help="1 = the first greedy pass"),
                           "text": st.column_config.TextColumn(width="large"),
                           "tokens": st.column_config.NumberColumn("own tokens")},
        )
        st.caption("Select a row — or click a point in either map below — to open the sample on the right.")
    with right:
        row = state.get(ui.INSPECT_ROW)
        if row is not None and 0 <= int(row) < n:
            _sample(sel, chosen, k, int(row))
        else:
            st.info("No sample open yet: select a row in the table, click a point in a map, or search below.",
                    icon=":material/touch_app:")
    _search()

    # linked maps
    st.header("Maps", divider="gray")
    linked = ui.linked_rows()
    focus = state.get(ui.INSPECT_ROW)
    left, right = st.columns(2)
    for col, proj, title, key in ((left, fp_proj, "Activation fingerprints", "inspect_map_fp"),
                                  (right, text_proj, "Text embeddings", "inspect_map_text")):
        if not getattr(proj, "ready", True):  # a large map still computed in the background: no NaN scatter
            col.info(f"**{title}** — {proj.method}", icon=":material/hourglass_top:")
            continue
        fig = plots.projection_scatter(proj.coords, {method: chosen}, title=title, subtitle=proj.method,
                                       linked=linked, focus=focus, hover=hover, height=400)
        with col:
            ui.chart(fig, key=key, on_select=ui.on_map_select(key), selection_mode=("points", "box", "lasso"),
                     data=lambda proj=proj: ui.map_frame(ds, proj.coords, {method: chosen}), name=key)
    if len(linked):
        in_chosen = np.isin(linked, chosen)
        c1, c2, c3 = st.columns([4, 1, 1])
        c1.info(f"Linked selection: {len(linked):,} samples, {int(in_chosen.sum()):,} of them picked by "
                f"{plots.method_label(method)} — ringed in both maps.", icon=":material/link:")
        c2.download_button("Download selection", lambda: ui.selection_bytes(ds, linked),
                           file_name="lasso-selection.jsonl",
                           mime="application/jsonl", icon=":material/download:", on_click="ignore")
        c3.button("Clear linked selection", on_click=lambda: st.session_state.update({ui.LINKED: []}))
        with st.expander("Linked samples"):
            st.dataframe(pd.DataFrame({"row": linked, "picked": in_chosen,
                                       "category": [ds.categories[i] or "" for i in linked],
                                       "text": [session.sample_label(ds, int(i), 160) for i in linked]}),
                         hide_index=True, width="stretch")

    # two methods side by side
    st.header("Two methods side by side", divider="gray")
    if len(sels) < 2:
        st.info("Choose at least two methods on Compare to compare their picks.", icon=":material/info:")
        return
    names = list(sels)
    if state.get(state.CMP_A) not in names:
        state.put(state.CMP_A, names[0])
    if state.get(state.CMP_B) not in names:
        state.put(state.CMP_B, names[1])
    ca, cb = st.columns(2)
    a = state.bound(ca.selectbox, "Method A", state.CMP_A, options=names, format_func=plots.method_label)
    b = state.bound(cb.selectbox, "Method B", state.CMP_B, options=names, format_func=plots.method_label)
    ov = metrics.overlap(sels[a].ranking[:k], sels[b].ranking[:k])
    st.plotly_chart(plots.overlap_bars(ov["n_only_a"], ov["n_both"], ov["n_only_b"], plots.method_label(a),
                                       plots.method_label(b), plots.method_color(a, names.index(a)),
                                       plots.method_color(b, names.index(b))), width="stretch")
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


budget_view()
