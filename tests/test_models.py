"""Acceptance: a ResNet and a small U-Net built in torch load into fastconv (BatchNorm buffers included) and back.

Eval-mode outputs agree; in train mode the loss, every parameter gradient, the parameters after one optimiser
step and the updated running statistics agree with torch's (float64 to 1e-10, float32 to 1e-4); the state dict
copied back into a fresh torch model gives torch's outputs.
"""
import numpy as np
import pytest

import fastconv
import fastconv.nn as nn
import fastconv.nn.functional as F
from fastconv import Tensor
from fastconv.examples.resnet import ResNet, torch_resnet

torch = pytest.importorskip("torch")
tnn = torch.nn


@pytest.fixture(autouse=True)
def two_threads():
    with fastconv.num_threads(2):
        yield


# --------------------------------------------------------------------------------------------------- torch twins
# The ResNet's twin is fastconv.examples.resnet.torch_resnet; the U-Net is written once for both libraries.
def unet_class(lib, cat, base):
    """The same small U-Net for either library: ``lib`` is ``torch.nn`` or ``fastconv.nn``."""
    def double_conv(cin, cout):
        return lib.Sequential(lib.Conv2d(cin, cout, 3, padding=1, bias=False), lib.BatchNorm2d(cout), lib.ReLU(),
                              lib.Conv2d(cout, cout, 3, padding=1, bias=False), lib.BatchNorm2d(cout), lib.ReLU())

    class UNet(base):
        def __init__(self, cin=2, cout=3, w=4):
            super().__init__()
            self.enc1, self.enc2, self.mid = double_conv(cin, w), double_conv(w, 2 * w), double_conv(2 * w, 4 * w)
            self.pool = lib.MaxPool2d(2)
            self.up = lib.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            self.up_nearest = lib.Upsample(scale_factor=2, mode="nearest")
            self.dec2, self.dec1 = double_conv(6 * w, 2 * w), double_conv(3 * w, w)
            self.head = lib.Conv2d(w, cout, 1)

        def forward(self, x):
            e1 = self.enc1(x)
            e2 = self.enc2(self.pool(e1))
            m = self.mid(self.pool(e2))
            d2 = self.dec2(cat([self.up(m), e2], 1))
            d1 = self.dec1(cat([self.up_nearest(d2), e1], 1))
            return self.head(d1)
    return UNet


TorchUNet = unet_class(tnn, torch.cat, tnn.Module)
UNet = unet_class(nn, fastconv.cat, nn.Module)


# --------------------------------------------------------------------------------------------------- the check
def _models(kind, dtype):
    torch.manual_seed(0)
    if kind == "resnet":
        theirs, ours = torch_resnet(2, 5, 6, (2, 1, 1)), ResNet(2, 5, 6, (2, 1, 1))
        x_shape, target = (6, 2, 9, 8), np.arange(6) % 5
    else:
        theirs, ours = TorchUNet(), UNet()
        x_shape, target = (3, 2, 8, 12), None
    theirs = theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    ours.to(dtype)
    rng = np.random.default_rng(1)
    with torch.no_grad():                       # non-trivial affine parameters and running statistics
        for name, b in theirs.named_buffers():
            if "running_mean" in name:
                b.copy_(torch.tensor(rng.standard_normal(b.shape) * 0.1))
            elif "running_var" in name:
                b.copy_(torch.tensor(rng.random(b.shape) + 0.5))
            elif "num_batches_tracked" in name:
                b.fill_(3)
        for name, p in theirs.named_parameters():
            if "bn" in name or ("enc" in name or "dec" in name or "mid" in name) and p.ndim == 1:
                p.copy_(torch.tensor(1 + 0.2 * rng.standard_normal(p.shape)))
    x = (rng.standard_normal(x_shape) + 0.3).astype(dtype)
    if target is None:
        target = rng.standard_normal((x_shape[0], 3) + x_shape[2:]).astype(dtype)
    return ours, theirs, x, target


def _loss(lib_f, out, target):
    return lib_f.cross_entropy(out, target) if target.ndim == 1 else lib_f.mse_loss(out, target)


def _close(a, b, dtype, what):
    a, b = np.asarray(a), np.asarray(b)
    if dtype == np.float64:
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=what)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(b).max(initial=0))),
                                   err_msg=what)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["resnet", "unet"])
def test_torch_model_round_trip_with_training_step(kind, dtype):
    ours, theirs, x, target = _models(kind, dtype)
    result = ours.load_state_dict(theirs.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert any(k.endswith("num_batches_tracked") for k in ours.state_dict())

    # eval mode: the running statistics are used
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        expected = theirs(torch.tensor(x)).numpy()
    _close(ours(Tensor(x)).data, expected, dtype, "eval output")

    # train mode: loss, every gradient, one optimiser step, updated running statistics
    ours.train()
    theirs.train()
    opt = nn.AdamW(ours.parameters(), lr=1e-2, weight_decay=0.1)
    topt = torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.1)
    tt = torch.tensor(target)
    tloss = _loss(tnn.functional, theirs(torch.tensor(x)), tt)
    topt.zero_grad()
    tloss.backward()
    loss = _loss(F, ours(Tensor(x)), target)
    opt.zero_grad()
    loss.backward()
    _close(loss.item(), tloss.item(), dtype, "loss")
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        _close(p.grad, tparams[name].grad.numpy(), dtype, "gradient of " + name)
    opt.step()
    topt.step()
    tstate = theirs.state_dict()
    for key, value in ours.state_dict().items():
        _close(value, tstate[key].numpy(), dtype, "after the step: " + key)
    assert int(ours.state_dict()[[k for k in tstate if k.endswith("num_batches_tracked")][0]]) == 4

    # the reverse copy: fastconv -> a fresh torch model
    torch.manual_seed(1)
    fresh = torch_resnet(2, 5, 6, (2, 1, 1)) if kind == "resnet" else TorchUNet()
    fresh = fresh.to(next(iter(tparams.values())).dtype)
    fresh.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    fresh.eval()
    ours.eval()
    with torch.no_grad():
        _close(ours(Tensor(x)).data, fresh(torch.tensor(x)).numpy(), dtype, "torch copy of the trained model")


def test_resnet_fused_for_inference_equals_eval_mode():
    ours, theirs, x, _ = _models("resnet", np.float64)
    ours.load_state_dict(theirs.state_dict())
    ours.eval()
    fused = nn.utils.fuse_modules(ours, ours.fuse_groups())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    with fastconv.no_grad():
        np.testing.assert_allclose(fused(Tensor(x)).data, ours(Tensor(x)).data, rtol=1e-10, atol=1e-12)


def test_resnet_summary_and_save_load(tmp_path):
    model = ResNet(1, 10, 8, (1, 1, 1))
    s = nn.summary(model, (2, 1, 16, 16), print_=False)
    assert s.output_shape == (2, 10)
    assert s.total_params == sum(p.size for p in model.parameters())
    fastconv.save(model.state_dict(), tmp_path / "resnet.npz")
    other = ResNet(1, 10, 8, (1, 1, 1))
    other.load_state_dict(fastconv.load(tmp_path / "resnet.npz"))
    x = np.random.default_rng(0).standard_normal((2, 1, 16, 16)).astype(np.float32)
    model.eval()
    other.eval()
    np.testing.assert_array_equal(model(Tensor(x)).data, other(Tensor(x)).data)
