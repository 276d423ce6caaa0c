"""scikit-image's filters: ``gaussian``, ``sobel``, ``prewitt``, ``scharr``, ``laplace``, ``unsharp_mask``.

Same arguments, dtype conversions, kernels and boundary handling as ``skimage.filters`` (0.26), computed by
:mod:`fastconv.filters._engine` on all cores.  Deliberate differences: wrong arguments raise ``TypeError`` /
``ValueError`` naming the argument (scikit-image lets some through, e.g. an out-of-range ``channel_axis`` wraps
around), and a negative ``axis`` of the edge filters means the same axis as its positive equivalent (scikit-image
also smooths along that axis).
"""
import functools
import math

import numpy as np

from .. import _threads
from .. import _validate as V
from .._doc import filled
from . import _args as A
from . import _engine as E

__all__ = ["gaussian", "sobel", "prewitt", "scharr", "laplace", "unsharp_mask", "unsharp_mask_range"]

# 1-D factors of the edge kernels (skimage.filters.edges): derivative [1, 0, -1] along the axis, smoothing on
# the others.  scikit-image convolves (flips), so the correlation factor of the derivative is [-1, 0, 1].
EDGE = np.array([1.0, 0.0, -1.0])
SMOOTH = {"sobel": np.array([1.0, 2.0, 1.0]) / 4,
          "prewitt": np.full((3,), 1 / 3),
          "scharr": np.array([3.0, 10.0, 3.0]) / 16,
          # Farid & Simoncelli (2004), the 5-tap pair of scikit-image
          "farid": np.array([0.0376593171958126, 0.249153396177344, 0.426374573253687, 0.249153396177344,
                             0.0376593171958126])}
# derivative factors other than EDGE (scikit-image convolves; the correlation factor is the reverse)
EDGES = {"farid": np.array([0.109603762960254, 0.276690988455557, 0.0, -0.276690988455557, -0.109603762960254])}


def _sigmas(sigma, ndim, channel, fn, arg="sigma", full_ok=True):
    """Per-axis sigmas the way scikit-image builds them: with a channel axis, a scalar or a spatial-length
    sequence gets a 0 inserted at the channel axis; a full-length sequence is used as given (``full_ok``).
    A plain float or int seen before with the same layout is a cache hit."""
    if type(sigma) in (float, int):
        key = (type(sigma), sigma, ndim, channel, fn, arg, full_ok)
        got = _sigma_cache.get(key)
        if got is None:
            got = _sigma_cache[key] = tuple(_sigmas_checked(sigma, ndim, channel, fn, arg, full_ok))
            if len(_sigma_cache) > 256:
                _sigma_cache.clear()
        return list(got)
    return _sigmas_checked(sigma, ndim, channel, fn, arg, full_ok)


_sigma_cache = {}


def _sigmas_checked(sigma, ndim, channel, fn, arg, full_ok):
    try:
        s = np.asarray(sigma, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("%s(): argument '%s' must be a real number or a sequence of them, got %r"
                        % (fn, arg, sigma)) from None
    if s.ndim > 1 or isinstance(sigma, (str, bytes)):
        raise TypeError("%s(): argument '%s' must be a real number or a sequence of them, got %r" % (fn, arg, sigma))
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("%s(): argument '%s' must be finite and >= 0, got %r" % (fn, arg, sigma))
    vals = [float(s)] * (ndim - (channel is not None)) if s.ndim == 0 else [float(v) for v in s]
    if channel is not None and len(vals) == ndim - 1:
        vals.insert(channel, 0.0)
    elif channel is not None and not full_ok:
        vals = []
    if len(vals) != ndim:
        raise ValueError("%s(): argument '%s' must be a scalar or have one value per %saxis (%d), got %r"
                         % (fn, arg, "spatial " if channel is not None else "", ndim - (channel is not None), sigma))
    return vals


@functools.lru_cache(maxsize=256)
def _gaussian_pass_list(sigmas, truncate, modes, cval):
    return _gaussian_passes(sigmas, truncate, modes, cval)


def _gaussian_passes(sigmas, truncate, modes, cval):
    """scipy.ndimage.gaussian_filter's passes: one per axis with sigma > 1e-15, radius int(truncate sigma + 0.5),
    ``cval`` as given on every pass."""
    passes = []
    for axis, (s, mode) in enumerate(zip(sigmas, modes)):
        if s > 1e-15:
            r = E.gaussian_radius(s, truncate, None)
            passes.append((axis, E.gaussian_kernel1d(s, 0, r)[::-1], r, mode, cval))
    return passes


@filled(A.DOC)
def gaussian(image, sigma=1.0, *, mode="nearest", cval=0, preserve_range=False, truncate=4.0, channel_axis=None,
             out=None):
    """Multi-dimensional Gaussian filter, equal to ``skimage.filters.gaussian``.

    One 1-D pass per axis with scipy.ndimage's weights (radius ``int(truncate * sigma + 0.5)``); axes with
    ``sigma <= 1e-15`` are skipped.

    Parameters
    ----------
    image : array_like
        Integer images are converted like ``img_as_float`` unless ``preserve_range``; float32 stays float32.
    sigma : float or sequence of float, optional
        Standard deviation per axis (>= 0).  With ``channel_axis``, a scalar or one value per spatial axis.
    %(mode)s
        Default 'nearest'.
    %(cval)s
    %(preserve_range)s
    truncate : float, optional
        Truncate the kernel at this many standard deviations.
    %(channel_axis)s
    out : ndarray of float, optional
        Where to store the result; the passes are computed in its precision.

    Returns
    -------
    ndarray of float32 (float16/float32 input or out) or float64
    """
    fn = "gaussian"
    img = A.image_array(image, fn, allow_bool=True)
    ch = A.channel_axis(channel_axis, img.ndim, fn)
    sigmas = _sigmas(sigma, img.ndim, ch, fn)
    modes = A.modes(mode, img.ndim, fn)
    cval = A.real(cval, fn, "cval")
    truncate = A.real(truncate, fn, "truncate", minimum=0.0)
    preserve_range = V.flag(preserve_range, fn, "preserve_range")
    out = None if out is None else V.out_array(out, img.shape, fn, kinds="f")
    fimg = A.float_image(img, preserve_range)
    if out is not None:  # like scikit-image, the passes are stored in out's precision
        fimg = fimg.astype(A.supported_float(out.dtype), copy=False)
    src = np.ascontiguousarray(fimg)
    dst = V.destination(out, src.shape, src.dtype, src)
    if src.size:
        E.separable(src, dst, _gaussian_pass_list(tuple(sigmas), truncate, tuple(modes), cval),
                    _threads.get_num_threads())
    return V.deliver(out, dst)


def _mask_result(result, mask, nthreads):
    """scikit-image's ``_mask_filter_result``: zero outside the mask eroded with the full 3^n neighbourhood
    (outside the image counts as False).  The erosion is a box sum of the mask equal to 3^n."""
    if mask is None:
        return result
    nd = mask.ndim
    counts = np.empty(mask.shape, np.float32)
    passes = [(a, np.ones(3), 1, "constant", 0.0) for a in range(nd)]
    E.separable(np.ascontiguousarray(mask, dtype=np.float32), counts, passes, nthreads)
    np.multiply(result, counts == 3 ** nd, out=result)
    return result


def _edge_filter(fn, image, mask, axis, mode, cval):
    img = A.edge_image(A.image_array(image, fn, allow_bool=True))
    nd = img.ndim
    msk = A.mask(mask, img.shape, fn)
    axes = A.axes(axis, nd, fn)
    modes = A.modes(mode, nd, fn)
    cval = A.real(cval, fn, "cval")
    nthreads = _threads.get_num_threads()
    src = np.ascontiguousarray(img)
    result = np.empty(src.shape, src.dtype)
    if src.size == 0:
        return result
    # one pass per axis; with several axes the passes store g*g, add g*g, and finally sqrt(sum) / sqrt(ndim)
    last = len(axes) - 1
    for i, a in enumerate(axes):
        edge = EDGES.get(fn, EDGE)
        factors = [edge[::-1] if b == a else SMOOTH[fn] for b in range(nd)]
        weights = factors[0]
        for f in factors[1:]:
            weights = np.multiply.outer(weights, f)
        epi = 0 if last == 0 else (1 if i == 0 else 3 if i == last else 2)
        E.apply(src, result, weights, tuple(k // 2 for k in weights.shape), modes, cval, "auto", nthreads,
                factors=factors, fn=fn, epi=epi, scale=math.sqrt(nd))
    return _mask_result(result, msk, nthreads)


# the edge filters' shared docstring body (``smooth``: the smoothing factor of the operator)
EDGE_DOC = {"edge_doc": """The kernel along ``axis`` is the derivative ``[1, 0, -1]`` (convolved) times the smoothing
    ``%(smooth)s`` along every other axis, applied as separable passes or one direct pass, whichever is cheaper.

    Parameters
    ----------
    image : array_like, N-d
        Float images keep their precision (float16 -> float32); others are converted like ``img_as_float``.
    %(mask)s
    axis : int or sequence of int, optional
        The axis (or axes) to differentiate along.  With more than one axis (default: all) the result is the
        magnitude ``sqrt(sum of squares) / sqrt(image.ndim)``.
    %(mode)s
    %(cval)s

    Returns
    -------
    ndarray of float32 or float64"""}


@filled(A.DOC, EDGE_DOC, smooth="[1, 2, 1] / 4")
def sobel(image, mask=None, *, axis=None, mode="reflect", cval=0.0):
    """Find edges with the Sobel operator, equal to ``skimage.filters.sobel``.

    %(edge_doc)s
    """
    return _edge_filter("sobel", image, mask, axis, mode, cval)


@filled(A.DOC, EDGE_DOC, smooth="[1, 1, 1] / 3")
def prewitt(image, mask=None, *, axis=None, mode="reflect", cval=0.0):
    """Find edges with the Prewitt operator, equal to ``skimage.filters.prewitt``.

    %(edge_doc)s
    """
    return _edge_filter("prewitt", image, mask, axis, mode, cval)


@filled(A.DOC, EDGE_DOC, smooth="[3, 10, 3] / 16")
def scharr(image, mask=None, *, axis=None, mode="reflect", cval=0.0):
    """Find edges with the Scharr operator, equal to ``skimage.filters.scharr``.

    %(edge_doc)s
    """
    return _edge_filter("scharr", image, mask, axis, mode, cval)


def laplace_kernel(ndim):
    """The discrete Laplacian of scikit-image (``restoration.uft.laplacian``): 2 ndim at the centre, -1 at the
    2 ndim face neighbours of a 3^ndim kernel."""
    k = np.zeros((3,) * ndim)
    for a in range(ndim):
        idx = [1] * ndim
        for v in (0, 2):
            idx[a] = v
            k[tuple(idx)] = -1.0
    k[(1,) * ndim] = 2.0 * ndim
    return k


@filled(A.DOC)
def laplace(image, ksize=3, mask=None):
    """Find edges with the discrete Laplace operator, equal to ``skimage.filters.laplace``.

    The 3^n kernel with ``2 n`` at the centre and -1 at the face neighbours, convolved with mode 'reflect'.

    Parameters
    ----------
    image : array_like, N-d
    ksize : int, optional
        Accepted for compatibility (>= 3); scikit-image's operator is 3 wide whatever its value.
    %(mask)s

    Returns
    -------
    ndarray of float32 or float64
    """
    fn = "laplace"
    img = A.edge_image(A.image_array(image, fn, allow_bool=True))
    ks = V.int_tuple(ksize, 1, fn, "ksize")[0]
    if ks < 3:  # scikit-image fails for ksize < 3 (the transfer function cannot hold the 3^n operator)
        raise ValueError("%s(): argument 'ksize' must be >= 3, got %r" % (fn, ksize))
    msk = A.mask(mask, img.shape, fn)
    nthreads = _threads.get_num_threads()
    src = np.ascontiguousarray(img)
    result = np.empty(src.shape, src.dtype)
    if src.size:
        E.apply(src, result, laplace_kernel(img.ndim), (1,) * img.ndim, ("reflect",) * img.ndim, 0.0, "auto",
                nthreads, fn=fn)
    return _mask_result(result, msk, nthreads)


@filled(A.DOC)
def unsharp_mask(image, radius=1.0, amount=1.0, preserve_range=False, *, channel_axis=None):
    """Unsharp masking, equal to ``skimage.filters.unsharp_mask``.

    ``image + (image - gaussian(image, radius, mode='reflect')) * amount``, clipped to [0, 1] (or [-1, 1] when the
    converted image has negative values) unless ``preserve_range``.

    Parameters
    ----------
    image : array_like
    radius : float or sequence of float, optional
        The Gaussian's sigma (>= 0), per spatial axis.
    amount : float, optional
        How much of the detail to add back (may be negative).
    %(preserve_range)s
    %(channel_axis)s

    Returns
    -------
    ndarray of float32 (float16/float32 input) or float64
    """
    return _unsharp("unsharp_mask", image, radius, amount, preserve_range, channel_axis)


def unsharp_mask_range(image, radius, amount, value_range, channel_axis=None):
    """:func:`unsharp_mask` without ``preserve_range``, clipped to ``value_range`` as given rather than as found
    in ``image`` (a block of a larger image must be clipped to the whole image's range: fastconv.dask)."""
    return _unsharp("unsharp_mask", image, radius, amount, False, channel_axis, value_range)


def _unsharp(fn, image, radius, amount, preserve_range, channel_axis, value_range=None):
    img = A.image_array(image, fn, allow_bool=True)
    ch = A.channel_axis(channel_axis, img.ndim, fn)
    sigmas = _sigmas(radius, img.ndim, ch, fn, arg="radius", full_ok=False)
    amount = A.real(amount, fn, "amount")
    preserve_range = V.flag(preserve_range, fn, "preserve_range")
    dtype = A.supported_float(img.dtype)
    if preserve_range:
        fimg = img.astype(dtype, copy=False)
        lo = hi = 0.0
    else:
        fimg = A.img_as_float(img).astype(dtype, copy=False)
        if value_range is None:
            value_range = (-1.0, 1.0) if np.any(fimg < 0) else (0.0, 1.0)
        lo, hi = value_range
    src = np.ascontiguousarray(fimg)
    result = np.empty(src.shape, src.dtype)
    if src.size == 0:
        return result
    nthreads = _threads.get_num_threads()
    E.separable(src, result, _gaussian_passes(sigmas, 4.0, ("reflect",) * img.ndim, 0.0), nthreads)
    E._filter.unsharp_combine(src.reshape(-1), result.reshape(-1), amount, lo, hi, not preserve_range, nthreads)
    return result
