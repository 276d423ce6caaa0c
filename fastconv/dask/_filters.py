"""Lazy counterparts of :mod:`fastconv.filters`: the same arguments (minus ``out=``), dask arrays in and out.

Each function validates its arguments once, eagerly, by running the in-memory filter on a one-element image of
the same number of dimensions and dtype (so a mistake raises the in-memory function's own error, at once, and
the result dtype is known), computes its halo per axis from the normalised arguments, and builds one task per
output block with :func:`~fastconv.dask._overlap.overlap_array`.  ``method="auto"`` is decided once for the whole
array's shape (as the in-memory call on the whole array would), so every block runs the same algorithm.
"""
import functools

import numpy as np

from .. import _threads
from .. import filters
from ..filters import _args as A
from ..filters import _engine as E
from ..filters import _skimage as S
from ..filters._named import _kernel
from ..ndimage._filters import _window_halo
from ._overlap import axis_plan, check_known_chunks, overlap_array, result_array, scratch, slab_slot

__all__ = ["correlate", "convolve", "gaussian", "sobel", "prewitt", "scharr", "laplace", "unsharp_mask",
           "apply_kernel", "neighbourhood", "as_dask"]


def as_dask(x, fn, arg="image"):
    """A dask array (NumPy arrays and array-likes are wrapped in one chunk) with known chunk sizes."""
    import dask.array as da
    if not isinstance(x, da.Array):
        if isinstance(x, (str, bytes)) or not hasattr(x, "shape") and not isinstance(x, (list, tuple)):
            raise TypeError("fastconv.dask.%s(): argument '%s' must be a dask array, got %s"
                            % (fn, arg, type(x).__name__))
        x = da.asarray(x)
    check_known_chunks(x, fn, range(x.ndim))
    return x


def _dummy(x):
    return np.zeros((1,) * x.ndim, x.dtype)


def neighbourhood(fn, func, x, halo, modes, *, extra=(), threads=None, dtype=None, deps=()):
    """The lazy result of ``func(slab, *extra_slabs, *deps)`` over ``x`` (a filter whose passes read
    ``halo[ax] = (before, after)`` elements around each output along axis ``ax`` and apply ``modes[ax]`` at the
    array's edges).  ``extra``: dask arrays of ``x``'s shape read with the same slabs (masks); ``deps``: small
    dask collections computed once and passed whole (global statistics)."""
    extra = tuple(e.rechunk(x.chunks) for e in extra)
    plans = [axis_plan(c, b, a, m) for c, (b, a), m in zip(x.chunks, halo, modes)]
    # masks are False outside the image whatever the image's mode: their periodic slabs are filled instead
    mask_plans = [axis_plan(c, b, a, m, outside=True) for c, (b, a), m in zip(x.chunks, halo, modes)]
    if dtype is None:
        dtype = np.asarray(func(_dummy(x), *[_dummy(e) for e in extra],
                                *[np.zeros((), d.dtype) for d in deps])).dtype
    return overlap_array(func, (x,) + extra, plans, x.chunks, dtype, name="fastconv-" + fn, threads=threads,
                         deps=deps, source_plans=[mask_plans] * len(extra))


def _resolved_method(method, shape, weights, comp, fn):
    """``method`` with ``"auto"`` decided for the whole array (as ``_engine.apply`` decides it)."""
    if method != "auto" or not int(np.prod(shape)):
        return method
    factors = E.rank1_factors(weights, comp)
    return E.choose(shape, weights, comp, _threads.get_num_threads(), factors)


def _filter_nd(fn, flip, image, weights, mode, cval, origin, method, threads):
    x = as_dask(image, fn)
    func = getattr(filters, fn)
    kw = dict(mode=mode, cval=cval, origin=origin)
    dtype = func(_dummy(x), weights, method=method, **kw).dtype           # validates every argument
    w = A.weights_array(weights, x.ndim, fn)
    org = A.origins(origin, w.shape, fn, flip)
    wc = w[(slice(None, None, -1),) * w.ndim] if flip else w
    from .. import _validate as V
    comp = V.float_kind(x.dtype)
    method = _resolved_method(method, x.shape, wc, comp, fn)
    halo = [_window_halo(k, o) for k, o in zip(w.shape, org)]
    run = functools.partial(func, weights=w, method=method, **kw)
    return neighbourhood(fn, run, x, halo, A.modes(mode, x.ndim, fn), threads=threads, dtype=dtype)


def correlate(image, weights, *, mode="reflect", cval=0.0, origin=0, method="auto", threads=None):
    """Lazy :func:`fastconv.filters.correlate` (equal to it on the whole array, see :mod:`fastconv.dask`)."""
    return _filter_nd("correlate", False, image, weights, mode, cval, origin, method, threads)


def convolve(image, weights, *, mode="reflect", cval=0.0, origin=0, method="auto", threads=None):
    """Lazy :func:`fastconv.filters.convolve` (equal to it on the whole array, see :mod:`fastconv.dask`)."""
    return _filter_nd("convolve", True, image, weights, mode, cval, origin, method, threads)


def gaussian(image, sigma=1.0, *, mode="nearest", cval=0, preserve_range=False, truncate=4.0, channel_axis=None,
             threads=None):
    """Lazy :func:`fastconv.filters.gaussian`: halo ``int(truncate * sigma + 0.5)`` per axis."""
    fn = "gaussian"
    x = as_dask(image, fn)
    kw = dict(sigma=sigma, mode=mode, cval=cval, preserve_range=preserve_range, truncate=truncate,
              channel_axis=channel_axis)
    dtype = filters.gaussian(_dummy(x), **kw).dtype
    ch = A.channel_axis(channel_axis, x.ndim, fn)
    modes = A.modes(mode, x.ndim, fn)
    halo = [(0, 0)] * x.ndim
    passes = S._gaussian_passes(S._sigmas(sigma, x.ndim, ch, fn), float(truncate), modes,
                                A.real(cval, fn, "cval"))
    for axis, _, r, _, _ in passes:
        halo[axis] = (r, r)
    return neighbourhood(fn, _GaussianBlock(passes, preserve_range), x, halo, modes, threads=threads,
                         dtype=dtype)


class _GaussianBlock:
    """:func:`fastconv.filters.gaussian` of a slab, pass by pass, each pass computing only the part of its axis
    that the block keeps: a pass reads only along its own axis, so later passes need only the kept part of it
    (the last pass writes the block's result directly).  The same 1-D sums, in the same order and precision, as
    the in-memory function.  Intermediate volumes alternate between a buffer that each task thread reuses from
    block to block (fresh memory costs a page fault per 4 KiB) and the thread's slab buffer, free once the
    first pass has read it."""

    crops = True

    def __init__(self, passes, preserve_range):
        self.passes, self.preserve_range = passes, preserve_range

    def __call__(self, slab, crop=None):
        cur = np.ascontiguousarray(A.float_image(A.image_array(slab, "gaussian", allow_bool=True),
                                                 self.preserve_range))
        nthreads = _threads.get_num_threads()
        crop = crop if crop is not None else (slice(None),) * cur.ndim
        keep = [c.indices(n)[:2] for c, n in zip(crop, cur.shape)]
        # axes without a pass (sigma 0, channels) are cropped at the end
        rest = tuple(slice(None) if any(p[0] == a for p in self.passes) else c for a, c in enumerate(crop))
        direct = all(r == slice(None) for r in rest)
        for i, (axis, w1, off, mode, cval) in enumerate(self.passes):
            start, stop = keep[axis]
            shape = cur.shape[:axis] + (stop - start,) + cur.shape[axis + 1:]
            if direct and i == len(self.passes) - 1:
                dst = result_array(shape, cur.dtype)            # the block's result: a new array
            else:
                dst = scratch(slab_slot(0) if i % 2 else "gaussian", shape, cur.dtype)
            if dst.size:
                E._pass(cur, dst, axis, w1, off, mode, cval, nthreads, start=start)
            cur = dst
        return cur if direct and self.passes else np.array(cur[rest])


def _edge(fn, image, mask, axis, mode, cval, threads):
    x = as_dask(image, fn)
    func = getattr(filters, fn)
    kw = dict(axis=axis, mode=mode, cval=cval)
    if mask is None:
        dtype = func(_dummy(x), **kw).dtype
        return neighbourhood(fn, functools.partial(func, **kw), x, [(1, 1)] * x.ndim, A.modes(mode, x.ndim, fn),
                             threads=threads, dtype=dtype)
    m = as_dask(mask, fn, "mask")
    if m.shape != x.shape:
        raise ValueError("%s(): argument 'mask' must have the image's shape %s, got %s" % (fn, x.shape, m.shape))
    dtype = func(_dummy(x), _dummy(m), **kw).dtype

    def run(img, msk):
        return func(img, msk, **kw)
    run.__name__ = fn
    return neighbourhood(fn, run, x, [(1, 1)] * x.ndim, A.modes(mode, x.ndim, fn), extra=(m,), threads=threads,
                         dtype=dtype)


def sobel(image, mask=None, *, axis=None, mode="reflect", cval=0.0, threads=None):
    """Lazy :func:`fastconv.filters.sobel` (halo 1 on every axis; ``mask`` may be a dask array)."""
    return _edge("sobel", image, mask, axis, mode, cval, threads)


def prewitt(image, mask=None, *, axis=None, mode="reflect", cval=0.0, threads=None):
    """Lazy :func:`fastconv.filters.prewitt` (halo 1 on every axis; ``mask`` may be a dask array)."""
    return _edge("prewitt", image, mask, axis, mode, cval, threads)


def scharr(image, mask=None, *, axis=None, mode="reflect", cval=0.0, threads=None):
    """Lazy :func:`fastconv.filters.scharr` (halo 1 on every axis; ``mask`` may be a dask array)."""
    return _edge("scharr", image, mask, axis, mode, cval, threads)


def laplace(image, ksize=3, mask=None, *, threads=None):
    """Lazy :func:`fastconv.filters.laplace` (halo 1 on every axis, mode 'reflect')."""
    fn = "laplace"
    x = as_dask(image, fn)
    modes = ("reflect",) * x.ndim
    if mask is None:
        dtype = filters.laplace(_dummy(x), ksize).dtype
        return neighbourhood(fn, functools.partial(filters.laplace, ksize=ksize), x, [(1, 1)] * x.ndim, modes,
                             threads=threads, dtype=dtype)
    m = as_dask(mask, fn, "mask")
    if m.shape != x.shape:
        raise ValueError("%s(): argument 'mask' must have the image's shape %s, got %s" % (fn, x.shape, m.shape))
    dtype = filters.laplace(_dummy(x), ksize, _dummy(m)).dtype

    def run(img, msk):
        return filters.laplace(img, ksize, msk)
    return neighbourhood(fn, run, x, [(1, 1)] * x.ndim, modes, extra=(m,), threads=threads, dtype=dtype)


def unsharp_mask(image, radius=1.0, amount=1.0, preserve_range=False, *, channel_axis=None, threads=None):
    """Lazy :func:`fastconv.filters.unsharp_mask`.

    Without ``preserve_range`` the result is clipped to [-1, 1] if the whole image has a negative value, else to
    [0, 1]: that test is one small reduction over the image, computed with the blocks.
    """
    fn = "unsharp_mask"
    x = as_dask(image, fn)
    kw = dict(radius=radius, amount=amount, preserve_range=preserve_range, channel_axis=channel_axis)
    dtype = filters.unsharp_mask(_dummy(x), **kw).dtype
    ch = A.channel_axis(channel_axis, x.ndim, fn)
    halo = [(0, 0)] * x.ndim
    modes = ("reflect",) * x.ndim
    sig = S._sigmas(radius, x.ndim, ch, fn, arg="radius", full_ok=False)
    for axis, _, r, _, _ in S._gaussian_passes(sig, 4.0, modes, 0.0):
        halo[axis] = (r, r)
    if preserve_range:
        return neighbourhood(fn, functools.partial(filters.unsharp_mask, **kw), x, halo, modes, threads=threads,
                             dtype=dtype)
    negative = (x < 0).any() if x.dtype.kind in "fi" else None

    def run(img, neg=False):
        return S.unsharp_mask_range(img, radius, amount, (-1.0, 1.0) if neg else (0.0, 1.0), channel_axis)
    return neighbourhood(fn, run, x, halo, modes, threads=threads, dtype=dtype,
                         deps=() if negative is None else (negative,))


def apply_kernel(image, kernel, *, mode="reflect", cval=0.0, channel_axis=None, preserve_range=False,
                 method="auto", threads=None):
    """Lazy :func:`fastconv.filters.apply_kernel` (halo from the kernel's shape)."""
    fn = "apply_kernel"
    x = as_dask(image, fn)
    kw = dict(mode=mode, cval=cval, channel_axis=channel_axis, preserve_range=preserve_range)
    dtype = filters.apply_kernel(_dummy(x), kernel, method=method, **kw).dtype
    ch = A.channel_axis(channel_axis, x.ndim, fn)
    w = _kernel(kernel, x.ndim - (ch is not None), fn)
    if ch is not None:
        w = np.expand_dims(w, ch)
    halo = [_window_halo(k, -(1 - k % 2)) for k in w.shape]            # convolve's origin rule for even k
    method = _resolved_method(method, x.shape, w[(slice(None, None, -1),) * w.ndim], np.dtype(dtype), fn)
    run = functools.partial(filters.apply_kernel, kernel=kernel, method=method, **kw)
    return neighbourhood(fn, run, x, halo, A.modes(mode, x.ndim, fn), threads=threads, dtype=dtype)


# ------------------------------------------------------------------ scikit-image's other neighbourhood filters
def _with_mask(fn, func, x, mask, halo, modes, threads, **kw):
    """``func(image, mask, **kw)`` (``mask`` None or a dask array of the image's shape) over the blocks."""
    if mask is None:
        dtype = func(_dummy(x), **kw).dtype
        return neighbourhood(fn, functools.partial(func, **kw), x, halo, modes, threads=threads, dtype=dtype)
    m = as_dask(mask, fn, "mask")
    if m.shape != x.shape:
        raise ValueError("%s(): argument 'mask' must have the image's shape %s, got %s" % (fn, x.shape, m.shape))
    dtype = func(_dummy(x), mask=_dummy(m), **kw).dtype
    return neighbourhood(fn, functools.partial(_masked_call, func, kw), x, halo, modes, extra=(m,), threads=threads,
                         dtype=dtype)


def _masked_call(func, kw, img, msk):
    return func(img, mask=msk, **kw)


def _two_d_only(x, fn):
    if x.ndim != 2:
        raise ValueError("%s(): the image must be 2-D, got %d-D" % (fn, x.ndim))


def _directional(name, reach):
    def lazy(image, mask=None, *, threads=None):
        x = as_dask(image, name)
        _two_d_only(x, name)
        return _with_mask(name, getattr(filters, name), x, mask, [(reach, reach)] * 2, ("reflect",) * 2, threads)
    lazy.__name__ = lazy.__qualname__ = name
    lazy.__doc__ = "Lazy :func:`fastconv.filters.%s` (halo %d; ``mask`` may be a dask array)." % (name, reach)
    return lazy


sobel_h, sobel_v = _directional("sobel_h", 1), _directional("sobel_v", 1)
prewitt_h, prewitt_v = _directional("prewitt_h", 1), _directional("prewitt_v", 1)
scharr_h, scharr_v = _directional("scharr_h", 1), _directional("scharr_v", 1)
farid_h, farid_v = _directional("farid_h", 2), _directional("farid_v", 2)
roberts, roberts_pos_diag = _directional("roberts", 1), _directional("roberts_pos_diag", 1)
roberts_neg_diag = _directional("roberts_neg_diag", 1)


def farid(image, mask=None, *, axis=None, mode="reflect", cval=0.0, threads=None):
    """Lazy :func:`fastconv.filters.farid` (5-tap kernels: halo 2 on every axis)."""
    x = as_dask(image, "farid")
    return _with_mask("farid", filters.farid, x, mask, [(2, 2)] * x.ndim, A.modes(mode, x.ndim, "farid"), threads,
                      axis=axis, mode=mode, cval=cval)


def difference_of_gaussians(image, low_sigma, high_sigma=None, *, mode="nearest", cval=0, channel_axis=None,
                            truncate=4.0, threads=None):
    """Lazy :func:`fastconv.filters.difference_of_gaussians` (halo: the wider Gaussian's radius)."""
    fn = "difference_of_gaussians"
    x = as_dask(image, fn)
    kw = dict(low_sigma=low_sigma, high_sigma=high_sigma, mode=mode, cval=cval, channel_axis=channel_axis,
              truncate=truncate)
    dtype = filters.difference_of_gaussians(_dummy(x), **kw).dtype
    ch = A.channel_axis(channel_axis, x.ndim, fn)
    spatial = [a for a in range(x.ndim) if a != ch]
    low = np.array(low_sigma, dtype=float, ndmin=1) * np.ones(len(spatial))
    high = low * 1.6 if high_sigma is None else np.array(high_sigma, dtype=float, ndmin=1) * np.ones(len(spatial))
    halo = [(0, 0)] * x.ndim
    for a, s in zip(spatial, np.maximum(low, high)):
        r = int(float(truncate) * s + 0.5) if s > 1e-15 else 0
        halo[a] = (r, r)
    return neighbourhood(fn, functools.partial(filters.difference_of_gaussians, **kw), x, halo,
                         A.modes(mode, x.ndim, fn), threads=threads, dtype=dtype)


def median(image, footprint=None, *, mode="nearest", cval=0.0, behavior="ndimage", threads=None):
    """Lazy :func:`fastconv.filters.median` (halo: half the footprint; ``behavior='rank'`` counts only pixels
    inside the image, which the blocks at the array's edges see as the in-memory filter does)."""
    fn = "median"
    x = as_dask(image, fn)
    kw = dict(footprint=footprint, mode=mode, cval=cval, behavior=behavior)
    dtype = filters.median(_dummy(x), **kw).dtype
    shape = (3,) * x.ndim if footprint is None else np.shape(footprint)
    halo = [(k // 2, k // 2) for k in shape]
    modes = A.modes(mode, x.ndim, fn) if behavior == "ndimage" else ("constant",) * x.ndim
    return neighbourhood(fn, functools.partial(filters.median, **kw), x, halo, modes, threads=threads, dtype=dtype)


def _rank(kind):
    func = getattr(filters.rank, kind)

    def lazy(image, footprint, mask=None, shift_x=0, shift_y=0, shift_z=0, *, threads=None):
        x = as_dask(image, kind)
        shifts = [shift_y, shift_x] if x.ndim == 2 else [shift_x, shift_y, shift_z]
        shape = np.shape(footprint)
        halo = [(k // 2 + abs(int(s)), k // 2 + abs(int(s))) for k, s in zip(shape, shifts)]
        if len(halo) != x.ndim:         # the in-memory function reports the mismatch
            func(_dummy(x), footprint)
        return _with_mask(kind, func, x, mask, halo, ("constant",) * x.ndim, threads, footprint=footprint,
                          shift_x=shift_x, shift_y=shift_y, shift_z=shift_z)
    lazy.__name__ = lazy.__qualname__ = kind
    lazy.__doc__ = ("Lazy :func:`fastconv.filters.rank.%s` (halo: half the footprint plus the shift; ``mask`` may "
                    "be a dask array)." % kind)
    return lazy
