# cython: language_level=3
"""Direct convolution with the images of the batch as vector lanes (the ``lanes`` algorithm).

The other direct kernels vectorise over output channels or output columns, and both run short of lanes on the
small, few-channel layers of LeNet-class networks (6 to 16 channels of 10x10 to 28x28 pixels).  Here one vector
holds the same pixel of ``L`` images: a *lane group* of 64 bytes (16 float32 or 8 float64 values, one 64-byte
vector on AVX-512, two 32-byte ones on AVX2 and the baseline).  Every arithmetic operation then works on ``L``
independent convolutions, so no channel or column count can leave lanes idle; only a batch that is not a multiple
of ``L`` pads the last group with zero images.

:func:`pack` copies an (N, C, D, H, W) array into lane groups, ``(ceil(N / L), C, Dp, Hp, Wp, L)``, resolving
zero padding (any sign: a negative pad crops) and input dilation there, so the compute kernels never test a bound:

* :func:`forward` -- a task owns (lane group, group, block of KB output channels, output depth, a band of output
  rows) and computes XB output columns at a time (over the input channels in passes whose rows stay in the L1
  cache from one block of columns to the next) with KB x XB (at most ``LN_ACCS``) lane-group accumulators in
  registers (4 x 6, 4 x 5, 6 x 4, 2 x 12, 1 x 12, 6 x 2 or 6 x 1 at 64 bytes, as the layer's channels and width fit
  best): per input channel and tap, the KB weights are broadcast (from a copy of the weights with each block's
  channels side by side, made first) and each of the XB input lane groups is loaded once and multiplied by all of
  them.  Results (plus bias) are scattered to the images of the group.  The input gradient is
  the same kernel on the packed output gradient, dilated by the stride and padded by ``d (k - 1) - p``, with the
  flipped, channel-transposed kernel; its caller says which rows and, per block of columns, which column taps
  read only zeros (they are skipped).
* :func:`grad_weight` -- a task owns (group, block of ``LN_WKB`` output channels, input channel, a run of blocks
  of ``LN_WTB`` kernel taps) and accumulates its weights lane-wise over every lane group, output depth, row and
  column: one output-gradient load per channel and one input load per tap serve the whole block.  It walks the
  rows in passes small enough for the L1 cache, each run by all of its tap blocks (their sums wait in memory
  between passes).  The ``L`` lanes of each weight are added at the end, left to right.

Summation order: an output of :func:`forward` sums input channel, kernel depth, row and column tap in this order,
then adds the bias; a weight of :func:`grad_weight` sums, per lane, lane group, output depth, row and column in
this order, then the 64-byte lane group left to right.  Neither depends on the block sizes, the vector width or
the number of threads (every result is written by one task).
"""
cdef extern from *:
    """
    #define FC_INLINE_KERNELS 1
    """

cdef extern from *:
    """
    typedef float fc_lanes_f __attribute__((vector_size(64), aligned(4)));
    typedef double fc_lanes_d __attribute__((vector_size(64), aligned(8)));
    #if FC_VECTOR_BYTES == 64
    /* 32 registers of 64 bytes: 24 accumulators as 4 channels x 6 columns (or 4 x 5, 6 x 4 for 6 channels,
       2 x 12, 1 x 12 for fewer; 6 x 2 and 6 x 1 where wider blocks would multiply many zeros), the channels'
       broadcast weights and one loaded lane group;
       weight gradient: 4 channels x 5 taps = 20 accumulators, 4 output-gradient groups, 1 input group */
    #define FC_LN_KB 6
    #define FC_LN_ACCS 24
    #define FC_LN_B0K 4
    #define FC_LN_B0X 6
    #define FC_LN_B1K 4
    #define FC_LN_B1X 5
    #define FC_LN_B2K 2
    #define FC_LN_B2X 12
    #define FC_LN_B3K 1
    #define FC_LN_B3X 12
    #define FC_LN_B4K 6
    #define FC_LN_B4X 4
    #define FC_LN_B5K 6
    #define FC_LN_B5X 1
    #define FC_LN_B6K 6
    #define FC_LN_B6X 2
    #define FC_LN_NBLOCKS 7
    #define FC_LN_WKB 4
    #define FC_LN_WTB 5
    #else
    /* 16 registers of 32 bytes, a lane group in two: 2 x 3, 2 x 2, 1 x 6, 1 x 4, 3 x 2 accumulator groups;
       weight gradient 2 x 3 (12 registers, 2 output-gradient and 1 input register per half lane group) */
    #define FC_LN_KB 6
    #define FC_LN_ACCS 6
    #define FC_LN_B0K 2
    #define FC_LN_B0X 3
    #define FC_LN_B1K 2
    #define FC_LN_B1X 2
    #define FC_LN_B2K 1
    #define FC_LN_B2X 6
    #define FC_LN_B3K 1
    #define FC_LN_B3X 4
    #define FC_LN_B4K 3
    #define FC_LN_B4X 2
    #define FC_LN_B5K 6
    #define FC_LN_B5X 1
    /* (no 6 x 2 block: its 24 accumulator registers would spill; the kernel's seventh block is never offered) */
    #define FC_LN_B6K 6
    #define FC_LN_B6X 1
    #define FC_LN_NBLOCKS 6
    #define FC_LN_WKB 2
    #define FC_LN_WTB 3
    #endif
    """
    enum:
        LN_KB "FC_LN_KB"
        LN_ACCS "FC_LN_ACCS"
        LN_B0K "FC_LN_B0K"
        LN_B0X "FC_LN_B0X"
        LN_B1K "FC_LN_B1K"
        LN_B1X "FC_LN_B1X"
        LN_B2K "FC_LN_B2K"
        LN_B2X "FC_LN_B2X"
        LN_B3K "FC_LN_B3K"
        LN_B3X "FC_LN_B3X"
        LN_B4K "FC_LN_B4K"
        LN_B4X "FC_LN_B4X"
        LN_B5K "FC_LN_B5K"
        LN_B5X "FC_LN_B5X"
        LN_B6K "FC_LN_B6K"
        LN_B6X "FC_LN_B6X"
        LN_NBLOCKS "FC_LN_NBLOCKS"
        LN_WKB "FC_LN_WKB"
        LN_WTB "FC_LN_WTB"

cdef extern from *:
    """
    #include "simd.h"     /* the butterfly transposes (this block comes before Cython's own includes) */
    /* Transpose of a lane-group tile into image rows: src holds n lane groups (n = 16 float32 or 8 float64
       values each) of consecutive output positions; image j's n consecutive positions (plus bias) are stored at
       dst[j] (j < nl), by the butterfly transposes of simd.h.  The other way (packing, fc_untile_*): image j's n
       consecutive positions at src[j] (j < nl; zeros for the lanes of missing images) become n lane groups
       stored contiguously at dst -- the same transpose, being its own inverse. */
    #if FC_VECTOR_BYTES == 64
    /* (Loads and stores through the vector type, aligned as its element, and missing images read a zero row:
       packing with memcpy and a branch per image went through the stack.) */
    #define FC_TILE(NAME, T, VT, N, TRANSPOSE) \
    static inline void NAME(const T* src, T** dst, int nl, T bias) { \
        VT r[N]; \
        for (int i = 0; i < N; i++) r[i] = *(const VT*) (src + i * N); \
        TRANSPOSE(r) \
        for (int j = 0; j < nl; j++) *(VT*) dst[j] = r[j] + bias; \
    }
    /* DST: the type of dst; AT: where lane group j goes (contiguous at dst, or to the pointers dst[j]) */
    #define FC_UNTILE(NAME, T, VT, N, TRANSPOSE, DST, AT) \
    static inline void NAME(const T* const* src, DST dst, int nl) { \
        static const T zero[N] __attribute__((aligned(64))); \
        VT r[N]; \
        for (int j = 0; j < N; j++) r[j] = *(const VT*) (j < nl ? src[j] : zero); \
        TRANSPOSE(r) \
        for (int j = 0; j < N; j++) *(VT*) (AT) = r[j]; \
    }
    FC_TILE(fc_tile_f, float, fc_lanes_f, 16, FC_TRANSPOSE_F16)
    FC_TILE(fc_tile_d, double, fc_lanes_d, 8, FC_TRANSPOSE_Q8)
    FC_UNTILE(fc_untile_f, float, fc_lanes_f, 16, FC_TRANSPOSE_F16, float*, dst + j * 16)
    FC_UNTILE(fc_untile_d, double, fc_lanes_d, 8, FC_TRANSPOSE_Q8, double*, dst + j * 8)
    FC_UNTILE(fc_untile_to_f, float, fc_lanes_f, 16, FC_TRANSPOSE_F16, float* const*, dst[j])
    FC_UNTILE(fc_untile_to_d, double, fc_lanes_d, 8, FC_TRANSPOSE_Q8, double* const*, dst[j])
    #else
    /* 32-byte vectors: the n x n tile as four n/2 x n/2 quadrants of native vectors, each transposed alone (GCC
       lowers a shuffle of two 64-byte vectors on AVX2 to scalar moves through memory). */
    typedef float fc_half_f __attribute__((vector_size(32), aligned(4)));
    typedef double fc_half_d __attribute__((vector_size(32), aligned(8)));
    /* quadrant (ph, lh): positions ph * H .. ph * H + H - 1 of lanes lh * H .. lh * H + H - 1 */
    /* (Loads and stores through the vector type, whose alignment is its element's: copies through memcpy into
       the register array were compiled as 16-byte halves through the stack, which stalled every load.) */
    #define FC_TILE(NAME, T, VT, N, TRANSPOSE) \
    static inline void NAME(const T* src, T** dst, int nl, T bias) { \
        enum { H = N / 2 }; \
        VT r[H]; \
        for (int lh = 0; lh < 2; lh++) for (int ph = 0; ph < 2; ph++) { \
            for (int i = 0; i < H; i++) r[i] = *(const VT*) (src + (ph * H + i) * N + lh * H); \
            TRANSPOSE(r) \
            for (int j = 0; j < H && lh * H + j < nl; j++) *(VT*) (dst[lh * H + j] + ph * H) = r[j] + bias; \
        } \
    }
    /* quadrant (ph, lh) of lane group ph * H + j: at dst + (ph * H + j) * N + lh * H, or dst[ph * H + j] + lh * H */
    #define FC_UNTILE(NAME, T, VT, N, TRANSPOSE, DST, AT) \
    static inline void NAME(const T* const* src, DST dst, int nl) { \
        enum { H = N / 2 }; \
        static const T zero[N] __attribute__((aligned(64))); \
        VT r[H]; \
        for (int lh = 0; lh < 2; lh++) for (int ph = 0; ph < 2; ph++) { \
            for (int i = 0; i < H; i++) r[i] = *(const VT*) (lh * H + i < nl ? src[lh * H + i] + ph * H : zero); \
            TRANSPOSE(r) \
            for (int j = 0; j < H; j++) *(VT*) (AT) = r[j]; \
        } \
    }
    FC_TILE(fc_tile_f, float, fc_half_f, 16, FC_TRANSPOSE_F8)
    FC_TILE(fc_tile_d, double, fc_half_d, 8, FC_TRANSPOSE_Q4)
    FC_UNTILE(fc_untile_f, float, fc_half_f, 16, FC_TRANSPOSE_F8, float*, dst + (ph * H + j) * 16 + lh * H)
    FC_UNTILE(fc_untile_d, double, fc_half_d, 8, FC_TRANSPOSE_Q4, double*, dst + (ph * H + j) * 8 + lh * H)
    FC_UNTILE(fc_untile_to_f, float, fc_half_f, 16, FC_TRANSPOSE_F8, float* const*, dst[ph * H + j] + lh * H)
    FC_UNTILE(fc_untile_to_d, double, fc_half_d, 8, FC_TRANSPOSE_Q4, double* const*, dst[ph * H + j] + lh * H)
    #endif
    /* A partial tile: the first n (< N) positions of each image row, through a zero-padded copy and the full
       transpose; only n lane groups are stored (AT as above). */
    #define FC_UNTILE_PART(NAME, FULL, T, N, DST, AT) \
    static inline void NAME(const T* const* src, DST dst, int nl, int n) { \
        T rows[N][N] __attribute__((aligned(64))); \
        T tile[N * N] __attribute__((aligned(64))); \
        const T* ptrs[N]; \
        __builtin_memset(rows, 0, sizeof rows); \
        for (int j = 0; j < nl; j++) { __builtin_memcpy(rows[j], src[j], n * sizeof(T)); ptrs[j] = rows[j]; } \
        FULL(ptrs, tile, nl); \
        for (int j = 0; j < n; j++) __builtin_memcpy(AT, tile + j * N, N * sizeof(T)); \
    }
    FC_UNTILE_PART(fc_untile_part_f, fc_untile_f, float, 16, float*, dst + j * 16)
    FC_UNTILE_PART(fc_untile_part_d, fc_untile_d, double, 8, double*, dst + j * 8)
    FC_UNTILE_PART(fc_untile_part_to_f, fc_untile_f, float, 16, float* const*, dst[j])
    FC_UNTILE_PART(fc_untile_part_to_d, fc_untile_d, double, 8, double* const*, dst[j])
    """
    void fc_tile_f(const float* src, float** dst, int nl, float bias) noexcept nogil
    void fc_tile_d(const double* src, double** dst, int nl, double bias) noexcept nogil
    void fc_untile_f(const float** src, float* dst, int nl) noexcept nogil
    void fc_untile_d(const double** src, double* dst, int nl) noexcept nogil
    void fc_untile_part_f(const float** src, float* dst, int nl, int n) noexcept nogil
    void fc_untile_part_d(const double** src, double* dst, int nl, int n) noexcept nogil
    void fc_untile_to_f(const float** src, float** dst, int nl) noexcept nogil
    void fc_untile_to_d(const double** src, double** dst, int nl) noexcept nogil
    void fc_untile_part_to_f(const float** src, float** dst, int nl, int n) noexcept nogil
    void fc_untile_part_to_d(const double** src, double** dst, int nl, int n) noexcept nogil

from cython.parallel cimport parallel, prange
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from fastconv._kernels.common cimport (FC_LANE_VECS, Geometry, VECTOR_BYTES, check_scratch, float_t,
                                       in_register_d, in_register_f, nonfinite, scratch, vd, vec_t, vf)

LANE_BYTES = 64      # a lane group (fc_lanes_f / fc_lanes_d above)


def block_sizes():
    """The forward register blocks of this build as (output channels, output columns) pairs (their index is the
    ``block`` argument of :func:`forward`), and the (output channels, kernel taps) of the weight-gradient block."""
    return (((LN_B0K, LN_B0X), (LN_B1K, LN_B1X), (LN_B2K, LN_B2X), (LN_B3K, LN_B3X), (LN_B4K, LN_B4X),
             (LN_B5K, LN_B5X), (LN_B6K, LN_B6X))[:LN_NBLOCKS],
            (LN_WKB, LN_WTB))


def vector_bytes():
    return VECTOR_BYTES


# ----------------------------------------------------------------------------------------------- packing
cdef inline void _untile_run(const float_t** srcs, Py_ssize_t nl, Py_ssize_t n, Py_ssize_t L,
                             float_t* d) noexcept nogil:
    """d = n lane groups: positions 0 .. n-1 of the rows srcs[l] of the nl images (the pointers advance), through
    register tiles of L positions; past the last full tile, a run of at least L positions ends with a full tile
    that overlaps the one before it (its first lane groups are written twice, with the same values), a shorter
    run with a zero-padded tile."""
    cdef Py_ssize_t i = 0, l, back
    while i < n:
        if i + L > n and n >= L:        # the overlapping last tile: back to position n - L
            back = i - (n - L)
            for l in range(nl):
                srcs[l] = srcs[l] - back
            i = n - L
        if i + L <= n:
            if float_t is float:
                fc_untile_f(<const float**> srcs, <float*> (d + i * L), <int> nl)
            else:
                fc_untile_d(<const double**> srcs, <double*> (d + i * L), <int> nl)
        elif float_t is float:
            fc_untile_part_f(<const float**> srcs, <float*> (d + i * L), <int> nl, <int> (n - i))
        else:
            fc_untile_part_d(<const double**> srcs, <double*> (d + i * L), <int> nl, <int> (n - i))
        for l in range(nl):
            srcs[l] = srcs[l] + L
        i = i + L


cdef inline void _untile_padded(const float_t* const* rows, Py_ssize_t nl, Py_ssize_t nrows, Py_ssize_t W,
                                Py_ssize_t L, float_t* d, Py_ssize_t dstride, const float_t** srcs,
                                float_t** dsts) noexcept nogil:
    """Rows 0 .. nrows-1 of the nl images (consecutive, W positions each, from ``rows[l]``) to the lane groups at
    d + i * dstride (row i), as one run of nrows * W positions whose tiles cross rows: each tile stores its L lane
    groups where their positions go (``dsts``); the last tile overlaps the one before it as in
    :func:`_untile_run`.  ``srcs`` and ``dsts``: L pointers of scratch."""
    cdef Py_ssize_t n = nrows * W
    cdef Py_ssize_t i = 0, j, l, m, row, col
    while i < n:
        if i + L > n and n >= L:
            i = n - L
        m = min(L, n - i)
        row = i // W
        col = i - row * W
        for j in range(m):
            dsts[j] = d + row * dstride + col * L
            col = col + 1
            if col == W:
                col = 0
                row = row + 1
        for l in range(nl):
            srcs[l] = rows[l] + i
        if m == L:
            if float_t is float:
                fc_untile_to_f(<const float**> srcs, <float**> dsts, <int> nl)
            else:
                fc_untile_to_d(<const double**> srcs, <double**> dsts, <int> nl)
        elif float_t is float:
            fc_untile_part_to_f(<const float**> srcs, <float**> dsts, <int> nl, <int> m)
        else:
            fc_untile_part_to_d(<const double**> srcs, <double**> dsts, <int> nl, <int> m)
        i = i + m


def pack(const float_t[:, :, :, :, ::1] x, float_t[:, :, :, :, :, ::1] xp, Py_ssize_t pd, Py_ssize_t ph,
         Py_ssize_t pw, Py_ssize_t ld, Py_ssize_t lh, Py_ssize_t lw, int nthreads, bint all_rows=True):
    """xp[b, c, zd, zh, zw, l] = x[b * L + l, c, (zd - pd) / ld, (zh - ph) / lh, (zw - pw) / lw] where every
    division is exact and lands inside x, else 0 (padding, holes of the input dilation, images past N).  Every
    element of ``xp`` is written, except, with ``all_rows`` False, the rows (along D or H) of padding and holes,
    which are left as they were (for a caller whose kernel skips them: the input gradient).  Without input
    dilation along W, L consecutive columns of the L images of a lane group are transposed in registers (one tile
    of L lane groups; a run of whole input rows as one run of positions, its tiles crossing rows; the last tile of
    a run overlapping the one before it, or zero-padded when the run is shorter than L); with input dilation along
    W, element by element."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], D = x.shape[2], H = x.shape[3], W = x.shape[4]
    cdef Py_ssize_t NB = xp.shape[0], Dp = xp.shape[2], Hp = xp.shape[3], Wp = xp.shape[4], L = xp.shape[5]
    cdef Py_ssize_t task, b, c, zd, zh, idd, ihh, iw, l, nl, w0, w1, lo, hi, run
    # every packed row with data holds its whole input row (no dilation, the padding around it): a run of
    # consecutive rows is packed through full register tiles, as one row
    cdef bint whole = lh == 1 and lw == 1 and pw >= 0 and pw + W <= Wp
    cdef float_t* dst
    cdef float_t* drow
    cdef const float_t* src
    cdef const float_t** srcs
    cdef const float_t** rows
    cdef float_t** dsts
    cdef int failed[1]
    failed[0] = 0
    # input columns that land inside a row: 0 <= iw * lw + pw < Wp
    w0 = 0 if pw >= 0 else (-pw + lw - 1) // lw
    w1 = min(W, (Wp - pw + lw - 1) // lw) if Wp > pw else 0
    if NB * C == 0:
        return
    with nogil, parallel(num_threads=nthreads):
        srcs = <const float_t**> scratch(3 * L * sizeof(float_t*), failed)
        rows = srcs + L if srcs != NULL else NULL
        dsts = <float_t**> (srcs + 2 * L) if srcs != NULL else NULL
        # one task per (lane group, channel): a contiguous block of xp, written by one thread; a row is zeroed
        # only where the copy does not write it (padding, holes, missing images)
        for task in prange(NB * C, schedule='static'):
            if srcs == NULL:
                continue
            c = task % C
            b = task // C
            dst = &xp[b, c, 0, 0, 0, 0]
            nl = min(L, N - b * L)
            for zd in range(Dp):
                idd = zd - pd
                zh = 0
                while zh < Hp:
                    ihh = zh - ph
                    drow = dst + (zd * Hp + zh) * Wp * L
                    zh = zh + 1
                    if (idd < 0 or idd % ld != 0 or idd // ld >= D or ihh < 0 or ihh % lh != 0
                            or ihh // lh >= H):
                        if all_rows:
                            memset(drow, 0, Wp * L * sizeof(float_t))
                        continue
                    if w1 <= w0:
                        memset(drow, 0, Wp * L * sizeof(float_t))
                        continue
                    if whole:
                        # whole input rows, consecutive in x: the run of them through full register tiles
                        run = min(Hp - zh + 1, H - ihh)
                        for l in range(nl):
                            srcs[l] = &x[b * L + l, c, idd // ld, ihh, 0]
                        if W == Wp:         # no padding: consecutive in xp too
                            _untile_run(srcs, nl, run * W, L, drow)
                        else:
                            for l in range(run):
                                if pw > 0:
                                    memset(drow + l * Wp * L, 0, pw * L * sizeof(float_t))
                                if pw + W < Wp:
                                    memset(drow + (l * Wp + pw + W) * L, 0, (Wp - pw - W) * L * sizeof(float_t))
                            for l in range(nl):
                                rows[l] = &x[b * L + l, c, idd // ld, ihh, 0]
                            _untile_padded(rows, nl, run, W, L, drow + pw * L, Wp * L, srcs, dsts)
                        zh = zh + run - 1
                    elif lw == 1:
                        lo = (pw + w0) * L
                        hi = (pw + w1) * L
                        if lo > 0:
                            memset(drow, 0, lo * sizeof(float_t))
                        if hi < Wp * L:
                            memset(drow + hi, 0, (Wp * L - hi) * sizeof(float_t))
                        for l in range(nl):
                            srcs[l] = &x[b * L + l, c, idd // ld, ihh // lh, w0]
                        _untile_run(srcs, nl, w1 - w0, L, drow + (pw + w0) * L)
                    else:
                        memset(drow, 0, Wp * L * sizeof(float_t))
                        drow = drow + pw * L
                        for l in range(nl):
                            src = &x[b * L + l, c, idd // ld, ihh // lh, 0]
                            for iw in range(w0, w1):
                                drow[iw * lw * L + l] = src[iw]
        free(srcs)
    check_scratch(failed[0], "lanes packing", 3 * L * sizeof(float_t*))


# ----------------------------------------------------------------------------------------------- forward
cdef inline void _fwd_block(const float_t* base, const Py_ssize_t* roff, const Py_ssize_t* woff, Py_ssize_t nrs,
                            Py_ssize_t Cg, Py_ssize_t cstride, const float_t* wblk, Py_ssize_t wcstride,
                            Py_ssize_t T, Py_ssize_t dwL, Py_ssize_t swL, float_t* res, Py_ssize_t kstride, bint acc,
                            int KB, int XB, vec_t* tag) noexcept nogil:
    """res[(kk * kstride + x) * L + l] = sum over c < Cg, (r, s) taps q < nrs, t < T of
    wblk[((c * wcstride + woff[q]) + t) * KB + kk] * base[c * cstride + roff[q] + x * swL + t * dwL + l], added to
    what ``res`` holds there with ``acc`` (the sums continue from it: a caller that runs the channels in passes
    gets the bits of one pass).  ``wblk``: the block's weights packed with its KB channels innermost (see
    :func:`forward`), so that a tap's KB broadcasts read one run.

    KB x XB lane-group accumulators (at most LN_ACCS), each FC_LANE_VECS native vectors (a 64-byte lane group is
    two registers below AVX-512: as one 64-byte GCC vector in an array, GCC kept the accumulators in memory);
    callers pass literal block sizes (the loops unroll, the accumulators stay in registers): the KB weights of a
    tap are broadcast once, then each of the XB input lane groups is loaded once and multiplied by all of them;
    a block of one column loads its input lane group first and broadcasts the weights one at a time."""
    cdef vec_t a[LN_ACCS * FC_LANE_VECS]
    cdef vec_t wv[LN_KB]
    cdef vec_t xr[FC_LANE_VECS]
    cdef vec_t z, xv, wb
    cdef Py_ssize_t c, q, t, x, kk, h
    cdef const float_t* row
    cdef const float_t* wk
    memset(&z, 0, sizeof(vec_t))
    if acc:
        for kk in range(KB):
            for x in range(XB):
                for h in range(FC_LANE_VECS):
                    a[(kk * XB + x) * FC_LANE_VECS + h] = (<vec_t*> res)[(kk * kstride + x) * FC_LANE_VECS + h]
    else:
        for x in range(KB * XB * FC_LANE_VECS):
            a[x] = z
    for c in range(Cg):
        for q in range(nrs):
            row = base + c * cstride + roff[q]
            wk = wblk + (c * wcstride + woff[q]) * KB
            for t in range(T):
                if XB == 1:
                    for h in range(FC_LANE_VECS):
                        xr[h] = (<const vec_t*> (row + t * dwL))[h]
                    for kk in range(KB):
                        wb = wk[t * KB + kk] - z
                        for h in range(FC_LANE_VECS):
                            a[kk * FC_LANE_VECS + h] += wb * xr[h]
                    continue
                for kk in range(KB):
                    wv[kk] = wk[t * KB + kk] - z      # broadcast (x - 0 folds to x)
                for x in range(XB):
                    for h in range(FC_LANE_VECS):
                        xv = (<const vec_t*> (row + x * swL + t * dwL))[h]
                        for kk in range(KB):
                            a[(kk * XB + x) * FC_LANE_VECS + h] += wv[kk] * xv
    for kk in range(KB):
        for x in range(XB):
            for h in range(FC_LANE_VECS):
                (<vec_t*> res)[(kk * kstride + x) * FC_LANE_VECS + h] = a[(kk * XB + x) * FC_LANE_VECS + h]


cdef inline void _fwd_dispatch(const float_t* base, const Py_ssize_t* roff, const Py_ssize_t* woff, Py_ssize_t nrs,
                               Py_ssize_t Cg, Py_ssize_t cstride, const float_t* wblk, Py_ssize_t wcstride,
                               Py_ssize_t T, Py_ssize_t dwL, Py_ssize_t swL, float_t* res, Py_ssize_t kstride,
                               bint acc, int blk, vec_t* tag) noexcept nogil:
    # literal block sizes for the inlined block (its loops unroll and its accumulators stay in registers); a
    # single channel takes half the accumulators (GCC does not unroll a loop of 24, and 12 columns already hide
    # the latency of the FMA chain); ``tag``: the vector type of float_t
    if (float_t is float and vec_t is vf) or (float_t is double and vec_t is vd):    # matching types only
        if blk == 0:
            _fwd_block(base, roff, woff, nrs, Cg, cstride, wblk, wcstride, T, dwL, swL, res, kstride, acc,
                       LN_B0K, LN_B0X, tag)
        elif blk == 1:
            _fwd_block(base, roff, woff, nrs, Cg, cstride, wblk, wcstride, T, dwL, swL, res, kstride, acc,
                       LN_B1K, LN_B1X, tag)
        elif blk == 2:
            _fwd_block(base, roff, woff, nrs, Cg, cstride, wblk, wcstride, T, dwL, swL, res, kstride, acc,
                       LN_B2K, LN_B2X, tag)
        elif blk == 3:
            _fwd_block(base, roff, woff, nrs, Cg, cstride, wblk, wcstride, T, dwL, swL, res, kstride, acc,
                       LN_B3K, LN_B3X, tag)
        elif blk == 4:
            _fwd_block(base, roff, woff, nrs, Cg, cstride, wblk, wcstride, T, dwL, swL, res, kstride, acc,
                       LN_B4K, LN_B4X, tag)
        elif blk == 5 or LN_NBLOCKS < 7:    # 32-byte builds have no seventh block: no code for it
            _fwd_block(base, roff, woff, nrs, Cg, cstride, wblk, wcstride, T, dwL, swL, res, kstride, acc,
                       LN_B5K, LN_B5X, tag)
        else:
            _fwd_block(base, roff, woff, nrs, Cg, cstride, wblk, wcstride, T, dwL, swL, res, kstride, acc,
                       LN_B6K, LN_B6X, tag)


def forward(const float_t[:, :, :, :, :, ::1] xp, const float_t[:, :, :, :, ::1] w, const float_t[::1] bias,
            float_t[:, :, :, :, ::1] out, const unsigned char[::1] dvalid, const unsigned char[::1] hvalid,
            const Py_ssize_t[::1] taps, Geometry geom, *, bint has_bias, int block, int rows_per_task, int nthreads,
            bint check=False, int channels_per_pass=0, Py_ssize_t first_column=0):
    """out (N, K, OD, OH, OW) = the valid correlation of the packed input ``xp`` (see :func:`pack`) with the
    weights ``w`` (K, Cg, R, S, T) at the strides and dilations of ``geom`` (its paddings are already in ``xp``),
    plus ``bias``, in the register block ``block`` (an index into :func:`block_sizes`; a block's channels past K
    repeat its last one, and their sums are dropped).  Kernel taps (r, s) that read a packed row whose
    ``dvalid`` (by depth) or ``hvalid`` (by row) flag is 0 -- rows of zeros the caller does not want multiplied --
    are skipped, and the column block ``j`` (output columns ``j * XB`` to ``j * XB + XB - 1``) runs only the
    column taps ``taps[2 * j]`` to ``taps[2 * j] + taps[2 * j + 1] - 1`` (the caller leaves out those that read
    only columns of zeros for every output column of the block).  A task computes ``rows_per_task`` output rows
    of one lane group and channel block (neighbouring tasks write far-apart outputs: no two threads share a cache
    line but at the edges).  A row runs its column blocks over ``channels_per_pass`` input channels at a time (0:
    all), the block's sums kept in the task's buffer between passes: the input channels a block reads stay in the
    L1 cache for the next block, which reads most of them again (the order of the sums is unchanged).  ``xp`` must
    be wide enough for whole blocks of XB columns (its rows start at column ``first_column`` of the correlation's
    input: the caller left out columns no block reads), ``taps`` hold two entries
    per block within ``[0, T]``; all arguments are validated by the caller.  With ``check``, returns whether
    every sum is finite (each task checks its sums while they are in its thread's cache; the bias is not added
    to them: the caller's output is then finite when it has no bias), else True."""
    cdef Py_ssize_t N = out.shape[0], K = out.shape[1], OD = out.shape[2], OH = out.shape[3], OW = out.shape[4]
    cdef Py_ssize_t NB = xp.shape[0], C = xp.shape[1], Dp = xp.shape[2], Hp = xp.shape[3], Wp = xp.shape[4]
    cdef Py_ssize_t L = xp.shape[5]
    cdef Py_ssize_t G = geom.groups, Cg = C // G, Kg = K // G
    cdef Py_ssize_t R = geom.kd, S = geom.kh, T = geom.kw
    cdef Py_ssize_t sd = geom.sd, sh = geom.sh, sw = geom.sw, dd = geom.dd, dh = geom.dh, dw = geom.dw
    cdef int blk = min(max(block, 0), LN_NBLOCKS - 1)
    cdef int KB = (LN_B0K, LN_B1K, LN_B2K, LN_B3K, LN_B4K, LN_B5K, LN_B6K)[blk]
    cdef Py_ssize_t XB = (LN_B0X, LN_B1X, LN_B2X, LN_B3X, LN_B4X, LN_B5X, LN_B6X)[blk]
    cdef Py_ssize_t nkb = (Kg + KB - 1) // KB
    cdef Py_ssize_t wkstride = Cg * R * S * T
    cdef Py_ssize_t cstride = Dp * Hp * Wp * L
    cdef Py_ssize_t rpt = max(1, min(rows_per_task, OH))
    cdef Py_ssize_t nbands = (OH + rpt - 1) // rpt
    cdef Py_ssize_t ntask = NB * G * nkb * OD * nbands
    cdef Py_ssize_t plen = rpt * OW + XB          # output positions of a task's rows, and a block's overrun
    cdef Py_ssize_t res_len = KB * plen * L
    cdef Py_ssize_t lstride = K * OD * OH * OW
    cdef Py_ssize_t cpp = Cg if channels_per_pass <= 0 else min(channels_per_pass, Cg)
    cdef Py_ssize_t task, b, g, kb, od, oh, band, n0, nl, k0, nk, ox0, kk, x, l, xblk, oh0, oh1, npos, p0, t0, c0
    cdef float_t* res
    cdef float_t** dsts
    cdef Py_ssize_t* roff
    cdef Py_ssize_t* woff
    cdef Py_ssize_t r, s, nq, i
    cdef const float_t* base
    cdef const float_t* src
    cdef float_t bval
    # the weights by block, each block's KB channels innermost: wp[((g * nkb + kb) * Cg + c) * RST + tap][kk] (the
    # channels past a group's last repeat it; their sums are dropped)
    cdef Py_ssize_t wplen = G * nkb * wkstride * KB
    cdef float_t* wp
    cdef const float_t* wsrc = &w[0, 0, 0, 0, 0] if w.shape[0] > 0 and wkstride > 0 else NULL
    cdef vf* tf = NULL      # the vector type of float_t, for _fwd_dispatch
    cdef vd* td = NULL
    cdef int failed[1]
    cdef int anybad[1]
    failed[0] = 0
    anybad[0] = 0
    if ntask == 0:
        return True
    wp = <float_t*> malloc(max(wplen, 1) * sizeof(float_t))
    if wp == NULL:
        raise MemoryError("lanes convolution: could not allocate %d bytes of packed weights"
                          % (wplen * sizeof(float_t)))
    with nogil:
        for i in range(G * nkb * Cg):      # (g, kb, c)
            c0 = i % Cg
            kb = (i // Cg) % nkb
            g = i // (Cg * nkb)
            for kk in range(KB):
                k0 = g * Kg + min(kb * KB + kk, Kg - 1)
                for x in range(R * S * T):
                    wp[(i * R * S * T + x) * KB + kk] = wsrc[(k0 * Cg + c0) * R * S * T + x]
    with nogil, parallel(num_threads=nthreads):
        res = <float_t*> scratch(res_len * sizeof(float_t), failed)
        roff = <Py_ssize_t*> scratch(2 * R * S * sizeof(Py_ssize_t), failed)     # per thread
        woff = roff + R * S if roff != NULL else NULL
        dsts = <float_t**> scratch(L * sizeof(float_t*), failed)
        for task in prange(ntask, schedule='dynamic'):
            if res != NULL and roff != NULL and dsts != NULL:
                band = task % nbands
                od = (task // nbands) % OD
                kb = (task // (nbands * OD)) % nkb
                g = (task // (nbands * OD * nkb)) % G
                b = task // (nbands * OD * nkb * G)
                n0 = b * L
                nl = min(L, N - n0)
                k0 = g * Kg + kb * KB
                nk = min(KB, Kg - kb * KB)
                oh0 = band * rpt
                oh1 = min(OH, oh0 + rpt)
                # the task's rows into res, lane groups by channel and output position (row-major); a block's
                # columns past the row are overwritten by the next row's first block, or land in the slack
                for oh in range(oh0, oh1):
                    base = &xp[b, g * Cg, od * sd, oh * sh, 0, 0]
                    # the (r, s) taps of this output row that read rows to multiply
                    nq = 0
                    for r in range(R):
                        if dvalid[od * sd + r * dd]:
                            for s in range(S):
                                if hvalid[oh * sh + s * dh]:
                                    roff[nq] = (r * dd * Hp + s * dh) * Wp * L
                                    woff[nq] = (r * S + s) * T
                                    nq = nq + 1
                    c0 = 0
                    while c0 == 0 or c0 < Cg:
                        for xblk in range((OW + XB - 1) // XB):
                            ox0 = xblk * XB
                            t0 = taps[2 * xblk]
                            if float_t is float:
                                _fwd_dispatch(base + c0 * cstride + (ox0 * sw + t0 * dw - first_column) * L, roff,
                                              woff, nq, min(cpp, Cg - c0), cstride,
                                              wp + (((g * nkb + kb) * Cg + c0) * R * S * T + t0) * KB, R * S * T,
                                              taps[2 * xblk + 1], dw * L, sw * L,
                                              res + ((oh - oh0) * OW + ox0) * L, plen, c0 > 0, blk, tf)
                            else:
                                _fwd_dispatch(base + c0 * cstride + (ox0 * sw + t0 * dw - first_column) * L, roff,
                                              woff, nq, min(cpp, Cg - c0), cstride,
                                              wp + (((g * nkb + kb) * Cg + c0) * R * S * T + t0) * KB, R * S * T,
                                              taps[2 * xblk + 1], dw * L, sw * L,
                                              res + ((oh - oh0) * OW + ox0) * L, plen, c0 > 0, blk, td)
                        c0 = c0 + cpp
                # then to the images: the rows oh0 .. oh1 - 1 of one (image, channel) are contiguous in out, so
                # tiles of L positions x L lanes are transposed in registers and stored as image rows
                npos = (oh1 - oh0) * OW
                for kk in range(nk):
                    bval = bias[k0 + kk] if has_bias else 0
                    for l in range(nl):
                        dsts[l] = &out[n0 + l, k0 + kk, od, oh0, 0]
                    p0 = 0
                    while p0 + L <= npos:
                        if float_t is float:
                            fc_tile_f(res + (kk * plen + p0) * L, dsts, <int> nl, bval)
                        else:
                            fc_tile_d(res + (kk * plen + p0) * L, dsts, <int> nl, bval)
                        for l in range(nl):
                            dsts[l] = dsts[l] + L
                        p0 = p0 + L
                    for l in range(nl):
                        src = res + (kk * plen + p0) * L + l
                        for x in range(npos - p0):
                            dsts[l][x] = src[x * L] + bval
                    if check and nonfinite(res + kk * plen * L, npos * L):
                        anybad[0] = 1
        free(res)
        free(roff)
        free(dsts)
    free(wp)
    check_scratch(failed[0], "lanes convolution", res_len * sizeof(float_t))
    return not anybad[0]


# ----------------------------------------------------------------------------------------------- weight gradient
cdef inline void _wgrad_block(const float_t* xr0, const float_t* gr0, Py_ssize_t nrows, Py_ssize_t OW,
                              Py_ssize_t xhs, Py_ssize_t swL, Py_ssize_t L, const Py_ssize_t* kofs,
                              const Py_ssize_t* toff, float_t* res, bint acc, vec_t* tag) noexcept nogil:
    """res[(kk * LN_WTB + tt) * L + l] (plus what it holds, with ``acc``) += sum over output rows oh < nrows and
    columns ow of gr0[kofs[kk] + (oh * OW + ow) * L + l] * xr0[oh * xhs + toff[tt] + ow * swL + l], in lane
    groups of FC_LANE_VECS native vectors (see :func:`_fwd_block`), rows and columns in order."""
    cdef vec_t a[LN_WKB * LN_WTB * FC_LANE_VECS]
    cdef vec_t gv[LN_WKB]
    cdef vec_t z, xv
    cdef Py_ssize_t oh, ow, kk, tt, h
    cdef const float_t* xr
    cdef const float_t* gr
    memset(&z, 0, sizeof(vec_t))
    # (in_register: as plain copy loops, GCC turned both into string copies through a copy on the stack, 10 % of
    # the samples in LeNet's 6 -> 16 weight gradient; without them that kernel took 0.91 of the time, 2 threads,
    # and 0.96 on one: Xeon, avx512, both builds interleaved in one process)
    for tt in range(LN_WKB * LN_WTB * FC_LANE_VECS):
        a[tt] = (<vec_t*> res)[tt] if acc else z
        if vec_t is vf:
            in_register_f(a[tt])
        else:
            in_register_d(a[tt])
    for oh in range(nrows):
        xr = xr0 + oh * xhs
        gr = gr0 + oh * OW * L
        for ow in range(OW):
            # a native vector at a time: its WKB output-gradient vectors stay in registers beside the accumulators
            # (all halves of a lane group at once were one register too many below AVX-512)
            for h in range(FC_LANE_VECS):
                for kk in range(LN_WKB):
                    gv[kk] = (<const vec_t*> (gr + kofs[kk] + ow * L))[h]
                for tt in range(LN_WTB):
                    xv = (<const vec_t*> (xr + toff[tt] + ow * swL))[h]
                    if vec_t is vf:
                        in_register_f(xv)
                    else:
                        in_register_d(xv)
                    for kk in range(LN_WKB):
                        a[(kk * LN_WTB + tt) * FC_LANE_VECS + h] += gv[kk] * xv
    for tt in range(LN_WKB * LN_WTB * FC_LANE_VECS):
        if vec_t is vf:
            in_register_f(a[tt])
        else:
            in_register_d(a[tt])
        (<vec_t*> res)[tt] = a[tt]


def grad_weight(const float_t[:, :, :, :, :, ::1] xp, const float_t[:, :, :, :, :, ::1] gyp,
                float_t[:, :, :, :, ::1] out, const Py_ssize_t[::1] toff, Geometry geom, int nthreads,
                int tap_groups=1, int rows_per_pass=0):
    """out (K, Cg, R, S, T) = the weight gradient from the packed input ``xp`` (padding resolved, see
    :func:`pack`) and the packed output gradient ``gyp`` (NB, K, OD, OH, OW, L), at the strides and dilations of
    ``geom``.  ``toff[(r * S + s) * T + t]`` is the offset of tap (r, s, t) in ``xp``'s (D, H, W) volume, in
    elements.  A task owns a block of ``LN_WKB`` output channels, an input channel and one of ``tap_groups``
    runs of consecutive ``LN_WTB``-tap blocks; it walks the lane groups, output depths and, ``rows_per_pass`` (0:
    all) output rows at a time, the rows, running each of its tap blocks over a pass before the next pass (the
    rows of a pass, chosen small enough, stay in the L1 cache for all of its blocks).  All arguments are validated
    by the caller."""
    cdef Py_ssize_t K = out.shape[0], Cg = out.shape[1], R = out.shape[2], S = out.shape[3], T = out.shape[4]
    cdef Py_ssize_t NB = xp.shape[0], C = xp.shape[1], Dp = xp.shape[2], Hp = xp.shape[3], Wp = xp.shape[4]
    cdef Py_ssize_t L = xp.shape[5]
    cdef Py_ssize_t OD = gyp.shape[2], OH = gyp.shape[3], OW = gyp.shape[4]
    cdef Py_ssize_t G = geom.groups, Kg = K // G
    cdef Py_ssize_t sd = geom.sd, sh = geom.sh, sw = geom.sw
    cdef Py_ssize_t taps = R * S * T
    cdef Py_ssize_t nkb = (Kg + LN_WKB - 1) // LN_WKB
    cdef Py_ssize_t ntb = (taps + LN_WTB - 1) // LN_WTB
    cdef Py_ssize_t ntg = max(1, min(tap_groups, ntb))
    cdef Py_ssize_t tbg = (ntb + ntg - 1) // ntg            # tap blocks per group
    cdef Py_ssize_t rpp = OH if rows_per_pass <= 0 else min(rows_per_pass, OH)
    cdef Py_ssize_t ntask = G * nkb * Cg * ntg
    cdef Py_ssize_t blk_len = LN_WKB * LN_WTB * L
    cdef Py_ssize_t res_len = tbg * blk_len
    cdef Py_ssize_t xnb = C * Dp * Hp * Wp * L, gnb = K * OD * OH * OW * L, gks = OD * OH * OW * L
    cdef Py_ssize_t xds = sd * Hp * Wp * L, xhs = sh * Wp * L
    cdef Py_ssize_t task, g, kb, c, tg, k0, nk, q0, nq, kk, tt, l, q, j, tb0, ntbt, b, od, oh0
    cdef Py_ssize_t* kofs
    cdef Py_ssize_t* tof
    cdef float_t* res
    cdef const float_t* xc
    cdef float_t v
    cdef bint started
    cdef int failed[1]
    cdef vf* tf = NULL
    cdef vd* td = NULL
    failed[0] = 0
    if ntask == 0:
        return
    with nogil, parallel(num_threads=nthreads):
        res = <float_t*> scratch(res_len * sizeof(float_t), failed)
        kofs = <Py_ssize_t*> scratch((LN_WKB + tbg * LN_WTB) * sizeof(Py_ssize_t), failed)    # per thread
        tof = kofs + LN_WKB if kofs != NULL else NULL
        for task in prange(ntask, schedule='dynamic'):
            if res != NULL and kofs != NULL:
                tg = task % ntg
                c = (task // ntg) % Cg
                kb = (task // (ntg * Cg)) % nkb
                g = task // (ntg * Cg * nkb)
                k0 = g * Kg + kb * LN_WKB
                nk = min(LN_WKB, Kg - kb * LN_WKB)
                tb0 = tg * tbg
                ntbt = min(tbg, ntb - tb0)
                if ntbt <= 0:
                    continue
                # channels and taps past the block's real ones repeat its last real one; their sums are dropped
                for kk in range(LN_WKB):
                    kofs[kk] = (k0 + min(kk, nk - 1)) * gks
                for j in range(ntbt):
                    q0 = (tb0 + j) * LN_WTB
                    nq = min(LN_WTB, taps - q0)
                    for tt in range(LN_WTB):
                        tof[j * LN_WTB + tt] = toff[q0 + min(tt, nq - 1)]
                xc = &xp[0, 0, 0, 0, 0, 0] + (g * Cg + c) * Dp * Hp * Wp * L
                started = False
                for b in range(NB):
                    for od in range(OD):
                        oh0 = 0
                        while oh0 < OH:
                            for j in range(ntbt):
                                if float_t is float:
                                    _wgrad_block(xc + b * xnb + od * xds + oh0 * xhs,
                                                 &gyp[0, 0, 0, 0, 0, 0] + b * gnb + (od * OH + oh0) * OW * L,
                                                 min(rpp, OH - oh0), OW, xhs, sw * L, L, kofs, tof + j * LN_WTB,
                                                 res + j * blk_len, started, tf)
                                else:
                                    _wgrad_block(xc + b * xnb + od * xds + oh0 * xhs,
                                                 &gyp[0, 0, 0, 0, 0, 0] + b * gnb + (od * OH + oh0) * OW * L,
                                                 min(rpp, OH - oh0), OW, xhs, sw * L, L, kofs, tof + j * LN_WTB,
                                                 res + j * blk_len, started, td)
                            started = True
                            oh0 = oh0 + rpp
                if not started:
                    memset(res, 0, res_len * sizeof(float_t))
                for j in range(ntbt):
                    q0 = (tb0 + j) * LN_WTB
                    nq = min(LN_WTB, taps - q0)
                    for kk in range(nk):
                        for tt in range(nq):
                            v = res[j * blk_len + (kk * LN_WTB + tt) * L]
                            for l in range(1, L):
                                v = v + res[j * blk_len + (kk * LN_WTB + tt) * L + l]
                            q = q0 + tt
                            out[k0 + kk, c, q // (S * T), (q // T) % S, q % T] = v
        free(res)
        free(kofs)
    check_scratch(failed[0], "lanes weight gradient", res_len * sizeof(float_t))
