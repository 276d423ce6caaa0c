"""The Python side of each convolution algorithm, one module per algorithm.

This is the registry's list: importing a module registers its entry in :mod:`fastconv._algorithms` (whose
docstring gives the contract), in this order (``fastconv.algorithms()`` lists them so).  Adding an algorithm =
its kernel file, its module here, and one line below.
"""
from . import direct  # noqa: F401
from . import toeplitz  # noqa: F401
from . import fft  # noqa: F401
from . import winograd  # noqa: F401
from . import fft_tiles  # noqa: F401
from . import lanes  # noqa: F401
