"""The ``direct`` algorithm: cache-tiled direct convolution (``_kernels/_direct.pyx``, ``_kernels/_depthwise.pyx``).

Forward, input gradient and weight gradient all run direct kernels:

* forward: ``y = x (*) w`` with stride, dilation and zero padding -- the channel-vectorised kernel, or, for few
  output channels per group (depthwise, single-channel images), the column-vectorised one;
* input gradient / transposed convolution: "backprop is convolution with flipped filters" -- the output gradient
  correlated with the kernel flipped in space and transposed in channels, padding ``d (k - 1) - p``.  A strided
  layer's gradient runs one stride-1 correlation per phase of the input (the positions with the same remainders
  modulo the stride, each with the taps that reach them), so none of the zeros of the dilated output gradient is
  multiplied; small ones dilate the output gradient instead (the kernels' input dilation, no copy);
* weight gradient: the input correlated with the output gradient used as the kernel (batch and channels swap
  roles), stride and dilation exchanged; layers with few channels per group (depthwise) run a dedicated kernel
  that accumulates every weight of a group over a chunk of the batch.

Non-finite values: the kernels multiply the zeros they gather for padding and stride holes along W and skip
padding rows along D and H, which is exact while the kernel operand (the weight, or the output gradient in the
weight gradient) is finite.  The output channels whose kernel holds an inf or NaN are recomputed tap by tap
(``_direct.exact``), forming exactly the products of the contract in :mod:`fastconv._algorithms`: zero padding
is multiplied in the forward pass and the weight gradient (``0 * inf = NaN``, as PyTorch), never in the input
gradient / transposed convolution, whose padding and holes are not input elements.  A depthwise weight gradient
whose output gradient holds an inf or NaN (its kernel checks the rows as it reads them) runs again as the swapped
convolution, which has that exact pass.
"""
import functools
import os
from math import ceil, prod

import numpy as np

from .. import _kernels
from .._algorithms import Algorithm, register
from .._geometry import kernel_struct
from .._kernels import as_5d, shape_5d
from .._threads import MIN_FLOPS_PER_THREAD

_direct = _kernels.module("_direct")
_dw = _kernels.module("_depthwise")

# Per-thread gather buffer budget: rows of the input band for one task (about half of a 512 KiB L2 cache).
BUFFER_BYTES = 256 * 1024
# Larger per-thread buffers are refused before the kernel runs (no machine has them; 64-bit sizes stay exact).
MAX_BUFFER_BYTES = 2 ** 48
# Output rows per task of the channel-vectorised kernel (they share the band of input rows it gathers).
BAND_ROWS = 8
# Fewer output channels per group than this run the column-vectorised kernel (depthwise, single-channel images,
# the input gradient of layers with few input channels).
COLUMN_KERNEL_MAX_KG = 8
# Weight gradients with at most this many (input x output) channels per group run the column-vectorised kernel,
# the batch split into enough chunks for WGRAD_TASKS tasks.
COLUMN_WGRAD_MAX_CHANNELS = 4
WGRAD_TASKS = 16
# Strided input gradients of at least this many flops per phase run one stride-1 correlation per input phase,
# unless a group has at most PHASE_MAX_DILATED_CHANNELS (input x output) channels: there the correlation of the
# dilated output gradient, whose work is mostly the gathers, ran 2-4.7x faster than the phases' passes and
# strided copies (stride-2 3x3 depthwise, 2 and 4 channels per group; a 7 -> 64 layer ran 1.4x slower that way;
# AMD EPYC, avx2).
PHASE_MIN_FLOPS = 200_000
PHASE_MAX_DILATED_CHANNELS = 16


def _by_phases(geom):
    """Whether ``grad_input`` runs the strided input gradient as one correlation per input phase."""
    phases = prod(geom.stride)
    G = geom.groups
    return (phases > 1 and geom.flops >= PHASE_MIN_FLOPS * phases
            and (geom.in_channels // G) * (geom.out_channels // G) > PHASE_MAX_DILATED_CHANNELS)


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


def _band_rows_min(S, dh):
    """Rows of the band one output row gathers per channel and depth tap (``_direct.band_rows(1, S, sh, dh)``,
    in Python integers: no overflow for huge dilations)."""
    return min(S, (S - 1) * dh + 1)


def _scratch_bytes(Cg, R, S, T, dh, sw, dw, Kg, OW, itemsize):
    """Bytes of the smallest gather buffer of one thread (one output row per task, one column block) of the
    kernel that runs a correlation of ``Cg`` input channels and ``Kg`` output channels per group with an (R, S, T)
    kernel, W stride ``sw``, dilations ``dh``, ``dw``, output width ``OW`` (as the kernels compute it)."""
    if OW <= 1:
        sw = 1
    rows = Cg * R * _band_rows_min(S, dh)
    if Kg < COLUMN_KERNEL_MAX_KG:
        WB = _dw.block_width(itemsize, max(OW, 1), Kg)
        wb = (-(-max(OW, 1) // WB) * WB - 1) * sw + (T - 1) * dw + 1
        wb = -(-wb // sw) * sw
    else:
        WB = _direct.block_sizes(itemsize == 4)[1]
        wb = (WB - 1) * sw + (T - 1) * dw + 1
    return rows * wb * itemsize


def _run_shape(geom, op):
    """(input channels per group, kernel (R, S, T), H dilation, W stride, W dilation, output channels per group,
    output width) of the kernel run that computes ``op`` on ``geom`` (see ``forward``/``grad_input``/
    ``grad_weight``; a strided input gradient split into phases runs smaller kernels over narrower rows)."""
    g3 = geom.as_3d()
    G = g3.groups
    C, K = g3.in_channels // G, g3.out_channels // G
    if op == "forward":
        return C, g3.kernel_size, g3.dilation[1], g3.stride[2], g3.dilation[2], K, g3.output_size[2]
    if op == "grad_input":
        return K, g3.kernel_size, g3.dilation[1], 1, g3.dilation[2], C, g3.input_size[2]
    return g3.batch, g3.output_size, g3.stride[1], g3.dilation[2], g3.stride[2], K, g3.kernel_size[2]


def supports(geom, dtype, op):
    """False when even the smallest gather buffer of one thread would not fit in this machine's memory: huge W
    dilations or strides, which ``toeplitz`` computes without such a buffer.

    Settled by a bound for every ordinary geometry (the widest column block or the whole output row, 8-byte
    elements), counted exactly (and cached) only past it."""
    k = geom.kernel_size
    if op == "forward":
        rows, T, sw, dw = geom.weight_shape[1] * prod(k[:-1]), k[-1], geom.stride[-1], geom.dilation[-1]
        ow = geom.output_size[-1]
    elif op == "grad_input":
        rows, T, sw, dw = geom.weight_shape[0] // geom.groups * prod(k[:-1]), k[-1], 1, geom.dilation[-1]
        ow = geom.input_shape[-1]
    else:
        o = geom.output_size
        rows, T, sw, dw = geom.batch * prod(o[:-1]), o[-1], geom.dilation[-1], geom.stride[-1]
        rows = max(rows, geom.weight_shape[1] * prod(k[:-1]))      # the depthwise weight-gradient kernel's rows
        ow = max(k[-1], o[-1])
    width = (ow + WIDEST_BLOCK) * sw + (T - 1) * dw + 1 + max(sw, geom.stride[-1])     # (rows rounded to strides)
    if rows * width * 8 <= min(MAX_BUFFER_BYTES, PHYSICAL_MEMORY):
        return True
    return _fits(geom, np.dtype(dtype).char, op, _kernels.level())


@functools.lru_cache(maxsize=1024)
def _fits(geom, dtype, op, level):
    # ``level`` (whose register blocks size the buffers) is only part of the cache key
    itemsize = 4 if dtype == "f" else 8
    limit = min(MAX_BUFFER_BYTES, PHYSICAL_MEMORY)
    Cg, (R, S, T), dh, sw, dw, Kg, OW = _run_shape(geom, op)
    if op == "grad_weight":
        g3 = geom.as_3d()
        G = g3.groups
        cin, kout = g3.in_channels // G, g3.out_channels // G
        if cin * kout <= COLUMN_WGRAD_MAX_CHANNELS:
            # the depthwise weight-gradient kernel gathers whole input rows; an output gradient holding an inf or
            # NaN runs the swapped convolution instead, so both must fit
            R2, S2, T2 = g3.kernel_size
            OW2 = g3.output_size[2]
            sw2, dw2 = g3.stride[2], g3.dilation[2]
            wb = -(-((max(OW2, 1) - 1) * sw2 + (T2 - 1) * dw2 + 1) // sw2) * sw2
            if cin * R2 * _band_rows_min(S2, g3.dilation[1]) * wb * itemsize > limit:
                return False
    return _scratch_bytes(Cg, R, S, T, dh, sw, dw, Kg, OW, itemsize) <= limit


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # pragma: no cover - not POSIX
        return MAX_BUFFER_BYTES


PHYSICAL_MEMORY = _physical_memory()
WIDEST_BLOCK = 64     # output columns of the widest register block of any kernel and level (and more)


def _columns_plan(x_shape, w_shape, out_shape, itemsize, geom, nthreads):
    """The column-vectorised kernel (``_kernels/_depthwise.pyx``) for few output channels per group: tasks of
    whole bands of output rows, the band's input rows gathered once.  Returns ``(geom, keyword arguments)`` of
    its call on 5-D arrays of these shapes."""
    N, C, D, H, W = x_shape
    K, Cg, R, S, T = w_shape
    groups = geom["groups"]
    OD, OH, OW = out_shape[2:]
    if OW == 1 and geom["sw"] != 1:
        geom = dict(geom, sw=1)
    sh, sw, dh, dw = geom["sh"], geom["sw"], geom["dh"], geom["dw"]
    nthreads = max(1, min(nthreads, int(2 * prod(out_shape) * Cg * R * S * T // MIN_FLOPS_PER_THREAD)))
    WB = _dw.block_width(itemsize, OW, K // groups)
    RB = _dw.block_rows(itemsize, OW, K // groups)
    wb = (-(-OW // WB) * WB - 1) * sw + (T - 1) * dw + 1
    wb = -(-wb // sw) * sw
    row_bytes = Cg * R * wb * itemsize
    if row_bytes * min((S - 1) * dh + 1, S) > MAX_BUFFER_BYTES:
        raise MemoryError("direct convolution: could not allocate %d bytes of per-thread scratch"
                          % (row_bytes * min((S - 1) * dh + 1, S)))
    # rows per task: the band (see the kernel: dense, or one slot per row and tap) fits the buffer budget, >= 4
    # tasks per thread, whole register blocks of rows
    band = max(1, BUFFER_BYTES // row_bytes)
    rows = max(1, min(OH, max((band - (S - 1) * dh - 1) // sh + 1, band // S)))
    while rows > RB and N * groups * OD * ceil(OH / rows) < 4 * nthreads:
        rows = max(RB, rows // 2)
    if rows > RB:
        rows = rows // RB * RB
    return geom, dict(rows_per_task=rows, nthreads=nthreads)


def _channels_plan(x_shape, w_shape, out_shape, itemsize, geom, nthreads):
    """The channel-vectorised kernel (``_kernels/_direct.pyx``).  Returns ``(geom, output channels per packed
    block, keyword arguments)`` of its call on 5-D arrays of these shapes."""
    N, C, D, H, W = x_shape
    K, Cg, R, S, T = w_shape
    groups = geom["groups"]
    KB, WB = _direct.block_sizes(itemsize == 4)
    OD, OH, OW = out_shape[2:]
    if OW == 1 and geom["sw"] != 1:   # a single output column never applies the W stride: it only sizes a buffer
        geom = dict(geom, sw=1)
    sw, dw = geom["sw"], geom["dw"]
    # below ~1 MFLOP per thread, waking threads costs more than it saves
    nthreads = max(1, min(nthreads, int(2 * prod(out_shape) * Cg * R * S * T // MIN_FLOPS_PER_THREAD)))
    nwblk = -(-OW // WB)
    nkb = -(-(K // groups) // KB)
    want = 4 * nthreads
    # rows per task: a band of BAND_ROWS output rows shares its input rows (gathered once per task), and enough
    # work per task (>= ~64 kFLOP) amortises its setup, while keeping >= 4 tasks per thread
    row_flops = 2 * nkb * KB * Cg * R * S * T * OW
    rows = max(1, min(OH, max(BAND_ROWS, -(-64000 // row_flops))))
    while rows > 1 and N * groups * OD * ceil(OH / rows) < want:
        rows = max(1, rows // 2)
    # columns per task: the band's rows of those columns fit the buffer budget (fewer rows if need be)
    while True:
        col_bytes = max(1, Cg * R * _direct.band_rows(rows, S, geom["sh"], geom["dh"]) * itemsize * sw)
        wcb = min(nwblk, BUFFER_BYTES // (col_bytes * WB))
        if wcb >= 1 or rows == 1:
            wcb = max(1, wcb)
            break
        rows = max(1, rows // 2)
    base = N * groups * OD * ceil(OH / rows)
    kchunks = 1
    if base * ceil(nwblk / wcb) < want:
        kchunks = min(nkb, ceil(want / (base * ceil(nwblk / wcb))))
        if base * kchunks * ceil(nwblk / wcb) < want:
            wcb = max(1, nwblk * base * kchunks // want)
    # The kernel sizes its gather buffer as below in 64-bit integers: a huge W stride or dilation (up to 2**62)
    # would wrap around there and under-allocate, so refuse it here, exactly, as the kernel's malloc would.
    wb = (wcb * WB - 1) * sw + (T - 1) * dw + 1
    band = Cg * R * _direct.band_rows(rows, S, geom["sh"], geom["dh"]) * wb * itemsize
    if band > MAX_BUFFER_BYTES:
        raise MemoryError("direct convolution: could not allocate %d bytes of per-thread scratch" % band)
    return geom, KB, dict(kchunks=kchunks, wchunk_blocks=wcb, rows_per_task=rows, nthreads=nthreads)


INF = float("inf")


def _runner(x_shape, w_shape, out_shape, itemsize, geom, nthreads, pad_zeros):
    """``run(x5, w5, bias, out5)``: a direct kernel on 5-D arrays of these shapes with the ``Geometry`` struct
    ``geom`` (a dict, see :func:`fastconv._geometry.kernel_struct`), its parameters worked out once;
    ``out5``'s spatial shape defines which outputs are computed.

    Output channels whose kernel ``w5[k]`` holds an inf or NaN are then recomputed by ``_direct.exact``, which
    multiplies zero padding only when ``pad_zeros`` (see the module docstring)."""
    groups = geom["groups"]
    columns = w_shape[0] // groups < COLUMN_KERNEL_MAX_KG
    if columns:
        g, kw = _columns_plan(x_shape, w_shape, out_shape, itemsize, geom, nthreads)
        kernel, KB = _dw.forward, None
    else:
        g, KB, kw = _channels_plan(x_shape, w_shape, out_shape, itemsize, geom, nthreads)
        kernel = _direct.forward
    exact, max_abs = _direct.exact, _direct.max_abs
    zero = np.zeros(1, np.float32 if itemsize == 4 else np.float64)
    size = prod(w_shape)
    rows, nt = kw["rows_per_task"], kw["nthreads"]
    if KB is not None:
        kchunks, wcb = kw["kchunks"], kw["wchunk_blocks"]

    def run(x5, w5, bias, out5):
        b = zero if bias is None else bias
        if KB is None:
            kernel(x5, np.ascontiguousarray(w5), b, out5, g, has_bias=bias is not None, rows_per_task=rows,
                   nthreads=nt)
        else:
            kernel(x5, pack_weights(w5, groups, KB), b, out5, g, has_bias=bias is not None, kchunks=kchunks,
                   wchunk_blocks=wcb, rows_per_task=rows, nthreads=nt)
        # one pass over the kernel operand (about 1 % of a weight gradient, where it is the output gradient)
        if size and not max_abs(w5.reshape(-1), nthreads) < INF:
            K = w5.shape[0]
            bad = np.flatnonzero(~np.isfinite(w5.reshape(K, -1)).all(axis=1))
            exact(x5, w5, b, out5, geom, bad, has_bias=bias is not None, pad_zeros=pad_zeros, nthreads=nthreads)
    return run


def _run(x5, w5, bias, out5, geom, nthreads, pad_zeros):
    """Run a direct kernel on 5-D arrays (see :func:`_runner`; the runner of a call seen before is reused)."""
    _cached_runner(x5.shape, w5.shape, out5.shape, x5.itemsize, tuple(geom.items()), nthreads, pad_zeros,
                   _kernels.level())(x5, w5, bias, out5)


@functools.lru_cache(maxsize=256)
def _cached_runner(x_shape, w_shape, out_shape, itemsize, geom_items, nthreads, pad_zeros, level):
    return _runner(x_shape, w_shape, out_shape, itemsize, dict(geom_items), nthreads, pad_zeros)


def forward(x, w, bias, geom, out, nthreads):
    _run(as_5d(x), as_5d(w), bias, as_5d(out), geom.kernel_struct, nthreads, pad_zeros=True)


def plan(op, geom, dtype, nthreads):
    """``run(x, w, bias, out)``: the forward pass of ``geom`` with the kernel's parameters worked out once."""
    if op != "forward":
        return None
    x5s, w5s, o5s = shape_5d(geom.input_shape), shape_5d(geom.weight_shape), shape_5d(geom.output_shape)
    run5 = _runner(x5s, w5s, o5s, np.dtype(dtype).itemsize, geom.kernel_struct, nthreads, pad_zeros=True)

    def run(x, w, bias, out):
        run5(x.reshape(x5s), w.reshape(w5s), bias, out.reshape(o5s))
    return run


def transposed_weight(w, groups):
    """(K, Cg, *k) -> (C, Kg, *k) per group, flipped in space: the kernel of the adjoint convolution."""
    K, Cg = w.shape[:2]
    Kg = K // groups
    nd = w.ndim - 2
    # flipped while still (groups, Cg, Kg, *k): one copy, then a free reshape (reshaping the swapped view first
    # copied twice: 8 us against 5 on LeNet's 16 x 6 x 5 x 5)
    wt = w.reshape((groups, Kg, Cg) + w.shape[2:]).swapaxes(1, 2)
    wt = np.ascontiguousarray(wt[(slice(None),) * 3 + (slice(None, None, -1),) * nd])
    return wt.reshape((groups * Cg, Kg) + w.shape[2:])


def _phase_taps(a, s, k, d, p):
    """Input positions ``a + s*j`` of a strided axis read output ``o`` through tap ``r`` when
    ``o*s + r*d - p = a + s*j``: the taps with ``r*d = a + p (mod s)``.  Returns (taps in reversed order, their
    dilation in output positions, the low-side padding) of that stride-1 correlation over ``j``, or None."""
    taps = [r for r in range(k) if (a + p - r * d) % s == 0]
    if not taps:
        return None
    offsets = [(a + p - r * d) // s for r in taps[::-1]]          # increasing
    dil = offsets[1] - offsets[0] if len(offsets) > 1 else 1
    return taps[::-1], dil, -offsets[0]


def _grad_input_phases(gy, w, geom, out, nthreads):
    """Input gradient of a strided convolution as one stride-1 correlation per phase of the input (positions with
    the same remainders modulo the stride), each with the taps that reach it: none of the zeros of the dilated
    output gradient is multiplied."""
    g3 = geom.as_3d()
    gy5, w5, out5 = as_5d(gy), as_5d(w), as_5d(out)
    N, C = out5.shape[:2]
    for a in np.ndindex(*g3.stride):
        per_axis = [_phase_taps(a[i], g3.stride[i], g3.kernel_size[i], g3.dilation[i], g3.pad_lo[i])
                    for i in range(3)]
        sizes = tuple(len(range(a[i], g3.input_size[i], g3.stride[i])) for i in range(3))
        view = out5[:, :, a[0]::g3.stride[0], a[1]::g3.stride[1], a[2]::g3.stride[2]]
        if min(sizes) == 0:
            continue
        if any(t is None for t in per_axis):
            view[...] = 0
            continue
        wsub = w5[:, :, per_axis[0][0]][:, :, :, per_axis[1][0]][:, :, :, :, per_axis[2][0]]
        wt = transposed_weight(wsub, geom.groups)[:, :, ::-1, ::-1, ::-1]    # undo the flip: taps are reversed
        tmp = np.empty((N, C) + sizes, out.dtype)
        phase = kernel_struct(wt.shape[2:], (1, 1, 1), tuple(t[1] for t in per_axis), tuple(t[2] for t in per_axis),
                              groups=geom.groups)
        _run(gy5, np.ascontiguousarray(wt), None, tmp, phase, nthreads, pad_zeros=False)
        view[...] = tmp


def grad_input(gy, w, geom, out, nthreads):
    if _by_phases(geom):
        return _grad_input_phases(gy, w, geom, out, nthreads)
    _run(as_5d(gy), as_5d(transposed_weight(w, geom.groups)), None, as_5d(out), geom.adjoint_kernel_struct, nthreads,
         pad_zeros=False)


def _wgrad_columns(x5, gy5, geom, out, nthreads, grad_bias=None):
    """Weight gradient of a layer with few channels per group (depthwise): ``_kernels/_depthwise.pyx``, the batch
    split into chunks that depend on the shape only, the chunks added in order; ``grad_bias`` (length K), when
    given, receives the bias gradient from the same pass over the output gradient.  Returns False, with ``out``
    and ``grad_bias`` unspecified, when the output gradient holds an inf or NaN (the kernel checks it as it reads
    it; its products skip rows of padding, which the non-finite contract multiplies)."""
    g3 = geom.as_3d()
    N, C = x5.shape[:2]
    K = gy5.shape[1]
    G = geom.groups
    Cg = C // G
    R, S, T = g3.kernel_size
    sh, sw = g3.stride[1:]
    dh, dw = g3.dilation[1:]
    OW = gy5.shape[4]
    nchunks = max(1, min(N, -(-WGRAD_TASKS // G)))
    wb = -(-((max(OW, 1) - 1) * sw + (T - 1) * dw + 1) // sw) * sw
    row_bytes = Cg * R * wb * x5.itemsize
    band = max(1, BUFFER_BYTES // row_bytes)
    rows = max(1, (band - (S - 1) * dh - 1) // sh + 1, band // S)
    part = np.empty((nchunks, K, Cg * R * S * T), x5.dtype)
    bpart = np.empty((nchunks, K) if grad_bias is not None else (1, 1), x5.dtype)
    nthreads = max(1, min(nthreads, nchunks * G, int(geom.flops // MIN_FLOPS_PER_THREAD) or 1))
    if not _dw.grad_weight(x5, gy5, part, bpart, geom.kernel_struct, with_bias=grad_bias is not None,
                           nchunks=nchunks, rows_per_block=rows, nthreads=nthreads):
        return False
    np.sum(part, axis=0, out=out.reshape(K, -1))
    if grad_bias is not None:
        np.sum(bpart, axis=0, out=grad_bias)
    return True


def grad_weight(x, gy, geom, out, nthreads, grad_bias=None):
    G = geom.groups
    N, C = x.shape[:2]
    K = gy.shape[1]
    Cg, Kg = C // G, K // G
    g3 = geom.as_3d()
    x5, gy5 = as_5d(x), as_5d(gy)
    if Cg * Kg <= COLUMN_WGRAD_MAX_CHANNELS and _wgrad_columns(x5, gy5, geom, out, nthreads, grad_bias):
        return
    if grad_bias is not None:   # the swapped convolution reads gy as its kernel: the sum is a pass of its own
        grad_bias[...] = gy5.sum(axis=(0, 2, 3, 4))
    # batch <-> channels: input (Cg, G*N, ...) with groups G, kernel (K, N, *out_size), stride and dilation swapped
    xt = np.ascontiguousarray(x5.reshape((N, G, Cg) + x5.shape[2:]).transpose(2, 1, 0, 3, 4, 5)
                              .reshape((Cg, G * N) + x5.shape[2:]))
    gyt = np.ascontiguousarray(gy5.transpose(1, 0, 2, 3, 4))
    res = np.empty((Cg, K) + g3.kernel_size, x.dtype)
    swapped = kernel_struct(geom.output_size, geom.dilation, geom.stride, geom.pad_lo, groups=G)
    _run(xt, gyt, None, res, swapped, nthreads, pad_zeros=True)
    out[...] = res.transpose(1, 0, 2, 3, 4).reshape(out.shape)


def _channel_efficiency(Kg, width, taps, is_float):
    """Useful fraction of the channel-vectorised register block (padding of the channel and column blocks)."""
    KB, WB = _direct.block_sizes(is_float)
    eff = (Kg / (KB * ceil(Kg / KB))) * (width / (WB * ceil(width / WB)))
    return eff * (ONE_TAP_EFFICIENCY if taps == 1 else 1.0)


def _column_efficiency(kout, width, itemsize, taps_w):
    """Useful fraction of the column-vectorised block (channels per block, column vectors), times its rate
    relative to the channel-vectorised block.  Every kernel row costs the block the work of about
    COLUMN_ROW_TAPS column taps besides its ``taps_w`` taps (row pointers, the band row brought in from cache),
    so wide kernels run the block near its peak and narrow ones far below it."""
    WB = _dw.block_width(itemsize, width, kout)
    nj = 1 if kout == 1 else 2 if kout == 2 else 4
    return (COLUMN_EFFICIENCY * taps_w / (taps_w + COLUMN_ROW_TAPS) * (kout / (nj * ceil(kout / nj)))
            * (width / (WB * ceil(width / WB))))


def cost_kind(geom, dtype, op):
    """Which kernel runs ``op``: "channels" (channel-vectorised), "columns" (few channels per group), "phases"
    (strided input gradient, one correlation per input phase), "swap" / "swap wide" / "swap strided" (weight
    gradient as a convolution with batch and channels swapped, whose output rows are the kernel's rows: at most
    half a register block wide, or wider; a strided layer's stride becomes the swapped kernel's dilation) or
    "wcolumns" / "wimage" (the depthwise weight-gradient kernel, on many groups or on images of one channel: against
    its model it ran 1.5x on the depthwise probe and 0.5x on the image probe, so one fit made 512^2 15x15 image
    weight gradients look 2.4x slower than they ran, and auto took fft at 1.27x).  The calibration scales each
    separately.  (One "swap" fit ran 3x3 and 1x1 layers at 0.4-0.8x their model, a 15x15 one at 0.6x and 5x5 and
    11x11 stride-4 ones at 1.3-1.6x: fitted through all of them, it put AlexNet's weight gradient at 7 ms where it
    took 31, and auto took direct at 2.3-3x winograd's time; AMD EPYC, avx2.)"""
    G = geom.groups
    Cg, Kg = geom.in_channels // G, geom.out_channels // G
    if op == "forward":
        return "columns" if Kg < COLUMN_KERNEL_MAX_KG else "channels"
    if op == "grad_input":
        if _by_phases(geom):
            return "phases"
        return "columns" if Cg < COLUMN_KERNEL_MAX_KG else "channels"
    if Cg * Kg <= COLUMN_WGRAD_MAX_CHANNELS:
        return "wcolumns" if G > 1 else "wimage"
    if max(geom.stride) > 1:
        return "swap strided"
    return "swap wide" if 2 * geom.kernel_size[-1] > _direct.block_sizes(np.dtype(dtype).itemsize == 4)[1] \
        else "swap"


def cost(geom, dtype, op):
    """Seconds: multiply-adds at the per-thread rate of the kernel that runs (see :func:`cost_kind`), scaled by
    the fraction of its register block that is useful, divided over the threads that get work, plus copies and a
    fixed call overhead.

    The constants (below) are those of the development machine; ``fastconv calibrate`` fits a scale per kind on
    the machine it runs on (see ``fastconv/_calibrate.py``).
    """
    from .. import _threads
    itemsize = np.dtype(dtype).itemsize
    is_float = itemsize == 4
    g3 = geom.as_3d()
    N, C = g3.input_shape[:2]
    K = g3.out_channels
    G = g3.groups
    Cg, Kg = C // G, K // G
    taps = int(np.prod(g3.kernel_size))
    OD, OH, OW = g3.output_size
    kind = cost_kind(geom, dtype, op)
    extra = 0.0
    calls = 1
    if op == "forward":
        eff = (_column_efficiency(Kg, OW, itemsize, g3.kernel_size[2]) if kind == "columns"
               else _channel_efficiency(Kg, OW, taps, is_float))
        tasks = N * G * OD * OH
    elif op == "grad_input":
        width = g3.input_size[2]
        if kind == "phases":
            calls = prod(g3.stride)
            width = -(-width // g3.stride[2])
            eff = (_column_efficiency(Cg, width, itemsize, -(-g3.kernel_size[2] // g3.stride[2]))
                   if Cg < COLUMN_KERNEL_MAX_KG
                   else _channel_efficiency(Cg, width, max(1, taps // calls), is_float))
            extra = np.prod(geom.input_shape) * itemsize / COPY_BYTES_PER_S
        else:
            # the output gradient dilated by the stride: (s_w - 1) of every s_w gathered columns are zeros
            eff = (_column_efficiency(Cg, width, itemsize, g3.kernel_size[2]) if kind == "columns"
                   else _channel_efficiency(Cg, width, taps, is_float)) / g3.stride[2]
        tasks = N * G * np.prod(g3.input_size[:2])
    elif kind in ("wcolumns", "wimage"):
        eff = WCOLUMN_EFFICIENCY * OW / (16 * ceil(OW / 16))
        tasks = G * min(N, -(-WGRAD_TASKS // G))
    else:
        # batch and channels swap roles; the output row is the kernel width, and x / gy are transposed first (the
        # swapped kernel's taps are the output positions: a 1x1 layer is no one-tap kernel here)
        eff = _channel_efficiency(Kg, g3.kernel_size[2], np.prod(g3.output_size), is_float)
        tasks = Cg * g3.kernel_size[0] * g3.kernel_size[1]
        extra = (np.prod(geom.input_shape) + np.prod(geom.output_shape)) * itemsize / COPY_BYTES_PER_S
    threads = max(1, min(_threads.get_num_threads(), int(tasks),
                         int(geom.flops // MIN_FLOPS_PER_THREAD) or 1))
    rate = _rate(is_float) * threads * (PARALLEL_EFFICIENCY if threads > 1 else 1.0)
    if kind == "channels":
        # every register block (KB output channels x WB output columns of one output row) also costs its setup and
        # the scatter of its results, which the few input channels x taps of a LeNet-class layer do not hide
        # (AMD EPYC, avx2: 32 x C x 14^2 -> 16 5x5 layers ran 2.1x their model at C = 3, 1.7x at 12, 1.2x at 48)
        KB, WB = _direct.block_sizes(is_float)
        rows, width, chans = ((N * OD * OH, OW, Kg) if op == "forward"
                              else (N * np.prod(g3.input_size[:2]), g3.input_size[2], Cg))
        extra += G * rows * ceil(width / WB) * ceil(chans / KB) * BLOCK_FLOPS / rate
    return geom.flops / (rate * max(eff, 1e-3)) + extra + CALL_OVERHEAD * calls


def _rate(is_float):
    """Multiply-add rate of one thread in the channel-vectorised block (flops/s) for the vector width in use."""
    return RATE_PER_THREAD[_direct.vector_bytes()] * (1.0 if is_float else 0.5)


# Measured on the reference 3x3 layers (one thread): flops/s of the channel-vectorised register block, float32,
# by vector width (32 bytes: AVX2 on the development machine; 64: AVX-512 on a Xeon); float64 is half.
RATE_PER_THREAD = {32: 59e9, 64: 90e9}
BLOCK_FLOPS = 15000         # per register block of the channel kernel: its setup and scatter (see ``cost``)
ONE_TAP_EFFICIENCY = 0.5     # 1x1 kernels: loop overhead per input channel is not amortised over taps
# The column-vectorised block (one load per multiply-add) relative to the channel block, at its peak, and the
# per-kernel-row cost in column taps: single-channel 512^2 images, 2 threads, Xeon (AVX-512), time per output and
# kernel row grew as 0.19 ns + 0.0108 ns per column tap from 7x7 to 63x63 kernels (0.3 of the channel block's
# rate at 7x7, 0.9 at 63x63); a constant 0.3 made a 15x15 kernel look 2x and a 63x63 one 3x slower than it ran.
COLUMN_EFFICIENCY = 1.1
COLUMN_ROW_TAPS = 18
WCOLUMN_EFFICIENCY = 0.25    # the depthwise weight-gradient kernel
PARALLEL_EFFICIENCY = 0.9
COPY_BYTES_PER_S = 4e9
CALL_OVERHEAD = 3e-5


ALGORITHM = register(Algorithm(
    name="direct",
    forward=forward,
    grad_input=grad_input,
    grad_weight=grad_weight,
    cost=cost,
    cost_kind=cost_kind,
    fused_bias=True,
    description="cache-tiled direct convolution; no workspace beyond a per-thread row buffer",
    supports=supports,
    plan=plan,
))
