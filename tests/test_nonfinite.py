"""Non-finite values (NaN, +inf, -inf) stay where the peers put them: PyTorch for convolutions, scipy.ndimage and
scikit-image for the filters.

The contract (docstring of ``fastconv._algorithms``): an output element is the IEEE sum of the products PyTorch's
reference CPU path forms -- zero padding multiplied in the forward pass and the weight gradient, never in the
input gradient / transposed convolution -- so it is NaN, +inf or -inf exactly when one of those products is.  The
naive loops of ``tests/reference.py`` form exactly those products, so their classes (finite / NaN / +inf / -inf)
are the expected ones; the fuzzers also check them against PyTorch itself (float64, its reference path) when it
is installed.  Every registered algorithm is held to what it declares in ``Algorithm.nonfinite``: ``"exact"``
entries match the classes element by element, ``"spreads"`` entries (fft) make at least every element non-finite
that the contract makes non-finite.  ``algorithm="auto"`` must be exact.

The fuzzers use a fixed seed; ``FASTCONV_FUZZ_SCALE`` multiplies their number of problems.
"""
import os
import warnings

import numpy as np
import pytest

import fastconv as fc
from fastconv import _algorithms
from fastconv import filters as F
from fastconv import grad as G
from fastconv import nn

import reference as ref

# 0 * inf and inf - inf are the point here
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SEED = 20120
SCALE = float(os.environ.get("FASTCONV_FUZZ_SCALE", "1"))
CONV_PROBLEMS = max(1, int(120 * SCALE))     # per chunk
CONV_CHUNKS = 4
FILTER_PROBLEMS = max(1, int(120 * SCALE))
ALGORITHMS = fc.algorithms()
TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}


def classes(a):
    """0 finite, 1 +inf, 2 -inf, 3 NaN, elementwise."""
    a = np.asarray(a, np.float64)
    return np.select([np.isnan(a), a == np.inf, a == -np.inf], [3, 1, 2], 0)


def sprinkle(rng, shape, p, dtype=np.float64):
    """Small integers (zeros included, so that 0 * inf happens) with NaN, +inf or -inf at random (probability p)."""
    a = rng.integers(-2, 3, size=shape).astype(np.float64)
    hit = rng.random(shape) < p
    a[hit] = rng.choice([np.nan, np.inf, -np.inf], size=int(hit.sum()))
    return a.astype(dtype)


def expect(got, want, how, what):
    """``how`` is an Algorithm.nonfinite value: "exact" -- the same class everywhere and close finite values;
    "spreads" -- non-finite wherever the contract says so, close values where both are finite."""
    got = np.asarray(got)
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    cg, cw = classes(got), classes(want)
    if how == "exact":
        bad = np.argwhere(cg != cw)
        assert bad.size == 0, "%s: %d of %d elements of another class, first at %s: got %r, want %r" % (
            what, len(bad), cg.size, tuple(bad[0]), got[tuple(bad[0])], want[tuple(bad[0])])
    else:
        missed = np.argwhere((cw != 0) & (cg == 0))
        assert missed.size == 0, "%s: finite where the contract is non-finite at %s" % (what, tuple(missed[0]))
    both = (cg == 0) & (cw == 0)
    scale = max(1.0, float(np.abs(want[cw == 0]).max(initial=0)))
    np.testing.assert_allclose(got[both].astype(np.float64), want[both], rtol=0,
                               atol=TOL[got.dtype] * scale * 10, err_msg=what)


def torch_or_none():
    try:
        import torch
    except ImportError:  # pragma: no cover - the parity half is skipped without torch
        return None
    return torch


# ----------------------------------------------------------------------------------------------- problems
def _layer(rng):
    """(nd, groups, in/out channels per group, batch, kernel, stride, dilation, dtype) of a random small layer."""
    nd = int(rng.integers(1, 4))
    groups, cg, kg = int(rng.integers(1, 3)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
    N = int(rng.choice([0, 1, 2], p=[0.05, 0.55, 0.4]))
    kernel = tuple(int(v) for v in rng.integers(1, {1: 4, 2: 4, 3: 3}[nd], nd))
    stride = tuple(int(v) for v in rng.integers(1, 4, nd))
    dilation = tuple(int(v) for v in rng.integers(1, 3, nd))
    dtype = np.float32 if rng.random() < 0.5 else np.float64
    return nd, groups, cg, kg, N, kernel, stride, dilation, dtype


def _conv_problem(rng):
    """A forward convolution: (nd, x, w, b, kwargs with padding pairs, padding mode)."""
    nd, groups, cg, kg, N, kernel, stride, dilation, dtype = _layer(rng)
    pairs = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (nd, 2)))
    mode = str(rng.choice(["zeros", "zeros", "reflect", "replicate", "circular"]))
    eff = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    size = tuple(max(e - lo - hi, max(lo, hi) + 1, 1) + int(rng.integers(0, {1: 5, 2: 3, 3: 2}[nd]))
                 for e, (lo, hi) in zip(eff, pairs))
    x = sprinkle(rng, (N, groups * cg) + size, 0.08, dtype)
    w = sprinkle(rng, (groups * kg, cg) + kernel, 0.12, dtype)
    b = sprinkle(rng, (groups * kg,), 0.1, dtype) if rng.random() < 0.5 else None
    kw = dict(stride=stride, padding=pairs, dilation=dilation, groups=groups)
    return nd, x, w, b, kw, mode


def _transpose_problem(rng):
    """A transposed convolution: (nd, x, w, b, kwargs, padding pairs of the forward convolution), or None."""
    nd, groups, cg, kg, N, kernel, stride, dilation, dtype = _layer(rng)
    pad = tuple(int(v) for v in rng.integers(0, 3, nd))
    opad = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))   # may reach stride
    size = tuple(int(v) for v in rng.integers(1, {1: 6, 2: 4, 3: 3}[nd], nd))
    out = [(n - 1) * s - 2 * p + d * (k - 1) + o + 1
           for n, s, p, d, k, o in zip(size, stride, pad, dilation, kernel, opad)]
    if min(out) < 1:
        return None
    x = sprinkle(rng, (N, groups * cg) + size, 0.1, dtype)
    w = sprinkle(rng, (groups * cg, kg) + kernel, 0.12, dtype)
    b = sprinkle(rng, (groups * kg,), 0.1, dtype) if rng.random() < 0.5 else None
    kw = dict(stride=stride, padding=pad, output_padding=opad, groups=groups, dilation=dilation)
    # the forward convolution whose adjoint this is: high-side padding shrinks by whole strides of output_padding
    pairs = tuple((p, p - (o - o % s)) for p, o, s in zip(pad, opad, stride))
    return nd, x, w, b, kw, pairs


def _fold(gp, pairs, mode):
    """Adjoint of explicit padding by ``mode``: add the gradient of every padded position onto its source."""
    g = gp
    for ax, (lo, hi) in enumerate(pairs):
        axis = 2 + ax
        n = g.shape[axis] - lo - hi
        src = np.pad(np.arange(n), (lo, hi), mode={"reflect": "reflect", "replicate": "edge",
                                                     "circular": "wrap"}[mode])
        out = np.zeros(g.shape[:axis] + (n,) + g.shape[axis + 1:])
        np.add.at(np.moveaxis(out, axis, 0), src, np.moveaxis(g, axis, 0))
        g = out
    return g


def _conv_reference(nd, x, w, b, gy, kw, mode):
    """(forward, input gradient, weight gradient) of the contract."""
    st, dl, gr, pairs = kw["stride"], kw["dilation"], kw["groups"], kw["padding"]
    xp = ref.pad_input(np.asarray(x, np.float64), pairs, mode)
    with np.errstate(all="ignore"):
        y = ref.conv_nd(xp, w, b, st, 0, dl, gr)
        if mode == "zeros":
            gx = ref.conv_grad_input_nd(x.shape, w, gy, st, pairs, dl, gr)
        else:
            gx = _fold(ref.conv_grad_input_nd(xp.shape, w, gy, st, 0, dl, gr), pairs, mode)
        gw = ref.conv_grad_weight_nd(xp, gy, w.shape, st, 0, dl, gr)
    return y, gx, gw


def _torch_conv(torch, nd, x, w, b, gy, kw, mode):
    """PyTorch float64 forward and gradients of the same call (zero padding given as explicit F.pad for pairs)."""
    Fn = torch.nn.functional
    tx, tw = torch.tensor(x, dtype=torch.float64, requires_grad=True), torch.tensor(w, dtype=torch.float64,
                                                                                     requires_grad=True)
    tb = None if b is None else torch.tensor(b, dtype=torch.float64)
    pad = [p for lo_hi in reversed(kw["padding"]) for p in lo_hi]
    xp = Fn.pad(tx, pad, mode="constant" if mode == "zeros" else mode)
    y = getattr(Fn, "conv%dd" % nd)(xp, tw, tb, kw["stride"], 0, kw["dilation"], kw["groups"])
    y.backward(torch.tensor(gy, dtype=torch.float64))
    return y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()


def _torch_transpose(torch, nd, x, w, b, gy, kw):
    tx, tw = torch.tensor(x, dtype=torch.float64, requires_grad=True), torch.tensor(w, dtype=torch.float64,
                                                                                     requires_grad=True)
    tb = None if b is None else torch.tensor(b, dtype=torch.float64)
    y = getattr(torch.nn.functional, "conv_transpose%dd" % nd)(tx, tw, tb, **kw)
    y.backward(torch.tensor(gy, dtype=torch.float64))
    return y.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()


def _how(alg, op="forward"):
    """What ``alg`` declares for ``op``: "exact" or "spreads" (auto: exact)."""
    return "spreads" if alg != "auto" and _algorithms.get(alg).spreads(op) else "exact"


def _supported(fn, *args, **kwargs):
    """fn(...) or None when the algorithm declines the geometry (ValueError naming it)."""
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        if "does not implement" in str(exc):
            return None
        raise


@pytest.mark.parametrize("chunk", range(CONV_CHUNKS))
def test_nonfinite_fuzz_convolutions(chunk):
    """NaN/+-inf at random in input, weight, bias and output gradient: forward, input gradient and weight
    gradient of conv1d/2d/3d (every padding mode) and of the transposed convolutions (forward and both
    gradients through the tape, output_padding up to max(stride, dilation) - 1), for every registered algorithm
    and ``auto``, against the contract -- and the contract against PyTorch."""
    rng = np.random.default_rng([SEED, chunk])
    torch = torch_or_none()
    done = 0
    while done < CONV_PROBLEMS:
        transposed = rng.random() < 0.4
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            if transposed:
                problem = _transpose_problem(rng)
                if problem is None:
                    continue
                _check_transpose(rng, torch, *problem)
            else:
                _check_conv(rng, torch, *_conv_problem(rng))
        done += 1


def _check_conv(rng, torch, nd, x, w, b, kw, mode):
    y_shape = fc.conv_output_shape(x.shape, w.shape, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    gy = sprinkle(rng, y_shape, 0.08, x.dtype)
    want = _conv_reference(nd, x, w, b, gy, kw, mode)
    if torch is not None:
        for t, r, what in zip(_torch_conv(torch, nd, x, w, b, gy, kw, mode), want, ("forward", "grad_input",
                                                                                     "grad_weight")):
            assert np.array_equal(classes(t), classes(r)), "the contract's %s is not PyTorch's (%s)" % (what, kw)
    conv = getattr(fc, "conv%dd" % nd)
    gin, gwt = getattr(G, "conv%dd_input" % nd), getattr(G, "conv%dd_weight" % nd)
    for alg in ALGORITHMS + ("auto",):
        tag = "%s %s %dd %s mode=%s %s" % (alg, x.dtype, nd, x.shape, mode, kw)
        for got, ref_value, what in (
                (_supported(conv, x, w, b, padding_mode=mode, algorithm=alg, **kw), want[0], "forward"),
                (_supported(gin, x.shape, w, gy, padding_mode=mode, algorithm=alg, **kw), want[1], "grad_input"),
                (_supported(gwt, x, w.shape, gy, padding_mode=mode, algorithm=alg, **kw), want[2], "grad_weight")):
            if got is not None:
                expect(got, ref_value, _how(alg, what), "%s: %s" % (what, tag))


def _check_transpose(rng, torch, nd, x, w, b, kw, pairs):
    st, dl, gr = kw["stride"], kw["dilation"], kw["groups"]
    y = ref.conv_transpose_nd(x, w, b, **kw)
    gy = sprinkle(rng, y.shape, 0.08, x.dtype)
    # its input gradient is the forward convolution of gy, its weight gradient the weight gradient with input
    # and output swapped (both multiply the zero padding)
    want = (y, ref.conv_nd(gy, w, None, st, pairs, dl, gr), ref.conv_grad_weight_nd(gy, x, w.shape, st, pairs, dl, gr))
    if torch is not None:
        for t, r, what in zip(_torch_transpose(torch, nd, x, w, b, gy, kw), want, ("forward", "grad_input",
                                                                                   "grad_weight")):
            assert np.array_equal(classes(t), classes(r)), "the contract's transposed %s is not PyTorch's" % what
    for alg in ALGORITHMS + ("auto",):
        tag = "%s %s conv_transpose%dd %s %s" % (alg, x.dtype, nd, x.shape, kw)
        X, W = fc.Tensor(x, requires_grad=True), fc.Tensor(w, requires_grad=True)
        B = None if b is None else fc.Tensor(b, requires_grad=True)
        out = _supported(getattr(nn.functional, "conv_transpose%dd" % nd), X, W, B, algorithm=alg, **kw)
        if out is None:
            continue
        expect(out.data, want[0], _how(alg, "grad_input"), "forward: " + tag)     # the adjoint runs it
        try:
            out.backward(gy)
        except ValueError as exc:      # an algorithm may decline one of the gradient geometries only
            assert "does not implement" in str(exc)
            continue
        expect(X.grad, want[1], _how(alg, "forward"), "grad_input: " + tag)
        expect(W.grad, want[2], _how(alg, "grad_weight"), "grad_weight: " + tag)
        if B is not None:
            expect(B.grad, gy.astype(np.float64).sum(axis=(0,) + tuple(range(2, gy.ndim))), "exact",
                   "grad_bias: " + tag)


# ----------------------------------------------------------------------------------------------- the examples
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_transposed_convolution_does_not_multiply_its_holes(alg):
    """conv_transpose1d(ones(1, 1, 8), [[1, inf, 1]]) is [1, inf, ..., inf, 1] (PyTorch, toeplitz); direct gave
    NaN at both ends (its kernel multiplied the zero padding of the adjoint by inf), fft NaN everywhere."""
    w = np.array([[[1.0, np.inf, 1.0]]])
    got = fc.conv_transpose1d(np.ones((1, 1, 8)), w, algorithm=alg)
    want = np.array([[[1.0] + [np.inf] * 8 + [1.0]]])
    if _how(alg, "grad_input") == "exact":
        np.testing.assert_array_equal(got, want)
    else:
        assert not np.isfinite(got[..., 1:-1]).any()
    # stride holes too: with stride 2 every other output reads an inf weight only through a hole of the input
    got = fc.conv_transpose1d(np.ones((1, 1, 4)), np.array([[[1.0, np.inf]]]), stride=3, algorithm=alg)
    if _how(alg, "grad_input") == "exact":
        np.testing.assert_array_equal(got, [[[1, np.inf, 0, 1, np.inf, 0, 1, np.inf, 0, 1, np.inf]]])


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_input_gradient_does_not_multiply_padding(alg):
    """grad.conv*_input never forms 0 * inf over the padding: PyTorch's finite gradient at the border."""
    w = np.array([[[np.inf, 1.0, 1.0]]])
    got = G.conv1d_input((1, 1, 6), w, np.ones((1, 1, 6)), padding=1, algorithm=alg)
    want = ref.conv_grad_input_nd((1, 1, 6), w, np.ones((1, 1, 6)), padding=1)
    expect(got, want, _how(alg, "grad_input"), alg)
    assert _how(alg, "grad_input") != "exact" or np.isfinite(got[..., -1]).all()


@pytest.mark.parametrize("alg", ALGORITHMS)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_forward_multiplies_zero_padding_in_every_dimension(alg, nd):
    """An inf weight over the zero padding gives NaN at the border, as PyTorch: direct skipped the padding rows
    along H and D (finite there) while multiplying the padding along W."""
    x = np.ones((1, 1) + (4,) * nd)
    for axis in range(nd):
        w = np.ones((1, 1) + (3,) * nd)
        w[(0, 0) + tuple(0 if a == axis else 1 for a in range(nd))] = np.inf
        got = getattr(fc, "conv%dd" % nd)(x, w, padding=1, algorithm=alg)
        expect(got, ref.conv_nd(x, w, padding=1), _how(alg), "%s axis %d" % (alg, axis))
        assert np.isnan(got[(0, 0) + tuple(0 if a == axis else 1 for a in range(nd))])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_auto_avoids_fft_for_nonfinite_operands(dtype):
    """The issue's example: one NaN in a (1, 4, 256, 256) input with a 21x21 kernel poisons the 1,764 outputs
    whose window holds it (torch, direct, toeplitz); auto used to pick fft and poison all 262,144 outputs.  The
    same layer with finite data still runs a transform algorithm (fft, or winograd's polyphase blocks).  Two
    threads, so that the cost model's choice is the same on every machine."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 256, 256)).astype(dtype)
    w = rng.standard_normal((4, 4, 21, 21)).astype(dtype)
    from fastconv._prepare import prepare_conv
    with fc.num_threads(2):
        p = prepare_conv("conv2d", 2, x, w)
        chosen = p.algorithm_for("forward")
        assert chosen.nonfinite == "spreads"       # the premise: auto's choice for finite data spreads (fft here)
        assert p.algorithm_for("forward", finite=False).nonfinite == "exact"     # what auto runs it again with
        x[0, 0, 100, 100] = np.nan
        y = fc.conv2d(x, w)
        assert np.isnan(y).sum() == 4 * 21 * 21
        assert np.isnan(y[:, :, 80:101, 80:101]).all()
        named = fc.conv2d(x, w, algorithm=chosen.name)          # asked by name it runs, and spreads or not
        assert np.isnan(named[:, :, 80:101, 80:101]).all()
        assert np.isnan(fc.conv2d(x, w, algorithm="fft")).sum() > 4 * 21 * 21     # fft, named, spreads


def test_auto_avoids_fft_when_products_overflow():
    """1e30 * 1e30 overflows float32: PyTorch and direct give +inf, fft NaN; auto must not pick fft."""
    x = np.zeros((1, 1, 128, 128), np.float32)
    w = np.zeros((1, 1, 31, 31), np.float32)
    x[0, 0, 60, 60] = 1e30
    w[0, 0, 15, 15] = 1e30
    assert not _algorithms.tame(np.float32, x, w)
    y = fc.conv2d(x, w, padding=15)
    assert y[0, 0, 60, 60] == np.inf
    assert np.isfinite(np.delete(y.ravel(), 60 * 128 + 60)).all()


def test_tame_bounds_every_intermediate():
    """``tame`` is False for NaN, inf, and for values whose products could overflow; True for ordinary data."""
    a = np.ones((2, 3, 8, 8), np.float32)
    assert _algorithms.tame(np.float32, a, a)
    assert not _algorithms.tame(np.float32, a, np.full(3, np.nan, np.float32))
    assert not _algorithms.tame(np.float32, np.full(3, -np.inf, np.float32), a)
    assert not _algorithms.tame(np.float32, a * 1e18, a * 1e18)
    assert _algorithms.tame(np.float64, a * 1e18, a * 1e18)
    assert _algorithms.tame(np.float32, a, np.zeros(0, np.float32))


def test_every_algorithm_declares_its_nonfinite_behaviour():
    """The registry entry says how non-finite values behave; auto consults it, so an unknown value is refused."""
    for name in ALGORITHMS:
        assert _algorithms.get(name).nonfinite in _algorithms.NONFINITE
    assert _algorithms.get("fft").nonfinite == "spreads"
    alg = _algorithms.get("direct")
    with pytest.raises(ValueError, match="nonfinite"):
        _algorithms.register(_algorithms.Algorithm("bad", alg.forward, None, None, alg.cost, nonfinite="maybe"))
    with pytest.raises(ValueError, match="spreading_ops"):
        _algorithms.register(_algorithms.Algorithm("bad", alg.forward, None, None, alg.cost, nonfinite="spreads",
                                                   spreading_ops=("backward",)))
    assert "bad" not in fc.algorithms()
    # an entry may spread in some ops only: lanes' input gradient multiplies the holes along W, the rest is exact
    lanes = _algorithms.get("lanes")
    assert [lanes.spreads(op) for op in _algorithms.OPS] == [False, True, False]
    assert [_algorithms.get("fft").spreads(op) for op in _algorithms.OPS] == [True] * 3


def test_registry_exposes_the_contract_to_new_entries():
    """A new spreading entry that auto would prefer runs once on finite operands; when its result holds an inf
    or NaN, auto runs the op again with the best exact entry -- forward, input gradient and weight gradient, and
    through the tape."""
    fft = _algorithms.get("fft")
    calls = []

    def counted(fn, op):
        def run(*args, **kw):
            calls.append(op)
            return fn(*args, **kw)
        return run
    cheap = _algorithms.Algorithm("cheap_spreader", counted(fft.forward, "forward"),
                                  counted(fft.grad_input, "grad_input"), counted(fft.grad_weight, "grad_weight"),
                                  lambda geom, dtype, op: 0.0, supports=fft.supports, nonfinite="spreads")
    _algorithms.register(cheap)
    try:
        x = np.ones((1, 1, 12, 12))
        w = np.ones((1, 1, 3, 3))
        gy = np.ones((1, 1, 10, 10))
        from fastconv._prepare import prepare_conv
        p = prepare_conv("conv2d", 2, x, w)
        assert p.algorithm_for("forward").name == "cheap_spreader"
        assert p.algorithm_for("forward", finite=False).nonfinite == "exact"
        assert np.isfinite(fc.conv2d(x, w)).all() and calls == ["forward"]
        x[0, 0, 0, 0] = np.inf
        y = fc.conv2d(x, w)
        assert calls == ["forward"] * 2         # ran, gave NaN, and the exact entry ran again
        assert np.isinf(y).sum() == 1 and np.isfinite(y.ravel()[1:]).all()
        gw = fc.grad.conv2d_weight(x, w.shape, gy)
        np.testing.assert_array_equal(gw, fc.grad.conv2d_weight(x, w.shape, gy, algorithm="direct"))
        assert np.isinf(gw).sum() == 1
        w[0, 0, 1, 1] = np.inf
        gx = fc.grad.conv2d_input(x.shape, w, gy)
        np.testing.assert_array_equal(gx, fc.grad.conv2d_input(x.shape, w, gy, algorithm="direct"))
        assert not np.isnan(gx).any()           # inf, never 0 * inf: the contract's products only
        X, W = fc.Tensor(x, requires_grad=True), fc.Tensor(w, requires_grad=True)
        fc.nn.functional.conv2d(X, W).sum().backward()
        np.testing.assert_array_equal(W.grad, fc.grad.conv2d_weight(x, w.shape, np.ones_like(gy), algorithm="direct"))
        assert calls.count("grad_input") == 2 and calls.count("grad_weight") == 2
    finally:
        _algorithms._registry.pop("cheap_spreader")
        _algorithms.invalidate()


@pytest.mark.parametrize("name", ["winograd", "fft_tiles"])
@pytest.mark.parametrize("op", ["forward", "grad_input"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transform_kernels_report_whether_their_output_is_finite(name, op, dtype, monkeypatch):
    """winograd and fft_tiles check the outputs they write (``reports_finite``): the answer equals
    ``np.isfinite(out).all()`` in row and batch mode, for an inf or NaN operand, an inf bias and overflowing
    products; ``auto`` then makes no pass of its own over the result."""
    alg = _algorithms.get(name)
    assert op in alg.reports_finite
    rng = np.random.default_rng(3)
    big = 1e200 if dtype == np.float64 else 1e30
    for N, size, k in ((2, (13, 11), (3, 3)), (20, (9, 8), (3, 3)), (2, (15, 17), (5, 5))):
        geom = fc.ConvGeometry.make((N, 3) + size, (4, 3) + k, 1, 1)
        for case in ("finite", "inf x", "nan w", "inf bias", "overflow"):
            x = rng.standard_normal(geom.input_shape if op == "forward" else geom.output_shape).astype(dtype)
            w = rng.standard_normal(geom.weight_shape).astype(dtype)
            b = rng.standard_normal(4).astype(dtype) if op == "forward" else None
            if case == "inf x":
                x[1, 2, 3, 4] = np.inf
            elif case == "nan w":
                w[0, 1, 1, 1] = np.nan
            elif case == "inf bias" and b is not None:
                b[2] = -np.inf
            elif case == "overflow":
                x[0, 0, 4, 4] = big
                w[...] = big
            if op == "forward":
                out = np.empty(geom.output_shape, dtype)
                ok = alg.forward(x, w, b, geom, out, 2)
            else:
                out = np.empty(geom.input_shape, dtype)
                ok = alg.grad_input(x, w, geom, out, 2)
            assert ok is (bool(np.isfinite(out).all())), (N, k, case)
            if case == "finite":
                assert ok
    # auto takes the kernel's answer: no pass over the result, finite or not
    passes = []
    real = _algorithms.finite
    monkeypatch.setattr(_algorithms, "finite", lambda a: passes.append(a.shape) or real(a))
    x = rng.standard_normal((8, 16, 28, 28)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    monkeypatch.setattr(_algorithms, "choose", lambda geom, dtype, op="forward", finite=True:
                        alg if finite else _algorithms.get("direct"))
    _algorithms.invalidate()
    try:
        from fastconv._prepare import prepare_conv
        assert prepare_conv("conv2d", 2, x, w, None, 1, 1).algorithm_for("forward") is alg
        fc.conv2d(x, w, padding=1)
        x[0, 0, 5, 5] = np.nan
        y = fc.conv2d(x, w, padding=1)
        np.testing.assert_array_equal(y, fc.conv2d(x, w, padding=1, algorithm="direct"))
        assert passes == []
    finally:
        monkeypatch.undo()
        _algorithms.invalidate()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lanes_input_gradient_reports_whether_it_is_finite(dtype):
    """lanes' input gradient (which spreads non-finite values) checks its sums in the kernel
    (``reports_finite``): a finite report means a finite result, and an inf or NaN operand or overflowing
    products are reported -- with lanes past the batch, stride holes and padding."""
    alg = _algorithms.get("lanes")
    assert "grad_input" in alg.reports_finite
    rng = np.random.default_rng(4)
    big = 1e200 if dtype == np.float64 else 1e30
    for N, stride, pad in ((20, 1, 0), (16, 2, 1), (3, 1, 2)):
        geom = fc.ConvGeometry.make((N, 3, 11, 9), (4, 3, 3, 3), stride, pad)
        for case in ("finite", "inf gy", "nan w", "overflow"):
            gy = rng.standard_normal(geom.output_shape).astype(dtype)
            w = rng.standard_normal(geom.weight_shape).astype(dtype)
            if case == "inf gy":
                gy[N - 1, 2, 1, 1] = -np.inf
            elif case == "nan w":
                w[3, 1, 2, 0] = np.nan
            elif case == "overflow":
                gy[0, 0, 2, 2] = big
                w[...] = big
            out = np.empty(geom.input_shape, dtype)
            ok = alg.grad_input(gy, w, geom, out, 2)
            assert ok is bool(np.isfinite(out).all()), (N, stride, case)
            assert ok is (case == "finite"), (N, stride, case)


# ----------------------------------------------------------------------------------------------- filters
def _filter_cases(rng):
    """(name, fastconv call, peer call) on a random 2-D or 3-D image with non-finite values."""
    ndi = pytest.importorskip("scipy.ndimage")
    nd = int(rng.choice([2, 2, 3]))
    shape = (int(rng.integers(3, 30)), int(rng.choice([int(rng.integers(3, 20)), int(rng.integers(64, 90))])))
    if nd == 3:
        shape = (int(rng.integers(2, 6)),) + shape
    dtype = np.float32 if rng.random() < 0.5 else np.float64
    img = sprinkle(rng, shape, 0.01, dtype) * 0.5
    kshape = tuple(int(v) for v in rng.integers(1, 5, nd))
    w = rng.integers(-2, 3, kshape).astype(np.float64)
    mode = str(rng.choice(["reflect", "constant", "nearest", "mirror", "wrap"]))
    cases = [("correlate direct", lambda: F.correlate(img, w, mode=mode, method="direct"),
              lambda: ndi.correlate(img.astype(np.float64), w, mode=mode)),
             ("convolve auto", lambda: F.convolve(img, w, mode=mode),
              lambda: ndi.convolve(img.astype(np.float64), w, mode=mode))]
    col, row = rng.integers(1, 4, kshape[0]).astype(float), rng.integers(1, 4, kshape[-1]).astype(float)
    sep = np.multiply.outer(col, row) if nd == 2 else np.multiply.outer(rng.integers(1, 3, kshape[0]),
                                                                          np.multiply.outer(col, row))
    cases.append(("correlate separable", lambda: F.correlate(img, sep, mode=mode, method="separable"),
                  lambda: ndi.correlate(img.astype(np.float64), sep, mode=mode)))
    if nd == 2:
        kname = str(rng.choice(sorted(F.kernels)))
        cases.append(("apply_kernel " + kname, lambda: F.apply_kernel(img, kname, mode=mode),
                      lambda: ndi.convolve(img.astype(np.float64), F.kernels[kname], mode=mode)))
    skf = pytest.importorskip("skimage.filters")
    sigma = float(rng.uniform(0.5, 2.5))
    cases.append(("gaussian", lambda: F.gaussian(img, sigma=sigma), lambda: skf.gaussian(img, sigma=sigma)))
    for name in ("sobel", "prewitt", "scharr"):
        cases.append((name, lambda name=name: getattr(F, name)(img), lambda name=name: getattr(skf, name)(img)))
    cases.append(("laplace", lambda: F.laplace(img), lambda: skf.laplace(img)))
    return img, cases


def test_nonfinite_fuzz_filters():
    """NaN/+-inf at random in images of every width (row pairs start at 64 columns): every filter's non-finite
    outputs are exactly scipy.ndimage's / scikit-image's, the finite ones close."""
    rng = np.random.default_rng(SEED)
    for _ in range(FILTER_PROBLEMS):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            img, cases = _filter_cases(rng)
            for name, ours, peer in cases:
                got, want = ours(), peer()
                expect(got, want.astype(np.float64), "exact", "%s on %s %s" % (name, img.dtype, img.shape))


def test_filter_nan_footprint_is_the_kernels():
    """The issue's example: a 3x3 kernel and NaN at row 20 -- scipy marks rows 19-21, fastconv marked 18-21 (row
    pairs added 0 * NaN for the partner row's extra tap); a lone +inf became NaN on row 18 where scipy has 0."""
    ndi = pytest.importorskip("scipy.ndimage")
    for width in (20, 64, 100):
        img = np.zeros((40, width))
        img[20, 10] = np.nan
        rows = sorted(set(np.argwhere(np.isnan(F.correlate(img, np.ones((3, 3)), method="direct")))[:, 0]))
        assert rows == [19, 20, 21]
        img[20, 10] = np.inf
        k = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
        got = F.correlate(img, k, method="direct")
        want = ndi.correlate(img, k)
        np.testing.assert_array_equal(classes(got), classes(want))
        assert got[18, 10] == 0


def test_filters_auto_avoids_fft_for_nonfinite_images():
    """A 31x31 kernel on a 512x512 image runs through the FFT; with one NaN, auto must not (it would be NaN
    everywhere)."""
    rng = np.random.default_rng(2)
    img = rng.random((512, 512))
    w = rng.random((31, 31))
    from fastconv.filters import _engine as E
    with fc.num_threads(2):
        assert E.choose(img.shape, w, img.dtype, 2, None) == "fft"     # the premise
        img[100, 100] = np.nan
        got = F.correlate(img, w)
        assert np.isnan(got).sum() == 31 * 31
        assert np.isnan(F.correlate(img, w, method="fft")).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tame_reads_every_element(dtype):
    """tame()'s one-pass kernel (vectors of 8 or 16 lanes, a scalar tail, chunks over threads): an inf, a NaN or
    the largest magnitude anywhere -- first element, a vector's middle, the tail -- is seen; non-contiguous and
    byte-swapped operands take the NumPy path with the same answers."""
    from fastconv._algorithms import _max_abs, tame
    rng = np.random.default_rng(3)
    for n in (1, 7, 16, 17, 100003, 300001):
        a = rng.uniform(-1, 1, n).astype(dtype)
        assert _max_abs(a) == np.abs(a).max()
        for i in sorted({0, n // 2, n - 1}):
            for v in (np.nan, np.inf, -np.inf):
                b = a.copy()
                b[i] = v
                assert _max_abs(b) == np.inf and not tame(dtype, b)
            b = a.copy()
            b[i] = -7.5
            assert _max_abs(b) == 7.5 and _max_abs(b[::-1]) == 7.5
            assert _max_abs(b.astype(b.dtype.newbyteorder())) == 7.5
    assert tame(dtype, np.ones(10, dtype)) and not tame(np.float32, np.full(10, 1e30, dtype), np.full(10, 1e30, dtype))
