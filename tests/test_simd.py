"""The SIMD builds: every level this CPU can run computes the same results.

The whole suite runs at the default level (the best one the CPU has).  These tests run the kernels again at every
other level that is built and runnable here -- avx512 on AVX-512 machines, avx2, the ``avx2x2`` test build of the
64-byte code path (AVX-512 block sizes, compiled for AVX2, so it runs on any AVX2 machine) and the SSE2 baseline --
on small problems that cross every register-block boundary.  The levels with FMA give bitwise identical results
(the summation order does not depend on the block sizes); the baseline has no FMA and is compared with a
tolerance.
"""
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest

import fastconv as fc
import reference as ref
from fastconv import _kernels, filters
from fastconv._algos import winograd

LEVELS = _kernels.cpu_levels()
OTHER = [lv for lv in LEVELS if lv != _kernels.level()]
FMA_LEVELS = [lv for lv in LEVELS if lv != "baseline"]
TOL = {np.float32: 1e-4, np.float64: 1e-11}

# (N, C, K, groups, spatial, kernel, stride, padding, dilation): output channels on both sides of the 32-channel
# (float32, 64-byte) and 16-channel (32-byte) blocks, widths with tails of every block width, mode 1 with 1, 2
# and 4 channels per group, stride, dilation, 1-D and 3-D.
GRID = [
    (2, 5, 40, 1, (6, 29), (3, 2), 1, 1, 1),
    (1, 6, 33, 3, (5, 27), (2, 3), (1, 2), (1, 0), (1, 2)),
    (1, 4, 4, 4, (7, 41), (3, 3), 1, 1, 1),               # depthwise: mode 1, 1 channel per group
    (1, 4, 8, 4, (5, 37), (3, 3), 2, 1, 1),               # mode 1, 2 channels per group
    (2, 3, 12, 3, (4, 35), (1, 3), 1, (0, 1), 1),         # mode 1, 4 channels per group
    (2, 3, 70, 1, (31,), (4,), 2, 2, 1),
    (1, 2, 9, 1, (3, 4, 26), (2, 2, 3), 1, 1, (1, 1, 2)),
]
CONV = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
GRAD_IN = {1: fc.grad.conv1d_input, 2: fc.grad.conv2d_input, 3: fc.grad.conv3d_input}
GRAD_W = {1: fc.grad.conv1d_weight, 2: fc.grad.conv2d_weight, 3: fc.grad.conv3d_weight}


def _case(case, dtype, seed=0):
    N, C, K, g, sp, ks, stride, padding, dilation = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C) + sp).astype(dtype)
    w = rng.standard_normal((K, C // g) + ks).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=g)


def _direct_all(case, dtype):
    x, w, b, kw = _case(case, dtype)
    nd = x.ndim - 2
    y = CONV[nd](x, w, b, **kw, algorithm="direct")
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    gx = GRAD_IN[nd](x.shape, w, gy, **kw, algorithm="direct")
    gw = GRAD_W[nd](x, w.shape, gy, **kw, algorithm="direct")
    return (x, w, b, kw, gy), (y, gx, gw)


def _close(got, want, dtype):
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale)


def test_levels_found():
    assert LEVELS[-1] == "baseline"
    assert _kernels.level() == next(lv for lv in LEVELS if lv not in _kernels.TEST_LEVELS)
    if _kernels._cpu.cpu_has_avx2_fma() and getattr(_kernels.build_config, "AVX2_VARIANT", False):
        assert "avx2" in LEVELS
    if _kernels._cpu.cpu_has_avx512() and getattr(_kernels.build_config, "AVX512_VARIANT", False):
        assert LEVELS[0] == "avx512" and "avx2x2" in LEVELS
    expect = {"avx512": ("avx512", 64), "avx2": ("avx2+fma", 32), "avx2x2": ("avx2+fma", 64),
              "baseline": ("sse2", 32)}
    for lv in LEVELS:
        with _kernels.use_level(lv):
            assert (_kernels.simd_level(), _kernels.vector_bytes()) == expect[lv]
            assert _kernels.load("_direct").vector_bytes() == expect[lv][1]
    assert _kernels.level() == LEVELS[0]


def test_info_reports_the_level():
    d = fc.info(print_=False)
    assert d["simd_level"] == _kernels.level()
    assert d["simd"] == _kernels.simd_level()
    assert d["vector_bytes"] in (32, 64)
    assert list(d["simd_levels"]) == [lv for lv in LEVELS if lv not in _kernels.TEST_LEVELS]


def test_use_level_rejects_unknown_levels():
    with pytest.raises(ValueError, match="not available"):
        with _kernels.use_level("avx1024"):
            pass
    with pytest.raises(ValueError, match="unknown SIMD level"):
        _kernels.load("_direct", "sse9")


# depthwise weight gradients of kernels three taps wide, 1 to 5 rows: the kernel rows accumulated at once come
# in groups of 3 (64-byte vectors) or 2 (32-byte), so these heights make every split (3 + 1, 3 + 2, 2 + 2 + 1);
# padding 2 makes band rows of zeros at the top and bottom, widths 21 and 37 partial lane groups
ROWS_GRID = [(2, 3, 3, 3, (9, 21), (kh, 3), 1, (2, 1), 1) for kh in (1, 2, 3, 4, 5)] + [
    (1, 2, 2, 2, (11, 37), (4, 3), (2, 1), 2, (2, 1)),
    (2, 2, 4, 2, (8, 19), (5, 3), 1, (1, 0), 1),           # 2 output channels per group
]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_weight_gradient_rows_at_every_level(level, dtype):
    """The depthwise weight gradient's several-kernel-row accumulation, against the reference and bitwise across
    the levels with FMA (the same products summed in the same order at every level)."""
    for case in ROWS_GRID:
        x, w, _, kw = _case(case, dtype)
        gy = np.random.default_rng(2).standard_normal(fc.ConvGeometry.make(
            x.shape, w.shape, kw["stride"], kw["padding"], kw["dilation"], kw["groups"]).output_shape).astype(dtype)
        default = GRAD_W[2](x, w.shape, gy, **kw, algorithm="direct")
        with _kernels.use_level(level):
            got = GRAD_W[2](x, w.shape, gy, **kw, algorithm="direct")
        if level in FMA_LEVELS and _kernels.level() in FMA_LEVELS:
            assert np.array_equal(got, default), (level, case)
        _close(got, ref.conv_grad_weight_nd(x, gy, w.shape, **kw), dtype)


@pytest.mark.parametrize("level", OTHER)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_at_every_level(level, dtype):
    """Forward, input and weight gradient of ``direct`` at another level: against the reference, and bitwise
    against the default level where both have FMA."""
    for case in GRID:
        (x, w, b, kw, gy), default = _direct_all(case, dtype)
        with _kernels.use_level(level):
            (_, _, _, _, _), got = _direct_all(case, dtype)
        if level in FMA_LEVELS and _kernels.level() in FMA_LEVELS:
            for a, d in zip(got, default):
                assert np.array_equal(a, d), (level, case)
        _close(got[0], ref.conv_nd(x, w, b, **kw), dtype)
        _close(got[1], ref.conv_grad_input_nd(x.shape, w, gy, **kw), dtype)
        _close(got[2], ref.conv_grad_weight_nd(x, gy, w.shape, **kw), dtype)


@pytest.mark.parametrize("level", OTHER)
def test_filters_at_every_level(level):
    rng = np.random.default_rng(2)
    img = rng.random((37, 301)).astype(np.float32)
    kern = rng.standard_normal((4, 7)).astype(np.float32)

    def run():
        return (filters.gaussian(img, 1.5, mode="reflect"), filters.sobel(img),
                filters.correlate(img, kern, mode="wrap"), filters.gaussian(img.astype(np.float64), 2.0),
                filters.gaussian(rng.random((3, 5)), 1.0))

    default = run()
    rng = np.random.default_rng(2)
    img = rng.random((37, 301)).astype(np.float32)
    kern = rng.standard_normal((4, 7)).astype(np.float32)
    with _kernels.use_level(level):
        got = run()
    for a, d in zip(got, default):
        if level in FMA_LEVELS and _kernels.level() in FMA_LEVELS:
            assert np.array_equal(a, d)
        else:
            np.testing.assert_allclose(a, d, rtol=1e-5, atol=1e-6)
    from scipy import ndimage
    np.testing.assert_allclose(got[2], ndimage.correlate(img, kern, mode="wrap"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("level", OTHER)
def test_pooling_fft_toeplitz_at_every_level(level):
    """The modules without explicit vector code (compiled per level with auto-vectorisation)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 19, 23)).astype(np.float32)
    w = rng.standard_normal((5, 3, 4, 3)).astype(np.float32)

    def run():
        y, idx = fc.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
        return (y, idx, fc.avg_pool2d(x, (2, 3)), fc.conv2d(x, w, padding=1, algorithm="fft"),
                fc.conv2d(x, w, padding=1, algorithm="toeplitz"))

    default = run()
    with _kernels.use_level(level):
        got = run()
    np.testing.assert_array_equal(got[0], default[0])
    np.testing.assert_array_equal(got[1], default[1])
    for a, d in zip(got[2:], default[2:]):
        if level in FMA_LEVELS and _kernels.level() in FMA_LEVELS:
            assert np.array_equal(a, d)
        else:
            np.testing.assert_allclose(a, d, rtol=1e-5, atol=1e-5)
    _close(got[3], ref.conv_nd(x, w, padding=1), np.float32)


def _run_env(code, **env):
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(fc.__file__)))
    full = dict(os.environ, PYTHONPATH=pkg_root, **env)
    # not from the repository root: "python -c" puts the cwd first on sys.path, and the checkout CI runs the suite
    # from is not built (the installed package is under test)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                          cwd=tempfile.gettempdir())


def test_environment_variable_forces_a_level():
    code = ("import fastconv as fc, fastconv._kernels as k; d = fc.info(print_=False);"
            "print(d['simd_level'], d['simd'], k.load('_direct').vector_bytes())")
    want = "baseline sse2 32" if "avx2" not in LEVELS else "avx2 avx2+fma 32"
    res = _run_env(code, FASTCONV_SIMD="avx2" if "avx2" in LEVELS else "baseline")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == want.split()
    bad = _run_env(code, FASTCONV_SIMD="avx3")
    assert bad.returncode != 0 and "FASTCONV_SIMD must be one of" in bad.stderr


def test_unavailable_level_falls_back_with_a_warning(monkeypatch):
    monkeypatch.setenv("FASTCONV_SIMD", "avx512")
    monkeypatch.setitem(_kernels._CPU_RUNS, "avx512", lambda: False)
    with pytest.warns(RuntimeWarning, match="cannot run it; using"):
        lv = _kernels._default_level()
    assert lv == ("avx2" if "avx2" in LEVELS else "baseline")
    monkeypatch.setenv("FASTCONV_SIMD", "auto")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _kernels._default_level() != "avx512"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plans_follow_the_level(dtype):
    """A geometry planned at one level and run again at a level of other vector lanes gets that level's plan: the
    Winograd and small-tile FFT plans size their blocks of tiles in lanes (images are the lanes in batch mode), and
    a plan cached for 8-lane vectors once gave wrong outputs at 16 lanes (16 images of 14 x 14)."""
    by_lanes = {}
    for lv in LEVELS:
        with _kernels.use_level(lv):
            by_lanes.setdefault(_kernels.vector_bytes(), lv)
    if len(by_lanes) < 2:
        pytest.skip("one vector width runs here")
    rng = np.random.default_rng(11)
    xs, ws = (16, 3, 14, 14), (6, 3, 3, 3)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    gy = rng.standard_normal(fc.conv_output_shape(xs, ws)).astype(dtype)
    want = [ref.conv_nd(x, w), ref.conv_grad_input_nd(xs, w, gy), ref.conv_grad_weight_nd(x, gy, ws)]
    tol = 3e-4 if dtype == np.float32 else 1e-11
    levels = list(by_lanes.values())
    for order in (levels, levels[::-1]):
        winograd._cached_plan.cache_clear()
        winograd._fft_plan.cache_clear()
        for lv in order:
            with _kernels.use_level(lv):
                for alg in ("winograd", "fft_tiles"):
                    got = [fc.conv2d(x, w, algorithm=alg), fc.grad.conv2d_input(xs, w, gy, algorithm=alg),
                           fc.grad.conv2d_weight(x, ws, gy, algorithm=alg)]
                    for a, r in zip(got, want):
                        np.testing.assert_allclose(a, r, rtol=0, atol=tol * max(1.0, float(np.abs(r).max())),
                                                   err_msg="%s at %s after %s" % (alg, lv, order))


@pytest.mark.parametrize("level", OTHER)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_fft_tiles_at_every_level(level, dtype):
    """winograd and fft_tiles (explicit vector code over tiles or images): bitwise against the default level at the
    same vector width; at another width their blocks of tiles (or images) are counted in other lanes (other GEMM
    blocks), so the last bits may differ there -- compared against the reference within the documented bound."""
    rng = np.random.default_rng(4)
    cases = [((2, 5, 13, 17), (7, 5, 3, 3), dict(padding=1)),
             ((3, 4, 9, 10), (6, 4, 5, 5), dict(padding=2, stride=2)),
             ((16, 3, 14, 14), (6, 3, 3, 3), {})]
    for xs, ws, kw in cases:
        x = rng.standard_normal(xs).astype(dtype)
        w = rng.standard_normal(ws).astype(dtype)
        gy = rng.standard_normal(fc.conv_output_shape(xs, ws, **kw)).astype(dtype)

        def run():
            return [f(algorithm=alg) for alg in ("winograd", "fft_tiles") for f in (
                lambda algorithm: fc.conv2d(x, w, **kw, algorithm=algorithm),
                lambda algorithm: fc.grad.conv2d_input(x.shape, w, gy, **kw, algorithm=algorithm),
                lambda algorithm: fc.grad.conv2d_weight(x, w.shape, gy, **kw, algorithm=algorithm))]

        default = run()
        with _kernels.use_level(level):
            got = run()
            width = _kernels.vector_bytes()
        same = (level in FMA_LEVELS and _kernels.level() in FMA_LEVELS and width == _kernels.vector_bytes())
        want = [ref.conv_nd(x, w, **kw), ref.conv_grad_input_nd(x.shape, w, gy, **kw),
                ref.conv_grad_weight_nd(x, gy, w.shape, **kw)] * 2
        for a, d, r in zip(got, default, want):
            if same:
                assert np.array_equal(a, d), (level, xs)
            scale = max(1.0, float(np.abs(r).max()))
            np.testing.assert_allclose(a, r, rtol=0, atol=(3e-4 if dtype == np.float32 else 1e-11) * scale)


@pytest.mark.parametrize("level", OTHER)
def test_ndimage_at_every_level(level):
    """fastconv.ndimage reproduces scipy.ndimage bit for bit at every level (its module is compiled without
    contracting multiplies and adds)."""
    from scipy import ndimage as sn
    from fastconv import ndimage as ndi
    img = np.random.default_rng(5).random((40, 53))
    with _kernels.use_level(level):
        got = (ndi.gaussian_filter(img, 2.0), ndi.uniform_filter(img, 5), ndi.median_filter(img, 3),
               ndi.correlate(img, np.arange(12.0).reshape(3, 4) - 5, mode="wrap"))
    want = (sn.gaussian_filter(img, 2.0), sn.uniform_filter(img, 5), sn.median_filter(img, 3),
            sn.correlate(img, np.arange(12.0).reshape(3, 4) - 5, mode="wrap"))
    for a, b in zip(got, want):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_abs_at_every_level(dtype):
    """direct's max_abs (simd.h's pass behind auto's check and the kernels' inf/NaN checks) at every level: vectors
    of the instruction set's own width, two per step, and a scalar tail; lengths around those boundaries, an inf
    or NaN at the first, a middle and the last element, unaligned starts."""
    rng = np.random.default_rng(5)
    for lv in LEVELS:
        with _kernels.use_level(lv):
            kern = _kernels.module("_direct")
            for n in (1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 1000, 70001):
                a = (rng.standard_normal(n + 1) * 10).astype(dtype)[1:]      # starts off a 64-byte boundary
                want = float(np.abs(a).max())
                for nt in (1, 2):
                    assert kern.max_abs(a, nt) == want, (lv, n)
                for pos in {0, n // 2, n - 1}:
                    for bad in (np.inf, -np.inf, np.nan):
                        b = a.copy()
                        b[pos] = bad
                        assert kern.max_abs(b, 2) == np.inf, (lv, n, pos, bad)
