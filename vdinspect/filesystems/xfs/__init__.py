"""XFS, v4 and v5 (read-only): see :mod:`.fs` for what is read and how.

Modules: :mod:`.structs` (every on-disk structure), :mod:`.superblock` (geometry, number
arithmetic, CRC check), :mod:`.inode` (inode core, forks, times), :mod:`.bmap` (extent
lists and B+trees, the file source), :mod:`.dirs` (directory entries), :mod:`.attrs`
(extended attributes), :mod:`.ag` (AG headers, inode and free-space btrees, orphans),
:mod:`.log` (is the log clean), :mod:`.replay` (replaying a dirty log in memory).
"""

from __future__ import annotations

from ...io import ByteSource
from .fs import XfsFileSystem


def open_filesystem(source: ByteSource, *, name: str | None = None,
                    strict: bool = True) -> XfsFileSystem:
    """Open the XFS filesystem on ``source`` (a partition, LV or whole raw image)."""
    return XfsFileSystem(source, name=name, strict=strict)


__all__ = ["XfsFileSystem", "open_filesystem"]
