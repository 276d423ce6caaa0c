"""Selection networks for the rank filters: which compare-exchanges give the ``rank``-th of ``n`` values.

Built from Batcher's odd-even merge sort on the next power of two: the padding inputs are known to be larger than
every real value, so comparators touching them are resolved here (dropped, or a fixed relabelling) instead of at
run time; a backward pass then keeps only the comparators the wanted output depends on, and marks those of
which only the minimum (or only the maximum) is used later.  The kernel runs the result on vectors of outputs.
"""
import functools

import numpy as np

__all__ = ["selection_network", "batcher_pairs"]

FULL, MIN_ONLY, MAX_ONLY = 0, 1, 2


def batcher_pairs(n, p0=1):
    """Comparators (i, j), i < j, of Batcher's odd-even merge sort of ``n`` (a power of two) values; from
    ``p0`` on, the stages that merge sorted runs of ``p0`` values (runs aligned at multiples of ``p0``)."""
    pairs = []
    p = p0
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


def _resolve(size, pad, p0=1, known=None):
    """Batcher's stages from run length ``p0`` on, with comparators touching padding resolved statically:
    returns (steps in slots, phys) where ``phys[logical position]`` is the slot finally holding that value.

    ``known`` (a boolean ``size x size`` matrix, ``known[a, b]``: the value in slot a is <= the one in slot b)
    enables order pruning: a comparator whose outcome the known order already decides is dropped (or becomes a
    relabelling), and every kept one adds what it establishes (with the transitive closure).  Slower to build,
    so used for the generated straight-line kernels."""
    phys = list(range(size))
    pad = list(pad)
    steps = []
    le = None
    if known is not None:
        le = np.array(known, dtype=bool)
        np.fill_diagonal(le, True)
        for p in range(size):
            if pad[p]:
                le[:, p] = True               # padding is larger than every value
        le = _closure(le)
    for i, j in batcher_pairs(size, p0):
        a, b = phys[i], phys[j]
        if pad[j]:
            continue                  # anything against padding (larger than every value): nothing moves
        if pad[i]:
            phys[i], phys[j] = b, a   # padding against a real value: they always swap
            pad[i], pad[j] = pad[j], pad[i]
            continue
        if le is not None:
            if le[a, b]:
                continue              # already in order
            if le[b, a]:
                phys[i], phys[j] = b, a
                continue
            la, lb, ga, gb = le[:, a].copy(), le[:, b].copy(), le[a, :].copy(), le[b, :].copy()
            le[:, a] = la & lb        # k <= min(va, vb)
            le[a, :] = ga | gb        # min(va, vb) <= k
            le[:, b] = la | lb        # k <= max(va, vb)
            le[b, :] = ga & gb        # max(va, vb) <= k
            le[a, b] = le[a, a] = le[b, b] = True
            le = _closure(le)
        steps.append((a, b))
    return steps, phys


def _closure(le):
    """Transitive closure of a boolean relation matrix."""
    while True:
        nxt = le | ((le.astype(np.uint8) @ le.astype(np.uint8)) > 0)
        if np.array_equal(nxt, le):
            return le
        le = nxt


def _prune(steps, slot):
    """The steps the value finally in ``slot`` depends on, with their kind (see selection_network)."""
    needed = {slot}
    kept = []
    for a, b in reversed(steps):
        if a in needed or b in needed:
            kind = FULL if (a in needed and b in needed) else (MIN_ONLY if a in needed else MAX_ONLY)
            kept.append((a, b, kind))
            needed.update((a, b))
    kept.reverse()
    return np.array(kept, dtype=np.intp).reshape(-1, 3)


def _pow2(n):
    size = 1
    while size < n:
        size *= 2
    return size


@functools.lru_cache(maxsize=256)
def selection_network(n, rank):
    """``(net, slot)``: an ``(m, 3)`` intp array of (i, j, kind) steps that leave the ``rank``-th smallest of
    ``n`` values (in slots 0..n-1) in slot ``slot``; kind 0 puts min in i and max in j, 1 only the min in i,
    2 only the max in j."""
    if not 0 <= rank < n:
        raise ValueError("rank %d outside [0, %d)" % (rank, n))
    size = _pow2(n)
    steps, phys = _resolve(size, [p >= n for p in range(size)])
    return _prune(steps, phys[rank]), phys[rank]


@functools.lru_cache(maxsize=64)
def sorting_network(n):
    """``(net, perm)``: steps (all kind 0) that sort ``n`` values in slots 0..n-1; the ``t``-th smallest ends
    in slot ``perm[t]``."""
    size = _pow2(n)
    steps, phys = _resolve(size, [p >= n for p in range(size)])
    net = np.array([(a, b, FULL) for a, b in steps], dtype=np.intp).reshape(-1, 3)
    return net, np.array(phys[:n], dtype=np.intp)


@functools.lru_cache(maxsize=256)
def merge_selection_network(runs, length, rank, order_pruning=False):
    """``(net, slot, stride)`` for the ``rank``-th smallest of ``runs`` already sorted runs of ``length`` values:
    run ``g`` value ``t`` starts in slot ``g * stride + t``; only Batcher's merge stages are needed.
    ``order_pruning`` also drops the comparators the runs' known order decides (see ``_resolve``)."""
    total = runs * length
    if not 0 <= rank < total:
        raise ValueError("rank %d outside [0, %d)" % (rank, total))
    stride = _pow2(length)
    size = stride * _pow2(runs)
    pad = [(p // stride >= runs) or (p % stride >= length) for p in range(size)]
    known = None
    if order_pruning:
        known = np.zeros((size, size), bool)
        for g in range(runs):
            for t in range(length):
                known[g * stride + t, g * stride + t:g * stride + length] = True
    steps, phys = _resolve(size, pad, stride, known)
    # merged, the padding (larger than every value) fills the logical positions from `total` on
    return _prune(steps, phys[rank]), phys[rank], stride
