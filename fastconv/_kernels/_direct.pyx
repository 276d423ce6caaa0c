# cython: language_level=3
"""Cache-tiled direct convolution (3 spatial dims; 1-D and 2-D are views with singleton dims).

Work is split into independent tasks (batch n, group g, output depth od, output row oh, a chunk of output-channel
blocks, a chunk of output columns).  A task first gathers the input rows its outputs read into a small per-thread
buffer, with zero padding and input dilation resolved there, so the inner loops never test bounds.  Then, for
each block of output channels and each block of output columns, the whole reduction over input channels and
kernel taps runs with the accumulators in registers:

* ``mode 0`` (channel-vectorised): KB output channels x WB output columns; one input value is broadcast against
  KB consecutive packed weights (vector FMA over output channels).
* ``mode 1`` (column-vectorised, for few output channels per group, e.g. depthwise): KBN output channels x WV
  output columns; one weight is broadcast against WV consecutive input values.

Every output element is written by exactly one task, in a fixed summation order, so results do not depend on the
number of threads.  The weight array arrives packed by ``fastconv._algos.direct.pack_weights``:
``[group][block][c][kd][kh][kw][kb]`` (blocks zero-padded to a multiple of kb).

Input dilation ("lhs dilation") lets the same kernel compute transposed convolutions and input gradients:
input position ``p`` of a dilated axis holds ``x[p // l]`` when ``p % l == 0`` and zero otherwise.
"""
from cython.parallel cimport parallel, prange
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from fastconv._kernels.fused cimport float_t


cdef inline void _reduce_ch(const float_t* buf, const float_t* wblk, float_t* res,
                            Py_ssize_t Cg, const Py_ssize_t* rl, Py_ssize_t nr, const Py_ssize_t* sl,
                            Py_ssize_t ns, Py_ssize_t R, Py_ssize_t S, Py_ssize_t T, Py_ssize_t Wb,
                            Py_ssize_t dw, Py_ssize_t sw, Py_ssize_t off,
                            int KB, int WB) noexcept nogil:
    """res[j*KB + kk] = sum over c, valid taps of buf[c,r,s, off + t*dw + j*sw] * w[c,r,s,t,kk]."""
    cdef float_t acc[96]
    cdef Py_ssize_t c, ir, is_, t, j, kk, rs
    cdef const float_t* row
    cdef const float_t* wk
    cdef float_t xv
    for j in range(WB * KB):
        acc[j] = 0
    for c in range(Cg):
        for ir in range(nr):
            for is_ in range(ns):
                rs = (c * R + rl[ir]) * S + sl[is_]
                row = buf + rs * Wb + off
                wk = wblk + rs * T * KB
                for t in range(T):
                    for j in range(WB):
                        xv = row[t * dw + j * sw]
                        for kk in range(KB):
                            acc[j * KB + kk] += xv * wk[kk]
                    wk += KB
    for j in range(WB * KB):
        res[j] = acc[j]


cdef inline void _reduce_col(const float_t* buf, const float_t* wblk, float_t* res,
                             Py_ssize_t Cg, const Py_ssize_t* rl, Py_ssize_t nr, const Py_ssize_t* sl,
                             Py_ssize_t ns, Py_ssize_t R, Py_ssize_t S, Py_ssize_t T, Py_ssize_t Wb,
                             Py_ssize_t dw, Py_ssize_t sw, Py_ssize_t off,
                             int KB, int WV) noexcept nogil:
    """res[kk*WV + j] = sum over c, valid taps of w[c,r,s,t,kk] * buf[c,r,s, off + t*dw + j*sw]."""
    cdef float_t acc[64]
    cdef Py_ssize_t c, ir, is_, t, j, kk, rs
    cdef const float_t* row
    cdef const float_t* wk
    cdef float_t wv
    for j in range(WV * KB):
        acc[j] = 0
    for c in range(Cg):
        for ir in range(nr):
            for is_ in range(ns):
                rs = (c * R + rl[ir]) * S + sl[is_]
                row = buf + rs * Wb + off
                wk = wblk + rs * T * KB
                for t in range(T):
                    for kk in range(KB):
                        wv = wk[kk]
                        for j in range(WV):
                            acc[kk * WV + j] += wv * row[t * dw + j * sw]
                    wk += KB
    for j in range(WV * KB):
        res[j] = acc[j]


cdef inline void _dispatch(int mode, int kb, const float_t* buf, const float_t* wblk, float_t* res,
                           Py_ssize_t Cg, const Py_ssize_t* rl, Py_ssize_t nr, const Py_ssize_t* sl,
                           Py_ssize_t ns, Py_ssize_t R, Py_ssize_t S, Py_ssize_t T, Py_ssize_t Wb,
                           Py_ssize_t dw, Py_ssize_t sw, Py_ssize_t off) noexcept nogil:
    # Every (mode, kb) pair calls an inlined reduction with compile-time block sizes, so the compiler fully
    # unrolls the register block.  Block sizes fill 12 (mode 0) or 8 (mode 1) AVX2 registers of either dtype.
    if float_t is float:
        if mode == 0:
            _reduce_ch(buf, wblk, res, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off, 16, 6)
        elif kb == 1:
            if sw == 1:
                _reduce_col(buf, wblk, res, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, 1, off, 1, 64)
            else:
                _reduce_col(buf, wblk, res, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off, 1, 64)
        elif kb == 2:
            _reduce_col(buf, wblk, res, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off, 2, 32)
        else:
            _reduce_col(buf, wblk, res, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off, 4, 16)
    else:
        if mode == 0:
            _reduce_ch(buf, wblk, res, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off, 8, 6)
        elif kb == 1:
            if sw == 1:
                _reduce_col(buf, wblk, res, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, 1, off, 1, 32)
            else:
                _reduce_col(buf, wblk, res, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off, 1, 32)
        elif kb == 2:
            _reduce_col(buf, wblk, res, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off, 2, 16)
        else:
            _reduce_col(buf, wblk, res, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off, 4, 8)


def block_sizes(dtype_is_float, int mode, int kb):
    """(channel block, column block) used by the kernel for a dtype/mode (kb: channel block of mode 1)."""
    if mode == 0:
        return (16, 6) if dtype_is_float else (8, 6)
    wv = {1: 64, 2: 32, 4: 16}[kb]
    return (kb, wv if dtype_is_float else wv // 2)


def forward(const float_t[:, :, :, :, ::1] x, const float_t[::1] wp, const float_t[::1] bias, bint has_bias,
            float_t[:, :, :, :, ::1] out, Py_ssize_t groups,
            Py_ssize_t R, Py_ssize_t S, Py_ssize_t T,
            Py_ssize_t sd, Py_ssize_t sh, Py_ssize_t sw,
            Py_ssize_t dd, Py_ssize_t dh, Py_ssize_t dw,
            Py_ssize_t pd, Py_ssize_t ph, Py_ssize_t pw,
            Py_ssize_t ld, Py_ssize_t lh, Py_ssize_t lw,
            int mode, int kb, int kchunks, int wchunk_blocks, int nthreads):
    """Direct convolution of x (N, C, D, H, W) into out (N, K, OD, OH, OW); see the module docstring.

    ``pd, ph, pw`` are the low-side paddings (any sign), ``ld, lh, lw`` the input dilations, ``kb`` the packed
    channel block, ``kchunks`` how many tasks share the channel blocks of a group, ``wchunk_blocks`` how many
    column blocks one task computes.  All arguments are validated by the caller.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], D = x.shape[2], H = x.shape[3], W = x.shape[4]
    cdef Py_ssize_t K = out.shape[1], OD = out.shape[2], OH = out.shape[3], OW = out.shape[4]
    cdef Py_ssize_t G = groups, Cg = C // G, Kg = K // G
    cdef int KB, WB
    if float_t is float:
        KB, WB = (16, 6) if mode == 0 else (kb, {1: 64, 2: 32, 4: 16}[kb])
    else:
        KB, WB = (8, 6) if mode == 0 else (kb, {1: 32, 2: 16, 4: 8}[kb])
    cdef Py_ssize_t nkb = (Kg + KB - 1) // KB
    cdef Py_ssize_t nwblk = (OW + WB - 1) // WB
    cdef Py_ssize_t wcb = max(1, min(wchunk_blocks, nwblk))
    cdef Py_ssize_t nwc = (nwblk + wcb - 1) // wcb
    cdef Py_ssize_t kch = max(1, min(kchunks, nkb))
    cdef Py_ssize_t kcs = (nkb + kch - 1) // kch
    cdef Py_ssize_t ntask = N * G * OD * OH * kch * nwc
    cdef Py_ssize_t Wb = (wcb * WB - 1) * sw + (T - 1) * dw + 1
    cdef Py_ssize_t wblock_len = Cg * R * S * T * KB
    cdef Py_ssize_t buf_len = Cg * R * S * Wb
    cdef Py_ssize_t task, rem, n, g, od, oh, kc, wc, b, b0, b1, blk, ow0, ow_s, ow_e, nj, nk, k0, j, kk
    cdef Py_ssize_t c, r, s, i, pos, idd, ihh, nr, ns, rs, iw0
    cdef float_t* buf
    cdef float_t* res
    cdef Py_ssize_t* rl
    cdef Py_ssize_t* sl
    cdef const float_t* xrow
    cdef const float_t* wblk
    cdef float_t bval
    cdef int failed[1]
    failed[0] = 0
    if ntask == 0:
        return
    with nogil, parallel(num_threads=nthreads):
        buf = <float_t*> malloc(buf_len * sizeof(float_t))
        res = <float_t*> malloc(96 * sizeof(float_t))
        rl = <Py_ssize_t*> malloc(R * sizeof(Py_ssize_t))
        sl = <Py_ssize_t*> malloc(S * sizeof(Py_ssize_t))
        if buf == NULL or res == NULL or rl == NULL or sl == NULL:
            failed[0] = 1
        else:
            for task in prange(ntask, schedule='static'):
                rem = task
                wc = rem % nwc
                rem = rem // nwc
                kc = rem % kch
                rem = rem // kch
                oh = rem % OH
                rem = rem // OH
                od = rem % OD
                rem = rem // OD
                g = rem % G
                n = rem // G
                # valid kernel rows along D and H (zero padding / input dilation give whole zero rows)
                nr = 0
                for r in range(R):
                    pos = od * sd + r * dd - pd
                    if pos >= 0 and pos % ld == 0 and pos // ld < D:
                        rl[nr] = r
                        nr = nr + 1
                ns = 0
                for s in range(S):
                    pos = oh * sh + s * dh - ph
                    if pos >= 0 and pos % lh == 0 and pos // lh < H:
                        sl[ns] = s
                        ns = ns + 1
                ow_s = wc * wcb * WB
                ow_e = min(OW, ow_s + wcb * WB)
                b0 = kc * kcs
                b1 = min(nkb, b0 + kcs)
                if nr == 0 or ns == 0:
                    # every tap reads padding: the outputs are the bias
                    for b in range(b0, b1):
                        k0 = g * Kg + b * KB
                        nk = min(KB, Kg - b * KB)
                        for kk in range(nk):
                            bval = bias[k0 + kk] if has_bias else 0
                            for j in range(ow_s, ow_e):
                                out[n, k0 + kk, od, oh, j] = bval
                    continue
                # gather the input rows of this task, padded and dilated, into buf[c, r, s, :]
                iw0 = ow_s * sw - pw
                for c in range(Cg):
                    for r in range(nr):
                        idd = (od * sd + rl[r] * dd - pd) // ld
                        for s in range(ns):
                            ihh = (oh * sh + sl[s] * dh - ph) // lh
                            rs = (c * R + rl[r]) * S + sl[s]
                            xrow = &x[n, g * Cg + c, idd, ihh, 0]
                            for i in range(Wb):
                                pos = iw0 + i
                                if pos >= 0 and pos % lw == 0 and pos // lw < W:
                                    buf[rs * Wb + i] = xrow[pos // lw]
                                else:
                                    buf[rs * Wb + i] = 0
                for b in range(b0, b1):
                    wblk = &wp[(g * nkb + b) * wblock_len]
                    k0 = g * Kg + b * KB
                    nk = min(KB, Kg - b * KB)
                    for blk in range((ow_e - ow_s + WB - 1) // WB):
                        ow0 = ow_s + blk * WB
                        nj = min(WB, ow_e - ow0)
                        _dispatch(mode, kb, buf, wblk, res, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw,
                                  blk * WB * sw)
                        for kk in range(nk):
                            bval = bias[k0 + kk] if has_bias else 0
                            if mode == 0:
                                for j in range(nj):
                                    out[n, k0 + kk, od, oh, ow0 + j] = res[j * KB + kk] + bval
                            else:
                                for j in range(nj):
                                    out[n, k0 + kk, od, oh, ow0 + j] = res[kk * WB + j] + bval
        free(buf)
        free(res)
        free(rl)
        free(sl)
    if failed[0]:
        raise MemoryError("direct convolution: could not allocate %d bytes of per-thread scratch"
                          % (buf_len * sizeof(float_t)))
