"""Adaptive and global pooling: windows that divide the input into a fixed number of bins."""
from .. import _validate as V
from .._doc import POOL, filled
from .._geometry import PoolGeometry
from ._engine import adaptive_windows, run_avg_backward, run_forward
from ._regular import float_array, pool_max

__all__ = ["adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
           "adaptive_max_pool2d", "adaptive_max_pool3d", "global_max_pool", "global_avg_pool",
           "adaptive_avg_pool1d_backward", "adaptive_avg_pool2d_backward", "adaptive_avg_pool3d_backward",
           "global_avg_pool_backward"]


def _adaptive(fn, input, output_size, is_max, return_indices=False, nd=None):
    """Max or mean over ``output_size`` bins of each plane (``nd`` spatial dims, or any number for global)."""
    x = V.batch_array(input, fn, "input", nd)
    return_indices = V.flag(return_indices, fn, "return_indices")
    # PyTorch's 1-D and 2-D adaptive average pools accept planes without channels, the others do not
    geom = PoolGeometry.adaptive(x.shape, output_size, fn, empty_channels=not is_max and nd in (1, 2))
    win = adaptive_windows(x.shape[2:], geom.output_size)
    if is_max:
        return pool_max(x, lambda v: run_forward(v, win, geom.output_shape, True, return_indices))
    return run_forward(float_array(x), win, geom.output_shape, False)


def _adaptive_avg_pool_backward(fn, nd, grad_output, input_shape):
    gy = V.batch_array(grad_output, fn, "grad_output", nd)
    shape = V.shape_arg(input_shape, fn, "input_shape", ndims=(nd + 2,), empty="N")
    if gy.shape[:2] != shape[:2]:
        raise ValueError("%s(): argument 'grad_output' has (N, C) = %s but input_shape %s has (N, C) = %s"
                         % (fn, gy.shape[:2], shape, shape[:2]))
    return run_avg_backward(float_array(gy), adaptive_windows(shape[2:], gy.shape[2:]), shape)


@filled(POOL)
def adaptive_avg_pool1d(input, output_size):
    """1-D adaptive average pooling to a fixed ``output_size``, as ``torch.nn.functional.adaptive_avg_pool1d``.

    %(adaptive_doc)s
    """
    return _adaptive("adaptive_avg_pool1d", input, output_size, False, nd=1)


@filled(POOL)
def adaptive_avg_pool2d(input, output_size):
    """2-D adaptive average pooling to a fixed ``output_size``, as ``torch.nn.functional.adaptive_avg_pool2d``.

    %(adaptive_doc)s
    """
    return _adaptive("adaptive_avg_pool2d", input, output_size, False, nd=2)


@filled(POOL)
def adaptive_avg_pool3d(input, output_size):
    """3-D adaptive average pooling to a fixed ``output_size``, as ``torch.nn.functional.adaptive_avg_pool3d``.

    %(adaptive_doc)s
    """
    return _adaptive("adaptive_avg_pool3d", input, output_size, False, nd=3)


@filled(POOL)
def adaptive_max_pool1d(input, output_size, return_indices=False):
    """1-D adaptive max pooling to a fixed ``output_size``, as ``torch.nn.functional.adaptive_max_pool1d``.

    %(adaptive_doc)s  With ``return_indices`` also the int64 argmax offsets into each plane (ties and NaN as
    max_pool).
    """
    return _adaptive("adaptive_max_pool1d", input, output_size, True, return_indices, nd=1)


@filled(POOL)
def adaptive_max_pool2d(input, output_size, return_indices=False):
    """2-D adaptive max pooling to a fixed ``output_size``, as ``torch.nn.functional.adaptive_max_pool2d``.

    %(adaptive_doc)s  With ``return_indices`` also the int64 argmax offsets into each plane (ties and NaN as
    max_pool).
    """
    return _adaptive("adaptive_max_pool2d", input, output_size, True, return_indices, nd=2)


@filled(POOL)
def adaptive_max_pool3d(input, output_size, return_indices=False):
    """3-D adaptive max pooling to a fixed ``output_size``, as ``torch.nn.functional.adaptive_max_pool3d``.

    %(adaptive_doc)s  With ``return_indices`` also the int64 argmax offsets into each plane (ties and NaN as
    max_pool).
    """
    return _adaptive("adaptive_max_pool3d", input, output_size, True, return_indices, nd=3)


def adaptive_avg_pool1d_backward(grad_output, input_shape):
    """Gradient of ``adaptive_avg_pool1d`` w.r.t. its input; the output size is read from grad_output."""
    return _adaptive_avg_pool_backward("adaptive_avg_pool1d_backward", 1, grad_output, input_shape)


def adaptive_avg_pool2d_backward(grad_output, input_shape):
    """Gradient of ``adaptive_avg_pool2d`` w.r.t. its input; the output size is read from grad_output."""
    return _adaptive_avg_pool_backward("adaptive_avg_pool2d_backward", 2, grad_output, input_shape)


def adaptive_avg_pool3d_backward(grad_output, input_shape):
    """Gradient of ``adaptive_avg_pool3d`` w.r.t. its input; the output size is read from grad_output."""
    return _adaptive_avg_pool_backward("adaptive_avg_pool3d_backward", 3, grad_output, input_shape)


def global_max_pool(input, return_indices=False):
    """The maximum of every (n, c) feature map of (N, C, *spatial): shape (N, C).

    With ``return_indices`` also the int64 flat offset of each maximum in its plane (for
    :func:`fastconv.grad.max_pool_backward`).  Ties and NaN as in :func:`max_pool2d`.
    """
    res = _adaptive("global_max_pool", input, 1, True, return_indices)
    if isinstance(res, tuple):
        return res[0].reshape(res[0].shape[:2]), res[1].reshape(res[1].shape[:2])
    return res.reshape(res.shape[:2])


def global_avg_pool(input):
    """The mean of every (n, c) feature map of (N, C, *spatial): shape (N, C)."""
    y = _adaptive("global_avg_pool", input, 1, False)
    return y.reshape(y.shape[:2])


def global_avg_pool_backward(grad_output, input_shape):
    """Gradient of :func:`global_avg_pool`: ``grad_output[n, c] / plane size`` spread over every element."""
    fn = "global_avg_pool_backward"
    gy = V.as_array(grad_output, fn, "grad_output")
    shape = V.shape_arg(input_shape, fn, "input_shape", ndims=(3, 4, 5), empty="N")
    V.same_shape(gy, shape[:2], fn, "grad_output", "(N, C) of input_shape")
    ones = (1,) * (len(shape) - 2)
    return run_avg_backward(float_array(gy).reshape(gy.shape + ones), adaptive_windows(shape[2:], ones), shape)
