"""fastconv.grad: input and weight gradients of every algorithm against the reference and torch autograd."""
import zlib

import numpy as np
import pytest

import fastconv as fc
import reference as ref
from test_conv import GRID, _case, _close

ALGORITHMS = fc.algorithms()
GRAD_IN = {1: fc.grad.conv1d_input, 2: fc.grad.conv2d_input, 3: fc.grad.conv3d_input}
GRAD_W = {1: fc.grad.conv1d_weight, 2: fc.grad.conv2d_weight, 3: fc.grad.conv3d_weight}
CONV = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}


def _pairs(kw, x):
    """The per-side padding the reference needs for any padding form."""
    nd = x.ndim - 2
    p = kw["padding"]
    st = kw["stride"] if isinstance(kw["stride"], tuple) else (kw["stride"],) * nd
    dl = kw["dilation"] if isinstance(kw["dilation"], tuple) else (kw["dilation"],) * nd
    return fc.ConvGeometry.make(x.shape, (kw["groups"], x.shape[1] // kw["groups"]) + kw["ks"], st, p, dl,
                                kw["groups"]).padding


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GRID, ids=[str(i) for i in range(len(GRID))])
def test_gradients_match_reference(algorithm, dtype, case):
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x, w, _, kw = _case(rng, case, dtype)
    nd = x.ndim - 2
    y = CONV[nd](x, w, **kw)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = GRAD_IN[nd](x.shape, w, gy, **kw, algorithm=algorithm)
    gw = GRAD_W[nd](x, w.shape, gy, **kw, algorithm=algorithm)
    assert gx.shape == x.shape and gw.shape == w.shape and gx.dtype == dtype and gw.dtype == dtype
    pairs = _pairs(dict(kw, ks=w.shape[2:]), x)
    # input gradient = transposed convolution of gy (reference scatters), cropped by the low-side padding
    want_gw = ref.conv_grad_weight_nd(x, gy, w.shape, kw["stride"], pairs, kw["dilation"], kw["groups"])
    _close(gw, want_gw, dtype)
    # adjoint identity <conv(x'), gy> == <x', grad_input(gy)> for a random x'
    xr = rng.standard_normal(x.shape)
    lhs = float((ref.conv_nd(xr, w, None, kw["stride"], pairs, kw["dilation"], kw["groups"]) * gy).sum())
    rhs = float((xr * gx).sum())
    assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs)) * (100 if dtype == np.float32 else 1)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("flip", [False, True])
def test_gradients_match_torch_autograd(algorithm, padding_mode, flip):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 9, 11))
    w = rng.standard_normal((6, 2, 3, 2))
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    mode = "constant" if padding_mode == "zeros" else padding_mode
    yt = F.conv2d(F.pad(xt, (1, 2, 2, 1), mode=mode), wt.flip(2, 3) if flip else wt, None, (2, 1), 0, (1, 2), 2)
    gy = rng.standard_normal(yt.shape)
    yt.backward(torch.from_numpy(gy))
    pad = ((2, 1), (1, 2))
    kw = dict(stride=(2, 1), padding=pad, dilation=(1, 2), groups=2, padding_mode=padding_mode, flip=flip,
              algorithm=algorithm)
    _close(fc.conv2d(x, w, **kw), yt.detach().numpy(), np.float64)
    _close(fc.grad.conv2d_input(x.shape, w, gy, **kw), xt.grad.numpy(), np.float64)
    _close(fc.grad.conv2d_weight(x, w.shape, gy, **kw), wt.grad.numpy(), np.float64)


def test_bias_gradient_is_channel_sum():
    gy = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(fc.grad.conv_bias(gy), gy.sum(axis=(0, 2, 3)))


def test_grad_output_shape_is_checked():
    with pytest.raises(ValueError, match="grad_output"):
        fc.grad.conv2d_input((1, 2, 5, 5), np.ones((3, 2, 3, 3)), np.ones((1, 3, 4, 4)))
    with pytest.raises(ValueError, match="grad_output"):
        fc.grad.conv2d_weight(np.ones((1, 2, 5, 5)), (3, 2, 3, 3), np.ones((1, 3, 2, 3)))
    with pytest.raises(TypeError, match="input_shape"):
        fc.grad.conv2d_input(np.ones(4), np.ones((3, 2, 3, 3)), np.ones((1, 3, 3, 3)))
