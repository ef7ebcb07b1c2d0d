"""What rclone answers and expects: its errors, times and entry dicts, and the upload form."""

import re
import secrets
from datetime import datetime

from borgstore.backends._base import ItemInfo

# rclone's names of the hashes that hashlib computes the same way
HASHLIB_NAMES = {"md5": "md5", "sha1": "sha1", "sha256": "sha256"}
LOAD_ATTEMPTS = 10
MOVE_ATTEMPTS = 8  # a store's final move, where a concurrent writer can get in the way (sftp)
PERMISSION_TEXTS = ("permission denied", "operation not permitted", "read-only file system", "access denied")
NOT_A_DIRECTORY_TEXTS = ("not a directory", "is a file not a directory")


class RcFailed(Exception):
    """rclone answered with an error; mapped to a borgstore error by the operation."""

    def __init__(self, command: str, status: int, message: str, after_restart: bool):
        super().__init__(f"{command}: HTTP {status}: {message}")
        self.command = command
        self.status = status
        self.message = message
        self.after_restart = after_restart

    def mentions(self, texts) -> bool:
        lowered = self.message.lower()
        return any(text in lowered for text in texts)


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
