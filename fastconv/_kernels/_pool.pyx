# cython: language_level=3
"""Pooling kernels: window max (with argmax) and window mean, the mean's backward, index scatter/gather
(max-pooling backward, max-unpooling and its backward) and k-max selection along rows.

Windows are described separably, one table per spatial dimension (D, H, W), so regular, adaptive and global
pooling share one kernel: output position ``o`` of a dimension reads the input positions
``start[o] + j * step`` for ``j < count[o]`` (only positions inside the input; padding never appears here).
Every table entry has ``count >= 1``.  For the mean, ``div[o]`` is that dimension's factor of the divisor.

The max follows PyTorch exactly: the window is scanned in row-major order and a value replaces the current
maximum when it is larger or NaN; ties keep the first maximum, a NaN wins (the last NaN of the window), and the
index is a flat offset into the (unpadded) plane.  Because offsets grow in scan order, the same result has an
order-free form -- a NaN beats a number, the larger offset wins among NaNs, the larger value among numbers and
the smaller offset among equal numbers -- which lets partial results be combined in any order.

The forward kernel runs one task per block of output rows (or per column chunk of a row), reading the input
once and recording the argmax in the same pass; each output element is written by exactly one thread.  Regular
2x2 stride-2 windows run explicit vectors of output columns (rows as short as LeNet's), 3x3 windows loops with
compile-time sizes that vectorise across output columns; other regular
windows fold input rows tap by tap; adaptive, global and other windows reduce the window rows column by column
first.  Backward kernels write every input-gradient element from one thread in a fixed order (the mean gathers
per input row, the index scatter owns whole (n, c) planes), so results are bitwise identical for any number of
threads.  Large outputs are written with non-temporal stores.
"""
from cython.parallel cimport parallel, prange
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, qsort
from libc.string cimport memset

from fastconv._kernels.common cimport Geometry, check_scratch, float_t, scratch


cdef extern from *:
    """
    #include <stddef.h>
    #include <stdint.h>
    #include <string.h>
    /* 2x2 windows at stride 2 (the pooling of most networks): output columns [lo, hi) of one output row whose
       window rows start at plane offsets b0 and b1, column 2*ow + off.  Taps in row-major order; a tap replaces
       the running maximum when it is larger or NaN, as in the general loops.  The replacement is a select on the
       bits (a mask from the comparison), not a branch: on real data the comparisons are unpredictable, and the
       general loops' branches cost more than the loads on LeNet-sized planes. */
    #define FC_SEL(T, U, v, u, m) do { U vb_, ub_; memcpy(&vb_, &(v), sizeof(T)); memcpy(&ub_, &(u), sizeof(T)); \
                                       vb_ = (ub_ & (U)(m)) | (vb_ & ~(U)(m)); memcpy(&(v), &vb_, sizeof(T)); } while (0)
    #define FC_MAX2X2(NAME, T, U)                                                                           \
    static void NAME(const T *plane, int64_t b0, int64_t b1, T *restrict vals, int64_t *restrict ids,      \
                     ptrdiff_t lo, ptrdiff_t hi, ptrdiff_t off) {                                           \
        const T *r0 = plane + b0 + off, *r1 = plane + b1 + off;                                             \
        for (ptrdiff_t ow = lo; ow < hi; ow++) {                                                            \
            ptrdiff_t c = 2 * ow;                                                                           \
            T v = r0[c], u;                                                                                 \
            int64_t ix = b0 + off + c, m;                                                                   \
            u = r0[c + 1]; m = -(int64_t)((u > v) | (u != u)); FC_SEL(T, U, v, u, m);                       \
            ix = ((b0 + off + c + 1) & m) | (ix & ~m);                                                      \
            u = r1[c];     m = -(int64_t)((u > v) | (u != u)); FC_SEL(T, U, v, u, m);                       \
            ix = ((b1 + off + c) & m) | (ix & ~m);                                                          \
            u = r1[c + 1]; m = -(int64_t)((u > v) | (u != u)); FC_SEL(T, U, v, u, m);                       \
            ix = ((b1 + off + c + 1) & m) | (ix & ~m);                                                      \
            vals[ow] = v;                                                                                   \
            ids[ow] = ix;                                                                                   \
        }                                                                                                   \
    }
    FC_MAX2X2(fc_max2x2_s_f, float, uint32_t)
    FC_MAX2X2(fc_max2x2_s_d, double, uint64_t)
    /* The same for N output columns at once (rows of at least N; the last vector overlaps the one before it and
       writes some outputs again, with the same values): each window row's 2N inputs are split into their even and
       odd columns, the four taps are taken in the same order with the same rule, and ``w`` records which tap
       holds the maximum, from which the 64-bit offsets are made (in vectors too).  Loads and stores go through
       the vector types (aligned as their elements): as memcpy, GCC split them into halves through the stack,
       and the reloads missed store forwarding.  Outputs are identical to the scalar loop's; LeNet's rows (14
       and 5 outputs) are too short for GCC's own vector loop, which wants 16. */
    #define FC_MAX2X2V(NAME, T, U, N, EVEN, ODD)                                                          \
    static void NAME(const T *plane, int64_t b0, int64_t b1, T *restrict vals, int64_t *restrict ids,       \
                     ptrdiff_t lo, ptrdiff_t hi, ptrdiff_t off) {                                           \
        typedef T V __attribute__((vector_size(N * sizeof(T)), aligned(sizeof(T))));                        \
        typedef U M __attribute__((vector_size(N * sizeof(T))));                                            \
        typedef int64_t I __attribute__((vector_size(N * sizeof(int64_t)), aligned(sizeof(int64_t))));      \
        const I twice = (I)FC_LIST##N(FC_EVEN, N);         /* 2 j: the first column of output j's window */ \
        I wi, ix;                                                                                           \
        const T *r0 = plane + b0 + off, *r1 = plane + b1 + off;                                             \
        ptrdiff_t ow = lo;                                                                                  \
        for (;;) {                                                                                          \
            if (ow + N > hi) ow = hi - N;                                                                   \
            ptrdiff_t c = 2 * ow;                                                                           \
            V a, b, v, u;                                                                                   \
            M m, w;                                                                                         \
            a = *(const V *)(r0 + c); b = *(const V *)(r0 + c + N);                                         \
            v = __builtin_shuffle(a, b, EVEN); u = __builtin_shuffle(a, b, ODD);                            \
            w = (M){0};                                                                                     \
            m = (M)((u > v) | (u != u)); v = (V)(((M)u & m) | ((M)v & ~m)); w = (m & 1) | (w & ~m);         \
            a = *(const V *)(r1 + c); b = *(const V *)(r1 + c + N);                                         \
            u = __builtin_shuffle(a, b, EVEN);                                                              \
            m = (M)((u > v) | (u != u)); v = (V)(((M)u & m) | ((M)v & ~m)); w = (m & 2) | (w & ~m);         \
            u = __builtin_shuffle(a, b, ODD);                                                               \
            m = (M)((u > v) | (u != u)); v = (V)(((M)u & m) | ((M)v & ~m)); w = (m & 3) | (w & ~m);         \
            *(V *)(vals + ow) = v;                                                                          \
            wi = __builtin_convertvector(w, I);                                                             \
            ix = (b0 + off + 2 * ow) + twice + (wi & 1) + (-((wi >> 1) & 1) & (b1 - b0));                   \
            *(I *)(ids + ow) = ix;                                                                          \
            if (ow + N >= hi) break;                                                                        \
            ow += N;                                                                                        \
        }                                                                                                   \
    }
    /* unzip masks of N lanes of the element width U (simd.h's FC_EVEN / FC_ODD) */
    #define FC_UNZIP(U, N, F) ((U __attribute__((vector_size(N * sizeof(U)))))FC_LIST##N(F, N))
    FC_MAX2X2V(fc_max2x2_v8_f, float, uint32_t, 8, FC_UNZIP(uint32_t, 8, FC_EVEN), FC_UNZIP(uint32_t, 8, FC_ODD))
    FC_MAX2X2V(fc_max2x2_v4_f, float, uint32_t, 4, FC_UNZIP(uint32_t, 4, FC_EVEN), FC_UNZIP(uint32_t, 4, FC_ODD))
    FC_MAX2X2V(fc_max2x2_v4_d, double, uint64_t, 4, FC_UNZIP(uint64_t, 4, FC_EVEN), FC_UNZIP(uint64_t, 4, FC_ODD))
    FC_MAX2X2V(fc_max2x2_v2_d, double, uint64_t, 2, FC_UNZIP(uint64_t, 2, FC_EVEN), FC_UNZIP(uint64_t, 2, FC_ODD))
    /* Columns [lo, hi): the widest vector the row fills, else the scalar loop. */
    static void fc_max2x2_f(const float *plane, int64_t b0, int64_t b1, float *vals, int64_t *ids, ptrdiff_t lo,
                            ptrdiff_t hi, ptrdiff_t off) {
        if (hi - lo >= 8) fc_max2x2_v8_f(plane, b0, b1, vals, ids, lo, hi, off);
        else if (hi - lo >= 4) fc_max2x2_v4_f(plane, b0, b1, vals, ids, lo, hi, off);
        else fc_max2x2_s_f(plane, b0, b1, vals, ids, lo, hi, off);
    }
    static void fc_max2x2_d(const double *plane, int64_t b0, int64_t b1, double *vals, int64_t *ids, ptrdiff_t lo,
                            ptrdiff_t hi, ptrdiff_t off) {
        if (hi - lo >= 4) fc_max2x2_v4_d(plane, b0, b1, vals, ids, lo, hi, off);
        else if (hi - lo >= 2) fc_max2x2_v2_d(plane, b0, b1, vals, ids, lo, hi, off);
        else fc_max2x2_s_d(plane, b0, b1, vals, ids, lo, hi, off);
    }
    """
    void fc_max2x2_f(const float* plane, int64_t b0, int64_t b1, float* vals, int64_t* ids, Py_ssize_t lo,
                     Py_ssize_t hi, Py_ssize_t off) noexcept nogil
    void fc_max2x2_d(const double* plane, int64_t b0, int64_t b1, double* vals, int64_t* ids, Py_ssize_t lo,
                     Py_ssize_t hi, Py_ssize_t off) noexcept nogil


cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    #if defined(__SSE2__)
    #include <emmintrin.h>
    /* Copy n bytes with non-temporal stores: output that is not read again soon bypasses the cache, which
       saves the read-for-ownership of every written line. */
    static void fc_stream_copy(void *dst, const void *src, size_t n) {
        char *d = (char *)dst;
        const char *s = (const char *)src;
        size_t head = (16 - ((uintptr_t)d & 15)) & 15;
        if (head > n) head = n;
        memcpy(d, s, head);
        d += head; s += head; n -= head;
        while (n >= 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)s);
            __m128i b = _mm_loadu_si128((const __m128i *)(s + 16));
            __m128i c = _mm_loadu_si128((const __m128i *)(s + 32));
            __m128i e = _mm_loadu_si128((const __m128i *)(s + 48));
            _mm_stream_si128((__m128i *)d, a);
            _mm_stream_si128((__m128i *)(d + 16), b);
            _mm_stream_si128((__m128i *)(d + 32), c);
            _mm_stream_si128((__m128i *)(d + 48), e);
            d += 64; s += 64; n -= 64;
        }
        while (n >= 16) {
            _mm_stream_si128((__m128i *)d, _mm_loadu_si128((const __m128i *)s));
            d += 16; s += 16; n -= 16;
        }
        memcpy(d, s, n);
    }
    static void fc_store_fence(void) { _mm_sfence(); }
    #else
    static void fc_stream_copy(void *dst, const void *src, size_t n) { memcpy(dst, src, n); }
    static void fc_store_fence(void) { }
    #endif

    /* k-max selection: order by value descending with NaN largest, ties by position ascending. */
    typedef struct { double v; int64_t i; } fc_vi;
    static int fc_cmp_desc(const void *pa, const void *pb) {
        const fc_vi *a = (const fc_vi *)pa, *b = (const fc_vi *)pb;
        int na = a->v != a->v, nb = b->v != b->v;
        if (na != nb) return na ? -1 : 1;
        if (!na && a->v != b->v) return a->v > b->v ? -1 : 1;
        return (a->i > b->i) - (a->i < b->i);
    }
    static int fc_cmp_pos(const void *pa, const void *pb) {
        const fc_vi *a = (const fc_vi *)pa, *b = (const fc_vi *)pb;
        return (a->i > b->i) - (a->i < b->i);
    }
    """
    void fc_stream_copy(void *dst, const void *src, size_t n) noexcept nogil
    void fc_store_fence() noexcept nogil
    ctypedef struct fc_vi:
        double v
        int64_t i
    int fc_cmp_desc(const void *pa, const void *pb) noexcept nogil
    int fc_cmp_pos(const void *pa, const void *pb) noexcept nogil


cdef enum:
    # Planes at least this long, in bytes, are scattered in a per-thread buffer and streamed out -- when the whole
    # output is at least STREAM_TOTAL_BYTES: a smaller one stays in the caches for whatever reads it next (the
    # gradient of a LeNet pooling layer went to memory and back, 1.5x the time of writing it in place).
    STREAM_MIN_BYTES = 256
    STREAM_TOTAL_BYTES = 16 << 20


# ----------------------------------------------------------------------------------------------- forward
# Row kernels.  ``vals``/``ids`` (max) or ``vals`` alone (sum) are indexed by absolute output column.  The max
# keeps (value, index) and replaces it by a tap that is larger or NaN; the sum adds taps in row-major order.

cdef inline void _max_fold(const float_t* row, int64_t rowbase, float_t* vals, int64_t* ids,
                           Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t sw, Py_ssize_t off, Py_ssize_t dw,
                           Py_ssize_t kw, bint first) noexcept nogil:
    """Fold one input row into columns [lo, hi) whose windows are regular (taps ow*sw + off + t*dw).

    Tap-outer, column-inner loops without branches, so the compiler vectorises across columns."""
    cdef Py_ssize_t ow, t, a
    cdef float_t u, v
    cdef bint take
    for t in range(kw):
        a = off + t * dw
        if first and t == 0:
            for ow in range(lo, hi):
                vals[ow] = row[ow * sw + a]
                ids[ow] = rowbase + ow * sw + a
        else:
            for ow in range(lo, hi):
                u = row[ow * sw + a]
                v = vals[ow]
                take = (u > v) | (u != u)
                vals[ow] = u if take else v
                ids[ow] = (rowbase + ow * sw + a) if take else ids[ow]


cdef inline void _window(bint is_max, const float_t* plane, int64_t b0, int64_t b1, int64_t b2,
                         float_t* vals, int64_t* ids, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t off,
                         int NR, int KW, int SW) noexcept nogil:
    """Whole windows of NR input rows (plane offsets b0, b1, b2) x KW unit-step taps at stride SW for columns
    [lo, hi): with compile-time sizes the window unrolls and the loop vectorises across columns."""
    cdef const float_t* rows[3]
    cdef int64_t bases[3]
    cdef Py_ssize_t ow, q, a
    cdef int64_t ix
    cdef float_t v, u
    cdef bint take
    bases[0] = b0
    bases[1] = b1
    bases[2] = b2
    for q in range(NR):
        rows[q] = plane + bases[q]
    for ow in range(lo, hi):
        a = ow * SW + off
        v = rows[0][a]
        ix = b0 + a
        for q in range(1, NR * KW):
            u = rows[q // KW][a + q % KW]
            if is_max:
                take = (u > v) | (u != u)
                v = u if take else v
                ix = (bases[q // KW] + a + q % KW) if take else ix
            else:
                v = v + u
        vals[ow] = v
        if is_max:
            ids[ow] = ix


cdef inline void _table(bint is_max, const float_t* row, int64_t rowbase, float_t* vals, int64_t* ids,
                        Py_ssize_t lo, Py_ssize_t hi, const int64_t* ws, const int64_t* wc, Py_ssize_t dw,
                        bint first) noexcept nogil:
    """Fold one input row into columns [lo, hi) using the W window table."""
    cdef Py_ssize_t ow, t, a, b
    cdef float_t v, u
    cdef int64_t ix
    cdef bint take
    for ow in range(lo, hi):
        a = ws[ow]
        v = row[a]
        ix = a
        for t in range(1, wc[ow]):
            b = a + t * dw
            u = row[b]
            if is_max:
                take = (u > v) | (u != u)
                v = u if take else v
                ix = b if take else ix
            else:
                v = v + u
        if first:
            vals[ow] = v
            if is_max:
                ids[ow] = rowbase + ix
        elif is_max:
            take = (v > vals[ow]) | (v != v)
            vals[ow] = v if take else vals[ow]
            ids[ow] = rowbase + ix if take else ids[ow]
        else:
            vals[ow] = vals[ow] + v


cdef inline void _columns(bint is_max, const float_t* plane, Py_ssize_t H, Py_ssize_t W,
                          int64_t d0, int64_t nd, Py_ssize_t dd, int64_t h0, int64_t nh, Py_ssize_t dh,
                          float_t* vals, int64_t* ids, float_t* cols, int64_t* cids, Py_ssize_t c0, Py_ssize_t c1,
                          const int64_t* ws, const int64_t* wc, Py_ssize_t dw) noexcept nogil:
    """Columns [c0, c1) from the W window table: the window rows are first reduced column by column
    (vectorised; rows in scan order), then the columns of each window.

    The max of the columns uses the order-free form of the scan rule: a NaN beats a number and, among NaNs,
    the larger offset (the last one scanned) wins; among numbers the larger value wins and, on ties, the
    smaller offset (the first one scanned)."""
    cdef Py_ssize_t w0 = W, w1 = 0, i, j, w, ow, t, a
    cdef const float_t* row
    cdef int64_t rowbase, ix, ui
    cdef float_t v, u
    cdef bint take, first = True
    for ow in range(c0, c1):     # the input columns the windows read (dilated windows are not monotone)
        w0 = min(w0, ws[ow])
        w1 = max(w1, ws[ow] + (wc[ow] - 1) * dw + 1)
    for i in range(nd):
        for j in range(nh):
            rowbase = ((d0 + i * dd) * H + h0 + j * dh) * W
            row = plane + rowbase
            if first:
                for w in range(w0, w1):
                    cols[w] = row[w]
                    if is_max:
                        cids[w] = rowbase + w
            elif is_max:
                for w in range(w0, w1):
                    u = row[w]
                    v = cols[w]
                    take = (u > v) | (u != u)
                    cols[w] = u if take else v
                    cids[w] = (rowbase + w) if take else cids[w]
            else:
                for w in range(w0, w1):
                    cols[w] = cols[w] + row[w]
            first = False
    for ow in range(c0, c1):
        a = ws[ow]
        v = cols[a]
        ix = cids[a] if is_max else 0
        for t in range(1, wc[ow]):
            u = cols[a + t * dw]
            if is_max:
                ui = cids[a + t * dw]
                if u != u:
                    take = (v == v) | (ui > ix)
                else:
                    take = (v == v) & ((u > v) | ((u == v) & (ui < ix)))
                v = u if take else v
                ix = ui if take else ix
            else:
                v = v + u
        vals[ow] = v
        if is_max:
            ids[ow] = ix


cdef inline void _out_row(bint is_max, const float_t* plane, Py_ssize_t H, Py_ssize_t W,
                          int64_t d0, int64_t nd, Py_ssize_t dd, int64_t h0, int64_t nh, Py_ssize_t dh,
                          float_t* vals, int64_t* ids, float_t* cols, int64_t* cids, Py_ssize_t c0, Py_ssize_t c1,
                          Py_ssize_t lo, Py_ssize_t hi, const int64_t* ws, const int64_t* wc, Py_ssize_t dw,
                          Py_ssize_t sw, Py_ssize_t pw, Py_ssize_t kw) noexcept nogil:
    """Output columns [c0, c1) of one output row whose window rows are (d0 + i dd, h0 + j dh).

    Regular columns [lo, hi) run whole-window loops for 2x2 and 3x3 windows, or (max) row folds, with the
    table-driven border columns folded row by row; everything else (adaptive and global windows, other means)
    reduces columns first (:func:`_columns`, buffers ``cols``/``cids`` of W elements)."""
    cdef Py_ssize_t a = max(c0, lo), b = min(c1, hi), i, j, n = 0
    cdef int64_t base[3]
    cdef int64_t rowbase
    cdef int kind = 0
    cdef bint first = True
    if a < b and dw == 1 and nd * nh == kw:
        if kw == 2 and sw == 2:
            kind = 1
        elif kw == 3 and sw == 2:
            kind = 2
        elif kw == 3 and sw == 1:
            kind = 3
    if a >= b or (kind == 0 and not is_max):
        _columns(is_max, plane, H, W, d0, nd, dd, h0, nh, dh, vals, ids, cols, cids, c0, c1, ws, wc, dw)
        return
    for i in range(nd):
        for j in range(nh):
            rowbase = ((d0 + i * dd) * H + h0 + j * dh) * W
            if n < 3:
                base[n] = rowbase
            n += 1
            _table(is_max, plane + rowbase, rowbase, vals, ids, c0, a, ws, wc, dw, first)
            _table(is_max, plane + rowbase, rowbase, vals, ids, b, c1, ws, wc, dw, first)
            first = False
    if kind == 1 and is_max:
        if float_t is float:
            fc_max2x2_f(plane, base[0], base[1], vals, ids, a, b, -pw)
        else:
            fc_max2x2_d(plane, base[0], base[1], vals, ids, a, b, -pw)
    elif kind == 1:
        _window(is_max, plane, base[0], base[1], 0, vals, ids, a, b, -pw, 2, 2, 2)
    elif kind == 2:
        _window(is_max, plane, base[0], base[1], base[2], vals, ids, a, b, -pw, 3, 3, 2)
    elif kind == 3:
        _window(is_max, plane, base[0], base[1], base[2], vals, ids, a, b, -pw, 3, 3, 1)
    else:
        first = True
        for i in range(nd):
            for j in range(nh):
                rowbase = ((d0 + i * dd) * H + h0 + j * dh) * W
                _max_fold(plane + rowbase, rowbase, vals, ids, a, b, sw, -pw, dw, kw, first)
                first = False


def forward(const float_t[:, :, :, ::1] x, float_t[:, :, :, ::1] out, int64_t[:, :, :, ::1] idx,
            const int64_t[::1] ds, const int64_t[::1] dc, const int64_t[::1] hs, const int64_t[::1] hc,
            const int64_t[::1] ws, const int64_t[::1] wc,
            const float_t[::1] ddiv, const float_t[::1] hdiv, const float_t[::1] wdiv, Geometry geom, *,
            bint is_max, bint with_idx, double divisor, Py_ssize_t lo, Py_ssize_t hi,
            Py_ssize_t nchunks, Py_ssize_t rows_per_task, bint stream, int nthreads):
    """Window max (``is_max``; argmax offsets into ``idx`` if ``with_idx``) or mean of x (P, D, H, W) into
    out (P, OD, OH, OW).

    Tables ``ds/dc, hs/hc, ws/wc`` (start, count per output position); the steps between taps are the dilations
    ``geom.dd, dh, dw`` (1 for the mean); columns ``[lo, hi)`` are regular (``start = ow*sw - pw``, ``kw``
    taps, from ``geom``).  The mean divides by ``divisor`` when it is not 0, else by
    ``ddiv[od] * hdiv[oh] * wdiv[ow]`` (integers stored as floats, so the product is the correctly rounded
    integer product, as PyTorch's).  A task computes ``rows_per_task`` consecutive output rows, or a chunk of
    one row when ``nchunks > 1``.  With ``stream`` (only for ``nchunks == 1``) a task computes into a per-thread
    buffer and streams the block out with non-temporal stores.  All arguments are validated by the caller.
    """
    cdef Py_ssize_t dd = geom.dd, dh = geom.dh, dw = geom.dw, sw = geom.sw, pw = geom.pw, kw = geom.kw
    cdef Py_ssize_t P = x.shape[0], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OD = out.shape[1], OH = out.shape[2], OW = out.shape[3]
    cdef Py_ssize_t nch = max(1, min(nchunks, OW))
    cdef Py_ssize_t rb = 1 if nch > 1 else max(1, min(rows_per_task, OH))
    cdef Py_ssize_t nrb = (OH + rb - 1) // rb
    cdef Py_ssize_t csz = (OW + nch - 1) // nch
    cdef Py_ssize_t ntask = P * OD * nrb * nch
    cdef Py_ssize_t task, rem, p, od, oh, oh0, oh1, ch, c0, c1, ow, n
    cdef float_t dv
    cdef float_t* vals
    cdef int64_t* ids
    cdef float_t* vbuf
    cdef float_t* cols
    cdef int64_t* ibuf
    cdef int64_t* cids
    cdef int failed[1]
    failed[0] = 0
    if ntask == 0:
        return
    stream = stream and nch == 1
    with_idx = with_idx and is_max
    with nogil, parallel(num_threads=nthreads):
        vbuf = <float_t*> scratch(rb * OW * sizeof(float_t), failed)
        ibuf = <int64_t*> scratch(rb * OW * sizeof(int64_t), failed)
        cols = <float_t*> scratch(W * sizeof(float_t), failed)
        cids = <int64_t*> scratch(W * sizeof(int64_t), failed)
        if vbuf == NULL or ibuf == NULL or cols == NULL or cids == NULL:
            failed[0] = 1
        else:
            for task in prange(ntask, schedule='static'):
                rem = task
                ch = rem % nch
                rem = rem // nch
                oh0 = (rem % nrb) * rb
                rem = rem // nrb
                od = rem % OD
                p = rem // OD
                oh1 = min(OH, oh0 + rb)
                c0 = ch * csz
                c1 = min(OW, c0 + csz)
                if c0 >= c1:
                    continue
                for oh in range(oh0, oh1):
                    vals = vbuf + (oh - oh0) * OW if stream else &out[p, od, oh, 0]
                    ids = &idx[p, od, oh, 0] if with_idx and not stream else ibuf + (oh - oh0) * OW
                    if is_max:
                        _out_row(True, &x[p, 0, 0, 0], H, W, ds[od], dc[od], dd, hs[oh], hc[oh], dh, vals, ids,
                                 cols, cids, c0, c1, lo, hi, &ws[0], &wc[0], dw, sw, pw, kw)
                    else:
                        _out_row(False, &x[p, 0, 0, 0], H, W, ds[od], dc[od], 1, hs[oh], hc[oh], 1, vals, ids,
                                 cols, cids, c0, c1, lo, hi, &ws[0], &wc[0], 1, sw, pw, kw)
                        dv = <float_t> divisor if divisor != 0 else ddiv[od] * hdiv[oh]
                        if divisor != 0:
                            for ow in range(c0, c1):
                                vals[ow] = vals[ow] / dv
                        else:
                            for ow in range(c0, c1):
                                vals[ow] = vals[ow] / (dv * wdiv[ow])
                if stream:
                    n = (oh1 - oh0) * OW
                    fc_stream_copy(&out[p, od, oh0, 0], vbuf, n * sizeof(float_t))
                    if with_idx:
                        fc_stream_copy(&idx[p, od, oh0, 0], ibuf, n * sizeof(int64_t))
            fc_store_fence()
        free(vbuf)
        free(ibuf)
        free(cols)
        free(cids)
    check_scratch(failed[0], "pooling", (rb * OW + W) * (sizeof(float_t) + sizeof(int64_t)))


# ----------------------------------------------------------------------------------------------- mean backward
def avg_backward(const float_t[:, :, :, ::1] gy, float_t[:, :, :, ::1] gx,
                 const int64_t[::1] dfirst, const int64_t[::1] dcount, const int64_t[::1] hfirst,
                 const int64_t[::1] hcount, const int64_t[::1] wfirst, const int64_t[::1] wcount,
                 const float_t[::1] ddiv, const float_t[::1] hdiv, const float_t[::1] wdiv, Geometry geom, *,
                 double divisor, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t rows_per_task, bint stream,
                 int nthreads):
    """Adjoint of the mean of :func:`forward`, gathered: gx (P, D, H, W) at (d, h, w) is the sum of gy / divisor
    over the outputs whose windows contain (d, h, w), i.e. od in ``dfirst[d] + [0, dcount[d])`` and likewise for
    h and w (windows are monotone, so these are ranges).  One task per block of ``rows_per_task`` input rows:
    each input element is written once, by one thread, in a fixed summation order.

    When every column is regular (``[lo, hi)`` covers the output row) and the W windows of ``geom`` do not
    overlap and are unpadded (``kw == sw``, ``pw == 0``), each output feeds a tile of ``kw`` inputs
    (``gx[ow * kw + t] = row[ow]``).  ``stream`` as in :func:`forward`.
    """
    cdef Py_ssize_t P = gx.shape[0], D = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef Py_ssize_t OD = gy.shape[1], OH = gy.shape[2], OW = gy.shape[3]
    cdef Py_ssize_t tile = geom.kw if (geom.kw == geom.sw and geom.pw == 0 and lo == 0 and hi == OW) else 0
    cdef Py_ssize_t rb = max(1, min(rows_per_task, H))
    cdef Py_ssize_t nrb = (H + rb - 1) // rb
    cdef Py_ssize_t ntask = P * D * nrb
    cdef Py_ssize_t task, rem, p, d, h, h0, h1, i, j, od, oh, ow, w, t, c, f
    cdef float_t dv, acc
    cdef float_t* g
    cdef float_t* rows
    cdef float_t* dst
    cdef const float_t* grow
    cdef int failed[1]
    failed[0] = 0
    if ntask == 0:
        return
    with nogil, parallel(num_threads=nthreads):
        g = <float_t*> scratch(OW * sizeof(float_t), failed)
        rows = <float_t*> scratch(rb * W * sizeof(float_t), failed)
        if g == NULL or rows == NULL:
            failed[0] = 1
        else:
            for task in prange(ntask, schedule='static'):
                rem = task
                h0 = (rem % nrb) * rb
                rem = rem // nrb
                d = rem % D
                p = rem // D
                h1 = min(H, h0 + rb)
                for h in range(h0, h1):
                    # g[ow] = sum over the (od, oh) whose windows hold (d, h) of gy / divisor
                    for ow in range(OW):
                        g[ow] = 0
                    for i in range(dcount[d]):
                        od = dfirst[d] + i
                        for j in range(hcount[h]):
                            oh = hfirst[h] + j
                            grow = &gy[p, od, oh, 0]
                            if divisor != 0:
                                dv = <float_t> divisor
                                for ow in range(OW):
                                    g[ow] = g[ow] + grow[ow] / dv
                            else:
                                dv = ddiv[od] * hdiv[oh]
                                for ow in range(OW):
                                    g[ow] = g[ow] + grow[ow] / (dv * wdiv[ow])
                    dst = rows + (h - h0) * W if stream else &gx[p, d, h, 0]
                    if tile > 0:
                        for t in range(tile):
                            for ow in range(OW):
                                dst[ow * tile + t] = g[ow]
                        for w in range(OW * tile, W):
                            dst[w] = 0
                    else:
                        for w in range(W):
                            acc = 0
                            f = wfirst[w]
                            for c in range(wcount[w]):
                                acc = acc + g[f + c]
                            dst[w] = acc
                if stream:
                    fc_stream_copy(&gx[p, d, h0, 0], rows, (h1 - h0) * W * sizeof(float_t))
            fc_store_fence()
        free(g)
        free(rows)
    check_scratch(failed[0], "average pooling backward", (OW + rb * W) * sizeof(float_t))


# ----------------------------------------------------------------------------------------------- indices
def scatter(const float_t[:, ::1] src, const int64_t[:, ::1] idx, float_t[:, ::1] out, bint accumulate,
            int nthreads):
    """Per plane p: out[p] = 0, then out[p, idx[p, m]] += src[p, m] (``accumulate``) or = src[p, m].

    Returns the number of planes holding an index outside [0, out.shape[1]); those indices are skipped.
    Planes are scattered in a per-thread buffer and streamed out when it is worth it.
    """
    cdef Py_ssize_t P = src.shape[0], M = src.shape[1], S = out.shape[1]
    cdef Py_ssize_t p, m
    cdef int64_t j
    cdef float_t* dst
    cdef float_t* buf
    cdef const float_t* s
    cdef const int64_t* ix
    cdef bint stream = (S * sizeof(float_t) >= STREAM_MIN_BYTES and S * sizeof(float_t) <= 512 * 1024
                        and P * S * sizeof(float_t) >= STREAM_TOTAL_BYTES)
    cdef Py_ssize_t bad = 0
    cdef int failed[1]
    failed[0] = 0
    if P == 0 or S == 0:
        return 0
    with nogil, parallel(num_threads=nthreads):
        buf = <float_t*> scratch(S * sizeof(float_t), failed) if stream else NULL
        if stream and buf == NULL:
            failed[0] = 1
        else:
            for p in prange(P, schedule='static'):
                dst = buf if stream else &out[p, 0]
                memset(dst, 0, S * sizeof(float_t))
                s = &src[p, 0]
                ix = &idx[p, 0]
                if accumulate:
                    for m in range(M):
                        j = ix[m]
                        if <uint64_t> j >= <uint64_t> S:
                            bad += 1
                            break
                        dst[j] = dst[j] + s[m]
                else:
                    for m in range(M):
                        j = ix[m]
                        if <uint64_t> j >= <uint64_t> S:
                            bad += 1
                            break
                        dst[j] = s[m]
                if stream:
                    fc_stream_copy(&out[p, 0], dst, S * sizeof(float_t))
            fc_store_fence()
        free(buf)
    check_scratch(failed[0], "scatter", S * sizeof(float_t))
    return bad


def gather(const float_t[:, ::1] src, const int64_t[:, ::1] idx, float_t[:, ::1] out, int nthreads):
    """out[p, m] = src[p, idx[p, m]]; returns the number of planes with an index outside [0, src.shape[1])."""
    cdef Py_ssize_t P = idx.shape[0], M = idx.shape[1], S = src.shape[1]
    cdef Py_ssize_t p, m
    cdef int64_t j
    cdef Py_ssize_t bad = 0
    for p in prange(P, nogil=True, schedule='static', num_threads=nthreads):
        for m in range(M):
            j = idx[p, m]
            if <uint64_t> j >= <uint64_t> S:
                bad += 1
                break
            out[p, m] = src[p, j]
    return bad


# ----------------------------------------------------------------------------------------------- k-max
def kmax(const float_t[:, ::1] x, float_t[:, ::1] vals, int64_t[:, ::1] idx, bint sort_values, int nthreads):
    """The k = vals.shape[1] largest entries of each row of x (NaN largest, ties by position).

    ``sort_values``: descending by value; otherwise in their original (position) order.
    """
    cdef Py_ssize_t R = x.shape[0], L = x.shape[1], K = vals.shape[1]
    cdef Py_ssize_t r, i
    cdef fc_vi* buf
    cdef int failed[1]
    failed[0] = 0
    if R == 0 or K == 0:
        return
    with nogil, parallel(num_threads=nthreads):
        buf = <fc_vi*> scratch(L * sizeof(fc_vi), failed)
        if buf == NULL:
            failed[0] = 1
        else:
            for r in prange(R, schedule='static'):
                for i in range(L):
                    buf[i].v = x[r, i]
                    buf[i].i = i
                qsort(buf, L, sizeof(fc_vi), fc_cmp_desc)
                if not sort_values:
                    qsort(buf, K, sizeof(fc_vi), fc_cmp_pos)
                for i in range(K):
                    vals[r, i] = x[r, buf[i].i]
                    idx[r, i] = buf[i].i
        free(buf)
    check_scratch(failed[0], "kmax_pool", L * sizeof(fc_vi))
