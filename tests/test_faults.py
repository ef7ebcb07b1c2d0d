"""borgstore.testing.FaultInjector: each fault kind does what it promises against the memory
backend, the sequence of faults is reproducible from the seed, and the counters count."""

import logging

import pytest

from borgstore.backends.errors import BackendConnectionError, ObjectNotFound
from borgstore.backends.memory import MemoryBackend
from borgstore.middleware.retry import RetryMiddleware
from borgstore.store import Store, build_chain
from borgstore.testing import FaultInjector


def _opened(list_tree=True, items=()):
    """An open chain link around a fresh memory backend holding *items* (name -> value)."""
    link = build_chain(MemoryBackend(list_tree=list_tree))
    link.create()
    link.open()
    for name, value in dict(items).items():
        link.store(name, value)
    return link


def _only(kind, link, **options):
    return FaultInjector(link, seed=1, rate=1.0, faults=(kind,), **options)


def _outcome(call, *args):
    try:
        return ("ok", call(*args))
    except Exception as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "maybe_applied", None))


def _names(faults, directory):
    return [info.name for info in faults.list(directory)]


def _workload(faults):
    """A fixed sequence of calls of every kind; what each call gave."""
    outcomes = []
    for i in range(40):
        name = f"d/{i % 7:02x}"
        outcomes.append(_outcome(faults.store, name, bytes([i]) * i))
        outcomes.append(_outcome(faults.load, name))
        outcomes.append(_outcome(lambda name: faults.info(name).exists, name))
        outcomes.append(_outcome(_names, faults, "d"))
        if i % 5 == 4:
            outcomes.append(_outcome(faults.move, name, name + "x"))
            outcomes.append(_outcome(faults.delete, name + "x"))
    return outcomes


def test_same_seed_same_faults():
    """Two injectors with one seed, given the same calls, inject the same faults and the calls
    give the same results; another seed gives other faults."""
    runs = []
    for seed in (5, 5, 6):
        faults = FaultInjector(_opened(), seed=seed, rate=0.3, sleep=lambda seconds: None)
        runs.append((_workload(faults), list(faults.history), dict(faults.injected)))
    assert runs[0] == runs[1]
    assert runs[0][1] != runs[2][1]
    assert sum(runs[0][2].values()) > 0


def test_reseed_starts_the_sequence_again():
    """reseed() with the first seed repeats the first sequence and zeroes the counters."""
    faults = FaultInjector(_opened(), seed=3, rate=0.5, faults=("error",))
    first = [_outcome(faults.info, f"x{i}") for i in range(30)]
    faults.reseed(3)
    assert faults.calls == 0 and sum(faults.injected.values()) == 0
    assert [_outcome(faults.info, f"x{i}") for i in range(30)] == first


def test_error_fails_before_the_call():
    """The "error" fault: BackendConnectionError, temporary and not applied, and nothing happens."""
    link = _opened(items={"a": b"old"})
    faults = _only("error", link)
    for call in (
        lambda: faults.store("b", b"new"),
        lambda: faults.store("a", b"new"),
        lambda: faults.delete("a"),
        lambda: faults.move("a", "c"),
        lambda: faults.mkdir("e"),
    ):
        with pytest.raises(BackendConnectionError) as raised:
            call()
        assert raised.value.temporary and not raised.value.maybe_applied
    assert link.load("a") == b"old"
    assert not any(link.info(name).exists for name in ("b", "c", "e"))
    with pytest.raises(BackendConnectionError):
        faults.load("a")


def test_lost_reply_applies_the_mutation_and_says_so():
    """The "lost_reply" fault: the mutation is carried out, then BackendConnectionError(maybe_applied=True)."""
    link = _opened(items={"a": b"old", "gone": b"x"})
    faults = _only("lost_reply", link)
    changes = [
        (lambda: faults.store("a", b"new"), lambda: link.load("a") == b"new"),
        (lambda: faults.move("a", "b"), lambda: link.load("b") == b"new" and not link.info("a").exists),
        (lambda: faults.delete("gone"), lambda: not link.info("gone").exists),
        (lambda: faults.mkdir("dir"), lambda: link.info("dir").directory),
        (lambda: faults.rmdir("dir"), lambda: not link.info("dir").exists),
        (lambda: faults.store_new("fresh", b"f"), lambda: link.load("fresh") == b"f"),
    ]
    for change, applied in changes:
        with pytest.raises(BackendConnectionError) as raised:
            change()
        assert raised.value.maybe_applied and raised.value.temporary
        assert applied()


def test_lost_reply_of_a_failed_mutation_is_its_own_error():
    """A mutation that failed keeps its error under "lost_reply": a failed request stays failed."""
    faults = _only("lost_reply", _opened())
    with pytest.raises(ObjectNotFound):
        faults.delete("missing")
    with pytest.raises(ObjectNotFound):
        faults.move("missing", "elsewhere")


def test_lost_reply_of_a_read_loses_the_answer():
    """A read under "lost_reply" is carried out, and the caller gets BackendConnectionError
    (not applied: a read changes nothing), whatever the answer was."""
    faults = _only("lost_reply", _opened(items={"a": b"value"}))
    for call in (lambda: faults.load("a"), lambda: faults.load("missing"), lambda: faults.info("a")):
        with pytest.raises(BackendConnectionError) as raised:
            call()
        assert not raised.value.maybe_applied
    with pytest.raises(BackendConnectionError):
        [*faults.list("")]


@pytest.mark.parametrize("list_tree", [True, False])
def test_torn_listing_yields_part_then_breaks(list_tree):
    """The "torn" fault: a listing yields its first items (1 to 3), then raises BackendConnectionError."""
    link = _opened(list_tree, items={f"d/{i:02x}": b"x" for i in range(10)})
    faults = _only("torn", link)
    expected = [info.name for info in link.list("d")]
    for _ in range(20):
        got = []
        with pytest.raises(BackendConnectionError):
            for info in faults.list("d"):
                got.append(info.name)
        assert 1 <= len(got) <= 3 and got == expected[: len(got)]
    if list_tree:
        got = []
        with pytest.raises(BackendConnectionError):
            got.extend(info.name for info in faults.list_tree(""))
        assert got == ["d/00", "d/01", "d/02"][: len(got)] and got


def test_torn_listing_of_a_short_directory_breaks_at_its_end():
    """A listing with fewer items than the tear point yields all of them and still breaks: the
    caller cannot know that it was complete."""
    faults = _only("torn", _opened(items={"d/only": b"x"}))
    got = []
    with pytest.raises(BackendConnectionError):
        got.extend(info.name for info in faults.list("d"))
    assert got == ["only"]


def test_torn_transfer_reads_and_returns_nothing():
    """The "torn" fault: load, gather and hash raise BackendConnectionError; a torn mutation is an error
    before the call."""
    link = _opened(items={"a": b"value"})
    faults = _only("torn", link)
    for call in (lambda: faults.load("a"), lambda: faults.gather([("a", 0, 2)]), lambda: faults.hash("a")):
        with pytest.raises(BackendConnectionError):
            call()
    with pytest.raises(BackendConnectionError) as raised:
        faults.store("a", b"new")
    assert not raised.value.maybe_applied
    assert link.load("a") == b"value"


def test_slow_waits_then_proceeds():
    """The "slow" fault: the call waits slow_seconds with the given sleep and then gives its normal result."""
    waits = []
    faults = _only("slow", _opened(items={"a": b"value"}), slow_seconds=0.25, sleep=waits.append)
    assert faults.load("a") == b"value"
    faults.store("b", b"new")
    assert [info.name for info in faults.list("")] == ["a", "b"]
    assert waits == [0.25, 0.25, 0.25]


def test_counters_count_each_kind():
    """injected counts the faults per kind, calls every call that could get one, history each
    fault; Store.stats shows the counts."""
    faults = FaultInjector(_opened(), seed=11, rate=0.5, sleep=lambda seconds: None)
    for i in range(200):
        try:
            faults.info(f"n{i}")
        except BackendConnectionError:
            pass
    assert faults.calls == 200
    assert sum(faults.injected.values()) == len(faults.history)
    assert 60 < len(faults.history) < 140
    assert all(faults.injected[kind] > 0 for kind in ("error", "lost_reply", "slow", "torn"))
    assert {op for op, _ in faults.history} == {"info"}
    store = Store(backend=faults, config={"": {"levels": [0]}})
    assert {key: store.stats[key] for key in ("faults_error", "faults_slow")} == {
        "faults_error": faults.injected["error"],
        "faults_slow": faults.injected["slow"],
    }


def test_lifecycle_calls_get_no_faults_unless_named():
    """create, open, flush, quota, close, destroy pass untouched by default; named in
    operations, they get faults too."""
    link = build_chain(MemoryBackend())
    faults = _only("error", link)
    faults.create()
    faults.open()
    faults.flush()
    faults.quota()
    faults.close()
    faults.destroy()
    assert faults.calls == 0
    picky = _only("error", link, operations={"open"})
    link.create()
    with pytest.raises(BackendConnectionError):
        picky.open()
    assert picky.store is link.store  # an operation not named passes straight through


@pytest.mark.parametrize("list_tree", [True, False])
def test_optional_operations_mirror_the_inner_link(list_tree):
    """list_tree, list_temp and store_new exist on the injector exactly where they exist below."""
    link = build_chain(MemoryBackend(list_tree=list_tree))
    faults = FaultInjector(link, seed=0)
    for op in ("list_tree", "list_temp", "store_new"):
        assert hasattr(faults, op) == hasattr(link, op), op
    assert hasattr(faults, "list_tree") == list_tree


@pytest.mark.parametrize(
    "options, error, text",
    [
        ({"seed": 1, "rate": 1.5}, ValueError, "rate=1.5"),
        ({"seed": 1, "faults": ("boom",)}, ValueError, "faults=('boom',)"),
        ({"seed": 1, "faults": ()}, ValueError, "faults=()"),
        ({"seed": "x"}, TypeError, "seed='x'"),
        ({"seed": 1, "operations": {"frobnicate", "load"}}, ValueError, "'frobnicate'"),
        ({"seed": 1, "slow_seconds": -1}, ValueError, "slow_seconds=-1"),
    ],
)
def test_bad_options_are_named(options, error, text):
    """A bad option raises at once, naming it."""
    with pytest.raises(error) as raised:
        FaultInjector(build_chain(MemoryBackend()), **options)
    assert text in str(raised.value)


def test_retry_over_faults_gives_exact_results():
    """Through the retry middleware, a chain failing half its calls stores, moves, deletes and
    lists exactly as the backend alone does."""
    link = _opened(list_tree=False)
    faults = FaultInjector(link, seed=2, rate=0.5, sleep=lambda seconds: None)
    chain = RetryMiddleware(faults, attempts=60, breaker_failures=0, sleep=lambda seconds: None, seed=2)
    for i in range(30):
        chain.store(f"d/{i:02x}", bytes([i]) * 3)
    for i in range(0, 30, 3):
        chain.move(f"d/{i:02x}", f"d/{i:02x}m")
    for i in range(1, 30, 3):
        chain.delete(f"d/{i:02x}")
    expected = [info.name for info in link.list("d")]
    assert len(expected) == 20
    for _ in range(5):
        assert [info.name for info in chain.list("d")] == expected
    assert all(chain.load(f"d/{i:02x}m") == bytes([i]) * 3 for i in range(0, 30, 3))
    assert faults.injected["lost_reply"] > 0 and faults.injected["torn"] > 0


def test_check_runs_the_faults_profile_live(capsys, caplog):
    """`python -m borgstore check URL --profile faults` runs the two state machines under faults
    and reports them; the retry layer's warnings stay out of the report."""
    from borgstore import _check

    status = _check.main("memory:faults-cli", ["--profile", "faults", "--only", "state-machine"])
    out, _ = capsys.readouterr()
    assert status == 0, out
    assert "profile faults" in out and "below the retry middleware" in out
    assert "PASS  backend state-machine" in out and "under injected faults" in out
    assert "1 passed, 0 failed" in out
    assert not [record for record in caplog.records if record.name == "borgstore.middleware.retry"]
    # outside the check, the retry layer logs as configured again
    assert logging.getLogger("borgstore.middleware.retry").level == logging.NOTSET
