"""Memory of training steps: freed activation and gradient blocks are kept for the next step.

A training step allocates arrays of the same sizes every time.  Fresh large blocks come from the operating system
and every first touch of one of their pages costs a page fault (some 550 per LeNet-5 step at batch 64, a sixth of
its time on a virtual machine).  While a module runs in training mode with gradients enabled, and while
``Tensor.backward`` runs, NumPy arrays of 256 KiB or more are therefore allocated from a cache of freed blocks of
exactly the same size (NumPy's memory-handler interface, NEP 49), and so are the scratch arrays of the Winograd and
FFT-tile algorithms (transformed filters, the weight gradient's transform-domain sums) in every call; everything
else, and every other array allocated elsewhere, uses NumPy's allocator.  The cache keeps at most 64 blocks and ``set_cache_limit`` bytes (256 MiB by
default); ``empty_cache()`` gives them back.  Results do not change.
"""
import operator

from .._kernels import _memory

__all__ = ["empty_cache", "set_cache_limit", "cache_info"]


def set_cache_limit(nbytes):
    """Keep at most ``nbytes`` bytes of freed blocks for later steps (0 turns the cache off)."""
    try:
        nbytes = operator.index(nbytes)
    except TypeError:
        raise TypeError("set_cache_limit(): argument 'limit' must be an int number of bytes, got %s"
                        % type(nbytes).__name__) from None
    if nbytes < 0:
        raise ValueError("set_cache_limit(): argument 'limit' must be >= 0, got %d" % nbytes)
    _memory.set_limit(nbytes)


def empty_cache():
    """Give the cached blocks back to NumPy's allocator (the limit stays)."""
    limit = _memory.stats()[1]
    _memory.set_limit(0)
    _memory.set_limit(limit)


def cache_info():
    """``{"cached_bytes", "limit", "hits", "misses"}`` of the cache (hits and misses count requests of 256 KiB
    or more made while it is in use)."""
    return dict(zip(("cached_bytes", "limit", "hits", "misses"), _memory.stats()))
