"""Naive, obviously-correct NumPy references: the oracle every algorithm is tested against.

Loops over output positions and kernel taps with explicit index arithmetic; nothing clever, float64 throughout.
"""
import itertools

import numpy as np


def pad_input(x, pads, mode="zeros"):
    """Pad the spatial dims of (N, C, *spatial) with per-side ``pads`` [(lo, hi), ...]."""
    np_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    return np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pads], mode=np_mode)


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
