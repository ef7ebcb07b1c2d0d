"""The REST protocol, written down once for our client and our server.

The base protocol is the one the PyPI borgstore 0.7 client and server speak to each other (learnt
by reading their documentation and watching them talk); a client or server of either project
works with one of the other.  Each backend operation is one HTTP/1.1 request on a kept-alive
connection, with ``Accept: application/vnd.x.borgstore.rest.v1`` (a server answers 406 without
it) and HTTP basic authentication where the server asks for it (401 otherwise):

================  =====================================================  ==========================
operation         request                                                answer (200 unless said)
================  =====================================================  ==========================
create            ``POST /?cmd=create``                                  409: exists already
destroy           ``DELETE /?cmd=destroy``                               410: does not exist
mkdir, rmdir      ``POST /<name>?cmd=mkdir``, ``DELETE /<name>?cmd=rmdir``
info              ``HEAD /<name>``                                       Content-Length is the size;
                                                                         X-BorgStore-Is-Directory,
                                                                         -Atime, -Mtime; 404: absent
load              ``GET /<name>`` (``Range: bytes=...`` for a part)      the bytes (206 for a part)
store             ``POST /<name>``, the value as the body, its SHA-256   422: the body does not
                  in ``X-Content-hash-sha256``                           match the hash (resend)
delete            ``DELETE /<name>``
move              ``POST /?cmd=move&current=<name>&new=<name>``
list              ``GET /<name>/`` (the trailing slash)                  JSON: [{"name", "size",
                                                                         "directory", "atime",
                                                                         "mtime"}, ...]
hash              ``POST /<name>?cmd=hash&algorithm=<algorithm>``        the hex digest (text)
gather            ``POST /?cmd=gather``, body: JSON [[name, offset,      the bytes, joined
                  size], ...]
defrag            ``POST /?cmd=defrag&target=&algorithm=&namespace=      the target's name (text)
                  &levels=``, body: JSON sources as for gather
quota             ``POST /?cmd=quota``                                   JSON {"limit", "usage"}
================  =====================================================  ==========================

Errors are statuses (:data:`STATUS_OF_ERROR`); the body is a short text that says what failed.

Names ending in ``.hid`` or ``.tmp`` (:data:`RESERVED_SUFFIXES`) are the server's: its storage
keeps its own items under them (the quota's ``quota.hid``, the temp items of stores in progress).
Both projects' clients refuse them before sending, and servers refuse them with 400, so a client
cannot reset the quota's count or hide data from listings.

Our extensions, which a PyPI peer never sees:

* ``OPTIONS /`` answers 200 with :data:`CAPABILITIES_HEADER` (our server) where the PyPI server
  answers 501; our client sends it once when it opens and uses the extensions below only with a
  server that announced them, so it never sends a PyPI server a request that server would
  misread (an unknown ``cmd`` on ``POST /<name>`` is a plain store to it).
* Every error answer of our server carries :data:`ERROR_HEADER`: the error's class name, plus
  ``; temporary`` and/or ``; maybe-applied``, so our client raises the very class the storage
  raised (ObjectAlreadyExists and BackendAlreadyExists share 409, for one) with its retry flags.
* ``POST /<name>?cmd=store_new`` stores only if nothing is stored under the name (409 with
  ``ObjectAlreadyExists`` otherwise): the storage decides, so two writers cannot both win.
"""

from typing import Optional

from borgstore.backends import errors

#: the Accept value both projects' clients send and servers require
MEDIA_TYPE = "application/vnd.x.borgstore.rest.v1"
#: name suffixes a client may not use (see above): the backends' capability reserved_suffixes
RESERVED_SUFFIXES = frozenset({".hid", ".tmp"})
#: the PyPI server's port, the default of ours too
DEFAULT_PORT = 5618
HASH_ALGORITHM = "sha256"
#: the upload check: the body's SHA-256, hex; the server refuses a body that does not match (422)
HASH_HEADER = "X-Content-hash-sha256"
IS_DIRECTORY_HEADER = "X-BorgStore-Is-Directory"
ATIME_HEADER = "X-BorgStore-Atime"
MTIME_HEADER = "X-BorgStore-Mtime"
#: our server's answer to OPTIONS: the extensions it serves, comma separated (e.g. ``store_new``)
CAPABILITIES_HEADER = "X-BorgStore-Capabilities"
#: our server's error answers: ``<class name>[; temporary][; maybe-applied]``
ERROR_HEADER = "X-BorgStore-Error"
#: the status of a body that does not match its announced hash: the client sends it again
HASH_MISMATCH_STATUS = 422
UNAUTHORIZED_STATUS = 401
NOT_ACCEPTABLE_STATUS = 406

#: the status each error class is answered with (a subclass takes its nearest listed base's),
#: the statuses the PyPI server uses for the same errors
STATUS_OF_ERROR: dict[type, int] = {
    errors.ObjectNotFound: 404,
    errors.BackendDoesNotExist: 410,
    errors.BackendAlreadyExists: 409,
    errors.ObjectAlreadyExists: 409,
    errors.BackendMustBeOpen: 412,
    errors.BackendMustNotBeOpen: 412,
    errors.PermissionDenied: 403,
    errors.QuotaExceeded: 507,
    errors.ReadRangeError: 416,
    errors.BackendUnavailable: 503,
    errors.BackendTimeout: 504,
    errors.BackendConnectionError: 502,
    errors.BackendError: 500,
    ValueError: 400,
    TypeError: 400,
}


def status_of_error(exc: BaseException) -> int:
    """The status a server answers *exc* with (500 for anything unforeseen)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF_ERROR:
            return STATUS_OF_ERROR[cls]
    return 500


def error_header(exc: BaseException) -> str:
    """The :data:`ERROR_HEADER` value for *exc*."""
    value = type(exc).__name__ if type(exc).__module__ in (errors.__name__, "builtins") else _known_base(exc)
    if errors.is_temporary(exc):
        value += "; temporary"
    if errors.may_have_been_applied(exc):
        value += "; maybe-applied"
    return value


def _known_base(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        if cls.__module__ == errors.__name__:
            return cls.__name__
    return "BackendError"


#: the classes a client may raise for an ERROR_HEADER value (nothing else is instantiated)
_RAISABLE = {
    cls.__name__: cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.BackendError)
}


def error_from_header(value: str, message: str) -> Optional[BaseException]:
    """The exception an :data:`ERROR_HEADER` *value* names, with *message*; None if it names
    no class of ours (the caller falls back to the status)."""
    name, *flags = (part.strip() for part in value.split(";"))
    flags_set = set(flags)
    if name == "ValueError":
        return ValueError(message)
    cls = _RAISABLE.get(name)
    if cls is None:
        return None
    return cls(message, temporary="temporary" in flags_set, maybe_applied="maybe-applied" in flags_set)
