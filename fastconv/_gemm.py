"""``fastconv.matmul``: matrix products on fastconv's own threads.

NumPy's ``a @ b`` runs on the BLAS library's thread pool.  OpenBLAS's worker threads keep spinning for a while
after every multi-threaded call (about 0.1 s by default, see ``OPENBLAS_THREAD_TIMEOUT``), on the very cores
fastconv's OpenMP kernels need next, which can make the next convolution up to twice as slow.  fastconv's own
products -- ``nn.Linear`` and ``nn.functional.linear``, the tape's ``@`` -- therefore run here: the output is
split into blocks that depend on the shapes only, and OpenMP threads each multiply their blocks with a
single-threaded GEMM (scipy's BLAS), so no BLAS worker wakes up, the result does not depend on the thread count,
and the cores stay with one owner.
"""
import numpy as np

from . import _kernels, _threads
from . import _validate as V

__all__ = ["matmul"]

_tp = _kernels.module("_toeplitz")

# Below this many multiply-adds OpenBLAS itself stays on one thread (its SMP threshold), so NumPy is used as is.
SINGLE_THREAD_MACS = 1 << 18
# A block gets at least MIN_BLOCK_MACS multiply-adds, and a product at most MAX_BLOCKS blocks (from the shape only).
MIN_BLOCK_MACS = 1 << 20
MAX_BLOCKS = 8
INT_MAX = 2 ** 31 - 1      # BLAS dimensions are C ints


def blocks(M, N, K):
    """(rows, columns) of the output blocks of an (M x K) @ (K x N) product: from the shape only.

    Every block's GEMM packs its rows of ``a`` and its columns of ``b`` again, so of the splits into the chosen
    number of blocks the one that re-packs the fewest elements wins: ``(column blocks - 1) * M * K + (row blocks -
    1) * K * N``; a wide product is split by columns, a tall one by rows.
    """
    nb = int(max(1, min(MAX_BLOCKS, M * N * K // MIN_BLOCK_MACS)))
    best = None
    for nbm in range(1, nb + 1):
        if nb % nbm or nbm > M or nb // nbm > N:
            continue
        nbn = nb // nbm
        extra = (nbn - 1) * M * K + (nbm - 1) * K * N
        if best is None or extra < best[0]:
            best = (extra, nbm, nbn)
    if best is None:
        return max(M, 1), max(N, 1)
    _, nbm, nbn = best
    return -(-M // nbm), -(-N // nbn)


def _operand(a):
    """``a`` as a C- or F-contiguous array (a transposed view stays a view)."""
    if a.flags.c_contiguous or a.flags.f_contiguous:
        return a
    return np.ascontiguousarray(a)


def matmul(a, b, out=None):
    """``a @ b`` for 2-D float32/float64 arrays, run on fastconv's threads (see the module docstring).

    Other dtypes, mixed dtypes and other dimensions fall back to NumPy's ``a @ b``.  ``out`` (C-contiguous, of
    the result's shape and dtype) receives the result.  Products of more than ``SINGLE_THREAD_MACS``
    multiply-adds use :func:`fastconv.get_num_threads` threads.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if (a.ndim != 2 or b.ndim != 2 or a.dtype != b.dtype or a.dtype not in (np.float32, np.float64)
            or a.shape[1] != b.shape[0] or max(a.shape + b.shape) > INT_MAX):
        if out is None:
            return a @ b
        return np.matmul(a, b, out=out)
    M, K = a.shape
    N = b.shape[1]
    if out is None:
        out = np.empty((M, N), a.dtype)
    else:
        V.check_out(out, (M, N), a.dtype, (a, b), "matmul")
    if M * N * K <= SINGLE_THREAD_MACS:
        np.matmul(a, b, out=out)
        return out
    a, b = _operand(a), _operand(b)
    bm, bn = blocks(M, N, K)
    nthreads = max(1, min(_threads.get_num_threads(), -(-M // bm) * -(-N // bn)))
    with _threads.single_threaded_blas():
        _tp.matmul(a, b, out, accumulate=False, bm=bm, bn=bn, nthreads=nthreads)
    return out
