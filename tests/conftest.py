"""Suite-wide pytest settings and hooks.

fastconv's machine calibration stays off (``auto`` uses the built-in cost-model constants, so its choices do not
depend on the machine or its load), and nothing is written to the user's cache directory.
tests/test_calibrate.py turns the calibration on explicitly, with a temporary cache directory.

Without PyTorch, every parity test skips with pytest's "could not import 'torch'" reason, each at its own line of
its own file; ``-ra`` would list them one by one.  They are folded into one line of the short summary that says how
many there are and how to get them (the skips themselves, and pytest's counts, are unchanged).
"""
import os
import re
import tempfile

os.environ["FASTCONV_CALIBRATE"] = "off"
os.environ.setdefault("FASTCONV_CACHE_DIR", tempfile.mkdtemp(prefix="fastconv-test-cache-"))

TORCH_MISSING = re.compile(r"could not import 'torch'|No module named 'torch'|torch (is )?not installed")
INSTALL_HINT = "pip install '.[test,torch]'"


def _reason(report):
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""


def pytest_terminal_summary(terminalreporter):
    """Runs before the short test summary (``-ra``) is written: give every torch skip the same location and
    reason, so that pytest folds them into one line ``SKIPPED [N] tests/conftest.py: parity tests skipped: ...``."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if TORCH_MISSING.search(_reason(r))]
    if not skipped:
        return
    for report in skipped:
        report.longrepr = (__file__, None, "parity tests skipped: torch not installed -- %s" % INSTALL_HINT)
