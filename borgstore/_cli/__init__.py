"""The ``borgstore`` command (also ``python -m borgstore``): one parser, one module per group of
subcommands.

Each module in :data:`COMMAND_MODULES` has ``register(commands)``, which adds its subcommands
to the argparse sub-parsers object and gives each a ``run`` default: ``run(args) -> int``, the
exit status.  Errors a user can cause (a bad URL, a missing store, a refused permission) are
``BackendError`` or ``ValueError``: they are printed as one line and exit with status 2.
"""

import argparse
import importlib
import sys
from typing import Optional, Sequence

#: the modules that add subcommands, in the order of the help text
COMMAND_MODULES = ("_basics", "_browse", "_copy", "_check")

EPILOG = """\
examples:
  borgstore demo                          the demo on a fresh temporary store
  borgstore plugins                       installed backends, nesting strategies, middleware
  borgstore check memory:                 run the conformance kit against a store
"""


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="borgstore",
        description="borgstore: a key/value store framework; look into, copy and check stores.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..backends.errors import BackendError

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except (BackendError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (borgstore ls | head): not an error of ours, and nothing to say
        sys.stderr.close()
        return 0
