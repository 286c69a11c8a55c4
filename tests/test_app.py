"""The Streamlit app, page by page, with ``streamlit.testing.v1.AppTest`` on the bundled demo.

Fingerprints and embeddings of the demo are computed once per session (the shared
isolated cache), so the pages find them cached, as a returning user would. The app's
pure helpers (``mads_core.session``) are checked at the end without Streamlit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mads_core import session
from mads_core.analysis import metrics
from mads_core.cli import build_parser, fingerprint_config_from_args, select_config_from_args
from mads_core.config import FingerprintConfig, ModelSpec, SelectConfig
from mads_core.select.bitops import pack_bits
from mads_core.select.greedy import resolve_budget

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 420  # first Compare run in a fresh process compiles UMAP (~30 s on 2 busy cores)


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def demo():
    """The default demo with its fingerprints and embeddings in the session cache."""
    import torch

    from mads_core.data.demo import load_demo
    from mads_core.model.embed import dataset_embeddings
    from mads_core.model.fingerprint import fingerprint_dataset

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    ds = load_demo()
    fp = fingerprint_dataset(ds, ModelSpec(), FingerprintConfig())
    emb = np.asarray(dataset_embeddings(ds))
    return ds, fp, emb


@pytest.fixture(autouse=True)
def navigation_mode(monkeypatch):
    """Run AppTest as the server runs once ``app.py`` has called ``st.navigation``.

    AppTest re-detects the ``pages/`` folder before every run and would then run a page
    on its own, without ``app.py`` (navigation + sidebar); a real session does that at
    most once, on its very first run (see ``pages/_common.page_setup``).
    """
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


def start(state: dict | None = None, **params) -> AppTest:
    """The app on its first page; ``state`` presets the app's own settings (``pages/_state.py`` keys),
    ``params`` the URL's query parameters."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def w(name: str, slot: str = "") -> str:
    """The widget key of an app setting (``pages/_state.bound``)."""
    return f"w:{name}" + (f":{slot}" if slot else "")


def plain_methods() -> list[str]:
    """Every method that needs no input beyond the data, fingerprints and embeddings (no target set, no
    IFD model run): the ones Compare computes on the demo as it stands."""
    from mads_core.pipeline import method_requirements

    return [m for m in session.METHODS if method_requirements(m) <= {"n", "dataset", "bits", "embeddings"}]


def share(k: int, n: int) -> float:
    """The budget share that gives exactly k picks of n."""
    return k / n


def clean(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def page(at: AppTest, name: str) -> AppTest:
    return at.switch_page(f"pages/{name}.py").run()


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def decoded(value) -> np.ndarray:
    """Plotly JSON arrays may be typed arrays ({dtype, bdata}); return plain numpy."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value)


def trace(spec: dict, name_start: str) -> dict:
    found = [t for t in spec["data"] if str(t.get("name", "")).startswith(name_start)]
    assert found, [t.get("name") for t in spec["data"]]
    return found[0]


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


SMALL = [("Name three primary colors.", "Red, yellow and blue."), ("What is 7 times 8?", "56."),
         ("Translate 'cat' to French.", "Chat."), ("Write a haiku about rain.", "Soft rain taps the roof"),
         ("Who wrote Hamlet?", "William Shakespeare."), ("Give a synonym for fast.", "Quick."),
         ("What is the capital of Peru?", "Lima."), ("Define photosynthesis.", "Plants turning light into food."),
         ("Convert 3 km to meters.", "3000 meters."), ("Suggest a name for a dog.", "Biscuit."),
         ("Why is the sea salty?", "Rivers carry dissolved minerals into it."),
         ("Spell 'necessary'.", "N-E-C-E-S-S-A-R-Y.")]


# ---------------------------------------------------------------- page 1: data & model


def test_data_page_opens_on_the_demo_with_a_cache_hit_and_the_firing_picture(demo):
    ds, fp, _ = demo
    at = clean(start())
    assert at.title[0].value == "Data & model"
    values = {m.label: m.value for m in at.metric}
    assert values["Samples"] == f"{len(ds):,}" and values["Samples N"] == f"{fp.n_samples:,}"
    assert values["Neurons D"] == f"{fp.n_neurons:,}"
    assert "Cache hit" in texts(at.success) and "no model time" in texts(at.success)
    hist, layers = charts(at)
    share = 100.0 * fp.fired_per_sample() / fp.n_neurons
    np.testing.assert_allclose(np.sort(decoded(hist["data"][0]["x"])), np.sort(share))
    np.testing.assert_allclose(decoded(layers["data"][0]["y"]), 100.0 * fp.layer_firing_rates())
    assert isinstance(at.session_state["settings"], session.AppSettings)
    assert at.session_state["settings"].fingerprint == FingerprintConfig()


def test_invalid_settings_are_named_and_the_app_recovers(demo):
    at = start()
    at.text_input(key=w("fp.levels")).set_value("1.0").run()  # levels must exceed tau
    assert not at.exception
    assert "levels" in texts(at.sidebar.error)
    assert "Settings problem" in texts(at.error)
    at.sidebar.button[0].click().run()  # "Reset settings to defaults"
    clean(at)
    assert at.text_input(key=w("fp.levels")).value == ",".join(str(x) for x in FingerprintConfig().levels)


def test_a_file_with_a_bad_record_is_loaded_and_the_bad_record_reported(tmp_path, demo):
    good = [{"instruction": q, "input": "", "output": a} for q, a in SMALL[:3]]
    path = write_jsonl(tmp_path / "pairs.jsonl", [good[0], {"instruction": "no answer here"}, good[1], good[2]])
    at = clean(start({"data.source": "Local path", "data.path": str(path)}))
    values = {m.label: m.value for m in at.metric}
    assert values["Samples"] == "3" and values["Skipped (malformed)"] == "1"
    report = texts(at.warning)
    assert "pairs.jsonl, line 2, field 'output'" in report and "missing required field" in report
    assert "Alpaca records" in texts(at.info)
    assert "Not computed yet" in texts(at.info)  # nothing is run until asked
    assert [b.label for b in at.main.button] == ["Compute fingerprints"]


def test_a_missing_file_and_an_unknown_model_give_clear_errors(tmp_path, monkeypatch):
    at = start({"data.source": "Local path", "data.path": str(tmp_path / "nope.jsonl")})
    assert not at.exception
    assert "file does not exist" in texts(at.error) and "nope.jsonl" in texts(at.error)
    at = start({"model.source": "Local model folder", "model.path": str(tmp_path / "no-model")})
    assert not at.exception and "model folder not found" in texts(at.sidebar.error)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = start({"model.source": "Hugging Face hub id", "model.hub_id": "nobody/no-such-model-xyz"})
    assert not at.exception
    assert "no-such-model-xyz" in texts(at.error) and "Model problem" in texts(at.error)


# ---------------------------------------------------------------- page 2: compare


def test_compare_draws_mads_and_baselines_and_the_budget_is_a_prefix(demo):
    ds, fp, emb = demo
    at = clean(page(start(), "2_Compare"))
    specs = charts(at)
    assert len(specs) == 6  # 2 maps, coverage, gain per pick, metrics bars, category bars
    k = at.session_state["budget_k"]
    assert k == session.default_budget(len(ds))
    mads = session.run_method("mads", ds, fp, len(ds))
    fp_map, text_map = specs[0], specs[1]
    for spec in (fp_map, text_map):
        assert all(t["type"] == "scattergl" for t in spec["data"])
        assert decoded(trace(spec, "MADS")["customdata"]).tolist() == mads.ranking[:k].tolist()
    assert "SVD(" in fp_map["layout"]["title"]["text"] and "cosine" in text_map["layout"]["title"]["text"]
    table = at.dataframe[0].value
    assert list(table["method"]) == ["MADS", "random", "k-center TF-IDF", "k-center embeddings"]
    expected = metrics.neuron_coverage(fp.bits, fp.n_neurons, mads.ranking[:k])["coverage"]
    assert table.loc[0, "neuron coverage"] == pytest.approx(expected)
    coverage = specs[2]
    assert {t["name"] for t in coverage["data"]} >= {"MADS", "random", "plain coverage saturates"}
    assert any(s.get("x0") == k for s in coverage["layout"]["shapes"])

    at.slider(key=w("budget.share", "compare_pct")).set_value(20.0).run()
    clean(at)
    k2 = at.session_state["budget_k"]
    assert k2 == round(0.2 * len(ds)) and at.session_state["budget.share"] == pytest.approx(0.2)
    assert at.number_input(key=w("budget.share", "compare_count")).value == k2
    assert at.query_params["budget"] == "0.2"  # the view's state is in the URL
    assert decoded(trace(charts(at)[0], "MADS")["customdata"]).tolist() == mads.ranking[:k2].tolist()
    random_ids = decoded(trace(charts(at)[0], "random")["customdata"])
    assert random_ids.tolist() == session.run_method("random", ds, fp, len(ds)).ranking[:k2].tolist()


def test_compare_with_every_method_and_tuned_mads(demo):
    ds, fp, emb = demo
    at = page(start({"budget.share": share(50, len(ds))}), "2_Compare")
    at.multiselect(key=w("compare.methods")).set_value(plain_methods()).run()
    clean(at)
    assert len(at.dataframe[0].value) == len(plain_methods())
    at.number_input(key=w("mads.min_support")).set_value(3).run()
    clean(at)
    assert at.session_state["select_config"] == SelectConfig(min_support=3)
    tuned = session.run_method("mads", ds, fp, 50, select_config=SelectConfig(min_support=3))
    gains = decoded(charts(at)[3]["data"][0]["y"])
    np.testing.assert_allclose(gains[:50], tuned.gains[:50])


def test_a_budget_out_of_range_is_named_and_clamped(demo):
    ds, _, _ = demo
    at = page(start(budget="7.5"), "2_Compare")  # a shared link asking for 750%
    assert not at.exception
    assert "out of range" in texts(at.warning)
    assert at.session_state["budget_k"] == session.max_budget(len(ds))
    at.number_input(key=w("budget.share", "compare_count")).set_value(30).run()
    clean(at)
    assert at.session_state["budget_k"] == 30
    assert at.slider(key=w("budget.share", "compare_pct")).value == pytest.approx(round(100 * 30 / len(ds), 1))


def compare_controls(at: AppTest) -> dict:
    """What Compare shows in its controls, and which methods it computed (the metrics table's rows)."""
    return {
        "methods": list(at.multiselect(key=w("compare.methods")).value),
        "neighbours": at.number_input(key=w("map.n_neighbors")).value,
        "min_dist": at.number_input(key=w("map.min_dist")).value,
        "svd": at.number_input(key=w("map.svd_dims")).value,
        "max_share": at.slider(key=w("mads.max_neuron_share")).value,
        "budget_pct": at.slider(key=w("budget.share", "compare_pct")).value,
        "computed": list(at.dataframe[0].value["method"]),
    }


def test_a_passing_sidebar_error_resets_nothing_on_compare(demo):
    """Issue 13 item 2: switch to 'Upload a file' and back, or type a bad layer spec and fix it."""
    at = page(start(), "2_Compare")
    at.multiselect(key=w("compare.methods")).set_value(["mads", "kcenter-act", "random"]).run()
    at.number_input(key=w("map.n_neighbors")).set_value(10).run()
    at.slider(key=w("mads.max_neuron_share")).set_value(0.5).run()
    clean(at)
    before = compare_controls(at)
    assert before["computed"] == ["MADS", "k-center fingerprints", "random"] and before["neighbours"] == 10
    config = at.session_state["select_config"]

    at.radio(key=w("data.source")).set_value("Upload a file").run()
    assert "upload a file" in texts(at.sidebar.error) and "Settings problem" in texts(at.error)
    at.radio(key=w("data.source")).set_value("Bundled demo").run()
    clean(at)
    assert compare_controls(at) == before and at.session_state["select_config"] == config

    at.text_input(key=w("fp.layers")).set_value("0-x").run()
    assert "Settings problem" in texts(at.error)
    at.text_input(key=w("fp.layers")).set_value("all").run()
    clean(at)
    assert compare_controls(at) == before and at.session_state["select_config"] == config


def test_the_budget_is_carried_as_a_share_across_datasets(demo, tmp_path):
    """Issue 13 item 3: 10% of the demo stays 10% of a small file and 10% again back on the demo."""
    ds, _, _ = demo
    path = write_jsonl(tmp_path / "tiny.jsonl", [{"instruction": q, "input": "", "output": a} for q, a in SMALL])
    at = page(start({"budget.share": 0.1}), "4_Export")
    clean(at)
    assert at.session_state["budget_k"] == session.budget_from_share(0.1, len(ds)) == 72
    at.radio(key=w("data.source")).set_value("Local path").run()
    at.text_input(key=w("data.path")).set_value(str(path)).run()  # Export fingerprints the 12 samples
    clean(at)
    assert at.session_state["budget_k"] == 1 and at.session_state["budget.share"] == pytest.approx(0.1)
    at.radio(key=w("data.source")).set_value("Bundled demo").run()
    clean(at)
    assert at.session_state["budget_k"] == 72 and at.session_state["budget.share"] == pytest.approx(0.1)


def test_compare_cli_table_equals_the_apps_metrics_for_every_method(demo, tmp_path, isolated_cache):
    """Issue 13 item 4: `compare` and the app give the same numbers for every method at 5/10/15%
    (k-means clustered once per budget in both)."""
    import pandas as pd

    ds, _, _ = demo
    methods = plain_methods()
    assert {"mads", "random", "kcenter-tfidf", "kcenter-embed", "kmeans-embed", "kcenter-act"} <= set(methods)
    out = tmp_path / "compare.csv"
    env = {**os.environ, "MADS_CACHE_DIR": str(isolated_cache)}
    done = subprocess.run([sys.executable, "-m", "mads_core", "compare", "--data", "demo", "--budgets",
                           "0.05,0.1,0.15", "--methods", ",".join(methods), "--out", str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    cli = pd.read_csv(out)
    assert list(dict.fromkeys(cli["method"])) == methods
    labels = {plots_label(m): m for m in methods}
    at = page(start({"compare.methods": methods}), "2_Compare")
    columns = {"neuron coverage": "coverage", "text spread (mean NN cos dist)": "mean_nn_distance",
               "text radius (max dist to a pick)": "radius", "category coverage": "category_coverage",
               "tokens (mean)": "len_mean"}
    for budget in (0.05, 0.1, 0.15):
        at.session_state["budget.share"] = budget
        at.run()
        clean(at)
        shown = at.dataframe[0].value
        assert at.session_state["budget_k"] == session.budget_from_share(budget, len(ds))
        for _, row in shown.iterrows():
            method = labels[row["method"]]
            ref = cli[(cli["method"] == method) & (cli["budget"].astype(float) == budget)].iloc[0]
            assert int(ref["k"]) == at.session_state["budget_k"]
            for label, column in columns.items():
                assert row[label] == pytest.approx(float(ref[column]), rel=1e-5, abs=1e-6), (method, budget, label)


def plots_label(method: str) -> str:
    from mads_core.views.plots import method_label

    return method_label(method)


def test_the_view_is_restored_from_its_url(demo):
    ds, _, _ = demo
    at = page(start(budget="0.2", methods="mads,kcenter-embed", row="5"), "3_Inspect")
    clean(at)
    assert at.session_state["budget_k"] == session.budget_from_share(0.2, len(ds))
    assert list(at.session_state["compare.methods"]) == ["mads", "kcenter-embed"]
    assert "Sample row 5" in texts(at.subheader)
    assert at.query_params["methods"] == "mads,kcenter-embed" and at.query_params["row"] == "5"


# ---------------------------------------------------------------- page 3: inspect


def test_inspect_explains_a_pick_a_non_pick_and_linked_selections(demo):
    ds, fp, _ = demo
    k = 40
    mads = session.run_method("mads", ds, fp, len(ds))
    row = int(mads.ranking[3])
    at = clean(page(start({"budget.share": share(k, len(ds)), "inspect.row": row}), "3_Inspect"))
    table = at.dataframe[0].value
    assert table["row"].tolist() == mads.ranking[:k].tolist() and table["rank"].tolist() == list(range(1, k + 1))
    assert table["round"].tolist() == (np.asarray(mads.rounds[:k]) + 1).tolist()  # rounds count from 1, as in the text
    assert "pick **4** of 40" in texts(at.success)
    bars = [s for s in charts(at) if "newly covered" in s["layout"]["title"]["text"]][0]
    assert f"total {int(mads.gains[3]):,}" in bars["layout"]["title"]["text"]  # round 0: gain = new neurons

    outside = int(mads.ranking[k + 5])
    at.session_state["inspect.row"] = outside
    at.session_state["linked_rows"] = [int(mads.ranking[0]), outside, 7]
    at.run()
    clean(at)
    assert "Not chosen by MADS" in texts(at.warning)
    added = session.would_add(fp.bits, fp.n_neurons, mads.ranking[:k], outside)
    would = [s for s in charts(at) if "would add" in s["layout"]["title"]["text"]][0]
    assert f"total {len(added):,}" in would["layout"]["title"]["text"]
    assert "Linked selection: 3 samples" in texts(at.info)
    maps = [s for s in charts(at) if "Activation" in s["layout"]["title"]["text"] or "Text" in
            s["layout"]["title"]["text"]]
    for spec in maps:  # linked views: the same rows are ringed in both projections
        assert sorted(decoded(trace(spec, "linked")["customdata"]).tolist()) == sorted([int(mads.ranking[0]),
                                                                                     outside, 7])
    tabs = [t.label for t in at.tabs]
    assert tabs[0].startswith("Only MADS") and tabs[1].startswith("Both")
    ov = metrics.overlap(mads.ranking[:k], session.run_method("random", ds, fp, len(ds)).ranking[:k])
    assert tabs[1] == f"Both ({ov['n_both']:,})"


# ---------------------------------------------------------------- page 4: export


def test_export_matches_the_cli_command_byte_for_byte(demo, tmp_path, isolated_cache):
    ds, fp, _ = demo
    at = page(start({"budget.share": share(25, len(ds)), "mads.min_support": 2}), "4_Export")
    clean(at)
    command = at.code[0].value
    argv = shlex.split(command)
    assert argv[:4] == ["python", "-m", "mads_core", "select"]
    assert argv[argv.index("--budget") + 1] == "25" and argv[argv.index("--min-support") + 1] == "2"
    name = argv[argv.index("--out") + 1]
    assert [b.label for b in at.get("download_button")][0].startswith(f"Download {name}")
    shown = re.findall(r"`([0-9a-f]{64})`", texts(at.markdown))
    env = {**os.environ, "MADS_CACHE_DIR": str(isolated_cache)}
    done = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    data = (tmp_path / name).read_bytes()
    manifest = (tmp_path / (name + ".manifest.json")).read_bytes()
    assert shown == [hashlib.sha256(data).hexdigest(), hashlib.sha256(manifest).hexdigest()]
    assert len(data.splitlines()) == 25


# ---------------------------------------------------------------- small data end to end


def test_small_dataset_stopped_run_resumes_and_compare_falls_back_for_tiny_maps(tmp_path):
    # SMALL in reverse: other data than the earlier tests' (their fingerprints are in the session cache,
    # and a cache hit leaves nothing to resume)
    rows = [{"instruction": q, "input": "", "output": a} for q, a in reversed(SMALL)]
    path = write_jsonl(tmp_path / "tiny.jsonl", rows)
    at = page(start({"data.source": "Local path", "data.path": str(path), "fingerprint_stopped": True}),
              "2_Compare")
    assert not at.exception
    assert "stopped" in texts(at.warning)
    assert not at.get("plotly_chart")  # a stopped run does not restart by itself
    [b for b in at.main.button if b.label == "Resume fingerprinting"][0].click().run()
    clean(at)
    specs = charts(at)
    assert len(specs) == 5  # no category bars: this file has no categories, and the page says so
    assert "no categories" in texts(at.caption)
    assert "too few for UMAP" in specs[0]["layout"]["title"]["text"]
    assert "too few for UMAP" in specs[1]["layout"]["title"]["text"]
    assert at.session_state["budget_k"] == 1  # 10% of 12 samples


# ---------------------------------------------------------------- pure helpers (no Streamlit)


@pytest.mark.parametrize("config,spec", [
    (FingerprintConfig(), ModelSpec()),
    (FingerprintConfig(layers=(0, 1, 2, 3, 7, 9, 10), threshold=2.5, levels=(3.25,), max_tokens=128), ModelSpec()),
    (FingerprintConfig(rule="topk", top_k=8, levels=(), pooling="mean", template="plain"), ModelSpec("/m/x")),
    (FingerprintConfig(threshold=1.0, levels=(), count_template_tokens=True), ModelSpec()),
])
def test_fingerprint_flags_rebuild_the_same_settings_on_the_cli(config, spec):
    flags = session.fingerprint_flags(config, spec)
    args = build_parser().parse_args(["select", "--out", "x.jsonl", *flags])
    assert fingerprint_config_from_args(args).cache_hash() == config.cache_hash()
    assert args.model == spec.name
    assert (flags == []) == (config == FingerprintConfig() and spec == ModelSpec())


def test_select_flags_rebuild_the_same_mads_config_on_the_cli():
    config = SelectConfig(continuation="mcover", m=3, weighting="idf", max_neuron_share=0.15000000000000002,
                          min_support=2)
    flags = session.select_flags("mads", config, {})
    args = build_parser().parse_args(["select", "--out", "x.jsonl", *flags])
    assert select_config_from_args(args) == config
    assert session.select_flags("mads", SelectConfig(), {}) == []
    assert session.select_flags("random", None, {"seed": 4}) == ["--seed", "4"]


def test_layers_text_round_trip_and_budget_bounds():
    for layers in [None, (0,), (0, 1), (0, 1, 2, 5, 7, 8, 9, 29)]:
        assert session.parse_layers(session.format_layers(layers)) == layers
    assert session.max_budget(745) == 745 and session.max_budget(52_000) == 15_600
    assert session.default_budget(745) == 75 and session.default_budget(5) == 1
    assert session.clamp_budget(0, 100) == 1 and session.clamp_budget(10**9, 100) == 100


def test_union_coverage_newly_covered_would_add_and_nearest_on_hand_made_bits():
    fired = np.zeros((4, 130), dtype=bool)
    fired[0, [0, 1, 64]] = True
    fired[1, [1, 2]] = True
    fired[2, [0, 1, 64, 129]] = True
    fired[3, [100]] = True
    bits = pack_bits(fired)
    ranking = np.array([2, 1, 3, 0])
    np.testing.assert_array_equal(session.union_coverage(bits, ranking, 130, chunk=2), [4, 5, 6, 6])
    from mads_core.select.greedy import Selection

    sel = Selection("random", 4, ranking, np.full(4, np.nan), np.full(4, np.nan), np.zeros(4, np.int32))
    assert session.newly_covered(sel, bits, 130, 1).tolist() == [2]
    assert session.would_add(bits, 130, np.array([1, 3]), 2).tolist() == [0, 64, 129]
    rows, sims = session.nearest(bits, 0, np.array([1, 2, 3]))
    assert rows.tolist() == [2, 1, 3] and sims.tolist() == pytest.approx([0.75, 0.25, 0.0])
    assert session.layer_counts(np.array([0, 64, 129, 130 + 1]), 130, (0, 65, 130)).tolist() == [3, 1]


def test_uploads_are_kept_by_content(tmp_path):
    a = session.save_upload("my data.jsonl", b'{"text": "x"}\n', tmp_path)
    b = session.save_upload("my data.jsonl", b'{"text": "x"}\n', tmp_path)
    c = session.save_upload("../evil.jsonl", b'{"text": "y"}\n', tmp_path)
    assert a == b and a.name == "my_data.jsonl" and a.read_bytes() == b'{"text": "x"}\n'
    assert c.parent != a.parent and c.name == "evil.jsonl" and tmp_path in c.parents
    # the app names an upload by its own file name, never the internal cache path (also in the CLI command)
    choice = session.DataChoice(kind="path", path=str(a), label="my data.jsonl")
    assert choice.display_name == "my data.jsonl" and choice.cli_flags()[:2] == ["--data", "my data.jsonl"]
    assert str(tmp_path) not in session.cli_command(choice, ModelSpec(), FingerprintConfig(), "random", 3, "o.jsonl")


def test_budget_shares_round_like_the_cli_and_search_helpers(demo):
    ds, _, emb = demo
    n = len(ds)
    assert [session.budget_from_share(b, n) for b in (0.05, 0.1, 0.15)] == [
        resolve_budget(b, n) for b in (0.05, 0.1, 0.15)]
    assert all(session.budget_from_share(k / n, n) == k for k in (1, 2, 30, 71, n))
    assert session.budget_from_share(0.1, 12) == 1 and session.budget_from_share(5.0, n) == n
    word = ds.prompt(3).split()[0]
    hits = session.search_text(ds, word.upper())
    assert 3 in hits and all(word.lower() in ds.display_text(int(i)).lower() for i in hits)
    rows, sims = session.nearest_embedding(emb, 3, top=4)
    assert 3 not in rows and list(sims) == sorted(sims, reverse=True)
    best = np.argsort(-(emb @ emb[3]))[1]
    assert rows[0] == best


def test_validate_page_command_line_survives_spaces_in_the_budgets():
    """Budgets typed as '0.05, 0.15' were pasted into the command as `--budgets 0.05, 0.15` (two words)."""
    import shlex

    at = page(start(), "6_Validate")
    at.text_input(key="w_val_budgets").set_value("0.05, 0.15").run()
    clean(at)
    caption = next(c.value for c in at.caption if "command line" in c.value)
    argv = shlex.split(caption.split("`")[1])
    assert argv[argv.index("--budgets") + 1] == "0.05,0.15"
    assert "0.15" not in argv[argv.index("--budgets") + 2:]
