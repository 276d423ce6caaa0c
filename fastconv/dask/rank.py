"""Lazy :mod:`fastconv.filters.rank` (scikit-image's rank filters) over dask arrays."""
from ._filters import _rank

__all__ = ["minimum", "maximum", "median"]

minimum, maximum, median = _rank("minimum"), _rank("maximum"), _rank("median")
