"""How many threads fastconv's kernels use.

The default is ``OMP_NUM_THREADS`` when set, else the number of CPUs this process may run on.
:func:`set_num_threads` changes the process-wide default; the :func:`num_threads` context manager overrides it for
the current thread (and asyncio task) only, so concurrent callers do not affect each other.
Every kernel receives the count explicitly and releases the GIL while it runs.
"""
import contextlib
import contextvars
import os

from . import _validate as V

__all__ = ["set_num_threads", "get_num_threads", "num_threads", "effective_threads"]


def _default_threads():
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env:
        try:
            n = int(env)
            if n > 0:
                return n
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_global = _default_threads()
_local = contextvars.ContextVar("fastconv_num_threads", default=None)


def _normalise(n, fn):
    n = V.int_tuple(n, 1, fn, "n")[0]
    if n == -1 or n == 0:
        return _default_threads()
    if n < -1:
        raise ValueError("%s(): argument 'n' must be a positive int, or -1/0 for all CPUs, got %d" % (fn, n))
    return n


def set_num_threads(n):
    """Set the process-wide number of threads; ``-1`` or ``0`` mean all available CPUs."""
    global _global
    _global = _normalise(n, "set_num_threads")


def get_num_threads():
    """The number of threads the next fastconv call in this thread will use."""
    local = _local.get()
    return _global if local is None else local


def effective_threads(n=None):
    """Map ``None`` to :func:`get_num_threads` and ``-1`` to all CPUs (scikit-learn's convention)."""
    if n is None:
        return get_num_threads()
    return _normalise(n, "num_threads")


@contextlib.contextmanager
def num_threads(n):
    """``with fastconv.num_threads(1): ...`` runs the block with ``n`` threads, in this thread only."""
    token = _local.set(_normalise(n, "num_threads"))
    try:
        yield
    finally:
        _local.reset(token)
