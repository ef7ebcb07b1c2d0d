"""Every error a store, a middleware or a backend raises on purpose.

All of them derive from :class:`BackendError`, so an application can catch the whole family at
once.  Each error answers two questions a retrying layer asks (docs/errors.md is the table):

* :attr:`BackendError.temporary`: may the same operation succeed if tried again later (a lost
  connection, a server that does not answer, a throttled request)?  False: it never will (a
  missing item, a denied permission, a bad name).
* :attr:`BackendError.maybe_applied`: may the failed operation have taken effect anyway (the
  request reached the storage, its reply was lost)?  Only a mutation (store, delete, move,
  mkdir, rmdir, create, destroy) sets it, and only when the backend cannot rule it out.

Both are class defaults that a backend may override per error::

    raise BackendConnectionError("connection lost after the rename was sent", maybe_applied=True)
"""

from typing import Optional


class BackendError(Exception):
    """Base class of all store errors: permanent unless a subclass or the raiser says otherwise."""

    temporary = False
    maybe_applied = False

    def __init__(self, *args: object, temporary: Optional[bool] = None, maybe_applied: Optional[bool] = None):
        super().__init__(*args)
        if temporary is not None:
            self.temporary = bool(temporary)
        if maybe_applied is not None:
            self.maybe_applied = bool(maybe_applied)


class BackendConnectionError(BackendError):
    """The connection to the storage was lost or could not be made; a later try may succeed."""

    temporary = True


class BackendTimeout(BackendConnectionError):
    """The storage did not answer within the configured time (a frozen server, a dead link)."""


class BackendUnavailable(BackendError):
    """The storage answered, but refused for now: throttled, overloaded, restarting (HTTP 429,
    500, 502, 503, 504; a busy resource).  A later try may succeed."""

    temporary = True


class CircuitOpen(BackendUnavailable):
    """The ``retry`` middleware fails fast: recent calls kept failing, so it does not try the
    storage again until its cool-down has passed (the message says when).

    :ivar opened_at: when the breaker opened (the middleware's clock, seconds).
    :ivar until: when it lets a trial call through (the same clock).
    :ivar failures: the consecutive failed attempts that opened it.
    :ivar last_error: the last of them.
    """

    # set by the retry middleware on every instance it raises
    opened_at: float
    until: float
    failures: int
    last_error: Optional[BaseException]


class BackendURLInvalid(BackendError):
    """The URL is malformed or names a scheme no installed plugin serves."""


class BackendNotInstalled(BackendURLInvalid):
    """The URL scheme is known, but the distribution that serves it is not installed."""


class NoBackendGiven(BackendError):
    """Neither a URL nor a backend was given."""


class BackendAlreadyExists(BackendError):
    """create() found an existing, non-empty store location."""


class BackendDoesNotExist(BackendError):
    """The store location does not exist."""


class BackendMustBeOpen(BackendError):
    """The operation needs an open store."""


class BackendMustNotBeOpen(BackendError):
    """The operation needs a closed store."""


class ObjectNotFound(BackendError):
    """The named item does not exist."""


class ObjectAlreadyExists(BackendError):
    """``store_new()`` found an item of that name: nothing was written."""


class PermissionDenied(BackendError):
    """The store's permissions (or the storage's own) do not grant this operation on this name.

    Raised by ``Store.remove_stale_temps()``, it has ``removed``: the stale temp items it removed."""

    removed: int  # set only by remove_stale_temps()


class QuotaExceeded(BackendError):
    """Storing the value would exceed the store's quota; nothing was stored."""


class ReadRangeError(BackendError):
    """Fewer bytes than requested could be read."""


class PluginError(BackendError):
    """A plugin is broken: it failed to load or declared something invalid."""


def is_temporary(exc: BaseException) -> bool:
    """True if *exc* is a borgstore error that a later try of the same operation may not raise."""
    return isinstance(exc, BackendError) and exc.temporary


def may_have_been_applied(exc: BaseException) -> bool:
    """True if *exc* is a borgstore error raised by an operation that may have taken effect."""
    return isinstance(exc, BackendError) and exc.maybe_applied
