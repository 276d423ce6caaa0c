"""The ``lanes`` algorithm: direct convolution with the images of the batch as vector lanes
(``_kernels/_lanes.pyx``).

``direct`` vectorises over output channels (or output columns), so a layer with few channels on small images --
LeNet's 1 -> 6 and 6 -> 16 channels on 28x28 and 14x14 pixels -- leaves most lanes of its register blocks idle.
With the images as lanes every multiply-add works on 16 float32 (8 float64) images at once, whatever the channel
counts and sizes: the input and output gradient are first copied into 64-byte lane groups (zero padding, stride
holes and the lanes past the batch resolved in the copy), then

* forward: per output row, 4 output channels x 6 output columns of lane groups accumulate in registers (6 x 4 for
  6 channels, 2 x 12 or 1 x 12 for fewer; 3 x 2, 2 x 3, ... with 32-byte vectors, a lane group being two of
  them; 6 x 2 at 64 bytes or 6 x 1, two columns or one at a time, where wider blocks' columns would read
  padding): the weights, copied with each block's channels side by side, are broadcast once per tap, each loaded
  input lane group serves all of them;
* input gradient / transposed convolution: the same kernel on the output gradient dilated by the stride and padded
  by ``d (k - 1) - p``, with the kernel flipped in space and transposed in channels; rows of that padding and of
  the holes are skipped, and each block of output columns leaves out the leading and trailing column taps that
  read only zeros for all of its columns (LeNet's 6 -> 16 input gradient: 64 products per row instead of 75);
* weight gradient: per (block of output channels, input channel, block of kernel taps) the products are summed
  lane-wise over every image, output row and column, and the 16 (8) lanes are added at the end.

It pays where the batch fills the lanes (N >= 16 float32 images, or a multiple close to it) and the layer is
too small or too narrow for the channel blocks of ``direct`` or the GEMMs of ``toeplitz``; ``auto`` finds those
layers through the cost model below.

Non-finite values: the forward pass and the weight gradient form exactly the products of the contract in
:mod:`fastconv._algorithms` (zero padding included; the lanes past the batch are zero in both operands).  The
input gradient skips rows of padding and stride holes, but along W a block still multiplies the zeros its other
columns' taps read, which the contract never multiplies there -- an inf weight next to a hole gives NaN where
PyTorch gives inf -- so the entry spreads in ``grad_input`` only (``spreading_ops``): ``auto`` runs that op again
exactly when its result holds an inf or NaN, and the other two never.
"""
import functools
import threading
from math import ceil, prod

import numpy as np

from .. import _kernels, _measure, _threads
from .._algorithms import Algorithm, register
from .._geometry import kernel_struct
from .._kernels import as_5d
from .._threads import MIN_FLOPS_PER_THREAD
from .direct import PHYSICAL_MEMORY, transposed_weight

_lanes = _kernels.module("_lanes")

LANE_BYTES = _lanes.LANE_BYTES      # the kernel's lane group: 64 bytes at every SIMD level
# Packed copies larger than this are refused (supports() is False): the algorithm would not win there anyway.
MAX_PACKED_BYTES = min(2 ** 40, PHYSICAL_MEMORY // 4)


def _lanes_of(itemsize):
    return LANE_BYTES // itemsize


# Each Python thread keeps its packed copies up to this size between calls (two per dtype: the weight gradient packs
# two operands): a fresh allocation of that size comes from the OS as untouched pages, and faulting them in took as
# long as packing them (LeNet's layers, Xeon).
REUSE_BYTES = 64 << 20
_reuse = threading.local()


def _empty_aligned(shape, dtype, slot=0):
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary, so no lane group straddles two
    cache lines (NumPy guarantees 16 bytes; a split load costs two, which halves the kernels' speed).  Arrays up
    to ``REUSE_BYTES`` reuse this thread's buffer ``slot`` (``_threads.thread_buffer``; the previous array of the
    slot is overwritten)."""
    return _threads.thread_buffer(_reuse, (np.dtype(dtype).char, slot), shape, dtype, REUSE_BYTES, align=LANE_BYTES)


def _pack(a5, pad, dil, extent, nthreads, slot=0, all_rows=True):
    """(N, C, D, H, W) -> (ceil(N / L), C, *extent, L): lane groups with padding ``pad`` (low side, any sign) and
    input dilation ``dil`` applied (``_lanes.pack``), 64-byte aligned, in this thread's buffer ``slot``; with
    ``all_rows`` False the rows of padding and holes along D and H are not written (the kernel's row flags skip
    them)."""
    L = _lanes_of(a5.itemsize)
    packed = _empty_aligned((-(-a5.shape[0] // L), a5.shape[1]) + tuple(extent) + (L,), a5.dtype, slot)
    _lanes.pack(a5, packed, *pad, *dil, nthreads, all_rows)
    return packed


def _taps_table(width, xb, kw, sw, dw, cols):
    """The kernel's ``taps`` argument for a call (:func:`_column_taps`, with the table of a call whose blocks run
    every tap made here: it is as long as the packed rows are, over the block width)."""
    taps = _column_taps(width, xb, kw, sw, dw, cols)[0]
    return taps if taps is not None else np.tile(np.array([0, kw], np.intp), -(-width // xb))


# Rows of more column products than this (taps x output columns) keep every tap in the input gradient's blocks
# (the trimming table's temporaries stay below a megabyte; trimming pays on short rows).
TRIM_PRODUCTS = 1 << 16


@functools.lru_cache(maxsize=256)
def _column_taps(width, xb, kw, sw, dw, cols):
    """The column taps each block of ``xb`` output columns runs, on rows of ``width`` outputs, a kernel of ``kw``
    column taps at column stride ``sw`` and dilation ``dw``: ``(taps, useful, computed)``, where ``taps`` holds
    (first tap, number of taps) per block (the kernel's ``taps`` argument; None when every block runs every tap,
    see :func:`_taps_table`), ``computed`` counts the column products the blocks form per row and channel pair and
    ``useful`` those that read a column holding data.

    ``cols`` is None when every packed column counts (the forward pass multiplies its zero padding, as the
    non-finite contract says), else ``(pad, dil, size)``: packed column ``z`` holds data when ``z - pad`` is a
    multiple of ``dil`` below ``size * dil`` (the input gradient's output gradient, padded and dilated by the
    stride); a block then leaves out its leading and trailing taps that read only zeros for all of its output
    columns.  Rows wider than ``TRIM_PRODUCTS`` column products keep every tap (the table would cost more to
    build than it saves)."""
    nblk = -(-width // xb)
    if cols is None or width * kw > TRIM_PRODUCTS:     # every tap: no table (None) -- rows can be 2^31 long
        useful = width * kw if cols is None else min(width, cols[2]) * kw
        return None, useful, nblk * xb * kw
    taps = np.zeros((nblk, 2), np.intp)
    pad, dil, size = cols
    x = np.arange(nblk * xb)
    z = x[None, :] * sw + np.arange(kw)[:, None] * dw - pad           # (tap, output column)
    data = (z >= 0) & (z % dil == 0) & (z // dil < size) & (x < width)[None, :]
    hit = data.reshape(kw, nblk, xb).any(axis=2)                        # (tap, block)
    any_tap = hit.any(axis=0)
    first = np.argmax(hit, axis=0)
    last = kw - 1 - np.argmax(hit[::-1], axis=0)
    taps[:, 0] = np.where(any_tap, first, 0)
    taps[:, 1] = np.where(any_tap, last - first + 1, 0)
    taps.flags.writeable = False        # cached
    return taps.ravel(), int(data.sum()), int(xb * taps[:, 1].sum())


def _columns_read(taps, xb, sw, dw):
    """(first, one past the last) packed column that the blocks of ``xb`` output columns read with the column taps
    ``taps`` (the kernel's table), at column stride ``sw`` and tap dilation ``dw``; (0, 1) if none reads any (the
    input gradient of LeNet's 6 -> 16 layer: columns 3 to 14 of 18)."""
    t0, nt = taps[0::2], taps[1::2]
    x0 = np.arange(len(t0)) * xb * sw
    used = nt > 0
    if not used.any():
        return 0, 1
    lo = int((x0 + t0 * dw)[used].min())
    hi = int((x0 + (xb - 1) * sw + (t0 + nt - 1) * dw)[used].max()) + 1
    return lo, hi


def _block_rate(b, kout, useful, computed):
    """Useful multiply-adds per cycle of register block ``b`` on ``kout`` channels, relative to the fastest block
    (``BLOCK_RATE``), when a row's ``useful`` column products take ``computed`` (``_column_taps``)."""
    rate = BLOCK_RATE[_lanes.vector_bytes()].get(tuple(b), 0.5)
    return rate * kout / (b[0] * ceil(kout / b[0])) * useful / max(computed, 1)


def block(kout, width, kw=1, sw=1, dw=1, cols=None):
    """(channels, columns) of the forward register block that runs ``kout`` output channels per group on rows of
    ``width`` outputs fastest (ties: the first of ``_lanes.block_sizes()``), in the SIMD level in use; the
    column arguments are those of :func:`_column_taps` (the input gradient trims its blocks' taps)."""
    return _block(kout, width, kw, sw, dw, cols, _kernels.level())


@functools.lru_cache(maxsize=256)
def _block(kout, width, kw, sw, dw, cols, level):
    blocks, _ = _lanes.block_sizes()

    def rate(b):
        return _block_rate(b, kout, *_column_taps(width, b[1], kw, sw, dw, cols)[1:])
    return max(blocks, key=lambda b: (rate(b), -blocks.index(b)))


def _extent(out_size, span, stride, width_block):
    """Packed (D, H, W) extent that ``out_size`` outputs read with a kernel spanning ``span`` input positions
    (``ConvGeometry.effective_kernel``) at ``stride``, W rounded up to whole blocks of outputs."""
    ow = -(-out_size[2] // width_block) * width_block
    return tuple((o - 1) * s + e for o, s, e in zip(out_size[:2] + (ow,), stride, span))


def _correlation(geom, op):
    """The valid correlation that computes ``op`` on packed data: (output channels per group, output size,
    stride, channels packed, low-side padding and input dilation of the packed copy).  The forward pass reads
    the input; the input gradient reads the output gradient dilated by the stride and padded by
    ``geom.adjoint_pad_lo``, at stride 1; the weight gradient packs the input as the forward pass does."""
    g3 = geom.as_3d()
    G = g3.groups
    if op == "grad_input":
        return g3.in_channels // G, g3.input_size, (1, 1, 1), g3.out_channels, g3.adjoint_pad_lo, g3.stride
    return g3.out_channels // G, g3.output_size, g3.stride, g3.in_channels, g3.pad_lo, (1, 1, 1)


def _columns(geom, op):
    """The column arguments of :func:`_column_taps` for ``op`` (forward or input gradient): kernel width, column
    stride and dilation of the correlation, and the data columns of the packed copy (None: all count)."""
    g3 = geom.as_3d()
    if op == "grad_input":
        return (g3.kernel_size[2], 1, g3.dilation[2],
                (g3.adjoint_pad_lo[2], g3.stride[2], g3.output_size[2]))
    return g3.kernel_size[2], g3.stride[2], g3.dilation[2], None


def _block_of(geom, op):
    """The register block that runs ``op`` (forward or input gradient) on ``geom``."""
    kout, out_size = _correlation(geom, op)[:2]
    return block(max(kout, 1), max(out_size[2], 1), *_columns(geom, op))


def _rows(extent, size, pad, dil):
    """1 for the packed rows (along D or H) that hold input rows, 0 for padding rows and stride holes."""
    z = np.arange(extent) - pad
    return np.ascontiguousarray((z >= 0) & (z % dil == 0) & (z // dil < size), np.uint8)


# The results of one forward task (its rows, its block's channels) are held in a per-thread buffer of at most this
# size before they are transposed into the images.
TASK_BYTES = 256 << 10
# Packing a copy smaller than this runs on one thread (waking a second costs more than it saves).
PACK_PARALLEL_BYTES = 256 << 10


class _Plan:
    """What a call of ``op`` on one geometry needs beyond its arrays, computed once (``_plan`` caches it): the
    packed extents, paddings and input dilations, the register block, the kernel's geometry dict, the row flags,
    the rows per task and the thread counts."""

    def __init__(self, geom, itemsize, op, nthreads, kb=None):
        g3 = geom.as_3d()
        L = _lanes_of(itemsize)
        self.threads = _threads.threads_for(geom.flops, nthreads, MIN_FLOPS_PER_THREAD)
        kout, out_size, stride, channels, self.pad, self.dil = _correlation(geom, op)
        if op == "grad_weight":
            self.ext = _extent(out_size, g3.effective_kernel, stride, 1)
            Dp, Hp, Wp = self.ext
            R, S, T = g3.kernel_size
            dd, dh, dw = g3.dilation
            self.toff = np.array([((r * dd * Hp + s * dh) * Wp + t * dw) * L for r in range(R) for s in range(S)
                                  for t in range(T)], np.intp)
            self.kernel = geom.kernel_struct
            self.tap_groups, self.rows_per_pass = _wgrad_passes(g3, L * itemsize, self.ext, self.threads)
        else:
            self.block = _block_of(geom, op) if kb is None else kb
            self.block_index = _lanes.block_sizes()[0].index(self.block)     # the kernel's name for it
            self.ext = _extent(out_size, g3.effective_kernel, stride, self.block[1])
            self.taps = _taps_table(out_size[2], self.block[1], *_columns(geom, op))
            self.first_column = 0
            if op == "grad_input":      # pack only the columns the blocks' taps read
                lo, hi = _columns_read(self.taps, self.block[1], stride[2], g3.dilation[2])
                self.first_column = lo
                self.ext = self.ext[:2] + (hi - lo,)
                self.pad = self.pad[:2] + (self.pad[2] - lo,)
            if op == "forward":        # the forward pass multiplies its zero padding (the non-finite contract)
                self.valid = (np.ones(self.ext[0], np.uint8), np.ones(self.ext[1], np.uint8))
            else:                      # rows of padding and stride holes are skipped (columns: self.taps)
                self.valid = tuple(_rows(self.ext[i], g3.output_size[i], self.pad[i], self.dil[i]) for i in (0, 1))
            self.kernel = kernel_struct(g3.kernel_size, stride, g3.dilation, (0, 0, 0), groups=g3.groups)
            tasks = -(-g3.batch // L) * g3.groups * -(-kout // self.block[0]) * out_size[0]
            # a task's rows of results (lane groups of its block's channels) stay within TASK_BYTES
            rows = max(1, min(out_size[1], (TASK_BYTES // (self.block[0] * L * itemsize) - self.block[1])
                              // max(out_size[2], 1)))
            while rows > 1 and tasks * -(-out_size[1] // rows) < 4 * self.threads:
                rows = -(-rows // 2)
            self.rows = rows
            # input channels per pass over a row's column blocks: those a block reads stay in L1 for the next
            cols = (self.block[1] - 1) * stride[2] + (g3.kernel_size[2] - 1) * g3.dilation[2] + 1
            per_channel = g3.kernel_size[0] * g3.kernel_size[1] * cols * L * itemsize
            cg = max(channels // g3.groups, 1)     # input channels per group of the correlation
            self.channels_per_pass = _threads.balanced_block(cg, L1_BYTES // per_channel)
        self.pack_threads = self.threads if _packed_bytes(geom, itemsize, op) >= PACK_PARALLEL_BYTES else 1


# The data a kernel pass keeps in the L1 data cache for its next block (32 KiB on the CPUs we measured, 48 KiB on
# newer Intel cores): a forward / input gradient row's channels, and the weight gradient's rows where the cache's
# size cannot be read (_wgrad_l1_bytes).
L1_BYTES = 24 << 10


def _wgrad_passes(g3, lane_bytes, ext, threads):
    """(tap groups, output rows per pass) of the weight-gradient kernel (``_lanes.grad_weight``): a task takes all
    the tap blocks of its (channel block, input channel) unless that leaves fewer than 4 tasks per thread, and
    passes over as many output rows as keep its output-gradient rows and the input rows they read within
    the L1 data cache (:func:`_wgrad_l1_bytes`; LeNet 6 -> 16 on a 48 KiB cache: one pass of all 10 rows, run by
    each of the 5 tap blocks of AVX-512's 4 x 5 block)."""
    _, (WKB, WTB) = _lanes.block_sizes()
    G = g3.groups
    base = G * -(-(g3.out_channels // G) // WKB) * (g3.in_channels // G)
    ntb = -(-prod(g3.kernel_size) // WTB)
    groups = min(ntb, max(1, -(-4 * threads // max(base, 1))))
    Dp, Hp, Wp = ext
    OD, OH, OW = g3.output_size
    span_d, span_h = g3.effective_kernel[:2]
    per_row = (WKB * OW + span_d * g3.stride[1] * Wp) * lane_bytes
    halo = span_d * max(span_h - g3.stride[1], 0) * Wp * lane_bytes
    return groups, _threads.balanced_block(max(OH, 1), (_wgrad_l1_bytes() - halo) // per_row)


# The weight gradient's passes fill the whole L1 data cache of the CPU (L1_BYTES where its size cannot be read):
# each pass calls the register block once per tap block, and every call loads and stores its accumulators, so
# short passes pay more calls.  Xeon (Sapphire Rapids, 48 KiB, avx512; the kernel alone, interleaved in one
# process, 2 threads), against passes within L1_BYTES: LeNet's 6 -> 16 layer (64 x 6 x 14^2, 5x5) in 0.96 of the
# time with one pass of 10 rows instead of two of 5, its 1 -> 6 layer (64 x 1 x 28^2, 5x5, pad 2) in 0.82 with
# passes of 4 rows instead of 1.
def _wgrad_l1_bytes():
    return _measure.l1_data_cache_bytes() or L1_BYTES


def _plan(geom, itemsize, op, nthreads):
    return _cached_plan(geom, itemsize, op, nthreads, _kernels.level())


@functools.lru_cache(maxsize=256)
def _cached_plan(geom, itemsize, op, nthreads, level):
    return _Plan(geom, itemsize, op, nthreads)


def _correlate(xp, w5, bias, out5, plan, check=False):
    """out5 = the valid correlation of the packed ``xp`` with ``w5`` (K, Cg, R, S, T) (+ bias); with ``check``
    (no bias), whether every output is finite."""
    b = bias if bias is not None else w5[:1, 0, 0, 0, 0]
    return _lanes.forward(xp, w5, b, out5, plan.valid[0], plan.valid[1], plan.taps, plan.kernel,
                          has_bias=bias is not None, block=plan.block_index, rows_per_task=plan.rows,
                          nthreads=plan.threads, check=check, channels_per_pass=plan.channels_per_pass,
                          first_column=plan.first_column)


def forward(x, w, bias, geom, out, nthreads, plan=None):
    x5, w5, out5 = as_5d(x), as_5d(w), as_5d(out)
    if x5.shape[1] == 0 or min(out5.shape) == 0:
        out5[...] = 0 if bias is None else bias.reshape(-1, 1, 1, 1)
        return
    plan = plan or _plan(geom, x.itemsize, "forward", nthreads)
    _correlate(_pack(x5, plan.pad, plan.dil, plan.ext, plan.pack_threads), w5, bias, out5, plan)


def grad_input(gy, w, geom, out, nthreads, plan=None):
    """The input gradient into ``out``; returns whether it is all finite (``reports_finite``)."""
    gy5, out5 = as_5d(gy), as_5d(out)
    if gy5.shape[1] == 0 or min(out5.shape) == 0:
        out5[...] = 0
        return True
    plan = plan or _plan(geom, gy.itemsize, "grad_input", nthreads)
    gyp = _pack(gy5, plan.pad, plan.dil, plan.ext, plan.pack_threads, all_rows=False)   # plan.valid skips them
    return _correlate(gyp, as_5d(transposed_weight(w, geom.groups)), None, out5, plan, check=True)


def grad_weight(x, gy, geom, out, nthreads, plan=None):
    x5, gy5, out5 = as_5d(x), as_5d(gy), as_5d(out)
    if min(out5.shape) == 0:
        return
    if min(gy5.shape) == 0:
        out5[...] = 0
        return
    plan = plan or _plan(geom, x.itemsize, "grad_weight", nthreads)
    xp = _pack(x5, plan.pad, plan.dil, plan.ext, plan.pack_threads)
    gyp = _pack(gy5, (0, 0, 0), (1, 1, 1), geom.as_3d().output_size, plan.pack_threads, slot=1)   # unpadded
    _lanes.grad_weight(xp, gyp, out5, plan.toff, plan.kernel, plan.threads, plan.tap_groups, plan.rows_per_pass)


def _packed_bytes(geom, itemsize, op):
    """Bytes of the packed copies ``op`` makes (Python integers: no overflow)."""
    g3 = geom.as_3d()
    L = _lanes_of(itemsize)
    images = -(-g3.batch // L) * L
    kout, out_size, stride, channels, _, _ = _correlation(geom, op)
    width_block = 1 if op == "grad_weight" else _block_of(geom, op)[1]
    total = images * channels * prod(max(e, 0) for e in _extent(out_size, g3.effective_kernel, stride, width_block))
    if op == "grad_weight":
        total += images * g3.out_channels * prod(g3.output_size)
    return total * itemsize


def cost_kind(geom, dtype, op):
    """The register block that runs ``op`` ("k4", "k2", "k1": its output channels; "" for the weight gradient),
    so the calibration fits the blocks separately: the narrow ones load an input lane group per one or two
    multiply-adds instead of four."""
    if op == "grad_weight":
        return ""
    # one-tap kernels apart: there a block's taps do not amortise its loads, and the 1x1 probe, at 1.7-2.3x the
    # model, set the slope of the one fit it shared with the 5x5 probes (at 1.0-1.2x), so LeNet's layer looked
    # twice as slow as it ran and auto took direct at 1.3-1.4x its time (AMD EPYC, avx2)
    return "k%d%s" % (_block_of(geom, op)[0], "-1tap" if prod(geom.kernel_size) == 1 else "")


def supports(geom, dtype, op):
    """False when the packed copies would not fit (huge strides, dilations or batches)."""
    return _supports(geom, np.dtype(dtype).itemsize, op, _kernels.level())


@functools.lru_cache(maxsize=1024)
def _supports(geom, itemsize, op, level):
    return _packed_bytes(geom, itemsize, op) <= MAX_PACKED_BYTES


def cost(geom, dtype, op):
    """Seconds: multiply-adds at the per-thread rate of the register block, scaled by the useful fraction of the
    lanes (images past the batch), of the channel block and of the column products (forward, input gradient:
    ``_column_taps``) or tap block (weight gradient), plus the packed copies and a fixed call overhead.  Constants
    of the development machine; ``fastconv calibrate`` fits them."""
    itemsize = np.dtype(dtype).itemsize
    g3 = geom.as_3d()
    L = _lanes_of(itemsize)
    N = g3.batch
    if N == 0:
        return CALL_OVERHEAD
    G = g3.groups
    Cg, Kg = g3.in_channels // G, g3.out_channels // G
    _, (WKB, WTB) = _lanes.block_sizes()
    lanes = N / (L * ceil(N / L))
    if op == "grad_weight":
        taps = prod(g3.kernel_size)
        eff = lanes * Kg / (WKB * ceil(Kg / WKB)) * taps / (WTB * ceil(taps / WTB)) * WGRAD_EFFICIENCY
        tasks = G * ceil(Kg / WKB) * Cg * ceil(taps / WTB)
    else:
        # rows of padding and holes are skipped; along W each column block runs its taps (an input gradient's
        # blocks leave out the taps that read only zeros) for all of its columns
        kout, out_size = _correlation(geom, op)[:2]
        b = _block_of(geom, op)
        eff = lanes * _block_rate(b, kout, *_column_taps(out_size[2], b[1], *_columns(geom, op))[1:])
        tasks = ceil(N / L) * G * ceil(kout / b[0]) * prod(out_size[:2])
    threads = min(_threads.threads_for(geom.flops, None, MIN_FLOPS_PER_THREAD), max(1, int(tasks)))
    rate = RATE_PER_THREAD[_lanes.vector_bytes()] * (1.0 if itemsize == 4 else 0.5) * threads
    if threads > 1:
        rate *= PARALLEL_EFFICIENCY
    copies = _packed_bytes(geom, itemsize, op) / COPY_BYTES_PER_S
    return geom.flops / (rate * max(eff, 1e-3)) + copies + CALL_OVERHEAD


# Measured on the LeNet 6 -> 16 layer (64 x 6 x 14^2, one thread): flops/s of the forward register block, float32,
# by vector width (32: AVX2 build; 64: AVX-512 on a Xeon); float64 is half.
RATE_PER_THREAD = {32: 40e9, 64: 80e9}
WGRAD_EFFICIENCY = 0.8
# Multiply-add rate of each forward block relative to the fastest, by vector width, measured on LeNet's layers
# (Xeon; AVX-512 and the AVX2 build): with fewer channels a loaded input lane group serves fewer multiply-adds.
# 6 x 1 (one column: no block multiplies a column of padding that its column does not need) measured on AVX2 only
# (AMD EPYC; LeNet's input gradient: 0.95 of the 3 x 2 block's time, which forms 8 % more products there); at
# 64 bytes its 6 accumulators are too few to hide the FMA latency (an estimate; LeNet's input gradient on the Xeon
# later gave about 0.8, but 6 x 2 below beats it there, and the entry keeps the choices it made).  6 x 2 at 64
# bytes (12 accumulators, 8 loads per 12 multiply-adds) measured on the Xeon (AVX-512, 2 threads, interleaved, two
# runs): LeNet's input gradient kernel took 0.85 of the time it took with 6 x 4, which forms 64 column products per
# row against its 54 (50 read data), and its packed output gradient has 12 columns instead of 16.
BLOCK_RATE = {64: {(4, 6): 1.0, (4, 5): 1.0, (6, 4): 1.0, (2, 12): 0.75, (1, 12): 0.5, (6, 1): 0.7, (6, 2): 0.99},
              32: {(3, 2): 1.0, (2, 2): 0.85, (1, 4): 0.8, (2, 3): 0.75, (1, 6): 0.75, (6, 1): 0.97}}
PARALLEL_EFFICIENCY = 0.9
COPY_BYTES_PER_S = 8e9     # packing LeNet's activations, one thread (Xeon)
CALL_OVERHEAD = 3e-5


ALGORITHM = register(Algorithm(
    name="lanes",
    forward=forward,
    grad_input=grad_input,
    grad_weight=grad_weight,
    cost=cost,
    cost_kind=cost_kind,
    description="direct convolution with the batch's images as vector lanes (LeNet-class layers)",
    supports=supports,
    nonfinite="spreads",     # the input gradient multiplies the padding and stride holes it copies along W
    spreading_ops=("grad_input",),
    reports_finite=("grad_input",),     # the kernel checks its sums (no bias there) in its threads' caches
))
