"""``fastconv.nn.summary(model, input_shape)``: per-layer shapes, parameters, multiplications, receptive fields.

The model runs once on zeros (under ``no_grad``, in eval mode) so that the layers are visited in execution order
with the shapes they really receive; each layer's numbers then come from its ``describe(input_shape)``, which
reads its :class:`~fastconv.ConvGeometry` / :class:`~fastconv.PoolGeometry` (the lecture notes' formulas):

* parameters ``K (c/g f1 f2 ... + 1)``, multiplications ``N K (c/g) f1 f2 ... out1 out2 ...``;
* receptive field and jump per spatial dimension: a window of (dilated) size ``k`` and stride ``s`` gives
  ``r_out = r_in + (k - 1) j_in`` and ``j_out = j_in s``, starting from ``r = j = 1`` at the input.  Layers that
  see the whole map (global pools, a Linear after Flatten) take ``k = s =`` the current spatial size.
"""
import numpy as np

from ..autograd import Tensor, no_grad
from .._measure import format_table

__all__ = ["summary", "ModelSummary"]


class ModelSummary:
    """What :func:`summary` returns: ``rows`` (one dict per layer) and totals; ``str()`` gives the table."""

    def __init__(self, rows, input_shape, total_params, trainable_params):
        self.rows = rows
        self.input_shape = tuple(input_shape)
        self.output_shape = rows[-1]["output_shape"] if rows else self.input_shape
        self.total_params = total_params
        self.trainable_params = trainable_params
        self.total_multiplies = sum(r["multiplies"] or 0 for r in rows)

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def __str__(self):
        def dims(t):
            return "x".join("%g" % v for v in t) if t else "-"

        table = [dict(layer="%s (%s)" % (r["name"], r["type"]), output=str(r["output_shape"]),
                      params="{:,}".format(r["params"]),
                      mults="-" if r["multiplies"] is None else "{:,}".format(r["multiplies"]),
                      rf=dims(r["receptive_field"]), jump=dims(r["jump"])) for r in self.rows]
        text = format_table(table, [("layer", "layer"), ("output", "output shape"), ("params", "params"),
                                    ("mults", "multiplications"), ("rf", "receptive field"), ("jump", "jump")])
        return text + ("\ninput %s -> output %s\ntotal params: {:,} (trainable {:,})\ntotal multiplications: {:,}"
                       .format(self.total_params, self.trainable_params, self.total_multiplies)
                       % (self.input_shape, self.output_shape))

    __repr__ = __str__


def _generic(module, input_shape, output_shape):
    """Layers without ``describe``: shape from the forward pass, their own parameters, multiplications unknown."""
    params = sum(p.size for p in module.parameters(recurse=False))
    return dict(output_shape=output_shape, params=params, multiplies=None, window=None)


def summary(model, input_shape, *, print_=True, dtype=None):
    """Print (unless ``print_=False``) and return a :class:`ModelSummary` of ``model`` on ``input_shape``.

    ``input_shape`` is the full input shape including the batch, e.g. ``(1, 1, 32, 32)``; multiplications are
    for that batch.  The zeros run through the model have ``dtype`` (default: the dtype of the model's first
    floating point parameter, float32 without one), since layers refuse inputs of another dtype.
    """
    if dtype is None:
        dtype = next((p.dtype for p in model.parameters() if p.dtype.kind == "f"), np.dtype(np.float32))
    input_shape = tuple(int(s) for s in input_shape)
    leaves = [(name, m) for name, m in model.named_modules() if next(m.children(), None) is None]
    calls = []
    hooks = [m.register_forward_hook(
        lambda mod, args, out, name=name: calls.append((name or type(mod).__name__, mod, args[0].shape,
                                                        (out[0] if isinstance(out, tuple) else out).shape)))
        for name, m in leaves]
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(Tensor._wrap(np.zeros(input_shape, dtype)))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    nd = max(len(input_shape) - 2, 0)
    rf, jump, spatial = (1,) * nd, (1,) * nd, input_shape[2:]
    rows = []
    for name, mod, in_shape, out_shape in calls:
        d = mod.describe(in_shape) if hasattr(mod, "describe") else _generic(mod, in_shape, out_shape)
        if tuple(d["output_shape"]) != tuple(out_shape):
            raise RuntimeError("summary(): layer %s (%s) produced shape %s but its geometry gives %s"
                               % (name, type(mod).__name__, out_shape, d["output_shape"]))
        window = d["window"]
        if window == "all":
            window = (spatial, spatial)
        if window is not None and nd:
            kernel, stride = window
            rf = tuple(r + (k - 1) * j for r, k, j in zip(rf, kernel, jump))
            jump = tuple(j * s for j, s in zip(jump, stride))
            if d["window"] == "all":
                spatial = (1,) * nd
        if len(out_shape) == nd + 2:
            spatial = tuple(out_shape[2:])
        rows.append(dict(name=name, type=type(mod).__name__, input_shape=tuple(in_shape),
                         output_shape=tuple(out_shape), params=int(d["params"]),
                         multiplies=None if d["multiplies"] is None else int(d["multiplies"]),
                         receptive_field=rf, jump=jump))
    params = list(model.parameters())
    result = ModelSummary(rows, input_shape, sum(p.size for p in params),
                          sum(p.size for p in params if p.requires_grad))
    if print_:
        print(result)
    return result
