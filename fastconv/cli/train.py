"""Train the LeNet-5-style CNN or (``--model resnet``) the small ResNet on scikit-learn's digits; arguments after
'train' go to it (see --help).

The command is :func:`fastconv.examples.digits.main` (also ``python examples/train_digits.py``).
"""

__all__ = ["HELP", "add_arguments", "main"]

HELP = "train the LeNet-5-style CNN (or --model resnet) on scikit-learn's digits"
ADD_HELP = False       # --help goes to the training script
TAKES_EXTRA = True     # so do all other arguments


def add_arguments(p):
    """The training script parses its own arguments."""


def main(args):
    from ..examples import digits
    return digits.main(args.extra)
