"""Differential fuzzer against PyTorch: forward and every gradient of every convolution and transposed
convolution configuration PyTorch accepts.

Random problems over the whole parameter space -- 1-3 spatial dims, batches of 0 to 3 samples, groups, non-square
kernels, stride, dilation, padding as an int, a tuple, ``"same"`` or ``"valid"`` with every ``padding_mode``, and
for the transposed convolutions ``output_padding`` up to ``max(stride, dilation) - 1`` (so also at or above the
stride) -- run through ``torch.nn.functional`` (float64) and through fastconv's tape with each registered
algorithm; output, input gradient, weight gradient and bias gradient must agree to 1e-9.  A configuration PyTorch
rejects is skipped; one it accepts must work here.  Fixed seed; ``FASTCONV_FUZZ_SCALE`` multiplies the number of
problems.
"""
import os

import numpy as np
import pytest

import fastconv as fc
from fastconv import nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional
# PyTorch says that padding="same" with an even kernel copies the input; fastconv pads per side without a copy
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

SEED = 20121
SCALE = float(os.environ.get("FASTCONV_FUZZ_SCALE", "1"))
PROBLEMS = max(1, int(500 * SCALE))      # per chunk
CHUNKS = 4
ALGORITHMS = fc.algorithms()


def _problem(rng):
    nd = int(rng.integers(1, 4))
    transposed = rng.random() < 0.45
    g, cg, kg = int(rng.integers(1, 4)), int(rng.integers(1, 3)), int(rng.integers(1, 3))
    N = int(rng.choice([0, 1, 2, 3], p=[0.1, 0.4, 0.3, 0.2]))
    k = tuple(int(v) for v in rng.integers(1, {1: 5, 2: 4, 3: 3}[nd] + 1, nd))
    s = tuple(int(v) for v in rng.integers(1, 4, nd))
    d = tuple(int(v) for v in rng.integers(1, 4, nd))
    size = tuple(int(v) for v in rng.integers(1, {1: 12, 2: 8, 3: 5}[nd] + 1, nd))
    bias = bool(rng.random() < 0.6)
    if transposed:
        p = tuple(int(v) for v in rng.integers(0, 4, nd))
        op = tuple(int(rng.integers(0, max(a, b))) for a, b in zip(s, d))
        x = rng.standard_normal((N, g * cg) + size)
        w = rng.standard_normal((g * cg, kg) + k)
        b = rng.standard_normal(g * kg) if bias else None
        return True, nd, x, w, b, dict(stride=s, padding=p, output_padding=op, groups=g, dilation=d)
    form = str(rng.choice(["int", "tuple", "same", "valid"]))
    if form == "int":
        p = int(rng.integers(0, 4))
    elif form == "tuple":
        p = tuple(int(v) for v in rng.integers(0, 4, nd))
    else:
        p = form
    mode = str(rng.choice(["zeros", "zeros", "reflect", "replicate", "circular"]))
    x = rng.standard_normal((N, g * cg) + size)
    w = rng.standard_normal((g * kg, cg) + k)
    b = rng.standard_normal(g * kg) if bias else None
    return False, nd, x, w, b, dict(stride=s, padding=p, dilation=d, groups=g, padding_mode=mode)


def _torch(transposed, nd, x, w, b, kw):
    """PyTorch's output and gradients, or None when it rejects the configuration."""
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    try:
        if transposed:
            y = getattr(TF, "conv_transpose%dd" % nd)(tx, tw, tb, **kw)
        else:
            kw = dict(kw)
            mode = kw.pop("padding_mode")
            if mode == "zeros":
                y = getattr(TF, "conv%dd" % nd)(tx, tw, tb, **kw)
            else:      # padding modes live on the layer; its parameters are tw and tb
                layer = getattr(torch.nn, "Conv%dd" % nd)(x.shape[1], w.shape[0], w.shape[2:], padding_mode=mode,
                                                          bias=b is not None, **kw)
                del layer.weight, layer.bias
                layer.weight, layer.bias = tw, tb
                y = layer(tx)
    except (RuntimeError, ValueError):     # PyTorch's two ways of refusing a configuration
        return None
    return tx, tw, tb, y


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_gradients_match_torch_for_every_configuration_it_accepts(chunk):
    rng = np.random.default_rng([SEED, chunk])
    compared = 0
    for _ in range(PROBLEMS):
        transposed, nd, x, w, b, kw = _problem(rng)
        res = _torch(transposed, nd, x, w, b, kw)
        if res is None:
            continue
        tx, tw, tb, ty = res
        gy = rng.standard_normal(tuple(ty.shape))
        ty.backward(torch.tensor(gy))
        want = [ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()] + ([tb.grad.numpy()] if b is not None else [])
        fn = getattr(nn.functional, ("conv_transpose%dd" if transposed else "conv%dd") % nd)
        alg = ALGORITHMS[compared % len(ALGORITHMS)]
        for algorithm in ("auto", alg):
            X, W = fc.Tensor(x, requires_grad=True), fc.Tensor(w, requires_grad=True)
            B = None if b is None else fc.Tensor(b, requires_grad=True)
            try:
                y = fn(X, W, B, algorithm=algorithm, **kw)
                y.backward(gy)
            except ValueError as exc:
                if algorithm != "auto" and "does not implement" in str(exc):
                    continue            # the named algorithm declines this geometry; auto must not
                raise AssertionError("PyTorch accepts %s%dd %s %s %s, fastconv (%s) raised %r"
                                     % ("conv_transpose" if transposed else "conv", nd, x.shape, w.shape, kw,
                                        algorithm, exc)) from None
            got = [y.data, X.grad, W.grad] + ([B.grad] if b is not None else [])
            for name, g, t in zip(("output", "grad_input", "grad_weight", "grad_bias"), got, want):
                assert g.shape == t.shape, (name, g.shape, t.shape, kw)
                np.testing.assert_allclose(g, t, rtol=1e-9, atol=1e-9, err_msg="%s, %s %s%dd %s %s %s" % (
                    name, algorithm, "conv_transpose" if transposed else "conv", nd, x.shape, w.shape, kw))
        compared += 1
    assert compared >= PROBLEMS // 2      # most random configurations are valid ones
