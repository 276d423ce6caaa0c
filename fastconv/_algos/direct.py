"""The ``direct`` algorithm: cache-tiled direct convolution (``_kernels/_direct.pyx``).

Forward, input gradient and weight gradient all run the same tiled kernel:

* forward: ``y = x (*) w`` with stride, dilation and zero padding;
* input gradient / transposed convolution: "backprop is convolution with flipped filters" -- the output gradient,
  dilated by the stride (the kernel's input dilation, no copy), correlated with the kernel flipped in space and
  transposed in channels, padding ``d (k - 1) - p``;
* weight gradient: the input correlated with the output gradient used as the kernel (batch and channels swap
  roles), stride and dilation exchanged.

Non-finite values: the tiled kernel multiplies the zeros it gathers for padding and stride holes along W and skips
padding rows along D and H, which is exact while the kernel operand (the weight, or the output gradient in the
weight gradient) is finite.  The output channels whose kernel holds an inf or NaN are recomputed tap by tap
(``_direct.exact``), forming exactly the products of the contract in :mod:`fastconv._algorithms`: zero padding
is multiplied in the forward pass and the weight gradient (``0 * inf = NaN``, as PyTorch), never in the input
gradient / transposed convolution, whose padding and holes are not input elements.
"""
import functools
import os
from math import ceil, prod

import numpy as np

from .. import _kernels
from .._algorithms import Algorithm, register
from .._geometry import kernel_struct
from .._kernels import as_5d
from .._threads import MIN_FLOPS_PER_THREAD

_direct = _kernels.load("_direct")

# Per-thread gather buffer budget: rows of the input band for one task (about half of a 512 KiB L2 cache).
BUFFER_BYTES = 256 * 1024
# Larger per-thread buffers are refused before the kernel runs (no machine has them; 64-bit sizes stay exact).
MAX_BUFFER_BYTES = 2 ** 48


def _choose_mode(Kg, is_float):
    """(mode, kb): channel-vectorised blocks when a group has enough output channels, else column-vectorised."""
    if Kg >= 8:
        return 0, (16 if is_float else 8)
    return 1, (1 if Kg == 1 else 2 if Kg == 2 else 4)


def pack_weights(w5, groups, kb):
    """(K, Cg, R, S, T) -> flat [group][block][c][r][s][t][kb], output channels zero-padded to blocks of kb."""
    K = w5.shape[0]
    Kg = K // groups
    nkb = -(-Kg // kb)
    taps = int(np.prod(w5.shape[1:]))
    wg = w5.reshape(groups, Kg, taps)
    if nkb * kb != Kg:
        wg = np.concatenate([wg, np.zeros((groups, nkb * kb - Kg, taps), w5.dtype)], axis=1)
    return np.ascontiguousarray(wg.reshape(groups, nkb, kb, taps).transpose(0, 1, 3, 2)).ravel()


def _buffer_bytes(rows, T, sw, dw, itemsize, mode, WB, wcb):
    """Bytes of one thread's gather buffer: ``rows`` input rows (channels x kernel rows) of the columns that
    ``wcb`` column blocks of ``WB`` outputs read (as the kernel computes it)."""
    wb = (wcb * WB - 1) * sw + (T - 1) * dw + 1
    if mode == 1:
        wb = -(-wb // sw) * sw
    return rows * wb * itemsize


def _run_shape(geom, op):
    """(input channels per group, kernel (R, S, T), W stride, W dilation, output channels per group, output
    width) of the kernel run that computes ``op`` on ``geom`` (see ``forward``/``grad_input``/``grad_weight``)."""
    g3 = geom.as_3d()
    G = g3.groups
    C, K = g3.in_channels // G, g3.out_channels // G
    if op == "forward":
        return C, g3.kernel_size, g3.stride[2], g3.dilation[2], K, g3.output_size[2]
    if op == "grad_input":
        return K, g3.kernel_size, 1, g3.dilation[2], C, g3.input_size[2]
    return g3.batch, g3.output_size, g3.dilation[2], g3.stride[2], K, g3.kernel_size[2]


def supports(geom, dtype, op):
    """False when even the smallest gather buffer of one thread (one column block) would not fit in this
    machine's memory: huge W dilations or strides, which ``toeplitz`` computes without such a buffer.

    Settled by a bound for every ordinary geometry (the widest column block, 8-byte elements), counted exactly
    (and cached) only past it."""
    k = geom.kernel_size
    if op == "forward":
        rows, T, sw, dw = geom.weight_shape[1] * prod(k[:-1]), k[-1], geom.stride[-1], geom.dilation[-1]
    elif op == "grad_input":
        rows, T, sw, dw = geom.weight_shape[0] // geom.groups * prod(k[:-1]), k[-1], 1, geom.dilation[-1]
    else:
        o = geom.output_size
        rows, T, sw, dw = geom.batch * prod(o[:-1]), o[-1], geom.dilation[-1], geom.stride[-1]
    if rows * (WIDEST_BLOCK * sw + (T - 1) * dw + 1) * 8 <= min(MAX_BUFFER_BYTES, PHYSICAL_MEMORY):
        return True
    return _fits(geom, np.dtype(dtype).char, op)


@functools.lru_cache(maxsize=1024)
def _fits(geom, dtype, op):
    Cg, (R, S, T), sw, dw, Kg, OW = _run_shape(geom, op)
    is_float = dtype == "f"
    mode, kb = _choose_mode(Kg, is_float)
    WB = _direct.block_sizes(is_float, mode, kb)[1]
    nbytes = _buffer_bytes(Cg * R * S, T, sw if OW > 1 else 1, dw, 4 if is_float else 8, mode, WB, 1)
    return nbytes <= min(MAX_BUFFER_BYTES, PHYSICAL_MEMORY)


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return MAX_BUFFER_BYTES


PHYSICAL_MEMORY = _physical_memory()
WIDEST_BLOCK = max(_direct.block_sizes(f, 1, 1)[1] for f in (True, False))     # output columns of a block


def _run(x5, w5, bias, out5, geom, nthreads, pad_zeros):
    """Run the tiled kernel on 5-D arrays with the ``Geometry`` struct ``geom`` (a dict, see
    :func:`fastconv._geometry.kernel_struct`); ``out5``'s spatial shape defines which outputs are computed.

    Output channels whose kernel ``w5[k]`` holds an inf or NaN are then recomputed by ``_direct.exact``, which
    multiplies zero padding only when ``pad_zeros`` (see the module docstring)."""
    N, C, D, H, W = x5.shape
    K, Cg, R, S, T = w5.shape
    groups = geom["groups"]
    is_float = x5.dtype == np.float32
    mode, kb = _choose_mode(K // groups, is_float)
    KB, WB = _direct.block_sizes(is_float, mode, kb)
    packed = pack_weights(w5, groups, KB)
    OD, OH, OW = out5.shape[2:]
    if OW == 1 and geom["sw"] != 1:   # a single output column never applies the W stride: it only sizes a buffer
        geom = dict(geom, sw=1)
    sw, dw = geom["sw"], geom["dw"]
    # below ~1 MFLOP per thread, waking threads costs more than it saves
    nthreads = max(1, min(nthreads, int(2 * out5.size * Cg * R * S * T // MIN_FLOPS_PER_THREAD)))
    nwblk = -(-OW // WB)
    col_bytes = max(1, Cg * R * S * x5.itemsize * sw)
    wcb = max(1, min(nwblk, BUFFER_BYTES // (col_bytes * WB)))
    nkb = -(-(K // groups) // KB)
    want = 4 * nthreads
    # rows per task: enough work per task (>= ~64 kFLOP) to amortise its setup, while keeping >= 4 tasks/thread
    row_flops = 2 * nkb * KB * Cg * R * S * T * min(OW, wcb * WB)
    rows = max(1, min(OH, -(-64000 // row_flops)))
    while rows > 1 and N * groups * OD * ceil(OH / rows) < want:
        rows = max(1, rows // 2)
    base = N * groups * OD * ceil(OH / rows)
    kchunks = 1
    if base * ceil(nwblk / wcb) < want:
        kchunks = min(nkb, ceil(want / (base * ceil(nwblk / wcb))))
        if base * kchunks * ceil(nwblk / wcb) < want:
            wcb = max(1, nwblk * base * kchunks // want)
    # The kernel sizes its gather buffer as below in 64-bit integers: a huge W stride or dilation (up to 2**62)
    # would wrap around there and under-allocate, so refuse it here, exactly, as the kernel's malloc would.
    nbytes = _buffer_bytes(Cg * R * S, T, sw, dw, x5.itemsize, mode, WB, wcb)
    if nbytes > MAX_BUFFER_BYTES:
        raise MemoryError("direct convolution: could not allocate %d bytes of per-thread scratch" % nbytes)
    b = bias if bias is not None else np.zeros(1, x5.dtype)
    _direct.forward(x5, packed, b, out5, geom, has_bias=bias is not None, mode=mode, kb=kb, kchunks=kchunks,
                    wchunk_blocks=wcb, rows_per_task=rows, nthreads=nthreads)
    # one pass over the kernel operand (about 1 % of a weight gradient, where it is the output gradient)
    if not np.isfinite(w5).all():
        bad = np.flatnonzero(~np.isfinite(w5.reshape(K, -1)).all(axis=1))
        _direct.exact(x5, w5, b, out5, geom, bad, has_bias=bias is not None, pad_zeros=pad_zeros,
                      nthreads=nthreads)


def forward(x, w, bias, geom, out, nthreads):
    _run(as_5d(x), as_5d(w), bias, as_5d(out), geom.kernel_struct, nthreads, pad_zeros=True)


def transposed_weight(w, groups):
    """(K, Cg, *k) -> (C, Kg, *k) per group, flipped in space: the kernel of the adjoint convolution."""
    K, Cg = w.shape[:2]
    Kg = K // groups
    nd = w.ndim - 2
    wt = w.reshape((groups, Kg, Cg) + w.shape[2:]).swapaxes(1, 2).reshape((groups * Cg, Kg) + w.shape[2:])
    return np.ascontiguousarray(wt[(slice(None), slice(None)) + (slice(None, None, -1),) * nd])


def grad_input(gy, w, geom, out, nthreads):
    wt = transposed_weight(w, geom.groups)
    pad = tuple(d * (k - 1) - p for d, k, p in zip(geom.dilation, geom.kernel_size, geom.pad_lo))
    adjoint = kernel_struct(geom.kernel_size, (1,) * geom.ndim, geom.dilation, pad, input_dilation=geom.stride,
                            groups=geom.groups)
    _run(as_5d(gy), as_5d(wt), None, as_5d(out), adjoint, nthreads, pad_zeros=False)


def grad_weight(x, gy, geom, out, nthreads):
    G = geom.groups
    N, C = x.shape[:2]
    K = gy.shape[1]
    Cg, Kg = C // G, K // G
    g3 = geom.as_3d()
    x5, gy5 = as_5d(x), as_5d(gy)
    # batch <-> channels: input (Cg, G*N, ...) with groups G, kernel (K, N, *out_size), stride and dilation swapped
    xt = np.ascontiguousarray(x5.reshape((N, G, Cg) + x5.shape[2:]).transpose(2, 1, 0, 3, 4, 5)
                              .reshape((Cg, G * N) + x5.shape[2:]))
    gyt = np.ascontiguousarray(gy5.transpose(1, 0, 2, 3, 4))
    res = np.empty((Cg, K) + g3.kernel_size, x.dtype)
    swapped = kernel_struct(geom.output_size, geom.dilation, geom.stride, geom.pad_lo, groups=G)
    _run(xt, gyt, None, res, swapped, nthreads, pad_zeros=True)
    out[...] = res.transpose(1, 0, 2, 3, 4).reshape(out.shape)


def _block_efficiency(Kg, width, taps, is_float):
    """Fraction of the register block's multiply-adds that are useful, and the loop-overhead factor."""
    mode, kb = _choose_mode(Kg, is_float)
    KB, WB = _direct.block_sizes(is_float, mode, kb)
    if mode == 1:
        return MODE1_EFFICIENCY * (Kg / (kb * ceil(Kg / kb))) * (width / (WB * ceil(width / WB)))
    eff = (Kg / (KB * ceil(Kg / KB))) * (width / (WB * ceil(width / WB)))
    return eff * (ONE_TAP_EFFICIENCY if taps == 1 else 1.0)


def cost(geom, dtype, op):
    """Seconds: multiply-adds at the measured per-thread rate of the register block, scaled by the fraction of
    the block that is useful, divided over the threads that get work, plus a fixed call overhead.

    The constants (``RATE_PER_THREAD`` etc., below) come from ``bench/bench_conv.py`` single-thread runs.
    """
    from .. import _threads
    is_float = np.dtype(dtype) == np.float32
    g3 = geom.as_3d()
    N, C = g3.input_shape[:2]
    K = g3.out_channels
    G = g3.groups
    taps = int(np.prod(g3.kernel_size))
    OD, OH, OW = g3.output_size
    if op == "forward":
        eff = _block_efficiency(K // G, OW, taps, is_float)
        tasks = N * G * OD * OH
        extra = 0.0
    elif op == "grad_input":
        # the output gradient dilated by the stride: (s_w - 1) of every s_w gathered columns are zeros
        eff = _block_efficiency(C // G, g3.input_size[2], taps, is_float) / g3.stride[2]
        tasks = N * G * np.prod(g3.input_size[:2])
        extra = 0.0
    else:
        # batch and channels swap roles; the output row is the kernel width, and x / gy are transposed first
        eff = _block_efficiency(K // G, g3.kernel_size[2], taps, is_float)
        tasks = (C // G) * g3.kernel_size[0] * g3.kernel_size[1]
        extra = (np.prod(geom.input_shape) + np.prod(geom.output_shape)) * np.dtype(dtype).itemsize / COPY_BYTES_PER_S
    threads = max(1, min(_threads.get_num_threads(), int(tasks),
                         int(geom.flops // MIN_FLOPS_PER_THREAD) or 1))
    rate = RATE_PER_THREAD[is_float] * threads * (PARALLEL_EFFICIENCY if threads > 1 else 1.0)
    return geom.flops / (rate * max(eff, 1e-3)) + extra + CALL_OVERHEAD


# Measured on the reference 3x3 layers (AVX2 build, one thread): GFLOP/s of the mode-0 register block.
RATE_PER_THREAD = {True: 59e9, False: 29e9}
ONE_TAP_EFFICIENCY = 0.5     # 1x1 kernels: loop overhead per input channel is not amortised over taps
MODE1_EFFICIENCY = 0.12      # column-vectorised blocks (depthwise and few channels per group)
PARALLEL_EFFICIENCY = 0.9
COPY_BYTES_PER_S = 4e9
CALL_OVERHEAD = 3e-5


ALGORITHM = register(Algorithm(
    name="direct",
    forward=forward,
    grad_input=grad_input,
    grad_weight=grad_weight,
    cost=cost,
    description="cache-tiled direct convolution; no workspace beyond a per-thread row buffer",
    supports=supports,
))
