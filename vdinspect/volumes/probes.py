"""Filesystem magic probes: what a volume holds, with its label and UUID where cheap.

Each probe reads a few small blocks at fixed places and answers like ``blkid -p`` does
(TYPE, LABEL, UUID formatted as blkid prints them), with one difference: FAT volumes are
named ``fat12``/``fat16``/``fat32`` (blkid's TYPE=vfat plus its VERSION), decided from the
BPB by counting clusters as the FAT specification says (``fat_layout.check_bpb``, shared
with the FAT driver: at exactly 4084 clusters that is FAT12, where blkid says FAT16).
Places and fields come from each format's specification, checked against util-linux's
expected outputs (tests/ts/blkid) and real mkfs tools."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from construct import ConstructError

from ..errors import EncryptedImage, VDInspectError
from ..io import ByteSource, read_inside
from ..layout import field_slice, offset_of, size_of, struct_format
from ..units import is_pow2, uuid_text
from . import hfs_layout as hfs
from . import linux_layout as lx
from . import optical_layout as opt
from .apfs_layout import NX_MAGIC, NxSuperblock
from .btrfs_layout import MAGIC as BTRFS_MAGIC
from .btrfs_layout import SUPER_INFO_OFFSET as BTRFS_SUPER_AT
from .btrfs_layout import Superblock as BtrfsSuperblock
from .exfat_layout import (
    EXFAT_NAME,
    FILE_SYSTEM_NAME,
    EntryType,
    VolumeLabelEntry,
    boot_sector_problem,
    volume_label_text,
)
from .exfat_layout import BootSector as ExfatBootSector
from .ext_layout import (
    EXT_MAGIC,
    SUPERBLOCK_OFFSET,
    Superblock,
    blkid_type,
)
from .fat_layout import (
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
from .gpt import SIGNATURE as GPT_SIGNATURE
from .gpt import GptHeader
from .mbr import BOOT_SIGNATURE, MasterBootRecord
from .multisector import RecordError, apply_fixup
from .ntfs_layout import (
    BITLOCKER_OEM,
    NTFS_OEM,
    REFS_OEM,
    cluster_sectors,
    record_size,
    volume_name,
)
from .ntfs_layout import BootSector as NtfsBootSector
from .xfs_layout import XFS_SB_MAGIC_BYTES
from .xfs_layout import Superblock as XfsSuperblock


@dataclass
class FsInfo:
    """What a probe found: blkid's TYPE (fat12/16/32 for vfat), LABEL, UUID, VERSION."""

    type: str
    label: str | None = None
    uuid: str | None = None
    version: str | None = None


def _cstr(b: bytes, encoding: str = "utf-8") -> str:
    return b.split(b"\0", 1)[0].decode(encoding, "replace")


def _label(s: str | None) -> str | None:
    """blkid drops trailing blanks; an empty label is no label."""
    if s is None:
        return None
    s = s.rstrip(" \0")
    return s or None


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


def _fat_geometry(bs: bytes) -> FatGeometry | None:
    """The BPB's geometry if the sector looks like a FAT boot sector as libblkid sees it.

    The BPB itself is checked (and the FAT type decided) by :func:`check_bpb`, the same
    function the FAT driver uses; the magic strings, the media byte and the cluster
    limit are libblkid's extra tests for telling a FAT boot sector from other data.
    """
    if len(bs) < 512:
        return None
    strong = any(bs[o : o + len(m)] == m for o, m in _FAT_MAGICS)
    if not strong:
        if bs[510:512] != b"\x55\xaa":
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
    g = _fat_geometry(bs)
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
    text = None if label == NO_NAME else _label(label.decode("cp850", "replace"))
    return FsInfo(g.fstype, text, f"{serial >> 16:04X}-{serial & 0xFFFF:04X}", g.fstype.upper())


# --- exFAT, NTFS, ReFS, BitLocker -------------------------------------------------------------


_EXFAT_ENTRY = VolumeLabelEntry.sizeof()  # exFAT directory entries are 32 bytes


def probe_exfat(src: ByteSource, bs: bytes) -> FsInfo | None:
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
        _label(label),
        f"{serial >> 16:04X}-{serial & 0xFFFF:04X}",
        f"{rev >> 8}.{rev & 0xFF}",
    )


_NTFS_OEM_AT = field_slice(NtfsBootSector, "oem_id")
_NTFS_BPB = struct_format(NtfsBootSector, "bytes_per_sector", "sectors_per_cluster", "mft_lcn",
                          "clusters_per_mft_record", "volume_serial_number")
_NTFS_VOLUME_RECORD = 3  # $Volume's MFT record number


def probe_ntfs(src: ByteSource, bs: bytes) -> FsInfo | None:
    if bs[_NTFS_OEM_AT] != NTFS_OEM:
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
                apply_fixup(rec, b"FILE")
                label = volume_name(rec)
            except RecordError:
                pass
    return FsInfo("ntfs", _label(label), f"{serial:016X}")


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
        _label(_cstr(sb["s_volume_name"])),
        uuid_text(sb["s_uuid"]),
        f"{sb['s_rev_level']}.{sb['s_minor_rev_level']}",
    )


_XFS_HEAD = struct_format(XfsSuperblock, "sb_magicnum", "sb_uuid", "sb_fname")
_MAGIC_AT = field_slice(XfsSuperblock, "sb_magicnum")


def probe_xfs(src: ByteSource, head: bytes) -> FsInfo | None:
    if head[_MAGIC_AT] != XFS_SB_MAGIC_BYTES or len(head) < _XFS_HEAD.size:
        return None
    _, uuid, label = _XFS_HEAD.unpack_from(head)
    return FsInfo("xfs", _label(_cstr(label)), uuid_text(uuid))


_BTRFS_HEAD = struct_format(BtrfsSuperblock, "fsid", "magic", "label")


def probe_btrfs(src: ByteSource) -> FsInfo | None:
    sb = read_inside(src, BTRFS_SUPER_AT, _BTRFS_HEAD.size)
    if sb is None:
        return None
    fsid, magic, label = _BTRFS_HEAD.unpack_from(sb)
    if magic != BTRFS_MAGIC:
        return None
    return FsInfo("btrfs", _label(_cstr(label)), uuid_text(fsid))


_SWAP = struct_format(lx.SwapHeader)


def probe_swap(src: ByteSource) -> FsInfo | None:
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
                _label(_cstr(label)),
                uuid_text(u) if any(u) else None,
                str(version),
            )
    return None


def probe_lvm2(src: ByteSource) -> FsInfo | None:
    # the label ("LABELONE") starts one of the first four 512-byte sectors; look for it
    # before importing the LVM2 reader, so that disks without LVM never load it
    head = read_inside(src, 0, min(src.size, 2048)) or b""
    if not any(head[o : o + 8] == b"LABELONE" for o in range(0, len(head), 512)):
        return None
    from .lvm2 import LABEL_TYPE, SECTOR, LabelHeader, PvHeader, find_label, format_uuid, label_crc

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


_LUKS_MAGIC = field_slice(lx.Luks1Header, "magic")  # magic and version: the same in LUKS2
_LUKS_VERSION = field_slice(lx.Luks1Header, "version")
_LUKS1_UUID = field_slice(lx.Luks1Header, "uuid")
_LUKS2_LABEL = field_slice(lx.Luks2BinaryHeader, "label")
_LUKS2_UUID = field_slice(lx.Luks2BinaryHeader, "uuid")


def probe_luks(src: ByteSource, head: bytes) -> FsInfo | None:
    if head[_LUKS_MAGIC] != lx.LUKS_MAGIC or len(head) < lx.Luks1Header.sizeof():
        return None
    version = int.from_bytes(head[_LUKS_VERSION], "big")
    if version == 2:
        label, uuid = _cstr(head[_LUKS2_LABEL]), head[_LUKS2_UUID]
    else:
        label, uuid = None, head[_LUKS1_UUID]
    return FsInfo("crypto_LUKS", _label(label), _cstr(uuid) or None, str(version))


_MD_HEAD = struct_format(lx.MdSuperblock1, "magic", "major_version", "set_uuid", "set_name")


def probe_md(src: ByteSource) -> FsInfo | None:
    for off, version in lx.MD_SB_PLACES:
        sb = read_inside(src, off, _MD_HEAD.size)
        if sb is None:
            continue
        magic, major, set_uuid, name = _MD_HEAD.unpack_from(sb)
        if magic == lx.MD_SB_MAGIC and major == 1:
            u = set_uuid.hex()
            return FsInfo(
                "linux_raid_member",
                _label(_cstr(name)),
                ":".join(u[i : i + 8] for i in range(0, 32, 8)),
                version,
            )
    return None


# --- optical, Apple, others ---------------------------------------------------------------

_ISO_VD = struct_format(opt.VolumeDescriptor, "type", "id", "volume_id", "escape",
                        "creation_date.digits", "creation_date.gmt_offset",
                        "modification_date.digits", "modification_date.gmt_offset")
_ISO_LABEL_UNITS = size_of(opt.VolumeDescriptor, "volume_id") // 2  # UCS-2 units in Joliet


def _iso_date_uuid(digits: bytes, gmt_offset: int) -> str | None:
    if all(c == 0x30 for c in digits) and gmt_offset == 0:
        return None
    s = digits.decode("ascii", "replace")
    return f"{s[0:4]}-{s[4:6]}-{s[6:8]}-{s[8:10]}-{s[10:12]}-{s[12:14]}-{s[14:16]}"


def probe_iso9660(src: ByteSource) -> FsInfo | None:
    pvd = read_inside(src, opt.DESCRIPTORS_AT, opt.DESCRIPTOR_SIZE)
    if pvd is None:
        return None
    _, ident, label, _, created, c_off, modified, m_off = _ISO_VD.unpack_from(pvd)
    if ident != opt.ISO_STANDARD_ID:
        return None
    uid = _iso_date_uuid(modified, m_off) or _iso_date_uuid(created, c_off)
    version = None
    text = label.decode("ascii", "replace")
    for i in range(1, 17):
        vd = read_inside(src, opt.DESCRIPTORS_AT + opt.DESCRIPTOR_SIZE * i, opt.DESCRIPTOR_SIZE)
        if vd is None:
            break
        vtype, ident, jol, escape = _ISO_VD.unpack_from(vd)[:4]
        if vtype == opt.ISO_VD_END or ident != opt.ISO_STANDARD_ID:
            break
        if vtype == opt.ISO_VD_SUPPLEMENTARY and escape[:3] in opt.JOLIET_ESCAPES:
            version = "Joliet Extension"
            same = all(jol[2 * k] == 0 and jol[2 * k + 1] == label[k]
                       for k in range(_ISO_LABEL_UNITS))
            if not same:
                text = jol.decode("utf-16-be", "replace")
            break
    return FsInfo("iso9660", _label(text), uid, version)


def _dstring(b: bytes) -> str | None:
    """An OSTA compressed unicode dstring (last byte = used length)."""
    n = b[-1]
    if n == 0 or n > len(b) - 1:
        return None
    comp, body = b[0], b[1:n]
    if comp == 8:
        return body.decode("latin-1")
    if comp == 16:
        return body.decode("utf-16-be", "replace")
    return None


_VSD_ID = field_slice(opt.VolumeStructureDescriptor, "StandardIdentifier")
_AVDP = struct_format(opt.AnchorVolumeDescriptorPointer, "DescriptorTag.TagIdentifier",
                      "DescriptorTag.TagLocation",
                      "MainVolumeDescriptorSequenceExtent.ExtentLength",
                      "MainVolumeDescriptorSequenceExtent.ExtentLocation")
_TAG_ID = struct_format(opt.DescriptorTag, "TagIdentifier")
_LVD_LABEL = field_slice(opt.LogicalVolumeDescriptorHead, "LogicalVolumeIdentifier")
_PVD_LABEL = field_slice(opt.PrimaryVolumeDescriptorHead, "VolumeIdentifier")
_UDF_DESCRIPTOR_READ = 512  # the smallest block: holds every field read


def probe_udf(src: ByteSource) -> FsInfo | None:
    nsr = False
    for i in range(opt.VRS_MAX):
        vsd = read_inside(src, opt.DESCRIPTORS_AT + opt.DESCRIPTOR_SIZE * i,
                          opt.VolumeStructureDescriptor.sizeof())
        if vsd is None:
            break
        ident = vsd[_VSD_ID]
        if ident in opt.VRS_NSR_IDS:
            nsr = True
            break
        if ident not in opt.VRS_OTHER_IDS:
            break
    if not nsr:
        return None
    label = None
    for bs in opt.UDF_BLOCK_SIZES:
        avdp = read_inside(src, opt.ANCHOR_SECTOR * bs, opt.AnchorVolumeDescriptorPointer.sizeof())
        if avdp is None:
            continue
        tag, where, length, loc = _AVDP.unpack_from(avdp)
        if tag != opt.TAG_ANCHOR or where != opt.ANCHOR_SECTOR:
            continue
        pvd_label = None
        for k in range(min(length // bs, 64)):
            d = read_inside(src, (loc + k) * bs, _UDF_DESCRIPTOR_READ)
            if d is None:
                break
            (tag,) = _TAG_ID.unpack_from(d)
            if tag == opt.TAG_LOGICAL_VOLUME:
                label = _dstring(d[_LVD_LABEL])
            elif tag == opt.TAG_PRIMARY_VOLUME:
                pvd_label = _dstring(d[_PVD_LABEL])
            elif tag == opt.TAG_TERMINATING:
                break
        label = label or pvd_label
        break
    return FsInfo("udf", _label(label))


_HFS_HASH_INIT = bytes.fromhex("b3e20f39f29211d697a400306543ecac")
_MDB_SIG = field_slice(hfs.MasterDirectoryBlock, "drSigWord")
_MDB_EMBED_SIG = field_slice(hfs.MasterDirectoryBlock, "drEmbedSigWord")
_MDB_NAME = field_slice(hfs.MasterDirectoryBlock, "drVN")
_MDB_FINDER = field_slice(hfs.MasterDirectoryBlock, "drFndrInfo")
_MDB_EMBED = struct_format(hfs.MasterDirectoryBlock, "drAlBlkSiz", "drAlBlSt",
                           "drEmbedExtent.startBlock")
_VH_SIG = field_slice(hfs.VolumeHeader, "signature")
_VH_FINDER = field_slice(hfs.VolumeHeader, "finderInfo")
_VH_CATALOG = struct_format(hfs.VolumeHeader, "blockSize", "catalogFile.extents")
_EXTENT = struct_format(hfs.PlusExtentDescriptor)
_BT_HEADER = struct_format(hfs.BTHeaderRec, "leafRecords", "firstLeafNode", "nodeSize")
_BT_NODE = struct_format(hfs.BTNodeDescriptor, "kind", "numRecords")
_NODE_DESCRIPTOR = hfs.BTNodeDescriptor.sizeof()  # records start after it
_CATALOG_KEY = struct_format(hfs.CatalogKeyHead, "parentID", "nodeName_length")
_HEADER_READ = 512  # bytes of the MDB / volume header sector read


def _hfs_uuid(fid: bytes) -> str | None:
    if not any(fid):
        return None
    d = bytearray(hashlib.md5(_HFS_HASH_INIT + fid).digest())
    d[6] = 0x30 | (d[6] & 0x0F)
    d[8] = 0x80 | (d[8] & 0x3F)
    return uuid_text(d)


def probe_hfs(src: ByteSource) -> FsInfo | None:
    mdb = read_inside(src, hfs.VOLUME_HEADER_AT, _HEADER_READ)
    if mdb is None:
        return None
    off = 0
    if mdb[_MDB_SIG] == hfs.HFS_SIGNATURE:
        if mdb[_MDB_EMBED_SIG] not in hfs.HFSPLUS_SIGNATURES:
            name = mdb[_MDB_NAME]
            n = min(name[0], len(name) - 1)
            return FsInfo(
                "hfs",
                _label(name[1 : 1 + n].decode("mac_roman", "replace")),
                _hfs_uuid(mdb[_MDB_FINDER][hfs.FINDER_VOLUME_ID]),
            )
        al_blk, al_st, embed = _MDB_EMBED.unpack_from(mdb)
        off = al_st * hfs.HFS_ALLOCATION_UNIT + embed * al_blk
        mdb = read_inside(src, off + hfs.VOLUME_HEADER_AT, _HEADER_READ)
        if mdb is None:
            return None
    if mdb[_VH_SIG] not in hfs.HFSPLUS_SIGNATURES:
        return None
    uid = _hfs_uuid(mdb[_VH_FINDER][hfs.FINDER_VOLUME_ID])
    return FsInfo("hfsplus", _hfsplus_label(src, mdb, off), uid)


def _hfsplus_label(src: ByteSource, vh: bytes, off: int) -> str | None:
    """The root folder's name: the first record of the catalog B-tree's first leaf."""
    blocksize, raw_extents = _VH_CATALOG.unpack_from(vh)
    if blocksize < 512:
        return None
    extents = list(_EXTENT.iter_unpack(raw_extents))
    node0 = read_inside(src, off + extents[0][0] * blocksize, _HEADER_READ)
    if node0 is None:
        return None
    leaf_count, leaf_head, node_size = _BT_HEADER.unpack_from(node0, _NODE_DESCRIPTOR)
    if node_size < _NODE_DESCRIPTOR + 8 or leaf_count == 0:
        return None
    leaf_block = leaf_head * node_size // blocksize
    first = None
    for start, count in extents:
        if count == 0:
            return None
        if leaf_block < count:
            first = start
            break
        leaf_block -= count
    if first is None:
        return None
    node = read_inside(src, off + (first + leaf_block) * blocksize, min(node_size, 65536))
    if node is None:
        return None
    kind, records = _BT_NODE.unpack_from(node)
    if kind != hfs.BT_LEAF_NODE or records == 0:
        return None
    parent, n = _CATALOG_KEY.unpack_from(node, _NODE_DESCRIPTOR)
    if parent != hfs.ROOT_PARENT_ID or n > hfs.MAX_NAME_UNITS:
        return None
    name_at = _NODE_DESCRIPTOR + hfs.CatalogKeyHead.sizeof()
    return _label(node[name_at : name_at + 2 * n].decode("utf-16-be", "replace"))


_NX_MAGIC = field_slice(NxSuperblock, "nx_magic")
_NX_UUID = field_slice(NxSuperblock, "nx_uuid")


def probe_apfs(src: ByteSource, head: bytes) -> FsInfo | None:
    """An APFS container; ``apfs_encrypted`` (blkid says apfs) when a volume in it is
    encrypted (FileVault), VERSION then saying how many of how many."""
    if len(head) < 1024 or head[_NX_MAGIC] != NX_MAGIC:
        return None
    out = FsInfo("apfs", uuid=uuid_text(head[_NX_UUID]))
    from .apfs_layout import encrypted_volumes

    got = encrypted_volumes(src, head)
    if got is not None and got[0]:
        out.type, out.version = "apfs_encrypted", f"{got[0]} of {got[1]} volumes encrypted"
    return out


_UB_MAGIC = size_of(lx.UberblockHead, "ub_magic")


def probe_zfs(src: ByteSource) -> FsInfo | None:
    for k in range(4):
        ub = read_inside(src, lx.UBERBLOCK_ARRAY_AT + lx.UBERBLOCK_SLOT * k, _UB_MAGIC)
        if ub is None:
            return None
        # the uberblock is in the byte order of the machine that wrote it
        if lx.UBERBLOCK_MAGIC in (int.from_bytes(ub, "little"), int.from_bytes(ub, "big")):
            return FsInfo("zfs_member")
    return None


# --- the order of probing ----------------------------------------------------------------


def probe(src: ByteSource) -> FsInfo | None:
    """The filesystem (or volume signature) on ``src``, or None if nothing is recognised."""
    head = read_inside(src, 0, min(src.size, 4096))
    if not head:
        return None
    bs = head[:512]
    if len(bs) == 512:
        for p in (probe_ntfs, probe_exfat):
            r = p(src, bs)
            if r is not None:
                return r
    r = probe_md(src) or probe_luks(src, head) or probe_lvm2(src)
    if r is not None:
        return r
    oem = bs[_NTFS_OEM_AT]
    if oem == BITLOCKER_OEM:
        return FsInfo("BitLocker")
    if oem.startswith(REFS_OEM):
        return FsInfo("refs")
    return (
        probe_iso9660(src)
        or probe_udf(src)
        or probe_xfs(src, head)
        or probe_ext(src)
        or probe_btrfs(src)
        or probe_hfs(src)
        or probe_apfs(src, head)
        or probe_zfs(src)
        or probe_swap(src)
        or (probe_fat(src, bs) if len(bs) == 512 else None)
    )


#: probe type -> (the encryption scheme, the key material that would open it): volumes
#: that hold ciphertext, never read as a filesystem
ENCRYPTED = {
    "BitLocker": ("BitLocker (Windows full-volume encryption)",
                  "the 48-digit recovery password, a user password, or the startup key "
                  "(.BEK file) of one of its key protectors"),
    "crypto_LUKS": ("LUKS (Linux dm-crypt)",
                    "the passphrase or key file of one of its key slots"),
    "apfs_encrypted": ("APFS encryption (FileVault)",
                       "the password of a user its keybag lists, or its recovery key"),
}


def encryption_error(fstype: str | None, where: str | None) -> EncryptedImage | None:
    """The EncryptedImage for a volume a probe named ``fstype``, or None if it is not an
    encrypted one (LUKS's version goes into the scheme when known)."""
    if fstype not in ENCRYPTED:
        return None
    scheme, needs = ENCRYPTED[fstype]
    return EncryptedImage("the volume is encrypted; vdinspect does not decrypt",
                          scheme=scheme, needs=needs, path=where, structure="volume header",
                          offset=0)


_GPT_SIG = field_slice(GptHeader, "signature")
_MBR_SIG = field_slice(MasterBootRecord, "boot_signature")


def disk_signature(src: ByteSource) -> str | None:
    """What marks ``src`` as a disk or volume: ``"gpt"``, ``"mbr"`` (the 55AA boot signature,
    which FAT/NTFS/exFAT boot sectors carry too), a filesystem type, or None when nothing
    known is there (a raw image that may be no disk at all: a mistyped path, a format we
    do not know)."""
    for sector in (512, 4096):  # the GPT header is in LBA 1
        if read_inside(src, sector + _GPT_SIG.start, len(GPT_SIGNATURE)) == GPT_SIGNATURE:
            return "gpt"
    if read_inside(src, _MBR_SIG.start, len(BOOT_SIGNATURE)) == BOOT_SIGNATURE:
        return "mbr"
    try:
        info = probe(src)
    except (VDInspectError, ConstructError, ValueError, IndexError, struct.error):
        return None
    return None if info is None else info.type


def is_filesystem_boot_sector(sector0: bytes) -> bool:
    """True when sector 0 is a FAT, exFAT or NTFS boot sector (not a partition table)."""
    if len(sector0) < 512:
        return False
    if sector0[_NTFS_OEM_AT] == NTFS_OEM or sector0[FILE_SYSTEM_NAME] == EXFAT_NAME:
        return True
    return _fat_geometry(sector0[:512]) is not None


def apply(ctx, vol, src: ByteSource) -> None:
    """Probe ``src`` and fill ``vol``'s filesystem, label, uuid and fs_version."""
    try:
        info = probe(src)
    except (VDInspectError, ConstructError, ValueError, IndexError, struct.error) as e:
        ctx.finding(
            "warning",
            "filesystem probe",
            vol.start,
            f"probing {vol.key or 'the volume'} failed: {e}",
        )
        return
    if info is None:
        return
    vol.filesystem = info.type
    vol.label = info.label
    vol.uuid = info.uuid
    vol.fs_version = info.version
