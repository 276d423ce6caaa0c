"""Timing and plain-text tables: the helpers that the benchmarks, the filters' cost-model calibration and the
model summary share (re-exported by :mod:`fastconv.benchmark`).  Imports nothing of fastconv."""
import statistics
import time

__all__ = ["timeit", "interleaved", "format_table"]


def timeit(fn, repeats=5, warmup=1, min_time=0.0):
    """Run ``fn()`` ``warmup`` times, then ``repeats`` times (more while the total is under ``min_time`` s).

    Returns ``{"median": s, "min": s, "max": s, "spread": (max - min) / median, "n": repeats}``.
    """
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 1000:
            break
    med = statistics.median(times)
    return {"median": med, "min": min(times), "max": max(times),
            "spread": (max(times) - min(times)) / med if med > 0 else 0.0, "n": len(times)}


def interleaved(fns, repeats):
    """{name: median seconds}: one warm-up each, then ``repeats`` rounds calling every candidate once, so that
    load on a shared machine hits all candidates alike."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def format_table(rows, columns, floatfmt="%.3g"):
    """A plain-text table of ``rows`` (dicts) restricted to ``columns`` (names or (name, header) pairs)."""
    cols = [(c, c) if isinstance(c, str) else c for c in columns]

    def fmt(v):
        if isinstance(v, float):
            return floatfmt % v
        return "" if v is None else str(v)

    cells = [[h for _, h in cols]] + [[fmt(r.get(k)) for k, _ in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
