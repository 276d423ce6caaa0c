"""Pooling with argmax tracking: max, average, Lp, adaptive, global, k-max and max-unpooling.

Names, argument order, defaults, output sizes and the index convention are those of ``torch.nn.functional``.
Arrays are ``(N, C, *spatial)`` with 1, 2 or 3 spatial dims (N may be 0, as in PyTorch); results are float32
for float16/float32 input and float64 otherwise, except that the max-type pools (max, adaptive max, global max,
k-max) of integer input compare the integers exactly and return them in their own dtype, as PyTorch's max pools
do (mean-type pools of integers are float64 means, where PyTorch truncates); indices are int64 flat offsets into
each unpadded ``(n, c)`` plane of the input.  The gradients (``max_pool_backward``, ``avg_pool2d_backward``, ...)
are in :mod:`fastconv.grad`.

Data path of every call::

    public function -> _validate (array, dtype) -> PoolGeometry (every output size) -> window tables
                    -> kernel(out=...) -> result

Modules: ``_engine`` (window tables, work plans, kernel runs), ``_regular`` (max, average, Lp),
``_adaptive`` (adaptive and global), ``_index`` (k-max, unpooling, the argmax scatter).  Every element of a
result, forward or backward, is computed by one thread in a fixed order (index scatters own whole (n, c)
planes), so results do not depend on the number of threads.
"""
from . import _adaptive, _index, _regular
from ._adaptive import (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d, adaptive_max_pool1d,
                        adaptive_max_pool2d, adaptive_max_pool3d, global_avg_pool, global_max_pool)
from ._index import kmax_pool, max_unpool1d, max_unpool2d, max_unpool3d
from ._regular import (avg_pool1d, avg_pool2d, avg_pool3d, lp_pool1d, lp_pool2d, max_pool1d, max_pool2d,
                       max_pool3d)

__all__ = [
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "lp_pool1d", "lp_pool2d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "global_max_pool", "global_avg_pool", "kmax_pool", "max_unpool1d", "max_unpool2d", "max_unpool3d",
]

# The gradients lived here (and at the top level) before 0.2; the old names still work, with a warning.
BACKWARD = (
    "max_pool_backward", "avg_pool1d_backward", "avg_pool2d_backward", "avg_pool3d_backward",
    "lp_pool1d_backward", "lp_pool2d_backward", "adaptive_avg_pool1d_backward", "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool3d_backward", "global_avg_pool_backward", "kmax_pool_backward", "max_unpool_backward",
)


def moved_to_grad(module, name):
    """The gradient ``name`` (the function :mod:`fastconv.grad` exports), with a DeprecationWarning for the old
    place ``module``."""
    import warnings
    warnings.warn("%s.%s moved to fastconv.grad.%s; the old name will be removed in the next release"
                  % (module, name, name), DeprecationWarning, stacklevel=3)
    return next(getattr(m, name) for m in (_regular, _adaptive, _index) if hasattr(m, name))


def __getattr__(name):
    if name in BACKWARD:
        return moved_to_grad(__name__, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
