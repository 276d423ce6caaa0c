"""Docstrings of :mod:`fastconv.ndimage`, built from shared parameter fragments (as scipy.ndimage does)."""

P = {
    "input": "input : array_like\n        The input array (bool, integer, float32/float64; complex where scipy takes it).",
    "axis": "axis : int, optional\n        The axis of ``input`` along which to filter. Default is -1.",
    "output": ("output : array or dtype, optional\n        The array in which to place the output, or the dtype of "
               "the returned array.  By default an array of the input's dtype is created (integer results are "
               "truncated toward zero, as scipy does)."),
    "mode": ("mode : str or sequence of str, optional\n        How the input is extended beyond its boundaries: "
             "'reflect' (d c b a | a b c d | d c b a, alias 'grid-mirror'), 'constant' (k k k k | a b c d | k k k k, "
             "alias 'grid-constant'), 'nearest' (a a a a | a b c d | d d d d), 'mirror' (d c b | a b c d | c b a), "
             "'wrap' (a b c d | a b c d | a b c d, alias 'grid-wrap').  Default is 'reflect'.  A sequence gives one "
             "mode per axis where scipy accepts it."),
    "cval": "cval : scalar, optional\n        Value outside the edges for mode 'constant'. Default is 0.0.",
    "origin": ("origin : int or sequence of int, optional\n        Shifts the filter: positive values move it to "
               "the left (lower indices of the input are read).  Default 0."),
    "axes": ("axes : tuple of int or None, optional\n        The axes to filter (None: all).  Per-axis sequences "
             "(sizes, origins, modes, sigmas) then have one entry per listed axis."),
    "size_fp": ("size : scalar or tuple, optional\n        Window shape (``footprint = np.ones(size)``).\n    "
                "footprint : array, optional\n        Boolean array selecting the window's elements; takes "
                "precedence over ``size``."),
    "sigma": "sigma : scalar or sequence of scalars\n        Standard deviation(s) of the Gaussian, per axis or one for all.",
}

RET = "\n\n    Returns\n    -------\n    ndarray\n        The filtered array (``output`` when an array was given)."

DOCS = {
    "correlate": ("Multidimensional correlation: ``out[i] = sum_k w[k] * in_ext[i + k - (shape // 2 + origin)]``.",
                  "input weights output mode cval origin axes",
                  "weights : array\n        Weights, one axis per filtered axis (``|w| <= 2.2e-16`` are skipped, "
                  "as scipy does)."),
    "convolve": ("Multidimensional convolution (correlation with the weights mirrored; for even lengths the "
                 "mirrored origin moves by one).", "input weights output mode cval origin axes",
                 "weights : array\n        Weights, one axis per filtered axis."),
    "correlate1d": ("1-D correlation along ``axis``.", "input weights axis output mode cval origin",
                    "weights : array\n        1-D sequence of numbers."),
    "convolve1d": ("1-D convolution along ``axis``.", "input weights axis output mode cval origin",
                   "weights : array\n        1-D sequence of numbers."),
    "gaussian_filter": ("Multidimensional Gaussian filter (one 1-D pass per axis with sigma > 1e-15).",
                        "input sigma order output mode cval truncate radius axes",
                        "order : int or sequence of int, optional\n        Derivative order per axis (0: smoothing)."
                        "\n    truncate : float, optional\n        Radius ``int(truncate * sigma + 0.5)`` unless "
                        "``radius`` is given. Default 4.0.\n    radius : None or int or sequence of int, optional"),
    "gaussian_filter1d": ("1-D Gaussian filter (or derivative of ``order``) along ``axis``.",
                          "input sigma axis order output mode cval truncate radius",
                          "order : int, optional\n    truncate : float, optional\n    radius : None or int, optional"),
    "gaussian_laplace": ("Laplace filter of Gaussian second derivatives (``**kwargs`` go to gaussian_filter).",
                         "input sigma output mode cval axes", ""),
    "gaussian_gradient_magnitude": ("Gradient magnitude from Gaussian first derivatives (``**kwargs`` go to "
                                    "gaussian_filter).", "input sigma output mode cval axes", ""),
    "generic_gradient_magnitude": ("Gradient magnitude ``sqrt(sum_axis derivative(input, axis)**2)`` with a "
                                   "derivative function, e.g. fastconv.ndimage.sobel.",
                                   "input derivative output mode cval axes",
                                   "derivative : callable\n        ``derivative(input, axis, output, mode, cval, "
                                   "*extra_arguments, **extra_keywords)``.\n    extra_arguments : sequence, "
                                   "optional\n    extra_keywords : dict, optional"),
    "generic_laplace": ("Laplace ``sum_axis derivative2(input, axis)`` with a second-derivative function.",
                        "input derivative2 output mode cval axes",
                        "derivative2 : callable\n        ``derivative2(input, axis, output, mode, cval, "
                        "*extra_arguments, **extra_keywords)``.\n    extra_arguments : sequence, optional\n    "
                        "extra_keywords : dict, optional"),
    "laplace": ("Laplace filter from the second differences [1, -2, 1] along each axis.",
                "input output mode cval axes", ""),
    "sobel": ("Sobel derivative along ``axis``: [-1, 0, 1] along it, [1, 2, 1] along the others.",
              "input axis output mode cval", ""),
    "prewitt": ("Prewitt derivative along ``axis``: [-1, 0, 1] along it, [1, 1, 1] along the others.",
                "input axis output mode cval", ""),
    "uniform_filter": ("Multidimensional box mean (one running-sum pass per axis with size > 1).",
                       "input size output mode cval origin axes",
                       "size : int or sequence of int, optional\n        Box size per axis. Default 3."),
    "uniform_filter1d": ("1-D box mean along ``axis`` (running sum, as scipy).",
                         "input size axis output mode cval origin", "size : int\n        Box length."),
    "minimum_filter": ("Multidimensional minimum filter (separable when the window is a box).",
                       "input size_fp output mode cval origin axes", ""),
    "maximum_filter": ("Multidimensional maximum filter (separable when the window is a box).",
                       "input size_fp output mode cval origin axes", ""),
    "minimum_filter1d": ("1-D minimum filter along ``axis``.", "input size axis output mode cval origin",
                         "size : int\n        Window length."),
    "maximum_filter1d": ("1-D maximum filter along ``axis``.", "input size axis output mode cval origin",
                         "size : int\n        Window length."),
    "median_filter": ("Multidimensional median filter (the element of rank ``n // 2`` of the ``n`` in the window).",
                      "input size_fp output mode cval origin axes", ""),
    "rank_filter": ("Multidimensional rank filter: the ``rank``-th smallest value in the window (negative counts "
                    "from the largest).", "input rank size_fp output mode cval origin axes",
                    "rank : int"),
    "percentile_filter": ("Multidimensional percentile filter: rank ``int(n * percentile / 100)`` (negative "
                          "percentiles count from 100).", "input percentile size_fp output mode cval origin axes",
                          "percentile : scalar"),
}


def attach(namespace):
    for name, (summary, params, extra) in DOCS.items():
        lines = []
        for p in params.split():
            if p in P:
                lines.append(P[p])
            elif extra and p in ("weights", "order", "size", "derivative", "derivative2", "rank", "percentile"):
                if extra not in lines:
                    lines.append(extra)
        if extra and extra not in lines:
            lines.append(extra)
        namespace[name].__doc__ = ("%s\n\n    Drop-in for ``scipy.ndimage.%s`` (same signature, defaults and results; "
                                   "see :mod:`fastconv.ndimage`).\n\n    Parameters\n    ----------\n    %s%s\n"
                                   % (summary, name, "\n    ".join(lines), RET))
