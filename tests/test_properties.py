"""Property tests (hypothesis): random shapes and parameters within the documented limits, every public op.

Each property draws a whole problem (shapes, stride, padding in every accepted form, dilation, groups, ceil mode,
dtype, ...) that the documentation says is valid, runs fastconv and checks it against the naive loops of
tests/reference.py (or an exact identity such as the adjoint of a linear map).  Every registered convolution
algorithm is run on every example and must agree with the reference and hence with the others.

``EXAMPLES`` sets each property's budget; together they run well over 2,000 examples per CI run
(``FASTCONV_HYPOTHESIS_SCALE`` multiplies them).  A failure is
shrunk by hypothesis and must then be saved as an explicit test in tests/test_regressions.py.
"""
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastconv as fc
from fastconv import filters as F
from fastconv import grad as G

import reference as ref

ALGORITHMS = fc.algorithms()
DTYPES = (np.float32, np.float64)
# Documented accuracy: fft within 1e-4 (float32) / 1e-10 (float64) of max|ref|; direct/toeplitz are tighter.
TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}

EXAMPLES = {
    "conv": 260, "conv_grads": 160, "conv_adjoint": 100, "conv_transpose": 160, "matrices": 60,
    "max_pool": 160, "avg_pool": 160, "lp_pool": 80, "adaptive": 120, "global": 60, "kmax": 100,
    "unpool": 100, "max_pool_backward": 80, "avg_pool_adjoint": 100, "lp_pool_backward": 40,
    "kmax_backward": 60, "unpool_backward": 60, "correlate": 200, "separable": 80, "skimage": 80,
}


# tools/run_sanitized_tests.sh runs a fraction of the examples on the slow debug/ASan build
SCALE = float(os.environ.get("FASTCONV_HYPOTHESIS_SCALE", "1"))


def budget(name):
    return settings(max_examples=max(1, int(EXAMPLES[name] * SCALE)), deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def close(got, want, dtype, factor=1.0):
    """|got - want| <= tol(dtype) * max(1, max|want|) elementwise; NaN must match NaN."""
    want = np.asarray(want, np.float64)
    got = np.asarray(got)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(1.0, float(np.nanmax(np.abs(want))) if want.size else 1.0)
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=0, atol=TOL[np.dtype(dtype)] * scale * factor)


def data(draw, shape, dtype, positive=False):
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.1, 2.0, shape) if positive else rng.standard_normal(shape)
    return a.astype(dtype)


dtypes = st.sampled_from(DTYPES)


# ------------------------------------------------------------------------------------------------ convolution
@st.composite
def conv_problems(draw, transpose=False, zero_padding=False):
    nd = draw(st.sampled_from((1, 2, 3)))
    dtype = draw(dtypes)
    groups = draw(st.integers(1, 3))
    cg, kg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    N = draw(st.integers(1, 2))
    maxk = {1: 4, 2: 3, 3: 2}[nd]
    kernel = tuple(draw(st.integers(1, maxk)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if transpose:
        size = tuple(draw(st.integers(1, {1: 6, 2: 4, 3: 3}[nd])) for _ in range(nd))
        pad = tuple(draw(st.integers(0, 2)) for _ in range(nd))
        opad = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
        out = tuple((n - 1) * s - 2 * p + e + o for n, s, p, e, o in zip(size, stride, pad, eff, opad))
        assume(min(out) >= 1)
        x = data(draw, (N, groups * cg) + size, dtype)
        w = data(draw, (groups * cg, kg) + kernel, dtype)
        b = data(draw, (groups * kg,), dtype) if draw(st.booleans()) else None
        kw = dict(stride=stride, padding=pad, output_padding=opad, groups=groups, dilation=dilation)
        return x, w, b, kw
    form = draw(st.sampled_from(("int", "tuple", "pairs", "same", "valid")))
    pairs = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nd))
    if form == "int":
        padding = pairs[0][0]
        pairs = ((padding, padding),) * nd
    elif form == "tuple":
        padding = tuple(lo for lo, _ in pairs)
        pairs = tuple((lo, lo) for lo in padding)
    elif form == "pairs":
        padding = pairs
    else:
        padding = form
        pairs = ((0, 0),) * nd
    maxn = {1: 9, 2: 6, 3: 4}[nd]
    size = tuple(max(1, e - lo - hi) + draw(st.integers(0, maxn)) for e, (lo, hi) in zip(eff, pairs))
    if form == "same":
        pairs = ref.same_padding(size, kernel, stride, dilation)
    mode = "zeros" if zero_padding else draw(st.sampled_from(("zeros", "reflect", "replicate", "circular")))
    if mode == "reflect":
        assume(all(max(p) < n for p, n in zip(pairs, size)))
    if mode == "circular":
        assume(all(max(p) <= n for p, n in zip(pairs, size)))
    x = data(draw, (N, groups * cg) + size, dtype)
    w = data(draw, (groups * kg, cg) + kernel, dtype)
    b = data(draw, (groups * kg,), dtype) if draw(st.booleans()) else None
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode,
              flip=draw(st.booleans()))
    return x, w, b, kw


CONV = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
CONV_T = {1: fc.conv_transpose1d, 2: fc.conv_transpose2d, 3: fc.conv_transpose3d}
GRAD_IN = {1: G.conv1d_input, 2: G.conv2d_input, 3: G.conv3d_input}
GRAD_W = {1: G.conv1d_weight, 2: G.conv2d_weight, 3: G.conv3d_weight}


def supported(fn, algorithm, *args, **kwargs):
    """Run ``fn``; None when ``algorithm`` declines this geometry (the registry's ``supports``)."""
    try:
        return fn(*args, algorithm=algorithm, **kwargs)
    except ValueError as exc:
        if "does not implement" in str(exc) and algorithm != "direct":
            return None
        raise


@budget("conv")
@given(conv_problems())
def test_conv_every_algorithm_matches_reference(problem):
    x, w, b, kw = problem
    nd = x.ndim - 2
    want = ref.conv_nd(x, w, b, **kw)
    results = {}
    for alg in ALGORITHMS:
        got = supported(CONV[nd], alg, x, w, b, **kw)
        if got is None:
            continue
        assert got.dtype == x.dtype
        close(got, want, x.dtype)
        results[alg] = got
    assert "direct" in results
    for alg, got in results.items():                       # the algorithms agree with each other
        close(got, results["direct"], x.dtype, factor=2.0)


@budget("conv_grads")
@given(conv_problems(zero_padding=True), st.data())
def test_conv_gradients_match_reference(problem, d):
    x, w, _, kw = problem
    nd = x.ndim - 2
    y = ref.conv_nd(x, w, **kw)
    gy = data(d.draw, y.shape, x.dtype)
    pad = kw["padding"]
    if pad == "same":
        pad = ref.same_padding(x.shape[2:], w.shape[2:], kw["stride"], kw["dilation"])
    elif pad == "valid":
        pad = 0
    w_ref = w[(slice(None), slice(None)) + (slice(None, None, -1),) * nd] if kw["flip"] else w
    rk = dict(stride=kw["stride"], padding=pad, dilation=kw["dilation"], groups=kw["groups"])
    want_x = ref.conv_grad_input_nd(x.shape, w_ref, gy, **rk)
    want_w = ref.conv_grad_weight_nd(x, gy, w.shape, **rk)
    if kw["flip"]:
        want_w = want_w[(slice(None), slice(None)) + (slice(None, None, -1),) * nd]
    for alg in ALGORITHMS:
        gx = supported(GRAD_IN[nd], alg, x.shape, w, gy, **kw)
        if gx is not None:
            close(gx, want_x, x.dtype)
        gw = supported(GRAD_W[nd], alg, x, w.shape, gy, **kw)
        if gw is not None:
            close(gw, want_w, x.dtype, factor=4.0)


@budget("conv_adjoint")
@given(conv_problems(), st.data())
def test_conv_gradients_are_adjoints_for_every_padding_mode(problem, d):
    """<conv(x, w), g> = <x, conv_input(g)> = <w, conv_weight(x, g)> for every padding_mode and flip."""
    x, w, _, kw = problem
    x, w = x.astype(np.float64), w.astype(np.float64)
    nd = x.ndim - 2
    alg = d.draw(st.sampled_from(ALGORITHMS))
    y = supported(CONV[nd], alg, x, w, None, **kw)
    assume(y is not None)
    g = data(d.draw, y.shape, np.float64)
    lhs = float(np.vdot(y, g))
    scale = float(np.abs(y).sum() * np.abs(g).max()) + 1.0
    gx = supported(GRAD_IN[nd], alg, x.shape, w, g, **kw)
    if gx is not None:
        assert abs(lhs - float(np.vdot(x, gx))) <= 1e-10 * scale
    gw = supported(GRAD_W[nd], alg, x, w.shape, g, **kw)
    if gw is not None:
        assert abs(lhs - float(np.vdot(w, gw))) <= 1e-10 * scale


@budget("conv_transpose")
@given(conv_problems(transpose=True))
def test_conv_transpose_every_algorithm_matches_reference(problem):
    x, w, b, kw = problem
    nd = x.ndim - 2
    want = ref.conv_transpose_nd(x, w, b, **kw)
    ran = 0
    for alg in ALGORITHMS:
        got = supported(CONV_T[nd], alg, x, w, b, **kw)
        if got is not None:
            close(got, want, x.dtype)
            ran += 1
    assert ran >= 1


@budget("matrices")
@given(conv_problems(), st.data())
def test_toeplitz_matrix_is_the_convolution_and_dense_layers_round_trip(problem, d):
    """``toeplitz_matrix(w, x.shape, ...) @ x.ravel()`` is the convolution (every padding form and mode), its
    transpose the input gradient; a kernel covering the whole input is a dense layer and back."""
    x, w, _, kw = problem
    nd = x.ndim - 2
    flip = kw.pop("flip")
    w = w[(slice(None), slice(None)) + (slice(None, None, -1),) * nd] if flip else w
    T = fc.toeplitz_matrix(w, x.shape, **kw)
    y = CONV[nd](x, w, **kw)
    close(T @ x.ravel(), y.ravel(), x.dtype)
    g = data(d.draw, y.shape, x.dtype)
    close(T.T @ g.ravel(), GRAD_IN[nd](x.shape, w, g, **kw).ravel(), x.dtype)
    xs = data(d.draw, (x.shape[0], x.shape[1]) + w.shape[2:], x.dtype)
    dense = fc.conv_as_dense(w, xs.shape, groups=kw["groups"])
    close(xs.reshape(xs.shape[0], -1) @ dense.T, CONV[nd](xs, w, groups=kw["groups"]).reshape(xs.shape[0], -1),
          x.dtype)
    if kw["groups"] == 1:
        np.testing.assert_array_equal(fc.dense_as_conv(dense, xs.shape[1:]), w)


# ------------------------------------------------------------------------------------------------ pooling
@st.composite
def pool_problems(draw, max_nd=3, dilation=True, positive=False, padding=True):
    nd = draw(st.integers(1, max_nd))
    dtype = draw(dtypes)
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dil = tuple(draw(st.integers(1, 2)) if dilation else 1 for _ in range(nd))
    eff = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dil))
    pad = tuple(draw(st.integers(0, e // 2)) if padding else 0 for e in eff)
    stride = draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 3)] * nd)))
    maxn = {1: 9, 2: 6, 3: 4}[nd]
    size = tuple(max(1, e - 2 * p) + draw(st.integers(0, maxn)) for e, p in zip(eff, pad))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3))) + size
    x = data(draw, shape, dtype, positive)
    return x, dict(kernel_size=kernel, stride=stride, padding=pad, dilation=dil,
                   ceil_mode=draw(st.booleans()))


MAX_POOL = {1: fc.max_pool1d, 2: fc.max_pool2d, 3: fc.max_pool3d}
AVG_POOL = {1: fc.avg_pool1d, 2: fc.avg_pool2d, 3: fc.avg_pool3d}
AVG_BACK = {1: G.avg_pool1d_backward, 2: G.avg_pool2d_backward, 3: G.avg_pool3d_backward}
LP_POOL = {1: fc.lp_pool1d, 2: fc.lp_pool2d}
LP_BACK = {1: G.lp_pool1d_backward, 2: G.lp_pool2d_backward}
ADA_AVG = {1: fc.adaptive_avg_pool1d, 2: fc.adaptive_avg_pool2d, 3: fc.adaptive_avg_pool3d}
ADA_MAX = {1: fc.adaptive_max_pool1d, 2: fc.adaptive_max_pool2d, 3: fc.adaptive_max_pool3d}
ADA_BACK = {1: G.adaptive_avg_pool1d_backward, 2: G.adaptive_avg_pool2d_backward,
            3: G.adaptive_avg_pool3d_backward}
UNPOOL = {1: fc.max_unpool1d, 2: fc.max_unpool2d, 3: fc.max_unpool3d}


def _empty_window(x, kw):
    """True when some window holds no input element (fastconv refuses those geometries with a ValueError)."""
    stride = kw["stride"] or kw["kernel_size"]
    for n, k, s, p, d in zip(x.shape[2:], kw["kernel_size"], stride, kw["padding"], kw["dilation"]):
        out = ref.pool_output_size(n, k, s, p, d, kw["ceil_mode"])
        for o in range(out):
            if not any(0 <= o * s - p + j * d < n for j in range(k)):
                return True
    return False


@budget("max_pool")
@given(pool_problems(), st.booleans())
def test_max_pool_values_and_indices_match_reference(problem, with_indices):
    x, kw = problem
    nd = x.ndim - 2
    if _empty_window(x, kw):
        with pytest.raises(ValueError, match="dilation|padding"):
            MAX_POOL[nd](x, **kw)
        return
    vals, idx = ref.max_pool_nd(x, **kw)
    got = MAX_POOL[nd](x, return_indices=with_indices, **kw)
    if with_indices:
        got, gidx = got
        assert gidx.dtype == np.int64
        np.testing.assert_array_equal(gidx, idx)
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, vals.astype(x.dtype))


@budget("avg_pool")
@given(pool_problems(dilation=False), st.booleans(), st.one_of(st.none(), st.integers(-5, 9).filter(bool)))
def test_avg_pool_and_its_adjoint_match_reference(problem, include_pad, divisor):
    x, kw = problem
    nd = x.ndim - 2
    del kw["dilation"]
    if _empty_window(x, dict(kw, dilation=(1,) * nd)):
        return
    want = ref.avg_pool_nd(x, count_include_pad=include_pad, divisor_override=divisor, **kw)
    got = AVG_POOL[nd](x, count_include_pad=include_pad, divisor_override=divisor, **kw)
    close(got, want, x.dtype)


@budget("avg_pool_adjoint")
@given(pool_problems(dilation=False), st.booleans(), st.data())
def test_avg_pool_backward_is_the_adjoint(problem, include_pad, d):
    x, kw = problem
    nd = x.ndim - 2
    del kw["dilation"]
    x = x.astype(np.float64)
    if _empty_window(x, dict(kw, dilation=(1,) * nd)):
        return
    y = AVG_POOL[nd](x, count_include_pad=include_pad, **kw)
    g = data(d.draw, y.shape, np.float64)
    gx = AVG_BACK[nd](g, x.shape, count_include_pad=include_pad, **kw)
    assert gx.shape == x.shape
    assert abs(np.vdot(y, g) - np.vdot(x, gx)) <= 1e-10 * (np.abs(x).sum() * np.abs(g).max() + 1)


@budget("lp_pool")
@given(pool_problems(max_nd=2, dilation=False, positive=True, padding=False), st.sampled_from((1, 2, 3, 1.5)))
def test_lp_pool_matches_reference(problem, p):
    x, kw = problem
    nd = x.ndim - 2
    kw = dict(kernel_size=kw["kernel_size"], stride=kw["stride"], ceil_mode=kw["ceil_mode"])
    if _empty_window(x, dict(kw, padding=(0,) * nd, dilation=(1,) * nd)):
        return
    close(LP_POOL[nd](x, p, **kw), ref.lp_pool_nd(x, p, **kw), x.dtype, factor=10)


@budget("lp_pool_backward")
@given(pool_problems(max_nd=2, dilation=False, positive=True, padding=False), st.sampled_from((1, 2, 3, 1.5)),
       st.data())
def test_lp_pool_backward_matches_central_differences(problem, p, d):
    x, kw = problem
    nd = x.ndim - 2
    x = x[:1, :1].astype(np.float64)
    kw = dict(kernel_size=kw["kernel_size"], stride=kw["stride"], ceil_mode=kw["ceil_mode"])
    if _empty_window(x, dict(kw, padding=(0,) * nd, dilation=(1,) * nd)):
        return
    y = LP_POOL[nd](x, p, **kw)
    g = data(d.draw, y.shape, np.float64)
    gx = LP_BACK[nd](g, x, y, p, **kw)
    h = 1e-6
    num = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h
        e = e.reshape(x.shape)
        num.flat[i] = (np.vdot(ref.lp_pool_nd(x + e, p, **kw), g) - np.vdot(ref.lp_pool_nd(x - e, p, **kw), g)) / (2 * h)
    np.testing.assert_allclose(gx, num, rtol=1e-5, atol=1e-6)


@budget("adaptive")
@given(st.integers(1, 3), dtypes, st.data())
def test_adaptive_pools_match_reference(nd, dtype, d):
    size = tuple(d.draw(st.integers(1, {1: 10, 2: 6, 3: 4}[nd])) for _ in range(nd))
    out = tuple(d.draw(st.integers(1, 2 * n)) for n in size)
    x = data(d.draw, (d.draw(st.integers(1, 2)), d.draw(st.integers(1, 3))) + size, dtype)
    spec = tuple(None if d.draw(st.booleans()) and o == n else o for o, n in zip(out, size))
    close(ADA_AVG[nd](x, spec), ref.adaptive_pool_nd(x, out, "avg"), dtype)
    vals, idx = ref.adaptive_pool_nd(x, out, "max")
    gv, gi = ADA_MAX[nd](x, spec, return_indices=True)
    np.testing.assert_array_equal(gv, vals.astype(dtype))
    np.testing.assert_array_equal(gi, idx)
    g = data(d.draw, vals.shape, np.float64)
    gx = ADA_BACK[nd](g, x.shape)                          # the adjoint of the adaptive average
    y = ADA_AVG[nd](x.astype(np.float64), out)
    assert abs(np.vdot(y, g) - np.vdot(x.astype(np.float64), gx)) <= 1e-10 * (np.abs(x).sum() * np.abs(g).max() + 1)


@budget("global")
@given(st.integers(1, 3), dtypes, st.data())
def test_global_pools_match_numpy(nd, dtype, d):
    shape = (d.draw(st.integers(1, 3)), d.draw(st.integers(1, 3))) + tuple(d.draw(st.integers(1, 5))
                                                                         for _ in range(nd))
    x = data(d.draw, shape, dtype)
    flat = x.reshape(shape[:2] + (-1,)).astype(np.float64)
    close(fc.global_avg_pool(x), flat.mean(-1), dtype)
    v, i = fc.global_max_pool(x, return_indices=True)
    np.testing.assert_array_equal(v, flat.max(-1).astype(dtype))
    np.testing.assert_array_equal(i, flat.argmax(-1))
    g = data(d.draw, shape[:2], np.float64)
    gx = G.global_avg_pool_backward(g, shape)
    np.testing.assert_allclose(gx, np.broadcast_to((g / flat.shape[-1]).reshape(shape[:2] + (1,) * nd), shape),
                               rtol=1e-12, atol=0)
    np.testing.assert_allclose(G.max_pool_backward(g[..., None], i[..., None], (shape[0], shape[1], flat.shape[-1])),
                               ref.index_scatter_add(g[..., None], i[..., None], (shape[0], shape[1], flat.shape[-1])))


def _kmax_problem(d, dtype, max_ndim):
    """(shape, dim, k, x) of a k-max pooling with up to ``max_ndim`` dims of up to 5 elements."""
    ndim = d.draw(st.integers(1, max_ndim))
    shape = tuple(d.draw(st.integers(1, 5)) for _ in range(ndim))
    dim = d.draw(st.integers(-ndim, ndim - 1))
    return shape, dim, d.draw(st.integers(1, shape[dim])), data(d.draw, shape, dtype)


@budget("kmax")
@given(dtypes, st.data())
def test_kmax_pool_matches_reference(dtype, d):
    shape, dim, k, x = _kmax_problem(d, dtype, 4)
    if d.draw(st.booleans()):                               # ties and NaN follow the documented order
        x = np.round(x).astype(dtype)
        x.flat[d.draw(st.integers(0, x.size - 1))] = np.nan
    srt = d.draw(st.booleans())
    vals, idx = fc.kmax_pool(x, k, dim=dim, sorted=srt)
    rv, ri = ref.kmax_pool_ref(x, k, dim=dim, sorted=srt)
    np.testing.assert_array_equal(idx, ri)
    np.testing.assert_array_equal(vals, rv.astype(dtype))


@budget("kmax_backward")
@given(dtypes, st.data())
def test_kmax_pool_backward_puts_gradients_back(dtype, d):
    shape, dim, k, x = _kmax_problem(d, dtype, 3)
    _, idx = fc.kmax_pool(x, k, dim=dim)
    g = data(d.draw, idx.shape, dtype)
    gx = G.kmax_pool_backward(g, idx, shape, dim=dim)
    want = np.zeros(shape)
    np.put_along_axis(want, idx, g.astype(np.float64), axis=dim)
    np.testing.assert_array_equal(gx, want.astype(dtype))


def _max_pooled(problem, plain=True):
    """(x, kwargs, values, indices) of the max pooling (``plain``: undilated, floor mode); values None if a window
    is empty."""
    x, kw = problem
    if plain:
        kw = dict(kw, ceil_mode=False, dilation=(1,) * (x.ndim - 2))
    if _empty_window(x, kw):
        return x, kw, None, None
    return (x, kw) + MAX_POOL[x.ndim - 2](x, return_indices=True, **kw)


@budget("unpool")
@given(pool_problems(dilation=False), st.booleans(), st.data())
def test_max_unpool_matches_reference(problem, random_indices, d):
    x, kw, v, i = _max_pooled(problem)
    assume(v is not None)
    stride = kw["stride"] or kw["kernel_size"]
    default = tuple((n - 1) * s + k - 2 * p for n, s, k, p in zip(v.shape[2:], stride, kw["kernel_size"],
                                                                  kw["padding"]))
    size = x.shape[2:]                     # the pooled input's size, when it lies within a stride of the default
    assume(all(d - s < n < d + s for d, s, n in zip(default, stride, size)))
    if random_indices:                                       # any in-range indices, duplicates included
        seed = d.draw(st.integers(0, 2 ** 32 - 1))
        i = np.random.default_rng(seed).integers(0, math.prod(size), i.shape)
    uk = dict(kernel_size=kw["kernel_size"], stride=kw["stride"], padding=kw["padding"], output_size=size)
    got = UNPOOL[x.ndim - 2](v, i, **uk)
    np.testing.assert_array_equal(got, ref.max_unpool_nd(v, i, size).astype(v.dtype))


@budget("unpool_backward")
@given(pool_problems(dilation=False), st.data())
def test_max_unpool_backward_gathers(problem, d):
    x, kw, v, i = _max_pooled(problem)
    assume(v is not None)
    g = data(d.draw, x.shape, x.dtype)
    got = G.max_unpool_backward(g, i)
    P = x.shape[0] * x.shape[1]
    want = np.take_along_axis(g.reshape(P, -1), i.reshape(P, -1), axis=1).reshape(i.shape)
    np.testing.assert_array_equal(got, want)


@budget("max_pool_backward")
@given(pool_problems(), st.data())
def test_max_pool_backward_scatters_like_reference(problem, d):
    x, kw, v, i = _max_pooled(problem, plain=False)
    assume(v is not None)
    g = data(d.draw, v.shape, x.dtype)
    got = G.max_pool_backward(g, i, x.shape)
    close(got, ref.index_scatter_add(g, i, x.shape), x.dtype)


# ------------------------------------------------------------------------------------------------ filters
MODES = ("reflect", "mirror", "nearest", "wrap", "constant", "grid-wrap", "grid-constant", "grid-mirror")


@st.composite
def filter_problems(draw, rank1=False):
    nd = draw(st.integers(2 if rank1 else 1, 3))      # method="separable" refuses 1-D weights
    dtype = draw(dtypes)
    shape = tuple(draw(st.integers(1, {1: 12, 2: 7, 3: 4}[nd])) for _ in range(nd))
    ksize = tuple(draw(st.integers(1, {1: 6, 2: 4, 3: 3}[nd])) for _ in range(nd))
    img = data(draw, shape, dtype)
    if rank1:
        w = np.ones(())
        for k in ksize:
            w = np.multiply.outer(w, data(draw, (k,), np.float64))
    else:
        w = data(draw, ksize, np.float64)
    origin = tuple(draw(st.integers(-(k // 2), (k - 1) // 2)) for k in ksize)
    mode = draw(st.one_of(st.sampled_from(MODES), st.tuples(*[st.sampled_from(MODES)] * nd)))
    return img, w, dict(mode=mode, cval=draw(st.floats(-2, 2)), origin=origin)


def _conv_origin(w, origin):
    return tuple(-o - (1 - k % 2) for o, k in zip(origin, w.shape))


@budget("correlate")
@given(filter_problems(), st.sampled_from(("direct", "fft", "auto")), st.booleans())
def test_correlate_and_convolve_match_reference(problem, method, flip):
    img, w, kw = problem
    if flip:      # convolve = correlate with the mirrored kernel and origin (scipy.ndimage's definition)
        got = F.convolve(img, w, method=method, **kw)
        want = ref.ndimage_correlate(img, w[(slice(None, None, -1),) * w.ndim],
                                     kw["mode"], kw["cval"], _conv_origin(w, kw["origin"]))
    else:
        got = F.correlate(img, w, method=method, **kw)
        want = ref.ndimage_correlate(img, w, kw["mode"], kw["cval"], kw["origin"])
    assert got.dtype == img.dtype and got.shape == img.shape
    close(got, want, img.dtype, factor=10)


@budget("separable")
@given(filter_problems(rank1=True))
def test_separable_method_matches_reference(problem):
    img, w, kw = problem
    got = F.correlate(img, w, method="separable", **kw)
    close(got, ref.ndimage_correlate(img, w, kw["mode"], kw["cval"], kw["origin"]), img.dtype, factor=10)


@budget("skimage")
@given(st.sampled_from(("gaussian", "sobel", "prewitt", "scharr", "laplace", "unsharp_mask")), dtypes, st.data())
def test_skimage_filters_match_scikit_image(name, dtype, d):
    skf = pytest.importorskip("skimage.filters")
    shape = tuple(d.draw(st.integers(3, 9)) for _ in range(d.draw(st.integers(2, 3))))
    img = data(d.draw, shape, dtype, positive=True) / 2
    if name == "gaussian":
        kw = dict(sigma=d.draw(st.floats(0.3, 2.5)), mode=d.draw(st.sampled_from(("nearest", "reflect", "wrap"))),
                  truncate=d.draw(st.floats(1.0, 4.0)))
    elif name == "unsharp_mask":
        kw = dict(radius=d.draw(st.floats(0.3, 2.5)), amount=d.draw(st.floats(0.0, 2.0)))
    elif name == "laplace":
        kw = {}
    else:
        kw = dict(axis=d.draw(st.one_of(st.none(), st.integers(0, len(shape) - 1))))
    got = getattr(F, name)(img, **kw)
    want = getattr(skf, name)(img, **kw)
    assert got.shape == want.shape
    close(got, want, dtype, factor=10)
