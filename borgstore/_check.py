"""``python -m borgstore check URL``: the conformance kit against a live store, without pytest.

Each check runs at its own scratch location below URL, which is removed afterwards; nothing that
was there before is read or changed.  The report lists every rule as passed, failed (with the
shrunk failing sequence) or not applicable; the exit status is 0 if nothing failed, else 1.
"""

import argparse
import sys
import time
import traceback


def _checks():
    """(section, rule id, what it promises, run(scratch_url, profile)) for every check of the kit."""
    from ._plugins import backend_for_url
    from .testing._backend_checks import BACKEND_CHECKS
    from .testing._backend_machine import MACHINE_RULES, run_backend_machine
    from .testing._settings import kit_settings
    from .testing._store_checks import STORE_CHECKS, store_factory
    from .testing._store_machine import STORE_MACHINE_RULES, run_store_machine

    def quiet(profile):
        # no example database in the user's directory; the failure is reported below, not printed
        return kit_settings(profile, database=None)

    checks = [
        (
            "backend",
            "state-machine",
            f"random operation sequences match a model ({len(MACHINE_RULES)} rules)",
            lambda url, profile: run_backend_machine(backend_for_url(url), quiet(profile)),
        )
    ]
    for rule_id, check in BACKEND_CHECKS.items():
        checks.append(
            (
                "backend",
                rule_id,
                _summary(check),
                lambda url, profile, check=check: check(backend_for_url(url), profile),
            )
        )
    checks.append(
        (
            "store",
            "store-state-machine",
            f"random Store call sequences match a model ({len(STORE_MACHINE_RULES)} rules)",
            lambda url, profile: run_store_machine(store_factory(url), quiet(profile)),
        )
    )
    for rule_id, check in STORE_CHECKS.items():
        checks.append(
            ("store", rule_id, _summary(check), lambda url, profile, check=check: check(store_factory(url), profile))
        )
    return checks


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


def run(url: str, profile: str = None, only=None, out=None) -> int:
    """Run the checks against scratch locations below *url*, print the report to *out*; return
    the number of failed checks."""
    from ._plugins import backend_for_url
    from .testing._live import remove_scratch, scratch_url
    from .testing._rules import NotApplicable, capabilities_of
    from .testing._settings import profile_name

    out = out or sys.stdout
    profile = profile_name(profile)
    backend = backend_for_url(url)  # a bad URL fails here, before anything is created
    caps = capabilities_of(backend)
    flags = ", ".join(name for name, value in caps.as_dict().items() if value is True) or "none"
    print(f"borgstore conformance check of {url}", file=out)
    print(f"backend {type(backend).__name__}; capabilities: {flags}; profile {profile}", file=out)
    print(f"each check runs at its own scratch location below {url} and removes it afterwards\n", file=out)
    counts = {"passed": 0, "failed": 0, "not applicable": 0}
    for section, rule_id, promise, check in _checks():
        if only and rule_id not in only:
            continue
        scratch = scratch_url(url)
        started = time.monotonic()
        details = []
        try:
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
                details.append(f"could not remove the scratch location {scratch}: {type(exc).__name__}: {exc}")
        counts[outcome] += 1
        label = {"passed": "PASS", "failed": "FAIL", "not applicable": "N/A "}[outcome]
        print(f"{label}  {section:7} {rule_id:26} {promise}  ({time.monotonic() - started:.1f} s)", file=out)
        for line in details:
            print(f"        {line}", file=out)
    print(
        f"\n{counts['passed']} passed, {counts['failed']} failed, {counts['not applicable']} not applicable", file=out
    )
    return counts["failed"]


def main(url: str, argv=()) -> int:
    """Entry of ``python -m borgstore check URL [--profile quick|deep] [--only RULE ...]``; returns
    the exit status: 0 all passed, 1 something failed, 2 the kit cannot run (Hypothesis missing)."""
    parser = argparse.ArgumentParser(prog="python -m borgstore check URL")
    parser.add_argument(
        "--profile",
        choices=("quick", "deep"),
        default=None,
        help="Hypothesis budget (default: $BORGSTORE_CONFORMANCE_PROFILE or quick)",
    )
    parser.add_argument("--only", action="append", metavar="RULE", help="run only this check (repeatable)")
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
    failed = run(url, args.profile, set(args.only) if args.only else None)
    return 1 if failed else 0


def print_rules(out) -> None:
    """Every rule id with its promise: the checks, and the rules the state machines check inside."""
    from .testing._backend_machine import MACHINE_RULES
    from .testing._store_machine import STORE_MACHINE_RULES

    print("checks (each is one line of the report; --only CHECK runs it alone):", file=out)
    for section, rule_id, promise, _ in _checks():
        print(f"  {section:7} {rule_id:26} {promise}", file=out)
    for title, rules in (("backend state-machine", MACHINE_RULES), ("store-state-machine", STORE_MACHINE_RULES)):
        print(f"rules the {title} checks (named in its failures):", file=out)
        for rule_id, promise in rules.items():
            print(f"  {rule_id:26} {promise}", file=out)
