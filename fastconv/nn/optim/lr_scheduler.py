"""Learning-rate schedulers, as ``torch.optim.lr_scheduler``: the same learning rates step for step.

Construct one on an optimiser (it records ``initial_lr`` in every parameter group and sets the step-0 rate),
call ``optimizer.step()`` then ``scheduler.step()`` once per epoch (or per batch for :class:`OneCycleLR`).  Each
scheduler computes the next rate with PyTorch's recursive ("chainable") formula from the group's current rate, so
the floating point sequence is PyTorch's, not merely close to it.  :class:`ReduceLROnPlateau` steps on a metric:
``scheduler.step(val_loss)``.
"""
import math
import numbers
from collections import Counter

from ... import _validate as V

__all__ = ["LRScheduler", "LambdaLR", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "OneCycleLR",
           "ReduceLROnPlateau"]


def _optimizer(scheduler, optimizer):
    from . import Optimizer
    if not isinstance(optimizer, Optimizer):
        raise TypeError("%s(): argument 'optimizer' must be an Optimizer, got %s"
                        % (type(scheduler).__name__, type(optimizer).__name__))
    return optimizer


class LRScheduler:
    """Base class: ``last_epoch`` counts the calls to :meth:`step`; subclasses implement :meth:`get_lr`."""

    def __init__(self, optimizer, last_epoch=-1):
        self.optimizer = _optimizer(self, optimizer)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError("param 'initial_lr' is not specified in param_groups[%d] when resuming a "
                                   "scheduler with last_epoch=%d" % (i, last_epoch))
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._initial = True
        self.step()
        self._initial = False

    def get_lr(self):  # pragma: no cover - abstract
        """The learning rates for ``last_epoch`` (one per parameter group)."""
        raise NotImplementedError

    def get_last_lr(self):
        """The learning rates set by the last :meth:`step`."""
        return list(self._last_lr)

    def _current(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self):
        """Advance one epoch (or batch) and set the next learning rate of every group."""
        self._step_count += 1
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = self._current()

    def state_dict(self):
        """Everything but the optimiser (``load_state_dict`` restores it)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update(state_dict)


class LambdaLR(LRScheduler):
    """``lr = initial_lr * lr_lambda(epoch)`` (one function, or one per group)."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        n = len(_optimizer(self, optimizer).param_groups)
        self.lr_lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(self.lr_lambdas) != n:
            raise ValueError("LambdaLR(): expected %d lr_lambdas, got %d" % (n, len(self.lr_lambdas)))
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * f(self.last_epoch) for f, base in zip(self.lr_lambdas, self.base_lrs)]


class StepLR(LRScheduler):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        self.step_size = V.positive_int(step_size, "StepLR", "step_size")
        self.gamma = V.real_scalar(gamma, "StepLR", "gamma")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size:
            return self._current()
        return [lr * self.gamma for lr in self._current()]


class MultiStepLR(LRScheduler):
    """Multiply the rate by ``gamma`` at each epoch listed in ``milestones`` (a repeated milestone: ``gamma``
    to that power)."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        self.milestones = Counter(V.nonneg_int(m, "MultiStepLR", "milestones") for m in milestones)
        self.gamma = V.real_scalar(gamma, "MultiStepLR", "gamma")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch not in self.milestones:
            return self._current()
        return [lr * self.gamma ** self.milestones[self.last_epoch] for lr in self._current()]


class ExponentialLR(LRScheduler):
    """Multiply the rate by ``gamma`` every epoch."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = V.real_scalar(gamma, "ExponentialLR", "gamma")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0:
            return self._current()
        return [lr * self.gamma for lr in self._current()]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the initial rate to ``eta_min`` over ``T_max`` epochs (and back up, periodically,
    beyond), ``eta_min + (base - eta_min) (1 + cos(pi t / T_max)) / 2`` computed recursively as PyTorch does."""

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        self.T_max = V.positive_int(T_max, "CosineAnnealingLR", "T_max")
        self.eta_min = V.real_scalar(eta_min, "CosineAnnealingLR", "eta_min")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        t, T, eta = self.last_epoch, self.T_max, self.eta_min
        if self._initial:
            return self._current()
        if self._step_count == 1 and t > 0:
            return [eta + (base - eta) * (1 + math.cos(t * math.pi / T)) / 2 for base in self.base_lrs]
        if (t - 1 - T) % (2 * T) == 0:
            return [lr + (base - eta) * (1 - math.cos(math.pi / T)) / 2
                    for base, lr in zip(self.base_lrs, self._current())]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T)) * (lr - eta) + eta
                for lr in self._current()]


def _per_group(name, optimizer, value, arg):
    n = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError("%s(): expected %d values for '%s', got %d" % (name, n, arg, len(value)))
        return list(value)
    return [value] * n


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin), per batch: warm up from ``max_lr / div_factor`` to ``max_lr`` over
    ``pct_start`` of ``total_steps``, then anneal (cosine or linear) to ``initial_lr / final_div_factor``; momentum
    (or Adam's beta1) cycles the other way between ``max_momentum`` and ``base_momentum``."""

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4, three_phase=False, last_epoch=-1):
        name = "OneCycleLR"
        optimizer = _optimizer(self, optimizer)
        if total_steps is not None:
            if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral) or total_steps <= 0:
                raise ValueError("%s(): expected a positive integer total_steps, got %r" % (name, total_steps))
            self.total_steps = int(total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (V.positive_int(epochs, name, "epochs")
                                * V.positive_int(steps_per_epoch, name, "steps_per_epoch"))
        else:
            raise ValueError("%s(): give either total_steps or both epochs and steps_per_epoch" % name)
        pct_start = V.real_scalar(pct_start, name, "pct_start")
        if not 0 <= pct_start <= 1:
            raise ValueError("%s(): expected pct_start between 0 and 1, got %r" % (name, pct_start))
        V.check_choice(anneal_strategy, ("cos", "linear"), name, "anneal_strategy")
        self.anneal_strategy = anneal_strategy
        n = self.total_steps
        if three_phase:
            self._phases = [(float(pct_start * n) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                            (float(2 * pct_start * n) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                            (n - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum")]
        else:
            self._phases = [(float(pct_start * n) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                            (n - 1, "max_lr", "min_lr", "base_momentum", "max_momentum")]
        max_lrs = _per_group(name, optimizer, max_lr, "max_lr")
        if last_epoch == -1:
            for m, group in zip(max_lrs, optimizer.param_groups):
                group["initial_lr"] = m / div_factor
                group["max_lr"] = m
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError("%s(): the optimizer has no momentum or beta1 to cycle (cycle_momentum=True)"
                                 % name)
            self.use_beta1 = "betas" in optimizer.defaults
            maxs = _per_group(name, optimizer, max_momentum, "max_momentum")
            bases = _per_group(name, optimizer, base_momentum, "base_momentum")
            if last_epoch == -1:
                for m, b, group in zip(maxs, bases, optimizer.param_groups):
                    if self.use_beta1:
                        group["betas"] = (m,) + tuple(group["betas"][1:])
                    else:
                        group["momentum"] = m
                    group["max_momentum"] = m
                    group["base_momentum"] = b
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError("OneCycleLR: tried to step %d times; the schedule has total_steps=%d"
                             % (step, self.total_steps))
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, (end, lr0, lr1, m0, m1) in enumerate(self._phases):
                if step <= end or i == len(self._phases) - 1:
                    pct = (step - start) / (end - start)
                    lr = self._anneal(group[lr0], group[lr1], pct)
                    momentum = self._anneal(group[m0], group[m1], pct) if self.cycle_momentum else None
                    break
                start = end
            lrs.append(lr)
            if self.cycle_momentum:
                if self.use_beta1:
                    group["betas"] = (momentum,) + tuple(group["betas"][1:])
                else:
                    group["momentum"] = momentum
        return lrs


class ReduceLROnPlateau(LRScheduler):
    """Multiply the rate by ``factor`` once a metric has stopped improving for ``patience`` steps (``mode="min"``
    for a loss, ``"max"`` for an accuracy); ``threshold`` (relative or absolute) decides what counts as better,
    ``cooldown`` steps pass before counting again, ``min_lr`` bounds the rate and changes below ``eps`` are
    ignored.  Call ``step(metric)``."""

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
                 cooldown=0, min_lr=0, eps=1e-8):
        name = "ReduceLROnPlateau"
        if V.real_scalar(factor, name, "factor") >= 1.0:
            raise ValueError("%s(): factor should be < 1.0, got %r" % (name, factor))
        self.optimizer = _optimizer(self, optimizer)
        self.factor = factor
        self.min_lrs = [float(v) for v in _per_group(name, optimizer, min_lr, "min_lr")]
        self.patience = V.nonneg_int(patience, name, "patience")
        self.cooldown = V.nonneg_int(cooldown, name, "cooldown")
        self.eps = eps
        self.mode = V.check_choice(mode, ("min", "max"), name, "mode")
        self.threshold_mode = V.check_choice(threshold_mode, ("rel", "abs"), name, "threshold_mode")
        self.threshold = threshold
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._last_lr = self._current()
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def _is_better(self, a, best):
        if self.mode == "min":
            return a < best * (1.0 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > best + self.threshold

    def step(self, metrics):
        """Record one value of the monitored metric (a number or a one-element Tensor/array)."""
        current = float(getattr(metrics, "data", metrics))
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for i, group in enumerate(self.optimizer.param_groups):
                old = float(group["lr"])
                new = max(old * self.factor, self.min_lrs[i])
                if old - new > self.eps:
                    group["lr"] = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._current()
