"""The ``winograd`` algorithm: Winograd minimal filtering F(4, 3) per axis, and the tile engine it shares with
``fft_tiles`` (``_kernels/_winograd.pyx``).

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016).  A 3 x 3 correlation produces a 4 x 4
output tile from a 6 x 6 input tile ``d`` with 36 multiplications instead of 144::

    Y = A^T [ (G g G^T) . (B^T d B) ] A

Summed over input channels, the element-wise products become 36 independent GEMMs
``M[xi] (K x tiles) = U[xi] (K x C) V[xi] (C x tiles)``, one per transform point ``xi``, so the multiplications per
output drop 4x (2.25 instead of 9 per input channel).  1-D kernels use the same 1-D transforms on one axis
(F(4, 3): 1.5 instead of 3), 3-D kernels on three (F(4x4x4, 3x3x3): 216 GEMMs for 64 outputs, 3.4 instead of 27).

**Any geometry, by reduction to 3-tap stride-1 kernels.**  Per axis, a kernel tap ``t`` (dilation ``d``) sits at
``t d = s (3 b + j) + r`` for the stride ``s``: residue ``r`` (polyphase), block ``b`` and position ``j < 3``
inside the block.  Each (channel, residue, block) is a *virtual* input channel reading the input at
``s m + 3 b s + r - pad``, convolved with a 3-tap kernel; summing over virtual channels gives the convolution.  So
AlexNet's 11 x 11 stride 4 layer over 3 channels becomes a stride-1 3 x 3 layer over 48 virtual channels (36
multiplications per output and channel instead of 121), a 5 x 5 layer one over 4 virtual channels (9 instead of
25).  Axes whose phases have a single tap are not transformed.  The input gradient is the adjoint: per residue of
the input, a stride-1 correlation of the output gradient with the flipped phase kernel (virtual input channels =
(output channel, block), virtual output channels = (input channel, residue), written back with stride ``s``).  The
weight gradient is the adjoint of the forward Winograd product: ``dU[xi] = sum_tiles Z[xi] V[xi]^T`` with
``Z = A dY A^T``, then ``dg = G^T dU G`` per virtual kernel, mapped back onto the taps.

**Accuracy.**  The transforms are not orthogonal: rounding errors grow with the transforms' entries.  The points
0, +-3/4, +-3/2 keep them small (up to 3.4 in A^T and 2.8 in B^T, against 8 and 5 for the textbook 0, +-1, +-2),
which cuts the float32 error about three-fold.  :func:`error` bounds the relative error measured on
standard-normal data (``max|y - y64| / max|y64|``; ``bench/bench_winograd.py --accuracy``), and
``algorithm="auto"`` only takes winograd where that bound is within the tolerance of the dtype (see
:func:`fastconv.set_reduced_accuracy`).

**Two tile families.**  The same engine runs the small-tile FFT of the ``fft_tiles`` algorithm
(``fastconv/_algos/fft_tiles.py``): tiles of 8, 16 or 32 points per axis, phase kernels of up to half a tile in
one block; :func:`fft_plan` picks the tile length by the cost model.

**Blocks and threads.**  Tiles are processed in blocks of ``TB`` (a multiple of the vector width; for the forward
pass and the input gradient sized for the per-core L2 cache, for the weight gradient, whose GEMMs sum over a
block's tiles, 64 tiles, or up to 256 in float32 where the accumulators far outgrow the L2 cache); OpenMP runs
blocks (forward, input gradient) or (lane, group, channel chunk) tasks (weight gradient), each calling
single-threaded BLAS.  Block sizes do not depend on the thread count, so results are bitwise identical for any
number of threads.  For 16 or more small images (rows of at most 16 outputs) the images are the vector lanes
instead ("batch mode").
"""
import functools
from dataclasses import dataclass
from math import prod

import numpy as np

from .. import _kernels, _measure, _threads
from .._algorithms import Algorithm, register
from .._geometry import kernel_struct
from .._kernels import _memory, as_5d
from .._threads import single_threaded_blas

_wk = _kernels.module("_winograd")

def cook_toom(points, m=4, r=3):
    """(A^T, G, B^T) of the 1-D minimal correlation F(m, r) on the finite ``points`` and infinity.

    ``y = A^T [(G g) . (B^T d)]`` is the correlation ``y_i = sum_k d_{i+k} g_k`` of ``m`` outputs with ``r``
    taps: ``A^T[i, j] = p_j^i``, ``G[j, k] = p_j^k / prod_{l != j} (p_j - p_l)``, and ``B^T`` solves that
    identity (everything in exact fractions; ``points`` are anything ``fractions.Fraction`` accepts).
    """
    from fractions import Fraction
    a = m + r - 1
    P = [Fraction(p) for p in points]
    if len(P) != a - 1 or len(set(P)) != len(P):
        raise ValueError("F(%d, %d) needs %d distinct finite points, got %r" % (m, r, a - 1, points))
    AT = [[P[j] ** i for j in range(a - 1)] + [Fraction(int(i == m - 1))] for i in range(m)]
    G = []
    for j, p in enumerate(P):
        f = Fraction(1)
        for q in P[:j] + P[j + 1:]:
            f *= p - q
        G.append([p ** k / f for k in range(r)])
    G.append([Fraction(int(k == r - 1)) for k in range(r)])
    # column l of B^T: sum_j AT[i][j] G[j][k] BT[j][l] = [l == i + k] for every i < m, k < r -- m r consistent
    # equations of full column rank a
    rows = [[AT[i][j] * G[j][k] for j in range(a)] for i in range(m) for k in range(r)]
    cols = [_solve_exact(rows, [Fraction(int(l == i + k)) for i in range(m) for k in range(r)]) for l in range(a)]
    BT = [[cols[l][j] for l in range(a)] for j in range(a)]
    return tuple(np.array([[float(v) for v in row] for row in M]) for M in (AT, G, BT))


def _solve_exact(rows, rhs):
    """x with rows @ x = rhs for a consistent system of full column rank (Fractions, Gauss-Jordan)."""
    A = [list(r) + [b] for r, b in zip(rows, rhs)]
    n = len(rows[0])
    for col in range(n):
        pr = next(i for i in range(col, len(A)) if A[i][col] != 0)
        A[col], A[pr] = A[pr], A[col]
        A[col] = [v / A[col][col] for v in A[col]]
        for i in range(len(A)):
            if i != col and A[i][col] != 0:
                f = A[i][col]
                A[i] = [u - f * v for u, v in zip(A[i], A[col])]
    return [A[i][n] for i in range(n)]


# Interpolation points 0, +-3/4, +-3/2 and infinity: every entry of A^T and B^T is a short binary fraction (exact
# in floating point, as with the textbook 0, +-1, +-2), and the float32 error is about a third of the textbook
# points' (bench/bench_winograd.py --accuracy measures both).  B^T and A^T are hard-coded in the kernel; G
# transforms the filters in double precision.
POINTS = ("0", "3/4", "-3/4", "3/2", "-3/2")
AT, G, BT = cook_toom(POINTS)
ALPHA, MT, TAPS = 6, 4, 3
WINOGRAD, FFT = 0, 1                 # the two tile families of the kernel
FFT_LENGTHS = (8, 16, 32)            # small-tile FFT lengths the kernel has codelets for

# Per-block working set (transformed input + GEMM results of one block) near the 2 MiB per-core L2 cache, and the
# output channels per GEMM block (measured on the 3x3 reference layers: KB 64 is the fastest).
BLOCK_BYTES = 1536 * 1024
GEMM_KB = 64
MIN_TB, MAX_TB = 16, 512
# Forward and input gradient: blocks of at most FORWARD_TILE_BLOCK tiles whose working set NP * chans * TB stays
# near BLOCK_BYTES (rounded up to the unit), and at least FORWARD_BLOCKS blocks (the blocks are the tasks the
# threads share).  Measured on the Xeon (AVX-512, 2 threads, interleaved) against the earlier rule (L2 budget, 8
# blocks): 8 x 64 x 56^2 3x3 4.25 ms against 4.50 (64 tiles, not 96), 8 x 256 x 14^2 7.2 against 9.1 (32, not
# 16), AlexNet's 11x11 3.9 against 4.3; 8 x 256 x 28^2 keeps its 48 (64 lost 17 % there).
FORWARD_TILE_BLOCK = 64
FORWARD_BLOCKS = 4
# Weight gradient: tiles per block.  Its GEMMs sum over a block's tiles, so long blocks pay: 64-tile blocks were the
# fastest or within noise of it on every layer of the grid -- 8 x 256 x 28^2 3x3 21 ms against 26 with 16-tile
# blocks, 8 x 256 x 14^2 10.1 against 13.4, 8 x 128 x 28^2 6.6 against 7.1 (32), 8 x 16 x 28^2 0.32 against 0.40
# -- even where the working set outgrows the L2 cache.
GW_TILE_BLOCK = 64
# ... except where a lane's accumulators (transform points x output x input channels) are far larger than the L2
# cache, so that every block's GEMMs stream them through L3: there the blocks are as long as the tiles dealt evenly
# to the lanes allow, up to GW_LONG_BLOCK tiles.  AMD EPYC (Zen 3, 512 KiB of L2), weight gradient with 208-tile
# blocks over 64-tile blocks (interleaved rounds, 8 images of 3x3): 128 channels 28^2 0.94-0.96, 56^2 0.94-0.97;
# 256 channels 28^2 0.82.  With 64 channels (590 KiB of accumulators) and AlexNet's conv1 (660 KiB) they ran 1.28x,
# and in float64 (twice the bytes of every buffer) 1.38x with 128 channels and 1.75x with 64: float32 only.
GW_LONG_ACCUMULATORS = 2        # x the L2 cache
GW_LONG_BLOCK = 256
GW_LONG_BYTES = 24 << 20        # a thread's block buffers (transformed input, its transpose, output gradient)
# Weight gradient: a block's transformed input is transposed first when its products (input x output channels x
# tiles) have fewer multiply-adds than this, so that OpenBLAS multiplies untransposed operands: it runs small ones
# without packing (one thread, 64 x 64 x 64: 5 us against 8-9 us transposed; 128 x 128 x 64 alike either way).
# Interleaved on 8 x 64 x 56^2 3x3: weight gradient over forward time 1.61 / 1.62 / 1.69 -> 1.39 / 1.34 / 1.43.
GW_TRANSPOSE_MAX = 2 ** 20
# ... on BLAS libraries that run small untransposed products without packing: OpenBLAS's cores of the SkylakeX family
# have such kernels (the Xeon above); its Haswell core, which it also runs on AMD Zen, has not, and there the
# transposes only added their own time -- AMD EPYC (Zen 3), both ways interleaved in one process, four runs of
# 12-20 rounds: weight gradient over forward time on 8 x 64 x 56^2 3x3 1.10-1.19 transposed, 1.01-1.12 as stored
# (AlexNet's conv1, one run: 0.96 and 0.92).  Other BLAS libraries (not measured) keep the transposes.
SMALL_GEMM_CORES = ("SkylakeX", "Cooperlake", "SapphireRapids")
# The two above apply where the output gradient is read into row buffers (1-D, 3-D, batch lanes, FFT tiles).  2-D
# F(4, 3) weight gradients in row mode (_channel_lanes) transform it with the channels as lanes instead: each image
# row segment of 16 (8) columns is loaded for 16 (8) channels and transposed in registers before the transform, so
# the transformed output gradient comes out one row of channels per tile and point, and the products multiply both
# operands as stored -- no row copies, no transposes of the transformed input.  Xeon (Sapphire Rapids, avx512,
# 2 threads), forward time over weight-gradient time, interleaved in one run, row buffers -> channels as lanes:
# 8 x 64 x 56^2 3x3 0.83 -> 1.02, 8 x 128 x 28^2 0.92 -> 1.02, AlexNet's conv1 0.82 -> 1.01.  With OpenBLAS's
# Haswell core forced on the same Xeon (OPENBLAS_CORETYPE=Haswell, the core it runs on AMD Zen; not measured on an
# EPYC), the weight gradient took 1.00, 0.95 and 0.99 of the row-buffer path's time.
# Weight gradient: output channels per product (a block of them shares one transformed output gradient).  Every
# block reads the tile block's transformed input again: from a large L2 cache, or from L3 past a small one.  On
# 8 x 128 x 28^2 3x3, weight gradient over forward time:
# - Xeon (Sapphire Rapids, 2 MiB of L2 per core; two interleaved runs, the median of the rounds' ratios): 0.99 / 1.10
#   with blocks of 64, 1.02 / 1.12 with 32, 1.10 with all 128 (one run);
# - AMD EPYC (Zen 3, 512 KiB of L2; medians of 12-20 interleaved rounds, three runs): 1.24 / 1.38 / 1.24 with 64,
#   1.06 / 1.14 / 1.08 with all 128, 1.38 / 1.33 with 96.
GW_L2_SMALL = 1 << 20
GW_KB = 128 if (_measure.l2_cache_bytes() or GW_L2_SMALL) < GW_L2_SMALL else 64
# Channel products with fewer virtual input channels per group than this use a vector loop instead of BLAS.
SMALL_CHANNELS = 4
# Weight gradient: blocks are dealt to this many lanes (each with its own accumulator, summed in order).  The
# accumulators are read once more at the end: on 8 x 128 x 28^2 3x3 four lanes (9.4 MB) cost 0.8 ms over the
# kernel's 4; with two the weight gradient took 0.86-0.90 of the forward time against 0.82-0.83 with four, three
# 0.72-0.75.  More threads than lanes split the output channels (_chunk), which leaves the sums as they are.
LANES = 2
# Batch mode (images as vector lanes) for at least this many images when rows of tiles span at most this many
# output columns.
BATCH_MIN_IMAGES = 16
BATCH_MAX_ROW = 16
# Largest transformed-filter array (bytes) for which winograd is offered.
MAX_U_BYTES = 512 * 2 ** 20
INT_MAX = 2 ** 31 - 1


@dataclass(frozen=True)
class _Axis:
    """One spatial axis (3-D form) of the reduction to stride-1 kernels of J taps over virtual channels."""
    active: bool        # transformed (tiles of alpha > 1 points) or not (alpha = 1)
    residues: tuple     # input phases r that taps reach
    blocks: int         # blocks of J taps per phase
    J: int              # taps per block: 3 for F(4, 3), the whole phase kernel for FFT tiles, 1 if inactive
    fsel: tuple         # forward: per variant (r, b) the tap index at each j (or -1)
    foff: tuple         # forward: per variant, the input offset s*J*b + r - pad
    bsel: tuple         # backward: [r][b][j'] tap index of the flipped phase kernel (or -1)
    stride: int
    pad: int
    size: int           # input length
    out: int            # output length
    k: int              # kernel taps


def _axis(n, k, s, d, pad, out, family, L):
    pos = [t * d for t in range(k)]
    residues = tuple(sorted({p % s for p in pos}))
    Q = max(p // s for p in pos) + 1
    active = Q > 1
    J = 1 if not active else (TAPS if family == WINOGRAD else min(Q, L // 2))
    nb = -(-Q // J)
    where = {(p % s, p // s): t for t, p in enumerate(pos)}
    fsel, foff = [], []
    for r in residues:
        for b in range(nb):
            fsel.append(tuple(where.get((r, J * b + j), -1) for j in range(J)))
            foff.append(s * J * b + r - pad)
    bsel = tuple(tuple(tuple(where.get((r, J * b + J - 1 - j), -1) for j in range(J)) for b in range(nb))
                 for r in residues)
    return _Axis(active, residues, nb, J, tuple(fsel), tuple(foff), bsel, s, pad, n, out, k)


@dataclass(frozen=True)
class _Plan:
    op: str
    item: int           # bytes per element (4: float32, 8: float64)
    family: int         # WINOGRAD or FFT
    L: int              # FFT tile length (0 for Winograd)
    axes: tuple
    N: int
    C: int
    K: int
    groups: int
    T: tuple            # tiles per axis
    m0: tuple           # first virtual position per axis
    TB: int
    KB: int
    kchunk: int
    small: bool
    batch: bool         # lanes are images: arrays rearranged to (C, D, H, W, Np) (small images, large batches)
    Np: int             # batch mode: images rounded up to the vector lanes
    Cv: int             # virtual input channels (all groups)
    Kv: int             # virtual output channels (all groups)

    @property
    def act(self):
        return tuple(a.active for a in self.axes)

    @property
    def alphas(self):
        return tuple((ALPHA if self.family == WINOGRAD else self.L) if a.active else 1 for a in self.axes)

    @property
    def mts(self):
        return tuple((MT if self.family == WINOGRAD else self.L - a.J + 1) if a.active else 1 for a in self.axes)

    @property
    def tile(self):
        """(family, alpha per axis, outputs per axis): the kernel's description of a tile."""
        return (self.family, self.alphas, self.mts)

    @property
    def NP(self):
        return prod(self.alphas)

    @property
    def tiles(self):
        return (self.Np if self.batch else self.N) * prod(self.T)

    @property
    def blocks(self):
        """Blocks of TB tiles (the kernels' work items; the weight gradient deals them to its lanes)."""
        return -(-self.tiles // self.TB)

    @property
    def strides(self):
        return tuple(a.stride for a in self.axes)

    # --- tables, computed once per plan (plans are cached per geometry)
    @functools.cached_property
    def in_tables(self):
        """(in_chan, in_off) of the virtual input channels: forward / weight gradient (input channel, variants),
        input gradient (output channel, blocks)."""
        if self.op == "grad_input":
            per = [np.array([-a.J * b - (a.J - 1) for b in range(a.blocks)]) for a in self.axes]
            src = self.K
        else:
            per = [np.array(a.foff) for a in self.axes]
            src = self.C
        offs = np.stack(np.meshgrid(*per, indexing="ij"), axis=-1).reshape(-1, 3)
        chan = np.repeat(np.arange(src, dtype=np.intp), offs.shape[0])
        return chan, np.ascontiguousarray(np.tile(offs, (src, 1)), dtype=np.intp)

    @functools.cached_property
    def out_tables(self):
        """(out_chan, out_off) of the virtual output channels: forward (output channel), input gradient (input
        channel, residues, written at ``stride * m + r - pad``)."""
        if self.op != "grad_input":
            return np.arange(self.K, dtype=np.intp), np.zeros((self.K, 3), np.intp)
        per = [np.array([r - a.pad for r in a.residues]) for a in self.axes]
        offs = np.stack(np.meshgrid(*per, indexing="ij"), axis=-1).reshape(-1, 3)
        chan = np.repeat(np.arange(self.C, dtype=np.intp), offs.shape[0])
        return chan, np.ascontiguousarray(np.tile(offs, (self.C, 1)), dtype=np.intp)

    @functools.cached_property
    def filter_index(self):
        """Flat tap index (taps = the appended zero) of every virtual kernel entry: forward (variants, J), input
        gradient (residues, blocks, J); None when the virtual kernels are the kernels themselves."""
        kshape = tuple(a.k for a in self.axes)
        if self.op == "grad_input":
            idx = _flat(kshape, [np.array(a.bsel) for a in self.axes])
            R = [len(a.residues) for a in self.axes]
            B = [a.blocks for a in self.axes]
            return idx.reshape(R[0], B[0], R[1], B[1], R[2], B[2], -1).transpose(0, 2, 4, 1, 3, 5, 6).reshape(
                prod(R), prod(B), -1)
        idx = _flat(kshape, [np.array(a.fsel) for a in self.axes])
        if idx.shape[0] == 1 and np.array_equal(idx[0], np.arange(prod(kshape))):
            return None
        return idx

    @functools.cached_property
    def flipped(self):
        """Input gradient whose virtual kernels are the whole kernels flipped (one phase, one block: stride 1)."""
        if self.op != "grad_input":
            return False
        idx = self.filter_index
        taps = prod(a.k for a in self.axes)     # (not the J of a block: a 2-tap axis has J = 3, one tap missing)
        return idx.shape[:2] == (1, 1) and np.array_equal(idx[0, 0], np.arange(taps)[::-1])

    @functools.cached_property
    def filter_rows(self):
        """Winograd forward pass whose virtual kernels are the kernels themselves, or input gradient whose are the
        flipped ones (``flipped``): ``(rows, taps)``, virtual kernel r being row rows[r] of the weights as
        (K * Cg, taps) read at taps[j] (the filter transform reads the weights directly); else None."""
        if self.family != WINOGRAD:
            return None
        G_, Cg, Kg = self.groups, self.C // self.groups, self.K // self.groups
        taps = np.arange(prod(a.k for a in self.axes))
        if self.op == "forward" and self.filter_index is None:
            return np.arange(self.K * Cg), taps
        if not self.flipped:
            return None
        g, c, k = np.meshgrid(np.arange(G_), np.arange(Cg), np.arange(Kg), indexing="ij")   # the order (G, Cg, Kg)
        return ((g * Kg + k) * Cg + c).ravel(), np.ascontiguousarray(taps[::-1])

    @functools.cached_property
    def tap_map(self):
        """(J index, variant index) of every kernel tap (flat), for mapping the weight gradient back."""
        kshape = tuple(a.k for a in self.axes)
        vt = np.zeros(kshape, np.intp)
        jt = np.zeros(kshape, np.intp)
        grids = np.meshgrid(*(np.arange(k) for k in kshape), indexing="ij")
        for ax, a in enumerate(self.axes):
            v_of = np.zeros(a.k, np.intp)
            j_of = np.zeros(a.k, np.intp)
            for v, taps in enumerate(a.fsel):
                for j, t in enumerate(taps):
                    if t >= 0:
                        v_of[t], j_of[t] = v, j
            vt += v_of[grids[ax]] * prod(len(b.fsel) for b in self.axes[ax + 1:])
            jt += j_of[grids[ax]] * prod(b.J for b in self.axes[ax + 1:])
        return jt.ravel(), vt.ravel()

    @functools.cached_property
    def tap_of_kernel(self):
        """Per kernel tap (flat), its column (variant x J + J index) in the weight gradient's rows of the virtual
        kernels; None when that is the tap itself."""
        jt, vt = self.tap_map
        J = prod(a.J for a in self.axes)
        flat = vt * J + jt
        columns = J * prod(len(a.fsel) for a in self.axes)
        return None if flat.size == columns and np.array_equal(flat, np.arange(columns)) else flat

    @functools.cached_property
    def batch_layout(self):
        """Batch mode: per axis (lo, size) of the rearranged input (positions lo ... lo + size - 1 of the input, zero
        outside it) and of the rearranged output (every position a tile writes)."""
        offs, ooffs = self.in_tables[1], self.out_tables[1]
        lin, lout = [], []
        for a, (ax, mt, alpha, T, m0) in enumerate(zip(self.axes, self.mts, self.alphas, self.T, self.m0)):
            s_in = 1 if self.op == "grad_input" else ax.stride
            lo = min(0, s_in * m0 + int(offs[:, a].min()))
            hi = max(ax.size if self.op != "grad_input" else ax.out,
                     s_in * (m0 + mt * (T - 1) + alpha - 1) + int(offs[:, a].max()) + 1)
            lin.append((lo, hi - lo))
            s_out = ax.stride if self.op == "grad_input" else 1
            lo = min(0, s_out * m0 + int(ooffs[:, a].min()))
            n_out = ax.size if self.op == "grad_input" else ax.out
            hi = max(n_out, s_out * (m0 + mt * T - 1) + int(ooffs[:, a].max()) + 1)
            lout.append((lo, hi - lo))
        return tuple(lin), tuple(lout)

    @functools.cached_property
    def partner(self):
        """FFT tiles: per point of the transformed tile, the point holding the other part of its complex value (or
        -1 for the real ones): along the first transformed axis (from W) positions >= 2 pair up (Re, Im); where
        that position is 0 or 1, along the next transformed axis, and so on (see the kernel's _fft_passes)."""
        if self.family != FFT:
            return np.zeros(0, np.intp)
        ext = self.alphas
        st = (ext[1] * ext[2], ext[2], 1)
        axes = [a for a in (2, 1, 0) if self.axes[a].active]
        partner = -np.ones(self.NP, np.intp)
        for p in range(self.NP):
            for a in axes:
                c = (p // st[a]) % ext[a]
                if c >= 2:
                    partner[p] = p + st[a] if c % 2 == 0 else p - st[a]
                    break
        return partner


def _forward_tile_block(NP, tiles, chans, item, unit):
    """Tiles per block of the forward pass and the input gradient (a multiple of ``unit``)."""
    budget = -(-(BLOCK_BYTES // max(1, NP * chans * item)) // unit) * unit
    tb = max(MIN_TB, min(MAX_TB, FORWARD_TILE_BLOCK, budget, -(-tiles // FORWARD_BLOCKS)))
    return -(-tb // unit) * unit


def _weight_grad_tile_block(tiles, unit, NP, Cvg, Kvg, item):
    """Tiles per block of the weight gradient: GW_TILE_BLOCK, or all of them when there are fewer, or in float32
    for accumulators per lane far beyond the L2 cache, up to GW_LONG_BLOCK (and GW_LONG_BYTES of block buffers per
    thread) in an even share of the lanes (a multiple of ``unit``)."""
    tb = max(MIN_TB, min(MAX_TB, GW_TILE_BLOCK, tiles))
    if item == 4 and NP * Kvg * Cvg * item > GW_LONG_ACCUMULATORS * (_measure.l2_cache_bytes() or GW_L2_SMALL):
        longest = min(GW_LONG_BLOCK, GW_LONG_BYTES // (NP * (2 * Cvg + min(Kvg, GW_KB)) * item))
        shares = LANES
        while -(-tiles // shares) > longest and shares < tiles:
            shares += LANES
        tb = max(tb, -(-tiles // shares))
    return -(-tb // unit) * unit


def _use_batch(N, T, mts):
    """Images as vector lanes when there are enough of them and the rows of tiles are short (measured: LeNet's
    10 x 10 outputs, 3 tiles per row, run 3x faster)."""
    return N >= BATCH_MIN_IMAGES and T[2] * mts[2] <= BATCH_MAX_ROW


def _plan(geom, op, item, family=WINOGRAD, L=0):
    """The plan of ``op`` on ``geom`` for the SIMD level in use (its vector lanes size the tile blocks)."""
    return _cached_plan(geom, op, item, family, L, _wk.lanes(item == 4))


@functools.lru_cache(maxsize=512)
def _cached_plan(geom, op, item, family, L, lanes):
    g3 = geom.as_3d()
    N, C = g3.input_shape[:2]
    K, G = g3.out_channels, g3.groups
    axes = tuple(_axis(n, k, s, d, lo, o, family, L) for n, k, s, d, (lo, _), o in
                 zip(g3.input_size, g3.kernel_size, g3.stride, g3.dilation, g3.padding, g3.output_size))
    nvar = prod(len(a.residues) * a.blocks for a in axes)
    nres = prod(len(a.residues) for a in axes)
    nblk = prod(a.blocks for a in axes)
    alphas = tuple((ALPHA if family == WINOGRAD else L) if a.active else 1 for a in axes)
    mts = tuple((MT if family == WINOGRAD else L - a.J + 1) if a.active else 1 for a in axes)
    NP = prod(alphas)
    if op == "grad_input":
        Cv, Kv = K * nblk, C * nres
        lo = [min(-(-(a.pad - r) // a.stride) for r in a.residues) for a in axes]
        hi = [max(-(-(a.size + a.pad - r) // a.stride) for r in a.residues) for a in axes]
        T = tuple(max(1, -(-(h - l) // mt)) for h, l, mt in zip(hi, lo, mts))
        m0 = tuple(lo)
    else:
        Cv, Kv = C * nvar, K
        T = tuple(-(-a.out // mt) for a, mt in zip(axes, mts))
        m0 = (0, 0, 0)
    Cvg, Kvg = Cv // G, Kv // G
    batch = _use_batch(N, T, mts)
    Np = -(-N // lanes) * lanes if batch else N
    tiles = Np * prod(T)
    unit = lanes if batch else MIN_TB
    if op == "grad_weight":
        TB = _weight_grad_tile_block(tiles, unit, NP, Cvg, Kvg, item)
        KB, kchunk = min(Kvg, GW_KB), Kvg
    else:
        KB = min(Kvg, GEMM_KB)
        TB = _forward_tile_block(NP, tiles, Cv + KB, item, unit)
        kchunk = Kvg
    return _Plan(op, item, family, L, axes, N, C, K, G, T, m0, TB, KB, kchunk, Cvg < SMALL_CHANNELS, batch, Np, Cv,
                 Kv)


# ------------------------------------------------------------------------------------------ filter transforms
def _flat(kshape, per_axis):
    """Combine per-axis tap tables (arrays whose last axis is the position j in a block, entries a tap or -1)
    into flat tap indices over the kernel: rows = the leading dims of all axes, columns = (jd, jh, jw); a missing
    tap is ``prod(kshape)`` (the zero appended by _padded_rows)."""
    taps = prod(kshape)
    lead = [a.shape[:-1] for a in per_axis]
    nl = sum(len(d) for d in lead)
    shape = [s for d in lead for s in d] + [a.shape[-1] for a in per_axis]
    flat = np.zeros(shape, np.intp)
    valid = np.ones(shape, bool)
    pos = 0
    strides = (kshape[1] * kshape[2], kshape[2], 1)
    for i, a in enumerate(per_axis):
        sh = [1] * (nl + 3)
        sh[pos:pos + len(lead[i])] = lead[i]
        sh[nl + i] = a.shape[-1]
        v = a.reshape(sh)
        flat = flat + np.where(v >= 0, v, 0) * strides[i]
        valid = valid & (v >= 0)
        pos += len(lead[i])
    return np.where(valid, flat, taps).reshape(prod(shape[:nl]), -1)


def _padded_rows(w, rows):
    """w as (rows, taps + 1) float64 with a zero appended (the index of a missing tap)."""
    taps = prod(w.shape[2:])
    wp = np.zeros((rows, taps + 1))
    wp[:, :taps] = w.reshape(rows, taps)
    return wp


def _virtual_kernels(w, plan):
    """The virtual kernels of the plan's op as (J, Kv * Cvg) float64: forward, the kernels over the virtual
    input channels; input gradient, the flipped phase kernels, output and input channels exchanged."""
    G_, K, C = plan.groups, plan.K, plan.C
    Kg, Cg = K // G_, C // G_
    idx = plan.filter_index
    if plan.op == "grad_input":
        if plan.flipped:        # the whole kernel flipped (a stride-1 layer): a single transposing copy
            taps = prod(w.shape[2:])
            wf = w.reshape(G_, Kg, Cg, taps)[..., ::-1]
            out = np.empty((taps, G_, Cg, Kg))
            out[...] = wf.transpose(3, 0, 2, 1)
            return out.reshape(taps, -1)
        wv = _padded_rows(w, K * Cg).reshape(G_, Kg, Cg, -1)[..., idx]                # (G, Kg, Cg, r, b, J)
        return np.ascontiguousarray(wv.transpose(5, 0, 2, 3, 1, 4)).reshape(idx.shape[-1], -1)
    if idx is None:
        return np.ascontiguousarray(w.reshape(K * Cg, -1).T, dtype=np.float64)
    wv = _padded_rows(w, K * Cg)[:, idx]                                             # (K Cg, variants, J)
    return np.ascontiguousarray(wv.transpose(2, 0, 1)).reshape(idx.shape[1], -1)


def _fft_axes(plan):
    return tuple(a for a in range(3) if plan.axes[a].active)


_NO_KERNELS = np.zeros((0, 0))


def _filters(w, plan, dtype, nthreads):
    """Transformed filters U (NP, Kv, Cv / groups): G g G^T (Winograd) or the packed conjugate spectrum of the
    zero-padded virtual kernels (FFT tiles; conjugate: the tiles compute a correlation)."""
    direct = plan.filter_rows
    wvT = _NO_KERNELS if direct is not None else _virtual_kernels(w, plan)
    R = plan.Kv * (plan.Cv // plan.groups)
    with _memory.caching():         # a block of the last call's size: no page faults
        U = np.empty((plan.NP, R), dtype)
    if direct is not None:          # straight from the weights (no float64 copy of them first)
        _wk.filters(G, wvT, U, plan.act, nthreads, src=np.ascontiguousarray(w, dtype).reshape(direct[0].size, -1),
                    rows=direct[0], taps=direct[1])
    elif plan.family == WINOGRAD:
        _wk.filters(G, wvT, U, plan.act, nthreads)
    else:
        _wk.fft_filters(wvT, U, plan.tile, tuple(a.J for a in plan.axes), plan.partner, nthreads)
    return U.reshape(plan.NP, plan.Kv, -1)


def _weight_from_grad(dU, plan, out, nthreads, channels_first=False):
    """dU (lanes, NP, K, Cvg), or with ``channels_first`` (lanes, NP, Cvg, K), in the transform domain -> the weight
    gradient ``out`` (K, Cg, *kernel).  Where the virtual kernels are the kernels themselves, Winograd's adjoint
    transform writes ``out`` in place (in (K, Cvg) order either way)."""
    K, Cg = plan.K, plan.C // plan.groups
    J = prod(a.J for a in plan.axes)
    du = dU.reshape(dU.shape[0], dU.shape[1], -1)
    flat = plan.tap_of_kernel
    if plan.family == WINOGRAD:
        direct = flat is None and out.flags.c_contiguous and out.dtype == dU.dtype
        res = out.reshape(-1, J) if direct else np.empty((du.shape[2], J), dU.dtype)
        _wk.filters_adjoint(G, du, res, plan.act, nthreads, swap=K if channels_first else 0)
        if direct:
            return
    else:
        # U = conj(T(g)), g zero-padded; the accumulated products are, point by point, the transform-domain
        # gradient times the weights of T T^T = L^n diag(1 or 1/2) that the inverse undoes, so
        # dg = the first J taps of T^{-1}(conj(sum of the lanes))
        res = np.empty((du.shape[2], J))
        _wk.fft_filters_adjoint(du, res, plan.tile, tuple(a.J for a in plan.axes), plan.partner, nthreads)
    res = res.reshape(K, Cg, -1)                                        # (K, Cg, variants x J)
    out[...] = (res if flat is None else res[:, :, flat]).reshape(out.shape)


# ------------------------------------------------------------------------------------------ running a plan
def _to_batch(a5, layout, Np, nthreads):
    """(N, C, D, H, W) -> zero-padded (C, D', H', W', Np): position x of axis i at x - lo_i."""
    out = np.empty((a5.shape[1],) + tuple(n for _, n in layout) + (Np,), a5.dtype)
    _wk.to_batch(a5, out, tuple(lo for lo, _ in layout), nthreads)
    return out


def _from_batch(b, layout, out5, nthreads):
    """Write the rearranged result b (C, D', H', W', Np) back into out5 (N, C, D, H, W)."""
    _wk.from_batch(b, out5, tuple(lo for lo, _ in layout), nthreads)


def _struct(plan, s_in, s_out):
    """The kernels' Geometry struct of the reduced problem: groups, block taps, read stride, write stride (in the
    input-dilation fields); padding and dilation live in the virtual channels' offsets."""
    return kernel_struct(tuple(a.J for a in plan.axes), s_in, (1, 1, 1), (0, 0, 0), s_out, plan.groups)


def _shifted(off, layout):
    return np.ascontiguousarray(off - np.array([lo for lo, _ in layout], np.intp))


def _run(plan, src, w, bias, dst, nthreads):
    """Forward or input gradient: ``src`` (N, C, ...) correlated with the plan's filters into ``dst``; True when
    every value written is finite (the kernel checks what it writes)."""
    U = _filters(w, plan, src.dtype, nthreads)
    if plan.op == "grad_input" and not plan.batch and any(len(a.residues) < a.stride for a in plan.axes):
        dst[...] = 0        # input positions no tap reads get no gradient
    in_chan, in_off = plan.in_tables
    out_chan, out_off = plan.out_tables
    s_in, s_out = (plan.strides, (1, 1, 1)) if plan.op == "forward" else ((1, 1, 1), plan.strides)
    b = bias if bias is not None else np.zeros(1, src.dtype)
    src5, dst5 = as_5d(src), as_5d(dst)
    if plan.batch:
        lin, lout = plan.batch_layout
        src5 = _to_batch(src5, lin, plan.Np, nthreads)
        res = np.zeros((dst5.shape[1],) + tuple(n for _, n in lout) + (plan.Np,), dst.dtype)
        in_off, out_off = _shifted(in_off, lin), _shifted(out_off, lout)
    else:
        res = dst5
    with single_threaded_blas():
        ok = _wk.forward(src5, U, b, res, _struct(plan, s_in, s_out), has_bias=bias is not None, in_chan=in_chan,
                         in_off=in_off, out_chan=out_chan, out_off=out_off, tile=plan.tile, T=plan.T, m0=plan.m0,
                         TB=plan.TB, KB=plan.KB, small=plan.small, batch=plan.batch, partner=plan.partner,
                         nthreads=nthreads)
    if plan.batch:
        _from_batch(res, lout, dst5, nthreads)
    return ok


def _run_weight_grad(plan, x, gy, out, nthreads):
    zt = _channel_lanes(plan)
    Cvg = plan.Cv // plan.groups
    with _memory.caching():         # the kernel writes all of it
        dU = np.empty((LANES, plan.NP) + ((Cvg, plan.K) if zt else (plan.K, Cvg)), x.dtype)
    chan, off = plan.in_tables
    x5, gy5 = as_5d(x), as_5d(gy)
    if plan.batch:
        lin, _ = plan.batch_layout
        x5 = _to_batch(x5, lin, plan.Np, nthreads)
        gy5 = _to_batch(gy5, tuple((0, mt * T + alpha) for mt, T, alpha in zip(plan.mts, plan.T, plan.alphas)),
                        plan.Np, nthreads)
        off = _shifted(off, lin)
    with single_threaded_blas():
        _wk.weight_grad(x5, gy5, dU, _struct(plan, plan.strides, (1, 1, 1)), in_chan=chan, in_off=off,
                        tile=plan.tile, T=plan.T, TB=plan.TB, KB=plan.KB, kchunk=_chunk(plan, nthreads),
                        batch=plan.batch, partner=plan.partner, vt=_transposes(plan), nthreads=nthreads, zt=zt)
    _weight_from_grad(dU, plan, out, nthreads, channels_first=zt)


def _channel_lanes(plan):
    """Whether the weight gradient transforms the output gradient with channels as lanes (F(4, 3) tiles over H and W
    only -- 2-D convolutions, and 3-D ones whose D axis is not transformed -- in row mode: ``_winograd.weight_grad``'s
    ``zt``)."""
    return plan.family == WINOGRAD and not plan.batch and plan.act == (False, True, True)


def _chunk(plan, nthreads):
    """Output channels per task of the weight gradient: all of a group's, or, when there are more threads than
    lanes that get blocks x groups, a share of them in whole blocks of KB (each task transforms every block's input
    again; the products, blocks of KB output channels, are the same whatever the share, and so are the bits).  A
    layer of fewer blocks of tiles than lanes -- ResNet's last stage, 8 x 512 x 7^2: one block of 32 tiles -- would
    otherwise leave all the work to one thread."""
    lanes = max(1, min(LANES, plan.blocks))
    per = -(-nthreads // (lanes * plan.groups))
    blocks = -(-plan.kchunk // plan.KB)
    return plan.kchunk if per <= 1 else -(-blocks // per) * plan.KB


def _transposes(plan):
    """Whether the weight gradient transposes its blocks' transformed input (GW_TRANSPOSE_MAX, SMALL_GEMM_CORES)."""
    return _blas_small_products() and (plan.Cv // plan.groups) * plan.KB * plan.TB < GW_TRANSPOSE_MAX


@functools.lru_cache(maxsize=1)
def _blas_small_products():
    """Whether SciPy's BLAS runs small untransposed products unpacked (SMALL_GEMM_CORES; True if not OpenBLAS)."""
    core = _threads.scipy_blas_core()
    return core is None or core in SMALL_GEMM_CORES


def forward(x, w, bias, geom, out, nthreads):
    return _run(_plan(geom, "forward", x.itemsize), x, w, bias, out, nthreads)


def grad_input(gy, w, geom, out, nthreads):
    return _run(_plan(geom, "grad_input", gy.itemsize), gy, w, None, out, nthreads)


def grad_weight(x, gy, geom, out, nthreads):
    _run_weight_grad(_plan(geom, "grad_weight", x.itemsize), x, gy, out, nthreads)


# ------------------------------------------------------------------------------------------ small-tile FFT
def fft_plan(geom, op, item):
    """The cheapest small-tile FFT plan for ``op`` on ``geom`` (tiles of 8, 16 or 32 points per transformed axis;
    phase kernels longer than half a tile in blocks), or None if no plan fits the memory bounds."""
    return _fft_plan(geom, op, item, _wk.lanes(item == 4))


@functools.lru_cache(maxsize=256)
def _fft_plan(geom, op, item, lanes):
    # ``lanes`` (the SIMD level's, which _plan reads) is only part of the cache key
    if not _index_safe(geom):
        return None
    best = None
    for L in FFT_LENGTHS:
        plan = _plan(geom, op, item, FFT, L)
        if not _fits(plan, item):
            continue
        c = _plan_cost(plan, item)
        if best is None or c < best[0]:
            best = (c, plan)
    return None if best is None else best[1]


def fft_forward(plan, x, w, bias, out, nthreads):
    return _run(plan, x, w, bias, out, nthreads)


def fft_grad_input(plan, gy, w, out, nthreads):
    return _run(plan, gy, w, None, out, nthreads)


def fft_grad_weight(plan, x, gy, out, nthreads):
    _run_weight_grad(plan, x, gy, out, nthreads)


# ------------------------------------------------------------------------------------------ cost and support
def plan_cost(plan):
    """The estimated seconds of running ``plan`` (see _plan_cost)."""
    return _plan_cost(plan, plan.item)


def plan_terms(plan):
    """The quantities the COST constants multiply (single-threaded seconds = their dot product):

    mac: channel-product multiply-adds on the GEMM path over the GEMM efficiency of its shape
    (d / (d + GEMM_HALF) per channel dimension d); small: multiply-adds of the small-channel loop; wino / fft:
    tile points x channels transformed (F(4, 3); FFT times log2 L); call: GEMM calls; filters: elements of the
    transformed filters (computed per call; for the weight gradient, the accumulators of its lanes); move: elements
    of input and output read or written (twice in batch mode, which rearranges them); fixed: 1.
    """
    Cvg, Kvg = plan.Cv // plan.groups, plan.Kv // plan.groups
    tiles = plan.tiles
    pairs = plan.family == FFT
    small = plan.small and plan.op != "grad_weight"          # the weight gradient always calls BLAS
    macs = plan.NP * (2 if pairs else 1) * tiles * plan.groups * Cvg * Kvg     # complex: 4 products on 2 points
    eff = (Cvg / (Cvg + GEMM_HALF)) * (Kvg / (Kvg + GEMM_HALF))
    chans = plan.Cv + (plan.K if plan.op == "grad_weight" else plan.Kv)
    points = tiles * plan.NP * chans
    blocks = plan.blocks
    kblocks = 1 if plan.op == "grad_weight" else -(-Kvg // plan.KB)
    calls = 0 if small else blocks * plan.NP * (2 if pairs else 1) * plan.groups * kblocks
    elems = prod(a.size for a in plan.axes) * plan.C + prod(a.out for a in plan.axes) * plan.K
    filters = plan.NP * plan.Kv * Cvg * (LANES if plan.op == "grad_weight" else 1)
    return {"mac": 0.0 if small else macs / eff, "small": macs if small else 0.0,
            "wino": 0.0 if pairs else points, "fft": points * np.log2(plan.L) if pairs else 0.0,
            "call": calls, "filters": filters, "move": plan.N * elems * (2 if plan.batch else 1), "fixed": 1.0}


def _plan_cost(plan, item):
    """Seconds: the terms of plan_terms times COST, the parallel part divided over the threads that get
    blocks."""
    from .. import _threads
    c = COST[item == 4]
    terms = plan_terms(plan)
    work = sum(c[k] * v for k, v in terms.items() if k != "fixed")
    threads = max(1, min(_threads.get_num_threads(), plan.blocks))
    return work / (threads * (PARALLEL_EFFICIENCY if threads > 1 else 1.0)) + c["fixed"]


# The kernels index the (virtual) input with 64-bit products of tile positions and strides: geometries whose
# padded extent or stride reach this bound (only contrived ones: a stride of 2**60) are left to toeplitz.
MAX_INDEX = 2 ** 40


def _index_safe(geom):
    return all(lo + n + hi < MAX_INDEX and s * (o + ALPHA) < MAX_INDEX and d * k < MAX_INDEX
               for n, k, s, d, (lo, hi), o in zip(geom.input_size, geom.kernel_size, geom.stride, geom.dilation,
                                                   geom.padding, geom.output_size))


def _fits(plan, item):
    Cvg, Kvg = plan.Cv // plan.groups, plan.Kv // plan.groups
    if plan.NP * plan.Kv * Cvg * item > MAX_U_BYTES:
        return False
    return max(Cvg, Kvg, plan.TB, plan.NP * plan.TB) < INT_MAX


def cost(geom, dtype, op):
    """Seconds for ``op`` with F(4, 3) tiles (see _plan_cost)."""
    item = np.dtype(dtype).itemsize
    return _plan_cost(_plan(geom, op, item), item)


# Cost-model constants (float32 / float64): seconds per unit of each term of plan_terms, fitted by
# ``python bench/bench_winograd.py --calibrate`` (non-negative least squares on the relative error of single-threaded
# CPU times of both tile families on the 12 layers listed there, forward and both gradients, in the units of the
# direct algorithm's model; Xeon (Sapphire Rapids) with AVX-512 OpenBLAS, two runs on the shared machine at load 5,
# rounded between them).  The fit leaves most samples within 0.5x-1.5x; FFT tiles with few tiles and many channels
# are underestimated up to 2x.
GEMM_HALF = 8.0
PARALLEL_EFFICIENCY = 0.9
COST = {
    True: {"mac": 2.5e-11, "small": 1.7e-9, "wino": 2e-10, "fft": 5.5e-10, "call": 3e-7, "filters": 1.4e-9,
           "move": 2e-10, "fixed": 4e-5},
    False: {"mac": 6e-11, "small": 2.8e-9, "wino": 3e-10, "fft": 7.5e-10, "call": 6e-7, "filters": 2.8e-9,
            "move": 3e-10, "fixed": 4e-5},
}


# Error envelope: max |y - y64| / max |y64| on standard-normal data is at most
#     ERROR_SAFETY * ERROR_BASE[transformed axes] * (1 + sqrt(virtual input channels per group / 64))
# in float32 (unit roundoff 2^-24), scaled by the unit roundoff for float64.  Measured (bench/bench_winograd.py
# --accuracy, float32, C = 1 ... 512, kernels 3, 5, 7, 11 stride 4, forward and both gradients): 1-D 3e-7 ... 1.8e-6,
# 2-D 6e-7 ... 8e-6, 3-D 1.1e-6 ... 8.6e-6; every measurement lies below the envelope without the safety factor.
ERROR_BASE = {0: 0.0, 1: 4e-7, 2: 1e-6, 3: 3e-6}
ERROR_SAFETY = 2.0


def error(geom, dtype, op):
    """Relative error bound of ``op`` on ``geom`` (see ERROR_BASE); 0 when no axis is transformed."""
    plan = _plan(geom, op, np.dtype(dtype).itemsize)
    Cvg = plan.Cv // plan.groups
    e = ERROR_SAFETY * ERROR_BASE[sum(plan.act)] * (1.0 + (Cvg / 64) ** 0.5)
    return e * float(np.finfo(dtype).eps / np.finfo(np.float32).eps)


def supports(geom, dtype, op):
    """Every geometry whose transformed filters and virtual channel counts stay within bounds."""
    item = np.dtype(dtype).itemsize
    return _index_safe(geom) and _fits(_plan(geom, op, item), item)


ALGORITHM = register(Algorithm(
    name="winograd",
    forward=forward,
    grad_input=grad_input,
    grad_weight=grad_weight,
    cost=cost,
    description="Winograd F(4,3) per axis (F(4x4,3x3) in 2-D): 36 GEMMs per 4x4 tile; strides and larger "
                "kernels via polyphase 3-tap blocks; reduced accuracy (see error())",
    supports=supports,
    error=error,
    nonfinite="spreads",     # the tile transforms mix every input of a tile into every output of it
    reports_finite=("forward", "grad_input"),
))
