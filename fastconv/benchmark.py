"""Timing helpers shared by ``bench/`` scripts and the ``fastconv bench`` command.

The machines fastconv is benchmarked on are shared and noisy, so every figure is a ratio against a peer measured
in the same run, the practical peak is the BLAS sgemm rate measured in the same run, and times are medians of
repeats after warm-up.
"""
import json
import os
import platform
import time

import numpy as np

from ._measure import cpu_model, format_table, interleaved, timeit

__all__ = ["timeit", "interleaved", "cpu_model", "sgemm_gflops", "blas_idle", "settle_allocator", "copy_gbps",
           "torch_or_none", "blas_threads", "format_table", "save_json", "machine", "omp_wait_policy", "REFERENCE_LAYERS"]

# The reference layers every convolution benchmark measures (``fastconv bench``, ``bench/bench_conv.py``):
# (name, input shape, weight shape, stride, padding).
REFERENCE_LAYERS = [
    ("resnet 3x3 64", (8, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    ("resnet 3x3 128", (8, 128, 28, 28), (128, 128, 3, 3), 1, 0),
    ("1x1 256->64", (8, 256, 28, 28), (64, 256, 1, 1), 1, 0),
    ("alexnet 11x11 s4", (8, 3, 227, 227), (96, 3, 11, 11), 4, 0),
    ("lenet 5x5", (64, 6, 14, 14), (16, 6, 5, 5), 1, 0),
]


class blas_threads:
    """``with blas_threads(n):`` limits the BLAS thread pools (threadpoolctl) inside the block."""

    def __init__(self, n):
        self.n = n
        self._ctl = None

    def __enter__(self):
        from threadpoolctl import threadpool_limits
        self._ctl = threadpool_limits(limits=self.n, user_api="blas")
        return self

    def __exit__(self, *exc):
        self._ctl.unregister()
        return False


def sgemm_gflops(n=1536, threads=None, dtype=np.float32, repeats=5):
    """GFLOP/s of the BLAS GEMM (sgemm for float32, dgemm for float64) on n x n matrices, measured now."""
    from scipy.linalg import blas
    rng = np.random.default_rng(0)
    a = np.asfortranarray(rng.standard_normal((n, n)).astype(dtype))
    b = np.asfortranarray(rng.standard_normal((n, n)).astype(dtype))
    gemm = blas.sgemm if np.dtype(dtype) == np.float32 else blas.dgemm
    if threads is None:
        t = timeit(lambda: gemm(1.0, a, b), repeats=repeats, warmup=1)
    else:
        with blas_threads(threads):
            t = timeit(lambda: gemm(1.0, a, b), repeats=repeats, warmup=1)
    blas_idle()
    return 2.0 * n ** 3 / t["median"] / 1e9


def blas_idle(seconds=0.25):
    """Wait until OpenBLAS's worker threads, which keep spinning after a multi-threaded call (2**28 cycles by
    default, see OPENBLAS_THREAD_TIMEOUT), have gone to sleep, so they do not slow down what is timed next."""
    time.sleep(seconds)


def settle_allocator(nbytes=16 * 2 ** 20):
    """Allocate and free one ``nbytes`` array, as any process that has freed a large array has done.

    glibc serves allocations above its mmap threshold (128 KiB at start) with fresh mappings whose pages fault in
    on first touch, and raises the threshold to the size of a mapped block when one is freed (blocks under
    32 MiB; a larger one leaves it).  A
    fresh process therefore pays page faults on every allocation of a few hundred KiB -- PyTorch's tensors as
    much as NumPy's arrays (fastconv's layers keep their buffers in a cache of their own) -- until something frees
    a large array.  Measured on the Xeon: a PyTorch LeNet-5 training step took 8.0 ms in a fresh process and
    4.3-5.0 ms after this call.  Comparisons with a peer call this first, so the peer runs in its steady state.
    """
    a = np.ones(nbytes // 8)
    del a


def copy_gbps(nbytes=64 * 2 ** 20, repeats=5):
    """GB/s of a large memory copy (bytes read + bytes written) measured now: a memory-bandwidth yardstick."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    t = timeit(lambda: np.copyto(dst, src), repeats=repeats, warmup=1)
    return 2.0 * nbytes / t["median"] / 1e9


def torch_or_none(threads=None):
    """Import torch if installed (setting its intra-op thread count), else None."""
    try:
        import torch
    except ImportError:
        return None
    if threads is not None:
        torch.set_num_threads(int(threads))
    return torch


def omp_wait_policy():
    """How idle OpenMP threads wait in this process, as the environment told libgomp when it loaded (fastconv's
    default, a short spin, unless the user set a policy): ``"OMP_WAIT_POLICY=..."`` or ``"GOMP_SPINCOUNT=..."``.
    PyTorch shares the runtime, so the policy holds for both sides of a comparison."""
    policy = os.environ.get("OMP_WAIT_POLICY")
    if policy:
        return "OMP_WAIT_POLICY=" + policy
    return "GOMP_SPINCOUNT=" + os.environ.get("GOMP_SPINCOUNT", "300000 (libgomp's default)")


def machine():
    """A short description of where the numbers were measured."""
    from . import _info
    d = _info.info(print_=False)
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "simd": d["simd"], "openmp": d["openmp"], "blas": d["blas"],
            "fastconv": d["version"], "numpy": d["numpy"], "scipy": d["scipy"]}


def save_json(path, rows, **meta):
    """Write ``{"machine": ..., **meta, "results": rows}`` as JSON."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(dict(machine=machine(), **meta, results=rows), f, indent=1, default=float)
