"""The kernels behind the fast backward passes, on the paths the default sizes do not reach.

direct's column-vectorised kernel (few output channels per group: depthwise, channel multipliers, the input
gradient of layers with few input channels) with bands of several tasks and sparse bands (dilations larger than
the band); strided input gradients as one correlation per input phase; the depthwise weight-gradient kernel with
batch chunks, partial lane groups and the fused bias gradient; toeplitz's weight gradient split into batch chunks.
Everything against tests/reference.py, and bitwise across thread counts.
"""
import dataclasses
import zlib
from unittest.mock import patch

import numpy as np
import pytest

import fastconv as fc
import reference as ref
from fastconv import _kernels
from fastconv._algos import direct, toeplitz as tpa

TOL = {np.float32: 3e-5, np.float64: 1e-12}
CONV = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
GRAD_IN = {1: fc.grad.conv1d_input, 2: fc.grad.conv2d_input, 3: fc.grad.conv3d_input}
GRAD_W = {1: fc.grad.conv1d_weight, 2: fc.grad.conv2d_weight, 3: fc.grad.conv3d_weight}

# (N, C, K, groups, spatial, kernel, stride, padding, dilation)
COLUMN_GRID = [
    (2, 6, 6, 6, (11, 37), (3, 3), 1, 1, 1),             # depthwise
    (3, 4, 12, 4, (9, 21), (3, 2), (2, 1), (1, 0), 1),    # multiplier 3 (a partial block of 4 channels)
    (1, 3, 15, 3, (8, 19), (2, 3), 1, (0, 2), (2, 1)),    # multiplier 5 (a full and a partial block)
    (2, 8, 4, 2, (7, 13), (3, 3), 1, 1, (3, 2)),          # 4 input channels per group, 2 output channels
    (1, 2, 2, 2, (6, 9), (3, 2), 1, 5, (4, 1)),           # dilation larger than the band: sparse slots
    (2, 3, 3, 3, (5, 6, 17), (2, 3, 3), (1, 2, 1), 1, 1),  # 3-D
    (1, 1, 1, 1, (40,), (5,), 2, 2, 3),                   # 1-D single channel
]


def _case(case, dtype):
    N, C, K, g, sp, ks, stride, padding, dilation = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x = rng.standard_normal((N, C) + sp).astype(dtype)
    w = rng.standard_normal((K, C // g) + ks).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=g)
    gy = rng.standard_normal(ref.conv_nd(x, w, **kw).shape).astype(dtype)
    return x, w, b, gy, kw


def _close(got, want, dtype):
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * max(1.0, float(np.abs(want).max())))


def _all_ops(x, w, b, gy, kw):
    nd = x.ndim - 2
    return (CONV[nd](x, w, b, **kw, algorithm="direct"), GRAD_IN[nd](x.shape, w, gy, **kw, algorithm="direct"),
            GRAD_W[nd](x, w.shape, gy, **kw, algorithm="direct"))


@pytest.fixture
def small_buffers(monkeypatch):
    """Tiny per-thread buffers: bands of a few rows, so every call runs many bands and tasks."""
    monkeypatch.setattr(direct, "BUFFER_BYTES", 512)
    monkeypatch.setattr(direct, "PHASE_MIN_FLOPS", 0)     # strided input gradients by phases
    monkeypatch.setattr(direct, "PHASE_MAX_DILATED_CHANNELS", 0)     # (even with few channels per group)
    monkeypatch.setattr(direct, "WGRAD_TASKS", 64)        # and weight gradients in several batch chunks


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", COLUMN_GRID, ids=[str(i) for i in range(len(COLUMN_GRID))])
def test_column_kernels_match_the_reference(case, dtype, small_buffers):
    x, w, b, gy, kw = _case(case, dtype)
    y, gx, gw = _all_ops(x, w, b, gy, kw)
    _close(y, ref.conv_nd(x, w, b, **kw), dtype)
    _close(gx, ref.conv_grad_input_nd(x.shape, w, gy, **kw), dtype)
    _close(gw, ref.conv_grad_weight_nd(x, gy, w.shape, **kw), dtype)
    with fc.num_threads(1):
        one = _all_ops(x, w, b, gy, kw)
    with fc.num_threads(3):
        three = _all_ops(x, w, b, gy, kw)
    for a, c in zip(one, three):
        assert np.array_equal(a, c)


def _check_ops_at_level(x, w, kw, level, rng):
    """direct's forward pass and both gradients at SIMD ``level`` against the reference (a random output gradient)."""
    dtype = x.dtype.type
    gy = rng.standard_normal(ref.conv_nd(x, w, **kw).shape).astype(dtype)
    with _kernels.use_level(level):
        y, gx, gw = _all_ops(x, w, None, gy, kw)
    _close(y, ref.conv_nd(x, w, **kw), dtype)
    _close(gx, ref.conv_grad_input_nd(x.shape, w, gy, **kw), dtype)
    _close(gw, ref.conv_grad_weight_nd(x, gy, w.shape, **kw), dtype)


@pytest.mark.parametrize("level", _kernels.cpu_levels())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [2, 3, 4])
def test_column_kernels_gather_strided_rows(stride, dtype, level, monkeypatch):
    """Band rows gathered phase-major by the W stride (forward, weight gradient; stride 2 by vector shuffles where
    both phases are inside the row) and dilated by it (input gradient as a correlation of the dilated output
    gradient): every width, padding and dilation where a phase starts or ends inside the padding or past the row,
    and rows of several vectors, at every SIMD level the CPU runs."""
    monkeypatch.setattr(direct, "PHASE_MIN_FLOPS", 10 ** 12)     # the dilated correlation, not phases
    rng = np.random.default_rng(stride)
    for W in (5, 7, 8, 13, 40, 77):
        for pad in range(4):
            for dil in (1, 2):
                if (W + 2 * pad - dil * 2 - 1) < 0:
                    continue
                x = rng.standard_normal((2, 3, W)).astype(dtype)
                w = rng.standard_normal((3, 1, 3)).astype(dtype)
                _check_ops_at_level(x, w, dict(stride=stride, padding=pad, dilation=dil, groups=3), level, rng)


@pytest.mark.parametrize("level", _kernels.cpu_levels())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unit_stride_band_rows_with_their_padding(dtype, level):
    """Unit-stride band rows are copied in native vectors with a zero vector at either end where the row holds a
    vector and each padding run fits in one (simd.h's fc_padded_row), else by memset / memcpy: rows shorter than a
    vector, paddings up to past two vectors (float32 at 64 bytes: 16 values), a vector's worth of columns and one
    more, in the column kernels (depthwise, forward and both gradients) and the channel kernel (8 -> 8 channels)."""
    rng = np.random.default_rng(11)
    for W in (1, 3, 8, 9, 16, 17, 33, 70):
        for pad in (0, 1, 4, 8, 9, 16, 17, 35):
            for k in (1, 3):
                for C, K, groups in ((3, 3, 3), (8, 8, 1)):
                    if W + 2 * pad < k:
                        continue
                    x = rng.standard_normal((2, C, W)).astype(dtype)
                    w = rng.standard_normal((K, C // groups, k)).astype(dtype)
                    _check_ops_at_level(x, w, dict(padding=pad, groups=groups), level, rng)


PHASE_GRID = [
    ((13, 11), (3, 4), (2, 3), (1, 2), (1, 1), 1, 3, 5),
    ((15, 16), (5, 3), (3, 2), (0, 1), (2, 1), 2, 4, 6),
    ((9,), (4,), (2,), (3,), (3,), 1, 2, 3),
    ((5, 6, 7), (3, 2, 3), (2, 2, 3), (1, 0, 2), (1, 2, 1), 1, 2, 2),
    ((17, 17), (11, 11), (4, 4), (2, 2), (1, 1), 1, 3, 8),     # AlexNet-like: 16 phases
    ((8, 9), (1, 1), (2, 2), (0, 0), (1, 1), 1, 4, 4),         # phases no tap reaches: zero
    ((10, 10), (2, 2), (4, 4), (0, 0), (1, 1), 1, 2, 3),
    ((12, 14), (3, 3), (2, 2), (1, 1), (1, 1), 2, 16, 20),     # channel-vectorised phases
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_input_gradient_by_phases(dtype, monkeypatch):
    monkeypatch.setattr(direct, "PHASE_MIN_FLOPS", 0)
    monkeypatch.setattr(direct, "PHASE_MAX_DILATED_CHANNELS", 0)
    rng = np.random.default_rng(5)
    for sp, ks, st, pad, dil, g, C, K in PHASE_GRID:
        x = rng.standard_normal((2, C) + sp).astype(dtype)
        w = rng.standard_normal((K, C // g) + ks).astype(dtype)
        kw = dict(stride=st, padding=pad, dilation=dil, groups=g)
        gy = rng.standard_normal(ref.conv_nd(x, w, **kw).shape).astype(dtype)
        got = GRAD_IN[len(sp)](x.shape, w, gy, **kw, algorithm="direct")
        _close(got, ref.conv_grad_input_nd(x.shape, w, gy, **kw), dtype)
        geom = fc.ConvGeometry.make(x.shape, w.shape, **kw)
        assert direct.cost_kind(geom, dtype, "grad_input") == "phases"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_input_gradient_with_few_channels_per_group_is_one_dilated_correlation(dtype):
    """Default thresholds: a stride-2 depthwise (or 2 x 4 channels per group) input gradient is one correlation of
    the dilated output gradient, a 7 -> 64 one runs by phases; both against the reference."""
    rng = np.random.default_rng(8)
    for C, K, g, kind in ((16, 16, 16, "columns"), (16, 32, 8, "columns"), (7, 64, 1, "phases")):
        x = rng.standard_normal((8, C, 40, 41)).astype(dtype)
        w = rng.standard_normal((K, C // g, 3, 3)).astype(dtype)
        kw = dict(stride=2, padding=1, groups=g)
        geom = fc.ConvGeometry.make(x.shape, w.shape, **kw)
        assert geom.flops >= direct.PHASE_MIN_FLOPS * 4
        assert direct.cost_kind(geom, dtype, "grad_input") == kind
        gy = rng.standard_normal(geom.output_shape).astype(dtype)
        _close(fc.grad.conv2d_input(x.shape, w, gy, **kw, algorithm="direct"),
               ref.conv_grad_input_nd(x.shape, w, gy, **kw), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_weight_gradient_fuses_the_bias_gradient(dtype, small_buffers):
    x, w, b, gy, kw = _case((20, 6, 12, 6, (9, 35), (3, 3), 1, 1, 1), dtype)   # 35 columns: a partial lane group
    geom = fc.ConvGeometry.make(x.shape, w.shape, **kw)
    gw = np.empty(w.shape, dtype)
    gb = np.empty(w.shape[0], dtype)
    assert direct._wgrad_columns(direct.as_5d(x), direct.as_5d(gy), geom, gw, 2, grad_bias=gb) is True
    _close(gw, ref.conv_grad_weight_nd(x, gy, w.shape, **kw), dtype)
    _close(gb, gy.sum(axis=(0, 2, 3)), dtype)
    for pos in ((0, 0, 0, 0), (19, 5, 8, 34)):      # the first and the last element the kernel checks
        g = gy.copy()
        g[pos] = np.inf
        assert direct._wgrad_columns(direct.as_5d(x), direct.as_5d(g), geom, gw, 2, grad_bias=gb) is False
        direct.grad_weight(x, g, geom, gw, 2, grad_bias=gb)         # then the swapped convolution, exactly
        k = pos[1]
        assert np.isinf(gb[k]) and np.isfinite(np.delete(gb, k)).all()
        assert not np.isfinite(gw[k]).all() and np.isfinite(np.delete(gw, k, axis=0)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("column", [34, 33, 0, 17])
def test_depthwise_weight_gradient_of_an_input_holding_an_inf(dtype, column, small_buffers):
    """The partial last lane group of an output row (35 columns) reads the band rows in place: its lanes past the
    row's end multiply zeros of the output gradient by the input columns the other taps read.  An inf in the last
    input column is read so by the lanes of column tap 0, whose products never include it: that band takes the
    zero-padded copies instead, and only the taps that multiply the inf are not finite.  Also an inf in the
    column before it, the first column and one inside."""
    x, w, b, gy, kw = _case((3, 4, 4, 4, (9, 35), (3, 3), 1, 1, 1), dtype)
    x[1, 2, 4, column] = np.inf
    geom = fc.ConvGeometry.make(x.shape, w.shape, **kw)
    want = ref.conv_grad_weight_nd(x, gy, w.shape, **kw)
    fin = np.isfinite(want)
    assert not fin[2].all() and fin[[0, 1, 3]].all()
    assert fin[2, 0, :, 0].all() == (column == 34)      # tap 0 never multiplies the last column
    for nthreads in (1, 2, 3):
        gw = np.full(w.shape, np.nan, dtype)
        assert direct._wgrad_columns(direct.as_5d(x), direct.as_5d(gy), geom, gw, nthreads) is True
        np.testing.assert_array_equal(np.isfinite(gw), fin)
        np.testing.assert_array_equal(gw[~fin], want[~fin])
        _close(gw[fin], want[fin], dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_depthwise_weight_gradient_finds_every_non_finite_output_gradient(dtype, small_buffers):
    """The kernel's check of each band's output gradient (four vectors at a time, then one, then elements): an inf
    or NaN at any position of a band makes it hand the gradient back to the swapped convolution."""
    x, w, b, gy, kw = _case((2, 3, 3, 3, (7, 29), (3, 3), 1, 1, 1), dtype)
    geom = fc.ConvGeometry.make(x.shape, w.shape, **kw)
    gw = np.empty(w.shape, dtype)
    assert direct._wgrad_columns(direct.as_5d(x), direct.as_5d(gy), geom, gw, 2) is True
    for flat in range(0, gy.size, 7):
        for bad in (np.inf, -np.inf, np.nan):
            g = gy.copy()
            g.flat[flat] = bad
            assert direct._wgrad_columns(direct.as_5d(x), direct.as_5d(g), geom, gw, 2) is False, (flat, bad)


def test_toeplitz_weight_gradient_in_batch_chunks():
    x, w, b, gy, kw = _case((6, 8, 8, 1, (12, 11), (3, 3), 1, 1, 1), np.float32)
    geom = fc.ConvGeometry.make(x.shape, w.shape, **kw)
    pl = tpa.plan(geom, np.float32, "grad_weight", 2)
    assert pl.bchunks > 1 and pl.partial_bytes == pl.bchunks * w.size * 4
    got = fc.grad.conv2d_weight(x, w.shape, gy, **kw, algorithm="toeplitz")
    _close(got, ref.conv_grad_weight_nd(x, gy, w.shape, **kw), np.float32)
    with fc.num_threads(1):
        one = fc.grad.conv2d_weight(x, w.shape, gy, **kw, algorithm="toeplitz")
    assert np.array_equal(one, got)
    fc.set_workspace_limit(4 * w.size * 4)       # room for no partial sums: channel blocks again
    try:
        assert tpa.plan(geom, np.float32, "grad_weight", 2).bchunks == 1
        _close(fc.grad.conv2d_weight(x, w.shape, gy, **kw, algorithm="toeplitz"),
               ref.conv_grad_weight_nd(x, gy, w.shape, **kw), np.float32)
    finally:
        fc.set_workspace_limit(None)


# (N, C, K, groups, spatial, kernel, stride, padding, dilation): output channels per group fewer than the lowered
# rows (1x1, 3x3, grouped, 1-D, 3-D) and more (an expanding 1x1 layer, a single-channel 3x3 one)
ORIENTATION_GRID = [
    (4, 24, 8, 1, (7, 9), (1, 1), 1, 0, 1),
    (3, 6, 4, 2, (9, 8), (3, 3), (2, 1), 1, 1),
    (2, 5, 3, 1, (17,), (4,), 2, 1, 2),
    (2, 4, 6, 2, (5, 6, 5), (2, 3, 2), 1, (1, 0, 1), 1),
    (4, 4, 32, 1, (6, 7), (1, 1), 1, 0, 1),
    (3, 1, 16, 1, (8, 8), (3, 3), 1, 1, 1),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ORIENTATION_GRID, ids=[str(i) for i in range(len(ORIENTATION_GRID))])
def test_toeplitz_weight_gradient_in_either_orientation(case, dtype):
    """toeplitz's weight-gradient GEMMs put the smaller of (output channels, lowered rows) first and then write
    the gradient's transpose; both orientations, with one batch chunk or several, against the reference and
    bitwise across thread counts."""
    x, w, b, gy, kw = _case(case, dtype)
    geom = fc.ConvGeometry.make(x.shape, w.shape, **kw)
    K, Cg = w.shape[:2]
    pl = tpa.plan(geom, dtype, "grad_weight", 2)
    assert pl.transposed == (pl.kblock < pl.cblock * int(np.prod(w.shape[2:])))
    want = ref.conv_grad_weight_nd(x, gy, w.shape, **kw)
    for transposed in (False, True):
        for bchunks in (1, 3):
            plan = dataclasses.replace(pl, transposed=transposed, bchunks=bchunks)
            got = {}
            for nthreads in (1, 2, 3):
                got[nthreads] = np.full(w.shape, np.nan, dtype)
                with patch.object(tpa, "_plan_or_raise", lambda *a, _p=plan: _p):
                    tpa.grad_weight(x, gy, geom, got[nthreads], nthreads)
                assert np.array_equal(got[nthreads], got[1]), (transposed, bchunks, nthreads)
            _close(got[1], want, dtype)
    assert tpa.plan(geom, dtype, "grad_weight", 2).transposed == pl.transposed


@pytest.mark.parametrize("algorithm", fc.algorithms())
@pytest.mark.parametrize("groups", [1, 4])
def test_tape_bias_gradient_from_the_weight_gradient_pass(algorithm, groups):
    """The tape asks the weight gradient for the bias gradient too; algorithms that fuse it (``fused_bias``)
    return the same sums as ``grad.conv_bias``, the others get it computed."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 9, 11)).astype(np.float32)
    w = rng.standard_normal((4 if groups == 4 else 8, 4 // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(w.shape[0]).astype(np.float32)
    X, W, B = (fc.Tensor(a, requires_grad=True) for a in (x, w, b))
    y = fc.nn.functional.conv2d(X, W, B, padding=1, groups=groups, algorithm=algorithm)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    y.backward(gy)
    np.testing.assert_allclose(B.grad, gy.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-4)
    _close(W.grad, ref.conv_grad_weight_nd(x, gy, w.shape, padding=1, groups=groups), np.float32)
    _close(X.grad, ref.conv_grad_input_nd(x.shape, w, gy, padding=1, groups=groups), np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [(1, 5), (3, 1), (37, 41), (28, 28)])
def test_toeplitz_fused_bias_gradient_row_sums(dtype, size):
    """toeplitz sums each output-gradient row into the bias gradient as its GEMM reads it: eight partial sums
    and a tail (rows shorter than, not a multiple of, and a multiple of eight), against a float64 sum, and
    bitwise across thread counts (1x1 layers read whole rows; 3x3 layers read chunks of positions)."""
    rng = np.random.default_rng(sum(size))
    for ks, pad in (((1, 1), 0), ((3, 3), 1)):
        x = rng.standard_normal((5, 6) + size).astype(dtype)
        w = rng.standard_normal((7, 6) + ks).astype(dtype)
        X, W = fc.Tensor(x, requires_grad=True), fc.Tensor(w, requires_grad=True)
        grads = []
        for threads in (1, 2, 3):
            B = fc.Tensor(rng.standard_normal(7).astype(dtype) * 0, requires_grad=True)
            y = fc.nn.functional.conv2d(X, W, B, padding=pad, algorithm="toeplitz")
            gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype) * 3 + 1
            with fc.num_threads(threads):
                y.backward(gy)
            grads.append(B.grad)
        exact = gy.astype(np.float64).sum(axis=(0, 2, 3))
        np.testing.assert_allclose(grads[0], exact, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-5)
        assert grads[0].dtype == dtype
        for g in grads[1:]:
            np.testing.assert_array_equal(g, grads[0])
