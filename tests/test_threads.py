"""Thread control, determinism across thread counts, and fastconv.info()."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastconv as fc


def run_python(code, tmp_path, timeout=300, **env):
    """Run code in a fresh interpreter that imports the same fastconv as this test process (``env``: variables to
    set, or with None to unset); a run longer than ``timeout`` seconds fails."""
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(fc.__file__)))
    full_env = {k: v for k, v in dict(os.environ, PYTHONPATH=pkg_root, **env).items() if v is not None}
    res = subprocess.run([sys.executable, "-c", code], env=full_env, cwd=tmp_path, capture_output=True, text=True,
                         check=True, timeout=timeout)
    return res.stdout


def test_set_get_and_context_manager():
    before = fc.get_num_threads()
    try:
        fc.set_num_threads(1)
        assert fc.get_num_threads() == 1
        with fc.num_threads(2):
            assert fc.get_num_threads() == 2
        assert fc.get_num_threads() == 1
        fc.set_num_threads(-1)
        assert fc.get_num_threads() >= 1
    finally:
        fc.set_num_threads(before)


def test_context_manager_is_local_to_the_thread():
    seen = {}
    with fc.num_threads(1):
        t = threading.Thread(target=lambda: seen.setdefault("other", fc.get_num_threads()))
        t.start()
        t.join()
        assert fc.get_num_threads() == 1
    assert seen["other"] == fc.get_num_threads()


def test_bad_thread_counts():
    with pytest.raises(TypeError, match="'n'"):
        fc.set_num_threads(1.5)
    with pytest.raises(ValueError, match="'n'"):
        fc.set_num_threads(-3)


def test_omp_num_threads_is_respected(tmp_path):
    out = run_python("import fastconv; print(fastconv.get_num_threads())", tmp_path, OMP_NUM_THREADS="3")
    assert out.strip() == "3"


@pytest.mark.parametrize("algorithm", fc.algorithms())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bitwise_identical_for_one_and_two_threads(algorithm, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 8, 21, 19)).astype(dtype)
    w = rng.standard_normal((20, 4, 3, 5)).astype(dtype)
    kw = dict(stride=(1, 2), padding=(1, 2), groups=2, algorithm=algorithm)
    gy = rng.standard_normal(fc.conv2d(x, w, **kw).shape).astype(dtype)
    results = []
    for n in (1, 2):
        with fc.num_threads(n):
            results.append((fc.conv2d(x, w, **kw), fc.grad.conv2d_input(x.shape, w, gy, **kw),
                            fc.grad.conv2d_weight(x, w.shape, gy, **kw)))
    for a, b in zip(*results):
        assert np.array_equal(a, b)


def test_info_reports_build():
    d = fc.info(print_=False)
    for key in ("version", "openmp", "num_threads", "simd", "blas", "algorithms"):
        assert key in d
    assert d["version"] == fc.__version__
    assert d["simd"] in ("avx512", "avx2+fma", "sse2", "generic")
    assert "direct" in d["algorithms"]


def test_default_wait_policy_is_a_short_spin(tmp_path):
    """Unless the environment sets a policy, fastconv gives libgomp GOMP_SPINCOUNT=10000 before it loads (idle
    threads spin briefly, then sleep); a policy or spin count the user set is left alone."""
    code = ("import os; import fastconv, fastconv.benchmark as b; "
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'), b.omp_wait_policy())")
    clean = {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": None}
    assert run_python(code, tmp_path, **clean).split() == ["10000", "None", "GOMP_SPINCOUNT=10000"]
    assert run_python(code, tmp_path, **dict(clean, OMP_WAIT_POLICY="PASSIVE")).split() == [
        "None", "PASSIVE", "OMP_WAIT_POLICY=PASSIVE"]
    assert run_python(code, tmp_path, **dict(clean, GOMP_SPINCOUNT="5")).split()[0] == "5"


FORK_SCRIPT = """
import os, sys, warnings
import numpy as np
import fastconv as fc
fc.set_num_threads(2)
rng = np.random.default_rng(0)
x = rng.standard_normal((8, 16, 40, 40)).astype(np.float32)
w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
img = rng.random((300, 300))
a = rng.standard_normal((700, 700))
def work():
    return (fc.conv2d(x, w, padding=1), fc.max_pool2d(x, 2), fc.filters.gaussian(img, 2),
            fc.grad.conv2d_weight(x, w.shape, x[:, :, 1:-1, 1:-1]), a @ a)
expected = work()                     # the parent's OpenMP threads are running now
pid = os.fork()
if pid == 0:
    import signal
    signal.alarm(100)                 # a hung child must not outlive the test
    code = 1
    try:
        got = work()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fc.set_num_threads(2)
            with fc.num_threads(2):
                again = work()
        ok = (all(np.array_equal(a, b) for a, b in zip(expected, got))
              and all(np.array_equal(a, b) for a, b in zip(expected, again))
              and fc.get_num_threads() == 1 and fc.info(print_=False)["num_threads"] == 1
              and fc.info(print_=False)["blas_on_fastconv_threads"] == []
              and len(caught) == 1 and "spawn" in str(caught[0].message))
        code = 0 if ok else 3
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), fc.get_num_threads())
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_runs_on_one_thread_instead_of_hanging(tmp_path):
    """GNU OpenMP's threads do not survive fork(): a multi-threaded region in the child of a process whose threads
    had started waits forever.  fastconv's child computes the same results on one thread (an explicit request for
    more warns once and is capped) and the parent keeps its threads; NumPy's products, which ran on fastconv's
    threads in the parent, run on OpenBLAS's own again in the child."""
    assert run_python(FORK_SCRIPT, tmp_path, timeout=120, OMP_NUM_THREADS="2").split() == ["0", "2"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_child_forked_before_any_threads_ran_keeps_its_threads(tmp_path):
    code = ("import os, fastconv as fc\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    os._exit(fc.get_num_threads())\n"
            "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))\n")
    assert run_python(code, tmp_path, timeout=120, OMP_NUM_THREADS="3").strip() == "3"



def _blas_sharing_available():
    return bool(fc.share_blas_threads())


@pytest.fixture
def shared_blas():
    if not _blas_sharing_available():
        pytest.skip("no OpenBLAS >= 0.3.27 with its own thread server is loaded")
    yield
    fc.share_blas_threads(True)


def test_numpy_blas_runs_on_fastconv_threads_with_the_same_results(shared_blas):
    """NumPy's and SciPy's OpenBLAS hand their parallel jobs to fastconv's OpenMP team (at import, unless
    FASTCONV_SHARE_BLAS_THREADS=0): the jobs and their split are OpenBLAS's, so every result is bitwise the same."""
    from threadpoolctl import threadpool_limits
    import scipy.linalg
    from fastconv._kernels import _cpu
    rng = np.random.default_rng(1)

    def products():
        out = []
        for dtype in (np.float32, np.float64):
            a = rng.standard_normal((613, 701)).astype(dtype)
            b = rng.standard_normal((701, 389)).astype(dtype)
            out += [a @ b, a.T @ a, scipy.linalg.blas.dgemm(1.0, a, b) if dtype == np.float64 else
                    scipy.linalg.blas.sgemm(1.0, a, b), np.linalg.solve(a[:, :613].astype(np.float64), a)]
        return out

    assert any("numpy" in f for f in fc.info(print_=False)["blas_on_fastconv_threads"])
    with threadpool_limits(2, user_api="blas"):
        seed = rng.bit_generator.state
        before = _cpu.blas_callback_calls()
        shared = products()
        assert _cpu.blas_callback_calls() > before
        assert fc.share_blas_threads(False) == []
        rng.bit_generator.state = seed
        before = _cpu.blas_callback_calls()
        own = products()
        assert _cpu.blas_callback_calls() == before
    for p, q in zip(shared, own):
        assert np.array_equal(p, q)


def test_concurrent_blas_calls_on_fastconv_threads(shared_blas):
    """Products from several Python threads at once (one call's jobs at a time on fastconv's threads), next to LU
    solves, whose jobs OpenBLAS queues on its own threads: neither disturbs the other's per-thread state."""
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(2)
    mats = [rng.standard_normal((500, 500)).astype(np.float32 if i % 2 else np.float64) for i in range(6)]
    systems = [rng.standard_normal((700, 700)) for _ in range(2)]
    with threadpool_limits(2, user_api="blas"):
        expected = [m @ m for m in mats] + [np.linalg.solve(a, a[:, :50]) for a in systems]
        jobs = [lambda m=m: m @ m for m in mats] + [lambda a=a: np.linalg.solve(a, a[:, :50]) for a in systems]
        results = [None] * len(jobs)

        def run(i):
            for _ in range(4):
                results[i] = jobs[i]()
        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert all(np.array_equal(r, e) for r, e in zip(results, expected))


def test_blas_sharing_can_be_switched_off(tmp_path):
    code = "import fastconv; print(len(fastconv.info(print_=False)['blas_on_fastconv_threads']))"
    assert run_python(code, tmp_path, FASTCONV_SHARE_BLAS_THREADS="0").strip() == "0"
    with pytest.raises(TypeError, match="enable"):
        fc.share_blas_threads("yes")


def test_blas_jobs_run_on_started_threads_where_no_team_is_guaranteed(tmp_path, shared_blas):
    """With OMP_DYNAMIC the OpenMP runtime may give a region fewer threads than asked, and OpenBLAS's jobs wait
    for each other: they then run on POSIX threads started for the call (as inside an OpenMP region)."""
    code = ("import numpy as np, fastconv as fc\n"
            "from fastconv._kernels import _cpu\n"
            "from threadpoolctl import threadpool_limits\n"
            "a = np.random.default_rng(0).standard_normal((900, 900))\n"
            "with threadpool_limits(2, user_api='blas'):\n"
            "    n = _cpu.blas_callback_calls(); shared = a @ a; calls = _cpu.blas_callback_calls() - n\n"
            "    fc.share_blas_threads(False); own = a @ a\n"
            "print(_cpu.blas_team_possible(2), calls, np.array_equal(shared, own))\n")
    assert run_python(code, tmp_path, timeout=120, OMP_DYNAMIC="true").split() == ["False", "1", "True"]


def test_import_survives_a_blas_it_cannot_inspect(tmp_path):
    """If the loaded BLAS libraries cannot be inspected, import still works: BLAS keeps its own threads (a
    warning says why)."""
    code = ("import warnings, threadpoolctl\n"
            "def broken():\n"
            "    raise OSError('no library information')\n"
            "threadpoolctl.threadpool_info = broken\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    import fastconv\n"
            "print(fastconv._threads.blas_shared(), "
            "any('keeps its own threads' in str(w.message) for w in caught))\n")
    assert run_python(code, tmp_path, timeout=120).split() == ["[]", "True"]
