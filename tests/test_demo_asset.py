"""The bundled demo asset (``assets/demo/default.tar.xz``) against the library and a fresh computation.

The app shows the asset's results on a first visit while the user's cache lacks them, so
they must be exactly what the library computes: the keys must be today's (data, model,
settings and format hashes), the rankings what every method computes from the asset's
inputs, and sample rows what the real bundled model and MiniLM give afresh. When a test
here fails after a change to the demo data, the model, the defaults or a cache format,
rebuild the asset: ``python scripts/build_demo_asset.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

from mads_core import session
from mads_core.analysis.project import project_embeddings, project_fingerprints
from mads_core.config import FingerprintConfig, ModelSpec, SelectConfig
from mads_core.data import demo_asset
from mads_core.data.demo import load_demo
from mads_core.model import embed
from mads_core.model.fingerprint import cached_fingerprints, fingerprint_dataset, fingerprint_key
from mads_core.model.models import model_identity
from mads_core.model.store import artifact_dir, load_arrays
from mads_core.select.cache import load_selection

REBUILD = "the demo asset is stale: rebuild it with `python scripts/build_demo_asset.py`"
SAMPLE_ROWS = (0, 101, 250, 359, 512, 717)  # spread over the demo (and over its length-sorted chunks)


@pytest.fixture(scope="module")
def asset():
    root = demo_asset.root()
    assert root is not None, f"no demo asset at {demo_asset.ASSET_FILE}: {REBUILD}"
    ds = load_demo("default")
    fp = cached_fingerprints(ds, ModelSpec(), FingerprintConfig(), cache=root)
    found = load_arrays(artifact_dir(embed.CACHE_KIND, embed.embedding_key(ds), root))
    assert fp is not None and found is not None, REBUILD
    return root, demo_asset.manifest(root), ds, fp, np.asarray(found[0]["embeddings"])


def test_the_asset_is_small_and_keyed_to_todays_demo_model_and_settings(asset):
    root, info, ds, fp, emb = asset
    assert demo_asset.ASSET_FILE.stat().st_size < 4_000_000
    assert info["dataset_hash"] == ds.content_hash(), REBUILD
    assert info["fingerprint_key"] == fingerprint_key(ds.content_hash(), model_identity(ModelSpec()),
                                                      FingerprintConfig()), REBUILD
    assert info["embedding_key"] == embed.embedding_key(ds), REBUILD
    assert fp.n_samples == len(ds) == info["n_samples"] and emb.shape == (len(ds), embed.DIM)
    assert demo_asset.is_asset_path(fp.path)
    fmap = project_fingerprints(fp.bits, fp.n_neurons, input_key=fp.key, cache=root, compute=False)
    tmap = project_embeddings(emb, input_key=embed.embedding_key(ds), cache=root, compute=False)
    assert fmap is not None and tmap is not None, REBUILD
    assert fmap.coords.shape == tmap.coords.shape == (len(ds), 2)


def test_the_shipped_rankings_are_what_each_method_computes_from_the_asset(asset):
    root, info, ds, fp, emb = asset
    upto = session.max_budget(len(ds))
    assert info["rankings_upto"] == upto
    for method in session.DEFAULT_METHODS:
        key = demo_asset.ranking_key(ds.content_hash(), fp.key, session.method_key(method, SelectConfig(), {}), upto)
        shipped = load_selection(artifact_dir(demo_asset.RANKINGS, key, root))
        assert shipped is not None, (method, REBUILD)
        fresh = session.run_method(method, ds, fp, upto, select_config=SelectConfig(), embeddings=emb)
        np.testing.assert_array_equal(shipped.ranking, fresh.ranking, err_msg=method)
        np.testing.assert_array_equal(shipped.gains, fresh.gains, err_msg=method)
        assert shipped.settings_hash == fresh.settings_hash


@pytest.mark.model
def test_sample_rows_equal_a_fresh_computation_with_the_real_models(asset, bundled_model, tmp_path):
    _, _, ds, fp, emb = asset
    rows = list(SAMPLE_ROWS)
    fresh = fingerprint_dataset(ds.subset(rows), ModelSpec(), FingerprintConfig(), cache=tmp_path,
                                loaded=bundled_model)
    shipped = np.asarray(fp.planes)[:, rows]
    np.testing.assert_array_equal(np.asarray(fresh.planes), shipped)
    np.testing.assert_array_equal(np.asarray(fresh.token_counts), np.asarray(fp.token_counts)[rows])
    texts = [ds.display_text(i) for i in rows]
    np.testing.assert_allclose(embed.embed_texts(texts), emb[rows], atol=1e-4)


def test_a_first_visit_with_an_empty_cache_draws_from_the_asset_without_the_model(asset, tmp_path, monkeypatch):
    """Data & model and Compare on a fresh cache: everything comes from the asset, labelled, no model run."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import AppTest

    from mads_core.model import models

    original = PagesManager.__init__

    def init(self, *args, **kwargs):  # run as the server does once app.py called st.navigation
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)
    monkeypatch.setenv("MADS_CACHE_DIR", str(tmp_path / "empty-cache"))

    def no_model(*_args, **_kwargs):
        raise AssertionError("the model was loaded although the asset holds the results")

    monkeypatch.setattr(models, "load_model", no_model)
    at = AppTest.from_file(str(demo_asset.ASSET_FILE.parents[2] / "app.py"), default_timeout=600).run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert "From the bundled demo asset" in "\n".join(str(s.value) for s in at.success)
    assert len(at.get("plotly_chart")) == 2  # firing histogram and per-layer rates
    at.switch_page("pages/2_Compare.py").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert len(at.get("plotly_chart")) == 6
    assert list(at.dataframe[0].value["method"]) == ["MADS", "random", "k-center TF-IDF", "k-center embeddings"]
