"""Per-call cost of fastconv's Python layers on small problems, and a before/after comparison of two checkouts.

On small arrays a call's time is mostly argument checks, geometry, algorithm choice and dispatch, so these cases
show what the layers around the kernels cost (float32, the default thread count):

* ``conv2d`` forward, 1x4x8x8 * 4x4x3x3 (direct) and 8x16x16x16 * 16x16x3x3 padding 1 (auto);
* ``grad.conv2d_input`` + ``grad.conv2d_weight`` on the second;
* a training step of one ``nn.Conv2d(16, 16, 3, padding=1)`` layer (forward, sum, backward) on the second input;
* one LeNet-5 training step (forward, cross-entropy, backward, Adam) on a batch of 8 1x32x32 images;
* ``max_pool2d`` with indices and ``avg_pool2d``'s gradient on 8x16x16x16, ``filters.gaussian`` on 64x64;
* with ``--layers``, also the reference layers of ``fastconv.benchmark.REFERENCE_LAYERS`` through the tape
  (forward + backward, ``algorithm="auto"``) and a LeNet-5 step on a batch of 64 -- where the kernels dominate.

    python bench/bench_overhead.py [--repeats 300]           # this checkout: microseconds per call (median)
    python bench/bench_overhead.py --compare DIR [--rounds 6] [--layers] [--cpu] [--threads 1] [--stat min]
                                   [--json PATH]

``--cpu`` measures the CPU time of the process (``time.process_time``, all threads) instead of wall-clock time:
on a busy shared machine it counts the work done rather than the time waited for a core.  ``--threads 1`` runs
the kernels on one thread (no waiting at barriers) and ``--stat min`` keeps each case's fastest call: together
the steadiest per-call figure on a loaded machine.

``--compare`` runs the cases in this checkout and in the checkout ``DIR`` (each with its own build) in
alternating subprocesses, ``rounds`` times each (order ABBA...), and reports per case the median over rounds
of (this / other): the load of a shared machine hits both alike.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def cases(layers=False):
    """{name: zero-argument callable}, built against whichever fastconv is on the path."""
    import numpy as np

    import fastconv as fc
    from fastconv import Tensor, nn
    from fastconv.examples.digits import lenet5
    from fastconv.nn import functional as F

    rng = np.random.default_rng(0)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)   # noqa: E731
    x1, w1 = r(1, 4, 8, 8), r(4, 4, 3, 3)
    x2, w2 = r(8, 16, 16, 16), r(16, 16, 3, 3)
    gy2 = r(8, 16, 16, 16)
    layer = nn.Conv2d(16, 16, 3, padding=1)
    xt = Tensor(x2)

    def conv_step():
        layer.zero_grad()
        layer(xt).sum().backward()

    nn.manual_seed(0)
    net = lenet5()
    opt = nn.Adam(net.parameters(), lr=1e-3)
    xb, yb = r(8, 1, 32, 32), rng.integers(0, 10, 8)

    def lenet_step():
        opt.zero_grad()
        F.cross_entropy(net(Tensor(xb)), yb).backward()
        opt.step()

    avg_backward = getattr(fc.grad, "avg_pool2d_backward", None) or fc.avg_pool2d_backward   # moved in 0.1
    pooled = fc.avg_pool2d(x2, 2)
    img = rng.random((64, 64)).astype(np.float32)
    out = {
        "conv2d 4x8x8 direct": lambda: fc.conv2d(x1, w1, algorithm="direct"),
        "conv2d 16x16x16 auto": lambda: fc.conv2d(x2, w2, padding=1),
        "grad input+weight": lambda: (fc.grad.conv2d_input(x2.shape, w2, gy2, padding=1),
                                      fc.grad.conv2d_weight(x2, w2.shape, gy2, padding=1)),
        "Conv2d layer step": conv_step,
        "LeNet-5 step b8": lenet_step,
        "max_pool2d idx": lambda: fc.max_pool2d(x2, 2, return_indices=True),
        "avg_pool2d backward": lambda: avg_backward(pooled, x2.shape, 2),
        "gaussian 64x64": lambda: fc.filters.gaussian(img, 1.0),
    }
    if layers:
        try:
            from fastconv.benchmark import REFERENCE_LAYERS
        except ImportError:   # a checkout from before the list moved there: the first layers of its bench grid
            from fastconv._bench import GRIDS
            REFERENCE_LAYERS = [(d["name"], d["x"], d["w"], d["stride"], d["padding"]) for d in GRIDS["default"][:5]]
        for name, xs, ws, stride, padding in REFERENCE_LAYERS:
            xl, wl = Tensor(r(*xs), requires_grad=True), Tensor(r(*ws), requires_grad=True)
            out["tape " + name] = (lambda xl=xl, wl=wl, s=stride, p=padding:
                                   F.conv2d(xl, wl, None, s, p).sum().backward())
        xb64, yb64 = r(64, 1, 32, 32), rng.integers(0, 10, 64)

        def lenet64():
            opt.zero_grad()
            F.cross_entropy(net(Tensor(xb64)), yb64).backward()
            opt.step()
        out["LeNet-5 step b64"] = lenet64
    return out


def measure(repeats, layers=False, cpu=False, threads=None, stat="median"):
    """{case: median (or min) seconds per call} over ``repeats`` calls after warm-up, cases taken in turns
    (heavy cases get a tenth of the repeats)."""
    import fastconv as fc
    if threads is not None:
        with fc.num_threads(threads):
            return measure(repeats, layers, cpu, None, stat)
    clock = time.process_time if cpu else time.perf_counter
    fns = cases(layers)
    times = {k: [] for k in fns}
    for fn in fns.values():
        for _ in range(2):
            fn()
    for i in range(repeats):
        for k, fn in fns.items():
            if (k.startswith("tape ") or k.endswith("b64")) and i % 10:
                continue
            t0 = clock()
            fn()
            times[k].append(clock() - t0)
    summary = min if stat == "min" else statistics.median
    return {k: summary(v) for k, v in times.items()}


def _run_in(tree, repeats, layers, cpu, threads, stat):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    env = dict(os.environ, PYTHONPATH=tree)
    flags = (["--layers"] if layers else []) + (["--cpu"] if cpu else []) + ["--stat", stat]
    flags += ["--threads", str(threads)] if threads else []
    subprocess.run([sys.executable, os.path.abspath(__file__), "--repeats", str(repeats), "--raw", path] + flags,
                   cwd=tree, env=env, check=True)
    with open(path) as f:
        res = json.load(f)
    os.unlink(path)
    return res


def compare(other, rounds, repeats, layers=False, cpu=False, threads=None, stat="median"):
    """{case: (median of this/other over rounds, min, max, this us, other us)}."""
    this = os.path.dirname(HERE)
    runs = {this: [], other: []}
    for i in range(rounds):
        order = (this, other) if i % 2 == 0 else (other, this)
        for tree in order:
            runs[tree].append(_run_in(tree, repeats, layers, cpu, threads, stat))
    out = {}
    for k in runs[this][0]:
        ratios = [a[k] / b[k] for a, b in zip(runs[this], runs[other])]
        out[k] = (statistics.median(ratios), min(ratios), max(ratios),
                  statistics.median(a[k] for a in runs[this]) * 1e6, statistics.median(b[k] for b in runs[other]) * 1e6)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=300)
    p.add_argument("--compare", metavar="DIR", help="another checkout (with its kernels built) to compare with")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--layers", action="store_true", help="also the reference layers and a batch-64 LeNet-5 step")
    p.add_argument("--cpu", action="store_true", help="measure process CPU time instead of wall-clock time")
    p.add_argument("--threads", type=int, default=None, help="fastconv threads (default: fastconv's default)")
    p.add_argument("--stat", choices=("median", "min"), default="median", help="per-case summary of the calls")
    p.add_argument("--json", metavar="PATH", help="write the comparison as JSON")
    p.add_argument("--raw", metavar="PATH", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.raw:
        with open(a.raw, "w") as f:
            json.dump(measure(a.repeats, a.layers, a.cpu, a.threads, a.stat), f)
        return 0
    if not a.compare:
        for k, v in measure(a.repeats, a.layers, a.cpu, a.threads, a.stat).items():
            print("%-24s %9.1f us" % (k, v * 1e6))
        return 0
    load = os.getloadavg()
    res = compare(os.path.abspath(a.compare), a.rounds, a.repeats, a.layers, a.cpu, a.threads, a.stat)
    print("this checkout / %s: median of %d alternated runs (min-max) of the per-case %s %s time, threads %s; "
          "load %s -> %s" % (a.compare, a.rounds, a.stat, "CPU" if a.cpu else "wall-clock", a.threads or "default",
                             load, os.getloadavg()))
    for k, (ratio, lo, hi, us_this, us_other) in res.items():
        print("%-24s %6.3f  (%5.3f-%5.3f)  %9.1f us vs %9.1f us" % (k, ratio, lo, hi, us_this, us_other))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({k: dict(ratio=v[0], min=v[1], max=v[2], us_this=v[3], us_other=v[4]) for k, v in res.items()},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
