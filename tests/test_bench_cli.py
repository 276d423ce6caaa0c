"""The fastconv command (bench, filter, train, info), the bench JSON schema, auto choice and autotune."""
import dataclasses
import importlib.util
import json
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest

import fastconv as fc
from fastconv import _autotune, cli
from fastconv.cli import bench as _bench
from fastconv.cli._problems import conv, image


def _run(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_subcommand(capsys):
    code, out, _ = _run(["info"], capsys)
    assert code == 0
    assert "openmp" in out and "simd" in out and fc.__version__ in out


def test_help_for_each_subcommand(capsys):
    for sub in cli.COMMANDS:
        with pytest.raises(SystemExit) as exc:
            cli.main([sub, "--help"])
        assert exc.value.code == 0
        assert "usage: fastconv %s" % sub in capsys.readouterr().out


def test_every_option_of_every_command_has_help():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.choices and set(cli.COMMANDS) <= set(a.choices))
    for name in cli.COMMANDS:
        for action in sub.choices[name]._actions:
            assert action.help, "fastconv %s %s has no help text" % (name, "/".join(action.option_strings)
                                                                      or action.dest)


def test_bare_command_prints_the_help_and_version_works(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastconv") and all(c in out for c in cli.COMMANDS)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == "fastconv %s" % fc.__version__


@pytest.mark.parametrize("argv,needle", [
    (["frobnicate"], "invalid choice"),
    (["bench", "--grid", "huge"], "invalid choice"),
    (["bench", "--repeats", "0", "--no-progress"], "--repeats"),
    (["bench", "--peers", "matlab", "--no-progress"], "--peers"),
    (["filter", "missing.png", "out.png", "--gaussian", "2"], "no such input file"),
    (["filter", "a.png", "b.png"], "one of the arguments"),
    (["filter", "a.png", "o.xyz", "--gaussian", "2"], "use one of the extensions .png"),
    (["train", "--epochs", "0"], "--epochs: must be a positive integer, got 0"),
    (["train", "--batch-size", "0"], "--batch-size: must be a positive integer, got 0"),
    (["train", "--lr", "fast"], "--lr: must be a positive number"),
    (["train", "--size", "17"], "--size: invalid choice"),
    (["info", "--verbose"], "unrecognized arguments"),
])
def test_errors_are_one_line_with_exit_code_2(argv, needle, capsys):
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1


BENCH_KEYS = {"layer", "kind", "op", "impl"}
QUICK = ["--repeats", "3", "--budget", "0", "--no-progress"]


@pytest.fixture
def small_gemm(monkeypatch):
    """The GEMM yardstick on 128 x 128 matrices (the command's 1536 x 1536 takes seconds on a busy machine)."""
    real = _bench.sgemm_gflops
    monkeypatch.setattr(_bench, "sgemm_gflops", lambda n, **kw: real(n=128, **kw))


def test_bench_quick_grid_json_schema(tmp_path, capsys, small_gemm):
    path = tmp_path / "bench.json"
    csv_path = tmp_path / "bench.csv"
    code, out, _ = _run(["bench", "--grid", "quick"] + QUICK + ["--json", str(path), "--csv", str(csv_path)],
                        capsys)
    assert code == 0
    res = json.loads(path.read_text())
    assert {"machine", "sgemm_gflops", "threads", "dtype", "grid", "results", "summary", "peers", "noise", "legend",
            "load", "order", "ratio_direction"} <= set(res)
    assert res["sgemm_gflops"] > 0
    assert set(res["peers"]["found"]) | set(res["peers"]["skipped"]) == set(_bench.ALL_PEERS)
    impls = {r["impl"] for r in res["results"]}
    assert set(fc.algorithms()) <= impls and "auto" in impls
    assert {r["kind"] for r in res["results"]} == set(_bench.KINDS)
    for r in res["results"]:
        assert BENCH_KEYS <= set(r)
        if "skipped" in r:
            continue
        assert r["ms"] > 0 and r["rounds"] == len(r["times_ms"]) == 3
        assert r["spread"] == pytest.approx((max(r["times_ms"]) - min(r["times_ms"])) / r["ms"])
        assert (r["impl"] == "torch") == ("peak_mb" not in r)         # torch's allocations are invisible
        if r["kind"] in ("conv", "image"):
            assert r["gflops"] > 0 and r["frac_sgemm"] == pytest.approx(r["gflops"] / res["sgemm_gflops"])
        assert r["max_err"] < 1e-4
    conv_ops = {r["op"] for r in res["results"] if r["layer"] == "tiny 3x3"}
    assert conv_ops == {"forward", "grad_input", "grad_weight"}
    geom = fc.ConvGeometry.make((2, 8, 16, 16), (8, 8, 3, 3), padding=1)
    for r in res["results"]:
        if r["impl"] == "auto" and r["layer"] == "tiny 3x3":      # each op reports its own choice
            assert r["chosen"] == fc._algorithms.choose(geom, np.float32, r["op"]).name
            assert r["note"] == "chose " + r["chosen"]
    for s in res["summary"]:
        rows = {r["impl"]: r for r in res["results"] if (r["layer"], r["op"]) == (s["layer"], s["op"]) and "ms" in r}
        assert s["best_ms"] == rows[s["fastest"]]["ms"] == min(r["ms"] for i, r in rows.items()
                                                                if i in fc.algorithms() or i == "fastconv")
        if "auto" in s:
            assert s["auto_over_fastest"] == pytest.approx(rows["auto"]["ms"] / s["best_ms"])
        if "best_peer" in s:
            assert s["fastconv_over_peer"] == pytest.approx(s["best_ms"] / rows[s["best_peer"]]["ms"])
        if "runner_up" in s:
            assert s["runner_up_over_fastest"] >= 1 and s["lead"] in ("real", "noise")
    # the printed page: header with peers and noise, both tables, the legend
    for needle in ("peers found:", "peers skipped:", "noise: spread across rounds", "all measurements:",
                   "per layer and op:", "eff\n", "x fastest", "(>1 slower)", "auto/fastest", "fastconv/peer",
                   "how to read the tables", "effective rate", "n/a for torch"):
        assert needle.replace("\n", "") in out, needle
    assert len(csv_path.read_text().splitlines()) == len(res["results"]) + 1
    assert "times_ms" not in csv_path.read_text().splitlines()[0]


def test_rounds_interleave_the_candidates_in_a_new_order():
    calls = []
    cands = [_bench._Candidate(name, lambda n=name: calls.append(n) or n) for name in "abcd"]
    _bench._measure(cands, repeats=6, budget=1e9, rng=random.Random(0))
    assert all(len(c.times) == 6 and c.out == c.impl for c in cands)
    warmup, rounds = calls[:4], [calls[4 + 4 * i: 8 + 4 * i] for i in range(6)]
    assert sorted(warmup) == list("abcd") and all(sorted(r) == list("abcd") for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1                       # the order changes from round to round
    slow = [_bench._Candidate("slow", lambda: time.sleep(0.01))]
    _bench._measure(slow, repeats=9, budget=0.0, rng=random.Random(0))
    assert len(slow[0].times) == 3                                    # at least 3 rounds, whatever the budget
    bad = [_bench._Candidate("ok", lambda: 1), _bench._Candidate("refuses", lambda: fc.conv2d(1, 2))]
    _bench._measure(bad, repeats=3, budget=1e9, rng=random.Random(0))
    assert bad[1].failed and not bad[1].times and len(bad[0].times) == 3


def test_a_lead_is_real_only_beyond_the_noise_of_the_rounds():
    fast = dict(ms=1.0, times_ms=[1.0, 1.1, 0.9, 1.0])
    assert _bench.lead_is_real(dict(ms=1.5, times_ms=[1.5, 1.6, 1.4, 1.5]), fast)
    assert not _bench.lead_is_real(dict(ms=1.5, times_ms=[1.5, 1.0, 1.4, 1.5]), fast)   # one round tied
    assert not _bench.lead_is_real(dict(ms=1.01, times_ms=[1.01, 1.12, 0.91, 1.01]), fast)  # below 3 %
    assert not _bench.lead_is_real(dict(ms=1.5, times_ms=[1.5]), dict(ms=1.0, times_ms=[1.0]))  # one round
    # slower in all three rounds, but the ratios (1.02, 1.36, 1.43) scatter too much for 95 % confidence
    assert not _bench.lead_is_real(dict(ms=257, times_ms=[185, 257, 342]), dict(ms=189, times_ms=[182, 189, 240]))
    assert _bench.lead_is_real(dict(ms=257, times_ms=[250, 257, 342]), dict(ms=189, times_ms=[182, 189, 240]))


def test_the_lead_is_real_only_over_every_other_algorithm():
    def row(impl, *times):
        return dict(layer="l", kind="conv", op="forward", impl=impl, ms=sorted(times)[len(times) // 2],
                    times_ms=list(times))
    result = dict(algorithms=["a", "b", "c"], results=[row("a", 1.0, 1.0, 1.0, 1.0, 1.0),
                                                        row("b", 1.5, 1.5, 1.5, 1.5, 1.5),
                                                        row("c", 9.0, 9.0, 0.8, 9.0, 9.0)])
    s, = _bench.summarize(result)
    assert (s["fastest"], s["runner_up"], s["runner_up_over_fastest"]) == ("a", "b", 1.5)
    assert s["lead"] == "noise"            # c, far behind by median, beat a in one round
    result["results"][2]["times_ms"][2] = 9.0
    assert _bench.summarize(result)[0]["lead"] == "real"


def test_peers_say_why_they_were_skipped(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)               # import torch -> ImportError
    found, skipped = _bench.find_peers(("torch", "scipy.ndimage"))
    assert skipped["torch"] == 'not installed (pip install ".[torch]")'
    assert found["scipy.ndimage"] and skipped["scikit-image"] == "not requested (--peers)"


def test_custom_layers_and_only(tmp_path, capsys, small_gemm):
    path = tmp_path / "b.json"
    code, out, err = _run(["bench", "--layer", "2,4,12,10,6,3,2,1,1", "--layer", 'g2mb1ic4ih9oc4kh3ph1n"dw"',
                           "--peers", "none", "--json", str(path)] + QUICK, capsys)
    assert code == 0, err
    res = json.loads(path.read_text())
    assert {r["layer"] for r in res["results"]} == {"2x4x12x10 k6 3x2 s1 p1", "dw"}
    assert all(r["max_err"] < 1e-4 for r in res["results"] if "ms" in r)
    assert res["peers"]["found"] == {} and "grid layers" in out
    code, _, _ = _run(["bench", "--grid", "quick", "--only", "pool,filter", "--peers", "none", "--json", str(path)]
                      + QUICK, capsys)
    assert code == 0
    assert {r["kind"] for r in json.loads(path.read_text())["results"]} == {"pool", "filter"}
    for argv, needle in [(["--layer", "1,2,3"], "7 to 9 comma-separated integers"),
                         (["--layer", "mb1ic4ih8oc4kh3xx1"], "unknown key 'xx'"),
                         (["--layer", "1,1,4,4,1,9,9"], "larger than the padded input"),
                         (["--only", "pools"], "--only: unknown 'pools'")]:
        code, _, err = _run(["bench"] + argv + QUICK, capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_every_registered_algorithm_gets_rows_and_its_error_bound(monkeypatch):
    """The table is generic over the registry: a new algorithm (here a copy of toeplitz that documents an error
    bound, as reduced-accuracy algorithms do) appears with its measured error and its bound."""
    base = fc._algorithms.get("toeplitz")
    bound = lambda geom, dtype, op: 3e-5  # noqa: E731
    if "error" in {f.name for f in dataclasses.fields(base)}:
        approx = dataclasses.replace(base, name="approx", error=bound)
    else:
        @dataclasses.dataclass(frozen=True)
        class Bounded(type(base)):
            error: object = None
        approx = Bounded(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)} | dict(name="approx",
                                                                                                   error=bound))
    monkeypatch.setitem(fc._algorithms._registry, "approx", approx)
    monkeypatch.setattr(fc._algorithms, "_choice_cache", {})
    fc._algorithms.invalidate()
    spec = _bench.parse_layer("1,3,9,9,4,3,3")
    res = _bench.run(None, threads=1, repeats=1, budget=0, peers=(), progress=False, layers=[spec], gemm_size=128)
    rows = [r for r in res["results"] if r["impl"] == "approx"]
    assert [r["op"] for r in rows] == ["forward", "grad_input", "grad_weight"]
    assert all(r["err_bound"] == 3e-5 and r["max_err"] < 1e-5 for r in rows)
    assert "approx" in res["algorithms"] and "3e-05" in _bench.render(res)


def test_bench_plots(tmp_path):
    grid = [image(48, k) for k in (3, 5)] + [conv("channels %d" % c, (1, c, 8, 8), (c, c, 3, 3), padding=1,
                                                  backward=False) for c in (2, 4)]
    res = _bench.run(grid, threads=1, repeats=1, budget=0, progress=False, peers=("scipy.ndimage",), gemm_size=128)
    paths = _bench.plot(res, str(tmp_path))
    assert [os.path.basename(p) for p in paths] == ["crossover.png", "gflops_channels.png", "time_vs_peers.png"]
    assert all(os.path.getsize(p) > 1000 for p in paths)


def test_python_dash_m_runs_the_command(tmp_path):
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(fc.__file__)))
    res = subprocess.run([sys.executable, "-m", "fastconv", "info"], capture_output=True, text=True,
                         cwd=tmp_path, env=dict(os.environ, PYTHONPATH=pkg_root))
    assert res.returncode == 0 and "version" in res.stdout


def test_auto_picks_a_registered_algorithm_and_matches_direct():
    rng = np.random.default_rng(0)
    for xs, ws, pad in [((2, 16, 20, 20), (16, 16, 3, 3), 1), ((1, 4, 40, 40), (4, 4, 15, 15), 7),
                        ((2, 32, 10, 10), (8, 32, 1, 1), 0)]:
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        geom = fc.ConvGeometry.make(xs, ws, padding=pad)
        assert fc._algorithms.choose(geom, np.float32).name in fc.algorithms()
        a = fc.conv2d(x, w, padding=pad, algorithm="auto")
        d = fc.conv2d(x, w, padding=pad, algorithm="direct")
        np.testing.assert_allclose(a, d, atol=1e-3 * np.abs(d).max())


def test_autotune_caches_the_winner(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 8, 17, 17)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    cache = tmp_path / "tune.json"
    try:
        _autotune.clear_cache()
        fc.autotune(True, cache_file=str(cache))
        y1 = fc.conv2d(x, w, padding=1)
        info = _autotune.cache_info()
        assert info["misses"] == 1 and info["entries"] == 1
        y2 = fc.conv2d(x, w, padding=1)
        assert _autotune.cache_info()["hits"] >= 1 and _autotune.cache_info()["misses"] == 1
        np.testing.assert_allclose(y1, y2, atol=1e-4)
        np.testing.assert_allclose(y1, fc.conv2d(x, w, padding=1, algorithm="direct"), atol=1e-3)
        saved = json.loads(cache.read_text())
        assert list(saved.values())[0] in fc.algorithms()
        # a new process state reloads the winner from the file
        _autotune.clear_cache()
        fc.autotune(True, cache_file=str(cache))
        assert _autotune.cache_info()["entries"] == 1
    finally:
        fc.autotune(False)
        _autotune.clear_cache()
    with pytest.raises(TypeError, match="enable"):
        fc.autotune("yes")


@pytest.mark.parametrize("flags", [["--gaussian", "2"], ["--sobel"], ["--kernel", "sharpen"], ["--unsharp", "2"]])
def test_filter_subcommand_on_a_real_image(tmp_path, flags, capsys):
    skimage = pytest.importorskip("skimage")
    from skimage import data, io
    src = tmp_path / "in.png"
    io.imsave(src, data.astronaut()[::4, ::4], check_contrast=False)
    dst = tmp_path / "out.png"
    code, out, err = _run(["filter", str(src), str(dst)] + flags, capsys)
    assert code == 0, err
    result = io.imread(dst)
    assert result.dtype == np.uint8 and result.shape[:2] == (128, 128)
    assert result.std() > 0


def test_filter_clips_by_default_and_rescales_on_request(tmp_path, capsys):
    pytest.importorskip("skimage")
    from skimage import data, io
    src = tmp_path / "in.png"
    image = data.camera()[::4, ::4]
    io.imsave(src, image, check_contrast=False)
    assert _run(["filter", str(src), str(tmp_path / "clip.png"), "--kernel", "sharpen"], capsys)[0] == 0
    assert _run(["filter", str(src), str(tmp_path / "scaled.png"), "--kernel", "sharpen", "--rescale"],
                capsys)[0] == 0
    clipped = io.imread(tmp_path / "clip.png").astype(float)
    scaled = io.imread(tmp_path / "scaled.png").astype(float)
    want = np.clip(fc.filters.apply_kernel(image, "sharpen"), 0, 1) * 255
    assert np.abs(clipped - want).max() <= 1.0                  # clipped, not rescaled
    assert clipped.std() >= image.std()                           # sharpening keeps (raises) the contrast
    assert scaled.min() == 0 and scaled.max() == 255 and scaled.std() < clipped.std()


def test_filter_subcommand_kernel_file_matches_library(tmp_path, capsys):
    pytest.importorskip("skimage")
    from skimage import io
    rng = np.random.default_rng(0)
    img = (rng.random((40, 50)) * 255).astype(np.uint8)
    io.imsave(tmp_path / "in.png", img, check_contrast=False)
    np.savetxt(tmp_path / "k.txt", np.full((3, 3), 1 / 9.0))
    code, _, err = _run(["filter", str(tmp_path / "in.png"), str(tmp_path / "out.png"), "--kernel-file",
                         str(tmp_path / "k.txt"), "--mode", "nearest"], capsys)
    assert code == 0, err
    got = io.imread(tmp_path / "out.png").astype(float)
    from scipy import ndimage
    want = ndimage.uniform_filter(img / 255.0, 3, mode="nearest") * 255
    assert np.abs(got - want).max() <= 1.0
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n3\n")
    code, _, err = _run(["filter", str(tmp_path / "in.png"), str(tmp_path / "o.png"), "--kernel-file", str(bad)],
                        capsys)
    assert code == 2 and "kernel-file" in err


def test_train_refuses_counts_below_one():
    from fastconv.examples import digits
    for kw in (dict(epochs=0), dict(batch_size=0), dict(train_limit=0), dict(threads=0)):
        with pytest.raises(ValueError, match="train\\(\\): argument '%s' must be positive" % list(kw)[0]):
            digits.train(progress=False, log=None, **kw)


def test_train_subcommand_runs_a_short_training(capsys):
    pytest.importorskip("sklearn")
    code = cli.main(["train", "--epochs", "1", "--train-limit", "128", "--size", "16", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "acc" in out.lower()


def _bench_script(name):
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_runs_flags_a_real_lead_that_changes_hands(tmp_path, capsys):
    compare_runs = _bench_script("compare_runs")

    def run(path, *verdicts):
        summary = [dict(layer=l, op="forward", fastest=f, runner_up="x", runner_up_over_fastest=1.5, lead=v)
                   for l, f, v in verdicts]
        path.write_text(json.dumps(dict(summary=summary, load={"before": [1, 1, 1]}, noise={"median_spread": 0.1})))
        return str(path)

    a = run(tmp_path / "a.json", ("l1", "direct", "real"), ("l2", "fft", "noise"), ("l3", "direct", "noise"))
    b = run(tmp_path / "b.json", ("l1", "direct", "real"), ("l2", "direct", "noise"), ("l3", "direct", "noise"))
    assert compare_runs.main([a, b]) == 0
    assert "agree (real): 1, CONFLICT: 0, real vs noise: 0, agree (noise): 1, differ (noise): 1" in \
        capsys.readouterr().out
    c = run(tmp_path / "c.json", ("l1", "toeplitz", "noise"))
    assert compare_runs.main([a, c]) == 0 and "real vs noise: 1" in capsys.readouterr().out
    d = run(tmp_path / "d.json", ("l1", "toeplitz", "real"))
    assert compare_runs.main([a, d]) == 1 and "CONFLICT: 1" in capsys.readouterr().out


def test_backward_bench_reports_the_peers_own_ratios_apart_from_the_algorithms():
    bb = _bench_script("bench_backward")

    def row(op, impl, ms, chosen=None):
        return dict(layer="l", op=op, impl=impl, chosen=chosen, ms=ms, gflops=10.0 / ms, n=3)
    rows = []
    for op, fast in zip(bb.OPS, (1.0, 2.0, 4.0)):
        rows += [row(op, "direct", fast), row(op, "fft", 3 * fast), row(op, "auto", fast, "direct"),
                 row(op, "auto (together)", fast), row(op, "torch (together)", fast / 100)]
    rows[-1]["ms"], rows[-1]["gflops"] = 0.08, 10.0 / 0.08        # torch's weight gradient: 0.08 ms (fwd 0.01)
    d, = bb.summarize(rows)
    # the fastest algorithm is fastconv's, never a "(together)" row, however fast torch's rounds were
    assert (d["fwd_best"], d["gi_best"], d["gw_best"]) == ("direct", "direct", "direct")
    assert d["gi/fwd"] == pytest.approx(0.5) and d["gw/fwd"] == pytest.approx(0.25)
    assert d["torch gi/fwd"] == pytest.approx(0.5) and d["torch gw/fwd"] == pytest.approx(0.125)
    assert (d["fwd/torch"], d["gi/torch"], d["gw/torch"]) == pytest.approx((100, 100, 50))
    d, = bb.summarize([r for r in rows if r["impl"] != "torch (together)"])
    assert "torch gi/fwd" not in d and "fwd/torch" not in d


def test_backward_bench_times_torch_in_rounds_of_its_own():
    pytest.importorskip("torch")
    bb = _bench_script("bench_backward")
    layer = ("tiny", (2, 2, 7, 6), (3, 2, 3, 2), 1, 1, 1)
    rows = bb.run(threads=1, repeats=1, layers=[layer], budget=0.05)
    assert {r["op"] for r in rows if r["impl"] == "torch (together)"} == set(bb.OPS)
    d, = bb.summarize(rows)
    assert all(d[k] > 0 for k in ("torch gi/fwd", "torch gw/fwd", "fwd/torch", "gi/torch", "gw/torch"))
    assert not [r for r in bb.run(threads=1, repeats=1, layers=[layer], budget=0.05, peer=False)
                if r["impl"].startswith("torch")]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 12, 13])
def test_balanced_orders_put_every_candidate_behind_every_other_equally_often(n):
    """The rounds, run one after another and from the first again, put every candidate directly behind every other
    once per cycle and never behind itself, the rounds' boundaries included (up to MAX_SEARCH_CANDIDATES; past it
    the Williams design balances the neighbours inside the rounds)."""
    from fastconv._measure import MAX_SEARCH_CANDIDATES, balanced_orders
    orders = balanced_orders(n)
    assert all(sorted(o) == list(range(n)) for o in orders)
    seq = [c for o in orders for c in o]
    cyclic, inside = {}, {}
    for a, b in zip(seq, seq[1:] + seq[:1]):
        cyclic[a, b] = cyclic.get((a, b), 0) + 1
    for o in orders:
        for a, b in zip(o, o[1:]):
            inside[a, b] = inside.get((a, b), 0) + 1
    if n == 1:
        return
    if n <= MAX_SEARCH_CANDIDATES:
        assert len(orders) == n - 1
        assert set(cyclic) == {(a, b) for a in range(n) for b in range(n) if a != b}
        assert set(cyclic.values()) == {1}
    else:
        assert len(inside) == n * (n - 1) and len(set(inside.values())) == 1


def test_interleaved_rounds_budget_and_raw_times():
    """fastconv.benchmark.interleaved: one warm-up per candidate, then rounds in turn; a spent budget ends the rounds
    after three; raw=True gives every round's time."""
    from fastconv.benchmark import interleaved
    calls = {"a": 0, "b": 0}

    def make(k):
        def fn():
            calls[k] += 1
        return fn
    med = interleaved({"a": make("a"), "b": make("b")}, 5)
    assert set(med) == {"a", "b"} and calls == {"a": 6, "b": 6}
    raw = interleaved({"a": make("a"), "b": make("b")}, 50, budget=0.0, raw=True)
    assert [len(v) for v in raw.values()] == [3, 3] and calls == {"a": 10, "b": 10}
    assert all(t >= 0 for v in raw.values() for t in v)
