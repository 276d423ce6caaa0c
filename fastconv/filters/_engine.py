"""The correlation engine behind :mod:`fastconv.filters`: boundary modes, the three methods and the choice.

Every public filter reduces to ``correlate_nd`` (an N-d kernel, one call) or ``separable`` (a list of 1-D passes).
Arrays reaching this module are C-contiguous float32/float64 and all arguments are already validated.

Methods
-------
``direct``     one pass of ``_kernels/_filter.pyx`` over the image; the boundary is resolved per index.
``separable``  a rank-1 kernel (detected by SVD, factored exactly through its largest element) as one 1-D pass
               per axis.
``fft``        the image padded with the boundary mode into an FFT-friendly shape (by the same kernel), real FFTs
               (``scipy.fft``, ``workers`` = fastconv's thread count, float32 in complex64), the spectrum product,
               and the inverse transform.
``auto``       the cheapest of the applicable methods by :func:`estimate` (a cost model whose constants are
               measured on the machine it runs on by ``fastconv calibrate`` / the first ``auto`` choice, see
               ``fastconv/_calibrate.py``; the built-in ones come from ``bench/bench_filters.py --calibrate``),
               never ``fft`` when the image or the kernel holds an inf or NaN (see below).

Non-finite values
-----------------
``direct`` and ``separable`` follow scipy.ndimage: an output is the sum of ``w * value`` over the taps with
``|w| > DBL_EPSILON`` (smaller weights are skipped, as scipy does), so an inf or NaN reaches exactly the outputs
whose footprint holds it (``0 * inf`` never arises from a skipped tap).  ``fft`` mixes the whole image (or the
whole overlap-save tile) into every output: one inf or NaN makes all of them NaN.
"""
import math
import numbers
import threading

import numpy as np
import scipy.fft

from .. import _kernels, _threads
from .._algorithms import tame

_filter = _kernels.module("_filter")

__all__ = ["MODES", "METHODS", "index_map", "correlate_nd", "separable", "rank1_factors", "estimate", "choose",
           "gaussian_radius", "gaussian_kernel1d"]


def gaussian_kernel1d(sigma, order, radius):
    """scipy.ndimage's 1-D Gaussian (derivative) weights on ``x = -radius..radius``: ``phi(x) / sum(phi)``
    times the derivative polynomial of ``order``."""
    if order < 0:
        raise ValueError("order must be non-negative")
    sigma2 = sigma * sigma
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / sigma2 * x ** 2)
    phi = phi / phi.sum()
    if order == 0:
        return phi
    # q(x) phi(x): q' + q * p' with p'(x) = -x / sigma^2, as an operator on q's coefficients
    powers = np.arange(order + 1)
    q = np.zeros(order + 1)
    q[0] = 1
    step = np.diag(powers[1:], 1) + np.diag(np.ones(order) / -sigma2, -1)
    for _ in range(order):
        q = step.dot(q)
    return (x[:, None] ** powers).dot(q) * phi


def gaussian_radius(sigma, truncate, radius):
    """The kernel radius scipy.ndimage uses: ``radius`` if given, else ``int(truncate * sigma + 0.5)``."""
    lw = int(truncate * float(sigma) + 0.5)
    if radius is not None:
        lw = radius
    if not isinstance(lw, numbers.Integral) or lw < 0:
        raise ValueError("Radius must be a nonnegative integer.")
    return int(lw)


# Public mode name -> the extension it denotes for filters (scipy.ndimage: the grid-* names are aliases here).
MODES = {"reflect": "reflect", "grid-mirror": "reflect", "constant": "constant", "grid-constant": "constant",
         "nearest": "nearest", "mirror": "mirror", "wrap": "wrap", "grid-wrap": "wrap"}
METHODS = ("auto", "direct", "separable", "fft")

# scipy.ndimage ignores weights with |w| <= DBL_EPSILON; so do we (it also decides how inf/nan propagate).
WEIGHT_EPS = np.finfo(np.float64).eps
# Tasks per call, fixed by the shape alone so that the split (and so every result bit) never depends on the
# number of threads.
TASKS = 64
# A 1-D pass along an axis followed by at least this many contiguous elements reads whole rows (row taps);
# below it, the axis is treated as a column axis with element stride D (e.g. the colour channels of an image).
ROW_TAP_MIN_INNER = 64
# Cache budget of the source rows one strip of columns reads (row taps).
STRIP_BYTES = 128 * 1024
# Row-tap kernels compute two output rows per block where their taps overlap (half the loads).
PAIR_ROWS = True
# Passes with one column tap and many row taps compute blocks of output rows from each source row loaded once.
ROW_BLOCKS = True


def index_map(n, pos, mode):
    """Source index of (possibly out-of-range) positions ``pos`` along an axis of length ``n``; -1 = cval.

    reflect: ``d c b a | a b c d | d c b a`` (period 2n), mirror: ``d c b | a b c d | c b a`` (period 2n - 2),
    wrap: period n, nearest: clamp, constant: -1 outside.  Far positions (kernels longer than the axis) repeat
    the pattern, as scipy.ndimage does.
    """
    pos = np.asarray(pos, dtype=np.intp)
    if mode == "constant":
        return np.where((pos >= 0) & (pos < n), pos, -1)
    if mode == "nearest":
        return np.clip(pos, 0, n - 1)
    if mode == "wrap":
        return np.mod(pos, n)
    if mode == "reflect":
        m = np.mod(pos, 2 * n)
        return np.where(m < n, m, 2 * n - 1 - m)
    if n == 1:  # mirror of a single element
        return np.zeros_like(pos)
    m = np.mod(pos, 2 * n - 2)
    return np.where(m < n, m, 2 * n - 2 - m)


def _row_table(in_shape, out_shape, ksize, offs, modes):
    """``(prod(out_shape), prod(ksize))`` table of source rows (C order over ``in_shape``) read by each output
    row and row-tap, ``-1`` where any axis falls in the cval region.  Output position ``i`` and tap ``k`` of an
    axis read input position ``i + k - off``."""
    table = np.zeros((1, 1), dtype=np.intp)
    for n_in, n_out, k, off, mode in zip(in_shape, out_shape, ksize, offs, modes):
        m = index_map(n_in, np.arange(n_out)[:, None] + np.arange(k)[None, :] - off, mode)
        new = table[:, None, :, None] * n_in + m[None, :, None, :]
        bad = (table < 0)[:, None, :, None] | (m < 0)[None, :, None, :]
        table = np.where(bad, -1, new).reshape(table.shape[0] * n_out, table.shape[1] * k)
    return np.ascontiguousarray(table)


def _taps(w2, off, D, dtype):
    """The non-zero weights of a (row-taps, KW) array as the kernel's tap lists (row, shift, weight)."""
    t_row, t_dx = np.nonzero(np.abs(w2) > WEIGHT_EPS)
    t_row = t_row.astype(np.intp)
    shift = (t_dx.astype(np.intp) - off) * D
    return t_row, shift, np.ascontiguousarray(w2[t_row, t_dx], dtype=dtype)


def _interior(n_in, n_out, KW, off):
    """[jlo, jhi): output column groups whose every tap reads inside the source row."""
    jlo = max(0, off)
    return jlo, max(jlo, min(n_out, n_in - KW + off + 1))


def _plan(src_shape2, out_shape2, dtype, rows, w2, colmap, D, off):
    """The kernel's arguments for 2-D views of these shapes (see ``_kernels/_filter.pyx`` for the layout):
    ``(tables, keywords, work)``, ``work`` the multiply-adds (for the thread count)."""
    R_out, L_out = out_shape2
    n_in, n_out, KW = src_shape2[1] // D, out_shape2[1] // D, w2.shape[1]
    if rows.shape[0] != R_out or rows.shape[1] != w2.shape[0] or colmap.shape[0] != n_out + KW - 1:
        raise AssertionError("inconsistent filter plan")  # internal invariant; never a user error
    t_row, t_shift, t_w = _taps(w2, off, D, dtype)
    jlo, jhi = _interior(n_in, n_out, KW, off)
    chunk, chunk_major = _chunking(R_out, L_out, rows.shape[1], dtype.itemsize)
    tables = (rows, t_row, t_shift, t_w, np.ascontiguousarray(colmap, dtype=np.intp)) \
        + _pairing(rows, w2, off, D, dtype) + (_row_blocks(rows, w2, t_w),)
    for t in tables:
        t.setflags(write=False)          # plans are shared by every call with the same shapes and weights
    return tables, dict(D=D, off=off, jlo=jlo, jhi=jhi, chunk=chunk, chunk_major=chunk_major), \
        R_out * L_out * max(1, t_w.shape[0])


def _correlate(src2, out2, plan, cval, nthreads, epi, scale):
    tables, kw, work = plan
    _filter.correlate(src2, out2, *tables, cval=float(cval), epi=epi, scale=float(scale),
                      nthreads=_threads.threads_for(work, nthreads), **kw)


def _run(src2, out2, rows, w2, colmap, D, off, cval, nthreads, epi=0, scale=1.0):
    """One call of the compiled kernel on 2-D views (see ``_kernels/_filter.pyx`` for the layout)."""
    _correlate(src2, out2, _plan(src2.shape, out2.shape, out2.dtype, rows, w2, colmap, D, off), cval, nthreads,
               epi, scale)


def _pairing(rows, w2, off, D, dtype):
    """(pair_ok, m_row, m_shift, m_w0, m_w1, m_kind) for the kernel's row pairs, or empty arrays for none.

    Output rows 2i and 2i + 1 pair up where the second reads the first's row taps shifted by one; merged tap m
    then reads pair row u (t for the first row, t + 1 for the second) with weights (w[u], w[u - 1]).  Its kind
    says which rows it feeds: 1 the first, 2 the second, 3 both (by the weights in ``dtype``, as the kernel sees
    them).
    """
    R, T = rows.shape
    if not PAIR_ROWS or T < 2 or R < 2:
        none = np.zeros(0, np.intp)
        return none, none, none, np.zeros(0, dtype), np.zeros(0, dtype), none
    even = rows[0:R - 1:2]
    ok = np.all(rows[1::2][:even.shape[0], :-1] == even[:, 1:], axis=1).astype(np.intp)
    w = np.where(np.abs(w2) > WEIGHT_EPS, w2, 0.0)
    W0 = np.zeros((T + 1, w.shape[1]))
    W1 = np.zeros((T + 1, w.shape[1]))
    W0[:T] = w
    W1[1:] = w
    m_row, m_dx = np.nonzero((W0 != 0) | (W1 != 0))
    m_w0 = np.ascontiguousarray(W0[m_row, m_dx], dtype=dtype)
    m_w1 = np.ascontiguousarray(W1[m_row, m_dx], dtype=dtype)
    m_kind = ((m_w0 != 0) + 2 * (m_w1 != 0)).astype(np.intp)
    return (np.ascontiguousarray(ok), m_row.astype(np.intp), (m_dx.astype(np.intp) - off) * D, m_w0, m_w1,
            m_kind)


def _row_blocks(rows, w2, t_w):
    """rb_ok for the kernel's row blocks (see ``_rows_block`` in ``_kernels/_filter.pyx``), or an empty array for
    none: a pass with one column tap whose row taps are all non-zero and at least a block long; per block of
    ``row_block_rows()`` output rows, whether its row taps read consecutive source rows (as inside the image,
    where no boundary mode applies)."""
    R, T = rows.shape
    nb_rows = _filter.row_block_rows()
    if not ROW_BLOCKS or w2.shape[1] != 1 or T < nb_rows or R < nb_rows or t_w.shape[0] != T:
        return np.zeros(0, np.intp)
    nb = R // nb_rows
    blk = rows[:nb * nb_rows].reshape(nb, nb_rows, T)
    want = blk[:, :1, :1] + np.arange(nb_rows)[None, :, None] + np.arange(T)[None, None, :]
    ok = np.all(blk == want, axis=(1, 2)) & (blk[:, 0, 0] >= 0)
    return np.ascontiguousarray(np.concatenate([ok, np.zeros(-(-R // nb_rows) - nb, bool)]).astype(np.intp))


def _chunking(R_out, L_out, T, itemsize):
    """(chunk, chunk_major) for the kernel's tasks, from the shape alone (never the thread count).

    With several row taps, a strip of columns is walked down chunk by chunk, the strip narrow enough that the
    ``T`` source rows it reads fit in ``STRIP_BYTES`` of cache; otherwise rows are split only as far as needed
    for ``TASKS`` tasks.
    """
    nb = _filter.block_width(itemsize)
    if T > 1:
        width = max(2 * nb, STRIP_BYTES // (T * itemsize) // nb * nb)
        return max(1, min(width, L_out)), True
    per_row = -(-TASKS // max(R_out, 1))        # column chunks per row
    width = -(-L_out // per_row)
    return max(1, 4 * nb, -(-width // nb) * nb), False


def correlate_nd(src, out, weights, offs, modes, cval, nthreads, epi=0, scale=1.0):
    """Direct correlation: ``out[i] = sum_k weights[k] * ext(src)[i + k - offs]`` (same shapes as scipy),
    stored through epilogue ``epi`` (0: plain; see ``_kernels/_filter.pyx``)."""
    shape, ks = src.shape, weights.shape
    w = np.asarray(weights, dtype=np.float64)
    key = (shape, out.shape, out.dtype.char, ks, w.tobytes(), tuple(offs), tuple(modes))
    plan = _nd_plans.get(key)
    if plan is None:
        rows = _row_table(shape[:-1], out.shape[:-1], ks[:-1], offs[:-1], modes[:-1])
        colmap = index_map(shape[-1], np.arange(out.shape[-1] + ks[-1] - 1) - offs[-1], modes[-1])
        plan = _plan((math.prod(shape[:-1]), shape[-1]), (math.prod(out.shape[:-1]), out.shape[-1]), out.dtype,
                     rows, w.reshape(-1, ks[-1]), colmap, 1, offs[-1])
        if len(_nd_plans) >= _PASS_PLANS_SIZE:
            _nd_plans.clear()
        _nd_plans[key] = plan
    _correlate(src.reshape(-1, shape[-1]), out.reshape(-1, out.shape[-1]), plan, cval, nthreads, epi, scale)


# Plans of 1-D passes seen before (shape, dtype, axis, weights, origin, mode): a call made again runs the kernel
# straight away (small filters are dominated by planning).
_PASS_PLANS_SIZE = 256
_pass_plans = {}
# The same for N-d direct correlations (shapes, dtype, weights, origins, modes).
_nd_plans = {}


def _pass_plan(shape, dtype, axis, w1, off, mode, start, n_out):
    """Views and plan of a pass along ``axis`` of an array of ``shape`` that computes the ``n_out`` outputs from
    position ``start`` of the axis (output ``i`` reads positions ``start + i + k - off``)."""
    outer = math.prod(shape[:axis])
    n = shape[axis]
    inner = math.prod(shape[axis + 1:])
    k = w1.shape[0]
    off -= start
    if inner >= ROW_TAP_MIN_INNER:
        # rows of `inner` contiguous elements; the taps are whole rows
        view, out_view = (outer * n, inner), (outer * n_out, inner)
        rows = _row_table((outer, n), (outer, n_out), (1, k), (0, off), ("nearest", mode))
        return view, out_view, _plan(view, out_view, dtype, rows, w1.reshape(k, 1), np.arange(inner), 1, 0)
    # `axis` is the column axis of (outer, n * inner) rows, element stride inner
    view, out_view = (outer, n * inner), (outer, n_out * inner)
    return view, out_view, _plan(view, out_view, dtype, np.ascontiguousarray(np.arange(outer)[:, None]),
                                 w1[None, :], index_map(n, np.arange(n_out + k - 1) - off, mode), inner, off)


def _pass(src, dst, axis, w1, off, mode, cval, nthreads, epi=0, scale=1.0, start=0):
    """One 1-D correlation along ``axis``, stored through epilogue ``epi``: ``dst`` has ``src``'s shape, or a
    shorter ``axis`` that receives the outputs from position ``start`` of ``src``'s (a crop computed without
    the rest: each output is the same sum of the same taps as in the full pass)."""
    w1 = np.asarray(w1, dtype=np.float64)
    n_out = dst.shape[axis]
    key = (src.shape, src.dtype.char, axis, w1.tobytes(), off, mode, start, n_out)
    got = _pass_plans.get(key)
    if got is None:
        got = _pass_plan(src.shape, src.dtype, axis, w1, off, mode, start, n_out)
        if len(_pass_plans) >= _PASS_PLANS_SIZE:
            _pass_plans.clear()
        _pass_plans[key] = got
    view, out_view, plan = got
    _correlate(src.reshape(view), dst.reshape(out_view), plan, cval, nthreads, epi, scale)


# Intermediate arrays of separable filters and of the FFT path up to this size are kept per thread and reused from
# call to call: a fresh array's pages are faulted in and zeroed by the kernel as the first pass writes them, which
# took longer than the pass itself (2048^2 float32 Gaussian, sigma 1: 7 ms a call with a fresh temporary, 3 ms
# with a reused one).  A thread keeps at most six (two for passes, three for the FFT path's padded image,
# transposed spectrum and inverse rows, one for fastconv.ndimage's min/max/box passes).
TEMP_KEEP_BYTES = 64 * 2 ** 20
_temps = threading.local()


def _temp(shape, dtype, slot):
    """An uninitialised C-order array for intermediate results: this thread's buffer ``slot`` (``0`` or ``1`` for
    passes; the FFT path and fastconv.ndimage name their own) when it is at most :data:`TEMP_KEEP_BYTES`, reused
    by later calls; else a new array.  Its contents are valid only until this thread's next call that uses the
    slot: a temporary never leaves the function that took it."""
    return _threads.thread_buffer(_temps, slot, shape, dtype, TEMP_KEEP_BYTES)


def separable(src, out, passes, nthreads, epi=0, scale=1.0):
    """Successive 1-D passes ``[(axis, w1, off, mode, cval), ...]`` from ``src`` into ``out``, the last one
    stored through epilogue ``epi``.

    Intermediate results alternate between ``out`` and one temporary so that the last pass lands in ``out``
    (two temporaries when the epilogue reads ``out``); ``src`` is never written.  With no passes, ``out``
    receives a copy of ``src``.  (Fusing a row-tap pass with the next column pass through a per-thread row
    buffer was measured slower than two passes with row pairs and column strips, so passes stay separate.)
    """
    if not passes:
        np.copyto(out, src)
        return out
    n = len(passes)
    if epi >= 2:                                 # the last pass reads out: intermediates stay elsewhere
        pool = [_temp(out.shape, out.dtype, i) for i in range(min(2, n - 1))]
    else:                                        # alternate with out so that the last pass lands in it
        tmp = _temp(out.shape, out.dtype, 0) if n > 1 else None
        pool = [tmp, out] if n % 2 == 0 else [out, tmp]
    cur = src
    for i, (axis, w1, off, mode, cval) in enumerate(passes):
        dst = out if i == n - 1 else pool[i % 2]
        _pass(cur, dst, axis, w1, off, mode, cval, nthreads, epi if i == n - 1 else 0, scale)
        cur = dst
    return out


def separable_passes(factors, offs, modes, cval):
    """1-D passes equal to the N-d correlation with ``outer(*factors)``.

    A pass that reaches past a ``constant`` boundary must see what the N-d filter sees there: ``cval`` times the
    sum of the factors already applied, so ``cval`` is scaled pass by pass.  Axes whose factor is the identity
    (one tap of weight 1, offset 0) need no pass.
    """
    passes = []
    scale = 1.0
    for axis, (f, off, mode) in enumerate(zip(factors, offs, modes)):
        f = np.asarray(f, dtype=np.float64)
        if not (f.shape[0] == 1 and f[0] == 1.0 and off == 0):
            passes.append((axis, f, off, mode, cval * scale))
        scale *= float(f.sum())
    return passes


def _exact_rank1(m):
    """(col, row) with m == outer(col, row) when m is rank 1: factored through its largest element, so kernels
    built from small integers or dyadic fractions (Sobel, box) factor exactly."""
    i, j = np.unravel_index(np.argmax(np.abs(m)), m.shape)
    return m[:, j].copy(), m[i, :] / m[i, j]


_rank1_seen = {}


def rank1_factors(weights, dtype):
    """Per-axis 1-D factors of a rank-1 N-d kernel, or None.

    A 1-D kernel is its own factor.  Detection by SVD of each unfolding (the second singular value negligible
    against the first), factors by :func:`_exact_rank1`; the outer product of the factors must reproduce the
    kernel to a few ulps of ``dtype``.  Kernels seen before are answered from a small cache (the factors are
    read-only arrays).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        return [w]
    key = (w.shape, w.tobytes(), np.dtype(dtype).char)
    if key in _rank1_seen:
        return _rank1_seen[key]
    got = _rank1_factors(w, dtype)
    if got is not None:
        got = [np.array(f) for f in got]
        for f in got:
            f.setflags(write=False)
    if len(_rank1_seen) >= _PASS_PLANS_SIZE:
        _rank1_seen.clear()
    _rank1_seen[key] = got
    return got


def _rank1_factors(w, dtype):
    if not np.any(w):
        return None
    tol = 8 * np.finfo(dtype).eps
    factors = []
    rest = w
    while rest.ndim > 1:
        m = rest.reshape(rest.shape[0], -1)
        s = np.linalg.svd(m, compute_uv=False)
        if len(s) > 1 and s[1] > tol * s[0]:
            return None
        col, row = _exact_rank1(m)
        factors.append(col)
        rest = row.reshape(rest.shape[1:])
    factors.append(rest)
    recon = factors[0]
    for f in factors[1:]:
        recon = np.multiply.outer(recon, f)
    if np.max(np.abs(recon - w)) > tol * np.max(np.abs(w)):
        return None
    return factors


def fft_shape(shape, ksize):
    """FFT lengths covering the padded extent ``n + k - 1`` of every axis (the last one real)."""
    nd = len(shape)
    return tuple(scipy.fft.next_fast_len(n + k - 1, real=(a == nd - 1)) for a, (n, k) in enumerate(zip(shape, ksize)))


def _transpose(a, b, nthreads):
    """b = a.T for 2-D complex arrays (``a`` may have strided rows; ``b`` C-contiguous)."""
    real = np.float32 if a.dtype == np.complex64 else np.float64
    if (a.shape[1] > 1 and a.strides[1] != a.itemsize) or (a.shape[0] > 1 and a.strides[0] % a.itemsize):
        a = np.ascontiguousarray(a)              # the kernel walks each row contiguously
    _filter.transpose_pairs(a.view(real).reshape(a.shape + (2,)), b.view(real).reshape(b.shape + (2,)), nthreads)


def fft_tiles(n0, k0):
    """(L, V, nt): FFT length, valid outputs per tile and tile count along axis 0 (overlap-save).

    Tiles of ``L`` padded rows give ``V = L - k0 + 1`` outputs each, so the complex transforms along axis 0 are
    short (cache-resident) and the kernel's spectrum costs one short transform instead of a full-length one.
    Chosen to minimise ``(2 nt + 1) L log2 L`` (forward and inverse per tile, the kernel once); one tile of the
    full padded length is the plain transform.
    """
    full = scipy.fft.next_fast_len(n0 + k0 - 1)
    best = (3 * full * math.log2(max(full, 2)), full, n0, 1)
    m = k0 + 31
    while m < n0 + k0 - 1:
        L = scipy.fft.next_fast_len(m)
        V = L - k0 + 1
        nt = -(-n0 // V)
        cost = (2 * nt + 1) * L * math.log2(L) + 2e3 * nt     # + a little per-tile overhead
        if cost < best[0]:
            best = (cost, L, V, nt)
        m = 2 * m
    return best[1:]


def correlate_fft(src, out, weights, offs, modes, cval, nthreads, tiles=None):
    """Correlation through real FFTs of the mode-padded image (exact up to FFT rounding).

    Per tile, ``out[i] = full[i + k - 1]`` where ``full`` is the circular convolution of the padded image with
    the flipped kernel.  The real transform runs along the last axis; the spectrum is then transposed (last axis
    first) so that every complex transform runs on contiguous data (strided ones cost about three times more),
    over overlap-save tiles along axis 0 (:func:`fft_tiles`), read straight from the transposed spectrum as
    overlapping windows.  The inverse transposes back only the rows of the valid region.  ``tiles`` = (L, V, nt)
    overrides the tiling (tests, tuning).
    """
    shape, ks, nd = src.shape, weights.shape, src.ndim
    workers = nthreads
    wf = np.asarray(weights, dtype=src.dtype)[(slice(None, None, -1),) * nd]
    if nd == 1:
        F = fft_shape(shape, ks)
        padded = np.empty(F, dtype=src.dtype)
        correlate_nd(src, padded, np.ones(1), offs, modes, cval, nthreads)   # padded[p] = ext(src)[p - offs]
        spec = scipy.fft.rfft(padded, workers=workers)
        kspec = scipy.fft.rfft(wf, n=F[-1], workers=workers)
        _filter.complex_multiply(spec.view(src.dtype).reshape(1, 1, -1), kspec.view(src.dtype).reshape(1, -1),
                                 nthreads)
        res = scipy.fft.irfft(spec, n=F[-1], workers=workers)
    else:
        L, V, nt = tiles if tiles is not None else fft_tiles(shape[0], ks[0])
        F = (L,) + fft_shape(shape, ks)[1:]
        H = F[-1] // 2 + 1
        rest = F[1:-1]                              # complex-transformed axes besides axis 0
        P = (nt - 1) * V + L                        # padded rows the tiles read
        padded = _temp((P,) + F[1:], src.dtype, "fft-padded")
        correlate_nd(src, padded, np.ones((1,) * nd), offs, modes, cval, nthreads)
        A = math.prod(padded.shape[:-1])
        rows = scipy.fft.rfft(padded.reshape(A, F[-1]), axis=-1, workers=workers)
        del padded
        spec_t = _temp((H, P) + rest, rows.dtype, "fft-spectrum")
        _transpose(rows, spec_t.reshape(H, A), nthreads)
        del rows
        # tiles: overlapping windows of L rows every V rows -> (H, nt, L, *rest)
        win = np.lib.stride_tricks.sliding_window_view(spec_t, L, axis=1)[:, ::V]
        axes = tuple(range(2, nd + 1))
        spec = scipy.fft.fftn(np.moveaxis(win, -1, 2), axes=axes, workers=workers)
        del spec_t, win
        krows = scipy.fft.rfft(wf.reshape(-1, ks[-1]), n=F[-1], axis=-1, workers=workers)
        kt = np.ascontiguousarray(krows.T).reshape((H,) + ks[:-1])
        kspec = scipy.fft.fftn(kt, s=F[:-1], axes=tuple(range(1, nd)), workers=workers, overwrite_x=True)
        spec = np.ascontiguousarray(spec)
        kspec = np.ascontiguousarray(kspec, dtype=spec.dtype)
        _filter.complex_multiply(spec.view(src.dtype).reshape(H, nt, -1), kspec.view(src.dtype).reshape(H, -1),
                                 nthreads)
        del kspec
        spec = scipy.fft.ifftn(spec, axes=axes, workers=workers, overwrite_x=True)
        inner = tuple(slice(k - 1, k - 1 + n) for n, k in zip(shape[1:-1], ks[1:-1]))
        per_row = math.prod(shape[1:-1])
        back = _temp((shape[0] * per_row, H), spec.dtype, "fft-back")
        for t in range(nt):
            v = min(V, shape[0] - t * V)
            region = spec[(slice(None), t, slice(ks[0] - 1, ks[0] - 1 + v)) + inner]
            if nd > 2:
                region = np.ascontiguousarray(region)
            _transpose(region.reshape(H, -1), back[t * V * per_row:(t * V + v) * per_row], nthreads)
        del spec
        res = scipy.fft.irfft(back, n=F[-1], axis=-1, workers=workers, overwrite_x=True)
    # out = res[:, k - 1:k - 1 + n]: a one-tap correlation at offset 1 - k, i.e. a parallel strided copy
    res2 = res.reshape(-1, F[-1])
    n, k = shape[-1], ks[-1]
    _run(res2, out.reshape(-1, n), np.arange(res2.shape[0])[:, None], np.ones((1, 1)), np.arange(n) + k - 1, 1,
         1 - k, 0.0, nthreads)


# ----------------------------------------------------------------------------------------------- the choice
# One-thread costs on the reference machine, keyed by itemsize (float32: 4, float64: 8): seconds per
# multiply-add of the direct kernel, per element of a pass (memory traffic, call setup amortised), per
# ``F log2 F`` of the whole FFT path (padding, transforms, product, copy-out) for an FFT shape of F elements, and
# per call.  Measured with ``python bench/bench_filters.py --calibrate`` (2-core AMD EPYC, shared and noisy, so the
# values were checked against the measured direct/FFT crossover on 2048^2 float32, which lies near k = 17).
MAC_SECONDS = {4: 5.6e-11, 8: 1.1e-10}
PASS_SECONDS = {4: 5.2e-10, 8: 1.0e-09}
FFT_SECONDS = {4: 6.8e-10, 8: 1.2e-09}
CALL_SECONDS = 5e-05
# The constants in use: the built-in ones above, or those the machine calibration measured (fastconv._calibrate).
_consts = {"MAC_SECONDS": MAC_SECONDS, "PASS_SECONDS": PASS_SECONDS, "FFT_SECONDS": FFT_SECONDS,
           "CALL_SECONDS": CALL_SECONDS}


def set_constants(measured):
    """Use measured constants (as :func:`calibrate` returns them; a missing itemsize keeps the built-in
    float64/float32 ratio), or the built-in ones again for ``None``."""
    if measured is None:
        _consts.update(MAC_SECONDS=MAC_SECONDS, PASS_SECONDS=PASS_SECONDS, FFT_SECONDS=FFT_SECONDS,
                       CALL_SECONDS=CALL_SECONDS)
        return
    for name in ("MAC_SECONDS", "PASS_SECONDS", "FFT_SECONDS"):
        base = globals()[name]
        got = {int(k): float(v) for k, v in measured[name].items()}
        f32 = got.get(4, base[4] * got.get(8, base[8]) / base[8])
        _consts[name] = {4: f32, 8: got.get(8, f32 * base[8] / base[4])}
    _consts["CALL_SECONDS"] = float(measured["CALL_SECONDS"])


def _count_taps(w):
    return int(np.count_nonzero(np.abs(np.asarray(w, dtype=np.float64)) > WEIGHT_EPS))


def estimate(shape, weights, dtype, nthreads, factors=None):
    """Estimated seconds of each applicable method: ``{"direct": s, "separable": s (rank 1 only), "fft": s}``."""
    from .. import _calibrate
    _calibrate.current()            # the machine's constants (measured at first use, then cached)
    size = np.dtype(dtype).itemsize
    n = math.prod(shape)
    par = max(1, nthreads)
    c = _consts
    mac, mem, call = c["MAC_SECONDS"][size], c["PASS_SECONDS"][size], c["CALL_SECONDS"]
    est = {"direct": call + n * (_count_taps(weights) * mac + mem) / par}
    if factors is not None:
        taps = [_count_taps(f) for f in factors if f.shape[0] > 1 or f[0] != 1.0]
        est["separable"] = call * len(taps) + sum(n * (t * mac + mem) for t in taps) / par
    F = math.prod(fft_shape(shape, weights.shape))
    est["fft"] = 4 * call + F * math.log2(max(F, 2)) * c["FFT_SECONDS"][size] / par
    return est


def choose(shape, weights, dtype, nthreads, factors=None, fft=True):
    """The cheapest method for this call (the ``method="auto"`` choice); ``fft=False`` leaves the FFT out."""
    est = estimate(shape, weights, dtype, nthreads, factors)
    if not fft:
        del est["fft"]
    return min(est, key=est.get)


def calibrate(repeats=7, size=1024, nthreads=1, dtypes=(np.float32, np.float64)):
    """Measure the cost-model constants on this machine with ``nthreads`` threads on ``size`` x ``size`` images;
    returns them per thread (the model divides by the thread count), keyed by itemsize, as a dict.

    The three probes of a dtype (a 1x1 pass, a 9x9 direct correlation and a 31x31 FFT correlation) are timed in
    interleaved rounds (the best of each), so that load on a shared machine hits them alike; see
    :func:`fit_constants` for what is made of the times."""
    from .._measure import interleaved, timeit
    rng = np.random.default_rng(0)
    modes2 = ("reflect", "reflect")
    small = rng.random((8, 8))
    times = {"call": timeit(lambda: correlate_nd(small, np.empty_like(small), np.ones((3, 3)), (1, 1), modes2, 0.0,
                                                 nthreads), repeats=repeats, warmup=1)["min"]}
    for dtype in dtypes:
        img = rng.random((size, size)).astype(dtype)
        out = np.empty_like(img)
        w9 = rng.standard_normal((9, 9))
        w31 = rng.standard_normal((31, 31))
        got = interleaved({
            "pass": lambda: correlate_nd(img, out, np.ones((1, 1)), (0, 0), modes2, 0.0, nthreads),
            "mac": lambda: correlate_nd(img, out, w9, (4, 4), modes2, 0.0, nthreads),
            "fft": lambda: correlate_fft(img, out, w31, (15, 15), modes2, 0.0, nthreads)}, repeats, raw=True)
        times[np.dtype(dtype).itemsize] = {k: min(v) for k, v in got.items()}
    return fit_constants(times, size, nthreads)


def fit_constants(times, size, nthreads):
    """The constants from the probe times of :func:`calibrate` (``{"call": s, itemsize: {"pass": s, "mac": s,
    "fft": s}}``, on ``size`` x ``size`` images with ``nthreads`` threads): per element of a pass (the call
    overhead taken off), per multiply-add (the 9x9 correlation less the pass, over its 80 extra taps), per
    ``F log2 F`` of the 31x31 FFT path (less the four calls the model counts).

    The probes are as large as they are because the FFT path's fixed costs (padding, transposes, thread joins)
    are a large part of it on small images: measured on 256^2 images a 2-core Xeon's constants put the
    direct/FFT crossover on 2048^2 images anywhere from 13x13 to 41x41 from one process to the next on a busy
    machine (k = 15 and 31 took either path), on 1024^2 images at 17x17 to 19x19.
    """
    par = max(1, nthreads)
    n = size * size
    call = float(times["call"])
    F = math.prod(fft_shape((size, size), (31, 31)))
    res = {"MAC_SECONDS": {}, "PASS_SECONDS": {}, "FFT_SECONDS": {}, "CALL_SECONDS": call}
    for item, t in times.items():
        if item == "call":
            continue
        item = int(item)
        res["PASS_SECONDS"][item] = max(1e-12, (t["pass"] - call) * par / n)
        res["MAC_SECONDS"][item] = max(1e-13, (t["mac"] - t["pass"]) * par / (80 * n))
        res["FFT_SECONDS"][item] = max(1e-12, (t["fft"] - 4 * call) * par / (F * math.log2(F)))
    return res


def apply(src, dst, weights, offs, modes, cval, method, nthreads, factors=None, fn="correlate", epi=0, scale=1.0,
          fft=True):
    """Correlate ``src`` with ``weights`` into ``dst`` (same shape) by ``method`` (``"auto"`` chooses; never
    ``fft`` with ``fft=False``, e.g. for a bool result, where FFT rounding noise would read as True).

    ``factors`` may give a known rank-1 factorisation; otherwise it is detected for ``auto`` and ``separable``.
    ``epi``/``scale`` select the kernel's epilogue (direct and separable only).  Returns the method used.
    Raises ``ValueError`` for ``separable`` with a kernel that is not rank 1.
    """
    if factors is None and method in ("auto", "separable"):
        factors = rank1_factors(weights, src.dtype)
    if method == "separable" and factors is None:
        raise ValueError("%s(): argument 'method'='separable' needs a rank-1 (separable) kernel; weights of shape "
                         "%s are not" % (fn, weights.shape))
    if method == "auto":
        method = choose(src.shape, weights, src.dtype, nthreads, factors, fft=fft and not epi)
        if method == "fft" and not tame(src.dtype, src, np.asarray(weights)):
            method = choose(src.shape, weights, src.dtype, nthreads, factors, fft=False)
    if method == "separable":
        separable(src, dst, separable_passes(factors, offs, modes, cval), nthreads, epi, scale)
    elif method == "fft":
        if epi:
            raise AssertionError("the FFT path has no epilogue")  # internal invariant
        correlate_fft(src, dst, weights, offs, modes, cval, nthreads)
    else:
        correlate_nd(src, dst, weights, offs, modes, cval, nthreads, epi, scale)
    return method
