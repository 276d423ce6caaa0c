"""The ``lanes`` algorithm (images of the batch as vector lanes): against the naive reference and PyTorch on
batches around the lane-group size, at every SIMD level, and its packing of padding, stride holes and the images
past the batch.

The generic suites (test_conv, test_grad, test_conv_transpose, test_nonfinite, test_determinism, ...) run it like
every registered algorithm; these tests cover what is particular to it: batches that are not a multiple of the
16 (float32) or 8 (float64) lanes of a group, the register blocks' tails (channels past a block of 4 or 6, columns
past a block of 6 or 4, taps past a block of 5), the rows of padding and holes its input gradient skips and the
column taps of zeros its blocks leave out, and its claim that a lane group -- and so every sum -- is the same at
every level.
"""
import glob

import numpy as np
import pytest

import fastconv as fc
import reference as ref
from fastconv import _kernels, _measure
from fastconv._algos import lanes as LA

CONV = {1: fc.conv1d, 2: fc.conv2d, 3: fc.conv3d}
GRAD_IN = {1: fc.grad.conv1d_input, 2: fc.grad.conv2d_input, 3: fc.grad.conv3d_input}
GRAD_W = {1: fc.grad.conv1d_weight, 2: fc.grad.conv2d_weight, 3: fc.grad.conv3d_weight}
TOL = {np.float32: 2e-5, np.float64: 1e-12}

# (N, C, K, spatial, kernel, stride, padding, dilation, groups)
GRID = [
    (64, 6, 16, (14, 14), (5, 5), 1, 0, 1, 1),              # LeNet's second layer
    (33, 1, 6, (28, 27), (5, 5), 1, 2, 1, 1),               # LeNet's first, a batch one past two lane groups
    (15, 3, 5, (9, 11), (3, 2), 2, 1, 1, 1),                # fewer images than lanes, stride
    (17, 4, 6, (10, 7), (3, 3), (2, 1), (1, 2), (2, 1), 2),  # groups, mixed stride and dilation
    (8, 2, 3, (5, 5), (1, 1), 1, 0, 1, 1),                  # 1x1, one float64 group
    (20, 2, 4, (8,), (3,), 3, 2, 2, 1),                     # 1-D, stride 3 (holes in the input gradient)
    (18, 2, 4, (5, 6, 7), (2, 3, 3), (1, 2, 1), 1, (2, 1, 1), 1),
    (1, 5, 9, (7, 13), (2, 7), 1, (0, 3), 1, 1),            # one image, a kernel wider than a tap block
]


def _case(case, dtype, seed=0):
    N, C, K, sp, ks, stride, padding, dilation, g = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C) + sp).astype(dtype)
    w = rng.standard_normal((K, C // g) + ks).astype(dtype)
    b = rng.standard_normal(K).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=g)
    y = ref.conv_nd(x, w, b, **kw)
    gy = rng.standard_normal(y.shape).astype(dtype)
    return x, w, b, gy, kw, y


def _three(x, w, b, gy, kw, algorithm="lanes"):
    nd = x.ndim - 2
    return (CONV[nd](x, w, b, **kw, algorithm=algorithm), GRAD_IN[nd](x.shape, w, gy, **kw, algorithm=algorithm),
            GRAD_W[nd](x, w.shape, gy, **kw, algorithm=algorithm))


def _close(got, want, dtype):
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GRID, ids=[str(c[:5]) for c in GRID])
def test_against_the_reference(case, dtype):
    x, w, b, gy, kw, y = _case(case, dtype)
    got = _three(x, w, b, gy, kw)
    want = (y, ref.conv_grad_input_nd(x.shape, w, gy, **kw), ref.conv_grad_weight_nd(x, gy, w.shape, **kw))
    for g, r in zip(got, want):
        assert g.dtype == dtype and g.shape == r.shape
        _close(g, r, dtype)


@pytest.mark.parametrize("case", GRID[:4], ids=[str(c[:5]) for c in GRID[:4]])
def test_against_torch(case):
    torch = pytest.importorskip("torch")
    x, w, b, gy, kw, _ = _case(case, np.float64, seed=3)
    xt = torch.from_numpy(x).requires_grad_(True)
    wt = torch.from_numpy(w).requires_grad_(True)
    yt = torch.nn.functional.conv2d(xt, wt, torch.from_numpy(b), **kw)
    yt.backward(torch.from_numpy(gy))
    got = _three(x, w, b, gy, kw)
    for g, r in zip(got, (yt.detach().numpy(), xt.grad.numpy(), wt.grad.numpy())):
        _close(g, r, np.float64)


@pytest.mark.parametrize("level", _kernels.cpu_levels())
@pytest.mark.parametrize("shape,pad,dil,ext", [
    ((3, 4, 5), (1, -1, 2), (2, 1, 3), (7, 4, 17)),        # dilated columns: element by element
    ((2, 3, 37), (0, 1, 2), (1, 2, 1), (2, 8, 42)),        # rows of two register tiles and a tail
    ((1, 2, 40), (0, 0, -3), (1, 1, 1), (1, 2, 35)),       # negative padding: columns start inside the row
    ((1, 2, 16), (0, 0, 0), (1, 1, 1), (1, 2, 16)),        # exactly one tile
    ((2, 7, 14), (0, 0, 0), (1, 1, 1), (2, 7, 14)),        # whole unpadded rows: one run per plane, last tile
    ((2, 7, 10), (1, -2, 0), (1, 1, 1), (4, 8, 10)),       # overlapping; runs of rows between padding rows
    ((2, 5, 7), (0, 1, 3), (1, 1, 1), (2, 8, 13)),         # runs of padded rows: tiles straddle rows
    ((1, 5, 100), (0, 0, 1), (1, 1, 1), (1, 6, 102)),      # ... long ones too
    ((1, 3, 300), (0, 1, 2), (1, 1, 1), (1, 5, 305)),
    ((1, 1, 5), (0, 0, 0), (1, 1, 1), (1, 1, 5)),          # a run shorter than a tile: zero-padded tile
    ((2, 1, 3), (0, 1, 1), (1, 1, 1), (2, 3, 6)),          # ... of padded rows
])
@pytest.mark.parametrize("all_rows", [True, False])
def test_pack_resolves_padding_holes_and_missing_images(level, shape, pad, dil, ext, all_rows):
    """pack(): every element written -- input values where the dilated, padded input has them, zeros elsewhere,
    including the lanes past the batch (the buffer starts as garbage); rows without column dilation go through
    register tiles, full or partial lane groups, at every level.  With ``all_rows`` False (the input gradient)
    the rows of padding and holes along D and H are left as they were, and only they."""
    rng = np.random.default_rng(0)
    for dtype, L in ((np.float32, 16), (np.float64, 8)):
        x = rng.standard_normal((L + 3, 2) + shape).astype(dtype)
        xp = np.full((2, 2) + ext + (L,), np.nan, dtype)
        with _kernels.use_level(level):
            _kernels.module("_lanes").pack(x, xp, *pad, *dil, 2, all_rows)
        want = np.zeros((2 * L, 2) + ext, dtype)
        for zd, zh, zw in np.ndindex(*ext):
            src = [(z - p) // d if z - p >= 0 and (z - p) % d == 0 and (z - p) // d < n else None
                   for z, p, d, n in zip((zd, zh, zw), pad, dil, x.shape[2:])]
            if None not in src:
                want[:x.shape[0], :, zd, zh, zw] = x[:, :, src[0], src[1], src[2]]
            elif not all_rows and None in src[:2]:
                want[:, :, zd, zh, zw] = np.nan
        got = xp.transpose(0, 5, 1, 2, 3, 4).reshape((2 * L, 2) + ext)
        assert np.array_equal(got, want, equal_nan=True)
        assert all_rows or not np.isnan(want).all()


@pytest.mark.parametrize("level", [lv for lv in _kernels.cpu_levels() if lv != _kernels.level()])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_level_gives_the_same_bits(level, dtype):
    """A lane group is 64 bytes at every level, so the levels with FMA sum every output and weight in the same
    order: bitwise identical results; the baseline (no FMA) within rounding."""
    for case in (GRID[1], GRID[3], GRID[6]):
        x, w, b, gy, kw, y = _case(case, dtype)
        default = _three(x, w, b, gy, kw)
        with _kernels.use_level(level):
            got = _three(x, w, b, gy, kw)
            fma = _kernels.level() != "baseline"
        for g, d in zip(got, default):
            if fma and _kernels.level() != "baseline":
                assert np.array_equal(g, d), (level, case)
            else:
                _close(g, d, dtype)


def test_input_gradient_skips_rows_of_padding_and_holes():
    """The input gradient never multiplies a padding row or a stride-hole row (the forward pass does multiply its
    padding, as PyTorch): an inf weight gives inf next to the holes along H, where multiplying them would give NaN
    (along W the block spans the holes: that is why the entry declares ``"spreads"``)."""
    x_shape = (16, 1, 7, 1)
    w = np.array([[[[1.0], [np.inf], [1.0]]]])
    gy = np.ones((16, 1, 4, 1))
    got = fc.grad.conv2d_input(x_shape, w, gy, stride=(2, 1), padding=(1, 0), algorithm="lanes")
    want = fc.grad.conv2d_input(x_shape, w, gy, stride=(2, 1), padding=(1, 0), algorithm="direct")
    assert np.isinf(want).any() and not np.isnan(want).any()
    assert np.array_equal(got, want)
    assert LA.ALGORITHM.nonfinite == "spreads"


def test_input_gradient_ignores_what_its_packed_buffer_held():
    """The input gradient's packed copy leaves its rows of padding and holes unwritten (the kernel skips them):
    a reused buffer full of NaN changes nothing."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((16, 6, 5, 5))
    gy = rng.standard_normal((32, 16, 7, 7))
    x_shape = (32, 6, 15, 15)
    kw = dict(stride=2, padding=1)
    want = fc.grad.conv2d_input(x_shape, w, gy, **kw, algorithm="direct")
    LA._empty_aligned((1 << 20,), np.float64)[...] = np.nan         # this thread's buffer of slot 0
    got = fc.grad.conv2d_input(x_shape, w, gy, **kw, algorithm="lanes")
    _close(got, want, np.float64)


def test_auto_prefers_it_only_where_the_batch_fills_the_lanes():
    """The cost model charges the empty lanes of a partial group: with one image the same layer costs (nearly) as
    much as with 16, so it is 16 times dearer per image."""
    one = fc.ConvGeometry.make((1, 6, 14, 14), (16, 6, 5, 5))
    full = fc.ConvGeometry.make((16, 6, 14, 14), (16, 6, 5, 5))
    for op in ("forward", "grad_input", "grad_weight"):
        assert LA.cost(one, np.float32, op) > 0.8 * LA.cost(full, np.float32, op)


def test_supports_declines_copies_that_cannot_exist():
    """... without allocating anything as long as the rows: the block choice and the cost count the column
    products of 2^31-wide rows from their lengths (an array per block of them took 6 GB each)."""
    import tracemalloc
    huge = fc.ConvGeometry.make((16, 1, 2 ** 31), (1, 1, 3), stride=1)
    tracemalloc.start()
    try:
        assert not LA.supports(huge, np.float32, "forward")
        assert not LA.supports(huge, np.float32, "grad_input")
        LA.cost(huge, np.float32, "grad_input")
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()
    assert LA._column_taps(2 ** 31, 6, 3, 1, 1, None)[0] is None
    assert LA.supports(fc.ConvGeometry.make((16, 6, 14, 14), (16, 6, 5, 5)), np.float32, "forward")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_register_block(dtype):
    """Each register block of every SIMD level the CPU runs (6, 4, 2 and 1 output channels; 64-byte builds also
    6 x 2) on channel counts and widths that leave tails in every block, forward and input gradient, against the
    reference; and ``block`` takes the narrow blocks for 1 and 2 channels."""
    rng = np.random.default_rng(5)
    cases = []
    for K, width in ((1, 13), (3, 27), (6, 7)):
        x = rng.standard_normal((19, 3, 6, width)).astype(dtype)
        w = rng.standard_normal((K, 3, 3, 4)).astype(dtype)
        b = rng.standard_normal(K).astype(dtype)
        geom = fc.ConvGeometry.make(x.shape, w.shape, 1, 1)
        gy = rng.standard_normal(geom.output_shape).astype(dtype)
        cases.append((x, w, b, geom, gy, ref.conv_nd(x, w, b, padding=1),
                      ref.conv_grad_input_nd(x.shape, w, gy, padding=1)))
    for level in _kernels.cpu_levels():
        with _kernels.use_level(level):
            blocks, _ = _kernels.module("_lanes").block_sizes()
            assert ((6, 2) in blocks) == (_kernels.module("_lanes").vector_bytes() == 64)
            for x, w, b, geom, gy, want, want_gx in cases:
                for kb in blocks:
                    out = np.full(geom.output_shape, np.nan, dtype)
                    LA.forward(x, w, b, geom, out, 2, plan=LA._Plan(geom, x.itemsize, "forward", 2, kb=kb))
                    _close(out, want, dtype)
                    gx = np.full(x.shape, np.nan, dtype)
                    LA.grad_input(gy, w, geom, gx, 2, plan=LA._Plan(geom, x.itemsize, "grad_input", 2, kb=kb))
                    _close(gx, want_gx, dtype)
            wide = {64: (4, 6), 32: (3, 2)}[_kernels.module("_lanes").vector_bytes()]
            assert LA.block(1, 20)[0] == 1 and LA.block(2, 20)[0] == 2 and LA.block(16, 12) == wide
            assert LA.block(6, 28) == {(4, 6): (6, 4), (3, 2): (3, 2)}[wide]        # LeNet's first layer
            # LeNet's 6 -> 16 input gradient: two columns at a time at 64 bytes (6 x 4 multiplies 64 column
            # products per row for 50 that read data, 6 x 2 54), one at 32
            lenet = fc.ConvGeometry.make((64, 6, 14, 14), (16, 6, 5, 5), 1, 0)
            assert LA._block_of(lenet, "grad_input") == {(4, 6): (6, 2), (3, 2): (6, 1)}[wide]
            # narrow blocks: the input gradient's packed copy needs fewer columns of padding
            plan = LA._Plan(lenet, 4, "grad_input", 2, kb=(6, 1))
            assert plan.ext[2] == 10 and plan.pad[2] == 0 and plan.first_column == 4
            two = {(4, 6): (6, 2), (3, 2): (3, 2)}[wide]
            assert LA._Plan(lenet, 4, "grad_input", 2, kb=two).ext[2] == 12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GRID, ids=[str(c[:5]) for c in GRID])
def test_passes_give_the_bits_of_one_pass(case, dtype):
    """The kernels' passes over parts of the data (input channels per pass of a row's column blocks; the weight
    gradient's tap groups and rows per pass), which keep a pass's data in the L1 cache, only move the partial sums
    through memory: every pass size gives the bits of a single pass, and the planned sizes stay in range."""
    x, w, b, gy, kw, y = _case(case, dtype, seed=3)
    geom = fc.ConvGeometry.make(x.shape, w.shape, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    _, (_, WTB) = _kernels.module("_lanes").block_sizes()
    ntb = -(-int(np.prod(w.shape[2:])) // WTB)

    def run(op, **passes):
        plan = LA._Plan(geom, x.itemsize, op, 2)
        for k, v in passes.items():
            assert hasattr(plan, k)
            setattr(plan, k, v)
        shape = {"forward": y.shape, "grad_input": x.shape, "grad_weight": w.shape}[op]
        out = np.full(shape, np.nan, dtype)
        if op == "forward":
            LA.forward(x, w, b, geom, out, 2, plan=plan)
        elif op == "grad_input":
            LA.grad_input(gy, w, geom, out, 2, plan=plan)
        else:
            LA.grad_weight(x, gy, geom, out, 2, plan=plan)
        return out

    for op in ("forward", "grad_input"):
        cg = x.shape[1] // kw["groups"] if op == "forward" else w.shape[0] // kw["groups"]
        assert 1 <= LA._Plan(geom, x.itemsize, op, 2).channels_per_pass <= cg
        one = run(op, channels_per_pass=0)
        _close(one, y if op == "forward" else ref.conv_grad_input_nd(x.shape, w, gy, **kw), dtype)
        for cpp in (1, 2, 3):
            np.testing.assert_array_equal(run(op, channels_per_pass=cpp), one)
    plan = LA._Plan(geom, x.itemsize, "grad_weight", 2)
    assert 1 <= plan.tap_groups <= ntb and 1 <= plan.rows_per_pass <= geom.as_3d().output_size[1]
    one = run("grad_weight", tap_groups=1, rows_per_pass=0)
    _close(one, ref.conv_grad_weight_nd(x, gy, w.shape, **kw), dtype)
    for groups, rows in ((2, 1), (ntb, 2), (ntb + 3, 1), (1, 3)):
        np.testing.assert_array_equal(run("grad_weight", tap_groups=groups, rows_per_pass=rows), one)


def test_weight_gradient_passes_fill_the_l1_data_cache(monkeypatch):
    """The weight gradient's rows per pass follow the CPU's L1 data cache (the fixed budget where its size cannot
    be read): LeNet's 6 -> 16 layer at AVX-512's 4 x 5 block takes its 10 rows in one pass on a 48 KiB cache, in
    two of 5 on a 32 KiB one, and the results are the same bits."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6, 14, 14)).astype(np.float32)
    gy = rng.standard_normal((64, 16, 10, 10)).astype(np.float32)
    geom = fc.ConvGeometry.make(x.shape, (16, 6, 5, 5), 1, 0, 1, 1)
    assert geom.as_3d().output_size[1:] == (10, 10)
    _, (WKB, _) = _kernels.module("_lanes").block_sizes()
    per_row = (WKB * 10 + 14) * 64
    halo = 4 * 14 * 64
    outs = []
    for l1 in (48 << 10, 32 << 10, None):
        monkeypatch.setattr(LA._measure, "l1_data_cache_bytes", lambda: l1)
        plan = LA._Plan(geom, 4, "grad_weight", 2)
        budget = l1 or LA.L1_BYTES
        assert plan.rows_per_pass == fc._threads.balanced_block(10, (budget - halo) // per_row)
        if WKB == 4:
            assert plan.rows_per_pass == {48 << 10: 10, 32 << 10: 5, None: 5}[l1]
        out = np.empty((16, 6, 5, 5), np.float32)
        LA.grad_weight(x, gy, geom, out, 2, plan=plan)
        outs.append(out)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    np.testing.assert_allclose(outs[0], ref.conv_grad_weight_nd(x.astype(np.float64), gy.astype(np.float64),
                                                               (16, 6, 5, 5), stride=1, padding=0, dilation=1,
                                                               groups=1), rtol=1e-4, atol=1e-3)


def test_cache_sizes_come_from_sysfs():
    """The L1 data and L2 cache sizes read from Linux's sysfs: the data cache, not the instruction cache, and the
    levels in order (None where sysfs has no cache entries)."""
    l1, l2 = _measure.l1_data_cache_bytes(), _measure.l2_cache_bytes()
    base = "/sys/devices/system/cpu/cpu0/cache"
    if l1 is None or l2 is None:
        pytest.skip("no cache sizes in " + base)
    assert 4 << 10 <= l1 < l2
    sizes = {}
    for entry in glob.glob(base + "/index*"):
        with open(entry + "/level") as f, open(entry + "/type") as g, open(entry + "/size") as h:
            sizes[(f.read().strip(), g.read().strip())] = h.read().strip()
    assert ("1", "Data") in sizes and l1 == int(sizes[("1", "Data")].rstrip("K")) << 10


# (output width, block columns, kernel taps, column stride, tap dilation, data columns (pad, dilation, size))
@pytest.mark.parametrize("case", [(14, 4, 5, 1, 1, (4, 1, 10)),        # LeNet's input gradient
                                  (9, 2, 3, 1, 2, (2, 3, 2)),          # stride holes wider than a block, dilated taps
                                  (30, 6, 2, 1, 3, (1, 2, 12)),
                                  (5, 12, 3, 1, 1, (9, 1, 5)),         # one block, and it reads no data
                                  (40, 4, 7, 2, 1, None)])             # forward: every tap
def test_column_taps_leave_out_only_taps_of_zeros(case):
    """A block of the input gradient runs the taps from its first to its last that read a data column for one of
    its output columns (checked against a direct count), and counts the products it forms and those that read
    data."""
    width, xb, kw, sw, dw, cols = case
    _, useful, computed = LA._column_taps(width, xb, kw, sw, dw, cols)
    taps = LA._taps_table(width, xb, kw, sw, dw, cols)
    nblk = -(-width // xb)
    assert taps.shape == (2 * nblk,)

    def data(z):
        return cols is None or (z >= cols[0] and (z - cols[0]) % cols[1] == 0 and (z - cols[0]) // cols[1] < cols[2])
    want_useful = 0
    for j in range(nblk):
        hits = [t for t in range(kw) if any(data(x * sw + t * dw) for x in range(j * xb, min(width, j * xb + xb)))]
        want_useful += sum(data(x * sw + t * dw) for x in range(j * xb, min(width, j * xb + xb)) for t in range(kw))
        t0, nt = taps[2 * j], taps[2 * j + 1]
        if hits:
            assert (t0, nt) == (hits[0], hits[-1] - hits[0] + 1), (j, hits)
        else:
            assert nt == 0
    assert useful == want_useful and computed == xb * int(taps[1::2].sum())
    if cols is None:
        assert useful == width * kw and computed == nblk * xb * kw
