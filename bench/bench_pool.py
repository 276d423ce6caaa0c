"""Pooling forward and backward against torch.nn.functional, same run, float32, with a memory-copy yardstick.

Pooling moves far more bytes than it computes, so next to the time ratio to torch every row reports the
achieved bandwidth (bytes read + written, once each) and its fraction of a large memory copy measured in the
same run.  Times are medians over rounds that run fastconv and torch back to back, so both see the same
machine load; ``vs_torch`` is the ratio of the medians, ``paired`` the median of the per-round ratios and
``paired_1t`` the same with one thread each.

    python bench/bench_pool.py [--threads 2] [--rounds 15] [--json bench/results/pool.json]
"""
import argparse
import os

import numpy as np

import fastconv as fc
from fastconv.benchmark import copy_gbps, format_table, save_json, timeit, torch_or_none

SHAPE = (8, 64, 112, 112)


def _cases(x, torch):
    """(name, fastconv call, torch call or None, bytes moved by an ideal implementation)."""
    F = torch.nn.functional if torch is not None else None
    tx = torch.from_numpy(x) if torch is not None else None
    nbytes = x.nbytes
    cases = []
    for k, s, p in [(2, 2, 0), (3, 2, 1)]:
        y, idx = fc.max_pool2d(x, k, s, p, return_indices=True)
        out_bytes = y.nbytes + idx.nbytes
        cases.append(("max_pool2d %dx%d s%d p%d +idx" % (k, k, s, p),
                      lambda k=k, s=s, p=p: fc.max_pool2d(x, k, s, p, return_indices=True),
                      (lambda k=k, s=s, p=p: F.max_pool2d(tx, k, s, p, return_indices=True)) if F else None,
                      nbytes + out_bytes))
    for k, s, p in [(2, 2, 0), (3, 2, 1)]:
        y, idx = fc.max_pool2d(x, k, s, p, return_indices=True)
        gy = np.random.default_rng(1).standard_normal(y.shape).astype(x.dtype)
        if torch is not None:
            tg, ti = torch.from_numpy(gy), torch.from_numpy(idx)
            # the kernel torch's autograd runs for max_pool2d(return_indices=True)
            tcall = (lambda k=k, s=s, p=p, tg=tg, ti=ti:
                     torch.ops.aten.max_pool2d_with_indices_backward(tg, tx, [k, k], [s, s], [p, p], [1, 1],
                                                                     False, ti))
        else:
            tcall = None
        cases.append(("max_pool backward %dx%d s%d p%d" % (k, k, s, p),
                      lambda gy=gy, idx=idx: fc.max_pool_backward(gy, idx, x.shape), tcall,
                      gy.nbytes + idx.nbytes + nbytes))
    y = fc.avg_pool2d(x, 2)
    cases.append(("avg_pool2d 2x2", lambda: fc.avg_pool2d(x, 2),
                  (lambda: F.avg_pool2d(tx, 2)) if F else None, nbytes + y.nbytes))
    gy = np.random.default_rng(2).standard_normal(y.shape).astype(x.dtype)
    if torch is not None:
        tg = torch.from_numpy(gy)
        tcall = lambda: torch.ops.aten.avg_pool2d_backward(tg, tx, [2, 2], [2, 2], [0, 0], False, True, None)  # noqa
    else:
        tcall = None
    cases.append(("avg_pool backward 2x2", lambda: fc.avg_pool2d_backward(gy, x.shape, 2), tcall,
                  gy.nbytes + nbytes))
    y = fc.adaptive_avg_pool2d(x, 7)
    cases.append(("adaptive_avg_pool2d ->7x7", lambda: fc.adaptive_avg_pool2d(x, 7),
                  (lambda: F.adaptive_avg_pool2d(tx, 7)) if F else None, nbytes + y.nbytes))
    return cases


def _interleaved(ours, theirs, rounds):
    """Median times of two calls measured back to back in each of ``rounds`` rounds (after a warm-up call each),
    and the median of the per-round time ratios (robust to load that changes between rounds)."""
    ours()
    if theirs is not None:
        theirs()
    a, b = [], []
    for _ in range(rounds):
        a.append(timeit(ours, repeats=1, warmup=0)["median"])
        if theirs is not None:
            b.append(timeit(theirs, repeats=1, warmup=0)["median"])
    ratio = float(np.median(np.array(a) / np.array(b))) if b else None
    return float(np.median(a)), (float(np.median(b)) if b else None), ratio, a


def run(threads=2, rounds=15, dtype=np.float32, single=True):
    """One row per case with ``threads`` threads for both libraries; with ``single`` also the paired ratio of
    single-threaded runs (less sensitive to other processes on a shared machine)."""
    torch = torch_or_none(threads)
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(dtype)
    copy = copy_gbps(nbytes=x.nbytes)
    rows = []
    for name, ours, theirs, nbytes in _cases(x, torch):
        if torch is not None:
            torch.set_num_threads(threads)
        with fc.num_threads(threads):
            t, tt, ratio, a = _interleaved(ours, theirs, rounds)
        gbps = nbytes / t / 1e9
        row = dict(op=name, ms=t * 1e3, torch_ms=None if tt is None else tt * 1e3,
                   vs_torch=None if tt is None else t / tt, paired=ratio, mb_moved=nbytes / 1e6, gbps=gbps,
                   frac_copy=gbps / copy, spread=(max(a) - min(a)) / t)
        if single and threads != 1 and torch is not None:
            torch.set_num_threads(1)
            with fc.num_threads(1):
                row["paired_1t"] = _interleaved(ours, theirs, rounds)[2]
        rows.append(row)
    copy_after = copy_gbps(nbytes=x.nbytes)
    return copy, copy_after, rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "pool.json"))
    a = p.parse_args(argv)
    copy, copy_after, rows = run(a.threads, a.rounds)
    print("input %s float32, %d threads; memory copy %.1f GB/s before and %.1f GB/s after (this run)"
          % ("x".join(map(str, SHAPE)), a.threads, copy, copy_after))
    print(format_table(rows, ["op", "ms", "torch_ms", "vs_torch", "paired", "paired_1t", "mb_moved", "gbps",
                              "frac_copy", "spread"]))
    save_json(a.json, rows, copy_gbps=copy, copy_gbps_after=copy_after, threads=a.threads, shape=SHAPE)


if __name__ == "__main__":
    main()
