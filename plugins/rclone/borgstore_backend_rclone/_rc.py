"""What rclone answers and expects: its errors, times and entry dicts, and the upload form."""

import re
import secrets
from datetime import datetime

from borgstore.backends._base import ItemInfo
from borgstore.backends.errors import (
    BackendConnectionError,
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ObjectNotFound,
    PermissionDenied,
)
from borgstore.backends.toolkit import error_for_http_status

# rclone's names of the hashes that hashlib computes the same way
HASHLIB_NAMES = {"md5": "md5", "sha1": "sha1", "sha256": "sha256"}
# A load on a local remote reads one version (see RcloneBackend.load): while writers keep
# replacing the item, it looks this many times before it gives up with a temporary error.
SNAPSHOT_ATTEMPTS = 10
# A store's final move on a remote whose move deletes the target first (sftp): another writer of
# the same name can get in its way this many times (see RcloneBackend._move_into_place).
MOVE_ATTEMPTS = 8

# rclone answers most failures with HTTP 500 and its own words, whatever the cause: the words say
# what happened (lower case; looked for in this order, see rclone_error).
PERMISSION_TEXTS = ("permission denied", "operation not permitted", "read-only file system", "access denied")
MISSING_TEXTS = (
    "object not found",  # fs.ErrorObjectNotFound: every remote's "no such item"
    "directory not found",  # fs.ErrorDirNotFound
    "no such file or directory",  # ENOENT from a local call racing another writer (rename, remove)
    "file does not exist",  # sftp
)
NOT_A_DIRECTORY_TEXTS = ("not a directory", "is a file not a directory")
IS_A_DIRECTORY_TEXTS = ("is a directory",)
KIND_TEXTS = NOT_A_DIRECTORY_TEXTS + IS_A_DIRECTORY_TEXTS  # an item where a directory is, or the reverse
CONFLICT_TEXTS = KIND_TEXTS + ("directory not empty", "file exists", "already exists")
TIMEOUT_TEXTS = ("i/o timeout", "context deadline exceeded", "timed out", "timeout")
CONNECTION_TEXTS = (
    "connection refused",
    "connection reset",
    "broken pipe",
    "unexpected eof",
    "no route to host",
    "network is unreachable",
    "connection lost",
    "use of closed network connection",
    "couldn't connect",
    "failed to connect",
)
BUSY_TEXTS = (
    "too many requests",
    "rate limit",
    "ratelimit",
    "slow down",
    "slowdown",
    "service unavailable",
    "temporarily unavailable",
    "try again later",
)


class RcFailed(Exception):
    """rclone answered with an error; mapped to a borgstore error by the operation."""

    def __init__(self, command: str, status: int, message: str, words: str = ""):
        super().__init__(f"{command}: HTTP {status}: {message}")
        self.command = command
        self.status = status
        self.message = message
        # what rclone's words are looked for in: the message without the store's paths, so that a
        # store at /srv/timeouts/ does not turn every failure into a timeout
        self._words = (words or message).lower()

    def mentions(self, texts) -> bool:
        return any(text in self._words for text in texts)


def words_of(message: str, fs: str) -> str:
    """*message* without the paths of the store at *fs* in it (rclone quotes local paths whole,
    other remotes' paths without the remote's name): what rclone's words are looked for in."""
    roots = {fs, fs.partition(":")[2]} if ":" in fs and not fs.startswith("/") else {fs}
    for root in sorted((r for r in roots if len(r) > 1), key=len, reverse=True):
        message = re.sub(re.escape(root) + r"\S*", "<path>", message)
    return message


def rclone_error(failure: RcFailed, what: str, *, mutation: bool = False) -> BackendError:
    """The borgstore error for rclone's answer *failure* to an operation described by *what*.

    rclone's words first, where they say more than its status (500 for nearly everything); then
    the status (toolkit.error_for_http_status: an unknown 500 is temporary).  A temporary error
    of a *mutation* may have been applied: rclone may have lost the remote's reply itself."""
    text = f"{what}: {failure.message}"
    if failure.mentions(PERMISSION_TEXTS):
        return PermissionDenied(text)
    if failure.mentions(MISSING_TEXTS):
        return ObjectNotFound(text)
    if failure.mentions(CONFLICT_TEXTS):
        return BackendError(text)  # something is in the way: trying again changes nothing
    if failure.mentions(TIMEOUT_TEXTS):
        return BackendTimeout(text, maybe_applied=mutation)
    if failure.mentions(CONNECTION_TEXTS):
        return BackendConnectionError(text, maybe_applied=mutation)
    if failure.mentions(BUSY_TEXTS):
        return BackendUnavailable(text, maybe_applied=mutation)
    return error_for_http_status(failure.status, text, maybe_applied=mutation)


def parse_modtime(text) -> float:
    """rclone's RFC 3339 time with nanoseconds -> POSIX seconds (0 if absent)."""
    if not text:
        return 0
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        return 0
    seconds, fraction, zone = match.groups()
    stamp = datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone)).timestamp()
    return stamp + (float("0." + fraction) if fraction else 0.0)


def same_version(before: dict, after: dict) -> bool:
    return before.get("Size") == after.get("Size") and before.get("ModTime") == after.get("ModTime")


def has_inline_parameters(remote: str) -> bool:
    # ":sftp,host=h,pass=...:path" and "name,key=value:path" carry settings (maybe secrets) in the
    # spec itself; such a spec must never appear on a command line.
    return not remote.startswith("/") and "," in remote


def by_path(pair):
    """The sort key of (path, entry) pairs."""
    return pair[0]


def item_info(name: str, entry: dict) -> ItemInfo:
    """The ItemInfo of rclone's entry dict (from operations/list or operations/stat)."""
    directory = bool(entry.get("IsDir"))
    size = 0 if directory else max(int(entry.get("Size") or 0), 0)
    return ItemInfo(name=name, exists=True, size=size, directory=directory, mtime=parse_modtime(entry.get("ModTime")))


def multipart_form(filename: str) -> tuple:
    """What goes around a file's bytes in rclone's uploadfile form: (head, tail, Content-Type)."""
    boundary = "borgstore-" + secrets.token_hex(16)
    quoted = filename.replace("\\", "\\\\").replace('"', '\\"')  # a name may contain a double quote
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file0"; filename="{quoted}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail, f"multipart/form-data; boundary={boundary}"
