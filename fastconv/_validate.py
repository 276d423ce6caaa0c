"""Argument normalisation and every user-facing error message.

Kernels run with bounds checks off, so everything a kernel relies on is checked here first.  One exception type
per kind of mistake: ``TypeError`` for a wrong type (a float where an int is needed, a complex array, a string
where a number is expected, an array where a shape tuple is expected), ``ValueError`` for a wrong value or shape.
Every message names the function and the argument, and says what was expected and what was given.

The ``out=`` policy
    Every ``out`` must be a writeable ``numpy.ndarray`` of the result's shape (:func:`out_array`).  The functions
    that follow PyTorch (convolutions) write into it directly, so it must also have the result's dtype, be
    C-contiguous and share no memory with the caller's input arrays nor with the arrays the kernel reads
    (:func:`check_out` is given both: an input passed as a memoryview, a torch tensor or anything else that
    converts to an ndarray without a copy is caught through the prepared operand).  The functions that follow
    scipy.ndimage / scikit-image (filters) accept any real dtype and layout like scipy's ``output=``: the kernel
    writes into ``out`` when it can (:func:`destination`), otherwise into a scratch array that is then cast into
    ``out`` (:func:`deliver`; integers truncate toward zero).
"""
import numbers
import operator

import numpy as np

__all__ = [
    "refuse_lazy", "as_array", "as_float_array", "float_kind", "common_float_dtype", "int_tuple", "padding_arg", "check_choice",
    "check_ndim", "check_nonempty", "batch_array", "check_sizes", "check_size", "positive_int", "nonneg_int", "real_scalar",
    "flag", "shape_arg", "axis_index", "same_shape", "index_array", "out_array", "check_out", "destination",
    "deliver", "LAYOUT", "MAX_ELEMENTS",
]

# Kernels index with 64-bit signed integers; refuse anything whose element count would not fit comfortably.
MAX_ELEMENTS = 2 ** 62

# (N, C, *spatial) layouts in messages, by number of spatial dims.
LAYOUT = {1: "N, C, L", 2: "N, C, H, W", 3: "N, C, D, H, W"}


def _name(fn, arg):
    return "%s(): argument '%s'" % (fn, arg) if fn else "argument '%s'" % arg


def float_kind(dtype):
    """float32 or float64: the precision an array of ``dtype`` is computed in.

    float16 and float32 compute in float32; float64 and every integer type (like NumPy's true division) in float64.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)
    if dtype.kind in "iu":
        return np.dtype(np.float64)
    raise TypeError("unsupported dtype %s" % dtype)


def _check_dtype(arr, fn, arg):
    kind = arr.dtype.kind
    if kind == "f" and arr.dtype.itemsize > 8:
        raise TypeError("%s has dtype %s; fastconv computes in float32 or float64" % (_name(fn, arg), arr.dtype))
    if kind not in "fiu":
        raise TypeError("%s must be a real floating point or integer array, got dtype %s"
                        % (_name(fn, arg), arr.dtype))


def refuse_lazy(x, fn, arg):
    """TypeError for a lazy (dask) array, which ``np.asarray`` would silently compute and load whole.

    A duck-type check (dask collections define ``__dask_graph__``) that does not import dask.
    """
    if hasattr(type(x), "__dask_graph__"):
        what = "a dask array" if type(x).__module__.startswith("dask.array") else "a dask collection"
        lazy = "fastconv.dask.%s" % fn if fn and fn != "Tensor" else "fastconv.dask.predict(model, images)"
        raise TypeError("%s is %s: the in-memory function would load all of it. Use the lazy, chunk-by-chunk "
                        "counterpart in fastconv.dask (%s), or call .compute() first if it fits in memory"
                        % (_name(fn, arg), what, lazy))
    return x


def as_array(x, fn, arg):
    """``np.asarray`` with a clear TypeError for things that are not numeric arrays (and for dask arrays,
    which it would load whole: :func:`refuse_lazy`)."""
    refuse_lazy(x, fn, arg)
    if isinstance(x, (str, bytes)):
        raise TypeError("%s must be an array, got %s" % (_name(fn, arg), type(x).__name__))
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:  # ragged nested lists and similar
        raise TypeError("%s could not be converted to an array: %s" % (_name(fn, arg), exc)) from None
    _check_dtype(arr, fn, arg)
    return arr


def common_float_dtype(*arrays):
    """float64 if any array computes in float64, else float32."""
    kinds = [float_kind(a.dtype) for a in arrays if a is not None]
    return np.dtype(np.float64) if any(k == np.float64 for k in kinds) else np.dtype(np.float32)


def as_float_array(x, dtype, fn, arg):
    """Convert an already-checked array to a C-contiguous array of ``dtype`` (copies only when needed)."""
    return np.ascontiguousarray(x, dtype=dtype)


def check_ndim(arr, ndims, fn, arg, what):
    """Require ``arr.ndim`` in ``ndims`` (an int or a tuple of ints); ``what`` describes the layout."""
    ndims = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    if arr.ndim not in ndims:
        expect = " or ".join(str(n) for n in ndims)
        raise ValueError("%s must be %s-D (%s), got a %d-D array of shape %s"
                         % (_name(fn, arg), expect, what, arr.ndim, arr.shape))


def check_nonempty(arr, fn, arg):
    if arr.size == 0:
        raise ValueError("%s must not be empty, got shape %s" % (_name(fn, arg), arr.shape))


def batch_array(value, fn, arg, nd=None, layout=None):
    """A numeric array laid out (N, C, *spatial) with ``nd`` spatial dims (1 to 3 when ``nd`` is None);
    ``layout`` describes the axes in messages (default ``LAYOUT[nd]``).  Which axes may be empty (a batch of
    zero samples, as PyTorch allows) is the geometry's rule (``ConvGeometry`` / ``PoolGeometry``)."""
    a = as_array(value, fn, arg)
    if layout is None:
        layout = "N, C, *spatial with 1 to 3 spatial dims" if nd is None else LAYOUT[nd]
    check_ndim(a, (3, 4, 5) if nd is None else nd + 2, fn, arg, layout)
    return a


def check_sizes(shape, fn, arg, empty=(), what=None):
    """Require every entry of ``shape`` to be positive, except the axes in ``empty`` (which may be 0: a batch
    of zero samples, or PyTorch's zero channels); ``what`` names the axes in the message."""
    if min(shape, default=1) > 0:
        return
    bad = [i for i, s in enumerate(shape) if s < 0 or (s == 0 and i not in empty)]
    if bad:
        allowed = " (only %s may be 0)" % what if what else ""
        raise ValueError("%s must not have zero-size dimension %d%s, got shape %s"
                         % (_name(fn, arg), bad[0], allowed, tuple(shape)))


def _as_int(v, fn, arg):
    if type(v) is int:          # the common case, without the abstract-base-class checks below
        return v
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral, np.integer)):
        try:
            if isinstance(v, (bool, np.bool_)):
                raise TypeError
            return operator.index(v)
        except TypeError:
            raise TypeError("%s must be an int or a tuple of ints, got %r" % (_name(fn, arg), v)) from None
    return int(v)


def int_tuple(value, n, fn, arg, minimum=None):
    """Normalise an int or a length-``n`` sequence of ints to a tuple of ``n`` ints, each >= ``minimum``."""
    if type(value) is int:
        out = (value,) * n
    elif isinstance(value, (list, tuple, np.ndarray)):
        vals = list(np.asarray(value).ravel()) if isinstance(value, np.ndarray) else list(value)
        if len(vals) == 1:
            vals = vals * n
        if len(vals) != n:
            raise ValueError("%s must be an int or a tuple of %d ints, got %r" % (_name(fn, arg), n, value))
        out = tuple(_as_int(v, fn, arg) for v in vals)
    else:
        out = (_as_int(value, fn, arg),) * n
    if any(abs(v) >= 2 ** 62 for v in out):
        raise ValueError("%s is out of range (magnitude must be below 2**62), got %r" % (_name(fn, arg), value))
    if minimum is not None and any(v < minimum for v in out):
        rule = "positive" if minimum == 1 else ">= %d" % minimum
        raise ValueError("%s must be %s, got %r" % (_name(fn, arg), rule, value))
    return out


def positive_int(value, fn, arg):
    return int_tuple(value, 1, fn, arg, minimum=1)[0]


def nonneg_int(value, fn, arg):
    return int_tuple(value, 1, fn, arg, minimum=0)[0]


def real_scalar(value, fn, arg):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError("%s must be a real number, got %r" % (_name(fn, arg), value))
    return float(value)


def flag(value, fn, arg, ints=False):
    """A bool argument (TypeError for anything else; ``ints=True`` also takes Python ints, as ``ceil_mode``)."""
    if isinstance(value, (bool, np.bool_)) or (ints and isinstance(value, int)):
        return bool(value)
    raise TypeError("%s must be a bool, got %r" % (_name(fn, arg), value))


def shape_arg(value, fn, arg, ndims=None, empty=None):
    """An array shape given as a tuple or list of positive ints (``len`` in ``ndims`` when given), whose element
    count the kernels can index.  ``empty``: the axes that may be 0 (:func:`check_sizes`; ``"N"`` for the batch
    axis of an (N, C, *spatial) shape, ``"all"`` for any)."""
    if not isinstance(value, (tuple, list)):
        raise TypeError("%s must be a tuple of ints, got %r" % (_name(fn, arg), value))
    shape = int_tuple(tuple(value), len(value), fn, arg, minimum=0) if len(value) else ()
    if empty != "all":
        check_sizes(shape, fn, arg, (0,) if empty == "N" else (), empty)
    if ndims is not None and len(shape) not in ndims:
        raise ValueError("%s must have %s entries, got %r"
                         % (_name(fn, arg), " or ".join(str(n) for n in ndims), tuple(value)))
    check_size(shape, fn, arg)
    return shape


def axis_index(value, ndim, fn, arg):
    """An axis of an ``ndim``-dimensional array, in ``[-ndim, ndim)``, as a non-negative index."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError("%s must be an int, got %r" % (_name(fn, arg), value))
    a = int(value)
    if not -ndim <= a < ndim:
        raise ValueError("%s %d is out of range for %d dimensions (must be in [%d, %d))"
                         % (_name(fn, arg), a, ndim, -ndim, ndim))
    return a % ndim


def same_shape(a, shape, fn, arg, what):
    """Require ``a.shape == shape``; ``what`` says where that shape comes from."""
    if a.shape != tuple(shape):
        raise ValueError("%s must have shape %s (%s), got %s" % (_name(fn, arg), tuple(shape), what, a.shape))


def index_array(value, fn, arg="indices"):
    """An int64 C-contiguous copy/view of an integer index array (TypeError for any other dtype)."""
    if isinstance(value, (str, bytes)):
        raise TypeError("%s must be an integer array, got %s" % (_name(fn, arg), type(value).__name__))
    a = np.asarray(refuse_lazy(value, fn, arg))
    if a.dtype.kind not in "iu":
        raise TypeError("%s must be an integer array (int64 as returned with return_indices=True), got dtype %s"
                        % (_name(fn, arg), a.dtype))
    if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError("%s holds values too large for int64" % _name(fn, arg))
    return np.ascontiguousarray(a, dtype=np.int64)


def padding_arg(padding, n, fn, arg="padding"):
    """A convolution's ``padding`` for ``n`` spatial dims, normalised: ``"valid"`` or ``"same"`` (any case), a
    tuple of ``n`` ints (symmetric padding) or a tuple of ``n`` ``(lo, hi)`` pairs (per side).

    Accepted forms: an int, ``n`` ints, ``n`` (lo, hi) pairs, a flat tuple of ``2n`` ints in the order
    ``(d0_lo, d0_hi, d1_lo, d1_hi, ...)`` (``n > 1``), ``"valid"`` and ``"same"``.  What ``"same"`` means is
    :class:`~fastconv.ConvGeometry`'s business.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode in ("valid", "same"):
            return mode
        raise ValueError("%s must be an int, a tuple, 'valid' or 'same', got %r" % (_name(fn, arg), padding))
    if isinstance(padding, (list, tuple)) and padding and all(isinstance(p, (list, tuple)) for p in padding):
        if len(padding) != n or any(len(p) != 2 for p in padding):
            raise ValueError("%s given as pairs must be %d (lo, hi) pairs, got %r" % (_name(fn, arg), n, padding))
        pairs = tuple((_as_int(p[0], fn, arg), _as_int(p[1], fn, arg)) for p in padding)
    elif isinstance(padding, (list, tuple)) and len(padding) == 2 * n and n > 1:
        flat = [_as_int(p, fn, arg) for p in padding]
        pairs = tuple((flat[2 * i], flat[2 * i + 1]) for i in range(n))
    else:
        return int_tuple(padding, n, fn, arg, minimum=0)
    if any(p < 0 for pair in pairs for p in pair):
        raise ValueError("%s must be non-negative, got %r" % (_name(fn, arg), padding))
    if any(p >= 2 ** 62 for pair in pairs for p in pair):
        raise ValueError("%s is out of range (magnitude must be below 2**62), got %r" % (_name(fn, arg), padding))
    return pairs


def check_choice(value, choices, fn, arg):
    """Require ``value`` to be one of the strings in ``choices``."""
    if not isinstance(value, str):
        raise TypeError("%s must be a string, one of %s; got %r" % (_name(fn, arg), sorted(choices), value))
    if value not in choices:
        raise ValueError("%s must be one of %s, got %r" % (_name(fn, arg), sorted(choices), value))
    return value


def out_array(out, shape, fn, kinds=None, arg="out"):
    """Every ``out=``: a writeable ndarray of ``shape`` (whose dtype kind is one of ``kinds`` when given)."""
    if not isinstance(out, np.ndarray):
        raise TypeError("%s must be a numpy.ndarray, got %s" % (_name(fn, arg), type(out).__name__))
    if kinds is not None and out.dtype.kind not in kinds:
        raise TypeError("%s must have a %s dtype, got %s"
                        % (_name(fn, arg), "floating point" if kinds == "f" else "real numeric", out.dtype))
    if out.shape != tuple(shape):
        raise ValueError("%s has shape %s, expected %s" % (_name(fn, arg), out.shape, tuple(shape)))
    if not out.flags.writeable:
        raise ValueError("%s is read-only" % _name(fn, arg))
    return out


def check_out(out, shape, dtype, operands, fn, arg="out"):
    """An ``out=`` a kernel writes into directly (the convolutions): :func:`out_array`, and exactly the result's
    dtype, C-contiguous, sharing no memory with any ndarray among ``operands`` -- the caller's inputs and the
    arrays the kernel reads, as prepared (other entries, None included, are skipped)."""
    out_array(out, shape, fn, arg=arg)
    if out.dtype != dtype:
        raise TypeError("%s has dtype %s, expected %s" % (_name(fn, arg), out.dtype, np.dtype(dtype)))
    if not out.flags.c_contiguous:
        raise ValueError("%s must be C-contiguous" % _name(fn, arg))
    for a in operands:
        if isinstance(a, np.ndarray) and np.may_share_memory(out, a):
            raise ValueError("%s overlaps an input array; pass a separate array" % _name(fn, arg))
    return out


def destination(out, shape, dtype, *inputs):
    """Where a kernel writes an ``out=`` result of the filters: ``out`` itself when it has ``dtype``, C order and
    no overlap with ``inputs``, else a fresh C-contiguous array (then :func:`deliver` copies it into ``out``)."""
    if (out is not None and out.dtype == dtype and out.flags.c_contiguous
            and not any(np.may_share_memory(out, a) for a in inputs)):
        return out
    return np.empty(shape, dtype)


def deliver(out, result):
    """Copy ``result`` into a user ``out`` unless it already is ``out`` (float -> int truncates toward zero,
    like scipy.ndimage's C cast) and return what the public function returns."""
    if out is None or result is out:
        return result
    np.copyto(out, result, casting="unsafe")
    return out


def check_size(shape, fn, arg):
    """Refuse shapes whose element count overflows the kernels' index type, before anything is allocated."""
    total = 1
    for s in shape:
        total *= int(s)
    if total > MAX_ELEMENTS:
        raise ValueError("%s would have %d elements (shape %s), more than fastconv supports"
                         % (_name(fn, arg), total, tuple(shape)))
    return total
