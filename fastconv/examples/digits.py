"""Train a CNN on scikit-learn's 8x8 digits with fastconv's autograd and layers only.

The 1797 digits are upsampled (bilinear) to ``size x size`` (32 as in LeNet-5, or 16), split once into 75 %
training / 25 % test images (stratified, fixed seed) and standardised with the training statistics; initialisation,
shuffling and the random translations used as augmentation draw from the same seed, so a run is reproducible (and
independent of the thread count: fastconv's kernels are deterministic).  Two networks:

* ``model="lenet5"``::

    Conv2d(1, 6, 5) - ReLU - MaxPool2d(2) - Conv2d(6, 16, 5) - ReLU - MaxPool2d(2) - Flatten
    - Linear(16*5*5, 120) - ReLU - Linear(120, 84) - ReLU - Linear(84, 10)

  (for 16x16 inputs the first convolution pads by 2), trained with Adam on the cross-entropy, the learning rate
  decaying by a constant factor per epoch;
* ``model="resnet"``: the small ResNet of :mod:`fastconv.examples.resnet` (basic blocks with batch norm and
  residual adds, global average pooling) on 16x16 images, trained with AdamW and a cosine learning-rate schedule
  stepped every batch.

:func:`train` returns the final metrics; :func:`main` is the command line (``python examples/train_digits.py``,
``fastconv train [--model resnet]``).
"""
import argparse
import time

import numpy as np

from .. import _validate as V
from .. import nn
from .._threads import num_threads
from ..autograd import Tensor, no_grad
from ..nn import functional as F
from ..nn.optim import lr_scheduler
from .resnet import resnet_digits

__all__ = ["load_data", "random_shift", "lenet5", "train", "evaluate", "main", "MODELS"]

#: Per-model training defaults (used for every argument of :func:`train` left at None).
MODELS = {
    "lenet5": dict(epochs=15, batch_size=32, lr=2e-3, size=32, lr_decay=0.85, weight_decay=0.0, width=None),
    "resnet": dict(epochs=20, batch_size=64, lr=4e-3, size=16, lr_decay=None, weight_decay=5e-2, width=8),
}


def load_data(size=32, test_size=0.25, seed=0):
    """``(x_train, y_train, x_test, y_test)``: standardised float32 images (N, 1, size, size), int64 labels."""
    from scipy import ndimage
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if size not in (8, 16, 32):
        raise ValueError("load_data(): argument 'size' must be 8, 16 or 32, got %r" % (size,))
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    if size != 8:
        images = ndimage.zoom(images, (1, size / 8, size / 8), order=1)
    images = np.clip(images, 0.0, 1.0)[:, None].astype(np.float32)
    x_tr, x_te, y_tr, y_te = train_test_split(images, digits.target.astype(np.int64), test_size=test_size,
                                              random_state=seed, stratify=digits.target)
    mean, std = x_tr.mean(), x_tr.std()           # standardise with training statistics only
    return (np.ascontiguousarray((x_tr - mean) / std), y_tr, np.ascontiguousarray((x_te - mean) / std), y_te)


def random_shift(x, max_shift, rng):
    """Translate every image of (N, C, H, W) by its own random offset in [-max_shift, max_shift]^2.

    The border is filled with each image's corner value (the background); one gather, no loop over images.
    """
    if max_shift <= 0:
        return x
    s = max_shift
    padded = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, x.shape[2:], axis=(2, 3))
    oy, ox = rng.integers(0, 2 * s + 1, (2, len(x)))
    return np.ascontiguousarray(windows[np.arange(len(x)), :, oy, ox])


def lenet5(size=32, num_classes=10, pool="max"):
    """LeNet-5 with ReLU and max (or ``pool="avg"``) pooling for 1 x size x size inputs (size 16 or 32)."""
    if pool not in ("max", "avg"):
        raise ValueError("lenet5(): argument 'pool' must be 'max' or 'avg', got %r" % (pool,))
    pad = 2 if size < 28 else 0
    side = ((size + 2 * pad - 4) // 2 - 4) // 2
    if side < 1:
        raise ValueError("lenet5(): argument 'size'=%r is too small for LeNet-5" % (size,))
    Pool = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=pad), nn.ReLU(), Pool(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), Pool(2),
        nn.Flatten(),
        nn.Linear(16 * side * side, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )


def _check_counts(fn, **counts):
    """Positive ints (None allowed: a default, or no limit)."""
    for name, value in counts.items():
        if value is not None:
            V.positive_int(value, fn, name)


def evaluate(model, x, y, batch_size=256):
    """``(mean cross-entropy, accuracy)`` of ``model`` on ``(x, y)``, in eval mode and without recording."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    with no_grad():
        for i in range(0, len(x), batch_size):
            logits = model(Tensor(x[i:i + batch_size]))
            loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum").item()
            correct += int((logits.argmax(1) == y[i:i + batch_size]).sum())
    model.train(was_training)
    return loss / len(x), correct / len(x)


def train(epochs=None, batch_size=None, lr=None, size=None, seed=0, train_limit=None, progress=True, log=print,
          pool="max", lr_decay=None, shift=2, threads=None, model="lenet5", weight_decay=None, width=None):
    """Train ``model`` (``"lenet5"`` or ``"resnet"``) on the digits; returns a dict of final metrics and the
    per-epoch history.

    Arguments left at None take the model's defaults from :data:`MODELS`.  LeNet-5: Adam with learning rate
    ``lr * lr_decay ** (epoch - 1)``.  ResNet (``width`` channels in its first stage): AdamW with
    ``weight_decay`` and a cosine schedule from ``lr`` to 0 over all batches (``CosineAnnealingLR``).  Training
    images are randomly translated by up to ``shift`` pixels (data augmentation, 0 for none).  ``train_limit``
    keeps only the first that many training images (a quick run); ``progress`` shows a tqdm bar; ``log`` receives
    one line per epoch (None to stay quiet); ``threads`` sets fastconv's and the BLAS thread count for the run
    (None: leave them as they are).
    """
    if model not in MODELS:
        raise ValueError("train(): argument 'model' must be one of %s, got %r" % (sorted(MODELS), model))
    d = MODELS[model]
    epochs = d["epochs"] if epochs is None else epochs
    batch_size = d["batch_size"] if batch_size is None else batch_size
    lr = d["lr"] if lr is None else lr
    size = d["size"] if size is None else size
    lr_decay = d["lr_decay"] if lr_decay is None else lr_decay
    weight_decay = d["weight_decay"] if weight_decay is None else weight_decay
    width = d["width"] if width is None else width
    _check_counts("train", epochs=epochs, batch_size=batch_size, train_limit=train_limit, threads=threads,
                  width=width)
    V.nonneg_int(shift, "train", "shift")
    if threads is not None:
        from threadpoolctl import threadpool_limits
        with num_threads(threads), threadpool_limits(threads, user_api="blas"):
            return train(epochs, batch_size, lr, size, seed, train_limit, progress, log, pool, lr_decay, shift,
                         None, model, weight_decay, width)
    x_tr, y_tr, x_te, y_te = load_data(size, seed=seed)
    if train_limit is not None:
        x_tr, y_tr = x_tr[:train_limit], y_tr[:train_limit]
    nn.manual_seed(seed)
    rng = np.random.default_rng(seed)
    name = model
    steps_per_epoch = -(-len(x_tr) // batch_size)
    if name == "resnet":
        model = resnet_digits(width)
        opt = nn.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        schedule = lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    else:
        model = lenet5(size, pool=pool)
        opt = nn.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        schedule = lr_scheduler.LambdaLR(opt, lambda epoch: lr_decay ** epoch)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=epochs * steps_per_epoch, unit="batch", desc="digits " + name, leave=False)
    history = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(len(x_tr))
        total, seen = 0.0, 0
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            loss = F.cross_entropy(model(Tensor(random_shift(x_tr[idx], shift, rng))), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if name == "resnet":
                schedule.step()                      # per batch
            total += loss.item() * len(idx)
            seen += len(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss="%.4f" % (total / seen), refresh=False)
        _, train_acc = evaluate(model, x_tr, y_tr)
        test_loss, test_acc = evaluate(model, x_te, y_te)
        row = dict(epoch=epoch, loss=total / seen, train_accuracy=train_acc, test_loss=test_loss,
                   test_accuracy=test_acc, seconds=time.perf_counter() - t0)
        history.append(row)
        if name != "resnet":
            schedule.step()                          # per epoch
        if log is not None:
            line = ("epoch %2d/%d  loss %.4f  train acc %.2f%%  test loss %.4f  test acc %.2f%%  (%.1f s)"
                    % (epoch, epochs, row["loss"], 100 * train_acc, test_loss, 100 * test_acc, row["seconds"]))
            (bar.write if bar is not None and log is print else log)(line)  # keep the bar intact
    if bar is not None:
        bar.close()
    last = history[-1]
    return dict(model_name=name, test_accuracy=last["test_accuracy"], test_loss=last["test_loss"],
                train_accuracy=last["train_accuracy"], train_loss=last["loss"], epochs=epochs,
                seconds=time.perf_counter() - start, n_train=len(x_tr), n_test=len(x_te), image_size=size,
                params=sum(p.size for p in model.parameters()), history=history, model=model)


def add_arguments(p):
    """The command line's options (``fastconv train``, ``python examples/train_digits.py``)."""
    from ..cli._args import nonneg_float, nonneg_int, positive_float, positive_int
    p.add_argument("--model", choices=sorted(MODELS), default="lenet5",
                   help="lenet5 (Adam, per-epoch decay) or resnet (AdamW, cosine schedule); default lenet5")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="passes over the training images (default: lenet5 15, resnet 20)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per optimiser step (default: lenet5 32, resnet 64)")
    p.add_argument("--lr", type=positive_float, default=None, help="initial learning rate (default: lenet5 2e-3, "
                   "resnet 4e-3)")
    p.add_argument("--lr-decay", type=positive_float, default=None, help="lenet5: learning rate factor per epoch "
                   "(default 0.85)")
    p.add_argument("--weight-decay", type=nonneg_float, default=None,
                   help="default: lenet5 0, resnet 0.05 (AdamW)")
    p.add_argument("--width", type=positive_int, default=None,
                   help="resnet: channels of the first stage (default 8)")
    p.add_argument("--shift", type=nonneg_int, default=2,
                   help="random translation of training images, pixels (default 2)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="threads for fastconv and BLAS (default: all)")
    p.add_argument("--size", type=int, choices=(16, 32), default=None, help="upsampled image side (default: "
                   "lenet5 32, resnet 16)")
    p.add_argument("--pool", choices=("max", "avg"), default="max",
                   help="lenet5: pooling after each convolution, max or avg (default max)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data split, initialisation, shuffling and shifts (default 0)")
    p.add_argument("--train-limit", type=positive_int, default=None, help="use only the first N training images")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--summary", action="store_true", help="print the model summary first")


def run(args):
    """Train with the parsed options; print per-epoch and final metrics."""
    size = args.size or MODELS[args.model]["size"]
    if args.summary:
        net = (resnet_digits(args.width or MODELS["resnet"]["width"]) if args.model == "resnet"
               else lenet5(size, pool=args.pool))
        nn.summary(net, (1, 1, size, size))
    m = train(args.epochs, args.batch_size, args.lr, size, args.seed, args.train_limit,
              progress=not args.no_progress, pool=args.pool, lr_decay=args.lr_decay, shift=args.shift,
              threads=args.threads, model=args.model, weight_decay=args.weight_decay, width=args.width)
    print("digits (%s): %d training / %d test images at %dx%d, %d parameters, %d epochs in %.1f s"
          % (m["model_name"], m["n_train"], m["n_test"], m["image_size"], m["image_size"], m["params"],
             m["epochs"], m["seconds"]))
    print("final: train loss %.4f, train accuracy %.2f%%, test accuracy %.2f%%"
          % (m["train_loss"], 100 * m["train_accuracy"], 100 * m["test_accuracy"]))
    return 0


def main(argv=None):
    """Command line: train LeNet-5 or the small ResNet on the digits and print per-epoch and final metrics."""
    p = argparse.ArgumentParser(prog="fastconv train", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
