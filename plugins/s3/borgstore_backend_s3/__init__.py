"""borgstore backend for S3-compatible object stores (AWS, MinIO, Ceph RGW, Garage, Wasabi...)
and Backblaze B2's S3 API: ``s3:`` and ``b2:`` URLs.

One object per item at ``<path>/<backend name>``, the layout of the PyPI borgstore's S3 backend,
so a bucket written by either opens with the other.  See docs/s3.md for set-up and credentials.

This module is imported whenever borgstore looks for plugins, so it stays light: the backend
(``._backend``) is imported only when an ``s3:`` or ``b2:`` URL is used.
"""

from borgstore import BackendSpec, Capabilities, hookimpl

__version__ = "1.0.0.dev0"

OPTIONS = ("region", "conditional_create", "multipart_threshold", "part_size", "timeout")


def redact(url: str) -> str:
    """*url* with its secret access key replaced by ``***``."""
    from ._url import redact as redact_url

    return redact_url(url)


@hookimpl
def borgstore_backends():
    return [
        BackendSpec(
            schemes=("s3", "b2"),
            factory="borgstore_backend_s3._backend:s3_backend_from_url",
            options=OPTIONS,
            redact=redact,
            capabilities=Capabilities(
                needs_mkdir=False, thread_safe=True, list_tree=True, store_new=True, transient_errors=True
            ),
            description="S3-compatible object stores and Backblaze B2: (s3|b2):[creds@][http(s)://host[:port]]/bucket/path",
        )
    ]


def __getattr__(name):
    if name in ("S3Backend", "s3_backend_from_url"):
        from . import _backend

        return getattr(_backend, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["OPTIONS", "S3Backend", "redact", "s3_backend_from_url"]
