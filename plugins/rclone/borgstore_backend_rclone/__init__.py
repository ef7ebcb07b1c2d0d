"""borgstore backend for every rclone remote: ``rclone:REMOTE:PATH`` (``rclone:/path`` is local).

Each open store runs its own ``rclone rcd`` child process on 127.0.0.1 and talks to it over HTTP.
See the distribution's README for set-up and for what each kind of remote guarantees.
"""

from borgstore import BackendSpec, hookimpl

from ._backend import RcloneBackend, rclone_backend_from_url
from ._daemon import BINARY_ENV, MIN_VERSION

__version__ = "1.0.0.dev0"


@hookimpl
def borgstore_backends():
    return [
        BackendSpec(
            schemes=("rclone",),
            factory=rclone_backend_from_url,
            capabilities=RcloneBackend.capabilities,
            description="any rclone remote through a private rclone rcd: rclone:REMOTE:PATH or rclone:/local/path",
        )
    ]


__all__ = ["BINARY_ENV", "MIN_VERSION", "RcloneBackend", "rclone_backend_from_url"]
