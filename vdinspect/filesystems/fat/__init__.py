"""FAT12, FAT16 and FAT32 (read-only): see :mod:`.filesystem` for what is read and how.

Modules: :mod:`.structs` (boot sector, FSInfo, directory and long-name entries, codes and
flags), :mod:`.clusters` (the FAT, chains and cluster runs; exFAT uses it too),
:mod:`.boot` (opening: boot sector or backup, FAT copies, FSInfo), :mod:`.directory`
(listing), :mod:`.recovery` (deleted files), :mod:`.report` (info, structures, check),
:mod:`.times` (DOS date and time).
"""

from __future__ import annotations

from .boot import find_backup_boot
from .clusters import ClusterRuns, FatTable, cluster_source, readable_runs, take_free
from .directory import FatDirent, FatKey, lfn_checksum
from .filesystem import FatFileSystem, open_filesystem
from .recovery import lfn_first_byte
from .structs import (
    ATTR_ARCHIVE,
    ATTR_DIRECTORY,
    ATTR_HIDDEN,
    ATTR_LONG_NAME,
    ATTR_READ_ONLY,
    ATTR_SYSTEM,
    ATTR_VOLUME_ID,
    DELETED,
    FAT12_MAX_CLUSTERS,
    FAT16_MAX_CLUSTERS,
    Attribute,
    BootSector,
    DirEntry,
    Fat16Ext,
    Fat32Ext,
    FSInfo,
    LfnEntry,
    NtCase,
    attr_text,
)
from .times import dos_datetime

__all__ = [
    "ATTR_ARCHIVE", "ATTR_DIRECTORY", "ATTR_HIDDEN", "ATTR_LONG_NAME", "ATTR_READ_ONLY",
    "ATTR_SYSTEM", "ATTR_VOLUME_ID", "Attribute", "BootSector", "ClusterRuns", "DELETED",
    "DirEntry", "FAT12_MAX_CLUSTERS", "FAT16_MAX_CLUSTERS", "FSInfo", "Fat16Ext", "Fat32Ext",
    "FatDirent", "FatFileSystem", "FatKey", "FatTable", "LfnEntry", "NtCase", "attr_text",
    "cluster_source", "dos_datetime", "find_backup_boot", "lfn_checksum", "lfn_first_byte",
    "open_filesystem", "readable_runs", "take_free",
]
