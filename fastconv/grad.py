"""Gradients: of convolutions, named and called like ``torch.nn.grad``, and of the pools.

``conv2d_input(input_shape, weight, grad_output, ...)`` returns dL/d(input) and ``conv2d_weight(input,
weight_shape, grad_output, ...)`` returns dL/d(weight) for ``y = conv2d(input, weight, ...)`` with the same
stride, padding (every form), dilation, groups, ``padding_mode`` and ``flip``; ``conv_bias(grad_output)`` is
dL/d(bias).  Each registered algorithm implements both (``algorithm=`` as in the forward functions).  They are
thin wrappers: the call is prepared once (:func:`fastconv._prepare.prepare_conv_shape`) and the registered
algorithm's ``grad_input`` / ``grad_weight`` runs on it, exactly as in the autograd tape's backward pass.

The pooling gradients (``max_pool_backward``, ``avg_pool2d_backward``, ...) take the forward call's arguments
and return dL/d(input) of the matching function in :mod:`fastconv.pooling`.
"""
from ._doc import CONV, filled
from ._prepare import bias_grad, pad_adjoint, prepare_conv_shape
from . import _validate as V
from .pooling._adaptive import (adaptive_avg_pool1d_backward, adaptive_avg_pool2d_backward,
                                adaptive_avg_pool3d_backward, global_avg_pool_backward)
from .pooling._index import kmax_pool_backward, max_pool_backward, max_unpool_backward
from .pooling._regular import (avg_pool1d_backward, avg_pool2d_backward, avg_pool3d_backward, lp_pool1d_backward,
                               lp_pool2d_backward)

__all__ = ["conv1d_input", "conv2d_input", "conv3d_input", "conv1d_weight", "conv2d_weight", "conv3d_weight",
           "conv_bias", "pad_adjoint",
           "max_pool_backward", "avg_pool1d_backward", "avg_pool2d_backward", "avg_pool3d_backward",
           "lp_pool1d_backward", "lp_pool2d_backward", "adaptive_avg_pool1d_backward", "adaptive_avg_pool2d_backward",
           "adaptive_avg_pool3d_backward", "global_avg_pool_backward", "kmax_pool_backward", "max_unpool_backward"]


def _conv_input(fn, nd, input_shape, weight, grad_output, stride, padding, dilation, groups, padding_mode, flip,
                algorithm):
    p, gy = prepare_conv_shape(fn, nd, weight, "weight", input_shape, "input_shape", stride, padding, dilation,
                               groups, padding_mode, flip, algorithm, grad_output)
    return p.adjoint(gy)


def _conv_weight(fn, nd, input, weight_shape, grad_output, stride, padding, dilation, groups, padding_mode, flip,
                 algorithm):
    p, gy = prepare_conv_shape(fn, nd, input, "input", weight_shape, "weight_shape", stride, padding, dilation,
                               groups, padding_mode, flip, algorithm, grad_output)
    return p.weight_grad(p.x, gy)


@filled(CONV)
def conv1d_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                 padding_mode="zeros", flip=False, algorithm="auto"):
    """Gradient of conv1d with respect to its input (``torch.nn.grad.conv1d_input``).

    Parameters
    ----------
    input_shape : tuple of 3 ints
    weight : array_like, shape (C_out, C_in/groups, kL)
    %(grad_args)s
    """
    return _conv_input("conv1d_input", 1, input_shape, weight, grad_output, stride, padding, dilation, groups,
                       padding_mode, flip, algorithm)


@filled(CONV)
def conv2d_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                 padding_mode="zeros", flip=False, algorithm="auto"):
    """Gradient of conv2d with respect to its input (``torch.nn.grad.conv2d_input``).

    Parameters
    ----------
    input_shape : tuple of 4 ints
    weight : array_like, shape (C_out, C_in/groups, kH, kW)
    %(grad_args)s
    """
    return _conv_input("conv2d_input", 2, input_shape, weight, grad_output, stride, padding, dilation, groups,
                       padding_mode, flip, algorithm)


@filled(CONV)
def conv3d_input(input_shape, weight, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                 padding_mode="zeros", flip=False, algorithm="auto"):
    """Gradient of conv3d with respect to its input (``torch.nn.grad.conv3d_input``).

    Parameters
    ----------
    input_shape : tuple of 5 ints
    weight : array_like, shape (C_out, C_in/groups, kD, kH, kW)
    %(grad_args)s
    """
    return _conv_input("conv3d_input", 3, input_shape, weight, grad_output, stride, padding, dilation, groups,
                       padding_mode, flip, algorithm)


@filled(CONV)
def conv1d_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  padding_mode="zeros", flip=False, algorithm="auto"):
    """Gradient of conv1d with respect to its weight (``torch.nn.grad.conv1d_weight``).

    Parameters
    ----------
    input : array_like, shape (N, C_in, L)
    weight_shape : tuple of 3 ints
    %(grad_args)s
    """
    return _conv_weight("conv1d_weight", 1, input, weight_shape, grad_output, stride, padding, dilation, groups,
                        padding_mode, flip, algorithm)


@filled(CONV)
def conv2d_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  padding_mode="zeros", flip=False, algorithm="auto"):
    """Gradient of conv2d with respect to its weight (``torch.nn.grad.conv2d_weight``).

    Parameters
    ----------
    input : array_like, shape (N, C_in, H, W)
    weight_shape : tuple of 4 ints
    %(grad_args)s
    """
    return _conv_weight("conv2d_weight", 2, input, weight_shape, grad_output, stride, padding, dilation, groups,
                        padding_mode, flip, algorithm)


@filled(CONV)
def conv3d_weight(input, weight_shape, grad_output, stride=1, padding=0, dilation=1, groups=1, *,
                  padding_mode="zeros", flip=False, algorithm="auto"):
    """Gradient of conv3d with respect to its weight (``torch.nn.grad.conv3d_weight``).

    Parameters
    ----------
    input : array_like, shape (N, C_in, D, H, W)
    weight_shape : tuple of 5 ints
    %(grad_args)s
    """
    return _conv_weight("conv3d_weight", 3, input, weight_shape, grad_output, stride, padding, dilation, groups,
                        padding_mode, flip, algorithm)


def conv_bias(grad_output):
    """Gradient w.r.t. the bias: ``grad_output`` summed over every axis but the channel axis 1."""
    gy = V.as_array(grad_output, "conv_bias", "grad_output")
    if gy.ndim < 2:
        raise ValueError("conv_bias(): argument 'grad_output' must have shape (N, C, ...), got %s" % (gy.shape,))
    return bias_grad(gy)
