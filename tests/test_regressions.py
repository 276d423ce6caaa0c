"""Failures found by the property tests and the bad-input catalogue, shrunk and saved as explicit tests.

Each test names what failed, the smallest input that showed it and what was fixed.  A test marked
``xfail(strict=True)`` is a known bug whose fix is pending in another module; it turns into a failure (XPASS) the
moment the fix lands, and the marker goes with it.
"""
import numpy as np
import pytest

import fastconv as fc
from fastconv import grad as G

import reference as ref


# ---------------------------------------------------------------------------------- fixed
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_stride_wider_than_the_input(dtype):
    """direct sized its per-thread gather buffer by 64 output columns times the W stride even when there is a
    single output column, so ``conv2d(x (1,2,5,5), w (3,2,2,2), stride=2**33)`` asked malloc for 2 TiB and raised
    MemoryError (toeplitz and fft computed the 1x1 output).  Fixed in ``_algos/direct.py``: with one output
    column the W stride is irrelevant and is replaced by 1."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 5, 5)).astype(dtype)
    w = rng.standard_normal((3, 2, 2, 2)).astype(dtype)
    got = fc.conv2d(x, w, stride=2 ** 33, algorithm="direct")
    np.testing.assert_allclose(got, ref.conv_nd(x, w)[:, :, :1, :1], rtol=1e-5)   # only output (0, 0) exists
    got = fc.conv1d(x[:, :, 0], w[:, :, 0], stride=9, padding=1, algorithm="direct")
    np.testing.assert_allclose(got, ref.conv_nd(x[:, :, 0], w[:, :, 0], stride=9, padding=1), rtol=1e-5)


def test_direct_weight_gradient_with_huge_dilation_and_one_kernel_column():
    """The weight gradient runs the same kernel with stride and dilation exchanged: a kernel one column wide
    with dilation 2**33 hit the same 2 TiB buffer (same fix)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5, 4))
    gy = rng.standard_normal((2, 4, 3, 4))
    gw = G.conv2d_weight(x, (4, 3, 3, 1), gy, dilation=(1, 2 ** 33), algorithm="direct")
    np.testing.assert_allclose(gw, ref.conv_grad_weight_nd(x, gy, (4, 3, 3, 1)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fn,args,arg", [
    (G.conv2d_input, ((1, 4, 2 ** 40, 2 ** 40), np.ones((6, 2, 3, 2)), np.ones((1, 6, 1, 1))), "input_shape"),
    (G.conv2d_weight, (np.ones((2, 4, 7, 6)), (2 ** 40, 2, 2 ** 40, 1), np.ones((2, 6, 5, 5))), "weight_shape"),
])
def test_gradient_shape_arguments_are_size_checked(fn, args, arg):
    """``conv2d_input(input_shape=(1, 4, 2**40, 2**40), ..., stride=2**40)`` passed validation (the output is
    1x1) and failed in ``np.empty`` with NumPy's "array is too big" message, naming no argument.  Fixed in
    ``grad.py``: shape arguments go through ``check_size`` like every other size."""
    kw = dict(stride=2 ** 40) if arg == "input_shape" else {}
    with pytest.raises(ValueError, match="'%s'" % arg):
        fn(*args, groups=2, **kw)


@pytest.mark.parametrize("call", [
    lambda: G.max_pool_backward(np.ones((1, 1, 1, 1)), np.zeros((1, 1, 1, 1), np.int64), (1, 1, 2 ** 40, 2 ** 40)),
    lambda: G.avg_pool2d_backward(np.ones((1, 1, 1, 1)), (1, 1, 2 ** 40, 2 ** 40), 2 ** 40),
    lambda: G.adaptive_avg_pool2d_backward(np.ones((1, 1, 1, 1)), (1, 1, 2 ** 40, 2 ** 40)),
    lambda: G.global_avg_pool_backward(np.ones((1, 1)), (1, 1, 2 ** 40, 2 ** 40)),
    lambda: G.kmax_pool_backward(np.ones((1, 1)), np.zeros((1, 1), np.int64), (1, 2 ** 80)),
], ids=["max_pool_backward", "avg_pool2d_backward", "adaptive_avg_pool2d_backward", "global_avg_pool_backward",
        "kmax_pool_backward"])
def test_pooling_input_shape_arguments_are_size_checked(call):
    """The pooling gradients' ``input_shape`` of 2**80 elements reached ``np.empty`` and failed with NumPy's
    "Maximum allowed dimension exceeded" / "array is too big".  Fixed in ``pooling.py`` (``_shape`` calls
    ``check_size``)."""
    with pytest.raises(ValueError, match="'input_shape'"):
        call()


def _in_new_thread(fn):
    import threading
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("v", fn()))
    t.start()
    t.join()
    return box["v"]


def test_toeplitz_blas_limit_holds_in_every_python_thread():
    """Found by test_concurrency: toeplitz results computed in a second Python thread differed (last bits of
    17,206 of 65,536 float32 outputs of ``conv2d(x (1,64,8,8), w (64,64,3,3), padding=1)``) from the main
    thread's.  threadpoolctl >= 3.6 lets only the first Python thread that sets OpenBLAS's thread count change it
    (for good, outside a ``with`` block), so the one-thread BLAS limit was silently dropped in every other thread
    and OpenBLAS split the GEMMs differently.  Fixed in ``_algos/toeplitz.py`` (``_set_blas_threads``)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastconv._algos.toeplitz import single_threaded_blas

    def limited():
        with single_threaded_blas():
            return sorted(d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas")

    assert set(limited()) <= {1}
    assert set(_in_new_thread(limited)) <= {1}
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 64, 8, 8)).astype(np.float32)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    main = fc.conv2d(x, w, padding=1, algorithm="toeplitz")
    other = _in_new_thread(lambda: fc.conv2d(x, w, padding=1, algorithm="toeplitz"))
    assert main.tobytes() == other.tobytes()


@pytest.mark.parametrize("alg", fc.algorithms())
def test_conv_transpose_output_padding_at_least_stride(alg):
    """output_padding must be smaller than stride *or* dilation (PyTorch's rule), but with
    ``stride <= output_padding < dilation`` the forward geometry has more outputs than the transposed input:
    shrunk example ``conv_transpose3d(x (1,1,1,1,1), w (1,1,1,1,1), output_padding=(0,0,1), dilation=(1,1,2))``
    stops on an ``assert`` (and under ``python -O`` the kernels read past the input; fft returned wrong
    values).  Fixed in ``_geometry.py``: whole strides of output_padding reduce the adjoint's high-side
    padding."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 3, 4))
    w = rng.standard_normal((2, 3, 2, 3))
    kw = dict(stride=(1, 2), padding=(0, 1), output_padding=(1, 1), dilation=(2, 3))
    got = fc.conv_transpose2d(x, w, algorithm=alg, **kw)
    np.testing.assert_allclose(got, ref.conv_transpose_nd(x, w, **kw), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kw", [dict(stride=(2 ** 70, 1)), dict(padding=(2 ** 64, 0), stride=(2 ** 65, 1))])
def test_parameters_beyond_int64_are_value_errors(kw):
    """``conv2d(x, w, stride=(2**70, 1))`` reached the kernel call and raised OverflowError ("Python int too
    large to convert to C ssize_t") instead of a ValueError naming the argument.  Fixed in ``_validate.py``
    (``int_tuple`` refuses magnitudes of 2**62 and more)."""
    x, w = np.ones((1, 1, 5, 5)), np.ones((1, 1, 2, 2))
    with pytest.raises(ValueError, match="'stride'|'padding'"):
        fc.conv2d(x, w, algorithm="direct", **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_direct_huge_w_stride_with_several_output_columns(dtype):
    """Allowed since parameters may reach 2**62: ``conv2d(x (1,2,5,6), w (3,2,3,2), stride=(1, 2**60),
    padding=(0, 0, 0, 2**62 - 1))`` has 5 output columns (first found with stride 2**61, padding 2**65, which
    the 2**62 bound now refuses); direct's gather-buffer size ``(64 - 1) * 2**61 + ...``
    wrapped around in the kernel's 64-bit arithmetic and it returned NaN in release builds (and never finished
    under the debug build).  Fixed in ``_algos/direct.py``: the size is computed exactly first; direct declines
    the geometry (``supports``: its buffer cannot fit in memory), so naming it is a ValueError and ``auto`` picks
    toeplitz, which computes it."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 5, 6)).astype(dtype)
    w = rng.standard_normal((3, 2, 3, 2)).astype(dtype)
    kw = dict(padding=(0, 0, 0, 2 ** 62 - 1), stride=(1, 2 ** 60))
    with pytest.raises(ValueError, match="direct.*does not implement"):
        fc.conv2d(x, w, algorithm="direct", **kw)
    want = np.zeros((1, 3, 3, 5))
    want[..., :1] = ref.conv_nd(x[..., :2], w)          # every other column reads only padding
    np.testing.assert_allclose(fc.conv2d(x, w, algorithm="toeplitz", **kw), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fc.conv2d(x, w, **kw), want, rtol=1e-5, atol=1e-5)


def test_fft_huge_w_stride_with_several_output_columns():
    """The same problem with algorithm="fft" returned wrong values (max error 4.4 against 1e-15 for toeplitz) with
    stride 2**61 and padding 2**65; it must give the right values or decline with ValueError/MemoryError."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 5, 6))
    w = rng.standard_normal((3, 2, 3, 2))
    try:
        got = fc.conv2d(x, w, algorithm="fft", padding=(0, 0, 0, 2 ** 62 - 1), stride=(1, 2 ** 60))
    except (ValueError, MemoryError):
        return                                           # declining the geometry is fine too
    want = np.zeros((1, 3, 3, 5))
    want[..., :1] = ref.conv_nd(x[..., :2], w)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("padding", [((2 ** 70, 0), (0, 0)), (2 ** 70, 0, 0, 0)])
def test_padding_pairs_beyond_int64_are_value_errors(padding):
    """``conv2d(x, w, padding=((2**70, 0), (0, 0)), stride=(2**61, 1))`` still raises OverflowError from the
    kernel call: only the int and per-dim forms of ``padding`` go through ``int_tuple``'s bound."""
    x, w = np.ones((1, 1, 5, 5)), np.ones((1, 1, 2, 2))
    with pytest.raises(ValueError, match="'padding'"):
        fc.conv2d(x, w, padding=padding, stride=(2 ** 61, 1), algorithm="direct")


def test_fft_padding_and_dilation_at_the_bound():
    """``conv2d(x (1,2,5,6), w (3,2,3,2), padding=((2**62 - 1, 2**62 - 1), (0, 0)), dilation=(2**62 - 1, 1))``
    is valid (the padded height, about 2**63, holds the dilated kernel) and direct and toeplitz compute it (only
    the middle kernel row meets the input); fft raised OverflowError from a C conversion.  It must compute it or
    decline with ValueError/MemoryError: fft's ``supports`` now declines extents of 2**40 and more."""
    rng = np.random.default_rng(1)
    x = rng.random((1, 2, 5, 6))
    w = rng.random((3, 2, 3, 2))
    b = 2 ** 62 - 1
    kw = dict(padding=((b, b), (0, 0)), dilation=(b, 1))
    want = ref.conv_nd(x, w[:, :, 1:2, :])
    for alg in ("direct", "toeplitz"):
        np.testing.assert_allclose(fc.conv2d(x, w, algorithm=alg, **kw), want, rtol=1e-12, atol=1e-12)
    try:
        got = fc.conv2d(x, w, algorithm="fft", **kw)
    except (ValueError, MemoryError):
        return
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("algorithm", ["winograd", "fft_tiles"])
def test_tile_algorithms_decline_huge_strides(algorithm):
    """``conv2d(x (1,2,5,6), w (3,2,3,3), stride=(1, 2**60), padding=(0, 0, 0, 2**62 - 1))``: the tile kernels'
    64-bit index products of tile positions and strides would wrap around (a kernel that never finished, found
    when ``auto`` first chose winograd for it): both decline the geometry, ``auto`` computes it with toeplitz."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    kw = dict(padding=(0, 0, 0, 2 ** 62 - 1), stride=(1, 2 ** 60))
    with pytest.raises(ValueError, match="does not implement"):
        fc.conv2d(x, w, algorithm=algorithm, **kw)
    want = np.zeros((1, 3, 3, 5))
    want[..., :1] = ref.conv_nd(x[..., :3], w)
    np.testing.assert_allclose(fc.conv2d(x, w, **kw), want, rtol=1e-5, atol=1e-5)
