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


def batcher_pairs(n):
    """Comparators (i, j), i < j, of Batcher's odd-even merge sort of ``n`` (a power of two) values."""
    pairs = []
    p = 1
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


@functools.lru_cache(maxsize=256)
def selection_network(n, rank):
    """``(net, slot)``: an ``(m, 3)`` intp array of (i, j, kind) steps that leave the ``rank``-th smallest of
    ``n`` values in slot ``slot``; kind 0 puts min in i and max in j, 1 only the min in i, 2 only the max in j."""
    if not 0 <= rank < n:
        raise ValueError("rank %d outside [0, %d)" % (rank, n))
    size = 1
    while size < n:
        size *= 2
    phys = list(range(size))           # logical position -> slot holding that value
    pad = [p >= n for p in range(size)]
    steps = []
    for i, j in batcher_pairs(size):
        if pad[j]:
            continue                  # a real (or padding) value against padding: nothing moves
        if pad[i]:
            phys[i], phys[j] = phys[j], phys[i]      # padding against a real value: they always swap
            pad[i], pad[j] = pad[j], pad[i]
            continue
        steps.append((phys[i], phys[j]))
    slot = phys[rank]
    needed = {slot}
    kept = []
    for a, b in reversed(steps):
        if a in needed or b in needed:
            kind = FULL if (a in needed and b in needed) else (MIN_ONLY if a in needed else MAX_ONLY)
            kept.append((a, b, kind))
            needed.update((a, b))
    kept.reverse()
    net = np.array(kept, dtype=np.intp).reshape(-1, 3)
    return net, slot
