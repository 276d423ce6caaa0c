"""The ``fft`` algorithm: the documented error bounds, overlap-save tiling, polyphase strides, both channel-sum
paths, gradients and transposed convolution against tests/reference.py, the direct algorithm and torch; thread
determinism and the cost model's choice for ``algorithm="auto"``."""
import zlib

import numpy as np
import pytest

import fastconv as fc
import reference as ref
from fastconv import _algorithms
from fastconv._algos import fft as F
from fastconv._kernels import as_5d
from test_conv_transpose import CONVT
from test_grad import CONV, GRAD_IN, GRAD_W

# The documented bound: max |error| <= BOUND * max |exact| on unit-scale data.
BOUND = {np.float32: 1e-4, np.float64: 1e-10}

# (N, C, K, groups, spatial, kernel, stride, padding, dilation): non-square and even kernels, odd sizes, stride,
# dilation (also sharing a factor with the stride), groups incl. depthwise, every padding form, 1-D/2-D/3-D.
GRID = [
    (2, 3, 4, 1, (23,), (4,), 1, 0, 1),
    (1, 4, 6, 2, (31,), (5,), 3, ((2, 1),), 2),
    (2, 2, 3, 1, (19,), (6,), 2, "same", 2),
    (2, 3, 5, 1, (13, 11), (4, 3), 1, 1, 1),
    (1, 4, 8, 2, (14, 17), (2, 5), (2, 1), (1, 2), (1, 2)),
    (1, 6, 6, 6, (12, 9), (3, 3), 2, "same", 1),
    (2, 3, 9, 3, (15, 12), (5, 3), (3, 2), ((2, 0), (1, 3)), (1, 2)),
    (1, 2, 3, 1, (16, 13), (3, 3), 2, 2, 2),
    (1, 2, 4, 1, (9, 10), (1, 1), 1, 0, 1),
    (1, 2, 3, 1, (7, 8, 6), (2, 3, 2), (1, 2, 1), 1, 1),
    (2, 4, 6, 2, (6, 7, 8), (3, 1, 2), 2, ((1, 0), (0, 1), (2, 2)), (1, 1, 2)),
    # padding beyond the stride and the kernel: the adjoint's tiles start past the low padding
    (1, 2, 3, 1, (10, 9), (3, 2), (2, 3), ((7, 1), (5, 6)), 1),
    (2, 1, 2, 1, (3, 17), (2, 31), 1, ((9, 0), (15, 15)), (1, 1)),
]


def _case(case, dtype):
    N, C, K, g, sp, ks, stride, padding, dilation = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x = rng.uniform(-1, 1, (N, C) + sp).astype(dtype)
    w = rng.uniform(-1, 1, (K, C // g) + ks).astype(dtype)
    b = rng.uniform(-1, 1, K).astype(dtype)
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=g)


def _within_bound(got, want, dtype):
    scale = float(np.abs(want).max())
    err = float(np.abs(np.asarray(got, np.float64) - want).max())
    assert err <= BOUND[dtype] * scale, "error %.3g x max|ref| exceeds %.0e" % (err / scale, BOUND[dtype])


@pytest.fixture
def plan_mode(monkeypatch):
    """Force the planner: 'tiles' = tiles of 4 outputs per axis (many tiles), 'lanes' = also one tile per chunk
    (many chunks in every lane) and the transpose + GEMM channel sum.  Caches are cleared around the test."""

    def force(mode):
        if mode in ("tiles", "lanes"):
            monkeypatch.setattr(F, "_length_candidates", lambda Q, span: [Q + 3])
        if mode == "lanes":
            monkeypatch.setattr(F, "WORKSPACE_BYTES", 1)
            for c in F.COST.values():
                monkeypatch.setitem(c, "gemm", 0.0)
                monkeypatch.setitem(c, "call", 0.0)
        F._plan.cache_clear()
        F._tables.cache_clear()

    yield force
    F._plan.cache_clear()
    F._tables.cache_clear()


MODES = ["default", "tiles", "lanes"]


# ------------------------------------------------------------------------------------------- against the reference
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GRID, ids=[str(i) for i in range(len(GRID))])
def test_forward_and_gradients_match_reference(plan_mode, mode, dtype, case):
    plan_mode(mode)
    x, w, b, kw = _case(case, dtype)
    nd = x.ndim - 2
    y = CONV[nd](x, w, b, **kw, algorithm="fft")
    assert y.dtype == dtype
    _within_bound(y, ref.conv_nd(x, w, b, **kw), dtype)
    geom = fc.ConvGeometry.make(x.shape, w.shape, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    gy = np.random.default_rng(1).uniform(-1, 1, y.shape).astype(dtype)
    gx = GRAD_IN[nd](x.shape, w, gy, **kw, algorithm="fft")
    _within_bound(gx, ref.conv_grad_input_nd(x.shape, w, gy, kw["stride"], geom.padding, kw["dilation"],
                                             kw["groups"]), dtype)
    gw = GRAD_W[nd](x, w.shape, gy, **kw, algorithm="fft")
    _within_bound(gw, ref.conv_grad_weight_nd(x, gy, w.shape, kw["stride"], [list(p) for p in geom.padding],
                                              kw["dilation"], kw["groups"]), dtype)


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_padding_modes_and_flip_match_reference(plan_mode, padding_mode, flip, nd):
    plan_mode("tiles")
    rng = np.random.default_rng(nd)
    x = rng.uniform(-1, 1, (2, 4) + (11, 9, 7)[:nd])
    w = rng.uniform(-1, 1, (6, 2) + (4, 3, 2)[:nd])
    pad = ((2, 1), (1, 2), (0, 1))[:nd]
    y = CONV[nd](x, w, None, 1, pad, 1, 2, padding_mode=padding_mode, flip=flip, algorithm="fft")
    want = ref.conv_nd(x, w, None, 1, pad, 1, 2, padding_mode=padding_mode, flip=flip)
    _within_bound(y, want, np.float64)


def test_flip_matches_scipy_convolve():
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(3)
    img = rng.uniform(-1, 1, (70, 61)).astype(np.float32)
    ker = rng.uniform(-1, 1, (9, 14)).astype(np.float32)
    y = fc.conv2d(img[None, None], ker[None, None], padding="same", flip=True, algorithm="fft")[0, 0]
    # 'same' pads total k - 1 with the odd element on the right, so output i is full-convolution index
    # i + k - 1 - pad_lo: offsets 8 - 4 and 13 - 6
    full = signal.convolve2d(img.astype(np.float64), ker.astype(np.float64), mode="full")
    want = full[4:4 + 70, 7:7 + 61]
    _within_bound(y, want, np.float32)


# ------------------------------------------------------------------------------------------- large kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kernel,kw", [
    ((1, 2, 96, 80), (3, 2, 63, 63), dict(padding="same")),
    ((2, 3, 70, 75), (4, 3, 31, 47), dict(stride=(2, 3), padding=(5, 20), dilation=(1, 1))),
    ((1, 4, 45, 50), (4, 2, 15, 12), dict(dilation=2, padding=6, groups=2)),
    ((2, 3, 700), (5, 3, 63), dict(padding="same")),
    ((1, 2, 20, 22, 24), (3, 2, 9, 11, 7), dict(padding=(4, 5, 3))),
])
def test_error_bound_against_direct(dtype, shape, kernel, kw):
    rng = np.random.default_rng(sum(shape) + sum(kernel))
    x = rng.uniform(-1, 1, shape).astype(dtype)
    w = rng.uniform(-1, 1, kernel).astype(dtype)
    nd = len(shape) - 2
    want = CONV[nd](x.astype(np.float64), w.astype(np.float64), **kw, algorithm="direct")
    _within_bound(CONV[nd](x, w, **kw, algorithm="fft"), want, dtype)


def test_large_input_is_tiled():
    # a large image with a small kernel: overlap-save tiles, not one transform of the whole padded image
    geom = fc.ConvGeometry.make((1, 1, 2048, 2048), (1, 1, 15, 15), padding="same")
    plan = F._plan(geom, "forward", 4)
    assert min(plan.T[1:]) > 1 and max(plan.L) < 2048
    assert plan.chunk * 4 * prod_l(plan) <= F.WORKSPACE_BYTES
    x = np.random.default_rng(0).uniform(-1, 1, (1, 1, 300, 280)).astype(np.float32)
    w = np.random.default_rng(1).uniform(-1, 1, (1, 1, 7, 5)).astype(np.float32)
    _within_bound(fc.conv2d(x, w, padding=3, algorithm="fft"),
                  fc.conv2d(x.astype(np.float64), w.astype(np.float64), padding=3, algorithm="direct"), np.float32)


def prod_l(plan):
    return int(np.prod(plan.L))


def test_kernel_spectrum_memory_is_bounded():
    # 512 x 512 channels: the tiles shrink so that the kernel spectrum (and the weight gradient's) stays bounded
    geom = fc.ConvGeometry.make((1, 512, 200, 200), (512, 512, 5, 5), padding=2)
    for op in _algorithms.OPS:
        plan = F._plan(geom, op, 4)
        copies = F.LANES + 1 if op == "grad_weight" else 1
        assert copies * 512 * 512 * plan.F * 8 <= F.MAX_SPECTRUM_BYTES


def test_phases_untouched_by_the_kernel_are_dropped():
    # stride 2 and dilation 2: every tap lands on even positions, one phase per axis instead of two
    geom = fc.ConvGeometry.make((1, 2, 20, 21), (3, 2, 3, 3), stride=2, dilation=2)
    assert F._plan(geom, "forward", 8).R == 1
    geom = fc.ConvGeometry.make((1, 2, 20, 21), (3, 2, 3, 3), stride=(2, 3), dilation=1)
    assert F._plan(geom, "forward", 8).R == 6


# ------------------------------------------------------------------------------------------- torch parity
@pytest.mark.parametrize("mode", ["default", "lanes"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_forward_and_autograd_match_torch(plan_mode, mode, nd):
    torch = pytest.importorskip("torch")
    plan_mode(mode)
    Fn = torch.nn.functional
    rng = np.random.default_rng(10 + nd)
    x = rng.uniform(-1, 1, (2, 4) + (17, 14, 9)[:nd])
    w = rng.uniform(-1, 1, (6, 2) + (5, 4, 3)[:nd])
    b = rng.uniform(-1, 1, 6)
    kw = dict(stride=(2, 1, 2)[:nd], padding=(2, 1, 1)[:nd], dilation=(1, 2, 1)[:nd], groups=2)
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    yt = {1: Fn.conv1d, 2: Fn.conv2d, 3: Fn.conv3d}[nd](xt, wt, torch.tensor(b), **kw)
    gy = rng.uniform(-1, 1, tuple(yt.shape))
    yt.backward(torch.tensor(gy))
    _within_bound(CONV[nd](x, w, b, **kw, algorithm="fft"), yt.detach().numpy(), np.float64)
    _within_bound(GRAD_IN[nd](x.shape, w, gy, **kw, algorithm="fft"), xt.grad.numpy(), np.float64)
    _within_bound(GRAD_W[nd](x, w.shape, gy, **kw, algorithm="fft"), wt.grad.numpy(), np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_kernel_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (1, 3, 64, 60)).astype(dtype)
    w = rng.uniform(-1, 1, (4, 3, 31, 31)).astype(dtype)
    want = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
                                      padding=15).numpy()
    _within_bound(fc.conv2d(x, w, padding=15, algorithm="fft"), want, dtype)


@pytest.mark.parametrize("mode", ["default", "tiles"])
@pytest.mark.parametrize("nd,kw", [
    (1, dict(stride=3, padding=2, output_padding=1, groups=2, dilation=2)),
    (2, dict(stride=(2, 3), padding=(1, 2), output_padding=(1, 0), groups=1, dilation=(2, 1))),
    (2, dict(stride=2, padding=0, output_padding=0, groups=4, dilation=1)),
    (3, dict(stride=(1, 2, 2), padding=1, output_padding=(0, 1, 1), groups=2, dilation=1)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_transpose_matches_torch(plan_mode, mode, nd, kw, dtype):
    torch = pytest.importorskip("torch")
    plan_mode(mode)
    Fn = torch.nn.functional
    rng = np.random.default_rng(nd + kw["groups"])
    x = rng.uniform(-1, 1, (2, 4) + (9, 8, 6)[:nd]).astype(dtype)
    w = rng.uniform(-1, 1, (4, 6 // 2 if kw["groups"] == 2 else 3) + (4, 3, 2)[:nd]).astype(dtype)
    b = rng.uniform(-1, 1, w.shape[1] * kw["groups"]).astype(dtype)
    tfn = {1: Fn.conv_transpose1d, 2: Fn.conv_transpose2d, 3: Fn.conv_transpose3d}[nd]
    want = tfn(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
               torch.from_numpy(b.astype(np.float64)), **kw).numpy()
    got = CONVT[nd](x, w, b, **kw, algorithm="fft")
    assert got.dtype == dtype and got.shape == want.shape
    _within_bound(got, want, dtype)


# ------------------------------------------------------------------------------------------- threads, inputs
@pytest.mark.parametrize("mode", ["default", "lanes"])
def test_results_do_not_depend_on_thread_count(plan_mode, mode):
    plan_mode(mode)
    rng = np.random.default_rng(8)
    x = rng.uniform(-1, 1, (2, 6, 30, 27)).astype(np.float32)
    w = rng.uniform(-1, 1, (8, 3, 7, 6)).astype(np.float32)
    kw = dict(stride=(1, 2), padding=3, groups=2)
    gy = rng.uniform(-1, 1, fc.conv_output_shape(x.shape, w.shape, **kw)).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        with fc.num_threads(n):
            results.append((fc.conv2d(x, w, **kw, algorithm="fft"),
                            fc.grad.conv2d_input(x.shape, w, gy, **kw, algorithm="fft"),
                            fc.grad.conv2d_weight(x, w.shape, gy, **kw, algorithm="fft")))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blas_channel_sum_matches_direct(monkeypatch, dtype):
    # enough channels that the per-frequency products go to BLAS (not the small-matrix loop), all three ops,
    # bitwise equal for 1 and 2 threads
    for c in F.COST.values():
        monkeypatch.setitem(c, "gemm", 0.0)
        monkeypatch.setitem(c, "call", 0.0)
    F._plan.cache_clear()
    rng = np.random.default_rng(12)
    x = rng.uniform(-1, 1, (3, 48, 14, 13)).astype(dtype)
    w = rng.uniform(-1, 1, (32, 24, 5, 4)).astype(dtype)
    kw = dict(stride=(2, 1), padding=(2, 1), groups=2)
    geom = fc.ConvGeometry.make(x.shape, w.shape, **kw)
    for op in _algorithms.OPS:
        plan = F._plan(geom, op, x.itemsize)
        assert plan.gemm and plan.Kg * plan.Cs * min(plan.chunk, plan.tiles) >= F._fft.SMALL_MACS
    gy = rng.uniform(-1, 1, geom.output_shape).astype(dtype)
    runs = []
    for n in (1, 2):
        with fc.num_threads(n):
            runs.append((fc.conv2d(x, w, **kw, algorithm="fft"),
                         fc.grad.conv2d_input(x.shape, w, gy, **kw, algorithm="fft"),
                         fc.grad.conv2d_weight(x, w.shape, gy, **kw, algorithm="fft")))
    F._plan.cache_clear()
    x64, w64, gy64 = x.astype(np.float64), w.astype(np.float64), gy.astype(np.float64)
    want = (fc.conv2d(x64, w64, **kw, algorithm="direct"),
            fc.grad.conv2d_input(x.shape, w64, gy64, **kw, algorithm="direct"),
            fc.grad.conv2d_weight(x64, w.shape, gy64, **kw, algorithm="direct"))
    for got, other, ref_ in zip(runs[0], runs[1], want):
        np.testing.assert_array_equal(got, other)
        _within_bound(got, ref_, dtype)


def test_gather_and_scatter_kernels_are_race_free(plan_mode):
    # many small tiles, repeated: every run with 2 threads must equal the 1-thread run bit for bit (a tile index
    # shared between threads once corrupted tiles only now and then)
    plan_mode("tiles")
    rng = np.random.default_rng(13)
    x = rng.uniform(-1, 1, (3, 4, 40, 37)).astype(np.float32)
    geom = fc.ConvGeometry.make(x.shape, (4, 4, 5, 4), stride=(1, 2), padding=2)
    for op in ("forward", "grad_input"):
        plan = F._plan(geom, op, 4)
        tabs, maps = F._tables(plan)
        src = x if op == "forward" else rng.uniform(-1, 1, geom.output_shape).astype(np.float32)
        channels = plan.C * plan.R if op == "forward" else plan.K
        M = plan.tiles
        buf1 = np.empty((M, channels) + plan.L, np.float32)
        F._fft.to_tiles(as_5d(src), buf1, *tabs, m0=0, T1=plan.T[0], T2=plan.T[1], T3=plan.T[2], nthreads=1)
        rows = plan.K if op == "forward" else plan.C * plan.R
        y = rng.uniform(-1, 1, (M, rows) + plan.B).astype(np.float32)
        dst_shape = geom.output_shape if op == "forward" else geom.input_shape
        R = (1, 1, 1) if op == "forward" else tuple(len(a.residues) for a in plan.axes)
        out1 = np.empty(dst_shape, np.float32)
        F._scatter(y, out1, maps, 0, R, None, 1)
        for _ in range(20):
            buf2 = np.empty_like(buf1)
            F._fft.to_tiles(as_5d(src), buf2, *tabs, m0=0, T1=plan.T[0], T2=plan.T[1], T3=plan.T[2], nthreads=2)
            np.testing.assert_array_equal(buf2, buf1)
            out2 = np.empty_like(out1)
            F._scatter(y, out2, maps, 0, R, None, 2)
            np.testing.assert_array_equal(out2, out1)


def test_inputs_are_not_modified_and_out_is_filled():
    rng = np.random.default_rng(9)
    x = rng.uniform(-1, 1, (2, 3, 20, 18))
    w = rng.uniform(-1, 1, (4, 3, 5, 4))
    gy = rng.uniform(-1, 1, (2, 4, 16, 15))
    copies = [a.copy() for a in (x, w, gy)]
    out = np.full((2, 4, 16, 15), np.nan)
    assert fc.conv2d(x, w, algorithm="fft", out=out) is out
    _within_bound(out, ref.conv_nd(x, w), np.float64)
    fc.grad.conv2d_input(x.shape, w, gy, algorithm="fft")
    fc.grad.conv2d_weight(x, w.shape, gy, algorithm="fft")
    for a, c in zip((x, w, gy), copies):
        np.testing.assert_array_equal(a, c)


# ------------------------------------------------------------------------------------------- cost model
def test_auto_prefers_fft_for_large_kernels_and_not_for_3x3():
    big = fc.ConvGeometry.make((1, 16, 256, 256), (16, 16, 31, 31), padding=15)
    image = fc.ConvGeometry.make((1, 1, 2048, 2048), (1, 1, 31, 31), padding="same")
    small = fc.ConvGeometry.make((8, 64, 56, 56), (64, 64, 3, 3), padding=1)
    depthwise = fc.ConvGeometry.make((1, 32, 112, 112), (32, 1, 3, 3), padding=1, groups=32)
    ffts = ("fft", "fft_tiles")          # the small-tile FFT is also an FFT algorithm
    for dtype in (np.float32, np.float64):
        assert _algorithms.choose(big, dtype).name in ffts
        assert _algorithms.choose(image, dtype).name in ffts
        assert _algorithms.choose(small, dtype).name not in ffts
        assert _algorithms.choose(depthwise, dtype).name not in ffts
    for op in _algorithms.OPS:
        assert F.cost(big, np.float32, op) < _algorithms.get("direct").cost(big, np.float32, op)
        assert 0 < F.cost(small, np.float32, op)
