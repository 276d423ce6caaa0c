"""The fastconv command (bench, filter, train, info), the bench JSON schema, auto choice and autotune."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv as fc
from fastconv import _autotune, cli
from fastconv.cli import bench as _bench


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


def test_bench_quick_grid_json_schema(tmp_path, capsys):
    path = tmp_path / "bench.json"
    csv_path = tmp_path / "bench.csv"
    code, out, _ = _run(["bench", "--grid", "quick", "--repeats", "1", "--budget", "0.05", "--no-progress",
                         "--json", str(path), "--csv", str(csv_path)], capsys)
    assert code == 0
    assert "auto_over_best" in out
    res = json.loads(path.read_text())
    assert {"machine", "sgemm_gflops", "threads", "dtype", "grid", "results", "summary"} <= set(res)
    assert res["sgemm_gflops"] > 0
    impls = {r["impl"] for r in res["results"]}
    assert set(fc.algorithms()) <= impls and "auto" in impls
    for r in res["results"]:
        assert BENCH_KEYS <= set(r)
        if "skipped" in r:
            continue
        assert r["ms"] > 0 and r["repeats"] >= 1 and r["peak_mb"] >= 0
        if r["kind"] != "gaussian":
            assert r["gflops"] > 0 and r["frac_sgemm"] > 0
        if r["op"] == "forward":
            assert r["max_err"] < 1e-3
    autos = [r for r in res["results"] if r["impl"] == "auto"]
    assert all(r["chosen"] in fc.algorithms() for r in autos)
    assert csv_path.read_text().startswith("")
    assert len(csv_path.read_text().splitlines()) == len(res["results"]) + 1


def test_bench_plots(tmp_path):
    res = _bench.run("quick", threads=1, repeats=1, budget=0.02, progress=False, peers=())
    paths = _bench.plot(res, str(tmp_path))
    assert paths and all(os.path.getsize(p) > 1000 for p in paths)


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
