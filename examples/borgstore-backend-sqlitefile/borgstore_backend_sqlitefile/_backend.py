"""A whole borgstore in one SQLite file: one table of items; directories exist through their items."""

import os
import sqlite3
import time
from contextlib import contextmanager

from borgstore import BackendBase, Capabilities, ItemInfo
from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendError,
    BackendURLInvalid,
    ObjectNotFound,
)
from borgstore.backends.toolkit import check_backend_name, check_load_range
from borgstore.constants import TMP_SUFFIX

SCHEMA = "CREATE TABLE IF NOT EXISTS items (name TEXT PRIMARY KEY, data BLOB NOT NULL, mtime REAL NOT NULL)"


def backend_from_url(url: str) -> "SQLiteFileBackend":
    """``sqlitefile:///absolute/path/store.sqlite`` -> an unopened backend; no I/O here."""
    prefix = "sqlitefile://"
    path = url[len(prefix) :] if url.startswith(prefix) else ""
    if not path.startswith("/") or path.endswith("/"):
        raise BackendURLInvalid(f"invalid sqlitefile URL {url!r}: use sqlitefile:///absolute/path/store.sqlite")
    return SQLiteFileBackend(path)


def _below(directory: str):
    """The name range of everything below *directory*: names >= low and < high."""
    if not directory:
        return "", "\U0010ffff"
    return directory + "/", directory + "0"  # "0" follows "/": every "dir/..." sorts in between


def _ancestors(name: str) -> list:
    parts = name.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


@contextmanager
def _failures(what: str):
    # a failing database or file system is a BackendError that says so, never an absent item
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise BackendError(f"{what}: {type(exc).__name__}: {exc}") from None


class SQLiteFileBackend(BackendBase):
    # Directories are implied (needs_mkdir=False): they exist through the items below them and
    # vanish with the last one, as in an object store.  One SQLite connection must not be used
    # by two threads at once, so thread_safe=False: the Store serializes calls.  A prefix query
    # lists a whole namespace at once: list_tree=True.
    capabilities = Capabilities(needs_mkdir=False, thread_safe=False, list_tree=True)

    def __init__(self, path: str):
        self.path = path
        self._db = None

    def __repr__(self):
        return f"<SQLiteFileBackend {self.path!r}>"

    # --- lifecycle ---
    def create(self):
        self.check_closed()
        with _failures(f"create {self.path}"):
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            db = sqlite3.connect(self.path)
            try:
                db.execute(SCHEMA)
                if db.execute("SELECT 1 FROM items LIMIT 1").fetchone():
                    raise BackendAlreadyExists(f"{self.path} already holds a store")
                db.commit()
            finally:
                db.close()

    def destroy(self):
        self.check_closed()
        try:
            os.remove(self.path)
        except FileNotFoundError:
            raise BackendDoesNotExist(f"{self.path} does not exist") from None
        except OSError as exc:
            raise BackendError(f"destroy {self.path}: {exc}") from None

    def open(self):
        self.check_closed()
        if not os.path.isfile(self.path):
            raise BackendDoesNotExist(f"{self.path} does not exist")
        with _failures(f"open {self.path}"):
            # autocommit: every statement is its own transaction, so each store is atomic
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.opened = True

    def close(self):
        self.check_open()  # a second close() raises BackendMustBeOpen
        self.opened = False
        self._db.close()
        self._db = None

    # --- helpers ---
    def _one(self, sql: str, args: tuple):
        with _failures(f"{self.path}: {sql}"):
            return self._db.execute(sql, args).fetchone()

    def _is_item(self, name: str) -> bool:
        return self._one("SELECT 1 FROM items WHERE name = ?", (name,)) is not None

    def _is_directory(self, name: str) -> bool:
        low, high = _below(name)
        return self._one("SELECT 1 FROM items WHERE name >= ? AND name < ? LIMIT 1", (low, high)) is not None

    def _check_free(self, name: str, what: str) -> None:
        """Raise BackendError if *name* cannot hold an item: it is a directory or below an item."""
        if self._is_directory(name):
            raise BackendError(f"cannot {what} {name!r}: it is a directory")
        for parent in _ancestors(name):
            if self._is_item(parent):
                raise BackendError(f"cannot {what} {name!r}: {parent!r} is an item, not a directory")

    # --- directories ---
    def mkdir(self, name):
        self.check_open()
        check_backend_name(name)
        # nothing to create (directories are implied), but an item there is a conflict
        for path in _ancestors(name) + [name]:
            if self._is_item(path):
                raise BackendError(f"cannot create directory {name!r}: {path!r} is an item")

    def rmdir(self, name):
        self.check_open()
        check_backend_name(name)
        if self._is_item(name):
            raise BackendError(f"cannot remove directory {name!r}: it is an item")
        if self._is_directory(name):
            raise BackendError(f"cannot remove directory {name!r}: it is not empty")
        # an implied directory with nothing in it does not exist
        raise ObjectNotFound(f"directory {name!r} does not exist")

    # --- items ---
    def info(self, name):
        self.check_open()
        check_backend_name(name, root_ok=True)
        leaf = name.rpartition("/")[2]
        row = self._one("SELECT length(data), mtime FROM items WHERE name = ?", (name,))
        if row is not None:
            return ItemInfo(name=leaf, exists=True, size=row[0], directory=False, mtime=int(row[1]))
        is_dir = not name or self._is_directory(name)  # the root always exists
        return ItemInfo(name=leaf, exists=is_dir, size=0, directory=is_dir)

    def load(self, name, *, size=None, offset=0):
        self.check_open()
        check_backend_name(name)
        check_load_range(size, offset)
        row = self._one("SELECT length(data) FROM items WHERE name = ?", (name,))
        if row is None:
            raise ObjectNotFound(name)
        length = row[0]
        start = max(length + offset, 0) if offset < 0 else min(offset, length)
        count = length - start if size is None else min(size, length - start)
        if count == 0:
            return b""
        # substr() on a BLOB counts bytes from 1: only the requested range leaves the database
        row = self._one("SELECT substr(data, ?, ?) FROM items WHERE name = ?", (start + 1, count, name))
        if row is None:
            raise ObjectNotFound(name)  # deleted between the two queries
        return bytes(row[0])

    def store(self, name, value):
        self.check_open()
        check_backend_name(name)
        self._check_free(name, "store")
        with _failures(f"store {name!r}"):
            self._db.execute(
                "INSERT OR REPLACE INTO items (name, data, mtime) VALUES (?, ?, ?)", (name, bytes(value), time.time())
            )

    def delete(self, name):
        self.check_open()
        check_backend_name(name)
        with _failures(f"delete {name!r}"):
            if self._db.execute("DELETE FROM items WHERE name = ?", (name,)).rowcount == 0:
                raise ObjectNotFound(name)

    def move(self, curr_name, new_name):
        self.check_open()
        check_backend_name(curr_name)
        check_backend_name(new_name)
        with _failures(f"move {curr_name!r} to {new_name!r}"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if not self._is_item(curr_name):
                    raise ObjectNotFound(curr_name)
                if curr_name != new_name:
                    self._check_free(new_name, "move onto")
                    self._db.execute("DELETE FROM items WHERE name = ?", (new_name,))
                    self._db.execute("UPDATE items SET name = ? WHERE name = ?", (new_name, curr_name))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows_below(self, name: str) -> list:
        low, high = _below(name)
        with _failures(f"list {name!r}"):
            return self._db.execute(
                "SELECT name, length(data), mtime FROM items WHERE name >= ? AND name < ? ORDER BY name", (low, high)
            ).fetchall()

    def list(self, name):
        self.check_open()
        check_backend_name(name, root_ok=True)
        if name and self._is_item(name):
            raise BackendError(f"cannot list {name!r}: it is an item, not a directory")
        rows = self._rows_below(name)
        if name and not rows:
            raise ObjectNotFound(f"directory {name!r} does not exist")
        start = len(name) + 1 if name else 0
        entries = {}
        for full_name, size, mtime in rows:
            head, slash, _ = full_name[start:].partition("/")
            if slash:
                entries[head] = ItemInfo(name=head, exists=True, size=0, directory=True)
            elif not head.endswith(TMP_SUFFIX):
                entries[head] = ItemInfo(name=head, exists=True, size=size, directory=False, mtime=int(mtime))
        # sorted by leaf name, which is not the order of the full names ("a-b" < "a/c")
        return iter([entries[head] for head in sorted(entries)])

    def list_tree(self, name):
        self.check_open()
        check_backend_name(name, root_ok=True)
        start = len(name) + 1 if name else 0
        # ORDER BY name is the order list_tree promises: a directory sorts as its name plus "/"
        for full_name, size, mtime in self._rows_below(name):
            if not full_name.endswith(TMP_SUFFIX):
                yield ItemInfo(name=full_name[start:], exists=True, size=size, directory=False, mtime=int(mtime))
