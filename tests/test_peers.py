"""Peer methods on small hand-checkable cases (IFD, facility location, DEITA, target-aware, length)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_dataset

from mads_core.config import FingerprintConfig, PeerConfig, SelectConfig
from mads_core.data.loader import DataError
from mads_core.select.bitops import pack_bits
from mads_core.select.deita import deita_filter, score_column, select_deita
from mads_core.select.facility import knn_similarity, naive_facility, select_facility
from mads_core.select.greedy import naive_greedy, select_mads
from mads_core.select.ifd import select_ifd, select_superfilter
from mads_core.select.length import response_lengths, select_longest, select_mads_lenctl
from mads_core.select.target import nait_scores, select_nait, select_target_mads


def _bits(rows: list[list[int]], d: int) -> np.ndarray:
    fired = np.zeros((len(rows), d), dtype=bool)
    for i, r in enumerate(rows):
        fired[i, r] = True
    return pack_bits(fired)


# ------------------------------------------------------------------ IFD (real bundled model)


@pytest.mark.model
def test_ifd_is_low_when_the_instruction_gives_the_response_away(bundled_model, tmp_path):
    from mads_core.model.fingerprint import fingerprint_dataset
    from mads_core.select.ifd import compute_ifd, shared_pass

    sentence = "The quick brown fox jumps over the lazy dog."
    counting = "one, two, three, four, five, six, seven, eight, nine, ten"
    ds = make_dataset([
        (f"Repeat exactly: {sentence}", sentence),           # the instruction contains the answer
        ("What is your favourite colour?", sentence),        # same answer, instruction unrelated
        ("Count from one to ten in words.", counting),       # the instruction makes the answer obvious
        ("Name a fruit.", counting),                         # same answer, instruction unrelated
    ])
    config = FingerprintConfig()
    out = compute_ifd(ds, bundled_model, config)
    ifd = out["ifd"]
    # the same response tokens scored in both samples of a pair: identical unconditioned loss
    assert out["loss_resp"][0] == pytest.approx(out["loss_resp"][1])
    assert out["n_tokens"][0] == out["n_tokens"][1] > 5
    assert ifd[0] < 0.5 * ifd[1]
    assert ifd[2] < 0.75 * ifd[3]
    assert np.all((ifd > 0) & (ifd < 1))
    # one forward pass gives the same bits as fingerprinting and the same conditioned loss
    planes, loss = shared_pass(ds, bundled_model, config)
    fp = fingerprint_dataset(ds, config=config, cache=tmp_path, loaded=bundled_model)
    assert np.array_equal(np.asarray(fp.planes), planes)
    np.testing.assert_allclose(loss, out["loss_cond"], rtol=1e-5)


@pytest.mark.model
def test_ifd_is_undefined_without_a_response(bundled_model):
    from mads_core.data.loader import Dataset
    from mads_core.select.ifd import compute_ifd

    ds = Dataset("t", "chat", ("a", "b"), ((("user", "Hello there"),), (("user", "Hi"), ("assistant", "Hello!"))),
                 (None, None), ("t", "t"), ({}, {}))
    out = compute_ifd(ds, bundled_model, FingerprintConfig())
    assert np.isnan(out["ifd"][0]) and out["n_tokens"][0] == 0
    assert np.isfinite(out["ifd"][1])


def test_ifd_ranks_within_zero_one_and_puts_the_rest_last():
    ifd = np.array([0.5, 1.2, np.nan, 0.9, 0.9, -0.1, 0.2])
    sel = select_ifd(ifd, 7)
    assert sel.ranking.tolist() == [3, 4, 0, 6, 1, 2, 5]  # ties (0.9) to the lower index
    assert sel.filler_from == 4
    assert sel.gains[0] == 0.9
    assert select_ifd(ifd, 2).ranking.tolist() == [3, 4]


def test_superfilter_picks_within_the_ifd_pool_then_fills():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(20, 8)).astype(np.float32)
    ifd = np.linspace(0.05, 0.95, 20)
    ifd[3] = 1.5  # never in the pool
    sel = select_superfilter(ifd, emb, 10, ifd_top=0.25, n_neighbors=5)  # pool: the 5 highest valid IFDs
    pool = {19, 18, 17, 16, 15}
    assert set(sel.ranking[:5].tolist()) == pool
    assert sel.filler_from == 5
    assert sel.ranking[5:].tolist() == [14, 13, 12, 11, 10]
    assert 3 not in sel.ranking


# ------------------------------------------------------------------ facility location


def test_knn_similarity_keeps_the_k_most_similar_including_itself():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 6)).astype(np.float32)
    sim = knn_similarity(x, 4, block_bytes=4 * 30 * 7)  # several blocks
    assert sim.shape == (30, 30) and sim.nnz == 30 * 4
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    dense = u @ u.T
    for i in range(30):
        row = sim.getrow(i)
        assert set(row.indices) == set(np.argsort(-dense[i])[:4].tolist())
        assert row[0, i] == pytest.approx(1.0)
        np.testing.assert_allclose(row.data, np.maximum(dense[i, row.indices], 0), atol=1e-5)


@pytest.mark.parametrize("n_neighbors", [5, 40])
def test_facility_location_equals_brute_force_greedy(n_neighbors):
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(4, 10))
    x = (centres[rng.integers(0, 4, 40)] + 0.5 * rng.normal(size=(40, 10))).astype(np.float32)
    sel = select_facility(x, 12, n_neighbors=n_neighbors)
    dense = knn_similarity(x, n_neighbors).toarray()
    ref_rank, ref_gain = naive_facility(dense, 12)
    np.testing.assert_allclose(sel.gains, ref_gain, rtol=1e-9, atol=1e-9)
    # same picks; exact ties (e.g. isolated points, gain 1.0 each) may come in another order
    for r in range(12):
        assert sel.ranking[r] == ref_rank[r] or np.isclose(sel.gains[r], ref_gain[r])
        objective = dense[sel.ranking[: r + 1]].max(axis=0).sum()
        assert objective == pytest.approx(ref_gain[: r + 1].sum())
    assert np.all(np.diff(sel.gains) <= 1e-9)  # submodular: gains never grow
    np.testing.assert_allclose(sel.coverage[-1], ref_gain.sum() / 40)


def test_facility_location_covers_every_cluster_first():
    # three tight clusters of different sizes: the first three picks come one from each
    rng = np.random.default_rng(3)
    centres = np.eye(3, 16) * 10
    labels = np.repeat([0, 1, 2], [20, 10, 5])
    x = (centres[labels] + 0.1 * rng.normal(size=(35, 16))).astype(np.float32)
    sel = select_facility(x, 3, n_neighbors=35)
    assert sorted(labels[sel.ranking].tolist()) == [0, 1, 2]


# ------------------------------------------------------------------ DEITA


def test_deita_threshold_rejects_near_duplicates():
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([0.95, np.sqrt(1 - 0.95**2), 0.0])  # cos(a, b) = 0.95
    c = np.array([0.0, 0.0, 1.0])
    emb = np.stack([c, b, a]).astype(np.float32)
    scores = np.array([1.0, 2.0, 3.0])  # visiting order: a (row 2), b (row 1), c (row 0)
    ranking, sims, filler = deita_filter(scores, emb, 3, threshold=0.9)
    assert ranking.tolist() == [2, 0, 1] and filler == 2  # b too close to a: rejected, comes last as filler
    assert sims[1] == pytest.approx(0.0, abs=1e-6) and sims[2] == pytest.approx(0.95, abs=1e-5)
    ranking, _, filler = deita_filter(scores, emb, 3, threshold=0.96)
    assert ranking.tolist() == [2, 1, 0] and filler == 3
    sel = select_deita(scores, emb, 2, threshold=0.9, score_name="length")
    assert sel.ranking.tolist() == [2, 0] and sel.gains.tolist() == [3.0, 1.0]


def test_deita_checks_similarity_inside_one_block_and_across_blocks():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(50, 12))
    emb = np.concatenate([base, base + 1e-3 * rng.normal(size=base.shape)] * 6).astype(np.float32)  # 600 rows
    scores = rng.random(600)
    ranking, sims, filler = deita_filter(scores, emb, 60, threshold=0.9)
    kept = ranking[:filler]
    u = emb[kept] / np.linalg.norm(emb[kept], axis=1, keepdims=True)
    cos = u @ u.T
    np.fill_diagonal(cos, -1)
    assert cos.max() <= 0.9 + 1e-6
    assert filler <= 50  # at most one per near-duplicate family (and only as many as are far apart)


def test_score_column_refuses_a_missing_or_non_numeric_field():
    ds = make_dataset([("q1", "a1"), ("q2", "a2")])
    with pytest.raises(DataError, match=r"record 0, field 'quality': score of sample id 'hand-0' is missing"):
        score_column(ds, "quality")
    records = ({"quality": 0.5}, {"quality": "high"})
    ds2 = type(ds)(ds.name, ds.format, ds.ids, ds.turns, ds.categories, ds.sources, records)
    with pytest.raises(DataError, match=r"record 1, field 'quality': .* is not a finite number \('high'\)"):
        score_column(ds2, "quality")


# ------------------------------------------------------------------ target-aware


def test_target_weighting_makes_a_target_fired_neuron_worth_more():
    d = 64
    pool = _bits([[0, 1, 2], [5, 6], [7]], d)  # sample 0 fires the most neurons, none of them the target's
    target = _bits([[5, 6], [5], [5, 9]], d)    # target fires 5 (x3), 6 (x1), 9 (x1)
    plain = select_mads(pool, d, 3, SelectConfig(continuation="none"))
    assert plain.ranking[0] == 0
    aware = select_target_mads(pool, d, target, 3, SelectConfig(continuation="none"))
    assert aware.ranking[0] == 1
    assert aware.gains[0] == 4.0  # neuron 5 (3 target samples) + neuron 6 (1)
    assert aware.filler_from == 1  # nothing else fires a target neuron
    assert aware.neurons_covered[0] == 2


def test_target_mads_equals_weighted_brute_force():
    rng = np.random.default_rng(5)
    d = 200
    pool = rng.random((60, d)) < 0.08
    target = rng.random((10, d)) < 0.1
    sel = select_target_mads(pack_bits(pool), d, pack_bits(target), 20, SelectConfig(continuation="none"))
    w = target.sum(axis=0)
    cov = np.zeros(d, dtype=bool)
    for r, i in enumerate(sel.ranking[: sel.filler_from]):
        gains = ((pool & ~cov) * w).sum(axis=1)
        gains[sel.ranking[:r]] = -1
        assert gains[i] == gains.max() and i == int(np.argmax(gains))
        assert sel.gains[r] == gains[i]
        cov |= pool[i]


def test_nait_prefers_samples_that_fire_like_the_target():
    d = 64
    target = _bits([[5, 6, 7], [5, 6], [5, 7]], d)
    pool = _bits([[0, 1, 2], [5, 6, 7], [5, 0], []], d)
    scores = nait_scores(pool, d, target, n_directions=2)
    assert scores[1] > scores[2] > scores[0] == 0.0 and scores[3] == 0.0
    assert scores[1] <= 1.0 + 1e-9
    assert select_nait(pool, d, target, 2, n_directions=2).ranking.tolist() == [1, 2]


# ------------------------------------------------------------------ length


def test_longest_orders_by_response_length_ties_to_lower_index():
    ds = make_dataset([("q", "aaa"), ("q", "a" * 10), ("long question " * 20, "bb"), ("q", "c" * 10)])
    assert response_lengths(ds).tolist() == [3, 10, 2, 10]
    sel = select_longest(ds, 3)
    assert sel.ranking.tolist() == [1, 3, 0]
    assert sel.gains.tolist() == [10.0, 10.0, 3.0]


def test_length_controlled_mads_with_alpha_zero_is_mads():
    rng = np.random.default_rng(6)
    d = 300
    fired = rng.random((80, d)) < rng.uniform(0.01, 0.2, size=(80, 1))
    bits = pack_bits(fired)
    tokens = rng.integers(5, 200, size=80)
    sel = select_mads_lenctl(bits, d, tokens, 60, alpha=0.0)
    ref = naive_greedy(fired, 60, SelectConfig())
    assert sel.ranking.tolist() == ref.ranking.tolist()
    assert sel.gains.tolist() == ref.gains.tolist()
    assert sel.rounds.tolist() == ref.rounds.tolist()


def test_length_control_prefers_the_short_sample_with_the_same_neurons():
    d = 64
    bits = _bits([[0, 1, 2, 3], [0, 1, 2], [10]], d)
    tokens = np.array([200, 20, 5])
    assert select_mads_lenctl(bits, d, tokens, 1, alpha=0.0).ranking[0] == 0
    per_token = select_mads_lenctl(bits, d, tokens, 3, alpha=1.0)
    assert per_token.ranking.tolist() == [2, 1, 0]  # 1/5 > 3/20 > 4/200
    assert per_token.gains.tolist() == [1.0, 3.0, 1.0]


def test_peer_config_refuses_bad_settings():
    with pytest.raises(ValueError, match="deita_threshold"):
        PeerConfig(deita_threshold=1.5)
    with pytest.raises(ValueError, match="deita_score"):
        PeerConfig(deita_score="quality")
    with pytest.raises(ValueError, match="ifd_top"):
        PeerConfig(ifd_top=0.0)


def test_every_peer_is_a_pipeline_method():
    from mads_core.pipeline import METHODS, method_requirements
    from mads_core.select.peers import PEERS

    assert set(PEERS) <= set(METHODS)
    assert method_requirements("deita", PeerConfig(deita_score="length")) == {"embeddings", "dataset"}
    assert method_requirements("superfilter") == {"ifd", "embeddings"}
    assert "target" in method_requirements("nait")


def test_peers_run_through_the_pipeline_and_repeat_byte_for_byte():
    from mads_core.pipeline import run_method

    ds = make_dataset([(f"question {i}", "answer " * (i % 7 + 1)) for i in range(30)])
    emb = np.random.default_rng(7).normal(size=(30, 16)).astype(np.float32)
    cfg = PeerConfig(deita_score="length", deita_threshold=0.5, n_neighbors=5)
    for method in ("longest", "deita", "facility-embed"):
        a = run_method(method, ds, None, 0.5, embeddings=emb, peer_config=cfg)
        b = run_method(method, ds, None, 0.5, embeddings=emb, peer_config=cfg)
        assert a.method == method and len(a) == 15 and len(set(a.ranking.tolist())) == 15
        assert a.ranking.tobytes() == b.ranking.tobytes() and a.settings_hash == b.settings_hash
        assert "gain" in a.settings
    with pytest.raises(ValueError, match="needs a target set"):
        from mads_core.select.peers import run_peer

        run_peer("nait", 3, fingerprints=None, config=cfg)
