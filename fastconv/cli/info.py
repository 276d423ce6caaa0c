"""Print the version, OpenMP, threads, SIMD level and BLAS this build of fastconv runs with."""

__all__ = ["HELP", "add_arguments", "main"]

HELP = "version, OpenMP, threads, SIMD level and BLAS in use"


def add_arguments(p):
    """No options."""


def main(args):
    from .._info import info
    info()
    return 0
