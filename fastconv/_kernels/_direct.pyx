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
from libc.stdlib cimport free
from libc.string cimport memset

from fastconv._kernels.common cimport (Geometry, VECTOR_BYTES, check_scratch, float_t, scratch, vd, vec_t,
                                       vf)


cdef inline Py_ssize_t _floordiv(Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """Floor division for b > 0 and any sign of a (C division truncates toward zero)."""
    if a >= 0:
        return a // b
    return -((-a + b - 1) // b)


cdef inline void _gather_row(const float_t* xrow, Py_ssize_t W, float_t* dst, Py_ssize_t Wb, Py_ssize_t iw0,
                             Py_ssize_t lw, Py_ssize_t phase_sw, float_t* tmp) noexcept nogil:
    """dst[i] = input position iw0 + i of a row of W values dilated by lw (zero outside and between).

    With ``phase_sw > 1`` the row is stored phase-major instead: dst[p * ceil(Wb / phase_sw) + i] holds position
    iw0 + i * phase_sw + p, so strided reads become contiguous (``tmp`` is scratch of Wb elements).
    """
    cdef Py_ssize_t i, p, q, q0, q1, lo, hi, Wp
    if phase_sw > 1:
        _gather_row(xrow, W, tmp, Wb, iw0, lw, 1, tmp)
        Wp = (Wb + phase_sw - 1) // phase_sw
        for p in range(phase_sw):
            for i in range(Wp):
                q = i * phase_sw + p
                dst[p * Wp + i] = tmp[q] if q < Wb else 0
        return
    if lw == 1:
        lo = min(max(0, -iw0), Wb)
        hi = max(lo, min(Wb, W - iw0))
        for i in range(lo):
            dst[i] = 0
        for i in range(lo, hi):
            dst[i] = xrow[iw0 + i]
        for i in range(hi, Wb):
            dst[i] = 0
        return
    for i in range(Wb):
        dst[i] = 0
    q0 = max(0, -_floordiv(-iw0, lw))
    q1 = min(W - 1, _floordiv(iw0 + Wb - 1, lw))
    for q in range(q0, q1 + 1):
        dst[q * lw - iw0] = xrow[q]


cdef inline void _reduce_ch(const float_t* buf, const float_t* wblk, float_t* res, vec_t* tag,
                            Py_ssize_t Cg, const Py_ssize_t* rl, Py_ssize_t nr, const Py_ssize_t* sl,
                            Py_ssize_t ns, Py_ssize_t R, Py_ssize_t S, Py_ssize_t T, Py_ssize_t Wb,
                            Py_ssize_t dw, Py_ssize_t sw, Py_ssize_t off) noexcept nogil:
    """Mode 0: res[j*KB + kk] = sum over c, valid taps of buf[c,r,s, off + t*dw + j*sw] * w[c,r,s,t,kk].

    KB = two vectors of output channels, WB = 6 output columns: 12 vector accumulators (``RES_VECTORS``).
    ``tag`` only selects the vector type matching float_t.
    """
    cdef vec_t acc[12]
    cdef vec_t z, w0, w1, xb
    cdef Py_ssize_t V = sizeof(vec_t) // sizeof(float_t)
    cdef Py_ssize_t c, ir, is_, t, j, rs, RS = R * S
    cdef const float_t* row
    cdef const float_t* wk
    cdef const float_t* row0
    cdef const float_t* wk0
    memset(&z, 0, sizeof(vec_t))
    for j in range(12):
        acc[j] = z
    for ir in range(nr):
        for is_ in range(ns):
            rs = rl[ir] * S + sl[is_]
            row0 = buf + rs * Wb + off
            wk0 = wblk + rs * T * 2 * V
            for c in range(Cg):
                row = row0 + c * RS * Wb
                wk = wk0 + c * RS * T * 2 * V
                for t in range(T):
                    w0 = (<const vec_t*> wk)[0]
                    w1 = (<const vec_t*> (wk + V))[0]
                    for j in range(6):
                        xb = row[j * sw] - z     # broadcast (x - 0 folds to x; adding 0 would not)
                        acc[2 * j] += xb * w0
                        acc[2 * j + 1] += xb * w1
                    wk += 2 * V
                    row += dw
    for j in range(12):
        (<vec_t*> (res + j * V))[0] = acc[j]


cdef inline void _reduce_col(const float_t* buf, const float_t* wblk, float_t* res, vec_t* tag, int KBN,
                             const Py_ssize_t* toff, Py_ssize_t Cg, const Py_ssize_t* rl, Py_ssize_t nr, const Py_ssize_t* sl,
                             Py_ssize_t ns, Py_ssize_t R, Py_ssize_t S, Py_ssize_t T, Py_ssize_t Wb,
                             Py_ssize_t dw, Py_ssize_t sw, Py_ssize_t off) noexcept nogil:
    """Mode 1: res[kk*WV + j] = sum over c, valid taps of w[c,r,s,t,kk] * input(off + t*dw + j*sw).

    KBN output channels (1, 2 or 4) x WV = 8 / KBN vectors of consecutive output columns: 8 vector
    accumulators.  The buffer rows are stored phase-major (see _gather_row) so the columns an output vector
    reads are contiguous for any stride; ``toff[t]`` is where tap t starts in such a row.
    """
    cdef vec_t acc[8]
    cdef vec_t z, wv
    cdef Py_ssize_t V = sizeof(vec_t) // sizeof(float_t)
    cdef Py_ssize_t NQ = 8 // KBN
    cdef Py_ssize_t c, ir, is_, t, q, kk, rs
    cdef Py_ssize_t col0 = off // sw
    cdef const float_t* row
    cdef const float_t* src
    cdef const float_t* wk
    memset(&z, 0, sizeof(vec_t))
    for q in range(8):
        acc[q] = z
    for c in range(Cg):
        for ir in range(nr):
            for is_ in range(ns):
                rs = (c * R + rl[ir]) * S + sl[is_]
                row = buf + rs * Wb + col0
                wk = wblk + rs * T * KBN
                for t in range(T):
                    src = row + toff[t]
                    for kk in range(KBN):
                        wv = wk[kk] - z
                        for q in range(NQ):
                            acc[kk * NQ + q] += wv * (<const vec_t*> (src + q * V))[0]
                    wk += KBN
    for q in range(8):
        (<vec_t*> (res + q * V))[0] = acc[q]


cdef inline void _dispatch(int mode, int kb, const Py_ssize_t* toff, const float_t* buf, const float_t* wblk, float_t* res,
                           Py_ssize_t Cg, const Py_ssize_t* rl, Py_ssize_t nr, const Py_ssize_t* sl,
                           Py_ssize_t ns, Py_ssize_t R, Py_ssize_t S, Py_ssize_t T, Py_ssize_t Wb,
                           Py_ssize_t dw, Py_ssize_t sw, Py_ssize_t off) noexcept nogil:
    # Each call passes compile-time block sizes to an inlined reduction so the register block is unrolled.
    cdef vf* tf = NULL
    cdef vd* td = NULL
    if float_t is float:
        if mode == 0:
            _reduce_ch(buf, wblk, res, tf, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off)
        elif kb == 1:
            _reduce_col(buf, wblk, res, tf, 1, toff, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off)
        elif kb == 2:
            _reduce_col(buf, wblk, res, tf, 2, toff, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off)
        else:
            _reduce_col(buf, wblk, res, tf, 4, toff, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off)
    else:
        if mode == 0:
            _reduce_ch(buf, wblk, res, td, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off)
        elif kb == 1:
            _reduce_col(buf, wblk, res, td, 1, toff, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off)
        elif kb == 2:
            _reduce_col(buf, wblk, res, td, 2, toff, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off)
        else:
            _reduce_col(buf, wblk, res, td, 4, toff, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw, off)


cdef enum:
    RES_VECTORS = 12    # accumulator vectors of the largest register block (mode 0: 2 x 6)


cdef inline (int, int) _blocks(Py_ssize_t V, int mode, int kb) noexcept nogil:
    """(channel block, column block) of a register block with V lanes per vector: mode 0 holds two vectors of
    output channels x 6 columns, mode 1 ``kb`` channels x ``8 / kb`` vectors of columns."""
    if mode == 0:
        return 2 * V, 6
    return kb, (8 // kb) * V


def block_sizes(dtype_is_float, int mode, int kb):
    """(channel block, column block) used by the kernel for a dtype/mode (kb: channel block of mode 1)."""
    return _blocks(VECTOR_BYTES // (sizeof(float) if dtype_is_float else sizeof(double)), mode, kb)


def forward(const float_t[:, :, :, :, ::1] x, const float_t[::1] wp, const float_t[::1] bias,
            float_t[:, :, :, :, ::1] out, Geometry geom, *, bint has_bias, int mode, int kb, int kchunks,
            int wchunk_blocks, int rows_per_task, int nthreads):
    """Direct convolution of x (N, C, D, H, W) into out (N, K, OD, OH, OW); see the module docstring.

    ``geom`` gives the kernel size, strides, dilations, low-side paddings (any sign) and input dilations;
    ``kb`` is the packed channel block, ``kchunks`` how many tasks share the channel blocks of a group,
    ``wchunk_blocks`` how many column blocks and ``rows_per_task`` how many output rows one task computes.
    All arguments are validated by the caller.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], D = x.shape[2], H = x.shape[3], W = x.shape[4]
    cdef Py_ssize_t K = out.shape[1], OD = out.shape[2], OH = out.shape[3], OW = out.shape[4]
    cdef Py_ssize_t G = geom.groups, Cg = C // G, Kg = K // G
    cdef Py_ssize_t R = geom.kd, S = geom.kh, T = geom.kw
    cdef Py_ssize_t sd = geom.sd, sh = geom.sh, sw = geom.sw, dd = geom.dd, dh = geom.dh, dw = geom.dw
    cdef Py_ssize_t pd = geom.pd, ph = geom.ph, pw = geom.pw, ld = geom.ld, lh = geom.lh, lw = geom.lw
    cdef int KB, WB
    KB, WB = _blocks(VECTOR_BYTES // sizeof(float_t), mode, kb)
    cdef Py_ssize_t nkb = (Kg + KB - 1) // KB
    cdef Py_ssize_t nwblk = (OW + WB - 1) // WB
    cdef Py_ssize_t wcb = max(1, min(wchunk_blocks, nwblk))
    cdef Py_ssize_t nwc = (nwblk + wcb - 1) // wcb
    cdef Py_ssize_t kch = max(1, min(kchunks, nkb))
    cdef Py_ssize_t kcs = (nkb + kch - 1) // kch
    cdef Py_ssize_t rpt = max(1, min(rows_per_task, OH))
    cdef Py_ssize_t nohc = (OH + rpt - 1) // rpt
    cdef Py_ssize_t ntask = N * G * OD * nohc * kch * nwc
    cdef Py_ssize_t Wb = (wcb * WB - 1) * sw + (T - 1) * dw + 1
    if mode == 1:   # phase-major rows: whole phases of sw columns each
        Wb = (Wb + sw - 1) // sw * sw
    cdef Py_ssize_t wblock_len = Cg * R * S * T * KB
    cdef Py_ssize_t buf_len = Cg * R * S * Wb
    cdef Py_ssize_t task, rem, n, g, od, oh, ohc, kc, wc, b, b0, b1, blk, ow0, ow_s, ow_e, nj, nk, k0, j, kk
    cdef Py_ssize_t c, r, s, t, pos, idd, ihh, nr, ns, rs, iw0
    cdef float_t* buf
    cdef float_t* res
    cdef float_t* tmp
    cdef Py_ssize_t* rl
    cdef Py_ssize_t* sl
    cdef Py_ssize_t* toff
    cdef const float_t* xrow
    cdef const float_t* wblk
    cdef float_t bval
    cdef int failed[1]
    failed[0] = 0
    if ntask == 0:
        return
    with nogil, parallel(num_threads=nthreads):
        buf = <float_t*> scratch(buf_len * sizeof(float_t), failed)
        res = <float_t*> scratch(RES_VECTORS * VECTOR_BYTES, failed)
        tmp = <float_t*> scratch(Wb * sizeof(float_t), failed)
        rl = <Py_ssize_t*> scratch(R * sizeof(Py_ssize_t), failed)
        sl = <Py_ssize_t*> scratch(S * sizeof(Py_ssize_t), failed)
        toff = <Py_ssize_t*> scratch(T * sizeof(Py_ssize_t), failed)
        if buf == NULL or tmp == NULL or res == NULL or rl == NULL or sl == NULL or toff == NULL:
            failed[0] = 1
        else:
            for t in range(T):   # phase-major row offset of tap t (mode 1)
                toff[t] = ((t * dw) % sw) * (Wb // sw) + (t * dw) // sw
            for task in prange(ntask, schedule='static'):
                rem = task
                wc = rem % nwc
                rem = rem // nwc
                kc = rem % kch
                rem = rem // kch
                ohc = rem % nohc
                rem = rem // nohc
                od = rem % OD
                rem = rem // OD
                g = rem % G
                n = rem // G
                for oh in range(ohc * rpt, min(OH, ohc * rpt + rpt)):
                    # valid kernel rows along D and H (zero padding / input dilation give whole zero rows)
                    nr = 0
                    for r in range(R):
                        pos = od * sd + r * dd - pd
                        if pos >= 0 and (pos < D if ld == 1 else (pos % ld == 0 and pos // ld < D)):
                            rl[nr] = r
                            nr = nr + 1
                    ns = 0
                    for s in range(S):
                        pos = oh * sh + s * dh - ph
                        if pos >= 0 and (pos < H if lh == 1 else (pos % lh == 0 and pos // lh < H)):
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
                            idd = od * sd + rl[r] * dd - pd
                            if ld > 1:
                                idd = idd // ld
                            for s in range(ns):
                                ihh = oh * sh + sl[s] * dh - ph
                                if lh > 1:
                                    ihh = ihh // lh
                                rs = (c * R + rl[r]) * S + sl[s]
                                xrow = &x[n, g * Cg + c, idd, ihh, 0]
                                _gather_row(xrow, W, &buf[rs * Wb], Wb, iw0, lw, sw if mode == 1 else 1, tmp)
                    for b in range(b0, b1):
                        wblk = &wp[(g * nkb + b) * wblock_len]
                        k0 = g * Kg + b * KB
                        nk = min(KB, Kg - b * KB)
                        for blk in range((ow_e - ow_s + WB - 1) // WB):
                            ow0 = ow_s + blk * WB
                            nj = min(WB, ow_e - ow0)
                            _dispatch(mode, kb, toff, buf, wblk, res, Cg, rl, nr, sl, ns, R, S, T, Wb, dw, sw,
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
        free(tmp)
        free(rl)
        free(sl)
        free(toff)
    check_scratch(failed[0], "direct convolution", buf_len * sizeof(float_t))


# ----------------------------------------------------------------------------------------------- exact taps
cdef inline Py_ssize_t _source(Py_ssize_t pos, Py_ssize_t n, Py_ssize_t l) noexcept nogil:
    """What position ``pos`` of an axis of ``n`` input elements dilated by ``l`` holds: the element's index
    (>= 0), -1 for zero padding (outside the dilated input), -2 for a hole between two dilated elements."""
    if pos < 0 or pos > (n - 1) * l:
        return -1
    if pos % l:
        return -2
    return pos // l


def exact(const float_t[:, :, :, :, ::1] x, const float_t[:, :, :, :, ::1] w, const float_t[::1] bias,
          float_t[:, :, :, :, ::1] out, Geometry geom, const Py_ssize_t[::1] channels, *, bint has_bias,
          bint pad_zeros, int nthreads):
    """Recompute the output channels ``channels`` of :func:`forward` tap by tap, forming exactly the products the
    non-finite contract names: one per tap that reads an input element, and ``0 * w`` per tap that reads zero
    padding when ``pad_zeros`` (forward convolution and weight gradient: ``0 * inf`` is NaN, as in PyTorch);
    taps on the holes of an input dilation (transposed convolution, input gradient), and on padding without
    ``pad_zeros``, are skipped.

    The tiled kernel multiplies the zeros it gathers for padding and holes along W and skips padding rows along
    D and H; that is exact for a finite kernel (``0 * w == 0``), so only channels whose kernel ``w[k]`` holds an
    inf or NaN come here.  ``w`` is unpacked (K, Cg, R, S, T); one thread per (n, channel, od, oh) row, so results
    do not depend on the thread count.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], D = x.shape[2], H = x.shape[3], W = x.shape[4]
    cdef Py_ssize_t K = out.shape[1], OD = out.shape[2], OH = out.shape[3], OW = out.shape[4]
    cdef Py_ssize_t G = geom.groups, Cg = C // G, Kg = K // G, NC = channels.shape[0]
    cdef Py_ssize_t R = geom.kd, S = geom.kh, T = geom.kw
    cdef Py_ssize_t task, n, ci, k, g, od, oh, ow, c, r, s, t, idd, ihh, iww
    cdef float_t acc, wv, zero = 0
    with nogil:
        for task in prange(N * NC * OD * OH, schedule='static', num_threads=nthreads):
            oh = task % OH
            od = (task // OH) % OD
            ci = (task // (OH * OD)) % NC
            n = task // (OH * OD * NC)
            k = channels[ci]
            g = k // Kg
            for ow in range(OW):
                acc = 0
                for c in range(Cg):
                    for r in range(R):
                        idd = _source(od * geom.sd + r * geom.dd - geom.pd, D, geom.ld)
                        if idd == -2 or (idd == -1 and not pad_zeros):
                            continue
                        for s in range(S):
                            ihh = _source(oh * geom.sh + s * geom.dh - geom.ph, H, geom.lh)
                            if ihh == -2 or (ihh == -1 and not pad_zeros):
                                continue
                            for t in range(T):
                                iww = _source(ow * geom.sw + t * geom.dw - geom.pw, W, geom.lw)
                                if iww == -2 or (iww == -1 and not pad_zeros):
                                    continue
                                wv = w[k, c, r, s, t]
                                if idd < 0 or ihh < 0 or iww < 0:
                                    acc = acc + zero * wv
                                else:
                                    acc = acc + x[n, g * Cg + c, idd, ihh, iww] * wv
                out[n, k, od, oh, ow] = acc + (bias[k] if has_bias else 0)
