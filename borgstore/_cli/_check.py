"""The ``check`` subcommand: the conformance kit against a live store (borgstore._check)."""

import argparse


def register(commands) -> None:
    """Add ``check`` to the ``borgstore`` parser."""
    check = commands.add_parser("check", help="check the store at URL with the conformance kit")
    check.add_argument("url")
    check.add_argument(
        "rest",
        nargs=argparse.REMAINDER,
        help="--profile quick|deep|faults, --only RULE, --middleware NAME[:OPTIONS], --rules "
        "(details: check URL --help)",
    )
    check.set_defaults(run=_run)


def _run(args) -> int:
    from .. import _check

    return _check.main(args.url, args.rest)
