"""Layers that move pixels rather than weigh them: resizing, pixel (un)shuffle, padding, channel dropout.

``interpolate`` (and the :class:`Upsample` layer) resizes the spatial axes one at a time, each as a sparse
(output x input) matrix with at most two entries per row -- the same source positions and weights as PyTorch,
computed in the input's precision -- so the backward pass is the transposed matrix.
"""
import math
import numbers

import numpy as np
from scipy import sparse

from .. import _validate as V
from ..autograd import Tensor, as_tensor, record
from ..ops import pad
from . import init as _init
from .module import Module

__all__ = ["interpolate", "upsample", "pixel_shuffle", "pixel_unshuffle", "dropout1d", "dropout2d", "dropout3d",
           "pad", "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "PixelShuffle", "PixelUnshuffle",
           "Dropout1d", "Dropout2d", "Dropout3d", "ZeroPad2d", "ConstantPad2d", "ReflectionPad2d",
           "ReplicationPad2d", "CircularPad2d"]

_MODES = {"nearest": (1, 2, 3), "linear": (1,), "bilinear": (2,), "trilinear": (3,)}


def _sizes(fn, spatial, size, scale_factor):
    """Output sizes and per-axis scale factors (None where the size was given) from ``size``/``scale_factor``."""
    nd = len(spatial)
    if (size is None) == (scale_factor is None):
        raise ValueError("%s(): give exactly one of 'size' and 'scale_factor'" % fn)
    if size is not None:
        return V.int_tuple(size, nd, fn, "size", minimum=1), (None,) * nd
    if isinstance(scale_factor, (list, tuple)):
        if len(scale_factor) != nd:
            raise ValueError("%s(): argument 'scale_factor' must have %d values for %d spatial dimensions, got %r"
                             % (fn, nd, nd, scale_factor))
        factors = tuple(V.real_scalar(s, fn, "scale_factor") for s in scale_factor)
    else:
        factors = (V.real_scalar(scale_factor, fn, "scale_factor"),) * nd
    if any(not f > 0 for f in factors):
        raise ValueError("%s(): argument 'scale_factor' must be positive, got %r" % (fn, scale_factor))
    out = tuple(int(math.floor(n * f)) for n, f in zip(spatial, factors))
    if any(o < 1 for o in out):
        raise ValueError("%s(): scale_factor %r gives an empty output for input size %s" % (fn, scale_factor, spatial))
    return out, factors


def _axis_matrix(n_in, n_out, factor, mode, align_corners, dtype):
    """The (n_out, n_in) sparse matrix of one axis: PyTorch's source index and weights for every output index."""
    ftype = np.dtype(dtype).type
    dst = np.arange(n_out)
    if mode == "nearest":
        if n_out == n_in:
            src = dst
        elif n_out == 2 * n_in:
            src = dst >> 1
        else:
            scale = np.float32(1.0 / factor) if factor else np.float32(n_in) / np.float32(n_out)
            src = np.minimum(np.floor(dst.astype(np.float32) * scale).astype(np.int64), n_in - 1)
        return sparse.csr_matrix((np.ones(n_out, dtype), (dst, src)), shape=(n_out, n_in))
    if align_corners:
        scale = ftype(n_in - 1) / ftype(n_out - 1) if n_out > 1 else ftype(0)
        pos = scale * dst.astype(dtype)
    else:
        scale = ftype(1.0 / factor) if factor else ftype(n_in) / ftype(n_out)
        pos = np.maximum(scale * (dst.astype(dtype) + ftype(0.5)) - ftype(0.5), ftype(0))
    i0 = pos.astype(np.int64)
    i1 = i0 + (i0 < n_in - 1)
    l1 = (pos - i0.astype(dtype)).astype(dtype)
    l0 = (ftype(1) - l1).astype(dtype)
    rows = np.concatenate([dst, dst])
    m = sparse.coo_matrix((np.concatenate([l0, l1]), (rows, np.concatenate([i0, i1]))), shape=(n_out, n_in))
    return m.tocsr()


def _along(mat, x, axis):
    """``mat`` applied to ``axis`` of ``x`` (a matrix product over that axis)."""
    moved = np.moveaxis(x, axis, 0)
    y = mat @ moved.reshape(moved.shape[0], -1)
    return np.moveaxis(np.asarray(y).reshape((mat.shape[0],) + moved.shape[1:]), 0, axis)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the spatial axes of ``input`` (N, C, *spatial) to ``size`` or by ``scale_factor``, as
    ``torch.nn.functional.interpolate``: ``mode`` ``"nearest"`` (1-3 spatial dims), ``"linear"`` (1),
    ``"bilinear"`` (2) or ``"trilinear"`` (3); ``align_corners`` for the linear modes (default False).  With
    ``scale_factor`` and without ``recompute_scale_factor=True`` the source positions use ``1 / scale_factor``,
    otherwise ``in / out``."""
    fn = "interpolate"
    x = as_tensor(input)
    V.check_choice(mode, tuple(_MODES), fn, "mode")
    nd = x.ndim - 2
    if nd not in _MODES[mode]:
        raise ValueError("%s(): mode %r needs a %s input, got shape %s"
                         % (fn, mode, " or ".join("%dD" % (d + 2) for d in _MODES[mode]), x.shape))
    if mode == "nearest" and align_corners is not None:
        raise ValueError("%s(): align_corners can only be set with the linear modes (linear, bilinear, trilinear)"
                         % fn)
    if antialias:
        raise ValueError("%s(): antialias=True is not supported" % fn)
    if x.dtype.kind != "f":
        raise TypeError("%s(): expected a floating point input, got dtype %s" % (fn, x.dtype))
    out, factors = _sizes(fn, x.shape[2:], size, scale_factor)
    if recompute_scale_factor:
        factors = (None,) * nd
    mats = [(2 + i, _axis_matrix(n, o, f, mode, bool(align_corners), x.dtype))
            for i, (n, o, f) in enumerate(zip(x.shape[2:], out, factors))][::-1]      # the last axis first
    y = x.data
    for ax, m in mats:
        if m.shape[0] != m.shape[1] or mode != "nearest":
            y = _along(m, y, ax)
    y = np.ascontiguousarray(y)

    def backward(g, needs):
        for ax, m in reversed(mats):
            g = _along(m.T.tocsr(), g, ax)
        return (g,)
    return record(fn, y, (x,), backward)


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """:func:`interpolate` under its older name (``torch.nn.functional.upsample``)."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def pixel_shuffle(input, upscale_factor):
    """(*, C r^2, H, W) -> (*, C, H r, W r): sub-pixel rearrangement, as ``torch.nn.functional.pixel_shuffle``."""
    x = as_tensor(input)
    r = V.positive_int(upscale_factor, "pixel_shuffle", "upscale_factor")
    if x.ndim < 3 or x.shape[-3] % (r * r):
        raise ValueError("pixel_shuffle(): expected an input of shape (*, C * %d, H, W), got %s" % (r * r, x.shape))
    *lead, c, h, w = x.shape
    lead = tuple(lead)
    k = len(lead)
    y = x.reshape(lead + (c // (r * r), r, r, h, w))
    y = y.permute(tuple(range(k)) + (k, k + 3, k + 1, k + 4, k + 2))
    return y.reshape(lead + (c // (r * r), h * r, w * r))


def pixel_unshuffle(input, downscale_factor):
    """(*, C, H r, W r) -> (*, C r^2, H, W): the inverse of :func:`pixel_shuffle`."""
    x = as_tensor(input)
    r = V.positive_int(downscale_factor, "pixel_unshuffle", "downscale_factor")
    if x.ndim < 3 or x.shape[-2] % r or x.shape[-1] % r:
        raise ValueError("pixel_unshuffle(): expected an input of shape (*, C, H * %d, W * %d), got %s"
                         % (r, r, x.shape))
    *lead, c, hr, wr = x.shape
    lead = tuple(lead)
    k = len(lead)
    y = x.reshape(lead + (c, hr // r, r, wr // r, r))
    y = y.permute(tuple(range(k)) + (k, k + 2, k + 4, k + 1, k + 3))
    return y.reshape(lead + (c * r * r, hr // r, wr // r))


def _channel_dropout(fn, nd, input, p, training, generator):
    p = V.real_scalar(p, fn, "p")
    if not 0.0 <= p <= 1.0:
        raise ValueError("%s(): argument 'p' must be between 0 and 1, got %r" % (fn, p))
    x = as_tensor(input)
    if x.ndim not in (nd + 1, nd + 2):
        raise ValueError("%s(): expected a %dD (unbatched) or %dD (batched) input, got shape %s"
                         % (fn, nd + 1, nd + 2, x.shape))
    if not training or p == 0.0:
        return x
    rng = _init.default_generator() if generator is None else generator
    mask_shape = x.shape[:x.ndim - nd] + (1,) * nd
    keep = rng.random(mask_shape) >= p
    mask = np.zeros(mask_shape, x.dtype) if p == 1.0 else keep.astype(x.dtype) / x.dtype.type(1.0 - p)
    return x * Tensor._wrap(mask)


def dropout1d(input, p=0.5, training=True, inplace=False, *, generator=None):
    """Zero whole channels of (N, C, L) or (C, L) with probability ``p``, scale the rest by ``1 / (1 - p)``."""
    return _channel_dropout("dropout1d", 1, input, p, training, generator)


def dropout2d(input, p=0.5, training=True, inplace=False, *, generator=None):
    """Zero whole channels of (N, C, H, W) or (C, H, W) with probability ``p``, scale the rest by
    ``1 / (1 - p)``; the mask is drawn from ``generator`` or the generator :func:`fastconv.nn.manual_seed` seeds."""
    return _channel_dropout("dropout2d", 2, input, p, training, generator)


def dropout3d(input, p=0.5, training=True, inplace=False, *, generator=None):
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) with probability ``p``."""
    return _channel_dropout("dropout3d", 3, input, p, training, generator)


# --------------------------------------------------------------------------------------------------- layers
class Upsample(Module):
    """Resize by ``scale_factor`` or to ``size`` (torch.nn.Upsample); see :func:`interpolate`."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        V.check_choice(mode, tuple(_MODES), "Upsample", "mode")
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample(): give exactly one of 'size' and 'scale_factor'")
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, input):
        return interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                           self.recompute_scale_factor)

    def describe(self, input_shape):
        out, _ = _sizes("Upsample", tuple(input_shape[2:]), self.size, self.scale_factor)
        return dict(output_shape=tuple(input_shape[:2]) + out, params=0, multiplies=0, window=None)

    def extra_repr(self):
        what = "size=%s" % (self.size,) if self.size is not None else "scale_factor=%s" % (self.scale_factor,)
        return "%s, mode=%r" % (what, self.mode)


class UpsamplingNearest2d(Upsample):
    """Nearest-neighbour upsampling of (N, C, H, W) (torch.nn.UpsamplingNearest2d)."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    """Bilinear upsampling with ``align_corners=True`` (torch.nn.UpsamplingBilinear2d)."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)


class PixelShuffle(Module):
    """(N, C r^2, H, W) -> (N, C, H r, W r) (torch.nn.PixelShuffle)."""

    def __init__(self, upscale_factor):
        super().__init__()
        self.upscale_factor = V.positive_int(upscale_factor, "PixelShuffle", "upscale_factor")

    def forward(self, input):
        return pixel_shuffle(input, self.upscale_factor)

    def extra_repr(self):
        return "upscale_factor=%d" % self.upscale_factor


class PixelUnshuffle(Module):
    """(N, C, H r, W r) -> (N, C r^2, H, W) (torch.nn.PixelUnshuffle)."""

    def __init__(self, downscale_factor):
        super().__init__()
        self.downscale_factor = V.positive_int(downscale_factor, "PixelUnshuffle", "downscale_factor")

    def forward(self, input):
        return pixel_unshuffle(input, self.downscale_factor)

    def extra_repr(self):
        return "downscale_factor=%d" % self.downscale_factor


class _DropoutNd(Module):
    _fn = None

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        name = type(self).__name__
        p = V.real_scalar(p, name, "p")
        if not 0.0 <= p <= 1.0:
            raise ValueError("%s(): argument 'p' must be between 0 and 1, got %r" % (name, p))
        self.p, self.inplace = p, inplace

    def forward(self, input):
        return type(self)._fn(input, self.p, self.training)

    def describe(self, input_shape):
        return dict(output_shape=tuple(input_shape), params=0, multiplies=0, window=None)

    def extra_repr(self):
        return "p=%g" % self.p


class Dropout1d(_DropoutNd):
    """Channel dropout for (N, C, L) or (C, L) while training (torch.nn.Dropout1d)."""
    _fn = staticmethod(dropout1d)


class Dropout2d(_DropoutNd):
    """Channel dropout for (N, C, H, W) or (C, H, W) while training (torch.nn.Dropout2d); identity in eval mode."""
    _fn = staticmethod(dropout2d)


class Dropout3d(_DropoutNd):
    """Channel dropout for (N, C, D, H, W) or (C, D, H, W) while training (torch.nn.Dropout3d)."""
    _fn = staticmethod(dropout3d)


class _Pad2d(Module):
    _mode = "constant"

    def __init__(self, padding, value=0.0):
        super().__init__()
        name = type(self).__name__
        if isinstance(padding, numbers.Integral):
            padding = (padding,) * 4
        self.padding = tuple(V.int_tuple(padding, 4, name, "padding"))
        self.value = V.real_scalar(value, name, "value")

    def forward(self, input):
        if self._mode == "constant":
            return pad(input, self.padding, "constant", self.value)
        return pad(input, self.padding, self._mode)

    def describe(self, input_shape):
        l, r, t, b = self.padding
        shape = tuple(input_shape)
        return dict(output_shape=shape[:-2] + (shape[-2] + t + b, shape[-1] + l + r), params=0, multiplies=0,
                    window=None)

    def extra_repr(self):
        return "%s" % (self.padding,) + (", value=%g" % self.value if self._mode == "constant" else "")


class ZeroPad2d(_Pad2d):
    """Pad the last two dimensions with zeros; ``padding`` is an int or ``(left, right, top, bottom)``."""

    def __init__(self, padding):
        super().__init__(padding, 0.0)


class ConstantPad2d(_Pad2d):
    """Pad the last two dimensions with ``value``; ``padding`` is an int or ``(left, right, top, bottom)``."""


class ReflectionPad2d(_Pad2d):
    """Pad the last two dimensions by mirroring (without repeating the edge)."""
    _mode = "reflect"

    def __init__(self, padding):
        super().__init__(padding)


class ReplicationPad2d(_Pad2d):
    """Pad the last two dimensions by repeating the edge."""
    _mode = "replicate"

    def __init__(self, padding):
        super().__init__(padding)


class CircularPad2d(_Pad2d):
    """Pad the last two dimensions by wrapping around."""
    _mode = "circular"

    def __init__(self, padding):
        super().__init__(padding)
