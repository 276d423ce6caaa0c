"""A small autograd tape over NumPy arrays and fastconv's kernels.

Every differentiable operation on :class:`Tensor` objects that need gradients appends one *record* to the tape:
the operation's inputs, a closure computing the gradients of those inputs from the gradient of its output, and a
sequence number taken from one global counter, so records are numbered in execution order.  ``loss.backward()``
collects the records ``loss`` depends on and walks them in decreasing sequence number -- reverse execution
order, which is a topological order of the graph -- handing each record the summed gradient of its output.

* Gradients **accumulate**: a tensor used twice receives both contributions, and leaf tensors add to their
  ``.grad`` across ``backward()`` calls until :meth:`Tensor.zero_grad`.
* Broadcasting is undone: a gradient is summed back to the shape of the operand it belongs to.
* After ``backward()`` a record frees what it saved and its references to its inputs (so intermediate results
  can be released); running backward through it again raises ``RuntimeError`` unless the first call passed
  ``retain_graph=True``.
* Every Tensor has a version counter (``_version``), bumped by :meth:`Tensor.increment_version` -- which every
  write to ``.data`` and every optimiser step calls.  A record notes the versions of the inputs its backward
  reads; if one changed before ``backward()`` (say ``optimizer.step()`` between forward and backward), backward
  raises ``RuntimeError`` instead of differentiating with the new values, as PyTorch does.
* ``with fastconv.no_grad():`` records nothing; :meth:`Tensor.detach` cuts a tensor out of the graph.

New differentiable operations subclass :class:`Function` (``forward``/``backward`` on arrays, as
``torch.autograd.Function``); :func:`gradcheck` compares a backward pass with float64 central differences.
"""
import contextvars
import functools
import inspect
import itertools
import numbers
import weakref

import numpy as np
from scipy import special

from . import _gemm, _kernels, _threads
from ._kernels import _memory
from . import _validate as V

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "gradcheck", "GradcheckError",
           "as_tensor", "record", "relu", "sigmoid", "tanh", "exp", "log", "softmax", "log_softmax"]

_grad_enabled = contextvars.ContextVar("fastconv_grad_enabled", default=True)
_sequence = itertools.count()


def is_grad_enabled():
    """True unless inside a :class:`no_grad` block."""
    return _grad_enabled.get()


class _GradMode:
    mode = True

    def __enter__(self):
        self._token = _grad_enabled.set(self.mode)
        return self

    def __exit__(self, *exc):
        _grad_enabled.reset(self._token)
        return False

    def __call__(self, fn):
        """Use as a decorator: the function runs in this mode; a generator function runs in it each time it is
        resumed (and the caller's mode holds between its ``yield``s), as PyTorch's decorators do."""
        mode = type(self)
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def generator(*args, **kwargs):
                gen = fn(*args, **kwargs)
                try:
                    with mode():
                        value = next(gen)
                    while True:
                        try:
                            sent = yield value
                        except GeneratorExit:
                            with mode():
                                gen.close()
                            raise
                        except BaseException as exc:
                            with mode():
                                value = gen.throw(exc)
                        else:
                            with mode():
                                value = gen.send(sent)
                except StopIteration as stop:
                    return stop.value
            return generator

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with mode():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Context manager (and decorator) in which operations are not recorded on the tape."""
    mode = False


class enable_grad(_GradMode):
    """Context manager (and decorator) re-enabling recording inside a :class:`no_grad` block."""
    mode = True


# --------------------------------------------------------------------------------------------------- the tape
class _Record:
    """One operation on the tape: inputs, which of them need gradients, the backward closure, and the versions
    of the tensors the closure reads."""

    __slots__ = ("index", "name", "inputs", "needs", "backward", "output", "saved", "fresh", "__weakref__")

    def __init__(self, name, inputs, needs, backward, saved, fresh=False):
        self.index = next(_sequence)
        self.fresh = fresh
        self.name = name
        self.inputs = inputs
        self.needs = needs
        self.backward = backward
        self.output = None
        self.saved = [(t, t._versions[0]) for t in saved if t is not None]

    def check_versions(self):
        """RuntimeError if a tensor the backward closure reads was modified in place since it was recorded."""
        for t, version in self.saved:
            if t._versions[0] != version:
                raise RuntimeError(
                    "backward(): a tensor that %s needs for its gradient (%s of shape %s) was modified in place "
                    "after the operation recorded it: it is at version %d, the operation saw version %d (e.g. "
                    "optimizer.step() or a write to .data between forward and backward); call backward() first, "
                    "or run the forward pass again" % (self.name, type(t).__name__, t.shape, t._version, version))

    @property
    def freed(self):
        return self.backward is None

    def __repr__(self):
        return "<%s #%d>" % (self.name, self.index)


def record(name, data, inputs, backward, saved=None, fresh=False):
    """Wrap ``data`` in a Tensor and, when any input needs a gradient, put the operation on the tape (the one
    way an operation enters the tape: Tensor methods, :class:`Function` and :mod:`fastconv.nn.functional` use it).

    ``inputs`` is a tuple of Tensors or None (constants); ``backward(grad, needs)`` returns one gradient (or None)
    per input, ``needs[i]`` telling whether input ``i`` wants one.  ``saved`` lists the Tensors whose data
    ``backward`` reads (default: every input); backward raises if one of them is modified in place before it
    runs (see the version counter above).  Operations whose gradient does not depend on an input's values (sums,
    reshapes, additions, the bias of a convolution) leave that input out, so changing it in between is fine.
    ``fresh=True`` promises that every gradient ``backward`` returns is an array it allocated for that call, held
    nowhere else and returned once: a leaf's first gradient then becomes its ``.grad`` without a copy.
    """
    needs = tuple(t is not None and t.requires_grad for t in inputs)
    out = Tensor._wrap(data)
    if any(needs) and _grad_enabled.get():
        rec = _Record(name, inputs, needs, backward, inputs if saved is None else saved, fresh)
        rec.output = weakref.ref(out)
        out._record = rec
        out._requires_grad = True
    return out


def _sum_to(g, shape):
    """Undo broadcasting: sum ``g`` over the axes that were broadcast to reach its shape from ``shape``."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and g.shape[lead + i] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _reachable(root):
    """Records ``root`` depends on, in decreasing sequence number (reverse execution order)."""
    seen = {}
    stack = [root]
    while stack:
        rec = stack.pop()
        if id(rec) in seen:
            continue
        seen[id(rec)] = rec
        for t, need in zip(rec.inputs, rec.needs):
            if need and t._record is not None:
                stack.append(t._record)
    return sorted(seen.values(), key=lambda r: r.index, reverse=True)


def _backward(root, grad, retain_graph):
    records = _reachable(root._record)
    freed = [r for r in records if r.freed]
    if freed:
        raise RuntimeError(
            "backward(): trying to backward through the graph a second time (operation %s was already "
            "differentiated and its saved arrays freed); pass retain_graph=True to the first backward() call "
            "if you need to call it twice" % freed[0].name)
    grads = {id(root._record): grad}
    for rec in records:
        g = grads.pop(id(rec), None)
        if g is None:
            continue
        out = rec.output()
        if out is not None and out._retains_grad:
            out._accumulate(g)
        rec.check_versions()
        in_grads = rec.backward(g, rec.needs)
        if not isinstance(in_grads, (tuple, list)) or len(in_grads) != len(rec.inputs):
            raise RuntimeError("backward of %s returned %r, expected %d gradients"
                               % (rec.name, type(in_grads).__name__, len(rec.inputs)))
        for t, need, gi in zip(rec.inputs, rec.needs, in_grads):
            if not need or gi is None:
                continue
            gi = np.asarray(gi)
            if gi.shape != t.shape:
                gi = _sum_to(gi, t.shape)
            if gi.dtype != t.dtype:
                gi = gi.astype(t.dtype)
            if t._record is None:
                if rec.fresh and t.grad is None and gi is not g and not t._retains_grad:
                    t.grad = gi         # the op's own new array (see record): adopted, not copied
                else:
                    t._accumulate(gi)
            else:
                key = id(t._record)
                prev = grads.get(key)
                grads[key] = gi if prev is None else prev + gi
        if not retain_graph:   # free the saved arrays and the inputs, as soon as the record is done
            rec.backward, rec.inputs, rec.needs, rec.saved = None, (), (), ()


# --------------------------------------------------------------------------------------------------- Tensor
def _relu(x):
    """np.maximum(x, 0), on fastconv's threads for large contiguous float arrays (one pass, no temporaries)."""
    if x.size < _threads.GRAIN or x.dtype.char not in "fd" or not x.dtype.isnative or not x.flags.c_contiguous:
        return np.maximum(x, 0)
    out = np.empty_like(x)
    _kernels.module("_direct").relu(x.reshape(-1), out.reshape(-1), _threads.threads_for(x.size))
    return out


def _relu_grad(g, x):
    """g * (x > 0), in one threaded pass where it can (same dtype, contiguous, large)."""
    if (x.size < _threads.GRAIN or x.dtype.char not in "fd" or not x.dtype.isnative or g.dtype != x.dtype
            or g.shape != x.shape
            or not (x.flags.c_contiguous and g.flags.c_contiguous)):
        return g * (x > 0)
    out = np.empty_like(x)
    _kernels.module("_direct").relu_grad(g.reshape(-1), x.reshape(-1), out.reshape(-1), _threads.threads_for(x.size))
    return out


def _check_float(arr, what):
    if arr.dtype.kind != "f":
        raise TypeError("%s: only floating point tensors can require gradients, got dtype %s" % (what, arr.dtype))


def _operand(x, like):
    """A Tensor for ``x``; Python scalars take the dtype of ``like`` (so float32 stays float32)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number) and not isinstance(x, bool):
        return Tensor._wrap(np.asarray(x, dtype=like.dtype if like.dtype.kind == "f" else None))
    return as_tensor(x)


def as_tensor(x):
    """``x`` itself if it is a Tensor, else a constant Tensor viewing ``np.asarray(x)`` (no copy)."""
    if isinstance(x, Tensor):
        return x
    arr = np.asarray(V.refuse_lazy(x, None, "input"))
    if arr.dtype.kind not in "fiub":
        raise TypeError("expected a Tensor or a real numeric array, got %s of dtype %s"
                        % (type(x).__name__, arr.dtype))
    return Tensor._wrap(arr)


def _dims(dim, ndim):
    """The reduced axes: all of them for ``None`` and, as in PyTorch, for an empty tuple or list."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, numbers.Integral) else tuple(dim)
    if not dims:
        return tuple(range(ndim))
    return tuple(sorted(int(d) % ndim if ndim else 0 for d in dims))


def _expand_back(g, shape, dims, keepdim):
    """Broadcast the gradient of a reduction over ``dims`` back to the input ``shape``."""
    if not keepdim:
        g = np.expand_dims(g, dims)
    return np.broadcast_to(g, shape)


class Tensor:
    """A NumPy array with an optional gradient, recorded on the autograd tape.

    ``Tensor(data, requires_grad=False)`` copies ``data`` (``np.array(data)``, NumPy's dtype rules).  ``.data``
    is the array, ``.grad`` the accumulated gradient (None until a backward pass reaches it).  Operators
    (``+ - * / @ ** -x``, indexing) and the methods below record on the tape; method names and arguments follow
    PyTorch (``dim``, ``keepdim``; ``transpose(d0, d1)`` swaps two dimensions, ``permute`` reorders all).
    """

    __array_ufunc__ = None  # ndarray (op) Tensor defers to Tensor's reflected operators

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        arr = np.array(V.refuse_lazy(data, "Tensor", "data"))
        if arr.dtype.kind not in "fiub":
            raise TypeError("Tensor(): argument 'data' must be a real numeric array, got dtype %s" % arr.dtype)
        self._init(arr)
        self.requires_grad = requires_grad

    @classmethod
    def _wrap(cls, arr):
        t = cls.__new__(cls)
        t._init(np.asarray(arr))
        return t

    def _init(self, arr):
        self._data = arr
        self._versions = [0]       # shared with detach()ed views of the same data
        self.grad = None
        self._record = None
        self._requires_grad = False
        self._retains_grad = False

    # ------------------------------------------------------------------ data and its version
    @property
    def data(self):
        """The array.  Assigning to it (``t.data = a``, ``t.data -= a``) counts as an in-place change: it bumps
        the version counter (:meth:`increment_version`)."""
        return self._data

    @data.setter
    def data(self, value):
        self._data = value
        self.increment_version()

    @property
    def _version(self):
        """How many times this tensor's data was changed in place (PyTorch's ``Tensor._version``)."""
        return self._versions[0]

    def increment_version(self):
        """Record that the data was changed in place (``torch.autograd.graph.increment_version``).

        The one place the version counter moves: the ``.data`` setter and every optimiser step call it.  Code that
        writes into ``t.data``'s array directly (``t.data[...] = ...``, ``np.add(t.data, u, out=t.data)``) must
        call it too, so that a backward pass through an operation that saw the old values raises instead of
        silently using the new ones.
        """
        self._versions[0] += 1

    # ------------------------------------------------------------------ gradient state
    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        value = V.flag(value, None, "requires_grad")
        if self._record is not None and not value:
            raise RuntimeError("requires_grad can only be changed on leaf tensors; use detach()")
        if value:
            _check_float(self.data, "requires_grad")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad=True):
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self):
        """True for tensors not produced by a recorded operation (their ``.grad`` is kept)."""
        return self._record is None

    @property
    def grad_fn(self):
        """The name of the recorded operation that produced this tensor, or None for a leaf."""
        return None if self._record is None else self._record.name

    def retain_grad(self):
        """Keep ``.grad`` for this non-leaf tensor during backward."""
        self._retains_grad = True
        return self

    def _accumulate(self, g):
        if self.grad is None:
            self.grad = np.array(g, dtype=self.data.dtype)
        else:
            self.grad += g

    def zero_grad(self):
        """Forget the accumulated gradient."""
        self.grad = None

    def detach(self):
        """A new leaf Tensor sharing this one's data (and its version counter), outside the graph."""
        t = Tensor._wrap(self.data)
        t._versions = self._versions
        return t

    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into the ``.grad`` of every leaf that requires grad.

        ``grad`` is the gradient of some scalar with respect to this tensor; it may be omitted for a single-element
        tensor (then 1).  Without ``retain_graph=True`` the records used are freed.
        """
        if not self._requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad and was not produced by an "
                               "operation on tensors that do")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError("backward(): grad can be omitted only for single-element outputs; this "
                                   "tensor has shape %s" % (self.shape,))
            grad = np.ones(self.shape, self.dtype)
        else:
            grad = grad.data if isinstance(grad, Tensor) else np.asarray(grad)
            if grad.shape != self.shape:
                raise ValueError("backward(): argument 'grad' must have shape %s, got %s"
                                 % (self.shape, grad.shape))
            grad = grad.astype(self.dtype, copy=False)
        if self._record is None:
            self._accumulate(grad)
            return
        with _memory.caching():        # gradients of a training step reuse the last step's blocks
            _backward(self, grad, retain_graph)

    # ------------------------------------------------------------------ array-like
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    def __len__(self):
        return len(self.data)

    def numpy(self):
        """The data array (shared, not copied)."""
        return self.data

    def item(self):
        return self.data.item()

    def argmax(self, dim=None):
        """Indices of the maxima (an ndarray; not differentiable)."""
        return self.data.argmax(axis=dim)

    def _compare(self, other, op):
        return op(self.data, other.data if isinstance(other, Tensor) else other)

    def __lt__(self, other):
        """Elementwise comparisons give boolean ndarrays (not differentiable)."""
        return self._compare(other, np.less)

    def __le__(self, other):
        return self._compare(other, np.less_equal)

    def __gt__(self, other):
        return self._compare(other, np.greater)

    def __ge__(self, other):
        return self._compare(other, np.greater_equal)

    def __repr__(self):
        extra = ", grad_fn=%s" % self.grad_fn if self._record is not None else (
            ", requires_grad=True" if self._requires_grad else "")
        body = np.array2string(self.data, prefix="Tensor(", separator=", ")
        return "Tensor(%s, dtype=%s%s)" % (body, self.dtype, extra)

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other):
        other = _operand(other, self)
        return record("add", self.data + other.data, (self, other), lambda g, n: (g, g), saved=())

    def __radd__(self, other):
        return _operand(other, self).__add__(self)

    def __sub__(self, other):
        other = _operand(other, self)
        return record("sub", self.data - other.data, (self, other), lambda g, n: (g, -g), saved=())

    def __rsub__(self, other):
        return _operand(other, self).__sub__(self)

    def __mul__(self, other):
        other = _operand(other, self)
        a, b = self.data, other.data
        return record("mul", a * b, (self, other),
                       lambda g, n: (g * b if n[0] else None, g * a if n[1] else None))

    def __rmul__(self, other):
        return _operand(other, self).__mul__(self)

    def __truediv__(self, other):
        other = _operand(other, self)
        a, b = self.data, other.data
        return record("div", a / b, (self, other),
                       lambda g, n: (g / b if n[0] else None, -g * a / (b * b) if n[1] else None))

    def __rtruediv__(self, other):
        return _operand(other, self).__truediv__(self)

    def __neg__(self):
        return record("neg", -self.data, (self,), lambda g, n: (-g,), saved=())

    def __pow__(self, other):
        other = _operand(other, self)
        a, b = self.data, other.data
        y = a ** b

        def backward(g, n):
            # PyTorch's conventions at the edges: no gradient to the base where the exponent is 0, none to the
            # exponent where the base is 0 and the exponent >= 0 (the limits of the formulas, not 0 * inf)
            with np.errstate(divide="ignore", invalid="ignore"):
                ga = np.where(b == 0, 0, g * b * a ** (b - 1)) if n[0] else None
                gb = np.where((a == 0) & (b >= 0), 0, g * y * np.log(a)) if n[1] else None
            return ga, gb
        return record("pow", y, (self, other), backward)

    def __rpow__(self, other):
        return _operand(other, self).__pow__(self)

    def __matmul__(self, other):
        other = _operand(other, self)
        a, b = self.data, other.data

        def backward(g, n):
            a2 = a[None, :] if a.ndim == 1 else a
            b2 = b[:, None] if b.ndim == 1 else b
            g2 = np.expand_dims(g, -1) if b.ndim == 1 else g
            g2 = np.expand_dims(g2, -2) if a.ndim == 1 else g2
            ga = gb = None
            if n[0]:
                ga = _gemm.matmul(g2, np.swapaxes(b2, -1, -2))
                ga = ga[..., 0, :] if a.ndim == 1 else ga
            if n[1]:
                gb = _gemm.matmul(np.swapaxes(a2, -1, -2), g2)
                gb = gb[..., 0] if b.ndim == 1 else gb
            return ga, gb
        return record("matmul", _gemm.matmul(a, b), (self, other), backward)

    def __rmatmul__(self, other):
        return _operand(other, self).__matmul__(self)

    # ------------------------------------------------------------------ reductions and shapes
    def sum(self, dim=None, keepdim=False):
        dims = _dims(dim, self.ndim)
        shape = self.shape
        return record("sum", self.data.sum(axis=dims, keepdims=keepdim), (self,),
                       lambda g, n: (_expand_back(g, shape, dims, keepdim),), saved=())

    def mean(self, dim=None, keepdim=False):
        dims = _dims(dim, self.ndim)
        shape = self.shape
        count = int(np.prod([shape[d] for d in dims]))

        def backward(g, n):
            with np.errstate(divide="ignore", invalid="ignore"):
                return (_expand_back(g / count, shape, dims, keepdim),)
        with np.errstate(divide="ignore", invalid="ignore"):     # the mean of nothing is NaN, as in PyTorch
            value = self.data.sum(axis=dims, keepdims=keepdim) / count
        return record("mean", value, (self,), backward, saved=())

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        old = self.shape
        return record("reshape", self.data.reshape(shape), (self,), lambda g, n: (g.reshape(old),), saved=())

    def flatten(self, start_dim=0, end_dim=-1):
        nd = max(self.ndim, 1)
        s, e = start_dim % nd, end_dim % nd
        # the merged size written out (not -1), so that an empty batch flattens too
        return self.reshape(self.shape[:s] + (int(np.prod(self.shape[s:e + 1])),) + self.shape[e + 1:])

    def permute(self, *dims):
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        inv = tuple(np.argsort(dims))
        return record("permute", self.data.transpose(dims), (self,), lambda g, n: (g.transpose(inv),),
                      saved=())

    def transpose(self, dim0, dim1):
        """Swap two dimensions (PyTorch's ``transpose``)."""
        dims = list(range(self.ndim))
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return self.permute(dims)

    @property
    def T(self):
        return self.permute(tuple(range(self.ndim))[::-1])

    def __getitem__(self, index):
        parts = tuple(p.data if isinstance(p, Tensor) else p
                      for p in (index if isinstance(index, tuple) else (index,)))
        index = parts if isinstance(index, tuple) else parts[0]
        shape, dtype = self.shape, self.dtype
        basic = all(p is None or p is Ellipsis or isinstance(p, (slice, numbers.Integral)) for p in parts)

        def backward(g, n):
            full = np.zeros(shape, dtype)
            if basic:
                full[index] = g
            else:
                np.add.at(full, index, g)   # repeated indices add up
            return (full,)
        return record("getitem", self.data[index], (self,), backward, saved=())

    def astype(self, dtype):
        """A copy in another float dtype (the gradient is cast back)."""
        src = self.dtype
        return record("astype", self.data.astype(dtype), (self,), lambda g, n: (g.astype(src),), saved=())

    def float(self):
        return self.astype(np.float32)

    def double(self):
        return self.astype(np.float64)

    # ------------------------------------------------------------------ elementwise functions
    def exp(self):
        y = np.exp(self.data)
        return record("exp", y, (self,), lambda g, n: (g * y,))

    def log(self):
        x = self.data
        return record("log", np.log(x), (self,), lambda g, n: (g / x,))

    def relu(self):
        x = self.data
        return record("relu", _relu(x), (self,), lambda g, n: (_relu_grad(g, x),))

    def sigmoid(self):
        y = special.expit(self.data)
        return record("sigmoid", y, (self,), lambda g, n: (g * y * (1 - y),))

    def tanh(self):
        y = np.tanh(self.data)
        return record("tanh", y, (self,), lambda g, n: (g * (1 - y * y),))

    def softmax(self, dim=-1):
        x = self.data
        y = np.exp(x - x.max(axis=dim, keepdims=True))
        y /= y.sum(axis=dim, keepdims=True)
        return record("softmax", y, (self,), lambda g, n: (y * (g - (g * y).sum(axis=dim, keepdims=True)),))

    def log_softmax(self, dim=-1):
        y = log_softmax_array(self.data, dim)
        return record("log_softmax", y, (self,),
                       lambda g, n: (g - np.exp(y) * g.sum(axis=dim, keepdims=True),))


# --------------------------------------------------------------------------------------------------- functions
def log_softmax_array(x, dim):
    """log(softmax(x)) along ``dim`` of an array: the shifted form, which cannot overflow."""
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))


def relu(x):
    return as_tensor(x).relu()


def sigmoid(x):
    return as_tensor(x).sigmoid()


def tanh(x):
    return as_tensor(x).tanh()


def exp(x):
    return as_tensor(x).exp()


def log(x):
    return as_tensor(x).log()


def softmax(x, dim=-1):
    return as_tensor(x).softmax(dim)


def log_softmax(x, dim=-1):
    return as_tensor(x).log_softmax(dim)


class _Context:
    """What :class:`Function` hands its ``forward`` and ``backward``: saved arrays and which inputs need grads."""

    def __init__(self, needs):
        self.needs_input_grad = needs
        self.saved_arrays = ()

    def save_for_backward(self, *arrays):
        self.saved_arrays = arrays


class Function:
    """A differentiable operation defined on arrays, like ``torch.autograd.Function``.

    Subclass with two static methods::

        class Square(Function):
            @staticmethod
            def forward(ctx, x):            # Tensors arrive as their arrays; other arguments as given
                ctx.save_for_backward(x)
                return x * x
            @staticmethod
            def backward(ctx, grad):        # one gradient (or None) per forward argument
                (x,) = ctx.saved_arrays
                return 2 * x * grad

        y = Square.apply(t)
    """

    @staticmethod
    def forward(ctx, *args):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad_output):  # pragma: no cover - abstract
        raise NotImplementedError

    @classmethod
    def apply(cls, *args):
        tensors = tuple(a if isinstance(a, Tensor) else None for a in args)
        enabled = _grad_enabled.get()
        ctx = _Context(tuple(enabled and t is not None and t.requires_grad for t in tensors))
        out = cls.forward(ctx, *[a.data if isinstance(a, Tensor) else a for a in args])

        def backward(g, needs):
            grads = cls.backward(ctx, g)
            return grads if isinstance(grads, (tuple, list)) else (grads,)
        return record(cls.__name__, out, tensors, backward)


# --------------------------------------------------------------------------------------------------- gradcheck
class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck` when analytic and numerical gradients disagree."""


def _as_outputs(result):
    outs = result if isinstance(result, (tuple, list)) else (result,)
    return [o for o in outs if isinstance(o, Tensor) and o.dtype.kind == "f"]


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, *, raise_exception=True, seed=0):
    """Compare the tape's gradients of ``fn(*inputs)`` with float64 central differences.

    ``inputs`` is a Tensor/array or a sequence of them.  Float arrays, and float Tensors with
    ``requires_grad=True``, are checked (as float64 copies); other float Tensors are float64 constants; anything
    else (integer targets, shapes, flags) is passed to ``fn`` unchanged.  ``fn`` returns a Tensor or a
    tuple (non-Tensor items such as indices are ignored).  With a fixed random projection ``v`` of the outputs,
    the backward pass of ``sum(v * fn(x))`` must match ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`` for every
    element ``i`` of every checked input within ``atol + rtol * |numerical|``.

    Returns True; on a mismatch raises :class:`GradcheckError` (or returns False with ``raise_exception=False``).
    """
    single = isinstance(inputs, (Tensor, np.ndarray))
    inputs = [inputs] if single else list(inputs)
    leaves = []
    for x in inputs:
        if isinstance(x, Tensor) and x.dtype.kind == "f":
            t = Tensor(x.data.astype(np.float64), requires_grad=x.requires_grad)
        elif isinstance(x, np.ndarray) and x.dtype.kind == "f":
            t = Tensor(x.astype(np.float64), requires_grad=True)
        else:
            t = x  # integer arrays (targets, indices) and other arguments pass through unchanged
        leaves.append(t)
    checked = [t for t in leaves if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck(): argument 'inputs' has nothing to check: pass arrays or Tensors with "
                         "requires_grad=True")
    rng = np.random.default_rng(seed)
    with enable_grad():
        outs = _as_outputs(fn(*leaves))
    if not outs:
        raise ValueError("gradcheck(): 'fn' must return a floating point Tensor or a tuple containing one")
    vs = [rng.standard_normal(o.shape) for o in outs]

    def objective():
        with no_grad():
            return sum(float((v * o.data).sum()) for v, o in zip(vs, _as_outputs(fn(*leaves))))

    loss = None
    for v, o in zip(vs, outs):
        if o.requires_grad:
            term = (o * Tensor._wrap(v)).sum()
            loss = term if loss is None else loss + term
    for t in checked:
        t.grad = None
    if loss is not None:
        loss.backward()
    for k, t in enumerate(checked):
        analytic = np.zeros(t.shape) if t.grad is None else t.grad
        numeric = np.empty(t.shape)
        flat, nflat = t.data.reshape(-1), numeric.reshape(-1)
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + eps
            fp = objective()
            flat[i] = orig - eps
            fm = objective()
            flat[i] = orig
            nflat[i] = (fp - fm) / (2 * eps)
        bad = np.abs(analytic - numeric) > atol + rtol * np.abs(numeric)
        if bad.any():
            if not raise_exception:
                return False
            i = np.unravel_index(np.argmax(np.abs(analytic - numeric) * bad), t.shape)
            raise GradcheckError(
                "gradcheck(): gradient of input %d (shape %s) differs at %d of %d elements; worst at index %s: "
                "analytic %.8g, numerical %.8g" % (k, t.shape, int(bad.sum()), bad.size, tuple(int(j) for j in i),
                                                   analytic[i], numeric[i]))
    return True
