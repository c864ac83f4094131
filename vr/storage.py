"""Sector-addressed durable storage: the one data file a replica keeps (``DIR/replica.vr``).

The replica's journal, superblock and snapshots all sit in one file reached through
this small interface, so the same replica code runs on a real file (:class:`FileStorage`:
``os.pread``/``os.pwrite``/``os.fdatasync``) and on the simulator's seeded in-memory disk
(``vr.testing.storage.SimStorage``). Offsets and sizes are multiples of
``SECTOR_SIZE``: a sector is the unit a disk writes atomically (or tears), and every
layout decision above assumes it.

An I/O error (EIO from the kernel, a short read) raises :class:`StorageIOError`; the
callers treat it like corruption of the bytes they asked for (mark faulty, repair from
peers), never like a reason to crash (docs/vr.md bug #17). A failed ``sync`` is different:
after an fsync error nothing written since the last good sync can be trusted, so it
propagates and the node restarts from what is on disk.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from typing import Protocol

from vr.message import SECTOR_SIZE

# A bad descriptor or argument is our bug, not the device's: let it crash the node loudly.
_PROGRAMMING_ERRNOS = frozenset({errno.EBADF, errno.EINVAL, errno.EFAULT})


class StorageIOError(OSError):
    """A read or write that the device refused (EIO) or cut short."""


class Storage(Protocol):
    """What the journal, superblock and snapshot store need from a disk."""

    @property
    def size_bytes(self) -> int: ...

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset``; raises StorageIOError on EIO."""
        ...

    def write(self, offset: int, data: bytes) -> None:
        """Queue ``data`` at ``offset``; durable only after :meth:`sync`."""
        ...

    def sync(self) -> None:
        """Make every earlier write durable (fsync)."""
        ...


def check_aligned(offset: int, size: int, size_bytes: int) -> None:
    """Assert a sector-aligned range inside the device: a violation is a caller bug, not bad data."""
    assert offset >= 0, offset
    assert size > 0, size
    assert offset % SECTOR_SIZE == 0, f"offset {offset} is not sector-aligned"
    assert size % SECTOR_SIZE == 0, f"size {size} is not a whole number of sectors"
    assert offset + size <= size_bytes, f"range {offset}+{size} beyond the device's {size_bytes} bytes"


def align_up(value: int, alignment: int = SECTOR_SIZE) -> int:
    """The smallest multiple of ``alignment`` that is >= value."""
    return -(-value // alignment) * alignment


class FileStorage:
    """A real data file of a fixed size: pread/pwrite/fdatasync, nothing cached in Python.

    ``create=True`` makes a new file (refusing one that already exists: formatting over
    a replica's data would make it forget what it acked) and fsyncs the file and its
    directory so the file's existence is itself durable (docs/vr.md bug #8). Without
    ``create`` a missing file is refused with FileNotFoundError: a replica that lost its
    data must not come back blank (docs/vr.md bug #10). The file is flock'ed while open, so a
    second process opening it gets an OSError (EWOULDBLOCK) instead of sharing it.
    """

    def __init__(self, path: str | os.PathLike[str], *, size_bytes: int, create: bool = False) -> None:
        assert size_bytes > 0 and size_bytes % SECTOR_SIZE == 0, size_bytes
        self.path = os.fspath(path)
        self._size_bytes = size_bytes
        # A node writes from two threads (journal flushes on its I/O thread, the superblock and
        # snapshots on the loop); pwrite/pread/fdatasync are safe so, the counters need the lock.
        self._counters_lock = threading.Lock()
        self.sync_count = 0
        self.write_count = 0
        self.write_bytes = 0
        self.read_count = 0
        if create:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                _lock(self._fd, self.path)
                _advise_small_pages(self._fd)
                os.ftruncate(self._fd, size_bytes)
                os.fsync(self._fd)
                _fsync_directory(os.path.dirname(os.path.abspath(self.path)))
            except BaseException:
                os.close(self._fd)
                raise
        else:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            try:
                _lock(self._fd, self.path)
            except BaseException:
                os.close(self._fd)
                raise
            actual = os.fstat(self._fd).st_size
            if actual != size_bytes:
                os.close(self._fd)
                raise ValueError(
                    f"data file {self.path} is {actual} bytes but this layout needs {size_bytes}: "
                    "it was formatted with a different layout (or truncated); refusing to open it"
                )
        _advise_small_pages(self._fd)

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    def read(self, offset: int, size: int) -> bytes:
        check_aligned(offset, size, self._size_bytes)
        with self._counters_lock:
            self.read_count += 1
        try:
            data = os.pread(self._fd, size, offset)
        except OSError as error:
            if error.errno in _PROGRAMMING_ERRNOS:
                raise
            raise StorageIOError(
                error.errno or errno.EIO, f"read {size}@{offset}: {error.strerror}"
            ) from error
        if len(data) != size:
            raise StorageIOError(errno.EIO, f"short read {len(data)}/{size} bytes at {offset}")
        return data

    def write(self, offset: int, data: bytes) -> None:
        check_aligned(offset, len(data), self._size_bytes)
        with self._counters_lock:
            self.write_count += 1
            self.write_bytes += len(data)
        view = memoryview(data)
        written = 0
        try:
            while written < len(data):
                written += os.pwrite(self._fd, view[written:], offset + written)
        except OSError as error:
            if error.errno in _PROGRAMMING_ERRNOS:
                raise
            raise StorageIOError(
                error.errno or errno.EIO, f"write {len(data)}@{offset}: {error.strerror}"
            ) from error

    def sync(self) -> None:
        """fdatasync: the data and whatever metadata is needed to read it back (block allocation
        of a sparse file included), without the mtime update fsync adds (about half the cost here)."""
        with self._counters_lock:
            self.sync_count += 1
        os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileStorage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _advise_small_pages(fd: int) -> None:
    """Keep the page cache at the granularity we write: no readahead, and drop what is cached.

    With readahead (or after big reads and writes, e.g. a format) the kernel may cache the file
    in large folios, and a later 4 KiB pwrite then dirties, and fdatasync writes back, the whole
    folio: measured on a 6.18 kernel, ~1 MiB written per 8 KiB journal write after reading the file. FADV_RANDOM
    stops readahead for this open file; DONTNEED drops the (clean) pages an earlier open left.
    """
    if not hasattr(os, "posix_fadvise"):  # not Linux (macOS): only a performance hint, skip it
        return
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def _lock(fd: int, path: str) -> None:
    """Take an exclusive advisory lock for the life of the descriptor (released by the kernel when
    the process dies, even by SIGKILL): two replicas writing one data file would corrupt it
    silently, and a restart racing a node that has not exited yet is an easy way to get there."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise OSError(
            errno.EWOULDBLOCK, "locked by another process (is the previous node still running?)", path
        ) from None


def _fsync_directory(path: str) -> None:
    """fsync a directory so a newly created entry in it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["FileStorage", "Storage", "StorageIOError", "align_up", "check_aligned"]
