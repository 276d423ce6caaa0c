"""Compare every registered convolution algorithm with each other and with the installed peers.

The default workload (``fastconv bench``) takes about a minute on 2 cores: the reference layers (3x3 ResNet
layers, 1x1, 11x11 stride 4, 5x5 LeNet, a 31x31 large kernel, a channel sweep) forward and backward, and
single-channel images with kernels 3 to 63 forward, plus Gaussian filtering.  Peers that are installed are measured
in the same run: PyTorch (conv2d, autograd backward), scipy.ndimage (correlate, gaussian_filter), scipy.signal
(fftconvolve, oaconvolve) and scikit-image (filters.gaussian).

Each measurement is the median of repeats after a warm-up call (fewer repeats for slow calls, within a time
budget), with the spread (max - min) / median, GFLOP/s (2 N K C/g prod(kernel) prod(output) / time, forward; twice
that for backward: input and weight gradient), the fraction of the BLAS sgemm rate measured in the same run, the peak memory
allocated during one call (tracemalloc: NumPy buffers, BLAS/FFT workspaces), and the max error against the
direct algorithm relative to max |direct| (for reduced-accuracy algorithms such as ``winograd`` also their
documented bound, ``err_bound``).  ``auto`` is measured as a user would call it; the summary gives its
time over the fastest algorithm's for each layer.
"""
import csv
import json
import os
import sys
import time
import tracemalloc

import numpy as np

from .. import _algorithms, _threads
from .._geometry import ConvGeometry
from ..benchmark import REFERENCE_LAYERS, blas_threads, format_table, machine, sgemm_gflops, torch_or_none

__all__ = ["GRIDS", "HELP", "run", "main", "add_arguments", "summarize", "plot"]

HELP = "compare the convolution algorithms with each other and with installed peers"


def _conv(name, x, w, stride=1, padding=0, groups=1, backward=True):
    return dict(name=name, kind="conv", x=x, w=w, stride=stride, padding=padding, groups=groups, backward=backward)


def _image(n, k):
    return dict(name="image %d^2 k%d" % (n, k), kind="image", x=(1, 1, n, n), w=(1, 1, k, k), stride=1,
                padding="same", groups=1, backward=False, kernel=k)


def _gauss(shape, sigma):
    return dict(name="gaussian %s s%g" % ("x".join(map(str, shape)), sigma), kind="gaussian", shape=shape,
                sigma=sigma)


def _reference_layers():
    return [_conv(name, x, w, stride=s, padding=p) for name, x, w, s, p in REFERENCE_LAYERS]


GRIDS = {
    "quick": [
        _conv("tiny 3x3", (2, 8, 16, 16), (8, 8, 3, 3), padding=1),
        _image(64, 3), _image(64, 15),
        _gauss((64, 64), 2.0),
    ],
    "default": _reference_layers() + [
        _conv("large 31x31", (1, 16, 128, 128), (16, 16, 31, 31), padding=15),
        _conv("depthwise 3x3", (8, 64, 56, 56), (64, 1, 3, 3), padding=1, groups=64),
        _conv("channels 16", (8, 16, 28, 28), (16, 16, 3, 3), padding=1),
        _conv("channels 64", (8, 64, 28, 28), (64, 64, 3, 3), padding=1),
        _conv("channels 256", (8, 256, 28, 28), (256, 256, 3, 3), padding=1, backward=False),
        _image(512, 3), _image(512, 7), _image(512, 15), _image(512, 31), _image(512, 63),
        _gauss((1024, 1024), 3.0),
    ],
    "full": _reference_layers() + [
        _conv("resnet 3x3 256", (8, 256, 14, 14), (256, 256, 3, 3), padding=1),
        _conv("large 31x31", (1, 16, 256, 256), (16, 16, 31, 31), padding=15),
        _conv("depthwise 3x3", (8, 64, 56, 56), (64, 1, 3, 3), padding=1, groups=64),
        _conv("transposed-size 4x4 s2", (8, 32, 56, 56), (64, 32, 4, 4), stride=2, padding=1),
    ] + [_conv("channels %d" % c, (8, c, 28, 28), (c, c, 3, 3), padding=1) for c in (8, 16, 32, 64, 128, 256)]
      + [_conv("kernel %d c16" % k, (1, 16, 128, 128), (16, 16, k, k), padding=k // 2) for k in (3, 7, 15, 31)]
      + [_image(2048, k) for k in (3, 7, 15, 31, 63)]
      + [_gauss((2048, 2048), s) for s in (1.0, 3.0, 8.0)] + [_gauss((2048, 2048, 3), 3.0)],
}


def _measure(fn, repeats, budget):
    """A warm-up call traced by tracemalloc (its output and peak allocation are returned), then up to
    ``repeats`` timed calls within ``budget`` seconds (at least one).

    Returns ``(output, peak_mb, median_s, spread, n)``.
    """
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        out = fn()
        first = time.perf_counter() - t0
        peak_mb = tracemalloc.get_traced_memory()[1] / 2 ** 20
    finally:
        tracemalloc.stop()
    n = int(max(1, min(repeats, budget / max(first, 1e-9))))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    return out, peak_mb, med, (times[-1] - times[0]) / med if med > 0 else 0.0, n


def _rel_err(a, ref):
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / max(1e-30, np.abs(ref).max()))


def _conv_jobs(spec, dtype, rng, backward, peers, nthreads):
    """(impl, op, fn, output-or-None) for every algorithm and peer on one layer."""
    from .. import conv, grad
    x = rng.standard_normal(spec["x"]).astype(dtype)
    w = rng.standard_normal(spec["w"]).astype(dtype)
    kw = dict(stride=spec["stride"], padding=spec["padding"], groups=spec["groups"])
    geom = ConvGeometry.make(x.shape, w.shape, kw["stride"], kw["padding"], 1, kw["groups"])
    gy = rng.standard_normal(geom.output_shape).astype(dtype)
    jobs = []
    for alg in _algorithms.names() + ("auto",):
        jobs.append((alg, "forward", lambda a=alg: conv.conv2d(x, w, **kw, algorithm=a)))
        if backward and spec["backward"]:
            jobs.append((alg, "backward", lambda a=alg: (
                grad.conv2d_input(x.shape, w, gy, **kw, algorithm=a),
                grad.conv2d_weight(x, w.shape, gy, **kw, algorithm=a))))
    torch = torch_or_none(nthreads) if "torch" in peers else None
    if torch is not None:
        xt, wt, gyt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(gy)
        tkw = dict(kw)
        if tkw["padding"] == "same" and tkw["stride"] != 1:
            tkw = None
        if tkw is not None:
            def t_fwd():
                with torch.no_grad():
                    return torch.nn.functional.conv2d(xt, wt, None, **tkw).numpy()
            jobs.append(("torch", "forward", t_fwd))
            if backward and spec["backward"]:
                xr = xt.clone().requires_grad_(True)
                wr = wt.clone().requires_grad_(True)

                def t_bwd():
                    xr.grad = wr.grad = None
                    torch.nn.functional.conv2d(xr, wr, None, **tkw).backward(gyt)
                jobs.append(("torch", "backward", t_bwd))
    if spec["kind"] == "image":
        img, ker = x[0, 0], w[0, 0]
        if "scipy.ndimage" in peers:
            from scipy import ndimage
            # scipy.ndimage centres the kernel at k//2 (origin 0); 'same' zero padding puts the odd element of
            # an even kernel's padding on the right, i.e. origin -1 for even k.
            origin = 0 if ker.shape[0] % 2 else -1
            jobs.append(("scipy.ndimage", "forward", lambda: ndimage.correlate(img, ker, mode="constant",
                                                                               origin=origin)[None, None]))
        if "scipy.signal" in peers:
            from scipy import signal
            flipped = ker[::-1, ::-1]
            jobs.append(("scipy.signal.fftconvolve", "forward",
                         lambda: signal.fftconvolve(img, flipped, mode="same")[None, None]))
            jobs.append(("scipy.signal.oaconvolve", "forward",
                         lambda: signal.oaconvolve(img, flipped, mode="same")[None, None]))
    return geom, jobs


def _gauss_jobs(spec, dtype, rng, peers):
    from .. import filters
    img = rng.random(spec["shape"]).astype(dtype)
    ca = -1 if len(spec["shape"]) == 3 else None
    s = spec["sigma"]
    jobs = [("fastconv.filters", "forward", lambda: filters.gaussian(img, s, channel_axis=ca))]
    if "scikit-image" in peers:
        try:
            import skimage.filters
            jobs.append(("scikit-image", "forward", lambda: skimage.filters.gaussian(img, s, channel_axis=ca)))
        except ImportError:
            pass
    if "scipy.ndimage" in peers:
        from scipy import ndimage
        sig = (s, s, 0) if ca is not None else s
        jobs.append(("scipy.ndimage", "forward", lambda: ndimage.gaussian_filter(img, sig, mode="nearest")))
    return jobs


ALL_PEERS = ("torch", "scipy.ndimage", "scipy.signal", "scikit-image")


def run(grid="default", threads=None, dtype="float32", repeats=5, budget=0.3, backward=True, peers=ALL_PEERS,
        progress=True, max_estimate=1.0):
    """Run a grid; returns ``{"machine", "sgemm_gflops", "threads", "dtype", "results": [row, ...]}``."""
    layers = GRIDS[grid] if isinstance(grid, str) else list(grid)
    nthreads = _threads.effective_threads(threads)
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    rows = []
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(layers), desc="fastconv bench", unit="layer", file=sys.stderr)
        except ImportError:
            bar = None
    with _threads.num_threads(nthreads), blas_threads(nthreads):
        peak = sgemm_gflops(threads=nthreads, dtype=dtype)
        for spec in layers:
            if bar is not None:
                bar.set_postfix_str(spec["name"])
            if spec["kind"] == "gaussian":
                geom, jobs = None, _gauss_jobs(spec, dtype, rng, peers)
            else:
                geom, jobs = _conv_jobs(spec, dtype, rng, backward, peers, nthreads)
            outputs = {}
            for impl, op, fn in jobs:
                row = dict(layer=spec["name"], kind=spec["kind"], op=op, impl=impl)
                if "kernel" in spec:
                    row["kernel"] = spec["kernel"]
                if geom is not None:
                    row["channels"] = geom.in_channels
                    name = impl
                    if impl == "auto":
                        name = row["chosen"] = _algorithms.choose(geom, dtype, op if op == "forward"
                                                                  else "grad_input").name
                    if name in _algorithms.names():
                        alg = _algorithms.get(name)
                        if alg.error is not None and op == "forward":
                            row["err_bound"] = alg.error(geom, dtype, op)
                        est = alg.cost(geom, dtype, "forward") if op == "forward" else \
                            alg.cost(geom, dtype, "grad_input") + alg.cost(geom, dtype, "grad_weight")
                        if est > max_estimate:
                            row.update(skipped="estimated %.1f s per call" % est)
                            rows.append(row)
                            continue
                out, peak_mb, med, spread, n = _measure(fn, repeats, budget)
                row.update(ms=med * 1e3, spread=spread, repeats=n, peak_mb=peak_mb)
                if geom is not None:
                    row["gflops"] = geom.flops * (1 if op == "forward" else 2) / med / 1e9
                    row["frac_sgemm"] = row["gflops"] / peak
                if op == "forward":
                    outputs[impl] = np.asarray(out, np.float64)
                rows.append(row)
            # errors against the direct algorithm (conv layers) or scikit-image / scipy (Gaussian filtering)
            ref_impl = next((k for k in ("direct", "scikit-image", "scipy.ndimage") if k in outputs), None)
            for row in rows:
                if row["layer"] == spec["name"] and row["impl"] in outputs and ref_impl is not None \
                        and row["op"] == "forward":
                    ref = outputs[ref_impl]
                    got = outputs[row["impl"]]
                    if got.shape == ref.shape:
                        row["max_err"] = _rel_err(got, ref)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return {"machine": machine(), "sgemm_gflops": peak, "threads": nthreads, "dtype": dtype.name,
            "algorithms": list(_algorithms.names()),
            "grid": grid if isinstance(grid, str) else "custom", "results": rows}


def summarize(result):
    """Per layer and op: fastest algorithm, auto's choice and its time over the fastest, best vs each peer."""
    algs = set(_algorithms.names())
    out = []
    keys = []
    for r in result["results"]:
        k = (r["layer"], r["op"])
        if k not in keys:
            keys.append(k)
    for layer, op in keys:
        rs = [r for r in result["results"] if r["layer"] == layer and r["op"] == op and "ms" in r]
        mine = [r for r in rs if r["impl"] in algs or r["impl"] == "fastconv.filters"]
        if not mine:
            continue
        best = min(mine, key=lambda r: r["ms"])
        row = dict(layer=layer, op=op, fastest=best["impl"], best_ms=best["ms"])
        auto = [r for r in rs if r["impl"] == "auto"]
        if auto:
            row["auto"] = auto[0].get("chosen")
            row["auto_over_best"] = auto[0]["ms"] / best["ms"]
        peers = [r for r in rs if r["impl"] not in algs and r["impl"] not in ("auto", "fastconv.filters")]
        if peers:
            fastest_peer = min(peers, key=lambda r: r["ms"])
            row["best_peer"] = fastest_peer["impl"]
            row["vs_best_peer"] = best["ms"] / fastest_peer["ms"]
        out.append(row)
    return out


def plot(result, directory):
    """Write crossover.png (time vs kernel size), gflops_channels.png and speedup_peers.png into directory."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(directory, exist_ok=True)
    rows = [r for r in result["results"] if "ms" in r]
    paths = []
    img = [r for r in rows if r["kind"] == "image"]
    if img:
        fig, ax = plt.subplots(figsize=(6, 4))
        for impl in sorted({r["impl"] for r in img}):
            pts = sorted((r["kernel"], r["ms"]) for r in img if r["impl"] == impl)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=impl)
        ax.set(xscale="log", yscale="log", xlabel="kernel size k (k x k)", ylabel="ms (median)",
               title="Single-channel image: time vs kernel size")
        ks = sorted({r["kernel"] for r in img})
        ax.set_xticks(ks, [str(k) for k in ks], minor=False)
        ax.set_xticks([], minor=True)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(os.path.join(directory, "crossover.png"))
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    ch = [r for r in rows if r["layer"].startswith("channels") and r["op"] == "forward" and "gflops" in r]
    if ch:
        fig, ax = plt.subplots(figsize=(6, 4))
        for impl in sorted({r["impl"] for r in ch}):
            pts = sorted((r["channels"], r["gflops"]) for r in ch if r["impl"] == impl)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=impl)
        ax.axhline(result["sgemm_gflops"], color="k", ls="--", lw=0.8, label="sgemm (same run)")
        ax.set(xscale="log", xlabel="channels (C = K, 3x3, 28x28, batch 8)", ylabel="GFLOP/s",
               title="Forward GFLOP/s vs channels")
        cs = sorted({r["channels"] for r in ch})
        ax.set_xticks(cs, [str(c) for c in cs], minor=False)
        ax.set_xticks([], minor=True)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(os.path.join(directory, "gflops_channels.png"))
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    summ = [s for s in summarize(result) if "vs_best_peer" in s]
    if summ:
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(summ) + 1.5))
        labels = ["%s (%s)" % (s["layer"], s["op"]) for s in summ]
        speed = [1.0 / s["vs_best_peer"] for s in summ]
        ax.barh(labels, speed, color=["tab:green" if v >= 1 else "tab:red" for v in speed])
        ax.axvline(1.0, color="k", lw=0.8)
        ax.set(xscale="log", xlabel="speed-up of fastest fastconv algorithm over the fastest peer")
        fig.tight_layout()
        paths.append(os.path.join(directory, "speedup_peers.png"))
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


TABLE = ["layer", "op", "impl", "chosen", "ms", "spread", "gflops", "frac_sgemm", "peak_mb", "max_err", "err_bound",
         "skipped"]
SUMMARY = ["layer", "op", "fastest", "best_ms", "auto", "auto_over_best", "best_peer", "vs_best_peer"]


def add_arguments(p):
    p.add_argument("--grid", choices=sorted(GRIDS), default="default", help="workload (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="threads for fastconv, BLAS and torch")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="precision of every measurement (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats after warm-up (default: %(default)s)")
    p.add_argument("--budget", type=float, default=0.3, help="seconds of timed repeats per measurement "
                   "(default: %(default)s)")
    p.add_argument("--max-estimate", type=float, default=1.0,
                   help="skip an algorithm whose cost model predicts more seconds per call (default: %(default)s)")
    p.add_argument("--no-backward", action="store_true", help="forward only")
    p.add_argument("--peers", default=",".join(ALL_PEERS),
                   help="comma-separated peers to measure if installed (default: all), or 'none'")
    p.add_argument("--json", metavar="PATH", help="write all results as JSON")
    p.add_argument("--csv", metavar="PATH", help="write all results as CSV")
    p.add_argument("--plot", metavar="DIR", help="write PNG plots into DIR (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args):
    """Entry point of ``fastconv bench`` (``args`` from :func:`add_arguments`)."""
    if args.repeats < 1:
        raise ValueError("--repeats must be at least 1, got %d" % args.repeats)
    if args.threads is not None and args.threads < 1:
        raise ValueError("--threads must be at least 1, got %d" % args.threads)
    peers = () if args.peers == "none" else tuple(p.strip() for p in args.peers.split(",") if p.strip())
    unknown = set(peers) - set(ALL_PEERS)
    if unknown:
        raise ValueError("--peers: unknown peer(s) %s; choose from %s" % (sorted(unknown), ", ".join(ALL_PEERS)))
    res = run(args.grid, args.threads, args.dtype, args.repeats, args.budget, not args.no_backward, peers,
              progress=not args.no_progress, max_estimate=args.max_estimate)
    print("fastconv bench: grid=%s dtype=%s threads=%d; BLAS GEMM %.1f GFLOP/s in this run"
          % (res["grid"], res["dtype"], res["threads"], res["sgemm_gflops"]))
    print(format_table(res["results"], TABLE))
    print()
    summary = summarize(res)
    print(format_table(summary, SUMMARY))
    res["summary"] = summary
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=float)
    if args.csv:
        os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
        with open(args.csv, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=sorted({k for r in res["results"] for k in r}))
            wr.writeheader()
            wr.writerows(res["results"])
    if args.plot:
        for path in plot(res, args.plot):
            print("wrote", path)
    return 0

