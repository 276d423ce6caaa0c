"""fastconv.filters' directional/Farid/Roberts edge filters, difference_of_gaussians, median, rank-style
minimum/maximum/median and butterworth against scikit-image 0.26 (float64: 1e-12 of the largest value, float32
1e-5, integer outputs equal)."""
import warnings

import numpy as np
import pytest

import fastconv.filters as ff

skf = pytest.importorskip("skimage.filters")
skdata = pytest.importorskip("skimage.data")


def close(got, expected, rtol=None):
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if expected.dtype.kind in "iub":
        np.testing.assert_array_equal(got, expected)
        return
    if rtol is None:
        rtol = 1e-5 if expected.dtype == np.float32 else 1e-12
    scale = max(float(np.abs(expected).max()), 1e-30)
    assert float(np.abs(got.astype(np.float64) - expected).max()) <= rtol * scale


def images():
    cam = skdata.camera()[100:228, 60:250]
    return [cam, cam.astype(np.float32) / 255, cam.astype(np.float64) / 3, (cam > 100)]


@pytest.mark.parametrize("name", ["sobel_h", "sobel_v", "prewitt_h", "prewitt_v", "scharr_h", "scharr_v",
                                  "farid_h", "farid_v", "roberts", "roberts_pos_diag", "roberts_neg_diag"])
def test_2d_edge_filters(name):
    mask = np.random.default_rng(0).random((128, 190)) > 0.1
    for img in images():
        close(getattr(ff, name)(img), getattr(skf, name)(img))
        close(getattr(ff, name)(img, mask=mask), getattr(skf, name)(img, mask=mask))
    with pytest.raises(ValueError):
        getattr(ff, name)(np.zeros((4, 5, 6)))


@pytest.mark.parametrize("mode", ["reflect", "constant", "nearest", "mirror", "wrap"])
def test_farid_nd(mode):
    vol = np.random.default_rng(1).standard_normal((7, 20, 30))
    for axis in (None, 0, (1, 2)):
        close(ff.farid(vol, axis=axis, mode=mode, cval=0.5), skf.farid(vol, axis=axis, mode=mode, cval=0.5))
    close(ff.farid(vol.astype(np.float32), mode=mode), skf.farid(vol.astype(np.float32), mode=mode))


def test_difference_of_gaussians():
    ast = skdata.astronaut()[::3, ::3]
    for img in images()[:3]:
        close(ff.difference_of_gaussians(img, 1), skf.difference_of_gaussians(img, 1))
        close(ff.difference_of_gaussians(img, [1, 2], 3, mode="reflect"),
              skf.difference_of_gaussians(img, [1, 2], 3, mode="reflect"))
    close(ff.difference_of_gaussians(ast, 1.5, 2.5, channel_axis=-1),
          skf.difference_of_gaussians(ast, 1.5, 2.5, channel_axis=-1))
    for bad in [dict(low_sigma=3, high_sigma=1), dict(low_sigma=[1, 2, 3])]:
        with pytest.raises(ValueError):
            ff.difference_of_gaussians(images()[0], **bad)


def test_median_both_behaviours():
    cam = skdata.camera()[:150, :170]
    for img in (cam, cam.astype(np.float32), cam.astype(np.int16) - 50):
        close(ff.median(img), skf.median(img))
        close(ff.median(img, np.ones((5, 3)), mode="wrap"), skf.median(img, np.ones((5, 3)), mode="wrap"))
    close(ff.median(cam, behavior="rank"), skf.median(cam, behavior="rank"))
    close(ff.median(cam, np.ones((4, 6)), behavior="rank"), skf.median(cam, np.ones((4, 6)), behavior="rank"))
    out = np.empty_like(cam)
    assert ff.median(cam, out=out) is out
    with pytest.warns(UserWarning):
        ff.median(cam, mode="wrap", behavior="rank")


@pytest.mark.parametrize("kind", ["minimum", "maximum", "median"])
def test_rank_filters(kind):
    r = np.random.default_rng(2)
    cam = skdata.camera()[:120, :140]
    mask = r.random(cam.shape) > 0.3
    fp = r.random((5, 4)) > 0.3
    fp[2, 2] = True
    for img in (cam, (cam.astype(np.uint16) * 4 + 1000)):
        for kw in ({}, {"mask": mask}, {"shift_x": 1, "shift_y": -2}, {"mask": mask, "shift_x": -1}):
            close(getattr(ff.rank, kind)(img, fp.astype(np.uint8), **kw),
                  getattr(skf.rank, kind)(img, fp.astype(np.uint8), **kw))
    vol = (r.random((6, 9, 11)) * 900).astype(np.uint16)
    for kw in ({}, {"shift_x": 1}, {"shift_z": -1, "shift_y": 1}):
        close(getattr(ff.rank, kind)(vol, np.ones((3, 3, 3), np.uint8), **kw),
              getattr(skf.rank, kind)(vol, np.ones((3, 3, 3), np.uint8), **kw))
    with pytest.raises(TypeError):
        getattr(ff.rank, kind)(cam.astype(np.float32), fp)


def test_butterworth():
    ast = skdata.astronaut()[::4, ::4]
    cam = skdata.camera()[::2, ::2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for args, kw in [((), {}), ((0.05, False, 3.0), {}), ((0.1,), {"squared_butterworth": False, "npad": 5})]:
            close(ff.butterworth(cam, *args, **kw), skf.butterworth(cam, *args, **kw))
            close(ff.butterworth(cam.astype(np.float32), *args, **kw),
                  skf.butterworth(cam.astype(np.float32), *args, **kw))
        close(ff.butterworth(ast, 0.02, channel_axis=-1), skf.butterworth(ast, 0.02, channel_axis=-1))
    with pytest.raises(ValueError):
        ff.butterworth(cam, 0.7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["reflect", "constant", "wrap"])
def test_row_blocks_equal_row_by_row(dtype, mode):
    """Row-tap passes computed in blocks of output rows (each source row loaded once) give the bits of the
    row-by-row kernel, non-finite values included, on blocks that are regular and blocks the boundary breaks."""
    from fastconv.filters import _engine as E
    rng = np.random.default_rng(11)
    src = rng.standard_normal((45, 19, 70)).astype(dtype)
    src[7, 3, 5], src[30, 0, 69], src[12, 18, 0] = np.nan, np.inf, -np.inf
    cases = [(0, 8, 0, 45), (1, 8, 0, 19), (0, 4, 0, 45), (0, 12, 12, 21), (1, 3, 2, 15)]
    old = E.ROW_BLOCKS
    assert E.ROW_BLOCKS and E._filter.row_block_rows() == 8
    try:
        for axis, r, start, n_out in cases:
            w = rng.random(2 * r + 1) + 0.1
            shape = src.shape[:axis] + (n_out,) + src.shape[axis + 1:]
            got = {}
            for blocks in (True, False):
                E.ROW_BLOCKS = blocks
                E._pass_plans.clear()
                out = np.empty(shape, dtype)
                E._pass(src, out, axis, w, r, mode, 0.5, 2, start=start)
                got[blocks] = out
            np.testing.assert_array_equal(got[True], got[False])
            assert np.isnan(got[True]).any() or r < 4
    finally:
        E.ROW_BLOCKS = old
        E._pass_plans.clear()


def test_row_blocks_only_where_rows_are_consecutive():
    from fastconv.filters import _engine as E
    nb = E._filter.row_block_rows()
    rows = E._row_table((40,), (40,), (9,), (4,), ("reflect",))
    ok = E._row_blocks(rows, np.ones((9, 1)), np.ones(9))
    assert ok.shape == (-(-40 // nb),)
    assert list(ok) == [0, 1, 1, 1, 0]                   # the first and last blocks reach past the edges
    assert E._row_blocks(rows, np.ones((9, 2)), np.ones(18)).size == 0     # two column taps
    assert E._row_blocks(rows, np.ones((9, 1)), np.ones(8)).size == 0      # a zero weight dropped from the taps
    short = E._row_table((40,), (40,), (5,), (2,), ("reflect",))
    assert E._row_blocks(short, np.ones((5, 1)), np.ones(5)).size == 0    # fewer row taps than a block's rows


def test_direct_plans_and_rank1_answers_are_reused_not_shared_wrongly():
    """A correlation seen before reuses its plan and its rank-1 answer; another kernel, shape, origin or mode
    gets its own, and the cached factors cannot be written through."""
    from fastconv.filters import _engine as E
    rng = np.random.default_rng(4)
    img = rng.random((33, 40)).astype(np.float32)
    w1 = rng.random((3, 3))
    w2 = rng.random((3, 3))
    E._nd_plans.clear()
    a = ff.correlate(img, w1, method="direct")
    n = len(E._nd_plans)
    assert n >= 1
    np.testing.assert_array_equal(ff.correlate(img, w1, method="direct"), a)
    assert len(E._nd_plans) == n
    for other in (ff.correlate(img, w2, method="direct"), ff.correlate(img[:, :39], w1, method="direct"),
                  ff.correlate(img, w1, method="direct", mode="wrap"), ff.correlate(img, w1, origin=1,
                                                                                     method="direct")):
        assert not np.array_equal(other[:, :39], a[:, :39])
    assert len(E._nd_plans) == n + 4
    sep = np.outer([1.0, 2.0, 1.0], [1.0, 0.0, -1.0])
    f = E.rank1_factors(sep, np.float32)
    assert f is E.rank1_factors(sep.copy(), np.float32) and not f[0].flags.writeable
    np.testing.assert_allclose(np.outer(f[0], f[1]), sep)
    assert E.rank1_factors(w1, np.float32) is None


def test_separable_temporaries_are_reused_per_thread_and_never_shared():
    """Multi-pass filters keep their intermediate arrays per thread between calls; results stay those of fresh
    temporaries, also with several threads filtering at once and with images above the kept size."""
    import threading
    from fastconv.filters import _engine as E
    rng = np.random.default_rng(9)
    imgs = [rng.random((64 + i, 80)).astype(np.float32) for i in range(4)]
    want = [ff.gaussian(im, 1.5, preserve_range=True) for im in imgs]
    ff.gaussian(imgs[0], 1.5, preserve_range=True)
    buf = E._temps.pool[0]
    for im, w in zip(imgs, want):
        np.testing.assert_array_equal(ff.gaussian(im, 1.5, preserve_range=True), w)
    assert E._temps.pool[0] is buf or E._temps.pool[0].nbytes > buf.nbytes
    got, errors = {}, []

    def worker(k):
        try:
            for _ in range(20):
                for i, im in enumerate(imgs):
                    got[(k, i)] = ff.gaussian(im, 1.5, preserve_range=True)
                    if not np.array_equal(got[(k, i)], want[i]):
                        errors.append((k, i))
        except Exception as e:          # pragma: no cover - reported below
            errors.append(e)
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    old = E.TEMP_KEEP_BYTES
    try:
        E.TEMP_KEEP_BYTES = 16
        np.testing.assert_array_equal(ff.gaussian(imgs[1], 1.5, preserve_range=True), want[1])
    finally:
        E.TEMP_KEEP_BYTES = old


def test_fft_path_temporaries_in_concurrent_threads():
    import threading
    rng = np.random.default_rng(12)
    imgs = [rng.random((70 + 3 * i, 90 - i)).astype(np.float32) for i in range(3)]
    w = rng.random((9, 7)).astype(np.float32)
    want = [ff.correlate(im, w, method="fft") for im in imgs]
    for im, x in zip(imgs, want):
        np.testing.assert_allclose(x, ff.correlate(im, w, method="direct"), rtol=1e-4, atol=1e-4)
    errors = []

    def worker():
        for _ in range(10):
            for im, x in zip(imgs, want):
                if not np.array_equal(ff.correlate(im, w, method="fft"), x):
                    errors.append(im.shape)
    ts = [threading.Thread(target=worker) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_fft_path_transpose_moves_every_bit(dtype):
    """The FFT path's transpose (register blocks of 8-byte complex64 numbers, element by element at the tiles'
    edges and for complex128) at every SIMD level, on strided rows and shapes that leave partial blocks and tiles:
    bit-for-bit the transposed array, NaN payloads and signed zeros included."""
    from fastconv import _kernels
    real = np.float32 if dtype == np.complex64 else np.float64
    rng = np.random.default_rng(3)
    for level in _kernels.cpu_levels():
        with _kernels.use_level(level):
            f = _kernels.module("_filter")
            for R, C in ((1, 1), (3, 5), (8, 8), (32, 32), (33, 70), (100, 9), (257, 131)):
                a = rng.standard_normal((R, C + 3, 2)).astype(real)
                a.reshape(-1)[::7] = -0.0
                a.view(np.uint32 if real == np.float32 else np.uint64).reshape(-1)[::11] |= \
                    (0x7fc00001 if real == np.float32 else 0x7ff8000000000001)
                src = a[:, 1:C + 1]                   # strided rows
                dst = np.empty((C, R, 2), real)
                f.transpose_pairs(src, dst, 2)
                bits = np.uint32 if real == np.float32 else np.uint64
                assert np.array_equal(dst.view(bits), np.ascontiguousarray(src.transpose(1, 0, 2)).view(bits)), \
                    (level, R, C)
