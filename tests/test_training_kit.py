"""The training kit: AdamW/RMSprop, frozen parameters, optimiser state dicts, learning-rate schedulers (the exact
sequence of torch's for 100 steps), gradient clipping, initialisers, conv+BN fusion and fastconv.save/load."""
import io

import numpy as np
import pytest

import fastconv
import fastconv.nn as nn
from fastconv import Tensor
from fastconv.nn.optim import lr_scheduler

rng = np.random.default_rng(5)


def rand(*shape):
    return rng.standard_normal(shape)


def _pair(torch, shape=(3, 4)):
    p0 = rand(*shape)
    return nn.Parameter(p0), torch.nn.Parameter(torch.tensor(p0))


@pytest.mark.parametrize("name, kw", [
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, betas=(0.8, 0.9), weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, weight_decay=0.1, momentum=0.5, centered=True)),
    ("RMSprop", dict(lr=0.003, centered=True, eps=1e-6)),
])
def test_new_optimisers_follow_torch(name, kw):
    torch = pytest.importorskip("torch")
    ours, theirs = _pair(torch)
    opt = getattr(nn, name)([ours], **kw)
    topt = getattr(torch.optim, name)([theirs], **kw)
    for step in range(8):
        g = np.sin(3 * ours.data) + 0.1 * step
        ours.grad, theirs.grad = g.copy(), torch.tensor(g)
        opt.step()
        topt.step()
        np.testing.assert_allclose(ours.data, theirs.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_frozen_parameters_are_skipped_and_state_dicts_round_trip_with_torch(name):
    torch = pytest.importorskip("torch")
    kw = dict(lr=0.05, momentum=0.9) if name in ("SGD", "RMSprop") else dict(lr=0.05)
    (a, ta), (b, tb) = _pair(torch), _pair(torch, (2,))
    frozen = nn.Parameter(rand(2), requires_grad=False)              # the fine-tuning pattern
    opt = getattr(nn, name)([a, frozen, b], **kw)
    topt = getattr(torch.optim, name)([ta, torch.nn.Parameter(torch.tensor(frozen.data), requires_grad=False),
                                       tb], **kw)
    before = frozen.data.copy()
    for step in range(3):
        for p, tp in ((a, ta), (b, tb)):
            g = np.cos(p.data) + step
            p.grad, tp.grad = g, torch.tensor(g)
        opt.step()
        topt.step()
    np.testing.assert_array_equal(frozen.data, before)
    sd, tsd = opt.state_dict(), topt.state_dict()
    assert sorted(sd["state"]) == sorted(tsd["state"]) == [0, 2]
    assert sd["param_groups"][0]["params"] == tsd["param_groups"][0]["params"] == [0, 1, 2]
    for i in (0, 2):
        assert set(sd["state"][i]) == {k for k, v in tsd["state"][i].items() if v is not None}
        for k, v in sd["state"][i].items():
            np.testing.assert_allclose(v, np.asarray(tsd["state"][i][k]), rtol=1e-10, atol=1e-12)
    # torch's state loads into a fresh fastconv optimiser (and ours into torch's) and both continue alike
    a2, b2 = nn.Parameter(a.data.copy()), nn.Parameter(b.data.copy())
    opt2 = getattr(nn, name)([a2, nn.Parameter(before.copy(), requires_grad=False), b2], **kw)
    opt2.load_state_dict(tsd)
    ta2, tb2 = torch.nn.Parameter(torch.tensor(a.data)), torch.nn.Parameter(torch.tensor(b.data))
    topt2 = getattr(torch.optim, name)([ta2, torch.nn.Parameter(torch.tensor(before)), tb2], **kw)
    topt2.load_state_dict({"state": {k: {n: torch.tensor(v) for n, v in s.items()} for k, s in sd["state"].items()},
                           "param_groups": sd["param_groups"]})
    for p, tp in ((a2, ta2), (b2, tb2)):
        g = np.sin(p.data)
        p.grad, tp.grad = g, torch.tensor(g)
    opt2.step()
    topt2.step()
    np.testing.assert_allclose(a2.data, ta2.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b2.data, tb2.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_optimiser_errors_and_param_groups():
    a = nn.Parameter(np.ones(2))
    with pytest.raises(TypeError, match="non-leaf"):
        nn.SGD([a * 2], lr=0.1)
    with pytest.raises(ValueError, match="more than one"):
        nn.SGD([{"params": [a]}, {"params": [a]}], lr=0.1)
    opt = nn.AdamW([a], lr=0.1)
    with pytest.raises(ValueError, match="groups"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    b = nn.Parameter(np.ones(3))
    opt.add_param_group({"params": [b], "lr": 0.5})
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["weight_decay"] == 0.01
    with pytest.raises(ValueError, match="alpha"):
        nn.RMSprop([a], alpha=-1)


# --------------------------------------------------------------------------------------------------- schedulers
def _sequences(make, torch, steps=100, metric=None, groups=2):
    """Learning rates (and momenta) of our and torch's scheduler over ``steps`` steps, from the same start."""
    def build(lib, opt_cls):
        ps = [lib(np.ones(2)) for _ in range(groups)]
        return opt_cls([{"params": [p], "lr": 0.1 * (i + 1)} for i, p in enumerate(ps)], lr=0.1, momentum=0.9)
    ours_opt = build(nn.Parameter, nn.SGD)
    theirs_opt = build(lambda a: torch.nn.Parameter(torch.tensor(a)), torch.optim.SGD)
    ours, theirs = make(lr_scheduler, ours_opt), make(torch.optim.lr_scheduler, theirs_opt)
    seq_o, seq_t = [], []
    for step in range(steps):
        theirs_opt.step()
        if metric is None:
            ours.step()
            theirs.step()
        else:
            ours.step(metric(step))
            theirs.step(metric(step))
        seq_o.append([(g["lr"], g["momentum"]) for g in ours_opt.param_groups])
        seq_t.append([(g["lr"], g["momentum"]) for g in theirs_opt.param_groups])
        assert ours.get_last_lr() == theirs.get_last_lr()
    return seq_o, seq_t


@pytest.mark.parametrize("make", [
    lambda m, o: m.StepLR(o, step_size=7, gamma=0.5),
    lambda m, o: m.MultiStepLR(o, milestones=[10, 30, 30, 75], gamma=0.3),
    lambda m, o: m.CosineAnnealingLR(o, T_max=30, eta_min=1e-3),
    lambda m, o: m.CosineAnnealingLR(o, T_max=100),
    lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 1.0], total_steps=100),
    lambda m, o: m.OneCycleLR(o, max_lr=0.3, epochs=10, steps_per_epoch=10, pct_start=0.25,
                              anneal_strategy="linear", three_phase=True),
    lambda m, o: m.ExponentialLR(o, gamma=0.97),
    lambda m, o: m.LambdaLR(o, lambda e: 1.0 / (1 + e)),
], ids=["StepLR", "MultiStepLR", "Cosine", "Cosine100", "OneCycle", "OneCycle3", "Exponential", "Lambda"])
def test_schedulers_reproduce_torch_exactly_for_100_steps(make):
    torch = pytest.importorskip("torch")
    seq_o, seq_t = _sequences(make, torch)
    assert seq_o == seq_t                                   # exactly: the same floating point operations
    assert len({s[0][0] for s in seq_o}) > 1


def test_reduce_lr_on_plateau_reproduces_torch():
    torch = pytest.importorskip("torch")
    losses = [1.0 / (1 + s) if s < 20 else 0.05 + 0.001 * ((s * 7) % 5) for s in range(100)]
    for kw in (dict(patience=3, factor=0.5), dict(mode="max", patience=2, cooldown=4, threshold_mode="abs",
                                                   threshold=0.01, min_lr=[0.02, 0.01])):
        metric = (lambda s: losses[s]) if kw.get("mode") != "max" else (lambda s: -losses[s])
        seq_o, seq_t = _sequences(lambda m, o: m.ReduceLROnPlateau(o, **kw), torch, metric=metric)
        assert seq_o == seq_t and seq_o[-1] != seq_o[0]


def test_scheduler_state_dict_resumes():
    opt = nn.SGD([nn.Parameter(np.ones(1))], lr=1.0)
    s = lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    for _ in range(3):
        s.step()
    state = s.state_dict()
    opt2 = nn.SGD([nn.Parameter(np.ones(1))], lr=1.0)
    s2 = lr_scheduler.CosineAnnealingLR(opt2, T_max=10)
    s2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    s.step()
    s2.step()
    assert s.get_last_lr() == s2.get_last_lr()
    with pytest.raises(TypeError, match="Optimizer"):
        lr_scheduler.StepLR(object(), 3)
    with pytest.raises(ValueError, match="total_steps"):
        lr_scheduler.OneCycleLR(opt, 0.1)


# --------------------------------------------------------------------------------------------------- clipping
@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
def test_clip_grad_norm_matches_torch(norm_type):
    torch = pytest.importorskip("torch")
    ps = [nn.Parameter(rand(3, 2).astype(np.float32)) for _ in range(3)]
    tps = [torch.nn.Parameter(torch.tensor(p.data)) for p in ps]
    for p, tp in zip(ps, tps):
        g = rand(*p.shape).astype(np.float32) * 3
        p.grad, tp.grad = g.copy(), torch.tensor(g)
    ps[1].grad = None
    tps[1].grad = None
    total = nn.utils.clip_grad_norm_(ps, 0.5, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(tps, 0.5, norm_type)
    np.testing.assert_allclose(total.item(), ttotal.item(), rtol=1e-6)
    for p, tp in zip(ps, tps):
        if p.grad is not None:
            np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-6)
    nn.utils.clip_grad_value_(ps, 0.01)
    torch.nn.utils.clip_grad_value_(tps, 0.01)
    np.testing.assert_array_equal(ps[0].grad, tps[0].grad.numpy())
    ps[0].grad[0, 0] = np.nan
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)


def test_parameter_vectors_round_trip():
    ps = [nn.Parameter(rand(2, 3)), nn.Parameter(rand(4))]
    v = nn.utils.parameters_to_vector(ps)
    assert v.shape == (10,)
    nn.utils.vector_to_parameters(v * 2, ps)
    np.testing.assert_allclose(nn.utils.parameters_to_vector(ps), 2 * v)
    with pytest.raises(ValueError, match="10 values"):
        nn.utils.vector_to_parameters(v[:3], ps)


# --------------------------------------------------------------------------------------------------- init
def test_orthogonal_and_trunc_normal():
    for shape in ((4, 6), (6, 4), (3, 2, 2, 2)):
        w = np.empty(shape)
        nn.init.orthogonal_(w, gain=2.0, generator=np.random.default_rng(0))
        flat = w.reshape(shape[0], -1)
        small = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
        np.testing.assert_allclose(small, 4.0 * np.eye(small.shape[0]), atol=1e-10)
    p = nn.Parameter(np.empty((200, 100), np.float32))
    nn.init.trunc_normal_(p, mean=0.5, std=1.0, a=-0.5, b=1.0, generator=np.random.default_rng(1))
    assert p.data.min() >= -0.5 and p.data.max() <= 1.0 and p.data.dtype == np.float32
    assert 0.2 < p.data.mean() < 0.35             # truncated N(0.5, 1) to [-0.5, 1] has mean ~0.27
    with pytest.raises(ValueError, match="2 or more"):
        nn.init.orthogonal_(np.empty(3))


# --------------------------------------------------------------------------------------------------- fusion
def test_conv_bn_relu_fusion_matches_the_eval_network():
    nn.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 3, 1, bias=False), nn.BatchNorm2d(3)).double()
    for _ in range(3):                                      # give the batch norms real running statistics
        model(Tensor(rand(4, 2, 5, 5) + 1))
    model.eval()
    fused = nn.utils.fuse_modules(model, [["0", "1", "2"], ["3", "4"]])
    x = rand(2, 2, 5, 5)
    with fastconv.no_grad():
        np.testing.assert_allclose(fused(Tensor(x)).data, model(Tensor(x)).data, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fused(Tensor(x)).data, model(Tensor(x)).data, rtol=1e-10, atol=1e-12)
    assert isinstance(fused[1], nn.Identity) and isinstance(fused[0], nn.utils.FusedConvReLU)
    assert isinstance(model[1], nn.BatchNorm2d)             # not in place by default
    with pytest.raises(ValueError, match="eval"):
        nn.utils.fuse_modules(model.train(), [["0", "1"]])


# --------------------------------------------------------------------------------------------------- save/load
def test_save_and_load_a_state_dict(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(3, 2))
    path = tmp_path / "model.npz"
    fastconv.save(model.state_dict(), path)
    loaded = fastconv.load(path)
    assert list(loaded) == list(model.state_dict())
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded[k], v)
        assert loaded[k].dtype == v.dtype
    assert np.load(path).files == list(loaded)                  # a plain .npz file
    other = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Linear(3, 2))
    other.load_state_dict(fastconv.load(path))
    buf = io.BytesIO()
    fastconv.save({"w": Tensor(np.ones(2)), "n": 3}, buf)
    buf.seek(0)
    assert fastconv.load(buf)["n"] == 3
    with pytest.raises(TypeError, match="state dict"):
        fastconv.save([1, 2], buf)
    with pytest.raises(TypeError, match="numeric"):
        fastconv.save({"a": "text"}, buf)
