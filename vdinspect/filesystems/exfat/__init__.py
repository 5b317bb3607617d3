"""exFAT (read-only): see :mod:`.filesystem` for what is read and how.

Modules: :mod:`.structs` (boot sector, directory entries, codes and flags), :mod:`.boot`
(boot region and checksum, FATs), :mod:`.entries` (entry sets, checksums, names, times,
listing), :mod:`.bitmap` (allocation bitmap), :mod:`.upcase` (up-case table),
:mod:`.report` (info, structures, check). Cluster chains come from ``fat.clusters``.
"""

from __future__ import annotations

from .boot import boot_checksum
from .entries import EntrySet, ExfatKey, exfat_time, name_hash, set_checksum
from .filesystem import ExfatFileSystem, open_filesystem
from .structs import (
    AllocationBitmapEntry,
    BootSector,
    EntryType,
    FileAttributes,
    FileEntry,
    FileNameEntry,
    SecondaryFlags,
    StreamExtensionEntry,
    UpcaseTableEntry,
    VolumeFlags,
    VolumeGuidEntry,
    VolumeLabelEntry,
)
from .upcase import decompress_upcase, table_checksum

__all__ = [
    "AllocationBitmapEntry", "BootSector", "EntrySet", "EntryType", "ExfatFileSystem",
    "ExfatKey", "FileAttributes", "FileEntry", "FileNameEntry", "SecondaryFlags",
    "StreamExtensionEntry", "UpcaseTableEntry", "VolumeFlags", "VolumeGuidEntry",
    "VolumeLabelEntry", "boot_checksum", "decompress_upcase", "exfat_time", "name_hash",
    "open_filesystem", "set_checksum", "table_checksum",
]
