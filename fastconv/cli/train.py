"""Train the LeNet-5-style CNN or (``--model resnet``) the small ResNet on scikit-learn's digits and print the
loss and accuracy per epoch.

The command is :func:`fastconv.examples.digits.main` (also ``python examples/train_digits.py``).
"""

__all__ = ["HELP", "add_arguments", "main"]

HELP = "train the LeNet-5-style CNN (or --model resnet) on scikit-learn's digits"

EPILOG = """examples:
  fastconv train                          # LeNet-5, 15 epochs, about 98 % test accuracy
  fastconv train --model resnet           # the small ResNet, over 98.5 %
  fastconv train --epochs 3 --size 16     # a quick run
  fastconv train --summary --epochs 1     # print the model's layers, shapes and parameters first"""


def add_arguments(p):
    from ..examples import digits
    digits.add_arguments(p)


def main(args):
    from ..examples import digits
    return digits.run(args)
