"""Activation functions (functional forms on the tape) and their layers, as ``torch.nn.functional`` / ``torch.nn``.

Each function records one tape operation; its gradient is PyTorch's, including the value chosen at a kink
(``leaky_relu`` takes the slope at 0, ``relu6``/``hardtanh`` pass no gradient at either edge, ``hardswish`` uses
``x / 3 + 1 / 2`` strictly between -3 and 3).  ``inplace=True`` is accepted for compatibility with PyTorch model
code; the result is always a new tensor (the tape keeps the input).
"""
import math

import numpy as np
from scipy import special

from .. import _validate as V
from ..autograd import as_tensor, record, relu, sigmoid, tanh
from . import init
from ._layer_input import check_dtype
from .module import Module, Parameter

__all__ = ["leaky_relu", "elu", "gelu", "silu", "hardswish", "hardtanh", "relu6", "prelu", "softplus", "mish",
           "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU", "SiLU", "Hardswish", "Hardtanh", "ReLU6",
           "PReLU", "Softplus", "Mish"]


def _scalar(x, value):
    """``value`` as a scalar of ``x``'s float dtype (so float32 stays float32)."""
    return x.dtype.type(value) if x.dtype.kind == "f" else value


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """``x`` for ``x > 0``, else ``negative_slope * x``."""
    t = as_tensor(input)
    x = t.data
    a = _scalar(x, V.real_scalar(negative_slope, "leaky_relu", "negative_slope"))
    pos = x > 0
    return record("leaky_relu", np.where(pos, x, x * a), (t,), lambda g, n: (np.where(pos, g, g * a),))


def elu(input, alpha=1.0, inplace=False):
    """``x`` for ``x > 0``, else ``alpha (exp(x) - 1)``."""
    t = as_tensor(input)
    x = t.data
    a = _scalar(x, V.real_scalar(alpha, "elu", "alpha"))
    pos = x > 0
    e = np.exp(np.minimum(x, 0))
    return record("elu", np.where(pos, x, a * (e - 1)), (t,), lambda g, n: (np.where(pos, g, g * a * e),))


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu(input, approximate="none"):
    """``x Phi(x)`` with the normal CDF ``Phi`` (``approximate="none"``) or its tanh approximation
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (``approximate="tanh"``)."""
    V.check_choice(approximate, ("none", "tanh"), "gelu", "approximate")
    t = as_tensor(input)
    x = t.data
    half = _scalar(x, 0.5)
    if approximate == "none":
        cdf = half * (1 + special.erf(x * _scalar(x, 1 / math.sqrt(2.0))))
        pdf = np.exp(-half * x * x) * _scalar(x, 1 / math.sqrt(2 * math.pi))
        return record("gelu", x * cdf, (t,), lambda g, n: (g * (cdf + x * pdf),))
    k, c = _scalar(x, _SQRT_2_OVER_PI), _scalar(x, 0.044715)
    inner = k * (x + c * x * x * x)
    th = np.tanh(inner)

    def backward(g, n):
        dinner = k * (1 + 3 * c * x * x)
        return (g * (half * (1 + th) + half * x * (1 - th * th) * dinner),)
    return record("gelu", half * x * (1 + th), (t,), backward)


def silu(input, inplace=False):
    """``x sigmoid(x)`` (swish)."""
    t = as_tensor(input)
    x = t.data
    s = special.expit(x)
    return record("silu", x * s, (t,), lambda g, n: (g * s * (1 + x * (1 - s)),))


def hardswish(input, inplace=False):
    """``x relu6(x + 3) / 6``; gradient 0 up to -3, ``x / 3 + 1/2`` between, 1 from 3 on (as torch)."""
    t = as_tensor(input)
    x = t.data
    y = x * np.clip(x + 3, 0, 6) / _scalar(x, 6)

    def backward(g, n):
        d = np.where(x <= -3, 0, np.where(x < 3, x / _scalar(x, 3) + _scalar(x, 0.5), 1)).astype(g.dtype)
        return (g * d,)
    return record("hardswish", y, (t,), backward)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """``x`` clipped to ``[min_val, max_val]``; no gradient at or beyond the edges."""
    t = as_tensor(input)
    x = t.data
    lo = V.real_scalar(min_val, "hardtanh", "min_val")
    hi = V.real_scalar(max_val, "hardtanh", "max_val")
    if lo > hi:
        raise ValueError("hardtanh(): min_val %r must not exceed max_val %r" % (min_val, max_val))
    inside = (x > lo) & (x < hi)
    return record("hardtanh", np.clip(x, _scalar(x, lo), _scalar(x, hi)), (t,), lambda g, n: (g * inside,))


def relu6(input, inplace=False):
    """``min(max(x, 0), 6)`` (``hardtanh(x, 0, 6)``)."""
    out = hardtanh(input, 0.0, 6.0)
    return out


def prelu(input, weight):
    """``x`` for ``x > 0``, else ``weight * x`` with a learnable ``weight`` of one value or one per channel
    (dimension 1 of the input)."""
    t, w = as_tensor(input), as_tensor(weight)
    x, a = t.data, w.data
    if a.ndim != 1:
        raise ValueError("prelu(): argument 'weight' must be 1-D, got shape %s" % (a.shape,))
    if a.size != 1:
        if x.ndim < 2 or x.shape[1] != a.size:
            raise ValueError("prelu(): weight has %d values but the input %s has %s channels (dimension 1)"
                             % (a.size, x.shape, x.shape[1] if x.ndim >= 2 else "no"))
        ab = a.reshape((1, -1) + (1,) * (x.ndim - 2))
    else:
        ab = a.reshape(())
    pos = x > 0

    def backward(g, needs):
        gx = np.where(pos, g, g * ab) if needs[0] else None
        gw = None
        if needs[1]:
            contrib = np.where(pos, 0, g * x)
            gw = contrib.sum().reshape(1) if a.size == 1 else \
                contrib.sum(axis=tuple(i for i in range(x.ndim) if i != 1))
        return gx, gw
    return record("prelu", np.where(pos, x, x * ab), (t, w), backward)


def softplus(input, beta=1.0, threshold=20.0):
    """``log(1 + exp(beta x)) / beta``, linear (``x``) where ``beta x > threshold``."""
    t = as_tensor(input)
    x = t.data
    b = _scalar(x, V.real_scalar(beta, "softplus", "beta"))
    th = V.real_scalar(threshold, "softplus", "threshold")
    bx = x * b
    lin = bx > th
    y = np.where(lin, x, np.logaddexp(0, bx) / b)
    s = special.expit(bx)
    return record("softplus", y, (t,), lambda g, n: (np.where(lin, g, g * s),))


def mish(input, inplace=False):
    """``x tanh(softplus(x))``."""
    t = as_tensor(input)
    x = t.data
    tsp = np.tanh(np.logaddexp(0, x))
    s = special.expit(x)
    return record("mish", x * tsp, (t,), lambda g, n: (g * (tsp + x * s * (1 - tsp * tsp)),))


# --------------------------------------------------------------------------------------------------- layers
class _Activation(Module):
    """An element-wise layer: no parameters, the input's shape (any number of dimensions, batched or not)."""
    _fn = None
    _args = ()

    def __init__(self, *args, **kwargs):
        super().__init__()
        name = type(self).__name__
        names = [a for a, _ in self._args]
        if len(args) > len(names):
            raise TypeError("%s() takes at most %d arguments (%d given)" % (name, len(names), len(args)))
        values = dict(self._args)
        values.update(zip(names, args))
        for k, v in kwargs.items():
            if k not in values or k in names[:len(args)]:
                raise TypeError("%s() got an unexpected or repeated argument %r" % (name, k))
            values[k] = v
        for k in names:
            setattr(self, k, values[k])

    def forward(self, input):
        return type(self)._fn(input, **{a: getattr(self, a) for a, _ in self._args if a != "inplace"})

    def describe(self, input_shape):
        return dict(output_shape=tuple(input_shape), params=0, multiplies=0, window=None)

    def extra_repr(self):
        return ", ".join("%s=%s" % (a, getattr(self, a)) for a, d in self._args if getattr(self, a) != d)


def _layer(name, fn, args, doc):
    return type(name, (_Activation,), dict(_fn=staticmethod(fn), _args=tuple(args), __doc__=doc))


_INPLACE = [("inplace", False)]
ReLU = _layer("ReLU", lambda x: relu(x), _INPLACE, "``max(x, 0)`` (torch.nn.ReLU).")
Sigmoid = _layer("Sigmoid", lambda x: sigmoid(x), [], "``1 / (1 + exp(-x))`` (torch.nn.Sigmoid).")
Tanh = _layer("Tanh", lambda x: tanh(x), [], "``tanh(x)`` (torch.nn.Tanh).")
LeakyReLU = _layer("LeakyReLU", leaky_relu, [("negative_slope", 0.01)] + _INPLACE,
                   "``x`` above 0, ``negative_slope x`` below (torch.nn.LeakyReLU).")
ELU = _layer("ELU", elu, [("alpha", 1.0)] + _INPLACE, "Exponential linear unit (torch.nn.ELU).")
GELU = _layer("GELU", gelu, [("approximate", "none")], "Gaussian error linear unit, exact or ``approximate="
              "'tanh'`` (torch.nn.GELU).")
SiLU = _layer("SiLU", silu, _INPLACE, "``x sigmoid(x)`` (torch.nn.SiLU).")
Hardswish = _layer("Hardswish", hardswish, _INPLACE, "``x relu6(x + 3) / 6`` (torch.nn.Hardswish).")
Hardtanh = _layer("Hardtanh", hardtanh, [("min_val", -1.0), ("max_val", 1.0)] + _INPLACE,
                  "``x`` clipped to ``[min_val, max_val]`` (torch.nn.Hardtanh).")
ReLU6 = _layer("ReLU6", relu6, _INPLACE, "``min(max(x, 0), 6)`` (torch.nn.ReLU6).")
Softplus = _layer("Softplus", softplus, [("beta", 1.0), ("threshold", 20.0)],
                  "``log(1 + exp(beta x)) / beta`` (torch.nn.Softplus).")
Mish = _layer("Mish", mish, _INPLACE, "``x tanh(softplus(x))`` (torch.nn.Mish).")


class PReLU(Module):
    """Parametric ReLU (torch.nn.PReLU): ``weight`` of ``num_parameters`` slopes (1, or one per channel),
    initialised to ``init``."""

    def __init__(self, num_parameters=1, init=0.25, *, dtype=np.float32):
        super().__init__()
        self.num_parameters = V.positive_int(num_parameters, "PReLU", "num_parameters")
        self.init = V.real_scalar(init, "PReLU", "init")
        self.weight = Parameter(np.full(self.num_parameters, self.init, dtype))

    def reset_parameters(self):
        init.constant_(self.weight, self.init)

    def forward(self, input):
        x = as_tensor(input)
        check_dtype(self, x, self.weight)
        return prelu(x, self.weight)

    def describe(self, input_shape):
        return dict(output_shape=tuple(input_shape), params=self.num_parameters, multiplies=0, window=None)

    def extra_repr(self):
        return "num_parameters=%d" % self.num_parameters
