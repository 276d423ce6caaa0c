"""Edge semantics that follow PyTorch and SciPy: transposed-convolution gradients with output_padding >= stride,
empty batches, ``out=`` aliasing, in-place changes of recorded tensors, and the smaller divergences of issue 12.

Non-finite values have their own file (test_nonfinite.py); the differential fuzzer against PyTorch is
test_torch_fuzz.py.
"""
import json
import warnings

import numpy as np
import pytest

import fastconv as fc
from fastconv import _algorithms, _autotune
from fastconv import filters as F
from fastconv import grad as G
from fastconv import nn

import reference as ref

ALGORITHMS = fc.algorithms()
NF = nn.functional


def torch_or_skip():
    return pytest.importorskip("torch")


# ----------------------------------------------------------------------------------------------- 1. output_padding
@pytest.mark.parametrize("needs", ["both", "input", "weight"])
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_transposed_conv_backward_with_output_padding_at_least_the_stride(alg, needs):
    """The issue's example: x (1, 1, 5), w (1, 1, 3), stride 1, dilation 2, output_padding 1 (legal because it is
    below the dilation): forward was right, backward raised (a grad_output shape error, or a reshape error when
    only the input needed a gradient).  Both gradients must be PyTorch's."""
    torch = torch_or_skip()
    rng = np.random.default_rng(0)
    for nd, kw in ((1, dict(stride=1, dilation=2, output_padding=1)),
                   (2, dict(stride=(1, 2), dilation=(3, 3), output_padding=(2, 2), padding=(1, 0))),
                   (3, dict(stride=(2, 1, 1), dilation=(3, 2, 2), output_padding=(2, 1, 0), groups=2))):
        x = rng.standard_normal((2, 2) + (5, 4, 3)[:nd])
        w = rng.standard_normal((2, 3) + (3, 2, 2)[:nd])
        X = fc.Tensor(x, requires_grad=needs != "weight")
        W = fc.Tensor(w, requires_grad=needs != "input")
        y = getattr(NF, "conv_transpose%dd" % nd)(X, W, algorithm=alg, **kw)
        gy = rng.standard_normal(y.shape)
        y.backward(gy)
        tx = torch.tensor(x, requires_grad=True)
        tw = torch.tensor(w, requires_grad=True)
        ty = getattr(torch.nn.functional, "conv_transpose%dd" % nd)(tx, tw, **kw)
        ty.backward(torch.tensor(gy))
        np.testing.assert_allclose(y.data, ty.detach().numpy(), atol=1e-9)
        if needs != "weight":
            np.testing.assert_allclose(X.grad, tx.grad.numpy(), atol=1e-9)
        if needs != "input":
            np.testing.assert_allclose(W.grad, tw.grad.numpy(), atol=1e-9)


def test_conv_transpose_layer_backward_with_output_padding_at_least_the_stride():
    layer = nn.ConvTranspose2d(2, 3, 3, stride=1, dilation=2, output_padding=1)
    x = fc.Tensor(np.ones((1, 2, 5, 5), np.float32), requires_grad=True)
    layer(x).sum().backward()
    assert x.grad.shape == x.shape and layer.weight.grad.shape == layer.weight.shape
    assert np.isfinite(x.grad).all() and np.abs(layer.weight.grad).sum() > 0


# ----------------------------------------------------------------------------------------------- 3. empty batches
CONV_CASES = [
    (1, (0, 3, 7), (4, 3, 3), dict(padding=1)),
    (2, (0, 4, 6, 5), (6, 2, 3, 2), dict(stride=2, groups=2, padding=1, padding_mode="reflect")),
    (3, (0, 2, 4, 4, 3), (3, 2, 2, 2, 2), dict(dilation=(1, 2, 1), padding="same")),
]


@pytest.mark.parametrize("alg", ALGORITHMS + ("auto",))
@pytest.mark.parametrize("nd,xs,ws,kw", CONV_CASES)
def test_convolutions_and_gradients_take_an_empty_batch(nd, xs, ws, kw, alg):
    """N = 0: torch returns an empty (0, C_out, ...) result, empty input gradients and zero weight / bias
    gradients; every fastconv op raised.  Also through out=, the grad functions and the tape."""
    x = np.zeros(xs, np.float32)
    w = np.ones(ws, np.float32)
    b = np.ones(ws[0], np.float32)
    conv = getattr(fc, "conv%dd" % nd)
    y = conv(x, w, b, algorithm=alg, **kw)
    shape = fc.conv_output_shape((1,) + xs[1:], ws, kw.get("stride", 1), kw.get("padding", 0),
                                 kw.get("dilation", 1), kw.get("groups", 1))
    assert y.shape == (0,) + shape[1:] and y.dtype == np.float32
    out = np.empty(y.shape, np.float32)
    assert conv(x, w, b, algorithm=alg, out=out, **kw) is out
    gx = getattr(G, "conv%dd_input" % nd)(xs, w, y, algorithm=alg, **kw)
    gw = getattr(G, "conv%dd_weight" % nd)(x, ws, y, algorithm=alg, **kw)
    assert gx.shape == xs and gw.shape == ws and not gw.any()
    X, W, B = fc.Tensor(x, requires_grad=True), fc.Tensor(w, requires_grad=True), fc.Tensor(b, requires_grad=True)
    yt = getattr(NF, "conv%dd" % nd)(X, W, B, algorithm=alg, **kw)
    yt.sum().backward()
    assert X.grad.shape == xs and not W.grad.any() and not B.grad.any() and B.grad.shape == b.shape


@pytest.mark.parametrize("alg", ALGORITHMS + ("auto",))
def test_transposed_convolutions_take_an_empty_batch(alg):
    torch = torch_or_skip()
    for nd in (1, 2, 3):
        x = np.zeros((0, 4) + (3,) * nd)
        w = np.ones((4, 3) + (2,) * nd)
        kw = dict(stride=2, padding=1, output_padding=1, groups=2)
        w = np.ones((4, 1) + (2,) * nd)
        y = getattr(fc, "conv_transpose%dd" % nd)(x, w, np.ones(2), algorithm=alg, **kw)
        want = getattr(torch.nn.functional, "conv_transpose%dd" % nd)(torch.tensor(x), torch.tensor(w),
                                                                      torch.ones(2, dtype=torch.float64), **kw)
        assert y.shape == tuple(want.shape)
        X, W = fc.Tensor(x, requires_grad=True), fc.Tensor(w, requires_grad=True)
        getattr(NF, "conv_transpose%dd" % nd)(X, W, algorithm=alg, **kw).sum().backward()
        assert X.grad.shape == x.shape and W.grad.shape == w.shape and not W.grad.any()


def test_zero_input_channels_as_torch():
    """PyTorch accepts an input without channels (weight (K, 0, ...)) and returns an output without channels;
    its gradients are empty, the bias gets zeros."""
    torch = torch_or_skip()
    x, w, b = np.zeros((2, 0, 5, 5)), np.ones((4, 0, 3, 3)), np.ones(4)
    for alg in ALGORITHMS:
        y = fc.conv2d(x, w, b, algorithm=alg)
        assert y.shape == tuple(torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b)).shape)
    X, W, B = fc.Tensor(x, requires_grad=True), fc.Tensor(w, requires_grad=True), fc.Tensor(b, requires_grad=True)
    NF.conv2d(X, W, B).sum().backward()
    assert X.grad.shape == x.shape and W.grad.shape == w.shape and np.array_equal(B.grad, np.zeros(4))
    with pytest.raises(ValueError, match="weight"):
        fc.conv2d(np.zeros((2, 3, 5, 5)), np.ones((0, 3, 3, 3)))          # no output channels: torch raises too


POOLS = [
    ("max_pool2d", lambda x: fc.max_pool2d(x, 2, return_indices=True)),
    ("avg_pool1d", lambda x: fc.avg_pool1d(x[..., 0, :], 2)),
    ("avg_pool3d", lambda x: fc.avg_pool3d(x[:, :, None], (1, 2, 2))),
    ("lp_pool2d", lambda x: fc.lp_pool2d(x, 2, 2)),
    ("adaptive_avg_pool2d", lambda x: fc.adaptive_avg_pool2d(x, 3)),
    ("adaptive_max_pool2d", lambda x: fc.adaptive_max_pool2d(x, 3, return_indices=True)),
    ("global_max_pool", lambda x: fc.global_max_pool(x, True)),
    ("global_avg_pool", lambda x: fc.global_avg_pool(x)),
    ("kmax_pool", lambda x: fc.kmax_pool(x, 2)),
    ("max_unpool2d", lambda x: fc.max_unpool2d(*fc.max_pool2d(x, 2, return_indices=True), 2)),
]


@pytest.mark.parametrize("name,pool", POOLS, ids=[p[0] for p in POOLS])
def test_pools_take_an_empty_batch(name, pool):
    """Every pool (and its gradient) with N = 0 returns empty results of the right shape, as torch does."""
    x = np.zeros((0, 3, 6, 6), np.float32)
    res = pool(x)
    for r in (res if isinstance(res, tuple) else (res,)):
        assert r.shape[0] == 0 and r.size == 0
    one = pool(np.ones((1, 3, 6, 6), np.float32))
    for r, o in zip(res if isinstance(res, tuple) else (res,), one if isinstance(one, tuple) else (one,)):
        assert r.shape[1:] == o.shape[1:]


def test_pool_gradients_take_an_empty_batch():
    e = np.zeros((0, 3, 3, 3))
    idx = np.zeros((0, 3, 3, 3), np.int64)
    assert G.max_pool_backward(e, idx, (0, 3, 6, 6)).shape == (0, 3, 6, 6)
    assert G.avg_pool2d_backward(e, (0, 3, 6, 6), 2).shape == (0, 3, 6, 6)
    assert G.lp_pool2d_backward(e, np.zeros((0, 3, 6, 6)), e, 2, 2).shape == (0, 3, 6, 6)
    assert G.adaptive_avg_pool2d_backward(e, (0, 3, 6, 6)).shape == (0, 3, 6, 6)
    assert G.global_avg_pool_backward(np.zeros((0, 3)), (0, 3, 6, 6)).shape == (0, 3, 6, 6)
    assert G.kmax_pool_backward(np.zeros((0, 3, 6, 2)), np.zeros((0, 3, 6, 2), int), (0, 3, 6, 6)).shape == \
        (0, 3, 6, 6)
    assert G.max_unpool_backward(np.zeros((0, 3, 6, 6)), idx).shape == (0, 3, 3, 3)
    with pytest.raises(ValueError, match="input_shape"):
        G.max_pool_backward(e, idx, (0, 3, 0, 6))            # only the batch may be empty


def test_zero_channels_in_pools_where_torch_takes_them():
    """torch: adaptive average pooling 1-D/2-D accept C = 0, every other pool refuses it."""
    assert fc.adaptive_avg_pool2d(np.zeros((2, 0, 6, 6)), 3).shape == (2, 0, 3, 3)
    assert fc.adaptive_avg_pool1d(np.zeros((2, 0, 6)), 3).shape == (2, 0, 3)
    for fn in (lambda x: fc.max_pool2d(x, 2), lambda x: fc.adaptive_avg_pool3d(x[:, :, None], 2),
               lambda x: fc.adaptive_max_pool2d(x, 2)):
        with pytest.raises(ValueError, match="input"):
            fn(np.zeros((2, 0, 6, 6)))


def test_a_model_trains_on_an_empty_batch():
    """Layers, flatten, losses and the optimiser step on N = 0: torch gives an empty output, NaN mean losses
    (0 / 0), zero gradients, and the step leaves the parameters alone."""
    fc.nn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6, 10), nn.Dropout(0.5))
    before = [p.data.copy() for p in model.parameters()]
    opt = nn.SGD(model.parameters(), lr=0.1)
    x = fc.Tensor(np.zeros((0, 1, 8, 8), np.float32), requires_grad=True)
    for loss_fn, target, value in ((NF.cross_entropy, np.zeros(0, np.int64), np.nan),
                                   (NF.mse_loss, np.zeros((0, 10), np.float32), np.nan),
                                   (lambda y, t: NF.cross_entropy(y, t, reduction="sum"), np.zeros(0, np.int64), 0.0)):
        opt.zero_grad()
        y = model(x)
        assert y.shape == (0, 10)
        with warnings.catch_warnings():
            warnings.simplefilter("error")        # no RuntimeWarning from 0 / 0 either
            loss = loss_fn(y, target)
            np.testing.assert_array_equal(loss.data, value)
            loss.backward()
        assert x.grad.shape == x.shape
        assert all(p.grad is not None and not p.grad.any() for p in model.parameters())
        opt.step()
    for p, b in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.data, b)


@pytest.mark.parametrize("name", ["BatchNorm1d", "BatchNorm2d", "InstanceNorm2d", "GroupNorm", "LayerNorm"])
def test_normalisation_layers_take_an_empty_batch(name):
    """torch: an empty output, zero gradients for weight and bias, running statistics left alone (the
    BatchNorm layer still counts the batch)."""
    torch = torch_or_skip()
    make = {"BatchNorm1d": lambda m: m.BatchNorm1d(3), "BatchNorm2d": lambda m: m.BatchNorm2d(3),
            "InstanceNorm2d": lambda m: m.InstanceNorm2d(3),     # torch's affine one fails on N = 0 (IndexError)
            "GroupNorm": lambda m: m.GroupNorm(1, 3), "LayerNorm": lambda m: m.LayerNorm(4)}[name]
    shape = (0, 3) if name == "BatchNorm1d" else (0, 3, 4, 4)
    ours, theirs = make(nn), make(torch.nn)
    x = fc.Tensor(np.zeros(shape, np.float32), requires_grad=True)
    tx = torch.zeros(shape, requires_grad=True)
    y, ty = ours(x), theirs(tx)
    y.sum().backward()
    ty.sum().backward()
    assert y.shape == tuple(ty.shape) and x.grad.shape == shape
    if theirs.weight is not None:
        np.testing.assert_array_equal(ours.weight.grad, theirs.weight.grad.numpy())
        np.testing.assert_array_equal(ours.bias.grad, theirs.bias.grad.numpy())
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        if hasattr(theirs, key) and getattr(theirs, key) is not None:
            np.testing.assert_array_equal(np.asarray(getattr(ours, key)), getattr(theirs, key).numpy())


def test_tensor_reductions_of_empty_tensors():
    t = fc.Tensor(np.zeros((0, 3)), requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = t.mean()
        assert np.isnan(m.data)
        m.backward()
    assert t.grad.shape == (0, 3)
    assert t.flatten().shape == (0,) and t.flatten(1).shape == (0, 3)


# ----------------------------------------------------------------------------------------------- 4. out= overlap
@pytest.mark.parametrize("make", ["memoryview", "torch"])
def test_out_overlapping_a_non_ndarray_input_is_rejected(make):
    """conv2d(memoryview(x), w, out=x) or a torch tensor sharing x's memory was accepted and gave errors up to
    1e19: the overlap is now checked on the arrays the kernel reads (the input, and the weight)."""
    wrap = memoryview if make == "memoryview" else torch_or_skip().from_numpy
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6))
    keep = x.copy()
    w = np.ones((2, 2, 1, 1))
    for fn in (fc.conv2d, fc.conv_transpose2d):
        with pytest.raises(ValueError, match="out"):
            fn(wrap(x), w, out=x)
    np.testing.assert_array_equal(x, keep)
    buf = np.ones(72)                         # the weight lives in the first 4 elements of out
    with pytest.raises(ValueError, match="out"):
        fc.conv2d(x, wrap(buf[:4].reshape(2, 2, 1, 1)), out=buf.reshape(1, 2, 6, 6))
    assert (buf == 1).all()


def test_out_may_share_memory_with_an_input_the_kernel_does_not_read():
    """The kernel reads the prepared operands: out= aliasing the caller's input is still refused (as before)."""
    buf = np.zeros((2, 6, 8, 8), np.float32)
    with pytest.raises(ValueError, match="out"):
        fc.conv2d(buf[:, :4], np.ones((6, 4, 1, 1), np.float32), out=buf)


# ----------------------------------------------------------------------------------------------- 5. versions
def test_optimizer_step_between_forward_and_backward_raises():
    """torch raises "modified by an inplace operation"; fastconv silently differentiated with the new values."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(18, 2))
    opt = nn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = fc.Tensor(np.random.default_rng(0).standard_normal((2, 1, 5, 5)).astype(np.float32))
    loss = NF.cross_entropy(model(x), np.array([0, 1]))
    loss.backward(retain_graph=True)
    opt.step()
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


@pytest.mark.parametrize("write", ["SGD", "Adam", "AdamW", "RMSprop", "setter", "augmented", "load_state_dict",
                                   "init", "vector_to_parameters", "increment_version"])
def test_every_parameter_write_bumps_the_version(write):
    layer = nn.Linear(3, 2)
    x = fc.Tensor(np.ones((4, 3), np.float32))
    y = layer(x).sum()
    v = layer.weight._version
    if write in ("SGD", "Adam", "AdamW", "RMSprop"):
        y.backward(retain_graph=True)
        getattr(nn, write)(layer.parameters(), lr=0.1).step()
    elif write == "vector_to_parameters":
        nn.utils.vector_to_parameters(np.zeros(8), layer.parameters())
    elif write == "setter":
        layer.weight.data = layer.weight.data * 2
    elif write == "augmented":
        layer.weight.data -= 1
    elif write == "load_state_dict":
        layer.load_state_dict({k: np.zeros(v_.shape) for k, v_ in layer.state_dict().items()})
    elif write == "init":
        nn.init.uniform_(layer.weight)
    else:
        layer.weight.increment_version()
    assert layer.weight._version > v
    with pytest.raises(RuntimeError, match="linear.*modified in place"):
        y.backward()


def test_writes_to_tensors_the_gradient_does_not_read_are_fine():
    """As in torch, changing a tensor whose value the recorded backward does not need (the bias of a layer, the
    operand of an addition) is not an error; the detached view shares the counter."""
    layer = nn.Conv2d(1, 2, 3)
    x = fc.Tensor(np.ones((1, 1, 4, 4), np.float32), requires_grad=True)
    y = (layer(x) + x.sum()).sum()
    layer.bias.data = layer.bias.data + 1
    y.backward()
    assert x.grad is not None
    d = layer.weight.detach()
    d.increment_version()
    assert layer.weight._version == d._version


# ----------------------------------------------------------------------------------------------- 6. the rest
def test_pow_gradient_at_zero_base_is_torchs():
    """d(a**b)/db at a = 0 was NaN (0 * log 0); torch: 0 for b >= 0.  d/da at b = 0 was NaN; torch: 0."""
    torch = torch_or_skip()
    a0, b0 = [0.0, 0.0, 2.0, 0.0, -1.0, 0.0, 3.0], [2.0, 0.0, 3.0, -1.0, 0.5, 0.5, 0.0]
    a, b = fc.Tensor(a0, requires_grad=True), fc.Tensor(b0, requires_grad=True)
    with np.errstate(divide="ignore", invalid="ignore"):       # 0 ** -1 and (-1) ** 0.5 in the forward pass
        (a ** b).sum().backward()
    ta = torch.tensor(a0, dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
    (ta ** tb).sum().backward()
    np.testing.assert_array_equal(a.grad, ta.grad.numpy())
    np.testing.assert_array_equal(b.grad, tb.grad.numpy())


@pytest.mark.parametrize("fn", ["cross_entropy", "nll_loss", "smoothed"])
def test_mean_loss_with_every_target_ignored(fn):
    """torch: the loss is NaN (0 / 0) and the gradient 0; fastconv's gradient was NaN.  Zero class weights on
    targets that count still give NaN gradients, as in torch."""
    torch = torch_or_skip()
    x0 = np.random.default_rng(0).standard_normal((3, 4))
    for target, weight in (([-100, -100, -100], None), ([-100, 2, -100], None), ([1, 2, 3], np.zeros(4))):
        x = fc.Tensor(x0, requires_grad=True)
        tx = torch.tensor(x0, requires_grad=True)
        tt = torch.tensor(target)
        tw = None if weight is None else torch.tensor(weight)
        if fn == "nll_loss":
            loss = NF.nll_loss(NF.log_softmax(x, 1), np.array(target), weight=weight)
            tl = torch.nn.functional.nll_loss(torch.log_softmax(tx, 1), tt, weight=tw)
        else:
            ls = 0.1 if fn == "smoothed" else 0.0
            loss = NF.cross_entropy(x, np.array(target), weight=weight, label_smoothing=ls)
            tl = torch.nn.functional.cross_entropy(tx, tt, weight=tw, label_smoothing=ls)
        with np.errstate(all="ignore"):
            loss.backward()
        tl.backward()
        np.testing.assert_allclose(loss.data, tl.item(), atol=1e-12)
        np.testing.assert_allclose(x.grad, tx.grad.numpy(), atol=1e-12)


def test_sum_and_mean_over_an_empty_dim_tuple_reduce_everything():
    a = np.arange(6.0).reshape(2, 3)
    for dim in ((), []):
        t = fc.Tensor(a, requires_grad=True)
        s = t.sum(dim=dim)
        assert s.shape == () and s.item() == 15
        s.backward()
        np.testing.assert_array_equal(t.grad, np.ones((2, 3)))
        assert fc.Tensor(a).mean(dim=dim).item() == 2.5


def test_probability_targets_refuse_ignore_index():
    x = np.zeros((2, 3))
    p = np.full((2, 3), 1 / 3)
    NF.cross_entropy(x, p)                                # the default ignore_index is fine
    with pytest.raises(ValueError, match="ignore_index"):
        NF.cross_entropy(x, p, ignore_index=1)


def test_no_grad_decorates_generators():
    """``@no_grad()`` on a generator function had no effect (the body runs after the decorator returned)."""
    w = fc.Tensor(np.ones(3), requires_grad=True)

    @fc.no_grad()
    def gen():
        for _ in range(2):
            got = yield (w * 2).requires_grad, fc.autograd.is_grad_enabled()
            assert got == "sent"

    g = gen()
    assert next(g) == (False, False)
    assert fc.autograd.is_grad_enabled()                           # the caller's mode between the yields
    assert g.send("sent") == (False, False)
    with pytest.raises(StopIteration):
        g.send("sent")

    @fc.autograd.enable_grad()
    def gen2():
        yield fc.autograd.is_grad_enabled()
    with fc.no_grad():
        assert list(gen2()) == [True]
    assert gen.__name__ == "gen"


def test_set_num_threads_refuses_counts_the_kernels_cannot_take():
    """set_num_threads(2**31) was accepted and every later call raised OverflowError."""
    n = fc.get_num_threads()
    for bad in (2 ** 31, 2 ** 40, fc._threads.MAX_THREADS + 1):
        with pytest.raises(ValueError, match="n"):
            fc.set_num_threads(bad)
        with pytest.raises(ValueError, match="n"):
            with fc.num_threads(bad):
                pass
    assert fc.get_num_threads() == n
    fc.max_pool2d(np.ones((1, 1, 4, 4)), 2)


def test_autotune_cache_file_holding_a_list_is_a_value_error(tmp_path):
    path = tmp_path / "cache.json"
    path.write_text(json.dumps(["not", "a", "mapping"]))
    try:
        with pytest.raises(ValueError, match="cache_file"):
            fc.autotune(True, cache_file=str(path))
    finally:
        fc.autotune(False)
        _autotune.clear_cache()


def test_auto_does_not_pick_an_algorithm_that_cannot_allocate(monkeypatch):
    """dilation 2**40: auto picked direct, whose row buffer cannot exist (MemoryError); toeplitz computes it.
    direct now declines the geometry, so auto picks another algorithm and naming direct is a ValueError."""
    for nd in (1, 2):
        shape, k = (1, 1) + (5,) * nd, (1, 1) + (2,) * nd
        kw = dict(dilation=2 ** 40, padding=2 ** 40, stride=2 ** 40)
        conv = getattr(fc, "conv%dd" % nd)
        y = conv(np.ones(shape), np.ones(k), **kw)
        np.testing.assert_allclose(y, conv(np.ones(shape), np.ones(k), algorithm="toeplitz", **kw), rtol=1e-12)
        with pytest.raises(ValueError, match="direct"):
            conv(np.ones(shape), np.ones(k), algorithm="direct", **kw)
    geom = fc.ConvGeometry.make((1, 1, 5), (1, 1, 2), 2 ** 40, 2 ** 40, 2 ** 40)
    assert not _algorithms.get("direct").supports(geom, np.float64, "forward")
    assert _algorithms.get("direct").supports(fc.ConvGeometry.make((1, 1, 5), (1, 1, 2)), np.float64, "forward")
    limit = fc.get_workspace_limit()
    fc.set_workspace_limit(8)                  # toeplitz declines too: a clear error, not a crash
    monkeypatch.setattr(_algorithms, "_registry", {n: _algorithms.get(n) for n in ("direct", "toeplitz", "fft")})
    monkeypatch.setattr(_algorithms, "_choice_cache", {})
    _algorithms.invalidate()
    try:
        with pytest.raises(ValueError, match="no registered algorithm can compute the forward"):
            fc.conv1d(np.ones((1, 1, 5)), np.ones((1, 1, 2)), dilation=2 ** 40, padding=2 ** 40, stride=2 ** 40)
    finally:
        fc.set_workspace_limit(limit)


def test_correlate_takes_bool_images_like_scipy():
    ndi = pytest.importorskip("scipy.ndimage")
    img = np.random.default_rng(0).random((12, 70)) > 0.6
    for w in (np.ones((3, 3)), np.array([[1.0, -1.0, 0.0]]), np.ones((9, 9)) - 0.5):
        for fn, peer in ((F.correlate, ndi.correlate), (F.convolve, ndi.convolve)):
            got = fn(img, w)
            want = peer(img, w)
            assert got.dtype == np.bool_
            np.testing.assert_array_equal(got, want)
    out = np.empty(img.shape, np.float64)
    np.testing.assert_array_equal(F.correlate(img, np.ones((3, 3)), out=out),
                                  ndi.correlate(img.astype(float), np.ones((3, 3))))


def test_separable_method_takes_one_dimensional_kernels():
    ndi = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(0).random(40)
    for w in ([1.0, 2.0, 3.0], [0.5], [1.0, 0.0, -1.0, 2.0]):
        np.testing.assert_allclose(F.correlate(x, w, method="separable"), ndi.correlate(x, w), atol=1e-12)
    img = np.random.default_rng(1).random((9, 70))
    np.testing.assert_allclose(F.correlate(img, np.ones((1, 5)), method="separable"),
                               ndi.correlate(img, np.ones((1, 5))), atol=1e-12)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.int32, np.int16])
def test_integer_max_pooling_is_exact(dtype):
    """int64 pooling ran in float64: values above 2**53 tied and the argmax indices were wrong.  Max pools compare
    the integers exactly and keep their dtype, as torch does."""
    big = 2 ** 60 if np.dtype(dtype).itemsize == 8 else np.iinfo(dtype).max - 10
    x = np.array([[[big + 1, big, 5, big + 3, big + 1, 7, 0, big + 2]]], dtype=dtype)
    vals, idx = fc.max_pool1d(x, 2, return_indices=True)
    assert vals.dtype == dtype
    np.testing.assert_array_equal(vals, [[[big + 1, big + 3, big + 1, big + 2]]])
    np.testing.assert_array_equal(idx, [[[0, 3, 4, 7]]])
    v2, i2 = fc.max_pool2d(x[:, :, None], (1, 2), return_indices=True)
    np.testing.assert_array_equal(i2[:, :, 0], idx)
    va, ia = fc.adaptive_max_pool1d(x, 4, return_indices=True)
    np.testing.assert_array_equal(ia, idx)
    vg, ig = fc.global_max_pool(x, True)
    assert ig[0, 0] == 3 and vg[0, 0] == big + 3 and vg.dtype == dtype
    vk, ik = fc.kmax_pool(x, 3)
    np.testing.assert_array_equal(vk, [[[big + 3, big + 2, big + 1]]])
    np.testing.assert_array_equal(ik, [[[3, 7, 0]]])
    if dtype == np.int64:
        torch = pytest.importorskip("torch")
        tv, ti = torch.nn.functional.max_pool1d(torch.tensor(x), 2, return_indices=True)
        np.testing.assert_array_equal(vals, tv.numpy())
        np.testing.assert_array_equal(idx, ti.numpy())


def test_integer_max_pooling_of_small_values_keeps_the_fast_path():
    x = np.arange(2 * 3 * 6 * 6).reshape(2, 3, 6, 6).astype(np.int32)
    vals, idx = fc.max_pool2d(x, 3, return_indices=True)
    want_v, want_i = ref.max_pool_nd(x, 3)
    assert vals.dtype == np.int32
    np.testing.assert_array_equal(vals, want_v)
    np.testing.assert_array_equal(idx, want_i)
