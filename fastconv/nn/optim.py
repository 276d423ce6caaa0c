"""Optimisers with PyTorch's update rules: :class:`SGD` (momentum, Nesterov, weight decay) and :class:`Adam`.

``params`` is an iterable of Parameters or of dicts ``{"params": [...], "lr": ...}`` (parameter groups with their
own options).  ``step()`` updates ``p.data`` in place from ``p.grad`` (parameters without a gradient are
skipped); ``zero_grad()`` sets every ``p.grad`` to None.
"""
import numpy as np

from .. import _validate as V
from ..autograd import Tensor

__all__ = ["Optimizer", "SGD", "Adam"]


class Optimizer:
    def __init__(self, params, defaults):
        name = type(self).__name__
        if isinstance(params, Tensor):
            raise TypeError("%s(): argument 'params' must be an iterable of Parameters or dicts, got a single "
                            "Tensor" % name)
        params = list(params)
        if not params:
            raise ValueError("%s(): argument 'params' is an empty list" % name)
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups = []
        self.state = {}
        for g in groups:
            group = dict(defaults, **g)
            group["params"] = list(group["params"])
            for p in group["params"]:
                if not isinstance(p, Tensor) or not p.requires_grad or not p.is_leaf:
                    raise TypeError("%s(): can only optimise leaf Tensors that require grad, got %r"
                                    % (name, type(p).__name__))
            self._check(group)
            self.param_groups.append(group)

    def _check(self, group):
        name = type(self).__name__
        for key in ("lr", "weight_decay"):
            if V.real_scalar(group[key], name, key) < 0:
                raise ValueError("%s(): argument '%s' must be >= 0, got %r" % (name, key, group[key]))

    def zero_grad(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad.astype(p.dtype, copy=False), group,
                                 self.state.setdefault(id(p), {}))

    def _update(self, p, grad, group, state):  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent: ``v = momentum v + (1 - dampening) g``; ``p -= lr (g + momentum v)`` with
    Nesterov, else ``p -= lr v``; ``weight_decay`` adds ``wd p`` to ``g`` first (as ``torch.optim.SGD``)."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov))

    def _check(self, group):
        super()._check(group)
        if V.real_scalar(group["momentum"], "SGD", "momentum") < 0:
            raise ValueError("SGD(): argument 'momentum' must be >= 0, got %r" % group["momentum"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD(): nesterov=True needs momentum > 0 and dampening = 0")

    def _update(self, p, g, group, state):
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        m = group["momentum"]
        if m:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g)
            else:
                buf *= m
                buf += (1 - group["dampening"]) * g
            g = g + m * buf if group["nesterov"] else buf
        p.data -= group["lr"] * g


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction, optional L2 ``weight_decay`` and AMSGrad, as ``torch.optim.Adam``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _check(self, group):
        super()._check(group)
        b1, b2 = group["betas"]
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError("Adam(): argument 'betas' must be in [0, 1), got %r" % (group["betas"],))
        if V.real_scalar(group["eps"], "Adam", "eps") < 0:
            raise ValueError("Adam(): argument 'eps' must be >= 0, got %r" % group["eps"])

    def _update(self, p, g, group, state):
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        b1, b2 = group["betas"]
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(p.data), exp_avg_sq=np.zeros_like(p.data),
                         scratch=np.empty_like(p.data))
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        m, v, tmp = state["exp_avg"], state["exp_avg_sq"], state["scratch"]
        m *= b1                                          # in place, one scratch array: no temporaries
        np.multiply(g, 1 - b1, out=tmp)
        m += tmp
        v *= b2
        np.multiply(g, g, out=tmp)
        tmp *= 1 - b2
        v += tmp
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        np.sqrt(v, out=tmp)                              # denominator sqrt(v) / sqrt(1 - b2^t) + eps
        tmp /= np.sqrt(1 - b2 ** t)
        tmp += group["eps"]
        np.divide(m, tmp, out=tmp)
        tmp *= group["lr"] / (1 - b1 ** t)
        p.data -= tmp
