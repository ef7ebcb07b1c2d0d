"""The REST server's operations: one function per row of the wire protocol's table (``_wire``).

Each takes the shared backend, the parsed request target, the request and its body, and returns
an :class:`Answer`; it raises the storage's errors (and ValueError for a bad request), which the
handler turns into statuses.  Every name a request carries is checked with the core's backend
name rules before the storage sees it.
"""

import hashlib
import hmac
import json
import re
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl, unquote

from borgstore.backends._base import new_hash
from borgstore.backends.errors import BackendConnectionError, ObjectNotFound
from borgstore.backends.toolkit import check_backend_name

from . import _wire
from ._server_backend import SharedBackend
from ._server_http import Body, Request

_RANGE = re.compile(r"bytes=([0-9]{0,20})-([0-9]{0,20})").fullmatch
# what the PyPI client sends for load(size=0): a range ending before it starts, "no bytes"
_EMPTY_RANGE = re.compile(r"bytes=([0-9]{1,20})--1").fullmatch
_OCTETS = "application/octet-stream"
_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"


_RESERVED_SUFFIXES = tuple(sorted(_wire.RESERVED_SUFFIXES))


def checked_name(name: Any, *, root_ok: bool = False) -> str:
    """*name* from a request if the storage may be given it, else ValueError (a 400): the
    core's backend name rules, and none of the suffixes the server's storage keeps for itself
    (``quota.hid``, the ``.tmp`` items of stores in progress)."""
    name = check_backend_name(name, root_ok=root_ok)  # a str from here on
    if name.endswith(_RESERVED_SUFFIXES):
        raise ValueError(f"invalid name {name!r}: names ending in {' or '.join(_RESERVED_SUFFIXES)} are reserved")
    return name


class Answer:
    """A response to send: *status*, *body*, extra *headers*; *length* overrides the
    Content-Length (a HEAD answer's is the item's size); *close* ends the connection after it."""

    __slots__ = ("body", "close", "headers", "length", "status")

    def __init__(
        self,
        status: int = 200,
        body: Optional[Body] = b"",
        headers: Optional[list[tuple[str, str]]] = None,
        *,
        length: Optional[int] = None,
        close: bool = False,
    ):
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []
        self.length = length
        self.close = close


class LengthRequired(Exception):
    """A request that needs a body came without a Content-Length."""


class HashMismatch(BackendConnectionError):
    """The body does not match the hash the client announced: it was damaged on the way."""


class Target:
    """A request target: the item *name* ("" for the root), whether it *lists* (a trailing
    slash), and the *query* parameters; every name is percent-decoded once and checked."""

    __slots__ = ("lists", "name", "query")

    def __init__(self, target: str):
        path, _, query = target.partition("?")
        if not path.startswith("/"):
            raise ValueError("the request target must be a path starting with '/'")
        if path == "//":
            path = "/"  # the PyPI client lists the root as "GET //" (its URL of "" plus the "/")
        rest = unquote(path[1:], errors="strict")
        self.lists = rest == "" or rest.endswith("/")
        self.name = rest.removesuffix("/")
        if rest and not self.name:
            raise ValueError("invalid backend name '/': empty path components are not allowed")
        checked_name(self.name, root_ok=True)
        self.query = dict(parse_qsl(query, keep_blank_values=True, errors="strict", max_num_fields=16))

    def item(self) -> str:
        """The name, which must not be the root."""
        if not self.name:
            raise ValueError("this operation needs an item name in the path")
        return self.name

    def name_param(self, key: str) -> str:
        """The query parameter *key*, a backend name."""
        value = self.query.get(key)
        if not value:
            raise ValueError(f"the query parameter {key!r} is missing")
        return checked_name(value)


Operation = Callable[[SharedBackend, Target, Request, Body], Answer]


def _needs_length(request: Request) -> None:
    if not request.has_length:
        raise LengthRequired("this request needs a body with a Content-Length")


def store(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``POST /<name>``: store the body, if it matches the hash the client sent."""
    return _store(backend, target, request, body, new=False)


def store_new(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``POST /<name>?cmd=store_new``: store the body only where nothing is stored yet."""
    if not backend.has_store_new:
        raise ValueError("the storage behind this server has no store_new")
    return _store(backend, target, request, body, new=True)


def _store(backend: SharedBackend, target: Target, request: Request, body: Body, *, new: bool) -> Answer:
    name = target.item()
    _needs_length(request)
    expected = request.headers.get(_wire.HASH_HEADER.lower())
    if expected is not None:
        actual = request.body_sha256 or hashlib.sha256(body).hexdigest()
        if not hmac.compare_digest(actual, expected.strip().lower()):
            raise HashMismatch("the body does not match its X-Content-hash-sha256: send it again")
    with backend.shared() as chain:
        if new:
            chain.store_new(name, body)
        else:
            chain.store(name, body)
    return Answer()


def create(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``POST /?cmd=create``."""
    with backend.exclusive() as chain:
        chain.create()
    return Answer()


def destroy(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``DELETE /?cmd=destroy``."""
    with backend.exclusive() as chain:
        chain.destroy()
    return Answer()


def mkdir(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``POST /<name>?cmd=mkdir``."""
    name = target.item()
    with backend.shared() as chain:
        chain.mkdir(name)
    return Answer()


def rmdir(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``DELETE /<name>?cmd=rmdir``."""
    name = target.item()
    with backend.shared() as chain:
        chain.rmdir(name)
    return Answer()


def delete(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``DELETE /<name>``."""
    name = target.item()
    with backend.shared() as chain:
        chain.delete(name)
    return Answer()


def move(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``POST /?cmd=move&current=<name>&new=<name>``."""
    current, new = target.name_param("current"), target.name_param("new")
    with backend.shared() as chain:
        chain.move(current, new)
    return Answer()


def info(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``HEAD /<name>``: the size as Content-Length, the rest in X-BorgStore-* headers."""
    with backend.shared() as chain:
        item = chain.info(target.name)
    if not item.exists:
        raise ObjectNotFound(target.name)
    headers = [
        (_wire.IS_DIRECTORY_HEADER, "true" if item.directory else "false"),
        (_wire.ATIME_HEADER, str(float(item.atime))),
        (_wire.MTIME_HEADER, str(float(item.mtime))),
    ]
    return Answer(200, None, headers, length=item.size)


def load(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``GET /<name>``, with ``Range: bytes=...`` for a part (206)."""
    name = target.item()
    wanted = request.headers.get("range")
    if wanted is None:
        with backend.shared() as chain:
            data = chain.load(name)
        return Answer(200, data, [("Content-Type", _OCTETS)])
    offset, size = _parse_range(wanted)
    with backend.shared() as chain:
        data = chain.load(name, size=size, offset=offset)
        content_range = _content_range(chain, name, offset, size, len(data))
    headers = [("Content-Type", _OCTETS)]
    if content_range:
        headers.append(("Content-Range", content_range))
    return Answer(206, data, headers)


def _parse_range(value: str) -> tuple[int, Optional[int]]:
    """(offset, size) of a single byte range; a suffix range gives a negative offset."""
    value = value.strip()
    empty = _EMPTY_RANGE(value)
    if empty is not None:
        return int(empty[1]), 0
    match = _RANGE(value)
    if match is None or not (match[1] or match[2]):
        raise ValueError(f"unsupported Range {value[:60]!r}: use one range, bytes=FIRST-[LAST] or bytes=-SUFFIX")
    if not match[1]:
        return -int(match[2]), None
    first = int(match[1])
    if not match[2]:
        return first, None
    last = int(match[2])
    if last < first:
        raise ValueError(f"invalid Range {value[:60]!r}: the last byte comes before the first")
    return first, last - first + 1


def _content_range(chain: Any, name: str, offset: int, size: Optional[int], got: int) -> Optional[str]:
    """The Content-Range of *got* bytes read from *offset*; None for no bytes (nothing to say)."""
    if not got:
        return None
    if offset >= 0:
        complete = size is None or got < size
        total = str(offset + got) if complete else "*"
        return f"bytes {offset}-{offset + got - 1}/{total}"
    if got < -offset:
        return f"bytes 0-{got - 1}/{got}"  # the whole item is shorter than the suffix
    total_size = chain.info(name).size
    first = max(total_size - got, 0)
    return f"bytes {first}-{first + got - 1}/{max(total_size, first + got)}"


def listing(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``GET /<name>/``: the directory's entries as JSON."""
    with backend.shared() as chain:
        entries = [
            {
                "name": item.name,
                "size": item.size,
                "directory": item.directory,
                "atime": item.atime,
                "mtime": item.mtime,
            }
            for item in chain.list(target.name)
        ]
    return Answer(200, json.dumps(entries, separators=(",", ":")).encode(), [("Content-Type", _JSON)])


def hash_(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``POST /<name>?cmd=hash&algorithm=<algorithm>``: the hex digest, computed next to the data."""
    name = target.item()
    algorithm = target.query.get("algorithm") or _wire.HASH_ALGORITHM
    with backend.shared() as chain:
        digest = chain.hash(name, algorithm)
    return Answer(200, digest.encode("ascii"), [("Content-Type", _TEXT)])


def _sources(request: Request, body: Body) -> list[tuple[str, int, int]]:
    """The ``[[name, offset, size], ...]`` JSON body of gather and defrag, checked."""
    _needs_length(request)
    sources = json.loads(bytes(body))
    if not isinstance(sources, list):
        raise ValueError("the body must be a JSON list of [name, offset, size]")  # noqa: TRY004
    checked = []
    for source in sources:
        if not (isinstance(source, list) and len(source) == 3):
            raise ValueError("each source must be [name, offset, size]")
        name, offset, size = source
        if type(offset) is not int or type(size) is not int or size < 0:
            raise ValueError("a source's offset and size must be integers, the size >= 0")
        checked.append((checked_name(name), offset, size))
    return checked


def gather(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``POST /?cmd=gather``: the byte ranges of the JSON body, joined."""
    sources = _sources(request, body)
    with backend.shared() as chain:
        data = chain.gather(sources)
    return Answer(200, data, [("Content-Type", _OCTETS)])


def defrag(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``POST /?cmd=defrag``: gather, then store the result (both through every middleware)."""
    query = target.query
    item = query.get("target") or None
    algorithm = query.get("algorithm") or None
    if item is None and algorithm is None:
        raise ValueError("defrag needs a target or an algorithm")
    levels = _levels(query.get("levels") or "0")
    sources = _sources(request, body)
    if item is not None:
        checked_name(item)
    with backend.shared() as chain:
        data = chain.gather(sources)
        if item is None:
            item = _content_name(data, algorithm, query.get("namespace") or "", levels)
        chain.store(item, data)
    return Answer(200, item.encode(), [("Content-Type", _TEXT)])


def _levels(text: str) -> int:
    if not text.isdigit() or int(text) > 16:
        raise ValueError(f"invalid levels {text[:20]!r}: an integer from 0 to 16")
    return int(text)


def _content_name(data: bytes, algorithm: Any, namespace: str, levels: int) -> str:
    """The name defrag gives data without a target: its hash, in *namespace*, nested *levels* deep."""
    from borgstore.nesting import HexNesting

    name = new_hash(algorithm, data).hexdigest()
    if namespace:
        name = namespace.rstrip("/") + "/" + name
    if levels:
        name = HexNesting().nest(name, levels)
    return checked_name(name)


def quota(backend: SharedBackend, target: Target, request: Request, body: Body) -> Answer:
    """``POST /?cmd=quota``: ``{"limit", "usage"}`` as JSON."""
    with backend.shared() as chain:
        figures = chain.quota()
    return Answer(200, json.dumps(figures).encode(), [("Content-Type", _JSON)])


#: (method, cmd) -> operation; cmd None: the request has none
POST_COMMANDS: dict[Optional[str], Operation] = {
    None: store,
    "store_new": store_new,
    "create": create,
    "mkdir": mkdir,
    "move": move,
    "hash": hash_,
    "gather": gather,
    "defrag": defrag,
    "quota": quota,
}
DELETE_COMMANDS: dict[Optional[str], Operation] = {None: delete, "rmdir": rmdir, "destroy": destroy}


def operation_for(method: str, target: Target) -> Operation:
    """The operation a request asks for, or ValueError."""
    if method == "GET":
        return listing if target.lists else load
    if method == "HEAD":
        return info
    commands = POST_COMMANDS if method == "POST" else DELETE_COMMANDS
    operation = commands.get(target.query.get("cmd"))
    if operation is None:
        raise ValueError(f"unknown cmd for {method}")
    return operation
