"""direct against the BLAS sgemm rate on the two 3x3 reference layers, at every SIMD level this CPU runs.

The issue's targets: on an AVX-512 machine ``direct`` reaches >= 0.6 of the sgemm rate on both 3x3 layers
(8 x 64 x 56^2 -> 64 and 8 x 128 x 28^2 -> 128, padding 1), on an AVX2 machine >= 0.55.  One run, interleaved
repeats: each round times the sgemm reference (1536^2, multi-threaded BLAS), lets the BLAS workers go idle,
then each layer at each level (``fastconv._kernels.use_level``); medians.  GFLOP/s are
2 N K C/g kh kw H_out W_out / time; ``frac_sgemm`` is that over the sgemm rate of the same run.

    python bench/bench_simd.py [--threads 2] [--repeats 9] [--json bench/results/simd.json]
"""
import argparse
import os
import statistics
import time

import numpy as np

import fastconv as fc
from fastconv import _kernels
from fastconv.benchmark import blas_idle, blas_threads, format_table, save_json

HERE = os.path.dirname(os.path.abspath(__file__))
LAYERS = [("resnet 3x3 64", (8, 64, 56, 56), (64, 64, 3, 3)), ("resnet 3x3 128", (8, 128, 28, 28), (128, 128, 3, 3))]
TARGET = {"avx512": 0.6, "avx2": 0.55}


def run(threads=2, repeats=9, levels=None):
    from scipy.linalg import blas
    levels = [lv for lv in (levels or _kernels.cpu_levels()) if lv not in _kernels.TEST_LEVELS]
    rng = np.random.default_rng(0)
    n = 1536
    a = np.asfortranarray(rng.standard_normal((n, n)).astype(np.float32))
    cases = []
    for name, xs, ws in LAYERS:
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        geom = fc.ConvGeometry.make(xs, ws, 1, 1)
        for lv in levels:
            cases.append((name, lv, geom.flops, lambda x=x, w=w: fc.conv2d(x, w, None, 1, 1, algorithm="direct")))
    times = {(c[0], c[1]): [] for c in cases}
    gemm = []
    with blas_threads(threads), fc.num_threads(threads):
        for name, lv, _, fn in cases:
            with _kernels.use_level(lv):
                fn()
        for _ in range(repeats):
            t0 = time.perf_counter()
            blas.sgemm(1.0, a, a)
            gemm.append(time.perf_counter() - t0)
            blas_idle()
            for name, lv, _, fn in cases:
                with _kernels.use_level(lv):
                    t0 = time.perf_counter()
                    fn()
                    times[(name, lv)].append(time.perf_counter() - t0)
    peak = 2 * n ** 3 / statistics.median(gemm) / 1e9
    rows = []
    for name, lv, flops, _ in cases:
        med = statistics.median(times[(name, lv)])
        gf = flops / med / 1e9
        rows.append(dict(layer=name, level=lv, ms=med * 1e3, gflops=gf, sgemm_gflops=peak, frac_sgemm=gf / peak,
                         target=TARGET.get(lv)))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--json", default=os.path.join(HERE, "results", "simd.json"))
    a = p.parse_args(argv)
    rows = run(a.threads, a.repeats)
    load = os.getloadavg()[0]
    print("threads %d, levels %s, load %.2f" % (a.threads, ", ".join(_kernels.cpu_levels()), load))
    print(format_table(rows, ["layer", "level", "ms", "gflops", "sgemm_gflops", "frac_sgemm", "target"]))
    save_json(a.json, rows, threads=a.threads, load=load)


if __name__ == "__main__":
    main()
