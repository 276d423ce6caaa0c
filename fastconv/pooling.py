"""Pooling with argmax tracking: max, average, Lp, adaptive, global, k-max and max-unpooling, forward and backward.

Names, argument order, defaults, output sizes and the index convention are those of ``torch.nn.functional``.
Arrays are ``(N, C, *spatial)`` with 1, 2 or 3 spatial dims; results are float32 for float16/float32 input and
float64 otherwise; indices are int64 flat offsets into each unpadded ``(n, c)`` plane of the input.

Data path of every call::

    public function -> _validate (array, dtype, contiguity) -> PoolGeometry -> window tables -> kernel(out=...)

Every window is described by one table per spatial dimension (first input position inside the input, number of
taps, step), so regular, adaptive and global pooling run the same kernels (``_kernels/_pool.pyx``).  Every
element of a result, forward or backward, is computed by one thread in a fixed order (index scatters own whole
(n, c) planes), so results do not depend on the number of threads.
"""
import math
from dataclasses import dataclass

import numpy as np

from . import _kernels, _threads
from . import _validate as V
from ._geometry import PoolGeometry

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "lp_pool1d", "lp_pool2d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "global_max_pool", "global_avg_pool", "kmax_pool", "max_unpool1d", "max_unpool2d", "max_unpool3d",
    "max_pool_backward", "avg_pool1d_backward", "avg_pool2d_backward", "avg_pool3d_backward",
    "lp_pool1d_backward", "lp_pool2d_backward", "adaptive_avg_pool1d_backward", "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool3d_backward", "global_avg_pool_backward", "kmax_pool_backward", "max_unpool_backward",
]

_pool = _kernels.load("_pool")
_LAYOUT = {1: "N, C, L", 2: "N, C, H, W", 3: "N, C, D, H, W"}
_ANY_LAYOUT = "N, C, *spatial with 1 to 3 spatial dims"


# ----------------------------------------------------------------------------------------------- arguments
def _array(value, fn, arg, nd=None):
    """A validated (N, C, *spatial) array: ``nd`` spatial dims, or 1 to 3 when ``nd`` is None."""
    a = V.as_array(value, fn, arg)
    V.check_ndim(a, (3, 4, 5) if nd is None else nd + 2, fn, arg, _ANY_LAYOUT if nd is None else _LAYOUT[nd])
    V.check_nonempty(a, fn, arg)
    return a


def _float(a, dtype=None):
    return np.ascontiguousarray(a, dtype=V.float_kind(a.dtype) if dtype is None else dtype)


def _indices(value, fn, arg="indices"):
    """An int64 C-contiguous copy/view of an integer index array (TypeError for any other dtype)."""
    if isinstance(value, (str, bytes)):
        raise TypeError("%s(): argument '%s' must be an integer array, got %s" % (fn, arg, type(value).__name__))
    a = np.asarray(value)
    if a.dtype.kind not in "iu":
        raise TypeError("%s(): argument '%s' must be an integer array (int64 as returned with "
                        "return_indices=True), got dtype %s" % (fn, arg, a.dtype))
    if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError("%s(): argument '%s' holds values too large for int64" % (fn, arg))
    return np.ascontiguousarray(a, dtype=np.int64)


def _bool(value, fn, arg):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError("%s(): argument '%s' must be a bool, got %r" % (fn, arg, value))
    return bool(value)


def _shape(value, fn, arg="input_shape", ndims=None):
    """A tuple of positive ints (an array shape), with ``len`` in ``ndims`` when given."""
    if not isinstance(value, (tuple, list, np.ndarray)):
        raise TypeError("%s(): argument '%s' must be a tuple of ints, got %r" % (fn, arg, value))
    shape = V.int_tuple(tuple(value), len(value), fn, arg, minimum=1) if len(value) else ()
    if ndims is not None and len(shape) not in ndims:
        raise ValueError("%s(): argument '%s' must have %s entries, got %r"
                         % (fn, arg, " or ".join(str(n) for n in ndims), tuple(value)))
    V.check_size(shape, fn, arg)
    return shape


def _same_shape(a, shape, fn, arg, what):
    if a.shape != tuple(shape):
        raise ValueError("%s(): argument '%s' must have shape %s (%s), got %s"
                         % (fn, arg, tuple(shape), what, a.shape))


def _check_index_count(bad, fn, size, where="a (n, c) plane"):
    if bad:
        raise ValueError("%s(): argument 'indices' holds values outside [0, %d), the size of %s"
                         % (fn, size, where))


# ----------------------------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class _Windows:
    """Per-dimension window tables over (D, H, W) (1-D/2-D problems get leading singleton dims).

    ``start[k][o]``: first input position inside the input; ``count[k][o]``: taps inside the input; ``step[k]``;
    ``div[k][o]``: this dimension's factor of the mean's divisor.  Columns ``[lo, hi)`` have regular W windows
    (start ``o * sw - pw``, ``kw`` taps), which the kernels run with specialised loops.
    """

    start: tuple
    count: tuple
    step: tuple
    div: tuple
    lo: int = 0
    hi: int = 0
    sw: int = 1
    pw: int = 0
    kw: int = 1


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


def _regular_windows(geom, fn, include_pad=True):
    tabs = [_regular_axis(n, k, s, p, d, o, include_pad) for n, k, s, p, d, o in
            zip(geom.input_shape[2:], geom.kernel_size, geom.stride, geom.padding, geom.dilation,
                geom.output_size)]
    for i, (_, count, _) in enumerate(tabs):
        if count.min() < 1:
            raise ValueError("%s(): with kernel_size=%s, dilation=%s and padding=%s a window of spatial dim %d "
                             "holds no input element; reduce 'dilation' or 'padding'"
                             % (fn, geom.kernel_size, geom.dilation, geom.padding, i))
    n, k, s, p, d = (geom.input_shape[-1], geom.kernel_size[-1], geom.stride[-1], geom.padding[-1],
                     geom.dilation[-1])
    out = geom.output_size[-1]
    lo = min(out, -(-p // s))                                   # first window starting at >= 0
    hi = max(lo, min(out, (n - 1 - (k - 1) * d + p) // s + 1))  # last window ending inside the input
    one = np.zeros(1, np.int64), np.ones(1, np.int64), np.ones(1, np.int64)
    tabs = _as3(tabs, one)
    return _Windows(tuple(t[0] for t in tabs), tuple(t[1] for t in tabs), _as3(geom.dilation, 1),
                    tuple(t[2] for t in tabs), lo, hi, s, p, k)


def _adaptive_windows(in_size, out_size):
    """PyTorch's adaptive bins: ``start = floor(o n / out)``, ``end = ceil((o + 1) n / out)``."""
    starts, counts = [], []
    for n, out in zip(in_size, out_size):
        o = np.arange(out, dtype=np.int64)
        start = (o * n) // out
        end = -((-(o + 1) * n) // out)
        starts.append(start)
        counts.append(end - start)
    zero, one = np.zeros(1, np.int64), np.ones(1, np.int64)
    counts = _as3(counts, one)
    return _Windows(_as3(starts, zero), counts, (1, 1, 1), counts)


def _adaptive_size(output_size, in_size, fn):
    nd = len(in_size)
    vals = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size] * nd
    if len(vals) == 1:
        vals = vals * nd
    if len(vals) != nd:
        raise ValueError("%s(): argument 'output_size' must be an int or a tuple of %d ints (or None), got %r"
                         % (fn, nd, output_size))
    out = tuple(n if v is None else V.positive_int(v, fn, "output_size") for v, n in zip(vals, in_size))
    V.check_size(out, fn, "output_size")
    return out


def _as4(a):
    """View (N, C, *spatial) with 1-3 spatial dims as (N*C, D, H, W)."""
    sp = (1,) * (5 - a.ndim) + a.shape[2:]
    return a.reshape((a.shape[0] * a.shape[1],) + sp)


# Outputs at least this large are written with non-temporal stores (they will not be read from cache soon);
# a task then computes a block of rows of about TASK_BYTES in a per-thread buffer and streams it out.
STREAM_BYTES = 4 * 2 ** 20
TASK_BYTES = 32 * 1024


def _plan(o4, bytes_per_output, nthreads):
    """(column chunks per row, rows per task, stream) for an output viewed as (P, OD, OH, OW)."""
    P, OD, OH, OW = o4.shape
    rows, want = P * OD * OH, 4 * nthreads
    if rows < want:
        return -(-want // rows), 1, False
    if o4.size * bytes_per_output < STREAM_BYTES:
        return 1, 1, False
    rb = max(1, min(OH, TASK_BYTES // (OW * bytes_per_output), rows // want))
    return 1, rb, True


# ----------------------------------------------------------------------------------------------- kernel runs
def _divs(win, dtype):
    return tuple(np.asarray(d, dtype) for d in win.div)


def _run_forward(x, win, out_shape, is_max, with_idx=False, divisor=0):
    """Max (values, or (values, indices) with ``with_idx``) or mean over the windows ``win`` of x."""
    out = np.empty(out_shape, x.dtype)
    idx = np.empty(out_shape, np.int64) if with_idx else np.empty((1, 1, 1, 1), np.int64)
    o4 = _as4(out)
    n = _threads.get_num_threads()
    plan = _plan(o4, x.itemsize + (8 if with_idx else 0), n)
    _pool.forward(_as4(x), o4, _as4(idx) if with_idx else idx, is_max, with_idx, win.start[0], win.count[0],
                  win.start[1], win.count[1], win.start[2], win.count[2], *win.step, *_divs(win, x.dtype), divisor,
                  win.lo, win.hi, win.sw, win.pw, win.kw, *plan, n)
    return (out, idx) if with_idx else out


def _inverse_axis(start, count, n):
    """For every input position of a dimension, the range (first, count) of outputs whose window holds it
    (window starts and ends are non-decreasing, so the range is contiguous)."""
    pos = np.arange(n)
    first = np.searchsorted(start + count, pos, side="right")
    last = np.searchsorted(start, pos, side="right")
    return first.astype(np.int64), np.maximum(last - first, 0).astype(np.int64)


def _run_avg_backward(gy, win, input_shape, divisor=0):
    gx = np.empty(input_shape, gy.dtype)
    g4 = _as4(gx)
    inv = [_inverse_axis(s, c, n) for s, c, n in zip(win.start, win.count, g4.shape[1:])]
    tile = win.kw if (win.kw == win.sw and win.pw == 0 and win.lo == 0 and win.hi == len(win.start[2])) else 0
    n = _threads.get_num_threads()
    _, rb, stream = _plan(g4, gy.itemsize, n)
    _pool.avg_backward(_as4(gy), g4, *inv[0], *inv[1], *inv[2], *_divs(win, gy.dtype), divisor, tile, rb, stream,
                       n)
    return gx


def _run_scatter(src2, idx2, plane_size, accumulate, fn, where="a (n, c) plane"):
    out = np.empty((src2.shape[0], plane_size), src2.dtype)
    bad = _pool.scatter(src2, idx2, out, accumulate, _threads.get_num_threads())
    _check_index_count(bad, fn, plane_size, where)
    return out


# ----------------------------------------------------------------------------------------------- max pooling
def _max_pool(fn, nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    x = _array(input, fn, "input", nd)
    return_indices = _bool(return_indices, fn, "return_indices")
    geom = PoolGeometry.make(x.shape, kernel_size, stride, padding, dilation, ceil_mode, fn=fn)
    win = _regular_windows(geom, fn)
    return _run_forward(_float(x), win, geom.output_shape, True, return_indices)


_MAX_DOC = """{nd}-D max pooling over ({layout}), as ``torch.nn.functional.max_pool{nd}d``.

    Parameters
    ----------
    input : array_like, shape ({layout})
    kernel_size : int or tuple of {nd} ints
    stride : int or tuple of {nd} ints, optional
        Defaults to ``kernel_size``.
    padding : int or tuple of {nd} ints
        Implicit ``-inf`` padding on both sides, at most half the (dilated) kernel.
    dilation : int or tuple of {nd} ints
    ceil_mode : bool
        Round the output size up; the last window must still start inside the input or the left padding.
    return_indices : bool
        Also return the argmax of every window as int64 flat offsets into each unpadded (n, c) plane.

    Returns
    -------
    ndarray, or (ndarray, int64 ndarray) with ``return_indices``
        Output size ``floor_or_ceil((n + 2p - d(k-1) - 1) / s) + 1`` per dim.  Ties keep the first maximum
        (row-major scan of the window); a NaN in a window gives NaN and the index of its (last) NaN.
    """


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    return _max_pool("max_pool3d", 3, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool_backward(grad_output, indices, input_shape):
    """Gradient of ``max_pool*d``, ``adaptive_max_pool*d`` or ``global_max_pool`` w.r.t. its input.

    Each ``grad_output[n, c, ...]`` is added to ``grad_input[n, c]`` at the flat offset ``indices[n, c, ...]``
    (several windows sharing a maximum add up).

    Parameters
    ----------
    grad_output : array_like, shape (N, C, *out)
    indices : integer array_like, same shape as ``grad_output``
    input_shape : tuple (N, C, *spatial)

    Returns
    -------
    ndarray of ``input_shape``, the dtype of ``grad_output`` (float32 or float64)
    """
    fn = "max_pool_backward"
    gy = V.as_array(grad_output, fn, "grad_output")
    idx = _indices(indices, fn)
    shape = _shape(input_shape, fn, ndims=(3, 4, 5))
    if gy.ndim < 2:
        raise ValueError("%s(): argument 'grad_output' must be (N, C, *out), got shape %s" % (fn, gy.shape))
    _same_shape(idx, gy.shape, fn, "indices", "the shape of grad_output")
    if gy.shape[:2] != shape[:2]:
        raise ValueError("%s(): argument 'grad_output' has (N, C) = %s but input_shape %s has (N, C) = %s"
                         % (fn, gy.shape[:2], shape, shape[:2]))
    P, S = shape[0] * shape[1], math.prod(shape[2:])
    gx = _run_scatter(_float(gy).reshape(P, -1), idx.reshape(P, -1), S, True, fn)
    return gx.reshape(shape)


# ----------------------------------------------------------------------------------------------- average pooling
def _avg_setup(fn, nd, shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    include = _bool(count_include_pad, fn, "count_include_pad")
    divisor = 0
    if divisor_override is not None:
        divisor = V.int_tuple(divisor_override, 1, fn, "divisor_override")[0]
        if divisor == 0:
            raise ValueError("%s(): argument 'divisor_override' must not be zero" % fn)
    geom = PoolGeometry.make(shape, kernel_size, stride, padding, 1, ceil_mode, fn=fn)
    return geom, _regular_windows(geom, fn, include), divisor


def _avg_pool(fn, nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    x = _array(input, fn, "input", nd)
    geom, win, divisor = _avg_setup(fn, nd, x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                    divisor_override)
    return _run_forward(_float(x), win, geom.output_shape, False, divisor=divisor)


def _avg_pool_backward(fn, nd, grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override):
    gy = _array(grad_output, fn, "grad_output", nd)
    shape = _shape(input_shape, fn, ndims=(nd + 2,))
    geom, win, divisor = _avg_setup(fn, nd, shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                    divisor_override)
    _same_shape(gy, geom.output_shape, fn, "grad_output", "the pooling output for input_shape %s" % (shape,))
    return _run_avg_backward(_float(gy), win, shape, divisor)


_AVG_DOC = """{nd}-D average pooling over ({layout}), as ``torch.nn.functional.avg_pool{nd}d``.

    Parameters
    ----------
    input : array_like, shape ({layout})
    kernel_size, stride, padding : int or tuple of {nd} ints
        ``stride`` defaults to ``kernel_size``; zero ``padding`` of at most half the kernel on both sides.
    ceil_mode : bool
    count_include_pad : bool
        Divide by the window size including the zero padding (clipped to ``n + padding`` in ceil mode, as
        PyTorch), else by the number of input elements in the window.
    divisor_override : int, optional
        Divide every sum by this non-zero number instead.
    """

_AVG_BACKWARD_DOC = """Gradient of ``avg_pool{nd}d`` w.r.t. its input, given ``grad_output`` shaped like its output.

    Arguments after ``input_shape`` are those of the forward call.  Every output's gradient, divided by its
    divisor, is added to each input element of its window.
    """


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    return _avg_pool("avg_pool3d", 3, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def avg_pool1d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    return _avg_pool_backward("avg_pool1d_backward", 1, grad_output, input_shape, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override)


def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    return _avg_pool_backward("avg_pool2d_backward", 2, grad_output, input_shape, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override)


def avg_pool3d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    return _avg_pool_backward("avg_pool3d_backward", 3, grad_output, input_shape, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override)


# ----------------------------------------------------------------------------------------------- Lp pooling
def _lp_setup(fn, nd, shape, norm_type, kernel_size, stride, ceil_mode):
    p = V.real_scalar(norm_type, fn, "norm_type")
    if not (math.isfinite(p) and p > 0):
        raise ValueError("%s(): argument 'norm_type' must be a finite positive number, got %r" % (fn, norm_type))
    geom = PoolGeometry.make(shape, kernel_size, stride, 0, 1, ceil_mode, fn=fn)
    return p, geom, _regular_windows(geom, fn, True)


def _lp_pool(fn, nd, input, norm_type, kernel_size, stride, ceil_mode):
    x = _array(input, fn, "input", nd)
    p, geom, win = _lp_setup(fn, nd, x.shape, norm_type, kernel_size, stride, ceil_mode)
    x = _float(x)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = _run_forward(np.power(x, x.dtype.type(p)), win, geom.output_shape, False)
        mean *= math.prod(geom.kernel_size)
        return np.power(mean, mean.dtype.type(1.0 / p), out=mean)


def _lp_pool_backward(fn, nd, grad_output, input, output, norm_type, kernel_size, stride, ceil_mode):
    x = _array(input, fn, "input", nd)
    gy = _array(grad_output, fn, "grad_output", nd)
    y = _array(output, fn, "output", nd)
    p, geom, win = _lp_setup(fn, nd, x.shape, norm_type, kernel_size, stride, ceil_mode)
    _same_shape(gy, geom.output_shape, fn, "grad_output", "the pooling output")
    _same_shape(y, geom.output_shape, fn, "output", "the pooling output")
    dtype = V.common_float_dtype(x, gy, y)
    x, gy, y = _float(x, dtype), _float(gy, dtype), _float(y, dtype)
    t = dtype.type
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # y = (K mean(x^p))^(1/p)  =>  dy/dx_i = K y^(1-p) / count * x_i^(p-1)   (0 where y = 0 and p > 1)
        coef = gy * t(math.prod(geom.kernel_size)) * np.power(y, t(1.0 - p))
        if p > 1:
            coef[y == 0] = 0
        g = _run_avg_backward(coef, win, x.shape)
        return np.multiply(g, np.power(x, t(p - 1.0)), out=g)


_LP_DOC = """{nd}-D power-average (Lp) pooling, as ``torch.nn.functional.lp_pool{nd}d``.

    ``(sum over the window of x^p)^(1/p)``; ``p = 2`` is L2 pooling.  Like PyTorch this is computed as
    ``(kernel elements * avg_pool(x^p))^(1/p)``, so a ceil-mode window cut by the input edge is rescaled to the
    full kernel size, and a negative sum (odd ``p``) gives NaN.
    """

_LP_BACKWARD_DOC = """Gradient of ``lp_pool{nd}d`` w.r.t. its input, given the forward ``input`` and ``output``.

    ``dy/dx_i = K y^(1-p) x_i^(p-1) / count`` summed over the windows containing ``x_i``; windows whose output is
    0 contribute 0 for ``p > 1`` (PyTorch's autograd gives NaN there).
    """


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    return _lp_pool("lp_pool1d", 1, input, norm_type, kernel_size, stride, ceil_mode)


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    return _lp_pool("lp_pool2d", 2, input, norm_type, kernel_size, stride, ceil_mode)


def lp_pool1d_backward(grad_output, input, output, norm_type, kernel_size, stride=None, ceil_mode=False):
    return _lp_pool_backward("lp_pool1d_backward", 1, grad_output, input, output, norm_type, kernel_size, stride,
                             ceil_mode)


def lp_pool2d_backward(grad_output, input, output, norm_type, kernel_size, stride=None, ceil_mode=False):
    return _lp_pool_backward("lp_pool2d_backward", 2, grad_output, input, output, norm_type, kernel_size, stride,
                             ceil_mode)


# ----------------------------------------------------------------------------------------------- adaptive pooling
def _adaptive_avg_pool(fn, nd, input, output_size):
    x = _array(input, fn, "input", nd)
    out = _adaptive_size(output_size, x.shape[2:], fn)
    return _run_forward(_float(x), _adaptive_windows(x.shape[2:], out), x.shape[:2] + out, False)


def _adaptive_max_pool(fn, nd, input, output_size, return_indices):
    x = _array(input, fn, "input", nd)
    return_indices = _bool(return_indices, fn, "return_indices")
    out = _adaptive_size(output_size, x.shape[2:], fn)
    return _run_forward(_float(x), _adaptive_windows(x.shape[2:], out), x.shape[:2] + out, True, return_indices)


def _adaptive_avg_pool_backward(fn, nd, grad_output, input_shape):
    gy = _array(grad_output, fn, "grad_output", nd)
    shape = _shape(input_shape, fn, ndims=(nd + 2,))
    if gy.shape[:2] != shape[:2]:
        raise ValueError("%s(): argument 'grad_output' has (N, C) = %s but input_shape %s has (N, C) = %s"
                         % (fn, gy.shape[:2], shape, shape[:2]))
    return _run_avg_backward(_float(gy), _adaptive_windows(shape[2:], gy.shape[2:]), shape)


_ADAPTIVE_DOC = """{nd}-D adaptive {kind} pooling to a fixed ``output_size``, as
    ``torch.nn.functional.adaptive_{kind}_pool{nd}d``.

    Output ``o`` of a dimension of size ``n`` pools ``[floor(o n / out), ceil((o + 1) n / out))``.
    ``output_size`` is an int or a tuple of {nd} ints where ``None`` keeps that dimension's size.
    """


def adaptive_avg_pool1d(input, output_size):
    return _adaptive_avg_pool("adaptive_avg_pool1d", 1, input, output_size)


def adaptive_avg_pool2d(input, output_size):
    return _adaptive_avg_pool("adaptive_avg_pool2d", 2, input, output_size)


def adaptive_avg_pool3d(input, output_size):
    return _adaptive_avg_pool("adaptive_avg_pool3d", 3, input, output_size)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    return _adaptive_max_pool("adaptive_max_pool1d", 1, input, output_size, return_indices)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    return _adaptive_max_pool("adaptive_max_pool2d", 2, input, output_size, return_indices)


def adaptive_max_pool3d(input, output_size, return_indices=False):
    return _adaptive_max_pool("adaptive_max_pool3d", 3, input, output_size, return_indices)


def adaptive_avg_pool1d_backward(grad_output, input_shape):
    return _adaptive_avg_pool_backward("adaptive_avg_pool1d_backward", 1, grad_output, input_shape)


def adaptive_avg_pool2d_backward(grad_output, input_shape):
    return _adaptive_avg_pool_backward("adaptive_avg_pool2d_backward", 2, grad_output, input_shape)


def adaptive_avg_pool3d_backward(grad_output, input_shape):
    return _adaptive_avg_pool_backward("adaptive_avg_pool3d_backward", 3, grad_output, input_shape)


# ----------------------------------------------------------------------------------------------- global pooling
def global_max_pool(input, return_indices=False):
    """The maximum of every (n, c) feature map of (N, C, *spatial): shape (N, C).

    With ``return_indices`` also the int64 flat offset of each maximum in its plane (for
    :func:`max_pool_backward`).  Ties and NaN as in :func:`max_pool2d`.
    """
    fn = "global_max_pool"
    x = _array(input, fn, "input")
    return_indices = _bool(return_indices, fn, "return_indices")
    ones = (1,) * (x.ndim - 2)
    res = _run_forward(_float(x), _adaptive_windows(x.shape[2:], ones), x.shape[:2] + ones, True, return_indices)
    if return_indices:
        return res[0].reshape(x.shape[:2]), res[1].reshape(x.shape[:2])
    return res.reshape(x.shape[:2])


def global_avg_pool(input):
    """The mean of every (n, c) feature map of (N, C, *spatial): shape (N, C)."""
    fn = "global_avg_pool"
    x = _array(input, fn, "input")
    ones = (1,) * (x.ndim - 2)
    y = _run_forward(_float(x), _adaptive_windows(x.shape[2:], ones), x.shape[:2] + ones, False)
    return y.reshape(x.shape[:2])


def global_avg_pool_backward(grad_output, input_shape):
    """Gradient of :func:`global_avg_pool`: ``grad_output[n, c] / plane size`` spread over every element."""
    fn = "global_avg_pool_backward"
    gy = V.as_array(grad_output, fn, "grad_output")
    shape = _shape(input_shape, fn, ndims=(3, 4, 5))
    _same_shape(gy, shape[:2], fn, "grad_output", "(N, C) of input_shape")
    ones = (1,) * (len(shape) - 2)
    return _run_avg_backward(_float(gy).reshape(gy.shape + ones), _adaptive_windows(shape[2:], ones), shape)


# ----------------------------------------------------------------------------------------------- k-max pooling
def _axis(dim, ndim, fn):
    d = V.int_tuple(dim, 1, fn, "dim")[0]
    if not -ndim <= d < ndim:
        raise ValueError("%s(): argument 'dim' must be in [%d, %d), got %d" % (fn, -ndim, ndim, d))
    return d % ndim


def _lines(a, axis):
    """(rows, length) C-contiguous copy of ``a`` with ``axis`` last."""
    moved = np.moveaxis(a, axis, -1)
    return np.ascontiguousarray(moved).reshape(-1, a.shape[axis]), moved.shape


def _unlines(a2, moved_shape, axis):
    return np.ascontiguousarray(np.moveaxis(a2.reshape(moved_shape), -1, axis))


def kmax_pool(input, k, dim=-1, sorted=True):
    """k-max pooling: the ``k`` largest values along ``dim`` and their int64 positions.

    ``sorted=True`` orders them by decreasing value (like ``torch.topk``); ``sorted=False`` keeps them in their
    original order along ``dim`` (k-max pooling of Kalchbrenner et al.).  NaN counts as the largest value;
    equal values are taken in order of position.  Returns ``(values, indices)``.
    """
    fn = "kmax_pool"
    x = V.as_array(input, fn, "input")
    if x.ndim == 0:
        raise ValueError("%s(): argument 'input' must have at least one dimension" % fn)
    V.check_nonempty(x, fn, "input")
    axis = _axis(dim, x.ndim, fn)
    k = V.positive_int(k, fn, "k")
    if k > x.shape[axis]:
        raise ValueError("%s(): argument 'k'=%d is larger than the size %d of dimension %d"
                         % (fn, k, x.shape[axis], axis))
    sorted = _bool(sorted, fn, "sorted")
    x2, moved = _lines(_float(x), axis)
    vals = np.empty((x2.shape[0], k), x2.dtype)
    idx = np.empty((x2.shape[0], k), np.int64)
    _pool.kmax(x2, vals, idx, sorted, _threads.get_num_threads())
    out_moved = moved[:-1] + (k,)
    return _unlines(vals, out_moved, axis), _unlines(idx, out_moved, axis)


def kmax_pool_backward(grad_output, indices, input_shape, dim=-1):
    """Gradient of :func:`kmax_pool` w.r.t. its input: ``grad_output`` put back at ``indices`` along ``dim``."""
    fn = "kmax_pool_backward"
    gy = V.as_array(grad_output, fn, "grad_output")
    idx = _indices(indices, fn)
    shape = _shape(input_shape, fn)
    if len(shape) == 0:
        raise ValueError("%s(): argument 'input_shape' must have at least one dimension" % fn)
    axis = _axis(dim, len(shape), fn)
    _same_shape(idx, gy.shape, fn, "indices", "the shape of grad_output")
    if gy.ndim != len(shape) or any(g != s for i, (g, s) in enumerate(zip(gy.shape, shape)) if i != axis) \
            or not 1 <= gy.shape[axis] <= shape[axis]:
        raise ValueError("%s(): argument 'grad_output' of shape %s does not match input_shape %s with k <= %d "
                         "along dim %d" % (fn, gy.shape, shape, shape[axis], axis))
    g2, moved = _lines(_float(gy), axis)
    i2, _ = _lines(idx, axis)
    gx = _run_scatter(g2, i2, shape[axis], True, fn, "dimension %d of input_shape" % axis)
    return _unlines(gx, moved[:-1] + (shape[axis],), axis)


# ----------------------------------------------------------------------------------------------- unpooling
def _unpool_size(fn, nd, in_size, kernel_size, stride, padding, output_size):
    """PyTorch's rule: default ``(n - 1) s - 2 p + k``; a given size must lie strictly within one stride."""
    kernel = V.int_tuple(kernel_size, nd, fn, "kernel_size", minimum=1)
    stride = kernel if stride is None else V.int_tuple(stride, nd, fn, "stride", minimum=1)
    pad = V.int_tuple(padding, nd, fn, "padding", minimum=0)
    default = tuple((n - 1) * s + k - 2 * p for n, s, k, p in zip(in_size, stride, kernel, pad))
    if output_size is None:
        size = default
    else:
        if not isinstance(output_size, (tuple, list, np.ndarray)):
            raise TypeError("%s(): argument 'output_size' must be a tuple of ints, got %r" % (fn, output_size))
        vals = tuple(output_size)
        if len(vals) == nd + 2:
            vals = vals[2:]
        if len(vals) != nd:
            raise ValueError("%s(): argument 'output_size' must have %d or %d entries, got %r"
                             % (fn, nd, nd + 2, output_size))
        size = V.int_tuple(vals, nd, fn, "output_size", minimum=1)
        for o, d, s in zip(size, default, stride):
            if not d - s < o < d + s:
                raise ValueError("%s(): argument 'output_size' %s must lie strictly between %s and %s (default "
                                 "size minus/plus stride)" % (fn, size, tuple(a - b for a, b in zip(default, stride)),
                                                             tuple(a + b for a, b in zip(default, stride))))
    if min(size) <= 0:
        raise ValueError("%s(): the output size %s is empty; check 'kernel_size', 'stride' and 'padding'"
                         % (fn, size))
    V.check_size(size, fn, "output")
    return size


def _max_unpool(fn, nd, input, indices, kernel_size, stride, padding, output_size):
    x = _array(input, fn, "input", nd)
    idx = _indices(indices, fn)
    _same_shape(idx, x.shape, fn, "indices", "the shape of input")
    size = _unpool_size(fn, nd, x.shape[2:], kernel_size, stride, padding, output_size)
    P = x.shape[0] * x.shape[1]
    out = _run_scatter(_float(x).reshape(P, -1), idx.reshape(P, -1), math.prod(size), False, fn)
    return out.reshape(x.shape[:2] + size)


_UNPOOL_DOC = """Partial inverse of ``max_pool{nd}d``, as ``torch.nn.functional.max_unpool{nd}d``: every input value is
    put at its index in a zero (n, c) plane of size ``output_size`` (default ``(n - 1) s - 2 p + k``; a given
    size, of {nd} or {nd2} entries, must lie strictly within one stride of it).  Indices must lie in the plane;
    when two share a position the later one (in memory order) wins.
    """


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    return _max_unpool("max_unpool1d", 1, input, indices, kernel_size, stride, padding, output_size)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    return _max_unpool("max_unpool2d", 2, input, indices, kernel_size, stride, padding, output_size)


def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    return _max_unpool("max_unpool3d", 3, input, indices, kernel_size, stride, padding, output_size)


def max_unpool_backward(grad_output, indices):
    """Gradient of ``max_unpool*d`` w.r.t. its input: ``grad_output[n, c]`` gathered at ``indices[n, c]``.

    Parameters
    ----------
    grad_output : array_like, shape (N, C, *out)
    indices : integer array_like, shape (N, C, *in), the indices given to the unpooling

    Returns
    -------
    ndarray of the shape of ``indices``
    """
    fn = "max_unpool_backward"
    gy = _array(grad_output, fn, "grad_output")
    idx = _indices(indices, fn)
    if idx.ndim != gy.ndim or idx.shape[:2] != gy.shape[:2]:
        raise ValueError("%s(): argument 'indices' must be (N, C, *in) with (N, C) = %s and %d spatial dims like "
                         "grad_output, got shape %s" % (fn, gy.shape[:2], gy.ndim - 2, idx.shape))
    g = _float(gy)
    P = gy.shape[0] * gy.shape[1]
    out = np.empty(idx.shape, g.dtype)
    bad = _pool.gather(g.reshape(P, -1), idx.reshape(P, -1), out.reshape(P, -1), _threads.get_num_threads())
    _check_index_count(bad, fn, g[0, 0].size)
    return out


# ----------------------------------------------------------------------------------------------- docstrings
for _nd in (1, 2, 3):
    globals()["max_pool%dd" % _nd].__doc__ = _MAX_DOC.format(nd=_nd, layout=_LAYOUT[_nd])
    globals()["avg_pool%dd" % _nd].__doc__ = _AVG_DOC.format(nd=_nd, layout=_LAYOUT[_nd])
    globals()["avg_pool%dd_backward" % _nd].__doc__ = _AVG_BACKWARD_DOC.format(nd=_nd)
    globals()["adaptive_avg_pool%dd" % _nd].__doc__ = _ADAPTIVE_DOC.format(nd=_nd, kind="avg")
    globals()["adaptive_max_pool%dd" % _nd].__doc__ = _ADAPTIVE_DOC.format(nd=_nd, kind="max") + (
        "With ``return_indices`` also the int64 argmax offsets into each plane (ties and NaN as max_pool).\n")
    globals()["adaptive_avg_pool%dd_backward" % _nd].__doc__ = (
        "Gradient of ``adaptive_avg_pool%dd`` w.r.t. its input; the output size is read from grad_output." % _nd)
    globals()["max_unpool%dd" % _nd].__doc__ = _UNPOOL_DOC.format(nd=_nd, nd2=_nd + 2)
for _nd in (1, 2):
    globals()["lp_pool%dd" % _nd].__doc__ = _LP_DOC.format(nd=_nd)
    globals()["lp_pool%dd_backward" % _nd].__doc__ = _LP_BACKWARD_DOC.format(nd=_nd)
del _nd
