"""Pooling: forward values and indices against tests/reference.py and torch, backward passes by adjoint
identities, finite differences and torch autograd, determinism across thread counts, and argument errors."""
import itertools

import numpy as np
import pytest

import fastconv
from fastconv import grad as G
from fastconv import pooling as P
from fastconv.pooling import _engine as pool_engine

import reference as R

RNG = np.random.default_rng(1234)
DTYPES = [np.float32, np.float64]


def rand(shape, dtype=np.float64, distinct=True):
    """Random values; ``distinct`` makes ties impossible (a permutation of a grid)."""
    n = int(np.prod(shape))
    x = RNG.permutation(n).astype(np.float64) / n - 0.5 if distinct else RNG.standard_normal(n)
    return x.reshape(shape).astype(dtype)


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


MAX_FN = {1: P.max_pool1d, 2: P.max_pool2d, 3: P.max_pool3d}
AVG_FN = {1: P.avg_pool1d, 2: P.avg_pool2d, 3: P.avg_pool3d}
AVG_BW = {1: G.avg_pool1d_backward, 2: G.avg_pool2d_backward, 3: G.avg_pool3d_backward}
AAVG_FN = {1: P.adaptive_avg_pool1d, 2: P.adaptive_avg_pool2d, 3: P.adaptive_avg_pool3d}
AAVG_BW = {1: G.adaptive_avg_pool1d_backward, 2: G.adaptive_avg_pool2d_backward, 3: G.adaptive_avg_pool3d_backward}
AMAX_FN = {1: P.adaptive_max_pool1d, 2: P.adaptive_max_pool2d, 3: P.adaptive_max_pool3d}
UNPOOL_FN = {1: P.max_unpool1d, 2: P.max_unpool2d, 3: P.max_unpool3d}
SHAPES = {1: (2, 3, 13), 2: (2, 3, 9, 11), 3: (1, 2, 6, 7, 5)}
SMALL = {1: (1, 2, 7), 2: (1, 1, 5, 6), 3: (1, 1, 4, 5, 3)}      # for finite differences

# (kernel, stride, padding, dilation) per number of spatial dims: overlapping, non-square, strided, padded,
# dilated; the ceil_mode grid below adds windows cut by the input edge and ones starting in the padding.
MAX_CASES = {
    1: [(2, None, 0, 1), (3, 2, 1, 1), (4, 3, 2, 1), (3, 1, 1, 2), (5, 2, 2, 1)],
    2: [(2, None, 0, 1), (3, 2, 1, 1), ((2, 3), (1, 2), (1, 1), 1), ((3, 2), (2, 3), (1, 0), (2, 1)),
        (3, 1, 1, 1), ((1, 4), (1, 3), (0, 2), 1)],
    3: [(2, None, 0, 1), ((3, 2, 2), (2, 1, 2), (1, 1, 0), 1), ((2, 3, 2), 2, (1, 1, 1), (2, 1, 1))],
}


def case_id(case):
    return "k%s-s%s-p%s-d%s" % case


# ----------------------------------------------------------------------------------------------- max pooling
@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_matches_reference(nd, ceil_mode, dtype):
    x = rand(SHAPES[nd], dtype)
    for k, s, p, d in MAX_CASES[nd]:
        y, idx = MAX_FN[nd](x, k, s, p, d, ceil_mode, return_indices=True)
        ry, ridx = R.max_pool_nd(x, k, s, p, d, ceil_mode)
        assert y.dtype == dtype and idx.dtype == np.int64
        np.testing.assert_array_equal(y, ry.astype(dtype), err_msg=case_id((k, s, p, d)))
        np.testing.assert_array_equal(idx, ridx, err_msg=case_id((k, s, p, d)))
        np.testing.assert_array_equal(MAX_FN[nd](x, k, s, p, d, ceil_mode), y)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool_matches_torch(nd):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tfn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
    x = rand(SHAPES[nd], np.float32, distinct=False)
    for (k, s, p, d), ceil_mode in itertools.product(MAX_CASES[nd], [False, True]):
        y, idx = MAX_FN[nd](x, k, s, p, d, ceil_mode, return_indices=True)
        ty, tidx = tfn(torch.from_numpy(x), k, s, p, d, ceil_mode, return_indices=True)
        np.testing.assert_array_equal(y, ty.numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())


def test_ceil_mode_last_window_in_padding():
    # n=6, k=2, s=2, p=1: ceil gives 4 windows starting at -1, 1, 3, 5 (the last starts inside the input);
    # n=5, k=3, s=2, p=1, ceil: (5 + 2 - 3) / 2 = 2 -> 3 windows; a 4th would start at 5 = n, dropped.
    x = rand((1, 1, 6))
    assert P.max_pool1d(x, 2, 2, 1, ceil_mode=True).shape == (1, 1, 4)
    assert P.max_pool1d(rand((1, 1, 5)), 3, 2, 1, ceil_mode=True).shape == (1, 1, 3)
    # n=2, k=2, s=3, p=1: rounding up gives a 2nd window starting at 2 = n + p (entirely in the right
    # padding), which is dropped; so is the 6th one of n=13, k=4, s=3, p=2 (in the MAX_CASES grid)
    assert P.max_pool1d(rand((1, 1, 2)), 2, 3, 1, ceil_mode=True).shape == (1, 1, 1)
    assert P.avg_pool1d(rand((1, 1, 13)), 4, 3, 2, ceil_mode=True).shape == (1, 1, 5)
    # n=5, k=2, s=2, ceil: the last window holds one element
    x = rand((1, 1, 5))
    y, i = P.max_pool1d(x, 2, ceil_mode=True, return_indices=True)
    assert y.shape == (1, 1, 3) and i[0, 0, -1] == 4 and y[0, 0, -1] == x[0, 0, 4]
    a = P.avg_pool1d(x, 2, ceil_mode=True)
    np.testing.assert_allclose(a[0, 0, -1], x[0, 0, 4])           # divisor clipped to n + padding = 1
    a = P.avg_pool1d(x, 2, 2, 1, ceil_mode=True)                   # windows [-1,1) [1,3) [3,5) (+ none)
    np.testing.assert_allclose(a, R.avg_pool_nd(x, 2, 2, 1, True))


def test_max_pool_ties_first_wins():
    x = np.zeros((1, 2, 5, 6), np.float32)
    x[0, 1, 1:3, 2:5] = 7.0
    y, idx = P.max_pool2d(x, 3, 1, 1, return_indices=True)
    ry, ridx = R.max_pool_nd(x, 3, 1, 1)
    np.testing.assert_array_equal(idx, ridx)
    assert idx[0, 0, 0, 0] == 0            # all equal: the first element of the window
    assert idx[0, 1, 2, 3] == 1 * 6 + 2    # the first 7 in row-major order


def test_max_pool_narrow_inputs_ties_and_nan():
    """Inputs so narrow that no window is free of padding: every column goes through the window tables."""
    x = np.round(rand((2, 2, 5, 4), np.float64, distinct=False) * 2) / 2          # many ties
    x[0, 1, 2, 1] = np.nan
    x[1, 0, 1:3, 2] = np.nan
    x[1, 1] = 0.0
    for k, s, p, d, ceil_mode in [((2, 3), 1, (0, 1), (1, 2), False), ((3, 3), (2, 3), 1, 1, True),
                                  ((2, 4), (1, 2), (1, 2), 1, True)]:
        y, idx = P.max_pool2d(x, k, s, p, d, ceil_mode, return_indices=True)
        ry, ridx = R.max_pool_nd(x, k, s, p, d, ceil_mode)
        np.testing.assert_array_equal(y, ry)
        np.testing.assert_array_equal(idx, ridx)
    for size in [(2, 3), (4, 1), 1]:
        y, idx = P.adaptive_max_pool2d(x, size, return_indices=True)
        ry, ridx = R.adaptive_pool_nd(x, fastconv.PoolGeometry.adaptive(x.shape, size, "test").output_size, "max")
        np.testing.assert_array_equal(y, ry)
        np.testing.assert_array_equal(idx, ridx)


def test_max_pool_nan_and_inf():
    x = rand((1, 1, 6, 8), np.float64, distinct=False)
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 4, 5] = np.inf
    x[0, 0, 4, 6] = np.nan
    x[0, 0, 0, 6:] = -np.inf
    x[0, 0, 1, 6:] = -np.inf
    y, idx = P.max_pool2d(x, 2, return_indices=True)
    ry, ridx = R.max_pool_nd(x, 2)
    np.testing.assert_array_equal(y, ry)                 # NaN positions compare equal in assert_array_equal
    np.testing.assert_array_equal(idx, ridx)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 9
    assert np.isnan(y[0, 0, 2, 3]) and idx[0, 0, 2, 3] == 4 * 8 + 6   # NaN beats +inf
    assert y[0, 0, 0, 3] == -np.inf and idx[0, 0, 0, 3] == 6          # all -inf: the first element


def test_max_pool_nan_inf_matches_torch():
    torch = pytest.importorskip("torch")
    x = rand((2, 2, 7, 9), np.float32, distinct=False)
    flat = x.reshape(-1)
    flat[RNG.choice(flat.size, 12, replace=False)] = np.nan
    flat[RNG.choice(flat.size, 12, replace=False)] = np.inf
    flat[RNG.choice(flat.size, 12, replace=False)] = -np.inf
    for k, s, p, d in MAX_CASES[2]:
        y, idx = P.max_pool2d(x, k, s, p, d, True, True)
        ty, tidx = torch.nn.functional.max_pool2d(torch.from_numpy(x), k, s, p, d, True, True)
        np.testing.assert_array_equal(y, ty.numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())


def test_max_pool_large_fast_paths_match_numpy(monkeypatch):
    """Non-overlapping 2x2 on a larger input: streamed output blocks and column chunks."""
    x = rand((3, 4, 34, 50), np.float32, distinct=False)
    win = x.reshape(3, 4, 17, 2, 25, 2).transpose(0, 1, 2, 4, 3, 5).reshape(3, 4, 17, 25, 4)
    arg = win.argmax(-1)
    expect_idx = (np.arange(17)[:, None] * 2 + arg // 2) * 50 + np.arange(25) * 2 + arg % 2
    for stream_bytes, task_bytes in [(2 ** 40, 32768), (0, 32768), (0, 300)]:
        monkeypatch.setattr(pool_engine, "STREAM_BYTES", stream_bytes)
        monkeypatch.setattr(pool_engine, "TASK_BYTES", task_bytes)
        y, idx = P.max_pool2d(x, 2, return_indices=True)
        np.testing.assert_array_equal(y, win.max(-1))
        np.testing.assert_array_equal(idx, expect_idx)
        np.testing.assert_allclose(P.avg_pool2d(x, 2), win.mean(-1), rtol=1e-6)
        gy = rand(y.shape, np.float32, distinct=False)
        spread = np.repeat(np.repeat(gy / 4, 2, axis=2), 2, axis=3)
        np.testing.assert_array_equal(G.avg_pool2d_backward(gy, x.shape, 2), spread)
        np.testing.assert_array_equal(G.max_pool_backward(gy, idx, x.shape), R.index_scatter_add(gy, idx, x.shape))
    # a single long row: the row is split into column chunks so every thread has work
    x1 = rand((1, 1, 4001), np.float32, distinct=False)
    with fastconv.num_threads(2):
        y, idx = P.max_pool1d(x1, 3, 2, 1, return_indices=True)
    ry, ridx = R.max_pool_nd(x1, 3, 2, 1)
    np.testing.assert_array_equal(idx, ridx)


# ----------------------------------------------------------------------------------------------- average pooling
AVG_CASES = {
    1: [(2, None, 0), (3, 2, 1), (4, 3, 2), (3, 1, 1)],
    2: [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 1)), ((3, 2), (2, 3), (1, 0)), ((1, 4), (1, 3), (0, 2))],
    3: [(2, None, 0), ((3, 2, 2), (2, 1, 2), (1, 1, 0))],
}


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_pool_matches_reference(nd, dtype):
    x = rand(SHAPES[nd], dtype, distinct=False)
    for (k, s, p), ceil_mode, cip, div in itertools.product(AVG_CASES[nd], [False, True], [True, False],
                                                             [None, 3, -2]):
        y = AVG_FN[nd](x, k, s, p, ceil_mode, cip, div)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, R.avg_pool_nd(x, k, s, p, ceil_mode, cip, div), **tol(dtype))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_avg_pool_matches_torch(nd):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rand(SHAPES[nd], np.float64, distinct=False)
    for (k, s, p), ceil_mode, cip in itertools.product(AVG_CASES[nd], [False, True], [True, False]):
        y = AVG_FN[nd](x, k, s, p, ceil_mode, cip)
        tx = torch.from_numpy(x)
        if nd == 1:
            ty = F.avg_pool1d(tx, k, s, p, ceil_mode, cip)
        else:
            ty = {2: F.avg_pool2d, 3: F.avg_pool3d}[nd](tx, k, s, p, ceil_mode, cip, 5)
            y = AVG_FN[nd](x, k, s, p, ceil_mode, cip, 5)
        np.testing.assert_allclose(y, ty.numpy(), rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------- Lp pooling
@pytest.mark.parametrize("nd", [1, 2])
def test_lp_pool_matches_reference_and_torch(nd):
    x = rand(SHAPES[nd], np.float64, distinct=False)
    fn = {1: P.lp_pool1d, 2: P.lp_pool2d}[nd]
    cases = [(2, None), (3, 2)] if nd == 1 else [(2, None), ((3, 2), (2, 1)), (3, 2)]
    torch = None
    try:
        import torch
    except ImportError:
        pass
    for (k, s), p, ceil_mode in itertools.product(cases, [1, 2, 3, 1.5], [False, True]):
        y = fn(x if p in (1, 2) else np.abs(x), p, k, s, ceil_mode)
        np.testing.assert_allclose(y, R.lp_pool_nd(x if p in (1, 2) else np.abs(x), p, k, s, ceil_mode),
                                   rtol=1e-12, atol=1e-12)
        if torch is not None:
            tfn = {1: torch.nn.functional.lp_pool1d, 2: torch.nn.functional.lp_pool2d}[nd]
            ty = tfn(torch.from_numpy(x if p in (1, 2) else np.abs(x)), p, k, s, ceil_mode)
            np.testing.assert_allclose(y, ty.numpy(), rtol=1e-12, atol=1e-12)
    # L2 pooling is the Euclidean norm of each window; float32 computed in float32
    x32 = rand((1, 2, 6, 6), np.float32)
    y = P.lp_pool2d(x32, 2, 3)
    win = x32.astype(np.float64).reshape(1, 2, 2, 3, 2, 3)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, np.sqrt((win ** 2).sum(axis=(3, 5))), rtol=1e-5)


# ----------------------------------------------------------------------------------------------- adaptive / global
ADAPTIVE_SIZES = {1: [4, 13, 20, 1], 2: [(4, 5), (3, None), (12, 14), 1], 3: [(3, 4, 2), (None, 2, 7), 1]}


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_pools_match_reference(nd, dtype):
    x = rand(SHAPES[nd], dtype)
    for size in ADAPTIVE_SIZES[nd]:
        full = fastconv.PoolGeometry.adaptive(x.shape, size, "test").output_size
        y = AAVG_FN[nd](x, size)
        np.testing.assert_allclose(y, R.adaptive_pool_nd(x, full, "avg"), **tol(dtype))
        m, idx = AMAX_FN[nd](x, size, return_indices=True)
        rm, ridx = R.adaptive_pool_nd(x, full, "max")
        np.testing.assert_array_equal(m, rm.astype(dtype))
        np.testing.assert_array_equal(idx, ridx)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_adaptive_pools_match_torch(nd):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tavg = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[nd]
    tmax = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}[nd]
    x = rand(SHAPES[nd], np.float32, distinct=False)
    x.reshape(-1)[::17] = np.nan
    for size in ADAPTIVE_SIZES[nd]:
        tx = torch.from_numpy(x)
        np.testing.assert_allclose(AAVG_FN[nd](x, size), tavg(tx, size).numpy(), rtol=1e-5, atol=1e-6)
        m, idx = AMAX_FN[nd](x, size, return_indices=True)
        tm, tidx = tmax(tx, size, return_indices=True)
        np.testing.assert_array_equal(m, tm.numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())


@pytest.mark.parametrize("shape", [(2, 3, 17), (2, 3, 5, 7), (1, 2, 3, 4, 5)])
def test_global_pools(shape):
    x = rand(shape, np.float64)
    m, idx = P.global_max_pool(x, return_indices=True)
    flat = x.reshape(shape[:2] + (-1,))
    np.testing.assert_array_equal(m, flat.max(-1))
    np.testing.assert_array_equal(idx, flat.argmax(-1))
    np.testing.assert_array_equal(P.global_max_pool(x), m)
    np.testing.assert_allclose(P.global_avg_pool(x), flat.mean(-1), rtol=1e-12)
    gy = rand(shape[:2])
    gx = G.global_avg_pool_backward(gy, shape)
    np.testing.assert_allclose(gx, np.broadcast_to((gy / flat.shape[-1]).reshape(shape[:2] + (1,) * (len(shape) - 2)),
                                                   shape), rtol=1e-12)
    np.testing.assert_array_equal(G.max_pool_backward(gy, idx, shape), R.index_scatter_add(gy, idx, shape))


# ----------------------------------------------------------------------------------------------- k-max
@pytest.mark.parametrize("dtype", DTYPES)
def test_kmax_pool_matches_reference(dtype):
    x = rand((3, 4, 9), dtype, distinct=False)
    x[0, 0, 2] = x[0, 0, 5] = x[0, 0, 7] = 5.0          # ties: taken by position
    x[1, 2, 3] = np.nan
    for dim, k, srt in itertools.product([-1, 0, 1], [1, 3], [True, False]):
        v, i = P.kmax_pool(x, k, dim, srt)
        rv, ri = R.kmax_pool_ref(x, k, dim, srt)
        assert v.dtype == dtype and i.dtype == np.int64
        np.testing.assert_array_equal(v, rv.astype(dtype))
        np.testing.assert_array_equal(i, ri)
        np.testing.assert_array_equal(v, np.take_along_axis(x, i, dim))
    v, i = P.kmax_pool(x, 3, sorted=False)
    assert (np.diff(i, axis=-1) > 0).all()               # original order


def test_kmax_pool_matches_torch_topk():
    torch = pytest.importorskip("torch")
    x = rand((2, 5, 11), np.float32)
    for dim, k in [(-1, 4), (1, 2), (0, 1)]:
        v, i = P.kmax_pool(x, k, dim)
        tv, ti = torch.topk(torch.from_numpy(x), k, dim, largest=True, sorted=True)
        np.testing.assert_array_equal(v, tv.numpy())
        np.testing.assert_array_equal(i, ti.numpy())


# ----------------------------------------------------------------------------------------------- unpooling
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_unpool_round_trip(nd):
    x = rand(SHAPES[nd], np.float64) + 1.0       # positive, so the zeros of the unpooled planes never win
    k, s = 2, 2
    y, idx = MAX_FN[nd](x, k, s, return_indices=True)
    size = x.shape[2:]
    u = UNPOOL_FN[nd](y, idx, k, s, output_size=size)
    assert u.shape == x.shape
    np.testing.assert_array_equal(u, R.max_unpool_nd(y, idx, size))
    # the maxima are back where they came from, zeros elsewhere; pooling again gives the same values
    np.testing.assert_array_equal(MAX_FN[nd](u, k, s), y)
    assert np.count_nonzero(u) == y.size
    # the full (N, C, *size) form of output_size; the default size (n - 1) s - 2 p + k
    assert UNPOOL_FN[nd](y, idx, k, s, 0, x.shape).shape == x.shape
    even = x[(slice(None), slice(None)) + tuple(slice(0, n - n % 2) for n in size)]
    y, idx = MAX_FN[nd](even, k, s, return_indices=True)
    u = UNPOOL_FN[nd](y, idx, k)
    assert u.shape == even.shape
    np.testing.assert_array_equal(MAX_FN[nd](u, k), y)


def test_max_unpool_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rand((2, 3, 9, 11), np.float32)
    for k, s, p in [(2, 2, 0), (3, 2, 1), ((2, 3), (2, 3), (1, 1))]:
        y, idx = P.max_pool2d(x, k, s, p, return_indices=True)
        u = P.max_unpool2d(y, idx, k, s, p, output_size=x.shape[2:])
        tu = F.max_unpool2d(torch.from_numpy(y), torch.from_numpy(idx), k, s, p, output_size=x.shape[2:])
        np.testing.assert_array_equal(u, tu.numpy())
    x1 = rand((2, 2, 12), np.float32)
    y, idx = P.max_pool1d(x1, 3, 3, return_indices=True)
    np.testing.assert_array_equal(P.max_unpool1d(y, idx, 3),
                                  F.max_unpool1d(torch.from_numpy(y), torch.from_numpy(idx), 3).numpy())


# ----------------------------------------------------------------------------------------------- backward
def numerical_grad(f, x, gy, eps=1e-6):
    """d/dx sum(gy * f(x)) by central differences (float64)."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = np.sum(gy * f(x))
        flat[i] = old - eps
        down = np.sum(gy * f(x))
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool_backward(nd):
    x = rand(SHAPES[nd], np.float64)
    for (k, s, p, d), ceil_mode in itertools.product(MAX_CASES[nd], [False, True]):
        y, idx = MAX_FN[nd](x, k, s, p, d, ceil_mode, return_indices=True)
        gy = rand(y.shape, distinct=False)
        gx = G.max_pool_backward(gy, idx, x.shape)
        np.testing.assert_allclose(gx, R.index_scatter_add(gy, idx, x.shape), rtol=1e-14, atol=1e-14)
    # one finite-difference check (distinct values: max pooling is differentiable there)
    k, s, p, d = MAX_CASES[nd][1]
    x = rand(SMALL[nd])
    y, idx = MAX_FN[nd](x, k, s, p, d, return_indices=True)
    gy = rand(y.shape, distinct=False)
    num = numerical_grad(lambda z: MAX_FN[nd](z, k, s, p, d), x.copy(), gy)
    np.testing.assert_allclose(G.max_pool_backward(gy, idx, x.shape), num, atol=1e-6)


def test_max_pool_backward_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rand((2, 3, 9, 11), np.float32, distinct=False)
    for k, s, p, d in MAX_CASES[2]:
        tx = torch.from_numpy(x).requires_grad_()
        ty = F.max_pool2d(tx, k, s, p, d, True)
        gy = rand(tuple(ty.shape), np.float32, distinct=False)
        ty.backward(torch.from_numpy(gy))
        _, idx = P.max_pool2d(x, k, s, p, d, True, True)
        np.testing.assert_allclose(G.max_pool_backward(gy, idx, x.shape), tx.grad.numpy(), rtol=1e-6, atol=1e-6)
    # adaptive max, 3-D
    x3 = rand((1, 2, 5, 6, 7), np.float32)
    tx = torch.from_numpy(x3).requires_grad_()
    ty = F.adaptive_max_pool3d(tx, (2, 4, 3))
    gy = rand(tuple(ty.shape), np.float32, distinct=False)
    ty.backward(torch.from_numpy(gy))
    _, idx = P.adaptive_max_pool3d(x3, (2, 4, 3), return_indices=True)
    np.testing.assert_allclose(G.max_pool_backward(gy, idx, x3.shape), tx.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_avg_pool_backward_is_adjoint(nd):
    x = rand(SHAPES[nd], np.float64, distinct=False)
    for (k, s, p), ceil_mode, cip, div in itertools.product(AVG_CASES[nd], [False, True], [True, False],
                                                             [None, 3]):
        y = AVG_FN[nd](x, k, s, p, ceil_mode, cip, div)
        gy = rand(y.shape, distinct=False)
        gx = AVG_BW[nd](gy, x.shape, k, s, p, ceil_mode, cip, div)
        assert gx.shape == x.shape
        np.testing.assert_allclose(np.sum(y * gy), np.sum(x * gx), rtol=1e-12)
    # and numerically, on one overlapping padded case
    k, s, p = AVG_CASES[nd][1]
    x = rand(SMALL[nd], distinct=False)
    y = AVG_FN[nd](x, k, s, p, True, False)
    gy = rand(y.shape, distinct=False)
    num = numerical_grad(lambda z: AVG_FN[nd](z, k, s, p, True, False), x.copy(), gy)
    np.testing.assert_allclose(AVG_BW[nd](gy, x.shape, k, s, p, True, False), num, atol=1e-7)


def test_avg_pool_backward_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = rand((2, 3, 9, 11), np.float32, distinct=False)
    for (k, s, p), ceil_mode, cip in itertools.product(AVG_CASES[2], [False, True], [True, False]):
        tx = torch.from_numpy(x).requires_grad_()
        ty = F.avg_pool2d(tx, k, s, p, ceil_mode, cip)
        gy = rand(tuple(ty.shape), np.float32, distinct=False)
        ty.backward(torch.from_numpy(gy))
        np.testing.assert_allclose(G.avg_pool2d_backward(gy, x.shape, k, s, p, ceil_mode, cip), tx.grad.numpy(),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nd", [1, 2])
def test_lp_pool_backward(nd):
    fwd = {1: P.lp_pool1d, 2: P.lp_pool2d}[nd]
    bwd = {1: G.lp_pool1d_backward, 2: G.lp_pool2d_backward}[nd]
    shape = SMALL[nd]
    x = rand(shape, np.float64) + 0.75             # positive: every power is defined
    for p, (k, s), ceil_mode in [(1, (2, None), False), (2, (3, 2), True), (3.5, (2, None), True)]:
        y = fwd(x, p, k, s, ceil_mode)
        gy = rand(y.shape, distinct=False)
        num = numerical_grad(lambda z: fwd(z, p, k, s, ceil_mode), x.copy(), gy)
        np.testing.assert_allclose(bwd(gy, x, y, p, k, s, ceil_mode), num, rtol=1e-6, atol=1e-7)
    # L2 pooling of signed inputs, and an all-zero window (gradient 0 there)
    x2 = rand(shape, np.float64)
    x2[(0, 0) + (slice(0, 2),) * nd] = 0
    y = fwd(x2, 2, 2)
    gy = rand(y.shape, distinct=False)
    g = bwd(gy, x2, y, 2, 2)
    assert np.isfinite(g).all()
    mask = y != 0
    num = numerical_grad(lambda z: fwd(z, 2, 2), x2.copy(), gy * mask)
    zero_win = np.zeros(x2.shape, bool)
    zero_win[(0, 0) + (slice(0, 2),) * nd] = True
    np.testing.assert_allclose(g[~zero_win], num[~zero_win], atol=1e-6)
    assert (g[zero_win] == 0).all()


def test_lp_pool_backward_matches_torch():
    torch = pytest.importorskip("torch")
    x = rand((2, 3, 8, 9), np.float64) + 0.75
    for p, k, s, ceil_mode in [(2, 2, None, False), (3, (3, 2), (2, 1), True)]:
        tx = torch.from_numpy(x).requires_grad_()
        ty = torch.nn.functional.lp_pool2d(tx, p, k, s, ceil_mode)
        gy = rand(tuple(ty.shape), distinct=False)
        ty.backward(torch.from_numpy(gy))
        y = P.lp_pool2d(x, p, k, s, ceil_mode)
        np.testing.assert_allclose(G.lp_pool2d_backward(gy, x, y, p, k, s, ceil_mode), tx.grad.numpy(),
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_adaptive_avg_pool_backward(nd):
    x = rand(SHAPES[nd], np.float64, distinct=False)
    for size in ADAPTIVE_SIZES[nd]:
        y = AAVG_FN[nd](x, size)
        gy = rand(y.shape, distinct=False)
        gx = AAVG_BW[nd](gy, x.shape)
        np.testing.assert_allclose(np.sum(y * gy), np.sum(x * gx), rtol=1e-12)
    torch = pytest.importorskip("torch")
    tfn = {1: torch.nn.functional.adaptive_avg_pool1d, 2: torch.nn.functional.adaptive_avg_pool2d,
           3: torch.nn.functional.adaptive_avg_pool3d}[nd]
    size = ADAPTIVE_SIZES[nd][0]
    tx = torch.from_numpy(x).requires_grad_()
    ty = tfn(tx, size)
    gy = rand(tuple(ty.shape), distinct=False)
    ty.backward(torch.from_numpy(gy))
    np.testing.assert_allclose(AAVG_BW[nd](gy, x.shape), tx.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_kmax_and_unpool_backward_are_adjoint():
    x = rand((3, 4, 9), np.float64)
    for dim, k in [(-1, 3), (1, 2), (0, 1)]:
        v, i = P.kmax_pool(x, k, dim)
        gy = rand(v.shape, distinct=False)
        gx = G.kmax_pool_backward(gy, i, x.shape, dim)
        np.testing.assert_allclose(np.sum(v * gy), np.sum(x * gx), rtol=1e-12)
        num = numerical_grad(lambda z: P.kmax_pool(z, k, dim)[0], x.copy(), gy)
        np.testing.assert_allclose(gx, num, atol=1e-7)
    x2 = rand((2, 3, 9, 11))
    y, idx = P.max_pool2d(x2, 3, 2, 1, return_indices=True)
    u = P.max_unpool2d(y, idx, 3, 2, 1, output_size=(9, 11))
    gu = rand(u.shape, distinct=False)
    gy = G.max_unpool_backward(gu, idx)
    assert gy.shape == y.shape
    # unpool is linear in its input when indices are distinct within a plane
    distinct = all(len(set(idx[n, c].ravel())) == idx[n, c].size for n in range(2) for c in range(3))
    if distinct:
        np.testing.assert_allclose(np.sum(u * gu), np.sum(y * gy), rtol=1e-12)
    np.testing.assert_array_equal(gy, np.take_along_axis(gu.reshape(2, 3, -1), idx.reshape(2, 3, -1),
                                                         -1).reshape(y.shape))


# ----------------------------------------------------------------------------------------------- determinism, dtypes
def test_bitwise_identical_for_1_and_2_threads():
    x = rand((3, 5, 20, 23), np.float32, distinct=False)
    calls = [
        lambda: P.max_pool2d(x, 3, 2, 1, return_indices=True),
        lambda: P.avg_pool2d(x, (3, 2), (2, 1), 1, True, False),
        lambda: P.adaptive_avg_pool2d(x, (7, 5)),
        lambda: P.adaptive_max_pool2d(x, (7, 5), True),
        lambda: G.avg_pool2d_backward(rand((3, 5, 10, 12), np.float32), x.shape, 3, 2, 1),
        lambda: G.max_pool_backward(rand((3, 5, 10, 12), np.float32), P.max_pool2d(x, 3, 2, 1, return_indices=True)[1],
                                    x.shape),
        lambda: P.kmax_pool(x, 4, 2),
        lambda: P.max_pool1d(x.reshape(1, 1, -1), 3, 2, return_indices=True),
    ]
    for call in calls:
        RNG.bit_generator.state = np.random.default_rng(7).bit_generator.state
        with fastconv.num_threads(1):
            one = call()
        RNG.bit_generator.state = np.random.default_rng(7).bit_generator.state
        with fastconv.num_threads(2):
            two = call()
        for a, b in zip(*(r if isinstance(r, tuple) else (r,) for r in (one, two))):
            assert a.tobytes() == b.tobytes()


def test_dtypes_and_inputs_not_modified():
    x16 = rand((1, 2, 6, 6), np.float16)
    assert P.max_pool2d(x16, 2).dtype == np.float32
    assert P.avg_pool2d(np.arange(36).reshape(1, 1, 6, 6), 2).dtype == np.float64
    np.testing.assert_allclose(P.avg_pool2d(np.arange(36).reshape(1, 1, 6, 6), 2)[0, 0, 0, 0], 3.5)
    # float32 is computed in float32: a sum whose float64 value differs
    x = np.array([[[1e8, 1.0, -1e8, 1.0]]], np.float32)
    assert P.avg_pool1d(x, 4, divisor_override=1)[0, 0, 0] == np.float32(np.float32(1e8 + 1.0) - 1e8) + 1.0
    # non-contiguous input; the caller's arrays are left alone
    big = rand((2, 3, 10, 12), np.float64)
    view = big[:, :, ::2, 1::2]
    before = big.copy()
    y, idx = P.max_pool2d(view, 2, return_indices=True)
    np.testing.assert_array_equal(y, R.max_pool_nd(view, 2)[0])
    G.max_pool_backward(np.ones_like(y), idx, view.shape)
    np.testing.assert_array_equal(big, before)


def test_exported_from_package():
    for name in P.__all__:
        assert getattr(fastconv, name) is getattr(P, name)


# ----------------------------------------------------------------------------------------------- errors
def raises(exc, fn, *args, match=None, **kwargs):
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


def test_bad_pooling_arguments():
    x = rand((1, 2, 5, 5), np.float32)
    raises(ValueError, P.max_pool2d, x, 7, match="kernel_size")          # larger than the padded input
    raises(ValueError, P.max_pool2d, x, 3, padding=2, match="padding")   # more than half the kernel
    raises(ValueError, P.avg_pool2d, x, 2, padding=2, match="padding")
    raises(ValueError, P.max_pool2d, x, 2, stride=0, match="stride")
    raises(ValueError, P.max_pool2d, x, 0, match="kernel_size")
    raises(ValueError, P.max_pool2d, x, (2, 2, 2), match="kernel_size")
    raises(TypeError, P.max_pool2d, x, 2.5, match="kernel_size")
    raises(ValueError, P.max_pool2d, x, 2, dilation=0, match="dilation")
    raises(ValueError, P.max_pool1d, rand((1, 1, 1)), 2, 1, 1, 3, match="dilation")  # a window with no element
    raises(ValueError, P.max_pool2d, x[0], 2, match="input")             # 3-D for max_pool2d
    raises(ValueError, P.max_pool2d, np.zeros((2, 0, 5, 5)), 2, match="input")      # no channels (N = 0 is fine)
    raises(TypeError, P.max_pool2d, x.astype(complex), 2, match="input")
    raises(TypeError, P.max_pool2d, "x", 2, match="input")
    raises(TypeError, P.max_pool2d, x, 2, return_indices=1, match="return_indices")
    raises(TypeError, P.max_pool2d, x, 2, ceil_mode="yes", match="ceil_mode")
    raises(ValueError, P.avg_pool2d, x, 2, divisor_override=0, match="divisor_override")
    raises(TypeError, P.avg_pool2d, x, 2, divisor_override=1.5, match="divisor_override")
    raises(TypeError, P.avg_pool2d, x, 2, count_include_pad=None, match="count_include_pad")
    raises(ValueError, P.lp_pool2d, x, 0, 2, match="norm_type")
    raises(ValueError, P.lp_pool2d, x, float("inf"), 2, match="norm_type")
    raises(TypeError, P.lp_pool2d, x, "2", 2, match="norm_type")
    raises(ValueError, P.adaptive_avg_pool2d, x, (2, 2, 2), match="output_size")
    raises(ValueError, P.adaptive_max_pool2d, x, 0, match="output_size")
    raises(TypeError, P.adaptive_max_pool2d, x, 2.0, match="output_size")
    raises(ValueError, P.global_max_pool, rand((2, 3)), match="input")
    raises(ValueError, P.kmax_pool, x, 6, match="'k'")
    raises(ValueError, P.kmax_pool, x, 0, match="'k'")
    raises(ValueError, P.kmax_pool, x, 2, dim=4, match="dim")
    raises(TypeError, P.kmax_pool, x, 2, sorted=None, match="sorted")


def test_bad_indices_and_backward_arguments():
    x = rand((1, 2, 6, 6), np.float32)
    y, idx = P.max_pool2d(x, 2, return_indices=True)
    bad = idx.copy()
    bad[0, 1, 1, 1] = 36
    raises(ValueError, G.max_pool_backward, y, bad, x.shape, match="indices")
    bad[0, 1, 1, 1] = -1
    raises(ValueError, G.max_pool_backward, y, bad, x.shape, match="indices")
    raises(ValueError, P.max_unpool2d, y, bad, 2, match="indices")
    raises(ValueError, G.max_unpool_backward, x, bad, match="indices")
    raises(TypeError, G.max_pool_backward, y, idx.astype(np.float64), x.shape, match="indices")
    raises(TypeError, P.max_unpool2d, y, idx.astype(np.float32), 2, match="indices")
    raises(ValueError, G.max_pool_backward, y, idx[:, :, :2], x.shape, match="indices")
    raises(ValueError, P.max_unpool2d, y, idx[:, :, :2], 2, match="indices")
    raises(ValueError, G.max_pool_backward, y, idx, (2, 2, 6, 6), match="grad_output")
    raises(TypeError, G.max_pool_backward, y, idx, 36, match="input_shape")
    raises(ValueError, G.max_pool_backward, y, idx, (1, 2, 0, 6), match="input_shape")
    raises(ValueError, P.max_unpool2d, y, idx, 2, output_size=(8, 6), match="output_size")   # not within a stride
    raises(ValueError, P.max_unpool2d, y, idx, 2, output_size=(6,), match="output_size")
    raises(ValueError, G.avg_pool2d_backward, y[:, :, :2], x.shape, 2, match="grad_output")
    raises(ValueError, G.avg_pool2d_backward, y, (1, 2, 6), 2, match="input_shape")
    raises(ValueError, G.lp_pool2d_backward, y, x, y[:, :1], 2, 2, match="output")
    raises(ValueError, G.adaptive_avg_pool2d_backward, y, (2, 2, 6, 6), match="grad_output")
    raises(ValueError, G.global_avg_pool_backward, y, x.shape, match="grad_output")
    v, i = P.kmax_pool(x, 2)
    raises(ValueError, G.kmax_pool_backward, v, i, (1, 2, 5, 6), match="grad_output")
    raises(ValueError, G.kmax_pool_backward, v, i + 6, x.shape, match="indices")
    raises(ValueError, G.kmax_pool_backward, v, i, x.shape, dim=-5, match="dim")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_2x2_stride_2_windows_match_torch_at_every_level(dtype):
    """The 2x2 stride-2 windows (a branch-free select per tap, vectors of 8 / 4 (float64: 4 / 2) output columns
    with an overlapping last vector) against torch at every SIMD level: ties, several NaNs and infs in one window,
    odd and wide rows, rows of exactly one vector and of one vector and a bit (LeNet's 14 and 5 columns), padding
    and ceil_mode."""
    torch = pytest.importorskip("torch")
    from fastconv import _kernels
    rng = np.random.default_rng(11)
    for shape in [(3, 2, 9, 13), (2, 3, 8, 70), (1, 1, 2, 2), (2, 2, 6, 28), (1, 2, 4, 10), (1, 1, 4, 16),
                  (1, 1, 2, 6), (1, 2, 3, 8), (1, 1, 4, 18)]:
        x = rng.integers(-3, 4, shape).astype(dtype)          # many ties
        flat = x.reshape(-1)
        flat[rng.choice(flat.size, flat.size // 7, replace=False)] = np.nan
        flat[rng.choice(flat.size, flat.size // 11, replace=False)] = np.inf
        flat[rng.choice(flat.size, flat.size // 13, replace=False)] = -np.inf
        for kw in (dict(), dict(padding=1), dict(ceil_mode=True)):
            ty, ti = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2, return_indices=True, **kw)
            for level in _kernels.cpu_levels():
                with _kernels.use_level(level):
                    y, i = fastconv.max_pool2d(x, 2, return_indices=True, **kw)
                np.testing.assert_array_equal(y, ty.numpy())
                np.testing.assert_array_equal(i, ti.numpy())
