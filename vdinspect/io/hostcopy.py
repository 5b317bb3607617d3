"""Copies host file to host file in the kernel: ``copy_range`` (``os.copy_file_range``),
``send_range`` (``os.sendfile``, across filesystems) and :class:`HostCopier`, which tries
them in turn and remembers per host file what the kernel refused. Conversion and
extraction both copy through it."""

from __future__ import annotations

import errno
import os

from .sources import FileSource


def copy_range(src: int, src_off: int, dst: int, dst_off: int, length: int) -> bool:
    """Copy ``length`` bytes of the descriptor ``src`` at ``src_off`` to ``dst`` at
    ``dst_off`` in the kernel (``os.copy_file_range``: no copy through this process).
    False when the kernel refuses (another filesystem: EXDEV; no support: ENOSYS,
    EOPNOTSUPP, EINVAL; a source file shorter than said): the caller then writes the whole
    range itself (the same bytes over any that moved) and need not ask again for these
    two files."""
    if not hasattr(os, "copy_file_range"):
        return False
    while length:
        try:
            got = os.copy_file_range(src, dst, length, src_off, dst_off)
        except OSError as e:
            if e.errno in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL,
                           errno.EBADF, errno.EPERM):
                return False
            raise
        if got <= 0:
            return False
        src_off += got
        dst_off += got
        length -= got
    return True


def send_range(src: int, src_off: int, dst: int, dst_off: int, length: int) -> bool:
    """Like :func:`copy_range` with ``os.sendfile`` (the kernel copies between page caches
    where ``copy_file_range`` refuses: another filesystem); moves ``dst``'s file position.
    False when the kernel refuses, or the source ends early: the caller writes the whole
    range itself."""
    if not hasattr(os, "sendfile"):
        return False
    os.lseek(dst, dst_off, os.SEEK_SET)
    while length:
        try:
            got = os.sendfile(dst, src, src_off, length)
        except OSError as e:
            if e.errno in (errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF,
                           errno.ESPIPE):
                return False
            raise
        if got <= 0:
            return False
        src_off += got
        length -= got
    return True


class HostCopier:
    """Copies stretches of host files into one output descriptor in the kernel where it can:
    ``copy_file_range``, where that refuses (another filesystem) ``sendfile``; what a host
    file refused is remembered, so it is asked once per host file, not once per piece.
    ``fd`` may be set to another output file on the same filesystem between copies (an
    extraction keeps one copier for all the files it writes)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.how: dict[FileSource, str] = {}  # host file -> "copy", "send" or "read"

    def copy(self, src: FileSource, a: int, b: int, at: int) -> bool:
        """Copy host bytes ``[a, b)`` of ``src`` to ``at`` of the output; False when the
        kernel refuses both ways (now or before, for this host file): the caller writes the
        whole range itself."""
        how = self.how.get(src, "copy")
        if how == "copy":
            if copy_range(src.fd, a, self.fd, at, b - a):
                return True
            how = self.how[src] = "send"
        if how == "send":
            if send_range(src.fd, a, self.fd, at, b - a):
                return True
            self.how[src] = "read"
        return False


__all__ = ["HostCopier", "copy_range", "send_range"]
