"""The documentation: the guide's examples run and print what the pages say, the API reference covers every public
name, and the benchmark report generator (bench/report.py) turns a bench result into the page that is committed.

The Sphinx build itself is not run here (it takes about a minute); build with
``sphinx-build -W -b html docs docs/_build/html``.
"""
import doctest
import importlib
import importlib.util
import json
import os
import re
import tempfile

import numpy as np
import pytest

import fastconv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
GUIDE = os.path.join(DOCS, "guide")
API = os.path.join(DOCS, "api")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = _load("fastconv_bench_report", os.path.join(ROOT, "bench", "report.py"))


def _pages_with_examples():
    pages = []
    for folder in (DOCS, GUIDE):
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.endswith(".rst") and ">>> " in open(path).read():
                pages.append(os.path.relpath(path, DOCS))
    return pages


PAGES = _pages_with_examples()


# ----------------------------------------------------------------------------------------------- the guide
@pytest.fixture
def clean_state(monkeypatch, tmp_path):
    """Examples change process-wide settings on purpose; put them back whatever happens."""
    from fastconv import _autotune
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))     # files the examples write land in tmp_path
    limit = fastconv.get_workspace_limit()
    threads = fastconv.get_num_threads()
    printopts = np.get_printoptions()
    yield
    fastconv.autotune(False)
    _autotune.clear_cache()
    fastconv.set_workspace_limit(limit)
    fastconv.set_num_threads(threads)
    np.set_printoptions(**printopts)


def test_the_guide_has_examples_on_every_concept_page():
    pages = {os.path.basename(p) for p in PAGES}
    for name in ("quickstart", "shapes", "toeplitz", "fft", "backprop", "pooling", "algorithms", "threads",
                 "filters", "nn", "command"):
        assert name + ".rst" in pages, name


@pytest.mark.parametrize("page", PAGES)
def test_examples_print_what_the_page_says(page, clean_state):
    if page == os.path.join("guide", "dask.rst"):
        pytest.importorskip("dask.array", reason="the dask extra is not installed")
    result = doctest.testfile(os.path.join(DOCS, page), module_relative=False, encoding="utf-8",
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, "%d of %d examples in docs/%s failed (see the captured output)" % (
        result.failed, result.attempted, page)


def _toctree_entries(path):
    entries, inside = [], False
    for line in open(path):
        if line.startswith(".. toctree::"):
            inside = True
        elif inside and line.strip() and not line.startswith("   "):
            inside = False
        elif inside and line.strip() and not line.strip().startswith(":"):
            entries.append(line.strip())
    return entries


def test_every_page_is_in_a_table_of_contents():
    assert set(_toctree_entries(os.path.join(DOCS, "index.rst"))) >= {"guide/index", "api/index", "benchmarks"}
    guide = {n[:-4] for n in os.listdir(GUIDE) if n.endswith(".rst") and n != "index.rst"}
    assert set(_toctree_entries(os.path.join(GUIDE, "index.rst"))) == guide
    api = {n[:-4] for n in os.listdir(API) if n.endswith(".rst") and n != "index.rst"}
    assert set(_toctree_entries(os.path.join(API, "index.rst"))) == api


# ----------------------------------------------------------------------------------------------- the API pages
PUBLIC_MODULES = ["fastconv", "fastconv.grad", "fastconv.nn", "fastconv.nn.functional", "fastconv.nn.init",
                  "fastconv.nn.optim", "fastconv.nn.optim.lr_scheduler", "fastconv.nn.utils", "fastconv.ops",
                  "fastconv.filters", "fastconv.ndimage", "fastconv.autograd", "fastconv.benchmark",
                  "fastconv.examples.digits", "fastconv.examples.resnet", "fastconv.dask", "fastconv.dask.ndimage",
                  "fastconv.dask.rank"]


def _dask_missing(name):
    """Names under fastconv.dask cannot be checked without the dask extra."""
    if not name.startswith("fastconv.dask"):
        return False
    return importlib.util.find_spec("dask") is None


def documented_names():
    """Full names listed in the API pages' autosummary blocks and ``.. data::`` / ``.. auto*::`` directives."""
    names = []
    for page in sorted(os.listdir(API)):
        if not page.endswith(".rst"):
            continue
        module, in_summary = None, False
        for line in open(os.path.join(API, page)):
            directive = re.match(r"\.\. ([\w:-]+):: ?(\S*)", line)
            if directive:
                kind, arg = directive.groups()
                in_summary = kind == "autosummary"
                if kind in ("currentmodule", "automodule"):
                    module = arg
                elif kind in ("data", "autodata", "autofunction", "autoclass"):
                    names.append("%s.%s" % (module, arg))
            elif in_summary and line.strip() and not line.startswith("   "):
                in_summary = False
            elif in_summary and line.strip() and not line.strip().startswith(":"):
                names.append("%s.%s" % (module, line.strip()))
    return names


def _resolve(full_name):
    """The object a dotted name refers to: attributes first (``fastconv.nn.summary`` is the function), modules
    where there is no such attribute yet."""
    parts = full_name.split(".")
    obj = importlib.import_module(parts[0])
    for i, attr in enumerate(parts[1:], start=2):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[:i]))
    return obj


def test_every_documented_name_exists():
    names = documented_names()
    assert len(names) > 100
    for name in names:
        if not _dask_missing(name):
            _resolve(name)   # raises for a stale entry


def test_every_public_name_is_documented():
    documented = {id(_resolve(n)) for n in documented_names() if not _dask_missing(n)}
    missing = []
    for modname in PUBLIC_MODULES:
        if _dask_missing(modname):
            continue
        module = importlib.import_module(modname)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if name.startswith("__") or type(obj).__name__ == "module":
                continue
            if id(obj) not in documented:
                missing.append("%s.%s" % (modname, name))
    assert not missing, "public names missing from docs/api/*.rst: %s" % ", ".join(missing)


def test_shape_stars_in_docstrings_are_escaped_for_rest():
    conf = _load("fastconv_docs_conf", os.path.join(DOCS, "conf.py"))
    esc = conf.escape_bare_stars
    assert esc("shape (N, C, *spatial)") == r"shape (N, C, \*spatial)"
    assert esc("``(N, C, *spatial)`` or (C, *kernel)") == r"``(N, C, *spatial)`` or (C, \*kernel)"
    assert esc("the *direct* algorithm") == "the *direct* algorithm"
    assert esc(r"**\*args** : tuple") == r"**\*args** : tuple"
    assert esc("a * b and 2*x") == "a * b and 2*x"
    assert esc("input (N, C, *) and [*, 3]") == r"input (N, C, \*) and [\*, 3]"
    assert esc("``(K, C // groups,\n*kernel)`` and\n*spatial") == "``(K, C // groups,\n*kernel)`` and\n\\*spatial"


# ----------------------------------------------------------------------------------------------- bench/report.py
def _row(layer, op, impl, ms, **kw):
    return dict(layer=layer, kind=kw.pop("kind", "conv"), op=op, impl=impl, ms=ms, **kw)


def fake_result(grid="default"):
    rounds = lambda ms, *f: dict(ms=ms, times_ms=[ms * x for x in (f or (1.0, 1.05, 0.95))])  # noqa: E731
    rows = [
        _row("resnet 3x3", "forward", "direct", 4.0, gflops=20.0, frac_sgemm=0.25, max_err=1e-7,
             **{k: v for k, v in rounds(4.0).items() if k != "ms"}),
        _row("resnet 3x3", "forward", "toeplitz", 2.0, gflops=40.0, frac_sgemm=0.5, max_err=2e-7,
             **{k: v for k, v in rounds(2.0).items() if k != "ms"}),
        _row("resnet 3x3", "forward", "fft", 8.0, gflops=10.0, frac_sgemm=0.125, max_err=3e-6, err_bound=1e-5,
             **{k: v for k, v in rounds(8.0, 1.0, 0.9, 1.0).items() if k != "ms"}),
        _row("resnet 3x3", "forward", "auto", 3.0, chosen="toeplitz", gflops=26.7, frac_sgemm=0.33, max_err=2e-7),
        _row("resnet 3x3", "forward", "torch", 1.0, max_err=1e-7),
        _row("resnet 3x3", "grad_input", "direct", 5.0, gflops=16.0, frac_sgemm=0.2,
             **{k: v for k, v in rounds(5.0, 1.0, 0.9, 1.1).items() if k != "ms"}),
        _row("resnet 3x3", "grad_input", "toeplitz", 4.9, gflops=16.3, frac_sgemm=0.2,
             **{k: v for k, v in rounds(4.9, 1.0, 1.1, 0.9).items() if k != "ms"}),
        _row("image k31", "forward", "direct", 9.0, kind="image", kernel=31, max_err=0.0),
        dict(layer="image k31", kind="image", op="forward", impl="toeplitz", skipped="estimated 5.0 s per call"),
        _row("image k31", "forward", "fft", 1.5, kind="image", kernel=31, max_err=4e-6),
        _row("image k31", "forward", "auto", 1.6, kind="image", chosen="fft", max_err=4e-6),
        _row("image k31", "forward", "scipy.ndimage", 6.0, kind="image", max_err=5e-7),
        _row("maxpool 2x2", "forward", "fastconv", 1.0, kind="pool", max_err=0.0),
        _row("maxpool 2x2", "forward", "torch", 2.0, kind="pool", max_err=0.0),
        _row("gaussian s3", "forward", "fastconv", 2.0, kind="filter", max_err=1e-7),
        _row("gaussian s3", "forward", "scikit-image", 5.0, kind="filter"),
    ]
    return {"machine": {"processor": "x86_64", "cpus": 2, "platform": "Linux", "simd": "avx2+fma", "openmp": True,
                        "blas": "openblas", "fastconv": "0.1.0", "numpy": "2", "scipy": "1"},
            "sgemm_gflops": 80.0, "threads": 2, "dtype": "float32", "grid": grid,
            "algorithms": ["direct", "toeplitz", "fft"], "load": {"before": [0.5, 0.4, 0.3]},
            "peers": {"found": {"torch": "2.13.0"}, "skipped": {"scipy.signal": "not requested (--peers)"}},
            "noise": {"median_spread": 0.05, "p90_spread": 0.2, "max_spread": 0.5, "worst": "torch a forward"},
            "results": rows}


def test_report_tables_from_a_result():
    res = fake_result()
    assert report.algorithm_names(res) == ["direct", "toeplitz", "fft"]
    header, rows = report.fastest_table(res, ["direct", "toeplitz", "fft"])
    assert header[2:5] == ["direct (ms)", "toeplitz (ms)", "fft (ms)"]
    assert header[5:8] == ["fastest", "runner-up / fastest", "lead"]
    assert rows[0] == ["resnet 3x3", "forward", "4", "**2**", "8", "toeplitz", "2", "real", "40", "50 %"]
    assert rows[1][:8] == ["resnet 3x3", "grad_input", "5", "**4.9**", "", "toeplitz", "1.02", "noise"]
    assert rows[2][:8] == ["image k31", "forward", "9", "skipped", "**1.5**", "fft", "6", "noise"]
    assert len(rows) == 3                                     # pooling and filter rows have no algorithm

    header, rows, (worst, within, n) = report.auto_table(res)
    assert n == 2 and within == 1 and worst == pytest.approx(1.5)
    assert header[-1] == "auto / fastest (>1: slower)"
    assert rows[0] == ["resnet 3x3", "forward", "toeplitz", "toeplitz", "1.5 (over 1.2)"]
    assert rows[1][-1] == "1.07"

    header, rows = report.peer_table(res, ["direct", "toeplitz", "fft"])
    assert header == ["layer", "op", "fastconv fastest", "ms", "fastconv / torch", "fastconv / scipy.ndimage",
                      "fastconv / scikit-image"]
    assert rows[0] == ["resnet 3x3", "forward", "toeplitz", "2", "2", "", ""]          # one direction: time / time
    assert rows[1] == ["image k31", "forward", "fft", "1.5", "", "0.25", ""]
    assert rows[2] == ["maxpool 2x2", "forward", "fastconv", "1", "0.5", "", ""]
    assert rows[3] == ["gaussian s3", "forward", "fastconv", "2", "", "", "0.4"]

    header, rows = report.accuracy_table(res)
    assert ["fft", "2", "4.0e-06", "1e-05"] in rows and ["direct", "2", "1.0e-07", ""] in rows


def test_report_page_text():
    text = report.render(fake_result(), images=["crossover.png", "extra.png"])
    assert text.startswith(".. This page is generated by bench/report.py")
    assert "Provisional" not in text and "busy shared machine" not in text
    assert "within the target on 1 of 2" in text and "the worst ratio is 1.5." in text
    assert ".. figure:: _static/bench/crossover.png" in text and ".. figure:: _static/bench/extra.png" in text
    assert report.PLOTS["crossover.png"][:40] in text
    assert "toeplitz image k31 forward (estimated 5.0 s per call)" in text
    assert ":download:`bench.json <_static/bench/bench.json>`" in text
    assert "torch 2.13.0; scipy.signal skipped: not requested (--peers)" in text
    assert "median 5 %, 90th percentile 20 %, largest 50 % (torch a forward)" in text
    assert "How to read ``fastconv bench``" in text and "``lead``" in text      # the legend
    assert "max \\|result - reference\\|" in text                                 # not a substitution
    assert text.count(".. list-table::") == 4
    assert "Provisional numbers from the ``quick`` grid" in report.render(fake_result("quick"))
    busy = fake_result()
    busy["load"]["before"] = [7.5, 7.0, 6.0]
    assert "busy shared machine (load average 7.5 on 2 CPUs)" in report.render(busy)
    no_auto = fake_result()
    no_auto["results"] = [r for r in no_auto["results"] if r["impl"] != "auto"]
    assert "the worst ratio" not in report.render(no_auto)


def test_report_written_end_to_end(tmp_path):
    src = tmp_path / "run"
    plots = src / "plots"
    plots.mkdir(parents=True)
    (plots / "crossover.png").write_bytes(b"\x89PNG fake")
    (plots / "notes.txt").write_text("not a plot")
    json_path = src / "result.json"
    json_path.write_text(json.dumps(fake_result()))
    static = tmp_path / "docs" / "_static" / "bench"
    static.mkdir(parents=True)
    (static / "stale.png").write_bytes(b"old")
    page = tmp_path / "docs" / "benchmarks.rst"
    assert report.main([str(json_path), "--plots", str(plots), "--out", str(page), "--static", str(static)]) == 0
    assert sorted(os.listdir(static)) == ["bench.json", "crossover.png"]
    assert json.loads((static / "bench.json").read_text()) == fake_result()
    text = page.read_text()
    assert "crossover.png" in text and "notes.txt" not in text and "stale.png" not in text
    # regenerating from the copied JSON gives the same page
    report.write_report(str(static / "bench.json"), str(plots), str(page), str(static))
    assert page.read_text() == text


def test_report_rejects_what_is_not_a_bench_result(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a fastconv bench result"):
        report.load(str(bad))
    bad.write_text(json.dumps({"results": [{"layer": "x"}]}))
    with pytest.raises(ValueError, match="lacks"):
        report.load(str(bad))
    with pytest.raises(SystemExit):
        report.main([])


def test_committed_report_is_generated_from_the_committed_result():
    static = os.path.join(DOCS, "_static", "bench")
    result = report.load(os.path.join(static, "bench.json"))
    images = report._pngs(static)
    assert images, "the report page should embed the bench plots"
    with open(os.path.join(DOCS, "benchmarks.rst")) as f:
        assert f.read() == report.render(result, images), "run bench/report.py to regenerate docs/benchmarks.rst"
