"""The ``toeplitz`` algorithm: convolution as a product with a lowered (Toeplitz-structured) matrix.

The lecture notes write a convolution layer as ``y = T x`` with a (doubly, for 2-D) block Toeplitz matrix ``T``
and its input gradient / transposed convolution as ``T^T g``.  ``T`` itself is mostly zeros (see
:func:`fastconv.toeplitz_matrix`), so the fast path multiplies its dense factors instead: im2col copies the input
patches into a matrix ``col`` (``Cg * kernel taps`` rows x output positions) and one BLAS GEMM
(``scipy.linalg.cython_blas`` sgemm / dgemm) per chunk does the arithmetic (``_kernels/_toeplitz.pyx``):

* forward:     im2col + ``W_g @ col``;
* grad_input:  ``W_g^T @ gy`` + col2im (scatter-add) -- also what ``conv_transpose*d`` runs;
* grad_weight: im2col + ``gy @ col^T`` accumulated over the batch.

1x1 kernels with stride 1 and no padding skip im2col / col2im: the input already is the lowered matrix.

Bounded workspace
    ``col`` is never built whole.  Each task lowers one chunk of output positions (and, for the backward ops, a
    block of input channels) into a per-thread buffer of at most ``CHUNK_BYTES`` (sized to stay in the L2/L3
    cache between im2col and the GEMM) and the number of threads that hold a buffer is limited so that the
    total stays under the workspace limit: :func:`set_workspace_limit` / :func:`get_workspace_limit`, default
    64 MiB, for any batch size.  :func:`plan` reports the chunking and the workspace of a call.

Parallelism: one level at a time
    OpenMP runs independent tasks (image x group x position chunk for the forward pass; see the kernel module
    for the backward ops) and every task calls a single-threaded GEMM.  For the duration of a call the BLAS
    thread pools are limited to one thread with threadpoolctl (a shared, reference-counted limit, so
    concurrent fastconv calls from several Python threads do not restore it under each other), which avoids
    BLAS threads x OpenMP threads oversubscribing the cores.  This keeps im2col and GEMM on the same core (the
    chunk is still in cache) and, because the chunking does not depend on the thread count, makes results
    bitwise identical for any number of threads.  Other code calling BLAS from another Python thread while a
    toeplitz call runs also sees the one-thread limit.

Cost model (``cost``), fitted to single-threaded measurements on the 2-core AMD EPYC (Zen 3) development
machine with OpenBLAS 0.3.31 (shared with other jobs, so the constants are those of a busy machine, like direct's):
the GEMMs sustain about ``GEMM_GFLOPS`` per thread (sgemm; dgemm half of it), times ``d / (d + GEMM_HALF)`` for
every GEMM dimension ``d`` that is set by the layer (output channels per group, lowered rows per task), so
depthwise layers, which are GEMVs, cost what they should; im2col / col2im move ``LOWER_GBPS`` per thread; each GEMM
costs ``GEMM_OVERHEAD`` and each call ``CALL_OVERHEAD``.  Work divides over the planned threads, rounded up to
whole waves of tasks.
"""
import functools
import os
from dataclasses import dataclass
from math import ceil, prod

import numpy as np

from .. import _kernels, _threads
from .. import _validate as V
from .._algorithms import Algorithm, register
from .._kernels import as_5d
from .._threads import MIN_FLOPS_PER_THREAD, single_threaded_blas

_tp = _kernels.module("_toeplitz")

__all__ = ["set_workspace_limit", "get_workspace_limit", "plan", "Plan", "patches", "add_patches",
           "DEFAULT_WORKSPACE_LIMIT"]

DEFAULT_WORKSPACE_LIMIT = 64 * 2 ** 20
# Per-thread lowered-chunk size: small enough to stay in cache between im2col and the GEMM that reads it.
CHUNK_BYTES = 1024 * 1024
# At least this many tasks when the problem allows it (independent of the thread count, for determinism).
MIN_TASKS = max(8, 4 * (os.cpu_count() or 1))
# Smallest lowered-row block (channels x taps) a backward task gets when input channels are split.
MIN_ROWS = 64
# Smallest output-channel block when grad_weight splits output channels, and smallest forward position chunk.
MIN_KBLOCK = 16
MIN_CHUNK = 64
INT_MAX = 2 ** 31 - 1   # BLAS dimensions and leading dimensions are C ints

# Cost-model constants, fitted (least squares on log time, 42 layer x op measurements, typical error 1.2x) to
# single-threaded runs of bench-style layers on the development machine; see the module docstring.
GEMM_GFLOPS = {4: 60.0, 8: 30.0}   # single-threaded sgemm / dgemm rate on conv-layer GEMM shapes
GEMM_HALF = 4.0                     # a GEMM dimension d runs at d / (d + GEMM_HALF) of that rate
LOWER_GBPS = 4.0                    # im2col / col2im bytes of lowered matrix per second per thread
GEMM_OVERHEAD = 5e-6                # seconds per GEMM call (packing, dispatch)
CALL_OVERHEAD = 6e-5                # seconds per call (BLAS thread limit, planning, Python)

_state = {"limit": DEFAULT_WORKSPACE_LIMIT}


def set_workspace_limit(nbytes):
    """Cap the extra memory of the ``toeplitz`` algorithm (lowered-matrix buffers of all threads), in bytes.

    The default is 64 MiB.  A smaller cap means smaller chunks and possibly fewer threads, never a different
    result; ``None`` restores the default.  Geometries whose smallest chunk (one output position) does not fit
    are not supported by ``toeplitz`` (``algorithm="auto"`` then picks another algorithm).
    """
    if nbytes is None:
        _state["limit"] = DEFAULT_WORKSPACE_LIMIT
        return
    _state["limit"] = V.positive_int(nbytes, "set_workspace_limit", "nbytes")


def get_workspace_limit():
    """The workspace cap of the ``toeplitz`` algorithm in bytes (see :func:`set_workspace_limit`)."""
    return _state["limit"]


@dataclass(frozen=True)
class Plan:
    """How a toeplitz call is split: positions per chunk, channel blocks, tasks, GEMM calls and workspace."""

    op: str
    one_by_one: bool     # 1x1, stride 1, no padding: no im2col / col2im
    chunk: int           # output positions per chunk
    cblock: int          # input channels per backward task
    kblock: int          # output channels per grad_weight task
    tasks: int           # independent OpenMP tasks
    gemms: int           # GEMM calls
    threads: int         # threads that run (each holding one buffer)
    buffer_bytes: int    # per-thread lowered-chunk buffer
    bchunks: int = 1     # grad_weight: batch chunks, each accumulating a partial weight gradient
    partial_bytes: int = 0   # their partial sums (when bchunks > 1)
    transposed: bool = False     # grad_weight: the GEMMs write the weight gradient's transpose (see _plan)

    @property
    def workspace_bytes(self):
        """Extra memory of the call: one buffer per thread, and the partial weight gradients of batch chunks."""
        return self.threads * self.buffer_bytes + self.partial_bytes


def _split(total, block, have, minimum):
    """Shrink ``block`` (not below ``minimum``) so that ``have * ceil(total / block)`` reaches MIN_TASKS."""
    if have * -(-total // block) < MIN_TASKS:
        want = -(-MIN_TASKS // have)
        block = min(block, max(minimum, -(-total // want)))
    return _threads.balanced_block(total, block)


def plan(geom, dtype, op, nthreads=None, limit=None):
    """The :class:`Plan` of ``op`` on ``geom``, or ``None`` if toeplitz cannot run it within the limit."""
    limit = get_workspace_limit() if limit is None else limit
    tunables = (CHUNK_BYTES, MIN_TASKS, MIN_ROWS, MIN_KBLOCK, MIN_CHUNK)
    return _plan(geom, np.dtype(dtype).itemsize, op, _threads.effective_threads(nthreads), limit, tunables)


@functools.lru_cache(maxsize=256)
def _plan(geom, item, op, nthreads, limit, tunables):
    # ``tunables`` (the module constants read below) is only part of the cache key.
    g3 = geom.as_3d()
    N, C = g3.input_shape[:2]
    K, G = g3.out_channels, g3.groups
    Cg, Kg = C // G, K // G
    RST = prod(g3.kernel_size)
    P = prod(g3.output_size)
    one = (RST == 1 and all(s == 1 for s in g3.stride) and all(p == (0, 0) for p in g3.padding))
    if max(P, Cg * RST, K, prod(g3.input_size)) > INT_MAX:
        return None
    budget = min(CHUNK_BYTES, limit) // item       # elements of one lowered chunk
    bchunks = 1
    if op == "forward":
        rows, cb, kb = Cg * RST, Cg, Kg
        if not one and rows > limit // item:
            return None
        pc = P if one else min(P, max(1, budget // rows))
        pc = _split(P, pc, N * G, min(pc, MIN_CHUNK))
        tasks = N * G * -(-P // pc)
        gemms = tasks
    else:
        cb = Cg
        have = N * G if op == "grad_input" else G
        if op == "grad_weight" and have < MIN_TASKS and N > 1:
            # split the batch first: every chunk accumulates a whole partial weight gradient (the GEMMs keep
            # their full size), the chunks are added in order; the partials take at most a quarter of the
            # limit, the lowered buffers share the rest
            bchunks = min(N, -(-MIN_TASKS // G), (limit // 4) // max(1, K * Cg * RST * item))
            if bchunks > 1:
                have = G * bchunks
                limit -= bchunks * K * Cg * RST * item
                budget = min(CHUNK_BYTES, limit) // item
            else:
                bchunks = 1
        if have < MIN_TASKS:
            cb = _split(Cg, Cg, have, min(Cg, -(-MIN_ROWS // RST)))
        if not one:
            if RST > limit // item:
                return None
            cb = _threads.balanced_block(Cg, min(cb, max(1, (limit // item) // RST)))
        ncb = -(-Cg // cb)
        kb = Kg
        if op == "grad_weight" and G * ncb * bchunks < MIN_TASKS and Kg >= 2 * MIN_KBLOCK:
            kb = _split(Kg, Kg, G * ncb * bchunks, MIN_KBLOCK)
        rows = cb * RST
        pc = P if one else _threads.balanced_block(P, max(1, budget // rows))
        nch = -(-P // pc)
        if op == "grad_input":
            tasks = N * G * ncb
            gemms = tasks * (1 if one else nch)
        else:
            tasks = G * ncb * -(-Kg // kb) * bchunks
            gemms = tasks * -(-N // bchunks) * nch
    buffer_bytes = 0 if one else rows * pc * item
    # a weight-gradient GEMM's column-major result is (cb R S T) x kb, or its transpose: OpenBLAS's sgemm ran
    # 8-40 % faster with the smaller of the two first (1x1 256 -> 64: 0.82 of the time; 3x3 64 -> 64 0.80; a
    # 64 -> 256 layer the other way round, 0.82-0.87; AMD EPYC, avx2, one thread); with one batch chunk, where the
    # transpose is a partial sum of its own, only when it fits beside the buffers
    transposed = op == "grad_weight" and kb < rows
    partial = bchunks * K * Cg * RST * item if bchunks > 1 or transposed else 0
    # waking threads for less than ~1 MFLOP each costs more than it saves (the result does not depend on it)
    threads = max(1, min(nthreads, tasks, limit // buffer_bytes if buffer_bytes else tasks,
                         geom.flops // MIN_FLOPS_PER_THREAD))
    if transposed and bchunks == 1 and threads * buffer_bytes + partial > limit:
        transposed, partial = False, 0
    return Plan(op, one, pc, cb, kb, tasks, gemms, threads, buffer_bytes, bchunks, partial, transposed)


# ----------------------------------------------------------------------------- the lowering in NumPy
def patches(padded, geom):
    """Every (output position, kernel tap) window of an explicitly padded ``(N, C, *padded_size)`` array, as a
    strided view ``(N, C, *output_size, *kernel_size)``: the lowered matrix of im2col, not copied.  (The
    explicit Toeplitz matrix and the locally connected layer use it; the kernels lower in C.)"""
    axes = tuple(range(2, 2 + geom.ndim))
    win = np.lib.stride_tricks.sliding_window_view(padded, geom.effective_kernel, axis=axes)
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in geom.stride)
              + tuple(slice(None, None, d) for d in geom.dilation)]
    return win[(slice(None), slice(None)) + tuple(slice(0, o) for o in geom.output_size)]


def add_patches(cols, geom):
    """Adjoint of :func:`patches` (col2im): ``cols`` of shape ``(N, C, *output_size, *kernel_size)`` added back
    onto the padded input positions each entry was read from; returns the padded ``(N, C, *padded_size)`` sum."""
    out = np.zeros(geom.input_shape[:2] + geom.padded_size, cols.dtype)
    for tap in np.ndindex(*geom.kernel_size):     # one strided, vectorised add per kernel tap
        dst = tuple(slice(t * d, t * d + s * (o - 1) + 1, s)
                    for t, d, s, o in zip(tap, geom.dilation, geom.stride, geom.output_size))
        out[(slice(None), slice(None)) + dst] += cols[(Ellipsis,) + tap]
    return out


# ----------------------------------------------------------------------------- the registry entry
# forward / grad_input / grad_weight follow the kernel contract of fastconv._algorithms (they write ``out``) and
# also return what the kernel did: (GEMM calls, bytes of workspace its threads allocated).
def _plan_or_raise(geom, dtype, op, nthreads):
    pl = plan(geom, dtype, op, nthreads)
    if pl is None:  # pragma: no cover - conv.py checks supports() first
        raise ValueError("toeplitz %s: one lowered column does not fit in the workspace limit of %d bytes"
                         % (op, get_workspace_limit()))
    return pl


def forward(x, w, bias, geom, out, nthreads):
    pl = _plan_or_raise(geom, x.dtype, "forward", nthreads)
    b = bias if bias is not None else np.zeros(1, x.dtype)
    with single_threaded_blas():
        return _tp.forward(as_5d(x), w.reshape(w.shape[0], -1), b, as_5d(out), geom.kernel_struct,
                           has_bias=bias is not None, pc=pl.chunk, one_by_one=pl.one_by_one, nthreads=pl.threads)


def grad_input(gy, w, geom, out, nthreads):
    pl = _plan_or_raise(geom, gy.dtype, "grad_input", nthreads)
    with single_threaded_blas():
        return _tp.grad_input(as_5d(gy), w.reshape(w.shape[0], -1), as_5d(out), geom.kernel_struct, pc=pl.chunk,
                              cb=pl.cblock, one_by_one=pl.one_by_one, nthreads=pl.threads)


def grad_weight(x, gy, geom, out, nthreads, grad_bias=None):
    pl = _plan_or_raise(geom, x.dtype, "grad_weight", nthreads)
    K = out.shape[0]
    L = out.size // K
    if pl.transposed:
        dst = np.empty((pl.bchunks, L, K), out.dtype)
    else:
        dst = out.reshape(1, K, L) if pl.bchunks == 1 else np.empty((pl.bchunks, K, L), out.dtype)
    db = np.empty((pl.bchunks, K) if grad_bias is not None else (1, 1))
    with single_threaded_blas():
        res = _tp.grad_weight(as_5d(x), as_5d(gy), dst, db, geom.kernel_struct, pc=pl.chunk, cb=pl.cblock,
                              kb=pl.kblock, one_by_one=pl.one_by_one, with_bias=grad_bias is not None,
                              transposed=pl.transposed, nthreads=pl.threads)
    if pl.transposed:
        out.reshape(K, L)[...] = (dst[0] if pl.bchunks == 1 else dst.sum(axis=0)).T   # the chunks in order
    elif pl.bchunks > 1:
        np.sum(dst, axis=0, out=out.reshape(K, L))     # the batch chunks in order
    if grad_bias is not None:
        grad_bias[...] = db.sum(axis=0)
    return res[0], res[1] + pl.partial_bytes


def supports(geom, dtype, op):
    return plan(geom, dtype, op) is not None


def _gemm_eff(*dims):
    eff = 1.0
    for d in dims:
        eff *= d / (d + GEMM_HALF)
    return eff


def cost(geom, dtype, op):
    """Seconds: GEMM flops at the measured single-thread rate, lowering traffic, per-GEMM and per-call overhead."""
    pl = plan(geom, dtype, op)
    if pl is None:
        return float("inf")
    item = np.dtype(dtype).itemsize
    g3 = geom.as_3d()
    G = g3.groups
    Cg, Kg = g3.in_channels // G, g3.out_channels // G
    RST = prod(g3.kernel_size)
    dims = {"forward": (Kg, Cg * RST), "grad_input": (Kg, pl.cblock * RST),
            "grad_weight": (pl.kblock, pl.cblock * RST)}[op]
    lowered = 0 if pl.one_by_one else g3.batch * G * Cg * RST * prod(g3.output_size)   # im2col / col2im elements
    if op == "grad_weight":
        lowered *= -(-Kg // pl.kblock)       # every output-channel block lowers its input again
    eff = _gemm_eff(*dims)
    threads = pl.threads
    waves = ceil(pl.tasks / threads) / (pl.tasks / threads)   # load imbalance of the last wave
    work = geom.flops / (GEMM_GFLOPS[item] * 1e9 * eff) + lowered * item / (LOWER_GBPS * 1e9)
    return work * waves / threads + pl.gemms * GEMM_OVERHEAD / threads + CALL_OVERHEAD


ALGORITHM = register(Algorithm(
    name="toeplitz",
    forward=forward,
    grad_input=grad_input,
    grad_weight=grad_weight,
    cost=cost,
    fused_bias=True,
    description="im2col / col2im + one BLAS GEMM per chunk; workspace bounded by set_workspace_limit()",
    supports=supports,
))
