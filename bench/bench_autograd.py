"""Autograd: conv2d forward+backward and one LeNet-5 training step, fastconv's tape against torch autograd.

Cases (float32, ratios are fastconv time / torch time measured in the same run with the same thread count):

* conv2d forward + backward (input, weight and bias gradients) on 8x64x56x56 -> 64 3x3 (padding 1) and
  8x256x28x28 -> 64 1x1, for ``algorithm="auto"`` and every registered algorithm;
* one LeNet-5 training step (forward, cross-entropy, backward, Adam update), batch 64 of 1x32x32, same weights.

The contenders of a case are timed in turns (one call of each per round, median over the rounds), so a change in
the machine's load during the run affects them alike.  Both libraries run on the one OpenMP runtime they share
(``libgomp.so.1``) with fastconv's default wait policy, a short spin (``GOMP_SPINCOUNT=10000``, see
docs/guide/threads.rst) unless the environment sets one; the policy in effect is printed and saved.

    python bench/bench_autograd.py [--threads 2] [--repeats 15] [--json bench/results/autograd.json]
"""
import argparse
import os
import statistics
import time

import numpy as np  # noqa: E402

import fastconv as fc  # noqa: E402
from fastconv import Tensor, nn  # noqa: E402
from fastconv.benchmark import blas_threads, format_table, omp_wait_policy, save_json, torch_or_none  # noqa: E402
from fastconv.examples.digits import lenet5  # noqa: E402
from fastconv.nn import functional as F  # noqa: E402

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


def in_turns(fns, repeats, warmup=2):
    """Time every callable of ``fns`` (name -> fn) once per round, ``repeats`` rounds after ``warmup``.

    Returns name -> {"median", "min", "spread"} in seconds.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    out = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        out[name] = {"median": med, "min": min(ts), "spread": (max(ts) - min(ts)) / med}
    return out


def _rows(case, timings, flops=None):
    """Table rows of one case: every contender's median and its ratio to torch's."""
    ref = timings.get("torch", {}).get("median")
    return [dict(case=case, impl=name, ms=t["median"] * 1e3, min_ms=t["min"] * 1e3, spread=t["spread"],
                 vs_torch=None if ref is None else t["median"] / ref,
                 gflops=None if flops is None else flops / t["median"] / 1e9) for name, t in timings.items()]


def run(threads=2, repeats=15, batch=64):
    rng = np.random.default_rng(0)
    torch = torch_or_none(threads)
    rows = []
    with blas_threads(threads), fc.num_threads(threads):
        for name, xs, ws, padding in CONV_CASES:
            x = rng.standard_normal(xs).astype(np.float32)
            w = rng.standard_normal(ws).astype(np.float32) * 0.1
            b = rng.standard_normal(ws[0]).astype(np.float32)
            g = rng.standard_normal(fc.conv_output_shape(xs, ws, padding=padding)).astype(np.float32)
            fns = {} if torch is None else {"torch": _torch_conv_step(torch, x, w, b, g, padding)}
            for alg in ("auto",) + fc.algorithms():
                fns["fastconv " + alg] = _conv_step(x, w, b, g, padding, alg)
            flops = 3 * fc.ConvGeometry.make(xs, ws, 1, padding).flops     # forward + two gradients
            rows += _rows(name, in_turns(fns, repeats, warmup=1), flops)
        step, tstep = _lenet_steps(torch, batch, rng)
        fns = {"fastconv": step} if tstep is None else {"torch": tstep, "fastconv": step}
        rows += _rows("LeNet-5 step, batch %d" % batch, in_turns(fns, repeats * 4, warmup=5))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "autograd.json"))
    a = p.parse_args(argv)
    rows = run(a.threads, a.repeats, a.batch)
    policy = omp_wait_policy()
    print("forward + backward, float32, %d threads, %s; vs_torch = median time / torch's median "
          "time, timed in turns in the same run" % (a.threads, policy))
    print(format_table(rows, ["case", "impl", "ms", "min_ms", "spread", "vs_torch", "gflops"]))
    save_json(a.json, rows, threads=a.threads, batch=a.batch, omp_wait_policy=policy,
              targets={"conv 3x3": 1.0, "conv 1x1": 0.2, "LeNet-5 step": 1.0})


if __name__ == "__main__":
    main()
