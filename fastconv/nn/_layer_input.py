"""What every layer checks about its input before calling the functional op: dtype and batched/unbatched shape.

PyTorch layers refuse an input whose dtype differs from their parameters' (float32 data into a float64 layer)
instead of promoting it, and accept an unbatched sample -- ``(C, *spatial)`` for a layer that takes
``(N, C, *spatial)`` -- by treating it as a batch of one.  The functional API keeps NumPy's promotion.
"""
from ..autograd import as_tensor

__all__ = ["check_dtype", "batched"]


def check_dtype(layer, x, *arrays):
    """Raise TypeError unless ``x`` (a Tensor) has the dtype of the layer's floating point parameters/buffers."""
    for a in arrays:
        if a is None:
            continue
        dtype = a.dtype
        if dtype.kind == "f" and x.dtype != dtype:
            raise TypeError("%s: input dtype %s does not match the layer's dtype %s; convert the input "
                            "(x.astype(np.%s)) or the layer (.to(np.%s))"
                            % (type(layer).__name__, x.dtype, dtype, dtype, x.dtype))
        return


def batched(layer, input, nd, params=()):
    """``(x, unbatched)``: ``input`` as a Tensor with a batch dimension.

    ``nd`` spatial dimensions: an ``(nd + 2)``-D input is a batch, an ``(nd + 1)``-D one an unbatched sample
    (given a batch of one; the caller drops it again with ``y[0]``).  Anything else is a ValueError.
    """
    x = as_tensor(input)
    check_dtype(layer, x, *params)
    if x.ndim == nd + 2:
        return x, False
    if x.ndim == nd + 1:
        return x.reshape((1,) + x.shape), True
    raise ValueError("%s: expected a %dD (unbatched) or %dD (batched) input, got shape %s"
                     % (type(layer).__name__, nd + 1, nd + 2, x.shape))
