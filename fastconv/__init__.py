"""fastconv: fast CPU convolution, pooling and image filtering (Cython + OpenMP).

The public surface, re-exported from the modules that implement it.
"""
import os as _os

# OpenBLAS's idle worker threads spin for 2**OPENBLAS_THREAD_TIMEOUT cycles after every multi-threaded call
# (default 2**28, about 0.1 s), on the cores fastconv's OpenMP kernels need next.  Unless the user chose a value,
# BLAS libraries loaded from here on (NumPy's, when fastconv is imported first) spin 2**20 cycles (well under a
# millisecond) instead.  See docs/guide/threads.rst, "Sharing the cores with BLAS".
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from ._version import __version__  # noqa: E402
from . import _algos  # noqa: F401  (registers the algorithms)
from . import filters, grad, nn, ops
from ._algorithms import names as algorithms
from ._algorithms import get_reduced_accuracy, reduced_accuracy, set_reduced_accuracy
from ._autotune import autotune
from ._gemm import matmul
from ._geometry import ConvGeometry, PoolGeometry, conv_output_shape
from ._info import info
from ._threads import get_num_threads, num_threads, set_num_threads, share_blas_threads
from .autograd import Tensor, gradcheck, no_grad
from .ops import (abs, cat, chunk, clamp, clip, concat, flatten, max, min, pad, split, sqrt, squeeze,  # noqa: A004
                  stack, unsqueeze, where)
from .conv import (conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d)
from .pooling import (max_pool1d, max_pool2d, max_pool3d, avg_pool1d, avg_pool2d, avg_pool3d, lp_pool1d, lp_pool2d,
                      adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d, adaptive_max_pool1d,
                      adaptive_max_pool2d, adaptive_max_pool3d, global_max_pool, global_avg_pool, kmax_pool,
                      max_unpool1d, max_unpool2d, max_unpool3d)
from .serialization import load, save
from .toeplitz import (conv_as_dense, dense_as_conv, get_workspace_limit, set_workspace_limit,
                       toeplitz_matrix)

# NumPy's and SciPy's OpenBLAS run their parallel work on fastconv's OpenMP threads (see share_blas_threads).
if _os.environ.get("FASTCONV_SHARE_BLAS_THREADS", "1").strip() != "0":
    try:
        share_blas_threads()
    except Exception as _exc:  # noqa: BLE001 - a BLAS fastconv cannot inspect keeps its own threads
        import warnings as _warnings
        _warnings.warn("fastconv: BLAS keeps its own threads (%s: %s)" % (type(_exc).__name__, _exc), RuntimeWarning)

__all__ = [
    "__version__", "grad", "algorithms", "autotune", "set_reduced_accuracy", "get_reduced_accuracy",
    "reduced_accuracy", "ConvGeometry", "PoolGeometry", "conv_output_shape", "info",
    "get_num_threads", "num_threads", "set_num_threads", "share_blas_threads", "matmul",
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "lp_pool1d",
    "lp_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "global_max_pool", "global_avg_pool", "kmax_pool",
    "max_unpool1d", "max_unpool2d", "max_unpool3d",
    "toeplitz_matrix", "conv_as_dense", "dense_as_conv", "set_workspace_limit", "get_workspace_limit",
    "Tensor", "no_grad", "gradcheck", "filters", "nn", "ops",
    "cat", "concat", "stack", "split", "chunk", "sqrt", "clamp", "clip", "where", "squeeze", "unsqueeze", "flatten",
    "pad", "save", "load",
]
# fastconv.max, fastconv.min and fastconv.abs exist (as torch.max, ...) but stay out of __all__: a star import
# must not shadow the builtins.


def __getattr__(name):
    # the pooling gradients moved to fastconv.grad; their old top-level names work for one more release
    from . import pooling
    if name in pooling.BACKWARD:
        return pooling.moved_to_grad(__name__, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
