"""fastconv.filters against scipy.ndimage, scipy.signal and scikit-image, all measured in the same run.

* correlate, 2048x2048 float32, random (non-separable) k x k kernels, k = 3, 7, 15, 31, 63, mode 'reflect':
  fastconv (method auto) against the best of scipy.ndimage.correlate, scipy.signal.fftconvolve and oaconvolve
  (target <= 0.5x at every size);
* gaussian sigma = 1, 3, 8 on 2048x2048 float32 and sigma = 3 on 2048x2048x3 with channel_axis=-1 against
  skimage.filters.gaussian (target <= 0.25x, equal output);
* sobel on 2048x2048 float32 against skimage.filters.sobel (target <= 0.25x).

``ratio`` is fastconv with ``--threads`` threads over the best peer; ``ratio 1t`` the same with one fastconv
thread (on a busy shared machine the second core often is not available, so both are shown).

The peers run as users call them (single-threaded; scipy.ndimage has no thread option).  For transparency the
table also shows fftconvolve with ``scipy.fft.set_workers(threads)``, which is not part of the target.  Candidates
are timed in interleaved rounds (median of all repeats after a warm-up) so machine load hits them alike;
scipy.ndimage.correlate is timed once for k >= 31 (it takes seconds).  ``max_err`` is the largest difference to
the peer's output relative to its largest value (correlate: to scipy.ndimage.correlate in float64 where it was run).

    python bench/bench_filters.py [--threads 2] [--repeats 7] [--json bench/results/filters.json]
    python bench/bench_filters.py --calibrate     # the cost-model constants of fastconv/filters/_engine.py
"""
import argparse
import os
import sys

import numpy as np
import scipy.fft
import scipy.ndimage as ndi
import scipy.signal as sig

import fastconv as fc
import fastconv.filters as ff
from fastconv.benchmark import format_table, save_json, timeit
from fastconv.filters import _engine

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fastconv.benchmark import interleaved  # noqa: E402

SIZES = (3, 7, 15, 31, 63)
N = 2048


def rel_err(a, b):
    b = np.asarray(b, np.float64)
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


def _one_thread(fn, *args, **kw):
    """``fn`` with one fastconv thread: on a busy shared machine this ratio shows the single-core advantage."""
    with fc.num_threads(1):
        return fn(*args, **kw)


def correlate_rows(threads, repeats, rng):
    img = rng.random((N, N), dtype=np.float32)
    rows = []
    for k in SIZES:
        w = rng.standard_normal((k, k)).astype(np.float32)
        method = _engine.choose(img.shape, w.astype(np.float64), np.float32, threads,
                                _engine.rank1_factors(w, np.float32))
        fns = {"fastconv": lambda: ff.correlate(img, w, mode="reflect"),
               "fastconv_1t": lambda: _one_thread(ff.correlate, img, w, mode="reflect"),
               "fftconvolve": lambda: sig.fftconvolve(img, w, mode="same"),
               "oaconvolve": lambda: sig.oaconvolve(img, w, mode="same")}
        slow_ndi = k >= 31
        if not slow_ndi:
            fns["ndimage"] = lambda: ndi.correlate(img, w, mode="reflect")
        with fc.num_threads(threads):
            t = interleaved(fns, repeats)
            with scipy.fft.set_workers(threads):
                t_fft_mt = timeit(fns["fftconvolve"], repeats=max(3, repeats // 2), warmup=1)["median"]
            ours = fns["fastconv"]()
        ref = None
        if slow_ndi:
            ref = [None]
            t["ndimage"] = timeit(lambda: ref.__setitem__(0, ndi.correlate(img, w, mode="reflect")),
                                  repeats=1, warmup=0)["median"]
            ref = ref[0]
        else:
            ref = fns["ndimage"]()
        peers = {p: t[p] for p in ("ndimage", "fftconvolve", "oaconvolve")}
        best = min(peers, key=peers.get)
        rows.append(dict(case="correlate %dx%d k=%d" % (N, N, k), method=method, fastconv_ms=t["fastconv"] * 1e3,
                         ratio_1t=t["fastconv_1t"] / peers[best],
                         ndimage_ms=peers["ndimage"] * 1e3, fftconvolve_ms=peers["fftconvolve"] * 1e3,
                         oaconvolve_ms=peers["oaconvolve"] * 1e3, fftconvolve_mt_ms=t_fft_mt * 1e3,
                         best_peer=best, ratio=t["fastconv"] / peers[best], target=0.5,
                         max_err=rel_err(ours, ref)))
    return rows


def skimage_rows(threads, repeats, rng):
    import skimage.filters as skf
    img = rng.random((N, N), dtype=np.float32)
    rgb = rng.random((N, N, 3), dtype=np.float32)
    cases = [("gaussian %dx%d sigma=%g" % (N, N, s), lambda s=s: ff.gaussian(img, s),
              lambda s=s: skf.gaussian(img, sigma=s)) for s in (1, 3, 8)]
    cases.append(("gaussian %dx%dx3 sigma=3 channel_axis=-1" % (N, N), lambda: ff.gaussian(rgb, 3, channel_axis=-1),
                  lambda: skf.gaussian(rgb, sigma=3, channel_axis=-1)))
    cases.append(("sobel %dx%d" % (N, N), lambda: ff.sobel(img), lambda: skf.sobel(img)))
    rows = []
    for name, ours, theirs in cases:
        with fc.num_threads(threads):
            t = interleaved({"fastconv": ours, "fastconv_1t": lambda: _one_thread(ours), "skimage": theirs},
                            repeats)
            err = rel_err(ours(), theirs())
        rows.append(dict(case=name, method="separable" if name.startswith("gaussian") else "auto",
                         fastconv_ms=t["fastconv"] * 1e3, skimage_ms=t["skimage"] * 1e3, best_peer="skimage",
                         ratio=t["fastconv"] / t["skimage"], ratio_1t=t["fastconv_1t"] / t["skimage"], target=0.25,
                         max_err=err))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "filters.json"))
    p.add_argument("--calibrate", action="store_true", help="print the cost-model constants measured now")
    args = p.parse_args(argv)
    if args.calibrate:
        for key, val in _engine.calibrate().items():
            print(key, "=", val)
        return
    rng = np.random.default_rng(0)
    load = [os.getloadavg()[0]]                  # the machine may be shared: say how busy it was
    rows = correlate_rows(args.threads, args.repeats, rng)
    print(format_table(rows, ["case", "method", ("fastconv_ms", "fastconv ms"), ("ndimage_ms", "ndimage"),
                              ("fftconvolve_ms", "fftconvolve"), ("oaconvolve_ms", "oaconvolve"),
                              ("fftconvolve_mt_ms", "fftconv %dw" % args.threads), "best_peer", "ratio",
                              ("ratio_1t", "ratio 1t"), "target", "max_err"]))
    print()
    srows = skimage_rows(args.threads, args.repeats, rng)
    print(format_table(srows, ["case", ("fastconv_ms", "fastconv ms"), ("skimage_ms", "skimage ms"), "ratio",
                               ("ratio_1t", "ratio 1t"), "target", "max_err"]))
    load.append(os.getloadavg()[0])
    print("\nload average (1 min) at start / end: %.1f / %.1f on %d CPUs" % (load[0], load[1], os.cpu_count()))
    save_json(args.json, rows + srows, threads=args.threads, repeats=args.repeats, load_average=load)
    print("saved", args.json)


if __name__ == "__main__":
    main()
