"""scipy.ndimage's filters on all cores: change one import.

::

    from fastconv import ndimage as ndi      # instead of: from scipy import ndimage as ndi

    ndi.gaussian_filter(image, 3)            # same signature, defaults, modes, dtypes and results

Every function has scipy.ndimage's signature, defaults and semantics (scipy 1.17): the boundary modes
``reflect``, ``constant``, ``nearest``, ``mirror``, ``wrap`` and their ``grid-*`` aliases, ``cval``, ``origin``,
``axes``, ``output=`` as an array or a dtype, ``truncate``/``radius``, ``size``/``footprint``, complex inputs where
scipy takes them, integer outputs truncated from the float64 sums, intermediate results of multi-pass filters
stored in the output's dtype.

Results
-------
* float64 images (and integer/bool images, and any image with a non-float32 ``output``): computed in float64 in
  scipy's own operation order, so the values are bit-identical to scipy.ndimage's and integer outputs are equal;
* float32 images with a float32 output: linear filters computed in float32 by the tuned engine of
  :mod:`fastconv.filters` (within about 1e-6 of scipy, which sums in float64), the order and rank filters exact;
* minimum, maximum, median, rank and percentile filters are exact for every dtype.  NaN ordering in the order
  filters is unspecified (as in scipy, where it depends on the algorithm).

Algorithms: 1-D line passes over lanes of neighbouring lines (vectorised); van Herk / Gil-Werman minimum and
maximum (three comparisons per element whatever the size) along strided axes and log-doubling along the
contiguous one; median/rank by a pruned Batcher selection network run on vectors of 64 outputs for footprints up
to 100 elements, by per-output selection beyond; OpenMP over lines/rows.  Results never depend on the number of
threads.

Errors: scipy.ndimage raises ``RuntimeError`` for some bad values; fastconv raises
:class:`~fastconv.ndimage.ArgumentError` (a ``ValueError`` that is also a ``RuntimeError``) and
:class:`~fastconv.ndimage.UnsupportedTypeError` (a ``TypeError`` that is also a ``RuntimeError``) there.

:func:`filter_halo` reports how far each filter reads around an element per axis (for chunked computation).
"""
from ._filters import (convolve, convolve1d, correlate, correlate1d, filter_halo, gaussian_filter,
                       gaussian_filter1d, gaussian_gradient_magnitude, gaussian_laplace, generic_gradient_magnitude,
                       generic_laplace, laplace, maximum_filter, maximum_filter1d, median_filter, minimum_filter,
                       minimum_filter1d, percentile_filter, prewitt, rank_filter, sobel, uniform_filter,
                       uniform_filter1d)
from ._support import ArgumentError, UnsupportedTypeError
from . import _docs

__all__ = ["correlate", "convolve", "correlate1d", "convolve1d", "gaussian_filter", "gaussian_filter1d",
           "gaussian_laplace", "gaussian_gradient_magnitude", "generic_gradient_magnitude", "generic_laplace",
           "laplace", "sobel", "prewitt", "uniform_filter", "uniform_filter1d", "minimum_filter", "maximum_filter",
           "minimum_filter1d", "maximum_filter1d", "median_filter", "rank_filter", "percentile_filter",
           "filter_halo", "ArgumentError", "UnsupportedTypeError"]

_docs.attach(globals())
del _docs
