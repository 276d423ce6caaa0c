"""Results do not depend on the number of threads: outputs and gradients bitwise equal with 1 and 2 threads.

Every output element is written by exactly one thread in a fixed summation order (direct, toeplitz, every pool,
the filters), so the run with one thread and the run with two must agree to the last bit.  The shapes are large
enough that the kernels really split the work (direct keeps tiny problems on one thread; pooling streams outputs
above 4 MiB) and include groups, stride, dilation, padding, odd and non-square sizes and both float types.
"""
import numpy as np
import pytest

import fastconv as fc
from fastconv import filters as F
from fastconv import grad as G
from fastconv import nn

rng = np.random.default_rng(2024)


def _r(*shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def _bitwise(a, b):
    a, b = (a if isinstance(a, tuple) else (a,)), (b if isinstance(b, tuple) else (b,))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes(), "results differ with the number of threads"


def _with_threads(fn, n):
    with fc.num_threads(n):
        return fn()


def _same_for_1_and_2_threads(fn):
    one = _with_threads(fn, 1)
    two = _with_threads(fn, 2)
    _bitwise(one, two)
    return one


# (name, nd, x shape, w shape, conv kwargs): all big enough for two threads in every kernel
CONV_CASES = [
    ("2d plain", 2, (2, 8, 33, 31), (16, 8, 3, 3), dict(padding=1)),
    ("2d groups stride dilation", 2, (4, 12, 63, 41), (18, 4, 3, 2), dict(stride=(2, 1), dilation=(1, 2),
                                                                       padding=((1, 0), (2, 1)), groups=3)),
    ("2d depthwise", 2, (4, 16, 48, 45), (16, 1, 5, 3), dict(padding="same", groups=16)),
    ("1d strided", 1, (6, 8, 2401), (12, 8, 5), dict(stride=3, padding=2)),
    ("3d", 3, (3, 4, 13, 14, 15), (8, 4, 3, 2, 3), dict(stride=(1, 2, 1), padding=1)),
    ("2d reflect flip", 2, (3, 6, 37, 30), (10, 6, 4, 3), dict(padding=2, padding_mode="reflect", flip=True)),
]
CONV = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
GRAD_IN = {1: G.conv1d_input, 2: G.conv2d_input, 3: G.conv3d_input}
GRAD_W = {1: G.conv1d_weight, 2: G.conv2d_weight, 3: G.conv3d_weight}
CONV_T = {1: fc.conv_transpose1d, 2: fc.conv_transpose2d, 3: fc.conv_transpose3d}


def test_cases_are_big_enough_for_two_threads():
    """direct keeps problems under 2 MFLOP on one thread; every case here has more."""
    for _, _, xs, ws, kw in CONV_CASES:
        geom = fc.ConvGeometry.make(xs, ws, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1),
                                    kw.get("groups", 1))
        assert geom.flops >= 3e6


@pytest.mark.parametrize("alg", ["direct", "toeplitz", "fft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_convolution_and_gradients_bitwise(case, dtype, alg):
    _, nd, xs, ws, kw = case
    x, w, b = _r(*xs, dtype=dtype), _r(*ws, dtype=dtype), _r(ws[0], dtype=dtype)
    y = _same_for_1_and_2_threads(lambda: CONV[nd](x, w, b, algorithm=alg, **kw))
    gy = _r(*y.shape, dtype=dtype)
    _same_for_1_and_2_threads(lambda: GRAD_IN[nd](x.shape, w, gy, algorithm=alg, **kw))
    _same_for_1_and_2_threads(lambda: GRAD_W[nd](x, w.shape, gy, algorithm=alg, **kw))


@pytest.mark.parametrize("alg", ["direct", "toeplitz"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transposed_convolution_bitwise(dtype, alg):
    x, w, b = _r(2, 12, 15, 13, dtype=dtype), _r(12, 5, 3, 4, dtype=dtype), _r(15, dtype=dtype)
    _same_for_1_and_2_threads(lambda: fc.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                          output_padding=1, groups=3, algorithm=alg))
    x1, w1 = _r(2, 8, 200, dtype=dtype), _r(8, 6, 5, dtype=dtype)
    _same_for_1_and_2_threads(lambda: fc.conv_transpose1d(x1, w1, stride=3, dilation=2, algorithm=alg))


# Pooling: forward and backward of every pool, at a small and a streaming (> 4 MiB output) size.
P_SMALL = (3, 5, 37, 29)
P_BIG = (4, 8, 256, 256)


def _pool_ops(x):
    nd = x.ndim - 2
    mp = {1: fc.max_pool1d, 2: fc.max_pool2d, 3: fc.max_pool3d}[nd]
    ap = {1: fc.avg_pool1d, 2: fc.avg_pool2d, 3: fc.avg_pool3d}[nd]
    apb = {1: G.avg_pool1d_backward, 2: G.avg_pool2d_backward, 3: G.avg_pool3d_backward}[nd]
    amp = {1: fc.adaptive_max_pool1d, 2: fc.adaptive_max_pool2d, 3: fc.adaptive_max_pool3d}[nd]
    aap = {1: fc.adaptive_avg_pool1d, 2: fc.adaptive_avg_pool2d, 3: fc.adaptive_avg_pool3d}[nd]
    aapb = {1: G.adaptive_avg_pool1d_backward, 2: G.adaptive_avg_pool2d_backward,
            3: G.adaptive_avg_pool3d_backward}[nd]
    unpool = {1: fc.max_unpool1d, 2: fc.max_unpool2d, 3: fc.max_unpool3d}[nd]
    v, i = mp(x, 3, stride=2, padding=1, dilation=1, return_indices=True)
    vd, idd = mp(x, 2, stride=1, dilation=2, ceil_mode=True, return_indices=True)
    gv = np.ones_like(v) * 0.5 + v
    ops = {
        "max_pool": lambda: mp(x, 3, stride=2, padding=1, return_indices=True),
        "max_pool dilated ceil": lambda: mp(x, 2, stride=1, dilation=2, ceil_mode=True, return_indices=True),
        "max_pool no indices": lambda: mp(x, 2),
        "max_pool_backward": lambda: G.max_pool_backward(gv, i, x.shape),
        "max_pool_backward overlapping": lambda: G.max_pool_backward(vd * 2, idd, x.shape),
        "avg_pool": lambda: ap(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        "avg_pool_backward": lambda: apb(gv, x.shape, 3, stride=2, padding=1),
        "avg_pool divisor": lambda: ap(x, 2, stride=1, divisor_override=3),
        "adaptive_max_pool": lambda: amp(x, tuple(max(1, s // 3 + 1) for s in x.shape[2:]), return_indices=True),
        "adaptive_avg_pool": lambda: aap(x, tuple(max(1, s // 2 - 1) for s in x.shape[2:])),
        "adaptive_avg_pool_backward": lambda: aapb(v, x.shape),
        "global_max_pool": lambda: fc.global_max_pool(x, return_indices=True),
        "global_avg_pool": lambda: fc.global_avg_pool(x),
        "global_avg_pool_backward": lambda: G.global_avg_pool_backward(x[:, :, 0].reshape(x.shape[:2] + (-1,))
                                                                        [..., 0], x.shape),
        "kmax_pool": lambda: fc.kmax_pool(x, 3, dim=-1, sorted=False),
        "kmax_pool sorted": lambda: fc.kmax_pool(x, 2, dim=2),
        "kmax_pool_backward": lambda: G.kmax_pool_backward(*_kmax_grad(x), x.shape, dim=-1),
        "max_unpool": lambda: unpool(v, i, 3, stride=2, padding=1, output_size=x.shape[2:]),
        "max_unpool_backward": lambda: G.max_unpool_backward(x, i),
    }
    if nd <= 2:
        lp = {1: fc.lp_pool1d, 2: fc.lp_pool2d}[nd]
        lpb = {1: G.lp_pool1d_backward, 2: G.lp_pool2d_backward}[nd]
        y = lp(x, 2, 3, stride=2)
        ops["lp_pool"] = lambda: lp(x, 2, 3, stride=2)
        ops["lp_pool_backward"] = lambda: lpb(np.ones_like(y), x, y, 2, 3, stride=2)
    return ops


def _kmax_grad(x):
    _, idx = fc.kmax_pool(x, 3, dim=-1)
    return np.ones(idx.shape, x.dtype), idx


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [P_SMALL, (2, 3, 5, 7, 9), (4, 6, 333)], ids=["2d", "3d", "1d"])
def test_every_pool_bitwise(shape, dtype):
    x = _r(*shape, dtype=dtype)
    for name, op in _pool_ops(x).items():
        try:
            _same_for_1_and_2_threads(op)
        except AssertionError as exc:
            raise AssertionError("%s: %s" % (name, exc)) from None


def test_pools_bitwise_on_the_streaming_path():
    x = _r(*P_BIG, dtype=np.float32)
    for name in ("max_pool", "avg_pool", "max_pool_backward", "avg_pool_backward", "max_unpool"):
        op = _pool_ops(x)[name] if name != "max_pool" else (lambda: fc.max_pool2d(x, 3, stride=1, padding=1,
                                                                                  return_indices=True))
        _same_for_1_and_2_threads(op)


def test_filters_bitwise():
    img = _r(67, 45, dtype=np.float32)
    w = _r(5, 4)
    for method in ("direct", "fft"):
        _same_for_1_and_2_threads(lambda: F.correlate(img, w, method=method, mode="mirror"))
    _same_for_1_and_2_threads(lambda: F.correlate(img, np.outer(w[:, 0], w[0]), method="separable"))
    _same_for_1_and_2_threads(lambda: F.gaussian(img, 1.7))
    _same_for_1_and_2_threads(lambda: F.sobel(img))


@pytest.mark.parametrize("alg", ["direct", "toeplitz"])
def test_tape_gradients_bitwise(alg):
    """A small network's loss and parameter gradients through the autograd tape."""
    x = _r(4, 3, 20, 18, dtype=np.float32)

    def run():
        nn.manual_seed(0)
        conv = nn.Conv2d(3, 8, 3, padding=1, algorithm=alg)
        conv2 = nn.Conv2d(8, 8, (3, 2), stride=2, groups=2, algorithm=alg)
        t = fc.Tensor(x, requires_grad=True)
        h = nn.functional.relu(conv(t))
        h = nn.functional.max_pool2d(h, 2) if hasattr(nn.functional, "max_pool2d") else h
        loss = (conv2(h) ** 2).mean()
        loss.backward()
        return (loss.data, t.grad, conv.weight.grad, conv.bias.grad, conv2.weight.grad)

    _same_for_1_and_2_threads(run)
