"""How MADS chooses: the greedy replayed on 12 real samples and 60 real neurons, one pick at a time.

Renders only: the instance, the walk and the figures come from ``mads_core.analysis.teach`` and
``mads_core.views.teach_plots``. The step lives in ``st.session_state["teach_step"]`` (all
keys of this page start with ``teach_``), so it survives a page switch. The instance
uses the bundled model and default fingerprint settings whatever the sidebar says,
so the lesson is the same for everyone; the continuation after saturation follows
the Compare page's MADS settings unless changed here.
"""

from __future__ import annotations

import json
import time

import numpy as np
import streamlit as st
from streamlit.errors import StreamlitAPIException

from mads_core.analysis import teach
from mads_core.config import SELECT_CONTINUATIONS, ModelSpec, SelectConfig
from mads_core.views import teach_plots as tp
from pages import _common as ui

ui.page_setup(__file__)

STEP = "teach_step"
PLAYING = "teach_playing"
DELAY = "teach_play_delay"                 # seconds between steps while playing (tests set 0)
CONTINUATION = "teach_continuation"
FOLLOWED = "teach_continuation_followed"   # the Compare setting the page last took over
CONT_WIDGET = "teach_w_continuation"
DEFAULT_DELAY = 1.6
COMPARE = "pages/2_Compare.py"
CONT_NAMES = {"rounds": "rounds", "mcover": "m-cover", "states": "states", "none": "none"}


# ---------------------------------------------------------------- data (cached)


def _instance() -> teach.Instance:
    """The teaching instance: from memory, else from the disk caches, else computed once with a status."""
    from mads_core.data.demo import load_demo

    with st.spinner("Loading the demo…"):
        demo = ui.memo("teach-demo", teach.DEMO_PRESET, lambda: load_demo(teach.DEMO_PRESET))
    key = f"{demo.content_hash()}|{teach.TEACH_VERSION}"
    with ui.guard("Could not read the teaching instance"):
        found = ui.memo("teach-instance", key, lambda: teach.cached_instance(demo))
    if found is not None:
        return found
    with st.status(f"Preparing the lesson: fingerprinting {teach.SAMPLE_COUNT} demo samples with SmolLM2 "
                   "(once; a few seconds)…", expanded=True) as status:
        from mads_core.model.models import load_model

        spec = ModelSpec()
        with ui.guard("Could not load the model"), st.spinner("Loading SmolLM2…"):
            loaded = ui.memo("model", json.dumps(spec.__dict__, sort_keys=True), lambda: load_model(spec))
        bar = st.progress(0.0, text="fingerprinting…")

        def progress(done: int, total: int) -> None:
            bar.progress(min(done / max(total, 1), 1.0), text=f"{done}/{total} samples")

        with ui.guard("Preparing the lesson failed"):
            inst = teach.load_instance(loaded=loaded, progress=progress, demo=demo)
        status.update(label="Lesson ready", state="complete", expanded=False)
    return ui.memo("teach-instance", key, lambda: inst) or inst


def _continuation() -> tuple[str, int]:
    """(continuation, m): the Compare page's choice, unless changed here since it was last taken over."""
    compare = st.session_state.get(ui.SELECT_CONFIG) or SelectConfig()
    followed = (compare.continuation, int(compare.m))
    if st.session_state.get(FOLLOWED) != followed or st.session_state.get(CONTINUATION) not in SELECT_CONTINUATIONS:
        st.session_state[FOLLOWED] = followed
        st.session_state[CONTINUATION] = compare.continuation
    return st.session_state[CONTINUATION], int(compare.m)


# ---------------------------------------------------------------- controls


def _go(delta: int | None, n: int) -> None:
    """Step forward/back by ``delta`` (None = back to the start); stops playing."""
    current = teach.clamp_step(st.session_state.get(STEP, 0), n)
    st.session_state[STEP] = 0 if delta is None else teach.clamp_step(current + delta, n)
    st.session_state[PLAYING] = False


def _toggle_play(n: int) -> None:
    """Play (from the start when at the end) or pause; the page then advances one step per rerun."""
    playing = not st.session_state.get(PLAYING, False)
    if playing and teach.clamp_step(st.session_state.get(STEP, 0), n) >= n:
        st.session_state[STEP] = 0
    st.session_state[PLAYING] = playing


def _set_continuation() -> None:
    """Keep the continuation picked here (a deselected control keeps the previous one)."""
    value = st.session_state.get(CONT_WIDGET)
    if value in SELECT_CONTINUATIONS:
        st.session_state[CONTINUATION] = value


def _link(term: str, where: str) -> None:
    """A link naming the matching control on Compare (a plain note when the page runs outside the app)."""
    try:
        st.page_link(COMPARE, label=f"{term} → Compare › {where}", icon=":material/compare_arrows:")
    except StreamlitAPIException:  # page run on its own (no navigation): name the control instead
        st.caption(f"{term}: Compare page › {where}")


def _note(term: str, where: str) -> None:
    """Name a control that lives outside Compare (e.g. the sidebar)."""
    st.caption(f":material/tune: {term}: {where}")


# ---------------------------------------------------------------- page

st.title("How MADS chooses")
st.markdown(
    f"MADS keeps the samples that together make the model **fire the most different neurons** — here on "
    f"{teach.SAMPLE_COUNT} demo samples and {teach.NEURON_COUNT} neurons of the bundled SmolLM2, one pick per "
    "**Step**.")

inst = _instance()
n, d = inst.n, inst.d
continuation, m = _continuation()
with ui.guard("The walk failed"):
    walk = ui.memo("teach-walk", f"{inst.key}|{continuation}|{m}",
                   lambda: teach.mads_walk(inst, teach.walk_config(continuation, m)))
    kwalk = ui.memo("teach-kcenter", inst.key, lambda: teach.kcenter_walk(inst))
if walk is None or kwalk is None:
    st.stop()

step = teach.clamp_step(st.session_state.get(STEP, 0), n)
st.session_state[STEP] = step
if st.session_state.get(PLAYING) and step >= n:
    st.session_state[PLAYING] = False
playing = bool(st.session_state.get(PLAYING, False))

with st.container(horizontal=True, vertical_alignment="center"):
    st.button("Reset", key="teach_reset", on_click=_go, args=(None, n), icon=":material/first_page:",
              disabled=step == 0, help="Back to the start (no picks)")
    st.button("Back", key="teach_back", on_click=_go, args=(-1, n), icon=":material/chevron_left:",
              disabled=step == 0, help="Undo the last pick")
    st.button("Step", key="teach_next", on_click=_go, args=(1, n), icon=":material/chevron_right:", type="primary",
              disabled=step >= n, help="Make the next pick")
    st.button("Pause" if playing else "Play", key="teach_play", on_click=_toggle_play, args=(n,),
              icon=":material/pause:" if playing else ":material/play_arrow:",
              help="Step automatically to the end")
    st.markdown(f"#### Step {step} of {n}")

current = walk.steps[step - 1] if step else None
kcur = kwalk.steps[step - 1] if step else None
done = {int(r): t for t, r in enumerate(walk.ranking[:step].tolist(), start=1)}
kdone = {int(r): t for t, r in enumerate(kwalk.ranking[:step].tolist(), start=1)}
states = continuation == "states"
unit = {"states": "new (neuron, level) pairs", "mcover": "still-counting neurons"}.get(continuation, "new neurons")


def _who(i: int) -> str:
    """``#4 conversations``: a sample as the narration names it."""
    return f"#{i} {inst.categories[i].split(':')[-1]}"


def _labels(marks: dict[int, str]) -> list[str]:
    """Row labels of the grids: pick marks, row, category, start of the prompt."""
    return [tp.row_label(i, inst.categories[i], inst.short_text(i, 24), marks.get(i, "")) for i in range(n)]


# ---------------------------------------------------------------- what just happened
if current is None:
    story = (f"Nothing is covered yet, so each sample's gain is simply how many of the {d} neurons it "
             f"fires{' (counting each level it reaches)' if states else ''}. Press **Step**.")
else:
    candidates = int((current.gains >= 0).sum())
    if current.filler:
        story = (f"**Pick {current.t}: {_who(current.pick)}** — every candidate gains 0, so the tie rule alone "
                 "decides: the lowest row number left. An arbitrary choice (plain greedy's zero-gain tail).")
    else:
        story = f"**Pick {current.t}: {_who(current.pick)}** adds **{current.gain}** {unit}"
        if len(current.tied) > 1:
            others = ", ".join(f"#{i}" for i in current.tied[1:])
            story += (f" — a **tie** with {others}; the tie rule takes the **lowest row number**, "
                      f"#{current.pick}.")
        else:
            story += f", the most of {candidates} candidate{'s' if candidates != 1 else ''}."
    if current.reset:
        story = f"All gains were 0, so coverage was **reset**: round {current.round + 1} starts. " + story
    story += f" Covered: **{current.union} of {d}** neurons ({teach.percent(current.union, d)})"
    if current.objective != current.union or current.round:
        story += f"; counted this round: {current.objective} of {walk.capacity}"
    story += "."
st.markdown(f"##### {story}")

# ---------------------------------------------------------------- grid + gains (MADS)
hover = [f"<b>#{i} [{inst.categories[i]}]</b><br>{tp.hover_text(inst.texts[i])}" for i in range(n)]
col_labels = [inst.neuron_label(j) for j in range(d)]
level_names = tuple(f"activation > {t:g}" for t in inst.plane_thresholds)
marks = {i: tp.rank_mark(t) for i, t in done.items()}
gains = current.gains if current else walk.first_gains
earlier = {i: t for i, t in done.items() if current is None or i != current.pick}
fig = tp.walk_figure(
    inst.levels, _labels(marks), hover, col_labels,
    col_cover=current.col_cover if current else np.zeros(d),
    values=np.where(gains >= 0, gains, np.nan).astype(float),
    new_cols=current.new_cols if current else None, current=current.pick if current else None,
    tied=current.tied if current else (), done=earlier, color=tp.MADS_COLOR,
    bar_title=f"Gain for pick {step}" if current else "Gain before pick 1",
    value_name=f"gain ({unit})", level_names=level_names, show_levels=states)
st.plotly_chart(fig, key="teach_walk", width="stretch", config={"displayModeBar": False})
grid_text, bar_text = st.columns([0.6, 0.4])
with grid_text:
    st.markdown(
        f"**What you see.** Each row is one real sample; each column is one **neuron** — a unit inside one of the "
        f"model's MLP layers ({d} of its {inst.model_neurons:,}). A dark cell means the neuron **fires** on that "
        f"sample: its activation rises above τ = {inst.plane_thresholds[0]:g} on at least one of the sample's own "
        "words. A row of cells is the sample's **fingerprint**. A column is **covered** once a picked sample fires "
        "it: it turns blue (strip on top: how far). Red cells are what the latest pick added (its gain); "
        "① ② … number the picks."
        + (" Under *finer states* darker cells mean stronger activation, and each level counts separately."
           if states else "")
        + (f" Under *m-cover* a neuron keeps counting until {m} picks fire it." if continuation == "mcover" else ""))
    _note("Threshold τ, layers", "sidebar › Fingerprint settings (this page always uses the defaults)")
    _link("Neuron coverage", "Coverage vs budget")
with bar_text:
    st.markdown(
        "**How the pick is made.** A candidate's **gain** is how many still-uncovered neurons it fires: what it "
        "would add. MADS is **greedy**: it takes the longest bar, then recomputes every gain. On a tie (orange) "
        "the **lowest row number** wins, so every run makes the same picks. Gains only shrink as coverage grows; "
        f"that is why greedy reaches at least {teach.greedy_bound():.0%} (1 − 1/e) of the best possible coverage.")
    _link("Gain per pick", "Coverage vs budget")
    _link("Budget", "Budget")

# ---------------------------------------------------------------- saturation
sat = walk.saturation
with st.container(border=True):
    text_col, control_col = st.columns([0.6, 0.4])
    with text_col:
        if sat is None or step < sat:
            when = "" if sat is None else f" (here after {sat} picks)"
            st.markdown(
                f"**Saturation.** Soon every one of the {d} neurons is fired by some pick{when}: coverage is "
                "**saturated** and plain greedy has nothing left to choose by. Step on to see what MADS does then.")
        else:
            untaken = [i for i in range(n) if i not in done]
            if untaken:
                plain = teach.plain_gains(inst.fired, list(done))
                what_plain = (f"Under plain coverage all {int((plain == 0).sum())} samples left would now gain 0 — "
                              f"a tie among all of them — so the tie rule alone would decide: next would come "
                              f"#{untaken[0]}, only because it comes first in the file. Such picks say nothing "
                              "about the samples.")
            else:
                what_plain = "Every sample is picked: the ranking is complete."
            explain = {
                "rounds": "**MADS here — rounds (the default):** it forgets what was covered and starts a new round "
                          "over the samples still left, so the next pick is again the one that adds the most — "
                          f"among the rest (now round {current.round + 1 if current else 1}).",
                "mcover": f"**MADS here — m-cover (m = {m}):** a neuron keeps counting until {m} picks have fired "
                          "it, so samples still gain for neurons fewer picks fire so far. When that saturates too, "
                          "counts reset as in rounds.",
                "states": "**MADS here — finer states:** each neuron counts once per activation level "
                          f"({', '.join(f'> {t:g}' for t in inst.plane_thresholds)}), so a sample that drives a "
                          "covered neuron harder still gains. When all levels are covered, counts reset as in rounds.",
                "none": "**MADS here — none (plain greedy):** exactly that: the rest of the ranking is zero-gain "
                        "filler in row order (the Compare page marks where it starts).",
            }
            st.markdown(f"**Coverage saturated after {sat} picks:** all {d} neurons are fired by some pick. "
                        + what_plain + "\n\n" + explain[continuation])
    with control_col:
        st.session_state[CONT_WIDGET] = continuation
        st.segmented_control("After saturation", SELECT_CONTINUATIONS, key=CONT_WIDGET,
                             on_change=_set_continuation, format_func=lambda c: CONT_NAMES.get(c, c),
                             help="What MADS does once every neuron is covered; starts as the Compare page's "
                             "MADS setting.")
        _link("After saturation", "MADS settings")
        if continuation == "mcover":
            _link("m (m-cover)", "MADS settings")

# ---------------------------------------------------------------- k-center side by side
st.header("Side by side: k-center on text embeddings", divider="gray")
kmarks = {i: ("K" + tp.rank_mark(t)) for i, t in kdone.items()}
for i, mark in marks.items():
    kmarks[i] = (kmarks.get(i, "") + " M" + mark).strip()
first = kcur is None or kcur.t == 1
scores = kcur.scores if kcur else teach.kcenter_scores(inst.embeddings, [])
fig = tp.walk_figure(
    inst.levels, _labels(kmarks), hover, col_labels, col_cover=kcur.col_cover if kcur else np.zeros(d),
    values=scores, new_cols=kcur.new_cols if kcur else None, current=kcur.pick if kcur else None,
    done={i: t for i, t in kdone.items() if kcur is None or i != kcur.pick}, color=tp.KCENTER_COLOR,
    bar_title=f"Distance for pick {step}" if kcur and kcur.t > 1 else "Distance to the average",
    value_name="distance to the average text" if first else "distance to the nearest pick", number_format=".2f",
    level_names=level_names)
st.plotly_chart(fig, key="teach_kwalk", width="stretch", config={"displayModeBar": False})
m_union = current.union if current else 0
k_union = kcur.union if kcur else 0
ktext, kbar_text = st.columns([0.6, 0.4])
with ktext:
    st.markdown(
        "**A text-only baseline.** **k-center** never runs SmolLM2. It turns each text into a sentence "
        "**embedding** (384 numbers from the small MiniLM model; texts that read alike get nearby vectors) and "
        "spreads its picks over them. Its picks *look* different; the grid shows whether the *model* treats them "
        "differently. "
        + (f"After {step} picks, k-center's picks fire **{k_union} of {d}** neurons, MADS's **{m_union}**."
           if step else ""))
    _link("k-center (embeddings)", "Methods")
with kbar_text:
    st.markdown(
        "**How k-center picks.** First the most typical text: the one closest to the average (shortest bar). "
        "Then, each time, the text **farthest** (cosine distance: 0 = same direction, 1 = unrelated) from "
        "everything picked so far (longest bar).")

race_col, race_text = st.columns([0.55, 0.45])
with race_col:
    curves = {"MADS": np.array([s.union for s in walk.steps]),
              "k-center (text)": np.array([s.union for s in kwalk.steps])}
    fig = tp.coverage_race(curves, {"MADS": tp.MADS_COLOR, "k-center (text)": tp.KCENTER_COLOR}, total=d,
                           step=step, saturation=sat if sat is not None and step >= sat else None)
    st.plotly_chart(fig, key="teach_race", width="stretch", config={"displayModeBar": False})
with race_text:
    k_full = next((s.t for s in kwalk.steps if s.union >= d), None)
    st.markdown(
        f"**Looks different vs. is treated differently.** Each line counts the {d} neurons fired by a method's "
        "first picks (faint: the picks still to come). MADS climbs fastest because covering neurons is exactly "
        "what it maximises; k-center spreads the *texts* instead. "
        + (f"MADS covers all {d} after {sat} picks, k-center after {k_full}. " if sat and k_full else "")
        + "The Compare page draws the same curves for the whole dataset.")
    _link("Coverage curves", "Coverage vs budget")

# ---------------------------------------------------------------- the instance
with st.expander("The instance: which samples and neurons, and why"):
    layer_count = int(np.unique(inst.neuron_layers).size)
    st.markdown(
        f"**Samples.** From the bundled default demo: for every category, the sample whose prompt + answer is "
        f"closest to {teach.TARGET_CHARS} characters (prompts of at least {teach.MIN_PROMPT_WORDS} words); "
        f"categories in order of that closeness, at most {teach.MAX_PER_SOURCE} from one source (ifbench, "
        f"chatterbot, evals); {n} in all, in demo order. Short texts of similar length, because longer texts fire "
        "more neurons whatever they say.\n\n"
        f"**Neurons.** Of the model's {inst.model_neurons:,}, those fired by 2 to {n - 2} of the {n} samples (one "
        "firing on all, or on all but one, separates little), one per distinct firing pattern, in each layer the "
        "ones that split the samples most evenly; taken layer by layer (every layer's best, then every layer's "
        f"second best) until {d}: from {layer_count} layers.\n\n"
        "**Settings.** Bundled SmolLM2-135M-Instruct with the default fingerprint settings (threshold τ = "
        f"{inst.plane_thresholds[0]:g}, chat template, max over the sample's own tokens) whatever the sidebar says, "
        "so the lesson is the same for everyone. Every neuron counts once (uniform weights).")
    st.dataframe(
        {"row": list(range(n)), "demo row": inst.demo_rows.tolist(), "category": list(inst.categories),
         "source": list(inst.sources), "tokens": inst.token_counts.tolist(),
         f"fires (of {inst.model_neurons:,})": inst.fired_total.tolist(),
         f"fires (of these {d})": inst.fired.sum(axis=1).tolist(),
         "text": [" ".join(t.split()) for t in inst.texts]},
        hide_index=True, width="stretch")

# ---------------------------------------------------------------- play
if playing and step < n:
    time.sleep(float(st.session_state.get(DELAY, DEFAULT_DELAY)))
    st.session_state[STEP] = step + 1
    st.rerun()
