"""Example checks at the edges of the backend contract: hostile names, invalid load ranges, and
the conflicts between items and directories.

Not checked here, because no backend-independent test can provoke it: a generic failure (an I/O
or permission error, an SFTP ``SSH_FX_FAILURE``) is never reported as "missing" (see
:data:`borgstore.testing._rules.UNCHECKED_RULES`); each plugin's own tests inject such failures.
"""

from ..backends.errors import BackendError, ObjectNotFound
from ..constants import TMP_SUFFIX
from ._backend_base import changes, check, created_and_open, snapshot
from ._rules import ConformanceFailure, expect, expect_raises, require

#: names that would leave the store's root or name something else than they say, were a backend
#: to hand them to a file system or an object store unchecked
HOSTILE_NAMES = (
    "/etc/passwd",
    "/",
    "../escape",
    "..",
    "data/../../x",
    "data/..",
    "a//b",
    "a/./b",
    "./a",
    ".",
    "a/",
    "a\x00b",
    "a\x01b",
    "a\nb",
    "a\x7fb",
    "a\\b",
    "..\\escape",
)

#: the items a careless backend would reach through the hostile names (by stripping a leading
#: "/", collapsing "//" or "." components, ...): each must be left exactly as it was
DECOYS = {
    "etc/passwd": b"inside the store: etc/passwd",
    "a/b": b"inside the store: a/b",
    "a/a": b"inside the store: a/a",
    "escape": b"inside the store: escape",
    "x": b"inside the store: x",
    "data/item": b"inside the store: data/item",
}


def _hostile_calls(backend, caps, name):
    """(description, call) for every operation the backend declares, given the hostile *name*."""
    calls = []
    if caps.read:
        calls += [
            (f"load({name!r})", lambda: backend.load(name)),
            (f"hash({name!r})", lambda: backend.hash(name)),
            (f"gather([({name!r}, 0, 1)])", lambda: backend.gather([(name, 0, 1)])),
        ]
        if name:  # info("") is the root
            calls.append((f"info({name!r})", lambda: backend.info(name)))
    if caps.write:
        calls += [
            (f"store({name!r}, ...)", lambda: backend.store(name, b"hostile")),
            (f"delete({name!r})", lambda: backend.delete(name)),
            (f"move({name!r}, 'data/item')", lambda: backend.move(name, "data/item")),
            (f"move('data/item', {name!r})", lambda: backend.move("data/item", name)),
            (f"mkdir({name!r})", lambda: backend.mkdir(name)),
            (f"rmdir({name!r})", lambda: backend.rmdir(name)),
        ]
    if caps.list and name:  # list("") is the root
        calls.append((f"list({name!r})", lambda: [*backend.list(name)]))
    if caps.list_tree and name:
        calls.append((f"list_tree({name!r})", lambda: [*backend.list_tree(name)]))
    return calls


@check("names-stay-inside-root")
def check_hostile_names(backend, profile):
    """A name that could leave the root ('/x', '..', 'a//b', NUL, '\\') raises ValueError anywhere; nothing changes."""
    rule = "names-stay-inside-root"
    with created_and_open(backend) as caps:
        require(caps.write, "needs write=True to set up the items a hostile name could reach")
        for name, value in DECOYS.items():
            backend.store(name, value)
        before = snapshot(backend, caps, DECOYS)
        for name in HOSTILE_NAMES + ("",):
            for what, call in _hostile_calls(backend, caps, name):
                with expect_raises(rule, ValueError, what):
                    call()
            after = snapshot(backend, caps, DECOYS)
            shown = f"the refused calls with the name {name!r} changed the store: {changes(before, after)}"
            expect(rule, after == before, shown)


@check("load-invalid-range")
def check_load_invalid_range(backend, profile):
    """load() given a size that is not an int >= 0 or None, or an offset that is not an int, raises ValueError."""
    with created_and_open(backend) as caps:
        require(caps.write and caps.read, "needs write=True and read=True")
        backend.store("data/item", b"0123456789")
        for size in (-1, "3", 1.5):
            with expect_raises("load-invalid-range", ValueError, f"load('data/item', size={size!r})"):
                backend.load("data/item", size=size)
        for offset in ("0", 1.5):
            with expect_raises("load-invalid-range", ValueError, f"load('data/item', offset={offset!r})"):
                backend.load("data/item", offset=offset)


def _expect_conflict(rule, backend, caps, what, call, names=()):
    """*call* must raise a BackendError that is not ObjectNotFound (something is there) and
    change nothing."""
    before = snapshot(backend, caps, names)
    try:
        call()
    except ObjectNotFound as exc:
        raise ConformanceFailure(rule, f"{what} raised ObjectNotFound ({exc}), but something is there") from exc
    except BackendError:
        pass
    except Exception as exc:
        raise ConformanceFailure(rule, f"{what}: expected BackendError, got {type(exc).__name__}: {exc}") from exc
    else:
        raise ConformanceFailure(rule, f"{what}: expected BackendError, but nothing was raised")
    after = snapshot(backend, caps, names)
    expect(rule, after == before, f"the refused {what} changed the store: {changes(before, after)}")


def _real_directories(caps):
    require(caps.write, "needs write=True")
    require(
        caps.needs_mkdir,
        "the backend declares needs_mkdir=False: directories are implied by item names, and an item "
        "may share its name with one (as object keys 'a' and 'a/b' do)",
    )


@check("conflict-store-onto-directory")
def check_store_onto_directory(backend, profile):
    """store() onto a directory, or below an item, raises BackendError (not ObjectNotFound) and changes nothing."""
    with created_and_open(backend) as caps:
        _real_directories(caps)
        backend.store("data/dir/item", b"in the directory")
        backend.mkdir("data/empty")
        for name in ("data/dir", "data/empty", "data/dir/item/below"):
            call = lambda name=name: backend.store(name, b"onto a directory")  # noqa: E731
            what = f"store({name!r})"
            _expect_conflict("conflict-store-onto-directory", backend, caps, what, call, ["data/dir/item"])


@check("conflict-mkdir-over-item")
def check_mkdir_over_item(backend, profile):
    """mkdir() of an item's name, or of a name below one, raises BackendError (not ObjectNotFound); nothing changes."""
    with created_and_open(backend) as caps:
        _real_directories(caps)
        backend.store("data/item", b"an item")
        for name in ("data/item", "data/item/below"):
            call = lambda name=name: backend.mkdir(name)  # noqa: E731
            _expect_conflict("conflict-mkdir-over-item", backend, caps, f"mkdir({name!r})", call, ["data/item"])


@check("conflict-move-onto-directory")
def check_move_onto_directory(backend, profile):
    """move() onto a directory (empty or not) raises BackendError (not ObjectNotFound) and changes nothing."""
    with created_and_open(backend) as caps:
        _real_directories(caps)
        backend.store("data/item", b"an item")
        backend.store("data/dir/item", b"in the directory")
        backend.mkdir("data/empty")
        for target in ("data/dir", "data/empty"):
            call = lambda target=target: backend.move("data/item", target)  # noqa: E731
            names, what = ["data/item", "data/dir/item"], f"move('data/item', {target!r})"
            _expect_conflict("conflict-move-onto-directory", backend, caps, what, call, names)


@check("conflict-rmdir-of-item")
def check_rmdir_of_item(backend, profile):
    """rmdir() of an item raises BackendError (not ObjectNotFound: something is there) and changes nothing."""
    with created_and_open(backend) as caps:
        require(caps.write, "needs write=True")
        backend.store("data/item", b"an item")
        call = lambda: backend.rmdir("data/item")  # noqa: E731
        _expect_conflict("conflict-rmdir-of-item", backend, caps, "rmdir('data/item')", call, ["data/item"])


@check("conflict-rmdir-non-empty")
def check_rmdir_non_empty(backend, profile):
    """rmdir() of a directory holding an item, a directory or only a .tmp item raises BackendError
    (the last where .tmp names are not reserved); nothing changes."""
    with created_and_open(backend) as caps:
        require(caps.write, "needs write=True")
        backend.store("data/dir/item", b"in the directory")
        directories = ["data/dir", "data"]
        if TMP_SUFFIX not in caps.reserved_suffixes:
            backend.store("data/writing/item" + TMP_SUFFIX, b"a store in progress")
            directories.append("data/writing")
        for name in directories:
            call = lambda name=name: backend.rmdir(name)  # noqa: E731
            _expect_conflict("conflict-rmdir-non-empty", backend, caps, f"rmdir({name!r})", call, ["data/dir/item"])


@check("conflict-list-of-item")
def check_list_of_item(backend, profile):
    """list() of an item raises BackendError (not ObjectNotFound: something is there)."""
    with created_and_open(backend) as caps:
        require(caps.write and caps.list, "needs write=True and list=True")
        backend.store("data/item", b"an item")
        call = lambda: [*backend.list("data/item")]  # noqa: E731
        _expect_conflict("conflict-list-of-item", backend, caps, "list('data/item')", call, ["data/item"])


@check("reserved-suffixes-refused")
def check_reserved_suffixes_refused(backend, profile):
    """Where the storage reserves name suffixes (capability reserved_suffixes), a store, a move
    onto such a name and a load of one raise ValueError, and nothing changes."""
    rule = "reserved-suffixes-refused"
    with created_and_open(backend) as caps:
        require(caps.reserved_suffixes, "the backend reserves no name suffix")
        require(caps.write, "needs write=True to set up an item")
        backend.store("data/ab/abcd", b"kept")
        before = snapshot(backend, caps, ["data/ab/abcd"])
        for suffix in sorted(caps.reserved_suffixes):
            for name in ("data/ab/abcd" + suffix, "top" + suffix):
                calls = [
                    (f"store({name!r})", lambda: backend.store(name, b"x")),
                    (f"move('data/ab/abcd', {name!r})", lambda: backend.move("data/ab/abcd", name)),
                ]
                if caps.read:
                    calls.append((f"load({name!r})", lambda: backend.load(name)))
                for what, call in calls:
                    with expect_raises(rule, ValueError, what):
                        call()
        after = snapshot(backend, caps, ["data/ab/abcd"])
        expect(rule, after == before, f"the refused calls changed the store: {changes(before, after)}")
