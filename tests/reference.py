"""Naive, obviously-correct NumPy references: the oracle every algorithm is tested against.

Loops over output positions and kernel taps with explicit index arithmetic; nothing clever, float64 throughout.
"""
import itertools

import numpy as np


def pad_input(x, pads, mode="zeros"):
    """Pad the spatial dims of (N, C, *spatial) with per-side ``pads`` [(lo, hi), ...]; a negative pad crops
    that many elements from its side (the high side of a transposed convolution's adjoint geometry)."""
    np_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    crop = tuple(slice(max(0, -lo), x.shape[2 + i] - max(0, -hi)) for i, (lo, hi) in enumerate(pads))
    x = x[(slice(None), slice(None)) + crop]
    return np.pad(x, [(0, 0), (0, 0)] + [(max(0, lo), max(0, hi)) for lo, hi in pads], mode=np_mode)


def same_padding(size, kernel, stride, dilation):
    """'same' padding pairs: total d(k-1) for stride 1; ceil(n/s) outputs for stride > 1."""
    pairs = []
    for n, k, s, d in zip(size, kernel, stride, dilation):
        out = -(-n // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
        pairs.append((total // 2, total - total // 2))
    return pairs


def conv_nd(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", flip=False):
    """Cross-correlation (deep-learning convolution) of x (N, C, *sp) with w (K, C/g, *k)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    nd = x.ndim - 2
    st = (stride,) * nd if np.isscalar(stride) else tuple(stride)
    dl = (dilation,) * nd if np.isscalar(dilation) else tuple(dilation)
    if isinstance(padding, str):
        pads = [(0, 0)] * nd if padding == "valid" else same_padding(x.shape[2:], w.shape[2:], st, dl)
    elif np.isscalar(padding):
        pads = [(padding, padding)] * nd
    elif all(np.isscalar(p) for p in padding):
        pads = [(p, p) for p in padding]
    else:
        pads = [tuple(p) for p in padding]
    if flip:
        w = w[(slice(None), slice(None)) + (slice(None, None, -1),) * nd]
    xp = pad_input(x, pads, padding_mode)
    N, C = x.shape[:2]
    K, Cg = w.shape[:2]
    Kg = K // groups
    ks = w.shape[2:]
    out_sp = [(xp.shape[2 + i] - dl[i] * (ks[i] - 1) - 1) // st[i] + 1 for i in range(nd)]
    y = np.zeros((N, K) + tuple(out_sp))
    for o in itertools.product(*[range(s) for s in out_sp]):
        for tap in itertools.product(*[range(k) for k in ks]):
            idx = tuple(o[i] * st[i] + tap[i] * dl[i] for i in range(nd))
            patch = xp[(slice(None), slice(None)) + idx]          # (N, C)
            for g in range(groups):
                xs = patch[:, g * Cg:(g + 1) * Cg]                  # (N, Cg)
                ws = w[(slice(g * Kg, (g + 1) * Kg), slice(None)) + tap]  # (Kg, Cg)
                y[(slice(None), slice(g * Kg, (g + 1) * Kg)) + o] += xs @ ws.T
    if bias is not None:
        y += np.asarray(bias, np.float64).reshape((1, -1) + (1,) * nd)
    return y


def conv_transpose_nd(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed convolution by scattering: every input element adds w * x into the output."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    nd = x.ndim - 2
    tup = lambda v: (v,) * nd if np.isscalar(v) else tuple(v)  # noqa: E731
    st, pd, op, dl = tup(stride), tup(padding), tup(output_padding), tup(dilation)
    N, Cin = x.shape[:2]
    Cog = w.shape[1]
    Cig = Cin // groups
    ks = w.shape[2:]
    full = [(x.shape[2 + i] - 1) * st[i] + dl[i] * (ks[i] - 1) + 1 + op[i] for i in range(nd)]
    y = np.zeros((N, Cog * groups) + tuple(full))
    for i_pos in itertools.product(*[range(s) for s in x.shape[2:]]):
        for tap in itertools.product(*[range(k) for k in ks]):
            o = tuple(i_pos[d] * st[d] + tap[d] * dl[d] for d in range(nd))
            for g in range(groups):
                xs = x[(slice(None), slice(g * Cig, (g + 1) * Cig)) + i_pos]          # (N, Cig)
                ws = w[(slice(g * Cig, (g + 1) * Cig), slice(None)) + tap]             # (Cig, Cog)
                y[(slice(None), slice(g * Cog, (g + 1) * Cog)) + o] += xs @ ws
    crop = tuple(slice(pd[d], full[d] - pd[d]) for d in range(nd))
    y = y[(slice(None), slice(None)) + crop]
    if bias is not None:
        y = y + np.asarray(bias, np.float64).reshape((1, -1) + (1,) * nd)
    return y


def conv_grad_weight_nd(x, grad_out, weight_shape, stride=1, padding=0, dilation=1, groups=1):
    """dL/dw for y = conv_nd(x, w): sum over batch and output positions of grad_out * input patch."""
    x = np.asarray(x, np.float64)
    gy = np.asarray(grad_out, np.float64)
    nd = x.ndim - 2
    tup = lambda v: (v,) * nd if np.isscalar(v) else tuple(v)  # noqa: E731
    st, dl = tup(stride), tup(dilation)
    pads = [(p, p) for p in tup(padding)] if not (isinstance(padding, (list, tuple)) and
                                                   isinstance(padding[0], (list, tuple))) else padding
    xp = pad_input(x, pads)
    K, Cg = weight_shape[:2]
    Kg = K // groups
    ks = weight_shape[2:]
    gw = np.zeros(weight_shape)
    for o in itertools.product(*[range(s) for s in gy.shape[2:]]):
        for tap in itertools.product(*[range(k) for k in ks]):
            idx = tuple(o[i] * st[i] + tap[i] * dl[i] for i in range(nd))
            patch = xp[(slice(None), slice(None)) + idx]
            for g in range(groups):
                gw[(slice(g * Kg, (g + 1) * Kg), slice(None)) + tap] += (
                    gy[(slice(None), slice(g * Kg, (g + 1) * Kg)) + o].T @ patch[:, g * Cg:(g + 1) * Cg])
    return gw


def conv_grad_input_nd(input_shape, w, grad_out, stride=1, padding=0, dilation=1, groups=1):
    """dL/dx for y = conv_nd(x, w): every output gradient scatters grad_out * w back onto the taps it read.

    ``padding`` is an int, a tuple of ints or a tuple of (lo, hi) pairs; the padded gradient is cropped.
    """
    w = np.asarray(w, np.float64)
    gy = np.asarray(grad_out, np.float64)
    nd = len(input_shape) - 2
    tup = lambda v: (v,) * nd if np.isscalar(v) else tuple(v)  # noqa: E731
    st, dl = tup(stride), tup(dilation)
    pads = [tuple(p) if isinstance(p, (list, tuple)) else (p, p) for p in tup(padding)]
    N, C = input_shape[:2]
    K, Cg = w.shape[:2]
    Kg = K // groups
    ks = w.shape[2:]
    gxp = np.zeros((N, C) + tuple(n + lo + hi for n, (lo, hi) in zip(input_shape[2:], pads)))
    for o in itertools.product(*[range(s) for s in gy.shape[2:]]):
        for tap in itertools.product(*[range(k) for k in ks]):
            idx = tuple(o[i] * st[i] + tap[i] * dl[i] for i in range(nd))
            for g in range(groups):
                gys = gy[(slice(None), slice(g * Kg, (g + 1) * Kg)) + o]             # (N, Kg)
                ws = w[(slice(g * Kg, (g + 1) * Kg), slice(None)) + tap]             # (Kg, Cg)
                gxp[(slice(None), slice(g * Cg, (g + 1) * Cg)) + idx] += gys @ ws
    crop = tuple(slice(lo, lo + n) for n, (lo, _) in zip(input_shape[2:], pads))
    return gxp[(slice(None), slice(None)) + crop]


def conv_matrix(w, input_shape, **conv_kwargs):
    """Dense matrix of x -> conv_nd(x, w, **conv_kwargs).ravel() for x of ``input_shape`` (batch included).

    Column j is the convolution of the j-th unit input; samples are independent, so it is block diagonal.
    """
    m = int(np.prod(input_shape[1:]))
    basis = np.eye(m).reshape((m,) + tuple(input_shape[1:]))
    single = conv_nd(basis, w, **conv_kwargs).reshape(m, -1).T
    return np.kron(np.eye(input_shape[0]), single)


# ----------------------------------------------------------------------------------------------- pooling
def pool_output_size(n, k, s, p, d=1, ceil_mode=False):
    """PyTorch's pooling output size; in ceil mode the last window must start inside the input or left padding."""
    span = n + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _pool_args(x, kernel_size, stride, padding, dilation):
    nd = x.ndim - 2
    tup = lambda v: (v,) * nd if np.isscalar(v) else tuple(v)  # noqa: E731
    k = tup(kernel_size)
    return nd, k, (k if stride is None else tup(stride)), tup(padding), tup(dilation)


def max_pool_nd(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(values, int64 indices): scan each window in row-major order; a value wins when larger or NaN."""
    x = np.asarray(x, np.float64)
    nd, k, s, p, d = _pool_args(x, kernel_size, stride, padding, dilation)
    sp = x.shape[2:]
    out_sp = tuple(pool_output_size(sp[i], k[i], s[i], p[i], d[i], ceil_mode) for i in range(nd))
    vals = np.empty(x.shape[:2] + out_sp)
    idx = np.empty(x.shape[:2] + out_sp, np.int64)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            plane = x[n, c]
            for o in itertools.product(*[range(m) for m in out_sp]):
                best, where = -np.inf, None
                for tap in itertools.product(*[range(m) for m in k]):
                    pos = tuple(o[i] * s[i] - p[i] + tap[i] * d[i] for i in range(nd))
                    if not all(0 <= pos[i] < sp[i] for i in range(nd)):
                        continue
                    v = plane[pos]
                    if where is None:
                        where = pos
                    if v > best or np.isnan(v):
                        best, where = v, pos
                vals[(n, c) + o] = best
                idx[(n, c) + o] = np.ravel_multi_index(where, sp)
    return vals, idx


def avg_pool_nd(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                divisor_override=None):
    """Window sums over the input part of each window divided as PyTorch does: by ``divisor_override``, by the
    window size clipped to ``n + padding`` (count_include_pad) or by the number of input elements."""
    x = np.asarray(x, np.float64)
    nd, k, s, p, _ = _pool_args(x, kernel_size, stride, padding, 1)
    sp = x.shape[2:]
    out_sp = tuple(pool_output_size(sp[i], k[i], s[i], p[i], 1, ceil_mode) for i in range(nd))
    y = np.empty(x.shape[:2] + out_sp)
    for o in itertools.product(*[range(m) for m in out_sp]):
        start = [o[i] * s[i] - p[i] for i in range(nd)]
        lo = [max(start[i], 0) for i in range(nd)]
        hi = [min(start[i] + k[i], sp[i]) for i in range(nd)]
        window = x[(slice(None), slice(None)) + tuple(slice(a, b) for a, b in zip(lo, hi))]
        total = window.reshape(x.shape[:2] + (-1,)).sum(-1)
        if divisor_override is not None:
            div = divisor_override
        elif count_include_pad:
            div = int(np.prod([min(start[i] + k[i], sp[i] + p[i]) - start[i] for i in range(nd)]))
        else:
            div = int(np.prod([b - a for a, b in zip(lo, hi)]))
        y[(slice(None), slice(None)) + o] = total / div
    return y


def lp_pool_nd(x, norm_type, kernel_size, stride=None, ceil_mode=False):
    """PyTorch's lp_pool: ``(prod(kernel) * avg_pool(x ** p)) ** (1 / p)``."""
    k = _pool_args(np.asarray(x), kernel_size, stride, 0, 1)[1]
    mean = avg_pool_nd(np.asarray(x, np.float64) ** norm_type, kernel_size, stride, 0, ceil_mode)
    with np.errstate(invalid="ignore"):
        return (np.prod(k) * mean) ** (1.0 / norm_type)


def adaptive_bins(n, out):
    """PyTorch's adaptive pooling bins [floor(o n / out), ceil((o + 1) n / out))."""
    return [((o * n) // out, -(-((o + 1) * n) // out)) for o in range(out)]


def adaptive_pool_nd(x, output_size, op="avg"):
    """Adaptive average (values) or max ((values, indices), first maximum / NaN as max_pool_nd)."""
    x = np.asarray(x, np.float64)
    sp = x.shape[2:]
    bins = [adaptive_bins(n, o) for n, o in zip(sp, output_size)]
    y = np.empty(x.shape[:2] + tuple(output_size))
    idx = np.empty(y.shape, np.int64)
    for o in itertools.product(*[range(m) for m in output_size]):
        box = [bins[i][o[i]] for i in range(len(sp))]
        if op == "avg":
            win = x[(slice(None), slice(None)) + tuple(slice(a, b) for a, b in box)]
            y[(slice(None), slice(None)) + o] = win.reshape(x.shape[:2] + (-1,)).mean(-1)
            continue
        for n in range(x.shape[0]):
            for c in range(x.shape[1]):
                best, where = -np.inf, None
                for pos in itertools.product(*[range(a, b) for a, b in box]):
                    v = x[(n, c) + pos]
                    if where is None:
                        where = pos
                    if v > best or np.isnan(v):
                        best, where = v, pos
                y[(n, c) + o] = best
                idx[(n, c) + o] = np.ravel_multi_index(where, sp)
    return y if op == "avg" else (y, idx)


def max_unpool_nd(x, indices, output_size):
    """Zero planes of ``output_size`` with every x[n, c, ...] written at its flat index (later ones win)."""
    x = np.asarray(x, np.float64)
    N, C = x.shape[:2]
    y = np.zeros((N, C, int(np.prod(output_size))))
    for n in range(N):
        for c in range(C):
            for v, i in zip(x[n, c].ravel(), np.asarray(indices)[n, c].ravel()):
                y[n, c, i] = v
    return y.reshape((N, C) + tuple(output_size))


def index_scatter_add(grad_out, indices, input_shape):
    """Gradient of a max-type pooling: grad_out[n, c, ...] added at flat offset indices[n, c, ...] of its plane."""
    gy = np.asarray(grad_out, np.float64)
    N, C = input_shape[:2]
    gx = np.zeros((N, C, int(np.prod(input_shape[2:]))))
    for n in range(N):
        for c in range(C):
            for v, i in zip(gy[n, c].ravel(), np.asarray(indices)[n, c].ravel()):
                gx[n, c, i] += v
    return gx.reshape(tuple(input_shape))


def kmax_pool_ref(x, k, dim=-1, sorted=True):
    """The k largest along ``dim`` (NaN largest, ties by position): by value or in original order."""
    x = np.asarray(x, np.float64)
    xm = np.moveaxis(x, dim, -1)
    vals = np.empty(xm.shape[:-1] + (k,))
    idx = np.empty(xm.shape[:-1] + (k,), np.int64)
    for pos in itertools.product(*[range(m) for m in xm.shape[:-1]]):
        line = xm[pos]
        keyed = [(0 if np.isnan(v) else 1, -v if not np.isnan(v) else 0.0, i) for i, v in enumerate(line)]
        keyed.sort()
        chosen = [t[2] for t in keyed[:k]]
        if not sorted:
            chosen.sort()
        vals[pos] = line[chosen]
        idx[pos] = chosen
    return np.moveaxis(vals, -1, dim), np.moveaxis(idx, -1, dim)


def _pairs2(*values):
    return [(v, v) if np.isscalar(v) else tuple(v) for v in values]


def locally_connected2d(x, w, bias=None, stride=1, padding=0, dilation=1):
    """Unshared convolution: w (OH, OW, K, C, kH, kW), bias (K, OH, OW); output (i, j) uses its own w[i, j]."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    (sh, sw), (ph, pw), (dh, dw) = _pairs2(stride, padding, dilation)
    xp = pad_input(x, [(ph, ph), (pw, pw)])
    OH, OW, K, C, kh, kw = w.shape
    y = np.zeros((x.shape[0], K, OH, OW))
    for i in range(OH):
        for j in range(OW):
            for u in range(kh):
                for v in range(kw):
                    y[:, :, i, j] += xp[:, :, i * sh + u * dh, j * sw + v * dw] @ w[i, j, :, :, u, v].T
    if bias is not None:
        y += np.asarray(bias, np.float64)[None]
    return y


def tiled_conv2d(x, w, bias=None, stride=1, padding=0, dilation=1):
    """Tiled convolution: w (tH, tW, K, C, kH, kW); output (i, j) uses w[i % tH, j % tW]; bias (K,)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    (sh, sw), (ph, pw), (dh, dw) = _pairs2(stride, padding, dilation)
    th, tw, K, C, kh, kw = w.shape
    OH = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    OW = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    full = w[np.arange(OH)[:, None] % th, np.arange(OW)[None, :] % tw]      # (OH, OW, K, C, kH, kW)
    y = locally_connected2d(x, full, None, stride, padding, dilation)
    if bias is not None:
        y += np.asarray(bias, np.float64).reshape(1, -1, 1, 1)
    return y


def _extend_index(p, n, mode):
    """Source index of position ``p`` on an axis of length ``n`` under a scipy.ndimage boundary mode, by folding
    step by step; None for the constant region."""
    if mode in ("constant", "grid-constant"):
        return p if 0 <= p < n else None
    if mode == "nearest":
        return min(max(p, 0), n - 1)
    if mode in ("wrap", "grid-wrap"):
        while p < 0:
            p += n
        while p >= n:
            p -= n
        return p
    if mode == "mirror" and n == 1:
        return 0
    while p < 0 or p >= n:
        if mode in ("reflect", "grid-mirror"):      # d c b a | a b c d | d c b a
            p = -p - 1 if p < 0 else 2 * n - 1 - p
        else:                                       # mirror: d c b | a b c d | c b a
            p = -p if p < 0 else 2 * n - 2 - p
    return p


def ndimage_correlate(image, weights, mode="reflect", cval=0.0, origin=0):
    """scipy.ndimage.correlate by its definition, in float64:
    ``out[i] = sum_k w[k] * ext(image)[i + k - (w.shape // 2 + origin)]``; ``mode`` may be one name per axis."""
    img = np.asarray(image, np.float64)
    w = np.asarray(weights, np.float64)
    nd = img.ndim
    origin = (origin,) * nd if np.isscalar(origin) else tuple(origin)
    modes = (mode,) * nd if isinstance(mode, str) else tuple(mode)
    out = np.zeros(img.shape)
    for tap in itertools.product(*[range(k) for k in w.shape]):
        src, inside = [], np.ones(img.shape, bool)
        for a in range(nd):
            n = img.shape[a]
            idx = [_extend_index(i + tap[a] - (w.shape[a] // 2 + origin[a]), n, modes[a]) for i in range(n)]
            ok = np.array([j is not None for j in idx])
            src.append(np.array([0 if j is None else j for j in idx], dtype=np.intp))
            inside &= ok.reshape([-1 if b == a else 1 for b in range(nd)])
        out += w[tap] * np.where(inside, img[np.ix_(*src)], cval)
    return out
