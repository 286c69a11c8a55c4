"""Packed-bit kernels (numba, ``cache=True``) for the coverage greedy.

Bit layout (docs/CONTRACTS.md): neuron ``d`` lives in word ``d // 64``, bit ``d % 64``
of a row of uint64 words. numba 0.68 has no ``np.bitwise_count``, so popcount and
count-trailing-zeros are LLVM intrinsics (``llvm.ctpop`` / ``llvm.cttz``): one
instruction each on x86-64, a short portable sequence elsewhere.

The greedy works on a *representation* of the ground set:

- ``mat``    ``(P, N, Wm)`` uint64 rows (the input planes, or a compacted copy);
- ``cov``    ``(P, Wm)`` uint64: bits that no longer count (covered, filtered, padding);
- ``colmap`` ``(P, Wm*64)`` int64: element id of every bit position (``-1`` = none); an
  element is neuron ``d`` of plane ``p`` with id ``p * n_neurons + d``;
- ``wts``    ``(P, Wm*64)`` int64 element weights (weighted mode only);
- ``wsl``    ``(K, P, Wm)`` uint64 bit slices of the weights: bit k of every weight;
- ``cnt``    ``(P, Wm*64)`` int32 how many picks have counted each element (m-cover only).

Weighted gains are exact integer sums either way: ``sum_k 2**k * popcount(x & wsl[k])``
or, for rows with few counting bits, the weights of their set bits added one by one.

:func:`compact` rebuilds the representation with only the still-counting elements, so
gain evaluations get cheaper as coverage fills up.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# Status codes returned by greedy_run.
DONE, COMPACT, SATURATED, BATCH = 0, 1, 2, 3
# Scalar slots of the int64 ``sc`` state vector shared with the Python driver.
(SC_K, SC_VERSION, SC_SIZE, SC_NIDS, SC_LEFT, SC_ROUND, SC_EVALS, SC_NCAND, SC_PICK_EVALS,
 SC_RECENT) = range(10)
N_SC = 10
# A pick that needed BATCH_MIN sequential evaluations hands out batches of BATCH_SIZE.
BATCH_MIN = 256
BATCH_SIZE = 2048
# Compact when the still-counting elements fit in 1/COMPACT_SHRINK of the current words
# (measured: 4 beat 2 and 3 on skewed paper-scale data; see bench/README.md), or earlier
# (from 1/COMPACT_MIN_SHRINK) when the evaluations of the next COMPACT_HORIZON picks at the
# recent rate would read more words than compacting the remaining rows does.
COMPACT_SHRINK = 4
COMPACT_MIN_SHRINK = 1.5
COMPACT_HORIZON = 16
# A counting bit costs about this many sliced word-popcounts when iterated (measured ~20).
ITER_COST = 20


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


@intrinsic
def pext64(typingctx, x, m):  # noqa: ARG001
    """BMI2 parallel bit extract: the bits of ``x`` under mask ``m``, packed low (x86 only)."""
    sig = types.uint64(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):  # noqa: ARG001
        fnty = ir.FunctionType(ir.IntType(64), [ir.IntType(64), ir.IntType(64)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.bmi.pext.64")
        return builder.call(fn, args)

    return sig, codegen


def _host_has_pext() -> bool:
    """True when numba compiles for this host and the host CPU has BMI2."""
    if numba.config.CPU_NAME not in (None, "host"):
        return False
    try:
        return bool(llvm_binding.get_host_cpu_features().get("bmi2", False))
    except Exception:  # noqa: BLE001 - unknown platform: use the portable kernel
        return False


HAS_PEXT = _host_has_pext()


# --------------------------------------------------------------------------- numpy helpers


def valid_mask(n_neurons: int, n_words: int) -> np.ndarray:
    """(W,) uint64 with the bits of neurons ``0..n_neurons-1`` set (padding bits clear)."""
    out = np.zeros(n_words, dtype=np.uint64)
    full, rest = divmod(n_neurons, 64)
    out[:full] = np.uint64(0xFFFFFFFFFFFFFFFF)
    if rest:
        out[full] = np.uint64((1 << rest) - 1)
    return out


def unpack_bits(bits: np.ndarray, n_neurons: int) -> np.ndarray:
    """Packed ``(..., W)`` uint64 rows -> ``(..., n_neurons)`` bool (references and tests)."""
    arr = np.ascontiguousarray(bits).astype("<u8", copy=False)
    as_bytes = arr.view(np.uint8).reshape(*arr.shape[:-1], arr.shape[-1] * 8)
    return np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :n_neurons].astype(bool)


def pack_bits(fired: np.ndarray) -> np.ndarray:
    """``(..., D)`` bool -> packed ``(..., ceil(D/64))`` uint64 (inverse of :func:`unpack_bits`)."""
    fired = np.asarray(fired, dtype=bool)
    d = fired.shape[-1]
    n_words = max(1, -(-d // 64))
    padded = np.zeros((*fired.shape[:-1], n_words * 64), dtype=bool)
    padded[..., :d] = fired
    packed = np.ascontiguousarray(np.packbits(padded, axis=-1, bitorder="little"))
    return packed.view("<u8").astype(np.uint64, copy=False)


# --------------------------------------------------------------------------- full passes


@numba.njit(cache=True, nogil=True)
def _row_gain(mat, i, cov, wts, wsl, ucnt, weighted):
    """Gain of row ``i``: (weighted) popcount of ``row & ~cov`` over all planes.

    Weighted gains take the cheaper of two exact routes: iterate the row's counting bits
    and add their weights (cost ~ bits), or sum ``popcount(x & slice_k) << k`` over the
    bit slices of the weights (cost ~ K words). ``ucnt[i]`` (the row's counting bits at
    its last evaluation, an upper bound now) picks the route and is refreshed here.
    """
    n_planes, _, n_words = mat.shape
    g = 0
    if not weighted:
        for p in range(n_planes):
            for w in range(n_words):
                g += popcount64(mat[p, i, w] & ~cov[p, w])
        return np.int64(g)
    n_slices = wsl.shape[0]
    c = 0
    if ucnt[i] * ITER_COST < n_slices * n_planes * n_words:
        for p in range(n_planes):
            for w in range(n_words):
                x = mat[p, i, w] & ~cov[p, w]
                base = w * 64
                while x:
                    g += wts[p, base + ctz64(x)]
                    c += 1
                    x &= x - np.uint64(1)
    else:
        for p in range(n_planes):
            for w in range(n_words):
                c += popcount64(mat[p, i, w] & ~cov[p, w])
        for k in range(n_slices):
            part = 0
            for p in range(n_planes):
                for w in range(n_words):
                    part += popcount64(mat[p, i, w] & ~cov[p, w] & wsl[k, p, w])
            g += part << k
    ucnt[i] = c
    return np.int64(g)


@numba.njit(cache=True, parallel=True, nogil=True)
def initial_gains(mat, cov, wts, wsl, ucnt, weighted):
    """(N,) int64 gain of every row against ``cov`` (parallel over rows; fills ``ucnt``)."""
    n = mat.shape[1]
    out = np.empty(n, dtype=np.int64)
    for i in numba.prange(n):
        ucnt[i] = n_planes_words(mat)
        out[i] = _row_gain(mat, i, cov, wts, wsl, ucnt, weighted)
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def n_planes_words(mat):
    return mat.shape[0] * mat.shape[2] * 64


def weight_slices(wts: np.ndarray) -> np.ndarray:
    """(K, P, W) uint64 bit slices of non-negative integer weights ``wts`` (P, W*64)."""
    n_planes, n_bits = wts.shape
    n_slices = max(1, int(wts.max(initial=0)).bit_length())
    out = np.empty((n_slices, n_planes, n_bits // 64), dtype=np.uint64)
    for k in range(n_slices):
        out[k] = pack_bits(((wts >> k) & 1).astype(bool))
    return out


@numba.njit(cache=True, parallel=True, nogil=True)
def column_counts(mat, n_chunks):
    """(P, W*64) int64: how many rows set each bit, per plane.

    Rows are split in ``n_chunks`` (one per thread); within a chunk, blocks of 255 rows
    are added into 8 bit-sliced counters per word (carry-save), then flushed.
    """
    n_planes, n, n_words = mat.shape
    acc = np.zeros((n_chunks, n_planes, n_words * 64), dtype=np.int64)
    step = (n + n_chunks - 1) // n_chunks
    for c in numba.prange(n_chunks):
        sl = np.zeros((n_words, 8), dtype=np.uint64)
        for p in range(n_planes):
            r = c * step
            r_end = min(n, (c + 1) * step)
            while r < r_end:
                r_next = min(r_end, r + 255)
                sl[:, :] = 0
                for i in range(r, r_next):
                    for w in range(n_words):
                        x = mat[p, i, w]
                        k = 0
                        while x:
                            t = sl[w, k] & x
                            sl[w, k] ^= x
                            x = t
                            k += 1
                for w in range(n_words):
                    for k in range(8):
                        y = sl[w, k]
                        while y:
                            acc[c, p, w * 64 + ctz64(y)] += 1 << k
                            y &= y - np.uint64(1)
                r = r_next
    out = np.zeros((n_planes, n_words * 64), dtype=np.int64)
    for c in range(n_chunks):
        out += acc[c]
    return out


@numba.njit(cache=True, nogil=True)
def union_curve(plane0, ranking, valid):
    """Distinct neurons (plane 0, within ``valid``) fired by the first k+1 picks, for every k."""
    n_words = plane0.shape[1]
    ever = np.zeros(n_words, dtype=np.uint64)
    out = np.empty(ranking.shape[0], dtype=np.int64)
    total = 0
    for k in range(ranking.shape[0]):
        i = ranking[k]
        for w in range(n_words):
            x = plane0[i, w] & valid[w]
            total += popcount64(x & ~ever[w])
            ever[w] |= x
        out[k] = total
    return out


# --------------------------------------------------------------------------- heap: max gain, then min index


@numba.njit(cache=True, nogil=True, inline="always")
def _better(ub, a, b):
    return ub[a] > ub[b] or (ub[a] == ub[b] and a < b)


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True)
def _sift_up(heap, pos, ub):
    item = heap[pos]
    while pos > 0:
        parent = (pos - 1) >> 1
        if not _better(ub, item, heap[parent]):
            break
        heap[pos] = heap[parent]
        pos = parent
    heap[pos] = item


@numba.njit(cache=True, nogil=True)
def heapify(heap, size, ub):
    """Order ``heap[:size]`` (row ids) as a max-heap on (ub desc, row id asc)."""
    for pos in range(size // 2 - 1, -1, -1):
        _sift_down(heap, size, pos, ub)


# --------------------------------------------------------------------------- the greedy


@numba.njit(cache=True, nogil=True)
def _take(mat, i, cov, colmap, wts, weighted, cnt, m, ids, n_ids):
    """Apply pick ``i``: append the element ids it counts to ``ids``, update the state.

    Returns (gain, new n_ids, ids (maybe grown), elements that stopped counting).
    """
    n_planes, _, n_words = mat.shape
    need = 0
    for p in range(n_planes):
        for w in range(n_words):
            need += popcount64(mat[p, i, w] & ~cov[p, w])
    if n_ids + need > ids.shape[0]:
        grown = np.empty(max(2 * ids.shape[0], n_ids + need), dtype=np.int64)
        grown[:n_ids] = ids[:n_ids]
        ids = grown
    gain = 0
    closed = 0
    for p in range(n_planes):
        for w in range(n_words):
            x = mat[p, i, w] & ~cov[p, w]
            if x == 0:
                continue
            if m == 1:
                cov[p, w] |= x
            while x:
                b = ctz64(x)
                j = w * 64 + b
                ids[n_ids] = colmap[p, j]
                n_ids += 1
                if weighted:
                    gain += wts[p, j]
                else:
                    gain += 1
                if m == 1:
                    closed += 1
                else:
                    cnt[p, j] += 1
                    if cnt[p, j] >= m:
                        cov[p, w] |= np.uint64(1) << b
                        closed += 1
                x &= x - np.uint64(1)
    return np.int64(gain), n_ids, ids, closed


@numba.njit(cache=True, nogil=True)
def greedy_run(mat, cov, colmap, wts, wsl, cnt, weighted, m, ucnt, heap, ub, stamp, sc,
               ranking, gains, rounds, ptr, ids, budget, compact_ok, shrink, horizon, cand, vals, batch_min):
    """Lazy greedy over the current representation until done, saturated, or a hand-off.

    Exact: the pick is the row with the highest gain, ties to the lowest row index, the
    same as a naive greedy recomputing every gain. ``ub`` holds each row's last computed
    gain, an upper bound of its current gain (submodularity); ``stamp == version`` marks
    it exact. A stale top is re-evaluated and sifted down; an exact top is picked: every
    other row's (bound, index) key is no better, so neither is its true gain.

    Most picks need a handful of evaluations, done here one by one. A pick that has
    already needed ``batch_min`` of them (early picks, round starts) hands the next
    ``len(cand)`` stale rows from the top of the heap to the caller (status BATCH) to be
    evaluated on several threads; their exact gains come back in ``vals`` and are pushed
    back on entry. Extra exact evaluations never change the picks.

    Returns (status, ids): DONE (``budget`` picks made), SATURATED (no remaining row has a
    positive gain), COMPACT (the counting elements fit in 1/``shrink`` of the current
    words), BATCH (``sc[SC_NCAND]`` rows in ``cand`` to evaluate into ``vals``).
    """
    n_planes, _, n_words = mat.shape
    k = sc[SC_K]
    version = sc[SC_VERSION]
    size = sc[SC_SIZE]
    n_ids = sc[SC_NIDS]
    evals = 0
    for t in range(sc[SC_NCAND]):
        row = cand[t]
        ub[row] = vals[t]
        stamp[row] = version
        heap[size] = row
        size += 1
        _sift_up(heap, size - 1, ub)
    sc[SC_NCAND] = 0
    pick_evals = sc[SC_PICK_EVALS]
    status = DONE
    while k < budget:
        top = heap[0]
        if ub[top] <= 0:
            status = SATURATED
            break
        if stamp[top] != version:
            if pick_evals >= batch_min:
                n_cand = 0
                while n_cand < cand.shape[0] and size > 0 and stamp[heap[0]] != version and ub[heap[0]] > 0:
                    cand[n_cand] = heap[0]
                    n_cand += 1
                    size -= 1
                    heap[0] = heap[size]
                    _sift_down(heap, size, 0, ub)
                sc[SC_NCAND] = n_cand
                pick_evals += n_cand
                evals += n_cand
                status = BATCH
                break
            ub[top] = _row_gain(mat, top, cov, wts, wsl, ucnt, weighted)
            stamp[top] = version
            evals += 1
            pick_evals += 1
            _sift_down(heap, size, 0, ub)
            continue
        size -= 1
        heap[0] = heap[size]
        _sift_down(heap, size, 0, ub)
        g, n_ids, ids, closed = _take(mat, top, cov, colmap, wts, weighted, cnt, m, ids, n_ids)
        ranking[k] = top
        gains[k] = g
        rounds[k] = sc[SC_ROUND]
        ptr[k + 1] = n_ids
        sc[SC_LEFT] -= closed
        version += 1
        k += 1
        sc[SC_RECENT] = (3 * sc[SC_RECENT] + pick_evals) // 4
        pick_evals = 0
        if compact_ok and closed > 0 and _worth_compacting(sc, size, n_planes * n_words, shrink, horizon):
            status = COMPACT
            break
    sc[SC_K] = k
    sc[SC_VERSION] = version
    sc[SC_SIZE] = size
    sc[SC_NIDS] = n_ids
    sc[SC_EVALS] += evals
    sc[SC_PICK_EVALS] = pick_evals
    return status, ids


@numba.njit(cache=True, nogil=True)
def _worth_compacting(sc, n_rows, cur_words, shrink, horizon):
    """Compaction pays: a ``shrink``-fold smaller width, or enough recent evaluations to repay it."""
    left = sc[SC_LEFT]
    if left <= 0:
        return False
    new_words = (left + 63) // 64
    if new_words * shrink <= cur_words:
        return True
    if horizon <= 0 or new_words * COMPACT_MIN_SHRINK > cur_words:
        return False
    saved = sc[SC_RECENT] * horizon * (cur_words - new_words)
    return saved > n_rows * (cur_words + new_words)


@numba.njit(cache=True, nogil=True)
def eval_rows(mat, cov, wts, wsl, ucnt, weighted, cand, vals, lo, hi):
    """Exact gains of rows ``cand[lo:hi]`` into ``vals[lo:hi]`` (releases the GIL)."""
    for t in range(lo, hi):
        vals[t] = _row_gain(mat, cand[t], cov, wts, wsl, ucnt, weighted)


@numba.njit(cache=True, nogil=True)
def _word_offsets(keep):
    """Output bit offset of every (plane, word) when only ``keep`` bits are kept, and the total."""
    n_planes, n_words = keep.shape
    offs = np.empty((n_planes, n_words), dtype=np.int64)
    total = 0
    for p in range(n_planes):
        for w in range(n_words):
            offs[p, w] = total
            total += popcount64(keep[p, w])
    return offs, total


@numba.njit(cache=True, nogil=True, inline="always")
def _put(out, i, o, x, nb):
    """OR the ``nb`` low bits of ``x`` into row ``i`` of ``out`` at bit offset ``o``."""
    q = o >> 6
    r = o & 63
    out[0, i, q] |= x << np.uint64(r)
    if r + nb > 64:
        out[0, i, q + 1] |= x >> np.uint64(64 - r)


@numba.njit(cache=True, parallel=True, nogil=True)
def _compact_rows_pext(mat, keep, offs, alive, n_new_words):
    n_planes, n, n_words = mat.shape
    out = np.zeros((1, n, n_new_words), dtype=np.uint64)
    for i in numba.prange(n):
        if not alive[i]:
            continue
        for p in range(n_planes):
            for w in range(n_words):
                m = keep[p, w]
                x = mat[p, i, w] & m
                if x:
                    _put(out, i, offs[p, w], pext64(x, m), popcount64(m))
    return out


@numba.njit(cache=True, parallel=True, nogil=True)
def _compact_rows_soft(mat, keep, offs, alive, n_new_words):
    """Portable twin of :func:`_compact_rows_pext` (rank of each set bit by popcount)."""
    n_planes, n, n_words = mat.shape
    out = np.zeros((1, n, n_new_words), dtype=np.uint64)
    for i in numba.prange(n):
        if not alive[i]:
            continue
        for p in range(n_planes):
            for w in range(n_words):
                m = keep[p, w]
                x = mat[p, i, w] & m
                if x == 0:
                    continue
                y = np.uint64(0)
                while x:
                    low = x & (~x + np.uint64(1))
                    y |= np.uint64(1) << popcount64(m & (low - np.uint64(1)))
                    x &= x - np.uint64(1)
                _put(out, i, offs[p, w], y, popcount64(m))
    return out


@numba.njit(cache=True, nogil=True)
def _remap(values, keep, n_slots, fill):
    """Per-bit ``values`` (P, W*64) of the kept bits, packed in order into (1, n_slots)."""
    n_planes, n_words = keep.shape
    out = np.full((1, n_slots), fill, dtype=values.dtype)
    t = 0
    for p in range(n_planes):
        for w in range(n_words):
            x = keep[p, w]
            while x:
                out[0, t] = values[p, w * 64 + ctz64(x)]
                t += 1
                x &= x - np.uint64(1)
    return out


def compact(mat, cov, colmap, wts, wsl, cnt, weighted, m, alive):
    """Copy of the representation holding only still-counting elements (rows in ``alive``).

    Element order is kept; uses BMI2 ``pext`` where the CPU has it.
    """
    keep = ~cov
    offs, n_left = _word_offsets(keep)
    n_new_words = max(1, -(-n_left // 64))
    rows = _compact_rows_pext if HAS_PEXT else _compact_rows_soft
    new_mat = rows(mat, keep, offs, alive, n_new_words)
    new_cov = np.zeros((1, n_new_words), dtype=np.uint64)
    new_cov[0, n_left // 64:] = ~np.uint64(0)
    if n_left % 64:
        new_cov[0, n_left // 64] = ~np.uint64((1 << (n_left % 64)) - 1)
    new_colmap = _remap(colmap, keep, n_new_words * 64, -1)
    new_wts, new_wsl = wts, wsl
    if weighted:
        new_wts = _remap(wts, keep, n_new_words * 64, 0)
        new_wsl = weight_slices(new_wts)
    new_cnt = _remap(cnt, keep, n_new_words * 64, 0) if m > 1 else cnt
    return new_mat, new_cov, new_colmap, new_wts, new_wsl, new_cnt


@numba.njit(cache=True, nogil=True)
def popcount_words(words):
    """Total set bits of a 1-D uint64 array."""
    total = 0
    for w in range(words.shape[0]):
        total += popcount64(words[w])
    return total


def n_threads() -> int:
    """Threads numba's parallel kernels use (for per-thread accumulators)."""
    return max(1, int(numba.get_num_threads()))
