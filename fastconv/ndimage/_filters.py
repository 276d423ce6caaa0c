"""scipy.ndimage's filter functions on fastconv's kernels.

Data path of every filter::

    public function -> _support (input, output, axes, per-axis sizes/origins/modes, scipy's checks)
                    -> passes (1-D line passes, or one footprint pass) -> kernel(out=...) -> cast into output

Two arithmetic paths:

* exact (float64, integer and bool images, and any image whose ``output`` is not float32): the linear filters
  run in float64 in scipy.ndimage's own operation order (``_kernels/_ndi.pyx``, compiled without fused
  multiply-add), so float64 results are bit-identical to scipy's and integer outputs truncate the same sums;
* float32 images with a float32 output: the linear filters run in float32 on the tuned correlation engine of
  :mod:`fastconv.filters` (direct, separable or FFT), within float32 rounding of scipy (which sums in float64).

Minimum, maximum and rank filters are exact on both paths (they only compare).  Multi-pass filters store their
intermediate results in the output's dtype between passes, as scipy.ndimage does.
"""
import functools
import math
import operator
import warnings

import numpy as np

from .. import _kernels, _threads
from ..filters import _engine as E
from ..filters._engine import gaussian_kernel1d, gaussian_radius
from . import _networks
from . import _support as S

_ndi = _kernels.module("_ndi")

__all__ = ["correlate1d", "convolve1d", "correlate", "convolve", "gaussian_filter1d", "gaussian_filter",
           "gaussian_laplace", "gaussian_gradient_magnitude", "generic_gradient_magnitude", "generic_laplace",
           "laplace", "sobel", "prewitt", "uniform_filter1d", "uniform_filter", "minimum_filter1d",
           "maximum_filter1d", "minimum_filter", "maximum_filter", "median_filter", "rank_filter",
           "percentile_filter", "filter_halo"]

# footprints of at most this many elements select their rank with a comparator network (vectorised across
# outputs); larger ones by a per-output selection
NETWORK_MAX = 100
# Footprint passes (rank, min/max, correlate over rows) wake a thread per this many element-taps at most: about
# 0.1 ms of a 3x3 median on one core, more than waking a sleeping thread costs on a quiet machine.
FOOTPRINT_GRAIN = 1 << 20


def _nthreads(work=None):
    """The thread count of a kernel call; with ``work`` (element-taps of a footprint pass), one thread per
    ``FOOTPRINT_GRAIN`` of it at most, so that small images are not held up by waking threads (results do not
    depend on the count)."""
    if work is None:
        return _threads.get_num_threads()
    return _threads.threads_for(work, grain=FOOTPRINT_GRAIN)


def _fast(input, output):
    """True when the float32 engine computes this call (float32 in and out)."""
    return input.dtype == np.float32 and output.dtype == np.float32


def _view3(arr, axis):
    shape = arr.shape
    return arr.reshape(math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:]))


@functools.lru_cache(maxsize=64)
def _emaps(n, lo, hi, mode):
    """Source index of the ``lo`` halo positions before a line of ``n`` and the ``hi`` after it (-1: cval);
    cached (read-only arrays)."""
    before = E.index_map(n, np.arange(-lo, 0), mode).astype(np.intp)
    after = E.index_map(n, np.arange(n, n + hi), mode).astype(np.intp)
    before, after = np.ascontiguousarray(before), np.ascontiguousarray(after)
    before.flags.writeable = after.flags.writeable = False
    return before, after


def _same_memory(a, b):
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0] and a.strides == b.strides
            and a.shape == b.shape)


def _target(output, dtype, src):
    """``output`` when a line kernel may write it directly (dtype, C order, and either no overlap with ``src`` or
    exactly ``src``: line tasks read their lines before writing them), else a new array."""
    if (output.dtype == dtype and output.flags.c_contiguous
            and (not np.may_share_memory(output, src) or _same_memory(output, src))):
        return output
    return np.empty(output.shape, dtype)


def _symmetry(w):
    """scipy's test: 1 symmetric, -1 antisymmetric (odd lengths only, to DBL_EPSILON), else 0."""
    n = w.shape[0]
    if not n & 1:
        return 0
    s1 = n // 2
    eps = np.finfo(np.float64).eps
    left, right = w[s1 - 1::-1] if s1 else w[:0], w[s1 + 1:]
    if np.all(np.abs(right - left) <= eps):
        return 1
    if np.all(np.abs(right + left) <= eps):
        return -1
    return 0


# ------------------------------------------------------------------------------------------------- line passes
def _strip_band(outer, n, inner, k, item):
    """(strip, band) of a rows kernel from the shape only: strips of inner elements whose van Herk buffers
    (3 k rows) stay within a few hundred KiB of cache, bands of output rows giving at least 16 tasks."""
    strip = max(16, (384 * 1024) // (3 * max(k, 1) * item) // 16 * 16)
    strip = min(inner, strip)
    ns = -(-inner // strip)
    nbd = max(1, -(-16 // max(1, outer * ns)))
    band = max(1, -(-n // nbd))
    return strip, band


def _oop_pass(kind, src, dst, axis, mode, cval, origin, arg):
    """One min/max pass, or a float32 box pass, from ``src`` into a C-contiguous ``dst`` of the same dtype (the
    work dtype).  ``dst`` may be ``src`` itself where :func:`_in_place` allows."""
    n = src.shape[axis]
    size = arg
    elo, ehi = _emaps(n, *_window_halo(size, origin), mode)
    outer, _, inner = _view3(src, axis).shape
    if kind == "uniform":
        if inner == 1:
            _ndi.line_boxmean(src.reshape(outer, n), dst.reshape(outer, n), size, elo, ehi, float(cval),
                              _nthreads())
        else:
            strip, band = _strip_band(outer, n, inner, 1, 8)
            _ndi.rows_uniform(_view3(src, axis), _view3(dst, axis), size, elo, ehi, float(cval), strip, band,
                              _nthreads())
        return
    cv = S.cast_scalar(cval, src.dtype)
    if inner == 1:
        _ndi.line_minmax(src.reshape(outer, n), dst.reshape(outer, n), size, elo, ehi, cv, kind == "min",
                         _nthreads())
    else:
        strip, band = _strip_band(outer, n, inner, size, src.dtype.itemsize)
        if dst is src:
            band = n            # a task owns whole lines: it reads every row of its strip before writing it
        _ndi.rows_minmax(_view3(src, axis), _view3(dst, axis), size, elo, ehi, cv, kind == "min", strip, band,
                         _nthreads())


def _box_over_last_two_axes(passes, shape):
    """Two float32 box passes over the last two axes (rows of more than one element: a single column's passes
    take the line kernel along the rows as well) run as one sweep (:func:`_box2d`)."""
    return (len(passes) == 2 and all(p[0] == "uniform" for p in passes)
            and [p[1] for p in passes] == [len(shape) - 2, len(shape) - 1] and shape[-1] > 1)


def _box2d(src, dst, passes, cval):
    """Both box passes of :func:`_box_over_last_two_axes` in one sweep (``_ndi.box2d``): the running sum down the
    rows and the doubling along each result row while it is in cache -- the same values as the two passes, half
    their memory traffic."""
    (_, _, sh, mh, oh), (_, _, sw, mw, ow) = passes
    nh, nw = src.shape[-2:]
    outer = src.size // (nh * nw)
    ehl, ehh = _emaps(nh, *_window_halo(sh, oh), S.mode_name(mh))
    ewl, ewh = _emaps(nw, *_window_halo(sw, ow), S.mode_name(mw))
    _, band = _strip_band(outer, nh, nw, 1, 8)
    _ndi.box2d(src.reshape(outer, nh, nw), dst.reshape(outer, nh, nw), sh, ehl, ehh, sw, ewl, ewh, float(cval), band,
               _nthreads())


def _in_place(kind, shape, axis):
    """Whether a pass may write over its own input: min/max along contiguous lines (each task buffers its line),
    or along a strided axis when at least 16 independent (outer x strip) tasks own whole lines."""
    if kind not in ("min", "max"):
        return False
    outer, n, inner = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
    return inner == 1 or outer * -(-inner // _strip_band(outer, n, inner, 3, 1)[0]) >= 16


def _oop_passes(input, output, passes, cval):
    """Successive passes (min/max in the output's work dtype, or float32 box means): the first from the input
    into the result, the others in place where :func:`_in_place` allows, else through one temporary."""
    work = S.work_dtype(output.dtype) if passes[0][0] != "uniform" else np.dtype(np.float32)
    src = np.ascontiguousarray(input).astype(work, casting="unsafe", copy=False)
    final = output if (output.dtype == work and output.flags.c_contiguous
                       and not np.may_share_memory(output, src)) else np.empty(input.shape, work)
    if _box_over_last_two_axes(passes, input.shape):
        _box2d(src, final, passes, cval)
        return S.finish(output, final)
    k = len(passes)
    # plan the buffers backwards from the last pass (which must land in `final`)
    targets = [None] * k
    nxt = final
    for i in range(k - 1, -1, -1):
        targets[i] = nxt
        kind, axis = passes[i][0], passes[i][1]
        if i > 0 and not _in_place(kind, input.shape, axis):
            nxt = "tmp" if nxt is final else final
    tmp = E._temp(input.shape, work, "ndimage-pass") if any(t == "tmp" for t in targets if isinstance(t, str)) else None
    cur = src
    for i, (kind, axis, arg, mode, origin) in enumerate(passes):
        dst = tmp if isinstance(targets[i], str) else targets[i]
        if dst is not cur and np.may_share_memory(dst, cur):
            raise AssertionError("pass buffers overlap")  # internal invariant
        _oop_pass(kind, cur, dst, axis, S.mode_name(mode), cval, origin, arg)
        cur = dst
    return S.finish(output, final)


def _line_pass(kind, input, output, axis, mode, cval, origin, arg, exact=False):
    """One 1-D pass ``kind`` ('corr' weights / 'uniform' size / 'min' / 'max' size) from ``input`` into
    ``output`` (same shape, any real dtypes); ``exact`` keeps a float32 pass on scipy's float64 arithmetic (the
    later passes of a filter whose input was not float32)."""
    if input.size == 0:
        return output
    fast = _fast(input, output) and not exact
    if kind in ("min", "max") or (kind == "uniform" and fast):
        return _oop_passes(input, output, [(kind, axis, arg, mode, origin)], cval)
    n = input.shape[axis]
    mode = S.mode_name(mode)
    if kind == "corr":
        w = arg
        size1 = w.shape[0] // 2
        size2 = w.shape[0] - size1 - 1
    else:
        size1 = arg // 2
        size2 = arg - size1 - 1
    if fast:
        src = np.ascontiguousarray(input)
        dst = output if output.flags.c_contiguous and not np.may_share_memory(output, src) else np.empty_like(src)
        E.separable(src, dst, [(axis, w, size1 + origin, mode, float(cval))], _nthreads())
        return S.finish(output, dst)
    src = np.ascontiguousarray(input, dtype=np.float64)
    dst = _target(output, np.float64, src)
    elo, ehi = _emaps(n, size1 + origin, size2 - origin, mode)
    if kind == "corr":
        _ndi.line_linear(_view3(src, axis), _view3(dst, axis), 0, np.ascontiguousarray(w), size1, size2,
                         _symmetry(w), elo, ehi, float(cval), _nthreads())
    else:
        _ndi.line_linear(_view3(src, axis), _view3(dst, axis), 1, np.zeros(0), size1, size2, 0, elo, ehi,
                         float(cval), _nthreads())
    return S.finish(output, dst)


def _run_passes(input, output, passes, cval):
    """Successive line passes ``[(kind, axis, arg, mode, origin), ...]``: the first reads ``input``, the others
    the output (stored in its dtype between passes, as scipy.ndimage does)."""
    if not passes:
        output[...] = input
        return output
    if input.size == 0:
        return output
    kinds = {p[0] for p in passes}
    if kinds <= {"min", "max"} or (kinds == {"uniform"} and _fast(input, output)):
        return _oop_passes(input, output, passes, cval)
    if _fast(input, output) and kinds <= {"corr", "uniform"}:
        src = np.ascontiguousarray(input)
        dst = output if output.flags.c_contiguous and not np.may_share_memory(output, src) else np.empty_like(src)
        eng = []
        for kind, axis, arg, mode, origin in passes:
            w1 = arg if kind == "corr" else np.full(arg, 1.0 / arg)
            eng.append((axis, w1, w1.shape[0] // 2 + origin, S.mode_name(mode), float(cval)))
        E.separable(src, dst, eng, _nthreads())
        return S.finish(output, dst)
    cur = input
    exact = not _fast(input, output)
    for kind, axis, arg, mode, origin in passes:
        _line_pass(kind, cur, output, axis, mode, cval, origin, arg, exact)
        cur = output
    return output


def _complex_via_real(func, input, weights, output, cval, **kwargs):
    """A complex correlation as real ones (scipy.ndimage's decomposition)."""
    cin, cw = input.dtype.kind == "c", weights.dtype.kind == "c"
    if cin and cw:
        func(input.real, weights.real, output=output.real, cval=np.real(cval), **kwargs)
        output.real -= func(input.imag, weights.imag, output=None, cval=np.imag(cval), **kwargs)
        func(input.real, weights.imag, output=output.imag, cval=np.real(cval), **kwargs)
        output.imag += func(input.imag, weights.real, output=None, cval=np.imag(cval), **kwargs)
    elif cin:
        func(input.real, weights, output=output.real, cval=np.real(cval), **kwargs)
        func(input.imag, weights, output=output.imag, cval=np.imag(cval), **kwargs)
    else:
        if np.iscomplexobj(cval):
            raise ValueError("Cannot provide a complex-valued cval when the input is real.")
        func(input, weights.real, output=output.real, cval=cval, **kwargs)
        func(input, weights.imag, output=output.imag, cval=cval, **kwargs)
    return output


def _real_cval(cval):
    if np.iscomplexobj(cval):
        raise ValueError("Cannot provide a complex-valued cval when the input is real.")
    try:
        return float(cval)
    except (TypeError, ValueError):
        raise TypeError("cval must be a real number, got %r" % (cval,)) from None


# ---------------------------------------------------------------------------------------- linear 1-D filters
def correlate1d(input, weights, axis=-1, output=None, mode="reflect", cval=0.0, origin=0):
    input = S.as_input(input, fn="ndimage.correlate1d")
    weights = np.asarray(weights)
    if input.dtype.kind == "c" or weights.dtype.kind == "c":
        if weights.dtype.kind == "c":
            weights = weights.conj().astype(np.complex128, copy=False)
        output = S.get_output(output, input, complex_output=True)
        return _complex_via_real(correlate1d, input, weights, output, cval, axis=axis, mode=mode, origin=origin)
    output = S.get_output(output, input)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 1 or weights.shape[0] < 1:
        raise S.ArgumentError("no filter weights given")
    axis = S.axis_index(axis, input.ndim)
    origin = operator.index(origin)
    if S.invalid_origin(origin, len(weights)):
        raise ValueError("Invalid origin; origin must satisfy -(len(weights) // 2) <= origin <= "
                         "(len(weights)-1) // 2")
    S.mode_name(mode)
    return _line_pass("corr", input, output, axis, mode, _real_cval(cval), origin, np.ascontiguousarray(weights))


def convolve1d(input, weights, axis=-1, output=None, mode="reflect", cval=0.0, origin=0):
    weights = np.asarray(weights)[::-1]
    origin = -operator.index(origin)
    if not weights.shape[0] & 1:
        origin -= 1
    if weights.dtype.kind == "c":
        weights = weights.conj()
    return correlate1d(input, weights, axis, output, mode, cval, origin)


def gaussian_filter1d(input, sigma, axis=-1, order=0, output=None, mode="reflect", cval=0.0, truncate=4.0, *,
                      radius=None):
    lw = gaussian_radius(sigma, truncate, radius)
    weights = gaussian_kernel1d(float(sigma), order, lw)[::-1]
    return correlate1d(input, weights, axis, output, mode, cval, 0)


def gaussian_filter(input, sigma, order=0, output=None, mode="reflect", cval=0.0, truncate=4.0, *, radius=None,
                    axes=None):
    input = S.as_input(input, fn="ndimage.gaussian_filter")
    output = S.get_output(output, input, complex_output=input.dtype.kind == "c")
    axes = S.check_axes(axes, input.ndim)
    n = len(axes)
    orders = S.sequence(order, n)
    sigmas = S.sequence(sigma, n)
    modes = S.sequence(mode, n)
    radii = S.sequence(radius, n)
    todo = [(axes[i], sigmas[i], orders[i], modes[i], radii[i]) for i in range(n) if sigmas[i] > 1e-15]
    if input.dtype.kind == "c" or not todo:
        if not todo:
            output[...] = input[...]
            return output
        for axis, s, o, m, r in todo:
            gaussian_filter1d(input, s, axis, o, output, m, cval, truncate, radius=r)
            input = output
        return output
    passes = []
    for axis, s, o, m, r in todo:
        lw = gaussian_radius(s, truncate, r)
        passes.append(("corr", axis, gaussian_kernel1d(float(s), o, lw)[::-1].copy(), m, 0))
        S.mode_name(m)
    return _run_passes(input, output, passes, _real_cval(cval))


def _gaussian_engine_passes(ndim, sigma, order, mode, cval, truncate=4.0, radius=None):
    """gaussian_filter's passes over all axes as engine passes (axis, weights, offset, mode, cval), or None
    when some axis with a derivative order has sigma <= 1e-15 (scipy skips that axis, derivative included)."""
    sigmas, orders = S.sequence(sigma, ndim), S.sequence(order, ndim)
    modes, radii = S.sequence(mode, ndim), S.sequence(radius, ndim)
    passes = []
    for ax in range(ndim):
        if sigmas[ax] > 1e-15:
            lw = gaussian_radius(sigmas[ax], truncate, radii[ax])
            w = gaussian_kernel1d(float(sigmas[ax]), orders[ax], lw)[::-1].copy()
            passes.append((ax, w, lw, S.mode_name(modes[ax]), float(cval)))
        elif orders[ax]:
            return None
    return passes


def _fused_sum(input, output, terms, epilogues, scale=1.0):
    """float32 sums of separable terms (each a list of engine passes) straight into ``output``: the first term
    stored through ``epilogues[0]``, the others through ``epilogues[1]`` (the last through ``epilogues[2]``)."""
    src = np.ascontiguousarray(input)
    dst = output if output.flags.c_contiguous and not np.may_share_memory(output, src) else np.empty_like(src)
    for i, passes in enumerate(terms):
        epi = epilogues[0] if i == 0 else (epilogues[2] if i == len(terms) - 1 else epilogues[1])
        E.separable(src, dst, passes, _nthreads(), epi, scale)
    return S.finish(output, dst)


def _edge(input, axis, output, mode, cval, smooth):
    input = S.as_input(input, allow_complex=False, fn="ndimage." + ("sobel" if smooth[1] == 2 else "prewitt"))
    axis = S.axis_index(axis, input.ndim)
    output = S.get_output(output, input)
    modes = S.sequence(mode, input.ndim)
    passes = [("corr", axis, np.array([-1.0, 0.0, 1.0]), modes[axis], 0)]
    passes += [("corr", ii, smooth, modes[ii], 0) for ii in range(input.ndim) if ii != axis]
    return _run_passes(input, output, passes, _real_cval(cval))


def prewitt(input, axis=-1, output=None, mode="reflect", cval=0.0):
    return _edge(input, axis, output, mode, cval, np.array([1.0, 1.0, 1.0]))


def sobel(input, axis=-1, output=None, mode="reflect", cval=0.0):
    return _edge(input, axis, output, mode, cval, np.array([1.0, 2.0, 1.0]))


def _sum_over_axes(input, derivative, output, mode, cval, extra_arguments, extra_keywords, axes, square):
    """scipy's generic_laplace (``square=False``: sum of the derivatives along ``axes``) and
    generic_gradient_magnitude (``square=True``: square root of the sum of their squares)."""
    if extra_keywords is None:
        extra_keywords = {}
    input = S.plain_array(input, "ndimage.generic_" + ("gradient_magnitude" if square else "laplace"))
    output = S.get_output(output, input)
    axes = S.check_axes(axes, input.ndim)
    if len(axes) == 0:
        output[...] = input[...]
        return output
    modes = S.sequence(mode, len(axes))
    derivative(input, axes[0], output, modes[0], cval, *extra_arguments, **extra_keywords)
    if square:
        np.multiply(output, output, output)
    for ii in range(1, len(axes)):
        tmp = derivative(input, axes[ii], output.dtype, modes[ii], cval, *extra_arguments, **extra_keywords)
        if square:
            np.multiply(tmp, tmp, tmp)
        output += tmp
    if square:
        np.sqrt(output, output, casting="unsafe")
    return output


def generic_laplace(input, derivative2, output=None, mode="reflect", cval=0.0, extra_arguments=(),
                    extra_keywords=None, *, axes=None):
    return _sum_over_axes(input, derivative2, output, mode, cval, extra_arguments, extra_keywords, axes, False)


def laplace(input, output=None, mode="reflect", cval=0.0, *, axes=None):
    def derivative2(input, axis, output, mode, cval):
        return correlate1d(input, [1, -2, 1], axis, output, mode, cval, 0)
    return generic_laplace(input, derivative2, output, mode, cval, axes=axes)


def gaussian_laplace(input, sigma, output=None, mode="reflect", cval=0.0, *, axes=None, **kwargs):
    input = S.plain_array(input, "ndimage.gaussian_laplace")

    def derivative2(input, axis, output, mode, cval, sigma, **kwargs):
        order = [0] * input.ndim
        order[axis] = 2
        return gaussian_filter(input, sigma, order, output, mode, cval, **kwargs)

    axes = S.check_axes(axes, input.ndim)
    sigma = S.sequence(sigma, len(axes))
    if len(axes) < input.ndim:
        full = [0] * input.ndim
        for s, ax in zip(sigma, axes):
            full[ax] = s
        sigma = full
    fused = _fused_terms(input, output, axes, sigma, 2, mode, cval, kwargs)
    if fused is not None:
        out = S.get_output(output, input)
        return _fused_sum(input, out, fused, (0, 4, 4))
    return generic_laplace(input, derivative2, output, mode, cval, extra_arguments=(sigma,),
                           extra_keywords=kwargs, axes=axes)


def generic_gradient_magnitude(input, derivative, output=None, mode="reflect", cval=0.0, extra_arguments=(),
                               extra_keywords=None, *, axes=None):
    return _sum_over_axes(input, derivative, output, mode, cval, extra_arguments, extra_keywords, axes, True)


def gaussian_gradient_magnitude(input, sigma, output=None, mode="reflect", cval=0.0, *, axes=None, **kwargs):
    input = S.plain_array(input, "ndimage.gaussian_gradient_magnitude")

    def derivative(input, axis, output, mode, cval, sigma, **kwargs):
        order = [0] * input.ndim
        order[axis] = 1
        return gaussian_filter(input, sigma, order, output, mode, cval, **kwargs)

    ax = S.check_axes(axes, input.ndim) if input.dtype.kind in "biuf" else ()
    if len(ax) > 1:
        fused = _fused_terms(input, output, ax, sigma, 1, mode, cval, kwargs)
        if fused is not None:
            out = S.get_output(output, input)
            return _fused_sum(input, out, fused, (1, 2, 3))
    return generic_gradient_magnitude(input, derivative, output, mode, cval, extra_arguments=(sigma,),
                                      extra_keywords=kwargs, axes=axes)


def _fused_terms(input, output, axes, sigma, order, mode, cval, kwargs):
    """The float32 engine passes of gaussian_laplace (order 2) / gaussian_gradient_magnitude (order 1): one
    gaussian_filter per filtered axis with that derivative along it, or None when the call is not float32 in
    and out (or has arguments the fused path does not take)."""
    if not (isinstance(input, np.ndarray) and input.dtype == np.float32 and input.size and len(axes) > 0):
        return None
    if output is not None:
        out_dtype = output.dtype if isinstance(output, np.ndarray) else np.dtype(output)
        if out_dtype != np.float32:
            return None
    if set(kwargs) - {"truncate", "radius"}:
        return None
    modes = S.sequence(mode, len(axes))
    sig = S.sequence(sigma, input.ndim)
    terms = []
    for i, ax in enumerate(axes):
        orders = [0] * input.ndim
        orders[ax] = order
        passes = _gaussian_engine_passes(input.ndim, sig, orders, modes[i], _real_cval(cval), **kwargs)
        if not passes:
            return None
        terms.append(passes)
    return terms


# -------------------------------------------------------------------------------------- footprint machinery
def _footprint_plan(shape, fshape, origins, modes):
    """Row table, column map and interior range of a footprint pass (see ``_kernels/_ndi.pyx``); cached, since
    repeated calls on images of one shape are common and the tables cost about 0.1 ms for a 2048-row image."""
    return _footprint_plan_cached(tuple(int(v) for v in shape), tuple(int(v) for v in fshape),
                                  tuple(int(v) for v in origins), tuple(modes))


@functools.lru_cache(maxsize=32)
def _footprint_plan_cached(shape, fshape, origins, modes):
    offs = [k // 2 + o for k, o in zip(fshape, origins)]
    rows = E._row_table(shape[:-1], shape[:-1], fshape[:-1], offs[:-1], modes[:-1]).astype(np.intp)
    L, KW, off = shape[-1], fshape[-1], offs[-1]
    colmap = np.ascontiguousarray(E.index_map(L, np.arange(L + KW - 1) - off, modes[-1]), dtype=np.intp)
    ylo, yhi = off, min(L + off, L + KW - 1)
    rows = np.ascontiguousarray(rows)
    rows.flags.writeable = False
    colmap.flags.writeable = False
    return rows, colmap, ylo, yhi, off


def _taps(mask2):
    t_row, t_dx = np.nonzero(mask2)
    return np.ascontiguousarray(t_row, dtype=np.intp), np.ascontiguousarray(t_dx, dtype=np.intp)


def _flat(arr):
    return arr.reshape(-1, arr.shape[-1]) if arr.ndim else arr.reshape(1, 1)


def _modes_nd(mode, ndim):
    if not isinstance(mode, str):
        return [S.mode_name(m) for m in S.sequence(mode, ndim)]
    return [S.mode_name(mode)] * ndim


def _footprint_pass(op, input, output, footprint, origins, mode, cval, rank=0):
    """One footprint pass (``op``: 'min', 'max', 'rank', or 'corr' with float64 weights) into ``output``."""
    if input.size == 0:
        return output
    shape = input.shape if input.ndim else (1,)
    fp = footprint if footprint.ndim else footprint.reshape(1)
    origins = list(origins) if input.ndim else [0]
    modes = _modes_nd(mode, len(shape))
    rows, colmap, ylo, yhi, off = _footprint_plan(shape, fp.shape, origins, modes)
    KW = fp.shape[-1]
    if op == "corr":
        w2 = fp.reshape(-1, KW)
        t_row, t_dx = _taps(np.abs(w2) > np.finfo(np.float64).eps)
        src = np.ascontiguousarray(input, dtype=np.float64)
        dst = output if (output.dtype == np.float64 and output.flags.c_contiguous
                         and not np.may_share_memory(output, src)) else np.empty(input.shape, np.float64)
        _ndi.nd_correlate(_flat(src), _flat(dst), rows, colmap, ylo, yhi, off, t_row, t_dx,
                          np.ascontiguousarray(w2[t_row, t_dx]), float(cval), _nthreads(input.size * len(t_row)))
        return S.finish(output, dst)
    work = S.work_dtype(output.dtype)
    src = np.ascontiguousarray(input).astype(work, casting="unsafe", copy=False)
    dst = output if (output.dtype == work and output.flags.c_contiguous
                     and not np.may_share_memory(output, src)) else np.empty(input.shape, work)
    t_row, t_dx = _taps(fp.reshape(-1, KW))
    n = t_row.shape[0]
    net = colnet = np.zeros((0, 3), np.intp)
    colperm = np.zeros(0, np.intp)
    stride = 1
    if op == "rank":
        T = rows.shape[1]
        if n <= NETWORK_MAX and n == fp.size and KW > 1 and T > 1:
            code = 5 if rank == n // 2 else 4
            net, rank, stride = _networks.merge_selection_network(KW, T, rank)
            colnet, colperm = _networks.sorting_network(T)
        elif n <= NETWORK_MAX:
            net, rank = _networks.selection_network(n, rank)
            code = 2
        else:
            code = 3
    else:
        code = 0 if op == "min" else 1
    _ndi.nd_filter(_flat(src), _flat(dst), rows, colmap, ylo, yhi, off, t_row, t_dx, S.cast_scalar(cval, work),
                   code, rank, net, colnet, colperm, stride, _nthreads(input.size * n))
    return S.finish(output, dst)


# ----------------------------------------------------------------------------------------- N-d linear filters
def _correlate_or_convolve(input, weights, output, mode, cval, origin, convolution, axes):
    input = S.as_input(input, fn="ndimage." + ("convolve" if convolution else "correlate"))
    weights = np.asarray(weights)
    if input.dtype.kind == "c" or weights.dtype.kind == "c":
        if weights.dtype.kind == "c" and not convolution:
            weights = weights.conj()
        output = S.get_output(output, input, complex_output=True)
        return _complex_via_real(_correlate_or_convolve, input, weights, output, cval, mode=mode, origin=origin,
                                 convolution=convolution, axes=axes)
    axes = S.check_axes(axes, input.ndim)
    weights = np.asarray(weights, dtype=np.float64)
    weights = S.expand_footprint(input.ndim, axes, weights, "weights")
    origins = S.expand_origin(input.ndim, axes, origin)
    wshape = [k for k in weights.shape if k > 0]
    if len(wshape) != input.ndim:
        raise S.ArgumentError(f"weights.ndim ({len(wshape)}) must match len(axes) ({len(axes)})")
    if convolution:
        weights = weights[(slice(None, None, -1),) * weights.ndim]
        for i in range(len(origins)):
            origins[i] = -origins[i]
            if not weights.shape[i] & 1:
                origins[i] -= 1
    for o, k in zip(origins, wshape):
        if S.invalid_origin(o, k):
            raise ValueError("Invalid origin; origin must satisfy -(weights.shape[k] // 2) <= origin[k] <= "
                             "(weights.shape[k]-1) // 2")
    output = S.get_output(output, input)
    if not isinstance(mode, str):
        raise S.ArgumentError("A sequence of modes is not supported")
    m = S.mode_name(mode)
    cval = _real_cval(cval)
    if input.ndim == 0:
        output[...] = input * weights
        return output
    if input.size and _fast(input, output):
        src = np.ascontiguousarray(input)
        dst = output if output.flags.c_contiguous and not np.may_share_memory(output, src) else np.empty_like(src)
        offs = tuple(k // 2 + o for k, o in zip(weights.shape, origins))
        E.apply(src, dst, np.ascontiguousarray(weights), offs, (m,) * input.ndim, cval, "auto", _nthreads(),
                fn="correlate")
        return S.finish(output, dst)
    return _footprint_pass("corr", input, output, np.ascontiguousarray(weights), origins, mode, cval)


def correlate(input, weights, output=None, mode="reflect", cval=0.0, origin=0, *, axes=None):
    return _correlate_or_convolve(input, weights, output, mode, cval, origin, False, axes)


def convolve(input, weights, output=None, mode="reflect", cval=0.0, origin=0, *, axes=None):
    return _correlate_or_convolve(input, weights, output, mode, cval, origin, True, axes)


# ------------------------------------------------------------------------------------------ uniform filters
def _size_origin_check(size, origin):
    if size < 1:
        raise S.ArgumentError("incorrect filter size")
    if size // 2 + origin < 0 or size // 2 + origin >= size:
        raise ValueError("invalid origin")


def uniform_filter1d(input, size, axis=-1, output=None, mode="reflect", cval=0.0, origin=0):
    input = S.as_input(input, fn="ndimage.uniform_filter1d")
    axis = S.axis_index(axis, input.ndim)
    size, origin = operator.index(size), operator.index(origin)
    if size < 1:
        raise S.ArgumentError("incorrect filter size")
    complex_output = input.dtype.kind == "c"
    output = S.get_output(output, input, complex_output=complex_output)
    _size_origin_check(size, origin)
    S.mode_name(mode)
    if complex_output:
        uniform_filter1d(input.real, size, axis, output.real, mode, np.real(cval), origin)
        uniform_filter1d(input.imag, size, axis, output.imag, mode, np.imag(cval), origin)
        return output
    return _line_pass("uniform", input, output, axis, mode, _real_cval(cval), origin, size)


def uniform_filter(input, size=3, output=None, mode="reflect", cval=0.0, origin=0, *, axes=None):
    input = S.as_input(input, fn="ndimage.uniform_filter")
    output = S.get_output(output, input, complex_output=input.dtype.kind == "c")
    axes = S.check_axes(axes, input.ndim)
    n = len(axes)
    sizes, origins, modes = S.sequence(size, n), S.sequence(origin, n), S.sequence(mode, n)
    todo = [(axes[i], int(sizes[i]), operator.index(origins[i]), modes[i]) for i in range(n) if sizes[i] > 1]
    if not todo:
        output[...] = input[...]
        return output
    if input.dtype.kind == "c":
        for axis, s, o, m in todo:
            uniform_filter1d(input, s, axis, output, m, cval, o)
            input = output
        return output
    for axis, s, o, m in todo:
        _size_origin_check(s, o)
        S.mode_name(m)
    return _run_passes(input, output, [("uniform", axis, s, m, o) for axis, s, o, m in todo], _real_cval(cval))


# ------------------------------------------------------------------------------------------ min / max filters
def _minmax1d(input, size, axis, output, mode, cval, origin, kind):
    input = S.as_input(input, allow_complex=False, fn="ndimage.%s_filter1d" % kind)
    axis = S.axis_index(axis, input.ndim)
    size, origin = operator.index(size), operator.index(origin)
    if size < 1:
        raise S.ArgumentError("incorrect filter size")
    output = S.get_output(output, input)
    _size_origin_check(size, origin)
    S.mode_name(mode)
    return _line_pass(kind, input, output, axis, mode, _real_cval(cval), origin, size)


def minimum_filter1d(input, size, axis=-1, output=None, mode="reflect", cval=0.0, origin=0):
    return _minmax1d(input, size, axis, output, mode, cval, origin, "min")


def maximum_filter1d(input, size, axis=-1, output=None, mode="reflect", cval=0.0, origin=0):
    return _minmax1d(input, size, axis, output, mode, cval, origin, "max")


def _footprint_and_origins(ndim, axes, footprint, origin):
    """A footprint over ``axes`` expanded to every image axis, with the origins checked as scipy does."""
    footprint = S.expand_footprint(ndim, axes, footprint)
    origins = S.expand_origin(ndim, axes, origin)
    fshape = [k for k in footprint.shape if k > 0]
    if len(fshape) != ndim:
        raise S.ArgumentError(f"footprint.ndim ({footprint.ndim}) must match len(axes) ({len(axes)})")
    for o, k in zip(origins, fshape):
        if k // 2 + o < 0 or k // 2 + o >= k:
            raise ValueError("invalid origin")
    return footprint, origins


def _min_or_max_filter(input, size, footprint, output, mode, cval, origin, kind, axes):
    if size is not None and footprint is not None:
        warnings.warn("ignoring size because footprint is set", UserWarning, stacklevel=3)
    if footprint is None:
        if size is None:
            raise S.ArgumentError("no footprint provided")
        separable = True
    else:
        footprint = np.asarray(footprint, dtype=bool)
        if not footprint.any():
            raise ValueError("All-zero footprint is not supported.")
        if footprint.all():
            size = footprint.shape
            footprint = None
            separable = True
        else:
            separable = False
    input = S.as_input(input, allow_complex=False, fn="ndimage.%s_filter" % kind)
    output = S.get_output(output, input)
    axes = S.check_axes(axes, input.ndim)
    n = len(axes)
    cval = _real_cval(cval)
    if separable:
        origins, sizes, modes = S.sequence(origin, n), S.sequence(size, n), S.sequence(mode, n)
        todo = [(axes[i], int(sizes[i]), operator.index(origins[i]), modes[i]) for i in range(n) if sizes[i] > 1]
        if not todo:
            output[...] = input[...]
            return output
        for axis, s, o, m in todo:
            _size_origin_check(s, o)
            S.mode_name(m)
        return _run_passes(input, output, [(kind, axis, s, m, o) for axis, s, o, m in todo], cval)
    footprint, origins = _footprint_and_origins(input.ndim, axes, footprint, origin)
    if not isinstance(mode, str):
        raise S.ArgumentError("A sequence of modes is not supported for non-separable footprints")
    S.mode_name(mode)
    return _footprint_pass(kind, input, output, np.ascontiguousarray(footprint), origins, mode, cval)


def minimum_filter(input, size=None, footprint=None, output=None, mode="reflect", cval=0.0, origin=0, *,
                   axes=None):
    return _min_or_max_filter(input, size, footprint, output, mode, cval, origin, "min", axes)


def maximum_filter(input, size=None, footprint=None, output=None, mode="reflect", cval=0.0, origin=0, *,
                   axes=None):
    return _min_or_max_filter(input, size, footprint, output, mode, cval, origin, "max", axes)


# ---------------------------------------------------------------------------------------------- rank filters
def _rank_filter(input, rank, size, footprint, output, mode, cval, origin, operation, axes):
    if size is not None and footprint is not None:
        warnings.warn("ignoring size because footprint is set", UserWarning, stacklevel=3)
    input = S.as_input(input, allow_complex=False, fn="ndimage.%s_filter" % operation)
    axes = S.check_axes(axes, input.ndim)
    n = len(axes)
    if footprint is None:
        if size is None:
            raise S.ArgumentError("no footprint or filter size provided")
        footprint = np.ones(S.sequence(size, n), dtype=bool)
    else:
        footprint = np.asarray(footprint, dtype=bool)
    footprint, origins = _footprint_and_origins(input.ndim, axes, footprint, origin)
    mode = S.expand_mode(input.ndim, axes, mode)
    filter_size = int(np.count_nonzero(footprint))
    if operation == "median":
        rank = filter_size // 2
    elif operation == "percentile":
        percentile = rank
        if percentile < 0.0:
            percentile += 100.0
        if percentile < 0 or percentile > 100:
            raise S.ArgumentError("invalid percentile")
        rank = filter_size - 1 if percentile == 100.0 else int(float(filter_size) * percentile / 100.0)
    if rank < 0:
        rank += filter_size
    if rank < 0 or rank >= filter_size:
        raise S.ArgumentError("rank not within filter footprint size")
    if rank == 0:
        return minimum_filter(input, None, footprint, output, mode, cval, origins)
    if rank == filter_size - 1:
        return maximum_filter(input, None, footprint, output, mode, cval, origins)
    output = S.get_output(output, input)
    if not isinstance(mode, str):
        raise S.ArgumentError("A sequence of modes is not supported by non-separable rank filters")
    S.mode_name(mode)
    return _footprint_pass("rank", input, output, np.ascontiguousarray(footprint), origins, mode,
                           _real_cval(cval), rank)


def rank_filter(input, rank, size=None, footprint=None, output=None, mode="reflect", cval=0.0, origin=0, *,
                axes=None):
    rank = operator.index(rank)
    return _rank_filter(input, rank, size, footprint, output, mode, cval, origin, "rank", axes)


def median_filter(input, size=None, footprint=None, output=None, mode="reflect", cval=0.0, origin=0, *, axes=None):
    return _rank_filter(input, 0, size, footprint, output, mode, cval, origin, "median", axes)


def percentile_filter(input, percentile, size=None, footprint=None, output=None, mode="reflect", cval=0.0, origin=0,
                      *, axes=None):
    return _rank_filter(input, percentile, size, footprint, output, mode, cval, origin, "percentile", axes)


# ------------------------------------------------------------------------------------------------ halo sizes
def _window_halo(k, o):
    """(before, after) of a window of length ``k`` with origin ``o``: output i reads i - before .. i + after."""
    before = k // 2 + o
    return before, k - 1 - before


def filter_halo(name, ndim, *args, **kwargs):
    """Per-axis ``(before, after)`` halo of the ``fastconv.ndimage`` filter ``name`` called on an ``ndim``-D
    image with these arguments (the positional ones after ``input``): how many neighbours on each side an output
    element reads, from the same normalisation the filter applies (sigma * truncate or radius, size, footprint
    shape, origin).  Chunked (dask ``map_overlap``) versions use it as the overlap depth.

    >>> filter_halo("gaussian_filter", 2, 1.0)
    [(4, 4), (4, 4)]
    >>> filter_halo("uniform_filter", 2, size=(3, 4), origin=(0, 1))
    [(1, 1), (3, 0)]
    """
    import inspect
    func = globals()[name]
    bound = inspect.signature(func).bind(None, *args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    halo = [(0, 0)] * ndim
    axes_arg = a.get("axes")
    if name in ("correlate1d", "convolve1d", "gaussian_filter1d", "uniform_filter1d", "minimum_filter1d",
                "maximum_filter1d"):
        axes = (S.axis_index(a["axis"], ndim),)
    elif name in ("sobel", "prewitt"):
        axes = tuple(range(ndim))
    else:
        axes = S.check_axes(axes_arg, ndim)
    n = len(axes)
    if name in ("gaussian_filter", "gaussian_filter1d", "gaussian_laplace", "gaussian_gradient_magnitude"):
        sig = S.sequence(a["sigma"], n) if name != "gaussian_filter1d" else [a["sigma"]]
        extra = a.get("kwargs") or {}
        truncate = a.get("truncate", extra.get("truncate", 4.0))
        radius = a.get("radius", extra.get("radius"))
        rad = S.sequence(radius, n) if name != "gaussian_filter1d" else [radius]
        for ax, s, r in zip(axes, sig, rad):
            if s > 1e-15 or name in ("gaussian_laplace", "gaussian_gradient_magnitude"):
                lw = gaussian_radius(s, truncate, r) if s > 1e-15 else 0
                halo[ax] = (lw, lw)
        if name in ("gaussian_laplace", "gaussian_gradient_magnitude"):
            # every derivative pass smooths along all filtered axes
            halo = [halo[ax] if ax in axes else (0, 0) for ax in range(ndim)]
        return halo
    if name in ("sobel", "prewitt", "laplace"):
        return [(1, 1) if ax in axes else (0, 0) for ax in range(ndim)]
    if name in ("correlate1d", "convolve1d"):
        k = len(np.atleast_1d(a["weights"]))
        o = a["origin"]
        if name == "convolve1d":
            o = -o - (0 if k & 1 else 1)
        halo[axes[0]] = _window_halo(k, o)
        return halo
    if name in ("uniform_filter1d", "minimum_filter1d", "maximum_filter1d"):
        halo[axes[0]] = _window_halo(int(a["size"]), a["origin"])
        return halo
    if name in ("correlate", "convolve"):
        shape = S.expand_footprint(ndim, axes, np.asarray(a["weights"])).shape
    elif a.get("footprint") is not None:
        shape = S.expand_footprint(ndim, axes, np.asarray(a["footprint"])).shape
    else:
        sizes = S.sequence(a["size"], n)
        shape = [1] * ndim
        for ax, s in zip(axes, sizes):
            shape[ax] = int(s)
    origins = S.expand_origin(ndim, axes, a.get("origin", 0))
    for ax in range(ndim):
        o = origins[ax]
        if name == "convolve":
            o = -o - (0 if shape[ax] & 1 else 1)
        halo[ax] = _window_halo(shape[ax], o)
    return halo
