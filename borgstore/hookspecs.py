"""Every hook a borgstore plugin can implement.

A plugin is a module or object with functions marked ``@borgstore.hookimpl`` whose names match the
hooks below.  Installed plugins are found through the entry-point group ``borgstore``; an
application registers its own with ``borgstore.plugin_manager().register(obj)``.

All hooks are called through pluggy (so ``add_hookcall_monitoring`` sees them) when the
registries are (re)built: when the first Store or get_backend() call needs them, and again after a
plugin was registered or unregistered.  Each plugin's implementation is called on its own, so a
broken plugin is reported by name (``borgstore.load_failures()``) without hiding the others.
Implementations must be cheap and do no I/O: they *declare* what the plugin provides, and name
their factories by import path (``"my_plugin._backend:from_url"``) so that nothing heavy is
imported before a store of theirs is used.  An implementation may accept fewer arguments than its
spec (pluggy passes only those it names), so hooks can gain arguments without breaking plugins.
"""

from typing import TYPE_CHECKING, Optional

import pluggy

if TYPE_CHECKING:
    from ._plugins import BackendSpec, MiddlewareSpec, NestingSpec

hookspec = pluggy.HookspecMarker("borgstore")


# -------------------------------------------------------------------------------------------------
# backends
# -------------------------------------------------------------------------------------------------


@hookspec
def borgstore_backends() -> "Optional[list[BackendSpec]]":
    """Declare the backends this plugin provides, one :class:`borgstore.BackendSpec` each.

    A spec names the URL scheme(s) the backend serves (``"file"`` for ``file:///path``) and a
    factory ``factory(url, **options)`` that returns an *unopened* backend (a
    :class:`borgstore.backends.BackendBase`), given as its import path ``"module:function"`` so
    that the backend's module (and what it imports) loads only when a URL of its scheme is used.
    The factory raises :class:`~borgstore.backends.errors.BackendURLInvalid` for a URL of its
    scheme that it cannot parse.  A spec may also give ``options`` (the option names: the core
    rejects others with ``ValueError``), ``redact`` (hides the secrets a URL of its scheme can
    carry) and ``capabilities`` (for display only: the opened backend's are the truth).

    If two plugins serve the same scheme, the one registered last wins, so an application can
    replace an installed backend with its own.

    :return: a list of :class:`borgstore.BackendSpec` (empty or None if the plugin has none).

    .. versionadded:: 1.0
    """


# -------------------------------------------------------------------------------------------------
# nesting strategies
# -------------------------------------------------------------------------------------------------


@hookspec
def borgstore_nesting_strategies() -> "Optional[list[NestingSpec]]":
    """Declare the nesting strategies this plugin provides, one :class:`borgstore.NestingSpec` each.

    A nesting strategy maps a key and a nesting level to the directories the key is stored under
    (see :class:`borgstore.nesting.NestingStrategy`).  A namespace chooses one in the store's
    config: ``{"data/": {"levels": [2], "nesting": "hash"}}``; without ``"nesting"`` the
    borgstore-compatible ``"hex"`` strategy is used.

    If two plugins declare the same name, the one registered last wins.

    :return: a list of :class:`borgstore.NestingSpec` (empty or None if the plugin has none).

    .. versionadded:: 1.0
    """


# -------------------------------------------------------------------------------------------------
# middleware
# -------------------------------------------------------------------------------------------------


@hookspec
def borgstore_middleware() -> "Optional[list[MiddlewareSpec]]":
    """Declare the middleware this plugin provides, one :class:`borgstore.MiddlewareSpec` each.

    A middleware spec has a name and a factory ``factory(inner, **options)`` that returns a
    :class:`borgstore.middleware.Middleware` wrapping *inner*, the next link of the chain.  The
    application decides where a middleware goes by naming it in ``Store(middleware=[...])``;
    registration order never changes the chain.

    If two plugins declare the same name, the one registered last wins.

    :return: a list of :class:`borgstore.MiddlewareSpec` (empty or None if the plugin has none).

    .. versionadded:: 1.0
    """
