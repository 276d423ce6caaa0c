"""Convolution: ``conv1d/2d/3d`` and ``conv_transpose1d/2d/3d`` with torch.nn.functional's names and rules.

Data path of every call::

    public function -> _validate (arrays, dtype, contiguity) -> ConvGeometry -> padding_mode / flip
                    -> choose algorithm -> kernel(out=...) -> result
"""
import numpy as np

from . import _algorithms, _threads
from . import _validate as V
from ._geometry import ConvGeometry

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "PADDING_MODES", "prepare_conv"]

PADDING_MODES = {"zeros": None, "reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_LAYOUT = {1: "N, C, L", 2: "N, C, H, W", 3: "N, C, D, H, W"}
_WLAYOUT = {1: "C_out, C_in/groups, kL", 2: "C_out, C_in/groups, kH, kW", 3: "C_out, C_in/groups, kD, kH, kW"}


def _arrays(fn, nd, input, weight, bias, wlayout=None):
    x = V.as_array(input, fn, "input")
    w = V.as_array(weight, fn, "weight")
    b = None if bias is None else V.as_array(bias, fn, "bias")
    V.check_ndim(x, nd + 2, fn, "input", _LAYOUT[nd])
    V.check_ndim(w, nd + 2, fn, "weight", wlayout or _WLAYOUT[nd])
    V.check_nonempty(x, fn, "input")
    V.check_nonempty(w, fn, "weight")
    return x, w, b


def _check_bias(b, channels, fn):
    if b is None:
        return
    if b.shape != (channels,):
        raise ValueError("%s(): argument 'bias' must have shape (%d,), got %s" % (fn, channels, b.shape))


def padded_geometry(geom, padding_mode, fn):
    """The zero-padding geometry the kernels see once ``padding_mode`` padding has been applied explicitly.

    Like PyTorch: ``reflect`` needs each pad smaller than the input size, ``circular`` at most the input size.
    Returns ``geom`` itself when nothing needs explicit padding.
    """
    if PADDING_MODES[padding_mode] is None or all(p == 0 for pair in geom.padding for p in pair):
        return geom
    for size, (lo, hi) in zip(geom.input_size, geom.padding):
        if padding_mode == "reflect" and max(lo, hi) >= size:
            raise ValueError("%s(): argument 'padding' %s must be smaller than the input size %s for "
                             "padding_mode='reflect'" % (fn, geom.padding, geom.input_size))
        if padding_mode == "circular" and max(lo, hi) > size:
            raise ValueError("%s(): argument 'padding' %s must be at most the input size %s for "
                             "padding_mode='circular'" % (fn, geom.padding, geom.input_size))
    return ConvGeometry(geom.input_shape[:2] + geom.padded_size, geom.weight_shape, geom.stride,
                        ((0, 0),) * geom.ndim, geom.dilation, geom.groups)


def apply_padding_mode(x, geom, padding_mode, fn):
    """Pad ``x`` explicitly for a non-zero ``padding_mode``; returns ``(x_padded, geometry with no padding)``."""
    g = padded_geometry(geom, padding_mode, fn)
    if g is geom:
        return x, geom
    return np.pad(x, ((0, 0), (0, 0)) + geom.padding, mode=PADDING_MODES[padding_mode]), g


def flip_kernel(w):
    """Reverse every spatial axis of a weight array (true convolution instead of cross-correlation)."""
    nd = w.ndim - 2
    return np.ascontiguousarray(w[(slice(None), slice(None)) + (slice(None, None, -1),) * nd])


def prepare_conv(fn, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, flip):
    """Validate and normalise a convolution call.

    Returns ``(x, w, b, geom, user_geom)``: contiguous arrays of the common float dtype, ``w`` flipped when asked,
    ``x`` explicitly padded for non-zero ``padding_mode`` and ``geom`` the zero-padding geometry the kernels see;
    ``user_geom`` is the geometry as the user described it (before explicit padding).
    """
    x, w, b = _arrays(fn, nd, input, weight, bias)
    V.check_choice(padding_mode, PADDING_MODES, fn, "padding_mode")
    if not isinstance(flip, (bool, np.bool_)):
        raise TypeError("%s(): argument 'flip' must be a bool, got %r" % (fn, flip))
    dtype = V.common_float_dtype(x, w, b)
    user_geom = ConvGeometry.make(x.shape, w.shape, stride, padding, dilation, groups, fn=fn)
    _check_bias(b, user_geom.out_channels, fn)
    x = V.as_float_array(x, dtype, fn, "input")
    w = V.as_float_array(w, dtype, fn, "weight")
    if b is not None:
        b = V.as_float_array(b, dtype, fn, "bias")
    if flip:
        w = flip_kernel(w)
    x, geom = apply_padding_mode(x, user_geom, padding_mode, fn)
    return x, w, b, geom, user_geom


def _output(out, shape, dtype, inputs, fn):
    if out is None:
        return np.empty(shape, dtype=dtype)
    return V.check_out(out, shape, dtype, inputs, fn)


def _conv(fn, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, flip, out):
    x, w, b, geom, _ = prepare_conv(fn, nd, input, weight, bias, stride, padding, dilation, groups,
                                    padding_mode, flip)
    alg = _algorithms.resolve(algorithm, geom, x.dtype, "forward", fn)
    result = _output(out, geom.output_shape, x.dtype, (input, weight, bias), fn)
    alg.forward(x, w, b, geom, result, _threads.get_num_threads())
    return result


_CONV_DOC = """{nd}-D convolution (cross-correlation, as in deep learning) of a batch of {what}.

    Parameters
    ----------
    input : array_like, shape ({layout})
    weight : array_like, shape ({wlayout})
    bias : array_like, shape (C_out,), optional
    stride, dilation : int or tuple of {nd} ints
    padding : int, tuple of {nd} ints, tuple of {nd} (lo, hi) pairs, "valid" or "same"
        ``"same"`` keeps the size for stride 1 (total ``d(k-1)``, the odd element on the right, as PyTorch) and
        gives ``ceil(n/stride)`` outputs for stride > 1 (TensorFlow's rule).
    groups : int
        Split channels into ``groups`` independent convolutions (``groups == C_in`` is depthwise).
    padding_mode : {{"zeros", "reflect", "replicate", "circular"}}
    algorithm : {{"auto", "direct", "toeplitz", "fft", ...}}
        See ``fastconv.algorithms()``.
    flip : bool
        True computes true convolution (the kernel flipped along every spatial axis).
    out : ndarray, optional
        C-contiguous array of the output shape and dtype to write into.

    Returns
    -------
    ndarray, shape (N, C_out, *out_size), ``out_size = (n + 2p - d(k-1) - 1) // s + 1``
        float64 if any argument is float64 or an integer array, else float32.
    """


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", flip=False, out=None):
    return _conv("conv1d", 1, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm,
                 flip, out)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", flip=False, out=None):
    return _conv("conv2d", 2, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm,
                 flip, out)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", flip=False, out=None):
    return _conv("conv3d", 3, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm,
                 flip, out)


conv1d.__doc__ = _CONV_DOC.format(nd=1, what="signals", layout=_LAYOUT[1], wlayout=_WLAYOUT[1])
conv2d.__doc__ = _CONV_DOC.format(nd=2, what="images", layout=_LAYOUT[2], wlayout=_WLAYOUT[2])
conv3d.__doc__ = _CONV_DOC.format(nd=3, what="volumes", layout=_LAYOUT[3], wlayout=_WLAYOUT[3])


def _conv_transpose(fn, nd, input, weight, bias, stride, padding, output_padding, groups, dilation, algorithm,
                    out):
    wl = _WLAYOUT[nd].replace("C_out, C_in/groups", "C_in, C_out/groups")
    x, w, b = _arrays(fn, nd, input, weight, bias, wlayout=wl)
    dtype = V.common_float_dtype(x, w, b)
    geom = ConvGeometry.for_transpose(x.shape, w.shape, stride, padding, output_padding, groups, dilation, fn=fn)
    _check_bias(b, geom.in_channels, fn)
    x = V.as_float_array(x, dtype, fn, "input")
    w = V.as_float_array(w, dtype, fn, "weight")
    alg = _algorithms.resolve(algorithm, geom, dtype, "grad_input", fn)
    result = _output(out, geom.input_shape, dtype, (input, weight, bias), fn)
    alg.grad_input(x, w, geom, result, _threads.get_num_threads())
    if b is not None:
        result += V.as_float_array(b, dtype, fn, "bias").reshape((1, -1) + (1,) * nd)
    return result


_CONVT_DOC = """{nd}-D transposed convolution ("deconvolution"): the adjoint of conv{nd}d, as in PyTorch.

    Parameters
    ----------
    input : array_like, shape ({layout})
    weight : array_like, shape (C_in, C_out/groups, *kernel)
    bias : array_like, shape (C_out,), optional
    stride, padding, output_padding, dilation : int or tuple of {nd} ints
        ``output_padding`` must be smaller than stride or dilation.
    groups : int
    algorithm : str
    out : ndarray, optional

    Returns
    -------
    ndarray, spatial size ``(n - 1) s - 2 p + d (k - 1) + output_padding + 1``
    """


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", out=None):
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, algorithm, out)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", out=None):
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, algorithm, out)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", out=None):
    return _conv_transpose("conv_transpose3d", 3, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, algorithm, out)


conv_transpose1d.__doc__ = _CONVT_DOC.format(nd=1, layout=_LAYOUT[1])
conv_transpose2d.__doc__ = _CONVT_DOC.format(nd=2, layout=_LAYOUT[2])
conv_transpose3d.__doc__ = _CONVT_DOC.format(nd=3, layout=_LAYOUT[3])
