"""Probes of Linux filesystems and volume signatures: ext2/3/4, XFS, Btrfs, swap, LVM2,
LUKS and md RAID."""

from __future__ import annotations

from ...io import ByteSource, read_inside
from ...layout import field_slice, size_of, struct_format
from ...units import uuid_text
from .. import linux_layout as lx
from ..btrfs_layout import MAGIC as BTRFS_MAGIC
from ..btrfs_layout import SUPER_INFO_OFFSET as BTRFS_SUPER_AT
from ..btrfs_layout import Superblock as BtrfsSuperblock
from ..ext_layout import (
    EXT_MAGIC,
    SUPERBLOCK_OFFSET,
    Superblock,
    blkid_type,
)
from ..xfs_layout import XFS_SB_MAGIC_BYTES
from ..xfs_layout import Superblock as XfsSuperblock
from .base import FsInfo, cstr, label_text

# --- Linux filesystems --------------------------------------------------------------------

#: the superblock fields the probe reads, in layout order, all in its first 256 bytes
_EXT_FIELDS = ("s_log_block_size", "s_magic", "s_minor_rev_level", "s_rev_level",
               "s_block_group_nr", "s_feature_compat", "s_feature_incompat",
               "s_feature_ro_compat", "s_uuid", "s_volume_name")
_EXT_HEAD = struct_format(Superblock, *_EXT_FIELDS)
_EXT_READ = 256  # bytes of a superblock copy the probe reads (and needs inside the volume)


#: group 1's backup superblock per block size (8 x block size blocks a group; 1 KiB
#: blocks start at block 1): where ``e2fsck -b`` looks when the primary is gone
_EXT_GROUP1_BACKUPS = [(8193 * 1024, 1024), (16384 * 2048, 2048), (32768 * 4096, 4096)]


def _ext_head(src: ByteSource, off: int) -> dict | None:
    """The probe's superblock fields of the copy at ``off``, or None without the magic."""
    raw = read_inside(src, off, _EXT_READ)
    if raw is None:
        return None
    sb = dict(zip(_EXT_FIELDS, _EXT_HEAD.unpack_from(raw)))
    return sb if sb["s_magic"] == EXT_MAGIC else None


def probe_ext(src: ByteSource) -> FsInfo | None:
    """ext2/3/4 by the primary superblock, else by group 1's backup."""
    sb = _ext_head(src, SUPERBLOCK_OFFSET)
    if sb is None:
        for off, bs in _EXT_GROUP1_BACKUPS:
            sb = _ext_head(src, off)
            # the copy names its group (s_block_group_nr) and its block size
            if (sb is not None and sb["s_block_group_nr"] == 1
                    and 1024 << min(sb["s_log_block_size"], 16) == bs):
                break
        else:
            return None
    return FsInfo(
        blkid_type(sb["s_feature_compat"], sb["s_feature_incompat"], sb["s_feature_ro_compat"]),
        label_text(cstr(sb["s_volume_name"])),
        uuid_text(sb["s_uuid"]),
        f"{sb['s_rev_level']}.{sb['s_minor_rev_level']}",
    )


_XFS_HEAD = struct_format(XfsSuperblock, "sb_magicnum", "sb_uuid", "sb_fname")
_MAGIC_AT = field_slice(XfsSuperblock, "sb_magicnum")


def probe_xfs(src: ByteSource, head: bytes) -> FsInfo | None:
    """An XFS superblock at the volume start: label ``sb_fname``, UUID ``sb_uuid``."""
    if head[_MAGIC_AT] != XFS_SB_MAGIC_BYTES or len(head) < _XFS_HEAD.size:
        return None
    _, uuid, label = _XFS_HEAD.unpack_from(head)
    return FsInfo("xfs", label_text(cstr(label)), uuid_text(uuid))


_BTRFS_HEAD = struct_format(BtrfsSuperblock, "fsid", "magic", "label")


def probe_btrfs(src: ByteSource) -> FsInfo | None:
    """The primary Btrfs superblock (64 KiB in): label and filesystem UUID (``fsid``)."""
    sb = read_inside(src, BTRFS_SUPER_AT, _BTRFS_HEAD.size)
    if sb is None:
        return None
    fsid, magic, label = _BTRFS_HEAD.unpack_from(sb)
    if magic != BTRFS_MAGIC:
        return None
    return FsInfo("btrfs", label_text(cstr(label)), uuid_text(fsid))


_SWAP = struct_format(lx.SwapHeader)


def probe_swap(src: ByteSource) -> FsInfo | None:
    """A Linux swap signature at the end of the first page (4, 8, 16 or 64 KiB), then its
    version 1 header: label, UUID and version (0 for the old bitmap format)."""
    for page in lx.SWAP_PAGE_SIZES:
        magic = read_inside(src, page - len(lx.SWAP_MAGIC), len(lx.SWAP_MAGIC))
        if magic is None:
            return None
        if magic == lx.SWAP_MAGIC_V0:
            return FsInfo("swap", version="0")
        if magic == lx.SWAP_MAGIC:
            hdr = read_inside(src, lx.SWAP_HEADER_AT, _SWAP.size)
            if hdr is None:
                return None
            version, _, _, u, label = _SWAP.unpack_from(hdr)
            return FsInfo(
                "swap",
                label_text(cstr(label)),
                uuid_text(u) if any(u) else None,
                str(version),
            )
    return None


def probe_lvm2(src: ByteSource) -> FsInfo | None:
    """An LVM2 physical volume label in one of the first four sectors: the PV UUID."""
    # the label ("LABELONE") starts one of the first four 512-byte sectors; look for it
    # before importing the LVM2 reader, so that disks without LVM never load it
    head = read_inside(src, 0, min(src.size, 2048)) or b""
    if not any(head[o : o + 8] == b"LABELONE" for o in range(0, len(head), 512)):
        return None
    from ..lvm2 import (
        LABEL_TYPE,
        SECTOR,
        LabelHeader,
        PvHeader,
        find_label,
        format_uuid,
        label_crc,
    )

    found = find_label(src)
    if found is None:
        return None
    _, data = found
    label = LabelHeader.parse(data)
    if label_crc(data) != label.crc_xl:
        return None
    off = label.offset_xl
    uuid_size = size_of(PvHeader, "pv_uuid")
    if not LabelHeader.sizeof() <= off <= SECTOR - uuid_size:
        return None
    return FsInfo(
        "LVM2_member",
        uuid=format_uuid(data[off : off + uuid_size].decode("ascii", "replace")),
        version=LABEL_TYPE.decode("ascii"),
    )


_LUKS_MAGIC = field_slice(lx.LuksHeaderStart, "magic")
_LUKS_VERSION = field_slice(lx.LuksHeaderStart, "version")
_LUKS1_UUID = field_slice(lx.Luks1Header, "uuid")
_LUKS1_SIZE = lx.Luks1Header.sizeof()
_LUKS2_LABEL = field_slice(lx.Luks2BinaryHeader, "label")
_LUKS2_UUID = field_slice(lx.Luks2BinaryHeader, "uuid")


def probe_luks(src: ByteSource, head: bytes) -> FsInfo | None:
    """A LUKS1/LUKS2 header: its UUID (stored as text), LUKS2's label, the version."""
    if head[_LUKS_MAGIC] != lx.LUKS_MAGIC or len(head) < _LUKS1_SIZE:
        return None
    version = int.from_bytes(head[_LUKS_VERSION], "big")
    if version == 2:
        label, uuid = cstr(head[_LUKS2_LABEL]), head[_LUKS2_UUID]
    else:
        label, uuid = None, head[_LUKS1_UUID]
    return FsInfo("crypto_LUKS", label_text(label), cstr(uuid) or None, str(version))


_MD_HEAD = struct_format(lx.MdSuperblock1, "magic", "major_version", "set_uuid", "set_name")


def probe_md(src: ByteSource) -> FsInfo | None:
    """An md RAID 1.x superblock (format 1.2 at 4 KiB, 1.1 at 0): array name and UUID."""
    for off, version in lx.MD_SB_PLACES:
        sb = read_inside(src, off, _MD_HEAD.size)
        if sb is None:
            continue
        magic, major, set_uuid, name = _MD_HEAD.unpack_from(sb)
        if magic == lx.MD_SB_MAGIC and major == 1:
            u = set_uuid.hex()
            return FsInfo(
                "linux_raid_member",
                label_text(cstr(name)),
                ":".join(u[i : i + 8] for i in range(0, 32, 8)),
                version,
            )
    return None


