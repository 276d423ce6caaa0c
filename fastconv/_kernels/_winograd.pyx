# cython: language_level=3
"""Winograd minimal filtering F(4, 3) per axis: the kernels of the ``winograd`` algorithm.

Every problem reaches these kernels as a *stride-1 correlation with 3-tap kernels* over "virtual" channels
(``fastconv/_algos/winograd.py`` maps strides, dilation and larger kernels onto that form):

* virtual input channel ``v`` reads ``src[n, in_chan[v], in_stride * m + in_off[v]]`` per axis (zero outside);
* virtual output channel ``k`` writes ``dst[n, out_chan[k], out_stride * m + out_off[k]]`` per axis (positions
  outside ``dst`` are dropped);
* ``m`` runs over a grid of tiles: ``m = m0 + mt * tile + i`` (``mt`` = 4 outputs on an axis that is transformed,
  1 on an axis that is not).

An axis that is transformed has tiles of alpha = 6 points (F(4, 3): 4 outputs from 6 inputs, 3 taps); the others
have 1.  A tile of ``NP`` points (36 for 2-D) goes through

    V = B^T d B            input transform, per input tile and virtual input channel
    M[xi] = U[xi] V[xi]    one GEMM per transform point xi (``U`` = the transformed filters, from Python)
    Y = A^T M A            output transform, per output tile and virtual output channel

with the 1-D transforms applied along each transformed axis in turn (they are separable).  The weight gradient
runs the adjoint: ``dU[xi] += Z[xi] V[xi]^T`` with ``Z = A dY A^T`` summed over tiles (``G^T dU G`` is applied in
Python).

Data layout: tiles are the vector lanes.  A block holds ``TB`` consecutive tiles; its transformed input is
``V[point][channel][tile]`` and the GEMM result ``M[point][channel][tile]``, so every transform is a vector
operation over ``TB`` tiles and every GEMM is a column-major ``(tiles x C) @ (C x K)`` product on row-major data.

Parallelism: OpenMP over blocks (forward / input gradient) or over (lane, group, output-channel chunk) tasks
(weight gradient; each lane sums a fixed set of blocks in order into its own accumulator).  GEMMs are
single-threaded BLAS calls (the caller limits the BLAS pool to one thread).  Work units and summation orders do
not depend on the thread count, so results are bitwise identical for any number of threads.
"""
from cython.parallel cimport parallel, prange
from libc.stdlib cimport free
from libc.string cimport memset, memcpy
from scipy.linalg.cython_blas cimport sgemm, dgemm

from fastconv._kernels.fused cimport float_t


cdef extern from *:
    """
    #include <stdlib.h>
    #include <string.h>
    #ifndef FC_VECTOR_BYTES
    #define FC_VECTOR_BYTES 32
    #endif
    typedef float fc_vf __attribute__((vector_size(FC_VECTOR_BYTES), aligned(4)));
    typedef double fc_vd __attribute__((vector_size(FC_VECTOR_BYTES), aligned(8)));
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

    /* Lane permutations of two vectors a, b of L lanes (index i < L picks a[i], L + i picks b[i]):
       EVEN/ODD unzip (a0 a2 a4 ... b0 b2 ... / a1 a3 ... b1 b3 ...), ZLO/ZHI zip the low/high halves
       (a0 b0 a1 b1 ... / a[L/2] b[L/2] ...). */
    #define FC_EVEN(i, L) (2 * (i))
    #define FC_ODD(i, L) (2 * (i) + 1)
    #define FC_ZLO(i, L) (((i) & 1) ? (L) + ((i) >> 1) : ((i) >> 1))
    #define FC_ZHI(i, L) (((i) & 1) ? (L) + (L) / 2 + ((i) >> 1) : (L) / 2 + ((i) >> 1))
    #define FC_LIST4(F, L) {F(0, L), F(1, L), F(2, L), F(3, L)}
    #define FC_LIST8(F, L) {F(0, L), F(1, L), F(2, L), F(3, L), F(4, L), F(5, L), F(6, L), F(7, L)}
    #define FC_LIST16(F, L) {F(0, L), F(1, L), F(2, L), F(3, L), F(4, L), F(5, L), F(6, L), F(7, L),           \\
                             F(8, L), F(9, L), F(10, L), F(11, L), F(12, L), F(13, L), F(14, L), F(15, L)}
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
    static inline V fc_wino_shuf_##SUF(V a, V b, MI m) {                                                  \\
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
    FC_WINO_DEFINE(f, float, fc_vf, fc_wino_mf)
    FC_WINO_DEFINE(d, double, fc_vd, fc_wino_md)

    /* one vector: d = s (+ bias) */
    #define fc_wino_mov_f(d, s, b) (*(fc_vf *)(d) = *(const fc_vf *)(s) + (float)(b))
    #define fc_wino_mov_d(d, s, b) (*(fc_vd *)(d) = *(const fc_vd *)(s) + (double)(b))
    #define fc_wino_prefetch(p) __builtin_prefetch((const void *)(p), 0, 3)
    #define fc_wino_prefetchw(p) __builtin_prefetch((const void *)(p), 1, 3)
    static const Py_ssize_t fc_wino_lanes_f = sizeof(fc_vf) / sizeof(float);
    static const Py_ssize_t fc_wino_lanes_d = sizeof(fc_vd) / sizeof(double);
    """
    void* fc_wino_alloc(size_t nbytes) nogil
    void fc_wino_prefetch(const void* p) nogil
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
    const Py_ssize_t fc_wino_lanes_f
    const Py_ssize_t fc_wino_lanes_d


cdef bint _PF = True
def _set_prefetch(bint on):
    global _PF
    _PF = on


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


cdef const float_t* _passes_hd(int kind, const float_t* cur, Py_ssize_t* cs, float_t* dst, Py_ssize_t ds,
                               float_t* b1, float_t* b2, Py_ssize_t bs, Py_ssize_t* ext, const Grid* g,
                               Py_ssize_t n) noexcept nogil:
    """The transforms of ``kind`` along the active H and D axes (H first) of the grid at ``cur`` (point stride
    ``cs[0]``).  The last pass writes ``dst`` (stride ``ds``) if it is not NULL, else the passes ping-pong
    between ``b1`` and ``b2`` (stride ``bs``).  Returns where the result is (and its stride in ``cs``)."""
    cdef int a, last = -1
    cdef float_t* to
    for a in range(2):
        if g.act[a] and last < 0:
            last = a
    for a in range(1, -1, -1):
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
        if pf and _PF:          # the same rows of the channel read next, one cache line at a time
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
        if pf and _PF:
            for k in range(((k1 - k0) * s2 * <Py_ssize_t> sizeof(float_t) + 63) // 64):
                fc_wino_prefetchw(<const char*> (row + pf + lo + k0 * s2) + 64 * k)
        if s2 == 1:
            memcpy(row + lo + k0, s + k0, (k1 - k0) * sizeof(float_t))
        else:
            for k in range(k0, k1):
                row[lo + k * s2] = s[k]


cdef inline void _mov(float_t* d, const float_t* s, float_t b) noexcept nogil:
    if float_t is float:
        fc_wino_mov_f(d, s, b)
    else:
        fc_wino_mov_d(d, s, b)


cdef const float_t* _passes(int kind, const float_t* cur, Py_ssize_t* cs, float_t* dst, Py_ssize_t ds,
                            float_t* b1, float_t* b2, Py_ssize_t bs, Py_ssize_t* ext, const Grid* g,
                            Py_ssize_t n) noexcept nogil:
    """Like _passes_hd, along every active axis (W first)."""
    cdef int a, last = -1
    cdef float_t* to
    for a in range(3):
        if g.act[a] and last < 0:
            last = a
    for a in range(2, -1, -1):
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


cdef void _input_channel_batch(int kind, const float_t* src, const Py_ssize_t* dims, const Py_ssize_t* stride,
                               const Py_ssize_t* off, float_t* dst, Py_ssize_t ds, const Grid* g,
                               const Block* B, Py_ssize_t L) noexcept nogil:
    """Batch mode: the windows of L images at a time are vectors of the (C, D, H, W, Np) array (``src`` at the
    channel; offsets already inside the padded array), transformed along every active axis into ``dst``."""
    cdef Py_ssize_t e[3]
    cdef Py_ssize_t t, i0, i1, i2, p, a, cs, x0, x1, TBP = g.TBP, Np = g.Np, H = dims[1], W = dims[2]
    cdef float_t* q = <float_t*> B.q
    cdef bint any_act = g.act[0] or g.act[1] or g.act[2]
    cdef float_t* to = q if any_act else dst
    cdef Py_ssize_t ts = TBP if any_act else ds
    cdef const float_t* base
    for a in range(3):
        e[a] = g.alpha[a] if kind == BT else g.mt[a]
    cdef Py_ssize_t tv
    for tv in range(B.ntv // L):
        t = tv * L
        base = src + B.tn[t]
        p = 0
        for i0 in range(e[0]):
            x0 = stride[0] * (B.tm[3 * t] + i0) + off[0]
            for i1 in range(e[1]):
                x1 = (x0 * H + stride[1] * (B.tm[3 * t + 1] + i1) + off[1]) * W
                for i2 in range(e[2]):
                    _mov(to + p * ts + t, base + (x1 + stride[2] * (B.tm[3 * t + 2] + i2) + off[2]) * Np, 0)
                    p += 1
    if any_act:
        cs = TBP
        _passes(kind, q, &cs, dst, ds, q, <float_t*> B.q2, TBP, e, g, B.ntv)


cdef void _output_channel_batch(const float_t* m, Py_ssize_t ms, float_t* dst, const Py_ssize_t* dims,
                                const Py_ssize_t* stride, const Py_ssize_t* off, float_t bias, const Grid* g,
                                const Block* B, Py_ssize_t L) noexcept nogil:
    """Batch mode: output transform of one channel, written as vectors of L images (+ bias) to ``dst``."""
    cdef Py_ssize_t e[3]
    cdef Py_ssize_t t, i0, i1, i2, p, a, x0, x1, cs = ms, Np = g.Np, H = dims[1], W = dims[2]
    cdef const float_t* cur = m
    for a in range(3):
        e[a] = g.alpha[a]
    cur = _passes(AT, m, &cs, NULL, 0, <float_t*> B.q, <float_t*> B.q2, g.TBP, e, g, B.ntv)
    cdef Py_ssize_t tv
    for tv in range(B.nt // L):
        t = tv * L
        p = 0
        for i0 in range(e[0]):
            x0 = stride[0] * (B.tm[3 * t] + i0) + off[0]
            for i1 in range(e[1]):
                x1 = (x0 * H + stride[1] * (B.tm[3 * t + 1] + i1) + off[1]) * W
                for i2 in range(e[2]):
                    _mov(dst + (x1 + stride[2] * (B.tm[3 * t + 2] + i2) + off[2]) * Np + B.tn[t], cur + p * cs + t,
                         bias)
                    p += 1


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
        _passes_hd(kind, q, &cs, dst, ds, q, <float_t*> B.q2, TBP, e, g, n)


cdef void _output_channel(const float_t* m, Py_ssize_t ms, float_t* dst, const Py_ssize_t* dims,
                          Py_ssize_t nstride, const Py_ssize_t* stride, const Py_ssize_t* off, float_t bias,
                          Py_ssize_t pf, const Grid* g, const Block* B) noexcept nogil:
    """Output transform (A^T . A) of one channel's GEMM results at ``m`` (point stride ``ms``), plus bias,
    written to ``dst``."""
    cdef Py_ssize_t e[3]
    cdef Py_ssize_t i0, i1, p0, a, t, cs = ms, n = B.ntv
    cdef const float_t* cur = m
    cdef float_t* ro = <float_t*> B.ro
    for a in range(3):
        e[a] = g.alpha[a]
    if g.act[0] or g.act[1]:
        cur = _passes_hd(AT, m, &cs, NULL, 0, <float_t*> B.q, <float_t*> B.q2, g.TBP, e, g, n)
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
            _store_rows(dst, dims, nstride, stride, off, i0, i1, g.mt[2], pf, B)


cdef inline void _gemm(char ta, int m, int n, int k, const float_t* a, int lda, const float_t* b, int ldb,
                       float_t beta, float_t* c, int ldc) noexcept nogil:
    """Column-major ``c = op(a) @ b + beta * c`` (op = transpose when ta == 'T') through scipy's BLAS."""
    cdef float_t one = 1
    cdef char tb = c'N'
    if float_t is float:
        sgemm(&ta, &tb, &m, &n, &k, &one, <float*> a, &lda, <float*> b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &one, <double*> a, &lda, <double*> b, &ldb, &beta, c, &ldc)


cdef void _product(const float_t* V, Py_ssize_t vstride, const float_t* U, Py_ssize_t ustride, Py_ssize_t Cg,
                   Py_ssize_t kb, float_t* M, Py_ssize_t mstride, Py_ssize_t ntv, Py_ssize_t TBP,
                   Py_ssize_t NP, bint small) noexcept nogil:
    """M[p][kk][t] = sum_c U[p][kk][c] V[p][c][t] for every point p (point strides vstride, ustride, mstride)."""
    cdef Py_ssize_t p, kk, c
    cdef const float_t* u
    for p in range(NP):
        if not small:
            _gemm(c'N', <int> ntv, <int> kb, <int> Cg, V + p * vstride, <int> TBP, U + p * ustride, <int> Cg, 0,
                  M + p * mstride, <int> TBP)
            continue
        for kk in range(kb):
            u = U + p * ustride + kk * Cg
            for c in range(Cg):
                if float_t is float:
                    fc_wino_axpy_f(u[c], V + p * vstride + c * TBP, M + p * mstride + kk * TBP, ntv, c == 0)
                else:
                    fc_wino_axpy_d(u[c], V + p * vstride + c * TBP, M + p * mstride + kk * TBP, ntv, c == 0)


cdef Grid _grid(tuple act, tuple T, tuple m0, Py_ssize_t N, Py_ssize_t TB, Py_ssize_t L, bint batch):
    """The tile grid; ``N`` is the batch size (row mode) or the padded images per tile position (batch mode)."""
    cdef Grid g
    cdef int a
    g.NP = 1
    for a in range(3):
        g.act[a] = 1 if act[a] else 0
        g.alpha[a] = 6 if act[a] else 1
        g.mt[a] = 4 if act[a] else 1
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
            bint has_bias, float_t[:, :, :, :, ::1] dst,
            const Py_ssize_t[::1] in_chan, const Py_ssize_t[:, ::1] in_off, tuple in_stride,
            const Py_ssize_t[::1] out_chan, const Py_ssize_t[:, ::1] out_off, tuple out_stride,
            tuple act, tuple T, tuple m0, Py_ssize_t groups, Py_ssize_t TB, Py_ssize_t KB, bint small,
            bint batch, int nthreads):
    """dst[out positions] = the Winograd correlation of the virtual input channels with ``U`` (+ bias).

    ``U`` is (NP, Kv, Cv / groups): the transformed filters, virtual output channel x virtual input channel of its
    group.  Tiles are processed in blocks of ``TB``; GEMMs in blocks of ``KB`` output channels.  Row mode: ``src``
    and ``dst`` are (N, C, D, H, W); batch mode: (C, D, H, W, Np), zero-padded so that every window is inside.
    """
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
    cdef Grid g = _grid(act, T, m0, src.shape[4] if batch else src.shape[0], TB, L, batch)
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
                for v in range(Cv):
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
                                 M, KB * TBP, B.ntv, TBP, NP, small)
                        for kk in range(kb):
                            v = gi * Kvg + k0 + kk
                            if batch:
                                _output_channel_batch(M + kk * TBP, KB * TBP, dp + och[v] * dc, ddims, ostr,
                                                      ooff + 3 * v, bias[v] if has_bias else 0, &g, &B, L)
                            else:
                                _output_channel(M + kk * TBP, KB * TBP, dp + och[v] * dc, ddims, dC, ostr,
                                                ooff + 3 * v, bias[v] if has_bias else 0,
                                                (och[v + 1] - och[v]) * dc if v + 1 < Kv else 0, &g, &B)
        free(V)
        free(M)
        _block_free(&B)
    if failed[0]:
        raise MemoryError("winograd: could not allocate the per-thread tile buffers")


def weight_grad(const float_t[:, :, :, :, ::1] src, const float_t[:, :, :, :, ::1] gy, float_t[:, :, :, ::1] dU,
                const Py_ssize_t[::1] in_chan, const Py_ssize_t[:, ::1] in_off, tuple in_stride,
                tuple act, tuple T, Py_ssize_t groups, Py_ssize_t TB, Py_ssize_t KB, Py_ssize_t kchunk,
                bint batch, int nthreads):
    """dU[lane, p, k, c] = sum over the lane's blocks of Z[p][k] . V[p][c] (Z = A dY A^T of the output gradient,
    V = B^T d B of the virtual input channel c of k's group).  Lane ``l`` takes blocks l, l + lanes, ... in
    order; tasks are (lane, group, chunk of ``kchunk`` output channels).  Batch mode as in :func:`forward` (``gy``
    then covers every tile, zero beyond the output)."""
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
    cdef Grid g = _grid(act, T, (0, 0, 0), src.shape[4] if batch else src.shape[0], TB, L, batch)
    cdef Py_ssize_t nblocks = (g.ntiles + TB - 1) // TB
    cdef Py_ssize_t nchunks = (Kg + kchunk - 1) // kchunk
    cdef Py_ssize_t ntasks = LANES * groups * nchunks
    cdef const float_t* sp = &src[0, 0, 0, 0, 0]
    cdef const float_t* gp = &gy[0, 0, 0, 0, 0]
    cdef float_t* up = &dU[0, 0, 0, 0]
    cdef const Py_ssize_t* ich = &in_chan[0]
    cdef const Py_ssize_t* ioff = &in_off[0, 0]
    cdef Py_ssize_t NP = g.NP, TBP = g.TBP, task, lane, gi, ch, blk, v, k0, k1, kb, kk, k, p, kbi, bi
    cdef size_t vbytes = NP * Cvg * TBP * sizeof(float_t), zbytes = NP * KB * TBP * sizeof(float_t)
    cdef float_t* V
    cdef float_t* Z
    cdef float_t* acc
    cdef Block B
    cdef int failed[1]
    cdef bint ok
    failed[0] = 0
    with nogil, parallel(num_threads=nthreads):
        V = <float_t*> fc_wino_alloc(vbytes)
        Z = <float_t*> fc_wino_alloc(zbytes)
        B = _block_new(&g, sizeof(float_t))
        ok = _block_ok(&B) and V != NULL and Z != NULL
        if not ok:
            failed[0] = 1
        for task in prange(ntasks, schedule="dynamic"):
            if ok:
                lane = task % LANES
                gi = (task // LANES) % groups
                ch = task // (LANES * groups)
                acc = up + lane * NP * K * Cvg
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
                    k1 = min(Kg, (ch + 1) * kchunk)
                    for kbi in range((k1 - ch * kchunk + KB - 1) // KB):
                        k0 = ch * kchunk + kbi * KB
                        kb = min(KB, k1 - k0)
                        for kk in range(kb):
                            k = gi * Kg + k0 + kk
                            if batch:
                                _input_channel_batch(AA, gp + k * gc, gdims, one, zero, Z + kk * TBP, KB * TBP, &g,
                                                     &B, L)
                            else:
                                _input_channel(AA, gp + k * gc, gdims, gC, one, zero, Z + kk * TBP, KB * TBP,
                                               gc if kk + 1 < kb else 0, &g, &B)
                        for p in range(NP):
                            # dU^T (Cvg x kb, column-major) += V^T (Cvg x ntv) Z (ntv x kb)
                            _gemm(c'T', <int> Cvg, <int> kb, <int> B.ntv, V + p * Cvg * TBP, <int> TBP,
                                  Z + p * KB * TBP, <int> TBP, 1, acc + (p * K + gi * Kg + k0) * Cvg, <int> Cvg)
        free(V)
        free(Z)
        _block_free(&B)
    if failed[0]:
        raise MemoryError("winograd: could not allocate the per-thread tile buffers")


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


DEF FCHUNK = 512


def filters(const double[:, ::1] G, const double[:, ::1] wv, float_t[:, ::1] U, tuple act, int nthreads):
    """U[p, r] = (G g_r G^T)[p]: the transformed filters of the virtual kernels ``wv`` (taps x filters, the taps
    of an axis 3 if it is transformed, else 1) with the 6 x 3 matrix ``G``, computed in double precision and
    rounded once."""
    cdef Py_ssize_t J = wv.shape[0], R = wv.shape[1], NP = U.shape[0], r0, n, p, a, i
    cdef Py_ssize_t nch = (R + FCHUNK - 1) // FCHUNK, ch
    cdef int ac[3]
    cdef Py_ssize_t ext[3]
    cdef double* b1
    cdef double* b2
    cdef double* cur
    cdef double* to
    for a in range(3):
        ac[a] = 1 if act[a] else 0
    with nogil, parallel(num_threads=nthreads):
        b1 = <double*> fc_wino_alloc(NP * FCHUNK * sizeof(double))
        b2 = <double*> fc_wino_alloc(NP * FCHUNK * sizeof(double))
        for ch in prange(nch, schedule="static"):
            if b1 != NULL and b2 != NULL:
                r0 = ch * FCHUNK
                n = min(FCHUNK, R - r0)
                for p in range(J):
                    memcpy(b1 + p * FCHUNK, &wv[p, r0], n * sizeof(double))
                cur = b1
                for a in range(3):
                    ext[a] = 3 if ac[a] else 1
                for a in range(2, -1, -1):
                    if ac[a]:
                        to = b2 if cur == b1 else b1
                        _gpass(&G[0, 0], False, cur, to, ext, a, (n + 7) // 8 * 8, FCHUNK)
                        cur = to
                for p in range(NP):
                    for i in range(n):
                        U[p, r0 + i] = <float_t> cur[p * FCHUNK + i]
        free(b1)
        free(b2)


def filters_adjoint(const double[:, ::1] G, const float_t[:, :, ::1] dU, double[:, ::1] out, tuple act,
                    int nthreads):
    """out[j, r] = sum over lanes of (G^T dU_r G)[j], the lanes (first axis of dU, shape (lanes, NP, R)) summed
    in order in double precision."""
    cdef Py_ssize_t LN = dU.shape[0], NP = dU.shape[1], R = dU.shape[2], J = out.shape[0], r0, n, p, a, i, ln
    cdef Py_ssize_t nch = (R + FCHUNK - 1) // FCHUNK, ch
    cdef int ac[3]
    cdef Py_ssize_t ext[3]
    cdef double* b1
    cdef double* b2
    cdef double* cur
    cdef double* to
    for a in range(3):
        ac[a] = 1 if act[a] else 0
    with nogil, parallel(num_threads=nthreads):
        b1 = <double*> fc_wino_alloc(NP * FCHUNK * sizeof(double))
        b2 = <double*> fc_wino_alloc(NP * FCHUNK * sizeof(double))
        for ch in prange(nch, schedule="static"):
            if b1 != NULL and b2 != NULL:
                r0 = ch * FCHUNK
                n = min(FCHUNK, R - r0)
                for p in range(NP):
                    for i in range(n):
                        b1[p * FCHUNK + i] = dU[0, p, r0 + i]
                    for ln in range(1, LN):
                        for i in range(n):
                            b1[p * FCHUNK + i] += dU[ln, p, r0 + i]
                cur = b1
                for a in range(3):
                    ext[a] = 6 if ac[a] else 1
                for a in range(2, -1, -1):
                    if ac[a]:
                        to = b2 if cur == b1 else b1
                        _gpass(&G[0, 0], True, cur, to, ext, a, (n + 7) // 8 * 8, FCHUNK)
                        cur = to
                for p in range(J):
                    memcpy(&out[p, r0], cur + p * FCHUNK, n * sizeof(double))
        free(b1)
        free(b2)


def to_batch(const float_t[:, :, :, :, ::1] src, float_t[:, :, :, :, ::1] dst, tuple lo, int nthreads):
    """Batch layout: dst[c, x0 - lo0, x1 - lo1, x2 - lo2, n] = src[n, c, x0, x1, x2] (dst zero elsewhere; dst has
    at least N lanes).  16 x 16 blocks (images x columns) are transposed through a local buffer."""
    cdef Py_ssize_t N = src.shape[0], C = src.shape[1], D = src.shape[2], H = src.shape[3], W = src.shape[4]
    cdef Py_ssize_t Np = dst.shape[4], l0 = lo[0], l1 = lo[1], l2 = lo[2], c, d, h, w, n, w0, n0, task, nb, wb
    cdef Py_ssize_t ntask = C * D * H
    cdef float_t tmp[256]
    with nogil:
        memset(&dst[0, 0, 0, 0, 0], 0, dst.shape[0] * dst.shape[1] * dst.shape[2] * dst.shape[3] * Np
               * sizeof(float_t))
    for task in prange(ntask, nogil=True, num_threads=nthreads, schedule="static"):
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


def from_batch(const float_t[:, :, :, :, ::1] src, float_t[:, :, :, :, ::1] dst, tuple lo, int nthreads):
    """Back from the batch layout: dst[n, c, x0, x1, x2] = src[c, x0 - lo0, x1 - lo1, x2 - lo2, n]."""
    cdef Py_ssize_t N = dst.shape[0], C = dst.shape[1], D = dst.shape[2], H = dst.shape[3], W = dst.shape[4]
    cdef Py_ssize_t l0 = lo[0], l1 = lo[1], l2 = lo[2], c, d, h, w, n, w0, n0, task, nb, wb
    cdef Py_ssize_t ntask = C * D * H
    cdef float_t tmp[256]
    for task in prange(ntask, nogil=True, num_threads=nthreads, schedule="static"):
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
