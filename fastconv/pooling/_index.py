"""Index-based pooling ops: k-max pooling, max-unpooling and the argmax scatter of max-pooling's backward."""
import math

import numpy as np

from .. import _validate as V
from .._doc import POOL, filled
from .._geometry import PoolGeometry
from ._engine import run_gather, run_kmax, run_scatter
from ._regular import float_array, pool_max

__all__ = ["kmax_pool", "max_unpool1d", "max_unpool2d", "max_unpool3d", "max_pool_backward", "kmax_pool_backward",
           "max_unpool_backward"]


def _planes(a):
    """(N*C, prod(spatial)) view of an (N, C, *spatial) array (N may be 0)."""
    return a.reshape(a.shape[0] * a.shape[1], math.prod(a.shape[2:]))


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
    idx = V.index_array(indices, fn)
    shape = V.shape_arg(input_shape, fn, "input_shape", ndims=(3, 4, 5), empty="N")
    if gy.ndim < 2:
        raise ValueError("%s(): argument 'grad_output' must be (N, C, *out), got shape %s" % (fn, gy.shape))
    V.same_shape(idx, gy.shape, fn, "indices", "the shape of grad_output")
    if gy.shape[:2] != shape[:2]:
        raise ValueError("%s(): argument 'grad_output' has (N, C) = %s but input_shape %s has (N, C) = %s"
                         % (fn, gy.shape[:2], shape, shape[:2]))
    gx = run_scatter(_planes(float_array(gy)), _planes(idx), math.prod(shape[2:]), True, fn)
    return gx.reshape(shape)


# ----------------------------------------------------------------------------------------------- k-max pooling
def _lines(a, axis):
    """(rows, length) C-contiguous copy of ``a`` with ``axis`` last (there may be no rows)."""
    moved = np.moveaxis(a, axis, -1)
    return np.ascontiguousarray(moved).reshape(math.prod(moved.shape[:-1]), a.shape[axis]), moved.shape


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
    axis = V.axis_index(dim, x.ndim, fn, "dim")
    k = V.positive_int(k, fn, "k")
    if k > x.shape[axis]:
        raise ValueError("%s(): argument 'k'=%d is larger than the size %d of dimension %d"
                         % (fn, k, x.shape[axis], axis))
    sorted = V.flag(sorted, fn, "sorted")
    def run(values):
        x2, moved = _lines(values, axis)
        vals, idx = run_kmax(x2, k, sorted)
        out_moved = moved[:-1] + (k,)
        return _unlines(vals, out_moved, axis), _unlines(idx, out_moved, axis)
    return pool_max(x, run)


def kmax_pool_backward(grad_output, indices, input_shape, dim=-1):
    """Gradient of :func:`~fastconv.kmax_pool` w.r.t. its input: ``grad_output`` put back at ``indices`` along
    ``dim``."""
    fn = "kmax_pool_backward"
    gy = V.as_array(grad_output, fn, "grad_output")
    idx = V.index_array(indices, fn)
    shape = V.shape_arg(input_shape, fn, "input_shape", empty="all")
    if len(shape) == 0:
        raise ValueError("%s(): argument 'input_shape' must have at least one dimension" % fn)
    axis = V.axis_index(dim, len(shape), fn, "dim")
    V.same_shape(idx, gy.shape, fn, "indices", "the shape of grad_output")
    if gy.ndim != len(shape) or any(g != s for i, (g, s) in enumerate(zip(gy.shape, shape)) if i != axis) \
            or not 1 <= gy.shape[axis] <= shape[axis]:
        raise ValueError("%s(): argument 'grad_output' of shape %s does not match input_shape %s with k <= %d "
                         "along dim %d" % (fn, gy.shape, shape, shape[axis], axis))
    g2, moved = _lines(float_array(gy), axis)
    i2, _ = _lines(idx, axis)
    gx = run_scatter(g2, i2, shape[axis], True, fn, "dimension %d of input_shape" % axis)
    return _unlines(gx, moved[:-1] + (shape[axis],), axis)


# ----------------------------------------------------------------------------------------------- unpooling
def _max_unpool(fn, nd, input, indices, kernel_size, stride, padding, output_size):
    x = V.batch_array(input, fn, "input", nd)
    idx = V.index_array(indices, fn)
    V.same_shape(idx, x.shape, fn, "indices", "the shape of input")
    shape = PoolGeometry.for_unpool(x.shape, kernel_size, stride, padding, output_size, fn).input_shape
    out = run_scatter(_planes(float_array(x)), _planes(idx), math.prod(shape[2:]), False, fn)
    return out.reshape(shape)


@filled(POOL)
def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of ``max_pool1d``, as ``torch.nn.functional.max_unpool1d``.

    %(unpool_doc)s
    """
    return _max_unpool("max_unpool1d", 1, input, indices, kernel_size, stride, padding, output_size)


@filled(POOL)
def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of ``max_pool2d``, as ``torch.nn.functional.max_unpool2d``.

    %(unpool_doc)s
    """
    return _max_unpool("max_unpool2d", 2, input, indices, kernel_size, stride, padding, output_size)


@filled(POOL)
def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of ``max_pool3d``, as ``torch.nn.functional.max_unpool3d``.

    %(unpool_doc)s
    """
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
    gy = V.batch_array(grad_output, fn, "grad_output")
    idx = V.index_array(indices, fn)
    if idx.ndim != gy.ndim or idx.shape[:2] != gy.shape[:2]:
        raise ValueError("%s(): argument 'indices' must be (N, C, *in) with (N, C) = %s and %d spatial dims like "
                         "grad_output, got shape %s" % (fn, gy.shape[:2], gy.ndim - 2, idx.shape))
    return run_gather(_planes(float_array(gy)), _planes(idx), fn).reshape(idx.shape)
