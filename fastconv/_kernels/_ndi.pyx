# cython: language_level=3
"""Kernels of :mod:`fastconv.ndimage`: scipy.ndimage's line filters, footprint filters and rank filters.

Compiled with ``-ffp-contract=off`` (see setup.py): the linear filters here add and multiply in exactly the order
and precision of scipy.ndimage (float64, no fused multiply-add), so float64 results and integer outputs (truncated
from float64 sums) are bit-identical to scipy's.  Loops run over contiguous flat buffers so that the compiler
vectorises them for the SIMD level of the build.

Line passes (:func:`line_linear`, :func:`line_minmax`, ...) view the array as
``(outer, n, inner)`` and filter every line along the middle axis.  A task copies a chunk of ``C`` neighbouring
lines (``C`` consecutive inner elements, or one line when ``inner == 1``) into a per-thread buffer extended by the
boundary mode (``emap``: source index of each halo position, ``-1`` = ``cval``), lanes interleaved
(``ext[p * C + lane]``), so that every step along the axis is one contiguous run of ``C`` values.

Footprint passes (:func:`nd_correlate`, :func:`nd_minmax`, :func:`nd_rank`) view the array as rows along its last
axis.  ``rows[r, t]`` is the source row that row-tap ``t`` of output row ``r`` reads (resolved by the modes of the
leading axes, ``-1`` = a row of ``cval``); ``colmap`` maps the ``L + KW - 1`` extended columns to source columns
(``-1`` = ``cval``).  Each thread keeps the extended rows it read last in a small cache, so a source row is
extended once for all the output rows that read it.  Tap ``k`` reads extended row ``tap_row[k]`` at column
``x + tap_dx[k]``.

Per-thread buffers come from the shared ``common.scratch``; the loops are plain C over contiguous runs, so each
build's SIMD width (baseline, AVX2, AVX-512) applies without code of its own.  Results never depend on the number
of threads: every output element is computed by one task in a fixed order.
Tasks are handed out dynamically, so a core that the (shared) machine takes away holds back only its current task.
"""
import numpy as np

from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from fastconv._kernels.common cimport scratch

ctypedef unsigned char u8_t
ctypedef signed char i8_t
ctypedef unsigned short u16_t
ctypedef short i16_t
ctypedef unsigned int u32_t
ctypedef int i32_t
ctypedef unsigned long long u64_t
ctypedef long long i64_t

ctypedef fused num_t:
    u8_t
    i8_t
    u16_t
    i16_t
    u32_t
    i32_t
    u64_t
    i64_t
    float
    double

cdef extern from "_ndi_networks.h" nogil:
    # straight-line box medians written by gen_networks.py: 1 when (T, KW) has one, else 0 (nothing done)
    int fc_box_median_u8(Py_ssize_t T, Py_ssize_t KW, const u8_t** lines, u8_t** S, u8_t* out, Py_ssize_t L)
    int fc_box_median_u16(Py_ssize_t T, Py_ssize_t KW, const u16_t** lines, u16_t** S, u16_t* out, Py_ssize_t L)
    int fc_box_median_i16(Py_ssize_t T, Py_ssize_t KW, const i16_t** lines, i16_t** S, i16_t* out, Py_ssize_t L)
    int fc_box_median_f32(Py_ssize_t T, Py_ssize_t KW, const float** lines, float** S, float* out, Py_ssize_t L)
    int fc_box_median_f64(Py_ssize_t T, Py_ssize_t KW, const double** lines, double** S, double* out,
                          Py_ssize_t L)
    int fc_has_box_median(Py_ssize_t T, Py_ssize_t KW)


cdef inline int _box_median_chunk(Py_ssize_t T, Py_ssize_t KW, const char** lines, num_t** Srows, num_t* out,
                                  Py_ssize_t L) noexcept nogil:
    if num_t is u8_t:
        return fc_box_median_u8(T, KW, <const u8_t**> lines, Srows, out, L)
    elif num_t is u16_t:
        return fc_box_median_u16(T, KW, <const u16_t**> lines, Srows, out, L)
    elif num_t is i16_t:
        return fc_box_median_i16(T, KW, <const i16_t**> lines, Srows, out, L)
    elif num_t is float:
        return fc_box_median_f32(T, KW, <const float**> lines, Srows, out, L)
    elif num_t is double:
        return fc_box_median_f64(T, KW, <const double**> lines, Srows, out, L)
    return 0


cdef inline bint _has_box_median(num_t* typed, Py_ssize_t T, Py_ssize_t KW) noexcept nogil:
    """True when ``_ndi_networks.h`` has a straight-line median of a T x KW box for this element type."""
    if num_t is u8_t or num_t is u16_t or num_t is i16_t or num_t is float or num_t is double:
        return fc_has_box_median(T, KW) != 0
    return False


cdef inline void _box_median_part(Py_ssize_t T, Py_ssize_t KW, const num_t** srows, const num_t* cvrow,
                                  const Py_ssize_t* colmap, Py_ssize_t x0, Py_ssize_t x1, bint inside,
                                  Py_ssize_t ylo, Py_ssize_t yhi, Py_ssize_t off, num_t cv, num_t* E,
                                  Py_ssize_t EW, num_t** Srows, num_t* out) noexcept nogil:
    """Outputs x0 .. x1 - 1 of a row (x1 - x0 <= EW - KW + 1) by the straight-line kernel: ``inside``, straight
    from the source rows, else from columns extended into ``E`` (source columns [ylo, yhi) copied, the others by
    ``colmap``, -1 = ``cval``)."""
    cdef Py_ssize_t t
    cdef const num_t** lines = <const num_t**> (Srows + T)
    cdef const num_t* srow
    for t in range(T):
        srow = srows[t]
        if srow == NULL:
            lines[t] = cvrow
        elif inside:
            lines[t] = srow + (x0 - off)
        else:
            _extend_cols(<char*> (E + t * EW), <const char*> srow, x0, x1 + KW - 1, colmap, ylo, yhi, off,
                         sizeof(num_t), <const char*> &cv)
            lines[t] = E + t * EW
    _box_median_chunk(T, KW, <const char**> lines, Srows, out + x0, x1 - x0)


cdef inline void _box_median(Py_ssize_t T, Py_ssize_t KW, const num_t** srows, const num_t* cvrow, Py_ssize_t L,
                             const Py_ssize_t* colmap, Py_ssize_t ylo, Py_ssize_t yhi, Py_ssize_t off, num_t cv,
                             num_t* E, num_t* S, num_t** Srows, num_t* out) noexcept nogil:
    """The straight-line median of a T x KW box (``_has_box_median``) for one output row of ``L`` outputs, in
    parts of at most MEDIAN_CHUNK_BYTES of outputs so that the sorted columns stay in L1.

    ``srows[t]`` is the source row of row-tap t (NULL: a row of ``cval``, ``cvrow``); output x reads extended
    columns x .. x + KW - 1, extended column y being source column y - off for y in [ylo, yhi).  Outputs in
    [xa, xb) read only those, so their parts read the source rows in place; the parts at the row's ends get their
    columns extended into ``E`` (T rows of CH + KW - 1).  Every part but in rows shorter than MEDIAN_VEC_BYTES
    holds a whole number of MEDIAN_VEC_BYTES of outputs, so that the kernels' loops have no scalar remainder:
    the last part ends at L and overlaps the one before it (the overlapped outputs are computed twice, the same
    way).  ``S`` holds T rows of CH + KW - 1 sorted columns, ``Srows`` has room for 2 T pointers."""
    cdef Py_ssize_t CH = MEDIAN_CHUNK_BYTES // sizeof(num_t), EW = CH + KW - 1
    cdef Py_ssize_t M = MEDIAN_VEC_BYTES // sizeof(num_t)
    cdef Py_ssize_t t, x0, a, b
    cdef Py_ssize_t xa = min(ylo, L)
    cdef Py_ssize_t xb = max(xa, min(L, yhi - KW + 1))
    for t in range(T):
        Srows[t] = S + t * EW
    if xb - xa < M:
        # a short row (or a window as wide as it): every output from extended columns
        x0 = 0
        while x0 < L:
            _box_median_part(T, KW, srows, cvrow, colmap, x0, min(L, x0 + CH), False, ylo, yhi, off, cv, E, EW, Srows, out)
            x0 += CH
        return
    a = (xa + M - 1) // M * M                   # xa <= a <= xb
    b = a + (xb - a) // M * M
    if a > 0:
        _box_median_part(T, KW, srows, cvrow, colmap, 0, a, False, ylo, yhi, off, cv, E, EW, Srows, out)
    x0 = a
    while x0 < b:
        _box_median_part(T, KW, srows, cvrow, colmap, x0, min(b, x0 + CH), True, ylo, yhi, off, cv, E, EW, Srows, out)
        x0 += CH
    if b < L:
        x0 = L - (L - b + M - 1) // M * M       # >= 0: L >= xb - xa >= M
        _box_median_part(T, KW, srows, cvrow, colmap, x0, L, False, ylo, yhi, off, cv, E, EW, Srows, out)


cdef enum:
    CHUNK_BYTES = 128      # inner elements per line-pass task (per lane group)
    RANK_BYTES = 512       # bytes of outputs selected at once by a comparator network (per slot)
    MEDIAN_CHUNK_BYTES = 2048   # bytes of outputs per call of a generated box median
    MEDIAN_VEC_BYTES = 64       # the box medians' parts hold whole multiples of this many bytes of outputs


# ------------------------------------------------------------------------------------------------ line passes
cdef inline void _fill_ext(const char* src, Py_ssize_t o, Py_ssize_t c0, Py_ssize_t cw, Py_ssize_t n,
                           Py_ssize_t inner, Py_ssize_t item, const Py_ssize_t* emap_lo, Py_ssize_t lo,
                           const Py_ssize_t* emap_hi, Py_ssize_t hi, const char* cval, char* ext) noexcept nogil:
    """ext[(p + lo) * cw + lane] = extended line value at position p (p in [-lo, n + hi)), lanes c0 .. c0 + cw."""
    cdef Py_ssize_t p, lane, s
    cdef const char* base = src + (o * n * inner + c0) * item
    cdef Py_ssize_t row = cw * item
    if cw == inner:
        memcpy(ext + lo * row, base, n * row)       # the chunk's lines are one contiguous block
    else:
        for p in range(n):
            memcpy(ext + (p + lo) * row, base + p * inner * item, row)
    for p in range(lo):
        s = emap_lo[p]
        if s < 0:
            for lane in range(cw):
                memcpy(ext + (p * cw + lane) * item, cval, item)
        else:
            memcpy(ext + p * row, ext + (s + lo) * row, row)
    for p in range(hi):
        s = emap_hi[p]
        if s < 0:
            for lane in range(cw):
                memcpy(ext + ((lo + n + p) * cw + lane) * item, cval, item)
        else:
            memcpy(ext + (lo + n + p) * row, ext + (s + lo) * row, row)


cdef inline void _extend_cols(char* dst, const char* srow, Py_ssize_t y0, Py_ssize_t y1, const Py_ssize_t* colmap,
                              Py_ssize_t ylo, Py_ssize_t yhi, Py_ssize_t off, Py_ssize_t item,
                              const char* cval) noexcept nogil:
    """dst[y - y0] = extended column y of source row ``srow`` for y in [y0, y1): source column y - off for y in
    [ylo, yhi) (one copy), the others by ``colmap`` (-1: ``cval``)."""
    cdef Py_ssize_t c0 = min(max(ylo, y0), y1), c1 = max(c0, min(yhi, y1)), y, e
    if c1 > c0:
        memcpy(dst + (c0 - y0) * item, srow + (c0 - off) * item, (c1 - c0) * item)
    for y in range(y0, c0):
        e = colmap[y]
        memcpy(dst + (y - y0) * item, cval if e < 0 else srow + e * item, item)
    for y in range(c1, y1):
        e = colmap[y]
        memcpy(dst + (y - y0) * item, cval if e < 0 else srow + e * item, item)


cdef inline void _store_lines(char* dst, Py_ssize_t o, Py_ssize_t c0, Py_ssize_t cw, Py_ssize_t n, Py_ssize_t inner,
                              Py_ssize_t item, const char* obuf) noexcept nogil:
    cdef Py_ssize_t p
    cdef char* base = dst + (o * n * inner + c0) * item
    if cw == inner:
        memcpy(base, obuf, n * cw * item)
        return
    for p in range(n):
        memcpy(base + p * inner * item, obuf + p * cw * item, cw * item)


cdef inline void _corr_lines(const double* x, double* out, Py_ssize_t m, Py_ssize_t s, const double* w,
                             Py_ssize_t size1, Py_ssize_t size2, int symmetric) noexcept nogil:
    """scipy's correlate1d on ``m = n * s`` outputs (``s`` lanes): ``x`` points at the extended position of the
    first output's window start; the same operation order as scipy per output element."""
    cdef Py_ssize_t i, jj
    cdef const double* c = x + size1 * s
    cdef double wj
    if symmetric > 0:
        wj = w[size1]
        for i in range(m):
            out[i] = c[i] * wj
        for jj in range(-size1, 0):
            wj = w[size1 + jj]
            for i in range(m):
                out[i] += (c[i + jj * s] + c[i - jj * s]) * wj
    elif symmetric < 0:
        wj = w[size1]
        for i in range(m):
            out[i] = c[i] * wj
        for jj in range(-size1, 0):
            wj = w[size1 + jj]
            for i in range(m):
                out[i] += (c[i + jj * s] - c[i - jj * s]) * wj
    else:
        wj = w[size1 + size2]
        for i in range(m):
            out[i] = c[i + size2 * s] * wj
        for jj in range(-size1, size2):
            wj = w[size1 + jj]
            for i in range(m):
                out[i] += c[i + jj * s] * wj


cdef inline void _uniform_lines(const double* x, double* out, Py_ssize_t n, Py_ssize_t s, Py_ssize_t size,
                                double* acc) noexcept nogil:
    """scipy's uniform_filter1d running sum, lane by lane in the same order: the first window summed, then
    ``+= entering - leaving``; each output is the sum divided by ``size``."""
    cdef Py_ssize_t ll, lane
    cdef double fs = <double> size
    for lane in range(s):
        acc[lane] = 0.0
    for ll in range(size):
        for lane in range(s):
            acc[lane] += x[ll * s + lane]
    for lane in range(s):
        out[lane] = acc[lane] / fs
    for ll in range(1, n):
        for lane in range(s):
            acc[lane] += x[(ll - 1 + size) * s + lane] - x[(ll - 1) * s + lane]
            out[ll * s + lane] = acc[lane] / fs


cdef inline num_t _pick(num_t a, num_t b, bint is_min) noexcept nogil:
    if is_min:
        return b if b < a else a
    return b if b > a else a


cdef inline void _pick_run(num_t* d, const num_t* a, const num_t* b, Py_ssize_t m, bint is_min) noexcept nogil:
    """d[i] = min/max(a[i], b[i]) for i < m (d may be a or b); one loop per operation so that it vectorises."""
    cdef Py_ssize_t i
    cdef num_t x, y
    if is_min:
        for i in range(m):
            x = a[i]
            y = b[i]
            d[i] = y if y < x else x
    else:
        for i in range(m):
            x = a[i]
            y = b[i]
            d[i] = y if y > x else x


cdef inline void _minmax_lines(num_t* x, num_t* out, Py_ssize_t n, Py_ssize_t k, bint is_min) noexcept nogil:
    """out[p] = min/max of x[p .. p + k - 1] for p < n, one contiguous line: windows of 2, 4, 8, ... by
    doubling in place (each step one vectorised pass), then one combination of two overlapping windows."""
    cdef Py_ssize_t span = 1, N = n + k - 1
    if k == 1:
        memcpy(out, x, n * sizeof(num_t))
        return
    while 2 * span <= k:
        _pick_run(x, x, x + span, N - span, is_min)
        span *= 2
    _pick_run(out, x, x + (k - span), n, is_min)


cdef inline Py_ssize_t _chunk(Py_ssize_t inner, Py_ssize_t item) noexcept nogil:
    cdef Py_ssize_t c = CHUNK_BYTES // item
    return inner if inner < c else c


def line_linear(const double[:, :, ::1] src, double[:, :, ::1] dst, int op, const double[::1] w,
                Py_ssize_t size1, Py_ssize_t size2, int symmetric, const Py_ssize_t[::1] emap_lo,
                const Py_ssize_t[::1] emap_hi, double cval, int nthreads):
    """A linear line filter along the middle axis of ``(outer, n, inner)``, in scipy's float64 arithmetic:
    ``op`` 0 is correlate1d (weights ``w``, ``size1`` before and ``size2`` after the centre, ``symmetric`` as
    scipy tests it), 1 is uniform_filter1d of ``size1 + size2 + 1`` elements.  The halo is ``len(emap_lo)``
    = size1 + origin positions before, ``len(emap_hi)`` after."""
    cdef Py_ssize_t outer = src.shape[0], n = src.shape[1], inner = src.shape[2]
    cdef Py_ssize_t lo = emap_lo.shape[0], hi = emap_hi.shape[0]
    cdef Py_ssize_t C = _chunk(inner, 8), nch, task, o, c0, cw
    cdef double* ext
    cdef double* obuf
    cdef double* acc
    cdef int failed[1]
    failed[0] = 0
    if outer == 0 or n == 0 or inner == 0:
        return
    nch = (inner + C - 1) // C
    cdef const Py_ssize_t* elo = &emap_lo[0] if lo > 0 else NULL
    cdef const Py_ssize_t* ehi = &emap_hi[0] if hi > 0 else NULL
    cdef const double* wp = &w[0] if w.shape[0] > 0 else NULL
    with nogil, parallel(num_threads=nthreads):
        ext = <double*> scratch((n + lo + hi) * C * sizeof(double), failed)
        obuf = <double*> scratch(n * C * sizeof(double), failed)
        acc = <double*> scratch(C * sizeof(double), failed)
        for task in prange(outer * nch, schedule='dynamic'):
            if ext == NULL or obuf == NULL or acc == NULL:
                failed[0] = 1
                continue
            o = task // nch
            c0 = (task % nch) * C
            cw = min(C, inner - c0)
            _fill_ext(<const char*> &src[0, 0, 0], o, c0, cw, n, inner, 8, elo, lo, ehi, hi,
                      <const char*> &cval, <char*> ext)
            if op == 0:
                _corr_lines(ext, obuf, n * cw, cw, wp, size1, size2, symmetric)
            else:
                _uniform_lines(ext, obuf, n, cw, size1 + size2 + 1, acc)
            _store_lines(<char*> &dst[0, 0, 0], o, c0, cw, n, inner, 8, <const char*> obuf)
        free(ext)
        free(obuf)
        free(acc)
    if failed[0]:
        raise MemoryError("ndimage: could not allocate a line buffer")


def line_minmax(const num_t[:, ::1] src, num_t[:, ::1] dst, Py_ssize_t size, const Py_ssize_t[::1] emap_lo,
                const Py_ssize_t[::1] emap_hi, num_t cval, bint is_min, int nthreads):
    """Minimum or maximum over windows of ``size`` along contiguous lines (rows of ``src``; the window of output
    ``p`` starts at halo position ``p - len(emap_lo)``)."""
    cdef Py_ssize_t outer = src.shape[0], n = src.shape[1]
    cdef Py_ssize_t lo = emap_lo.shape[0], hi = emap_hi.shape[0]
    cdef Py_ssize_t item = sizeof(num_t), o
    cdef num_t* ext
    cdef int failed[1]
    cdef num_t cv = cval
    failed[0] = 0
    if outer == 0 or n == 0:
        return
    cdef const Py_ssize_t* elo = &emap_lo[0] if lo > 0 else NULL
    cdef const Py_ssize_t* ehi = &emap_hi[0] if hi > 0 else NULL
    with nogil, parallel(num_threads=nthreads):
        ext = <num_t*> scratch((n + lo + hi) * item, failed)
        for o in prange(outer, schedule='dynamic'):
            if ext == NULL:
                failed[0] = 1
                continue
            _fill_ext(<const char*> &src[0, 0], o, 0, 1, n, 1, item, elo, lo, ehi, hi, <const char*> &cv,
                      <char*> ext)
            _minmax_lines(ext, &dst[o, 0], n, size, is_min)
        free(ext)
    if failed[0]:
        raise MemoryError("ndimage: could not allocate a line buffer")


cdef inline void _boxmean_line(float* ext, float* acc, Py_ssize_t n, Py_ssize_t N, Py_ssize_t size,
                               float inv) noexcept nogil:
    cdef Py_ssize_t i, span = 1, offset = 0
    for i in range(n):
        acc[i] = 0
    while span <= size:
        if size & span:
            for i in range(n):
                acc[i] += ext[i + offset]
            offset += span
        if 2 * span <= size:
            for i in range(N - 2 * span + 1):
                ext[i] = ext[i] + ext[i + span]
        span *= 2
    for i in range(n):
        acc[i] *= inv


def line_boxmean(const float[:, ::1] src, float[:, ::1] dst, Py_ssize_t size, const Py_ssize_t[::1] emap_lo,
                 const Py_ssize_t[::1] emap_hi, float cval, int nthreads):
    """float32 box mean over ``size`` along contiguous lines (rows): window sums of 1, 2, 4, ... elements by
    doubling in place, the window of ``size`` as the sum of those its binary digits select (about
    ``2 log2(size)`` vectorised additions per element instead of ``size``)."""
    cdef Py_ssize_t outer = src.shape[0], n = src.shape[1]
    cdef Py_ssize_t lo = emap_lo.shape[0], hi = emap_hi.shape[0]
    cdef Py_ssize_t o, N
    cdef float* ext
    cdef float inv = <float> (1.0 / size)
    cdef int failed[1]
    cdef float cv = cval
    failed[0] = 0
    if outer == 0 or n == 0:
        return
    N = n + lo + hi
    cdef const Py_ssize_t* elo = &emap_lo[0] if lo > 0 else NULL
    cdef const Py_ssize_t* ehi = &emap_hi[0] if hi > 0 else NULL
    with nogil, parallel(num_threads=nthreads):
        ext = <float*> scratch(N * sizeof(float), failed)
        for o in prange(outer, schedule='dynamic'):
            if ext == NULL:
                failed[0] = 1
                continue
            _fill_ext(<const char*> &src[0, 0], o, 0, 1, n, 1, 4, elo, lo, ehi, hi, <const char*> &cv,
                      <char*> ext)
            _boxmean_line(ext, &dst[o, 0], n, N, size, inv)
        free(ext)
    if failed[0]:
        raise MemoryError("ndimage: could not allocate a line buffer")


cdef inline const num_t* _row_at(const num_t* src, Py_ssize_t o, Py_ssize_t p, Py_ssize_t n, Py_ssize_t inner,
                                 Py_ssize_t c0, const Py_ssize_t* elo, Py_ssize_t lo, const Py_ssize_t* ehi,
                                 const num_t* cvrow) noexcept nogil:
    """Strip ``c0..`` of line position ``p`` (halo positions resolved through the maps, -1 = the cval row)."""
    cdef Py_ssize_t e
    if p < 0:
        e = elo[p + lo]
    elif p >= n:
        e = ehi[p - n]
    else:
        e = p
    if e < 0:
        return cvrow
    return src + (o * n + e) * inner + c0


cdef inline void _vh_band(const num_t* src, num_t* dst, Py_ssize_t o, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0,
                          Py_ssize_t W, Py_ssize_t n, Py_ssize_t inner, Py_ssize_t k, const Py_ssize_t* elo,
                          Py_ssize_t lo, const Py_ssize_t* ehi, const num_t* cvrow, num_t* g, num_t* h0,
                          num_t* h1, bint is_min) noexcept nogil:
    """van Herk / Gil-Werman along a strided axis for output rows [r0, r1) of strip [c0, c0 + W): blocks of
    ``k`` window positions get prefix (``g``) and suffix (``h``) extrema, whole rows at a time; the output
    whose window starts at block offset t is pick(h_prev[t], g[t - 1]) (t = 0: the whole block, h_prev[0])."""
    cdef Py_ssize_t J = r1 - r0 + k - 1, nout = r1 - r0, base = r0 - lo
    cdef Py_ssize_t nb = (J + k - 1) // k, b, t, j0, m, s
    cdef num_t* hp = h0
    cdef num_t* hc = h1
    cdef num_t* tmp
    cdef const num_t* row
    for b in range(nb + 1):
        j0 = b * k
        m = min(k, J - j0) if b < nb else 0
        if m > 0:
            row = _row_at(src, o, base + j0, n, inner, c0, elo, lo, ehi, cvrow)
            memcpy(g, row, W * sizeof(num_t))
            for t in range(1, m):
                row = _row_at(src, o, base + j0 + t, n, inner, c0, elo, lo, ehi, cvrow)
                _pick_run(g + t * W, g + (t - 1) * W, row, W, is_min)
            row = _row_at(src, o, base + j0 + m - 1, n, inner, c0, elo, lo, ehi, cvrow)
            memcpy(hc + (m - 1) * W, row, W * sizeof(num_t))
            t = m - 2
            while t >= 0:
                row = _row_at(src, o, base + j0 + t, n, inner, c0, elo, lo, ehi, cvrow)
                _pick_run(hc + t * W, hc + (t + 1) * W, row, W, is_min)
                t -= 1
        if b > 0:
            # windows starting in block b - 1
            for t in range(k):
                s = j0 - k + t
                if s >= nout:
                    break
                if t == 0:
                    memcpy(dst + (o * n + r0 + s) * inner + c0, hp, W * sizeof(num_t))
                else:
                    _pick_run(dst + (o * n + r0 + s) * inner + c0, hp + t * W, g + (t - 1) * W, W, is_min)
        tmp = hp
        hp = hc
        hc = tmp


def rows_minmax(const num_t[:, :, ::1] src, num_t[:, :, ::1] dst, Py_ssize_t size, const Py_ssize_t[::1] emap_lo,
                const Py_ssize_t[::1] emap_hi, num_t cval, bint is_min, Py_ssize_t strip, Py_ssize_t band,
                int nthreads):
    """Minimum or maximum over ``size`` positions along the middle axis of ``(outer, n, inner)`` (inner > 1),
    van Herk / Gil-Werman on whole strips of ``strip`` inner elements, tasks of ``band`` output rows.  ``src``
    and ``dst`` must not overlap."""
    cdef Py_ssize_t outer = src.shape[0], n = src.shape[1], inner = src.shape[2]
    cdef Py_ssize_t lo = emap_lo.shape[0], item = sizeof(num_t)
    cdef Py_ssize_t ns = (inner + strip - 1) // strip, nbd = (n + band - 1) // band
    cdef Py_ssize_t task, o, st, bd, c0, W, l
    cdef num_t* buf
    cdef int failed[1]
    failed[0] = 0
    if outer == 0 or n == 0 or inner == 0:
        return
    cdef const Py_ssize_t* elo = &emap_lo[0] if lo > 0 else NULL
    cdef const Py_ssize_t* ehi = &emap_hi[0] if emap_hi.shape[0] > 0 else NULL
    with nogil, parallel(num_threads=nthreads):
        buf = <num_t*> scratch((3 * size + 1) * strip * item, failed)
        if buf != NULL:
            for l in range(strip):
                buf[3 * size * strip + l] = cval
        for task in prange(outer * ns * nbd, schedule='dynamic'):
            if buf == NULL:
                failed[0] = 1
                continue
            o = task // (ns * nbd)
            st = (task // nbd) % ns
            bd = task % nbd
            c0 = st * strip
            W = min(strip, inner - c0)
            _vh_band(&src[0, 0, 0], &dst[0, 0, 0], o, bd * band, min(n, bd * band + band), c0, W, n, inner, size,
                     elo, lo, ehi, buf + 3 * size * strip, buf, buf + size * strip, buf + 2 * size * strip, is_min)
        free(buf)
    if failed[0]:
        raise MemoryError("ndimage: could not allocate van Herk buffers")


cdef inline void _window_sum(double* acc, const float* src, Py_ssize_t o, Py_ssize_t p, Py_ssize_t r0, Py_ssize_t n,
                             Py_ssize_t inner, Py_ssize_t c0, Py_ssize_t W, Py_ssize_t size, const Py_ssize_t* elo,
                             Py_ssize_t lo, const Py_ssize_t* ehi, const float* cvrow) noexcept nogil:
    """acc[0 .. W) = the float64 sum of the ``size`` (mode-extended) rows of output row ``p``'s window, strip
    ``c0 ..``: from scratch at the first row ``r0`` of a band, else a running sum (the next row in, the first out)."""
    cdef Py_ssize_t l, q
    cdef const float* a
    cdef const float* b
    if p == r0:
        for l in range(W):
            acc[l] = 0.0
        for q in range(r0 - lo, r0 - lo + size):
            a = _row_at(src, o, q, n, inner, c0, elo, lo, ehi, cvrow)
            for l in range(W):
                acc[l] += a[l]
        return
    a = _row_at(src, o, p - lo + size - 1, n, inner, c0, elo, lo, ehi, cvrow)
    b = _row_at(src, o, p - lo - 1, n, inner, c0, elo, lo, ehi, cvrow)
    for l in range(W):
        acc[l] += <double> a[l] - <double> b[l]


def rows_uniform(const float[:, :, ::1] src, float[:, :, ::1] dst, Py_ssize_t size, const Py_ssize_t[::1] emap_lo,
                 const Py_ssize_t[::1] emap_hi, float cval, Py_ssize_t strip, Py_ssize_t band, int nthreads):
    """float32 box mean over ``size`` positions along the middle axis of ``(outer, n, inner)``: a running sum of
    whole rows in float64 per band of output rows.  ``src`` and ``dst`` must not overlap."""
    cdef Py_ssize_t outer = src.shape[0], n = src.shape[1], inner = src.shape[2]
    cdef Py_ssize_t lo = emap_lo.shape[0]
    cdef Py_ssize_t ns = (inner + strip - 1) // strip, nbd = (n + band - 1) // band
    cdef Py_ssize_t task, o, st, bd, c0, W, l, p, r0, r1, f
    cdef double* acc
    cdef float* cvrow
    cdef float* d
    cdef double inv = 1.0 / size
    cdef int failed[1]
    failed[0] = 0
    if outer == 0 or n == 0 or inner == 0:
        return
    cdef const Py_ssize_t* elo = &emap_lo[0] if lo > 0 else NULL
    cdef const Py_ssize_t* ehi = &emap_hi[0] if emap_hi.shape[0] > 0 else NULL
    with nogil, parallel(num_threads=nthreads):
        acc = <double*> scratch(strip * sizeof(double), failed)
        cvrow = <float*> scratch(strip * sizeof(float), failed)
        if cvrow != NULL:
            for f in range(strip):
                cvrow[f] = cval
        for task in prange(outer * ns * nbd, schedule='dynamic'):
            if acc == NULL or cvrow == NULL:
                failed[0] = 1
                continue
            o = task // (ns * nbd)
            st = (task // nbd) % ns
            bd = task % nbd
            c0 = st * strip
            W = min(strip, inner - c0)
            r0 = bd * band
            r1 = min(n, r0 + band)
            for p in range(r0, r1):
                _window_sum(acc, &src[0, 0, 0], o, p, r0, n, inner, c0, W, size, elo, lo, ehi, cvrow)
                d = &dst[o, p, c0]
                for l in range(W):
                    d[l] = <float> (acc[l] * inv)
        free(acc)
        free(cvrow)
    if failed[0]:
        raise MemoryError("ndimage: could not allocate running-sum buffers")


def box2d(const float[:, :, ::1] src, float[:, :, ::1] dst, Py_ssize_t size_h, const Py_ssize_t[::1] elo_h,
          const Py_ssize_t[::1] ehi_h, Py_ssize_t size_w, const Py_ssize_t[::1] elo_w, const Py_ssize_t[::1] ehi_w,
          float cval, Py_ssize_t band, int nthreads):
    """float32 box mean over ``size_h`` rows and ``size_w`` columns of every plane of ``(outer, n, m)`` in one
    sweep: the running sum of :func:`rows_uniform` down the rows (float64, rounded to float32 per row) and the
    doubling of :func:`line_boxmean` along each result row, which stays in cache -- the same arithmetic as the
    two passes (bitwise), with one read of ``src`` and one write of ``dst`` instead of two each.  Bands of
    ``band`` output rows are the tasks; ``src`` and ``dst`` must not overlap."""
    cdef Py_ssize_t outer = src.shape[0], n = src.shape[1], m = src.shape[2]
    cdef Py_ssize_t lo = elo_h.shape[0], lw = elo_w.shape[0], hw = ehi_w.shape[0]
    cdef Py_ssize_t nbd = (n + band - 1) // band, M = m + lw + hw
    cdef Py_ssize_t task, o, bd, l, p, r0, r1, f
    cdef double* acc
    cdef float* cvrow
    cdef float* ext
    cdef float* row
    cdef double inv = 1.0 / size_h
    cdef float invw = <float> (1.0 / size_w)
    cdef int failed[1]
    failed[0] = 0
    if outer == 0 or n == 0 or m == 0:
        return
    cdef const Py_ssize_t* elo = &elo_h[0] if lo > 0 else NULL
    cdef const Py_ssize_t* ehi = &ehi_h[0] if ehi_h.shape[0] > 0 else NULL
    cdef const Py_ssize_t* ewl = &elo_w[0] if lw > 0 else NULL
    cdef const Py_ssize_t* ewh = &ehi_w[0] if hw > 0 else NULL
    cdef float cv = cval
    with nogil, parallel(num_threads=nthreads):
        acc = <double*> scratch(m * sizeof(double), failed)
        cvrow = <float*> scratch(m * sizeof(float), failed)
        ext = <float*> scratch(M * sizeof(float), failed)
        row = <float*> scratch(m * sizeof(float), failed)
        if cvrow != NULL:
            for f in range(m):
                cvrow[f] = cval
        for task in prange(outer * nbd, schedule='dynamic'):
            if acc == NULL or cvrow == NULL or ext == NULL or row == NULL:
                failed[0] = 1
                continue
            o = task // nbd
            bd = task % nbd
            r0 = bd * band
            r1 = min(n, r0 + band)
            for p in range(r0, r1):
                _window_sum(acc, &src[0, 0, 0], o, p, r0, n, m, 0, m, size_h, elo, lo, ehi, cvrow)
                # the row of vertical means, extended along W by the mode as line_boxmean extends its lines, then
                # the horizontal box
                for l in range(m):
                    row[l] = <float> (acc[l] * inv)
                _fill_ext(<const char*> row, 0, 0, 1, m, 1, 4, ewl, lw, ewh, hw, <const char*> &cv, <char*> ext)
                _boxmean_line(ext, &dst[o, p, 0], m, M, size_w, invw)
        free(acc)
        free(cvrow)
        free(ext)
        free(row)
    if failed[0]:
        raise MemoryError("ndimage: could not allocate running-sum buffers")


# ------------------------------------------------------------------------------------------- footprint passes
cdef struct RowCache:
    # extended source rows a thread read last: slot s holds source row ids[s] (-1: the cval row), L + KW - 1 long
    Py_ssize_t nslots
    Py_ssize_t width
    Py_ssize_t* ids
    Py_ssize_t* age
    Py_ssize_t clock
    char* data


cdef inline RowCache _cache_new(Py_ssize_t nslots, Py_ssize_t width, Py_ssize_t item) noexcept nogil:
    """A thread's row cache (returned by value: assigned inside a parallel block, it is private to the thread);
    ``data`` is NULL when an allocation failed."""
    cdef RowCache rc
    cdef Py_ssize_t s
    rc.nslots = nslots
    rc.width = width
    rc.clock = 0
    rc.ids = <Py_ssize_t*> malloc(nslots * sizeof(Py_ssize_t))
    rc.age = <Py_ssize_t*> malloc(nslots * sizeof(Py_ssize_t))
    rc.data = <char*> malloc(nslots * width * item + 64)
    if rc.ids == NULL or rc.age == NULL or rc.data == NULL:
        free(rc.data)
        rc.data = NULL
        return rc
    for s in range(nslots):
        rc.ids[s] = -2
        rc.age[s] = -1
    return rc


cdef inline void _cache_free(RowCache* rc) noexcept nogil:
    free(rc.ids)
    free(rc.age)
    free(rc.data)


cdef inline char* _cache_row(RowCache* rc, Py_ssize_t row, const char* src, Py_ssize_t L, Py_ssize_t item,
                             const Py_ssize_t* colmap, Py_ssize_t ylo, Py_ssize_t yhi, Py_ssize_t off,
                             const char* cval) noexcept nogil:
    """The extended source row ``row`` (filled on a miss into the least recently used slot)."""
    cdef Py_ssize_t s, best = 0, y
    cdef char* line
    rc.clock += 1
    for s in range(rc.nslots):
        if rc.ids[s] == row:
            rc.age[s] = rc.clock
            return rc.data + s * rc.width * item
        if rc.age[s] < rc.age[best]:
            best = s
    rc.ids[best] = row
    rc.age[best] = rc.clock
    line = rc.data + best * rc.width * item
    if row < 0:
        for y in range(rc.width):
            memcpy(line + y * item, cval, item)
        return line
    _extend_cols(line, src + row * L * item, 0, rc.width, colmap, ylo, yhi, off, item, cval)
    return line


cdef inline void _net(num_t* v, const Py_ssize_t* net, Py_ssize_t ncmp, Py_ssize_t B) noexcept nogil:
    """Selection network on ``B``-lane vectors ``v[i * B:(i + 1) * B]``: step (i, j, kind) leaves the lane-wise
    minimum in i (kind 0 and 1) and the maximum in j (kind 0 and 2); see fastconv/ndimage/_networks.py."""
    cdef Py_ssize_t c, l, kind
    cdef num_t* a
    cdef num_t* b
    cdef num_t x, y
    for c in range(ncmp):
        a = v + net[3 * c] * B
        b = v + net[3 * c + 1] * B
        kind = net[3 * c + 2]
        if kind == 0:
            for l in range(B):
                x = a[l]
                y = b[l]
                a[l] = y if y < x else x
                b[l] = x if y < x else y
        elif kind == 1:
            for l in range(B):
                x = a[l]
                y = b[l]
                a[l] = y if y < x else x
        else:
            for l in range(B):
                x = a[l]
                y = b[l]
                b[l] = x if y < x else y


cdef inline num_t _select(num_t* a, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """The k-th smallest of a[0:n] (Hoare's selection with the median of three as pivot; a is reordered)."""
    cdef Py_ssize_t lo = 0, hi = n - 1, i, j, mid
    cdef num_t piv, t
    while hi > lo:
        mid = lo + (hi - lo) // 2
        if a[mid] < a[lo]:
            t = a[mid]; a[mid] = a[lo]; a[lo] = t
        if a[hi] < a[lo]:
            t = a[hi]; a[hi] = a[lo]; a[lo] = t
        if a[hi] < a[mid]:
            t = a[hi]; a[hi] = a[mid]; a[mid] = t
        piv = a[mid]
        i = lo
        j = hi
        while i <= j:
            while a[i] < piv:
                i += 1
            while piv < a[j]:
                j -= 1
            if i <= j:
                t = a[i]; a[i] = a[j]; a[j] = t
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return a[k]
    return a[k]


cdef enum:
    OP_MIN = 0
    OP_MAX = 1
    OP_RANK_NET = 2
    OP_RANK_SELECT = 3
    OP_RANK_BOX = 4
    OP_BOX_MEDIAN = 5
    OP_RANK_VALID = 6


cdef inline void _box_rank_row(num_t* orow, char** lines, Py_ssize_t L, Py_ssize_t T, Py_ssize_t KW,
                               const Py_ssize_t* colnet, Py_ssize_t ncol, const Py_ssize_t* colperm,
                               const Py_ssize_t* net, Py_ssize_t ncmp, Py_ssize_t slot, Py_ssize_t stride,
                               num_t* work, num_t* cw, num_t* S) noexcept nogil:
    """Rank of a box footprint (T row-taps x KW columns) for one output row: every extended column of T values
    is sorted once (``colnet``, RANK_BYTES of columns at a time) into ``S[t * width + x]``; each block of outputs
    then merges its KW sorted columns with the pruned merge network ``net`` (run g value t in slot
    ``g * stride + t``)."""
    cdef Py_ssize_t B = RANK_BYTES // sizeof(num_t)
    cdef Py_ssize_t width = L + KW - 1, x0, nb, t, g
    x0 = 0
    while x0 < width:
        nb = min(B, width - x0)
        for t in range(T):
            memcpy(cw + t * B, (<const num_t*> lines[t]) + x0, nb * sizeof(num_t))
        _net(cw, colnet, ncol, B)
        for t in range(T):
            memcpy(S + t * width + x0, cw + colperm[t] * B, nb * sizeof(num_t))
        x0 += B
    x0 = 0
    while x0 < L:
        nb = min(B, L - x0)
        for g in range(KW):
            for t in range(T):
                memcpy(work + (g * stride + t) * B, S + t * width + x0 + g, nb * sizeof(num_t))
        _net(work, net, ncmp, B)
        memcpy(orow + x0, work + slot * B, nb * sizeof(num_t))
        x0 += B


cdef inline void _fp_row(num_t* orow, char** lines, Py_ssize_t L, const Py_ssize_t* tap_row,
                         const Py_ssize_t* tap_dx, Py_ssize_t ntaps, int op, Py_ssize_t rank,
                         const Py_ssize_t* net, Py_ssize_t ncmp, num_t* work) noexcept nogil:
    cdef Py_ssize_t x0, x, nb, k, l
    cdef const num_t* p
    cdef num_t v
    if op == OP_MIN or op == OP_MAX:
        p = (<const num_t*> lines[tap_row[0]]) + tap_dx[0]
        for x in range(L):
            orow[x] = p[x]
        for k in range(1, ntaps):
            p = (<const num_t*> lines[tap_row[k]]) + tap_dx[k]
            if op == OP_MIN:
                for x in range(L):
                    v = p[x]
                    orow[x] = v if v < orow[x] else orow[x]
            else:
                for x in range(L):
                    v = p[x]
                    orow[x] = v if v > orow[x] else orow[x]
        return
    cdef Py_ssize_t B = RANK_BYTES // sizeof(num_t)
    if op == OP_RANK_NET:
        x0 = 0
        while x0 < L:
            nb = min(B, L - x0)
            for k in range(ntaps):
                memcpy(work + k * B, (<const num_t*> lines[tap_row[k]]) + tap_dx[k] + x0, nb * sizeof(num_t))
            _net(work, net, ncmp, B)
            memcpy(orow + x0, work + rank * B, nb * sizeof(num_t))
            x0 += B
        return
    cdef Py_ssize_t pop, r
    if op == OP_RANK_VALID:
        # scikit-image's rank filters: only values >= 0 count (negative = outside the image or the mask); no
        # value gives 0; rank -1 minimum, -2 maximum, -3 median (element pop // 2)
        for x in range(L):
            pop = 0
            for k in range(ntaps):
                v = (<const num_t*> lines[tap_row[k]])[tap_dx[k] + x]
                if v >= 0:
                    work[pop] = v
                    pop += 1
            if pop == 0:
                orow[x] = 0
                continue
            r = 0 if rank == -1 else (pop - 1 if rank == -2 else pop // 2)
            orow[x] = _select(work, pop, r)
        return
    for x in range(L):
        for k in range(ntaps):
            work[k] = (<const num_t*> lines[tap_row[k]])[tap_dx[k] + x]
        orow[x] = _select(work, ntaps, rank)


cdef int _box_median_rows(const num_t[:, ::1] src, num_t[:, ::1] out, const Py_ssize_t[:, ::1] rows,
                          const Py_ssize_t[::1] colmap, Py_ssize_t ylo, Py_ssize_t yhi, Py_ssize_t off,
                          Py_ssize_t KW, num_t cv, int nthreads) except -1:
    """nd_filter's median of a box with a straight-line kernel (``_box_median``), output rows in blocks of RB
    over the threads; source rows are read in place (no extended copies, no row cache)."""
    cdef Py_ssize_t R = out.shape[0], L = out.shape[1], Lin = src.shape[1], T = rows.shape[1]
    cdef Py_ssize_t item = sizeof(num_t), EW = MEDIAN_CHUNK_BYTES // sizeof(num_t) + KW - 1
    cdef Py_ssize_t RB = 8, nblk = (R + RB - 1) // RB, blk, r, t, s, y
    cdef const num_t* src0 = &src[0, 0]
    cdef const Py_ssize_t* cmap = &colmap[0]
    cdef const num_t** srows
    cdef num_t** Srows
    cdef num_t* S
    cdef num_t* E
    cdef num_t* cvrow
    cdef int failed[1]
    failed[0] = 0
    with nogil, parallel(num_threads=nthreads):
        srows = <const num_t**> scratch(T * sizeof(num_t*), failed)
        Srows = <num_t**> scratch(2 * T * sizeof(num_t*), failed)
        S = <num_t*> scratch(T * EW * item, failed)
        E = <num_t*> scratch(T * EW * item, failed)
        cvrow = <num_t*> scratch(EW * item, failed)
        if cvrow != NULL:
            for y in range(EW):
                cvrow[y] = cv
        for blk in prange(nblk, schedule='dynamic'):
            if srows == NULL or Srows == NULL or S == NULL or E == NULL or cvrow == NULL:
                failed[0] = 1
                continue
            for r in range(blk * RB, min(R, blk * RB + RB)):
                for t in range(T):
                    s = rows[r, t]
                    if s >= 0:
                        srows[t] = src0 + s * Lin
                    else:
                        srows[t] = NULL
                _box_median(T, KW, srows, cvrow, L, cmap, ylo, yhi, off, cv, E, S, Srows, &out[r, 0])
        free(srows)
        free(Srows)
        free(S)
        free(E)
        free(cvrow)
    if failed[0]:
        raise MemoryError("ndimage: could not allocate row buffers")
    return 0


def nd_filter(const num_t[:, ::1] src, num_t[:, ::1] out, const Py_ssize_t[:, ::1] rows,
              const Py_ssize_t[::1] colmap, Py_ssize_t ylo, Py_ssize_t yhi, Py_ssize_t off,
              const Py_ssize_t[::1] tap_row, const Py_ssize_t[::1] tap_dx, num_t cval, int op, Py_ssize_t rank,
              const Py_ssize_t[:, ::1] net, const Py_ssize_t[:, ::1] colnet, const Py_ssize_t[::1] colperm,
              Py_ssize_t stride, int nthreads):
    """Footprint filter over rows (see the module doc): ``op`` 0 minimum, 1 maximum (scipy's order: the first
    tap, then ``v < res``), 2 rank by the selection network ``net`` (result in slot ``rank``), 3 rank ``rank``
    by selection, 4 rank of a box footprint (all T x KW taps): columns sorted by ``colnet`` (rank t in slot
    ``colperm[t]``), then merged by ``net`` (result in slot ``rank``; run stride ``stride``), 5 the same for the
    median, by the straight-line kernels of ``_ndi_networks.h`` where one exists for the box and type
    (``_box_median_rows``: source rows read in place, only the border outputs' columns extended)."""
    cdef Py_ssize_t R = out.shape[0], L = out.shape[1], Lin = src.shape[1], T = rows.shape[1]
    cdef Py_ssize_t width = colmap.shape[0], ntaps = tap_row.shape[0], ncmp = net.shape[0]
    cdef Py_ssize_t item = sizeof(num_t)
    cdef Py_ssize_t RB = 8, nblk, blk, r, t
    cdef RowCache rc
    cdef char** lines
    cdef num_t* work
    cdef int failed[1]
    cdef num_t cv = cval
    failed[0] = 0
    if R == 0 or L == 0:
        return
    nblk = (R + RB - 1) // RB
    cdef const Py_ssize_t* netp = &net[0, 0] if ncmp > 0 else NULL
    cdef Py_ssize_t ncol = colnet.shape[0], KW = width - L + 1
    cdef const Py_ssize_t* colp = &colnet[0, 0] if ncol > 0 else NULL
    cdef const Py_ssize_t* permp = &colperm[0] if colperm.shape[0] > 0 else NULL
    cdef Py_ssize_t wsize = ntaps
    cdef Py_ssize_t csize = 0, ssize = 0, q
    cdef Py_ssize_t B = RANK_BYTES // item
    if op == OP_BOX_MEDIAN and _has_box_median(<num_t*> NULL, T, KW):
        _box_median_rows(src, out, rows, colmap, ylo, yhi, off, KW, cv, nthreads)
        return
    if op == OP_BOX_MEDIAN:
        op = OP_RANK_BOX
    if op == OP_RANK_NET:
        q = 1
        while q < ntaps:
            q *= 2
        wsize = q * B
    elif op == OP_RANK_BOX:
        q = 1
        while q < KW:
            q *= 2
        wsize = stride * q * B
        q = 1
        while q < T:
            q *= 2
        csize = q * B
        ssize = T * width
    cdef num_t* cw
    cdef num_t* S
    with nogil, parallel(num_threads=nthreads):
        lines = <char**> scratch(T * sizeof(char*), failed)
        work = <num_t*> scratch(wsize * item, failed)
        cw = <num_t*> scratch(csize * item + 64, failed)
        S = <num_t*> scratch(ssize * item + 64, failed)
        rc = _cache_new(2 * T + 1, width, item)
        for blk in prange(nblk, schedule='dynamic'):
            if lines == NULL or work == NULL or cw == NULL or S == NULL or rc.data == NULL:
                failed[0] = 1
                continue
            for r in range(blk * RB, min(R, blk * RB + RB)):
                for t in range(T):
                    lines[t] = _cache_row(&rc, rows[r, t], <const char*> &src[0, 0], Lin, item, &colmap[0], ylo,
                                          yhi, off, <const char*> &cv)
                if op == OP_RANK_BOX:
                    _box_rank_row(&out[r, 0], lines, L, T, KW, colp, ncol, permp, netp, ncmp, rank, stride, work,
                                  cw, S)
                else:
                    _fp_row(&out[r, 0], lines, L, &tap_row[0], &tap_dx[0], ntaps, op, rank, netp, ncmp, work)
        _cache_free(&rc)
        free(lines)
        free(work)
        free(cw)
        free(S)
    if failed[0]:
        raise MemoryError("ndimage: could not allocate row buffers")


def nd_correlate(const double[:, ::1] src, double[:, ::1] out, const Py_ssize_t[:, ::1] rows,
                 const Py_ssize_t[::1] colmap, Py_ssize_t ylo, Py_ssize_t yhi, Py_ssize_t off,
                 const Py_ssize_t[::1] tap_row, const Py_ssize_t[::1] tap_dx, const double[::1] tap_w, double cval,
                 int nthreads):
    """scipy.ndimage.correlate over rows: ``out = 0.0``, then ``out += w * value`` tap by tap in the footprint's
    C order (weights with ``|w| <= DBL_EPSILON`` already left out), in float64."""
    cdef Py_ssize_t R = out.shape[0], L = out.shape[1], Lin = src.shape[1], T = rows.shape[1]
    cdef Py_ssize_t width = colmap.shape[0], ntaps = tap_row.shape[0]
    cdef Py_ssize_t RB = 8, nblk, blk, r, t, k, x
    cdef RowCache rc
    cdef char** lines
    cdef int failed[1]
    cdef double cv = cval, wk
    cdef double* orow
    cdef const double* p
    failed[0] = 0
    if R == 0 or L == 0:
        return
    nblk = (R + RB - 1) // RB
    with nogil, parallel(num_threads=nthreads):
        lines = <char**> scratch(T * sizeof(char*), failed)
        rc = _cache_new(2 * T + 1, width, 8)
        for blk in prange(nblk, schedule='dynamic'):
            if lines == NULL or rc.data == NULL:
                failed[0] = 1
                continue
            for r in range(blk * RB, min(R, blk * RB + RB)):
                for t in range(T):
                    lines[t] = _cache_row(&rc, rows[r, t], <const char*> &src[0, 0], Lin, 8, &colmap[0], ylo,
                                          yhi, off, <const char*> &cv)
                orow = &out[r, 0]
                for x in range(L):
                    orow[x] = 0.0
                for k in range(ntaps):
                    p = (<const double*> lines[tap_row[k]]) + tap_dx[k]
                    wk = tap_w[k]
                    for x in range(L):
                        orow[x] += wk * p[x]
        _cache_free(&rc)
        free(lines)
    if failed[0]:
        raise MemoryError("ndimage: could not allocate row buffers")
