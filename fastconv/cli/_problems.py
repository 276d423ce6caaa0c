"""The problems ``fastconv bench`` measures: its grids, and custom layers from the command line.

A problem is a dict with ``name`` and ``kind``:

* ``conv``: a convolution layer (``x``, ``w`` shapes, ``stride``, ``padding``, ``dilation``, ``groups``,
  ``backward``) measured forward and, with ``backward``, for its input and weight gradients;
* ``image``: a single-channel image convolved with a ``kernel`` x ``kernel`` filter ("same" size), forward, where
  scipy.ndimage and scipy.signal are peers;
* ``pool``: max or average pooling (``pool``, ``x``, ``kernel``, ``stride``, ``padding``), forward and backward;
* ``filter``: an image filter of :mod:`fastconv.filters` (``filter`` = ``gaussian`` or ``sobel``, ``shape``,
  ``sigma``) against scikit-image and scipy.ndimage.
"""
import re

from .._geometry import ConvGeometry
from ..benchmark import REFERENCE_LAYERS

__all__ = ["KINDS", "GRIDS", "conv", "image", "pool", "gaussian", "sobel", "parse_layer", "LAYER_HELP"]

KINDS = ("conv", "image", "pool", "filter")


def conv(name, x, w, stride=1, padding=0, groups=1, dilation=1, backward=True):
    return dict(name=name, kind="conv", x=tuple(x), w=tuple(w), stride=stride, padding=padding, groups=groups,
                dilation=dilation, backward=backward)


def image(n, k):
    return dict(name="image %d^2 k%d" % (n, k), kind="image", x=(1, 1, n, n), w=(1, 1, k, k), stride=1,
                padding="same", groups=1, dilation=1, backward=False, kernel=k)


def pool(kind, x, k, stride, padding=0):
    return dict(name="%spool %dx%d s%d %s" % (kind, k, k, stride, "x".join(map(str, x[1:]))), kind="pool",
                pool=kind, x=tuple(x), kernel=k, stride=stride, padding=padding)


def gaussian(shape, sigma):
    return dict(name="gaussian %s s%g" % ("x".join(map(str, shape)), sigma), kind="filter", filter="gaussian",
                shape=tuple(shape), sigma=sigma)


def sobel(shape):
    return dict(name="sobel %s" % "x".join(map(str, shape)), kind="filter", filter="sobel", shape=tuple(shape))


def _reference_layers():
    return [conv(name, x, w, stride=s, padding=p) for name, x, w, s, p in REFERENCE_LAYERS]


GRIDS = {
    "quick": [
        conv("tiny 3x3", (2, 8, 16, 16), (8, 8, 3, 3), padding=1),
        image(64, 3), image(64, 15),
        pool("max", (2, 8, 32, 32), 2, 2),
        gaussian((64, 64), 2.0),
    ],
    "default": _reference_layers() + [
        conv("large 31x31", (1, 16, 128, 128), (16, 16, 31, 31), padding=15),
        conv("depthwise 3x3", (8, 64, 56, 56), (64, 1, 3, 3), padding=1, groups=64),
        conv("channels 16", (8, 16, 28, 28), (16, 16, 3, 3), padding=1),
        conv("channels 64", (8, 64, 28, 28), (64, 64, 3, 3), padding=1),
        conv("channels 256", (8, 256, 28, 28), (256, 256, 3, 3), padding=1, backward=False),
        image(512, 3), image(512, 7), image(512, 15), image(512, 31), image(512, 63),
        pool("max", (8, 64, 112, 112), 3, 2, 1), pool("max", (8, 64, 56, 56), 2, 2), pool("avg", (8, 64, 56, 56), 2, 2),
        gaussian((1024, 1024), 3.0), sobel((1024, 1024)),
    ],
    "full": _reference_layers() + [
        conv("resnet 3x3 256", (8, 256, 14, 14), (256, 256, 3, 3), padding=1),
        conv("large 31x31", (1, 16, 256, 256), (16, 16, 31, 31), padding=15),
        conv("depthwise 3x3", (8, 64, 56, 56), (64, 1, 3, 3), padding=1, groups=64),
        conv("transposed-size 4x4 s2", (8, 32, 56, 56), (64, 32, 4, 4), stride=2, padding=1),
    ] + [conv("channels %d" % c, (8, c, 28, 28), (c, c, 3, 3), padding=1) for c in (8, 16, 32, 64, 128, 256)]
      + [conv("kernel %d c16" % k, (1, 16, 128, 128), (16, 16, k, k), padding=k // 2) for k in (3, 7, 15, 31)]
      + [image(2048, k) for k in (3, 7, 15, 31, 63)]
      + [pool("max", (8, 64, 112, 112), 3, 2, 1), pool("max", (8, 64, 112, 112), 2, 2),
         pool("avg", (8, 64, 112, 112), 2, 2), pool("avg", (8, 256, 14, 14), 3, 1, 1)]
      + [gaussian((2048, 2048), s) for s in (1.0, 3.0, 8.0)] + [gaussian((2048, 2048, 3), 3.0), sobel((2048, 2048))],
}

LAYER_HELP = ("a convolution layer to measure: N,C,H,W,K,R,S[,stride,pad] (batch, input channels, height, width, "
              "output channels, kernel height and width) or a benchdnn-style problem such as "
              "mb8ic64ih56oc64kh3ph1 (keys g mb ic ih iw oc kh kw sh sw ph pw dh dw n\"name\"; iw=ih, kw=kh, "
              "sw=sh, pw=ph unless given; mb 2, stride 1, padding 0, dilation d0 = none, as benchdnn); "
              "repeat the option for several layers")

_BENCHDNN_KEYS = ("g", "mb", "ic", "ih", "iw", "oc", "oh", "ow", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw", "n")


def _parse_benchdnn(text):
    tokens = re.findall(r'([a-z]+)(\d+|"[^"]*")', text)
    if not tokens or "".join(k + v for k, v in tokens) != text:
        raise ValueError("--layer: cannot read %r: expected N,C,H,W,K,R,S[,stride,pad] or a benchdnn-style "
                         "problem such as mb8ic64ih56oc64kh3ph1" % text)
    d = {}
    for key, value in tokens:
        if key not in _BENCHDNN_KEYS:
            raise ValueError("--layer: unknown key %r in %r; keys: %s" % (key, text, " ".join(_BENCHDNN_KEYS)))
        if key in d:
            raise ValueError("--layer: %r is given twice in %r" % (key, text))
        d[key] = value.strip('"') if key == "n" else int(value)
    for key in ("ic", "ih", "oc", "kh"):
        if key not in d:
            raise ValueError("--layer: %r lacks %r (channels, size and kernel are needed)" % (text, key))
    g = d.get("g", 1)
    if d["ic"] % g or d["oc"] % g:
        raise ValueError("--layer: ic%d and oc%d must be divisible by g%d in %r" % (d["ic"], d["oc"], g, text))
    hw = (d["ih"], d.get("iw", d["ih"]))
    k = (d["kh"], d.get("kw", d["kh"]))
    stride = (d.get("sh", 1), d.get("sw", d.get("sh", 1)))
    pad = (d.get("ph", 0), d.get("pw", d.get("ph", 0)))
    dil = (d.get("dh", 0) + 1, d.get("dw", d.get("dh", 0)) + 1)
    spec = conv(d.get("n") or text, (d.get("mb", 2), d["ic"]) + hw, (d["oc"], d["ic"] // g) + k, stride=stride,
                padding=pad, groups=g, dilation=dil)
    for key, axis in (("oh", 0), ("ow", 1)):
        if key in d:
            out = ConvGeometry.make(spec["x"], spec["w"], stride, pad, dil, g).output_shape[2 + axis]
            if out != d[key]:
                raise ValueError("--layer: %s%d in %r does not match the other sizes, which give %s%d"
                                 % (key, d[key], text, key, out))
    return spec


def parse_layer(text):
    """A ``conv`` problem from ``N,C,H,W,K,R,S[,stride,pad]`` or a benchdnn-style descriptor (see
    :data:`LAYER_HELP`); ValueError naming ``--layer`` for anything else."""
    text = text.strip()
    if re.fullmatch(r"\d+(,\d+){6}(,\d+){0,2}", text):
        v = [int(t) for t in text.split(",")]
        n, c, h, w, k, r, s = v[:7]
        stride = v[7] if len(v) > 7 else 1
        pad = v[8] if len(v) > 8 else 0
        if min(n, c, h, w, k, r, s, stride) < 1:
            raise ValueError("--layer: sizes and stride must be positive in %r" % text)
        spec = conv("%dx%dx%dx%d k%d %dx%d s%d p%d" % (n, c, h, w, k, r, s, stride, pad), (n, c, h, w),
                    (k, c, r, s), stride=stride, padding=pad)
    elif re.fullmatch(r"[\d,\s]+", text):
        raise ValueError("--layer: %r needs 7 to 9 comma-separated integers: N,C,H,W,K,R,S[,stride,pad]" % text)
    else:
        spec = _parse_benchdnn(text)
    try:
        ConvGeometry.make(spec["x"], spec["w"], spec["stride"], spec["padding"], spec["dilation"], spec["groups"])
    except ValueError as exc:
        raise ValueError("--layer %s: %s" % (text, exc)) from None
    return spec
