"""conv1d/2d/3d for every registered algorithm against tests/reference.py and torch.nn.functional."""
import zlib

import numpy as np
import pytest

import fastconv as fc
import reference as ref

ALGORITHMS = fc.algorithms()
CONV = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
TOL = {np.float32: 2e-5, np.float64: 1e-11}

# (N, C, K, groups, spatial, kernel, stride, padding, dilation): non-square and even kernels, odd sizes, stride,
# dilation, groups (incl. depthwise), every padding form.
GRID = [
    (2, 3, 5, 1, (9,), (3,), 1, 0, 1),
    (1, 4, 6, 2, (17,), (4,), 3, ((2, 1),), 2),
    (3, 2, 7, 1, (12,), (5,), 2, "same", 1),
    (2, 3, 4, 1, (7, 9), (3, 2), 1, 0, 1),
    (2, 4, 8, 2, (11, 10), (2, 4), (2, 1), (1, 2), (1, 2)),
    (1, 6, 6, 6, (9, 8), (3, 3), 1, 1, 1),                  # depthwise
    (1, 4, 8, 4, (10, 9), (3, 3), 2, 1, 1),                 # depthwise multiplier 2
    (2, 5, 20, 1, (13, 12), (3, 3), 1, "same", 2),
    (1, 3, 17, 1, (15, 16), (4, 4), 2, "same", 1),          # even kernel, stride 2 'same' (TF rule)
    (2, 8, 16, 1, (10, 10), (1, 1), 1, 0, 1),               # 1x1
    (1, 3, 9, 3, (12, 11), (5, 3), (3, 2), ((2, 0), (1, 3)), (1, 2)),
    (1, 2, 3, 1, (6, 7, 5), (2, 3, 2), (1, 2, 1), 1, 1),
    (2, 4, 6, 2, (5, 6, 7), (3, 1, 2), 2, ((1, 0), (0, 1), (2, 2)), (1, 1, 2)),
    (1, 3, 16, 1, (6, 6, 6), (3, 3, 3), 1, "same", 1),
]


def _case(rng, case, dtype):
    N, C, K, g, sp, ks, stride, padding, dilation = case
    x = rng.standard_normal((N, C) + sp).astype(dtype)
    w = rng.standard_normal((K, C // g) + ks).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=g)


def _close(got, want, dtype):
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale * 10)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GRID, ids=[str(i) for i in range(len(GRID))])
def test_forward_matches_reference(algorithm, dtype, case):
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x, w, b, kw = _case(rng, case, dtype)
    nd = x.ndim - 2
    y = CONV[nd](x, w, b, **kw, algorithm=algorithm)
    assert y.dtype == dtype
    want = ref.conv_nd(x, w, b, **kw)
    assert y.shape == want.shape
    _close(y, want, dtype)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_padding_modes_match_reference(algorithm, padding_mode, nd):
    rng = np.random.default_rng(nd)
    sp = (9, 8, 7)[:nd]
    ks = (3, 2, 3)[:nd]
    x = rng.standard_normal((2, 4) + sp)
    w = rng.standard_normal((6, 2) + ks)
    pad = ((2, 1), (1, 1), (0, 2))[:nd]
    y = CONV[nd](x, w, None, 1, pad, 1, 2, padding_mode=padding_mode, algorithm=algorithm)
    want = ref.conv_nd(x, w, None, 1, pad, 1, 2, padding_mode=padding_mode)
    _close(y, want, np.float64)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_flip_is_true_convolution(algorithm):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 1, 12, 10))
    w = rng.standard_normal((1, 1, 3, 4))
    y = fc.conv2d(x, w, padding=((1, 1), (2, 1)), flip=True, algorithm=algorithm)
    scipy_signal = pytest.importorskip("scipy.signal")
    full = scipy_signal.convolve2d(np.pad(x[0, 0], ((1, 1), (2, 1))), w[0, 0], mode="valid")
    _close(y[0, 0], full, np.float64)


def test_same_padding_sizes():
    x = np.zeros((1, 1, 10, 11), np.float32)
    for k in (1, 2, 3, 4, 5):
        for s in (1, 2, 3):
            y = fc.conv2d(x, np.zeros((2, 1, k, k), np.float32), stride=s, padding="same")
            assert y.shape[2:] == (-(-10 // s), -(-11 // s))


def test_same_even_kernel_puts_extra_padding_right():
    # a kernel that picks the top-left tap shows where the padding went: left total//2 = 1 for k=4
    x = np.arange(1.0, 8.0).reshape(1, 1, 7)
    w = np.zeros((1, 1, 4))
    w[0, 0, 0] = 1.0
    y = fc.conv1d(x, w, padding="same")
    np.testing.assert_array_equal(y[0, 0], [0, 1, 2, 3, 4, 5, 6])


def test_dtype_promotion_and_array_likes():
    x16 = np.ones((1, 1, 5, 5), np.float16)
    w32 = np.ones((1, 1, 3, 3), np.float32)
    assert fc.conv2d(x16, w32).dtype == np.float32
    xi = np.ones((1, 1, 5, 5), np.int16)
    assert fc.conv2d(xi, w32).dtype == np.float64
    y = fc.conv1d([[[1, 2, 3, 4]]], [[[1.0, 1.0]]])
    np.testing.assert_array_equal(y, [[[3.0, 5.0, 7.0]]])


def test_non_contiguous_input_and_inputs_unchanged():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((2, 6, 14, 12))
    x = base[:, ::2, ::2, ::-1]
    w = rng.standard_normal((4, 3, 3, 3))[:, :, ::-1]
    x_copy, w_copy = x.copy(), w.copy()
    y = fc.conv2d(x, w, padding=1)
    _close(y, ref.conv_nd(x_copy, w_copy, padding=1), np.float64)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(w, w_copy)


def test_out_argument_is_filled_and_returned():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    out = np.full((2, 5, 6, 6), np.nan, np.float32)
    res = fc.conv2d(x, w, out=out)
    assert res is out
    _close(out, ref.conv_nd(x, w), np.float32)


def test_bias_only_output_when_every_tap_reads_padding():
    x = np.ones((1, 1, 2, 2))
    w = np.ones((3, 1, 1, 1))
    y = fc.conv2d(x, w, bias=np.array([1.0, 2.0, 3.0]), padding=2)
    assert y.shape == (1, 3, 6, 6)
    assert y[0, 1, 0, 0] == 2.0 and y[0, 1, 2, 2] == 3.0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_torch(algorithm, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(7)
    for case in GRID:
        x, w, b, kw = _case(rng, case, dtype)
        nd = x.ndim - 2
        if isinstance(kw["padding"], tuple) and isinstance(kw["padding"][0], tuple):
            continue  # torch has no per-side padding in conv; covered against the reference
        if kw["padding"] == "same" and kw["stride"] != 1:
            continue  # torch rejects 'same' with stride > 1
        tfn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
        want = tfn(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), **kw).numpy()
        got = CONV[nd](x, w, b, **kw, algorithm=algorithm)
        _close(got, want, dtype)


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
def test_padding_modes_match_torch(padding_mode):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 4, 9, 10))
    layer = torch.nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=2,
                            padding_mode=padding_mode).double()
    want = layer(torch.from_numpy(x)).detach().numpy()
    got = fc.conv2d(x, layer.weight.detach().numpy(), layer.bias.detach().numpy(), (2, 1), (2, 1), (1, 2), 2,
                    padding_mode=padding_mode)
    _close(got, want, np.float64)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_algorithms_agree_on_larger_layer(algorithm):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 16, 23, 21)).astype(np.float32)
    w = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    a = fc.conv2d(x, w, padding=1, algorithm="direct")
    b = fc.conv2d(x, w, padding=1, algorithm=algorithm)
    _close(b, a, np.float32)


def test_auto_resolves_to_a_registered_algorithm():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 3, 9, 9))
    w = rng.standard_normal((4, 3, 3, 3))
    _close(fc.conv2d(x, w, algorithm="auto"), ref.conv_nd(x, w), np.float64)
    assert "direct" in fc.algorithms()
