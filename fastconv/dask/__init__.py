"""Lazy, chunked counterparts of fastconv's filters, convolutions, pools and models for Dask arrays.

For arrays larger than memory, on a laptop or a ``dask.distributed`` cluster (``pip install 'fastconv[dask]'``)::

    import dask.array as da
    import fastconv.dask as fd

    vol = da.from_zarr("volume.zarr")                  # e.g. (2048, 1024, 1024) float32 in 256^3 chunks
    smooth = fd.gaussian(vol, sigma=4)                 # lazy; same arguments as fastconv.filters.gaussian
    smooth.to_zarr("smooth.zarr")                      # computed chunk by chunk

Every function takes and returns ``dask.array.Array`` (NumPy arrays are wrapped in one chunk), has the
arguments of its in-memory namesake (minus ``out=``, plus ``threads=``), and returns what the in-memory
function returns on the whole array (float64 to rounding, integers exactly), whatever the chunking.

Neighbourhood filters
    :mod:`fastconv.filters`, :mod:`fastconv.filters.rank` as :mod:`fastconv.dask.rank`, :mod:`fastconv.ndimage`
    as :mod:`fastconv.dask.ndimage`.  Each output block is computed from its input block extended by the filter's *halo*: how far its passes
    read on each side (``int(truncate * sigma + 0.5)`` for a Gaussian, ``k // 2 + origin`` before and the rest
    after for a kernel of length ``k``, 1 for the edge filters).  At the array's true edges the boundary mode
    is applied by the in-memory function itself; ``wrap`` reads the other end of the array.  Chunks may be
    smaller than the halo (the halo is gathered from as many chunks as it spans) and uneven; the output has the
    input's chunks.  (``butterworth`` is a global, FFT-based filter, not a neighbourhood filter: it has no lazy
    counterpart.)
Convolutions, transposed convolutions and pools (``(N, C, *spatial)`` arrays)
    Over blocks of the batch axis (channels and spatial axes in one chunk); stride-1 convolutions also over
    spatial chunks, each block extended by ``dilation * (kernel - 1)`` and the padding.
:func:`predict`
    A :class:`fastconv.nn.Module` in eval mode over a dask array of samples, ``batch_size`` at a time.

Threads: each task runs with :func:`task_threads` fastconv threads, the worker's cores divided by the tasks it
runs at once, so that workers x threads never oversubscribe a machine; ``threads=`` overrides it per call and
:func:`set_worker_threads` sets the cores each worker of a cluster owns.
"""
try:
    import dask.array  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("fastconv.dask needs the optional dependencies dask[array] (and distributed for clusters): "
                      "pip install 'fastconv[dask]'") from exc

from ._filters import (apply_kernel, convolve, correlate, difference_of_gaussians, farid, farid_h, farid_v,
                       gaussian, laplace, median, neighbourhood, prewitt, prewitt_h, prewitt_v, roberts,
                       roberts_neg_diag, roberts_pos_diag, scharr, scharr_h, scharr_v, sobel, sobel_h, sobel_v,
                       unsharp_mask)
from ._nn import (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d, adaptive_max_pool1d,
                  adaptive_max_pool2d, adaptive_max_pool3d, avg_pool1d, avg_pool2d, avg_pool3d, batchwise, conv1d,
                  conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d, global_avg_pool,
                  global_max_pool, kmax_pool, lp_pool1d, lp_pool2d, max_pool1d, max_pool2d, max_pool3d,
                  max_unpool1d, max_unpool2d, max_unpool3d, predict)
from ._overlap import task_threads
from ._workers import set_worker_threads
from . import ndimage, rank

__all__ = [
    "correlate", "convolve", "gaussian", "sobel", "prewitt", "scharr", "laplace", "unsharp_mask", "apply_kernel",
    "sobel_h", "sobel_v", "prewitt_h", "prewitt_v", "scharr_h", "scharr_v", "farid", "farid_h", "farid_v",
    "roberts", "roberts_pos_diag", "roberts_neg_diag", "difference_of_gaussians", "median", "ndimage", "rank",
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "lp_pool1d", "lp_pool2d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "global_max_pool", "global_avg_pool", "kmax_pool",
    "max_unpool1d", "max_unpool2d", "max_unpool3d", "predict", "neighbourhood", "batchwise", "task_threads",
    "set_worker_threads",
]
