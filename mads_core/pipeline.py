"""One dispatch for every selection method, shared by the CLI and the app.

Why a module of its own: the CLI and the Streamlit pages must produce
byte-identical selections for the same data, model and settings, so both call
``run_method`` and neither re-implements the wiring (which inputs a method
needs, where embeddings come from, which settings go into the manifest).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mads_core.config import FingerprintConfig, ModelSpec, PeerConfig, SelectConfig
from mads_core.data.demo import load_demo
from mads_core.data.loader import Dataset, load_records
from mads_core.model.fingerprint import Fingerprints
from mads_core.select.baselines import BASELINES
from mads_core.select.greedy import Selection, select_mads
from mads_core.select.peers import PEERS, peer_needs, run_peer

METHODS: tuple[str, ...] = ("mads", *BASELINES, *PEERS)
METHOD_DESCRIPTIONS: dict[str, str] = {
    "mads": "MADS: exact greedy max coverage of activation fingerprints (the paper's method).",
    **{name: b.description for name, b in BASELINES.items()},
    **{name: p.description for name, p in PEERS.items()},
}


def load_data(
    data: str,
    fmt: str = "auto",
    text_column: str | None = None,
    response_column: str | None = None,
    category_column: str | None = None,
    on_error: str = "raise",
    id_field: str | None = None,
    dedupe: str = "records",
) -> Dataset:
    """``demo`` / ``demo:<preset>`` or a file path -> Dataset (the same rule in CLI and app)."""
    if data == "demo" or data.startswith("demo:"):
        return load_demo(data.split(":", 1)[1] if ":" in data else "default")
    return load_records(
        data,
        fmt=fmt,
        text_column=text_column,
        response_column=response_column,
        category_column=category_column,
        on_error=on_error,
        id_field=id_field,
        dedupe=dedupe,
    )


def method_needs(method: str) -> str:
    """What a method reads: 'bits', 'embeddings', 'dataset' or 'n'."""
    if method == "mads":
        return "bits"
    if method in PEERS:  # the main input; method_requirements() lists all of them
        needs = peer_needs(method)
        return next(x for x in ("bits", "ifd", "embeddings", "dataset") if x in needs)
    if method not in BASELINES:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    return BASELINES[method].needs


def method_requirements(method: str, peer_config: PeerConfig | None = None) -> frozenset[str]:
    """Every input a method reads, of: 'n', 'dataset', 'bits', 'embeddings', 'ifd', 'target'."""
    if method in PEERS:
        return peer_needs(method, peer_config)
    return frozenset({method_needs(method)})


def fingerprint_config_of(fingerprints: Fingerprints | None) -> FingerprintConfig:
    """The FingerprintConfig recorded in a fingerprint result's meta (default when absent)."""
    import dataclasses

    settings = dict((fingerprints.meta or {}).get("settings") or {}) if fingerprints is not None else {}
    names = {f.name for f in dataclasses.fields(FingerprintConfig)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in names}
    try:
        return FingerprintConfig(**kwargs)
    except (TypeError, ValueError):
        return FingerprintConfig()


def ifd_cached(
    dataset: Dataset,
    spec: ModelSpec | None = None,
    config: FingerprintConfig | None = None,
    cache: str | Path | None = None,
    progress: Any = None,
) -> np.ndarray:
    """(N,) IFD of every sample with the fingerprinting model (``mads_core.select.ifd``), cached."""
    from mads_core.select.ifd import ifd_scores

    return np.asarray(ifd_scores(dataset, spec, config, cache, progress).ifd)


def run_method(
    method: str,
    dataset: Dataset,
    fingerprints: Fingerprints | None,
    budget: int | float,
    select_config: SelectConfig | None = None,
    cache: str | Path | None = None,
    embeddings: np.ndarray | None = None,
    seed: int = 0,
    peer_config: PeerConfig | None = None,
    model_spec: ModelSpec | None = None,
    target: Fingerprints | None = None,
    ifd: np.ndarray | None = None,
    progress: Any = None,
) -> Selection:
    """The ranking of ``method`` up to ``budget`` (every smaller budget is a prefix).

    Peer methods (``mads_core.select.peers``) also read ``peer_config``; IFD comes from
    ``ifd`` or is computed (cached) with ``model_spec`` (default: bundled) and the
    fingerprints' settings; ``target`` is the target set's fingerprints (same model and
    settings as ``fingerprints``). ``progress(done, total)`` reports IFD forward passes.
    """
    if method in PEERS:
        return _run_peer(method, dataset, fingerprints, budget, select_config, cache, embeddings,
                         peer_config, model_spec, target, ifd, progress)
    needs = method_needs(method)
    if needs == "bits" and fingerprints is None:
        raise ValueError(f"method {method!r} needs activation fingerprints; compute them first")
    if fingerprints is not None and fingerprints.n_samples != len(dataset):
        raise ValueError(
            f"fingerprints hold {fingerprints.n_samples} samples but the dataset has {len(dataset)}"
        )
    if method == "mads":
        config = select_config or SelectConfig()
        planes = np.asarray(fingerprints.planes) if config.continuation == "states" else None
        return select_mads(
            fingerprints.bits,
            fingerprints.n_neurons,
            budget,
            config,
            planes=planes,
            layer_offsets=fingerprints.layer_offsets,
        )
    baseline = BASELINES[method]
    if needs == "n":
        return baseline.fn(len(dataset), budget, seed=seed)
    if needs == "dataset":
        return baseline.fn(dataset, budget)
    if needs == "bits":
        return baseline.fn(fingerprints.bits, fingerprints.n_neurons, budget)
    if embeddings is None:
        embeddings = dataset_embeddings_cached(dataset, cache)
    if method == "kmeans-embed":
        return baseline.fn(embeddings, budget, seed=seed)
    return baseline.fn(embeddings, budget)


def _run_peer(method, dataset, fingerprints, budget, select_config, cache, embeddings, peer_config, model_spec,
              target, ifd, progress=None) -> Selection:
    needs = method_requirements(method, peer_config)
    if "bits" in needs and fingerprints is None:
        raise ValueError(f"method {method!r} needs activation fingerprints; compute them first")
    if fingerprints is not None and fingerprints.n_samples != len(dataset):
        raise ValueError(f"fingerprints hold {fingerprints.n_samples} samples but the dataset has {len(dataset)}")
    if "target" in needs and target is not None and fingerprints is not None \
            and target.n_neurons != fingerprints.n_neurons:
        raise ValueError(f"target fingerprints have {target.n_neurons} neurons, the pool's {fingerprints.n_neurons}"
                             "; fingerprint both with the same model and settings")
    if "embeddings" in needs and embeddings is None:
        embeddings = dataset_embeddings_cached(dataset, cache)
    extra: dict[str, Any] = {}
    if "ifd" in needs and ifd is None:
        from mads_core.model.models import model_identity
        from mads_core.select.ifd import ifd_scores

        scores = ifd_scores(dataset, model_spec, fingerprint_config_of(fingerprints), cache, progress)
        ifd = np.asarray(scores.ifd)
        extra = {"ifd_model": model_identity(model_spec or ModelSpec()), "ifd_key": scores.key}
    if target is not None:
        extra["target_fingerprint_key"] = target.key
    sel = run_peer(method, budget, dataset=dataset, fingerprints=fingerprints, embeddings=embeddings, ifd=ifd,
                   target_bits=None if target is None else target.bits, config=peer_config,
                   select_config=select_config)
    if not extra:
        return sel
    import dataclasses

    from mads_core.select.ranking import settings_hash

    settings = {**sel.settings, **extra}
    return dataclasses.replace(sel, settings=settings, settings_hash=settings_hash(method, settings))


# Methods whose picks depend on the budget itself (a k-means clustering at k is not a prefix of the
# clustering at a larger k): they are run once per budget, everywhere (CLI ``compare`` and the app).
PER_BUDGET_METHODS = frozenset({"kmeans-embed"})


def selections_by_budget(
    methods: Sequence[str], ks: Sequence[int], run: Callable[[str, int], Selection]
) -> dict[str, dict[int, Selection]]:
    """{method: {k: Selection}}: one ranking up to ``max(ks)`` per method, one run per budget for
    ``PER_BUDGET_METHODS``. ``run(method, k)`` computes (or fetches from a cache) one ranking of ``k`` picks.
    """
    out: dict[str, dict[int, Selection]] = {}
    top = max(ks)
    for m in methods:
        if m in PER_BUDGET_METHODS:
            out[m] = {k: run(m, k) for k in ks}
        else:
            sel = run(m, top)
            out[m] = dict.fromkeys(ks, sel)
    return out


def compare_table(
    selections: Mapping[str, Mapping[int, Selection]],
    budgets: Sequence[int | float],
    n: int,
    **inputs: Any,
) -> pd.DataFrame:
    """The ``compare`` metrics table: every method at every budget (one row per method x budget).

    ``selections`` as from :func:`selections_by_budget` (keyed by the resolved k of each budget);
    ``inputs`` are ``metrics_table``'s (bits, n_neurons, emb, categories, lengths). A method with one
    ranking for all budgets is measured in one pass; a per-budget method row by row.
    """
    from mads_core.analysis.metrics import metrics_table
    from mads_core.select.greedy import resolve_budget

    parts = []
    for m, by_k in selections.items():
        ks = [resolve_budget(b, n) for b in budgets]
        if len({id(by_k[k]) for k in ks}) == 1:
            parts.append(metrics_table({m: by_k[ks[0]]}, list(budgets), **inputs))
        else:
            parts.extend(metrics_table({m: by_k[k]}, [b], **inputs) for b, k in zip(budgets, ks, strict=True))
    return pd.concat(parts, ignore_index=True)


def dataset_embeddings_cached(dataset: Dataset, cache: str | Path | None = None, progress: Any = None) -> np.ndarray:
    """Sentence embeddings of the dataset (bundled MiniLM), from the cache when present."""
    from mads_core.model.embed import dataset_embeddings

    return dataset_embeddings(dataset, cache_root=cache, progress=progress)


def run_method_cached(
    method: str,
    dataset: Dataset,
    fingerprints: Fingerprints | None,
    budget: int | float,
    select_config: SelectConfig | None = None,
    cache: str | Path | None = None,
    embeddings: np.ndarray | None = None,
    seed: int = 0,
    use_cache: bool = True,
    refresh: bool = False,
) -> Selection:
    """:func:`run_method`, read from / stored in the on-disk ranking cache (``mads_core.select.cache``).

    ``use_cache=False`` neither reads nor writes the cache; ``refresh=True`` computes
    afresh and overwrites the stored ranking.

    The result equals ``run_method(...)`` array for array. Use it with the largest budget
    for prefix methods (one ranking, every smaller budget sliced from it) and with the
    exact budget for ``PER_BUDGET_METHODS`` (k-means: one clustering per budget, computed
    once and then read from disk, by the app and ``compare`` alike). The key holds the
    dataset's content hash, the fingerprint key (methods reading bits), the embeddings
    (their content hash when passed, else the dataset's embedding key), the method's
    settings (MADS ``SelectConfig``, seed) and the resolved pick count. Peer methods
    (``mads_core.select.peers``) are not cached here: they are run directly.
    """
    from mads_core.select.cache import cached_selection
    from mads_core.select.greedy import resolve_budget

    def compute() -> Selection:
        return run_method(method, dataset, fingerprints, budget, select_config=select_config, cache=cache,
                          embeddings=embeddings, seed=seed)

    if method in PEERS:
        return compute()
    needs = method_needs(method)
    k = resolve_budget(budget, len(dataset))
    inputs = {"dataset": dataset.content_hash()}
    settings: dict[str, Any] = {"budget": budget}  # as given: baselines record it in their settings
    if needs == "bits":
        if fingerprints is None:
            return compute()  # raises the usual error
        inputs["fingerprints"] = fingerprints.key
    if needs == "embeddings":
        if embeddings is not None:
            from mads_core.analysis.project import array_hash

            inputs["embeddings"] = array_hash(np.ascontiguousarray(embeddings))
        else:
            from mads_core.model.embed import embedding_key

            inputs["embeddings"] = embedding_key(dataset)
    if method == "mads":
        settings["select"] = (select_config or SelectConfig()).cache_hash()
    if method in ("random", "kmeans-embed"):
        settings["seed"] = int(seed)
    sel, _ = cached_selection(method, inputs, settings, k, compute, cache=cache, use_cache=use_cache,
                              refresh=refresh)
    return sel


DIVERSITY_VERSION = 1  # bump when metrics.diversity_curves changes its output
DIVERSITY_KIND = "diversity"


def diversity_curves_cached(
    embeddings: np.ndarray,
    ranking: np.ndarray,
    cache: str | Path | None = None,
    space: Any = None,
    embeddings_key: str | None = None,
    use_cache: bool = True,
    refresh: bool = False,
    compute: bool = True,
) -> Any:
    """``metrics.diversity_curves`` of every prefix of ``ranking``, read from / stored in the on-disk cache.

    Stored under ``<cache>/diversity/<key>/`` (``mean_nn.npy``, ``radius.npy``; atomic and
    checksummed like rankings); the key hashes the embeddings (``embeddings_key``, else
    their content hash), the ranking's content and ``DIVERSITY_VERSION``. ``space``: a
    ``metrics.text_space`` of ``embeddings`` to reuse. Returns a ``metrics.DiversityCurves``
    equal to the computed one array for array; ``compute=False`` only reads the cache (None
    on a miss).
    """
    from mads_core.analysis import metrics
    from mads_core.analysis.project import array_hash
    from mads_core.config import canonical_json, sha256_text
    from mads_core.model.store import artifact_dir, load_arrays, save_arrays

    order = np.ascontiguousarray(ranking, dtype=np.int64)
    payload = {"embeddings": embeddings_key or array_hash(np.ascontiguousarray(embeddings)),
               "ranking": array_hash(order), "version": DIVERSITY_VERSION}
    folder = artifact_dir(DIVERSITY_KIND, sha256_text(canonical_json(payload))[:24], cache)
    if use_cache and not refresh:
        hit = load_arrays(folder, mmap=False)
        if hit is not None and {"mean_nn", "radius"} <= set(hit[0]) and len(hit[0]["radius"]) == len(order):
            return metrics.DiversityCurves(hit[0]["mean_nn"], hit[0]["radius"])
    if not compute:
        return None
    curves = metrics.diversity_curves(space if space is not None else embeddings, order)
    if use_cache:
        save_arrays(folder, {"mean_nn": curves.mean_nn, "radius": curves.radius}, {"diversity": payload})
    return curves
