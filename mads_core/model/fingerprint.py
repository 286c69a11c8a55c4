"""Activation fingerprints: which MLP neurons fire on each sample's own tokens.

Pipeline per sample: render it (chat template or plain text), tokenize with
character offsets, mark the sample's *own* tokens (its user/assistant contents;
never template, system or padding tokens), run the model with forward hooks on
each chosen layer's MLP activation, pool each neuron over the own tokens (max by
default: "fires on any own token"), compare with the thresholds, pack bits.

Where the activation sits in each model family is :mod:`mads_core.model.hooks`;
mixture-of-experts blocks are recorded routing-aware by :mod:`mads_core.model.moe`.

Why the masking matters: with template and system tokens counted, the system
prompt dominates a max-over-tokens fingerprint and different samples get
near-identical fingerprints (measured: six unrelated prompts each fired ~37% of
neurons, nearly the same ones).

Batches are length-sorted (less padding) and padded on the right; a sample's
bits do not depend on its batch mates. Work is split into chunks of the
length-sorted order; each finished chunk is committed to the cache atomically,
so an interrupted run resumes with only the missing chunks.

The three steps are separate functions so that other engines reuse them
unchanged: :func:`plan_chunks` (which rows form each chunk: deterministic),
:func:`compute_chunk` (one chunk's bits; also what a Ray worker runs, see
``mads_core.distributed``) and :func:`finish_fingerprints` (assembly into the
result folder). Whoever computed a chunk, the cache bytes are the same.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mads_core.config import (
    FINGERPRINT_FORMAT_VERSION,
    FingerprintConfig,
    ModelSpec,
    canonical_json,
    resolve_layers,
    sha256_text,
)
from mads_core.data.loader import Dataset
from mads_core.model import moe
from mads_core.model.encode import EncodedSample, FingerprintError, encode_sample, render_sample  # noqa: F401 (re-exported)
from mads_core.model.hooks import DenseSite, ExpertsSite, block_sites, transformer_blocks
from mads_core.model.models import LoadedModel, load_model, model_identity, model_skeleton
from mads_core.model.store import artifact_dir, commit_folder, load_arrays, new_tmp_folder, remove_entry, save_arrays

ProgressFn = Callable[[int, int], None]  # (samples done, samples total)
DEFAULT_CHUNK_SIZE = 256


# ---------------------------------------------------------------- result


@dataclass(frozen=True)
class Fingerprints:
    """Packed fingerprints of a dataset (see docs/CONTRACTS.md for the bit layout)."""

    planes: np.ndarray
    n_neurons: int
    layers: tuple[int, ...]
    layer_offsets: tuple[int, ...]
    plane_thresholds: tuple[float, ...]
    firing_counts: np.ndarray
    token_counts: np.ndarray
    truncated: np.ndarray
    key: str
    path: str | None = None
    cache_hit: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def bits(self) -> np.ndarray:
        """Plane 0, (N, W) uint64: bit d set when neuron d fires for the sample."""
        return self.planes[0]

    @property
    def n_samples(self) -> int:
        return int(self.planes.shape[1])

    def fired_per_sample(self) -> np.ndarray:
        """(N,) number of neurons firing per sample."""
        return np.bitwise_count(np.asarray(self.bits)).sum(axis=1, dtype=np.int64)

    def layer_firing_rates(self) -> np.ndarray:
        """(n_layers,) mean fraction of a layer's neurons firing per sample."""
        n = max(self.n_samples, 1)
        starts, ends = self.layer_offsets[:-1], self.layer_offsets[1:]
        return np.array([self.firing_counts[a:b].sum() / (n * (b - a)) for a, b in zip(starts, ends, strict=False)])

    def summary(self) -> dict[str, float]:
        """Firing-rate figures for reports: per-sample share of neurons, and neurons ever firing."""
        per_sample = self.fired_per_sample() / self.n_neurons
        return {
            "n_samples": self.n_samples,
            "n_neurons": self.n_neurons,
            "fired_per_sample_mean": float(per_sample.mean()) if len(per_sample) else 0.0,
            "fired_per_sample_p10": float(np.percentile(per_sample, 10)) if len(per_sample) else 0.0,
            "fired_per_sample_p50": float(np.percentile(per_sample, 50)) if len(per_sample) else 0.0,
            "fired_per_sample_p90": float(np.percentile(per_sample, 90)) if len(per_sample) else 0.0,
            "neurons_ever_firing": float((self.firing_counts > 0).mean()),
            "n_truncated": int(np.asarray(self.truncated).sum()),
        }


# ---------------------------------------------------------------- hooks


def _layer_list(model: Any) -> list[Any]:
    """The transformer blocks of a model (see :func:`mads_core.model.hooks.transformer_blocks`)."""
    return transformer_blocks(model)


class _StopForward(Exception):
    """Raised after the last hooked layer: later layers and the LM head are skipped."""


@dataclass(frozen=True)
class _Slot:
    """One site's bit range ``[start, stop)`` in the fingerprint (router bits after its neurons)."""

    layer: int
    site: DenseSite | ExpertsSite
    start: int
    stop: int
    router_start: int = -1  # experts sites with router bits: where they begin (stop = router_start + E)


class ActivationRecorder:
    """Forward hooks that pool each hooked layer's activations into firing bits.

    Built on the loaded model or on a ``meta``-device copy of it (geometry only), so a
    model that cannot be hooked is refused before its weights load. ``layers`` may hold
    negative indices; they are resolved, deduplicated and sorted (``self.layers``).
    Each layer contributes its sites (:func:`mads_core.model.hooks.block_sites`) in
    module order: dense MLPs ``width`` neurons; MoE experts ``E * I`` (unit granularity)
    or ``E`` (expert granularity), then ``E`` router bits if ``config.router_bits``.
    ``layer_offsets[j]`` is where layer ``self.layers[j]`` starts; ``n_neurons`` is D.
    Errors: FingerprintError naming the layer and what is missing.
    """

    def __init__(self, model: Any, layers: Sequence[int] | None, config: FingerprintConfig):
        blocks = transformer_blocks(model)
        try:
            self.layers = tuple(range(len(blocks))) if layers is None else resolve_layers(tuple(layers), len(blocks))
        except ValueError as exc:
            raise FingerprintError(str(exc)) from None
        self.config = config
        self.n_model_layers = len(blocks)
        self.slots: list[_Slot] = []
        offsets = [0]
        for i in self.layers:
            try:
                sites = block_sites(blocks[i], config.site)
            except FingerprintError as exc:
                raise FingerprintError(f"layer {i}: {exc}") from None
            position = offsets[-1]
            for site in sites:
                if isinstance(site, ExpertsSite):
                    width = site.n_experts * (site.expert_width if config.moe_granularity == "unit" else 1)
                    router = site.n_experts if config.router_bits else 0
                    self.slots.append(_Slot(i, site, position, position + width + router,
                                            position + width if router else -1))
                    position += width + router
                else:
                    self.slots.append(_Slot(i, site, position, position + site.width))
                    position += site.width
            offsets.append(position)
        self.layer_offsets = tuple(offsets)
        self.n_neurons = offsets[-1]
        self.last_layer = max(self.layers)
        self.stop_block = blocks[self.last_layer]
        self.modules = [slot.site.module for slot in self.slots]
        self.has_moe = any(isinstance(slot.site, ExpertsSite) for slot in self.slots)
        self._handles: list[Any] = []
        self.own = None
        self.fired = None

    def __enter__(self) -> ActivationRecorder:
        for slot in self.slots:
            site = slot.site
            if isinstance(site, ExpertsSite):
                self._handles.extend(moe.install(site, self.config.site, self._experts_record(slot)))
            elif site.mode == "input":
                self._handles.append(site.module.register_forward_pre_hook(self._dense_pre_hook(slot)))
            else:
                self._handles.append(site.module.register_forward_hook(self._dense_hook(slot)))
        if self.stop_early:
            self._handles.append(self.stop_block.register_forward_hook(self._stop))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @staticmethod
    def _stop(_module: Any, _inputs: Any, _output: Any) -> None:
        raise _StopForward

    def _dense_hook(self, slot: _Slot):
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            self._record_dense(slot, output)

        return hook

    def _dense_pre_hook(self, slot: _Slot):
        def hook(_module: Any, inputs: Any) -> None:
            self._record_dense(slot, inputs[0])

        return hook

    def _record_dense(self, slot: _Slot, act: Any) -> None:
        if act.dim() == 2:  # e.g. shared experts of Qwen2-MoE run on (B*T, H)
            act = act.view(self.own.shape[0], self.own.shape[1], -1)
        self.fired[:, :, slot.start : slot.stop] = self._pool(act)

    def _experts_record(self, slot: _Slot):
        site = slot.site
        granularity = self.config.moe_granularity

        def record(act: Any, tokens: Any, experts: Any) -> None:
            fired, routed = moe.pool_rows(act, tokens, experts, self.own, site.n_experts, self.config, granularity)
            end = slot.router_start if slot.router_start >= 0 else slot.stop
            self.fired[:, :, slot.start : end] = fired
            if slot.router_start >= 0:
                self.fired[:, :, slot.router_start : slot.stop] = routed[None]

        return record

    def _pool(self, act: Any) -> Any:
        """(P, B, width) bool: which neurons fire for each sample of the batch."""
        import torch

        own = self.own  # (B, T) bool
        cfg = self.config
        if cfg.rule == "topk":
            k = min(cfg.top_k, act.shape[-1])
            idx = act.topk(k, dim=-1).indices  # (B, T, k)
            hits = torch.zeros(act.shape[0], act.shape[-1], dtype=torch.bool, device=act.device)
            rows = torch.arange(act.shape[0], device=act.device)[:, None, None].expand_as(idx)
            keep = own[:, :, None].expand_as(idx)
            hits[rows[keep], idx[keep]] = True
            return hits[None]
        if cfg.pooling == "max":
            masked = act.masked_fill(~own[:, :, None], float("-inf"))
            pooled = masked.amax(dim=1).float()
        else:
            weights = own[:, :, None].to(act.dtype)
            pooled = (act * weights).sum(dim=1).float() / own.sum(dim=1, keepdim=True).clamp(min=1).float()
        thresholds = torch.tensor(cfg.planes, device=act.device, dtype=torch.float32)
        return pooled[None] > thresholds[:, None, None]

    stop_early = True


def _pack_bits(fired: np.ndarray, n_words: int) -> np.ndarray:
    """(..., D) bool -> (..., n_words) uint64; neuron d at word d//64, bit d%64."""
    pad = n_words * 64 - fired.shape[-1]
    if pad:
        fired = np.concatenate([fired, np.zeros(fired.shape[:-1] + (pad,), dtype=bool)], axis=-1)
    packed = np.packbits(fired, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8")


@dataclass(frozen=True)
class Batch:
    """Right-padded tensors of one batch: token ids, attention mask, own-token mask."""

    input_ids: Any
    attention_mask: Any
    own: Any

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def make_batch(samples: Sequence[EncodedSample], pad_id: int) -> Batch:
    """Pad samples on the right (positions of real tokens do not move)."""
    import torch

    width = max(1, max(len(s.input_ids) for s in samples))
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(samples), width), dtype=torch.long)
    own = torch.zeros((len(samples), width), dtype=torch.bool)
    for row, sample in enumerate(samples):
        n = len(sample.input_ids)
        ids[row, :n] = torch.tensor(sample.input_ids, dtype=torch.long)
        attn[row, :n] = 1
        own[row, :n] = torch.tensor(sample.own_mask, dtype=torch.bool)
    return Batch(ids, attn, own)


def pad_token_id(tokenizer: Any) -> int:
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id or 0
    return int(pad_id)


def forward_batch(loaded: LoadedModel, batch: Batch) -> None:
    """Run the base model (no LM head) on one batch; hooks, if any, do the recording."""
    base = getattr(loaded.model, "base_model", loaded.model)
    with contextlib.suppress(_StopForward):
        base(input_ids=batch.input_ids.to(loaded.device), attention_mask=batch.attention_mask.to(loaded.device))


def fingerprint_batch(loaded: LoadedModel, recorder: ActivationRecorder, batch: Batch) -> np.ndarray:
    """(P, len(batch), W) packed bits of one batch. ``recorder`` must be entered (hooks on)."""
    import torch

    recorder.own = batch.own.to(loaded.device)
    recorder.fired = torch.zeros(
        (len(recorder.config.planes), len(batch), recorder.n_neurons), dtype=torch.bool, device=loaded.device
    )
    forward_batch(loaded, batch)
    return _pack_bits(recorder.fired.cpu().numpy(), (recorder.n_neurons + 63) // 64)


def batch_spans(lengths: Sequence[int], batch_size: int, batch_tokens: int = 0) -> list[tuple[int, int]]:
    """(start, end) of each batch over samples in the given (length-sorted) order.

    ``batch_tokens`` > 0: a padded-token budget per batch instead of a fixed count
    (batch width x samples <= budget, at least one sample), so short samples share
    big batches and long ones get small batches (steady GPU memory). 0: fixed
    ``batch_size``. Either way results do not change, only speed.
    """
    n = len(lengths)
    if batch_tokens <= 0:
        return [(start, min(n, start + batch_size)) for start in range(0, n, batch_size)]
    spans, start, width = [], 0, 0
    for i, length in enumerate(lengths):
        wider = max(width, int(length), 1)
        if i > start and wider * (i - start + 1) > batch_tokens:
            spans.append((start, i))
            start, wider = i, max(int(length), 1)
        width = wider
    if start < n:
        spans.append((start, n))
    return spans


def run_batches(
    loaded: LoadedModel,
    encoded: Sequence[EncodedSample],
    recorder: ActivationRecorder,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
    batch_tokens: int = 0,
) -> np.ndarray:
    """Forward ``encoded`` samples in the given order, batch by batch; (P, n, W) packed bits."""
    import torch

    n_words = (recorder.n_neurons + 63) // 64
    out = np.zeros((len(recorder.config.planes), len(encoded), n_words), dtype=np.uint64)
    pad_id = pad_token_id(loaded.tokenizer)
    spans = batch_spans([len(s.input_ids) for s in encoded], batch_size, batch_tokens)
    with torch.inference_mode(), recorder:
        for start, end in spans:
            batch = make_batch(encoded[start:end], pad_id)
            out[:, start:end] = fingerprint_batch(loaded, recorder, batch)
            if on_batch is not None:
                on_batch(len(batch))
    return out


def compute_chunk(
    loaded: LoadedModel,
    recorder: ActivationRecorder,
    samples: Sequence[EncodedSample],
    batch_size: int,
    batch_tokens: int = 0,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(P, len(samples), W) packed bits of one chunk (= one shard), samples in plan order.

    The one per-shard compute, called by the local engine and by Ray workers alike.
    """
    return run_batches(loaded, samples, recorder, batch_size, on_batch, batch_tokens)


# ---------------------------------------------------------------- cache + driver


def canonical_config(
    config: FingerprintConfig,
    identity: dict[str, Any] | None = None,
    spec: ModelSpec | None = None,
    model: Any = None,
) -> FingerprintConfig:
    """``config`` with its layers in canonical form (see ``FingerprintConfig.with_layers``).

    Negative layers need the layer count: read from ``model`` when given, else from the
    model's ``meta``-device skeleton (``spec``, or rebuilt from ``identity``), never from
    its weights. FingerprintError names out-of-range layers.
    """
    if config.layers is None or all(i >= 0 for i in config.layers):
        return config.with_layers()
    if model is None:
        if spec is None:
            if identity is None:
                raise FingerprintError("--layers: negative layers need the model (its layer count)")
            kind = identity.get("kind")
            name = "bundled" if kind == "bundled" else identity["name"]
            spec = ModelSpec(name=name, revision=identity.get("revision"))
        model = model_skeleton(spec)
    try:
        return config.with_layers(len(transformer_blocks(model)))
    except ValueError as exc:
        raise FingerprintError(str(exc)) from None


def fingerprint_key(
    dataset_hash: str, identity: dict[str, Any], config: FingerprintConfig, model: Any = None
) -> str:
    """Cache key: records, model identity, settings that change bits, format version.

    Layers enter in canonical form (resolved, deduplicated, sorted), so ``--layers -1``
    and ``--layers 29`` share a key on a 30-layer model; pass ``model`` (loaded or meta)
    to save rebuilding its skeleton when layers are negative.
    """
    config = canonical_config(config, identity=identity, model=model)
    payload = {
        "dataset": dataset_hash,
        "model": identity["hash"],
        "settings": config.cache_hash(),
        "format": FINGERPRINT_FORMAT_VERSION,
    }
    return sha256_text(canonical_json(payload))[:24]


def _from_cache(arrays: dict[str, np.ndarray], meta: dict[str, Any], folder: Path, hit: bool) -> Fingerprints:
    return Fingerprints(
        planes=arrays["planes"],
        n_neurons=int(meta["n_neurons"]),
        layers=tuple(meta["layers"]),
        layer_offsets=tuple(meta["layer_offsets"]),
        plane_thresholds=tuple(float(t) for t in meta["plane_thresholds"]),
        firing_counts=arrays["firing_counts"],
        token_counts=arrays["token_counts"],
        truncated=arrays["truncated"].astype(bool),
        key=meta["key"],
        path=str(folder),
        cache_hit=hit,
        meta=meta,
    )


@dataclass
class RunStats:
    """What a fingerprint run did: chunks computed vs reused, tokens read."""

    chunks_total: int = 0
    chunks_cached: int = 0
    chunks_computed: int = 0
    samples_computed: int = 0
    tokens_computed: int = 0


def cached_fingerprints(
    dataset: Dataset, spec: ModelSpec, config: FingerprintConfig, cache: str | Path | None = None
) -> Fingerprints | None:
    """The cached result when present and intact (no model is loaded), else None."""
    key = fingerprint_key(dataset.content_hash(), model_identity(spec), canonical_config(config, spec=spec))
    folder = artifact_dir("fingerprints", key, cache) / "result"
    found = load_arrays(folder)
    return None if found is None else _from_cache(*found, folder, hit=True)


@dataclass(frozen=True)
class ChunkPlan:
    """Deterministic split of a dataset into cache chunks (= the shards of a distributed run).

    Samples are sorted by token length (stable sort), then cut into runs of
    ``chunk_size``; chunk ``i`` holds rows ``chunks[i]`` and is committed at
    ``<root>/chunks/c{chunk_size}-{i:06d}``. The plan depends only on the records, the
    tokenizer and the settings, so every process that builds it agrees on what each
    chunk holds, and a chunk computed anywhere is reused everywhere.
    """

    lengths: np.ndarray  # (N,) int64 tokens read per sample (after truncation)
    own_counts: np.ndarray  # (N,) int32 own (unmasked) tokens per sample
    truncated: np.ndarray  # (N,) bool
    chunks: tuple[np.ndarray, ...]  # int64 rows of each chunk, in forward order
    chunk_size: int
    window: int  # token window actually used (max_tokens, capped by the model's positions)
    encoded: tuple[EncodedSample, ...] | None = None  # kept only when asked (memory: ~N x tokens)

    def folder(self, root: Path, number: int) -> Path:
        """Cache folder of chunk ``number``."""
        return Path(root) / "chunks" / f"c{self.chunk_size}-{number:06d}"

    def is_done(self, root: Path, number: int) -> bool:
        """Whether chunk ``number`` is committed and intact (a corrupt one is removed)."""
        return load_arrays(self.folder(root, number), mmap=False) is not None

    def commit(self, root: Path, number: int, planes: np.ndarray, key: str) -> Path:
        """Write one chunk's (P, n, W) planes atomically (temp folder + rename)."""
        rows = self.chunks[number]
        if planes.ndim != 3 or planes.shape[1] != len(rows):
            raise FingerprintError(f"chunk {number}: got planes of shape {planes.shape} for {len(rows)} rows")
        return save_arrays(self.folder(root, number), {"rows": rows.astype(np.int64), "planes": planes},
                           {"chunk": number, "key": key})


def token_window(config: FingerprintConfig, max_positions: int | None) -> int:
    """Tokens read per sample: ``max_tokens``, capped by the model's position limit."""
    return min(config.max_tokens, max_positions or config.max_tokens)


def plan_chunks(
    dataset: Dataset,
    tokenizer: Any,
    config: FingerprintConfig,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_positions: int | None = None,
    keep_encoded: bool = True,
) -> ChunkPlan:
    """Tokenize every sample and cut the length-sorted order into chunks (see :class:`ChunkPlan`)."""
    if chunk_size < 1:
        raise FingerprintError(f"chunk_size must be >= 1, got {chunk_size}")
    window = token_window(config, max_positions)
    n = len(dataset)
    lengths, own_counts, truncated = np.zeros(n, np.int64), np.zeros(n, np.int32), np.zeros(n, bool)
    encoded = []
    for i in range(n):  # without keep_encoded only three numbers per sample are kept (a driver of 1M+)
        sample = encode_sample(tokenizer, dataset.turns[i], config, window)
        lengths[i], own_counts[i], truncated[i] = len(sample.input_ids), sum(sample.own_mask), sample.truncated
        if keep_encoded:
            encoded.append(sample)
    empty = np.flatnonzero(own_counts == 0)
    if len(empty):  # an all-zero fingerprint would be picked as gain-0 filler: refuse, never fingerprint it empty
        names = ", ".join(str(dataset.ids[i]) for i in empty[:5]) + (", ..." if len(empty) > 5 else "")
        raise FingerprintError(
            f"{len(empty)} sample(s) have no own token within the {window}-token window ({names}): the template "
            "markup and context fill it. Raise --max-tokens, or drop these records."
        )
    order = np.argsort(lengths, kind="stable")
    return ChunkPlan(
        lengths=lengths,
        own_counts=own_counts,
        truncated=truncated,
        chunks=tuple(order[i : i + chunk_size] for i in range(0, len(order), chunk_size)),
        chunk_size=chunk_size,
        window=window,
        encoded=tuple(encoded) if keep_encoded else None,
    )


def result_meta(
    key: str,
    dataset: Dataset,
    identity: dict[str, Any],
    config: FingerprintConfig,
    recorder: ActivationRecorder,
    window: int,
) -> dict[str, Any]:
    """``meta.json`` content of an assembled result (the same whichever engine computed it).

    Settings are recorded with canonical layers (as the recorder resolved them), so
    ``--layers -1`` and ``--layers 29`` write the same bytes.
    """
    if config.layers is not None:
        config = replace(config, layers=tuple(recorder.layers))
    return {
        "key": key,
        "format_version": FINGERPRINT_FORMAT_VERSION,
        "dataset_name": dataset.name,
        "dataset_hash": dataset.content_hash(),
        "model": identity,
        "settings": config.to_dict(),
        "layers": list(recorder.layers),
        "layer_offsets": list(recorder.layer_offsets),
        "n_neurons": recorder.n_neurons,
        "n_samples": len(dataset),
        "plane_thresholds": [float(t) for t in config.planes],
        "window": window,
    }


def finish_fingerprints(root: Path, plan: ChunkPlan, n_neurons: int, n_planes: int, meta: dict[str, Any]):
    """Assemble the committed chunks into the result folder, verify it, drop the chunks."""
    folder = _assemble(root, list(plan.chunks), plan.chunk_size, n_neurons, n_planes, plan.own_counts,
                       plan.truncated, meta)
    found = load_arrays(folder)
    if found is None:
        raise FingerprintError(f"{folder}: freshly written fingerprints failed verification")
    shutil.rmtree(root / "chunks", ignore_errors=True)
    return _from_cache(*found, folder, hit=False)


def fingerprint_dataset(
    dataset: Dataset,
    spec: ModelSpec | None = None,
    config: FingerprintConfig | None = None,
    cache: str | Path | None = None,
    progress: ProgressFn | None = None,
    loaded: LoadedModel | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    stats: RunStats | None = None,
    batch_tokens: int = 0,
) -> Fingerprints:
    """Fingerprints of every record, from the cache when possible.

    Missing chunks are computed and committed one by one; the assembled result
    is written atomically and verified on every read. ``batch_tokens`` > 0 batches
    by a padded-token budget instead of ``config.batch_size`` (speed only).
    """
    spec = spec or ModelSpec()
    config = config or FingerprintConfig()
    stats = stats if stats is not None else RunStats()
    if len(dataset) == 0:
        raise FingerprintError("the dataset has no records")
    identity = loaded.identity if loaded is not None else model_identity(spec)
    config = canonical_config(config, spec=spec, model=loaded.model if loaded is not None else None)
    key = fingerprint_key(dataset.content_hash(), identity, config)
    root = artifact_dir("fingerprints", key, cache)
    found = load_arrays(root / "result")
    if found is not None:
        return _from_cache(*found, root / "result", hit=True)

    if loaded is None:
        # Refuse a model that cannot be hooked (or layers it lacks) before loading its weights.
        ActivationRecorder(model_skeleton(spec), config.layers, config)
        loaded = load_model(spec)
    recorder = ActivationRecorder(loaded.model, config.layers, config)
    plan = plan_chunks(dataset, loaded.tokenizer, config, chunk_size, loaded.max_positions)
    assert plan.encoded is not None
    stats.chunks_total = len(plan.chunks)
    done = [0]

    def advance(n_samples: int) -> None:
        done[0] += n_samples
        if progress is not None:
            progress(done[0], len(dataset))

    for number, rows in enumerate(plan.chunks):
        if plan.is_done(root, number):
            stats.chunks_cached += 1
            advance(len(rows))
            continue
        samples = [plan.encoded[i] for i in rows]
        planes = compute_chunk(loaded, recorder, samples, config.batch_size, batch_tokens, advance)
        plan.commit(root, number, planes, key)
        stats.chunks_computed += 1
        stats.samples_computed += len(rows)
        stats.tokens_computed += int(plan.lengths[rows].sum())
    meta = result_meta(key, dataset, identity, config, recorder, plan.window)
    return finish_fingerprints(root, plan, recorder.n_neurons, len(config.planes), meta)


def _assemble(
    root: Path,
    chunks: list[np.ndarray],
    chunk_size: int,
    n_neurons: int,
    n_planes: int,
    own_counts: np.ndarray,
    truncated: np.ndarray,
    meta: dict[str, Any],
) -> Path:
    """Scatter committed chunks into one memory-mapped (P, N, W) array; commit atomically."""
    n, n_words = len(own_counts), (n_neurons + 63) // 64
    tmp = new_tmp_folder(root / "result")
    try:
        planes = np.lib.format.open_memmap(tmp / "planes.npy", mode="w+", dtype="<u8", shape=(n_planes, n, n_words))
        for number, rows in enumerate(chunks):
            found = load_arrays(root / "chunks" / f"c{chunk_size}-{number:06d}", mmap=False)
            if found is None:
                raise FingerprintError(f"chunk {number} vanished or is corrupt; run again to recompute it")
            chunk_rows = found[0]["rows"]
            if not np.array_equal(chunk_rows, rows):
                remove_entry(root / "chunks" / f"c{chunk_size}-{number:06d}")
                raise FingerprintError(f"chunk {number} belongs to another sample order; run again")
            planes[:, chunk_rows] = found[0]["planes"]
        planes.flush()
        counts = _column_counts(planes[0], n_neurons)
        del planes
        np.save(tmp / "firing_counts.npy", counts, allow_pickle=False)
        np.save(tmp / "token_counts.npy", own_counts, allow_pickle=False)
        np.save(tmp / "truncated.npy", truncated, allow_pickle=False)
        return commit_folder(tmp, root / "result", meta)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _column_counts(bits: np.ndarray, n_neurons: int) -> np.ndarray:
    """(D,) number of rows with each bit set, streaming over row blocks (<= ~64 MB unpacked)."""
    counts = np.zeros(bits.shape[1] * 64, dtype=np.int64)
    block = max(1, (64 << 20) // max(1, bits.shape[1] * 64))
    for start in range(0, bits.shape[0], block):
        rows = np.ascontiguousarray(bits[start : start + block]).view(np.uint8)
        counts += np.unpackbits(rows, axis=1, bitorder="little").sum(axis=0, dtype=np.int64)
    return counts[:n_neurons]
