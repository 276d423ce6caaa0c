"""The ``fastconv`` command: ``bench``, ``filter``, ``train`` and ``info``, one module per command.

Each command module has ``HELP`` (one line for the command list), ``add_arguments(parser)`` and ``main(args)``;
its docstring's first paragraph is the command's description.  Errors are reported as one line on stderr with
exit code 2.
"""
import argparse
import importlib
import sys

__all__ = ["main", "build_parser", "COMMANDS"]

COMMANDS = ("bench", "filter", "train", "info")


class CLIError(Exception):
    """A user mistake on the command line: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CLIError("%s: %s" % (self.prog, message))


def build_parser():
    p = _Parser(prog="fastconv", description="Fast CPU convolution, pooling and filters.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="{%s}" % ",".join(COMMANDS))
    sub.required = True
    for name in COMMANDS:
        cmd = importlib.import_module("%s.%s" % (__name__, name))
        c = sub.add_parser(name, help=cmd.HELP, description=cmd.__doc__.split("\n\n")[0],
                           add_help=getattr(cmd, "ADD_HELP", True))
        cmd.add_arguments(c)
        c.set_defaults(func=cmd.main, takes_extra=getattr(cmd, "TAKES_EXTRA", False))
    return p


def main(argv=None):
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra and not args.takes_extra:
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
