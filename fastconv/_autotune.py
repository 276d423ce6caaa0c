"""Measured algorithm choice, like ``torch.backends.cudnn.benchmark``.

With ``fastconv.autotune(True)`` the first ``algorithm="auto"`` call for a given (geometry, dtype, op, threads)
times every registered algorithm once on random data of that shape and remembers the fastest for the rest of the
process.  ``fastconv.autotune(True, cache_file="path.json")`` also loads and saves the winners in a JSON file so
later processes start tuned.
"""
import json
import os
import threading
import time

import numpy as np

from . import _threads
from . import _validate as V

__all__ = ["autotune", "enabled", "lookup", "tune", "clear_cache", "cache_info"]

_state = {"enabled": False, "file": None}
_cache = {}
_lock = threading.Lock()
_stats = {"hits": 0, "misses": 0}


def _key(geom, dtype, op):
    from . import _algorithms
    key = (geom.key(), np.dtype(dtype).name, op, _threads.get_num_threads())
    if not _algorithms.get_reduced_accuracy():     # winners among exact-order algorithms only
        key += ("exact",)
    return repr(key)


def autotune(enable=True, cache_file=None):
    """Turn measured algorithm choice on or off; optionally persist winners in ``cache_file`` (JSON)."""
    enable = V.flag(enable, "autotune", "enable")
    if cache_file is not None and not isinstance(cache_file, (str, os.PathLike)):
        raise TypeError("autotune(): argument 'cache_file' must be a path, got %r" % (cache_file,))
    with _lock:
        _state["enabled"] = bool(enable)
        _state["file"] = os.fspath(cache_file) if cache_file is not None else None
        if _state["file"] and os.path.exists(_state["file"]):
            try:
                with open(_state["file"]) as f:
                    saved = json.load(f)
                if not isinstance(saved, dict):
                    raise ValueError("expected a JSON object of problem -> algorithm, got a %s"
                                     % type(saved).__name__)
                _cache.update({str(k): str(v) for k, v in saved.items()})
            except (OSError, ValueError) as exc:
                raise ValueError("autotune(): argument 'cache_file' %r is not a readable JSON cache: %s"
                                 % (_state["file"], exc)) from None


def enabled():
    return _state["enabled"]


def lookup(geom, dtype, op):
    """The cached winner for this problem, or None."""
    if not _state["enabled"]:
        return None
    name = _cache.get(_key(geom, dtype, op))
    if name is not None:
        _stats["hits"] += 1
    return name


def _random_args(geom, dtype, op):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(geom.input_shape).astype(dtype)
    w = rng.standard_normal(geom.weight_shape).astype(dtype)
    gy = rng.standard_normal(geom.output_shape).astype(dtype)
    if op == "forward":
        return (x, w, None, geom, np.empty(geom.output_shape, dtype))
    if op == "grad_input":
        return (gy, w, geom, np.empty(geom.input_shape, dtype))
    return (x, gy, geom, np.empty(geom.weight_shape, dtype))


def tune(geom, dtype, op, candidates):
    """Time each candidate once, cache and return the winner's name."""
    _stats["misses"] += 1
    args = _random_args(geom, dtype, op)
    nthreads = _threads.get_num_threads()
    best, best_t = None, np.inf
    for alg in candidates:
        fn = getattr(alg, op)
        t0 = time.perf_counter()
        fn(*args, nthreads)
        dt = time.perf_counter() - t0
        if dt < best_t:
            best, best_t = alg.name, dt
    with _lock:
        _cache[_key(geom, dtype, op)] = best
        if _state["file"]:
            tmp = _state["file"] + ".tmp"
            with open(tmp, "w") as f:
                json.dump(_cache, f, indent=0, sort_keys=True)
            os.replace(tmp, _state["file"])
    return best


def clear_cache():
    """Forget every tuned choice held in memory (the cache file is left alone)."""
    with _lock:
        _cache.clear()
        _stats["hits"] = _stats["misses"] = 0


def cache_info():
    """``{"entries": n, "hits": h, "misses": m}`` for the in-memory cache."""
    return {"entries": len(_cache), "hits": _stats["hits"], "misses": _stats["misses"]}
