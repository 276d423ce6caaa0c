"""``Module``, ``Parameter`` and ``Sequential``: parameter ownership, PyTorch-compatible state dicts, modes."""
from collections import OrderedDict, namedtuple

import numpy as np

from .._kernels import _memory
from ..autograd import Tensor, is_grad_enabled

__all__ = ["Parameter", "Module", "Sequential", "IncompatibleKeys"]

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A leaf Tensor that a :class:`Module` registers as trainable (``requires_grad=True`` by default)."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def to_numpy(value):
    """An ndarray from a numpy array, a fastconv Tensor or a torch tensor (anything with ``.detach().numpy()``)."""
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


class _HookHandle:
    def __init__(self, hooks, key):
        self._hooks, self._key = hooks, key

    def remove(self):
        self._hooks.pop(self._key, None)


class Module:
    """Base class of layers and models.

    Assigning a :class:`Parameter` or a ``Module`` to an attribute registers it; ``named_parameters()`` and
    ``state_dict()`` walk registered children in assignment order with dotted names (``"features.0.weight"``),
    exactly as PyTorch does, so a ``torch.nn.Module.state_dict()`` of the same architecture loads directly.
    Subclasses implement ``forward``; calling the module runs it and then any forward hooks.
    """

    def __init__(self):
        d = self.__dict__
        d["_parameters"] = OrderedDict()
        d["_buffers"] = OrderedDict()
        d["_modules"] = OrderedDict()
        d["_forward_hooks"] = OrderedDict()
        d["training"] = True

    # ------------------------------------------------------------------ attribute registration
    def _registry(self, name):
        if "_parameters" not in self.__dict__:
            raise AttributeError("cannot assign %r before Module.__init__() was called" % name)
        return self.__dict__

    def __setattr__(self, name, value):
        if isinstance(value, (Parameter, Module)):
            d = self._registry(name)
            target = "_parameters" if isinstance(value, Parameter) else "_modules"
            for key in ("_parameters", "_buffers", "_modules"):
                if key != target:
                    d[key].pop(name, None)
            self.__dict__.pop(name, None)
            d[target][name] = value        # a replaced entry keeps its place (Sequential order, state dicts)
            return
        d = self.__dict__
        for key in ("_parameters", "_modules"):
            if key in d and name in d[key]:
                if value is not None:
                    raise TypeError("cannot assign %s to %r: a %s or None is required"
                                    % (type(value).__name__, name,
                                       "Parameter" if key == "_parameters" else "Module"))
                d[key][name] = None
                return
        if "_buffers" in d and name in d["_buffers"]:
            d["_buffers"][name] = None if value is None else np.asarray(value)
            return
        object.__setattr__(self, name, value)

    def __getattr__(self, name):
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if key in d and name in d[key]:
                return d[key][name]
        raise AttributeError("'%s' object has no attribute '%s'" % (type(self).__name__, name))

    def __delattr__(self, name):
        for key in ("_parameters", "_buffers", "_modules"):
            if name in self.__dict__.get(key, ()):
                del self.__dict__[key][name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        if param is not None and not isinstance(param, Parameter):
            raise TypeError("register_parameter(): argument 'param' must be a Parameter or None, got %s"
                            % type(param).__name__)
        self._registry(name)["_parameters"][name] = param

    def register_buffer(self, name, array):
        """A non-trainable array saved in the state dict (e.g. running statistics)."""
        self._registry(name)["_buffers"][name] = None if array is None else np.asarray(array)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError("add_module(): argument 'module' must be a Module or None, got %s"
                            % type(module).__name__)
        self._registry(name)["_modules"][name] = module

    # ------------------------------------------------------------------ walking the tree
    def named_children(self):
        return ((n, m) for n, m in self._modules.items() if m is not None)

    def children(self):
        return (m for _, m in self.named_children())

    def named_modules(self, prefix="", _seen=None):
        """``(dotted name, module)`` for this module and every descendant, each once."""
        seen = set() if _seen is None else _seen
        if id(self) in seen:
            return
        seen.add(id(self))
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(prefix + ("." if prefix else "") + name, seen)

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix="", recurse=True):
        """``(dotted name, Parameter)`` pairs; a parameter shared by several layers is listed once."""
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mprefix, mod in mods:
            for name, p in mod._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield mprefix + ("." if mprefix else "") + name, p

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def _state_items(self, prefix=""):
        """``(key, owner, attribute, is_parameter)`` for every state-dict entry, in PyTorch's order."""
        for name, p in self._parameters.items():
            if p is not None:
                yield prefix + name, self, name, True
        for name, b in self._buffers.items():
            if b is not None:
                yield prefix + name, self, name, False
        for name, child in self.named_children():
            yield from child._state_items(prefix + name + ".")

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """An ordered dict of copies of every parameter and buffer, keyed and laid out like PyTorch's."""
        return OrderedDict((key, np.array(getattr(owner, attr).data if is_param else getattr(owner, attr)))
                           for key, owner, attr, is_param in self._state_items())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (NumPy, fastconv Tensors or torch tensors) into the parameters and buffers.

        Shapes must match exactly; values are cast to each parameter's dtype.  With ``strict=True`` missing or
        unexpected keys raise ``ValueError``; otherwise they are returned as ``(missing_keys, unexpected_keys)``.
        """
        items = {key: (owner, attr, is_param) for key, owner, attr, is_param in self._state_items()}
        given = OrderedDict((k, to_numpy(v)) for k, v in state_dict.items())
        missing = [k for k in items if k not in given]
        unexpected = [k for k in given if k not in items]
        errors = []
        if strict and (missing or unexpected):
            errors.append("missing keys %s, unexpected keys %s" % (missing, unexpected))
        for key, (owner, attr, is_param) in items.items():
            if key not in given:
                continue
            current = getattr(owner, attr)
            shape = current.shape
            if given[key].shape != shape:
                errors.append("%r has shape %s in the module but %s in the state dict"
                              % (key, shape, given[key].shape))
        if errors:
            raise ValueError("load_state_dict(): argument 'state_dict' does not fit %s: %s"
                             % (type(self).__name__, "; ".join(errors)))
        for key, (owner, attr, is_param) in items.items():
            if key in given:
                current = getattr(owner, attr)
                dtype = current.dtype
                value = np.array(given[key], dtype=dtype)
                if is_param:
                    current.data = value
                    current.grad = None
                else:
                    owner._buffers[attr] = value
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ modes and helpers
    def train(self, mode=True):
        """Set training mode (dropout active) on this module and every descendant."""
        for m in self.modules():
            m.__dict__["training"] = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def apply(self, fn):
        """Call ``fn(module)`` on every descendant and then on this module (e.g. custom initialisation)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def to(self, dtype):
        """Convert every parameter and buffer to ``dtype`` (gradients are dropped)."""
        dtype = np.dtype(dtype)
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None:
                    p.data = p.data.astype(dtype)
                    p.grad = None
            for name, b in m._buffers.items():
                if b is not None and b.dtype.kind == "f":
                    m._buffers[name] = b.astype(dtype)
        return self

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    def register_forward_hook(self, hook):
        """``hook(module, inputs, output)`` runs after every forward; returns a handle with ``remove()``."""
        key = object()
        self._forward_hooks[key] = hook
        return _HookHandle(self._forward_hooks, key)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError("%s must implement forward()" % type(self).__name__)

    def __call__(self, *args, **kwargs):
        if self.training and is_grad_enabled():
            with _memory.caching():      # a training step: reuse the last step's blocks (fastconv.nn.memory)
                out = self.forward(*args, **kwargs)
        else:
            out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            hook(self, args, out)
        return out

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = []
        for name, child in self._modules.items():
            sub = repr(child).replace("\n", "\n  ")
            lines.append("(%s): %s" % (name, sub))
        head = type(self).__name__ + "(" + self.extra_repr()
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied in order; children are named ``"0"``, ``"1"``, ... (or by an OrderedDict's keys)."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self.children():
            x = m(x)
        return x

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        mods = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(mods[index]))
        return mods[index][1]
