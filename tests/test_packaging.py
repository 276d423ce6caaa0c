"""What a newcomer meets before any convolution: the install commands of README.md and the docs' quickstart,
CI running README's test command, the torch extra, and a clear line when an unbuilt checkout is imported."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

import fastconv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.dirname(os.path.abspath(fastconv.__file__))


def _walker():
    spec = importlib.util.spec_from_file_location("walk_commands", os.path.join(ROOT, "tools", "walk_commands.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unbuilt_copy(where, checkout=True):
    """The package's Python files without compiled modules, as a source checkout (or a broken install) has them."""
    shutil.copytree(PKG, os.path.join(where, "fastconv"),
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c", "__pycache__", "_build_config.py"))
    if checkout:
        open(os.path.join(where, "setup.py"), "w").close()
    return where


def _python(code, cwd, pythonpath=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_importing_an_unbuilt_checkout_says_so_in_one_line(tmp_path):
    res = _python("import fastconv", cwd=_unbuilt_copy(str(tmp_path)))
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert last == ("ImportError: fastconv is imported from a source checkout whose kernels are not built (%s): "
                    "run `pip install .` (and start Python outside the checkout) or build in place with "
                    "`pip install -e .`" % tmp_path)
    assert "circular import" not in res.stderr


def test_an_install_without_its_kernels_says_so(tmp_path):
    res = _python("import fastconv", cwd=_unbuilt_copy(str(tmp_path), checkout=False))
    assert "compiled kernels are missing from %s" % os.path.join(str(tmp_path), "fastconv", "_kernels") in \
        res.stderr.strip().splitlines()[-1]


def test_docs_document_the_installed_package_unless_the_checkout_is_built(tmp_path):
    """docs/conf.py (sphinx-build from the repository root) must not put an unbuilt checkout before the installed
    fastconv; a checkout built in place is documented itself."""
    checkout = _unbuilt_copy(str(tmp_path / "checkout"))
    os.makedirs(os.path.join(checkout, "docs"))
    shutil.copy(os.path.join(ROOT, "docs", "conf.py"), os.path.join(checkout, "docs", "conf.py"))
    code = ("import runpy; runpy.run_path(%r); import fastconv; print(fastconv.__file__)"
            % os.path.join(checkout, "docs", "conf.py"))
    installed = os.path.dirname(PKG)
    res = _python(code, cwd=str(tmp_path), pythonpath=installed)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == fastconv.__file__
    built = _python("import runpy; runpy.run_path(%r); import fastconv; print(fastconv.__file__)"
                    % os.path.join(ROOT, "docs", "conf.py"), cwd=str(tmp_path), pythonpath=installed)
    in_place = any(f.startswith("_cpu.") and f.endswith((".so", ".pyd")) for f in
                   os.listdir(os.path.join(ROOT, "fastconv", "_kernels")))
    assert built.returncode == 0, built.stderr
    want = os.path.join(ROOT, "fastconv", "__init__.py") if in_place else fastconv.__file__
    assert built.stdout.strip() == want


def _readme():
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def test_ci_runs_the_readme_test_command_through_the_torch_extra():
    blocks = [cmds for src, cmds in _walker().blocks() if src == "README.md"]
    test_command = 'pip install ".[test,torch]" && pytest'
    assert [test_command] in blocks
    assert ['pip install ".[bench,torch]" && fastconv bench'] in blocks
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    assert test_command in ci                                    # exactly README's line
    assert ci.index(test_command) < ci.index("python3 tools/walk_commands.py --skip-ci")
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        toml = f.read()
    assert re.search(r'^torch = \["torch==2\.13\.0"\]$', toml, re.M)     # exact pin: the CPU build on disk
    assert re.search(r'^dev = \[.*"Cython', toml, re.M)                # in-place builds need Cython
    # the API pages import fastconv.dask (autosummary): the docs extra must bring dask, or sphinx-build fails
    with open(os.path.join(ROOT, "docs", "api", "dask.rst")) as f:
        assert "automodule:: fastconv.dask" in f.read()
    assert re.search(r'^docs = \[.*"fastconv\[dask\]"', toml, re.M)


def test_the_walker_reads_every_command_block():
    found = _walker().blocks()
    sources = {src for src, _ in found}
    assert sources == {"README.md", os.path.join("docs", "guide", "quickstart.rst")}
    commands = [c for _, cmds in found for c in cmds]
    assert 'pip install ".[docs]" && sphinx-build -b html docs docs/_build/html' in commands
    assert "fastconv info" in commands
    assert all(not c.startswith(("$", "#")) and "  # " not in c for c in commands)
    # commands started from the repository root must not import the (unbuilt) checkout by accident
    assert not [c for c in commands if re.match(r"python3? -(c|m) (?!pytest)", c)]


def test_torch_skips_fold_into_one_summary_line(tmp_path):
    """Without torch the parity tests skip with one line in ``-ra``'s summary (tests/conftest.py)."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "torch.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(os.path.join(ROOT, "tests", "conftest.py"), suite)
    (suite / "test_parity.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.parametrize('i', range(3))\ndef test_a(i):\n    pytest.importorskip('torch')\n\n"
        "def test_b():\n    pytest.importorskip('torch')\n\n"
        "def test_c():\n    pytest.skip('another reason')\n\n"
        "def test_d():\n    pass\n")
    env = dict({k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, PYTHONPATH=str(hide))
    res = subprocess.run([sys.executable, "-m", "pytest", "-ra", "-p", "no:cacheprovider", str(suite)],
                         cwd=str(suite), env=env, capture_output=True, text=True, timeout=120)
    lines = res.stdout.splitlines()
    torch_lines = [line for line in lines if line.startswith("SKIPPED") and "torch" in line]
    assert torch_lines == ["SKIPPED [4] conftest.py: parity tests skipped: torch not installed -- "
                           "pip install '.[test,torch]'"], res.stdout
    assert any("another reason" in line for line in lines)
    assert "1 passed, 5 skipped" in lines[-1]
