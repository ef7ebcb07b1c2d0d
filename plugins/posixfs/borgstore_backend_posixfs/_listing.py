"""Listing a directory, or every item below one, from a directory descriptor.

Both take over a descriptor opened below the store's root and close it when the listing ends
(or is dropped).  Entries are examined with ``fstatat(..., AT_SYMLINK_NOFOLLOW)`` and
subdirectories opened with ``O_NOFOLLOW``: a symbolic link is neither an item nor a directory of
the store, so it is left out, and a listing never leaves the root through one.  FIFOs, sockets
and devices are left out too: the store never makes them.  An entry removed while the listing
runs is skipped; any other failure raises (it is never taken for "nothing there").
"""

import errno
import os
import stat
from typing import Iterator

from borgstore.backends._base import ItemInfo
from borgstore.constants import TMP_SUFFIX

from ._errors import os_error

_SUBDIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_S_IFMT = 0o170000
_S_IFDIR = stat.S_IFDIR
_S_IFREG = stat.S_IFREG
# a subdirectory removed, or replaced by an item or a link, since its parent was read
_VANISHED = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
_tuple_new = tuple.__new__


def list_directory(fd: int, what: str, path: str) -> Iterator[ItemInfo]:
    """The entries of the directory *fd* (at *path*, for messages), sorted by name, ``.tmp``
    entries left out.

    The directory is read now; each entry is stat'ed when the caller gets to it, so a caller that
    stops early pays only for what it saw."""
    try:
        names = sorted(name for name in os.listdir(fd) if not name.endswith(TMP_SUFFIX))
    except BaseException as exc:
        os.close(fd)
        if isinstance(exc, OSError):
            raise os_error(exc, what, path) from None
        raise
    return _entries(fd, names, what, path)


def _entries(fd: int, names: list, what: str, path: str) -> Iterator[ItemInfo]:
    try:
        for name in names:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise os_error(exc, what, f"{path}/{name}") from None
            kind = st.st_mode & _S_IFMT
            if kind == _S_IFDIR:
                yield _tuple_new(ItemInfo, (name, True, 0, True, st.st_atime, st.st_mtime))
            elif kind == _S_IFREG:
                yield _tuple_new(ItemInfo, (name, True, st.st_size, False, st.st_atime, st.st_mtime))
    finally:
        os.close(fd)


def list_tree(fd: int, what: str, path: str, temps: bool = False) -> Iterator[ItemInfo]:
    """Every item below the directory *fd*, at any depth, named by its relative path, sorted by
    that path (a directory sorts as its name plus "/", as the paths below it do).  ``.tmp``
    entries are left out, a ``.tmp`` directory with everything below it, as the walk through
    list() that this replaces leaves them out.

    *temps*: the other way round, only the ``.tmp`` items, from every directory (``list_temp``)."""
    try:
        keys = _sorted_entries(fd, temps)
    except BaseException as exc:
        os.close(fd)
        if isinstance(exc, OSError):
            raise os_error(exc, what, path) from None
        raise
    return _tree(fd, keys, what, path, temps)


def _sorted_entries(fd: int, temps: bool = False) -> list:
    """The sort keys of the directory's entries but ``.tmp`` ones, sorted: an item's name, a
    directory's name plus "/".  The directory entry's type tells a directory without a stat
    (a link to one is no directory).  *temps*: every directory, and only the ``.tmp`` items."""
    keys = []
    with os.scandir(fd) as scan:
        if temps:
            for entry in scan:
                name = entry.name
                if entry.is_dir(follow_symlinks=False):
                    keys.append(name + "/")
                elif name.endswith(TMP_SUFFIX):
                    keys.append(name)
        else:
            for entry in scan:
                name = entry.name
                if not name.endswith(TMP_SUFFIX):
                    keys.append(name + "/" if entry.is_dir(follow_symlinks=False) else name)
    keys.sort()
    return keys


def _tree(fd: int, keys: list, what: str, path: str, temps: bool) -> Iterator[ItemInfo]:
    # depth first with a stack of open directories, not nested generators: an item then costs
    # one generator step, whatever its depth
    stack = [(fd, iter(keys), "")]
    stat_at = os.stat
    try:
        while stack:
            fd, pending, prefix = stack[-1]
            for key in pending:
                if key[-1] == "/":
                    below = _subdirectory(fd, key[:-1], what, f"{path}/{prefix}{key}", temps)
                    if below is not None:
                        stack.append((below[0], iter(below[1]), prefix + key))
                        break
                    continue
                try:
                    st = stat_at(key, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise os_error(exc, what, f"{path}/{prefix}{key}") from None
                if st.st_mode & _S_IFMT == _S_IFREG:
                    yield _tuple_new(ItemInfo, (prefix + key, True, st.st_size, False, st.st_atime, st.st_mtime))
            else:
                stack.pop()
                os.close(fd)
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _subdirectory(fd: int, name: str, what: str, path: str, temps: bool):
    """``(descriptor, sorted keys)`` of the subdirectory *name*, None if it vanished."""
    try:
        sub = os.open(name, _SUBDIR, dir_fd=fd)
    except OSError as exc:
        if exc.errno in _VANISHED:
            return None
        raise os_error(exc, what, path) from None
    try:
        return sub, _sorted_entries(sub, temps)
    except BaseException as exc:
        os.close(sub)
        if isinstance(exc, OSError):
            raise os_error(exc, what, path) from None
        raise
