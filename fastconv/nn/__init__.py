"""Layers, losses, optimisers and the model summary on top of fastconv's autograd tape (``torch.nn``-like).

A layer owns its parameters and calls the functional op in :mod:`fastconv.nn.functional`; state dicts use
PyTorch's key names and array layouts, so ``model.load_state_dict(torch_model.state_dict())`` works for the same
architecture.
"""
from . import functional, init, optim, utils
from .activation import (ELU, GELU, Hardswish, Hardtanh, LeakyReLU, Mish, PReLU, ReLU, ReLU6, SiLU, Sigmoid,
                         Softplus, Tanh)
from .init import manual_seed
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layers
from .normalization import (BatchNorm1d, BatchNorm2d, BatchNorm3d, GroupNorm, InstanceNorm1d, InstanceNorm2d,
                            InstanceNorm3d, LayerNorm)
from .spatial import (CircularPad2d, ConstantPad2d, Dropout1d, Dropout2d, Dropout3d, PixelShuffle, PixelUnshuffle,
                      ReflectionPad2d, ReplicationPad2d, Upsample, UpsamplingBilinear2d, UpsamplingNearest2d,
                      ZeroPad2d)
from .memory import cache_info, empty_cache, set_cache_limit
from .module import Module, Parameter, Sequential
from .optim import SGD, Adam, AdamW, RMSprop
from .summary import ModelSummary, summary

__all__ = ["functional", "init", "optim", "utils", "manual_seed", "Module", "Parameter", "Sequential", "SGD", "Adam",
           "AdamW", "RMSprop", "empty_cache", "set_cache_limit", "cache_info",
           "summary", "ModelSummary",
           "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU", "GELU", "SiLU", "Hardswish", "Hardtanh", "ReLU6", "PReLU",
           "Softplus", "Mish",
           "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
           "GroupNorm", "LayerNorm",
           "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d", "PixelShuffle", "PixelUnshuffle",
           "Dropout1d", "Dropout2d", "Dropout3d", "ZeroPad2d", "ConstantPad2d", "ReflectionPad2d",
           "ReplicationPad2d", "CircularPad2d"] + list(_layers)
