"""Convolution layers as matrices: the explicit (sparse) Toeplitz matrix of a layer, and conv <-> dense.

A convolution is linear in its input, so for fixed weights it is a matrix ``T`` with
``conv(x).ravel() == T @ x.ravel()``.  For a 1-D input the matrix is Toeplitz (constant along diagonals), for
2-D it is doubly block Toeplitz (blocks of Toeplitz blocks), and with ``padding_mode="circular"`` it is
(doubly block) circulant.  Its transpose ``T.T`` is the transposed convolution, i.e. the gradient with respect to
the input.  :func:`toeplitz_matrix` builds ``T`` as a ``scipy.sparse`` array, for teaching and for verifying the
fast algorithms; the ``toeplitz`` algorithm (``algorithm="toeplitz"``) multiplies its dense factors instead
(im2col + GEMM) and never forms it.

:func:`conv_as_dense` and :func:`dense_as_conv` are the equivalence from the notes: a convolution whose kernel
covers the whole input (no padding) is a fully connected layer, and a fully connected layer is such a
convolution -- the weights are only reshaped.  The bias vector is the same in both views.
"""
from math import prod

import numpy as np
import scipy.sparse

from . import _validate as V
from ._algos.toeplitz import get_workspace_limit, patches, set_workspace_limit
from ._prepare import pad_input, prepare_conv_shape

__all__ = ["toeplitz_matrix", "conv_as_dense", "dense_as_conv", "set_workspace_limit", "get_workspace_limit"]


def _weight(weight, fn):
    w = V.batch_array(weight, fn, "weight", layout="C_out, C_in/groups, *kernel")
    return np.ascontiguousarray(w, dtype=V.float_kind(w.dtype))


def _shape(input_shape, ndim, fn):
    """``input_shape`` as (N, C, *spatial); a single sample's (C, *spatial) gets N = 1."""
    shape = V.shape_arg(input_shape, fn, "input_shape")
    if len(shape) == ndim:
        return shape
    if len(shape) == ndim - 1:
        return (1,) + shape
    raise ValueError("%s(): argument 'input_shape' must be (N, C, *spatial) or (C, *spatial) with %d spatial "
                     "dims for a %d-D weight, got %r" % (fn, ndim - 2, ndim, tuple(input_shape)))


def toeplitz_matrix(weight, input_shape, stride=1, padding=0, dilation=1, groups=1, *, padding_mode="zeros"):
    """The linear map of a convolution layer (no bias) as a sparse matrix.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel)
    input_shape : tuple
        ``(N, C_in, *spatial)``, or ``(C_in, *spatial)`` for a single sample.
    stride, padding, dilation, groups
        As for :func:`fastconv.conv2d` (every padding form, including per-side pairs, ``"same"``, ``"valid"``).
    padding_mode : {"zeros", "reflect", "replicate", "circular"}
        ``"circular"`` gives a (block) circulant matrix; ``"zeros"`` a (block) Toeplitz one.

    Returns
    -------
    T : scipy.sparse.csr_array, shape (prod(output_shape), prod(input_shape))
        ``T @ x.ravel() == conv(x, weight, ...).ravel()`` and ``T.T @ g.ravel()`` is the transposed convolution
        (input gradient) of ``g``.  Output and input are flattened in C order, batch included.  dtype float32 for
        a float32 weight, else float64.  Every tap that reads a real input element is stored, even where the
        weight is exactly zero, so with zero padding ``T.nnz`` is ``N * C_out * (C_in/groups) * prod_i m_i``
        with ``m_i`` the number of (output index, kernel tap) pairs of spatial dim ``i`` that land inside the
        input.  (Other padding modes may fold several taps onto one input element.)

    Examples
    --------
    >>> import numpy as np, fastconv
    >>> T = fastconv.toeplitz_matrix(np.array([[[1.0, 2.0, 3.0]]]), (1, 1, 5))
    >>> T.toarray()
    array([[1., 2., 3., 0., 0.],
           [0., 1., 2., 3., 0.],
           [0., 0., 1., 2., 3.]])
    """
    fn = "toeplitz_matrix"
    w = _weight(weight, fn)
    shape = _shape(input_shape, w.ndim, fn)
    p, _ = prepare_conv_shape(fn, w.ndim - 2, w, "weight", shape, "input_shape", stride, padding, dilation, groups,
                              padding_mode)
    geom, w = p.geom, p.w
    # Padded map of flat input indices (-1 = a zero-padding element), then every (output, tap) window of it.
    index = np.arange(prod(shape), dtype=np.int64).reshape(shape)
    win = patches(pad_input(index, geom, zero=-1), geom)                     # (N, C, *out, *kernel)
    N, C = shape[:2]
    G, K = geom.groups, geom.out_channels
    Cg, Kg = C // G, K // G
    P, RST = prod(geom.output_size), prod(geom.kernel_size)
    cols = win.reshape(N, G, Cg, P, RST).transpose(0, 1, 3, 2, 4).reshape(N, G, 1, P, Cg * RST)
    vals = w.reshape(1, G, Kg, 1, Cg * RST)
    # Rows in C order of (n, g, k, p) are exactly the flat output indices (n, g*Kg + k, p).
    cols, vals = np.broadcast_arrays(cols, vals)
    keep = cols >= 0
    counts = keep.reshape(-1, Cg * RST).sum(axis=1)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    T = scipy.sparse.csr_array((vals[keep], cols[keep], indptr), shape=(prod(geom.output_shape), prod(shape)))
    T.sum_duplicates()
    return T


def conv_as_dense(weight, input_shape=None, groups=1):
    """The fully connected layer equal to a convolution whose kernel covers the whole input.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in/groups, *kernel)
    input_shape : tuple, optional
        ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``; when given it must match the kernel (no padding,
        ``spatial == kernel``), otherwise the layer is not a dense layer (see :func:`toeplitz_matrix`).
    groups : int
        A grouped convolution is a block-diagonal dense layer.

    Returns
    -------
    ndarray, shape (C_out, C_in * prod(kernel))
        ``x.reshape(N, -1) @ W.T + bias == conv(x, weight, bias, groups=groups).reshape(N, C_out)`` for ``x`` of
        shape ``(N, C_in, *kernel)``.
    """
    fn = "conv_as_dense"
    w = _weight(weight, fn)
    G = V.positive_int(groups, fn, "groups")
    K, Cg = w.shape[:2]
    if K % G:
        raise ValueError("%s(): argument 'groups'=%d must divide the output channels (weight.shape[0]) %d"
                         % (fn, G, K))
    if input_shape is not None:
        shape = _shape(input_shape, w.ndim, fn)
        if shape[1] != Cg * G or shape[2:] != w.shape[2:]:
            raise ValueError("%s(): argument 'input_shape' %r must be (C_in=%d, *kernel=%s) for the kernel to "
                             "cover the whole input; use toeplitz_matrix() for other inputs"
                             % (fn, tuple(input_shape), Cg * G, w.shape[2:]))
    Kg, F = K // G, Cg * prod(w.shape[2:])
    dense = np.zeros((G, Kg, G, F), dtype=w.dtype)
    dense[np.arange(G), :, np.arange(G), :] = w.reshape(G, Kg, F)
    return dense.reshape(K, G * F)


def dense_as_conv(weight, input_shape):
    """The convolution weight equal to a fully connected layer ``y = x.reshape(N, -1) @ weight.T``.

    Parameters
    ----------
    weight : array_like, shape (out_features, in_features)
    input_shape : tuple
        The shape of one sample, ``(C_in, *spatial)`` with 1-3 spatial dims and
        ``C_in * prod(spatial) == in_features``.

    Returns
    -------
    ndarray, shape (out_features, C_in, *spatial)
        ``conv(x, W_conv)`` (no padding, stride 1) has shape ``(N, out_features, 1, ...)`` and equals the dense
        layer's output; the bias carries over unchanged.
    """
    fn = "dense_as_conv"
    w = V.as_array(weight, fn, "weight")
    V.check_ndim(w, 2, fn, "weight", "out_features, in_features")
    V.check_nonempty(w, fn, "weight")
    shape = V.shape_arg(input_shape, fn, "input_shape")
    if len(shape) not in (2, 3, 4):
        raise ValueError("%s(): argument 'input_shape' must be the shape of one sample (C_in, *spatial) with 1-3 "
                         "spatial dims, got %r" % (fn, shape))
    if prod(shape) != w.shape[1]:
        raise ValueError("%s(): argument 'input_shape' %r has %d elements, but the weight has in_features=%d"
                         % (fn, shape, prod(shape), w.shape[1]))
    return np.ascontiguousarray(w, dtype=V.float_kind(w.dtype)).reshape((w.shape[0],) + shape)
