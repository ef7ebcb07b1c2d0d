"""The sftp backend: a store in a directory on an SSH server.

Round trips are what makes sftp slow, so every operation sends as many requests as it can before
waiting (docs/sftp.md lists the count per operation).  Each call is tried once: a lost connection
raises BackendConnectionError (BackendTimeout for a server that stopped answering), which the
``retry`` middleware of the Store's default chain retries; the next call connects anew.  Host key
and authentication failures are permanent.

This module holds the backend contract: names, the open/closed guard and what each operation
means.  The work is done by _pool (the connection and its sessions), _runner (one try, and what a
broken connection leaves), _reads (load and gather), _writes (store, store_new and durability),
_requests (the shared requests) and _errors (what a failure means).
"""

import os
from collections.abc import Iterator

from borgstore.backends._base import BackendBase, ItemInfo, is_hidden_from_list
from borgstore.backends.errors import BackendAlreadyExists, BackendDoesNotExist, BackendError, ObjectNotFound
from borgstore.backends.toolkit import check_backend_name, check_load_range

from . import CAPABILITIES, RETIRED_OPTIONS, _openssh, _reads, _writes
from . import _protocol as p
from ._pool import Pool
from ._requests import Root, change, find_temps, listdir, mkdirs, remove_tree, rename, stat
from ._runner import Runner
from ._url import parse_url, redact_url
from ._writes import DURABILITY_LEVELS, Durability

__all__ = ["DEFAULT_TIMEOUT", "DURABILITY_LEVELS", "TRANSPORTS", "SftpBackend", "parse_url", "sftp_backend_from_url"]

#: seconds to wait for the server (docs/sftp.md says why 20): short enough that the ``retry``
#: middleware's default budget (60 s) holds several tries against a frozen server
DEFAULT_TIMEOUT = 20.0

#: how the SSH connection is made: the system's ssh client, paramiko in this process, or
#: "auto" (the default): openssh where an ``ssh`` client is on PATH and would read the ~/.ssh
#: that HOME names, else paramiko (docs/sftp.md compares them: openssh is the faster one)
TRANSPORTS = ("auto", "openssh", "paramiko")


def choose_transport(transport: str) -> str:
    """The transport that *transport* names: ``auto`` resolved once, when the backend is built."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(map(repr, TRANSPORTS))}, not {transport!r}")
    if transport != "auto":
        return transport
    return "openssh" if _openssh.usable_here() else "paramiko"


def _check_options(connect_timeout, timeout, keepalive, ssh_config, retired: dict):
    if retired:
        names = ", ".join(sorted(retired))
        raise ValueError(
            f"the sftp option(s) {names} no longer exist: the sftp backend tries each call once, and the "
            "Store's 'retry' middleware (in the default chain of every sftp store) does the retrying; "
            "set its attempts and time budget with middleware=[..., ('retry', {'attempts': 6, 'budget': 60.0})]"
        )
    for name, value in (("connect_timeout", connect_timeout), ("timeout", timeout)):
        if value is None and name == "connect_timeout":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    if isinstance(keepalive, bool) or not isinstance(keepalive, (int, float)) or keepalive < 0:
        raise ValueError(f"keepalive must be a number of seconds >= 0, not {keepalive!r}")
    if ssh_config is not None and not os.path.isfile(os.path.expanduser(ssh_config)):
        raise ValueError(f"ssh_config {ssh_config!r} is not a file")


def _item_info(name: str, attrs: p.Attributes) -> ItemInfo:
    if attrs.is_dir:
        return ItemInfo(name=name, exists=True, size=0, directory=True, atime=attrs.atime, mtime=attrs.mtime)
    return ItemInfo(name=name, exists=True, size=attrs.size or 0, directory=False, atime=attrs.atime, mtime=attrs.mtime)


class SftpBackend(BackendBase):
    """A store in a directory on an sftp server; see the package README for URLs and options."""

    capabilities = CAPABILITIES

    def __init__(
        self,
        url: str,
        *,
        ssh_config: str | None = None,
        use_agent: bool = True,
        durability: str = "none",
        connect_timeout: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        keepalive: float = 30.0,
        transport: str = "auto",
        **retired,
    ):
        unknown = set(retired) - set(RETIRED_OPTIONS)
        if unknown:
            raise TypeError(f"SftpBackend() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        # the URL as shown anywhere: a password in it must never appear (it is not used either)
        self.url = redact_url(url)
        self.user, self.host, self.port, self.path = parse_url(url)
        self._durability = Durability(durability)
        _check_options(connect_timeout, timeout, keepalive, ssh_config, retired)
        #: "openssh" or "paramiko": the transport this backend uses (``auto`` resolved)
        self.transport = choose_transport(transport)
        if connect_timeout is None:
            connect_timeout = timeout  # a connect is a wait on the server like any other
        self._pool = Pool(
            self.host,
            self.port,
            self.user,
            ssh_config=ssh_config,
            use_agent=use_agent,
            connect_timeout=connect_timeout,
            timeout=timeout,
            keepalive=keepalive,
            transport=self.transport,
        )
        self._runner = Runner(self._pool)
        self._root = Root(self.host, self.path)
        self._fsync_supported = None

    @property
    def durability(self) -> str:
        return self._durability.level

    def __repr__(self):
        return f"<SftpBackend {self.url}>"

    def _run(self, operation, *, what: str):
        return self._runner.run(operation, what=what)

    # --- lifecycle ---
    def create(self):
        self.check_closed()

        def create(session, attempt):
            attrs = stat(session, self.path)
            if attrs is not None:
                if not attrs.is_dir or listdir(session, self.path):
                    raise BackendAlreadyExists(f"{self.url} already exists and is not empty")
                return
            mkdirs(session, self.path, attempt)

        self._root.forget_dirs()  # a store made again: nothing below it exists yet
        try:
            self._run(create, what="create")
        except BaseException:
            self._pool.close()
            raise
        # the connection stays for the open() that usually follows; close() or GC ends it

    def destroy(self):
        self.check_closed()

        def destroy(session, attempt):
            attrs = stat(session, self.path)
            if attrs is None or not attrs.is_dir:
                raise BackendDoesNotExist(f"{self.url} does not exist")
            remove_tree(session, self.path, attempt)

        try:
            self._run(destroy, what="destroy")
        finally:
            self._root.forget_dirs()
            self._pool.close()

    def open(self):
        self.check_closed()

        def check(session, attempt):
            attrs = stat(session, self.path)
            if attrs is None or not attrs.is_dir:
                raise BackendDoesNotExist(f"{self.url} does not exist (or is not a directory)")
            if self._durability.needs_fsync and self._fsync_supported is None:
                self._fsync_supported = "fsync@openssh.com" in session.extensions

        try:
            self._run(check, what="open")
        except BaseException:
            self._pool.close()
            raise
        if self._durability.needs_fsync and not self._fsync_supported:
            self._pool.close()
            raise BackendError(
                f"durability={self.durability!r} needs the fsync@openssh.com extension, which {self.host}'s "
                "sftp server does not offer; use durability='none' there"
            )
        self.opened = True

    def close(self):
        """Flush (durability "close") and end the connection.  Not open: BackendMustBeOpen, but a
        connection left by create() is ended all the same."""
        try:
            self.check_open()
            if self._durability.unflushed:
                self.flush()
        finally:
            self.opened = False
            self._pool.close()

    def flush(self):
        self.check_open()
        self._durability.flush(self._runner, self._root)

    # --- directories ---
    def mkdir(self, name):
        self.check_open()
        check_backend_name(name)

        path = self._root.path_of(name)

        def mkdir(session, attempt):
            try:
                mkdirs(session, path, attempt, top=self.path)
            except p.StatusError as exc:
                raise self._root.failure(exc, "mkdir", name) from None

        self._run(mkdir, what="mkdir")
        self._root.learn_dir(path)

    def rmdir(self, name):
        self.check_open()
        check_backend_name(name)
        path = self._root.path_of(name)
        missing = f"directory {name!r} does not exist"

        def rmdir(session, attempt):
            try:
                change(session, attempt, p.RMDIR, p.string(path))
                return
            except p.StatusError as exc:
                if exc.code not in (p.NO_SUCH_FILE, p.FAILURE):
                    raise self._root.failure(exc, "rmdir", name) from None
                failure = exc
            # OpenSSH answers "an item, not a directory" (ENOTDIR) with NO_SUCH_FILE and "not
            # empty" with FAILURE: what is there tells them apart
            try:
                attrs = stat(session, path)
            except p.StatusError as exc:
                raise self._root.failure(exc, "rmdir", name) from None
            if attrs is None:
                raise ObjectNotFound(missing)
            if not attrs.is_dir:
                raise BackendError(f"rmdir {name!r}: it is an item, not a directory")
            raise BackendError(f"rmdir {name!r} ({self.host}:{path}): the directory is not empty ({failure.message})")

        try:
            self._run(rmdir, what="rmdir")
        finally:
            # also after a failure: a lost connection may have removed it
            self._root.forget_dirs(path)

    # --- items ---
    def info(self, name):
        self.check_open()
        check_backend_name(name, root_ok=True)

        def info(session, attempt):
            try:
                attrs = p.Reader(session.request(p.STAT, p.string(self._root.path_of(name)), expect=p.ATTRS)).attrs()
            except p.StatusError as exc:
                if exc.code == p.NO_SUCH_FILE:
                    return ItemInfo(name=name, exists=False, size=0, directory=False)
                raise self._root.error(exc, "info", name) from None
            return _item_info(name, attrs)

        return self._run(info, what="info")

    def load(self, name, *, size=None, offset=0):
        self.check_open()
        check_backend_name(name)
        check_load_range(size, offset)
        if size == 0:
            # still an error for a missing item (or a directory, which is not an item)
            info = self.info(name)
            if not info.exists or info.directory:
                raise ObjectNotFound(name)
            return b""
        return self._run(lambda session, attempt: _reads.load(session, self._root, name, size, offset), what="load")

    def gather(self, sources) -> bytes:
        """The ranges of *sources* concatenated, in 2 round trips for any number of them: all
        items opened in one batch, then every read in flight at once (bounded)."""
        self.check_open()
        sources = list(sources)
        for name, offset, size in sources:
            check_backend_name(name)
            check_load_range(size, offset)
        sources = [(name, offset, size) for name, offset, size in sources if size != 0]
        if any(offset < 0 or size is None for _, offset, size in sources):
            return super().gather(sources)  # a range from the end needs each size first
        if not sources:
            return b""
        return self._run(lambda session, attempt: _reads.gather(session, self._root, sources), what="gather")

    def store(self, name, value):
        self._write("store", name, value, _writes.store)

    def store_new(self, name, value):
        """Store *value* under *name* only if no item of that name exists, atomically against every
        other writer (the plain SFTP RENAME refuses an existing target); else ObjectAlreadyExists."""
        self._write("store_new", name, value, _writes.store_new)

    def _write(self, op: str, name, value, write) -> None:
        self.check_open()
        check_backend_name(name)
        data = memoryview(value).cast("B") if not isinstance(value, bytes) else memoryview(value)
        fsync = self._durability.fsync_each
        self._run(lambda session, attempt: write(session, attempt, self._root, name, data, fsync=fsync), what=op)
        self._durability.stored(name)

    def delete(self, name):
        self.check_open()
        check_backend_name(name)
        path = self._root.path_of(name)

        def delete(session, attempt):
            try:
                change(session, attempt, p.REMOVE, p.string(path))
            except p.StatusError as exc:
                raise self._root.item_error(session, exc, "delete", name) from None

        self._run(delete, what="delete")

    def move(self, curr_name, new_name):
        self.check_open()
        check_backend_name(curr_name)
        check_backend_name(new_name)

        def move(session, attempt):
            try:
                rename(session, self._root.path_of(curr_name), self._root.path_of(new_name), attempt)
            except p.StatusError as exc:
                if exc.code not in (p.NO_SUCH_FILE, p.FAILURE):
                    raise self._root.error(exc, "move", curr_name) from None
                try:
                    self._move_again(session, attempt, curr_name, new_name)
                except p.StatusError as exc:
                    raise self._root.failure(exc, f"move {curr_name!r} to", new_name) from None

        self._run(move, what="move")
        self._durability.moved(curr_name, new_name)

    def _move_again(self, session: p.Session, attempt, curr_name: str, new_name: str):
        """The rename failed: find out why from the source, and make the target's directory."""
        source, target = self._root.path_of(curr_name), self._root.path_of(new_name)
        source_attrs = stat(session, source)
        if source_attrs is None:
            raise ObjectNotFound(curr_name)
        if source_attrs.is_dir:
            raise BackendError(f"move {curr_name!r}: it is a directory")
        mkdirs(session, target.rsplit("/", 1)[0], top=self.path)
        rename(session, source, target, attempt)

    def list(self, name) -> Iterator[ItemInfo]:
        self.check_open()
        check_backend_name(name, root_ok=True)
        missing = f"directory {name!r} does not exist"

        def listing(session, attempt):
            path = self._root.path_of(name)
            try:
                return listdir(session, path)
            except p.StatusError as exc:
                if exc.code != p.NO_SUCH_FILE:
                    raise self._root.error(exc, "list", name, missing=missing) from None
            # OpenSSH answers OPENDIR of an item (ENOTDIR) with NO_SUCH_FILE too: look what is there
            try:
                attrs = stat(session, path)
            except p.StatusError as exc:
                raise self._root.failure(exc, "list", name) from None
            if attrs is not None and not attrs.is_dir:
                raise BackendError(f"list {name!r}: it is an item, not a directory")
            raise ObjectNotFound(missing)

        # all entries are needed before the first can be yielded in name order
        entries = self._run(listing, what="list")
        entries.sort(key=lambda entry: entry[0])
        return (_item_info(filename, attrs) for filename, attrs in entries if not is_hidden_from_list(filename))

    def list_temp(self, name) -> Iterator[ItemInfo]:
        """Every ``.tmp`` item below directory *name*, at any depth, named relative to *name*, with
        its mtime: one level of directories at a time, each level's reads in flight together.
        A missing directory yields nothing."""
        self.check_open()
        check_backend_name(name, root_ok=True)
        path = self._root.path_of(name)

        def temps(session, attempt):
            try:
                return find_temps(session, path)
            except p.StatusError as exc:
                raise self._root.failure(exc, "list_temp", name) from None

        return (_item_info(relative, attrs) for relative, attrs in self._run(temps, what="list_temp"))


def sftp_backend_from_url(url: str, **options) -> SftpBackend:
    """The backend factory: an unopened SftpBackend for *url* (nothing is connected yet).

    The core has already refused options the spec does not name."""
    return SftpBackend(url, **options)
