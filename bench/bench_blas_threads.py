"""Sharing the cores with BLAS: a convolution right after a NumPy matmul, alone, and with each remedy.

OpenBLAS's worker threads keep spinning after every multi-threaded call (2**OPENBLAS_THREAD_TIMEOUT TSC cycles,
default 2**28, about 0.1 s) on the cores fastconv's OpenMP threads need next.  For every mechanism this script
measures, in one process and with interleaved repeats, the 3x3 layer (8 x 128 x 28^2 -> 128, pad 1) alone (after
an idle pause) and right after a 1536^2 ``a @ a``, and the cost of the mechanism on NumPy's own BLAS calls:

``OpenBLAS threads``   NumPy imported before fastconv, ``FASTCONV_SHARE_BLAS_THREADS=0``: OpenBLAS runs its own
                      worker threads, which keep their 0.1 s spin (fastconv's default before it shared them)
``default``           NumPy imported before fastconv, nothing set: OpenBLAS's parallel work runs on fastconv's
                      OpenMP threads (``fastconv.share_blas_threads``)
and, each with OpenBLAS's own threads (``FASTCONV_SHARE_BLAS_THREADS=0``), the other remedies:
``fastconv first``    fastconv imported before NumPy: it sets OPENBLAS_THREAD_TIMEOUT (its default) first
``timeout=K``         the user sets OPENBLAS_THREAD_TIMEOUT=K before starting Python
``threadpoolctl 1``   the matmul runs under ``threadpool_limits(1)`` (no worker wakes; the matmul is slower)
``fastconv.matmul``   the product runs on fastconv's threads (single-threaded BLAS inside OpenMP)

Columns: conv alone (ms), conv after the product (ms), their ratio, the product's time relative to NumPy's
multi-threaded ``a @ a`` on OpenBLAS's own threads with their default spin (``matmul_cost``), and a burst of 200
back-to-back 384^2 products relative to the same burst there (``burst_cost``).

    python bench/bench_blas_threads.py [--threads 2] [--repeats 15] [--json bench/results/blas_threads.json]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CHILD = r'''
import os, sys, json, time, statistics
order = os.environ["BENCH_ORDER"]
if order == "fastconv":
    import fastconv as fc
    import numpy as np
else:
    import numpy as np
    import fastconv as fc
from threadpoolctl import threadpool_limits, threadpool_info
threads, repeats, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
fc.set_num_threads(threads)
rng = np.random.default_rng(0)
x = rng.standard_normal((8, 128, 28, 28)).astype(np.float32)
w = rng.standard_normal((128, 128, 3, 3)).astype(np.float32)
a = rng.standard_normal((1536, 1536)).astype(np.float32)
s = rng.standard_normal((384, 384)).astype(np.float32)
PAUSE = 0.3     # longer than OpenBLAS's default spin (2**28 cycles)

def conv():
    fc.conv2d(x, w, None, 1, 1, algorithm=os.environ.get("BENCH_ALG", "direct"))

if mode == "threadpoolctl":
    def product(m):
        with threadpool_limits(1, user_api="blas"):
            return m @ m
elif mode == "fastconv":
    def product(m):
        return fc.matmul(m, m)
else:
    def product(m):
        return m @ m

with threadpool_limits(threads, user_api="blas"):
    conv(); product(a); conv()
    alone, after, prod = [], [], []
    for _ in range(repeats):
        time.sleep(PAUSE)
        t0 = time.perf_counter(); conv(); alone.append(time.perf_counter() - t0)
        time.sleep(PAUSE)
        t0 = time.perf_counter(); product(a); t1 = time.perf_counter(); conv(); t2 = time.perf_counter()
        prod.append(t1 - t0); after.append(t2 - t1)
    bursts = []
    for _ in range(3):
        time.sleep(PAUSE)
        t0 = time.perf_counter()
        for _ in range(200):
            product(s)
        bursts.append(time.perf_counter() - t0)
timeouts = {}
import ctypes
for d in threadpool_info():
    if d.get("internal_api") == "openblas":
        try:
            timeouts[os.path.basename(d["filepath"])] = ctypes.CDLL(d["filepath"]).openblas_thread_timeout()
        except (OSError, AttributeError):
            pass
med = statistics.median
print(json.dumps(dict(alone_ms=med(alone) * 1e3, after_ms=med(after) * 1e3, ratio=med(after) / med(alone),
                      product_ms=med(prod) * 1e3, burst_ms=med(bursts) * 1e3, load=os.getloadavg()[0],
                      simd=fc.info(print_=False)["simd_level"], blas_timeout=timeouts)))
'''

OWN = {"FASTCONV_SHARE_BLAS_THREADS": "0"}
MECHANISMS = [
    # (name, import order, extra environment, product mode); the first row is the reference of the costs
    ("OpenBLAS threads", "numpy", OWN, "numpy"),
    ("default", "numpy", {}, "numpy"),
    ("fastconv first", "fastconv", OWN, "numpy"),
    ("timeout=4", "numpy", dict(OWN, OPENBLAS_THREAD_TIMEOUT="4"), "numpy"),
    ("timeout=20", "numpy", dict(OWN, OPENBLAS_THREAD_TIMEOUT="20"), "numpy"),
    ("threadpoolctl 1", "numpy", OWN, "threadpoolctl"),
    ("fastconv.matmul", "numpy", OWN, "fastconv"),
]


def run(threads=2, repeats=15, algorithm="direct"):
    rows = []
    env0 = {k: v for k, v in os.environ.items()
            if k not in ("OPENBLAS_THREAD_TIMEOUT", "FASTCONV_SHARE_BLAS_THREADS")}
    env0["PYTHONPATH"] = ROOT + os.pathsep + env0.get("PYTHONPATH", "")
    env0["BENCH_ALG"] = algorithm
    for name, order, extra, mode in MECHANISMS:
        env = dict(env0, BENCH_ORDER=order, **extra)
        out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(repeats), mode], env=env,
                             capture_output=True, text=True, check=True)
        row = dict(mechanism=name, **json.loads(out.stdout.strip().splitlines()[-1]))
        rows.append(row)
    base = rows[0]
    for r in rows:
        r["matmul_cost"] = r["product_ms"] / base["product_ms"]
        r["burst_cost"] = r["burst_ms"] / base["burst_ms"]
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--algorithm", default="direct")
    p.add_argument("--json", default=os.path.join(HERE, "results", "blas_threads.json"))
    a = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    from fastconv.benchmark import format_table, save_json
    rows = run(a.threads, a.repeats, a.algorithm)
    print("conv2d %s 8x128x28^2 3x3 pad 1, %d threads, after a 1536^2 float32 matmul" % (a.algorithm, a.threads))
    print(format_table(rows, ["mechanism", "alone_ms", "after_ms", "ratio", "product_ms", "matmul_cost",
                              "burst_cost", "load", "simd"]))
    save_json(a.json, rows, threads=a.threads, algorithm=a.algorithm)


if __name__ == "__main__":
    main()
