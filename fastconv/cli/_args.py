"""Argument types shared by the commands: a wrong value becomes argparse's one-line error
("argument --epochs: must be a positive integer, got 0")."""
import argparse
import math

__all__ = ["positive_int", "nonneg_int", "positive_float", "nonneg_float"]


def _typed(convert, accept, rule):
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError("must be %s, got %r" % (rule, text)) from None
        if not accept(value):
            raise argparse.ArgumentTypeError("must be %s, got %s" % (rule, text))
        return value
    parse.__name__ = rule
    return parse


positive_int = _typed(int, lambda v: v >= 1, "a positive integer")
nonneg_int = _typed(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _typed(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
nonneg_float = _typed(float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")
