"""borgstore-backend-sftp: borgstore's ``sftp://`` backend (paramiko).

Registers the ``sftp`` URL scheme with borgstore through the ``borgstore`` entry point group.
"""

from borgstore import BackendSpec, hookimpl

from ._backend import SftpBackend, parse_url
from ._connect import AuthenticationFailed, HostKeyChanged, HostKeyError, UnknownHostKey

__version__ = "1.0.0.dev0"

OPTIONS = (
    "ssh_config",
    "use_agent",
    "durability",
    "connect_timeout",
    "timeout",
    "keepalive",
    "retries",
    "retry_time",
)


def sftp_backend_from_url(url: str, **options) -> SftpBackend:
    """The backend factory: an unopened SftpBackend for *url* (nothing is connected yet)."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown sftp backend option(s): {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    return SftpBackend(url, **options)


@hookimpl
def borgstore_backends():
    return [
        BackendSpec(
            schemes=("sftp",),
            factory=sftp_backend_from_url,
            capabilities=SftpBackend.capabilities,
            description="a directory on an SSH server, over sftp (paramiko); verifies host keys via known_hosts",
        )
    ]


__all__ = [
    "AuthenticationFailed",
    "HostKeyChanged",
    "HostKeyError",
    "SftpBackend",
    "UnknownHostKey",
    "parse_url",
    "sftp_backend_from_url",
]
