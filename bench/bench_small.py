"""Small calls: per-call time of tiny problems against PyTorch and scikit-image, and a LeNet-5 training step.

Interleaved repeats in one run (medians of many calls; the calls are microseconds long):

* ``max_pool2d`` of a 1x1x4x4 array (2x2 window) against ``torch.nn.functional.max_pool2d`` -- target <= 3x;
* ``conv2d`` of a 1x1x4x4 array with a 3x3 kernel (padding 1) against ``torch.nn.functional.conv2d`` -- <= 1x;
* ``filters.gaussian`` of an 8x8 image against ``skimage.filters.gaussian`` -- <= 1x;
* one LeNet-5 training step at batch 64 (forward, cross-entropy, backward, SGD update) against the same model in
  PyTorch -- <= 0.8x;
* forward + backward through the tape of the 1x1 layer (8x256x28^2 -> 64), the LeNet 5x5 layer and the two 3x3
  layers against torch autograd -- <= 1.0x for 1x1 and 5x5; for the 3x3 layers at most the forward-only ratio
  + 20 %.

Both libraries run after :func:`fastconv.benchmark.settle_allocator` (one large array allocated and freed): in a
fresh process glibc maps every allocation above 128 KiB anew, and PyTorch's LeNet step then spends a third of its
time in page faults.  ``--fresh-allocator`` skips it.

    python bench/bench_small.py [--threads 2] [--json bench/results/small.json] [--fresh-allocator]
"""
import argparse
import os
import statistics
import time

import numpy as np

import fastconv as fc
from fastconv.benchmark import blas_threads, format_table, save_json, settle_allocator, torch_or_none
from fastconv._measure import balanced_orders

HERE = os.path.dirname(os.path.abspath(__file__))


def _interleaved(fns, rounds, calls):
    """{name: median seconds per call}: rounds of ``calls`` back-to-back calls of each candidate in turn."""
    for fn in fns.values():
        fn()
        fn()
    times = {k: [] for k in fns}
    items = list(fns.items())
    orders = balanced_orders(len(items))       # every candidate behind every other equally often
    for r in range(rounds):
        for i in orders[r % len(orders)]:
            k, fn = items[i]
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            times[k].append((time.perf_counter() - t0) / calls)
    return {k: statistics.median(v) for k, v in times.items()}


def tiny(torch, rounds=21, calls=200):
    rows = []
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    w = rng.standard_normal((1, 1, 3, 3)).astype(np.float32)
    img = rng.random((8, 8))
    cases = [("max_pool2d 1x1x4x4", 3.0, {"fastconv": lambda: fc.max_pool2d(x, 2)}),
             ("conv2d 1x1x4x4 3x3", 1.0, {"fastconv": lambda: fc.conv2d(x, w, padding=1)}),
             ("gaussian 8x8", 1.0, {"fastconv": lambda: fc.filters.gaussian(img, 1.0)})]
    if torch is not None:
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)

        def t_pool():
            with torch.no_grad():
                return torch.nn.functional.max_pool2d(xt, 2).numpy()

        def t_conv():
            with torch.no_grad():
                return torch.nn.functional.conv2d(xt, wt, padding=1).numpy()
        cases[0][2]["peer"] = t_pool
        cases[1][2]["peer"] = t_conv
        peers = {0: "torch", 1: "torch"}
    else:
        peers = {}
    try:
        import skimage.filters
        cases[2][2]["peer"] = lambda: skimage.filters.gaussian(img, 1.0)
        peers[2] = "scikit-image"
    except ImportError:
        pass
    for i, (name, target, fns) in enumerate(cases):
        t = _interleaved(fns, rounds, calls)
        row = dict(case=name, fastconv_us=t["fastconv"] * 1e6, target=target)
        if "peer" in t:
            row.update(peer=peers[i], peer_us=t["peer"] * 1e6, ratio=t["fastconv"] / t["peer"])
        rows.append(row)
    return rows


def lenet_step(torch, batch=64, rounds=15):
    """fastconv and torch LeNet-5 training steps (same architecture and data), seconds per step."""
    from fastconv import nn
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    opt = nn.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(fc.Tensor(x)), y)
        loss.backward()
        opt.step()
    fns = {"fastconv": step}
    if torch is not None:
        tnn = torch.nn
        tm = tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5),
                            tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(),
                            tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
        topt = torch.optim.SGD(tm.parameters(), lr=0.01)
        tl = tnn.CrossEntropyLoss()
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def tstep():
            topt.zero_grad()
            tl(tm(xt), yt).backward()
            topt.step()
        fns["torch"] = tstep
    t = _interleaved(fns, rounds, 5)
    row = dict(case="LeNet-5 step, batch %d" % batch, fastconv_us=t["fastconv"] * 1e6, target=0.8)
    if "torch" in t:
        row.update(peer="torch", peer_us=t["torch"] * 1e6, ratio=t["fastconv"] / t["torch"])
    return [row]


TAPE_LAYERS = [
    ("1x1 256->64", (8, 256, 28, 28), (64, 256, 1, 1), 1, 0, None),
    ("lenet 5x5", (64, 6, 14, 14), (16, 6, 5, 5), 1, 0, None),
    ("resnet 3x3 64", (8, 64, 56, 56), (64, 64, 3, 3), 1, 1, 0.2),
    ("resnet 3x3 128", (8, 128, 28, 28), (128, 128, 3, 3), 1, 1, 0.2),
]


def tape(torch, rounds=9):
    """Forward (no grad) and forward + backward through the tape, against torch, per layer (with bias)."""
    rows = []
    if torch is None:
        return rows
    rng = np.random.default_rng(0)
    for name, xs, ws, stride, padding, slack in TAPE_LAYERS:
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        b = rng.standard_normal(ws[0]).astype(np.float32)
        gy = rng.standard_normal(fc.ConvGeometry.make(xs, ws, stride, padding).output_shape).astype(np.float32)
        F = fc.nn.functional
        xt, wt, bt, gyt = (torch.from_numpy(a) for a in (x, w, b, gy))
        xr, wr, br = (t.clone().requires_grad_(True) for t in (xt, wt, bt))
        X, Wp, B = fc.Tensor(x, requires_grad=True), fc.Tensor(w, requires_grad=True), fc.Tensor(b, requires_grad=True)

        def f_fwd():
            with fc.no_grad():
                F.conv2d(X, Wp, B, stride, padding)

        def f_fb():
            X.grad = Wp.grad = B.grad = None
            F.conv2d(X, Wp, B, stride, padding).backward(gy)

        def t_fwd():
            with torch.no_grad():
                torch.nn.functional.conv2d(xt, wt, bt, stride, padding)

        def t_fb():
            xr.grad = wr.grad = br.grad = None
            torch.nn.functional.conv2d(xr, wr, br, stride, padding).backward(gyt)
        t = _interleaved({"f_fwd": f_fwd, "t_fwd": t_fwd, "f_fb": f_fb, "t_fb": t_fb}, rounds, 1)
        fwd, fb = t["f_fwd"] / t["t_fwd"], t["f_fb"] / t["t_fb"]
        target = 1.0 if slack is None else fwd + slack
        rows.append(dict(case="tape %s" % name, fastconv_us=t["f_fb"] * 1e6, peer="torch", peer_us=t["t_fb"] * 1e6,
                         ratio=fb, forward_ratio=fwd, target=target))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=os.path.join(HERE, "results", "small.json"))
    p.add_argument("--skip-tape", action="store_true", help="tiny calls and the LeNet step only")
    p.add_argument("--fresh-allocator", action="store_true",
                   help="leave glibc's mmap threshold at its start value (see settle_allocator)")
    a = p.parse_args(argv)
    torch = torch_or_none(a.threads)
    if not a.fresh_allocator:
        settle_allocator()
    with fc.num_threads(a.threads), blas_threads(a.threads):
        rows = tiny(torch) + lenet_step(torch) + ([] if a.skip_tape else tape(torch))
    for r in rows:
        if "ratio" in r:
            r["met"] = r["ratio"] <= r["target"]
    info = fc.info(print_=False)
    print("threads %d, SIMD %s, load %.2f, allocator %s" % (a.threads, info["simd_level"], os.getloadavg()[0],
                                                           "fresh" if a.fresh_allocator else "settled"))
    print(format_table(rows, ["case", "fastconv_us", "peer", "peer_us", "ratio", "forward_ratio", "target", "met"]))
    save_json(a.json, rows, threads=a.threads, load=os.getloadavg()[0], settled_allocator=not a.fresh_allocator)


if __name__ == "__main__":
    main()
