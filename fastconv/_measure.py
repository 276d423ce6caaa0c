"""Timing and plain-text tables: the helpers that the benchmarks, the filters' cost-model calibration and the
model summary share (re-exported by :mod:`fastconv.benchmark`).  Imports nothing of fastconv."""
import functools
import os
import platform
import statistics
import time

__all__ = ["timeit", "interleaved", "balanced_orders", "format_table", "cpu_model", "l2_cache_bytes",
           "l1_data_cache_bytes"]


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


def balanced_orders(n):
    """Orders of ``range(n)`` (the rounds of an interleaved measurement, run one after another and then again from
    the first) in which every candidate directly follows every other exactly once per cycle, across the rounds'
    boundaries too, and never follows itself: ``n - 1`` rounds, found by a depth-first search (instant up to a
    dozen candidates).  The rounds of a Williams design balance only the neighbours inside a round: at the
    boundaries a candidate ran right after itself (found warm caches) and another never did -- of forward, input
    and weight gradient interleaved, the forward pass and the input gradient got that run and the weight gradient
    never.  Past ``MAX_SEARCH_CANDIDATES`` the Williams design is returned."""
    return [list(o) for o in _balanced_orders(n)]


MAX_SEARCH_CANDIDATES = 12


@functools.lru_cache(maxsize=64)
def _balanced_orders(n):
    if n < 2:
        return (tuple(range(n)),)
    if n <= MAX_SEARCH_CANDIDATES:
        found = _round_cycle(n)
        if found is not None:
            return found
    return _williams(n)


def _round_cycle(n):
    """``n - 1`` permutations of ``range(n)`` whose cyclic concatenation holds every ordered pair of different
    candidates once as neighbours (an Euler circuit of the complete directed graph, cut into permutations), or
    None.  Iterative depth-first search over the next element."""
    total = n * (n - 1)
    seq = [0]                       # the concatenation so far
    used = set()
    options = [None]                # per position: the candidates still to try there
    while seq:
        pos = len(seq)
        if pos == total:
            if seq[-1] != seq[0] and (seq[-1], seq[0]) not in used:
                return tuple(tuple(seq[i:i + n]) for i in range(0, total, n))
        elif len(options) == pos:
            start = pos - pos % n
            options.append([c for c in range(n) if c not in seq[start:pos]])
        if pos < total and options[pos]:
            c = options[pos].pop(0)
            if c != seq[-1] and (seq[-1], c) not in used:
                used.add((seq[-1], c))
                seq.append(c)
            continue
        # dead end (or a complete sequence whose closing pair is taken): back up one position
        if pos < len(options):
            options.pop()
        last = seq.pop()
        if seq:
            used.discard((seq[-1], last))
    return None


def _williams(n):
    """A Williams design: ``n`` orders for even ``n``, ``2n`` for odd, every candidate directly behind every other
    equally often inside the rounds."""
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    orders = [tuple((v + i) % n for v in first) for i in range(n)]
    if n % 2:
        orders += [order[::-1] for order in orders]
    return tuple(orders)


def interleaved(fns, repeats, budget=None, raw=False):
    """{name: median seconds}: one warm-up each, then ``repeats`` rounds calling every candidate once, so that
    load on a shared machine hits all candidates alike.  Successive rounds take the orders of
    :func:`balanced_orders`, so that every candidate follows each of the others equally often (what ran just
    before -- the caches it filled, the threads it left spinning -- otherwise always favours or slows the same
    one: a candidate right behind another that runs the same algorithm finds its data in the caches).
    ``budget`` (seconds) ends the rounds early once it is spent, after at least three; ``raw=True`` returns every
    round's times ({name: [seconds, ...]})."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    items = list(fns.items())
    orders = balanced_orders(len(items))
    start = time.perf_counter()
    for r in range(repeats):
        for i in orders[r % len(orders)]:
            k, fn = items[i]
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
        if budget is not None and r >= 2 and time.perf_counter() - start > budget:
            break
    if raw:
        return times
    return {k: statistics.median(v) for k, v in times.items()}


def format_table(rows, columns, floatfmt="%.3g", left=()):
    """A plain-text table of ``rows`` (dicts) restricted to ``columns`` (names or (name, header) pairs; a header
    may span lines, separated by ``"\\n"``).  Columns are right-aligned, those named in ``left`` left-aligned."""
    cols = [(c, c) if isinstance(c, str) else c for c in columns]

    def fmt(v):
        if isinstance(v, float):
            return floatfmt % v
        return "" if v is None else str(v)

    heads = [h.split("\n") for _, h in cols]
    depth = max(len(h) for h in heads)
    header = [[""] * (depth - len(h)) + h for h in heads]          # multi-line headers sit on the rule
    body = [[fmt(r.get(k)) for k, _ in cols] for r in rows]
    widths = [max([len(x) for x in header[i]] + [len(row[i]) for row in body]) for i in range(len(cols))]
    just = [str.ljust if k in left else str.rjust for k, _ in cols]
    lines = ["  ".join(j(h[d], w) for j, h, w in zip(just, header, widths)).rstrip() for d in range(depth)]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(j(c, w) for j, c, w in zip(just, row, widths)).rstrip() for row in body]
    return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def cpu_model():
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


def l2_cache_bytes():
    """Bytes of CPU 0's level-2 cache (Linux sysfs), or None where it cannot be read."""
    return _cache_bytes(2)


def l1_data_cache_bytes():
    """Bytes of CPU 0's level-1 data cache (Linux sysfs), or None where it cannot be read."""
    return _cache_bytes(1)


@functools.lru_cache(maxsize=4)
def _cache_bytes(level):
    """Bytes of CPU 0's data (or unified) cache of ``level``, or None."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            if not entry.startswith("index"):
                continue
            with open(os.path.join(base, entry, "level")) as f:
                if f.read().strip() != str(level):
                    continue
            with open(os.path.join(base, entry, "type")) as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(os.path.join(base, entry, "size")) as f:
                size = f.read().strip()
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:].upper(), 1)
            return int(size.rstrip("KkMmGg")) * scale
    except (OSError, ValueError):
        pass
    return None
