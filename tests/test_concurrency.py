"""Thread safety: many Python threads calling fastconv at once get exactly the serial results.

Kernels release the GIL and keep all their state on the stack or in per-call / per-thread buffers; the only
process-wide state is the thread-count default, the algorithm choice cache, the autotune cache and the BLAS thread
limit the toeplitz and fft algorithms set while they run.  Eight threads call every public op on their own data
(in different orders, some under ``num_threads(1)`` and some under ``no_grad``) and must reproduce the serial
results bit for bit; afterwards the BLAS thread limit must be what it was.  A separate test shows a long
convolution releases the GIL: another Python thread keeps running while it computes.

``make_ops`` (every public op on small data derived from a seed) is also what tests/test_leaks.py calls.
"""
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastconv as fc
from fastconv import filters as F
from fastconv import grad as G
from fastconv import nn

N_THREADS = 8


def make_ops(seed, size=1):
    """{name: zero-argument callable} covering every public op once, on small arrays drawn from ``seed``.

    ``size`` scales the spatial sizes (1: a few hundred elements per array).
    """
    rng = np.random.default_rng(seed)

    def r(*shape, dtype=np.float32):
        return rng.standard_normal(shape).astype(dtype)

    s = size
    x1, x2, x3 = r(2, 4, 11 * s), r(2, 4, 7 * s, 6 * s), r(1, 2, 4 * s, 5, 3)
    w1, w2, w3, wt1, wt2 = r(6, 2, 3), r(6, 2, 3, 2), r(3, 2, 2, 3, 1), r(4, 3, 2), r(4, 3, 3, 2)
    b6 = r(6)
    y2 = fc.conv2d(x2, w2, groups=2, padding=1)
    gy2 = r(*y2.shape)
    x64 = r(2, 3, 9 * s, 8 * s, dtype=np.float64)
    v2, i2 = fc.max_pool2d(x64, 2, return_indices=True)
    v1, i1 = fc.max_pool1d(x1, 3, stride=2, return_indices=True)
    v3, i3 = fc.max_pool3d(x3, (2, 2, 1), return_indices=True)
    lp_y = fc.lp_pool2d(np.abs(x64), 2, 3, stride=2)
    kv, ki = fc.kmax_pool(x64, 3, dim=-1)
    img, k33 = r(13 * s, 11, dtype=np.float64), r(3, 3, dtype=np.float64)
    img3 = r(5, 6 * s, 4)
    tape_x = r(2, 3, 8 * s, 7)

    nn.manual_seed(seed)                 # here, not in the threads: the layers' initialiser draws from one
    conv = nn.Conv2d(3, 4, 3, padding=1)  # process-wide generator (as torch's does)

    def tape():
        conv.zero_grad()
        t = fc.Tensor(tape_x, requires_grad=True)
        loss = (nn.functional.relu(conv(t)) ** 2).mean()
        loss.backward()
        return loss.data, t.grad, conv.weight.grad.copy(), conv.bias.grad.copy()

    ops = {}
    for alg in fc.algorithms():
        ops["conv1d " + alg] = lambda a=alg: fc.conv1d(x1, w1, b6, groups=2, stride=2, padding=1, algorithm=a)
        ops["conv2d " + alg] = lambda a=alg: fc.conv2d(x2, w2, b6, groups=2, padding=1, dilation=(2, 1),
                                                       algorithm=a)
        ops["conv3d " + alg] = lambda a=alg: fc.conv3d(x3, w3, padding=(1, 0, 0), algorithm=a)
        ops["conv2d_input " + alg] = lambda a=alg: G.conv2d_input(x2.shape, w2, gy2, groups=2, padding=1,
                                                                  algorithm=a)
        ops["conv2d_weight " + alg] = lambda a=alg: G.conv2d_weight(x2, w2.shape, gy2, groups=2, padding=1,
                                                                    algorithm=a)
        ops["conv_transpose2d " + alg] = lambda a=alg: fc.conv_transpose2d(x2, wt2, stride=2,
                                                                           output_padding=1, algorithm=a)
    ops.update({
        "conv2d reflect flip": lambda: fc.conv2d(x2, w2, groups=2, padding=2, padding_mode="reflect", flip=True),
        "conv_transpose1d": lambda: fc.conv_transpose1d(x1, wt1, stride=3),
        "conv_transpose3d": lambda: fc.conv_transpose3d(x3, w3.transpose(1, 0, 2, 3, 4)),
        "conv1d_input": lambda: G.conv1d_input(x1.shape, w1, fc.conv1d(x1, w1, groups=2), groups=2),
        "conv3d_weight": lambda: G.conv3d_weight(x3, w3.shape, fc.conv3d(x3, w3)),
        "conv_bias": lambda: G.conv_bias(gy2),
        "toeplitz_matrix": lambda: fc.toeplitz_matrix(w2[:, :1], (1, 1, 4, 3)).toarray(),
        "max_pool1d": lambda: fc.max_pool1d(x1, 3, stride=2, return_indices=True),
        "max_pool2d": lambda: fc.max_pool2d(x64, 3, stride=2, padding=1, ceil_mode=True, return_indices=True),
        "max_pool3d": lambda: fc.max_pool3d(x3, 2, dilation=(1, 2, 1), stride=1),
        "avg_pool1d": lambda: fc.avg_pool1d(x1, 3, padding=1, count_include_pad=False),
        "avg_pool2d": lambda: fc.avg_pool2d(x64, 3, stride=2, padding=1, ceil_mode=True),
        "avg_pool3d": lambda: fc.avg_pool3d(x3, 2, divisor_override=3),
        "lp_pool1d": lambda: fc.lp_pool1d(np.abs(x1), 3, 2),
        "lp_pool2d": lambda: fc.lp_pool2d(np.abs(x64), 2, 3, stride=2),
        "adaptive_avg_pool1d": lambda: fc.adaptive_avg_pool1d(x1, 4),
        "adaptive_avg_pool2d": lambda: fc.adaptive_avg_pool2d(x64, (4, 3)),
        "adaptive_avg_pool3d": lambda: fc.adaptive_avg_pool3d(x3, (3, None, 2)),
        "adaptive_max_pool1d": lambda: fc.adaptive_max_pool1d(x1, 5, return_indices=True),
        "adaptive_max_pool2d": lambda: fc.adaptive_max_pool2d(x64, (5, 3), return_indices=True),
        "adaptive_max_pool3d": lambda: fc.adaptive_max_pool3d(x3, 2),
        "global_max_pool": lambda: fc.global_max_pool(x64, return_indices=True),
        "global_avg_pool": lambda: fc.global_avg_pool(x3),
        "kmax_pool": lambda: fc.kmax_pool(x64, 3, dim=-1, sorted=False),
        "max_unpool1d": lambda: fc.max_unpool1d(v1, i1, 3, stride=2, output_size=x1.shape[2:]),
        "max_unpool2d": lambda: fc.max_unpool2d(v2, i2, 2, output_size=x64.shape[2:]),
        "max_unpool3d": lambda: fc.max_unpool3d(v3, i3, (2, 2, 1), output_size=x3.shape[2:]),
        "max_pool_backward": lambda: G.max_pool_backward(v2, i2, x64.shape),
        "avg_pool1d_backward": lambda: G.avg_pool1d_backward(fc.avg_pool1d(x1, 3, padding=1), x1.shape, 3,
                                                              padding=1),
        "avg_pool2d_backward": lambda: G.avg_pool2d_backward(v2, x64.shape, 2),
        "avg_pool3d_backward": lambda: G.avg_pool3d_backward(v3, x3.shape, (2, 2, 1)),
        "lp_pool1d_backward": lambda: G.lp_pool1d_backward(x1[..., :3], np.abs(x1), fc.lp_pool1d(np.abs(x1), 2, 3),
                                                            2, 3),
        "lp_pool2d_backward": lambda: G.lp_pool2d_backward(lp_y, np.abs(x64), lp_y, 2, 3, stride=2),
        "adaptive_avg_pool1d_backward": lambda: G.adaptive_avg_pool1d_backward(v1, x1.shape),
        "adaptive_avg_pool2d_backward": lambda: G.adaptive_avg_pool2d_backward(v2, x64.shape),
        "adaptive_avg_pool3d_backward": lambda: G.adaptive_avg_pool3d_backward(v3, x3.shape),
        "global_avg_pool_backward": lambda: G.global_avg_pool_backward(x64[:, :, 0, 0], x64.shape),
        "kmax_pool_backward": lambda: G.kmax_pool_backward(kv, ki, x64.shape),
        "max_unpool_backward": lambda: G.max_unpool_backward(x64, i2),
        "correlate direct": lambda: F.correlate(img, k33, mode="mirror", method="direct"),
        "correlate fft": lambda: F.correlate(img, k33, mode="wrap", method="fft"),
        "correlate separable": lambda: F.correlate(img3, np.ones((3, 1, 2)), mode="constant", cval=1.5,
                                                   method="separable"),
        "convolve": lambda: F.convolve(img, k33, origin=(1, 0)),
        "gaussian": lambda: F.gaussian(img3, 1.2, channel_axis=-1),
        "sobel": lambda: F.sobel(img),
        "prewitt": lambda: F.prewitt(img, axis=0),
        "scharr": lambda: F.scharr(img3),
        "laplace": lambda: F.laplace(img),
        "unsharp_mask": lambda: F.unsharp_mask(img, radius=1.5, amount=0.7),
        "apply_kernel": lambda: F.apply_kernel(img, "sharpen"),
        "tape conv relu backward": tape,
    })
    return ops


def _flat(result):
    """A result (array, tuple, nested tuple) as a list of arrays."""
    if isinstance(result, (tuple, list)):
        return [a for r in result for a in _flat(r)]
    return [np.asarray(result)]


def assert_bitwise(a, b, what=""):
    a, b = _flat(a), _flat(b)
    assert len(a) == len(b), what
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape, what
        assert x.tobytes() == y.tobytes(), "%s differs from the serial result" % what


def _blas_limits():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy.linalg  # noqa: F401  (loads the BLAS the kernels call)
    return sorted((d["filepath"], d["num_threads"]) for d in threadpoolctl.threadpool_info()
                  if d["user_api"] == "blas")


def test_eight_threads_calling_every_op_match_serial_results():
    seeds = list(range(100, 100 + N_THREADS))
    ops = {s: make_ops(s) for s in seeds}
    names = sorted(ops[seeds[0]])
    serial = {(s, n): ops[s][n]() for s in seeds for n in names}
    blas_before = _blas_limits()
    barrier = threading.Barrier(N_THREADS)
    rounds = 3

    def worker(k):
        seed = seeds[k]
        order = names * rounds
        random.Random(k).shuffle(order)
        barrier.wait()                      # start together: maximal overlap
        done = []
        for i, name in enumerate(order):
            if k % 4 == 1:                  # thread-local settings must not leak into the others
                with fc.num_threads(1):
                    got = ops[seed][name]()
            elif k % 4 == 2:
                with fc.no_grad():
                    got = ops[seed][name]() if not name.startswith("tape") else serial[(seed, name)]
            else:
                got = ops[seed][name]()
            assert_bitwise(got, serial[(seed, name)], "%s (thread %d)" % (name, k))
            done.append(name)
        return len(done)

    with ThreadPoolExecutor(N_THREADS) as pool:
        counts = list(pool.map(worker, range(N_THREADS)))
    assert counts == [rounds * len(names)] * N_THREADS
    assert len(names) >= 60
    assert _blas_limits() == blas_before, "the BLAS thread limit was not restored after concurrent calls"
    assert fc.get_num_threads() == serial_threads()


def serial_threads():
    return fc._threads._default_threads() if fc._threads._global is None else fc._threads._global


@pytest.mark.parametrize("alg", ["toeplitz", "fft"])
def test_blas_limit_restored_after_overlapping_large_calls(alg):
    """toeplitz and fft hold BLAS to one thread while they run; overlapping calls from several threads (GEMMs
    large enough to be threaded) must leave the process-wide limit as it was."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 64, 24, 24)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    want = fc.conv2d(x, w, padding=1, algorithm=alg)
    before = _blas_limits()
    barrier = threading.Barrier(4)

    def worker(k):
        barrier.wait()
        for _ in range(3):
            with fc.num_threads(2):
                assert_bitwise(fc.conv2d(x, w, padding=1, algorithm=alg), want, alg)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(worker, range(4)))
    assert _blas_limits() == before


@pytest.mark.parametrize("alg", ["direct", "toeplitz", "fft"])
def test_long_convolution_releases_the_gil(alg):
    """While one thread runs a convolution of a few hundred milliseconds, a pure-Python counter in another
    thread keeps advancing: no stretch of the call longer than half of it passes without the counter moving
    (holding the GIL in the kernel would stall the counter for the whole kernel)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 48, 120, 120)).astype(np.float32)
    w = rng.standard_normal((64, 48, 5, 5)).astype(np.float32)
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        with fc.num_threads(1):
            fc.conv2d(x[:1, :, :16, :16], w, algorithm=alg)            # warm up (plans, imports)
            stamps, span = [], {}
            stop = threading.Event()

            def convolve():
                with fc.num_threads(1):
                    span["start"] = time.perf_counter()
                    fc.conv2d(x, w, padding=2, algorithm=alg)
                    span["end"] = time.perf_counter()
                stop.set()

            t = threading.Thread(target=convolve)
            t.start()
            while not stop.is_set():
                stamps.append(time.perf_counter())
            t.join()
    finally:
        sys.setswitchinterval(old)
    start, end = span["start"], span["end"]
    inside = [s for s in stamps if start <= s <= end]
    duration = end - start
    gaps = np.diff([start] + inside + [end])
    assert len(inside) > 1000, "the counter barely ran during the convolution"
    assert gaps.max() < 0.5 * duration, "the counter stalled for %.3f s of a %.3f s call" % (gaps.max(), duration)
