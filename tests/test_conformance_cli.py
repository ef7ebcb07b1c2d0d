"""The kit without writing code: `python -m borgstore check URL` and `pytest --pyargs borgstore.testing
--borgstore-url URL` check a store at scratch locations below URL and leave nothing behind."""

import io
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from borgstore import _check, _plugins, hookimpl
from borgstore._plugins import BackendSpec
from borgstore.backends.errors import BackendURLInvalid, ObjectNotFound
from borgstore.backends.memory import MemoryBackend
from borgstore.testing._backend_checks import BACKEND_CHECKS
from borgstore.testing._settings import PROFILE_VARIABLE, kit_settings
from borgstore.testing._store_checks import STORE_CHECKS

REPO = Path(__file__).resolve().parent.parent

ALL_CHECKS = ["state-machine", *BACKEND_CHECKS, "store-state-machine", *STORE_CHECKS]


def _report(url, *argv):
    out = io.StringIO()
    failed = _check.run(url, *argv, out=out)
    return failed, out.getvalue()


#: the memory backend writes, and reserves no name suffix
NOT_APPLICABLE_TO_MEMORY = ("read-only-refuses-writes", "reserved-suffixes-refused")


def test_check_memory_passes_every_rule():
    """`check memory:` reports every check of the kit as passed, but the ones for read-only backends
    and for storage that reserves name suffixes."""
    failed, report = _report("memory:")
    assert failed == 0, report
    for rule in ALL_CHECKS:
        label = "N/A" if rule in NOT_APPLICABLE_TO_MEMORY else "PASS"
        assert any(line.startswith(label) and f" {rule} " in line for line in report.splitlines()), (rule, report)
    assert f"{len(ALL_CHECKS) - 2} passed, 0 failed, 2 not applicable" in report
    assert "capabilities once open: read, write, list, needs_mkdir, atomic_store, thread_safe, list_tree" in report


@pytest.fixture
def middleware_plugin():
    """A middleware plugin 'stalecache': a read cache that never forgets a deleted item."""
    from borgstore._plugins import MiddlewareSpec
    from borgstore.middleware import Middleware

    class StaleCache(Middleware):
        def __init__(self, inner):
            super().__init__(inner)
            self.values = {}

        def load(self, name, *, size=None, offset=0):
            value = self.values.setdefault(name, self.inner.load(name))
            start = max(len(value) + offset, 0) if offset < 0 else offset
            return value[start:] if size is None else value[start : start + size]

        def store(self, name, value):
            self.values.pop(name, None)
            return self.inner.store(name, value)

    plugin = types.ModuleType("borgstore_test_stalecache")
    plugin.borgstore_middleware = hookimpl(lambda: [MiddlewareSpec("stalecache", StaleCache, "test")])
    _plugins.plugin_manager().register(plugin, name="borgstore-test-stalecache")
    yield "stalecache"
    _plugins.plugin_manager().unregister(name="borgstore-test-stalecache")


def test_check_with_a_middleware_in_the_chain(middleware_plugin, capsys):
    """`check URL --middleware NAME` checks the backend wrapped in NAME and the Store with NAME in its
    chain: a shipped middleware passes, a broken one fails by the rule its bug breaks."""
    only = ["--only", "state-machine", "--only", "store-state-machine"]
    assert _check.main("memory:", ["--middleware", "quota", *only]) == 0
    report = capsys.readouterr().out
    assert "middleware in the chain: quota" in report and "2 passed, 0 failed" in report
    status = _check.main("memory:", ["--middleware", middleware_plugin, "--only", "state-machine"])
    report = capsys.readouterr().out
    assert status == 1
    assert "FAIL  backend state-machine" in report
    assert "broken rule: delete" in report or "broken rule: move" in report, report


def test_check_middleware_option_errors():
    """An unknown middleware or options that are no JSON object are a clear error before anything runs."""
    with pytest.raises(ValueError, match="unknown middleware 'nosuch'"):
        _check.main("memory:", ["--middleware", "nosuch"])
    with pytest.raises(ValueError, match="JSON"):
        _check.main("memory:", ["--middleware", "quota:{limit"])
    assert _check.middleware_entry('quota:{"limit": 5}') == ("quota", {"limit": 5})


def test_check_output_hides_a_password_in_the_url(capsys):
    """The report shows the URL with its password redacted, also in the scratch locations."""
    plugin = types.ModuleType("borgstore_test_secretmem")

    def factory(url):
        return MemoryBackend(url.rpartition("/")[2])

    plugin.borgstore_backends = hookimpl(lambda: [BackendSpec(schemes=("secretmem",), factory=factory)])
    _plugins.plugin_manager().register(plugin, name="borgstore-test-secretmem")
    try:
        assert _check.main("secretmem://alice:hunter2@host/base", ["--only", "lifecycle"]) == 0
    finally:
        _plugins.plugin_manager().unregister(name="borgstore-test-secretmem")
    report = capsys.readouterr().out
    assert "hunter2" not in report
    assert "secretmem://alice:***@host/base" in report


def test_check_file_url_passes_and_leaves_nothing_behind(tmp_path):
    """`check file://DIR` passes and removes every scratch location it made below DIR."""
    if "file" not in _plugins.backends():
        pytest.fail("the posixfs plugin (borgstore-backend-posixfs) is not installed")
    (tmp_path / "unrelated").write_bytes(b"not ours")
    assert _check.main(f"file://{tmp_path}", []) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unrelated"]
    assert (tmp_path / "unrelated").read_bytes() == b"not ours"


class DeleteMissingSilent(MemoryBackend):
    def delete(self, name):
        try:
            super().delete(name)
        except ObjectNotFound:
            pass


@pytest.fixture
def broken_scheme():
    """A URL scheme served by a backend whose delete() ignores missing items."""
    plugin = types.ModuleType("borgstore_test_broken")

    @hookimpl
    def borgstore_backends():
        return [
            BackendSpec(
                schemes=("brokendelete",),
                factory=lambda url: DeleteMissingSilent(url.partition(":")[2]),
                capabilities=MemoryBackend.capabilities,
            )
        ]

    plugin.borgstore_backends = borgstore_backends
    _plugins.plugin_manager().register(plugin, name="borgstore-test-broken")
    yield "brokendelete:"
    _plugins.plugin_manager().unregister(name="borgstore-test-broken")


def test_check_reports_the_broken_rule_with_the_shrunk_sequence(broken_scheme, capsys):
    """A failing check prints FAIL, the rule it broke and the shrunk failing sequence; the exit status is 1."""
    status = _check.main(broken_scheme, ["--only", "state-machine", "--only", "open-missing"])
    report = capsys.readouterr().out
    assert status == 1
    assert "FAIL  backend state-machine" in report
    assert "PASS  backend open-missing" in report
    assert "broken rule: delete-missing" in report
    sequence = report[report.index("shrunk failing sequence:") :]
    assert "state.delete(data=data(...))" in sequence
    assert "1 passed, 1 failed, 0 not applicable" in report


def test_check_bad_url_fails_before_creating_anything():
    """An unknown scheme raises BackendURLInvalid (the CLI turns it into an error message)."""
    with pytest.raises(BackendURLInvalid):
        _check.main("nosuchscheme:/x", [])


def test_check_cli_end_to_end(tmp_path):
    """`python -m borgstore check memory:` prints a passing report and exits with 0."""
    result = subprocess.run(
        [sys.executable, "-m", "borgstore", "check", "memory:", "--only", "lifecycle"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS  backend lifecycle" in result.stdout


def _pytest_live(url, *extra, env=None):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--pyargs",
            "borgstore.testing",
            "--borgstore-url",
            url,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=os.path.dirname(__file__),
    )


def test_pytest_option_runs_the_kit_against_a_url():
    """`pytest --pyargs borgstore.testing --borgstore-url memory:` runs every check of the kit."""
    result = _pytest_live("memory:")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(ALL_CHECKS) - 2} passed, 2 skipped" in result.stdout


def test_pytest_option_leaves_nothing_behind(tmp_path):
    """With --borgstore-url file://DIR, each test works below DIR and removes what it made."""
    if "file" not in _plugins.backends():
        pytest.fail("the posixfs plugin (borgstore-backend-posixfs) is not installed")
    (tmp_path / "unrelated").write_bytes(b"not ours")
    result = _pytest_live(f"file://{tmp_path}", "-k", "lifecycle or create_non_empty or two_instances")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unrelated"]


def test_pytest_without_url_skips_the_live_tests():
    """Without --borgstore-url the live tests are skipped with a reason, not run against anything."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--pyargs", "borgstore.testing"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(__file__),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(ALL_CHECKS)} skipped" in result.stdout
    assert "give --borgstore-url URL" in result.stdout


def test_deep_profile_from_the_environment(monkeypatch):
    """BORGSTORE_CONFORMANCE_PROFILE=deep gives the deep budget; an unknown profile is a clear error."""
    quick = kit_settings("quick")
    monkeypatch.setenv(PROFILE_VARIABLE, "deep")
    assert kit_settings().max_examples > quick.max_examples
    monkeypatch.setenv(PROFILE_VARIABLE, "thorough")
    with pytest.raises(ValueError, match="thorough"):
        kit_settings()


def test_pytest_plugin_loads_without_hypothesis():
    """The pytest11 plugin loads in every pytest run, so it must not need Hypothesis (an extra)."""
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import borgstore.testing.pytest_plugin, borgstore.testing\n"
        "print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


WITHOUT_HYPOTHESIS = (
    "import sys; sys.path.insert(0, {core!r}); sys.modules['hypothesis'] = None\n"
    "from borgstore import __main__\n"
    "sys.exit(__main__.main(['check', 'memory:']))"
)


def _check_without_hypothesis(core_parent: Path) -> subprocess.CompletedProcess:
    """`borgstore check memory:` without Hypothesis, the core imported from *core_parent*."""
    shutil.copytree(REPO / "borgstore", core_parent / "borgstore", ignore=shutil.ignore_patterns("__pycache__"))
    code = WITHOUT_HYPOTHESIS.format(core=str(core_parent))
    return subprocess.run([sys.executable, "-c", code], cwd=core_parent, capture_output=True, text=True, timeout=60)


def test_check_without_hypothesis_from_a_clone_names_the_clone(tmp_path):
    """Without Hypothesis, `check` from a clone exits 2 and says: pip install '<clone>[testing]'."""
    clone = tmp_path / "my clone"
    clone.mkdir()
    shutil.copy(REPO / "pyproject.toml", clone)
    result = _check_without_hypothesis(clone)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(f"pip install '{clone}[testing]'"), result.stderr


def test_check_without_hypothesis_from_an_index_names_the_extra(tmp_path):
    """Without Hypothesis, `check` from an installed core exits 2 and says: pip install 'borgstore[testing]'."""
    installed = tmp_path / "site-packages"
    installed.mkdir()
    result = _check_without_hypothesis(installed)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("pip install 'borgstore[testing]'"), result.stderr


def test_check_lists_every_rule(capsys):
    """`check URL --rules` lists each check, each rule the state machines name in their failures,
    each capability flag with its rules, and the promises the kit cannot check."""
    from borgstore.testing._backend_capabilities import CAPABILITY_RULES
    from borgstore.testing._backend_machine import MACHINE_RULES
    from borgstore.testing._rules import UNCHECKED_RULES
    from borgstore.testing._store_machine import STORE_MACHINE_RULES

    assert _check.main("memory:", ["--rules"]) == 0
    listed = {
        word for line in capsys.readouterr().out.splitlines() if line.startswith("  ") for word in line.split()[:2]
    }
    assert set(ALL_CHECKS) | set(MACHINE_RULES) | set(STORE_MACHINE_RULES) <= listed
    assert set(CAPABILITY_RULES) | set(UNCHECKED_RULES) <= listed


def test_check_only_unknown_name_is_an_error_listing_the_checks(capsys):
    """`check --only NAME` with a name that is no check exits with 2 and lists the valid names."""
    from borgstore._cli import main

    assert main(["check", "memory:", "--only", "nosuch"]) == 2
    error = capsys.readouterr().err
    assert "--only 'nosuch': no such check" in error
    assert all(rule in error for rule in ALL_CHECKS), error
    assert main(["check", "memory:", "--only", "lifecycle", "--only", "lifecyle"]) == 2
    assert "did you mean 'lifecycle'?" in capsys.readouterr().err
    assert main(["check", "memory:", "--only", "delete-missing"]) == 2
    assert "--only state-machine runs it" in capsys.readouterr().err
    assert main(["check", "memory:", "--profile", "faults", "--only", "lifecycle"]) == 2
    assert "not run by --profile faults" in capsys.readouterr().err


def test_check_help_shows_every_option(capsys):
    """`check --help` shows each option of check and no internal argument."""
    from borgstore._cli import main
    from borgstore._cli._check import check_parser

    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    options = [option for action in check_parser()._actions for option in action.option_strings]
    assert {"--profile", "--only", "--middleware", "--rules"} <= set(options)
    assert all(option in text for option in options), text
    assert "URL" in text and "rest" not in text


def test_check_rules_needs_no_url(capsys):
    """`check --rules` lists the rules without a URL; without --rules a missing URL is a usage error."""
    from borgstore._cli import main

    assert main(["check", "--rules"]) == 0
    assert "  backend state-machine " in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--only", "lifecycle"])
    assert exit_info.value.code == 2
    assert "URL of the store to check is missing" in capsys.readouterr().err


def test_check_removes_the_root_it_made_and_keeps_one_that_existed(tmp_path):
    """A URL location the check made is removed afterwards; one that existed before stays."""
    if "file" not in _plugins.backends():
        pytest.fail("the posixfs plugin (borgstore-backend-posixfs) is not installed")
    assert _check.main(f"file://{tmp_path}/made/here", ["--only", "lifecycle", "--only", "state-machine"]) == 0
    assert not (tmp_path / "made" / "here").exists()
    (tmp_path / "kept").mkdir()
    assert _check.main(f"file://{tmp_path}/kept", ["--only", "lifecycle"]) == 0
    assert (tmp_path / "kept").is_dir() and not any((tmp_path / "kept").iterdir())


def _check_process(tmp_path, *argv):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("HYPOTHESIS_STORAGE_DIRECTORY", None)
    return [sys.executable, "-m", "borgstore", "check", *argv], {"cwd": tmp_path, "env": env, "text": True}


def test_check_keeps_hypothesis_files_out_of_the_working_directory(tmp_path):
    """`check` writes no .hypothesis/ into the working directory; Hypothesis's files go to the cache."""
    command, options = _check_process(tmp_path, "memory:", "--only", "state-machine", "--only", "store-state-machine")
    result = subprocess.run(command, capture_output=True, timeout=300, **options)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [path.name for path in tmp_path.iterdir() if path.name != "cache"] == []
    assert not (tmp_path / "cache").exists() or (tmp_path / "cache" / "borgstore" / "hypothesis").is_dir()


def test_check_ctrl_c_ends_with_interrupted_and_status_130(tmp_path):
    """SIGINT during a state machine: exit 130, "interrupted", no reproduce hint, no traceback,
    the scratch location and the root the check made removed, no .hypothesis/ in the cwd."""
    import signal

    if "file" not in _plugins.backends():
        pytest.fail("the posixfs plugin (borgstore-backend-posixfs) is not installed")
    argv = [f"file://{tmp_path}/root", "--profile", "deep", "--only", "store-state-machine"]
    command, options = _check_process(tmp_path, *argv)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)
    seen = []
    try:
        # the examples line comes once the state machine runs inside Hypothesis
        while not seen or "examples" not in seen[-1]:
            line = process.stderr.readline()
            assert line, "".join(seen)
            seen.append(line)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    text = out + "".join(seen) + err
    assert process.returncode == 130, text
    assert "interrupted" in err and "interrupted during store store-state-machine" in out
    assert "@seed" not in text and "reproduce" not in text and "Traceback" not in text, text
    assert [path.name for path in tmp_path.iterdir() if path.name != "cache"] == []


def test_check_progress_counts_the_examples_of_a_state_machine(broken_scheme):
    """The progress display names each check as it starts and counts a state machine's examples
    against the budget; a failing one says it is shrinking a failure."""
    from borgstore._cli._check import Progress

    stream = io.StringIO()
    _check.run("memory:", only=["state-machine", "lifecycle"], out=io.StringIO(), progress=Progress(stream, interval=0))
    lines = stream.getvalue().splitlines()
    assert lines[0].split() == ["RUN", "backend", "state-machine"]
    budget = kit_settings("quick").max_examples
    done = [int(line.split()[2].split("/")[0]) for line in lines if "examples" in line]
    assert done == list(range(1, len(done) + 1)) and len(done) >= budget
    assert f"1/{budget} examples" in lines[1]
    assert lines[-1].split() == ["RUN", "backend", "lifecycle"]
    stream = io.StringIO()
    _check.run(broken_scheme, only=["state-machine"], out=io.StringIO(), progress=Progress(stream, interval=0))
    assert "a failure found, shrinking it" in stream.getvalue()


def test_check_progress_on_a_terminal_is_one_line_refreshed_in_place():
    """On a terminal the progress is one line rewritten in place and cleared before the result line."""
    from borgstore._cli._check import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    _check.run("memory:", only=["state-machine"], out=io.StringIO(), progress=Progress(stream, interval=0))
    text = stream.getvalue()
    assert "\n" not in text
    shown = text.split("\r\x1b[K")
    assert shown[1].split() == ["RUN", "backend", "state-machine"]
    assert shown[2].startswith("RUN   backend state-machine  1/") and "examples" in shown[2]
    assert shown[-1] == ""  # cleared for the result line


@pytest.fixture
def one_store_scheme():
    """The URL scheme onestore: whatever the path, one memory store per host part (as a REST
    server serves one store), declared with locations_below=False; the backends open() saw."""
    opened = []

    class OneStore(MemoryBackend):
        def open(self):
            opened.append(self)
            super().open()

    @hookimpl
    def borgstore_backends():
        return [
            BackendSpec(
                schemes=("onestore",),
                factory=lambda url: OneStore("onestore-" + url.partition("://")[2].partition("/")[0]),
                locations_below=False,
            )
        ]

    plugin = types.ModuleType("borgstore_test_onestore")
    plugin.borgstore_backends = borgstore_backends
    _plugins.plugin_manager().register(plugin, name="borgstore-test-onestore")
    yield opened
    _plugins.plugin_manager().unregister(name="borgstore-test-onestore")


def test_check_runs_at_the_url_itself_where_a_url_reaches_one_store(one_store_scheme):
    """With locations_below=False the checks run one after another at the URL itself (a path
    below it would reach the same store), and a URL that holds a store is refused untouched."""
    import uuid

    host = uuid.uuid4().hex[:8]
    failed, report = _report(f"onestore://{host}/", None, ["store-destroy", "open-missing"])
    assert failed == 0, report
    assert "PASS  store   store-destroy" in report and "PASS  backend open-missing" in report, report
    assert f"each check runs at onestore://{host}/ itself" in report
    assert one_store_scheme and {backend.name for backend in one_store_scheme} == {f"onestore-{host}"}
    kept = MemoryBackend(f"onestore-{host}")
    kept.create()
    with kept:
        kept.store("data/kept", b"mine")
    with pytest.raises(ValueError, match="holds a store: its backend serves one store per URL"):
        _report(f"onestore://{host}/")
    with kept:
        assert kept.load("data/kept") == b"mine"
