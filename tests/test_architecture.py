"""The shape of the package: import layering, one prepared call per convolution, the moved gradient names."""
import ast
import inspect
import os
import warnings

import numpy as np
import pytest

import fastconv as fc
from fastconv import _geometry, _prepare, nn

PKG = os.path.dirname(os.path.abspath(fc.__file__))


def _modules():
    """(dotted name, path, is_package) of every Python module of the package."""
    for root, dirs, files in os.walk(PKG):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, os.path.dirname(PKG))[:-3].replace(os.sep, ".")
                yield (rel[:-9] if f == "__init__.py" else rel), path, f == "__init__.py"


def _imports(name, path, is_package):
    """(imported module, imported names) of every import statement, with relative imports resolved."""
    tree = ast.parse(open(path).read())
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = base + ("." + node.module if node.module else "")
            else:
                module = node.module
            yield module, tuple(a.name for a in node.names)


def _is_module(dotted):
    return os.path.exists(os.path.join(os.path.dirname(PKG), *dotted.split("."))) or \
        os.path.exists(os.path.join(os.path.dirname(PKG), *dotted.split(".")) + ".py")


def test_no_module_imports_the_package_init():
    """The layering has no upward import: nothing inside fastconv imports a name that lives in fastconv/__init__."""
    upward = []
    for name, path, is_package in _modules():
        if name == "fastconv":
            continue
        for module, names in _imports(name, path, is_package):
            if module == "fastconv":
                upward += ["%s: from fastconv import %s" % (name, n) for n in names or ("*",)
                           if not _is_module("fastconv." + n)]
    assert not upward, upward


def test_no_private_name_from_a_sibling_public_module():
    bad = []
    for name, path, is_package in _modules():
        for module, names in _imports(name, path, is_package):
            if not module or not module.startswith("fastconv"):
                continue
            if any(part.startswith("_") for part in module.split(".")):
                continue              # private modules hand out their helpers
            bad += ["%s: from %s import %s" % (name, module, n) for n in names
                    if n.startswith("_") and not n.startswith("__") and not _is_module(module + "." + n)]
    assert not bad, bad


def test_a_training_step_builds_the_conv_geometry_once(monkeypatch):
    made = []
    make = _geometry.ConvGeometry.make.__func__

    def counting(cls, *args, **kwargs):
        made.append(kwargs.get("fn"))
        return make(cls, *args, **kwargs)
    monkeypatch.setattr(_geometry.ConvGeometry, "make", classmethod(counting))
    prepared = []
    monkeypatch.setattr(_prepare, "_record", lambda *a, _r=_prepare._record: prepared.append(a[0]) or _r(*a))
    layer = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
    x = fc.Tensor(np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype(np.float32), requires_grad=True)
    (layer(x) ** 2).sum().backward()
    assert made == ["conv2d"] and prepared == ["conv2d"]
    assert x.grad.shape == x.shape and layer.weight.grad is not None and layer.bias.grad is not None


def test_the_tape_runs_backward_on_the_forward_record(monkeypatch):
    """Backward runs the algorithms on the forward call's record, not through the public gradient functions."""
    rng = np.random.default_rng(1)
    x = fc.Tensor(rng.standard_normal((1, 2, 5, 5)), requires_grad=True)
    w = fc.Tensor(rng.standard_normal((3, 2, 3, 3)), requires_grad=True)
    gy = rng.standard_normal((1, 3, 3, 3))
    expect = (fc.grad.conv2d_input(x.shape, w.data, gy, flip=True, algorithm="toeplitz"),
              fc.grad.conv2d_weight(x.data, w.shape, gy, flip=True, algorithm="toeplitz"))
    for name in ("conv2d_input", "conv2d_weight"):
        monkeypatch.setattr(fc.grad, name, None)
    y = nn.functional.conv2d(x, w, flip=True, algorithm="toeplitz")
    y.backward(gy)
    np.testing.assert_array_equal(x.grad, expect[0])
    np.testing.assert_array_equal(w.grad, expect[1])


def test_moved_gradients_warn_at_their_old_names():
    for module in (fc, fc.pooling):
        for name in fc.pooling.BACKWARD:
            with pytest.warns(DeprecationWarning, match="fastconv.grad.%s" % name):
                old = getattr(module, name)
            assert old is getattr(fc.grad, name)
            assert name not in module.__all__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fc.grad.max_pool_backward is not None
    with pytest.raises(AttributeError):
        fc.pooling.no_such_function


def test_layers_have_real_signatures_and_docstrings_live_on_the_def():
    sig = inspect.signature(nn.MaxPool2d)
    assert list(sig.parameters) == ["kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"]
    assert list(inspect.signature(nn.AvgPool3d).parameters)[-1] == "divisor_override"
    for fn in (fc.conv2d, fc.conv_transpose1d, fc.grad.conv3d_weight, fc.max_pool2d, fc.filters.gaussian,
               fc.filters.sobel, fc.filters.convolve, fc.grad.avg_pool2d_backward):
        assert "%(" not in fn.__doc__
        assert "Parameters" in fn.__doc__ or "Gradient" in fn.__doc__


def test_kernels_take_their_geometry_by_name():
    from fastconv._algos.direct import _direct
    x = np.ones((1, 1, 1, 1, 4), np.float32)
    out = np.empty((1, 1, 1, 1, 2), np.float32)
    with pytest.raises(ValueError, match="kw"):
        _direct.forward(x, np.ones(16, np.float32), np.zeros(1, np.float32), out, {"groups": 1, "kd": 1, "kh": 1},
                        has_bias=False, kchunks=1, wchunk_blocks=1, rows_per_task=1, nthreads=1)
