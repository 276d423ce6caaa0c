"""fastconv.nn: functional ops (gradcheck and torch parity), layers, state dicts, optimisers and the summary."""
from collections import OrderedDict

import numpy as np
import pytest

import fastconv
import fastconv.nn as nn
import fastconv.nn.functional as F
from fastconv import Tensor, gradcheck
from fastconv._algorithms import get as get_algorithm
from fastconv._geometry import ConvGeometry

import reference as ref

rng = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def one_thread():
    """The problems here are tiny and gradcheck calls each op hundreds of times: run the kernels on one thread
    (thread counts and determinism are covered by the kernels' own tests)."""
    with fastconv.num_threads(1):
        yield


def rand(*shape):
    return rng.standard_normal(shape)


def distinct(*shape):
    """Random values with no ties (max pools are only differentiable away from ties)."""
    return rng.permutation(np.prod(shape)).reshape(shape) / np.prod(shape) + 0.01 * rand(*shape)


def torch_grads(torch, fn, *arrays):
    """Run ``fn`` on float64 torch leaves; return (output, grads) after backward of sum(output * weights)."""
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    seed = np.random.default_rng(0).standard_normal(tuple(out.shape))
    (out * torch.tensor(seed)).sum().backward()
    return out.detach().numpy(), [t.grad.numpy() for t in ts], seed


def ours_grads(fn, *arrays, seed):
    ts = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    (out * seed).sum().backward()
    return out.data, [t.grad for t in ts]


def assert_same_as_torch(torch, ours, theirs, arrays, rtol=1e-9, atol=1e-10):
    t_out, t_grads, seed = torch_grads(torch, theirs, *arrays)
    o_out, o_grads = ours_grads(ours, *arrays, seed=seed)
    np.testing.assert_allclose(o_out, t_out, rtol=rtol, atol=atol)
    for og, tg in zip(o_grads, t_grads):
        np.testing.assert_allclose(og, tg, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------------------- convolution
CONV_CASES = [
    # (nd, x shape, w shape, kwargs)
    (2, (1, 2, 5, 4), (2, 1, 3, 2), dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)),
    (2, (1, 2, 4, 5), (2, 2, 2, 3), dict(padding="same", padding_mode="reflect")),
    (2, (2, 1, 4, 4), (2, 1, 3, 2), dict(padding=((1, 0), (2, 1)), padding_mode="circular", flip=True)),
    (1, (2, 2, 7), (3, 2, 4), dict(stride=2, padding=2, padding_mode="replicate")),
    (3, (1, 2, 2, 3, 3), (2, 1, 2, 2, 2), dict(stride=(1, 2, 1), padding=(1, 0, 1), groups=2)),
]


def _supported(alg, nd, xs, ws, kw):
    geom = ConvGeometry.make(xs, ws, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1),
                             kw.get("groups", 1))
    a = get_algorithm(alg)
    return all(a.implements(op) and a.supports(geom, np.float64, op) for op in ("forward", "grad_input",
                                                                               "grad_weight"))


@pytest.mark.parametrize("alg", fastconv.algorithms())
def test_conv_gradcheck_every_algorithm(alg):
    ran = 0
    for nd, xs, ws, kw in CONV_CASES:
        if not _supported(alg, nd, xs, ws, kw):
            continue
        conv = getattr(F, "conv%dd" % nd)
        assert gradcheck(lambda x, w, b: conv(x, w, b, algorithm=alg, **kw), [rand(*xs), rand(*ws), rand(ws[0])])
        ran += 1
    assert ran >= 2, "algorithm %r supports too few of the test geometries" % alg


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_conv_transpose_gradcheck(nd):
    xs = (1, 4) + (3, 3, 2)[:nd]
    ws = (4, 2) + (2, 3, 2)[:nd]
    conv_t = getattr(F, "conv_transpose%dd" % nd)
    kw = dict(stride=2, padding=1, output_padding=1, groups=1, dilation=1) if nd != 2 else \
        dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0), groups=2, dilation=(1, 2))
    assert gradcheck(lambda x, w, b: conv_t(x, w, b, **kw), [rand(*xs), rand(*ws), rand(ws[1] * kw["groups"])])


def test_conv_input_without_grad_skips_the_input_gradient():
    x = Tensor(rand(1, 2, 5, 5))
    w = Tensor(rand(3, 2, 3, 3), requires_grad=True)
    F.conv2d(x, w).sum().backward()
    assert x.grad is None
    np.testing.assert_allclose(w.grad, ref.conv_grad_weight_nd(x.data, np.ones((1, 3, 3, 3)), w.shape),
                               rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("nd, xs, ws, kw", [
    (2, (2, 4, 9, 7), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)),
    (2, (1, 3, 6, 6), (4, 3, 3, 3), dict(padding=1, padding_mode="reflect")),
    (1, (2, 3, 11), (5, 3, 4), dict(stride=3, padding=2, dilation=2)),
    (3, (1, 2, 5, 4, 6), (4, 2, 2, 3, 2), dict(stride=(1, 2, 2), padding=1)),
])
def test_conv_gradients_equal_torch(dtype, nd, xs, ws, kw):
    torch = pytest.importorskip("torch")
    tconv = getattr(torch.nn.functional, "conv%dd" % nd)
    conv = getattr(F, "conv%dd" % nd)
    x, w, b = rand(*xs).astype(dtype), rand(*ws).astype(dtype), rand(ws[0]).astype(dtype)
    tkw = dict(kw)
    mode = tkw.pop("padding_mode", "zeros")

    def theirs(x, w, b):
        if mode != "zeros":
            pad = [p for p in reversed(tkw.pop("padding") if isinstance(kw["padding"], tuple) else
                                       (kw["padding"],) * nd) for _ in (0, 1)]
            x = torch.nn.functional.pad(x, pad, mode=mode)
            tkw["padding"] = 0
        return tconv(x, w, b, **tkw)

    tol = dict(rtol=2e-4, atol=2e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-10)
    assert_same_as_torch(torch, lambda x, w, b: conv(x, w, b, **kw), theirs, [x, w, b], **tol)


def test_conv_transpose2d_gradients_equal_torch():
    torch = pytest.importorskip("torch")
    x, w, b = rand(2, 4, 5, 4), rand(4, 3, 3, 2), rand(6)
    kw = dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2, dilation=(1, 2))
    assert_same_as_torch(torch, lambda x, w, b: F.conv_transpose2d(x, w, b, **kw),
                         lambda x, w, b: torch.nn.functional.conv_transpose2d(x, w, b, **kw), [x, w, b])


# --------------------------------------------------------------------------------------------------- unshared / tiled
def test_locally_connected2d_matches_reference_and_gradcheck():
    x, w, b = rand(2, 2, 7, 6), rand(4, 4, 3, 2, 3, 2), rand(3, 4, 4)
    y = F.locally_connected2d(x, w, b, stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    np.testing.assert_allclose(y.data, ref.locally_connected2d(x, w, b, (2, 1), (1, 0), (1, 2)), rtol=1e-10,
                               atol=1e-12)
    assert gradcheck(lambda x, w, b: F.locally_connected2d(x, w, b, stride=(2, 1), padding=(1, 0),
                                                           dilation=(1, 2)), [x, w, b])


def test_locally_connected2d_with_equal_filters_is_a_convolution():
    x, k = rand(2, 3, 6, 5), rand(4, 3, 3, 3)
    w = np.broadcast_to(k, (4, 3) + k.shape).copy()                 # every position has the same filters
    np.testing.assert_allclose(F.locally_connected2d(x, w).data, fastconv.conv2d(x, k), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("tile, kw", [((2, 3), dict(stride=1, padding=1)),
                                      ((3, 2), dict(stride=(2, 1), padding=(2, 1), dilation=(1, 2))),
                                      ((1, 2), dict(stride=2))])
def test_tiled_conv2d_matches_reference_and_gradcheck(tile, kw):
    x, w, b = rand(1, 2, 7, 6), rand(*tile, 2, 2, 2, 2), rand(2)
    y = F.tiled_conv2d(x, w, b, **kw)
    np.testing.assert_allclose(y.data, ref.tiled_conv2d(x, w, b, kw.get("stride", 1), kw.get("padding", 0),
                                                        kw.get("dilation", 1)), rtol=1e-10, atol=1e-12)
    assert gradcheck(lambda x, w, b: F.tiled_conv2d(x, w, b, **kw), [x, w, b])


def test_tiled_conv2d_limits():
    x, k, b = rand(2, 3, 7, 6), rand(4, 3, 3, 2), rand(4)
    # t = 1: ordinary convolution
    np.testing.assert_allclose(F.tiled_conv2d(x, k[None, None], b, stride=2, padding=1).data,
                               fastconv.conv2d(x, k, b, stride=2, padding=1), rtol=1e-10, atol=1e-12)
    # t = the output size: a locally connected layer
    w = rand(5, 5, 4, 3, 3, 2)
    np.testing.assert_allclose(F.tiled_conv2d(x, w).data, F.locally_connected2d(x, w).data, rtol=1e-10,
                               atol=1e-12)


# --------------------------------------------------------------------------------------------------- pooling
POOLS = {
    "max_pool1d": (lambda x: F.max_pool1d(x, 3, 2, padding=1, dilation=2, ceil_mode=True), (1, 3, 11)),
    "max_pool2d": (lambda x: F.max_pool2d(x, (3, 2), stride=(2, 1), padding=1), (1, 2, 7, 6)),
    "max_pool3d": (lambda x: F.max_pool3d(x, 2, ceil_mode=True), (1, 1, 3, 5, 4)),
    "avg_pool1d": (lambda x: F.avg_pool1d(x, 4, 3, padding=2, ceil_mode=True, count_include_pad=False), (1, 2, 10)),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, (3, 2), stride=2, padding=1, divisor_override=5), (1, 2, 7, 6)),
    "avg_pool3d": (lambda x: F.avg_pool3d(x, (2, 3, 2), stride=1, padding=(1, 1, 0)), (1, 1, 3, 4, 3)),
    "lp_pool1d": (lambda x: F.lp_pool1d(x, 3.0, 3, 2), (1, 2, 9)),
    "lp_pool2d": (lambda x: F.lp_pool2d(x, 2.0, (2, 3), stride=(2, 1), ceil_mode=True), (1, 2, 5, 6)),
    "adaptive_avg_pool1d": (lambda x: F.adaptive_avg_pool1d(x, 4), (1, 2, 9)),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, (3, None)), (1, 2, 7, 5)),
    "adaptive_avg_pool3d": (lambda x: F.adaptive_avg_pool3d(x, 2), (1, 1, 3, 5, 4)),
    "adaptive_max_pool1d": (lambda x: F.adaptive_max_pool1d(x, 3), (1, 2, 8)),
    "adaptive_max_pool2d": (lambda x: F.adaptive_max_pool2d(x, (2, 3)), (1, 2, 7, 5)),
    "adaptive_max_pool3d": (lambda x: F.adaptive_max_pool3d(x, (1, 2, 2)), (1, 1, 3, 5, 4)),
    "global_max_pool": (lambda x: F.global_max_pool(x), (2, 2, 3, 4)),
    "global_avg_pool": (lambda x: F.global_avg_pool(x), (2, 2, 3, 4)),
    "kmax_pool": (lambda x: F.kmax_pool(x, 3, dim=2, sorted=False), (1, 3, 6, 2)),
    "kmax_pool_sorted": (lambda x: F.kmax_pool(x, 2, sorted=True), (2, 3, 5)),
}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_pool_gradcheck(name):
    fn, shape = POOLS[name]
    x = distinct(*shape)
    if name.startswith("lp"):
        x = np.abs(x) + 0.1
    assert gradcheck(fn, [x])


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_unpool_gradcheck(nd):
    x = distinct(*((2, 2) + (6, 4, 4)[:nd]))
    y, idx = getattr(F, "max_pool%dd" % nd)(Tensor(x), 2, return_indices=True)
    assert gradcheck(lambda v: getattr(F, "max_unpool%dd" % nd)(v, idx, 2), [y.data])


def test_max_pool_backward_uses_the_recorded_argmax():
    x = Tensor(distinct(1, 1, 4, 4), requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    x.data[...] = 0.0                               # changing the data after forward must not move the gradient
    y.sum().backward()
    assert x.grad.sum() == 4 and np.array_equal(np.flatnonzero(x.grad.ravel()), np.sort(idx.ravel()))


def test_pools_equal_torch():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    x = distinct(2, 3, 9, 8)
    cases = [
        (lambda v: F.max_pool2d(v, (3, 2), (2, 1), 1, (1, 2), True),
         lambda v: tf.max_pool2d(v, (3, 2), (2, 1), 1, (1, 2), True)),
        (lambda v: F.avg_pool2d(v, 3, 2, 1, True, False), lambda v: tf.avg_pool2d(v, 3, 2, 1, True, False)),
        (lambda v: F.avg_pool2d(v, (2, 3), divisor_override=4), lambda v: tf.avg_pool2d(v, (2, 3), divisor_override=4)),
        (lambda v: F.lp_pool2d(v, 2.0, 3, 2), lambda v: tf.lp_pool2d(v, 2.0, 3, 2)),
        (lambda v: F.adaptive_avg_pool2d(v, (4, 3)), lambda v: tf.adaptive_avg_pool2d(v, (4, 3))),
        (lambda v: F.adaptive_max_pool2d(v, (4, 3)), lambda v: tf.adaptive_max_pool2d(v, (4, 3))),
        (lambda v: F.max_pool1d(v.reshape(2, 3, 72), 4, 3), lambda v: tf.max_pool1d(v.reshape(2, 3, 72), 4, 3)),
        (lambda v: F.avg_pool3d(v.reshape(2, 3, 3, 3, 8), 2, padding=1),
         lambda v: tf.avg_pool3d(v.reshape(2, 3, 3, 3, 8), 2, padding=1)),
        (lambda v: F.global_max_pool(v), lambda v: v.amax(dim=(2, 3))),
        (lambda v: F.global_avg_pool(v), lambda v: v.mean(dim=(2, 3))),
        (lambda v: F.kmax_pool(v, 3, dim=3)[0], lambda v: torch.topk(v, 3, dim=3)[0]),
    ]
    for ours, theirs in cases:
        assert_same_as_torch(torch, ours, theirs, [np.abs(x) + 0.1])

    y, idx = F.max_pool2d(Tensor(x), 2, return_indices=True)
    ty, tidx = tf.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(idx, tidx.numpy())
    assert_same_as_torch(torch, lambda v: F.max_unpool2d(v, idx, 2, output_size=(9, 8)),
                         lambda v: tf.max_unpool2d(v, tidx, 2, output_size=(9, 8)), [y.data])


# --------------------------------------------------------------------------------------------------- dense, losses
def test_linear_dropout_flatten_gradcheck():
    assert gradcheck(lambda x, w, b: F.linear(x, w, b), [rand(2, 3, 4), rand(5, 4), rand(5)])
    assert gradcheck(lambda x, w: F.linear(x, w), [rand(4), rand(2, 4)])
    gen = np.random.default_rng(3)
    assert gradcheck(lambda x: F.dropout(x, 0.3, generator=np.random.default_rng(3)), [rand(4, 5)])
    assert gradcheck(lambda x: F.flatten(x, 1, 2) * np.arange(12.0)[:, None], [rand(2, 3, 4, 2)])
    y = F.dropout(Tensor(np.ones((200, 50))), 0.25, generator=gen).data
    assert set(np.unique(y)) <= {0.0, 1 / 0.75} and abs((y == 0).mean() - 0.25) < 0.02
    x = Tensor(np.ones(5))
    assert F.dropout(x, 0.5, training=False) is x


def test_small_linear_products_restore_the_blas_thread_count():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [d["num_threads"] for d in threadpoolctl.threadpool_info() if d["user_api"] == "blas"]
    before = blas_threads()
    x, w = Tensor(rand(8, 5), requires_grad=True), Tensor(rand(3, 5), requires_grad=True)
    y = F.linear(x, w)
    y.sum().backward()
    np.testing.assert_allclose(y.data, x.data @ w.data.T, rtol=1e-12)
    np.testing.assert_allclose(x.grad, np.ones((8, 3)) @ w.data, rtol=1e-12)
    assert blas_threads() == before


def test_linear_equals_torch():
    torch = pytest.importorskip("torch")
    assert_same_as_torch(torch, F.linear, torch.nn.functional.linear, [rand(3, 2, 6), rand(4, 6), rand(4)])


CE_CASES = [
    dict(),
    dict(weight=np.array([0.2, 1.0, 3.0, 0.5])),
    dict(ignore_index=2),
    dict(weight=np.array([0.2, 1.0, 3.0, 0.5]), label_smoothing=0.2, ignore_index=1),
    dict(reduction="sum", label_smoothing=0.1),
    dict(reduction="none", weight=np.array([0.2, 1.0, 3.0, 0.5])),
]


@pytest.mark.parametrize("kw", CE_CASES)
@pytest.mark.parametrize("spatial", [False, True])
def test_cross_entropy_equals_torch_and_gradcheck(kw, spatial):
    torch = pytest.importorskip("torch")
    shape, tshape = ((3, 4, 2, 3), (3, 2, 3)) if spatial else ((5, 4), (5,))
    x = rand(*shape)
    t = np.random.default_rng(1).integers(0, 4, tshape)
    tkw = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    assert_same_as_torch(torch, lambda v: F.cross_entropy(v, t, **kw),
                         lambda v: torch.nn.functional.cross_entropy(v, torch.tensor(t), **tkw), [x])
    assert gradcheck(lambda v: F.cross_entropy(v, t, **kw), [x])


def test_cross_entropy_probability_targets_and_nll_equal_torch():
    torch = pytest.importorskip("torch")
    x = rand(4, 5)
    p = np.random.default_rng(2).dirichlet(np.ones(5), size=4)
    w = np.linspace(0.5, 2.0, 5)
    assert_same_as_torch(torch, lambda v: F.cross_entropy(v, p, weight=w, label_smoothing=0.1),
                         lambda v: torch.nn.functional.cross_entropy(v, torch.tensor(p), weight=torch.tensor(w),
                                                                     label_smoothing=0.1), [x])
    t = np.array([0, 4, 2, 2])
    assert_same_as_torch(torch, lambda v: F.nll_loss(v.log_softmax(1), t, weight=w),
                         lambda v: torch.nn.functional.nll_loss(v.log_softmax(1), torch.tensor(t),
                                                                weight=torch.tensor(w)), [x])
    assert_same_as_torch(torch, lambda a, b: F.mse_loss(a, b), torch.nn.functional.mse_loss, [x, rand(4, 5)])
    assert_same_as_torch(torch, lambda a, b: F.mse_loss(a, b, reduction="sum"),
                         lambda a, b: torch.nn.functional.mse_loss(a, b, reduction="sum"), [x, rand(4, 5)])


def test_functional_argument_errors():
    with pytest.raises(ValueError, match="cross_entropy.*target"):
        F.cross_entropy(rand(3, 4), np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="cross_entropy.*shape"):
        F.cross_entropy(rand(3, 4), np.array([0, 1]))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(rand(3, 4), np.array([0, 1, 2]), reduction="avg")
    with pytest.raises(ValueError, match="linear.*features"):
        F.linear(rand(2, 3), rand(4, 5))
    with pytest.raises(ValueError, match="mse_loss.*same shape"):
        F.mse_loss(rand(2, 3), rand(3, 2))
    with pytest.raises(ValueError, match="dropout.*'p'"):
        F.dropout(rand(3), 1.5)
    with pytest.raises(ValueError, match="locally_connected2d.*output positions"):
        F.locally_connected2d(rand(1, 2, 6, 6), rand(3, 3, 2, 2, 3, 3))
    with pytest.raises(ValueError, match="conv2d.*groups"):
        F.conv2d(rand(1, 3, 5, 5), rand(2, 1, 3, 3), groups=2)
    with pytest.raises(TypeError):
        F.conv2d(rand(1, 3, 5, 5), rand(2, 3, 3, 3), algorithm=3)


# --------------------------------------------------------------------------------------------------- layers
def make_net(m):
    """The same network in fastconv.nn or torch.nn (``m``), nested modules and every kind of weight layer."""
    class Net(m.Module):
        def __init__(self):
            super().__init__()
            self.features = m.Sequential(OrderedDict([
                ("conv1", m.Conv2d(3, 8, (3, 2), stride=(2, 1), padding=1, padding_mode="reflect")),
                ("act1", m.ReLU()),
                ("pool1", m.MaxPool2d(2, ceil_mode=True)),
                ("conv2", m.Conv2d(8, 8, 3, padding="same", dilation=2, groups=2)),
                ("act2", m.Tanh()),
            ]))
            self.up = m.ConvTranspose2d(8, 4, 2, stride=2, bias=False)
            self.pool = m.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)
            self.head = m.Sequential(m.Flatten(), m.Linear(4 * 4 * 6, 16), m.Sigmoid(), m.Dropout(0.5),
                                     m.Linear(16, 5))

        def forward(self, x):
            return self.head(self.pool(self.up(self.features(x))))
    return Net()


def test_state_dict_keys_and_layouts_match_torch_and_weights_load():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    theirs = make_net(torch.nn).double()
    ours = make_net(nn).double()
    t_state = theirs.state_dict()
    assert list(ours.state_dict()) == list(t_state)
    assert all(ours.state_dict()[k].shape == tuple(v.shape) for k, v in t_state.items())
    ours.load_state_dict(t_state)
    ours.eval()
    theirs.eval()

    x = rand(2, 3, 13, 11)
    target = np.array([1, 4])
    out = ours(Tensor(x))
    loss = F.cross_entropy(out, target)
    loss.backward()
    t_out = theirs(torch.tensor(x))
    t_loss = torch.nn.functional.cross_entropy(t_out, torch.tensor(target))
    t_loss.backward()
    np.testing.assert_allclose(out.data, t_out.detach().numpy(), rtol=1e-10, atol=1e-12)
    t_params = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(t_params)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, t_params[name].grad.numpy(), rtol=1e-8, atol=1e-12, err_msg=name)

    # and back: our weights load into torch
    theirs2 = make_net(torch.nn).double()
    theirs2.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    theirs2.eval()
    np.testing.assert_allclose(theirs2(torch.tensor(x)).detach().numpy(), out.data, rtol=1e-10, atol=1e-12)


def test_float32_network_matches_torch():
    torch = pytest.importorskip("torch")
    theirs = make_net(torch.nn).eval()
    ours = make_net(nn).eval()
    ours.load_state_dict(theirs.state_dict())
    assert all(p.dtype == np.float32 for p in ours.parameters())
    x = rand(2, 3, 13, 11).astype(np.float32)
    out = ours(Tensor(x))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.data, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_load_state_dict_errors_and_non_strict():
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    state = net.state_dict()
    bad = dict(state, **{"0.weight": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="0.weight.*shape"):
        net.load_state_dict(bad)
    partial = {k: v for k, v in state.items() if k != "2.bias"}
    partial["extra"] = np.zeros(1)
    with pytest.raises(ValueError, match="missing keys.*2.bias"):
        net.load_state_dict(partial)
    missing, unexpected = net.load_state_dict(partial, strict=False)
    assert missing == ["2.bias"] and unexpected == ["extra"]
    state["0.weight"][...] = 0.0                        # state_dict returns copies
    assert np.any(net[0].weight.data != 0)


def test_module_registration_modes_and_helpers():
    lin = nn.Linear(4, 4)
    net = nn.Sequential(lin, nn.Dropout(0.5), lin)     # shared layer
    assert len(net) == 3 and net[0] is lin and isinstance(net[1:], nn.Sequential)
    assert [n for n, _ in net.named_parameters()] == ["0.weight", "0.bias"]
    assert list(net.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert net.training and all(m.training for m in net.modules())
    net.eval()
    assert not any(m.training for m in net.modules())
    x = Tensor(np.ones((2, 4), np.float32))
    np.testing.assert_array_equal(net(x).data, net(x).data)          # dropout off in eval
    net.train()
    net(x).sum().backward()
    assert lin.weight.grad is not None
    net.zero_grad()
    assert lin.weight.grad is None
    net.double()
    assert lin.weight.dtype == np.float64
    lin.bias = None
    assert "bias" not in dict(lin.named_parameters())
    with pytest.raises(TypeError):
        lin.weight = np.zeros((4, 4))
    assert "Linear(in_features=4, out_features=4" in repr(net)
    calls = []
    h = lin.register_forward_hook(lambda m, args, out: calls.append(out.shape))
    net(x.double())
    h.remove()
    net(x.double())
    assert calls == [(2, 4), (2, 4)]


def test_default_initialisation_is_kaiming_uniform():
    nn.manual_seed(0)
    conv = nn.Conv2d(8, 16, (3, 5))
    bound = 1 / np.sqrt(8 * 15)
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.weight.data).max() > 0.95 * bound
    assert np.abs(conv.bias.data).max() <= bound
    np.testing.assert_allclose(conv.weight.data.std(), bound / np.sqrt(3), rtol=0.1)
    convt = nn.ConvTranspose2d(4, 6, 3)                 # torch: fan_in from weight.shape[1] = out channels
    assert np.abs(convt.weight.data).max() <= 1 / np.sqrt(6 * 9)
    lc = nn.LocallyConnected2d(2, 3, (5, 5), 3)
    assert np.abs(lc.weight.data).max() <= 1 / np.sqrt(2 * 9) and lc.weight.shape == (3, 3, 3, 2, 3, 3)
    nn.manual_seed(5)
    a = nn.Linear(10, 10).weight.data.copy()
    nn.manual_seed(5)
    np.testing.assert_array_equal(a, nn.Linear(10, 10).weight.data)


def test_layer_constructor_errors():
    with pytest.raises(ValueError, match="Conv2d.*groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(TypeError, match="kernel_size"):
        nn.Conv2d(3, 4, 2.5)
    with pytest.raises(ValueError, match="Linear.*in_features"):
        nn.Linear(0, 3)
    with pytest.raises(TypeError, match="MaxPool2d.*kernel_size"):
        nn.MaxPool2d()
    with pytest.raises(ValueError, match="Dropout"):
        nn.Dropout(2.0)


def test_every_layer_runs_forward_and_backward():
    x2 = Tensor(distinct(2, 4, 9, 8), requires_grad=True)
    layers = [
        nn.Conv2d(4, 6, 3, padding=1), nn.ConvTranspose2d(4, 2, 3, stride=2), nn.MaxPool2d(2),
        nn.AvgPool2d(3, 2, 1), nn.LpPool2d(2, 2), nn.AdaptiveAvgPool2d((3, 2)), nn.AdaptiveMaxPool2d(2),
        nn.GlobalAvgPool2d(), nn.GlobalMaxPool2d(), nn.LocallyConnected2d(4, 3, (9, 8), 3, stride=2),
        nn.TiledConv2d(4, 3, 3, tile_size=2, padding=1), nn.ReLU(), nn.Sigmoid(), nn.Tanh(), nn.Flatten(),
        nn.Dropout(0.1), nn.Softmax(1), nn.LogSoftmax(1), nn.Identity(),
    ]
    for layer in layers:
        x2.grad = None
        inp = Tensor(np.abs(x2.data) + 0.1, requires_grad=True) if isinstance(layer, nn.LpPool2d) else x2
        y = layer(inp.astype(np.float32))
        assert y.dtype == np.float32, type(layer).__name__
        (y * y).sum().backward()
        assert inp.grad is not None and inp.grad.shape == inp.shape, type(layer).__name__
    x1 = Tensor(rand(2, 3, 10).astype(np.float32))
    x3 = Tensor(rand(1, 2, 4, 5, 6).astype(np.float32))
    assert nn.Conv1d(3, 4, 3)(x1).shape == (2, 4, 8) and nn.MaxPool1d(2)(x1).shape == (2, 3, 5)
    assert nn.Conv3d(2, 3, 2)(x3).shape == (1, 3, 3, 4, 5) and nn.AvgPool3d(2)(x3).shape == (1, 2, 2, 2, 3)
    assert nn.ConvTranspose1d(3, 2, 2, stride=2)(x1).shape == (2, 2, 20)
    assert nn.KMaxPool(3)(x1).shape == (2, 3, 3)
    pooled, idx = nn.MaxPool2d(2, return_indices=True)(x2)
    assert nn.MaxUnpool2d(2)(pooled, idx, output_size=(9, 8)).shape == x2.shape
    t = np.array([0, 3])
    logits = Tensor(rand(2, 5))
    np.testing.assert_allclose(nn.CrossEntropyLoss()(logits, t).data, F.cross_entropy(logits, t).data)
    np.testing.assert_allclose(nn.MSELoss(reduction="sum")(logits, logits * 2.0).data, (logits.data ** 2).sum())
    np.testing.assert_allclose(nn.NLLLoss()(logits.log_softmax(1), t).data, F.cross_entropy(logits, t).data)


def test_locally_connected_and_tiled_layers_gradcheck():
    lc = nn.LocallyConnected2d(2, 3, (5, 4), (2, 3), padding=1).double()
    tc = nn.TiledConv2d(2, 3, (2, 3), tile_size=(2, 2), stride=(1, 2)).double()
    for layer in (lc, tc):
        assert gradcheck(lambda x, w, b: type(layer).forward(_with(layer, w, b), x),
                         [rand(2, 2, 5, 4), layer.weight.data.copy(), layer.bias.data.copy()])


def _with(layer, w, b):
    """``layer`` with its weight and bias replaced by the given Tensors (for gradcheck through a module)."""
    layer.__dict__["_parameters"] = OrderedDict(weight=w, bias=b)
    return layer


# --------------------------------------------------------------------------------------------------- optimisers
@pytest.mark.parametrize("name, kw", [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.9), weight_decay=0.1, amsgrad=True)),
])
def test_optimisers_follow_torch(name, kw):
    torch = pytest.importorskip("torch")
    p0 = rand(3, 4)
    ours = nn.Parameter(p0)
    theirs = torch.nn.Parameter(torch.tensor(p0))
    opt = getattr(nn, name)([ours], **kw)
    topt = getattr(torch.optim, name)([theirs], **kw)
    for step in range(6):
        g = np.sin(3 * ours.data) + 0.1 * step       # a gradient that depends on the current parameters
        ours.grad = g.copy()
        theirs.grad = torch.tensor(g)
        opt.step()
        topt.step()
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)
    opt.zero_grad()
    assert ours.grad is None


def test_optimiser_param_groups_and_errors():
    a, b = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2))
    opt = nn.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    a.grad, b.grad = np.ones(2), np.ones(2)
    opt.step()
    np.testing.assert_allclose(a.data, 0.9)
    np.testing.assert_allclose(b.data, 0.0)
    with pytest.raises(ValueError, match="lr"):
        nn.Adam([a], lr=-1.0)
    with pytest.raises(ValueError, match="nesterov"):
        nn.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(TypeError, match="leaf"):
        nn.SGD([Tensor(np.ones(2), requires_grad=True) * 2], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        nn.Adam([])


# --------------------------------------------------------------------------------------------------- summary
def test_summary_of_lenet5(capsys):
    from fastconv.examples.digits import lenet5
    s = nn.summary(lenet5(32), (1, 1, 32, 32))
    printed = capsys.readouterr().out
    assert "total params: 61,706" in printed and "receptive field" in printed
    assert [r["params"] for r in s] == [156, 0, 0, 2416, 0, 0, 0, 48120, 0, 10164, 0, 850]
    assert s.total_params == 61706 == s.trainable_params
    mults = [r["multiplies"] for r in s]
    assert mults[0] == 6 * 25 * 28 * 28 and mults[3] == 16 * 6 * 25 * 10 * 10 and mults[7] == 400 * 120
    assert s.total_multiplies == sum(mults)
    assert [r["output_shape"] for r in s][:6] == [(1, 6, 28, 28)] * 2 + [(1, 6, 14, 14), (1, 16, 10, 10),
                                                                         (1, 16, 10, 10), (1, 16, 5, 5)]
    assert [r["receptive_field"][0] for r in s][:6] == [5, 5, 6, 14, 14, 16]
    assert [r["jump"][0] for r in s][:6] == [1, 1, 2, 2, 2, 4]
    assert s[7]["receptive_field"] == (32, 32)          # a Linear after Flatten sees the whole input
    assert s.output_shape == (1, 10)


def test_summary_numbers_come_from_the_geometry():
    model = nn.Sequential(
        nn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=1),
        nn.LocallyConnected2d(8, 4, (8, 7), 3, stride=2),
        nn.TiledConv2d(4, 6, 2, tile_size=(2, 1), padding=1),
        nn.ConvTranspose2d(6, 2, 3, stride=2),
        nn.MaxPool2d(3, stride=2, dilation=2, padding=1),
        nn.GlobalAvgPool2d(),
        nn.Flatten(),
        nn.Linear(2, 3, bias=False),
    )
    s = nn.summary(model, (2, 3, 16, 11), print_=False)
    layers = list(model)
    for row, layer in zip(s, layers):
        assert row["params"] == sum(p.size for p in layer.parameters()), row["type"]
    g0 = layers[0].geometry((2, 3, 16, 11))
    assert s[0]["multiplies"] == g0.multiplies == 2 * 8 * 3 * 15 * np.prod(g0.output_size)
    assert s[0]["output_shape"] == g0.output_shape == (2, 8, 8, 7)
    assert s[1]["multiplies"] == layers[1].geometry((2, 8, 8, 7)).multiplies
    assert s[0]["receptive_field"] == (3, 9) and s[0]["jump"] == (2, 1)
    assert s[1]["receptive_field"] == (3 + 2 * 2, 9 + 2 * 1) and s[1]["jump"] == (4, 2)
    assert s[5]["output_shape"] == (2, 2, 1, 1) and s[6]["output_shape"] == (2, 2) and s[7]["output_shape"] == (2, 3)
    assert "total multiplications" in str(s)
