"""The ``check`` subcommand: the conformance kit against a live store (borgstore._check).

The report (one line per check) goes to stdout; progress goes to stderr: a line when a check
starts, and for the state machines, which run for minutes against a remote store, the examples
run so far against the profile's budget.  On a terminal that is one line refreshed in place;
elsewhere (CI logs, pipes) a plain line every :data:`LINE_INTERVAL` seconds.  No progress bar
library is needed for that: the count and an estimate of the time left fit on one line.
"""

import argparse
import shutil
import sys
import time
from typing import Optional, TextIO

DESCRIPTION = """\
Run the conformance kit against the store at URL: every check at its own scratch location
below URL, removed afterwards (URL's location too, if the check made it and it is empty).
Prints PASS, FAIL (with the broken rule and the shrunk failing sequence) or N/A per check.
Exit status: 0 all passed, 1 a check failed, 2 bad usage or the kit cannot run, 130 Ctrl-C."""

EPILOG = """\
examples:
  borgstore check memory:
  borgstore check file:///tmp/checks --only state-machine --only lifecycle
  borgstore check sftp://user@host/scratch --profile deep
  borgstore check --rules
"""

#: seconds between two progress lines when stderr is no terminal (on one: refreshed 5 times a second)
LINE_INTERVAL = 10.0


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``check`` to the ``borgstore`` parser."""
    check = commands.add_parser(
        "check",
        help="check the store at URL with the conformance kit",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(check)
    check.set_defaults(run=lambda args: run_check(args, check))


def check_parser() -> argparse.ArgumentParser:
    """A parser of ``check``'s arguments alone (for borgstore._check.main)."""
    parser = argparse.ArgumentParser(
        prog="borgstore check",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``check``."""
    parser.add_argument("url", nargs="?", metavar="URL", help="where to check (not needed with --rules)")
    parser.add_argument(
        "--profile",
        choices=("quick", "deep", "faults"),
        default=None,
        help="Hypothesis budget (default: $BORGSTORE_CONFORMANCE_PROFILE or quick); faults: the state "
        "machines only, with the backend below the retry middleware and injected faults",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="CHECK",
        help="run only this check (repeatable; --rules lists the checks); an unknown name is an error",
    )
    parser.add_argument(
        "--middleware",
        action="append",
        default=[],
        metavar="NAME[:OPTIONS]",
        help="check the backend wrapped in this middleware and the Store with it in its chain "
        "(repeatable, outermost first); OPTIONS is a JSON object, default: options that leave a "
        "shipped middleware transparent, e.g. --middleware quota or --middleware 'quota:{\"limit\": 1000000000000}'",
    )
    parser.add_argument(
        "--rules", action="store_true", help="list every rule the kit checks, then exit (no URL needed)"
    )


def run_check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``check`` with parsed *args*; returns the exit status."""
    from .. import _check
    from .._plugins import CORE_DISTRIBUTION, install_command

    try:
        import hypothesis  # noqa: F401
    except ImportError:
        # from a clone, the index's borgstore would be an older, unrelated one: name the clone
        hint = install_command(CORE_DISTRIBUTION, extra="testing")
        print(f"error: the conformance kit needs Hypothesis: {hint}", file=sys.stderr)
        return 2
    if args.rules:
        _check.print_rules(sys.stdout)
        return 0
    if args.url is None:
        parser.error("the URL of the store to check is missing (only --rules works without one)")
    middleware = [_check.middleware_entry(text) for text in args.middleware]
    try:
        failed = _check.run(args.url, args.profile, args.only, middleware=middleware, progress=Progress(sys.stderr))
    except KeyboardInterrupt:
        sys.stdout.flush()
        print("interrupted", file=sys.stderr)
        return 130
    return 1 if failed else 0


class Progress:
    """What runs now, on *stream*: a line when a check starts, then the examples of a state
    machine run so far.  On a terminal the line is refreshed in place at most every 0.2 s and
    cleared when the check ends; elsewhere a new line comes at most every *interval* seconds."""

    def __init__(self, stream: TextIO, interval: Optional[float] = None):
        self.stream = stream
        isatty = getattr(stream, "isatty", None)
        self.live = bool(isatty and isatty())
        self.interval = interval if interval is not None else (0.2 if self.live else LINE_INTERVAL)
        self.showing = False
        self.start("", "", None)

    def start(self, section: str, rule_id: str, examples: Optional[int]) -> None:
        """A check begins; *examples* is the budget of a state machine, None for other checks."""
        self.label = f"{section:7} {rule_id}"
        self.budget, self.done, self.failing = examples, 0, False
        self.started = self.shown = time.monotonic()
        if rule_id:
            self._show(f"RUN   {self.label}")

    def example(self, failed: bool) -> None:
        """One example of a state machine ended (*failed*: it raised an error)."""
        self.done += 1
        self.failing = self.failing or failed
        now = time.monotonic()
        if now - self.shown >= self.interval:
            self.shown = now
            # a refreshed line keeps saying what runs; a new line in a log is indented below it
            self._show(f"{'RUN   ' if self.live else '      '}{self.label}  {self._examples(now - self.started)}")

    def end(self) -> None:
        """The check ended: its result line comes next, on stdout."""
        if self.showing:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.showing = False

    def _examples(self, elapsed: float) -> str:
        if self.failing:
            return f"a failure found, shrinking it: {self.done} examples, {elapsed:.0f} s"
        if self.budget is None or self.done > self.budget:
            return f"{self.done} examples, {elapsed:.0f} s"
        left = elapsed / self.done * (self.budget - self.done)
        return f"{self.done}/{self.budget} examples, {elapsed:.0f} s, about {left:.0f} s left"

    def _show(self, text: str) -> None:
        if self.live:
            width = shutil.get_terminal_size().columns - 1
            self.stream.write(f"\r\033[K{text[:width]}")
            self.showing = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
