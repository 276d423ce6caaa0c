"""The window engine behind :mod:`fastconv.pooling`: window tables, work plans and the kernel runs.

Every window is described by one table per spatial dimension (first input position inside the input, number of
taps, step), so regular, adaptive and global pooling run the same kernels (``_kernels/_pool.pyx``); the
regular windows also reach the kernels as their ``Geometry`` struct (``PoolGeometry.kernel_struct``).  Arrays
reaching this module are validated, C-contiguous float32/float64.
"""
import functools
import math
from dataclasses import dataclass

import numpy as np

from .. import _kernels, _threads
from .._geometry import kernel_struct
from .._kernels import as_4d

__all__ = ["Windows", "regular_windows", "adaptive_windows", "run_forward", "run_avg_backward", "run_scatter",
           "run_gather", "run_kmax"]

_pool = _kernels.module("_pool")

# Outputs at least this large are written with non-temporal stores (they will not be read from cache soon);
# a task then computes a block of rows of about TASK_BYTES in a per-thread buffer and streams it out.
STREAM_BYTES = 4 * 2 ** 20
TASK_BYTES = 32 * 1024

_UNIT = kernel_struct((1, 1, 1), (1, 1, 1), (1, 1, 1), (0, 0, 0))   # windows described by their tables alone


@dataclass(frozen=True, eq=False)
class Windows:
    """Per-dimension window tables over (D, H, W) (1-D/2-D problems get leading singleton dims).

    ``start[k][o]``: first input position inside the input; ``count[k][o]``: taps inside the input;
    ``div[k][o]``: this dimension's factor of the mean's divisor; ``geometry``: the kernels' ``Geometry`` struct
    (steps between taps = its dilations).  Columns ``[lo, hi)`` have regular W windows (start ``o * sw - pw``,
    ``kw`` taps), which the kernels run with specialised loops.
    """

    start: tuple
    count: tuple
    div: tuple
    geometry: dict = None
    lo: int = 0
    hi: int = 0
    taps: int = 1          # the most input elements a window reads (work per output, for the thread count)
    # (compared and hashed by identity: the same cached windows are the same windows)


def _as3(items, fill):
    return (fill,) * (3 - len(items)) + tuple(items)


def _regular_axis(n, k, s, p, d, out, include_pad):
    """Tables of one dimension of a regular pooling window (PyTorch's rules for the mean's divisor)."""
    o = np.arange(out, dtype=np.int64)
    start = o * s - p
    j0 = np.where(start < 0, (-start + d - 1) // d, 0)
    j1 = np.minimum(k, (n - start + d - 1) // d)
    count = np.maximum(j1 - j0, 0)
    first = start + j0 * d
    div = (np.minimum(start + k, n + p) - start) if include_pad else count
    return first, count, div


def _frozen(*arrays):
    for a in arrays:
        a.setflags(write=False)     # shared by every call with the same geometry (cached below)
    return arrays


@functools.lru_cache(maxsize=256)
def regular_windows(geom, fn, include_pad=True):
    """The windows of a :class:`~fastconv.PoolGeometry` (ValueError for a window holding no input element).
    Cached per geometry: a call seen before builds no tables."""
    tabs = [_regular_axis(n, k, s, p, d, o, include_pad) for n, k, s, p, d, o in
            zip(geom.input_size, geom.kernel_size, geom.stride, geom.padding, geom.dilation, geom.output_size)]
    for i, (_, count, _) in enumerate(tabs):
        if count.min() < 1:
            raise ValueError("%s(): with kernel_size=%s, dilation=%s and padding=%s a window of spatial dim %d "
                             "holds no input element; reduce 'dilation' or 'padding'"
                             % (fn, geom.kernel_size, geom.dilation, geom.padding, i))
    n, k, s, p, d = (geom.input_size[-1], geom.kernel_size[-1], geom.stride[-1], geom.padding[-1],
                     geom.dilation[-1])
    out = geom.output_size[-1]
    lo = min(out, -(-p // s))                                   # first window starting at >= 0
    hi = max(lo, min(out, (n - 1 - (k - 1) * d + p) // s + 1))  # last window ending inside the input
    one = np.zeros(1, np.int64), np.ones(1, np.int64), np.ones(1, np.int64)
    tabs = [_frozen(*t) for t in _as3(tabs, one)]
    return Windows(tuple(t[0] for t in tabs), tuple(t[1] for t in tabs), tuple(t[2] for t in tabs),
                   geom.kernel_struct, lo, hi, math.prod(geom.kernel_size))


@functools.lru_cache(maxsize=256)
def adaptive_windows(in_size, out_size):
    """PyTorch's adaptive bins: ``start = floor(o n / out)``, ``end = ceil((o + 1) n / out)`` (cached)."""
    starts, counts = [], []
    for n, out in zip(in_size, out_size):
        o = np.arange(out, dtype=np.int64)
        start = (o * n) // out
        end = -((-(o + 1) * n) // out)
        starts.append(start)
        counts.append(end - start)
    zero, one = np.zeros(1, np.int64), np.ones(1, np.int64)
    counts = _frozen(*_as3(counts, one))
    return Windows(_frozen(*_as3(starts, zero)), counts, counts, _UNIT, taps=math.prod(int(c.max()) for c in counts))


def _plan(o4, bytes_per_output, nthreads):
    """(column chunks per row, rows per task, stream) for an output viewed as (P, OD, OH, OW)."""
    return _plan_shape(o4.shape, bytes_per_output, nthreads)


def _plan_shape(shape4, bytes_per_output, nthreads):
    P, OD, OH, OW = shape4
    rows, want = P * OD * OH, 4 * nthreads
    if rows < want:
        return -(-want // rows), 1, False
    # tasks of whole blocks of rows (up to TASK_BYTES of output, >= `want` tasks): a task per row spent a
    # quarter of a LeNet pooling's time decoding its task number
    rb = max(1, min(OH, TASK_BYTES // (OW * bytes_per_output), rows // want))
    return 1, rb, P * OD * OH * OW * bytes_per_output >= STREAM_BYTES


def _divs(win, dtype):
    return tuple(np.asarray(d, dtype) for d in win.div)


# Kernel plans of forward calls seen before: (windows, input shape, dtype, ...) -> the kernel's arguments.
_FORWARD_PLANS_SIZE = 512
_forward_plans = {}


def _forward_plan(x, win, out_shape, is_max, with_idx, divisor):
    n = _threads.threads_for(math.prod(out_shape) * win.taps)
    shape4 = (out_shape[0] * out_shape[1],) + (1,) * (5 - len(out_shape)) + tuple(out_shape[2:])
    nchunks, rows, stream = _plan_shape(shape4, x.itemsize + (8 if with_idx else 0), n)
    tables = (win.start[0], win.count[0], win.start[1], win.count[1], win.start[2], win.count[2]) + \
        _divs(win, x.dtype)
    kw = dict(is_max=is_max, with_idx=with_idx, divisor=divisor, lo=win.lo, hi=win.hi, nchunks=nchunks,
              rows_per_task=rows, stream=stream, nthreads=n)
    return tables, kw


def run_forward(x, win, out_shape, is_max, with_idx=False, divisor=0):
    """Max (values, or (values, indices) with ``with_idx``) or mean over the windows ``win`` of x."""
    if 0 in out_shape:              # a batch of zero samples (or no channels): nothing to pool
        out = np.empty(out_shape, x.dtype)
        return (out, np.empty(out_shape, np.int64)) if with_idx else out
    key = (win, x.shape, x.dtype.char, out_shape, is_max, with_idx, divisor, _threads.get_num_threads())
    plan = _forward_plans.get(key)
    if plan is None:
        plan = _forward_plan(x, win, out_shape, is_max, with_idx, divisor)
        if len(_forward_plans) >= _FORWARD_PLANS_SIZE:
            _forward_plans.clear()
        _forward_plans[key] = plan
    tables, kw = plan
    out = np.empty(out_shape, x.dtype)
    idx = np.empty(out_shape, np.int64) if with_idx else _NO_INDEX
    _pool.forward(as_4d(x), as_4d(out), as_4d(idx) if with_idx else idx, *tables, win.geometry, **kw)
    return (out, idx) if with_idx else out


_NO_INDEX = np.empty((1, 1, 1, 1), np.int64)


def _inverse_axis(start, count, n):
    """For every input position of a dimension, the range (first, count) of outputs whose window holds it
    (window starts and ends are non-decreasing, so the range is contiguous)."""
    pos = np.arange(n)
    first = np.searchsorted(start + count, pos, side="right")
    last = np.searchsorted(start, pos, side="right")
    return first.astype(np.int64), np.maximum(last - first, 0).astype(np.int64)


def run_avg_backward(gy, win, input_shape, divisor=0):
    """Adjoint of the mean over the windows ``win``: the input gradient of shape ``input_shape``."""
    gx = np.empty(input_shape, gy.dtype)
    if gx.size == 0:
        return gx
    g4 = as_4d(gx)
    inv = [_inverse_axis(s, c, n) for s, c, n in zip(win.start, win.count, g4.shape[1:])]
    n = _threads.threads_for(gx.size + gy.size)
    _, rows, stream = _plan(g4, gy.itemsize, n)
    _pool.avg_backward(as_4d(gy), g4, *inv[0], *inv[1], *inv[2], *_divs(win, gy.dtype), win.geometry,
                       divisor=divisor, lo=win.lo, hi=win.hi, rows_per_task=rows, stream=stream, nthreads=n)
    return gx


def _check_index_count(bad, fn, size, where="a (n, c) plane"):
    if bad:
        raise ValueError("%s(): argument 'indices' holds values outside [0, %d), the size of %s"
                         % (fn, size, where))


def run_scatter(src2, idx2, plane_size, accumulate, fn, where="a (n, c) plane"):
    """Per row p: zeros of ``plane_size``, then ``src2[p]`` added (or stored) at ``idx2[p]``."""
    out = np.empty((src2.shape[0], plane_size), src2.dtype)
    if out.size == 0:
        return out
    bad = _pool.scatter(src2, idx2, out, accumulate, _threads.threads_for(out.size + src2.size))
    _check_index_count(bad, fn, plane_size, where)
    return out


def run_gather(src2, idx2, fn):
    """Per row p: ``src2[p]`` read at ``idx2[p]``."""
    out = np.empty(idx2.shape, src2.dtype)
    if out.size == 0:
        return out
    bad = _pool.gather(src2, idx2, out, _threads.threads_for(out.size))
    _check_index_count(bad, fn, src2.shape[1])
    return out


def run_kmax(x2, k, sorted):
    """The ``k`` largest entries of each row of ``x2`` and their positions."""
    vals = np.empty((x2.shape[0], k), x2.dtype)
    idx = np.empty((x2.shape[0], k), np.int64)
    if vals.size == 0:
        return vals, idx
    _pool.kmax(x2, vals, idx, sorted, _threads.threads_for(x2.size))
    return vals, idx
