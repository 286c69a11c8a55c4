"""Compare on a 5,000-sample synthetic cache: a budget-slider move computes no ranking.

The inputs come from ``mads_core.synthetic``'s seeded generators (as in ``bench/app_scale.py``) (JSONL records, packed
fingerprints under the key the app looks up for the bundled model, 384-d embeddings), so
no model runs. Every ranking the page asks for goes through ``pipeline.run_method``; the
test counts those calls around the slider moves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mads_core import pipeline, session
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
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900)
    at.session_state["data.source"] = "Local path"
    at.session_state["data.path"] = str(synthetic)
    at.run()
    at.switch_page("pages/2_Compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.session_state["budget_k"] == session.default_budget(N)
    first = list(calls)
    # every default method ranked once, to the largest budget the slider offers (fewer if cached on disk)
    assert {m for m, _ in first} <= set(session.DEFAULT_METHODS)
    assert all(k == session.max_budget(N) for _, k in first)
    assert len(first) == len({m for m, _ in first})

    for pct in (20.0, 3.5, 12.0):
        at.slider(key=SLIDER).set_value(pct).run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.session_state["budget_k"] == round(pct / 100 * N)
    assert calls == first, "a slider move recomputed a ranking"
    table = at.dataframe[0].value
    assert len(table) == len(session.DEFAULT_METHODS)
    assert np.isfinite(table.filter(like="neuron coverage").to_numpy(dtype=float)).all()
