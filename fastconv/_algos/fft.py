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
inputs they read (``Q`` = phase kernel length), transformed at size ``L``, multiplied and inverted, and its ``B``
valid outputs are kept.  ``L`` per axis is chosen by the cost model from a few candidates (powers of two,
``next_fast_len`` sizes and the whole axis, at most MAX_TILE_ELEMENTS per tile), so memory -- the tile buffers
of one chunk plus the kernel spectrum -- scales with the tile, not with the image.  The input gradient uses the
same tiles with the window shifted by ``Q - 1`` (full instead of valid convolution); the weight gradient tiles the
output gradient and accumulates ``X . conj(G)`` over batch and tiles in the frequency domain, with a single
inverse transform at the end.

**Data path.**  ``_kernels/_fft.pyx`` gathers the tiles of a chunk into a ``(tiles, channels, L1, L2, L3)``
buffer, resolving zero padding and phases through index tables (the padded or phase-split input never exists);
``scipy.fft`` transforms the spatial axes; the channel sum runs per frequency; the inverse transform is pruned to
the rows that hold valid outputs and the kernel writes them (plus bias, or back into phases) to the result.  The
kernel spectrum is computed once per call, its transform pruned (the ``Q``-long kernel is transformed along the
last axis before the others are zero-padded), and reused for every tile and batch element.  float32 is computed
in complex64, float64 in complex128.

**Channel sum: two paths, measured.**  A streaming loop over the spectra as scipy returns them (frequencies as
vector lanes), or a blocked transpose to frequency-major spectra and one BLAS GEMM per frequency (BLAS held to
one thread meanwhile).  The loop wins up to some 64 channels with few tiles; the GEMM for larger channel products
(measured on 8x64x56x56 3x3: 2.3x faster; 1x16x128x128 9x9: 6x slower); the cost model picks per call.

**Threads.**  Chunks of tiles are dealt round-robin to LANES lanes; lanes run on worker threads, every chunk
single-threaded (scipy.fft and the kernels release the GIL), so a call has one join instead of a barrier per
step -- on a shared, busy machine each OpenMP barrier or threaded transform cost milliseconds.  With one lane the
chunk's steps use the threads instead, each step only as many as its size warrants.  The lane structure does not
depend on the thread count and the weight gradient sums the lanes in order: results are bitwise identical for any
number of threads.

**Accuracy.**  On unit-scale data the result is within ``1e-4 max|ref|`` (float32) and ``1e-10 max|ref|``
(float64) of the exact correlation up to 63 x 63 kernels (tests/test_fft.py checks both bounds).

**Non-finite values spread** (``nonfinite="spreads"``).  A transform mixes every input of a tile into every
frequency: one inf or NaN makes NaN every output computed through a transform that holds it -- every output of
its tile (forward and input gradient) for an input value, every output of the channels it feeds for a weight
value, and the weight gradient of every channel pair it meets (accumulated in the frequency domain).  Products that overflow give NaN where the direct sum
gives inf.  Every output the contract (:mod:`fastconv._algorithms`) calls non-finite is non-finite, often NaN
instead of +-inf.  ``algorithm="auto"`` therefore runs the op again with an exact algorithm when an fft result
holds an inf or NaN (``PreparedConv._run``).
"""
import contextlib
import functools
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from math import prod

import numpy as np
import scipy.fft as sfft

from .. import _kernels
from .._algorithms import Algorithm, register
from .._kernels import as_5d
from .._threads import single_threaded_blas

_fft = _kernels.module("_fft")

# Workspace for the tile buffers of one chunk (tiles are processed in chunks that fit it).
WORKSPACE_BYTES = 16 * 2 ** 20
# Chunks are dealt round-robin to this many lanes; lanes run concurrently (one thread each), chunks of a lane in
# order.  A fixed number, so the work (and the weight gradient's summation order) never depends on the thread count.
LANES = 4
# Largest tile considered (elements).  Alone, pocketfft's time per element is flat up to about 1500^2; inside a
# convolution on a shared machine tiles whose spectra outgrow the caches lose: 2048^2 image, 15x15 / 31x31
# kernels, 2 threads, 1080^2 tiles took 1.3-1.4x as long as 270x540 or 288x576 ones.  Memory is bounded by the
# tile, not the image.
MAX_TILE_ELEMENTS = 1 << 19
# Largest kernel spectrum (K x C/groups x phases x frequencies; the weight gradient keeps one per lane) when some
# tiling allows it: with many channels the tiles shrink instead of the memory growing.
MAX_SPECTRUM_BYTES = 256 * 2 ** 20
# The GEMM channel sum keeps at least this many tiles per chunk (the GEMMs' n dimension) when there are as many.
GEMM_MIN_TILES = 16
# A step (transform, gather, product...) gets one more thread per this many elements or multiply-adds: waking
# threads for less costs more than it saves, on a busy machine milliseconds.
MIN_WORK_PER_THREAD = 1 << 17


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
    q0: int = 0      # first phase-domain position covered (the adjoint's: below it lies only padding)


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
    gemm: bool       # channel sum by transpose + per-frequency GEMM (else the streaming loop)
    cost: float      # modelled seconds
    terms: tuple     # (name, value) pairs of the cost model (see _terms)

    @functools.cached_property
    def L(self):
        return tuple(a.L for a in self.axes)

    @functools.cached_property
    def B(self):
        return tuple(a.B for a in self.axes)

    @functools.cached_property
    def T(self):
        return tuple(-(-a.span // a.B) for a in self.axes)

    @functools.cached_property
    def tiles(self):
        return self.N * prod(self.T)

    @functools.cached_property
    def F(self):
        """Frequencies of one tile's half spectrum."""
        return self.L[0] * self.L[1] * (self.L[2] // 2 + 1)

    @functools.cached_property
    def spatial_axes(self):
        """Axes of the tile arrays (tiles, channels, L1, L2, L3) that are transformed."""
        return tuple(range(5 - self.nd, 5))

    @functools.cached_property
    def Cs(self):
        """(channel, phase) pairs of one group."""
        return self.C // self.groups * self.R

    @functools.cached_property
    def Kg(self):
        return self.K // self.groups


def _axis_geometry(k, s, d):
    """Phases of one axis: ``t d = s q + r`` for every tap ``t``; returns (taps, residues, Q)."""
    pos = [t * d for t in range(k)]
    residues = tuple(sorted({v % s for v in pos}))
    taps = tuple((residues.index(v % s), v // s) for v in pos)
    return taps, residues, (k - 1) * d // s + 1


def _length_candidates(Q, span):
    """Transform lengths worth trying for one axis: ``next_fast_len(B + Q - 1)`` for blocks of ``B`` = 1, 2, 4, ...
    outputs, and the whole axis.  (The time per element hardly depends on the length, so one per octave will do.)"""
    full = sfft.next_fast_len(span + Q - 1, real=True)
    cands = {full}
    b = 1
    while b + Q - 1 < full:
        cands.add(sfft.next_fast_len(b + Q - 1, real=True))
        b *= 2
    return sorted(L for L in cands if L <= full)


def _terms(N, C, K, G, R, spans, Qs, Ls, out_elems, itemsize, gemm):
    """(model terms, tiles per chunk) of one tiling: the quantities the COST constants multiply.

    fft: transformed elements, and lines: 1-D transforms (their fixed cost dominates short ones), over the tile
    transforms (inputs and outputs of every tile) and the pruned kernel (or weight-gradient) transform.  No log
    factor: measured, pocketfft's time per element of a 2-D real transform pair is flat (8-12 ns in float32)
    from 64^2 to 1500^2 -- the passes over memory dominate the arithmetic.  loop / gemm: complex multiply-adds of
    the channel sum on that path; call: GEMM calls; move: elements gathered, scattered (and transposed on the
    GEMM path); chunk: chunks; fixed: 1.
    """
    Bs = [L - Q + 1 for L, Q in zip(Ls, Qs)]
    tiles = N * prod(-(-sp // B) for sp, B in zip(spans, Bs))
    Lt = prod(Ls)
    Ft = Lt // Ls[-1] * (Ls[-1] // 2 + 1)
    CR, Cs = C * R, C // G * R
    per_tile = itemsize * (Lt * (CR + K) + 6 * Ft * (CR + K))
    chunks = max(-(-tiles // max(1, WORKSPACE_BYTES // per_tile)), min(tiles, LANES))
    chunks = -(-chunks // LANES) * LANES if tiles >= LANES else chunks
    if gemm:   # keep the per-frequency GEMMs at least GEMM_MIN_TILES wide
        chunks = max(1, min(chunks, tiles // GEMM_MIN_TILES))
    chunk = -(-tiles // chunks)
    chunks = -(-tiles // chunk)
    transforms = tiles * (CR + K) + 0.6 * K * Cs
    macs = Ft * tiles * K * Cs
    moved = tiles * Lt * CR + out_elems
    if gemm:
        moved += 2 * Ft * (tiles * (CR + K) + K * Cs)
    terms = dict(fft=transforms * Lt,
                 lines=transforms * sum(Lt // L for L in Ls if L > 1),
                 loop=0.0 if gemm else macs, gemm=macs if gemm else 0.0, call=Ft * G * chunks if gemm else 0,
                 move=moved, chunk=chunks, fixed=1)
    return terms, chunk


def _seconds(terms, itemsize):
    c = COST[itemsize == 4]
    return sum(c[k] * v for k, v in terms.items())


@functools.lru_cache(maxsize=512)
def _plan(geom, op, itemsize):
    g3 = geom.as_3d()
    N, C = g3.input_shape[:2]
    K = g3.out_channels
    axes0 = []
    for n, k, s, d, (p, _), o in zip(g3.input_size, g3.kernel_size, g3.stride, g3.dilation, g3.padding,
                                     g3.output_size):
        taps, residues, Q = _axis_geometry(k, s, d)
        # the adjoint tiles the phase positions of the input it writes, from the first one past the low padding
        # to the last (or the end of the full convolution): tiles over the padding would compute nothing kept
        q0 = min(p // s, o + Q - 2) if op == "grad_input" else 0
        span = max(1, min((n - 1 + p) // s + 1, o + Q - 1) - q0) if op == "grad_input" else o
        axes0.append((n, o, p, s, taps, residues, Q, span, q0))
    R = prod(len(a[5]) for a in axes0)
    spans = [a[7] for a in axes0]
    Qs = [a[6] for a in axes0]
    out_elems = prod({"forward": g3.output_shape, "grad_input": g3.input_shape,
                      "grad_weight": g3.output_shape}[op])
    # the singleton axes that make 1-D and 2-D problems 3-D are never transformed
    cands = [[1] if d < 3 - geom.ndim else _length_candidates(Qs[d], spans[d]) for d in range(3)]
    copies = LANES + 1 if op == "grad_weight" else 1
    spectrum = copies * K * (C // geom.groups) * R * 2 * itemsize       # bytes per frequency
    tilings = [Ls for Ls in itertools.product(*cands) if prod(Ls) <= MAX_TILE_ELEMENTS
               and spectrum * prod(Ls) // Ls[-1] * (Ls[-1] // 2 + 1) <= MAX_SPECTRUM_BYTES]
    best = None
    for Ls in tilings or [tuple(c[0] for c in cands)]:
        for gemm in (False, True):
            terms, chunk = _terms(N, C, K, geom.groups, R, spans, Qs, Ls, out_elems, itemsize, gemm)
            sec = _seconds(terms, itemsize)
            if best is None or sec < best[0]:
                best = (sec, chunk, gemm, Ls, terms)
    sec, chunk, gemm, Ls, terms = best
    axes = tuple(_Axis(n, o, p, s, taps, res, Q, span, L, L - Q + 1, q0)
                 for (n, o, p, s, taps, res, Q, span, q0), L in zip(axes0, Ls))
    return _Plan(op, geom.ndim, axes, N, C, K, geom.groups, R, chunk, gemm, sec, tuple(sorted(terms.items())))


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
        q = q - ax.q0
        ri = np.where((q >= 0) & (q < ax.span), lookup[r], -1)
    else:
        q = np.arange(ax.out)
        ri = np.zeros_like(q)
    t = np.clip(q // ax.B, 0, T - 1)
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
        gy_tab = tuple(_input_table(a, t, a.L, False, a.Q - 1 - a.q0) for a, t in zip(plan.axes, T))
        return gy_tab, tuple(_output_map(a, t, True) for a, t in zip(plan.axes, T))
    gy_tab = tuple(_input_table(a, t, a.B, False, 0, valid=a.B) for a, t in zip(plan.axes, T))
    return x_tab, gy_tab


def _tap_index(plan):
    """Index of every kernel tap in a phase-split kernel (K, Cg, R1, R2, R3, Q1, Q2, Q3).

    ``array[index]`` has shape (K, Cg, k1, k2, k3): used to scatter the kernel into its phases and to gather the
    weight gradient back.
    """
    rs, qs = [], []
    for d, ax in enumerate(plan.axes):
        shape = [1, 1, 1]
        shape[d] = len(ax.taps)
        rs.append(np.array([t[0] for t in ax.taps]).reshape(shape))
        qs.append(np.array([t[1] for t in ax.taps]).reshape(shape))
    return (slice(None), slice(None)) + tuple(rs) + tuple(qs)


def _phase_shape(plan):
    return ((plan.K, plan.C // plan.groups) + tuple(len(a.residues) for a in plan.axes)
            + tuple(a.Q for a in plan.axes))


# --------------------------------------------------------------------------------------------- transforms
def _nt(work, nthreads):
    """Threads for a step of ``work`` elements or multiply-adds."""
    return max(1, min(nthreads, int(work) // MIN_WORK_PER_THREAD))


def _rfft(a, plan, nthreads):
    """Spectra of ``a (rows..., l1, l2, l3)`` zero-padded to the plan's lengths, as (rows, F) complex.

    Pruned: the last axis is transformed first on the rows that exist, then the others with zero padding.
    """
    nthreads = _nt(a.shape[0] * a.shape[1] * plan.F, nthreads)
    s = sfft.rfft(a, n=plan.L[2], axis=4, workers=nthreads)
    for ax in plan.spatial_axes[:-1][::-1]:
        s = sfft.fft(s, n=plan.L[ax - 2], axis=ax, workers=nthreads, overwrite_x=True)
    return s.reshape(a.shape[0] * a.shape[1], plan.F)


def _irfft(spec, plan, lead, off, keep, nthreads):
    """Inverse of (rows, F) spectra as ``lead + (L1, L2, L3)``; only rows ``off .. off + keep`` of every axis
    are transformed further and returned (a strided view)."""
    L1, L2, L3 = plan.L
    nthreads = _nt(spec.size, nthreads)
    s = spec.reshape(tuple(lead) + (L1, L2, L3 // 2 + 1))
    for ax in plan.spatial_axes[:-1]:
        d = ax - 2
        s = sfft.ifft(s, axis=ax, workers=nthreads, overwrite_x=True)
        s = s[(slice(None),) * ax + (slice(off[d], off[d] + keep[d]),)]
    y = sfft.irfft(s, n=L3, axis=4, workers=nthreads, overwrite_x=True)
    return y[..., off[2]:off[2] + keep[2]]


class _Workspace(dict):
    """Buffers one lane reuses from chunk to chunk (fresh large arrays would be page-faulted every time)."""

    def get(self, name, shape, dtype):
        size = prod(shape)
        buf = dict.get(self, name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self[name] = np.empty(size, dtype)
        return buf[:size].reshape(shape)


def _transpose(a, nthreads, ws=None, name="t"):
    """(R, C) complex -> (C, R) complex, contiguous (in ``ws[name]`` when a workspace is given)."""
    shape = (a.shape[1], a.shape[0])
    out = ws.get(name, shape, a.dtype) if ws is not None else np.empty(shape, a.dtype)
    _fft.ctranspose(a.view(a.real.dtype), out.view(out.real.dtype), _nt(a.size, nthreads))
    return out


def _kernel_spectrum(w, plan, nthreads):
    """Spectrum of the phase-split kernel: rows (K * Cs, F), or (F, K * Cs) for the GEMM channel sum."""
    wph = np.zeros(_phase_shape(plan), w.dtype)
    wph[_tap_index(plan)] = w.reshape(w.shape[:2] + (1,) * (5 - w.ndim) + w.shape[2:])
    spec = _rfft(wph.reshape((plan.K, plan.Cs) + wph.shape[-3:]), plan, nthreads)
    return _transpose(spec, nthreads) if plan.gemm else spec


def _blas_single(plan):
    """Hold BLAS to one thread while the GEMM channel sum runs: its calls are small and come from our own threads
    (measured: letting OpenBLAS thread them, or two lanes call a threaded BLAS at once, is several times slower).
    The reference-counted limit shared with the toeplitz algorithm, so overlapping calls restore it correctly."""
    return single_threaded_blas() if plan.gemm else contextlib.nullcontext()


def _fl(z):
    return z.view(z.real.dtype)


def _channel_sum(plan, op, a, b, M, nthreads, ws, acc=None):
    """The per-frequency channel sum of one chunk of ``M`` tiles.

    forward ``Y[m, k] = sum_c X[m, c] conj(W[k, c])`` (a = X, b = W); grad_input ``Y[m, c] = sum_k G[m, k]
    W[k, c]`` (a = G, b = W); grad_weight ``acc[k, c] += sum_m conj(G[m, k]) X[m, c]`` (a = G, b = X).
    Spectra are (rows, F) except ``W`` and ``acc``, which are (F, rows) on the GEMM path.  Returns Y as rows.
    """
    G, Cs, Kg, K, CR = plan.groups, plan.Cs, plan.Kg, plan.K, plan.C * plan.R
    threads = _nt(M * K * Cs * plan.F, nthreads)
    # one product per output and output row m*K + g == input row m*CR + g: multiply in place (halves the memory
    # the chunk streams through between the transforms)
    in_place = Cs == 1 and Kg == 1 and CR == K
    if not plan.gemm:
        if op == "forward":
            y = a if in_place else ws.get("y", (M * K, plan.F), a.dtype)
            _fft.cmac(_fl(a), _fl(b), _fl(y), G=G, I=M, J=Cs, L=Kg, a_g=Cs, a_i=CR, a_j=1, b_g=Kg * Cs, b_j=1,
                      b_l=Cs, y_g=Kg, y_i=K, y_l=1, conj_a=False, conj_b=True, accumulate=False, nthreads=threads)
        elif op == "grad_input":
            y = a if in_place else ws.get("y", (M * CR, plan.F), a.dtype)
            _fft.cmac(_fl(a), _fl(b), _fl(y), G=G, I=M, J=Kg, L=Cs, a_g=Kg, a_i=K, a_j=1, b_g=Kg * Cs, b_j=Cs,
                      b_l=1, y_g=Cs, y_i=CR, y_l=1, conj_a=False, conj_b=False, accumulate=False, nthreads=threads)
        else:
            y = acc
            _fft.cmac(_fl(a), _fl(b), _fl(y), G=G, I=Kg, J=M, L=Cs, a_g=Kg, a_i=1, a_j=K, b_g=Cs, b_j=CR,
                      b_l=1, y_g=Kg * Cs, y_i=Cs, y_l=1, conj_a=True, conj_b=False, accumulate=True, nthreads=threads)
        return y
    # GEMM path: per frequency and group, column-major BLAS calls on frequency-major spectra
    at = _transpose(a, nthreads, ws, "at")
    if op == "forward":        # Y^T (Kg x M) = conj(W') (Kg x Cs) X^T (Cs x M)
        y = ws.get("yt", (plan.F, M * K), a.dtype)
        args = (b, at, y, "C", "N", Kg, M, Cs, Cs, CR, K, Kg * Cs, Cs, Kg, False)
    elif op == "grad_input":   # Y^T (Cs x M) = W'^T (Cs x Kg) G^T (Kg x M)
        y = ws.get("yt", (plan.F, M * CR), a.dtype)
        args = (b, at, y, "N", "N", Cs, M, Kg, Cs, K, CR, Kg * Cs, Kg, Cs, False)
    else:                      # acc^T (Cs x Kg) += X^T (Cs x M) conj(G) (M x Kg)
        y = acc
        args = (_transpose(b, nthreads, ws, "bt"), at, y, "N", "C", Cs, Kg, M, CR, K, Cs, Cs, Kg, Kg * Cs, True)
    A, B, Y, ta, tb, m, n, k, lda, ldb, ldc, oa, ob, oc, accumulate = args
    _fft.fgemm(_fl(A), _fl(B), _fl(Y), G=G, transa=ta, transb=tb, m=m, n=n, k=k, lda=lda, ldb=ldb, ldc=ldc,
               a_g=oa, b_g=ob, c_g=oc, accumulate=accumulate, nthreads=threads)
    return y if op == "grad_weight" else _transpose(y, nthreads, ws, "y")


def _lanes(plan):
    """Chunks ``(m0, M)`` dealt round-robin to at most LANES lanes."""
    chunks = [(m0, min(plan.chunk, plan.tiles - m0)) for m0 in range(0, plan.tiles, plan.chunk)]
    P = min(LANES, len(chunks))
    return [chunks[i::P] for i in range(P)]


@functools.lru_cache(maxsize=8)
def _executor(n):
    return ThreadPoolExecutor(n, thread_name_prefix="fastconv-fft")


def _run(plan, work, nthreads):
    """Call ``work(lane, m0, M, threads, workspace)`` for every chunk.

    With several lanes and threads, the calling thread and ``nthreads - 1`` pool threads take whole lanes in turn
    and run their chunks single-threaded (transforms and kernels release the GIL): one hand-off per extra thread
    instead of a barrier per step, which is what keeps two threads useful on a busy machine.  With one lane the
    chunk's steps use all threads.
    """
    lanes = _lanes(plan)

    def run_lane(i, threads):
        ws = _Workspace()
        for m0, M in lanes[i]:
            work(i, m0, M, threads, ws)

    if nthreads <= 1 or len(lanes) == 1:
        for i in range(len(lanes)):
            run_lane(i, nthreads)
        return
    order = iter(range(len(lanes)))
    lock = threading.Lock()

    def drain():
        while True:
            with lock:
                i = next(order, None)
            if i is None:
                return
            run_lane(i, 1)

    helpers = min(nthreads, len(lanes)) - 1
    futures = [_executor(helpers).submit(drain) for _ in range(helpers)]
    try:
        drain()
    finally:
        for f in futures:      # never return (or raise) while a helper still writes the output
            f.result()


def _gather(src, plan, tabs, m0, M, channels, lengths, nthreads, ws, name="tiles"):
    """Spectra (M * channels, F) of the tiles m0 .. m0 + M - 1 of ``src``."""
    buf = ws.get(name, (M, channels) + tuple(lengths), src.dtype)
    T1, T2, T3 = plan.T
    _fft.to_tiles(as_5d(src), buf, *tabs, m0=m0, T1=T1, T2=T2, T3=T3, nthreads=_nt(buf.size, nthreads))
    return _rfft(buf, plan, nthreads)


def _scatter(y, out, maps, m0, R, bias, nthreads):
    if y.strides[-1] != y.itemsize:   # from_tiles reads rows through a pointer
        y = np.ascontiguousarray(y)
    b = bias if bias is not None else np.zeros(1, out.dtype)
    _fft.from_tiles(y, as_5d(out), *(mp for mp, _ in maps), *(rg for _, rg in maps), b, m0=m0, R1=R[0], R2=R[1],
                    R3=R[2], has_bias=bias is not None, nthreads=_nt(y.size, nthreads))


# --------------------------------------------------------------------------------------------- the three ops
def forward(x, w, bias, geom, out, nthreads):
    plan = _plan(geom, "forward", x.itemsize)
    tabs, maps = _tables(plan)
    W = _kernel_spectrum(w, plan, nthreads)

    def work(lane, m0, M, threads, ws):
        X = _gather(x, plan, tabs, m0, M, plan.C * plan.R, plan.L, threads, ws)
        Y = _channel_sum(plan, "forward", X, W, M, threads, ws)
        y = _irfft(Y, plan, (M, plan.K), (0, 0, 0), plan.B, threads)
        _scatter(y, out, maps, m0, (1, 1, 1), bias, threads)

    with _blas_single(plan):
        _run(plan, work, nthreads)


def grad_input(gy, w, geom, out, nthreads):
    plan = _plan(geom, "grad_input", gy.itemsize)
    tabs, maps = _tables(plan)
    W = _kernel_spectrum(w, plan, nthreads)
    off = tuple(a.Q - 1 for a in plan.axes)
    R = tuple(len(a.residues) for a in plan.axes)

    def work(lane, m0, M, threads, ws):
        Gs = _gather(gy, plan, tabs, m0, M, plan.K, plan.L, threads, ws)
        Y = _channel_sum(plan, "grad_input", Gs, W, M, threads, ws)
        y = _irfft(Y, plan, (M, plan.C * plan.R), off, plan.B, threads)
        _scatter(y, out, maps, m0, R, None, threads)

    with _blas_single(plan):
        _run(plan, work, nthreads)


def grad_weight(x, gy, geom, out, nthreads):
    plan = _plan(geom, "grad_weight", x.itemsize)
    x_tab, gy_tab = _tables(plan)
    ctype = np.result_type(x.dtype, np.complex64)
    rows = plan.K * plan.Cs
    accs = [np.zeros((plan.F, rows) if plan.gemm else (rows, plan.F), ctype) for _ in _lanes(plan)]

    def work(lane, m0, M, threads, ws):
        X = _gather(x, plan, x_tab, m0, M, plan.C * plan.R, plan.L, threads, ws)
        Gs = _gather(gy, plan, gy_tab, m0, M, plan.K, plan.B, threads, ws, "gy_tiles")
        _channel_sum(plan, "grad_weight", Gs, X, M, threads, ws, acc=accs[lane])

    with _blas_single(plan):
        _run(plan, work, nthreads)
    acc = accs[0]
    for a in accs[1:]:
        acc += a
    if plan.gemm:
        acc = _transpose(acc, nthreads)
    z = _irfft(acc, plan, (plan.K, plan.Cs), (0, 0, 0), tuple(a.Q for a in plan.axes), nthreads)
    z = np.ascontiguousarray(z).reshape(_phase_shape(plan))
    out[...] = z[_tap_index(plan)].reshape(out.shape)


def cost(geom, dtype, op):
    """Seconds, from the transform sizes and the channel product of the chosen tiling (constants in COST)."""
    return _plan(geom, op, np.dtype(dtype).itemsize).cost


def cost_kind(geom, dtype, op):
    """The channel-sum path of the plan: "gemm" (per-frequency GEMMs) or "loop" (streaming).  The calibration
    scales each separately: the model's GEMM terms dominate layers with many channels and its transform terms
    single-channel images, and their errors on a machine differ (on a Xeon with AVX-512 the GEMM path ran at 0.3x
    its model, the transforms of a single 512^2 image at 0.55x; one fit over both made those 1.3-2x slower
    than their estimate, and auto took fft at 2.5x direct's time for a 15x15 kernel)."""
    return "gemm" if _plan(geom, op, np.dtype(dtype).itemsize).gemm else "loop"


# Cost-model constants, keyed by "is float32", fitted by ``python bench/bench_fft.py --calibrate`` on the 2-core
# reference machine: single-threaded CPU times of 17 geometries x 3 ops x both channel-sum paths, expressed in the
# units of direct's model (seconds at the default 2 threads).  Per transformed element; per 1-D transform
# ("lines"); per complex multiply-add of the streaming and of the GEMM channel sum; per GEMM call; per element
# gathered, scattered or transposed; per chunk; per call.  The fit is within 0.55x-1.35x of the measured time for
# 80% of the samples (the worst: the weight gradient on the streaming path, underestimated up to 1.8x).
COST = {
    False: {"fft": 8.3e-9, "lines": 2.7e-8, "loop": 3.8e-9, "gemm": 1.1e-9, "call": 1.3e-7, "move": 3.8e-10,
            "chunk": 0.0, "fixed": 2.3e-4},
    True: {"fft": 6.0e-9, "lines": 2.4e-8, "loop": 2.5e-9, "gemm": 7.1e-10, "call": 2.0e-7, "move": 0.0,
           "chunk": 0.0, "fixed": 3.1e-4},
}

# Transform lengths are products of small primes near the padded size; beyond this no FFT plan exists (and the
# index arithmetic of the tiles would leave int64), so the algorithm declines such geometries.
MAX_EXTENT = 2 ** 40


def supports(geom, dtype, op):
    """False for geometries whose padded input or dilated kernel is too long to transform."""
    return max(geom.padded_size + geom.effective_kernel) < MAX_EXTENT


ALGORITHM = register(Algorithm(
    name="fft",
    forward=forward,
    grad_input=grad_input,
    grad_weight=grad_weight,
    cost=cost,
    cost_kind=cost_kind,
    description="real FFTs (scipy.fft), frequency-domain channel sum (per-frequency GEMM), overlap-save tiles",
    supports=supports,
    nonfinite="spreads",
))
