"""MADS selection: the lazy packed greedy equals the brute-force greedy, and the result API."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mads_core.config import SelectConfig
from mads_core.select import bitops
from mads_core.select.greedy import IDF_SCALE, Selection, naive_greedy, resolve_budget, select_mads

FIELDS = ("ranking", "gains", "coverage", "rounds", "newly_ptr", "newly_ids", "neurons_covered")


def assert_same(a: Selection, b: Selection) -> None:
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        assert np.array_equal(x, y), f"{name}: {x} != {y}"
    assert a.filler_from == b.filler_from


def planes_from(fired: np.ndarray) -> np.ndarray:
    """(P, N, D) bool planes -> packed (P, N, W)."""
    return bitops.pack_bits(fired)


def fast(fired: np.ndarray, budget, config: SelectConfig, layer_offsets=None) -> Selection:
    fired = fired if fired.ndim == 3 else fired[None]
    packed = planes_from(fired)
    return select_mads(packed[0], fired.shape[2], budget, config, planes=packed, layer_offsets=layer_offsets)


def random_planes(rng: np.random.Generator, n: int, d: int, n_planes: int, pool: int | None = None):
    """Nested bool planes; rows drawn from a small pool when ``pool`` is set (many ties)."""
    probs = rng.uniform(0.0, 0.6, d) ** 2
    base = rng.random((pool or n, d)) < probs
    if pool:
        base = base[rng.integers(0, pool, n)]
    out = np.zeros((n_planes, n, d), dtype=bool)
    out[0] = base
    for j in range(1, n_planes):
        out[j] = out[j - 1] & (rng.random((n, d)) < 0.5)
    return out


# --------------------------------------------------------------------------- hand-checkable

# 4 samples x 10 neurons: s0={0,1,2} s1={2,3,4,5} s2={5,6} s3={6,7,8,9}
TINY = np.zeros((4, 10), dtype=bool)
for _row, _ids in enumerate(([0, 1, 2], [2, 3, 4, 5], [5, 6], [6, 7, 8, 9])):
    TINY[_row, _ids] = True


def test_tiny_plain_greedy_by_hand() -> None:
    # s1 and s3 tie at 4 -> lower index s1; then s3 adds {6,7,8,9}; s0 adds {0,1}; s2 adds nothing.
    sel = fast(TINY, 4, SelectConfig(continuation="none"))
    assert sel.ranking.tolist() == [1, 3, 0, 2]
    assert sel.gains.tolist() == [4, 4, 2, 0]
    assert sel.coverage.tolist() == [4, 8, 10, 10]
    assert sel.filler_from == 3
    assert sel.neurons_covered.tolist() == [4, 8, 10, 10]
    assert sel.newly_covered(0).tolist() == [2, 3, 4, 5]
    assert sel.newly_covered(1).tolist() == [6, 7, 8, 9]
    assert sel.newly_covered(2).tolist() == [0, 1]
    assert sel.newly_covered(3).tolist() == []


def test_tiny_rounds_by_hand() -> None:
    # After 3 picks all 10 neurons are covered; s2 still fires neurons -> round 1 starts.
    sel = fast(TINY, 4, SelectConfig(continuation="rounds"))
    assert sel.ranking.tolist() == [1, 3, 0, 2]
    assert sel.gains.tolist() == [4, 4, 2, 2]
    assert sel.rounds.tolist() == [0, 0, 0, 1]
    assert sel.newly_covered(-1).tolist() == [5, 6]
    assert sel.filler_from == 4


def test_tiny_mcover_by_hand() -> None:
    # m=2: s1 (4, tie with s3), s3 (4), s0 (3: 0,1 new, 2 seen once), s2 (2: 5 and 6 seen once).
    sel = fast(TINY, 4, SelectConfig(continuation="mcover", m=2))
    assert sel.ranking.tolist() == [1, 3, 0, 2]
    assert sel.gains.tolist() == [4, 4, 3, 2]
    assert sel.newly_covered(2).tolist() == [0, 1, 2]


def test_tiny_idf_by_hand() -> None:
    # N=4: a neuron fired once weighs round(1024 ln 4) = 1420, twice round(1024 ln 2) = 710.
    assert round(1024 * math.log(4)) == 1420 and round(1024 * math.log(2)) == 710
    sel = fast(TINY, 4, SelectConfig(continuation="rounds", weighting="idf"))
    assert sel.ranking.tolist() == [3, 1, 0, 2]
    assert (sel.gains * IDF_SCALE).tolist() == [710 + 3 * 1420, 710 + 1420 + 1420 + 710, 2 * 1420, 1420]
    assert sel.rounds.tolist() == [0, 0, 0, 1]


def test_tiny_min_support_by_hand() -> None:
    # Only neurons fired by >= 2 samples count: 2, 5, 6.
    sel = fast(TINY, 4, SelectConfig(continuation="rounds", min_support=2))
    assert sel.ranking.tolist() == [1, 2, 0, 3]
    assert sel.gains.tolist() == [2, 1, 1, 1]
    assert sel.rounds.tolist() == [0, 0, 1, 1]


def test_tiny_max_share_by_hand() -> None:
    # max_neuron_share=0.25 keeps neurons fired by at most 1 of 4 samples: 0,1,3,4,7,8,9.
    sel = fast(TINY, 4, SelectConfig(continuation="none", max_neuron_share=0.25))
    assert sel.ranking.tolist() == [3, 0, 1, 2]
    assert sel.gains.tolist() == [3, 2, 2, 0]


def test_tiny_states_by_hand() -> None:
    upper = np.zeros_like(TINY)
    upper[2, [5, 6]] = True  # s2 fires 5 and 6 above both higher levels
    sel = fast(np.stack([TINY, upper, upper]), 4, SelectConfig(continuation="states"))
    # s2 counts 2 neurons x 3 levels = 6; then s0, s1, s3 tie at 3 -> s0; s3 (3) beats s1 (2).
    assert sel.ranking.tolist() == [2, 0, 3, 1]
    assert sel.gains.tolist() == [6, 3, 3, 2]
    assert sel.newly_covered(0).tolist() == [5, 6, 15, 16, 25, 26]  # plane * 10 + neuron
    assert sel.neurons_covered.tolist() == [2, 5, 8, 10]


def test_tiny_layer_subset_by_hand() -> None:
    # Two "layers": neurons 0-4 and 5-9; count only the second. s3 (4), then s1/s2 tie at 1 -> s1.
    sel = fast(TINY, 4, SelectConfig(continuation="none", layer_subset=(1,)), layer_offsets=(0, 5, 10))
    assert sel.ranking.tolist() == [3, 1, 0, 2]
    assert sel.gains.tolist() == [4, 1, 0, 0]
    assert sel.filler_from == 2
    assert sel.neurons_covered.tolist() == [4, 8, 10, 10]  # plain union, all layers


# --------------------------------------------------------------------------- equals the brute force

CONFIGS = st.builds(
    SelectConfig,
    continuation=st.sampled_from(["rounds", "mcover", "states", "none"]),
    m=st.integers(1, 3),
    weighting=st.sampled_from(["uniform", "idf"]),
    max_neuron_share=st.sampled_from([1.0, 0.75, 0.5, 0.3]),
    min_support=st.integers(1, 3),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 14),
    d=st.integers(1, 150),
    n_planes=st.integers(1, 3),
    pool=st.sampled_from([None, 1, 2, 3]),
    config=CONFIGS,
    data=st.data(),
)
def test_equals_naive_greedy(seed, n, d, n_planes, pool, config, data) -> None:
    rng = np.random.default_rng(seed)
    fired = random_planes(rng, n, d, n_planes, pool)
    budget = data.draw(st.integers(1, n))
    offsets = None
    if data.draw(st.booleans()) and d >= 2:
        cut = data.draw(st.integers(1, d - 1))
        offsets = (0, cut, d)
        config = SelectConfig(**{**config.to_dict(), "layer_subset": (data.draw(st.integers(0, 1)),)})
    assert_same(fast(fired, budget, config, offsets), naive_greedy(fired, budget, config, offsets))


@pytest.mark.parametrize("weighting", ["uniform", "idf"])
@pytest.mark.parametrize("continuation", ["rounds", "none", "mcover", "states"])
def test_equals_naive_on_wider_rows(weighting, continuation) -> None:
    """Hundreds of words per row: exercises compaction and both weighted-gain routes."""
    rng = np.random.default_rng(7)
    fired = random_planes(rng, 120, 1500, 2)
    cfg = SelectConfig(continuation=continuation, weighting=weighting, m=2)
    assert_same(fast(fired, 120, cfg), naive_greedy(fired, 120, cfg))


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_parallel_batches_give_the_same_picks(monkeypatch, batch_size) -> None:
    """Force the multi-threaded re-evaluation batches from the first stale row on."""
    monkeypatch.setattr(bitops, "BATCH_MIN", 0)
    monkeypatch.setattr(bitops, "BATCH_SIZE", batch_size)
    monkeypatch.setattr(bitops, "n_threads", lambda: 3)
    rng = np.random.default_rng(8)
    fired = random_planes(rng, 90, 700, 2, pool=30)
    for cfg in (SelectConfig(), SelectConfig(continuation="states", weighting="idf"),
                SelectConfig(continuation="mcover", m=3)):
        assert_same(fast(fired, 90, cfg), naive_greedy(fired, 90, cfg))


def test_many_exact_ties_resolve_to_lowest_index() -> None:
    fired = np.zeros((6, 8), dtype=bool)
    fired[[1, 3, 5], :4] = True  # three identical rows
    fired[[0, 2, 4], 4:] = True  # three identical rows, same gain
    for cont in ("none", "rounds"):
        sel = fast(fired, 6, SelectConfig(continuation=cont))
        assert sel.ranking.tolist()[:2] == [0, 1]
        assert_same(sel, naive_greedy(fired, 6, SelectConfig(continuation=cont)))
    assert fast(fired, 6, SelectConfig(continuation="rounds")).ranking.tolist() == [0, 1, 2, 3, 4, 5]


# --------------------------------------------------------------------------- properties of the result


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), config=CONFIGS)
def test_prefix_monotone_deterministic(seed, config) -> None:
    rng = np.random.default_rng(seed)
    fired = random_planes(rng, 30, 200, 2)
    full = fast(fired, 30, config)
    assert np.all(np.diff(full.coverage) >= 0)
    assert np.all(np.diff(full.neurons_covered) >= 0)
    assert np.all(full.gains >= 0)
    for k in (1, 7, 19):
        part = fast(fired, k, config)
        assert np.array_equal(part.ranking, full.ranking[:k])
        assert np.array_equal(part.ranking, full.prefix(k))
        assert np.array_equal(part.gains, full.gains[:k])
        assert np.array_equal(part.rounds, full.rounds[:k])
        assert np.array_equal(part.newly_ids, full.newly_ids[: full.newly_ptr[k]])
    again = fast(fired, 30, config)
    for name in FIELDS:
        assert getattr(again, name).tobytes() == getattr(full, name).tobytes()
    assert sorted(full.ranking.tolist()) == list(range(30))  # a permutation when budget = N


def test_newly_covered_matches_the_bits() -> None:
    rng = np.random.default_rng(3)
    fired = random_planes(rng, 40, 300, 1)[0]
    sel = fast(fired, 40, SelectConfig(continuation="rounds"))
    seen = np.zeros(300, dtype=bool)
    for r, i in enumerate(sel.ranking):
        if r and sel.rounds[r] != sel.rounds[r - 1]:
            seen[:] = False
        new = sel.newly_covered(r)
        expected = np.flatnonzero(fired[i] & ~seen) if r < sel.filler_from else np.zeros(0, dtype=np.int64)
        assert new.tolist() == expected.tolist()
        assert sel.gains[r] == new.size
        seen |= fired[i]
    with pytest.raises(IndexError):
        sel.newly_covered(40)


def test_saturation_none_filler_in_index_order() -> None:
    fired = np.zeros((6, 4), dtype=bool)
    fired[4] = True  # one sample covers everything
    sel = fast(fired, 6, SelectConfig(continuation="none"))
    assert sel.ranking.tolist() == [4, 0, 1, 2, 3, 5]
    assert sel.filler_from == 1
    sel = fast(fired, 6, SelectConfig(continuation="rounds"))  # nothing left to cover either
    assert sel.ranking.tolist() == [4, 0, 1, 2, 3, 5] and sel.filler_from == 1


def test_read_only_memmap_input(tmp_path) -> None:
    rng = np.random.default_rng(11)
    fired = random_planes(rng, 50, 400, 2)
    packed = planes_from(fired)
    np.save(tmp_path / "bits.npy", packed[0])
    np.save(tmp_path / "planes.npy", packed)
    bits = np.load(tmp_path / "bits.npy", mmap_mode="r")
    planes = np.load(tmp_path / "planes.npy", mmap_mode="r")
    assert not bits.flags.writeable
    for cont in ("rounds", "states"):
        cfg = SelectConfig(continuation=cont, weighting="idf")
        assert_same(select_mads(bits, 400, 0.5, cfg, planes=planes), naive_greedy(fired, 25, cfg))


def test_padding_bits_and_layout_are_ignored() -> None:
    rng = np.random.default_rng(5)
    fired = random_planes(rng, 20, 70, 1)[0]
    packed = bitops.pack_bits(fired)
    dirty = packed.copy()
    dirty[:, -1] |= np.uint64(0xFFFF) << np.uint64(32)  # bits of neurons 96.. do not exist
    fortran = np.asfortranarray(packed)
    ref = select_mads(packed, 70, 20)
    assert_same(select_mads(dirty, 70, 20), ref)
    assert_same(select_mads(fortran, 70, 20), ref)


def test_fraction_budget_and_selection_prefix() -> None:
    fired = random_planes(np.random.default_rng(2), 10, 64, 1)[0]
    sel = fast(fired, 0.5, SelectConfig())
    assert len(sel) == 5
    assert sel.prefix(0.2).tolist() == sel.ranking[:2].tolist()
    with pytest.raises(ValueError, match="holds only 5"):
        sel.prefix(6)
    assert sel.settings["continuation"] == "rounds" and sel.settings_hash == SelectConfig().cache_hash()


# --------------------------------------------------------------------------- budgets and errors


@pytest.mark.parametrize(
    ("budget", "n", "k"),
    [(1, 5, 1), (5, 5, 5), (0.5, 10, 5), (1.0, 7, 7), (0.15, 52000, 7800), (0.001, 10, 1), (0.25, 10, 3),
     (3.0, 5, 3), (np.int64(4), 5, 4)],
)
def test_resolve_budget(budget, n, k) -> None:
    assert resolve_budget(budget, n) == k


@pytest.mark.parametrize(
    "budget", [0, -1, 0.0, -0.5, float("nan"), float("inf"), 1.5, 6, 6.0, True, "3", None]
)
def test_resolve_budget_errors(budget) -> None:
    with pytest.raises(ValueError, match="N ?= ?5"):
        resolve_budget(budget, 5)


def test_input_errors() -> None:
    bits = bitops.pack_bits(TINY)
    with pytest.raises(ValueError, match="planes"):
        select_mads(bits, 10, 2, SelectConfig(continuation="states"))
    with pytest.raises(ValueError, match="layer_offsets"):
        select_mads(bits, 10, 2, SelectConfig(layer_subset=(0,)))
    with pytest.raises(ValueError, match="out of range"):
        select_mads(bits, 10, 2, SelectConfig(layer_subset=(2,)), layer_offsets=(0, 5, 10))
    with pytest.raises(ValueError, match="words per row"):
        select_mads(bits, 65, 2)
    with pytest.raises(TypeError, match="uint64"):
        select_mads(bits.astype(np.int64), 10, 2)
    with pytest.raises(ValueError, match="N = 4"):
        select_mads(bits, 10, 5)
    with pytest.raises(ValueError, match="does not match"):
        select_mads(bits, 10, 2, SelectConfig(continuation="states"), planes=np.stack([bits, bits])[:, :3])


@pytest.mark.parametrize(
    "kwargs",
    [dict(continuation="greedy"), dict(weighting="tfidf"), dict(m=0), dict(m=1.5), dict(min_support=0),
     dict(max_neuron_share=0.0), dict(max_neuron_share=1.5), dict(max_neuron_share=float("nan")),
     dict(layer_subset=()), dict(layer_subset=(1, 1)), dict(layer_subset=(-1,)), dict(layer_subset=[0])],
)
def test_select_config_validation(kwargs) -> None:
    with pytest.raises(ValueError):
        SelectConfig(**kwargs)


def test_select_config_hash() -> None:
    base = SelectConfig()
    assert base.cache_hash() == SelectConfig().cache_hash()
    assert base.cache_hash() == SelectConfig(m=5).cache_hash()  # m only matters for m-cover
    mcover = SelectConfig(continuation="mcover", m=2)
    assert mcover.cache_hash() != SelectConfig(continuation="mcover", m=3).cache_hash()
    assert base.cache_hash() != SelectConfig(weighting="idf").cache_hash()


# --------------------------------------------------------------------------- bit kernels


def test_bit_kernels_match_numpy() -> None:
    rng = np.random.default_rng(9)
    fired = rng.random((2, 600, 200)) < rng.uniform(0, 1, 200) ** 3
    packed = bitops.pack_bits(fired)
    assert np.array_equal(bitops.unpack_bits(packed, 200), fired)
    counts = bitops.column_counts(packed, 3)
    assert np.array_equal(counts[:, :200], fired.sum(axis=1)) and not counts[:, 200:].any()
    order = rng.permutation(600)[:50]
    union = bitops.union_curve(packed[0], order, bitops.valid_mask(200, packed.shape[2]))
    assert union.tolist() == np.logical_or.accumulate(fired[0][order], axis=0).sum(axis=1).tolist()


def test_compaction_kernels_agree() -> None:
    """The portable compaction kernel matches the BMI2 one (used where the CPU has pext)."""
    rng = np.random.default_rng(4)
    packed = bitops.pack_bits(rng.random((2, 40, 300)) < 0.3)
    keep = bitops.pack_bits(rng.random((2, 300)) < 0.4)
    offs, n_left = bitops._word_offsets(keep)
    n_words = -(-n_left // 64)
    alive = rng.random(40) < 0.8
    soft = bitops._compact_rows_soft(packed, keep, offs, alive, n_words)
    expected = np.zeros((1, 40, n_words * 64), dtype=bool)
    kept = bitops.unpack_bits(keep, 300)
    rows = bitops.unpack_bits(packed, 300)
    expected[0, alive, :n_left] = np.concatenate([rows[p][:, kept[p]] for p in range(2)], axis=1)[alive]
    assert np.array_equal(bitops.unpack_bits(soft, n_words * 64), expected)
    if bitops.HAS_PEXT:
        assert np.array_equal(bitops._compact_rows_pext(packed, keep, offs, alive, n_words), soft)
