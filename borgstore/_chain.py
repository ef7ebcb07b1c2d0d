"""Building a store's chain: the middleware list the application gives, around a backend.

``build_chain``, ``get_backend`` and ``default_middleware`` are public (``borgstore`` and
``borgstore.store`` export them).
"""

from typing import Any, Iterable, Optional, Union

from . import _plugins
from .backends._base import BackendBase
from .backends.errors import BackendURLInvalid
from .middleware._base import BackendAdapter, Link

#: one entry of a middleware list: a middleware name, or ``(name, {options})``
MiddlewareEntry = Union[str, tuple[str, dict[str, Any]]]


def _middleware_entry(entry: object) -> tuple[str, dict[str, Any]]:
    """Return (name, options) for one entry of a middleware list."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str) and isinstance(entry[1], dict):
        return entry
    raise ValueError(f"invalid middleware entry {entry!r}: use a name or (name, {{options}})")


def build_chain(
    backend: Union[BackendBase, Link], middleware: Iterable[MiddlewareEntry] = (), *, name: Optional[str] = None
) -> Link:
    """Wrap *backend* (a backend or a chain link) in *middleware*, given outermost first.

    Each entry is a middleware name or ``(name, options)``; options go to the middleware's
    factory as keyword arguments.
    """
    if isinstance(backend, Link):
        link = backend
    elif isinstance(backend, BackendBase) or hasattr(backend, "load"):
        link = BackendAdapter(backend, name or type(backend).__name__)
    else:
        raise ValueError(f"not a backend: {backend!r}")
    for entry in reversed(list(middleware)):
        mw_name, options = _middleware_entry(entry)
        if mw_name == "softdelete":
            raise ValueError(
                "'softdelete' is no middleware any more: soft deletion is part of the Store, and every "
                "middleware sees a soft deletion as a move to '<name>.del'; drop it from the list"
            )
        factory = _plugins.middleware_factory(mw_name)
        try:
            new_link = factory(link, **options)
        except TypeError as exc:
            raise ValueError(f"middleware {mw_name!r}: invalid options {options!r}: {exc}") from None
        new_link.name = mw_name
        link = new_link
    return link


def get_backend(
    url: str, permissions: Optional[dict[str, str]] = None, quota: Optional[int] = None, **options: Any
) -> Union[BackendBase, Link, None]:
    """Return an unopened backend for *url*, or None if no installed backend serves it.

    With *permissions* or *quota*, the backend comes wrapped in the ``permissions`` and ``quota``
    middleware, so these work on every backend.  Extra keyword arguments are backend options.
    """
    try:
        backend = _plugins.backend_for_url(url, options)
    except BackendURLInvalid:
        return None
    return _wrap_with_limits(backend, permissions, quota)


def _wrap_with_limits(
    backend: BackendBase, permissions: Optional[dict[str, str]], quota: Optional[int]
) -> Union[BackendBase, Link]:
    chain: list[MiddlewareEntry] = []
    if permissions is not None:
        chain.append(("permissions", {"permissions": permissions}))
    if quota is not None:
        chain.append(("quota", {"limit": quota}))
    return build_chain(backend, chain) if chain else backend


def default_middleware(
    permissions: Optional[dict[str, str]] = None,
    quota: Optional[int] = None,
    backend: Union[BackendBase, Link, None] = None,
) -> list[MiddlewareEntry]:
    """The chain that reproduces the PyPI borgstore's behaviour (docs/compatibility.md), outermost first.

    A *backend* (unopened) whose capabilities declare ``transient_errors`` (a network backend)
    also gets ``retry``, inside the limits (a refused call is not retried) and outside any
    emulation."""
    from .middleware.emulate import emulation_requested

    chain: list[MiddlewareEntry] = ["stats"]
    if permissions is not None:
        chain.append(("permissions", {"permissions": permissions}))
    if quota is not None:
        chain.append(("quota", {"limit": quota}))
    if backend is not None and getattr(getattr(backend, "capabilities", None), "transient_errors", False):
        chain.append("retry")
    if emulation_requested():
        chain.append("emulate")
    return chain


def store_chain(
    backend: Union[BackendBase, Link],
    url: Optional[str],
    middleware: Optional[Iterable[MiddlewareEntry]],
    permissions: Optional[dict],
    quota: Optional[int],
    cached: dict,
    cache_backend: Any,
) -> Link:
    """The chain a Store builds from its arguments: *middleware* (default: default_middleware),
    the limits *permissions* and *quota* outermost unless *middleware* places them itself, and a
    ``cache`` link for the namespaces in *cached* just outside any emulation."""
    entries: list[MiddlewareEntry]
    if middleware is None:
        entries = default_middleware(permissions, quota, backend=backend)
    else:
        entries = list(middleware)
        names = [_middleware_entry(entry)[0] for entry in entries]
        if quota is not None and "quota" not in names:
            entries.insert(0, ("quota", {"limit": quota}))
        if permissions is not None and "permissions" not in names:
            entries.insert(0, ("permissions", {"permissions": permissions}))
    if cached:
        # the cache sits just outside any emulation, so that cache hits are not slowed down
        names = [_middleware_entry(entry)[0] for entry in entries]
        if "cache" in names:
            raise ValueError("the config asks for a cache: do not name 'cache' in middleware= too")
        position = names.index("emulate") if "emulate" in names else len(entries)
        entries.insert(position, ("cache", {"cache": cache_backend, "policies": cached}))
    return build_chain(backend, entries, name=url.split(":", 1)[0] if url else None)
