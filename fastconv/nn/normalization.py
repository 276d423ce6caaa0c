"""Normalisation: batch, instance, group and layer norm -- functional forms with gradients, and their layers.

Every variant standardises ``x`` over some axes with the **biased** variance, ``xhat = (x - mean) / sqrt(var +
eps)``, then applies an optional affine ``weight * xhat + bias``; only the axes differ:

==================  ===========================================  ====================================
function            statistics over                              affine parameters per
==================  ===========================================  ====================================
``batch_norm``      batch and spatial axes, per channel          channel
``instance_norm``   spatial axes, per sample and channel         channel
``group_norm``      channels of a group and spatial axes         channel
``layer_norm``      the trailing ``normalized_shape`` axes       element of ``normalized_shape``
==================  ===========================================  ====================================

Running statistics (batch and instance norm) follow PyTorch exactly: while training,
``running = (1 - momentum) running + momentum batch_stat`` with the **unbiased** batch variance
(``var * n / (n - 1)``); ``momentum=None`` in the layers gives the cumulative average
``1 / num_batches_tracked``.  In evaluation mode the running statistics replace the batch's.

Each forward records one tape operation whose backward is the closed form
``dx = invstd (g - mean(g) - xhat mean(g xhat))`` (``g`` the gradient of ``xhat``), vectorised over the whole
array.  Statistics, ``xhat`` and both passes run in the input's dtype.
"""
import numbers

import numpy as np

from .. import _validate as V
from ..autograd import Tensor, as_tensor, record
from . import init
from ._layer_input import batched, check_dtype
from .module import Module, Parameter

__all__ = ["batch_norm", "instance_norm", "group_norm", "layer_norm",
           "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
           "GroupNorm", "LayerNorm"]


def _opt(t):
    return None if t is None else as_tensor(t)


def _array(a):
    return None if a is None else (a.data if isinstance(a, Tensor) else a)


def _check_param(fn, arg, t, size):
    if t is not None and t.shape != (size,):
        raise ValueError("%s(): argument '%s' must have shape (%d,), got %s" % (fn, arg, size, t.shape))


def _per_channel_args(fn, min_ndim, input, weight, bias, running_mean, running_var, eps, momentum):
    """Checked arguments of batch/instance norm: Tensors, running arrays of shape (C,), eps and momentum."""
    x, w, b = as_tensor(input), _opt(weight), _opt(bias)
    if x.ndim < min_ndim:
        raise ValueError("%s(): argument 'input' must have shape (N, C, *)%s, got %s"
                         % (fn, " with spatial dimensions" if min_ndim > 2 else "", x.shape))
    rm, rv = _array(running_mean), _array(running_var)
    for arg, t in (("weight", w), ("bias", b), ("running_mean", rm), ("running_var", rv)):
        _check_param(fn, arg, t, x.shape[1])
    return (x, w, b, rm, rv, V.real_scalar(eps, fn, "eps"), V.real_scalar(momentum, fn, "momentum"))


def _moments(x3):
    """Mean and biased variance over axes 0 and 2 of a 3-D array, and ``x - mean`` (two passes: the variance
    from the centred values, not ``E[x^2] - mean^2``).  ``einsum`` reduces a (N, C, L) layout in one sweep
    whatever L is, where ``sum(axis=(0, 2))`` slows down for short rows."""
    m = x3.shape[0] * x3.shape[2]
    mean = np.einsum("asl->s", x3) / x3.dtype.type(m)
    xc = x3 - mean[:, None]
    var = np.einsum("asl,asl->s", xc, xc) / x3.dtype.type(m)
    return mean, var, xc


def _normalized_backward(gxhat, xhat, invstd):
    """Gradient of ``x`` from the gradient of ``xhat``: statistics over axes 0 and 2 of 3-D arrays."""
    m = gxhat.shape[0] * gxhat.shape[2]
    mg = np.einsum("asl->s", gxhat) / m
    mgx = np.einsum("asl,asl->s", gxhat, xhat) / m
    gx = gxhat - mg[:, None]
    gx -= xhat * mgx[:, None]
    gx *= invstd[:, None]
    return gx


def _empty(fn, x, w, b):
    """A batch without samples, as PyTorch: an empty output, zero gradients for the affine parameters, and no
    statistics (the running averages stay as they are)."""
    def backward(g, needs):
        return (np.zeros(x.shape, x.dtype) if needs[0] else None,
                np.zeros(w.shape, w.dtype) if needs[1] else None,
                np.zeros(b.shape, b.dtype) if needs[2] else None)
    return record(fn, np.empty(x.shape, x.dtype), (x, w, b), backward, saved=())


def _update_running(running, value, momentum):
    """``running = momentum value + (1 - momentum) running``, in place (PyTorch's order of operations)."""
    running[...] = momentum * value + (1 - momentum) * running


# --------------------------------------------------------------------------------------------------- batch norm
def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    """Batch normalisation of ``input`` (N, C, *spatial) or (N, C) per channel, as
    ``torch.nn.functional.batch_norm``.

    ``training=True`` normalises with the batch's mean and biased variance and, when ``running_mean`` /
    ``running_var`` (arrays of shape (C,)) are given, updates them in place with ``momentum`` (the running variance
    from the unbiased batch variance).  ``training=False`` normalises with the running statistics.
    """
    fn = "batch_norm"
    x, w, b, rm, rv, eps, momentum = _per_channel_args(fn, 2, input, weight, bias, running_mean, running_var, eps,
                                                        momentum)
    N, C = x.shape[:2]
    if N == 0:
        return _empty(fn, x, w, b)
    x3 = x.data.reshape(N, C, -1)
    M = N * x3.shape[2]
    dtype = x.dtype
    if training:
        if M <= 1:
            raise ValueError("%s(): expected more than 1 value per channel when training, got input of shape %s"
                             % (fn, x.shape))
        mean, var, xc = _moments(x3)
        if rm is not None:
            _update_running(rm, mean, momentum)
        if rv is not None:
            _update_running(rv, var * (M / (M - 1)), momentum)
    else:
        if rm is None or rv is None:
            raise ValueError("%s(): running_mean and running_var are needed when training=False" % fn)
        mean, var, xc = rm.astype(dtype, copy=False), rv.astype(dtype, copy=False), None
    invstd = (1 / np.sqrt(var + eps)).astype(dtype, copy=False)
    scale = invstd if w is None else invstd * w.data
    # y = scale (x - mean) + bias: two passes over the data (xc is kept for the backward pass)
    if xc is not None:
        y = xc * scale[:, None]
        if b is not None:
            y += b.data[:, None]
    else:
        shift = -mean * scale if b is None else b.data - mean * scale
        y = x3 * scale[:, None]
        y += shift[:, None]

    def backward(g, needs):
        g3 = g.reshape(x3.shape)
        centered = xc if xc is not None else x3 - mean[:, None]
        gb = np.einsum("ncl->c", g3) if (needs[2] or training) else None
        gxc = np.einsum("ncl,ncl->c", g3, centered) if (needs[1] or training) else None   # sum g (x - mean)
        gx = None
        if needs[0]:
            gx = g3 * scale[:, None]
            if training:   # dx = scale (g - mean(g) - xhat mean(g xhat)) with xhat = (x - mean) invstd
                t = centered * (scale * invstd * invstd * gxc / M)[:, None]
                t += (scale * gb / M)[:, None]
                gx -= t
            gx = gx.reshape(x.shape)
        return gx, (gxc * invstd if needs[1] else None), (gb if needs[2] else None)
    return record(fn, y.reshape(x.shape), (x, w, b), backward, saved=(x, w))


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """Instance normalisation: every (sample, channel) map of ``input`` (N, C, *spatial) standardised on its own,
    as ``torch.nn.functional.instance_norm``.  Running statistics, when given, are updated with the mean over the
    batch of the per-instance statistics (``use_input_stats=False`` normalises with them instead)."""
    fn = "instance_norm"
    x, w, b, rm, rv, eps, momentum = _per_channel_args(fn, 3, input, weight, bias, running_mean, running_var, eps,
                                                        momentum)
    if not use_input_stats:
        return batch_norm(x, rm, rv, w, b, False, momentum, eps)
    N, C = x.shape[:2]
    if N == 0:
        return _empty(fn, x, w, b)
    x3 = x.data.reshape(1, N * C, -1)
    L = x3.shape[2]
    if L <= 1:
        raise ValueError("%s(): expected more than 1 spatial element per channel when training, got input of "
                         "shape %s" % (fn, x.shape))
    mean, var, xc = _moments(x3)
    if rm is not None:
        _update_running(rm, mean.reshape(N, C).mean(0), momentum)
    if rv is not None:
        _update_running(rv, (var * (L / (L - 1))).reshape(N, C).mean(0), momentum)
    return _normalize_affine(fn, x, w, b, xc, var, eps, (N, C, L))


def _normalize_affine(fn, x, w, b, xc, var, eps, affine_shape):
    """Record ``w xhat + b`` with ``xhat = xc invstd``: statistics over axes 0 and 2 of ``xc``'s 3-D layout,
    ``w``/``b`` broadcast along axis 1 of ``affine_shape`` (a 3-D view of the input)."""
    dtype = x.dtype
    invstd = (1 / np.sqrt(var + eps)).astype(dtype, copy=False)
    xhat = xc
    xhat *= invstd[:, None]
    xa = xhat.reshape(affine_shape)
    wd = None if w is None else w.data.reshape(-1, 1)
    y = xa * wd if wd is not None else xa.copy()
    if b is not None:
        y += b.data.reshape(-1, 1)

    def backward(g, needs):
        ga = g.reshape(affine_shape)
        gw = np.einsum("ncl,ncl->c", ga, xa) if needs[1] else None
        gb = np.einsum("ncl->c", ga) if needs[2] else None
        gx = None
        if needs[0]:
            gxhat = ga * wd if wd is not None else ga
            gx = _normalized_backward(gxhat.reshape(xhat.shape), xhat, invstd).reshape(x.shape)
        return gx, gw, gb
    return record(fn, y.reshape(x.shape), (x, w, b), backward, saved=(x, w))


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Group normalisation: the channels of ``input`` ``(N, C, *)`` split into ``num_groups`` groups, each group of
    each sample standardised over its channels and positions; per-channel affine, as
    ``torch.nn.functional.group_norm``."""
    fn = "group_norm"
    x, w, b = as_tensor(input), _opt(weight), _opt(bias)
    if x.ndim < 2:
        raise ValueError("%s(): argument 'input' must have shape (N, C, *), got %s" % (fn, x.shape))
    N, C = x.shape[:2]
    G = V.positive_int(num_groups, fn, "num_groups")
    if C % G:
        raise ValueError("%s(): num_groups=%d must divide the %d channels" % (fn, G, C))
    for arg, t in (("weight", w), ("bias", b)):
        _check_param(fn, arg, t, C)
    eps = V.real_scalar(eps, fn, "eps")
    if N == 0:
        return _empty(fn, x, w, b)
    x3 = x.data.reshape(1, N * G, -1)
    mean, var, xc = _moments(x3)
    return _normalize_affine(fn, x, w, b, xc, var, eps, (N, C, -1))


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalisation over the trailing ``normalized_shape`` dimensions of ``input``, with element-wise
    affine ``weight``/``bias`` of that shape, as ``torch.nn.functional.layer_norm``."""
    fn = "layer_norm"
    x, w, b = as_tensor(input), _opt(weight), _opt(bias)
    shape = _shape_arg(normalized_shape, fn)
    k = len(shape)
    if x.shape[x.ndim - k:] != shape or x.ndim < k:
        raise ValueError("%s(): input of shape %s does not end in normalized_shape %s" % (fn, x.shape, shape))
    for arg, t in (("weight", w), ("bias", b)):
        if t is not None and t.shape != shape:
            raise ValueError("%s(): argument '%s' must have shape %s, got %s" % (fn, arg, shape, t.shape))
    eps = V.real_scalar(eps, fn, "eps")
    D = int(np.prod(shape))
    x3 = x.data.reshape(1, -1, D)
    mean, var, xc = _moments(x3)
    dtype = x.dtype
    invstd = (1 / np.sqrt(var + eps)).astype(dtype, copy=False)
    xhat = xc
    xhat *= invstd[:, None]
    wd = None if w is None else w.data.reshape(D)
    y = xhat * wd if wd is not None else xhat.copy()
    if b is not None:
        y += b.data.reshape(D)

    def backward(g, needs):
        g3 = g.reshape(x3.shape)
        gw = np.einsum("asl,asl->l", g3, xhat).reshape(shape) if needs[1] else None
        gb = g3.sum(axis=(0, 1)).reshape(shape) if needs[2] else None
        gx = None
        if needs[0]:
            gxhat = g3 * wd if wd is not None else g3
            gx = _normalized_backward(gxhat, xhat, invstd).reshape(x.shape)
        return gx, gw, gb
    return record(fn, y.reshape(x.shape), (x, w, b), backward, saved=(x, w))


def _shape_arg(normalized_shape, fn):
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        normalized_shape = (normalized_shape,)
    if isinstance(normalized_shape, (tuple, list)) and not normalized_shape:
        raise ValueError("%s(): argument 'normalized_shape' must not be empty" % fn)
    return V.shape_arg(normalized_shape, fn, "normalized_shape")


# --------------------------------------------------------------------------------------------------- layers
class _NormBase(Module):
    """Shared parts of batch and instance norm: affine parameters and running statistics, as torch's
    ``_NormBase`` (state-dict keys ``weight``, ``bias``, ``running_mean``, ``running_var``,
    ``num_batches_tracked``)."""
    _nd = 2
    _affine_default = True
    _track_default = True

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=None, track_running_stats=None, *,
                 dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        self.num_features = V.positive_int(num_features, name, "num_features")
        self.eps = V.real_scalar(eps, name, "eps")
        if eps <= 0:
            raise ValueError("%s(): argument 'eps' must be > 0, got %r" % (name, eps))
        self.momentum = None if momentum is None else V.real_scalar(momentum, name, "momentum")
        self.affine = V.flag(self._affine_default if affine is None else affine, name, "affine")
        self.track_running_stats = V.flag(self._track_default if track_running_stats is None
                                         else track_running_stats, name, "track_running_stats")
        dtype = np.dtype(dtype)
        if self.affine:
            self.weight = Parameter(np.ones(num_features, dtype))
            self.bias = Parameter(np.zeros(num_features, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def _factor(self):
        """The momentum of this training step (counting it in ``num_batches_tracked``), as torch."""
        if not (self.training and self.track_running_stats):
            return 0.0 if self.momentum is None else self.momentum
        self.num_batches_tracked += 1
        if self.momentum is None:
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum

    def describe(self, input_shape):
        return dict(output_shape=tuple(input_shape), params=2 * self.num_features if self.affine else 0,
                    multiplies=None, window=None)

    def extra_repr(self):
        return "%d, eps=%g, momentum=%s, affine=%s, track_running_stats=%s" % (
            self.num_features, self.eps, self.momentum, self.affine, self.track_running_stats)


class _BatchNorm(_NormBase):
    _ndims = (4,)

    def forward(self, input):
        x = as_tensor(input)
        check_dtype(self, x, self.weight, self.running_mean)
        if x.ndim not in self._ndims:
            raise ValueError("%s: expected %s input, got %dD input of shape %s" % (
                type(self).__name__, " or ".join("%dD" % n for n in self._ndims), x.ndim, x.shape))
        factor = self._factor()
        use_batch = self.training or not self.track_running_stats
        return batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, use_batch, factor,
                          self.eps)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L) inputs (torch.nn.BatchNorm1d)."""
    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W) inputs (torch.nn.BatchNorm2d): per-channel batch statistics while
    training (running averages updated), running statistics in eval mode."""
    _ndims = (4,)


class BatchNorm3d(_BatchNorm):
    """Batch normalisation over (N, C, D, H, W) inputs (torch.nn.BatchNorm3d)."""
    _ndims = (5,)


class _InstanceNorm(_NormBase):
    _affine_default = False
    _track_default = False

    def forward(self, input):
        x, unbatched = batched(self, input, self._nd, (self.weight, self.running_mean))
        if x.shape[1] != self.num_features and self.affine:
            raise ValueError("%s: expected %d channels, got input of shape %s"
                             % (type(self).__name__, self.num_features, as_tensor(input).shape))
        use_input = self.training or not self.track_running_stats      # torch counts no batches here
        y = instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias, use_input,
                          0.0 if self.momentum is None else self.momentum, self.eps)
        return y[0] if unbatched else y


class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation of (N, C, L) or unbatched (C, L) inputs (torch.nn.InstanceNorm1d)."""
    _nd = 1


class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation of (N, C, H, W) or unbatched (C, H, W) inputs (torch.nn.InstanceNorm2d); no
    affine parameters and no running statistics by default, as torch."""
    _nd = 2


class InstanceNorm3d(_InstanceNorm):
    """Instance normalisation of (N, C, D, H, W) or unbatched (C, D, H, W) inputs (torch.nn.InstanceNorm3d)."""
    _nd = 3


class GroupNorm(Module):
    """Group normalisation (torch.nn.GroupNorm): ``num_channels`` split into ``num_groups`` groups; per-channel
    affine ``weight`` (ones) and ``bias`` (zeros) when ``affine``."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, *, dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        self.num_groups = V.positive_int(num_groups, name, "num_groups")
        self.num_channels = V.positive_int(num_channels, name, "num_channels")
        if num_channels % num_groups:
            raise ValueError("%s(): num_channels=%d must be divisible by num_groups=%d"
                             % (name, num_channels, num_groups))
        self.eps = V.real_scalar(eps, name, "eps")
        self.affine = V.flag(affine, name, "affine")
        if self.affine:
            self.weight = Parameter(np.ones(num_channels, dtype))
            self.bias = Parameter(np.zeros(num_channels, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self):
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, input):
        x = as_tensor(input)
        check_dtype(self, x, self.weight)
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def describe(self, input_shape):
        return dict(output_shape=tuple(input_shape), params=2 * self.num_channels if self.affine else 0,
                    multiplies=None, window=None)

    def extra_repr(self):
        return "%d, %d, eps=%g, affine=%s" % (self.num_groups, self.num_channels, self.eps, self.affine)


class LayerNorm(Module):
    """Layer normalisation over the trailing ``normalized_shape`` dimensions (torch.nn.LayerNorm); element-wise
    ``weight`` (ones) and ``bias`` (zeros, unless ``bias=False``) when ``elementwise_affine``."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, *, dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        self.normalized_shape = _shape_arg(normalized_shape, name)
        self.eps = V.real_scalar(eps, name, "eps")
        self.elementwise_affine = V.flag(elementwise_affine, name, "elementwise_affine")
        if self.elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype))
            if V.flag(bias, name, "bias"):
                self.bias = Parameter(np.zeros(self.normalized_shape, dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input):
        x = as_tensor(input)
        check_dtype(self, x, self.weight)
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def describe(self, input_shape):
        params = sum(p.size for p in self.parameters())
        return dict(output_shape=tuple(input_shape), params=params, multiplies=None, window=None)

    def extra_repr(self):
        return "%s, eps=%g, elementwise_affine=%s" % (self.normalized_shape, self.eps, self.elementwise_affine)

