"""Example checks of what the capability flags promise, one named rule per flag, and of several
threads at once.

=========================  ==================================================================
flag                       rule
=========================  ==================================================================
``read``/``write``/``list`` every check needing one is not applicable without it;
                           ``write=False``: ``read-only-refuses-writes``
``hash_algorithms``        ``hash-matches-hashlib`` (each declared algorithm, and sha256)
``needs_mkdir``            the state machine's model; the ``conflict-*`` rules
``atomic_store``           ``store-atomic``
``thread_safe``            ``threads``, ``concurrent-writers``, ``store-atomic``
``list_tree``              ``list-tree-agrees``
``store_new``              ``store-new-creates``, ``store-new-races`` (in ``_backend_atomic``)
``transient_errors``       ``transient-errors-get-retry``
=========================  ==================================================================
"""

from ..backends._base import new_hash
from ..backends.errors import BackendError, ObjectNotFound, PermissionDenied
from ..constants import DEL_SUFFIX, TMP_SUFFIX
from ._backend_base import (
    check,
    created_and_open,
    gather_or_diagnose,
    pattern,
    raise_thread_errors,
    run_threads,
    show_bytes,
    show_names,
)
from ._model import INTERNAL_ROOT_ITEMS, join
from ._rules import ConformanceFailure, expect, expect_raises, no_error, require
from ._settings import LARGE_VALUE, LIST_TREE_ITEMS, profile_name

#: every capability flag -> the rules that check what it promises (a test keeps this complete)
CAPABILITY_RULES = {
    "read": ("load-whole", "info-item"),
    "write": ("store", "read-only-refuses-writes"),
    "list": ("list-entries", "tmp-items-hidden"),
    "hash_algorithms": ("hash-matches-hashlib",),
    "needs_mkdir": ("mkdir-parents", "list-missing", "conflict-store-onto-directory"),
    "atomic_store": ("store-atomic",),
    "thread_safe": ("threads", "concurrent-writers"),
    "list_tree": ("list-tree-agrees",),
    "reserved_suffixes": ("reserved-suffixes-refused",),
    "transient_errors": ("transient-errors-get-retry",),
}


def _buster_size(profile) -> int:
    """The size of the values hash and gather are checked on: larger than any read buffer, and a
    multiple of no usual one."""
    return LARGE_VALUE[profile_name(profile)] + 12345


@check("transient-errors-get-retry")
def check_transient_errors(backend, profile):
    """The backend's class declares transient_errors (read before open, when the chain is built)
    exactly when its failures can be temporary; a Store over it then retries them: the default
    chain has the ``retry`` middleware if and only if the flag is set."""
    from ..middleware.retry import RetryMiddleware
    from ..store import Store

    def retry_layers(link) -> int:
        layers = link.layers() if hasattr(link, "layers") else ()
        return sum(isinstance(layer, RetryMiddleware) for layer in layers)

    declared = getattr(backend.capabilities, "transient_errors", False)
    store = Store(backend=backend, config={"data/": {"levels": [0]}})
    # a chain given as the backend may hold retry layers of its own: count the ones added
    added = retry_layers(store.chain) - retry_layers(backend)
    expect(
        "transient-errors-get-retry",
        added == (1 if declared else 0),
        f"transient_errors={declared} before open, but the default chain added {added} retry layer(s)",
    )
    with created_and_open(backend) as caps:
        expect(
            "transient-errors-get-retry",
            caps.transient_errors == declared,
            f"transient_errors is {declared} before open and {caps.transient_errors} after: the chain was "
            "built on the wrong answer (declare it on the class)",
        )


@check("read-only-refuses-writes")
def check_read_only(backend, profile):
    """A backend declaring write=False refuses store, delete, move, mkdir and rmdir with PermissionDenied."""
    with created_and_open(backend) as caps:
        require(not caps.write, "the backend declares write=True")
        for what, call in (
            ("store('data/item', ...)", lambda: backend.store("data/item", b"x")),
            ("delete('data/item')", lambda: backend.delete("data/item")),
            ("move('data/item', 'data/other')", lambda: backend.move("data/item", "data/other")),
            ("mkdir('data/dir')", lambda: backend.mkdir("data/dir")),
            ("rmdir('data/dir')", lambda: backend.rmdir("data/dir")),
        ):
            what = f"{what} on a backend declaring write=False"
            with expect_raises("read-only-refuses-writes", PermissionDenied, what):
                call()
        if caps.read:
            info = backend.info("data/item")
            expect("read-only-refuses-writes", not info.exists, f"a refused store() left an item: {info}")


@check("hash-matches-hashlib")
def check_hash_matches_hashlib(backend, profile):
    """hash() with each declared algorithm and sha256 digests the whole value, empty or larger than any buffer."""
    with created_and_open(backend) as caps:
        require(caps.write and caps.read, "needs write=True and read=True")
        values = {"data/empty": b"", "data/small": b"abc", "data/large": pattern(_buster_size(profile), 3)}
        for name, value in values.items():
            backend.store(name, value)
        for algorithm in sorted(set(caps.hash_algorithms) | {"sha256"}):
            for name, value in values.items():
                what = f"hash({name!r}, {algorithm!r}) of {len(value)} bytes"
                with no_error("hash-matches-hashlib", what):
                    got = backend.hash(name, algorithm)
                expected = new_hash(algorithm, value).hexdigest()
                if got != expected:
                    loaded = backend.load(name)
                    shown = f"load({name!r}) gave {show_bytes(loaded)}, expected {show_bytes(value)}"
                    expect("load-whole", loaded == value, shown)
                    raise ConformanceFailure("hash-matches-hashlib", f"{what} = {got!r}, expected {expected!r}")


@check("gather-large")
def check_gather_large(backend, profile):
    """gather() of ranges crossing any read buffer's boundaries returns exactly the concatenated bytes."""
    with created_and_open(backend) as caps:
        require(caps.write and caps.read, "needs write=True and read=True")
        large = pattern(_buster_size(profile), 5)
        values = {"data/large": large, "data/small": b"0123456789"}
        for name, value in values.items():
            backend.store(name, value)
        n, mib = len(large), 1024 * 1024
        for sources in (
            [("data/large", 0, n)],
            [("data/large", 65536 - 3, 65536 + 7), ("data/small", 2, 5), ("data/large", mib - 1, mib + 2)],
            [("data/small", 0, 10), ("data/large", n - mib - 5, mib + 5), ("data/large", 0, 0)],
        ):
            gather_or_diagnose(backend, sources, values, "gather-large")


def _tree_items(count: int) -> dict:
    """A tree as a Store nests it, plus names that sort differently as paths than per directory."""
    items = {}
    for i in range(count):
        key = new_hash("sha256", str(i).encode()).hexdigest()[:16]
        items[f"data/{key[:2]}/{key}"] = pattern(i % 50, i)
    items.update(
        {
            "a-b": b"sorts before 'a/' as a path",
            "a/x": b"in a",
            "a/y" + DEL_SUFFIX: b"soft-deleted",
            "a" + DEL_SUFFIX: b"soft-deleted at the top",
            "b/c/d/e": b"deep",
            ".dot": b"",
            "a/z" + TMP_SUFFIX: b"in progress",
            "data/00" + TMP_SUFFIX: b"in progress",
        }
    )
    return items


def _walk(backend, top):
    """Every item below *top*, by list() one directory at a time: [(path relative to top, size)]."""
    found, pending = [], [""]
    while pending:
        relative = pending.pop()
        for info in backend.list(join(top, relative) if relative else top):
            path = join(relative, info.name)
            if info.directory:
                pending.append(path)
            elif top or path not in INTERNAL_ROOT_ITEMS:
                found.append((path, info.size))
    return sorted(found)


def _compare_tree(backend, top, items):
    rule, what = "list-tree-agrees", f"list_tree({top!r})"
    with no_error(rule, what):
        stream = [*backend.list_tree(top)]
    names = [info.name for info in stream if top or info.name not in INTERNAL_ROOT_ITEMS]
    expect(rule, not any(info.directory for info in stream), f"{what} yielded directories")
    tmp = [n for n in names if n.endswith(TMP_SUFFIX)]
    expect(rule, not tmp, f"{what} yielded temporary items {show_names(tmp)}")
    out_of_place = [n for n, m in zip(names, sorted(names)) if n != m]
    expect(rule, not out_of_place, f"{what} is not sorted by path: {show_names(out_of_place)} out of place")
    got = [(info.name, info.size) for info in stream if top or info.name not in INTERNAL_ROOT_ITEMS]
    prefix = top + "/" if top else ""
    expected = sorted(
        (name[len(prefix) :], len(value))
        for name, value in items.items()
        if name.startswith(prefix) and not name.endswith(TMP_SUFFIX)
    )
    expect(rule, len(set(names)) == len(names), f"{what} yielded a name twice")
    missing, extra = set(expected) - set(got), set(got) - set(expected)
    expect(rule, not missing and not extra, f"{what}: missing {show_names(missing)}, not stored {show_names(extra)}")
    walked = _walk(backend, top)
    expect(rule, got == walked, f"{what} differs from the walk with list(): {show_names(set(got) ^ set(walked))}")


@check("list-tree-agrees")
def check_list_tree_agrees(backend, profile):
    """list_tree() yields what a walk with list() finds, as sorted paths with sizes, .del items included, .tmp never."""
    with created_and_open(backend) as caps:
        require(caps.list_tree, "the backend declares list_tree=False")
        require(caps.write and caps.list, "needs write=True and list=True")
        items = _tree_items(LIST_TREE_ITEMS[profile_name(profile)])
        for name, value in items.items():
            backend.store(name, value)
        if caps.needs_mkdir:
            backend.mkdir("a/empty")
        first_nested = next(name for name in sorted(items) if name.startswith("data/"))
        for top in ("", "data", "a", "b/c", first_nested.rpartition("/")[0]):
            _compare_tree(backend, top, items)
        try:
            missing = [*backend.list_tree("nothing/here")]
        except ObjectNotFound:
            missing = []
        shown = f"list_tree('nothing/here') of a missing directory yielded {missing[:3]}"
        expect("list-tree-agrees", not missing, shown)


@check("threads")
def check_threads(backend, profile):
    """A backend declared thread_safe gives every thread its own correct results when used by several at once."""
    rounds = 40 if profile_name(profile) == "quick" else 400
    with created_and_open(backend) as caps:
        require(caps.thread_safe, "the backend declares thread_safe=False (the Store serializes its calls)")
        require(caps.write and caps.read and caps.list, "needs write, read and list")

        def worker(number):
            def work():
                for i in range(rounds):
                    name = f"data/{number:02x}/{number:02x}{i:06x}"
                    value = pattern(100 + i * 13, number + i)
                    backend.store(name, value)
                    got = backend.load(name)
                    shown = f"thread {number}: load({name!r}) gave {show_bytes(got)}, expected {show_bytes(value)}"
                    expect("threads", got == value, shown)
                    if i % 3 == 0:
                        backend.delete(name)
                        shown = f"thread {number}: {name!r} still there after delete()"
                        expect("threads", not backend.info(name).exists, shown)
                listed = {info.name for info in backend.list(f"data/{number:02x}")}
                wanted = {f"{number:02x}{i:06x}" for i in range(rounds) if i % 3}
                expect(
                    "threads",
                    listed == wanted,
                    f"thread {number}: list('data/{number:02x}') is missing {show_names(wanted - listed)} "
                    f"and shows {show_names(listed - wanted)} that it should not",
                )

            return work

        raise_thread_errors("threads", run_threads([worker(n) for n in range(4)]))


@check("concurrent-writers")
def check_concurrent_writers(backend, profile):
    """Two threads storing one name at once: it ends with one writer's last value, whole; no temp item is left."""
    rule = "concurrent-writers"
    rounds = 12 if profile_name(profile) == "quick" else 100
    with created_and_open(backend) as caps:
        require(caps.thread_safe, "the backend declares thread_safe=False (the Store serializes its calls)")
        require(caps.write and caps.read, "needs write and read")
        name = "data/00/shared"
        values = {w: [pattern(256 * 1024 + 17 * i + w, 16 * w + i) for i in range(rounds)] for w in (1, 2)}

        def writer(number):
            def work():
                for value in values[number]:
                    backend.store(name, value)

            return work

        raise_thread_errors(rule, run_threads([writer(1), writer(2)]))
        final = backend.load(name)
        shown = f"after two writers, load({name!r}) gave {show_bytes(final)}, neither writer's last value"
        expect(rule, final in (values[1][-1], values[2][-1]), shown)
        expect_no_temporary_items(rule, backend, name)


def expect_no_temporary_items(rule, backend, name):
    """Delete *name* and remove its directory: a directory still "not empty" holds a left temp item."""
    directory = name.rpartition("/")[0]
    backend.delete(name)
    try:
        backend.rmdir(directory)
    except ObjectNotFound:
        pass  # directories implied by names vanish with their last item
    except BackendError as exc:
        raise ConformanceFailure(
            rule,
            f"rmdir({directory!r}) after deleting its only item {name!r} failed ({exc}): a temporary item is left",
        ) from exc


@check("store-atomic")
def check_store_atomic(backend, profile):
    """A reader never sees a partial value: during an overwrite it loads the old or the new value, never a mix."""
    old, new = pattern(1024 * 1024, 1), pattern(2 * 1024 * 1024 + 77, 2)
    sizes = {len(old), len(new)}
    rounds = 30 if profile_name(profile) == "quick" else 300
    seen = []
    with created_and_open(backend) as caps:
        require(caps.thread_safe, "a concurrent reader needs thread_safe=True")
        require(caps.atomic_store, "the backend declares atomic_store=False")
        require(caps.write and caps.read, "needs write and read")
        backend.store("data/item", old)
        done = []

        def writer():
            try:
                for i in range(rounds):
                    backend.store("data/item", new if i % 2 == 0 else old)
            finally:
                done.append(True)

        def reader():
            while not done:
                try:
                    value = backend.load("data/item")
                except ObjectNotFound:
                    seen.append("load() raised ObjectNotFound while the item was being overwritten")
                    return
                if value != old and value != new:
                    seen.append(f"load() gave {len(value)} bytes, neither the old nor the new value")
                    return
                info = backend.info("data/item")
                if not info.exists or info.size not in sizes:
                    seen.append(f"info() showed {info} while the item was being overwritten")
                    return

        errors = run_threads([writer, reader, reader])
        expect("store-atomic", not seen, seen[0] if seen else "")
        raise_thread_errors("store-atomic", errors)
