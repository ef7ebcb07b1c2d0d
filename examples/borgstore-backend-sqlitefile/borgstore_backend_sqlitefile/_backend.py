"""The backend: one table of items; directories exist only through the names of the items in them."""

import os
import sqlite3
import time

from borgstore.backends._base import BackendBase, Capabilities, ItemInfo, is_hidden_from_list
from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendError,
    BackendMustBeOpen,
    BackendMustNotBeOpen,
    ObjectNotFound,
)

SCHEMA = "CREATE TABLE IF NOT EXISTS items (name TEXT PRIMARY KEY, data BLOB NOT NULL, mtime REAL NOT NULL)"


def _below(directory: str):
    """The name range of everything below *directory*: names >= low and < high."""
    if not directory:
        return "", "\U0010ffff"
    # "/" + 1 is "0": every name starting with "dir/" sorts between "dir/" and "dir0"
    return directory + "/", directory + "0"


class SQLiteFileBackend(BackendBase):
    # Directories are implied (needs_mkdir=False): mkdir() has nothing to do, and a directory
    # disappears with the last item in it, as in an object store.  One SQLite connection must
    # not be used by several threads at once, so thread_safe=False: the Store serializes.
    capabilities = Capabilities(needs_mkdir=False, thread_safe=False)

    def __init__(self, path: str):
        self.path = path
        self._db = None

    def __repr__(self):
        return f"<SQLiteFileBackend {self.path!r}>"

    # --- lifecycle ---
    def _check_open(self):
        if self._db is None:
            raise BackendMustBeOpen(f"{self.path} is not open")

    def create(self):
        if self._db is not None:
            raise BackendMustNotBeOpen(f"{self.path} is open")
        if os.path.exists(self.path):
            with sqlite3.connect(self.path) as db:
                db.execute(SCHEMA)
                if db.execute("SELECT 1 FROM items LIMIT 1").fetchone():
                    raise BackendAlreadyExists(f"{self.path} already holds a store")
            return
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        db = sqlite3.connect(self.path)
        try:
            db.execute(SCHEMA)
            db.commit()
        finally:
            db.close()

    def destroy(self):
        if self._db is not None:
            raise BackendMustNotBeOpen(f"{self.path} is open")
        try:
            os.remove(self.path)
        except FileNotFoundError:
            raise BackendDoesNotExist(f"{self.path} does not exist") from None

    def open(self):
        if self._db is not None:
            raise BackendMustNotBeOpen(f"{self.path} is already open")
        if not os.path.isfile(self.path):
            raise BackendDoesNotExist(f"{self.path} does not exist")
        # autocommit: every statement is its own transaction, so each store is atomic and durable
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)

    def close(self):
        self._check_open()
        self._db.close()
        self._db = None

    # --- directories ---
    def mkdir(self, name):
        self._check_open()

    def rmdir(self, name):
        self._check_open()
        low, high = _below(name)
        if self._db.execute("SELECT 1 FROM items WHERE name >= ? AND name < ? LIMIT 1", (low, high)).fetchone():
            raise BackendError(f"directory {name!r} is not empty")
        raise ObjectNotFound(f"directory {name!r} does not exist")

    # --- items ---
    def info(self, name):
        self._check_open()
        row = self._db.execute("SELECT length(data), mtime FROM items WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return ItemInfo(name=name.rpartition("/")[2], exists=True, size=row[0], directory=False, mtime=row[1])
        low, high = _below(name)
        is_dir = (
            not name
            or self._db.execute("SELECT 1 FROM items WHERE name >= ? AND name < ? LIMIT 1", (low, high)).fetchone()
            is not None
        )
        return ItemInfo(name=name.rpartition("/")[2], exists=is_dir, size=0, directory=is_dir)

    def load(self, name, *, size=None, offset=0):
        self._check_open()
        row = self._db.execute("SELECT length(data) FROM items WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise ObjectNotFound(name)
        length = row[0]
        start = max(length + offset, 0) if offset < 0 else min(offset, length)
        count = length - start if size is None else max(min(size, length - start), 0)
        if count == 0:
            return b""
        # substr() on a BLOB counts bytes, from 1: only the requested range leaves the database
        row = self._db.execute(
            "SELECT substr(data, ?, ?) FROM items WHERE name = ?", (start + 1, count, name)
        ).fetchone()
        return bytes(row[0])

    def store(self, name, value):
        self._check_open()
        self._db.execute(
            "INSERT OR REPLACE INTO items (name, data, mtime) VALUES (?, ?, ?)", (name, bytes(value), time.time())
        )

    def delete(self, name):
        self._check_open()
        if self._db.execute("DELETE FROM items WHERE name = ?", (name,)).rowcount == 0:
            raise ObjectNotFound(name)

    def move(self, curr_name, new_name):
        self._check_open()
        with _transaction(self._db):
            if self._db.execute("SELECT 1 FROM items WHERE name = ?", (curr_name,)).fetchone() is None:
                raise ObjectNotFound(curr_name)
            self._db.execute("DELETE FROM items WHERE name = ?", (new_name,))
            self._db.execute("UPDATE items SET name = ? WHERE name = ?", (new_name, curr_name))

    def list(self, name):
        self._check_open()
        low, high = _below(name)
        rows = self._db.execute(
            "SELECT name, length(data), mtime FROM items WHERE name >= ? AND name < ? ORDER BY name", (low, high)
        ).fetchall()
        if name and not rows:
            raise ObjectNotFound(f"directory {name!r} does not exist")
        entries = {}
        for full_name, size, mtime in rows:
            head, slash, _ = full_name[len(low) :].partition("/")
            if slash:
                entries[head] = ItemInfo(name=head, exists=True, size=0, directory=True)
            elif not is_hidden_from_list(head):
                entries[head] = ItemInfo(name=head, exists=True, size=size, directory=False, mtime=mtime)
        # sorted by the entry's name, which is not the order of the full names ("a-b" < "a/c")
        for head in sorted(entries):
            yield entries[head]


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
