"""Turn a ``fastconv bench`` result and its plots into the benchmark report page of the documentation.

Usage (from the repository root)::

    # measure (on a quiet machine), then write docs/benchmarks.rst
    fastconv bench --grid default --json bench/results/default.json --plot bench/results/default
    python bench/report.py bench/results/default.json --plots bench/results/default

    # or both in one go (extra options go to fastconv bench, e.g. --threads 2)
    python bench/report.py --run default

The page gets four tables -- the fastest algorithm per layer (and whether its lead over the runner-up is real or
within the noise of the run), ``auto`` against the fastest, fastconv against the peers (PyTorch, SciPy,
scikit-image) and the accuracy of every implementation -- how noisy the run was, the legend of ``fastconv bench``,
and the PNG plots of ``fastconv bench --plot``.  Every ratio is a time over a time (>1: slower), as in
``fastconv bench``.  The JSON and the PNGs are copied into ``docs/_static/bench/`` so that the page and
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
    "gflops_channels.png": "Forward effective GFLOP/s (the FLOPs of a direct convolution over the time) of each "
                           "algorithm against the number of channels (3 x 3 kernels), with the BLAS GEMM rate "
                           "measured in the same run as the practical peak.",
    "time_vs_peers.png": "Time of the fastest fastconv implementation over the time of the fastest installed "
                         "peer, per layer and op (left of 1: fastconv is faster).",
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
    """True for fastconv's implementations (its algorithms, ``auto``, its pooling and filters)."""
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
    return "%.3g" % v if v is not None else ""


def fastest_table(result, algs):
    """Rows ``[layer, op, ms of each algorithm..., fastest, runner-up/fastest, lead, eff GFLOP/s, of GEMM]`` for
    every convolution layer and op."""
    header = (["layer", "op"] + ["%s (ms)" % a for a in algs]
              + ["fastest", "runner-up / fastest", "lead", "eff GFLOP/s", "of GEMM peak"])
    verdicts = {(s["layer"], s["op"]): s for s in summary_rows(result)}
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
        v = verdicts.get((layer, op), {})
        rows.append([layer, op] + cells + [best, _x(v.get("runner_up_over_fastest")), v.get("lead", ""),
                                           "%.3g" % b["gflops"] if "gflops" in b else "",
                                           "%.0f %%" % (100 * b["frac_sgemm"]) if "frac_sgemm" in b else ""])
    return header, rows


def auto_table(result):
    """Rows ``[layer, op, auto's choice, fastest, auto / fastest]`` and ``(worst ratio, layers within target, n)``."""
    header = ["layer", "op", "auto chose", "fastest", "auto / fastest (>1: slower)"]
    rows, ratios = [], []
    for s in summary_rows(result):
        if "auto_over_fastest" not in s:
            continue
        ratio = s["auto_over_fastest"]
        ratios.append(ratio)
        flag = "" if ratio <= AUTO_TARGET else " (over %.1f)" % AUTO_TARGET
        rows.append([s["layer"], s["op"], s.get("auto") or "", s["fastest"], _x(ratio) + flag])
    stats = (max(ratios) if ratios else None, sum(r <= AUTO_TARGET for r in ratios), len(ratios))
    return header, rows, stats


def peer_table(result, algs):
    """Rows ``[layer, op, fastconv's fastest, its ms, then per peer: fastconv's time / the peer's]``.

    Below 1 fastconv's fastest implementation (algorithm, pooling or filter) is faster than the peer."""
    peers = []
    for r in result["results"]:
        if not _own(r["impl"], algs) and r["impl"] not in peers and "ms" in r:
            peers.append(r["impl"])
    header = ["layer", "op", "fastconv fastest", "ms"] + ["fastconv / %s" % p for p in peers]
    rows = []
    for layer, op in _keys(result):
        rs = [r for r in _rows(result, layer, op) if "ms" in r]
        mine = [r for r in rs if _own(r["impl"], algs) and r["impl"] != "auto"]
        theirs = {r["impl"]: r["ms"] for r in rs if not _own(r["impl"], algs)}
        if not mine or not theirs:
            continue
        best = min(mine, key=lambda r: r["ms"])
        rows.append([layer, op, best["impl"], _ms(best["ms"])]
                    + [_x(best["ms"] / theirs[p]) if p in theirs else "" for p in peers])
    return header, rows


def accuracy_table(result):
    """Rows ``[impl, measurements, largest max_err, documented bound]`` (errors relative to max |reference|)."""
    worst = {}
    for r in result["results"]:
        if "max_err" in r:
            n, e, b = worst.get(r["impl"], (0, 0.0, None))
            bound = r.get("err_bound")
            worst[r["impl"]] = (n + 1, max(e, r["max_err"]), b if bound is None else max(b or 0.0, bound))
    return ["implementation", "measurements", "largest relative error", "documented bound"], \
        [[impl, str(n), "%.1e" % e, "" if b is None else "%.0e" % b] for impl, (n, e, b) in worst.items()]


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


def _legend(result):
    legend = result.get("legend")
    if legend:
        return list(legend.items())
    try:
        from fastconv.cli.bench import LEGEND
    except ImportError:  # pragma: no cover - the report can be rendered without the package
        return []
    return LEGEND


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
    load = result.get("load", {}).get("before")
    cpus = m.get("cpus")
    if load and cpus and load[0] > cpus:
        lines += [".. note::", "",
                  "   Measured on a busy shared machine (load average %.1f on %s CPUs): the rankings whose lead is "
                  "*real* hold," % (load[0], cpus),
                  "   the times and rates are lower than on a quiet machine.  Regenerate the page on a quiet machine "
                  "with",
                  "   ``python bench/report.py --run default``.", ""]
    lines += ["Measured with ``fastconv bench --grid %s`` in %s, %d thread(s), on:" % (
        grid, result.get("dtype", "float32"), result.get("threads", 0)), ""]
    peers = result.get("peers", {})
    facts = [("machine", "%s, %s CPUs, %s" % (m.get("processor", "?"), m.get("cpus", "?"), m.get("platform", "?"))),
             ("kernels", "SIMD %s, OpenMP %s" % (m.get("simd", "?"), "on" if m.get("openmp") else "off")),
             ("BLAS", m.get("blas", "?")),
             ("versions", "fastconv %s, NumPy %s, SciPy %s" % (m.get("fastconv", "?"), m.get("numpy", "?"),
                                                               m.get("scipy", "?"))),
             ("GEMM peak", "%.1f GFLOP/s (BLAS GEMM on %d x %d matrices, same run)"
              % (result.get("sgemm_gflops", float("nan")), result.get("gemm_size", 1536),
                 result.get("gemm_size", 1536)))]
    if peers:
        facts.append(("peers", "; ".join(["%s %s" % kv for kv in peers.get("found", {}).items()]
                                         + ["%s skipped: %s" % kv for kv in peers.get("skipped", {}).items()])))
    if load:
        facts.append(("load average", "%.1f, %.1f, %.1f (1, 5, 15 minutes) when the run started" % tuple(load)))
    nz = result.get("noise")
    if nz:
        facts.append(("noise", "spread across rounds (slowest - fastest round) / median: median %.0f %%, 90th "
                               "percentile %.0f %%, largest %.0f %% (%s)"
                      % (100 * nz["median_spread"], 100 * nz["p90_spread"], 100 * nz["max_spread"], nz["worst"])))
    for k, v in facts:
        lines += [k, "    %s" % v]
    lines += ["", "Times are medians over rounds: after a warm-up call, every round calls each implementation of a "
              "layer and op", "once, in a new random order, so that the load of a shared machine hits all alike.  "
              "Every ratio is a time", "over a time (above 1: slower).  The raw results: "
              ":download:`%s <_static/bench/%s>`." % (source, source), ""]

    lines += _title("Fastest algorithm per layer", "-")
    lines += ["Time of each algorithm (the fastest in bold), the runner-up's time over the fastest's and whether "
              "the lead", "is *real* (every other algorithm slower in every round, and by more than 3 % with 95 % "
              "confidence) or within", "the *noise* of the run, and the effective GFLOP/s of the fastest (``2 N K C/g f_h f_w H_out "
              "W_out`` per forward or", "gradient, over the time; for FFT-based algorithms, which multiply less, "
              "this can exceed the GEMM peak)", "and its fraction of the GEMM peak.  ``grad_input`` and "
              "``grad_weight`` are the two halves of a backward pass.", ""]
    lines += _list_table(*fastest_table(result, algs))

    header, rows, (worst, within, n) = auto_table(result)
    lines += _title("``auto`` against the fastest algorithm", "-")
    if n:
        lines += ["Time of ``algorithm=\"auto\"`` (as a user calls it: cost model, choice and call) over the "
                  "fastest algorithm's", "time for the same layer and op.  Target: at most %.1f.  Here auto is "
                  "within the target on %d of %d;" % (AUTO_TARGET, within, n),
                  "the worst ratio is %s." % _x(worst), ""]
    lines += _list_table(header, rows)

    lines += _title("Against other libraries", "-")
    lines += ["Time of fastconv's fastest implementation over each peer's on the same layer and op (below 1: "
              "fastconv is", "faster).  Peers run with the same number of threads.", ""]
    lines += _list_table(*peer_table(result, algs))

    lines += _title("Accuracy", "-")
    lines += ["Largest error of each implementation against a float64 reference (convolutions and pooling: "
              "fastconv's", "``direct`` algorithm in float64; filters: scikit-image or scipy.ndimage in float64), "
              "relative to the", "largest magnitude of the reference, and the error bound a reduced-accuracy "
              "algorithm documents.", ""]
    lines += _list_table(*accuracy_table(result))

    skipped = [r for r in result["results"] if "skipped" in r]
    if skipped:
        lines += ["Not measured: " + "; ".join("%s %s %s (%s)" % (r["impl"], r["layer"], r["op"], r["skipped"])
                                               for r in skipped) + ".", ""]

    legend = _legend(result)
    if legend:
        lines += _title("How to read ``fastconv bench``", "-")
        for key, text in legend:
            lines += ["``%s``" % key, "    %s" % text.replace("|", "\\|")]     # |x| is not a substitution
        lines += [""]

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
        if os.path.abspath(os.path.join(plots, name)) != os.path.abspath(os.path.join(static, name)):
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
        from fastconv.cli import bench
        bp = argparse.ArgumentParser(prog="fastconv bench")
        bench.add_arguments(bp)
        bench.main(bp.parse_args(["--grid", args.run, "--json", json_path, "--plot", plots] + bench_args))
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
