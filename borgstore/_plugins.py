"""The plugin manager: finds plugins, asks them what they provide, and looks things up by name."""

import importlib
import importlib.metadata
import re
import shlex
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generic, Optional, TypeVar, Union

import pluggy

from . import hookspecs
from .backends._base import Capabilities
from .backends.errors import BackendNotInstalled, BackendURLInvalid, PluginError

if TYPE_CHECKING:
    from .backends._base import BackendBase
    from .middleware._base import Link
    from .nesting import NestingStrategy

ENTRY_POINT_GROUP = "borgstore"

hookimpl = pluggy.HookimplMarker("borgstore")

# The core's own plugins: the one list of them (the core declares no entry points of its own).
BUILTIN_PLUGINS = {
    "memory": "borgstore.backends.memory",
    "nesting": "borgstore.nesting",
    "stats": "borgstore.middleware.stats",
    "emulate": "borgstore.middleware.emulate",
    "permissions": "borgstore.middleware.permissions",
    "quota": "borgstore.middleware.quota",
    "cache": "borgstore.middleware.cache",
    "readonly": "borgstore.middleware.readonly",
    "retry": "borgstore.middleware.retry",
}

# Schemes served by distributions of this project, to tell the user what to install.
KNOWN_SCHEMES = {
    "file": "borgstore-backend-posixfs",
    "sftp": "borgstore-backend-sftp",
    "rclone": "borgstore-backend-rclone",
    "s3": "borgstore-backend-s3",
    "b2": "borgstore-backend-s3",
    "http": "borgstore-backend-rest",
    "https": "borgstore-backend-rest",
    "rest": "borgstore-backend-rest",
}


#: a callable, or its import path ``"module:attribute"``
Factory = Union[Callable[..., Any], str]


def resolve(factory: Factory) -> Callable[..., Any]:
    """The callable a spec names: itself, or ``"module:attribute"`` imported now (on first use)."""
    if not isinstance(factory, str):
        return factory
    module, _, attribute = factory.partition(":")
    target: Any = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


@dataclass(frozen=True)
class BackendSpec:
    """A backend a plugin provides: see the ``borgstore_backends`` hook.

    :ivar schemes: the URL schemes served, e.g. ``("sftp",)``.
    :ivar factory: ``factory(url, **options)`` returning an unopened backend, or its import path
        ``"package.module:function"``, imported only when a URL of these schemes is used.
    :ivar capabilities: what the backend can usually do, for display before anything is opened;
        the opened backend's ``capabilities`` is the truth.
    :ivar description: one line for ``borgstore plugins``.
    :ivar options: the names of the backend's options; None: the factory checks them itself.
        The core rejects any other option with a ValueError naming it.
    :ivar redact: ``redact(url) -> str`` hiding the secrets a URL of this scheme may carry, or its
        import path; None: the core's generic redaction (passwords in ``user:password@``).
    :ivar locations_below: a URL that extends a store's URL by a path is a store of its own (a
        directory below it, a prefix in a bucket), so ``check`` and the kit's ``--borgstore-url``
        run each check at a fresh location below the URL.  False where a URL reaches exactly one
        store (a REST server serves one): they then run the checks one after another at the URL
        itself, and refuse to start if a store is there already.
    """

    schemes: tuple[str, ...]
    factory: Factory
    capabilities: Optional[Capabilities] = None
    description: str = ""
    options: Optional[tuple[str, ...]] = None
    redact: Optional[Factory] = None
    locations_below: bool = True


@dataclass(frozen=True)
class NestingSpec:
    """A nesting strategy a plugin provides: see the ``borgstore_nesting_strategies`` hook.

    *factory* is a callable or its import path ``"module:Class"``."""

    name: str
    factory: Factory
    description: str = ""


@dataclass(frozen=True)
class MiddlewareSpec:
    """A middleware a plugin provides: see the ``borgstore_middleware`` hook.

    *factory* is a callable ``factory(inner, **options)`` or its import path ``"module:Class"``."""

    name: str
    factory: Factory
    description: str = ""


#: what a plugin may provide
AnySpec = Union[BackendSpec, NestingSpec, MiddlewareSpec]

SPEC_TYPES: dict[str, type[AnySpec]] = {
    "borgstore_backends": BackendSpec,
    "borgstore_nesting_strategies": NestingSpec,
    "borgstore_middleware": MiddlewareSpec,
}


_Spec = TypeVar("_Spec", bound=AnySpec)


@dataclass(frozen=True)
class Provided(Generic[_Spec]):
    """One thing a plugin provides, with where it came from."""

    spec: _Spec
    plugin: str
    distribution: str
    version: str


@dataclass(frozen=True)
class LoadFailure:
    """An entry point that could not be loaded or registered."""

    plugin: str
    target: str
    distribution: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} ({self.target}, from {self.distribution}) failed to load: {self.error}"


#: backends by scheme, nesting strategies by name, middleware by name
_Tables = tuple[dict[str, Provided[BackendSpec]], dict[str, Provided[NestingSpec]], dict[str, Provided[MiddlewareSpec]]]


class _Registry:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pm: Optional[pluggy.PluginManager] = None
        self.failures: list[LoadFailure] = []  # entry points that failed to load
        self.table_failures: list[LoadFailure] = []  # plugins whose declarations are broken
        self.origins: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
        self._tables: Optional[_Tables] = None
        self._registered_snapshot: Optional[tuple[tuple[str, object], ...]] = None

    def plugin_manager(self) -> pluggy.PluginManager:
        with self.lock:
            if self.pm is None:
                pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
                pm.add_hookspecs(hookspecs)
                self._load_entry_points(pm)
                self._load_builtins(pm)
                self.pm = pm
            return self.pm

    def _load_entry_points(self, pm: pluggy.PluginManager) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else "unknown distribution"
            version = ep.dist.version if ep.dist else ""
            if pm.has_plugin(ep.name):
                continue  # the same distribution seen twice on sys.path
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not break the others
                self.failures.append(LoadFailure(ep.name, ep.value, dist, f"{type(exc).__name__}: {exc}"))
                continue
            self.origins[ep.name] = (dist, version)

    def _load_builtins(self, pm: pluggy.PluginManager) -> None:
        from . import __version__

        for name, module in BUILTIN_PLUGINS.items():
            if not pm.has_plugin(name):
                pm.register(importlib.import_module(module), name=name)
                self.origins[name] = ("borgstore", __version__)

    def _check_hook_names(self, pm: pluggy.PluginManager, failures: list[LoadFailure]) -> None:
        # a misspelled hook name would otherwise be ignored without a word
        for hook_name in dir(pm.hook):
            if not hook_name.startswith("borgstore") or hasattr(hookspecs, hook_name):
                continue
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                name = pm.get_name(impl.plugin) or repr(impl.plugin)
                dist = self.origins.get(name, ("unknown distribution", ""))[0]
                failures.append(
                    LoadFailure(name, hook_name, dist, f"implements {hook_name!r}, which is not a borgstore hook")
                )

    def tables(self) -> _Tables:
        """Return (backends by scheme, nesting by name, middleware by name), rebuilt when the set of
        registered plugins changed."""
        pm = self.plugin_manager()
        with self.lock:
            # the (name, plugin) pairs themselves, not id()s: an unregistered plugin's id may be
            # reused by the next one registered, which would leave the tables stale
            snapshot = tuple(pm.list_name_plugin())
            if self._tables is None or snapshot != self._registered_snapshot:
                self._tables = self._build_tables(pm)
                self._registered_snapshot = snapshot
            return self._tables

    def _build_tables(self, pm: pluggy.PluginManager) -> _Tables:
        """Ask every plugin what it provides; problems go to self.table_failures."""
        failures: list[LoadFailure] = []
        self._check_hook_names(pm, failures)
        backends: dict[str, Provided[BackendSpec]] = {}
        nestings: dict[str, Provided[NestingSpec]] = {}
        middlewares: dict[str, Provided[MiddlewareSpec]] = {}
        plugins = pm.get_plugins()
        for hook_name, table, key in (
            ("borgstore_backends", backends, "schemes"),
            ("borgstore_nesting_strategies", nestings, "name"),
            ("borgstore_middleware", middlewares, "name"),
        ):
            # hookimpls come in registration order; later registrations override earlier ones
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)
                dist, version = self.origins.get(plugin_name, ("(registered at run time)", ""))
                # called through pluggy (argument selection, call monitoring), one plugin at a
                # time, so that a broken plugin is named and does not hide the others
                caller = pm.subset_hook_caller(hook_name, [p for p in plugins if p is not impl.plugin])
                try:
                    results = caller()
                except Exception as exc:
                    failures.append(LoadFailure(plugin_name, hook_name, dist, f"{type(exc).__name__}: {exc}"))
                    continue
                for specs in results:
                    for spec in specs or []:
                        if not isinstance(spec, SPEC_TYPES[hook_name]):
                            failures.append(
                                LoadFailure(
                                    plugin_name,
                                    hook_name,
                                    dist,
                                    f"returned {spec!r}, not a {SPEC_TYPES[hook_name].__name__}",
                                )
                            )
                            continue
                        # the type that goes with the table: checked by isinstance() above
                        provided: Provided[Any] = Provided(spec, plugin_name, dist, version)
                        keys = getattr(spec, key)
                        for k in (keys,) if isinstance(keys, str) else keys:
                            table[k] = provided
        self.table_failures = failures
        return backends, nestings, middlewares


_registry = _Registry()


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager; register your own plugins on it."""
    return _registry.plugin_manager()


def load_failures() -> list[LoadFailure]:
    """The plugins that failed to load or declared something broken, as :class:`LoadFailure` items."""
    _registry.tables()
    return _registry.failures + _registry.table_failures


def backends() -> dict[str, Provided[BackendSpec]]:
    return _registry.tables()[0]


def nesting_strategies() -> dict[str, Provided[NestingSpec]]:
    return _registry.tables()[1]


def middlewares() -> dict[str, Provided[MiddlewareSpec]]:
    return _registry.tables()[2]


def url_scheme(url: object) -> str:
    if not isinstance(url, str) or ":" not in url:
        raise BackendURLInvalid(f"invalid store URL {redact_url(url)!r}: expected SCHEME:..., e.g. file:///path")
    scheme = url.split(":", 1)[0].lower()
    if not scheme.isidentifier():
        raise BackendURLInvalid(f"invalid store URL {redact_url(url)!r}: {scheme!r} is not a URL scheme")
    return scheme


# scheme, optional "//", then user info up to "@" (no "/" in it): the password is after its ":"
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*:(?://)?)(?P<user>[^/@:]*):(?P<secret>[^/@]*)@")
_SECRET_PARAMS = re.compile(r"(?i)(?P<key>[\w-]*(?:pass|secret|token|key)[\w-]*=)(?P<value>[^&;,:@/]*)")
REDACTED = "***"


def generic_redact(url: str) -> str:
    """Hide a password in ``scheme:[//]user:password@...`` and the values of query parameters
    whose names say secret, pass, token or key."""
    url = _USERINFO.sub(lambda m: f"{m['head']}{m['user']}:{REDACTED}@", url, count=1)
    head, question, query = url.partition("?")
    if question:
        url = head + "?" + _SECRET_PARAMS.sub(lambda m: m["key"] + REDACTED, query)
    return url


def redact_url(url: object) -> str:
    """*url* with every secret it carries replaced by ``***``: safe for messages, logs, repr.

    The backend serving the scheme knows where its secrets are (its spec's ``redact``); for
    other URLs the generic rule hides ``user:password@`` passwords."""
    if not isinstance(url, str):
        return repr(type(url).__name__)
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    provided = backends().get(scheme) if scheme else None
    redact = getattr(provided.spec, "redact", None) if provided is not None else None
    try:
        return resolve(redact)(url) if redact is not None else generic_redact(url)
    except Exception:  # a broken redactor must not show the URL instead
        return f"{scheme}:{REDACTED}"


def backend_for_url(url: str, options: Optional[dict[str, Any]] = None) -> "BackendBase":
    """Build an unopened backend for *url*, raising a precise BackendURLInvalid if that fails."""
    scheme = url_scheme(url)
    provided = backends().get(scheme)
    shown = redact_url(url)
    if provided is None:
        failed = [f for f in load_failures() if f.plugin == scheme or KNOWN_SCHEMES.get(scheme) == f.distribution]
        if failed:
            raise BackendNotInstalled(f"cannot open {shown!r}: {failed[0]}")
        if scheme in KNOWN_SCHEMES:
            dist = KNOWN_SCHEMES[scheme]
            raise BackendNotInstalled(
                f"cannot open {shown!r}: the {scheme!r} backend ({dist}) is not installed; "
                f"install it with: {install_command(dist)}"
            )
        known = ", ".join(sorted(backends())) or "none"
        raise BackendURLInvalid(f"unknown URL scheme {scheme!r} in {shown!r} (installed backends: {known})")
    options = options or {}
    if provided.spec.options is not None:
        from .backends.toolkit import check_options

        check_options(options, provided.spec.options, scheme)
    try:
        factory = resolve(provided.spec.factory)
    except Exception as exc:
        raise BackendNotInstalled(
            f"cannot open {shown!r}: the {scheme!r} backend ({provided.distribution}) failed to import: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    backend = factory(url, **options)
    if backend is None:
        raise BackendURLInvalid(f"invalid URL {shown!r} for the {scheme!r} backend")
    return backend


#: the core's distribution, for :func:`install_command`
CORE_DISTRIBUTION = "borgstore"


def install_command(distribution: str, extra: Optional[str] = None) -> str:
    """The pip command that installs *distribution* (this core, or one of this project's plugins)
    with its *extra*, if given, where the user is: the distribution's folder when this core was
    imported from a source tree that holds it (no package index has the plugins of a clone, and
    the index's ``borgstore`` is an older, unrelated one), else the distribution's name."""
    core = Path(__file__).resolve().parent.parent
    folder = core
    if distribution != CORE_DISTRIBUTION:
        folder = core / "plugins" / distribution.removeprefix("borgstore-backend-")
    try:
        declared = (folder / "pyproject.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        declared = ""
    target = distribution
    if re.search(rf"^name\s*=\s*[\"']{re.escape(distribution)}[\"']", declared, re.MULTILINE):
        target = str(folder)
    # quoted: a folder with a blank, and the brackets of an extra, paste as one argument
    return f"pip install {shlex.quote(target + (f'[{extra}]' if extra else ''))}"


def nesting_strategy(name: str) -> "NestingStrategy":
    provided = nesting_strategies().get(name)
    if provided is None:
        known = ", ".join(sorted(nesting_strategies()))
        raise ValueError(f"unknown nesting strategy {name!r} (installed: {known})")
    return resolve(provided.spec.factory)()


def middleware_factory(name: str) -> Callable[..., "Link"]:
    provided = middlewares().get(name)
    if provided is None:
        known = ", ".join(sorted(middlewares()))
        raise ValueError(f"unknown middleware {name!r} (installed: {known})")
    return resolve(provided.spec.factory)


def reset_for_tests() -> None:
    """Forget the plugin manager so that the next use loads the entry points again."""
    global _registry
    _registry = _Registry()


__all__ = [
    "BackendSpec",
    "LoadFailure",
    "MiddlewareSpec",
    "NestingSpec",
    "PluginError",
    "hookimpl",
    "plugin_manager",
    "redact_url",
]
