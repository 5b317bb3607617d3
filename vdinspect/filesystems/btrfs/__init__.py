"""Btrfs (read-only): see :mod:`.fs` for what is read and how.

Modules: :mod:`.structs` (on-disk structures), :mod:`.volume` (superblocks, devices, chunk
map, tree blocks), :mod:`.chunks` (stripe profiles), :mod:`.tree` (B-tree search),
:mod:`.subvols` (subvolumes), :mod:`.content` (file bytes), :mod:`.compress` and
:mod:`.lzo` (zlib, LZO, zstd), :mod:`.csum` (checksums).
"""

from __future__ import annotations

from .fs import BtrfsFileSystem, open_filesystem

__all__ = ["BtrfsFileSystem", "open_filesystem"]
