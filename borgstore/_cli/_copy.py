"""The ``copy`` subcommand: a whole store from one backend to another (borgstore._copy)."""

import argparse
import contextlib
import signal
import sys
import threading
from types import FrameType
from typing import Iterator, Optional

DESCRIPTION = """\
Copy every item of the store at SRC to the store at DST (created if missing), by backend name:
the nesting, the soft-deleted (.del) items and the empty directories are reproduced, temp (.tmp)
items never travel.  Items already at DST with the same size and hash are skipped, so running
the same command again resumes an interrupted copy.  Ctrl-C stops cleanly (a second Ctrl-C
abandons the transfers in flight); no partial item ever appears at DST.
"""

EPILOG = """\
examples:
  borgstore copy file:///srv/repo sftp://backup@host/repo
  borgstore copy --verify --transfers 8 sftp://backup@host/repo rclone:b2:bucket/repo
  borgstore copy --dry-run --json file:///srv/repo file:///mnt/usb/repo

exit status: 0 done, 1 an item failed or --verify found a mismatch, 2 a usage or store error,
130 interrupted.
"""


def _transfers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {text!r}")
    return value


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``copy`` to the ``borgstore`` parser."""
    copy = commands.add_parser(
        "copy",
        help="copy a whole store to another backend (resumable, verifiable)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    copy.add_argument("source", metavar="SRC", help="the store to copy, e.g. file:///srv/repo")
    copy.add_argument("destination", metavar="DST", help="where to copy it; created if it does not exist")
    copy.add_argument(
        "--transfers", type=_transfers, default=4, metavar="N", help="items in flight at once (default: %(default)s)"
    )
    copy.add_argument(
        "--verify",
        action="store_true",
        help="compare hashes after each copy (on the server where a backend can); report items that differ "
        "at DST and exit 1 if any did",
    )
    copy.add_argument(
        "-n", "--dry-run", action="store_true", help="list and compare, say what would be copied, change nothing"
    )
    copy.add_argument("--json", action="store_true", help="print JSON lines (events and a summary) on stdout")
    copy.add_argument(
        "--progress-interval",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="at most one progress report per SECONDS (0: after every item; default: 1 for --json, "
        "5 for plain lines on a terminal without tqdm)",
    )
    copy.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from .._copy import Copy
    from .._progress import make_reporter

    stop = threading.Event()
    reporter = make_reporter(json_lines=args.json, interval=args.progress_interval, out=sys.stdout, err=sys.stderr)
    job = Copy(
        args.source,
        args.destination,
        transfers=args.transfers,
        verify=args.verify,
        dry_run=args.dry_run,
        reporter=reporter,
        stop=stop,
    )
    with _interrupts_stop(stop):
        try:
            summary = job.run()
        except KeyboardInterrupt:
            summary = job.summary  # reported by the job already
    return summary.exit_status


@contextlib.contextmanager
def _interrupts_stop(stop: threading.Event) -> Iterator[None]:
    """While copying, the first SIGINT asks the copy to stop (it reports that itself); the
    second raises KeyboardInterrupt, which abandons the transfers in flight."""

    def on_sigint(signum: int, frame: Optional[FrameType]) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; the default stays
        return
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
