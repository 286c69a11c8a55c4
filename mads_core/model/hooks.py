"""Where each model family's neuron activation sits: the blocks, and the sites in each block.

A *site* is one tensor per block whose last dimension is a set of neurons:

* ``DenseSite`` — an MLP (or the block itself, as in OPT) with an up-projection, an
  activation and a down-projection. Gated MLPs (Llama, Mistral, Qwen, Gemma, Phi-3,
  OLMo, Granite, shared experts of MoE blocks, ...) expose two readings:
  ``site="gate"`` — the output of the activation module, ``act_fn(gate_proj(x))``;
  ``site="product"`` — the input of ``down_proj``, ``act_fn(gate_proj(x)) * up_proj(x)``.
  Non-gated MLPs (GPT-2, GPT-NeoX, Falcon, Phi-2, OPT, ...) have one activation, read
  as the activation module's output (= the down-projection's input) for either site.
  BERT-style encoders: the ``intermediate`` module's output.
* ``ExpertsSite`` — the fused expert tensors of a mixture-of-experts block
  (``gate_up_proj`` / ``down_proj`` parameters of shape ``(E, ...)``; Mixtral, Qwen2/3-MoE,
  OLMoE, DeepSeek-V2/V3, GraniteMoE, PhiMoE, gpt-oss, Gemma-4, Llama-4, ...).
  Recorded by :mod:`mads_core.model.moe`.

Discovery walks each block's modules in registration order, so the neuron order is
fixed by the architecture. Everything here works on a ``meta``-device model, so a
model that cannot be hooked is refused before its weights are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mads_core.model.encode import FingerprintError

# Module attribute names, per role, as used across transformers' model families.
UP_NAMES = ("gate_proj", "up_proj", "gate_up_proj", "c_fc", "fc1", "fc_in", "dense_h_to_4h", "w1", "wi")
DOWN_NAMES = ("down_proj", "c_proj", "fc2", "fc_out", "dense_4h_to_h", "w2", "wo")
ACT_NAMES = ("act_fn", "act", "activation_fn", "activation", "act_func")
GATED_NAMES = ("gate_proj", "gate_up_proj")

ENCODER_DECODER_MESSAGE = (
    "{name} is an encoder-decoder model (T5, BART, mBART, Pegasus, ... are not supported): MADS "
    "fingerprints a decoder-only (causal) language model, as used for instruction tuning. Use a "
    "decoder-only model (e.g. --model bundled, a Llama/Qwen/Mistral/Gemma folder) or an encoder (BERT-style)."
)


@dataclass(frozen=True)
class DenseSite:
    """One MLP activation of a block: ``width`` neurons, read from ``module``.

    ``mode``: ``"output"`` — a forward hook on ``module`` (its output is the activation);
    ``"input"`` — a forward pre-hook on ``module`` (its first input is the activation).
    """

    path: str  # dotted name inside the block ('' = the block itself)
    module: Any
    mode: str
    width: int

    kind = "dense"


@dataclass(frozen=True)
class ExpertsSite:
    """Fused experts of an MoE block: ``n_experts`` experts of ``expert_width`` units each.

    ``style``: ``"routed"`` — ``forward(hidden (S, H), top_k_index (S, k), top_k_weights)``
    (transformers' ``use_experts_implementation`` classes); ``"dense_bmm"`` — every expert
    runs on every token with router-scaled inputs (Llama-4); ``router`` is then the router
    module whose logits say which tokens each expert really got.
    """

    path: str
    module: Any
    n_experts: int
    expert_width: int
    style: str
    router: Any = None

    kind = "experts"


def is_encoder_decoder(model: Any) -> bool:
    cfg = getattr(model, "config", None)
    return bool(getattr(cfg, "is_encoder_decoder", False))


def transformer_blocks(model: Any) -> list[Any]:
    """The transformer blocks of a model, in forward order.

    Raises FingerprintError for encoder-decoders (naming them unsupported and what to
    use) and for models without a recognisable list of blocks.
    """
    if is_encoder_decoder(model):
        raise FingerprintError(ENCODER_DECODER_MESSAGE.format(name=type(model).__name__))
    base = getattr(model, "base_model", model)
    paths = (
        "layers",
        "h",
        "encoder.layer",
        "decoder.layers",
        "language_model.layers",
        "model.layers",
        "language_model.model.layers",
        "transformer.h",
        "blocks",
    )
    for path in paths:
        obj = base
        for attr in path.split("."):
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if obj is not None and hasattr(obj, "__len__") and len(obj) > 0:
            return list(obj)
    raise FingerprintError(
        f"unsupported model family {type(model).__name__}: no list of transformer blocks found "
        "(looked for layers, h, encoder.layer, decoder.layers, language_model.layers)"
    )


def _linear_in_out(module: Any) -> tuple[int, int] | None:
    """(in, out) features of a Linear or a GPT-2 style Conv1D; None for anything else."""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features)
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and weight is not None and weight.dim() == 2:
        return int(weight.shape[0]), int(weight.shape[1])
    return None


def _child(module: Any, names: tuple[str, ...]) -> tuple[str, Any] | tuple[None, None]:
    for name in names:
        child = getattr(module, name, None)
        if child is not None:
            return name, child
    return None, None


def _is_module(obj: Any) -> bool:
    return hasattr(obj, "register_forward_hook")


def _fused_experts(module: Any) -> bool:
    """Expert weights stored as 3-D tensors (E, ...), one module for all experts."""
    up = getattr(module, "gate_up_proj", None)
    if up is None:
        up = getattr(module, "up_proj", None)
    down = getattr(module, "down_proj", None)
    return (
        up is not None
        and down is not None
        and not _is_module(up)
        and getattr(up, "dim", lambda: 0)() == 3
        and getattr(down, "dim", lambda: 0)() == 3
    )


def _experts_site(path: str, module: Any, parent: Any) -> ExpertsSite:
    up = getattr(module, "gate_up_proj", None)
    gated = up is not None
    if up is None:
        up = module.up_proj
    n_experts = int(up.shape[0])
    if hasattr(module, "has_gate") and hasattr(module, "is_transposed"):
        out_dim = int(up.shape[2] if module.is_transposed else up.shape[1])
        width = out_dim // 2 if gated and module.has_gate else out_dim
        return ExpertsSite(path, module, n_experts, width, "routed")
    if type(module).__name__ == "Llama4TextExperts":
        router = getattr(parent, "router", None)
        if router is None:
            raise FingerprintError(f"{path}: Llama-4 experts without a router next to them; cannot tell routed tokens")
        return ExpertsSite(path, module, n_experts, int(up.shape[2]) // 2, "dense_bmm", router)
    raise FingerprintError(
        f"mixture-of-experts module {type(module).__name__} ({path or 'block'}) uses an expert kernel this "
        "version does not know how to read (supported: transformers' fused experts, e.g. Mixtral, Qwen-MoE, "
        "DeepSeek, OLMoE, GraniteMoE, PhiMoE, gpt-oss, Gemma-4, Llama-4)"
    )


def _dense_site(path: str, module: Any, site: str) -> DenseSite | None:
    """The activation site of ``module`` when it is an MLP (up, act, down), else None."""
    inter = getattr(module, "dense", None)
    if type(module).__name__.endswith("Intermediate") and inter is not None:  # BERT-style encoders
        io = _linear_in_out(inter)
        return DenseSite(path, module, "output", io[1]) if io else None
    up_name, up = _child(module, UP_NAMES)
    down_name, down = _child(module, DOWN_NAMES)
    if up is None or down is None or not _is_module(up) or not _is_module(down):
        return None
    down_io, up_io = _linear_in_out(down), _linear_in_out(up)
    if down_io is None or up_io is None:
        return None
    width = down_io[0]
    _, act = _child(module, ACT_NAMES)
    act = act if act is not None and _is_module(act) else None
    gated = any(getattr(module, n, None) is not None for n in GATED_NAMES) and (
        up_name != "gate_up_proj" or up_io[1] == 2 * width
    )
    if gated and site == "product":
        return DenseSite(path, down, "input", width)
    if act is not None:
        return DenseSite(path, act, "output", width)
    if gated:
        raise FingerprintError(
            f"{type(module).__name__} ({path or 'block'}): its gate activation is not a module, so "
            "--site gate cannot be read; use --site product"
        )
    return DenseSite(path, down, "input", width)


def _inside_expert_list(path: str, block: Any) -> bool:
    obj = block
    for part in path.split(".")[:-1] if path else []:
        obj = getattr(obj, part, None)
        if obj is None:
            return False
        if type(obj).__name__ == "ModuleList" and "expert" in part.lower():
            return True
    return False


def block_sites(block: Any, site: str = "gate") -> list[DenseSite | ExpertsSite]:
    """Every neuron site of one block, in module registration order.

    Raises FingerprintError when a block has none, or has a mixture-of-experts layout
    whose routed tokens cannot be told apart (per-expert module lists).
    """
    found: list[DenseSite | ExpertsSite] = []
    claimed: list[str] = []
    modules = dict(block.named_modules())
    for path, module in modules.items():
        if any(path == c or path.startswith(c + ".") for c in claimed if c) or (claimed and "" in claimed):
            continue
        if _fused_experts(module):
            parent = modules.get(path.rsplit(".", 1)[0] if "." in path else "", block)
            found.append(_experts_site(path, module, parent))
            claimed.append(path)
            continue
        dense = _dense_site(path, module, site)
        if dense is None:
            continue
        if _inside_expert_list(path, block):
            raise FingerprintError(
                f"{type(block).__name__}: mixture-of-experts with one module per expert ({path}) is not "
                "supported: which tokens each expert received cannot be read from its activations"
            )
        found.append(dense)
        claimed.append(path)
    if not found:
        raise FingerprintError(
            f"no MLP activation found in block {type(block).__name__}: it has no MLP (up-projection, "
            "activation, down-projection) and no fused experts this version can read"
        )
    return found
