"""Calibrating ``algorithm="auto"`` (and the filters' ``method="auto"``) on the machine it runs on.

Every registered algorithm estimates its time with a cost model whose constants were measured on the development
machine.  Other machines differ -- in SIMD width, BLAS speed, cache sizes, thread count -- and so do the ratios
between the algorithms.  The calibration measures a few small probe convolutions (each layer class of the
benchmark grid, every op, every registered algorithm that supports it) and fits, for each (algorithm, op, kind),
``time = scale * model + overhead`` (robustly: Theil-Sen, see :func:`_fit`); ``kind`` is what the algorithm's
optional ``cost_kind`` says runs (e.g. ``direct``'s channel- or column-vectorised kernel), so an algorithm with
several kernels gets one fit per kernel.  Nothing here knows any algorithm by name: a newly registered one is
calibrated like the others.  The filters' constants (multiply-add, pass and FFT costs) are measured too.

The result is stored as JSON in the user's cache directory (``platformdirs.user_cache_dir("fastconv")``, or
``$FASTCONV_CACHE_DIR``), one file per CPU model, SIMD level, thread count, fastconv version and set of registered
algorithms, and used by every later process on that machine.  Without a file, the first ``auto`` choice of a
process runs the calibration (about two seconds, with a message on stderr); ``fastconv calibrate`` runs it
explicitly.  ``FASTCONV_CALIBRATE``:
``auto`` (default), ``off`` (the built-in constants, nothing measured or written) or ``force`` (measure again at
first use).
"""
import functools
import hashlib
import json
import math
import os
import sys
import threading
import time

import numpy as np

from . import _algorithms, _kernels, _threads
from ._measure import cpu_model

__all__ = ["calibrate", "estimate", "machine_key", "cache_dir", "cache_path", "current", "reset", "PROBES",
           "ENV_DIR", "ENV_MODE"]

ENV_DIR = "FASTCONV_CACHE_DIR"
ENV_MODE = "FASTCONV_CALIBRATE"
FORMAT = 1

# (name, input shape, weight shape, stride, padding, groups): small members of each layer class of the benchmark
# grid (3x3, wide 3x3, 1x1, LeNet 5x5, AlexNet-like 11x11 stride 4, depthwise, a large kernel, a single-channel
# image), a fraction of a millisecond to a few milliseconds each.  The tile algorithms need probes with enough
# tiles and channels to fill their blocks: with 3x3 probes of 4 x 32 x 28^2 and 2 x 128 x 14^2 and an 11x11 probe
# of 2 x 3 x 99^2, winograd's gradients ran at 1.4-2.6x their model there but at 1.0-1.2x on the benchmark's layers,
# and auto took toeplitz at 2.6x winograd's time for the 3x3 input gradients (Xeon, AVX-512).  The single-channel
# image is large enough that the transforms dominate fft's time and direct's column kernel runs well past the
# size where it starts its second thread: a 192^2 7x7 probe sat right there (0.09 ms with one thread for 5x5,
# 0.2 ms with two for 7x7 on a busy machine), made direct's column kernel look 1.5x slower on every image and
# left auto taking fft at 2.1x direct's time for a 512^2 15x15 image.
PROBES = [
    ("3x3", (8, 64, 40, 40), (64, 64, 3, 3), 1, 1, 1),
    ("3x3 wide", (4, 128, 28, 28), (128, 128, 3, 3), 1, 1, 1),
    ("1x1", (4, 128, 14, 14), (64, 128, 1, 1), 1, 0, 1),
    ("5x5", (32, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1),
    ("11x11 s4", (8, 3, 163, 163), (48, 3, 11, 11), 4, 0, 1),
    ("depthwise", (4, 32, 28, 28), (32, 1, 3, 3), 1, 1, 32),
    ("15x15", (1, 8, 48, 48), (8, 8, 15, 15), 1, 7, 1),
    ("image 15x15", (1, 1, 480, 480), (1, 1, 15, 15), 1, 7, 1),
    ("5x5 one channel", (32, 1, 28, 28), (6, 1, 5, 5), 1, 2, 1),
    # tiny calls: the fixed cost of a call, which the other probes leave to their fits' intercepts (tens of
    # microseconds of noise there made lanes look cheaper than direct on a 4x4 image, where it takes 3x as long)
    ("tiny", (1, 2, 8, 8), (2, 2, 3, 3), 1, 1, 1),
    ("tiny one channel", (1, 1, 6, 6), (1, 1, 3, 3), 1, 1, 1),
]
# An algorithm whose uncalibrated estimate for a probe exceeds this, or exceeds SKIP_RATIO times the smallest
# estimate for the same probe and op (and SKIP_FLOOR seconds), is not measured there: it would not win, and the fit
# should follow the probes where it competes.
SKIP_SECONDS = 0.05
SKIP_RATIO = 4.0
SKIP_FLOOR = 0.002
REPEATS = 3

_lock = threading.Lock()
_state = {"sig": None, "key": None, "data": None}     # sig: (threads, SIMD level) of the calibration in use


def machine_key(nthreads=None):
    """What a calibration is valid for: CPU model, SIMD level, thread count, fastconv version, the registered
    algorithms (a calibration made before an algorithm was registered has no fit for it: it is measured again) and
    their cost models and probes (a fit scales a model: once the model changes, the old scale is wrong)."""
    from ._version import __version__
    return {"cpu": cpu_model(), "simd": _kernels.level(),
            "threads": _threads.get_num_threads() if nthreads is None else int(nthreads), "version": __version__,
            "algorithms": sorted(_algorithms.names()), "models": _models_digest()}


@functools.lru_cache(maxsize=1)
def _models_digest():
    """A digest of the source of every module that defines a registered algorithm's cost model, of this one (the
    probes) and of the filters' engine (its cost model and probes), and the name, size and modification time of
    every compiled kernel, so that a calibration is measured again after any of them changes: a rebuilt kernel
    may run at another speed (a stale fit once priced the filters' direct path at 2x its cost and sent 15x15
    correlations to the FFT path at 2.2x direct's time)."""
    from .filters import _engine  # noqa: F401  (the engine's module must be loaded to be digested)
    h = hashlib.sha256()
    names = sorted({_algorithms.get(n).cost.__module__ for n in _algorithms.names()}
                   | {__name__, "fastconv.filters._engine"})
    for name in names:
        path = getattr(sys.modules.get(name), "__file__", None)
        h.update(name.encode())
        if path:
            try:
                with open(path, "rb") as f:
                    h.update(f.read())
            except OSError:
                pass
    kdir = os.path.dirname(_kernels.__file__)
    for root, dirs, files in sorted(os.walk(kdir)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith((".so", ".pyd")):
                try:
                    st = os.stat(os.path.join(root, name))
                except OSError:
                    continue
                h.update(("%s/%s %d %d" % (os.path.relpath(root, kdir), name, st.st_size, st.st_mtime_ns)).encode())
    return h.hexdigest()[:16]


def cache_dir():
    """The directory of fastconv's calibration and autotune files: ``$FASTCONV_CACHE_DIR`` or the user cache."""
    env = os.environ.get(ENV_DIR, "").strip()
    if env:
        return env
    try:
        import platformdirs
        return platformdirs.user_cache_dir("fastconv", appauthor=False)
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        return os.path.join(os.path.expanduser("~"), ".cache", "fastconv")


def cache_path(kind, key):
    """``<cache_dir>/<kind>-<hash of key>.json``."""
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(cache_dir(), "%s-%s.json" % (kind, digest))


def _mode():
    mode = os.environ.get(ENV_MODE, "auto").strip().lower() or "auto"
    if mode not in ("auto", "off", "force"):
        raise ValueError("%s must be 'auto', 'off' or 'force', got %r" % (ENV_MODE, mode))
    return mode


def write_json(path, data):
    """Write JSON atomically (a temporary file renamed into place), creating the directory."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _load(path, key):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != key:
        return None
    return data


def current():
    """The calibration in use for the current thread count (loaded, or measured now at first use); ``None`` when
    ``FASTCONV_CALIBRATE=off``."""
    sig = (_threads.get_num_threads(), _kernels.level(), os.environ.get(ENV_MODE, ""))
    if _state["sig"] == sig:
        return _state["data"]
    if _mode() == "off":
        return None
    with _lock:
        if _state["sig"] == sig:
            return _state["data"]
        key = machine_key()
        data = None if _mode() == "force" else _load(cache_path("calibration", key), key)
        if data is None:
            data = calibrate(progress=True, save=True)
        _use(sig, key, data)
        return data


def _use(sig, key, data):
    _state["sig"], _state["key"], _state["data"] = sig, key, data
    _apply_filters(data)
    _algorithms.invalidate()


def reset():
    """Forget the calibration held in memory (the next ``auto`` choice loads or measures it again)."""
    with _lock:
        _use(None, None, None)


def estimate(alg, geom, dtype, op):
    """Calibrated seconds of ``op`` by ``alg``: ``scale * alg.cost(...) + overhead`` with the fit of its kind."""
    base = alg.cost(geom, dtype, op)
    data = current()
    if data is None or not math.isfinite(base):
        return base
    fits = data["fits"]
    kind = alg.cost_kind(geom, dtype, op)
    fit = fits.get("%s/%s/%s" % (alg.name, op, kind)) or fits.get("%s/%s/" % (alg.name, op))
    if fit is None:
        return base
    return fit[0] * base + fit[1]


# ----------------------------------------------------------------------------------------------- measuring
def _time(fn, repeats):
    fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _fit(samples):
    """(scale, overhead) of ``scale * model + overhead`` through ``samples = [(model, measured), ...]``, fitted
    robustly (Theil-Sen): the scale is the median of the slopes between every two samples, the overhead the median
    of what the scale leaves (at least 0).  The probes are small, and the fit is used on layers far larger than
    they are: a least-squares fit lets one or two outliers (a probe whose kernel runs unusually well, a busy
    moment on a shared machine) trade scale for overhead and extrapolate badly.  Fewer than three samples (one
    slope between two nearly equal models is noise), or samples without an increasing pair, fit the scale alone
    (the median ratio)."""
    m = np.array([s[0] for s in samples], float)
    t = np.array([s[1] for s in samples], float)
    slopes = [(t[j] - t[i]) / (m[j] - m[i]) for i in range(len(m)) for j in range(i + 1, len(m)) if m[j] != m[i]]
    slopes = [x for x in slopes if x > 0]
    if len(samples) < 3 or not slopes:
        return float(np.exp(np.median(np.log(t / m)))), 0.0
    scale = float(np.median(slopes))
    return scale, max(0.0, float(np.median(t - scale * m)))


# A probe measured more than OUTLIER times slower, against its model, than the median of its algorithm and op is
# measured again once the other probes ran, and keeps the faster time.  On a shared machine a few milliseconds
# on a busy core happen: one probe of lanes' input gradient once took 2.2 ms instead of 0.28 (three repeats in a
# row), its fit came out 3x too slow and auto took toeplitz at 1.25x lanes' time for LeNet's input gradient.
OUTLIER = 1.6


def _remeasure_outliers(measured, repeats):
    """Time the outliers of ``measured`` (lists ``[alg, op, geom, fn, model, seconds]``) again, in place; returns
    how many were."""
    ratios = {}
    for alg, op, geom, fn, model, t in measured:
        ratios.setdefault((alg.name, op), []).append(t / model)
    typical = {k: float(np.median(v)) for k, v in ratios.items()}
    count = 0
    for row in measured:
        alg, op, geom, fn, model, t = row
        if t / model > OUTLIER * typical[alg.name, op]:
            row[5] = min(t, _time(fn, repeats))
            count += 1
    return count


def _probe_calls(spec, rng):
    from . import conv, grad  # noqa: F401  (loads the registry)
    from ._geometry import ConvGeometry
    name, xs, ws, stride, padding, groups = spec
    geom = ConvGeometry.make(xs, ws, stride, padding, 1, groups)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    gy = rng.standard_normal(geom.output_shape).astype(np.float32)
    nt = _threads.get_num_threads()
    out = {"forward": np.empty(geom.output_shape, np.float32), "grad_input": np.empty(geom.input_shape, np.float32),
           "grad_weight": np.empty(geom.weight_shape, np.float32)}
    calls = []
    for alg in _algorithms._registry.values():
        for op in _algorithms.OPS:
            if not alg.implements(op) or not alg.supports(geom, np.float32, op):
                continue
            fn = getattr(alg, op)
            args = {"forward": (x, w, None), "grad_input": (gy, w), "grad_weight": (x, gy)}[op]
            calls.append((alg, op, geom, lambda fn=fn, args=args, o=out[op]: fn(*args, geom, o, nt)))
    return calls


def calibrate(nthreads=None, progress=True, save=True, probes=None, repeats=REPEATS):
    """Measure the probe convolutions with every registered algorithm and op, fit the per-(algorithm, op, kind)
    corrections and the filters' constants, and (``save``) store them in the cache directory.

    Runs with ``nthreads`` threads (default: the current count) and returns the calibration dict.  Takes about
    two seconds on 2 cores.
    """
    nthreads = _threads.effective_threads(nthreads)
    key = machine_key(nthreads)
    start = time.perf_counter()
    if progress:
        print("fastconv: calibrating algorithm choice for this machine (%s, %s, %d threads) ..."
              % (key["cpu"], key["simd"], nthreads), end="", file=sys.stderr, flush=True)
    rng = np.random.default_rng(0)
    measured = []
    skipped = 0
    with _threads.num_threads(nthreads):
        for spec in (PROBES if probes is None else probes):
            calls = [(alg, op, geom, fn, alg.cost(geom, np.float32, op)) for alg, op, geom, fn in
                     _probe_calls(spec, rng)]
            best = {}
            for alg, op, geom, fn, model in calls:
                best[op] = min(best.get(op, math.inf), model)
            for alg, op, geom, fn, model in calls:
                if (not math.isfinite(model) or model > SKIP_SECONDS
                        or model > max(SKIP_RATIO * best[op], SKIP_FLOOR)):
                    skipped += 1
                    continue
                measured.append([alg, op, geom, fn, model, _time(fn, repeats)])
        remeasured = _remeasure_outliers(measured, repeats)
        filters = _measure_filters(nthreads)
    samples = {}
    for alg, op, geom, fn, model, t in measured:
        kind = alg.cost_kind(geom, np.float32, op)
        for k in {"%s/%s/%s" % (alg.name, op, kind), "%s/%s/" % (alg.name, op)}:
            samples.setdefault(k, []).append((model, t))
    fits = {k: _fit(v) for k, v in samples.items()}
    data = {"format": FORMAT, "key": key, "fits": fits, "filters": filters, "samples": samples,
            "seconds": time.perf_counter() - start, "skipped": skipped, "remeasured": remeasured}
    if progress:
        print(" done in %.1f s" % data["seconds"], file=sys.stderr, flush=True)
    if save:
        try:
            write_json(cache_path("calibration", key), data)
        except OSError as exc:    # a read-only cache directory: use the calibration for this process only
            print("fastconv: could not store the calibration in %s: %s" % (cache_dir(), exc), file=sys.stderr)
    if _state["key"] == key:
        _use(_state["sig"], key, data)
    return data


# ----------------------------------------------------------------------------------------------- filters
# Side of the filters' probe images: large enough that the FFT path's fixed costs do not pass for its per-element
# cost (see ``filters._engine.fit_constants``), about 0.1 s for all three probes on 2 cores.
FILTER_SIZE = 1024


def _measure_filters(nthreads):
    """The filters' cost constants (float32; see ``filters._engine.calibrate``)."""
    from .filters import _engine as E
    return E.calibrate(repeats=REPEATS, size=FILTER_SIZE, nthreads=nthreads, dtypes=(np.float32,))


def _apply_filters(data):
    from .filters import _engine as E
    E.set_constants(None if data is None else data.get("filters"))
