"""Conv2d forward on the reference layers: every algorithm against torch.nn.functional.conv2d, same run.

Reports time ratio to torch, GFLOP/s (2 N K C/g kh kw H_out W_out / time) and the fraction of the BLAS sgemm rate
measured in the same run with the same thread count, plus the 1 -> 2 thread speed-up of each algorithm.

    python bench/bench_conv.py [--threads 2] [--repeats 7] [--json bench/results/conv.json]
"""
import argparse
import os

import numpy as np

import fastconv as fc
from fastconv.benchmark import (REFERENCE_LAYERS, blas_threads, format_table, save_json, sgemm_gflops, timeit,
                                torch_or_none)

# (name, input shape, weight shape, stride, padding): the reference layers of every convolution benchmark
LAYERS = REFERENCE_LAYERS


def run(threads=2, repeats=7, layers=LAYERS, dtype=np.float32):
    rng = np.random.default_rng(0)
    torch = torch_or_none(threads)
    rows = []
    with blas_threads(threads):
        peak = sgemm_gflops(threads=threads)
        for name, xs, ws, stride, padding in layers:
            x = rng.standard_normal(xs).astype(dtype)
            w = rng.standard_normal(ws).astype(dtype)
            geom = fc.ConvGeometry.make(xs, ws, stride, padding)
            t_torch = None
            if torch is not None:
                xt, wt = torch.from_numpy(x), torch.from_numpy(w)
                with torch.no_grad():
                    t_torch = timeit(lambda: torch.nn.functional.conv2d(xt, wt, None, stride, padding),
                                     repeats=repeats)["median"]
            ref = fc.conv2d(x, w, None, stride, padding, algorithm="direct")
            for alg in fc.algorithms():
                with fc.num_threads(threads):
                    t = timeit(lambda: fc.conv2d(x, w, None, stride, padding, algorithm=alg), repeats=repeats)
                with fc.num_threads(1), blas_threads(1):
                    t1 = timeit(lambda: fc.conv2d(x, w, None, stride, padding, algorithm=alg),
                                repeats=max(3, repeats // 2))
                err = float(np.abs(fc.conv2d(x, w, None, stride, padding, algorithm=alg) - ref).max())
                gflops = geom.flops / t["median"] / 1e9
                rows.append(dict(layer=name, algorithm=alg, ms=t["median"] * 1e3, spread=t["spread"],
                                 torch_ms=None if t_torch is None else t_torch * 1e3,
                                 vs_torch=None if t_torch is None else t["median"] / t_torch,
                                 gflops=gflops, frac_sgemm=gflops / peak,
                                 speedup_1to2=t1["median"] / t["median"], max_err=err))
    return peak, rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "conv.json"))
    a = p.parse_args(argv)
    peak, rows = run(a.threads, a.repeats)
    print("sgemm %.1f GFLOP/s with %d threads (measured in this run)" % (peak, a.threads))
    print(format_table(rows, ["layer", "algorithm", "ms", "torch_ms", "vs_torch", "gflops", "frac_sgemm",
                              "speedup_1to2", "max_err"]))
    save_json(a.json, rows, sgemm_gflops=peak, threads=a.threads)


if __name__ == "__main__":
    main()
