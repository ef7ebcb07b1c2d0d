"""The rclone backend: every rclone remote as a borgstore backend, through a private ``rclone rcd``."""

import random
import re
import secrets
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from urllib.parse import quote, urlencode

from borgstore.backends._base import BackendBase, Capabilities, ItemInfo, is_hidden_from_list
from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendConnectionError,
    BackendDoesNotExist,
    BackendError,
    BackendMustBeOpen,
    BackendMustNotBeOpen,
    BackendURLInvalid,
    ObjectNotFound,
    PermissionDenied,
)
from borgstore.constants import TMP_SUFFIX

from ._daemon import RcDaemon, find_binary, rc_request

SCHEME = "rclone"
AUTO_CHOICES = ("auto", "always", "never")
OPTIONS = ("server_hash", "verify_uploads")
# rclone's names of the hashes that hashlib computes the same way
_HASHLIB_NAMES = {"md5": "md5", "sha1": "sha1", "sha256": "sha256"}
LOAD_ATTEMPTS = 10
_PERMISSION_TEXTS = ("permission denied", "operation not permitted", "read-only file system", "access denied")
_NOT_A_DIRECTORY_TEXTS = ("not a directory", "is a file not a directory")


class _RcFailed(Exception):
    """rclone answered with an error; mapped to a borgstore error by the operation."""

    def __init__(self, command: str, status: int, message: str, after_restart: bool):
        super().__init__(f"{command}: HTTP {status}: {message}")
        self.command = command
        self.status = status
        self.message = message
        self.after_restart = after_restart

    def mentions(self, texts) -> bool:
        lowered = self.message.lower()
        return any(text in lowered for text in texts)


def _parse_modtime(text) -> float:
    """rclone's RFC 3339 time with nanoseconds -> POSIX seconds (0 if absent)."""
    if not text:
        return 0
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        return 0
    seconds, fraction, zone = match.groups()
    stamp = datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone)).timestamp()
    return stamp + (float("0." + fraction) if fraction else 0.0)


def _same_version(before: dict, after: dict) -> bool:
    return before.get("Size") == after.get("Size") and before.get("ModTime") == after.get("ModTime")


def _has_inline_parameters(remote: str) -> bool:
    # ":sftp,host=h,pass=...:path" and "name,key=value:path" carry settings (maybe secrets) in the
    # spec itself; such a spec must never appear on a command line.
    return not remote.startswith("/") and "," in remote


class RcloneBackend(BackendBase):
    """A store at ``REMOTE:PATH`` of any rclone remote (``/path`` is a local directory)."""

    capabilities = Capabilities(
        # directories are real on most remotes (local, sftp, most cloud drives); on bucket-based
        # ones (S3) they exist only through the items below them: see _learn_remote
        needs_mkdir=True,
        atomic_store=True,
        thread_safe=True,
    )

    def __init__(self, remote: str, *, server_hash: str = "auto", verify_uploads: str = "auto"):
        if not remote:
            raise BackendURLInvalid("invalid rclone URL 'rclone:': give rclone:REMOTE:PATH or rclone:/local/path")
        for option, value in (("server_hash", server_hash), ("verify_uploads", verify_uploads)):
            if value not in AUTO_CHOICES:
                raise ValueError(f"{option} must be one of {', '.join(AUTO_CHOICES)}, got {value!r}")
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
        self._upload_config = "{}"
        self._move_config: dict = {}
        self._server_hashes: frozenset = frozenset()
        self.capabilities = type(self).capabilities

    def __repr__(self):
        return f"<RcloneBackend {self.remote!r}>"

    @property
    def url(self) -> str:
        return f"{SCHEME}:{self.remote}"

    @property
    def pid(self):
        """The process id of this store's rclone, None while closed (for monitoring and tests)."""
        daemon = self._daemon
        return daemon.pid if daemon is not None else None

    # --- the rclone process ---
    def _start_daemon(self) -> tuple:
        """Start a new rclone; return it and the finalizer that stops it."""
        daemon = RcDaemon(find_binary())
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

    def _check_open(self) -> RcDaemon:
        daemon = self._daemon
        if daemon is None or self._finalizer is None:
            raise BackendMustBeOpen(f"{self.url} is not open")
        return daemon

    def _rc(self, command: str, params: dict, daemon: RcDaemon | None = None) -> dict:
        daemon = daemon or self._check_open()
        response = daemon.rc(command, params)
        data = response.json()
        if response.status == 200:
            return data
        message = data.get("error") or f"HTTP {response.status}"
        if response.status in (401, 403):
            raise BackendConnectionError(f"rclone rcd refused our credentials: {message}")
        raise _RcFailed(command, response.status, str(message), response.after_restart)

    def _error(self, failure: _RcFailed, what: str) -> BackendError:
        if failure.mentions(_PERMISSION_TEXTS):
            return PermissionDenied(f"{self.url}: {what}: {failure.message}")
        return BackendError(f"{self.url}: {what}: rclone {failure.command} failed: {failure.message}")

    def _stat_params(self, name: str) -> dict:
        return {"fs": self.fs, "remote": name, "opt": {"noMimeType": True, "noModTime": False}}

    def _stat(self, name: str, daemon=None) -> dict | None:
        """rclone's item dict for *name*, None if nothing is there."""
        try:
            return self._rc("operations/stat", self._stat_params(name), daemon).get("item")
        except _RcFailed as failure:
            return self._stat_failed(failure, name)

    def _stat_failed(self, failure: "_RcFailed", name: str) -> None:
        if failure.status == 404 or failure.mentions(_NOT_A_DIRECTORY_TEXTS):
            return
        raise self._error(failure, f"stat {name!r}") from None

    def _stat_response(self, response, name: str) -> dict | None:
        data = response.json()
        if response.status == 200:
            return data.get("item")
        if response.status in (401, 403):
            raise BackendConnectionError(f"rclone rcd refused our credentials: {data.get('error')}")
        return self._stat_failed(_RcFailed("operations/stat", response.status, str(data.get("error")), False), name)

    # --- lifecycle ---
    def create(self):
        if self._finalizer is not None:
            raise BackendMustNotBeOpen(f"{self.url} is open")
        with self._temporary_daemon() as daemon:
            root = self._stat("", daemon)
            if root is not None:
                if not root.get("IsDir"):
                    raise BackendAlreadyExists(f"{self.url} exists and is not a directory")
                try:
                    entries = self._rc("operations/list", {"fs": self.fs, "remote": ""}, daemon).get("list")
                except _RcFailed as failure:
                    raise self._error(failure, "list the store location") from None
                if entries:
                    raise BackendAlreadyExists(f"{self.url} already exists and is not empty")
            try:
                self._rc("operations/mkdir", {"fs": self.fs, "remote": ""}, daemon)
            except _RcFailed as failure:
                raise self._error(failure, "create the store location") from None

    def destroy(self):
        if self._finalizer is not None:
            raise BackendMustNotBeOpen(f"{self.url} is open")
        with self._temporary_daemon() as daemon:
            root = self._stat("", daemon)
            if root is None:
                raise BackendDoesNotExist(f"{self.url} does not exist")
            try:
                self._rc("operations/purge", {"fs": self.fs, "remote": ""}, daemon)
            except _RcFailed as failure:
                raise self._error(failure, "destroy the store") from None

    def open(self):
        with self._open_lock:
            if self._finalizer is not None:
                raise BackendMustNotBeOpen(f"{self.url} is already open")
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

    def _learn_remote(self, daemon):
        try:
            info = self._rc("operations/fsinfo", {"fs": self.fs}, daemon)
        except _RcFailed as failure:
            raise BackendDoesNotExist(f"rclone cannot use {self.remote!r}: {failure.message}") from None
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
        atomic_move = self._local or not features.get("Move")
        hashes = {_HASHLIB_NAMES[h] for h in info.get("Hashes") or () if h in _HASHLIB_NAMES}
        use_server = self.server_hash == "always" or (self.server_hash == "auto" and not self._local)
        if not use_server or _has_inline_parameters(self.remote):
            hashes = set()
        self._server_hashes = frozenset(hashes)
        self.capabilities = replace(
            type(self).capabilities,
            hash_algorithms=self._server_hashes,
            # an overwrite is a move onto the item: if the move deletes the target first, a
            # reader can find the item missing for a moment; and only verified loads are sure
            # never to return a mix of two versions (see load)
            atomic_store=atomic_move and self._verify_loads,
            needs_mkdir=bool(features.get("CanHaveEmptyDirectories", True)),
        )

    def close(self):
        with self._open_lock:
            finalizer, self._finalizer = self._finalizer, None
            self._daemon = None
            if finalizer is not None:
                finalizer()

    # --- directories ---
    def mkdir(self, name):
        self._check_open()
        try:
            self._rc("operations/mkdir", {"fs": self.fs, "remote": name})
        except _RcFailed as failure:
            raise self._error(failure, f"mkdir {name!r}") from None

    def rmdir(self, name):
        self._check_open()
        try:
            self._rc("operations/rmdir", {"fs": self.fs, "remote": name})
        except _RcFailed as failure:
            # rclone says "no such file" and "not empty" with the same status
            item = self._stat(name)
            if item is None or not item.get("IsDir"):
                if failure.after_restart and item is None:
                    return  # the rclone that died had removed it
                raise ObjectNotFound(f"directory {name!r} does not exist") from None
            raise self._error(failure, f"rmdir {name!r}") from None

    # --- items ---
    def info(self, name):
        self._check_open()
        item = self._stat(name)
        if item is None:
            return ItemInfo(name=name, exists=False, size=0, directory=False)
        directory = bool(item.get("IsDir"))
        size = 0 if directory else max(int(item.get("Size") or 0), 0)
        return ItemInfo(
            name=name, exists=True, size=size, directory=directory, mtime=_parse_modtime(item.get("ModTime"))
        )

    def _item_url(self, name: str) -> str:
        return "/" + quote(f"[{self.fs}]/{name}", safe="/:,=")

    def load(self, name, *, size=None, offset=0):
        daemon = self._check_open()
        if size is not None and size < 0:
            raise ValueError(f"size must be None or >= 0, got {size}")
        requested_offset = offset
        if offset < 0 or size == 0:
            length = self._size_of(name)  # raises ObjectNotFound
            if size == 0:
                return b""
            offset = max(length + offset, 0)
        if not self._verify_loads:
            target, headers = self._get_args(name, offset, size)
            response = daemon.request("GET", target, headers=headers, idempotent=True)
            return self._load_response(response, name, offset, size)
        # rclone serves an item with the length of the version it looked up and the bytes of the
        # version it then opens: a load that races an overwrite can come back cut short or as
        # the start of the newer value.  Where a lookup is cheap (a local remote), the item's
        # version (size and modification time) is looked up right before and after the load, in
        # one pipelined exchange, and the load is repeated if it changed.
        stat = rc_request("operations/stat", self._stat_params(name))
        for attempt in range(LOAD_ATTEMPTS):
            target, headers = self._get_args(name, offset, size)
            first, got, last = daemon.pipeline([stat, ("GET", target, headers, ()), stat], idempotent=True)
            before, after = self._stat_response(first, name), self._stat_response(last, name)
            if before is None or before.get("IsDir"):
                raise ObjectNotFound(name)
            data = self._load_response(got, name, offset, size)
            length = max(int(before.get("Size") or 0), 0)
            if requested_offset < 0 and max(length + requested_offset, 0) != offset:
                offset = max(length + requested_offset, 0)  # the tail moved with a new version
                continue
            expected = max(min(length - offset, length if size is None else size), 0)
            if after is not None and _same_version(before, after) and len(data) == expected:
                return data
            time.sleep(random.uniform(0, min(0.001 * 2**attempt, 0.05)))  # let the writer finish
        error = BackendError(f"{self.url}: {name!r} was replaced during each of {LOAD_ATTEMPTS} attempts to load it")
        error.temporary = True  # trying again later may well succeed
        raise error

    def _get_args(self, name: str, start: int, size) -> tuple:
        if size is None:
            byte_range = f"bytes={start}-" if start else None
        else:
            byte_range = f"bytes={start}-{start + size - 1}"
        return self._item_url(name), ({"Range": byte_range} if byte_range else None)

    def _load_response(self, response, name: str, start: int, size) -> bytes:
        if response.status == 206:
            return response.data
        if response.status == 200:
            # the whole item came back (rclone ignored the range): cut it here
            return response.data[start : None if size is None else start + size]
        if response.status == 416:
            return b""  # the range starts past the end
        if response.status == 404:
            raise ObjectNotFound(name)
        failure = _RcFailed("GET", response.status, str(response.json().get("error")), response.after_restart)
        item = self._stat(name)
        if item is None or item.get("IsDir"):
            raise ObjectNotFound(name)
        raise self._error(failure, f"load {name!r}")

    def _size_of(self, name: str) -> int:
        item = self._stat(name)
        if item is None or item.get("IsDir"):
            raise ObjectNotFound(name)
        return max(int(item.get("Size") or 0), 0)

    def store(self, name, value):
        daemon = self._check_open()
        value = memoryview(value)
        if value.format != "B" or value.ndim != 1:
            value = value.cast("B")  # lengths below count bytes, not elements
        directory, _, base = name.rpartition("/")
        temp_base = f"{base}.{secrets.token_hex(6)}{TMP_SUFFIX}"
        temp_name = f"{directory}/{temp_base}" if directory else temp_base
        try:
            self._upload(daemon, directory, temp_base, value)
            self._move(temp_name, name, f"store {name!r}")
        except BaseException:
            self._discard(temp_name)
            raise

    def _upload(self, daemon, directory: str, filename: str, value):
        boundary = "borgstore-" + secrets.token_hex(16)
        quoted = filename.replace("\\", "\\\\").replace('"', '\\"')  # a name may contain a double quote
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file0"; filename="{quoted}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        query = urlencode({"fs": self.fs, "remote": directory, "_config": self._upload_config})
        response = daemon.request(
            "POST",
            "/operations/uploadfile?" + query,
            body_parts=(head, value, tail),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        if response.status != 200:
            message = str(response.json().get("error") or f"HTTP {response.status}")
            raise self._error(
                _RcFailed("operations/uploadfile", response.status, message, False), f"upload {filename!r}"
            )

    def _discard(self, temp_name: str):
        """Remove a temporary item left by a failed store, if it is there and rclone still answers."""
        daemon = self._daemon
        if daemon is None:
            return
        try:
            self._rc("operations/deletefile", {"fs": self.fs, "remote": temp_name}, daemon)
        except (_RcFailed, BackendError):
            pass

    def delete(self, name):
        self._check_open()
        try:
            self._rc("operations/deletefile", {"fs": self.fs, "remote": name})
        except _RcFailed as failure:
            if failure.status == 404 or failure.mentions(("is a directory", "not found")):
                if failure.after_restart:
                    return  # the rclone that died had deleted it already
                raise ObjectNotFound(name) from None
            raise self._error(failure, f"delete {name!r}") from None

    def _move(self, curr_name: str, new_name: str, what: str):
        params = {"srcFs": self.fs, "srcRemote": curr_name, "dstFs": self.fs, "dstRemote": new_name}
        params.update(self._move_config)
        try:
            self._rc("operations/movefile", params)
        except _RcFailed as failure:
            if failure.status == 404 or failure.mentions(("object not found", "is a directory")):
                if failure.after_restart and self._stat(new_name) is not None:
                    return  # the rclone that died had moved it already
                raise ObjectNotFound(curr_name) from None
            raise self._error(failure, what) from None

    def move(self, curr_name, new_name):
        self._check_open()
        self._move(curr_name, new_name, f"move {curr_name!r} to {new_name!r}")

    def list(self, name) -> Iterator[ItemInfo]:
        self._check_open()
        params = {"fs": self.fs, "remote": name, "opt": {"noMimeType": True}}
        try:
            entries = self._rc("operations/list", params).get("list") or []
        except _RcFailed as failure:
            if failure.status == 404:
                raise ObjectNotFound(f"directory {name!r} does not exist") from None
            raise self._error(failure, f"list {name!r}") from None
        entries.sort(key=lambda entry: entry["Name"])
        for entry in entries:
            entry_name = entry["Name"]
            if is_hidden_from_list(entry_name):
                continue
            directory = bool(entry.get("IsDir"))
            size = 0 if directory else max(int(entry.get("Size") or 0), 0)
            yield ItemInfo(
                name=entry_name,
                exists=True,
                size=size,
                directory=directory,
                mtime=_parse_modtime(entry.get("ModTime")),
            )

    def hash(self, name, algorithm="sha256"):
        self._check_open()
        if algorithm not in self._server_hashes:
            return super().hash(name, algorithm)
        return self._server_side_hash(name, algorithm)

    def _server_side_hash(self, name: str, algorithm: str) -> str:
        # rclone 1.60 has no operations/hashsum; `rclone hashsum` run by the rcd hashes where the
        # data is (e.g. sha1sum on an sftp server) instead of downloading it.
        params = {"command": "hashsum", "arg": [algorithm, self.fs + name], "returnType": "COMBINED_OUTPUT"}
        try:
            result = self._rc("core/command", params)
        except _RcFailed as failure:
            raise self._error(failure, f"hash {name!r}") from None
        output = str(result.get("result") or "")
        base = name.rpartition("/")[2]
        if not result.get("error"):
            for line in output.splitlines():
                digest, sep, listed = line.partition("  ")
                if sep and listed == base and re.fullmatch(r"[0-9a-f]+", digest):
                    return digest
        if self._stat(name) is None:
            raise ObjectNotFound(name)
        raise BackendError(f"{self.url}: hash {name!r}: rclone hashsum said: {output.strip()[-2000:]}")


def rclone_backend_from_url(url: str, **options) -> RcloneBackend:
    scheme, sep, remote = url.partition(":")
    if not sep or scheme.lower() != SCHEME:
        raise BackendURLInvalid(f"invalid rclone URL {url!r}: expected rclone:REMOTE:PATH or rclone:/local/path")
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown option(s) for the rclone backend: {', '.join(sorted(unknown))} (known: {', '.join(OPTIONS)})"
        )
    return RcloneBackend(remote, **options)
