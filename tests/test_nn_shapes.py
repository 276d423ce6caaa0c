"""Shapes people pass to layers: unbatched samples, ConvTranspose2d(output_size=...), global pools keeping
(N, C, 1, 1), and layers refusing an input of another dtype -- each as torch does."""
import numpy as np
import pytest

import fastconv.nn as nn
from fastconv import Tensor

rng = np.random.default_rng(3)


def rand(*shape):
    return rng.standard_normal(shape)


def _same(ours, theirs, x):
    """Output and input gradient of a float64 layer pair on ``x`` (the torch layer gets ours's state)."""
    torch = pytest.importorskip("torch")
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    ty = ty[0] if isinstance(ty, tuple) else ty
    seed = np.random.default_rng(0).standard_normal(tuple(ty.shape))
    (ty * torch.tensor(seed)).sum().backward()
    ox = Tensor(x, requires_grad=True)
    oy = ours(ox)
    oy = oy[0] if isinstance(oy, tuple) else oy
    (oy * seed).sum().backward()
    assert oy.shape == tuple(ty.shape)
    np.testing.assert_allclose(oy.data, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ox.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make, shape", [
    (lambda m: m.Conv1d(3, 4, 3, padding=1), (3, 7)),
    (lambda m: m.Conv2d(3, 4, (3, 2), stride=2), (3, 7, 6)),
    (lambda m: m.Conv3d(2, 3, 2), (2, 3, 4, 3)),
    (lambda m: m.ConvTranspose2d(3, 2, 3, stride=2, output_padding=1), (3, 4, 5)),
    (lambda m: m.MaxPool2d(2, return_indices=True), (3, 6, 5)),
    (lambda m: m.AvgPool1d(3, 2, 1), (2, 9)),
    (lambda m: m.AdaptiveAvgPool2d((2, 3)), (3, 7, 8)),
    (lambda m: m.AdaptiveMaxPool2d(2), (3, 5, 5)),
    (lambda m: m.LPPool2d(2, 2), (3, 4, 4)),
    (lambda m: m.InstanceNorm2d(3, affine=True), (3, 4, 5)),
    (lambda m: m.ReflectionPad2d(1), (3, 4, 5)),
    (lambda m: m.PixelShuffle(2), (8, 2, 3)),
])
def test_unbatched_input_as_torch(make, shape):
    torch = pytest.importorskip("torch")
    ours, theirs = make(nn).double(), make(torch.nn).double()
    x = rand(*shape) + (1.5 if "LPPool" in type(ours).__name__ else 0)
    _same(ours, theirs, np.abs(x) if "LPPool" in type(ours).__name__ else x)


def test_unbatched_max_pool_indices_and_unpool():
    torch = pytest.importorskip("torch")
    x = rand(2, 6, 4)
    y, idx = nn.MaxPool2d(2, return_indices=True)(x)
    ty, tidx = torch.nn.MaxPool2d(2, return_indices=True)(torch.tensor(x))
    np.testing.assert_array_equal(idx, tidx.numpy())
    back = nn.MaxUnpool2d(2)(y, idx, output_size=(6, 4))
    tback = torch.nn.MaxUnpool2d(2)(ty, tidx, output_size=(6, 4))
    np.testing.assert_array_equal(back.data, tback.numpy())


@pytest.mark.parametrize("kw, size", [
    (dict(stride=2), (11, 12)), (dict(stride=2), (12, 11)), (dict(stride=3, padding=1, dilation=2), (16, 17)),
    (dict(stride=(2, 3)), (2, 2, 12, 16))])
def test_conv_transpose_output_size_as_torch(kw, size):
    torch = pytest.importorskip("torch")
    ours = nn.ConvTranspose2d(3, 2, 3, **kw).double()
    theirs = torch.nn.ConvTranspose2d(3, 2, 3, **kw).double()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rand(2, 3, 5, 5)
    y = ours(x, output_size=size)
    ty = theirs(torch.tensor(x), output_size=list(size))
    assert y.shape == tuple(ty.shape) and y.shape[-2:] == tuple(size[-2:])
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert ours(x[0], output_size=size[-2:]).shape == y.shape[1:]                    # unbatched too


def test_conv_transpose_output_size_out_of_range():
    layer = nn.ConvTranspose2d(1, 1, 3, stride=2)
    with pytest.raises(ValueError, match="valid sizes range from"):
        layer(np.zeros((1, 1, 4, 4), np.float32), output_size=(12, 9))
    with pytest.raises(ValueError, match="2 or 4 elements"):
        layer(np.zeros((1, 1, 4, 4), np.float32), output_size=(1, 9, 9))


def test_global_pool_layers_keep_the_spatial_dimensions():
    torch = pytest.importorskip("torch")
    x = rand(2, 3, 4, 5)
    for ours, theirs in ((nn.GlobalAvgPool2d(), torch.nn.AdaptiveAvgPool2d(1)),
                         (nn.GlobalMaxPool2d(), torch.nn.AdaptiveMaxPool2d(1))):
        _same(ours, theirs, x)
        assert ours(x).shape == (2, 3, 1, 1) and ours(x[0]).shape == (3, 1, 1)
    s = nn.summary(nn.Sequential(nn.Conv2d(3, 4, 3), nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(4, 2)),
                   (2, 3, 8, 8), print_=False)
    assert [r["output_shape"] for r in s][1:] == [(2, 4, 1, 1), (2, 4), (2, 2)]


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Conv2d(2, 3, 3), (1, 2, 5, 5)), (lambda: nn.ConvTranspose1d(2, 3, 3), (1, 2, 5)),
    (lambda: nn.Linear(4, 2), (3, 4)), (lambda: nn.BatchNorm2d(2), (2, 2, 3, 3)),
    (lambda: nn.LayerNorm(4), (2, 4)), (lambda: nn.PReLU(), (2, 4)), (lambda: nn.GroupNorm(1, 2), (2, 2, 3)),
])
def test_layers_refuse_mixed_dtypes(make, shape):
    layer = make()                                       # float32 parameters
    with pytest.raises(TypeError, match="dtype float64 does not match the layer's dtype float32"):
        layer(rand(*shape))
    assert layer(rand(*shape).astype(np.float32)).dtype == np.float32
    layer.double()
    with pytest.raises(TypeError, match="float32 does not match the layer's dtype float64"):
        layer(Tensor(rand(*shape).astype(np.float32)))
    assert layer(rand(*shape)).dtype == np.float64
    assert nn.summary(layer, shape, print_=False).output_shape      # summary follows the model's dtype


def test_functional_api_still_promotes():
    w = rand(3, 2, 3, 3).astype(np.float32)
    assert nn.functional.conv2d(rand(1, 2, 5, 5), w).dtype == np.float64


def test_wrong_rank_input_is_a_clear_error():
    with pytest.raises(ValueError, match="3D \\(unbatched\\) or 4D \\(batched\\)"):
        nn.Conv2d(2, 3, 3)(np.zeros((2, 5), np.float32))
