"""Metrics on hand-checkable cases, and the incremental curves against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mads_core.analysis.metrics import (
    category_stats,
    coverable_count,
    coverage_counts,
    coverage_curves,
    diversity_curves,
    length_stats,
    metrics_table,
    neuron_coverage,
    overlap,
    text_diversity,
    text_space,
)
from mads_core.select.baselines import select_kcenter_embed, select_random
from mads_core.select.bitops import pack_bits
from mads_core.select.greedy import Selection

# 4 samples x 6 neurons in two layers of 3 (neurons 0-2, 3-5); neuron 5 never fires.
FIRED = np.array([
    [1, 0, 0, 0, 0, 0],
    [1, 1, 0, 0, 0, 0],
    [0, 0, 1, 1, 0, 0],
    [0, 0, 0, 1, 1, 0],
], dtype=bool)
BITS = pack_bits(FIRED)


def sel(name: str, ranking: list[int], n: int) -> Selection:
    k = len(ranking)
    return Selection(name, n, np.asarray(ranking, dtype=np.int64), np.full(k, np.nan), np.full(k, np.nan),
                     np.zeros(k, dtype=np.int32))


def test_neuron_coverage_by_hand():
    # coverable = neurons 0-4 (5); rows 1 and 3 fire 0, 1, 3, 4 -> 4 of 5
    cov = neuron_coverage(BITS, 6, [1, 3], layer_offsets=(0, 3, 6))
    assert cov["covered"] == 4 and cov["coverable"] == 5
    assert cov["coverage"] == pytest.approx(0.8)
    assert cov["coverage_all"] == pytest.approx(4 / 6)
    # layer 0: covered {0, 1} of coverable {0, 1, 2}; layer 1: {3, 4} of {3, 4}
    assert cov["per_layer"].tolist() == pytest.approx([2 / 3, 1.0])
    empty = neuron_coverage(BITS, 6, [], layer_offsets=(0, 3, 6))
    assert empty["covered"] == 0 and empty["per_layer"].tolist() == [0.0, 0.0]


def test_neuron_coverage_layer_where_nothing_fires_is_nan():
    cov = neuron_coverage(BITS, 6, [0], layer_offsets=(0, 5, 6))
    assert cov["per_layer"][0] == pytest.approx(1 / 5)
    assert math.isnan(cov["per_layer"][1])


def test_coverage_curves_equal_brute_force():
    rng = np.random.default_rng(1)
    fired = rng.random((80, 200)) < rng.uniform(0.01, 0.2, size=(80, 1))
    bits = pack_bits(fired)
    sels = {"random": select_random(80, 80, seed=3), "short": sel("short", [5, 1, 9], 80)}
    budgets = [1, 3, 10, 0.5, 80]
    df = coverage_curves(sels, bits, 200, budgets)
    assert len(df) == len(sels) * len(budgets)
    coverable = fired.any(axis=0).sum()
    for row in df.itertuples():
        ranking = sels[row.method].ranking
        used = min(row.k, len(ranking))
        brute = fired[ranking[:used]].any(axis=0).sum()
        assert row.covered == brute and row.k_used == used
        assert row.coverage == pytest.approx(brute / coverable)
    assert df["budget"].tolist() == budgets * 2
    assert df.loc[df.method == "random", "k"].tolist() == [1, 3, 10, 40, 80]
    assert df.loc[df.method == "random", "coverage"].iloc[-1] == pytest.approx(1.0)


def test_text_diversity_by_hand():
    # unit vectors at 0, 90, 180 and 45 degrees; picks 0 and 2 are opposite (distance 2);
    # the worst-served sample is row 1 (90 degrees: distance 1 to both picks)
    ang = np.deg2rad([0, 90, 180, 45])
    emb = np.stack([np.cos(ang), np.sin(ang)], axis=1).astype(np.float32) * 3  # norms do not matter
    div = text_diversity(emb, [0, 2])
    assert div["mean_nn_distance"] == pytest.approx(2.0, abs=1e-6)
    assert div["radius"] == pytest.approx(1.0, abs=1e-6)
    one = text_diversity(emb, [3])
    assert math.isnan(one["mean_nn_distance"])
    assert one["radius"] == pytest.approx(1 - math.cos(math.radians(135)), abs=1e-6)


def test_text_diversity_matches_brute_force_across_blocks():
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(700, 5)).astype(np.float32)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    dist = np.clip(1 - unit.astype(np.float64) @ unit.T.astype(np.float64), 0, 2)
    idx = rng.permutation(700)[:600]  # > one 512-pick block
    div = text_diversity(emb, idx)
    sub = dist[np.ix_(idx, idx)]
    np.fill_diagonal(sub, np.inf)
    assert div["mean_nn_distance"] == pytest.approx(sub.min(axis=1).mean(), abs=1e-5)
    assert div["radius"] == pytest.approx(dist[:, idx].min(axis=1).max(), abs=1e-5)


def test_category_stats():
    cats = ["a", "a", "b", "c", None]
    one = category_stats(cats, [0, 1, 4])
    assert one["categories_total"] == 3 and one["categories_covered"] == 1
    assert one["category_coverage"] == pytest.approx(1 / 3)
    assert one["category_entropy"] == pytest.approx(0.0)
    assert one["labelled"] == 2
    even = category_stats(cats, [0, 2, 3])
    assert even["categories_covered"] == 3 and even["category_entropy"] == pytest.approx(1.0)
    # two of "a", one "b": H = -(2/3 ln 2/3 + 1/3 ln 1/3), normalised by ln 3
    skew = category_stats(cats, [0, 1, 2])
    h = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert skew["category_entropy"] == pytest.approx(h / math.log(3))
    none = category_stats([None, None], [0])
    assert none["categories_total"] == 0 and math.isnan(none["category_coverage"])
    assert math.isnan(none["category_entropy"])


def test_length_stats():
    st = length_stats([10, 20, 30, 40, 1000], [0, 1, 2, 3])
    assert st["len_mean"] == 25 and st["len_median"] == 25 and st["len_max"] == 40
    assert st["len_total"] == 100 and st["len_min"] == 10
    assert math.isnan(length_stats([1, 2], [])["len_mean"])


def test_overlap():
    ov = overlap([3, 1, 2], [2, 5])
    assert ov["jaccard"] == pytest.approx(1 / 4)
    assert ov["only_a"].tolist() == [3, 1] and ov["both"].tolist() == [2] and ov["only_b"].tolist() == [5]
    assert (ov["n_only_a"], ov["n_both"], ov["n_only_b"]) == (2, 1, 1)
    assert overlap([1, 2], [2, 1])["jaccard"] == 1.0
    assert overlap([], [])["jaccard"] == 1.0


def test_metrics_table_rows_agree_with_single_metrics():
    rng = np.random.default_rng(4)
    n = 50
    fired = rng.random((n, 70)) < 0.1
    bits = pack_bits(fired)
    emb = rng.normal(size=(n, 6)).astype(np.float32)
    cats = [f"c{i % 4}" for i in range(n)]
    lengths = rng.integers(5, 500, size=n)
    sels = {"random": select_random(n, n), "kcenter-embed": select_kcenter_embed(emb, 20)}
    budgets = [5, 0.2, 30]
    df = metrics_table(sels, budgets, bits, 70, emb, cats, lengths)
    assert len(df) == 6
    assert {"coverage", "mean_nn_distance", "radius", "category_entropy", "len_mean"} <= set(df.columns)
    row = df[(df.method == "kcenter-embed") & (df.k == 30)].iloc[0]
    assert row.k_used == 20  # the ranking holds only 20 picks
    idx = sels["kcenter-embed"].ranking[:20]
    assert row.covered == neuron_coverage(bits, 70, idx)["covered"]
    assert row.radius == pytest.approx(text_diversity(emb, idx)["radius"])
    assert row.mean_nn_distance == pytest.approx(text_diversity(emb, idx)["mean_nn_distance"])
    assert row.category_entropy == pytest.approx(category_stats(cats, idx)["category_entropy"])
    assert row.len_mean == pytest.approx(length_stats(lengths, idx)["len_mean"])
    # k-center radius at its own picks equals the radius it recorded
    r10 = df[(df.method == "kcenter-embed") & (df.k == 10)].iloc[0].radius
    assert r10 == pytest.approx(sels["kcenter-embed"].coverage[9], abs=1e-5)
    only_text = metrics_table(sels, [5], emb=emb)
    assert "coverage" not in only_text.columns and len(only_text) == 2


def _brute_curves(emb: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean NN distance and radius of every prefix from the full distance matrix (float64)."""
    norms = np.linalg.norm(emb.astype(np.float64), axis=1, keepdims=True)
    unit = np.divide(emb.astype(np.float64), norms, out=np.zeros(emb.shape), where=norms > 0)
    dist = np.clip(1 - unit @ unit.T, 0, 2)
    mean_nn, radius = [], []
    for k in range(1, len(order) + 1):
        sub = dist[np.ix_(order[:k], order[:k])].copy()
        np.fill_diagonal(sub, np.inf)
        mean_nn.append(sub.min(axis=1).mean() if k >= 2 else np.nan)
        near = dist[:, order[:k]].min(axis=1)
        near[order[:k]] = 0.0  # a pick serves itself (even an all-zero row, 1 from everything else)
        radius.append(near.max())
    return np.array(mean_nn), np.array(radius)


def test_diversity_curves_equal_brute_force_at_every_prefix():
    # clustered points (the pruning bound rules most of them out) plus a zero row and a duplicate
    rng = np.random.default_rng(8)
    centres = rng.normal(size=(6, 40))
    emb = (centres[rng.integers(0, 6, size=240)] + 0.3 * rng.normal(size=(240, 40))).astype(np.float32)
    emb[7] = 0.0
    emb[9] = emb[3]
    order = rng.permutation(240)[:160]
    curves = diversity_curves(emb, order)
    mean_nn, radius = _brute_curves(emb, order)
    assert len(curves) == 160 and math.isnan(curves.mean_nn[0]) and math.isnan(curves.at(1)[0])
    np.testing.assert_allclose(curves.mean_nn[1:], mean_nn[1:], atol=1e-5)
    np.testing.assert_allclose(curves.radius, radius, atol=1e-5)
    assert np.all(np.diff(curves.radius) <= 1e-12), "the radius never grows along a ranking"
    # one structure serves many rankings and gives the same curves
    space = text_space(emb)
    again = diversity_curves(space, order, upto=50)
    np.testing.assert_array_equal(again.radius, curves.radius[:50])
    np.testing.assert_array_equal(again.mean_nn, curves.mean_nn[:50])


def test_metrics_table_reads_precomputed_curves_without_measuring():
    rng = np.random.default_rng(9)
    emb = rng.normal(size=(80, 8)).astype(np.float32)
    sels = {"random": select_random(80, 60), "kcenter-embed": select_kcenter_embed(emb, 60)}
    measured = metrics_table(sels, [7, 33], emb=emb)
    curves = {m: diversity_curves(emb, sel.ranking) for m, sel in sels.items()}
    read = metrics_table(sels, [7, 33], diversity=curves)
    for col in ("mean_nn_distance", "radius"):
        np.testing.assert_array_equal(read[col].to_numpy(), measured[col].to_numpy())
    # the k-center radius it recorded is the radius measured along its own ranking
    np.testing.assert_allclose(curves["kcenter-embed"].radius, sels["kcenter-embed"].coverage, atol=1e-6)


def test_coverage_counts_of_every_prefix_by_hand_and_read_back_by_the_table():
    # FIRED: row 0 {0}, row 1 {0,1}, row 2 {2,3}, row 3 {3,4}; neuron 5 never fires
    assert coverage_counts(BITS, [3, 1, 0, 2]).tolist() == [2, 4, 4, 5]
    assert coverage_counts(BITS, [3, 1, 0, 2], upto=2).tolist() == [2, 4]
    assert coverable_count(BITS) == 5
    # across the 1,024-row blocks of the running OR, against a direct union per prefix
    rng = np.random.default_rng(3)
    fired = rng.random((2500, 150)) < 0.01
    order = rng.permutation(2500)[:2100]
    direct = [int(fired[order[: i + 1]].any(axis=0).sum()) for i in range(0, 2100, 97)]
    assert coverage_counts(pack_bits(fired), order)[::97].tolist() == direct
    # a table from precomputed counts reads no fingerprint row and equals the measured one
    sels = {"a": sel("a", [3, 1, 0, 2], 4), "b": sel("b", [2, 0], 4)}
    counts = {m: coverage_counts(BITS, s.ranking) for m, s in sels.items()}
    measured = metrics_table(sels, [1, 2, 3], bits=BITS, n_neurons=6)
    read = metrics_table(sels, [1, 2, 3], n_neurons=6, coverage=counts, coverable=5,
                         categories=["x", "y", "x", None])
    for col in ("covered", "coverable", "coverage", "coverage_all", "k_used"):
        np.testing.assert_array_equal(read[col].to_numpy(), measured[col].to_numpy())
    assert read["covered"].tolist() == [2, 4, 4, 2, 3, 3]  # b has only 2 picks: its 3rd budget uses 2
    with pytest.raises(ValueError, match="no coverage counts"):
        coverage_curves(sels, None, 6, [2], counts={"a": counts["a"]}, coverable=5)


def test_diversity_curves_cached_on_disk_equal_the_computed_ones(tmp_path):
    from mads_core.pipeline import diversity_curves_cached

    rng = np.random.default_rng(4)
    emb = rng.normal(size=(300, 16)).astype(np.float32)
    order = rng.permutation(300)[:120]
    assert diversity_curves_cached(emb, order, cache=tmp_path, compute=False) is None
    stored = diversity_curves_cached(emb, order, cache=tmp_path)
    read = diversity_curves_cached(emb, order, cache=tmp_path, compute=False)
    direct = diversity_curves(emb, order)
    for got in (stored, read):
        np.testing.assert_array_equal(got.radius, direct.radius)
        np.testing.assert_array_equal(got.mean_nn, direct.mean_nn)
    # another ranking (or other embeddings) is another entry
    assert diversity_curves_cached(emb, order[::-1], cache=tmp_path, compute=False) is None
    assert diversity_curves_cached(emb + 1, order, cache=tmp_path, compute=False) is None
