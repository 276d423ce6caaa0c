"""Optimisers with PyTorch's update rules: :class:`SGD`, :class:`Adam`, :class:`AdamW` and :class:`RMSprop`.

``params`` is an iterable of Parameters or of dicts ``{"params": [...], "lr": ...}`` (parameter groups with their
own options).  Parameters that do not require grad are accepted and skipped (the usual fine-tuning pattern:
freeze some layers, optimise ``model.parameters()``); so is every parameter whose ``.grad`` is None.
``step()`` is the one place that writes parameters: it hands each parameter's array to the optimiser's update
rule, which changes it in place, and then bumps the parameter's version counter
(:meth:`~fastconv.Tensor.increment_version`), so that a backward pass through a graph recorded before the step
raises instead of differentiating with the new values, as in PyTorch.  ``zero_grad()`` sets every ``p.grad`` to
None.

``state_dict()`` / ``load_state_dict()`` use PyTorch's layout -- ``{"state": {index: {...}}, "param_groups":
[{..., "params": [indices]}]}`` with parameters numbered in group order -- so the state of a torch optimiser of
the same kind (tensors converted to arrays) loads too.  Learning-rate schedulers are in
:mod:`fastconv.nn.optim.lr_scheduler`.
"""
import copy

import numpy as np

from ... import _validate as V
from ...autograd import Tensor
from ..module import to_numpy

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "lr_scheduler"]


class Optimizer:
    """Base class: parameter groups, per-parameter state, ``step``, ``zero_grad`` and the state dict."""

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
            self.add_param_group(g)

    def add_param_group(self, param_group):
        """Add a group (a dict with ``"params"`` and optional per-group options) to optimise as well."""
        name = type(self).__name__
        group = dict(self.defaults, **param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor) or not p.is_leaf:
                raise TypeError("%s(): can only optimise leaf Tensors, got %s"
                                % (name, "a non-leaf Tensor" if isinstance(p, Tensor) else type(p).__name__))
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError("%s(): some parameters appear in more than one parameter group" % name)
        self._check(group)
        self.param_groups.append(group)

    def _check(self, group):
        name = type(self).__name__
        for key in ("lr", "weight_decay"):
            if V.real_scalar(group[key], name, key) < 0:
                raise ValueError("%s(): argument '%s' must be >= 0, got %r" % (name, key, group[key]))

    def zero_grad(self, set_to_none=True):
        """Forget every gradient (``set_to_none=False`` zeroes the arrays instead)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a gradient; ``closure`` (re-evaluating the loss) is called first and
        its result returned."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = {}
                self._update(p.data, p.grad.astype(p.dtype, copy=False), group, state)
                p.increment_version()    # the one place an optimiser marks its in-place write
        return loss

    def _update(self, param, grad, group, state):  # pragma: no cover - abstract
        """Change the array ``param`` in place from ``grad`` (the optimiser's rule)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ state dict
    def _indexed(self):
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self):
        """``{"state": {index: {name: value}}, "param_groups": [options with "params": [indices]]}`` (copies)."""
        index = {id(p): i for i, p in enumerate(self._indexed())}
        groups = []
        for g in self.param_groups:
            entry = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            entry["params"] = [index[id(p)] for p in g["params"]]
            groups.append(entry)
        state = {index[id(p)]: {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in s.items()
                                if not k.startswith("_")}
                 for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore options and per-parameter state saved by :meth:`state_dict` (or by the torch optimiser of the
        same kind); the groups must have the same sizes."""
        name = type(self).__name__
        groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
        if groups is None or "state" not in state_dict:
            raise ValueError("%s.load_state_dict(): expected a dict with 'state' and 'param_groups'" % name)
        if len(groups) != len(self.param_groups):
            raise ValueError("%s.load_state_dict(): the state dict has %d parameter groups, the optimiser %d"
                             % (name, len(groups), len(self.param_groups)))
        for saved, ours in zip(groups, self.param_groups):
            if len(saved["params"]) != len(ours["params"]):
                raise ValueError("%s.load_state_dict(): a parameter group of %d parameters does not match the "
                                 "optimiser's group of %d" % (name, len(saved["params"]), len(ours["params"])))
        by_index = {}
        for saved, ours in zip(groups, self.param_groups):
            by_index.update(zip(saved["params"], ours["params"]))
        new_state = {}
        for key, values in state_dict["state"].items():
            p = by_index.get(int(key))
            if p is None:
                continue
            entry = {}
            for k, v in values.items():
                if v is None:
                    continue
                arr = to_numpy(v)
                if k == "step":
                    entry[k] = int(np.asarray(arr).item())
                elif arr.shape == p.shape:
                    entry[k] = np.array(arr, dtype=p.dtype)
                else:
                    raise ValueError("%s.load_state_dict(): state %r has shape %s, parameter %s"
                                     % (name, k, arr.shape, p.shape))
            new_state[p] = entry
        for saved, ours in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    ours[k] = tuple(v) if isinstance(v, list) and k == "betas" else copy.deepcopy(v)
        self.state = new_state

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for i, g in enumerate(self.param_groups):
            lines.append("Parameter Group %d" % i)
            lines.extend("    %s: %s" % (k, g[k]) for k in sorted(g) if k != "params")
        return "\n".join(lines + [")"])


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

    def _update(self, param, g, group, state):
        if group["weight_decay"]:
            g = g + group["weight_decay"] * param
        m = group["momentum"]
        if m:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(g)
            else:
                buf *= m
                buf += (1 - group["dampening"]) * g
            g = g + m * buf if group["nesterov"] else buf
        param -= group["lr"] * g


class Adam(Optimizer):
    """Adam (Kingma & Ba) with bias correction, optional L2 ``weight_decay`` and AMSGrad, as ``torch.optim.Adam``."""
    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _check(self, group):
        super()._check(group)
        name = type(self).__name__
        b1, b2 = group["betas"]
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError("%s(): argument 'betas' must be in [0, 1), got %r" % (name, group["betas"]))
        if V.real_scalar(group["eps"], name, "eps") < 0:
            raise ValueError("%s(): argument 'eps' must be >= 0, got %r" % (name, group["eps"]))

    def _update(self, param, g, group, state):
        lr, wd = group["lr"], group["weight_decay"]
        if wd:
            if self._decoupled:
                param *= 1 - lr * wd                     # AdamW: decay the weights, not the gradient
            else:
                g = g + wd * param
        b1, b2 = group["betas"]
        if "step" not in state:
            state.update(step=0, exp_avg=np.zeros_like(param), exp_avg_sq=np.zeros_like(param))
        if group["amsgrad"] and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = np.zeros_like(param)
        tmp = state.get("_scratch")
        if tmp is None:
            tmp = state["_scratch"] = np.empty_like(param)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
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
        tmp *= lr / (1 - b1 ** t)
        param -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p *= 1 - lr weight_decay`` before the Adam step,
    as ``torch.optim.AdamW`` (default ``weight_decay=0.01``)."""
    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)


class RMSprop(Optimizer):
    """RMSprop as ``torch.optim.RMSprop``: ``v = alpha v + (1 - alpha) g^2``; the step is ``g / (sqrt(v) + eps)``
    (``centered``: ``v`` minus the squared running mean of ``g``), through a ``momentum`` buffer when set."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered))

    def _check(self, group):
        super()._check(group)
        for key in ("alpha", "eps", "momentum"):
            if V.real_scalar(group[key], "RMSprop", key) < 0:
                raise ValueError("RMSprop(): argument '%s' must be >= 0, got %r" % (key, group[key]))

    def _update(self, param, g, group, state):
        if group["weight_decay"]:
            g = g + group["weight_decay"] * param
        alpha = group["alpha"]
        if "step" not in state:
            state.update(step=0, square_avg=np.zeros_like(param))
        if group["momentum"] > 0 and "momentum_buffer" not in state:
            state["momentum_buffer"] = np.zeros_like(param)
        if group["centered"] and "grad_avg" not in state:
            state["grad_avg"] = np.zeros_like(param)
        state["step"] += 1
        sq = state["square_avg"]
        sq *= alpha
        sq += (1 - alpha) * g * g
        if group["centered"]:
            ga = state["grad_avg"]
            ga += (1 - alpha) * (g - ga)
            avg = np.sqrt(sq - ga * ga)
        else:
            avg = np.sqrt(sq)
        avg += group["eps"]
        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            buf += g / avg
            param -= group["lr"] * buf
        else:
            param -= group["lr"] * (g / avg)


from . import lr_scheduler  # noqa: E402  (the schedulers need Optimizer)
