"""The rclone backend's listings and hashing: calls that may take long run as rclone jobs."""

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, List  # the class's own list() hides the builtin in its annotations

from borgstore.backends._base import ItemInfo, is_hidden_from_list
from borgstore.backends.errors import BackendError, ObjectNotFound
from borgstore.backends.toolkit import check_backend_name
from borgstore.constants import TMP_SUFFIX

from ._rc import MISSING_TEXTS, NOT_A_DIRECTORY_TEXTS, RcFailed, by_path, item_info

if TYPE_CHECKING:
    from ._daemon import RcDaemon

# rclone's filter for list_temp: every file whose name ends in .tmp, in any directory
_TEMP_FILTER = {"IncludeRule": ["*" + TMP_SUFFIX]}


class Listings:
    """list, list_tree, list_temp and hash of RcloneBackend (which gives _job, _error, fs ...).

    A listing is one ``operations/list`` run as an rclone job (RcDaemon.job): a directory of
    many items on a slow remote may take minutes to list, longer than rclone may take to answer
    a request, and the job's status requests are answered at once meanwhile."""

    # what these methods use of RcloneBackend, which combines this mixin with BackendBase
    # (declared for the type checker only: annotations without a value make no class attribute)
    fs: str
    _scrub: Callable[[str], str]
    _server_hashes: frozenset
    if TYPE_CHECKING:

        @property
        def url(self) -> str: ...
        def _open_daemon(self) -> RcDaemon: ...
        def _job(self, command: str, params: dict, daemon: RcDaemon | None = None, *, mutation=False) -> dict: ...
        def _error(self, failure: RcFailed, what: str, *, mutation=False) -> BackendError: ...
        def _stat(self, name: str, daemon: RcDaemon | None = None) -> dict | None: ...

    def _list_entries(self, name: str, opt: dict, *, nothing_if_missing=False, **extra) -> list:
        """rclone's entry dicts of directory *name* (asked for now, not when iterated)."""
        try:
            return self._job("operations/list", {"fs": self.fs, "remote": name, "opt": opt, **extra}).get("list") or []
        except RcFailed as failure:
            # no directory there, or an item where it or a parent of it would be
            if nothing_if_missing and failure.mentions(MISSING_TEXTS + NOT_A_DIRECTORY_TEXTS):
                return []
            if failure.status == 404:
                raise ObjectNotFound(f"directory {name!r} does not exist") from None
            raise self._error(failure, f"list {name!r}") from None

    def list(self, name) -> Iterator[ItemInfo]:
        self._open_daemon()
        check_backend_name(name, root_ok=True)
        entries = self._list_entries(name, {"noMimeType": True})
        entries.sort(key=lambda entry: entry["Name"])
        return (item_info(e["Name"], e) for e in entries if not is_hidden_from_list(e["Name"]))

    def _relative(self, name: str, entries) -> List[tuple]:
        """(path relative to directory *name*, entry) pairs sorted by path; a plain sort of the
        paths puts a directory where its name + "/" belongs ("a-b" < "a/x")."""
        skip = len(name) + 1 if name else 0  # rclone's Path is relative to the store's root
        return sorted(((e["Path"][skip:], e) for e in entries), key=by_path)

    def list_tree(self, name) -> Iterator[ItemInfo]:
        """Every item below directory *name*, by its path relative to *name*, in one recursive
        ``operations/list`` (rclone walks the directories itself, concurrently, or lists a
        bucket page by page): one rc call instead of one per directory."""
        self._open_daemon()
        check_backend_name(name, root_ok=True)
        entries = self._list_entries(name, {"noMimeType": True, "recurse": True, "filesOnly": True})
        items = self._relative(name, (e for e in entries if not is_hidden_from_list(e["Name"])))
        return (item_info(path, entry) for path, entry in items)

    def list_temp(self, name) -> Iterator[ItemInfo]:
        """Every ``.tmp`` item below directory *name*, at any depth, by its path relative to
        *name*, with its mtime: one recursive listing that rclone filters itself.  A missing
        directory (or an item of that name) has none."""
        self._open_daemon()
        check_backend_name(name, root_ok=True)
        opt = {"noMimeType": True, "recurse": True, "filesOnly": True}
        entries = self._list_entries(name, opt, nothing_if_missing=True, _filter=_TEMP_FILTER)
        items = self._relative(name, (e for e in entries if e["Name"].endswith(TMP_SUFFIX)))
        return (item_info(path, entry) for path, entry in items)

    # --- hashing ---
    def hash(self, name, algorithm="sha256"):
        self._open_daemon()
        check_backend_name(name)
        if algorithm not in self._server_hashes:
            return super().hash(name, algorithm)
        return self._server_side_hash(name, algorithm)

    def _server_side_hash(self, name: str, algorithm: str) -> str:
        # rclone 1.60 has no operations/hashsum; `rclone hashsum` run by the rcd hashes where the
        # data is (e.g. sha1sum on an sftp server) instead of downloading it, which takes time
        # for a big item: a job.
        params = {"command": "hashsum", "arg": [algorithm, self.fs + name], "returnType": "COMBINED_OUTPUT"}
        try:
            result = self._job("core/command", params)
        except RcFailed as failure:
            raise self._error(failure, f"hash {name!r}") from None
        output = str(result.get("result") or "")
        base = name.rpartition("/")[2]
        if not result.get("error"):
            for line in output.splitlines():
                digest, sep, listed = line.partition("  ")
                if sep and listed == base and re.fullmatch(r"[0-9a-f]+", digest):
                    return digest
        if self._stat(name) is None:
            raise ObjectNotFound(name)
        raise BackendError(f"{self.url}: hash {name!r}: rclone hashsum said: {self._scrub(output.strip()[-2000:])}")
