"""Train a LeNet-5-style CNN on scikit-learn's digits with fastconv (see fastconv/examples/digits.py).

    python examples/train_digits.py [--epochs 15] [--size 32] [--threads 2] [--summary]
"""
import sys

from fastconv.examples.digits import main

if __name__ == "__main__":
    sys.exit(main())
