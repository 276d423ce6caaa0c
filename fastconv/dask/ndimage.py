"""Lazy counterparts of :mod:`fastconv.ndimage`: scipy.ndimage's signatures, dask arrays in and out.

``fastconv.dask.ndimage.gaussian_filter(x, 4)`` is ``fastconv.ndimage.gaussian_filter`` over the blocks of ``x``,
each extended by the halo that :func:`fastconv.ndimage.filter_halo` reports for the same arguments.  ``output``
may be a dtype (not an array: the result is a new dask array).  ``generic_laplace`` and
``generic_gradient_magnitude`` call a function of yours, whose reach fastconv cannot know: give it as
``halo=`` (elements on each side, an int or one per axis).
"""
import functools
import inspect

import numpy as np

from .. import ndimage as _ndi
from ..filters._engine import MODES
from ._filters import _dummy, as_dask, neighbourhood

__all__ = ["correlate", "convolve", "correlate1d", "convolve1d", "gaussian_filter", "gaussian_filter1d",
           "gaussian_laplace", "gaussian_gradient_magnitude", "generic_gradient_magnitude", "generic_laplace",
           "laplace", "sobel", "prewitt", "uniform_filter", "uniform_filter1d", "minimum_filter", "maximum_filter",
           "minimum_filter1d", "maximum_filter1d", "median_filter", "rank_filter", "percentile_filter"]

# the 1-D filters: their one filtered axis is the argument ``axis``
_ONE_AXIS = ("correlate1d", "convolve1d", "gaussian_filter1d", "uniform_filter1d", "minimum_filter1d",
             "maximum_filter1d")


def _canonical(mode, name):
    if not isinstance(mode, str) or mode not in MODES:
        return None        # the in-memory call on the probe reports it
    return MODES[mode]


def _modes(name, ndim, arguments):
    """Per-axis canonical modes: scipy takes one name, or one per filtered axis (``axes``, or every axis)."""
    mode = arguments.get("mode", "reflect")
    if isinstance(mode, str):
        return (_canonical(mode, name) or "reflect",) * ndim
    mode = list(mode)
    if name in _ONE_AXIS:
        axes = [arguments.get("axis", -1) % ndim]
    elif arguments.get("axes") is not None and len(mode) != ndim:
        axes = [a % ndim for a in (arguments["axes"] if not isinstance(arguments["axes"], int)
                                   else [arguments["axes"]])]
    else:
        axes = list(range(ndim))
    out = ["reflect"] * ndim
    for a, m in zip(axes, mode):
        out[a] = _canonical(m, name) or "reflect"
    return tuple(out)


def _output_dtype(output, name):
    if output is None:
        return None
    if isinstance(output, np.ndarray) or hasattr(type(output), "__dask_graph__"):
        raise TypeError("fastconv.dask.ndimage.%s(): argument 'output' must be a dtype (the result is a new dask "
                        "array), got an array" % name)
    return output


def _halo_of(halo, ndim, name):
    from .._validate import int_tuple
    if halo is None:
        raise TypeError("fastconv.dask.ndimage.%s(): give the reach of your derivative function as halo= (an int "
                        "or one per axis)" % name)
    return [(h, h) for h in int_tuple(halo, ndim, "fastconv.dask.ndimage." + name, "halo", minimum=0)]


def _lazy(name):
    func = getattr(_ndi, name)
    sig = inspect.signature(func)
    generic = name.startswith("generic_")

    def lazy(input, *args, threads=None, halo=None, **kwargs):
        x = as_dask(input, name, "input")
        bound = sig.bind(None, *args, **kwargs)
        _output_dtype(bound.arguments.get("output"), name)
        if generic:
            reach = _halo_of(halo, x.ndim, name)
        dtype = np.asarray(func(_dummy(x), *args, **kwargs)).dtype      # validates every argument
        if not generic:
            if halo is not None:
                raise TypeError("fastconv.dask.ndimage.%s(): halo= is for the generic filters only" % name)
            reach = _ndi.filter_halo(name, x.ndim, *args, **kwargs)
        run = functools.partial(_call, func, args, kwargs)
        return neighbourhood(name, run, x, reach, _modes(name, x.ndim, bound.arguments), threads=threads,
                             dtype=dtype)

    lazy.__name__ = lazy.__qualname__ = name
    lazy.__doc__ = ("Lazy :func:`fastconv.ndimage.%s` (scipy.ndimage's signature; ``output`` only as a dtype%s; "
                    "``threads=`` per task)." % (name, "; ``halo=``: the reach of your function on each side"
                                                 if generic else ""))
    lazy.__signature__ = _signature(sig, generic)
    return lazy


def _signature(sig, generic):
    params = list(sig.parameters.values())
    extra = [inspect.Parameter("threads", inspect.Parameter.KEYWORD_ONLY, default=None)]
    if generic:
        extra.append(inspect.Parameter("halo", inspect.Parameter.KEYWORD_ONLY, default=None))
    var_kw = [p for p in params if p.kind == inspect.Parameter.VAR_KEYWORD]
    rest = [p for p in params if p.kind != inspect.Parameter.VAR_KEYWORD]
    return sig.replace(parameters=rest + extra + var_kw)


def _call(func, args, kwargs, slab):
    return func(slab, *args, **kwargs)


for _name in __all__:
    globals()[_name] = _lazy(_name)
del _name
