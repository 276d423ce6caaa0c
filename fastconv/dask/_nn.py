"""Lazy convolutions, transposed convolutions, pools and model inference over ``(N, C, *spatial)`` dask arrays.

Samples are independent, so every operation runs block by block along the batch axis (channels and spatial
axes are brought into one chunk).  Convolutions with stride 1 also run over spatial chunks: each output block
reads its input block extended by the kernel's reach (``dilation * (kernel - 1)``), padded explicitly at the
array's edges by the padding mode, and is convolved without padding; the result equals the in-memory
convolution of the whole array.
"""
import copy
import functools

import numpy as np

from .. import conv as _conv
from .. import pooling as _pooling
from .._geometry import ConvGeometry
from ..autograd import no_grad
from ..nn.module import to_numpy
from ._filters import as_dask
from ._overlap import explicit_plan, overlap_array

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "lp_pool1d",
           "lp_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
           "adaptive_max_pool2d", "adaptive_max_pool3d", "global_max_pool", "global_avg_pool", "kmax_pool",
           "max_unpool1d", "max_unpool2d", "max_unpool3d", "predict", "batchwise"]

# conv padding_mode -> index_map mode of the explicit extension
_PAD_MODES = {"zeros": "constant", "reflect": "mirror", "replicate": "nearest", "circular": "wrap"}


def _batch_input(x, fn, nd=None):
    x = as_dask(x, fn, "input")
    if nd is not None and x.ndim != nd + 2:
        from .._validate import LAYOUT
        raise ValueError("fastconv.dask.%s(): argument 'input' must be %d-D (%s), got a %d-D array of shape %s"
                         % (fn, nd + 2, LAYOUT[nd], x.ndim, x.shape))
    if x.ndim < 2:
        raise ValueError("fastconv.dask.%s(): argument 'input' must be laid out (N, C, *spatial), got a %d-D "
                         "array of shape %s" % (fn, x.ndim, x.shape))
    return x


def _whole(x):
    """Every axis but the batch axis in one chunk."""
    return x.rechunk({a: -1 for a in range(1, x.ndim)})


def batchwise(fn, func, x, *others, threads=None, deps=()):
    """``func(block, *other_blocks, *deps)`` for every block of ``x`` along the batch axis (the other axes in one
    chunk; ``others``: arrays with the same batch length, rechunked like ``x``; ``deps``: delayed values passed
    whole).  The output shape and dtype (``func`` may return a tuple of arrays of one shape) come from ``func``
    on one sample of zeros, which also validates the arguments with the in-memory function's own errors."""
    x = _whole(x)
    others = tuple(_whole(o).rechunk({0: x.chunks[0]}) for o in others)
    dep_values = [d.compute() if hasattr(d, "compute") else d for d in deps]
    sample = func(np.zeros((1,) + x.shape[1:], x.dtype), *[np.zeros((1,) + o.shape[1:], o.dtype) for o in others],
                  *dep_values)
    multi = isinstance(sample, tuple)
    results = sample if multi else (sample,)
    tail = results[0].shape[1:]
    out_chunks = (x.chunks[0],) + tuple((s,) for s in tail)
    whole = [[(0, slice(None), n)] for n in x.shape[1:]]

    def plan(block):
        return [[(block[0], slice(None), x.chunks[0][block[0]])]] + whole, None
    plan.__name__ = "batch-plan"
    dtype = tuple(r.dtype for r in results) if multi else results[0].dtype
    return overlap_array(func, (x,) + others, plan, out_chunks, dtype, name="fastconv-" + fn, threads=threads,
                         deps=deps)


# ------------------------------------------------------------------------------------------- convolutions
def _shifted_chunks(chunks, n_out):
    """Output chunks along an axis whose output has ``n_out`` elements: the input's chunk boundaries, cut at
    ``n_out`` (the last chunk absorbs a longer output)."""
    bounds = np.cumsum((0,) + tuple(chunks))
    cuts = [int(b) for b in bounds[1:-1] if 0 < b < n_out] + [n_out]
    out, prev = [], 0
    for c in cuts:
        out.append(c - prev)
        prev = c
    return tuple(out)


def _conv_nd(fn, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, flip,
             threads):
    x = _batch_input(input, fn, nd)
    func = getattr(_conv, fn)
    w = np.asarray(weight) if not hasattr(weight, "__dask_graph__") else weight.compute()
    b = None if bias is None else (np.asarray(bias) if not hasattr(bias, "__dask_graph__") else bias.compute())
    geom = ConvGeometry.make(x.shape, w.shape, stride, padding, dilation, groups, fn, padding_mode)
    spatial_chunked = any(len(c) > 1 for c in x.chunks[2:])
    if not spatial_chunked or any(s != 1 for s in geom.stride):
        kw = dict(weight=w, bias=b, stride=stride, padding=padding, dilation=dilation, groups=groups,
                  padding_mode=padding_mode, algorithm=algorithm, flip=flip)
        return batchwise(fn, functools.partial(func, **kw), x, threads=threads)
    # stride 1 over spatial chunks: explicit extension by the padding mode, then a valid convolution per block
    x = x.rechunk({1: -1})
    reach = [d * (k - 1) for d, k in zip(geom.dilation, w.shape[2:])]
    out_sp = geom.output_shape[2:]
    kw = dict(weight=w, bias=b, stride=1, padding=0, dilation=dilation, groups=groups, algorithm=algorithm,
              flip=flip)
    probe = func(np.zeros((1, x.shape[1]) + tuple(r + 1 for r in reach), x.dtype), **kw)   # validates, dtype
    mode = _PAD_MODES[geom.padding_mode]
    out_chunks = (x.chunks[0], (w.shape[0],)) + tuple(_shifted_chunks(c, n) for c, n in zip(x.chunks[2:], out_sp))
    plans = [[([(i, slice(None), c)], slice(None)) for i, c in enumerate(x.chunks[0])],
             [([(0, slice(None), x.shape[1])], slice(None))]]
    for ax in range(nd):
        lo = geom.padding[ax][0]
        plans.append(explicit_plan(x.shape[2 + ax], x.chunks[2 + ax], out_chunks[2 + ax], lo, reach[ax], mode))
    return overlap_array(functools.partial(func, **kw), (x,), plans, out_chunks, probe.dtype, name="fastconv-" + fn,
                         threads=threads, fill=0.0)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", flip=False, threads=None):
    """Lazy :func:`fastconv.conv1d` over batch chunks (and, with stride 1, spatial chunks with halos)."""
    return _conv_nd("conv1d", 1, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm,
                    flip, threads)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", flip=False, threads=None):
    """Lazy :func:`fastconv.conv2d` over batch chunks (and, with stride 1, spatial chunks with halos)."""
    return _conv_nd("conv2d", 2, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm,
                    flip, threads)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", flip=False, threads=None):
    """Lazy :func:`fastconv.conv3d` over batch chunks (and, with stride 1, spatial chunks with halos)."""
    return _conv_nd("conv3d", 3, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm,
                    flip, threads)


def _computed(a):
    return a.compute() if hasattr(a, "__dask_graph__") else a


def _conv_t(fn, nd, input, weight, bias, stride, padding, output_padding, groups, dilation, algorithm, threads):
    x = _batch_input(input, fn, nd)
    kw = dict(weight=_computed(weight), bias=_computed(bias), stride=stride, padding=padding,
              output_padding=output_padding, groups=groups, dilation=dilation, algorithm=algorithm)
    return batchwise(fn, functools.partial(getattr(_conv, fn), **kw), x, threads=threads)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", threads=None):
    """Lazy :func:`fastconv.conv_transpose1d` over batch chunks."""
    return _conv_t("conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding, groups, dilation,
                   algorithm, threads)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", threads=None):
    """Lazy :func:`fastconv.conv_transpose2d` over batch chunks."""
    return _conv_t("conv_transpose2d", 2, input, weight, bias, stride, padding, output_padding, groups, dilation,
                   algorithm, threads)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", threads=None):
    """Lazy :func:`fastconv.conv_transpose3d` over batch chunks."""
    return _conv_t("conv_transpose3d", 3, input, weight, bias, stride, padding, output_padding, groups, dilation,
                   algorithm, threads)


# ------------------------------------------------------------------------------------------------- pools
def _pool(name):
    func = getattr(_pooling, name)

    def lazy(input, *args, threads=None, **kwargs):
        x = _batch_input(input, name)
        return batchwise(name, functools.partial(_call, func, args, kwargs), x, threads=threads)
    lazy.__name__ = lazy.__qualname__ = name
    lazy.__doc__ = ("Lazy :func:`fastconv.%s` over batch chunks (same arguments; with ``return_indices=True`` a "
                    "pair of dask arrays)." % name)
    return lazy


def _call(func, args, kwargs, x, *more):
    return func(x, *more, *args, **kwargs)


def _unpool(name):
    func = getattr(_pooling, name)

    def lazy(input, indices, kernel_size, stride=None, padding=0, output_size=None, *, threads=None):
        x = _batch_input(input, name)
        idx = as_dask(indices, name, "indices")
        if idx.shape != x.shape:
            raise ValueError("fastconv.dask.%s(): argument 'indices' must have the input's shape %s, got %s"
                             % (name, x.shape, idx.shape))
        kw = dict(kernel_size=kernel_size, stride=stride, padding=padding, output_size=output_size)
        return batchwise(name, functools.partial(_unpool_call, func, kw), x, idx, threads=threads)
    lazy.__name__ = lazy.__qualname__ = name
    lazy.__doc__ = "Lazy :func:`fastconv.%s` over batch chunks (``indices`` chunked like ``input``)." % name
    return lazy


def _unpool_call(func, kw, x, idx):
    return func(x, idx, **kw)


max_pool1d, max_pool2d, max_pool3d = (_pool("max_pool%dd" % d) for d in (1, 2, 3))
avg_pool1d, avg_pool2d, avg_pool3d = (_pool("avg_pool%dd" % d) for d in (1, 2, 3))
lp_pool1d, lp_pool2d = (_pool("lp_pool%dd" % d) for d in (1, 2))
adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d = (_pool("adaptive_avg_pool%dd" % d)
                                                                 for d in (1, 2, 3))
adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d = (_pool("adaptive_max_pool%dd" % d)
                                                                 for d in (1, 2, 3))
global_max_pool, global_avg_pool, kmax_pool = _pool("global_max_pool"), _pool("global_avg_pool"), _pool("kmax_pool")
max_unpool1d, max_unpool2d, max_unpool3d = (_unpool("max_unpool%dd" % d) for d in (1, 2, 3))


# ------------------------------------------------------------------------------------------------ models
def _predict_block(batch_size, x, model):
    with no_grad():
        outs = [to_numpy(model(x[i:i + batch_size])) for i in range(0, x.shape[0], batch_size)]
    return outs[0] if len(outs) == 1 else np.concatenate(outs)


def predict(model, images, batch_size=256, *, threads=None):
    """``model(images)`` in eval mode (no gradients) as a lazy array, ``batch_size`` samples at a time.

    ``images`` is a dask array whose first axis is the batch (any chunking; the other axes are brought into
    one chunk).  The model is copied (the caller's model keeps its mode) and sent to the workers once.  Each
    block of the result equals the in-memory ``model(block)`` in eval mode.
    """
    import dask
    from .._validate import positive_int
    from ..nn.module import Module
    if not isinstance(model, Module):
        raise TypeError("fastconv.dask.predict(): argument 'model' must be a fastconv.nn.Module, got %s"
                        % type(model).__name__)
    batch_size = positive_int(batch_size, "fastconv.dask.predict", "batch_size")
    x = as_dask(images, "predict", "images")
    if x.ndim < 1:
        raise ValueError("fastconv.dask.predict(): argument 'images' must have a batch axis, got a 0-D array")
    m = copy.deepcopy(model)
    m.eval()
    dm = dask.delayed(m, pure=True)
    return batchwise("predict", functools.partial(_predict_block, batch_size), x, threads=threads, deps=(dm,))
