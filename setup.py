"""Build script for fastconv's Cython kernels.

Every ``fastconv/_kernels/*.pyx`` file is compiled once per SIMD level from the same generated C file:

* ``fastconv._kernels.<name>``          -- baseline x86-64 (SSE2) code that runs on any CPU;
* ``fastconv._kernels._avx2.<name>``    -- ``-mavx2 -mfma``, 32-byte vectors;
* ``fastconv._kernels._avx512.<name>``  -- ``-mavx512f -mavx512vl -mavx512bw -mavx512dq``, 64-byte vectors and
  register blocks sized for 32 vector registers;
* ``fastconv._kernels._avx2x2.<name>``  -- the 64-byte code path compiled for AVX2 (every vector a pair of YMM
  registers), only for the modules with explicit vector code (``VECTOR_MODULES``): it lets the test suite run
  the AVX-512 build's code on any AVX2 machine.

The vector width reaches the kernels as ``-DFC_VECTOR_BYTES`` (see ``fastconv/_kernels/simd.h``).  At import time
``fastconv._kernels`` checks the CPU (``__builtin_cpu_supports``) and loads the best level it can run, so one
wheel is fast on modern CPUs and still correct on old ones.

OpenMP is detected by compiling a tiny test program with ``-fopenmp``; without it the kernels build and run
serially (``fastconv.info()`` reports which).

Environment variables:

``FASTCONV_NATIVE=1``     compile the baseline variant with ``-march=native`` as well (not portable; no other levels).
``FASTCONV_NO_OPENMP=1``  build without OpenMP even if the compiler has it.
``FASTCONV_DEBUG=1``      Cython bounds/wraparound/initialisation checks on, ``-O1 -g``, no SIMD variants.
``FASTCONV_SANITIZE=address``  add ``-fsanitize=address`` (implies FASTCONV_DEBUG; see docs/reliability).
``FASTCONV_ONLY=a,b``     developer builds: compile only the named kernel modules.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
KERNEL_DIR = Path("fastconv") / "_kernels"


def _flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


SANITIZE = os.environ.get("FASTCONV_SANITIZE", "").strip()
DEBUG = _flag("FASTCONV_DEBUG") or bool(SANITIZE)
NATIVE = _flag("FASTCONV_NATIVE")


def _compiler_has_openmp():
    """Compile and link a tiny OpenMP program with the configured C compiler."""
    if _flag("FASTCONV_NO_OPENMP"):
        return False
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    src = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
    with tempfile.TemporaryDirectory() as tmp:
        c_file = Path(tmp) / "t.c"
        c_file.write_text(src)
        try:
            res = subprocess.run(cc + ["-fopenmp", str(c_file), "-o", str(Path(tmp) / "t")],
                                 capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return False
        return res.returncode == 0


def _compiler_accepts(flags):
    """True when the configured C compiler builds a tiny program with ``flags``."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    with tempfile.TemporaryDirectory() as tmp:
        c_file = Path(tmp) / "t.c"
        c_file.write_text("typedef float v __attribute__((vector_size(64)));\n"
                          "v f(v a, v b, v c) { return a * b + c; }\nint main(void) { return 0; }\n")
        try:
            res = subprocess.run(cc + flags + [str(c_file), "-o", str(Path(tmp) / "t")],
                                 capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return False
        return res.returncode == 0


def _is_x86():
    import platform
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")


OPENMP = _compiler_has_openmp()
OMP_FLAGS = ["-fopenmp"] if OPENMP else []

if DEBUG:
    BASE_CFLAGS = ["-O1", "-g", "-fno-omit-frame-pointer"]
else:
    BASE_CFLAGS = ["-O3", "-ffp-contract=fast", "-fno-math-errno"]
if NATIVE:
    BASE_CFLAGS.append("-march=native")
SAN_FLAGS = ["-fsanitize=" + SANITIZE] if SANITIZE else []
AVX2_FLAGS = ["-mavx2", "-mfma"]
AVX512_FLAGS = ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mavx2", "-mfma",
                "-mprefer-vector-width=512"]
BUILD_AVX2 = _is_x86() and not DEBUG and not NATIVE
BUILD_AVX512 = BUILD_AVX2 and _compiler_accepts(AVX512_FLAGS)
# Modules written with explicit GCC vector types: only these differ between 32- and 64-byte vector builds, so
# only these get the AVX2 build of the 64-byte code path that tests it on machines without AVX-512.
VECTOR_MODULES = {"_cpu", "_direct", "_depthwise", "_filter", "_lanes", "_winograd"}
# Modules without numerical kernels (the NumPy memory handler): built once, at the baseline level.
BASE_ONLY = {"_memory"}
# (package, compile flags, vector bytes, modules or None for all) of each SIMD variant beyond the baseline
VARIANTS = ([("_avx2", AVX2_FLAGS, 32, None)] if BUILD_AVX2 else []) + \
    ([("_avx512", AVX512_FLAGS, 64, None), ("_avx2x2", AVX2_FLAGS, 64, VECTOR_MODULES)] if BUILD_AVX512 else [])

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "nonecheck": DEBUG,
    "embedsignature": True,
}


# Per-module compiler flags, appended after the common ones.  _ndi reproduces scipy.ndimage's float64 arithmetic
# bit for bit, so the compiler must not fuse its multiplies and adds.
MODULE_CFLAGS = {"_ndi": ["-ffp-contract=off"]}


def _kernel_sources():
    only = {s.strip() for s in os.environ.get("FASTCONV_ONLY", "").split(",") if s.strip()}
    pyx = sorted(KERNEL_DIR.glob("*.pyx"))
    return [p for p in pyx if not only or p.stem in only]


def _extensions():
    common = dict(
        include_dirs=[np.get_include(), str(KERNEL_DIR)],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("FASTCONV_OPENMP", "1" if OPENMP else "0")],
        extra_link_args=OMP_FLAGS + SAN_FLAGS,
    )
    headers = [str(h) for h in sorted(KERNEL_DIR.glob("*.h"))]     # C headers the kernels include
    base = [Extension("fastconv._kernels." + p.stem, [str(p)],
                      extra_compile_args=BASE_CFLAGS + MODULE_CFLAGS.get(p.stem, []) + OMP_FLAGS + SAN_FLAGS,
                      **dict(common, depends=headers,
                             define_macros=common["define_macros"] + [("FC_VECTOR_BYTES", "32")]))
            for p in _kernel_sources()]
    base = cythonize(base, compiler_directives=DIRECTIVES, include_path=[".", str(KERNEL_DIR)],
                     compile_time_env={"FASTCONV_OPENMP": OPENMP}, quiet=True,
                     nthreads=min(os.cpu_count() or 1, len(base)))
    # Each variant compiles the very same generated C file with other flags.  A one-line wrapper gives it its
    # own path (so object files do not collide); its init symbol PyInit_<name> matches the module's last name
    # component, so it imports as fastconv._kernels.<variant>.<name>.
    wrap_dir = HERE / "build" / "simd_src"
    wrap_dir.mkdir(parents=True, exist_ok=True)
    variants = []
    for package, flags, vec_bytes, modules in VARIANTS:
        for ext in base:
            stem = ext.name.rsplit(".", 1)[1]
            if stem in BASE_ONLY or (modules is not None and stem not in modules):
                continue
            c_src = (HERE / ext.sources[0]).resolve()
            wrapper = wrap_dir / (stem + package + ".c")
            text = '#include "%s"\n' % c_src.as_posix()
            if not wrapper.exists() or wrapper.read_text() != text:
                wrapper.write_text(text)
            kw = dict(common, define_macros=common["define_macros"] + [("FC_VECTOR_BYTES", str(vec_bytes))],
                      depends=[str(c_src)] + headers)
            cflags = BASE_CFLAGS + flags + MODULE_CFLAGS.get(stem, []) + OMP_FLAGS
            variants.append(Extension("fastconv._kernels.%s.%s" % (package, stem),
                                      [str(wrapper.relative_to(HERE))], extra_compile_args=cflags, **kw))
    return base + variants


class BuildExt(build_ext):
    """Compile extensions in parallel on all cores unless -j was given."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1


def _write_build_config():
    cfg = KERNEL_DIR / "_build_config.py"
    text = ('"""Written by setup.py at build time."""\n'
            "OPENMP = %r\nAVX2_VARIANT = %r\nAVX512_VARIANT = %r\nNATIVE = %r\nDEBUG = %r\nSANITIZE = %r\n"
            % (OPENMP, BUILD_AVX2, BUILD_AVX512, NATIVE, DEBUG, SANITIZE))
    if not cfg.exists() or cfg.read_text() != text:
        cfg.write_text(text)


if "clean" in sys.argv:
    shutil.rmtree(HERE / "build" / "simd_src", ignore_errors=True)

_write_build_config()
setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
