"""Threads on dask.distributed workers: how many cores each worker process lets fastconv use."""
from .. import _threads

__all__ = ["set_worker_threads"]


def _cpus():
    import os
    import socket
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return socket.gethostname(), n


def _set(n):
    _threads.set_num_threads(n)
    return _threads.get_num_threads()


def set_worker_threads(client, cores=None):
    """Set how many cores fastconv may use in each worker process of ``client``'s cluster.

    ``cores=None`` shares each machine's CPUs among the worker processes on it in proportion to their task
    threads (a machine with 32 CPUs and two workers of 2 threads each: 16 per worker, so each task runs 8
    fastconv threads); an int gives every worker that many.  Tasks then run with ``cores // nthreads`` threads
    each (:func:`~fastconv.dask.task_threads`).  Without this call a worker uses ``OMP_NUM_THREADS``, which
    dask's nanny sets to 1: one fastconv thread per task, as many tasks as worker threads.

    Call it again after workers are added or restarted.  Returns ``{worker address: cores}``.
    """
    info = client.scheduler_info(n_workers=-1)["workers"] if _takes_n_workers(client) \
        else client.scheduler_info()["workers"]
    if cores is not None:
        share = {addr: _threads.effective_threads(cores) for addr in info}
    else:
        cpus = client.run(_cpus)                       # address -> (hostname, CPUs)
        by_host = {}
        for addr, (host, _) in cpus.items():
            by_host.setdefault(host, []).append(addr)
        share = {}
        for host, addrs in by_host.items():
            total = sum(int(info[a]["nthreads"]) for a in addrs if a in info) or 1
            n_cpu = cpus[addrs[0]][1]
            for a in addrs:
                t = int(info.get(a, {}).get("nthreads", 1))
                share[a] = max(t, n_cpu * t // total)
    return {addr: client.run(_set, n, workers=[addr])[addr] for addr, n in share.items()}


def _takes_n_workers(client):
    import inspect
    return "n_workers" in inspect.signature(client.scheduler_info).parameters
