"""Opening backend names below the store's root, never following a symbolic link.

A backend name is checked (no ``..``, no absolute names), but the file system can still lead
out of the root: a symbolic link planted inside it (``data/00 -> /etc``) would make a plain
``open(root + "/data/00/passwd")`` read or write outside the store.  So every name is resolved
relative to the root's file descriptor, and no symbolic link is followed, anywhere in the name:

* On Linux 5.6 and later, ``openat2(2)`` with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` resolves
  the whole name in one system call and refuses any symbolic link (``ELOOP``) or escape
  (``EXDEV``), with no window for a race.  Python has no wrapper for it, so it is called
  through ctypes, which adds well under a microsecond to the open: a load stays one open.
* Elsewhere (older kernels, containers whose seccomp filter refuses openat2, other systems), a
  walk opens one component at a time relative to its parent's descriptor with ``O_NOFOLLOW``:
  as safe, at one open per component.

Operations that change a directory entry (rename, unlink, mkdir) have no "resolve beneath"
variant, so they act on a single name relative to a descriptor of its directory that was opened
this way (``renameat(dir_fd, ...)``): the directory cannot be swapped for a link between the
check and the change.
"""

import ctypes
import errno
import os
import platform
import stat
import sys
from typing import Callable, NoReturn, Optional

_O_PATH = getattr(os, "O_PATH", 0)
# opening a FIFO planted in the store must not block; O_NONBLOCK changes nothing for regular files
READ = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
# a directory to act in: O_PATH needs no read permission and opens nothing but the name
DIR = (_O_PATH or os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC
# a directory to list, or to fsync (an O_PATH descriptor cannot be fsynced)
DIR_READ = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_WALK_DIR = DIR_READ | os.O_NOFOLLOW

_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
# openat2 is 437 on every architecture with the unified system call table; elsewhere (mips, alpha,
# x32: a 64-bit machine running 32-bit pointers) the walk is used rather than a wrong number
_OPENAT2_MACHINES = {"x86_64", "amd64", "aarch64", "arm64", "riscv64", "ppc64le", "ppc64", "s390x", "loongarch64"}
_OPENAT2_MACHINES_32 = {"i386", "i486", "i586", "i686", "armv6l", "armv7l", "armv8l"}
_ENCODING, _ENCODE_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()

Opener = Callable[[str, int], int]


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load_openat2():
    """libc's syscall() to call openat2 with, or None where it cannot be called."""
    machine = platform.machine().lower()
    pointer_bits = ctypes.sizeof(ctypes.c_void_p) * 8
    known = machine in _OPENAT2_MACHINES if pointer_bits == 64 else machine in _OPENAT2_MACHINES_32
    if not sys.platform.startswith("linux") or not known:
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_long
    return function


_syscall = _load_openat2()
_NR_OPENAT2 = ctypes.c_long(437)
_HOW_SIZE = ctypes.c_size_t(ctypes.sizeof(_OpenHow))
# one read-only open_how per set of flags, shared by all threads: the kernel only reads it
_hows: dict = {}
# None until the first store is opened: does this kernel let us call openat2?
_openat2_works: Optional[bool] = None


def _how(flags: int):
    how = _hows.get(flags)
    if how is None:
        how = _hows[flags] = ctypes.byref(_OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS))
    return how


def _raise(number: Optional[int], path: str) -> NoReturn:
    # OSError(errno, ...) is instantiated as its subclass (FileNotFoundError, PermissionError, ...)
    assert number is not None  # the errno of an OSError from a system call (typed Optional)
    raise OSError(number, os.strerror(number), path)


def _openat2_opener(root_fd: int, prefix: str) -> Opener:
    root = ctypes.c_long(root_fd)
    syscall, number, size, get_errno = _syscall, _NR_OPENAT2, _HOW_SIZE, ctypes.get_errno
    hows = {flags: _how(flags) for flags in (READ, DIR, DIR_READ, _O_PATH | os.O_CLOEXEC)}

    def open_beneath(name: str, flags: int) -> int:
        how = hows.get(flags) or _how(flags)
        path = name.encode(_ENCODING, _ENCODE_ERRORS) if name else b"."
        while True:
            fd = syscall(number, root, path, how, size)
            if fd >= 0:
                return fd
            code = get_errno()
            # EAGAIN: the kernel could not rule out a race with a rename; try again
            if code not in (errno.EINTR, errno.EAGAIN):
                _raise(code, prefix + name)

    return open_beneath


def _walk_opener(root_fd: int, prefix: str) -> Opener:
    def open_beneath(name: str, flags: int) -> int:
        if not name:
            return os.open(".", flags, dir_fd=root_fd)
        *directories, last = name.split("/")
        fd = root_fd
        part = ""
        try:
            for part in directories:
                parent, fd = fd, os.open(part, _WALK_DIR, dir_fd=fd)
                if parent != root_fd:
                    os.close(parent)
            part = last
            return os.open(last, flags | os.O_NOFOLLOW, dir_fd=fd)
        except OSError as exc:
            _raise(_symlink_errno(exc.errno, part, fd), prefix + name)
        finally:
            if fd != root_fd:
                os.close(fd)

    return open_beneath


def _symlink_errno(code: Optional[int], part: str, dir_fd: int) -> Optional[int]:
    """ELOOP if *part* is a symbolic link (systems report O_NOFOLLOW on a link differently)."""
    if code in (errno.ELOOP, errno.ENOTDIR, getattr(errno, "EMLINK", errno.ELOOP), getattr(errno, "EFTYPE", 0)):
        try:
            if stat.S_ISLNK(os.stat(part, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                return errno.ELOOP
        except OSError:
            pass
    return code


def opener(root_fd: int, prefix: str, walk: bool = False) -> Opener:
    """``open_beneath(name, flags) -> fd`` for names below the directory *root_fd*; a failure
    raises OSError naming ``prefix + name``, ELOOP for a symbolic link anywhere in the name.
    *walk* forces the portable walk (for tests)."""
    global _openat2_works
    if walk or _syscall is None:
        return _walk_opener(root_fd, prefix)
    if _openat2_works is None:
        probe = _syscall(_NR_OPENAT2, ctypes.c_long(root_fd), b".", _how(DIR), _HOW_SIZE)
        _openat2_works = probe >= 0
        if probe >= 0:
            os.close(probe)
    return _openat2_opener(root_fd, prefix) if _openat2_works else _walk_opener(root_fd, prefix)


def child_opener(flags: int, prefix: str) -> Callable[[int, str, str], int]:
    """``open_child(parent_fd, component, directory) -> fd``: open the directory *component*
    inside the held directory *parent_fd* with *flags*, never following a link (ELOOP for one);
    errors name ``prefix + directory``."""
    flags = flags | os.O_NOFOLLOW | os.O_DIRECTORY

    def open_child(parent_fd: int, component: str, directory: str) -> int:
        try:
            return os.open(component, flags, dir_fd=parent_fd)
        except OSError as exc:
            _raise(_symlink_errno(exc.errno, component, parent_fd), prefix + directory)

    return open_child


def makedirs(
    root_fd: int, prefix: str, directory: str, created: Callable[[int], None], below: str = ""
) -> int:
    """Create *directory* and its missing parents below *root_fd*, never through a symbolic
    link; return a descriptor of it (DIR_READ).  ``created(parent_fd)`` is called after each
    directory made, with its parent's descriptor.  A missing root raises FileNotFoundError for the
    root; an item or a link in the way raises NotADirectoryError or ELOOP naming it.

    *root_fd* may be a held directory below the store's root, named *below* in messages."""
    fd = root_fd
    done = below
    try:
        for part in directory.split("/"):
            done = done + "/" + part if done else part
            try:
                os.mkdir(part, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as exc:
                _raise(exc.errno, prefix + done)
            else:
                created(fd)
            try:
                parent, fd = fd, os.open(part, _WALK_DIR, dir_fd=fd)
            except OSError as exc:
                _raise(_symlink_errno(exc.errno, part, fd), prefix + done)
            if parent != root_fd:
                os.close(parent)
        result, fd = fd, root_fd
        return result
    finally:
        if fd != root_fd:
            os.close(fd)


def root_is_gone(root_fd: int) -> bool:
    """True if the store's root directory was removed since it was opened."""
    try:
        return os.fstat(root_fd).st_nlink == 0
    except OSError:
        return True
