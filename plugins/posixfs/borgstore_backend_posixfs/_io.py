"""Reading and writing the contents of items through open descriptors."""

import os
import stat

from borgstore.backends._base import read_range_error

# A ranged read up to this size trusts the caller's size instead of asking for the file's size
# first: one system call less, and a wrong size costs at most this much memory for a moment.
TRUSTED_READ_SIZE = 1 << 20
# What a whole-item load reads before it knows the item's size (see read_item).
FIRST_CHUNK = 16 * 1024
HASH_CHUNK = 1 << 20


def read_item(fd: int, size, offset: int) -> bytes:
    """*size* bytes (None: up to the end) from *offset* (negative: from the end) of the file
    *fd*; fewer where the file ends first."""
    if size is None and offset >= 0:
        # Most items are small: read a first chunk without asking for the size (fstat costs as
        # much as the read).  A regular file reads short only at its end, and an item never
        # changes once renamed into place.
        data = os.pread(fd, FIRST_CHUNK, offset)
        if len(data) < FIRST_CHUNK:
            return data
        # a big item: read it whole in one piece; re-reading the first chunk is cheaper than
        # joining the pieces
        wanted = os.fstat(fd).st_size - offset
    elif offset < 0 or size > TRUSTED_READ_SIZE:
        length = os.fstat(fd).st_size
        if offset < 0:
            offset = max(length + offset, 0)
        wanted = length - offset
        if size is not None and size < wanted:
            wanted = size
        if wanted <= 0:
            return b""
    else:
        wanted = size
    return read_fully(fd, wanted, offset)


def read_range(fd: int, name: str, offset: int, size: int) -> bytes:
    """Exactly *size* bytes at *offset* (negative: from the end), else ReadRangeError."""
    start = offset
    if offset < 0 or size > TRUSTED_READ_SIZE:
        length = os.fstat(fd).st_size
        if offset < 0:
            start = max(length + offset, 0)
        if start + size > length:  # known short: no need to allocate *size* bytes
            raise read_range_error(name, offset, size, max(length - start, 0))
    data = read_fully(fd, size, start)
    if len(data) < size:
        raise read_range_error(name, offset, size, len(data))
    return data


def read_fully(fd: int, wanted: int, offset: int) -> bytes:
    """Up to *wanted* bytes at *offset*: fewer only at the end of the file."""
    data = os.pread(fd, wanted, offset)
    if len(data) < wanted:
        # a short read is the end of the file, unless the kernel split a huge read
        parts = [data]
        got = len(data)
        while got < wanted:
            more = os.pread(fd, wanted - got, offset + got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        data = b"".join(parts)
    return data


def hash_file(fd: int, hasher) -> None:
    """Feed the whole file *fd* to *hasher*, streamed through one buffer.  Positioned reads, as
    in load: a FIFO fails (ESPIPE) instead of reading as an empty item."""
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    offset = 0
    while True:
        n = os.preadv(fd, [buffer], offset)
        if not n:
            return
        hasher.update(view[:n])
        offset += n


def write_rest(fd: int, value, written: int) -> None:
    """Write what one ``os.write(fd, value)`` that wrote *written* left: after a partial write,
    or for a memoryview of a multi-byte format (whose len() counts elements, not bytes)."""
    view = memoryview(value).cast("B")
    while written < view.nbytes:
        written += os.write(fd, view[written:])


def unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def kind(name: str, dir_fd: int):
    """The file type bits (``stat.S_IFMT``) of *name* in *dir_fd*, not following a link; None if
    nothing is there.  Any other failure raises OSError: it says nothing about what is there."""
    try:
        return stat.S_IFMT(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return None
