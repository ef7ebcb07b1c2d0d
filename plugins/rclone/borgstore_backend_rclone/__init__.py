"""borgstore backend for every rclone remote: ``rclone:REMOTE:PATH`` (``rclone:/path`` is local).

Each open store runs its own ``rclone rcd`` child process on 127.0.0.1 and talks to it over HTTP.
See the distribution's README for set-up and for what each kind of remote guarantees.

This module is imported whenever borgstore looks for plugins, so it stays light: the backend
(``._backend``) is imported only when an ``rclone:`` URL is used.
"""

import re

from borgstore import BackendSpec, hookimpl
from borgstore.backends._base import Capabilities

__version__ = "1.0.0.dev0"

OPTIONS = ("server_hash", "verify_uploads", "timeout")
REDACTED = "***"
# Parameter names whose values are secrets, in rclone connection strings (":s3,secret_access_key=..:",
# ":sftp,pass=..:", "remote,token=..:").  access_key_id is hidden too ("key"): it is half of a
# credential pair and names the account; hiding a harmless value costs nothing.
_SECRET_NAME = re.compile(r"(?i)pass|secret|key|token|auth|credential|cookie|sas|signature|session|private|bearer")

# What most remotes can do; the opened backend learns the truth from rclone (see _learn_remote).
# transient_errors: a remote behind a process behind HTTP fails for a while and then works again,
# so the default chain retries (the backend tries each call once).  No store_new: rclone has no
# create-if-absent that is atomic on every remote (docs/rclone.md).
DISPLAY_CAPABILITIES = Capabilities(
    needs_mkdir=True, atomic_store=True, thread_safe=True, list_tree=True, transient_errors=True
)

_USERINFO_PASSWORD = re.compile(r"//[^/@:]*:(?P<password>[^/@]*)@")


class _Malformed(Exception):
    """A connection string that cannot be parsed: hide all its parameters."""


def _read_value(spec: str, pos: int) -> tuple:
    """The value starting at *pos*: (text, end, quote); a quoted value ends at its closing quote
    (a doubled quote inside is one quote), an unquoted one at "," or ":"."""
    quote = spec[pos] if pos < len(spec) and spec[pos] in "\"'" else ""
    if not quote:
        end = pos
        while end < len(spec) and spec[end] not in ",:":
            end += 1
        return spec[pos:end], end, ""
    text: list[str] = []
    i = pos + 1
    while i < len(spec):
        if spec[i] == quote:
            if spec[i + 1 : i + 2] != quote:
                return "".join(text), i + 1, quote
            i += 1
        text.append(spec[i])
        i += 1
    raise _Malformed("unterminated quote")


def _parse(spec: str, secrets: list) -> str:
    """*spec* with the values of secret parameters replaced; the raw values go to *secrets*."""
    if spec.startswith("/"):
        return spec  # a local path: rclone reads no parameters from it
    pos = 1 if spec.startswith(":") else 0
    while pos < len(spec) and spec[pos] not in ",:":
        pos += 1
    out = [spec[:pos]]
    while pos < len(spec) and spec[pos] == ",":
        key_end = pos + 1
        while key_end < len(spec) and spec[key_end] not in "=,:":
            key_end += 1
        key = spec[pos + 1 : key_end]
        if key_end >= len(spec) or spec[key_end] != "=":
            out.append("," + key)  # a flag without a value
            pos = key_end
            continue
        value, pos, quote = _read_value(spec, key_end + 1)
        if _SECRET_NAME.search(key):
            secrets.append(value)
            out.append(f",{key}={REDACTED}")
            continue
        userinfo = _USERINFO_PASSWORD.search(value)
        if userinfo:  # a URL with a password (http's url=, webdav's url=)
            secrets.append(userinfo["password"])
            value = value[: userinfo.start("password")] + REDACTED + value[userinfo.end("password") :]
        if quote and "=" in value:
            # a nested connection string (crypt's remote=, union's upstreams=, space-separated)
            value = " ".join(_parse(part, secrets) for part in value.split(" "))
        shown = quote + value.replace(quote, quote * 2) + quote if quote else value
        out.append(f",{key}={shown}")
    if pos < len(spec) and spec[pos] != ":":
        raise _Malformed("garbage after the parameters")
    out.append(spec[pos:])
    return "".join(out)


def _redact_spec(spec: str, secrets: list) -> str:
    try:
        return _parse(spec, secrets)
    except _Malformed:
        found = re.match(r":?[^,:]*", spec)
        assert found is not None  # the pattern matches every string (the empty string at least)
        head = found.group()
        return f"{head},{REDACTED}"


def redact(url: str) -> str:
    """*url* (``rclone:...``) with the values of secret parameters of its connection string
    replaced by ``***``; the remote's name, the path and other parameters stay visible."""
    scheme, sep, spec = url.partition(":")
    return scheme + sep + _redact_spec(spec, [])


def scrubber(spec: str):
    """A function that hides the secrets of connection string *spec* in any text (rclone's error
    messages may quote the connection string or a value from it)."""
    secrets: list[str] = []
    shown = _redact_spec(spec, secrets)
    values = sorted({value for value in secrets if value}, key=len, reverse=True)
    if shown == spec and not values:
        return lambda text: text

    def scrub(text: str) -> str:
        text = text.replace(spec, shown)
        for value in values:
            text = text.replace(value, REDACTED)
        return text

    return scrub


@hookimpl
def borgstore_backends():
    return [
        BackendSpec(
            schemes=("rclone",),
            factory="borgstore_backend_rclone._backend:rclone_backend_from_url",
            capabilities=DISPLAY_CAPABILITIES,
            options=OPTIONS,
            redact=redact,
            description="any rclone remote through a private rclone rcd: rclone:REMOTE:PATH or rclone:/local/path",
        )
    ]


# The backend's names, importable from the package as before, imported on first use.
_LAZY = {
    "RcloneBackend": "_backend",
    "rclone_backend_from_url": "_backend",
    "BINARY_ENV": "_process",
    "MIN_VERSION": "_process",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = ["BINARY_ENV", "MIN_VERSION", "OPTIONS", "RcloneBackend", "rclone_backend_from_url", "redact"]
