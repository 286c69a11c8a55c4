"""Baseline selectors on cases small enough to work out by hand, and against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from mads_core.data.loader import Dataset
from mads_core.select.baselines import (
    BASELINES,
    kcenter_greedy,
    kcenter_reference,
    select_kcenter_act,
    select_kcenter_embed,
    select_kcenter_tfidf,
    select_kmeans_embed,
    select_random,
    tfidf_matrix,
)
from mads_core.select.bitops import pack_bits
from mads_core.select.greedy import Selection


def text_dataset(texts: list[str]) -> Dataset:
    """A table Dataset whose samples are single user turns (display_text = the text itself)."""
    n = len(texts)
    return Dataset(
        name="texts", format="table", ids=tuple(f"t{i}" for i in range(n)),
        turns=tuple((("user", t),) for t in texts), categories=(None,) * n, sources=("hand",) * n,
        records=tuple({"id": f"t{i}", "text": t} for i, t in enumerate(texts)),
    )


def assert_selection(sel: Selection, n: int, k: int) -> None:
    assert isinstance(sel, Selection)
    assert sel.n == n and len(sel.ranking) == k == len(sel.gains) == len(sel.coverage) == len(sel.rounds)
    assert sel.ranking.dtype == np.int64 and sel.gains.dtype == np.float64 and sel.rounds.dtype == np.int32
    assert len(set(sel.ranking.tolist())) == k, "picks must be distinct"
    assert sel.settings_hash


# ---------------------------------------------------------------- k-center


def test_kcenter_five_points_on_a_line_euclidean():
    # 0 1 2 3 4: the mean is 2 -> start at row 2; farthest are 0 and 4 (distance 2), tie -> 0;
    # then 4 (distance 2 from {2, 0}); then 1 and 3 (distance 1), tie -> 1; then 3.
    sel = kcenter_greedy(np.arange(5.0)[:, None], 5, metric="euclidean")
    assert_selection(sel, 5, 5)
    assert sel.ranking.tolist() == [2, 0, 4, 1, 3]
    assert math.isnan(sel.gains[0])
    assert sel.gains[1:].tolist() == [2.0, 2.0, 1.0, 1.0]
    # coverage = radius after each pick: max distance of any point to its nearest pick
    assert sel.coverage.tolist() == [2.0, 2.0, 1.0, 1.0, 0.0]


def test_kcenter_budget_is_a_prefix_and_fraction_budget():
    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [10.0]])
    full = kcenter_greedy(x, 6, metric="euclidean")
    assert kcenter_greedy(x, 3, metric="euclidean").ranking.tolist() == full.ranking[:3].tolist()
    assert len(kcenter_greedy(x, 0.5, metric="euclidean").ranking) == 3


def test_kcenter_cosine_ties_go_to_lowest_index():
    # unit-row mean points at 45 degrees -> start at row 2 ([1, 1]); rows 0 and 1 are both
    # 1 - 1/sqrt(2) away: tie -> row 0 first; row 1 is then still 1 - 1/sqrt(2) from row 2.
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    sel = kcenter_greedy(x, 3, metric="cosine")
    assert sel.ranking.tolist() == [2, 0, 1]
    assert sel.gains[1:] == pytest.approx([1 - 1 / math.sqrt(2)] * 2)


def test_kcenter_explicit_start_and_errors():
    x = np.arange(5.0)[:, None]
    assert kcenter_greedy(x, 2, metric="euclidean", start=4).ranking.tolist() == [4, 0]
    with pytest.raises(ValueError, match="metric"):
        kcenter_greedy(x, 2, metric="manhattan")
    with pytest.raises(ValueError, match="start"):
        kcenter_greedy(x, 2, start=7)
    with pytest.raises(ValueError, match="budget"):
        kcenter_greedy(x, 0)
    with pytest.raises(ValueError, match="budget"):
        kcenter_greedy(x, 6)


def test_kcenter_sparse_equals_dense_and_brute_force():
    rng = np.random.default_rng(3)
    x = rng.random((40, 12)) * (rng.random((40, 12)) < 0.4)
    dense = kcenter_greedy(x, 15, metric="cosine")
    sparse = kcenter_greedy(sp.csr_matrix(x), 15, metric="cosine")
    assert dense.ranking.tolist() == sparse.ranking.tolist()
    # brute force with the full distance matrix
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    dist = np.clip(1 - unit @ unit.T, 0, 2)
    mean = unit.mean(axis=0)
    picks = [int(np.argmin(1 - unit @ mean / np.linalg.norm(mean)))]
    while len(picks) < 15:
        mind = dist[:, picks].min(axis=1)
        mind[picks] = -1
        picks.append(int(np.argmax(mind)))
    assert dense.ranking.tolist() == picks


def test_kcenter_tfidf_by_hand_with_duplicates():
    # rows 0 and 1 are identical, 2 and 3 share no word with anything: the mean is closest to
    # the duplicated pair -> start at 0; then 2 and 3 (distance 1), then the duplicate (distance 0).
    ds = text_dataset(["apple banana", "apple banana", "cherry date", "elderberry fig"])
    sel = select_kcenter_tfidf(ds, 4)
    assert_selection(sel, 4, 4)
    assert sel.method == "kcenter-tfidf"
    assert sel.ranking.tolist() == [0, 2, 3, 1]
    assert sel.gains[1:] == pytest.approx([1.0, 1.0, 0.0], abs=1e-6)
    assert sel.settings["tfidf"]["sublinear_tf"] is True


def test_tfidf_matrix_handles_text_without_tokens():
    x = tfidf_matrix(["!!!", "?"])
    assert x.shape[0] == 2 and x.nnz == 0
    sel = select_kcenter_tfidf(text_dataset(["!!!", "?", "..."]), 3)
    assert sel.ranking.tolist() == [0, 1, 2]  # every distance is 1: index order


def test_kcenter_embed_is_cosine_kcenter():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 8)).astype(np.float32)
    sel = select_kcenter_embed(emb, 10)
    assert sel.method == "kcenter-embed"
    assert sel.ranking.tolist() == kcenter_greedy(emb, 10, metric="cosine").ranking.tolist()
    assert np.all(np.diff(sel.coverage) <= 1e-12), "the radius never grows"
    assert np.all(np.diff(sel.gains[1:]) <= 1e-6), "farthest-first gains never grow"


def _kcenter_cases():
    """Random dense rows with the hard parts: all-zero rows, duplicates, integer (tied) values."""
    rng = np.random.default_rng(11)
    for trial in range(12):
        n, d = int(rng.integers(20, 260)), int(rng.integers(1, 90))
        x = rng.standard_normal((n, d)).astype(np.float32 if trial % 2 else np.float64)
        if trial % 3 == 0:
            x[rng.integers(0, n, size=n // 5)] = 0.0
        if trial % 4 == 0:
            x[: n // 3] = x[rng.integers(0, n, size=n // 3)]
        if trial % 5 == 0:
            x = np.round(x)
        yield trial, x, int(rng.integers(1, n + 1)), rng


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_pruned_kcenter_equals_brute_force_reference(metric):
    # the pruned dense kernel (projection bound) must make every pick, gain and radius of the
    # unpruned reference, ties to the lowest index included
    for trial, x, k, _ in _kcenter_cases():
        fast, (ranking, gains, radius) = kcenter_greedy(x, k, metric), kcenter_reference(x, k, metric)
        assert fast.ranking.tolist() == ranking.tolist(), trial
        np.testing.assert_array_equal(fast.gains, gains)
        np.testing.assert_array_equal(fast.coverage, radius)


def test_kcenter_reference_is_plain_farthest_first():
    # the reference itself against the full distance matrix (float64, well separated values)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 6))
    ranking, gains, radius = kcenter_reference(x, 20, "euclidean")
    dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=2))
    picks = [int(np.argmin(np.sqrt(((x - x.mean(axis=0)) ** 2).sum(axis=1))))]
    while len(picks) < 20:
        mind = dist[:, picks].min(axis=1)
        mind[picks] = -1
        picks.append(int(np.argmax(mind)))
    assert ranking.tolist() == picks
    assert radius[-1] == pytest.approx(dist[:, picks].min(axis=1).max())


# ----------------------------------------------------------------- random


def test_random_prefix_seed_and_fraction():
    a, b = select_random(100, 7, seed=1), select_random(100, 30, seed=1)
    assert_selection(b, 100, 30)
    assert a.ranking.tolist() == b.ranking[:7].tolist()
    assert select_random(100, 7, seed=2).ranking.tolist() != a.ranking.tolist()
    assert len(select_random(100, 0.25).ranking) == 25
    assert np.isnan(a.gains).all()
    with pytest.raises(ValueError):
        select_random(10, -1)


# ----------------------------------------------------------------- k-means


def test_kmeans_one_pick_per_blob_ordered_by_size():
    # blobs of 2, 3 and 5 points (in that row order); the member nearest each centroid is
    # the blob's centre point (rows 2 and 5); the 2-point blob's members tie -> row 0.
    x = np.array([
        [0, 100], [0, 101],                               # rows 0-1: size 2
        [100, 0], [101, 0], [99, 0],                      # rows 2-4: size 3, centre row 2
        [0, 0], [1, 0], [-1, 0], [0, 1], [0, -1],         # rows 5-9: size 5, centre row 5
    ], dtype=np.float32)
    sel = select_kmeans_embed(x, 3, seed=0)
    assert_selection(sel, 10, 3)
    assert sel.ranking.tolist() == [5, 2, 0]  # by cluster size, largest first
    assert sel.gains.tolist() == [5.0, 3.0, 2.0]
    assert sel.coverage.tolist() == pytest.approx([0.5, 0.8, 1.0])
    assert sel.settings["algorithm"] == "lloyd"
    assert select_kmeans_embed(x, 3, seed=0).ranking.tolist() == sel.ranking.tolist()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_kmeans_duplicates_give_distinct_picks():
    # four identical rows and k = 2: one cluster holds all four, the other is empty and takes
    # the nearest free row (lowest index) -> rows 0 and 1, sizes 4 and 0.
    x = np.ones((4, 3), dtype=np.float32)
    sel = select_kmeans_embed(x, 2)
    assert sel.ranking.tolist() == [0, 1]
    assert sel.gains.tolist() == [4.0, 0.0]


def test_kmeans_budget_equal_to_n_takes_every_row():
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    sel = select_kmeans_embed(x, 6)
    assert sorted(sel.ranking.tolist()) == list(range(6))
    assert sel.ranking.tolist() == list(range(6))  # all sizes 1: index order


# --------------------------------------------------- k-center on fingerprints


TINY = np.array([[0b0011], [0b0111], [0b1100], [0b0000], [0b1111]], dtype=np.uint64)


def test_kcenter_act_jaccard_by_hand():
    # firing frequencies p = (.6, .6, .6, .4); row score sum(1 - 2p) over its bits is lowest
    # for row 1 (0111) -> start. Jaccard from row 1: row 3 (empty) is 1 away -> next; then
    # row 2 (1100, 3/4 from row 1), then row 0 (1/3 from row 1), then row 4 (1/4 from row 1).
    sel = select_kcenter_act(TINY, 4, 5, metric="jaccard")
    assert_selection(sel, 5, 5)
    assert sel.ranking.tolist() == [1, 3, 2, 0, 4]
    assert sel.gains[1:] == pytest.approx([1.0, 0.75, 1 / 3, 0.25])
    assert sel.n_neurons == 4


def test_kcenter_act_hamming_by_hand():
    # Hamming / 4 from row 1 (0111): rows 2 and 3 are both 3/4 away, tie -> row 2; then row 3
    # (min(3/4, 2/4) = 1/2); rows 0 and 4 are both 1/4 from row 1: tie -> row 0, then row 4.
    sel = select_kcenter_act(TINY, 4, 5, metric="hamming")
    assert sel.ranking.tolist() == [1, 2, 3, 0, 4]
    assert sel.gains[1:] == pytest.approx([0.75, 0.5, 0.25, 0.25])


def _brute_kcenter_bits(fired: np.ndarray, k: int, metric: str) -> list[int]:
    a = fired.astype(np.int64)
    inter = a @ a.T
    counts = a.sum(axis=1)
    union = counts[:, None] + counts[None, :] - inter
    if metric == "jaccard":
        dist = 1 - np.divide(inter, union, out=np.ones(inter.shape), where=union > 0)
    else:
        dist = (union - inter) / fired.shape[1]
    p = a.mean(axis=0)
    picks = [int(np.argmin(np.abs(a - p).sum(axis=1)))]
    while len(picks) < k:
        mind = dist[:, picks].min(axis=1)
        mind[picks] = -1
        picks.append(int(np.argmax(mind)))
    return picks


@pytest.mark.parametrize("metric", ["jaccard", "hamming"])
def test_kcenter_act_matches_brute_force_over_several_words(metric):
    rng = np.random.default_rng(7)
    fired = rng.random((60, 150)) < rng.uniform(0.02, 0.3, size=(60, 1))  # 3 words, padded
    fired[5] = fired[9]  # a duplicate row
    sel = select_kcenter_act(pack_bits(fired), 150, 25, metric=metric)
    assert sel.ranking.tolist() == _brute_kcenter_bits(fired, 25, metric)


def test_kcenter_act_validates_input():
    with pytest.raises(ValueError, match="metric"):
        select_kcenter_act(TINY, 4, 2, metric="cosine")
    with pytest.raises(ValueError, match="words"):
        select_kcenter_act(TINY, 130, 2)
    with pytest.raises(ValueError, match="uint64"):
        select_kcenter_act(TINY.astype(np.int64), 4, 2)


def test_registry_names_and_kinds():
    assert list(BASELINES) == ["random", "kcenter-tfidf", "kcenter-embed", "kmeans-embed", "kcenter-act"]
    for name, entry in BASELINES.items():
        assert entry.name == name and callable(entry.fn) and entry.description
        assert entry.needs in ("n", "dataset", "embeddings", "bits")
    assert BASELINES["kcenter-act"].fn(TINY, 4, 2).method == "kcenter-act"


# ------------------------------------------------------------ ranking cache


def test_rankings_are_cached_on_disk_and_read_back_equal(tmp_path, monkeypatch):
    from mads_core import pipeline

    rng = np.random.default_rng(6)
    texts = [f"w{rng.integers(0, 30)} w{rng.integers(0, 30)} common words here" for _ in range(40)]
    ds = text_dataset(texts)
    emb = rng.normal(size=(40, 8)).astype(np.float32)
    computed = []
    real = pipeline.run_method

    def counting(method, dataset, fingerprints, budget, *args, **kwargs):
        computed.append((method, budget))
        return real(method, dataset, fingerprints, budget, *args, **kwargs)

    monkeypatch.setattr(pipeline, "run_method", counting)
    for method in ("random", "kcenter-tfidf", "kcenter-embed", "kmeans-embed"):
        fresh = real(method, ds, None, 12, embeddings=emb, seed=3)
        first = pipeline.run_method_cached(method, ds, None, 12, cache=tmp_path, embeddings=emb, seed=3)
        again = pipeline.run_method_cached(method, ds, None, 12, cache=tmp_path, embeddings=emb, seed=3)
        for sel in (first, again):
            for name in ("ranking", "gains", "coverage", "rounds"):
                np.testing.assert_array_equal(getattr(sel, name), getattr(fresh, name))
            assert sel.settings_hash == fresh.settings_hash and sel.n == fresh.n and sel.method == method
    assert computed == [(m, 12) for m in ("random", "kcenter-tfidf", "kcenter-embed", "kmeans-embed")]
    # k-means: one clustering per budget, each computed once; other seeds or embeddings are other entries
    pipeline.run_method_cached("kmeans-embed", ds, None, 5, cache=tmp_path, embeddings=emb, seed=3)
    pipeline.run_method_cached("kmeans-embed", ds, None, 5, cache=tmp_path, embeddings=emb, seed=3)
    pipeline.run_method_cached("kmeans-embed", ds, None, 5, cache=tmp_path, embeddings=emb, seed=4)
    pipeline.run_method_cached("kmeans-embed", ds, None, 5, cache=tmp_path, embeddings=emb[::-1].copy(), seed=3)
    assert computed[4:] == [("kmeans-embed", 5)] * 3
    assert len(list((tmp_path / "rankings").iterdir())) == 7


# ------------------------------------------------------- scale paths (issue 14)


def _brute_farthest_first(x: np.ndarray, k: int, start: int) -> list[int]:
    """Farthest-first on unit rows with the full float64 cosine distance matrix (no kernel at all)."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = 1.0 - unit.astype(np.float64) @ unit.T.astype(np.float64)
    picks = [start]
    while len(picks) < k:
        mind = dist[:, picks].min(axis=1)
        mind[picks] = -1
        picks.append(int(np.argmax(mind)))  # lowest index on ties
    return picks


def test_dense_kernel_with_a_real_projection_equals_reference_and_brute_force():
    # d > the pruning dims, so rows are bounded through a projection plus the residual norm;
    # duplicated rows make exact ties, which must go to the lowest index
    from mads_core.select.baselines import _RowDistance
    from mads_core.select.farthest import DenseSpace

    rng = np.random.default_rng(21)
    centres = rng.standard_normal((6, 40))
    x = (centres[rng.integers(0, 6, 300)] + 0.3 * rng.standard_normal((300, 40))).astype(np.float64)
    x[200:230] = x[:30]
    unit = _RowDistance(x, "cosine").X  # the unit rows kcenter_reference measures
    for dims in (4, 8, 12, 24):
        space = DenseSpace(unit, "cosine", dims=dims)
        ranking, gains, radius = space.farthest_first(120, 5)
        ref = kcenter_reference(x, 120, "cosine", start=5)
        assert ranking.tolist() == ref[0].tolist(), dims
        np.testing.assert_array_equal(gains, ref[1])
        np.testing.assert_array_equal(radius, ref[2])
        assert space.exact_distances < 120 * 300, "the bound must rule some rows out"
    # well separated values: the float64 brute force agrees pick for pick (duplicates tie)
    assert ranking[:60].tolist() == _brute_farthest_first(x, 60, 5)
    order = {r: i for i, r in enumerate(ranking.tolist())}
    for r in range(30):  # rows 200..229 copy rows 0..29: the lower index always goes first
        assert r + 200 not in order or order[r] < order[r + 200]


def test_kcenter_embed_above_the_pruning_dims_equals_reference():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((260, 150)).astype(np.float32)  # 150 > KCENTER_PRUNE_DIMS = 128
    x[100:120] = x[:20]
    x[7] = 0.0  # a zero row: cosine distance 1 to everything
    sel = select_kcenter_embed(x, 200)
    ranking, gains, radius = kcenter_reference(x, 200, "cosine")
    assert sel.ranking.tolist() == ranking.tolist()
    np.testing.assert_array_equal(sel.gains, gains)
    np.testing.assert_array_equal(sel.coverage, radius)


def _topic_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(300)]
    return [" ".join(rng.choice(vocab[(i % 7) * 40:(i % 7) * 40 + 60], size=8)) for i in range(n)]


def test_kcenter_tfidf_reduced_is_deterministic_and_is_kcenter_on_the_svd_rows():
    from mads_core.select.baselines import tfidf_reduce

    ds = text_dataset(_topic_texts(120, 2))
    a = select_kcenter_tfidf(ds, 30, reduce=16)
    b = select_kcenter_tfidf(ds, 30, reduce=16)
    for name in ("ranking", "gains", "coverage"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.settings["reduce"] == {"method": "TruncatedSVD", "components": 16, "n_iter": 5, "seed": 0}
    rows = tfidf_reduce(tfidf_matrix(_topic_texts(120, 2)), 16)
    assert rows.shape == (120, 16) and rows.dtype == np.float32
    assert a.ranking.tolist() == kcenter_greedy(rows, 30, "cosine").ranking.tolist()
    assert select_kcenter_tfidf(ds, 30, reduce=16, seed=1).settings["reduce"]["seed"] == 1


def test_kcenter_tfidf_auto_is_exact_below_the_threshold():
    ds = text_dataset(_topic_texts(80, 3))
    auto, exact = select_kcenter_tfidf(ds, 20), select_kcenter_tfidf(ds, 20, reduce=None)
    assert auto.ranking.tolist() == exact.ranking.tolist() and "reduce" not in auto.settings
    assert auto.settings_hash == exact.settings_hash
    # more components than terms or samples: nothing to reduce, the exact path
    assert select_kcenter_tfidf(ds, 20, reduce=10_000).ranking.tolist() == exact.ranking.tolist()
    with pytest.raises(ValueError, match="reduce"):
        select_kcenter_tfidf(ds, 20, reduce=0)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_kmeans_large_path_is_deterministic_for_a_seed(monkeypatch):
    # the PCA + Lloyd path (used above KMEANS_REDUCE_MIN_N rows), forced on a small input
    from mads_core.select import baselines

    monkeypatch.setattr(baselines, "KMEANS_REDUCE_MIN_N", 100)
    monkeypatch.setattr(baselines, "KMEANS_PCA_DIMS", 8)
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((12, 20))[rng.integers(0, 12, 400)] + 0.2 * rng.standard_normal((400, 20)))
    x = x.astype(np.float32)
    a, b = select_kmeans_embed(x, 30, seed=4), select_kmeans_embed(x, 30, seed=4)
    assert a.settings["algorithm"] == "pca8-lloyd-random"
    for name in ("ranking", "gains", "coverage"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert_selection(a, 400, 30)
    assert a.gains.sum() == 400  # every sample in exactly one cluster
    assert np.all(np.diff(a.gains) <= 0), "largest clusters first"
    assert select_kmeans_embed(x, 30, seed=5).ranking.tolist() != a.ranking.tolist()
