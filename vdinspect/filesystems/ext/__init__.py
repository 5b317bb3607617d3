"""ext2, ext3 and ext4 (read-only): see :mod:`.fs` for what is read and how.

On-disk layouts, one module each: :mod:`.superblock` (superblock, features, checksum),
:mod:`.groups` (group descriptors, inode tables, bitmaps), :mod:`.inode` (inode records),
:mod:`.xattrs` (extended attributes), :mod:`.extents` (extent trees, block maps, file
content), :mod:`.dirs` (directory entries, htree, slack), :mod:`.journal` (JBD2).
The reader is :class:`~.fs.ExtFileSystem`, made of :mod:`.mount` (opening, journal
replay), :mod:`.listing` (directories to entries), :mod:`.recovery` (deleted files,
orphans, the orphan list), :mod:`.history` (older copies of blocks in the journal),
:mod:`.walk` (the ``files()`` fast path) and :mod:`.report` (info, structures, check).
"""

from __future__ import annotations

from ...io import ByteSource
from .fs import ExtFileSystem


def open_filesystem(
    source: ByteSource, *, name: str | None = None, strict: bool = True, replay_journal: bool = True
) -> ExtFileSystem:
    """Open the ext2/3/4 filesystem on ``source`` (a partition, LV or whole raw image).

    ``replay_journal``: when the volume needs journal recovery, read it with the
    committed journal transactions applied in memory (the default), or as it is on disk.
    """
    return ExtFileSystem(source, name=name, strict=strict, replay_journal=replay_journal)


__all__ = ["ExtFileSystem", "open_filesystem"]
