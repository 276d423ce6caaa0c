"""fastconv.dask: lazy results equal the in-memory functions on the whole array, whatever the chunking.

Chunkings cut through the kernel footprint, include chunks smaller than the halo (read through several hops)
and uneven last chunks; every boundary mode.  float64 to 1e-12 (relative to the largest value), integer outputs
bit-equal.  Graphs run on dask's synchronous scheduler unless a test is about threads or the cluster.
"""
import numpy as np
import pytest

import fastconv
import fastconv.filters as ff

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
import fastconv.dask as fd  # noqa: E402
from fastconv.dask import _overlap  # noqa: E402

MODES = ["reflect", "constant", "nearest", "mirror", "wrap", "grid-mirror", "grid-constant", "grid-wrap"]
BASE_MODES = ["reflect", "constant", "nearest", "mirror", "wrap"]

# (shape, chunks): one chunk, even chunks, uneven last chunks, chunks of 1 (smaller than any halo), mixed
CHUNKINGS_2D = [
    ((23, 17), (23, 17)),
    ((23, 17), (8, 6)),
    ((23, 17), ((5, 1, 9, 8), (2, 13, 2))),
    ((23, 17), ((1, 1, 2, 19), (3, 3, 3, 3, 3, 2))),
    ((9, 40), ((4, 5), (7, 11, 20, 2))),
]


def rng(seed=0):
    return np.random.default_rng(seed)


def assert_close(actual, expected, rtol=1e-12):
    expected = np.asarray(expected, np.float64)
    actual = np.asarray(actual, np.float64)
    assert actual.shape == expected.shape
    scale = max(np.abs(expected).max(initial=0.0), 1e-30)
    err = np.abs(actual - expected).max(initial=0.0) / scale
    assert err <= rtol, "max error %.3g relative to max|reference|, allowed %.3g" % (err, rtol)


def compute(x):
    assert isinstance(x, da.Array)
    return x.compute(scheduler="sync")


def lazy(a, chunks):
    return da.from_array(a, chunks=chunks)


# ----------------------------------------------------------------------------------------- halo planning
@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "constant", "wrap"])
@pytest.mark.parametrize("chunks", [(10,), (3, 3, 3, 1), (1,) * 10, (6, 4), (2, 7, 1)])
@pytest.mark.parametrize("halo", [(0, 0), (2, 2), (4, 1), (0, 3), (12, 12)])
def test_axis_plan_slabs_cover_every_read(mode, chunks, halo):
    """Every slab holds the block and its halo (clipped to the array for edge slabs, periodic for wrap); reflect
    and mirror slabs at an edge are long enough for every reflected read to be exact."""
    n = sum(chunks)
    before, after = halo
    bounds = np.cumsum((0,) + chunks)
    for (pieces, crop), s, e in zip(_overlap.axis_plan(chunks, before, after, mode), bounds[:-1], bounds[1:]):
        idx = []
        for b, sel, length in pieces:
            local = np.arange(bounds[b], bounds[b + 1])[sel]
            assert len(local) == length
            idx.extend(local.tolist())
        idx = np.array(idx)
        assert np.array_equal(idx[crop], np.arange(s, e))
        kept_lo, kept_hi = crop.start, crop.stop
        whole = s - before <= 0 and e + after >= n
        if mode == "wrap" and (s - before < 0 or e + after > n) and not whole:
            assert np.array_equal(idx, np.mod(np.arange(s - before, e + after), n))
            continue
        assert np.array_equal(idx, np.arange(idx[0], idx[-1] + 1))  # a contiguous run of the array
        assert kept_lo >= min(before, s) and len(idx) - kept_hi >= min(after, n - e)
        if mode in ("reflect", "mirror") and idx[0] == 0 and idx[-1] < n - 1:
            assert len(idx) >= before + after + 1


def test_chunks_smaller_than_the_halo_read_several_hops():
    x = lazy(np.arange(30.0), 2)
    y = fd.gaussian(x, 3)                       # halo 12: each block reads from up to 13 chunks, no rechunk
    assert y.chunks == x.chunks
    assert_close(compute(y), ff.gaussian(np.arange(30.0), 3))


# ----------------------------------------------------------------------------------------------- filters
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,chunks", CHUNKINGS_2D)
def test_gaussian_every_mode_every_chunking(mode, shape, chunks):
    img = rng(1).standard_normal(shape)
    for sigma in [1.0, (2.5, 0.7)]:
        got = fd.gaussian(lazy(img, chunks), sigma, mode=mode, cval=0.4)
        assert got.chunks == lazy(img, chunks).chunks
        assert_close(compute(got), ff.gaussian(img, sigma, mode=mode, cval=0.4))


@pytest.mark.parametrize("mode", BASE_MODES)
def test_gaussian_kernel_longer_than_the_array_3d_and_float32(mode):
    img = rng(2).standard_normal((5, 11, 6))
    got = fd.gaussian(lazy(img, (2, 3, 4)), (3.0, 1.0, 2.0), mode=mode, cval=-1.0, truncate=3.0)
    assert_close(compute(got), ff.gaussian(img, (3.0, 1.0, 2.0), mode=mode, cval=-1.0, truncate=3.0))
    f32 = img.astype(np.float32)
    got = compute(fd.gaussian(lazy(f32, (2, 3, 4)), 1.5, mode=mode))
    assert got.dtype == np.float32
    assert_close(got, ff.gaussian(f32, 1.5, mode=mode), 1e-6)


def test_gaussian_channel_axis_and_integer_images():
    img = rng(3).integers(0, 255, (20, 16, 3)).astype(np.uint8)
    got = fd.gaussian(lazy(img, (7, 5, 1)), 2.0, channel_axis=-1)
    assert got.dtype == np.float64
    assert_close(compute(got), ff.gaussian(img, 2.0, channel_axis=-1))
    got = fd.gaussian(lazy(img, (7, 5, 2)), 1.0, preserve_range=True, mode="wrap")
    assert_close(compute(got), ff.gaussian(img, 1.0, preserve_range=True, mode="wrap"))


@pytest.mark.parametrize("mode", BASE_MODES)
@pytest.mark.parametrize("fn", ["correlate", "convolve"])
def test_correlate_convolve_asymmetric_kernels_origins_every_mode(fn, mode):
    """Non-symmetric, even-length kernels with origins at both limits cut by every chunking."""
    r = rng(4)
    img = r.standard_normal((23, 17))
    for ks, origin in [((4, 3), 0), ((5, 2), (-2, 0)), ((4, 5), (1, 2)), ((1, 7), (0, -3))]:
        w = r.standard_normal(ks)
        want = getattr(ff, fn)(img, w, mode=mode, cval=0.3, origin=origin, method="direct")
        for shape, chunks in CHUNKINGS_2D[2:4]:
            got = getattr(fd, fn)(lazy(img, chunks), w, mode=mode, cval=0.3, origin=origin, method="direct")
            assert_close(compute(got), want)


@pytest.mark.parametrize("method", ["auto", "separable", "fft"])
def test_correlate_methods_and_integer_outputs_bit_equal(method):
    r = rng(5)
    img = r.integers(-300, 300, (40, 33)).astype(np.int16)
    w = np.outer([1.0, 2.0, 1.0, 0.5], [0.25, 1.0, -1.0])          # rank 1: every method applies
    for mode in BASE_MODES:
        want = ff.correlate(img, w, mode=mode, cval=7, method=method)
        got = compute(fd.correlate(lazy(img, (9, 7)), w, mode=mode, cval=7, method=method))
        assert got.dtype == np.int16
        if method == "fft":
            assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
        else:
            assert np.array_equal(got, want)


def test_auto_method_is_decided_for_the_whole_array():
    img = rng(6).standard_normal((64, 64))
    w = rng(7).standard_normal((15, 15))                             # auto: fft on the whole image
    x = lazy(img, 20)
    got = fd.correlate(x, w, mode="mirror")
    want = ff.correlate(img, w, mode="mirror")
    assert_close(compute(got), want, 1e-12)


@pytest.mark.parametrize("name", ["sobel", "prewitt", "scharr"])
@pytest.mark.parametrize("mode", BASE_MODES)
def test_edge_filters_axes_masks(name, mode):
    r = rng(8)
    img = r.standard_normal((19, 14, 5))
    mask = r.random((19, 14, 5)) > 0.2
    x = lazy(img, ((4, 1, 8, 6), (7, 7), (2, 3)))
    for axis in [None, 0, (1, 2)]:
        want = getattr(ff, name)(img, axis=axis, mode=mode, cval=0.5)
        assert_close(compute(getattr(fd, name)(x, axis=axis, mode=mode, cval=0.5)), want)
    want = getattr(ff, name)(img, mask, mode=mode)
    got = getattr(fd, name)(x, lazy(mask, 6), mode=mode)
    assert_close(compute(got), want)


def test_laplace_with_and_without_mask():
    r = rng(9)
    img = r.standard_normal((21, 13)).astype(np.float32)
    mask = r.random((21, 13)) > 0.3
    x = lazy(img, (1, 5))
    assert_close(compute(fd.laplace(x)), ff.laplace(img), 1e-6)
    assert_close(compute(fd.laplace(x, mask=lazy(mask, 4))), ff.laplace(img, mask=mask), 1e-6)


def test_unsharp_mask_clips_to_the_whole_images_range():
    """Negative values in one corner only: every block is clipped to [-1, 1], as the whole image is."""
    r = rng(10)
    img = r.random((30, 24))
    img[:3, :3] -= 0.5
    x = lazy(img, (10, 8))
    for kw in [{}, {"amount": 3.0}, {"preserve_range": True, "amount": 2.0}]:
        assert_close(compute(fd.unsharp_mask(x, 1.5, **kw)), ff.unsharp_mask(img, 1.5, **kw))
    pos = np.abs(img)
    assert_close(compute(fd.unsharp_mask(lazy(pos, 7), 2.0, 4.0)), ff.unsharp_mask(pos, 2.0, 4.0))
    col = r.integers(0, 256, (12, 10, 3)).astype(np.uint8)
    assert_close(compute(fd.unsharp_mask(lazy(col, (5, 4, 3)), 1.0, channel_axis=-1)),
                 ff.unsharp_mask(col, 1.0, channel_axis=-1))


@pytest.mark.parametrize("mode", BASE_MODES)
def test_apply_kernel_named_and_even_kernels(mode):
    r = rng(11)
    img = r.random((17, 19, 3))
    x = lazy(img, (5, 4, 1))
    want = ff.apply_kernel(img, "sharpen", mode=mode, channel_axis=-1)
    assert_close(compute(fd.apply_kernel(x, "sharpen", mode=mode, channel_axis=-1)), want)
    k = r.standard_normal((4, 2))
    want = ff.apply_kernel(img[..., 0], k, mode=mode, cval=0.2)
    assert_close(compute(fd.apply_kernel(x[..., 0], k, mode=mode, cval=0.2)), want)


def test_per_axis_modes_and_numpy_input():
    img = rng(12).standard_normal((16, 12))
    modes = ("wrap", "mirror")
    got = fd.gaussian(lazy(img, (3, 5)), 1.2, mode=modes)
    assert_close(compute(got), ff.gaussian(img, 1.2, mode=modes))
    assert isinstance(fd.gaussian(img, 1.0), da.Array)               # NumPy input: one chunk, lazy result


def test_errors_are_the_in_memory_functions_and_raised_eagerly():
    x = lazy(np.zeros((8, 8)), 4)
    with pytest.raises(ValueError, match="mode"):
        fd.gaussian(x, 1.0, mode="bogus")
    with pytest.raises(ValueError, match="sigma"):
        fd.gaussian(x, -1.0)
    with pytest.raises(TypeError, match="must be a dask array"):
        fd.gaussian("image")
    with pytest.raises(ValueError, match="mask"):
        fd.sobel(x, lazy(np.ones((8, 7), bool), 4))
    with pytest.raises(ValueError, match="unknown"):
        fd.gaussian(x[x[:, 0] > 0], 1.0)                              # unknown chunk sizes


def test_results_are_lazy_and_deterministic_names():
    x = lazy(rng(13).standard_normal((12, 12)), 5)
    a, b = fd.gaussian(x, 1.0), fd.gaussian(x, 1.0)
    assert a.name == b.name and fd.gaussian(x, 2.0).name != a.name
    assert len(a.__dask_graph__()) >= a.npartitions


# ------------------------------------------------------------------------------------------ convolutions
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding,dilation", [(0, 1), (2, 1), ("same", 2), (((3, 0), (1, 2)), 1)])
def test_conv2d_spatial_chunks_with_halos(padding_mode, padding, dilation):
    r = rng(14)
    x = r.standard_normal((2, 4, 21, 18))
    w = r.standard_normal((6, 2, 3, 4))
    b = r.standard_normal(6)
    kw = dict(padding=padding, dilation=dilation, groups=2, padding_mode=padding_mode)
    want = fastconv.conv2d(x, w, b, **kw)
    for chunks in [(1, 4, 5, 7), (2, 2, (1, 10, 10), (3, 15)), (2, 4, 2, 3)]:
        got = fd.conv2d(lazy(x, chunks), w, b, **kw)
        assert got.shape == want.shape
        assert_close(compute(got), want)


def test_conv1d_conv3d_strides_and_float32():
    r = rng(15)
    x = r.standard_normal((5, 3, 30)).astype(np.float32)
    w = r.standard_normal((4, 3, 5)).astype(np.float32)
    got = fd.conv1d(lazy(x, (2, 3, 7)), w, stride=2, padding=1)        # stride 2: batch chunks only
    assert got.chunks[0] == (2, 2, 1)
    assert_close(compute(got), fastconv.conv1d(x, w, stride=2, padding=1), 1e-6)
    got = fd.conv1d(lazy(x, (2, 3, 4)), w, padding="same", flip=True)
    assert_close(compute(got), fastconv.conv1d(x, w, padding="same", flip=True), 1e-6)
    v = r.standard_normal((2, 2, 9, 8, 7))
    w3 = r.standard_normal((3, 2, 3, 2, 3))
    got = fd.conv3d(lazy(v, (1, 2, 4, 3, 5)), w3, padding=(1, 0, 2))
    assert_close(compute(got), fastconv.conv3d(v, w3, padding=(1, 0, 2)))


def test_conv_transpose_and_pools_over_batch_chunks():
    r = rng(16)
    x = r.standard_normal((7, 3, 12, 10))
    X = lazy(x, (3, 2, 5, 5))
    w = r.standard_normal((3, 4, 3, 3))
    want = fastconv.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    assert_close(compute(fd.conv_transpose2d(X, w, stride=2, padding=1, output_padding=1)), want)
    for name, args, kw in [("max_pool2d", (3,), {"stride": 2, "padding": 1}), ("avg_pool2d", (2,), {}),
                           ("lp_pool2d", (2.0, 3), {}), ("adaptive_avg_pool2d", ((3, 4),), {}),
                           ("adaptive_max_pool2d", (5,), {}), ("global_avg_pool", (), {}),
                           ("global_max_pool", (), {}), ("kmax_pool", (3,), {"dim": -1})]:
        want = getattr(fastconv, name)(x, *args, **kw)
        got = getattr(fd, name)(X, *args, **kw)
        if isinstance(want, tuple):
            for g, wnt in zip(got, want):
                assert np.array_equal(compute(g), wnt)
        else:
            assert_close(compute(got), want)
    vals, idx = fd.max_pool2d(X, 2, return_indices=True)
    want_v, want_i = fastconv.max_pool2d(x, 2, return_indices=True)
    assert np.array_equal(compute(vals), want_v) and np.array_equal(compute(idx), want_i)
    back = fd.max_unpool2d(vals, idx, 2, output_size=(12, 10))
    assert np.array_equal(compute(back), fastconv.max_unpool2d(want_v, want_i, 2, output_size=(12, 10)))


def test_conv_errors_are_eager():
    X = lazy(np.zeros((2, 3, 8, 8)), 4)
    with pytest.raises(ValueError, match="input channels"):
        fd.conv2d(X, np.zeros((2, 2, 3, 3)))
    with pytest.raises(ValueError, match="4-D"):
        fd.conv2d(X[0], np.zeros((2, 3, 3, 3)))


# ------------------------------------------------------------------------------------------------ predict
def _digits_model(seed=0, dtype=np.float32):
    from fastconv import nn
    np.random.seed(seed)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Dropout(0.5), nn.Linear(4 * 8 * 8, 10))
    return m.to(dtype)


def test_predict_matches_the_in_memory_model_in_eval_mode():
    from fastconv.examples.digits import load_data
    x_tr, _, x_te, _ = load_data(size=16)
    x = np.concatenate([x_tr, x_te, x_tr])[:3000]
    model = _digits_model()
    model.train()
    lazy_out = fd.predict(model, lazy(x, 700), batch_size=128)
    assert model.training                                              # the caller's model keeps its mode
    model.eval()
    with fastconv.no_grad():
        want = model(x).data
    got = compute(lazy_out)
    assert got.shape == (3000, 10) and got.dtype == np.float32
    assert_close(got, want, 1e-5)
    assert np.array_equal(got.argmax(1), want.argmax(1))


def test_predict_errors():
    with pytest.raises(TypeError, match="Module"):
        fd.predict(lambda x: x, lazy(np.zeros((4, 1, 8, 8)), 2))
    with pytest.raises(ValueError, match="batch_size"):
        fd.predict(_digits_model(), lazy(np.zeros((4, 1, 8, 8)), 2), batch_size=0)


# ------------------------------------------------------------------------------- in-memory API refuses dask
@pytest.mark.parametrize("call", [
    lambda x: ff.gaussian(x, 1.0),
    lambda x: ff.correlate(x[0, 0], np.ones((3, 3))),
    lambda x: fastconv.conv2d(x, np.ones((1, 1, 3, 3))),
    lambda x: fastconv.max_pool2d(x, 2),
    lambda x: fastconv.Tensor(x),
    lambda x: _digits_model(dtype=np.float64)(x),
])
def test_in_memory_functions_refuse_dask_arrays_without_loading(call):
    calls = []
    x = da.from_array(np.zeros((1, 1, 16, 16)), chunks=8).map_blocks(lambda b: calls.append(b.size) or b,
                                                                        meta=np.empty((0,) * 4))
    with pytest.raises(TypeError, match="fastconv.dask"):
        call(x)
    assert not any(calls)                                              # nothing was computed


# --------------------------------------------------------------------------------------------- threads
def test_task_threads_share_the_cores():
    assert _overlap.task_threads(3) == 3
    with fastconv.num_threads(4):
        seen = []
        x = da.zeros((8,), chunks=1).map_blocks(lambda b: seen.append(_overlap.task_threads(ntasks=2)) or b)
        with dask.config.set(num_workers=2):
            x.compute(scheduler="threads")
        assert set(seen) == {2}


def test_threaded_scheduler_gives_the_same_result():
    img = rng(17).standard_normal((40, 30))
    x = lazy(img, (7, 9))
    with dask.config.set(num_workers=2):
        got = fd.gaussian(x, 2.0, mode="mirror").compute(scheduler="threads")
    assert_close(got, ff.gaussian(img, 2.0, mode="mirror"))


# ------------------------------------------------------------------------------ Zarr, TIFF stacks, the CLI
def test_zarr_backed_arrays_and_wrap_slabs(tmp_path):
    zarr = pytest.importorskip("zarr")
    img = rng(18).standard_normal((30, 26)).astype(np.float32)
    z = zarr.create_array(store=str(tmp_path / "a.zarr"), shape=img.shape, chunks=(7, 9), dtype="f4")
    z[:] = img
    x = da.from_zarr(z)
    for mode in BASE_MODES:
        assert_close(compute(fd.gaussian(x, 2.0, mode=mode)), ff.gaussian(img, 2.0, mode=mode), 1e-6)


def test_cli_filters_zarr_and_tiff_stacks_chunk_by_chunk(tmp_path, capsys):
    zarr = pytest.importorskip("zarr")
    tifffile = pytest.importorskip("tifffile")
    from fastconv.cli import main
    vol = rng(19).random((12, 20, 18)).astype(np.float32)
    z = zarr.create_array(store=str(tmp_path / "v.zarr"), shape=vol.shape, chunks=(5, 8, 8), dtype="f4")
    z[:] = vol
    tifffile.imwrite(str(tmp_path / "s.tif"), vol)
    out = str(tmp_path / "g.zarr")
    assert main(["filter", str(tmp_path / "v.zarr"), out, "--gaussian", "2", "--chunks", "4"]) == 0
    assert_close(zarr.open_array(out, mode="r")[:], ff.gaussian(vol, 2.0, preserve_range=True), 1e-6)
    assert "block" in capsys.readouterr().err                           # the progress bar
    assert main(["filter", str(tmp_path / "s.tif"), str(tmp_path / "e.tif"), "--sobel", "--mode", "wrap",
                 "--no-progress"]) == 0
    assert_close(tifffile.imread(str(tmp_path / "e.tif")), ff.sobel(vol, mode="wrap"), 1e-6)
    assert main(["filter", str(tmp_path / "s.tif"), str(tmp_path / "k.zarr"), "--kernel", "sharpen",
                 "--no-progress"]) == 0
    want = ff.apply_kernel(vol, ff.kernels["sharpen"][None], preserve_range=True)
    assert_close(zarr.open_array(str(tmp_path / "k.zarr"), mode="r")[:], want, 1e-6)
    capsys.readouterr()
    assert main(["filter", str(tmp_path / "v.zarr"), out, "--gaussian", "1", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["filter", str(tmp_path / "v.zarr"), str(tmp_path / "o.png"), "--gaussian", "1"]) == 2
    assert "Zarr" in capsys.readouterr().err


# --------------------------------------------------------------------------- the cluster (scaled down)
def _worker_task_threads():
    return _overlap.task_threads()


def test_local_cluster_gaussian_of_a_zarr_volume_matches_in_memory_and_dask_image(tmp_path):
    """The acceptance run of bench/bench_dask.py, scaled down: a Zarr volume through a LocalCluster of 2 worker
    processes with a memory limit, written to Zarr; equal to the in-memory filter and to dask-image."""
    zarr = pytest.importorskip("zarr")
    distributed = pytest.importorskip("distributed")
    ndfilters = pytest.importorskip("dask_image.ndfilters")
    vol = rng(20).random((48, 40, 36)).astype(np.float32)
    src = zarr.create_array(store=str(tmp_path / "in.zarr"), shape=vol.shape, chunks=(16, 16, 16), dtype="f4",
                            compressors=None)
    src[:] = vol
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1GiB", processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        assert set(client.run(_worker_task_threads).values()) == {1}   # nanny: OMP_NUM_THREADS=1
        x = da.from_zarr(zarr.open_array(str(tmp_path / "in.zarr"), mode="r"))
        outs = {}
        for which, res in [("fastconv", fd.gaussian(x, 4, mode="reflect", preserve_range=True)),
                           ("dask_image", ndfilters.gaussian_filter(x, 4, mode="reflect"))]:
            out = zarr.create_array(store=str(tmp_path / (which + ".zarr")), shape=vol.shape, chunks=(16, 16, 16),
                                    dtype="f4")
            da.store(res, out, lock=False)
            outs[which] = out[:]
        shares = fd.set_worker_threads(client)
        assert len(shares) == 2 and all(v >= 1 for v in shares.values())
    want = ff.gaussian(vol, 4, mode="reflect", preserve_range=True)
    assert_close(outs["fastconv"], want, 1e-6)
    assert_close(outs["dask_image"], want, 1e-5)


# ------------------------------------------------------------------------- fastconv.ndimage, every filter
def _ndimage_cases():
    w2 = np.array([[1.0, -2.0, 0.5], [0.25, 3.0, -1.0], [2.0, 0.0, 1.5], [-0.5, 1.0, 0.75]])
    w1 = np.array([1.0, -2.0, 0.5, 3.0])
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    return [
        ("correlate", (w2,), {"origin": (1, -1)}),
        ("convolve", (w2,), {"origin": (-2, 0)}),
        ("correlate1d", (w1,), {"axis": 0, "origin": -1}),
        ("convolve1d", (w1,), {"axis": 1}),
        ("gaussian_filter", ((2.0, 0.8),), {"order": (0, 1)}),
        ("gaussian_filter1d", (2.5,), {"axis": 1, "order": 2}),
        ("gaussian_laplace", (1.5,), {}),
        ("gaussian_gradient_magnitude", (1.2,), {"truncate": 3.0}),
        ("laplace", (), {}),
        ("sobel", (), {"axis": 0}),
        ("prewitt", (), {"axis": 1}),
        ("uniform_filter", (), {"size": (4, 3), "origin": (1, 0)}),
        ("uniform_filter1d", (5,), {"axis": 0, "origin": 2}),
        ("minimum_filter", (), {"size": 4}),
        ("maximum_filter", (), {"footprint": cross, "origin": (0, 1)}),
        ("minimum_filter1d", (3,), {"axis": 1}),
        ("maximum_filter1d", (4,), {"axis": 0, "origin": 1}),
        ("median_filter", (), {"size": 3}),
        ("rank_filter", (-2,), {"size": (3, 4)}),
        ("percentile_filter", (30,), {"footprint": cross}),
    ]


@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt")     # int16 squares wrap, in memory too
@pytest.mark.parametrize("mode", BASE_MODES)
@pytest.mark.parametrize("case", _ndimage_cases(), ids=lambda c: c[0])
def test_ndimage_filters_equal_in_memory_every_mode_and_chunking(case, mode):
    ndi = pytest.importorskip("fastconv.ndimage")
    fdn = pytest.importorskip("fastconv.dask.ndimage")
    name, args, kw = case
    r = rng(21)
    img = r.standard_normal((23, 17))
    ints = r.integers(-500, 500, (23, 17)).astype(np.int16)
    for chunks in [((5, 1, 9, 8), (2, 13, 2)), ((1, 1, 2, 19), (3, 3, 3, 3, 3, 2))]:
        want = getattr(ndi, name)(img, *args, mode=mode, cval=0.6, **kw)
        got = getattr(fdn, name)(lazy(img, chunks), *args, mode=mode, cval=0.6, **kw)
        assert got.chunks == lazy(img, chunks).chunks
        assert_close(compute(got), want)
        want = getattr(ndi, name)(ints, *args, mode=mode, cval=3, **kw)
        got = compute(getattr(fdn, name)(lazy(ints, chunks), *args, mode=mode, cval=3, **kw))
        assert got.dtype == want.dtype and np.array_equal(got, want)        # integer outputs bit-equal


def test_ndimage_output_dtypes_axes_per_axis_modes_and_generic_filters():
    ndi = pytest.importorskip("fastconv.ndimage")
    fdn = pytest.importorskip("fastconv.dask.ndimage")
    r = rng(22)
    vol = r.standard_normal((9, 14, 11))
    x = lazy(vol, (2, 5, 4))
    want = ndi.gaussian_filter(vol, 1.5, output=np.float32, mode=("wrap", "mirror", "constant"), axes=None)
    got = compute(fdn.gaussian_filter(x, 1.5, output=np.float32, mode=("wrap", "mirror", "constant")))
    assert got.dtype == np.float32
    assert_close(got, want, 1e-6)
    want = ndi.uniform_filter(vol, 3, mode=("wrap", "nearest"), axes=(0, 2))
    assert_close(compute(fdn.uniform_filter(x, 3, mode=("wrap", "nearest"), axes=(0, 2))), want)
    want = ndi.generic_laplace(vol, lambda a, axis, output, mode, cval: ndi.correlate1d(a, [1, -2, 1], axis,
                                                                                          output, mode, cval))
    got = fdn.generic_laplace(x, lambda a, axis, output, mode, cval: ndi.correlate1d(a, [1, -2, 1], axis, output,
                                                                                     mode, cval), halo=1)
    assert_close(compute(got), want)
    want = ndi.generic_gradient_magnitude(vol, ndi.sobel, mode="wrap")
    assert_close(compute(fdn.generic_gradient_magnitude(x, ndi.sobel, mode="wrap", halo=1)), want)
    with pytest.raises(TypeError, match="halo="):
        fdn.generic_laplace(x, lambda *a: None)
    with pytest.raises(TypeError, match="dtype"):
        fdn.gaussian_filter(x, 1.0, output=np.empty(vol.shape))
    with pytest.raises(TypeError, match="fastconv.dask"):
        ndi.gaussian_filter(x, 1.0)


def test_skimage_filters_of_the_second_wave():
    pytest.importorskip("fastconv.filters.rank")
    r = rng(23)
    img = r.random((26, 21))
    mask = r.random((26, 21)) > 0.2
    x, m = lazy(img, (7, 4)), lazy(mask, 5)
    for name in ["sobel_h", "sobel_v", "prewitt_h", "prewitt_v", "scharr_h", "scharr_v", "farid_h", "farid_v",
                 "roberts", "roberts_pos_diag", "roberts_neg_diag"]:
        assert_close(compute(getattr(fd, name)(x)), getattr(ff, name)(img))
        assert_close(compute(getattr(fd, name)(x, mask=m)), getattr(ff, name)(img, mask=mask))
    for mode in BASE_MODES:
        assert_close(compute(fd.farid(x, mode=mode, cval=0.3)), ff.farid(img, mode=mode, cval=0.3))
        assert_close(compute(fd.difference_of_gaussians(x, 1.0, 2.5, mode=mode)),
                     ff.difference_of_gaussians(img, 1.0, 2.5, mode=mode))
        assert_close(compute(fd.median(x, np.ones((3, 4)), mode=mode)), ff.median(img, np.ones((3, 4)), mode=mode))
    u8 = (img * 255).astype(np.uint8)
    xu = lazy(u8, (6, 5))
    assert np.array_equal(compute(fd.median(xu, behavior="rank")), ff.median(u8, behavior="rank"))
    fp = np.ones((3, 5), np.uint8)
    for kind in ["minimum", "maximum", "median"]:
        want = getattr(ff.rank, kind)(u8, fp, mask=mask, shift_x=1, shift_y=-1)
        got = compute(getattr(fd.rank, kind)(xu, fp, mask=m, shift_x=1, shift_y=-1))
        assert np.array_equal(got, want)


def test_result_array_memory_returns_only_when_every_view_is_gone():
    import gc
    _overlap._results.clear()
    a = _overlap.result_array((6, 7), np.float64)
    assert a.shape == (6, 7) and a.dtype == np.float64 and a.flags.c_contiguous and a.flags.writeable
    a[...] = 3.0
    views = [a[1:].T[::2], a.reshape(-1)[5:]]
    addr = a.__array_interface__["data"][0]
    del a
    gc.collect()
    assert not _overlap._results.get(6 * 7 * 8)          # the views still read it
    b = _overlap.result_array((6, 7), np.float64)
    assert b.__array_interface__["data"][0] != addr      # so a new result gets other memory
    assert np.all(views[0] == 3.0) and np.all(views[1] == 3.0)
    del views
    gc.collect()
    assert len(_overlap._results[6 * 7 * 8]) == 1
    c = _overlap.result_array((42,), np.float64)           # same size: the freed memory again
    assert c.__array_interface__["data"][0] == addr and c.shape == (42,)
    assert _overlap.result_array((0, 3), np.float32).shape == (0, 3)
    del b, c
    gc.collect()
    assert len(_overlap._results[6 * 7 * 8]) <= _overlap.RESULTS_KEPT


def test_gaussian_blocks_equal_in_memory_with_reused_results():
    """Blocks computed one after another reuse freed results; every block must still hold its own values."""
    rng = np.random.default_rng(5)
    img = rng.random((40, 33, 29)).astype(np.float32)
    x = da.from_array(img, chunks=(16, 11, 29))
    want = ff.gaussian(img, 2.0, preserve_range=True)
    with dask.config.set(scheduler="synchronous"):
        blocks = [fd.gaussian(x, 2.0, preserve_range=True).blocks[i].compute() for i in range(3)]
        whole = fd.gaussian(x, 2.0, preserve_range=True).compute()
    np.testing.assert_array_equal(whole, want)
    np.testing.assert_array_equal(np.concatenate(blocks, axis=0), want)


def test_halos_of_a_zarr_source_come_from_a_second_read(tmp_path):
    """Blocks read from storage are read again for their halos (so a block is held only until its own output
    task, not until its neighbours'); a computed source is never computed twice."""
    zarr = pytest.importorskip("zarr")
    rng = np.random.default_rng(3)
    img = rng.random((30, 26, 21)).astype(np.float32)
    z = zarr.create_array(store=str(tmp_path / "v.zarr"), shape=img.shape, chunks=(8, 13, 21), dtype="float32")
    z[...] = img
    x = da.from_zarr(str(tmp_path / "v.zarr"))
    assert _overlap._getter_reads(x) is not None
    second = _overlap.halo_source(x)
    assert second.name != x.name and second.chunks == x.chunks
    computed = x + 1
    assert _overlap._getter_reads(computed) is None and _overlap.halo_source(computed) is computed
    assert _overlap._getter_reads(da.ones((4, 4), chunks=2)) is None

    got = fd.gaussian(x, 1.5, mode="reflect", preserve_range=True)
    reads = [n for n in got.dask.layers if n.startswith("from-zarr")]
    assert len(reads) == 2                                   # the blocks' own reads and the halos' reads
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(got.compute(), ff.gaussian(img, 1.5, mode="reflect", preserve_range=True))
        calls = []

        def counted(a):
            calls.append(a.shape)
            return a + 1
        lazy = x.map_blocks(counted, dtype=x.dtype)
        res = fd.gaussian(lazy, 1.5, mode="reflect", preserve_range=True).compute()
    np.testing.assert_array_equal(res, ff.gaussian(img + 1, 1.5, mode="reflect", preserve_range=True))
    assert len([c for c in calls if 0 not in c]) == x.npartitions     # each computed block once (and dask's meta probe)


def test_uncompressed_zarr_chunks_are_memory_mapped(tmp_path):
    """The chunks of an uncompressed Zarr array in a local directory are files of raw values: their reads are
    memory maps (read-only, a few milliseconds where a read into fresh memory took 60-250 ms), for the blocks and
    for the halos' second reads; chunks never written (the fill value), selections across chunks and compressed
    arrays go through zarr.  Results equal the in-memory filter whatever the chunking."""
    zarr = pytest.importorskip("zarr")
    rng = np.random.default_rng(4)
    img = rng.random((30, 26, 21)).astype(np.float32)
    path = str(tmp_path / "raw.zarr")
    z = zarr.create_array(store=path, shape=img.shape, chunks=(8, 13, 9), dtype="float32", compressors=None,
                          fill_value=0.5)
    z[:24] = img[:24]                                    # the last chunks along axis 0 are never written
    want_img = img.copy()
    want_img[24:] = 0.5
    x = da.from_zarr(path)
    assert _overlap._chunk_files(z) is not None and _overlap._chunk_files(x.dask[_overlap._getter_reads(x)])
    packed = zarr.create_array(store=str(tmp_path / "zstd.zarr"), shape=img.shape, chunks=(8, 13, 9),
                               dtype="float32")
    assert _overlap._chunk_files(packed) is None and _overlap._chunk_files(img) is None

    block = _overlap._read_mapped(z, (slice(8, 16), slice(13, 26), slice(9, 18)))
    np.testing.assert_array_equal(block, img[8:16, 13:26, 9:18])
    assert type(block) is np.ndarray and not block.flags.writeable
    across = _overlap._read_mapped(z, (slice(4, 12), slice(0, 13), slice(0, 9)))     # two chunks: zarr reads
    np.testing.assert_array_equal(across, img[4:12, :13, :9])
    np.testing.assert_array_equal(_overlap._read_mapped(z, (slice(24, 30), slice(0, 13), slice(0, 9))),
                                  want_img[24:30, :13, :9])                          # no file: the fill value

    mapped = _overlap.mapped_source(x)
    assert mapped.name.startswith("mapped-") and _overlap._getter_reads(mapped) is not None
    halo = _overlap.halo_source(mapped)
    assert halo.name.startswith("mapped-") and halo.name != mapped.name
    for chunks in ((8, 13, 9), (5, 7, 21), (30, 4, 4)):
        src = da.from_zarr(path) if chunks == (8, 13, 9) else da.from_zarr(path).rechunk(chunks)
        got = fd.gaussian(src, 1.5, mode="mirror", preserve_range=True)
        with dask.config.set(scheduler="threads"):
            np.testing.assert_array_equal(got.compute(), ff.gaussian(want_img, 1.5, mode="mirror",
                                                                     preserve_range=True))
    reads = [n for n in fd.gaussian(x, 1.5).dask.layers if n.startswith(("mapped-", "from-zarr"))]
    assert len(reads) == 2 and all(n.startswith("mapped-") for n in reads)
    # one chunk and a filter that reads no neighbour: the block is the slab, copied (never a read-only result)
    one = zarr.create_array(store=str(tmp_path / "one.zarr"), shape=(6, 5), chunks=(6, 5), dtype="float64",
                            compressors=None)
    one[...] = img[0, :6, :5]
    with dask.config.set(scheduler="synchronous"):
        res = fd.ndimage.uniform_filter(da.from_zarr(str(tmp_path / "one.zarr")), size=1).compute()
    np.testing.assert_array_equal(res, img[0, :6, :5])
    assert res.flags.writeable
