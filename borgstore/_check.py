"""``python -m borgstore check URL``: the conformance kit against a live store, without pytest.

Each check runs at its own scratch location below URL, which is removed afterwards; nothing that
was there before is read or changed.  The report lists every rule as passed, failed (with the
shrunk failing sequence) or not applicable; the exit status is 0 if nothing failed, else 1.

Capabilities are read from an opened backend (a backend may learn them at open()): the header
shows them as a scratch location reports them once open, and every check reads them after its
own open().  ``--middleware NAME[:OPTIONS]`` checks a middleware: the backend checks run on the
backend wrapped in it, the Store checks on a Store with it in the chain.  URLs are printed with
their secrets redacted.

``--profile faults`` runs the two state machines under injected faults instead of every check:
the backend (and each Store's backend) below the ``retry`` middleware and a FaultInjector
(borgstore.testing._faults_profile); the retry layer's log records below ERROR are held back.

A live run leaves nothing behind: URL's location itself is removed afterwards if the check made
it (it did not exist before) and nothing is left in it; Hypothesis keeps its files in a cache
directory (borgstore.testing._live), and the state machines run without an example database, so
a run depends on its command line only (a backend's own pytest suite keeps Hypothesis's
database for replaying failures).  Ctrl-C removes the current scratch location and ends the run.
The command line (options, progress display, exit 130 on Ctrl-C) is borgstore._cli._check.
"""

import contextlib
import logging
import sys
import time
import traceback
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Optional,
    Protocol,
    Sequence,
    TextIO,
    Union,
)

if TYPE_CHECKING:
    import hypothesis

    from .backends._base import BackendBase, Capabilities
    from .middleware._base import Link
    from .store import Store
    from .testing._rules import KitCheck

#: a middleware of the chain under check: (name, options)
MiddlewareOptions = tuple[str, dict[str, Any]]
#: one check: (section, rule id, what it promises, run(scratch_url, profile))
Check = tuple[str, str, str, Callable[[str, str], None]]


class Progress(Protocol):
    """What :func:`run` tells about the checks as they run (borgstore._cli._check.Progress)."""

    def start(self, section: str, rule_id: str, examples: Optional[int]) -> None: ...

    def example(self, failed: bool) -> None: ...

    def end(self) -> None: ...


def _checks(middleware: Sequence[MiddlewareOptions] = ()) -> list[Check]:
    """(section, rule id, what it promises, run(scratch_url, profile)) for every check of the kit.

    With *middleware* (``[(name, options)]``, outermost first), the backend checks run on the
    backend wrapped in it, and the Store checks on a Store whose chain holds it."""
    from ._plugins import backend_for_url
    from .store import build_chain
    from .testing._backend_checks import BACKEND_CHECKS
    from .testing._backend_machine import MACHINE_RULES, run_backend_machine
    from .testing._middleware import store_chain_holding
    from .testing._settings import kit_settings
    from .testing._store_checks import STORE_CHECKS, store_factory
    from .testing._store_machine import STORE_MACHINE_RULES, run_store_machine

    def quiet(profile: str) -> "hypothesis.settings":
        # no example database in the user's directory; the failure is reported below, not printed
        return kit_settings(profile, database=None)

    def backend(url: str) -> Union["BackendBase", "Link"]:
        return build_chain(backend_for_url(url), middleware) if middleware else backend_for_url(url)

    def stores(url: str) -> Callable[..., "Store"]:
        return store_factory(url, **({"middleware": store_chain_holding(middleware)} if middleware else {}))

    def on_backend(check: "KitCheck") -> Callable[[str, str], None]:
        return lambda url, profile: check(backend(url), profile)

    def on_stores(check: "KitCheck") -> Callable[[str, str], None]:
        return lambda url, profile: check(stores(url), profile)

    checks: list[Check] = [
        (
            "backend",
            "state-machine",
            f"random operation sequences match a model ({len(MACHINE_RULES)} rules)",
            lambda url, profile: run_backend_machine(backend(url), quiet(profile)),
        )
    ]
    for rule_id, check in BACKEND_CHECKS.items():
        checks.append(("backend", rule_id, _summary(check), on_backend(check)))
    checks.append(
        (
            "store",
            "store-state-machine",
            f"random Store call sequences match a model ({len(STORE_MACHINE_RULES)} rules)",
            lambda url, profile: run_store_machine(stores(url), quiet(profile)),
        )
    )
    for rule_id, check in STORE_CHECKS.items():
        checks.append(("store", rule_id, _summary(check), on_stores(check)))
    return checks


def _faults_checks(middleware: Sequence[MiddlewareOptions] = ()) -> list[Check]:
    """The checks of the faults profile: the two state machines, each backend below ``retry``
    and a FaultInjector (and below *middleware*, which stays outermost)."""
    from ._plugins import backend_for_url
    from .store import build_chain
    from .testing._backend_machine import MACHINE_RULES
    from .testing._faults_profile import run_backend_machine_under_faults, run_store_machine_under_faults
    from .testing._middleware import store_chain_holding
    from .testing._settings import kit_settings
    from .testing._store_machine import STORE_MACHINE_RULES

    def quiet(profile: str) -> "hypothesis.settings":
        return kit_settings(profile, database=None)

    def backend(url: str) -> Union["BackendBase", "Link"]:
        return build_chain(backend_for_url(url), middleware) if middleware else backend_for_url(url)

    def store_options() -> dict[str, Any]:
        return {"middleware": store_chain_holding(middleware)} if middleware else {}

    under = "under injected faults, through retry"
    return [
        (
            "backend",
            "state-machine",
            f"random operation sequences match a model {under} ({len(MACHINE_RULES)} rules)",
            lambda url, profile: run_backend_machine_under_faults(backend(url), quiet(profile)),
        ),
        (
            "store",
            "store-state-machine",
            f"random Store call sequences match a model {under} ({len(STORE_MACHINE_RULES)} rules)",
            lambda url, profile: run_store_machine_under_faults(url, quiet(profile), **store_options()),
        ),
    ]


@contextlib.contextmanager
def _retries_held_back(profile: str) -> Iterator[None]:
    """In the faults profile every run retries hundreds of calls on purpose: keep the retry
    layer's warnings out of the report (a give-up, logged as an error, still shows)."""
    if profile != "faults":
        yield
        return
    logger = logging.getLogger("borgstore.middleware.retry")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def middleware_entry(text: str) -> MiddlewareOptions:
    """``NAME`` or ``NAME:{json options}`` -> (name, options).  Without options, a shipped
    middleware gets the options that make it transparent (TRANSPARENT_MIDDLEWARE)."""
    import json

    from ._plugins import middleware_factory
    from .testing._middleware import TRANSPARENT_MIDDLEWARE

    name, colon, options = text.partition(":")
    middleware_factory(name)  # an unknown name fails now, naming the installed ones
    if not colon:
        return name, dict(TRANSPARENT_MIDDLEWARE.get(name, {}))
    try:
        parsed = json.loads(options)
    except ValueError as exc:
        raise ValueError(f"--middleware {text!r}: the options are not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"--middleware {text!r}: the options must be a JSON object")
    return name, parsed


def probe_capabilities(
    url: str, middleware: Sequence[MiddlewareOptions] = ()
) -> Union[tuple["Capabilities", None], tuple[None, str]]:
    """Create and open a scratch location below *url*, read its capabilities, remove it.

    Returns (capabilities, None), or (None, why) if the location could not be set up."""
    from ._plugins import backend_for_url
    from .store import build_chain
    from .testing._backend_base import opened_capabilities
    from .testing._live import remove_scratch, scratch_url

    scratch = scratch_url(url)
    try:
        backend = backend_for_url(scratch)
        return opened_capabilities(build_chain(backend, middleware) if middleware else backend), None
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        try:
            remove_scratch(scratch)
        except Exception:
            pass


def _summary(check: Callable[..., Any]) -> str:
    return (check.__doc__ or "").strip().splitlines()[0]


def _failure_text(exc: Exception) -> list[str]:
    from .testing._rules import ConformanceFailure

    if isinstance(exc, ConformanceFailure):
        lines = [f"broken rule: {exc.rule}: {exc.message}"]
    else:
        lines = [f"unexpected {type(exc).__name__}: {exc}"]
        lines += traceback.format_exception(exc)[-4:-1]
    notes = [line for note in getattr(exc, "__notes__", []) for line in str(note).splitlines()]
    steps = [
        line for line in notes if line.strip() and not line.startswith(("You can reproduce", "Explanation", "    "))
    ]
    if steps:
        lines.append("shrunk failing sequence:")
        lines += [f"  {line}" for line in steps]
    return lines


def selected_checks(checks: Sequence[Check], only: Optional[Collection[str]], profile: str) -> list[Check]:
    """The entries of *checks* whose rule id is in *only* (all without *only*).  A name that is
    no check of *profile* raises ValueError naming the valid ones, before anything runs."""
    if not only:
        return list(checks)
    names = [rule_id for _, rule_id, _, _ in checks]
    unknown = [name for name in dict.fromkeys(only) if name not in names]
    if unknown:
        problems = "; ".join(_unknown_check(name, names, profile) for name in unknown)
        raise ValueError(f"{problems}; the checks are: {', '.join(names)}")
    return [entry for entry in checks if entry[1] in only]


def _unknown_check(name: str, names: list[str], profile: str) -> str:
    import difflib

    from .testing._backend_machine import MACHINE_RULES
    from .testing._store_machine import STORE_MACHINE_RULES

    text = f"--only {name!r}: no such check"
    if name in MACHINE_RULES or name in STORE_MACHINE_RULES:
        machine = "state-machine" if name in MACHINE_RULES else "store-state-machine"
        text = f"--only {name!r}: a rule checked inside the {machine} check (--only {machine} runs it)"
    elif profile == "faults" and any(name == rule_id for _, rule_id, _, _ in _checks()):
        text = f"--only {name!r}: not run by --profile faults, which runs only the state machines"
    else:
        close = difflib.get_close_matches(name, names, n=1)
        if close:
            text += f" (did you mean {close[0]!r}?)"
    return text


def run(
    url: str,
    profile: Optional[str] = None,
    only: Optional[Collection[str]] = None,
    out: Optional[TextIO] = None,
    middleware: Iterable[MiddlewareOptions] = (),
    progress: Optional[Progress] = None,
) -> int:
    """Run the checks against scratch locations below *url* (at *url* itself, one after another,
    where its backend serves one store per URL: ``BackendSpec.locations_below``; ValueError if a
    store is there already), print the report to *out*; return the number of failed checks.
    *middleware* (``[(name, options)]``) is put into the chain.

    *progress* (optional) is told ``start(section, rule_id, examples)`` (*examples*: the state
    machines' budget, else None), ``example(failed)`` after each state machine example, and
    ``end()``.  Ctrl-C (KeyboardInterrupt) removes the current scratch location, prints the
    counts so far and is raised again.  If *url*'s location did not exist before, it is removed
    afterwards if nothing is left in it."""
    from ._plugins import backend_for_url, redact_url
    from .testing._live import hypothesis_files_in_cache, location_exists, needs_empty_url, remove_created_root
    from .testing._settings import profile_name

    out = out or sys.stdout
    profile = profile_name(profile)
    chain = list(middleware)
    checks = selected_checks(_faults_checks(chain) if profile == "faults" else _checks(chain), only, profile)
    backend = backend_for_url(url)  # a bad URL fails here, before anything is created
    refused = needs_empty_url(url)
    if refused:
        raise ValueError(refused)
    existed = location_exists(url)
    try:
        with hypothesis_files_in_cache():
            _print_header(url, type(backend).__name__, profile, chain, out)
            return _run_checks(url, profile, checks, out, progress)
    finally:
        if existed is False:
            problem = remove_created_root(url)
            if problem:
                print(f"the location {redact_url(url)} was made by this check but stays: {problem}", file=out)


def _run_checks(url: str, profile: str, checks: list[Check], out: TextIO, progress: Optional[Progress]) -> int:
    from .testing._settings import kit_settings

    counts = {"passed": 0, "failed": 0, "not applicable": 0}
    budget = kit_settings(profile).max_examples
    for index, (section, rule_id, promise, check) in enumerate(checks):
        if progress:
            progress.start(section, rule_id, budget if rule_id.endswith("state-machine") else None)
        started = time.monotonic()
        try:
            outcome, details = _run_one(url, profile, check, progress)
        except KeyboardInterrupt:
            if progress:
                progress.end()
            print(f"\ninterrupted during {section} {rule_id} after {time.monotonic() - started:.1f} s", file=out)
            print(f"{len(checks) - index - 1} checks not run; {_counts_text(counts)}", file=out)
            raise
        if progress:
            progress.end()
        counts[outcome] += 1
        label = {"passed": "PASS", "failed": "FAIL", "not applicable": "N/A "}[outcome]
        print(f"{label}  {section:7} {rule_id:29} {promise}  ({time.monotonic() - started:.1f} s)", file=out)
        for line in details:
            print(f"        {line}", file=out)
        out.flush()  # before the next progress line on stderr, when both go to one log
    print(f"\n{_counts_text(counts)}", file=out)
    return counts["failed"]


def _run_one(
    url: str, profile: str, check: Callable[[str, str], None], progress: Optional[Progress]
) -> tuple[str, list[str]]:
    """Run *check* at a new scratch location below *url* and remove it (also when interrupted);
    returns (outcome, detail lines)."""
    from hypothesis.reporting import with_reporter

    from ._plugins import redact_url
    from .testing._live import examples_counted, remove_scratch, scratch_url
    from .testing._rules import NotApplicable

    scratch = scratch_url(url)
    details: list[str] = []
    counted = examples_counted(progress.example) if progress else contextlib.nullcontext()
    try:
        # Hypothesis reports nothing a user of check needs outside the failure notes read below,
        # and on Ctrl-C only a "reproduce with @seed" hint for a test that is no failure
        with _retries_held_back(profile), counted, with_reporter(lambda text: None):
            check(scratch, profile)
        outcome = "passed"
    except NotApplicable as exc:
        outcome, details = "not applicable", [str(exc)]
    except Exception as exc:
        outcome, details = "failed", _failure_text(exc)
    finally:
        try:
            remove_scratch(scratch)
        except Exception as exc:
            details.append(f"could not remove the scratch location {redact_url(scratch)}: {type(exc).__name__}: {exc}")
    return outcome, details


def _counts_text(counts: dict[str, int]) -> str:
    return f"{counts['passed']} passed, {counts['failed']} failed, {counts['not applicable']} not applicable"


def _print_header(
    url: str, backend_class: str, profile: str, middleware: Sequence[MiddlewareOptions], out: TextIO
) -> None:
    from ._plugins import redact_url
    from .testing._settings import FAULTS

    shown = redact_url(url)
    print(f"borgstore conformance check of {shown}", file=out)
    caps, problem = probe_capabilities(url, middleware)
    if caps is None:
        flags = f"unknown: opening a scratch location failed: {problem}"
    else:
        flags = ", ".join(_flag(name, value) for name, value in caps.as_dict().items() if value) or "none"
    print(f"backend {backend_class}; capabilities once open: {flags}; profile {profile}", file=out)
    if middleware:
        print(f"middleware in the chain: {', '.join(name for name, _ in middleware)}", file=out)
    if profile == "faults":
        print(
            f"faults: {FAULTS['rate']:.0%} of the calls fail (seed {FAULTS['seed']}), below the retry "
            f"middleware ({FAULTS['attempts']} attempts); only the state machines run",
            file=out,
        )
    from .testing._live import scratch_url

    if scratch_url(url) == url:
        where = (
            f"each check runs at {shown} itself (its backend serves one store per URL) and destroys the store it made"
        )
    else:
        where = f"each check runs at its own scratch location below {shown} and removes it afterwards"
    print(where + "\n", file=out, flush=True)


def _flag(name: str, value: Any) -> str:
    return name if value is True else f"{name}={','.join(value)}"


def main(url: Optional[str], argv: Iterable[str] = ()) -> int:
    """``borgstore check URL [options]`` for callers that hold the URL apart from the options
    (*url* None: none given, as with ``--rules``); returns the exit status: 0 all passed,
    1 something failed, 2 the kit cannot run (Hypothesis missing), 130 interrupted.  The options
    are those of the ``check`` subcommand (borgstore._cli._check)."""
    from ._cli._check import check_parser, run_check

    parser = check_parser()
    return run_check(parser.parse_args([*([url] if url else []), *argv]), parser)


def print_rules(out: TextIO) -> None:
    """Every rule id with its promise: the checks, the rules the state machines check inside, and
    the promises the kit cannot check."""
    from .testing._backend_capabilities import CAPABILITY_RULES
    from .testing._backend_machine import MACHINE_RULES
    from .testing._faults_profile import FAULTS_RULES
    from .testing._rules import UNCHECKED_RULES
    from .testing._store_machine import STORE_MACHINE_RULES

    print("checks (each is one line of the report; --only CHECK runs it alone):", file=out)
    for section, rule_id, promise, _ in _checks():
        print(f"  {section:7} {rule_id:29} {promise}", file=out)
    for title, rules in (("backend state-machine", MACHINE_RULES), ("store-state-machine", STORE_MACHINE_RULES)):
        print(f"rules the {title} checks (named in its failures):", file=out)
        for rule_id, promise in rules.items():
            print(f"  {rule_id:29} {promise}", file=out)
    print("capability flags (read from the opened backend) and the rules that check them:", file=out)
    for flag, rule_ids in CAPABILITY_RULES.items():
        print(f"  {flag:29} {', '.join(rule_ids)}", file=out)
    print("rules the state machines add under --profile faults:", file=out)
    for rule_id, promise in FAULTS_RULES.items():
        print(f"  {rule_id:29} {promise}", file=out)
    print("not checked by the kit (no generic check can provoke them; a backend's own tests must):", file=out)
    for rule_id, promise in UNCHECKED_RULES.items():
        print(f"  {rule_id:29} {promise}", file=out)
