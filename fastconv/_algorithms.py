"""The registry of convolution algorithms and the ``algorithm="auto"`` choice.

An algorithm is one :class:`Algorithm` entry.  Adding an algorithm = one kernel module + one :func:`register`
call; the public functions in :mod:`fastconv.conv` and :mod:`fastconv.grad` dispatch through :func:`resolve`.

Kernel contract (what every entry's callables may rely on; :mod:`fastconv.conv` guarantees it):

* arrays are C-contiguous, all of one dtype, float32 or float64, never modified except ``out``;
* ``geom`` is a :class:`~fastconv._geometry.ConvGeometry` in the caller's number of spatial dims with **zero**
  padding ``geom.padding`` (other padding modes were applied before) and the kernel already flipped for ``flip``;
* ``forward(x, w, bias, geom, out, nthreads)`` writes every element of ``out`` (shape ``geom.output_shape``),
  ``bias`` is ``None`` or a length-K vector;
* ``grad_input(gy, w, geom, out, nthreads)`` writes ``out`` (shape ``geom.input_shape``) = the adjoint of forward
  applied to ``gy`` (also the transposed convolution);
* ``grad_weight(x, gy, geom, out, nthreads)`` writes ``out`` (shape ``geom.weight_shape``);
* ``cost(geom, dtype, op)`` estimates seconds for ``op`` in ``("forward", "grad_input", "grad_weight")`` on this
  machine class; :func:`choose` takes the cheapest supporting algorithm.
"""
from dataclasses import dataclass, field
from typing import Callable, Optional

__all__ = ["Algorithm", "register", "get", "names", "resolve", "choose", "OPS"]

OPS = ("forward", "grad_input", "grad_weight")


@dataclass(frozen=True)
class Algorithm:
    name: str
    forward: Callable
    grad_input: Optional[Callable]
    grad_weight: Optional[Callable]
    cost: Callable
    description: str = ""
    supports: Callable = field(default=lambda geom, dtype, op: True)

    def implements(self, op):
        return getattr(self, op) is not None


_registry = {}
_choice_cache = {}   # (geometry key, dtype, op, threads) -> name; cleared when the registry changes


def register(alg):
    """Add (or replace) an algorithm; returns it so the call can be used as an expression."""
    if not isinstance(alg, Algorithm):
        raise TypeError("register() expects an Algorithm, got %r" % type(alg).__name__)
    _registry[alg.name] = alg
    _choice_cache.clear()
    return alg


def get(name):
    return _registry[name]


def names():
    """Registered algorithm names, in registration order."""
    return tuple(_registry)


def choose(geom, dtype, op="forward"):
    """The algorithm with the lowest estimated cost for ``op`` on ``geom`` (the ``"auto"`` choice)."""
    from . import _autotune
    tuned = _autotune.lookup(geom, dtype, op)
    if tuned is not None and tuned in _registry:
        return _registry[tuned]
    candidates = [a for a in _registry.values() if a.implements(op) and a.supports(geom, dtype, op)]
    if not candidates:  # pragma: no cover - direct supports everything
        raise RuntimeError("no registered algorithm implements %s" % op)
    if tuned is None and _autotune.enabled() and len(candidates) > 1:
        return _registry[_autotune.tune(geom, dtype, op, candidates)]
    from . import _threads
    key = (geom.key(), str(dtype), op, _threads.get_num_threads())
    name = _choice_cache.get(key)
    if name is None:
        name = min(candidates, key=lambda a: a.cost(geom, dtype, op)).name
        if len(_choice_cache) > 4096:
            _choice_cache.clear()
        _choice_cache[key] = name
    return _registry[name]


def resolve(name, geom, dtype, op, fn):
    """Validate an ``algorithm=`` argument and return the :class:`Algorithm` to run."""
    if not isinstance(name, str):
        raise TypeError("%s(): argument 'algorithm' must be a string, one of %s; got %r"
                        % (fn, ["auto"] + sorted(_registry), name))
    if name == "auto":
        return choose(geom, dtype, op)
    alg = _registry.get(name)
    if alg is None:
        raise ValueError("%s(): argument 'algorithm' must be one of %s, got %r"
                         % (fn, ["auto"] + sorted(_registry), name))
    if not alg.implements(op) or not alg.supports(geom, dtype, op):
        raise ValueError("%s(): algorithm %r does not implement %s for this geometry" % (fn, name, op))
    return alg
