"""Plain helpers behind the app's pages (no Streamlit here).

The pages keep their caches (``st.cache_resource``) and draw; what they compute
lives here so it can be tested without a browser: turning sidebar values into
settings, loading the chosen dataset, dispatching a selection method, the
"why was this sample chosen" figures, coverage curves, and the CLI command that
reproduces an export.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mads_core.config import FingerprintConfig, ModelSpec, SelectConfig, canonical_json, sha256_text
from mads_core.data.loader import Dataset
from mads_core.model.store import cache_root
from mads_core.pipeline import METHOD_DESCRIPTIONS, method_needs, method_requirements
from mads_core.pipeline import METHODS as PIPELINE_METHODS
from mads_core.pipeline import PER_BUDGET_METHODS as PER_BUDGET_METHODS
from mads_core.select.greedy import Selection, resolve_budget

# Every method the pipeline dispatches (MADS, the baselines and any peer method registered there).
METHODS: tuple[str, ...] = tuple(PIPELINE_METHODS)
DEFAULT_METHODS: tuple[str, ...] = ("mads", "random", "kcenter-tfidf", "kcenter-embed")
NEEDS_EMBEDDINGS = frozenset(m for m in METHODS if method_needs(m) == "embeddings")
NEEDS_FINGERPRINTS = frozenset(m for m in METHODS if method_needs(m) == "bits")
SEEDED_METHODS = frozenset({"random", "kmeans-embed"})
# k-means picks depend on k itself (its ranking is not a prefix of a larger one): PER_BUDGET_METHODS,
# from the pipeline, so the CLI's ``compare`` and the app cluster once per budget alike.
METHOD_HELP: dict[str, str] = {
    **METHOD_DESCRIPTIONS,
    "mads": "Greedy max coverage of the neurons each sample fires (the method under study).",
    "random": "Uniform random sample (seeded).",
    "kcenter-tfidf": "Greedy k-center (farthest-first) on TF-IDF vectors, cosine distance.",
    "kcenter-embed": "Greedy k-center on MiniLM sentence embeddings, cosine distance.",
    "kmeans-embed": "k-means with k = budget on MiniLM embeddings; the member nearest each centroid. "
    "Clustered once per budget (its picks depend on k), in the app and in `compare` alike.",
    "kcenter-act": "Greedy k-center on the activation fingerprints themselves (Jaccard distance): same bits as "
    "MADS, but spreads picks instead of covering neurons.",
}
# Above this many samples the budget slider stops at LARGE_MAX_FRACTION of N: every
# method's ranking is computed once up to the largest budget offered.
LARGE_N = 5_000
LARGE_MAX_FRACTION = 0.30
DEFAULT_BUDGET_FRACTION = 0.10


# ---------------------------------------------------------------- data choice


@dataclass(frozen=True)
class DataChoice:
    """Which dataset the user picked: a demo preset or a file (an upload is saved to a file first)."""

    kind: str = "demo"            # "demo" | "path"
    name: str = "default"         # demo preset
    path: str = ""                # file for kind "path"
    label: str = ""               # what to call it (an upload's original name)
    text_column: str | None = None
    response_column: str | None = None
    category_column: str | None = None
    on_error: str = "skip"

    @property
    def display_name(self) -> str:
        if self.kind == "demo":
            return f"demo: {self.name}"
        return self.label or Path(self.path).name

    def cli_data(self) -> str:
        """The ``--data`` value that loads this dataset on the command line.

        An upload is named by its original file name (the user has that file; the app's
        saved copy lives in an internal cache folder).
        """
        if self.kind == "demo":
            return "demo" if self.name == "default" else f"demo:{self.name}"
        return self.label or self.path

    def cli_flags(self, n_skipped: int = 0) -> list[str]:
        """``--data`` plus the column / error flags that differ from the CLI defaults."""
        flags = ["--data", self.cli_data()]
        for flag, value in (("--text-column", self.text_column), ("--response-column", self.response_column),
                            ("--category-column", self.category_column)):
            if value:
                flags += [flag, value]
        if self.kind == "path" and n_skipped and self.on_error == "skip":
            flags += ["--on-error", "skip"]
        return flags


def load_choice(choice: DataChoice) -> Dataset:
    """Load the chosen dataset with the CLI's own rule (``pipeline.load_data``)."""
    from mads_core.pipeline import load_data

    if choice.kind == "path" and not choice.path.strip():
        raise ValueError("no data file given: enter a path or upload a file in the sidebar")
    return load_data(
        choice.cli_data() if choice.kind == "demo" else str(Path(choice.path).expanduser()),
        text_column=choice.text_column or None,
        response_column=choice.response_column or None,
        category_column=choice.category_column or None,
        on_error=choice.on_error,
    )


def with_window_report(dataset: Dataset, spec: ModelSpec, config: FingerprintConfig) -> Dataset:
    """The dataset with its load report's token-window fields filled, exactly as the CLI fills them
    (``cli.with_window_report``: truncated, response cut, no own token), so an export's manifest is the
    CLI's byte for byte. Needs only the model's tokenizer; when it cannot be loaded the report stays.
    """
    from mads_core.model.encode import window_report

    try:
        from transformers import AutoTokenizer

        from mads_core.model.models import model_source

        tokenizer = AutoTokenizer.from_pretrained(model_source(spec), trust_remote_code=spec.trust_remote_code,
                                                  local_files_only=True)
    except Exception:  # the model run reports model problems itself
        return dataset
    return dataset.with_report(window_report(dataset, tokenizer, config))


def save_upload(filename: str, data: bytes, root: str | Path | None = None) -> Path:
    """Keep an uploaded file under ``<cache>/uploads/<sha256[:16]>/<name>`` (same bytes, same path).

    A real file lets the loader name the file in its messages and the CLI command
    point at exactly the data the app used.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename).name).lstrip(".") or "upload"
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = cache_root(root) / "uploads" / digest
    path = folder / safe
    if not path.is_file() or path.stat().st_size != len(data):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{safe}.tmp"
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class AppSettings:
    """Everything the sidebar decides: dataset, model, fingerprint settings."""

    data: DataChoice = field(default_factory=DataChoice)
    model: ModelSpec = field(default_factory=ModelSpec)
    fingerprint: FingerprintConfig = field(default_factory=FingerprintConfig)

    def key(self) -> str:
        """Stable text key of the settings (for caches and change detection)."""
        payload = {"data": self.data.__dict__, "model": self.model.__dict__,
                   "fingerprint": self.fingerprint.to_dict()}
        return sha256_text(canonical_json(payload))[:16]


def parse_layers(text: str) -> tuple[int, ...] | None:
    """'all' / '' -> None; '0,5,10' and ranges '0-9,20' -> tuple (ValueError with a clear message)."""
    from mads_core.cli import parse_layers as cli_parse_layers

    layers = cli_parse_layers(text)
    if layers is not None and not layers:
        raise ValueError("layers: no layer given (use 'all', '0,5,10' or '0-9')")
    return layers


def parse_levels(text: str) -> tuple[float, ...]:
    """'3.0,4.0' -> (3.0, 4.0); '' or 'none' -> ()."""
    from mads_core.cli import parse_floats

    return parse_floats(text, "levels")


def fingerprint_config(values: Mapping[str, Any]) -> FingerprintConfig:
    """A FingerprintConfig from sidebar values (keys as the config's fields; text for layers/levels)."""
    rule = str(values.get("rule", "threshold"))
    defaults = FingerprintConfig()
    levels_text = values.get("levels", ",".join(str(x) for x in defaults.levels))
    return FingerprintConfig(
        layers=parse_layers(str(values.get("layers", "all"))),
        rule=rule,
        threshold=float(values.get("threshold", defaults.threshold)),
        levels=parse_levels(str(levels_text)) if rule == "threshold" else (),
        top_k=int(values.get("top_k", defaults.top_k)),
        pooling=str(values.get("pooling", defaults.pooling)),
        template=str(values.get("template", defaults.template)),
        count_template_tokens=bool(values.get("count_template_tokens", False)),
        max_tokens=int(values.get("max_tokens", defaults.max_tokens)),
    )


def format_layers(layers: Sequence[int] | None) -> str:
    """(0,1,2,3,7) -> '0-3,7'; None -> 'all' (the inverse of :func:`parse_layers`; see config.format_layer_spec)."""
    from mads_core.config import format_layer_spec

    return format_layer_spec(None if layers is None else tuple(layers))


def _num(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else f"{float(x):.1f}"


def fingerprint_flags(config: FingerprintConfig, spec: ModelSpec) -> list[str]:
    """CLI flags for the model and fingerprint settings that differ from the CLI defaults."""
    d = FingerprintConfig()
    flags: list[str] = []
    if spec.name != "bundled":
        flags += ["--model", spec.name]
    if spec.device != "auto":
        flags += ["--device", spec.device]
    if spec.dtype != "auto":
        flags += ["--dtype", spec.dtype]
    if spec.trust_remote_code:
        flags.append("--trust-remote-code")
    if config.layers is not None:
        text = format_layers(config.layers)  # negative layers ('-1'): '--layers=-1', or argparse reads a flag
        flags += [f"--layers={text}"] if text.startswith("-") else ["--layers", text]
    # Every field is compared with its default whatever the rule: all of them enter the cache key.
    if config.rule != d.rule:
        flags += ["--rule", config.rule]
    if config.threshold != d.threshold:
        flags += ["--threshold", _num(config.threshold)]
    if config.rule == "threshold" and config.levels != d.levels:  # the CLI drops levels under topk
        flags += ["--levels", ",".join(_num(x) for x in config.levels) or "none"]
    if config.top_k != d.top_k:
        flags += ["--top-k", str(config.top_k)]
    for name in ("pooling", "template"):
        if getattr(config, name) != getattr(d, name):
            flags += [f"--{name}", str(getattr(config, name))]
    if config.max_tokens != d.max_tokens:
        flags += ["--max-tokens", str(config.max_tokens)]
    if config.count_template_tokens:
        flags.append("--count-template-tokens")
    return flags


# SelectConfig fields the CLI exposes (``python -m mads_core select --continuation ...``).
SELECT_FLAG_FIELDS = ("continuation", "m", "weighting", "max_neuron_share", "min_support")


def select_flags(method: str, select_config: SelectConfig | None, method_settings: Mapping[str, Any]) -> list[str]:
    """CLI flags for a method's settings that differ from the defaults (MADS config, baseline seed)."""
    flags: list[str] = []
    if method == "mads" and select_config is not None:
        d = SelectConfig()
        if select_config.layer_subset is not None:
            raise ValueError("layer_subset has no CLI flag: it cannot be reproduced on the command line")
        for name in SELECT_FLAG_FIELDS:
            value = getattr(select_config, name)
            if value == getattr(d, name) or (name == "m" and select_config.continuation != "mcover"):
                continue
            flags += [f"--{name.replace('_', '-')}", repr(value) if isinstance(value, float) else str(value)]
    if method in SEEDED_METHODS and int(method_settings.get("seed", 0)) != 0:
        flags += ["--seed", str(int(method_settings["seed"]))]
    return flags


def cli_command(
    choice: DataChoice,
    spec: ModelSpec,
    config: FingerprintConfig,
    method: str,
    k: int,
    out_name: str,
    select_config: SelectConfig | None = None,
    method_settings: Mapping[str, Any] | None = None,
    n_skipped: int = 0,
) -> str:
    """The shell command that writes the same export file, byte for byte."""
    argv = ["python", "-m", "mads_core", "select", *choice.cli_flags(n_skipped), "--method", method,
            "--budget", str(int(k)), "--out", out_name]
    if method_requirements(method) & {"bits", "ifd", "target"}:  # the model (and its settings) is read
        argv += fingerprint_flags(config, spec)
    argv += select_flags(method, select_config, method_settings or {})
    return shlex.join(argv)


def export_name(dataset_name: str, method: str, k: int, suffix: str) -> str:
    """Default export file name ``<dataset>-<method>-<k><suffix>`` (unsafe characters -> '_')."""
    stem = f"{dataset_name}-{method}-{int(k)}"
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) + suffix


# ---------------------------------------------------------------- budgets


def max_budget(n: int) -> int:
    """Largest budget the app offers (and ranks up to): N, or 30% of N above 5,000 samples."""
    if n <= LARGE_N:
        return max(1, n)
    return max(1, resolve_budget(LARGE_MAX_FRACTION, n))


def default_budget(n: int) -> int:
    """10% of N (at least one pick)."""
    return min(max_budget(n), resolve_budget(DEFAULT_BUDGET_FRACTION, n)) if n else 1


def clamp_budget(k: int, n: int) -> int:
    """``k`` moved into [1, max_budget(n)]."""
    return int(min(max(1, int(k)), max_budget(n)))


def budget_from_share(share: float, n: int) -> int:
    """The pick count of a budget kept as a share of the dataset (the app carries shares across datasets).

    Rounds half up as ``--budget <fraction>`` does on the CLI, then clamps to [1, max_budget(n)].
    """
    share = float(share)
    if not share > 0 or share != share:
        return 1
    return clamp_budget(resolve_budget(min(share, 1.0), n), n) if n else 1


def max_share(n: int) -> float:
    """Largest budget share offered for ``n`` samples."""
    return max_budget(n) / n if n else 1.0


# ---------------------------------------------------------------- methods


def method_key(method: str, select_config: SelectConfig | None, method_settings: Mapping[str, Any]) -> str:
    """Hash of what changes a method's ranking (its own settings only)."""
    payload: dict[str, Any] = {"method": method}
    if method == "mads":
        payload["select"] = (select_config or SelectConfig()).cache_hash()
    elif method in SEEDED_METHODS:
        payload["seed"] = int(method_settings.get("seed", 0))
    return sha256_text(canonical_json(payload))[:16]


def _checked_seed(method: str, method_settings: Mapping[str, Any] | None) -> int:
    """The baselines' seed from ``method_settings`` (0 if unset); ValueError for an unknown method."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return int((method_settings or {}).get("seed", 0))


def run_method(
    method: str,
    dataset: Dataset,
    fingerprints: Any,
    budget: int | float,
    select_config: SelectConfig | None = None,
    embeddings: np.ndarray | None = None,
    method_settings: Mapping[str, Any] | None = None,
) -> Selection:
    """One method's Selection for ``budget`` picks: exactly the CLI's call (``pipeline.run_method``).

    Sharing the dispatcher is what makes an app export and ``python -m mads_core select``
    byte-identical. ``method_settings`` carries the baselines' seed.
    """
    from mads_core import pipeline

    seed = _checked_seed(method, method_settings)
    return pipeline.run_method(method, dataset, fingerprints, budget, select_config=select_config,
                               embeddings=embeddings, seed=seed)


def run_method_cached(
    method: str,
    dataset: Dataset,
    fingerprints: Any,
    budget: int | float,
    select_config: SelectConfig | None = None,
    embeddings: np.ndarray | None = None,
    method_settings: Mapping[str, Any] | None = None,
) -> Selection:
    """:func:`run_method` read from / stored in the on-disk ranking cache (``pipeline.run_method_cached``).

    The same arrays as :func:`run_method`; a ranking computed once (by the app, ``compare``
    or ``bench/app_scale.py``) is read back after a restart instead of recomputed. The app
    asks prefix methods for the largest budget it offers and ``PER_BUDGET_METHODS``
    (k-means) for the exact budget, so each k-means budget is clustered once and then kept.
    """
    from mads_core import pipeline

    seed = _checked_seed(method, method_settings)
    return pipeline.run_method_cached(method, dataset, fingerprints, budget, select_config=select_config,
                                      embeddings=embeddings, seed=seed)


def model_record(method: str, fingerprints: Any) -> dict[str, Any] | None:
    """What an export's manifest records about the model (as the CLI does): None for text-only methods."""
    if method not in NEEDS_FINGERPRINTS or fingerprints is None:
        return None
    from mads_core.cli import model_record as cli_model_record

    return cli_model_record(fingerprints)


# ---------------------------------------------------------------- coverage


def _popcount_rows(words: np.ndarray) -> np.ndarray:
    return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)


def union_coverage(bits: np.ndarray, ranking: np.ndarray, n_neurons: int, chunk: int = 1024) -> np.ndarray:
    """covered[i] = distinct neurons fired by ranking[:i + 1] (plain union; a running OR in blocks)."""
    ranking = np.asarray(ranking, dtype=np.int64)
    out = np.empty(len(ranking), dtype=np.int64)
    acc = np.zeros(bits.shape[1], dtype=np.uint64)
    for s in range(0, len(ranking), chunk):
        rows = np.asarray(bits[np.sort(ranking[s:s + chunk])])[np.argsort(np.argsort(ranking[s:s + chunk]))]
        running = np.bitwise_or.accumulate(rows, axis=0) | acc
        out[s:s + len(rows)] = _popcount_rows(running)
        acc = running[-1]
    return out


def coverable_neurons(bits: np.ndarray, chunk: int = 4096) -> int:
    """Neurons fired by at least one sample."""
    acc = np.zeros(bits.shape[1], dtype=np.uint64)
    for s in range(0, bits.shape[0], chunk):
        acc |= np.bitwise_or.reduce(np.asarray(bits[s:s + chunk]), axis=0)
    return int(_popcount_rows(acc))


def coverage_frame(
    selections: Mapping[str, Selection], bits: np.ndarray, n_neurons: int, max_points: int = 600,
    counts: Mapping[str, np.ndarray] | None = None, coverable: int | None = None,
) -> tuple[pd.DataFrame, int]:
    """(long frame method/k/covered/coverage, coverable) of every method's plain union coverage.

    Uses ``counts`` (a method -> ``metrics.coverage_counts`` of its whole ranking) and
    ``coverable`` when given (the app computes both once per ranking), else
    ``Selection.neurons_covered`` when the method recorded it, else a running OR. Curves are
    thinned to ``max_points`` per method for drawing; the exact saturation k is kept.
    """
    if coverable is None:
        coverable = coverable_neurons(bits)
    parts = []
    for name, sel in selections.items():
        covered = (counts or {}).get(name)
        if covered is None or len(covered) != len(sel.ranking):
            covered = sel.neurons_covered
        if covered is None or len(covered) != len(sel.ranking):
            covered = union_coverage(bits, sel.ranking, n_neurons)
        covered = np.asarray(covered, dtype=np.int64)
        k = np.arange(1, len(covered) + 1)
        keep = _thin(covered, max_points)
        parts.append(pd.DataFrame({"method": name, "k": k[keep], "covered": covered[keep],
                                   "coverage": covered[keep] / coverable if coverable else np.nan}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["method", "k", "covered",
                                                                                    "coverage"])
    return frame, coverable


def _thin(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most ~max_points evenly spaced points, plus the first point reaching the maximum."""
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
    first_top = int(np.argmax(values >= values.max()))
    return np.unique(np.concatenate([idx, [first_top]]))


# ---------------------------------------------------------------- why chosen


def layer_counts(element_ids: np.ndarray, n_neurons: int, layer_offsets: Sequence[int]) -> np.ndarray:
    """How many of ``element_ids`` (neuron ids, or plane * n_neurons + neuron) fall in each layer."""
    neurons = np.asarray(element_ids, dtype=np.int64) % max(n_neurons, 1)
    edges = np.asarray(layer_offsets, dtype=np.int64)
    return np.histogram(neurons, bins=edges)[0].astype(np.int64) if len(edges) > 1 else np.zeros(0, np.int64)


def _or_of(bits: np.ndarray, rows: np.ndarray) -> np.ndarray:
    acc = np.zeros(bits.shape[1], dtype=np.uint64)
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    for s in range(0, len(rows), 4096):
        block = np.asarray(bits[rows[s:s + 4096]])
        if len(block):
            acc |= np.bitwise_or.reduce(block, axis=0)
    return acc


def _set_bits(words: np.ndarray, n_neurons: int) -> np.ndarray:
    raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    return np.flatnonzero(np.unpackbits(raw, bitorder="little")[:n_neurons])


def newly_covered(sel: Selection, bits: np.ndarray, n_neurons: int, rank: int) -> np.ndarray:
    """Element ids pick ``rank`` counted: as the method recorded them, else plain new neurons."""
    if sel.newly_ptr is not None and sel.newly_ids is not None and rank < len(sel.newly_ptr) - 1:
        return np.asarray(sel.newly_covered(rank), dtype=np.int64)
    before = _or_of(bits, sel.ranking[:rank])
    return _set_bits(np.asarray(bits[int(sel.ranking[rank])]) & ~before, n_neurons)


def would_add(bits: np.ndarray, n_neurons: int, chosen: np.ndarray, row: int) -> np.ndarray:
    """Neurons sample ``row`` fires that none of ``chosen`` fires (what it would add to their union)."""
    return _set_bits(np.asarray(bits[int(row)]) & ~_or_of(bits, chosen), n_neurons)


def nearest(bits: np.ndarray, row: int, candidates: np.ndarray, top: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(rows, Jaccard similarity) of the ``top`` candidates whose fingerprints are most like ``row``'s.

    Ties go to the earlier candidate (pick order when ``candidates`` is a ranking prefix).
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    candidates = candidates[candidates != int(row)]
    if len(candidates) == 0:
        return candidates, np.zeros(0)
    me = np.asarray(bits[int(row)])
    other = np.asarray(bits[np.sort(candidates)])[np.argsort(np.argsort(candidates))]
    inter = _popcount_rows(other & me)
    union = _popcount_rows(other | me)
    sim = np.divide(inter, union, out=np.ones(len(inter)), where=union > 0)
    order = np.argsort(-sim, kind="stable")[:top]
    return candidates[order], sim[order]


def nearest_embedding(emb: np.ndarray, row: int, top: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cosine similarity) of the ``top`` samples whose text embeddings are closest to ``row``'s
    (the sample itself left out; ties to the lower row)."""
    emb = np.asarray(emb, dtype=np.float32)
    norms = np.linalg.norm(emb, axis=1)
    sims = (emb @ emb[int(row)]) / np.maximum(norms * norms[int(row)], 1e-12)
    sims[int(row)] = -np.inf
    order = np.argsort(-sims, kind="stable")[:top]
    return order.astype(np.int64), sims[order].astype(np.float64)


def search_text(dataset: Dataset, query: str, limit: int = 50) -> np.ndarray:
    """Rows whose text (as shown: prompt and response) contains ``query``, case-insensitive, in row order."""
    needle = query.strip().lower()
    if not needle:
        return np.zeros(0, dtype=np.int64)
    hits = [i for i in range(len(dataset)) if needle in dataset.display_text(i).lower()]
    return np.asarray(hits[:limit], dtype=np.int64)


# ---------------------------------------------------------------- tables


def sample_label(dataset: Dataset, i: int, chars: int = 90) -> str:
    """One line for hovers: [category] first characters of the prompt."""
    cat = dataset.categories[i]
    text = " ".join(dataset.prompt(i).split()) or " ".join(dataset.display_text(i).split())
    text = text[:chars] + ("…" if len(text) > chars else "")
    return f"[{cat}] {text}" if cat else text


def picks_frame(dataset: Dataset, sel: Selection, k: int, lengths: np.ndarray | None = None,
                text_chars: int = 160) -> pd.DataFrame:
    """The first ``k`` picks in order: rank, row, id, gain at pick, round, category, length, text.

    Ranks and rounds count from 1 everywhere in the app (pick 1 = the first pick, round 1 =
    the first greedy pass), as in the explanations and the gain chart.
    """
    rows = np.asarray(sel.ranking[:k], dtype=np.int64)
    gains = np.asarray(sel.gains[:k], dtype=np.float64)
    return pd.DataFrame({
        "rank": np.arange(1, len(rows) + 1),
        "row": rows,
        "id": [dataset.ids[i] for i in rows],
        "gain": gains,
        "round": np.asarray(sel.rounds[:k], dtype=np.int64) + 1 if len(sel.rounds) >= k else 1,
        "category": [dataset.categories[i] or "" for i in rows],
        "tokens": np.asarray(lengths)[rows] if lengths is not None else [len(dataset.display_text(i))
                                                                          for i in rows],
        "text": [_clip(dataset.display_text(i), text_chars) for i in rows],
    })


def _clip(text: str, chars: int) -> str:
    flat = " ".join(text.split())
    return flat[:chars] + ("…" if len(flat) > chars else "")


def json_default(value: Any) -> Any:
    """JSON fallback for numpy values in app tables and manifests."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def to_json(value: Any) -> str:
    return json.dumps(value, default=json_default, sort_keys=True)
