# cython: language_level=3
"""Data movement and frequency-domain channel sums for the ``fft`` convolution algorithm.

The transforms themselves come from ``scipy.fft``; this module does what is around them, always in 3 spatial
dimensions (1-D and 2-D problems are views with singleton dims):

* :func:`to_tiles` gathers overlapping tiles of an ``(N, C, D, H, W)`` array into a **channel-last** tile buffer
  ``(L1, L2, L3, M, C * R)`` (``M`` tiles of one chunk).  Zero padding and the polyphase split used for strides
  (``R`` phases per channel) are resolved through per-dimension index tables, so neither the padded nor the
  phase-split input is ever materialised.
* :func:`fgemm` is the channel sum: after ``rfftn`` over the leading (spatial) axes, the spectrum of frequency
  ``f`` is a contiguous ``(M, channels)`` matrix, so ``Y_f = X_f . W_f`` (with conjugations/transposes) is one
  small complex GEMM per frequency and group.  Products of at least ``SMALL_MACS`` multiply-adds go to BLAS
  (``scipy.linalg.cython_blas`` cgemm/zgemm); tiny ones (e.g. one channel) use a plain loop, where a BLAS call
  would cost more than the arithmetic.
* :func:`from_tiles` writes the valid part of inverse-transformed tiles to an ``(N, C, D, H, W)`` array, adding a
  bias or undoing the polyphase split on the way.

Why channel-last plus per-frequency GEMM: measured on the 2-core reference machine (float32, one thread, CPU time),
a frequency-innermost Cython loop over scipy's natural ``(M, C, F)`` layout reached 3-11 GFLOP/s (it is bound
by strided row access); packing those rows per frequency block for cgemm reached 1-12; per-frequency cgemm on the
channel-last layout 22-65 GFLOP/s, and pocketfft transforms the channel-last layout about as fast as the
channel-first one.

Every output element is written by exactly one task in a fixed order, so results do not depend on the number of
threads.  All shapes, tables and offsets are validated by the caller (``fastconv._algos.fft``): bounds checks are
off here.
"""
from cython.parallel cimport prange
from scipy.linalg.cython_blas cimport cgemm, zgemm

from fastconv._kernels.fused cimport float_t

# Below this many complex multiply-adds per GEMM the plain loop is faster than a BLAS call.
cdef long long _SMALL_MACS = 512
SMALL_MACS = _SMALL_MACS


def to_tiles(const float_t[:, :, :, :, ::1] src, float_t[:, :, :, :, ::1] dst,
             const Py_ssize_t[:, :, ::1] tab1, const Py_ssize_t[:, :, ::1] tab2, const Py_ssize_t[:, :, ::1] tab3,
             Py_ssize_t m0, Py_ssize_t T1, Py_ssize_t T2, Py_ssize_t T3, int nthreads):
    """``dst[l1, l2, l3, mm, c*R + r] = src[n, c, tab1[t1, l1, r1], tab2[t2, l2, r2], tab3[t3, l3, r3]]``.

    Tile ``m0 + mm`` is ``(n, t1, t2, t3)`` in C order over ``(N, T1, T2, T3)``; ``r = (r1 R2 + r2) R3 + r3``
    with ``R_d = tab_d.shape[2]``.  A negative table entry means zero (padding).
    """
    cdef Py_ssize_t C = src.shape[1]
    cdef Py_ssize_t L1 = dst.shape[0], L2 = dst.shape[1], L3 = dst.shape[2], M = dst.shape[3], CR = dst.shape[4]
    cdef Py_ssize_t R1 = tab1.shape[2], R2 = tab2.shape[2], R3 = tab3.shape[2]
    cdef Py_ssize_t R = R1 * R2 * R3
    cdef Py_ssize_t step = M * CR
    cdef Py_ssize_t ntask = L1 * L2 * M
    cdef Py_ssize_t task, rem, mm, l1, l2, l3, m, n, t1, t2, t3, c, r1, r2, r3, i1, i2, i3
    cdef float_t* out
    cdef const float_t* row
    for task in prange(ntask, nogil=True, schedule='static', num_threads=nthreads):
        mm = task % M
        rem = task // M
        l2 = rem % L2
        l1 = rem // L2
        m = m0 + mm
        t3 = m % T3
        m = m // T3
        t2 = m % T2
        m = m // T2
        t1 = m % T1
        n = m // T1
        for c in range(C):
            for r1 in range(R1):
                i1 = tab1[t1, l1, r1]
                for r2 in range(R2):
                    i2 = tab2[t2, l2, r2]
                    for r3 in range(R3):
                        out = &dst[l1, l2, 0, mm, c * R + (r1 * R2 + r2) * R3 + r3]
                        if i1 < 0 or i2 < 0:
                            for l3 in range(L3):
                                out[l3 * step] = 0
                        else:
                            row = &src[n, c, i1, i2, 0]
                            for l3 in range(L3):
                                i3 = tab3[t3, l3, r3]
                                out[l3 * step] = row[i3] if i3 >= 0 else 0


def from_tiles(const float_t[:, :, :, :, :] src, float_t[:, :, :, :, ::1] dst,
               const Py_ssize_t[:, ::1] map1, const Py_ssize_t[:, ::1] map2, const Py_ssize_t[:, ::1] map3,
               const Py_ssize_t[:, ::1] rng1, const Py_ssize_t[:, ::1] rng2, const Py_ssize_t[:, ::1] rng3,
               Py_ssize_t m0, Py_ssize_t M, Py_ssize_t R1, Py_ssize_t R2, Py_ssize_t R3,
               const float_t[::1] bias, bint has_bias, int nthreads):
    """Write the elements of ``dst (N, C, D, H, W)`` that belong to tiles ``m0 .. m0 + M - 1``.

    Tile ``m = (n, t1, t2, t3)`` (C order over ``(N, T1, T2, T3)``, ``T_d = rng_d.shape[0]``) owns the positions
    ``rng_d[t_d, 0] <= i_d < rng_d[t_d, 1]``; the tiles' ranges partition each axis.  Position ``i_d`` reads
    tile row ``map_d[i_d, 0]`` and phase ``map_d[i_d, 1]`` (negative: the element is zero):
    ``dst[n, c, i1, i2, i3] = src[l1, l2, l3, m - m0, c*R + (r1 R2 + r2) R3 + r3] (+ bias[c])``.
    """
    cdef Py_ssize_t C = dst.shape[1]
    cdef Py_ssize_t T1 = rng1.shape[0], T2 = rng2.shape[0], T3 = rng3.shape[0]
    cdef Py_ssize_t R = R1 * R2 * R3
    cdef Py_ssize_t ntask = M * C
    cdef Py_ssize_t task, mm, m, n, t1, t2, t3, c, i1, i2, i3, l1, l2, l3, r1, r2, r3, base
    cdef float_t bval
    cdef float_t* out
    for task in prange(ntask, nogil=True, schedule='static', num_threads=nthreads):
        c = task % C
        mm = task // C
        m = m0 + mm
        t3 = m % T3
        m = m // T3
        t2 = m % T2
        m = m // T2
        t1 = m % T1
        n = m // T1
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
                    for i3 in range(rng3[t3, 0], rng3[t3, 1]):
                        l3 = map3[i3, 0]
                        r3 = map3[i3, 1]
                        if r3 < 0:
                            out[i3] = bval
                        else:
                            out[i3] = src[l1, l2, l3, mm, base + r3] + bval


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


def fgemm(const float_t[:, ::1] a, const float_t[:, ::1] b, float_t[:, ::1] c, Py_ssize_t G,
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
