"""Bad convolution arguments raise ValueError/TypeError naming the argument, before any kernel runs."""
import numpy as np
import pytest

import fastconv as fc

X = np.ones((2, 4, 8, 8), np.float32)
W = np.ones((6, 4, 3, 3), np.float32)

# (description, kwargs overriding input/weight/..., exception type, argument named in the message)
CASES = [
    ("input 3-D for conv2d", dict(input=np.ones((4, 8, 8))), ValueError, "input"),
    ("weight 3-D", dict(weight=np.ones((6, 4, 3))), ValueError, "weight"),
    ("channel mismatch", dict(weight=np.ones((6, 3, 3, 3))), ValueError, "weight"),
    ("groups does not divide input channels", dict(groups=3, weight=np.ones((6, 1, 3, 3))), ValueError, "groups"),
    ("groups does not divide output channels", dict(groups=4, weight=np.ones((6, 1, 3, 3))), ValueError, "groups"),
    ("groups zero", dict(groups=0), ValueError, "groups"),
    ("groups float", dict(groups=2.0), TypeError, "groups"),
    ("stride zero", dict(stride=0), ValueError, "stride"),
    ("stride negative tuple", dict(stride=(1, -1)), ValueError, "stride"),
    ("stride wrong length", dict(stride=(1, 1, 1)), ValueError, "stride"),
    ("stride float", dict(stride=1.5), TypeError, "stride"),
    ("stride bool", dict(stride=True), TypeError, "stride"),
    ("dilation zero", dict(dilation=0), ValueError, "dilation"),
    ("negative padding", dict(padding=-1), ValueError, "padding"),
    ("negative per-side padding", dict(padding=((0, -1), (1, 1))), ValueError, "padding"),
    ("unknown padding string", dict(padding="full"), ValueError, "padding"),
    ("kernel larger than padded input", dict(weight=np.ones((6, 4, 11, 3))), ValueError, "weight"),
    ("dilated kernel larger than input", dict(dilation=4), ValueError, "weight"),
    ("empty spatial input", dict(input=np.ones((2, 4, 0, 8))), ValueError, "input"),
    ("empty weight", dict(weight=np.ones((0, 4, 3, 3))), ValueError, "weight"),
    ("zero-size spatial dim", dict(input=np.ones((2, 4, 0, 8))), ValueError, "input"),
    ("complex input", dict(input=np.ones((2, 4, 8, 8), complex)), TypeError, "input"),
    ("object input", dict(input=np.ones((2, 4, 8, 8), object)), TypeError, "input"),
    ("bool weight", dict(weight=np.ones((6, 4, 3, 3), bool)), TypeError, "weight"),
    ("string input", dict(input="image"), TypeError, "input"),
    ("bias wrong length", dict(bias=np.ones(5)), ValueError, "bias"),
    ("bias complex", dict(bias=np.ones(6, complex)), TypeError, "bias"),
    ("unknown algorithm", dict(algorithm="winograd9"), ValueError, "algorithm"),
    ("algorithm not a string", dict(algorithm=3), TypeError, "algorithm"),
    ("unknown padding_mode", dict(padding_mode="mirror"), ValueError, "padding_mode"),
    ("reflect padding too large", dict(padding=8, padding_mode="reflect"), ValueError, "padding"),
    ("flip not bool", dict(flip="yes"), TypeError, "flip"),
    ("out wrong shape", dict(out=np.empty((2, 6, 5, 5), np.float32)), ValueError, "out"),
    ("out wrong dtype", dict(out=np.empty((2, 6, 6, 6), np.float64)), TypeError, "out"),
    ("out not an array", dict(out=[0.0]), TypeError, "out"),
    ("out not contiguous", dict(out=np.empty((2, 6, 6, 12), np.float32)[..., ::2]), ValueError, "out"),
    ("out read-only", dict(out=np.broadcast_to(np.float32(0), (2, 6, 6, 6))), ValueError, "out"),
]


@pytest.mark.parametrize("desc,over,exc,arg", CASES, ids=[c[0] for c in CASES])
def test_conv2d_rejects(desc, over, exc, arg):
    kw = dict(input=X.copy(), weight=W.copy(), bias=None)
    kw.update(over)
    snapshot = {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray) and v.dtype != object}
    with pytest.raises(exc, match=arg):
        fc.conv2d(**kw)
    for k, v in snapshot.items():
        np.testing.assert_array_equal(kw[k], v)


def test_out_overlapping_input_is_rejected():
    buf = np.zeros((2, 6, 8, 8), np.float32)
    x = buf[:, :4]
    w = np.ones((6, 4, 1, 1), np.float32)
    with pytest.raises(ValueError, match="out"):
        fc.conv2d(x, w, out=buf.reshape(2, 6, 8, 8))


def test_conv_transpose_rejects_bad_arguments():
    x = np.ones((1, 4, 5, 5))
    w = np.ones((4, 2, 3, 3))
    with pytest.raises(ValueError, match="output_padding"):
        fc.conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="weight"):
        fc.conv_transpose2d(x, np.ones((3, 2, 3, 3)))
    with pytest.raises(ValueError, match="padding"):
        fc.conv_transpose2d(x, w, padding="same")
    with pytest.raises(ValueError, match="padding"):
        fc.conv_transpose2d(x, w, padding=4)
    with pytest.raises(ValueError, match="bias"):
        fc.conv_transpose2d(x, w, bias=np.ones(3))


def test_every_dimensionality_checks_ndim():
    with pytest.raises(ValueError, match="input"):
        fc.conv1d(np.ones((1, 2, 3, 4)), np.ones((1, 2, 1)))
    with pytest.raises(ValueError, match="input"):
        fc.conv3d(np.ones((1, 2, 3, 4)), np.ones((1, 2, 1, 1, 1)))
