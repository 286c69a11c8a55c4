"""Mixture-of-experts fingerprints: D as documented, only routed experts fire, bits = a recomputation.

Tiny random-initialised MoE models of every family the installed transformers builds
(tests/tiny_models.py: 3 blocks, 8 experts x 32 units, top-2). The reference recomputes
every expert's activation on every token from the experts' input with the model's own
weights, then keeps (token, expert) pairs the router chose — independent of the
recorder's grouped forward.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_families import _Loaded, samples, unpack
from tiny_models import EXPERT_WIDTH, MOE_FAMILIES, N_EXPERTS, make_model

from mads_core.config import FingerprintConfig
from mads_core.model.fingerprint import ActivationRecorder, make_batch, run_batches
from mads_core.model.hooks import ExpertsSite

E, U = N_EXPERTS, EXPERT_WIDTH  # experts, units per expert
# D per family at unit granularity, from the tiny configs: routed experts E x U per MoE
# layer, plus shared experts and dense layers at their width.
EXPECTED_D = {
    "mixtral": 3 * E * U,
    "qwen3_moe": 3 * E * U,
    "olmoe": 3 * E * U,
    "granitemoe": 3 * E * U,
    "phimoe": 3 * E * U,
    "gpt_oss": 3 * E * U,
    "qwen2_moe": 3 * (E * U + 48),  # + shared expert (48 units)
    "deepseek_v2": 128 + 2 * (E * U + 32),  # first layer dense; then experts + 1 shared expert
    "deepseek_v3": 128 + 2 * (E * U + 32),
    "llama4": 128 + (E * U + 32) + 128,  # MoE every 2nd layer, shared expert of width U
    "gemma4": 3 * (128 + E * U),  # dense MLP and MoE block side by side in every layer
}
N_MOE_LAYERS = {"deepseek_v2": 2, "deepseek_v3": 2, "llama4": 1}


def _reference_gate(experts, h: torch.Tensor) -> torch.Tensor:
    if hasattr(experts, "alpha"):  # gpt-oss: interleaved, clamped GLU
        gate = h[..., ::2].clamp(max=experts.limit)
        return gate * torch.sigmoid(gate * experts.alpha)
    return experts.act_fn(h[..., : h.shape[-1] // 2])


def capture_experts(model, recorder):
    """Register hooks that keep each experts site's input and routing; returns (store, handles)."""
    store: dict[int, dict] = {}
    handles = []
    for n, slot in enumerate(recorder.slots):
        site = slot.site
        if not isinstance(site, ExpertsSite):
            continue
        if site.style == "routed":
            def pre(_m, args, kwargs, n=n):
                store[n] = {"x": args[0], "idx": args[1]}
            handles.append(site.module.register_forward_pre_hook(pre, with_kwargs=True))
        else:
            def router(_m, _args, out, n=n, k=site.router.top_k):
                store.setdefault(n, {})["idx"] = torch.topk(out[1], k, dim=1).indices
            def pre(_m, args, n=n):
                store.setdefault(n, {})["x"] = args[0]
            handles.append(site.router.register_forward_hook(router))
            handles.append(site.module.register_forward_pre_hook(pre))
    return store, handles


def reference_expert_values(site: ExpertsSite, x: torch.Tensor, which: str) -> torch.Tensor:
    """(E, tokens, U) activation of every expert on every token (no routing applied)."""
    ex = site.module
    values = []
    for e in range(site.n_experts):
        if site.style == "routed":
            w = ex.gate_up_proj[e] if ex.has_gate else ex.up_proj[e]
            h = x @ w if ex.is_transposed else x @ w.t()
            if ex.has_bias:
                h = h + (ex.gate_up_proj_bias if ex.has_gate else ex.up_proj_bias)[e]
            if not ex.has_gate:
                values.append(ex.act_fn(h))
            else:
                values.append(ex._apply_gate(h) if which == "product" else _reference_gate(ex, h))
        else:  # Llama-4: router-scaled copies of the tokens, expert-major
            xe = x.view(site.n_experts, -1, x.shape[-1])[e]
            gate, up = (xe @ ex.gate_up_proj[e]).chunk(2, dim=-1)
            values.append(ex.act_fn(gate) * up if which == "product" else ex.act_fn(gate))
    return torch.stack(values)


def run(model, cfg, batch_size=3, seed=0):
    recorder = ActivationRecorder(model, None, cfg)
    store, handles = capture_experts(model, recorder)
    with torch.no_grad():
        planes = run_batches(_Loaded(model), samples(seed), recorder, batch_size)
    for h in handles:
        h.remove()
    return recorder, unpack(planes[0], recorder.n_neurons), store


@pytest.mark.parametrize("site", ["gate", "product"])
@pytest.mark.parametrize("family", sorted(MOE_FAMILIES))
def test_moe_bits_equal_a_recomputation_from_the_routers_choices(family, site):
    model = make_model(family)
    batch = make_batch(samples(), pad_id=0)
    own = batch.own.reshape(-1)
    # First pass at tau = -inf-ish to get the reference pooled values, then fix tau from them.
    recorder, _, store = run(model, FingerprintConfig(threshold=-1e9, levels=(), site=site))
    assert recorder.n_neurons == EXPECTED_D[family]
    refs = {}
    for n, slot in enumerate(recorder.slots):
        if not isinstance(slot.site, ExpertsSite):
            continue
        with torch.no_grad():
            values = reference_expert_values(slot.site, store[n]["x"], site)  # (E, S, U)
        routed = torch.zeros(len(own), slot.site.n_experts, dtype=torch.bool)
        routed.scatter_(1, store[n]["idx"], True)
        keep = (routed & own[:, None]).t()  # (E, S): routed there and an own token
        masked = values.masked_fill(~keep[:, :, None], float("-inf"))
        pooled = masked.view(E, *batch.own.shape, U).amax(dim=2)  # (E, B, U)
        routed_own = keep.view(E, *batch.own.shape).any(2).t()  # (B, E)
        refs[n] = (pooled.permute(1, 0, 2).reshape(len(batch), E * U).numpy(), routed_own)
    finite = np.concatenate([r[np.isfinite(r)] for r, _ in refs.values()])
    tau = float(np.quantile(finite, 0.7))
    recorder, bits, _ = run(model, FingerprintConfig(threshold=tau, levels=(), site=site))
    for n, (pooled, routed_own) in refs.items():
        slot = recorder.slots[n]
        got = bits[:, slot.start : slot.stop]
        expected = pooled > tau
        near = np.abs(pooled - tau) < 1e-5
        assert 0 < expected.sum() < expected.size
        assert np.array_equal(got[~near], expected[~near]), f"slot {n}"
        # Only experts that own tokens were routed to can fire.
        fired_expert = got.reshape(len(batch), E, U).any(-1)
        assert not (fired_expert & ~routed_own.numpy()).any()
        assert (~routed_own).any()  # the check is not vacuous: some (sample, expert) pairs got no own token


@pytest.mark.parametrize("family", ["qwen3_moe", "gpt_oss", "llama4", "gemma4", "qwen2_moe"])
def test_batch_size_does_not_change_moe_bits(family):
    model = make_model(family)
    cfg = FingerprintConfig(threshold=0.0, levels=(0.05,), router_bits=True)
    recorder = ActivationRecorder(model, None, cfg)
    with torch.no_grad():
        alone = np.concatenate([run_batches(_Loaded(model), [s], recorder, 1) for s in samples(1)], axis=1)
        together = run_batches(_Loaded(model), samples(1), recorder, 3)
    assert alone.any() and np.array_equal(alone, together)


@pytest.mark.parametrize("family", ["mixtral", "deepseek_v3", "llama4"])
def test_expert_granularity_and_router_bits(family):
    model = make_model(family)
    n_moe = N_MOE_LAYERS.get(family, 3)
    unit = ActivationRecorder(model, None, FingerprintConfig(threshold=0.0, levels=()))
    expert = ActivationRecorder(model, None, FingerprintConfig(threshold=0.0, levels=(), moe_granularity="expert"))
    routed = ActivationRecorder(model, None, FingerprintConfig(threshold=0.0, levels=(), router_bits=True))
    assert expert.n_neurons == unit.n_neurons - n_moe * E * (U - 1)
    assert routed.n_neurons == unit.n_neurons + n_moe * E
    with torch.no_grad():
        u = unpack(run_batches(_Loaded(model), samples(), unit, 3)[0], unit.n_neurons)
        x = unpack(run_batches(_Loaded(model), samples(), expert, 3)[0], expert.n_neurons)
        r = unpack(run_batches(_Loaded(model), samples(), routed, 3)[0], routed.n_neurons)
    for su, sx, sr in zip(unit.slots, expert.slots, routed.slots, strict=True):
        if not isinstance(su.site, ExpertsSite):
            assert np.array_equal(u[:, su.start : su.stop], x[:, sx.start : sx.stop])
            continue
        by_unit = u[:, su.start : su.stop].reshape(3, E, U).any(-1)
        # An expert fires when any of its units fires; router bits mark experts given own tokens.
        assert np.array_equal(x[:, sx.start : sx.stop], by_unit)
        router_bits = r[:, sr.router_start : sr.stop]
        assert np.array_equal(r[:, sr.start : sr.router_start], u[:, su.start : su.stop])
        assert router_bits.any() and not (by_unit & ~router_bits).any()


def test_recording_leaves_the_moe_blocks_output_unchanged():
    model = make_model("qwen2_moe")
    batch = make_batch(samples(), pad_id=0)
    base = model.base_model

    def hidden():
        with torch.no_grad():
            return base(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state

    plain = hidden()
    recorder = ActivationRecorder(model, None, FingerprintConfig())
    recorder.stop_early = False
    recorder.own, recorder.fired = batch.own, torch.zeros((3, 3, recorder.n_neurons), dtype=torch.bool)
    with recorder:
        recorded = hidden()
    assert torch.allclose(plain, recorded, atol=1e-5)
    assert "forward" not in vars(recorder.slots[0].site.module)  # the class's forward is back


# ---------------------------------------------------------------- saved folders, end to end


@pytest.fixture(scope="module")
def bundled_tokenizer():
    from transformers import AutoTokenizer

    from mads_core.model.models import bundled_model_dir

    return AutoTokenizer.from_pretrained(bundled_model_dir())


def save_family(family: str, folder, tokenizer):
    """A tiny model of ``family`` saved next to the bundled tokenizer, as a user's model folder."""
    make_model(family).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.model
def test_saved_moe_folder_end_to_end_and_negative_layers_share_the_key(bundled_tokenizer, six_pairs, tmp_path):
    from conftest import make_dataset

    from mads_core.config import ModelSpec
    from mads_core.model.fingerprint import fingerprint_dataset

    spec = ModelSpec(name=save_family("qwen3_moe", tmp_path / "qwen3-moe-tiny", bundled_tokenizer), device="cpu")
    ds = make_dataset(six_pairs)
    cache = tmp_path / "c"
    full = fingerprint_dataset(ds, spec, FingerprintConfig(threshold=0.0, levels=()), cache=cache)
    assert full.n_neurons == EXPECTED_D["qwen3_moe"] and full.fired_per_sample().min() > 0
    last = fingerprint_dataset(ds, spec, FingerprintConfig(threshold=0.0, levels=(), layers=(-1,)), cache=cache)
    two = fingerprint_dataset(ds, spec, FingerprintConfig(threshold=0.0, levels=(), layers=(2,)), cache=cache)
    assert last.key == two.key and two.cache_hit and last.layers == (2,)
    assert np.array_equal(unpack(last.bits, last.n_neurons), unpack(full.bits, full.n_neurons)[:, 2 * E * U :])


@pytest.mark.model
def test_unhookable_model_is_refused_before_its_weights_load(bundled_tokenizer, six_pairs, tmp_path, monkeypatch):
    from conftest import make_dataset

    from mads_core.config import ModelSpec
    from mads_core.model import fingerprint
    from mads_core.model.fingerprint import FingerprintError

    def no_load(spec):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(fingerprint, "load_model", no_load)
    spec = ModelSpec(name=save_family("bart", tmp_path / "bart-tiny", bundled_tokenizer), device="cpu")
    with pytest.raises(FingerprintError, match="encoder-decoder"):
        fingerprint.fingerprint_dataset(make_dataset(six_pairs), spec, cache=tmp_path / "c")
    spec = ModelSpec(name=save_family("llama", tmp_path / "llama-tiny", bundled_tokenizer), device="cpu")
    with pytest.raises(FingerprintError, match="out of range: the model has 3 layers"):
        fingerprint.fingerprint_dataset(make_dataset(six_pairs), spec, FingerprintConfig(layers=(5,)), cache=tmp_path)


def test_moe_mean_pooling_and_topk_rule_follow_the_routing():
    model = make_model("qwen3_moe")
    batch = make_batch(samples(), pad_id=0)
    own = batch.own.reshape(-1)
    recorder, _, store = run(model, FingerprintConfig(threshold=-1e9, levels=()))
    slot = recorder.slots[0]
    with torch.no_grad():
        values = reference_expert_values(slot.site, store[0]["x"], "gate")  # (E, S, U)
    routed = torch.zeros(len(own), E, dtype=torch.bool).scatter_(1, store[0]["idx"], True)
    keep = (routed & own[:, None]).t().view(E, *batch.own.shape)  # (E, B, T)
    sums = (values.view(E, *batch.own.shape, U) * keep[..., None]).sum(2)
    mean = (sums / keep.sum(2, keepdim=True).clamp(min=1)).masked_fill(~keep.any(2)[..., None], float("-inf"))
    mean = mean.permute(1, 0, 2).reshape(3, E * U).numpy()
    tau = float(np.quantile(mean[np.isfinite(mean)], 0.6))
    _, bits, _ = run(model, FingerprintConfig(threshold=tau, levels=(), pooling="mean"))
    near = np.abs(mean - tau) < 1e-5
    assert np.array_equal(bits[:, slot.start : slot.stop][~near], (mean > tau)[~near])
    # top-k: every routed own (token, expert) pair fires its expert's k largest units, nothing else fires
    k = 3
    _, bits, _ = run(model, FingerprintConfig(rule="topk", top_k=k))
    expected = np.zeros((3, E, U), dtype=bool)
    top = values.topk(k, dim=-1).indices.view(E, *batch.own.shape, k)
    for e, b, t in keep.nonzero().tolist():
        expected[b, e, top[e, b, t].numpy()] = True
    assert np.array_equal(bits[:, slot.start : slot.stop], expected.reshape(3, E * U))
