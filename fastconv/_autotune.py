"""Measured algorithm choice, like ``torch.backends.cudnn.benchmark``.

With ``fastconv.autotune(True)`` the first ``algorithm="auto"`` call for a given (geometry, dtype, op, threads)
times the registered algorithms on random data of that shape and remembers the fastest.  Each candidate is run
once to warm up, then the candidates are timed in interleaved rounds (so that load on a shared machine hits them
alike; the order changes from round to round, so that none always runs right after the same other one) until the
fastest is separated from the runner-up -- its upper quartile below the runner-up's lower quartile -- or the
rounds or the time budget run out; when the two are within ``TIE`` of each other the calibrated cost model's
choice among them is kept, so noise does not decide.  Candidates the cost model puts far behind are not timed.

The winners persist across processes by default: they are stored as JSON in fastconv's cache directory (see
:func:`fastconv._calibrate.cache_dir`), one file per CPU model, SIMD level and fastconv version.
``fastconv.autotune(True, cache_file="path.json")`` uses that file instead; ``cache_file=False`` keeps the winners
in memory only.
"""
import json
import math
import os
import statistics
import threading
import time

import numpy as np

from . import _threads
from . import _validate as V
from ._measure import balanced_orders

__all__ = ["autotune", "enabled", "lookup", "tune", "settle", "clear_cache", "cache_info", "default_cache_file"]

# Rounds of interleaved timings (after one warm-up call each) and the time budget of one tuning.
MIN_ROUNDS = 3
MAX_ROUNDS = 15
BUDGET_SECONDS = 2.0
# Medians within this fraction of each other are a tie (the cost model decides).
TIE = 0.03
# Candidates whose calibrated estimate exceeds the best estimate this many times are not timed.
SKIP_FACTOR = 8.0

# Close calls of plain ``auto`` (autotune off): where other candidates' calibrated estimates are within SETTLE
# times the best one, the cost model cannot tell them apart -- its error on a layer it was not calibrated on
# reaches 1.5x (measured on the Xeon: toeplitz's LeNet input gradient at 1.0 ms against an estimate of 0.59) --
# so the first call of that geometry times those candidates (within SETTLE_BUDGET seconds) and keeps the fastest,
# ties to the model.  Calls estimated below SETTLE_MIN_SECONDS, or with operands above SETTLE_MAX_BYTES, keep
# the model's choice; so does ``FASTCONV_CALIBRATE=off``.  SETTLE = 0 turns this off.
SETTLE = 1.5
SETTLE_MIN_SECONDS = 2e-4
SETTLE_MAX_BYTES = 256 * 2 ** 20
SETTLE_BUDGET = 0.25
# Calls estimated below SETTLE_MIN_SECONDS are dominated by Python-side work, which an algorithm with a plan
# (``Algorithm.plan``) skips on every repeated call -- a 1x1x4x4 3x3 conv: direct 7-11 us planned, lanes 30 us --
# and which the models' per-call constants (and the noise in their calibrated intercepts) do not capture: such an
# algorithm is preferred while its estimate is within PLAN_FAVOUR times the cheapest and at most PLAN_SAVING
# seconds above it (what a plan can save is Python-side time, not a fraction of the kernel's: LeNet's 6 -> 16
# forward pass, estimated 167 us by lanes and 313 us by direct, took 0.27 ms and 0.52 ms, and without the bound
# a calibration that put lanes' estimate below SETTLE_MIN_SECONDS handed it to direct).
PLAN_FAVOUR = 2.0
PLAN_SAVING = 3e-5

_state = {"enabled": False, "file": None}
_cache = {}
_lock = threading.Lock()
_stats = {"hits": 0, "misses": 0, "settled": 0}


def _key(geom, dtype, op):
    from . import _algorithms
    key = (geom.key(), np.dtype(dtype).name, op, _threads.get_num_threads())
    if not _algorithms.get_reduced_accuracy():     # winners among exact-order algorithms only
        key += ("exact",)
    return repr(key)


def default_cache_file():
    """The autotune file of this machine in fastconv's cache directory."""
    from . import _calibrate
    key = _calibrate.machine_key()
    del key["threads"]          # entries carry their thread count
    return _calibrate.cache_path("autotune", key)


def _read(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError("autotune(): argument 'cache_file' %r is not a readable JSON cache: %s" % (path, exc)) \
            from None
    if not isinstance(data, dict):
        raise ValueError("autotune(): argument 'cache_file' %r is not a JSON object" % (path,))
    return {str(k): str(v) for k, v in data.items()}


def autotune(enable=True, cache_file=None):
    """Turn measured algorithm choice on or off.

    ``cache_file``: ``None`` (default) keeps the winners in fastconv's cache directory, so later processes start
    tuned; a path uses that JSON file; ``False`` keeps them in memory only.
    """
    enable = V.flag(enable, "autotune", "enable")
    if cache_file is not None and cache_file is not False and not isinstance(cache_file, (str, os.PathLike)):
        raise TypeError("autotune(): argument 'cache_file' must be a path, None or False, got %r" % (cache_file,))
    if cache_file is None and enable:
        cache_file = default_cache_file()
    with _lock:
        _state["enabled"] = bool(enable)
        _state["file"] = os.fspath(cache_file) if cache_file not in (None, False) else None
        if _state["file"]:
            _cache.update(_read(_state["file"]))


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
    x, w, gy = (rng.random(shape, np.float32).astype(dtype, copy=False) - 0.5
                for shape in (geom.input_shape, geom.weight_shape, geom.output_shape))
    if op == "forward":
        return (x, w, None, geom, np.empty(geom.output_shape, dtype))
    if op == "grad_input":
        return (gy, w, geom, np.empty(geom.input_shape, dtype))
    return (x, gy, geom, np.empty(geom.weight_shape, dtype))


def _quartiles(ts):
    q = statistics.quantiles(ts, n=4, method="inclusive") if len(ts) > 1 else [ts[0]] * 3
    return q[0], q[2]


def measure(geom, dtype, op, candidates, budget=None):
    """``{name: [seconds, ...]}`` of interleaved timing rounds of the candidates (see the module docstring)."""
    budget = BUDGET_SECONDS if budget is None else budget
    args = _random_args(geom, dtype, op)
    nthreads = _threads.get_num_threads()
    fns = {alg.name: (lambda fn=getattr(alg, op): fn(*args, nthreads)) for alg in candidates}
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    items = list(fns.items())
    orders = balanced_orders(len(items))     # each candidate follows each other one equally often
    start = time.perf_counter()
    for r in range(MAX_ROUNDS):
        for i in orders[r % len(orders)]:
            k, fn = items[i]
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
        if len(fns) == 1 or r + 1 < MIN_ROUNDS:
            continue
        order = sorted(times, key=lambda k: statistics.median(times[k]))
        if _quartiles(times[order[0]])[1] < _quartiles(times[order[1]])[0]:
            break
        if time.perf_counter() - start > budget:
            break
    return times


def _winner(times, est):
    """The fastest by median time; among those within TIE of it, the one the cost model prefers."""
    med = {k: statistics.median(v) for k, v in times.items()}
    order = sorted(med, key=med.get)
    best = order[0]
    if len(order) > 1 and med[order[1]] <= med[best] * (1 + TIE):
        tied = [k for k in order if med[k] <= med[best] * (1 + TIE)]
        best = min(tied, key=est.get)
    return best


def _operand_bytes(geom, dtype):
    return sum(math.prod(s) for s in (geom.input_shape, geom.weight_shape, geom.output_shape)) * \
        np.dtype(dtype).itemsize


def settle(geom, dtype, op, candidates, est):
    """Plain ``auto``'s choice among ``candidates`` (Algorithms) given their estimates ``est`` (name -> seconds):
    the close ones timed when the call is worth it (see SETTLE), else the best estimate.  Returns a name."""
    from . import _calibrate
    best = min(candidates, key=lambda a: est[a.name]).name
    if est[best] < SETTLE_MIN_SECONDS:          # small: never timed
        planned = [a.name for a in candidates if op == "forward" and a.plan is not None
                   and est[a.name] <= min(PLAN_FAVOUR * est[best], est[best] + PLAN_SAVING)]
        return min(planned, key=est.get) if planned else best
    close = [a for a in candidates if est[a.name] <= SETTLE * est[best]]
    if len(close) < 2 or _calibrate._mode() == "off" or _operand_bytes(geom, dtype) > SETTLE_MAX_BYTES:
        return best
    _stats["settled"] += 1
    return _winner(measure(geom, dtype, op, close, budget=SETTLE_BUDGET), est)


def tune(geom, dtype, op, candidates):
    """Time the candidates, cache and return the winner's name (see the module docstring)."""
    from . import _calibrate
    _stats["misses"] += 1
    est = {a.name: _calibrate.estimate(a, geom, dtype, op) for a in candidates}
    best_est = min(est.values())
    timed = [a for a in candidates if est[a.name] <= SKIP_FACTOR * best_est] or list(candidates)
    best = _winner(measure(geom, dtype, op, timed), est)
    with _lock:
        _cache[_key(geom, dtype, op)] = best
        if _state["file"]:
            try:
                merged = _read(_state["file"])
            except ValueError:
                merged = {}
            merged.update(_cache)
            _calibrate.write_json(_state["file"], merged)
    return best


def clear_cache():
    """Forget every tuned choice held in memory (the cache file is left alone)."""
    with _lock:
        _cache.clear()
        _stats["hits"] = _stats["misses"] = _stats["settled"] = 0


def cache_info():
    """``{"entries": n, "hits": h, "misses": m, "settled": s, "file": path or None}`` for the in-memory cache
    (``settled``: close calls of plain ``auto`` that were timed, see SETTLE)."""
    return {"entries": len(_cache), "hits": _stats["hits"], "misses": _stats["misses"],
            "settled": _stats["settled"], "file": _state["file"]}
