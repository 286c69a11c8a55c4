"""Figure builders, checked as data (no Streamlit, no browser): what each chart would show."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from mads_core.views import plots


def trace(fig: go.Figure, name_start: str):
    found = [t for t in fig.data if (t.name or "").startswith(name_start)]
    assert found, f"no trace named {name_start!r} in {[t.name for t in fig.data]}"
    return found[0]


def test_firing_histogram_is_in_percent_of_neurons_and_marks_the_mean():
    fired = np.array([10, 20, 30, 40])
    fig = plots.firing_histogram(fired, n_neurons=200, threshold_label="τ = 2")
    hist = fig.data[0]
    assert isinstance(hist, go.Histogram)
    np.testing.assert_allclose(hist.x, [5.0, 10.0, 15.0, 20.0])
    assert fig.layout.shapes[0].x0 == pytest.approx(12.5)
    assert "τ = 2" in fig.layout.title.text


def test_layer_firing_rates_one_bar_per_hooked_layer():
    fig = plots.layer_firing_rates(np.array([0.01, 0.05, 0.02]), layers=(3, 7, 11))
    bar = fig.data[0]
    assert list(bar.x) == ["3", "7", "11"]
    np.testing.assert_allclose(bar.y, [1.0, 5.0, 2.0])


def test_projection_scatter_rest_in_grey_selection_highlighted_with_global_row_ids():
    coords = np.arange(20, dtype=np.float32).reshape(10, 2)
    fig = plots.projection_scatter(coords, {"mads": np.array([7, 2]), "random": np.array([2, 5])},
                                   title="t", subtitle="SVD(50) → UMAP", linked=np.array([1, 9]), focus=4)
    assert all(isinstance(t, go.Scattergl) for t in fig.data)
    grey = trace(fig, "not selected")
    assert sorted(grey.customdata.tolist()) == [0, 1, 3, 4, 6, 8, 9]
    mads = trace(fig, "MADS")
    assert mads.customdata.tolist() == [7, 2]
    np.testing.assert_allclose(mads.x, coords[[7, 2], 0])
    np.testing.assert_allclose(mads.y, coords[[7, 2], 1])
    assert trace(fig, "random").customdata.tolist() == [2, 5]
    assert trace(fig, "linked").customdata.tolist() == [1, 9]
    assert trace(fig, "opened").customdata.tolist() == [4]
    # MADS is drawn last among the methods (on top) but listed first in the legend
    names = [t.name for t in fig.data]
    assert names.index("random (2)") < names.index("MADS (2)")
    assert mads.legendrank < trace(fig, "random").legendrank
    # No default drag tool: Streamlit then keeps clickmode "event+select", so a click selects one point and
    # reaches on_select (a lasso default made it "event": clicks did nothing — issue 13 item 1).
    assert fig.layout.dragmode is None and fig.layout.clickmode is None
    assert "SVD(50) → UMAP" in fig.layout.title.text


def test_projection_scatter_thins_only_the_grey_points_and_says_so():
    rng = np.random.default_rng(0)
    coords = rng.standard_normal((5000, 2)).astype(np.float32)
    chosen = np.arange(0, 5000, 10)
    fig = plots.projection_scatter(coords, {"mads": chosen}, title="t", max_background=1000)
    grey = trace(fig, "not selected")
    assert len(grey.customdata) == 1000
    assert not set(grey.customdata.tolist()) & set(chosen.tolist())
    assert len(trace(fig, "MADS").customdata) == len(chosen)
    assert "thinned" in fig.layout.title.text
    assert fig.layout.meta["thinned"] is True
    unthinned = plots.projection_scatter(coords, {"mads": chosen}, title="t")
    assert "thinned" not in unthinned.layout.title.text


def test_projection_scatter_colours_the_rest_by_a_metadata_column():
    coords = np.arange(20, dtype=np.float32).reshape(10, 2)
    topics = ["math", "art", "math", None, "art", "math", "art", "math", "code", "math"]
    fig = plots.projection_scatter(coords, {"mads": np.array([0, 1])}, title="t", color_by=topics,
                                   color_label="topic")
    groups = {t.name: sorted(t.customdata.tolist()) for t in fig.data if t.name.startswith("topic")}
    assert groups == {"topic: math": [2, 5, 7, 9], "topic: art": [4, 6], "topic: (none)": [3], "topic: code": [8]}
    lengths = [5.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    fig = plots.projection_scatter(coords, {"mads": np.array([0])}, title="t", color_by=lengths, color_label="len")
    shaded = trace(fig, "not selected, by len")
    np.testing.assert_allclose(shaded.marker.color, [lengths[i] for i in shaded.customdata])


def test_saturation_point_is_where_the_curve_first_reaches_its_maximum():
    k = np.arange(1, 7)
    assert plots.saturation_point(k, np.array([3, 5, 8, 8, 8, 8])) == (3, 8.0)
    assert plots.saturation_point(k, np.array([1, 2, 3, 4, 5, 6])) is None  # still rising at the end
    assert plots.saturation_point(np.array([1]), np.array([4])) is None


def test_coverage_curves_all_methods_on_one_plot_with_budget_and_saturation():
    frame = pd.DataFrame({
        "method": ["mads"] * 4 + ["random"] * 4,
        "k": [1, 2, 3, 4] * 2,
        "coverage": [0.5, 0.9, 1.0, 1.0, 0.3, 0.5, 0.7, 0.8],
    })
    fig = plots.coverage_curves(frame, n=10, budget=2, saturation=("mads", 3, 1.0))
    assert [t.name for t in fig.data[:2]] == ["MADS", "random"]
    np.testing.assert_allclose(fig.data[0].y, [50, 90, 100, 100])
    marker = trace(fig, "plain coverage saturates")
    assert list(marker.x) == [3] and list(marker.y) == [100.0]
    assert any(shape.x0 == 2 for shape in fig.layout.shapes)  # the budget line
    assert any("k=2" in a.text for a in fig.layout.annotations)
    both = plots.coverage_curves(frame, n=10, saturation=[("mads", 3, 1.0), ("random", 4, 0.8)])
    marks = [t for t in both.data if t.name == "plain coverage saturates"]
    assert [(list(t.x), t.marker.color) for t in marks] == [([3], plots.method_color("mads")),
                                                            ([4], plots.method_color("random"))]


def test_gain_per_pick_hides_zero_gains_on_the_log_axis_and_shades_filler():
    gains = np.array([9.0, 4.0, 1.0, 0.0, 0.0])
    fig = plots.gain_per_pick(gains, np.array([0, 0, 0, 0, 0]), budget=2, n=5, filler_from=3)
    y = np.asarray(fig.data[0].y, dtype=float)
    assert y[:3].tolist() == [9.0, 4.0, 1.0] and np.isnan(y[3:]).all()
    assert fig.layout.yaxis.type == "log"
    assert any(getattr(s, "fillcolor", None) for s in fig.layout.shapes)  # filler band


def test_metrics_bars_one_panel_per_metric_one_bar_per_method():
    table = pd.DataFrame({"method": ["mads", "random"], "coverage": [0.9, 0.7], "radius": [0.3, 0.5]})
    fig = plots.metrics_bars(table, [("coverage", "neuron coverage"), ("radius", "radius"), ("absent", "x")])
    assert len(fig.data) == 2
    assert list(fig.data[0].x) == ["MADS", "random"]
    np.testing.assert_allclose(fig.data[1].y, [0.3, 0.5])


def test_category_bars_shares_and_categories_kept_when_capped():
    categories = ["a"] * 6 + ["b"] * 3 + ["c"] * 1 + [None]
    fig = plots.category_bars(categories, {"mads": np.array([9, 8, 0]), "random": np.array([1, 2])})
    whole = trace(fig, "whole dataset")
    assert list(whole.y) == ["a", "b", "c"]
    np.testing.assert_allclose(whole.x, [60, 30, 10])
    mads = trace(fig, "MADS")
    np.testing.assert_allclose(mads.x, [100 / 3, 100 / 3, 100 / 3])  # picks 9 (c), 8 (b), 0 (a)
    capped = plots.category_bars(categories, {"mads": np.array([9])}, top=1)
    # 'c' is tiny in the dataset but holds all of MADS's picks: it must stay visible
    assert set(trace(capped, "whole dataset").y) == {"c"}
    assert "1 of 3 categories" in capped.layout.title.text


def test_newly_covered_bars_and_overlap_bars():
    fig = plots.newly_covered_bars(np.array([3, 0, 5]), layers=(0, 1, 2), title="Neurons this pick newly covered")
    assert list(fig.data[0].y) == [3, 0, 5] and "total 8" in fig.layout.title.text
    ov = plots.overlap_bars(4, 2, 1, "MADS", "random")
    assert [t.x[0] for t in ov.data] == [4, 2, 1]
    assert ov.layout.barmode == "stack"
    # each method keeps its own colour (the same as on Compare's maps and curves)
    ov = plots.overlap_bars(4, 2, 1, "random", "k-means", plots.method_color("random"),
                            plots.method_color("kmeans-embed"))
    assert [t.marker.color for t in ov.data] == [plots.method_color("random"), "#555",
                                                 plots.method_color("kmeans-embed")]


def test_maps_and_curves_travel_as_compact_typed_arrays():
    """What a slider move re-sends: float32 coordinates and int32 row ids as typed arrays, no per-point
    text without hover labels (large N), float32 curve values."""
    import json

    import plotly.io as pio

    rng = np.random.default_rng(1)
    n = 70_000  # row ids above 2**16: int32
    coords = rng.standard_normal((n, 2)).astype(np.float32)
    fig = plots.projection_scatter(coords, {"mads": np.arange(0, n, 7)}, title="t")
    spec = json.loads(pio.to_json(fig, validate=False))
    for t in spec["data"]:
        assert t["x"]["dtype"] == t["y"]["dtype"] == "f4" and t["customdata"]["dtype"] == "i4"
        assert "text" not in t and "row %{customdata}" in t["hovertemplate"]
    assert sum(len(t["x"]["bdata"]) for t in spec["data"]) == pytest.approx(4 * n * 4 / 3, rel=0.01)
    frame = pd.DataFrame({"method": "mads", "k": np.arange(1, 601), "coverage": np.linspace(0, 1, 600)})
    curve = json.loads(pio.to_json(plots.coverage_curves(frame, n=600), validate=False))["data"][0]
    assert curve["y"]["dtype"] == "f4" and curve["customdata"]["dtype"] == "f4"
    gains = json.loads(pio.to_json(plots.gain_per_pick(np.arange(600.0, 0, -1)), validate=False))["data"][0]
    assert gains["y"]["dtype"] == "f4"
