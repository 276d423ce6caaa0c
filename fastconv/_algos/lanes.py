"""The ``lanes`` algorithm: direct convolution with the images of the batch as vector lanes
(``_kernels/_lanes.pyx``).

``direct`` vectorises over output channels (or output columns), so a layer with few channels on small images --
LeNet's 1 -> 6 and 6 -> 16 channels on 28x28 and 14x14 pixels -- leaves most lanes of its register blocks idle.
With the images as lanes every multiply-add works on 16 float32 (8 float64) images at once, whatever the channel
counts and sizes: the input and output gradient are first copied into 64-byte lane groups (zero padding, stride
holes and the lanes past the batch resolved in the copy), then

* forward: per output row, 4 output channels x 6 output columns of lane groups accumulate in registers (2 x 12 or
  1 x 12 for layers with fewer channels; 2 x 3 or 1 x 3 with 32-byte vectors): the block's weights are broadcast
  once per tap, each loaded input lane group serves all of them;
* input gradient / transposed convolution: the same kernel on the output gradient dilated by the stride and padded
  by ``d (k - 1) - p``, with the kernel flipped in space and transposed in channels;
* weight gradient: per (block of output channels, input channel, block of kernel taps) the products are summed
  lane-wise over every image, output row and column, and the 16 (8) lanes are added at the end.

It pays where the batch fills the lanes (N >= 16 float32 images, or a multiple close to it) and the layer is
too small or too narrow for the channel blocks of ``direct`` or the GEMMs of ``toeplitz``; ``auto`` finds those
layers through the cost model below.

Non-finite values: the copies multiply the zeros of the padding and (input gradient) of the stride holes, which
the contract in :mod:`fastconv._algorithms` never multiplies in an input gradient -- an inf weight next to a hole
gives NaN where PyTorch gives inf -- so the entry is declared ``"spreads"`` and ``auto`` avoids it for operands
holding an inf or NaN.
"""
from math import ceil, prod

import numpy as np

from .. import _kernels
from .._algorithms import Algorithm, register
from .._kernels import as_5d
from .._threads import MIN_FLOPS_PER_THREAD
from .direct import PHYSICAL_MEMORY, pack_weights, transposed_weight

_lanes = _kernels.module("_lanes")

LANE_BYTES = 64
# Packed copies larger than this are refused (supports() is False): the algorithm would not win there anyway.
MAX_PACKED_BYTES = min(2 ** 40, PHYSICAL_MEMORY // 4)


def _lanes_of(itemsize):
    return LANE_BYTES // itemsize


def _empty_aligned(shape, dtype):
    """An uninitialised C-contiguous array whose data starts on a 64-byte boundary, so no lane group straddles two
    cache lines (NumPy guarantees 16 bytes; a split load costs two, which halves the kernels' speed)."""
    dtype = np.dtype(dtype)
    n = prod(shape)
    raw = np.empty(n + LANE_BYTES // dtype.itemsize, dtype)
    start = (-raw.ctypes.data % LANE_BYTES) // dtype.itemsize
    return raw[start:start + n].reshape(shape)


def _pack(a5, pad, dil, extent, nthreads):
    """(N, C, D, H, W) -> (ceil(N / L), C, *extent, L): lane groups with padding ``pad`` (low side, any sign) and
    input dilation ``dil`` applied (``_lanes.pack``), 64-byte aligned."""
    L = _lanes_of(a5.itemsize)
    packed = _empty_aligned((-(-a5.shape[0] // L), a5.shape[1]) + tuple(extent) + (L,), a5.dtype)
    _lanes.pack(a5, packed, *pad, *dil, nthreads)
    return packed


def _threads(flops, nthreads):
    return max(1, min(nthreads, int(flops // MIN_FLOPS_PER_THREAD) or 1))


def _rows(extent, size, pad, dil):
    """1 for the packed rows (along D or H) that hold input rows, 0 for padding rows and stride holes."""
    z = np.arange(extent) - pad
    return np.ascontiguousarray((z >= 0) & (z % dil == 0) & (z // dil < size), np.uint8)


def _correlate(xp, w5, bias, out5, kernel, stride, dilation, groups, nthreads, flops, valid=None, kb=None):
    """out5 = the valid correlation of the packed ``xp`` with ``w5`` (K, Cg, R, S, T) (+ bias); ``valid`` =
    (depth flags, row flags) of the packed rows to multiply (default: all); ``kb`` forces a register block."""
    Dp, Hp = xp.shape[2:4]
    R, S, T = kernel
    if valid is None:
        valid = (np.ones(Dp, np.uint8), np.ones(Hp, np.uint8))
    geom = dict(groups=groups, kd=R, kh=S, kw=T, sd=stride[0], sh=stride[1], sw=stride[2], dd=dilation[0],
                dh=dilation[1], dw=dilation[2], pd=0, ph=0, pw=0, ld=1, lh=1, lw=1)
    b = bias if bias is not None else np.zeros(1, xp.dtype)
    nthreads = _threads(flops, nthreads)
    N, K, OD, OH, OW = out5.shape
    KB, XB = block(K // groups, OW) if kb is None else kb
    tasks = xp.shape[0] * K // groups // KB * OD          # (lane group, channel block, depth) before any split
    rows = OH
    while rows > 1 and tasks * -(-OH // rows) < 4 * nthreads:
        rows = -(-rows // 2)
    _lanes.forward(xp, pack_weights(w5, groups, KB), b, out5, valid[0], valid[1], geom, has_bias=bias is not None,
                   block_channels=KB, rows_per_task=rows, nthreads=nthreads)


def _block_rate(b, kout, width):
    """Useful multiply-adds per cycle of register block ``b`` on ``kout`` channels and rows of ``width`` outputs,
    relative to the full channel block."""
    return (BLOCK_RATE.get(b[0], 1.0) * kout / (b[0] * ceil(kout / b[0])) * width / (b[1] * ceil(width / b[1])))


def block(kout, width):
    """(channels, columns) of the forward register block that runs ``kout`` output channels per group on rows of
    ``width`` outputs fastest."""
    blocks, _ = _lanes.block_sizes()
    return max(blocks, key=lambda b: (_block_rate(b, kout, width), b[0]))


def _extent(out_size, kernel, stride, dilation, width_block):
    """Packed (D, H, W) extent that ``out_size`` outputs read, W rounded up to whole blocks of outputs."""
    ext = [(o - 1) * s + (k - 1) * d + 1 for o, k, s, d in zip(out_size, kernel, stride, dilation)]
    ow = -(-out_size[2] // width_block) * width_block
    ext[2] = (ow - 1) * stride[2] + (kernel[2] - 1) * dilation[2] + 1
    return ext


def forward(x, w, bias, geom, out, nthreads):
    g3 = geom.as_3d()
    x5, w5, out5 = as_5d(x), as_5d(w), as_5d(out)
    if x5.shape[1] == 0 or min(out5.shape) == 0:
        out5[...] = 0 if bias is None else bias.reshape(-1, 1, 1, 1)
        return
    _, XB = block(g3.out_channels // geom.groups, g3.output_size[2])
    ext = _extent(g3.output_size, g3.kernel_size, g3.stride, g3.dilation, XB)
    xp = _pack(x5, g3.pad_lo, (1, 1, 1), ext, nthreads)
    _correlate(xp, w5, bias, out5, g3.kernel_size, g3.stride, g3.dilation, geom.groups, nthreads, geom.flops)


def grad_input(gy, w, geom, out, nthreads):
    g3 = geom.as_3d()
    gy5, out5 = as_5d(gy), as_5d(out)
    if gy5.shape[1] == 0 or min(out5.shape) == 0:
        out5[...] = 0
        return
    _, XB = block(g3.in_channels // geom.groups, g3.input_size[2])
    one = (1, 1, 1)
    ext = _extent(g3.input_size, g3.kernel_size, one, g3.dilation, XB)
    pad = tuple(d * (k - 1) - p for d, k, p in zip(g3.dilation, g3.kernel_size, g3.pad_lo))
    gyp = _pack(gy5, pad, g3.stride, ext, nthreads)
    wt = as_5d(transposed_weight(w, geom.groups))
    # rows of padding and stride holes are not multiplied (columns are: a register block spans them)
    valid = tuple(_rows(ext[i], g3.output_size[i], pad[i], g3.stride[i]) for i in (0, 1))
    _correlate(gyp, wt, None, out5, g3.kernel_size, one, g3.dilation, geom.groups, nthreads,
               geom.flops * prod(g3.stride), valid)


def grad_weight(x, gy, geom, out, nthreads):
    g3 = geom.as_3d()
    x5, gy5, out5 = as_5d(x), as_5d(gy), as_5d(out)
    if min(out5.shape) == 0:
        return
    if min(gy5.shape) == 0:
        out5[...] = 0
        return
    ext = _extent(g3.output_size, g3.kernel_size, g3.stride, g3.dilation, 1)
    xp = _pack(x5, g3.pad_lo, (1, 1, 1), ext, nthreads)
    gyp = _pack(gy5, (0, 0, 0), (1, 1, 1), g3.output_size, nthreads)
    Dp, Hp, Wp, L = xp.shape[2:]
    R, S, T = g3.kernel_size
    dd, dh, dw = g3.dilation
    toff = np.array([((r * dd * Hp + s * dh) * Wp + t * dw) * L for r in range(R) for s in range(S)
                     for t in range(T)], np.intp)
    geom5 = dict(geom.kernel_struct)
    _lanes.grad_weight(xp, gyp, out5, toff, geom5, _threads(geom.flops, nthreads))


def _packed_bytes(geom, itemsize, op):
    """Bytes of the packed copies ``op`` makes (Python integers: no overflow)."""
    g3 = geom.as_3d()
    L = _lanes_of(itemsize)
    groups = -(-g3.batch // L) * L
    if op == "grad_input":
        size, stride = g3.input_size, (1, 1, 1)
        channels = g3.out_channels
    else:
        size, stride = g3.output_size, g3.stride
        channels = g3.in_channels
    ext = _extent(size, g3.kernel_size, stride, g3.dilation, 24)
    total = groups * channels * prod(max(e, 0) for e in ext)
    if op == "grad_weight":
        total += groups * g3.out_channels * prod(g3.output_size)
    return total * itemsize


def supports(geom, dtype, op):
    """False when the packed copies would not fit (huge strides, dilations or batches)."""
    return _packed_bytes(geom, np.dtype(dtype).itemsize, op) <= MAX_PACKED_BYTES


def cost(geom, dtype, op):
    """Seconds: multiply-adds at the per-thread rate of the register block, scaled by the useful fraction of the
    lanes (images past the batch), of the channel block and of the column (forward, input gradient) or tap
    (weight gradient) block -- the input gradient also multiplies the padding and holes along W -- plus the packed copies and
    a fixed call overhead.  Constants of the development machine; ``fastconv calibrate`` fits them."""
    from .. import _threads
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
        if op == "forward":
            kout, width, rows, useful = Kg, g3.output_size[2], prod(g3.output_size[:2]), g3.output_size[2]
        else:
            # rows of padding and holes are skipped; along W every column of the block runs (the output gradient's
            # OW columns hold the useful products)
            kout, width, rows, useful = Cg, g3.input_size[2], prod(g3.input_size[:2]), g3.output_size[2]
        b = block(kout, width)
        eff = lanes * _block_rate(b, kout, width) * min(1.0, useful / width)
        tasks = ceil(N / L) * G * ceil(kout / b[0]) * rows
    threads = max(1, min(_threads.get_num_threads(), int(tasks), int(geom.flops // MIN_FLOPS_PER_THREAD) or 1))
    rate = RATE_PER_THREAD[_lanes.vector_bytes()] * (1.0 if itemsize == 4 else 0.5) * threads
    if threads > 1:
        rate *= PARALLEL_EFFICIENCY
    copies = _packed_bytes(geom, itemsize, op) / COPY_BYTES_PER_S
    return geom.flops / (rate * max(eff, 1e-3)) + copies + CALL_OVERHEAD


# Measured on the LeNet 6 -> 16 layer (64 x 6 x 14^2, one thread): flops/s of the forward register block, float32,
# by vector width (32: AVX2 build; 64: AVX-512 on a Xeon); float64 is half.
RATE_PER_THREAD = {32: 40e9, 64: 80e9}
WGRAD_EFFICIENCY = 0.8
# Multiply-add rate of the narrower forward blocks relative to the 4-channel one (which loads one input lane group
# per 4 multiply-adds; these per 2 or 1), measured on LeNet's layers (Xeon, AVX-512).
BLOCK_RATE = {2: 0.75, 1: 0.5}
PARALLEL_EFFICIENCY = 0.9
COPY_BYTES_PER_S = 4e9
CALL_OVERHEAD = 3e-5


ALGORITHM = register(Algorithm(
    name="lanes",
    forward=forward,
    grad_input=grad_input,
    grad_weight=grad_weight,
    cost=cost,
    description="direct convolution with the batch's images as vector lanes (LeNet-class layers)",
    supports=supports,
    nonfinite="spreads",     # the input gradient multiplies the stride holes and padding it copies
))
