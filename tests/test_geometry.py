"""ConvGeometry / PoolGeometry: the notes' formulas for output size, parameters and multiplications."""
import numpy as np
import pytest

import fastconv as fc
from fastconv import ConvGeometry, PoolGeometry


@pytest.mark.parametrize("n,f,p,s,d", [(227, 11, 0, 4, 1), (56, 3, 1, 1, 1), (28, 3, 0, 1, 1), (14, 5, 0, 1, 1),
                                       (32, 5, 2, 2, 2), (7, 2, 3, 3, 1), (10, 4, 0, 1, 3)])
def test_output_size_formula(n, f, p, s, d):
    g = ConvGeometry.make((1, 1, n), (1, 1, f), s, p, d)
    assert g.output_size == ((n + 2 * p - d * (f - 1) - 1) // s + 1,)


def test_alexnet_conv1_counts():
    g = ConvGeometry.make((1, 3, 227, 227), (96, 3, 11, 11), stride=4)
    assert g.output_shape == (1, 96, 55, 55)
    assert g.params() == 96 * (11 * 11 * 3 + 1) == 34944
    assert g.params(bias=False) == 96 * 11 * 11 * 3
    assert g.multiplies == 96 * 55 * 55 * 11 * 11 * 3
    assert g.flops == 2 * g.multiplies


def test_grouped_parameter_count():
    g = ConvGeometry.make((2, 32, 10, 10), (64, 8, 3, 3), groups=4, padding=1)
    assert g.params() == 64 * (3 * 3 * 32 // 4 + 1)
    assert g.multiplies == 2 * 64 * 8 * 9 * 100


def test_one_by_one_conv_counts():
    g = ConvGeometry.make((1, 256, 28, 28), (64, 256, 1, 1))
    assert g.output_shape == (1, 64, 28, 28)
    assert g.params() == 64 * 257


def test_conv_output_shape_agrees_with_conv():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 13, 10))
    w = rng.standard_normal((6, 2, 4, 3))
    kw = dict(stride=(2, 3), padding=((1, 2), (0, 1)), dilation=(2, 1), groups=2)
    assert fc.conv_output_shape(x.shape, w.shape, **kw) == fc.conv2d(x, w, **kw).shape


def test_same_and_valid_padding():
    g = ConvGeometry.make((1, 1, 10, 11), (1, 1, 4, 3), padding="same")
    assert g.padding == ((1, 2), (1, 1)) and g.output_size == (10, 11)
    g = ConvGeometry.make((1, 1, 10, 11), (1, 1, 4, 3), stride=3, padding="same")
    assert g.output_size == (4, 4)
    g = ConvGeometry.make((1, 1, 10, 11), (1, 1, 4, 3), padding="valid")
    assert g.padding == ((0, 0), (0, 0)) and g.output_size == (7, 9)


def test_as_3d_keeps_counts():
    g = ConvGeometry.make((2, 3, 15), (4, 3, 5), stride=2, padding=1)
    g3 = g.as_3d()
    assert g3.output_shape == (2, 4, 1, 1, g.output_size[0])
    assert g3.multiplies == g.multiplies and g3.params() == g.params()


def test_transpose_geometry_is_adjoint_of_forward():
    g = ConvGeometry.for_transpose((8, 64, 28, 28), (64, 32, 4, 4), stride=2, padding=1)
    assert g.input_shape == (8, 32, 56, 56) and g.output_shape == (8, 64, 28, 28)
    with pytest.raises(ValueError, match="output_padding"):
        ConvGeometry.for_transpose((1, 2, 5, 5), (2, 2, 3, 3), stride=2, output_padding=2)


@pytest.mark.parametrize("n,k,s,p,ceil,expect", [(5, 2, 2, 0, False, 2), (5, 2, 2, 0, True, 3),
                                                  (6, 3, 2, 1, True, 4), (7, 3, 3, 1, True, 3), (5, 2, 2, 1, True, 3),
                                                  (4, 2, 2, 1, True, 3), (112, 3, 2, 1, False, 56)])
def test_pool_output_size_with_ceil_mode(n, k, s, p, ceil, expect):
    g = PoolGeometry.make((1, 1, n), k, s, p, ceil_mode=ceil)
    assert g.output_size == (expect,)
    torch = pytest.importorskip("torch")
    y = torch.nn.functional.max_pool1d(torch.zeros(1, 1, n), k, s, p, ceil_mode=ceil)
    assert y.shape[-1] == expect
