"""Argument normalisation and every user-facing error message.

Kernels run with bounds checks off, so everything a kernel relies on is checked here first.  One exception type
per kind of mistake: ``TypeError`` for a wrong type (a float where an int is needed, a complex array, a string
where a number is expected), ``ValueError`` for a wrong value or shape.  Every message names the function and the
argument, and says what was expected and what was given.
"""
import numbers
import operator

import numpy as np

__all__ = [
    "as_float_array", "common_float_dtype", "int_tuple", "padding_pairs", "check_choice", "check_out",
    "check_ndim", "positive_int", "nonneg_int", "real_scalar", "MAX_ELEMENTS",
]

# Kernels index with 64-bit signed integers; refuse anything whose element count would not fit comfortably.
MAX_ELEMENTS = 2 ** 62


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


def as_array(x, fn, arg):
    """``np.asarray`` with a clear TypeError for things that are not numeric arrays."""
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


def _as_int(v, fn, arg):
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
    if isinstance(value, (list, tuple, np.ndarray)):
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


def padding_pairs(padding, n, kernel, dilation, stride, spatial, fn, arg="padding"):
    """Per-side padding ``((lo, hi), ...)`` for ``n`` spatial dims.

    ``padding`` may be an int, a tuple of ``n`` ints (symmetric), a tuple of ``n`` (lo, hi) pairs, a flat tuple of
    ``2n`` ints in the order ``(d0_lo, d0_hi, d1_lo, d1_hi, ...)``, ``"valid"`` or ``"same"``.

    ``"same"``: for stride 1 the total padding is ``d(k-1)``, ``total//2`` on the left and the odd element on the
    right (PyTorch's rule, which also covers even kernels); for stride > 1 the output has ``ceil(n/s)`` elements and
    the total padding is ``max((ceil(n/s) - 1) s + d(k-1) + 1 - n, 0)`` split the same way (TensorFlow's rule).
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0),) * n
        if mode == "same":
            pairs = []
            for size, k, d, s in zip(spatial, kernel, dilation, stride):
                eff = d * (k - 1) + 1
                out = -(-size // s)
                total = max((out - 1) * s + eff - size, 0)
                pairs.append((total // 2, total - total // 2))
            return tuple(pairs)
        raise ValueError("%s must be an int, a tuple, 'valid' or 'same', got %r" % (_name(fn, arg), padding))
    if isinstance(padding, (list, tuple)) and padding and all(isinstance(p, (list, tuple)) for p in padding):
        if len(padding) != n or any(len(p) != 2 for p in padding):
            raise ValueError("%s given as pairs must be %d (lo, hi) pairs, got %r" % (_name(fn, arg), n, padding))
        pairs = tuple((_as_int(p[0], fn, arg), _as_int(p[1], fn, arg)) for p in padding)
    elif isinstance(padding, (list, tuple)) and len(padding) == 2 * n and n > 1:
        flat = [_as_int(p, fn, arg) for p in padding]
        pairs = tuple((flat[2 * i], flat[2 * i + 1]) for i in range(n))
    else:
        sym = int_tuple(padding, n, fn, arg)
        pairs = tuple((p, p) for p in sym)
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


def check_out(out, shape, dtype, inputs, fn, arg="out"):
    """Validate a user-supplied output array: ndarray, exact shape and dtype, C-contiguous, writeable, and
    sharing no memory with any of ``inputs``."""
    if not isinstance(out, np.ndarray):
        raise TypeError("%s must be a numpy.ndarray, got %s" % (_name(fn, arg), type(out).__name__))
    if out.shape != tuple(shape):
        raise ValueError("%s has shape %s, expected %s" % (_name(fn, arg), out.shape, tuple(shape)))
    if out.dtype != dtype:
        raise TypeError("%s has dtype %s, expected %s" % (_name(fn, arg), out.dtype, np.dtype(dtype)))
    if not out.flags.c_contiguous:
        raise ValueError("%s must be C-contiguous" % _name(fn, arg))
    if not out.flags.writeable:
        raise ValueError("%s is read-only" % _name(fn, arg))
    for a in inputs:
        if a is not None and isinstance(a, np.ndarray) and np.may_share_memory(out, a):
            raise ValueError("%s overlaps an input array; pass a separate array" % _name(fn, arg))
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
