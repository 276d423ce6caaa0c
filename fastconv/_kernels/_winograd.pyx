# cython: language_level=3
"""The transform-domain tile engine: Winograd F(4, 3) per axis (``winograd``) and small-tile FFTs (``fft_tiles``).

Every problem reaches these kernels as a *stride-1 correlation with J-tap kernels* over "virtual" channels
(``fastconv/_algos/winograd.py`` maps strides, dilation and longer kernels onto that form):

* virtual input channel ``v`` reads ``src[n, in_chan[v], in_stride * m + in_off[v]]`` per axis (zero outside);
* virtual output channel ``k`` writes ``dst[n, out_chan[k], out_stride * m + out_off[k]]`` per axis (positions
  outside ``dst`` are dropped);
* ``m`` runs over a grid of tiles: ``m = m0 + mt * tile + i`` (``mt`` outputs per tile on an axis that is
  transformed, 1 on an axis that is not).

A transformed axis has tiles of alpha points: F(4, 3) (alpha 6, 4 outputs, 3 taps) or an FFT of L = 8, 16 or 32
points (L - J + 1 outputs).  A tile of ``NP`` points (36 for 2-D F(4x4, 3x3)) goes through

    V = B^T d B            input transform, per input tile and virtual input channel
    M[xi] = U[xi] V[xi]    one GEMM per transform point xi (``U`` = the transformed filters)
    Y = A^T M A            output transform, per output tile and virtual output channel

with the 1-D transforms applied along each transformed axis in turn (they are separable).  For FFT tiles the
points of a complex value pair up (Re, Im) and their products are complex (four real GEMMs).  The weight gradient
runs the adjoint: ``dU[xi] += Z[xi] V[xi]^T`` with ``Z = A dY A^T`` summed over tiles (the filter transform and its
adjoint run in double precision: ``filters``, ``fft_filters`` and their adjoints).

Data layout: tiles are the vector lanes.  A block holds ``TB`` consecutive tiles; its transformed input is
``V[point][channel][tile]`` and the GEMM result ``M[point][channel][tile]``, so every transform is a vector
operation over ``TB`` tiles and every GEMM is a column-major ``(tiles x C) @ (C x K)`` product on row-major data.
Row mode: tiles along W are gathered from image rows (for F(4, 3) the W transform is fused with unzipping the rows
into per-point vectors and the output rows are zipped back).  Batch mode: for small images the lanes are images
of one tile position and the arrays are rearranged to (C, D, H, W, N) first (``to_batch`` / ``from_batch``).

Parallelism: OpenMP over blocks (forward / input gradient) or over (lane, group, output-channel chunk) tasks
(weight gradient; each lane sums a fixed set of blocks in order into its own accumulator).  GEMMs are
single-threaded BLAS calls (the caller limits the BLAS pool to one thread).  Work units and summation orders do
not depend on the thread count, so results are bitwise identical for any number of threads.
"""
import numpy as np

# every ``cdef inline`` helper below is inlined at each call, where its block sizes are literals (see simd.h)
cdef extern from *:
    """
    #define FC_INLINE_KERNELS 1
    """

from cython.parallel cimport parallel, prange, threadid
from libc.stdlib cimport free
from libc.string cimport memset, memcpy
from scipy.linalg.cython_blas cimport sgemm, dgemm

from fastconv._kernels.common cimport Geometry, check_scratch, float_t, nonfinite


cdef extern from *:
    """
    #include <stdlib.h>
    #include <string.h>
    /* fc_vf / fc_vd: the shared vector types of common.pxd (FC_VECTOR_BYTES wide) */
    /* shuffle masks of fc_vf / fc_vd */
    typedef int fc_wino_mf __attribute__((vector_size(FC_VECTOR_BYTES)));
    typedef long long fc_wino_md __attribute__((vector_size(FC_VECTOR_BYTES)));

    /* Zeroed, 64-byte aligned memory (NULL on failure or for 0 bytes). */
    static void *fc_wino_alloc(size_t nbytes) {
        void *p = NULL;
        if (nbytes == 0 || posix_memalign(&p, 64, nbytes) != 0) return NULL;
        memset(p, 0, nbytes);
        return p;
    }

    /* dst[j * dn + i] = src[i * sn + j] for i < rows, j < cols: square blocks of one vector per row transposed
       in registers (simd.h's FC_TRANSPOSE_BLOCK), the edges element by element.  Elements only move. */
    #if FC_VECTOR_BYTES == 64
    #define FC_WINO_TF FC_TRANSPOSE_F16
    #define FC_WINO_TD FC_TRANSPOSE_Q8
    #else
    #define FC_WINO_TF FC_TRANSPOSE_F8
    #define FC_WINO_TD FC_TRANSPOSE_Q4
    #endif
    #define FC_WINO_TRANSPOSE(NAME, T, V, TR) \
    static void NAME(const T* src, Py_ssize_t sn, T* dst, Py_ssize_t dn, Py_ssize_t rows, Py_ssize_t cols) { \
        enum { N = sizeof(V) / sizeof(T) }; \
        typedef V VU __attribute__((aligned(sizeof(T))));     /* rows at any element */ \
        Py_ssize_t re = rows - rows % N, ce = cols - cols % N, i, j; \
        for (i = 0; i < re; i += N) \
            for (j = 0; j < ce; j += N) \
                FC_TRANSPOSE_BLOCK(VU, N, TR, src + i * sn + j, sn, dst + j * dn + i, dn); \
        for (i = 0; i < rows; i++) \
            for (j = (i < re ? ce : 0); j < cols; j++) \
                dst[j * dn + i] = src[i * sn + j]; \
    }
    FC_WINO_TRANSPOSE(fc_wino_transpose_f, float, fc_vf, FC_WINO_TF)
    FC_WINO_TRANSPOSE(fc_wino_transpose_d, double, fc_vd, FC_WINO_TD)

    /* lane permutations (FC_EVEN, FC_ODD, FC_ZLO, FC_ZHI) and their lists (FC_LIST4/8/16): simd.h */
    #if FC_VECTOR_BYTES == 64
    #define FC_MASK_f(F) ((fc_wino_mf)FC_LIST16(F, 16))
    #define FC_MASK_d(F) ((fc_wino_md)FC_LIST8(F, 8))
    #elif FC_VECTOR_BYTES == 32
    #define FC_MASK_f(F) ((fc_wino_mf)FC_LIST8(F, 8))
    #define FC_MASK_d(F) ((fc_wino_md)FC_LIST4(F, 4))
    #else
    #error "winograd: FC_VECTOR_BYTES must be 32 or 64"
    #endif
    #if defined(__GNUC__) && !defined(__clang__)
    #define FC_SHUF(SUF, a, b, F) __builtin_shuffle((a), (b), FC_MASK_##SUF(F))
    #else
    #define FC_SHUF(SUF, a, b, F) fc_wino_shuf_##SUF((a), (b), FC_MASK_##SUF(F))
    #endif

    /* 1-D transforms of F(4, 3) with the interpolation points 0, +-a, +-b, infinity, a = 3/4, b = 3/2 (every
       entry of A^T and B^T is a short binary fraction, so they are exact in floating point; these points give
       about a third of the rounding error of the textbook 0, +-1, +-2, see fastconv/_algos/winograd.py):

         B^T = [a2b2 0 -(a2+b2) 0 1 0; 0 -ab2 -b2 a 1 0; 0 ab2 -b2 -a 1 0; 0 -a2b -a2 b 1 0; 0 a2b -a2 -b 1 0;
                0 a2b2 0 -(a2+b2) 0 1]                                                              (6 -> 6)
         A^T = [1 1 1 1 1 0; 0 a -a b -b 0; 0 a2 a2 b2 b2 0; 0 a3 -a3 b3 -b3 1]                          (6 -> 4)
         A = (A^T)^T                                             (4 -> 6, adjoint of the output transform)

       (a2 = a^2 etc.)  *_line: over n lanes (a multiple of the vector length), point i of the source line at
       s + i*ss, of the destination at d + i*ds.  *_rows: the same transforms along the W axis, where the points of
       a tile are consecutive elements of an image row: the row buffers hold 4 elements per tile (the tile's first
       four points, tiles back to back: ra[4t + j]) and, for the input transform, the last two (rb[2t + j - 4]);
       the vectors of point j over the tiles are unzipped from them (and zipped back for the output rows). */
    #define FC_WA 0.75
    #define FC_WB 1.5
    #define FC_WA2 (FC_WA * FC_WA)
    #define FC_WB2 (FC_WB * FC_WB)
    #define FC_BT(T, d0, d1, d2, d3, d4, d5, STORE)                                                          \
        do {                                                                                              \
            __typeof__(d0) p_ = d4 - (T)FC_WB2 * d2, q_ = (T)FC_WA * (d3 - (T)FC_WB2 * d1);               \
            __typeof__(d0) r_ = d4 - (T)FC_WA2 * d2, s_ = (T)FC_WB * (d3 - (T)FC_WA2 * d1);               \
            STORE(0, (T)(FC_WA2 * FC_WB2) * d0 + p_ - (T)FC_WA2 * d2);                                    \
            STORE(1, p_ + q_); STORE(2, p_ - q_); STORE(3, r_ + s_); STORE(4, r_ - s_);                  \
            STORE(5, (T)(FC_WA2 * FC_WB2) * d1 - (T)(FC_WA2 + FC_WB2) * d3 + d5);                         \
        } while (0)
    #define FC_AT(T, m0, m1, m2, m3, m4, m5, y0, y1, y2, y3)                                                 \
        do {                                                                                              \
            __typeof__(m0) s1_ = m1 + m2, d1_ = m1 - m2, s2_ = m3 + m4, d2_ = m3 - m4;                    \
            y0 = m0 + s1_ + s2_;                                                                          \
            y1 = (T)FC_WA * d1_ + (T)FC_WB * d2_;                                                         \
            y2 = (T)FC_WA2 * s1_ + (T)FC_WB2 * s2_;                                                       \
            y3 = (T)(FC_WA2 * FC_WA) * d1_ + (T)(FC_WB2 * FC_WB) * d2_ + m5;                              \
        } while (0)
    #define FC_A(T, y0, y1, y2, y3, STORE)                                                                   \
        do {                                                                                              \
            __typeof__(y0) e1_ = y0 + (T)FC_WA2 * y2, o1_ = (T)FC_WA * (y1 + (T)FC_WA2 * y3);             \
            __typeof__(y0) e2_ = y0 + (T)FC_WB2 * y2, o2_ = (T)FC_WB * (y1 + (T)FC_WB2 * y3);             \
            STORE(0, y0); STORE(1, e1_ + o1_); STORE(2, e1_ - o1_); STORE(3, e2_ + o2_);                  \
            STORE(4, e2_ - o2_); STORE(5, y3);                                                            \
        } while (0)
    #define FC_LD(V, p) (*(const V *)(p))
    #define FC_STORE_D(j, v) (*(V_ *)(d + (j) * ds + l) = (v))

    #define FC_WINO_DEFINE(SUF, T, V, MI)                                                                   \\
    typedef V V_##SUF;                                                                                    \\
    static inline __attribute__((always_inline)) V fc_wino_shuf_##SUF(V a, V b, MI m) {                                                  \\
        const int L = (int)(sizeof(V) / sizeof(T));                                                       \\
        V r;                                                                                              \\
        for (int i = 0; i < L; i++) r[i] = m[i] < L ? a[m[i]] : b[m[i] - L];                              \\
        return r;                                                                                         \\
    }                                                                                                     \\
    static void fc_wino_bt_##SUF(const T *s, Py_ssize_t ss, T *d, Py_ssize_t ds, Py_ssize_t n) {          \\
        typedef V V_;                                                                                     \\
        for (Py_ssize_t l = 0; l < n; l += (Py_ssize_t)(sizeof(V) / sizeof(T))) {                         \\
            V d0 = FC_LD(V, s + l), d1 = FC_LD(V, s + ss + l), d2 = FC_LD(V, s + 2 * ss + l);             \\
            V d3 = FC_LD(V, s + 3 * ss + l), d4 = FC_LD(V, s + 4 * ss + l), d5 = FC_LD(V, s + 5 * ss + l); \\
            FC_BT(T, d0, d1, d2, d3, d4, d5, FC_STORE_D);                                                 \\
        }                                                                                                 \\
    }                                                                                                     \\
    static void fc_wino_at_##SUF(const T *s, Py_ssize_t ss, T *d, Py_ssize_t ds, Py_ssize_t n) {          \\
        typedef V V_;                                                                                     \\
        for (Py_ssize_t l = 0; l < n; l += (Py_ssize_t)(sizeof(V) / sizeof(T))) {                         \\
            V m0 = FC_LD(V, s + l), m1 = FC_LD(V, s + ss + l), m2 = FC_LD(V, s + 2 * ss + l);             \\
            V m3 = FC_LD(V, s + 3 * ss + l), m4 = FC_LD(V, s + 4 * ss + l), m5 = FC_LD(V, s + 5 * ss + l); \\
            V y0, y1, y2, y3;                                                                             \\
            FC_AT(T, m0, m1, m2, m3, m4, m5, y0, y1, y2, y3);                                             \\
            FC_STORE_D(0, y0); FC_STORE_D(1, y1); FC_STORE_D(2, y2); FC_STORE_D(3, y3);                   \\
        }                                                                                                 \\
    }                                                                                                     \\
    static void fc_wino_a_##SUF(const T *s, Py_ssize_t ss, T *d, Py_ssize_t ds, Py_ssize_t n) {           \\
        typedef V V_;                                                                                     \\
        for (Py_ssize_t l = 0; l < n; l += (Py_ssize_t)(sizeof(V) / sizeof(T))) {                         \\
            V y0 = FC_LD(V, s + l), y1 = FC_LD(V, s + ss + l), y2 = FC_LD(V, s + 2 * ss + l);             \\
            V y3 = FC_LD(V, s + 3 * ss + l);                                                              \\
            FC_A(T, y0, y1, y2, y3, FC_STORE_D);                                                          \\
        }                                                                                                 \\
    }                                                                                                     \\
    /* points 0..3 of L tiles from ra (4 per tile) */                                                     \\
    static inline void fc_wino_unzip4_##SUF(const T *ra, V *c0, V *c1, V *c2, V *c3) {                    \\
        const Py_ssize_t L = (Py_ssize_t)(sizeof(V) / sizeof(T));                                         \\
        V a0 = FC_LD(V, ra), a1 = FC_LD(V, ra + L), a2 = FC_LD(V, ra + 2 * L), a3 = FC_LD(V, ra + 3 * L); \\
        V e0 = FC_SHUF(SUF, a0, a1, FC_EVEN), o0 = FC_SHUF(SUF, a0, a1, FC_ODD);                           \\
        V e1 = FC_SHUF(SUF, a2, a3, FC_EVEN), o1 = FC_SHUF(SUF, a2, a3, FC_ODD);                           \\
        *c0 = FC_SHUF(SUF, e0, e1, FC_EVEN); *c2 = FC_SHUF(SUF, e0, e1, FC_ODD);                           \\
        *c1 = FC_SHUF(SUF, o0, o1, FC_EVEN); *c3 = FC_SHUF(SUF, o0, o1, FC_ODD);                           \\
    }                                                                                                     \\
    static void fc_wino_rows_bt_##SUF(const T *ra, const T *rb, Py_ssize_t n, T *d, Py_ssize_t ds) {      \\
        typedef V V_;                                                                                     \\
        const Py_ssize_t L = (Py_ssize_t)(sizeof(V) / sizeof(T));                                         \\
        for (Py_ssize_t l = 0; l < n; l += L) {                                                           \\
            V d0, d1, d2, d3;                                                                             \\
            fc_wino_unzip4_##SUF(ra + 4 * l, &d0, &d1, &d2, &d3);                                         \\
            V b0 = FC_LD(V, rb + 2 * l), b1 = FC_LD(V, rb + 2 * l + L);                                   \\
            V d4 = FC_SHUF(SUF, b0, b1, FC_EVEN), d5 = FC_SHUF(SUF, b0, b1, FC_ODD);                       \\
            FC_BT(T, d0, d1, d2, d3, d4, d5, FC_STORE_D);                                                 \\
        }                                                                                                 \\
    }                                                                                                     \\
    static void fc_wino_rows_a_##SUF(const T *ra, Py_ssize_t n, T *d, Py_ssize_t ds) {                   \\
        typedef V V_;                                                                                     \\
        const Py_ssize_t L = (Py_ssize_t)(sizeof(V) / sizeof(T));                                         \\
        for (Py_ssize_t l = 0; l < n; l += L) {                                                           \\
            V y0, y1, y2, y3;                                                                             \\
            fc_wino_unzip4_##SUF(ra + 4 * l, &y0, &y1, &y2, &y3);                                         \\
            FC_A(T, y0, y1, y2, y3, FC_STORE_D);                                                          \\
        }                                                                                                 \\
    }                                                                                                     \\
    /* output rows: ro[4t + j] = (A^T m)_j + bias for the tiles t < n */                                 \\
    static void fc_wino_rows_at_##SUF(const T *s, Py_ssize_t ss, Py_ssize_t n, T *ro, T bias) {           \\
        const Py_ssize_t L = (Py_ssize_t)(sizeof(V) / sizeof(T));                                         \\
        for (Py_ssize_t l = 0; l < n; l += L) {                                                           \\
            V m0 = FC_LD(V, s + l), m1 = FC_LD(V, s + ss + l), m2 = FC_LD(V, s + 2 * ss + l);             \\
            V m3 = FC_LD(V, s + 3 * ss + l), m4 = FC_LD(V, s + 4 * ss + l), m5 = FC_LD(V, s + 5 * ss + l); \\
            V y0, y1, y2, y3;                                                                             \\
            FC_AT(T, m0, m1, m2, m3, m4, m5, y0, y1, y2, y3);                                             \\
            y0 += bias; y1 += bias; y2 += bias; y3 += bias;                                               \\
            V lo02 = FC_SHUF(SUF, y0, y2, FC_ZLO), hi02 = FC_SHUF(SUF, y0, y2, FC_ZHI);                    \\
            V lo13 = FC_SHUF(SUF, y1, y3, FC_ZLO), hi13 = FC_SHUF(SUF, y1, y3, FC_ZHI);                    \\
            T *r = ro + 4 * l;                                                                            \\
            *(V *)r = FC_SHUF(SUF, lo02, lo13, FC_ZLO);                                                   \\
            *(V *)(r + L) = FC_SHUF(SUF, lo02, lo13, FC_ZHI);                                             \\
            *(V *)(r + 2 * L) = FC_SHUF(SUF, hi02, hi13, FC_ZLO);                                         \\
            *(V *)(r + 3 * L) = FC_SHUF(SUF, hi02, hi13, FC_ZHI);                                         \\
        }                                                                                                 \\
    }                                                                                                     \\
    /* d[l] (+)= u * s[l] over n lanes: the channel product of small channel counts */                   \\
    static void fc_wino_axpy_##SUF(T u, const T *s, T *d, Py_ssize_t n, int first) {                      \\
        V uv = u - (V){0};                                                                                \\
        if (first) {                                                                                      \\
            for (Py_ssize_t l = 0; l < n; l += (Py_ssize_t)(sizeof(V) / sizeof(T)))                      \\
                *(V *)(d + l) = uv * FC_LD(V, s + l);                                                     \\
        } else {                                                                                          \\
            for (Py_ssize_t l = 0; l < n; l += (Py_ssize_t)(sizeof(V) / sizeof(T)))                      \\
                *(V *)(d + l) += uv * FC_LD(V, s + l);                                                    \\
        }                                                                                                 \\
    }
    /* The filter transform G (3 -> 6, the 6 x 3 matrix g) and its adjoint G^T (6 -> 3) in double precision over
       n elements (a multiple of the vector length). */
    static void fc_wino_g(const double *g, const double *s, Py_ssize_t ss, double *d, Py_ssize_t ds, Py_ssize_t n) {
        for (Py_ssize_t l = 0; l < n; l += (Py_ssize_t)(sizeof(fc_vd) / sizeof(double))) {
            fc_vd x0 = FC_LD(fc_vd, s + l), x1 = FC_LD(fc_vd, s + ss + l), x2 = FC_LD(fc_vd, s + 2 * ss + l);
            for (int i = 0; i < 6; i++)
                *(fc_vd *)(d + i * ds + l) = g[3 * i] * x0 + g[3 * i + 1] * x1 + g[3 * i + 2] * x2;
        }
    }
    static void fc_wino_gt(const double *g, const double *s, Py_ssize_t ss, double *d, Py_ssize_t ds,
                           Py_ssize_t n) {
        for (Py_ssize_t l = 0; l < n; l += (Py_ssize_t)(sizeof(fc_vd) / sizeof(double))) {
            fc_vd u[6];
            for (int i = 0; i < 6; i++) u[i] = FC_LD(fc_vd, s + i * ss + l);
            for (int k = 0; k < 3; k++) {
                fc_vd acc = g[k] * u[0];
                for (int i = 1; i < 6; i++) acc += g[3 * i + k] * u[i];
                *(fc_vd *)(d + k * ds + l) = acc;
            }
        }
    }
    /* Both axes of a 2-D 3 x 3 kernel in one pass over n filters (tap q = 3 k1 + k2 at s + q * ss, point
       p = 6 i + j at d + p * ds): the same products in the same order as fc_wino_g along axis 2, then along
       axis 1, with the intermediate rows in registers. */
    static void fc_wino_g2(const double *g, const double *s, Py_ssize_t ss, double *d, Py_ssize_t ds,
                           Py_ssize_t n) {
        double gc[18];
        for (int q = 0; q < 18; q++) gc[q] = g[q];
        for (Py_ssize_t l = 0; l < n; l += (Py_ssize_t)(sizeof(fc_vd) / sizeof(double))) {
            fc_vd x[9];
            for (int q = 0; q < 9; q++) x[q] = FC_LD(fc_vd, s + q * ss + l);
            for (int j = 0; j < 6; j++) {
                fc_vd t0 = gc[3 * j] * x[0] + gc[3 * j + 1] * x[1] + gc[3 * j + 2] * x[2];
                fc_vd t1 = gc[3 * j] * x[3] + gc[3 * j + 1] * x[4] + gc[3 * j + 2] * x[5];
                fc_vd t2 = gc[3 * j] * x[6] + gc[3 * j + 1] * x[7] + gc[3 * j + 2] * x[8];
                for (int i = 0; i < 6; i++)
                    *(fc_vd *)(d + (6 * i + j) * ds + l) = gc[3 * i] * t0 + gc[3 * i + 1] * t1 + gc[3 * i + 2] * t2;
            }
        }
    }
    /* The adjoint of fc_wino_g2 (the same products in the same order as fc_wino_gt along axis 2, then along
       axis 1): the 36 points at s + p * ss (whole vectors) -> out[i * os + q] for the n filters i and taps q,
       rounded to T once. */
    #define FC_WINO_GT2(SUF, T)                                                                              \
    static void fc_wino_gt2_##SUF(const double *g, const double *s, Py_ssize_t ss, T *out, Py_ssize_t os,  \
                                  Py_ssize_t n) {                                                           \
        enum { L = sizeof(fc_vd) / sizeof(double) };                                                      \
        double gc[18];                                                                                    \
        for (int q = 0; q < 18; q++) gc[q] = g[q];                                                        \
        for (Py_ssize_t l = 0; l < n; l += L) {                                                           \
            fc_vd o[9];                                                                                   \
            for (int k = 0; k < 3; k++) {                                                                 \
                fc_vd t[6];                                                                               \
                for (int j = 0; j < 6; j++) {                                                             \
                    const double *r = s + 6 * j * ss + l;                                                 \
                    fc_vd acc = gc[k] * FC_LD(fc_vd, r);                                                  \
                    for (int m = 1; m < 6; m++) acc += gc[3 * m + k] * FC_LD(fc_vd, r + m * ss);          \
                    t[j] = acc;                                                                           \
                }                                                                                         \
                for (int kk = 0; kk < 3; kk++) {                                                          \
                    fc_vd acc = gc[kk] * t[0];                                                            \
                    for (int m = 1; m < 6; m++) acc += gc[3 * m + kk] * t[m];                             \
                    o[3 * kk + k] = acc;                                                                  \
                }                                                                                         \
            }                                                                                             \
            Py_ssize_t m = n - l < L ? n - l : L;                                                         \
            for (Py_ssize_t e = 0; e < m; e++)                                                            \
                for (int q = 0; q < 9; q++) out[(l + e) * os + q] = (T)o[q][e];                           \
        }                                                                                                 \
    }
    FC_WINO_GT2(f, float)
    FC_WINO_GT2(d, double)
    /* Small-tile FFT codelets: radix-2 FFTs of L = 8, 16 or 32 points over vectors of lanes (the tiles or images
       of a block), from a table of cos / sin (2 pi j / 32).  Real transforms of L points use a complex FFT of L/2
       points; their spectrum is packed into L reals [X0, X_{L/2}, Re X1, Im X1, ..., Re X_{L/2-1}, Im X_{L/2-1}]
       (numpy's rfft up to the packing).  Inverse transforms are scaled by 1/L. */
    #define FC_FFT_MAX 32
    static const double fc_fft_cs[FC_FFT_MAX] = {
        1, 0.98078528040323043, 0.92387953251128674, 0.83146961230254524, 0.70710678118654757,
        0.55557023301960229, 0.38268343236508984, 0.19509032201612833, 0.0, -0.19509032201612819,
        -0.38268343236508973, -0.55557023301960196, -0.70710678118654746, -0.83146961230254535,
        -0.92387953251128674, -0.98078528040323043, -1, -0.98078528040323043, -0.92387953251128685,
        -0.83146961230254546, -0.70710678118654768, -0.55557023301960218, -0.38268343236509034,
        -0.19509032201612866, 0.0, 0.1950903220161283, 0.38268343236509, 0.55557023301960184,
        0.70710678118654735, 0.83146961230254524, 0.92387953251128652, 0.98078528040323032
    };
    static const double fc_fft_sn[FC_FFT_MAX] = {
        0.0, 0.19509032201612825, 0.38268343236508978, 0.55557023301960218, 0.70710678118654746,
        0.83146961230254524, 0.92387953251128674, 0.98078528040323043, 1, 0.98078528040323043,
        0.92387953251128674, 0.83146961230254546, 0.70710678118654757, 0.55557023301960218,
        0.38268343236508989, 0.19509032201612861, 0.0, -0.19509032201612836, -0.38268343236508967,
        -0.55557023301960196, -0.70710678118654746, -0.83146961230254524, -0.92387953251128652,
        -0.98078528040323032, -1, -0.98078528040323043, -0.92387953251128663, -0.83146961230254546,
        -0.70710678118654768, -0.55557023301960218, -0.38268343236509039, -0.19509032201612872
    };
    #define FC_FFT_DEFINE(SUF, T, V)                                                                        \\
    /* in place, bit-reversed input order handled here; sign -1 forward, +1 inverse (unscaled) */         \\
    static inline __attribute__((always_inline)) void fc_cfft_core_##SUF(V *re, V *im, const int L,       \\
                                                                          const int sign) {               \\
        for (int i = 1, j = 0; i < L; i++) {                                                              \\
            int bit = L >> 1;                                                                             \\
            for (; j & bit; bit >>= 1) j ^= bit;                                                          \\
            j ^= bit;                                                                                     \\
            if (i < j) { V t = re[i]; re[i] = re[j]; re[j] = t; t = im[i]; im[i] = im[j]; im[j] = t; }    \\
        }                                                                                                 \\
        for (int len = 2; len <= L; len <<= 1) {                                                          \\
            const int h = len >> 1, step = FC_FFT_MAX / len;                                              \\
            for (int j = 0; j < h; j++) {                                                                 \\
                const T wr = (T)fc_fft_cs[j * step], wi = (T)(sign * fc_fft_sn[j * step]);               \\
                for (int i = 0; i < L; i += len) {                                                        \\
                    V xr = re[i + j + h], xi = im[i + j + h], ur = re[i + j], ui = im[i + j], vr, vi;     \\
                    if (j == 0) { vr = xr; vi = xi; }                                                     \\
                    else { vr = xr * wr - xi * wi; vi = xr * wi + xi * wr; }                               \\
                    re[i + j] = ur + vr; im[i + j] = ui + vi;                                             \\
                    re[i + j + h] = ur - vr; im[i + j + h] = ui - vi;                                     \\
                }                                                                                         \\
            }                                                                                             \\
        }                                                                                                 \\
    }                                                                                                     \\
    static inline __attribute__((always_inline)) void fc_cfft_line_##SUF(                                \\
            const T *sr, const T *si, Py_ssize_t ss, T *dr, T *di, Py_ssize_t ds, Py_ssize_t n,           \\
            const int L, const int inverse) {                                                             \\
        V re[FC_FFT_MAX], im[FC_FFT_MAX];                                                                 \\
        const T sc = (T)1 / L;                                                                            \\
        for (Py_ssize_t l = 0; l < n; l += (Py_ssize_t)(sizeof(V) / sizeof(T))) {                        \\
            for (int k = 0; k < L; k++) { re[k] = FC_LD(V, sr + k * ss + l); im[k] = FC_LD(V, si + k * ss + l); } \\
            fc_cfft_core_##SUF(re, im, L, inverse ? 1 : -1);                                              \\
            for (int k = 0; k < L; k++) {                                                                 \\
                *(V *)(dr + k * ds + l) = inverse ? re[k] * sc : re[k];                                   \\
                *(V *)(di + k * ds + l) = inverse ? im[k] * sc : im[k];                                   \\
            }                                                                                             \\
        }                                                                                                 \\
    }                                                                                                     \\
    static inline __attribute__((always_inline)) void fc_rfft_line_##SUF(                                \\
            const T *s, Py_ssize_t ss, T *d, Py_ssize_t ds, Py_ssize_t n, const int L) {                  \\
        V zr[FC_FFT_MAX / 2], zi[FC_FFT_MAX / 2];                                                         \\
        const int M = L / 2, step = FC_FFT_MAX / L;                                                       \\
        for (Py_ssize_t l = 0; l < n; l += (Py_ssize_t)(sizeof(V) / sizeof(T))) {                        \\
            for (int k = 0; k < M; k++) { zr[k] = FC_LD(V, s + 2 * k * ss + l); zi[k] = FC_LD(V, s + (2 * k + 1) * ss + l); } \\
            fc_cfft_core_##SUF(zr, zi, M, -1);                                                            \\
            V z0r = zr[0], z0i = zi[0];                                                                   \\
            for (int k = 1; k < M; k++) {                                                                 \\
                const T c = (T)fc_fft_cs[k * step], sn = (T)fc_fft_sn[k * step];                          \\
                V a = zr[k], b = zi[k], cc = zr[M - k], dd = zi[M - k];                                   \\
                V Er = (a + cc) * (T)0.5, Ei = (b - dd) * (T)0.5, Or = (b + dd) * (T)0.5;                 \\
                V Oi = (cc - a) * (T)0.5;                                                                 \\
                *(V *)(d + 2 * k * ds + l) = Er + c * Or + sn * Oi;                                       \\
                *(V *)(d + (2 * k + 1) * ds + l) = Ei + c * Oi - sn * Or;                                 \\
            }                                                                                             \\
            *(V *)(d + l) = z0r + z0i;                                                                    \\
            *(V *)(d + ds + l) = z0r - z0i;                                                               \\
        }                                                                                                 \\
    }                                                                                                     \\
    static inline __attribute__((always_inline)) void fc_irfft_line_##SUF(                               \\
            const T *s, Py_ssize_t ss, T *d, Py_ssize_t ds, Py_ssize_t n, const int L) {                  \\
        V zr[FC_FFT_MAX / 2], zi[FC_FFT_MAX / 2];                                                         \\
        const int M = L / 2, step = FC_FFT_MAX / L;                                                       \\
        const T sc = (T)1 / L;                                                                            \\
        for (Py_ssize_t l = 0; l < n; l += (Py_ssize_t)(sizeof(V) / sizeof(T))) {                        \\
            V X0 = FC_LD(V, s + l), XM = FC_LD(V, s + ss + l);                                            \\
            zr[0] = X0 + XM; zi[0] = X0 - XM;                                                             \\
            for (int k = 1; k < M; k++) {                                                                 \\
                const T c = (T)fc_fft_cs[k * step], sn = (T)fc_fft_sn[k * step];                          \\
                V xr = FC_LD(V, s + 2 * k * ss + l), xi = FC_LD(V, s + (2 * k + 1) * ss + l);             \\
                V yr = FC_LD(V, s + 2 * (M - k) * ss + l), yi = FC_LD(V, s + (2 * (M - k) + 1) * ss + l); \\
                V Er = xr + yr, Ei = xi - yi, Dr = xr - yr, Di = xi + yi;                                 \\
                V Or = Dr * c - Di * sn, Oi = Dr * sn + Di * c;                                           \\
                zr[k] = Er - Oi; zi[k] = Ei + Or;                                                         \\
            }                                                                                             \\
            fc_cfft_core_##SUF(zr, zi, M, 1);                                                             \\
            for (int k = 0; k < M; k++) {                                                                 \\
                *(V *)(d + 2 * k * ds + l) = zr[k] * sc;                                                  \\
                *(V *)(d + (2 * k + 1) * ds + l) = zi[k] * sc;                                            \\
            }                                                                                             \\
        }                                                                                                 \\
    }                                                                                                     \\
    /* dispatch on the tile length so that every loop above is unrolled with constant twiddles */         \\
    static void fc_rfft_##SUF(const T *s, Py_ssize_t ss, T *d, Py_ssize_t ds, Py_ssize_t n, int L, int inv) { \\
        if (inv) {                                                                                        \\
            if (L == 8) fc_irfft_line_##SUF(s, ss, d, ds, n, 8);                                          \\
            else if (L == 16) fc_irfft_line_##SUF(s, ss, d, ds, n, 16);                                   \\
            else fc_irfft_line_##SUF(s, ss, d, ds, n, 32);                                                \\
        } else {                                                                                          \\
            if (L == 8) fc_rfft_line_##SUF(s, ss, d, ds, n, 8);                                           \\
            else if (L == 16) fc_rfft_line_##SUF(s, ss, d, ds, n, 16);                                    \\
            else fc_rfft_line_##SUF(s, ss, d, ds, n, 32);                                                 \\
        }                                                                                                 \\
    }                                                                                                     \\
    static void fc_cfft_##SUF(const T *sr, const T *si, Py_ssize_t ss, T *dr, T *di, Py_ssize_t ds,      \\
                              Py_ssize_t n, int L, int inv) {                                             \\
        if (L == 8) fc_cfft_line_##SUF(sr, si, ss, dr, di, ds, n, 8, inv);                                \\
        else if (L == 16) fc_cfft_line_##SUF(sr, si, ss, dr, di, ds, n, 16, inv);                         \\
        else fc_cfft_line_##SUF(sr, si, ss, dr, di, ds, n, 32, inv);                                      \\
    }
    FC_FFT_DEFINE(f, float, fc_vf)
    FC_FFT_DEFINE(d, double, fc_vd)
    FC_WINO_DEFINE(f, float, fc_vf, fc_wino_mf)
    FC_WINO_DEFINE(d, double, fc_vd, fc_wino_md)

    /* The weight gradient's output-gradient transform with the channels as lanes: Z = A g A^T of the 4 x 4 tiles
       of a run of n tiles (one image row of tiles; the first at row y0, column x0 of 2-D H x W channels), for
       nk <= L consecutive channels (channel stride gc) at once, point p = 6h + w of tile t stored as one vector
       at z + p * zp + t * zt, lane = channel (lanes past nk zero).  Each image row segment of L columns is read
       as one vector per channel and transposed in registers (FC_WINO_TF / _TD), so the points come out
       channel-major -- the layout the products multiply untransposed -- with no copy of the rows first.
       Positions outside the channel are zero.  The same arithmetic as fc_wino_rows_a + fc_wino_a (W, then H). */
    #define FC_WINO_GYT(SUF, T, V, MI, TR)                                                                   \\
    static void fc_wino_gyt_##SUF(const T *g, Py_ssize_t gc, Py_ssize_t H, Py_ssize_t W, Py_ssize_t nk,      \\
                                  Py_ssize_t y0, Py_ssize_t x0, Py_ssize_t n, T *z, Py_ssize_t zp,          \\
                                  Py_ssize_t zt, Py_ssize_t pf) {                                         \\
        enum { L = sizeof(V) / sizeof(T), Q = sizeof(V) / sizeof(T) / 4 };                                \\
        typedef V VU __attribute__((aligned(sizeof(T))));                                                 \\
        V r[L], y[4][Q][6];                                                                               \\
        MI iota;                                                                                          \\
        for (int j = 0; j < L; j++) iota[j] = j;                                                          \\
        for (Py_ssize_t t0 = 0; t0 < n; t0 += Q) {                                                        \\
            Py_ssize_t c = x0 + 4 * t0, nq = n - t0 < Q ? n - t0 : Q;                                     \\
            /* a segment past the row's end: the row's last L columns, moved down by c - (W - L) lanes, \\
               the columns past W zero (rows shorter than L: element by element) */                        \\
            MI idx = iota + (__typeof__(iota[0]))(c + L - W), keep = idx < L;                               \\
            for (int i = 0; i < 4; i++) {                                                                 \\
                Py_ssize_t row = y0 + i;                                                                  \\
                const T *gr = g + row * W;                                                                \\
                for (int l = 0; l < L; l++) {                                                             \\
                    if (row >= H || l >= nk) {                                                            \\
                        r[l] = (V){0};                                                                    \\
                    } else if (c + L <= W) {                                                              \\
                        r[l] = *(const VU *)(gr + l * gc + c);                                            \\
                        if (pf) __builtin_prefetch(gr + l * gc + c + pf, 0, 3);                            \\
                    } else if (W >= L) {                                                                  \\
                        V u = *(const VU *)(gr + l * gc + W - L);                                         \\
                        r[l] = (V)((MI)__builtin_shuffle(u, idx) & keep);                                 \\
                        if (pf) __builtin_prefetch(gr + l * gc + W - L + pf, 0, 3);                        \\
                    } else {                                                                              \\
                        for (int j = 0; j < L; j++) r[l][j] = c + j < W ? gr[l * gc + c + j] : (T)0;      \\
                    }                                                                                     \\
                }                                                                                         \\
                TR(r)                                                                                     \\
                for (int q = 0; q < Q; q++) {                                                             \\
                    V *yq = y[i][q];                                                                      \\
                    FC_A(T, r[4 * q], r[4 * q + 1], r[4 * q + 2], r[4 * q + 3], FC_GYT_ROW);              \\
                }                                                                                         \\
            }                                                                                             \\
            for (Py_ssize_t q = 0; q < nq; q++) {                                                         \\
                T *zq = z + (t0 + q) * zt;                                                                \\
                for (int w = 0; w < 6; w++) {                                                             \\
                    FC_A(T, y[0][q][w], y[1][q][w], y[2][q][w], y[3][q][w], FC_GYT_COL);                  \\
                }                                                                                         \\
            }                                                                                             \\
        }                                                                                                 \\
    }
    #define FC_GYT_ROW(j, v) (yq[j] = (v))
    #define FC_GYT_COL(h, v) (*(__typeof__(y[0][0][0]) *)(zq + (6 * (h) + w) * zp) = (v))
    FC_WINO_GYT(f, float, fc_vf, fc_wino_mf, FC_WINO_TF)
    FC_WINO_GYT(d, double, fc_vd, fc_wino_md, FC_WINO_TD)

    /* one vector: d = s (+ bias) */
    #define fc_wino_mov_f(d, s, b) (*(fc_vf *)(d) = *(const fc_vf *)(s) + (float)(b))
    #define fc_wino_mov_d(d, s, b) (*(fc_vd *)(d) = *(const fc_vd *)(s) + (double)(b))
    #define fc_wino_prefetch(p) __builtin_prefetch((const void *)(p), 0, 3)
    #define fc_wino_prefetchw(p) __builtin_prefetch((const void *)(p), 1, 3)
    static const Py_ssize_t fc_wino_lanes_f = sizeof(fc_vf) / sizeof(float);
    static const Py_ssize_t fc_wino_lanes_d = sizeof(fc_vd) / sizeof(double);

    /* d[k * st] = s[k] for k < n, the positions in between left as they are: they hold other virtual channels'
       outputs (the input gradient's residues), perhaps being written by another thread.  With AVX-512 or AVX2,
       strides 2 and 4 go through masked stores of vectors whose lanes were spread to every st-th position (a masked
       store writes nothing in its other lanes, and cannot fault there); the rest element by element. */
    #if defined(__AVX512F__) || defined(__AVX2__)
    #include <immintrin.h>
    #endif
    static inline void fc_wino_strided_f(float *d, const float *s, Py_ssize_t n, Py_ssize_t st) {
        Py_ssize_t k = 0;
    #if defined(__AVX512F__)
        if (st == 2)
            for (; k + 8 <= n; k += 8)
                _mm512_mask_storeu_ps(d + 2 * k, 0x5555, _mm512_maskz_expandloadu_ps(0x5555, s + k));
        else if (st == 4)
            for (; k + 4 <= n; k += 4)
                _mm512_mask_storeu_ps(d + 4 * k, 0x1111, _mm512_maskz_expandloadu_ps(0x1111, s + k));
    #elif defined(__AVX2__)
        if (st == 2) {
            const __m256i spread = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
            const __m256i mask = _mm256_setr_epi32(-1, 0, -1, 0, -1, 0, -1, 0);
            for (; k + 4 <= n; k += 4)
                _mm256_maskstore_ps(d + 2 * k, mask,
                                    _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(s + k)), spread));
        } else if (st == 4) {
            const __m256i spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
            const __m256i mask = _mm256_setr_epi32(-1, 0, 0, 0, -1, 0, 0, 0);
            for (; k + 2 <= n; k += 2)
                _mm256_maskstore_ps(d + 4 * k, mask, _mm256_permutevar8x32_ps(
                    _mm256_castps128_ps256(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(s + k)))), spread));
        }
    #endif
        for (; k < n; k++) d[k * st] = s[k];
    }
    static inline void fc_wino_strided_d(double *d, const double *s, Py_ssize_t n, Py_ssize_t st) {
        Py_ssize_t k = 0;
    #if defined(__AVX512F__)
        if (st == 2)
            for (; k + 4 <= n; k += 4)
                _mm512_mask_storeu_pd(d + 2 * k, 0x55, _mm512_maskz_expandloadu_pd(0x55, s + k));
        else if (st == 4)
            for (; k + 2 <= n; k += 2)
                _mm512_mask_storeu_pd(d + 4 * k, 0x11, _mm512_maskz_expandloadu_pd(0x11, s + k));
    #elif defined(__AVX2__)
        if (st == 2) {
            const __m256i mask = _mm256_setr_epi64x(-1, 0, -1, 0);
            for (; k + 2 <= n; k += 2)
                _mm256_maskstore_pd(d + 2 * k, mask,
                                    _mm256_permute4x64_pd(_mm256_castpd128_pd256(_mm_loadu_pd(s + k)), 0x50));
        }
    #endif
        for (; k < n; k++) d[k * st] = s[k];
    }
    """
    void* fc_wino_alloc(size_t nbytes) nogil
    void fc_wino_transpose_f(const float* src, Py_ssize_t sn, float* dst, Py_ssize_t dn, Py_ssize_t rows,
                             Py_ssize_t cols) nogil
    void fc_wino_transpose_d(const double* src, Py_ssize_t sn, double* dst, Py_ssize_t dn, Py_ssize_t rows,
                             Py_ssize_t cols) nogil
    void fc_wino_prefetch(const void* p) nogil
    void fc_wino_strided_f(float* d, const float* s, Py_ssize_t n, Py_ssize_t st) nogil
    void fc_wino_strided_d(double* d, const double* s, Py_ssize_t n, Py_ssize_t st) nogil
    void fc_wino_gyt_f(const float* g, Py_ssize_t gc, Py_ssize_t H, Py_ssize_t W, Py_ssize_t nk, Py_ssize_t y0,
                       Py_ssize_t x0, Py_ssize_t n, float* z, Py_ssize_t zp, Py_ssize_t zt, Py_ssize_t pf) nogil
    void fc_wino_gyt_d(const double* g, Py_ssize_t gc, Py_ssize_t H, Py_ssize_t W, Py_ssize_t nk, Py_ssize_t y0,
                       Py_ssize_t x0, Py_ssize_t n, double* z, Py_ssize_t zp, Py_ssize_t zt, Py_ssize_t pf) nogil
    void fc_wino_mov_f(float* d, const float* s, float b) nogil
    void fc_wino_mov_d(double* d, const double* s, double b) nogil
    void fc_wino_prefetchw(const void* p) nogil
    void fc_wino_bt_f(const float* s, Py_ssize_t ss, float* d, Py_ssize_t ds, Py_ssize_t n) nogil
    void fc_wino_at_f(const float* s, Py_ssize_t ss, float* d, Py_ssize_t ds, Py_ssize_t n) nogil
    void fc_wino_a_f(const float* s, Py_ssize_t ss, float* d, Py_ssize_t ds, Py_ssize_t n) nogil
    void fc_wino_rows_bt_f(const float* ra, const float* rb, Py_ssize_t n, float* d, Py_ssize_t ds) nogil
    void fc_wino_rows_a_f(const float* ra, Py_ssize_t n, float* d, Py_ssize_t ds) nogil
    void fc_wino_rows_at_f(const float* s, Py_ssize_t ss, Py_ssize_t n, float* ro, float bias) nogil
    void fc_wino_axpy_f(float u, const float* s, float* d, Py_ssize_t n, int first) nogil
    void fc_wino_bt_d(const double* s, Py_ssize_t ss, double* d, Py_ssize_t ds, Py_ssize_t n) nogil
    void fc_wino_at_d(const double* s, Py_ssize_t ss, double* d, Py_ssize_t ds, Py_ssize_t n) nogil
    void fc_wino_a_d(const double* s, Py_ssize_t ss, double* d, Py_ssize_t ds, Py_ssize_t n) nogil
    void fc_wino_rows_bt_d(const double* ra, const double* rb, Py_ssize_t n, double* d, Py_ssize_t ds) nogil
    void fc_wino_rows_a_d(const double* ra, Py_ssize_t n, double* d, Py_ssize_t ds) nogil
    void fc_wino_rows_at_d(const double* s, Py_ssize_t ss, Py_ssize_t n, double* ro, double bias) nogil
    void fc_wino_axpy_d(double u, const double* s, double* d, Py_ssize_t n, int first) nogil
    void fc_wino_g(const double* g, const double* s, Py_ssize_t ss, double* d, Py_ssize_t ds, Py_ssize_t n) nogil
    void fc_wino_gt(const double* g, const double* s, Py_ssize_t ss, double* d, Py_ssize_t ds, Py_ssize_t n) nogil
    void fc_wino_g2(const double* g, const double* s, Py_ssize_t ss, double* d, Py_ssize_t ds, Py_ssize_t n) nogil
    void fc_wino_gt2_f(const double* g, const double* s, Py_ssize_t ss, float* out, Py_ssize_t os, Py_ssize_t n) nogil
    void fc_wino_gt2_d(const double* g, const double* s, Py_ssize_t ss, double* out, Py_ssize_t os,
                       Py_ssize_t n) nogil
    void fc_rfft_f(const float* s, Py_ssize_t ss, float* d, Py_ssize_t ds, Py_ssize_t n, int L, int inv) nogil
    void fc_rfft_d(const double* s, Py_ssize_t ss, double* d, Py_ssize_t ds, Py_ssize_t n, int L, int inv) nogil
    void fc_cfft_f(const float* sr, const float* si, Py_ssize_t ss, float* dr, float* di, Py_ssize_t ds,
                   Py_ssize_t n, int L, int inv) nogil
    void fc_cfft_d(const double* sr, const double* si, Py_ssize_t ss, double* dr, double* di, Py_ssize_t ds,
                   Py_ssize_t n, int L, int inv) nogil
    const Py_ssize_t fc_wino_lanes_f
    const Py_ssize_t fc_wino_lanes_d


def lanes(bint is_float):
    """Vector lanes of this build (tiles per block are a multiple of it)."""
    return fc_wino_lanes_f if is_float else fc_wino_lanes_d


# kinds of 1-D transform
DEF BT = 0      # input transform, 6 -> 6
DEF AT = 1      # output transform, 6 -> 4
DEF AA = 2      # adjoint of the output transform, 4 -> 6


cdef struct Grid:
    # per axis (D, H, W): transform active, tile points alpha, outputs per tile mt, tiles T, first position m0
    int act[3]
    Py_ssize_t alpha[3]
    Py_ssize_t mt[3]
    Py_ssize_t T[3]
    Py_ssize_t m0[3]
    Py_ssize_t NP          # points of a transformed tile
    Py_ssize_t ntiles      # N * T[0] * T[1] * T[2]
    Py_ssize_t TB          # tiles per block (a multiple of the vector lanes)
    Py_ssize_t TBP         # lane stride of every buffer: TB + one vector of slack
    int batch              # lanes are images (arrays (C, D, H, W, Np)) instead of tiles along W
    Py_ssize_t Np          # batch mode: images per tile position (a multiple of the vector lanes)
    int fft                # the small-tile FFT family (tiles of L points per active axis) instead of F(4, 3)
    int L


cdef struct Block:
    # one thread's scratch and the tiles of the block it is working on
    Py_ssize_t nt          # tiles in the block
    Py_ssize_t ntv         # nt rounded up to the vector lanes
    Py_ssize_t nruns       # runs: tiles of one image row of tiles, consecutive along W
    Py_ssize_t* tn         # image of each tile
    Py_ssize_t* tm         # first virtual position per axis of each tile (3 per tile)
    Py_ssize_t* run0       # first tile of each run
    Py_ssize_t* runn       # tiles of each run
    void* q                # NP x TBP point buffers (ping-pong)
    void* q2
    void* ra               # row buffers: 4 elements per tile (+ slack)
    void* rb               # 2 elements per tile
    void* ro               # output row: 4 elements per tile


cdef inline void _line(int kind, const float_t* s, Py_ssize_t ss, float_t* d, Py_ssize_t ds,
                       Py_ssize_t n) noexcept nogil:
    if float_t is float:
        if kind == BT:
            fc_wino_bt_f(s, ss, d, ds, n)
        elif kind == AT:
            fc_wino_at_f(s, ss, d, ds, n)
        else:
            fc_wino_a_f(s, ss, d, ds, n)
    else:
        if kind == BT:
            fc_wino_bt_d(s, ss, d, ds, n)
        elif kind == AT:
            fc_wino_at_d(s, ss, d, ds, n)
        else:
            fc_wino_a_d(s, ss, d, ds, n)


cdef void _pass(int kind, const float_t* s, Py_ssize_t ss, float_t* d, Py_ssize_t ds, Py_ssize_t* ext,
                int axis, Py_ssize_t n) noexcept nogil:
    """Apply the 1-D transform ``kind`` along ``axis`` of a point grid of extents ``ext`` (updated in place to
    the destination grid's extents).  Point p of the source is the row of n lanes at s + p*ss."""
    cdef Py_ssize_t i, j, o1, o2, pin, pout
    cdef Py_ssize_t sin_[3]
    cdef Py_ssize_t sout[3]
    cdef Py_ssize_t eo[3]
    eo[0], eo[1], eo[2] = ext[0], ext[1], ext[2]
    eo[axis] = 4 if kind == AT else 6
    sin_[2], sin_[1], sin_[0] = 1, ext[2], ext[1] * ext[2]
    sout[2], sout[1], sout[0] = 1, eo[2], eo[1] * eo[2]
    o1 = 0 if axis != 0 else 1
    o2 = 2 if axis != 2 else 1
    for i in range(ext[o1]):
        for j in range(ext[o2]):
            pin = i * sin_[o1] + j * sin_[o2]
            pout = i * sout[o1] + j * sout[o2]
            _line(kind, s + pin * ss, sin_[axis] * ss, d + pout * ds, sout[axis] * ds, n)
    ext[0], ext[1], ext[2] = eo[0], eo[1], eo[2]


cdef const float_t* _passes(int kind, const float_t* cur, Py_ssize_t* cs, float_t* dst, Py_ssize_t ds,
                            float_t* b1, float_t* b2, Py_ssize_t bs, Py_ssize_t* ext, const Grid* g,
                            Py_ssize_t n, int top) noexcept nogil:
    """The transforms of ``kind`` along the active axes ``top``, ``top - 1``, ..., 0 (W = 2, H = 1, D = 0) of the
    grid at ``cur`` (point stride ``cs[0]``).  The last pass writes ``dst`` (stride ``ds``) if it is not NULL, else
    the passes ping-pong between ``b1`` and ``b2`` (stride ``bs``).  Returns where the result is (and its stride in
    ``cs``)."""
    cdef int a, last = -1
    cdef float_t* to
    for a in range(top + 1):
        if g.act[a] and last < 0:
            last = a
    for a in range(top, -1, -1):
        if not g.act[a]:
            continue
        if a == last and dst != NULL:
            to = dst
            _pass(kind, cur, cs[0], to, ds, ext, a, n)
            cs[0] = ds
        else:
            to = b1 if cur != b1 else b2
            _pass(kind, cur, cs[0], to, bs, ext, a, n)
            cs[0] = bs
        cur = to
    return cur


cdef void _tiles(const Grid* g, Py_ssize_t t0, Block* B) noexcept nogil:
    """Image, first virtual positions and runs of the tiles t0 .. t0 + nt - 1."""
    cdef Py_ssize_t t, r, a
    cdef Py_ssize_t c[3]
    for t in range(B.nt):
        r = t0 + t
        if g.batch:
            B.tn[t] = r % g.Np
            r = r // g.Np
        c[2] = r % g.T[2]
        r = r // g.T[2]
        c[1] = r % g.T[1]
        r = r // g.T[1]
        c[0] = r % g.T[0]
        if not g.batch:
            B.tn[t] = r // g.T[0]
        for a in range(3):
            B.tm[3 * t + a] = g.m0[a] + g.mt[a] * c[a]
    B.nruns = 0
    if g.batch:
        return
    for t in range(B.nt):
        if (t == 0 or B.tn[t] != B.tn[t - 1] or B.tm[3 * t] != B.tm[3 * t - 3]
                or B.tm[3 * t + 1] != B.tm[3 * t - 2]):
            B.run0[B.nruns] = t
            B.runn[B.nruns] = 0
            B.nruns += 1
        B.runn[B.nruns - 1] += 1


cdef inline void _span(Py_ssize_t lo, Py_ssize_t s, Py_ssize_t e, Py_ssize_t n, Py_ssize_t* i0,
                       Py_ssize_t* i1) noexcept nogil:
    """The k in [i0, i1) of ``lo + k * s`` (0 <= k < e, s > 0) that fall inside [0, n)."""
    cdef Py_ssize_t a = 0 if lo >= 0 else (-lo + s - 1) // s
    cdef Py_ssize_t b = 0 if lo >= n else (n - lo + s - 1) // s
    i0[0] = min(a, e)
    i1[0] = max(i0[0], min(b, e))


cdef void _load_rows(const float_t* src, const Py_ssize_t* dims, Py_ssize_t nstride, const Py_ssize_t* stride,
                     const Py_ssize_t* off, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t mt, bint tail,
                     Py_ssize_t pf, const Block* B) noexcept nogil:
    """Fill the row buffers with the input row (i0, i1) of every tile's window: ra[mt*t + j] = point j < mt of
    tile t along W and, if ``tail``, rb[2t + j - 4] = points 4, 5; zero outside the input.  ``src`` points at the
    channel; lanes nt .. ntv - 1 are zero."""
    cdef float_t* ra = <float_t*> B.ra
    cdef float_t* rb = <float_t*> B.rb
    cdef Py_ssize_t r, t0, n, x0, x1, lo, k, k0, k1, t, c, W = dims[2], s2 = stride[2]
    cdef const float_t* row
    cdef float_t* dst
    for r in range(B.nruns):
        t0 = B.run0[r]
        n = B.runn[r]
        x0 = stride[0] * (B.tm[3 * t0] + i0) + off[0]
        x1 = stride[1] * (B.tm[3 * t0 + 1] + i1) + off[1]
        dst = ra + mt * t0
        if x0 < 0 or x0 >= dims[0] or x1 < 0 or x1 >= dims[1]:
            memset(dst, 0, mt * n * sizeof(float_t))
            if tail:
                memset(rb + 2 * t0, 0, 2 * n * sizeof(float_t))
            continue
        row = src + B.tn[t0] * nstride + (x0 * dims[1] + x1) * W
        lo = s2 * B.tm[3 * t0 + 2] + off[2]         # input column of the run's first point
        _span(lo, s2, mt * n, W, &k0, &k1)
        if k0 > 0:
            memset(dst, 0, k0 * sizeof(float_t))
        if pf:          # the same rows of the channel read next, one cache line at a time
            for k in range(((k1 - k0) * s2 * <Py_ssize_t> sizeof(float_t) + 63) // 64):
                fc_wino_prefetch(<const char*> (row + pf + lo + k0 * s2) + 64 * k)
        if s2 == 1:
            memcpy(dst + k0, row + lo + k0, (k1 - k0) * sizeof(float_t))
        else:
            for k in range(k0, k1):
                dst[k] = row[lo + k * s2]
        if k1 < mt * n:
            memset(dst + k1, 0, (mt * n - k1) * sizeof(float_t))
        if tail:        # points 4, 5 of the run's last tile (the others are the next tile's points 0, 1)
            t = t0 + n - 1
            for k in range(4, 6):
                c = lo + (4 * (n - 1) + k) * s2
                rb[2 * t + k - 4] = row[c] if c >= 0 and c < W else 0
    if B.ntv > B.nt:
        memset(ra + mt * B.nt, 0, mt * (B.ntv - B.nt) * sizeof(float_t))
    if tail:
        _tail_pairs(ra, rb, B)


cdef void _tail_pairs(float_t* ra, float_t* rb, const Block* B) noexcept nogil:
    """rb[2t + e] = ra[4(t + 1) + e]: points 4, 5 of a tile are points 0, 1 of the next one, except for the last
    tile of a run (set by _load_rows from the image row)."""
    cdef Py_ssize_t r, t, t1
    for r in range(B.nruns):
        t1 = B.run0[r] + B.runn[r] - 1
        for t in range(B.run0[r], t1):
            rb[2 * t] = ra[4 * t + 4]
            rb[2 * t + 1] = ra[4 * t + 5]
    if B.ntv > B.nt:
        memset(rb + 2 * B.nt, 0, 2 * (B.ntv - B.nt) * sizeof(float_t))


cdef void _store_rows(float_t* dst, const Py_ssize_t* dims, Py_ssize_t nstride, const Py_ssize_t* stride,
                      const Py_ssize_t* off, Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t mt, Py_ssize_t pf,
                      const Block* B) noexcept nogil:
    """Write the output row (i0, i1) of every tile from ro[mt*t + j] to ``dst`` (positions outside are
    dropped)."""
    cdef const float_t* ro = <const float_t*> B.ro
    cdef Py_ssize_t r, t0, n, x0, x1, lo, k, k0, k1, W = dims[2], s2 = stride[2]
    cdef float_t* row
    cdef const float_t* s
    for r in range(B.nruns):
        t0 = B.run0[r]
        n = B.runn[r]
        x0 = stride[0] * (B.tm[3 * t0] + i0) + off[0]
        x1 = stride[1] * (B.tm[3 * t0 + 1] + i1) + off[1]
        if x0 < 0 or x0 >= dims[0] or x1 < 0 or x1 >= dims[1]:
            continue
        row = dst + B.tn[t0] * nstride + (x0 * dims[1] + x1) * W
        lo = s2 * B.tm[3 * t0 + 2] + off[2]
        _span(lo, s2, mt * n, W, &k0, &k1)
        s = ro + mt * t0
        if pf:
            for k in range(((k1 - k0) * s2 * <Py_ssize_t> sizeof(float_t) + 63) // 64):
                fc_wino_prefetchw(<const char*> (row + pf + lo + k0 * s2) + 64 * k)
        if s2 == 1:
            memcpy(row + lo + k0, s + k0, (k1 - k0) * sizeof(float_t))
        elif float_t is float:
            fc_wino_strided_f(row + lo + k0 * s2, s + k0, k1 - k0, s2)
        else:
            fc_wino_strided_d(row + lo + k0 * s2, s + k0, k1 - k0, s2)


cdef inline void _mov(float_t* d, const float_t* s, float_t b) noexcept nogil:
    if float_t is float:
        fc_wino_mov_f(d, s, b)
    else:
        fc_wino_mov_d(d, s, b)


cdef void _input_channel_batch(int kind, const float_t* src, const Py_ssize_t* dims, const Py_ssize_t* stride,
                               const Py_ssize_t* off, float_t* dst, Py_ssize_t ds, const Grid* g,
                               const Block* B, Py_ssize_t L) noexcept nogil:
    """Batch mode: the windows of L images at a time are vectors of the (C, D, H, W, Np) array (``src`` at the
    channel; offsets already inside the padded array), transformed along every active axis into ``dst``.  ``kind``
    BT: input windows (alpha points per axis); AA: output-gradient tiles (mt points per axis, zero beyond)."""
    cdef Py_ssize_t e[3]
    cdef Py_ssize_t t, i0, i1, i2, p, a, cs, x0, x1, tv, TBP = g.TBP, Np = g.Np, H = dims[1], W = dims[2]
    cdef float_t* q = <float_t*> B.q
    cdef bint via_q = (g.act[0] or g.act[1] or g.act[2]) and not g.fft
    cdef float_t* to = q if via_q else dst
    cdef Py_ssize_t ts = TBP if via_q else ds
    cdef const float_t* base
    for a in range(3):
        e[a] = g.alpha[a] if kind == BT else g.mt[a]
    for tv in range(B.ntv // L):
        t = tv * L
        base = src + B.tn[t]
        p = 0
        for i0 in range(g.alpha[0] if g.fft else e[0]):
            x0 = stride[0] * (B.tm[3 * t] + i0) + off[0]
            for i1 in range(g.alpha[1] if g.fft else e[1]):
                x1 = (x0 * H + stride[1] * (B.tm[3 * t + 1] + i1) + off[1]) * W
                for i2 in range(g.alpha[2] if g.fft else e[2]):
                    if i0 < e[0] and i1 < e[1] and i2 < e[2]:
                        _mov(to + p * ts + t, base + (x1 + stride[2] * (B.tm[3 * t + 2] + i2) + off[2]) * Np, 0)
                    else:       # FFT tiles of the output gradient: zero beyond the mt outputs
                        memset(to + p * ts + t, 0, L * sizeof(float_t))
                    p += 1
    if g.fft:
        _fft_passes(False, dst, ds, g, B.ntv)
    elif via_q:
        cs = TBP
        _passes(kind, q, &cs, dst, ds, q, <float_t*> B.q2, TBP, e, g, B.ntv, 2)


cdef void _gather_batch_points(const float_t* src, Py_ssize_t sc, const Py_ssize_t* ich, const Py_ssize_t* ioff,
                               Py_ssize_t nv, const Py_ssize_t* dims, const Py_ssize_t* stride, float_t* V,
                               Py_ssize_t TBP, const Grid* g, const Block* B, Py_ssize_t L) noexcept nogil:
    """Batch mode without transforms (1-point tiles): V[v][t .. t + L) = the vector of images of virtual channel v
    at the tile's position, for all ``nv`` virtual channels in one sweep."""
    cdef Py_ssize_t tv, t, v, Np = g.Np, H = dims[1], W = dims[2]
    cdef const Py_ssize_t* off
    cdef const float_t* base
    for v in range(nv):             # channel by channel: consecutive lane groups read consecutive memory
        off = ioff + 3 * v
        base = src + ich[v] * sc
        for tv in range(B.ntv // L):
            t = tv * L
            _mov(V + v * TBP + t, base + (((stride[0] * B.tm[3 * t] + off[0]) * H + stride[1] * B.tm[3 * t + 1]
                                          + off[1]) * W + stride[2] * B.tm[3 * t + 2] + off[2]) * Np + B.tn[t], 0)


cdef void _output_channel_batch(float_t* m, Py_ssize_t ms, float_t* dst, const Py_ssize_t* dims,
                                const Py_ssize_t* stride, const Py_ssize_t* off, float_t bias, const Grid* g,
                                const Block* B, Py_ssize_t L, int* bad) noexcept nogil:
    """Batch mode: output transform of one channel (in place for FFT tiles), written as vectors of L images
    (+ bias) to ``dst``; ``bad[0]`` is set when a written value is an inf or NaN."""
    cdef float_t* d
    cdef Py_ssize_t e[3]
    cdef Py_ssize_t ge[3]
    cdef Py_ssize_t t, i0, i1, i2, p, a, x0, x1, tv, cs = ms, Np = g.Np, H = dims[1], W = dims[2]
    cdef const float_t* cur = m
    for a in range(3):
        e[a] = g.alpha[a]
    if g.fft:
        _fft_passes(True, m, ms, g, B.ntv)
        for a in range(3):
            ge[a] = g.alpha[a]
            e[a] = g.mt[a]
    else:
        cur = _passes(AT, m, &cs, NULL, 0, <float_t*> B.q, <float_t*> B.q2, g.TBP, e, g, B.ntv, 2)
        for a in range(3):
            ge[a] = e[a]
    for tv in range(B.nt // L):
        t = tv * L
        for i0 in range(e[0]):
            x0 = stride[0] * (B.tm[3 * t] + i0) + off[0]
            for i1 in range(e[1]):
                x1 = (x0 * H + stride[1] * (B.tm[3 * t + 1] + i1) + off[1]) * W
                for i2 in range(e[2]):
                    p = (i0 * ge[1] + i1) * ge[2] + i2
                    d = dst + (x1 + stride[2] * (B.tm[3 * t + 2] + i2) + off[2]) * Np + B.tn[t]
                    _mov(d, cur + p * cs + t, bias)
                    bad[0] |= nonfinite(d, L)


cdef void _fft_passes(bint inverse, float_t* a, Py_ssize_t ps, const Grid* g, Py_ssize_t n) noexcept nogil:
    """The small-tile FFT, in place, of the point grid at ``a`` (point p at a + p*ps, n lanes), one axis after the
    other from W: a real transform (packed spectrum) along the first transformed axis; along each further one, a
    line is real (a real transform) while its positions on the earlier axes are 0 or 1 (the real frequencies 0
    and L/2), else it is the real part of a complex line whose imaginary part is the next position of the first
    earlier axis where it is >= 2 (a complex transform of the pair).  The inverse runs the steps backwards; its
    last real transform only produces the lines with the tile's ``mt`` outputs on the other axes."""
    cdef int na = 0, ax, k
    cdef int axes[3]
    cdef Py_ssize_t st[3]
    for ax in range(2, -1, -1):
        if g.act[ax]:
            axes[na] = ax
            na += 1
    if na == 0:
        return
    st[2] = 1
    st[1] = g.alpha[2]
    st[0] = g.alpha[1] * g.alpha[2]
    if not inverse:
        _fft_first(a, ps, g, n, axes, na, st, False)
        for k in range(1, na):
            _fft_axis(a, ps, g, n, axes, na, k, st, False)
    else:
        for k in range(na - 1, 0, -1):
            _fft_axis(a, ps, g, n, axes, na, k, st, True)
        _fft_first(a, ps, g, n, axes, na, st, True)


cdef void _fft_first(float_t* a, Py_ssize_t ps, const Grid* g, Py_ssize_t n, const int* axes, int na,
                     const Py_ssize_t* st, bint inverse) noexcept nogil:
    """The real transform along the first transformed axis, on every line (inverse: the lines that hold
    outputs)."""
    cdef Py_ssize_t i, j, L = g.L
    cdef Py_ssize_t ni = 1, nj = 1, si = 0, sj = 0
    if na > 1:
        ni = g.mt[axes[1]] if inverse else L
        si = st[axes[1]]
    if na > 2:
        nj = g.mt[axes[2]] if inverse else L
        sj = st[axes[2]]
    for i in range(ni):
        for j in range(nj):
            _rfft(a + (i * si + j * sj) * ps, st[axes[0]] * ps, n, L, inverse)


cdef void _fft_axis(float_t* a, Py_ssize_t ps, const Grid* g, Py_ssize_t n, const int* axes, int na, int k,
                    const Py_ssize_t* st, bint inverse) noexcept nogil:
    """The transform along the k-th transformed axis (k >= 1) of every line: real, or complex on pairs."""
    cdef Py_ssize_t c0, c1, L = g.L, s0 = st[axes[0]], sk = st[axes[k]], so = 0, no = 1, base, pair
    cdef int other = -1
    if k == 1 and na > 2:
        other = axes[2]         # not transformed yet (forward) / transformed back already (inverse)
        no = g.mt[other] if inverse else L
    elif k == 2:
        other = axes[1]
        no = L
    if other >= 0:
        so = st[other]
    for c0 in range(L):
        if c0 >= 2 and c0 % 2:
            continue            # the imaginary part of a pair along the first axis
        for c1 in range(no):
            base = c0 * s0 + c1 * so
            if c0 >= 2:
                pair = s0
            elif k == 2 and c1 >= 2:
                if c1 % 2:
                    continue
                pair = so
            else:
                pair = 0
            if pair == 0:
                _rfft(a + base * ps, sk * ps, n, L, inverse)
            else:
                _cfft(a + base * ps, a + (base + pair) * ps, sk * ps, n, L, inverse)


cdef inline void _rfft(float_t* a, Py_ssize_t ss, Py_ssize_t n, Py_ssize_t L, int inv) noexcept nogil:
    if float_t is float:
        fc_rfft_f(a, ss, a, ss, n, <int> L, inv)
    else:
        fc_rfft_d(a, ss, a, ss, n, <int> L, inv)


cdef inline void _cfft(float_t* re, float_t* im, Py_ssize_t ss, Py_ssize_t n, Py_ssize_t L,
                       int inv) noexcept nogil:
    if float_t is float:
        fc_cfft_f(re, im, ss, re, im, ss, n, <int> L, inv)
    else:
        fc_cfft_d(re, im, ss, re, im, ss, n, <int> L, inv)


cdef void _gather_tiles(const float_t* src, const Py_ssize_t* dims, Py_ssize_t nstride, const Py_ssize_t* stride,
                        const Py_ssize_t* off, const Py_ssize_t* ext, const Grid* g, const Block* B, float_t* q,
                        Py_ssize_t qs) noexcept nogil:
    """Row mode, any tile: q[p * qs + t] = src[tn[t], ., stride * (tm[t] + i) + off] for the points
    p = (i0, i1, i2) of the alpha grid with i < ext (zero outside ``dims`` and beyond ``ext``); lanes past the
    block's tiles are zero."""
    cdef Py_ssize_t t, i0, i1, i2, p, lo0, lo1, lo2, x0, x1, x2
    cdef Py_ssize_t D = dims[0], H = dims[1], W = dims[2]
    cdef Py_ssize_t e0 = g.alpha[0], e1 = g.alpha[1], e2 = g.alpha[2]
    cdef const float_t* base
    for t in range(B.nt):
        base = src + B.tn[t] * nstride
        lo0 = stride[0] * B.tm[3 * t] + off[0]
        lo1 = stride[1] * B.tm[3 * t + 1] + off[1]
        lo2 = stride[2] * B.tm[3 * t + 2] + off[2]
        p = t
        for i0 in range(e0):
            x0 = lo0 + i0 * stride[0]
            for i1 in range(e1):
                x1 = lo1 + i1 * stride[1]
                for i2 in range(e2):
                    x2 = lo2 + i2 * stride[2]
                    if (i0 < ext[0] and i1 < ext[1] and i2 < ext[2] and x0 >= 0 and x0 < D and x1 >= 0 and x1 < H
                            and x2 >= 0 and x2 < W):
                        q[p] = base[(x0 * H + x1) * W + x2]
                    else:
                        q[p] = 0
                    p += qs
    if B.ntv > B.nt:
        for p in range(g.NP):
            memset(q + p * qs + B.nt, 0, (B.ntv - B.nt) * sizeof(float_t))


cdef void _scatter_tiles(const float_t* o, Py_ssize_t os, float_t* dst, const Py_ssize_t* dims,
                         Py_ssize_t nstride, const Py_ssize_t* stride, const Py_ssize_t* off, float_t bias,
                         const Grid* g, const Block* B, int* bad) noexcept nogil:
    """Row mode, any tile: the first mt points per axis of the alpha grid at ``o`` (+ bias) to ``dst``;
    ``bad[0]`` is set when a written value is an inf or NaN."""
    cdef Py_ssize_t t, i0, i1, i2, lo0, lo1, lo2, x0, x1, x2
    cdef float_t v
    cdef float_t big = 0
    cdef Py_ssize_t D = dims[0], H = dims[1], W = dims[2]
    cdef Py_ssize_t e1 = g.alpha[1], e2 = g.alpha[2]
    cdef float_t* base
    for t in range(B.nt):
        base = dst + B.tn[t] * nstride
        lo0 = stride[0] * B.tm[3 * t] + off[0]
        lo1 = stride[1] * B.tm[3 * t + 1] + off[1]
        lo2 = stride[2] * B.tm[3 * t + 2] + off[2]
        for i0 in range(g.mt[0]):
            x0 = lo0 + i0 * stride[0]
            if x0 < 0 or x0 >= D:
                continue
            for i1 in range(g.mt[1]):
                x1 = lo1 + i1 * stride[1]
                if x1 < 0 or x1 >= H:
                    continue
                for i2 in range(g.mt[2]):
                    x2 = lo2 + i2 * stride[2]
                    if x2 >= 0 and x2 < W:
                        v = o[((i0 * e1 + i1) * e2 + i2) * os + t] + bias
                        base[(x0 * H + x1) * W + x2] = v
                        big = big + v * 0        # stays 0 unless v is an inf or NaN
    if big != 0:
        bad[0] = 1


cdef void _input_channel(int kind, const float_t* src, const Py_ssize_t* dims, Py_ssize_t nstride,
                         const Py_ssize_t* stride, const Py_ssize_t* off, float_t* dst, Py_ssize_t ds,
                         Py_ssize_t pf, const Grid* g, const Block* B) noexcept nogil:
    """Transformed tiles of one channel into ``dst`` (point p at dst + p*ds): BT of the input windows (6 points
    per active axis), or AA of the output-gradient tiles (4 points per active axis)."""
    cdef Py_ssize_t e[3]
    cdef Py_ssize_t i0, i1, p0, a, cs, TBP = g.TBP, n = B.ntv
    cdef bint hd = g.act[0] or g.act[1]
    cdef float_t* q = <float_t*> B.q
    cdef float_t* to = q if hd else dst
    cdef Py_ssize_t ts = TBP if hd else ds
    cdef float_t* ra = <float_t*> B.ra
    for a in range(3):
        e[a] = g.alpha[a] if kind == BT else g.mt[a]
    if g.fft:           # FFT tiles: gather into dst, transform in place
        _gather_tiles(src, dims, nstride, stride, off, e, g, B, dst, ds)
        _fft_passes(False, dst, ds, g, n)
        return
    # W: rows of the windows -> points along W (transformed if W is active)
    for i0 in range(e[0]):
        for i1 in range(e[1]):
            _load_rows(src, dims, nstride, stride, off, i0, i1, g.mt[2], g.act[2] != 0 and kind == BT, pf, B)
            p0 = (i0 * e[1] + i1) * g.alpha[2]
            if not g.act[2]:
                memcpy(to + p0 * ts, ra, n * sizeof(float_t))
            elif float_t is float:
                if kind == BT:
                    fc_wino_rows_bt_f(ra, <const float*> B.rb, n, to + p0 * ts, ts)
                else:
                    fc_wino_rows_a_f(ra, n, to + p0 * ts, ts)
            else:
                if kind == BT:
                    fc_wino_rows_bt_d(ra, <const double*> B.rb, n, to + p0 * ts, ts)
                else:
                    fc_wino_rows_a_d(ra, n, to + p0 * ts, ts)
    if hd:
        e[2] = g.alpha[2]
        cs = TBP
        _passes(kind, q, &cs, dst, ds, q, <float_t*> B.q2, TBP, e, g, n, 1)


cdef void _output_channel(float_t* m, Py_ssize_t ms, float_t* dst, const Py_ssize_t* dims,
                          Py_ssize_t nstride, const Py_ssize_t* stride, const Py_ssize_t* off, float_t bias,
                          Py_ssize_t pf, const Grid* g, const Block* B, int* bad) noexcept nogil:
    """Output transform (A^T . A) of one channel's GEMM results at ``m`` (point stride ``ms``), plus bias,
    written to ``dst``; ``bad[0]`` is set when an output row of a tile holds an inf or NaN (including the
    positions beyond the output, which are dropped: a false alarm only costs ``auto`` an exact rerun)."""
    cdef Py_ssize_t e[3]
    cdef Py_ssize_t i0, i1, p0, a, t, cs = ms, n = B.ntv
    cdef const float_t* cur = m
    cdef float_t* ro = <float_t*> B.ro
    if g.fft:
        _fft_passes(True, m, ms, g, n)
        _scatter_tiles(m, ms, dst, dims, nstride, stride, off, bias, g, B, bad)
        return
    for a in range(3):
        e[a] = g.alpha[a]
    if g.act[0] or g.act[1]:
        cur = _passes(AT, m, &cs, NULL, 0, <float_t*> B.q, <float_t*> B.q2, g.TBP, e, g, n, 1)
    for i0 in range(e[0]):
        for i1 in range(e[1]):
            p0 = (i0 * e[1] + i1) * e[2]
            if not g.act[2]:
                for t in range(n):
                    ro[t] = cur[p0 * cs + t] + bias
            elif float_t is float:
                fc_wino_rows_at_f(cur + p0 * cs, cs, n, ro, bias)
            else:
                fc_wino_rows_at_d(cur + p0 * cs, cs, n, ro, bias)
            bad[0] |= nonfinite(ro, g.mt[2] * n)
            _store_rows(dst, dims, nstride, stride, off, i0, i1, g.mt[2], pf, B)


cdef inline void _gemm(char ta, int m, int n, int k, const float_t* a, int lda, const float_t* b, int ldb,
                       float_t alpha, float_t beta, float_t* c, int ldc) noexcept nogil:
    """Column-major ``c = alpha op(a) @ b + beta * c`` (op = transpose when ta == 'T') through scipy's BLAS."""
    cdef char tb = c'N'
    if float_t is float:
        sgemm(&ta, &tb, &m, &n, &k, &alpha, <float*> a, &lda, <float*> b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &alpha, <double*> a, &lda, <double*> b, &ldb, &beta, c, &ldc)


cdef inline void _axpy(float_t u, const float_t* v, float_t* m, Py_ssize_t n, int first) noexcept nogil:
    if float_t is float:
        fc_wino_axpy_f(u, v, m, n, first)
    else:
        fc_wino_axpy_d(u, v, m, n, first)


cdef void _product(const float_t* V, Py_ssize_t vstride, const float_t* U, Py_ssize_t ustride, Py_ssize_t Cg,
                   Py_ssize_t kb, float_t* M, Py_ssize_t mstride, Py_ssize_t ntv, Py_ssize_t TBP,
                   Py_ssize_t NP, bint small, const Py_ssize_t* partner) noexcept nogil:
    """M[p][kk][t] = sum_c U[p][kk][c] V[p][c][t] for every point p (point strides vstride, ustride, mstride);
    points p < q = partner[p] are the real and imaginary parts of one complex product (FFT family)."""
    cdef Py_ssize_t p, q, kk, c
    cdef const float_t* u
    cdef const float_t* ui
    for p in range(NP):
        q = partner[p] if partner != NULL else -1
        if q >= 0 and q < p:
            continue            # the imaginary part, done with its real part
        if not small:
            if q < 0:
                _gemm(c'N', <int> ntv, <int> kb, <int> Cg, V + p * vstride, <int> TBP, U + p * ustride, <int> Cg,
                      1, 0, M + p * mstride, <int> TBP)
            else:               # M_p = V_p U_p - V_q U_q, M_q = V_p U_q + V_q U_p
                _gemm(c'N', <int> ntv, <int> kb, <int> Cg, V + p * vstride, <int> TBP, U + p * ustride, <int> Cg,
                      1, 0, M + p * mstride, <int> TBP)
                _gemm(c'N', <int> ntv, <int> kb, <int> Cg, V + q * vstride, <int> TBP, U + q * ustride, <int> Cg,
                      -1, 1, M + p * mstride, <int> TBP)
                _gemm(c'N', <int> ntv, <int> kb, <int> Cg, V + p * vstride, <int> TBP, U + q * ustride, <int> Cg,
                      1, 0, M + q * mstride, <int> TBP)
                _gemm(c'N', <int> ntv, <int> kb, <int> Cg, V + q * vstride, <int> TBP, U + p * ustride, <int> Cg,
                      1, 1, M + q * mstride, <int> TBP)
            continue
        for kk in range(kb):
            u = U + p * ustride + kk * Cg
            if q < 0:
                for c in range(Cg):
                    _axpy(u[c], V + p * vstride + c * TBP, M + p * mstride + kk * TBP, ntv, c == 0)
                continue
            ui = U + q * ustride + kk * Cg
            for c in range(Cg):
                _axpy(u[c], V + p * vstride + c * TBP, M + p * mstride + kk * TBP, ntv, c == 0)
                _axpy(-ui[c], V + q * vstride + c * TBP, M + p * mstride + kk * TBP, ntv, 0)
                _axpy(ui[c], V + p * vstride + c * TBP, M + q * mstride + kk * TBP, ntv, c == 0)
                _axpy(u[c], V + q * vstride + c * TBP, M + q * mstride + kk * TBP, ntv, 0)


cdef void _wg_product(const float_t* V, bint vt, const float_t* Z, float_t* acc, Py_ssize_t astride,
                      Py_ssize_t Cvg, Py_ssize_t kb, Py_ssize_t KB, Py_ssize_t ntv, Py_ssize_t TBP, Py_ssize_t NP,
                      const Py_ssize_t* partner, bint first) noexcept nogil:
    """acc[p] (kb x Cvg, point stride astride) += Z[p] V[p]^T over the lanes (``first``: acc[p] = ..., its old
    contents ignored), V[p] stored as Cvg rows of TBP or, with ``vt``, transposed (ntv rows of Cvg, see
    :func:`_transpose_points`); for a complex pair p < q: acc_p += Z_p V_p^T + Z_q V_q^T,
    acc_q += Z_q V_p^T - Z_p V_q^T (the adjoint of the complex product)."""
    cdef Py_ssize_t p, q
    cdef char ta = c'N' if vt else c'T'
    cdef int lda = <int> (Cvg if vt else TBP)
    cdef float_t beta = 0 if first else 1
    for p in range(NP):
        q = partner[p] if partner != NULL else -1
        if q >= 0 and q < p:
            continue
        # acc^T (Cvg x kb, column-major) += V^T (Cvg x ntv) Z (ntv x kb)
        _gemm(ta, <int> Cvg, <int> kb, <int> ntv, V + p * Cvg * TBP, lda, Z + p * KB * TBP, <int> TBP,
              1, beta, acc + p * astride, <int> Cvg)
        if q >= 0:
            _gemm(ta, <int> Cvg, <int> kb, <int> ntv, V + q * Cvg * TBP, lda, Z + q * KB * TBP,
                  <int> TBP, 1, 1, acc + p * astride, <int> Cvg)
            _gemm(ta, <int> Cvg, <int> kb, <int> ntv, V + p * Cvg * TBP, lda, Z + q * KB * TBP,
                  <int> TBP, 1, beta, acc + q * astride, <int> Cvg)
            _gemm(ta, <int> Cvg, <int> kb, <int> ntv, V + q * Cvg * TBP, lda, Z + p * KB * TBP,
                  <int> TBP, -1, 1, acc + q * astride, <int> Cvg)


cdef void _gy_channels(const float_t* gp, Py_ssize_t gc, Py_ssize_t gC, const Py_ssize_t* gdims,
                      Py_ssize_t k0, Py_ssize_t kb, float_t* Z, Py_ssize_t zp, Py_ssize_t KBP, Py_ssize_t L,
                      const Block* B) noexcept nogil:
    """Z[p][t][kk] (point stride zp, tile stride KBP) = point p of A g A^T of tile t of the output gradient's
    channel k0 + kk (kk < kb), ``L`` channels at a time (fc_wino_gyt), run by run; the tiles past the block's,
    up to its lanes ntv, are zero.  ``gp`` (N, K, D, H, W), image stride gC, channel stride gc; H and W are the
    transformed axes, a tile lies in one plane along D.  Each call prefetches what the next one reads: the next L
    channels' rows, or the next run's first channels."""
    cdef Py_ssize_t j, kk0, r, t0, t1, p, pf, H = gdims[1], W = gdims[2], ng = (kb + L - 1) // L
    cdef const float_t* g
    for r in range(B.nruns):
        t0 = B.run0[r]
        for j in range(ng):
            kk0 = j * L
            if j + 1 < ng:
                pf = L * gc
            elif r + 1 < B.nruns:       # from channel k0 + kk0 of this run to channel k0 of the next
                t1 = B.run0[r + 1]
                pf = ((B.tn[t1] - B.tn[t0]) * gC - kk0 * gc + (B.tm[3 * t1] - B.tm[3 * t0]) * H * W
                      + (B.tm[3 * t1 + 1] - B.tm[3 * t0 + 1]) * W + B.tm[3 * t1 + 2] - B.tm[3 * t0 + 2])
            else:
                pf = 0
            g = gp + B.tn[t0] * gC + (k0 + kk0) * gc + B.tm[3 * t0] * H * W
            if float_t is float:
                fc_wino_gyt_f(g, gc, H, W, min(L, kb - kk0), B.tm[3 * t0 + 1], B.tm[3 * t0 + 2], B.runn[r],
                              Z + t0 * KBP + kk0, zp, KBP, pf)
            else:
                fc_wino_gyt_d(g, gc, H, W, min(L, kb - kk0), B.tm[3 * t0 + 1], B.tm[3 * t0 + 2], B.runn[r],
                              Z + t0 * KBP + kk0, zp, KBP, pf)
    if B.ntv > B.nt:
        for p in range(36):         # F(4, 3) over H and W: 36 points (weight_grad checks)
            memset(Z + p * zp + B.nt * KBP, 0, (B.ntv - B.nt) * KBP * sizeof(float_t))


cdef void _transpose_points(const float_t* V, float_t* Vt, Py_ssize_t Cvg, Py_ssize_t ntv, Py_ssize_t TBP,
                            Py_ssize_t NP) noexcept nogil:
    """Vt[p] (ntv rows of Cvg) = V[p]^T (Cvg rows of TBP, the first ntv used) for every point: the weight
    gradient's GEMMs then read both operands untransposed.  OpenBLAS runs small untransposed products without
    packing them; with the transposed operand it packs (64 x 64 x 64, one thread: 8-9 us against 5 us).  Products
    of 2^20 multiply-adds and more run alike either way, and skip the transpose (the caller decides:
    ``winograd.GW_TRANSPOSE_MAX``)."""
    cdef Py_ssize_t p
    for p in range(NP):
        if float_t is float:
            fc_wino_transpose_f(V + p * Cvg * TBP, TBP, Vt + p * Cvg * TBP, Cvg, Cvg, ntv)
        else:
            fc_wino_transpose_d(V + p * Cvg * TBP, TBP, Vt + p * Cvg * TBP, Cvg, Cvg, ntv)


cdef Grid _grid(tuple tile, tuple T, tuple m0, Py_ssize_t N, Py_ssize_t TB, Py_ssize_t L, bint batch):
    """The tile grid; ``N`` is the batch size (row mode) or the padded images per tile position (batch mode);
    ``tile`` = (family, (alpha per axis), (outputs per axis)): family 0 is F(4, 3) (alpha 6, 4 outputs on an active
    axis), family 1 the FFT of alpha points."""
    cdef Grid g
    cdef int a
    g.NP = 1
    g.fft = tile[0]
    g.L = 0
    for a in range(3):
        g.alpha[a] = tile[1][a]
        g.mt[a] = tile[2][a]
        g.act[a] = 1 if g.alpha[a] > 1 else 0
        if g.act[a]:
            g.L = g.alpha[a]
        g.T[a] = T[a]
        g.m0[a] = m0[a]
        g.NP *= g.alpha[a]
    g.ntiles = N * g.T[0] * g.T[1] * g.T[2]
    g.TB = TB
    g.TBP = TB + L
    g.batch = batch
    g.Np = N
    return g


cdef Block _block_new(const Grid* g, Py_ssize_t item) noexcept nogil:
    """Per-thread scratch of one block (returned by value: assigned inside a parallel block, it is private to
    the thread).  Check it with _block_ok; _block_free releases what was allocated."""
    cdef Py_ssize_t TBP = g.TBP
    cdef Block b
    cdef Block* B = &b
    B.q = fc_wino_alloc(g.NP * TBP * item)
    B.q2 = fc_wino_alloc(g.NP * TBP * item)
    B.ra = fc_wino_alloc(4 * (TBP + 16) * item)
    B.rb = fc_wino_alloc(2 * (TBP + 16) * item)
    B.ro = fc_wino_alloc(4 * (TBP + 16) * item)
    B.tn = <Py_ssize_t*> fc_wino_alloc(6 * TBP * sizeof(Py_ssize_t))
    B.tm = B.tn + TBP
    B.run0 = B.tn + 4 * TBP
    B.runn = B.tn + 5 * TBP
    B.nt = B.ntv = B.nruns = 0
    return b


cdef bint _block_ok(const Block* B) noexcept nogil:
    return B.q != NULL and B.q2 != NULL and B.ra != NULL and B.rb != NULL and B.ro != NULL and B.tn != NULL


cdef void _block_free(Block* B) noexcept nogil:
    free(B.q)
    free(B.q2)
    free(B.ra)
    free(B.rb)
    free(B.ro)
    free(B.tn)


cdef void _block_tiles(const Grid* g, Py_ssize_t blk, Py_ssize_t L, Block* B) noexcept nogil:
    B.nt = min(g.TB, g.ntiles - blk * g.TB)
    B.ntv = (B.nt + L - 1) // L * L
    _tiles(g, blk * g.TB, B)


def forward(const float_t[:, :, :, :, ::1] src, const float_t[:, :, ::1] U, const float_t[::1] bias,
            float_t[:, :, :, :, ::1] dst, Geometry geom, *, bint has_bias,
            const Py_ssize_t[::1] in_chan, const Py_ssize_t[:, ::1] in_off,
            const Py_ssize_t[::1] out_chan, const Py_ssize_t[:, ::1] out_off,
            tuple tile, tuple T, tuple m0, Py_ssize_t TB, Py_ssize_t KB, bint small, bint batch,
            const Py_ssize_t[::1] partner, int nthreads):
    """dst[out positions] = the transform-domain correlation of the virtual input channels with ``U`` (+ bias);
    returns True when every value written is finite (each thread checks the outputs it transforms, while they are
    in its cache: ``auto`` needs no pass of its own over the result).

    ``geom`` is the stride-1 problem over virtual channels the Python side reduced the layer to: ``groups``,
    the taps of a block (kd, kh, kw), the stride of the reads (sd, sh, sw: the layer's stride for the forward
    pass, 1 for the input gradient) and of the writes in the input-dilation fields (ld, lh, lw: the layer's
    stride for the input gradient, else 1); zero padding and dilation are folded into the virtual channels'
    offsets.  ``U`` is (NP, Kv, Cv / groups): the transformed filters.  ``tile`` = (family, alpha per axis,
    outputs per axis), see _grid; ``partner`` pairs the points of complex products (FFT family; empty for
    F(4, 3)).  Tiles are processed in blocks of ``TB``; GEMMs in blocks of ``KB`` output channels.  Row mode:
    ``src`` and ``dst`` are (N, C, D, H, W); batch mode: (C, D, H, W, Np), zero-padded so that every window is
    inside.
    """
    cdef Py_ssize_t groups = geom.groups
    cdef tuple in_stride = (geom.sd, geom.sh, geom.sw), out_stride = (geom.ld, geom.lh, geom.lw)
    cdef Py_ssize_t Cv = in_chan.shape[0], Kv = out_chan.shape[0]
    cdef Py_ssize_t Cvg = Cv // groups, Kvg = Kv // groups
    cdef Py_ssize_t L = fc_wino_lanes_f if float_t is float else fc_wino_lanes_d
    cdef Py_ssize_t sdims[3]
    cdef Py_ssize_t ddims[3]
    cdef Py_ssize_t istr[3]
    cdef Py_ssize_t ostr[3]
    cdef Py_ssize_t a, b0 = 1 if batch else 2
    for a in range(3):
        sdims[a] = src.shape[b0 + a]
        ddims[a] = dst.shape[b0 + a]
        istr[a] = in_stride[a]
        ostr[a] = out_stride[a]
    cdef Py_ssize_t sc = sdims[0] * sdims[1] * sdims[2] * (src.shape[4] if batch else 1)
    cdef Py_ssize_t dc = ddims[0] * ddims[1] * ddims[2] * (dst.shape[4] if batch else 1)
    cdef Py_ssize_t sC = 0 if batch else src.shape[1] * sc
    cdef Py_ssize_t dC = 0 if batch else dst.shape[1] * dc
    cdef Grid g = _grid(tile, T, m0, src.shape[4] if batch else src.shape[0], TB, L, batch)
    cdef const Py_ssize_t* pp = &partner[0] if partner.shape[0] > 0 else NULL
    cdef Py_ssize_t nblocks = (g.ntiles + TB - 1) // TB
    cdef const float_t* sp = &src[0, 0, 0, 0, 0]
    cdef float_t* dp = &dst[0, 0, 0, 0, 0]
    cdef const float_t* up = &U[0, 0, 0]
    cdef const Py_ssize_t* ich = &in_chan[0]
    cdef const Py_ssize_t* ioff = &in_off[0, 0]
    cdef const Py_ssize_t* och = &out_chan[0]
    cdef const Py_ssize_t* ooff = &out_off[0, 0]
    cdef Py_ssize_t NP = g.NP, TBP = g.TBP, blk, v, gi, k0, kb, kk, kbi
    cdef size_t vbytes = NP * Cv * TBP * sizeof(float_t), mbytes = NP * KB * TBP * sizeof(float_t)
    cdef float_t* V
    cdef float_t* M
    cdef Block B
    cdef int failed[1]
    cdef int[::1] bad = np.zeros(max(1, nthreads), np.intc)     # per thread: an inf or NaN was written
    cdef int* badp = &bad[0]
    cdef bint ok
    failed[0] = 0
    with nogil, parallel(num_threads=nthreads):
        V = <float_t*> fc_wino_alloc(vbytes)
        M = <float_t*> fc_wino_alloc(mbytes)
        B = _block_new(&g, sizeof(float_t))
        ok = _block_ok(&B) and V != NULL and M != NULL
        if not ok:
            failed[0] = 1
        # every thread of the team reaches the work-sharing loop; one without buffers skips its blocks
        for blk in prange(nblocks, schedule="dynamic"):
            if ok:
                _block_tiles(&g, blk, L, &B)
                if batch and NP == 1:
                    _gather_batch_points(sp, sc, ich, ioff, Cv, sdims, istr, V, TBP, &g, &B, L)
                for v in range(Cv):
                    if batch and NP == 1:
                        break
                    if batch:
                        _input_channel_batch(BT, sp + ich[v] * sc, sdims, istr, ioff + 3 * v, V + v * TBP, Cv * TBP,
                                             &g, &B, L)
                    else:
                        _input_channel(BT, sp + ich[v] * sc, sdims, sC, istr, ioff + 3 * v, V + v * TBP, Cv * TBP,
                                       (ich[v + 1] - ich[v]) * sc if v + 1 < Cv else 0, &g, &B)
                for gi in range(groups):
                    for kbi in range((Kvg + KB - 1) // KB):
                        k0 = kbi * KB
                        kb = min(KB, Kvg - k0)
                        _product(V + gi * Cvg * TBP, Cv * TBP, up + (gi * Kvg + k0) * Cvg, Kv * Cvg, Cvg, kb,
                                 M, KB * TBP, B.ntv, TBP, NP, small, pp)
                        for kk in range(kb):
                            v = gi * Kvg + k0 + kk
                            if batch:
                                _output_channel_batch(M + kk * TBP, KB * TBP, dp + och[v] * dc, ddims, ostr,
                                                      ooff + 3 * v, bias[v] if has_bias else 0, &g, &B, L,
                                                      badp + threadid())
                            else:
                                _output_channel(M + kk * TBP, KB * TBP, dp + och[v] * dc, ddims, dC, ostr,
                                                ooff + 3 * v, bias[v] if has_bias else 0,
                                                (och[v + 1] - och[v]) * dc if v + 1 < Kv else 0, &g, &B,
                                                badp + threadid())
        free(V)
        free(M)
        _block_free(&B)
    check_scratch(failed[0], "winograd", vbytes)
    return not any(bad)


def weight_grad(const float_t[:, :, :, :, ::1] src, const float_t[:, :, :, :, ::1] gy, float_t[:, :, :, ::1] dU,
                Geometry geom, *, const Py_ssize_t[::1] in_chan, const Py_ssize_t[:, ::1] in_off,
                tuple tile, tuple T, Py_ssize_t TB, Py_ssize_t KB, Py_ssize_t kchunk, bint batch,
                const Py_ssize_t[::1] partner, bint vt, int nthreads, bint zt=False):
    """dU[lane, p, k, c] = sum over the lane's blocks of Z[p][k] . V[p][c] (Z = A dY A^T of the output gradient,
    V = B^T d B of the virtual input channel c of k's group; ``geom`` as in :func:`forward`).  Every element of dU
    is written: it may come uninitialised.  Lane ``l`` takes blocks l, l + lanes, ... in order; tasks are (lane,
    group, chunk of ``kchunk`` output channels), the products of a chunk in blocks of ``KB``.  Batch mode as in
    :func:`forward` (``gy`` then covers every tile, zero beyond the output).  With ``vt`` each block's V is
    transposed before its products (see :func:`_transpose_points`).

    With ``zt`` (F(4, 3) tiles over H and W, D not transformed, in row mode only), dU is laid out (lane, p, c, k)
    instead, and the output gradient is transformed with the channels as lanes (``fc_wino_gyt``): Z[p] holds a row
    of KB channels per tile, so each product takes Z[p] and V[p] as stored (column-major kb x tiles times tiles x
    Cvg) -- no row buffers, no transposes (``vt`` is ignored)."""
    cdef Py_ssize_t groups = geom.groups
    cdef tuple in_stride = (geom.sd, geom.sh, geom.sw)
    cdef Py_ssize_t LANES = dU.shape[0]
    cdef Py_ssize_t Cv = in_chan.shape[0], K = gy.shape[0 if batch else 1]
    cdef Py_ssize_t Cvg = Cv // groups, Kg = K // groups
    cdef Py_ssize_t L = fc_wino_lanes_f if float_t is float else fc_wino_lanes_d
    cdef Py_ssize_t sdims[3]
    cdef Py_ssize_t gdims[3]
    cdef Py_ssize_t istr[3]
    cdef Py_ssize_t one[3]
    cdef Py_ssize_t zero[3]
    cdef Py_ssize_t a, b0 = 1 if batch else 2
    for a in range(3):
        sdims[a] = src.shape[b0 + a]
        gdims[a] = gy.shape[b0 + a]
        istr[a] = in_stride[a]
        one[a] = 1
        zero[a] = 0
    cdef Py_ssize_t sc = sdims[0] * sdims[1] * sdims[2] * (src.shape[4] if batch else 1)
    cdef Py_ssize_t gc = gdims[0] * gdims[1] * gdims[2] * (gy.shape[4] if batch else 1)
    cdef Py_ssize_t sC = 0 if batch else src.shape[1] * sc
    cdef Py_ssize_t gC = 0 if batch else K * gc
    cdef Grid g = _grid(tile, T, (0, 0, 0), src.shape[4] if batch else src.shape[0], TB, L, batch)
    cdef const Py_ssize_t* pp = &partner[0] if partner.shape[0] > 0 else NULL
    cdef Py_ssize_t nblocks = (g.ntiles + TB - 1) // TB
    cdef Py_ssize_t nchunks = (Kg + kchunk - 1) // kchunk
    cdef Py_ssize_t ntasks = LANES * groups * nchunks
    cdef const float_t* sp = &src[0, 0, 0, 0, 0]
    cdef const float_t* gp = &gy[0, 0, 0, 0, 0]
    cdef float_t* up = &dU[0, 0, 0, 0]
    cdef const Py_ssize_t* ich = &in_chan[0]
    cdef const Py_ssize_t* ioff = &in_off[0, 0]
    cdef Py_ssize_t NP = g.NP, TBP = g.TBP, task, lane, gi, ch, blk, v, k0, k1, kb, kk, k, p, kbi, bi
    # zt: Z's point stride ZP is one vector more than TBP x KBP (which is 20 KiB, five pages, on ResNet's layers),
    # so that a tile's 36 stores, one per point, fall into different sets of the L1 cache (without it the weight
    # gradient of 8 x 64 x 56^2 3x3 ran at 0.94 of the forward pass's speed instead of 1.0)
    cdef Py_ssize_t KBP = (KB + L - 1) // L * L, ZP = TBP * KBP + L
    cdef size_t vbytes = NP * Cvg * TBP * sizeof(float_t)
    cdef size_t zbytes = NP * (ZP if zt else KB * TBP) * sizeof(float_t)
    if zt and (batch or g.fft or g.act[0] or not g.act[1] or not g.act[2] or NP != 36):
        raise ValueError("weight_grad: zt needs 2-D F(4, 3) tiles in row mode")
    if zt:
        vt = False
    cdef float_t* V
    cdef float_t* Vt
    cdef float_t* Z
    cdef float_t* acc
    cdef Block B
    cdef int failed[1]
    cdef bint ok
    failed[0] = 0
    with nogil, parallel(num_threads=nthreads):
        V = <float_t*> fc_wino_alloc(vbytes)
        Vt = <float_t*> fc_wino_alloc(vbytes) if vt else V     # V itself when it is not transposed
        Z = <float_t*> fc_wino_alloc(zbytes)
        B = _block_new(&g, sizeof(float_t))
        ok = _block_ok(&B) and V != NULL and Vt != NULL and Z != NULL
        if not ok:
            failed[0] = 1
        for task in prange(ntasks, schedule="dynamic"):
            if ok:
                lane = task % LANES
                gi = (task // LANES) % groups
                ch = task // (LANES * groups)
                acc = up + lane * NP * K * Cvg
                if lane >= nblocks:         # no block: the lane's part of dU is zero (the others are written)
                    k0 = ch * kchunk
                    k1 = min(Kg, (ch + 1) * kchunk)
                    for p in range(NP):
                        if zt:
                            for v in range(Cvg):
                                memset(acc + p * K * Cvg + v * K + gi * Kg + k0, 0, (k1 - k0) * sizeof(float_t))
                        else:
                            memset(acc + p * K * Cvg + (gi * Kg + k0) * Cvg, 0, (k1 - k0) * Cvg * sizeof(float_t))
                for bi in range((nblocks - lane + LANES - 1) // LANES):
                    blk = lane + bi * LANES
                    _block_tiles(&g, blk, L, &B)
                    for v in range(Cvg):
                        if batch:
                            _input_channel_batch(BT, sp + ich[gi * Cvg + v] * sc, sdims, istr,
                                                 ioff + 3 * (gi * Cvg + v), V + v * TBP, Cvg * TBP, &g, &B, L)
                        else:
                            _input_channel(BT, sp + ich[gi * Cvg + v] * sc, sdims, sC, istr,
                                           ioff + 3 * (gi * Cvg + v), V + v * TBP, Cvg * TBP,
                                           sc if v + 1 < Cvg else 0, &g, &B)
                    if vt:
                        _transpose_points(V, Vt, Cvg, B.ntv, TBP, NP)
                    k1 = min(Kg, (ch + 1) * kchunk)
                    for kbi in range((k1 - ch * kchunk + KB - 1) // KB):
                        k0 = ch * kchunk + kbi * KB
                        kb = min(KB, k1 - k0)
                        if zt:
                            _gy_channels(gp, gc, gC, gdims, gi * Kg + k0, kb, Z, ZP, KBP, L, &B)
                            for p in range(NP):
                                _gemm(c'N', <int> kb, <int> Cvg, <int> B.ntv, Z + p * ZP, <int> KBP,
                                      V + p * Cvg * TBP, <int> TBP, 1, 0 if bi == 0 else 1,
                                      acc + p * K * Cvg + gi * Kg + k0, <int> K)
                            continue
                        for kk in range(kb):
                            k = gi * Kg + k0 + kk
                            if batch:
                                _input_channel_batch(AA, gp + k * gc, gdims, one, zero, Z + kk * TBP, KB * TBP, &g,
                                                     &B, L)
                            else:
                                _input_channel(AA, gp + k * gc, gdims, gC, one, zero, Z + kk * TBP, KB * TBP,
                                               gc if kk + 1 < kb else 0, &g, &B)
                        _wg_product(Vt, vt, Z, acc + (gi * Kg + k0) * Cvg, K * Cvg, Cvg, kb, KB, B.ntv, TBP, NP,
                                    pp, bi == 0)
        free(V)
        if vt:
            free(Vt)
        free(Z)
        _block_free(&B)
    check_scratch(failed[0], "winograd", (2 if vt else 1) * vbytes)


cdef void _gpass(const double* G, bint adjoint, const double* s, double* d, Py_ssize_t* ext, int axis,
                 Py_ssize_t n, Py_ssize_t ld) noexcept nogil:
    """G (3 -> 6) or G^T (6 -> 3) along ``axis`` of a grid of extents ``ext`` (updated); rows of n elements at
    stride ``ld``."""
    cdef Py_ssize_t i, j, o1, o2, pin, pout
    cdef Py_ssize_t sin_[3]
    cdef Py_ssize_t sout[3]
    cdef Py_ssize_t eo[3]
    eo[0], eo[1], eo[2] = ext[0], ext[1], ext[2]
    eo[axis] = 3 if adjoint else 6
    sin_[2], sin_[1], sin_[0] = 1, ext[2], ext[1] * ext[2]
    sout[2], sout[1], sout[0] = 1, eo[2], eo[1] * eo[2]
    o1 = 0 if axis != 0 else 1
    o2 = 2 if axis != 2 else 1
    for i in range(ext[o1]):
        for j in range(ext[o2]):
            pin = i * sin_[o1] + j * sin_[o2]
            pout = i * sout[o1] + j * sout[o2]
            if adjoint:
                fc_wino_gt(G, s + pin * ld, sin_[axis] * ld, d + pout * ld, sout[axis] * ld, n)
            else:
                fc_wino_g(G, s + pin * ld, sin_[axis] * ld, d + pout * ld, sout[axis] * ld, n)
    ext[0], ext[1], ext[2] = eo[0], eo[1], eo[2]


# Filters per chunk of the filter transforms: the two double buffers of a chunk (36 x 64 x 8 bytes each) stay in
# the L1 cache (512: 8 x 128 x 128 3x3 filters 470 -> 290 us on one thread, 290 -> 150 us on two).
DEF FCHUNK = 64


cdef inline bint _planar(const int* ac, Py_ssize_t NP, Py_ssize_t J) noexcept nogil:
    """A 2-D 3 x 3 filter transform (axes 1 and 2 transformed, 36 points, 9 taps): one fused pass, both axes in
    registers (fc_wino_g2 / fc_wino_gt2)."""
    return ac[0] == 0 and ac[1] == 1 and ac[2] == 1 and NP == 36 and J == 9


cdef double* _gpasses(const double* G, bint adjoint, double* b1, double* b2, Py_ssize_t* ext, const int* ac,
                      Py_ssize_t n) noexcept nogil:
    """The filter transform (or its adjoint) of a chunk of n filters in b1, a pass per transformed axis (the last
    axis first) between b1 and b2: returns the buffer that holds the result."""
    cdef double* cur = b1
    cdef double* to
    cdef int a
    for a in range(3):
        ext[a] = (6 if adjoint else 3) if ac[a] else 1
    for a in range(2, -1, -1):
        if ac[a]:
            to = b2 if cur == b1 else b1
            _gpass(G, adjoint, cur, to, ext, a, (n + 7) // 8 * 8, FCHUNK)
            cur = to
    return cur


def filters(const double[:, ::1] G, const double[:, ::1] wv, float_t[:, ::1] U, tuple act, int nthreads,
            const float_t[:, ::1] src=None, const Py_ssize_t[::1] rows=None, const Py_ssize_t[::1] taps=None):
    """U[p, r] = (G g_r G^T)[p]: the transformed filters of the virtual kernels ``wv`` (taps x filters, the taps
    of an axis 3 if it is transformed, else 1) with the 6 x 3 matrix ``G``, computed in double precision and
    rounded once.  With ``src`` (the weights as rows of taps, in U's dtype), kernel r is read from it instead, tap
    j at src[rows[r], taps[j]] (``wv`` is not read)."""
    cdef bint direct = src is not None
    cdef Py_ssize_t J = taps.shape[0] if direct else wv.shape[0]
    cdef Py_ssize_t R = rows.shape[0] if direct else wv.shape[1]
    cdef Py_ssize_t ss = src.shape[1] if direct else 0
    cdef const float_t* sp = &src[0, 0] if direct and src.shape[0] > 0 and ss > 0 else NULL
    cdef Py_ssize_t NP = U.shape[0], r0, n, p, a, i
    cdef Py_ssize_t nch = (R + FCHUNK - 1) // FCHUNK, ch
    cdef int ac[3]
    cdef Py_ssize_t* ext             # per thread: _gpass updates the extents as it goes
    cdef int failed[1]
    cdef double* b1
    cdef double* b2
    cdef double* cur
    for a in range(3):
        ac[a] = 1 if act[a] else 0
    cdef bint planar = _planar(ac, NP, J)
    failed[0] = 0
    with nogil, parallel(num_threads=nthreads):
        b1 = <double*> fc_wino_alloc(NP * FCHUNK * sizeof(double))
        b2 = <double*> fc_wino_alloc(NP * FCHUNK * sizeof(double))
        ext = <Py_ssize_t*> fc_wino_alloc(3 * sizeof(Py_ssize_t))
        if b1 == NULL or b2 == NULL or ext == NULL:
            failed[0] = 1
        for ch in prange(nch, schedule="static"):
            if b1 != NULL and b2 != NULL and ext != NULL:
                r0 = ch * FCHUNK
                n = min(FCHUNK, R - r0)
                if direct:
                    for p in range(J):
                        for i in range(n):
                            b1[p * FCHUNK + i] = sp[rows[r0 + i] * ss + taps[p]]
                else:
                    for p in range(J):
                        memcpy(b1 + p * FCHUNK, &wv[p, r0], n * sizeof(double))
                if planar:
                    fc_wino_g2(&G[0, 0], b1, FCHUNK, b2, FCHUNK, (n + 7) // 8 * 8)
                    cur = b2
                else:
                    cur = _gpasses(&G[0, 0], False, b1, b2, ext, ac, n)
                for p in range(NP):
                    for i in range(n):
                        U[p, r0 + i] = <float_t> cur[p * FCHUNK + i]
        free(b1)
        free(b2)
        free(ext)
    check_scratch(failed[0], "winograd filters", 2 * NP * FCHUNK * sizeof(double))


cdef inline void _lane_sum(const float_t* s, Py_ssize_t lanes, Py_ssize_t stride, double* d,
                           Py_ssize_t n) noexcept nogil:
    """d[i] = s[i] + s[stride + i] + ... (``lanes`` terms, in order, in double precision)."""
    cdef Py_ssize_t i = 0, ln
    while i < n:            # the next chunk's lines (one stream per point and lane, far apart: no hardware prefetch)
        for ln in range(lanes):
            fc_wino_prefetch(s + ln * stride + FCHUNK + i)
        i += 64 // sizeof(float_t)
    for i in range(n):
        d[i] = s[i]
    for ln in range(1, lanes):
        for i in range(n):
            d[i] += s[ln * stride + i]


def filters_adjoint(const double[:, ::1] G, const float_t[:, :, ::1] dU, float_t[:, ::1] out, tuple act,
                    int nthreads, Py_ssize_t swap=0):
    """out[r, j] = sum over lanes of (G^T dU_r G)[j], the lanes (first axis of dU, shape (lanes, NP, R)) summed
    in order in double precision, rounded once (``out`` has dU's type).  With ``swap`` = K > 0, dU's rows are
    (c, k) pairs, c-major over K values of k, and out's are the same pairs k-major: row c * K + k of dU goes to
    row k * (R / K) + c of out."""
    cdef Py_ssize_t LN = dU.shape[0], NP = dU.shape[1], R = dU.shape[2], J = out.shape[1], r0, n, p, a, i, ln
    cdef const float_t* du = &dU[0, 0, 0]
    # rows as C runs of K (without swap: one run of all of them, C = 1), each run in chunks of FCHUNK
    cdef Py_ssize_t K = swap if swap > 0 else R, nk = (K + FCHUNK - 1) // FCHUNK, C = R // K if K > 0 else 0
    cdef Py_ssize_t nch = C * nk, ch, k0, o0
    if swap < 0 or (swap > 0 and R % swap != 0):
        raise ValueError("filters_adjoint: swap must divide the rows")
    cdef int ac[3]
    cdef Py_ssize_t* ext             # per thread: _gpass updates the extents as it goes
    cdef int failed[1]
    cdef double* b1
    cdef double* b2
    cdef double* cur
    for a in range(3):
        ac[a] = 1 if act[a] else 0
    cdef bint planar = _planar(ac, NP, J)
    failed[0] = 0
    with nogil, parallel(num_threads=nthreads):
        b1 = <double*> fc_wino_alloc(NP * FCHUNK * sizeof(double))
        b2 = <double*> fc_wino_alloc(NP * FCHUNK * sizeof(double))
        ext = <Py_ssize_t*> fc_wino_alloc(3 * sizeof(Py_ssize_t))
        if b1 == NULL or b2 == NULL or ext == NULL:
            failed[0] = 1
        for ch in prange(nch, schedule="static"):
            if b1 != NULL and b2 != NULL and ext != NULL:
                # chunk ch: rows k0 .. k0 + n - 1 of run c = ch // nk (dU row c * K + k -> out row k * C + c)
                k0 = (ch % nk) * FCHUNK
                n = min(FCHUNK, K - k0)
                r0 = (ch // nk) * K + k0
                o0 = k0 * C + ch // nk
                for p in range(NP):
                    _lane_sum(du + p * R + r0, LN, NP * R, b1 + p * FCHUNK, n)
                if planar:
                    if float_t is float:
                        fc_wino_gt2_f(&G[0, 0], b1, FCHUNK, &out[o0, 0], J * C, n)
                    else:
                        fc_wino_gt2_d(&G[0, 0], b1, FCHUNK, &out[o0, 0], J * C, n)
                else:
                    cur = _gpasses(&G[0, 0], True, b1, b2, ext, ac, n)
                    for i in range(n):
                        for p in range(J):
                            out[o0 + i * C, p] = <float_t> cur[p * FCHUNK + i]
        free(b1)
        free(b2)
        free(ext)
    check_scratch(failed[0], "winograd filters", 2 * NP * FCHUNK * sizeof(double))


def to_batch(const float_t[:, :, :, :, ::1] src, float_t[:, :, :, :, ::1] dst, tuple lo, int nthreads):
    """Batch layout: dst[c, x0 - lo0, x1 - lo1, x2 - lo2, n] = src[n, c, x0, x1, x2] (dst zero elsewhere; dst has
    at least N lanes).  16 x 16 blocks (images x columns) are transposed through a per-thread buffer."""
    cdef Py_ssize_t N = src.shape[0], C = src.shape[1], D = src.shape[2], H = src.shape[3], W = src.shape[4]
    cdef Py_ssize_t Np = dst.shape[4], l0 = lo[0], l1 = lo[1], l2 = lo[2], c, d, h, w, n, w0, n0, task, nb, wb
    cdef Py_ssize_t ntask = C * D * H
    cdef float_t* tmp
    cdef int failed[1]
    failed[0] = 0
    with nogil:
        memset(&dst[0, 0, 0, 0, 0], 0, dst.shape[0] * dst.shape[1] * dst.shape[2] * dst.shape[3] * Np
               * sizeof(float_t))
    with nogil, parallel(num_threads=nthreads):
        tmp = <float_t*> fc_wino_alloc(256 * sizeof(float_t))
        if tmp == NULL:
            failed[0] = 1
        for task in prange(ntask, schedule="static"):
            if tmp != NULL:
                c = task // (D * H)
                d = (task // H) % D
                h = task % H
                for n0 in range(0, N, 16):
                    nb = min(16, N - n0)
                    for w0 in range(0, W, 16):
                        wb = min(16, W - w0)
                        for n in range(nb):
                            for w in range(wb):
                                tmp[w * 16 + n] = src[n0 + n, c, d, h, w0 + w]
                        for w in range(wb):
                            memcpy(&dst[c, d - l0, h - l1, w0 + w - l2, n0], &tmp[w * 16], nb * sizeof(float_t))
        free(tmp)
    if failed[0]:
        raise MemoryError("winograd: could not allocate a transpose buffer")


def from_batch(const float_t[:, :, :, :, ::1] src, float_t[:, :, :, :, ::1] dst, tuple lo, int nthreads):
    """Back from the batch layout: dst[n, c, x0, x1, x2] = src[c, x0 - lo0, x1 - lo1, x2 - lo2, n]."""
    cdef Py_ssize_t N = dst.shape[0], C = dst.shape[1], D = dst.shape[2], H = dst.shape[3], W = dst.shape[4]
    cdef Py_ssize_t l0 = lo[0], l1 = lo[1], l2 = lo[2], c, d, h, w, n, w0, n0, task, nb, wb
    cdef Py_ssize_t ntask = C * D * H
    cdef float_t* tmp
    cdef int failed[1]
    failed[0] = 0
    with nogil, parallel(num_threads=nthreads):
        tmp = <float_t*> fc_wino_alloc(256 * sizeof(float_t))
        if tmp == NULL:
            failed[0] = 1
        for task in prange(ntask, schedule="static"):
            if tmp != NULL:
                c = task // (D * H)
                d = (task // H) % D
                h = task % H
                for n0 in range(0, N, 16):
                    nb = min(16, N - n0)
                    for w0 in range(0, W, 16):
                        wb = min(16, W - w0)
                        for w in range(wb):
                            memcpy(&tmp[w * 16], &src[c, d - l0, h - l1, w0 + w - l2, n0], nb * sizeof(float_t))
                        for n in range(nb):
                            for w in range(wb):
                                dst[n0 + n, c, d, h, w0 + w] = tmp[w * 16 + n]
        free(tmp)
    if failed[0]:
        raise MemoryError("winograd: could not allocate a transpose buffer")


def fft_filters(const double[:, ::1] wv, float_t[:, ::1] U, tuple tile, tuple J, const Py_ssize_t[::1] partner,
                int nthreads):
    """FFT tiles: U[p, r] = the packed conjugate spectrum of the virtual kernel r (``wv`` is taps x filters, the
    taps (jd, jh, jw) < J at the start of the zero-padded tile), in double precision, rounded once."""
    cdef Py_ssize_t R = wv.shape[1], NP = U.shape[0], r0, n, nv, p, j, i, ch, jd, jh, jw
    cdef Py_ssize_t nch = (R + FCHUNK - 1) // FCHUNK
    cdef Grid g = _grid(tile, (1, 1, 1), (0, 0, 0), 1, 16, 16, False)
    cdef Py_ssize_t J0 = J[0], J1 = J[1], J2 = J[2]
    cdef int failed[1]
    cdef double* b
    failed[0] = 0
    with nogil, parallel(num_threads=nthreads):
        b = <double*> fc_wino_alloc(NP * FCHUNK * sizeof(double))
        if b == NULL:
            failed[0] = 1
        for ch in prange(nch, schedule="static"):
            if b != NULL:
                r0 = ch * FCHUNK
                n = min(FCHUNK, R - r0)
                nv = (n + 7) // 8 * 8
                memset(b, 0, NP * nv * sizeof(double))
                for jd in range(J0):
                    for jh in range(J1):
                        for jw in range(J2):
                            p = (jd * g.alpha[1] + jh) * g.alpha[2] + jw
                            memcpy(b + p * nv, &wv[(jd * J1 + jh) * J2 + jw, r0], n * sizeof(double))
                _fft_passes(False, b, nv, &g, nv)
                for p in range(NP):
                    if partner[p] >= 0 and partner[p] < p:       # imaginary part: conjugate
                        for i in range(n):
                            U[p, r0 + i] = <float_t> -b[p * nv + i]
                    else:
                        for i in range(n):
                            U[p, r0 + i] = <float_t> b[p * nv + i]
        free(b)
    check_scratch(failed[0], "fft_tiles filters", NP * FCHUNK * sizeof(double))


def fft_filters_adjoint(const float_t[:, :, ::1] dU, double[:, ::1] out, tuple tile, tuple J,
                        const Py_ssize_t[::1] partner, int nthreads):
    """The adjoint of :func:`fft_filters` applied to dU summed over its lanes (first axis, in order, in double
    precision): out[r, j] for the taps j < J."""
    cdef Py_ssize_t LN = dU.shape[0], NP = dU.shape[1], R = dU.shape[2], r0, n, nv, p, j, i, ch, ln, jd, jh, jw
    cdef const float_t* du = &dU[0, 0, 0]
    cdef Py_ssize_t nch = (R + FCHUNK - 1) // FCHUNK
    cdef Grid g = _grid(tile, (1, 1, 1), (0, 0, 0), 1, 16, 16, False)
    cdef Py_ssize_t J0 = J[0], J1 = J[1], J2 = J[2], a
    cdef double sgn
    cdef int failed[1]
    cdef double* b
    for a in range(3):
        g.mt[a] = g.alpha[a]        # every position of the inverse (not only a tile's outputs)
    failed[0] = 0
    with nogil, parallel(num_threads=nthreads):
        b = <double*> fc_wino_alloc(NP * FCHUNK * sizeof(double))
        if b == NULL:
            failed[0] = 1
        for ch in prange(nch, schedule="static"):
            if b != NULL:
                r0 = ch * FCHUNK
                n = min(FCHUNK, R - r0)
                nv = (n + 7) // 8 * 8
                memset(b, 0, NP * nv * sizeof(double))
                for p in range(NP):
                    sgn = -1.0 if partner[p] >= 0 and partner[p] < p else 1.0
                    _lane_sum(du + p * R + r0, LN, NP * R, b + p * nv, n)
                    if sgn < 0:
                        for i in range(n):
                            b[p * nv + i] = -b[p * nv + i]
                _fft_passes(True, b, nv, &g, nv)
                for jd in range(J0):
                    for jh in range(J1):
                        for jw in range(J2):
                            p = (jd * g.alpha[1] + jh) * g.alpha[2] + jw
                            for i in range(n):
                                out[r0 + i, (jd * J1 + jh) * J2 + jw] = b[p * nv + i]
        free(b)
    check_scratch(failed[0], "fft_tiles filters", NP * FCHUNK * sizeof(double))
