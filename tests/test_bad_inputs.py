"""The catalogue of bad inputs: one table, every public op.

Kernels run with bounds checks off, so every argument a kernel relies on must be refused in Python first.  Each row
calls one public function with one bad argument and asserts

* the exception type (``ValueError`` for values and shapes, ``TypeError`` for types, never a crash, an
  ``IndexError``/``OverflowError`` from deep inside, or NumPy's own message),
* that the message names the offending argument,
* that every array passed in is unchanged afterwards (values, dtype, shape, strides, writeability).

Rows marked ``OK`` are inputs that look suspicious but are valid (non-contiguous, Fortran-order, read-only, integer
or float16 inputs): they must give the result of the plain C-contiguous float call.  Rows marked ``NONFINITE`` put
NaN/Inf in the data: the result must carry NaN/Inf exactly where the naive reference does.
"""
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import pytest

import fastconv as fc
from fastconv import filters as F
from fastconv import grad as G
from fastconv import nn

import reference as ref

OK, NONFINITE = "ok", "nonfinite"
HUGE = 2 ** 40                      # a dimension whose square overflows int32, int64 and MAX_ELEMENTS
rng = np.random.default_rng(1234)


def _r(*shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


# Inputs shared by the rows (each row that mutates would be caught by the snapshot of every array it received).
X1, W1 = _r(2, 4, 9), _r(6, 2, 3)                       # conv1d, groups=2
X2, W2, B2 = _r(2, 4, 7, 6), _r(6, 2, 3, 2), _r(6)      # conv2d, groups=2
X3, W3 = _r(1, 2, 4, 5, 3), _r(3, 2, 2, 3, 1)           # conv3d
WT2 = _r(4, 3, 3, 2)                                    # conv_transpose2d weight (C_in, C_out, kH, kW)
GY2 = _r(2, 6, 5, 5)                                    # conv2d(X2, W2, groups=2) output gradient
P2 = _r(2, 3, 6, 5)                                     # pooling input
MP_V, MP_I = fc.max_pool2d(P2, 2, return_indices=True)  # (2, 3, 3, 2) values and indices
IMG, K33 = _r(9, 8), _r(3, 3)                           # filters
OUT_SAME = np.empty((2, 4, 7, 6), np.float32)           # conv2d(X2, _r(4, 4, 3, 3), padding='same') output


def _nan_at(a, *pos, value=np.nan):
    b = a.copy()
    b[pos] = value
    return b


X2_NAN = _nan_at(X2, 0, 1, 3, 2)
X2_INF = _nan_at(_nan_at(X2, 1, 0, 0, 0, value=np.inf), 0, 3, 6, 5, value=-np.inf)
P2_NAN = _nan_at(P2, 1, 2, 4, 3)
P2_INF = _nan_at(P2, 0, 0, 0, 0, value=np.inf)
IMG_NAN = _nan_at(IMG.astype(np.float64), 4, 4)


@dataclass
class Case:
    id: str
    fn: Callable
    args: tuple
    kwargs: dict = field(default_factory=dict)
    expect: Any = ValueError          # an exception type, OK or NONFINITE
    arg: Optional[str] = None         # the argument the message must name
    check: Optional[Callable] = None  # OK/NONFINITE rows: the expected result


def bad(id, fn, *args, exc=ValueError, arg, **kwargs):
    return Case(id, fn, args, kwargs, exc, arg)


def ok(id, fn, *args, check, **kwargs):
    return Case(id, fn, args, kwargs, OK, None, check)


def nonfinite(id, fn, *args, check, **kwargs):
    return Case(id, fn, args, kwargs, NONFINITE, None, check)


def _fortran(a):
    return np.asfortranarray(a)


def _readonly(a):
    b = a.copy()
    b.flags.writeable = False
    return b


def _strided(a):
    """A non-contiguous view with the values of ``a`` (every other element of a twice-as-wide array)."""
    wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    wide[..., ::2] = a
    return wide[..., ::2]


def _huge_view(shape, dtype=np.float32):
    """An array of ``shape`` that owns one element (zero strides): validation must not copy it."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape=shape, strides=(0,) * len(shape))


TABLE = [
    # ------------------------------------------------------------------ convolution: shapes and channels
    bad("conv1d input 4-D", fc.conv1d, X2, W1, arg="input"),
    bad("conv1d weight 4-D", fc.conv1d, X1, W2, arg="weight"),
    bad("conv2d input 3-D", fc.conv2d, X1, W2, arg="input"),
    bad("conv2d input 5-D", fc.conv2d, X3, W2, arg="input"),
    bad("conv2d weight 3-D", fc.conv2d, X2, W1, arg="weight"),
    bad("conv3d input 4-D", fc.conv3d, X2, W3, arg="input"),
    bad("conv2d channel mismatch", fc.conv2d, X2, _r(6, 3, 3, 2), groups=2, arg="weight"),
    bad("conv2d groups do not divide C_in", fc.conv2d, X2, _r(6, 1, 3, 2), groups=3, arg="groups"),
    bad("conv2d groups do not divide C_out", fc.conv2d, X2, _r(5, 2, 3, 2), groups=2, arg="groups"),
    bad("conv2d groups zero", fc.conv2d, X2, W2, groups=0, arg="groups"),
    bad("conv2d groups negative", fc.conv2d, X2, W2, groups=-2, arg="groups"),
    bad("conv2d groups float", fc.conv2d, X2, W2, groups=2.0, exc=TypeError, arg="groups"),
    bad("conv2d groups huge", fc.conv2d, X2, W2, groups=2 ** 33, arg="groups"),
    # ------------------------------------------------------------------ stride / dilation / padding
    bad("conv2d stride zero", fc.conv2d, X2, W2, groups=2, stride=0, arg="stride"),
    bad("conv2d stride negative", fc.conv2d, X2, W2, groups=2, stride=(1, -1), arg="stride"),
    bad("conv2d stride wrong length", fc.conv2d, X2, W2, groups=2, stride=(1, 1, 1), arg="stride"),
    bad("conv2d stride float", fc.conv2d, X2, W2, groups=2, stride=1.5, exc=TypeError, arg="stride"),
    bad("conv2d stride string", fc.conv2d, X2, W2, groups=2, stride="2", exc=TypeError, arg="stride"),
    bad("conv2d stride None", fc.conv2d, X2, W2, groups=2, stride=None, exc=TypeError, arg="stride"),

    bad("conv2d dilation zero", fc.conv2d, X2, W2, groups=2, dilation=0, arg="dilation"),
    bad("conv3d dilation negative", fc.conv3d, X3, W3, dilation=(1, -1, 1), arg="dilation"),
    bad("conv2d dilation beyond int64", fc.conv2d, X2, W2, groups=2, dilation=2 ** 70, arg="dilation"),
    bad("conv2d padding negative", fc.conv2d, X2, W2, groups=2, padding=-1, arg="padding"),
    bad("conv2d padding negative side", fc.conv2d, X2, W2, groups=2, padding=((0, -1), (1, 1)), arg="padding"),
    bad("conv2d padding pairs wrong count", fc.conv2d, X2, W2, groups=2, padding=((1, 1),), arg="padding"),
    bad("conv2d padding wrong length", fc.conv2d, X2, W2, groups=2, padding=(1, 2, 3), arg="padding"),
    bad("conv2d padding unknown string", fc.conv2d, X2, W2, groups=2, padding="full", arg="padding"),
    bad("conv2d padding float", fc.conv2d, X2, W2, groups=2, padding=0.5, exc=TypeError, arg="padding"),
    bad("conv2d padding beyond int64", fc.conv2d, X2, W2, groups=2, padding=2 ** 70, arg="padding"),
    bad("conv1d stride beyond int64", fc.conv1d, X1, W1, groups=2, stride=2 ** 70, arg="stride"),
    bad("conv2d padding at 2**62", fc.conv2d, X2, W2, groups=2, padding=(2 ** 62, 0), stride=2 ** 61,
        arg="padding"),
    bad("max_pool2d stride beyond int64", fc.max_pool2d, P2, 2, stride=2 ** 64, arg="stride"),
    bad("avg_pool2d divisor_override beyond int64", fc.avg_pool2d, P2, 2, divisor_override=2 ** 64,
        arg="divisor_override"),
    bad("kmax_pool k beyond int64", fc.kmax_pool, P2, 2 ** 64, arg="k"),
    bad("conv2d reflect padding too large", fc.conv2d, X2, W2, groups=2, padding=7, padding_mode="reflect",
        arg="padding"),
    bad("conv2d circular padding too large", fc.conv2d, X2, W2, groups=2, padding=(8, 1),
        padding_mode="circular", arg="padding"),
    bad("conv2d kernel larger than padded input", fc.conv2d, X2, _r(6, 2, 8, 2), groups=2, arg="weight"),
    bad("conv1d dilated kernel larger than input", fc.conv1d, X1, W1, groups=2, dilation=5, arg="weight"),
    bad("conv_output_shape overflows", fc.conv_output_shape, (1, 1, HUGE, HUGE), (1, 1, 1, 1), arg="output"),
    # ------------------------------------------------------------------ convolution: empty, dtypes, objects
    bad("conv_transpose2d no input channels", fc.conv_transpose2d, np.ones((2, 0, 7, 6), np.float32),
        np.ones((0, 2, 3, 3), np.float32), arg="input"),
    bad("conv2d zero-size spatial", fc.conv2d, np.ones((2, 4, 0, 6), np.float32), W2, groups=2, arg="input"),
    bad("conv2d empty weight", fc.conv2d, X2, np.ones((0, 2, 3, 2), np.float32), groups=2, arg="weight"),
    bad("conv2d complex input", fc.conv2d, X2.astype(np.complex64), W2, groups=2, exc=TypeError, arg="input"),
    bad("conv2d complex weight", fc.conv2d, X2, W2.astype(complex), groups=2, exc=TypeError, arg="weight"),
    bad("conv2d object input", fc.conv2d, X2.astype(object), W2, groups=2, exc=TypeError, arg="input"),
    bad("conv2d bool input", fc.conv2d, X2 > 0, W2, groups=2, exc=TypeError, arg="input"),
    bad("conv2d string input", fc.conv2d, "image", W2, groups=2, exc=TypeError, arg="input"),
    bad("conv2d unicode array input", fc.conv2d, np.full((2, 4, 7, 6), "a"), W2, groups=2, exc=TypeError,
        arg="input"),
    bad("conv2d datetime weight", fc.conv2d, X2, np.zeros((6, 2, 3, 2), "datetime64[s]"), groups=2,
        exc=TypeError, arg="weight"),
    bad("conv2d longdouble input", fc.conv2d, X2.astype(np.longdouble), W2, groups=2, exc=TypeError,
        arg="input"),
    bad("conv2d ragged list input", fc.conv2d, [[[[1.0, 2.0]], [[1.0]]]], W2, groups=2, exc=TypeError,
        arg="input"),
    bad("conv2d None input", fc.conv2d, None, W2, groups=2, exc=TypeError, arg="input"),
    bad("conv2d bias wrong length", fc.conv2d, X2, W2, _r(5), groups=2, arg="bias"),
    bad("conv2d bias 2-D", fc.conv2d, X2, W2, _r(6, 1), groups=2, arg="bias"),
    bad("conv2d bias complex", fc.conv2d, X2, W2, np.ones(6, complex), groups=2, exc=TypeError, arg="bias"),
    bad("conv2d unknown algorithm", fc.conv2d, X2, W2, groups=2, algorithm="strassen", arg="algorithm"),
    bad("conv2d algorithm not a string", fc.conv2d, X2, W2, groups=2, algorithm=1, exc=TypeError,
        arg="algorithm"),
    bad("conv2d unknown padding_mode", fc.conv2d, X2, W2, groups=2, padding_mode="mirror", arg="padding_mode"),
    bad("conv2d padding_mode not a string", fc.conv2d, X2, W2, groups=2, padding_mode=0, exc=TypeError,
        arg="padding_mode"),
    bad("conv2d flip not a bool", fc.conv2d, X2, W2, groups=2, flip="yes", exc=TypeError, arg="flip"),
    # ------------------------------------------------------------------ convolution: out
    bad("conv2d out wrong shape", fc.conv2d, X2, W2, groups=2, out=np.empty((2, 6, 5, 4), np.float32),
        arg="out"),
    bad("conv2d out wrong dtype", fc.conv2d, X2, W2, groups=2, out=np.empty((2, 6, 5, 5), np.float64),
        exc=TypeError, arg="out"),
    bad("conv2d out Fortran-order", fc.conv2d, X2, W2, groups=2,
        out=np.empty((2, 6, 5, 5), np.float32, order="F"), arg="out"),
    bad("conv2d out non-contiguous", fc.conv2d, X2, W2, groups=2,
        out=np.empty((2, 6, 5, 10), np.float32)[..., ::2], arg="out"),
    bad("conv2d out read-only", fc.conv2d, X2, W2, groups=2, out=_readonly(np.empty((2, 6, 5, 5), np.float32)),
        arg="out"),
    bad("conv2d out is the input", fc.conv2d, OUT_SAME, _r(4, 4, 3, 3), padding="same", out=OUT_SAME,
        arg="out"),
    bad("conv2d out overlaps the weight", fc.conv2d, np.ones((1, 1, 3, 3), np.float32),
        np.ones((1, 1, 3, 3), np.float32)[:, :, :1, :1], out=np.ones((1, 1, 3, 3), np.float32)[:, :, :1, :1],
        arg="out"),
    bad("conv2d out a list", fc.conv2d, X2, W2, groups=2, out=[0.0], exc=TypeError, arg="out"),
    bad("conv_transpose2d out overlaps input", fc.conv_transpose2d, OUT_SAME, _r(4, 4, 3, 3), padding=1,
        out=OUT_SAME, arg="out"),
    # ------------------------------------------------------------------ transposed convolution
    bad("conv_transpose2d output_padding too large", fc.conv_transpose2d, X2, WT2, stride=2, output_padding=2,
        arg="output_padding"),
    bad("conv_transpose2d output_padding negative", fc.conv_transpose2d, X2, WT2, output_padding=-1,
        arg="output_padding"),
    bad("conv_transpose2d weight channels", fc.conv_transpose2d, X2, _r(3, 3, 3, 2), arg="weight"),
    bad("conv_transpose2d weight 3-D", fc.conv_transpose2d, X2, _r(4, 3, 3), arg="weight"),
    bad("conv_transpose2d padding empties output", fc.conv_transpose2d, X2, WT2, padding=6, arg="padding"),
    bad("conv_transpose2d padding 'same'", fc.conv_transpose2d, X2, WT2, padding="same", arg="padding"),
    bad("conv_transpose2d groups", fc.conv_transpose2d, X2, WT2, groups=3, arg="groups"),
    bad("conv_transpose2d bias", fc.conv_transpose2d, X2, WT2, _r(4), arg="bias"),
    bad("conv_transpose1d stride zero", fc.conv_transpose1d, X1, _r(4, 2, 3), stride=0, arg="stride"),
    bad("conv_transpose2d output overflows", fc.conv_transpose2d, X2, WT2, stride=2 ** 31, arg="output"),
    bad("conv_transpose3d unknown algorithm", fc.conv_transpose3d, X3, _r(2, 2, 1, 1, 1), algorithm="x",
        arg="algorithm"),
    # ------------------------------------------------------------------ convolution gradients
    bad("conv2d_input input_shape wrong length", G.conv2d_input, (2, 4, 7), W2, GY2, groups=2,
        arg="input_shape"),
    bad("conv2d_input input_shape array", G.conv2d_input, np.array(X2.shape), W2, GY2, groups=2,
        exc=TypeError, arg="input_shape"),
    bad("conv2d_input input_shape zero", G.conv2d_input, (2, 4, 0, 6), W2, GY2, groups=2, arg="input_shape"),
    bad("conv2d_input input_shape float", G.conv2d_input, (2, 4, 7.0, 6), W2, GY2, groups=2, exc=TypeError,
        arg="input_shape"),
    bad("conv2d_input input_shape overflows", G.conv2d_input, (1, 4, HUGE, HUGE), W2, np.ones((1, 6, 1, 1)),
        stride=HUGE, groups=2, arg="input_shape"),
    bad("conv2d_input grad_output shape", G.conv2d_input, X2.shape, W2, GY2[:, :, :4], groups=2,
        arg="grad_output"),
    bad("conv2d_input grad_output complex", G.conv2d_input, X2.shape, W2, GY2.astype(complex), groups=2,
        exc=TypeError, arg="grad_output"),
    bad("conv2d_weight weight_shape negative", G.conv2d_weight, X2, (6, 2, -3, 2), GY2, groups=2,
        arg="weight_shape"),
    bad("conv2d_weight weight_shape overflows", G.conv2d_weight, X2, (HUGE, 2, HUGE, 1), GY2, groups=2,
        arg="weight_shape"),
    bad("conv2d_weight input complex", G.conv2d_weight, X2.astype(complex), W2.shape, GY2, groups=2,
        exc=TypeError, arg="input"),
    bad("conv3d_weight unknown algorithm", G.conv3d_weight, X3, W3.shape, np.ones((1, 3, 3, 3, 3)),
        algorithm="nope", arg="algorithm"),
    # ------------------------------------------------------------------ pooling
    bad("max_pool2d input 3-D", fc.max_pool2d, X1, 2, arg="input"),
    bad("max_pool2d kernel_size zero", fc.max_pool2d, P2, 0, arg="kernel_size"),
    bad("max_pool2d kernel_size float", fc.max_pool2d, P2, 2.5, exc=TypeError, arg="kernel_size"),
    bad("max_pool2d kernel larger than input", fc.max_pool2d, P2, (7, 2), arg="kernel_size"),
    bad("max_pool2d stride zero", fc.max_pool2d, P2, 2, stride=0, arg="stride"),
    bad("max_pool2d padding more than half the kernel", fc.max_pool2d, P2, 2, padding=2, arg="padding"),
    bad("max_pool2d padding negative", fc.max_pool2d, P2, 2, padding=-1, arg="padding"),
    bad("max_pool3d dilation zero", fc.max_pool3d, X3, 2, dilation=0, arg="dilation"),
    bad("max_pool2d return_indices not bool", fc.max_pool2d, P2, 2, return_indices="yes", exc=TypeError,
        arg="return_indices"),
    bad("max_pool2d ceil_mode string", fc.max_pool2d, P2, 2, ceil_mode="yes", exc=TypeError, arg="ceil_mode"),
    bad("max_pool1d complex", fc.max_pool1d, X1.astype(complex), 2, exc=TypeError, arg="input"),
    bad("max_pool2d empty", fc.max_pool2d, np.ones((2, 0, 4, 4)), 2, arg="input"),
    bad("avg_pool2d divisor_override zero", fc.avg_pool2d, P2, 2, divisor_override=0, arg="divisor_override"),
    bad("avg_pool2d divisor_override float", fc.avg_pool2d, P2, 2, divisor_override=1.5, exc=TypeError,
        arg="divisor_override"),
    bad("avg_pool2d count_include_pad string", fc.avg_pool2d, P2, 2, count_include_pad="no", exc=TypeError,
        arg="count_include_pad"),
    bad("avg_pool1d object input", fc.avg_pool1d, X1.astype(object), 2, exc=TypeError, arg="input"),
    bad("lp_pool2d norm_type zero", fc.lp_pool2d, P2, 0, 2, arg="norm_type"),
    bad("lp_pool2d norm_type inf", fc.lp_pool2d, P2, np.inf, 2, arg="norm_type"),
    bad("lp_pool1d norm_type string", fc.lp_pool1d, X1, "2", 2, exc=TypeError, arg="norm_type"),
    bad("adaptive_avg_pool2d output_size zero", fc.adaptive_avg_pool2d, P2, 0, arg="output_size"),
    bad("adaptive_avg_pool2d output_size length", fc.adaptive_avg_pool2d, P2, (1, 2, 3), arg="output_size"),
    bad("adaptive_max_pool2d output_size overflows", fc.adaptive_max_pool2d, P2, (HUGE, HUGE),
        arg="output_size"),
    bad("adaptive_max_pool3d bool input", fc.adaptive_max_pool3d, X3 > 0, 2, exc=TypeError, arg="input"),
    bad("global_max_pool 2-D input", fc.global_max_pool, IMG, arg="input"),
    bad("global_avg_pool string input", fc.global_avg_pool, "x", exc=TypeError, arg="input"),
    bad("kmax_pool k zero", fc.kmax_pool, P2, 0, arg="k"),
    bad("kmax_pool k larger than dim", fc.kmax_pool, P2, 6, arg="k"),
    bad("kmax_pool dim out of range", fc.kmax_pool, P2, 1, dim=4, arg="dim"),
    bad("kmax_pool sorted not bool", fc.kmax_pool, P2, 1, sorted=None, exc=TypeError, arg="sorted"),
    # ------------------------------------------------------------------ unpooling and pooling gradients
    bad("max_unpool2d index too large", fc.max_unpool2d, MP_V, np.full(MP_I.shape, 30), 2, arg="indices"),
    bad("max_unpool2d index negative", fc.max_unpool2d, MP_V, np.full(MP_I.shape, -1), 2, arg="indices"),
    bad("max_unpool2d index beyond int64", fc.max_unpool2d, MP_V, np.full(MP_I.shape, 2 ** 63, np.uint64), 2,
        arg="indices"),
    bad("max_unpool2d float indices", fc.max_unpool2d, MP_V, MP_I.astype(np.float64), 2, exc=TypeError,
        arg="indices"),
    bad("max_unpool2d indices shape", fc.max_unpool2d, MP_V, MP_I[:, :, :2], 2, arg="indices"),
    bad("max_unpool2d output_size out of range", fc.max_unpool2d, MP_V, MP_I, 2, output_size=(9, 9),
        arg="output_size"),
    bad("max_unpool2d output_size overflows", fc.max_unpool2d, MP_V, MP_I, HUGE, arg="output"),
    bad("max_unpool_backward index too large", G.max_unpool_backward, P2, np.full(MP_I.shape, 30),
        arg="indices"),
    bad("max_pool_backward index too large", G.max_pool_backward, MP_V, np.full(MP_I.shape, 30), P2.shape,
        arg="indices"),
    bad("max_pool_backward indices shape", G.max_pool_backward, MP_V, MP_I[:1], P2.shape, arg="indices"),
    bad("max_pool_backward input_shape overflows", G.max_pool_backward, MP_V, MP_I, (2, 3, HUGE, HUGE),
        arg="input_shape"),
    bad("avg_pool2d_backward grad_output shape", G.avg_pool2d_backward, MP_V[:, :, :2], P2.shape, 2,
        arg="grad_output"),
    bad("avg_pool2d_backward input_shape overflows", G.avg_pool2d_backward, np.ones((1, 1, 1, 1)),
        (1, 1, HUGE, HUGE), HUGE, arg="input_shape"),
    bad("adaptive_avg_pool2d_backward input_shape overflows", G.adaptive_avg_pool2d_backward,
        np.ones((1, 1, 1, 1)), (1, 1, HUGE, HUGE), arg="input_shape"),
    bad("global_avg_pool_backward grad_output shape", G.global_avg_pool_backward, np.ones((2, 4)), P2.shape,
        arg="grad_output"),
    bad("global_avg_pool_backward input_shape overflows", G.global_avg_pool_backward, np.ones((1, 1)),
        (1, 1, HUGE, HUGE), arg="input_shape"),
    bad("kmax_pool_backward index too large", G.kmax_pool_backward, np.ones((2, 3)), np.full((2, 3), 7),
        (2, 5), arg="indices"),
    bad("kmax_pool_backward input_shape overflows", G.kmax_pool_backward, np.ones((1, 1)),
        np.zeros((1, 1), np.int64), (1, HUGE * HUGE), arg="input_shape"),
    bad("lp_pool2d_backward output shape", G.lp_pool2d_backward, MP_V, P2, MP_V[:1], 2, 2, arg="output"),
    # ------------------------------------------------------------------ filters
    bad("correlate unknown mode", F.correlate, IMG, K33, mode="bogus", arg="mode"),
    bad("correlate mode per axis count", F.correlate, IMG, K33, mode=("reflect",), arg="mode"),
    bad("correlate weights ndim", F.correlate, IMG, K33[0], arg="weights"),
    bad("correlate empty weights", F.correlate, IMG, np.ones((0, 3)), arg="weights"),
    bad("correlate origin too large", F.correlate, IMG, K33, origin=2, arg="origin"),
    bad("convolve origin float", F.convolve, IMG, K33, origin=0.5, exc=TypeError, arg="origin"),
    bad("correlate complex image", F.correlate, IMG.astype(complex), K33, exc=TypeError, arg="image"),
    bad("correlate scalar image", F.correlate, np.float64(1.0), K33, arg="image"),
    bad("correlate unknown method", F.correlate, IMG, K33, method="winograd", arg="method"),
    bad("correlate out wrong shape", F.correlate, IMG, K33, out=np.empty((8, 8)), arg="out"),
    bad("correlate out read-only", F.correlate, IMG, K33, out=_readonly(np.empty((9, 8))), arg="out"),
    bad("correlate cval string", F.correlate, IMG, K33, mode="constant", cval="0", exc=TypeError, arg="cval"),
    bad("gaussian sigma negative", F.gaussian, IMG, -1.0, arg="sigma"),
    bad("gaussian channel_axis out of range", F.gaussian, IMG, 1.0, channel_axis=2, arg="channel_axis"),
    bad("gaussian truncate nan", F.gaussian, IMG, 1.0, truncate=np.nan, arg="truncate"),
    bad("sobel axis out of range", F.sobel, IMG, axis=2, arg="axis"),
    bad("sobel mask shape", F.sobel, IMG, np.ones((3, 3), bool), arg="mask"),
    bad("unsharp_mask radius negative", F.unsharp_mask, IMG, radius=-1.0, arg="radius"),
    bad("apply_kernel unknown name", F.apply_kernel, IMG, "no-such-kernel", arg="kernel"),
    # ------------------------------------------------------------------ explicit matrices, settings
    bad("toeplitz_matrix input_shape channels", fc.toeplitz_matrix, W2, (2, 6, 7, 6), groups=2,
        arg="weight"),
    bad("toeplitz_matrix padding_mode", fc.toeplitz_matrix, W2, X2.shape, groups=2, padding_mode="wrap",
        arg="padding_mode"),
    bad("toeplitz_matrix complex weight", fc.toeplitz_matrix, W2.astype(complex), X2.shape, groups=2,
        exc=TypeError, arg="weight"),
    bad("conv_as_dense input_shape not covered", fc.conv_as_dense, W2, (2, 4, 7, 6), groups=2,
        arg="input_shape"),
    bad("conv_as_dense groups", fc.conv_as_dense, W2, groups=4, arg="groups"),
    bad("dense_as_conv in_features", fc.dense_as_conv, np.ones((3, 10)), (2, 3, 3), arg="input_shape"),
    bad("dense_as_conv weight 3-D", fc.dense_as_conv, np.ones((3, 2, 5)), (2, 5), arg="weight"),
    bad("set_workspace_limit zero", fc.set_workspace_limit, 0, arg="nbytes"),
    bad("set_workspace_limit float", fc.set_workspace_limit, 1.5, exc=TypeError, arg="nbytes"),
    bad("set_num_threads negative", fc.set_num_threads, -3, arg="n"),
    bad("num_threads string", lambda n: fc.num_threads(n).__enter__(), "2", exc=TypeError, arg="n"),
    # ------------------------------------------------------------------ layers and the tape
    bad("Conv2d in_channels zero", nn.Conv2d, 0, 4, 3, arg="in_channels"),
    bad("Conv2d groups do not divide", nn.Conv2d, 4, 6, 3, groups=4, arg="groups"),
    bad("Conv2d kernel_size zero", nn.Conv2d, 4, 6, 0, arg="kernel_size"),
    bad("Conv2d forward channel mismatch", lambda x: nn.Conv2d(3, 6, 3)(x), X2, arg="weight"),
    bad("Tensor complex data", fc.Tensor, np.ones(3, complex), exc=TypeError, arg="data"),

    # ------------------------------------------------------------------ valid but unusual layouts: must just work
    ok("conv2d Fortran-order input", fc.conv2d, _fortran(X2), W2, groups=2,
       check=lambda: fc.conv2d(X2, W2, groups=2)),
    ok("conv2d non-contiguous input and weight", fc.conv2d, _strided(X2), _strided(W2), groups=2,
       check=lambda: fc.conv2d(X2, W2, groups=2)),
    ok("conv2d read-only input", fc.conv2d, _readonly(X2), _readonly(W2), _readonly(B2), groups=2,
       check=lambda: fc.conv2d(X2, W2, B2, groups=2)),
    ok("conv2d float16 and int inputs", fc.conv2d, X2.astype(np.float16), np.ones((6, 2, 3, 2), np.int32),
       groups=2, check=lambda: fc.conv2d(X2.astype(np.float16).astype(np.float64), np.ones((6, 2, 3, 2)),
                                         groups=2)),
    ok("conv2d zero-stride (broadcast) input", fc.conv2d, np.broadcast_to(X2[:1], X2.shape), W2, groups=2,
       check=lambda: fc.conv2d(np.ascontiguousarray(np.broadcast_to(X2[:1], X2.shape)), W2, groups=2)),
    ok("conv2d into a reused out", fc.conv2d, X2, W2, groups=2, out=np.full((2, 6, 5, 5), np.nan, np.float32),
       check=lambda: fc.conv2d(X2, W2, groups=2)),
    ok("conv_transpose2d Fortran weight", fc.conv_transpose2d, X2, _fortran(WT2), stride=2,
       check=lambda: fc.conv_transpose2d(X2, WT2, stride=2)),
    ok("max_pool2d non-contiguous", fc.max_pool2d, _strided(P2), 2, return_indices=True,
       check=lambda: fc.max_pool2d(P2, 2, return_indices=True)),
    ok("avg_pool2d Fortran-order", fc.avg_pool2d, _fortran(P2), 3, stride=2, padding=1,
       check=lambda: fc.avg_pool2d(P2, 3, stride=2, padding=1)),
    ok("max_unpool2d uint32 indices", fc.max_unpool2d, MP_V, MP_I.astype(np.uint32), 2, output_size=(6, 5),
       check=lambda: fc.max_unpool2d(MP_V, MP_I, 2, output_size=(6, 5))),
    ok("kmax_pool read-only non-contiguous", fc.kmax_pool, _readonly(_strided(P2)), 2, dim=2,
       check=lambda: fc.kmax_pool(P2, 2, dim=2)),
    ok("correlate Fortran-order image", F.correlate, _fortran(IMG), K33, check=lambda: F.correlate(IMG, K33)),
    ok("conv_output_shape beyond int32 is exact", fc.conv_output_shape, (2 ** 16, 1, 2 ** 16, 2 ** 16),
       (1, 1, 1, 1), check=lambda: (2 ** 16, 1, 2 ** 16, 2 ** 16)),

    # ------------------------------------------------------------------ NaN / Inf propagate like the reference
    nonfinite("conv2d NaN input direct", fc.conv2d, X2_NAN, W2, groups=2, algorithm="direct",
              check=lambda: ref.conv_nd(X2_NAN, W2, groups=2)),
    nonfinite("conv2d NaN input toeplitz", fc.conv2d, X2_NAN, W2, groups=2, algorithm="toeplitz",
              check=lambda: ref.conv_nd(X2_NAN, W2, groups=2)),
    nonfinite("conv2d Inf input direct padded", fc.conv2d, X2_INF, W2, groups=2, padding=1, algorithm="direct",
              check=lambda: ref.conv_nd(X2_INF, W2, groups=2, padding=1)),
    nonfinite("conv2d Inf input toeplitz padded", fc.conv2d, X2_INF, W2, groups=2, padding=1,
              algorithm="toeplitz", check=lambda: ref.conv_nd(X2_INF, W2, groups=2, padding=1)),
    nonfinite("conv_transpose2d NaN input", fc.conv_transpose2d, X2_NAN, WT2, stride=2,
              check=lambda: ref.conv_transpose_nd(X2_NAN, WT2, stride=2)),
    nonfinite("conv2d_weight NaN input", G.conv2d_weight, X2_NAN, W2.shape, GY2, groups=2,
              check=lambda: ref.conv_grad_weight_nd(X2_NAN, GY2, W2.shape, groups=2)),
    nonfinite("max_pool2d NaN", fc.max_pool2d, P2_NAN, 2, check=lambda: ref.max_pool_nd(P2_NAN, 2)[0]),
    nonfinite("max_pool2d Inf", fc.max_pool2d, P2_INF, 3, padding=1, stride=2,
              check=lambda: ref.max_pool_nd(P2_INF, 3, 2, 1)[0]),
    nonfinite("avg_pool2d NaN", fc.avg_pool2d, P2_NAN, 2, stride=1, check=lambda: ref.avg_pool_nd(P2_NAN, 2, 1)),
    nonfinite("adaptive_max_pool2d NaN", fc.adaptive_max_pool2d, P2_NAN, (4, 3),
              check=lambda: ref.adaptive_pool_nd(P2_NAN, (4, 3), "max")[0]),
    nonfinite("global_avg_pool Inf", fc.global_avg_pool, P2_INF, check=lambda: P2_INF.mean(axis=(2, 3))),
    nonfinite("kmax_pool NaN", fc.kmax_pool, P2_NAN, 2, check=lambda: ref.kmax_pool_ref(P2_NAN, 2)),
    nonfinite("correlate NaN direct", F.correlate, IMG_NAN, K33, method="direct",
              check=lambda: ref.ndimage_correlate(IMG_NAN, K33)),
]


def _snapshot(values):
    """(value, copy, dtype, shape, strides, writeable) of every ndarray among ``values`` (nested one level)."""
    out = []
    for v in values:
        for a in (v if isinstance(v, (tuple, list)) else (v,)):
            if isinstance(a, np.ndarray):
                out.append((a, np.array(a, copy=True), a.dtype, a.shape, a.strides, a.flags.writeable))
    return out


def _unchanged(snap):
    for a, copy, dtype, shape, strides, writeable in snap:
        assert (a.dtype, a.shape, a.strides, a.flags.writeable) == (dtype, shape, strides, writeable)
        if a.dtype.kind in "fc":
            np.testing.assert_array_equal(a, copy)      # treats NaN == NaN
        else:
            assert a.tolist() == copy.tolist()


def _as_tuple(r):
    return tuple(r) if isinstance(r, (tuple, list)) else (r,)


def test_catalogue_size():
    bads = [c for c in TABLE if c.expect not in (OK, NONFINITE)]
    assert len(bads) >= 60
    assert len({c.id for c in TABLE}) == len(TABLE)


@pytest.mark.parametrize("case", TABLE, ids=[c.id for c in TABLE])
def test_bad_input(case):
    snap = _snapshot(list(case.args) + [v for k, v in case.kwargs.items() if k != "out"])
    if case.expect is OK or case.expect is NONFINITE:
        with np.errstate(invalid="ignore", over="ignore"):
            got = _as_tuple(case.fn(*case.args, **case.kwargs))
            want = _as_tuple(case.check())
        assert len(got) == len(want)
        if case.expect is NONFINITE:                                    # the row really tests non-finite data
            assert not np.isfinite(np.asarray(want[0], np.float64)).all()
        for g, w in zip(got, want):
            g, w = np.asarray(g), np.asarray(w)
            assert g.shape == w.shape
            if g.dtype.kind in "iu":
                np.testing.assert_array_equal(g, w)
            elif case.expect is NONFINITE:
                np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
                np.testing.assert_array_equal(np.isposinf(g), np.isposinf(w))
                np.testing.assert_array_equal(np.isneginf(g), np.isneginf(w))
                fin = np.isfinite(w)
                np.testing.assert_allclose(g[fin], w[fin], rtol=1e-4, atol=1e-4)
            else:
                np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
    else:
        with pytest.raises(case.expect) as info:
            case.fn(*case.args, **case.kwargs)
        assert type(info.value) in (ValueError, TypeError), "a subclass leaked: %r" % info.value
        msg = str(info.value)
        assert re.search(r"\b%s\b" % re.escape(case.arg), msg), "message does not name %r: %s" % (case.arg, msg)
    _unchanged(snap)


def test_huge_zero_stride_view_is_refused_before_it_is_copied():
    """A view of one int8 element posing as 2**62 + 2**31 elements: the output size is refused arithmetically
    before the input is converted to float64 (which would need 2**65 bytes)."""
    big = _huge_view((1, 1, 2 ** 31, 2 ** 31 + 1), np.int8)
    with pytest.raises(ValueError, match="'output'"):
        fc.conv2d(big, np.ones((1, 1, 1, 1), np.float32))
    assert big.base is not None and big.strides == (0, 0, 0, 0)
