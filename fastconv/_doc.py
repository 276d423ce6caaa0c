"""Shared docstring fragments, filled into the docstring written on each ``def`` (scipy.ndimage's docfiller).

A docstring names a fragment as ``%(name)s``; :func:`filled` substitutes the fragments when the function is
defined, so ``help()`` and the API reference show the whole text while the source keeps one copy of it.
A literal ``%`` in a filled docstring is written ``%%``.
"""

__all__ = ["filled", "CONV", "POOL"]


def filled(*tables, **extra):
    """Decorator: ``fn.__doc__ %= {**tables[0], ..., **extra}``, repeated while fragments name fragments."""
    fragments = {}
    for t in tables:
        fragments.update(t)
    fragments.update(extra)

    def decorate(fn):
        doc = fn.__doc__
        while "%(" in doc:
            doc = doc % fragments
        fn.__doc__ = doc
        return fn
    return decorate


# Parameters of the convolutions (conv*d, the gradients in fastconv.grad), 4-space docstring indentation.
CONV = {
    "conv_doc": """Parameters
    ----------
    input : array_like, shape (N, C_in, *spatial)
    weight : array_like, shape (C_out, C_in/groups, *kernel)
    bias : array_like, shape (C_out,), optional
    %(conv_geometry)s
    %(conv_algorithm)s
    %(conv_flip)s
    %(conv_out)s

    Returns
    -------
    %(conv_returns)s""",
    "convt_doc": """Parameters
    ----------
    input : array_like, shape (N, C_in, *spatial)
    weight : array_like, shape (C_in, C_out/groups, *kernel)
    bias : array_like, shape (C_out,), optional
    %(convt_args)s

    Returns
    -------
    ndarray, spatial size ``(n - 1) s - 2 p + d (k - 1) + output_padding + 1`` per dim""",
    "conv_geometry": """stride, dilation : int or tuple of ints, one per spatial dim
    padding : int, tuple of ints, tuple of (lo, hi) pairs, "valid" or "same"
        ``"same"`` keeps the size for stride 1 (total ``d(k-1)``, the odd element on the right, as PyTorch) and
        gives ``ceil(n/stride)`` outputs for stride > 1 (TensorFlow's rule).
    groups : int
        Split channels into ``groups`` independent convolutions (``groups == C_in`` is depthwise).
    padding_mode : {"zeros", "reflect", "replicate", "circular"}""",
    "conv_algorithm": """algorithm : {"auto", "direct", "toeplitz", "fft", ...}
        See ``fastconv.algorithms()``.  ``"direct"`` and ``"toeplitz"`` put an inf or NaN of the operands
        exactly where PyTorch does; ``"fft"``, ``"winograd"`` and ``"fft_tiles"`` spread one over its tile
        (NaN), so when such a result of ``"auto"`` holds an inf or NaN the call runs again with an exact
        algorithm (the guide's "Non-finite values").""",
    "conv_flip": """flip : bool
        True computes true convolution (the kernel flipped along every spatial axis).""",
    "conv_out": """out : ndarray, optional
        C-contiguous array of the output shape and dtype to write into; it must not share memory with an input
        (whatever form the input is given in: an ndarray, a memoryview, a torch tensor).""",
    "conv_returns": """ndarray, shape (N, C_out, *out_size), ``out_size = (n + 2p - d(k-1) - 1) // s + 1``
        float64 if any argument is float64 or an integer array, else float32.""",
    "convt_args": """stride, padding, output_padding, dilation : int or tuple of ints, one per spatial dim
        ``output_padding`` must be smaller than stride or dilation.
    groups : int
    algorithm : str
    out : ndarray, optional""",
    "grad_args": """grad_output : array_like, the gradient w.r.t. the convolution's output
    stride, padding, dilation, groups, padding_mode, flip, algorithm : as in the forward function""",
}

# Parameters of the pools.
POOL = {
    "max_args": """kernel_size : int or tuple of ints, one per spatial dim
    stride : int or tuple of ints, optional
        Defaults to ``kernel_size``.
    padding : int or tuple of ints
        Implicit ``-inf`` padding on both sides, at most half the (dilated) kernel.
    dilation : int or tuple of ints
    ceil_mode : bool
        Round the output size up; the last window must still start inside the input or the left padding.
    return_indices : bool
        Also return the argmax of every window as int64 flat offsets into each unpadded (n, c) plane.""",
    "max_returns": """ndarray, or (ndarray, int64 ndarray) with ``return_indices``
        Output size ``floor_or_ceil((n + 2p - d(k-1) - 1) / s) + 1`` per dim.  Ties keep the first maximum
        (row-major scan of the window); a NaN in a window gives NaN and the index of its (last) NaN.""",
    "avg_args": """kernel_size, stride, padding : int or tuple of ints, one per spatial dim
        ``stride`` defaults to ``kernel_size``; zero ``padding`` of at most half the kernel on both sides.
    ceil_mode : bool
    count_include_pad : bool
        Divide by the window size including the zero padding (clipped to ``n + padding`` in ceil mode, as
        PyTorch), else by the number of input elements in the window.
    divisor_override : int, optional
        Divide every sum by this non-zero number instead.""",
    "lp_doc": """``(sum over the window of x^p)^(1/p)``; ``p = 2`` is L2 pooling.  Like PyTorch this is computed as
    ``(kernel elements * avg_pool(x^p))^(1/p)``, so a ceil-mode window cut by the input edge is rescaled to the
    full kernel size, and a negative sum (odd ``p``) gives NaN.""",
    "lp_backward_doc": """``dy/dx_i = K y^(1-p) x_i^(p-1) / count`` summed over the windows containing ``x_i``; windows
    whose output is 0 contribute 0 for ``p > 1`` (PyTorch's autograd gives NaN there).""",
    "adaptive_doc": """Output ``o`` of a dimension of size ``n`` pools ``[floor(o n / out), ceil((o + 1) n / out))``.
    ``output_size`` is an int or a tuple of ints (one per spatial dim) where ``None`` keeps that dimension's
    size.""",
    "unpool_doc": """Every input value is put at its index in a zero (n, c) plane of size ``output_size`` (default
    ``(n - 1) s - 2 p + k``; a given size, of one entry per spatial dim with or without (N, C), must lie strictly
    within one stride of it).  Indices must lie in the plane; when two share a position the later one (in memory
    order) wins.""",
    "avg_backward_doc": """Arguments after ``input_shape`` are those of the forward call.  Every output's gradient,
    divided by its divisor, is added to each input element of its window.""",
}
