# cython: language_level=3
"""Data movement and frequency-domain channel sums for the ``fft`` convolution algorithm.

The transforms themselves come from ``scipy.fft``; this module does what is around them, always in 3 spatial
dimensions (1-D and 2-D problems are views with singleton dims):

* :func:`to_tiles` gathers overlapping tiles of an ``(N, C, D, H, W)`` array into a tile buffer
  ``(M, C * R, L1, L2, L3)`` (``M`` tiles of one chunk).  Zero padding and the polyphase split used for strides
  (``R`` phases per channel) are resolved through per-dimension index tables, so neither the padded nor the
  phase-split input is ever materialised.
* The channel sum.  After ``rfftn`` over the spatial axes every frequency ``f`` is an independent small complex
  matrix product (per group).  Spectra are rows of interleaved ``(re, im)`` pairs, one row per (tile, channel).
  :func:`cmac` computes these products with frequencies as the vector lanes, streaming the rows as they are;
  :func:`fgemm` runs one BLAS GEMM (``scipy.linalg.cython_blas`` cgemm/zgemm) per frequency on spectra made
  frequency-major by :func:`ctranspose`.  Measured on the 2-core reference machine (float32, one thread, CPU
  time): the streaming loop reaches 3-11 GFLOP/s, per-frequency cgemm on frequency-major data 22-65 GFLOP/s, so
  the caller uses the loop for small channel products (where two transposes would cost more than they save) and
  transpose + GEMM for large ones.
* :func:`from_tiles` writes the valid part of inverse-transformed tiles to an ``(N, C, D, H, W)`` array, adding a
  bias or undoing the polyphase split on the way.

Every output element is written by exactly one task in a fixed order, so results do not depend on the number of
threads.  All shapes, tables and offsets are validated by the caller (``fastconv._algos.fft``): bounds checks are
off here.
"""
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport cgemm, zgemm

from fastconv._kernels.common cimport Tile, check_scratch, float_t, scratch, tile_of

# Below this many complex multiply-adds per GEMM the plain loop is faster than a BLAS call.
cdef long long _SMALL_MACS = 512
SMALL_MACS = _SMALL_MACS


cdef enum:
    LB = 4      # cmac: output rows reduced together (a row of ``a`` is loaded once per LB outputs)
    FBLK = 128  # cmac: frequencies per task; the 2 x LB accumulator rows stay in L1
    TB = 32     # ctranspose: block edge


def to_tiles(const float_t[:, :, :, :, ::1] src, float_t[:, :, :, :, ::1] dst,
             const Py_ssize_t[:, :, ::1] tab1, const Py_ssize_t[:, :, ::1] tab2, const Py_ssize_t[:, :, ::1] tab3, *,
             Py_ssize_t m0, Py_ssize_t T1, Py_ssize_t T2, Py_ssize_t T3, int nthreads):
    """``dst[mm, c*R + r, l1, l2, l3] = src[n, c, tab1[t1, l1, r1], tab2[t2, l2, r2], tab3[t3, l3, r3]]``.

    Tile ``m0 + mm`` is ``(n, t1, t2, t3)`` in C order over ``(N, T1, T2, T3)``; ``r = (r1 R2 + r2) R3 + r3``
    with ``R_d = tab_d.shape[2]``.  A negative table entry means zero (padding).
    """
    cdef Py_ssize_t C = src.shape[1]
    cdef Py_ssize_t M = dst.shape[0], CR = dst.shape[1], L1 = dst.shape[2], L2 = dst.shape[3], L3 = dst.shape[4]
    cdef Py_ssize_t R1 = tab1.shape[2], R2 = tab2.shape[2], R3 = tab3.shape[2]
    cdef Py_ssize_t R = R1 * R2 * R3
    cdef Py_ssize_t task, rem, mm, ch, c, r, r1, r2, r3, l1, l2, l3, n, t1, t2, t3, i1, i2, i3
    cdef Tile tl
    cdef float_t* out
    cdef const float_t* row
    for task in prange(M * CR * L1, nogil=True, schedule='static', num_threads=nthreads):
        l1 = task % L1
        rem = task // L1
        ch = rem % CR
        mm = rem // CR
        c = ch // R
        r = ch % R
        r3 = r % R3
        r2 = (r // R3) % R2
        r1 = r // (R3 * R2)
        tl = tile_of(m0 + mm, T1, T2, T3)
        n, t1, t2, t3 = tl.n, tl.t1, tl.t2, tl.t3
        i1 = tab1[t1, l1, r1]
        for l2 in range(L2):
            out = &dst[mm, ch, l1, l2, 0]
            i2 = tab2[t2, l2, r2]
            if i1 < 0 or i2 < 0:
                for l3 in range(L3):
                    out[l3] = 0
            else:
                row = &src[n, c, i1, i2, 0]
                i3 = tab3[t3, 0, r3]
                if i3 >= 0 and tab3[t3, L3 - 1, r3] == i3 + L3 - 1:
                    memcpy(out, row + i3, L3 * sizeof(float_t))     # interior row, stride 1: one run
                else:
                    for l3 in range(L3):
                        i3 = tab3[t3, l3, r3]
                        out[l3] = row[i3] if i3 >= 0 else 0


def from_tiles(const float_t[:, :, :, :, :] src, float_t[:, :, :, :, ::1] dst,
               const Py_ssize_t[:, ::1] map1, const Py_ssize_t[:, ::1] map2, const Py_ssize_t[:, ::1] map3,
               const Py_ssize_t[:, ::1] rng1, const Py_ssize_t[:, ::1] rng2, const Py_ssize_t[:, ::1] rng3,
               const float_t[::1] bias, *, Py_ssize_t m0, Py_ssize_t R1, Py_ssize_t R2, Py_ssize_t R3, bint has_bias,
               int nthreads):
    """Write the elements of ``dst (N, C, D, H, W)`` that belong to the tiles ``m0 .. m0 + M - 1`` of
    ``src (M, C * R, l1, l2, l3)`` (any strides, but unit stride along its last axis).

    Tile ``m = (n, t1, t2, t3)`` (C order over ``(N, T1, T2, T3)``, ``T_d = rng_d.shape[0]``) owns the positions
    ``rng_d[t_d, 0] <= i_d < rng_d[t_d, 1]``; the tiles' ranges partition each axis.  Position ``i_d`` reads
    tile row ``map_d[i_d, 0]`` and phase ``map_d[i_d, 1]`` (negative: the element is zero):
    ``dst[n, c, i1, i2, i3] = src[m - m0, c*R + (r1 R2 + r2) R3 + r3, l1, l2, l3] (+ bias[c])``.
    """
    cdef Py_ssize_t M = src.shape[0], C = dst.shape[1]
    cdef Py_ssize_t T1 = rng1.shape[0], T2 = rng2.shape[0], T3 = rng3.shape[0]
    cdef Py_ssize_t R = R1 * R2 * R3
    cdef Py_ssize_t task, mm, n, t1, t2, t3, c, i1, i2, i3, e3, l1, l2, l3, r1, r2, r3, base
    cdef Tile tl
    cdef float_t bval
    cdef float_t* out
    cdef const float_t* srow
    for task in prange(M * C, nogil=True, schedule='static', num_threads=nthreads):
        c = task % C
        mm = task // C
        tl = tile_of(m0 + mm, T1, T2, T3)
        n, t1, t2, t3 = tl.n, tl.t1, tl.t2, tl.t3
        bval = bias[c] if has_bias else 0
        for i1 in range(rng1[t1, 0], rng1[t1, 1]):
            l1 = map1[i1, 0]
            r1 = map1[i1, 1]
            for i2 in range(rng2[t2, 0], rng2[t2, 1]):
                l2 = map2[i2, 0]
                r2 = map2[i2, 1]
                out = &dst[n, c, i1, i2, 0]
                if r1 < 0 or r2 < 0:
                    for i3 in range(rng3[t3, 0], rng3[t3, 1]):
                        out[i3] = bval
                else:
                    base = c * R + (r1 * R2 + r2) * R3
                    i3 = rng3[t3, 0]
                    e3 = rng3[t3, 1]
                    if (R3 == 1 and e3 > i3 and map3[i3, 1] >= 0 and map3[e3 - 1, 1] >= 0
                            and map3[e3 - 1, 0] - map3[i3, 0] == e3 - 1 - i3):
                        # one run of valid, consecutive tile positions (stride 1 along the row)
                        srow = &src[mm, base, l1, l2, map3[i3, 0]]
                        for l3 in range(e3 - i3):
                            out[i3 + l3] = srow[l3] + bval
                    else:
                        for i3 in range(rng3[t3, 0], rng3[t3, 1]):
                            l3 = map3[i3, 0]
                            r3 = map3[i3, 1]
                            if r3 < 0:
                                out[i3] = bval
                            else:
                                out[i3] = src[mm, base + r3, l1, l2, l3] + bval


cdef inline void _block(const float_t* a, const float_t* b, float_t* y, float_t* p, float_t* q,
                        Py_ssize_t J, Py_ssize_t nl, Py_ssize_t nf, Py_ssize_t rowlen,
                        Py_ssize_t ra, Py_ssize_t a_j, Py_ssize_t rb, Py_ssize_t b_j, Py_ssize_t b_l,
                        Py_ssize_t ry, Py_ssize_t y_l, Py_ssize_t off,
                        bint conj_a, bint conj_b, bint accumulate) noexcept nogil:
    """``nl <= LB`` output rows x ``nf <= FBLK`` frequencies starting at float offset ``off``.

    ``p``/``q`` are LB rows of 2 FBLK scratch: ``p`` sums the lane-wise products ``(ar br, ai bi)`` and ``q`` the
    products with swapped pairs ``(ar bi, ai br)`` -- plain FMAs over contiguous memory; the complex result and
    the conjugations are resolved once, when the rows are written.
    """
    cdef const float_t* ap
    cdef const float_t* bp
    cdef float_t* pp
    cdef float_t* qp
    cdef float_t* yp
    cdef Py_ssize_t j, ll, f, n2 = 2 * nf
    cdef float_t re, im, ar, ai, br, bi
    if J == 1 and not accumulate:
        # a single product per output (one channel, depthwise): no sums to keep; y may be a itself
        ap = a + ra * rowlen + off
        for ll in range(nl):
            bp = b + (rb + ll * b_l) * rowlen + off
            yp = y + (ry + ll * y_l) * rowlen + off
            for f in range(0, n2, 2):
                ar = ap[f]
                ai = -ap[f + 1] if conj_a else ap[f + 1]
                br = bp[f]
                bi = -bp[f + 1] if conj_b else bp[f + 1]
                yp[f] = ar * br - ai * bi
                yp[f + 1] = ar * bi + ai * br
        return
    for ll in range(nl):
        for f in range(n2):
            p[ll * 2 * FBLK + f] = 0
            q[ll * 2 * FBLK + f] = 0
    for j in range(J):
        ap = a + (ra + j * a_j) * rowlen + off
        for ll in range(nl):
            bp = b + (rb + j * b_j + ll * b_l) * rowlen + off
            pp = p + ll * 2 * FBLK
            qp = q + ll * 2 * FBLK
            for f in range(0, n2, 2):
                pp[f] += ap[f] * bp[f]
                pp[f + 1] += ap[f + 1] * bp[f + 1]
                qp[f] += ap[f] * bp[f + 1]
                qp[f + 1] += ap[f + 1] * bp[f]
    for ll in range(nl):
        yp = y + (ry + ll * y_l) * rowlen + off
        pp = p + ll * 2 * FBLK
        qp = q + ll * 2 * FBLK
        for f in range(0, n2, 2):
            # a b = (ar br - ai bi) + i (ar bi + ai br); conjugating a or b flips the sign of ai or bi.
            if conj_a == conj_b:
                re = pp[f] - pp[f + 1]
            else:
                re = pp[f] + pp[f + 1]
            if conj_a and conj_b:
                im = -(qp[f] + qp[f + 1])
            elif conj_a:
                im = qp[f] - qp[f + 1]
            elif conj_b:
                im = qp[f + 1] - qp[f]
            else:
                im = qp[f] + qp[f + 1]
            if accumulate:
                yp[f] += re
                yp[f + 1] += im
            else:
                yp[f] = re
                yp[f + 1] = im


def cmac(const float_t[:, ::1] a, const float_t[:, ::1] b, float_t[:, ::1] y, *,
         Py_ssize_t G, Py_ssize_t I, Py_ssize_t J, Py_ssize_t L,
         Py_ssize_t a_g, Py_ssize_t a_i, Py_ssize_t a_j,
         Py_ssize_t b_g, Py_ssize_t b_j, Py_ssize_t b_l,
         Py_ssize_t y_g, Py_ssize_t y_i, Py_ssize_t y_l,
         bint conj_a, bint conj_b, bint accumulate, int nthreads):
    """For every group ``g < G``, ``i < I``, ``l < L`` and frequency ``f``::

        y[g y_g + i y_i + l y_l][f] (+)= sum_j op_a(a[g a_g + i a_i + j a_j][f]) op_b(b[g b_g + j b_j + l b_l][f])

    where rows are interleaved complex spectra of one common length (``shape[1] == 2 F``) and ``op`` is the
    identity or the complex conjugate.  Forward, input gradient and weight gradient are three stride settings.
    ``y`` must not share memory with ``a`` or ``b``, except that with ``J == 1``, ``L == 1`` and no accumulation
    ``y`` may be ``a`` when every output row is the input row of the same index (an in-place product).
    """
    cdef Py_ssize_t rowlen = y.shape[1]
    cdef Py_ssize_t F = rowlen // 2
    cdef Py_ssize_t nfblk = (F + FBLK - 1) // FBLK
    cdef Py_ssize_t nlb = (L + LB - 1) // LB
    cdef Py_ssize_t task, g, fb, f0, nf, i, lb, l0
    cdef const float_t* ap
    cdef const float_t* bp
    cdef float_t* yp
    cdef float_t* p
    cdef int failed[1]
    failed[0] = 0
    if G * nfblk == 0 or I == 0 or L == 0:
        return
    ap = &a[0, 0]
    bp = &b[0, 0]
    yp = &y[0, 0]
    p = NULL
    with nogil, parallel(num_threads=nthreads):
        p = <float_t*> scratch(2 * LB * 2 * FBLK * sizeof(float_t), failed)
        if p != NULL:
            for task in prange(G * nfblk, schedule='static'):
                g = task // nfblk
                fb = task % nfblk
                f0 = fb * FBLK
                nf = min(<Py_ssize_t> FBLK, F - f0)
                for i in range(I):
                    for lb in range(nlb):
                        l0 = lb * LB
                        _block(ap, bp, yp, p, p + LB * 2 * FBLK, J, min(<Py_ssize_t> LB, L - l0), nf, rowlen,
                               g * a_g + i * a_i, a_j, g * b_g + l0 * b_l, b_j, b_l,
                               g * y_g + i * y_i + l0 * y_l, y_l, 2 * f0, conj_a, conj_b, accumulate)
        free(p)
    check_scratch(failed[0], "fft channel sum", 2 * LB * 2 * FBLK * sizeof(float_t))


def ctranspose(const float_t[:, ::1] src, float_t[:, ::1] dst, int nthreads):
    """Transpose a matrix of interleaved complex numbers: ``src (R, 2 C)`` -> ``dst (C, 2 R)``, in blocks."""
    cdef Py_ssize_t R = src.shape[0], C = src.shape[1] // 2
    cdef Py_ssize_t nbr = (R + TB - 1) // TB, nbc = (C + TB - 1) // TB
    cdef Py_ssize_t blk, r0, r1, c0, c, r
    cdef const float_t* sp = &src[0, 0]
    cdef float_t* dp = &dst[0, 0]
    cdef float_t* drow
    if R == 0 or C == 0:
        return
    for blk in prange(nbr * nbc, nogil=True, schedule='static', num_threads=nthreads):
        r0 = (blk // nbc) * TB
        r1 = min(R, r0 + TB)
        c0 = (blk % nbc) * TB
        for c in range(c0, min(C, c0 + TB)):
            drow = dp + 2 * c * R
            for r in range(r0, r1):
                drow[2 * r] = sp[2 * (r * C + c)]
                drow[2 * r + 1] = sp[2 * (r * C + c) + 1]


cdef inline void _load(const float_t* p, Py_ssize_t idx, bint conj, float_t* re, float_t* im) noexcept nogil:
    re[0] = p[2 * idx]
    im[0] = -p[2 * idx + 1] if conj else p[2 * idx + 1]


cdef void _small_gemm(char ta, char tb, int m, int n, int k, const float_t* a, int lda, const float_t* b, int ldb,
                      float_t* c, int ldc, bint accumulate) noexcept nogil:
    """Column-major ``c (m x n) (+)= op(a) op(b)`` with op in 'N', 'T', 'C', for tiny sizes."""
    cdef int i, j, l
    cdef float_t sre, sim, are, aim, bre, bim
    for j in range(n):
        for i in range(m):
            sre = 0
            sim = 0
            for l in range(k):
                if ta == b'N':
                    _load(a, i + l * lda, False, &are, &aim)
                else:
                    _load(a, l + i * lda, ta == b'C', &are, &aim)
                if tb == b'N':
                    _load(b, l + j * ldb, False, &bre, &bim)
                else:
                    _load(b, j + l * ldb, tb == b'C', &bre, &bim)
                sre = sre + are * bre - aim * bim
                sim = sim + are * bim + aim * bre
            if accumulate:
                c[2 * (i + j * ldc)] += sre
                c[2 * (i + j * ldc) + 1] += sim
            else:
                c[2 * (i + j * ldc)] = sre
                c[2 * (i + j * ldc) + 1] = sim


cdef inline void _gemm(char ta, char tb, int m, int n, int k, const float_t* a, int lda, const float_t* b, int ldb,
                       float_t* c, int ldc, bint accumulate) noexcept nogil:
    cdef float complex one_f = 1, beta_f = 1 if accumulate else 0
    cdef double complex one_d = 1, beta_d = 1 if accumulate else 0
    if <long long> m * n * k < _SMALL_MACS:
        _small_gemm(ta, tb, m, n, k, a, lda, b, ldb, c, ldc, accumulate)
    elif float_t is float:
        cgemm(&ta, &tb, &m, &n, &k, &one_f, <float complex*> a, &lda, <float complex*> b, &ldb, &beta_f,
              <float complex*> c, &ldc)
    else:
        zgemm(&ta, &tb, &m, &n, &k, &one_d, <double complex*> a, &lda, <double complex*> b, &ldb, &beta_d,
              <double complex*> c, &ldc)


def fgemm(const float_t[:, ::1] a, const float_t[:, ::1] b, float_t[:, ::1] c, *, Py_ssize_t G,
          transa, transb, int m, int n, int k, int lda, int ldb, int ldc,
          Py_ssize_t a_g, Py_ssize_t b_g, Py_ssize_t c_g, bint accumulate, int nthreads):
    """For every frequency ``f`` (row of the 2-D float views of interleaved complex arrays) and group ``g``:
    column-major ``C = op(A) op(B)`` (or ``C += ...``) with ``A`` at complex offset ``g * a_g`` of row ``f`` of
    ``a`` (likewise ``B``, ``C``), BLAS conventions for ``transa``/``transb`` ('N', 'T', 'C'), ``m, n, k`` and
    the leading dimensions.  The caller keeps BLAS single-threaded while this runs with ``nthreads > 1``.
    """
    cdef Py_ssize_t F = c.shape[0]
    cdef Py_ssize_t ra = a.shape[1], rb = b.shape[1], rc = c.shape[1]
    cdef char ta = ord(transa), tb = ord(transb)
    cdef Py_ssize_t task, f, g
    cdef const float_t* ap = &a[0, 0]
    cdef const float_t* bp = &b[0, 0]
    cdef float_t* cp = &c[0, 0]
    if F == 0 or G == 0 or m == 0 or n == 0:
        return
    for task in prange(F * G, nogil=True, schedule='static', num_threads=nthreads):
        f = task // G
        g = task % G
        _gemm(ta, tb, m, n, k, ap + f * ra + 2 * g * a_g, lda, bp + f * rb + 2 * g * b_g, ldb,
              cp + f * rc + 2 * g * c_g, ldc, accumulate)
