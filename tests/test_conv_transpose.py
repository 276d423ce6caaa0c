"""conv_transpose1d/2d/3d for every algorithm that implements it, against tests/reference.py and torch."""
import zlib

import numpy as np
import pytest

import fastconv as fc
import reference as ref
from fastconv._algorithms import get

CONVT = {1: fc.conv_transpose1d, 2: fc.conv_transpose2d, 3: fc.conv_transpose3d}
CONV = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
ALGORITHMS = [a for a in fc.algorithms() if get(a).grad_input is not None]
TOL = {np.float32: 2e-4, np.float64: 1e-10}

# (N, C_in, C_out, groups, spatial, kernel, stride, padding, output_padding, dilation): non-square and even
# kernels, odd sizes, stride, dilation, groups (incl. depthwise), output_padding below stride or below dilation.
GRID = [
    (2, 3, 5, 1, (9,), (3,), 1, 0, 0, 1),
    (1, 4, 6, 2, (11,), (4,), 3, 2, 2, 2),
    (3, 2, 7, 1, (8,), (5,), 2, 1, 1, 1),
    (2, 3, 4, 1, (7, 9), (3, 2), 1, 0, 0, 1),
    (2, 4, 8, 2, (6, 5), (2, 4), (2, 1), (1, 2), (1, 0), (1, 2)),
    (1, 6, 6, 6, (9, 8), (3, 3), 1, 1, 0, 1),               # depthwise
    (1, 4, 8, 4, (5, 6), (3, 3), 2, 1, 1, 1),               # depthwise, multiplier 2
    (2, 8, 4, 1, (7, 7), (4, 4), 2, 1, 0, 1),               # the benchmark's 4x4 stride 2 pad 1 layer, small
    (2, 8, 16, 1, (5, 6), (1, 1), 1, 0, 0, 1),              # 1x1: no col2im
    (1, 3, 9, 3, (6, 5), (5, 3), (3, 2), (2, 1), (2, 1), (1, 2)),
    (1, 2, 3, 1, (4, 5, 3), (2, 3, 2), (1, 2, 1), 1, 0, 1),
    (2, 4, 6, 2, (3, 4, 4), (3, 1, 2), 2, (1, 0, 1), (1, 0, 1), (1, 1, 2)),
]
IDS = [str(i) for i in range(len(GRID))]
# output_padding >= stride, allowed because it is < dilation: the adjoint geometry's high-side padding shrinks by
# whole strides of output_padding.
OPAD_GE_STRIDE = pytest.param((2, 5, 6, 1, (6, 7), (3, 3), 1, 2, (1, 0), 2), id="opad-ge-stride")
CASES = [pytest.param(c, id=i) for c, i in zip(GRID, IDS)] + [OPAD_GE_STRIDE]


def _case(case, dtype):
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    N, Cin, Cout, g, sp, ks, stride, padding, opad, dilation = case
    x = rng.standard_normal((N, Cin) + sp).astype(dtype)
    w = rng.standard_normal((Cin, Cout // g) + ks).astype(dtype)
    b = rng.standard_normal(Cout).astype(dtype)
    return x, w, b, dict(stride=stride, padding=padding, output_padding=opad, groups=g, dilation=dilation)


def _close(got, want, dtype):
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale)


def _tup(v, nd):
    return (v,) * nd if np.isscalar(v) else tuple(v)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_matches_reference(algorithm, dtype, case):
    x, w, b, kw = _case(case, dtype)
    nd = x.ndim - 2
    y = CONVT[nd](x, w, b, **kw, algorithm=algorithm)
    want = ref.conv_transpose_nd(x, w, b, **kw)
    expect = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, k, s, p, op, d in zip(
        x.shape[2:], w.shape[2:], _tup(kw["stride"], nd), _tup(kw["padding"], nd),
        _tup(kw["output_padding"], nd), _tup(kw["dilation"], nd)))
    assert y.shape == want.shape == (x.shape[0], w.shape[1] * kw["groups"]) + expect
    assert y.dtype == dtype
    _close(y, want, dtype)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES)
def test_matches_torch(algorithm, dtype, case):
    torch = pytest.importorskip("torch")
    x, w, b, kw = _case(case, dtype)
    nd = x.ndim - 2
    F = getattr(torch.nn.functional, "conv_transpose%dd" % nd)
    want = F(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), **kw).numpy()
    _close(CONVT[nd](x, w, b, **kw, algorithm=algorithm), want, dtype)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("case", GRID[::3], ids=IDS[::3])
def test_is_the_adjoint_of_conv(algorithm, case):
    """<conv_transpose(y), x> == <y, conv(x)>: the weight in transposed layout is the forward conv's weight."""
    yin, w, _, kw = _case(case, np.float64)
    nd = yin.ndim - 2
    out = CONVT[nd](yin, w, **kw, algorithm=algorithm)
    x = np.random.default_rng(1).standard_normal(out.shape)
    fwd = CONV[nd](x, w, stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"], groups=kw["groups"])
    assert fwd.shape == yin.shape
    assert np.isclose((out * x).sum(), (yin * fwd).sum(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_out_argument_and_inputs_untouched(algorithm):
    x, w, b, kw = _case(GRID[4], np.float32)
    copies = [a.copy() for a in (x, w, b)]
    want = fc.conv_transpose2d(x, w, b, **kw, algorithm=algorithm)
    out = np.full(want.shape, np.nan, np.float32)
    assert fc.conv_transpose2d(x, w, b, **kw, algorithm=algorithm, out=out) is out
    assert np.array_equal(out, want)
    for a, c in zip((x, w, b), copies):
        assert np.array_equal(a, c)


def test_mixed_and_integer_dtypes():
    x, w, b, kw = _case(GRID[3], np.float32)
    y = fc.conv_transpose2d(x, w.astype(np.float64), b, **kw)
    assert y.dtype == np.float64
    yi = fc.conv_transpose2d(np.ones((1, 2, 3, 3), np.int32), np.ones((2, 1, 2, 2), np.int64))
    assert yi.dtype == np.float64 and yi.shape == (1, 1, 4, 4) and yi[0, 0, 1, 1] == 8


def test_bitwise_identical_for_any_thread_count():
    x, w, b, kw = _case((8, 32, 16, 2, (9, 10), (4, 3), 2, 1, 1, 1), np.float32)    # > 2 MFLOP: two threads
    results = []
    for n in (1, 2):
        with fc.num_threads(n):
            results.append([fc.conv_transpose2d(x, w, b, **kw, algorithm=a) for a in ALGORITHMS])
    for a, b_ in zip(*results):
        assert np.array_equal(a, b_)


def test_errors():
    """(output_padding >= stride and dilation, a channel mismatch and padding='same' are in test_conv_validation)"""
    x = np.ones((1, 4, 5, 5))
    w = np.ones((4, 3, 3, 3))
    with pytest.raises(ValueError, match="conv_transpose2d.*output_padding"):
        fc.conv_transpose2d(x, w, stride=(2, 1), dilation=(1, 3), output_padding=(0, 3))
    with pytest.raises(ValueError, match="conv_transpose2d.*groups"):
        fc.conv_transpose2d(x, w, groups=3)
    with pytest.raises(ValueError, match="conv_transpose2d.*bias"):
        fc.conv_transpose2d(x, w, np.ones(4))
    with pytest.raises(ValueError, match="conv_transpose2d.*empty"):
        fc.conv_transpose2d(x, w, padding=5)
    with pytest.raises(ValueError, match="conv_transpose1d.*weight"):
        fc.conv_transpose1d(np.ones((1, 4, 5)), w)
    with pytest.raises(TypeError, match="conv_transpose2d.*stride"):
        fc.conv_transpose2d(x, w, stride=1.5)
    with pytest.raises(TypeError, match="conv_transpose2d.*input"):
        fc.conv_transpose2d(x.astype(complex), w)
    with pytest.raises(ValueError, match="conv_transpose2d.*algorithm"):
        fc.conv_transpose2d(x, w, algorithm="strassen")
    with pytest.raises(TypeError, match="conv_transpose2d.*algorithm"):
        fc.conv_transpose2d(x, w, algorithm=None)
