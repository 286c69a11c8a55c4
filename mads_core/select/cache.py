"""On-disk cache of rankings (``Selection``), content-addressed like fingerprints.

A ranking is stored under ``<cache>/rankings/<key>/`` as one ``.npy`` per array field and
``meta.json`` for the rest (method, n, settings, settings hash, ...), written atomically
and checksummed by :mod:`mads_core.model.store`. The key hashes everything the ranking
depends on: the method, the content keys of its inputs (dataset, fingerprints,
embeddings), its settings, the number of picks, ``RANKING_VERSION`` and the method's
``METHOD_VERSIONS`` entry (bumped whenever an algorithm changes its output). A ranking read
back equals the computed one array for
array; ``settings`` comes back through JSON (tuples become lists; the recorded
``settings_hash`` is unchanged).

Rankings of prefix methods (MADS, k-center, random, ...) are computed once up to the
largest budget and sliced; per-budget methods (k-means) are stored once per budget.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mads_core.config import canonical_json, sha256_text
from mads_core.model.store import artifact_dir, load_arrays, save_arrays
from mads_core.select.greedy import Selection

RANKING_VERSION = 1
KIND = "rankings"
# Per-method algorithm revisions that change picks (bumped instead of RANKING_VERSION so the
# other methods' cached rankings, and the demo asset's, stay valid). 2: k-center on TF-IDF
# above 10,000 samples runs on a TruncatedSVD reduction; k-means above 2,000 samples on a PCA-64.
METHOD_VERSIONS: dict[str, int] = {"kcenter-tfidf": 2, "kmeans-embed": 2}


def ranking_key(method: str, inputs: Mapping[str, str], settings: Mapping[str, Any], k: int) -> str:
    """24-hex cache key of ``method``'s ranking of ``k`` picks over ``inputs`` (content keys) with ``settings``."""
    payload = {"method": method, "inputs": dict(inputs), "settings": dict(settings), "k": int(k),
               "version": RANKING_VERSION}
    if method in METHOD_VERSIONS:
        payload["algorithm"] = METHOD_VERSIONS[method]
    return sha256_text(canonical_json(payload))[:24]


def save_selection(folder: str | Path, sel: Selection) -> Path:
    """Write ``sel`` to ``folder`` (arrays as ``.npy``, the rest in ``meta.json``), atomically."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"version": RANKING_VERSION}
    for f in dataclasses.fields(sel):
        value = getattr(sel, f.name)
        if isinstance(value, np.ndarray):
            arrays[f.name] = value
        elif value is not None:
            meta[f.name] = value
    return save_arrays(folder, arrays, {"selection": json.loads(json.dumps(meta, default=_plain))})


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in a ranking's meta")


def load_selection(folder: str | Path) -> Selection | None:
    """The Selection stored in ``folder``; None when missing, corrupt (removed) or of another version."""
    found = load_arrays(folder, mmap=False)
    if found is None:
        return None
    arrays, meta = found
    fields = dict(meta.get("selection") or {})
    if fields.pop("version", None) != RANKING_VERSION:
        return None
    names = {f.name for f in dataclasses.fields(Selection)}
    values = {name: value for name, value in {**fields, **arrays}.items() if name in names}
    sel = Selection(**values)
    for value in arrays.values():
        value.setflags(write=False)
    return sel


def cached_selection(
    method: str,
    inputs: Mapping[str, str],
    settings: Mapping[str, Any],
    k: int,
    compute: Callable[[], Selection],
    cache: str | Path | None = None,
    use_cache: bool = True,
    refresh: bool = False,
) -> tuple[Selection, bool]:
    """(ranking, was_cached): read from the cache, or ``compute()`` it and store it.

    ``use_cache=False``: compute, store nothing; ``refresh=True``: compute and overwrite.

    ``inputs`` name the content of everything the method reads (e.g. dataset hash,
    fingerprint key, embedding key); ``settings`` everything else that changes its picks.
    """
    folder = artifact_dir(KIND, ranking_key(method, inputs, settings, k), cache)
    if use_cache and not refresh:
        hit = load_selection(folder)
        if hit is not None:
            return hit, True
    sel = compute()
    if use_cache:
        save_selection(folder, sel)
    return sel, False
