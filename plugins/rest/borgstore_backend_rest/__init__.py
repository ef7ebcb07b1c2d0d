"""borgstore's REST client and server: ``http:``, ``https:`` and ``rest:`` URLs, and
``borgstore-server-rest``, which serves any borgstore backend over HTTP (TCP, TLS, a systemd
socket or stdio, e.g. through ssh) and enforces permissions and a quota on the server, where a
client that cannot be trusted cannot get around them.

The wire protocol is the PyPI borgstore 0.7's (see ``_wire``): a client or server of either
project works with one of the other.  See docs/rest.md.

This module is imported whenever borgstore looks for plugins, so it stays light: the client
(``._backend``) is imported only when one of its URLs is used, the server only when it runs.
"""

__version__ = "1.0.0.dev0"

from borgstore import BackendSpec, Capabilities, hookimpl

OPTIONS = ("timeout", "ca_file")
#: the algorithms the server's hash() computes where the data is (the storage's generic hash()
#: covers every hashlib algorithm; these are the ones every Python has)
HASH_ALGORITHMS = frozenset({"md5", "sha1", "sha256", "sha512", "blake2b"})


@hookimpl
def borgstore_backends():
    return [
        BackendSpec(
            schemes=("http", "https", "rest"),
            factory="borgstore_backend_rest._backend:rest_backend_from_url",
            options=OPTIONS,
            redact="borgstore_backend_rest._url:redact",  # imported when a URL is shown
            # store_new only once open() has found our server (a PyPI server has no such request)
            capabilities=Capabilities(
                thread_safe=True,
                transient_errors=True,
                hash_algorithms=HASH_ALGORITHMS,
                reserved_suffixes=frozenset({".hid", ".tmp"}),  # the server's: see _wire
            ),
            # a server serves one store: `check` runs at the URL itself, which must hold none yet
            locations_below=False,
            description="a borgstore REST server: http(s)://[user:password@]host[:port][/sub/path], "
            "rest:///path or rest://[user@]host[:port]/path (the server on stdio, through ssh)",
        )
    ]


def __getattr__(name):
    if name in ("RestBackend", "rest_backend_from_url"):
        from . import _backend

        return getattr(_backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["HASH_ALGORITHMS", "OPTIONS", "RestBackend", "rest_backend_from_url"]
