"""fastconv.ndimage / fastconv.filters against OpenCV, scipy.ndimage and scikit-image, measured in one run.

Every figure of issue 18's speed targets, as ``ratio = fastconv time / peer time`` (below 1: fastconv faster):

* against OpenCV (2-D, 2048x2048, same dtype, the equivalent border): median_filter 3/5/7 uint8 and 3/5 float32
  vs cv2.medianBlur (replicate border = mode 'nearest', target <= 1.5), maximum/minimum_filter 15x15 vs
  cv2.dilate/erode (replicate = 'nearest', <= 1.0), uniform_filter 15 vs cv2.blur (reflect-101 = 'mirror',
  <= 1.0), gaussian_filter sigma 1/3/8 vs cv2.GaussianBlur (same kernel size, 'mirror', <= 1.0), correlate
  k = 3/7/15/31 vs cv2.filter2D ('mirror', <= 1.0);
* against scipy/scikit-image: gaussian_laplace and gaussian_gradient_magnitude sigma 3 (<= 0.1 x scipy),
  difference_of_gaussians (<= 0.1 x skimage), and median / maximum size 3 on a 256^3 volume (<= 0.1 x scipy);
* a coverage row for every fastconv.ndimage function against scipy.ndimage (2048x2048 float32).

Candidates are timed in interleaved rounds (``fastconv.benchmark.interleaved``: median of the rounds after a
warm-up) so machine load hits them alike; a peer slower than ``--slow`` seconds is timed in fewer rounds.
OpenCV runs with ``--threads`` threads (cv2.setNumThreads), fastconv with the same; scipy and scikit-image are
single-threaded as users call them.  The load average is printed with the table.

    PYTHONPATH=$PWD python bench/bench_ndimage.py [--threads 2] [--repeats 7] [--only opencv,scipy,coverage]
                                                  [--json bench/results/ndimage.json]
"""
import argparse
import os
import time

import numpy as np
import scipy.ndimage as sndi

import fastconv as fc
import fastconv.filters as ff
from fastconv import ndimage as fndi
from fastconv.benchmark import format_table, interleaved, machine, save_json

try:
    import cv2
except ImportError:  # pragma: no cover - the OpenCV rows are skipped
    cv2 = None

N = 2048
VOL = 256


def _gauss_ksize(sigma, truncate=4.0):
    return 2 * int(truncate * sigma + 0.5) + 1


def opencv_cases(rng):
    if cv2 is None:
        return []
    f32 = rng.random((N, N), dtype=np.float32)
    u8 = (rng.random((N, N)) * 255).astype(np.uint8)
    cases = []
    for k in (3, 5, 7):
        cases.append(("median_filter %d uint8" % k, lambda k=k: fndi.median_filter(u8, k, mode="nearest"),
                      "cv2.medianBlur", lambda k=k: cv2.medianBlur(u8, k), 1.5))
    for k in (3, 5):
        cases.append(("median_filter %d float32" % k, lambda k=k: fndi.median_filter(f32, k, mode="nearest"),
                      "cv2.medianBlur", lambda k=k: cv2.medianBlur(f32, k), 1.5))
    se = np.ones((15, 15), np.uint8)
    for dt, img in (("float32", f32), ("uint8", u8)):
        cases.append(("maximum_filter 15 %s" % dt, lambda img=img: fndi.maximum_filter(img, 15, mode="nearest"),
                      "cv2.dilate", lambda img=img: cv2.dilate(img, se, borderType=cv2.BORDER_REPLICATE), 1.0))
        cases.append(("minimum_filter 15 %s" % dt, lambda img=img: fndi.minimum_filter(img, 15, mode="nearest"),
                      "cv2.erode", lambda img=img: cv2.erode(img, se, borderType=cv2.BORDER_REPLICATE), 1.0))
    cases.append(("uniform_filter 15 float32", lambda: fndi.uniform_filter(f32, 15, mode="mirror"),
                  "cv2.blur", lambda: cv2.blur(f32, (15, 15), borderType=cv2.BORDER_REFLECT_101), 1.0))
    for s in (1, 3, 8):
        ks = _gauss_ksize(s)
        cases.append(("gaussian_filter s%d float32" % s, lambda s=s: fndi.gaussian_filter(f32, s, mode="mirror"),
                      "cv2.GaussianBlur",
                      lambda s=s, ks=ks: cv2.GaussianBlur(f32, (ks, ks), s, borderType=cv2.BORDER_REFLECT_101), 1.0))
    for k in (3, 7, 15, 31):
        w = rng.standard_normal((k, k)).astype(np.float32)
        cases.append(("correlate k%d float32" % k, lambda w=w: fndi.correlate(f32, w, mode="mirror"),
                      "cv2.filter2D",
                      lambda w=w: cv2.filter2D(f32, -1, w, borderType=cv2.BORDER_REFLECT_101), 1.0))
    return cases


def scipy_cases(rng):
    f32 = rng.random((N, N), dtype=np.float32)
    vol = rng.random((VOL, VOL, VOL), dtype=np.float32)
    cases = [
        ("gaussian_laplace s3 float32", lambda: fndi.gaussian_laplace(f32, 3), "scipy",
         lambda: sndi.gaussian_laplace(f32, 3), 0.1),
        ("gaussian_gradient_magnitude s3 float32", lambda: fndi.gaussian_gradient_magnitude(f32, 3), "scipy",
         lambda: sndi.gaussian_gradient_magnitude(f32, 3), 0.1),
    ]
    try:
        import skimage.filters as skf
        cases.append(("difference_of_gaussians 1,3 float32", lambda: ff.difference_of_gaussians(f32, 1, 3),
                      "skimage", lambda: skf.difference_of_gaussians(f32, 1, 3), 0.1))
    except ImportError:  # pragma: no cover
        pass
    cases += [
        ("median_filter 3 256^3 float32", lambda: fndi.median_filter(vol, 3), "scipy",
         lambda: sndi.median_filter(vol, 3), 0.1),
        ("maximum_filter 3 256^3 float32", lambda: fndi.maximum_filter(vol, 3), "scipy",
         lambda: sndi.maximum_filter(vol, 3), 0.1),
    ]
    return cases


def coverage_cases(rng):
    f32 = rng.random((N, N), dtype=np.float32)
    w7 = rng.standard_normal((7, 7))
    calls = [
        ("correlate", (w7,), {}), ("convolve", (w7,), {}), ("correlate1d", (np.arange(7.0),), {}),
        ("convolve1d", (np.arange(7.0),), {}), ("gaussian_filter", (3,), {}), ("gaussian_filter1d", (3,), {}),
        ("gaussian_laplace", (3,), {}), ("gaussian_gradient_magnitude", (3,), {}), ("laplace", (), {}),
        ("sobel", (), {}), ("prewitt", (), {}), ("uniform_filter", (15,), {}), ("uniform_filter1d", (15,), {}),
        ("minimum_filter", (15,), {}), ("maximum_filter", (15,), {}), ("minimum_filter1d", (15,), {}),
        ("maximum_filter1d", (15,), {}), ("median_filter", (5,), {}), ("rank_filter", (3,), {"size": 5}),
        ("percentile_filter", (75,), {"size": 5}),
        ("generic_gradient_magnitude", (None,), {}), ("generic_laplace", (None,), {}),
    ]
    cases = []
    for name, args, kw in calls:
        fa = tuple(fndi.sobel if a is None and name == "generic_gradient_magnitude" else a for a in args)
        sa = tuple(sndi.sobel if a is None and name == "generic_gradient_magnitude" else a for a in args)
        if name == "generic_laplace":
            fa = (lambda x, ax, out, mode, cval: fndi.correlate1d(x, [1, -2, 1], ax, out, mode, cval),)
            sa = (lambda x, ax, out, mode, cval: sndi.correlate1d(x, [1, -2, 1], ax, out, mode, cval),)
        cases.append((name + " float32", lambda name=name, fa=fa, kw=kw: getattr(fndi, name)(f32, *fa, **kw),
                      "scipy", lambda name=name, sa=sa, kw=kw: getattr(sndi, name)(f32, *sa, **kw), None))
    return cases


def run(cases, repeats, slow):
    rows = []
    for name, fast, peer_name, peer, target in cases:
        t0 = time.perf_counter()
        peer()
        tp = time.perf_counter() - t0
        reps = repeats if tp < slow else max(1, min(repeats, 2))
        t = interleaved({"fastconv": fast, "peer": peer}, reps)
        ratio = t["fastconv"] / t["peer"]
        row = {"case": name, "peer": peer_name, "fastconv_ms": 1e3 * t["fastconv"], "peer_ms": 1e3 * t["peer"],
               "ratio": ratio, "target": target if target is not None else float("nan"),
               "met": "" if target is None else ("yes" if ratio <= target else "NO")}
        rows.append(row)
        print("%-42s %-17s ratio %6.3f %s" % (name, peer_name, ratio, row["met"]), flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--slow", type=float, default=1.0, help="peers slower than this (s) run in 2 rounds")
    ap.add_argument("--only", default="opencv,scipy,coverage")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    fc.set_num_threads(args.threads)
    if cv2 is not None:
        cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(0)
    groups = {"opencv": opencv_cases, "scipy": scipy_cases, "coverage": coverage_cases}
    rows = []
    load0 = os.getloadavg()
    for g in args.only.split(","):
        rows += run(groups[g](rng), args.repeats, args.slow)
    load1 = os.getloadavg()
    print()
    print(format_table(rows, ["case", "peer", "fastconv_ms", "peer_ms", "ratio", "target", "met"]))
    print("machine: %s; SIMD %s; threads %d; load average %.2f -> %.2f" % (
        machine(), fc._kernels.simd_level(), args.threads, load0[0], load1[0]))
    if args.json:
        save_json(args.json, rows, threads=args.threads, simd=fc._kernels.simd_level(),
                  load=[load0[0], load1[0]])


if __name__ == "__main__":
    main()
