"""The ``toeplitz`` algorithm against ``direct``, torch and the BLAS sgemm rate, all measured in the same run.

* forward on the reference layers of bench/bench_conv.py: time ratio to torch, GFLOP/s
  (2 N K C/g kh kw H_out W_out / time) and the fraction of the sgemm rate measured in this run with the same
  thread count (targets: >= 0.8 on the two 3x3 layers, <= 1.0x torch's time on the 1x1 layer);
* transposed convolution 8x64x28x28 -> 32 channels, 4x4, stride 2, padding 1 (target <= 1.0x torch's time);
* both with the requested thread count and with one thread (on a shared machine the one-thread ratios are the
  steadier ones);
* extra peak memory (resident set, which includes the kernels' malloc'd workspace; Linux /proc) of one forward
  call of the first 3x3 layer at batch 8 and 64, toeplitz vs direct, each in a fresh process.

Candidates are timed in interleaved rounds (median of all repeats after warm-up) so machine load hits them alike.

    python bench/bench_toeplitz.py [--threads 2] [--repeats 9] [--json bench/results/toeplitz.json]
"""
import argparse
import os
import subprocess
import sys

import numpy as np

import fastconv as fc
from fastconv._algos.toeplitz import plan
from fastconv.benchmark import blas_threads, format_table, interleaved, save_json, sgemm_gflops, torch_or_none

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_conv import LAYERS  # noqa: E402  (the reference layers, shared with bench_conv.py)

ALGORITHMS = ("toeplitz", "direct")
torch = None     # set by main() when torch is installed
# (name, input shape, weight shape (C_in, C_out, kh, kw), stride, padding)
TRANSPOSED = ("convT 4x4 s2 64->32", (8, 64, 28, 28), (64, 32, 4, 4), 2, 1)
MEMORY_LAYER = LAYERS[0]


def _torch_fn(torch, name, *args, **kw):
    """A no-grad call of torch.nn.functional.<name> on tensors sharing memory with ``args``."""
    op = getattr(torch.nn.functional, name)
    targs = [torch.from_numpy(a) for a in args]

    def run():
        with torch.no_grad():
            return op(*targs, **kw)
    return run


def compare(name, geom, fns, errors, threads, repeats, peak):
    """Rows for ALGORITHMS timed against each other and torch (if in ``fns``) in one interleaved run."""
    with fc.num_threads(threads):
        t = interleaved(fns, repeats)
    rows = []
    for a in ALGORITHMS:
        gflops = geom.flops / t[a] / 1e9
        rows.append(dict(case=name, threads=threads, algorithm=a, ms=t[a] * 1e3, gflops=gflops,
                         frac_sgemm=gflops / peak, vs_torch=t[a] / t["torch"] if "torch" in t else None,
                         vs_direct=t[a] / t["direct"], max_err=errors[a]))
    return rows


def _case(name, geom, fn, torch_name, x, w, **kw):
    """(name, geometry, {candidate: call}, {algorithm: max error against torch or direct})."""
    fns = {a: (lambda a=a: fn(x, w, None, algorithm=a, **kw)) for a in ALGORITHMS}
    want = fns["direct"]()
    if torch is not None:
        fns["torch"] = _torch_fn(torch, torch_name, x, w, **kw)
        want = fns["torch"]().numpy()
    return name, geom, fns, {a: float(np.abs(fns[a]() - want).max()) for a in ALGORITHMS}


def cases(rng):
    """The reference layers (forward) and the transposed convolution."""
    out = []
    for name, xs, ws, stride, padding in LAYERS:
        x = rng.standard_normal(xs, dtype=np.float32)
        w = rng.standard_normal(ws, dtype=np.float32)
        out.append(_case(name, fc.ConvGeometry.make(xs, ws, stride, padding), fc.conv2d, "conv2d", x, w,
                         stride=stride, padding=padding))
    name, xs, ws, stride, padding = TRANSPOSED
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(ws, dtype=np.float32)
    out.append(_case(name, fc.ConvGeometry.for_transpose(xs, ws, stride, padding), fc.conv_transpose2d,
                     "conv_transpose2d", x, w, stride=stride, padding=padding))
    return out


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError("no %s in /proc/self/status" % field)


def _child_peak(algorithm, batch, threads):
    """Runs in a fresh process: extra peak resident memory (bytes) of one forward call.

    The peak (VmHWM) is reset just before the call (``/proc/self/clear_refs``), so the inputs, the output and
    whatever importing the libraries once needed do not hide the call's own workspace.
    """
    _, xs, ws, stride, padding = MEMORY_LAYER
    xs = (batch,) + xs[1:]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(ws, dtype=np.float32)
    out = np.ones(fc.ConvGeometry.make(xs, ws, stride, padding).output_shape, np.float32)
    with fc.num_threads(threads):
        fc.conv2d(x[:1, :, :8, :8], w, None, stride, padding, algorithm=algorithm)   # load libraries, tiny buffers
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_kib("VmRSS")
        fc.conv2d(x, w, None, stride, padding, algorithm=algorithm, out=out)
        peak = _status_kib("VmHWM")
    return (peak - before) * 1024


def memory_rows(threads):
    rows = []
    for batch in (8, 64):
        _, xs, ws, stride, padding = MEMORY_LAYER
        geom = fc.ConvGeometry.make((batch,) + xs[1:], ws, stride, padding)
        for a in ALGORITHMS:
            code = ("import sys; sys.path.insert(0, %r); import bench_toeplitz as b; print(b._child_peak(%r, %d, %d))"
                    % (os.path.dirname(os.path.abspath(__file__)), a, batch, threads))
            res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            extra = int(res.stdout.strip().splitlines()[-1])
            pl = plan(geom, np.float32, "forward", threads) if a == "toeplitz" else None
            rows.append(dict(case="%s batch %d" % (MEMORY_LAYER[0], batch), algorithm=a,
                             extra_peak_mib=extra / 2 ** 20, output_mib=4 * np.prod(geom.output_shape) / 2 ** 20,
                             planned_workspace_mib=None if pl is None else pl.workspace_bytes / 2 ** 20,
                             limit_mib=fc.get_workspace_limit() / 2 ** 20 if a == "toeplitz" else None))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--json", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "toeplitz.json"))
    a = p.parse_args(argv)
    global torch
    torch = torch_or_none(a.threads)
    todo = cases(np.random.default_rng(0))
    rows, peaks = [], {}
    for n in sorted({a.threads, 1}, reverse=True):     # the thread count asked for, and one thread
        if torch is not None:
            torch.set_num_threads(n)
        with blas_threads(n):
            peaks[n] = sgemm_gflops(threads=n)
        for case in todo:
            rows += compare(*case, threads=n, repeats=a.repeats, peak=peaks[n])
    mem = memory_rows(a.threads)
    print("sgemm GFLOP/s measured in this run: " + ", ".join("%.1f with %d thread(s)" % (peaks[n], n) for n in peaks))
    print(format_table(rows, ["case", "threads", "algorithm", "ms", "gflops", "frac_sgemm", "vs_torch",
                              "vs_direct", "max_err"]))
    print()
    print(format_table(mem, ["case", "algorithm", "extra_peak_mib", "planned_workspace_mib", "output_mib",
                             "limit_mib"]))
    save_json(a.json, rows, memory=mem, sgemm_gflops={str(n): v for n, v in peaks.items()}, threads=a.threads)
    return rows, mem


if __name__ == "__main__":
    main()
