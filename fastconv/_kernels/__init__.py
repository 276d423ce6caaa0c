"""Compiled kernels and the choice between their SIMD builds.

Each kernel module is built once per SIMD level (see setup.py and ``simd.h``):

``baseline``  ``fastconv._kernels.<name>``          SSE2, 32-byte vectors as register pairs; runs on any x86-64
``avx2``      ``fastconv._kernels._avx2.<name>``    AVX2 + FMA, 32-byte vectors
``avx512``    ``fastconv._kernels._avx512.<name>``  AVX-512 F/VL/BW/DQ, 64-byte vectors, blocks for 32 registers
``avx2x2``    ``fastconv._kernels._avx2x2.<name>``  the avx512 build's 64-byte code path compiled for AVX2 (for
                                                    tests; only the modules with explicit vector code)

At import the best level the CPU runs is chosen (``avx2x2`` never is: it is slower than ``avx2``);
``FASTCONV_SIMD=avx512|avx2|baseline`` (or ``avx2x2``) forces one.  A level the CPU cannot run falls back, with a
warning, to the best one it can.  A module missing from a level (not built there) comes from the next lower level.
Code holds kernels as ``_direct = _kernels.module("_direct")``, a stand-in that follows the level in use;
:func:`use_level` switches it temporarily (tests and benchmarks compare levels in one process).

The one way into the kernels: every kernel module cimports ``common.pxd`` (float types, the window ``Geometry``
struct, the SIMD vector types and register-block sizes of ``simd.h``, per-thread scratch, the row gather); kernels
work on C-contiguous arrays with 3 spatial dims (:func:`as_5d`, :func:`as_4d`), take their window as one
``Geometry`` struct (``ConvGeometry.kernel_struct``, ``PoolGeometry.kernel_struct``) and their other scalars by
keyword, write into a preallocated ``out`` and release the GIL.
"""
import contextlib
import importlib
import os
import warnings

SPINCOUNT = "10000"

# Idle OpenMP threads spin briefly, then sleep (unless the user chose a policy): GOMP_SPINCOUNT=10000 is a few
# tenths of a millisecond, long enough to bridge the Python between two kernel calls of a training step (waking a
# sleeping thread costs 0.1-0.2 ms on a virtual machine, more than a small kernel's whole run), short enough to
# leave the cores to the BLAS and FFT calls and the other processes that follow (libgomp's default, 300000,
# spins for tens of milliseconds).  Set before the first kernel module loads libgomp, which reads it once.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", SPINCOUNT)


def _not_built_message():
    """The one line that explains why the compiled kernels cannot be imported."""
    here = os.path.dirname(os.path.abspath(__file__))
    checkout = os.path.dirname(os.path.dirname(here))
    if os.path.exists(os.path.join(checkout, "setup.py")):
        return ("fastconv is imported from a source checkout whose kernels are not built (%s): run `pip install .` "
                "(and start Python outside the checkout) or build in place with `pip install -e .`" % checkout)
    return "fastconv's compiled kernels are missing from %s: reinstall fastconv" % here


try:
    from . import _cpu  # noqa: E402
except ImportError as exc:  # the package's .py files without their compiled extension modules
    if "_cpu" not in str(exc):
        raise
    raise ImportError(_not_built_message()) from None

try:
    from . import _build_config as build_config
except ImportError:  # pragma: no cover - only when setup.py never ran
    build_config = None

__all__ = ["LEVELS", "load", "module", "use_level", "level", "cpu_levels", "simd_level", "vector_bytes", "as_5d",
           "as_4d"]

# Levels users can ask for, fastest first, and the test level.
LEVELS = ("avx512", "avx2", "baseline")
TEST_LEVELS = ("avx2x2",)
_PACKAGES = {"baseline": "fastconv._kernels", "avx2": "fastconv._kernels._avx2",
             "avx512": "fastconv._kernels._avx512", "avx2x2": "fastconv._kernels._avx2x2"}
_FALLBACK = {"avx512": "avx2", "avx2x2": "avx2", "avx2": "baseline", "baseline": None}
_CPU_RUNS = {"avx512": _cpu.cpu_has_avx512, "avx2": _cpu.cpu_has_avx2_fma, "avx2x2": _cpu.cpu_has_avx2_fma,
             "baseline": lambda: True}
ENV = "FASTCONV_SIMD"

_modules = {}


def _import(level, name):
    """The module ``name`` built for exactly ``level``, or None."""
    key = (level, name)
    if key not in _modules:
        if level != "baseline":
            # Every build is the same generated C file, which registers itself in sys.modules under the
            # baseline name when that is still free: import the baseline first so the name stays its own.
            _import("baseline", name)
        try:
            _modules[key] = importlib.import_module(_PACKAGES[level] + "." + name)
        except ImportError:
            _modules[key] = None
    return _modules[key]


def _built(level):
    return _import(level, "_cpu") is not None


def cpu_levels():
    """The levels that are built and that this CPU can run, fastest first (the test level ``avx2x2`` last but
    one, before ``baseline``)."""
    order = LEVELS[:-1] + TEST_LEVELS + LEVELS[-1:]
    return tuple(lv for lv in order if _built(lv) and _CPU_RUNS[lv]())


def _default_level():
    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    valid = ("auto",) + LEVELS + TEST_LEVELS
    if choice not in valid:
        raise ValueError("%s must be one of %s, got %r" % (ENV, "|".join(valid), choice))
    runnable = cpu_levels()
    if choice == "auto":
        return next(lv for lv in runnable if lv not in TEST_LEVELS)
    if choice in runnable:
        return choice
    # fall back along the chain to a level this machine has
    lv = _FALLBACK[choice]
    while lv not in runnable:
        lv = _FALLBACK[lv]
    warnings.warn("%s=%s: this CPU or build cannot run it; using %s" % (ENV, choice, lv), RuntimeWarning,
                  stacklevel=3)
    return lv


_state = {"level": None}


def level():
    """The SIMD level in use (``"avx512"``, ``"avx2"``, ``"baseline"`` or the test level ``"avx2x2"``)."""
    if _state["level"] is None:
        _state["level"] = _default_level()
    return _state["level"]


def load(name, level_=None):
    """The kernel module ``name`` (e.g. ``"_direct"``) of ``level_`` (default: the level in use); a module not
    built for that level comes from the next lower one."""
    lv = level() if level_ is None else level_
    if lv not in _PACKAGES:
        raise ValueError("unknown SIMD level %r; choose from %s" % (lv, ", ".join(LEVELS + TEST_LEVELS)))
    while lv is not None:
        mod = _import(lv, name)
        if mod is not None:
            return mod
        lv = _FALLBACK[lv]
    raise ImportError("fastconv kernel module %s is not built (run `python setup.py build_ext --inplace`)" % name)


_current = {}     # name -> module of the level in use (cleared by use_level)


class _KernelModule:
    """``module("_direct")``: stands for the ``_direct`` module of the level in use; attribute access goes to it."""

    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        mod = _current.get(self._name)
        if mod is None:
            mod = _current[self._name] = load(self._name)
        return getattr(mod, attr)

    def __repr__(self):
        return "<fastconv kernel module %s (%s)>" % (self._name, level())


def module(name):
    """A stand-in for the kernel module ``name`` that follows the SIMD level in use (see :func:`use_level`)."""
    return _KernelModule(name)


@contextlib.contextmanager
def use_level(level_):
    """Run the block with the kernels of ``level_`` (process-wide; for tests and benchmarks comparing levels).

    Raises ValueError for a level that is not built or that this CPU cannot run."""
    if level_ not in cpu_levels():
        raise ValueError("SIMD level %r is not available here (built and runnable: %s)"
                         % (level_, ", ".join(cpu_levels())))
    saved = level()
    _state["level"] = level_
    _current.clear()
    try:
        yield
    finally:
        _state["level"] = saved
        _current.clear()


def shape_5d(shape):
    """The (N, C, D, H, W) shape of an (N, C, *spatial) shape with 1-3 spatial dims."""
    return tuple(shape[:2]) + (1,) * (5 - len(shape)) + tuple(shape[2:])


def as_5d(a):
    """View an (N, C, *spatial) array with 1-3 spatial dims as (N, C, D, H, W)."""
    return a.reshape(shape_5d(a.shape))


def as_4d(a):
    """View an (N, C, *spatial) array with 1-3 spatial dims as (N*C, D, H, W) planes."""
    return a.reshape((a.shape[0] * a.shape[1],) + (1,) * (5 - a.ndim) + a.shape[2:])


def simd_level():
    """The instruction set of the kernel modules in use ("avx512", "avx2+fma", "sse2", ...)."""
    return load("_cpu").compiled_simd()


def vector_bytes():
    """The vector width of the kernel modules in use (32 or 64 bytes)."""
    return load("_cpu").vector_bytes()
