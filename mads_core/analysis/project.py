"""2-D projections of fingerprints and text embeddings for the scatter plots.

Fingerprints are N x D bits (D = 46,080 for the bundled model): running UMAP on
raw Jaccard over that many bits is slow, so they are first reduced with a
truncated SVD (randomized, Halko et al.; its products with the bit matrix are numba
kernels over the packed uint64 words, so the unpacked N x D matrix never exists),
then embedded with euclidean UMAP (umap-learn). Sentence embeddings go straight to
cosine UMAP. Very small sets (fewer than ``MIN_UMAP_SAMPLES`` rows) cannot support a
neighbour graph: they fall back to a plain 2-D SVD, and the returned ``method``
string says so. From ``LARGE_ROWS`` rows on, UMAP starts from a PCA layout instead
of its spectral one (see ``LARGE_INIT``).

Results are cached on disk (``store.save_arrays``: atomic, checksummed; a corrupt
entry is dropped and recomputed) keyed by the input's content hash and every
setting, and are deterministic for a seed (fixed ``random_state``, which makes
UMAP's layout single-threaded; fixed summation order in the SVD kernels; one BLAS
thread for its factorisations). Long maps report progress through a
``progress(stage, fraction)`` callback; the app runs them in
``mads_core.analysis.background``.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from mads_core.config import canonical_json, sha256_text
from mads_core.model.store import artifact_dir, load_arrays, save_arrays
from mads_core.select.bitops import ctz64

ProjectProgress = Callable[[str, float], None]  # (stage description, fraction done of the whole job)

PROJECTION_VERSION = 2
MIN_UMAP_SAMPLES = 15
DEFAULT_SVD_DIMS = 50
DEFAULT_NEIGHBORS = 15
DEFAULT_MIN_DIST = 0.1
DEFAULT_SEED = 0
BLOCK_ROWS = 2048
# Transposed row blocks (D x ceil(rows/64) words each) are kept between SVD passes while
# they take at most this many bytes in all; above it they are rebuilt per pass.
KEEP_TRANSPOSED_BYTES = 1 << 30
# Above this many rows the SVD is fitted on a seeded sample of rows, then applied to all.
FIT_ROWS = 20_000
# Largest N x D for UMAP on the raw (unpacked) bits without an SVD first.
MAX_RAW_CELLS = 100_000_000
# The large-N recipe, used from LARGE_ROWS rows on (below it, UMAP's own defaults, so the
# shipped demo maps keep their keys): a LARGE_INIT start instead of UMAP's spectral one, and
# LARGE_EPOCHS layout epochs (None: UMAP's default, 500 up to 10,000 rows and 200 above).
# The spectral start is what made large maps slow: on the clustered 52,000-point text graph
# it took ~140 s of CPU, the PCA start well under 1 s, at the same map quality (bench/maps.py).
# Part of the cache key (``large_recipe``).
LARGE_ROWS = 5_000
LARGE_EPOCHS: int | None = None
LARGE_INIT = "pca"
GRAPH_SHARE = 0.3  # share of a UMAP progress bar given to its neighbour graph and start (no progress of their own)
SVD_SHARE_LARGE = 0.25  # share of a large fingerprint map's progress bar given to the SVD


@dataclass(frozen=True)
class Projection:
    """2-D coordinates of every row and a human-readable account of how they were made."""

    coords: np.ndarray  # (N, 2) float32
    method: str         # e.g. "SVD(50) → UMAP(n_neighbors=15, euclidean)"
    key: str            # cache key
    cache_hit: bool = False
    ready: bool = True  # False: still being computed (coords all NaN, ``method`` says how far it got)


# ------------------------------------------------------------------ hashing


def array_hash(array: np.ndarray, block_rows: int = 8192) -> str:
    """SHA-256 over dtype, shape and bytes of ``array`` (read in row blocks; works on memmaps)."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    for start in range(0, array.shape[0], block_rows):
        digest.update(np.ascontiguousarray(array[start : start + block_rows]).tobytes())
    return digest.hexdigest()


def _cache_key(kind: str, input_hash: str, settings: dict) -> str:
    payload = {"kind": kind, "input": input_hash, "settings": settings, "version": PROJECTION_VERSION}
    return sha256_text(canonical_json(payload))[:24]


def _cached(kind: str, key: str, cache: str | Path | None) -> Projection | None:
    found = load_arrays(artifact_dir(kind, key, cache), mmap=False)
    if found is None:
        return None
    arrays, meta = found
    return Projection(np.asarray(arrays["coords"], dtype=np.float32), str(meta["method"]), key, cache_hit=True)


def _store(kind: str, key: str, coords: np.ndarray, method: str, settings: dict, cache: str | Path | None) -> None:
    meta = {"method": method, "settings": settings, "version": PROJECTION_VERSION}
    save_arrays(artifact_dir(kind, key, cache), {"coords": coords.astype(np.float32)}, meta)


# ------------------------------------------------------------ bits -> SVD
# Products with the (N, D) 0/1 matrix A are read straight from the packed words: for every
# set bit, add one row of the dense factor. Sums run in ascending index order, block by block
# (``BLOCK_ROWS`` rows), so the result does not depend on the number of threads.


@numba.njit(cache=True, parallel=True, nogil=True)
def _bits_times(bits, m, out):  # pragma: no cover - numba
    """out[i] = sum of m[d] over the set bits d of packed row i: (R, W) uint64 @ (D, k) -> (R, k)."""
    n, w = bits.shape
    dmax, k = m.shape
    for i in numba.prange(n):
        for c in range(k):
            out[i, c] = 0.0
        for j in range(w):
            word = bits[i, j]
            while word != 0:
                d = j * 64 + np.int64(ctz64(word))
                if d >= dmax:
                    break
                for c in range(k):
                    out[i, c] += m[d, c]
                word &= word - np.uint64(1)


@numba.njit(cache=True, parallel=True, nogil=True)
def _transpose_bits(bits, n_neurons, out):  # pragma: no cover - numba
    """Packed (R, W) rows -> packed (n_neurons, ceil(R/64)) columns; ``out`` zeroed by the caller."""
    n, w = bits.shape
    for g in numba.prange((n + 63) // 64):
        for r in range(min(64, n - g * 64)):
            bit = np.uint64(1) << np.uint64(r)
            for j in range(w):
                word = bits[g * 64 + r, j]
                while word != 0:
                    d = j * 64 + np.int64(ctz64(word))
                    if d >= n_neurons:
                        break
                    out[d, g] |= bit
                    word &= word - np.uint64(1)


class _BitBlocks:
    """Row blocks of a packed bit matrix, and their transposes (kept while under ``KEEP_TRANSPOSED_BYTES``)."""

    def __init__(self, bits: np.ndarray, n_neurons: int, block_rows: int = BLOCK_ROWS):
        self.bits, self.n_neurons, self.block_rows = bits, n_neurons, block_rows
        self.starts = list(range(0, bits.shape[0], block_rows))
        per_block = n_neurons * -(-min(block_rows, max(bits.shape[0], 1)) // 64) * 8
        self._keep = per_block * len(self.starts) <= KEEP_TRANSPOSED_BYTES
        self._transposed: dict[int, np.ndarray] = {}

    def rows(self, start: int) -> np.ndarray:
        return np.ascontiguousarray(self.bits[start : start + self.block_rows], dtype=np.uint64)

    def transposed(self, start: int) -> np.ndarray:
        found = self._transposed.get(start)
        if found is None:
            rows = self.rows(start)
            found = np.zeros((self.n_neurons, -(-rows.shape[0] // 64)), dtype=np.uint64)
            _transpose_bits(rows, self.n_neurons, found)
            if self._keep:
                self._transposed[start] = found
        return found


def _a_times(blocks: _BitBlocks, m: np.ndarray, n_rows: int) -> np.ndarray:
    """A @ m for the (N, D) bit matrix A, block by block."""
    m = np.ascontiguousarray(m, dtype=np.float64)
    out = np.empty((n_rows, m.shape[1]), dtype=np.float64)
    for start in blocks.starts:
        rows = blocks.rows(start)
        _bits_times(rows, m, out[start : start + rows.shape[0]])
    return out


def _at_times(blocks: _BitBlocks, m: np.ndarray, n_cols: int) -> np.ndarray:
    """A.T @ m for the (N, D) bit matrix A: per row block, its transposed bits times its rows of m."""
    m = np.ascontiguousarray(m, dtype=np.float64)
    out = np.zeros((n_cols, m.shape[1]), dtype=np.float64)
    part = np.empty_like(out)
    for start in blocks.starts:
        cols = blocks.transposed(start)
        _bits_times(cols, np.ascontiguousarray(m[start : start + blocks.block_rows]), part)
        out += part
    return out


def svd_bits(
    bits: np.ndarray,
    n_neurons: int,
    n_components: int,
    n_iter: int = 2,
    oversample: int = 10,
    seed: int = DEFAULT_SEED,
    progress: ProjectProgress | None = None,
    block_rows: int = BLOCK_ROWS,
    fit_rows: int = FIT_ROWS,
) -> np.ndarray:
    """Truncated SVD scores (N, k) of the unpacked bits (uncentred, like scikit-learn's TruncatedSVD).

    Randomized range finder (Halko et al.) with ``n_iter`` power iterations; every
    product with the bit matrix streams over row blocks, so memory stays
    O((N + D) * k). Above ``fit_rows`` rows the components are fitted on a seeded
    sample of ``fit_rows`` rows and every row is then projected onto them in one
    more pass (fit on a sample, transform all). Deterministic for a fixed ``seed``
    (products with the bits sum in a fixed order; factorisations run on one BLAS
    thread); each component's sign makes its largest-magnitude score positive.
    """
    n = bits.shape[0]
    rng = np.random.default_rng(seed)
    sampled = n > fit_rows
    fit = np.asarray(bits[np.sort(rng.choice(n, size=fit_rows, replace=False))]) if sampled else bits
    m = fit.shape[0]
    k = max(1, min(n_components, m, n_neurons))
    width = min(k + oversample, m, n_neurons)
    blocks = _BitBlocks(fit, n_neurons, block_rows)
    passes = 2 * n_iter + 2 + (1 if sampled else 0)
    done = 0

    def step(label: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(f"SVD of {n:,} x {n_neurons:,} bits: {label}", done / passes)

    with threadpool_limits(limits=1, user_api="blas"):  # small factorisations: 2+ BLAS threads are slower
        q, _ = np.linalg.qr(_a_times(blocks, rng.standard_normal((n_neurons, width)), m))
        step("range")
        for i in range(n_iter):
            z, _ = np.linalg.qr(_at_times(blocks, q, n_neurons))
            q, _ = np.linalg.qr(_a_times(blocks, z, m))
            step(f"power iteration {i + 1}/{n_iter}")
        b_t = _at_times(blocks, q, n_neurons)  # (D, width) = (Q^T A)^T
        step("components")
        u_small, s, vt = np.linalg.svd(b_t.T, full_matrices=False)
        if sampled:
            scores = _a_times(_BitBlocks(bits, n_neurons, block_rows), vt[:k].T, n)
            step(f"projecting all {n:,} rows")
        else:
            scores = (q @ u_small[:, :k]) * s[:k]
    signs = np.sign(scores[np.argmax(np.abs(scores), axis=0), np.arange(k)])
    signs[signs == 0] = 1.0
    return (scores * signs).astype(np.float32)


# ------------------------------------------------------------------ UMAP


class _EpochSink:
    """A file for tqdm: UMAP's layout reports its epochs through tqdm (``tqdm_kwds``); turn them into progress."""

    def __init__(self, progress: ProjectProgress, label: str):
        self.progress, self.label = progress, label

    def write(self, text: str) -> None:
        found = re.findall(r"(\d+)/(\d+)", text)
        if found:
            done, total = (int(v) for v in found[-1])
            self.progress(f"{self.label}: epoch {done}/{total}", done / max(total, 1))

    def flush(self) -> None:
        pass


def _umap(x: np.ndarray, metric: str, n_neighbors: int, min_dist: float, seed: int, large: bool = False,
          progress: ProjectProgress | None = None) -> np.ndarray:
    """UMAP of ``x`` to 2-D; ``large`` = the large-N recipe (see ``LARGE_ROWS``). Progress from 0 to 1."""
    import umap

    extra: dict = {"n_epochs": LARGE_EPOCHS, "init": LARGE_INIT} if large else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs overridden by random_state; small-graph spectral init notes
        if progress is not None:
            progress(f"UMAP neighbour graph of {len(x):,} points and {extra.get('init', 'spectral')} start",
                     0.0)
            sink = _EpochSink(_scaled(progress, GRAPH_SHARE, 1.0), "UMAP layout")
            extra["tqdm_kwds"] = {"disable": False, "file": sink, "bar_format": "{n}/{total}", "mininterval": 0.5}
        model = umap.UMAP(
            n_neighbors=n_neighbors, n_components=2, metric=metric, min_dist=min_dist, random_state=seed,
            n_jobs=1, **extra,
        )
        return np.asarray(model.fit_transform(x), dtype=np.float32)


def large_recipe() -> dict:
    """The large-N recipe's settings (part of the cache key of every map made with it)."""
    return {"epochs": LARGE_EPOCHS, "init": LARGE_INIT}


def _recipe_note(large: bool) -> str:
    if not large:
        return ""
    return f"; {LARGE_INIT} start" + (f", {LARGE_EPOCHS} epochs" if LARGE_EPOCHS else "")


def _small_fallback(x: np.ndarray) -> np.ndarray:
    """2-D coordinates for fewer rows than a neighbour graph needs: the top two SVD scores, centred."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    out = np.zeros((x.shape[0], 2), dtype=np.float32)
    if x.shape[0] < 2 or not np.any(x):
        return out
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    dims = min(2, len(s))
    out[:, :dims] = (u[:, :dims] * s[:dims]).astype(np.float32)
    return out


def _neighbors(n: int, n_neighbors: int) -> int:
    return max(2, min(n_neighbors, n - 1))


# ------------------------------------------------------------------ public


def project_fingerprints(
    bits: np.ndarray,
    n_neurons: int,
    *,
    svd_dims: int = DEFAULT_SVD_DIMS,
    n_neighbors: int = DEFAULT_NEIGHBORS,
    min_dist: float = DEFAULT_MIN_DIST,
    seed: int = DEFAULT_SEED,
    input_key: str | None = None,
    cache: str | Path | None = None,
    use_cache: bool = True,
    compute: bool = True,
    progress: ProjectProgress | None = None,
    large_rows: int = LARGE_ROWS,
) -> Projection | None:
    """2-D map of packed fingerprint rows ``bits`` (N, W) uint64: SVD(svd_dims) then euclidean UMAP.

    ``input_key`` names the input for the cache (e.g. ``Fingerprints.key``, which is
    already content-addressed); without it the bits are hashed. ``svd_dims=0`` skips
    the SVD and runs Jaccard UMAP on the unpacked bits (only for N x D up to
    ``MAX_RAW_CELLS``). Fewer than ``MIN_UMAP_SAMPLES`` rows: a 2-D SVD of the bits
    instead of UMAP. From ``large_rows`` rows on, the SVD path uses the large-N recipe
    (:func:`large_recipe`: ``LARGE_INIT`` start, ``LARGE_EPOCHS`` epochs; part of the
    cache key). ``compute=False`` only reads the cache (None on a miss). ``progress``
    receives (stage, fraction of the whole job) from the calling thread.
    """
    if bits.ndim != 2 or bits.shape[1] != -(-n_neurons // 64):
        raise ValueError(f"bits must be (N, ceil({n_neurons}/64)) uint64 words, got shape {bits.shape}")
    n = bits.shape[0]
    if n == 0:
        raise ValueError("nothing to project: no rows")
    settings = {"svd_dims": svd_dims, "n_neighbors": n_neighbors, "min_dist": min_dist, "seed": seed,
                "n_neurons": n_neurons}
    large = svd_dims > 0 and n >= max(large_rows, MIN_UMAP_SAMPLES)
    if large:
        settings["recipe"] = large_recipe()
    if svd_dims == 0 and n * n_neurons > MAX_RAW_CELLS:
        raise ValueError(f"UMAP on raw bits needs N x D <= {MAX_RAW_CELLS:,} ({n:,} x {n_neurons:,} given): "
                         "use an SVD pre-reduction (svd_dims > 0)")
    key = _cache_key("fingerprints", input_key or array_hash(bits), settings)
    hit = _cached("projections", key, cache) if use_cache else None
    if hit is not None or not compute:
        return hit
    if n < MIN_UMAP_SAMPLES:
        coords = _small_fallback(svd_bits(bits, n_neurons, min(max(svd_dims, 2), n), seed=seed,
                                          progress=progress))
        method = f"SVD(2) of the bits (only {n} samples: too few for UMAP)"
    elif svd_dims == 0:
        if progress is not None:
            progress(f"Jaccard UMAP of {n:,} raw fingerprints", 0.0)
        nn = _neighbors(n, n_neighbors)
        raw = np.unpackbits(np.ascontiguousarray(bits, dtype="<u8").view(np.uint8), axis=1,
                            bitorder="little")[:, :n_neurons].astype(bool)
        coords = _umap(raw, "jaccard", nn, min_dist, seed)
        method = f"UMAP(n_neighbors={nn}, Jaccard) of the raw bits (no SVD)"
    else:
        dims = min(svd_dims, n - 1, n_neurons)
        share = SVD_SHARE_LARGE if large else 0.6
        reduced = svd_bits(bits, n_neurons, dims, seed=seed, progress=_scaled(progress, 0.0, share))
        if progress is not None:
            progress(f"UMAP of {n:,} points ({dims} SVD dims)", share)
        nn = _neighbors(n, n_neighbors)
        coords = _umap(reduced, "euclidean", nn, min_dist, seed, large=large, progress=_scaled(progress, share, 1.0))
        fitted = f", fitted on {FIT_ROWS:,} sampled rows" if n > FIT_ROWS else ""
        method = f"SVD({dims}{fitted}) → UMAP(n_neighbors={nn}, euclidean{_recipe_note(large)})"
    if progress is not None:
        progress("done", 1.0)
    if use_cache:
        _store("projections", key, coords, method, settings, cache)
    return Projection(coords, method, key)


def project_embeddings(
    emb: np.ndarray,
    *,
    n_neighbors: int = DEFAULT_NEIGHBORS,
    min_dist: float = DEFAULT_MIN_DIST,
    seed: int = DEFAULT_SEED,
    input_key: str | None = None,
    cache: str | Path | None = None,
    use_cache: bool = True,
    compute: bool = True,
    progress: ProjectProgress | None = None,
    large_rows: int = LARGE_ROWS,
) -> Projection | None:
    """2-D map of sentence embeddings (N, d): cosine UMAP (2-D SVD below ``MIN_UMAP_SAMPLES`` rows).

    From ``large_rows`` rows on, the large-N recipe (as for fingerprints). ``compute=False``
    only reads the cache (None on a miss).
    """
    emb = np.asarray(emb)
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty (N, d) array, got shape {emb.shape}")
    n = emb.shape[0]
    settings = {"n_neighbors": n_neighbors, "min_dist": min_dist, "seed": seed}
    large = n >= max(large_rows, MIN_UMAP_SAMPLES)
    if large:
        settings["recipe"] = large_recipe()
    key = _cache_key("embeddings", input_key or array_hash(emb), settings)
    hit = _cached("projections", key, cache) if use_cache else None
    if hit is not None or not compute:
        return hit
    if n < MIN_UMAP_SAMPLES:
        unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        coords = _small_fallback(unit)
        method = f"SVD(2) of unit embeddings (only {n} samples: too few for UMAP)"
    else:
        if progress is not None:
            progress(f"UMAP of {n:,} embeddings", 0.0)
        nn = _neighbors(n, n_neighbors)
        coords = _umap(np.asarray(emb, dtype=np.float32), "cosine", nn, min_dist, seed, large=large,
                       progress=progress)
        method = f"UMAP(n_neighbors={nn}, cosine{_recipe_note(large)}) of {emb.shape[1]}-d sentence embeddings"
    if progress is not None:
        progress("done", 1.0)
    if use_cache:
        _store("projections", key, coords, method, settings, cache)
    return Projection(coords, method, key)


def _scaled(progress: ProjectProgress | None, lo: float, hi: float) -> ProjectProgress | None:
    """A progress callback mapping a sub-task's [0, 1] onto [lo, hi] of the whole job."""
    if progress is None:
        return None
    return lambda label, frac: progress(label, lo + (hi - lo) * frac)
