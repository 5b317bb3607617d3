"""Filesystems behind one protocol (:class:`~.base.FileSystem`): FAT, exFAT, ext2/3/4, NTFS.

:func:`open_filesystem` picks the driver from the volume's magic (the same probes that fill
the ``filesystem`` column of ``Disk.partitions()``), never from a partition type byte.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import NotRecognized, UnsupportedFeature
from ..io import ByteSource
from .base import DIR, FILE, OTHER, SYMLINK, Entry, ExtractReport, FileReader, FileSystem

#: probe type -> driver module (relative to vdinspect.filesystems)
DRIVERS = {
    "fat12": "fat", "fat16": "fat", "fat32": "fat", "vfat": "fat",
    "exfat": "exfat",
    "ext2": "ext", "ext3": "ext", "ext4": "ext",
    "ntfs": "ntfs",
    "btrfs": "btrfs",
    "xfs": "xfs",
}


def driver_for(fstype: str) -> ModuleType:
    """The driver module for a filesystem type name (UnsupportedFeature if none)."""
    mod = DRIVERS.get(fstype.lower())
    if mod is None:
        from ..volumes.probes import encryption_error

        err = encryption_error(fstype, None)
        if err is not None:
            raise err
        raise UnsupportedFeature(f"no reader for {fstype} filesystems yet")
    try:
        return importlib.import_module(f"vdinspect.filesystems.{mod}")
    except ModuleNotFoundError as e:
        if e.name == f"vdinspect.filesystems.{mod}":
            raise UnsupportedFeature(f"no reader for {fstype} filesystems yet") from e
        raise


def has_driver(fstype: str | None) -> bool:
    """True when a reader exists for filesystems of type ``fstype`` (a probe's name)."""
    if not fstype or fstype.lower() not in DRIVERS:
        return False
    try:
        driver_for(fstype)
    except UnsupportedFeature:
        return False
    return True


def open_filesystem(source: ByteSource, fstype: str | None = None, *, strict: bool = True,
                    name: str | None = None) -> FileSystem:
    """Open the filesystem on ``source`` with the driver its magic (or ``fstype``) names.

    Each driver module defines ``open_filesystem(source, *, name=None, strict=True)``.
    """
    if fstype is None:
        from ..volumes.probes import probe

        found = probe(source)
        if found is None:
            from .fat import find_backup_boot

            if find_backup_boot(source) is not None:  # FAT32 with a damaged boot sector
                return driver_for("fat32").open_filesystem(source, name=name, strict=strict)
            raise NotRecognized("no filesystem recognised", path=name or source.name,
                                structure="boot sector", offset=0)
        fstype = found.type
    from ..volumes.probes import encryption_error

    err = encryption_error(fstype, name or source.name)
    if err is not None:  # ciphertext: named, never read as a filesystem
        raise err
    return driver_for(fstype).open_filesystem(source, name=name, strict=strict)


__all__ = ["FileSystem", "Entry", "FileReader", "ExtractReport", "open_filesystem",
           "driver_for", "has_driver", "FILE", "DIR", "SYMLINK", "OTHER"]
