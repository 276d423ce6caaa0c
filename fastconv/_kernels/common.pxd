# The one way into fastconv's kernels: the float types, the window geometry, the SIMD vector types and the
# per-thread scratch helper every kernel module shares (``from fastconv._kernels.common cimport ...``).

# ----------------------------------------------------------------------------------------------- float types
ctypedef fused float_t:
    float
    double


# ----------------------------------------------------------------------------------------------- geometry
# A convolution or pooling window in 3 spatial dimensions (D, H, W; 1-D and 2-D problems have leading singleton
# dims).  Python fills it by name from ``ConvGeometry.kernel_struct()`` / ``PoolGeometry.kernel_struct()`` (or
# ``fastconv._geometry.kernel_struct`` for the adjoint runs of an algorithm): a def function taking a
# ``Geometry`` argument receives a dict with these keys, so no two values can be swapped by position.  Array
# shapes (batch, channels, input and output sizes) are read from the arrays themselves, never from here.
cdef struct Geometry:
    Py_ssize_t groups          # channel groups (1 for pooling)
    Py_ssize_t kd, kh, kw      # kernel / window size
    Py_ssize_t sd, sh, sw      # stride
    Py_ssize_t dd, dh, dw      # dilation of the kernel taps
    Py_ssize_t pd, ph, pw      # low-side zero padding (any sign: adjoint runs may crop)
    Py_ssize_t ld, lh, lw      # input dilation (1 except for the adjoint runs of the direct kernel)


# ----------------------------------------------------------------------------------------------- SIMD vectors
# GCC vector extensions of FC_VECTOR_BYTES bytes, and the register-block sizes made for that width: setup.py
# compiles every kernel once per SIMD level and passes the width (32: baseline and AVX2; 64: AVX-512 and the avx2x2
# test build) -- see ``simd.h``.  Kernels derive their block sizes from these names, never from a literal.
cdef extern from "simd.h":
    enum: VECTOR_BYTES "FC_VECTOR_BYTES"
    ctypedef float vf "fc_vf"
    ctypedef double vd "fc_vd"
    enum:
        FC_VEC_FLOATS       # floats per vector
        FC_CH_VECS          # direct, channel-vectorised block: vectors of output channels
        FC_CH_COLS          # ... x output columns
        FC_CH_ACCS          # ... = accumulators
        FC_DW_ROWS          # column-vectorised block: output rows
        FC_DW_VECS          # ... x vectors of output columns
        FC_DW_ACCS          # ... = accumulators
        FC_PAIR_VECS        # filters, row pair: column vectors per row
        FC_RB_ROWS          # filters, row block: output rows
        FC_RB_VECS          # ... x column vectors
        FC_DWG_TAPS         # depthwise weight gradient: column taps held at once
        FC_LANE_BYTES       # ... in 64-byte lane groups (the same lanes at every level)
        FC_LANE_VECS        # ... = vectors per lane group
        FC_DWG_SROWS        # ... kernel rows of a 3-tap-wide kernel accumulated at once
        FC_DWG_ACCS         # ... = accumulators of either
    # max |p[i]| over n elements, and *bad = whether one is an inf or NaN (one vectorised pass)
    double fc_max_abs_f(const float* p, Py_ssize_t n, int* bad) nogil
    double fc_max_abs_d(const double* p, Py_ssize_t n, int* bad) nogil
    # whether p[0 .. n) holds an inf or NaN (one vectorised pass, four independent chains)
    int fc_nonfinite_f(const float* p, Py_ssize_t n) nogil
    int fc_nonfinite_d(const double* p, Py_ssize_t n) nogil
    # e[i] = s[2 i], o[i] = s[2 i + 1] for i < n
    void fc_deinterleave_f(const float* s, float* e, float* o, Py_ssize_t n) nogil
    void fc_deinterleave_d(const double* s, double* e, double* o, Py_ssize_t n) nogil
    # d[0 .. lo) = 0, d[lo .. hi) = s[0 .. hi - lo), d[hi .. n) = 0 (0 <= lo <= hi <= n)
    void fc_padded_row_f(float* d, const float* s, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t n) nogil
    void fc_padded_row_d(double* d, const double* s, Py_ssize_t lo, Py_ssize_t hi, Py_ssize_t n) nogil
    # keep a loaded vector in a register (GCC would fold its load into every multiply-add that uses it)
    void in_register_f "FC_IN_REGISTER"(vf v) noexcept nogil
    void in_register_d "FC_IN_REGISTER"(vd v) noexcept nogil

ctypedef fused vec_t:
    vf
    vd


# ----------------------------------------------------------------------------------------------- input rows
from libc.string cimport memset


cdef inline Py_ssize_t floordiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """Floor division for b > 0 and any sign of a (C division truncates toward zero)."""
    if a >= 0:
        return a // b
    return -((-a + b - 1) // b)


cdef struct Tile:
    Py_ssize_t n, t1, t2, t3


cdef inline Tile tile_of(Py_ssize_t m, Py_ssize_t T1, Py_ssize_t T2, Py_ssize_t T3) noexcept nogil:
    """Task or tile ``m`` in C order over ``(N, T1, T2, T3)``.  Returned by value: a prange body must assign the
    result itself (variables written only through a pointer would not be made thread-private)."""
    cdef Tile t
    t.t3 = m % T3
    m = m // T3
    t.t2 = m % T2
    m = m // T2
    t.t1 = m % T1
    t.n = m // T1
    return t


cdef inline void gather_row(const float_t* xrow, Py_ssize_t W, float_t* dst, Py_ssize_t Wb, Py_ssize_t iw0,
                            Py_ssize_t lw, Py_ssize_t sw) noexcept nogil:
    """Positions iw0 .. iw0 + Wb - 1 of a row of W values dilated by lw (zero outside the row and between its
    values), stored phase-major by sw: ``dst[p * (Wb // sw) + i]`` holds position ``iw0 + i * sw + p``, so the
    columns a stride-sw output run reads are contiguous.  With ``sw > 1``, Wb must be a multiple of sw.  The direct
    kernels gather their input rows with it, zero padding and input dilation resolved here."""
    cdef Py_ssize_t q, q0, q1, j, lo, hi, Wp, p, i, i0, i1, dp, di, ia, ib
    cdef float_t* d
    if sw == 1 and lw == 1:
        lo = min(max(0, -iw0), Wb)
        hi = max(lo, min(Wb, W - iw0))
        if float_t is float:
            fc_padded_row_f(dst, xrow + iw0 + lo, lo, hi, Wb)
        else:
            fc_padded_row_d(dst, xrow + iw0 + lo, lo, hi, Wb)
        return
    # (no division per element: an integer division by the runtime stride took 8x the time of the convolution
    # it fed, stride-2 depthwise layers)
    Wp = Wb // sw
    memset(dst, 0, Wb * sizeof(float_t))
    if lw == 1:
        # phase p: dst[p * Wp + i] = xrow[iw0 + p + i * sw] for the i whose column is inside the row; stride 2
        # splits the i where both phases are inside with vector shuffles (ia .. ib), the others one by one
        ia = ib = 0
        if sw == 2:
            ia = max(0, -floordiv(iw0, 2))
            ib = max(ia, min(Wp, floordiv(W - 2 - iw0, 2) + 1))
            if float_t is float:
                fc_deinterleave_f(xrow + iw0 + 2 * ia, dst + ia, dst + Wp + ia, ib - ia)
            else:
                fc_deinterleave_d(xrow + iw0 + 2 * ia, dst + ia, dst + Wp + ia, ib - ia)
        for p in range(sw):
            i0 = max(0, -floordiv(iw0 + p, sw))
            i1 = min(Wp, floordiv(W - 1 - iw0 - p, sw) + 1)
            d = dst + p * Wp
            for i in range(i0, min(i1, ia)):
                d[i] = xrow[iw0 + p + i * sw]
            for i in range(max(i0, ib), i1):
                d[i] = xrow[iw0 + p + i * sw]
        return
    # input dilation: value q sits at position j = q * lw - iw0, i.e. phase j % sw, index j // sw, stepped by lw
    q0 = max(0, -floordiv(-iw0, lw))
    q1 = min(W - 1, floordiv(iw0 + Wb - 1, lw))
    if q1 < q0:
        return
    j = q0 * lw - iw0
    p = j % sw
    i = j // sw
    dp = lw % sw
    di = lw // sw
    for q in range(q0, q1 + 1):
        dst[p * Wp + i] = xrow[q]
        p = p + dp
        i = i + di
        if p >= sw:
            p = p - sw
            i = i + 1


cdef inline int nonfinite(const float_t* p, Py_ssize_t n) noexcept nogil:
    """Nonzero when p[0 .. n) holds an inf or NaN (simd.h's fc_nonfinite, one vectorised pass)."""
    if float_t is float:
        return fc_nonfinite_f(p, n)
    return fc_nonfinite_d(p, n)


# ----------------------------------------------------------------------------------------------- scratch
from libc.stdlib cimport malloc


cdef inline void* scratch(Py_ssize_t nbytes, int* failed) noexcept nogil:
    """One thread's scratch buffer inside a ``parallel()`` block: ``malloc(nbytes)``, or NULL for ``nbytes <= 0``.

    A failed allocation sets ``failed[0]``.  The thread must still reach the block's work-sharing loop (every
    thread of a team does) and skip its tasks; after the block the caller raises with :func:`check_scratch`.
    The buffer is released with ``free`` at the end of the block.
    """
    cdef void* buf = NULL
    if nbytes > 0:
        buf = malloc(nbytes)
        if buf == NULL:
            failed[0] = 1
    return buf


cdef inline int check_scratch(int failed, str what, Py_ssize_t nbytes) except -1:
    """Raise MemoryError naming the kernel when a thread could not allocate its ``nbytes`` of scratch."""
    if failed:
        raise MemoryError("%s: could not allocate %d bytes of per-thread scratch" % (what, nbytes))
    return 0
