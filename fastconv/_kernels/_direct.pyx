# cython: language_level=3
"""Cache-tiled direct convolution (3 spatial dims; 1-D and 2-D are views with singleton dims).

Work is split into independent tasks (batch n, group g, output depth od, output row oh, a chunk of output-channel
blocks, a chunk of output columns).  A task first gathers the input rows its outputs read into a small per-thread
buffer, with zero padding and input dilation resolved there, so the inner loops never test bounds.  Then, for
each block of output channels and each block of output columns, the whole reduction over input channels and
kernel taps runs with the accumulators in registers: KB output channels (``FC_CH_VECS`` vectors) x WB output
columns (``FC_CH_COLS``); one input value is broadcast against KB consecutive packed weights (vector FMA over
output channels).  The block fills the register file of the build: 2 vectors x 6 columns of 16 registers with
32-byte vectors, 2 x 12 of 32 registers with 64-byte (AVX-512) ones (see ``simd.h``).  Layers with few output
channels per group run the column-vectorised kernel of ``_depthwise.pyx`` instead.

Every output element is written by exactly one task, in a fixed summation order, so results do not depend on the
number of threads.  The weight array arrives packed by ``fastconv._algos.direct.pack_weights``:
``[group][block][c][kd][kh][kw][kb]`` (blocks zero-padded to a multiple of kb).

Input dilation ("lhs dilation") lets the same kernel compute transposed convolutions and input gradients:
input position ``p`` of a dilated axis holds ``x[p // l]`` when ``p % l == 0`` and zero otherwise.
"""
# every ``cdef inline`` helper below is inlined at each call, where its block sizes are literals (see simd.h)
cdef extern from *:
    """
    #define FC_INLINE_KERNELS 1
    """

from cython.parallel cimport parallel, prange
from libc.stdlib cimport free
from libc.string cimport memset

from fastconv._kernels.common cimport (FC_CH_ACCS, FC_CH_COLS, FC_CH_VECS, Geometry, VECTOR_BYTES, check_scratch,
                                       fc_max_abs_d, fc_max_abs_f, float_t, gather_row, scratch, vd, vec_t, vf)


cdef inline void _reduce_ch(const float_t* buf, const float_t* wblk, float_t* res, vec_t* tag, Py_ssize_t Cg,
                            const Py_ssize_t* roff, const Py_ssize_t* woff, Py_ssize_t nrs, Py_ssize_t cstride,
                            Py_ssize_t wcstride, Py_ssize_t T, Py_ssize_t dw, Py_ssize_t sw,
                            Py_ssize_t off, int NC) noexcept nogil:
    """res[j*KB + kk] = sum over valid taps (r, s) q < nrs, channels c and column taps t of
    buf[roff[q] + c*cstride + off + t*dw + j*sw] * wblk[woff[q] + c*wcstride + t*KB + kk], for j < NC.

    KB = FC_CH_VECS vectors of output channels, NC <= WB = FC_CH_COLS output columns (a literal: FC_CH_COLS, or
    the narrower blocks of a row's last columns): up to FC_CH_ACCS vector accumulators (12 of 16 registers with
    32-byte vectors, 24 of 32 with 64-byte ones).  ``tag`` only selects the vector type matching float_t.  The
    summation order of an output element does not depend on the block sizes.
    """
    cdef vec_t acc[FC_CH_ACCS]
    cdef vec_t wv[FC_CH_VECS]
    cdef vec_t z, xb
    cdef Py_ssize_t V = sizeof(vec_t) // sizeof(float_t)
    cdef Py_ssize_t c, qr, t, j, q
    cdef const float_t* row
    cdef const float_t* wk
    memset(&z, 0, sizeof(vec_t))
    for j in range(FC_CH_ACCS):
        acc[j] = z
    for qr in range(nrs):
        for c in range(Cg):
            row = buf + roff[qr] + c * cstride + off
            wk = wblk + woff[qr] + c * wcstride
            for t in range(T):
                for q in range(FC_CH_VECS):
                    wv[q] = (<const vec_t*> (wk + q * V))[0]
                for j in range(NC):
                    xb = row[j * sw] - z     # broadcast (x - 0 folds to x; adding 0 would not)
                    for q in range(FC_CH_VECS):
                        acc[FC_CH_VECS * j + q] += xb * wv[q]
                wk += FC_CH_VECS * V
                row += dw
    for j in range(FC_CH_VECS * NC):
        (<vec_t*> (res + j * V))[0] = acc[j]


cdef inline void _dispatch(const float_t* buf, const float_t* wblk, float_t* res, vec_t* tag, Py_ssize_t Cg,
                           const Py_ssize_t* roff, const Py_ssize_t* woff, Py_ssize_t nrs, Py_ssize_t cstride,
                           Py_ssize_t wcstride, Py_ssize_t T, Py_ssize_t dw, Py_ssize_t sw,
                           Py_ssize_t off, Py_ssize_t nj) noexcept nogil:
    # ``tag``: the vector type of float_t; unit stride as a literal, so the block's addresses fold to constants;
    # the last nj < FC_CH_COLS columns of a unit-stride row run a block of a third or two thirds of the columns
    # (a 28-wide row: 12 + 12 + 4 columns instead of 3 x 12)
    if (float_t is float and vec_t is vf) or (float_t is double and vec_t is vd):    # matching types only
        if sw != 1:
            _reduce_ch(buf, wblk, res, tag, Cg, roff, woff, nrs, cstride, wcstride, T, dw, sw, off, FC_CH_COLS)
        elif nj * 3 <= FC_CH_COLS:
            _reduce_ch(buf, wblk, res, tag, Cg, roff, woff, nrs, cstride, wcstride, T, dw, 1, off, FC_CH_COLS // 3)
        elif nj * 3 <= 2 * FC_CH_COLS:
            _reduce_ch(buf, wblk, res, tag, Cg, roff, woff, nrs, cstride, wcstride, T, dw, 1, off,
                       2 * FC_CH_COLS // 3)
        else:
            _reduce_ch(buf, wblk, res, tag, Cg, roff, woff, nrs, cstride, wcstride, T, dw, 1, off, FC_CH_COLS)


def band_rows(Py_ssize_t rows, Py_ssize_t S, Py_ssize_t sh, Py_ssize_t dh):
    """Rows of the band a task of ``rows`` output rows gathers (per channel and kernel depth tap): the input rows
    neighbouring outputs share are gathered once (dense), or one slot per (row, tap) when a dilation would leave
    a dense band mostly unused."""
    cdef Py_ssize_t A, B
    _band(rows, S, sh, dh, &A, &B)
    return (rows - 1) * A + (S - 1) * B + 1


cdef inline bint _band(Py_ssize_t rpt, Py_ssize_t S, Py_ssize_t sh, Py_ssize_t dh, Py_ssize_t* A,
                       Py_ssize_t* B) noexcept nogil:
    """Slot of output row r of a task under row tap s: r * A + s * B (dense: stride, dilation; sparse: S, 1).
    Returns whether the band is sparse."""
    cdef bint sparse = ((S > 1 and dh > rpt * S) or (rpt > 1 and sh > rpt * S)      # (no overflow below)
                        or (rpt - 1) * sh + (S - 1) * dh + 1 > rpt * S)
    A[0] = S if sparse else sh
    B[0] = 1 if sparse else dh
    return sparse


def block_sizes(dtype_is_float):
    """(channel block, column block) of the register block for float32 (True) or float64 in this build."""
    return (FC_CH_VECS * VECTOR_BYTES // (sizeof(float) if dtype_is_float else sizeof(double)), FC_CH_COLS)


def vector_bytes():
    """Width of the vectors this build computes with (32 or 64)."""
    return VECTOR_BYTES


def forward(const float_t[:, :, :, :, ::1] x, const float_t[::1] wp, const float_t[::1] bias,
            float_t[:, :, :, :, ::1] out, Geometry geom, *, bint has_bias, int kchunks, int wchunk_blocks,
            int rows_per_task, int nthreads):
    """Direct convolution of x (N, C, D, H, W) into out (N, K, OD, OH, OW); see the module docstring.

    ``geom`` gives the kernel size, strides, dilations, low-side paddings (any sign) and input dilations;
    ``wp`` is packed in blocks of KB channels (``block_sizes``), ``kchunks`` how many tasks share the channel
    blocks of a group,
    ``wchunk_blocks`` how many column blocks and ``rows_per_task`` how many output rows one task computes.
    All arguments are validated by the caller.
    """
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], D = x.shape[2], H = x.shape[3], W = x.shape[4]
    cdef Py_ssize_t K = out.shape[1], OD = out.shape[2], OH = out.shape[3], OW = out.shape[4]
    cdef Py_ssize_t G = geom.groups, Cg = C // G, Kg = K // G
    cdef Py_ssize_t R = geom.kd, S = geom.kh, T = geom.kw
    cdef Py_ssize_t sd = geom.sd, sh = geom.sh, sw = geom.sw, dd = geom.dd, dh = geom.dh, dw = geom.dw
    cdef Py_ssize_t pd = geom.pd, ph = geom.ph, pw = geom.pw, ld = geom.ld, lh = geom.lh, lw = geom.lw
    cdef Py_ssize_t KB = FC_CH_VECS * VECTOR_BYTES // sizeof(float_t), WB = FC_CH_COLS
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
    cdef Py_ssize_t wblock_len = Cg * R * S * T * KB
    cdef Py_ssize_t A, B
    cdef bint sparse = _band(rpt, S, sh, dh, &A, &B)
    cdef Py_ssize_t Hb = (rpt - 1) * A + (S - 1) * B + 1
    cdef Py_ssize_t buf_len = Cg * R * Hb * Wb
    cdef Py_ssize_t task, rem, n, g, od, oh, ohc, kc, wc, b, b0, b1, blk, ow0, ow_s, ow_e, nj, nk, k0, j, kk
    cdef Py_ssize_t c, r, s, t, pos, idd, ihh, nr, ns, iw0, oh0, slot, q
    cdef float_t* buf
    cdef float_t* res
    cdef Py_ssize_t* rl
    cdef Py_ssize_t* sl
    cdef Py_ssize_t* roff
    cdef Py_ssize_t* woff
    cdef const float_t* xrow
    cdef const float_t* wblk
    cdef float_t bval
    cdef float_t* orow
    cdef vf* tf = NULL      # the vector type of float_t, for _dispatch
    cdef vd* td = NULL
    cdef int failed[1]
    failed[0] = 0
    if ntask == 0:
        return
    with nogil, parallel(num_threads=nthreads):
        buf = <float_t*> scratch(buf_len * sizeof(float_t), failed)
        res = <float_t*> scratch(FC_CH_ACCS * VECTOR_BYTES, failed)
        rl = <Py_ssize_t*> scratch(R * sizeof(Py_ssize_t), failed)
        sl = <Py_ssize_t*> scratch(S * sizeof(Py_ssize_t), failed)
        roff = <Py_ssize_t*> scratch(R * S * sizeof(Py_ssize_t), failed)
        woff = <Py_ssize_t*> scratch(R * S * sizeof(Py_ssize_t), failed)
        if buf == NULL or res == NULL or rl == NULL or sl == NULL or roff == NULL or woff == NULL:
            failed[0] = 1
        else:
            for task in prange(ntask, schedule='dynamic'):
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
                # valid kernel rows along D (zero padding / input dilation give whole zero slices)
                nr = 0
                for r in range(R):
                    pos = od * sd + r * dd - pd
                    if pos >= 0 and (pos < D if ld == 1 else (pos % ld == 0 and pos // ld < D)):
                        rl[nr] = r
                        nr = nr + 1
                ow_s = wc * wcb * WB
                ow_e = min(OW, ow_s + wcb * WB)
                b0 = kc * kcs
                b1 = min(nkb, b0 + kcs)
                oh0 = ohc * rpt
                # gather the band of input rows this task's output rows read, padded and dilated, once:
                # buf[c, r, slot, :] (slot = row * A + s * B; rows outside the input are never read)
                iw0 = ow_s * sw - pw
                for c in range(Cg):
                    for r in range(nr):
                        idd = od * sd + rl[r] * dd - pd
                        if ld > 1:
                            idd = idd // ld
                        for slot in range(Hb):
                            pos = (oh0 + slot // S) * sh + (slot % S) * dh - ph if sparse else oh0 * sh + slot - ph
                            if pos >= 0 and (pos < H if lh == 1 else (pos % lh == 0 and pos // lh < H)):
                                ihh = pos // lh if lh > 1 else pos
                                xrow = &x[n, g * Cg + c, idd, ihh, 0]
                                gather_row(xrow, W, &buf[((c * R + rl[r]) * Hb + slot) * Wb], Wb, iw0, lw, 1)
                for oh in range(oh0, min(OH, oh0 + rpt)):
                    # valid kernel rows along H for this output row
                    ns = 0
                    for s in range(S):
                        pos = oh * sh + s * dh - ph
                        if pos >= 0 and (pos < H if lh == 1 else (pos % lh == 0 and pos // lh < H)):
                            sl[ns] = s
                            ns = ns + 1
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
                    # where each valid (r, s) tap's input row and weights start
                    for r in range(nr):
                        for s in range(ns):
                            q = r * ns + s
                            roff[q] = (rl[r] * Hb + (oh - oh0) * A + sl[s] * B) * Wb
                            woff[q] = (rl[r] * S + sl[s]) * T * KB
                    for b in range(b0, b1):
                        wblk = &wp[(g * nkb + b) * wblock_len]
                        k0 = g * Kg + b * KB
                        nk = min(KB, Kg - b * KB)
                        for blk in range((ow_e - ow_s + WB - 1) // WB):
                            ow0 = ow_s + blk * WB
                            nj = min(WB, ow_e - ow0)
                            if float_t is float:
                                _dispatch(buf, wblk, res, tf, Cg, roff, woff, nr * ns, R * Hb * Wb, R * S * T * KB, T,
                                          dw, sw, blk * WB * sw, nj)
                            else:
                                _dispatch(buf, wblk, res, td, Cg, roff, woff, nr * ns, R * Hb * Wb, R * S * T * KB, T,
                                          dw, sw, blk * WB * sw, nj)
                            for kk in range(nk):
                                bval = bias[k0 + kk] if has_bias else 0
                                orow = &out[n, k0 + kk, od, oh, ow0]
                                for j in range(nj):
                                    orow[j] = res[j * KB + kk] + bval
        free(buf)
        free(res)
        free(rl)
        free(sl)
        free(roff)
        free(woff)
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


DEF MAX_ABS_PARTS = 64


def max_abs(const float_t[::1] a, int nthreads):
    """max |a[i]| over a contiguous vector in one pass on up to ``nthreads`` threads, or inf when it holds an inf or
    NaN (``auto``'s check of a spreading algorithm's result, ``tame``'s of the filters' operands)."""
    cdef Py_ssize_t n = a.shape[0], nparts, part, i0
    cdef double best[MAX_ABS_PARTS]
    cdef int bad[MAX_ABS_PARTS]
    cdef double m = 0
    if n == 0:
        return 0.0
    nparts = min(MAX_ABS_PARTS, max(1, n // 65536))
    with nogil, parallel(num_threads=max(1, min(nthreads, nparts))):
        for part in prange(nparts, schedule="static"):
            i0 = n * part // nparts
            if float_t is float:
                best[part] = fc_max_abs_f(&a[i0], n * (part + 1) // nparts - i0, &bad[part])
            else:
                best[part] = fc_max_abs_d(&a[i0], n * (part + 1) // nparts - i0, &bad[part])
    for part in range(nparts):
        if bad[part]:
            return float("inf")
        if best[part] > m:
            m = best[part]
    return m


# ----------------------------------------------------------------------------------------------- ReLU
def relu(const float_t[::1] x, float_t[::1] out, int nthreads):
    """out = np.maximum(x, 0) over contiguous vectors, on up to ``nthreads`` threads: NaN stays NaN, -0.0 gives
    +0.0 (as NumPy's maximum does)."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef float_t v
    with nogil:
        for i in prange(n, schedule="static", num_threads=max(1, nthreads)):
            v = x[i]
            out[i] = v if (v > 0 or v != v) else 0


def relu_grad(const float_t[::1] g, const float_t[::1] x, float_t[::1] out, int nthreads):
    """out = g * (x > 0) over contiguous vectors (a product, as NumPy computes it: an inf or NaN gradient over a
    non-positive input gives NaN)."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef float_t one = 1, zero = 0
    with nogil:
        for i in prange(n, schedule="static", num_threads=max(1, nthreads)):
            out[i] = g[i] * (one if x[i] > 0 else zero)
