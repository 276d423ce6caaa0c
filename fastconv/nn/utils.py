"""Training and inference helpers, as ``torch.nn.utils``: gradient clipping, parameter vectors, conv + batch-norm
fusion.

**Fusion** (:func:`fuse_conv_bn_eval`, :func:`fuse_modules`) folds an eval-mode batch norm into the convolution
before it: with ``s = gamma / sqrt(running_var + eps)``, the fused convolution has weight ``w * s`` (per output
channel) and bias ``(b - running_mean) * s + beta``.  At inference this saves the batch-norm pass -- two
elementwise passes over every activation and their temporaries -- and, with a following ReLU fused as well, the
separate activation pass (applied in place on the convolution's output when nothing is being recorded).  The
result equals the unfused eval-mode network up to rounding.
"""
import copy
import math

import numpy as np

from .. import _validate as V
from ..autograd import Tensor, relu
from .activation import ReLU
from .layers import Identity
from .module import Module, Parameter
from .normalization import BatchNorm1d, BatchNorm2d, BatchNorm3d

__all__ = ["clip_grad_norm_", "clip_grad_value_", "parameters_to_vector", "vector_to_parameters",
           "fuse_conv_bn_weights", "fuse_conv_bn_eval", "fuse_modules", "FusedConvReLU"]


def _params(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return list(parameters)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients of ``parameters`` in place so that their joint ``norm_type``-norm is at most
    ``max_norm`` (factor ``max_norm / (total + 1e-6)``, capped at 1, as torch).  Returns the total norm before
    clipping as a 0-d Tensor."""
    grads = [p.grad for p in _params(parameters) if p.grad is not None]
    max_norm = V.real_scalar(max_norm, "clip_grad_norm_", "max_norm")
    norm_type = V.real_scalar(norm_type, "clip_grad_norm_", "norm_type")
    if not grads:
        return Tensor._wrap(np.array(0.0, np.float32))
    dtype = grads[0].dtype
    if math.isinf(norm_type):
        norms = np.array([np.abs(g).max() if g.size else 0 for g in grads], dtype)
        total = norms.max()
    else:
        norms = np.array([np.linalg.norm(g.ravel(), norm_type) for g in grads], dtype)
        total = np.linalg.norm(norms, norm_type).astype(dtype)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError("clip_grad_norm_(): the total norm of order %g of the gradients is non-finite, so it "
                           "cannot be clipped; set error_if_nonfinite=False to scale by it anyway" % norm_type)
    coef = min(dtype.type(max_norm) / (total + dtype.type(1e-6)), dtype.type(1.0))
    for g in grads:
        g *= coef
    return Tensor._wrap(np.asarray(total, dtype))


def clip_grad_value_(parameters, clip_value):
    """Clip every gradient element of ``parameters`` to ``[-clip_value, clip_value]`` in place."""
    clip_value = V.real_scalar(clip_value, "clip_grad_value_", "clip_value")
    for p in _params(parameters):
        if p.grad is not None:
            np.clip(p.grad, -clip_value, clip_value, out=p.grad)


def parameters_to_vector(parameters):
    """One flat array of all parameters, in order."""
    return np.concatenate([p.data.ravel() for p in _params(parameters)])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of the flat ``vec`` into ``parameters`` (the inverse of
    :func:`parameters_to_vector`)."""
    vec = np.asarray(vec.data if isinstance(vec, Tensor) else vec)
    params = _params(parameters)
    total = sum(p.size for p in params)
    if vec.ndim != 1 or vec.size != total:
        raise ValueError("vector_to_parameters(): expected a 1-D vector of %d values, got shape %s"
                         % (total, vec.shape))
    start = 0
    for p in params:
        p.data[...] = vec[start:start + p.size].reshape(p.shape)
        p.increment_version()           # an in-place write of the parameter (see Tensor._version)
        start += p.size


# --------------------------------------------------------------------------------------------------- fusion
def fuse_conv_bn_weights(conv_w, conv_b, bn_rm, bn_rv, bn_eps, bn_w, bn_b, transpose=False):
    """``(weight, bias)`` arrays of a convolution followed by an eval-mode batch norm, folded into one."""
    conv_w = np.asarray(conv_w)
    dtype = conv_w.dtype
    out = conv_w.shape[1] if transpose else conv_w.shape[0]
    conv_b = np.zeros(out, dtype) if conv_b is None else np.asarray(conv_b)
    bn_w = np.ones(out, dtype) if bn_w is None else np.asarray(bn_w)
    bn_b = np.zeros(out, dtype) if bn_b is None else np.asarray(bn_b)
    scale = bn_w / np.sqrt(np.asarray(bn_rv) + bn_eps)
    shape = (1, -1) + (1,) * (conv_w.ndim - 2) if transpose else (-1,) + (1,) * (conv_w.ndim - 1)
    return ((conv_w * scale.reshape(shape)).astype(dtype), ((conv_b - bn_rm) * scale + bn_b).astype(dtype))


def fuse_conv_bn_eval(conv, bn, transpose=False):
    """A copy of ``conv`` with the eval-mode batch norm ``bn`` (which must track running statistics) folded in."""
    if conv.training or bn.training:
        raise ValueError("fuse_conv_bn_eval(): fusion is only for eval mode; call .eval() first")
    if not isinstance(bn, (BatchNorm1d, BatchNorm2d, BatchNorm3d)) or not bn.track_running_stats:
        raise ValueError("fuse_conv_bn_eval(): 'bn' must be a BatchNorm layer tracking running statistics")
    fused = copy.deepcopy(conv)
    w, b = fuse_conv_bn_weights(conv.weight.data, None if conv.bias is None else conv.bias.data,
                                bn.running_mean, bn.running_var, bn.eps,
                                None if bn.weight is None else bn.weight.data,
                                None if bn.bias is None else bn.bias.data, transpose)
    fused.weight = Parameter(w)
    fused.bias = Parameter(b)
    return fused


class FusedConvReLU(Module):
    """A (fused) convolution followed by ReLU; without recording (``no_grad``) the ReLU runs in place on the
    convolution's output, saving its pass and array."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        y = self.conv(x)
        if y.requires_grad:                  # recorded: the tape needs the convolution's output
            return relu(y)
        np.maximum(y.data, 0, out=y.data)
        return y

    def describe(self, input_shape):
        return self.conv.describe(input_shape)


def _resolve(model, dotted):
    parent = model
    parts = dotted.split(".")
    for p in parts[:-1]:
        parent = getattr(parent, p)
    return parent, parts[-1], getattr(parent, parts[-1])


def fuse_modules(model, modules_to_fuse, inplace=False):
    """Fuse each listed ``[conv, bn]`` or ``[conv, bn, relu]`` (dotted module names, as
    ``torch.ao.quantization.fuse_modules``) of an eval-mode ``model``: the first name becomes the fused
    convolution (a :class:`FusedConvReLU` with a ReLU), the others :class:`Identity`.  Returns the fused model
    (a deep copy unless ``inplace``)."""
    if model.training:
        raise ValueError("fuse_modules(): fusion is only for eval mode; call model.eval() first")
    if not inplace:
        model = copy.deepcopy(model)
    groups = [modules_to_fuse] if modules_to_fuse and isinstance(modules_to_fuse[0], str) else modules_to_fuse
    for names in groups:
        if len(names) not in (2, 3):
            raise ValueError("fuse_modules(): expected [conv, bn] or [conv, bn, relu], got %r" % (names,))
        (cp, cn, conv), (bp, bname, bn) = _resolve(model, names[0]), _resolve(model, names[1])
        transpose = type(conv).__name__.startswith("ConvTranspose")
        fused = fuse_conv_bn_eval(conv, bn, transpose)
        if len(names) == 3:
            rp, rn, r = _resolve(model, names[2])
            if not isinstance(r, ReLU):
                raise ValueError("fuse_modules(): %r is a %s, not a ReLU" % (names[2], type(r).__name__))
            fused = FusedConvReLU(fused).eval()
            setattr(rp, rn, Identity())
        setattr(cp, cn, fused)
        setattr(bp, bname, Identity())
    return model
