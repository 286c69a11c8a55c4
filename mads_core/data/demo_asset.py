"""The default demo's precomputed results, shipped with the repository so a first visit draws at once.

``assets/demo/default.tar.xz`` (~2 MB) is a miniature cache root in the store's own
layout — ``fingerprints/<key>/result``, ``embeddings/<key>``, ``projections/<key>`` and
``rankings/<key>`` — for the bundled demo preset ``default``, the bundled model and the
default fingerprint, selection and map settings. ``scripts/build_demo_asset.py`` builds
it with the library's ordinary functions; ``tests/test_demo_asset.py`` checks it against
a fresh computation of a sample of rows (and fails when the data, model or settings
hashing moved on and the asset must be rebuilt).

The app unpacks it once into ``<cache root>/demo-asset/<sha256[:16]>/`` and reads it as a
second, read-only cache root, only where the user's own cache lacks an entry. Keys are
content hashes, so the asset can only ever answer for exactly that data, model and
settings; pages label what came from it (:func:`is_asset_path`). Nothing in it is
pickled; every array is a ``.npy`` read with ``allow_pickle=False`` and checked against
the SHA-256 recorded in its folder's ``meta.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from mads_core.config import canonical_json, sha256_text
from mads_core.model.store import artifact_dir, cache_root
from mads_core.select.cache import save_selection

ASSET_FILE = Path(__file__).resolve().parents[2] / "assets" / "demo" / "default.tar.xz"
MANIFEST = "asset.json"
RANKINGS = "rankings"
_DONE = ".complete"


# ---------------------------------------------------------------- rankings as cache entries


def ranking_key(dataset_hash: str, fingerprint_key: str, method_key: str, upto: int) -> str:
    """Cache key of one method's ranking up to ``upto`` picks (the app's memo key, hashed)."""
    return sha256_text(canonical_json({"dataset": dataset_hash, "fingerprints": fingerprint_key,
                                       "method": method_key, "upto": int(upto)}))[:24]


# ---------------------------------------------------------------- reading the asset


def asset_sha256(path: Path = ASSET_FILE) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def root(asset: Path = ASSET_FILE) -> Path | None:
    """The unpacked asset as a cache root (unpacked once, atomically); None when the repo has no asset."""
    if not asset.is_file():
        return None
    folder = cache_root() / "demo-asset" / asset_sha256(asset)[:16]
    if (folder / _DONE).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}"
    try:
        with tarfile.open(asset, "r:xz") as tar:
            tar.extractall(tmp, filter="data")  # no links, no absolute paths, no device files
        (tmp / _DONE).write_text("", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def manifest(asset_root: Path) -> dict[str, Any]:
    return json.loads((asset_root / MANIFEST).read_text(encoding="utf-8"))


def is_asset_path(path: str | Path | None) -> bool:
    """Whether a cache entry's path lies in an unpacked demo asset (for labels)."""
    return path is not None and "demo-asset" in Path(path).parts


# ---------------------------------------------------------------- building it


def build(out: Path = ASSET_FILE) -> dict[str, Any]:
    """Compute (or take from the user's cache) the default demo's results and pack them into ``out``.

    Uses the library's own functions with default settings, so every entry has exactly
    the key the app looks up. Returns the manifest.
    """
    import tempfile

    from mads_core import session
    from mads_core.analysis.project import project_embeddings, project_fingerprints
    from mads_core.config import FingerprintConfig, ModelSpec, SelectConfig
    from mads_core.data.demo import load_demo
    from mads_core.model import embed
    from mads_core.model.fingerprint import fingerprint_dataset
    from mads_core.model.models import model_identity

    ds = load_demo("default")
    spec, config = ModelSpec(), FingerprintConfig()
    fp = fingerprint_dataset(ds, spec, config)
    emb = np.asarray(embed.dataset_embeddings(ds))
    emb_key = embed.embedding_key(ds)
    with tempfile.TemporaryDirectory() as tmp_name:
        mini = Path(tmp_name) / "root"
        shutil.copytree(Path(fp.path), artifact_dir("fingerprints", fp.key, mini) / "result")
        shutil.copytree(artifact_dir(embed.CACHE_KIND, emb_key), artifact_dir(embed.CACHE_KIND, emb_key, mini))
        fp_proj = project_fingerprints(fp.bits, fp.n_neurons, input_key=fp.key)
        emb_proj = project_embeddings(emb, input_key=emb_key)
        for proj in (fp_proj, emb_proj):
            shutil.copytree(artifact_dir("projections", proj.key), artifact_dir("projections", proj.key, mini))
        upto = session.max_budget(len(ds))
        rankings = {}
        for method in session.DEFAULT_METHODS:
            mkey = session.method_key(method, SelectConfig(), {})
            sel = session.run_method(method, ds, fp, upto, select_config=SelectConfig(), embeddings=emb)
            key = ranking_key(ds.content_hash(), fp.key, mkey, upto)
            save_selection(artifact_dir(RANKINGS, key, mini), sel)
            rankings[method] = key
        info = {
            "what": "bundled demo 'default' with the bundled model and default settings",
            "built_by": "scripts/build_demo_asset.py",
            "dataset_hash": ds.content_hash(), "n_samples": len(ds),
            "model_hash": model_identity(spec)["hash"], "fingerprint_settings": config.cache_hash(),
            "fingerprint_key": fp.key, "embedding_key": emb_key,
            "projection_keys": {"fingerprints": fp_proj.key, "embeddings": emb_proj.key},
            "rankings": rankings, "rankings_upto": upto,
            "versions": _versions(),
        }
        (mini / MANIFEST).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:xz", preset=9) as tar:
            for path in sorted(mini.rglob("*")):
                item = tar.gettarinfo(str(path), arcname=path.relative_to(mini).as_posix())
                item.mtime, item.uid, item.gid, item.uname, item.gname = 0, 0, 0, "", ""
                if path.is_file():
                    with open(path, "rb") as fh:
                        tar.addfile(item, fh)
                else:
                    tar.addfile(item)
        tmp_out = out.with_name(out.name + ".tmp")
        tmp_out.write_bytes(buffer.getvalue())
        os.replace(tmp_out, out)
    return info


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "transformers", "numpy", "scikit-learn", "umap-learn"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found
