"""The caching NumPy memory handler of training steps (fastconv._kernels._memory, fastconv.nn.empty_cache)."""
import threading

import numpy as np
import pytest

import fastconv as fc
from fastconv import nn
from fastconv._kernels import _memory

try:
    from numpy._core.multiarray import get_handler_name
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import get_handler_name

BIG = _memory.MIN_BYTES * 2 // 8          # float64 elements of a block the cache keeps


@pytest.fixture(autouse=True)
def fresh_cache():
    limit = _memory.stats()[1]
    nn.empty_cache()
    yield
    _memory.set_limit(limit)
    nn.empty_cache()


def test_freed_blocks_are_reused_inside_the_block_only():
    with _memory.caching():
        a = np.ones(BIG)
        assert get_handler_name(a) == "fastconv_caching"
        address = a.ctypes.data
        del a
        assert _memory.stats()[0] == BIG * 8
        hits = _memory.stats()[2]
        b = np.empty(BIG)
        assert b.ctypes.data == address and _memory.stats()[2] == hits + 1
        small = np.empty(10)
        assert get_handler_name(small) == "fastconv_caching"
    outside = np.empty(BIG)
    assert get_handler_name(outside) != "fastconv_caching"
    del b
    c = np.empty(BIG)            # outside the block: NumPy's allocator, the cached block stays
    assert c.ctypes.data != address and _memory.stats()[0] == BIG * 8


def test_a_cached_array_freed_elsewhere_returns_its_block():
    with _memory.caching():
        a = np.ones(BIG)
    assert _memory.stats()[0] == 0
    del a
    assert _memory.stats()[0] == BIG * 8


def test_zeros_from_a_reused_block_are_zero():
    with _memory.caching():
        a = np.full(BIG, 7.0)
        del a
        z = np.zeros(BIG)
    assert not z.any()


def test_limit_and_empty_cache():
    _memory.set_limit(BIG * 8 + 1)
    with _memory.caching():
        arrays = [np.ones(BIG) for _ in range(3)]
    del arrays
    assert _memory.stats()[0] == BIG * 8          # one block fits the limit, the others went back to NumPy
    nn.empty_cache()
    assert _memory.stats()[0] == 0
    with pytest.raises(ValueError, match="limit"):
        nn.set_cache_limit(-1)
    with pytest.raises(TypeError, match="limit"):
        nn.set_cache_limit("1 GB")


def test_threads_allocate_and_free_concurrently():
    errors = []

    def work(k):
        with _memory.caching():
            for i in range(200):
                a = np.full(BIG + (i % 3) * 512, float(k))
                if not (a == k).all():
                    errors.append(k)
                del a
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and _memory.stats()[2] > 0


def _train(steps, cache_limit):
    nn.set_cache_limit(cache_limit)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    fc_model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 10))
    fc_model.load_state_dict({k: rng.standard_normal(v.shape).astype(np.float32) * 0.1
                              for k, v in fc_model.state_dict().items()})
    opt = nn.SGD(fc_model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(fc_model(fc.Tensor(x)), y).backward()
        opt.step()
    return {k: v.copy() for k, v in fc_model.state_dict().items()}


def test_training_steps_reuse_blocks_and_give_the_same_weights():
    limit = _memory.stats()[1]
    hits = _memory.stats()[2]
    cached = _train(4, limit)
    assert _memory.stats()[2] > hits + 4               # later steps reuse the first step's blocks
    plain = _train(4, 0)
    assert all(np.array_equal(cached[k], plain[k]) for k in cached)


def test_eval_and_no_grad_forward_passes_do_not_cache():
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1))
    x = fc.Tensor(np.ones((16, 1, 64, 64), np.float32))
    model.eval()
    assert get_handler_name(model(x).data) != "fastconv_caching"
    model.train()
    with fc.no_grad():
        assert get_handler_name(model(x).data) != "fastconv_caching"
    assert get_handler_name(model(x).data) == "fastconv_caching"
