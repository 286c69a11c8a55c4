"""Teaching mode: the small real instance, the replayed walk, its figures and the page.

Every pick and gain the page shows is checked against a brute-force greedy written
here, on the bool fingerprints unpacked independently from the cached fingerprints of
the same rows — not against ``mads_core.analysis.teach``'s own replay.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mads_core.analysis import teach
from mads_core.config import FingerprintConfig, ModelSpec, SelectConfig
from mads_core.select.baselines import kcenter_greedy
from mads_core.select.bitops import unpack_bits
from mads_core.select.greedy import naive_greedy
from mads_core.views import teach_plots as tp

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "pages" / "5_How_MADS_chooses.py"
TIMEOUT = 180


# ---------------------------------------------------------------- reference greedy (independent of mads_core)


def brute_force(planes: np.ndarray, continuation: str = "rounds", m: int = 2) -> list[dict]:
    """Greedy max coverage from its definition: every gain recomputed element by element at every step.

    planes (P, N, D) bool. Returns, per pick: the gains before it (-1 = picked), the pick
    (highest gain, lowest row on ties), the tied rows and the round.
    """
    ground = planes if continuation == "states" else planes[:1]
    mm = m if continuation == "mcover" else 1
    n = ground.shape[1]
    taken = [False] * n
    count = np.zeros((ground.shape[0], ground.shape[2]), dtype=np.int64)
    rnd, out = 0, []

    def gains_now() -> np.ndarray:
        return np.array([-1 if taken[i] else int(np.sum(ground[:, i, :] & (count < mm))) for i in range(n)])

    for _ in range(n):
        g = gains_now()
        fires_any = any(ground[:, i, :].any() for i in range(n) if not taken[i])
        if g.max() <= 0 and continuation != "none" and fires_any:
            count[:] = 0
            rnd += 1
            g = gains_now()
        best = int(g.max())
        tied = [i for i in range(n) if g[i] == best]
        out.append({"gains": g, "pick": tied[0], "tied": tied, "round": rnd})
        if best > 0:
            count += ground[:, tied[0], :] & (count < mm)
        taken[tied[0]] = True
    return out


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def demo():
    from mads_core.data.demo import load_demo

    return load_demo(teach.DEMO_PRESET)


@pytest.fixture(scope="module")
def instance(demo):
    """The teaching instance (bundled model on 12 samples, cached in the session's cache)."""
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    return teach.load_instance(demo=demo)


@pytest.fixture(scope="module")
def planes(demo, instance) -> np.ndarray:
    """(P, N, D) bool: the instance's rows fingerprinted again (a cache hit), unpacked here, sliced."""
    from mads_core.model.fingerprint import fingerprint_dataset

    fp = fingerprint_dataset(demo.subset(instance.demo_rows), ModelSpec(), FingerprintConfig())
    assert fp.cache_hit
    return unpack_bits(np.asarray(fp.planes), fp.n_neurons)[:, :, instance.neurons]


# ---------------------------------------------------------------- instance rules


def test_rows_are_short_varied_and_follow_the_documented_rule(demo):
    rows = teach.choose_rows(demo)
    assert len(rows) == teach.SAMPLE_COUNT and list(rows) == sorted(set(rows.tolist()))
    cats = [demo.categories[i] for i in rows]
    assert len(set(cats)) == len(cats)  # one per category
    families = Counter(teach.source_family(demo.sources[i]) for i in rows)
    assert set(families) == {"ifbench", "chatterbot-corpus", "evals"}
    assert max(families.values()) <= teach.MAX_PER_SOURCE
    for i in rows:  # each is its category's sample closest to the target length
        assert len(demo.prompt(i).split()) >= teach.MIN_PROMPT_WORDS
        mine = abs(teach.own_chars(demo, i) - teach.TARGET_CHARS)
        rivals = [abs(teach.own_chars(demo, j) - teach.TARGET_CHARS) for j in range(len(demo))
                  if demo.categories[j] == demo.categories[i] and len(demo.prompt(j).split()) >= 4]
        assert mine == min(rivals)
        assert teach.own_chars(demo, i) < 3 * teach.TARGET_CHARS  # short texts
    assert teach.choose_rows(demo).tolist() == rows.tolist()  # deterministic


def test_neuron_rule_on_a_hand_checked_matrix():
    # 6 samples, two layers of 4 neurons. Column patterns (rows that fire):
    fired = np.zeros((6, 8), dtype=bool)
    fired[:3, 0] = True          # L0: fires on 3 of 6 (perfectly even)
    fired[:2, 1] = True          # L0: 2 of 6
    fired[:, 2] = True           # L0: all 6 -> excluded
    fired[:3, 3] = True          # L0: same pattern as neuron 0 -> dropped (duplicate)
    fired[3:, 4] = True          # L1: 3 of 6
    fired[0, 5] = True           # L1: 1 of 6 -> excluded
    fired[1:5, 6] = True         # L1: 4 of 6 (= n - 2, allowed)
    assert teach.choose_neurons(fired, (0, 4, 8), 2).tolist() == [0, 4]   # best of each layer
    assert teach.choose_neurons(fired, (0, 4, 8), 3).tolist() == [0, 1, 4]  # then L0's second best
    assert teach.choose_neurons(fired, (0, 4, 8), 9).tolist() == [0, 1, 4, 6]  # all that qualify


@pytest.mark.model
def test_the_instance_slice_is_readable_and_real(instance, planes):
    n, d = instance.n, instance.d
    assert (n, d) == (teach.SAMPLE_COUNT, teach.NEURON_COUNT)
    np.testing.assert_array_equal(instance.planes, planes)
    support = planes[0].sum(axis=0)
    assert support.min() >= 2 and support.max() <= n - 2
    assert len({planes[0][:, j].tobytes() for j in range(d)}) == d  # no two identical columns
    assert np.unique(instance.neuron_layers).size >= 20  # spread over the model's depth
    assert all(c <= 3 for c in Counter(instance.neuron_layers.tolist()).values())
    assert instance.model_neurons == 46_080 and (instance.fired_total > instance.fired.sum(axis=1)).all()
    assert instance.neuron_label(0).startswith(f"L{instance.neuron_layers[0]}·u")


# ---------------------------------------------------------------- the walk equals the algorithm


def test_candidate_gains_by_hand():
    ground = np.array([[[1, 1, 0], [0, 1, 1], [0, 0, 1]]], dtype=bool)
    hits = np.array([[1, 0, 0]])
    taken = np.array([True, False, False])
    assert teach.candidate_gains(ground, hits, taken, 1).tolist() == [-1, 2, 1]
    assert teach.candidate_gains(ground, np.array([[1, 1, 0]]), taken, 2).tolist() == [-1, 2, 1]
    assert teach.plain_gains(ground[0], [0]).tolist() == [-1, 1, 1]


@pytest.mark.model
@pytest.mark.parametrize(("continuation", "m"), [("rounds", 2), ("none", 2), ("mcover", 2), ("mcover", 3),
                                                 ("states", 2)])
def test_every_step_of_the_walk_equals_the_brute_force_greedy(instance, planes, continuation, m):
    config = teach.walk_config(continuation, m)
    walk = teach.mads_walk(instance, config)
    ref = brute_force(planes, continuation, m)
    assert walk.ranking.tolist() == [r["pick"] for r in ref]
    assert walk.ranking.tolist() == naive_greedy(planes, instance.n, config).ranking.tolist()
    for step, r in zip(walk.steps, ref, strict=True):
        assert step.gains.tolist() == r["gains"].tolist(), step.t
        assert (step.pick, list(step.tied), step.round) == (r["pick"], r["tied"], r["round"])
        assert step.gain == int(walk.selection.gains[step.t - 1])
    union = np.logical_or.accumulate(planes[0][walk.ranking], axis=0).sum(axis=1)
    assert [s.union for s in walk.steps] == union.tolist()
    assert walk.saturation == int(np.argmax(union == instance.d)) + 1
    if continuation == "none":  # after saturation: zero-gain filler in row order
        tail = walk.steps[walk.saturation:]
        assert all(s.filler and s.gain == 0 for s in tail)
        assert [s.pick for s in tail] == sorted(s.pick for s in tail)
    if continuation == "rounds":
        assert walk.steps[walk.saturation].reset and walk.steps[walk.saturation].round == 1


@pytest.mark.model
def test_kcenter_walk_is_kcenter_greedy_and_its_scores_explain_each_pick(instance):
    kwalk = teach.kcenter_walk(instance)
    sel = kcenter_greedy(instance.embeddings, instance.n, "cosine", "mean")
    assert kwalk.ranking.tolist() == sel.ranking.tolist()
    unit = instance.embeddings / np.linalg.norm(instance.embeddings, axis=1, keepdims=True)
    for s in kwalk.steps:
        chosen = kwalk.ranking[: s.t - 1]
        if s.t == 1:
            mean = unit.mean(axis=0)
            expect = 1 - unit @ mean / np.linalg.norm(mean)
            assert s.pick == int(np.argmin(expect))
        else:
            expect = (1 - unit @ unit[chosen].T).min(axis=1)
            expect[chosen] = np.nan
            assert s.pick == int(np.nanargmax(expect))
        np.testing.assert_allclose(s.scores, expect, atol=1e-5)
    assert kwalk.steps[-1].union == instance.d


# ---------------------------------------------------------------- figures


def _bars(fig) -> dict[str, tuple[list, list]]:
    return {t.name: (list(t.customdata), list(t.x)) for t in fig.data if t.type == "bar"}


def test_walk_figure_marks_the_pick_ties_new_neurons_and_covered_columns():
    levels = np.array([[1, 1, 0, 0], [0, 2, 1, 0], [1, 0, 0, 3]])
    fig = tp.walk_figure(levels, ["a", "b", "c"], ["ha", "hb", "hc"], ["n0", "n1", "n2", "n3"],
                         col_cover=np.array([1.0, 1.0, 0.5, 0.0]), values=np.array([np.nan, 2.0, 2.0]),
                         new_cols=np.array([False, True, True, False]), current=1, tied=[1, 2], done={0: 1})
    bars = _bars(fig)
    assert bars["pick"] == ([1], [2.0]) and bars["tied"] == ([2], [2.0]) and bars["candidates"] == ([], [])
    assert bars["picked"][0] == [0]
    grid = next(t for t in fig.data if t.name == "fingerprints")
    z = np.asarray(grid.z)
    new = len(tp.GRID_COLORS) - 1
    assert z[1, 1] == new and z[1, 2] == new and z[1, 0] == 2 and z[1, 3] == 0  # pick row
    assert z[0, 0] == 7 and z[2, 3] == 4   # fires in a covered column (blue) / open column (grey)
    assert z[0, 2] == 1                    # partly covered column, not fired: tint
    strip = next(t for t in fig.data if t.name == "covered")
    assert list(np.asarray(strip.z)[0]) == [1.0, 1.0, 0.5, 0.0]
    assert "ha" in grid.customdata[0][0] and "n0" in grid.customdata[0][0]


def test_coverage_race_walks_each_method_up_to_the_step():
    fig = tp.coverage_race({"MADS": np.array([3, 5, 6]), "k-center (text)": np.array([2, 4, 6])},
                           {"MADS": tp.MADS_COLOR}, total=6, step=2, saturation=3)
    lines = {t.name: list(t.y) for t in fig.data}
    assert lines["MADS"] == [3, 5] and lines["k-center (text)"] == [2, 4]  # walked so far
    assert lines["MADS (to come)"] == [3, 5, 6]
    assert {s.x0 for s in fig.layout.shapes if s.type == "line"} >= {2, 3}


# ---------------------------------------------------------------- the page


def _decoded(value) -> list:
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).tolist()
    return list(value)


def shown(at: AppTest) -> dict:
    """What the page shows: the step, MADS's gains per row, its pick, and the narration."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    gains, pick = {}, None
    for t in spec["data"]:
        if t.get("type") != "bar" or t["name"] == "picked":
            continue
        for row, value in zip(_decoded(t.get("customdata", [])), _decoded(t.get("x", [])), strict=True):
            gains[int(row)] = int(value)
        if t["name"] == "pick" and _decoded(t.get("customdata", [])):
            pick = int(_decoded(t["customdata"])[0])
    text = "\n".join(md.value for md in at.markdown)
    step = int(re.search(r"Step (\d+) of (\d+)", text).group(1))
    return {"step": step, "gains": gains, "pick": pick, "text": text}


def check(at: AppTest, ref: list[dict], n: int, sat: int) -> int:
    """Assert the page's step view equals the brute-force greedy; returns the step shown."""
    view = shown(at)
    t = view["step"]
    before = ref[t - 1]["gains"] if t else ref[0]["gains"]  # step 0 shows the gains before pick 1
    assert view["gains"] == {i: int(g) for i, g in enumerate(before) if g >= 0}, t
    if t == 0:
        assert view["pick"] is None
    else:
        assert view["pick"] == ref[t - 1]["pick"]
        assert f"Pick {t}: #{ref[t - 1]['pick']} " in view["text"]
        if len(ref[t - 1]["tied"]) > 1 and max(ref[t - 1]["gains"]) > 0:
            assert "tie" in view["text"] and "lowest row number" in view["text"]
    assert ("Coverage saturated after" in view["text"]) == (t >= sat)
    return t


def page(**state) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    at.session_state["_app_ran"] = True  # as if app.py (navigation + sidebar) had run
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


@pytest.mark.model
def test_page_steps_to_saturation_and_back_showing_exactly_the_greedy(instance, planes):
    ref = brute_force(planes, "rounds")
    n = instance.n
    sat = teach.mads_walk(instance).saturation
    at = page()
    assert check(at, ref, n, sat) == 0
    for t in range(1, n + 1):
        at.button(key="teach_next").click().run()
        assert check(at, ref, n, sat) == t
        assert at.session_state["teach_step"] == t
        if t == sat:  # what plain greedy would do now: a tie of all, won by the lowest row left
            left = sorted(r["pick"] for r in ref[sat:])
            text = shown(at)["text"]
            assert f"all {len(left)} samples left would now gain 0" in text
            assert f"next would come #{left[0]}" in text and "rounds (the default)" in text
    assert at.button(key="teach_next").disabled
    for t in range(n - 1, -1, -1):
        at.button(key="teach_back").click().run()
        assert check(at, ref, n, sat) == t
    # every term points at its control on Compare (a plain note when the page runs outside the app)
    notes = "\n".join(c.value for c in at.caption)
    for term in ("Neuron coverage", "Gain per pick", "Budget", "After saturation", "k-center (embeddings)"):
        assert f"{term}: Compare page ›" in notes


@pytest.mark.model
def test_page_state_survives_reruns_play_runs_to_the_end_and_reset(instance, planes):
    ref = brute_force(planes, "rounds")
    sat = teach.mads_walk(instance).saturation
    at = page(teach_step=3, teach_play_delay=0.0)  # a step kept in session state from an earlier visit
    assert check(at, ref, instance.n, sat) == 3
    at.button(key="teach_play").click().run()
    assert check(at, ref, instance.n, sat) == instance.n
    assert at.session_state["teach_playing"] is False
    assert at.button(key="teach_play").label == "Play"
    at.button(key="teach_reset").click().run()
    assert check(at, ref, instance.n, sat) == 0


@pytest.mark.model
def test_page_follows_the_continuation_chosen_on_compare(instance, planes):
    ref = brute_force(planes, "mcover", 3)
    sat = teach.mads_walk(instance, teach.walk_config("mcover", 3)).saturation
    at = page(select_config=SelectConfig(continuation="mcover", m=3), teach_step=sat)
    assert check(at, ref, instance.n, sat) == sat
    text = shown(at)["text"]
    assert "m-cover (m = 3)" in text
    at.button(key="teach_next").click().run()
    assert check(at, ref, instance.n, sat) == sat + 1


@pytest.fixture()
def in_app(tmp_path, monkeypatch) -> AppTest:
    """The page inside an ``st.navigation`` app (as ``app.py`` will list it), with Compare and a plain page.

    The entry script lives in ``tmp_path`` next to a ``pages`` link to the repository's pages,
    so ``st.page_link("pages/2_Compare.py")`` resolves as in the real app; AppTest is kept
    from re-detecting the ``pages/`` folder (as in tests/test_app.py).
    """
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "uses_pages_directory", PagesManager.uses_pages_directory)  # restored after
    monkeypatch.setattr(PagesManager, "__init__", init)
    (tmp_path / "pages").symlink_to(ROOT / "pages", target_is_directory=True)
    (tmp_path / "other.py").write_text('import streamlit as st\nst.write("another page")\n', encoding="utf-8")
    (tmp_path / "main.py").write_text(
        "import streamlit as st\n"
        "st.session_state['_app_ran'] = True\n"
        "st.navigation([st.Page('pages/5_How_MADS_chooses.py', default=True), st.Page('pages/2_Compare.py'),\n"
        "               st.Page('other.py')]).run()\n", encoding="utf-8")
    return AppTest.from_file(str(tmp_path / "main.py"), default_timeout=TIMEOUT)


@pytest.mark.model
def test_in_the_app_the_step_survives_a_page_switch_and_terms_link_to_compare(instance, planes, in_app):
    ref = brute_force(planes, "rounds")
    sat = teach.mads_walk(instance).saturation
    at = in_app.run()
    for _ in range(2):
        at.button(key="teach_next").click().run()
    assert check(at, ref, instance.n, sat) == 2
    at.switch_page("other.py").run()
    assert "another page" in "\n".join(md.value for md in at.markdown)
    at.switch_page("pages/5_How_MADS_chooses.py").run()
    assert check(at, ref, instance.n, sat) == 2
    links = {link.proto.label: link.proto.page for link in at.get("page_link")}
    for term in ("Neuron coverage", "Gain per pick", "Budget", "After saturation", "k-center (embeddings)"):
        label = next(label for label in links if label.startswith(f"{term} → Compare ›"))
        assert links[label] == "Compare"
