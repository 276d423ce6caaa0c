"""The ``fft`` algorithm: real FFTs (``scipy.fft``), the channel sum in the frequency domain, overlap-save tiles.

One machine serves forward, input gradient (= transposed convolution) and weight gradient.

**Strides (polyphase).**  With stride ``s`` the padded input and the dilated kernel are split into their ``s``
phases per axis, ``x_r[m] = x_pad[s m + r]`` and ``w_r[q] = w_dil[s q + r]``; then
``y[o] = sum_r sum_q x_r[o + q] w_r[q]``: a stride-1 correlation whose channels are (channel, phase) pairs.
Only the outputs that are kept are computed, on transforms ``s`` times smaller per axis.  Phases the dilated
kernel never touches (stride and dilation sharing a factor) are dropped, so ``R = prod_d |{t d mod s}|`` phases
remain; without stride ``R = 1`` and this is the plain method.

**Cross-correlation.**  Deep-learning "convolution" is correlation: forward uses ``X . conj(W)``, the input
gradient (the adjoint) ``G . W``, the weight gradient ``X . conj(G)``; flipped kernels (``flip=True``) arrive
already flipped from :mod:`fastconv.conv`, exactly as for the other algorithms.

**Overlap-save tiles.**  Each axis is cut into output blocks of ``B`` positions; a tile is the ``L = B + Q - 1``
inputs they read (``Q`` = phase kernel length), transformed at size ``L`` (a ``next_fast_len``), multiplied and
inverted, and its ``B`` valid outputs are kept.  ``L`` per axis is chosen by the cost model below from a few
candidates (powers of two and the whole axis), so a large image is transformed in cache-sized pieces and memory
(the tile buffers of one chunk plus the kernel spectrum) scales with the tile, not with the image.  The input
gradient uses the same tiles with the window shifted by ``Q - 1`` (full instead of valid convolution); the weight
gradient tiles the output gradient and accumulates ``X . conj(G)`` over batch and tiles in the frequency domain,
with a single inverse transform at the end.

**Data layout and the channel sum.**  Tiles are gathered channel-last, ``(L1, L2, L3, tiles, channels)``, by
``_kernels/_fft.pyx`` (zero padding and phases resolved through index tables), transformed over the spatial axes
with ``scipy.fft`` (``workers`` = fastconv's thread count), and for every frequency the channel sum is one small
complex GEMM over contiguous ``(tiles, channels)`` matrices (BLAS cgemm/zgemm, OpenMP over frequencies; see the
kernel module for the measurements that chose this over a frequency-innermost loop).  The kernel spectrum is
computed once per call and reused for every tile and batch element; its transform is pruned (the ``Q``-long
kernel is transformed along the last axis before zero-padding the others), and the inverse transforms only the
rows that hold valid outputs.  float32 is computed in complex64, float64 in complex128.

**Accuracy.**  On unit-scale data the result is within ``1e-4 max|ref|`` (float32) and ``1e-10 max|ref|``
(float64) of the exact correlation up to 63 x 63 kernels (tests/test_fft.py checks both bounds).
"""
import contextlib
import functools
from dataclasses import dataclass
from math import ceil, log2, prod

import numpy as np
import scipy.fft as sfft

from .. import _kernels
from .._algorithms import Algorithm, register

_fft = _kernels.load("_fft")

# Workspace for the tile buffers of one chunk (tiles are processed in chunks that fit it).
WORKSPACE_BYTES = 24 * 2 ** 20
# OpenBLAS multithreads a GEMM above m n k = 65536 * 4; fgemm then needs BLAS held to one thread.
_BLAS_MT_MACS = 65536 * 4


# --------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class _Axis:
    """One spatial axis of a plan (3-D form: 1-D and 2-D problems have leading singleton axes)."""
    size: int        # input length n
    out: int         # output length O
    pad: int         # low-side zero padding
    stride: int
    taps: tuple      # per kernel tap: (phase index, position q in the phase kernel)
    residues: tuple  # phases kept, s q + r positions with r in residues
    Q: int           # phase kernel length
    span: int        # phase-domain positions covered by tiles (O, or the input's for the adjoint)
    L: int           # transform length
    B: int           # valid outputs per tile


@dataclass(frozen=True)
class _Plan:
    op: str
    nd: int
    axes: tuple
    N: int
    C: int
    K: int
    groups: int
    R: int           # phases kept per channel
    chunk: int       # tiles per chunk
    cost: float      # modelled seconds

    @property
    def L(self):
        return tuple(a.L for a in self.axes)

    @property
    def B(self):
        return tuple(a.B for a in self.axes)

    @property
    def T(self):
        return tuple(-(-a.span // a.B) for a in self.axes)

    @property
    def tiles(self):
        return self.N * prod(self.T)

    @property
    def fft_axes(self):
        return tuple(range(3 - self.nd, 3))

    @property
    def Cs(self):
        """(channel, phase) pairs of one group."""
        return self.C // self.groups * self.R

    @property
    def Kg(self):
        return self.K // self.groups


def _axis_geometry(n, k, s, d, p, out):
    """Phases of one axis: ``t d = s q + r`` for every tap ``t``; returns (taps, residues, Q)."""
    pos = [t * d for t in range(k)]
    residues = tuple(sorted({v % s for v in pos}))
    taps = tuple((residues.index(v % s), v // s) for v in pos)
    return taps, residues, (k - 1) * d // s + 1


def _length_candidates(Q, span):
    """Transform lengths worth trying for one axis: powers of two and 5-smooth sizes above Q, and the whole axis."""
    full = sfft.next_fast_len(span + Q - 1, real=True)
    cands = {full}
    b = 1
    while b + Q - 1 < full:
        for L in (sfft.next_fast_len(b + Q - 1, real=True), 1 << max(0, (b + Q - 2).bit_length())):
            if Q < L < full:
                cands.add(L)
        b *= 2
    return sorted(cands)


def _model(op, N, C, K, G, R, spans, Qs, Ls, itemsize):
    """(seconds, tiles per chunk) for one tile choice; constants in COST (measured, see bench/bench_fft.py)."""
    c = COST[itemsize == 4]
    Bs = [L - Q + 1 for L, Q in zip(Ls, Qs)]
    tiles = N * prod(-(-sp // B) for sp, B in zip(spans, Bs))
    Lt = prod(Ls)
    Ft = Lt // Ls[-1] * (Ls[-1] // 2 + 1)
    CR, Cs, Kg = C * R, C // G * R, K // G
    per_tile = itemsize * (Lt * (CR + K) + 4 * Ft * (CR + K))
    chunk = max(1, min(tiles, WORKSPACE_BYTES // per_tile))
    chunks = -(-tiles // chunk)
    lg = log2(Lt) if Lt > 1 else 1.0
    ffts = tiles * (CR + K) + K * Cs * 0.6            # tile transforms + the (pruned) kernel/weight transform
    macs = Ft * tiles * K * Cs
    calls = Ft * G * chunks
    moved = tiles * Lt * (CR + K)
    seconds = (c["fft"] * ffts * Lt * lg + c["mac"] * macs + c["call"] * calls + c["move"] * moved
               + c["chunk"] * chunks + c["fixed"])
    return seconds, chunk


@functools.lru_cache(maxsize=512)
def _plan(geom, op, itemsize):
    g3 = geom.as_3d()
    N, C = g3.input_shape[:2]
    K = g3.out_channels
    axes0 = []
    for n, k, s, d, (p, _), o in zip(g3.input_size, g3.kernel_size, g3.stride, g3.dilation, g3.padding,
                                     g3.output_size):
        taps, residues, Q = _axis_geometry(n, k, s, d, p, o)
        # the adjoint tiles the phase positions of the input it writes (at most the full-convolution length)
        span = min((n - 1 + p) // s + 1, o + Q - 1) if op == "grad_input" else o
        axes0.append((n, o, p, s, taps, residues, Q, span))
    R = prod(len(a[5]) for a in axes0)
    spans = [a[7] for a in axes0]
    Qs = [a[6] for a in axes0]
    best = None
    for L1 in _length_candidates(Qs[0], spans[0]):
        for L2 in _length_candidates(Qs[1], spans[1]):
            for L3 in _length_candidates(Qs[2], spans[2]):
                sec, chunk = _model(op, N, C, K, geom.groups, R, spans, Qs, (L1, L2, L3), itemsize)
                if best is None or sec < best[0]:
                    best = (sec, chunk, (L1, L2, L3))
    sec, chunk, Ls = best
    axes = tuple(_Axis(n, o, p, s, taps, res, Q, span, L, L - Q + 1)
                 for (n, o, p, s, taps, res, Q, span), L in zip(axes0, Ls))
    return _Plan(op, geom.ndim, axes, N, C, K, geom.groups, R, chunk, sec)


# --------------------------------------------------------------------------------------------- index tables
def _input_table(ax, T, L, phased, shift, valid=None):
    """(T, L, R') int64: source index of tile row ``l`` of tile ``t`` (per phase), -1 for zero.

    ``phased``: ``s (t B + l) + r - pad`` into the input (R' = kept phases); otherwise ``t B + l - shift`` into an
    output-sized array (R' = 1), rows ``l >= valid`` zero.
    """
    t = np.arange(T)[:, None, None]
    l = np.arange(L)[None, :, None]
    if phased:
        r = np.asarray(ax.residues)[None, None, :]
        idx = ax.stride * (t * ax.B + l) + r - ax.pad
        size = ax.size
    else:
        idx = t * ax.B + l - shift + np.zeros((1, 1, 1), np.int64)
        size = ax.out
    bad = (idx < 0) | (idx >= size)
    if valid is not None:
        bad |= l >= valid
    return np.ascontiguousarray(np.where(bad, -1, idx), dtype=np.intp)


def _output_map(ax, T, adjoint):
    """``(map (size, 2), ranges (T, 2))`` for from_tiles: tile row and phase of each output position, and the
    positions each tile owns."""
    if adjoint:
        ip = np.arange(ax.size) + ax.pad
        q, r = ip // ax.stride, ip % ax.stride
        lookup = np.full(ax.stride, -1)
        lookup[list(ax.residues)] = np.arange(len(ax.residues))
        ri = np.where(q < ax.span, lookup[r], -1)
    else:
        q = np.arange(ax.out)
        ri = np.zeros_like(q)
    t = np.minimum(q // ax.B, T - 1)
    l = np.where(ri >= 0, q - t * ax.B, 0)
    tiles = np.arange(T)
    rng = np.stack([np.searchsorted(t, tiles, "left"), np.searchsorted(t, tiles, "right")], axis=1)
    return (np.ascontiguousarray(np.stack([l, ri], axis=1), dtype=np.intp),
            np.ascontiguousarray(rng, dtype=np.intp))


@functools.lru_cache(maxsize=512)
def _tables(plan):
    T = plan.T
    x_tab = tuple(_input_table(a, t, a.L, True, 0) for a, t in zip(plan.axes, T))
    if plan.op == "forward":
        return x_tab, tuple(_output_map(a, t, False) for a, t in zip(plan.axes, T))
    if plan.op == "grad_input":
        gy_tab = tuple(_input_table(a, t, a.L, False, a.Q - 1) for a, t in zip(plan.axes, T))
        return gy_tab, tuple(_output_map(a, t, True) for a, t in zip(plan.axes, T))
    gy_tab = tuple(_input_table(a, t, a.B, False, 0, valid=a.B) for a, t in zip(plan.axes, T))
    return x_tab, gy_tab


def _tap_index(plan):
    """Index of every kernel tap in a channel-last phase kernel (Q1, Q2, Q3, K, Cg, R1, R2, R3).

    ``array[index]`` has shape (k1, k2, k3, K, Cg): used to scatter the kernel into its phases and to gather the
    weight gradient back.
    """
    qs, rs = [], []
    for d, ax in enumerate(plan.axes):
        shape = [1, 1, 1]
        shape[d] = len(ax.taps)
        rs.append(np.array([t[0] for t in ax.taps]).reshape(shape))
        qs.append(np.array([t[1] for t in ax.taps]).reshape(shape))
    return tuple(qs) + (slice(None), slice(None)) + tuple(rs)


def _phase_shape(plan):
    return tuple(a.Q for a in plan.axes) + (plan.K, plan.C // plan.groups) + tuple(len(a.residues) for a in plan.axes)


# --------------------------------------------------------------------------------------------- transforms
def _rfft(a, plan, nthreads):
    """Spectrum of a channel-last real array zero-padded to the plan's lengths, as (F, rest) complex.

    Pruned: the last axis is transformed first on the rows that exist, then the others with zero padding.
    """
    s = sfft.rfft(a, n=plan.L[2], axis=2, workers=nthreads)
    for ax in plan.fft_axes[:-1][::-1]:
        s = sfft.fft(s, n=plan.L[ax], axis=ax, workers=nthreads, overwrite_x=True)
    return s.reshape(-1, prod(s.shape[3:]))


def _irfft(spec, plan, lead, off, keep, nthreads):
    """Inverse of a (F, rest) spectrum reshaped to (L1, L2, F3, *lead); only rows ``off .. off + keep`` of every
    axis are transformed further and returned (a strided view)."""
    L1, L2, L3 = plan.L
    s = spec.reshape((L1, L2, L3 // 2 + 1) + tuple(lead))
    for ax in plan.fft_axes[:-1]:
        s = sfft.ifft(s, axis=ax, workers=nthreads, overwrite_x=True)
        s = s[(slice(None),) * ax + (slice(off[ax], off[ax] + keep[ax]),)]
    y = sfft.irfft(s, n=L3, axis=2, workers=nthreads)
    return y[:, :, off[2]:off[2] + keep[2]]


def _kernel_spectrum(w, plan, nthreads):
    """(F, K * Cs) spectrum of the phase-split kernel, channel-last."""
    wcl = np.zeros(_phase_shape(plan), w.dtype)
    w5 = w.reshape(w.shape[:2] + (1,) * (5 - w.ndim) + w.shape[2:])
    wcl[_tap_index(plan)] = w5.transpose(2, 3, 4, 0, 1)
    wcl = wcl.reshape(wcl.shape[:3] + (plan.K, plan.Cs))
    return _rfft(wcl, plan, nthreads)


_blas_controller = None


def _blas_single(m, n, k, nthreads):
    """Hold BLAS to one thread while fgemm's OpenMP threads call it with GEMMs large enough to be threaded."""
    global _blas_controller
    if nthreads <= 1 or m * n * k < _BLAS_MT_MACS:
        return contextlib.nullcontext()
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController
        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


def _fgemm(a, b, c, plan, ops, m, n, k, lda, ldb, ldc, offs, accumulate, nthreads):
    fl = [z.view(z.real.dtype) for z in (a, b, c)]
    with _blas_single(m, n, k, nthreads):
        _fft.fgemm(fl[0], fl[1], fl[2], plan.groups, ops[0], ops[1], m, n, k, lda, ldb, ldc, *offs,
                   accumulate, nthreads)


def _as5(a):
    return a.reshape(a.shape[:2] + (1,) * (5 - a.ndim) + a.shape[2:])


def _chunks(plan):
    for m0 in range(0, plan.tiles, plan.chunk):
        yield m0, min(plan.chunk, plan.tiles - m0)


# --------------------------------------------------------------------------------------------- the three ops
def forward(x, w, bias, geom, out, nthreads):
    plan = _plan(geom, "forward", x.itemsize)
    tabs, maps = _tables(plan)
    Cs, Kg, CR = plan.Cs, plan.Kg, plan.C * plan.R
    W = _kernel_spectrum(w, plan, nthreads)
    b = bias if bias is not None else np.zeros(1, x.dtype)
    x5, out5 = _as5(x), _as5(out)
    for m0, M in _chunks(plan):
        buf = np.empty(plan.L + (M, CR), x.dtype)
        _fft.to_tiles(x5, buf, *tabs, m0, *plan.T, nthreads)
        X = _rfft(buf, plan, nthreads)
        Y = np.empty((X.shape[0], M * plan.K), X.dtype)
        # per group, column-major Y^T (Kg x M) = conj(W') (Kg x Cs) X^T (Cs x M)
        _fgemm(W, X, Y, plan, "CN", Kg, M, Cs, Cs, CR, plan.K, (Kg * Cs, Cs, Kg), False, nthreads)
        y = _irfft(Y, plan, (M, plan.K), (0, 0, 0), plan.B, nthreads)
        _fft.from_tiles(y, out5, *(mp for mp, _ in maps), *(rg for _, rg in maps), m0, M, 1, 1, 1, b,
                        bias is not None, nthreads)


def grad_input(gy, w, geom, out, nthreads):
    plan = _plan(geom, "grad_input", gy.itemsize)
    tabs, maps = _tables(plan)
    Cs, Kg, CR = plan.Cs, plan.Kg, plan.C * plan.R
    W = _kernel_spectrum(w, plan, nthreads)
    gy5, out5 = _as5(gy), _as5(out)
    off = tuple(a.Q - 1 for a in plan.axes)
    R = tuple(len(a.residues) for a in plan.axes)
    for m0, M in _chunks(plan):
        buf = np.empty(plan.L + (M, plan.K), gy.dtype)
        _fft.to_tiles(gy5, buf, *tabs, m0, *plan.T, nthreads)
        Gs = _rfft(buf, plan, nthreads)
        Y = np.empty((Gs.shape[0], M * CR), Gs.dtype)
        # per group, column-major Y^T (Cs x M) = W'^T (Cs x Kg) G^T (Kg x M)
        _fgemm(W, Gs, Y, plan, "NN", Cs, M, Kg, Cs, plan.K, CR, (Kg * Cs, Kg, Cs), False, nthreads)
        y = _irfft(Y, plan, (M, CR), off, plan.B, nthreads)
        _fft.from_tiles(y, out5, *(mp for mp, _ in maps), *(rg for _, rg in maps), m0, M, *R,
                        np.zeros(1, gy.dtype), False, nthreads)


def grad_weight(x, gy, geom, out, nthreads):
    plan = _plan(geom, "grad_weight", x.itemsize)
    x_tab, gy_tab = _tables(plan)
    Cs, Kg, CR = plan.Cs, plan.Kg, plan.C * plan.R
    F = prod(plan.L[:2]) * (plan.L[2] // 2 + 1)
    acc = np.zeros((F, plan.K * Cs), np.result_type(x.dtype, np.complex64))
    x5, gy5 = _as5(x), _as5(gy)
    for m0, M in _chunks(plan):
        xb = np.empty(plan.L + (M, CR), x.dtype)
        _fft.to_tiles(x5, xb, *x_tab, m0, *plan.T, nthreads)
        gb = np.empty(plan.B + (M, plan.K), x.dtype)
        _fft.to_tiles(gy5, gb, *gy_tab, m0, *plan.T, nthreads)
        X = _rfft(xb, plan, nthreads)
        Gs = _rfft(gb, plan, nthreads)
        # per group, column-major acc_f^T (Cs x Kg) += X^T (Cs x M) conj(G) (M x Kg)
        _fgemm(X, Gs, acc, plan, "NC", Cs, Kg, M, CR, plan.K, Cs, (Cs, Kg, Kg * Cs), True, nthreads)
    z = _irfft(acc, plan, (plan.K, Cs), (0, 0, 0), tuple(a.Q for a in plan.axes), nthreads)
    z = np.ascontiguousarray(z).reshape(_phase_shape(plan))
    out[...] = z[_tap_index(plan)].transpose(3, 4, 0, 1, 2).reshape(out.shape)


def cost(geom, dtype, op):
    """Seconds, from the transform sizes and the channel product of the chosen tiling (constants in COST)."""
    return _plan(geom, op, np.dtype(dtype).itemsize).cost


# Cost-model constants (seconds), measured with bench/bench_fft.py --calibrate on the 2-core reference machine,
# 2 threads, (float64, float32): per transformed element and log2(size), per complex multiply-add of the
# channel sum, per GEMM call, per element gathered/scattered, per chunk, per call.
COST = {
    False: {"fft": 1.2e-9, "mac": 1.0e-10, "call": 2e-7, "move": 1.0e-9, "chunk": 2e-4, "fixed": 2e-4},
    True: {"fft": 0.8e-9, "mac": 0.5e-10, "call": 2e-7, "move": 0.7e-9, "chunk": 2e-4, "fixed": 2e-4},
}

ALGORITHM = register(Algorithm(
    name="fft",
    forward=forward,
    grad_input=grad_input,
    grad_weight=grad_weight,
    cost=cost,
    description="real FFTs (scipy.fft), frequency-domain channel sum (per-frequency GEMM), overlap-save tiles",
))
