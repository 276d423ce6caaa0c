"""Tape operations beyond arithmetic: joining and splitting, reductions with indices, elementwise helpers, shapes.

Named and called like their ``torch`` counterparts (``fastconv.cat`` as ``torch.cat``), each records one operation
on the autograd tape (see :mod:`fastconv.autograd`) whose backward is a few vectorised NumPy calls.  The ones that
are also ``torch.Tensor`` methods (``abs``, ``sqrt``, ``clamp``, ``max``, ``min``, ``squeeze``, ``unsqueeze``,
``split``, ``chunk``) are attached to :class:`~fastconv.Tensor` as methods too.

Indices (``max``/``min`` along a dimension) are int64 NumPy arrays, as ``Tensor.argmax`` and ``kmax_pool`` return.
"""
import builtins
import collections
import numbers

import numpy as np

from . import _validate as V
from .autograd import Tensor, as_tensor, record

__all__ = ["cat", "concat", "stack", "split", "chunk", "max", "min", "abs", "sqrt", "clamp", "clip", "where",
           "squeeze", "unsqueeze", "flatten", "pad"]

MaxResult = collections.namedtuple("MaxResult", ["values", "indices"])
MinResult = collections.namedtuple("MinResult", ["values", "indices"])


def _operand(x, like):
    """A Tensor for ``x``; Python numbers take the float dtype of ``like`` (so float32 stays float32)."""
    if isinstance(x, numbers.Number) and not isinstance(x, bool) and like.dtype.kind == "f":
        return Tensor._wrap(np.asarray(x, dtype=like.dtype))
    return as_tensor(x)


def _dim(dim, ndim, fn, arg="dim"):
    """A dimension index in ``[-ndim, ndim)`` normalised to ``[0, ndim)``; 0-d tensors accept 0 and -1."""
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (numbers.Integral, np.integer)):
        raise TypeError("%s(): argument '%s' must be an int, got %r" % (fn, arg, dim))
    n = builtins.max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError("%s(): dimension out of range (expected to be in range of [%d, %d], but got %d)"
                         % (fn, -n, n - 1, dim))
    return int(dim) % n


def _tensors(tensors, fn):
    if isinstance(tensors, Tensor) or not isinstance(tensors, (list, tuple)):
        raise TypeError("%s(): argument 'tensors' must be a list or tuple of Tensors, got %s"
                        % (fn, type(tensors).__name__))
    if not tensors:
        raise ValueError("%s(): argument 'tensors' must be a non-empty list of Tensors" % fn)
    return [as_tensor(t) for t in tensors]


# --------------------------------------------------------------------------------------------------- joining
def cat(tensors, dim=0):
    """Join tensors along an existing dimension ``dim`` (all other sizes equal); the gradient is split back."""
    ts = _tensors(tensors, "cat")
    nd = ts[0].ndim
    if nd == 0:
        raise ValueError("cat(): zero-dimensional tensors cannot be concatenated")
    d = _dim(dim, nd, "cat")
    for i, t in enumerate(ts):
        if t.ndim != nd or t.shape[:d] + t.shape[d + 1:] != ts[0].shape[:d] + ts[0].shape[d + 1:]:
            raise ValueError("cat(): sizes of tensors must match except in dimension %d: tensor 0 has shape %s, "
                             "tensor %d has shape %s" % (d, ts[0].shape, i, t.shape))
    y = np.concatenate([t.data for t in ts], axis=d)
    bounds = np.cumsum([t.shape[d] for t in ts])[:-1]

    def backward(g, needs):
        parts = np.split(g, bounds, axis=d)
        return tuple(p if n else None for p, n in zip(parts, needs))
    return record("cat", y, tuple(ts), backward, saved=())


concat = cat


def stack(tensors, dim=0):
    """Join equally shaped tensors along a new dimension ``dim``."""
    ts = _tensors(tensors, "stack")
    for i, t in enumerate(ts):
        if t.shape != ts[0].shape:
            raise ValueError("stack(): expects each tensor to be equal size, but got %s at entry 0 and %s at "
                             "entry %d" % (ts[0].shape, t.shape, i))
    d = _dim(dim, ts[0].ndim + 1, "stack")
    y = np.stack([t.data for t in ts], axis=d)

    def backward(g, needs):
        return tuple(np.take(g, i, axis=d) if n else None for i, n in enumerate(needs))
    return record("stack", y, tuple(ts), backward, saved=())


def _slice(t, d, start, stop):
    """``t[..., start:stop, ...]`` along ``d`` as one tape record (its gradient padded back with zeros)."""
    index = (slice(None),) * d + (slice(start, stop),)
    shape, dtype = t.shape, t.dtype

    def backward(g, needs):
        full = np.zeros(shape, dtype)
        full[index] = g
        return (full,)
    return record("split", t.data[index], (t,), backward, saved=())


def split(tensor, split_size_or_sections, dim=0):
    """Pieces of ``tensor`` along ``dim``: of size ``split_size`` each (the last one smaller if need be) or of the
    listed sizes, which must add up to the dimension's size.  Returns a tuple of Tensors."""
    t = as_tensor(tensor)
    d = _dim(dim, t.ndim, "split")
    n = t.shape[d] if t.ndim else 1
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = [V.nonneg_int(s, "split", "split_size_or_sections") for s in split_size_or_sections]
        if sum(sizes) != n:
            raise ValueError("split(): split_size_or_sections %s must add up to the size %d of dimension %d"
                             % (list(sizes), n, d))
    else:
        size = V.nonneg_int(split_size_or_sections, "split", "split_size_or_sections")
        if size == 0:
            if n:
                raise ValueError("split(): split_size can only be 0 if dimension %d is empty" % d)
            sizes = [0]
        else:
            sizes = [size] * (n // size) + ([n % size] if n % size else [])
            sizes = sizes or [0]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return tuple(_slice(t, d, int(a), int(b)) for a, b in zip(starts[:-1], starts[1:]))


def chunk(input, chunks, dim=0):
    """Split into ``chunks`` pieces of ``ceil(size / chunks)`` along ``dim`` (fewer if the size runs out), as
    ``torch.chunk``."""
    t = as_tensor(input)
    chunks = V.positive_int(chunks, "chunk", "chunks")
    d = _dim(dim, t.ndim, "chunk")
    n = t.shape[d]
    if n == 0:
        return tuple(_slice(t, d, 0, 0) for _ in range(chunks))
    return split(t, -(-n // chunks), d)


# --------------------------------------------------------------------------------------------------- reductions
def _extreme(name, pick, input, dim, keepdim):
    t = as_tensor(input)
    x = t.data
    if dim is None:
        if x.size == 0:
            raise ValueError("%s(): expected a non-empty tensor when no dim is given" % name)
        y = pick(x)
        # torch spreads the gradient of a full reduction evenly over all elements equal to the extreme
        mask = x == y

        def backward(g, needs):
            return (mask * (g / mask.sum()),)
        return record(name, np.asarray(y), (t,), backward, saved=())
    d = _dim(dim, t.ndim, name)
    if x.ndim and x.shape[d] == 0:
        raise ValueError("%s(): expected reduction dimension %d to have a non-zero size" % (name, d))
    arg = np.argmax if pick is np.max else np.argmin
    xd = x if x.ndim else x.reshape(1)
    idx = arg(xd, axis=d)                          # the first occurrence (NumPy's arg* also stop at a NaN)
    idx = np.expand_dims(idx, d)
    values = np.take_along_axis(xd, idx, axis=d)
    shape = x.shape
    if not keepdim or not x.ndim:
        values, out_idx = np.squeeze(values, d), np.squeeze(idx, d)
    else:
        out_idx = idx
    if not x.ndim:
        values = values.reshape(())

    def backward(g, needs):
        full = np.zeros(xd.shape, g.dtype)
        gk = g.reshape(idx.shape)
        np.put_along_axis(full, idx, gk, axis=d)
        return (full.reshape(shape),)
    out = record(name, values, (t,), backward, saved=())
    result = MaxResult if name == "max" else MinResult
    return result(out, out_idx.astype(np.int64))


def max(input, dim=None, keepdim=False):
    """The largest element (``dim=None``: a 0-d Tensor; the gradient is shared evenly by equal maxima) or, along
    ``dim``, ``(values, indices)`` -- the gradient goes to the first maximum, whose index is returned, as torch."""
    return _extreme("max", np.max, input, dim, keepdim)


def min(input, dim=None, keepdim=False):
    """The smallest element, or ``(values, indices)`` along ``dim`` (see :func:`max`)."""
    return _extreme("min", np.min, input, dim, keepdim)


# --------------------------------------------------------------------------------------------------- elementwise
def abs(input):
    """``|x|``; the gradient is ``sign(x)`` (0 at 0, as torch)."""
    t = as_tensor(input)
    x = t.data
    return record("abs", np.abs(x), (t,), lambda g, n: (g * np.sign(x),))


def sqrt(input):
    """``sqrt(x)``; the gradient ``1 / (2 sqrt(x))`` (inf at 0)."""
    t = as_tensor(input)
    y = np.sqrt(t.data)
    return record("sqrt", y, (t,), lambda g, n: (g / (2 * y),))


def clamp(input, min=None, max=None):
    """``minimum(maximum(x, min), max)`` (``min > max`` gives ``max``, as torch).  The gradient passes where
    ``min <= x <= max``; Tensor bounds receive the gradient of the elements they replaced."""
    t = as_tensor(input)
    if min is None and max is None:
        raise ValueError("clamp(): at least one of 'min' or 'max' must not be None")
    x = t.data
    lo = None if min is None else _operand(min, t)
    hi = None if max is None else _operand(max, t)
    y = x
    if lo is not None:
        y = np.maximum(y, lo.data)
    if hi is not None:
        y = np.minimum(y, hi.data)
    y = np.asarray(y, dtype=np.result_type(x, y) if x.dtype.kind != "f" else x.dtype)
    take_lo = None if lo is None else (x < lo.data)
    take_hi = None if hi is None else (np.maximum(x, lo.data) if lo is not None else x) > hi.data
    if take_lo is not None and take_hi is not None:
        take_lo = take_lo & ~take_hi
    keep = np.ones(x.shape, bool)
    for m in (take_lo, take_hi):
        if m is not None:
            keep = keep & ~m

    def backward(g, needs):
        return (g * keep if needs[0] else None,
                g * take_lo if needs[1] else None,
                g * take_hi if needs[2] else None)
    return record("clamp", y, (t, lo, hi), backward, saved=())


clip = clamp


def where(condition, input, other):
    """``input`` where ``condition`` holds, else ``other`` (broadcast together); each gets the gradient of the
    elements it supplied."""
    cond = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    if cond.dtype != np.bool_:
        raise TypeError("where(): argument 'condition' must be a bool array, got dtype %s" % cond.dtype)
    a = as_tensor(input) if isinstance(input, Tensor) or not isinstance(other, Tensor) else _operand(input, other)
    b = _operand(other, a)
    y = np.where(cond, a.data, b.data)

    def backward(g, needs):
        zero = np.zeros((), g.dtype)
        return (np.where(cond, g, zero) if needs[0] else None, np.where(cond, zero, g) if needs[1] else None)
    return record("where", y, (a, b), backward, saved=())


# --------------------------------------------------------------------------------------------------- shapes
def squeeze(input, dim=None):
    """Remove dimensions of size 1 (all of them, or those listed in ``dim`` that have size 1)."""
    t = as_tensor(input)
    if dim is None:
        shape = tuple(s for s in t.shape if s != 1)
    else:
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        dims = {_dim(d, t.ndim, "squeeze") for d in dims}
        shape = tuple(s for i, s in enumerate(t.shape) if not (i in dims and s == 1))
    return t.reshape(shape) if shape != t.shape else t


def unsqueeze(input, dim):
    """Insert a dimension of size 1 at ``dim`` (``-input.ndim - 1 <= dim <= input.ndim``)."""
    t = as_tensor(input)
    d = _dim(dim, t.ndim + 1, "unsqueeze")
    return t.reshape(t.shape[:d] + (1,) + t.shape[d:])


def flatten(input, start_dim=0, end_dim=-1):
    """Merge dimensions ``start_dim..end_dim`` into one (``torch.flatten``: everything by default)."""
    t = as_tensor(input)
    s, e = _dim(start_dim, t.ndim, "flatten", "start_dim"), _dim(end_dim, t.ndim, "flatten", "end_dim")
    if s > e:
        raise ValueError("flatten(): start_dim %d comes after end_dim %d" % (start_dim, end_dim))
    return t.flatten(s, e)


_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def _pad_index(n, lo, hi, mode):
    """Source positions of a padded axis of length ``n + lo + hi`` (``lo``/``hi`` may be negative: a crop)."""
    j = np.arange(-lo, n + hi)
    if mode == "reflect":
        period = 2 * (n - 1)
        j = np.abs(j) % period if period else np.zeros_like(j)
        return np.where(j >= n, period - j, j)
    if mode == "replicate":
        return np.clip(j, 0, n - 1)
    return j % n                                          # circular


def pad(input, pad, mode="constant", value=None):
    """Pad the last ``len(pad) // 2`` dimensions, ``pad = (last_lo, last_hi, second_last_lo, ...)`` as
    ``torch.nn.functional.pad``; modes ``constant`` (fill ``value``, default 0; negative pads crop), ``reflect``
    (mirror without repeating the edge, pads < size), ``replicate`` (repeat the edge) and ``circular`` (wrap,
    pads <= size).  The gradient of every padded element goes back to the element it copies."""
    fn = "pad"
    t = as_tensor(input)
    if not isinstance(pad, (list, tuple)) or len(pad) % 2:
        raise ValueError("pad(): argument 'pad' must be a tuple of even length, got %r" % (pad,))
    pads = list(V.int_tuple(tuple(pad), len(pad), fn, "pad")) if pad else []
    V.check_choice(mode, _PAD_MODES, fn, "mode")
    k = len(pads) // 2
    if k > t.ndim:
        raise ValueError("pad(): padding %s covers %d dimensions but the input has only %d"
                         % (tuple(pads), k, t.ndim))
    if mode != "constant" and value not in (None, 0):
        raise ValueError("pad(): argument 'value' is only used with mode='constant', got mode=%r" % mode)
    axes = [(t.ndim - 1 - i, pads[2 * i], pads[2 * i + 1]) for i in range(k)]
    x = t.data
    for ax, lo, hi in axes:
        n = x.shape[ax]
        if n + lo + hi < 0:
            raise ValueError("pad(): padding (%d, %d) makes dimension %d of size %d negative" % (lo, hi, ax, n))
        if mode == "reflect" and builtins.max(lo, hi) >= n:
            raise ValueError("pad(): reflect padding (%d, %d) must be smaller than the size %d of dimension %d"
                             % (lo, hi, n, ax))
        if mode == "circular" and builtins.max(lo, hi) > n:
            raise ValueError("pad(): circular padding (%d, %d) must not exceed the size %d of dimension %d"
                             % (lo, hi, n, ax))
        if mode in ("replicate",) and n == 0 and (lo > 0 or hi > 0):
            raise ValueError("pad(): replicate padding needs a non-empty dimension %d" % ax)
        if mode != "constant" and builtins.min(lo, hi) < 0:
            raise ValueError("pad(): negative padding is only supported with mode='constant', got %s"
                             % (tuple(pads),))
    shape = x.shape
    if mode == "constant":
        out_shape = list(shape)
        src, dst = [slice(None)] * t.ndim, [slice(None)] * t.ndim
        for ax, lo, hi in axes:
            n = shape[ax]
            out_shape[ax] = n + lo + hi
            src[ax] = slice(builtins.max(-lo, 0), n - builtins.max(-hi, 0))
            dst[ax] = slice(builtins.max(lo, 0), builtins.max(lo, 0) + builtins.max(n - builtins.max(-lo, 0)
                                                                                   - builtins.max(-hi, 0), 0))
        fill = 0 if value is None else V.real_scalar(value, fn, "value")
        y = np.full(out_shape, fill, dtype=x.dtype)
        src, dst = tuple(src), tuple(dst)
        y[dst] = x[src]

        def backward(g, needs):
            gx = np.zeros(shape, g.dtype)
            gx[src] = g[dst]
            return (gx,)
        return record("pad", y, (t,), backward, saved=())
    index = [(ax, lo, _pad_index(x.shape[ax], lo, hi, mode)) for ax, lo, hi in axes]
    y = x
    for ax, lo, idx in index:
        y = np.take(y, idx, axis=ax)

    def backward(g, needs):
        # the adjoint of each gather: the centre maps to itself; add the few border rows onto their sources
        for ax, lo, idx in reversed(index):
            n = shape[ax]
            gm = np.moveaxis(g, ax, 0)
            out = gm[lo:lo + n].copy()
            border = np.r_[0:lo, lo + n:idx.size]
            np.add.at(out, idx[border], gm[border])
            g = np.moveaxis(out, 0, ax)
        return (np.ascontiguousarray(g),)
    return record("pad", y, (t,), backward, saved=())


# --------------------------------------------------------------------------------------------------- Tensor methods
def _method(fn):
    def method(self, *args, **kwargs):
        return fn(self, *args, **kwargs)
    method.__name__ = method.__qualname__ = fn.__name__
    method.__doc__ = fn.__doc__
    return method


for _name, _fn in (("abs", abs), ("__abs__", abs), ("sqrt", sqrt), ("clamp", clamp), ("clip", clamp),
                   ("max", max), ("min", min), ("squeeze", squeeze), ("unsqueeze", unsqueeze), ("split", split),
                   ("chunk", chunk)):
    setattr(Tensor, _name, _method(_fn))
del _name, _fn
