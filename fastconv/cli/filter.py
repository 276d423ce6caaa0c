"""Apply a named filter or a kernel file to an image file.

Examples::

    fastconv filter in.png out.png --gaussian 2
    fastconv filter in.png edges.png --sobel
    fastconv filter in.png out.png --kernel sharpen
    fastconv filter in.png out.png --kernel-file my_kernel.txt --mode wrap

Images are read and written with scikit-image's io.  Colour images keep their channels for Gaussian,
unsharp-mask and kernel filters; edge filters (sobel, prewitt, scharr, laplace) work on the grey-level image.
The result is saved as 8-bit: values outside [0, 1] (sharpening overshoot, a Laplacian's negative half) are
clipped, as image editors do, so contrast is kept; ``--rescale`` maps the result's range onto [0, 1] instead.

Volumes larger than memory: Zarr arrays (``*.zarr``) and multi-page TIFF stacks are filtered chunk by chunk with
:mod:`fastconv.dask` (``pip install 'fastconv[dask]'``), with a progress bar, and written to Zarr or to a TIFF
stack as computed values (float32 for float32 input; no rescaling)::

    fastconv filter volume.zarr smooth.zarr --gaussian 4 --chunks 256
    fastconv filter stack.tif smooth.tif --gaussian 2 --threads 2
    fastconv filter stack.tif edges.zarr --sobel
"""
import os

import numpy as np

from fastconv.cli._args import positive_int

__all__ = ["HELP", "add_arguments", "main", "FORMATS"]

HELP = "apply a named filter or a kernel file to an image file"

EDGE = ("sobel", "prewitt", "scharr", "laplace")

# Output formats (by extension) that keep an 8-bit grey or RGB image as it is.
FORMATS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".webp")

EPILOG = """examples:
  fastconv filter in.png out.png --gaussian 2
  fastconv filter in.png edges.png --sobel
  fastconv filter in.png sharp.png --kernel sharpen
  fastconv filter in.png lap.png --laplace --rescale
  fastconv filter in.png out.png --kernel-file my_kernel.txt --mode wrap

output formats: %s""" % ", ".join(f[1:] for f in FORMATS)


def add_arguments(p):
    p.add_argument("input", help="input image file (any format scikit-image reads), Zarr array or TIFF stack")
    p.add_argument("output", help="output image file; the extension chooses the format (%s)"
                   % ", ".join(f[1:] for f in FORMATS))
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--gaussian", type=float, metavar="SIGMA", help="Gaussian blur with standard deviation SIGMA")
    g.add_argument("--unsharp", type=float, metavar="RADIUS", help="unsharp mask with this radius (see --amount)")
    for name in EDGE:
        g.add_argument("--" + name, action="store_true", help="%s edge filter (grey level)" % name)
    g.add_argument("--kernel", metavar="NAME", help="a named kernel from fastconv.filters.kernels")
    g.add_argument("--kernel-file", metavar="PATH", help="a 2-D kernel: .npy, or text with one row per line")
    p.add_argument("--amount", type=float, default=1.0, help="unsharp mask amount (default: %(default)s)")
    p.add_argument("--mode", default=None, help="boundary mode: reflect, constant, nearest, mirror, wrap")
    p.add_argument("--rescale", action="store_true",
                   help="map the result's min..max onto 0..1 before saving (default: clip to 0..1, which keeps "
                        "the contrast of sharpened or smoothed images)")
    c = p.add_argument_group("volumes (Zarr, TIFF stacks), filtered chunk by chunk")
    c.add_argument("--chunks", type=positive_int, default=None, metavar="N",
                   help="block edge along every axis (default: the Zarr chunks; 64 planes of a TIFF stack)")
    c.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="blocks filtered at once (default: all CPUs); each uses its share of the cores")
    c.add_argument("--overwrite", action="store_true", help="replace an existing output volume")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load_kernel(path):
    if not os.path.exists(path):
        raise OSError("--kernel-file: no such file: %s" % path)
    try:
        k = np.load(path) if path.endswith(".npy") else np.loadtxt(path, ndmin=2)
    except ValueError as exc:
        raise ValueError("--kernel-file: %s is not a numeric kernel: %s" % (path, exc)) from None
    if k.ndim != 2:
        raise ValueError("--kernel-file: the kernel must be 2-D, got shape %s" % (k.shape,))
    return k


def main(args):
    if is_volume(args.input) or is_volume(args.output):
        return volume_main(args)
    from skimage import io
    from skimage.color import rgb2gray, rgba2rgb
    from skimage.exposure import rescale_intensity
    from skimage.util import img_as_float, img_as_ubyte

    from .. import filters

    ext = os.path.splitext(args.output)[1].lower()
    if ext not in FORMATS:
        raise ValueError("cannot tell the output format from %r: use one of the extensions %s"
                         % (args.output, ", ".join(FORMATS)))
    if not os.path.exists(args.input):
        raise OSError("no such input file: %s" % args.input)
    image = io.imread(args.input)
    if image.ndim == 3 and image.shape[-1] == 4:
        image = rgba2rgb(image)
    image = img_as_float(image)
    colour = image.ndim == 3
    ca = -1 if colour else None
    mode = {} if args.mode is None else {"mode": args.mode}
    if args.gaussian is not None:
        out = filters.gaussian(image, args.gaussian, channel_axis=ca, **mode)
    elif args.unsharp is not None:
        out = filters.unsharp_mask(image, args.unsharp, args.amount, channel_axis=ca)
    elif args.kernel is not None or args.kernel_file is not None:
        if args.kernel is not None and args.kernel not in filters.kernels:
            raise ValueError("--kernel: unknown kernel %r; choose from %s"
                             % (args.kernel, ", ".join(sorted(filters.kernels))))
        k = filters.kernels[args.kernel] if args.kernel is not None else _load_kernel(args.kernel_file)
        out = filters.apply_kernel(image, k, channel_axis=ca, **mode)
    else:
        name = next(n for n in EDGE if getattr(args, n))
        grey = rgb2gray(image) if colour else image
        fn = getattr(filters, name)
        out = fn(grey) if name == "laplace" else fn(grey, **mode)
    out = np.asarray(out, np.float64)
    if args.rescale:
        out = rescale_intensity(out, out_range=(0.0, 1.0))
    io.imsave(args.output, img_as_ubyte(np.clip(out, 0, 1)), check_contrast=False)
    print("wrote %s (%s)" % (args.output, "x".join(map(str, out.shape))))
    return 0


# ---------------------------------------------------------------------------------------------- volumes
def _is_zarr(path):
    return path.rstrip("/").endswith(".zarr")


def _is_tiff(path):
    return path.lower().endswith((".tif", ".tiff"))


def is_volume(path):
    """Zarr arrays, and TIFF files of more than one page (stacks), go through the chunked path."""
    if _is_zarr(path):
        return True
    if _is_tiff(path) and os.path.exists(path):
        import tifffile
        with tifffile.TiffFile(path) as tif:
            return len(tif.pages) > 1
    return False


def _open_volume(path, chunks):
    import dask.array as da
    import zarr
    if not os.path.exists(path):
        raise OSError("no such input file: %s" % path)
    if _is_zarr(path):
        x = da.from_zarr(zarr.open_array(path, mode="r"))
        default = None
    else:
        import tifffile
        x = da.from_zarr(zarr.open(tifffile.imread(path, aszarr=True), mode="r"))
        default = (64,) + x.shape[1:]                  # pages are the stored chunks: group them
    if chunks is not None:
        if chunks < 1:
            raise ValueError("--chunks must be positive, got %d" % chunks)
        x = x.rechunk((chunks,) * x.ndim)
    elif default is not None:
        x = x.rechunk(default)
    return x


def _lazy_filter(args, x):
    import fastconv.dask as fd
    mode = {} if args.mode is None else {"mode": args.mode}
    if args.gaussian is not None:
        return fd.gaussian(x, args.gaussian, preserve_range=True, **mode)
    if args.unsharp is not None:
        return fd.unsharp_mask(x, args.unsharp, args.amount, preserve_range=True)
    if args.kernel is not None or args.kernel_file is not None:
        from .. import filters
        if args.kernel is not None and args.kernel not in filters.kernels:
            raise ValueError("--kernel: unknown kernel %r; choose from %s"
                             % (args.kernel, ", ".join(sorted(filters.kernels))))
        k = filters.kernels[args.kernel] if args.kernel is not None else _load_kernel(args.kernel_file)
        k = k.reshape((1,) * (x.ndim - k.ndim) + k.shape)   # a 2-D kernel filters every plane of a volume
        return fd.apply_kernel(x, k, preserve_range=True, **mode)
    name = next(n for n in EDGE if getattr(args, n))
    fn = getattr(fd, name)
    return fn(x) if name == "laplace" else fn(x, **mode)


class _Progress:
    """A tqdm bar that advances as the blocks of a lazy result finish (dask's local schedulers; the result's
    tasks may be fused with the store or slicing tasks after them, which keep the name's prefix)."""

    def __init__(self, res, enabled):
        from dask.callbacks import Callback
        from tqdm import tqdm
        self.bar = tqdm(total=res.npartitions, unit="block", disable=not enabled, desc="filter")
        bar, prefix, width = self.bar, res.name.rsplit("-", 1)[0], res.ndim + 1

        def posttask(key, result, dsk, state, worker_id):
            if isinstance(key, tuple) and len(key) == width and isinstance(key[0], str) \
                    and key[0].startswith(prefix) and not key[0].endswith("-halo"):
                bar.update(1)
        self.callback = Callback(posttask=posttask)

    def __enter__(self):
        self.callback.__enter__()
        return self

    def __exit__(self, *exc):
        self.callback.__exit__(*exc)
        self.bar.close()


def volume_main(args):
    """Filter a Zarr array or a TIFF stack chunk by chunk into a Zarr array or a TIFF stack."""
    try:
        import dask
        import dask.array as da
    except ImportError:
        raise OSError("filtering Zarr arrays and TIFF stacks needs the dask extra: pip install 'fastconv[dask]'") \
            from None
    if not (_is_zarr(args.output) or _is_tiff(args.output)):
        raise ValueError("a volume is written to Zarr (*.zarr) or to a TIFF stack (*.tif, *.tiff), got %s"
                         % args.output)
    if os.path.exists(args.output) and not args.overwrite:
        raise OSError("%s exists; pass --overwrite to replace it" % args.output)
    if os.path.abspath(args.output) == os.path.abspath(args.input):
        raise ValueError("the output must not be the input (%s)" % args.input)
    x = _open_volume(args.input, args.chunks)
    res = _lazy_filter(args, x)
    threads = args.threads if args.threads is not None else os.cpu_count() or 1
    if threads < 1:
        raise ValueError("--threads must be positive, got %d" % threads)
    show = not args.no_progress
    with dask.config.set(scheduler="threads", num_workers=threads):
        if _is_zarr(args.output):
            import zarr
            out = zarr.create_array(store=args.output, shape=res.shape, chunks=res.chunksize, dtype=res.dtype,
                                    overwrite=args.overwrite)
            with _Progress(res, show):
                da.store(res, out, lock=False)
        else:
            import tifffile
            if os.path.exists(args.output):
                os.remove(args.output)
            big = res.nbytes >= 2 ** 32 - 2 ** 25
            with tifffile.TiffWriter(args.output, bigtiff=big) as tif, \
                    _Progress(res, show):
                start = 0
                for depth in res.chunks[0]:               # one row of blocks along the first axis at a time
                    for plane in res[start:start + depth].compute():
                        tif.write(plane, contiguous=True)
                    start += depth
    print("wrote %s (%s %s)" % (args.output, "x".join(map(str, res.shape)), res.dtype))
    return 0
