"""Layers, losses, optimisers and the model summary on top of fastconv's autograd tape (``torch.nn``-like).

A layer owns its parameters and calls the functional op in :mod:`fastconv.nn.functional`; state dicts use
PyTorch's key names and array layouts, so ``model.load_state_dict(torch_model.state_dict())`` works for the same
architecture.
"""
from . import functional, init, optim
from .init import manual_seed
from .layers import *  # noqa: F401,F403
from .layers import __all__ as _layers
from .module import Module, Parameter, Sequential
from .optim import SGD, Adam
from .summary import ModelSummary, summary

__all__ = ["functional", "init", "optim", "manual_seed", "Module", "Parameter", "Sequential", "SGD", "Adam",
           "summary", "ModelSummary"] + list(_layers)
