"""The plain in-memory model a backend is compared with: items, directories, and what a listing shows."""

from dataclasses import dataclass

from ..constants import HID_SUFFIX

#: internal items a correct chain may keep in the store root (the quota middleware's usage file);
#: the kit never uses these names and tolerates them in a listing of the root
INTERNAL_ROOT_ITEMS = frozenset({"quota" + HID_SUFFIX})


def join(parent: str, leaf: str) -> str:
    return f"{parent}/{leaf}" if parent else leaf


def ancestors(name: str):
    """Yield the directories above *name*, outermost first: ``a``, ``a/b`` for ``a/b/c``."""
    parts = name.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


@dataclass(frozen=True)
class Entry:
    directory: bool
    size: int = 0
    #: True for a directory an object store may or may not show (nothing visible below it)
    optional: bool = False


class TreeModel:
    """What a correct backend holds after the operations so far.

    With ``implied_dirs`` (a backend that declares ``needs_mkdir=False``, like an object store),
    directories exist only through the items below them: an empty one may or may not be shown.
    """

    def __init__(self, implied_dirs: bool = False):
        self.items: dict = {}
        self.dirs: set = {""}
        self.hidden: set = set()  # items stored under a .tmp name: present, but never listed
        self.gone: set = set()  # names that held an item once: good candidates for "missing"
        self.implied_dirs = implied_dirs

    # --- questions ---
    def item_dirs(self) -> set:
        dirs = set()
        for name in list(self.items) + list(self.hidden):
            dirs.update(ancestors(name))
        return dirs

    def all_dirs(self) -> set:
        return self.dirs | self.item_dirs()

    def is_dir(self, name: str) -> bool:
        return name == "" or name in self.dirs or name in self.item_dirs()

    def blocked(self, name: str) -> bool:
        """True if *name* cannot hold an item: it is a directory, or lies below an item."""
        if self.is_dir(name) or name in self.hidden or name in INTERNAL_ROOT_ITEMS:
            return True
        return any(a in self.items or a in self.hidden for a in ancestors(name))

    def dir_is_empty(self, name: str) -> bool:
        prefix = name + "/"
        return not any(n.startswith(prefix) for n in list(self.items) + list(self.hidden) + list(self.dirs))

    def has_visible_below(self, name: str) -> bool:
        prefix = name + "/" if name else ""
        return any(n.startswith(prefix) for n in self.items)

    def children(self, directory: str) -> dict:
        """The entries a listing of *directory* shows: {name: Entry}."""
        prefix = directory + "/" if directory else ""
        entries = {}
        for name, value in self.items.items():
            if name.startswith(prefix):
                head, slash, _ = name[len(prefix) :].partition("/")
                if not slash:
                    entries[head] = Entry(False, len(value))
        for name in list(self.dirs) + list(self.item_dirs()):
            if name and name.startswith(prefix):
                head = name[len(prefix) :].partition("/")[0]
                if head not in entries:
                    sub = prefix + head
                    entries[head] = Entry(True, optional=self.implied_dirs and not self.has_visible_below(sub))
        if not directory:
            for name in INTERNAL_ROOT_ITEMS:
                entries.setdefault(name, Entry(False, optional=True))
        return entries

    # --- changes ---
    def store(self, name: str, value: bytes) -> None:
        self.items[name] = value
        self.gone.discard(name)
        if not self.implied_dirs:
            self.dirs.update(ancestors(name))

    def delete(self, name: str) -> None:
        del self.items[name]
        self.gone.add(name)

    def move(self, source: str, target: str) -> None:
        self.store(target, self.items.pop(source))
        self.gone.add(source)

    def mkdir(self, name: str) -> None:
        self.dirs.update(ancestors(name))
        self.dirs.add(name)

    def rmdir(self, name: str) -> None:
        self.dirs.discard(name)
