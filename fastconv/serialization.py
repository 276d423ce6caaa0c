"""``fastconv.save`` / ``fastconv.load``: a state dict in one ``.npz`` file.

A state dict (``model.state_dict()``: names to arrays, in order) is written as :func:`numpy.savez` writes -- one
``.npy`` member per entry, named by its key, in the dict's order -- so the file is readable by NumPy alone
(``np.load(path)``) and by any tool that reads ``.npz``.  Values may be NumPy arrays, fastconv Tensors, torch
tensors or numbers; :func:`load` returns an ``OrderedDict`` of NumPy arrays that ``load_state_dict`` takes (as
does a torch module's, after ``torch.from_numpy``).  Nothing is pickled: loading a file runs no code.
"""
import os
import zipfile
from collections import OrderedDict

import numpy as np

from .nn.module import to_numpy

__all__ = ["save", "load"]


def save(obj, f):
    """Write the state dict ``obj`` (a mapping of str keys to arrays) to ``f`` (a path or a binary file).

    A path without the ``.npz`` suffix gets none added (unlike ``np.savez``): the file is written where asked.
    """
    if not hasattr(obj, "items"):
        raise TypeError("save(): argument 'obj' must be a state dict (a mapping of names to arrays), got %s"
                        % type(obj).__name__)
    arrays = OrderedDict()
    for key, value in obj.items():
        if not isinstance(key, str):
            raise TypeError("save(): state dict keys must be str, got %r" % (key,))
        arr = to_numpy(value)
        if arr.dtype == object or arr.dtype.kind not in "biufc":
            raise TypeError("save(): entry %r is not a numeric array (dtype %s)" % (key, arr.dtype))
        arrays[key] = arr
    if isinstance(f, (str, os.PathLike)):
        with open(f, "wb") as fh:
            _write(fh, arrays)
    else:
        _write(f, arrays)


def _write(fh, arrays):
    with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in arrays.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def load(f):
    """Read a state dict written by :func:`save` (or any ``.npz`` file): an ``OrderedDict`` of arrays."""
    with np.load(f, allow_pickle=False) as data:
        return OrderedDict((key, data[key]) for key in data.files)
