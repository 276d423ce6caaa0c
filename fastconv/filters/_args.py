"""Argument normalisation specific to :mod:`fastconv.filters` (the shared checks, flags and the ``out=`` policy
are in :mod:`fastconv._validate`).

Every helper takes the public function's name ``fn`` so messages read ``"gaussian(): argument 'sigma' ..."``;
``TypeError`` for a wrong type, ``ValueError`` for a wrong value or shape, as everywhere in fastconv.
"""
import numpy as np

from .. import _validate as V
from ._engine import MODES

__all__ = ["image_array", "weights_array", "modes", "origins", "channel_axis", "axes", "mask", "real",
           "img_as_float", "supported_float", "float_image", "edge_image", "DOC"]


def image_array(image, fn, arg="image", allow_bool=False):
    """A real numeric ndarray of at least one dimension (bool only where scikit-image accepts it)."""
    arr = None
    V.refuse_lazy(image, fn, arg)
    if allow_bool and not isinstance(image, (str, bytes)):
        try:
            arr = np.asarray(image)
        except (TypeError, ValueError):
            arr = None
        if arr is not None and arr.dtype != np.bool_:
            arr = None
    if arr is None:
        arr = V.as_array(image, fn, arg)
    if arr.ndim == 0:
        raise ValueError("%s(): argument '%s' must have at least one dimension, got a scalar" % (fn, arg))
    return arr


def weights_array(weights, ndim, fn, arg="weights"):
    """Filter weights as float64 with one axis per image axis and no empty axis (bool weights become 0/1)."""
    if isinstance(weights, np.ndarray) and weights.dtype == np.bool_:
        w = weights.astype(np.float64)
    else:
        w = V.as_array(weights, fn, arg).astype(np.float64, copy=False)
    if w.ndim != ndim:
        raise ValueError("%s(): argument '%s' must have one axis per image axis (%d), got %d-D weights of shape %s"
                         % (fn, arg, ndim, w.ndim, w.shape))
    if w.size == 0:
        raise ValueError("%s(): argument '%s' must not be empty, got shape %s" % (fn, arg, w.shape))
    return w


def modes(mode, ndim, fn):
    """A mode name, or one per axis, -> tuple of canonical extension names (see ``_engine.MODES``)."""
    if isinstance(mode, str):
        return (_mode(mode, fn),) * ndim
    if isinstance(mode, (list, tuple)):
        if len(mode) != ndim:
            raise ValueError("%s(): argument 'mode' given per axis must have %d entries, got %r" % (fn, ndim, mode))
        return tuple(_mode(m, fn) for m in mode)
    raise TypeError("%s(): argument 'mode' must be a string (or one per axis), one of %s; got %r"
                    % (fn, sorted(MODES), mode))


def _mode(m, fn):
    if not isinstance(m, str):
        raise TypeError("%s(): argument 'mode' must be a string, one of %s; got %r" % (fn, sorted(MODES), m))
    if m not in MODES:
        raise ValueError("%s(): argument 'mode' must be one of %s, got %r" % (fn, sorted(MODES), m))
    return MODES[m]


def origins(origin, ksize, fn, flip):
    """Per-axis origins as the correlation sees them, checked against scipy.ndimage's rule.

    ``flip`` (convolution) mirrors the origin and shifts it by one for even kernels, as ``scipy.ndimage.convolve``
    does.  Either way the user's origin must satisfy ``-(k // 2) <= origin <= (k - 1) // 2``.
    """
    user = V.int_tuple(origin, len(ksize), fn, "origin")
    out = []
    for o, k in zip(user, ksize):
        c = -o - (1 - k % 2) if flip else o
        if not -(k // 2) <= c <= (k - 1) // 2:
            raise ValueError("%s(): argument 'origin' %r is invalid for weights of shape %s: each origin must satisfy "
                             "-(k // 2) <= origin <= (k - 1) // 2" % (fn, origin, tuple(ksize)))
        out.append(c)
    return tuple(out)


def channel_axis(axis, ndim, fn):
    """None or an axis index in [0, ndim); the image needs a spatial axis besides the channels."""
    if axis is None:
        return None
    a = V.axis_index(axis, ndim, fn, "channel_axis")
    if ndim < 2:
        raise ValueError("%s(): argument 'channel_axis' needs an image with at least 2 dimensions, got %d-D"
                         % (fn, ndim))
    return a


def axes(axis, ndim, fn):
    """None (all axes), an int, or a sequence of ints -> list of distinct axis indices."""
    if axis is None:
        return list(range(ndim))
    if isinstance(axis, (list, tuple, np.ndarray)):
        out = [V.axis_index(a, ndim, fn, "axis") for a in axis]
        if not out or len(set(out)) != len(out):
            raise ValueError("%s(): argument 'axis' must name distinct axes, got %r" % (fn, axis))
        return out
    return [V.axis_index(axis, ndim, fn, "axis")]


def mask(m, shape, fn):
    """None or a boolean array of the image's shape (nonzero = inside)."""
    if m is None:
        return None
    arr = np.asarray(V.refuse_lazy(m, fn, "mask"))
    if arr.dtype.kind not in "biuf":
        raise TypeError("%s(): argument 'mask' must be a boolean or numeric array, got dtype %s" % (fn, arr.dtype))
    if arr.shape != tuple(shape):
        raise ValueError("%s(): argument 'mask' must have the image's shape %s, got %s" % (fn, tuple(shape), arr.shape))
    return arr.astype(bool, copy=False)


def real(value, fn, arg, minimum=None):
    """A finite real number (>= minimum when given)."""
    v = V.real_scalar(value, fn, arg)
    if not np.isfinite(v):
        raise ValueError("%s(): argument '%s' must be finite, got %r" % (fn, arg, value))
    if minimum is not None and v < minimum:
        raise ValueError("%s(): argument '%s' must be >= %g, got %r" % (fn, arg, minimum, value))
    return v


# ------------------------------------------------------------------ scikit-image's dtype conventions
def img_as_float(image):
    """``skimage.util.img_as_float``: floats unchanged, bool -> 0/1, uint -> [0, 1], int -> [-1, 1] (float64).

    The same arithmetic as scikit-image (a multiplication by ``1 / max`` in float64, the most negative signed
    value clipped to -1), so converted values are bit-identical.
    """
    kind = image.dtype.kind
    if kind == "f":
        return image
    if kind == "b":
        return image.astype(np.float64)
    info = np.iinfo(image.dtype)
    res = np.multiply(image, 1.0 / info.max, dtype=np.float64)
    if kind == "i":
        np.maximum(res, -1.0, out=res)
    return res


def supported_float(dtype):
    """scikit-image's ``_supported_float_type``: float16 -> float32, float32/float64 kept, others -> float64."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)
    return np.dtype(np.float64)


def float_image(image, preserve_range):
    """``gaussian``'s conversion: float16 -> float32; ``preserve_range`` keeps values (non-floats become float64),
    otherwise ``img_as_float``; then float32 or float64."""
    if image.dtype == np.float16:
        image = image.astype(np.float32)
    elif preserve_range:
        if image.dtype.char not in "df":
            image = image.astype(np.float64)
    else:
        image = img_as_float(image)
    return image.astype(supported_float(image.dtype), copy=False)


def edge_image(image):
    """The edge filters' conversion: floats to float32/float64 keeping values, everything else ``img_as_float``."""
    if image.dtype.kind == "f":
        return image.astype(supported_float(image.dtype), copy=False)
    return img_as_float(image)


# ------------------------------------------------------------------ shared docstring fragments
DOC = {
    "mode": """mode : str or sequence of str, optional
        How the image extends beyond its edges (one name, or one per axis)::

            'reflect'  (d c b a | a b c d | d c b a)   half-sample symmetric; alias 'grid-mirror'
            'mirror'   (d c b | a b c d | c b a)       whole-sample symmetric
            'nearest'  (a a a a | a b c d | d d d d)   edge value repeated
            'wrap'     (a b c d | a b c d | a b c d)   periodic; alias 'grid-wrap'
            'constant' (k k k k | a b c d | k k k k)   ``cval``; alias 'grid-constant'

        Kernels longer than the image repeat the pattern, as in scipy.ndimage.""",
    "cval": """cval : float, optional
        The value outside the image for ``mode='constant'``.""",
    "method": """method : {'auto', 'direct', 'separable', 'fft'}, optional
        ``'direct'``: one pass, boundary resolved per index; ``'separable'``: one 1-D pass per axis (rank-1
        kernels only); ``'fft'``: real FFTs of the mode-padded image (best for large kernels); ``'auto'``: the
        cheapest by a cost model measured on the reference machine.""",
    "channel_axis": """channel_axis : int or None, optional
        The axis of colour channels, filtered independently; None means every axis is spatial.""",
    "preserve_range": """preserve_range : bool, optional
        Keep the values of integer images instead of scaling them like ``skimage.util.img_as_float``
        (unsigned -> [0, 1], signed -> [-1, 1]).""",
    "mask": """mask : array_like of bool, optional
        Where the result is wanted: outside the mask eroded by one pixel (full connectivity) the output is 0.""",
}
