"""scikit-image / scipy.ndimage style image filtering on all cores.

Image first, keyword-only options, scipy.ndimage's boundary mode names, the same results::

    correlate(image, weights, *, mode="reflect", cval=0.0, origin=0, out=None, method="auto")
    convolve(image, weights, *, mode="reflect", cval=0.0, origin=0, out=None, method="auto")
        == scipy.ndimage.correlate / convolve, N-d, modes reflect, constant, nearest, mirror, wrap (+ grid-*)
    gaussian(image, sigma=1.0, *, mode="nearest", cval=0, preserve_range=False, truncate=4.0,
             channel_axis=None, out=None)                          == skimage.filters.gaussian
    sobel / prewitt / scharr / farid(image, mask=None, *, axis=None, mode="reflect", cval=0.0)
    sobel_h/_v, prewitt_h/_v, scharr_h/_v, farid_h/_v, roberts(+_pos_diag/_neg_diag)(image, mask=None)
    difference_of_gaussians(image, low_sigma, high_sigma=None, *, mode="nearest", cval=0, channel_axis=None,
                            truncate=4.0)
    median(image, footprint=None, out=None, mode="nearest", cval=0.0, behavior="ndimage")
    rank.minimum / rank.maximum / rank.median(image, footprint, out=None, mask=None, shift_x=0, shift_y=0,
                                              shift_z=0)
    butterworth(image, cutoff_frequency_ratio=0.005, high_pass=True, order=2.0, channel_axis=None, *,
                squared_butterworth=True, npad=0)
    laplace(image, ksize=3, mask=None)
    unsharp_mask(image, radius=1.0, amount=1.0, preserve_range=False, *, channel_axis=None)
                                                                   == skimage.filters.<same name>
    kernels["sharpen"], ...; apply_kernel(image, name_or_array, *, mode="reflect", ...)

How it runs: a typed Cython + OpenMP kernel (``fastconv/_kernels/_filter.pyx``) resolves the boundary per index
(no padded copy of the image); rank-1 kernels (Gaussian, Sobel, box, ... and any kernel whose SVD shows rank 1)
run as one 1-D pass per axis; large kernels go through real FFTs (``scipy.fft``, as many workers as
``fastconv.get_num_threads()``, float32 in complex64) of the image padded with the boundary mode.  ``method="auto"``
picks the cheapest by a measured cost model; ``method=`` overrides it.  Results do not depend on the number of
threads (bitwise).

Dtypes: ``correlate``/``convolve`` return the image's dtype like scipy.ndimage (integers truncated toward zero)
and compute float16/float32 images in float32, everything else in float64.  The scikit-image filters convert
integer images exactly like ``skimage.util.img_as_float`` (uint -> [0, 1], int -> [-1, 1], float64); float32 stays
float32.

Tolerance (what the parity tests assert)
----------------------------------------
scipy.ndimage and scikit-image compute in float64 whatever the input; fastconv computes float32 images in float32
and may sum in another order (separable passes, FFT).  Against them:

* float64 direct / separable: ``|fastconv - reference| <= 1e-12 * max|reference|`` (elementwise, rtol 1e-12);
* float32 (any method) and float64 FFT: ``<= 1e-5 * max|reference|`` (float32: about 1e-5 relative);
* integer outputs of correlate/convolve: equal, or one unit apart where the exact value is an integer that the two
  summation orders round to opposite sides of before truncation.

Non-finite values: ``direct`` and ``separable`` put an inf or NaN where scipy.ndimage does (weights with
``|w| <= 2.2e-16`` are skipped, as scipy does; the separable passes skip their factors' zeros); the FFT spreads
one over the whole image (or tile), so ``method="auto"`` never picks it for an image or kernel holding one, nor
for bool images.
"""
from ._engine import METHODS, MODES
from ._named import apply_kernel, kernels
from ._ndimage import convolve, correlate
from ._skimage import gaussian, laplace, prewitt, scharr, sobel, unsharp_mask
from ._edges import (difference_of_gaussians, farid, farid_h, farid_v, prewitt_h, prewitt_v, roberts,
                     roberts_neg_diag, roberts_pos_diag, scharr_h, scharr_v, sobel_h, sobel_v)
from ._rank import median
from . import rank
from ._fft_based import butterworth

__all__ = ["correlate", "convolve", "gaussian", "sobel", "prewitt", "scharr", "laplace", "unsharp_mask",
           "sobel_h", "sobel_v", "prewitt_h", "prewitt_v", "scharr_h", "scharr_v", "farid", "farid_h", "farid_v",
           "roberts", "roberts_pos_diag", "roberts_neg_diag", "difference_of_gaussians", "median", "rank",
           "butterworth", "kernels", "apply_kernel", "MODES", "METHODS"]
