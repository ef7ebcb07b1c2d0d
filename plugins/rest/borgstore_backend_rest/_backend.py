"""The REST backend: every operation is one request to a borgstore REST server (see ``_wire``).

The server is ours (``borgstore-server-rest`` of this distribution) or the PyPI borgstore 0.7's.
``open()`` asks which with one ``OPTIONS /``: ours announces its extensions (``store_new``), the
PyPI server answers 501 and gets only the requests it knows.  Directories are the server's
storage's (a file system, as a rule: ``needs_mkdir=True``).
"""

import builtins
import hashlib
import json
from dataclasses import replace

from borgstore.backends._base import BackendBase, Capabilities, ItemInfo, read_range_error
from borgstore.backends.errors import BackendConnectionError, BackendError
from borgstore.backends.http import range_data, range_header
from borgstore.backends.toolkit import PLAIN_NAME, check_backend_name, check_load_range
from borgstore.constants import TMP_SUFFIX

from . import HASH_ALGORITHMS, _wire
from ._client import RestClient
from ._url import Location, parse, redact

DEFAULT_TIMEOUT = 60.0
#: sends of a value the server received damaged (422) before giving up with a temporary error
HASH_MISMATCH_TRIES = 3


def rest_backend_from_url(url: str, *, timeout: float = DEFAULT_TIMEOUT, ca_file: str | None = None) -> "RestBackend":
    """An unopened backend for an ``http:``, ``https:`` or ``rest:`` URL; nothing is sent or run yet."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"invalid timeout {timeout!r}: a number of seconds > 0")
    if ca_file is not None and (not isinstance(ca_file, str) or not ca_file):
        raise ValueError(f"invalid ca_file {ca_file!r}: the path of a file of CA certificates (PEM)")
    return RestBackend(parse(url), shown_url=redact(url), timeout=float(timeout), ca_file=ca_file)


def _bytes_view(value) -> memoryview:
    view = memoryview(value)
    if view.ndim != 1:
        raise ValueError(f"invalid value: a 1-D bytes-like object, not a {view.ndim}-D memoryview")
    return view if view.format == "B" else view.cast("B")


def _number(headers: dict, name: str) -> float:
    try:
        return float(headers.get(name.lower(), 0))
    except ValueError:
        return 0


_RESERVED = tuple(sorted(_wire.RESERVED_SUFFIXES))


class RestBackend(BackendBase):
    # thread safe: one connection (one server process for rest:) per concurrent request.
    # transient_errors: a network and a server between us and the storage fail for a while.
    capabilities = Capabilities(
        thread_safe=True,
        transient_errors=True,
        hash_algorithms=HASH_ALGORITHMS,
        needs_mkdir=True,
        reserved_suffixes=_wire.RESERVED_SUFFIXES,
    )

    def __init__(self, location: Location, *, shown_url: str = "", timeout: float = DEFAULT_TIMEOUT, ca_file=None):
        self.location = location
        self._shown_url = shown_url or location.scheme + "://"
        self._timeout = timeout
        self._ca_file = ca_file
        self._client: RestClient | None = None
        self._store_new = False
        self.capabilities = RestBackend.capabilities

    def __repr__(self):
        return f"<RestBackend {self._shown_url}>"

    @property
    def requests(self) -> int:
        """Requests sent so far on the open connection (for the benchmarks)."""
        return self._client.requests if self._client is not None else 0

    # --- lifecycle ---
    def _connect(self) -> RestClient:
        return RestClient(self.location, self._shown_url, timeout=self._timeout, ca_file=self._ca_file)

    def _lifecycle(self, method: str, cmd: str, what: str) -> None:
        """create or destroy: one request on a client of its own (the backend is not open)."""
        client = self._connect()
        try:
            response = client.request(method, client.target("", {"cmd": cmd}), mutation=True, what=what)
            if response.status != 200:
                raise client.error(response, what, mutation=True)
        finally:
            client.close()

    def create(self):
        self.check_closed()
        self._lifecycle("POST", "create", f"create {self._shown_url}")

    def destroy(self):
        self.check_closed()
        self._lifecycle("DELETE", "destroy", f"destroy {self._shown_url}")

    def open(self):
        self.check_closed()
        what = f"open {self._shown_url}"
        client = self._connect()
        try:
            extensions = self._probe(client, what)
            # the store must exist: the PyPI server opens its storage for each request (410 if missing)
            response = client.request("HEAD", client.target(""), mutation=False, what=what)
            if response.status not in (200, 404):
                raise client.error(response, what)
        except BaseException:
            client.close()
            raise
        self._client = client
        self._store_new = "store_new" in extensions
        self.capabilities = replace(RestBackend.capabilities, store_new=self._store_new)
        self.opened = True

    @staticmethod
    def _probe(client: RestClient, what: str) -> set:
        """The extensions the server announces in its answer to ``OPTIONS /`` (none from the
        PyPI server, which answers 501, or from a proxy that answers something else)."""
        response = client.request("OPTIONS", client.target(""), mutation=False, what=what)
        if response.status in (_wire.UNAUTHORIZED_STATUS, 403, 410, _wire.NOT_ACCEPTABLE_STATUS):
            raise client.error(response, what)
        if response.status != 200:
            return set()
        value = response.headers.get(_wire.CAPABILITIES_HEADER.lower(), "")
        return {part.strip() for part in value.split(",") if part.strip()}

    def close(self):
        self.check_open()
        self.opened = False
        client, self._client = self._client, None
        self.capabilities = RestBackend.capabilities
        if client is not None:
            client.close()

    # --- helpers ---
    def _check(self, name: str, root_ok: bool = False) -> RestClient:
        """The client of the open backend, once *name* is found safe."""
        client = self._client
        if client is None or not self.opened:
            self.check_open()
        if type(name) is not str or not PLAIN_NAME.fullmatch(name):
            check_backend_name(name, root_ok=root_ok)
        if name.endswith(_RESERVED):
            raise ValueError(f"invalid name {name!r}: names ending in {' or '.join(_RESERVED)} are the server's")
        assert client is not None  # open: open() made it and only close() drops it
        return client

    def _call(self, method: str, name: str, what: str, *, query=None, mutation: bool, body=b"", headers=None):
        """One request for *name* that must answer 200; its answer."""
        client = self._check(name)
        response = client.request(
            method, client.target(name, query), headers=headers, body=body, mutation=mutation, what=what
        )
        if response.status != 200:
            raise client.error(response, what, mutation=mutation)
        return response

    # --- directories ---
    def mkdir(self, name):
        self._call("POST", name, f"mkdir {name!r}", query={"cmd": "mkdir"}, mutation=True)

    def rmdir(self, name):
        self._call("DELETE", name, f"rmdir {name!r}", query={"cmd": "rmdir"}, mutation=True)

    # --- items ---
    def info(self, name):
        client = self._check(name, root_ok=True)
        what = f"info {name!r}"
        response = client.request("HEAD", client.target(name), mutation=False, what=what)
        if response.status == 404:
            return ItemInfo(name=name, exists=False, size=0, directory=False)
        if response.status != 200:
            raise client.error(response, what)
        headers = response.headers
        directory = headers.get(_wire.IS_DIRECTORY_HEADER.lower(), "") == "true"
        size = 0 if directory else int(headers.get("content-length", 0))
        atime, mtime = _number(headers, _wire.ATIME_HEADER), _number(headers, _wire.MTIME_HEADER)
        return ItemInfo(name=name, exists=True, size=size, directory=directory, atime=atime, mtime=mtime)

    def load(self, name, *, size=None, offset=0):
        client = self._check(name)
        if size is not None or offset:
            check_load_range(size, offset)
        what = f"load {name!r}"
        wanted = range_header(offset, size)
        headers = {"Range": wanted} if wanted else None
        response = client.request("GET", client.target(name), headers=headers, mutation=False, what=what)
        if response.status == 200 and wanted is None:
            return response.data
        if response.status == 206 and "content-range" not in response.headers:
            # the PyPI server answers a range with exactly what load(offset, size) of its
            # storage gives for it, and no Content-Range: cut the byte asked for a size of 0
            return response.data if size is None else response.data[:size]
        data = range_data(response, offset, size)
        if data is None:
            raise client.error(response, what)
        return data

    def store(self, name, value):
        self._put(name, value, f"store {name!r}", None)

    def store_new(self, name, value):
        """Store *value* under *name* only if no item of that name exists (our server only:
        the storage decides, atomically); an existing item: ObjectAlreadyExists."""
        if not self._store_new:
            self._check(name)
            raise BackendError(f"store_new {name!r}: {self._shown_url} does not offer store_new (a PyPI server?)")
        self._put(name, value, f"store_new {name!r}", {"cmd": "store_new"})

    def _put(self, name: str, value, what: str, query: dict | None) -> None:
        client = self._check(name)
        view = _bytes_view(value)
        # the server checks the body against this, so a value damaged on the way is never stored
        headers = {_wire.HASH_HEADER: hashlib.sha256(view).hexdigest()}
        target = client.target(name, query)
        for _attempt in range(HASH_MISMATCH_TRIES):
            response = client.request("POST", target, headers=headers, body=view, mutation=True, what=what)
            if response.status == 200:
                return
            if response.status != _wire.HASH_MISMATCH_STATUS:
                raise client.error(response, what, mutation=True)
        raise BackendConnectionError(
            f"{what}: the server received other bytes than were sent, {HASH_MISMATCH_TRIES} times [HTTP 422]"
        )

    def delete(self, name):
        self._call("DELETE", name, f"delete {name!r}", mutation=True)

    def move(self, curr_name, new_name):
        client = self._check(curr_name)
        self._check(new_name)
        what = f"move {curr_name!r} to {new_name!r}"
        target = client.target("", {"cmd": "move", "current": curr_name, "new": new_name})
        response = client.request("POST", target, mutation=True, what=what)
        if response.status != 200:
            raise client.error(response, what, mutation=True)

    def list(self, name):
        client = self._check(name, root_ok=True)
        what = f"list {name!r}"
        response = client.request("GET", client.target(name, listing=True), mutation=False, what=what)
        if response.status != 200:
            raise client.error(response, what)
        try:
            entries = json.loads(response.data)
            infos = [_list_entry(entry) for entry in entries]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise BackendError(f"{what}: the server's answer is no listing: {exc}: {response.data[:100]!r}") from None
        # sorted and without temp items whatever the server sends; a name no backend could
        # reach (another tool's file) is left out
        return iter(sorted((i for i in infos if i is not None), key=lambda info: info.name))

    # --- operations the server does where the data is ---
    def hash(self, name, algorithm="sha256"):
        if not isinstance(algorithm, str) or not algorithm:
            raise ValueError(f"Unsupported hash algorithm: {algorithm}")
        query = {"cmd": "hash", "algorithm": algorithm}
        response = self._call("POST", name, f"hash {name!r}", query=query, mutation=False)
        return response.data.decode("ascii", "replace").strip()

    def _sources(self, sources) -> "builtins.list":
        checked = []
        for name, offset, size in sources:
            self._check(name)
            if type(offset) is not int or type(size) is not int or size < 0:
                raise ValueError(f"invalid range ({name!r}, {offset!r}, {size!r}): an int offset, an int size >= 0")
            checked.append([name, offset, size])
        return checked

    def gather(self, sources):
        checked = self._sources(sources)
        client = self._check("", root_ok=True)
        what = f"gather {len(checked)} ranges"
        body = json.dumps(checked).encode()
        response = client.request("POST", client.target("", {"cmd": "gather"}), body=body, mutation=False, what=what)
        if response.status != 200:
            raise client.error(response, what)
        wanted = sum(size for _name, _offset, size in checked)
        if len(response.data) != wanted:
            name, offset, _size = checked[0] if checked else ("", 0, 0)
            raise read_range_error(name, offset, wanted, len(response.data))
        return response.data

    def defrag(self, sources, *, target=None, algorithm=None, namespace=None, levels=0):
        checked = self._sources(sources)
        client = self._check(target, root_ok=False) if target is not None else self._check("", root_ok=True)
        query = {"cmd": "defrag"}
        for key, value in (("target", target), ("algorithm", algorithm), ("namespace", namespace)):
            if value is not None:
                query[key] = value
        if levels:
            query["levels"] = str(int(levels))
        what = "defrag"
        body = json.dumps(checked).encode()
        response = client.request("POST", client.target("", query), body=body, mutation=True, what=what)
        if response.status != 200:
            raise client.error(response, what, mutation=True)
        return response.data.decode("ascii", "replace").strip()

    def quota(self):
        client = self._check("", root_ok=True)
        what = "quota"
        response = client.request("POST", client.target("", {"cmd": "quota"}), mutation=False, what=what)
        if response.status != 200:
            raise client.error(response, what)
        try:
            answer = json.loads(response.data)
            return {"limit": int(answer["limit"]), "usage": int(answer["usage"])}
        except (ValueError, TypeError, KeyError) as exc:
            raise BackendError(f"{what}: the server's answer is no quota: {exc}: {response.data[:100]!r}") from None


def _list_entry(entry: dict) -> ItemInfo | None:
    name = entry["name"]
    if not isinstance(name, str) or "/" in name or name.endswith(TMP_SUFFIX):
        return None
    try:
        check_backend_name(name)
    except ValueError:
        return None
    directory = bool(entry.get("directory", False))
    size = 0 if directory else int(entry["size"])
    return ItemInfo(name, True, size, directory, float(entry.get("atime", 0)), float(entry.get("mtime", 0)))
