"""What a long job (``borgstore copy``) counts and how it shows it.

:class:`CopySummary` holds the counters, :class:`Reporter` is what the job calls as it works,
and three displays implement it (:func:`make_reporter` picks one):

* on a terminal (stderr is a TTY): a tqdm bar with bytes, items, rate and ETA; without tqdm
  (``pip install borgstore[cli]``), a plain line every few seconds;
* ``--json``: JSON lines on stdout, one per event (start, progress at most every *interval*
  seconds, or after every item with 0; error, mismatch, interrupted; summary);
* elsewhere (a script, a cron job): nothing but problems and the final summary on stderr.
"""

import json
import time
from dataclasses import dataclass, field, fields
from types import ModuleType
from typing import Any, Optional, TextIO

#: seconds between plain progress lines on a terminal without tqdm
LINE_INTERVAL = 5.0
#: seconds between JSON progress events
JSON_INTERVAL = 1.0


@dataclass
class CopySummary:
    """What a copy did (or, with ``dry_run``, would do); the counters grow while it runs."""

    source: str
    destination: str
    dry_run: bool = False
    verify: bool = False
    transfers: int = 4
    hash: str = "sha256"
    items: int = 0  #: items to consider (the source's; quota.hid only where it travels)
    bytes: int = 0
    items_done: int = 0
    bytes_done: int = 0
    copied: int = 0  #: with dry_run: would be copied
    bytes_copied: int = 0
    skipped: int = 0  #: already at the destination with the same size and hash
    failed: int = 0
    replaced: int = 0  #: of the copied items: those at the destination with other content
    not_started: int = 0
    abandoned: int = 0  #: in flight when a second interrupt ended the copy
    extra: int = 0  #: items at the destination that the source does not have (left alone)
    directories: int = 0  #: empty source directories missing at the destination
    directories_created: int = 0
    destination_created: bool = False
    interrupted: bool = False
    seconds: float = 0.0
    failures: list[list[str]] = field(default_factory=list)  #: [name, message] per failure
    mismatches: list[str] = field(default_factory=list)  #: names --verify found different
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["seconds"] = round(self.seconds, 3)
        return values

    @property
    def exit_status(self) -> int:
        """130 interrupted, 1 a failure or a verify mismatch, else 0."""
        if self.interrupted:
            return 130
        return 1 if self.failed or self.mismatches else 0


class Reporter:
    """What a running copy tells, method by method.  The copy calls them one at a time (under
    its lock), from whichever thread did the work.  This base class shows nothing."""

    def listing(self, side: str, summary: CopySummary) -> None:
        """The copy starts listing the *side* ("source" or "destination")."""

    def start(self, summary: CopySummary) -> None:
        """The listings are done, the totals known; transfers begin."""

    def item(self, action: str, name: str, size: int, summary: CopySummary) -> None:
        """One item is done: *action* is "copied", "skipped" or "failed"."""

    def problem(self, kind: str, name: str, message: str, summary: CopySummary) -> None:
        """*kind* "error" (an item failed) or "mismatch" (--verify found a difference)."""

    def stopping(self, in_flight: int, summary: CopySummary) -> None:
        """A stop was asked for: no transfer starts any more, *in_flight* ones finish."""

    def tick(self, summary: CopySummary) -> None:
        """Called a few times a second while transfers run."""

    def finish(self, summary: CopySummary) -> None:
        """The copy is over (finished or interrupted); *summary* is final."""


def make_reporter(*, json_lines: bool, interval: Optional[float], out: TextIO, err: TextIO) -> Reporter:
    """The display for where the output goes: JSON lines on *out* with *json_lines*, a bar (or
    plain lines) on *err* if it is a terminal, else only problems and the summary on *err*."""
    if json_lines:
        return JsonLines(out, JSON_INTERVAL if interval is None else interval)
    if err.isatty():
        try:
            import tqdm
        except ImportError:
            return PlainLines(err, LINE_INTERVAL if interval is None else interval)
        return Bar(err, tqdm)
    return Quiet(err)


def size_text(size: int) -> str:
    """*size* bytes in decimal units, as the bar shows them (``3.4 MB``)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def progress_fields(summary: CopySummary) -> dict[str, Any]:
    """The figures of one progress report: done and total, rate (bytes/s), ETA (s, or None)."""
    seconds = max(summary.seconds, 1e-9)
    rate = summary.bytes_done / seconds
    remaining = summary.bytes - summary.bytes_done
    return {
        "items_done": summary.items_done,
        "items": summary.items,
        "bytes_done": summary.bytes_done,
        "bytes": summary.bytes,
        "copied": summary.copied,
        "bytes_copied": summary.bytes_copied,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "seconds": round(summary.seconds, 3),
        "rate": round(rate, 1),
        "eta": round(remaining / rate, 1) if rate > 0 else None,
    }


def summary_lines(summary: CopySummary) -> list[str]:
    """The final summary for people: one line of counts, then what needs their attention."""
    s = summary
    verb, skip = ("would copy", "would skip") if s.dry_run else ("copied", "skipped")
    head = "interrupted: " if s.interrupted else ("dry run: " if s.dry_run else "")
    line = (
        f"{head}{verb} {s.copied} of {s.items} items ({size_text(s.bytes_copied)}), {skip} {s.skipped} "
        f"already at the destination, {s.failed} failed, in {s.seconds:.1f} s"
    )
    lines = [line]
    if s.replaced:
        lines.append(
            f"{s.replaced} of them {'would replace' if s.dry_run else 'replaced'} other content at the destination"
        )
    if s.directories and not s.interrupted:
        made = f"would make {s.directories}" if s.dry_run else f"made {s.directories_created} of {s.directories}"
        lines.append(f"{made} empty directories")
    if s.extra:
        lines.append(f"the destination has {s.extra} item(s) the source has not (left alone)")
    if s.mismatches:
        lines.append(f"verify: {len(s.mismatches)} mismatch(es): " + ", ".join(s.mismatches[:10]))
    if s.failures:
        lines.append("failed: " + ", ".join(name for name, _ in s.failures[:10]))
    lines.extend(s.notes)
    if s.interrupted:
        lines.append(
            f"{s.not_started} not started, {s.abandoned} abandoned in flight: run the same command again to resume"
        )
    elif s.dry_run:
        lines.append("nothing was changed")
    return lines


class Quiet(Reporter):
    """No progress: problems as they happen, then the summary, on *err*."""

    def __init__(self, err: TextIO):
        self.err = err

    def say(self, text: str) -> None:
        print(text, file=self.err, flush=True)

    def problem(self, kind: str, name: str, message: str, summary: CopySummary) -> None:
        self.say(f"{'verify mismatch' if kind == 'mismatch' else 'failed'}: {name}: {message}")

    def stopping(self, in_flight: int, summary: CopySummary) -> None:
        waiting = f", waiting for the {in_flight} in flight (interrupt again to abandon them)" if in_flight else ""
        self.say(f"interrupted: no new transfer starts{waiting}")

    def finish(self, summary: CopySummary) -> None:
        for line in summary_lines(summary):
            self.say(line)


class PlainLines(Quiet):
    """A terminal without tqdm: a progress line at most every *interval* seconds."""

    def __init__(self, err: TextIO, interval: float):
        super().__init__(err)
        self.interval = interval
        self._last = time.monotonic()
        self._shown = (0, 0)

    def listing(self, side: str, summary: CopySummary) -> None:
        self.say(f"listing the {side} ...")

    def start(self, summary: CopySummary) -> None:
        self.say(f"copying {summary.items} items ({size_text(summary.bytes)}) with {summary.transfers} transfers")

    def item(self, action: str, name: str, size: int, summary: CopySummary) -> None:
        self.tick(summary)

    def tick(self, summary: CopySummary) -> None:
        now = time.monotonic()
        done = (summary.items_done, summary.bytes_done)
        if done == self._shown or now - self._last < self.interval:
            return
        self._last, self._shown = now, done
        f = progress_fields(summary)
        eta = "?" if f["eta"] is None else f"{f['eta']:.0f} s"
        self.say(
            f"{f['items_done']}/{f['items']} items, {size_text(f['bytes_done'])}/{size_text(f['bytes'])}, "
            f"{size_text(int(f['rate']))}/s, ETA {eta}"
        )


class Bar(Quiet):
    """A terminal with tqdm: one bar of bytes, with items done, rate and ETA."""

    FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B{postfix} [{elapsed}<{remaining}, {rate_fmt}]"

    def __init__(self, err: TextIO, tqdm_module: ModuleType):
        super().__init__(err)
        self.tqdm = tqdm_module.tqdm
        self.bar: Any = None  # a tqdm bar from start() to finish()

    def say(self, text: str) -> None:
        if self.bar is None:
            super().say(text)
        else:
            self.bar.write(text, file=self.err)

    def listing(self, side: str, summary: CopySummary) -> None:
        self.say(f"listing the {side} ...")

    def start(self, summary: CopySummary) -> None:
        desc = "dry run" if summary.dry_run else "copy"
        self.bar = self.tqdm(
            total=summary.bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1000,
            desc=desc,
            file=self.err,
            dynamic_ncols=True,
            bar_format=self.FORMAT,
            smoothing=0.1,
        )
        self._items(summary)

    def _items(self, summary: CopySummary) -> None:
        self.bar.set_postfix_str(f"{summary.items_done}/{summary.items} items", refresh=False)

    def item(self, action: str, name: str, size: int, summary: CopySummary) -> None:
        self._items(summary)
        self.bar.update(size)

    def finish(self, summary: CopySummary) -> None:
        if self.bar is not None:
            self._items(summary)
            self.bar.refresh()
            self.bar.close()
            self.bar = None
        super().finish(summary)


class JsonLines(Reporter):
    """``--json``: one JSON object per line on *out*, each with an ``event`` key."""

    def __init__(self, out: TextIO, interval: float):
        self.out = out
        self.interval = interval
        self._last = 0.0
        self._shown: Optional[tuple[int, int]] = None

    def emit(self, event: str, **values: Any) -> None:
        self.out.write(json.dumps({"event": event, **values}) + "\n")
        self.out.flush()

    def listing(self, side: str, summary: CopySummary) -> None:
        self.emit("listing", side=side)

    def start(self, summary: CopySummary) -> None:
        keys = (
            "source",
            "destination",
            "items",
            "bytes",
            "transfers",
            "hash",
            "verify",
            "dry_run",
            "destination_created",
            "extra",
            "directories",
        )
        self.emit("start", **{key: getattr(summary, key) for key in keys})
        self._last = time.monotonic()

    def item(self, action: str, name: str, size: int, summary: CopySummary) -> None:
        self.tick(summary)

    def tick(self, summary: CopySummary) -> None:
        now = time.monotonic()
        figures = progress_fields(summary)
        done = (figures["items_done"], figures["bytes_done"])
        if done == self._shown or (self.interval > 0 and now - self._last < self.interval):
            return
        self._last, self._shown = now, done
        self.emit("progress", **figures)

    def problem(self, kind: str, name: str, message: str, summary: CopySummary) -> None:
        self.emit(kind, name=name, message=message)

    def stopping(self, in_flight: int, summary: CopySummary) -> None:
        self.emit("interrupted", in_flight=in_flight)

    def finish(self, summary: CopySummary) -> None:
        self.emit("summary", **summary.as_dict(), exit_status=summary.exit_status)
