"""scikit-image's directional and other edge filters: ``sobel_h/v``, ``prewitt_h/v``, ``scharr_h/v``, ``farid``
(+ ``_h``/``_v``), ``roberts`` (+ ``_pos_diag``/``_neg_diag``), and ``difference_of_gaussians``.

Same kernels, dtype conversion (floats kept as float32/float64, everything else ``img_as_float``), boundary
handling and ``mask`` rule as ``skimage.filters`` 0.26; the 2-D-only filters raise ``ValueError`` for other
dimensions, as scikit-image does.
"""
import numpy as np

from .. import _threads
from .. import ndimage as _ndi
from . import _args as A
from . import _engine as E
from . import _skimage as K

__all__ = ["sobel_h", "sobel_v", "prewitt_h", "prewitt_v", "scharr_h", "scharr_v", "farid", "farid_h", "farid_v",
           "roberts", "roberts_pos_diag", "roberts_neg_diag", "difference_of_gaussians"]

ROBERTS_PD = np.array([[1.0, 0.0], [0.0, -1.0]])
ROBERTS_ND = np.array([[0.0, 1.0], [-1.0, 0.0]])


def _two_d(image, fn):
    img = A.image_array(image, fn, allow_bool=True)
    if img.ndim != 2:
        raise ValueError("%s(): the image must be 2-D, got %d-D" % (fn, img.ndim))
    return img


def _directional(kind, axis, fn):
    def f(image, mask=None):
        _two_d(image, fn)
        return K._edge_filter(kind, image, mask, axis, "reflect", 0.0)
    f.__name__ = fn
    f.__doc__ = ("%s derivative along axis %d of a 2-D image, equal to ``skimage.filters.%s`` (%s edges)."
                 % (kind.capitalize(), axis, fn, "horizontal" if axis == 0 else "vertical"))
    return f


sobel_h = _directional("sobel", 0, "sobel_h")
sobel_v = _directional("sobel", 1, "sobel_v")
prewitt_h = _directional("prewitt", 0, "prewitt_h")
prewitt_v = _directional("prewitt", 1, "prewitt_v")
scharr_h = _directional("scharr", 0, "scharr_h")
scharr_v = _directional("scharr", 1, "scharr_v")


def farid(image, mask=None, *, axis=None, mode="reflect", cval=0.0):
    return K._edge_filter("farid", image, mask, axis, mode, cval)


def farid_h(image, *, mask=None):
    _two_d(image, "farid_h")
    return K._edge_filter("farid", image, mask, 0, "reflect", 0.0)


def farid_v(image, *, mask=None):
    _two_d(image, "farid_v")
    return K._edge_filter("farid", image, mask, 1, "reflect", 0.0)


def _roberts_diag(image, mask, weights, fn):
    img = A.edge_image(_two_d(image, fn))
    msk = A.mask(mask, img.shape, fn)
    result = _ndi.convolve(img, weights)
    return K._mask_result(result, msk, _threads.get_num_threads())


def roberts_pos_diag(image, mask=None):
    return _roberts_diag(image, mask, ROBERTS_PD, "roberts_pos_diag")


def roberts_neg_diag(image, mask=None):
    return _roberts_diag(image, mask, ROBERTS_ND, "roberts_neg_diag")


def roberts(image, mask=None):
    pd = roberts_pos_diag(image, mask)
    nd = roberts_neg_diag(image, mask)
    out = np.sqrt(pd ** 2 + nd ** 2)
    out /= np.sqrt(2)
    return out


def difference_of_gaussians(image, low_sigma, high_sigma=None, *, mode="nearest", cval=0, channel_axis=None,
                            truncate=4.0):
    fn = "difference_of_gaussians"
    img = A.img_as_float(A.image_array(image, fn, allow_bool=True))
    ch = A.channel_axis(channel_axis, img.ndim, fn)
    spatial = img.ndim - (ch is not None)
    low = np.array(low_sigma, dtype=float, ndmin=1)
    high = low * 1.6 if high_sigma is None else np.array(high_sigma, dtype=float, ndmin=1)
    for name, s in (("low_sigma", low), ("high_sigma", high)):
        if s.ndim != 1 or len(s) not in (1, spatial):
            raise ValueError("%s(): argument '%s' must have length 1 or the number of spatial dimensions (%d), "
                             "got %r" % (fn, name, spatial, s.tolist()))
    low = low * np.ones(spatial)
    high = high * np.ones(spatial)
    if np.any(high < low):
        raise ValueError("%s(): argument 'high_sigma' must be >= 'low_sigma' on every axis" % fn)
    fimg = A.float_image(img, False)
    modes = A.modes(mode, img.ndim, fn)
    cv = A.real(cval, fn, "cval")
    tr = A.real(truncate, fn, "truncate", minimum=0.0)
    lo_passes = K._gaussian_passes(K._sigmas(low, img.ndim, ch, fn, "low_sigma"), tr, modes, cv)
    hi_passes = K._gaussian_passes(K._sigmas(high, img.ndim, ch, fn, "high_sigma"), tr, modes, cv)
    if not lo_passes or not hi_passes or fimg.size == 0:
        im1 = K.gaussian(img, sigma=low, mode=mode, cval=cval, channel_axis=ch, truncate=truncate)
        im2 = K.gaussian(img, sigma=high, mode=mode, cval=cval, channel_axis=ch, truncate=truncate)
        np.subtract(im1, im2, out=im1)
        return im1
    # the wide Gaussian into the result, then the narrow one stored as (narrow - result) by the kernel
    src = np.ascontiguousarray(fimg)
    out = np.empty(src.shape, src.dtype)
    nthreads = _threads.get_num_threads()
    E.separable(src, out, hi_passes, nthreads)
    E.separable(src, out, lo_passes, nthreads, 5)
    return out


_EDGE_DOC = """{title}, equal to ``skimage.filters.{name}``.

    Parameters
    ----------
    image : array_like
    {mask}
    axis : int or sequence of int, optional
        Axes along which to differentiate; with several (default: all) the result is the magnitude
        ``sqrt(sum g_i^2 / ndim)``.
    {mode}
    {cval}
    """
farid.__doc__ = _EDGE_DOC.format(title="Farid & Simoncelli edge filter (5-tap derivative and smoothing)",
                                 name="farid", **A.DOC)
farid_h.__doc__ = "Farid horizontal edges (derivative along axis 0) of a 2-D image, equal to skimage.filters.farid_h."
farid_v.__doc__ = "Farid vertical edges (derivative along axis 1) of a 2-D image, equal to skimage.filters.farid_v."
roberts_pos_diag.__doc__ = ("Roberts cross along the positive diagonal of a 2-D image, equal to "
                            "skimage.filters.roberts_pos_diag.")
roberts_neg_diag.__doc__ = ("Roberts cross along the negative diagonal of a 2-D image, equal to "
                            "skimage.filters.roberts_neg_diag.")
roberts.__doc__ = "Roberts cross edge magnitude of a 2-D image, equal to skimage.filters.roberts."
difference_of_gaussians.__doc__ = """Band-pass filter: gaussian(low_sigma) - gaussian(high_sigma), equal to
    ``skimage.filters.difference_of_gaussians`` (``high_sigma`` defaults to 1.6 low_sigma; ``img_as_float``
    conversion; ``channel_axis`` filtered per channel)."""
