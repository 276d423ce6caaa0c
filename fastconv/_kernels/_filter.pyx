# cython: language_level=3
"""Boundary-mode correlation and small element-wise kernels for :mod:`fastconv.filters`.

:func:`correlate` works on 2-D views prepared by ``fastconv/filters/_engine.py``:

* ``src`` is ``(R_in, L_in)`` and ``out`` is ``(R_out, L_out)``.  A column ``x`` of a row is the pair
  ``(j, c) = (x // D, x % D)``: ``j`` runs along the filtered "column axis" and ``c`` over the ``D`` contiguous
  elements of the axes after it (``D = 1`` when the column axis is the last one).
* ``rows[r, t]`` is the source row that row-tap ``t`` of output row ``r`` reads, already resolved by the boundary
  mode of every row axis, or ``-1`` for a row that lies entirely in the ``cval`` region.
* The non-zero weights form a tap list: tap ``k`` reads row-tap ``tap_row[k]`` at column offset ``tap_dx[k]``
  (``0 <= tap_dx < KW``) with weight ``tap_w[k]``.
* ``colmap[j + dx]`` (length ``n_out + KW - 1``) is the source column-group of output column-group ``j`` and
  offset ``dx`` resolved by the boundary mode, ``-1`` for ``cval``.  On the interior ``jlo <= j < jhi`` it is
  ``j + dx - off`` for every ``dx``, so there the kernel reads the source row directly at the constant shift
  ``tap_shift[k] = (tap_dx[k] - off) * D`` and never consults ``colmap``: no padded copy of the image is made,
  the boundary is resolved per index only for the few columns near the ends.

The interior runs in blocks of ``NB`` consecutive outputs whose accumulators stay in vector registers while all
taps are summed.  Work is split into tasks (output row, chunk of columns) whose chunk size the caller derives from
the shape only; every output element is written by exactly one task with a fixed summation order, so results do
not depend on the number of threads.
"""
from cython.parallel cimport prange
from libc.math cimport sqrt
from libc.string cimport memset

from fastconv._kernels.fused cimport float_t


cdef extern from *:
    """
    /* 32-byte vectors (GCC vector extensions): one AVX2 register on the AVX2 build, two SSE registers on the
       baseline build.  aligned(sizeof element) makes dereferencing an unaligned pointer legal. */
    typedef float fcf_v8f __attribute__((vector_size(32), aligned(4)));
    typedef double fcf_v4d __attribute__((vector_size(32), aligned(8)));
    """
    ctypedef float v8f "fcf_v8f"
    ctypedef double v4d "fcf_v4d"

ctypedef fused vec_t:
    v8f
    v4d


cdef inline void _block_full(const float_t* src, Py_ssize_t L_in, const Py_ssize_t* rows_r,
                             const Py_ssize_t* tap_row, const Py_ssize_t* tap_shift, const float_t* tap_w,
                             Py_ssize_t ntaps, float_t cval, Py_ssize_t x0, float_t* dst,
                             vec_t* tag) noexcept nogil:
    """dst[0:NB] = sum over taps of w * src[row, x0 + i + shift]: 8 vectors (NB = 64 float / 32 double) of
    consecutive outputs stay in registers while every tap is added.  ``tag`` only selects the vector type."""
    cdef vec_t acc[8]
    cdef vec_t z, wv
    cdef Py_ssize_t V = sizeof(vec_t) // sizeof(float_t)
    cdef Py_ssize_t q, k, ri
    cdef const float_t* p
    memset(&z, 0, sizeof(vec_t))
    for q in range(8):
        acc[q] = z
    for k in range(ntaps):
        ri = rows_r[tap_row[k]]
        if ri < 0:
            wv = z + tap_w[k] * cval
            for q in range(8):
                acc[q] += wv
        else:
            wv = z + tap_w[k]
            p = src + ri * L_in + x0 + tap_shift[k]
            for q in range(8):
                acc[q] += wv * (<const vec_t*> (p + q * V))[0]
    for q in range(8):
        (<vec_t*> (dst + q * V))[0] = acc[q]


cdef inline void _block_tail(const float_t* src, Py_ssize_t L_in, const Py_ssize_t* rows_r,
                             const Py_ssize_t* tap_row, const Py_ssize_t* tap_shift, const float_t* tap_w,
                             Py_ssize_t ntaps, float_t cval, Py_ssize_t x0, float_t* dst,
                             Py_ssize_t nb) noexcept nogil:
    """The same sum for the last ``nb`` (< NB) interior outputs of a segment."""
    cdef float_t acc[64]
    cdef Py_ssize_t i, k, ri
    cdef float_t wv
    cdef const float_t* p
    for i in range(nb):
        acc[i] = 0
    for k in range(ntaps):
        ri = rows_r[tap_row[k]]
        wv = tap_w[k]
        if ri < 0:
            for i in range(nb):
                acc[i] += wv * cval
        else:
            p = src + ri * L_in + x0 + tap_shift[k]
            for i in range(nb):
                acc[i] += wv * p[i]
    for i in range(nb):
        dst[i] = acc[i]


cdef inline float_t _border(const float_t* src, Py_ssize_t L_in, const Py_ssize_t* rows_r,
                            const Py_ssize_t* tap_row, const Py_ssize_t* tap_dx, const float_t* tap_w,
                            Py_ssize_t ntaps, const Py_ssize_t* colmap, Py_ssize_t j, Py_ssize_t c, Py_ssize_t D,
                            float_t cval) noexcept nogil:
    """One output element whose taps may leave the row: columns resolved through ``colmap``."""
    cdef float_t acc = 0
    cdef Py_ssize_t k, ri, e
    for k in range(ntaps):
        ri = rows_r[tap_row[k]]
        e = colmap[j + tap_dx[k]]
        if ri < 0 or e < 0:
            acc += tap_w[k] * cval
        else:
            acc += tap_w[k] * src[ri * L_in + e * D + c]
    return acc


cdef inline void _segment(const float_t* src, Py_ssize_t L_in, float_t* orow, const Py_ssize_t* rows_r,
                          const Py_ssize_t* tap_row, const Py_ssize_t* tap_dx, const Py_ssize_t* tap_shift,
                          const float_t* tap_w, Py_ssize_t ntaps, const Py_ssize_t* colmap, Py_ssize_t D,
                          Py_ssize_t xi0, Py_ssize_t xi1, Py_ssize_t xs, Py_ssize_t xe, float_t cval) noexcept nogil:
    """Output columns [xs, xe) of one row: left border, interior blocks, right border."""
    cdef Py_ssize_t x, a, b
    cdef Py_ssize_t NB = 64 if float_t is float else 32
    cdef v8f* vf = NULL
    cdef v4d* vd = NULL
    a = max(xs, xi0)
    b = min(xe, xi1)
    if b < a:
        a = xe
        b = xe
    for x in range(xs, min(a, xe)):
        orow[x] = _border(src, L_in, rows_r, tap_row, tap_dx, tap_w, ntaps, colmap, x // D, x % D, D, cval)
    x = a
    while x + NB <= b:
        if float_t is float:
            _block_full(src, L_in, rows_r, tap_row, tap_shift, tap_w, ntaps, cval, x, orow + x, vf)
        else:
            _block_full(src, L_in, rows_r, tap_row, tap_shift, tap_w, ntaps, cval, x, orow + x, vd)
        x += NB
    if x < b:
        _block_tail(src, L_in, rows_r, tap_row, tap_shift, tap_w, ntaps, cval, x, orow + x, b - x)
    for x in range(max(b, xs), xe):
        orow[x] = _border(src, L_in, rows_r, tap_row, tap_dx, tap_w, ntaps, colmap, x // D, x % D, D, cval)


def correlate(const float_t[:, ::1] src, float_t[:, ::1] out, const Py_ssize_t[:, ::1] rows,
              const Py_ssize_t[::1] tap_row, const Py_ssize_t[::1] tap_dx, const Py_ssize_t[::1] tap_shift,
              const float_t[::1] tap_w, const Py_ssize_t[::1] colmap, Py_ssize_t D, Py_ssize_t jlo,
              Py_ssize_t jhi, double cval, Py_ssize_t chunk, int nthreads):
    """out[r, j*D + c] = sum_k tap_w[k] * S(rows[r, tap_row[k]], colmap[j + tap_dx[k]], c); see the module doc.

    Everything (shapes, index ranges, ``chunk >= 1``) is validated by the caller: bounds checks are off.
    """
    cdef Py_ssize_t R_out = out.shape[0], L_out = out.shape[1], L_in = src.shape[1], T = rows.shape[1]
    cdef Py_ssize_t ntaps = tap_w.shape[0]
    cdef Py_ssize_t nchunks = (L_out + chunk - 1) // chunk
    cdef Py_ssize_t task, r, xs, xe
    cdef Py_ssize_t xi0 = jlo * D, xi1 = jhi * D
    cdef float_t cv = <float_t> cval
    cdef const float_t* sp
    cdef float_t* op
    cdef const Py_ssize_t* rp
    cdef const Py_ssize_t* cm
    cdef const Py_ssize_t* trow = NULL
    cdef const Py_ssize_t* tdx = NULL
    cdef const Py_ssize_t* tsh = NULL
    cdef const float_t* tw = NULL
    if R_out == 0 or L_out == 0:
        return
    sp = &src[0, 0]
    op = &out[0, 0]
    rp = &rows[0, 0]
    cm = &colmap[0]
    if ntaps > 0:
        trow = &tap_row[0]
        tdx = &tap_dx[0]
        tsh = &tap_shift[0]
        tw = &tap_w[0]
    with nogil:
        for task in prange(R_out * nchunks, schedule='static', num_threads=nthreads):
            r = task // nchunks
            xs = (task % nchunks) * chunk
            xe = min(xs + chunk, L_out)
            _segment(sp, L_in, op + r * L_out, rp + r * T, trow, tdx, tsh, tw, ntaps, cm, D, xi0, xi1, xs, xe, cv)


def accumulate_square(float_t[::1] acc, const float_t[::1] g, bint first, int nthreads):
    """acc = g * g (first) or acc += g * g, element-wise (the squared-gradient sum of an edge magnitude)."""
    cdef Py_ssize_t i, n = acc.shape[0]
    cdef float_t v
    with nogil:
        if first:
            for i in prange(n, schedule='static', num_threads=nthreads):
                acc[i] = g[i] * g[i]
        else:
            for i in prange(n, schedule='static', num_threads=nthreads):
                v = g[i] * g[i]
                acc[i] = acc[i] + v


def sqrt_scale(float_t[::1] a, double scale, int nthreads):
    """a = sqrt(a) / scale, element-wise, with ``scale`` rounded to the array's precision first."""
    cdef Py_ssize_t i, n = a.shape[0]
    cdef float_t s = <float_t> scale
    with nogil:
        for i in prange(n, schedule='static', num_threads=nthreads):
            a[i] = (<float_t> sqrt(a[i])) / s


def complex_multiply(float_t[::1] a, const float_t[::1] b, int nthreads):
    """a *= b for interleaved (re, im) complex arrays viewed as reals (the spectrum product of the FFT path)."""
    cdef Py_ssize_t i, n = a.shape[0] // 2
    cdef float_t ar, ai, br, bi
    with nogil:
        for i in prange(n, schedule='static', num_threads=nthreads):
            ar = a[2 * i]
            ai = a[2 * i + 1]
            br = b[2 * i]
            bi = b[2 * i + 1]
            a[2 * i] = ar * br - ai * bi
            a[2 * i + 1] = ar * bi + ai * br


def unsharp_combine(const float_t[::1] image, float_t[::1] blurred, double amount, double lo, double hi,
                    bint clip, int nthreads):
    """blurred = image + (image - blurred) * amount, clipped to [lo, hi] when ``clip`` (NaN passes through)."""
    cdef Py_ssize_t i, n = image.shape[0]
    cdef float_t a = <float_t> amount, flo = <float_t> lo, fhi = <float_t> hi, d, v
    with nogil:
        for i in prange(n, schedule='static', num_threads=nthreads):
            d = (image[i] - blurred[i]) * a
            v = image[i] + d
            if clip:
                if v < flo:
                    v = flo
                if v > fhi:
                    v = fhi
            blurred[i] = v


def transpose_pairs(const float_t[:, :, :] src, float_t[:, :, ::1] dst, int nthreads):
    """dst[j, i, :] = src[i, j, :] for (R, C) complex numbers stored as (re, im) pairs, in 32 x 32 tiles (the
    FFT path keeps its complex transforms on contiguous rows by transposing between them)."""
    cdef Py_ssize_t R = src.shape[0], C = src.shape[1]
    cdef Py_ssize_t nbc = (C + 31) // 32, nbr = (R + 31) // 32
    cdef Py_ssize_t t, i, j, i0, j0
    with nogil:
        for t in prange(nbr * nbc, schedule='static', num_threads=nthreads):
            i0 = (t // nbc) * 32
            j0 = (t % nbc) * 32
            for i in range(i0, min(i0 + 32, R)):
                for j in range(j0, min(j0 + 32, C)):
                    dst[j, i, 0] = src[i, j, 0]
                    dst[j, i, 1] = src[i, j, 1]
