"""What ``auto`` chooses from recorded calibrations: probe times measured on a 2-core Xeon (Sapphire Rapids,
AVX-512, 2 threads, load about 1.5), fed through the fits of :mod:`fastconv._calibrate` and the filters' constants
of :mod:`fastconv.filters._engine`.  Nothing is timed here: the models and fits are checked against the choice
that was the faster one on that machine.
"""
import numpy as np
import pytest

import fastconv as fc
from fastconv import _algorithms, _calibrate
from fastconv.filters import _engine as FE

# (name, input shape, weight shape, stride, padding, groups) of the probes the times below were measured on
PROBES = [
    ("3x3", (8, 64, 40, 40), (64, 64, 3, 3), 1, 1, 1),
    ("3x3 wide", (4, 128, 28, 28), (128, 128, 3, 3), 1, 1, 1),
    ("1x1", (4, 128, 14, 14), (64, 128, 1, 1), 1, 0, 1),
    ("5x5", (32, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1),
    ("11x11 s4", (8, 3, 163, 163), (48, 3, 11, 11), 4, 0, 1),
    ("depthwise", (4, 32, 28, 28), (32, 1, 3, 3), 1, 1, 32),
    ("15x15", (1, 8, 48, 48), (8, 8, 15, 15), 1, 7, 1),
    ("image 15x15", (1, 1, 480, 480), (1, 1, 15, 15), 1, 7, 1),
]
# microseconds per call (best of three) of direct and fft on each probe, op by op, from one calibration
RECORDED_US = {
    "3x3": {"direct forward": 6385, "direct input": 6722, "direct weight": 27252},
    "3x3 wide": {"direct forward": 7090, "direct input": 4896, "direct weight": 17133},
    "1x1": {"direct forward": 297, "direct input": 284, "direct weight": 1050, "fft forward": 2298,
            "fft input": 2298, "fft weight": 2316},
    "5x5": {"direct forward": 316, "direct input": 518, "direct weight": 613, "fft forward": 956, "fft input": 1334,
            "fft weight": 964},
    "11x11 s4": {"direct forward": 4684, "direct input": 17209, "direct weight": 6769, "fft forward": 7852,
                 "fft input": 11848, "fft weight": 8839},
    "depthwise": {"direct forward": 188, "direct input": 190, "direct weight": 189, "fft forward": 1310,
                  "fft input": 2138, "fft weight": 2132},
    "15x15": {"direct forward": 2133, "direct input": 2144, "direct weight": 3309, "fft forward": 1116,
              "fft input": 1230, "fft weight": 1068},
    "image 15x15": {"direct forward": 1998, "direct input": 1827, "direct weight": 2296, "fft forward": 2106,
                    "fft input": 2241, "fft weight": 2708},
}
OPS = {"forward": "forward", "input": "grad_input", "weight": "grad_weight"}


def _recorded_calibration():
    """The calibration's fits, made as ``_calibrate.calibrate`` makes them, from the recorded times."""
    samples = {}
    for name, xs, ws, stride, padding, groups in PROBES:
        geom = fc.ConvGeometry.make(xs, ws, stride, padding, 1, groups)
        for what, us in RECORDED_US[name].items():
            alg_name, op = what.split()
            alg, op = _algorithms.get(alg_name), OPS[op]
            model = alg.cost(geom, np.float32, op)
            kind = alg.cost_kind(geom, np.float32, op)
            for key in {"%s/%s/%s" % (alg.name, op, kind), "%s/%s/" % (alg.name, op)}:
                samples.setdefault(key, []).append((model, us * 1e-6))
    return {"fits": {k: _calibrate._fit(v) for k, v in samples.items()}}


@pytest.fixture
def recorded(monkeypatch):
    monkeypatch.setattr(_calibrate, "current", _recorded_calibration)
    with fc.num_threads(2):
        yield


def _estimates(n, k, op):
    geom = fc.ConvGeometry.make((1, 1, n, n), (1, 1, k, k), 1, "same", 1, 1)
    return {a: _calibrate.estimate(_algorithms.get(a), geom, np.float32, op) for a in ("direct", "fft")}


@pytest.mark.parametrize("k", [3, 7, 15])
def test_images_with_small_kernels_take_direct(recorded, k):
    """512^2 single-channel image, "same" padding: direct ran 1.3 ms and fft 2.7 ms with a 15x15 kernel (direct
    1.8-5x faster below); the fft fit over every probe underestimated the image 1.3x and the column kernel's
    constant rate overestimated direct 2x, and auto took fft."""
    est = _estimates(512, k, "forward")
    assert est["direct"] < est["fft"]


@pytest.mark.parametrize("k", [31, 63])
def test_images_with_large_kernels_take_fft(recorded, k):
    """Same image: fft ran 2.4 ms (31x31) and 3.7 ms (63x63), direct 3.9 and 17 ms."""
    est = _estimates(512, k, "forward")
    assert est["fft"] < est["direct"]


def test_small_images_take_direct(recorded):
    """64^2 image, 15x15 kernel: direct 0.06-0.08 ms, fft 0.27 ms; and its weight gradient."""
    for op in ("forward", "grad_weight"):
        est = _estimates(64, 15, op)
        assert est["direct"] < est["fft"]


# ------------------------------------------------------------------------------------------------ the filters
# Probe times (seconds, float32, 2 threads) of ``filters._engine.calibrate`` on 1024^2 images, six calibrations
# on a busy machine: the 1x1 pass, the 9x9 direct correlation, the 31x31 FFT correlation, and the call overhead.
RECORDED_SIZE = 1024
RECORDED_FILTERS = [
    (1.21e-4, 1.040e-3, 5.94e-3, 2.10e-2), (1.12e-4, 0.961e-3, 6.33e-3, 2.09e-2),
    (1.08e-4, 0.798e-3, 4.55e-3, 1.37e-2), (0.62e-4, 0.931e-3, 5.96e-3, 2.05e-2),
    (1.17e-4, 0.782e-3, 4.81e-3, 1.53e-2), (0.60e-4, 0.638e-3, 4.55e-3, 1.35e-2),
]


def test_the_filters_calibration_measures_at_the_recorded_size(monkeypatch):
    """The constants come from images large enough for the FFT path's per-element cost to show (on 256^2 ones
    its fixed costs made the 2048^2 crossover wander from 13x13 to 41x41 between processes)."""
    seen = {}
    monkeypatch.setattr(FE, "calibrate", lambda **kw: seen.update(kw) or {})
    _calibrate._measure_filters(2)
    assert seen["size"] == RECORDED_SIZE


@pytest.mark.parametrize("times", RECORDED_FILTERS)
def test_correlate_on_a_large_image_crosses_over_between_15_and_31(times):
    """2048^2 float32, 2 threads: direct ran 4-50 ms for 3x3 to 15x15 kernels and 83 ms for 31x31, where the FFT
    path ran 46 ms (and about that for the smaller kernels)."""
    call, pass_, mac, fft = times
    consts = FE.fit_constants({"call": call, 4: {"pass": pass_, "mac": mac, "fft": fft}}, RECORDED_SIZE, 2)
    rng = np.random.default_rng(0)
    try:
        FE.set_constants(consts)
        for k in (3, 7, 15, 31):
            w = rng.standard_normal((k, k)).astype(np.float32)     # not separable
            assert FE.choose((2048, 2048), w, np.float32, 2) == ("fft" if k == 31 else "direct"), k
    finally:
        FE.set_constants(None)


# direct's weight gradient (the swapped convolution) on the probes where a calibration timed it, microseconds
# (best of three): AMD EPYC (Zen 3, avx2), 2 threads; the 3x3 probes were not timed (4x winograd's estimate)
EPYC_SWAP_US = {"1x1": 750, "5x5": 530, "11x11 s4": 8500, "15x15": 900, "5x5 one channel": 570}
EPYC_PROBES = {p[0]: p for p in PROBES + [("5x5 one channel", (32, 1, 28, 28), (6, 1, 5, 5), 1, 2, 1)]}


def test_a_strided_weight_gradient_is_priced_from_the_strided_probe(monkeypatch):
    """Against its model the swapped convolution ran the 1x1 and 15x15 probes at 0.5-0.6x and the 11x11 stride-4
    probe at 1.5x.  One fit through all of them (scale 0.33, intercept 0.4 ms) put AlexNet's weight gradient
    (8 x 3 x 227^2, 96 11x11 filters, stride 4) at 7 ms where it took 31-36 ms, and auto took direct over winograd
    at 2.3-3x its time.  Narrow, wide and strided layers are fitted apart: the estimate from these same times is
    now within 0.6-1.6x of what the layer took."""
    direct = _algorithms.get("direct")
    samples = {}
    for name, us in EPYC_SWAP_US.items():
        _, xs, ws, stride, padding, groups = EPYC_PROBES[name]
        geom = fc.ConvGeometry.make(xs, ws, stride, padding, 1, groups)
        kind = direct.cost_kind(geom, np.float32, "grad_weight")
        for key in {"direct/grad_weight/%s" % kind, "direct/grad_weight/"}:
            samples.setdefault(key, []).append((direct.cost(geom, np.float32, "grad_weight"), us * 1e-6))
    assert len(samples) == 4            # "swap", "swap wide", "swap strided" and the whole op
    monkeypatch.setattr(_calibrate, "current", lambda: {"fits": {k: _calibrate._fit(v) for k, v in samples.items()}})
    alexnet = fc.ConvGeometry.make((8, 3, 227, 227), (96, 3, 11, 11), 4, 0, 1, 1)
    with fc.num_threads(2):
        est = _calibrate.estimate(direct, alexnet, np.float32, "grad_weight")
        whole = _calibrate._fit(samples["direct/grad_weight/"])
        one_fit = whole[0] * direct.cost(alexnet, np.float32, "grad_weight") + whole[1]
    assert 0.6 * 31e-3 < est < 1.6 * 36e-3, est
    assert one_fit < 0.5 * 31e-3        # what the single fit made of it
