"""Gradients of convolutions, named and called like ``torch.nn.grad``.

``conv2d_input(input_shape, weight, grad_output, ...)`` returns dL/d(input) and ``conv2d_weight(input,
weight_shape, grad_output, ...)`` returns dL/d(weight) for ``y = conv2d(input, weight, ...)`` with the same
stride, padding (every form), dilation, groups, ``padding_mode`` and ``flip``; ``conv_bias(grad_output)`` is
dL/d(bias).  Each registered algorithm implements both (``algorithm=`` as in the forward functions).
"""
import numpy as np

from . import _algorithms, _threads
from . import _validate as V
from ._geometry import ConvGeometry
from .conv import PADDING_MODES, apply_padding_mode, flip_kernel, padded_geometry

__all__ = ["conv1d_input", "conv2d_input", "conv3d_input", "conv1d_weight", "conv2d_weight", "conv3d_weight",
           "conv_bias", "pad_adjoint"]


def pad_adjoint(grad_padded, padding, padding_mode):
    """Adjoint of explicit padding: fold the gradient w.r.t. a padded array back onto the unpadded one.

    ``padding`` holds (lo, hi) pairs for the trailing spatial axes; entries of the border that copy an input
    element (reflect, replicate, circular) send their gradient back to that element.
    """
    g = grad_padded
    nd = len(padding)
    for ax, (lo, hi) in enumerate(padding):
        axis = g.ndim - nd + ax
        n = g.shape[axis] - lo - hi
        mode = PADDING_MODES[padding_mode]
        src = np.pad(np.arange(n), (lo, hi), mode=mode) if mode else np.pad(np.arange(n), (lo, hi),
                                                                            constant_values=-1)
        take = [slice(None)] * g.ndim
        take[axis] = slice(lo, lo + n)
        out = np.array(g[tuple(take)])
        for j in list(range(lo)) + list(range(lo + n, lo + n + hi)):
            if src[j] < 0:
                continue
            dst = [slice(None)] * g.ndim
            dst[axis] = src[j]
            sl = [slice(None)] * g.ndim
            sl[axis] = j
            out[tuple(dst)] += g[tuple(sl)]
        g = out
    return g


def _grad_output(grad_output, geom, dtype, fn):
    gy = V.as_array(grad_output, fn, "grad_output")
    if gy.shape != geom.output_shape:
        raise ValueError("%s(): argument 'grad_output' must have shape %s (the convolution's output), got %s"
                         % (fn, geom.output_shape, gy.shape))
    return V.as_float_array(gy, np.result_type(dtype, V.float_kind(gy.dtype)), fn, "grad_output")


def _shape_arg(shape, nd, fn, arg):
    if isinstance(shape, np.ndarray) or not isinstance(shape, (tuple, list)):
        raise TypeError("%s(): argument '%s' must be a tuple of %d ints, got %r" % (fn, arg, nd + 2, shape))
    shape = V.int_tuple(shape, len(shape), fn, arg, minimum=1)
    if len(shape) != nd + 2:
        raise ValueError("%s(): argument '%s' must have %d entries, got %r" % (fn, arg, nd + 2, shape))
    V.check_size(shape, fn, arg)
    return shape


def _common(fn, nd, arr, arr_arg, shape, shape_arg, grad_output, stride, padding, dilation, groups,
            padding_mode, flip, weight_given):
    """Validate a gradient call; returns (array as float, grad_output as float, kernel geometry, user geometry)."""
    shape = _shape_arg(shape, nd, fn, shape_arg)
    a = V.as_array(arr, fn, arr_arg)
    V.check_ndim(a, nd + 2, fn, arr_arg, "N, C, *spatial" if arr_arg == "input" else "C_out, C_in/groups, *k")
    V.check_nonempty(a, fn, arr_arg)
    V.check_choice(padding_mode, PADDING_MODES, fn, "padding_mode")
    if not isinstance(flip, (bool, np.bool_)):
        raise TypeError("%s(): argument 'flip' must be a bool, got %r" % (fn, flip))
    in_shape, w_shape = (shape, a.shape) if weight_given else (a.shape, shape)
    user_geom = ConvGeometry.make(in_shape, w_shape, stride, padding, dilation, groups, fn=fn)
    geom = padded_geometry(user_geom, padding_mode, fn)
    gy = _grad_output(grad_output, user_geom, V.float_kind(a.dtype), fn)
    return V.as_float_array(a, gy.dtype, fn, arr_arg), gy, geom, user_geom


def _conv_input(fn, nd, input_shape, weight, grad_output, stride, padding, dilation, groups, padding_mode, flip,
                algorithm):
    w, gy, geom, user_geom = _common(fn, nd, weight, "weight", input_shape, "input_shape", grad_output, stride,
                                     padding, dilation, groups, padding_mode, flip, True)
    if flip:
        w = flip_kernel(w)
    alg = _algorithms.resolve(algorithm, geom, gy.dtype, "grad_input", fn)
    gx = np.empty(geom.input_shape, gy.dtype)
    alg.grad_input(gy, w, geom, gx, _threads.get_num_threads())
    if geom is not user_geom:
        gx = pad_adjoint(gx, user_geom.padding, padding_mode)
    return gx


def _conv_weight(fn, nd, input, weight_shape, grad_output, stride, padding, dilation, groups, padding_mode, flip,
                 algorithm):
    x, gy, geom, user_geom = _common(fn, nd, input, "input", weight_shape, "weight_shape", grad_output, stride,
                                     padding, dilation, groups, padding_mode, flip, False)
    x, _ = apply_padding_mode(x, user_geom, padding_mode, fn)
    alg = _algorithms.resolve(algorithm, geom, gy.dtype, "grad_weight", fn)
    gw = np.empty(geom.weight_shape, gy.dtype)
    alg.grad_weight(x, gy, geom, gw, _threads.get_num_threads())
    return flip_kernel(gw) if flip else gw


_DOC_IN = """Gradient of conv{nd}d with respect to its input (``torch.nn.grad.conv{nd}d_input``).

    Parameters
    ----------
    input_shape : tuple of {n2} ints
    weight : array_like, shape (C_out, C_in/groups, *kernel)
    grad_output : array_like, the gradient w.r.t. the convolution's output
    stride, padding, dilation, groups, padding_mode, flip, algorithm : as in ``fastconv.conv{nd}d``
    """

_DOC_W = """Gradient of conv{nd}d with respect to its weight (``torch.nn.grad.conv{nd}d_weight``).

    Parameters
    ----------
    input : array_like, shape (N, C_in, *spatial)
    weight_shape : tuple of {n2} ints
    grad_output : array_like, the gradient w.r.t. the convolution's output
    stride, padding, dilation, groups, padding_mode, flip, algorithm : as in ``fastconv.conv{nd}d``
    """


def conv1d_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                 padding_mode="zeros", flip=False, algorithm="auto"):
    return _conv_input("conv1d_input", 1, input_shape, weight, grad_output, stride, padding, dilation, groups,
                       padding_mode, flip, algorithm)


def conv2d_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                 padding_mode="zeros", flip=False, algorithm="auto"):
    return _conv_input("conv2d_input", 2, input_shape, weight, grad_output, stride, padding, dilation, groups,
                       padding_mode, flip, algorithm)


def conv3d_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                 padding_mode="zeros", flip=False, algorithm="auto"):
    return _conv_input("conv3d_input", 3, input_shape, weight, grad_output, stride, padding, dilation, groups,
                       padding_mode, flip, algorithm)


def conv1d_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  padding_mode="zeros", flip=False, algorithm="auto"):
    return _conv_weight("conv1d_weight", 1, input, weight_shape, grad_output, stride, padding, dilation, groups,
                        padding_mode, flip, algorithm)


def conv2d_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  padding_mode="zeros", flip=False, algorithm="auto"):
    return _conv_weight("conv2d_weight", 2, input, weight_shape, grad_output, stride, padding, dilation, groups,
                        padding_mode, flip, algorithm)


def conv3d_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  padding_mode="zeros", flip=False, algorithm="auto"):
    return _conv_weight("conv3d_weight", 3, input, weight_shape, grad_output, stride, padding, dilation, groups,
                        padding_mode, flip, algorithm)


for _nd in (1, 2, 3):
    globals()["conv%dd_input" % _nd].__doc__ = _DOC_IN.format(nd=_nd, n2=_nd + 2)
    globals()["conv%dd_weight" % _nd].__doc__ = _DOC_W.format(nd=_nd, n2=_nd + 2)


def conv_bias(grad_output):
    """Gradient w.r.t. the bias: ``grad_output`` summed over every axis but the channel axis 1."""
    gy = V.as_array(grad_output, "conv_bias", "grad_output")
    if gy.ndim < 2:
        raise ValueError("conv_bias(): argument 'grad_output' must have shape (N, C, ...), got %s" % (gy.shape,))
    return gy.sum(axis=(0,) + tuple(range(2, gy.ndim)))
