"""One prepared call per convolution.

:func:`prepare_conv` (and its two siblings for transposed convolutions and for the gradient functions that get
a shape instead of an array) validates and normalises a convolution call once and returns a
:class:`PreparedConv`: the arrays as the kernels need them, the user's geometry (``geom``) and the kernel
geometry (``geom.kernel_geometry``), and the algorithm resolved per op on first use.  Every convolution entry
point builds one -- ``conv*d``, ``conv_transpose*d``, the gradients in :mod:`fastconv.grad`, the explicit
Toeplitz matrix and the autograd tape, which keeps the record of the forward pass and runs its backward from it,
so backward never validates, pads or flips again and cannot disagree with forward::

    conv2d(x, w, b, ...)      -> prepare_conv -> PreparedConv p -> p.conv(p.x)          -> y
    tape backward of conv2d   -> the same p   -> p.adjoint(g), p.weight_grad(p.x, g)    -> dx, dw
    conv_transpose2d(x, w, b) -> prepare_conv_transpose -> p.adjoint(p.x) (+ b)         -> y
    grad.conv2d_input(...)    -> prepare_conv_shape     -> p.adjoint(gy)                -> dx

The record describes the forward convolution ``y = conv(x, w)`` of ``geom``; ``b`` is the bias of the user's
operation (added by :meth:`~PreparedConv.conv`, or by :meth:`~PreparedConv.adjoint` for a transposed
convolution).
"""
from typing import NamedTuple, Optional

import numpy as np

from . import _algorithms, _autotune, _kernels, _threads
from . import _validate as V
from ._geometry import PADDING_MODES, ConvGeometry, _exact_key, exact_args_key

__all__ = ["PreparedConv", "prepare_conv", "prepare_conv_transpose", "prepare_conv_shape", "flip_kernel",
           "pad_input", "pad_adjoint", "bias_grad", "WLAYOUT"]

# weight layouts in messages, by number of spatial dims
WLAYOUT = {1: "C_out, C_in/groups, kL", 2: "C_out, C_in/groups, kH, kW", 3: "C_out, C_in/groups, kD, kH, kW"}


class PreparedConv(NamedTuple):
    """A validated, normalised convolution call (immutable; cheap to build).

    ``x`` is the input (N, C, *spatial) of the user's operation, explicitly padded for a non-zero
    ``padding_mode`` (None when only its shape was given); ``w`` the weight (K, C/groups, *kernel), flipped for
    ``flip`` (None when only its shape was given); ``b`` the bias or None; all C-contiguous ``dtype`` arrays,
    never the caller's arrays modified.  ``geom`` is the geometry as the user described it.  ``algorithms``
    holds the :class:`~fastconv._algorithms.Algorithm` resolved for each op (filled by :meth:`algorithm_for`).
    """

    fn: str
    x: Optional[np.ndarray]
    w: Optional[np.ndarray]
    b: Optional[np.ndarray]
    geom: ConvGeometry
    dtype: np.dtype
    flip: bool
    algorithm: str
    transposed: bool
    algorithms: dict

    @property
    def kernel_geometry(self):
        """The zero-padding geometry the kernels run (``geom`` itself unless the input was padded here)."""
        return self.geom.kernel_geometry

    def algorithm_for(self, op, finite=True):
        """The algorithm that runs ``op`` ("forward", "grad_input", "grad_weight"), resolved once.

        ``finite=False``: for ``algorithm="auto"``, the best one that does not spread non-finite values
        (``Algorithm.nonfinite``), which the runs below take when the first choice spreads and its result holds
        an inf or NaN."""
        key = op if finite else op + ":nonfinite"
        alg = self.algorithms.get(key)
        if alg is None:
            if finite:
                alg = _algorithms.resolve(self.algorithm, self.geom.kernel_geometry, self.dtype, op, self.fn)
            elif self.algorithm == "auto" and self.algorithm_for(op).spreads(op):
                alg = _algorithms.choose(self.geom.kernel_geometry, self.dtype, op, finite=False)
            else:
                alg = self.algorithm_for(op)
            self.algorithms[key] = alg
        return alg

    def _run(self, op, result, run):
        """``run(algorithm)`` with the algorithm for ``op``; when ``auto`` chose one that spreads non-finite values
        (FFT, Winograd) and ``result`` then holds an inf or NaN -- an inf or NaN operand, or products that
        overflow -- ``run`` again with the best exact algorithm, whose result is the contract's.  A finite result
        is the contract's already: a spreading algorithm gives a finite result only from finite operands whose
        products do not overflow.  Checking the result costs one pass over it (the weight gradient's is small),
        or nothing where the algorithm reports it (``Algorithm.reports_finite``: its kernel checks the outputs
        it writes, while they are in its threads' caches); checking the operands instead cost a pass over each
        of them before every call."""
        alg = self.algorithm_for(op)
        ok = run(alg)
        if alg.spreads(op) and self.algorithm == "auto":
            if not (ok if op in alg.reports_finite else _algorithms.finite(result)):
                run(self.algorithm_for(op, finite=False))

    def conv(self, a, out=None):
        """The convolution of ``a`` (input space, padded like ``x``) with ``w`` (+ ``b`` unless transposed)."""
        kg = self.geom.kernel_geometry
        if out is None:
            out = np.empty(kg.output_shape, self.dtype)
        if out.size == 0:       # a batch of zero samples, or no input channels: nothing to compute
            return out
        self._run("forward", out, lambda alg: alg.forward(a, self.w, None if self.transposed else self.b, kg, out,
                                                          _threads.get_num_threads()))
        return out

    def adjoint(self, g, out=None):
        """The adjoint of the convolution applied to ``g`` (output space): the input gradient, and the transposed
        convolution (+ ``b`` when transposed).  Padding done here is folded back onto the unpadded input."""
        kg = self.geom.kernel_geometry
        if out is None:
            out = np.empty(kg.input_shape, self.dtype)
        if out.size == 0:       # a batch of zero samples, or no input channels
            return np.empty(self.geom.input_shape, self.dtype) if self.geom.explicit_padding else out
        self._run("grad_input", out, lambda alg: alg.grad_input(g, self.w, kg, out, _threads.get_num_threads()))
        if self.transposed and self.b is not None:
            out += self.b.reshape((1, -1) + (1,) * kg.ndim)
        if self.geom.explicit_padding:
            return pad_adjoint(out, self.geom.padding, self.geom.padding_mode)
        return out

    def weight_grad(self, a, g, with_bias=False):
        """The weight gradient for input ``a`` (input space, padded like ``x``) and output gradient ``g``, in the
        user's orientation (flipped back for ``flip``); with ``with_bias``, ``(weight gradient, bias gradient)``,
        the bias gradient from the same pass over ``g`` where the algorithm fuses it."""
        kg = self.geom.kernel_geometry
        if a.size == 0 or g.size == 0:      # no samples (or no channels): no product reaches the weight
            gw = np.zeros(kg.weight_shape, self.dtype)
            return (gw, bias_grad(g).astype(self.dtype, copy=False)) if with_bias else gw
        gw = np.empty(kg.weight_shape, self.dtype)
        gb = np.empty(kg.out_channels, self.dtype) if with_bias else None

        def run(alg):
            if with_bias and alg.fused_bias:
                alg.grad_weight(a, g, kg, gw, _threads.get_num_threads(), grad_bias=gb)
            else:
                alg.grad_weight(a, g, kg, gw, _threads.get_num_threads())
                if with_bias:
                    gb[...] = bias_grad(g)
        self._run("grad_weight", gw, run)
        gw = flip_kernel(gw) if self.flip else gw
        return (gw, gb) if with_bias else gw

    def output_grad(self, g):
        """A gradient arriving from the tape as the kernels need it (C-contiguous, ``dtype``)."""
        return np.ascontiguousarray(g, dtype=self.dtype)


# ----------------------------------------------------------------------------------------------- arrays
def bias_grad(g):
    """The bias gradient: ``g`` summed over every axis but the channel axis 1."""
    return g.sum(axis=(0,) + tuple(range(2, g.ndim)))


def flip_kernel(w):
    """Reverse every spatial axis of a weight array (true convolution instead of cross-correlation)."""
    nd = w.ndim - 2
    return np.ascontiguousarray(w[(slice(None), slice(None)) + (slice(None, None, -1),) * nd])


def pad_input(a, geom, zero=0):
    """``a`` padded explicitly as ``geom`` describes: its ``padding_mode``, or the constant ``zero`` for zero
    padding (used with an index array, whose padding is -1)."""
    mode = PADDING_MODES[geom.padding_mode]
    width = ((0, 0), (0, 0)) + geom.padding
    return np.pad(a, width, mode=mode) if mode else np.pad(a, width, constant_values=zero)


def pad_adjoint(grad_padded, padding, padding_mode):
    """Adjoint of explicit padding: fold the gradient w.r.t. a padded array back onto the unpadded one.

    ``padding`` holds (lo, hi) pairs for the trailing spatial axes; entries of the border that copy an input
    element (reflect, replicate, circular) send their gradient back to that element.
    """
    g = grad_padded
    nd = len(padding)
    mode = PADDING_MODES[padding_mode]
    for ax, (lo, hi) in enumerate(padding):
        axis = g.ndim - nd + ax
        n = g.shape[axis] - lo - hi
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


def _bias(b, channels, dtype, fn):
    if b is None:
        return None
    if b.shape != (channels,):
        raise ValueError("%s(): argument 'bias' must have shape (%d,), got %s" % (fn, channels, b.shape))
    return V.as_float_array(b, dtype, fn, "bias")


def _record(fn, x, w, b, geom, dtype, flip, algorithm, transposed=False, algorithms=None):
    if x is not None:
        x = V.as_float_array(x, dtype, fn, "input")
        if geom.explicit_padding:
            x = pad_input(x, geom)
    if w is not None:
        w = V.as_float_array(w, dtype, fn, "weight")
        if flip:
            w = flip_kernel(w)
    return PreparedConv(fn, x, w, b, geom, dtype, flip, algorithm, transposed,
                        {} if algorithms is None else algorithms)


# ----------------------------------------------------------------------------------------------- entry points
# Calls seen before: the exact arguments of a call that passed validation -> (its geometry, state stamp, the
# algorithms resolved for it under that stamp).  A call made again with plain C-contiguous float arrays of one
# dtype and the same shapes and arguments skips validation, the geometry and the choice of algorithm (small calls
# are dominated by them); any other call takes the full path.
_SEEN_SIZE = 1024
_seen = {}


def _remember(cache, key, *entry):
    """Store a validated call's ``entry`` and, after it, the current state stamp and the call's algorithm table
    (the last element of ``entry``, filled as the call resolves its ops)."""
    if len(cache) >= _SEEN_SIZE:
        cache.clear()
    cache[key] = entry[:-1] + (_stamp(), entry[-1])


def _recalled(cache, key):
    """The entry of a call seen before (its algorithm table last: a fresh one when the state stamp has changed --
    threads, SIMD level, reduced accuracy, autotune, the registry -- and an unshared one while autotuning, whose
    own cache each call consults: it can be cleared), or None."""
    hit = cache.get(key) if key is not None else None
    if hit is None:
        return None
    if _autotune.enabled():
        return hit[:-2] + ({},)
    if hit[-2] != _stamp():
        _remember(cache, key, *hit[:-2], {})
        hit = cache[key]
    return hit[:-2] + hit[-1:]


def _seen_key(fn, nd, x, w, b, args):
    """The cache key of a convolution call, or None when it cannot take the fast path."""
    if type(x) is not np.ndarray or type(w) is not np.ndarray:
        return None
    dt = x.dtype
    if dt.char not in "fd" or not dt.isnative or w.dtype != dt or not (x.flags.c_contiguous and w.flags.c_contiguous):
        return None
    if b is not None and (type(b) is not np.ndarray or b.dtype != dt or not b.flags.c_contiguous):
        return None
    char = dt.char
    try:
        return (fn, nd, x.shape, w.shape, char, None if b is None else b.shape, exact_args_key(args))
    except TypeError:
        return None


def prepare_conv(fn, nd, input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                 padding_mode="zeros", flip=False, algorithm="auto"):
    """Validate and normalise ``conv{nd}d(input, weight, bias, ...)``; returns its :class:`PreparedConv`.

    A call whose arrays and arguments match one seen before (same shapes, dtype, exact argument values) is a
    cache hit: its geometry is reused without validating again."""
    key = _seen_key(fn, nd, input, weight, bias, (stride, padding, dilation, groups, padding_mode, flip, algorithm))
    return _prepare_seen(key, fn, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, flip,
                         algorithm)


def _prepare_seen(key, fn, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, flip,
                  algorithm):
    hit = _recalled(_seen, key)
    if hit is not None:
        geom, algorithms = hit
        x = pad_input(input, geom) if geom.explicit_padding else input
        return PreparedConv(fn, x, flip_kernel(weight) if flip else weight, bias, geom, input.dtype, flip,
                            algorithm, False, algorithms)
    p = _prepare_conv(fn, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, flip, algorithm)
    if key is not None:
        _remember(_seen, key, p.geom, p.algorithms)
    return p


# Planned calls: the key of a call seen before -> (state stamp, output shape, run) when its algorithm offers a plan
# (``Algorithm.plan``).  A plan holds while the stamp does: the same thread budget, reduced-accuracy setting, SIMD
# level and autotune switch, and no algorithm registered or calibration loaded since (``_algorithms.invalidate``).
_plans = {}


def _stamp():
    return (_algorithms._generation[0], _kernels._state["level"], _threads.get_num_threads(),
            _algorithms.get_reduced_accuracy(), _autotune.enabled())


def conv_forward(fn, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, flip, algorithm,
                 out):
    """The whole ``conv{nd}d(...)`` call: the output (``out`` if given).  A call repeated with the same shapes,
    dtype and arguments runs its plan: no validation, geometry or choice again."""
    key = _seen_key(fn, nd, input, weight, bias, (stride, padding, dilation, groups, padding_mode, flip, algorithm))
    if key is not None and out is None:
        hit = _plans.get(key)
        if hit is not None and hit[0] == _stamp():
            y = np.empty(hit[1], input.dtype)
            hit[2](input, weight, bias, y)
            return y
    p = _prepare_seen(key, fn, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, flip,
                      algorithm)
    if out is not None:
        p.algorithm_for("forward")   # a bad algorithm= is reported before a bad out=
        V.check_out(out, p.kernel_geometry.output_shape, p.dtype, (input, weight, bias, p.x, p.w, p.b), fn)
        return p.conv(p.x, out)
    y = p.conv(p.x)
    if key is not None and not flip and not p.geom.explicit_padding and y.size and not _autotune.enabled():
        alg = p.algorithms.get("forward")
        if alg is not None and alg.plan is not None and not alg.spreads("forward"):
            stamp = _stamp()
            run = alg.plan("forward", p.geom, p.dtype, stamp[2])
            if run is not None:
                if len(_plans) >= _SEEN_SIZE:
                    _plans.clear()
                _plans[key] = (stamp, y.shape, run)
    return y


def _prepare_conv(fn, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, flip, algorithm):
    x = V.batch_array(input, fn, "input", nd)
    w = V.batch_array(weight, fn, "weight", nd, layout=WLAYOUT[nd])
    b = None if bias is None else V.as_array(bias, fn, "bias")
    flip = V.flag(flip, fn, "flip")
    dtype = V.common_float_dtype(x, w, b)
    geom = ConvGeometry.make(x.shape, w.shape, stride, padding, dilation, groups, fn=fn, padding_mode=padding_mode)
    return _record(fn, x, w, _bias(b, geom.out_channels, dtype, fn), geom, dtype, flip, algorithm)


def prepare_conv_transpose(fn, nd, input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                           dilation=1, algorithm="auto"):
    """Validate and normalise ``conv_transpose{nd}d(input, weight, bias, ...)``: the adjoint of the forward
    convolution ``geom`` (``ConvGeometry.for_transpose``), whose output space ``input`` lives in."""
    x = V.batch_array(input, fn, "input", nd)
    w = V.batch_array(weight, fn, "weight", nd, layout=WLAYOUT[nd].replace("C_out, C_in/groups", "C_in, C_out/groups"))
    b = None if bias is None else V.as_array(bias, fn, "bias")
    dtype = V.common_float_dtype(x, w, b)
    geom = ConvGeometry.for_transpose(x.shape, w.shape, stride, padding, output_padding, groups, dilation, fn=fn)
    return _record(fn, x, w, _bias(b, geom.in_channels, dtype, fn), geom, dtype, False, algorithm, True)


# Gradient calls seen before (``grad.conv*d_input`` / ``_weight``): as _seen, for calls whose array and gradient are
# plain C-contiguous float arrays of one dtype -> (geometry, flip as validated, state stamp, algorithms).
_seen_shape = {}


def _seen_shape_key(fn, nd, array, array_arg, shape, grad_output, args):
    if type(array) is not np.ndarray or type(grad_output) is not np.ndarray:
        return None
    dt = array.dtype
    if (dt.char not in "fd" or not dt.isnative or grad_output.dtype != dt
            or not (array.flags.c_contiguous and grad_output.flags.c_contiguous)):
        return None
    try:
        return (fn, nd, array_arg, array.shape, grad_output.shape, dt.char, _exact_key(shape), exact_args_key(args))
    except TypeError:
        return None


def prepare_conv_shape(fn, nd, array, array_arg, shape, shape_arg, stride=1, padding=0, dilation=1, groups=1,
                       padding_mode="zeros", flip=False, algorithm="auto", grad_output=None):
    """Validate and normalise a call that gives one of input / weight as an array and the other as a shape
    (``array_arg`` is ``"weight"`` or ``"input"``), and optionally the gradient of the output.

    Returns ``(PreparedConv, grad_output as a C-contiguous array of the record's dtype, or None)``.  The dtype is
    float64 if the array or ``grad_output`` computes in float64, else float32.  A call with the gradient whose
    arrays and arguments match one seen before is a cache hit, as in :func:`prepare_conv`.
    """
    key = _seen_shape_key(fn, nd, array, array_arg, shape, grad_output,
                          (stride, padding, dilation, groups, padding_mode, flip, algorithm))
    hit = _recalled(_seen_shape, key)
    if hit is not None:
        geom, flip, algorithms = hit
        x, w = (None, array) if array_arg == "weight" else (array, None)
        return _record(fn, x, w, None, geom, array.dtype, flip, algorithm, algorithms=algorithms), grad_output
    p, gy = _prepare_conv_shape(fn, nd, array, array_arg, shape, shape_arg, stride, padding, dilation, groups,
                                padding_mode, flip, algorithm, grad_output)
    if key is not None:
        _remember(_seen_shape, key, p.geom, p.flip, p.algorithms)
    return p, gy


def _prepare_conv_shape(fn, nd, array, array_arg, shape, shape_arg, stride, padding, dilation, groups,
                        padding_mode, flip, algorithm, grad_output):
    shape = V.shape_arg(shape, fn, shape_arg, ndims=(nd + 2,), empty="all")
    weight_given = array_arg == "weight"
    a = V.batch_array(array, fn, array_arg, nd,
                      layout="C_out, C_in/groups, *k" if weight_given else "N, C, *spatial")
    flip = V.flag(flip, fn, "flip")
    in_shape, w_shape = (shape, a.shape) if weight_given else (a.shape, shape)
    # the geometry's size rules, reported under the shape argument's name
    V.check_sizes(shape, fn, shape_arg, (0, 1) if weight_given else ((1,) if in_shape[1] == 0 else ()),
                  "N and C" if weight_given else "C_in/groups, for an input with C = 0")
    geom = ConvGeometry.make(in_shape, w_shape, stride, padding, dilation, groups, fn=fn, padding_mode=padding_mode)
    gy = None
    dtype = V.float_kind(a.dtype)
    if grad_output is not None:
        gy = V.as_array(grad_output, fn, "grad_output")
        if gy.shape != geom.output_shape:
            raise ValueError("%s(): argument 'grad_output' must have shape %s (the convolution's output), got %s"
                             % (fn, geom.output_shape, gy.shape))
        dtype = V.common_float_dtype(a, gy)
        gy = V.as_float_array(gy, dtype, fn, "grad_output")
    x, w = (None, a) if weight_given else (a, None)
    return _record(fn, x, w, None, geom, dtype, flip, algorithm), gy
