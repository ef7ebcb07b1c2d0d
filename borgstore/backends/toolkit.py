"""The backend author's toolkit: the plumbing every backend needs, written once.

A backend implements a few plain operations (:class:`~borgstore.backends._base.BackendBase`);
what is the same for all of them lives here and in the core, so no plugin writes it again:

* :func:`check_backend_name`: refuse names that could leave the store's root, wherever they
  come from (the Store, ``get_backend()``, a server handing on names from the network);
* :func:`check_load_range`: the arguments of ``load(size=, offset=)`` given to a backend directly;
* :func:`temp_name`: a unique ``.tmp`` name next to an item, for write-then-rename;
* :func:`check_options`: reject backend options that the backend does not know, naming them;
* :func:`free_local_port`: a free port on 127.0.0.1 for a helper process or a test server;
* :func:`generic_redact`: the core's redaction of URLs (``user:password@``, query parameters
  named like secret, pass, token or key), for a backend's ``redact`` to finish with;
* :class:`SocketProcess`: a child process (``ssh``, a server on its stdio) on a socketpair,
  its stderr kept for error messages, reaped without leaving zombies;
* ``BackendBase.check_open()`` / ``check_closed()``: the open/closed guard;
* :func:`missing_or_directory`: the error for an item operation on a name that holds no item;
* :func:`error_for_errno`, :func:`error_for_http_status`, :func:`lost_reply`: failures mapped
  onto the error classes the same way in every backend (docs/errors.md);
* :mod:`borgstore.backends.http`: an HTTP/1.1 keep-alive client (pipelining, ranges, timeouts).

See docs/writing-a-backend.md.
"""

import itertools
import os
import re
import socket
from typing import Any, Iterable, Mapping, Optional, TypeVar

from ..constants import TMP_SUFFIX
from ._errormap import error_for_errno, error_for_http_status, lost_reply
from ._socket_process import SocketProcess
from .errors import ObjectNotFound


def generic_redact(url: str) -> str:
    """The core's redaction for any URL: the password of ``user:password@`` and the values of
    query parameters whose names say secret, pass, token or key become ``***``.  A backend's
    own ``redact`` hides what is special to its URLs, then hands the result to this."""
    from .._plugins import generic_redact as redact

    return redact(url)


# bytes that must never reach a path: NUL ends a C string, the others are control characters
_CONTROL = frozenset(chr(c) for c in range(32)) | {"\x7f"}


class _TempNames:
    """A random prefix of this process (48 bits from the OS, new in a forked child) and a
    counter: unique among all writers without a system call per name, and never derived from
    the random module an application or a test framework may seed."""

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.prefix = os.urandom(6).hex()
        self.counter = itertools.count()


_temp = _TempNames()
_Options = TypeVar("_Options", bound=Mapping[str, Any])
os.register_at_fork(after_in_child=_temp.renew)


def check_backend_name(name: str, *, root_ok: bool = False) -> str:
    """Return *name* if it is a safe backend name, else raise ValueError saying why.

    A backend name is a relative, slash-separated path below the store's root
    (``data/01/0123abcd.del``).  Refused: anything not a str, an absolute name, empty components
    (``a//b``, a trailing ``/``), ``.`` and ``..`` components, a backslash, NUL and other control
    characters.  The empty name is the root itself, allowed only with *root_ok* (``list("")``,
    ``info("")``).

    ``..`` inside a component is harmless and must pass: the valid key ``0.`` soft-deleted is
    ``0..del``.
    """
    if type(name) is str and name:
        # the common names pass one regular expression; anything else takes the full check
        if _PLAIN_NAME(name):
            return name
    elif type(name) is not str:
        raise ValueError(f"invalid backend name {name!r}: names are str, not {type(name).__name__}")
    if not name:
        if root_ok:
            return name
        raise ValueError("invalid backend name '': the root is not an item")
    problem = _name_problem(name)
    if problem:
        raise ValueError(f"invalid backend name {name!r}: {problem}")
    return name


#: Common backend names, safe without further checks: components of ASCII letters, digits,
#: ``.``, ``-`` and ``_`` that do not start with ``.`` (so never ``.`` or ``..``; the soft-deleted
#: ``0..del`` is one of them), between single slashes.  For the hottest paths:
#: ``if type(name) is not str or not PLAIN_NAME.fullmatch(name): check_backend_name(name)``.
PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*(?:/[A-Za-z0-9_-][A-Za-z0-9._-]*)*")
_PLAIN_NAME = PLAIN_NAME.fullmatch


def _name_problem(name: str) -> Optional[str]:
    if name[0] == "/":
        return "absolute names leave the store's root"
    if "\\" in name:
        return "backslashes are not allowed"
    if not _CONTROL.isdisjoint(name):
        return "NUL and control characters are not allowed"
    parts = name.split("/")
    if ".." in parts:
        return "'..' components leave the store's root"
    if "" in parts or "." in parts:
        return "empty or '.' path components are not allowed"
    return None


def check_load_range(size: Optional[int], offset: int) -> None:
    """Raise ValueError unless *size* is None or an int >= 0 and *offset* an int."""
    if size is not None and (type(size) is not int or size < 0):
        raise ValueError(f"invalid size {size!r}: an int >= 0 or None")
    if type(offset) is not int:
        raise ValueError(f"invalid offset {offset!r}: an int (negative: from the end)")


def temp_name(name: str) -> str:
    """A name for writing *name* first: in the same directory, unique among all writers (also in
    other processes and on other machines), ending in ``.tmp`` so that no listing shows it."""
    return f"{name}.{_temp.prefix}{next(_temp.counter):x}{TMP_SUFFIX}"


def check_options(options: _Options, known: Iterable[str], backend: str) -> _Options:
    """Return *options* if every key is in *known*, else raise ValueError naming the unknown ones."""
    known = set(known)
    unknown = sorted(set(options) - known)
    if unknown:
        valid = ", ".join(sorted(known)) or "none"
        raise ValueError(f"unknown option(s) for the {backend} backend: {', '.join(unknown)} (valid: {valid})")
    return options


def missing_or_directory(name: str, is_directory: bool) -> ObjectNotFound:
    """The error for an item operation (load, hash, delete, a move's source) on *name* where no
    item is: ObjectNotFound, whose message says when a directory is there instead.

    Not a conflict error: there is no *item* of that name, and the Store relies on that while a
    namespace is converted between levels (a level-0 key such as ``data/01`` may be the name of a
    level-1 directory; the Store then looks at the next level)."""
    if is_directory:
        return ObjectNotFound(f"{name} (a directory, not an item)")
    return ObjectNotFound(name)


def free_local_port() -> int:
    """A TCP port on 127.0.0.1 that is free now, for a helper process a backend starts (rclone
    rcd) or a test server.  Another process may take it before it is bound: retry on failure."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


__all__ = [
    "SocketProcess",
    "generic_redact",
    "free_local_port",
    "check_backend_name",
    "error_for_errno",
    "error_for_http_status",
    "lost_reply",
    "check_load_range",
    "check_options",
    "PLAIN_NAME",
    "missing_or_directory",
    "temp_name",
]
