"""The ``fastconv`` command: ``bench``, ``filter``, ``train`` and ``info``.

Errors are reported as one line on stderr with exit code 2.
"""
import argparse
import sys

__all__ = ["main"]


class CLIError(Exception):
    """A user mistake on the command line: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CLIError("%s: %s" % (self.prog, message))


def _cmd_bench(args):
    from . import _bench
    return _bench.main(args)


def _cmd_info(args):
    from ._info import info
    info()
    return 0


def _cmd_filter(args):
    from . import _filter_cli
    return _filter_cli.run(args)


def _cmd_train(args):
    from .examples import digits
    return digits.main(args.extra)


def build_parser():
    p = _Parser(prog="fastconv", description="Fast CPU convolution, pooling and filters.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="{bench,filter,train,info}")
    sub.required = True

    from . import _bench
    b = sub.add_parser("bench", help="compare the convolution algorithms with each other and with installed peers",
                       description=_bench.__doc__.split("\n\n")[0])
    _bench.add_arguments(b)
    b.set_defaults(func=_cmd_bench)

    from . import _filter_cli
    f = sub.add_parser("filter", help="apply a named filter or a kernel file to an image file",
                       description=_filter_cli.__doc__.split("\n\n")[0])
    _filter_cli.add_arguments(f)
    f.set_defaults(func=_cmd_filter)

    t = sub.add_parser("train", help="train the LeNet-5-style CNN on scikit-learn's digits",
                       description="Train the digits example; arguments after 'train' go to it (see --help).",
                       add_help=False)
    t.set_defaults(func=_cmd_train)

    i = sub.add_parser("info", help="version, OpenMP, threads, SIMD level and BLAS in use")
    i.set_defaults(func=_cmd_info)
    return p


def main(argv=None):
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra and args.func is not _cmd_train:
            parser.error("unrecognized arguments: %s" % " ".join(extra))
        args.extra = extra
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError) as exc:
        print("fastconv: error: %s" % exc, file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
