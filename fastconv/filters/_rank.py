"""scikit-image's median and rank-style minimum/maximum, on the rank kernels of :mod:`fastconv.ndimage`.

``median(image, footprint=None, out=None, mode='nearest', cval=0.0, behavior='ndimage')`` is
``skimage.filters.median``: ``behavior='ndimage'`` is scipy.ndimage's median filter (any dtype, boundary modes),
``behavior='rank'`` the histogram semantics of ``skimage.filters.rank.median``.

``rank.minimum / rank.maximum / rank.median(image, footprint, out=None, mask=None, shift_x=0, shift_y=0,
shift_z=0)`` are ``skimage.filters.rank``'s: unsigned 8/16-bit 2-D or 3-D images; only pixels inside the image
and inside ``mask`` count (the median is the element ``pop // 2`` of the ``pop`` counted values), a pixel whose
neighbourhood counts none gives 0; ``shift_y``/``shift_x`` move the footprint's centre along axis 0/1 of a 2-D
image, ``shift_x``/``shift_y``/``shift_z`` along axis 0/1/2 of a 3-D one (as scikit-image does).
"""
import warnings

import numpy as np

from .. import _validate as V
from .. import ndimage as _ndi_api
from ..ndimage import _filters as NF
from ..ndimage import _support as S
from . import _args as A

__all__ = ["median", "minimum", "maximum", "rank_median"]


def median(image, footprint=None, out=None, mode="nearest", cval=0.0, behavior="ndimage"):
    fn = "median"
    if behavior not in ("ndimage", "rank"):
        raise ValueError("%s(): argument 'behavior' must be 'ndimage' or 'rank', got %r" % (fn, behavior))
    if behavior == "rank":
        if mode != "nearest" or not np.isclose(cval, 0.0):
            warnings.warn("Change 'behavior' to 'ndimage' if you want to use the parameters 'mode' or 'cval'. "
                          "They will be discarded otherwise.", stacklevel=2)
        if footprint is None:
            footprint = np.ones((3,) * np.ndim(image), dtype=np.uint8)
        return _rank_filter("median", image, footprint, out, None, 0, 0, 0)
    img = A.image_array(image, fn, allow_bool=True)
    if footprint is None:
        footprint = np.ones((3,) * img.ndim, dtype=bool)
    return _ndi_api.median_filter(img, footprint=footprint, output=out, mode=mode, cval=cval)


def _rank_filter(kind, image, footprint, out, mask, shift_x, shift_y, shift_z):
    fn = kind
    img = A.image_array(image, fn, allow_bool=True)
    if img.ndim not in (2, 3):
        raise ValueError("%s(): the image must be 2-D or 3-D, got %d-D" % (fn, img.ndim))
    if img.dtype == np.bool_:
        img = img.astype(np.uint8)
    if img.dtype not in (np.uint8, np.uint16):
        raise TypeError("%s(): the image must be uint8 or uint16 (scikit-image's rank filters), got %s"
                        % (fn, img.dtype))
    if footprint is None:
        raise TypeError("%s(): argument 'footprint' is required" % fn)
    fp = np.asarray(footprint)
    if fp.ndim != img.ndim:
        raise ValueError("%s(): the footprint must have the image's %d dimensions, got %d"
                         % (fn, img.ndim, fp.ndim))
    fp = np.ascontiguousarray(fp != 0)
    if not fp.any():
        raise ValueError("%s(): the footprint must select at least one element" % fn)
    # scikit-image: shift_y moves along axis 0 and shift_x along axis 1 of a 2-D image; in 3-D shift_x moves
    # along axis 0, shift_y along axis 1 and shift_z along axis 2
    shifts = [int(shift_y), int(shift_x)] if img.ndim == 2 else [int(shift_x), int(shift_y), int(shift_z)]
    for o, k in zip(shifts, fp.shape):
        if k // 2 + o < 0 or k // 2 + o >= k:
            raise ValueError("%s(): shift %d is outside the footprint of length %d along its axis" % (fn, o, k))
    msk = A.mask(mask, img.shape, fn)
    work = img.astype(np.int32)
    if msk is not None:
        work[~msk] = -1
    result = np.empty(img.shape, np.int32)
    rank = {"minimum": -1, "maximum": -2, "median": -3}[kind]
    shape = work.shape
    rows, colmap, ylo, yhi, off = NF._footprint_plan(shape, fp.shape, shifts, ["constant"] * img.ndim)
    t_row, t_dx = NF._taps(fp.reshape(-1, fp.shape[-1]))
    none = np.zeros((0, 3), np.intp)
    NF._ndi.nd_filter(work.reshape(-1, shape[-1]), result.reshape(-1, shape[-1]), rows, colmap, ylo, yhi, off, t_row,
                      t_dx, np.int32(-1), 6, rank, none, none, np.zeros(0, np.intp), 1, NF._nthreads())
    if out is None:
        return result.astype(img.dtype)
    V.out_array(out, img.shape, fn, kinds="iuf")
    np.copyto(out, result, casting="unsafe")
    return out


def _make(kind):
    def f(image, footprint, out=None, mask=None, shift_x=0, shift_y=0, shift_z=0):
        return _rank_filter(kind, image, footprint, out, mask, shift_x, shift_y, shift_z)
    f.__name__ = kind
    f.__qualname__ = kind
    f.__module__ = "fastconv.filters.rank"
    f.__doc__ = ("Local %s of a uint8/uint16 image over ``footprint``, equal to ``skimage.filters.rank.%s`` "
                 "(pixels outside the image or ``mask`` do not count; none counted gives 0).\n\n"
                 "    Parameters\n    ----------\n    image : 2-D or 3-D uint8/uint16 array\n"
                 "    footprint : array\n    out : ndarray, optional\n    mask : array of bool, optional\n"
                 "    shift_x, shift_y, shift_z : int, optional\n        Offsets of the footprint's centre "
                 "(2-D: shift_y along axis 0, shift_x along axis 1; 3-D: shift_x, shift_y, shift_z along axes "
                 "0, 1, 2).\n" % (kind, kind))
    return f


minimum = _make("minimum")
maximum = _make("maximum")
rank_median = _make("median")


median.__doc__ = """Median filter, equal to ``skimage.filters.median``.

    Parameters
    ----------
    image : array_like
    footprint : array_like, optional
        Neighbourhood (default: 3 along every axis).
    out : ndarray, optional
    mode, cval : optional
        scipy.ndimage boundary handling (``behavior='ndimage'``; default 'nearest').
    behavior : {'ndimage', 'rank'}, optional
        'ndimage': :func:`fastconv.ndimage.median_filter` (any dtype); 'rank': ``skimage.filters.rank.median``
        semantics (uint8/uint16, only pixels inside the image count).

    Returns
    -------
    ndarray of the image's dtype (or ``out``).
    """
