"""The transform-domain algorithms: ``winograd`` (F(4, 3) per axis) and ``fft_tiles`` (small-tile FFT).

Parity with the naive reference and with torch for the forward pass and both gradients (strides and dilation
through polyphase phases, larger kernels through blocks, groups, every padding form, 1-D / 3-D, batch 1, the
batch-lane mode of small images), bitwise determinism across thread counts, the documented error bound, and the
reduced-accuracy switch that decides whether ``algorithm="auto"`` may take ``winograd``.
(The grids of test_conv / test_grad / test_threads / test_properties run these algorithms too.)
"""
import threading
import zlib
from fractions import Fraction

import numpy as np
import pytest

import fastconv as fc
import reference as ref
from fastconv import _algorithms, _kernels
from fastconv._algos import winograd as W

CONV = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
GRAD_IN = {1: fc.grad.conv1d_input, 2: fc.grad.conv2d_input, 3: fc.grad.conv3d_input}
GRAD_W = {1: fc.grad.conv1d_weight, 2: fc.grad.conv2d_weight, 3: fc.grad.conv3d_weight}
ALGS = ("winograd", "fft_tiles")
# relative to max |reference|: winograd's float32 error bound is far below 5e-5 on these sizes; fft_tiles rounds
# like a dot product
TOL = {("winograd", np.float32): 5e-5, ("fft_tiles", np.float32): 1e-5,
       ("winograd", np.float64): 1e-12, ("fft_tiles", np.float64): 1e-12}

# (N, C, K, groups, spatial, kernel, stride, padding, dilation)
GRID = [
    (2, 5, 7, 1, (13, 11), (3, 3), 1, 1, 1),                        # the plain 3x3 case, odd sizes
    (1, 4, 6, 2, (9, 14), (3, 3), 1, ((2, 0), (1, 3)), 1),            # batch 1, groups, per-side padding
    (2, 6, 6, 6, (10, 9), (3, 3), 1, "same", 1),                    # depthwise
    (1, 3, 8, 1, (12, 17), (5, 5), 1, 2, 1),                        # 5x5: blocks / 16-point tiles
    (2, 4, 5, 1, (16, 15), (7, 3), 1, "valid", 1),                  # non-square kernel
    (1, 3, 4, 1, (31, 29), (11, 11), 4, 0, 1),                      # AlexNet-like: polyphase
    (2, 4, 6, 2, (15, 14), (3, 3), 2, 1, 2),                        # stride and dilation
    (1, 3, 5, 1, (9, 8), (4, 2), (2, 1), (3, 1), (1, 2)),           # even kernel, padding > kernel
    (3, 4, 6, 1, (23,), (3,), 1, 1, 1),                             # 1-D F(4, 3)
    (2, 3, 4, 1, (19,), (5,), 3, "valid", 1),                       # 1-D strided
    (1, 3, 5, 1, (7, 6, 5), (3, 3, 3), 1, 1, 1),                    # 3-D
    (2, 4, 6, 2, (5, 7, 6), (3, 1, 2), (1, 2, 1), 1, 1),            # 3-D mixed axes
    (2, 8, 4, 1, (6, 6), (1, 1), 1, 0, 1),                          # 1x1: nothing to transform
    (20, 3, 4, 1, (14, 13), (5, 5), 1, 0, 1),                       # batch lanes: small images, many of them
    (17, 4, 6, 2, (9, 10), (3, 3), 2, 1, 1),                        # batch lanes, strided, groups
    (16, 6, 5, 1, (7, 9), (1, 1), 1, 1, 1),                         # batch lanes, nothing to transform
]


def _data(case, dtype):
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    N, C, K, g, sp, ks, stride, padding, dilation = case
    x = rng.standard_normal((N, C) + sp).astype(dtype)
    w = rng.standard_normal((K, C // g) + ks).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    geom = fc.ConvGeometry.make(x.shape, w.shape, stride, padding, dilation, g)
    gy = rng.standard_normal(geom.output_shape).astype(dtype)
    return x, w, b, gy, dict(stride=stride, padding=padding, dilation=dilation, groups=g), geom


def _rel(got, want):
    return float(np.abs(got - want).max() / max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GRID, ids=[str(i) for i in range(len(GRID))])
def test_forward_and_gradients_match_reference(alg, dtype, case):
    x, w, b, gy, kw, geom = _data(case, dtype)
    nd = x.ndim - 2
    rk = dict(kw, padding=geom.padding)
    y = CONV[nd](x, w, b, **kw, algorithm=alg)
    assert y.dtype == dtype and y.shape == geom.output_shape
    assert _rel(y, ref.conv_nd(x, w, b, **rk)) < TOL[alg, dtype]
    gx = GRAD_IN[nd](x.shape, w, gy, **kw, algorithm=alg)
    assert _rel(gx, ref.conv_grad_input_nd(x.shape, w, gy, **rk)) < TOL[alg, dtype]
    gw = GRAD_W[nd](x, w.shape, gy, **kw, algorithm=alg)
    assert _rel(gw, ref.conv_grad_weight_nd(x, gy, w.shape, **rk)) < TOL[alg, dtype]


def test_grid_covers_both_lane_modes_and_tile_lengths():
    """The grid reaches batch lanes, every FFT tile length the cost model picks here, and untransformed axes."""
    plans = [W._plan(_data(c, np.float32)[-1], "forward", 4) for c in GRID]
    assert any(p.batch for p in plans) and not all(p.batch for p in plans)
    assert {sum(p.act) for p in plans} == {0, 1, 2, 3}
    assert any(len(a.residues) > 1 for p in plans for a in p.axes)           # polyphase
    assert any(a.blocks > 1 for p in plans for a in p.axes)                  # 3-tap blocks
    lengths = {W.fft_plan(_data(c, np.float32)[-1], "forward", 4).L for c in GRID}
    assert len(lengths) >= 2


@pytest.mark.parametrize("alg", ALGS)
def test_out_argument_bias_and_untouched_inputs(alg):
    x, w, b, gy, kw, geom = _data((1, 3, 4, 1, (33, 30), (11, 11), 4, 0, 1), np.float32)
    x0, w0 = x.copy(), w.copy()
    out = np.full(geom.output_shape, np.nan, np.float32)
    assert fc.conv2d(x, w, b, **kw, algorithm=alg, out=out) is out
    assert _rel(out, ref.conv_nd(x, w, b, **dict(kw, padding=geom.padding))) < 1e-4
    # the input gradient of an 11x11 stride-4 layer: inputs past the last window get 0 up to the rounding of
    # the transforms (their zero comes out of a cancellation in the tile)
    gx = fc.grad.conv2d_input(x.shape, w, gy, **kw, algorithm=alg)
    last = (geom.output_size[0] - 1) * 4 + 11
    assert last < x.shape[2] and np.abs(gx[:, :, last:]).max() <= 1e-5 * np.abs(gx).max()
    assert np.array_equal(x, x0) and np.array_equal(w, w0)


def test_transposed_convolution_and_padding_modes():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 9, 11)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    for alg in ALGS:
        got = fc.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1, groups=2, algorithm=alg)
        want = fc.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1, groups=2, algorithm="direct")
        assert _rel(got, want) < 5e-5
        w2 = rng.standard_normal((5, 6, 3, 3)).astype(np.float32)
        for mode in ("reflect", "replicate", "circular"):
            got = fc.conv2d(x, w2, padding=(1, 2), padding_mode=mode, algorithm=alg)
            want = fc.conv2d(x, w2, padding=(1, 2), padding_mode=mode, algorithm="direct")
            assert _rel(got, want) < 5e-5


@pytest.mark.parametrize("alg", ALGS)
def test_matches_torch_forward_and_autograd(alg):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    for xs, ws, stride, padding in [((2, 16, 20, 18), (12, 16, 3, 3), 1, 1), ((20, 6, 14, 14), (16, 6, 5, 5), 1, 0),
                                     ((2, 3, 51, 47), (8, 3, 11, 11), 4, 2)]:
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        b = rng.standard_normal(ws[0]).astype(np.float32)
        xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
        yt = torch.nn.functional.conv2d(xt, wt, bt, stride, padding)
        g = rng.standard_normal(yt.shape).astype(np.float32)
        yt.backward(torch.from_numpy(g))
        xf, wf, bf = (fc.Tensor._wrap(a).requires_grad_() for a in (x, w, b))
        y = fc.nn.functional.conv2d(xf, wf, bf, stride=stride, padding=padding, algorithm=alg)
        y.backward(g)
        for got, want in ((y.data, yt.detach().numpy()), (xf.grad, xt.grad.numpy()), (wf.grad, wt.grad.numpy()),
                          (bf.grad, bt.grad.numpy())):
            assert _rel(got, want) < 1e-4


def _same(fn):
    res = []
    for n in (1, 2, 3, 5):       # 3 and 5 threads: more than the weight gradient's lanes, which split channels
        with fc.num_threads(n):
            res.append(fn())
    return all(r.tobytes() == res[0].tobytes() for r in res[1:])


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("case", [0, 3, 5, 13], ids=["3x3", "5x5", "polyphase", "batch-lanes"])
def test_bitwise_identical_for_any_thread_count(alg, case):
    x, w, b, gy, kw, geom = _data(GRID[case], np.float32)
    assert _same(lambda: fc.conv2d(x, w, b, **kw, algorithm=alg))
    assert _same(lambda: fc.grad.conv2d_input(x.shape, w, gy, **kw, algorithm=alg))
    assert _same(lambda: fc.grad.conv2d_weight(x, w.shape, gy, **kw, algorithm=alg))


def test_bitwise_across_threads_on_many_blocks():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 16, 40, 37)).astype(np.float32)
    w = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((4, 24, 40, 37)).astype(np.float32)
    assert W._plan(fc.ConvGeometry.make(x.shape, w.shape, 1, 1), "forward", 4).tiles > 8 * 16
    for alg in ALGS:
        assert _same(lambda: fc.conv2d(x, w, padding=1, algorithm=alg))
        assert _same(lambda: fc.grad.conv2d_weight(x, w.shape, gy, padding=1, algorithm=alg))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_filter_transform_reads_the_weights_directly(dtype):
    """Forward passes with the kernels themselves, and stride-1 input gradients (flipped kernels), transform the
    weights read in place (``filter_rows``): the same bits as from the float64 copy of the virtual kernels, with
    groups, non-square and 1-D / 3-D kernels; the others (polyphase) keep the copy."""
    rng = np.random.default_rng(9)
    for xs, ws, stride, groups in (((2, 8, 10, 10), (6, 4, 3, 3), 1, 2), ((2, 5, 9, 9), (7, 5, 3, 1), 1, 1),
                                   ((2, 4, 12), (6, 4, 3), 1, 1), ((1, 4, 6, 7, 8), (5, 4, 3, 3, 3), 1, 1),
                                   ((2, 4, 15, 15), (6, 4, 5, 5), 2, 1)):
        w = rng.standard_normal(ws).astype(dtype)
        geom = fc.ConvGeometry.make(xs, ws, stride, 1, 1, groups)
        for op in ("forward", "grad_input"):
            plan = W._plan(geom, op, np.dtype(dtype).itemsize)
            if stride > 1:
                assert plan.filter_rows is None
                continue
            rows, taps = plan.filter_rows
            U = np.empty((plan.NP, rows.size), dtype)
            W._wk.filters(W.G, W._NO_KERNELS, U, plan.act, 2, src=w.reshape(rows.size, -1), rows=rows, taps=taps)
            wv = W._virtual_kernels(w, plan)
            want = np.empty_like(U)
            W._wk.filters(W.G, wv, want, plan.act, 2)
            assert U.tobytes() == want.tobytes(), (xs, ws, op)
    # a 2-tap axis has blocks of 3 taps, one of them missing: its input gradient keeps the copy
    assert W._plan(fc.ConvGeometry.make((2, 3, 9, 9), (4, 3, 1, 2), 1, 1), "grad_input", 4).filter_rows is None


@pytest.mark.parametrize("kb", [64, 128])
@pytest.mark.parametrize("alg", ALGS)
def test_weight_gradient_channel_chunks_keep_the_bits(alg, kb, monkeypatch, request):
    """More threads than lanes split the output channels into chunks of whole GW_KB blocks (64, or 128 on CPUs with a
    small L2 cache): 160 channels (blocks of 64, 64, 32 or 128, 32) give the one-thread bits on 2 to 6 threads, and
    match the reference."""
    monkeypatch.setattr(W, "GW_KB", kb)
    W._cached_plan.cache_clear()
    W._fft_plan.cache_clear()
    request.addfinalizer(lambda: (W._cached_plan.cache_clear(), W._fft_plan.cache_clear()))
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((160, 8, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((2, 160, 12, 12)).astype(np.float32)
    plan = W._plan(fc.ConvGeometry.make(x.shape, w.shape, 1, 1), "grad_weight", 4)
    assert plan.KB == W.GW_KB < plan.kchunk and W._chunk(plan, 6) < plan.kchunk
    res = []
    for n in (1, 2, 3, 4, 6):
        with fc.num_threads(n):
            res.append(fc.grad.conv2d_weight(x, w.shape, gy, padding=1, algorithm=alg))
    assert all(r.tobytes() == res[0].tobytes() for r in res[1:])
    assert _rel(res[0], ref.conv_grad_weight_nd(x, gy, w.shape, padding=1)) < TOL[alg, np.float32]


def test_weight_gradient_of_fewer_blocks_than_lanes_splits_the_channels():
    """One block of tiles (8 images of 4 x 4 outputs: 32 tiles) leaves the second lane without work: two threads
    then split the output channels in whole KB blocks instead (else one thread does it all), with the one-thread
    bits on any number of threads, matching the reference."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((8, 16, 4, 4)).astype(np.float32)
    w = rng.standard_normal((160, 16, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((8, 160, 4, 4)).astype(np.float32)
    plan = W._plan(fc.ConvGeometry.make(x.shape, w.shape, 1, 1), "grad_weight", 4)
    assert plan.blocks == 1 < W.LANES
    assert W._chunk(plan, 2) < plan.kchunk and W._chunk(plan, 2) % plan.KB == 0
    assert W._chunk(plan, 1) == plan.kchunk
    assert _same(lambda: fc.grad.conv2d_weight(x, w.shape, gy, padding=1, algorithm="winograd"))
    got = fc.grad.conv2d_weight(x, w.shape, gy, padding=1, algorithm="winograd")
    assert _rel(got, ref.conv_grad_weight_nd(x, gy, w.shape, padding=1)) < TOL["winograd", np.float32]


def test_weight_gradient_blocks_grow_where_the_accumulators_outgrow_the_l2_cache(monkeypatch, request):
    """float32 accumulators of more than twice the L2 cache per lane take blocks as long as an even share of the
    lanes allows (up to GW_LONG_BLOCK tiles and GW_LONG_BYTES of buffers per thread): 128 channels on 28^2 images
    are two blocks of 208 tiles with a 512 KiB L2 cache, 64-tile blocks with 2 MiB; 64 channels, float64 and
    layers of few tiles keep 64-tile blocks.  The long blocks give the same bits on any number of threads and
    match the reference."""
    request.addfinalizer(W._cached_plan.cache_clear)

    def blocks(xs, ws, item, l2):
        monkeypatch.setattr(W._measure, "l2_cache_bytes", lambda: l2)
        W._cached_plan.cache_clear()
        return W._plan(fc.ConvGeometry.make(xs, ws, 1, 1), "grad_weight", item).TB

    small, large = 512 * 1024, 2 * 1024 * 1024
    assert blocks((8, 128, 28, 28), (128, 128, 3, 3), 4, small) == 208
    assert blocks((8, 128, 56, 56), (128, 128, 3, 3), 4, small) == 208       # 1568 tiles: 8 blocks
    assert blocks((8, 128, 28, 28), (128, 128, 3, 3), 4, large) == W.GW_TILE_BLOCK
    assert blocks((8, 128, 28, 28), (128, 128, 3, 3), 8, small) == W.GW_TILE_BLOCK
    assert blocks((8, 64, 56, 56), (64, 64, 3, 3), 4, small) == W.GW_TILE_BLOCK
    assert blocks((8, 256, 14, 14), (256, 256, 3, 3), 4, small) == W.GW_TILE_BLOCK   # 128 tiles: one per lane
    assert blocks((8, 512, 28, 28), (512, 512, 3, 3), 4, small) == 112      # GW_LONG_BYTES: four shares
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 128, 28, 28)).astype(np.float32)
    w = rng.standard_normal((128, 128, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((4, 128, 28, 28)).astype(np.float32)
    assert blocks(x.shape, w.shape, 4, small) == 112                         # 196 tiles: two blocks
    assert _same(lambda: fc.grad.conv2d_weight(x, w.shape, gy, padding=1, algorithm="winograd"))
    got = fc.grad.conv2d_weight(x, w.shape, gy, padding=1, algorithm="winograd")
    assert _rel(got, ref.conv_grad_weight_nd(x, gy, w.shape, padding=1)) < TOL["winograd", np.float32]


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("limit", [0, 2 ** 62], ids=["as-stored", "transposed"])
def test_weight_gradient_with_and_without_transposed_blocks(alg, limit, monkeypatch):
    """The weight gradient's products read each block's transformed input as stored (transposed operand) or
    transposed first (GW_TRANSPOSE_MAX decides by size): both match the reference on the grid (odd channel and tile
    counts leave edges to the register transposes' element-by-element path), and bitwise across thread counts.
    (The grid's 2-D winograd cases read the output gradient with channels as lanes and transpose nothing; its 1-D,
    3-D, batch-lane and FFT-tile cases take the two paths.)"""
    monkeypatch.setattr(W, "GW_TRANSPOSE_MAX", limit)
    monkeypatch.setattr(W, "_blas_small_products", lambda: True)
    for case in GRID:
        x, w, b, gy, kw, geom = _data(case, np.float32)
        plan = W._plan(geom, "grad_weight", 4)
        assert W._transposes(plan) == (limit > 0)
        nd = x.ndim - 2
        gw = GRAD_W[nd](x, w.shape, gy, **kw, algorithm=alg)
        assert _rel(gw, ref.conv_grad_weight_nd(x, gy, w.shape, **dict(kw, padding=geom.padding))) < TOL[alg,
                                                                                                          np.float32]
    x, w, b, gy, kw, geom = _data((4, 20, 24, 1, (40, 37), (3, 3), 1, 1, 1), np.float32)
    assert _same(lambda: fc.grad.conv2d_weight(x, w.shape, gy, **kw, algorithm=alg))


# 2-D weight gradients whose output gradient is read with the channels as lanes: channel counts below and
# between the vector lengths (16 / 8 float32, 8 / 4 float64), rows shorter than a vector, rows whose last segment
# runs past W (read as the row's last vector, moved down), tiles past H and W, runs that end mid-segment, blocks
# across images, groups
LANE_GRID = [
    (3, 5, 20, 1, (21, 57), (3, 3), 1, 1, 1),
    (2, 4, 7, 1, (9, 7), (3, 3), 1, 1, 1),
    (2, 6, 36, 2, (30, 40), (3, 3), 1, 1, 1),
    (1, 3, 17, 1, (14, 19), (5, 5), 1, 2, 1),
    (2, 3, 9, 1, (35, 35), (11, 11), 4, 0, 1),
    (4, 16, 33, 1, (11, 27), (3, 2), 1, ((1, 2), (0, 1)), 1),
    (2, 4, 18, 2, (3, 10, 21), (1, 3, 3), (2, 1, 1), 1, 1),          # 3-D, D not transformed: tiles in planes
]


# strided input gradients: each residue of the input is written every s-th position, by masked vector stores for
# strides 2 and 4 (AVX2, AVX-512), element by element for others; rows of residues long enough for whole vectors
# and tails of each length, strides on both axes or one
STRIDED_GRID = [
    (2, 3, 5, 1, (41, 67), (3, 3), 2, 1, 1),
    (1, 4, 6, 1, (45, 71), (11, 11), 4, 0, 1),                      # AlexNet-like: 4 residues per axis
    (2, 3, 4, 1, (23, 50), (3, 3), (1, 3), (1, 0), 1),              # stride 3: element by element
    (1, 2, 4, 2, (30, 59), (5, 5), (3, 2), 2, 1),                   # groups, stride 2 along W only
    (2, 3, 4, 1, (19, 38), (3, 3), (2, 4), 1, 1),                   # stride 4 along W only
    (1, 3, 5, 1, (22, 37), (3, 3), 2, 1, 2),                        # dilation: residues of both parities
]


@pytest.mark.parametrize("level", _kernels.cpu_levels())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_input_gradient_writes_every_residue_at_every_level(dtype, level):
    """The residues of a strided input gradient interleave along W: a residue's store must write its positions and
    leave the others' (written before or after it, perhaps by another thread) as they are.  At every SIMD level the
    result matches the reference and is bitwise the same on 1 to 5 threads."""
    with _kernels.use_level(level):
        for case in STRIDED_GRID:
            x, w, b, gy, kw, geom = _data(case, dtype)
            got = fc.grad.conv2d_input(x.shape, w, gy, **kw, algorithm="winograd")
            want = ref.conv_grad_input_nd(x.shape, w, gy, **dict(kw, padding=geom.padding))
            assert _rel(got, want) < TOL["winograd", dtype], case
            assert _same(lambda: fc.grad.conv2d_input(x.shape, w, gy, **kw, algorithm="winograd")), case


@pytest.mark.parametrize("level", _kernels.cpu_levels())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_gradient_reads_the_output_gradient_with_channels_as_lanes(dtype, level, monkeypatch):
    """F(4, 3) weight gradients over H and W in row mode transform the output gradient with the channels as the vector
    lanes (``_channel_lanes``), so that their products multiply both operands as stored.  On the edge cases of
    LANE_GRID, at every SIMD level: the result matches the reference and the row-buffer path, is bitwise the same
    on 1 to 5 threads, and an output gradient holding inf and NaN near the edges gives NaN and inf where the
    row-buffer path gives them."""
    with _kernels.use_level(level):
        for case in LANE_GRID:
            x, w, b, gy, kw, geom = _data(case, dtype)
            assert W._channel_lanes(W._plan(geom, "grad_weight", x.itemsize)), case
            grad_w = GRAD_W[x.ndim - 2]

            def by_rows(g):         # the row-buffer path on the same call
                with monkeypatch.context() as m:
                    m.setattr(W, "_channel_lanes", lambda plan: False)
                    return grad_w(x, w.shape, g, **kw, algorithm="winograd")
            lanes = grad_w(x, w.shape, gy, **kw, algorithm="winograd")
            assert _same(lambda: grad_w(x, w.shape, gy, **kw, algorithm="winograd"))
            rows = by_rows(gy)
            want = ref.conv_grad_weight_nd(x, gy, w.shape, **dict(kw, padding=geom.padding))
            assert _rel(lanes, want) < TOL["winograd", dtype], case
            assert _rel(lanes, rows) < TOL["winograd", dtype], case
            bad = gy.copy()
            bad[0, 0, ..., -1, -1] = np.inf
            bad[-1, -1, ..., 0, bad.shape[-1] // 2] = np.nan
            bad[0, -1, ..., bad.shape[-2] // 2, 0] = -np.inf
            lanes = grad_w(x, w.shape, bad, **kw, algorithm="winograd")
            rows = by_rows(bad)
            assert np.isnan(lanes).any() and np.array_equal(np.isnan(lanes), np.isnan(rows)), case
            assert np.array_equal(np.isposinf(lanes), np.isposinf(rows)), case
            assert np.array_equal(np.isneginf(lanes), np.isneginf(rows)), case


def test_channels_as_lanes_only_for_2d_winograd_tiles_in_row_mode(monkeypatch):
    """``_channel_lanes`` is True for 2-D F(4, 3) weight gradients in row mode only (1-D, 3-D, batch lanes and FFT
    tiles keep the row buffers), and the kernel refuses the layout with a ValueError where it does not apply."""
    want = {0: True, 4: True, 5: True, 8: False, 10: False, 13: False}
    for i, w_ in want.items():
        x, w, b, gy, kw, geom = _data(GRID[i], np.float32)
        assert W._channel_lanes(W._plan(geom, "grad_weight", 4)) is w_, i
    x, w, b, gy, kw, geom = _data(GRID[0], np.float32)
    assert not W._channel_lanes(W.fft_plan(geom, "grad_weight", 4))
    monkeypatch.setattr(W, "_channel_lanes", lambda plan: True)
    x, w, b, gy, kw, geom = _data(GRID[8], np.float32)
    with pytest.raises(ValueError, match="zt needs 2-D"):
        fc.grad.conv1d_weight(x, w.shape, gy, **kw, algorithm="winograd")


def test_weight_gradient_transposes_only_for_blas_cores_with_small_product_kernels(monkeypatch):
    """The transposes are made for OpenBLAS cores with small-product kernels (SkylakeX family) or another BLAS,
    not for the Haswell core (where they only cost time), and never past GW_TRANSPOSE_MAX."""
    from fastconv import _threads
    x, w, b, gy, kw, geom = _data(GRID[0], np.float32)
    plan = W._plan(geom, "grad_weight", 4)
    assert (plan.Cv // plan.groups) * plan.KB * plan.TB < W.GW_TRANSPOSE_MAX
    for core, want in (("Haswell", False), ("Zen", False), ("SkylakeX", True), ("SapphireRapids", True),
                       (None, True)):
        monkeypatch.setattr(_threads, "scipy_blas_core", lambda core=core: core)
        W._blas_small_products.cache_clear()
        assert W._transposes(plan) is want, core
    monkeypatch.setattr(W, "GW_TRANSPOSE_MAX", 0)
    assert not W._transposes(plan)
    W._blas_small_products.cache_clear()


def test_scipy_blas_core_names_the_blas_of_cython_blas():
    """scipy_blas_core(): SciPy's OpenBLAS core as threadpoolctl reports it (SciPy's wheels bundle OpenBLAS)."""
    from threadpoolctl import threadpool_info
    from fastconv import _threads
    core = _threads.scipy_blas_core()
    cores = {d.get("architecture") for d in threadpool_info() if d.get("internal_api") == "openblas"}
    assert core is None or core in cores
    if any("scipy.libs" in d.get("filepath", "") for d in threadpool_info()):
        assert core is not None


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("n, stride", [(2, 1), (2, 2), (20, 1)], ids=["3x3", "polyphase", "batch-lanes"])
def test_weight_gradient_ignores_what_its_scratch_held(alg, n, stride):
    """The transform-domain sums come from the caching allocator, uninitialised: freed blocks of the same size
    full of NaN (the cache hands them out again) change nothing."""
    from fastconv._kernels import _memory
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, 32, 12, 12)).astype(np.float32)
    w = rng.standard_normal((32, 32, 3, 3)).astype(np.float32)
    geom = fc.ConvGeometry.make(x.shape, w.shape, stride, 1)
    gy = rng.standard_normal(geom.output_shape).astype(np.float32)
    plan = W._plan(geom, "grad_weight", 4) if alg == "winograd" else W.fft_plan(geom, "grad_weight", 4)
    shape = (W.LANES, plan.NP, plan.K, plan.Cv // plan.groups)
    assert np.prod(shape) * 4 >= _memory.MIN_BYTES          # large enough to be cached
    clean = fc.grad.conv2d_weight(x, w.shape, gy, stride=stride, padding=1, algorithm=alg)
    with _memory.caching():
        junk = [np.full(shape, np.nan, np.float32) for _ in range(3)]
    del junk
    again = fc.grad.conv2d_weight(x, w.shape, gy, stride=stride, padding=1, algorithm=alg)
    assert np.isfinite(again).all() and again.tobytes() == clean.tobytes()
    want = ref.conv_grad_weight_nd(x, gy, w.shape, stride=stride, padding=1)
    assert _rel(again, want) < TOL[alg, np.float32]


def test_weight_gradient_lanes_without_blocks_are_zero():
    """Fewer blocks of tiles than lanes: the lanes that get none still count as zero (their part of the
    uninitialised sums is cleared), against the reference."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    w = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    geom = fc.ConvGeometry.make(x.shape, w.shape, 1, 1)
    plan = W._plan(geom, "grad_weight", 4)
    assert plan.blocks < W.LANES
    for alg in ALGS:
        gw = fc.grad.conv2d_weight(x, w.shape, gy, padding=1, algorithm=alg)
        assert _rel(gw, ref.conv_grad_weight_nd(x, gy, w.shape, padding=(1, 1))) < TOL[alg, np.float32]


# ----------------------------------------------------------------------------------------------- accuracy
def test_float32_error_of_f4x4_3x3_is_within_5e5_up_to_512_channels():
    """The issue's bound: max|y - y64| / max|y64| <= 5e-5 on standard-normal data, C = 512."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, 512, 14, 14))
    w = rng.standard_normal((8, 512, 3, 3))
    y64 = fc.conv2d(x, w, padding=1, algorithm="direct")
    y = fc.conv2d(x.astype(np.float32), w.astype(np.float32), padding=1, algorithm="winograd")
    err = float(np.abs(y - y64).max() / np.abs(y64).max())
    assert err <= 5e-5
    assert err <= W.error(fc.ConvGeometry.make(x.shape, w.shape, 1, 1), np.float32, "forward")


@pytest.mark.parametrize("nd, size, k, stride", [(1, 64, 3, 1), (2, 12, 3, 1), (3, 7, 3, 1), (2, 12, 5, 1),
                                                 (2, 27, 11, 4)])
def test_measured_error_is_below_the_documented_bound(nd, size, k, stride):
    rng = np.random.default_rng(nd * 100 + k)
    x = rng.standard_normal((2, 64) + (size,) * nd)
    w = rng.standard_normal((8, 64) + (k,) * nd)
    y64 = CONV[nd](x, w, stride=stride, padding=k // 2, algorithm="direct")
    geom = fc.ConvGeometry.make(x.shape, w.shape, stride, k // 2)
    for dtype in (np.float32, np.float64):
        y = CONV[nd](x.astype(dtype), w.astype(dtype), stride=stride, padding=k // 2, algorithm="winograd")
        assert np.abs(y - y64).max() / np.abs(y64).max() <= W.error(geom, dtype, "forward")
    assert W.error(geom, np.float64, "forward") < 1e-12 < W.error(geom, np.float32, "forward")


def test_error_bound_grows_with_channels_and_axes():
    e = [W.error(fc.ConvGeometry.make((1, C, 8, 8), (4, C, 3, 3), 1, 1), np.float32, "forward")
         for C in (1, 64, 4096)]
    assert e[0] < e[1] < e[2]
    one, two, three = (W.error(fc.ConvGeometry.make((1, 8) + (8,) * n, (4, 8) + (3,) * n, 1, 1), np.float32,
                               "forward") for n in (1, 2, 3))
    assert one < two < three
    assert W.error(fc.ConvGeometry.make((1, 8, 8, 8), (4, 8, 1, 1)), np.float32, "forward") == 0


def test_cook_toom_matrices_compute_the_correlation():
    rng = np.random.default_rng(0)
    for points in (W.POINTS, ("0", "1", "-1", "2", "-2"), ("0", "1", "-1")):
        AT, G, BT = W.cook_toom(points, m=len(points) - 1)
        m, r = AT.shape[0], G.shape[1]
        d, g = rng.standard_normal(m + r - 1), rng.standard_normal(r)
        assert np.allclose(AT @ ((G @ g) * (BT @ d)), [d[i:i + r] @ g for i in range(m)])
    # the kernel hard-codes B^T and A^T of POINTS: 0, +-3/4, +-3/2 with short binary fractions only
    for M in (W.AT, W.BT):
        assert all(Fraction(v).limit_denominator(1024) == v for v in M.ravel())
    with pytest.raises(ValueError, match="distinct"):
        W.cook_toom(("0", "1", "1", "2", "-2"))


def test_nonfinite_inputs_propagate_without_crashing():
    x = np.ones((1, 2, 10, 10), np.float32)
    x[0, 1, 4, 4] = np.nan
    w = np.ones((3, 2, 3, 3), np.float32)
    for alg in ALGS:
        y = fc.conv2d(x, w, padding=1, algorithm=alg)
        assert np.isnan(y[0, :, 4, 4]).all()          # every output that reads the NaN
        assert np.isfinite(y[0, :, 0, 9]).all()       # outputs in tiles that never read it


def test_huge_transformed_filters_are_declined():
    geom = fc.ConvGeometry.make((1, 2 ** 14, 8, 8), (2 ** 14, 2 ** 14, 3, 3), 1, 1)
    assert not W.supports(geom, np.float32, "forward")
    assert _algorithms.get("winograd").supports(fc.ConvGeometry.make((1, 8, 8, 8), (8, 8, 3, 3)), np.float32,
                                                "forward")


# ----------------------------------------------------------------------------------------------- the switch
LAYER = fc.ConvGeometry.make((8, 64, 56, 56), (64, 64, 3, 3), 1, 1)


def test_auto_takes_winograd_for_3x3_layers_within_the_bound():
    assert fc.get_reduced_accuracy()
    for op in _algorithms.OPS:
        assert _algorithms.choose(LAYER, np.float32, op).name == "winograd"
    assert _algorithms.accurate_enough(_algorithms.get("winograd"), LAYER, np.float64, "forward")


def test_reduced_accuracy_switch_function_and_context_manager():
    exact = [a for a in fc.algorithms() if _algorithms.get(a).exact]
    assert "winograd" not in exact and {"direct", "toeplitz", "fft", "fft_tiles"} <= set(exact)
    with fc.reduced_accuracy(False):
        assert not fc.get_reduced_accuracy()
        for op in _algorithms.OPS:
            assert _algorithms.choose(LAYER, np.float32, op).name in exact
        # naming it still works
        x = np.ones((1, 2, 6, 6), np.float32)
        assert fc.conv2d(x, np.ones((1, 2, 3, 3), np.float32), algorithm="winograd").shape == (1, 1, 4, 4)
        with fc.reduced_accuracy(True):
            assert _algorithms.choose(LAYER, np.float32).name == "winograd"
    assert fc.get_reduced_accuracy()
    fc.set_reduced_accuracy(False)
    try:
        assert not fc.get_reduced_accuracy()
        assert _algorithms.choose(LAYER, np.float32).name != "winograd"
        seen = []
        t = threading.Thread(target=lambda: seen.append(fc.get_reduced_accuracy()))
        t.start()
        t.join()
        assert seen == [False]                       # process-wide
    finally:
        fc.set_reduced_accuracy(True)
    with pytest.raises(TypeError, match="allowed"):
        fc.set_reduced_accuracy(1)
    with pytest.raises(TypeError, match="allowed"):
        with fc.reduced_accuracy("no"):
            pass


def test_context_manager_is_local_to_the_thread():
    seen = []
    with fc.reduced_accuracy(False):
        t = threading.Thread(target=lambda: seen.append(fc.get_reduced_accuracy()))
        t.start()
        t.join()
    assert seen == [True]


def test_auto_declines_winograd_beyond_the_tolerance(monkeypatch):
    alg = _algorithms.get("winograd")
    assert _algorithms.accurate_enough(alg, LAYER, np.float32, "forward")
    monkeypatch.setitem(_algorithms.TOLERANCE, np.dtype(np.float32), 1e-9)
    _algorithms.invalidate()
    try:
        assert not _algorithms.accurate_enough(alg, LAYER, np.float32, "forward")
        assert _algorithms.choose(LAYER, np.float32).name != "winograd"
    finally:
        _algorithms.invalidate()


def test_autotune_keeps_separate_winners_without_reduced_accuracy(tmp_path):
    geom = fc.ConvGeometry.make((1, 4, 12, 12), (4, 4, 3, 3), 1, 1)
    fc.autotune(True)
    try:
        with fc.reduced_accuracy(False):
            name = _algorithms.choose(geom, np.float32).name
            assert name != "winograd"
            assert _algorithms.choose(geom, np.float32).name == name
    finally:
        fc.autotune(False)
        fc._autotune.clear_cache()


def test_bench_reports_the_error_and_the_bound_of_winograd():
    from fastconv.cli import _problems, bench
    spec = _problems.conv("tiny 3x3", (1, 4, 12, 12), (4, 4, 3, 3), padding=1, backward=False)
    res = bench.run(None, threads=1, repeats=1, budget=0, peers=(), progress=False, layers=[spec], gemm_size=128)
    rows = {r["impl"]: r for r in res["results"] if r["op"] == "forward"}
    assert {"winograd", "fft_tiles", "direct"} <= set(rows)
    assert rows["winograd"]["max_err"] <= rows["winograd"]["err_bound"] < 5e-5
    assert "err_bound" not in rows["fft_tiles"] and rows["fft_tiles"]["max_err"] < 1e-5




@pytest.mark.parametrize("level", _kernels.cpu_levels())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fused_planar_filter_transforms_match_the_axis_passes(dtype, level):
    """2-D 3 x 3 kernels take one fused pass (both axes in registers) instead of a pass per axis.  The same data
    with the two transformed axes declared as axes 0 and 1 (the same memory layout) takes the per-axis passes:
    the two must agree bit for bit (the same products in the same order), for any number of filters (partial
    chunks and vectors included), and both must equal G g G^T / G^T u G computed by NumPy; at every SIMD level."""
    with _kernels.use_level(level):
        _check_fused_planar_filter_transforms(dtype)


def _check_fused_planar_filter_transforms(dtype):
    rng = np.random.default_rng(4)
    G = W.G
    for R in (1, 5, 64, 67, 200):
        wv = rng.standard_normal((9, R))
        fused, passes = np.empty((36, R), dtype), np.empty((36, R), dtype)
        W._wk.filters(G, wv, fused, (False, True, True), 2)
        W._wk.filters(G, wv, passes, (True, True, False), 2)
        assert fused.tobytes() == passes.tobytes(), R
        want = np.einsum("ia,jb,abr->ijr", G, G, wv.reshape(3, 3, R)).reshape(36, R)
        np.testing.assert_allclose(fused, want, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-12)
        dU = rng.standard_normal((2, 36, R)).astype(dtype)
        fused, passes = np.empty((R, 9), dtype), np.empty((R, 9), dtype)
        W._wk.filters_adjoint(G, dU, fused, (False, True, True), 2)
        W._wk.filters_adjoint(G, dU, passes, (True, True, False), 2)
        assert fused.tobytes() == passes.tobytes(), R
        u = dU.astype(np.float64).sum(axis=0).reshape(6, 6, R)
        want = np.einsum("ia,jb,ijr->rab", G, G, u).reshape(R, 9)
        np.testing.assert_allclose(fused, want, rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-12)


@pytest.mark.parametrize("level", _kernels.cpu_levels())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adjoint_filter_transform_swaps_channel_first_rows(dtype, level):
    """filters_adjoint(..., swap=K) reads dU's rows as (c, k) pairs, c-major, and writes them k-major: the same bits
    as the unswapped transform followed by the transposition, for K below, at and past the 64-row chunks, fused
    (planar) and per-axis transforms; a swap that does not divide the rows is a ValueError."""
    rng = np.random.default_rng(9)
    with _kernels.use_level(level):
        for C, K in ((1, 5), (3, 64), (5, 70), (2, 130)):
            for act in ((False, True, True), (True, True, False)):
                dU = rng.standard_normal((2, 36, C * K)).astype(dtype)
                plain, swapped = np.empty((C * K, 9), dtype), np.empty((C * K, 9), dtype)
                W._wk.filters_adjoint(W.G, dU, plain, act, 2)
                W._wk.filters_adjoint(W.G, dU, swapped, act, 2, swap=K)
                want = plain.reshape(C, K, 9).transpose(1, 0, 2).reshape(C * K, 9)
                assert swapped.tobytes() == np.ascontiguousarray(want).tobytes(), (C, K, act)
        with pytest.raises(ValueError, match="swap"):
            W._wk.filters_adjoint(W.G, np.zeros((1, 36, 10), dtype), np.empty((10, 9), dtype), (False, True, True), 1,
                                  swap=3)


def test_filter_transforms_are_the_same_on_any_number_of_threads():
    """The filter transforms run chunks of filters on the OpenMP threads; each thread keeps its own grid
    extents (they were shared: a thread reset them while another's pass was using them, and a chunk came out
    wrong now and then -- often on a loaded machine).  Many chunks, many repeats: every result equals the
    one-thread result bit for bit."""
    rng = np.random.default_rng(0)
    R = 64 * 512
    act = (False, True, True)
    wv = rng.standard_normal((9, R))
    one = np.empty((36, R), np.float32)
    W._wk.filters(W.G, wv, one, act, 1)
    dU = rng.standard_normal((2, 36, R)).astype(np.float32)
    back1 = np.empty((R, 9), np.float32)
    W._wk.filters_adjoint(W.G, dU, back1, act, 1)
    for _ in range(30):
        U = np.empty_like(one)
        W._wk.filters(W.G, wv, U, act, 2)
        assert np.array_equal(U, one)
        back = np.empty_like(back1)
        W._wk.filters_adjoint(W.G, dU, back, act, 2)
        assert np.array_equal(back, back1)
