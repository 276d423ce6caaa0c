"""``fastconv.info()``: what this build of fastconv runs with."""
import os

import numpy as np
import scipy

from . import _kernels, _threads
from ._version import __version__

__all__ = ["info"]


def _blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return "unknown"
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS so threadpoolctl can see it)
    libs = [d for d in threadpool_info() if d.get("user_api") == "blas"]
    if not libs:
        return "unknown"
    return ", ".join("%s %s (%s, %s threads)" % (d.get("internal_api"), d.get("version"),
                                                 d.get("architecture"), d.get("num_threads")) for d in libs)


def blas_thread_timeout():
    """``{library file: k}`` for every loaded OpenBLAS: its idle workers spin 2**k cycles after a call before they
    sleep (the ``OPENBLAS_THREAD_TIMEOUT`` it read when it loaded; 28 by default)."""
    try:
        import ctypes
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return {}
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS so threadpoolctl can see it)
    out = {}
    for d in threadpool_info():
        if d.get("internal_api") != "openblas":
            continue
        try:
            k = int(ctypes.CDLL(d["filepath"]).openblas_thread_timeout())
        except (OSError, AttributeError):
            continue
        out[os.path.basename(d["filepath"])] = min(30, max(4, k)) if k > 0 else 28
    return out


def info(print_=True):
    """Return (and print unless ``print_=False``) a dict: version, OpenMP, threads, SIMD level, BLAS.

    ``simd_level`` is the build in use (``avx512``, ``avx2`` or ``baseline``; ``FASTCONV_SIMD`` forces one),
    ``simd`` its instruction set, ``vector_bytes`` its vector width and ``simd_levels`` the levels this CPU can
    run, fastest first.  ``blas_thread_timeout`` gives, per loaded OpenBLAS, the k of the 2**k cycles its idle
    workers spin after a call (see "Sharing the cores with BLAS" in the threads guide).
    """
    from . import _algorithms
    cfg = _kernels.build_config
    cpu = _kernels._cpu
    d = {
        "version": __version__,
        "openmp": bool(cpu.openmp_enabled()),
        "num_threads": _threads.get_num_threads(),
        "simd": _kernels.simd_level(),
        "simd_level": _kernels.level(),
        "simd_levels": [lv for lv in _kernels.cpu_levels() if lv not in _kernels.TEST_LEVELS],
        "vector_bytes": _kernels.vector_bytes(),
        "cpu_avx2_fma": bool(cpu.cpu_has_avx2_fma()),
        "cpu_avx512": bool(cpu.cpu_has_avx512()),
        "avx2_variant_built": bool(getattr(cfg, "AVX2_VARIANT", False)),
        "avx512_variant_built": bool(getattr(cfg, "AVX512_VARIANT", False)),
        "debug_build": bool(getattr(cfg, "DEBUG", False)),
        "blas": _blas_info(),
        "blas_thread_timeout": blas_thread_timeout(),
        "blas_on_fastconv_threads": _threads.blas_shared(),
        "algorithms": list(_algorithms.names()),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }
    if print_:
        width = max(len(k) for k in d)
        for k, v in d.items():
            print("%-*s  %s" % (width, k, ", ".join(v) if isinstance(v, list) else v))
    return d
