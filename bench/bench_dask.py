"""fastconv.dask against dask-image on the same dask.distributed LocalCluster, the same Zarr input and chunks.

1. Gaussian filter of a float32 Zarr volume written to Zarr: ``fastconv.dask.gaussian(vol, sigma, mode='reflect',
   preserve_range=True)`` against ``dask_image.ndfilters.gaussian_filter(vol, sigma, mode='reflect')`` (scipy per
   chunk), one after the other in alternating order (``--repeats``: ABBA...) after an untimed warm-up run of each
   on 2x2x2 blocks, on a LocalCluster of ``--workers`` worker processes with ``--memory-limit`` each and one
   thread per worker.  Reported per run: wall time, the peak of the summed resident memory of the cluster's
   processes (workers and nannies, sampled every 50 ms; the scheduler lives in this process, whose peak is
   shown apart) and the bytes the workers spilled to disk; then the ratio fastconv / dask-image and the largest
   difference between the two outputs (sampled blocks, relative to the largest value).  The acceptance run:
   an 8 GiB volume, sigma 4, 2 workers of 2 GiB: ratio <= 0.3, peak cluster memory < 6 GiB.
2. ``fastconv.dask.predict`` of LeNet-5 over ``--images`` digit-sized (16x16) images on the same cluster,
   checked against the in-memory model output (float32: <= 1e-5 relative, same classes).

    PYTHONPATH=$PWD python bench/bench_dask.py                         # 8 GiB, sigma 4 (long: about an hour)
    PYTHONPATH=$PWD python bench/bench_dask.py --gib 0.5 --images 20000 # a quick look
    PYTHONPATH=$PWD python bench/bench_dask.py --json bench/results/dask.json
    PYTHONPATH=$PWD python bench/bench_dask.py --candidates copy --images 0     # the I/O alone, same chunks
    PYTHONPATH=$PWD python bench/bench_dask.py --no-disk --images 0             # the filters without the I/O

The input volume is made once (random float32, ``--dir``, uncompressed so that both filters pay the same
I/O cost) and reused by later runs of the same size and chunks.  On a machine whose disk cannot keep up, both
runs take the time of the I/O; ``--no-disk`` measures the filters without it (the volume generated in the graph,
the results discarded, the same chunks and cluster).
"""
import argparse
import json
import os
import shutil
import sys
import threading
import time

import numpy as np


class PeakMemory:
    """The peak of the summed RSS of some processes, sampled in a thread."""

    def __init__(self, pids, interval=0.05):
        import psutil
        self.procs = [psutil.Process(p) for p in pids]
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self.me = psutil.Process()
        self.my_peak = 0

    def _run(self):
        while not self._stop.is_set():
            total = 0
            for p in self.procs:
                try:
                    total += p.memory_info().rss
                except Exception:  # a process that just exited
                    pass
            self.peak = max(self.peak, total)
            self.my_peak = max(self.my_peak, self.me.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _pid():
    return os.getpid()


def _spilled(dask_worker):
    """Bytes this worker has written to its spill directory so far (cumulative: what is spilled at a given
    moment is released again by the end of a run)."""
    metrics = getattr(dask_worker.data, "cumulative_metrics", None)
    return int(metrics.get(("disk-write", "bytes"), 0)) if metrics is not None else 0


def cluster_pids(client):
    import psutil
    pids = set(client.run(_pid).values())
    for p in list(pids):
        try:
            parent = psutil.Process(p).parent()
            if parent is not None and parent.pid != os.getpid():
                pids.add(parent.pid)      # the nanny
        except psutil.Error:
            pass
    return sorted(pids)


def make_volume(path, shape, chunks, client):
    """A random float32 Zarr array at ``path`` (kept for later runs of the same shape and chunks)."""
    import dask.array as da
    import zarr
    if os.path.exists(path):
        try:
            z = zarr.open_array(path, mode="r")
            if z.shape == tuple(shape) and z.chunks == tuple(chunks) and z.attrs.get("complete"):
                return z
        except Exception:
            pass
        shutil.rmtree(path)
    z = zarr.create_array(store=path, shape=shape, chunks=chunks, dtype="float32", compressors=None)
    rs = da.random.RandomState(0)
    vol = rs.random_sample(shape, chunks=chunks).astype(np.float32)
    vol.to_zarr(z, compute=True)
    z.attrs["complete"] = True
    return z


def _out_array(path, shape, chunks):
    """The output array of a run.  Its chunks are dense: zarr is told to write them without first comparing
    every value with the fill value (``write_empty_chunks``), a full pass over each chunk that both filters
    would pay."""
    import zarr
    if os.path.exists(path):
        shutil.rmtree(path)
    return zarr.create_array(store=path, shape=shape, chunks=chunks, dtype="float32", compressors=None,
                             config={"write_empty_chunks": True})


class Discard:
    """A store target that drops what it is given (``--no-disk``)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)

    def __setitem__(self, key, value):
        pass


def generated(shape, chunks):
    import dask.array as da
    return da.random.default_rng(0).random(shape, chunks=chunks, dtype=np.float32)


def run_filter(which, src_path, out_path, sigma, client, no_disk=False, chunks=None, warm_up=False):
    """One timed run of candidate ``which``; ``warm_up``: on the first 2 blocks along each axis only."""
    import dask.array as da
    vol = generated(src_path, chunks) if no_disk else da.from_zarr(src_path)
    if warm_up:
        vol = vol[tuple(slice(0, 2 * c) for c in vol.chunksize)]
    if which == "fastconv":
        import fastconv.dask as fd
        res = fd.gaussian(vol, sigma, mode="reflect", preserve_range=True)
    elif which == "copy":              # the I/O alone: read and write the same chunks, no filter
        res = vol
    else:
        from dask_image.ndfilters import gaussian_filter
        res = gaussian_filter(vol, sigma, mode="reflect")
    out = Discard(vol.shape, np.float32) if no_disk else _out_array(out_path, vol.shape, vol.chunksize)
    pids = cluster_pids(client)
    before = sum(client.run(_spilled).values())
    with PeakMemory(pids) as mem:
        t0 = time.perf_counter()
        da.store(res, out, lock=False, compute=True)      # one write per block, where it was computed
        seconds = time.perf_counter() - t0
    spilled = sum(client.run(_spilled).values()) - before
    return {"seconds": seconds, "peak_cluster_bytes": mem.peak, "peak_client_bytes": mem.my_peak,
            "spilled_bytes": spilled}


def compare_outputs(a_path, b_path, samples=6, seed=0):
    """Largest |a - b| / max|b| over a few random chunks of the two outputs."""
    import zarr
    a, b = zarr.open_array(a_path, mode="r"), zarr.open_array(b_path, mode="r")
    rng = np.random.default_rng(seed)
    grid = [-(-s // c) for s, c in zip(a.shape, a.chunks)]
    worst = 0.0
    for _ in range(samples):
        idx = tuple(slice(int(g) * c, (int(g) + 1) * c) for g, c in zip(rng.integers(0, grid), a.chunks))
        x, y = a[idx].astype(np.float64), b[idx].astype(np.float64)
        worst = max(worst, float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-30)))
    # the corners, where the boundary mode matters
    for corner in ((0, 0, 0), tuple(s - 1 for s in a.shape)):
        idx = tuple(slice(max(0, c - 8), c + 8) for c in corner)
        x, y = a[idx].astype(np.float64), b[idx].astype(np.float64)
        worst = max(worst, float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-30)))
    return worst


def compare_generated(shape, chunks, sigma):
    """Largest difference between the two filters on the first and the last block of the generated volume."""
    import fastconv.dask as fd
    from dask_image.ndfilters import gaussian_filter
    vol = generated(shape, chunks)
    a = fd.gaussian(vol, sigma, mode="reflect", preserve_range=True)
    b = gaussian_filter(vol, sigma, mode="reflect")
    worst = 0.0
    for idx in ((0,) * len(shape), tuple(n - 1 for n in a.numblocks)):
        x, y = a.blocks[idx].compute().astype(np.float64), b.blocks[idx].compute().astype(np.float64)
        worst = max(worst, float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-30)))
    return worst


def run_predict(n_images, chunk, batch_size, client):
    import dask.array as da
    import fastconv
    import fastconv.dask as fd
    from fastconv.examples.digits import lenet5, load_data
    x_tr, _, x_te, _ = load_data(size=16)
    base = np.concatenate([x_tr, x_te])
    reps = -(-n_images // len(base))
    rng = np.random.default_rng(0)
    # digit-sized images: the 1797 digits, each copy shifted by up to one pixel
    images = np.concatenate([np.roll(base, tuple(rng.integers(-1, 2, 2)), axis=(2, 3)) for _ in range(reps)])
    images = np.ascontiguousarray(images[:n_images])
    np.random.seed(0)
    model = lenet5(16)
    t0 = time.perf_counter()
    lazy = fd.predict(model, da.from_array(images, chunks=(chunk, 1, 16, 16)), batch_size=batch_size)
    got = lazy.compute()
    t_lazy = time.perf_counter() - t0
    model.eval()
    t0 = time.perf_counter()
    with fastconv.no_grad():
        want = model(images).data
    t_mem = time.perf_counter() - t0
    err = float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())
    same = bool(np.array_equal(got.argmax(1), want.argmax(1)))
    return {"images": n_images, "chunk": chunk, "batch_size": batch_size, "seconds_cluster": t_lazy,
            "seconds_in_memory_one_process": t_mem, "max_rel_error": err, "same_classes": same,
            "shape": list(got.shape)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gib", type=float, default=8.0, help="volume size in GiB (default 8)")
    p.add_argument("--chunk", type=int, default=256, help="chunk edge (default 256)")
    p.add_argument("--sigma", type=float, default=4.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="2GiB")
    p.add_argument("--repeats", type=int, default=1, help="runs of each filter, alternating order (default 1)")
    p.add_argument("--images", type=int, default=100_000, help="images for predict (0: skip)")
    p.add_argument("--dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "fastconv-bench-dask"))
    p.add_argument("--keep", action="store_true", help="keep the outputs (the input is always kept)")
    p.add_argument("--json", default=None, help="write the results to this file")
    p.add_argument("--candidates", default="fastconv,dask_image",
                   help="comma-separated: fastconv, dask_image, copy (the I/O alone; default: the first two)")
    p.add_argument("--no-disk", action="store_true",
                   help="generate the volume in the graph and discard the results: the filters without the I/O")
    args = p.parse_args(argv)

    import dask
    from distributed import Client, LocalCluster

    import fastconv._kernels as K
    from fastconv.benchmark import cpu_model

    plane = 1024 * 1024
    depth = max(1, int(round(args.gib * 2 ** 30 / (4 * plane))))
    shape, chunks = (depth, 1024, 1024), (args.chunk,) * 3
    os.makedirs(args.dir, exist_ok=True)
    src = os.path.join(args.dir, "input-%dx1024x1024-c%d.zarr" % (depth, args.chunk))
    result = {"cpu": cpu_model(), "load_before": os.getloadavg(), "shape": shape, "chunks": chunks,
              "gib": depth * plane * 4 / 2 ** 30, "sigma": args.sigma, "workers": args.workers,
              "memory_limit": args.memory_limit, "runs": []}
    result["simd"] = K.simd_level()
    print("cpu: %s; load average %.1f %.1f %.1f" % ((result["cpu"],) + tuple(result["load_before"])))
    with dask.config.set({"distributed.worker.daemon": False}):
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, memory_limit=args.memory_limit,
                               processes=True, dashboard_address=None)
        client = Client(cluster)
        try:
            result["no_disk"] = args.no_disk
            if args.no_disk:
                src = shape
                print("input: generated %s float32 (%.2f GiB), chunks %s; results discarded"
                      % ("x".join(map(str, shape)), result["gib"], chunks))
            else:
                t0 = time.perf_counter()
                make_volume(src, shape, chunks, client)
                print("input %s: %s float32 (%.2f GiB), chunks %s, ready in %.0f s"
                      % (src, "x".join(map(str, shape)), result["gib"], chunks, time.perf_counter() - t0))
            names = [c.strip() for c in args.candidates.split(",") if c.strip()]
            if not set(names) <= {"fastconv", "dask_image", "copy"}:
                p.error("--candidates: choose from fastconv, dask_image, copy")
            order = []
            for r in range(args.repeats):
                order += names if r % 2 == 0 else names[::-1]
            outs = {w: os.path.join(args.dir, "out-%s.zarr" % w) for w in names}
            # the first run on fresh worker processes pays for their imports and first allocations: every
            # candidate runs once on a few blocks before the timed runs
            for which in names:
                run_filter(which, src, outs[which], args.sigma, client, args.no_disk, chunks, warm_up=True)
            for which in order:
                run = run_filter(which, src, outs[which], args.sigma, client, args.no_disk, chunks)
                run["which"] = which
                run["load"] = os.getloadavg()[0]
                result["runs"].append(run)
                print("%-10s %8.1f s   peak cluster %.2f GiB (client %.2f GiB)   spilled %.2f GiB   load %.1f"
                      % (which, run["seconds"], run["peak_cluster_bytes"] / 2 ** 30,
                         run["peak_client_bytes"] / 2 ** 30, run["spilled_bytes"] / 2 ** 30, run["load"]))
            t = {w: float(np.median([r["seconds"] for r in result["runs"] if r["which"] == w])) for w in outs}
            result["peak_cluster_gib"] = max(r["peak_cluster_bytes"] for r in result["runs"]) / 2 ** 30
            if "fastconv" in t and "dask_image" in t:
                result["ratio"] = t["fastconv"] / t["dask_image"]
                result["max_rel_difference"] = (compare_generated(shape, chunks, args.sigma) if args.no_disk
                                                else compare_outputs(outs["fastconv"], outs["dask_image"]))
                print("fastconv.dask / dask_image: %.3fx (median times); max difference %.2g relative; "
                      "peak cluster memory %.2f GiB" % (result["ratio"], result["max_rel_difference"],
                                                       result["peak_cluster_gib"]))
            if not args.keep and not args.no_disk:
                for path in outs.values():
                    shutil.rmtree(path, ignore_errors=True)
            if args.images:
                pr = run_predict(args.images, 10_000 if args.images >= 50_000 else 2_000, 1000, client)
                result["predict"] = pr
                print("predict: %d images -> %s in %.1f s on the cluster (in memory, one process: %.1f s); "
                      "max difference %.2g relative, same classes: %s"
                      % (pr["images"], tuple(pr["shape"]), pr["seconds_cluster"],
                         pr["seconds_in_memory_one_process"], pr["max_rel_error"], pr["same_classes"]))
        finally:
            client.close()
            cluster.close()
    result["load_after"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print("wrote", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
