"""One dispatch for every selection method, shared by the CLI and the app.

Why a module of its own: the CLI and the Streamlit pages must produce
byte-identical selections for the same data, model and settings, so both call
``run_method`` and neither re-implements the wiring (which inputs a method
needs, where embeddings come from, which settings go into the manifest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mads_core.config import SelectConfig
from mads_core.data.demo import load_demo
from mads_core.data.loader import Dataset, load_records
from mads_core.model.fingerprint import Fingerprints
from mads_core.select.baselines import BASELINES
from mads_core.select.greedy import Selection, select_mads

METHODS: tuple[str, ...] = ("mads", *BASELINES)
METHOD_DESCRIPTIONS: dict[str, str] = {
    "mads": "MADS: exact greedy max coverage of activation fingerprints (the paper's method).",
    **{name: b.description for name, b in BASELINES.items()},
}


def load_data(
    data: str,
    fmt: str = "auto",
    text_column: str | None = None,
    response_column: str | None = None,
    category_column: str | None = None,
    on_error: str = "raise",
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
    )


def method_needs(method: str) -> str:
    """What a method reads: 'bits', 'embeddings', 'dataset' or 'n'."""
    if method == "mads":
        return "bits"
    if method not in BASELINES:
        raise ValueError(f"unknown method {method!r}; choose one of: {', '.join(METHODS)}")
    return BASELINES[method].needs


def run_method(
    method: str,
    dataset: Dataset,
    fingerprints: Fingerprints | None,
    budget: int | float,
    select_config: SelectConfig | None = None,
    cache: str | Path | None = None,
    embeddings: np.ndarray | None = None,
    seed: int = 0,
) -> Selection:
    """The ranking of ``method`` up to ``budget`` (every smaller budget is a prefix)."""
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


def dataset_embeddings_cached(dataset: Dataset, cache: str | Path | None = None, progress: Any = None) -> np.ndarray:
    """Sentence embeddings of the dataset (bundled MiniLM), from the cache when present."""
    from mads_core.model.embed import dataset_embeddings

    return dataset_embeddings(dataset, cache_root=cache, progress=progress)
