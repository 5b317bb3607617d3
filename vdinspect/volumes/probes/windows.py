"""Probes of Windows filesystems: FAT12/16/32, exFAT and NTFS (label, serial, version),
reading the boot sector and the root directory or $Volume as libblkid does."""

from __future__ import annotations

from collections.abc import Iterator

from ...io import ByteSource, read_inside
from ...layout import field_slice, offset_of, struct_format
from ...units import is_pow2
from ..exfat_layout import BootSector as ExfatBootSector
from ..exfat_layout import (
    EntryType,
    VolumeLabelEntry,
    boot_sector_problem,
    volume_label_text,
)
from ..fat_layout import (
    ATTR_LONG_NAME,
    ATTR_LONG_NAME_MASK,
    DELETED,
    DIRENT,
    FAT12_MAX_CLUSTERS,
    FAT16_MAX_CLUSTERS,
    FAT32_ENTRY_MASK,
    FAT32_MAX_CLUSTERS,
    NO_NAME,
    Attribute,
    BootSector,
    Fat16Ext,
    Fat32Ext,
    FatGeometry,
    check_bpb,
)
from ..mbr import BOOT_SIGNATURE, BOOT_SIGNATURE_AT
from ..multisector import RecordError, apply_fixup
from ..ntfs_layout import (
    FILE_RECORD_MAGIC,
    NTFS_OEM,
    cluster_sectors,
    record_size,
    volume_name,
)
from ..ntfs_layout import BootSector as NtfsBootSector
from .base import FsInfo, label_text


def _cluster_chain(src: ByteSource, first: int, end: int, *, heap: int, cluster_size: int,
                   fat_at: int, mask: int) -> Iterator[bytes]:
    """The clusters of a FAT or exFAT chain from ``first`` (numbers in [2, ``end``)), read
    one by one until the chain ends, a read fails, or 100 clusters are done."""
    nxt = first
    for _ in range(100):
        if nxt < 2 or nxt >= end:
            return
        raw = read_inside(src, heap + (nxt - 2) * cluster_size, cluster_size)
        if raw is None:
            return
        yield raw
        fe = read_inside(src, fat_at + nxt * 4, 4)
        if fe is None:
            return
        nxt = int.from_bytes(fe, "little") & mask


# --- FAT ------------------------------------------------------------------------------

# the boot sector's informational type string, where libblkid looks for it
_FAT32_TYPE_AT = BootSector.sizeof() + offset_of(Fat32Ext, "BS_FilSysType")
_FAT16_TYPE_AT = BootSector.sizeof() + offset_of(Fat16Ext, "BS_FilSysType")
_FAT_MAGICS = (
    (_FAT32_TYPE_AT, b"MSWIN"),
    (_FAT32_TYPE_AT, b"FAT32   "),
    (_FAT16_TYPE_AT, b"MSDOS"),
    (_FAT16_TYPE_AT, b"FAT16   "),
    (_FAT16_TYPE_AT, b"FAT12   "),
    (_FAT16_TYPE_AT, b"FAT     "),
)
_FAT_LIMITS = {"fat12": FAT12_MAX_CLUSTERS, "fat16": FAT16_MAX_CLUSTERS,
               "fat32": FAT32_MAX_CLUSTERS}


def fat_geometry(bs: bytes) -> FatGeometry | None:
    """The BPB's geometry if the sector looks like a FAT boot sector as libblkid sees it.

    The BPB itself is checked (and the FAT type decided) by :func:`check_bpb`, the same
    function the FAT driver uses; the magic strings, the media byte and the cluster
    limit are libblkid's extra tests for telling a FAT boot sector from other data.
    """
    if len(bs) < 512:
        return None
    strong = any(bs[o : o + len(m)] == m for o, m in _FAT_MAGICS)
    if not strong:
        if bs[BOOT_SIGNATURE_AT] != BOOT_SIGNATURE:
            return None
        if bs[_FAT16_TYPE_AT : _FAT16_TYPE_AT + 8] in (b"JFS     ", b"HPFS    "):
            return None
    g = check_bpb(bs)
    if isinstance(g, str):
        return None
    media = g.bpb.BPB_Media
    if not (media >= 0xF8 or media == 0xF0):
        return None
    if g.clusters < 0 or g.clusters > _FAT_LIMITS[g.fstype]:
        return None
    return g


def _fat_dir_label(raw: bytes) -> bytes | None:
    """The volume-label entry of a FAT directory block, as libblkid finds it."""
    for name, attr, _, _, _, _, _, hi, _, _, lo, _ in DIRENT.iter_unpack(
        raw[: len(raw) // DIRENT.size * DIRENT.size]
    ):
        if name[0] == 0:
            break
        if name[0] == DELETED or hi or lo or attr & ATTR_LONG_NAME_MASK == ATTR_LONG_NAME:
            continue
        if attr & (Attribute.VOLUME_ID | Attribute.DIRECTORY) == Attribute.VOLUME_ID:
            return name
    return None


def probe_fat(src: ByteSource, bs: bytes) -> FsInfo | None:
    """A FAT12/16/32 volume: the label from the root directory's volume-label entry (else
    the boot sector's), the serial as blkid prints it, the FAT type."""
    g = fat_geometry(bs)
    if g is None:
        return None
    ssize = g.sector_size
    b = g.bpb
    label = None
    if g.fstype != "fat32":
        root = (b.BPB_RsvdSecCnt + b.BPB_NumFATs * g.fat_sectors) * ssize
        raw = read_inside(src, root, min(b.BPB_RootEntCnt, 65536) * 32)
        if raw:
            label = _fat_dir_label(raw)
    else:
        data_start = b.BPB_RsvdSecCnt + b.BPB_NumFATs * g.fat_sectors
        for raw in _cluster_chain(src, g.ext.BPB_RootClus, g.fat_sectors * ssize // 4,
                                  heap=data_start * ssize,
                                  cluster_size=b.BPB_SecPerClus * ssize,
                                  fat_at=b.BPB_RsvdSecCnt * ssize, mask=FAT32_ENTRY_MASK):
            label = _fat_dir_label(raw)
            if label is not None:
                break
    if label is None or label == NO_NAME:
        label = g.ext.BS_VolLab
    serial = g.ext.BS_VolID
    text = None if label == NO_NAME else label_text(label.decode("cp850", "replace"))
    return FsInfo(g.fstype, text, f"{serial >> 16:04X}-{serial & 0xFFFF:04X}", g.fstype.upper())


# --- exFAT, NTFS, ReFS, BitLocker -------------------------------------------------------------


_EXFAT_ENTRY = VolumeLabelEntry.sizeof()  # exFAT directory entries are 32 bytes


def probe_exfat(src: ByteSource, bs: bytes) -> FsInfo | None:
    """An exFAT volume: the label entry of the root directory, serial and revision."""
    if boot_sector_problem(bs) is not None:
        return None
    b = ExfatBootSector.parse(bs)
    ssize = 1 << b.BytesPerSectorShift
    label = None
    for raw in _cluster_chain(src, b.FirstClusterOfRootDirectory, b.ClusterCount + 2,
                              heap=b.ClusterHeapOffset * ssize,
                              cluster_size=ssize << b.SectorsPerClusterShift,
                              fat_at=b.FatOffset * ssize, mask=0xFFFFFFFF):
        done = False
        for i in range(0, len(raw), _EXFAT_ENTRY):
            t = raw[i]
            if t == EntryType.END_OF_DIRECTORY:
                done = True
                break
            if t == EntryType.VOLUME_LABEL:
                label = volume_label_text(raw[i : i + _EXFAT_ENTRY])
                done = True
                break
        if done:
            break
    serial, rev = b.VolumeSerialNumber, b.FileSystemRevision
    return FsInfo(
        "exfat",
        label_text(label),
        f"{serial >> 16:04X}-{serial & 0xFFFF:04X}",
        f"{rev >> 8}.{rev & 0xFF}",
    )


NTFS_OEM_AT = field_slice(NtfsBootSector, "oem_id")
_NTFS_BPB = struct_format(NtfsBootSector, "bytes_per_sector", "sectors_per_cluster", "mft_lcn",
                          "clusters_per_mft_record", "volume_serial_number")
_NTFS_VOLUME_RECORD = 3  # $Volume's MFT record number


def probe_ntfs(src: ByteSource, bs: bytes) -> FsInfo | None:
    """An NTFS volume: the serial from the boot sector, the label from $Volume."""
    if bs[NTFS_OEM_AT] != NTFS_OEM:
        return None
    ssize, spc, mft_lcn, cpr, serial = _NTFS_BPB.unpack_from(bs)
    if not is_pow2(ssize) or not 256 <= ssize <= 4096:
        return None
    spc = cluster_sectors(spc)
    if not is_pow2(spc):
        return None
    csize = ssize * spc
    rsize = record_size(cpr, csize)
    label = None
    if 256 <= rsize <= 65536:
        rec = read_inside(src, mft_lcn * csize + _NTFS_VOLUME_RECORD * rsize, rsize)
        if rec is not None:
            rec = bytearray(rec)
            try:
                apply_fixup(rec, FILE_RECORD_MAGIC)
                label = volume_name(rec)
            except RecordError:
                pass
    return FsInfo("ntfs", label_text(label), f"{serial:016X}")


