"""Memory leaks: 10,000 calls of each public op on small shapes grow the resident set by less than 5 MiB.

Each op is warmed up first (caches, plans, lazily imported modules, allocator arenas), then called 10,000 times;
the resident set size (``/proc/self/statm``, else ``resource``'s peak) after a ``gc.collect()`` must have grown by
less than 5 MiB, i.e. under about 500 bytes per call.  The ops are those of tests/test_concurrency.py's
``make_ops`` with one dimensionality per op (1-D, 2-D and 3-D calls run the same Python code and the same kernels
on views) and one thread (the parallel regions, per-thread ``malloc``/``free`` included, run the same code for any
thread count; ``test_threaded_kernels_do_not_leak`` repeats the kernels with two threads).  Error paths are
checked too: the catalogue of bad inputs and a kernel whose scratch allocation fails.

``FASTCONV_LEAK_CALLS`` overrides the number of calls (default 10,000) for quick local runs.
"""
import gc
import os
import resource
import subprocess
import tempfile
import sys
import textwrap

import numpy as np
import pytest

import fastconv as fc

from test_concurrency import make_ops

CALLS = int(os.environ.get("FASTCONV_LEAK_CALLS", "10000"))
SANITIZED = bool(getattr(fc._kernels.build_config, "SANITIZE", ""))
# AddressSanitizer's quarantine keeps freed memory resident: RSS says nothing about leaks there
rss_meaningful = pytest.mark.skipif(SANITIZED, reason="RSS is not meaningful under AddressSanitizer")
LIMIT = 5 * 2 ** 20
WARMUP = 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
SKIP_DIMS = ("conv1d ", "conv3d ", "max_pool1d", "max_pool3d", "avg_pool1d", "avg_pool3d", "lp_pool1d",
             "adaptive_avg_pool1d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool3d",
             "max_unpool1d", "max_unpool3d", "avg_pool1d_backward", "avg_pool3d_backward", "lp_pool1d_backward",
             "adaptive_avg_pool1d_backward", "adaptive_avg_pool3d_backward", "conv_transpose1d", "conv_transpose3d",
             "conv1d_input", "conv3d_weight")


def rss():
    """Resident set size in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # pragma: no cover - not Linux: the peak is an upper bound of the growth
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def growth(fn, calls=CALLS, warmup=WARMUP):
    """RSS growth in bytes over ``calls`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    gc.collect()
    before = rss()
    for _ in range(calls):
        fn()
    gc.collect()
    return rss() - before


OPS = {name: op for name, op in make_ops(5).items() if not name.startswith(SKIP_DIMS)}


@rss_meaningful
def test_the_measurement_sees_a_leak():
    """The harness itself: keeping 8 KiB per call over 1,000 calls is reported as a leak.

    Each call keeps a fresh anonymous mapping with its pages touched, so the growth shows in RSS even when the
    allocator holds memory freed by earlier tests (which a small heap allocation would simply reuse).
    """
    import mmap
    kept = []

    def leak():
        m = mmap.mmap(-1, 8192)
        m.write(b"x" * 8192)
        kept.append(m)

    grew = growth(leak, calls=1000, warmup=0)
    assert grew > LIMIT


def test_op_list_covers_every_public_module():
    names = " ".join(OPS)
    for word in ("conv2d direct", "conv2d toeplitz", "conv2d fft", "conv2d_input", "conv2d_weight",
                 "conv_transpose2d", "max_pool2d", "avg_pool2d", "lp_pool2d", "adaptive_max_pool2d", "kmax_pool",
                 "max_unpool2d", "max_pool_backward", "lp_pool2d_backward", "correlate", "gaussian", "tape"):
        assert word in names
    assert len(OPS) >= 40


@rss_meaningful
@pytest.mark.parametrize("name", sorted(OPS))
def test_ten_thousand_calls_do_not_leak(name):
    with fc.num_threads(1):
        grew = growth(OPS[name])
    assert grew < LIMIT, "%s: RSS grew by %.2f MiB over %d calls" % (name, grew / 2 ** 20, CALLS)


@rss_meaningful
def test_threaded_kernels_do_not_leak():
    """The same kernels with two threads (per-thread buffers allocated and freed in the worker threads), on
    shapes big enough for both threads to run; fewer calls, as each wakes the thread team."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 34, 30)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    gy = fc.conv2d(x, w, padding=1)
    p = rng.standard_normal((4, 16, 64, 64))
    _, idx = fc.max_pool2d(p, 2, return_indices=True)
    calls = max(1, CALLS // 40)
    with fc.num_threads(2):
        for name, op in [
            ("direct", lambda: fc.conv2d(x, w, padding=1, algorithm="direct")),
            ("toeplitz", lambda: fc.conv2d(x, w, padding=1, algorithm="toeplitz")),
            ("fft", lambda: fc.conv2d(x, w, padding=1, algorithm="fft")),
            ("toeplitz grad_input", lambda: fc.grad.conv2d_input(x.shape, w, gy, padding=1, algorithm="toeplitz")),
            ("toeplitz grad_weight", lambda: fc.grad.conv2d_weight(x, w.shape, gy, padding=1,
                                                                   algorithm="toeplitz")),
            ("max_pool", lambda: fc.max_pool2d(p, 3, stride=1, padding=1, return_indices=True)),
            ("avg_pool_backward", lambda: fc.grad.avg_pool2d_backward(p, p.shape, 3, stride=1, padding=1)),
            ("max_pool_backward", lambda: fc.grad.max_pool_backward(p[:, :, ::2, ::2], idx, p.shape)),
            ("kmax", lambda: fc.kmax_pool(p, 5)),
        ]:
            grew = growth(op, calls=calls, warmup=20)
            assert grew < LIMIT, "%s: RSS grew by %.2f MiB over %d two-thread calls" % (name, grew / 2 ** 20, calls)


@rss_meaningful
def test_error_paths_do_not_leak():
    """Every row of the bad-input catalogue raised 100 times (validation errors allocate nothing that stays)."""
    import test_bad_inputs as catalogue
    bad = [c for c in catalogue.TABLE if isinstance(c.expect, type)]

    def all_errors():
        for case in bad:
            try:
                case.fn(*case.args, **case.kwargs)
            except (ValueError, TypeError):
                pass

    grew = growth(all_errors, calls=max(1, CALLS // 100), warmup=2)
    assert grew < LIMIT, "RSS grew by %.2f MiB over the error paths" % (grew / 2 ** 20)


def test_failed_kernel_allocation_is_a_memory_error_and_does_not_leak():
    """Allocation failures inside kernels surface as MemoryError -- no crash -- the process keeps working, and
    repeating the failure leaks nothing.  Two ways, in a child process with an address-space limit so that no
    allocation can succeed and hurt the machine:

    * direct with a geometry whose per-thread gather buffer is 3/4 of the machine's memory (a band of padding;
      larger ones direct declines before running): malloc fails under the limit;
    * kmax_pool on a 2**23-long row (a 128 MiB per-thread sort buffer) under a soft RLIMIT_AS that leaves 48 MiB.
    """
    code = textwrap.dedent("""
        import gc, os, resource, sys
        import numpy as np
        import fastconv as fc
        sys.path.insert(0, %r)
        from test_leaks import rss
        sanitized = bool(fc._kernels.build_config.SANITIZE)   # ASan needs its huge shadow mappings: no limit
        _, hard = resource.getrlimit(resource.RLIMIT_AS)

        def vm_size():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[0]) * resource.getpagesize()

        def limit(extra):
            if not sanitized:
                resource.setrlimit(resource.RLIMIT_AS, (vm_size() + extra if extra else hard, hard))

        def memory_error(fn):
            try:
                fn()
            except MemoryError as exc:
                return str(exc)
            raise AssertionError("no MemoryError")

        x = np.ones((1, 3, 4, 5), np.float32)
        w = np.ones((16, 3, 3, 1), np.float32)
        # the buffer holds 3 x 3 rows of (block width - 1) strides of float32 (the block width of the SIMD level)
        WB = fc._algos.direct._direct.block_sizes(True)[1]
        phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        sw = phys * 3 // 4 // (3 * 3 * (WB - 1) * 4)
        huge = dict(padding=(1, sw), stride=(1, sw), algorithm="direct")
        direct = lambda: fc.conv2d(x, w, **huge)
        limit(min(3 << 30, phys // 4))
        assert "could not allocate" in memory_error(direct)
        for n in (1, 2):
            with fc.num_threads(n):
                for _ in range(50):
                    memory_error(direct)
        gc.collect()
        before = rss()
        for _ in range(%d):
            memory_error(direct)
        gc.collect()
        grew = rss() - before
        limit(0)

        row = np.random.default_rng(0).standard_normal((1, 2 ** 23))
        fc.kmax_pool(row[:, :1000], 3)                       # threads and arenas exist before the limit
        if not sanitized:
            limit(48 << 20)
            for n in (1, 2):
                with fc.num_threads(n):
                    msg = memory_error(lambda: fc.kmax_pool(row, 3))
            assert "kmax_pool" in msg, msg
            limit(0)
        vals, idx = fc.kmax_pool(row, 3)                     # the same call works once memory is there
        assert idx[0, 0] == np.argmax(row[0]) and vals[0, 0] == row.max()
        ok = fc.conv2d(x, w, padding=(1, 0), algorithm="direct")
        assert np.isfinite(ok).all() and ok.shape == (1, 16, 4, 5)
        print("GREW", grew)
    """) % (os.path.dirname(os.path.abspath(__file__)), max(1, CALLS // 10))
    root = os.path.dirname(os.path.dirname(os.path.abspath(fc.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + sys.path))
    # run outside the repository: with the checkout as the working directory, ``-c`` would import the source
    # tree (without compiled modules) instead of the installed package
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env,
                         cwd=tempfile.gettempdir())
    assert res.returncode == 0, res.stderr[-3000:]
    grew = int(res.stdout.split("GREW")[1])
    assert SANITIZED or grew < LIMIT
