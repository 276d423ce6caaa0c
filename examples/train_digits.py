"""Train a LeNet-5-style CNN on scikit-learn's digits with fastconv (see fastconv/examples/digits.py).

    python examples/train_digits.py [--epochs 15] [--size 32] [--threads 2] [--summary]
"""
import os
import sys

# Idle OpenMP workers sleep instead of spinning: on a small shared machine spinning workers take the cores from
# the BLAS threads and other processes (must be set before the OpenMP runtime loads, i.e. before fastconv).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from fastconv.examples.digits import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
