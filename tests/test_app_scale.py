"""Compare on a 5,000-sample synthetic cache: a budget-slider move computes no ranking and no curve.

The inputs come from ``mads_core.synthetic``'s seeded generators (as in ``bench/app_scale.py``) (JSONL records, packed
fingerprints under the key the app looks up for the bundled model, 384-d embeddings), so
no model runs. Every ranking the page asks for goes through ``pipeline.run_method``, every
text-spread curve through ``metrics.diversity_curves`` (on a ``metrics.text_space``) and every
coverage curve through ``metrics.coverage_counts`` / ``session.union_coverage``; the test
counts those calls around the slider moves: a move reads curves, it computes none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mads_core import pipeline, session
from mads_core.analysis import background, metrics
from mads_core.synthetic import build_app_inputs

ROOT = Path(__file__).resolve().parents[1]
N = 5_000
SLIDER = "w:budget.share:compare_pct"


@pytest.fixture(autouse=True)
def navigation_mode(monkeypatch):
    """Run AppTest as the server runs once ``app.py`` has called ``st.navigation`` (see test_app.py)."""
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


@pytest.fixture(scope="module")
def synthetic(isolated_cache, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("app-scale")  # the dataset file goes here, the arrays to the cache
    path, _ = build_app_inputs(N, out_dir, Path(isolated_cache))
    return path


def test_slider_move_at_5000_samples_recomputes_no_ranking(synthetic, monkeypatch):
    calls: list[tuple[str, int]] = []
    real = pipeline.run_method

    def counting(method, dataset, fingerprints, budget, *args, **kwargs):
        calls.append((method, int(budget)))
        return real(method, dataset, fingerprints, budget, *args, **kwargs)

    monkeypatch.setattr(pipeline, "run_method", counting)
    curves: list[str] = []  # every per-ranking structure the page computes
    for module, name in ((metrics, "diversity_curves"), (metrics, "text_space"), (metrics, "coverage_counts"),
                         (metrics, "coverable_count"), (session, "union_coverage")):
        def wrapped(*args, _real=getattr(module, name), _name=name, **kwargs):
            curves.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900)
    at.session_state["data.source"] = "Local path"
    at.session_state["data.path"] = str(synthetic)
    at.run()
    at.switch_page("pages/2_Compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    # at this size the maps and the text-spread curves are background jobs: the page drew without them
    pending = background.active()
    assert pending, "5,000 samples: maps and text spread are computed in the background"
    for job in pending:
        assert job.wait(900), f"background job {job.label} did not finish"
    assert not [j.error for j in pending if j.error is not None]
    at.run()  # what the page's polling fragment does once its jobs are done
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["budget_k"] == session.default_budget(N)
    first = list(calls)
    # every default method ranked once, to the largest budget the slider offers (fewer if cached on disk)
    assert {m for m, _ in first} <= set(session.DEFAULT_METHODS)
    assert all(k == session.max_budget(N) for _, k in first)
    assert len(first) == len({m for m, _ in first})
    # the first visit builds each ranking's curves once: text spread for every method, coverage for the
    # baselines (MADS records its own coverage counts), one text space, one coverable count
    methods = len(session.DEFAULT_METHODS)
    assert curves.count("diversity_curves") == methods and curves.count("text_space") == 1
    assert curves.count("coverage_counts") + curves.count("union_coverage") <= methods
    built = list(curves)

    for pct in (20.0, 3.5, 12.0):
        at.slider(key=SLIDER).set_value(pct).run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.session_state["budget_k"] == round(pct / 100 * N)
    assert calls == first, "a slider move recomputed a ranking"
    assert curves == built, f"a slider move computed curves: {curves[len(built):]}"
    table = at.dataframe[0].value
    assert len(table) == len(session.DEFAULT_METHODS)
    assert np.isfinite(table.filter(like="neuron coverage").to_numpy(dtype=float)).all()
    # text spread and radius at every size (no N x k cut-off any more), equal to a direct measurement
    assert np.isfinite(table.filter(like="text spread").to_numpy(dtype=float)).all()
    k = at.session_state["budget_k"]
    ds = pipeline.load_data(str(synthetic))
    emb = np.asarray(pipeline.dataset_embeddings_cached(ds))
    mads = pipeline.run_method_cached("mads", ds, _fingerprints(ds), session.max_budget(N))
    direct = metrics.text_diversity(emb, mads.ranking[:k])
    row = table[table["method"] == "MADS"].iloc[0]
    assert row.filter(like="text spread").iloc[0] == pytest.approx(direct["mean_nn_distance"], rel=1e-6)
    assert row.filter(like="text radius").iloc[0] == pytest.approx(direct["radius"], rel=1e-6)


def _fingerprints(ds):
    from mads_core.config import FingerprintConfig, ModelSpec
    from mads_core.model.fingerprint import cached_fingerprints

    return cached_fingerprints(ds, ModelSpec(), FingerprintConfig())
