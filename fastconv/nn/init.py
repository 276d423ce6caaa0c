"""Parameter initialisation, as ``torch.nn.init``, and the random generator fastconv.nn draws from.

Every function fills ``tensor`` (a :class:`~fastconv.Tensor`/Parameter or an ndarray) in place and returns it.
Random numbers come from ``generator`` or, by default, the module generator that :func:`manual_seed` resets.
"""
import math

import numpy as np

from .. import _validate as V

__all__ = ["manual_seed", "default_generator", "calculate_gain", "fan_in_and_fan_out", "uniform_", "normal_",
           "constant_", "zeros_", "ones_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
           "xavier_normal_", "orthogonal_", "trunc_normal_"]

_state = {"rng": np.random.default_rng()}


def manual_seed(seed):
    """Reset the generator used by initialisers and dropout (``fastconv.nn.manual_seed``)."""
    _state["rng"] = np.random.default_rng(V.nonneg_int(seed, "manual_seed", "seed"))
    return _state["rng"]


def default_generator():
    return _state["rng"]


def _array(tensor):
    return tensor.data if hasattr(tensor, "data") and not isinstance(tensor, np.ndarray) else tensor


def _fill(tensor, values):
    arr = _array(tensor)
    arr[...] = values
    if hasattr(tensor, "increment_version"):     # an in-place write of a Tensor's data (see Tensor._version)
        tensor.increment_version()
    return tensor


def calculate_gain(nonlinearity, param=None):
    """Recommended gain for an activation (PyTorch's table)."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
              "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else V.real_scalar(param, "calculate_gain", "param")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError("calculate_gain(): unsupported nonlinearity %r" % (nonlinearity,))


def fan_in_and_fan_out(shape):
    """``(shape[1] * receptive, shape[0] * receptive)`` with ``receptive = prod(shape[2:])`` (PyTorch's rule)."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError("fan_in_and_fan_out(): a tensor with fewer than 2 dimensions has no fan, shape %s"
                         % (shape,))
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _rng(generator):
    return default_generator() if generator is None else generator


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    return _fill(tensor, _rng(generator).uniform(a, b, _array(tensor).shape))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    return _fill(tensor, _rng(generator).normal(mean, std, _array(tensor).shape))


def constant_(tensor, value):
    return _fill(tensor, value)


def zeros_(tensor):
    return _fill(tensor, 0)


def ones_(tensor):
    return _fill(tensor, 1)


def _kaiming_std(tensor, a, mode, nonlinearity, fan):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError("kaiming init: argument 'mode' must be 'fan_in' or 'fan_out', got %r" % (mode,))
    if fan is None:
        fan_in, fan_out = fan_in_and_fan_out(_array(tensor).shape)
        fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None, *, fan=None):
    """U(-b, b) with ``b = gain * sqrt(3 / fan)``; ``a = sqrt(5)`` gives PyTorch's default layer init ``1/sqrt(fan_in)``.

    ``fan`` overrides the fan computed from the shape (for layouts such as locally connected weights).
    """
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity, fan)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None, *, fan=None):
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity, fan), generator)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = fan_in_and_fan_out(_array(tensor).shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = fan_in_and_fan_out(_array(tensor).shape)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator)


def orthogonal_(tensor, gain=1.0, generator=None):
    """A (semi-)orthogonal matrix, scaled by ``gain``, as ``torch.nn.init.orthogonal_``: the tensor viewed as
    ``(shape[0], prod(shape[1:]))`` gets orthonormal rows or columns (whichever are fewer), from the QR
    decomposition of a standard normal matrix with the signs of ``R``'s diagonal folded in (a uniform draw)."""
    arr = _array(tensor)
    if arr.ndim < 2:
        raise ValueError("orthogonal_(): only tensors with 2 or more dimensions are supported, got shape %s"
                         % (arr.shape,))
    if arr.size == 0:
        return tensor
    rows = arr.shape[0]
    cols = arr.size // rows
    flat = _rng(generator).standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, (gain * q).reshape(arr.shape))


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Normal(``mean``, ``std``) values truncated to ``[a, b]`` (absolute bounds, as
    ``torch.nn.init.trunc_normal_``), drawn with ``scipy.stats.truncnorm``."""
    from scipy.stats import truncnorm
    mean, std = V.real_scalar(mean, "trunc_normal_", "mean"), V.real_scalar(std, "trunc_normal_", "std")
    a, b = V.real_scalar(a, "trunc_normal_", "a"), V.real_scalar(b, "trunc_normal_", "b")
    if not std > 0 or not a < b:
        raise ValueError("trunc_normal_(): need std > 0 and a < b, got std=%r, a=%r, b=%r" % (std, a, b))
    arr = _array(tensor)
    values = truncnorm.rvs((a - mean) / std, (b - mean) / std, loc=mean, scale=std, size=arr.shape,
                           random_state=_rng(generator))
    return _fill(tensor, np.clip(values, a, b))
