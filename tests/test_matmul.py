"""fastconv.matmul: products on fastconv's threads (single-threaded BLAS per output block)."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import _gemm

SHAPES = [(64, 400, 120), (300, 500, 700), (1, 3000, 2000), (2000, 1000, 1), (513, 129, 257), (0, 5, 3),
          (3, 0, 4), (7, 9, 0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=[str(s) for s in SHAPES])
def test_matches_numpy_for_every_layout(shape, dtype):
    M, K, N = shape
    rng = np.random.default_rng(M * 7 + K)
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, N)).astype(dtype)
    want = a.astype(np.float64) @ b.astype(np.float64)
    tol = (1e-4 if dtype == np.float32 else 1e-11) * max(1.0, float(np.sqrt(K)))
    for A in (a, np.asfortranarray(a)):
        for B in (b, np.asfortranarray(b)):
            got = fc.matmul(A, B)
            assert got.dtype == dtype and got.shape == (M, N)
            np.testing.assert_allclose(got, want, rtol=0, atol=tol)


def test_bitwise_identical_across_thread_counts_and_layouts():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 700)).astype(np.float32)
    b = rng.standard_normal((700, 500)).astype(np.float32)
    assert _gemm.blocks(300, 500, 700) != (300, 500)        # really split into several blocks
    results = []
    for n in (1, 2, 3):
        with fc.num_threads(n):
            results.append(fc.matmul(a, b))
    for r in results[1:]:
        assert np.array_equal(r, results[0])


def test_blocks_depend_on_the_shape_and_cover_it():
    for M, N, K in [(1536, 1536, 1536), (128, 4096, 9216), (9216, 10, 4096), (64, 120, 400), (5, 3, 2)]:
        bm, bn = _gemm.blocks(M, N, K)
        nblocks = -(-M // bm) * -(-N // bn)
        assert 1 <= nblocks <= _gemm.MAX_BLOCKS
        assert 1 <= bm <= M and 1 <= bn <= N
    assert _gemm.blocks(128, 4096, 9216)[0] == 128        # a wide product is split by columns only
    assert _gemm.blocks(9216, 10, 4096)[1] == 10          # a tall one by rows only


def test_out_argument_and_fallbacks():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((200, 300))
    b = rng.standard_normal((300, 100))
    out = np.empty((200, 100))
    assert fc.matmul(a, b, out=out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-12, atol=1e-10)
    with pytest.raises(ValueError, match="shape"):
        fc.matmul(a, b, out=np.empty((100, 200)))
    with pytest.raises(TypeError, match="dtype"):
        fc.matmul(a, b, out=np.empty((200, 100), np.float32))
    buf = np.empty((300, 100))
    with pytest.raises(ValueError, match="overlaps"):
        fc.matmul(a, buf, out=buf[:200])
    # integers, mixed dtypes, strided views and other dimensions: NumPy's result
    ai = np.arange(12).reshape(3, 4)
    assert np.array_equal(fc.matmul(ai, ai.T), ai @ ai.T)
    np.testing.assert_allclose(fc.matmul(a.astype(np.float32), b), a.astype(np.float32) @ b, rtol=1e-6)
    np.testing.assert_allclose(fc.matmul(a[::2, ::3], b[::3]), a[::2, ::3] @ b[::3], rtol=1e-12, atol=1e-10)
    v = rng.standard_normal(300)
    np.testing.assert_allclose(fc.matmul(a, v), a @ v, rtol=1e-12)
    with pytest.raises(ValueError):
        fc.matmul(a, a)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((400, 300)).astype(np.float32)
    b = rng.standard_normal((300, 200)).astype(np.float32)
    a0, b0 = a.copy(), b.copy()
    fc.matmul(a, b)
    assert np.array_equal(a, a0) and np.array_equal(b, b0)


def test_linear_and_tape_use_it():
    rng = np.random.default_rng(3)
    x = fc.Tensor(rng.standard_normal((128, 512)).astype(np.float32), requires_grad=True)
    w = fc.Tensor(rng.standard_normal((256, 512)).astype(np.float32), requires_grad=True)
    y = fc.nn.functional.linear(x, w)
    np.testing.assert_allclose(y.data, x.data @ w.data.T, rtol=1e-4, atol=1e-3)
    (y * y).sum().backward()
    g = 2 * y.data
    np.testing.assert_allclose(x.grad, g @ w.data, rtol=1e-4, atol=1e-2)
    np.testing.assert_allclose(w.grad, g.T @ x.data, rtol=1e-4, atol=1e-2)
    z = x @ fc.Tensor(w.data.T.copy())
    np.testing.assert_allclose(z.data, y.data, rtol=1e-5, atol=1e-4)
