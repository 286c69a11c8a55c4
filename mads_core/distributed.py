"""Scale-out engine (Ray): sharded fingerprinting and two-stage (GreeDi) selection.

Fingerprinting. The job is split by :func:`mads_core.model.fingerprint.plan_chunks` into
deterministic shards that are exactly the local engine's cache chunks (the
length-sorted order cut every ``chunk_size`` samples). Shards missing from the cache
go through a Ray Data pipeline: ``map_batches`` with a stateful class
(:class:`ShardWorker`) that holds one model replica per actor (one per GPU, or per
CPU slot), one shard per call. The driver streams shard results back and commits each
to the cache atomically as it arrives, then assembles the result with the local
engine's own code, so the finished cache is byte-identical to ``--engine local``. Ray
Data restarts a dead actor and retries its in-flight shard (``max_restarts=-1``,
``max_task_retries``); with one shard in flight per actor, a worker that dies loses
only the shard it was computing. Shards already committed survive a dead driver too:
the next run (either engine) computes only the missing ones.

The driver never loads model weights: it reads the tokenizer and config (to plan) and
builds the model on PyTorch's ``meta`` device (no memory) to learn the layer geometry.

Selection. :func:`greedi_select` is GreeDi (Mirzasoleiman et al., NeurIPS 2013):
partition the rows into ``m`` parts, run the exact greedy (``select_mads``) to
``kappa`` picks on each part in parallel Ray tasks, run it again over the union of
the partition picks, and keep the better of that and the best single-partition
solution. Guarantee for a monotone submodular objective with ``kappa = k``:
(1 - 1/e)^2 / min(m, k) of the optimum in the worst case (arbitrary partition);
with a uniformly random partition (the default here) (1 - 1/e) / 2 in expectation
(Barbosa et al., ICML 2015). Greedy rankings are nested, so every prefix k' <= k of
the result inherits the bound with k' in place of k.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mads_core.config import FingerprintConfig, ModelSpec, SelectConfig, canonical_json, sha256_text
from mads_core.data.loader import Dataset
from mads_core.model.fingerprint import (
    DEFAULT_CHUNK_SIZE,
    ActivationRecorder,
    FingerprintError,
    Fingerprints,
    ProgressFn,
    RunStats,
    _from_cache,
    compute_chunk,
    encode_sample,
    fingerprint_key,
    finish_fingerprints,
    plan_chunks,
    result_meta,
)
from mads_core.model.models import model_identity
from mads_core.model.store import artifact_dir, load_arrays

# Test-only fault injection: path of a marker file. The first worker to start a shard
# while the marker does not exist creates it and dies (os._exit) after its first batch.
CRASH_ONCE_ENV_VAR = "MADS_RAY_TEST_CRASH_ONCE"
# Environment variables handed to Ray workers (a remote node does not inherit ours).
FORWARDED_ENV = ("MADS_MODEL_CACHE", "MADS_CACHE_DIR", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")

__all__ = [
    "ShardWorker",
    "fingerprint_dataset_ray",
    "greedi_select",
    "packed_bytes",
    "ray_session",
]


# ---------------------------------------------------------------- Ray session


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """The ``ray`` module, connected: reuse a running session, else join ``address``, else start one.

    A session this function started is shut down on exit; one that was already
    running (a notebook, a test fixture) is left alone.
    """
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is in requirements.txt
        raise FingerprintError("the Ray engine needs Ray: pip install 'ray[data]'") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
        started = True
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _forwarded_env() -> dict[str, str]:
    return {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}


# ---------------------------------------------------------------- fingerprinting


def driver_model_view(spec: ModelSpec, config: FingerprintConfig) -> tuple[Any, int | None, ActivationRecorder]:
    """(tokenizer, max positions, recorder geometry) of a model, without loading its weights.

    The recorder is built on a ``meta``-device copy of the architecture (no memory):
    only its layer list, neuron widths and offsets are used.
    """
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    from mads_core.model.models import _is_causal, model_source

    source = model_source(spec)
    kwargs = {"trust_remote_code": spec.trust_remote_code, "local_files_only": True}
    model_config = AutoConfig.from_pretrained(source, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    auto = AutoModelForCausalLM if _is_causal(model_config) else AutoModel
    with torch.device("meta"):
        skeleton = auto.from_config(model_config, trust_remote_code=spec.trust_remote_code)
    max_positions = getattr(model_config, "max_position_embeddings", None) or getattr(
        model_config, "n_positions", None
    )
    return tokenizer, max_positions, ActivationRecorder(skeleton, config.layers, config)


class ShardWorker:
    """Ray Data stateful UDF: one model replica; turns shard rows into packed planes.

    Each input row is one shard: ``chunk`` (its number), ``turns`` (JSON list of the
    shard's samples, in plan order) and ``lengths`` (JSON token counts the driver
    planned, checked here so a tokenizer mismatch across nodes fails loudly).
    """

    def __init__(
        self,
        spec: ModelSpec,
        config: FingerprintConfig,
        window: int,
        batch_tokens: int = 0,
        threads: int = 1,
        crash_marker: str | None = None,
        attempts: Any = None,
        max_retries: int = 3,
    ) -> None:
        import torch

        from mads_core.model.models import load_model

        if threads > 0:
            torch.set_num_threads(threads)
        self.loaded = load_model(spec)
        self.config = config
        self.window = window
        self.batch_tokens = batch_tokens
        self.recorder = ActivationRecorder(self.loaded.model, config.layers, config)
        self.crash_marker = crash_marker
        self.attempts = attempts
        self.max_retries = max_retries

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        chunks, planes, seconds = [], [], []
        for chunk, turns_json, lengths_json in zip(batch["chunk"], batch["turns"], batch["lengths"], strict=True):
            t0 = time.perf_counter()
            self._count_attempt(int(chunk))
            turns = [tuple(tuple(t) for t in sample) for sample in json.loads(str(turns_json))]  # (role, text, own)
            samples = [encode_sample(self.loaded.tokenizer, t, self.config, self.window) for t in turns]
            got = [len(s.input_ids) for s in samples]
            if got != json.loads(str(lengths_json)):
                raise FingerprintError(
                    f"shard {int(chunk)}: this worker tokenizes differently from the driver "
                    "(different tokenizer files or versions on this node?)"
                )
            planes.append(
                compute_chunk(self.loaded, self.recorder, samples, self.config.batch_size, self.batch_tokens,
                              self._maybe_crash)
            )
            chunks.append(int(chunk))
            seconds.append(time.perf_counter() - t0)
        # The pipeline sends one shard per call (batch_size=1), so the stack never mixes shapes.
        return {"chunk": np.array(chunks, dtype=np.int64), "planes": np.stack(planes), "seconds": np.array(seconds)}

    def _count_attempt(self, chunk: int) -> None:
        """Fail the job (an application error, not retried) once a shard has killed too many workers."""
        if self.attempts is None:
            return
        import ray

        tries = ray.get(self.attempts.start.remote(chunk))
        if tries > self.max_retries + 1:
            raise FingerprintError(f"shard {chunk}: {tries - 1} workers died computing it, retry limit reached "
                                   "(out of memory? try a smaller --batch-tokens / --batch-size)")

    def _maybe_crash(self, _n_samples: int) -> None:
        """Test-only: die after the first batch of a shard, once per marker file."""
        if not self.crash_marker:
            return
        try:
            fd = os.open(self.crash_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            self.crash_marker = None
            return
        os.close(fd)
        os._exit(17)


class _Attempts:
    """Ray actor: how many times each shard was started (survives worker deaths)."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def start(self, chunk: int) -> int:
        self.counts[chunk] = self.counts.get(chunk, 0) + 1
        return self.counts[chunk]


def _default_workers(ray: Any, num_gpus: float, num_cpus: float) -> int:
    resources = ray.cluster_resources()
    if num_gpus > 0:
        return max(1, int(resources.get("GPU", 0) // num_gpus))
    return max(1, int(resources.get("CPU", 1) // max(num_cpus, 1e-9)))


def fingerprint_dataset_ray(
    dataset: Dataset,
    spec: ModelSpec | None = None,
    config: FingerprintConfig | None = None,
    cache: str | Path | None = None,
    progress: ProgressFn | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    stats: RunStats | None = None,
    batch_tokens: int = 0,
    address: str | None = None,
    workers: int | None = None,
    num_gpus_per_worker: float = 0.0,
    num_cpus_per_worker: float = 1.0,
    max_retries: int = 3,
    num_cpus: int | None = None,
) -> Fingerprints:
    """Like :func:`mads_core.model.fingerprint.fingerprint_dataset`, shards computed by Ray actors.

    address: Ray cluster to join (``ray://...`` or ``host:port``); None starts a local
        instance (``num_cpus`` CPUs, default all) unless one is already running.
    workers: actor pool size (model replicas); default: the cluster's GPUs divided by
        ``num_gpus_per_worker``, or its CPUs divided by ``num_cpus_per_worker``.
    num_gpus_per_worker: GPUs per replica (fractions pack several replicas per GPU);
        0 runs on CPU.
    max_retries: times a shard is retried after its worker died before the job fails
        (committed shards are kept; run again to resume).
    The cache must be writable by this (driver) process; workers never write it.
    """
    spec = spec or ModelSpec()
    config = config or FingerprintConfig()
    stats = stats if stats is not None else RunStats()
    if len(dataset) == 0:
        raise FingerprintError("the dataset has no records")
    if num_gpus_per_worker < 0 or num_cpus_per_worker < 0:
        raise FingerprintError("--num-gpus-per-worker and CPUs per worker must be >= 0")
    identity = model_identity(spec)
    key = fingerprint_key(dataset.content_hash(), identity, config)
    root = artifact_dir("fingerprints", key, cache)
    found = load_arrays(root / "result")
    if found is not None:
        return _from_cache(*found, root / "result", hit=True)

    tokenizer, max_positions, recorder = driver_model_view(spec, config)
    plan = plan_chunks(dataset, tokenizer, config, chunk_size, max_positions, keep_encoded=False)
    stats.chunks_total = len(plan.chunks)
    pending = []
    done = 0
    for number, rows in enumerate(plan.chunks):
        if plan.is_done(root, number):
            stats.chunks_cached += 1
            done += len(rows)
        else:
            pending.append(number)
    if progress is not None:
        progress(done, len(dataset))
    if pending:
        # Ray prints worker/raylet notices on stdout; keep stdout for results (--json).
        with contextlib.redirect_stdout(sys.stderr), ray_session(address, num_cpus) as ray:
            done = _run_shards(ray, dataset, spec, config, plan, pending, root, key, stats, progress, done,
                               batch_tokens, workers, num_gpus_per_worker, num_cpus_per_worker, max_retries)
    meta = result_meta(key, dataset, identity, config, recorder, plan.window)
    return finish_fingerprints(root, plan, recorder.n_neurons, len(config.planes), meta)


def _run_shards(ray, dataset, spec, config, plan, pending, root, key, stats, progress, done, batch_tokens,
                workers, num_gpus, num_cpus, max_retries) -> int:
    """Stream the pending shards through the actor pool; commit each result on arrival."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.max_errored_blocks = 0
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    items = [
        {
            "chunk": number,
            "turns": json.dumps([[list(t) for t in dataset.turns[i]] for i in plan.chunks[number]]),
            "lengths": json.dumps(plan.lengths[plan.chunks[number]].tolist()),
        }
        for number in pending
    ]
    if num_gpus == 0 and spec.device == "auto":
        spec = dataclasses.replace(spec, device="cpu")  # CPU replicas must not grab a GPU Ray did not give them
    size = workers or _default_workers(ray, num_gpus, num_cpus)
    size = max(1, min(size, len(pending)))
    threads = max(1, int(num_cpus)) if num_gpus == 0 else 0
    remote_args: dict[str, Any] = {"num_cpus": num_cpus}
    if num_gpus > 0:
        remote_args["num_gpus"] = num_gpus
    env = _forwarded_env()
    if env:
        remote_args["runtime_env"] = {"env_vars": env}
    # Ray Data restarts dead actors and retries their shard without limit; this counter
    # (a tiny actor) lets a worker refuse a shard that already killed max_retries workers.
    attempts = ray.remote(num_cpus=0)(_Attempts).remote()
    shards = ray.data.from_items(items, override_num_blocks=len(items))
    results = shards.map_batches(
        ShardWorker,
        fn_constructor_kwargs={
            "spec": spec,
            "config": config,
            "window": plan.window,
            "batch_tokens": batch_tokens,
            "threads": threads,
            "crash_marker": os.environ.get(CRASH_ONCE_ENV_VAR) or None,
            "attempts": attempts,
            "max_retries": max_retries,
        },
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=1),
        **remote_args,
    )
    try:
        for block in results.iter_batches(batch_size=None, batch_format="numpy"):
            for number, planes in zip(block["chunk"], block["planes"], strict=True):
                number = int(number)
                plan.commit(root, number, np.asarray(planes, dtype=np.uint64), key)
                rows = plan.chunks[number]
                stats.chunks_computed += 1
                stats.samples_computed += len(rows)
                stats.tokens_computed += int(plan.lengths[rows].sum())
                done += len(rows)
                if progress is not None:
                    progress(done, len(dataset))
    except Exception as exc:  # Ray wraps worker errors in long tracebacks: keep the root cause's line
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        ours = [line.split("FingerprintError:", 1)[1].strip() for line in lines if "FingerprintError:" in line]
        cause = (ours or lines or [type(exc).__name__])[-1 if not ours else 0][:300]
        raise FingerprintError(
            f"Ray fingerprinting failed ({cause}); {stats.chunks_computed} shards of this run were committed, "
            "run again to resume"
        ) from exc
    return done


# ---------------------------------------------------------------- selection: memory


def packed_bytes(n: int, n_neurons: int, planes: int = 1) -> int:
    """Bytes of the packed fingerprint matrix: ``planes * N * ceil(D / 64) * 8``."""
    return planes * n * -(-n_neurons // 64) * 8


# ---------------------------------------------------------------- selection: GreeDi


@dataclasses.dataclass(frozen=True)
class _Rows:
    """Where partition rows come from: a planes.npy on a (shared) filesystem, or an array."""

    path: str | None = None
    array: np.ndarray | None = None  # (P, N, W)

    def take(self, rows: np.ndarray, n_planes: int) -> np.ndarray:
        """(n_planes, len(rows), W) uint64 copy of the given rows (sorted rows read best)."""
        mat = np.load(self.path, mmap_mode="r", allow_pickle=False) if self.path is not None else self.array
        assert mat is not None
        return np.ascontiguousarray(mat[:n_planes, rows], dtype=np.uint64)


def _limit_threads(threads: int | None) -> None:
    if threads:
        import numba

        numba.set_num_threads(max(1, min(int(threads), numba.config.NUMBA_NUM_THREADS)))


def _stage_counts(source: _Rows | np.ndarray, rows: np.ndarray, n_planes: int,
                  threads: int | None = None) -> np.ndarray:
    """(P, W*64) firing counts of one partition (summed by the driver into global counts)."""
    from mads_core.select import bitops

    _limit_threads(threads)
    mat = source if isinstance(source, np.ndarray) else source.take(rows, n_planes)
    return bitops.column_counts(mat, bitops.n_threads())


def _stage_greedy(
    source: _Rows | np.ndarray,
    rows: np.ndarray,
    n_planes: int,
    keep: np.ndarray | None,
    n_neurons: int,
    kappa: int,
    config: SelectConfig,
    layer_offsets: tuple[int, ...] | None,
    threads: int | None = None,
) -> tuple[np.ndarray, Any]:
    """Exact greedy on some rows: (picks as ids from ``rows``, the stage's Selection over local rows)."""
    from mads_core.select.greedy import select_mads

    _limit_threads(threads)
    mat = source if isinstance(source, np.ndarray) else source.take(rows, n_planes)
    if keep is not None:
        mat = mat & keep[:, None, :]
    states = config.continuation == "states"
    sel = select_mads(mat[0], n_neurons, min(kappa, mat.shape[1]), config, planes=mat if states else None,
                      layer_offsets=layer_offsets)
    return np.asarray(rows)[sel.ranking], sel


def _partition(n: int, m: int, seed: int, randomized: bool) -> list[np.ndarray]:
    """``m`` disjoint sorted row sets covering 0..n-1: random (seeded) or contiguous blocks."""
    order = np.random.default_rng(seed).permutation(n) if randomized else np.arange(n)
    return [np.sort(part).astype(np.int64) for part in np.array_split(order, m)]


def greedi_select(
    data: np.ndarray | Fingerprints | str | Path,
    n_neurons: int | None,
    budget: int | float,
    partitions: int = 4,
    config: SelectConfig | None = None,
    planes: np.ndarray | None = None,
    layer_offsets: Sequence[int] | None = None,
    kappa: int | None = None,
    seed: int = 0,
    randomized: bool = True,
    engine: str = "ray",
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_task: int = 1,
):
    """Two-stage distributed MADS selection (GreeDi); returns a :class:`mads_core.select.greedy.Selection`.

    data: (N, W) packed bits in memory (``planes`` (P, N, W) too for "states"), or a
        :class:`Fingerprints` / its cache folder: then each Ray task memory-maps
        ``planes.npy`` itself and reads only its rows (the folder must be on a
        filesystem every node sees), so no process holds the whole matrix.
    partitions: m. kappa: picks per partition (default k, the GreeDi guarantee's
        setting; smaller saves stage-2 memory, ``m * kappa`` rows, with no guarantee).
    randomized: uniformly random partition (seeded; expected (1-1/e)/2 guarantee) or
        contiguous row blocks (worst case (1-1/e)^2/min(m, k)).
    engine: "ray" (partitions in parallel Ray tasks) or "local" (one after another in
        this process: same result, for tests and single machines).
    config: as for ``select_mads``. ``min_support`` / ``max_neuron_share`` filters use
        global firing counts (summed over partitions) and are applied to the rows
        before both stages, so every stage sees the global objective; idf weights are
        not supported here (``select_mads`` derives them from the rows it is given).
        Continuations run inside each stage: "none", "mcover" and "states" are
        monotone submodular, so the guarantee holds for them up to saturation;
        "rounds" resets are per stage (a heuristic past the first round).
    """
    from mads_core.select import bitops
    from mads_core.select.greedy import resolve_budget

    config = config or SelectConfig()
    if config.weighting != "uniform":
        raise ValueError("greedi_select supports weighting='uniform' only (idf weights need global counts "
                         "that select_mads recomputes per partition)")
    if engine not in ("ray", "local"):
        raise ValueError(f"engine must be 'ray' or 'local', got {engine!r}")
    source, n_neurons, layer_offsets, shape = _resolve_source(data, n_neurons, planes, layer_offsets, config)
    n_planes_all, n, n_words = shape
    n_planes = n_planes_all if config.continuation == "states" else 1
    k = resolve_budget(budget, n)
    m = int(partitions)
    if m < 1 or m > n:
        raise ValueError(f"partitions must be in [1, N = {n}], got {partitions!r}")
    kappa = k if kappa is None else int(kappa)
    if kappa < 1:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    parts = _partition(n, m, seed, randomized)
    offsets = tuple(int(o) for o in layer_offsets) if layer_offsets is not None else None

    t0 = time.perf_counter()
    with _executor(engine, address, num_cpus, cpus_per_task) as run:
        keep = None
        needs_counts = config.min_support > 1 or config.max_neuron_share < 1.0
        if needs_counts:
            counts = sum(run(_stage_counts, source, rows, n_planes) for rows in parts)
            from mads_core.select.greedy import element_weights

            valid = np.zeros(n_words * 64, dtype=bool)
            valid[:n_neurons] = True
            keep = bitops.pack_bits(element_weights(counts, n, config, valid) > 0)
        plain = dataclasses.replace(config, min_support=1, max_neuron_share=1.0)
        stage1 = run.many(_stage_greedy, [(source, rows, n_planes, keep, n_neurons, kappa, plain, offsets)
                                          for rows in parts])
        t1 = time.perf_counter()
        union = np.sort(np.concatenate([picks for picks, _ in stage1]))
        picks, sel = run(_stage_greedy, source, union, n_planes, keep, n_neurons, k, plain, offsets)
    t2 = time.perf_counter()
    chosen = "union"
    if config.continuation != "rounds":  # GreeDi's max: a single partition's solution may win
        full = [i for i in range(m) if len(stage1[i][0]) >= k]
        best = max(full, key=lambda i: (float(stage1[i][1].coverage[-1]), -i), default=None)
        if best is not None and float(stage1[best][1].coverage[-1]) > float(sel.coverage[-1]):
            picks, sel = stage1[best]
            chosen = f"partition {best}"
    if len(picks) != k:
        raise RuntimeError(f"GreeDi returned {len(picks)} picks for budget {k}")
    # Plain (unfiltered) union coverage of every prefix, as select_mads reports it.
    rows_sorted = np.sort(picks)
    plane0 = _take(source, rows_sorted, 1)[0]
    local = np.searchsorted(rows_sorted, picks).astype(np.int64)
    curve = bitops.union_curve(plane0, local, bitops.valid_mask(n_neurons, n_words))
    info = {"partitions": m, "kappa": kappa, "seed": seed, "randomized": randomized, "union_size": int(union.size),
            "chosen": chosen, "stage1_s": t1 - t0, "stage2_s": t2 - t1, "engine": engine}
    stable = {key: info[key] for key in ("partitions", "kappa", "seed", "randomized")}
    return dataclasses.replace(
        sel,
        method="mads_greedi",
        n=n,
        ranking=np.asarray(picks, dtype=np.int64),
        settings={**config.to_dict(), "greedi": info},
        settings_hash=sha256_text(config.cache_hash() + canonical_json(stable))[:16],
        neurons_covered=np.asarray(curve, dtype=np.int64),
    )


def _take(source: _Rows | np.ndarray, rows: np.ndarray, n_planes: int) -> np.ndarray:
    return source.take(rows, n_planes) if isinstance(source, _Rows) else source[:n_planes, rows]


def _resolve_source(data, n_neurons, planes, layer_offsets, config):
    """(_Rows, D, layer offsets, (P, N, W)) from an array, a Fingerprints or a cache folder."""
    if isinstance(data, (str, Path)):
        folder = Path(data).parent if Path(data).name == "planes.npy" else Path(data)
        found = load_arrays(folder, verify=False)
        if found is None:
            raise ValueError(f"{folder}: not a fingerprint cache folder (no intact meta.json + planes.npy)")
        arrays, meta = found
        shape = tuple(arrays["planes"].shape)
        return (_Rows(path=str(folder / "planes.npy")), int(meta["n_neurons"]),
                layer_offsets or tuple(meta["layer_offsets"]), shape)
    if isinstance(data, Fingerprints):
        if data.path:
            return _resolve_source(data.path, None, None, layer_offsets or data.layer_offsets, config)
        return _resolve_source(np.asarray(data.bits), data.n_neurons, data.planes,
                               layer_offsets or data.layer_offsets, config)
    if n_neurons is None:
        raise ValueError("n_neurons is required with an in-memory bits array")
    bits = np.asarray(data)
    if bits.dtype != np.uint64 or bits.ndim != 2:
        raise ValueError(f"bits must be (N, W) packed uint64, got {bits.dtype} {bits.shape}")
    if bits.shape[1] != -(-int(n_neurons) // 64):
        raise ValueError(f"bits has {bits.shape[1]} words per row but n_neurons = {n_neurons}")
    if config.continuation == "states":
        if planes is None:
            raise ValueError('continuation="states" needs the fingerprint planes (planes=None given)')
        mat = np.asarray(planes)
        if mat.shape[1:] != bits.shape:
            raise ValueError(f"planes shape {mat.shape} does not match bits shape {bits.shape}")
    else:
        mat = bits[None]
    return _Rows(array=mat), int(n_neurons), layer_offsets, tuple(mat.shape)


class _Runner:
    """Calls a stage function in this process or as Ray tasks (``many`` runs them in parallel)."""

    def __init__(self, ray: Any | None, cpus_per_task: int) -> None:
        self.ray = ray
        self.cpus = max(1, int(cpus_per_task))

    def _args(self, args: tuple) -> tuple:
        source, rows, *rest = args
        if self.ray is not None and isinstance(source, _Rows) and source.array is not None:
            # In-memory input: ship only this partition's rows (as a plain array) to the task.
            source = self.ray.put(source.take(rows, rest[0]))
            rows = np.asarray(rows)
        return (source, rows, *rest)

    def many(self, fn, calls: list[tuple]) -> list:
        if self.ray is None:
            return [fn(*args) for args in calls]
        remote = self.ray.remote(num_cpus=self.cpus, max_retries=3)(fn)
        return self.ray.get([remote.remote(*self._args(args), threads=self.cpus) for args in calls])

    def __call__(self, fn, *args):
        return self.many(fn, [args])[0]


@contextlib.contextmanager
def _executor(engine: str, address: str | None, num_cpus: int | None, cpus_per_task: int) -> Iterator[_Runner]:
    if engine == "local":
        yield _Runner(None, cpus_per_task)
        return
    with ray_session(address, num_cpus) as ray:
        yield _Runner(ray, cpus_per_task)


def coverage_ratio(approx, exact, budgets: Sequence[float | int]) -> dict[str, float]:
    """Plain union coverage of ``approx`` over ``exact`` at each budget (prefixes of both rankings)."""
    from mads_core.select.greedy import resolve_budget

    out = {}
    for b in budgets:
        k = resolve_budget(b, exact.n)
        ref = float(exact.neurons_covered[k - 1])
        out[str(b)] = float(approx.neurons_covered[k - 1]) / ref if ref else 1.0
    return out


