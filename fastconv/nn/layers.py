"""Layers: each owns its parameters and calls the functional op in :mod:`fastconv.nn.functional`.

Constructors, parameter names, array layouts and default initialisation follow ``torch.nn`` (weights
kaiming-uniform with ``a = sqrt(5)``, i.e. ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, biases the same bound).
Convolution and pooling layers also take an unbatched sample ``(C, *spatial)`` (a batch of one, returned without
the batch dimension), and layers with parameters refuse an input of another dtype (TypeError) instead of promoting
it, as torch does; the functional API keeps NumPy's promotion.
Layers with a shape-changing window expose ``geometry(input_shape)`` -- the :class:`~fastconv.ConvGeometry` or
:class:`~fastconv.PoolGeometry` of that call -- and ``describe(input_shape)`` for :func:`fastconv.nn.summary`.
"""
import math

import numpy as np

from .. import _validate as V
from .._geometry import PADDING_MODES, ConvGeometry, PoolGeometry, transpose_output_padding
from ..autograd import Tensor, as_tensor
from . import functional as F
from . import init
from ._layer_input import batched, check_dtype
from .module import Module, Parameter

__all__ = [
    "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "LocallyConnected2d", "TiledConv2d", "Linear",
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "LpPool1d", "LpPool2d",
    "LPPool1d", "LPPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "GlobalAvgPool2d", "GlobalMaxPool2d", "MaxUnpool1d", "MaxUnpool2d",
    "MaxUnpool3d", "KMaxPool",
    "Softmax", "LogSoftmax", "Flatten", "Dropout", "Identity",
    "CrossEntropyLoss", "NLLLoss", "MSELoss",
]


def describe_elementwise(input_shape):
    """Summary entry of a layer that keeps the shape and has neither parameters nor multiplications."""
    return dict(output_shape=tuple(input_shape), params=0, multiplies=0, window=None)


def _window(geom):
    return (geom.effective_kernel, geom.stride)


def _init_weight_and_bias(weight, bias, fan_in):
    """PyTorch's default: kaiming_uniform(a=sqrt(5)) weights and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) biases."""
    init.kaiming_uniform_(weight, a=math.sqrt(5), fan=fan_in)
    if bias is not None:
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init.uniform_(bias, -bound, bound)


def _channels(name, in_channels, out_channels, groups):
    in_channels = V.positive_int(in_channels, name, "in_channels")
    out_channels = V.positive_int(out_channels, name, "out_channels")
    groups = V.positive_int(groups, name, "groups")
    if in_channels % groups or out_channels % groups:
        raise ValueError("%s(): argument 'groups'=%d must divide in_channels=%d and out_channels=%d"
                         % (name, groups, in_channels, out_channels))
    return in_channels, out_channels, groups


# --------------------------------------------------------------------------------------------------- convolution
class _WindowLayer(Module):
    """Shared constructor parts of the layers that slide a weight window over the input."""
    _nd = 2

    def _window_args(self, in_channels, out_channels, kernel_size, stride, dilation, groups=1):
        name, nd = type(self).__name__, self._nd
        self.in_channels, self.out_channels, self.groups = _channels(name, in_channels, out_channels, groups)
        self.kernel_size = V.int_tuple(kernel_size, nd, name, "kernel_size", minimum=1)
        self.stride = V.int_tuple(stride, nd, name, "stride", minimum=1)
        self.dilation = V.int_tuple(dilation, nd, name, "dilation", minimum=1)

    def _parameters_of(self, weight_shape, bias_shape, bias, dtype, fan_in):
        """Create ``weight`` and (unless ``bias`` is False) ``bias``, initialised as PyTorch does for ``fan_in``."""
        self.weight = Parameter(np.empty(weight_shape, dtype))
        self.bias = Parameter(np.empty(bias_shape, dtype)) if V.flag(bias, type(self).__name__, "bias") else None
        self._fan_in = fan_in
        self.reset_parameters()

    def reset_parameters(self):
        _init_weight_and_bias(self.weight, self.bias, self._fan_in)

    def geometry(self, input_shape):
        """The :class:`~fastconv.ConvGeometry` of one filter bank applied to ``input_shape``."""
        return ConvGeometry.make(input_shape, (self.out_channels, self.in_channels // self.groups)
                                 + self.kernel_size, self.stride, self.padding, self.dilation, self.groups,
                                 fn=type(self).__name__, padding_mode=getattr(self, "padding_mode", "zeros"))

    def _describe(self, input_shape, banks, bias_size):
        g = self.geometry(input_shape)
        return dict(output_shape=g.output_shape, params=banks * g.params(bias=False) + bias_size,
                    multiplies=g.multiplies, window=_window(g))

    def _bias_size(self):
        return 0 if self.bias is None else self.bias.size

    def extra_repr(self):
        s = "%d, %d, kernel_size=%s, stride=%s" % (self.in_channels, self.out_channels, self.kernel_size,
                                                    self.stride)
        for attr, default in (("padding", (0,) * self._nd), ("output_padding", (0,) * self._nd),
                              ("dilation", (1,) * self._nd), ("groups", 1), ("padding_mode", "zeros"),
                              ("input_size", None), ("tile_size", None)):
            value = getattr(self, attr, default)
            if value != default:
                s += ", %s=%s" % (attr, value)
        return s + (", bias=False" if self.bias is None else "")


class _ConvNd(_WindowLayer):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", *, algorithm="auto", dtype=np.float32):
        super().__init__()
        self._window_args(in_channels, out_channels, kernel_size, stride, dilation, groups)
        name = type(self).__name__
        self.padding = V.padding_arg(padding, self._nd, name)
        self.padding_mode = V.check_choice(padding_mode, PADDING_MODES, name, "padding_mode")
        self.algorithm = algorithm
        self._parameters_of((out_channels, in_channels // groups) + self.kernel_size, out_channels, bias, dtype,
                            in_channels // groups * int(np.prod(self.kernel_size)))

    def forward(self, input):
        x, unbatched = batched(self, input, self._nd, (self.weight,))
        y = getattr(F, "conv%dd" % self._nd)(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                             self.groups, padding_mode=self.padding_mode, algorithm=self.algorithm)
        return y[0] if unbatched else y

    def describe(self, input_shape):
        return self._describe(input_shape, 1, self._bias_size())


class Conv1d(_ConvNd):
    """1-D convolution layer (torch.nn.Conv1d) over (N, C, L): weight ``(out, in/groups, kL)``, bias ``(out,)``;
    calls :func:`fastconv.nn.functional.conv1d`."""
    _nd = 1


class Conv2d(_ConvNd):
    """2-D convolution layer (torch.nn.Conv2d) over (N, C, H, W): weight ``(out, in/groups, kH, kW)``, bias
    ``(out,)``; calls :func:`fastconv.nn.functional.conv2d`."""
    _nd = 2


class Conv3d(_ConvNd):
    """3-D convolution layer (torch.nn.Conv3d) over (N, C, D, H, W): weight ``(out, in/groups, kD, kH, kW)``, bias
    ``(out,)``; calls :func:`fastconv.nn.functional.conv3d`."""
    _nd = 3


class _ConvTransposeNd(_WindowLayer):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros", *, algorithm="auto", dtype=np.float32):
        super().__init__()
        name, nd = type(self).__name__, self._nd
        if padding_mode != "zeros":
            raise ValueError("%s(): only padding_mode='zeros' is supported, got %r" % (name, padding_mode))
        self._window_args(in_channels, out_channels, kernel_size, stride, dilation, groups)
        self.padding = V.int_tuple(padding, nd, name, "padding", minimum=0)
        self.output_padding = V.int_tuple(output_padding, nd, name, "output_padding", minimum=0)
        self.algorithm = algorithm
        # PyTorch's layout (in, out/groups, *k); its fan_in is weight.shape[1] * prod(k)
        self._parameters_of((in_channels, out_channels // groups) + self.kernel_size, out_channels, bias, dtype,
                            out_channels // groups * int(np.prod(self.kernel_size)))

    def forward(self, input, output_size=None):
        """``output_size`` (spatial, or with the leading dimensions) picks the output padding that gives that
        size, as torch's ``forward(input, output_size)``; otherwise ``self.output_padding`` is used."""
        x, unbatched = batched(self, input, self._nd, (self.weight,))
        opad = self.output_padding
        if output_size is not None:
            name, nd = type(self).__name__, self._nd
            size = tuple(output_size)
            lead = len(size) - nd
            if lead not in (0, 1 if unbatched else 2):
                raise ValueError("%s: output_size must have %d or %d elements (got %d)"
                                 % (name, nd, nd + (1 if unbatched else 2), len(size)))
            opad = transpose_output_padding(x.shape[2:], size[lead:], self.kernel_size, self.stride,
                                            self.padding, self.dilation, fn=name)
        y = getattr(F, "conv_transpose%dd" % self._nd)(x, self.weight, self.bias, self.stride, self.padding, opad,
                                                       self.groups, self.dilation, algorithm=self.algorithm)
        return y[0] if unbatched else y

    def geometry(self, input_shape):
        """The forward convolution whose adjoint this layer computes (its ``input_shape`` is our output)."""
        return ConvGeometry.for_transpose(input_shape, self.weight.shape, self.stride, self.padding,
                                          self.output_padding, self.groups, self.dilation, fn=type(self).__name__)

    def describe(self, input_shape):
        g = self.geometry(input_shape)
        # Output o sees the inputs i with i s - p + k d = o: a window of ceil(eff / s) inputs, jump / s.
        window = (tuple(-(-e // s) for e, s in zip(g.effective_kernel, g.stride)), tuple(1.0 / s for s in g.stride))
        return dict(output_shape=g.input_shape, params=g.params(bias=False) + self._bias_size(),
                    multiplies=g.multiplies, window=window)


class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution layer (torch.nn.ConvTranspose1d): weight ``(in, out/groups, kL)``, bias
    ``(out,)``."""
    _nd = 1


class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution layer (torch.nn.ConvTranspose2d): weight ``(in, out/groups, kH, kW)``, bias
    ``(out,)``."""
    _nd = 2


class ConvTranspose3d(_ConvTransposeNd):
    """3-D transposed convolution layer (torch.nn.ConvTranspose3d): weight ``(in, out/groups, kD, kH, kW)``, bias
    ``(out,)``."""
    _nd = 3


class LocallyConnected2d(_WindowLayer):
    """Unshared convolution: a separate ``C_in x kH x kW`` filter bank for every output position.

    Needs the input's spatial size to allocate its weights: ``weight`` is ``(OH, OW, C_out, C_in, kH, kW)``,
    ``bias`` ``(C_out, OH, OW)``.  Parameters: ``OH OW C_out (C_in kH kW + 1)``; multiplications as the
    convolution with the same geometry.
    """

    def __init__(self, in_channels, out_channels, input_size, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, *, dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        self._window_args(in_channels, out_channels, kernel_size, stride, dilation)
        self.input_size = V.int_tuple(input_size, 2, name, "input_size", minimum=1)
        self.padding = V.padding_arg(padding, 2, name)
        out = self.geometry((1, in_channels) + self.input_size).output_size
        self._parameters_of(out + (out_channels, in_channels) + self.kernel_size, (out_channels,) + out, bias,
                            dtype, in_channels * int(np.prod(self.kernel_size)))

    def forward(self, input):
        x, unbatched = batched(self, input, 2, (self.weight,))
        y = F.locally_connected2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        return y[0] if unbatched else y

    def describe(self, input_shape):
        return self._describe(input_shape, int(np.prod(self.weight.shape[:2])), self._bias_size())


class TiledConv2d(_WindowLayer):
    """Tiled convolution: ``t_h x t_w`` kernels rotated through the output positions (shared bias).

    ``weight`` is ``(t_h, t_w, C_out, C_in, kH, kW)``; ``tile_size=1`` is an ordinary convolution.
    """

    def __init__(self, in_channels, out_channels, kernel_size, tile_size, stride=1, padding=0, dilation=1,
                 bias=True, *, algorithm="auto", dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        self._window_args(in_channels, out_channels, kernel_size, stride, dilation)
        self.tile_size = V.int_tuple(tile_size, 2, name, "tile_size", minimum=1)
        self.padding = V.padding_arg(padding, 2, name)
        self.algorithm = algorithm
        self._parameters_of(self.tile_size + (out_channels, in_channels) + self.kernel_size, out_channels, bias,
                            dtype, in_channels * int(np.prod(self.kernel_size)))

    def forward(self, input):
        x, unbatched = batched(self, input, 2, (self.weight,))
        y = F.tiled_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                           algorithm=self.algorithm)
        return y[0] if unbatched else y

    def describe(self, input_shape):
        return self._describe(input_shape, int(np.prod(self.tile_size)), self._bias_size())


class Linear(Module):
    """``y = x W^T + b`` with ``weight`` ``(out_features, in_features)``, as ``torch.nn.Linear``."""

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        self.in_features = V.positive_int(in_features, name, "in_features")
        self.out_features = V.positive_int(out_features, name, "out_features")
        self.weight = Parameter(np.empty((out_features, in_features), dtype))
        self.bias = Parameter(np.empty(out_features, dtype)) if V.flag(bias, name, "bias") else None
        self.reset_parameters()

    def reset_parameters(self):
        _init_weight_and_bias(self.weight, self.bias, self.in_features)

    def forward(self, input):
        x = as_tensor(input)
        check_dtype(self, x, self.weight)
        return F.linear(x, self.weight, self.bias)

    def geometry(self, input_shape):
        """A linear layer is a 1x1 convolution over the rows of the input: ConvGeometry (rows, in, 1)."""
        input_shape = tuple(input_shape)
        if not input_shape or input_shape[-1] != self.in_features:
            raise ValueError("Linear(): input shape %s does not end in in_features=%d"
                             % (input_shape, self.in_features))
        rows = int(np.prod(input_shape[:-1]))
        return ConvGeometry.make((rows, self.in_features, 1), (self.out_features, self.in_features, 1),
                                 fn="Linear")

    def describe(self, input_shape):
        g = self.geometry(input_shape)
        return dict(output_shape=tuple(input_shape[:-1]) + (self.out_features,),
                    params=g.params(self.bias is not None), multiplies=g.multiplies, window="all")

    def extra_repr(self):
        return "in_features=%d, out_features=%d, bias=%s" % (self.in_features, self.out_features,
                                                               self.bias is not None)


# --------------------------------------------------------------------------------------------------- pooling
def _unbatch(y):
    """Drop the batch dimension given to an unbatched sample (from every output of a pool with indices)."""
    return tuple(_unbatch(v) for v in y) if isinstance(y, tuple) else y[0]


class _PoolNd(Module):
    """Windowed pools: ``_fn`` names the functional op; the constructor arguments are stored in order by
    :meth:`_store` (kernel_size and stride normalised) and passed on by name."""
    _nd = 2
    _fn = ""

    def _store(self, **args):
        name = type(self).__name__
        self._args = tuple(args)
        for a, v in args.items():
            setattr(self, a, v)
        self.kernel_size = V.int_tuple(self.kernel_size, self._nd, name, "kernel_size", minimum=1)
        if self.stride is None or self.stride == ():
            self.stride = self.kernel_size
        self.stride = V.int_tuple(self.stride, self._nd, name, "stride", minimum=1)

    def forward(self, input):
        x, unbatched = batched(self, input, self._nd)
        y = getattr(F, self._fn)(x, **{a: getattr(self, a) for a in self._args})
        return _unbatch(y) if unbatched else y

    def geometry(self, input_shape):
        return PoolGeometry.make(input_shape, self.kernel_size, self.stride, getattr(self, "padding", 0),
                                 getattr(self, "dilation", 1), self.ceil_mode, fn=type(self).__name__)

    def describe(self, input_shape):
        g = self.geometry(input_shape)
        return dict(output_shape=g.output_shape, params=0, multiplies=0, window=_window(g))

    def extra_repr(self):
        return ", ".join("%s=%s" % (a, getattr(self, a)) for a in self._args)


class MaxPool1d(_PoolNd):
    """1-D max pooling (torch.nn.MaxPool1d); with return_indices=True returns (output, argmax).  Input layout:
    (N, C, L)."""
    _nd, _fn = 1, "max_pool1d"

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self._store(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                    return_indices=return_indices, ceil_mode=ceil_mode)


class MaxPool2d(_PoolNd):
    """2-D max pooling (torch.nn.MaxPool2d); with return_indices=True returns (output, argmax).  Input layout:
    (N, C, H, W)."""
    _nd, _fn = 2, "max_pool2d"

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self._store(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                    return_indices=return_indices, ceil_mode=ceil_mode)


class MaxPool3d(_PoolNd):
    """3-D max pooling (torch.nn.MaxPool3d); with return_indices=True returns (output, argmax).  Input layout:
    (N, C, D, H, W)."""
    _nd, _fn = 3, "max_pool3d"

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self._store(kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                    return_indices=return_indices, ceil_mode=ceil_mode)


class AvgPool1d(_PoolNd):
    """1-D average pooling (torch.nn.AvgPool1d).  Input layout:
    (N, C, L)."""
    _nd, _fn = 1, "avg_pool1d"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self._store(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                    count_include_pad=count_include_pad, divisor_override=divisor_override)


class AvgPool2d(_PoolNd):
    """2-D average pooling (torch.nn.AvgPool2d).  Input layout:
    (N, C, H, W)."""
    _nd, _fn = 2, "avg_pool2d"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self._store(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                    count_include_pad=count_include_pad, divisor_override=divisor_override)


class AvgPool3d(_PoolNd):
    """3-D average pooling (torch.nn.AvgPool3d).  Input layout:
    (N, C, D, H, W)."""
    _nd, _fn = 3, "avg_pool3d"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self._store(kernel_size=kernel_size, stride=stride, padding=padding, ceil_mode=ceil_mode,
                    count_include_pad=count_include_pad, divisor_override=divisor_override)


class LpPool1d(_PoolNd):
    """1-D power-average pooling ``(sum x^p)^(1/p)`` over each window of (N, C, L) (torch.nn.LPPool1d)."""
    _nd, _fn = 1, "lp_pool1d"

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode=False):
        super().__init__()
        self._store(norm_type=norm_type, kernel_size=kernel_size, stride=stride, ceil_mode=ceil_mode)


class LpPool2d(_PoolNd):
    """2-D power-average pooling ``(sum x^p)^(1/p)`` over each window of (N, C, H, W) (torch.nn.LPPool2d)."""
    _nd, _fn = 2, "lp_pool2d"

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode=False):
        super().__init__()
        self._store(norm_type=norm_type, kernel_size=kernel_size, stride=stride, ceil_mode=ceil_mode)


LPPool1d, LPPool2d = LpPool1d, LpPool2d          # PyTorch's spelling


class _AdaptivePool(Module):
    _nd = 2
    _kind = "avg"

    def __init__(self, output_size):
        super().__init__()
        if isinstance(output_size, (list, tuple)):
            output_size = tuple(None if s is None else V.positive_int(s, type(self).__name__, "output_size")
                                for s in output_size)
        else:
            output_size = V.positive_int(output_size, type(self).__name__, "output_size")
        self.output_size = output_size

    def forward(self, input):
        x, unbatched = batched(self, input, self._nd)
        y = getattr(F, "adaptive_%s_pool%dd" % (self._kind, self._nd))(x, self.output_size)
        return y[0] if unbatched else y

    def geometry(self, input_shape):
        """The :class:`~fastconv.PoolGeometry` of this layer on ``input_shape`` (adaptive windows)."""
        return PoolGeometry.adaptive(input_shape, self.output_size, fn=type(self).__name__)

    def describe(self, input_shape):
        g = self.geometry(input_shape)
        return dict(output_shape=g.output_shape, params=0, multiplies=0, window=(g.kernel_size, g.stride))

    def extra_repr(self):
        return "output_size=%s" % (self.output_size,)


class AdaptiveAvgPool1d(_AdaptivePool):
    """1-D adaptive average pooling of (N, C, L) to a fixed output size (torch.nn.AdaptiveAvgPool1d)."""
    _nd, _kind = 1, "avg"


class AdaptiveAvgPool2d(_AdaptivePool):
    """2-D adaptive average pooling of (N, C, H, W) to a fixed output size (torch.nn.AdaptiveAvgPool2d)."""
    _nd, _kind = 2, "avg"


class AdaptiveAvgPool3d(_AdaptivePool):
    """3-D adaptive average pooling of (N, C, D, H, W) to a fixed output size (torch.nn.AdaptiveAvgPool3d)."""
    _nd, _kind = 3, "avg"


class AdaptiveMaxPool1d(_AdaptivePool):
    """1-D adaptive max pooling of (N, C, L) to a fixed output size (torch.nn.AdaptiveMaxPool1d)."""
    _nd, _kind = 1, "max"


class AdaptiveMaxPool2d(_AdaptivePool):
    """2-D adaptive max pooling of (N, C, H, W) to a fixed output size (torch.nn.AdaptiveMaxPool2d)."""
    _nd, _kind = 2, "max"


class AdaptiveMaxPool3d(_AdaptivePool):
    """3-D adaptive max pooling of (N, C, D, H, W) to a fixed output size (torch.nn.AdaptiveMaxPool3d)."""
    _nd, _kind = 3, "max"


class _GlobalPool(Module):
    """Global pooling layers keep the spatial dimensions, of size 1, as ``AdaptiveAvgPool2d(1)`` does (the
    functional ``global_*_pool`` returns (N, C))."""
    _kind = "avg"

    def forward(self, input):
        x, unbatched = batched(self, input, 2)
        y = getattr(F, "global_%s_pool" % self._kind)(x).reshape(x.shape[:2] + (1, 1))
        return y[0] if unbatched else y

    def describe(self, input_shape):
        return dict(output_shape=tuple(input_shape[:2]) + (1, 1), params=0, multiplies=0, window="all")


class GlobalAvgPool2d(_GlobalPool):
    """Average over all spatial positions: (N, C, H, W) -> (N, C, 1, 1), as ``AdaptiveAvgPool2d(1)``; follow it
    with ``Flatten()`` for a Linear layer."""
    _kind = "avg"


class GlobalMaxPool2d(_GlobalPool):
    """Maximum over all spatial positions: (N, C, H, W) -> (N, C, 1, 1), as ``AdaptiveMaxPool2d(1)``."""
    _kind = "max"


class _MaxUnpool(Module):
    _nd = 2

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = V.int_tuple(kernel_size, self._nd, name, "kernel_size", minimum=1)
        self.stride = self.kernel_size if stride is None else V.int_tuple(stride, self._nd, name, "stride", 1)
        self.padding = V.int_tuple(padding, self._nd, name, "padding", minimum=0)

    def geometry(self, input_shape, output_size=None):
        """The pool whose input this layer restores from ``input_shape`` (:meth:`PoolGeometry.for_unpool`)."""
        return PoolGeometry.for_unpool(input_shape, self.kernel_size, self.stride, self.padding, output_size,
                                       fn=type(self).__name__)

    def forward(self, input, indices, output_size=None):
        x, unbatched = batched(self, input, self._nd)
        if unbatched:
            indices = np.asarray(indices.data if isinstance(indices, Tensor) else indices)[None]
            if output_size is not None and len(output_size) == self._nd + 1:
                output_size = (1,) + tuple(output_size)
        y = getattr(F, "max_unpool%dd" % self._nd)(x, indices, self.kernel_size, self.stride, self.padding,
                                                   output_size)
        return y[0] if unbatched else y


class MaxUnpool1d(_MaxUnpool):
    """Partial inverse of MaxPool1d over (N, C, L): scatter values to the recorded argmax positions."""
    _nd = 1


class MaxUnpool2d(_MaxUnpool):
    """Partial inverse of MaxPool2d over (N, C, H, W): scatter values to the recorded argmax positions."""
    _nd = 2


class MaxUnpool3d(_MaxUnpool):
    """Partial inverse of MaxPool3d over (N, C, D, H, W): scatter values to the recorded argmax positions."""
    _nd = 3


class KMaxPool(Module):
    """k-max pooling along ``dim``: the ``k`` largest values (in input order unless ``sorted``)."""

    def __init__(self, k, dim=-1, sorted=True):
        super().__init__()
        self.k = V.positive_int(k, "KMaxPool", "k")
        self.dim = dim
        self.sorted = sorted

    def forward(self, x):
        return F.kmax_pool(x, self.k, self.dim, self.sorted)[0]


# --------------------------------------------------------------------------------------------------- elementwise
class _Elementwise(Module):
    def describe(self, input_shape):
        return describe_elementwise(input_shape)


class Identity(_Elementwise):
    """Returns its input; takes (and ignores) any constructor arguments, as torch.nn.Identity."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Softmax(_Elementwise):
    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)


class LogSoftmax(Softmax):
    def forward(self, x):
        return F.log_softmax(x, self.dim)


class Dropout(_Elementwise):
    """Zero elements with probability ``p`` while training (see :func:`fastconv.nn.functional.dropout`)."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        p = V.real_scalar(p, "Dropout", "p")
        if not 0.0 <= p <= 1.0:
            raise ValueError("Dropout(): argument 'p' must be between 0 and 1, got %r" % p)
        self.p, self.inplace = p, inplace

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return "p=%g" % self.p


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)

    def describe(self, input_shape):
        shape = tuple(input_shape)
        s, e = self.start_dim % len(shape), self.end_dim % len(shape)
        out = shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:]
        return dict(output_shape=out, params=0, multiplies=0, window=None)


# --------------------------------------------------------------------------------------------------- losses
class CrossEntropyLoss(Module):
    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__()
        self.weight, self.ignore_index = weight, ignore_index
        self.reduction, self.label_smoothing = reduction, label_smoothing

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                               self.label_smoothing)


class NLLLoss(Module):
    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__()
        self.weight, self.ignore_index, self.reduction = weight, ignore_index, reduction

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class MSELoss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)
