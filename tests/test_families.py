"""Every dense family fingerprints its MLP activation: D = layers x width, bits = a recomputation.

Tiny random-initialised models built from each family's transformers config (tests/tiny_models.py):
the hooked activation must equal what we recompute from the MLP's input with the MLP's own
projections, at both sites (gate: act_fn(gate); product: act_fn(gate) * up, down_proj's input).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import DENSE, ENCODER_DECODER, N_LAYERS, WIDTH, make_model

from mads_core.config import FingerprintConfig
from mads_core.model.fingerprint import ActivationRecorder, EncodedSample, FingerprintError, make_batch, run_batches
from mads_core.model.hooks import UP_NAMES, DenseSite, block_sites, transformer_blocks


def unpack(bits: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(np.ascontiguousarray(bits).view(np.uint8), axis=-1, bitorder="little")[..., :n].astype(bool)


def samples(seed: int = 0, lengths=(11, 6, 9)) -> list[EncodedSample]:
    """Three token sequences with a random own-token mask (at least one own token each)."""
    rng = np.random.default_rng(seed)
    out = []
    for n in lengths:
        own = rng.random(n) < 0.6
        own[n // 2] = True
        out.append(EncodedSample(tuple(int(t) for t in rng.integers(10, 4000, n)), tuple(bool(o) for o in own), False))
    return out


class _Loaded:
    """The bits of LoadedModel that run_batches needs, for an in-memory model."""

    def __init__(self, model):
        self.model, self.device = model, "cpu"
        self.tokenizer = type("Tok", (), {"pad_token_id": 0, "eos_token_id": 0})()


def _mlp_of(block, site: DenseSite):
    return block.get_submodule(site.path) if site.path else block


def reference_activation(mlp, x: torch.Tensor, site: str) -> torch.Tensor:
    """The MLP activation recomputed from the MLP's input ``x`` with its own projections."""
    if type(mlp).__name__.endswith("Intermediate"):  # BERT
        return mlp.intermediate_act_fn(mlp.dense(x))
    act = next(getattr(mlp, n) for n in ("act_fn", "act", "activation_fn") if hasattr(mlp, n))
    if hasattr(mlp, "gate_up_proj"):  # Phi-3: fused [gate; up]
        gate, up = mlp.gate_up_proj(x).chunk(2, dim=-1)
    elif hasattr(mlp, "gate_proj"):
        gate, up = mlp.gate_proj(x), mlp.up_proj(x)
    else:
        return act(next(getattr(mlp, n) for n in UP_NAMES if hasattr(mlp, n))(x))
    return act(gate) * up if site == "product" else act(gate)


def reference_pooled(model, batch, site: str) -> np.ndarray:
    """(B, layers * width) max over own tokens of the recomputed activation."""
    blocks = transformer_blocks(model)
    inputs: dict[int, torch.Tensor] = {}
    handles = []
    for i, block in enumerate(blocks):
        (dense,) = block_sites(block, site)
        mlp = _mlp_of(block, dense)
        up = mlp.dense if type(mlp).__name__.endswith("Intermediate") else next(
            getattr(mlp, n) for n in UP_NAMES if hasattr(mlp, n)
        )
        handles.append(up.register_forward_pre_hook(lambda _m, args, i=i: inputs.__setitem__(i, args[0])))
    with torch.no_grad():
        getattr(model, "base_model", model)(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
    for h in handles:
        h.remove()
    pooled = []
    with torch.no_grad():
        for i, block in enumerate(blocks):
            (dense,) = block_sites(block, site)
            act = reference_activation(_mlp_of(block, dense), inputs[i], site)
            act = act.view(*batch.own.shape, -1)  # OPT runs its MLP on (B*T, H)
            pooled.append(act.masked_fill(~batch.own[:, :, None], float("-inf")).amax(dim=1))
    return torch.cat(pooled, dim=1).float().numpy()


@pytest.mark.parametrize("site", ["gate", "product"])
@pytest.mark.parametrize("family", sorted(DENSE))
def test_dense_family_bits_equal_a_recomputation_from_the_mlp_input(family, site):
    model = make_model(family)
    batch = make_batch(samples(), pad_id=0)
    ref = reference_pooled(model, batch, site)
    assert ref.shape == (3, N_LAYERS * WIDTH)
    tau = float(np.quantile(ref, 0.8))  # random weights: activations are small; fire ~20%
    cfg = FingerprintConfig(threshold=tau, levels=(), site=site)
    recorder = ActivationRecorder(model, None, cfg)
    assert recorder.n_neurons == N_LAYERS * WIDTH  # D = layers x width
    with torch.no_grad():
        got = unpack(run_batches(_Loaded(model), samples(), recorder, 3)[0], recorder.n_neurons)
    expected = ref > tau
    near = np.abs(ref - tau) < 1e-5
    assert 0 < expected.sum() < expected.size
    assert np.array_equal(got[~near], expected[~near])


def test_gate_and_product_differ_on_a_gated_mlp_and_agree_on_a_plain_one():
    batch = make_batch(samples(), pad_id=0)
    llama = make_model("llama")
    assert not np.allclose(reference_pooled(llama, batch, "gate"), reference_pooled(llama, batch, "product"))
    gpt2 = make_model("gpt2")
    assert np.array_equal(reference_pooled(gpt2, batch, "gate"), reference_pooled(gpt2, batch, "product"))


def test_opt_activation_sits_on_the_block():
    (site,) = block_sites(transformer_blocks(make_model("opt"))[0])
    assert site.path == "" and site.width == WIDTH


@pytest.mark.parametrize("family", sorted(ENCODER_DECODER))
def test_encoder_decoders_are_refused_by_name_with_what_to_use(family):
    with pytest.raises(FingerprintError, match="encoder-decoder.*not supported.*decoder-only"):
        ActivationRecorder(make_model(family), None, FingerprintConfig())


def test_negative_layers_resolve_before_dedup_and_match_positive_ones():
    model = make_model("llama")
    rec = ActivationRecorder(model, (2, -1), FingerprintConfig())
    assert rec.layers == (2,) and rec.n_neurons == WIDTH  # not layer 2 twice
    assert ActivationRecorder(model, (-3, -2), FingerprintConfig()).layers == (0, 1)
    with pytest.raises(FingerprintError, match="out of range: the model has 3 layers"):
        ActivationRecorder(model, (3,), FingerprintConfig())
    with pytest.raises(FingerprintError, match="-4"):
        ActivationRecorder(model, (-4,), FingerprintConfig())
    cfg = FingerprintConfig(threshold=0.0)
    with torch.no_grad():
        a = run_batches(_Loaded(model), samples(), ActivationRecorder(model, (-1,), cfg), 3)
        b = run_batches(_Loaded(model), samples(), ActivationRecorder(model, (2,), cfg), 3)
    assert np.array_equal(a, b) and a.any()


# ---------------------------------------------------------------- settings and messages


def test_cli_reads_site_granularity_router_bits_and_layer_specs():
    from mads_core.cli import UsageError, build_parser, fingerprint_config_from_args, parse_layers

    args = build_parser().parse_args(
        ["fingerprint", "--site", "product", "--moe-granularity", "expert", "--router-bits", "--layers=-4--1,0"]
    )
    cfg = fingerprint_config_from_args(args)
    assert (cfg.site, cfg.moe_granularity, cfg.router_bits) == ("product", "expert", True)
    assert cfg.layers == (-4, -3, -2, -1, 0)
    assert fingerprint_config_from_args(build_parser().parse_args(["fingerprint", "--layers", "-1"])).layers == (-1,)
    assert cfg.with_layers(30).layers == (0, 26, 27, 28, 29)
    default = fingerprint_config_from_args(build_parser().parse_args(["fingerprint"]))
    assert default.cache_hash() == FingerprintConfig().cache_hash()
    assert cfg.cache_hash() != FingerprintConfig(layers=cfg.layers).cache_hash()
    with pytest.raises(UsageError, match="--layers: range '20--1' mixes"):
        parse_layers("20--1")
    with pytest.raises(UsageError, match="--layers: cannot read 'x'"):
        parse_layers("0,x")


def test_site_and_moe_settings_enter_the_key_only_off_their_defaults():
    base = FingerprintConfig()
    assert base.cache_hash() == FingerprintConfig(site="gate", moe_granularity="unit", router_bits=False).cache_hash()
    others = [FingerprintConfig(site="product"), FingerprintConfig(moe_granularity="expert"),
              FingerprintConfig(router_bits=True)]
    hashes = {base.cache_hash(), *(c.cache_hash() for c in others)}
    assert len(hashes) == 4
    with pytest.raises(ValueError, match="--site"):
        FingerprintConfig(site="up")


def test_a_mistyped_relative_folder_is_not_reported_as_a_hub_model(tmp_path, monkeypatch):
    from mads_core.config import ModelSpec
    from mads_core.model.models import ModelError, spec_kind

    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path)
    for name in ("models/llama-3", "./llama-3", "../nowhere/llama", "a/b/c"):
        with pytest.raises(ModelError, match=r"--model .*: model folder not found \(relative to "):
            spec_kind(ModelSpec(name=name))
    assert spec_kind(ModelSpec(name="HuggingFaceTB/SmolLM2-360M-Instruct")) == "hub"


def test_layer_spec_text_round_trips_including_negative_runs():
    from mads_core.config import format_layer_spec, parse_layer_spec, resolve_layers

    for layers in [None, (0,), (0, 1), (0, 1, 2, 5, 7, 8, 9, 29), (-3, -2, -1), (-1, 0, 1), (-2, -1, 0, 1, 2)]:
        assert parse_layer_spec(format_layer_spec(layers)) == layers
    assert format_layer_spec((-4, -3, -2, -1)) == "-4--1"
    assert resolve_layers((2, -1, 2, 0), 3) == (0, 2)
