"""Tape ops (fastconv.ops), activations, normalisation and resampling: gradcheck and torch parity for each.

Every case runs the same function through fastconv and torch on float64 data: values and the gradients of
``sum(out * seed)`` for every input must agree to 1e-10 (float32 inputs to 1e-5 relative), and fastconv's backward
must pass ``gradcheck`` (central differences).
"""
import numpy as np
import pytest

import fastconv
import fastconv.nn as nn
import fastconv.nn.functional as F
from fastconv import Tensor, gradcheck

rng = np.random.default_rng(17)


def rand(*shape):
    return rng.standard_normal(shape)


def away_from(values, *shape, gap=0.05):
    """Random values no closer than ``gap`` to any of ``values`` (kinks of the function under test)."""
    x = rand(*shape) * 2
    for v in values:
        near = np.abs(x - v) < gap
        x[near] = v + np.where(x[near] >= v, gap, -gap) * 2
    return x


def distinct(*shape):
    return (rng.permutation(int(np.prod(shape))).reshape(shape) + 0.1 * rng.random(shape)) / 3


def run_torch(torch, fn, arrays, seed):
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    (out * torch.tensor(seed, dtype=out.dtype)).sum().backward()
    return out.detach().numpy(), [t.grad.numpy() if t.grad is not None else np.zeros(t.shape) for t in ts]


def run_ours(fn, arrays, seed):
    ts = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    (out * Tensor(seed.astype(out.dtype))).sum().backward()
    return out.data, [t.grad if t.grad is not None else np.zeros(t.shape) for t in ts]


def check_torch(ours, theirs, arrays, rtol=1e-10, atol=1e-10):
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(a) for a in arrays]
    shape = tuple(theirs(*ts).shape)
    seed = np.random.default_rng(0).standard_normal(shape)
    t_out, t_grads = run_torch(torch, theirs, arrays, seed)
    o_out, o_grads = run_ours(ours, arrays, seed)
    assert o_out.shape == t_out.shape and o_out.dtype == t_out.dtype
    np.testing.assert_allclose(o_out, t_out, rtol=rtol, atol=atol)
    for o, t in zip(o_grads, t_grads):
        np.testing.assert_allclose(o, t, rtol=rtol, atol=atol)


def T():
    return pytest.importorskip("torch")


# One row per op: (id, ours, theirs(torch), input arrays).  Each row is gradchecked and compared with torch.
def _cases():
    torch_f = "torch.nn.functional"
    x4 = rand(2, 3, 4, 5)
    return [
        ("cat", lambda a, b, c: fastconv.cat([a, b, c], 1), lambda a, b, c: T().cat([a, b, c], 1),
         [rand(2, 1, 3), rand(2, 2, 3), rand(2, 3, 3)]),
        ("cat-neg-dim", lambda a, b: fastconv.cat((a, b), -1), lambda a, b: T().cat((a, b), -1),
         [rand(2, 3), rand(2, 1)]),
        ("stack", lambda a, b: fastconv.stack([a, b], 1), lambda a, b: T().stack([a, b], 1),
         [rand(2, 3), rand(2, 3)]),
        ("split", lambda a: fastconv.cat([p * (i + 1) for i, p in enumerate(fastconv.split(a, 2, 1))], 1),
         lambda a: T().cat([p * (i + 1) for i, p in enumerate(T().split(a, 2, 1))], 1), [rand(2, 5, 2)]),
        ("split-sections", lambda a: fastconv.cat([p * (i + 1) for i, p in enumerate(a.split([1, 3], 0))], 0),
         lambda a: T().cat([p * (i + 1) for i, p in enumerate(a.split([1, 3], 0))], 0), [rand(4, 2)]),
        ("chunk", lambda a: fastconv.cat([p * (i + 1) for i, p in enumerate(a.chunk(3, 1))], 1),
         lambda a: T().cat([p * (i + 1) for i, p in enumerate(a.chunk(3, 1))], 1), [rand(2, 5)]),
        ("max-dim", lambda a: fastconv.max(a, 1).values, lambda a: T().max(a, 1).values, [distinct(3, 4, 2)]),
        ("max-dim-keepdim", lambda a: a.max(-1, keepdim=True)[0], lambda a: a.max(-1, keepdim=True)[0],
         [distinct(3, 4)]),
        ("max-all", lambda a: a.max() * 1, lambda a: a.max() * 1, [distinct(3, 4)]),
        ("min-dim", lambda a: fastconv.min(a, 0).values, lambda a: T().min(a, 0).values, [distinct(3, 4)]),
        ("min-all", lambda a: fastconv.min(a) * 1, lambda a: T().min(a) * 1, [distinct(2, 3)]),
        ("abs", lambda a: fastconv.abs(a), lambda a: T().abs(a), [away_from([0], 3, 4)]),
        ("abs-op", lambda a: abs(a), lambda a: abs(a), [away_from([0], 5)]),
        ("sqrt", lambda a: fastconv.sqrt(a), lambda a: T().sqrt(a), [np.abs(rand(3, 4)) + 0.5]),
        ("clamp", lambda a: fastconv.clamp(a, -0.5, 0.7), lambda a: T().clamp(a, -0.5, 0.7),
         [away_from([-0.5, 0.7], 4, 5)]),
        ("clamp-min", lambda a: a.clamp(min=0.1), lambda a: a.clamp(min=0.1), [away_from([0.1], 4, 5)]),
        ("clamp-tensor-bounds", lambda a, lo, hi: fastconv.clamp(a, lo, hi), lambda a, lo, hi: T().clamp(a, lo, hi),
         [away_from([0], 3, 4), -np.abs(rand(3, 4)) - 0.2, np.abs(rand(3, 4)) + 0.2]),
        ("where", lambda a, b: fastconv.where(MASK, a, b), lambda a, b: T().where(T().tensor(MASK), a, b),
         [rand(3, 4), rand(1, 4)]),
        ("squeeze", lambda a: fastconv.squeeze(a) * 2, lambda a: T().squeeze(a) * 2, [rand(1, 3, 1, 2)]),
        ("squeeze-dim", lambda a: a.squeeze(2) * 2, lambda a: a.squeeze(2) * 2, [rand(1, 3, 1, 2)]),
        ("unsqueeze", lambda a: fastconv.unsqueeze(a, -1) * 2, lambda a: T().unsqueeze(a, -1) * 2, [rand(3, 2)]),
        ("flatten", lambda a: fastconv.flatten(a, 1) * 2, lambda a: T().flatten(a, 1) * 2, [rand(2, 3, 2)]),
        ("residual-broadcast-add", lambda a, b: a + b, lambda a, b: a + b, [rand(2, 3, 4, 4), rand(1, 3, 1, 1)]),
        ("pad-constant", lambda a: F.pad(a, (1, 2, 0, 1), value=0.5),
         lambda a: getattr(T().nn.functional, "pad")(a, (1, 2, 0, 1), value=0.5), [rand(1, 2, 3, 4)]),
        ("pad-crop", lambda a: F.pad(a, (-1, 2)), lambda a: T().nn.functional.pad(a, (-1, 2)), [rand(2, 3, 4)]),
        ("pad-reflect", lambda a: F.pad(a, (2, 1, 1, 2), mode="reflect"),
         lambda a: T().nn.functional.pad(a, (2, 1, 1, 2), mode="reflect"), [rand(1, 2, 3, 4)]),
        ("pad-replicate", lambda a: F.pad(a, (3, 1, 2, 0), mode="replicate"),
         lambda a: T().nn.functional.pad(a, (3, 1, 2, 0), mode="replicate"), [rand(1, 2, 3, 4)]),
        ("pad-circular", lambda a: F.pad(a, (2, 1, 3, 1), mode="circular"),
         lambda a: T().nn.functional.pad(a, (2, 1, 3, 1), mode="circular"), [rand(1, 2, 3, 4)]),
        ("pad-reflect-1d", lambda a: F.pad(a, (3, 3), mode="reflect"),
         lambda a: T().nn.functional.pad(a, (3, 3), mode="reflect"), [rand(2, 2, 4)]),
        # activations
        ("leaky_relu", lambda a: F.leaky_relu(a, 0.2), lambda a: T().nn.functional.leaky_relu(a, 0.2),
         [away_from([0], 3, 4)]),
        ("elu", lambda a: F.elu(a, 0.7), lambda a: T().nn.functional.elu(a, 0.7), [away_from([0], 3, 4)]),
        ("gelu", lambda a: F.gelu(a), lambda a: T().nn.functional.gelu(a), [rand(3, 4) * 2]),
        ("gelu-tanh", lambda a: F.gelu(a, approximate="tanh"),
         lambda a: T().nn.functional.gelu(a, approximate="tanh"), [rand(3, 4) * 2]),
        ("silu", lambda a: F.silu(a), lambda a: T().nn.functional.silu(a), [rand(3, 4) * 2]),
        ("hardswish", lambda a: F.hardswish(a), lambda a: T().nn.functional.hardswish(a),
         [away_from([-3, 3], 4, 5) * 2]),
        ("relu6", lambda a: F.relu6(a), lambda a: T().nn.functional.relu6(a), [away_from([0, 6], 4, 5) * 2]),
        ("hardtanh", lambda a: F.hardtanh(a, -0.5, 1.5), lambda a: T().nn.functional.hardtanh(a, -0.5, 1.5),
         [away_from([-0.5, 1.5], 4, 5)]),
        ("prelu-channels", lambda a, w: F.prelu(a, w), lambda a, w: T().nn.functional.prelu(a, w),
         [away_from([0], 2, 3, 2, 2), rand(3)]),
        ("prelu-shared", lambda a, w: F.prelu(a, w), lambda a, w: T().nn.functional.prelu(a, w),
         [away_from([0], 2, 3), rand(1)]),
        ("softplus", lambda a: F.softplus(a, beta=2, threshold=3), lambda a: T().nn.functional.softplus(
            a, beta=2, threshold=3), [away_from([1.5], 4, 5) * 2]),
        ("mish", lambda a: F.mish(a), lambda a: T().nn.functional.mish(a), [rand(4, 5) * 2]),
        # normalisation
        ("batch_norm-train", lambda a, w, b: F.batch_norm(a, None, None, w, b, True),
         lambda a, w, b: T().nn.functional.batch_norm(a, None, None, w, b, True), [x4, rand(3), rand(3)]),
        ("batch_norm-1d", lambda a, w, b: F.batch_norm(a, None, None, w, b, True, eps=1e-3),
         lambda a, w, b: T().nn.functional.batch_norm(a, None, None, w, b, True, eps=1e-3),
         [rand(5, 3), rand(3), rand(3)]),
        ("batch_norm-eval", lambda a, w, b: F.batch_norm(a, RM, RV, w, b, False),
         lambda a, w, b: T().nn.functional.batch_norm(a, T().tensor(RM), T().tensor(RV), w, b, False),
         [x4, rand(3), rand(3)]),
        ("instance_norm", lambda a, w, b: F.instance_norm(a, weight=w, bias=b),
         lambda a, w, b: T().nn.functional.instance_norm(a, weight=w, bias=b), [x4, rand(3), rand(3)]),
        ("group_norm", lambda a, w, b: F.group_norm(a, 2, w, b), lambda a, w, b: T().nn.functional.group_norm(
            a, 2, w, b), [rand(2, 4, 3, 2), rand(4), rand(4)]),
        ("group_norm-noaffine", lambda a: F.group_norm(a, 3), lambda a: T().nn.functional.group_norm(a, 3),
         [rand(2, 3, 5)]),
        ("layer_norm", lambda a, w, b: F.layer_norm(a, (4, 5), w, b),
         lambda a, w, b: T().nn.functional.layer_norm(a, (4, 5), w, b), [rand(2, 3, 4, 5), rand(4, 5), rand(4, 5)]),
        # resampling
        ("nearest-2x", lambda a: F.interpolate(a, scale_factor=2), lambda a: T().nn.functional.interpolate(
            a, scale_factor=2), [rand(1, 2, 3, 4)]),
        ("nearest-size", lambda a: F.interpolate(a, size=(5, 3)), lambda a: T().nn.functional.interpolate(
            a, size=(5, 3)), [rand(2, 1, 3, 4)]),
        ("nearest-1d-frac", lambda a: F.interpolate(a, scale_factor=1.7), lambda a: T().nn.functional.interpolate(
            a, scale_factor=1.7), [rand(1, 2, 5)]),
        ("bilinear", lambda a: F.interpolate(a, scale_factor=2, mode="bilinear"),
         lambda a: T().nn.functional.interpolate(a, scale_factor=2, mode="bilinear"), [rand(1, 2, 3, 4)]),
        ("bilinear-align", lambda a: F.interpolate(a, size=(5, 7), mode="bilinear", align_corners=True),
         lambda a: T().nn.functional.interpolate(a, size=(5, 7), mode="bilinear", align_corners=True),
         [rand(1, 2, 3, 4)]),
        ("bilinear-down", lambda a: F.interpolate(a, size=(2, 3), mode="bilinear"),
         lambda a: T().nn.functional.interpolate(a, size=(2, 3), mode="bilinear"), [rand(1, 2, 5, 7)]),
        ("bilinear-scale-frac", lambda a: F.interpolate(a, scale_factor=(1.5, 2.3), mode="bilinear"),
         lambda a: T().nn.functional.interpolate(a, scale_factor=(1.5, 2.3), mode="bilinear"), [rand(1, 1, 3, 3)]),
        ("trilinear", lambda a: F.interpolate(a, scale_factor=2, mode="trilinear", align_corners=False),
         lambda a: T().nn.functional.interpolate(a, scale_factor=2, mode="trilinear", align_corners=False),
         [rand(1, 1, 2, 3, 2)]),
        ("linear", lambda a: F.interpolate(a, size=7, mode="linear", align_corners=True),
         lambda a: T().nn.functional.interpolate(a, size=7, mode="linear", align_corners=True), [rand(2, 1, 4)]),
        ("pixel_shuffle", lambda a: F.pixel_shuffle(a, 2), lambda a: T().nn.functional.pixel_shuffle(a, 2),
         [rand(1, 8, 2, 3)]),
        ("pixel_unshuffle", lambda a: F.pixel_unshuffle(a, 2), lambda a: T().nn.functional.pixel_unshuffle(a, 2),
         [rand(1, 2, 4, 6)]),
    ]


MASK = rng.random((3, 4)) > 0.5
RM, RV = rand(3), np.abs(rand(3)) + 0.5
CASES = _cases()
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradcheck(case):
    name, ours, _, arrays = case
    assert gradcheck(ours, [a.copy() for a in arrays])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_equals_torch_float64(case):
    name, ours, theirs, arrays = case
    check_torch(ours, theirs, arrays)


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in (
    "cat", "max-dim", "clamp", "pad-reflect", "gelu", "gelu-tanh", "silu", "mish", "softplus", "hardswish",
    "elu", "batch_norm-train", "group_norm", "layer_norm", "instance_norm", "bilinear", "bilinear-scale-frac",
    "nearest-1d-frac", "prelu-channels")], ids=lambda c: c[0])
def test_equals_torch_float32(case):
    name, ours, theirs, arrays = case
    check_torch(ours, theirs, [a.astype(np.float32) for a in arrays], rtol=2e-5, atol=2e-5)


# --------------------------------------------------------------------------------------------------- details
def test_max_along_dim_returns_first_index_and_routes_gradient_there():
    torch = pytest.importorskip("torch")
    a = np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 0.0, 5.0]])
    x, tx = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    v, i = x.max(1)
    tv, ti = tx.max(1)
    np.testing.assert_array_equal(i, ti.numpy())
    assert i.dtype == np.int64
    v.sum().backward()
    tv.sum().backward()
    np.testing.assert_array_equal(x.grad, tx.grad.numpy())
    y, ty = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    y.max().backward()                                         # full reduction: ties share the gradient
    ty.max().backward()
    np.testing.assert_array_equal(y.grad, ty.grad.numpy())
    nan = np.array([[1.0, np.nan, 3.0, np.nan]])
    assert fastconv.max(nan, 1).indices[0] == torch.max(torch.tensor(nan), 1).indices[0] == 1


def test_split_chunk_shapes_follow_torch():
    torch = pytest.importorskip("torch")
    for n, k in ((5, 3), (6, 4), (0, 3), (7, 1), (3, 5)):
        ours = [t.shape for t in fastconv.chunk(np.zeros((2, n)), k, 1)]
        assert ours == [tuple(t.shape) for t in torch.chunk(torch.zeros(2, n), k, 1)], (n, k)
    for n, s in ((5, 2), (4, 4), (3, 5)):
        assert [t.shape[0] for t in fastconv.split(np.zeros(n), s)] == [t.shape[0] for t in
                                                                         torch.split(torch.zeros(n), s)]


def test_clamp_edges_match_torch():
    torch = pytest.importorskip("torch")
    a = np.array([1.0, 2.0, 3.0])
    for lo, hi in ((2.0, 2.0), (3.0, 1.0), (None, 2.0), (2.0, None)):
        x, tx = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
        y, ty = fastconv.clamp(x, lo, hi), torch.clamp(tx, lo, hi)
        y.sum().backward()
        ty.sum().backward()
        np.testing.assert_array_equal(y.data, ty.detach().numpy())
        np.testing.assert_array_equal(x.grad, tx.grad.numpy())


def test_activation_kinks_take_torchs_gradient():
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    a = np.array([-3.0, -1.0, 0.0, 3.0, 6.0, 1.0])
    for ours, theirs in ((F.leaky_relu, tf.leaky_relu), (F.relu6, tf.relu6), (F.hardswish, tf.hardswish),
                         (F.elu, tf.elu), (fastconv.nn.functional.relu, tf.relu), (fastconv.abs, torch.abs)):
        x, tx = Tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
        ours(x).sum().backward()
        theirs(tx).sum().backward()
        np.testing.assert_allclose(x.grad, tx.grad.numpy(), err_msg=ours.__name__)


def test_ops_reject_bad_arguments():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="sizes of tensors must match"):
        fastconv.cat([x, np.zeros((3, 3))], 1)
    with pytest.raises(TypeError, match="list or tuple"):
        fastconv.cat(Tensor(x))
    with pytest.raises(IndexError, match="out of range"):
        fastconv.stack([x, x], 3)
    with pytest.raises(ValueError, match="add up"):
        fastconv.split(x, [1, 1], 1)
    with pytest.raises(ValueError, match="at least one"):
        fastconv.clamp(x)
    with pytest.raises(TypeError, match="bool"):
        fastconv.where(x, x, x)
    with pytest.raises(ValueError, match="smaller than"):
        F.pad(np.zeros((1, 1, 3)), (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="mode"):
        F.pad(x, (1, 1), mode="wrap")
    with pytest.raises(ValueError, match="exactly one"):
        F.interpolate(np.zeros((1, 1, 3, 3)), size=4, scale_factor=2)
    with pytest.raises(ValueError, match="align_corners"):
        F.interpolate(np.zeros((1, 1, 3, 3)), size=4, align_corners=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(np.zeros((1, 3)), None, None, training=True)
    with pytest.raises(ValueError, match="divide"):
        F.group_norm(np.zeros((1, 3, 2)), 2)
    with pytest.raises(TypeError, match="momentum"):
        F.batch_norm(np.ones((4, 3)), np.zeros(3), np.ones(3), training=True, momentum=None)
    with pytest.raises(ValueError, match="normalized_shape"):
        F.layer_norm(np.zeros((2, 3)), (4,))


# --------------------------------------------------------------------------------------------------- layers
def _torch_layer(torch, ours, theirs, x, train=True):
    """Copy ``ours``'s state into torch's layer, run both on ``x``; compare output, grads and buffers."""
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    ours.train(train)
    theirs.train(train)
    seed = np.random.default_rng(1).standard_normal(theirs(torch.tensor(x)).shape)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    tx = torch.tensor(x, requires_grad=True)
    (theirs(tx) * torch.tensor(seed)).sum().backward()
    ox = Tensor(x, requires_grad=True)
    out = ours(ox)
    (out * seed).sum().backward()
    np.testing.assert_allclose(out.data, theirs(torch.tensor(x)).detach().numpy() if not train else out.data)
    np.testing.assert_allclose(ox.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, dict(theirs.named_parameters())[name].grad.numpy(), rtol=1e-10,
                                   atol=1e-12)
    theirs_state = theirs.state_dict()
    assert list(ours.state_dict()) == list(theirs_state)
    for k, v in ours.state_dict().items():
        np.testing.assert_allclose(v, theirs_state[k].numpy(), rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("make", [
    lambda m: m.BatchNorm2d(3), lambda m: m.BatchNorm2d(3, momentum=None), lambda m: m.BatchNorm2d(3, affine=False),
    lambda m: m.BatchNorm2d(3, track_running_stats=False), lambda m: m.BatchNorm1d(3, eps=1e-3, momentum=0.3),
    lambda m: m.BatchNorm3d(3), lambda m: m.InstanceNorm2d(3), lambda m: m.InstanceNorm2d(
        3, affine=True, track_running_stats=True), lambda m: m.GroupNorm(1, 3), lambda m: m.LayerNorm([5]),
    lambda m: m.LayerNorm(5, elementwise_affine=False), lambda m: m.PReLU(3), lambda m: m.Upsample(
        scale_factor=2, mode="bilinear", align_corners=True), lambda m: m.PixelShuffle(1),
    lambda m: m.ReflectionPad2d((1, 0, 2, 1)), lambda m: m.ReplicationPad2d(1), lambda m: m.CircularPad2d(1),
    lambda m: m.ConstantPad2d(1, 2.5), lambda m: m.ZeroPad2d((0, 1, 1, 0)), lambda m: m.GELU("tanh"),
    lambda m: m.LeakyReLU(0.3), lambda m: m.ELU(), lambda m: m.SiLU(), lambda m: m.Hardswish(),
    lambda m: m.ReLU6(), lambda m: m.Softplus(2.0), lambda m: m.Mish(), lambda m: m.ReLU(inplace=m is nn),
    lambda m: m.Identity(54, unused=1), lambda m: m.PixelShuffle(2), lambda m: m.PixelUnshuffle(2),
    lambda m: m.UpsamplingNearest2d(scale_factor=3), lambda m: m.UpsamplingBilinear2d(size=(5, 4)),
    lambda m: m.Hardtanh(-0.5, 2.0), lambda m: m.Sigmoid(), lambda m: m.Tanh(), lambda m: m.InstanceNorm1d(
        3, affine=True), lambda m: m.InstanceNorm3d(3, track_running_stats=True), lambda m: m.GroupNorm(3, 3),
    lambda m: m.Upsample(size=7, mode="nearest"), lambda m: m.LayerNorm(5, bias=False)])
def test_layers_equal_torch_in_train_and_eval(make):
    torch = pytest.importorskip("torch")
    ours = make(nn).double()
    theirs = make(torch.nn).double()
    name = type(ours).__name__
    shape = {"BatchNorm1d": (6, 3, 4), "BatchNorm3d": (2, 3, 2, 3, 2), "LayerNorm": (2, 3, 5), "PixelShuffle":
             (2, 8, 2, 3), "PixelUnshuffle": (2, 3, 4, 6), "InstanceNorm1d": (2, 3, 5),
             "InstanceNorm3d": (2, 3, 2, 3, 2)}.get(name, (2, 3, 4, 5))
    for train in (True, False, True):
        x = rand(*shape) * 2 + 1
        _torch_layer(torch, ours, theirs, x, train)
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_batchnorm_running_stats_over_steps_match_torch_float32():
    torch = pytest.importorskip("torch")
    ours, theirs = nn.BatchNorm2d(4, momentum=None), torch.nn.BatchNorm2d(4, momentum=None)
    for step in range(4):
        x = (rand(3, 4, 5, 5) * (step + 1) + step).astype(np.float32)
        np.testing.assert_allclose(ours(x).data, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-4, atol=1e-5)
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k], v.numpy(), rtol=1e-5, atol=1e-6)
    assert int(ours.num_batches_tracked) == 4 and ours.running_var.dtype == np.float32
    ours.eval()
    theirs.eval()
    x = rand(2, 4, 3, 3).astype(np.float32)
    np.testing.assert_allclose(ours(x).data, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-5)


def test_layers_reject_mixed_dtypes_and_wrong_ranks():
    bn = nn.BatchNorm2d(3)
    with pytest.raises(TypeError, match="dtype"):
        bn(np.zeros((2, 3, 2, 2)))                      # float64 into a float32 layer
    with pytest.raises(ValueError, match="expected 4D input"):
        bn(np.zeros((2, 3, 2), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        nn.LayerNorm(3).double()(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="divisible"):
        nn.GroupNorm(2, 3)


def test_instance_norm_takes_unbatched_input():
    x = rand(3, 4, 5)
    layer = nn.InstanceNorm2d(3).double()
    np.testing.assert_allclose(layer(x).data, layer(x[None]).data[0])


@pytest.mark.parametrize("fn, shape", [(F.dropout2d, (2, 3, 2, 2)), (F.dropout1d, (3, 2, 4)),
                                       (F.dropout3d, (1, 4, 2, 1, 2)), (F.dropout, (3, 4))])
def test_dropout_gradcheck_with_a_fixed_mask(fn, shape):
    assert gradcheck(lambda x: fn(x, 0.4, True, generator=np.random.default_rng(2)), [rand(*shape)])


def test_dropout2d_is_seeded_channelwise_and_inactive_in_eval():
    layer = nn.Dropout2d(0.5)
    x = np.ones((4, 8, 3, 3), np.float32)
    nn.manual_seed(3)
    a = layer(x).data
    nn.manual_seed(3)
    np.testing.assert_array_equal(layer(x).data, a)
    assert set(np.unique(a)) <= {0.0, 2.0} and 0 < (a == 0).mean() < 1
    assert np.all(a.min(axis=(2, 3)) == a.max(axis=(2, 3)))           # whole channels dropped
    t = Tensor(x, requires_grad=True)
    nn.manual_seed(3)
    layer(t).sum().backward()
    np.testing.assert_array_equal(t.grad, a)
    assert layer.eval()(x).data is x or np.array_equal(layer(x).data, x)
    assert nn.Dropout(0.3, inplace=True).eval()(x).data is x
