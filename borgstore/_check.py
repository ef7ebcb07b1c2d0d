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
"""

import argparse
import contextlib
import logging
import sys
import time
import traceback


def _checks(middleware=()):
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

    def quiet(profile):
        # no example database in the user's directory; the failure is reported below, not printed
        return kit_settings(profile, database=None)

    def backend(url):
        return build_chain(backend_for_url(url), middleware) if middleware else backend_for_url(url)

    def stores(url):
        return store_factory(url, **({"middleware": store_chain_holding(middleware)} if middleware else {}))

    checks = [
        (
            "backend",
            "state-machine",
            f"random operation sequences match a model ({len(MACHINE_RULES)} rules)",
            lambda url, profile: run_backend_machine(backend(url), quiet(profile)),
        )
    ]
    for rule_id, check in BACKEND_CHECKS.items():
        checks.append(
            ("backend", rule_id, _summary(check), lambda url, profile, check=check: check(backend(url), profile))
        )
    checks.append(
        (
            "store",
            "store-state-machine",
            f"random Store call sequences match a model ({len(STORE_MACHINE_RULES)} rules)",
            lambda url, profile: run_store_machine(stores(url), quiet(profile)),
        )
    )
    for rule_id, check in STORE_CHECKS.items():
        checks.append(
            ("store", rule_id, _summary(check), lambda url, profile, check=check: check(stores(url), profile))
        )
    return checks


def _faults_checks(middleware=()):
    """The checks of the faults profile: the two state machines, each backend below ``retry``
    and a FaultInjector (and below *middleware*, which stays outermost)."""
    from ._plugins import backend_for_url
    from .store import build_chain
    from .testing._backend_machine import MACHINE_RULES
    from .testing._faults_profile import run_backend_machine_under_faults, run_store_machine_under_faults
    from .testing._middleware import store_chain_holding
    from .testing._settings import kit_settings
    from .testing._store_machine import STORE_MACHINE_RULES

    def quiet(profile):
        return kit_settings(profile, database=None)

    def backend(url):
        return build_chain(backend_for_url(url), middleware) if middleware else backend_for_url(url)

    def store_options():
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
def _retries_held_back(profile):
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


def middleware_entry(text: str):
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


def probe_capabilities(url, middleware=()):
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


def _summary(check) -> str:
    return (check.__doc__ or "").strip().splitlines()[0]


def _failure_text(exc) -> list:
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


def run(url: str, profile: str = None, only=None, out=None, middleware=()) -> int:
    """Run the checks against scratch locations below *url*, print the report to *out*; return
    the number of failed checks.  *middleware* (``[(name, options)]``) is put into the chain."""
    from ._plugins import backend_for_url, redact_url
    from .testing._live import remove_scratch, scratch_url
    from .testing._rules import NotApplicable
    from .testing._settings import profile_name

    out = out or sys.stdout
    profile = profile_name(profile)
    middleware = list(middleware)
    backend = backend_for_url(url)  # a bad URL fails here, before anything is created
    _print_header(url, type(backend).__name__, profile, middleware, out)
    counts = {"passed": 0, "failed": 0, "not applicable": 0}
    checks = _faults_checks(middleware) if profile == "faults" else _checks(middleware)
    for section, rule_id, promise, check in checks:
        if only and rule_id not in only:
            continue
        scratch = scratch_url(url)
        started = time.monotonic()
        details = []
        try:
            with _retries_held_back(profile):
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
                details.append(
                    f"could not remove the scratch location {redact_url(scratch)}: {type(exc).__name__}: {exc}"
                )
        counts[outcome] += 1
        label = {"passed": "PASS", "failed": "FAIL", "not applicable": "N/A "}[outcome]
        print(f"{label}  {section:7} {rule_id:29} {promise}  ({time.monotonic() - started:.1f} s)", file=out)
        for line in details:
            print(f"        {line}", file=out)
    print(
        f"\n{counts['passed']} passed, {counts['failed']} failed, {counts['not applicable']} not applicable", file=out
    )
    return counts["failed"]


def _print_header(url, backend_class, profile, middleware, out):
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
    print(f"each check runs at its own scratch location below {shown} and removes it afterwards\n", file=out)


def _flag(name, value) -> str:
    return name if value is True else f"{name}={','.join(value)}"


def main(url: str, argv=()) -> int:
    """Entry of ``python -m borgstore check URL [--profile quick|deep|faults] [--only RULE ...]
    [--middleware NAME[:OPTIONS] ...] [--rules]``; returns the exit status: 0 all passed,
    1 something failed, 2 the kit cannot run (Hypothesis missing)."""
    parser = argparse.ArgumentParser(prog="python -m borgstore check URL")
    parser.add_argument(
        "--profile",
        choices=("quick", "deep", "faults"),
        default=None,
        help="Hypothesis budget (default: $BORGSTORE_CONFORMANCE_PROFILE or quick); faults: the state "
        "machines only, with the backend below the retry middleware and injected faults",
    )
    parser.add_argument("--only", action="append", metavar="RULE", help="run only this check (repeatable)")
    parser.add_argument(
        "--middleware",
        action="append",
        default=[],
        metavar="NAME[:OPTIONS]",
        help="check the backend wrapped in this middleware and the Store with it in its chain "
        "(repeatable, outermost first); OPTIONS is a JSON object, default: options that leave a "
        "shipped middleware transparent, e.g. --middleware quota or --middleware 'quota:{\"limit\": 1000000000000}'",
    )
    parser.add_argument("--rules", action="store_true", help="list every rule the kit checks, then exit")
    args = parser.parse_args(list(argv))
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        print("error: the conformance kit needs Hypothesis: pip install 'borgstore[testing]'", file=sys.stderr)
        return 2
    if args.rules:
        print_rules(sys.stdout)
        return 0
    middleware = [middleware_entry(text) for text in args.middleware]
    failed = run(url, args.profile, set(args.only) if args.only else None, middleware=middleware)
    return 1 if failed else 0


def print_rules(out) -> None:
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
