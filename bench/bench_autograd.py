"""Autograd: conv2d forward+backward and one LeNet-5 training step, fastconv's tape against torch autograd.

Cases (float32, ratios are fastconv time / torch time measured in the same run with the same thread count):

* conv2d forward + backward (input, weight and bias gradients) on 8x64x56x56 -> 64 3x3 (padding 1) and
  8x256x28x28 -> 64 1x1, for ``algorithm="auto"`` and every registered algorithm;
* one LeNet-5 training step (forward, cross-entropy, backward, Adam update), batch 64 of 1x32x32, same weights.

    python bench/bench_autograd.py [--threads 2] [--repeats 7] [--json bench/results/autograd.json]
"""
import argparse
import os

import numpy as np

import fastconv as fc
from fastconv import Tensor, nn
from fastconv.benchmark import blas_threads, format_table, save_json, timeit, torch_or_none
from fastconv.examples.digits import lenet5
from fastconv.nn import functional as F

CONV_CASES = [
    ("conv 3x3 64->64 @56", (8, 64, 56, 56), (64, 64, 3, 3), 1),
    ("conv 1x1 256->64 @28", (8, 256, 28, 28), (64, 256, 1, 1), 0),
]


def _conv_step(x, w, b, g, padding, algorithm):
    def step():
        xt, wt, bt = (Tensor._wrap(a).requires_grad_() for a in (x, w, b))
        F.conv2d(xt, wt, bt, padding=padding, algorithm=algorithm).backward(g)
        return xt.grad, wt.grad, bt.grad
    return step


def _torch_conv_step(torch, x, w, b, g, padding):
    xt, wt, bt, gt = (torch.from_numpy(a) for a in (x, w, b, g))

    def step():
        xs, ws, bs = (a.detach().requires_grad_() for a in (xt, wt, bt))
        torch.nn.functional.conv2d(xs, ws, bs, padding=padding).backward(gt)
        return xs.grad, ws.grad, bs.grad
    return step


def _lenet_steps(torch, batch, rng):
    x = rng.random((batch, 1, 32, 32), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    nn.manual_seed(0)
    ours = lenet5(32)
    opt = nn.Adam(ours.parameters(), lr=1e-3)

    def step():
        loss = F.cross_entropy(ours(Tensor._wrap(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    if torch is None:
        return step, None
    m = torch.nn
    theirs = m.Sequential(m.Conv2d(1, 6, 5), m.ReLU(), m.MaxPool2d(2), m.Conv2d(6, 16, 5), m.ReLU(),
                          m.MaxPool2d(2), m.Flatten(), m.Linear(400, 120), m.ReLU(), m.Linear(120, 84), m.ReLU(),
                          m.Linear(84, 10))
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    topt = torch.optim.Adam(theirs.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def tstep():
        loss = torch.nn.functional.cross_entropy(theirs(xt), yt)
        topt.zero_grad()
        loss.backward()
        topt.step()
        return loss

    # same weights, same batch: the first losses agree
    assert abs(float(step().item()) - float(tstep().item())) < 1e-4
    return step, tstep


def run(threads=2, repeats=7, batch=64):
    rng = np.random.default_rng(0)
    torch = torch_or_none(threads)
    rows = []
    with blas_threads(threads), fc.num_threads(threads):
        for name, xs, ws, padding in CONV_CASES:
            x = rng.standard_normal(xs).astype(np.float32)
            w = rng.standard_normal(ws).astype(np.float32) * 0.1
            b = rng.standard_normal(ws[0]).astype(np.float32)
            g = rng.standard_normal(fc.conv_output_shape(xs, ws, padding=padding)).astype(np.float32)
            geom = fc.ConvGeometry.make(xs, ws, 1, padding)
            t_torch = None
            if torch is not None:
                t_torch = timeit(_torch_conv_step(torch, x, w, b, g, padding), repeats=repeats)["median"]
                rows.append(dict(case=name, impl="torch", ms=t_torch * 1e3, vs_torch=1.0,
                                 gflops=3 * geom.flops / t_torch / 1e9))
            for alg in ("auto",) + fc.algorithms():
                t = timeit(_conv_step(x, w, b, g, padding, alg), repeats=repeats)
                rows.append(dict(case=name, impl="fastconv " + alg, ms=t["median"] * 1e3, spread=t["spread"],
                                 vs_torch=None if t_torch is None else t["median"] / t_torch,
                                 gflops=3 * geom.flops / t["median"] / 1e9))
        step, tstep = _lenet_steps(torch, batch, rng)
        t_torch = None
        if tstep is not None:
            t_torch = timeit(tstep, repeats=repeats * 3, warmup=3)["median"]
            rows.append(dict(case="LeNet-5 step, batch %d" % batch, impl="torch", ms=t_torch * 1e3, vs_torch=1.0))
        t = timeit(step, repeats=repeats * 3, warmup=3)
        rows.append(dict(case="LeNet-5 step, batch %d" % batch, impl="fastconv", ms=t["median"] * 1e3,
                         spread=t["spread"], vs_torch=None if t_torch is None else t["median"] / t_torch))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "autograd.json"))
    a = p.parse_args(argv)
    rows = run(a.threads, a.repeats, a.batch)
    print("forward + backward, float32, %d threads; vs_torch = fastconv time / torch time (same run)" % a.threads)
    print(format_table(rows, ["case", "impl", "ms", "spread", "vs_torch", "gflops"]))
    save_json(a.json, rows, threads=a.threads, batch=a.batch,
              targets={"conv 3x3": 1.0, "conv 1x1": 0.2, "LeNet-5 step": 1.0})


if __name__ == "__main__":
    main()
