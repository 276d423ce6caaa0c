"""Convolution: ``conv1d/2d/3d`` and ``conv_transpose1d/2d/3d`` with torch.nn.functional's names and rules.

Data path of every call::

    public function -> prepare_conv (_validate: arrays, dtype; ConvGeometry with padding_mode; explicit padding,
                       flip) -> PreparedConv -> choose algorithm (registry) -> kernel(out=...) -> result
    the same call again (same shapes, dtype, arguments) -> the algorithm's plan (``Algorithm.plan``) -> result
"""
from . import _validate as V
from ._doc import CONV, filled
from ._prepare import conv_forward, prepare_conv_transpose

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]


def _conv_transpose(fn, nd, input, weight, bias, stride, padding, output_padding, groups, dilation, algorithm,
                    out):
    p = prepare_conv_transpose(fn, nd, input, weight, bias, stride, padding, output_padding, groups, dilation,
                               algorithm)
    if out is not None:
        p.algorithm_for("grad_input")   # a bad algorithm= is reported before a bad out=
        V.check_out(out, p.geom.input_shape, p.dtype, (input, weight, bias, p.x, p.w, p.b), fn)
    return p.adjoint(p.x, out)


@filled(CONV)
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", flip=False, out=None):
    """1-D convolution (cross-correlation, as in deep learning) of a batch of signals (N, C_in, L) with a weight
    (C_out, C_in/groups, kL).

    %(conv_doc)s
    """
    return conv_forward("conv1d", 1, input, weight, bias, stride, padding, dilation, groups, padding_mode, flip,
                        algorithm, out)


@filled(CONV)
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", flip=False, out=None):
    """2-D convolution (cross-correlation, as in deep learning) of a batch of images (N, C_in, H, W) with a weight
    (C_out, C_in/groups, kH, kW).

    %(conv_doc)s
    """
    return conv_forward("conv2d", 2, input, weight, bias, stride, padding, dilation, groups, padding_mode, flip,
                        algorithm, out)


@filled(CONV)
def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros",
           algorithm="auto", flip=False, out=None):
    """3-D convolution (cross-correlation, as in deep learning) of a batch of volumes (N, C_in, D, H, W) with a weight
    (C_out, C_in/groups, kD, kH, kW).

    %(conv_doc)s
    """
    return conv_forward("conv3d", 3, input, weight, bias, stride, padding, dilation, groups, padding_mode, flip,
                        algorithm, out)


@filled(CONV)
def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", out=None):
    """1-D transposed convolution ("deconvolution") of (N, C_in, L) with a weight (C_in, C_out/groups, kL): the adjoint
    of conv1d, as in PyTorch.

    %(convt_doc)s
    """
    return _conv_transpose("conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, algorithm, out)


@filled(CONV)
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", out=None):
    """2-D transposed convolution ("deconvolution") of (N, C_in, H, W) with a weight (C_in, C_out/groups, kH, kW):
    the adjoint of conv2d, as in PyTorch.

    %(convt_doc)s
    """
    return _conv_transpose("conv_transpose2d", 2, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, algorithm, out)


@filled(CONV)
def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                     algorithm="auto", out=None):
    """3-D transposed convolution ("deconvolution") of (N, C_in, D, H, W) with a weight
    (C_in, C_out/groups, kD, kH, kW): the adjoint of conv3d, as in PyTorch.

    %(convt_doc)s
    """
    return _conv_transpose("conv_transpose3d", 3, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, algorithm, out)
