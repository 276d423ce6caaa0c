"""Argument normalisation for :mod:`fastconv.ndimage`, following scipy.ndimage's rules one for one.

Every helper normalises one kind of argument once (a mode name to its extension, a scalar to a per-axis list,
``output`` to an array); the filters then only see validated, per-axis values.  Where scipy.ndimage raises
``RuntimeError`` for a bad value or type, fastconv raises :class:`ArgumentError` (a ``ValueError``) or
:class:`UnsupportedTypeError` (a ``TypeError``); both also derive from ``RuntimeError``, so code written against
scipy that catches ``RuntimeError`` keeps working.
"""
import numbers
import operator
from collections.abc import Iterable

import numpy as np

from .. import _validate as V
from ..filters import _engine as E

__all__ = ["ArgumentError", "UnsupportedTypeError", "as_input", "get_output", "check_axes", "sequence", "mode_name",
           "expand_origin", "expand_footprint", "expand_mode", "invalid_origin", "axis_index", "finish",
           "may_share", "WORK_DTYPES"]


class ArgumentError(ValueError, RuntimeError):
    """A bad argument value where scipy.ndimage raises RuntimeError (also a ValueError)."""


class UnsupportedTypeError(TypeError, RuntimeError):
    """An array type scipy.ndimage does not support (also a RuntimeError, as scipy raises)."""


# dtypes the compiled kernels take directly (others are converted, see ``work_dtype``)
WORK_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64,
                                          np.int64, np.float32, np.float64))


def plain_array(input, fn):
    """``np.asarray(input)``, refusing dask arrays (which it would load whole) with a TypeError that names
    ``fastconv.dask.<fn>``."""
    return np.asarray(V.refuse_lazy(input, fn, "input"))


def as_input(input, allow_complex=True, fn="ndimage"):
    """``input`` as an ndarray of a type scipy.ndimage filters (bool, integers, float32/64, complex); ``fn``
    (``"ndimage.<name>"``) names the filter when a dask array is refused."""
    arr = plain_array(input, fn)
    kind = arr.dtype.kind
    if kind == "c":
        if not allow_complex:
            raise TypeError("Complex type not supported")
        return arr
    if kind not in "biuf" or arr.dtype == np.float16 or arr.dtype.itemsize > 8:
        raise UnsupportedTypeError("array type %s not supported" % arr.dtype)
    return arr


def get_output(output, input, shape=None, complex_output=False):
    """scipy.ndimage's ``output`` argument: None (the input's dtype), a dtype (class, ``np.dtype`` or string) or
    an array of the right shape; returned as a writeable array.  New arrays are left uninitialised (scipy zeroes
    them): every filter writes every element."""
    if shape is None:
        shape = input.shape
    if output is None:
        if not complex_output:
            return np.empty(shape, dtype=input.dtype.name)
        return np.empty(shape, dtype=np.promote_types(input.dtype, np.complex64))
    if isinstance(output, (type, np.dtype)):
        dt = np.dtype(output)
        if complex_output and dt.kind != "c":
            import warnings
            warnings.warn("promoting specified output dtype to complex", stacklevel=4)
            dt = np.promote_types(dt, np.complex64)
        return np.empty(shape, dtype=dt)
    if isinstance(output, str):
        dt = np.dtype(output)
        if complex_output and dt.kind != "c":
            raise ArgumentError("output must have complex dtype")
        if not issubclass(dt.type, np.number):
            raise ArgumentError("output must have numeric dtype")
        return np.empty(shape, dtype=dt)
    if not isinstance(output, np.ndarray):
        raise TypeError("output must be None, a dtype or a numpy.ndarray, got %s" % type(output).__name__)
    if output.shape != tuple(shape):
        raise ArgumentError("output shape not correct")
    if complex_output and output.dtype.kind != "c":
        raise ArgumentError("output must have complex dtype")
    if output.dtype.kind not in "biufc" or output.dtype == np.float16:
        raise UnsupportedTypeError("output array type %s not supported" % output.dtype)
    if not output.flags.writeable:
        raise ValueError("output array is read-only")
    return output


def axis_index(axis, ndim):
    """An axis (negative counts from the end) as an index in [0, ndim)."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (numbers.Integral, np.integer)):
        raise TypeError("axis must be an integer, got %r" % (axis,))
    a = int(axis)
    if not -ndim <= a < ndim:
        raise np.exceptions.AxisError(a, ndim)
    return a % ndim


def check_axes(axes, ndim):
    """scipy.ndimage's ``axes``: None (all), an int or an iterable of distinct ints -> tuple of indices."""
    if axes is None:
        return tuple(range(ndim))
    if np.isscalar(axes):
        axes = (operator.index(axes),)
    elif isinstance(axes, Iterable):
        axes = tuple(operator.index(ax) for ax in axes)
    else:
        raise ValueError("axes must be an integer, iterable of integers, or None")
    for ax in axes:
        if ax < -ndim or ax > ndim - 1:
            raise ValueError(f"specified axis: {ax} is out of range")
    axes = tuple(ax % ndim for ax in axes)
    if len(set(axes)) != len(axes):
        raise ValueError("axes must be unique")
    return axes


def sequence(value, rank):
    """A scalar repeated ``rank`` times, or a sequence of exactly ``rank`` values (strings are scalars)."""
    if not isinstance(value, str) and np.iterable(value):
        out = list(value)
        if len(out) != rank:
            raise ArgumentError("sequence argument must have length equal to input rank")
        return out
    return [value] * rank


def mode_name(mode):
    """A filter mode name -> the extension it denotes (``grid-*`` names are aliases for filters)."""
    if not isinstance(mode, str):
        raise TypeError("mode must be a string, got %r" % (mode,))
    if mode not in E.MODES:
        raise ArgumentError("boundary mode not supported")
    return E.MODES[mode]


def invalid_origin(origin, lenw):
    return origin < -(lenw // 2) or origin > (lenw - 1) // 2


def expand_origin(ndim, axes, origin):
    """Origins for every axis of the image (0 on the axes not filtered)."""
    origins = [operator.index(o) for o in sequence(origin, len(axes))]
    if len(axes) < ndim:
        full = [0] * ndim
        for o, ax in zip(origins, axes):
            full[ax] = o
        origins = full
    return origins


def expand_footprint(ndim, axes, footprint, name="footprint"):
    """A footprint/weights array over ``axes`` given one axis per image axis (length 1 on the others)."""
    if len(axes) < ndim:
        if footprint.ndim != len(axes):
            raise ArgumentError(f"{name}.ndim ({footprint.ndim}) must match len(axes) ({len(axes)})")
        footprint = np.expand_dims(footprint, tuple(ax for ax in range(ndim) if ax not in axes))
    return footprint


def expand_mode(ndim, axes, mode):
    """A per-axis mode list over ``axes`` for every image axis ('constant' elsewhere); a string stays as is."""
    if not isinstance(mode, str) and isinstance(mode, Iterable):
        modes = sequence(mode, len(axes))
        full = ["constant"] * ndim
        for m, ax in zip(modes, axes):
            full[ax] = m
        return full
    return mode


def may_share(a, b):
    return np.may_share_memory(a, b)


def finish(output, result):
    """Copy ``result`` into ``output`` unless it already is ``output`` (float -> integer truncates toward zero,
    as scipy.ndimage's C casts); returns ``output``."""
    if result is not output:
        np.copyto(output, result, casting="unsafe")
    return output


def work_dtype(dtype):
    """The kernel dtype a min/max/rank filter computes in for an output of ``dtype`` (bool -> uint8)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return np.dtype(np.uint8)
    return dtype


def cast_scalar(value, dtype):
    """``value`` converted like a C cast to ``dtype`` (floats truncate toward zero for integer types)."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        v = float(value)
        if not np.isfinite(v):
            return dtype.type(0)
        info = np.iinfo(dtype)
        return dtype.type(min(max(int(v), info.min), info.max))
    return np.asarray(value, dtype=np.float64).astype(dtype)[()]
