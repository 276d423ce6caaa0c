"""A call repeated with the same shapes and arguments skips validation and planning (the seen-call caches and the
algorithms' plans): it must give exactly what the first call gave, follow every setting that changes the choice
(threads, SIMD level, reduced accuracy, a newly registered algorithm), and treat new values (non-finite weights)
as a first call would."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import _algorithms, _kernels, _prepare
from fastconv import autograd

import reference as ref

SHAPES = [((1, 1, 4, 4), (1, 1, 3, 3), dict(padding=1)),                 # tiny: column kernel
          ((2, 3, 9, 7), (16, 3, 2, 3), dict(stride=(2, 1), dilation=(1, 2))),   # channel kernel
          ((2, 4, 8, 8), (4, 1, 3, 3), dict(groups=4, padding=(0, 2))),    # depthwise
          ((0, 2, 5, 5), (3, 2, 3, 3), {})]                                # empty batch


def _planned(fn, *args, **kw):
    """Run ``fn`` until its call has a plan; returns the results of the first (planning) and the planned call."""
    first = fn(*args, **kw)
    second = fn(*args, **kw)
    return first, second


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs,ws,kw", SHAPES)
@pytest.mark.parametrize("bias", [False, True])
def test_repeated_calls_match_the_first_and_the_reference(dtype, xs, ws, kw, bias):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if bias else None
    first, second = _planned(fc.conv2d, x, w, b, **kw)
    third = fc.conv2d(x, w, b, **kw)
    assert first.dtype == second.dtype == dtype and first.shape == second.shape
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, third)
    y = ref.conv_nd(x.astype(np.float64), w.astype(np.float64), b, kw.get("stride", 1), kw.get("padding", 0),
                    kw.get("dilation", 1), kw.get("groups", 1))
    np.testing.assert_allclose(second, y, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    assert second is not first and not np.shares_memory(second, third)


def test_a_planned_call_sees_new_non_finite_weights():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    w = rng.standard_normal((1, 1, 3, 3)).astype(np.float32)
    _planned(fc.conv2d, x, w, padding=1)
    w2 = w.copy()
    w2[0, 0, 0, 0] = np.inf            # over the zero padding: NaN at the border, as torch
    y = fc.conv2d(x, w2, padding=1)
    t = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w2), padding=1).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(t))
    assert np.isnan(y).any()
    np.testing.assert_allclose(y[np.isfinite(t)], t[np.isfinite(t)], rtol=1e-5, atol=1e-6)


def test_a_planned_call_follows_the_thread_count_the_level_and_the_registry(monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 1, 6, 6))
    w = rng.standard_normal((1, 1, 3, 3))
    y = _planned(fc.conv2d, x, w)[1]
    key = _prepare._seen_key("conv2d", 2, x, w, None, (1, 0, 1, 1, "zeros", False, "auto"))
    stamp = _prepare._plans[key][0]
    with fc.num_threads(1):
        np.testing.assert_array_equal(fc.conv2d(x, w), y)
        assert _prepare._plans[key][0] != stamp       # re-planned for one thread
    for level in _kernels.cpu_levels():
        with _kernels.use_level(level):
            fc.conv2d(x, w)
            assert _prepare._plans[key][0][1] == level
    with fc.reduced_accuracy(False):
        fc.conv2d(x, w)
        assert _prepare._plans[key][0][3] is False
    # autotune turned on after the plan was made: the call is tuned, not planned
    fc.conv2d(x, w)
    assert _prepare._plans[key][0] == _prepare._stamp()
    fc.autotune(True, cache_file=False)
    try:
        from fastconv import _autotune
        misses = _autotune.cache_info()["misses"]
        np.testing.assert_allclose(fc.conv2d(x, w), y, rtol=1e-12, atol=1e-12)
        assert _autotune.cache_info()["misses"] == misses + 1
    finally:
        fc.autotune(False)
        _autotune.clear_cache()
    # a new algorithm that auto prefers takes over from the next call on
    calls = []
    base = _algorithms.get("direct")

    def forward(x_, w_, b_, geom, out, nthreads):
        calls.append(geom.input_shape)
        base.forward(x_, w_, b_, geom, out, nthreads)
    import dataclasses
    cheap = dataclasses.replace(base, name="cheap", forward=forward, cost=lambda g, d, op: 0.0, plan=None)
    try:
        _algorithms.register(cheap)
        np.testing.assert_array_equal(fc.conv2d(x, w), y)
        np.testing.assert_array_equal(fc.conv2d(x, w), y)
        assert calls == [x.shape, x.shape]
    finally:
        _algorithms._registry.pop("cheap")
        _algorithms.invalidate()


def test_explicit_out_flip_and_padding_modes_take_the_full_path():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    for kw in (dict(flip=True), dict(padding=1, padding_mode="reflect"), dict(padding=1, padding_mode="circular")):
        a, b = _planned(fc.conv2d, x, w, **kw)
        np.testing.assert_array_equal(a, b)
    out = np.empty((1, 3, 3, 3))
    y = fc.conv2d(x, w)
    r = fc.conv2d(x, w, out=out)
    assert r is out
    np.testing.assert_array_equal(out, y)
    with pytest.raises(ValueError):
        fc.conv2d(x, w, out=np.empty((1, 3, 4, 4)))


@pytest.mark.parametrize("order", [">", "<"])
def test_repeated_calls_on_either_byte_order(order):
    """Arrays of the other byte order are converted on every call, the repeated ones included (they used to reach
    the kernels unconverted on the second call and fail there)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 6, 6)).astype(order + "f4")
    w = rng.standard_normal((3, 2, 3, 3)).astype(order + "f4")
    xn, wn = x.astype(np.float32), w.astype(np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(fc.conv2d(x, w, padding=1), fc.conv2d(xn, wn, padding=1))
        np.testing.assert_array_equal(fc.max_pool2d(x, 2), fc.max_pool2d(xn, 2))
    big = rng.standard_normal(300_000).astype(order + "f4")
    np.testing.assert_array_equal(autograd._relu(big), np.maximum(big, 0))
    g = np.ones_like(big)
    np.testing.assert_array_equal(autograd._relu_grad(g, big), g * (big > 0))
    t = fc.Tensor(big.reshape(600, 500), requires_grad=True)
    t.relu().sum().backward()
    np.testing.assert_array_equal(t.grad, (big > 0).reshape(600, 500))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs,ws,kw", SHAPES)
def test_repeated_gradient_calls_match_the_first_and_the_reference(dtype, xs, ws, kw):
    """``grad.conv2d_input`` / ``conv2d_weight`` repeated: the second call is a seen-call hit (no validation) and
    gives the first call's bits; flip and explicit padding survive the hit; bad arguments still raise."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    geom = fc.ConvGeometry.make(xs, ws, **kw)
    gy = rng.standard_normal(geom.output_shape).astype(dtype)
    _prepare._seen_shape.clear()
    for flip in (False, True):
        gi = [fc.grad.conv2d_input(xs, w, gy, **kw, flip=flip) for _ in range(3)]
        gw = [fc.grad.conv2d_weight(x, ws, gy, **kw, flip=flip) for _ in range(3)]
        for a in gi[1:] + gw[1:]:
            assert a.dtype == dtype
        for rs in (gi, gw):
            assert all(r.tobytes() == rs[0].tobytes() for r in rs[1:])
        wf = w[..., ::-1, ::-1] if flip else w
        args = (kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1), kw.get("groups", 1))
        tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(gi[2], ref.conv_grad_input_nd(xs, wf, gy, *args), **tol)
        want_w = ref.conv_grad_weight_nd(x, gy, ws, *args)
        np.testing.assert_allclose(gw[2], want_w[..., ::-1, ::-1] if flip else want_w, **tol)
    assert len(_prepare._seen_shape) == 4
    with pytest.raises(ValueError):         # same arrays, an argument the first call did not pass
        fc.grad.conv2d_input(xs, w, gy, **dict(kw, dilation=0))
    with pytest.raises(TypeError):
        fc.grad.conv2d_weight(x, ws, gy, **kw, flip="yes")
    gy_bad = np.zeros(geom.output_shape[:-1] + (geom.output_shape[-1] + 1,), dtype)
    with pytest.raises(ValueError):
        fc.grad.conv2d_input(xs, w, gy_bad, **kw)


def test_repeated_gradient_calls_keep_their_algorithms_while_the_state_holds():
    """A gradient call seen before reuses the algorithms resolved for it (no choice again), until a setting that
    changes the choice changes: another thread count, or an algorithm registered that auto prefers."""
    from fastconv import grad
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 7, 6))
    w = rng.standard_normal((4, 3, 3, 2))
    gy = rng.standard_normal((2, 4, 5, 5))
    gi = [grad.conv2d_input(x.shape, w, gy) for _ in range(2)]
    gw = [grad.conv2d_weight(x, w.shape, gy) for _ in range(2)]
    np.testing.assert_array_equal(gi[0], gi[1])
    np.testing.assert_array_equal(gw[0], gw[1])
    np.testing.assert_allclose(gi[1], ref.conv_grad_input_nd(x.shape, w, gy), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw[1], ref.conv_grad_weight_nd(x, gy, w.shape), rtol=1e-12, atol=1e-12)
    key = _prepare._seen_shape_key("conv2d_input", 2, w, "weight", x.shape, gy, (1, 0, 1, 1, "zeros", False, "auto"))
    geom, _, stamp, algorithms = _prepare._seen_shape[key]
    assert stamp == _prepare._stamp() and "grad_input" in algorithms
    with fc.num_threads(1):
        np.testing.assert_array_equal(grad.conv2d_input(x.shape, w, gy), gi[0])
        assert _prepare._seen_shape[key][2] != stamp and _prepare._seen_shape[key][3] is not algorithms
    calls = []
    base = _algorithms.get("direct")

    def grad_input(gy_, w_, geom_, out, nthreads):
        calls.append(geom_.input_shape)
        base.grad_input(gy_, w_, geom_, out, nthreads)
    import dataclasses
    cheap = dataclasses.replace(base, name="cheap", grad_input=grad_input, cost=lambda g, d, op: 0.0, plan=None)
    try:
        _algorithms.register(cheap)
        np.testing.assert_allclose(grad.conv2d_input(x.shape, w, gy), gi[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(grad.conv2d_input(x.shape, w, gy), gi[0], rtol=1e-12, atol=1e-12)
        assert calls == [x.shape, x.shape]
    finally:
        _algorithms._registry.pop("cheap")
        _algorithms.invalidate()
    grad.conv2d_input(x.shape, w, gy)
    assert _prepare._seen_shape[key][3]["grad_input"].name != "cheap"


def test_repeated_forward_calls_without_a_plan_keep_their_algorithm(monkeypatch):
    """A forward call seen before whose algorithm offers no plan (here ``lanes``) reuses the algorithm resolved for
    it while the state holds, and resolves again when the thread count changes."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 2, 7, 6)).astype(np.float32)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    y = fc.conv2d(x, w, padding=1, algorithm="lanes")
    resolved = []
    real = _algorithms.resolve

    def counting(*args, **kw):
        resolved.append(args[0])
        return real(*args, **kw)
    monkeypatch.setattr(_algorithms, "resolve", counting)
    for _ in range(3):
        np.testing.assert_array_equal(fc.conv2d(x, w, padding=1, algorithm="lanes"), y)
    assert resolved == []
    with fc.num_threads(1):
        np.testing.assert_array_equal(fc.conv2d(x, w, padding=1, algorithm="lanes"), y)
    assert resolved == ["lanes"]
    np.testing.assert_allclose(y, ref.conv_nd(x.astype(np.float64), w.astype(np.float64), padding=1), rtol=1e-5,
                               atol=1e-5)


def test_repeated_gradient_calls_consult_autotune_while_it_is_on():
    """While autotuning, a gradient call seen before asks the autotune cache again (which may have been cleared):
    the seen-call cache does not keep the tuned choice."""
    from fastconv import _autotune, grad
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 8, 13, 13)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((1, 8, 13, 13)).astype(np.float32)
    try:
        _autotune.clear_cache()
        fc.autotune(True, cache_file=False)
        first = grad.conv2d_input(x.shape, w, gy, padding=1)
        assert _autotune.cache_info()["misses"] == 1
        grad.conv2d_input(x.shape, w, gy, padding=1)
        assert _autotune.cache_info()["hits"] >= 1 and _autotune.cache_info()["misses"] == 1
        _autotune.clear_cache()
        np.testing.assert_allclose(grad.conv2d_input(x.shape, w, gy, padding=1), first, rtol=1e-4, atol=1e-4)
        assert _autotune.cache_info()["misses"] == 1       # tuned again after the clear
    finally:
        fc.autotune(False)
        _autotune.clear_cache()
