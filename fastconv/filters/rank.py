"""``skimage.filters.rank``'s minimum, maximum and median for uint8/uint16 images (2-D or 3-D): only pixels
inside the image and inside ``mask`` count, a pixel whose neighbourhood counts none gives 0, the median is the
element ``pop // 2`` of the ``pop`` counted values.  See :mod:`fastconv.filters`."""
from ._rank import maximum, minimum
from ._rank import rank_median as median

__all__ = ["minimum", "maximum", "median"]
