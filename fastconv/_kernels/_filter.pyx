# cython: language_level=3
"""Boundary-mode correlation and small element-wise kernels for :mod:`fastconv.filters`.

:func:`correlate` works on 2-D views prepared by ``fastconv/filters/_engine.py``:

* ``src`` is ``(R_in, L_in)`` and ``out`` is ``(R_out, L_out)``.  A column ``x`` of a row is the pair
  ``(j, c) = (x // D, x % D)``: ``j`` runs along the filtered "column axis" and ``c`` over the ``D`` contiguous
  elements of the axes after it (``D = 1`` when the column axis is the last one).
* ``rows[r, t]`` is the source row that row-tap ``t`` of output row ``r`` reads, already resolved by the boundary
  mode of every row axis, or ``-1`` for a row that lies entirely in the ``cval`` region.
* The non-zero weights form a tap list: tap ``k`` reads row-tap ``tap_row[k]`` at column offset ``dx_k``
  (``0 <= dx_k < KW``) with weight ``tap_w[k]``; the kernel receives ``tap_shift[k] = (dx_k - off) * D``.
* ``colmap[j + dx]`` (length ``n_out + KW - 1``) is the source column group that output column group ``j`` and
  offset ``dx`` read, resolved by the boundary mode, ``-1`` for ``cval``.  On the interior ``jlo <= j < jhi`` it
  is ``j + dx - off`` for every ``dx``, so there the kernel reads the source row directly at ``tap_shift``.
  Only the few columns near the ends consult ``colmap``: their extended values are gathered into a small
  per-thread edge buffer.  No padded copy of the image is ever made.

Outputs are computed in blocks of ``NB`` consecutive columns (8 vectors: 64 float / 32 double with 32-byte
vectors, twice that with the AVX-512 build's 64-byte ones; :func:`block_width`) whose accumulators
stay in vector registers while every tap is added, and stored through an epilogue (plain, square, add square, or
``sqrt(acc + square) / scale``: the edge filters' gradient magnitude without extra passes).
Row-tap kernels compute two output rows per block where their taps overlap, loading each source vector once; a
pass with one column tap and at least ``FC_RB_ROWS`` row taps (a separable filter's pass along any axis but the
last) computes ``FC_RB_ROWS`` output rows per block instead, each source row loaded once for all of them.  Every
path adds an output's taps in the same order.

Work is split into tasks (output row, chunk of columns) whose chunking the caller derives from the shape only;
every output element is written by exactly one task with a fixed summation order, so results do not depend on
the number of threads.
"""
import numpy as np

from cython.parallel cimport parallel, prange
from libc.math cimport sqrt
from libc.stdlib cimport free
from libc.string cimport memset

from fastconv._kernels.common cimport (FC_PAIR_VECS, FC_RB_ROWS, FC_RB_VECS, VECTOR_BYTES, check_scratch, float_t,
                                       scratch, vd, vec_t, vf)

cdef enum:
    BLOCK_FLOATS = 2 * VECTOR_BYTES     # the largest block of outputs: 8 vectors of float


cdef inline void _finish(float_t* dst, const float_t* val, Py_ssize_t n, int epi, float_t scale) noexcept nogil:
    """Store ``n`` results through the epilogue: 0 ``dst = v``, 1 ``dst = v*v``, 2 ``dst += v*v``,
    3 ``dst = sqrt(dst + v*v) / scale`` (the squared-gradient sum and magnitude of the edge filters),
    4 ``dst += v`` (sums of filters: Laplacians), 5 ``dst = v - dst`` (differences: difference of Gaussians)."""
    cdef Py_ssize_t i
    cdef float_t sq
    if epi == 0:
        for i in range(n):
            dst[i] = val[i]
    elif epi == 1:
        for i in range(n):
            dst[i] = val[i] * val[i]
    elif epi == 2:
        for i in range(n):
            sq = val[i] * val[i]
            dst[i] = dst[i] + sq
    elif epi == 3:
        for i in range(n):
            sq = val[i] * val[i]
            dst[i] = (<float_t> sqrt(dst[i] + sq)) / scale
    elif epi == 4:
        for i in range(n):
            dst[i] = dst[i] + val[i]
    else:
        for i in range(n):
            dst[i] = val[i] - dst[i]


cdef inline void _store(float_t* dst, const vec_t* acc, int nv, int epi, float_t scale) noexcept nogil:
    """Store ``nv`` (<= 8) accumulator vectors to ``dst`` through the epilogue."""
    cdef float_t tmp[BLOCK_FLOATS]
    cdef Py_ssize_t V = sizeof(vec_t) // sizeof(float_t)
    cdef int q
    if epi == 0:
        for q in range(nv):
            (<vec_t*> (dst + q * V))[0] = acc[q]
    else:
        for q in range(nv):
            (<vec_t*> (tmp + q * V))[0] = acc[q]
        _finish(dst, tmp, nv * V, epi, scale)


cdef inline void _block_vectors(const float_t* src, Py_ssize_t L_in, const Py_ssize_t* rows_r,
                                const Py_ssize_t* tap_row, const Py_ssize_t* tap_shift, const float_t* tap_w,
                                Py_ssize_t ntaps, float_t cval, Py_ssize_t x0, float_t* dst, Py_ssize_t nv, int epi,
                                float_t scale, vec_t* tag) noexcept nogil:
    """The sums of :func:`_block_full` on ``nv`` (<= 8) vectors of outputs: 8 for a full block (a literal, so
    that the inlined copy keeps its accumulators in registers), fewer for the whole vectors of a segment's tail."""
    cdef vec_t acc[8]
    cdef vec_t z, wv
    cdef Py_ssize_t V = sizeof(vec_t) // sizeof(float_t)
    cdef Py_ssize_t q, k, ri
    cdef const float_t* p
    memset(&z, 0, sizeof(vec_t))
    for q in range(nv):
        acc[q] = z
    for k in range(ntaps):
        ri = rows_r[tap_row[k]]
        if ri < 0:
            wv = z + tap_w[k] * cval
            for q in range(nv):
                acc[q] += wv
        else:
            wv = z + tap_w[k]
            p = src + ri * L_in + x0 + tap_shift[k]
            for q in range(nv):
                acc[q] += wv * (<const vec_t*> (p + q * V))[0]
    _store(dst, acc, <int> nv, epi, scale)


cdef inline void _block_full(const float_t* src, Py_ssize_t L_in, const Py_ssize_t* rows_r,
                             const Py_ssize_t* tap_row, const Py_ssize_t* tap_shift, const float_t* tap_w,
                             Py_ssize_t ntaps, float_t cval, Py_ssize_t x0, float_t* dst, int epi, float_t scale,
                             vec_t* tag) noexcept nogil:
    """dst[0:NB] = sum over taps of w * src[row, x0 + i + shift]: 8 vectors (NB = 64 float / 32 double with
    32-byte vectors) of consecutive outputs stay in registers while every tap is added.  ``tag`` only selects
    the vector type."""
    cdef vf* tf = NULL
    cdef vd* td = NULL
    if float_t is float:
        _block_vectors(src, L_in, rows_r, tap_row, tap_shift, tap_w, ntaps, cval, x0, dst, 8, epi, scale, tf)
    else:
        _block_vectors(src, L_in, rows_r, tap_row, tap_shift, tap_w, ntaps, cval, x0, dst, 8, epi, scale, td)


cdef inline void _block_tail(const float_t* src, Py_ssize_t L_in, const Py_ssize_t* rows_r,
                             const Py_ssize_t* tap_row, const Py_ssize_t* tap_shift, const float_t* tap_w,
                             Py_ssize_t ntaps, float_t cval, Py_ssize_t x0, float_t* dst, Py_ssize_t nb, int epi,
                             float_t scale) noexcept nogil:
    """The same sum for the last ``nb`` (< NB) interior outputs of a segment: its whole vectors, then the rest
    one element at a time."""
    cdef float_t acc[BLOCK_FLOATS]
    cdef Py_ssize_t V = VECTOR_BYTES // sizeof(float_t)
    cdef Py_ssize_t i, k, ri, nv = nb // V
    cdef float_t wv
    cdef const float_t* p
    cdef vf* tf = NULL
    cdef vd* td = NULL
    if nv > 0:
        if float_t is float:
            _block_vectors(src, L_in, rows_r, tap_row, tap_shift, tap_w, ntaps, cval, x0, dst, nv, epi, scale, tf)
        else:
            _block_vectors(src, L_in, rows_r, tap_row, tap_shift, tap_w, ntaps, cval, x0, dst, nv, epi, scale, td)
        x0 += nv * V
        dst += nv * V
        nb -= nv * V
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
    _finish(dst, acc, nb, epi, scale)


cdef struct Plan:
    # one correlation pass over 2-D views (see the module docstring); the float arrays travel separately
    Py_ssize_t L_in           # source row length
    Py_ssize_t T              # row taps per output row (columns of the row table)
    Py_ssize_t ntaps          # non-zero weights
    const Py_ssize_t* tap_row
    const Py_ssize_t* tap_shift
    const Py_ssize_t* colmap
    Py_ssize_t D              # elements per column group
    Py_ssize_t KW             # kernel width along the column axis
    Py_ssize_t off            # its origin offset (column groups)
    Py_ssize_t xi0            # interior columns [xi0, xi1): every tap inside the source row
    Py_ssize_t xi1
    Py_ssize_t Lb             # row length of the per-thread edge buffer: EDGE_PIECE + (KW - 1) D
    int epi                   # epilogue, see _finish
    Py_ssize_t nm             # merged taps of a row pair (0: no pairing), see _pair_block
    const Py_ssize_t* m_row
    const Py_ssize_t* m_shift
    const Py_ssize_t* kind    # per merged tap: 1 first row only, 2 second row only, 3 both (NULL: no pairing)


cdef enum:
    EDGE_PIECE = 256          # edge columns handled per edge-buffer fill


cdef inline void _edge(const float_t* src, const Plan* pl, const Py_ssize_t* rows_r, const float_t* tap_w,
                       float_t cval, float_t scale, float_t* orow, Py_ssize_t x0, Py_ssize_t x1, float_t* ext,
                       Py_ssize_t* rows_ext) noexcept nogil:
    """Output columns [x0, x1) near the ends of the row, where taps leave the source row.

    Piece by piece, the extended source values these outputs read are gathered through ``colmap`` into the edge
    buffer (one line per row tap; cval rows stay -1), and the same vector blocks as the interior run on it.
    """
    cdef Py_ssize_t NB = 8 * (VECTOR_BYTES // sizeof(float_t))
    cdef Py_ssize_t D = pl.D, off = pl.off, t, y, yy, jj, e, ri, width, y0, x, xe
    cdef const float_t* row
    cdef float_t* line
    cdef vf* tf = NULL
    cdef vd* td = NULL
    while x0 < x1:
        xe = min(x1, x0 + EDGE_PIECE)
        y0 = x0 - off * D                          # element position (source coordinates) of ext[0]
        width = (xe - x0) + (pl.KW - 1) * D
        for t in range(pl.T):
            ri = rows_r[t]
            if ri < 0:
                rows_ext[t] = -1
                continue
            rows_ext[t] = t
            row = src + ri * pl.L_in
            line = ext + t * pl.Lb
            for y in range(width):
                yy = y0 + y
                jj = (yy + off * D) // D - off        # floor(yy / D); yy >= -off * D
                e = pl.colmap[jj + off]
                line[y] = cval if e < 0 else row[e * D + yy - jj * D]
        x = x0
        while x + NB <= xe:
            if float_t is float:
                _block_full(ext, pl.Lb, rows_ext, pl.tap_row, pl.tap_shift, tap_w, pl.ntaps, cval, x - y0, orow + x,
                            pl.epi, scale, tf)
            else:
                _block_full(ext, pl.Lb, rows_ext, pl.tap_row, pl.tap_shift, tap_w, pl.ntaps, cval, x - y0, orow + x,
                            pl.epi, scale, td)
            x += NB
        if x < xe:
            _block_tail(ext, pl.Lb, rows_ext, pl.tap_row, pl.tap_shift, tap_w, pl.ntaps, cval, x - y0, orow + x,
                        xe - x, pl.epi, scale)
        x0 = xe


cdef inline void _interior_range(const Plan* pl, Py_ssize_t xs, Py_ssize_t xe, Py_ssize_t* a,
                                 Py_ssize_t* b) noexcept nogil:
    """[a, b): the interior part of columns [xs, xe) (empty, a = b = xe, when they are all edge)."""
    a[0] = max(xs, pl.xi0)
    b[0] = min(xe, pl.xi1)
    if b[0] < a[0]:
        a[0] = xe
        b[0] = xe


cdef inline void _segment(const float_t* src, const Plan* pl, const Py_ssize_t* rows_r, const float_t* tap_w,
                          float_t cval, float_t scale, float_t* orow, Py_ssize_t xs, Py_ssize_t xe, float_t* ext,
                          Py_ssize_t* rows_ext) noexcept nogil:
    """Output columns [xs, xe) of one row: left edge, interior blocks straight from the source row, right edge."""
    cdef Py_ssize_t NB = 8 * (VECTOR_BYTES // sizeof(float_t))
    cdef Py_ssize_t x, a, b
    cdef vf* tf = NULL
    cdef vd* td = NULL
    _interior_range(pl, xs, xe, &a, &b)
    _edge(src, pl, rows_r, tap_w, cval, scale, orow, xs, a, ext, rows_ext)
    x = a
    while x + NB <= b:
        if float_t is float:
            _block_full(src, pl.L_in, rows_r, pl.tap_row, pl.tap_shift, tap_w, pl.ntaps, cval, x, orow + x, pl.epi,
                        scale, tf)
        else:
            _block_full(src, pl.L_in, rows_r, pl.tap_row, pl.tap_shift, tap_w, pl.ntaps, cval, x, orow + x, pl.epi,
                        scale, td)
        x += NB
    if x < b:
        _block_tail(src, pl.L_in, rows_r, pl.tap_row, pl.tap_shift, tap_w, pl.ntaps, cval, x, orow + x, b - x,
                    pl.epi, scale)
    _edge(src, pl, rows_r, tap_w, cval, scale, orow, max(b, xs), xe, ext, rows_ext)


cdef inline void _pair_block(const float_t* src, Py_ssize_t L_in, const Py_ssize_t* rows_u, const Plan* pl,
                             const float_t* m_w0, const float_t* m_w1, float_t cval, Py_ssize_t x0, float_t* dst0,
                             float_t* dst1, float_t scale, vec_t* tag) noexcept nogil:
    """Outputs [x0, x0 + NB/2) of two rows r, r + 1 whose row taps are shifted by one (rows[r + 1, t] ==
    rows[r, t + 1]): merged tap m reads pair row ``rows_u[m_row[m]]`` (u = t for row r, u = t + 1 for row r + 1)
    once and feeds both sums, halving the loads of row-tap kernels.  Per row the taps are added in the same
    order as :func:`_block_full` (a row skips the merged taps whose weight is 0 for it), so results are identical,
    non-finite values included."""
    cdef vec_t a0[4]
    cdef vec_t a1[4]
    cdef vec_t z, w0, w1, v
    cdef Py_ssize_t V = sizeof(vec_t) // sizeof(float_t)
    cdef Py_ssize_t q, m, ri
    cdef const float_t* p
    memset(&z, 0, sizeof(vec_t))
    for q in range(4):
        a0[q] = z
        a1[q] = z
    for m in range(pl.nm):
        ri = rows_u[pl.m_row[m]]
        # a merged tap may belong to one row only (weight 0 in the other): that row must not add 0 * value,
        # which is NaN for a non-finite value outside its footprint
        if ri < 0:
            w0 = z + m_w0[m] * cval
            w1 = z + m_w1[m] * cval
            for q in range(4):
                if m_w0[m] != 0:
                    a0[q] += w0
                if m_w1[m] != 0:
                    a1[q] += w1
        else:
            w0 = z + m_w0[m]
            w1 = z + m_w1[m]
            p = src + ri * L_in + x0 + pl.m_shift[m]
            if m_w0[m] != 0 and m_w1[m] != 0:
                for q in range(4):
                    v = (<const vec_t*> (p + q * V))[0]
                    a0[q] += w0 * v
                    a1[q] += w1 * v
            elif m_w0[m] != 0:
                for q in range(4):
                    a0[q] += w0 * (<const vec_t*> (p + q * V))[0]
            else:
                for q in range(4):
                    a1[q] += w1 * (<const vec_t*> (p + q * V))[0]
    _store(dst0, a0, 4, pl.epi, scale)
    _store(dst1, a1, 4, pl.epi, scale)


cdef inline void _pair_fast(const float_t* base, const Py_ssize_t* moff, const Py_ssize_t* kind,
                            const float_t* m_w0, const float_t* m_w1, Py_ssize_t nm, float_t* dst0, float_t* dst1,
                            int epi, float_t scale, vec_t* tag) noexcept nogil:
    """:func:`_pair_block` where no row tap of the pair lies in the cval region, on ``FC_PAIR_VECS`` vectors per
    row: merged tap ``m`` reads ``base + moff[m]`` and feeds row r (``kind[m]`` 1), row r + 1 (2) or both (3).
    The same sums in the same order."""
    cdef vec_t a0[FC_PAIR_VECS]
    cdef vec_t a1[FC_PAIR_VECS]
    cdef vec_t z, w0, w1, v
    cdef Py_ssize_t q, m, kd, V = sizeof(vec_t) // sizeof(float_t)
    cdef const float_t* p
    memset(&z, 0, sizeof(vec_t))
    memset(a0, 0, sizeof(a0))                           # +0.0 in every lane, as z
    memset(a1, 0, sizeof(a1))
    for m in range(nm):
        p = base + moff[m]
        kd = kind[m]
        if kd == 3:
            w0 = z + m_w0[m]
            w1 = z + m_w1[m]
            for q in range(FC_PAIR_VECS):
                v = (<const vec_t*> (p + q * V))[0]
                a0[q] += w0 * v
                a1[q] += w1 * v
        elif kd == 1:
            w0 = z + m_w0[m]
            for q in range(FC_PAIR_VECS):
                a0[q] += w0 * (<const vec_t*> (p + q * V))[0]
        else:
            w1 = z + m_w1[m]
            for q in range(FC_PAIR_VECS):
                a1[q] += w1 * (<const vec_t*> (p + q * V))[0]
    _store(dst0, a0, FC_PAIR_VECS, epi, scale)
    _store(dst1, a1, FC_PAIR_VECS, epi, scale)


cdef inline void _rows_block(const float_t* p0, Py_ssize_t L_in, const float_t* w, Py_ssize_t T, float_t* dst,
                             Py_ssize_t L_out, int epi, float_t scale, vec_t* tag) noexcept nogil:
    """``FC_RB_ROWS`` consecutive output rows of a row-tap pass (one column tap, ``T >= FC_RB_ROWS`` non-zero row
    taps ``w``) on ``FC_RB_VECS`` vectors of columns: output row ``j`` is ``sum_t w[t] * row(j + t)``, the rows
    read from ``p0`` on.  Each source row is loaded once and added to every output row it belongs to, so a
    source vector feeds up to ``FC_RB_ROWS`` multiply-adds instead of one or two.  Per output the taps are added
    in the same order as :func:`_block_full`, so the results are identical."""
    cdef vec_t acc[FC_RB_ROWS * FC_RB_VECS]
    cdef vec_t v[FC_RB_VECS]
    cdef vec_t z, wv
    cdef Py_ssize_t V = sizeof(vec_t) // sizeof(float_t)
    cdef Py_ssize_t q, i, j
    cdef const float_t* p
    memset(&z, 0, sizeof(vec_t))
    for q in range(FC_RB_ROWS * FC_RB_VECS):
        acc[q] = z
    for i in range(FC_RB_ROWS - 1):                     # rows that start the block: outputs j <= i
        p = p0 + i * L_in
        for q in range(FC_RB_VECS):
            v[q] = (<const vec_t*> (p + q * V))[0]
        for j in range(FC_RB_ROWS):
            if j <= i:
                wv = z + w[i - j]
                for q in range(FC_RB_VECS):
                    acc[j * FC_RB_VECS + q] += wv * v[q]
    for i in range(FC_RB_ROWS - 1, T):                  # every output row takes this row
        p = p0 + i * L_in
        for q in range(FC_RB_VECS):
            v[q] = (<const vec_t*> (p + q * V))[0]
        for j in range(FC_RB_ROWS):
            wv = z + w[i - j]
            for q in range(FC_RB_VECS):
                acc[j * FC_RB_VECS + q] += wv * v[q]
    for i in range(T, T + FC_RB_ROWS - 1):              # rows that end it: outputs j > i - T
        p = p0 + i * L_in
        for q in range(FC_RB_VECS):
            v[q] = (<const vec_t*> (p + q * V))[0]
        for j in range(FC_RB_ROWS):
            if j > i - T:
                wv = z + w[i - j]
                for q in range(FC_RB_VECS):
                    acc[j * FC_RB_VECS + q] += wv * v[q]
    for j in range(FC_RB_ROWS):
        _store(dst + j * L_out, acc + j * FC_RB_VECS, FC_RB_VECS, epi, scale)


cdef inline void _segment_rows(const float_t* src, const Plan* pl, const Py_ssize_t* rows_r, const float_t* tap_w,
                               float_t cval, float_t scale, float_t* orow, Py_ssize_t L_out, Py_ssize_t xs,
                               Py_ssize_t xe) noexcept nogil:
    """Columns [xs, xe) of the ``FC_RB_ROWS`` output rows from ``rows_r``'s, a block whose row taps are
    consecutive source rows (a pass with one column tap: no edge columns): :func:`_rows_block`, then the last
    columns row by row."""
    cdef Py_ssize_t NBR = FC_RB_VECS * (VECTOR_BYTES // sizeof(float_t))
    cdef Py_ssize_t x = xs, j
    cdef const float_t* p0 = src + rows_r[0] * pl.L_in + pl.tap_shift[0]
    cdef vf* tf = NULL
    cdef vd* td = NULL
    while x + NBR <= xe:
        if float_t is float:
            _rows_block(p0 + x, pl.L_in, tap_w, pl.T, orow + x, L_out, pl.epi, scale, tf)
        else:
            _rows_block(p0 + x, pl.L_in, tap_w, pl.T, orow + x, L_out, pl.epi, scale, td)
        x += NBR
    if x < xe:
        for j in range(FC_RB_ROWS):
            _block_tail(src, pl.L_in, rows_r + j * pl.T, pl.tap_row, pl.tap_shift, tap_w, pl.ntaps, cval, x,
                        orow + j * L_out + x, xe - x, pl.epi, scale)


cdef inline void _segment_pair(const float_t* src, const Plan* pl, const Py_ssize_t* rows_r, Py_ssize_t* rows_u,
                               const float_t* tap_w, const float_t* m_w0, const float_t* m_w1, float_t cval,
                               float_t scale, float_t* orow, Py_ssize_t L_out, Py_ssize_t xs, Py_ssize_t xe,
                               float_t* ext, Py_ssize_t* rows_ext) noexcept nogil:
    """Columns [xs, xe) of output rows r and r + 1 (``rows_r`` points at row r of the table): edges row by row,
    the interior in row pairs (:func:`_pair_fast` where no row is in the cval region; its tap offsets go to
    ``moff``, after the T + 1 entries of ``rows_u``)."""
    cdef Py_ssize_t NB2 = 4 * (VECTOR_BYTES // sizeof(float_t))
    cdef Py_ssize_t NBF = FC_PAIR_VECS * (VECTOR_BYTES // sizeof(float_t))
    cdef Py_ssize_t T = pl.T, x, a, b, t, m
    cdef const Py_ssize_t* rows_r1 = rows_r + T
    cdef Py_ssize_t* moff = rows_u + T + 1
    cdef bint fast = pl.kind != NULL
    cdef vf* tf = NULL
    cdef vd* td = NULL
    _interior_range(pl, xs, xe, &a, &b)
    _edge(src, pl, rows_r, tap_w, cval, scale, orow, xs, a, ext, rows_ext)
    _edge(src, pl, rows_r1, tap_w, cval, scale, orow + L_out, xs, a, ext, rows_ext)
    for t in range(T):
        rows_u[t] = rows_r[t]
    rows_u[T] = rows_r1[T - 1]
    for t in range(T + 1):
        if rows_u[t] < 0:
            fast = False
    x = a
    if fast and x + NBF <= b:
        for m in range(pl.nm):
            moff[m] = rows_u[pl.m_row[m]] * pl.L_in + pl.m_shift[m]
        while x + NBF <= b:
            if float_t is float:
                _pair_fast(src + x, moff, pl.kind, m_w0, m_w1, pl.nm, orow + x, orow + L_out + x, pl.epi, scale, tf)
            else:
                _pair_fast(src + x, moff, pl.kind, m_w0, m_w1, pl.nm, orow + x, orow + L_out + x, pl.epi, scale, td)
            x += NBF
    while x + NB2 <= b:
        if float_t is float:
            _pair_block(src, pl.L_in, rows_u, pl, m_w0, m_w1, cval, x, orow + x, orow + L_out + x, scale, tf)
        else:
            _pair_block(src, pl.L_in, rows_u, pl, m_w0, m_w1, cval, x, orow + x, orow + L_out + x, scale, td)
        x += NB2
    if x < b:
        _block_tail(src, pl.L_in, rows_r, pl.tap_row, pl.tap_shift, tap_w, pl.ntaps, cval, x, orow + x, b - x,
                    pl.epi, scale)
        _block_tail(src, pl.L_in, rows_r1, pl.tap_row, pl.tap_shift, tap_w, pl.ntaps, cval, x, orow + L_out + x,
                    b - x, pl.epi, scale)
    _edge(src, pl, rows_r, tap_w, cval, scale, orow, max(b, xs), xe, ext, rows_ext)
    _edge(src, pl, rows_r1, tap_w, cval, scale, orow + L_out, max(b, xs), xe, ext, rows_ext)


cdef Plan _plan(Py_ssize_t L_in, Py_ssize_t L_out, Py_ssize_t T, const Py_ssize_t[::1] tap_row,
                const Py_ssize_t[::1] tap_shift, Py_ssize_t ntaps, const Py_ssize_t[::1] colmap, Py_ssize_t D,
                Py_ssize_t off, Py_ssize_t jlo, Py_ssize_t jhi, int epi):
    cdef Plan pl
    pl.L_in = L_in
    pl.T = T
    pl.ntaps = ntaps
    pl.tap_row = &tap_row[0] if ntaps > 0 else NULL
    pl.tap_shift = &tap_shift[0] if ntaps > 0 else NULL
    pl.colmap = &colmap[0]
    pl.D = D
    pl.KW = colmap.shape[0] - L_out // D + 1
    pl.off = off
    pl.xi0 = jlo * D
    pl.xi1 = jhi * D
    pl.Lb = EDGE_PIECE + (pl.KW - 1) * D
    pl.epi = epi
    pl.nm = 0
    pl.m_row = NULL
    pl.m_shift = NULL
    pl.kind = NULL
    return pl


def block_width(Py_ssize_t itemsize):
    """Elements per register block (NB: 8 vectors) for float32 (itemsize 4) or float64 (8) in this build."""
    return 8 * (VECTOR_BYTES // itemsize)


def row_block_rows():
    """Output rows of :func:`_rows_block`'s blocks in this build."""
    return FC_RB_ROWS


def correlate(const float_t[:, ::1] src, float_t[:, ::1] out, const Py_ssize_t[:, ::1] rows,
              const Py_ssize_t[::1] tap_row, const Py_ssize_t[::1] tap_shift, const float_t[::1] tap_w,
              const Py_ssize_t[::1] colmap, const Py_ssize_t[::1] pair_ok, const Py_ssize_t[::1] m_row,
              const Py_ssize_t[::1] m_shift, const float_t[::1] m_w0, const float_t[::1] m_w1,
              const Py_ssize_t[::1] m_kind, const Py_ssize_t[::1] rb_ok, *, Py_ssize_t D,
              Py_ssize_t off, Py_ssize_t jlo, Py_ssize_t jhi, double cval, int epi, double scale, Py_ssize_t chunk,
              bint chunk_major, int nthreads):
    """out[r, j*D + c] = sum_k tap_w[k] * S(rows[r, tap_row[k]], colmap[j + dx_k], c), stored through the
    epilogue ``epi`` (see ``_finish``); ``tap_shift[k] = (dx_k - off) * D``.  See the module doc.

    With ``pair_ok`` non-empty, output rows go in pairs (2i, 2i + 1); where ``pair_ok[i]`` the interior uses the
    merged taps ``m_*`` (see ``_pair_block``; ``m_kind``: 1, 2 or 3 as a merged tap feeds the first row, the second
    or both).  With ``rb_ok`` non-empty (a pass with one column tap and at least
    ``row_block_rows()`` non-zero row taps), output rows go in blocks of ``row_block_rows()`` instead, and
    ``rb_ok[i]`` says that block ``i``'s row taps are consecutive source rows (see ``_rows_block``).  Tasks are
    (row, row pair or row block, chunk of ``chunk`` columns), ordered row by row, or chunk by chunk with
    ``chunk_major`` so that a thread walks down a column strip and the rows its taps read stay in cache.
    Everything is validated by the caller: bounds checks are off.
    """
    cdef Py_ssize_t R_out = out.shape[0], L_out = out.shape[1], T = rows.shape[1]
    cdef Py_ssize_t nchunks = (L_out + chunk - 1) // chunk
    cdef bint rblocks = rb_ok.shape[0] > 0
    cdef bint pairs = pair_ok.shape[0] > 0 and not rblocks
    cdef Py_ssize_t units = (R_out + 1) // 2 if pairs else R_out
    if rblocks:
        units = (R_out + FC_RB_ROWS - 1) // FC_RB_ROWS
    cdef Py_ssize_t task, u, r, xs, xe
    cdef float_t cv = <float_t> cval, sc = <float_t> scale
    cdef Plan pl
    cdef float_t* ext = NULL
    cdef Py_ssize_t* rows_ext = NULL
    cdef bint edges
    cdef int failed[1]
    failed[0] = 0
    if R_out == 0 or L_out == 0:
        return
    pl = _plan(src.shape[1], L_out, T, tap_row, tap_shift, tap_w.shape[0], colmap, D, off, jlo, jhi, epi)
    if pairs:
        pl.nm = m_row.shape[0]
        pl.m_row = &m_row[0] if pl.nm > 0 else NULL
        pl.m_shift = &m_shift[0] if pl.nm > 0 else NULL
        pl.kind = &m_kind[0] if pl.nm > 0 else NULL
    edges = pl.xi0 > 0 or pl.xi1 < L_out
    cdef const float_t* sp = &src[0, 0]
    cdef float_t* op = &out[0, 0]
    cdef const Py_ssize_t* rp = &rows[0, 0]
    cdef const Py_ssize_t* okp = &pair_ok[0] if pairs else NULL
    cdef const Py_ssize_t* rbp = &rb_ok[0] if rblocks else NULL
    cdef const float_t* tw = &tap_w[0] if pl.ntaps > 0 else NULL
    cdef const float_t* w0p = &m_w0[0] if pl.nm > 0 else NULL
    cdef const float_t* w1p = &m_w1[0] if pl.nm > 0 else NULL
    with nogil, parallel(num_threads=nthreads):
        # per thread: the edge buffer (one line per row tap) with its row index, and a row pair's T + 1 rows and
        # merged-tap offsets
        ext = <float_t*> scratch(T * pl.Lb * sizeof(float_t), failed) if edges else NULL
        rows_ext = <Py_ssize_t*> scratch((2 * T + 1 + pl.nm) * sizeof(Py_ssize_t), failed)
        for task in prange(units * nchunks, schedule='static'):
            if (edges and ext == NULL) or rows_ext == NULL:
                continue      # every thread must reach the work-sharing loop; the error is raised below
            if chunk_major:
                u = task % units
                xs = (task // units) * chunk
            else:
                u = task // nchunks
                xs = (task % nchunks) * chunk
            xe = min(xs + chunk, L_out)
            if rblocks:
                r = u * FC_RB_ROWS
                if rbp[u]:
                    _segment_rows(sp, &pl, rp + r * T, tw, cv, sc, op + r * L_out, L_out, xs, xe)
                else:
                    for r in range(u * FC_RB_ROWS, min(R_out, (u + 1) * FC_RB_ROWS)):
                        _segment(sp, &pl, rp + r * T, tw, cv, sc, op + r * L_out, xs, xe, ext, rows_ext)
                continue
            if not pairs:
                _segment(sp, &pl, rp + u * T, tw, cv, sc, op + u * L_out, xs, xe, ext, rows_ext)
                continue
            r = 2 * u
            if r + 1 < R_out and okp[u]:
                _segment_pair(sp, &pl, rp + r * T, rows_ext + T, tw, w0p, w1p, cv, sc, op + r * L_out, L_out, xs,
                              xe, ext, rows_ext)
            else:
                _segment(sp, &pl, rp + r * T, tw, cv, sc, op + r * L_out, xs, xe, ext, rows_ext)
                if r + 1 < R_out:
                    _segment(sp, &pl, rp + (r + 1) * T, tw, cv, sc, op + (r + 1) * L_out, xs, xe, ext, rows_ext)
        free(ext)
        free(rows_ext)
    check_scratch(failed[0], "filters.correlate", T * pl.Lb * sizeof(float_t))


def complex_multiply(float_t[:, :, ::1] a, const float_t[:, ::1] b, int nthreads):
    """a[h, t, :] *= b[h, :] for complex numbers stored as (re, im) pairs: the spectrum product of the FFT path,
    one kernel spectrum row ``b[h]`` for every tile ``t``."""
    cdef Py_ssize_t H = a.shape[0], NT = a.shape[1], M = a.shape[2] // 2
    cdef Py_ssize_t task, h, t, i
    cdef float_t ar, ai, br, bi
    cdef float_t* pa
    cdef const float_t* pb
    with nogil:
        for task in prange(H * NT, schedule='static', num_threads=nthreads):
            h = task // NT
            t = task % NT
            pa = &a[h, t, 0]
            pb = &b[h, 0]
            for i in range(M):
                ar = pa[2 * i]
                ai = pa[2 * i + 1]
                br = pb[2 * i]
                bi = pb[2 * i + 1]
                pa[2 * i] = ar * br - ai * bi
                pa[2 * i + 1] = ar * bi + ai * br


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


cdef extern from *:
    """
    /* An N x N block of 8-byte elements (complex64 numbers, moved as doubles: bit-exact) transposed in registers,
       N = the vector's 8-byte lanes (simd.h's FC_TRANSPOSE_BLOCK; the vector type is aligned as a float). */
    #if FC_VECTOR_BYTES == 64
    typedef double fc_tp_v __attribute__((vector_size(64), aligned(4)));
    #define FC_TP_N 8
    #define FC_TP_TRANSPOSE FC_TRANSPOSE_Q8
    #else
    typedef double fc_tp_v __attribute__((vector_size(32), aligned(4)));
    #define FC_TP_N 4
    #define FC_TP_TRANSPOSE FC_TRANSPOSE_Q4
    #endif
    static inline void fc_tp_block(const float* src, Py_ssize_t sstride, float* dst, Py_ssize_t dstride) {
        FC_TRANSPOSE_BLOCK(fc_tp_v, FC_TP_N, FC_TP_TRANSPOSE, src, sstride, dst, dstride);
    }
    """
    enum: FC_TP_N
    void fc_tp_block(const float* src, Py_ssize_t sstride, float* dst, Py_ssize_t dstride) noexcept nogil


def transpose_pairs(const float_t[:, :, :] src, float_t[:, :, ::1] dst, int nthreads):
    """dst[j, i, :] = src[i, j, :] for (R, C) complex numbers stored as (re, im) pairs (``src`` rows may be
    strided, each row contiguous), in 32 x 32 tiles (the FFT path keeps its complex transforms on contiguous rows
    by transposing between them).  float32 pairs move as 8-byte elements in blocks of FC_TP_N x FC_TP_N
    transposed in registers; the tiles' edges and float64 pairs element by element."""
    cdef Py_ssize_t R = src.shape[0], C = src.shape[1]
    cdef Py_ssize_t rs = src.strides[0] // sizeof(float_t)      # src row stride in elements
    cdef Py_ssize_t nbc = (C + 31) // 32, nbr = (R + 31) // 32
    cdef Py_ssize_t t, i, j, i0, j0, i1, j1, ib, jb, ie, je
    cdef const float_t* s0
    cdef const float_t* sr
    cdef float_t* d0
    if R == 0 or C == 0:
        return
    s0 = &src[0, 0, 0]
    d0 = &dst[0, 0, 0]
    with nogil:
        for t in prange(nbr * nbc, schedule='static', num_threads=nthreads):
            i0 = (t % nbr) * 32
            j0 = (t // nbr) * 32
            i1 = min(i0 + 32, R)
            j1 = min(j0 + 32, C)
            ie = i0
            je = j0
            if float_t is float:
                # whole register blocks, then the rest of the tile's rows and columns element by element
                ie = i0 + (i1 - i0) // FC_TP_N * FC_TP_N
                je = j0 + (j1 - j0) // FC_TP_N * FC_TP_N
                ib = i0
                while ib < ie:
                    jb = j0
                    while jb < je:
                        fc_tp_block(<const float*> (s0 + ib * rs + 2 * jb), rs, <float*> (d0 + 2 * (jb * R + ib)),
                                    2 * R)
                        jb = jb + FC_TP_N
                    ib = ib + FC_TP_N
            for i in range(i0, i1):
                sr = s0 + i * rs
                for j in range(je if i < ie else j0, j1):
                    d0[2 * (j * R + i)] = sr[2 * j]
                    d0[2 * (j * R + i) + 1] = sr[2 * j + 1]
