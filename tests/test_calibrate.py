"""The machine calibration of ``auto`` and the filters, ``fastconv calibrate``, and the persistent autotuner.

The rest of the suite runs with ``FASTCONV_CALIBRATE=off`` (see conftest.py); these tests turn it on with a
temporary cache directory and a small probe set, so they take a fraction of a second each.
"""
import json
import os

import numpy as np
import pytest

import fastconv as fc
from fastconv import _algorithms, _autotune, _calibrate, cli
from fastconv.filters import _engine as FE

SMALL_PROBES = [("3x3", (2, 8, 12, 12), (8, 8, 3, 3), 1, 1, 1),
                ("depthwise", (2, 8, 12, 12), (8, 1, 3, 3), 1, 1, 8)]


@pytest.fixture
def calibrating(tmp_path, monkeypatch):
    """Calibration on, in a temporary cache directory, with two small probes; restored afterwards."""
    monkeypatch.setenv(_calibrate.ENV_DIR, str(tmp_path))
    monkeypatch.setenv(_calibrate.ENV_MODE, "auto")
    monkeypatch.setattr(_calibrate, "PROBES", SMALL_PROBES)
    monkeypatch.setattr(_calibrate, "REPEATS", 1)
    monkeypatch.setattr(FE, "calibrate", lambda **kw: {"MAC_SECONDS": {"4": 1e-10}, "PASS_SECONDS": {"4": 1e-9},
                                                        "FFT_SECONDS": {"4": 1e-9}, "CALL_SECONDS": 1e-5})
    _calibrate.reset()
    yield tmp_path
    monkeypatch.setenv(_calibrate.ENV_MODE, "off")
    _calibrate.reset()


def test_first_use_measures_stores_and_later_loads(calibrating, capsys):
    geom = fc.ConvGeometry.make((2, 8, 12, 12), (8, 8, 3, 3), padding=1)
    data = _calibrate.current()
    assert "calibrating algorithm choice" in capsys.readouterr().err
    key = _calibrate.machine_key()
    assert data["key"] == key and key["threads"] == fc.get_num_threads() and key["simd"] == fc.info(False)["simd_level"]
    path = _calibrate.cache_path("calibration", key)
    assert os.path.dirname(path) == str(calibrating) and os.path.exists(path)
    with open(path) as f:
        assert json.load(f)["fits"] == json.loads(json.dumps(data["fits"]))
    for name in fc.algorithms():     # every registered algorithm got fits for every op it runs on a probe
        assert any(k.startswith(name + "/forward/") for k in data["fits"])
    assert "direct/grad_weight/wcolumns" in data["fits"] and "direct/forward/channels" in data["fits"]
    # the estimate is the fitted affine map of the model's seconds
    alg = _algorithms.get("direct")
    scale, over = data["fits"]["direct/forward/channels"]
    assert _calibrate.estimate(alg, geom, np.float32, "forward") == pytest.approx(
        scale * alg.cost(geom, np.float32, "forward") + over)
    # a new process (a reset) loads the file instead of measuring
    _calibrate.reset()
    assert _calibrate.current()["seconds"] == data["seconds"]
    assert "calibrating" not in capsys.readouterr().err
    # another thread count is another calibration
    with fc.num_threads(1):
        other = _calibrate.current()
    assert other["key"]["threads"] == 1 and _calibrate.cache_path("calibration", other["key"]) != path


def test_a_calibration_without_a_registered_algorithm_is_measured_again(calibrating, capsys):
    """A stored calibration made when fewer algorithms were registered has no fit for the others: the key names the
    registered algorithms, so it is not loaded and the first auto choice measures again."""
    data = _calibrate.current()
    capsys.readouterr()
    old_key = dict(data["key"], algorithms=[n for n in data["key"]["algorithms"] if n != "winograd"])
    stale = dict(data, key=old_key, fits={k: v for k, v in data["fits"].items() if not k.startswith("winograd/")})
    path = _calibrate.cache_path("calibration", _calibrate.machine_key())
    with open(path, "w") as f:
        json.dump(stale, f)
    assert _calibrate._load(path, _calibrate.machine_key()) is None
    _calibrate.reset()
    fresh = _calibrate.current()
    assert "calibrating algorithm choice" in capsys.readouterr().err
    assert fresh["key"]["algorithms"] == sorted(fc.algorithms())
    assert any(k.startswith("winograd/forward/") for k in fresh["fits"])


def test_off_uses_the_built_in_constants(monkeypatch):
    monkeypatch.setenv(_calibrate.ENV_MODE, "off")
    _calibrate.reset()
    geom = fc.ConvGeometry.make((2, 8, 12, 12), (8, 8, 3, 3), padding=1)
    alg = _algorithms.get("toeplitz")
    assert _calibrate.current() is None
    assert _calibrate.estimate(alg, geom, np.float32, "forward") == alg.cost(geom, np.float32, "forward")
    monkeypatch.setenv(_calibrate.ENV_MODE, "sometimes")
    _calibrate.reset()
    with pytest.raises(ValueError, match="FASTCONV_CALIBRATE"):
        _calibrate.current()


def test_any_registered_algorithm_is_fitted(calibrating):
    """A newly registered algorithm is probed and fitted like the built-in ones (nothing lists them)."""
    direct = _algorithms.get("direct")
    slow = _algorithms.Algorithm(name="slowdirect", forward=direct.forward, grad_input=None, grad_weight=None,
                                 cost=lambda g, d, op: 1e-9 * g.flops, description="a test entry")
    _algorithms.register(slow)
    try:
        data = _calibrate.calibrate(progress=False, save=False)
        scale, over = data["fits"]["slowdirect/forward/"]
        assert scale > 0 and over >= 0
        assert not any(k.startswith("slowdirect/grad") for k in data["fits"])
    finally:
        del _algorithms._registry["slowdirect"]
        _algorithms.invalidate()


def test_the_fit_recovers_an_affine_law():
    samples = [(m, 3.0 * m + 2e-4) for m in (1e-4, 1e-3, 1e-2, 5e-2)]
    scale, over = _calibrate._fit(samples)
    assert scale == pytest.approx(3.0, rel=1e-6) and over == pytest.approx(2e-4, rel=1e-4)
    assert _calibrate._fit([(2e-3, 5e-3)]) == (pytest.approx(2.5), 0.0)
    # two probes of nearly the same model: their slope (33) is noise, the scale is their median ratio
    assert _calibrate._fit([(1.06e-4, 1.78e-4), (1.04e-4, 1.07e-4)])[0] == pytest.approx((1.67 * 1.03) ** 0.5,
                                                                                       rel=0.02)


def test_the_fit_is_not_thrown_off_by_an_outlier():
    """Two of seven probes ran three times faster than the law (a kernel that suits them, a quiet moment): the
    fitted law still predicts a layer 20 times larger than the probes within 10 %."""
    ms = (1e-4, 2e-4, 4e-4, 6e-4, 8e-4, 1e-3, 1.5e-3)
    samples = [(m, (1.5 * m + 5e-5) / (3 if i in (2, 5) else 1)) for i, m in enumerate(ms)]
    scale, over = _calibrate._fit(samples)
    assert scale * 3e-2 + over == pytest.approx(1.5 * 3e-2 + 5e-5, rel=0.1)


def test_a_probe_that_hit_a_busy_moment_is_measured_again():
    """A probe far slower against its model than the others of its algorithm and op is timed again and keeps the
    faster time; the others are not touched."""
    import time
    alg = _algorithms.get("direct")
    slow = {"calls": 0}

    def hiccup():                       # slow for its first few calls only (a busy core), then fast
        slow["calls"] += 1
        time.sleep(0.02 if slow["calls"] <= 2 else 0.0)

    def steady():
        pass
    geom = fc.ConvGeometry.make((1, 1, 8, 8), (1, 1, 3, 3))
    measured = [[alg, "forward", geom, steady, 1e-3, 1e-3], [alg, "forward", geom, steady, 2e-3, 2.1e-3],
                [alg, "forward", geom, steady, 4e-3, 3.9e-3], [alg, "forward", geom, hiccup, 1e-3, 0.02]]
    assert _calibrate._remeasure_outliers(measured, 3) == 1
    assert measured[3][5] < 0.01 and slow["calls"] == 4
    assert [row[5] for row in measured[:3]] == [1e-3, 2.1e-3, 3.9e-3]


def test_filters_use_the_measured_constants(calibrating):
    _calibrate.current()
    assert FE._consts["MAC_SECONDS"][4] == pytest.approx(1e-10)
    assert FE._consts["MAC_SECONDS"][8] == pytest.approx(1e-10 * FE.MAC_SECONDS[8] / FE.MAC_SECONDS[4])
    _calibrate.reset()
    assert FE._consts["MAC_SECONDS"] is FE.MAC_SECONDS


def test_calibrate_command(calibrating, capsys):
    assert cli.main(["calibrate", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "calibration for" in out and "direct/forward/channels" in out and "stored in" in out
    assert cli.main(["calibrate", "--no-save", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert cli.main(["calibrate", "--threads", "0"]) == 2


# ----------------------------------------------------------------------------------------------- autotune
@pytest.fixture
def tuning(tmp_path, monkeypatch):
    monkeypatch.setenv(_calibrate.ENV_DIR, str(tmp_path))
    _autotune.clear_cache()
    yield tmp_path
    fc.autotune(False)
    _autotune.clear_cache()


def test_autotune_persists_in_the_cache_directory_by_default(tuning):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 10, 10)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    fc.autotune(True)
    path = _autotune.cache_info()["file"]
    assert path == _autotune.default_cache_file() and os.path.dirname(path) == str(tuning)
    y = fc.conv2d(x, w, padding=1)
    with open(path) as f:
        winners = json.load(f)
    assert len(winners) == 1 and list(winners.values())[0] in fc.algorithms()
    np.testing.assert_allclose(y, fc.conv2d(x, w, padding=1, algorithm="direct"), atol=1e-4)
    # a later process starts tuned
    _autotune.clear_cache()
    fc.autotune(True)
    assert _autotune.cache_info()["entries"] == 1
    fc.conv2d(x, w, padding=1)
    assert _autotune.cache_info()["misses"] == 0
    fc.autotune(True, cache_file=False)
    assert _autotune.cache_info()["file"] is None
    with pytest.raises(TypeError, match="cache_file"):
        fc.autotune(True, cache_file=3)


def _close_pair(monkeypatch, cost_slow, cost_fast, sleep=0.004, base=_algorithms.get("direct")):
    """A registry of two algorithms: "close_slow" (the model's pick: lower estimate, but it sleeps) and
    "close_fast"."""
    import dataclasses
    import time

    def slow_forward(x, w, b, geom, out, nthreads):
        time.sleep(sleep)
        base.forward(x, w, b, geom, out, nthreads)
    slow = dataclasses.replace(base, name="close_slow", forward=slow_forward, plan=None,
                               cost=lambda g, d, op: cost_slow)
    fast = dataclasses.replace(base, name="close_fast", plan=None, cost=lambda g, d, op: cost_fast)
    monkeypatch.setattr(_algorithms, "_registry", {"close_slow": slow, "close_fast": fast})
    monkeypatch.setattr(_algorithms, "_choice_cache", {})
    monkeypatch.setattr(_calibrate, "current", lambda: None)      # the estimates are the models above
    monkeypatch.setenv(_calibrate.ENV_MODE, "auto")               # (the suite runs with calibration off)
    _algorithms.invalidate()


def test_plain_auto_times_close_calls(monkeypatch):
    """Estimates within SETTLE of each other: the first choice times them and keeps the faster; far apart, small,
    or with calibration off, the model decides and nothing is timed."""
    geom = fc.ConvGeometry.make((1, 2, 9, 9), (3, 2, 3, 3), padding=1)
    try:
        _close_pair(monkeypatch, 1.0e-3, 1.2e-3)
        before = _autotune.cache_info()["settled"]
        assert _algorithms.choose(geom, np.float32, "forward").name == "close_fast"
        assert _autotune.cache_info()["settled"] == before + 1
        assert _algorithms.choose(geom, np.float32, "forward").name == "close_fast"     # remembered
        assert _autotune.cache_info()["settled"] == before + 1
        x = np.ones((1, 2, 9, 9), np.float32)
        np.testing.assert_allclose(fc.conv2d(x, np.ones((3, 2, 3, 3), np.float32), padding=1)[0, 0, 4, 4], 18.0)
        for slow_cost, fast_cost, env in ((1.0e-3, 2.0e-3, None), (1.0e-5, 1.2e-5, None), (1.0e-3, 1.2e-3, "off")):
            _close_pair(monkeypatch, slow_cost, fast_cost)
            if env:
                monkeypatch.setenv(_calibrate.ENV_MODE, env)
            assert _algorithms.choose(geom, np.float32, "forward").name == "close_slow"
            assert _autotune.cache_info()["settled"] == before + 1
    finally:
        monkeypatch.undo()
        _algorithms.invalidate()


def test_small_forward_calls_prefer_an_algorithm_with_a_plan(monkeypatch):
    """Below SETTLE_MIN_SECONDS the model's constants cannot see the Python work a plan skips: an algorithm with a
    plan wins while within PLAN_FAVOUR of the cheapest and PLAN_SAVING above it, and nothing is timed; beyond
    that, or for gradients, the cheapest estimate stays."""
    import dataclasses
    geom = fc.ConvGeometry.make((1, 1, 4, 4), (1, 1, 3, 3), padding=1)
    base = _algorithms.get("direct")
    try:
        for cheap_cost, planned_cost, op, want in ((1.0e-5, 1.8e-5, "forward", "planned"),
                                                   (1.0e-5, 2.5e-5, "forward", "cheap"),
                                                   (1.0e-5, 1.8e-5, "grad_input", "cheap"),
                                                   # within PLAN_FAVOUR, but far more than a plan saves
                                                   (1.0e-4, 1.8e-4, "forward", "cheap"),
                                                   (1.0e-4, 1.2e-4, "forward", "planned")):
            cheap = dataclasses.replace(base, name="cheap", plan=None, cost=lambda g, d, o, c=cheap_cost: c)
            planned = dataclasses.replace(base, name="planned", cost=lambda g, d, o, c=planned_cost: c)
            monkeypatch.setattr(_algorithms, "_registry", {"cheap": cheap, "planned": planned})
            monkeypatch.setattr(_algorithms, "_choice_cache", {})
            _algorithms.invalidate()
            settled = _autotune.cache_info()["settled"]
            assert _algorithms.choose(geom, np.float32, op).name == want
            assert _autotune.cache_info()["settled"] == settled
    finally:
        monkeypatch.undo()
        _algorithms.invalidate()
    # the real registry: the tiny convolution takes direct (its plan)
    assert _algorithms.choose(geom, np.float32, "forward").name == "direct"


def test_autotune_keeps_the_model_choice_on_a_tie(tuning, monkeypatch):
    geom = fc.ConvGeometry.make((2, 4, 10, 10), (4, 4, 3, 3), padding=1)
    cands = [_algorithms.get(n) for n in ("direct", "toeplitz")]
    model = min(cands, key=lambda a: _calibrate.estimate(a, geom, np.float32, "forward")).name
    other = next(a.name for a in cands if a.name != model)
    # the other one is 1 % faster: within the tie margin, so the model's choice stays
    monkeypatch.setattr(_autotune, "measure", lambda g, d, op, c, budget=None: {model: [1.0] * 5, other: [0.99] * 5})
    fc.autotune(True, cache_file=False)
    assert _autotune.tune(geom, np.float32, "forward", cands) == model
    # clearly faster: it wins
    monkeypatch.setattr(_autotune, "measure", lambda g, d, op, c, budget=None: {model: [1.0] * 5, other: [0.5] * 5})
    _autotune.clear_cache()
    assert _autotune.tune(geom, np.float32, "forward", cands) == other


def test_autotune_measures_until_separated(monkeypatch):
    geom = fc.ConvGeometry.make((1, 2, 8, 8), (2, 2, 3, 3), padding=1)
    cands = [_algorithms.get(n) for n in ("direct", "toeplitz")]
    times = _autotune.measure(geom, np.float32, "forward", cands)
    assert set(times) == {"direct", "toeplitz"}
    assert _autotune.MIN_ROUNDS <= len(times["direct"]) <= _autotune.MAX_ROUNDS
    assert len(times["direct"]) == len(times["toeplitz"])


def test_a_changed_cost_model_is_calibrated_again(monkeypatch):
    """The key names a digest of the cost models' source: a calibration stored for other models (a fastconv
    whose cost functions or probes changed) is not used."""
    key = _calibrate.machine_key()
    assert len(key["models"]) == 16
    _calibrate._models_digest.cache_clear()
    monkeypatch.setattr(_calibrate, "_models_digest", lambda: "0" * 16)
    other = _calibrate.machine_key()
    assert other != key and _calibrate.cache_path("calibration", other) != _calibrate.cache_path("calibration", key)


def test_a_rebuilt_kernel_is_calibrated_again(monkeypatch, tmp_path):
    """The digest names every compiled kernel's size and modification time: a rebuilt kernel, which may run at
    another speed, does not reuse the old fits."""
    import types
    (tmp_path / "_avx2").mkdir()
    so = tmp_path / "_avx2" / "_filter.so"
    so.write_bytes(b"\0" * 10)
    (tmp_path / "_filter.pyx").write_text("not a kernel")
    monkeypatch.setattr(_calibrate, "_kernels", types.SimpleNamespace(__file__=str(tmp_path / "__init__.py")))
    try:
        _calibrate._models_digest.cache_clear()
        first = _calibrate._models_digest()
        _calibrate._models_digest.cache_clear()
        assert _calibrate._models_digest() == first                # nothing changed
        (tmp_path / "_filter.pyx").write_text("a source, not a kernel")
        _calibrate._models_digest.cache_clear()
        assert _calibrate._models_digest() == first
        st = os.stat(so)
        os.utime(so, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
        _calibrate._models_digest.cache_clear()
        assert _calibrate._models_digest() != first
    finally:
        _calibrate._models_digest.cache_clear()
