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
# GCC vector extensions of FC_VECTOR_BYTES bytes: one register on a build whose target has that width (AVX2:
# 32), several narrower ones otherwise (baseline SSE2: two).  A build may define FC_VECTOR_BYTES to compile the
# kernels at another width; kernels derive their block sizes from ``sizeof(vf) // sizeof(float)`` (``VECTOR_BYTES``
# below), never from a literal.  aligned(sizeof element) makes dereferencing an unaligned pointer legal.
cdef extern from *:
    """
    #ifndef FC_VECTOR_BYTES
    #define FC_VECTOR_BYTES 32
    #endif
    typedef float fc_vf __attribute__((vector_size(FC_VECTOR_BYTES), aligned(4)));
    typedef double fc_vd __attribute__((vector_size(FC_VECTOR_BYTES), aligned(8)));
    """
    enum: VECTOR_BYTES "FC_VECTOR_BYTES"
    ctypedef float vf "fc_vf"
    ctypedef double vd "fc_vd"

ctypedef fused vec_t:
    vf
    vd


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
