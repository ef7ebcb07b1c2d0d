"""Every error a store, a middleware or a backend raises on purpose.

All of them derive from :class:`BackendError`, so an application can catch the whole family at
once.  :attr:`BackendError.temporary` tells a retrying layer whether repeating the same operation
may succeed (a lost connection) or never will (a missing object, a denied permission).
"""


class BackendError(Exception):
    """Base class of all store errors."""

    temporary = False


class BackendConnectionError(BackendError):
    """The connection to the storage was lost or could not be made."""

    temporary = True


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


class PermissionDenied(BackendError):
    """The store's permissions do not grant this operation on this name."""


class QuotaExceeded(BackendError):
    """Storing the value would exceed the store's quota; nothing was stored."""


class ReadRangeError(BackendError):
    """Fewer bytes than requested could be read."""


class PluginError(BackendError):
    """A plugin is broken: it failed to load or declared something invalid."""
