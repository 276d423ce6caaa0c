# cython: language_level=3
"""Convolution as a product with a Toeplitz-structured matrix: im2col / col2im + one BLAS GEMM per chunk.

Everything works on 5-D arrays (N, C, D, H, W); 1-D and 2-D problems are views with singleton dims.  With
``L = Cg * R * S * T`` rows (input channel x kernel tap) and ``P = OD * OH * OW`` output positions, the lowered
("im2col") matrix of image ``n`` and group ``g`` is ``col[l, p] = x_padded[n, g*Cg + c, od*sd + r*dd, ...]`` and

* forward:      ``y[n, g] (Kg x P)  = W_g (Kg x L) @ col (L x P)``
* grad_input:   ``dcol (L x P)      = W_g^T (L x Kg) @ gy[n, g] (Kg x P)``, then col2im scatter-adds ``dcol``
  into ``dx[n, g]`` (this is also the transposed convolution)
* grad_weight:  ``dW_g (Kg x L)    += gy[n, g] (Kg x P) @ col^T (P x L)`` summed over the batch

``col`` is never built whole: each task lowers one chunk of output positions (``pc`` columns, optionally only a
block of ``cb`` input channels) into a per-thread buffer and multiplies it at once, while it is still in cache.

Parallelism is one level only: OpenMP runs independent tasks, each calling a *single-threaded* BLAS GEMM (the
caller limits the BLAS thread pool to one thread for the duration of the call).  Tasks never share output
elements and the chunking does not depend on the thread count, so results are bitwise identical for any number
of threads:

* forward tasks are (image, group, position chunk) and own their output block;
* grad_input tasks are (image, group, input-channel block) and walk their position chunks in order,
  scatter-adding into the input-gradient rows only they own;
* grad_weight tasks are (group, input-channel block, output-channel block) and accumulate over the batch and
  position chunks in order into the weight-gradient block only they own.

1x1 kernels with stride 1 and no padding skip im2col / col2im entirely: the input itself is the lowered matrix.
GEMMs use column-major BLAS on row-major data: a row-major (a x b) block with row stride ``ld`` is the
column-major (b x a) matrix with leading dimension ``ld``.
"""
from cython.parallel cimport parallel, prange, threadid
from libc.stdlib cimport free
from libc.string cimport memset, memcpy
from scipy.linalg.cython_blas cimport sgemm, dgemm

import numpy as np

from fastconv._kernels.common cimport Geometry, check_scratch, float_t, scratch


cdef struct Geo:
    # the window geometry with the spatial sizes of the arrays of one call (read from the arrays)
    Py_ssize_t D, H, W, OD, OH, OW, R, S, T
    Py_ssize_t sd, sh, sw, dd, dh, dw, pd, ph, pw


cdef Geo _geo(const Py_ssize_t* shape_in, const Py_ssize_t* shape_out, const Geometry* c) noexcept:
    """Spatial input and output shapes (3 values each) with the kernel, strides, dilations and low paddings of
    ``c`` (whose input dilation is 1: the lowering never dilates its input)."""
    cdef Geo g
    g.D, g.H, g.W = shape_in[0], shape_in[1], shape_in[2]
    g.OD, g.OH, g.OW = shape_out[0], shape_out[1], shape_out[2]
    g.R, g.S, g.T = c.kd, c.kh, c.kw
    g.sd, g.sh, g.sw = c.sd, c.sh, c.sw
    g.dd, g.dh, g.dw = c.dd, c.dh, c.dw
    g.pd, g.ph, g.pw = c.pd, c.ph, c.pw
    return g


cdef inline void _gemm(char ta, char tb, int m, int n, int k, const float_t* a, int lda, const float_t* b,
                       int ldb, float_t beta, float_t* c, int ldc) noexcept nogil:
    """Column-major ``c = op(a) @ op(b) + beta * c`` through scipy's BLAS (sgemm / dgemm)."""
    cdef float_t one = 1
    if float_t is float:
        sgemm(&ta, &tb, &m, &n, &k, &one, <float*> a, &lda, <float*> b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &one, <double*> a, &lda, <double*> b, &ldb, &beta, c, &ldc)


cdef void _lower(float_t* xc0, float_t* col, Py_ssize_t nc, const Geo* g, Py_ssize_t p0, Py_ssize_t p1,
                 bint adjoint) noexcept nogil:
    """im2col and its adjoint col2im, which walk the same rows and segments.

    im2col (``adjoint`` False): ``col[(c, r, s, t), j]`` = channel c of the zero-padded input (from ``xc0``)
    under tap (r, s, t) at output position ``p0 + j``.  col2im (``adjoint`` True): ``xc0[...] += col[...]`` for
    every tap that reads a real input element.  Output positions are walked as segments of one output row, with
    the valid columns of each tap computed once per row, so the inner loops neither divide nor test bounds.
    """
    cdef Py_ssize_t DHW = g.D * g.H * g.W, q = p0 // g.OW
    cdef Py_ssize_t ow0 = p0 % g.OW, oh0 = q % g.OH, od0 = q // g.OH
    cdef Py_ssize_t c, r, s, t, p, ow, oh, od, seg, end, idd, ihh, off, l0, h0, lo, hi, o
    cdef float_t* row
    cdef float_t* cp = col
    for c in range(nc):
        for r in range(g.R):
            for s in range(g.S):
                for t in range(g.T):
                    # output columns o with 0 <= o * sw + off < W (the same for every output row)
                    off = t * g.dw - g.pw
                    l0 = 0 if off >= 0 else (g.sw - 1 - off) // g.sw
                    h0 = 0 if off >= g.W else (g.W - 1 - off) // g.sw + 1
                    p, ow, oh, od = p0, ow0, oh0, od0
                    while p < p1:
                        seg = min(g.OW - ow, p1 - p)
                        end = ow + seg
                        idd = od * g.sd + r * g.dd - g.pd
                        ihh = oh * g.sh + s * g.dh - g.ph
                        lo = end        # a row of zero padding: nothing valid
                        hi = end
                        row = xc0
                        if idd >= 0 and idd < g.D and ihh >= 0 and ihh < g.H:
                            lo = min(max(l0, ow), end)
                            hi = min(max(h0, lo), end)
                            row = xc0 + c * DHW + (idd * g.H + ihh) * g.W
                        # strides 1 and 2 get loops with a constant stride, which the compiler vectorises
                        if adjoint:
                            if g.sw == 1:
                                for o in range(lo, hi):
                                    row[o + off] += cp[o - ow]
                            elif g.sw == 2:
                                for o in range(lo, hi):
                                    row[o * 2 + off] += cp[o - ow]
                            else:
                                for o in range(lo, hi):
                                    row[o * g.sw + off] += cp[o - ow]
                        else:
                            if lo > ow:
                                memset(cp, 0, (lo - ow) * sizeof(float_t))
                            if g.sw == 1:
                                memcpy(cp + (lo - ow), row + (lo + off), (hi - lo) * sizeof(float_t))
                            elif g.sw == 2:
                                for o in range(lo, hi):
                                    cp[o - ow] = row[o * 2 + off]
                            else:
                                for o in range(lo, hi):
                                    cp[o - ow] = row[o * g.sw + off]
                            if end > hi:
                                memset(cp + (hi - ow), 0, (end - hi) * sizeof(float_t))
                        cp += seg
                        p += seg
                        ow = 0
                        oh += 1
                        if oh == g.OH:
                            oh = 0
                            od += 1


cdef inline (Py_ssize_t, Py_ssize_t, Py_ssize_t) _task(Py_ssize_t t, Py_ssize_t mid,
                                                        Py_ssize_t inner) noexcept nogil:
    """Task ``t`` as (outer, mid, inner) indices in C order over (outer, ``mid``, ``inner``).  Returned by value:
    a prange body must assign the result itself (variables written through a pointer would be shared)."""
    return t // inner // mid, t // inner % mid, t % inner


cdef inline const float_t* _lowered(const float_t* xc, float_t* buf, Py_ssize_t nc, const Geo* g, Py_ssize_t p0,
                                    Py_ssize_t p1, bint one_by_one) noexcept nogil:
    """The lowered operand of output positions [p0, p1) of ``nc`` channels from ``xc``: the input itself for a
    1x1 kernel (leading dimension D*H*W), else its im2col chunk written to ``buf`` (leading dimension p1 - p0)."""
    if one_by_one:
        return xc + p0
    _lower(<float_t*> xc, buf, nc, g, p0, p1, False)
    return buf


cdef void* _thread_buffer(Py_ssize_t nbytes, Py_ssize_t* held) noexcept nogil:
    """One thread's workspace (:func:`scratch`); ``held`` records its size, or -1 when it could not be allocated."""
    cdef int failed = 0
    cdef void* buf = scratch(nbytes, &failed)
    held[0] = -1 if failed else (nbytes if buf != NULL else 0)
    return buf


cdef Py_ssize_t _workspace_used(Py_ssize_t[::1] held, str op, Py_ssize_t nbytes) except -1:
    """Total bytes the threads allocated, or MemoryError if one of them could not allocate ``nbytes``."""
    cdef Py_ssize_t i, total = 0
    for i in range(held.shape[0]):
        check_scratch(held[i] < 0, "toeplitz " + op, nbytes)
        total += held[i]
    return total


def forward(const float_t[:, :, :, :, ::1] x, const float_t[:, ::1] w2, const float_t[::1] bias,
            float_t[:, :, :, :, ::1] out, Geometry geom, *, bint has_bias, Py_ssize_t pc, bint one_by_one,
            int nthreads):
    """out (N, K, OD, OH, OW) = conv(x (N, C, D, H, W), w2 (K, Cg*R*S*T)) [+ bias]; tasks (n, g, chunk).

    ``geom``: kernel, strides, dilations, low paddings and groups; ``pc`` positions per chunk.  All arguments
    are validated by the caller.  Returns (GEMM calls, bytes of workspace the threads allocated).
    """
    cdef Geo geo = _geo(&x.shape[2], &out.shape[2], &geom)
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], K = out.shape[1], G = geom.groups
    cdef Py_ssize_t Cg = C // G, Kg = K // G, L = w2.shape[1]
    cdef Py_ssize_t DHW = geo.D * geo.H * geo.W, P = geo.OD * geo.OH * geo.OW
    cdef Py_ssize_t nch = (P + pc - 1) // pc, ntask = N * G * nch
    cdef Py_ssize_t buf_len = 0 if one_by_one else L * pc
    cdef Py_ssize_t task, ch, g, n, p0, p1, m, k, j
    cdef const float_t* xp = &x[0, 0, 0, 0, 0]
    cdef const float_t* wp = &w2[0, 0]
    cdef float_t* yp0 = &out[0, 0, 0, 0, 0]
    cdef float_t* yp
    cdef float_t* buf
    cdef float_t bval, beta
    cdef Py_ssize_t[::1] held = np.zeros(max(1, nthreads), np.intp)   # workspace bytes per thread
    with nogil, parallel(num_threads=nthreads):
        buf = <float_t*> _thread_buffer(buf_len * sizeof(float_t), &held[threadid()])
        for task in prange(ntask, schedule='dynamic'):
            if buf_len > 0 and buf == NULL:
                continue
            n, g, ch = _task(task, G, nch)
            p0 = ch * pc
            p1 = min(P, p0 + pc)
            m = p1 - p0
            yp = yp0 + (n * K + g * Kg) * P + p0
            beta = 0
            if has_bias:
                beta = 1
                for k in range(Kg):
                    bval = bias[g * Kg + k]
                    for j in range(m):
                        yp[k * P + j] = bval
            _gemm(c'N', c'N', <int> m, <int> Kg, <int> L,
                  _lowered(xp + (n * C + g * Cg) * DHW, buf, Cg, &geo, p0, p1, one_by_one),
                  <int> (DHW if one_by_one else m), wp + g * Kg * L, <int> L, beta, yp, <int> P)
        free(buf)
    return ntask, _workspace_used(held, "forward", buf_len * sizeof(float_t))


def grad_input(const float_t[:, :, :, :, ::1] gy, const float_t[:, ::1] w2, float_t[:, :, :, :, ::1] dx,
               Geometry geom, *, Py_ssize_t pc, Py_ssize_t cb, bint one_by_one, int nthreads):
    """dx (N, C, D, H, W) = adjoint of the convolution applied to gy (N, K, OD, OH, OW); GEMM + col2im.

    Tasks (n, g, block of ``cb`` input channels) each walk their position chunks in order.  Returns
    (GEMM calls, bytes of workspace the threads allocated).
    """
    cdef Geo geo = _geo(&dx.shape[2], &gy.shape[2], &geom)
    cdef Py_ssize_t N = dx.shape[0], C = dx.shape[1], K = gy.shape[1], G = geom.groups
    cdef Py_ssize_t Cg = C // G, Kg = K // G, L = w2.shape[1], RST = geo.R * geo.S * geo.T
    cdef Py_ssize_t DHW = geo.D * geo.H * geo.W, P = geo.OD * geo.OH * geo.OW
    cdef Py_ssize_t nch = (P + pc - 1) // pc, ncb = (Cg + cb - 1) // cb, ntask = N * G * ncb
    cdef Py_ssize_t buf_len = 0 if one_by_one else cb * RST * pc
    cdef Py_ssize_t task, cbi, g, n, c0, nc, ch, p0, p1, m
    cdef const float_t* gyp = &gy[0, 0, 0, 0, 0]
    cdef const float_t* wp = &w2[0, 0]
    cdef float_t* dxp0 = &dx[0, 0, 0, 0, 0]
    cdef float_t* dxp
    cdef const float_t* gyc
    cdef const float_t* wc
    cdef float_t* buf
    cdef Py_ssize_t[::1] held = np.zeros(max(1, nthreads), np.intp)   # workspace bytes per thread
    with nogil, parallel(num_threads=nthreads):
        buf = <float_t*> _thread_buffer(buf_len * sizeof(float_t), &held[threadid()])
        for task in prange(ntask, schedule='dynamic'):
            if buf_len > 0 and buf == NULL:
                continue
            n, g, cbi = _task(task, G, ncb)
            c0 = cbi * cb
            nc = min(cb, Cg - c0)
            dxp = dxp0 + (n * C + g * Cg + c0) * DHW
            gyc = gyp + (n * K + g * Kg) * P
            wc = wp + g * Kg * L + c0 * RST
            if one_by_one:
                _gemm(c'N', c'T', <int> P, <int> nc, <int> Kg, gyc, <int> P, wc, <int> L, 0, dxp, <int> P)
            else:
                memset(dxp, 0, nc * DHW * sizeof(float_t))
                for ch in range(nch):
                    p0 = ch * pc
                    p1 = min(P, p0 + pc)
                    m = p1 - p0
                    _gemm(c'N', c'T', <int> m, <int> (nc * RST), <int> Kg, gyc + p0, <int> P, wc, <int> L,
                          0, buf, <int> m)
                    _lower(dxp, buf, nc, &geo, p0, p1, True)
        free(buf)
    return (ntask if one_by_one else ntask * nch), _workspace_used(held, "grad_input",
                                                                   buf_len * sizeof(float_t))


cdef inline void _row_sums(const float_t* a, Py_ssize_t rows, Py_ssize_t n, Py_ssize_t ld,
                           double* acc) noexcept nogil:
    """acc[r] += sum of a[r * ld : r * ld + n] for r < rows (double accumulators).

    Eight partial sums take the elements j = l (mod 8) in order, are combined pairwise and the tail added last:
    the order is fixed (no dependence on threads or SIMD level), and the eight independent chains vectorise,
    where one chain waited an add latency per element."""
    cdef Py_ssize_t r, j, l, n8 = n - n % 8
    cdef double s[8]
    cdef double t
    cdef const float_t* row
    for r in range(rows):
        row = a + r * ld
        for l in range(8):
            s[l] = 0
        for j in range(0, n8, 8):
            for l in range(8):
                s[l] = s[l] + row[j + l]
        t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
        for j in range(n8, n):
            t = t + row[j]
        acc[r] = acc[r] + t


def grad_weight(const float_t[:, :, :, :, ::1] x, const float_t[:, :, :, :, ::1] gy, float_t[:, :, ::1] dw3,
                double[:, ::1] db2, Geometry geom, *, Py_ssize_t pc, Py_ssize_t cb, Py_ssize_t kb,
                bint one_by_one, bint with_bias, bint transposed, int nthreads):
    """dw3[b] (K, Cg*R*S*T) = sum over the images of batch chunk b of gy[n, g] @ col(x[n, g])^T; im2col + GEMM.
    With ``transposed``, dw3[b] is its transpose (Cg*R*S*T, K): each GEMM then has the ``kb`` output channels as
    the first dimension of its column-major result (OpenBLAS ran 8-40 % faster with the smaller of the two first,
    AMD EPYC, avx2).

    The batch is split into ``dw3.shape[0]`` chunks (the caller adds the partial sums in order).  Tasks (batch
    chunk, g, block of ``cb`` input channels, block of ``kb`` output channels) each accumulate over their images
    and position chunks in order.  With ``with_bias`` the tasks of the first channel block also sum each output
    gradient chunk right after its GEMM read it (still in cache) into db2[b] (K; double accumulators).  Returns
    (GEMM calls, bytes of workspace the threads allocated).
    """
    cdef Geo geo = _geo(&x.shape[2], &gy.shape[2], &geom)
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], K = gy.shape[1], G = geom.groups, NB = dw3.shape[0]
    cdef Py_ssize_t Cg = C // G, Kg = K // G, L = dw3.shape[1] if transposed else dw3.shape[2]
    cdef Py_ssize_t RST = geo.R * geo.S * geo.T
    cdef Py_ssize_t sk = 1 if transposed else L, sl = K if transposed else 1
    cdef Py_ssize_t DHW = geo.D * geo.H * geo.W, P = geo.OD * geo.OH * geo.OW
    cdef Py_ssize_t nch = (P + pc - 1) // pc, ncb = (Cg + cb - 1) // cb, nkb = (Kg + kb - 1) // kb
    cdef Py_ssize_t ntask = NB * G * ncb * nkb
    cdef Py_ssize_t buf_len = 0 if one_by_one else cb * RST * pc
    cdef Py_ssize_t task, bg, bc, cbi, kbi, g, n, c0, nc, k0, nk, ch, p0, p1, m
    cdef const float_t* xp = &x[0, 0, 0, 0, 0]
    cdef const float_t* gyp = &gy[0, 0, 0, 0, 0]
    cdef float_t* dwp0 = &dw3[0, 0, 0]
    cdef float_t* dwp
    cdef const float_t* xc
    cdef const float_t* low
    cdef const float_t* gyc
    cdef float_t* buf
    cdef float_t beta
    cdef Py_ssize_t[::1] held = np.zeros(max(1, nthreads), np.intp)   # workspace bytes per thread
    with nogil, parallel(num_threads=nthreads):
        buf = <float_t*> _thread_buffer(buf_len * sizeof(float_t), &held[threadid()])
        for task in prange(ntask, schedule='dynamic'):
            if buf_len > 0 and buf == NULL:
                continue
            bg, cbi, kbi = _task(task, ncb, nkb)
            bc = bg // G
            g = bg % G
            c0 = cbi * cb
            nc = min(cb, Cg - c0)
            k0 = kbi * kb
            nk = min(kb, Kg - k0)
            # the block's (output channel, lowered row) element sits at dwp + k * sk + l * sl
            dwp = dwp0 + bc * K * L + (g * Kg + k0) * sk + c0 * RST * sl
            beta = 0
            if bc * N // NB == (bc + 1) * N // NB:     # an empty chunk (more chunks than images)
                for m in range(nc * RST if transposed else nk):     # rows of the block, K or L apart
                    memset(dwp + m * (K if transposed else L), 0, (nk if transposed else nc * RST) * sizeof(float_t))
            if with_bias and cbi == 0:
                for m in range(nk):
                    db2[bc, g * Kg + k0 + m] = 0
            for n in range(bc * N // NB, (bc + 1) * N // NB):
                xc = xp + (n * C + g * Cg + c0) * DHW
                for ch in range(nch):
                    p0 = ch * pc
                    p1 = min(P, p0 + pc)
                    m = p1 - p0
                    low = _lowered(xc, buf, nc, &geo, p0, p1, one_by_one)
                    gyc = gyp + (n * K + g * Kg + k0) * P + p0
                    if transposed:      # column-major (nk x nc RST): the same product, operands swapped
                        _gemm(c'T', c'N', <int> nk, <int> (nc * RST), <int> m, gyc, <int> P, low,
                              <int> (DHW if one_by_one else m), beta, dwp, <int> K)
                    else:
                        _gemm(c'T', c'N', <int> (nc * RST), <int> nk, <int> m, low, <int> (DHW if one_by_one else m),
                              gyc, <int> P, beta, dwp, <int> L)
                    beta = 1
                    if with_bias and cbi == 0:
                        _row_sums(gyc, nk, m, P, &db2[bc, g * Kg + k0])
        free(buf)
    return ntask * nch * ((N + NB - 1) // NB), _workspace_used(held, "grad_weight", buf_len * sizeof(float_t))


def matmul(const float_t[:, :] a, const float_t[:, :] b, float_t[:, ::1] c, *, bint accumulate, Py_ssize_t bm,
           Py_ssize_t bn, int nthreads):
    """Row-major ``c = a @ b`` (``c += a @ b`` with ``accumulate``) in blocks of ``bm`` x ``bn`` outputs, one
    single-threaded GEMM per block, OpenMP over the blocks.

    ``a`` and ``b`` must each be C- or F-contiguous (F: a transposed view); ``c`` is C-contiguous.  Every output
    element belongs to one block whose GEMM sums over the whole of ``k``, and the blocks depend on the caller's
    ``bm, bn`` only, so the result does not depend on ``nthreads``.  The caller keeps BLAS single-threaded while
    this runs with ``nthreads > 1``.  Row-major ``c = a @ b`` is column-major ``c^T = b^T a^T``.
    """
    cdef Py_ssize_t M = c.shape[0], N = c.shape[1], K = a.shape[1]
    cdef Py_ssize_t nbm = (M + bm - 1) // bm, nbn = (N + bn - 1) // bn
    cdef Py_ssize_t task, m0, n0
    cdef int mm, nn, kk = <int> K, ldc = <int> N, lda, ldb
    cdef char ta, tb
    cdef float_t beta = 1 if accumulate else 0
    cdef const float_t* ap
    cdef const float_t* bp
    cdef float_t* cp
    if M == 0 or N == 0:
        return
    if K == 0:
        if not accumulate:
            c[:, :] = 0
        return
    # b^T in column-major terms: a C-contiguous b (row stride N) is b^T with ld N ('N'); an F-contiguous b is
    # b^T stored transposed ('T', ld K).  Likewise a.  (Leading dimensions come from the shapes: NumPy gives
    # length-1 axes arbitrary strides.)
    if b.shape[1] == 1 or b.strides[1] == sizeof(float_t):
        tb, ldb = b'N', <int> N
    else:
        tb, ldb = b'T', <int> K
    if a.shape[1] == 1 or a.strides[1] == sizeof(float_t):
        ta, lda = b'N', <int> K
    else:
        ta, lda = b'T', <int> M
    ap = &a[0, 0]
    bp = &b[0, 0]
    cp = &c[0, 0]
    for task in prange(nbm * nbn, nogil=True, schedule='dynamic', num_threads=nthreads):
        m0 = (task // nbn) * bm
        n0 = (task % nbn) * bn
        mm = <int> min(bm, M - m0)
        nn = <int> min(bn, N - n0)
        # column-major: C^T block (nn x mm) at c + m0*N + n0 = op(B^T) (nn x K) @ op(A^T) (K x mm)
        _gemm(tb, ta, nn, mm, kk, bp + (n0 if tb == b'N' else n0 * ldb), ldb,
              ap + (m0 * lda if ta == b'N' else m0), lda, beta, cp + m0 * N + n0, ldc)
