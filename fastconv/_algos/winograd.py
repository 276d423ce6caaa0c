"""The ``winograd`` algorithm: Winograd minimal filtering F(4, 3) per axis (``_kernels/_winograd.pyx``).

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

**Accuracy.**  The transforms are not orthogonal: rounding errors grow with the transform's entries (up to 8 in
A^T, 5 in B^T, 1/24 in G).  ``error_bound`` gives the relative error measured on standard-normal data
(``max|y - y64| / max|y64|``; ``bench/bench_winograd.py --accuracy``), and ``algorithm="auto"`` only takes
winograd where that bound is below the tolerance of the dtype (see :func:`fastconv.set_reduced_accuracy`).

**Blocks and threads.**  Tiles are processed in blocks of ``TB`` (a multiple of the vector width) whose
transformed input and GEMM results stay in the per-core L2 cache; OpenMP runs blocks (forward, input gradient)
or (lane, group, channel chunk) tasks (weight gradient), each calling single-threaded BLAS.  Block sizes do not
depend on the thread count, so results are bitwise identical for any number of threads.
"""
import functools
from dataclasses import dataclass
from math import ceil, prod

import numpy as np

from .. import _kernels
from .._algorithms import Algorithm, register
from .._threads import single_threaded_blas

_wk = _kernels.load("_winograd")

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

# Per-block working set (transformed input + GEMM results of one block) in the 2 MiB per-core L2 cache, and the
# output channels per GEMM block (measured on the 3x3 reference layers: TB 64-96 and KB 64 are the fastest).
BLOCK_BYTES = 1536 * 1024
GEMM_KB = 64
MIN_TB, MAX_TB = 16, 512
# At least this many blocks when the problem has the tiles (independent of the thread count).
MIN_BLOCKS = 8
# Channel products with fewer virtual input channels per group than this use a vector loop instead of BLAS.
SMALL_CHANNELS = 4
# Weight gradient: blocks are dealt to this many lanes (each with its own accumulator, summed in order).
LANES = 4
# Batch mode (images as vector lanes) for at least this many images when rows of tiles span at most this many
# output columns.
BATCH_MIN_IMAGES = 16
BATCH_MAX_ROW = 16
# Largest transformed-filter array (bytes) for which winograd is offered.
MAX_U_BYTES = 512 * 2 ** 20
INT_MAX = 2 ** 31 - 1


@dataclass(frozen=True)
class _Axis:
    """One spatial axis (3-D form) of the reduction to stride-1 3-tap kernels."""
    active: bool        # transformed (alpha = 6) or not (alpha = 1)
    residues: tuple     # input phases r that taps reach
    blocks: int         # 3-tap (or 1-tap) blocks per phase
    J: int              # taps per block: 3 if active, else 1
    fsel: tuple         # forward: per variant (r, b) the tap index at each j (or -1)
    foff: tuple         # forward: per variant, the input offset s*J*b + r - pad
    bsel: tuple         # backward: [r][b][j'] tap index of the flipped phase kernel (or -1)
    stride: int
    pad: int
    size: int           # input length
    out: int            # output length
    k: int              # kernel taps


def _axis(n, k, s, d, pad, out):
    pos = [t * d for t in range(k)]
    residues = tuple(sorted({p % s for p in pos}))
    Q = max(p // s for p in pos) + 1
    active = Q > 1
    J = TAPS if active else 1
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
    def NP(self):
        return ALPHA ** sum(self.act)

    @property
    def tiles(self):
        return (self.Np if self.batch else self.N) * prod(self.T)

    @property
    def mts(self):
        return tuple(MT if a.active else 1 for a in self.axes)

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
    def batch_layout(self):
        """Batch mode: per axis (lo, size) of the rearranged input (positions lo ... lo + size - 1 of the input, zero
        outside it) and of the rearranged output (every position a tile writes)."""
        offs, ooffs = self.in_tables[1], self.out_tables[1]
        lin, lout = [], []
        for a, (ax, mt, T, m0) in enumerate(zip(self.axes, self.mts, self.T, self.m0)):
            s_in = 1 if self.op == "grad_input" else ax.stride
            alpha = ALPHA if ax.active else 1
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


def _tile_block(NP, tiles, chans, item, lanes=MIN_TB):
    """Tiles per block: the working set NP * chans * TB in BLOCK_BYTES, at least MIN_BLOCKS blocks if possible; a
    multiple of ``lanes``."""
    tb = BLOCK_BYTES // max(1, NP * chans * item)
    tb = min(tb, -(-tiles // MIN_BLOCKS))
    tb = max(MIN_TB, min(MAX_TB, tb))
    return -(-tb // lanes) * lanes


def _use_batch(N, T, act, op):
    """Images as vector lanes when there are enough of them and the rows of tiles are short (measured: LeNet's
    10 x 10 outputs, 3 tiles per row, run 3x faster)."""
    return N >= BATCH_MIN_IMAGES and T[2] * (MT if act[2] else 1) <= BATCH_MAX_ROW


@functools.lru_cache(maxsize=256)
def _plan(geom, op, item):
    g3 = geom.as_3d()
    N, C = g3.input_shape[:2]
    K, G = g3.out_channels, g3.groups
    axes = tuple(_axis(n, k, s, d, lo, o) for n, k, s, d, (lo, _), o in
                 zip(g3.input_size, g3.kernel_size, g3.stride, g3.dilation, g3.padding, g3.output_size))
    nvar = prod(len(a.residues) * a.blocks for a in axes)
    nres = prod(len(a.residues) for a in axes)
    nblk = prod(a.blocks for a in axes)
    NP = ALPHA ** sum(a.active for a in axes)
    mts = tuple(MT if a.active else 1 for a in axes)
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
    batch = _use_batch(N, T, tuple(a.active for a in axes), op)
    lanes = _wk.lanes(item == 4)
    Np = -(-N // lanes) * lanes if batch else N
    tiles = Np * prod(T)
    unit = lanes if batch else MIN_TB
    if op == "grad_weight":
        TB = _tile_block(NP, -(-tiles // LANES), Cvg + Kvg, item, unit)
        KB, kchunk = Kvg, Kvg
    else:
        KB = min(Kvg, GEMM_KB)
        TB = _tile_block(NP, tiles, Cv + KB, item, unit)
        kchunk = Kvg
    return _Plan(op, axes, N, C, K, G, T, m0, TB, KB, kchunk, Cvg < SMALL_CHANNELS, batch, Np, Cv, Kv)


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


def _filters(w, plan, dtype, nthreads):
    """Transformed filters U (NP, Kv, Cv / groups) of the plan's op (forward: the kernels over the virtual input
    channels; input gradient: the flipped phase kernels, output channels and input channels exchanged)."""
    G_, K, C = plan.groups, plan.K, plan.C
    Kg, Cg = K // G_, C // G_
    idx = plan.filter_index
    if plan.op == "grad_input":
        wv = _padded_rows(w, K * Cg).reshape(G_, Kg, Cg, -1)[..., idx]                # (G, Kg, Cg, r, b, J)
        wvT = np.ascontiguousarray(wv.transpose(5, 0, 2, 3, 1, 4)).reshape(idx.shape[-1], -1)
    elif idx is None:
        wvT = np.ascontiguousarray(w.reshape(K * Cg, -1).T, dtype=np.float64)
    else:
        wv = _padded_rows(w, K * Cg)[:, idx]                                         # (K Cg, variants, J)
        wvT = np.ascontiguousarray(wv.transpose(2, 0, 1)).reshape(idx.shape[1], -1)
    U = np.empty((plan.NP, wvT.shape[1]), dtype)
    _wk.filters(G, wvT, U, plan.act, nthreads)
    return U.reshape(plan.NP, plan.Kv, -1)


def _weight_from_grad(dU, plan, wshape, nthreads):
    """dU (lanes, NP, K, Cvg) in the transform domain -> the weight gradient (K, Cg, *kernel)."""
    K, Cg = plan.K, plan.C // plan.groups
    J = prod(a.J for a in plan.axes)
    out = np.empty((J, dU.shape[2] * dU.shape[3]))
    _wk.filters_adjoint(G, dU.reshape(dU.shape[0], dU.shape[1], -1), out, plan.act, nthreads)
    out = out.reshape(J, K, Cg, -1)
    jt, vt = plan.tap_map
    return out[jt, :, :, vt].transpose(1, 2, 0).reshape(wshape)         # (taps, K, Cg) -> (K, Cg, *kernel)


# ------------------------------------------------------------------------------------------ the three ops
def _as5(a):
    return a.reshape(a.shape[:2] + (1,) * (5 - a.ndim) + a.shape[2:])


def _to_batch(a5, layout, Np, nthreads):
    """(N, C, D, H, W) -> zero-padded (C, D', H', W', Np): position x of axis i at x - lo_i."""
    out = np.empty((a5.shape[1],) + tuple(n for _, n in layout) + (Np,), a5.dtype)
    _wk.to_batch(a5, out, tuple(lo for lo, _ in layout), nthreads)
    return out


def _from_batch(b, layout, out5, nthreads):
    """Write the rearranged result b (C, D', H', W', Np) back into out5 (N, C, D, H, W)."""
    _wk.from_batch(b, out5, tuple(lo for lo, _ in layout), nthreads)


def _shifted(off, layout):
    return np.ascontiguousarray(off - np.array([lo for lo, _ in layout], np.intp))


def _run(plan, src, U, bias, dst, nthreads):
    """Forward or input gradient: ``src`` (N, C, ...) correlated with ``U`` into ``dst`` (N, K, ...)."""
    in_chan, in_off = plan.in_tables
    out_chan, out_off = plan.out_tables
    s_in, s_out = (plan.strides, (1, 1, 1)) if plan.op == "forward" else ((1, 1, 1), plan.strides)
    b = bias if bias is not None else np.zeros(1, src.dtype)
    src5, dst5 = _as5(src), _as5(dst)
    if plan.batch:
        lin, lout = plan.batch_layout
        src5 = _to_batch(src5, lin, plan.Np, nthreads)
        res = np.zeros((dst5.shape[1],) + tuple(n for _, n in lout) + (plan.Np,), dst.dtype)
        in_off, out_off = _shifted(in_off, lin), _shifted(out_off, lout)
    else:
        res = dst5
    with single_threaded_blas():
        _wk.forward(src5, U, b, bias is not None, res, in_chan, in_off, s_in, out_chan, out_off, s_out, plan.act,
                    plan.T, plan.m0, plan.groups, plan.TB, plan.KB, plan.small, plan.batch, nthreads)
    if plan.batch:
        _from_batch(res, lout, dst5, nthreads)


def forward(x, w, bias, geom, out, nthreads):
    plan = _plan(geom, "forward", x.itemsize)
    _run(plan, x, _filters(w, plan, x.dtype, nthreads), bias, out, nthreads)


def grad_input(gy, w, geom, out, nthreads):
    plan = _plan(geom, "grad_input", gy.itemsize)
    if not plan.batch and any(len(a.residues) < a.stride for a in plan.axes):
        out[...] = 0        # input positions no tap reads get no gradient
    _run(plan, gy, _filters(w, plan, gy.dtype, nthreads), None, out, nthreads)


def grad_weight(x, gy, geom, out, nthreads):
    plan = _plan(geom, "grad_weight", x.itemsize)
    dU = np.zeros((LANES, plan.NP, plan.K, plan.Cv // plan.groups), x.dtype)
    chan, off = plan.in_tables
    x5, gy5 = _as5(x), _as5(gy)
    if plan.batch:
        lin, _ = plan.batch_layout
        x5 = _to_batch(x5, lin, plan.Np, nthreads)
        gy5 = _to_batch(gy5, tuple((0, mt * T) for mt, T in zip(plan.mts, plan.T)), plan.Np, nthreads)
        off = _shifted(off, lin)
    with single_threaded_blas():
        _wk.weight_grad(x5, gy5, dU, chan, off, plan.strides, plan.act, plan.T, plan.groups, plan.TB, plan.KB,
                        plan.kchunk, plan.batch, nthreads)
    out[...] = _weight_from_grad(dU, plan, out.shape, nthreads)


# ------------------------------------------------------------------------------------------ cost and support
def cost(geom, dtype, op):
    """Seconds: GEMM multiply-adds at the measured rate plus the transforms (constants measured on this
    machine class, see COST)."""
    plan = _plan(geom, op, np.dtype(dtype).itemsize)
    from .. import _threads
    c = COST[np.dtype(dtype) == np.float32]
    Cvg, Kvg = plan.Cv // plan.groups, plan.Kv // plan.groups
    tiles = plan.tiles
    macs = plan.NP * tiles * plan.groups * Cvg * Kvg
    eff = (Cvg / (Cvg + c["half"])) * (Kvg / (Kvg + c["half"])) if not plan.small else c["small"]
    MP = MT ** sum(plan.act)
    if op == "grad_weight":
        moved = tiles * (plan.Cv * plan.NP + plan.K * plan.NP)
    else:
        moved = tiles * (plan.Cv * plan.NP + plan.Kv * (plan.NP + MP))
    threads = max(1, min(_threads.get_num_threads(), -(-tiles // plan.TB)))
    work = macs / (c["gemm"] * eff) + moved * c["move"]
    return work / (threads * (c["parallel"] if threads > 1 else 1.0)) + c["fixed"]


# Cost-model constants (float32 / float64), from single-thread measurements on the reference layers of
# bench/bench_winograd.py (Xeon, AVX-512 OpenBLAS): GEMM multiply-adds per second at full GEMM efficiency, the
# channel count at which a GEMM dimension reaches half of it, the efficiency of the small-channel loop, seconds per
# transformed element (gather + transform + scatter), parallel efficiency and a fixed per-call cost.
COST = {
    True: {"gemm": 45e9, "half": 8.0, "small": 0.15, "move": 1.0e-9, "parallel": 0.9, "fixed": 8e-5},
    False: {"gemm": 22e9, "half": 8.0, "small": 0.15, "move": 1.5e-9, "parallel": 0.9, "fixed": 8e-5},
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
    plan = _plan(geom, op, np.dtype(dtype).itemsize)
    Cvg, Kvg = plan.Cv // plan.groups, plan.Kv // plan.groups
    if plan.NP * plan.Kv * Cvg * np.dtype(dtype).itemsize > MAX_U_BYTES:
        return False
    return max(Cvg, Kvg, plan.TB) < INT_MAX


ALGORITHM = register(Algorithm(
    name="winograd",
    forward=forward,
    grad_input=grad_input,
    grad_weight=grad_weight,
    cost=cost,
    description="Winograd F(4,3) per axis (F(4x4,3x3) in 2-D): 36 GEMMs per 4x4 tile; strides and larger "
                "kernels via polyphase 3-tap blocks; reduced accuracy (see error_bound)",
    supports=supports,
    error=error,
))
