"""Routing-aware fingerprints of mixture-of-experts blocks.

A neuron is (layer, expert, unit). It fires for a sample when an own token that the
router sent to that expert drives the unit above the threshold (pooled over those
tokens as for dense layers: max by default). Expert granularity pools over the
expert's units too: expert e fires when an own token routed to e drives any of its
units above the threshold. Router bits (optional) mark the experts any own token was
routed to.

How it is read. Transformers 5 stores an MoE block's experts as fused 3-D tensors
(``gate_up_proj`` of shape (E, 2I, H) or, transposed, (E, H, 2I); ``down_proj``) and runs
them with a grouped kernel that never exposes a per-expert activation. While a
:class:`~mads_core.model.fingerprint.ActivationRecorder` is active, the experts module's
``forward`` is replaced (on the instance, restored afterwards) by
:func:`routed_forward`, which computes what the default ``grouped_mm`` implementation
computes, with the same kernels (``transformers.integrations.moe._grouped_linear``), and
hands the intermediate activation of every (token, chosen expert) pair to the recorder
on the way. So the activation is read from the real computation: no second pass, and
the block's output is unchanged. Llama-4 runs every expert on every token with
router-scaled inputs; there the router's top-k choices (a forward hook on the router)
decide which rows count.

Sites: ``gate`` = ``act_fn(gate)`` (gpt-oss: its clamped ``gate * sigmoid(alpha * gate)``);
``product`` = what the down projection reads (``act_fn(gate) * up``; gpt-oss
``(up + 1) * glu``). Experts without a gate (``up_proj`` only) have one activation.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

from mads_core.model.hooks import ExpertsSite

# Records one block's expert activations: (act (S, I), token (S,), expert (S,)) -> None.
RowsFn = Callable[[Any, Any, Any], None]


def _grouped_linear_fn() -> Callable[..., Any]:
    try:  # the kernel the default experts implementation uses (identical numerics)
        from transformers.integrations.moe import _grouped_linear

        return _grouped_linear
    except ImportError:  # pragma: no cover - older/newer transformers: a plain per-expert loop
        return _loop_linear


def _loop_linear(x: Any, weight: Any, offsets: Any, bias: Any = None, is_transposed: bool = False) -> Any:
    """(S, in) rows sorted by expert -> (S, out); weight (E, in, out) if transposed else (E, out, in)."""
    import torch

    out = x.new_zeros((x.shape[0], weight.shape[2] if is_transposed else weight.shape[1]))
    start = 0
    for e, end in enumerate(offsets.tolist()):
        if end > start:
            w = weight[e] if is_transposed else weight[e].t()
            torch.mm(x[start:end], w.to(x.dtype), out=out[start:end])
        start = end
    if bias is not None:
        out.add_(bias)
    return out


def gate_activation(module: Any, gate_up: Any) -> Any:
    """``act_fn(gate)`` of (S, 2I) gate/up projections (gpt-oss: its clamped GLU)."""
    import torch

    concatenated = getattr(module, "is_concatenated", True)
    gate = gate_up[..., : gate_up.shape[-1] // 2] if concatenated else gate_up[..., ::2]
    if hasattr(module, "alpha") and hasattr(module, "limit"):  # gpt-oss
        gate = gate.clamp(max=module.limit)
        return gate * torch.sigmoid(gate * module.alpha)
    return module.act_fn(gate)


def _uses_default_gate(module: Any) -> bool:
    """Whether ``module._apply_gate`` is transformers' default ``act_fn(gate) * up`` on [gate; up]."""
    try:
        from transformers.integrations.moe import _default_apply_gate
    except ImportError:  # pragma: no cover
        return False
    default = getattr(type(module), "_apply_gate", None) is _default_apply_gate
    return default and bool(getattr(module, "is_concatenated", True))


def routed_forward(module: Any, site: str, record: RowsFn) -> Callable[..., Any]:
    """A replacement ``forward`` for a fused-experts module that records (see module doc).

    Mirrors ``transformers.integrations.moe.grouped_mm_experts_forward`` (no expert
    parallelism), with a stable sort so the row order is reproducible.
    """
    import torch

    linear = _grouped_linear_fn()
    default_gate = _uses_default_gate(module)

    def forward(hidden_states: Any, top_k_index: Any, top_k_weights: Any, *args: Any, **kwargs: Any) -> Any:
        num_top_k = top_k_index.size(-1)
        num_tokens, hidden_dim = hidden_states.size(0), hidden_states.size(-1)
        experts = top_k_index.reshape(-1)
        experts_sorted, perm = torch.sort(experts, stable=True)
        tokens = perm // num_top_k
        x = hidden_states[tokens]
        n_experts = module.num_experts
        offsets = torch.cumsum(torch.bincount(experts_sorted, minlength=n_experts)[:n_experts], 0).to(torch.int32)
        up = module.gate_up_proj if module.has_gate else module.up_proj
        up_bias = None
        if module.has_bias:
            up_bias = (module.gate_up_proj_bias if module.has_gate else module.up_proj_bias)[experts_sorted]
        h = linear(x, up, offsets, bias=up_bias, is_transposed=module.is_transposed)
        if module.has_gate and default_gate:  # act_fn(gate) * up, computed once for both sites
            gate, up_half = h.chunk(2, dim=-1)
            act = module.act_fn(gate)
            product = act * up_half
            record(product if site == "product" else act, tokens, experts_sorted)
        elif module.has_gate:
            product = module._apply_gate(h)
            record(product if site == "product" else gate_activation(module, h), tokens, experts_sorted)
        else:
            product = module.act_fn(h)
            record(product, tokens, experts_sorted)
        down_bias = module.down_proj_bias[experts_sorted] if module.has_bias else None
        out = linear(product, module.down_proj, offsets, bias=down_bias, is_transposed=module.is_transposed)
        if getattr(module, "has_post_expert_norm", False):
            out = module.post_expert_norm(out)
        out = out * top_k_weights.reshape(-1)[perm].unsqueeze(-1)
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(perm.size(0), device=perm.device)
        out = out[inverse].view(num_tokens, num_top_k, hidden_dim).sum(dim=1)
        return out.to(hidden_states.dtype)

    return forward


def dense_bmm_forward(module: Any, site: str, record: RowsFn, routed: dict[str, Any]) -> Callable[..., Any]:
    """A replacement ``forward`` for Llama-4 experts (every expert on every token).

    ``routed["mask"]`` is the (tokens, E) bool of the router's top-k choices, set by the
    router hook that runs just before (see :func:`install`).
    """
    import torch

    def forward(hidden_states: Any) -> Any:
        n_experts, hidden = module.gate_up_proj.shape[0], module.hidden_size
        x = hidden_states.view(n_experts, -1, hidden)
        gate_up = torch.bmm(x, module.gate_up_proj)
        gate, up = gate_up.chunk(2, dim=-1)
        act = module.act_fn(gate)
        product = up * act
        mask = routed.pop("mask").t()  # (E, tokens)
        expert_idx, token_idx = mask.nonzero(as_tuple=True)
        value = product if site == "product" else act
        record(value[expert_idx, token_idx], token_idx, expert_idx)
        out = torch.bmm(product, module.down_proj)
        return out.view(-1, hidden)

    return forward


def install(site_info: ExpertsSite, site: str, record: RowsFn) -> list[Any]:
    """Put the recording forward on an experts module; returns undo handles (``.remove()``)."""
    module = site_info.module
    handles: list[Any] = []
    if site_info.style == "routed":
        module.forward = routed_forward(module, site, record)
    else:
        import torch

        routed: dict[str, Any] = {}
        top_k = site_info.router.top_k

        def router_hook(_module: Any, _inputs: Any, output: Any) -> None:
            logits = output[1]
            mask = torch.zeros_like(logits, dtype=torch.bool)
            mask.scatter_(1, torch.topk(logits, top_k, dim=1).indices, True)
            routed["mask"] = mask

        handles.append(site_info.router.register_forward_hook(router_hook))
        module.forward = dense_bmm_forward(module, site, record, routed)
    handles.append(_ForwardUndo(module))
    return handles


class _ForwardUndo:
    """Removes the instance-level ``forward`` so the class's own forward is used again."""

    def __init__(self, module: Any):
        self.module = module

    def remove(self) -> None:
        self.module.__dict__.pop("forward", None)


def pool_rows(
    act: Any,
    tokens: Any,
    experts: Any,
    own: Any,
    n_experts: int,
    config: Any,
    granularity: str,
) -> tuple[Any, Any]:
    """Pool (token, expert) activation rows per sample.

    act: (S, I) activations of the rows; tokens: (S,) flat token index into the (B, T)
    batch; experts: (S,) expert of each row. Rows come sorted by (expert, token), as both
    recording forwards produce them (a stable sort by expert of token-major pairs); other
    orders are sorted here. own: (B, T) bool own-token mask.
    Returns ``(fired, routed)``: fired (P, B, E*I) bool for unit granularity (neuron
    ``e * I + u``) or (P, B, E) for expert granularity, P = ``len(config.planes)``;
    routed (B, E) bool: expert e got at least one own token of sample b. Rows of
    non-own tokens are dropped first, so an expert no own token was routed to never fires.
    Pooling is a segment reduction over contiguous (expert, sample) runs
    (``torch.segment_reduce``: ~30x faster on CPU than a scatter with a 2-D index).
    """
    import torch

    n_batch, n_tok = own.shape
    n_groups = n_batch * n_experts
    if config.rule == "topk":
        return _pool_topk(act, tokens, experts, own, n_experts, config, granularity)
    # Key of each row: (expert, sample) group, times 2, + 1 for rows that do not count
    # (non-own tokens, expert-parallel sentinels). Rows arrive sorted by (expert, token),
    # so equal keys form runs: reduce each run first (no copy of the rows), keep own runs.
    drop = ~own.reshape(-1)[tokens] | (experts >= n_experts)
    key = (experts.clamp(max=n_experts - 1) * n_batch + tokens // n_tok) * 2 + drop.long()
    run_keys, run_lengths = torch.unique_consecutive(key, return_counts=True)
    values = act.float()
    reduce = "max" if config.pooling == "max" else "sum"
    runs = torch.segment_reduce(values, reduce, lengths=run_lengths, unsafe=True)
    counting = run_keys % 2 == 0
    runs, group, run_lengths = runs[counting], run_keys[counting] // 2, run_lengths[counting]
    if len(group) > 1 and bool((group[1:] < group[:-1]).any()):  # rows were not in (expert, token) order
        order = torch.argsort(group, stable=True)
        runs, group, run_lengths = runs[order], group[order], run_lengths[order]
    lengths = torch.bincount(group, minlength=n_groups)
    routed = (lengths > 0).view(n_experts, n_batch).t()  # (B, E)
    if config.pooling == "max":
        pooled = torch.segment_reduce(runs, "max", lengths=lengths, unsafe=True, initial=float("-inf"))
    else:
        sums = torch.segment_reduce(runs, "sum", lengths=lengths, unsafe=True, initial=0.0)
        counts = torch.zeros(n_groups, device=act.device).index_add_(0, group, run_lengths.float())
        pooled = (sums / counts.clamp(min=1)[:, None]).masked_fill((lengths == 0)[:, None], float("-inf"))
    if granularity == "expert":
        pooled = pooled.amax(-1, keepdim=True)
    thresholds = torch.tensor(config.planes, device=act.device, dtype=torch.float32)
    fired = _per_sample(pooled, n_experts, n_batch)[None] > thresholds[:, None, None]
    return fired, routed


def _per_sample(x: Any, n_experts: int, n_batch: int) -> Any:
    """(E * B, w) expert-major rows -> (B, E * w)."""
    return x.view(n_experts, n_batch, -1).transpose(0, 1).reshape(n_batch, -1)


def _pool_topk(act: Any, tokens: Any, experts: Any, own: Any, n_experts: int, config: Any, granularity: str):
    """:func:`pool_rows` for ``rule="topk"``: a unit fires when among its expert's top-k on an own token."""
    import torch

    n_batch, n_tok = own.shape
    keep = own.reshape(-1)[tokens] & (experts < n_experts)
    act, tokens, experts = act[keep], tokens[keep], experts[keep]
    group = experts * n_batch + tokens // n_tok
    n_groups = n_batch * n_experts
    hits = torch.zeros((n_groups, act.shape[-1]), dtype=torch.bool, device=act.device)
    if len(group):
        top = act.topk(min(config.top_k, act.shape[-1]), dim=-1).indices
        hits[group[:, None].expand_as(top), top] = True
    routed = torch.bincount(group, minlength=n_groups).gt(0).view(n_experts, n_batch).t()
    if granularity == "expert":
        hits = hits.any(-1, keepdim=True)
    return _per_sample(hits, n_experts, n_batch)[None], routed


def forward_replaced(module: Any) -> bool:
    """Whether a recording forward is currently installed on ``module``."""
    return isinstance(module.__dict__.get("forward"), types.FunctionType)
