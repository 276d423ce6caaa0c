"""The ``fft_tiles`` algorithm: small-tile FFT convolution with the channel sums as GEMMs.

Zlateski, Jia, Li, Jain, Seung, "FFT Convolutions are Faster than Winograd on Modern CPUs, Here's Why" (2019):
cut the image into overlapping tiles of L = 8, 16 or 32 points per axis (each gives L - J + 1 outputs for a J-tap
kernel), transform every tile with an FFT of that size, multiply in the frequency domain -- summed over input
channels, one small complex GEMM per frequency -- and transform back.  The tiles stay in cache, the FFTs are
fixed-size codelets vectorised over tiles, and the channel product runs at GEMM speed, so unlike ``fft`` (scipy's
transforms of whole images or large tiles) it is fast for the 5 x 5 - 7 x 7 kernels of ordinary layers, where
Winograd's larger tiles would lose accuracy.  Per output and channel pair a 5 x 5 layer costs about 4 real
multiply-adds with 16-point tiles instead of 25.

It runs on the transform-domain tile engine of the ``winograd`` algorithm (``fastconv/_algos/winograd.py``,
``_kernels/_winograd.pyx``): the same reduction of strides and dilation to stride-1 kernels over virtual
channels (polyphase), the same blocks of tiles, gradients and batch mode; only the transforms differ.  Real FFTs
along the first transformed axis give a packed spectrum (the two real frequencies and Re/Im pairs); along the
others, complex FFTs of the pairs.  Products of complex values are four real GEMMs per frequency (Re and Im parts
are separate points); kernel spectra are computed once per call in double precision.  The tile length is chosen
per geometry by the cost model; phase kernels longer than half a tile are split into blocks.

**Accuracy.**  The FFT is orthogonal up to scaling, so rounding stays that of a dot product (about 1e-7 of
max |y| in float32 on standard-normal data, like ``direct``): not a reduced-accuracy algorithm.
"""
import numpy as np

from .._algorithms import Algorithm, register
from . import winograd as _engine


def _plan(geom, dtype, op):
    plan = _engine.fft_plan(geom, op, np.dtype(dtype).itemsize)
    if plan is None:  # pragma: no cover - conv.py checks supports() first
        raise ValueError("fft_tiles: no tiling of this geometry fits the memory bounds")
    return plan


def forward(x, w, bias, geom, out, nthreads):
    return _engine.fft_forward(_plan(geom, x.dtype, "forward"), x, w, bias, out, nthreads)


def grad_input(gy, w, geom, out, nthreads):
    return _engine.fft_grad_input(_plan(geom, gy.dtype, "grad_input"), gy, w, out, nthreads)


def grad_weight(x, gy, geom, out, nthreads):
    _engine.fft_grad_weight(_plan(geom, x.dtype, "grad_weight"), x, gy, out, nthreads)


def cost(geom, dtype, op):
    """Seconds of the cheapest tile length (the engine's cost model, constants in ``winograd.COST``)."""
    plan = _engine.fft_plan(geom, op, np.dtype(dtype).itemsize)
    return float("inf") if plan is None else _engine.plan_cost(plan)


def supports(geom, dtype, op):
    return _engine.fft_plan(geom, op, np.dtype(dtype).itemsize) is not None


ALGORITHM = register(Algorithm(
    name="fft_tiles",
    forward=forward,
    grad_input=grad_input,
    grad_weight=grad_weight,
    cost=cost,
    description="small-tile FFTs (8, 16 or 32 points) vectorised over tiles, channel sums as GEMMs per frequency",
    supports=supports,
    nonfinite="spreads",     # a tile's transform mixes every input of the tile into every output of it
    reports_finite=("forward", "grad_input"),
))
