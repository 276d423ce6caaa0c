"""Sphinx configuration for fastconv's documentation.

Build (from the repository root)::

    pip install ".[docs]"
    sphinx-build -W -b html docs docs/_build/html

It documents the checkout if its kernels are built in place, else the installed fastconv.

The API reference is generated from the docstrings (autodoc + autosummary, numpydoc style); the guide's examples
are run by ``tests/test_docs.py``; the benchmark report (``benchmarks.rst``) is written by ``bench/report.py``.
"""
import importlib.machinery
import os
import sys

# Document this checkout when its kernels are built in place (``pip install -e .``, ``python setup.py build_ext
# --inplace``); otherwise the installed fastconv (``pip install ".[docs]"``), which the unbuilt checkout must not
# shadow.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = os.path.join(ROOT, "fastconv", "_kernels")
if any(os.path.exists(os.path.join(KERNELS, "_cpu" + suffix)) for suffix in importlib.machinery.EXTENSION_SUFFIXES):
    sys.path.insert(0, ROOT)

import fastconv  # noqa: E402

project = "fastconv"
author = "the fastconv developers"
copyright = "the fastconv developers"
version = release = fastconv.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]

root_doc = "index"
exclude_patterns = ["_build"]
templates_path = ["_templates"]
html_static_path = ["_static"]
html_theme = "alabaster"
html_theme_options = {"description": "Fast CPU convolution, pooling and filters", "fixed_sidebar": True}
html_title = "fastconv %s" % release

autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()
default_role = "literal"
pygments_style = "sphinx"


# ---------------------------------------------------------------------------------------------------------------
# Docstrings across fastconv write shapes the way Python unpacks them -- ``(N, C, *spatial)`` -- often outside
# literal markup.  reStructuredText would read such a star as the start of an emphasis and warn; escape a star that
# opens a word and is never closed, outside ``literals``.  Intentional *emphasis* (closed by a star) is left alone.
import re  # noqa: E402

_LITERAL = re.compile(r"(``.+?``)", re.S)
_BARE_STAR = re.compile(r"(?<![\\`*\w])\*(?=[A-Za-z_]\w*(?:[^\w*]|$))|(?<=[\s(,\[])\*(?=[)\],])", re.M)


def escape_bare_stars(text):
    """``text`` with every bare ``*name`` (and a lone ``*`` of a shape such as ``(N, C, *)``) outside ``literals``
    (which may span lines) escaped as ``\\*name``."""
    parts = _LITERAL.split(text)
    return "".join(p if i % 2 else _BARE_STAR.sub(r"\\*", p) for i, p in enumerate(parts))


def _escape_docstring(app, what, name, obj, options, lines):
    lines[:] = escape_bare_stars("\n".join(lines)).split("\n")


def setup(app):
    app.connect("autodoc-process-docstring", _escape_docstring, priority=600)
