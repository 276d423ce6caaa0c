"""The digits ResNet's training step, fastconv against torch, and the tape ops it is made of.

One training step = forward, cross-entropy, backward, AdamW update, at batch 64 of 1x16x16 images, with the
network of ``fastconv train --model resnet`` (:func:`fastconv.examples.resnet.resnet_digits`) and its torch twin
holding the same weights.  Contenders:

* ``fastconv``: the example's configuration (``algorithm="auto"``: the cost model's choice per operation);
* ``fastconv (autotuned)``: ``auto`` with ``fastconv.autotune`` (every algorithm timed once per shape);
* ``torch``: the same network in torch, same thread count.

Inference: the same network in eval mode under ``no_grad``, as trained and with every batch norm folded into the
convolution before it (``nn.utils.fuse_modules`` with ``ResNet.fuse_groups()``), against torch's eval forward.

The step is timed again with one thread each (with two, torch wakes its pool for every small op, which the
machine's load and the OpenMP wait policy affect far more than fastconv's few large parallel kernels; the
one-thread ratio shows the work per step without that).

Then the ops fastconv implements with NumPy, forward + backward, each against torch's: batch norm (train mode) on
every activation shape of the network, ReLU, the residual add and ``cat``.

Every case is timed in turns (one call of each contender per round, median over the rounds), so a change in the
machine's load hits all alike; the load average before and after is printed and saved (``os.getloadavg``), with
the CPU model, fastconv's SIMD level and the OpenMP wait policy both libraries share (fastconv's default, a short
spin, unless the environment sets one; see ``bench_autograd.py``).

    python bench/bench_resnet.py [--threads 2] [--repeats 30] [--json bench/results/resnet.json]
"""
import argparse
import os

import numpy as np  # noqa: E402

import fastconv as fc  # noqa: E402
from fastconv import Tensor, nn  # noqa: E402
from fastconv.benchmark import blas_threads, cpu_model, format_table, omp_wait_policy, save_json, torch_or_none  # noqa: E402
from fastconv.examples.resnet import resnet_digits, torch_resnet  # noqa: E402
from fastconv.nn import functional as F  # noqa: E402
from bench_autograd import in_turns  # noqa: E402  (contenders timed in turns, as there)


def step_cases(torch, batch, size, width, rng):
    x = rng.standard_normal((batch, 1, size, size)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    nn.manual_seed(0)
    ours = resnet_digits(width)
    opt = nn.AdamW(ours.parameters(), lr=1e-3)

    def step():
        loss = F.cross_entropy(ours(Tensor._wrap(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    def tuned():
        fc.autotune(True)
        try:
            return step()
        finally:
            fc.autotune(False)

    fns = {"fastconv": step, "fastconv (autotuned)": tuned}
    if torch is not None:
        theirs = torch_resnet(width=width)
        theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
        topt = torch.optim.AdamW(theirs.parameters(), lr=1e-3)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def tstep():
            loss = torch.nn.functional.cross_entropy(theirs(xt), yt)
            topt.zero_grad()
            loss.backward()
            topt.step()
            return loss
        first, tfirst = float(step().item()), float(tstep().item())    # same weights, same batch
        assert abs(first - tfirst) < 1e-4 * max(1.0, abs(tfirst)), (first, tfirst)
        fns["torch"] = tstep
    return fns


def inference_cases(torch, batch, size, width, rng):
    x = rng.standard_normal((batch, 1, size, size)).astype(np.float32)
    nn.manual_seed(1)
    ours = resnet_digits(width).eval()
    for m in ours.modules():                       # non-trivial running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean[...] = rng.standard_normal(m.num_features) * 0.1
            m.running_var[...] = rng.random(m.num_features) + 0.5
    fused = nn.utils.fuse_modules(ours, ours.fuse_groups())

    def run(model):
        def f():
            with fc.no_grad():
                return model(Tensor._wrap(x))
        return f
    fns = {"fastconv": run(ours), "fastconv fused conv+BN": run(fused)}
    if torch is not None:
        theirs = torch_resnet(width=width).eval()
        theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
        xt = torch.from_numpy(x)

        def tf():
            with torch.no_grad():
                return theirs(xt)
        fns["torch"] = tf
    return fns


def op_cases(torch, batch, size, width, rng):
    """(case name, {contender: fn}) for the NumPy-implemented ops, forward + backward."""
    cases = []
    shapes = [(batch, width, size, size), (batch, 2 * width, size // 2, size // 2),
              (batch, 4 * width, size // 4, size // 4)]
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        g = rng.standard_normal(shape).astype(np.float32)
        bn = nn.BatchNorm2d(shape[1])
        fns = {"fastconv": lambda bn=bn, x=x, g=g: bn(Tensor._wrap(x).requires_grad_()).backward(g)}
        if torch is not None:
            tbn = torch.nn.BatchNorm2d(shape[1])
            tx, tg = torch.tensor(x, requires_grad=True), torch.tensor(g)
            fns["torch"] = lambda tbn=tbn, tx=tx, tg=tg: torch.autograd.grad(tbn(tx), (tx, tbn.weight, tbn.bias),
                                                                             tg)
        cases.append(("BatchNorm2d %s" % (shape,), fns))
    shape = shapes[0]
    x = rng.standard_normal(shape).astype(np.float32)
    r = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    g2 = rng.standard_normal((shape[0], 2 * shape[1]) + shape[2:]).astype(np.float32)
    simple = [
        ("ReLU %s" % (shape,), lambda a: F.relu(a[0]), lambda t, a: torch.relu(a[0]), [x], g),
        ("residual add %s" % (shape,), lambda a: a[0] + a[1], lambda t, a: a[0] + a[1], [x, r], g),
        ("cat dim 1 -> %s" % (g2.shape,), lambda a: fc.cat(a, 1), lambda t, a: torch.cat(a, 1), [x, r], g2),
    ]
    for name, ours, theirs, arrays, grad in simple:
        def run(ours=ours, arrays=arrays, grad=grad):
            ts = [Tensor._wrap(a).requires_grad_() for a in arrays]
            ours(ts).backward(grad)
        fns = {"fastconv": run}
        if torch is not None:
            tts = [torch.tensor(a, requires_grad=True) for a in arrays]
            tg = torch.tensor(grad)
            fns["torch"] = lambda theirs=theirs, tts=tts, tg=tg: torch.autograd.grad(theirs(torch, tts), tts, tg)
        cases.append((name, fns))
    return cases


def _rows(name, timings):
    ref = timings.get("torch", {}).get("median")
    return [dict(case=name, impl=impl, ms=t["median"] * 1e3, min_ms=t["min"] * 1e3, spread=t["spread"],
                 vs_torch=None if ref is None else t["median"] / ref) for impl, t in timings.items()]


def run(threads=2, repeats=30, batch=64, size=16, width=8):
    rng = np.random.default_rng(0)
    torch = torch_or_none(threads)
    load_before = os.getloadavg()
    rows = []
    step = "ResNet step, batch %d of 1x%dx%d" % (batch, size, size)
    with blas_threads(threads), fc.num_threads(threads):
        cases = [(step, step_cases(torch, batch, size, width, rng)),
                 ("ResNet inference, batch %d" % batch, inference_cases(torch, batch, size, width, rng))]
        cases += op_cases(torch, batch, size, width, rng)
        for i, (name, fns) in enumerate(cases):
            rows += _rows(name, in_turns(fns, repeats * 2 if i == 0 else repeats, warmup=3))
    if threads > 1:                 # the same step on one thread each: no thread pool to wake or to contend
        if torch is not None:
            torch.set_num_threads(1)
        with blas_threads(1), fc.num_threads(1):
            rows += _rows(step + ", 1 thread", in_turns(step_cases(torch, batch, size, width, rng), repeats, 3))
        if torch is not None:
            torch.set_num_threads(threads)
    fc.autotune(False)
    return rows, load_before, os.getloadavg()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--json", default=None, help="write the results here as JSON")
    args = p.parse_args(argv)
    rows, before, after = run(args.threads, args.repeats, args.batch)
    print("CPU %s, SIMD %s, %d threads, %s; load average before %s, after %s"
          % (cpu_model(), fc.info(print_=False)["simd"], args.threads, omp_wait_policy(),
             "/".join("%.2f" % v for v in before), "/".join("%.2f" % v for v in after)))
    print(format_table(rows, [("case", "case"), ("impl", "impl"), ("ms", "median ms"), ("min_ms", "min ms"),
                              ("spread", "spread"), ("vs_torch", "x torch")]))
    for one, what in ((False, "%d threads" % args.threads), (True, "1 thread")):
        step = {r["impl"]: r["vs_torch"] for r in rows if r["case"].startswith("ResNet step")
                and r["case"].endswith(", 1 thread") == one}
        if step.get("fastconv") is not None:
            print("ResNet training step, %s: fastconv / torch = %.3f (target <= 1.0)" % (what, step["fastconv"]))
    inf = {r["impl"]: r["ms"] for r in rows if r["case"].startswith("ResNet inference")}
    print("ResNet inference: fused conv+BN / unfused = %.3f" % (inf["fastconv fused conv+BN"] / inf["fastconv"]))
    if args.json:
        save_json(args.json, rows, threads=args.threads, batch=args.batch, cpu=cpu_model(),
                  simd=fc.info(print_=False)["simd"], load_before=list(before), load_after=list(after),
                  omp_wait_policy=omp_wait_policy(), target={"ResNet step": 1.0})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
