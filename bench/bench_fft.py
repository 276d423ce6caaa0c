"""The ``fft`` algorithm against its peers, every figure a ratio of times measured in the same run (float32).

Table 1 (the targets of issue 4):

* ``1x16x256x256 -> 16, 31x31, padding 15``: fft against torch's conv2d (target: <= 0.1x torch's time);
* a single-channel 2048x2048 image, kernels 3, 7, 15, 31, 63, 'same' true convolution (``flip=True``): fft
  against ``scipy.signal.fftconvolve`` and ``scipy.signal.oaconvolve`` (target: <= 0.5x the faster of the two for
  kernels >= 15).

Table 2, the crossover: ``1 x C x S x S -> C`` channels, k x k kernels, 'same' padding, for every kernel size and
channel count, the time of each of direct / toeplitz / fft (those registered), which is fastest, and which one
``algorithm="auto"`` picks from the cost models.

``--calibrate`` fits the cost-model constants of ``fastconv/_algos/fft.py`` (``COST``) to measured times of
forward and backward calls on a spread of geometries, each with either channel-sum path (non-negative least
squares on relative error).  Times are single-threaded process CPU times, which other processes on a shared
machine disturb far less than wall time, and the constants are expressed in the units of the direct algorithm's
model: scaled by (direct's modelled time / direct's CPU time) measured the same way in the same run.  Both
algorithms parallelise over independent work, so the ratio carries over to the default thread count.

Candidates are timed in interleaved rounds (median of all rounds after warm-up) so that machine load hits them
alike; fastconv uses ``--threads`` threads, torch the same, and the scipy peers run single-threaded as they do
by default.

    python bench/bench_fft.py [--threads 2] [--repeats 5] [--size 128] [--json bench/results/fft.json]
    python bench/bench_fft.py --calibrate
"""
import argparse
import contextlib
import os
import sys
import time

import numpy as np

import fastconv as fc
from fastconv import _algorithms
from fastconv._algos import fft as F
from fastconv.benchmark import format_table, save_json, torch_or_none

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fastconv.benchmark import interleaved  # noqa: E402

TORCH_CASE = ((1, 16, 256, 256), (16, 16, 31, 31), 15)
IMAGE = 2048
IMAGE_KERNELS = (3, 7, 15, 31, 63)
CROSS_KERNELS = (3, 5, 7, 11, 15, 21, 31)
CROSS_CHANNELS = (1, 4, 16, 64)


def _err(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def torch_rows(threads, repeats, torch, rng):
    xs, ws, pad = TORCH_CASE
    x = rng.uniform(-1, 1, xs).astype(np.float32)
    w = rng.uniform(-1, 1, ws).astype(np.float32)
    fns = {"fft": lambda: fc.conv2d(x, w, padding=pad, algorithm="fft")}
    if torch is not None:
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)

        def run_torch():
            with torch.no_grad():
                return torch.nn.functional.conv2d(xt, wt, padding=pad).numpy()
        fns["torch"] = run_torch
    with fc.num_threads(threads):
        t = interleaved(fns, max(2, repeats // 2))
        err = _err(fns["fft"](), fns["torch"]()) if torch is not None else None
    return [dict(case="1x16x256x256 -> 16, 31x31, pad 15", peer="torch conv2d", fft_ms=t["fft"] * 1e3,
                 peer_ms=t["torch"] * 1e3 if "torch" in t else None,
                 ratio=t["fft"] / t["torch"] if "torch" in t else None, target="<= 0.1", max_rel_err=err)]


def image_rows(threads, repeats, rng):
    from scipy import signal
    img = rng.uniform(-1, 1, (IMAGE, IMAGE)).astype(np.float32)
    rows = []
    for k in IMAGE_KERNELS:
        ker = rng.uniform(-1, 1, (k, k)).astype(np.float32)
        def ours(n):
            with fc.num_threads(n):
                return fc.conv2d(img[None, None], ker[None, None], padding="same", flip=True, algorithm="fft")[0, 0]

        fns = {"fft": lambda: ours(threads), "fft1": lambda: ours(1),
               "fftconvolve": lambda: signal.fftconvolve(img, ker, "same"),
               "oaconvolve": lambda: signal.oaconvolve(img, ker, "same")}
        t = interleaved(fns, repeats)
        err = _err(fns["fft"](), fns["fftconvolve"]())
        best = min(t["fftconvolve"], t["oaconvolve"])
        geom = fc.ConvGeometry.make((1, 1, IMAGE, IMAGE), (1, 1, k, k), padding="same")
        plan = F._plan(geom, "forward", 4)
        rows.append(dict(case="%dx%d image, %dx%d 'same'" % (IMAGE, IMAGE, k, k), fft_ms=t["fft"] * 1e3,
                         fftconvolve_ms=t["fftconvolve"] * 1e3, oaconvolve_ms=t["oaconvolve"] * 1e3,
                         ratio=t["fft"] / best, target="<= 0.5" if k >= 15 else "", ratio_1thread=t["fft1"] / best,
                         tile="x".join(map(str, plan.L[1:])), tiles=plan.tiles, max_rel_err=err))
    return rows


def crossover_rows(threads, repeats, size, rng, kernels=CROSS_KERNELS, channels=CROSS_CHANNELS):
    algs = [a for a in ("direct", "toeplitz", "fft") if a in fc.algorithms()]
    rows = []
    for C in channels:
        for k in kernels:
            x = rng.uniform(-1, 1, (1, C, size, size)).astype(np.float32)
            w = rng.uniform(-1, 1, (C, C, k, k)).astype(np.float32)
            fns = {a: (lambda a=a: fc.conv2d(x, w, padding="same", algorithm=a)) for a in algs}
            with fc.num_threads(threads):
                t = interleaved(fns, max(2, repeats // 2))
                auto = _algorithms.choose(fc.ConvGeometry.make(x.shape, w.shape, padding="same"), np.float32).name
            fastest = min(t, key=t.get)
            row = dict(channels=C, kernel=k, fastest=fastest, auto=auto,
                       auto_vs_fastest=t[auto] / t[fastest] if auto in t else None)
            row.update({a + "_ms": t[a] * 1e3 for a in algs})
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------- calibration
CALIBRATION = [   # (input shape, weight shape, conv kwargs)
    ((1, 1, 2048, 2048), (1, 1, 15, 15), dict(padding="same")),
    ((1, 1, 2048, 2048), (1, 1, 63, 63), dict(padding="same")),
    ((1, 1, 1024, 1024), (1, 1, 5, 5), dict(padding="same")),
    ((1, 16, 256, 256), (16, 16, 31, 31), dict(padding=15)),
    ((1, 16, 128, 128), (16, 16, 9, 9), dict(padding=4)),
    ((4, 32, 64, 64), (32, 32, 7, 7), dict(padding=3)),
    ((2, 64, 64, 64), (64, 64, 15, 15), dict(padding=7)),
    ((1, 128, 32, 32), (128, 128, 11, 11), dict(padding=5)),
    ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ((1, 4, 200, 190), (8, 4, 21, 13), dict(stride=2, padding=(10, 6))),
    ((2, 8, 96, 96), (8, 1, 25, 25), dict(padding=12, groups=8)),
    ((4, 8, 4096), (8, 8, 127), dict(padding="same")),
    ((1, 4, 40, 40, 40), (4, 4, 9, 9, 9), dict(padding=4)),
    ((1, 1, 32, 32), (1, 1, 3, 3), dict(padding=1)),
    ((16, 4, 16, 16), (8, 4, 5, 5), dict(padding=2)),
    ((1, 256, 16, 16), (256, 256, 5, 5), dict(padding=2)),
    ((1, 2, 512, 512), (2, 2, 41, 41), dict(padding="same")),
]
DIRECT_PROBES = [
    ((1, 32, 64, 64), (32, 32, 7, 7), dict(padding=3)),
    ((8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ((1, 16, 128, 128), (16, 16, 9, 9), dict(padding=4)),
]


def _cpu_time(fn, repeats):
    """Least process CPU time of ``repeats`` calls after one warm-up (single-threaded runs: robust to load)."""
    fn()
    best = np.inf
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _op_call(op, algorithm, x, w, gy, kw):
    nd = x.ndim - 2
    if op == "forward":
        return lambda: getattr(fc, "conv%dd" % nd)(x, w, **kw, algorithm=algorithm)
    if op == "grad_input":
        return lambda: getattr(fc.grad, "conv%dd_input" % nd)(x.shape, w, gy, **kw, algorithm=algorithm)
    return lambda: getattr(fc.grad, "conv%dd_weight" % nd)(x, w.shape, gy, **kw, algorithm=algorithm)


@contextlib.contextmanager
def _forced(path, itemsize):
    """Plan with the ``path`` ('loop' or 'gemm') channel sum only."""
    c = F.COST[itemsize == 4]
    other = "gemm" if path == "loop" else "loop"
    saved = c[other]
    c[other] = 1.0
    F._plan.cache_clear()
    try:
        yield
    finally:
        c[other] = saved
        F._plan.cache_clear()


def calibrate(repeats, rng, dtype=np.float32):
    """Fit COST for ``dtype`` to single-threaded CPU times of CALIBRATION with either channel-sum path, in the
    units of direct's model; returns (table, direct's measured / modelled time, COST)."""
    from scipy.optimize import nnls
    itemsize = np.dtype(dtype).itemsize
    names = sorted(F.COST[itemsize == 4])
    samples = []
    with fc.num_threads(1):
        for xs, ws, kw in CALIBRATION:
            geom = fc.ConvGeometry.make(xs, ws, **kw)
            x = rng.uniform(-1, 1, xs).astype(dtype)
            w = rng.uniform(-1, 1, ws).astype(dtype)
            gy = rng.uniform(-1, 1, geom.output_shape).astype(dtype)
            for op in _algorithms.OPS:
                for path in ("loop", "gemm"):
                    with _forced(path, itemsize):
                        terms = dict(F._plan(geom, op, itemsize).terms)     # the plan that is timed
                        t = _cpu_time(_op_call(op, "fft", x, w, gy, kw), repeats)
                    samples.append((geom, op, path, terms, t))
        ratio = []
        for xs, ws, kw in DIRECT_PROBES:
            geom = fc.ConvGeometry.make(xs, ws, **kw)
            x = rng.uniform(-1, 1, xs).astype(dtype)
            w = rng.uniform(-1, 1, ws).astype(dtype)
            t = _cpu_time(lambda: fc.conv2d(x, w, **kw, algorithm="direct"), repeats)
            ratio.append(t / _algorithms.get("direct").cost(geom, dtype, "forward"))
    load = float(np.median(ratio))     # direct's measured / modelled time in this run
    A = np.array([[terms.get(n, 0.0) / t for n in names] for _, _, _, terms, t in samples])
    coef, _ = nnls(A, np.ones(len(samples)))
    cost = {n: float(c) / load for n, c in zip(names, coef)}
    table = [dict(input=str(geom.input_shape), kernel=str(geom.kernel_size), op=op, path=path, ms=t * 1e3,
                  model_over_measured=float(fit))
             for (geom, op, path, _, t), fit in zip(samples, A @ coef)]
    return table, load, cost


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=128, help="spatial size of the crossover table's input")
    ap.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                   "fft.json"))
    ap.add_argument("--only", choices=("torch", "image", "crossover"), help="run one table only")
    ap.add_argument("--calibrate", action="store_true", help="fit the cost-model constants instead")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    if args.calibrate:
        for dtype in (np.float32, np.float64):
            table, load, cost = calibrate(args.repeats, rng, dtype)
            print("%s: direct measured / modelled = %.2f; fitted COST[%s] in direct's units:" % (
                np.dtype(dtype).name, load, np.dtype(dtype).itemsize == 4))
            print("  {" + ", ".join('"%s": %.2g' % kv for kv in sorted(cost.items())) + "}")
            print(format_table(table, ["input", "kernel", "op", "path", "ms", "model_over_measured"]))
        return
    torch = torch_or_none(args.threads)
    start = time.perf_counter()
    run = (lambda name: args.only in (None, name))
    t1 = torch_rows(args.threads, args.repeats, torch, rng) if run("torch") else []
    t1b = image_rows(args.threads, args.repeats, rng) if run("image") else []
    t2 = crossover_rows(args.threads, args.repeats, args.size, rng) if run("crossover") else []
    if t1:
        print("Table 1a: fft vs torch (float32, %d threads)" % args.threads)
        print(format_table(t1, ["case", "fft_ms", "peer_ms", "ratio", "target", "max_rel_err"]))
    if t1b:
        print("\nTable 1b: fft (%d threads; ratio_1thread: one) vs scipy.signal (single-threaded), ratio to the "
              "faster peer" % args.threads)
        print(format_table(t1b, ["case", "fft_ms", "fftconvolve_ms", "oaconvolve_ms", "ratio", "target",
                                 "ratio_1thread", "tile", "tiles", "max_rel_err"]))
    if t2:
        algs = [a for a in ("direct", "toeplitz", "fft") if a in fc.algorithms()]
        print("\nTable 2: crossover, 1 x C x %d x %d -> C, 'same' (float32, %d threads)" % (
            args.size, args.size, args.threads))
        print(format_table(t2, ["channels", "kernel"] + [a + "_ms" for a in algs]
                           + ["fastest", "auto", "auto_vs_fastest"]))
    print("\n(%.0f s)" % (time.perf_counter() - start))
    save_json(args.json, t1 + t1b + t2, threads=args.threads, repeats=args.repeats, crossover_size=args.size)


if __name__ == "__main__":
    main()
