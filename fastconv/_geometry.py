"""The one place for shapes.

:class:`ConvGeometry` describes a convolution layer applied to an input of a given shape: kernel, stride, per-side
padding, dilation and groups.  It computes the output shape, the parameter count and the multiply count with the
formulas of the lecture notes, and it is what every algorithm, backward pass, the model summary, the benchmarks
and the autotune cache read.  :class:`PoolGeometry` does the same for pooling windows.

Output size per spatial dimension (zero padding ``lo + hi``; symmetric padding ``p`` gives ``2p``)::

    out = (n + lo + hi - d (f - 1) - 1) // s + 1

Parameters of a layer with ``K`` filters of size ``f1 x f2 x ...`` over ``c`` input channels and ``g`` groups::

    K (f1 f2 ... c / g + 1)        (the ``+ 1`` is the bias)

Multiplications of one forward pass: ``N K (c / g) f1 f2 ... out1 out2 ...``.

Padding modes other than zeros (``reflect``, ``replicate``, ``circular``) pad the input explicitly; the geometry
the kernels then see is :attr:`ConvGeometry.kernel_geometry` (zero padding, the padded input size).  Every kernel
receives its window as one ``Geometry`` struct (``fastconv/_kernels/common.pxd``), filled by name from
:meth:`ConvGeometry.kernel_struct` / :meth:`PoolGeometry.kernel_struct`.
"""
from dataclasses import dataclass
from functools import cached_property, lru_cache
from math import prod

import numpy as np

from . import _validate as V

__all__ = ["ConvGeometry", "PoolGeometry", "conv_output_shape", "conv_transpose_output_shape",
           "transpose_output_padding", "kernel_struct", "PADDING_MODES"]

# padding_mode -> numpy.pad mode of the explicit padding (None: zero padding, done by the kernels)
PADDING_MODES = {"zeros": None, "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _as3(values, fill):
    return (fill,) * (3 - len(values)) + tuple(values)


_MEMO_SIZE = 512
_EXACT = (int, str, float, type(None), bool)


def _exact_key(value):
    """A hashable key that tells apart values Python compares equal (``1``, ``True``, ``np.int64(1)``, ``1.0``): a
    cached geometry is returned only for arguments of exactly the types it was built from.  Raises TypeError for
    values that are not plain ints, strings, floats, None or tuples of them (such calls are not cached)."""
    t = type(value)
    if t is tuple:
        for v in value:
            if type(v) is not int:
                return tuple, tuple(_exact_key(v) for v in value)
        return value                # a tuple of plain ints (shapes, strides): itself
    if t in _EXACT:
        return t, value
    raise TypeError("uncacheable")


_EXACT_SET = frozenset(_EXACT)


def exact_args_key(args):
    """:func:`_exact_key` of a tuple of arguments, faster for the common case of no nested tuples."""
    types = tuple(map(type, args))
    if _EXACT_SET.issuperset(types):
        return types, args
    return _exact_key(args)


def _memoized(make):
    """Cache a geometry constructor on its exact arguments: a call whose geometry was seen before skips the
    validation and normalisation (a geometry is immutable, so every caller can share it).  Arguments that raise
    are not cached, so each such call raises again."""
    cache = {}

    def cached(cls, *args, **kwargs):
        try:
            key = (cls, _exact_key(args), _exact_key(tuple(sorted(kwargs.items()))))
        except TypeError:
            return make(cls, *args, **kwargs)
        geom = cache.get(key)
        if geom is None:
            geom = make(cls, *args, **kwargs)
            if len(cache) >= _MEMO_SIZE:
                cache.clear()
            cache[key] = geom
        return geom
    cached.__name__, cached.__qualname__, cached.__doc__ = make.__name__, make.__qualname__, make.__doc__
    cached.__wrapped__ = make
    return cached


# the fields of the Geometry struct of _kernels/common.pxd, in order
_STRUCT_FIELDS = ("groups", "kd", "kh", "kw", "sd", "sh", "sw", "dd", "dh", "dw", "pd", "ph", "pw", "ld", "lh", "lw")


@lru_cache(maxsize=1024)
def kernel_struct(kernel, stride, dilation, pad_lo, input_dilation=(1, 1, 1), groups=1):
    """The ``Geometry`` struct of ``_kernels/common.pxd`` as the dict a kernel takes (3 spatial dims, D H W;
    shorter tuples get leading singleton dims).  Cached: the same layer gives the same (read-only) dict."""
    return dict(zip(_STRUCT_FIELDS, (groups,) + _as3(kernel, 1) + _as3(stride, 1) + _as3(dilation, 1)
                    + _as3(pad_lo, 0) + _as3(input_dilation, 1)))


def _same_padding(size, kernel, dilation, stride):
    """``padding="same"``: for stride 1 the total padding is ``d(k-1)``, ``total//2`` on the left and the odd
    element on the right (PyTorch's rule, which also covers even kernels); for stride > 1 the output has
    ``ceil(n/s)`` elements and the total padding is ``max((ceil(n/s) - 1) s + d(k-1) + 1 - n, 0)`` split the same
    way (TensorFlow's rule)."""
    pairs = []
    for n, k, d, s in zip(size, kernel, dilation, stride):
        out = -(-n // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
        pairs.append((total // 2, total - total // 2))
    return tuple(pairs)


def _padding_pairs(padding, n, kernel, dilation, stride, size, fn):
    """Per-side padding ``((lo, hi), ...)`` of any form :func:`fastconv._validate.padding_arg` accepts."""
    padding = V.padding_arg(padding, n, fn)
    if padding == "valid":
        return ((0, 0),) * n
    if padding == "same":
        return _same_padding(size, kernel, dilation, stride)
    if padding and isinstance(padding[0], tuple):
        return padding
    return tuple((p, p) for p in padding)


@dataclass(frozen=True)
class ConvGeometry:
    """Shape bookkeeping for one convolution.

    Attributes are normalised tuples: ``input_shape = (N, C, *spatial)``, ``weight_shape = (K, C // groups,
    *kernel)``, and per spatial dimension ``stride``, ``dilation`` and ``padding`` as ``(lo, hi)`` pairs, and
    the ``padding_mode`` of that padding.  Build one with :meth:`make`, which validates and normalises user
    arguments.
    """

    input_shape: tuple
    weight_shape: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int = 1
    padding_mode: str = "zeros"

    # ----------------------------------------------------------------- construction
    @classmethod
    @_memoized
    def make(cls, input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1, fn="conv",
             padding_mode="zeros"):
        """Validate and normalise arguments the way ``torch.nn.functional.conv*d`` accepts them.

        Like PyTorch, ``padding_mode="reflect"`` needs each pad smaller than the input size and ``"circular"``
        at most the input size.
        """
        input_shape = tuple(int(s) for s in input_shape)
        weight_shape = tuple(int(s) for s in weight_shape)
        if len(input_shape) < 3:
            raise ValueError("%s(): argument 'input' must have shape (N, C, *spatial), got %s" % (fn, input_shape))
        n = len(input_shape) - 2
        if len(weight_shape) != n + 2:
            raise ValueError("%s(): argument 'weight' must be %d-D (C_out, C_in/groups, *kernel) for a %d-D input, "
                             "got shape %s" % (fn, n + 2, n + 2, weight_shape))
        groups = V.positive_int(groups, fn, "groups")
        stride = V.int_tuple(stride, n, fn, "stride", minimum=1)
        dilation = V.int_tuple(dilation, n, fn, "dilation", minimum=1)
        V.check_choice(padding_mode, PADDING_MODES, fn, "padding_mode")
        N, C = input_shape[:2]
        K, Cg = weight_shape[:2]
        kernel = weight_shape[2:]
        # as PyTorch: a batch of zero samples, and zero input channels (then the output has no channels either)
        V.check_sizes(input_shape, fn, "input", (0, 1), "N and C")
        V.check_sizes(weight_shape, fn, "weight", (1,) if C == 0 else (), "C_in/groups, for an input with C = 0")
        if C % groups:
            raise ValueError("%s(): argument 'groups'=%d must divide the input channels %d" % (fn, groups, C))
        if K % groups:
            raise ValueError("%s(): argument 'groups'=%d must divide the output channels (weight.shape[0]) %d"
                             % (fn, groups, K))
        if Cg * groups != C:
            raise ValueError("%s(): argument 'weight' expects %d input channels (weight.shape[1]=%d x groups=%d), "
                             "but the input has %d channels" % (fn, Cg * groups, Cg, groups, C))
        pad = _padding_pairs(padding, n, kernel, dilation, stride, input_shape[2:], fn)
        geom = cls(input_shape, weight_shape, stride, pad, dilation, groups, padding_mode)
        for i, (size, eff) in enumerate(zip(geom.padded_size, geom.effective_kernel)):
            if eff > size:
                raise ValueError("%s(): the dilated kernel (size %d in spatial dim %d) is larger than the padded "
                                 "input (size %d); argument 'weight' has shape %s, input %s, padding %s"
                                 % (fn, eff, i, size, weight_shape, input_shape, pad))
        V.check_size(geom.output_shape, fn, "output")
        if geom.explicit_padding:
            for size, (lo, hi) in zip(geom.input_size, pad):
                if padding_mode == "reflect" and max(lo, hi) >= size:
                    raise ValueError("%s(): argument 'padding' %s must be smaller than the input size %s for "
                                     "padding_mode='reflect'" % (fn, pad, geom.input_size))
                if padding_mode == "circular" and max(lo, hi) > size:
                    raise ValueError("%s(): argument 'padding' %s must be at most the input size %s for "
                                     "padding_mode='circular'" % (fn, pad, geom.input_size))
        return geom

    @classmethod
    @_memoized
    def for_transpose(cls, input_shape, weight_shape, stride=1, padding=0, output_padding=0, groups=1,
                      dilation=1, fn="conv_transpose"):
        """The forward-convolution geometry whose input-gradient is the transposed convolution.

        ``weight_shape`` is PyTorch's transposed layout ``(C_in, C_out // groups, *kernel)``, which is exactly the
        forward layout ``(K, C // groups, *kernel)`` of the adjoint convolution (K = C_in, C = C_out).  The
        transposed output size is ``(n - 1) s - 2 p + d (k - 1) + output_padding + 1``.
        """
        input_shape = tuple(int(s) for s in input_shape)
        weight_shape = tuple(int(s) for s in weight_shape)
        n = len(input_shape) - 2
        if n < 1 or len(weight_shape) != n + 2:
            raise ValueError("%s(): argument 'weight' must be %d-D (C_in, C_out/groups, *kernel), got shape %s"
                             % (fn, n + 2, weight_shape))
        groups = V.positive_int(groups, fn, "groups")
        stride = V.int_tuple(stride, n, fn, "stride", minimum=1)
        dilation = V.int_tuple(dilation, n, fn, "dilation", minimum=1)
        if isinstance(padding, str):
            raise ValueError("%s(): argument 'padding' must be an int or a tuple of ints for a transposed "
                             "convolution, got %r" % (fn, padding))
        pad = V.int_tuple(padding, n, fn, "padding", minimum=0)
        opad = V.int_tuple(output_padding, n, fn, "output_padding", minimum=0)
        for op, s, d in zip(opad, stride, dilation):
            if op >= s and op >= d:
                raise ValueError("%s(): argument 'output_padding' must be smaller than either stride or dilation, "
                                 "got output_padding=%s, stride=%s, dilation=%s" % (fn, opad, stride, dilation))
        V.check_sizes(input_shape, fn, "input", (0,), "N")
        V.check_sizes(weight_shape, fn, "weight")
        N, Cin = input_shape[:2]
        if weight_shape[0] != Cin:
            raise ValueError("%s(): argument 'weight' has %d input channels (weight.shape[0]) but the input has %d"
                             % (fn, weight_shape[0], Cin))
        if Cin % groups:
            raise ValueError("%s(): argument 'groups'=%d must divide the input channels %d" % (fn, groups, Cin))
        kernel = weight_shape[2:]
        out_sp = conv_transpose_output_shape(input_shape[2:], kernel, stride, pad, opad, dilation)
        # PyTorch lets an empty batch have an empty output (its size check needs a sample); never a negative size
        if min(out_sp) < 0 or (min(out_sp) == 0 and N > 0):
            raise ValueError("%s(): the output size %s would be empty; reduce 'padding' %s"
                             % (fn, tuple(out_sp), pad))
        fwd_in = (N, weight_shape[1] * groups) + tuple(out_sp)
        # output_padding adds op extra output rows on the high side; the adjoint convolution of that output must
        # still have n outputs, so whole strides of it (allowed when op < dilation) reduce the high-side padding,
        # possibly below zero (those rows are never read by the forward convolution: they get zero gradient)
        pairs = tuple((p, p - (op - op % s)) for p, op, s in zip(pad, opad, stride))
        geom = cls(fwd_in, weight_shape, stride, pairs, dilation, groups)
        assert geom.output_shape == input_shape, (geom.output_shape, input_shape)
        V.check_size(fwd_in, fn, "output")
        return geom

    # ----------------------------------------------------------------- derived sizes
    @property
    def ndim(self):
        """Number of spatial dimensions."""
        return len(self.input_shape) - 2

    @property
    def batch(self):
        return self.input_shape[0]

    @property
    def in_channels(self):
        return self.input_shape[1]

    @property
    def out_channels(self):
        return self.weight_shape[0]

    @property
    def kernel_size(self):
        return self.weight_shape[2:]

    @property
    def input_size(self):
        return self.input_shape[2:]

    @cached_property
    def effective_kernel(self):
        """Dilated kernel extent ``d (f - 1) + 1`` per dimension."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))

    @cached_property
    def padded_size(self):
        return tuple(n + lo + hi for n, (lo, hi) in zip(self.input_size, self.padding))

    @cached_property
    def output_size(self):
        """``(n + lo + hi - d (f - 1) - 1) // s + 1`` per spatial dimension."""
        return tuple((p - e) // s + 1 for p, e, s in zip(self.padded_size, self.effective_kernel, self.stride))

    @cached_property
    def output_shape(self):
        """``(N, K, *output_size)``; PyTorch's rule for an input without channels: no output channels either."""
        return (self.batch, self.out_channels if self.in_channels else 0) + self.output_size

    @property
    def pad_lo(self):
        return tuple(p[0] for p in self.padding)

    @property
    def pad_hi(self):
        return tuple(p[1] for p in self.padding)

    @property
    def adjoint_pad_lo(self):
        """Low-side padding of the input gradient computed as a stride-1 correlation of the output gradient
        dilated by the stride, with the flipped kernel: ``d (k - 1) - p`` per axis (negative: a crop)."""
        return tuple(d * (k - 1) - p for d, k, p in zip(self.dilation, self.kernel_size, self.pad_lo))

    @property
    def symmetric_padding(self):
        return all(lo == hi for lo, hi in self.padding)

    @property
    def explicit_padding(self):
        """True when the input is padded before the kernels run (a non-zero ``padding_mode`` with padding)."""
        return self.padding_mode != "zeros" and any(p for pair in self.padding for p in pair)

    @cached_property
    def kernel_geometry(self):
        """The geometry the kernels see: ``self`` for zero padding, else the explicitly padded input with no
        padding left to do."""
        if not self.explicit_padding:
            return self
        return ConvGeometry(self.input_shape[:2] + self.padded_size, self.weight_shape, self.stride,
                            ((0, 0),) * self.ndim, self.dilation, self.groups)

    # ----------------------------------------------------------------- counts from the notes
    def params(self, bias=True):
        """``K (f1 f2 ... c / g + 1)`` with bias, ``K f1 f2 ... c / g`` without."""
        K, Cg = self.weight_shape[:2]
        return K * (Cg * prod(self.kernel_size) + (1 if bias else 0))

    @property
    def multiplies(self):
        """Multiplications of one forward pass: ``N K (c / g) prod(f) prod(out)``."""
        K, Cg = self.weight_shape[:2]
        return self.batch * K * Cg * prod(self.kernel_size) * prod(self.output_size)

    @property
    def flops(self):
        """Floating point operations counted as one multiply and one add per multiplication."""
        return 2 * self.multiplies

    # ----------------------------------------------------------------- views
    @cached_property
    def _as_3d(self):
        extra = 3 - self.ndim
        if extra == 0:
            return self
        one = (1,) * extra
        return ConvGeometry(self.input_shape[:2] + one + self.input_size,
                            self.weight_shape[:2] + one + self.kernel_size,
                            one + self.stride, ((0, 0),) * extra + self.padding, one + self.dilation, self.groups,
                            self.padding_mode)

    def as_3d(self):
        """The same geometry with singleton spatial dimensions prepended up to three (D, H, W).

        Kernels are written once for 3 spatial dimensions; 1-D and 2-D problems are reshaped views of it.
        """
        return self._as_3d

    @cached_property
    def kernel_struct(self):
        """This (zero-padding) convolution as the kernels' ``Geometry`` struct (a dict, see :func:`kernel_struct`)."""
        return kernel_struct(self.kernel_size, self.stride, self.dilation, self.pad_lo, groups=self.groups)

    @cached_property
    def adjoint_kernel_struct(self):
        """The input gradient as the kernels' ``Geometry`` struct: a stride-1 correlation of the output gradient,
        dilated by the stride and padded by :attr:`adjoint_pad_lo`, with the flipped kernel."""
        return kernel_struct(self.kernel_size, (1,) * self.ndim, self.dilation, self.adjoint_pad_lo,
                             input_dilation=self.stride, groups=self.groups)

    def key(self):
        """A hashable description (for caches)."""
        return (self.input_shape, self.weight_shape, self.stride, self.padding, self.dilation, self.groups)


def conv_output_shape(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """Output shape of ``conv*d(input, weight, ...)`` without computing anything.

    >>> conv_output_shape((8, 3, 227, 227), (96, 3, 11, 11), stride=4)
    (8, 96, 55, 55)
    """
    return ConvGeometry.make(input_shape, weight_shape, stride, padding, dilation, groups,
                             fn="conv_output_shape").output_shape


def conv_transpose_output_shape(size, kernel, stride, padding, output_padding, dilation):
    """Spatial output size of a transposed convolution: ``(n - 1) s - 2 p + d (k - 1) + output_padding + 1``."""
    return tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1
                 for n, k, s, p, op, d in zip(size, kernel, stride, padding, output_padding, dilation))


def transpose_output_padding(size, output_size, kernel, stride, padding, dilation, fn="conv_transpose"):
    """The ``output_padding`` that makes a transposed convolution of spatial ``size`` produce the spatial
    ``output_size`` (PyTorch's ``output_size=`` argument): each requested size must lie between the smallest output
    ``(n - 1) s - 2 p + d (k - 1) + 1`` and that plus ``s - 1``."""
    output_size = V.int_tuple(output_size, len(size), fn, "output_size", minimum=1)
    smallest = conv_transpose_output_shape(size, kernel, stride, padding, (0,) * len(size), dilation)
    for want, lo, s in zip(output_size, smallest, stride):
        if not lo <= want <= lo + s - 1:
            raise ValueError("%s(): requested an output size of %s, but valid sizes range from %s to %s (for an "
                             "input of %s)" % (fn, output_size, smallest,
                                               tuple(m + st - 1 for m, st in zip(smallest, stride)), tuple(size)))
    return tuple(w - lo for w, lo in zip(output_size, smallest))


@dataclass(frozen=True)
class PoolGeometry:
    """Shape bookkeeping for a pooling window over ``input_shape = (N, C, *spatial)``.

    PyTorch's rule: ``out = floor_or_ceil((n + 2p - d (k - 1) - 1) / s) + 1``; with ``ceil_mode`` the last window
    must start inside the input or the left padding, otherwise it is dropped.

    Adaptive pooling (:meth:`adaptive`) fixes the output size instead (``adaptive_size``); output ``o`` of a
    dimension of size ``n`` pools ``[floor(o n / out), ceil((o + 1) n / out))``, and ``kernel_size`` /
    ``stride`` hold the widest window and the smallest step (what a receptive field needs).  Max-unpooling
    inverts a pool: :meth:`for_unpool` gives the pool whose input size the unpooling restores.
    """

    input_shape: tuple
    kernel_size: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    ceil_mode: bool = False
    adaptive_size: tuple = None

    @classmethod
    @_memoized
    def make(cls, input_shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, fn="pool",
             max_padding_ratio=2):
        """Validate pooling arguments; padding must be at most ``effective_kernel / max_padding_ratio``."""
        input_shape = tuple(int(s) for s in input_shape)
        n = len(input_shape) - 2
        kernel = V.int_tuple(kernel_size, n, fn, "kernel_size", minimum=1)
        stride = kernel if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) \
            else V.int_tuple(stride, n, fn, "stride", minimum=1)
        pad = V.int_tuple(padding, n, fn, "padding", minimum=0)
        dilation = V.int_tuple(dilation, n, fn, "dilation", minimum=1)
        ceil_mode = V.flag(ceil_mode, fn, "ceil_mode", ints=True)
        V.check_sizes(input_shape, fn, "input", (0,), "N")
        geom = cls(input_shape, kernel, stride, pad, dilation, ceil_mode)
        for p, e in zip(pad, geom.effective_kernel):
            if p * max_padding_ratio > e:
                raise ValueError("%s(): argument 'padding' %s must be at most half the (dilated) kernel size %s"
                                 % (fn, pad, geom.effective_kernel))
        if min(geom.output_size) <= 0:
            raise ValueError("%s(): the window (kernel_size=%s, dilation=%s) is larger than the padded input %s"
                             % (fn, kernel, dilation, tuple(n + 2 * p for n, p in zip(input_shape[2:], pad))))
        return geom

    @classmethod
    def adaptive(cls, input_shape, output_size, fn="adaptive_pool", empty_channels=False):
        """The geometry of ``adaptive_*_pool(input, output_size)``; ``output_size`` is an int or a tuple of ints
        where ``None`` keeps that dimension's size.  ``empty_channels`` allows C = 0 (PyTorch's 1-D and 2-D
        adaptive average pooling do)."""
        input_shape = tuple(int(s) for s in input_shape)
        V.check_sizes(input_shape, fn, "input", (0, 1) if empty_channels else (0,),
                      "N and C" if empty_channels else "N")
        size = input_shape[2:]
        nd = len(size)
        vals = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size] * nd
        if len(vals) == 1:
            vals = vals * nd
        if len(vals) != nd:
            raise ValueError("%s(): argument 'output_size' must be an int or a tuple of %d ints (or None), got %r"
                             % (fn, nd, output_size))
        out = tuple(n if v is None else V.positive_int(v, fn, "output_size") for v, n in zip(vals, size))
        V.check_size(out, fn, "output_size")
        # window i spans [floor(i n / o), ceil((i + 1) n / o)): at most ceil(n / o) + 1 wide, starts ~n / o apart
        kernel = []
        for n, o in zip(size, out):
            i = np.arange(o, dtype=np.int64)
            kernel.append(int((-(-(i + 1) * n // o) - (i * n // o)).max()))
        stride = tuple(max(1, n // o) for n, o in zip(size, out))
        return cls(input_shape, tuple(kernel), stride, (0,) * nd, (1,) * nd, False, out)

    @classmethod
    def for_unpool(cls, input_shape, kernel_size, stride=None, padding=0, output_size=None, fn="max_unpool"):
        """The pool whose input ``max_unpool*d`` restores from ``input_shape`` (the pooled shape).

        PyTorch's rule: the default size is ``(n - 1) s - 2 p + k``; a given ``output_size`` (``nd`` or ``nd + 2``
        entries) must lie strictly within one stride of it.
        """
        input_shape = tuple(int(s) for s in input_shape)
        V.check_sizes(input_shape, fn, "input", (0,), "N")
        nd = len(input_shape) - 2
        kernel = V.int_tuple(kernel_size, nd, fn, "kernel_size", minimum=1)
        stride = kernel if stride is None else V.int_tuple(stride, nd, fn, "stride", minimum=1)
        pad = V.int_tuple(padding, nd, fn, "padding", minimum=0)
        default = tuple((n - 1) * s + k - 2 * p for n, s, k, p in zip(input_shape[2:], stride, kernel, pad))
        if output_size is None:
            size = default
        else:
            if not isinstance(output_size, (tuple, list)):
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
                    low = tuple(a - b for a, b in zip(default, stride))
                    high = tuple(a + b for a, b in zip(default, stride))
                    raise ValueError("%s(): argument 'output_size' %s must lie strictly between %s and %s (default "
                                     "size minus/plus stride)" % (fn, size, low, high))
        if min(size) <= 0:
            raise ValueError("%s(): the output size %s is empty; check 'kernel_size', 'stride' and 'padding'"
                             % (fn, size))
        V.check_size(size, fn, "output")
        return cls(input_shape[:2] + size, kernel, stride, pad, (1,) * nd)

    @property
    def ndim(self):
        return len(self.input_shape) - 2

    @property
    def input_size(self):
        return self.input_shape[2:]

    @cached_property
    def effective_kernel(self):
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))

    @cached_property
    def kernel_struct(self):
        """The regular window as the kernels' ``Geometry`` struct (a dict, see :func:`kernel_struct`)."""
        return kernel_struct(self.kernel_size, self.stride, self.dilation, self.padding)

    @cached_property
    def output_size(self):
        if self.adaptive_size is not None:
            return self.adaptive_size
        out = []
        for n, e, s, p in zip(self.input_shape[2:], self.effective_kernel, self.stride, self.padding):
            span = n + 2 * p - e
            o = (-(-span // s) if self.ceil_mode else span // s) + 1
            if self.ceil_mode and (o - 1) * s >= n + p:
                o -= 1
            out.append(o)
        return tuple(out)

    @cached_property
    def output_shape(self):
        return self.input_shape[:2] + self.output_size
