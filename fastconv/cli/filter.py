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
"""
import os

import numpy as np

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
    p.add_argument("input", help="input image file (any format scikit-image reads)")
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
