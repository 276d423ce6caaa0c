"""Compare every registered convolution algorithm with each other and with the installed peers.

The default workload (``fastconv bench``) takes about a minute and a half on 2 cores: the reference layers (3x3
ResNet layers, 1x1, 11x11 stride 4, 5x5 LeNet, a 31x31 large kernel, depthwise, a channel sweep) forward and for
their input and weight gradients, single-channel images with kernels 3 to 63, max and average pooling forward and
backward, and Gaussian and Sobel filtering.  ``--layer`` measures layers of your own, ``--only`` a kind of
problem.  Peers are measured in the same run where installed: PyTorch (conv2d and its gradients, pooling),
scipy.ndimage and scipy.signal (single-channel images, Gaussian filter) and scikit-image (filters); the header says
which were found and which were skipped, and why.

Every candidate of a layer and op is called once to warm up (its peak memory traced), then in rounds: each round
calls every candidate once, in a new random order, so that load on a shared machine, caches and idle threads left
by the previous call hit all candidates alike, and two candidates can be compared round by round.  Printed: all
measurements, then per layer and op the fastest algorithm, whether its lead is real or within the noise, auto's
choice and its time over the fastest, and the fastest algorithm against the fastest peer -- every ratio as a time
over a time (>1: slower) -- then a legend.
"""
import csv
import gc
import json
import os
import random
import statistics
import sys
import textwrap
import time
import tracemalloc

import numpy as np

from .. import _algorithms, _threads
from .._geometry import ConvGeometry
from ..benchmark import blas_threads, format_table, machine, sgemm_gflops, torch_or_none
from ._args import nonneg_float, positive_int
from ._problems import GRIDS, KINDS, LAYER_HELP, parse_layer

__all__ = ["GRIDS", "KINDS", "HELP", "run", "main", "add_arguments", "summarize", "plot", "find_peers", "noise",
           "LEGEND", "render"]

HELP = "compare the convolution algorithms with each other and with installed peers"

ALL_PEERS = ("torch", "scipy.ndimage", "scipy.signal", "scikit-image")
OWN = "fastconv"          # the implementation name of fastconv's pooling and filter rows

# A lead counts as real when the slower implementation's time over the faster's, per round, is above 1 with this
# confidence (one-sided Student t on the logarithms of the per-round ratios: rounds interleave the candidates, so a
# round's ratio compares calls made moments apart, and the spread of the ratios is the noise the lead must beat).
CONFIDENCE = 0.95
# ... and by at least this factor (a lead of 1 % can be real within a run and still change with the machine's state).
MIN_LEAD = 1.03

RATIO_DIRECTION = "time of the implementation named first / time of the one named second: >1 slower, <1 faster"

LEGEND = [
    ("ms", "median time of one call over the rounds; every round calls each candidate of a layer and op once, "
           "in a new random order"),
    ("spread", "(slowest round - fastest round) / median: how noisy the measurement was"),
    ("x fastest", "this time / the fastest time on the same layer and op (>1: slower)"),
    ("eff GFLOP/s", "FLOPs of a direct convolution (2 N K C/g kh kw Hout Wout per forward or gradient) / time: an "
                    "effective rate for algorithms that multiply less (fft, winograd), so it can exceed the GEMM "
                    "peak"),
    ("of GEMM", "eff GFLOP/s / the BLAS GEMM rate measured in the same run"),
    ("peak MB", "memory NumPy allocates during one call (tracemalloc); n/a for torch, whose allocator it cannot "
                "see"),
    ("max err", "max |result - reference| / max |reference|, the reference computed in float64 (convolutions and "
                "pooling: fastconv's direct algorithm; filters: scikit-image, else scipy.ndimage)"),
    ("bound", "the error bound an algorithm documents (reduced-accuracy algorithms only)"),
    ("note", "auto: the algorithm it chose for this op; skipped: why the call was not measured"),
    ("grad_input, grad_weight", "the two halves of a backward pass (input and weight gradient); auto may choose "
                                "a different algorithm for each"),
    ("runner-up", "the second fastest algorithm; runner-up/fastest: its time over the fastest's (>1: slower)"),
    ("lead", "real: every other algorithm was slower than the fastest in every round, and by more than %d %% with "
             "%d %% confidence (one-sided t-test on the logarithms of the per-round time ratios): the lead beats the "
             "noise of the run; noise: not, so another run may rank them otherwise"
             % (round(100 * (MIN_LEAD - 1)), round(100 * CONFIDENCE))),
    ("auto/fastest", "auto's time / the fastest algorithm's (>1: slower)"),
    ("fastconv/peer", "the fastest fastconv implementation's time / the fastest peer's (>1: fastconv slower, <1: "
                      "faster); diff: real or noise, by the rule of 'lead'"),
]


# --------------------------------------------------------------------------------------------------- peers
def find_peers(requested=ALL_PEERS):
    """``(found, skipped)``: ``{peer: version}`` of the requested peers that import, ``{peer: reason}`` of the
    others (not installed, with what to install; or not requested)."""
    found, skipped = {}, {}
    for peer in ALL_PEERS:
        if peer not in requested:
            skipped[peer] = "not requested (--peers)"
            continue
        module, hint = {"torch": ("torch", 'pip install ".[torch]"'),
                        "scipy.ndimage": ("scipy", "pip install scipy"),
                        "scipy.signal": ("scipy", "pip install scipy"),
                        "scikit-image": ("skimage", "pip install scikit-image")}[peer]
        try:
            version = __import__(module).__version__
        except ImportError:
            skipped[peer] = "not installed (%s)" % hint
            continue
        found[peer] = version
    return found, skipped


# --------------------------------------------------------------------------------------------------- candidates
class _Candidate:
    """One implementation of one op on one problem: ``fn()`` returns its result."""

    def __init__(self, impl, fn, traced=True, note=None, chosen=None, bound=None):
        self.impl, self.fn, self.traced, self.note, self.chosen, self.bound = impl, fn, traced, note, chosen, bound
        self.out = self.peak_mb = self.first = self.failed = None
        self.times = []


def _rel_err(got, ref):
    got = np.asarray(got, np.float64)
    if got.shape != ref.shape:
        return None
    return float(np.abs(got - ref).max() / max(1e-300, np.abs(ref).max())) if ref.size else 0.0


def _conv_ops(spec, backward):
    return ("forward", "grad_input", "grad_weight") if backward and spec["backward"] else ("forward",)


def _conv_problem(spec, dtype, rng, ops, peers, nthreads, max_estimate):
    """``{op: ([candidates], [skipped rows], reference())}`` for a conv or image problem, and its geometry."""
    from .. import conv, grad
    kw = dict(stride=spec["stride"], padding=spec["padding"], dilation=spec["dilation"], groups=spec["groups"])
    geom = ConvGeometry.make(spec["x"], spec["w"], kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    x = rng.standard_normal(geom.input_shape).astype(dtype)
    w = rng.standard_normal(geom.weight_shape).astype(dtype)
    gy = rng.standard_normal(geom.output_shape).astype(dtype)
    x64, w64, gy64 = x.astype(np.float64), w.astype(np.float64), gy.astype(np.float64)

    def call(op, a, arrays=(x, w, gy)):
        xx, ww, gg = arrays
        if op == "forward":
            return conv.conv2d(xx, ww, **kw, algorithm=a)
        if op == "grad_input":
            return grad.conv2d_input(xx.shape, ww, gg, **kw, algorithm=a)
        return grad.conv2d_weight(xx, ww.shape, gg, **kw, algorithm=a)

    torch = torch_or_none(nthreads) if "torch" in peers else None
    if torch is not None:
        xt, wt, gyt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(gy)
        tpad = tuple(lo for lo, _ in geom.padding) if geom.symmetric_padding else None
        tkw = dict(stride=geom.stride, dilation=geom.dilation, groups=geom.groups)

        def torch_call(op):
            if op == "forward":
                pad = tpad if tpad is not None else ("same" if spec["padding"] == "same" and geom.stride == (1, 1)
                                                     else None)
                if pad is None:
                    return None
                return lambda: torch.nn.functional.conv2d(xt, wt, None, padding=pad, **tkw).numpy()
            if tpad is None:
                return None
            if op == "grad_input":
                return lambda: torch.nn.grad.conv2d_input(xt.shape, wt, gyt, padding=tpad, **tkw).numpy()
            return lambda: torch.nn.grad.conv2d_weight(xt, wt.shape, gyt, padding=tpad, **tkw).numpy()

    problems = {}
    for op in ops:
        cands, skipped = [], []
        for name in _algorithms.names():
            alg = _algorithms.get(name)
            bound = alg.error(geom, dtype, op) if getattr(alg, "error", None) is not None else None
            if not alg.implements(op) or not alg.supports(geom, dtype, op):
                skipped.append((name, "not supported for this layer"))
                continue
            est = alg.cost(geom, dtype, op)
            if est > max_estimate:
                skipped.append((name, "estimated %.1f s per call (--max-estimate %g)" % (est, max_estimate)))
                continue
            cands.append(_Candidate(name, lambda a=name, o=op: call(o, a), bound=bound))
        chosen = _algorithms.choose(geom, dtype, op).name
        cands.append(_Candidate("auto", lambda o=op: call(o, "auto"), note="chose " + chosen, chosen=chosen))
        if torch is not None:
            fn = torch_call(op)
            if fn is None:
                skipped.append(("torch", "padding torch cannot express"))
            else:
                cands.append(_Candidate("torch", fn, traced=False))
        if spec["kind"] == "image" and op == "forward":
            img, ker = x[0, 0], w[0, 0]
            if "scipy.ndimage" in peers:
                from scipy import ndimage
                # scipy.ndimage centres the kernel at k//2 (origin 0); 'same' zero padding puts the odd element of
                # an even kernel's padding on the right, i.e. origin -1 for even k.
                origin = 0 if ker.shape[0] % 2 else -1
                cands.append(_Candidate("scipy.ndimage", lambda: ndimage.correlate(img, ker, mode="constant",
                                                                                   origin=origin)[None, None]))
            if "scipy.signal" in peers:
                from scipy import signal
                flipped = ker[::-1, ::-1]
                cands.append(_Candidate("scipy.signal.fftconvolve",
                                        lambda: signal.fftconvolve(img, flipped, mode="same")[None, None]))
                cands.append(_Candidate("scipy.signal.oaconvolve",
                                        lambda: signal.oaconvolve(img, flipped, mode="same")[None, None]))
        problems[op] = (cands, skipped, lambda o=op: call(o, "direct", (x64, w64, gy64)))
    return geom, problems


def _pool_problem(spec, dtype, rng, backward, peers, nthreads):
    from .. import grad, pooling
    x = rng.standard_normal(spec["x"]).astype(dtype)
    k, s, p = spec["kernel"], spec["stride"], spec["padding"]
    if spec["pool"] == "max":
        y, idx = pooling.max_pool2d(x, k, s, p, return_indices=True)
        fwd = lambda a: pooling.max_pool2d(a, k, s, p, return_indices=True)[0]  # noqa: E731
        gy = rng.standard_normal(y.shape).astype(dtype)
        bwd = lambda g: grad.max_pool_backward(g, idx, x.shape)  # noqa: E731
    else:
        y = pooling.avg_pool2d(x, k, s, p)
        fwd = lambda a: pooling.avg_pool2d(a, k, s, p)  # noqa: E731
        gy = rng.standard_normal(y.shape).astype(dtype)
        bwd = lambda g: grad.avg_pool2d_backward(g, x.shape, k, s, p)  # noqa: E731
    x64, gy64 = x.astype(np.float64), gy.astype(np.float64)
    problems = {"forward": ([_Candidate(OWN, lambda: fwd(x))], [], lambda: fwd(x64))}
    if backward:
        problems["backward"] = ([_Candidate(OWN, lambda: bwd(gy))], [], lambda: bwd(gy64))
    torch = torch_or_none(nthreads) if "torch" in peers else None
    if torch is not None:
        tx, tg = torch.from_numpy(x), torch.from_numpy(gy)
        F = torch.nn.functional
        if spec["pool"] == "max":
            ti = torch.from_numpy(idx)
            tf = lambda: F.max_pool2d(tx, k, s, p, return_indices=True)[0].numpy()  # noqa: E731
            # the kernel torch's autograd runs for max_pool2d(return_indices=True)
            tb = lambda: torch.ops.aten.max_pool2d_with_indices_backward(  # noqa: E731
                tg, tx, [k, k], [s, s], [p, p], [1, 1], False, ti).numpy()
        else:
            tf = lambda: F.avg_pool2d(tx, k, s, p).numpy()  # noqa: E731
            tb = lambda: torch.ops.aten.avg_pool2d_backward(  # noqa: E731
                tg, tx, [k, k], [s, s], [p, p], False, True, None).numpy()
        problems["forward"][0].append(_Candidate("torch", tf, traced=False))
        if backward:
            problems["backward"][0].append(_Candidate("torch", tb, traced=False))
    return problems


def _filter_problem(spec, dtype, rng, peers):
    from .. import filters
    img = rng.random(spec["shape"]).astype(dtype)
    img64 = img.astype(np.float64)
    ca = -1 if len(spec["shape"]) == 3 else None
    skimage = None
    if "scikit-image" in peers:
        try:
            import skimage.filters as skimage
        except ImportError:
            skimage = None
    if spec["filter"] == "gaussian":
        s = spec["sigma"]
        cands = [_Candidate(OWN, lambda: filters.gaussian(img, s, channel_axis=ca))]
        if skimage is not None:
            cands.append(_Candidate("scikit-image", lambda: skimage.gaussian(img, sigma=s, channel_axis=ca)))
        from scipy import ndimage
        sig = (s, s, 0) if ca is not None else s
        if "scipy.ndimage" in peers:
            cands.append(_Candidate("scipy.ndimage", lambda: ndimage.gaussian_filter(img, sig, mode="nearest")))
        # scikit-image's gaussian is scipy.ndimage's with mode "nearest" and truncate 4
        reference = lambda: ndimage.gaussian_filter(img64, sig, mode="nearest")  # noqa: E731
    else:
        cands = [_Candidate(OWN, lambda: filters.sobel(img))]
        if skimage is not None:
            cands.append(_Candidate("scikit-image", lambda: skimage.sobel(img)))
            reference = lambda: skimage.sobel(img64)  # noqa: E731
        else:
            reference = lambda: filters.sobel(img64)  # noqa: E731
    return {"forward": (cands, [], reference)}


# --------------------------------------------------------------------------------------------------- timing
def _measure(cands, repeats, budget, rng):
    """Warm up every candidate once (peak memory traced unless the candidate is invisible to tracemalloc), then
    time them in interleaved rounds, shuffled anew every round.  Fills ``out``, ``peak_mb``, ``times``."""
    order = list(cands)
    rng.shuffle(order)
    for c in order:
        if c.traced:
            tracemalloc.start()
        try:
            t0 = time.perf_counter()
            c.out = c.fn()
            c.first = time.perf_counter() - t0
            if c.traced:
                c.peak_mb = tracemalloc.get_traced_memory()[1] / 2 ** 20
        except (ValueError, MemoryError) as exc:     # an implementation refused the problem: report it, go on
            c.failed = str(exc)
        finally:
            if c.traced:
                tracemalloc.stop()
    order = [c for c in order if c.failed is None]
    if not order:
        return
    per_round = sum(c.first for c in order)
    rounds = int(max(min(3, repeats), min(repeats, budget * len(order) / max(per_round, 1e-9))))
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            rng.shuffle(order)
            for c in order:
                t0 = time.perf_counter()
                c.fn()
                c.times.append(time.perf_counter() - t0)
    finally:
        if enabled:
            gc.enable()


def _row(spec, op, c, flops):
    times = c.times
    med = statistics.median(times)
    row = dict(layer=spec["name"], kind=spec["kind"], op=op, impl=c.impl)
    if c.chosen:
        row["chosen"] = c.chosen
    row.update(ms=med * 1e3, spread=(max(times) - min(times)) / med if med > 0 else 0.0, rounds=len(times),
               times_ms=[t * 1e3 for t in times])
    if flops:
        row["gflops"] = flops / med / 1e9
    if c.peak_mb is not None:
        row["peak_mb"] = c.peak_mb
    if c.bound is not None:
        row["err_bound"] = c.bound
    if c.note:
        row["note"] = c.note
    return row


def run(grid="default", threads=None, dtype="float32", repeats=7, budget=0.3, backward=True, peers=ALL_PEERS,
        progress=True, max_estimate=1.0, layers=(), only=None, seed=0, gemm_size=1536):
    """Measure a grid (a name of :data:`GRIDS`, a list of problems, or None for ``layers`` only) plus ``layers``.

    Returns ``{"machine", "grid", "dtype", "threads", "sgemm_gflops", "peers", "load", "results": [row, ...],
    ...}``; :func:`summarize` turns it into verdicts and :func:`render` into the printed tables.  ``gemm_size``:
    the side of the matrices of the BLAS GEMM yardstick.
    """
    problems = ([] if grid is None else list(GRIDS[grid] if isinstance(grid, str) else grid)) + list(layers)
    if only:
        problems = [p for p in problems if p["kind"] in only]
    nthreads = _threads.effective_threads(threads)
    dtype = np.dtype(dtype)
    data_rng = np.random.default_rng(seed)
    order_rng = random.Random(seed)
    found, skipped = find_peers(peers)
    load_before = os.getloadavg()
    rows = []
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(problems), desc="fastconv bench", unit="problem", file=sys.stderr)
        except ImportError:
            bar = None
    with _threads.num_threads(nthreads), blas_threads(nthreads):
        # the GEMM yardstick before and after the problems (its best): the practical peak on a busy machine
        gemm = [sgemm_gflops(n=gemm_size, threads=nthreads, dtype=dtype)]
        for spec in problems:
            if bar is not None:
                bar.set_postfix_str(spec["name"])
            geom = None
            if spec["kind"] in ("conv", "image"):
                geom, groups = _conv_problem(spec, dtype, data_rng, _conv_ops(spec, backward), found, nthreads,
                                             max_estimate)
            elif spec["kind"] == "pool":
                groups = _pool_problem(spec, dtype, data_rng, backward, found, nthreads)
            else:
                groups = _filter_problem(spec, dtype, data_rng, found)
            for op, (cands, skips, reference) in groups.items():
                _measure(cands, repeats, budget, order_rng)
                ref = np.asarray(reference(), np.float64)
                for c in cands:
                    if c.failed is not None:
                        skips.append((c.impl, "failed: %s" % c.failed))
                        continue
                    row = _row(spec, op, c, geom.flops if geom is not None else None)
                    err = _rel_err(c.out, ref)
                    if err is not None:
                        row["max_err"] = err
                    if geom is not None:
                        row["channels"] = geom.in_channels
                        if spec["kind"] == "image":
                            row["kernel"] = spec["kernel"]
                    rows.append(row)
                    c.out = None
                for impl, why in skips:
                    rows.append(dict(layer=spec["name"], kind=spec["kind"], op=op, impl=impl, skipped=why))
            if bar is not None:
                bar.update(1)
        gemm.append(sgemm_gflops(n=gemm_size, threads=nthreads, dtype=dtype))
    peak = max(gemm)
    if bar is not None:
        bar.close()
    for row in rows:
        if "gflops" in row:
            row["frac_sgemm"] = row["gflops"] / peak
    result = {"machine": machine(), "grid": grid if isinstance(grid, str) else ("custom" if grid else "layers"),
              "dtype": dtype.name, "threads": nthreads, "sgemm_gflops": peak, "gemm_size": gemm_size,
              "gemm_gflops_before_after": gemm,
              "algorithms": list(_algorithms.names()),
              "peers": {"found": found, "skipped": skipped},
              "load": {"before": list(load_before), "after": list(os.getloadavg())},
              "order": "warm-up call, then up to %d rounds (at least %d) within %g s per candidate; every round "
                       "calls each candidate once in a new random order (seed %d)"
                       % (repeats, min(3, repeats), budget, seed),
              "ratio_direction": RATIO_DIRECTION, "results": rows}
    result["noise"] = noise(result)
    result["summary"] = summarize(result)
    return result


# --------------------------------------------------------------------------------------------------- verdicts
def _keys(result):
    keys = []
    for r in result["results"]:
        k = (r["layer"], r["op"])
        if k not in keys:
            keys.append(k)
    return keys


def _per_round(a, b):
    """Per-round ratios ``a/b`` of two rows timed in the same rounds (the ratio of their medians otherwise)."""
    ta, tb = a.get("times_ms"), b.get("times_ms")
    if ta and tb and len(ta) == len(tb):
        return [x / y for x, y in zip(ta, tb)]
    return [a["ms"] / b["ms"]]


def lead_is_real(slower, faster, confidence=CONFIDENCE):
    """Whether ``slower`` (a row) is slower than ``faster`` beyond the noise of the run: slower in every round, and
    the one-sided lower confidence bound of the geometric mean of the per-round time ratios above :data:`MIN_LEAD`
    (at least two rounds)."""
    logs = np.log(_per_round(slower, faster))
    if len(logs) < 2 or logs.min() <= 0:
        return False
    from scipy import stats
    se = logs.std(ddof=1) / np.sqrt(len(logs))
    return bool(logs.mean() - stats.t.ppf(confidence, len(logs) - 1) * se > np.log(MIN_LEAD))


def noise(result):
    """How noisy the run was: median, 90th percentile and largest spread of the measurements, and where."""
    timed = [r for r in result["results"] if "spread" in r]
    if not timed:
        return {}
    spreads = sorted(r["spread"] for r in timed)
    worst = max(timed, key=lambda r: r["spread"])
    return {"median_spread": statistics.median(spreads),
            "p90_spread": spreads[min(len(spreads) - 1, int(0.9 * len(spreads)))],
            "max_spread": worst["spread"], "worst": "%s %s %s" % (worst["impl"], worst["layer"], worst["op"])}


def summarize(result):
    """Per layer and op: the fastest algorithm and whether its lead over the runner-up is real, auto's choice and
    its time over the fastest, the fastest peer and fastconv's time over it (all ratios: a time over a time)."""
    algs = set(result.get("algorithms") or _algorithms.names())
    own = algs | {OWN, "fastconv.filters"}
    out = []
    for layer, op in _keys(result):
        rs = [r for r in result["results"] if r["layer"] == layer and r["op"] == op and "ms" in r]
        mine = sorted((r for r in rs if r["impl"] in own), key=lambda r: r["ms"])
        if not mine:
            continue
        best = mine[0]
        row = dict(layer=layer, op=op, fastest=best["impl"], best_ms=best["ms"], spread=best.get("spread"))
        if len(mine) > 1:
            second = mine[1]
            # real only if the fastest beat every other algorithm in every round (the runner-up by median need not
            # be the one that came closest in some round)
            row.update(runner_up=second["impl"], runner_up_over_fastest=second["ms"] / best["ms"],
                       lead="real" if all(lead_is_real(r, best) for r in mine[1:]) else "noise")
        auto = [r for r in rs if r["impl"] == "auto"]
        if auto:
            row.update(auto=auto[0].get("chosen"), auto_over_fastest=auto[0]["ms"] / best["ms"])
        peers = [r for r in rs if r["impl"] not in own and r["impl"] != "auto"]
        if peers:
            peer = min(peers, key=lambda r: r["ms"])
            row.update(best_peer=peer["impl"], fastconv_over_peer=best["ms"] / peer["ms"],
                       vs_peer=("real" if lead_is_real(best, peer) or lead_is_real(peer, best) else "noise"))
        out.append(row)
    return out


# --------------------------------------------------------------------------------------------------- output
TABLE = [("layer", "layer"), ("op", "op"), ("impl", "impl"), ("ms", "ms"), ("spread_pct", "spread"),
         ("x_fastest", "x fastest\n(>1 slower)"), ("gflops", "eff\nGFLOP/s"), ("gemm_pct", "of\nGEMM"),
         ("peak", "peak\nMB"), ("max_err", "max err"), ("err_bound", "bound"), ("note", "note")]
SUMMARY = [("layer", "layer"), ("op", "op"), ("fastest", "fastest"), ("best_ms", "ms"),
           ("runner_up", "runner-up"), ("runner_up_over_fastest", "runner-up/\nfastest"), ("lead", "lead"),
           ("auto", "auto\nchose"), ("auto_over_fastest", "auto/fastest\n(>1 slower)"), ("best_peer", "best peer"),
           ("fastconv_over_peer", "fastconv/peer\n(>1 slower)"), ("vs_peer", "diff")]


TEXT = ("layer", "op", "impl", "note", "fastest", "runner_up", "lead", "auto", "best_peer", "vs_peer")


def _ms(v):
    return "%.0f" % v if v >= 100 else "%.3g" % v


def _pct(v):
    return None if v is None else "%.0f %%" % (100 * v)


def _table_rows(result):
    fastest = {}
    for r in result["results"]:
        if "ms" in r:
            k = (r["layer"], r["op"])
            fastest[k] = min(fastest.get(k, r["ms"]), r["ms"])
    out = []
    for r in result["results"]:
        row = dict(r)
        if "ms" in r:
            row["ms"] = _ms(r["ms"])
            row["spread_pct"] = _pct(r["spread"])
            row["x_fastest"] = r["ms"] / fastest[(r["layer"], r["op"])]
            row["gemm_pct"] = _pct(r.get("frac_sgemm"))
            row["peak"] = r.get("peak_mb", "n/a")
            if "max_err" in r:
                row["max_err"] = "%.1e" % r["max_err"]
            if "err_bound" in r:
                row["err_bound"] = "%.0e" % r["err_bound"]
        else:
            row["note"] = "skipped: " + r["skipped"]
        out.append(row)
    return out


def header_lines(result):
    m = result.get("machine", {})
    found = result.get("peers", {}).get("found", {})
    skipped = result.get("peers", {}).get("skipped", {})
    load = result.get("load", {}).get("before")
    lines = ["fastconv bench: grid %s, %s, %d threads; %s, %s CPUs, kernels %s%s"
             % (result["grid"], result["dtype"], result["threads"], m.get("processor", "?"), m.get("cpus", "?"),
                m.get("simd", "?"), "" if load is None else "; load %.1f %.1f %.1f" % tuple(load))]
    lines.append("BLAS GEMM %.1f GFLOP/s (%d^2, %s, the better of a measurement before and after the problems: the "
                 "practical peak)" % (result["sgemm_gflops"], result.get("gemm_size", 1536), result["dtype"]))
    lines.append("peers found: %s" % (", ".join("%s %s" % kv for kv in found.items()) or "none"))
    lines.append("peers skipped: %s" % ("; ".join("%s: %s" % kv for kv in skipped.items()) or "none"))
    lines.append("order: %s" % result.get("order", "?"))
    nz = result.get("noise") or noise(result)
    if nz:
        lines.append("noise: spread across rounds median %.0f %%, 90th percentile %.0f %%, largest %.0f %% (%s)"
                     % (100 * nz["median_spread"], 100 * nz["p90_spread"], 100 * nz["max_spread"], nz["worst"]))
    return lines


def legend_lines():
    width = max(len(k) for k, _ in LEGEND)
    out = ["how to read the tables (every ratio is a time over a time: >1 slower, <1 faster):"]
    for key, text in LEGEND:
        wrapped = textwrap.wrap(text, 110 - width - 4)
        out.append("  %-*s  %s" % (width, key, wrapped[0]))
        out += ["  %s  %s" % (" " * width, line) for line in wrapped[1:]]
    return out


def render(result):
    """The text ``fastconv bench`` prints for ``result``: header, all measurements, verdicts, legend."""
    summary = [dict(s, best_ms=_ms(s["best_ms"])) for s in (result.get("summary") or summarize(result))]
    rows = _table_rows(result)
    # a column no row fills (bound, until an algorithm documents one; GFLOP/s in a pooling-only run) is left out
    table = [c for c in TABLE if c[0] in ("layer", "op", "impl", "ms") or any(r.get(c[0]) is not None for r in rows)]
    parts = ["\n".join(header_lines(result)), "", "all measurements:",
             format_table(rows, table, left=TEXT), "", "per layer and op:",
             format_table(summary, SUMMARY, left=TEXT), "",
             "\n".join(legend_lines())]
    return "\n".join(parts)


def plot(result, directory):
    """Write crossover.png (time vs kernel size), gflops_channels.png and time_vs_peers.png into directory."""
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
        ax.axhline(result["sgemm_gflops"], color="k", ls="--", lw=0.8, label="BLAS GEMM (same run)")
        ax.set(xscale="log", xlabel="channels (C = K, 3x3, 28x28, batch 8)", ylabel="effective GFLOP/s",
               title="Forward effective GFLOP/s vs channels")
        cs = sorted({r["channels"] for r in ch})
        ax.set_xticks(cs, [str(c) for c in cs], minor=False)
        ax.set_xticks([], minor=True)
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(os.path.join(directory, "gflops_channels.png"))
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    summ = [s for s in (result.get("summary") or summarize(result)) if "fastconv_over_peer" in s]
    if summ:
        fig, ax = plt.subplots(figsize=(7, 0.3 * len(summ) + 1.5))
        labels = ["%s (%s) vs %s" % (s["layer"], s["op"], s["best_peer"]) for s in summ]
        ratio = [s["fastconv_over_peer"] for s in summ]
        ax.barh(labels, ratio, color=["tab:green" if v <= 1 else "tab:red" for v in ratio])
        ax.axvline(1.0, color="k", lw=0.8)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=7)
        ax.set(xscale="log", xlabel="time of fastconv's fastest / time of the fastest peer (<1: fastconv faster)")
        fig.tight_layout()
        paths.append(os.path.join(directory, "time_vs_peers.png"))
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def add_arguments(p):
    p.add_argument("--grid", choices=sorted(GRIDS), default=None,
                   help="workload (default: default, or none when --layer is given)")
    p.add_argument("--layer", action="append", default=[], metavar="LAYER", help=LAYER_HELP)
    p.add_argument("--only", metavar="KINDS",
                   help="comma-separated kinds of problem to measure: %s (default: all)" % ", ".join(KINDS))
    p.add_argument("--threads", type=positive_int, default=None, help="threads for fastconv, BLAS and torch")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="precision of every measurement (default: %(default)s)")
    p.add_argument("--repeats", type=positive_int, default=7,
                   help="timed rounds at most, after a warm-up call (default: %(default)s; at least 3 when "
                        "--repeats allows)")
    p.add_argument("--budget", type=nonneg_float, default=0.3,
                   help="seconds of timed rounds per candidate, which bounds the rounds of slow problems "
                        "(default: %(default)s)")
    p.add_argument("--max-estimate", type=nonneg_float, default=1.0,
                   help="skip an algorithm whose cost model predicts more seconds per call (default: %(default)s)")
    p.add_argument("--no-backward", action="store_true", help="forward only (no gradients, no pooling backward)")
    p.add_argument("--peers", default=",".join(ALL_PEERS),
                   help="comma-separated peers to measure if installed (default: all), or 'none'")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of the order of the rounds")
    p.add_argument("--json", metavar="PATH", help="write all results, the verdicts and the legend as JSON")
    p.add_argument("--csv", metavar="PATH", help="write all measurements as CSV")
    p.add_argument("--plot", metavar="DIR", help="write PNG plots into DIR (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _choices(text, allowed, option):
    chosen = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = sorted(set(chosen) - set(allowed))
    if unknown:
        raise ValueError("%s: unknown %s; choose from %s" % (option, ", ".join(map(repr, unknown)),
                                                            ", ".join(allowed)))
    return chosen


def main(args):
    """Entry point of ``fastconv bench`` (``args`` from :func:`add_arguments`)."""
    peers = () if args.peers == "none" else _choices(args.peers, ALL_PEERS, "--peers")
    only = _choices(args.only, KINDS, "--only") if args.only else None
    layers = [parse_layer(text) for text in args.layer]
    grid = args.grid if args.grid is not None or layers else "default"
    res = run(grid, args.threads, args.dtype, args.repeats, args.budget, not args.no_backward, peers,
              progress=not args.no_progress, max_estimate=args.max_estimate, layers=layers, only=only,
              seed=args.seed)
    if not res["results"]:
        raise ValueError("nothing to measure: --only %s selects no problem of the grid" % args.only)
    print(render(res))
    res["legend"] = dict(LEGEND)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=float)
    if args.csv:
        os.makedirs(os.path.dirname(os.path.abspath(args.csv)), exist_ok=True)
        rows = [{k: v for k, v in r.items() if k != "times_ms"} for r in res["results"]]
        with open(args.csv, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
            wr.writeheader()
            wr.writerows(rows)
    if args.plot:
        for path in plot(res, args.plot):
            print("wrote", path)
    return 0
