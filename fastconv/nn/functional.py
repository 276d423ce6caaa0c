"""Differentiable operations on :class:`~fastconv.Tensor`, named and called like ``torch.nn.functional``.

Each function accepts Tensors (or arrays, treated as constants), runs fastconv's NumPy-level kernels on the data
and records one operation on the autograd tape whose backward calls the matching gradient kernels.  A
convolution records its :class:`~fastconv._prepare.PreparedConv`: the backward pass runs the algorithms'
``grad_input`` / ``grad_weight`` on the record of the forward pass (no second validation, padding or
geometry).  Pools call the gradients in :mod:`fastconv.grad` (max pools scatter to the argmax recorded in the
forward pass).  The layers in :mod:`fastconv.nn` own parameters and call these.
"""
import numpy as np

from .. import _gemm
from .. import _validate as V
from .. import grad as _grad
from .. import pooling as _pool
from .._algos.toeplitz import add_patches, patches
from .._geometry import ConvGeometry
from .._prepare import bias_grad, pad_input, prepare_conv, prepare_conv_transpose
from ..autograd import Tensor, as_tensor, record, log_softmax, log_softmax_array, relu, sigmoid, softmax, tanh
from . import init as _init
from .activation import (elu, gelu, hardswish, hardtanh, leaky_relu, mish, prelu, relu6, silu,  # noqa: F401
                         softplus)
from .normalization import batch_norm, group_norm, instance_norm, layer_norm  # noqa: F401
from .spatial import (dropout1d, dropout2d, dropout3d, interpolate, pad, pixel_shuffle,  # noqa: F401
                      pixel_unshuffle, upsample)

_norm_all = ["batch_norm", "instance_norm", "group_norm", "layer_norm"]
_act_all = ["leaky_relu", "elu", "gelu", "silu", "hardswish", "hardtanh", "relu6", "prelu", "softplus", "mish"]
_spatial_all = ["interpolate", "upsample", "pixel_shuffle", "pixel_unshuffle", "dropout1d", "dropout2d",
                "dropout3d", "pad"]

__all__ = [
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "locally_connected2d", "tiled_conv2d", "linear", "dropout", "flatten",
    "relu", "sigmoid", "tanh", "softmax", "log_softmax",
    "cross_entropy", "nll_loss", "mse_loss",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "lp_pool1d", "lp_pool2d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "max_unpool1d", "max_unpool2d", "max_unpool3d",
    "global_max_pool", "global_avg_pool", "kmax_pool",
] + _norm_all + _act_all + _spatial_all


def _opt(x):
    return None if x is None else as_tensor(x)


def _data(t):
    return None if t is None else t.data


# --------------------------------------------------------------------------------------------------- convolution
def _conv(nd, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, flip):
    """Record ``conv{nd}d``: forward and backward run on one :class:`~fastconv._prepare.PreparedConv`."""
    name = "conv%dd" % nd
    x, w, b = as_tensor(input), as_tensor(weight), _opt(bias)
    p = prepare_conv(name, nd, x.data, w.data, _data(b), stride, padding, dilation, groups, padding_mode, flip,
                     algorithm)
    y = p.conv(p.x)

    def backward(g, needs):
        g = p.output_grad(g)
        gx = p.adjoint(g) if needs[0] else None
        if needs[1]:     # the bias gradient from the weight gradient's pass over g, where the algorithm fuses it
            gw, gb = p.weight_grad(p.x, g, with_bias=True) if needs[2] else (p.weight_grad(p.x, g), None)
        else:
            gw, gb = None, (bias_grad(g) if needs[2] else None)
        if gb is not None and not g.shape[1]:
            gb = np.zeros_like(p.b)     # an input without channels has an output without channels: no bias
        return gx, gw, gb
    return record(name, y, (x, w, b), backward, saved=(x, w), fresh=True)


def _conv_transpose(nd, input, weight, bias, stride, padding, output_padding, groups, dilation, algorithm):
    """Record ``conv_transpose{nd}d``, the adjoint of a convolution: its input gradient is that convolution, its
    weight gradient the convolution's weight gradient with input and output swapped."""
    name = "conv_transpose%dd" % nd
    x, w, b = as_tensor(input), as_tensor(weight), _opt(bias)
    p = prepare_conv_transpose(name, nd, x.data, w.data, _data(b), stride, padding, output_padding, groups,
                               dilation, algorithm)
    y = p.adjoint(p.x)

    def backward(g, needs):
        g = p.output_grad(g)
        return (p.conv(g) if needs[0] else None,
                p.weight_grad(g, p.x) if needs[1] else None,
                _grad.conv_bias(g) if needs[2] else None)
    return record(name, y, (x, w, b), backward, saved=(x, w))


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", flip=False):
    """Differentiable :func:`fastconv.conv1d` (same arguments); the backward pass runs the same algorithm's
    ``grad_input`` / ``grad_weight`` on the forward call's prepared record."""
    return _conv(1, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, flip)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", flip=False):
    """Differentiable :func:`fastconv.conv2d` (same arguments); the backward pass runs the same algorithm's
    ``grad_input`` / ``grad_weight`` on the forward call's prepared record."""
    return _conv(2, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, flip)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", flip=False):
    """Differentiable :func:`fastconv.conv3d` (same arguments); the backward pass runs the same algorithm's
    ``grad_input`` / ``grad_weight`` on the forward call's prepared record."""
    return _conv(3, input, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, flip)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto"):
    """Differentiable :func:`fastconv.conv_transpose1d` (same arguments)."""
    return _conv_transpose(1, input, weight, bias, stride, padding, output_padding, groups, dilation, algorithm)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto"):
    """Differentiable :func:`fastconv.conv_transpose2d` (same arguments)."""
    return _conv_transpose(2, input, weight, bias, stride, padding, output_padding, groups, dilation, algorithm)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto"):
    """Differentiable :func:`fastconv.conv_transpose3d` (same arguments)."""
    return _conv_transpose(3, input, weight, bias, stride, padding, output_padding, groups, dilation, algorithm)


# --------------------------------------------------------------------------------------------------- unshared / tiled
def _six_d_weight_args(fn, input, weight, bias, layout, stride, padding, dilation):
    """Tensors, the geometry of one (C_out, C_in, kH, kW) filter bank, and the compute dtype of the layers whose
    weight is 6-D (locally connected, tiled)."""
    x, w, b = as_tensor(input), as_tensor(weight), _opt(bias)
    V.check_ndim(x.data, 4, fn, "input", "N, C, H, W")
    V.check_ndim(w.data, 6, fn, "weight", layout)
    geom = ConvGeometry.make(x.shape, w.shape[2:], stride, padding, dilation, 1, fn=fn)
    return x, w, b, geom, V.common_float_dtype(x.data, w.data, _data(b))


def _check_bias_shape(fn, b, shape):
    if b is not None and b.shape != shape:
        raise ValueError("%s(): argument 'bias' must have shape %s, got %s" % (fn, shape, b.shape))


def _crop2d(xp, geom):
    (t, _), (l, _) = geom.padding
    H, W = geom.input_size
    return xp[:, :, t:t + H, l:l + W]


def im2col(x, geom):
    """Patches of a 2-D convolution: (OH*OW, N, C*kh*kw), one row of every batch item per output position."""
    N, C = geom.input_shape[:2]
    OH, OW = geom.output_size
    win = patches(pad_input(x, geom), geom)                              # (N, C, OH, OW, kh, kw)
    return np.ascontiguousarray(win.transpose(2, 3, 0, 1, 4, 5)).reshape(OH * OW, N, -1)


def col2im(cols, geom):
    """Adjoint of :func:`im2col`: add every patch row back onto the input positions it was read from."""
    N, C = geom.input_shape[:2]
    OH, OW = geom.output_size
    c = cols.reshape((OH, OW, N, C) + geom.kernel_size).transpose(2, 3, 0, 1, 4, 5)   # (N, C, OH, OW, kh, kw)
    return _crop2d(add_patches(c, geom), geom)


def locally_connected2d(input, weight, bias=None, stride=1, padding=0, dilation=1):
    """Unshared convolution: a separate filter for every output position.

    ``weight`` has shape ``(OH, OW, C_out, C_in, kH, kW)`` and ``bias`` ``(C_out, OH, OW)``;
    ``y[n, k, i, j] = sum_{c,u,v} weight[i, j, k, c, u, v] * x_pad[n, c, i*s + u*d, j*s + v*d] + bias[k, i, j]``.
    Computed as patches (im2col) times one small matrix per output position (batched GEMM).
    """
    fn = "locally_connected2d"
    x, w, b, geom, dtype = _six_d_weight_args(fn, input, weight, bias, "OH, OW, C_out, C_in, kH, kW", stride,
                                               padding, dilation)
    OH, OW, K = w.shape[:3]
    if geom.output_size != (OH, OW):
        raise ValueError("%s(): argument 'weight' has %dx%d output positions but the input %s gives %s"
                         % (fn, OH, OW, x.shape, geom.output_size))
    _check_bias_shape(fn, b, (K, OH, OW))
    cols = im2col(x.data.astype(dtype, copy=False), geom)                          # (P, N, CKK)
    wm = w.data.astype(dtype, copy=False).reshape(OH * OW, K, -1)                  # (P, K, CKK)
    N = x.shape[0]
    y = np.ascontiguousarray((cols @ wm.transpose(0, 2, 1)).transpose(1, 2, 0)).reshape(N, K, OH, OW)
    if b is not None:
        y += b.data

    def backward(g, needs):
        gp = g.reshape(N, K, OH * OW).transpose(2, 0, 1)                            # (P, N, K)
        gx = col2im(gp @ wm, geom) if needs[0] else None
        gw = (gp.transpose(0, 2, 1) @ cols).reshape(w.shape) if needs[1] else None
        return gx, gw, (g.sum(axis=0) if needs[2] else None)
    return record(fn, y, (x, w, b), backward)


def tiled_conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, *, algorithm="auto"):
    """Tiled convolution (Goodfellow et al., 9.5): ``t_h x t_w`` kernels rotated through the output positions.

    ``weight`` has shape ``(t_h, t_w, C_out, C_in, kH, kW)``; output position ``(i, j)`` uses kernel
    ``weight[i % t_h, j % t_w]``; ``bias`` is shared, shape ``(C_out,)``.  ``t = 1`` is ordinary convolution,
    ``t`` = the output size is a locally connected layer.  Each kernel is one strided convolution over the
    positions it owns (stride ``s * t``), run by fastconv's convolution kernels, forward and backward.
    """
    fn = "tiled_conv2d"
    x, w, b, geom, dtype = _six_d_weight_args(fn, input, weight, bias, "t_h, t_w, C_out, C_in, kH, kW", stride,
                                               padding, dilation)
    th, tw, K = w.shape[:3]
    _check_bias_shape(fn, b, (K,))
    xp = pad_input(x.data.astype(dtype, copy=False), geom)
    wd = w.data.astype(dtype, copy=False)
    (sh, sw), (OH, OW) = geom.stride, geom.output_size
    tiles = [(a, c) for a in range(min(th, OH)) for c in range(min(tw, OW))]
    # t_h * t_w strided convolutions, each over the output positions it owns
    convs = {}
    y = np.empty(geom.output_shape, dtype)
    for a, c in tiles:
        p = prepare_conv("conv2d", 2, xp[:, :, a * sh:, c * sw:], wd[a, c], None, (sh * th, sw * tw), 0,
                         geom.dilation, algorithm=algorithm)
        y[:, :, a::th, c::tw] = p.conv(p.x)
        convs[a, c] = p._replace(x=None)     # the tape keeps xp, not a copy of every tile's part of it
    if b is not None:
        y += b.data.reshape(1, K, 1, 1)

    def backward(g, needs):
        gxp = np.zeros(xp.shape, dtype) if needs[0] else None
        gw = np.zeros(wd.shape, dtype) if needs[1] else None
        for (a, c), p in convs.items():
            ga = np.ascontiguousarray(g[:, :, a::th, c::tw], dtype=dtype)
            if needs[0]:
                gxp[:, :, a * sh:, c * sw:] += p.adjoint(ga)
            if needs[1]:
                gw[a, c] = p.weight_grad(np.ascontiguousarray(xp[:, :, a * sh:, c * sw:]), ga)
        return (None if gxp is None else _crop2d(gxp, geom), gw,
                _grad.conv_bias(g) if needs[2] else None)
    return record(fn, y, (x, w, b), backward)


# --------------------------------------------------------------------------------------------------- dense layers
def _matmul(a, b):
    """``a @ b`` for 2-D arrays on fastconv's threads (:func:`fastconv.matmul`): NumPy's multi-threaded BLAS
    would leave its workers spinning on the cores the next convolution needs."""
    return _gemm.matmul(a, b)


def linear(input, weight, bias=None):
    """``y = input @ weight.T + bias`` over the last axis; ``weight`` is ``(out_features, in_features)``."""
    fn = "linear"
    x, w, b = as_tensor(input), as_tensor(weight), _opt(bias)
    V.check_ndim(w.data, 2, fn, "weight", "out_features, in_features")
    if x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError("%s(): argument 'input' must have %d features in its last dimension (weight.shape[1]), "
                         "got shape %s" % (fn, w.shape[1], x.shape))
    _check_bias_shape(fn, b, (w.shape[0],))
    xd, wd = x.data, w.data
    x2 = xd.reshape(-1, xd.shape[-1])
    y = _matmul(x2, wd.T)
    if b is not None:
        y += b.data

    def backward(g, needs):
        g2 = g.reshape(-1, g.shape[-1])
        return (_matmul(g2, wd).reshape(xd.shape) if needs[0] else None,
                _matmul(g2.T, x2) if needs[1] else None,
                g2.sum(axis=0) if needs[2] else None)
    return record(fn, y.reshape(xd.shape[:-1] + (wd.shape[0],)), (x, w, b), backward, saved=(x, w),
                  fresh=True)


def dropout(input, p=0.5, training=True, *, generator=None):
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)`` (identity unless training).

    ``generator`` is a ``numpy.random.Generator``; by default the one seeded by :func:`fastconv.nn.manual_seed`.
    """
    p = V.real_scalar(p, "dropout", "p")
    if not 0.0 <= p <= 1.0:
        raise ValueError("dropout(): argument 'p' must be between 0 and 1, got %r" % p)
    x = as_tensor(input)
    if not training or p == 0.0:
        return x
    rng = _init.default_generator() if generator is None else generator
    keep = rng.random(x.shape) >= p
    mask = np.zeros(x.shape, x.dtype) if p == 1.0 else keep.astype(x.dtype) / x.dtype.type(1.0 - p)
    return x * Tensor._wrap(mask)


def flatten(input, start_dim=1, end_dim=-1):
    """Merge dimensions ``start_dim..end_dim`` into one (by default everything but the batch)."""
    return as_tensor(input).flatten(start_dim, end_dim)


# --------------------------------------------------------------------------------------------------- losses
_REDUCTIONS = ("mean", "sum", "none")


def _reduce(per_item, reduction, denominator, valid=None):
    if reduction == "none":
        return per_item
    if reduction == "sum":
        return per_item.sum()
    return _mean(per_item, denominator, valid)


def _mean(per_item, denominator, valid=None):
    """``sum(per_item) / denominator`` as PyTorch's mean reductions: an empty or all-ignored batch gives NaN
    (0 / 0), and items left out (``valid`` False: ``ignore_index``) get exactly zero gradient even then."""
    d = per_item.data
    return record("mean", _reduced(d, "mean", denominator), (per_item,),
                  lambda g, needs: (_item_grad(g, d.shape, d.dtype, "mean", denominator, valid),), saved=())


def _reduced(per_item, reduction, denominator):
    """The array ``per_item`` reduced as :func:`_reduce` does (the value of a loss)."""
    if reduction == "none":
        return per_item
    if reduction == "sum":
        return np.asarray(per_item.sum(), per_item.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(per_item.sum() / per_item.dtype.type(denominator), per_item.dtype)


def _item_grad(g, shape, dtype, reduction, denominator, valid=None):
    """The gradient of each item (``shape``) of a reduction from the gradient ``g`` of its value (see
    :func:`_mean`)."""
    if reduction == "none":
        return g
    with np.errstate(invalid="ignore", divide="ignore"):
        gi = np.broadcast_to(g / dtype.type(denominator) if reduction == "mean" else g, shape)
    return gi if valid is None or reduction != "mean" else np.where(valid, gi, dtype.type(0))


def _class_weights(fn, target, log_probs, weight, ignore_index, label_smoothing, reduction):
    """The constant ``Q`` with ``loss = -sum(Q * log_probs)`` per item, the 'mean' denominator and the mask of
    items that count (None: all).

    Class-index targets: ``Q[n, c] = w_c ((1 - eps) [c == t_n] + eps / C)`` for non-ignored items, mean over
    ``sum_n w_{t_n}``.  Probability targets: ``Q = w_c ((1 - eps) p + eps / C)``, mean over the item count;
    ``ignore_index`` must keep its default there (PyTorch's rule).
    """
    V.check_choice(reduction, _REDUCTIONS, fn, "reduction")
    shape = log_probs.shape
    if len(shape) < 2:
        raise ValueError("%s(): argument 'input' must have shape (N, C, ...), got %s" % (fn, shape))
    C = shape[1]
    bshape = (1, C) + (1,) * (len(shape) - 2)
    dtype = log_probs.dtype
    w = np.ones(C, dtype) if weight is None else np.asarray(_data(as_tensor(weight)), dtype)
    if w.shape != (C,):
        raise ValueError("%s(): argument 'weight' must have shape (%d,), got %s" % (fn, C, w.shape))
    t = target.data if isinstance(target, Tensor) else V.as_array(target, fn, "target")
    if t.dtype.kind == "f":
        if t.shape != shape:
            raise ValueError("%s(): probability targets must have the input's shape %s, got %s" % (fn, shape, t.shape))
        if ignore_index != -100:
            raise ValueError("%s(): argument 'ignore_index' is not supported with probability (floating point) "
                             "targets, got ignore_index=%r" % (fn, ignore_index))
        q = t.astype(dtype) * (1 - label_smoothing) + label_smoothing / C
        return q * w.reshape(bshape), float(np.prod(shape) // C), None
    if t.shape != shape[:1] + shape[2:]:
        raise ValueError("%s(): class-index targets must have shape %s, got %s" % (fn, shape[:1] + shape[2:], t.shape))
    valid = t != ignore_index
    if np.any(((t < 0) | (t >= C)) & valid):
        raise ValueError("%s(): argument 'target' has class indices outside [0, %d)" % (fn, C))
    ts = np.where(valid, t, 0).astype(np.intp)
    wt = w[ts] * valid
    q = np.where(np.arange(C).reshape(bshape) == ts[:, None], ((1 - label_smoothing) * wt)[:, None].astype(dtype),
                 dtype.type(0))
    if label_smoothing:
        q += (label_smoothing / C) * w.reshape(bshape) * valid[:, None]
    return q, float(wt.sum()), valid


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of class indices ``target`` under log-probabilities ``input`` (N, C, ...)."""
    lp = as_tensor(input)
    q, denom, valid = _class_weights("nll_loss", target, lp, weight, ignore_index, 0.0, reduction)
    return _reduce(-(lp * Tensor._wrap(q)).sum(1), reduction, denom, valid)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Cross-entropy of logits ``input`` (N, C, ...) with class indices or class probabilities ``target``.

    Same definition as ``torch.nn.functional.cross_entropy``: per-class ``weight``, ``ignore_index`` (index
    targets only), ``label_smoothing`` and ``reduction`` in ``"mean"``, ``"sum"``, ``"none"``.
    """
    fn = "cross_entropy"
    label_smoothing = V.real_scalar(label_smoothing, fn, "label_smoothing")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError("%s(): argument 'label_smoothing' must be in [0, 1], got %r" % (fn, label_smoothing))
    x = as_tensor(input)
    if x.ndim < 2:
        raise ValueError("%s(): argument 'input' must have shape (N, C, ...), got %s" % (fn, x.shape))
    # one record for the whole loss (log-softmax, the weighted sum, the reduction): a training step's loss
    # cost as much Python as a convolution layer when it was five
    lp = log_softmax_array(x.data, 1)
    q, denom, valid = _class_weights(fn, target, lp, weight, ignore_index, label_smoothing, reduction)
    per_item = -(lp * q).sum(1)

    def backward(g, needs):
        # d(-sum_c q_c lp_c) / dx = softmax(x) * sum_c q_c - q, times each item's share of the reduction
        gi = _item_grad(g, per_item.shape, lp.dtype, reduction, denom, valid)
        return ((np.exp(lp) * q.sum(axis=1, keepdims=True) - q) * np.expand_dims(gi, 1),)
    return record("cross_entropy", _reduced(per_item, reduction, denom), (x,), backward, saved=())


def mse_loss(input, target, reduction="mean"):
    """Mean (or summed, or elementwise) squared error; ``input`` and ``target`` must have the same shape."""
    V.check_choice(reduction, _REDUCTIONS, "mse_loss", "reduction")
    x, t = as_tensor(input), as_tensor(target)
    if x.shape != t.shape:
        raise ValueError("mse_loss(): arguments 'input' %s and 'target' %s must have the same shape"
                         % (x.shape, t.shape))
    d = x - t
    return _reduce(d * d, reduction, float(d.size))


# --------------------------------------------------------------------------------------------------- pooling
def _max_result(name, x, y, idx, return_indices):
    """Record a max-type pool; backward scatters the gradient to the argmax recorded in the forward pass."""
    shape = x.shape
    out = record(name, y, (x,), lambda g, n: (_grad.max_pool_backward(g, idx, shape),), saved=())
    return (out, idx) if return_indices else out


def _named(fn, name, doc):
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = "%s (arguments as ``fastconv.pooling.%s``)." % (doc, name)
    return fn


def _max_pool(nd):
    forward = getattr(_pool, "max_pool%dd" % nd)

    def max_pool(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        x = as_tensor(input)
        y, idx = forward(x.data, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
        return _max_result("max_pool%dd" % nd, x, y, idx, return_indices)
    return _named(max_pool, "max_pool%dd" % nd, "Differentiable %d-D max pooling; backward uses the recorded "
                  "argmax" % nd)


def _avg_pool(nd):
    forward, backward = getattr(_pool, "avg_pool%dd" % nd), getattr(_grad, "avg_pool%dd_backward" % nd)

    def avg_pool(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        x = as_tensor(input)
        args = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
        return record("avg_pool%dd" % nd, forward(x.data, *args), (x,), lambda g, n: (backward(g, x.shape, *args),),
                      saved=())
    return _named(avg_pool, "avg_pool%dd" % nd, "Differentiable %d-D average pooling" % nd)


def _lp_pool(nd):
    forward, backward = getattr(_pool, "lp_pool%dd" % nd), getattr(_grad, "lp_pool%dd_backward" % nd)

    def lp_pool(input, norm_type, kernel_size, stride=None, ceil_mode=False):
        x = as_tensor(input)
        args = (norm_type, kernel_size, stride, ceil_mode)
        y = forward(x.data, *args)
        return record("lp_pool%dd" % nd, y, (x,), lambda g, n: (backward(g, x.data, y, *args),))
    return _named(lp_pool, "lp_pool%dd" % nd, "Differentiable %d-D power-average pooling" % nd)


def _adaptive_max_pool(nd):
    forward = getattr(_pool, "adaptive_max_pool%dd" % nd)

    def adaptive_max_pool(input, output_size, return_indices=False):
        x = as_tensor(input)
        y, idx = forward(x.data, output_size, return_indices=True)
        return _max_result("adaptive_max_pool%dd" % nd, x, y, idx, return_indices)
    return _named(adaptive_max_pool, "adaptive_max_pool%dd" % nd, "Differentiable %d-D adaptive max pooling" % nd)


def _adaptive_avg_pool(nd):
    forward, backward = (getattr(_pool, "adaptive_avg_pool%dd" % nd),
                         getattr(_grad, "adaptive_avg_pool%dd_backward" % nd))

    def adaptive_avg_pool(input, output_size):
        x = as_tensor(input)
        return record("adaptive_avg_pool%dd" % nd, forward(x.data, output_size), (x,),
                      lambda g, n: (backward(g, x.shape),), saved=())
    return _named(adaptive_avg_pool, "adaptive_avg_pool%dd" % nd,
                  "Differentiable %d-D adaptive average pooling" % nd)


def _max_unpool(nd):
    forward = getattr(_pool, "max_unpool%dd" % nd)

    def max_unpool(input, indices, kernel_size, stride=None, padding=0, output_size=None):
        x = as_tensor(input)
        idx = indices.data if isinstance(indices, Tensor) else indices
        y = forward(x.data, idx, kernel_size, stride, padding, output_size)
        return record("max_unpool%dd" % nd, y, (x,), lambda g, n: (_grad.max_unpool_backward(g, idx),), saved=())
    return _named(max_unpool, "max_unpool%dd" % nd, "Differentiable %d-D max unpooling (gradient w.r.t. the "
                  "values)" % nd)


max_pool1d, max_pool2d, max_pool3d = (_max_pool(nd) for nd in (1, 2, 3))
avg_pool1d, avg_pool2d, avg_pool3d = (_avg_pool(nd) for nd in (1, 2, 3))
lp_pool1d, lp_pool2d = (_lp_pool(nd) for nd in (1, 2))
adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d = (_adaptive_max_pool(nd) for nd in (1, 2, 3))
adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d = (_adaptive_avg_pool(nd) for nd in (1, 2, 3))
max_unpool1d, max_unpool2d, max_unpool3d = (_max_unpool(nd) for nd in (1, 2, 3))


def global_max_pool(input, return_indices=False):
    """Maximum of every (n, c) feature map: (N, C, *spatial) -> (N, C); backward uses the recorded argmax."""
    x = as_tensor(input)
    y, idx = _pool.global_max_pool(x.data, return_indices=True)
    return _max_result("global_max_pool", x, y, idx, return_indices)


def global_avg_pool(input):
    """Mean of every (n, c) feature map: (N, C, *spatial) -> (N, C)."""
    x = as_tensor(input)
    return record("global_avg_pool", _pool.global_avg_pool(x.data), (x,),
                  lambda g, n: (_grad.global_avg_pool_backward(g, x.shape),), saved=())


def kmax_pool(input, k, dim=-1, sorted=True):
    """The ``k`` largest values along ``dim`` and their positions: ``(values Tensor, indices ndarray)``."""
    x = as_tensor(input)
    y, idx = _pool.kmax_pool(x.data, k, dim, sorted)
    out = record("kmax_pool", y, (x,), lambda g, n: (_grad.kmax_pool_backward(g, idx, x.shape, dim),), saved=())
    return out, idx

