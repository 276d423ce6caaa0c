"""The autograd tape: every Tensor op against float64 central differences and torch, and the tape's edge cases."""
import numpy as np
import pytest

import fastconv
from fastconv import Tensor, gradcheck, no_grad
from fastconv.autograd import Function, GradcheckError, enable_grad, is_grad_enabled

rng = np.random.default_rng(1234)


def rand(*shape, positive=False):
    a = rng.standard_normal(shape)
    return np.abs(a) + 0.5 if positive else a


# --------------------------------------------------------------------------------------------------- gradcheck of ops
OPS = {
    "add_broadcast": (lambda a, b: a + b, [rand(3, 1, 4), rand(5, 1)]),
    "radd_scalar": (lambda a: 2.5 + a, [rand(3, 4)]),
    "sub_broadcast": (lambda a, b: a - b, [rand(2, 3), rand(3)]),
    "rsub": (lambda a: 1.0 - a, [rand(4)]),
    "mul_broadcast": (lambda a, b: a * b, [rand(2, 3, 4), rand(1, 3, 1)]),
    "div": (lambda a, b: a / b, [rand(3, 4), rand(4, positive=True)]),
    "rdiv": (lambda a: 2.0 / a, [rand(3, positive=True)]),
    "neg": (lambda a: -a, [rand(2, 5)]),
    "pow_scalar": (lambda a: a ** 3, [rand(6)]),
    "pow_tensor": (lambda a, b: a ** b, [rand(2, 3, positive=True), rand(2, 3)]),
    "rpow": (lambda a: 2.0 ** a, [rand(5)]),
    "matmul_2d": (lambda a, b: a @ b, [rand(3, 4), rand(4, 5)]),
    "matmul_batched_broadcast": (lambda a, b: a @ b, [rand(2, 3, 4), rand(4, 2)]),
    "matmul_vec_mat": (lambda a, b: a @ b, [rand(4), rand(2, 4, 3)]),
    "matmul_mat_vec": (lambda a, b: a @ b, [rand(3, 4), rand(4)]),
    "matmul_dot": (lambda a, b: a @ b, [rand(4), rand(4)]),
    "rmatmul_array": (lambda b: np.ones((2, 3)) @ b, [rand(3, 2)]),
    "sum_all": (lambda a: a.sum(), [rand(3, 4)]),
    "sum_dims_keepdim": (lambda a: a.sum((0, 2), keepdim=True), [rand(2, 3, 4)]),
    "mean_dim": (lambda a: a.mean(1), [rand(2, 3, 4)]),
    "mean_negative_dim_keepdim": (lambda a: a.mean(-1, keepdim=True), [rand(2, 3)]),
    "reshape": (lambda a: a.reshape(4, -1) * np.arange(6.0), [rand(2, 3, 4)]),
    "flatten": (lambda a: a.flatten(1) * np.arange(12.0), [rand(2, 3, 4)]),
    "transpose": (lambda a: a.transpose(0, 2) * np.arange(3.0), [rand(3, 4, 2)]),
    "permute": (lambda a: a.permute(2, 0, 1) * np.arange(3.0)[:, None, None], [rand(2, 4, 3)]),
    "T": (lambda a: a.T @ a, [rand(3, 2)]),
    "getitem_basic": (lambda a: a[1:, ::2, None, -1], [rand(3, 5, 2)]),
    "getitem_repeated_indices": (lambda a: a[[0, 2, 0, 0], 1], [rand(3, 4)]),
    "getitem_mask": (lambda a: a[a > 0.0], [rand(4, 5)]),
    "getitem_tensor_indices": (lambda a: a[Tensor(np.array([2, 0, 2])), Tensor(np.array([1, 1, 1]))], [rand(3, 4)]),
    "exp": (lambda a: a.exp(), [rand(3, 2)]),
    "log": (lambda a: a.log(), [rand(3, 2, positive=True)]),
    "relu": (lambda a: a.relu(), [rand(4, 5)]),
    "sigmoid": (lambda a: a.sigmoid(), [rand(4, 5)]),
    "tanh": (lambda a: a.tanh(), [rand(4, 5)]),
    "softmax": (lambda a: a.softmax(1), [rand(3, 4, 2)]),
    "log_softmax": (lambda a: a.log_softmax(0), [rand(3, 4)]),
    "module_functions": (lambda a: fastconv.autograd.exp(fastconv.autograd.tanh(a)) * fastconv.autograd.sigmoid(a),
                         [rand(5)]),
    "composite": (lambda a, b: ((a @ b).relu() + 1.0).log().softmax(-1).sum(0), [rand(3, 4), rand(4, 5)]),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradcheck_every_op(name):
    fn, inputs = OPS[name]
    assert gradcheck(fn, inputs)


def test_gradcheck_detects_a_wrong_gradient():
    class WrongSquare(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_arrays
            return 2.1 * x * g          # should be 2 x g

    with pytest.raises(GradcheckError, match="differs"):
        gradcheck(WrongSquare.apply, [rand(5)])
    assert gradcheck(WrongSquare.apply, [rand(5)], raise_exception=False) is False


def test_gradcheck_arguments():
    with pytest.raises(ValueError, match="nothing to check"):
        gradcheck(lambda a: a * 2, [Tensor(rand(3))])
    # integer arrays pass through unchanged (targets), constants may be Tensors without requires_grad
    target = np.array([0, 2])
    assert gradcheck(lambda a, t, c: (a[np.arange(2), t] * c).sum(), [rand(2, 3), target, Tensor(rand(2))])


def test_custom_function_and_needs_input_grad():
    seen = {}

    class Scale(Function):
        @staticmethod
        def forward(ctx, x, y, factor):
            seen["needs"] = ctx.needs_input_grad
            ctx.save_for_backward(x, y)
            ctx.factor = factor
            return factor * x * y

        @staticmethod
        def backward(ctx, g):
            x, y = ctx.saved_arrays
            return ctx.factor * y * g, ctx.factor * x * g, None

    x, y = Tensor(rand(3), requires_grad=True), Tensor(rand(3))
    out = Scale.apply(x, y, 3.0)
    assert seen["needs"] == (True, False, False)
    assert out.grad_fn == "Scale"
    out.sum().backward()
    np.testing.assert_allclose(x.grad, 3.0 * y.data)
    assert y.grad is None
    assert gradcheck(lambda a, b: Scale.apply(a, b, 2.0), [rand(4), rand(4)])


# --------------------------------------------------------------------------------------------------- tape semantics
def test_backward_walks_records_in_reverse_execution_order():
    order = []

    def tagged(tag):
        class Tag(Function):
            @staticmethod
            def forward(ctx, x):
                return x + 0.0

            @staticmethod
            def backward(ctx, g):
                order.append(tag)
                return g
        return Tag.apply

    x = Tensor(rand(3), requires_grad=True)
    a = tagged("a")(x)
    b = tagged("b")(a)
    c = tagged("c")(a * 2.0)       # a used twice: both branches must be done before a's backward
    d = tagged("d")(b + c)
    d.sum().backward()
    assert order == ["d", "c", "b", "a"]
    np.testing.assert_allclose(x.grad, 3.0)


def test_tensor_used_twice_gets_both_contributions():
    x = Tensor(rand(4), requires_grad=True)
    y = x * x + x                       # dy/dx = 2x + 1
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 1)
    z = Tensor(rand(4), requires_grad=True)
    (z + z + z).sum().backward()
    np.testing.assert_allclose(z.grad, 3.0)


def test_gradients_accumulate_until_zero_grad():
    x = Tensor(rand(3), requires_grad=True)
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, 5.0)
    x.zero_grad()
    assert x.grad is None
    (x * 4.0).sum().backward()
    np.testing.assert_allclose(x.grad, 4.0)


def test_backward_twice_without_retain_graph_is_a_clear_error():
    x = Tensor(rand(3), requires_grad=True)
    loss = (x.exp() * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        loss.backward()
    # a new graph reusing the same leaf is fine
    (x * 2.0).sum().backward()


def test_retain_graph_allows_a_second_backward_that_accumulates():
    x = Tensor(rand(3), requires_grad=True)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad, 4 * x.data)
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()


def test_shared_subgraph_freed_by_first_backward():
    x = Tensor(rand(3), requires_grad=True)
    h = x.tanh()
    (h * 2.0).sum().backward()
    with pytest.raises(RuntimeError, match="second time"):
        (h * 3.0).sum().backward()


def test_backward_releases_intermediate_results():
    import weakref
    x = Tensor(rand(50), requires_grad=True)
    h = x.tanh()
    alive = weakref.ref(h)
    loss = (h * 2.0).sum()
    del h
    assert alive() is not None                 # the graph keeps it for the backward pass
    loss.backward()
    assert alive() is None                     # ...and lets it go afterwards
    assert loss.grad_fn == "sum"


def test_no_grad_records_nothing():
    x = Tensor(rand(3), requires_grad=True)
    assert is_grad_enabled()
    with no_grad():
        assert not is_grad_enabled()
        y = x * 2.0 + x
        with enable_grad():
            z = x * 3.0
    assert is_grad_enabled()
    assert not y.requires_grad and y.is_leaf and y.grad_fn is None
    assert z.requires_grad and z.grad_fn == "mul"
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()

    @no_grad()
    def f(t):
        return t * 2.0
    assert not f(x).requires_grad


def test_detach_cuts_the_graph_and_shares_data():
    x = Tensor(rand(3), requires_grad=True)
    d = (x * 2.0).detach()
    assert not d.requires_grad and d.is_leaf
    y = x * d                              # d is a constant: dy/dx = d
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data)
    e = x.detach()
    assert np.shares_memory(e.data, x.data)


def test_broadcast_gradient_is_reduced_to_operand_shape():
    a = Tensor(rand(3, 1), requires_grad=True)
    b = Tensor(rand(1, 4), requires_grad=True)
    c = Tensor(rand(4), requires_grad=True)
    ((a * b) + c).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (1, 4) and c.grad.shape == (4,)
    np.testing.assert_allclose(a.grad, np.full((3, 1), b.data.sum()))
    np.testing.assert_allclose(b.grad, np.full((1, 4), a.data.sum()))
    np.testing.assert_allclose(c.grad, np.full(4, 3.0))


def test_retain_grad_on_intermediate():
    x = Tensor(rand(3), requires_grad=True)
    h = (x * 2.0).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * h.data)
    assert x.is_leaf and not h.is_leaf
    np.testing.assert_allclose(x.grad, 8 * x.data)


def test_backward_argument_errors():
    x = Tensor(rand(2, 3), requires_grad=True)
    y = x * 2.0
    with pytest.raises(RuntimeError, match="single-element"):
        y.backward()
    with pytest.raises(ValueError, match="shape"):
        y.backward(np.ones(3))
    y.backward(np.ones((2, 3)))
    np.testing.assert_allclose(x.grad, 2.0)
    with pytest.raises(TypeError, match="floating point"):
        Tensor(np.arange(3), requires_grad=True)
    with pytest.raises(TypeError):
        Tensor(np.array(["a"]))
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad = False


def test_dtype_is_kept_and_grads_match_parameter_dtype():
    x = Tensor(rand(3).astype(np.float32), requires_grad=True)
    y = (x * 2.0 + 1.0) / 3.0 - x ** 2
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    z = Tensor(rand(3), requires_grad=True)          # float64 mixed with float32
    (x * z).sum().backward()
    assert z.grad.dtype == np.float64 and x.grad.dtype == np.float32


def test_astype_casts_the_gradient_back():
    x = Tensor(rand(3), requires_grad=True)
    y = x.astype(np.float32) * 2.0
    assert y.dtype == np.float32
    y.double().sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad, 2.0)
    assert gradcheck(lambda a: (a.float() * 2.0).double(), [rand(3)], eps=1e-2)


def test_array_like_behaviour():
    a = np.arange(6.0).reshape(2, 3)
    t = Tensor(a)
    a[0, 0] = 100.0                                  # Tensor() copies
    assert t.data[0, 0] == 0.0
    assert t.shape == (2, 3) and t.ndim == 2 and t.size == 6 and len(t) == 2
    assert t.numpy() is t.data
    assert isinstance(np.ones(3) + Tensor(np.ones(3)), Tensor)
    assert (t > 2).dtype == bool and int((t >= 2).sum()) == 4
    assert t.argmax(1).tolist() == [2, 2]
    assert Tensor(3.0).item() == 3.0
    assert "grad_fn=mul" in repr(Tensor(np.ones(2), requires_grad=True) * 2.0)


# --------------------------------------------------------------------------------------------------- torch parity
def test_composite_gradients_equal_torch():
    torch = pytest.importorskip("torch")
    a, b, idx = rand(4, 5), rand(5, 3), np.array([0, 3, 3, 1])
    ta = torch.tensor(a, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    tout = ((ta @ tb).tanh().softmax(1)[torch.tensor(idx)] * 2 + ta[:, :3].sigmoid()).log_softmax(0)
    (tout * torch.tensor(np.arange(12.0).reshape(4, 3))).sum().backward()

    fa, fb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    out = ((fa @ fb).tanh().softmax(1)[idx] * 2 + fa[:, :3].sigmoid()).log_softmax(0)
    (out * np.arange(12.0).reshape(4, 3)).sum().backward()
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fa.grad, ta.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fb.grad, tb.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_kernel_matches_numpy_on_large_arrays(dtype):
    """Large contiguous arrays take the threaded ReLU kernels: the same values as NumPy's maximum and product,
    bit for bit, with NaN, +-inf and -0.0 in the input and inf/NaN in the gradient."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6, 40, 40)).astype(dtype)
    x.flat[:5] = [np.nan, -0.0, 0.0, np.inf, -np.inf]
    g = rng.standard_normal(x.shape).astype(dtype)
    g.flat[3:9] = [np.inf, np.nan, -np.inf, np.inf, np.nan, -np.inf]
    t = Tensor(x, requires_grad=True)
    y = t.relu()
    y.backward(g)
    want_y, want_g = np.maximum(x, 0), g * (x > 0)
    assert np.array_equal(y.data, want_y, equal_nan=True)
    assert np.array_equal(np.signbit(y.data), np.signbit(want_y))
    assert np.array_equal(t.grad, want_g, equal_nan=True)
    assert x.flags.writeable and np.isnan(x.flat[0])          # the input is not modified


def test_adopted_gradients_stay_separate_and_accumulate():
    """A convolution's and a linear layer's gradients become a leaf's .grad without a copy (they are the ops' own
    new arrays): the caller's arrays stay untouched, a second backward adds, and one tensor used as both input
    and weight gets both contributions."""
    rng = np.random.default_rng(7)
    x = Tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    w = Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    b = Tensor(rng.standard_normal(4), requires_grad=True)
    gy = rng.standard_normal((2, 4, 4, 4))
    gy0 = gy.copy()
    y = fastconv.nn.functional.conv2d(x, w, b)
    y.backward(gy, retain_graph=True)
    first = [t.grad.copy() for t in (x, w, b)]
    assert not any(np.shares_memory(t.grad, gy) for t in (x, w, b))
    y.backward(gy)
    np.testing.assert_array_equal(gy, gy0)
    for t, g in zip((x, w, b), first):
        np.testing.assert_allclose(t.grad, 2 * g, rtol=1e-12)
    np.testing.assert_allclose(first[2], gy.sum(axis=(0, 2, 3)), rtol=1e-12)
    # one tensor as input and weight: the sum of both gradients
    t = Tensor(rng.standard_normal((1, 1, 3, 3)), requires_grad=True)
    g1 = rng.standard_normal((1, 1, 1, 1))
    fastconv.nn.functional.conv2d(t, t).backward(g1)
    np.testing.assert_allclose(t.grad, 2 * t.data * g1[0, 0, 0, 0], rtol=1e-12)
    # linear: the weight gradient is adopted; the input's gradient of a second use adds to it
    a = Tensor(rng.standard_normal((5, 3)), requires_grad=True)
    lw = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    (fastconv.nn.functional.linear(a, lw).sum() + fastconv.nn.functional.linear(a, lw).sum()).backward()
    np.testing.assert_allclose(lw.grad, 2 * np.ones((5, 2)).T @ a.data, rtol=1e-12)
    np.testing.assert_allclose(a.grad, 2 * np.ones((5, 2)) @ lw.data, rtol=1e-12)
