"""Timing helpers shared by ``bench/`` scripts and the ``fastconv bench`` command.

The machines fastconv is benchmarked on are shared and noisy, so every figure is a ratio against a peer measured
in the same run, the practical peak is the BLAS sgemm rate measured in the same run, and times are medians of
repeats after warm-up.
"""
import json
import os
import platform
import statistics
import time

import numpy as np

__all__ = ["timeit", "interleaved", "sgemm_gflops", "copy_gbps", "torch_or_none", "blas_threads", "format_table",
           "save_json", "machine"]


def timeit(fn, repeats=5, warmup=1, min_time=0.0):
    """Run ``fn()`` ``warmup`` times, then ``repeats`` times (more while the total is under ``min_time`` s).

    Returns ``{"median": s, "min": s, "max": s, "spread": (max - min) / median, "n": repeats}``.
    """
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 1000:
            break
    med = statistics.median(times)
    return {"median": med, "min": min(times), "max": max(times),
            "spread": (max(times) - min(times)) / med if med > 0 else 0.0, "n": len(times)}


def interleaved(fns, repeats):
    """{name: median seconds}: one warm-up each, then ``repeats`` rounds calling every candidate once, so that
    load on a shared machine hits all candidates alike."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


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
    return 2.0 * n ** 3 / t["median"] / 1e9


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


def machine():
    """A short description of where the numbers were measured."""
    from . import _info
    d = _info.info(print_=False)
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "simd": d["simd"], "openmp": d["openmp"], "blas": d["blas"],
            "fastconv": d["version"], "numpy": d["numpy"], "scipy": d["scipy"]}


def format_table(rows, columns, floatfmt="%.3g"):
    """A plain-text table of ``rows`` (dicts) restricted to ``columns`` (names or (name, header) pairs)."""
    cols = [(c, c) if isinstance(c, str) else c for c in columns]

    def fmt(v):
        if isinstance(v, float):
            return floatfmt % v
        return "" if v is None else str(v)

    cells = [[h for _, h in cols]] + [[fmt(r.get(k)) for k, _ in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def save_json(path, rows, **meta):
    """Write ``{"machine": ..., **meta, "results": rows}`` as JSON."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(dict(machine=machine(), **meta, results=rows), f, indent=1, default=float)
