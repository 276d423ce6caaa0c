/* SIMD vector width and register-block sizes of fastconv's kernels (cimported through common.pxd).
 *
 * The kernels are written once with GCC vector extensions.  setup.py compiles the same generated C file once per
 * SIMD level and passes the vector width with -DFC_VECTOR_BYTES:
 *
 *   baseline  32 bytes, SSE2 flags:          one vector = two SSE registers (16 registers)
 *   avx2      32 bytes, -mavx2 -mfma:        one vector = one YMM register   (16 registers)
 *   avx512    64 bytes, -mavx512f/vl/bw/dq:  one vector = one ZMM register   (32 registers)
 *   avx2x2    64 bytes, -mavx2 -mfma:        one vector = two YMM registers  (a test build: it runs the
 *                                            64-byte code path, block sizes included, on any AVX2 CPU)
 *
 * Register blocks are sized for the register file of the level they were designed for: 16 registers for
 * 32-byte vectors, 32 for 64-byte vectors.  The order in which every output element is summed does not depend
 * on the block sizes, so the levels with FMA (avx2, avx512, avx2x2) give bitwise identical results; the
 * baseline build has no FMA (a separate multiply and add round twice) and differs in the last bits.
 *
 * aligned(sizeof element) makes dereferencing an unaligned pointer legal.
 */
#ifndef FASTCONV_SIMD_H
#define FASTCONV_SIMD_H

#include <stddef.h>
#include <string.h>

#ifndef FC_VECTOR_BYTES
#define FC_VECTOR_BYTES 32
#endif

typedef float fc_vf __attribute__((vector_size(FC_VECTOR_BYTES), aligned(4)));
typedef double fc_vd __attribute__((vector_size(FC_VECTOR_BYTES), aligned(8)));
#define FC_VEC_FLOATS (FC_VECTOR_BYTES / 4)

#if FC_VECTOR_BYTES == 64
/* direct, channel-vectorised block: 2 vectors of output channels x 12 output columns = 24 accumulators, plus 2
   weight vectors and a broadcast: 27 of 32 registers. */
#define FC_CH_VECS 2
#define FC_CH_COLS 12
/* column-vectorised block (few channels per group): 16 accumulators, as channels x rows x column vectors. */
#define FC_DW_ROWS 4
#define FC_DW_VECS 4
/* filters, row pair: 2 rows x 8 column vectors = 16 accumulators, 2 weights and the source vector: 19 of 32. */
#define FC_PAIR_VECS 8
/* filters, row block: 8 output rows x 2 column vectors = 16 accumulators, 2 source vectors, a broadcast weight. */
#define FC_RB_ROWS 8
#define FC_RB_VECS 2
#elif FC_VECTOR_BYTES == 32
#if defined(__AVX__)
/* 2 vectors of output channels x 6 output columns = 12 accumulators of 16 registers. */
#define FC_CH_VECS 2
#define FC_CH_COLS 6
#else
/* baseline (SSE2): a 32-byte vector is two of the 16 registers, so 1 vector of output channels x 6 output columns:
   6 accumulators, the weight vector and the broadcast take all 16 (the 2 x 6 block spilled to the stack at every
   multiply-add and ran 25x slower than at avx2). */
#define FC_CH_VECS 1
#define FC_CH_COLS 6
#endif
/* 8 accumulators of 16 registers. */
#define FC_DW_ROWS 2
#define FC_DW_VECS 4
/* 2 rows x 4 column vectors = 8 accumulators, 2 weights and the source vector: 11 of 16. */
#define FC_PAIR_VECS 4
/* 8 output rows x 1 column vector = 8 accumulators, the source vector, a broadcast weight: 10 of 16.  (The rows
   of a block are the same at every level: the engine's plans, which say which blocks are regular, are shared.) */
#define FC_RB_ROWS 8
#define FC_RB_VECS 1
#else
#error "FC_VECTOR_BYTES must be 32 or 64"
#endif

#define FC_CH_ACCS (FC_CH_VECS * FC_CH_COLS)
#define FC_DW_ACCS (FC_DW_ROWS * FC_DW_VECS)
/* depthwise weight gradient: kernel taps along W accumulated at once, each in one 64-byte lane group (one
   64-byte vector or two 32-byte ones), so the lanes -- and the summation order -- are the same at every level */
#define FC_DWG_TAPS 8
#define FC_LANE_BYTES 64
#define FC_LANE_VECS (FC_LANE_BYTES / FC_VECTOR_BYTES)
/* ... and, for kernels three taps wide, kernel rows accumulated at once (each output-gradient vector feeds rows x 3
   accumulators: 9 at 64 bytes, 12 at 32 -- enough independent chains to hide the FMA latency) */
#if FC_VECTOR_BYTES == 64
#define FC_DWG_SROWS 3
#else
#define FC_DWG_SROWS 2
#endif
/* ... the accumulators of either (native vectors) */
#define FC_DWG_ACCS ((FC_DWG_TAPS > 3 * FC_DWG_SROWS ? FC_DWG_TAPS : 3 * FC_DWG_SROWS) * FC_LANE_VECS)

/* Butterfly transposes of n x n blocks held in registers, r[0..n) one row per vector: at each scale s the
   off-diagonal s x s blocks of rows i and i + s swap, with two-input shuffles of constant masks (one permute
   instruction each on AVX-512).  A transpose is its own inverse.  F16 / F8: rows of 16 / 8 4-byte elements
   (64- / 32-byte vectors); Q8 / Q4: rows of 8 / 4 8-byte elements.  Any vector type of that shape works (the
   elements only move). */
typedef int fc_mask_f16 __attribute__((vector_size(64)));
typedef int fc_mask_f8 __attribute__((vector_size(32)));
typedef long long fc_mask_q8 __attribute__((vector_size(64)));
typedef long long fc_mask_q4 __attribute__((vector_size(32)));
#define FC_BUTTERFLY(r, n, S, LO, HI) \
    for (int i_ = 0; i_ < (n); i_++) if (!(i_ & (S))) { __typeof__(r[0]) a_ = r[i_], b_ = r[i_ + (S)]; \
        r[i_] = __builtin_shuffle(a_, b_, LO); r[i_ + (S)] = __builtin_shuffle(a_, b_, HI); }
#define FC_TRANSPOSE_F16(r) \
    FC_BUTTERFLY(r, 16, 8, ((fc_mask_f16){0,1,2,3,4,5,6,7,16,17,18,19,20,21,22,23}), \
                           ((fc_mask_f16){8,9,10,11,12,13,14,15,24,25,26,27,28,29,30,31})) \
    FC_BUTTERFLY(r, 16, 4, ((fc_mask_f16){0,1,2,3,16,17,18,19,8,9,10,11,24,25,26,27}), \
                           ((fc_mask_f16){4,5,6,7,20,21,22,23,12,13,14,15,28,29,30,31})) \
    FC_BUTTERFLY(r, 16, 2, ((fc_mask_f16){0,1,16,17,4,5,20,21,8,9,24,25,12,13,28,29}), \
                           ((fc_mask_f16){2,3,18,19,6,7,22,23,10,11,26,27,14,15,30,31})) \
    FC_BUTTERFLY(r, 16, 1, ((fc_mask_f16){0,16,2,18,4,20,6,22,8,24,10,26,12,28,14,30}), \
                           ((fc_mask_f16){1,17,3,19,5,21,7,23,9,25,11,27,13,29,15,31}))
#define FC_TRANSPOSE_F8(r) \
    FC_BUTTERFLY(r, 8, 4, ((fc_mask_f8){0,1,2,3,8,9,10,11}), ((fc_mask_f8){4,5,6,7,12,13,14,15})) \
    FC_BUTTERFLY(r, 8, 2, ((fc_mask_f8){0,1,8,9,4,5,12,13}), ((fc_mask_f8){2,3,10,11,6,7,14,15})) \
    FC_BUTTERFLY(r, 8, 1, ((fc_mask_f8){0,8,2,10,4,12,6,14}), ((fc_mask_f8){1,9,3,11,5,13,7,15}))
#define FC_TRANSPOSE_Q8(r) \
    FC_BUTTERFLY(r, 8, 4, ((fc_mask_q8){0,1,2,3,8,9,10,11}), ((fc_mask_q8){4,5,6,7,12,13,14,15})) \
    FC_BUTTERFLY(r, 8, 2, ((fc_mask_q8){0,1,8,9,4,5,12,13}), ((fc_mask_q8){2,3,10,11,6,7,14,15})) \
    FC_BUTTERFLY(r, 8, 1, ((fc_mask_q8){0,8,2,10,4,12,6,14}), ((fc_mask_q8){1,9,3,11,5,13,7,15}))
#define FC_TRANSPOSE_Q4(r) \
    FC_BUTTERFLY(r, 4, 2, ((fc_mask_q4){0,1,4,5}), ((fc_mask_q4){2,3,6,7})) \
    FC_BUTTERFLY(r, 4, 1, ((fc_mask_q4){0,4,2,6}), ((fc_mask_q4){1,5,3,7}))

/* A square block transposed in registers: N rows of one vector each, read at src + i * sstride (i < N), transposed
   by TR (one of the above), stored as rows at dst + j * dstride.  VU is the rows' vector type aligned as its
   element (rows may start at any element).  Rows move through VU, not memcpy: GCC compiled memcpy into a register
   array as 16-byte halves through the stack, and the vector reloads missed store forwarding. */
#define FC_TRANSPOSE_BLOCK(VU, N, TR, src, sstride, dst, dstride) do {                                        \
    VU r_[N];                                                                                               \
    for (int i_ = 0; i_ < (N); i_++) r_[i_] = *(const VU*) ((src) + i_ * (sstride));                        \
    TR(r_)                                                                                                  \
    for (int j_ = 0; j_ < (N); j_++) *(VU*) ((dst) + j_ * (dstride)) = r_[j_];                              \
} while (0)

/* Lane permutations of two vectors a, b of L lanes, for __builtin_shuffle (index i < L picks a[i], L + i picks
   b[i]): EVEN/ODD unzip (a0 a2 a4 ... b0 b2 ... / a1 a3 ... b1 b3 ...), ZLO/ZHI zip the low/high halves
   (a0 b0 a1 b1 ... / a[L/2] b[L/2] ...); FC_LISTn(F, L) is the initialiser {F(0, L), ..., F(n - 1, L)}. */
#define FC_EVEN(i, L) (2 * (i))
#define FC_ODD(i, L) (2 * (i) + 1)
#define FC_ZLO(i, L) (((i) & 1) ? (L) + ((i) >> 1) : ((i) >> 1))
#define FC_ZHI(i, L) (((i) & 1) ? (L) + (L) / 2 + ((i) >> 1) : (L) / 2 + ((i) >> 1))
#define FC_LIST2(F, L) {F(0, L), F(1, L)}
#define FC_LIST4(F, L) {F(0, L), F(1, L), F(2, L), F(3, L)}
#define FC_LIST8(F, L) {F(0, L), F(1, L), F(2, L), F(3, L), F(4, L), F(5, L), F(6, L), F(7, L)}
#define FC_LIST16(F, L) {F(0, L), F(1, L), F(2, L), F(3, L), F(4, L), F(5, L), F(6, L), F(7, L),               \
                         F(8, L), F(9, L), F(10, L), F(11, L), F(12, L), F(13, L), F(14, L), F(15, L)}

/* max |p[i]| over n elements, and whether one is an inf or NaN: vectors of the instruction set's own width (not
   the build's FC_VECTOR_BYTES: GCC turns the comparison of a wider vector into element-by-element code), two per
   step (GCC vector extensions; loads through a vector type aligned as its element, so any address is legal), no
   branches; x * 0 is NaN exactly for an inf or NaN x.  Neither result depends on the vector width.  (direct's
   max_abs, and common.pxd's nonfinite: the kernels' checks of what they write or read.  16-lane vectors through
   memcpy, the earlier form, ran at 1.5 GB/s outside AVX-512 builds.) */
#if defined(__AVX512F__)
#define FC_NATIVE_BYTES 64
#elif defined(__AVX__)
#define FC_NATIVE_BYTES 32
#else
#define FC_NATIVE_BYTES 16
#endif
#define FC_MAXABS_STEP(x, m, z, a, gt, VI, IT, MASK)                                                      \
    a = (__typeof__(x)) ((VI) (x) & (IT) (MASK));                                                          \
    gt = a > m;                                                                                            \
    m = (__typeof__(x)) ((gt & (VI) a) | (~gt & (VI) m));                                                  \
    z = z + (x) * (__typeof__((x)[0])) 0;
#define FC_MAXABS(NAME, T, IT, MASK)                                                                       \
static inline double NAME(const T* p, ptrdiff_t n, int* bad) {                                             \
    typedef T V __attribute__((vector_size(FC_NATIVE_BYTES), aligned(sizeof(T))));                        \
    typedef IT VI __attribute__((vector_size(FC_NATIVE_BYTES)));                                           \
    enum { L = FC_NATIVE_BYTES / sizeof(T) };                                                              \
    V m0 = {0}, m1 = {0}, z0 = {0}, z1 = {0}, x, y, a;                                                     \
    VI gt;                                                                                                 \
    ptrdiff_t i = 0;                                                                                       \
    T ms = 0, zs = 0, v;                                                                                   \
    int j;                                                                                                 \
    for (; i + 2 * L <= n; i += 2 * L) {                                                                   \
        x = *(const V*) (p + i);                                                                           \
        y = *(const V*) (p + i + L);                                                                       \
        FC_MAXABS_STEP(x, m0, z0, a, gt, VI, IT, MASK)                                                     \
        FC_MAXABS_STEP(y, m1, z1, a, gt, VI, IT, MASK)                                                     \
    }                                                                                                      \
    for (j = 0; j < L; j++) {                                                                              \
        ms = m0[j] > ms ? m0[j] : ms;                                                                      \
        ms = m1[j] > ms ? m1[j] : ms;                                                                      \
        zs = zs + z0[j] + z1[j];                                                                           \
    }                                                                                                      \
    for (; i < n; i++) {                                                                                   \
        v = p[i] < 0 ? -p[i] : p[i];                                                                       \
        ms = v > ms ? v : ms;                                                                              \
        zs = zs + p[i] * (T) 0;                                                                            \
    }                                                                                                      \
    *bad = zs != zs;                                                                                       \
    return (double) ms;                                                                                    \
}
FC_MAXABS(fc_max_abs_f, float, int, 0x7fffffff)
FC_MAXABS(fc_max_abs_d, double, long long, 0x7fffffffffffffffLL)

/* Whether p[0 .. n) holds an inf or NaN, alone: x - x is +0 for every finite x and NaN otherwise, so the OR of its
   bits over the array is zero exactly when every element is finite.  Four OR chains of one-cycle latency, where
   fc_max_abs's sums of x * 0 wait on the multiply-add latency (common.pxd's nonfinite: the checks of a band or a
   tile a kernel is about to read or has just written). */
#define FC_NONFINITE(NAME, T, IT)                                                                          \
static inline int NAME(const T* p, ptrdiff_t n) {                                                          \
    typedef T V __attribute__((vector_size(FC_NATIVE_BYTES), aligned(sizeof(T))));                        \
    typedef IT VI __attribute__((vector_size(FC_NATIVE_BYTES)));                                           \
    enum { L = FC_NATIVE_BYTES / sizeof(T) };                                                              \
    VI o0 = {0}, o1 = {0}, o2 = {0}, o3 = {0};                                                             \
    V x0, x1, x2, x3;                                                                                      \
    ptrdiff_t i = 0;                                                                                       \
    IT s = 0;                                                                                              \
    T v;                                                                                                   \
    int j;                                                                                                 \
    for (; i + 4 * L <= n; i += 4 * L) {                                                                   \
        x0 = *(const V*) (p + i);                                                                          \
        x1 = *(const V*) (p + i + L);                                                                      \
        x2 = *(const V*) (p + i + 2 * L);                                                                  \
        x3 = *(const V*) (p + i + 3 * L);                                                                  \
        o0 |= (VI) (x0 - x0);                                                                              \
        o1 |= (VI) (x1 - x1);                                                                              \
        o2 |= (VI) (x2 - x2);                                                                              \
        o3 |= (VI) (x3 - x3);                                                                              \
    }                                                                                                      \
    for (; i + L <= n; i += L) {                                                                           \
        x0 = *(const V*) (p + i);                                                                          \
        o0 |= (VI) (x0 - x0);                                                                              \
    }                                                                                                      \
    o0 |= o1 | o2 | o3;                                                                                    \
    for (j = 0; j < L; j++)                                                                                \
        s |= o0[j];                                                                                        \
    for (; i < n; i++) {                                                                                   \
        v = p[i] - p[i];                                                                                   \
        s |= v != v;                                                                                       \
    }                                                                                                      \
    return s != 0;                                                                                         \
}
FC_NONFINITE(fc_nonfinite_f, float, int)
FC_NONFINITE(fc_nonfinite_d, double, long long)

/* A row of n >= 0 elements with its padding, for the band gathers of the direct kernels: d[0 .. lo) and
   d[hi .. n) zero, d[lo .. hi) = s[0 .. hi - lo), in native vectors where the row holds one and each padding run
   fits in one (a zero vector at either end, then the copy over it, its last vector overlapping the one before),
   else by memset / memcpy.  Three libc calls per row had cost the depthwise weight gradient (rows of 58 values)
   5-9 % of its time (AMD EPYC, avx2).  Elements only move. */
#define FC_PADDED_ROW(NAME, T)                                                                             \
static inline void NAME(T* d, const T* s, ptrdiff_t lo, ptrdiff_t hi, ptrdiff_t n) {                       \
    typedef T V __attribute__((vector_size(FC_NATIVE_BYTES), aligned(sizeof(T))));                        \
    enum { L = FC_NATIVE_BYTES / sizeof(T) };                                                              \
    const V z = {0};                                                                                       \
    ptrdiff_t i, m = hi - lo;                                                                              \
    if (m < L || lo > L || n - hi > L) {      /* (m >= L implies n >= L) */                                \
        if (lo > 0) memset(d, 0, lo * sizeof(T));                                                          \
        if (m > 0) memcpy(d + lo, s, m * sizeof(T));                                                       \
        if (n > hi) memset(d + hi, 0, (n - hi) * sizeof(T));                                               \
        return;                                                                                            \
    }                                                                                                      \
    *(V*) d = z;                                                                                           \
    *(V*) (d + n - L) = z;                                                                                 \
    for (i = 0; i + L <= m; i += L)                                                                        \
        *(V*) (d + lo + i) = *(const V*) (s + i);                                                          \
    if (i < m)                                                                                             \
        *(V*) (d + hi - L) = *(const V*) (s + m - L);                                                      \
}
FC_PADDED_ROW(fc_padded_row_f, float)
FC_PADDED_ROW(fc_padded_row_d, double)

/* e[i] = s[2 i], o[i] = s[2 i + 1] for i < n (a row gathered phase-major by a stride of 2): two native vectors
   in, one two-input shuffle out per phase. */
#if FC_NATIVE_BYTES == 64
#define FC_NLIST_F FC_LIST16
#define FC_NLIST_D FC_LIST8
#elif FC_NATIVE_BYTES == 32
#define FC_NLIST_F FC_LIST8
#define FC_NLIST_D FC_LIST4
#else
#define FC_NLIST_F FC_LIST4
#define FC_NLIST_D FC_LIST2
#endif
#define FC_DEINTERLEAVE(NAME, T, IT, LIST)                                                                 \
static inline void NAME(const T* s, T* e, T* o, ptrdiff_t n) {                                             \
    typedef T V __attribute__((vector_size(FC_NATIVE_BYTES), aligned(sizeof(T))));                        \
    typedef IT VI __attribute__((vector_size(FC_NATIVE_BYTES)));                                           \
    enum { L = FC_NATIVE_BYTES / sizeof(T) };                                                              \
    const VI ev = LIST(FC_EVEN, L), od = LIST(FC_ODD, L);                                                  \
    V a, b;                                                                                                \
    ptrdiff_t i = 0;                                                                                       \
    for (; i + L <= n; i += L) {                                                                           \
        a = *(const V*) (s + 2 * i);                                                                       \
        b = *(const V*) (s + 2 * i + L);                                                                   \
        *(V*) (e + i) = __builtin_shuffle(a, b, ev);                                                       \
        *(V*) (o + i) = __builtin_shuffle(a, b, od);                                                       \
    }                                                                                                      \
    for (; i < n; i++) {                                                                                   \
        e[i] = s[2 * i];                                                                                   \
        o[i] = s[2 * i + 1];                                                                               \
    }                                                                                                      \
}
FC_DEINTERLEAVE(fc_deinterleave_f, float, int, FC_NLIST_F)
FC_DEINTERLEAVE(fc_deinterleave_d, double, long long, FC_NLIST_D)

/* FC_IN_REGISTER(v): the vector v is in a register here.  A kernel loads a vector once and uses it in several
   multiply-adds; GCC folds the load into each of them instead (a memory operand per FMA), which turns a block
   bound by its FMAs into one bound by its loads.  Only where a vector is one register (32 bytes with AVX, 64 with
   AVX-512); elsewhere it does nothing. */
#if defined(__GNUC__) && ((FC_VECTOR_BYTES == 32 && defined(__AVX__)) || \
                          (FC_VECTOR_BYTES == 64 && defined(__AVX512F__)))
#define FC_IN_REGISTER(v) __asm__("" : "+v"(v))
#else
#define FC_IN_REGISTER(v) ((void) 0)
#endif

/* A module that defines FC_INLINE_KERNELS before this header has every Cython ``cdef inline`` function defined
   after it inlined at each call: its register-block kernels are called with literal block sizes, and only inlined
   copies unroll their loops and keep the accumulators in registers (GCC's heuristics stop inlining a big body
   after a few call sites). */
#if defined(FC_INLINE_KERNELS) && defined(__GNUC__)
#undef CYTHON_INLINE
#define CYTHON_INLINE inline __attribute__((always_inline))
#endif

#endif
