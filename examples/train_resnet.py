"""Train the small ResNet (basic blocks, batch norm, residual adds, global average pooling) on scikit-learn's
digits with AdamW and a cosine learning-rate schedule (see fastconv/examples/resnet.py and digits.py).

    python examples/train_resnet.py [--epochs 20] [--width 8] [--threads 2] [--summary]

The same as ``fastconv train --model resnet``; over 98.5 % test accuracy in well under two minutes on two cores.
"""
import sys

from fastconv.examples.digits import main

if __name__ == "__main__":
    sys.exit(main(["--model", "resnet"] + sys.argv[1:]))
