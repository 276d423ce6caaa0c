"""``auto`` against the fastest algorithm on every conv layer and single-channel image of ``fastconv bench``'s
default grid, in one run.

For each layer and op (forward; backward = input gradient + weight gradient, as ``fastconv bench`` times it; for
the images forward, input gradient and weight gradient apart) every registered algorithm and ``auto`` are timed
with interleaved repeats (medians; calls under a millisecond repeated within each timing), then ``auto`` and the
algorithms within 1.5x of the fastest again, in twice as many rounds of their own (the rounds of every algorithm
can take seconds, and the time budget then leaves only a few).  ``auto`` runs as a user calls it: with the
machine calibration (measured at its first use, or loaded from the cache directory).  The target is
``auto / fastest <= 1.15`` everywhere.  The calibration is reported (its file and how long it took,
when it ran in this process).

    python bench/bench_auto.py [--threads 2] [--repeats 7] [--json bench/results/auto.json]
"""
import argparse
import os
import time

import numpy as np

import fastconv as fc
from fastconv import _algorithms, _calibrate, grad
from fastconv.cli._problems import GRIDS
from fastconv.benchmark import blas_threads, format_table, interleaved, save_json

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = 1.15
# Algorithms within this factor of the fastest in the first rounds are timed again, with auto, in rounds of their
# own.
CONTENDER = 1.5


def _layers(grid="default"):
    return [s for s in GRIDS[grid] if s["kind"] in ("conv", "image")]


def _repeated(fns, least=1e-3):
    """``fns`` with each call repeated so that a timing of the fastest lasts at least ``least`` seconds (at most
    50 calls; the same count for all, so each round still hits every candidate alike), and that count."""
    import math
    t = []
    for fn in fns.values():
        fn()
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    n = min(50, max(1, math.ceil(least / max(min(t), 1e-7))))

    def loop(fn):
        def run():
            for _ in range(n):
                fn()
        return run
    return {k: loop(fn) for k, fn in fns.items()}, n


def run(threads=2, repeats=7, budget=3.0, grid="default"):
    rng = np.random.default_rng(0)
    rows = []
    with fc.num_threads(threads), blas_threads(threads):
        t0 = time.perf_counter()
        cal = _calibrate.current()
        cal_seconds = time.perf_counter() - t0
        for spec in _layers(grid):
            x = rng.standard_normal(spec["x"]).astype(np.float32)
            w = rng.standard_normal(spec["w"]).astype(np.float32)
            kw = dict(stride=spec["stride"], padding=spec["padding"], groups=spec["groups"])
            geom = fc.ConvGeometry.make(x.shape, w.shape, kw["stride"], kw["padding"], 1, kw["groups"])
            gy = rng.standard_normal(geom.output_shape).astype(np.float32)
            if spec["kind"] == "image":
                ops = ["forward", "grad_input", "grad_weight"]
            else:
                ops = ["forward"] + (["backward"] if spec["backward"] else [])
            for op in ops:
                fns = {}
                for alg in _algorithms.names() + ("auto",):
                    if alg != "auto":
                        a = _algorithms.get(alg)
                        need = ("grad_input", "grad_weight") if op == "backward" else (op,)
                        if not all(a.implements(o) and a.supports(geom, np.float32, o) for o in need):
                            continue
                        if sum(a.cost(geom, np.float32, o) for o in need) > 2.0:
                            continue     # seconds per call by its own model: far from the fastest
                    if op == "forward":
                        fns[alg] = lambda a=alg: fc.conv2d(x, w, **kw, algorithm=a)
                    elif op == "grad_input":
                        fns[alg] = lambda a=alg: grad.conv2d_input(x.shape, w, gy, **kw, algorithm=a)
                    elif op == "grad_weight":
                        fns[alg] = lambda a=alg: grad.conv2d_weight(x, w.shape, gy, **kw, algorithm=a)
                    else:
                        fns[alg] = lambda a=alg: (grad.conv2d_input(x.shape, w, gy, **kw, algorithm=a),
                                                  grad.conv2d_weight(x, w.shape, gy, **kw, algorithm=a))
                fns, calls = _repeated(fns)
                times = interleaved(fns, repeats, budget=budget, raw=True)
                med = {k: float(np.median(v)) / calls for k, v in times.items()}
                # the contenders (auto and every algorithm within CONTENDER of the fastest) again, on their own:
                # rounds of every algorithm of the grid can take seconds, and the budget then leaves three
                best = min((k for k in med if k != "auto"), key=med.get)
                close = {k: fn for k, fn in fns.items() if k == "auto" or med[k] <= CONTENDER * med[best]}
                times = interleaved(close, 2 * repeats, budget=budget, raw=True)
                med.update({k: float(np.median(v)) / calls for k, v in times.items()})
                best = min((k for k in med if k != "auto"), key=med.get)
                if op != "backward":
                    chosen = _algorithms.choose(geom, np.float32, op).name
                else:
                    chosen = "%s+%s" % (_algorithms.choose(geom, np.float32, "grad_input").name,
                                        _algorithms.choose(geom, np.float32, "grad_weight").name)
                rows.append(dict(layer=spec["name"], op=op, fastest=best, best_ms=med[best] * 1e3,
                                 auto=chosen, auto_ms=med["auto"] * 1e3, auto_over_best=med["auto"] / med[best],
                                 n=len(times["auto"]), contenders=len(close) - 1,
                                 **{"%s_ms" % k: v * 1e3 for k, v in med.items() if k != "auto"}))
    return rows, cal, cal_seconds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--grid", default="default", choices=sorted(GRIDS))
    p.add_argument("--json", default=os.path.join(HERE, "results", "auto.json"))
    a = p.parse_args(argv)
    rows, cal, cal_seconds = run(a.threads, a.repeats, grid=a.grid)
    info = fc.info(print_=False)
    load = os.getloadavg()[0]
    if cal is None:
        print("calibration: off (FASTCONV_CALIBRATE=off): built-in constants")
    else:
        print("calibration: %s (%s this run)" % (_calibrate.cache_path("calibration", cal["key"]),
                                                 "measured in %.1f s" % cal_seconds if cal_seconds > 0.2 else
                                                 "loaded"))
    print("threads %d, SIMD %s, load %.2f" % (a.threads, info["simd_level"], load))
    cols = ["layer", "op", "fastest", "best_ms", "auto", "auto_ms", "auto_over_best"]
    cols += sorted({k for r in rows for k in r if k.endswith("_ms") and k not in ("best_ms", "auto_ms")})
    print(format_table(rows, cols))
    worst = max(rows, key=lambda r: r["auto_over_best"])
    print("worst auto / fastest: %.2f (%s %s); target <= %.2f" % (worst["auto_over_best"], worst["layer"],
                                                                   worst["op"], TARGET))
    save_json(a.json, rows, threads=a.threads, load=load, calibrated=cal is not None, target=TARGET)


if __name__ == "__main__":
    main()
