"""Blocks with halos: which source elements each output block reads, and the task graph that assembles them.

Every lazy neighbourhood operation of :mod:`fastconv.dask` is "run the in-memory function on a slab of the source
around each output block and keep the block".  :func:`axis_plan` decides the slab along one axis, from the halo
``(before, after)`` (how far the function reads, over all its passes) and the boundary mode:

``edge`` slabs (filters, every mode but ``wrap``)
    The slab is ``[start - before, stop + after)`` clipped to the array.  Where it is clipped, the slab's edge *is*
    the array's edge, so the in-memory function applies its own boundary mode there, exactly as on the whole
    array, pass after pass (constant and nearest read only the edge; reflect and mirror read back into the slab,
    which is then made at least ``before + after + 1`` long so that every value they reflect is itself exact).
    Where the slab is cut inside the array, the function's mode produces wrong values, but only within the halo,
    which is cropped.  A slab that covers the whole axis is the in-memory computation along that axis.
``wrap`` slabs
    Periodic indices ``(start - before .. stop + after) mod n``: the in-memory function, being shift-invariant,
    computes on them what it computes on the periodic image.
``explicit`` slabs (convolutions)
    The source extended by the padding mode (or zeros) through :func:`~fastconv.filters._engine.index_map`; the
    function then runs without padding on the slab (one pass, so explicit extension is exact).

A slab may span any number of source chunks (chunks smaller than the halo are read through several hops; no
rechunking), and the output keeps the source's chunks.  Each task copies its pieces into one slab, runs the
function under :func:`task_threads` threads and returns the crop.
"""
import itertools
import math
import os
import sys
import threading
import weakref

import numpy as np

from .. import _threads
from ..filters._engine import index_map

__all__ = ["axis_plan", "explicit_plan", "overlap_array", "check_known_chunks", "task_threads", "run_threaded",
           "result_array"]


def _runs(idx, bounds):
    """Split a sequence of source indices (``-1``: the fill value) into pieces ``(block, local index, length)``.

    ``local index`` is a slice for a run of consecutive indices inside one source block (the common case: a
    view), an index array for a reversed or repeated run (reflections, the nearest edge); ``block`` is None for
    a run of fill values.
    """
    idx = np.asarray(idx, dtype=np.int64)
    pieces = []
    i, n = 0, len(idx)
    while i < n:
        v = int(idx[i])
        if v < 0:
            j = i + 1
            while j < n and idx[j] < 0:
                j += 1
            pieces.append((None, None, j - i))
            i = j
            continue
        b = int(np.searchsorted(bounds, v, side="right")) - 1
        lo, hi = int(bounds[b]), int(bounds[b + 1])
        j, step = i + 1, 1
        if j < n and lo <= idx[j] < hi and abs(int(idx[j]) - v) <= 1:
            step = int(idx[j]) - v
            while j < n and lo <= idx[j] < hi and idx[j] - idx[j - 1] == step:
                j += 1
        if step == 1:
            pieces.append((b, slice(v - lo, int(idx[j - 1]) + 1 - lo), j - i))
        else:
            pieces.append((b, idx[i:j] - lo, j - i))
        i = j
    return pieces


def _bounds(chunks):
    return np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)


def axis_plan(chunks, before, after, mode, outside=False):
    """Per output block along one axis: ``(pieces, crop)`` for a filter whose passes read ``before`` elements
    before and ``after`` after each output element in total, with boundary ``mode`` (a canonical name:
    reflect, mirror, nearest, wrap, constant).  ``pieces`` as :func:`_runs`; ``crop`` is the block's slice of the
    slab.  ``outside=True``: the same slabs, but positions beyond the array's edges (periodic slabs) are fill
    values (a mask, whose outside is False whatever the image's mode)."""
    bounds = _bounds(chunks)
    n = int(bounds[-1])
    plan = []
    for s, e in zip(bounds[:-1], bounds[1:]):
        s, e = int(s), int(e)
        lo, hi = max(0, s - before), min(n, e + after)
        if mode == "wrap" and (lo > 0 or hi < n) and (s - before < 0 or e + after > n):
            pos = np.arange(s - before, e + after)
            idx = np.where((pos >= 0) & (pos < n), pos, -1) if outside else np.mod(pos, n)
            plan.append((_runs(idx, bounds), slice(before, before + e - s)))
            continue
        if mode in ("reflect", "mirror"):
            reach = before + after + 1
            if lo == 0:
                hi = min(n, max(hi, reach))
            if hi == n:
                lo = max(0, min(lo, n - reach))
        plan.append((_runs(np.arange(lo, hi), bounds), slice(s - lo, e - lo)))
    return plan


def explicit_plan(n, in_chunks, out_chunks, lead, span, mode):
    """Per output block of a valid correlation: output ``o`` reads extended source ``o - lead .. o - lead + span``
    (``mode``: an :func:`~fastconv.filters._engine.index_map` mode; ``constant`` fills)."""
    bounds = _bounds(in_chunks)
    obounds = _bounds(out_chunks)
    plan = []
    for s, e in zip(obounds[:-1], obounds[1:]):
        pos = np.arange(int(s) - lead, int(e) - lead + span)
        idx = index_map(n, pos, mode)
        plan.append((_runs(idx, bounds), slice(0, int(e - s))))
    return plan


def check_known_chunks(x, fn, axes):
    for a in axes:
        if any(c != c for c in x.chunks[a]):  # NaN: unknown chunk sizes
            raise ValueError("fastconv.dask.%s(): the chunk sizes of axis %d are unknown; call "
                             "x.compute_chunk_sizes() first" % (fn, a))


# --------------------------------------------------------------------------------------- threads in a task
def _local_pool_size():
    import dask
    n = dask.config.get("num_workers", None)
    if n:
        return int(n)
    from dask.system import CPU_COUNT
    return CPU_COUNT


def task_threads(requested=None, ntasks=None):
    """fastconv threads for one task, so that tasks running side by side never oversubscribe the cores.

    * ``requested`` (an int) wins.
    * On a dask.distributed worker: the worker process's fastconv thread count (:func:`fastconv.get_num_threads`
      there: ``OMP_NUM_THREADS``, which the nanny sets to 1 by default, or what :func:`set_worker_threads` /
      ``fastconv.set_num_threads`` set) divided by the worker's task threads.
    * Otherwise (dask's local schedulers): this process's count divided by the tasks that can run at once (the
      threaded scheduler's pool size, or ``ntasks`` when the operation has fewer blocks).  The synchronous
      scheduler runs one task at a time: pass ``threads=`` to give it every core.
    """
    if requested is not None:
        return _threads.effective_threads(requested)
    total = _threads.get_num_threads()
    worker = _current_worker()
    if worker is not None:
        return max(1, total // max(1, _worker_nthreads(worker)))
    width = _local_pool_size()
    if ntasks:
        width = min(width, ntasks)
    return max(1, total // max(1, width))


def _current_worker():
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        return get_worker()
    except ValueError:
        return None


def _worker_nthreads(worker):
    state = getattr(worker, "state", None)
    n = getattr(state, "nthreads", None) or getattr(worker, "nthreads", None)
    return int(n or 1)


def run_threaded(threads, ntasks, func, *args, **kwargs):
    """``func(*args, **kwargs)`` under ``fastconv.num_threads(task_threads(threads, ntasks))``."""
    with _threads.num_threads(task_threads(threads, ntasks)):
        return func(*args, **kwargs)


# ---------------------------------------------------------------------------------------- reusable buffers
_local = threading.local()

# Buffers above this size are not kept between blocks.
SCRATCH_BYTES = 128 * 2 ** 20


def scratch(slot, shape, dtype):
    """A reusable array of ``shape`` and ``dtype`` for this thread, in ``slot`` (any hashable: the arrays of
    different slots are in use at the same time).  A thread keeps one buffer per slot, reused from block to
    block: fresh memory costs a page fault per 4 KiB."""
    return _threads.thread_buffer(_local, slot, tuple(int(v) for v in shape), dtype, SCRATCH_BYTES)


# Freed block results kept for reuse, per byte size (see result_array).
RESULTS_KEPT = 2
_results = {}
_results_lock = threading.Lock()


def _give_back(mem):
    with _results_lock:
        kept = _results.setdefault(len(mem), [])
        if len(kept) < RESULTS_KEPT:
            kept.append(mem)


def result_array(shape, dtype):
    """A new array for a task's result (uninitialised, as ``np.empty``), made from the memory of a freed earlier
    result of the same size when this process has one.

    A block's result usually lives only until the next task has stored it (``da.store``, ``to_zarr``), and a
    fresh array's pages are faulted in and zeroed by the kernel on first write (in the 8 GiB Gaussian benchmark,
    zeroing pages took a quarter of the workers' time, a third of it for results).  The memory goes back to a
    small per-process pool (:data:`RESULTS_KEPT` per size) when the array and every view of it are gone, never
    while anything can still read it."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    n = max(1, nbytes)
    mem = None
    with _results_lock:
        kept = _results.get(n)
        if kept:
            mem = kept.pop()
    if mem is None:
        mem = bytearray(n)
    # ``owner`` is the base of every view of the result (numpy collapses view chains onto the array that wraps
    # foreign memory), so it dies last; only then does ``mem`` go back
    owner = np.frombuffer(mem, np.uint8)
    weakref.finalize(owner, _give_back, mem)
    return owner[:nbytes].view(dtype).reshape(shape)


def slab_slot(i):
    """The :func:`scratch` slot in which a task of a cropping function assembles the slab of source ``i``."""
    return ("slab", i)


# ------------------------------------------------------------------------------------------- the task graph
def _select(blk, sel):
    """``blk`` indexed per axis by slices (one view) and then index arrays (``np.take``)."""
    piece = blk[tuple(s if isinstance(s, slice) else slice(None) for s in sel)]
    for ax, s in enumerate(sel):
        if not isinstance(s, slice):
            piece = np.take(piece, s, axis=ax)
    return piece


def _assemble(layout, holes, shape, dtype, fill, parts, slot=None):
    """One slab: ``parts[i]`` (a whole block, or a piece its own task cut) goes to ``layout[i]``'s place; into
    this thread's :func:`scratch` buffer ``slot`` if given (for a function that keeps no reference to it)."""
    pieces = parts
    if len(pieces) == 1 and not holes and getattr(pieces[0], "flags", None) is not None \
            and pieces[0].flags.writeable:
        return pieces[0]                    # (a read-only block, a memory-mapped chunk, is copied)
    slab = np.empty(shape, dtype) if slot is None else scratch(slot, shape, dtype)
    for (_, dst), piece in zip(layout, pieces):
        slab[dst] = piece
    for dst in holes:
        slab[dst] = fill
    return slab


def _block_task(func, crop, threads, ntasks, specs, *parts):
    """Assemble the slab of every source (``specs``: layout, holes, shape, dtype, fill, part count), run
    ``func`` on them (and on the values of the dependencies that follow in ``parts``) under
    :func:`task_threads` threads and return the crop (of each result, for a tuple).  A ``func`` with a true
    attribute ``crops`` takes ``crop=``, returns the cropped result itself as a new array and keeps no
    reference to its slabs: they are assembled in the thread's :func:`scratch` buffers ``slab_slot(i)``, which
    the function may use for its own temporaries once it has read its slabs."""
    crops = getattr(func, "crops", False)
    slabs, k = [], 0
    for i, (layout, holes, shape, dtype, fill, count) in enumerate(specs):
        slabs.append(_assemble(layout, holes, shape, dtype, fill, parts[k:k + count],
                               slab_slot(i) if crops else None))
        k += count
    if crop is not None and crops:                              # computes only what the crop keeps
        return run_threaded(threads, ntasks, func, *slabs, *parts[k:], crop=crop)
    res = run_threaded(threads, ntasks, func, *slabs, *parts[k:])
    if crop is None:
        return res
    if isinstance(res, tuple):
        return tuple(_cropped(r, crop) for r in res)
    return _cropped(res, crop)


def _cropped(a, crop):
    """``a[crop]``, copied when it is a strict part of ``a`` (a view would keep the whole slab alive)."""
    part = a[crop]
    return part if part.size == a.size else np.ascontiguousarray(part)


def _layout(axes_pieces):
    """The pieces of one slab (per axis: pieces of :func:`_runs`) as ``(layout, holes, keys, shape)``: per
    source block read, its per-axis selection and place in the slab; the places of fill pieces; the block
    indices read; the slab's shape."""
    shape = tuple(sum(p[2] for p in pcs) for pcs in axes_pieces)
    offsets = [np.cumsum([0] + [p[2] for p in pcs]) if len(pcs) > 1 else None for pcs in axes_pieces]
    layout, holes, keys = [], [], []
    for combo in itertools.product(*[range(len(p)) for p in axes_pieces]):
        pcs = [axes_pieces[ax][i] for ax, i in enumerate(combo)]
        dst = tuple(slice(None) if offsets[ax] is None else slice(int(offsets[ax][i]), int(offsets[ax][i + 1]))
                    for ax, i in enumerate(combo))
        if any(p[0] is None for p in pcs):
            holes.append(dst)
        else:
            layout.append((tuple(p[1] for p in pcs), dst))
            keys.append(tuple(p[0] for p in pcs))
    return layout, holes, keys, shape


def _whole(sel, length):
    """Whether the per-axis selection ``sel`` takes all ``length`` elements of a block in order."""
    if not isinstance(sel, slice):
        return False
    if length != length:             # unknown chunk size: only slice(None) is produced for it
        return sel == slice(None)
    return sel.indices(int(length)) == (0, int(length), 1)


def _piece(blk, sel):
    """A copy of a source block's piece: only it travels to the task that needs it, and the block can be
    released as soon as its pieces are cut (a view, as a strip along the first axis would be, keeps the whole
    block alive while dask counts only the strip)."""
    return np.array(_select(blk, sel), order="C")


def _chunk_files(a):
    """``(directory, chunk shape, dtype on disk)`` when every chunk of the array-like ``a`` is a file of its raw
    values in C order in a local directory -- an uncompressed Zarr (format 3) array: the plain ``bytes`` codec
    alone, in a local store (``zarr.storage.LocalStore``, or an fsspec store on the local file system, as
    ``da.from_zarr(path)`` opens it) -- else None."""
    zarr = sys.modules.get("zarr")         # only an array zarr made can be one
    if zarr is None or not isinstance(a, zarr.Array):
        return None
    try:
        from zarr.codecs import BytesCodec
        md = a.metadata
        if md.zarr_format != 3 or len(md.codecs) != 1 or not isinstance(md.codecs[0], BytesCodec):
            return None
        store = a.store_path.store
        if type(store).__name__ == "LocalStore":
            root = str(store.root)
        else:
            fs = getattr(store, "fs", None)
            fs = getattr(fs, "sync_fs", fs)
            if type(fs).__name__ != "LocalFileSystem":
                return None
            root = str(store.path)
        endian = md.codecs[0].endian
        dtype = np.dtype(a.dtype)
        if dtype.itemsize > 1 and endian is not None:
            dtype = dtype.newbyteorder("<" if getattr(endian, "value", endian) == "little" else ">")
        return os.path.join(root, a.store_path.path), tuple(a.chunks), dtype
    except (AttributeError, TypeError, ImportError):
        return None


def _read_mapped(a, sel):
    """``a[sel]`` (basic slices): a read-only memory map of the chunk file when ``sel`` lies within one chunk of
    an array whose chunks are raw files (:func:`_chunk_files`), else ``a``'s own read.  Mapping the page cache's
    pages takes a few milliseconds where reading a 64 MiB chunk into fresh memory took 60-250 ms, and a halo
    cut from it touches only its own pages."""
    files = _chunk_files(a)
    if files is None or len(sel) != len(a.shape):
        return np.asarray(a[sel])
    directory, chunk, dtype = files
    coords, local = [], []
    for s, c, n in zip(sel, chunk, a.shape):
        if not isinstance(s, slice) or s.step not in (None, 1):
            return np.asarray(a[sel])
        start, stop, _ = s.indices(n)
        i = start // c
        if stop <= start or stop > (i + 1) * c:
            return np.asarray(a[sel])
        coords.append(i)
        local.append(slice(start - i * c, stop - i * c))
    path = os.path.join(directory, a.metadata.encode_chunk_key(tuple(coords)))
    try:
        if os.path.getsize(path) != math.prod(chunk) * dtype.itemsize:
            return np.asarray(a[sel])
        block = np.memmap(path, dtype=dtype, mode="r", shape=chunk)
    except (OSError, ValueError):              # a chunk never written (the fill value), or unreadable
        return np.asarray(a[sel])
    return block[tuple(local)].view(np.ndarray)


def mapped_source(x, seed=None):
    """``x`` with its reads memory-mapped (:func:`_read_mapped`) when its blocks are reads of an array whose
    chunks are raw files (:func:`_getter_reads`, :func:`_chunk_files`), else ``x`` itself.  A mapped ``x`` with
    a ``seed`` gives a second, independent set of the same reads (the halos' source, as ``clone`` gives for
    other reads)."""
    key = _getter_reads(x)
    if key is None:
        return x
    from dask._task_spec import DataNode, Task, TaskRef
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
    graph = x.__dask_graph__()
    layer = graph.layers[x.name]
    if seed is None:
        data = next(lay[key] for lname, lay in graph.layers.items() if lname != x.name and key in lay)
        if _chunk_files(data.value if isinstance(data, DataNode) else data) is None:
            return x
    elif next(iter(layer.values())).func is not _read_mapped:
        return x
    name = "mapped-" + tokenize(x.name, seed)
    tasks = {}
    for k, node in layer.items():
        sel = node.args[1]
        tasks[(name,) + k[1:]] = Task((name,) + k[1:], _read_mapped, TaskRef(key),
                                      DataNode(None, sel.value if isinstance(sel, DataNode) else sel))
    layers = {n: lay for n, lay in graph.layers.items() if n != x.name or seed is not None}
    depends = {n: set(d) for n, d in graph.dependencies.items() if n != x.name or seed is not None}
    layers[name], depends[name] = tasks, set(graph.dependencies[x.name])
    return da.Array(HighLevelGraph(layers, depends), name, chunks=x.chunks, dtype=x.dtype, meta=x._meta)


def _getter_reads(x):
    """The key of the data every block of ``x`` reads when each block is dask's ``getter`` on basic slices of one
    array-like that is data in the graph (``da.from_zarr``, ``da.from_array`` of an on-disk array), else None:
    such a block costs only its read to make again."""
    from dask.array.core import getter, getter_inline, getter_nofancy
    try:
        from dask._task_spec import DataNode, GraphNode, TaskRef
    except ImportError:                                 # an older dask: read as dask reads
        return None
    layers = getattr(x.__dask_graph__(), "layers", None)
    if layers is None or x.name not in layers:
        return None
    keys = set()
    for node in layers[x.name].values():
        args = getattr(node, "args", ())
        if getattr(node, "func", None) not in (getter, getter_inline, getter_nofancy, _read_mapped) or len(args) != 2 \
                or getattr(node, "kwargs", None) or not isinstance(args[0], TaskRef):
            return None
        keys.add(args[0].key)
    found = False
    for lname, layer in layers.items():
        if lname == x.name:
            continue
        for key, node in layer.items():
            if isinstance(node, GraphNode) and not isinstance(node, DataNode):
                return None                             # a computation, not data
            found = found or key in keys
    return keys.pop() if len(keys) == 1 and found else None


def halo_source(x):
    """The collection whose blocks halo pieces are cut from: a second read of ``x`` when its blocks are reads
    from storage (:func:`_getter_reads`), else ``x`` itself.

    A block that is both read whole by its own output task and cut into halos for its neighbours must stay in
    memory until the later of the two; in a sweep over a 3-D grid that is a plane of blocks or more, which
    spills on workers with little memory.  Reading the block a second time for the halos lets each read go as
    soon as its one consumer has run: only the halo strips wait for their neighbours.  (In the 8 GiB Gaussian
    benchmark, 2 workers of 2 GiB spilled 0.4-0.7 GiB instead of 4.5-6 GiB, in the same time.)"""
    if _getter_reads(x) is None:
        return x
    mapped = mapped_source(x, seed="fastconv-halo")
    if mapped is not x:
        return mapped
    from dask.graph_manipulation import clone
    return clone(x, seed="fastconv-halo")


def overlap_array(func, sources, plans, out_chunks, dtype, *, name, threads=None, fill=0.0, deps=(),
                  source_plans=None):
    """The lazy array whose block ``b`` is ``func(*slabs)[crop]``.

    ``sources``: dask arrays of one shape and chunks; ``plans``: either one list per axis (output and sources
    have the same axes) giving per output block along that axis the pair ``(pieces, crop)`` of
    :func:`axis_plan` / :func:`explicit_plan`, or a function ``block -> (pieces per source axis, crop or None)``
    (outputs with other axes); ``out_chunks``: the output's chunks; ``fill``: the value of fill pieces; ``deps``:
    dask collections with one key (a reduction, a delayed model) whose values are passed to ``func`` after the
    slabs; ``source_plans``: per source after the first, its own per-axis plans (same slab shapes and crops) or
    None for the first source's.  ``dtype`` is a tuple of dtypes when ``func`` returns a tuple of arrays (then
    a tuple of dask arrays is returned, one task per block computing all of them).

    A piece that is a whole source block is passed as the block's key; a strict part of a block (a halo) is cut
    by its own task, which dask runs where the block is: only the halo travels, and the block can be released
    once its pieces are cut.  Halos of a source read from storage are cut from a second read
    (:func:`halo_source`); the reads of an uncompressed Zarr array in a local directory are memory maps of its
    chunk files (:func:`mapped_source`).
    """
    import operator

    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    nd = len(out_chunks)
    multi = isinstance(dtype, tuple)
    sources = [mapped_source(s) for s in sources]

    def per_axis(plans):
        def block_plan(block):
            return ([plans[ax][block[ax]][0] for ax in range(nd)],
                    tuple(plans[ax][block[ax]][1] for ax in range(nd)))
        return block_plan
    block_plan = plans if callable(plans) else per_axis(plans)
    src_plans = [block_plan] + [block_plan if p is None else per_axis(p)
                                for p in (source_plans or [None] * (len(sources) - 1))]
    plan_token = tokenize(plans if not callable(plans) else str(plans), source_plans)
    dep_keys = []
    for d in deps:
        keys = d.__dask_keys__()
        while isinstance(keys, list):
            (keys,) = keys
        dep_keys.append(keys)
    base = "%s-%s" % (name, tokenize(func, [s.name for s in sources], plan_token, out_chunks, threads, fill,
                                     dep_keys))
    ntasks = int(np.prod([len(c) for c in out_chunks]))
    dsk, pieces, pname = {}, {}, base + "-halo"
    cut_from = {}                      # source name -> the collection its halos are cut from
    for block in itertools.product(*[range(len(c)) for c in out_chunks]):
        specs, args, crop = [], [], None
        for src, plan in zip(sources, src_plans):
            axes_pieces, crop = plan(block)
            layout, holes, keys, shape = _layout(axes_pieces)
            entries = []
            for (sel, dst), k in zip(layout, keys):
                src_key = (src.name,) + k
                entries.append((None, dst))
                if all(_whole(s, src.chunks[ax][k[ax]]) for ax, s in enumerate(sel)):
                    args.append(src_key)
                    continue
                ident = (src_key, tokenize(sel))
                if ident not in pieces:
                    if src.name not in cut_from:
                        cut_from[src.name] = halo_source(src)
                    pieces[ident] = ((pname, len(pieces)), (_piece, (cut_from[src.name].name,) + k, sel))
                args.append(pieces[ident][0])
            specs.append((entries, holes, shape, src.dtype, fill, len(keys)))
        dsk[(base,) + block] = (_block_task, func, crop, threads, ntasks, tuple(specs)) + tuple(args) \
            + tuple(dep_keys)
    piece_dsk = dict(pieces.values())

    def graph_of(name, layer):
        graph = HighLevelGraph.from_collections(name, layer, dependencies=list(sources) + list(deps))
        if not piece_dsk:
            return graph
        halo = HighLevelGraph.from_collections(pname, piece_dsk, dependencies=list(cut_from.values()))
        layers, depends = dict(graph.layers), {k: set(v) for k, v in graph.dependencies.items()}
        for lname, lay in halo.layers.items():          # the halo layer and the second reads it cuts from
            layers.setdefault(lname, lay)
            depends.setdefault(lname, set(halo.dependencies[lname]))
        depends[name] |= {pname}
        return HighLevelGraph(layers, depends)

    if not multi:
        return da.Array(graph_of(base, dsk), base, chunks=out_chunks, dtype=dtype, meta=np.empty((0,) * nd, dtype))
    outs = []
    for i, dt in enumerate(dtype):
        oname = "%s-%d" % (base, i)
        odsk = dict(dsk)
        odsk.update({(oname,) + k[1:]: (operator.getitem, k, i) for k in dsk})
        graph = graph_of(oname, odsk)
        outs.append(da.Array(graph, oname, chunks=out_chunks, dtype=dt, meta=np.empty((0,) * nd, dt)))
    return tuple(outs)
