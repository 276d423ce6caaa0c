"""Regular windows: max, average and power-average (Lp) pooling, forward and backward."""
import math

import numpy as np

from .. import _validate as V
from .._doc import POOL, filled
from .._geometry import PoolGeometry, exact_args_key
from ._engine import regular_windows, run_avg_backward, run_forward

__all__ = ["max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "lp_pool1d",
           "lp_pool2d", "avg_pool1d_backward", "avg_pool2d_backward", "avg_pool3d_backward", "lp_pool1d_backward",
           "lp_pool2d_backward"]


def float_array(a, dtype=None):
    """``a`` as a C-contiguous array of its computation dtype (or ``dtype``)."""
    return np.ascontiguousarray(a, dtype=V.float_kind(a.dtype) if dtype is None else dtype)


def max_operand(a):
    """``(array the max kernels compare, back)``: floats as :func:`float_array` (``back`` None); integers pool
    exactly and keep their dtype, as PyTorch's max pools do -- through float64 when every value is exact there
    (``|a| <= 2**53``), else through their ranks (``np.unique``), so values and argmax indices are the integers'
    own.  ``back`` maps pooled values (a tuple ``(values, indices)`` too) to ``a``'s dtype."""
    if a.dtype.kind == "f":
        return float_array(a), None
    if a.size == 0 or (int(a.max()) <= 2 ** 53 and int(a.min()) >= -2 ** 53):
        values = a.astype(np.float64)
        to_int = lambda v: v.astype(a.dtype)  # noqa: E731
    else:
        uniq, rank = np.unique(a, return_inverse=True)
        values = rank.reshape(a.shape).astype(np.float64)
        to_int = lambda v: uniq[v.astype(np.intp)]  # noqa: E731

    def back(res):
        return (to_int(res[0]), res[1]) if isinstance(res, tuple) else to_int(res)
    return values, back


def pool_max(a, run):
    """``run(array)`` on :func:`max_operand`'s array, its values mapped back to ``a``'s dtype."""
    values, back = max_operand(a)
    res = run(values)
    return res if back is None else back(res)


# ----------------------------------------------------------------------------------------------- max pooling
# Max pools seen before: exact call -> (geometry, windows).  A call made again with a C-contiguous float array
# of the same shape and dtype and the same exact arguments skips validation and planning.
_SEEN_SIZE = 512
_seen = {}


def _max_pool(fn, nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    key = None
    if (type(input) is np.ndarray and input.dtype.char in "fd" and input.dtype.isnative
            and input.flags.c_contiguous):
        try:
            key = (fn, input.shape, input.dtype.char,
                   exact_args_key((kernel_size, stride, padding, dilation, ceil_mode, return_indices)))
        except TypeError:
            key = None
        hit = _seen.get(key) if key is not None else None
        if hit is not None:
            return run_forward(input, hit[1], hit[0].output_shape, True, return_indices)
    x = V.batch_array(input, fn, "input", nd)
    return_indices = V.flag(return_indices, fn, "return_indices")
    geom = PoolGeometry.make(x.shape, kernel_size, stride, padding, dilation, ceil_mode, fn=fn)
    win = regular_windows(geom, fn)
    if key is not None:
        if len(_seen) >= _SEEN_SIZE:
            _seen.clear()
        _seen[key] = (geom, win)
    return pool_max(x, lambda v: run_forward(v, win, geom.output_shape, True, return_indices))


@filled(POOL)
def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """1-D max pooling over (N, C, L), as ``torch.nn.functional.max_pool1d``.

    Parameters
    ----------
    input : array_like, shape (N, C, L)
    %(max_args)s

    Returns
    -------
    %(max_returns)s
    """
    return _max_pool("max_pool1d", 1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


@filled(POOL)
def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """2-D max pooling over (N, C, H, W), as ``torch.nn.functional.max_pool2d``.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W)
    %(max_args)s

    Returns
    -------
    %(max_returns)s
    """
    return _max_pool("max_pool2d", 2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


@filled(POOL)
def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """3-D max pooling over (N, C, D, H, W), as ``torch.nn.functional.max_pool3d``.

    Parameters
    ----------
    input : array_like, shape (N, C, D, H, W)
    %(max_args)s

    Returns
    -------
    %(max_returns)s
    """
    return _max_pool("max_pool3d", 3, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


# ----------------------------------------------------------------------------------------------- average pooling
def _avg_setup(fn, shape, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    include = V.flag(count_include_pad, fn, "count_include_pad")
    divisor = 0
    if divisor_override is not None:
        divisor = V.int_tuple(divisor_override, 1, fn, "divisor_override")[0]
        if divisor == 0:
            raise ValueError("%s(): argument 'divisor_override' must not be zero" % fn)
    geom = PoolGeometry.make(shape, kernel_size, stride, padding, 1, ceil_mode, fn=fn)
    return geom, regular_windows(geom, fn, include), divisor


def _avg_pool(fn, nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    x = V.batch_array(input, fn, "input", nd)
    geom, win, divisor = _avg_setup(fn, x.shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                    divisor_override)
    return run_forward(float_array(x), win, geom.output_shape, False, divisor=divisor)


def _avg_pool_backward(fn, nd, grad_output, input_shape, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override):
    gy = V.batch_array(grad_output, fn, "grad_output", nd)
    shape = V.shape_arg(input_shape, fn, "input_shape", ndims=(nd + 2,), empty="N")
    geom, win, divisor = _avg_setup(fn, shape, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                    divisor_override)
    V.same_shape(gy, geom.output_shape, fn, "grad_output", "the pooling output for input_shape %s" % (shape,))
    return run_avg_backward(float_array(gy), win, shape, divisor)


@filled(POOL)
def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """1-D average pooling over (N, C, L), as ``torch.nn.functional.avg_pool1d``.

    Parameters
    ----------
    input : array_like, shape (N, C, L)
    %(avg_args)s
    """
    return _avg_pool("avg_pool1d", 1, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


@filled(POOL)
def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """2-D average pooling over (N, C, H, W), as ``torch.nn.functional.avg_pool2d``.

    Parameters
    ----------
    input : array_like, shape (N, C, H, W)
    %(avg_args)s
    """
    return _avg_pool("avg_pool2d", 2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


@filled(POOL)
def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """3-D average pooling over (N, C, D, H, W), as ``torch.nn.functional.avg_pool3d``.

    Parameters
    ----------
    input : array_like, shape (N, C, D, H, W)
    %(avg_args)s
    """
    return _avg_pool("avg_pool3d", 3, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


@filled(POOL)
def avg_pool1d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Gradient of ``avg_pool1d`` w.r.t. its input, given ``grad_output`` shaped like its output.

    %(avg_backward_doc)s
    """
    return _avg_pool_backward("avg_pool1d_backward", 1, grad_output, input_shape, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override)


@filled(POOL)
def avg_pool2d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Gradient of ``avg_pool2d`` w.r.t. its input, given ``grad_output`` shaped like its output.

    %(avg_backward_doc)s
    """
    return _avg_pool_backward("avg_pool2d_backward", 2, grad_output, input_shape, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override)


@filled(POOL)
def avg_pool3d_backward(grad_output, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None):
    """Gradient of ``avg_pool3d`` w.r.t. its input, given ``grad_output`` shaped like its output.

    %(avg_backward_doc)s
    """
    return _avg_pool_backward("avg_pool3d_backward", 3, grad_output, input_shape, kernel_size, stride, padding,
                              ceil_mode, count_include_pad, divisor_override)


# ----------------------------------------------------------------------------------------------- Lp pooling
def _lp_setup(fn, shape, norm_type, kernel_size, stride, ceil_mode):
    p = V.real_scalar(norm_type, fn, "norm_type")
    if not (math.isfinite(p) and p > 0):
        raise ValueError("%s(): argument 'norm_type' must be a finite positive number, got %r" % (fn, norm_type))
    geom = PoolGeometry.make(shape, kernel_size, stride, 0, 1, ceil_mode, fn=fn)
    return p, geom, regular_windows(geom, fn, True)


def _lp_pool(fn, nd, input, norm_type, kernel_size, stride, ceil_mode):
    x = V.batch_array(input, fn, "input", nd)
    p, geom, win = _lp_setup(fn, x.shape, norm_type, kernel_size, stride, ceil_mode)
    x = float_array(x)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        mean = run_forward(np.power(x, x.dtype.type(p)), win, geom.output_shape, False)
        mean *= math.prod(geom.kernel_size)
        return np.power(mean, mean.dtype.type(1.0 / p), out=mean)


def _lp_pool_backward(fn, nd, grad_output, input, output, norm_type, kernel_size, stride, ceil_mode):
    x = V.batch_array(input, fn, "input", nd)
    gy = V.batch_array(grad_output, fn, "grad_output", nd)
    y = V.batch_array(output, fn, "output", nd)
    p, geom, win = _lp_setup(fn, x.shape, norm_type, kernel_size, stride, ceil_mode)
    V.same_shape(gy, geom.output_shape, fn, "grad_output", "the pooling output")
    V.same_shape(y, geom.output_shape, fn, "output", "the pooling output")
    dtype = V.common_float_dtype(x, gy, y)
    x, gy, y = float_array(x, dtype), float_array(gy, dtype), float_array(y, dtype)
    t = dtype.type
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        # y = (K mean(x^p))^(1/p)  =>  dy/dx_i = K y^(1-p) / count * x_i^(p-1)   (0 where y = 0 and p > 1)
        coef = gy * t(math.prod(geom.kernel_size)) * np.power(y, t(1.0 - p))
        if p > 1:
            coef[y == 0] = 0
        g = run_avg_backward(coef, win, x.shape)
        return np.multiply(g, np.power(x, t(p - 1.0)), out=g)


@filled(POOL)
def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """1-D power-average (Lp) pooling, as ``torch.nn.functional.lp_pool1d``.

    %(lp_doc)s
    """
    return _lp_pool("lp_pool1d", 1, input, norm_type, kernel_size, stride, ceil_mode)


@filled(POOL)
def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """2-D power-average (Lp) pooling, as ``torch.nn.functional.lp_pool2d``.

    %(lp_doc)s
    """
    return _lp_pool("lp_pool2d", 2, input, norm_type, kernel_size, stride, ceil_mode)


@filled(POOL)
def lp_pool1d_backward(grad_output, input, output, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Gradient of ``lp_pool1d`` w.r.t. its input, given the forward ``input`` and ``output``.

    %(lp_backward_doc)s
    """
    return _lp_pool_backward("lp_pool1d_backward", 1, grad_output, input, output, norm_type, kernel_size, stride,
                             ceil_mode)


@filled(POOL)
def lp_pool2d_backward(grad_output, input, output, norm_type, kernel_size, stride=None, ceil_mode=False):
    """Gradient of ``lp_pool2d`` w.r.t. its input, given the forward ``input`` and ``output``.

    %(lp_backward_doc)s
    """
    return _lp_pool_backward("lp_pool2d_backward", 2, grad_output, input, output, norm_type, kernel_size, stride,
                             ceil_mode)
