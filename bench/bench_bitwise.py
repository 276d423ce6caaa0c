"""Bitwise identity of results across thread counts and SIMD levels, per algorithm and op.

For every registered algorithm, the forward pass, input gradient and weight gradient of small members of each
layer class of ``fastconv bench``'s default grid (3x3, 1x1, LeNet 5x5, AlexNet-like 11x11 stride 4, depthwise, a
large kernel) are computed with 1 and 2 threads at every SIMD level this CPU runs, and compared bit for bit with
the 2-thread result at the default level.  Expected: identical across thread counts everywhere; identical across
the levels with FMA (avx512, avx2, avx2x2) except where the threads guide documents otherwise (``winograd`` and
``fft_tiles`` size their blocks of tiles in vector lanes: identical at the same vector width); the baseline
build (no FMA) differs in the last bits, reported as the largest relative difference.

    python bench/bench_bitwise.py [--json bench/results/bitwise.json]
"""
import argparse
import json
import os

import numpy as np

import fastconv as fc
from fastconv import _algorithms, _kernels
from fastconv.benchmark import machine

HERE = os.path.dirname(os.path.abspath(__file__))
LAYERS = [
    ("3x3", (2, 16, 14, 14), (16, 16, 3, 3), 1, 1, 1),
    ("1x1", (2, 32, 7, 7), (16, 32, 1, 1), 1, 0, 1),
    ("lenet 5x5", (16, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1),
    ("11x11 s4", (1, 3, 51, 51), (8, 3, 11, 11), 4, 2, 1),
    ("depthwise", (2, 16, 14, 14), (16, 1, 3, 3), 1, 1, 16),
    ("15x15", (1, 4, 40, 40), (4, 4, 15, 15), 1, 7, 1),
]


def _run(alg, x, w, gy, stride, padding, groups):
    kw = dict(stride=stride, padding=padding, groups=groups, algorithm=alg)
    return {"forward": fc.conv2d(x, w, **kw),
            "grad_input": fc.grad.conv2d_input(x.shape, w, gy, **kw),
            "grad_weight": fc.grad.conv2d_weight(x, w.shape, gy, **kw)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", default=os.path.join(HERE, "results", "bitwise.json"))
    args = p.parse_args(argv)
    levels = _kernels.cpu_levels()
    default = _kernels.level()
    rows = []
    for dtype in (np.float32, np.float64):
        for name, xs, ws, stride, padding, groups in LAYERS:
            rng = np.random.default_rng(0)
            x = rng.standard_normal(xs).astype(dtype)
            w = rng.standard_normal(ws).astype(dtype)
            gy = rng.standard_normal(fc.conv_output_shape(xs, ws, stride=stride, padding=padding,
                                                        groups=groups)).astype(dtype)
            geom = fc.ConvGeometry.make(xs, ws, stride=stride, padding=padding, groups=groups)
            for alg in _algorithms.names():
                if not _algorithms.get(alg).supports(geom, dtype, "forward"):
                    continue
                with fc.num_threads(2):
                    ref = _run(alg, x, w, gy, stride, padding, groups)
                for lv in levels:
                    for threads in (1, 2):
                        with _kernels.use_level(lv), fc.num_threads(threads):
                            got = _run(alg, x, w, gy, stride, padding, groups)
                        for op, a in got.items():
                            b = ref[op]
                            scale = float(np.abs(b).max()) or 1.0
                            rows.append(dict(dtype=np.dtype(dtype).name, layer=name, algorithm=alg, op=op,
                                             level=lv, threads=threads, identical=bool(np.array_equal(a, b)),
                                             max_rel_diff=float(np.abs(a - b).max()) / scale))
    summary = {}
    for r in rows:
        key = "%s %s threads=%d" % (r["algorithm"], r["level"], r["threads"])
        s = summary.setdefault(key, {"identical": 0, "differ": 0, "max_rel_diff": 0.0})
        s["identical" if r["identical"] else "differ"] += 1
        s["max_rel_diff"] = max(s["max_rel_diff"], r["max_rel_diff"])
    print("reference: 2 threads at %s; levels %s" % (default, ", ".join(levels)))
    print("%-34s %9s %6s %12s" % ("algorithm level threads", "identical", "differ", "max rel diff"))
    for key, s in summary.items():
        print("%-34s %9d %6d %12.1e" % (key, s["identical"], s["differ"], s["max_rel_diff"]))
    threads_ok = all(r["identical"] for r in rows if r["level"] == default)
    print("identical across thread counts at %s: %s" % (default, threads_ok))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "reference_level": default, "levels": list(levels),
                       "identical_across_threads": threads_ok, "summary": summary,
                       "differing": [r for r in rows if not r["identical"]]}, f, indent=None)


if __name__ == "__main__":
    main()
