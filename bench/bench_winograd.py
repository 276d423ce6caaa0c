"""Fewer multiplications: ``winograd`` and ``fft_tiles`` against torch and the other algorithms (issue 15).

Table 1 (the issue's table; float32, ``--threads`` threads, every contender timed in interleaved rounds in the same
run, ratio = median time / torch's median time):

* 8x64x56x56 -> 64 and 8x128x28x28 -> 128, 3x3 padding 1: forward (``auto`` and every algorithm) and forward +
  backward through the tape (input, weight and bias gradients);
* LeNet 64x6x14x14 -> 16, 5x5 and AlexNet conv1 8x3x227x227 -> 96, 11x11 stride 4: forward and forward + backward;

with GFLOP/s (2 N K C/g prod(k) prod(out) / time; three times that for forward + backward), the fraction of the
BLAS sgemm rate measured in the same run, and the forward error max|y - y64| / max|y64| against float64.  The CPU
model, the SIMD level of the kernels and the load average (before and after) are printed and saved.

Table 2 (``--accuracy``): max|y - y64| / max|y64| on standard-normal data (the maximum over ``--seeds`` draws) of
the forward pass and both gradients, for every tile kind -- F(4, 3) in 1-D, F(4x4, 3x3), F(4x4x4, 3x3x3),
3x3 blocks of larger kernels and polyphase strides, FFT tiles -- over C = 3 ... 512 input channels, float32 and
float64, next to ``direct`` (an ordinary dot product) and to F(4x4, 3x3) with the textbook points 0, +-1, +-2
(emulated in NumPy in float32 with the same products, for the documentation of the choice of points).

``--calibrate`` fits the cost-model constants of ``fastconv/_algos/winograd.py`` (``COST``, both tile families) to
single-threaded CPU times (robust to the load of a shared machine), in the units of the direct algorithm's model.

    python bench/bench_winograd.py [--threads 2] [--repeats 15] [--json bench/results/winograd.json]
    python bench/bench_winograd.py --accuracy [--seeds 2]
    python bench/bench_winograd.py --calibrate
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np  # noqa: E402

import fastconv as fc  # noqa: E402
from fastconv import Tensor, _algorithms, _kernels  # noqa: E402
from fastconv._algos import winograd as W  # noqa: E402
from fastconv.benchmark import blas_threads, cpu_model, format_table, save_json, sgemm_gflops, torch_or_none  # noqa: E402
from fastconv.nn import functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_fft import _cpu_time, _op_call  # noqa: E402  (single-threaded CPU time; one op of a conv call)

# (name, input, weight, stride, padding)
LAYERS = [
    ("resnet 3x3 64", (8, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    ("resnet 3x3 128", (8, 128, 28, 28), (128, 128, 3, 3), 1, 1),
    ("lenet 5x5", (64, 6, 14, 14), (16, 6, 5, 5), 1, 0),
    ("alexnet 11x11 s4", (8, 3, 227, 227), (96, 3, 11, 11), 4, 0),
]
TARGETS = {("resnet 3x3 64", "forward"): 0.7, ("resnet 3x3 128", "forward"): 0.7,
           ("resnet 3x3 64", "forward+backward"): 0.8, ("resnet 3x3 128", "forward+backward"): 0.8,
           ("lenet 5x5", "forward"): 1.0, ("alexnet 11x11 s4", "forward"): 1.0}


def load_average():
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover
        return float("nan")


def in_turns(fns, repeats, warmup=2):
    """name -> times (s): every callable once per round, ``repeats`` rounds after ``warmup``."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return times


def _step(x, w, b, g, s, p, alg):
    def step():
        xt, wt, bt = (Tensor._wrap(a).requires_grad_() for a in (x, w, b))
        F.conv2d(xt, wt, bt, stride=s, padding=p, algorithm=alg).backward(g)
    return step


def _torch_step(torch, x, w, b, g, s, p):
    xt, wt, bt, gt = (torch.from_numpy(a) for a in (x, w, b, g))

    def step():
        xs, ws, bs = (a.detach().requires_grad_() for a in (xt, wt, bt))
        torch.nn.functional.conv2d(xs, ws, bs, s, p).backward(gt)
    return step


def speed_rows(threads, repeats, rng):
    torch = torch_or_none(threads)
    algs = ("auto",) + fc.algorithms()
    rows = []
    with blas_threads(threads), fc.num_threads(threads):
        peak = sgemm_gflops(threads=threads)
        for name, xs, ws, s, p in LAYERS:
            x = rng.standard_normal(xs).astype(np.float32)
            w = (rng.standard_normal(ws) / np.sqrt(np.prod(ws[1:]))).astype(np.float32)
            b = rng.standard_normal(ws[0]).astype(np.float32)
            geom = fc.ConvGeometry.make(xs, ws, s, p)
            g = rng.standard_normal(geom.output_shape).astype(np.float32)
            y64 = fc.conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), s, p,
                            algorithm="direct")
            for kind in ("forward", "forward+backward"):
                if kind == "forward":
                    fns = {a: (lambda a=a: fc.conv2d(x, w, b, s, p, algorithm=a)) for a in algs}
                    if torch is not None:
                        xt, wt, bt = (torch.from_numpy(v) for v in (x, w, b))
                        fns["torch"] = lambda: torch.nn.functional.conv2d(xt, wt, bt, s, p)
                    with (torch.no_grad() if torch is not None else _null()):
                        times = in_turns(fns, repeats)
                else:
                    fns = {a: _step(x, w, b, g, s, p, a) for a in algs}
                    if torch is not None:
                        fns["torch"] = _torch_step(torch, x, w, b, g, s, p)
                    times = in_turns(fns, repeats)
                ref = statistics.median(times["torch"]) if "torch" in times else None
                flops = geom.flops * (1 if kind == "forward" else 3)
                for a, ts in times.items():
                    med = statistics.median(ts)
                    row = dict(layer=name, pass_=kind, impl=a, ms=med * 1e3, min_ms=min(ts) * 1e3,
                               vs_torch=None if ref is None else med / ref, gflops=flops / med / 1e9,
                               frac_sgemm=flops / med / 1e9 / peak, target=TARGETS.get((name, kind)))
                    if a == "auto":
                        row["chosen"] = _algorithms.choose(geom, np.float32, "forward").name
                    if kind == "forward" and a != "torch":
                        y = fc.conv2d(x, w, b, s, p, algorithm=a)
                        row["max_err"] = float(np.abs(y - y64).max() / np.abs(y64).max())
                    rows.append(row)
    return peak, rows


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ------------------------------------------------------------------------------------------------ accuracy
# (label, spatial dims, size, kernel, stride)
ACCURACY_CASES = [
    ("F(4,3) 1-D", 1, 256, 3, 1),
    ("F(4x4,3x3)", 2, 24, 3, 1),
    ("F(4x4x4,3x3x3)", 3, 10, 3, 1),
    ("5x5 (3x3 blocks)", 2, 24, 5, 1),
    ("11x11 stride 4 (polyphase)", 2, 59, 11, 4),
]
ACCURACY_CHANNELS = (3, 16, 64, 128, 256, 512)


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def _errors(nd, C, size, k, s, alg, dtype, rng, K=16, N=2):
    conv = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}[nd]
    gi = {1: fc.grad.conv1d_input, 2: fc.grad.conv2d_input, 3: fc.grad.conv3d_input}[nd]
    gw = {1: fc.grad.conv1d_weight, 2: fc.grad.conv2d_weight, 3: fc.grad.conv3d_weight}[nd]
    x = rng.standard_normal((N, C) + (size,) * nd)
    w = rng.standard_normal((K, C) + (k,) * nd)
    kw = dict(stride=s, padding=k // 2)
    y = conv(x, w, **kw, algorithm="direct")
    g = rng.standard_normal(y.shape)
    xd, wd, gd = (a.astype(dtype) for a in (x, w, g))
    return (_rel(conv(xd, wd, **kw, algorithm=alg), y),
            _rel(gi(x.shape, wd, gd, **kw, algorithm=alg), gi(x.shape, w, g, **kw, algorithm="direct")),
            _rel(gw(xd, w.shape, gd, **kw, algorithm=alg), gw(x, w.shape, g, **kw, algorithm="direct")))


def textbook_error(C, rng, points=("0", "1", "-1", "2", "-2"), size=26, K=16):
    """Forward error of F(4x4, 3x3) with the given points, emulated in NumPy: transforms and products in float32,
    filters transformed in float64 and rounded once (as the kernel does), valid correlation."""
    AT, G, BT = W.cook_toom(points)
    AT, BT = AT.astype(np.float32), BT.astype(np.float32)
    x = rng.standard_normal((C, size, size))
    w = rng.standard_normal((K, C, 3, 3))
    ref = sum(np.einsum("oc,chw->ohw", w[:, :, r, q], x[:, r:r + size - 2, q:q + size - 2])
              for r in range(3) for q in range(3))
    U = np.einsum("ak,ocks,bs->aboc", G, w, G).astype(np.float32)
    T = (size - 2) // 4
    d = np.stack([np.stack([x[:, 4 * i:4 * i + 6, 4 * j:4 * j + 6] for j in range(T)], 1) for i in range(T)], 1)
    V = np.einsum("ak,ctukl,bl->abctu", BT, d.astype(np.float32), BT, dtype=np.float32).reshape(6, 6, C, -1)
    M = np.einsum("aboc,abct->abot", U, V, dtype=np.float32)
    Y = np.einsum("ia,abot,jb->otij", AT, M, AT, dtype=np.float32).reshape(K, T, T, 4, 4)
    y = Y.transpose(0, 1, 3, 2, 4).reshape(K, 4 * T, 4 * T)
    return _rel(y, ref[:, :4 * T, :4 * T])


def accuracy_rows(seeds, rng):
    rows = []
    for label, nd, size, k, s in ACCURACY_CASES:
        for C in ACCURACY_CHANNELS:
            if nd == 3 and C > 256:
                continue
            for alg in ("winograd", "fft_tiles", "direct"):
                for dtype in (np.float32, np.float64):
                    e = np.max([_errors(nd, C, size, k, s, alg, dtype, rng) for _ in range(seeds)], axis=0)
                    rows.append(dict(case=label, C=C, algorithm=alg, dtype=np.dtype(dtype).name,
                                     forward=e[0], grad_input=e[1], grad_weight=e[2]))
    for C in ACCURACY_CHANNELS:
        for pts, label in ((W.POINTS, "F(4x4,3x3) points 0,+-3/4,+-3/2 (NumPy)"),
                           (("0", "1", "-1", "2", "-2"), "F(4x4,3x3) points 0,+-1,+-2 (NumPy)")):
            e = max(textbook_error(C, rng, pts) for _ in range(seeds))
            rows.append(dict(case=label, C=C, algorithm="emulated", dtype="float32", forward=e))
    return rows


# ------------------------------------------------------------------------------------------------ calibration
CALIBRATION = [
    ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ((8, 128, 28, 28), (128, 128, 3, 3), dict(padding=1)),
    ((2, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)),
    ((8, 16, 64, 64), (16, 16, 3, 3), dict(padding=1)),
    ((64, 6, 14, 14), (16, 6, 5, 5), dict()),
    ((8, 3, 227, 227), (96, 3, 11, 11), dict(stride=4)),
    ((4, 32, 56, 56), (32, 32, 5, 5), dict(padding=2)),
    ((4, 32, 56, 56), (32, 32, 7, 7), dict(padding=3)),
    ((8, 64, 32, 32), (64, 64, 3, 3), dict(stride=2, padding=1)),
    ((4, 32, 2048), (32, 32, 3), dict(padding=1)),
    ((2, 16, 16, 16, 16), (16, 16, 3, 3, 3), dict(padding=1)),
    ((8, 32, 28, 28), (32, 1, 3, 3), dict(padding=1, groups=32)),
]
DIRECT_PROBES = [((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)), ((8, 32, 28, 28), (32, 32, 5, 5), dict())]


def calibrate(repeats, rng, dtype=np.float32):
    """Fit COST[dtype] (non-negative least squares on relative error) to single-threaded CPU times; returns
    (table, direct's measured / modelled time, COST)."""
    from scipy.optimize import nnls
    item = np.dtype(dtype).itemsize
    names = sorted(W.COST[item == 4])
    samples = []
    with fc.num_threads(1), blas_threads(1):
        for xs, ws, kw in CALIBRATION:
            geom = fc.ConvGeometry.make(xs, ws, **kw)
            x = rng.standard_normal(xs).astype(dtype)
            w = rng.standard_normal(ws).astype(dtype)
            gy = rng.standard_normal(geom.output_shape).astype(dtype)
            for op in _algorithms.OPS:
                for alg in ("winograd", "fft_tiles"):
                    plan = W._plan(geom, op, item) if alg == "winograd" else W.fft_plan(geom, op, item)
                    t = _cpu_time(_op_call(op, alg, x, w, gy, kw), repeats)
                    samples.append((geom, op, alg, W.plan_terms(plan), t))
        ratio = []
        for xs, ws, kw in DIRECT_PROBES:
            geom = fc.ConvGeometry.make(xs, ws, **kw)
            x = rng.standard_normal(xs).astype(dtype)
            w = rng.standard_normal(ws).astype(dtype)
            t = _cpu_time(lambda: fc.conv2d(x, w, **kw, algorithm="direct"), repeats)
            ratio.append(t / _algorithms.get("direct").cost(geom, dtype, "forward"))
    load = float(np.median(ratio))
    A = np.array([[terms[n] / t for n in names] for _, _, _, terms, t in samples])
    coef, _ = nnls(A, np.ones(len(samples)))
    cost = {n: float(c) / load for n, c in zip(names, coef)}
    table = [dict(input=str(geom.input_shape), kernel=str(geom.kernel_size), op=op, algorithm=alg, ms=t * 1e3,
                  model_over_measured=float(fit))
             for (geom, op, alg, _, t), fit in zip(samples, A @ coef)]
    return table, load, cost


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--accuracy", action="store_true", help="the error table instead of the speed table")
    ap.add_argument("--calibrate", action="store_true", help="fit the cost-model constants instead")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    info = dict(cpu=cpu_model(), simd=_kernels.simd_level(), threads=args.threads, load_before=load_average())
    if args.calibrate:
        for dtype in (np.float32, np.float64):
            table, load, cost = calibrate(max(3, args.repeats // 3), rng, dtype)
            print("%s: direct measured / modelled = %.2f; fitted COST[%s]:" % (
                np.dtype(dtype).name, load, np.dtype(dtype).itemsize == 4))
            print("  {" + ", ".join('"%s": %.3g' % kv for kv in sorted(cost.items())) + "}")
            print(format_table(table, ["input", "kernel", "op", "algorithm", "ms", "model_over_measured"]))
        return
    start = time.perf_counter()
    if args.accuracy:
        rows = accuracy_rows(args.seeds, rng)
        print("max|y - y64| / max|y64|, standard-normal data, %d draws" % args.seeds)
        print(format_table(rows, ["case", "C", "algorithm", "dtype", "forward", "grad_input", "grad_weight"],
                           floatfmt="%.2g"))
        save_json(args.json or os.path.join(results, "winograd_accuracy.json"), rows, seeds=args.seeds, **info)
        return
    peak, rows = speed_rows(args.threads, args.repeats, rng)
    info["load_after"] = load_average()
    print("%s, kernels %s, %d threads, load average %.1f before / %.1f after; sgemm %.0f GFLOP/s in this run"
          % (info["cpu"], info["simd"], args.threads, info["load_before"], info["load_after"], peak))
    print("vs_torch = median time / torch's median time, contenders timed in turns (%d rounds)" % args.repeats)
    print(format_table(rows, ["layer", ("pass_", "pass"), "impl", "ms", "min_ms", "vs_torch", "target", "chosen",
                              "gflops", "frac_sgemm", "max_err"]))
    print("\n(%.0f s)" % (time.perf_counter() - start))
    save_json(args.json or os.path.join(results, "winograd.json"), rows, sgemm_gflops=peak, repeats=args.repeats,
              **info)


if __name__ == "__main__":
    main()
