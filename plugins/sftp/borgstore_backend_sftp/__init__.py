"""borgstore-backend-sftp: borgstore's ``sftp://`` backend (the system's ssh client, or paramiko).

Registers the ``sftp`` URL scheme with borgstore through the ``borgstore`` entry point group.
This module stays light: borgstore imports it whenever it lists its plugins, also in programs
that never use sftp, so paramiko and the implementation are imported only when first used (an
sftp URL is opened, or one of the names below is looked up).
"""

import importlib

from borgstore import BackendSpec, Capabilities, hookimpl

__version__ = "1.0.0.dev0"

OPTIONS = (
    "ssh_config",
    "use_agent",
    "durability",
    "connect_timeout",
    "timeout",
    "keepalive",
    "transport",
)
#: options of earlier versions, now the ``retry`` middleware's business: still accepted as names,
#: so that the backend can refuse them with a ValueError that says where retrying went
RETIRED_OPTIONS = ("retries", "retry_time")

CAPABILITIES = Capabilities(
    needs_mkdir=True, atomic_store=True, thread_safe=True, store_new=True, transient_errors=True
)

# public name -> the module that defines it, imported on first use
_LAZY = {
    "SftpBackend": "_backend",
    "sftp_backend_from_url": "_backend",
    "parse_url": "_url",
    "AuthenticationFailed": "_connect",
    "HostKeyChanged": "_connect",
    "HostKeyError": "_connect",
    "UnknownHostKey": "_connect",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # looked up once
    return value


# No __dir__ listing the lazy names: pluggy looks up every name dir() gives when it registers
# this module as a plugin, which would import paramiko at start-up.


@hookimpl
def borgstore_backends():
    return [
        BackendSpec(
            schemes=("sftp",),
            factory=f"{__name__}._backend:sftp_backend_from_url",
            capabilities=CAPABILITIES,
            description="a directory on an SSH server, over sftp (the system ssh client, or paramiko); verifies host keys via known_hosts",
            options=OPTIONS + RETIRED_OPTIONS,
            redact=f"{__name__}._url:redact_url",
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
