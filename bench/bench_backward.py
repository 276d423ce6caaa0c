"""Backward at forward speed: GFLOP/s of forward, input gradient and weight gradient of every layer class.

For each layer of ``fastconv bench``'s default grid (3x3, 1x1, 5x5, 11x11 stride 4, depthwise) and each op, every
registered algorithm and ``auto`` are timed with interleaved repeats in one run (2 N K C/g prod(kernel)
prod(output) flops for each op).  The summary gives, per layer, the GFLOP/s of ``auto`` for each op and each
gradient's rate over the forward rate (``gi/fwd``, ``gw/fwd``: the target is >= 1; from a second measurement of
``auto``'s three ops interleaved in the same rounds, rows "auto (together)"), and the fastest algorithm.  With
PyTorch installed, its three ops (``conv2d``, ``torch.nn.grad.conv2d_input``, ``conv2d_weight``) are timed the same
way in rounds of their own (rows "torch (together)"): ``torch gi/fwd`` and ``torch gw/fwd`` are the peer's own
ratios, and ``fwd/torch``, ``gi/torch``, ``gw/torch`` fastconv's time over PyTorch's for each op.

    python bench/bench_backward.py [--threads 2] [--repeats 7] [--json bench/results/backward.json] [--no-torch]
"""
import argparse
import os

import numpy as np

import fastconv as fc
from fastconv import _algorithms, grad
from fastconv.benchmark import blas_threads, format_table, interleaved, save_json, torch_or_none

HERE = os.path.dirname(os.path.abspath(__file__))

# (name, input shape, weight shape, stride, padding, groups): the layer classes of the default grid
LAYERS = [
    ("resnet 3x3 64", (8, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1),
    ("resnet 3x3 128", (8, 128, 28, 28), (128, 128, 3, 3), 1, 1, 1),
    ("1x1 256->64", (8, 256, 28, 28), (64, 256, 1, 1), 1, 0, 1),
    ("lenet 5x5", (64, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1),
    ("alexnet 11x11 s4", (8, 3, 227, 227), (96, 3, 11, 11), 4, 0, 1),
    ("depthwise 3x3", (8, 64, 56, 56), (64, 1, 3, 3), 1, 1, 64),
]
OPS = ("forward", "grad_input", "grad_weight")


def _calls(x, w, gy, kw, alg):
    return {"forward": lambda: fc.conv2d(x, w, **kw, algorithm=alg),
            "grad_input": lambda: grad.conv2d_input(x.shape, w, gy, **kw, algorithm=alg),
            "grad_weight": lambda: grad.conv2d_weight(x, w.shape, gy, **kw, algorithm=alg)}


def _torch_calls(torch, x, w, gy, kw):
    tx, tw, tg = (torch.from_numpy(a) for a in (x, w, gy))
    return {"forward": lambda: torch.nn.functional.conv2d(tx, tw, **kw),
            "grad_input": lambda: torch.nn.grad.conv2d_input(tx.shape, tw, tg, **kw),
            "grad_weight": lambda: torch.nn.grad.conv2d_weight(tx, tw.shape, tg, **kw)}


def _row(name, op, impl, ts, geom, chosen=None):
    """The result row of one op's interleaved times ``ts`` (seconds): their median as ms and GFLOP/s."""
    med = float(np.median(ts))
    return dict(layer=name, op=op, impl=impl, chosen=chosen, ms=med * 1e3, gflops=geom.flops / med / 1e9, n=len(ts))


def _together(rows, name, impl, calls, geom, repeats, budget):
    """The three ops of ``calls`` interleaved in the same rounds: rows ``impl``."""
    times = interleaved(calls, 2 * repeats, budget=budget, raw=True)
    rows.extend(_row(name, op, impl, ts, geom) for op, ts in times.items())


def run(threads=2, repeats=7, layers=LAYERS, budget=2.0, peer=True):
    rng = np.random.default_rng(0)
    rows = []
    torch = torch_or_none(threads) if peer else None
    with fc.num_threads(threads), blas_threads(threads):
        for name, xs, ws, stride, padding, groups in layers:
            x = rng.standard_normal(xs).astype(np.float32)
            w = rng.standard_normal(ws).astype(np.float32)
            kw = dict(stride=stride, padding=padding, groups=groups)
            geom = fc.ConvGeometry.make(xs, ws, stride, padding, 1, groups)
            gy = rng.standard_normal(geom.output_shape).astype(np.float32)
            for op in OPS:
                fns = {}
                for alg in _algorithms.names() + ("auto",):
                    if alg != "auto" and not _algorithms.get(alg).supports(geom, np.float32, op):
                        continue
                    fns[alg] = _calls(x, w, gy, kw, alg)[op]
                times = interleaved(fns, repeats, budget=budget, raw=True)
                chosen = _algorithms.choose(geom, np.float32, op).name
                rows.extend(_row(name, op, k, ts, geom, chosen if k == "auto" else None) for k, ts in times.items())
            # the ratios of the summary: auto's three ops again, in rounds of their own (the groups above ran
            # seconds apart, and the host's load drifts between them); then the peer's, the same way
            _together(rows, name, "auto (together)", _calls(x, w, gy, kw, "auto"), geom, repeats, budget)
            if torch is not None:
                _together(rows, name, "torch (together)", _torch_calls(torch, x, w, gy, kw), geom, repeats, budget)
    return rows


def summarize(rows):
    out = []
    for name in dict.fromkeys(r["layer"] for r in rows):
        mine = [r for r in rows if r["layer"] == name]
        d = dict(layer=name)
        for op in OPS:
            rs = [r for r in mine if r["op"] == op and not r["impl"].endswith("(together)")]
            auto = next(r for r in rs if r["impl"] == "auto")
            best = min((r for r in rs if r["impl"] != "auto"), key=lambda r: r["ms"])
            short = {"forward": "fwd", "grad_input": "gi", "grad_weight": "gw"}[op]
            d[short + "_gflops"] = auto["gflops"]
            d[short + "_auto"] = auto["chosen"]
            d[short + "_best"] = best["impl"]
            d[short + "_auto_over_best"] = auto["ms"] / best["ms"]
        together = {r["op"]: r["gflops"] for r in mine if r["impl"] == "auto (together)"}
        rate = together if len(together) == len(OPS) else {op: d[short + "_gflops"] for op, short in
                                                           zip(OPS, ("fwd", "gi", "gw"))}
        d["gi/fwd"] = rate["grad_input"] / rate["forward"]
        d["gw/fwd"] = rate["grad_weight"] / rate["forward"]
        peer = {r["op"]: r for r in mine if r["impl"] == "torch (together)"}
        if len(peer) == len(OPS):
            d["torch gi/fwd"] = peer["grad_input"]["gflops"] / peer["forward"]["gflops"]
            d["torch gw/fwd"] = peer["grad_weight"]["gflops"] / peer["forward"]["gflops"]
            for op, short in zip(OPS, ("fwd", "gi", "gw")):
                d[short + "/torch"] = peer[op]["gflops"] / rate[op]        # fastconv's time over torch's
        out.append(d)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", default=os.path.join(HERE, "results", "backward.json"))
    p.add_argument("--no-torch", action="store_true", help="leave out PyTorch's rounds")
    a = p.parse_args(argv)
    rows = run(a.threads, a.repeats, peer=not a.no_torch)
    info = fc.info(print_=False)
    print("threads %d, SIMD %s, load %.2f" % (a.threads, info["simd_level"], os.getloadavg()[0]))
    print(format_table(rows, ["layer", "op", "impl", "chosen", "ms", "gflops", "n"]))
    print()
    summary = summarize(rows)
    print(format_table(summary, ["layer", "fwd_gflops", "fwd_auto", "gi_gflops", "gi_auto", "gw_gflops", "gw_auto",
                                 "gi/fwd", "gw/fwd", "fwd_auto_over_best", "gi_auto_over_best",
                                 "gw_auto_over_best"]))
    if any("torch gi/fwd" in d for d in summary):
        print()
        print(format_table([d for d in summary if "torch gi/fwd" in d],
                           ["layer", "gi/fwd", "gw/fwd", "torch gi/fwd", "torch gw/fwd", "fwd/torch", "gi/torch",
                            "gw/torch"]))
    save_json(a.json, rows, summary=summary, threads=a.threads, load=os.getloadavg()[0])


if __name__ == "__main__":
    main()
