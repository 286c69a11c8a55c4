"""Packed-bit kernels (numba, ``cache=True``) for coverage selection.

Bit layout (docs/CONTRACTS.md): neuron ``d`` lives in word ``d // 64``, bit ``d % 64``
of a row of uint64 words. numba 0.68 has no ``np.bitwise_count``, so popcount and
count-trailing-zeros are LLVM intrinsics (``llvm.ctpop`` / ``llvm.cttz``), which
compile to single instructions on x86-64.

Everything here works on "planes": a ``(P, N, W)`` uint64 array (one plane for plain
fingerprints, ``bits[None]``), and a ``covered`` state of shape ``(P, W)``. Element
``(p, d)`` (plane ``p``, neuron ``d``) has the flat id ``p * n_neurons + d``.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

__all__ = [
    "column_counts",
    "initial_gains",
    "lazy_greedy",
    "popcount_rows",
    "unpack_bits",
    "valid_mask",
]


@intrinsic
def popcount64(typingctx, x):  # noqa: ARG001
    """Number of set bits of a uint64 (``llvm.ctpop``)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):  # noqa: ARG001
        fn = builder.module.declare_intrinsic("llvm.ctpop", [ir.IntType(64)])
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def ctz64(typingctx, x):  # noqa: ARG001
    """Index of the lowest set bit of a non-zero uint64 (``llvm.cttz``)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):  # noqa: ARG001
        fn = builder.module.declare_intrinsic("llvm.cttz", [ir.IntType(64), ir.IntType(1)])
        return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), 1)])

    return sig, codegen


# --------------------------------------------------------------------------- helpers


def valid_mask(n_neurons: int, n_words: int) -> np.ndarray:
    """(W,) uint64 with the bits of neurons ``0..n_neurons-1`` set (padding bits clear)."""
    out = np.zeros(n_words, dtype=np.uint64)
    full, rest = divmod(n_neurons, 64)
    out[:full] = np.uint64(0xFFFFFFFFFFFFFFFF)
    if rest:
        out[full] = np.uint64((1 << rest) - 1)
    return out


def unpack_bits(bits: np.ndarray, n_neurons: int) -> np.ndarray:
    """Packed ``(..., W)`` uint64 rows -> ``(..., n_neurons)`` bool (for tests and references)."""
    arr = np.ascontiguousarray(bits, dtype="<u8")
    as_bytes = arr.view(np.uint8).reshape(*arr.shape[:-1], arr.shape[-1] * 8)
    return np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :n_neurons].astype(bool)


def pack_bits(fired: np.ndarray) -> np.ndarray:
    """``(..., D)`` bool -> packed ``(..., ceil(D/64))`` uint64 (inverse of :func:`unpack_bits`)."""
    fired = np.asarray(fired, dtype=bool)
    d = fired.shape[-1]
    n_words = max(1, -(-d // 64))
    padded = np.zeros((*fired.shape[:-1], n_words * 64), dtype=bool)
    padded[..., :d] = fired
    packed = np.packbits(padded, axis=-1, bitorder="little")
    return np.ascontiguousarray(packed).view("<u8").astype(np.uint64, copy=False)


# --------------------------------------------------------------------------- passes over all rows


@numba.njit(cache=True, nogil=True)
def _row_gain(planes, i, covered, weights, weighted):
    """Gain of row ``i`` against ``covered``: popcount or weighted popcount of row & ~covered."""
    n_planes, _, n_words = planes.shape
    g = 0
    if not weighted:
        for p in range(n_planes):
            for w in range(n_words):
                g += popcount64(planes[p, i, w] & ~covered[p, w])
        return np.int64(g)
    for p in range(n_planes):
        for w in range(n_words):
            x = planes[p, i, w] & ~covered[p, w]
            base = w * 64
            while x:
                g += weights[p, base + ctz64(x)]
                x &= x - np.uint64(1)
    return np.int64(g)


@numba.njit(cache=True, parallel=True, nogil=True)
def initial_gains(planes, covered, weights, weighted):
    """(N,) int64 gain of every row against ``covered`` (parallel over rows)."""
    n = planes.shape[1]
    out = np.empty(n, dtype=np.int64)
    for i in numba.prange(n):
        out[i] = _row_gain(planes, i, covered, weights, weighted)
    return out


@numba.njit(cache=True, parallel=True, nogil=True)
def popcount_rows(planes):
    """(P, N) int64 set bits per row of every plane."""
    n_planes, n, n_words = planes.shape
    out = np.zeros((n_planes, n), dtype=np.int64)
    for i in numba.prange(n):
        for p in range(n_planes):
            c = 0
            for w in range(n_words):
                c += popcount64(planes[p, i, w])
            out[p, i] = c
    return out


@numba.njit(cache=True, parallel=True, nogil=True)
def column_counts(planes, n_chunks):
    """(P, W*64) int64: how many rows set each bit, per plane (rows split in ``n_chunks``)."""
    n_planes, n, n_words = planes.shape
    acc = np.zeros((n_chunks, n_planes, n_words * 64), dtype=np.int32)
    step = (n + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        for i in range(c * step, min(n, (c + 1) * step)):
            for p in range(n_planes):
                for w in range(n_words):
                    x = planes[p, i, w]
                    base = w * 64
                    while x:
                        acc[c, p, base + ctz64(x)] += 1
                        x &= x - np.uint64(1)
    out = np.zeros((n_planes, n_words * 64), dtype=np.int64)
    for c in range(n_chunks):
        for p in range(n_planes):
            for j in range(n_words * 64):
                out[p, j] += acc[c, p, j]
    return out


# --------------------------------------------------------------------------- heap (max by gain, then min index)


@numba.njit(cache=True, inline="always")
def _better(ub, a, b):
    return ub[a] > ub[b] or (ub[a] == ub[b] and a < b)


@numba.njit(cache=True)
def _sift_down(heap, size, pos, ub):
    item = heap[pos]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        right = child + 1
        if right < size and _better(ub, heap[right], heap[child]):
            child = right
        if not _better(ub, heap[child], item):
            break
        heap[pos] = heap[child]
        pos = child
    heap[pos] = item


@numba.njit(cache=True)
def _heapify(heap, size, ub):
    for pos in range(size // 2 - 1, -1, -1):
        _sift_down(heap, size, pos, ub)


# --------------------------------------------------------------------------- the greedy


@numba.njit(cache=True)
def _take(planes, i, covered, counts, weights, weighted, m, n_neurons, ids, ptr):
    """Apply pick ``i``: record the elements it newly counts in ``ids[ptr:]``, update state.

    Returns (gain, new ptr, ids) — ``ids`` may have been grown.
    """
    n_planes, _, n_words = planes.shape
    need = 0
    for p in range(n_planes):
        for w in range(n_words):
            need += popcount64(planes[p, i, w] & ~covered[p, w])
    if ptr + need > ids.shape[0]:
        grown = np.empty(max(2 * ids.shape[0], ptr + need), dtype=np.int64)
        grown[:ptr] = ids[:ptr]
        ids = grown
    gain = 0
    for p in range(n_planes):
        off = p * n_neurons
        for w in range(n_words):
            x = planes[p, i, w] & ~covered[p, w]
            if x == 0:
                continue
            if m == 1:
                covered[p, w] |= x
            while x:
                b = ctz64(x)
                j = w * 64 + b
                ids[ptr] = off + j
                ptr += 1
                gain += weights[p, j] if weighted else 1
                if m > 1:
                    counts[p, j] += 1
                    if counts[p, j] >= m:
                        covered[p, w] |= np.uint64(1) << b
                x &= x - np.uint64(1)
    return np.int64(gain), ptr, ids


@numba.njit(cache=True)
def lazy_greedy(planes, base_covered, weights, weighted, g0, budget, m, reset, n_neurons):
    """Exact lazy greedy for (saturated, weighted) coverage over packed rows.

    Picks the row with the highest gain, ties to the lowest row index — exactly what a
    naive greedy that recomputes every gain makes. Stale heap values are upper bounds
    (submodularity), so a stale top is re-evaluated and sifted; a fresh top is picked.

    ``base_covered`` marks elements that never count (filtered, padding). An element
    counts until ``m`` picks have covered it. When no remaining row has a positive gain
    and ``reset`` is set, the state goes back to ``base_covered`` (a new round, gains
    back to ``g0``); when even that gives nothing, the rest is zero-gain filler in row
    index order.

    Returns ranking, gains, rounds, newly-covered CSR (ptr, ids), plane-0 distinct
    neurons covered after each pick, and the rank where filler starts (``budget`` if none).
    """
    n_planes, n, n_words = planes.shape
    covered = base_covered.copy()
    counts = np.zeros((n_planes, n_words * 64) if m > 1 else (1, 1), dtype=np.int32)
    ub = g0.copy()
    stamp = np.zeros(n, dtype=np.int64)
    version = 0
    heap = np.arange(n, dtype=np.int64)
    size = n
    _heapify(heap, size, ub)

    ranking = np.empty(budget, dtype=np.int64)
    gains = np.zeros(budget, dtype=np.int64)
    rounds = np.zeros(budget, dtype=np.int32)
    ptr = np.zeros(budget + 1, dtype=np.int64)
    ids = np.empty(max(1024, n_words * 64), dtype=np.int64)
    union = np.zeros(budget, dtype=np.int64)
    ever = base_covered[0].copy()
    for w in range(n_words):
        ever[w] = 0
    valid_last = ~np.uint64(0)
    if n_neurons % 64:
        valid_last = (np.uint64(1) << np.uint64(n_neurons % 64)) - np.uint64(1)
    n_union = 0
    rnd = 0
    k = 0
    filler_from = budget
    while k < budget:
        top = heap[0]
        if ub[top] <= 0:
            if reset and _any_positive(heap, size, g0):
                covered[:, :] = base_covered
                if m > 1:
                    counts[:, :] = 0
                version += 1
                for h in range(size):
                    ub[heap[h]] = g0[heap[h]]
                    stamp[heap[h]] = version
                _heapify(heap, size, ub)
                rnd += 1
                continue
            filler_from = k
            rest = np.sort(heap[:size])
            for i in rest[: budget - k]:
                ranking[k] = i
                rounds[k] = rnd
                ptr[k + 1] = ptr[k]
                n_union = _union_add(planes, i, ever, valid_last, n_union)
                union[k] = n_union
                k += 1
            break
        if stamp[top] != version:
            ub[top] = _row_gain(planes, top, covered, weights, weighted)
            stamp[top] = version
            _sift_down(heap, size, 0, ub)
            continue
        size -= 1
        heap[0] = heap[size]
        _sift_down(heap, size, 0, ub)
        g, p_next, ids = _take(planes, top, covered, counts, weights, weighted, m, n_neurons, ids, ptr[k])
        ranking[k] = top
        gains[k] = g
        rounds[k] = rnd
        ptr[k + 1] = p_next
        n_union = _union_add(planes, top, ever, valid_last, n_union)
        union[k] = n_union
        version += 1
        k += 1
    return ranking, gains, rounds, ptr, ids[: ptr[budget]].copy(), union, filler_from


@numba.njit(cache=True)
def _any_positive(heap, size, g0):
    for h in range(size):
        if g0[heap[h]] > 0:
            return True
    return False


@numba.njit(cache=True)
def _union_add(planes, i, ever, valid_last, n_union):
    """Add row ``i`` of plane 0 to the distinct-neuron union; return the new union size."""
    n_words = planes.shape[2]
    for w in range(n_words):
        x = planes[0, i, w]
        if w == n_words - 1:
            x &= valid_last
        n_union += popcount64(x & ~ever[w])
        ever[w] |= x
    return n_union
