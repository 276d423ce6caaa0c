# cython: language_level=3
"""Direct convolution for few channels per group: depthwise layers and the runs that have few output channels.

A grouped convolution with ``cin`` input channels and ``kout`` output channels per group (depthwise: 1 and the
channel multiplier; its input gradient: the multiplier and 1; a single-channel image: 1 and 1) has too few output
channels to vectorise over them, so these kernels vectorise over output columns instead:

* :func:`forward` -- a task owns (image, group, output depth, a block of output rows).  It gathers the band of
  input rows those outputs read, for its ``cin`` channels, into a per-thread buffer once (zero padding and input
  dilation resolved there, rows stored phase-major by the W stride so every output run reads contiguous columns),
  then computes ``FC_DW_ROWS`` output rows x ``FC_DW_VECS`` vectors of columns at a time with the accumulators in
  registers: one weight broadcast against every row and vector of the block.  Outputs (plus bias) are stored
  straight into ``out``.  With one input channel per group a thread runs chunks of consecutive tasks and
  prefetches the next task's input rows while one computes.
* :func:`grad_weight` -- a task owns (a fixed chunk of the batch, group) and accumulates every weight of its group
  over its chunk: for each kernel row, up to ``FC_DWG_TAPS`` taps along W at once, one 64-byte lane group of
  accumulators per tap (one output-gradient load serves them all; the lanes are the same at every SIMD level, so
  is the result).  Partial sums per chunk go to ``part`` and are added in
  chunk order by the caller; the bias gradient (sum of the output gradient per channel) comes out of the same
  pass while the rows are in cache.  Depthwise tasks prefetch the next band's rows of both operands while a band
  computes (a task's last band: the first of the next task of its chunk): the kernel streams two arrays at a few
  multiply-adds per element, and each band starts two planes the hardware prefetchers have not seen.

Input dilation ("lhs dilation") lets :func:`forward` compute transposed convolutions and input gradients; gathered
band rows that are entirely zero (padding, or dilation along H) are skipped.  Every output element is written by
one task in a fixed summation order (input channel, kernel depth, row, column tap), and the chunking comes from
the shapes only, so results do not depend on the number of threads.
"""
cdef extern from *:
    """
    #define FC_INLINE_KERNELS 1
    #define fc_dw_prefetch(p) __builtin_prefetch((const void *)(p), 0, 2)
    """
    void fc_dw_prefetch(const void* p) nogil

from cython.parallel cimport parallel, prange
from libc.stdlib cimport free
from libc.string cimport memset

from fastconv._kernels.common cimport (FC_DW_ACCS, FC_DW_ROWS, FC_DW_VECS, FC_DWG_ACCS, FC_DWG_SROWS, FC_DWG_TAPS,
                                       FC_LANE_BYTES, FC_LANE_VECS, FC_VEC_FLOATS, Geometry, VECTOR_BYTES,
                                       Tile, check_scratch, float_t, gather_row, nonfinite,
                                       scratch, tile_of, vd, vec_t, vf)


cdef inline int _block_vecs(Py_ssize_t OW, Py_ssize_t V, int NJ) noexcept nogil:
    """Vectors of columns per register block of NJ output channels: as few as cover the row (the rest of the
    block is rows), at most FC_DW_ACCS / NJ."""
    cdef int most = FC_DW_ACCS // NJ
    if most > FC_DW_VECS:
        most = FC_DW_VECS
    if OW <= V or most < 2:
        return 1
    if OW <= 2 * V or most < 4:
        return 2
    return 4


cdef inline int _block_channels(Py_ssize_t kout) noexcept nogil:
    """Output channels per register block: every channel of the group up to 4 (4 for 3)."""
    return 1 if kout == 1 else 2 if kout == 2 else 4


def block_width(Py_ssize_t itemsize, Py_ssize_t OW, Py_ssize_t kout=1):
    """Output columns per register block for float32 (itemsize 4) or float64 (8) rows of OW outputs."""
    cdef Py_ssize_t V = VECTOR_BYTES // itemsize
    return _block_vecs(OW, V, _block_channels(kout)) * V


def block_rows(Py_ssize_t itemsize, Py_ssize_t OW, Py_ssize_t kout=1):
    """Output rows per register block."""
    cdef int NJ = _block_channels(kout)
    return FC_DW_ACCS // (NJ * _block_vecs(OW, VECTOR_BYTES // itemsize, NJ))


cdef inline void _block(const float_t* buf, const float_t* zrow, Py_ssize_t Hb, Py_ssize_t Wb,
                        const unsigned char* valid, const float_t* wk, Py_ssize_t wstride, Py_ssize_t nj,
                        const float_t* wzero, Py_ssize_t cin, const Py_ssize_t* rl, Py_ssize_t nr, Py_ssize_t R,
                        Py_ssize_t S, Py_ssize_t T, const Py_ssize_t* toff, Py_ssize_t row0, Py_ssize_t nrows,
                        Py_ssize_t sh, Py_ssize_t dh, Py_ssize_t col0, float_t* orow, Py_ssize_t OW,
                        Py_ssize_t ostride, const float_t* bias, int NJ, int NR, int NV, vec_t* tag) noexcept nogil:
    """NJ output channels (nj <= NJ of them real, weights ``wk`` + jj * wstride; the others read the zero weights
    ``wzero`` and are not stored) x output rows row0 .. row0 + nrows - 1 of the task (nrows <= NR) x columns
    col0 .. col0 + NV * V - 1 (those below OW are stored; ``orow`` is channel 0, output row row0 of the task, rows
    OW and channels ``ostride`` apart).  Callers pass NJ x NR x NV = FC_DW_ACCS as literals, so narrow images and
    few channels keep every accumulator busy, and each loaded input vector serves all NJ channels.

    acc[jj, ii, q] = sum over channel i, valid depth tap r, row tap s, column tap t of
    w[jj, i, r, s, t] * band(i, r)[(row0 + ii) * sh + s * dh][toff[t] + col0 + q * V ...]
    """
    cdef vec_t acc[FC_DW_ACCS]
    cdef vec_t wv[4]
    cdef vec_t z, xv, bv
    cdef const float_t* rp[FC_DW_ACCS]
    cdef const float_t* wr[4]
    cdef float_t tmp[FC_VEC_FLOATS]
    cdef Py_ssize_t V = sizeof(vec_t) // sizeof(float_t)
    cdef Py_ssize_t i, ri, r, s, t, ii, q, b, c0, l, jj, off
    cdef const float_t* base
    cdef float_t* dst
    memset(&z, 0, sizeof(vec_t))
    for q in range(FC_DW_ACCS):
        acc[q] = z
    for i in range(cin):
        for ri in range(nr):
            r = rl[ri]
            base = buf + (i * nr + ri) * Hb * Wb
            for s in range(S):
                # the band row each output row reads under row tap s; rows of zeros (padding, input dilation)
                # and rows past the block read the zero row, so the inner loop has no branches
                for ii in range(NR):
                    b = (row0 + ii) * sh + s * dh
                    rp[ii] = (base + b * Wb if ii < nrows and valid[b] else zrow) + col0
                off = ((i * R + r) * S + s) * T
                for jj in range(NJ):
                    wr[jj] = (wk + jj * wstride if jj < nj else wzero) + off
                for t in range(T):
                    for jj in range(NJ):
                        wv[jj] = wr[jj][t] - z     # broadcast (x - 0 folds to x)
                    for ii in range(NR):
                        for q in range(NV):
                            xv = (<const vec_t*> (rp[ii] + toff[t] + q * V))[0]
                            for jj in range(NJ):
                                acc[(jj * NR + ii) * NV + q] += wv[jj] * xv
    for jj in range(NJ):
        if jj < nj:
            bv = bias[jj] - z
            for ii in range(NR):
                if ii < nrows:
                    for q in range(NV):
                        c0 = col0 + q * V
                        dst = orow + jj * ostride + ii * OW + c0
                        if c0 + V <= OW:
                            (<vec_t*> dst)[0] = acc[(jj * NR + ii) * NV + q] + bv
                        elif c0 < OW:
                            (<vec_t*> tmp)[0] = acc[(jj * NR + ii) * NV + q] + bv
                            for l in range(OW - c0):
                                dst[l] = tmp[l]


cdef inline void _dispatch(int NJ, int NV, const float_t* buf, const float_t* zrow, Py_ssize_t Hb, Py_ssize_t Wb,
                           const unsigned char* valid, const float_t* wk, Py_ssize_t wstride, Py_ssize_t nj,
                           const float_t* wzero, Py_ssize_t cin, const Py_ssize_t* rl, Py_ssize_t nr, Py_ssize_t R,
                           Py_ssize_t S, Py_ssize_t T, const Py_ssize_t* toff, Py_ssize_t row0, Py_ssize_t nrows,
                           Py_ssize_t sh, Py_ssize_t dh, Py_ssize_t col0, float_t* orow, Py_ssize_t OW,
                           Py_ssize_t ostride, const float_t* bias) noexcept nogil:
    # Each call passes compile-time block sizes to the inlined block so its loops unroll (NJ * NR * NV =
    # FC_DW_ACCS); _block_vecs never picks NJ * NV > FC_DW_ACCS.
    cdef vf* tf = NULL
    cdef vd* td = NULL
    if float_t is float:
        if NJ == 1 and NV == 4:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 1, FC_DW_ACCS // 4, 4, tf)
        elif NJ == 1 and NV == 2:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 1, FC_DW_ACCS // 2, 2, tf)
        elif NJ == 1:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 1, FC_DW_ACCS, 1, tf)
        elif NJ == 2 and NV == 4:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 2, FC_DW_ACCS // 8, 4, tf)
        elif NJ == 2 and NV == 2:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 2, FC_DW_ACCS // 4, 2, tf)
        elif NJ == 2:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 2, FC_DW_ACCS // 2, 1, tf)
        elif NV == 4:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 4, FC_DW_ACCS // 16, 4, tf)
        elif NV == 2:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 4, FC_DW_ACCS // 8, 2, tf)
        else:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 4, FC_DW_ACCS // 4, 1, tf)
    else:
        if NJ == 1 and NV == 4:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 1, FC_DW_ACCS // 4, 4, td)
        elif NJ == 1 and NV == 2:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 1, FC_DW_ACCS // 2, 2, td)
        elif NJ == 1:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 1, FC_DW_ACCS, 1, td)
        elif NJ == 2 and NV == 4:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 2, FC_DW_ACCS // 8, 4, td)
        elif NJ == 2 and NV == 2:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 2, FC_DW_ACCS // 4, 2, td)
        elif NJ == 2:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 2, FC_DW_ACCS // 2, 1, td)
        elif NV == 4:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 4, FC_DW_ACCS // 16, 4, td)
        elif NV == 2:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 4, FC_DW_ACCS // 8, 2, td)
        else:
            _block(buf, zrow, Hb, Wb, valid, wk, wstride, nj, wzero, cin, rl, nr, R, S, T, toff, row0, nrows, sh,
                   dh, col0, orow, OW, ostride, bias, 4, FC_DW_ACCS // 4, 1, td)


def forward(const float_t[:, :, :, :, ::1] x, const float_t[:, :, :, :, ::1] w, const float_t[::1] bias,
            float_t[:, :, :, :, ::1] out, Geometry geom, *, bint has_bias, Py_ssize_t rows_per_task, int nthreads):
    """out (N, K, OD, OH, OW) = grouped convolution of x (N, C, D, H, W) with w (K, cin, R, S, T): ``geom.groups``
    groups of cin = C / groups input and K / groups output channels; ``geom`` gives the strides, dilations,
    low-side paddings (any sign) and input dilations (the kernel size is w's).

    Tasks are (image, group, output depth, block of ``rows_per_task`` output rows).  Everything is validated by the
    caller (bounds checks are off)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], D = x.shape[2], H = x.shape[3], W = x.shape[4]
    cdef Py_ssize_t K = out.shape[1], OD = out.shape[2], OH = out.shape[3], OW = out.shape[4]
    cdef Py_ssize_t R = w.shape[2], S = w.shape[3], T = w.shape[4]
    cdef Py_ssize_t G = geom.groups, cin = C // G, kout = K // G
    cdef Py_ssize_t sd = geom.sd, sh = geom.sh, sw = geom.sw, dd = geom.dd, dh = geom.dh, dw = geom.dw
    cdef Py_ssize_t pd = geom.pd, ph = geom.ph, pw = geom.pw, ld = geom.ld, lh = geom.lh, lw = geom.lw
    cdef Py_ssize_t V = VECTOR_BYTES // sizeof(float_t)
    cdef int NJ = _block_channels(kout)
    cdef int NV = _block_vecs(OW, V, NJ)
    cdef int NR = FC_DW_ACCS // (NJ * NV)
    cdef Py_ssize_t WB = NV * V
    cdef Py_ssize_t ncb = (OW + WB - 1) // WB
    cdef Py_ssize_t rpt = max(1, min(rows_per_task, OH))
    cdef Py_ssize_t nrb = (OH + rpt - 1) // rpt
    # band slots: output row r of the task reads slot r * A + s * B under row tap s.  Dense bands (A, B = the
    # stride and dilation) share the rows that neighbouring outputs read; a band that would be mostly unused
    # (a dilation larger than the block) keeps one slot per (row, tap) instead (A, B = S, 1).
    cdef bint sparse = ((S > 1 and dh > rpt * S) or (rpt > 1 and sh > rpt * S)      # (no overflow below)
                        or (rpt - 1) * sh + (S - 1) * dh + 1 > rpt * S)
    cdef Py_ssize_t A = S if sparse else sh, B = 1 if sparse else dh
    cdef Py_ssize_t Hb = (rpt - 1) * A + (S - 1) * B + 1
    cdef Py_ssize_t Wb = (ncb * WB - 1) * sw + (T - 1) * dw + 1
    Wb = (Wb + sw - 1) // sw * sw
    cdef Py_ssize_t buf_len = cin * R * Hb * Wb
    cdef Py_ssize_t ntask = N * G * OD * nrb
    cdef Tile cur, nxt
    cdef Py_ssize_t task, n, g, od, rb, oh0, oh1, i, r, ri, nr, b, pos, idp, j, k, rr, rr0, cb, t, nj, jj
    cdef Py_ssize_t rb2, od2, g2, n2, lo, hi, l, nb, pfl
    # tasks in chunks of 4 consecutive ones where there are many (a chunk's tasks run on one thread, which can
    # then prefetch its next task's rows), one at a time where chunks would leave threads idle at the end
    cdef Py_ssize_t chunk = 4 if ntask >= 32 * nthreads else 1
    cdef const char* pf
    cdef float_t* buf
    cdef float_t* zrow
    cdef float_t* wzero
    cdef float_t* bvals
    cdef unsigned char* valid
    cdef Py_ssize_t* rl
    cdef Py_ssize_t* toff
    cdef int failed[1]
    failed[0] = 0
    if ntask == 0 or K == 0:
        return
    with nogil, parallel(num_threads=nthreads):
        buf = <float_t*> scratch((buf_len + Wb + cin * R * S * T + 4) * sizeof(float_t), failed)
        zrow = buf + buf_len
        wzero = zrow + Wb
        bvals = wzero + cin * R * S * T
        valid = <unsigned char*> scratch(Hb, failed)
        rl = <Py_ssize_t*> scratch(R * sizeof(Py_ssize_t), failed)
        toff = <Py_ssize_t*> scratch(T * sizeof(Py_ssize_t), failed)
        if buf == NULL or valid == NULL or rl == NULL or toff == NULL:
            failed[0] = 1
        else:
            memset(zrow, 0, (Wb + cin * R * S * T) * sizeof(float_t))
            for t in range(T):   # where column tap t starts in a phase-major band row
                toff[t] = ((t * dw) % sw) * (Wb // sw) + (t * dw) // sw
        for task in prange(ntask, schedule='dynamic', chunksize=chunk):
            if failed[0]:
                continue
            # one input channel per group, no input dilation: the next task's band of input rows (the thread's
            # next task, but at the end of its chunk) is prefetched while this one computes
            pf = NULL
            pfl = 0
            if cin == 1 and lh == 1 and ld == 1 and task + 1 < ntask and (task + 1) % chunk != 0:
                nxt = tile_of(task + 1, G, OD, nrb)      # (image, group, output depth, block of rows)
                n2, g2, od2, rb2 = nxt.n, nxt.t1, nxt.t2, nxt.t3
                lo = max(0, rb2 * rpt * sh - ph)
                hi = min(H - 1, (min(OH, rb2 * rpt + rpt) - 1) * sh + (S - 1) * dh - ph)
                idp = od2 * sd - pd
                for r in range(R):
                    if idp >= 0:
                        break
                    idp = idp + dd
                if hi >= lo and 0 <= idp < D:
                    pf = <const char*> &x[n2, g2, idp, lo, 0]
                    pfl = ((hi - lo + 1) * W * <Py_ssize_t> sizeof(float_t) + 63) // 64
            cur = tile_of(task, G, OD, nrb)
            n, g, od, rb = cur.n, cur.t1, cur.t2, cur.t3
            oh0 = rb * rpt
            oh1 = min(OH, oh0 + rpt)
            # valid depth taps (zero padding / input dilation along D give whole zero slices)
            nr = 0
            for r in range(R):
                pos = od * sd + r * dd - pd
                if pos >= 0 and pos % ld == 0 and pos // ld < D:
                    rl[nr] = r
                    nr = nr + 1
            # the band of input rows: band row b is (dilated, padded) input row oh0 * sh + b - ph
            for b in range(Hb):
                pos = (oh0 + b // S) * sh + (b % S) * dh - ph if sparse else oh0 * sh + b - ph
                valid[b] = pos >= 0 and pos % lh == 0 and pos // lh < H
            if nr > 0:
                for i in range(cin):
                    for ri in range(nr):
                        idp = (od * sd + rl[ri] * dd - pd) // ld
                        for b in range(Hb):
                            if valid[b]:
                                pos = (oh0 + b // S) * sh + (b % S) * dh - ph if sparse else oh0 * sh + b - ph
                                gather_row(&x[n, g * cin + i, idp, pos // lh, 0], W,
                                           buf + ((i * nr + ri) * Hb + b) * Wb, Wb, -pw, lw, sw)
            for j in range((kout + NJ - 1) // NJ):
                k = g * kout + j * NJ
                nj = min(NJ, kout - j * NJ)
                for jj in range(nj):
                    bvals[jj] = bias[k + jj] if has_bias else 0
                for rr0 in range((oh1 - oh0 + NR - 1) // NR):
                    if pf != NULL:
                        nb = (oh1 - oh0 + NR - 1) // NR
                        for l in range(rr0 * pfl // nb, (rr0 + 1) * pfl // nb):
                            fc_dw_prefetch(pf + l * 64)
                    rr = oh0 + rr0 * NR
                    for cb in range(ncb):
                        _dispatch(NJ, NV, buf, zrow, Hb, Wb, valid, &w[k, 0, 0, 0, 0], cin * R * S * T, nj, wzero,
                                  cin, rl, nr, R, S, T, toff, rr - oh0, min(NR, oh1 - rr), A, B, cb * WB,
                                  &out[n, k, od, rr, 0], OW, OD * OH * OW, bvals)
        free(buf)
        free(valid)
        free(rl)
        free(toff)
    check_scratch(failed[0], "direct convolution", buf_len * sizeof(float_t))


cdef inline void _load_group(vec_t* gv, const float_t* p) noexcept nogil:
    """gv = the 64-byte lane group at p, as FC_LANE_VECS native vectors."""
    cdef Py_ssize_t u, V = sizeof(vec_t) // sizeof(float_t)
    for u in range(FC_LANE_VECS):
        gv[u] = (<const vec_t*> (p + u * V))[0]


cdef inline void _band_fmas(vec_t* acc, const vec_t* gv, const float_t** rows, const Py_ssize_t* offs,
                            Py_ssize_t at, Py_ssize_t ns, Py_ssize_t nt) noexcept nogil:
    """acc[(si * nt + tt) * FC_LANE_VECS ...] += gv * the lane group at rows[si] + offs[tt] + at, for si < ns,
    tt < nt (one output-gradient lane group against the taps of :func:`_wgrad_band`)."""
    cdef Py_ssize_t si, tt, u, a, V = sizeof(vec_t) // sizeof(float_t)
    for si in range(FC_DWG_SROWS):
        if si < ns:
            for tt in range(FC_DWG_TAPS):
                if tt < nt:
                    a = (si * nt + tt) * FC_LANE_VECS
                    for u in range(FC_LANE_VECS):
                        acc[a + u] += gv[u] * (<const vec_t*> (rows[si] + offs[tt] + at + u * V))[0]


cdef inline void _wgrad_band(const float_t* xband, const float_t* xtl, const float_t* gy0, Py_ssize_t OW,
                             const float_t* gtl, const unsigned char* valid, const float_t* zrow,
                             const float_t* ztl, Py_ssize_t nrows, Py_ssize_t sh, Py_ssize_t s0, Py_ssize_t ns,
                             Py_ssize_t B, Py_ssize_t nq, bint tail, const Py_ssize_t* toff, Py_ssize_t t0,
                             Py_ssize_t nt, Py_ssize_t T, Py_ssize_t Wb, float_t* lacc, const char* pf1,
                             Py_ssize_t pfl1, const char* pf2, Py_ssize_t pfl2, vec_t* tag) noexcept nogil:
    """lacc[si * T + tt] (one 64-byte lane group per tap (s0 + si, t0 + tt), si < ns, tt < nt, ns * nt <=
    FC_DWG_ACCS / FC_LANE_VECS) += sum over the band's output rows oh < nrows of sum over lane groups q of
    gy[oh][q*L ...] * xband[b][toff[t0 + tt] + q*L ...], band row b = oh*sh + (s0 + si)*B (rows Wb apart); the
    last, partial group (``tail``) comes from the zero-padded copy ``gtl[oh]`` against the band rows themselves
    (``xtl`` NULL: the caller has made the columns read past the row's last output zero or finite, so the zero
    lanes of gtl add +0 products) or against the zero-padded copies ``xtl[b][t]``.  The accumulators stay in
    registers for the whole band, and each output-gradient vector is loaded once for all ns x nt taps (a single
    kernel row of 3 taps had waited on its own FMA latency); lane l of a tap sums the columns l, l + L, ... in row
    order, whatever the vector width.  A band row that is not valid (padding) is skipped when ns == 1, else read as
    the zero row ``zrow`` (and zero tail ``ztl``): the output gradient is finite on this path and the accumulators
    start at +0, so adding its zero products leaves every sum's bits as skipping the row does."""
    cdef vec_t acc[FC_DWG_ACCS]
    cdef vec_t gv[FC_LANE_VECS]
    cdef const float_t* xr[FC_DWG_SROWS]
    cdef const float_t* xt[FC_DWG_SROWS]
    cdef Py_ssize_t V = sizeof(vec_t) // sizeof(float_t)
    cdef Py_ssize_t L = FC_LANE_BYTES // sizeof(float_t)
    cdef Py_ssize_t tails[FC_DWG_TAPS]      # the taps' offsets in a row's zero-padded last lane groups
    cdef Py_ssize_t q, si, tt, u, oh, b
    for tt in range(FC_DWG_TAPS):
        tails[tt] = tt * L
    for si in range(FC_DWG_SROWS):
        if si < ns:
            for tt in range(FC_DWG_TAPS):
                if tt < nt:
                    for u in range(FC_LANE_VECS):
                        acc[(si * nt + tt) * FC_LANE_VECS + u] = (<vec_t*> (lacc + (si * T + tt) * L + u * V))[0]
    for oh in range(nrows):
        # the next band's output gradient and input rows, a few cache lines per output row of this one
        if pf1 != NULL:
            for u in range(pfl1):
                fc_dw_prefetch(pf1 + (oh * pfl1 + u) * 64)
        if pf2 != NULL:
            for u in range(pfl2):
                fc_dw_prefetch(pf2 + (oh * pfl2 + u) * 64)
        if ns == 1 and not valid[oh * sh + s0 * B]:
            continue
        for si in range(FC_DWG_SROWS):
            if si < ns:
                b = oh * sh + (s0 + si) * B
                xr[si] = xband + b * Wb if valid[b] else zrow
                if xtl != NULL:
                    xt[si] = xtl + (b * T + t0) * L if valid[b] else ztl
        for q in range(nq):
            _load_group(gv, gy0 + oh * OW + q * L)
            _band_fmas(acc, gv, xr, toff + t0, q * L, ns, nt)
        if tail:
            _load_group(gv, gtl + oh * L)
            if xtl == NULL:
                _band_fmas(acc, gv, xr, toff + t0, nq * L, ns, nt)
            else:
                _band_fmas(acc, gv, xt, tails, 0, ns, nt)
    for si in range(FC_DWG_SROWS):
        if si < ns:
            for tt in range(FC_DWG_TAPS):
                if tt < nt:
                    for u in range(FC_LANE_VECS):
                        (<vec_t*> (lacc + (si * T + tt) * L + u * V))[0] = acc[(si * nt + tt) * FC_LANE_VECS + u]


cdef inline void _wgrad_taps(const float_t* xband, const float_t* xtl, const float_t* gy0, Py_ssize_t OW,
                             const float_t* gtl, const unsigned char* valid, const float_t* zrow,
                             const float_t* ztl, Py_ssize_t nrows, Py_ssize_t sh, Py_ssize_t s0, Py_ssize_t ns,
                             Py_ssize_t B, Py_ssize_t nq, bint tail, const Py_ssize_t* toff, Py_ssize_t t0,
                             Py_ssize_t nt, Py_ssize_t T, Py_ssize_t Wb, float_t* lacc, const char* pf1,
                             Py_ssize_t pfl1, const char* pf2, Py_ssize_t pfl2, vec_t* tag) noexcept nogil:
    """:func:`_wgrad_band` with literal row and tap counts for the common ones (FC_DWG_SROWS or fewer rows of
    3 taps: 3 x 3 kernels; one row of a full block of taps), so that its loops unroll and the accumulators stay
    in registers."""
    if (float_t is float and vec_t is vf) or (float_t is double and vec_t is vd):    # matching types only
        if nt == 3 and ns == FC_DWG_SROWS:
            _wgrad_band(xband, xtl, gy0, OW, gtl, valid, zrow, ztl, nrows, sh, s0, FC_DWG_SROWS, B, nq, tail, toff,
                        t0, 3, T, Wb, lacc, pf1, pfl1, pf2, pfl2, tag)
        elif nt == 3 and ns == 1:
            _wgrad_band(xband, xtl, gy0, OW, gtl, valid, zrow, ztl, nrows, sh, s0, 1, B, nq, tail, toff, t0, 3, T,
                        Wb, lacc, pf1, pfl1, pf2, pfl2, tag)
        elif nt == 3:
            _wgrad_band(xband, xtl, gy0, OW, gtl, valid, zrow, ztl, nrows, sh, s0, ns, B, nq, tail, toff, t0, 3, T,
                        Wb, lacc, pf1, pfl1, pf2, pfl2, tag)
        elif nt == FC_DWG_TAPS:
            _wgrad_band(xband, xtl, gy0, OW, gtl, valid, zrow, ztl, nrows, sh, s0, 1, B, nq, tail, toff, t0,
                        FC_DWG_TAPS, T, Wb, lacc, pf1, pfl1, pf2, pfl2, tag)
        else:
            _wgrad_band(xband, xtl, gy0, OW, gtl, valid, zrow, ztl, nrows, sh, s0, 1, B, nq, tail, toff, t0, nt, T,
                        Wb, lacc, pf1, pfl1, pf2, pfl2, tag)


cdef inline void _bias_band(const float_t* gy0, Py_ssize_t OW, const float_t* gtl, Py_ssize_t nrows,
                            Py_ssize_t nq, bint tail, float_t* lacc, vec_t* tag) noexcept nogil:
    """lacc (one lane group) += every full lane group of the band's nrows output-gradient rows, and their
    zero-padded last groups ``gtl``."""
    cdef vec_t acc[FC_LANE_VECS]
    cdef Py_ssize_t V = sizeof(vec_t) // sizeof(float_t)
    cdef Py_ssize_t L = FC_LANE_BYTES // sizeof(float_t)
    cdef Py_ssize_t q, u, oh
    for u in range(FC_LANE_VECS):
        acc[u] = (<vec_t*> (lacc + u * V))[0]
    for oh in range(nrows):
        for q in range(nq):
            for u in range(FC_LANE_VECS):
                acc[u] += (<const vec_t*> (gy0 + oh * OW + q * L + u * V))[0]
        if tail:
            for u in range(FC_LANE_VECS):
                acc[u] += (<const vec_t*> (gtl + oh * L + u * V))[0]
    for u in range(FC_LANE_VECS):
        (<vec_t*> (lacc + u * V))[0] = acc[u]


cdef inline float_t _hsum(const float_t* v, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t l
    cdef float_t s = 0
    for l in range(n):
        s = s + v[l]
    return s


def grad_weight(const float_t[:, :, :, :, ::1] x, const float_t[:, :, :, :, ::1] gy, float_t[:, :, ::1] part,
                float_t[:, ::1] bpart, Geometry geom, *, bint with_bias, Py_ssize_t nchunks,
                Py_ssize_t rows_per_block, int nthreads):
    """part[chunk, k, (i, r, s, t)] = sum over the images of ``chunk`` and every output position of
    gy[n, k, od, oh, ow] * x_padded[n, g * cin + i, od*sd + r*dd - pd, oh*sh + s*dh - ph, ow*sw + t*dw - pw]
    (and, with ``with_bias``, bpart[chunk, k] = the sum of gy[n, k] over the chunk's images), for the grouped
    convolution ``geom`` (cin = C / groups input channels per group).  The batch is split into ``nchunks`` chunks (from the
    shape only); the caller adds the chunks in order.  A task gathers a band of ``rows_per_block`` output rows'
    input rows at a time.  Everything is validated by the caller.  Returns whether every element of ``gy`` is
    finite (each band's rows are checked as they are read; when one is not, the caller computes the gradient
    another way: the products here skip rows of padding)."""
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], D = x.shape[2], H = x.shape[3], W = x.shape[4]
    cdef Py_ssize_t K = gy.shape[1], OD = gy.shape[2], OH = gy.shape[3], OW = gy.shape[4]
    cdef Py_ssize_t G = geom.groups, cin = C // G, kout = K // G
    cdef Py_ssize_t R = geom.kd, S = geom.kh, T = geom.kw
    cdef Py_ssize_t sd = geom.sd, sh = geom.sh, sw = geom.sw, dd = geom.dd, dh = geom.dh, dw = geom.dw
    cdef Py_ssize_t pd = geom.pd, ph = geom.ph, pw = geom.pw
    cdef Py_ssize_t L = FC_LANE_BYTES // sizeof(float_t)
    cdef Py_ssize_t nq = OW // L          # full lane groups of an output row
    cdef bint tail = OW > nq * L          # and a partial one, handled on zero-padded copies
    cdef Py_ssize_t ntl = OW - nq * L
    cdef Py_ssize_t RST = R * S * T, ntap = kout * cin * RST
    cdef Py_ssize_t rpb = max(1, min(rows_per_block, OH))
    # band slots as in forward: dense (A, B = stride, dilation) unless that would be mostly unused (A, B = S, 1)
    cdef bint sparse = ((S > 1 and dh > rpb * S) or (rpb > 1 and sh > rpb * S)      # (no overflow below)
                        or (rpb - 1) * sh + (S - 1) * dh + 1 > rpb * S)
    cdef Py_ssize_t A = S if sparse else sh, B = 1 if sparse else dh
    cdef Py_ssize_t Hb = (rpb - 1) * A + (S - 1) * B + 1
    cdef Py_ssize_t Wb = (max(OW, 1) - 1) * sw + (T - 1) * dw + 1
    Wb = (Wb + sw - 1) // sw * sw
    # band rows Wr apart: past its Wb gathered columns each row has a lane group of zeros, so (stride 1) the tail
    # products can read the rows in place
    cdef Py_ssize_t Wr = Wb + L if tail else Wb
    cdef Py_ssize_t buf_len = cin * R * Hb * Wr
    cdef Py_ssize_t xtl_len = cin * R * Hb * T * L if tail else 0
    cdef Py_ssize_t ntask = nchunks * G
    cdef Py_ssize_t task, chunk, g, n, n0, n1, od, oh0, oh1, i, r, ri, nr, b, pos, idp, j, k, s, t, t0, nt
    cdef Py_ssize_t tap, ob, tb, l, oh, tt, ll
    cdef float_t* buf
    cdef float_t* xtl        # per band row and tap: its last ntl columns, zero-padded to one lane group
    cdef float_t* gtl        # per output row of the band: the last ntl output-gradient columns, zero-padded
    cdef float_t* zrow       # a band row of zeros (and its zero tails), read in place of rows of padding
    cdef float_t* ztl
    cdef unsigned char* inplace  # per band (i, ri): its tail products read the band rows (else the xtl copies)
    cdef const char* pf1     # the next band's output gradient and input rows: prefetched, pfl1 / pfl2 cache lines
    cdef const char* pf2     # ... per output row of this band
    cdef Py_ssize_t pfl1 = 0, pfl2 = 0, n2, n12, g2, od2, ob2, oh02, oh12, lo, hi
    # tasks in chunks of 4 consecutive ones where there are many, so that a task's last band can prefetch the next
    # task's first (see forward)
    cdef Py_ssize_t tchunk = 4 if ntask >= 32 * nthreads else 1
    cdef Py_ssize_t gs = FC_DWG_SROWS if T == 3 else 1     # 3-tap-wide kernels: several kernel rows at once
    cdef Py_ssize_t s1, sg
    cdef unsigned char* valid
    cdef Py_ssize_t* rl
    cdef Py_ssize_t* toff
    cdef float_t* vacc       # ntap (and kout) lane groups of partial sums
    cdef const float_t* xb
    cdef vf* tf = NULL
    cdef vd* td = NULL
    cdef int failed[1]
    cdef int anybad[1]
    failed[0] = 0
    anybad[0] = 0
    if ntask == 0 or K == 0:
        return True
    with nogil, parallel(num_threads=nthreads):
        buf = <float_t*> scratch((buf_len + xtl_len + rpb * L + Wr + T * L) * sizeof(float_t), failed)
        xtl = buf + buf_len
        gtl = xtl + xtl_len
        zrow = gtl + rpb * L
        ztl = zrow + Wr
        valid = <unsigned char*> scratch(Hb, failed)
        inplace = <unsigned char*> scratch(cin * R, failed)
        rl = <Py_ssize_t*> scratch(R * sizeof(Py_ssize_t), failed)
        toff = <Py_ssize_t*> scratch(T * sizeof(Py_ssize_t), failed)
        vacc = <float_t*> scratch((ntap + kout) * FC_LANE_BYTES, failed)
        if buf == NULL or valid == NULL or inplace == NULL or rl == NULL or toff == NULL or vacc == NULL:
            failed[0] = 1
        else:
            for t in range(T):
                toff[t] = ((t * dw) % sw) * (Wb // sw) + (t * dw) // sw
            # (the gathers write columns < Wb of the band rows only: the rows' zero lane groups stay zero)
            memset(buf, 0, (buf_len + xtl_len + rpb * L + Wr + T * L) * sizeof(float_t))
        for task in prange(ntask, schedule='dynamic', chunksize=tchunk):
            if failed[0]:
                continue
            chunk = task // G
            g = task % G
            n0 = chunk * N // nchunks
            n1 = (chunk + 1) * N // nchunks
            memset(vacc, 0, (ntap + kout) * FC_LANE_BYTES)
            for n in range(n0, n1):
                for od in range(OD):
                    nr = 0
                    for r in range(R):
                        pos = od * sd + r * dd - pd
                        if pos >= 0 and pos < D:
                            rl[nr] = r
                            nr = nr + 1
                    for ob in range((OH + rpb - 1) // rpb):
                        oh0 = ob * rpb
                        oh1 = min(OH, oh0 + rpb)
                        for b in range(Hb):
                            pos = (oh0 + b // S) * sh + (b % S) * dh - ph if sparse else oh0 * sh + b - ph
                            valid[b] = pos >= 0 and pos < H
                        # one input and one output-gradient channel (depthwise): the next band of the task, its
                        # output-gradient rows and the input rows it reads, is prefetched while this one computes
                        # (planes of a channel are far apart: the hardware prefetchers start each one cold)
                        pf1 = NULL
                        pf2 = NULL
                        if cin == 1 and kout == 1:
                            n2, od2, ob2, g2 = n, od, ob + 1, g
                            if ob2 * rpb >= OH:
                                ob2 = 0
                                od2 = od + 1
                                if od2 == OD:
                                    od2 = 0
                                    n2 = n + 1
                            if n2 >= n1 and task + 1 < ntask and (task + 1) % tchunk != 0:
                                # the task's last band: the first band of the thread's next task
                                g2 = (task + 1) % G
                                n2 = ((task + 1) // G) * N // nchunks
                                n12 = ((task + 1) // G + 1) * N // nchunks
                            else:
                                n12 = n1
                            if n2 < n12:
                                oh02 = ob2 * rpb
                                oh12 = min(OH, oh02 + rpb)
                                pf1 = <const char*> &gy[n2, g2 * kout, od2, oh02, 0]
                                pfl1 = ((oh12 - oh02) * OW * <Py_ssize_t> sizeof(float_t) + 63) // 64
                                pfl1 = (pfl1 + (oh1 - oh0) - 1) // (oh1 - oh0)
                                lo = max(0, oh02 * sh - ph)
                                hi = min(H - 1, (oh12 - 1) * sh + (S - 1) * dh - ph)
                                idp = od2 * sd - pd
                                for r in range(R):    # the first depth slice it reads
                                    if idp >= 0:
                                        break
                                    idp = idp + dd
                                if hi >= lo and 0 <= idp < D:
                                    pf2 = <const char*> &x[n2, g2 * cin, idp, lo, 0]
                                    pfl2 = ((hi - lo + 1) * W * <Py_ssize_t> sizeof(float_t) + 63) // 64
                                    pfl2 = (pfl2 + (oh1 - oh0) - 1) // (oh1 - oh0)
                        for i in range(cin):
                            for ri in range(nr):
                                idp = od * sd + rl[ri] * dd - pd
                                # stride 1: the tail products read the band rows in place, their lanes past the
                                # last output against the columns OW .. Wb - 1 (then the zero lane group), unless
                                # one of those is an inf or NaN (0 * inf would reach a sum it is not part of)
                                inplace[i * nr + ri] = sw == 1
                                for b in range(Hb):
                                    if valid[b]:
                                        xb = buf + ((i * nr + ri) * Hb + b) * Wr
                                        pos = (oh0 + b // S) * sh + (b % S) * dh - ph if sparse else \
                                            oh0 * sh + b - ph
                                        gather_row(&x[n, g * cin + i, idp, pos, 0], W, <float_t*> xb, Wb, -pw, 1, sw)
                                        if tail and inplace[i * nr + ri] and nonfinite(xb + OW, Wb - OW):
                                            inplace[i * nr + ri] = 0
                                if tail and not inplace[i * nr + ri]:
                                    for b in range(Hb):
                                        if valid[b]:
                                            xb = buf + ((i * nr + ri) * Hb + b) * Wr
                                            for tt in range(T):
                                                for ll in range(ntl):
                                                    xtl[(((i * nr + ri) * Hb + b) * T + tt) * L + ll] = \
                                                        xb[toff[tt] + nq * L + ll]
                        for j in range(kout):
                            k = g * kout + j
                            # the band's output gradient, just before its products read it: finite?
                            if nonfinite(&gy[n, k, od, oh0, 0], (oh1 - oh0) * OW):
                                anybad[0] = 1
                            if tail:
                                for oh in range(oh0, oh1):
                                    for ll in range(ntl):
                                        gtl[(oh - oh0) * L + ll] = gy[n, k, od, oh, nq * L + ll]
                            if with_bias:
                                if float_t is float:
                                    _bias_band(&gy[n, k, od, oh0, 0], OW, gtl, oh1 - oh0, nq, tail,
                                               vacc + (ntap + j) * L, tf)
                                else:
                                    _bias_band(&gy[n, k, od, oh0, 0], OW, gtl, oh1 - oh0, nq, tail,
                                               vacc + (ntap + j) * L, td)
                            for i in range(cin):
                                for ri in range(nr):
                                    r = rl[ri]
                                    tap = ((j * cin + i) * R + r) * S * T
                                    for sg in range((S + gs - 1) // gs):
                                        s1 = sg * gs
                                        for tb in range((T + FC_DWG_TAPS - 1) // FC_DWG_TAPS):
                                            t0 = tb * FC_DWG_TAPS
                                            nt = min(FC_DWG_TAPS, T - t0)
                                            if float_t is float:
                                                _wgrad_taps(buf + (i * nr + ri) * Hb * Wr,
                                                            NULL if inplace[i * nr + ri] else
                                                            xtl + (i * nr + ri) * Hb * T * L, &gy[n, k, od, oh0, 0],
                                                            OW, gtl, valid, zrow, ztl, oh1 - oh0, A, s1,
                                                            min(gs, S - s1), B, nq, tail, toff, t0, nt, T, Wr,
                                                            vacc + (tap + s1 * T + t0) * L, pf1, pfl1, pf2, pfl2,
                                                            tf)
                                            else:
                                                _wgrad_taps(buf + (i * nr + ri) * Hb * Wr,
                                                            NULL if inplace[i * nr + ri] else
                                                            xtl + (i * nr + ri) * Hb * T * L, &gy[n, k, od, oh0, 0],
                                                            OW, gtl, valid, zrow, ztl, oh1 - oh0, A, s1,
                                                            min(gs, S - s1), B, nq, tail, toff, t0, nt, T, Wr,
                                                            vacc + (tap + s1 * T + t0) * L, pf1, pfl1, pf2, pfl2,
                                                            td)
                                            pf1 = NULL
                                            pf2 = NULL
            for j in range(kout):
                k = g * kout + j
                for tap in range(cin * RST):
                    part[chunk, k, tap] = _hsum(vacc + (j * cin * RST + tap) * L, L)
                if with_bias:
                    bpart[chunk, k] = _hsum(vacc + (ntap + j) * L, L)
        free(buf)
        free(valid)
        free(inplace)
        free(rl)
        free(toff)
        free(vacc)
    check_scratch(failed[0], "direct convolution", (buf_len + xtl_len) * sizeof(float_t))
    return not anybad[0]
