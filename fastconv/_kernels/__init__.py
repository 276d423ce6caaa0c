"""Compiled kernels and the choice between their baseline and AVX2+FMA builds.

Each kernel module exists twice (see setup.py): ``fastconv._kernels.<name>`` for any x86-64 CPU and
``fastconv._kernels._avx2.<name>`` compiled with ``-mavx2 -mfma``.  :func:`load` returns the AVX2 build when the
CPU supports it, unless ``FASTCONV_SIMD=baseline`` asks for the portable one.

The one way into the kernels: every kernel module cimports ``common.pxd`` (float types, the window ``Geometry``
struct, the SIMD vector types, per-thread scratch); kernels work on C-contiguous arrays with 3 spatial dims
(:func:`as_5d`, :func:`as_4d`), take their window as one ``Geometry`` struct (``ConvGeometry.kernel_struct``,
``PoolGeometry.kernel_struct``) and their other scalars by keyword, write into a preallocated ``out`` and
release the GIL.
"""
import importlib
import os

# Idle OpenMP threads sleep instead of spinning (unless the user chose otherwise): fastconv alternates OpenMP
# regions with BLAS and FFT calls that need the same cores, and spinning threads would take them away.  Set before
# the first kernel module loads libgomp, which reads it once.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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

_cache = {}


def _want_avx2():
    choice = os.environ.get("FASTCONV_SIMD", "auto").strip().lower()
    if choice not in ("auto", "avx2", "baseline"):
        raise ValueError("FASTCONV_SIMD must be 'auto', 'avx2' or 'baseline', got %r" % choice)
    if choice == "baseline":
        return False
    return _cpu.cpu_has_avx2_fma()


def load(name):
    """Return the kernel module ``name`` (e.g. ``"_direct"``) built for the best SIMD level available."""
    mod = _cache.get(name)
    if mod is None:
        mod = None
        if _want_avx2():
            try:
                mod = importlib.import_module("fastconv._kernels._avx2." + name)
            except ImportError:
                mod = None
        if mod is None:
            mod = importlib.import_module("fastconv._kernels." + name)
        _cache[name] = mod
    return mod


def as_5d(a):
    """View an (N, C, *spatial) array with 1-3 spatial dims as (N, C, D, H, W)."""
    return a.reshape(a.shape[:2] + (1,) * (5 - a.ndim) + a.shape[2:])


def as_4d(a):
    """View an (N, C, *spatial) array with 1-3 spatial dims as (N*C, D, H, W) planes."""
    return a.reshape((a.shape[0] * a.shape[1],) + (1,) * (5 - a.ndim) + a.shape[2:])


def simd_level():
    """The SIMD level of the kernel modules in use ("avx2+fma", "sse2", ...)."""
    return load("_cpu").compiled_simd()
