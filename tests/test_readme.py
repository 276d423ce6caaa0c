"""The README's Python examples run as written."""
import os
import re

import pytest

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def _blocks():
    with open(README) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_example_runs(index, capsys):
    pytest.importorskip("skimage")
    exec(compile(_blocks()[index], "README.md example %d" % index, "exec"), {})
    assert capsys.readouterr().out.strip()


def test_readme_names_the_two_commands():
    with open(README) as f:
        text = f.read()
    assert 'pip install ".[bench,torch]" && fastconv bench' in text
    assert 'pip install ".[test,torch]" && pytest' in text
