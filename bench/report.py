"""Turn a ``fastconv bench`` result and its plots into the benchmark report page of the documentation.

Usage (from the repository root)::

    # measure (on a quiet machine), then write docs/benchmarks.rst
    fastconv bench --grid default --json bench/results/default.json --plot bench/results/default
    python bench/report.py bench/results/default.json --plots bench/results/default

    # or both in one go (extra options go to fastconv bench, e.g. --threads 2)
    python bench/report.py --run default

The page gets four tables -- the fastest algorithm per layer, ``auto`` against the fastest, speed against the
peers (PyTorch, SciPy, scikit-image) and the accuracy of every implementation -- and the PNG plots of
``fastconv bench --plot``.  The JSON and the PNGs are copied into ``docs/_static/bench/`` so that the page and
what it was generated from are committed together; ``tests/test_docs.py`` checks that the committed page is what
this script makes of the committed JSON.

Every figure on the page is a ratio between implementations measured in the same run (the machines are shared
and noisy); absolute times are given for orientation only.
"""
import argparse
import importlib.machinery
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOCS = os.path.join(ROOT, "docs")
PAGE = os.path.join(DOCS, "benchmarks.rst")
STATIC = os.path.join(DOCS, "_static", "bench")
STATIC_URL = "_static/bench"      # relative to the page
# Report on this checkout's fastconv when its kernels are built in place; otherwise on the installed one, which an
# unbuilt checkout must not shadow.
if ROOT not in sys.path and any(os.path.exists(os.path.join(ROOT, "fastconv", "_kernels", "_cpu" + suffix))
                                for suffix in importlib.machinery.EXTENSION_SUFFIXES):
    sys.path.insert(0, ROOT)
JSON_NAME = "bench.json"

# The auto choice should never be slower than this many times the fastest algorithm (issue 8's target).
AUTO_TARGET = 1.2

# Captions of the plots ``fastconv bench --plot`` writes; other PNGs are embedded with their file name.
PLOTS = {
    "crossover.png": "Single-channel images: time against kernel size for every algorithm and peer.  Where "
                     "the lines cross is where one algorithm overtakes another (direct and im2col grow with the "
                     "kernel area, the FFT hardly at all).",
    "gflops_channels.png": "Forward GFLOP/s of each algorithm against the number of channels (3 x 3 kernels), "
                           "with the BLAS GEMM rate measured in the same run as the practical peak.",
    "speedup_peers.png": "Speed-up of the fastest fastconv algorithm over the fastest installed peer, per layer "
                         "(right of 1: fastconv is faster).",
}

__all__ = ["load", "render", "write_report", "main", "algorithm_names", "summary_rows", "fastest_table",
           "auto_table", "peer_table", "accuracy_table"]


# --------------------------------------------------------------------------------------------------- input
def load(path):
    """Read a ``fastconv bench --json`` file and check that it has what the report needs."""
    with open(path) as f:
        result = json.load(f)
    if not isinstance(result, dict) or not isinstance(result.get("results"), list):
        raise ValueError("%s: not a fastconv bench result (no 'results' list)" % path)
    for row in result["results"]:
        missing = {"layer", "op", "impl"} - set(row)
        if missing:
            raise ValueError("%s: a result row lacks %s: %r" % (path, sorted(missing), row))
    return result


def algorithm_names(result):
    """The fastconv algorithms measured in ``result``, in registry order.

    A result that records its ``algorithms`` is taken at its word; otherwise the implementations ``auto``
    chose, and those registered in this checkout of fastconv, that appear in the results.
    """
    impls = []
    for r in result["results"]:
        if r["impl"] not in impls:
            impls.append(r["impl"])
    if result.get("algorithms"):
        return [a for a in result["algorithms"] if a in impls]
    known = [r["chosen"] for r in result["results"] if r.get("chosen")]
    try:
        import fastconv
        known += list(fastconv.algorithms())
    except ImportError:  # pragma: no cover - the report can be rendered without the package
        pass
    return [i for i in impls if i in known]


def _own(impl, algs):
    """True for fastconv's implementations (its algorithms, ``auto`` and the filters)."""
    return impl in algs or impl == "auto" or impl.startswith("fastconv")


def _keys(result):
    keys = []
    for r in result["results"]:
        k = (r["layer"], r["op"])
        if k not in keys:
            keys.append(k)
    return keys


def _rows(result, layer, op):
    return [r for r in result["results"] if r["layer"] == layer and r["op"] == op]


def summary_rows(result):
    """The per-layer summary of ``fastconv bench`` (stored in the JSON, or recomputed with fastconv)."""
    if "summary" in result:
        return result["summary"]
    from fastconv.cli.bench import summarize
    return summarize(result)


# --------------------------------------------------------------------------------------------------- tables
def _ms(v):
    return "%.3g" % v if v is not None else ""


def _x(v):
    return "%.3g×" % v if v is not None else ""


def fastest_table(result, algs):
    """Rows ``[layer, op, ms of each algorithm..., fastest, GFLOP/s, % of GEMM]`` for every convolution layer."""
    header = ["layer", "op"] + ["%s (ms)" % a for a in algs] + ["fastest", "GFLOP/s", "of GEMM peak"]
    rows = []
    for layer, op in _keys(result):
        rs = {r["impl"]: r for r in _rows(result, layer, op)}
        timed = [a for a in algs if a in rs and "ms" in rs[a]]
        if not timed:
            continue
        best = min(timed, key=lambda a: rs[a]["ms"])
        cells = []
        for a in algs:
            r = rs.get(a)
            if r is None:
                cells.append("")
            elif "ms" not in r:
                cells.append("skipped")
            else:
                cells.append(("**%s**" if a == best else "%s") % _ms(r["ms"]))
        b = rs[best]
        rows.append([layer, op] + cells + [best, "%.3g" % b["gflops"] if "gflops" in b else "",
                                           "%.0f %%" % (100 * b["frac_sgemm"]) if "frac_sgemm" in b else ""])
    return header, rows


def auto_table(result):
    """Rows ``[layer, op, auto's choice, fastest, auto / fastest]`` and ``(worst ratio, layers within target, n)``."""
    header = ["layer", "op", "auto chose", "fastest", "auto / fastest"]
    rows, ratios = [], []
    for s in summary_rows(result):
        if "auto_over_best" not in s:
            continue
        ratio = s["auto_over_best"]
        ratios.append(ratio)
        flag = "" if ratio <= AUTO_TARGET else " (over %.1f×)" % AUTO_TARGET
        rows.append([s["layer"], s["op"], s.get("auto") or "", s["fastest"], _x(ratio) + flag])
    stats = (max(ratios) if ratios else None, sum(r <= AUTO_TARGET for r in ratios), len(ratios))
    return header, rows, stats


def peer_table(result, algs):
    """Rows ``[layer, op, fastconv's fastest, its ms, then per peer: speed-up of fastconv over it]``.

    A speed-up above 1 means fastconv's fastest implementation (algorithm or filter) is faster than the peer.
    """
    peers = []
    for r in result["results"]:
        if not _own(r["impl"], algs) and r["impl"] not in peers and "ms" in r:
            peers.append(r["impl"])
    header = ["layer", "op", "fastconv fastest", "ms"] + ["vs %s" % p for p in peers]
    rows = []
    for layer, op in _keys(result):
        rs = [r for r in _rows(result, layer, op) if "ms" in r]
        mine = [r for r in rs if _own(r["impl"], algs) and r["impl"] != "auto"]
        theirs = {r["impl"]: r["ms"] for r in rs if not _own(r["impl"], algs)}
        if not mine or not theirs:
            continue
        best = min(mine, key=lambda r: r["ms"])
        rows.append([layer, op, best["impl"], _ms(best["ms"])]
                    + [_x(theirs[p] / best["ms"]) if p in theirs else "" for p in peers])
    return header, rows


def accuracy_table(result):
    """Rows ``[impl, layers compared, largest max_err]`` (error relative to max |reference|)."""
    worst = {}
    for r in result["results"]:
        if "max_err" in r:
            n, e = worst.get(r["impl"], (0, 0.0))
            worst[r["impl"]] = (n + 1, max(e, r["max_err"]))
    return ["implementation", "layers", "largest relative error"], \
        [[impl, str(n), "%.1e" % e] for impl, (n, e) in worst.items()]


# --------------------------------------------------------------------------------------------------- rst
def _list_table(header, rows):
    if not rows:
        return ["(no measurements)", ""]
    out = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header] + rows:
        out.append("   * - " + (row[0] or "\\"))
        out.extend("     - " + (cell if cell else "") for cell in row[1:])
    return [line.rstrip() for line in out] + [""]


def _title(text, char):
    return [text, char * len(text), ""]


def render(result, images=(), source=JSON_NAME):
    """The text of the report page for ``result``; ``images`` are PNG file names under ``_static/bench``."""
    algs = algorithm_names(result)
    m = result.get("machine", {})
    grid = result.get("grid", "?")
    lines = [".. This page is generated by bench/report.py from _static/bench/%s; do not edit it by hand." % source,
             "", ".. _benchmarks:", ""]
    lines += _title("Benchmark report", "=")
    if grid not in ("default", "full"):
        lines += [".. note::", "",
                  "   Provisional numbers from the ``%s`` grid (tiny layers, a test of the pipeline).  The report is "
                  "regenerated" % grid,
                  "   from the ``default`` / ``full`` grid on a quiet machine with ``python bench/report.py --run "
                  "default``.", ""]
    lines += ["Measured with ``fastconv bench --grid %s`` in %s, %d thread(s), on:" % (
        grid, result.get("dtype", "float32"), result.get("threads", 0)), ""]
    facts = [("machine", "%s, %s CPUs, %s" % (m.get("processor", "?"), m.get("cpus", "?"), m.get("platform", "?"))),
             ("kernels", "SIMD %s, OpenMP %s" % (m.get("simd", "?"), "on" if m.get("openmp") else "off")),
             ("BLAS", m.get("blas", "?")),
             ("versions", "fastconv %s, NumPy %s, SciPy %s" % (m.get("fastconv", "?"), m.get("numpy", "?"),
                                                               m.get("scipy", "?"))),
             ("GEMM peak", "%.1f GFLOP/s (BLAS GEMM on 1536 x 1536 matrices, same run)"
              % result.get("sgemm_gflops", float("nan")))]
    for k, v in facts:
        lines += [k, "    %s" % v]
    lines += ["", "Times are medians of repeats after a warm-up call.  The machines fastconv is measured on are "
              "shared, so", "read the ratios between implementations of one run rather than absolute times.  "
              "The raw results:", ":download:`%s <_static/bench/%s>`." % (source, source), ""]

    lines += _title("Fastest algorithm per layer", "-")
    lines += ["Time of each algorithm (the fastest in bold), the GFLOP/s of the fastest (forward: ``2 N K C/g "
              "f_h f_w H_out W_out``", "per second; backward: twice that) and its fraction of the GEMM peak.", ""]
    lines += _list_table(*fastest_table(result, algs))

    header, rows, (worst, within, n) = auto_table(result)
    lines += _title("``auto`` against the fastest algorithm", "-")
    if n:
        lines += ["Time of ``algorithm=\"auto\"`` (as a user calls it: cost model, choice and call) over the "
                  "fastest algorithm's", "time for the same layer.  Target: at most %.1f×.  Here auto is within "
                  "the target on %d of %d layers;" % (AUTO_TARGET, within, n),
                  "the worst ratio is %s." % _x(worst), ""]
    lines += _list_table(header, rows)

    lines += _title("Speed against other libraries", "-")
    lines += ["How many times faster fastconv's fastest implementation is than each peer on the same layer "
              "(below 1: the", "peer is faster).  Peers run with the same number of threads.", ""]
    lines += _list_table(*peer_table(result, algs))

    lines += _title("Accuracy", "-")
    lines += ["Largest error of each implementation's forward result against the ``direct`` algorithm (Gaussian "
              "filters:", "against scikit-image), relative to the largest magnitude of the reference.", ""]
    lines += _list_table(*accuracy_table(result))

    skipped = [r for r in result["results"] if "skipped" in r]
    if skipped:
        lines += ["Not measured (the cost model predicted a very slow call): "
                  + "; ".join("%s %s %s (%s)" % (r["impl"], r["layer"], r["op"], r["skipped"]) for r in skipped)
                  + ".", ""]

    if images:
        lines += _title("Plots", "-")
        for name in images:
            caption = PLOTS.get(name, name)
            lines += [".. figure:: %s/%s" % (STATIC_URL, name), "   :width: 90%", "", "   " + caption, ""]
    return "\n".join(lines).rstrip() + "\n"


def _pngs(plots):
    if not plots or not os.path.isdir(plots):
        return []
    known = [p for p in PLOTS if os.path.exists(os.path.join(plots, p))]
    return known + sorted(p for p in os.listdir(plots) if p.endswith(".png") and p not in PLOTS)


def write_report(json_path, plots=None, page=PAGE, static=STATIC):
    """Copy the JSON and the PNGs of ``plots`` into ``static`` and write the report page; returns its path."""
    result = load(json_path)
    os.makedirs(static, exist_ok=True)
    images = _pngs(plots)
    for old in os.listdir(static):
        if old.endswith(".png") and old not in images:
            os.remove(os.path.join(static, old))
    for name in images:
        shutil.copyfile(os.path.join(plots, name), os.path.join(static, name))
    target = os.path.join(static, JSON_NAME)
    if os.path.abspath(json_path) != os.path.abspath(target):
        shutil.copyfile(json_path, target)
    text = render(result, images)
    with open(page, "w") as f:
        f.write(text)
    return page


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", nargs="?", help="a fastconv bench --json result")
    p.add_argument("--plots", help="the directory fastconv bench --plot wrote")
    p.add_argument("--run", metavar="GRID", help="run fastconv bench on this grid first (quick, default, full)")
    p.add_argument("--out", default=PAGE, help="the page to write (default: docs/benchmarks.rst)")
    p.add_argument("--static", default=STATIC, help="where the page's files go (default: docs/_static/bench)")
    args, bench_args = p.parse_known_args(argv)
    if args.run:
        scratch = tempfile.mkdtemp(prefix="fastconv-bench-")   # the page keeps copies in --static
        json_path = args.json or os.path.join(scratch, JSON_NAME)
        plots = args.plots or os.path.join(scratch, "plots")
        from fastconv import _bench
        bp = argparse.ArgumentParser(prog="fastconv bench")
        _bench.add_arguments(bp)
        _bench.main(bp.parse_args(["--grid", args.run, "--json", json_path, "--plot", plots] + bench_args))
    elif args.json is None:
        p.error("give a bench JSON file, or --run GRID")
    else:
        if bench_args:
            p.error("unrecognized arguments: %s" % " ".join(bench_args))
        json_path, plots = args.json, args.plots
    print("wrote", write_report(json_path, plots, args.out, args.static))
    return 0


if __name__ == "__main__":
    sys.exit(main())
