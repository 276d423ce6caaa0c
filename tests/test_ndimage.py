"""fastconv.ndimage against scipy.ndimage (1.17): same results, dtypes, errors.

float64 results and integer outputs must be bit-identical (fastconv computes them in scipy's own float64
operation order); float32 images run on the float32 engine and must agree to 1e-5 of the largest value; minimum,
maximum and rank filters are exact for every dtype.
"""
import doctest
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
import scipy.ndimage as sndi

import fastconv
from fastconv import ndimage as fndi
from fastconv.ndimage import _filters as ndi_filters
from fastconv.ndimage import _networks

skdata = pytest.importorskip("skimage.data")

MODES = ["reflect", "constant", "nearest", "mirror", "wrap", "grid-mirror", "grid-constant", "grid-wrap"]
BASE = ["reflect", "constant", "nearest", "mirror", "wrap"]
ORDER = {"minimum_filter", "maximum_filter", "minimum_filter1d", "maximum_filter1d", "median_filter", "rank_filter",
         "percentile_filter"}


def camera(n=96):
    return np.ascontiguousarray(skdata.camera()[200:200 + n, 150:150 + n + 13])


def volume():
    r = np.random.default_rng(3)
    return r.standard_normal((9, 14, 71)).cumsum(axis=2)


def check(name, img, *args, **kw):
    expected = getattr(sndi, name)(img, *args, **kw)
    got = getattr(fndi, name)(img, *args, **kw)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if img.dtype == np.float32 and name not in ORDER and got.dtype == np.float32:
        scale = max(float(np.abs(expected).max(initial=0)), 1e-30)
        err = float(np.abs(got.astype(np.float64) - expected).max(initial=0)) / scale
        assert err <= 1e-5, "%s: float32 error %.3g" % (name, err)
    else:
        np.testing.assert_array_equal(got, expected, err_msg=name)
    return got


# (function, positional args, keywords): the grid every mode and image type runs through
CALLS = [
    ("correlate1d", ([1.0, -2.5, 0.5, 3.0],), {"origin": 1}),
    ("convolve1d", ([0.2, 0.3, 0.5],), {"axis": 0, "origin": -1}),
    ("correlate", (np.array([[0.5, -1.0, 0.25], [2.0, 0.0, 1.0]]),), {"origin": (0, 1)}),
    ("convolve", (np.array([[1.0, 2.0], [0.5, -1.5], [0.1, 0.2]]),), {"origin": (-1, 0)}),
    ("gaussian_filter", (1.5,), {}),
    ("gaussian_filter", ([0.8, 2.0],), {"order": [1, 2], "truncate": 3.0}),
    ("gaussian_filter1d", (2.0,), {"axis": 0, "order": 1, "radius": 4}),
    ("gaussian_laplace", (1.2,), {}),
    ("gaussian_gradient_magnitude", (1.2,), {}),
    ("laplace", (), {}),
    ("sobel", (), {"axis": 0}),
    ("prewitt", (), {}),
    ("uniform_filter", ((4, 3),), {"origin": (1, -1)}),
    ("uniform_filter1d", (6,), {"axis": 0, "origin": -2}),
    ("minimum_filter", ((5, 2),), {"origin": (0, -1)}),
    ("maximum_filter", (), {"footprint": [[1, 0, 1], [0, 1, 1]]}),
    ("minimum_filter1d", (4,), {"origin": 1}),
    ("maximum_filter1d", (7,), {"axis": 0}),
    ("median_filter", (3,), {}),
    ("median_filter", ((5, 5),), {"origin": (1, -2)}),
    ("rank_filter", (2,), {"footprint": [[1, 1, 0], [0, 1, 1], [1, 0, 1]]}),
    ("percentile_filter", (70,), {"size": (3, 4)}),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("call", CALLS, ids=lambda c: c[0] if isinstance(c, tuple) else str(c))
def test_matches_scipy_every_mode_and_dtype(call, mode):
    name, args, kw = call
    cam = camera()
    for img in (cam, cam.astype(np.float64) / 7.0, cam.astype(np.float32) / 7.0, cam.astype(np.int16) - 100):
        check(name, img, *args, mode=mode, cval=2.5, **kw)


@pytest.mark.parametrize("name,args,kw", [
    ("gaussian_filter", (2.0,), {}), ("uniform_filter", (5,), {}), ("maximum_filter", (9,), {}),
    ("minimum_filter", (4,), {}), ("median_filter", (7,), {}), ("median_filter", (5,), {}),
    ("sobel", (), {"axis": 1}), ("correlate", (np.arange(12.0).reshape(3, 4) - 5,), {}),
])
def test_full_camera_and_astronaut(name, args, kw):
    """Whole skimage.data images: camera (uint8, 512 x 512) and astronaut filtered per channel (axes=(0, 1))."""
    cam = skdata.camera()
    check(name, cam, *args, **kw)
    check(name, cam.astype(np.float64), *args, **kw)
    if name not in ("sobel",):
        ast = skdata.astronaut()[::2, ::2]
        kw2 = dict(kw, axes=(0, 1))
        check(name, ast, *args, **kw2)
        check(name, ast.astype(np.float64), *args, **kw2)


@pytest.mark.parametrize("mode", BASE)
def test_volume(mode):
    vol = volume()
    for name, args, kw in [("gaussian_filter", ([1.0, 0.5, 2.0],), {}), ("uniform_filter", ((3, 4, 5),), {}),
                           ("maximum_filter", ((3, 1, 6),), {}), ("median_filter", (3,), {}),
                           ("percentile_filter", (20, (2, 3, 3)), {}), ("sobel", (), {"axis": 1}),
                           ("correlate", (np.random.default_rng(1).standard_normal((2, 3, 2)),), {})]:
        check(name, vol, *args, mode=mode, cval=-1.0, **kw)
        check(name, vol.astype(np.float32), *args, mode=mode, cval=-1.0, **kw)
        check(name, (vol * 20).astype(np.int32), *args, mode=mode, cval=-1.0, **kw)


def test_shapes_that_split_into_strips_bands_and_blocks():
    """Wide rows (several van Herk strips), few rows (one band), 1-D and single-element axes."""
    r = np.random.default_rng(5)
    for shape in [(3, 1500), (700, 5), (1, 40), (40,), (1,), (5, 1, 3)]:
        x = r.standard_normal(shape)
        for name, args in [("maximum_filter", (9,)), ("minimum_filter1d", (33,)), ("uniform_filter", (6,)),
                           ("median_filter", (3,)), ("gaussian_filter", (3.0,))]:
            for mode in BASE:
                if shape == (1,) and name == "median_filter" and mode == "mirror":
                    continue      # scipy's 1-D rank filter returns uninitialised memory for one element
                check(name, x, *args, mode=mode)
                check(name, x.astype(np.float32), *args, mode=mode)
        check("maximum_filter", (x * 50).astype(np.uint8), 41, mode="wrap")
        if shape != (1,):
            check("rank_filter", x, -2, 4, mode="mirror")


def test_large_footprints_use_selection():
    r = np.random.default_rng(6)
    x = (r.random((30, 40)) * 1000).astype(np.int64)
    check("median_filter", x, 11)                       # 121 elements: per-output selection
    check("percentile_filter", x.astype(np.float64), 33, footprint=r.random((9, 13)) > 0.2)


def test_output_argument_and_integer_rounding():
    cam = camera()
    for out in (np.float32, "float64", np.dtype(np.int16), np.uint8):
        for name, args in [("gaussian_filter", (1.3,)), ("uniform_filter", (4,)), ("correlate1d", ([0.3, 0.3, 0.3],)),
                           ("sobel", ()), ("maximum_filter", (3,)), ("median_filter", (3,)),
                           ("correlate", (np.full((3, 3), 1 / 9),))]:
            check(name, cam, *args, output=out)
            check(name, cam.astype(np.float32) / 3, *args, output=out)
    # an output array: filled and returned; a non-contiguous view works too
    buf = np.zeros((cam.shape[0], cam.shape[1] * 2), np.float64)
    view = buf[:, ::2]
    res = fndi.gaussian_filter(cam, 2.0, output=view)
    assert res is view
    np.testing.assert_array_equal(view, sndi.gaussian_filter(cam, 2.0, output=np.float64))
    # in place: output is the input
    a = cam.astype(np.float64)
    expected = sndi.uniform_filter(a, 5)
    fndi.uniform_filter(a, 5, output=a)
    np.testing.assert_array_equal(a, expected)
    b = cam.astype(np.float32)
    expected = sndi.maximum_filter(b, 4)
    fndi.maximum_filter(b, 4, output=b)
    np.testing.assert_array_equal(b, expected)


def test_axes_per_axis_modes_and_complex():
    vol = volume()
    check("gaussian_filter", vol, [1.0, 2.0], axes=(2, 0), mode=["wrap", "mirror"])
    check("uniform_filter", vol, 3, axes=(1,), mode=["nearest"])
    check("minimum_filter", vol, (2, 5), axes=(-1, 0), mode=["constant", "reflect"], cval=3.0)
    check("median_filter", vol, footprint=np.ones((3, 2), bool), axes=(0, 2))
    check("correlate", vol, np.array([[1.0, 2.0, -1.0]]), axes=(0, 2))
    check("gaussian_laplace", vol, 1.0, axes=(1, 2))
    z = vol + 1j * vol[::-1]
    check("correlate1d", z, [1.0, 2.0 + 1j, 0.5])
    check("gaussian_filter", z, 1.5)
    check("uniform_filter", z, 3)
    check("convolve", vol, np.array([[[1 + 1j, 2]]]))


def test_non_finite_values_propagate_as_in_scipy():
    x = np.random.default_rng(7).standard_normal((20, 70))
    x[3, 5] = np.nan
    x[10, 60] = np.inf
    x[15, 0] = -np.inf
    for name, args in [("gaussian_filter", (1.0,)), ("correlate1d", ([1.0, 0.0, -1.0],)), ("uniform_filter", (3,)),
                       ("sobel", ()), ("laplace", ()), ("correlate", (np.array([[0.0, 1.0], [1.0, 0.0]]),)),
                       ("prewitt", ())]:
        for mode in BASE:
            check(name, x, *args, mode=mode)
    y = np.random.default_rng(8).standard_normal((20, 70))
    y[3, 5] = np.inf
    y[10, 60] = -np.inf
    for name, args in [("maximum_filter", (3,)), ("minimum_filter", (5,)), ("median_filter", (3,))]:
        check(name, y, *args)
        check(name, y.astype(np.float32), *args)


def test_results_do_not_depend_on_thread_count(monkeypatch):
    monkeypatch.setattr(ndi_filters, "FOOTPRINT_GRAIN", 1)      # these small calls would run on one thread
    vol = volume().astype(np.float32)
    img = (vol.reshape(-1, 71) * 20).astype(np.uint8)
    outs = []
    for n in (1, 2, 3):
        with fastconv.num_threads(n):
            outs.append([fndi.median_filter(vol, 3), fndi.maximum_filter(vol, (2, 3, 9)),
                         fndi.uniform_filter(vol, 4), fndi.gaussian_filter(vol.astype(np.float64), 1.0),
                         fndi.median_filter(vol[0], 3, mode="constant", cval=0.5, origin=(1, -1)),
                         fndi.median_filter(img, 5, mode="wrap"), fndi.rank_filter(vol, 4, (3, 1, 3))])
    for o in outs[1:]:
        for a, b in zip(outs[0], o):
            np.testing.assert_array_equal(a, b)


def test_errors_match_scipy():
    img = camera()
    for call in [lambda m: m.correlate1d(img, [1, 2], origin=1), lambda m: m.uniform_filter1d(img, 0),
                 lambda m: m.maximum_filter(img), lambda m: m.median_filter(img, 3, origin=2),
                 lambda m: m.rank_filter(img, 9, 3), lambda m: m.percentile_filter(img, 120, 3),
                 lambda m: m.gaussian_filter(img, [1, 2, 3]), lambda m: m.uniform_filter(img, 3, mode="bogus"),
                 lambda m: m.correlate(img, np.ones((3, 3)), output=np.zeros((2, 2))),
                 lambda m: m.correlate(img, np.ones(3)), lambda m: m.sobel(img.astype(np.float16)),
                 lambda m: m.minimum_filter(img + 0j, 3), lambda m: m.gaussian_filter1d(img, 1, radius=-1),
                 lambda m: m.correlate(img, np.ones((3, 3)), mode=["reflect", "wrap"])]:
        with pytest.raises(Exception) as exp:
            call(sndi)
        with pytest.raises(type(exp.value)):
            call(fndi)
    with pytest.raises(ValueError), pytest.warns(UserWarning):
        fndi.minimum_filter(img, size=3, footprint=np.zeros((3, 3)))
    assert issubclass(fndi.ArgumentError, ValueError) and issubclass(fndi.UnsupportedTypeError, TypeError)
    src = img.copy()
    fndi.median_filter(src, 3)
    np.testing.assert_array_equal(src, img)          # the input is never modified


# ------------------------------------------------------------------------------------------ scipy's docstrings
DOCTEST_FUNCS = ["correlate", "convolve", "correlate1d", "convolve1d", "gaussian_filter", "gaussian_filter1d",
                 "gaussian_laplace", "gaussian_gradient_magnitude", "laplace", "sobel", "prewitt", "uniform_filter",
                 "uniform_filter1d", "minimum_filter", "maximum_filter", "minimum_filter1d", "maximum_filter1d",
                 "median_filter", "rank_filter", "percentile_filter"]
PLOT = re.compile(r"\bplt\b|\bfig\b|\bax\d*\b|\baxs?\b|\.imshow|\.show\(")


def _examples(name, to_fastconv):
    """scipy's docstring examples of ``name`` (extracted now from the installed scipy), plotting left out,
    the sample image from a local one, random generators seeded; scipy.ndimage replaced by fastconv.ndimage."""
    examples = []
    for ex in doctest.DocTestParser().get_examples(getattr(sndi, name).__doc__ or ""):
        src = ex.source
        if PLOT.search(src) or "import matplotlib" in src:
            continue
        src = src.replace("default_rng()", "default_rng(0)")
        src = re.sub(r"from scipy import ndimage, datasets|from scipy import datasets, ndimage",
                     "from scipy import ndimage", src)
        src = src.replace("from scipy import datasets", "pass")
        if to_fastconv:
            src = src.replace("from scipy.ndimage import", "from fastconv.ndimage import")
            src = src.replace("from scipy import ndimage", "from fastconv import ndimage")
        examples.append(doctest.Example(src, ex.want, lineno=ex.lineno))
    return examples


class _NumericChecker(doctest.OutputChecker):
    """doctest's comparison, or else equal arrays to the printed precision (scipy's docstrings were written with
    numpy's older print spacing: ``array([ 1.42704095, ...])``)."""

    def check_output(self, want, got, optionflags):
        if super().check_output(want, got, optionflags):
            return True
        ns = {"array": np.array, "nan": np.nan, "inf": np.inf, "float32": np.float32, "float64": np.float64,
              "int64": np.int64, "uint8": np.uint8, "dtype": np.dtype}
        try:
            a, b = eval(want, ns), eval(got, ns)      # noqa: S307 - printed numpy reprs from scipy's own docs
        except Exception:
            return False
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and np.allclose(a, b, rtol=1e-7, atol=1e-8, equal_nan=True)


@pytest.mark.parametrize("name", DOCTEST_FUNCS)
def test_scipy_docstring_examples(name):
    """The documented examples of scipy.ndimage's own docstrings give the documented output with
    fastconv.ndimage, and every array they compute equals scipy's."""
    datasets = types.SimpleNamespace(ascent=lambda: skdata.camera()[::4, ::4].astype(np.int64))
    spaces = []
    for to_fastconv in (False, True):
        globs = {"np": np, "datasets": datasets}
        test = doctest.DocTest(_examples(name, to_fastconv), globs, name, None, 0, None)
        runner = doctest.DocTestRunner(checker=_NumericChecker(), verbose=False,
                                       optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
        report = []
        runner.run(test, out=report.append, clear_globs=False)
        assert runner.failures == 0, "".join(report)
        spaces.append(test.globs)
    assert any("fastconv.ndimage" in e.source or "fastconv import" in e.source for e in _examples(name, True))
    ref, got = spaces
    arrays = [k for k, v in ref.items() if isinstance(v, np.ndarray) and not k.startswith("_")]
    for k in arrays:
        np.testing.assert_array_equal(got[k], ref[k], err_msg="%s: %s" % (name, k))


# ------------------------------------------------------------------------------------------------ internals
def test_selection_networks_select_the_rank():
    r = np.random.default_rng(9)
    for n in (1, 2, 5, 9, 27, 49):
        for rank in {0, n // 2, n - 1}:
            net, slot = _networks.selection_network(n, rank)
            v0 = r.integers(0, 5, (n, 64))
            v = np.concatenate([v0, np.zeros((64, 64), int)])
            for a, b, kind in net:
                lo, hi = np.minimum(v[a], v[b]), np.maximum(v[a], v[b])
                if kind != 2:
                    v[a] = lo
                if kind != 1:
                    v[b] = hi
            np.testing.assert_array_equal(v[slot], np.sort(v0, axis=0)[rank])


def test_generated_network_header_is_current():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    gen = os.path.join(here, "fastconv", "_kernels", "gen_networks.py")
    header = os.path.join(here, "fastconv", "_kernels", "_ndi_networks.h")
    code = "import runpy; m = runpy.run_path(%r); print(m['generate'](), end='')" % gen
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    with open(header) as f:
        assert f.read() == out


@pytest.mark.parametrize("name,ndim,args,kw", [
    ("gaussian_filter", 2, (1.5,), {"truncate": 2.0}), ("gaussian_filter", 3, ([1.0, 0.0, 2.0],), {"radius": None}),
    ("gaussian_filter1d", 2, (2.0,), {"axis": 0, "radius": 3}), ("uniform_filter", 2, ((3, 4),), {"origin": (1, -1)}),
    ("maximum_filter", 2, (), {"footprint": np.ones((2, 5)), "origin": (0, 2)}),
    ("median_filter", 3, (3,), {"axes": (0, 2)}), ("correlate", 2, (np.ones((4, 3)),), {"origin": (-2, 1)}),
    ("convolve", 2, (np.ones((4, 3)),), {"origin": (1, 0)}), ("convolve1d", 2, ([1, 2, 3, 4],), {"origin": 1}),
    ("sobel", 2, (), {}), ("gaussian_laplace", 2, (1.0,), {}), ("minimum_filter1d", 3, (5,), {"axis": 1}),
])
def test_filter_halo_is_the_footprint_of_an_impulse(name, ndim, args, kw):
    """Every output element depends on inputs within filter_halo: the support of the response to an impulse."""
    halo = fndi.filter_halo(name, ndim, *args, **kw)
    shape = (17,) * ndim
    x = np.zeros(shape)
    c = tuple(s // 2 for s in shape)
    for sign in (1.0, -1.0):
        x[c] = sign * 1e3
        out = getattr(fndi, name)(x, *args, mode="constant", **kw)
        nz = np.nonzero(np.abs(out) > 0)
        for ax in range(ndim):
            if nz[ax].size:
                # output i reads inputs i - before .. i + after, so the impulse reaches outputs c - after .. c + before
                assert c[ax] - nz[ax].min() <= halo[ax][1] and nz[ax].max() - c[ax] <= halo[ax][0], (ax, halo)
    # and the bound is attained along the filtered axes (the response is as wide as the halo); an impulse of
    # either sign for the minimum/maximum, a box of ones for the median
    x[c] = -1e3 if "minimum" in name else 1e3
    if name == "median_filter":
        x[tuple(slice(i - 3, i + 4) for i in c)] = 1e3
    out = getattr(fndi, name)(x, *args, mode="constant", **kw)
    nz = np.nonzero(out)
    if name == "median_filter":
        return
    assert any(nz[ax].size and (c[ax] - nz[ax].min() == halo[ax][1] or nz[ax].max() - c[ax] == halo[ax][0])
               for ax in range(ndim) if halo[ax] != (0, 0)) or all(h == (0, 0) for h in halo)


@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "wrap", "constant", "grid-wrap", "grid-constant"])
def test_float32_box_over_two_axes_in_one_sweep(mode):
    """A float32 uniform_filter over the last two axes runs in one sweep (_ndi.box2d): bitwise the values of the
    two separate passes, for every mode, origin, odd and even sizes, planes and bands of rows, in place too; and
    close to scipy (which sums in float64)."""
    from fastconv.ndimage import _filters as F
    from fastconv.ndimage import _support as S

    def two_passes(img, passes, cval):          # the separate passes, one kernel call each
        mid, out = np.empty_like(img), np.empty_like(img)
        for (kind, axis, size, m, origin), src, dst in zip(passes, (img, mid), (mid, out)):
            F._oop_pass(kind, src, dst, axis, S.mode_name(m), cval, origin, size)
        return out
    rng = np.random.default_rng(7)
    for shape, size, origin, axes in [((61, 45), 15, 0, None), ((37, 53), (4, 7), (1, -2), None),
                                      ((3, 17, 29), (5, 2), (-2, 0), (1, 2)), ((2, 3), 3, 0, None)]:
        img = rng.random(shape).astype(np.float32)
        got = fndi.uniform_filter(img, size, mode=mode, cval=0.5, origin=origin, axes=axes)
        sz = (size,) * 2 if np.isscalar(size) else size
        og = (origin,) * 2 if np.isscalar(origin) else origin
        passes = [("uniform", img.ndim - 2 + i, sz[i], mode, og[i]) for i in range(2)]
        assert F._box_over_last_two_axes(passes, img.shape)
        want = two_passes(img, passes, 0.5)
        assert np.array_equal(got, want), (shape, size, mode)
        np.testing.assert_allclose(got, sndi.uniform_filter(img, size, mode=mode, cval=0.5, origin=origin,
                                                            axes=axes), rtol=0, atol=2e-6)
        inplace = img.copy()
        assert fndi.uniform_filter(inplace, size, mode=mode, cval=0.5, origin=origin, axes=axes,
                                   output=inplace) is inplace
        assert np.array_equal(inplace, want)
