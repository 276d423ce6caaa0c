"""The classic 3x3 image-processing kernels by name, and :func:`apply_kernel`.

=====================  ==========================================  =====================================
name                   weights                                     effect
=====================  ==========================================  =====================================
``identity``           ``[[0, 0, 0], [0, 1, 0], [0, 0, 0]]``       leaves the image unchanged
``edge_detection_1``   ``[[1, 0, -1], [0, 0, 0], [-1, 0, 1]]``     diagonal edges
``edge_detection_2``   ``[[0, -1, 0], [-1, 4, -1], [0, -1, 0]]``   4-neighbour Laplacian
``edge_detection_3``   ``[[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]``  8-neighbour Laplacian
``sharpen``            ``[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]``   identity + edge_detection_2
``box_blur``           ``ones((3, 3)) / 9``                        mean of the 3x3 neighbourhood
``gaussian_blur_3x3``  ``[[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16``  binomial approximation of a Gaussian
=====================  ==========================================  =====================================

All of them are symmetric under a half turn, so convolution and correlation agree.
"""
from types import MappingProxyType

import numpy as np

from .. import _threads
from .. import _validate as V
from .._doc import filled
from . import _args as A
from . import _engine as E

__all__ = ["kernels", "apply_kernel"]


def _frozen(rows, scale=1.0):
    a = np.array(rows, dtype=np.float64) * scale
    a.flags.writeable = False
    return a


kernels = MappingProxyType({
    "identity": _frozen([[0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "edge_detection_1": _frozen([[1, 0, -1], [0, 0, 0], [-1, 0, 1]]),
    "edge_detection_2": _frozen([[0, -1, 0], [-1, 4, -1], [0, -1, 0]]),
    "edge_detection_3": _frozen([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]),
    "sharpen": _frozen([[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "box_blur": _frozen(np.ones((3, 3)), 1 / 9),
    "gaussian_blur_3x3": _frozen([[1, 2, 1], [2, 4, 2], [1, 2, 1]], 1 / 16),
})


def _kernel(kernel, ndim, fn):
    if isinstance(kernel, str):
        if kernel not in kernels:
            raise ValueError("%s(): argument 'kernel' must be one of %s or an array, got %r"
                             % (fn, sorted(kernels), kernel))
        kernel = kernels[kernel]
    return A.weights_array(kernel, ndim, fn, arg="kernel")


@filled(A.DOC)
def apply_kernel(image, kernel, *, mode="reflect", cval=0.0, channel_axis=None, preserve_range=False,
                 method="auto", out=None):
    """Convolve an image with a named kernel (see ``fastconv.filters.kernels``) or an array of weights.

    The image is converted like scikit-image's filters (``img_as_float`` unless ``preserve_range``; float32
    stays float32); colour channels are filtered independently.

    Parameters
    ----------
    image : array_like
    kernel : str or array_like
        A name from ``fastconv.filters.kernels`` or weights with one axis per spatial image axis.
    %(mode)s
    %(cval)s
    %(channel_axis)s
    %(preserve_range)s
    %(method)s
    out : ndarray of float, optional

    Returns
    -------
    ndarray of float32 (float16/float32 input) or float64
    """
    fn = "apply_kernel"
    img = A.image_array(image, fn, allow_bool=True)
    ch = A.channel_axis(channel_axis, img.ndim, fn)
    named = kernels.get(kernel) if isinstance(kernel, str) else kernel
    if ch is None and named is not None and np.ndim(named) == img.ndim - 1 >= 2:
        raise ValueError("%s(): argument 'kernel' has %d axes but the image has %d (shape %s); for a colour or "
                         "multichannel image pass channel_axis=-1 (the axis of the channels), which filters each "
                         "channel with the kernel" % (fn, np.ndim(named), img.ndim, img.shape))
    w = _kernel(kernel, img.ndim - (ch is not None), fn)
    if ch is not None:  # a length-1 kernel axis keeps the channels apart
        w = np.expand_dims(w, ch)
    w = w[(slice(None, None, -1),) * w.ndim]  # convolution
    modes = A.modes(mode, img.ndim, fn)
    cval = A.real(cval, fn, "cval")
    preserve_range = V.flag(preserve_range, fn, "preserve_range")
    method = V.check_choice(method, E.METHODS, fn, "method")
    out = None if out is None else V.out_array(out, img.shape, fn, kinds="f")
    fimg = A.float_image(img, preserve_range)
    src = np.ascontiguousarray(fimg)
    dst = V.destination(out, src.shape, src.dtype, src)
    if src.size:
        offs = tuple(k // 2 - (1 - k % 2) for k in w.shape)  # convolve's origin rule for even lengths
        E.apply(src, dst, w, offs, modes, cval, method, _threads.get_num_threads(), fn=fn)
    return V.deliver(out, dst)
