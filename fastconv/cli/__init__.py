"""The ``fastconv`` command: ``bench``, ``calibrate``, ``filter``, ``train`` and ``info``, one module per command.

Each command module has ``HELP`` (one line for the command list), ``add_arguments(parser)`` and ``main(args)``;
its docstring's first paragraph is the command's description.  Errors are reported as one line on stderr with
exit code 2; ``fastconv`` alone prints the help, ``fastconv --version`` the version.
"""
import argparse
import importlib
import sys

__all__ = ["main", "build_parser", "COMMANDS"]

COMMANDS = ("bench", "calibrate", "filter", "train", "info")


class CLIError(Exception):
    """A user mistake on the command line: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise CLIError("%s: %s" % (self.prog, message))


class _Formatter(argparse.HelpFormatter):
    """Descriptions and epilogs: paragraphs are re-filled to the terminal; a paragraph with indented lines
    (examples, field lists) is kept as written."""

    def _fill_text(self, text, width, indent):
        out = []
        for para in text.strip("\n").split("\n\n"):
            if any(line.startswith(" ") for line in para.splitlines()):
                out.append("\n".join(indent + line for line in para.splitlines()))
            else:
                out.append(super()._fill_text(para, width, indent))
        return "\n\n".join(out)


def build_parser():
    from .._version import __version__
    p = _Parser(prog="fastconv", formatter_class=_Formatter,
                description="Fast CPU convolution, pooling and filters.  'fastconv COMMAND --help' describes a "
                "command's options.")
    p.add_argument("--version", action="version", version="fastconv %s" % __version__)
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND", title="commands")
    sub.required = True
    for name in COMMANDS:
        cmd = importlib.import_module("%s.%s" % (__name__, name))
        doc = cmd.__doc__.split("\n\n")
        c = sub.add_parser(name, help=cmd.HELP, description=doc[0], epilog=getattr(cmd, "EPILOG", None),
                           formatter_class=_Formatter,
                           add_help=getattr(cmd, "ADD_HELP", True))
        cmd.add_arguments(c)
        c.set_defaults(func=cmd.main, takes_extra=getattr(cmd, "TAKES_EXTRA", False))
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        if not argv:                          # a bare ``fastconv``: what it can do, not an error line
            parser.print_help()
            return 0
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
