"""Convolution algorithms; importing a module registers it in :mod:`fastconv._algorithms`."""
from . import direct  # noqa: F401
from . import toeplitz  # noqa: F401
from . import fft  # noqa: F401
