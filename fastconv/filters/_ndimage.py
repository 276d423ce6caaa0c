"""``correlate`` and ``convolve`` with ``scipy.ndimage``'s semantics (N-d, boundary modes, origins, output dtype).

Data path::

    correlate/convolve -> _args (image, weights, modes, origins, out) -> computation dtype
                       -> _engine.apply (auto: rank-1 test + cost model) -> kernel(out=...) -> cast into out
"""
import numpy as np

from .. import _threads
from .. import _validate as V
from .._doc import filled
from . import _args as A
from . import _engine as E

__all__ = ["correlate", "convolve"]


def filter_nd(fn, image, weights, mode, cval, origin, out, method, flip):
    """Validate a correlate/convolve call and run it; the result has ``out``'s dtype or else the image's."""
    img = A.image_array(image, fn, allow_bool=True)     # scipy.ndimage takes bool images (and returns bool)
    w = A.weights_array(weights, img.ndim, fn)
    modes = A.modes(mode, img.ndim, fn)
    cval = V.real_scalar(cval, fn, "cval")
    method = V.check_choice(method, E.METHODS, fn, "method")
    org = A.origins(origin, w.shape, fn, flip)
    if flip:
        w = w[(slice(None, None, -1),) * w.ndim]
    if out is not None:
        V.out_array(out, img.shape, fn, kinds="fiu")
    # computed in float32 for float16/float32 images (unless a float64 out asks for more), else float64
    comp = np.dtype(np.float64) if img.dtype == np.bool_ else V.float_kind(img.dtype)
    if out is not None and out.dtype == np.float64:
        comp = np.dtype(np.float64)
    src = np.ascontiguousarray(img, dtype=comp)
    dst = V.destination(out, img.shape, comp, src)
    if img.size:
        offs = tuple(k // 2 + o for k, o in zip(w.shape, org))
        E.apply(src, dst, w, offs, modes, cval, method, _threads.get_num_threads(), fn=fn,
                fft=img.dtype != np.bool_)
    if out is None and dst.dtype != img.dtype:
        return dst.astype(img.dtype)  # integers truncate toward zero and bool is "non-zero", as scipy's C cast
    return V.deliver(out, dst)


# the shared docstring body of correlate and convolve (``name``, ``formula``: the function's)
NDIMAGE_DOC = {"ndimage_doc": """Equal to ``scipy.ndimage.%(name)s(image, weights, mode=mode, cval=cval,
    origin=origin)`` (to rounding, see :mod:`fastconv.filters`), on all cores.

    %(formula)s

    Parameters
    ----------
    image : array_like, N-d, real
    weights : array_like, one axis per image axis
        Weights with ``|w| <= 2.2e-16`` are skipped, as scipy does.
    %(mode)s
    %(cval)s
    origin : int or sequence of int, optional
        Shifts the kernel: positive values move it towards lower indices of the input.  Each must satisfy
        ``-(k // 2) <= origin <= (k - 1) // 2`` for a kernel of length ``k``.
    out : ndarray, optional
        Array of the image's shape to write into; its dtype sets the result's (integers truncate toward zero).
    %(method)s

    Returns
    -------
    ndarray of the image's shape, with ``out``'s dtype if given, else the image's.  Float16/float32 images are
    computed in float32, everything else (integers, bool) in float64; a bool result is True where the sum is
    non-zero, as in scipy."""}


@filled(A.DOC, NDIMAGE_DOC, name="correlate",
        formula="``out[i] = sum_k weights[k] * image_ext[i + k - (shape // 2 + origin)]``")
def correlate(image, weights, *, mode="reflect", cval=0.0, origin=0, out=None, method="auto"):
    """N-d correlation with a boundary mode.

    %(ndimage_doc)s
    """
    return filter_nd("correlate", image, weights, mode, cval, origin, out, method, flip=False)


@filled(A.DOC, NDIMAGE_DOC, name="convolve",
        formula="``correlate(image, weights[::-1, ...], origin=-origin - (1 for even kernel lengths))``\n\n    For "
                "even kernel lengths the mirrored origin moves by one more, as in scipy.ndimage.")
def convolve(image, weights, *, mode="reflect", cval=0.0, origin=0, out=None, method="auto"):
    """N-d convolution with a boundary mode.

    %(ndimage_doc)s
    """
    return filter_nd("convolve", image, weights, mode, cval, origin, out, method, flip=True)
