"""The registry of convolution algorithms and the ``algorithm="auto"`` choice.

Adding an algorithm
    One kernel file (``fastconv/_kernels/_<name>.pyx``, built by setup.py like every other) and one registry
    entry: a Python module ``fastconv/_algos/<name>.py`` that ends with ``register(Algorithm(...))``, listed on
    one line of ``fastconv/_algos/__init__.py``.  Nothing else changes: ``conv*d``, ``conv_transpose*d``, the
    gradients in ``fastconv.grad``, the autograd tape, ``algorithm="auto"``, the autotuner, ``fastconv bench``
    and the tests that loop over ``fastconv.algorithms()`` all reach it through this registry.

The contract of an :class:`Algorithm` entry
    Every callable receives what a :class:`~fastconv._prepare.PreparedConv` guarantees:

    * arrays are C-contiguous, all of one dtype (float32 or float64), never modified except ``out``; ``out`` is
      preallocated with the exact shape and must be written completely (its previous content is garbage);
    * ``geom`` is a :class:`~fastconv._geometry.ConvGeometry` in the caller's number of spatial dims (1-3) with
      **zero** padding ``geom.padding`` (other padding modes were applied explicitly before) and the kernel
      already flipped for ``flip=True``; ``geom.as_3d()`` and ``geom.kernel_struct`` (the kernels' ``Geometry``
      struct, see ``fastconv/_kernels/common.pxd``) are cached on it;
    * ``nthreads`` (>= 1) is the thread budget of the call; results must not depend on it (bitwise: every
      output element is computed by one thread in a fixed order) -- ``tests/test_determinism.py`` checks this.

    ``forward(x, w, bias, geom, out, nthreads)``
        ``out`` (shape ``geom.output_shape``) = the cross-correlation of ``x`` (``geom.input_shape``) with ``w``
        (``geom.weight_shape``) plus ``bias`` (``None`` or a length-K vector).
    ``grad_input(gy, w, geom, out, nthreads)``
        ``out`` (``geom.input_shape``) = the adjoint of forward applied to ``gy`` (``geom.output_shape``); this
        is also the transposed convolution.
    ``grad_weight(x, gy, geom, out, nthreads)``
        ``out`` (``geom.weight_shape``) = the gradient of ``sum(forward(x, w) * gy)`` with respect to ``w``.
        An entry with ``fused_bias=True`` also takes ``grad_bias=`` (None or a length-K array) and writes the
        bias gradient (``gy`` summed over every axis but 1) there, from the same pass over ``gy``.
    ``cost(geom, dtype, op)``
        Estimated seconds of ``op`` in :data:`OPS` with the current ``fastconv.get_num_threads()``, from
        constants measured on the development machine (each module documents how): the machine calibration
        (:mod:`fastconv._calibrate`) fits ``scale * cost + overhead`` to this machine, and :func:`choose` takes the
        cheapest calibrated estimate.  Called once per (geometry, dtype, op, threads) and cached.
    ``cost_kind(geom, dtype, op)``
        Optional: a name for the kernel that would run ``op`` (e.g. ``direct``'s channel- or column-vectorised
        block), so the calibration fits each kernel of an entry separately.  Default: ``""`` (one fit per op).
    ``supports(geom, dtype, op)``
        False where the entry cannot run ``op`` on ``geom`` (``auto`` skips it; naming it raises ValueError).
        Default: always True.  An op whose callable is ``None`` is not implemented at all.
    ``error(geom, dtype, op)``
        Only for *reduced-accuracy* entries (fast algorithms that round more than a direct sum, such as
        ``winograd``): a bound of ``max|y - y_exact| / max|y_exact|`` on unit-scale data.  :func:`choose` takes
        such an entry only while reduced accuracy is allowed (:func:`set_reduced_accuracy`, the
        :func:`reduced_accuracy` context manager) and where the bound is at most :data:`TOLERANCE` of the dtype.
        Default: ``None`` (exact-order rounding).
    ``nonfinite``
        How the entry treats non-finite values, against the contract below: ``"exact"`` (the default) if it meets
        it, ``"spreads"`` if one inf or NaN (or an overflowing intermediate) can make other outputs of the same
        tile or transform non-finite (FFT, Winograd: a transform mixes every input of a tile into every output).
        A spreading entry must still make every output the contract calls non-finite non-finite.
        ``tests/test_nonfinite.py`` checks every registered entry against what it declares.
    ``spreading_ops``
        The ops a ``"spreads"`` entry spreads in (default: all of :data:`OPS`); the others meet the contract
        exactly, and ``auto`` checks the result only for these (:meth:`Algorithm.spreads`).
    ``reports_finite``
        The ops whose callables return True when every element of ``out`` is finite and False otherwise (a
        kernel can check its outputs while it writes them); for these ``auto`` takes that answer instead of a
        pass of its own over ``out``.  Default: ``()``.

    ``plan(op, geom, dtype, nthreads)``
        Optional: a callable ``run(x, w, bias, out)`` that computes ``op`` (only ``"forward"`` is asked for) on
        arrays of ``geom``'s shapes with everything that depends only on the geometry, dtype and thread budget
        worked out once, or ``None``.  A call repeated with the same shapes and arguments then goes straight to
        ``run`` (small calls are dominated by Python-side planning).  Default: ``None`` (no plan).

    Return values are ignored (an entry may return diagnostics, as ``toeplitz`` does), except for the ops in
    ``reports_finite``.  Errors the user can cause
    are caught before (``fastconv._validate``, ``ConvGeometry``); an entry may still raise ``MemoryError``.

The non-finite contract (PyTorch's, on its reference CPU path)
    An output element is the IEEE sum of exactly these products, so it is NaN, +inf or -inf exactly when one of
    them is (``0 * inf`` and ``inf - inf`` are NaN; the order of the finite terms is free):

    * forward: ``x_pad[n, c, o*s + t*d - p] * w[k, c, t]`` for every tap ``t``, zero padding included (an inf
      weight over the padding gives NaN at the border);
    * input gradient / transposed convolution: ``gy[n, k, o] * w[k, c, t]`` for the pairs with
      ``o*s + t*d - p`` = the input position -- padding and stride holes are not input elements and are never
      multiplied (an inf weight gives inf, not NaN, next to a hole);
    * weight gradient: ``x_pad[n, c, o*s + t*d - p] * gy[n, k, o]``, zero padding included.

    The same holds for a transposed convolution's gradients (its input gradient is the forward convolution of
    the output gradient, its weight gradient the weight gradient with input and output swapped).  When ``auto``
    runs a ``"spreads"`` entry and its result holds an inf or NaN (an inf or NaN operand, or products that
    overflow), it runs the op again with the best exact entry (``PreparedConv._run``), so ``auto``'s result is
    always the contract's; an explicit ``algorithm=`` runs the named entry.  :func:`tame` (operands free of inf
    and NaN whose products cannot overflow) guards the filters' FFT path the same way, before it runs.
"""
import contextlib
import contextvars
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from . import _autotune, _threads
from . import _validate as V

__all__ = ["Algorithm", "register", "get", "names", "resolve", "choose", "tame", "OPS", "NONFINITE", "TOLERANCE",
           "set_reduced_accuracy", "get_reduced_accuracy", "reduced_accuracy", "accurate_enough"]

OPS = ("forward", "grad_input", "grad_weight")
NONFINITE = ("exact", "spreads")

# The largest error bound (relative to max |y|) with which ``auto`` takes a reduced-accuracy algorithm.  float32:
# a few float32 roundings of the output (its own spacing is 6e-8), as cuDNN and oneDNN accept for Winograd;
# float64: close to double precision, so float64 results stay good to ~12 digits.
TOLERANCE = {np.dtype(np.float32): 5e-5, np.dtype(np.float64): 1e-12}


@dataclass(frozen=True)
class Algorithm:
    """One registry entry: the name users pass as ``algorithm=`` and the callables of the contract above."""

    name: str
    forward: Callable
    grad_input: Optional[Callable]
    grad_weight: Optional[Callable]
    cost: Callable
    description: str = ""
    supports: Callable = field(default=lambda geom, dtype, op: True)
    error: Optional[Callable] = None     # reduced-accuracy entries: relative error bound (see above)
    nonfinite: str = "exact"             # "exact" or "spreads" (see the non-finite contract above)
    cost_kind: Callable = field(default=lambda geom, dtype, op: "")
    fused_bias: bool = False
    spreading_ops: tuple = OPS           # the ops a "spreads" entry spreads in
    reports_finite: tuple = ()           # the ops whose callables return whether ``out`` is all finite
    plan: Optional[Callable] = None      # plans for repeated calls (see above)

    def implements(self, op):
        return getattr(self, op) is not None

    def spreads(self, op):
        """True when ``op`` may spread non-finite values beyond the contract (see ``nonfinite``)."""
        return self.nonfinite == "spreads" and op in self.spreading_ops

    @property
    def exact(self):
        """True for algorithms that sum products directly (the rounding error of an ordinary dot product)."""
        return self.error is None


_reduced = {"allowed": True}
_reduced_local = contextvars.ContextVar("fastconv_reduced_accuracy", default=None)


def set_reduced_accuracy(allowed):
    """Allow (the default) or forbid ``algorithm="auto"`` to choose reduced-accuracy algorithms, process-wide.

    Like ``torch.backends.cudnn.allow_tf32``: fast algorithms that round more than a direct sum (``winograd``)
    are chosen by ``auto`` only where their documented error bound is within the dtype's tolerance
    (``5e-5`` of ``max |y|`` for float32, ``1e-12`` for float64), and never once this is set to False.  Naming an
    algorithm explicitly (``algorithm="winograd"``) is not affected.
    """
    _reduced["allowed"] = V.flag(allowed, "set_reduced_accuracy", "allowed")


def get_reduced_accuracy():
    """Whether ``algorithm="auto"`` may choose reduced-accuracy algorithms in this thread (see
    :func:`set_reduced_accuracy`)."""
    local = _reduced_local.get()
    return _reduced["allowed"] if local is None else local


@contextlib.contextmanager
def reduced_accuracy(allowed):
    """``with fastconv.reduced_accuracy(False): ...`` -- within the block, in this thread (and asyncio task) only,
    ``auto`` uses exact-order algorithms only (or, with True, may use reduced-accuracy ones)."""
    token = _reduced_local.set(V.flag(allowed, "reduced_accuracy", "allowed"))
    try:
        yield
    finally:
        _reduced_local.reset(token)


def accurate_enough(alg, geom, dtype, op):
    """Whether ``auto`` may take ``alg`` for this call: exact-order, or reduced accuracy allowed and its bound
    within ``TOLERANCE``."""
    if alg.error is None:
        return True
    if not get_reduced_accuracy():
        return False
    return alg.error(geom, dtype, op) <= TOLERANCE[np.dtype(dtype)]


_registry = {}
_choice_cache = {}   # (geometry key, dtype, op, threads, reduced accuracy) -> name; cleared on register()
_generation = [0]    # bumped whenever choices made so far may no longer hold (see invalidate)


def invalidate():
    """Forget every ``auto`` choice made so far (an algorithm was registered, a calibration loaded or reset):
    the choice cache is cleared and plans made before (``Algorithm.plan``) are no longer used."""
    _choice_cache.clear()
    _generation[0] += 1


def register(alg):
    """Add (or replace) an algorithm; returns it so the call can be used as an expression."""
    if not isinstance(alg, Algorithm):
        raise TypeError("register() expects an Algorithm, got %r" % type(alg).__name__)
    if alg.nonfinite not in NONFINITE:
        raise ValueError("register(): Algorithm.nonfinite must be one of %s, got %r" % (NONFINITE, alg.nonfinite))
    if not set(alg.spreading_ops) <= set(OPS):
        raise ValueError("register(): Algorithm.spreading_ops must name ops of %s, got %r" % (OPS, alg.spreading_ops))
    _registry[alg.name] = alg
    invalidate()
    return alg


def get(name):
    return _registry[name]


def names():
    """Registered algorithm names, in registration order."""
    return tuple(_registry)


def tame(dtype, *operands):
    """True when no operand holds an inf or NaN and no product of the operands' values can overflow ``dtype``
    on the way through a transform: ``prod(max|a| * a.size) * max(a.size)`` stays below its largest value (a
    bound on every intermediate of an FFT or Winograd evaluation).  One pass per operand on fastconv's threads
    (a kernel for contiguous float32/float64 arrays, two NumPy reductions otherwise), no copies."""
    bound = 1.0
    size = 1
    for a in operands:
        if a.size == 0:
            return True
        m = _max_abs(a)
        if not math.isfinite(m):
            return False
        bound *= m * a.size
        size = max(size, a.size)
    return bound * size < float(np.finfo(dtype).max)


def finite(a):
    """True when ``a`` holds no inf or NaN (one pass on fastconv's threads, as :func:`tame`)."""
    return a.size == 0 or math.isfinite(_max_abs(a))


def _max_abs(a):
    """max |a|, inf when ``a`` holds an inf or NaN."""
    if a.dtype.char in "fd" and a.dtype.isnative and a.flags.c_contiguous:
        from . import _kernels
        return _kernels.module("_direct").max_abs(a.reshape(-1), _threads.threads_for(a.size))
    return max(float(a.max()), -float(a.min()))


def choose(geom, dtype, op="forward", finite=True):
    """The algorithm with the lowest estimated cost for ``op`` on ``geom`` (the ``"auto"`` choice).

    ``finite=False`` (for a run whose first result held an inf or NaN) leaves out the entries that spread
    non-finite values in ``op`` (:meth:`Algorithm.spreads`)."""
    if not all(geom.input_shape[:2]):     # no samples or no channels: nothing to compute, nothing to compare
        return next(a for a in _registry.values() if a.implements(op))
    tuning = _autotune.enabled()
    if tuning:
        tuned = _autotune.lookup(geom, dtype, op)
        if tuned is not None and tuned in _registry and (finite or not _registry[tuned].spreads(op)):
            return _registry[tuned]
    key = (geom, getattr(dtype, "char", None) or np.dtype(dtype).char, op, _threads.get_num_threads(),
           get_reduced_accuracy(), finite)
    name = _choice_cache.get(key)
    if name is not None and not tuning:
        return _registry[name]
    candidates = [a for a in _registry.values() if a.implements(op) and a.supports(geom, dtype, op)
                  and accurate_enough(a, geom, dtype, op) and (finite or not a.spreads(op))]
    if not candidates:
        raise ValueError("no registered algorithm can compute the %s of this convolution (input %s, weight %s, "
                         "stride %s, dilation %s): each declines it as too large for its buffers"
                         % (op, geom.input_shape, geom.weight_shape, geom.stride, geom.dilation))
    if tuning and len(candidates) > 1:
        return _registry[_autotune.tune(geom, dtype, op, candidates)]
    if name is None:
        from . import _calibrate
        est = {a.name: _calibrate.estimate(a, geom, dtype, op) for a in candidates}
        name = _autotune.settle(geom, dtype, op, candidates, est) if finite else min(est, key=est.get)
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
    if not alg.implements(op) or (all(geom.input_shape[:2]) and not alg.supports(geom, dtype, op)):
        raise ValueError("%s(): algorithm %r does not implement %s for this geometry" % (fn, name, op))
    return alg
