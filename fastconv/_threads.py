"""How many threads fastconv's kernels use.

The default is ``OMP_NUM_THREADS`` when set, else the number of CPUs this process may run on.
:func:`set_num_threads` changes the process-wide default; the :func:`num_threads` context manager overrides it for
the current thread (and asyncio task) only, so concurrent callers do not affect each other.
Every kernel receives the count explicitly and releases the GIL while it runs.
"""
import contextlib
import contextvars
import ctypes
import functools
import math
import os
import threading
import warnings

import numpy as np

from . import _validate as V

__all__ = ["set_num_threads", "get_num_threads", "num_threads", "effective_threads", "single_threaded_blas",
           "share_blas_threads", "threads_for", "thread_buffer", "MIN_FLOPS_PER_THREAD", "MAX_THREADS", "GRAIN"]

# Below about this much work per thread (floating point operations), waking another thread costs more than it
# saves: the convolution algorithms use fewer threads for small problems (the result does not depend on it).
MIN_FLOPS_PER_THREAD = 1_000_000
# The most threads one may ask for: the kernels pass the count to OpenMP as a C int, and an OpenMP runtime asked
# for far more threads than a process can start aborts the process instead of failing a call.
MAX_THREADS = 4096
# Elements of element-wise-sized work (pooling windows, filter taps) a thread must get before it is worth waking:
# like PyTorch's grain size, tiny problems run on the calling thread alone.
GRAIN = 32768


def threads_for(work, nthreads=None, grain=GRAIN):
    """Threads worth using for ``work`` units (one per ``grain``), at most ``nthreads`` (default: the current
    count).  The kernels' results never depend on it."""
    n = get_num_threads() if nthreads is None else _forked_cap(nthreads)
    return max(1, min(n, int(work // grain)))


def balanced_block(total, block):
    """The smallest block size that splits ``total`` (>= 1) items into as many pieces as blocks of ``block`` do:
    pieces of equal size, but for the last (7 items in blocks of 6 become 4 + 3, not 6 + 1)."""
    block = max(1, min(block, total))
    return -(-total // -(-total // block))


# GNU OpenMP's worker threads do not survive fork(): in a child forked after the parent's OpenMP threads started,
# a region of more than one thread waits forever for threads that no longer exist (so does PyTorch's).  A child
# of a process that handed out more than one thread therefore runs every kernel on its calling thread.
_state = {"handed_out": False, "forked": False, "warned": False}


def _after_fork_in_child():
    if _state["handed_out"]:
        _state["forked"] = True
    _set_blas_callbacks(_blas_shared, None)     # OpenBLAS restarts its own threads in a child
    _blas_shared.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _forked_cap(n, explicit=False):
    if n > 1:
        if _state["forked"]:
            if explicit and not _state["warned"]:
                _state["warned"] = True
                warnings.warn("fastconv runs on one thread in this process: it was started with fork() after "
                              "OpenMP threads ran in its parent, and OpenMP cannot start threads in such a child. "
                              "Use multiprocessing's 'spawn' or 'forkserver' start method for multi-threaded "
                              "child processes.", RuntimeWarning, stacklevel=3)
            return 1
        _state["handed_out"] = True
    return n


def _default_threads():
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env:
        try:
            n = int(env)
            if n > 0:
                return min(n, MAX_THREADS)
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_global = _default_threads()
_local = contextvars.ContextVar("fastconv_num_threads", default=None)


def _normalise(n, fn):
    n = V.int_tuple(n, 1, fn, "n")[0]
    if n == -1 or n == 0:
        return _forked_cap(_default_threads(), explicit=True)
    if n < -1 or n > MAX_THREADS:
        raise ValueError("%s(): argument 'n' must be a positive int up to %d, or -1/0 for all CPUs, got %d"
                         % (fn, MAX_THREADS, n))
    return _forked_cap(n, explicit=True)


def set_num_threads(n):
    """Set the process-wide number of threads; ``-1`` or ``0`` mean all available CPUs."""
    global _global
    _global = _normalise(n, "set_num_threads")


def get_num_threads():
    """The number of threads the next fastconv call in this thread will use."""
    local = _local.get()
    return _forked_cap(_global if local is None else local)


def effective_threads(n=None):
    """Map ``None`` to :func:`get_num_threads` and ``-1`` to all CPUs (scikit-learn's convention)."""
    if n is None:
        return get_num_threads()
    return _normalise(n, "num_threads")


@contextlib.contextmanager
def num_threads(n):
    """``with fastconv.num_threads(1): ...`` runs the block with ``n`` threads, in this thread only."""
    token = _local.set(_normalise(n, "num_threads"))
    try:
        yield
    finally:
        _local.reset(token)


_blas = {"calls": None, "users": 0, "saved": None}    # calls: (get, set) of each BLAS library's thread count
_blas_lock = threading.Lock()


def _set_blas_threads(lib, n):
    """Set a BLAS library's thread count from whichever Python thread calls.

    threadpoolctl >= 3.6 lets only one "controlling" Python thread change OpenBLAS's (process-wide) count and
    silently ignores the others; without a ``with`` block that thread keeps control for good, so the limit of a
    call made from any other thread was dropped (its GEMMs ran multi-threaded inside our OpenMP region and gave
    other bits than the same call from the first thread).  The reference count above already serialises us.
    """
    getattr(lib, "_real_set_num_threads", lib.set_num_threads)(n)


@contextlib.contextmanager
def single_threaded_blas():
    """Limit the BLAS thread pools to one thread while at least one caller is inside (reference-counted).

    fastconv parallelises one level at a time: inside its OpenMP regions (toeplitz, fft) and for small GEMMs each
    BLAS call runs on one thread.
    """
    with _blas_lock:
        if _blas["users"] == 0:
            if _blas["calls"] is None:
                from threadpoolctl import ThreadpoolController
                import scipy.linalg  # noqa: F401  (loads scipy's BLAS, the one cython_blas calls)
                _blas["calls"] = [_thread_calls(lib) for lib in
                                  ThreadpoolController().select(user_api="blas").lib_controllers]
            _blas["saved"] = [get() for get, _ in _blas["calls"]]
            for (_, put), n in zip(_blas["calls"], _blas["saved"]):
                if n != 1:
                    put(1)
        _blas["users"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas["users"] -= 1
            if _blas["users"] == 0:
                for (_, put), n in zip(_blas["calls"], _blas["saved"]):
                    if n != 1:
                        put(n)


def _thread_calls(lib):
    """(get, set) of a BLAS library's thread count: OpenBLAS's own C functions where threadpoolctl finds them (its
    methods cost about 1.5 us a call, and a product on fastconv's threads makes six such calls), else the
    controller's methods."""
    symbol = getattr(lib, "_get_symbol", None)
    if symbol is not None and getattr(lib, "internal_api", "") == "openblas" and getattr(
            lib, "threading_layer", "") == "pthreads":
        get, put = symbol("openblas_get_num_threads"), symbol("openblas_set_num_threads")
        if get is not None and put is not None:
            return get, put
    return lib.get_num_threads, functools.partial(_set_blas_threads, lib)


# OpenBLAS's worker threads spin after every multi-threaded call (2**28 cycles by default), on the cores the next
# fastconv kernel needs.  OpenBLAS 0.3.27+ can hand its parallel work to a callback instead: fastconv's runs it on
# an OpenMP team -- the threads its own kernels use -- so NumPy's and SciPy's BLAS calls leave nothing spinning
# behind them and the cores have one owner.  The jobs and their split are OpenBLAS's, so results do not change.
_CALLBACK_SETTERS = tuple(prefix + "set_threads_callback_function" + suffix
                          for prefix in ("scipy_openblas_", "openblas_") for suffix in ("64_", "_64", ""))
_CONFIG_GETTERS = tuple(prefix + "get_config" + suffix
                        for prefix in ("scipy_openblas_", "openblas_") for suffix in ("64_", "_64", ""))
_blas_shared = {}          # library file -> (its callback setter, its MAX_THREADS), for those on fastconv's threads


def _symbol(lib, names, argtypes, restype):
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            fn.argtypes, fn.restype = argtypes, restype
            return fn
    return None


def _openblas_setters():
    """{library file: (callback setter, MAX_THREADS)} of the loaded OpenBLAS libraries with their own (pthreads)
    thread server, a callback setter and a configuration string that gives MAX_THREADS."""
    from threadpoolctl import threadpool_info
    found = {}
    for d in threadpool_info():
        if d.get("internal_api") != "openblas" or d.get("threading_layer") != "pthreads":
            continue
        try:
            lib = ctypes.CDLL(d["filepath"])
        except OSError:
            continue
        setter = _symbol(lib, _CALLBACK_SETTERS, [ctypes.c_void_p], None)
        config = _symbol(lib, _CONFIG_GETTERS, [], ctypes.c_char_p)
        if setter is None or config is None:
            continue
        words = [w for w in (config() or b"").decode(errors="replace").split() if w.startswith("MAX_THREADS=")]
        if words and words[0][12:].isdigit() and int(words[0][12:]) > 0:
            found[d["filepath"]] = (setter, int(words[0][12:]))
    return found


def _set_blas_callbacks(libraries, address):
    for setter, _ in libraries.values():
        setter(address)


def blas_shared():
    """The OpenBLAS library files whose parallel work runs on fastconv's threads."""
    return sorted(_blas_shared)


def share_blas_threads(enable=True):
    """Run the parallel work of the loaded OpenBLAS libraries (NumPy's and SciPy's) on fastconv's OpenMP threads
    (``enable=True``, done at import unless ``FASTCONV_SHARE_BLAS_THREADS=0``), or on OpenBLAS's own threads again
    (``False``).  Returns the library files now running on fastconv's threads.

    OpenBLAS's own worker threads keep spinning after each call, on the cores fastconv's kernels need next; on
    fastconv's threads a matrix product costs the next convolution nothing.  The results are identical either
    way.  OpenBLAS's LU factorisation (behind ``numpy.linalg.solve``, ``inv``, ``det``) queues its jobs on
    OpenBLAS's own threads directly and keeps them.  OpenBLAS libraries loaded later are included by calling this
    again; OpenBLAS older than 0.3.27 (no callback) keeps its own threads.
    """
    from . import _kernels
    if not isinstance(enable, (bool, int)):
        raise TypeError("share_blas_threads(): argument 'enable' must be a bool, got %s" % type(enable).__name__)
    if enable:
        libraries = {**_blas_shared, **_openblas_setters()}
        if libraries:
            top = min(max_threads for _, max_threads in libraries.values())
            _set_blas_callbacks(libraries, _kernels._cpu.blas_threads_callback(top))
        _blas_shared.update(libraries)
    else:
        _set_blas_callbacks(_blas_shared, None)
        _blas_shared.clear()
    return blas_shared()


def scipy_blas_core():
    """The OpenBLAS core -- threadpoolctl's "architecture": "Haswell", "SkylakeX", ... -- of the BLAS behind SciPy's
    ``cython_blas``, which runs fastconv's own GEMMs: the OpenBLAS in SciPy's library folder (``scipy.libs`` in
    SciPy's wheels), else the only OpenBLAS loaded; None when that is not an OpenBLAS or cannot be told."""
    try:
        import scipy
        import scipy.linalg  # noqa: F401  (loads scipy's BLAS so threadpoolctl can see it)
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - both are dependencies
        return None
    libs = os.path.realpath(os.path.dirname(scipy.__file__)) + ".libs" + os.sep
    openblas = [d for d in threadpool_info() if d.get("internal_api") == "openblas"]
    own = [d for d in openblas if os.path.realpath(d.get("filepath", "")).startswith(libs)]
    found = own or (openblas if len(openblas) == 1 else [])
    return found[0].get("architecture") if found else None


def thread_buffer(local, slot, shape, dtype, limit, align=0):
    """An uninitialised C-order array of ``shape`` and ``dtype`` from the calling thread's buffer ``slot`` in
    ``local`` (a ``threading.local``), kept and reused by later calls of the same thread when it is at most
    ``limit`` bytes (a new array otherwise).  Fresh memory is faulted in and zeroed by the kernel page by page as
    it is first written, which costs more than many filters' passes; a reused buffer is already mapped.  The array
    is valid until the thread's next request for the same slot.  With ``align`` (bytes), its data starts on a
    multiple of it (NumPy guarantees 16)."""
    dtype = np.dtype(dtype)
    n = math.prod(shape) * dtype.itemsize
    if n > limit:
        buf, start = _aligned_bytes(n, align)
        return buf[start:start + n].view(dtype).reshape(shape)
    pool = getattr(local, "pool", None)
    if pool is None:
        pool = local.pool = {}
    buf, start = pool.get(slot, (None, 0))
    if buf is None or buf.nbytes - start < n:
        buf, start = pool[slot] = _aligned_bytes(max(n, 1), align)
    return buf[start:start + n].view(dtype).reshape(shape)


def _aligned_bytes(n, align):
    """(a new uint8 buffer, the offset of its first ``align``-byte boundary) with ``n`` bytes from that offset.  The
    address is read once here: ``ndarray.ctypes`` builds a ctypes object (about 10 us) and ``__array_interface__``
    a dict (about 3 us), as long as packing a small layer."""
    if align <= 1:
        return np.empty(n, np.uint8), 0
    buf = np.empty(n + align, np.uint8)
    return buf, -buf.__array_interface__["data"][0] % align
