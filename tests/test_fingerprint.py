"""Fingerprints with the real bundled model, plus small hand-checkable cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import make_dataset

from mads_core.config import FingerprintConfig, ModelSpec
from mads_core.model.fingerprint import (
    ActivationRecorder,
    EncodedSample,
    FingerprintError,
    RunStats,
    _pack_bits,
    encode_sample,
    fingerprint_dataset,
    fingerprint_key,
    render_sample,
    run_batches,
)


def unpack(bits: np.ndarray, n_neurons: int) -> np.ndarray:
    rows = np.ascontiguousarray(bits).view(np.uint8)
    return np.unpackbits(rows, axis=-1, bitorder="little")[..., :n_neurons].astype(bool)


def mean_pairwise_jaccard(fired: np.ndarray) -> float:
    values = []
    for i, j in itertools.combinations(range(len(fired)), 2):
        union = (fired[i] | fired[j]).sum()
        values.append((fired[i] & fired[j]).sum() / union if union else 1.0)
    return float(np.mean(values))


# ---------------------------------------------------------------- hand-checkable


def test_pack_bits_layout_neuron_d_is_word_d_div_64_bit_d_mod_64():
    fired = np.zeros((1, 130), dtype=bool)
    fired[0, [0, 63, 64, 129]] = True
    packed = _pack_bits(fired, 3)
    assert packed.dtype == np.uint64 and packed.shape == (1, 3)
    assert packed[0, 0] == (1 | (1 << 63))
    assert packed[0, 1] == 1
    assert packed[0, 2] == 2


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="levels"):
        FingerprintConfig(threshold=2.0, levels=(1.0,))
    with pytest.raises(ValueError, match="pooling"):
        FingerprintConfig(pooling="median")
    assert FingerprintConfig(batch_size=4).cache_hash() == FingerprintConfig(batch_size=64).cache_hash()
    assert FingerprintConfig(threshold=2.0).cache_hash() != FingerprintConfig(threshold=2.5).cache_hash()


# ---------------------------------------------------------------- real model: inputs


@pytest.mark.model
def test_own_tokens_are_exactly_the_sample_contents(bundled_model):
    tok = bundled_model.tokenizer
    turns = (("user", "What is 17 times 23?"), ("assistant", "It is 391."))
    cfg = FingerprintConfig(system_prompt=None)  # let the template insert its default system prompt
    text, spans = render_sample(tok, turns, cfg)
    assert "SmolLM" in text  # the default system prompt is rendered ...
    sample = encode_sample(tok, turns, cfg, max_tokens=256)
    own_text = tok.decode([t for t, own in zip(sample.input_ids, sample.own_mask) if own])
    assert own_text.replace(" ", "") == "Whatis17times23?Itis391."  # ... but none of it is "own"
    assert [text[a:b] for a, b in spans] == ["What is 17 times 23?", "It is 391."]


@pytest.mark.model
def test_truncation_is_flagged(bundled_model):
    turns = (("user", "word " * 400), ("assistant", "ok"))
    sample = encode_sample(bundled_model.tokenizer, turns, FingerprintConfig(), max_tokens=64)
    assert sample.truncated and len(sample.input_ids) == 64


# ---------------------------------------------------------------- real model: fingerprints


@pytest.mark.model
def test_system_prompt_cannot_dominate_the_fingerprint(bundled_model, six_pairs, tmp_path):
    """The measured trap: with template/system tokens pooled, six prompts look alike."""
    ds = make_dataset(six_pairs)
    masked = fingerprint_dataset(ds, config=FingerprintConfig(system_prompt=None), cache=tmp_path, loaded=bundled_model)
    trap = fingerprint_dataset(
        ds,
        config=FingerprintConfig(system_prompt=None, count_template_tokens=True),
        cache=tmp_path,
        loaded=bundled_model,
    )
    j_masked = mean_pairwise_jaccard(unpack(masked.bits, masked.n_neurons))
    j_trap = mean_pairwise_jaccard(unpack(trap.bits, trap.n_neurons))
    assert j_trap > 0.55, j_trap  # the trap is real with this model ...
    assert j_masked < 0.40, j_masked  # ... and masking removes it
    assert j_trap - j_masked > 0.2


@pytest.mark.model
def test_fingerprint_does_not_depend_on_batch_mates_or_padding(bundled_model, six_pairs):
    cfg = FingerprintConfig()
    tok = bundled_model.tokenizer
    encoded = [encode_sample(tok, ((("user", q), ("assistant", a))), cfg, 256) for q, a in six_pairs]
    long_mate = encode_sample(tok, (("user", "Tell me a long story. " * 20), ("assistant", "Once " * 60)), cfg, 256)
    recorder = ActivationRecorder(bundled_model.model, None, cfg)
    alone = np.concatenate([run_batches(bundled_model, [s], recorder, 1) for s in encoded], axis=1)
    together = run_batches(bundled_model, encoded + [long_mate], recorder, 7)[:, :6]
    assert np.array_equal(alone, together)


@pytest.mark.model
def test_layer_subset_equals_columns_of_all_layers(bundled_model, six_pairs, tmp_path):
    ds = make_dataset(six_pairs)
    full = fingerprint_dataset(ds, config=FingerprintConfig(), cache=tmp_path, loaded=bundled_model)
    part = fingerprint_dataset(ds, config=FingerprintConfig(layers=(3, 0)), cache=tmp_path, loaded=bundled_model)
    width = 1536
    assert full.n_neurons == 30 * width and part.n_neurons == 2 * width
    # Canonical layer order: ascending, whatever order they were given in.
    assert part.layers == (0, 3) and part.layer_offsets == (0, width, 2 * width)
    f, p = unpack(full.bits, full.n_neurons), unpack(part.bits, part.n_neurons)
    assert np.array_equal(p[:, :width], f[:, :width])
    assert np.array_equal(p[:, width:], f[:, 3 * width : 4 * width])


@pytest.mark.model
def test_negative_and_duplicate_layers_share_one_canonical_key(bundled_model, six_pairs, tmp_path):
    ds = make_dataset(six_pairs)
    last = fingerprint_dataset(ds, config=FingerprintConfig(layers=(-1,)), cache=tmp_path, loaded=bundled_model)
    same = fingerprint_dataset(ds, config=FingerprintConfig(layers=(29, -1)), cache=tmp_path, loaded=bundled_model)
    assert last.layers == (29,) and last.n_neurons == 1536
    assert same.key == last.key and same.cache_hit
    key = fingerprint_key(ds.content_hash(), bundled_model.identity, FingerprintConfig(layers=(29,)))
    assert key == last.key
    with pytest.raises(FingerprintError, match="out of range: the model has 30 layers"):
        fingerprint_dataset(ds, config=FingerprintConfig(layers=(30,)), cache=tmp_path, loaded=bundled_model)


@pytest.mark.model
def test_default_tau_fires_a_few_percent_and_planes_are_nested(bundled_model, six_pairs, tmp_path):
    fp = fingerprint_dataset(make_dataset(six_pairs), cache=tmp_path, loaded=bundled_model)
    per_sample = fp.fired_per_sample() / fp.n_neurons
    assert np.all(per_sample > 0.005) and np.all(per_sample < 0.15), per_sample
    planes = unpack(fp.planes, fp.n_neurons)
    assert planes.shape[0] == 3
    for j in range(1, 3):
        assert not np.any(planes[j] & ~planes[j - 1])
        assert planes[j].sum() < planes[j - 1].sum()
    assert np.array_equal(fp.firing_counts, planes[0].sum(axis=0))
    assert np.all(fp.token_counts > 0)


@pytest.mark.model
def test_topk_rule_fires_k_per_own_token(bundled_model):
    cfg = FingerprintConfig(rule="topk", top_k=5, layers=(0, 1))
    sample = encode_sample(bundled_model.tokenizer, (("user", "Hi"), ("assistant", "Hello!")), cfg, 64)
    recorder = ActivationRecorder(bundled_model.model, cfg.layers, cfg)
    fired = unpack(run_batches(bundled_model, [sample], recorder, 1), recorder.n_neurons)[0, 0]
    n_own = sum(sample.own_mask)
    for a, b in zip(recorder.layer_offsets[:-1], recorder.layer_offsets[1:]):
        assert 5 <= fired[a:b].sum() <= 5 * n_own


@pytest.mark.model
def test_empty_own_tokens_give_an_empty_fingerprint(bundled_model):
    cfg = FingerprintConfig(layers=(0,))
    sample = EncodedSample(input_ids=(1, 2, 3), own_mask=(False, False, False), truncated=False)
    recorder = ActivationRecorder(bundled_model.model, cfg.layers, cfg)
    assert not run_batches(bundled_model, [sample], recorder, 1).any()


# ---------------------------------------------------------------- cache


@pytest.mark.model
def test_second_run_is_a_cache_hit_without_loading_the_model(bundled_model, six_pairs, tmp_path, monkeypatch):
    ds = make_dataset(six_pairs)
    first = fingerprint_dataset(ds, cache=tmp_path, loaded=bundled_model)
    assert not first.cache_hit

    def no_model(*_a, **_k):
        raise AssertionError("a cache hit must not load the model")

    monkeypatch.setattr("mads_core.model.fingerprint.load_model", no_model)
    stats = RunStats()
    second = fingerprint_dataset(ds, ModelSpec(), cache=tmp_path, stats=stats)
    assert second.cache_hit and stats.chunks_computed == 0
    assert np.array_equal(np.asarray(first.planes), np.asarray(second.planes))
    assert isinstance(second.planes, np.memmap)


@pytest.mark.model
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_cache_is_detected_and_rebuilt(bundled_model, six_pairs, tmp_path, damage):
    ds = make_dataset(six_pairs)
    cfg = FingerprintConfig(layers=(0, 1))
    good = np.array(fingerprint_dataset(ds, config=cfg, cache=tmp_path, loaded=bundled_model).planes)
    path = next(tmp_path.glob("fingerprints/*/result/planes.npy"))
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-1] ^= 0xFF
    else:
        data = data[: len(data) - 8]
    path.write_bytes(bytes(data))
    stats = RunStats()
    again = fingerprint_dataset(ds, config=cfg, cache=tmp_path, loaded=bundled_model, stats=stats)
    assert not again.cache_hit and stats.chunks_computed == 1
    assert np.array_equal(np.asarray(again.planes), good)


@pytest.mark.model
def test_a_sample_with_no_own_token_in_the_window_is_refused_not_fingerprinted_empty(bundled_model):
    """Template markup alone fills an 8-token window: the sample is named, never fingerprinted as all zeros."""
    from mads_core.model.fingerprint import FingerprintError, plan_chunks

    dataset = make_dataset([("What is AI?", "Artificial intelligence.")], name="tiny-window")
    refusal = r"1 sample\(s\) have no own token within the 8-token window \(tiny-window-0\)"
    with pytest.raises(FingerprintError, match=refusal):
        plan_chunks(dataset, bundled_model.tokenizer, FingerprintConfig(max_tokens=8))
    assert plan_chunks(dataset, bundled_model.tokenizer, FingerprintConfig(max_tokens=64)).own_counts[0] > 0
