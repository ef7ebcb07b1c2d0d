"""The rclone backend: every rclone remote as a borgstore backend, through a private ``rclone rcd``.

Each call is tried once: what goes wrong is reported with the error class that says whether a
later try may succeed (docs/errors.md), and the ``retry`` middleware in the Store's default chain
(declared through ``transient_errors``) decides about trying again.  docs/rclone.md has the
mapping of rclone's answers."""

import math
import random
import threading
import time
import weakref
from contextlib import contextmanager
from dataclasses import replace
from urllib.parse import quote, urlencode

from borgstore.backends._base import BackendBase, ItemInfo
from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendConnectionError,
    BackendDoesNotExist,
    BackendError,
    BackendMustBeOpen,
    BackendTimeout,
    BackendUnavailable,
    BackendURLInvalid,
    ObjectNotFound,
    PermissionDenied,
)
from borgstore.backends.http import range_data, range_header
from borgstore.backends.toolkit import check_backend_name, check_load_range, missing_or_directory, temp_name

from . import DISPLAY_CAPABILITIES, redact, scrubber
from ._daemon import DEFAULT_TIMEOUT, CutShort, RcDaemon, rc_request
from ._listing import Listings
from ._process import find_binary
from ._rc import (
    HASHLIB_NAMES,
    IS_A_DIRECTORY_TEXTS,
    KIND_TEXTS,
    MISSING_TEXTS,
    MOVE_ATTEMPTS,
    NOT_A_DIRECTORY_TEXTS,
    SNAPSHOT_ATTEMPTS,
    RcFailed,
    has_inline_parameters,
    item_info,
    multipart_form,
    rclone_error,
    same_version,
    words_of,
)

SCHEME = "rclone"
AUTO_CHOICES = ("auto", "always", "never")


def _check_timeout(timeout) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    return float(timeout)


class RcloneBackend(Listings, BackendBase):
    """A store at ``REMOTE:PATH`` of any rclone remote (``/path`` is a local directory)."""

    # what most remotes can do; open() sets what this remote can do (see _learn_remote)
    capabilities = DISPLAY_CAPABILITIES

    def __init__(
        self, remote: str, *, server_hash: str = "auto", verify_uploads: str = "auto", timeout: float = DEFAULT_TIMEOUT
    ):
        # rclone's connection strings may carry secrets: messages, repr and logs show only this
        self._shown = redact(f"{SCHEME}:{remote}")
        self._scrub = scrubber(remote)
        if not remote:
            raise BackendURLInvalid("invalid rclone URL 'rclone:': give rclone:REMOTE:PATH or rclone:/local/path")
        for option, value in (("server_hash", server_hash), ("verify_uploads", verify_uploads)):
            if value not in AUTO_CHOICES:
                raise ValueError(f"{option} must be one of {', '.join(AUTO_CHOICES)}, got {value!r}")
        self.timeout = _check_timeout(timeout)
        self.remote = remote
        # rclone addresses items as (fs, remote); keeping one fs string lets rclone cache one Fs
        self.fs = remote if remote.endswith((":", "/")) else remote + "/"
        self.server_hash = server_hash
        self.verify_uploads = verify_uploads
        self._daemon: RcDaemon | None = None
        self._finalizer = None
        self._open_lock = threading.Lock()
        self._local = True
        self._verify_loads = True
        # a move onto an existing item replaces it in one step (learnt at open; store relies on it)
        self._atomic_move = True
        self._upload_config = "{}"
        self._move_config: dict = {}
        self._server_hashes: frozenset = frozenset()
        self.capabilities = type(self).capabilities

    def __repr__(self):
        return f"<RcloneBackend {self._shown!r}>"

    @property
    def url(self) -> str:
        """The store's URL for display: the values of secret parameters are hidden."""
        return self._shown

    @property
    def pid(self):
        """The process id of this store's rclone, None while closed (for monitoring and tests)."""
        daemon = self._daemon
        return daemon.pid if daemon is not None else None

    # --- the rclone process ---
    def _start_daemon(self) -> tuple:
        """Start a new rclone; return it and the finalizer that stops it."""
        daemon = RcDaemon(find_binary(), scrub=self._scrub, timeout=self.timeout)
        # the finalizer holds the daemon, never the backend, so that the backend can be collected
        finalizer = weakref.finalize(self, daemon.close)
        try:
            daemon.start()
        except BaseException:
            finalizer()
            raise
        return daemon, finalizer

    @contextmanager
    def _temporary_daemon(self):
        """An rclone for create() and destroy(), which run while the store is closed."""
        daemon, finalizer = self._start_daemon()
        try:
            yield daemon
        finally:
            finalizer()

    def _open_daemon(self) -> RcDaemon:
        self.check_open()
        daemon = self._daemon
        if daemon is None:  # another thread closed the store just now
            raise BackendMustBeOpen(f"{self!r} is not open")
        return daemon

    def _rc(self, command: str, params: dict, daemon: RcDaemon | None = None, *, mutation=False) -> dict:
        response = (daemon or self._open_daemon()).rc(command, params, mutation=mutation)
        if response.status == 200:
            return response.json()
        raise self._failure(command, response)

    def _job(self, command: str, params: dict, daemon: RcDaemon | None = None, *, mutation=False) -> dict:
        """:meth:`_rc` for a call that may take long (see RcDaemon.job)."""
        response = (daemon or self._open_daemon()).job(command, params, mutation=mutation)
        if response.status == 200:
            return response.json()
        raise self._failure(command, response)

    def _failure(self, command: str, response) -> RcFailed:
        """rclone's error answer to *command*, its text cleared of the URL's secrets."""
        message = self._scrub(str(response.json().get("error") or f"HTTP {response.status}"))
        if response.status == 401:
            raise BackendConnectionError(f"rclone rcd refused our credentials: {message}")
        return RcFailed(command, response.status, message, words_of(message, self.fs))

    def _error(self, failure: RcFailed, what: str, *, mutation=False) -> BackendError:
        return rclone_error(failure, f"{self.url}: {what}", mutation=mutation)

    def _stat_params(self, name: str) -> dict:
        return {"fs": self.fs, "remote": name, "opt": {"noMimeType": True, "noModTime": False}}

    def _stat(self, name: str, daemon=None) -> dict | None:
        """rclone's item dict for *name*, None if nothing is there."""
        try:
            return self._rc("operations/stat", self._stat_params(name), daemon).get("item")
        except RcFailed as failure:
            self._stat_failed(failure, name)
            return None

    def _stat_failed(self, failure: RcFailed, name: str) -> None:
        """Return if *failure* of a stat says nothing is there (the stat's answer is None); raise
        the error for any other failure."""
        if failure.status == 404 or failure.mentions(NOT_A_DIRECTORY_TEXTS + MISSING_TEXTS):
            return
        raise self._error(failure, f"stat {name!r}") from None

    def _stat_response(self, response, name: str) -> dict | None:
        if response.status == 200:
            return response.json().get("item")
        self._stat_failed(self._failure("operations/stat", response), name)
        return None

    # --- lifecycle ---
    def create(self):
        self.check_closed()
        with self._temporary_daemon() as daemon:
            root = self._stat("", daemon)
            if root is not None:
                if not root.get("IsDir"):
                    raise BackendAlreadyExists(f"{self.url} exists and is not a directory")
                try:
                    entries = self._job("operations/list", {"fs": self.fs, "remote": ""}, daemon).get("list")
                except RcFailed as failure:
                    raise self._error(failure, "list the store location") from None
                if entries:
                    raise BackendAlreadyExists(f"{self.url} already exists and is not empty")
            try:
                self._rc("operations/mkdir", {"fs": self.fs, "remote": ""}, daemon, mutation=True)
            except RcFailed as failure:
                raise self._error(failure, "create the store location", mutation=True) from None

    def destroy(self):
        self.check_closed()
        with self._temporary_daemon() as daemon:
            root = self._stat("", daemon)
            if root is None:
                raise BackendDoesNotExist(f"{self.url} does not exist")
            try:
                self._job("operations/purge", {"fs": self.fs, "remote": ""}, daemon, mutation=True)
            except RcFailed as failure:
                raise self._error(failure, "destroy the store", mutation=True) from None

    def open(self):
        with self._open_lock:
            self.check_closed()
            daemon, finalizer = self._start_daemon()
            try:
                self._learn_remote(daemon)
                root = self._stat("", daemon)
                if root is None or not root.get("IsDir"):
                    raise BackendDoesNotExist(f"{self.url} does not exist")
            except BaseException:
                finalizer()
                raise
            self._daemon, self._finalizer = daemon, finalizer
            self.opened = True

    def _learn_remote(self, daemon):
        """Ask rclone what the remote can do; the capabilities become what it says."""
        try:
            info = self._rc("operations/fsinfo", {"fs": self.fs}, daemon)
        except RcFailed as failure:
            raise BackendDoesNotExist(f"rclone cannot use {self.url}: {failure.message}") from None
        features = info.get("Features") or {}
        self._local = bool(features.get("IsLocal"))
        self._verify_loads = self._local
        # After an upload rclone compares the hash it computed on the way with the remote's hash
        # of the new item.  Where the remote keeps hashes as metadata (S3, B2, Drive ...) that is
        # free; where it has to read the item back (SlowHash: local, sftp) it is not: a local
        # remote hashes the same bytes twice in one process (half the throughput of big stores),
        # sftp runs md5sum over a new ssh session per item (140 ms each).  SSH and TCP checksums
        # already protect the transfer there.
        verify = self.verify_uploads == "always" or (self.verify_uploads == "auto" and not features.get("SlowHash"))
        self._upload_config = "{}" if verify else '{"IgnoreChecksum": true}'
        # rclone moves onto an existing target by deleting it first, so for a moment readers find
        # no item.  A local remote's move is a rename(2), which replaces the target in one step:
        # with NoCheckDest rclone leaves the target to it.  Other remotes' moves cannot be trusted
        # with that (sftp's plain SFTP rename refuses an existing target; Google Drive would keep
        # two files of the same name), and remotes without a server-side move copy, which
        # replaces in one step by itself.
        self._move_config = {"_config": {"NoCheckDest": True}} if self._local else {}
        self._atomic_move = self._local or not features.get("Move")
        hashes = {HASHLIB_NAMES[h] for h in info.get("Hashes") or () if h in HASHLIB_NAMES}
        use_server = self.server_hash == "always" or (self.server_hash == "auto" and not self._local)
        if not use_server or has_inline_parameters(self.remote):
            hashes = set()
        self._server_hashes = frozenset(hashes)
        self.capabilities = replace(
            type(self).capabilities,
            hash_algorithms=self._server_hashes,
            # an overwrite is a move onto the item: if the move deletes the target first, a
            # reader can find the item missing for a moment; and only verified loads are sure
            # never to return a mix of two versions (see load)
            atomic_store=self._atomic_move and self._verify_loads,
            needs_mkdir=bool(features.get("CanHaveEmptyDirectories", True)),
        )

    def close(self):
        with self._open_lock:
            self.check_open()
            finalizer, self._finalizer = self._finalizer, None
            self._daemon = None
            self.opened = False
            if finalizer is not None:
                finalizer()

    # --- directories ---
    def mkdir(self, name):
        self._open_daemon()
        check_backend_name(name)
        try:
            self._rc("operations/mkdir", {"fs": self.fs, "remote": name}, mutation=True)
        except RcFailed as failure:
            raise self._error(failure, f"mkdir {name!r}", mutation=True) from None

    def rmdir(self, name):
        self._open_daemon()
        check_backend_name(name)
        # rclone's rmdir of a local item removes the item (os.Remove): look before
        found = self._stat(name)
        if found is None:
            raise ObjectNotFound(f"directory {name!r} does not exist")
        if not found.get("IsDir"):
            raise BackendError(f"{self.url}: rmdir {name!r}: it is an item, not a directory")
        try:
            self._rc("operations/rmdir", {"fs": self.fs, "remote": name}, mutation=True)
        except RcFailed as failure:
            error = self._error(failure, f"rmdir {name!r}", mutation=True)
            # "no such file" may be a directory removed meanwhile or "not empty" in other words
            if isinstance(error, ObjectNotFound) and self._stat(name) is not None:
                error = BackendError(str(error))
            raise error from None

    # --- items ---
    def info(self, name):
        self._open_daemon()
        check_backend_name(name, root_ok=True)
        item = self._stat(name)
        if item is None:
            return ItemInfo(name=name, exists=False, size=0, directory=False)
        return item_info(name, item)

    def _item_url(self, name: str) -> str:
        return "/" + quote(f"[{self.fs}]/{name}", safe="/:,=")

    def load(self, name, *, size=None, offset=0):
        daemon = self._open_daemon()
        check_backend_name(name)
        check_load_range(size, offset)
        requested_offset = offset
        if offset < 0 or size == 0:
            length = self._size_of(name)  # raises ObjectNotFound
            if size == 0:
                return b""
            offset = max(length + offset, 0)
        if not self._verify_loads:
            target, headers = self._get_args(name, offset, size)
            return self._load_response(daemon.request("GET", target, headers=headers), name, offset, size)
        # rclone serves an item with the length of the version it looked up and the bytes of the
        # version it then opens: a load that races an overwrite can come back cut short or as
        # the start of the newer value.  Where a lookup is cheap (a local remote), the item's
        # version (size and modification time) is looked up right before and after the load, in
        # one pipelined exchange, and read again while it changes: reading one version is how
        # this backend keeps atomic_store, not a retry of a failure (those go to the caller).
        stat = rc_request("operations/stat", self._stat_params(name))
        for attempt in range(SNAPSHOT_ATTEMPTS):
            target, headers = self._get_args(name, offset, size)
            try:
                first, got, last = daemon.pipeline([stat, ("GET", target, headers, ()), stat])
            except CutShort:
                first = None  # rclone ended the response early: the item shrank while served
            if first is not None:
                before, after = self._stat_response(first, name), self._stat_response(last, name)
                if before is None or before.get("IsDir"):
                    raise missing_or_directory(name, before is not None)
                data = self._load_response(got, name, offset, size)
                length = max(int(before.get("Size") or 0), 0)
                if requested_offset < 0 and max(length + requested_offset, 0) != offset:
                    offset = max(length + requested_offset, 0)  # the tail moved with a new version
                    continue
                expected = max(min(length - offset, length if size is None else size), 0)
                if after is not None and same_version(before, after) and len(data) == expected:
                    return data
            time.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.05)))  # let the writer finish
        raise BackendUnavailable(
            f"{self.url}: {name!r} was replaced during each of {SNAPSHOT_ATTEMPTS} attempts to read one version of it"
        )

    def _get_args(self, name: str, start: int, size) -> tuple:
        byte_range = range_header(start, size)
        return self._item_url(name), ({"Range": byte_range} if byte_range else None)

    def _load_response(self, response, name: str, start: int, size) -> bytes:
        try:
            data = range_data(response, start, size)
        except BackendError as exc:
            raise BackendError(f"{self.url}: load {name!r}: {exc}") from None
        if data is not None:
            return data
        if response.status == 404:
            raise ObjectNotFound(name)
        failure = self._failure("GET", response)
        item = self._stat(name)
        if item is None or item.get("IsDir"):
            raise missing_or_directory(name, item is not None)
        raise self._error(failure, f"load {name!r}")

    def _size_of(self, name: str) -> int:
        item = self._stat(name)
        if item is None or item.get("IsDir"):
            raise missing_or_directory(name, item is not None)
        return max(int(item.get("Size") or 0), 0)

    def store(self, name, value):
        daemon = self._open_daemon()
        check_backend_name(name)
        value = memoryview(value)
        if value.format != "B" or value.ndim != 1:
            value = value.cast("B")  # lengths below count bytes, not elements
        temp = temp_name(name)
        directory, _, temp_base = temp.rpartition("/")
        try:
            self._upload(daemon, directory, temp_base, value)
            self._move_into_place(temp, name)
        except BaseException as exc:
            # rclone did not answer in time: asking it to delete the temp would wait as long
            # again; the temp is then left to Store.remove_stale_temps()
            if not isinstance(exc, BackendTimeout):
                self._discard(temp)
            raise

    def _move_into_place(self, temp: str, name: str):
        # Where rclone replaces by deleting the target first (sftp), another writer of the same
        # name gets in the way: it puts its item back between our delete and our rename (SFTP's
        # rename then refuses), or deletes the target before we do ("file does not exist").
        # rclone answered that our move failed, because of that writer: moving again settles it.
        # A lost connection or a timeout is never repeated here (the caller's retry layer does).
        for attempt in range(MOVE_ATTEMPTS):
            try:
                return self._move(temp, name, f"store {name!r}", temp_is_ours=True)
            except (BackendConnectionError, PermissionDenied, ObjectNotFound):
                raise
            except BackendError:
                if self._atomic_move or attempt == MOVE_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, 0.005 * 2**attempt))

    def _upload(self, daemon, directory: str, filename: str, value):
        head, tail, content_type = multipart_form(filename)
        query = urlencode({"fs": self.fs, "remote": directory, "_config": self._upload_config})
        response = daemon.request(
            "POST",
            "/operations/uploadfile?" + query,
            body=(head, value, tail),
            headers={"Content-Type": content_type},
            mutation=True,
        )
        if response.status != 200:
            failure = self._failure("operations/uploadfile", response)
            raise self._error(failure, f"upload {filename!r}", mutation=True)

    def _discard(self, temp: str):
        """Remove a temporary item left by a failed store, if it is there and rclone answers
        (an rclone that died is started again for it)."""
        daemon = self._daemon
        if daemon is None:
            return
        try:
            self._rc("operations/deletefile", {"fs": self.fs, "remote": temp}, daemon)
        except (RcFailed, BackendError):
            pass

    def delete(self, name):
        self._open_daemon()
        check_backend_name(name)
        try:
            self._rc("operations/deletefile", {"fs": self.fs, "remote": name}, mutation=True)
        except RcFailed as failure:
            # "is a directory", "not a directory" (an item above): no item of that name either
            if failure.mentions(KIND_TEXTS):
                raise missing_or_directory(name, failure.mentions(IS_A_DIRECTORY_TEXTS)) from None
            raise self._error(failure, f"delete {name!r}", mutation=True) from None

    def _move(self, curr_name: str, new_name: str, what: str, *, temp_is_ours=False):
        params = {"srcFs": self.fs, "srcRemote": curr_name, "dstFs": self.fs, "dstRemote": new_name}
        params.update(self._move_config)
        try:
            self._rc("operations/movefile", params, mutation=True)
        except RcFailed as failure:
            error = self._move_error(failure, curr_name, what, temp_is_ours)
            if error is not None:
                raise error from None

    def _move_error(self, failure: RcFailed, curr_name: str, what: str, temp_is_ours: bool):
        """The error for a failed move, or None where the move happened after all.

        404 is rclone's first look at the source (or, on a remote without an atomic move, its
        look at the target after the rename, which another writer may have replaced).  Other
        "not found" words, "is a directory" and "not a directory" may be about either name, and a
        concurrent mover or deleter can take the source between rclone's look and its rename
        ("rename ...: no such file or directory"): the source decides."""
        error = self._error(failure, what, mutation=True)
        if not isinstance(error, ObjectNotFound) and not failure.mentions(KIND_TEXTS):
            return error
        if failure.status == 404 and not temp_is_ours:
            return missing_or_directory(curr_name, False)
        source = self._stat(curr_name)
        if source is None and temp_is_ours:
            if failure.status == 404 and self._atomic_move:
                # before the rename: someone removed our temp (a stale-temp clean-up), nothing stored
                return BackendError(f"{error} (the temporary item vanished before it was moved)", temporary=True)
            return None  # only we move our temp: it was moved, then replaced or moved by another writer
        if source is None or source.get("IsDir"):
            return missing_or_directory(curr_name, source is not None)
        if isinstance(error, ObjectNotFound):  # the source is there: the target's trouble
            return BackendUnavailable(str(error), maybe_applied=False)
        return error

    def move(self, curr_name, new_name):
        self._open_daemon()
        check_backend_name(curr_name)
        check_backend_name(new_name)
        self._move(curr_name, new_name, f"move {curr_name!r} to {new_name!r}")


def rclone_backend_from_url(url: str, **options) -> RcloneBackend:
    """The backend for *url*; the core has checked the option names (BackendSpec.options)."""
    scheme, sep, remote = url.partition(":")
    if not sep or scheme.lower() != SCHEME:
        raise BackendURLInvalid(
            f"invalid rclone URL {redact(url)!r}: expected rclone:REMOTE:PATH or rclone:/local/path"
        )
    return RcloneBackend(remote, **options)
