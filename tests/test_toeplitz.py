"""The ``toeplitz`` algorithm (im2col / col2im + BLAS GEMM) and fastconv.toeplitz's explicit matrices."""
import tracemalloc
import zlib
from math import prod

import numpy as np
import pytest
import scipy.sparse

import fastconv as fc
import reference as ref
from fastconv._algorithms import get
from fastconv._algos import toeplitz as tpa
from test_conv import GRID as CONV_GRID

CONV = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
GRAD_IN = {1: fc.grad.conv1d_input, 2: fc.grad.conv2d_input, 3: fc.grad.conv3d_input}
GRAD_W = {1: fc.grad.conv1d_weight, 2: fc.grad.conv2d_weight, 3: fc.grad.conv3d_weight}
TOL = {np.float32: 2e-4, np.float64: 1e-10}
TOEPLITZ = get("toeplitz")

# The foundation grid (non-square and even kernels, odd sizes, stride, dilation, groups incl. depthwise, 1x1,
# every padding form) plus the cases that exercise the toeplitz paths: grouped 1x1 (no im2col), 1x1 with stride
# and padding (im2col), the flat per-side padding form.
GRID = CONV_GRID + [
    (2, 6, 9, 3, (7, 11), (1, 1), 1, "valid", 1),
    (1, 4, 6, 1, (9, 10), (1, 1), 2, 1, 1),
    (1, 3, 9, 3, (12, 11), (5, 3), (3, 2), (2, 0, 1, 3), (1, 2)),
]
IDS = [str(i) for i in range(len(GRID))]


def _case(case, dtype):
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    N, C, K, g, sp, ks, stride, padding, dilation = case
    x = rng.standard_normal((N, C) + sp).astype(dtype)
    w = rng.standard_normal((K, C // g) + ks).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=g)
    geom = fc.ConvGeometry.make(x.shape, w.shape, **kw)
    gy = rng.standard_normal(geom.output_shape).astype(dtype)
    return x, w, b, gy, kw, geom


def _ref_kw(geom):
    """Reference keyword arguments with padding as explicit per-side pairs (for every padding form)."""
    return dict(stride=geom.stride, padding=geom.padding, dilation=geom.dilation, groups=geom.groups)


def _close(got, want, dtype):
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale)


@pytest.fixture(params=["default", "tiny"])
def chunking(request, monkeypatch):
    """'tiny' chunks split output rows mid-row, and many required tasks split channel blocks."""
    if request.param == "tiny":
        monkeypatch.setattr(tpa, "CHUNK_BYTES", 96)
        monkeypatch.setattr(tpa, "MIN_TASKS", 64)
        monkeypatch.setattr(tpa, "MIN_ROWS", 1)
        monkeypatch.setattr(tpa, "MIN_KBLOCK", 1)
    return request.param


# ----------------------------------------------------------------------------- the algorithm
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_all_ops_match_reference(case, dtype, chunking):
    x, w, b, gy, kw, geom = _case(case, dtype)
    nd = x.ndim - 2
    y = CONV[nd](x, w, b, **kw, algorithm="toeplitz")
    assert y.dtype == dtype and y.shape == geom.output_shape
    _close(y, ref.conv_nd(x, w, b, **_ref_kw(geom)), dtype)
    gx = GRAD_IN[nd](x.shape, w, gy, **kw, algorithm="toeplitz")
    _close(gx, ref.conv_grad_input_nd(x.shape, w, gy, **_ref_kw(geom)), dtype)
    gw = GRAD_W[nd](x, w.shape, gy, **kw, algorithm="toeplitz")
    _close(gw, ref.conv_grad_weight_nd(x, gy, w.shape, **_ref_kw(geom)), dtype)


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_padding_modes_and_flip(padding_mode, nd):
    rng = np.random.default_rng(nd)
    x = rng.standard_normal((2, 4) + (9, 8, 7)[:nd])
    w = rng.standard_normal((6, 2) + (3, 2, 3)[:nd])
    pad = ((2, 1), (1, 1), (0, 2))[:nd]
    for flip in (False, True):
        y = CONV[nd](x, w, None, 1, pad, 1, 2, padding_mode=padding_mode, flip=flip, algorithm="toeplitz")
        want = ref.conv_nd(x, w, None, 1, pad, 1, 2, padding_mode=padding_mode, flip=flip)
        _close(y, want, np.float64)


def _torch_padding(case):
    """torch takes an int, one int per dim (symmetric), 'valid', or 'same' with stride 1."""
    padding, stride, nd = case[7], case[6], len(case[4])
    if isinstance(padding, tuple):
        return len(padding) == nd and not any(isinstance(p, tuple) for p in padding)
    return padding != "same" or stride == 1


TORCH_CASES = [c for c in GRID if _torch_padding(c)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", TORCH_CASES, ids=[str(i) for i in range(len(TORCH_CASES))])
def test_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    x, w, b, gy, kw, geom = _case(case, dtype)
    nd = x.ndim - 2
    F = getattr(torch.nn.functional, "conv%dd" % nd)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    yt = F(xt, wt, torch.tensor(b), **kw)
    yt.backward(torch.tensor(gy))
    _close(CONV[nd](x, w, b, **kw, algorithm="toeplitz"), yt.detach().numpy(), dtype)
    _close(GRAD_IN[nd](x.shape, w, gy, **kw, algorithm="toeplitz"), xt.grad.numpy(), dtype)
    _close(GRAD_W[nd](x, w.shape, gy, **kw, algorithm="toeplitz"), wt.grad.numpy(), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_identical_for_any_thread_count(dtype):
    x, w, b, gy, kw, geom = _case((8, 16, 24, 2, (21, 22), (3, 2), 1, 1, 1), dtype)
    for op in ("forward", "grad_input", "grad_weight"):
        assert tpa.plan(geom, dtype, op, 2).threads == 2       # big enough to use both threads
    runs = []
    for n in (1, 2, 3):
        with fc.num_threads(n):
            runs.append((fc.conv2d(x, w, b, **kw, algorithm="toeplitz"),
                         fc.grad.conv2d_input(x.shape, w, gy, **kw, algorithm="toeplitz"),
                         fc.grad.conv2d_weight(x, w.shape, gy, **kw, algorithm="toeplitz")))
    for other in runs[1:]:
        for a, b_ in zip(runs[0], other):
            assert np.array_equal(a, b_)


def test_inputs_not_modified_and_out_written():
    x, w, b, gy, kw, geom = _case((2, 4, 6, 2, (9, 8), (3, 3), 2, 1, 1), np.float32)
    copies = [a.copy() for a in (x, w, b)]
    out = np.full(geom.output_shape, np.nan, np.float32)
    res = fc.conv2d(x, w, b, **kw, algorithm="toeplitz", out=out)
    assert res is out and np.isfinite(out).all()
    for a, c in zip((x, w, b), copies):
        assert np.array_equal(a, c)


@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight"])
def test_one_by_one_skips_im2col(op):
    geom = fc.ConvGeometry.make((4, 32, 10, 10), (16, 32, 1, 1))
    pl = tpa.plan(geom, np.float32, op, 2)
    assert pl.one_by_one and pl.buffer_bytes == 0
    strided = tpa.plan(fc.ConvGeometry.make((4, 32, 10, 10), (16, 32, 1, 1), stride=2), np.float32, op, 2)
    assert not strided.one_by_one and strided.buffer_bytes > 0
    x, w, _, gy, _, _ = _case((4, 32, 16, 1, (10, 10), (1, 1), 1, 0, 1), np.float32)
    args = {"forward": (x, w, None), "grad_input": (gy, w), "grad_weight": (x, gy)}[op]
    out = np.empty({"forward": geom.output_shape, "grad_input": geom.input_shape,
                    "grad_weight": geom.weight_shape}[op], np.float32)
    gemms, workspace = getattr(TOEPLITZ, op)(*args, geom, out, 2)
    assert workspace == pl.partial_bytes and gemms == pl.gemms     # no lowered buffers, at most partial sums


def test_allocation_failure_raises_memory_error():
    x, w, b, gy, kw, geom = _case((2, 4, 6, 1, (9, 8), (3, 3), 1, 1, 1), np.float32)
    out = np.empty(geom.output_shape, np.float32)
    with pytest.raises(MemoryError, match="toeplitz forward"):     # a chunk of 2**50 positions cannot be allocated
        tpa._tp.forward(x[:, :, None], w.reshape(6, -1), b, out[:, :, None], geom.kernel_struct, has_bias=True,
                        pc=2 ** 50, one_by_one=False, nthreads=2)


# ----------------------------------------------------------------------------- bounded workspace
@pytest.fixture
def limit():
    """Restore the workspace limit after a test changes it."""
    yield
    fc.set_workspace_limit(None)


@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight"])
def test_workspace_does_not_grow_with_batch(op):
    plans = [tpa.plan(fc.ConvGeometry.make((n, 64, 56, 56), (64, 64, 3, 3), padding=1), np.float32, op, 2)
             for n in (64, 512, 4096)]
    for pl in plans:
        assert 0 < pl.workspace_bytes <= fc.get_workspace_limit() == 64 * 2 ** 20
        assert pl.buffer_bytes == plans[0].buffer_bytes and pl.chunk == plans[0].chunk
    assert plans[2].gemms == 64 * plans[0].gemms     # more chunks of the same size, not bigger ones


@pytest.mark.parametrize("op", ["forward", "grad_input", "grad_weight"])
def test_workspace_limit_honoured_by_kernel(op, limit):
    x, w, b, gy, kw, geom = _case((64, 8, 8, 1, (24, 24), (3, 3), 1, 1, 1), np.float32)
    out_shape = {"forward": geom.output_shape, "grad_input": geom.input_shape, "grad_weight": geom.weight_shape}
    args = {"forward": (x, w, None), "grad_input": (gy, w), "grad_weight": (x, gy)}[op]
    want = np.empty(out_shape[op], np.float32)
    getattr(TOEPLITZ, op)(*args, geom, want, 2)
    for cap in (16 * 1024, 1024):
        fc.set_workspace_limit(cap)
        pl = tpa.plan(geom, np.float32, op, 2)
        out = np.empty(out_shape[op], np.float32)
        tracemalloc.start()
        gemms, workspace = getattr(TOEPLITZ, op)(*args, geom, out, 2)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert 0 < workspace <= cap and workspace == pl.workspace_bytes and gemms == pl.gemms
        assert peak < 64 * 1024          # nothing batch-sized is allocated on the Python side either
        _close(out, want, np.float32)


def test_public_call_allocates_only_the_output():
    x, w, b, gy, kw, geom = _case((64, 8, 8, 1, (32, 32), (3, 3), 1, 1, 1), np.float32)
    fc.conv2d(x, w, b, **kw, algorithm="toeplitz")
    tracemalloc.start()
    y = fc.conv2d(x, w, b, **kw, algorithm="toeplitz")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < y.nbytes + 256 * 1024


def test_workspace_limit_api(limit):
    assert fc.get_workspace_limit() == 64 * 2 ** 20
    fc.set_workspace_limit(2 ** 20)
    assert fc.get_workspace_limit() == 2 ** 20
    fc.set_workspace_limit(None)
    assert fc.get_workspace_limit() == 64 * 2 ** 20
    with pytest.raises(TypeError, match="set_workspace_limit.*nbytes"):
        fc.set_workspace_limit(1.5)
    with pytest.raises(TypeError, match="set_workspace_limit.*nbytes"):
        fc.set_workspace_limit("64MiB")
    with pytest.raises(ValueError, match="set_workspace_limit.*nbytes"):
        fc.set_workspace_limit(0)


def test_column_larger_than_limit_is_unsupported(limit):
    x, w, b, gy, kw, geom = _case((1, 8, 4, 1, (9, 9), (3, 3), 1, 1, 1), np.float64)
    fc.set_workspace_limit(8 * 8 * 9 - 1)       # one lowered column (8 channels x 9 taps) does not fit
    assert tpa.plan(geom, np.float64, "forward") is None
    assert TOEPLITZ.cost(geom, np.float64, "forward") == float("inf")
    with pytest.raises(ValueError, match="conv2d.*toeplitz"):
        fc.conv2d(x, w, b, **kw, algorithm="toeplitz")
    _close(fc.conv2d(x, w, b, **kw), ref.conv_nd(x, w, b, **kw), np.float64)   # auto picks another one
    # the backward ops split input channels, so one channel's taps still fit
    gx = fc.grad.conv2d_input(x.shape, w, gy, **kw, algorithm="toeplitz")
    _close(gx, ref.conv_grad_input_nd(x.shape, w, gy, **_ref_kw(geom)), np.float64)


def test_blas_limited_to_one_thread_during_a_call_and_restored():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]
    with tpa.single_threaded_blas():
        with tpa.single_threaded_blas():
            inside = [d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]
        still = [d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]
    after = [d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]
    assert set(inside) <= {1} and set(still) <= {1} and after == before


# ----------------------------------------------------------------------------- cost model
def test_cost_model():
    for dtype in (np.float32, np.float64):
        one = fc.ConvGeometry.make((8, 256, 28, 28), (64, 256, 1, 1))
        for op in ("forward", "grad_input", "grad_weight"):
            assert 0 < TOEPLITZ.cost(one, dtype, op) < get("direct").cost(one, dtype, op)
        depthwise = fc.ConvGeometry.make((8, 64, 56, 56), (64, 1, 3, 3), padding=1, groups=64)
        assert TOEPLITZ.cost(depthwise, dtype, "forward") > get("direct").cost(depthwise, dtype, "forward")


# ----------------------------------------------------------------------------- explicit matrices
def _nnz_formula(geom):
    """N K (C/g) prod_i #{(o, t): 0 <= o s + t d - lo < n}: the taps that read a real input element."""
    per_dim = []
    for n, k, s, d, (lo, _), o in zip(geom.input_size, geom.kernel_size, geom.stride, geom.dilation,
                                      geom.padding, geom.output_size):
        pos = np.arange(o)[:, None] * s + np.arange(k)[None, :] * d - lo
        per_dim.append(int(((pos >= 0) & (pos < n)).sum()))
    return geom.batch * geom.out_channels * geom.weight_shape[1] * prod(per_dim)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GRID, ids=IDS)
def test_toeplitz_matrix_is_the_layer(case, dtype):
    x, w, b, gy, kw, geom = _case(case, dtype)
    nd = x.ndim - 2
    T = fc.toeplitz_matrix(w, x.shape, **kw)
    assert isinstance(T, scipy.sparse.sparray) and T.dtype == dtype
    assert T.shape == (prod(geom.output_shape), prod(geom.input_shape))
    assert T.nnz == _nnz_formula(geom)
    _close(T @ x.ravel(), CONV[nd](x, w, **kw).ravel(), dtype)
    _close(T.T @ gy.ravel(), GRAD_IN[nd](x.shape, w, gy, **kw).ravel(), dtype)
    if prod(x.shape[1:]) <= 600:
        _close(T.toarray(), ref.conv_matrix(w, x.shape, **_ref_kw(geom)), dtype)


def test_toeplitz_matrix_transpose_is_conv_transpose():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 4, 4, 3))        # conv weight (K, C, kh, kw) == transposed layout (C_in, C_out)
    x = rng.standard_normal((2, 4, 10, 9))
    T = fc.toeplitz_matrix(w, x.shape, stride=2, padding=1)
    y = fc.conv2d(x, w, stride=2, padding=1)
    gy = rng.standard_normal(y.shape)
    tr = fc.conv_transpose2d(gy, w, stride=2, padding=1, output_padding=(0, 0))
    assert tr.shape == x.shape
    _close(T.T @ gy.ravel(), tr.ravel(), np.float64)
    _close(T.T @ gy.ravel(), ref.conv_transpose_nd(gy, w, stride=2, padding=1).ravel(), np.float64)


def test_toeplitz_matrix_structure_1d():
    w = np.array([[[1.0, 2.0, 3.0]]])
    T = fc.toeplitz_matrix(w, (1, 1, 6), padding=1).toarray()
    for i in range(1, T.shape[0]):             # Toeplitz: every row is the previous one shifted right
        assert np.array_equal(T[i, 1:], T[i - 1, :-1])
    C = fc.toeplitz_matrix(w, (1, 6), padding=1, padding_mode="circular").toarray()
    for i in range(C.shape[0]):                # circulant: every row is a cyclic shift of the first
        assert np.array_equal(C[i], np.roll(C[0], i))
    assert np.array_equal(fc.toeplitz_matrix(w, (1, 1, 5)).toarray(),
                          [[1, 2, 3, 0, 0], [0, 1, 2, 3, 0], [0, 0, 1, 2, 3]])


@pytest.mark.parametrize("padding_mode", ["reflect", "replicate", "circular"])
def test_toeplitz_matrix_padding_modes(padding_mode):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 4, 7, 6))
    w = rng.standard_normal((6, 2, 3, 2))
    kw = dict(stride=(1, 2), padding=((2, 1), (1, 0)), groups=2)
    T = fc.toeplitz_matrix(w, x.shape, **kw, padding_mode=padding_mode)
    _close(T @ x.ravel(), fc.conv2d(x, w, **kw, padding_mode=padding_mode).ravel(), np.float64)
    assert T.nnz <= _nnz_formula(fc.ConvGeometry.make(x.shape, w.shape, **kw)) * 2


def test_toeplitz_matrix_single_sample_shape():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((3, 2, 2, 3))
    x = rng.standard_normal((2, 5, 6))
    T = fc.toeplitz_matrix(w, x.shape, padding=1)
    _close(T @ x.ravel(), fc.conv2d(x[None], w, padding=1).ravel(), np.float64)


def test_toeplitz_matrix_errors():
    w = np.ones((2, 3, 3, 3))
    with pytest.raises(TypeError, match="toeplitz_matrix.*input_shape"):
        fc.toeplitz_matrix(w, 5)
    with pytest.raises(TypeError, match="toeplitz_matrix.*weight"):
        fc.toeplitz_matrix("w", (1, 3, 5, 5))
    with pytest.raises(TypeError, match="toeplitz_matrix.*input_shape"):
        fc.toeplitz_matrix(w, (1, 3, 5.5, 5))
    with pytest.raises(ValueError, match="toeplitz_matrix.*input_shape"):
        fc.toeplitz_matrix(w, (5, 5))
    with pytest.raises(ValueError, match="toeplitz_matrix.*channels"):
        fc.toeplitz_matrix(w, (1, 4, 5, 5))
    with pytest.raises(ValueError, match="toeplitz_matrix.*padding_mode"):
        fc.toeplitz_matrix(w, (1, 3, 5, 5), padding_mode="mirror")
    with pytest.raises(ValueError, match="toeplitz_matrix.*weight"):
        fc.toeplitz_matrix(np.ones((2, 3)), (1, 3, 5, 5))


@pytest.mark.parametrize("nd,groups", [(1, 1), (2, 1), (2, 2), (3, 1)])
def test_conv_covering_the_input_is_a_dense_layer(nd, groups):
    rng = np.random.default_rng(nd + groups)
    ks = (5, 4, 3)[:nd]
    x = rng.standard_normal((3, 4) + ks)
    w = rng.standard_normal((6, 4 // groups) + ks)
    b = rng.standard_normal(6)
    dense = fc.conv_as_dense(w, x.shape, groups=groups)
    assert dense.shape == (6, 4 * prod(ks))
    y = CONV[nd](x, w, b, groups=groups)
    assert y.shape == (3, 6) + (1,) * nd
    _close(x.reshape(3, -1) @ dense.T + b, y.reshape(3, 6), np.float64)
    _close(dense, fc.toeplitz_matrix(w, x.shape[1:], groups=groups).toarray(), np.float64)
    if groups == 1:
        back = fc.dense_as_conv(dense, x.shape[1:])
        assert np.array_equal(back, w)


def test_dense_layer_is_a_conv_covering_the_input():
    rng = np.random.default_rng(8)
    W = rng.standard_normal((7, 3 * 5 * 4)).astype(np.float32)
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    wc = fc.dense_as_conv(W, (3, 5, 4))
    assert wc.shape == (7, 3, 5, 4) and wc.dtype == np.float32
    _close(fc.conv2d(x, wc).reshape(2, 7), x.reshape(2, -1) @ W.T, np.float32)
    assert np.array_equal(fc.conv_as_dense(wc), W)


def test_dense_conv_errors():
    with pytest.raises(ValueError, match="conv_as_dense.*input_shape"):
        fc.conv_as_dense(np.ones((2, 3, 3, 3)), (3, 5, 5))
    with pytest.raises(ValueError, match="conv_as_dense.*groups"):
        fc.conv_as_dense(np.ones((3, 2, 3, 3)), groups=2)
    with pytest.raises(TypeError, match="conv_as_dense.*groups"):
        fc.conv_as_dense(np.ones((2, 2, 3, 3)), groups=1.0)
    with pytest.raises(ValueError, match="dense_as_conv.*in_features"):
        fc.dense_as_conv(np.ones((2, 10)), (3, 3))
    with pytest.raises(ValueError, match="dense_as_conv.*weight"):
        fc.dense_as_conv(np.ones((2, 10, 1)), (10, 1))
    with pytest.raises(ValueError, match="dense_as_conv.*input_shape"):
        fc.dense_as_conv(np.ones((2, 10)), (10,))
    with pytest.raises(TypeError, match="dense_as_conv.*input_shape"):
        fc.dense_as_conv(np.ones((2, 10)), 10)
