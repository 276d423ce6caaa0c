"""fastconv.filters against the naive reference, scipy.ndimage, scikit-image and torch.

Tolerances are the ones documented in fastconv.filters: relative to the largest reference value, 1e-12 for float64
direct/separable, 1e-5 for float32 and for the FFT path; integer outputs within one unit.
"""
import numpy as np
import pytest
import scipy.ndimage as ndi

import fastconv
import fastconv.filters as ff
from fastconv.filters import _engine

from reference import ndimage_correlate

skf = pytest.importorskip("skimage.filters")
img_as_float = pytest.importorskip("skimage.util").img_as_float

MODES = ["reflect", "constant", "nearest", "mirror", "wrap", "grid-mirror", "grid-constant", "grid-wrap"]
BASE_MODES = ["reflect", "constant", "nearest", "mirror", "wrap"]


def rng(seed=0):
    return np.random.default_rng(seed)


def assert_close(actual, expected, rtol):
    expected = np.asarray(expected, np.float64)
    scale = max(np.abs(expected).max(initial=0.0), 1e-30)
    err = np.abs(np.asarray(actual, np.float64) - expected).max(initial=0.0) / scale
    assert err <= rtol, "max error %.3g relative to max|reference|, allowed %.3g" % (err, rtol)


def tol(dtype, method="direct"):
    return 1e-5 if np.dtype(dtype) == np.float32 or method == "fft" else 1e-12


# --------------------------------------------------------------------------- correlate / convolve
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("method", ["direct", "fft", "auto"])
def test_correlate_matches_reference_all_modes_and_origins(mode, method):
    r = rng(1)
    img = r.standard_normal((7, 9))
    for ks in [(3, 4), (5, 2), (1, 3), (4, 1)]:
        w = r.standard_normal(ks)
        lo = [-(k // 2) for k in ks]
        hi = [(k - 1) // 2 for k in ks]
        for origin in [0, (lo[0], hi[1]), (hi[0], lo[1])]:
            got = ff.correlate(img, w, mode=mode, cval=0.7, origin=origin, method=method)
            assert_close(got, ndimage_correlate(img, w, mode, 0.7, origin), tol(np.float64, method))


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("mode", BASE_MODES)
def test_kernel_longer_than_image_repeats_the_extension(mode, method):
    r = rng(2)
    for shape in [(3, 2), (1, 6)]:
        img = r.standard_normal(shape)
        w = r.standard_normal((9, 7))
        got = ff.correlate(img, w, mode=mode, cval=-1.5, method=method)
        assert_close(got, ndimage_correlate(img, w, mode, -1.5), tol(np.float64, method))
        assert_close(got, ndi.correlate(img, w, mode=mode, cval=-1.5), tol(np.float64, method))


@pytest.mark.parametrize("shape,ks", [((31,), (4,)), ((17,), (9,)), ((12, 15), (3, 5)), ((10, 13), (4, 2)),
                                      ((6, 7, 8), (3, 2, 3)), ((5, 9, 4), (2, 4, 1))])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
@pytest.mark.parametrize("flip", [False, True])
def test_parity_with_scipy_ndimage(shape, ks, dtype, flip):
    r = rng(3)
    if np.dtype(dtype).kind in "ui":
        info = np.iinfo(dtype)
        img = r.integers(max(info.min, -1000), min(info.max, 1000), size=shape, endpoint=True).astype(dtype)
        w = r.random(ks)
        w /= w.sum()                      # keeps integer results in range
    else:
        img = r.standard_normal(shape).astype(dtype)
        w = r.standard_normal(ks)
    ours, theirs = (ff.convolve, ndi.convolve) if flip else (ff.correlate, ndi.correlate)
    for mode in BASE_MODES:
        origin = tuple((k - 1) // 2 for k in ks) if mode == "wrap" else 0
        for method in ["auto", "direct", "fft"]:
            got = ours(img, w, mode=mode, cval=3.0, origin=origin, method=method)
            ref = theirs(img, w, mode=mode, cval=3.0, origin=origin)
            assert got.dtype == ref.dtype == img.dtype
            if img.dtype.kind in "ui":
                assert np.abs(got.astype(np.int64) - ref.astype(np.int64)).max() <= 1
            else:
                assert_close(got, ref, tol(dtype, method))


@pytest.mark.parametrize("mode", BASE_MODES)
def test_fft_overlap_save_tiles(mode):
    r = rng(27)
    for shape, ks, tiles in [((40, 23), (5, 4), (16, 12, 4)), ((19, 6, 7), (4, 3, 2), (8, 5, 4))]:
        img = r.standard_normal(shape).astype(np.float32)
        w = r.standard_normal(ks)
        offs = tuple(k // 2 for k in ks)
        out = np.empty_like(img)
        _engine.correlate_fft(img, out, w, offs, (mode,) * len(shape), 0.6, 2, tiles=tiles)
        assert_close(out, ndimage_correlate(img, w, mode, 0.6), 1e-5)
    L, V, nt = _engine.fft_tiles(2048, 63)
    assert V == L - 62 and nt * V >= 2048 and (nt - 1) * V < 2048


def test_convolve_even_kernel_origin_rule():
    r = rng(4)
    img = r.standard_normal((9, 8))
    w = r.standard_normal((4, 2))
    for origin in [(-2, -1), (-1, 0), (0, 0), (1, 0)]:
        assert_close(ff.convolve(img, w, origin=origin), ndi.convolve(img, w, origin=origin), 1e-12)
    with pytest.raises(ValueError, match="origin"):
        ff.convolve(img, w, origin=(2, 0))


def test_separable_path_equals_nd_filter_including_constant_mode():
    r = rng(5)
    img = r.standard_normal((11, 13, 4))
    a, b, c = r.standard_normal(3), r.standard_normal(4), r.standard_normal(2)
    w = np.multiply.outer(np.multiply.outer(a, b), c)
    assert _engine.rank1_factors(w, np.float64) is not None
    for mode in BASE_MODES:
        got = ff.correlate(img, w, mode=mode, cval=2.5, method="separable")
        assert_close(got, ndi.correlate(img, w, mode=mode, cval=2.5), 1e-12)
    mixed = ("constant", "wrap", "mirror")
    assert_close(ff.correlate(img, w, mode=mixed, cval=2.5, method="separable"),
                 ndimage_correlate(img, w, mixed, 2.5), 1e-12)
    assert_close(ff.correlate(img, w, mode=mixed, cval=2.5, method="direct"),
                 ndimage_correlate(img, w, mixed, 2.5), 1e-12)


def test_rank1_detection():
    r = rng(6)
    assert _engine.rank1_factors(r.standard_normal((3, 3)), np.float64) is None
    sob = np.multiply.outer([1.0, 0.0, -1.0], [1.0, 2.0, 1.0]) / 4
    f = _engine.rank1_factors(sob, np.float64)
    assert np.array_equal(np.multiply.outer(f[0], f[1]), sob)      # factored exactly
    assert _engine.rank1_factors(np.ones((1, 5)), np.float32) is not None
    with pytest.raises(ValueError, match="method"):
        ff.correlate(r.standard_normal((5, 5)), r.standard_normal((3, 3)), method="separable")


def test_auto_choice_follows_the_cost_model():
    est = _engine.estimate((2048, 2048), np.ones((63, 63)), np.float32, 2, None)
    assert set(est) == {"direct", "fft"} and est["fft"] < est["direct"]
    assert _engine.choose((64, 64), np.ones((3, 3)) + np.eye(3), np.float32, 2) == "direct"
    f = _engine.rank1_factors(np.ones((15, 15)), np.float32)
    assert _engine.choose((512, 512), np.ones((15, 15)), np.float32, 2, f) == "separable"


@pytest.mark.parametrize("method", ["direct", "separable", "fft"])
def test_results_do_not_depend_on_thread_count(method):
    r = rng(7)
    img = r.standard_normal((67, 300)).astype(np.float32)
    w = np.multiply.outer(r.standard_normal(5), r.standard_normal(6))
    with fastconv.num_threads(1):
        one = ff.correlate(img, w, mode="mirror", method=method)
        g1 = ff.gaussian(img, 2.0, mode="constant", cval=0.5)
    with fastconv.num_threads(2):
        two = ff.correlate(img, w, mode="mirror", method=method)
        g2 = ff.gaussian(img, 2.0, mode="constant", cval=0.5)
    assert np.array_equal(one, two) and np.array_equal(g1, g2)


def test_row_pairs_give_identical_results(monkeypatch):
    r = rng(26)
    img = r.standard_normal((37, 150)).astype(np.float32)
    w = r.standard_normal((6, 5))
    runs = []
    for pair in (True, False):
        monkeypatch.setattr(_engine, "PAIR_ROWS", pair)
        runs.append([ff.correlate(img, w, mode=m, cval=1.5, origin=(-3, 1), method="direct") for m in BASE_MODES]
                    + [ff.sobel(img), ff.gaussian(img.T.copy(), 5.0, mode="constant", cval=2.0)])
    for a, b in zip(*runs):
        assert np.array_equal(a, b)
    assert_close(runs[0][1], ndimage_correlate(img, w, "constant", 1.5, (-3, 1)), 1e-5)


def test_out_argument_and_inputs_untouched():
    r = rng(8)
    img = r.standard_normal((20, 30))
    w = r.standard_normal((3, 5))
    keep_img, keep_w = img.copy(), w.copy()
    ref = ndi.correlate(img, w)
    out = np.empty_like(img)
    assert ff.correlate(img, w, out=out) is out
    assert_close(out, ref, 1e-12)
    out32 = np.empty(img.shape, np.float32)
    ff.correlate(img, w, out=out32)
    assert_close(out32, ref, 1e-6)
    strided = np.empty((20, 60))[:, ::2]
    ff.correlate(img, w, out=strided)
    assert_close(strided, ref, 1e-12)
    outi = np.empty(img.shape, np.int32)
    ff.correlate(img * 100, w, out=outi)
    assert np.abs(outi - ndi.correlate(img * 100, w, output=np.int32)).max() <= 1
    assert np.array_equal(img, keep_img) and np.array_equal(w, keep_w)
    inplace = img.copy()
    ff.correlate(inplace, w, out=inplace)                         # in place, like scipy's output=input
    assert_close(inplace, ref, 1e-12)
    f16 = ff.correlate(img.astype(np.float16), w)
    assert f16.dtype == np.float16


def test_torch_parity_for_padding_modes():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    r = rng(9)
    img = r.standard_normal((15, 17)).astype(np.float32)
    w = r.standard_normal((3, 5)).astype(np.float32)
    x = torch.from_numpy(img)[None, None]
    for ours, theirs in [("mirror", "reflect"), ("nearest", "replicate"), ("wrap", "circular"),
                         ("constant", "constant")]:
        xp = F.pad(x, (2, 2, 1, 1), mode=theirs)
        ref = F.conv2d(xp, torch.from_numpy(w)[None, None])[0, 0].numpy()
        assert_close(ff.correlate(img, w, mode=ours), ref, 1e-5)


# --------------------------------------------------------------------------- scikit-image filters
def _images(r):
    return {
        "uint8": (r.random((23, 31)) * 255).astype(np.uint8),
        "int16": r.integers(-30000, 30000, (23, 31)).astype(np.int16),
        "float32": r.standard_normal((23, 31)).astype(np.float32),
        "float64": r.standard_normal((23, 31)),
    }


@pytest.mark.parametrize("kind", ["uint8", "int16", "float32", "float64"])
def test_gaussian_matches_skimage(kind):
    img = _images(rng(10))[kind]
    for sigma, mode, kw in [(1.0, "nearest", {}), ((2.5, 0.7), "reflect", {}), ((0.0, 1.5), "constant", {"cval": 0.3}),
                            (3.0, "mirror", {"truncate": 2.0}), (1.2, "wrap", {"preserve_range": True}),
                            (0.0, "nearest", {})]:
        got = ff.gaussian(img, sigma, mode=mode, **kw)
        ref = skf.gaussian(img, sigma=sigma, mode=mode, **kw)
        assert got.dtype == ref.dtype
        assert_close(got, ref, tol(ref.dtype))


def test_gaussian_channels_volumes_and_out():
    r = rng(11)
    rgb = (r.random((19, 21, 3)) * 255).astype(np.uint8)
    for ch in [-1, 2]:
        assert_close(ff.gaussian(rgb, 2.0, channel_axis=ch), skf.gaussian(rgb, sigma=2.0, channel_axis=ch), 1e-12)
    planar = np.ascontiguousarray(np.moveaxis(rgb, -1, 0)).astype(np.float32)
    got = ff.gaussian(planar, (1.0, 3.0), channel_axis=0)
    assert got.dtype == np.float32
    assert_close(got, skf.gaussian(planar, sigma=(1.0, 3.0), channel_axis=0), 1e-5)
    vol = r.standard_normal((9, 10, 11))
    assert_close(ff.gaussian(vol, (1.0, 2.0, 0.5), mode="reflect"),
                 skf.gaussian(vol, sigma=(1.0, 2.0, 0.5), mode="reflect"), 1e-12)
    out = np.empty(vol.shape, np.float32)
    assert ff.gaussian(vol, 1.5, out=out) is out
    assert_close(out, skf.gaussian(vol, sigma=1.5), 1e-5)
    line = r.standard_normal(50)
    assert_close(ff.gaussian(line, 4.0), skf.gaussian(line, sigma=4.0), 1e-12)


@pytest.mark.parametrize("mode", BASE_MODES)
def test_gaussian_row_taps_pairs_and_strips(mode):
    r = rng(24)
    img = r.standard_normal((70, 90)).astype(np.float32)       # rows of >= 64 elements: row taps in row pairs
    assert_close(ff.gaussian(img, (2.0, 3.0), mode=mode, cval=0.4),
                 skf.gaussian(img, sigma=(2.0, 3.0), mode=mode, cval=0.4), 1e-5)
    wide = r.standard_normal((40, 1500))                         # a 65-tap pass over wide rows: column strips
    assert_close(ff.gaussian(wide, 8.0, mode=mode, cval=-0.2), skf.gaussian(wide, sigma=8.0, mode=mode, cval=-0.2),
                 1e-12)


@pytest.mark.parametrize("method", ["direct", "separable"])
def test_edge_magnitude_by_either_method(method, monkeypatch):
    monkeypatch.setattr(_engine, "choose", lambda *a, **k: method)
    vol = rng(25).standard_normal((6, 70, 9))
    for mode in ["reflect", "constant", "wrap"]:
        assert_close(ff.sobel(vol, mode=mode, cval=0.3), skf.sobel(vol, mode=mode, cval=0.3), 1e-12)
        assert_close(ff.scharr(vol, axis=(2, 0)), skf.scharr(vol, axis=(2, 0)), 1e-12)


@pytest.mark.parametrize("name", ["sobel", "prewitt", "scharr"])
def test_edge_filters_match_skimage(name):
    ours, theirs = getattr(ff, name), getattr(skf, name)
    imgs = _images(rng(12))
    vol = rng(13).standard_normal((7, 8, 9)).astype(np.float32)
    for img in list(imgs.values()) + [vol]:
        for kw in [{}, {"axis": 0}, {"axis": 1}, {"axis": (1, 0)}, {"mode": "constant", "cval": 0.5},
                   {"mode": "wrap"}]:
            got, ref = ours(img, **kw), theirs(img, **kw)
            assert got.dtype == ref.dtype
            assert_close(got, ref, tol(ref.dtype))
    img = imgs["float64"]
    mask = rng(14).random(img.shape) > 0.2
    assert_close(ours(img, mask), theirs(img, mask), 1e-12)
    # a negative axis means the same axis here (scikit-image also smooths along it)
    assert np.array_equal(ours(img, axis=-1), ours(img, axis=1))


def test_laplace_matches_skimage():
    for img in list(_images(rng(15)).values()) + [rng(16).standard_normal((6, 7, 8))]:
        ref = skf.laplace(img)
        got = ff.laplace(img)
        assert got.dtype == ref.dtype
        assert_close(got, ref, tol(ref.dtype))
    img = rng(17).standard_normal((12, 14))
    mask = np.zeros(img.shape, bool)
    mask[2:10, 3:12] = True
    assert_close(ff.laplace(img, ksize=5, mask=mask), skf.laplace(img, ksize=5, mask=mask), 1e-12)


def test_unsharp_mask_matches_skimage():
    imgs = _images(rng(18))
    for kind, img in imgs.items():
        for radius, amount, pr in [(1.0, 1.0, False), (2.5, -0.5, False), (1.5, 2.0, True), (0.0, 1.0, False)]:
            got = ff.unsharp_mask(img, radius, amount, pr)
            ref = skf.unsharp_mask(img, radius, amount, pr)
            assert got.dtype == ref.dtype
            assert_close(got, ref, tol(ref.dtype))
    rgb = (rng(19).random((15, 16, 3)) * 255).astype(np.uint8)
    ref = skf.unsharp_mask(rgb, 2.0, 1.5, channel_axis=2)
    assert_close(ff.unsharp_mask(rgb, 2.0, 1.5, channel_axis=2), ref, 1e-12)
    # scikit-image 0.26 slices the wrong axis for channel_axis=-1; ours means the last axis
    assert_close(ff.unsharp_mask(rgb, 2.0, 1.5, channel_axis=-1), ref, 1e-12)


@pytest.mark.parametrize("name", ["camera", "astronaut", "coffee"])
def test_real_images(name):
    data = pytest.importorskip("skimage.data")
    img = getattr(data, name)()
    ch = -1 if img.ndim == 3 else None
    chp = 2 if img.ndim == 3 else None
    assert_close(ff.gaussian(img, 3.0, channel_axis=ch), skf.gaussian(img, sigma=3.0, channel_axis=ch), 1e-12)
    assert_close(ff.unsharp_mask(img, 2.0, 1.0, channel_axis=chp), skf.unsharp_mask(img, 2.0, 1.0, channel_axis=chp),
                 1e-12)
    gray = img if img.ndim == 2 else img[..., 1]
    f32 = (gray / 255.0).astype(np.float32)
    for f in ["sobel", "prewitt", "scharr", "laplace"]:
        assert_close(getattr(ff, f)(gray), getattr(skf, f)(gray), 1e-12)
        assert_close(getattr(ff, f)(f32), getattr(skf, f)(f32), 1e-5)
    w = rng(20).standard_normal((21, 20)).astype(np.float32)
    assert_close(ff.correlate(f32, w, mode="mirror"), ndi.correlate(f32, w, mode="mirror"), 1e-5)


# --------------------------------------------------------------------------- named kernels
def test_named_kernels_and_apply_kernel():
    names = {"identity", "edge_detection_1", "edge_detection_2", "edge_detection_3", "sharpen", "box_blur",
             "gaussian_blur_3x3"}
    assert set(ff.kernels) == names
    k = ff.kernels
    assert not k["sharpen"].flags.writeable
    assert np.array_equal(k["sharpen"], k["identity"] + k["edge_detection_2"])
    for name in names:
        assert np.isclose(k[name].sum(), 0.0 if name.startswith("edge") else 1.0)
    cam = pytest.importorskip("skimage.data").camera()[:64, :80]
    fimg = img_as_float(cam)
    assert np.array_equal(ff.apply_kernel(cam, "identity"), fimg)
    for name in names:
        assert_close(ff.apply_kernel(cam, name), ndi.convolve(fimg, k[name], mode="reflect"), 1e-12)
    w = rng(21).standard_normal((2, 4))
    assert_close(ff.apply_kernel(fimg, w, mode="nearest"), ndi.convolve(fimg, w, mode="nearest"), 1e-12)
    rgb = (rng(22).random((10, 12, 3)) * 255).astype(np.uint8)
    got = ff.apply_kernel(rgb, "box_blur", channel_axis=-1)
    for c in range(3):
        assert_close(got[..., c], ndi.convolve(img_as_float(rgb[..., c]), k["box_blur"]), 1e-12)
    assert ff.apply_kernel(rgb.astype(np.float32), "sharpen", channel_axis=2).dtype == np.float32


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("call,exc,arg", [
    (lambda im: ff.correlate(im, np.ones(3)), ValueError, "weights"),
    (lambda im: ff.correlate(im, np.ones((3, 3)), mode="edge"), ValueError, "mode"),
    (lambda im: ff.correlate(im, np.ones((3, 3)), mode=3), TypeError, "mode"),
    (lambda im: ff.correlate(im, np.ones((3, 3)), mode=("wrap",)), ValueError, "mode"),
    (lambda im: ff.correlate(im, np.ones((3, 3)), origin=2), ValueError, "origin"),
    (lambda im: ff.correlate(im, np.ones((3, 3)), origin=0.5), TypeError, "origin"),
    (lambda im: ff.correlate(im, np.ones((3, 3)), origin=(0, 0, 0)), ValueError, "origin"),
    (lambda im: ff.correlate(im, np.ones((3, 3)), cval="a"), TypeError, "cval"),
    (lambda im: ff.correlate(im, np.ones((3, 3)), method="winograd"), ValueError, "method"),
    (lambda im: ff.correlate(im, np.ones((0, 3))), ValueError, "weights"),
    (lambda im: ff.correlate(im.astype(complex), np.ones((3, 3))), TypeError, "image"),
    (lambda im: ff.correlate("abc", np.ones((3, 3))), TypeError, "image"),
    (lambda im: ff.correlate(im, np.ones((3, 3)), out=np.empty((3, 3))), ValueError, "out"),
    (lambda im: ff.correlate(im, np.ones((3, 3)), out=[0]), TypeError, "out"),
    (lambda im: ff.gaussian(im, -1.0), ValueError, "sigma"),
    (lambda im: ff.gaussian(im, (1.0, 2.0, 3.0)), ValueError, "sigma"),
    (lambda im: ff.gaussian(im, "big"), TypeError, "sigma"),
    (lambda im: ff.gaussian(im, 1.0, channel_axis=2), ValueError, "channel_axis"),
    (lambda im: ff.gaussian(im, 1.0, channel_axis=1.0), TypeError, "channel_axis"),
    (lambda im: ff.gaussian(im, 1.0, truncate=-1), ValueError, "truncate"),
    (lambda im: ff.gaussian(im, 1.0, mode="nope"), ValueError, "mode"),
    (lambda im: ff.gaussian(im, 1.0, out=np.empty(im.shape, np.int32)), TypeError, "out"),
    (lambda im: ff.gaussian(im, 1.0, preserve_range="yes"), TypeError, "preserve_range"),
    (lambda im: ff.sobel(im, axis=2), ValueError, "axis"),
    (lambda im: ff.sobel(im, mask=np.ones((2, 2), bool)), ValueError, "mask"),
    (lambda im: ff.prewitt(im, mode="sideways"), ValueError, "mode"),
    (lambda im: ff.laplace(im, ksize=1), ValueError, "ksize"),
    (lambda im: ff.unsharp_mask(im, radius=-2), ValueError, "radius"),
    (lambda im: ff.unsharp_mask(im, amount="x"), TypeError, "amount"),
    (lambda im: ff.unsharp_mask(im, channel_axis=5), ValueError, "channel_axis"),
    (lambda im: ff.apply_kernel(im, "blur"), ValueError, "kernel"),
    (lambda im: ff.apply_kernel(im, np.ones(3)), ValueError, "kernel"),
])
def test_bad_input_names_the_argument(call, exc, arg):
    img = rng(23).standard_normal((8, 9))
    with pytest.raises(exc, match="'%s'" % arg):
        call(img)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_values_mark_exactly_the_footprint(dtype):
    """Row pairs of the direct kernel share merged taps; a tap of one row only must not add 0 * NaN to the other
    (regression: NaN one row outside a 3x3 footprint on images at least 64 wide)."""
    x = np.zeros((12, 90), dtype)
    x[5, 40] = np.nan
    x[2, 70] = np.inf
    x[9, 3] = -np.inf
    w = np.arange(1.0, 10.0).reshape(3, 3)
    for method in ("direct", "auto"):
        got = ff.correlate(x, w, method=method)
        ref = ndi.correlate(x.astype(np.float64), w)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    for got, ref in [(ff.sobel(x), skf.sobel(x)), (ff.laplace(x), skf.laplace(x)),
                     (ff.gaussian(x, 1.0), skf.gaussian(x, 1.0))]:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))


def test_apply_kernel_on_a_colour_image_names_channel_axis():
    rgb = np.random.default_rng(0).random((12, 10, 3))
    with pytest.raises(ValueError, match=r"channel_axis=-1.*filters each channel"):
        ff.apply_kernel(rgb, "sharpen")
    with pytest.raises(ValueError, match="channel_axis=-1"):
        ff.apply_kernel(rgb, np.ones((3, 3)) / 9)
    np.testing.assert_allclose(ff.apply_kernel(rgb, "sharpen", channel_axis=-1)[..., 1],
                               ff.apply_kernel(rgb[..., 1], "sharpen"), atol=1e-12)
