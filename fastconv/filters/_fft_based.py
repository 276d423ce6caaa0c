"""``butterworth``: scikit-image's Butterworth frequency-domain filter, with scipy.fft on fastconv's threads."""
import numpy as np
import scipy.fft

from .. import _threads
from . import _args as A

__all__ = ["butterworth"]


def _transfer(shape, ratio, order, high_pass, real, dtype, squared):
    """The Butterworth transfer function on the (r)fft grid of ``shape``: ``1 / (1 + (q^2)^order)`` with
    ``q`` the frequency over ``ratio`` (times ``(q^2)^order`` for a high pass; square root unless ``squared``)."""
    q2 = None
    for i, d in enumerate(shape):
        f = np.arange(-(d - 1) // 2, (d - 1) // 2 + 1) / (d * ratio)
        f = scipy.fft.ifftshift(f ** 2)
        if real and i == len(shape) - 1:
            f = f[:d // 2 + 1]
        f = f.reshape((1,) * i + (-1,) + (1,) * (len(shape) - i - 1))
        q2 = f if q2 is None else q2 + f
    q2 = np.power(q2.astype(dtype), order)
    w = 1 / (1 + q2)
    if high_pass:
        w *= q2
    if not squared:
        np.sqrt(w, out=w)
    return w


def butterworth(image, cutoff_frequency_ratio=0.005, high_pass=True, order=2.0, channel_axis=None, *,
                squared_butterworth=True, npad=0):
    fn = "butterworth"
    img = np.asarray(image)
    if img.dtype.kind not in "biufc":
        raise TypeError("%s(): the image must be numeric, got dtype %s" % (fn, img.dtype))
    if img.ndim == 0:
        raise ValueError("%s(): the image must have at least one dimension" % fn)
    if npad < 0:
        raise ValueError("npad must be >= 0")
    if not 0 <= cutoff_frequency_ratio <= 0.5:
        raise ValueError("cutoff_frequency_ratio should be in the range [0, 0.5]")
    ch = A.channel_axis(channel_axis, img.ndim, fn)
    if npad > 0:
        center = tuple(slice(npad, s + npad) for s in img.shape)
        img = np.pad(img, npad, mode="edge")
    axes = [a for a in range(img.ndim) if a != ch]
    fft_shape = tuple(img.shape[a] for a in axes)
    real = not np.iscomplexobj(img)
    if img.dtype.kind == "c":
        dtype = np.complex64 if img.dtype == np.complex64 else np.complex128
    else:
        dtype = A.supported_float(img.dtype)
    w = _transfer(fft_shape, cutoff_frequency_ratio, order, high_pass, real, dtype, squared_butterworth)
    if ch is not None:
        w = np.expand_dims(w, ch)
    workers = _threads.get_num_threads()
    if real:
        spec = scipy.fft.rfftn(img, axes=axes, workers=workers)
        spec *= w
        out = scipy.fft.irfftn(spec, s=fft_shape, axes=axes, workers=workers, overwrite_x=True)
    else:
        spec = scipy.fft.fftn(img, axes=axes, workers=workers)
        spec *= w
        out = scipy.fft.ifftn(spec, s=fft_shape, axes=axes, workers=workers, overwrite_x=True)
    if npad > 0:
        out = out[center]
    return out


butterworth.__doc__ = """Butterworth low- or high-pass filter in the frequency domain, equal to
    ``skimage.filters.butterworth`` (transforms by scipy.fft with fastconv's thread count as workers).

    Parameters
    ----------
    image : array_like
    cutoff_frequency_ratio : float, optional
        Cut-off as a fraction of the sampling frequency, in [0, 0.5]. Default 0.005.
    high_pass : bool, optional
    order : float, optional
    channel_axis : int or None, optional
    squared_butterworth : bool, optional
        The squared transfer function (scikit-image's default) or its square root.
    npad : int, optional
        Edge padding on every side before the transform (cropped afterwards).
    """
