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
from dataclasses import dataclass

from construct import ConstructError

from ..errors import EncryptedImage, VDInspectError
from ..io import ByteSource, read_inside
from ..layout import field_slice, offset_of, struct_format
from ..units import uuid_text
from .exfat_layout import BootSector as ExfatBootSector
from .exfat_layout import EntryType, VolumeLabelEntry, boot_sector_problem, volume_label_text
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
    FAT32_MAX_CLUSTERS,
    NO_NAME,
    Attribute,
    BootSector,
    Fat16Ext,
    Fat32Ext,
    FatGeometry,
    check_bpb,
)
from .multisector import RecordError, apply_fixup
from .ntfs_layout import NTFS_OEM, record_size, volume_name
from .ntfs_layout import BootSector as NtfsBootSector


@dataclass
class FsInfo:
    """What a probe found: blkid's TYPE (fat12/16/32 for vfat), LABEL, UUID, VERSION."""

    type: str
    label: str | None = None
    uuid: str | None = None
    version: str | None = None


def _u16(b: bytes, o: int) -> int:
    return struct.unpack_from("<H", b, o)[0]


def _u32(b: bytes, o: int) -> int:
    return struct.unpack_from("<I", b, o)[0]


def _cstr(b: bytes, encoding: str = "utf-8") -> str:
    return b.split(b"\0", 1)[0].decode(encoding, "replace")


def _label(s: str | None) -> str | None:
    """blkid drops trailing blanks; an empty label is no label."""
    if s is None:
        return None
    s = s.rstrip(" \0")
    return s or None


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


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
        csize = b.BPB_SecPerClus * ssize
        data_start = b.BPB_RsvdSecCnt + b.BPB_NumFATs * g.fat_sectors
        entries = g.fat_sectors * ssize // 4
        nxt = g.ext.BPB_RootClus
        for _ in range(100):
            if not nxt or nxt >= entries:
                break
            raw = read_inside(src, (data_start + (nxt - 2) * b.BPB_SecPerClus) * ssize, csize)
            if raw is None:
                break
            label = _fat_dir_label(raw)
            if label is not None:
                break
            fe = read_inside(src, b.BPB_RsvdSecCnt * ssize + nxt * 4, 4)
            if fe is None:
                break
            nxt = _u32(fe, 0) & 0x0FFFFFFF
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
    csize = ssize << b.SectorsPerClusterShift
    fat_off = b.FatOffset * ssize
    heap = b.ClusterHeapOffset * ssize
    count = b.ClusterCount
    nxt = b.FirstClusterOfRootDirectory
    label = None
    for _ in range(100):
        if nxt < 2 or nxt >= count + 2:
            break
        raw = read_inside(src, heap + (nxt - 2) * csize, csize)
        if raw is None:
            break
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
        fe = read_inside(src, fat_off + nxt * 4, 4)
        if fe is None:
            break
        nxt = _u32(fe, 0)
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
    if not _is_pow2(ssize) or not 256 <= ssize <= 4096:
        return None
    if spc > 0x80:
        spc = 1 << (256 - spc)
    if not _is_pow2(spc):
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


def probe_xfs(src: ByteSource, head: bytes) -> FsInfo | None:
    if head[:4] != b"XFSB" or len(head) < 120:
        return None
    return FsInfo("xfs", _label(_cstr(head[108:120])), uuid_text(head[32:48]))


def probe_btrfs(src: ByteSource) -> FsInfo | None:
    sb = read_inside(src, 0x10000, 0x22B)
    if sb is None or sb[0x40:0x48] != b"_BHRfS_M":
        return None
    return FsInfo("btrfs", _label(_cstr(sb[0x12B:0x22B])), uuid_text(sb[0x20:0x30]))


def probe_swap(src: ByteSource) -> FsInfo | None:
    for page in (4096, 8192, 16384, 65536):
        magic = read_inside(src, page - 10, 10)
        if magic is None:
            return None
        if magic == b"SWAP-SPACE":
            return FsInfo("swap", version="0")
        if magic == b"SWAPSPACE2":
            hdr = read_inside(src, 1024, 44)
            if hdr is None:
                return None
            u = hdr[12:28]
            return FsInfo(
                "swap",
                _label(_cstr(hdr[28:44])),
                uuid_text(u) if any(u) else None,
                str(_u32(hdr, 0)),
            )
    return None


def probe_lvm2(src: ByteSource) -> FsInfo | None:
    # the label ("LABELONE") starts one of the first four 512-byte sectors; look for it
    # before importing the LVM2 reader, so that disks without LVM never load it
    head = read_inside(src, 0, min(src.size, 2048)) or b""
    if not any(head[o : o + 8] == b"LABELONE" for o in range(0, len(head), 512)):
        return None
    from ..layout import size_of
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


def probe_luks(src: ByteSource, head: bytes) -> FsInfo | None:
    if head[:6] != b"LUKS\xba\xbe" or len(head) < 208:
        return None
    version = int.from_bytes(head[6:8], "big")
    label = _cstr(head[24:72]) if version == 2 else None
    return FsInfo("crypto_LUKS", _label(label), _cstr(head[168:208]) or None, str(version))


def probe_md(src: ByteSource) -> FsInfo | None:
    for off in (4096, 0):
        sb = read_inside(src, off, 64)
        if sb is not None and _u32(sb, 0) == 0xA92B4EFC and _u32(sb, 4) == 1:
            u = sb[16:32].hex()
            return FsInfo(
                "linux_raid_member",
                _label(_cstr(sb[32:64])),
                ":".join(u[i : i + 8] for i in range(0, 32, 8)),
                "1.2" if off else "1.1",
            )
    return None


# --- optical, Apple, others ---------------------------------------------------------------


def _iso_date_uuid(d: bytes) -> str | None:
    digits = d[:16]
    if all(c == 0x30 for c in digits) and d[16] == 0:
        return None
    s = digits.decode("ascii", "replace")
    return f"{s[0:4]}-{s[4:6]}-{s[6:8]}-{s[8:10]}-{s[10:12]}-{s[12:14]}-{s[14:16]}"


def probe_iso9660(src: ByteSource) -> FsInfo | None:
    pvd = read_inside(src, 0x8000, 2048)
    if pvd is None or pvd[1:6] != b"CD001":
        return None
    label = pvd[40:72]
    uid = _iso_date_uuid(pvd[830:847]) or _iso_date_uuid(pvd[813:830])
    version = None
    text = label.decode("ascii", "replace")
    for i in range(1, 17):
        vd = read_inside(src, 0x8000 + 2048 * i, 2048)
        if vd is None or vd[0] == 0xFF or vd[1:6] != b"CD001":
            break
        if vd[0] == 2 and vd[88:91] in (b"%/@", b"%/C", b"%/E"):
            version = "Joliet Extension"
            jol = vd[40:72]
            same = all(jol[2 * k] == 0 and jol[2 * k + 1] == label[k] for k in range(16))
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


def probe_udf(src: ByteSource) -> FsInfo | None:
    nsr = False
    for i in range(0, 64):
        vsd = read_inside(src, 0x8000 + 2048 * i, 8)
        if vsd is None:
            break
        ident = vsd[1:6]
        if ident in (b"NSR02", b"NSR03"):
            nsr = True
            break
        if ident not in (b"BEA01", b"CD001", b"CDW02", b"BOOT2", b"TEA01"):
            break
    if not nsr:
        return None
    label = None
    for bs in (2048, 512, 1024, 4096):
        avdp = read_inside(src, 256 * bs, 32)
        if avdp is None or _u16(avdp, 0) != 2 or _u32(avdp, 12) != 256:
            continue
        length, loc = _u32(avdp, 16), _u32(avdp, 20)
        pvd_label = None
        for k in range(min(length // bs, 64)):
            d = read_inside(src, (loc + k) * bs, 512)
            if d is None:
                break
            tag = _u16(d, 0)
            if tag == 6:
                label = _dstring(d[84:212])
            elif tag == 1:
                pvd_label = _dstring(d[24:56])
            elif tag == 8:
                break
        label = label or pvd_label
        break
    return FsInfo("udf", _label(label))


_HFS_HASH_INIT = bytes.fromhex("b3e20f39f29211d697a400306543ecac")


def _hfs_uuid(fid: bytes) -> str | None:
    if not any(fid):
        return None
    d = bytearray(hashlib.md5(_HFS_HASH_INIT + fid).digest())
    d[6] = 0x30 | (d[6] & 0x0F)
    d[8] = 0x80 | (d[8] & 0x3F)
    return uuid_text(d)


def probe_hfs(src: ByteSource) -> FsInfo | None:
    mdb = read_inside(src, 1024, 512)
    if mdb is None:
        return None
    sig = mdb[:2]
    off = 0
    if sig == b"BD":
        if mdb[0x7C:0x7E] not in (b"H+", b"HX"):
            n = min(mdb[0x24], 27)
            return FsInfo(
                "hfs",
                _label(mdb[0x25 : 0x25 + n].decode("mac_roman", "replace")),
                _hfs_uuid(mdb[0x74:0x7C]),
            )
        al_blk = int.from_bytes(mdb[0x14:0x18], "big")
        al_st = int.from_bytes(mdb[0x1C:0x1E], "big")
        embed = int.from_bytes(mdb[0x7E:0x80], "big")
        off = al_st * 512 + embed * al_blk
        mdb = read_inside(src, off + 1024, 512)
        if mdb is None:
            return None
        sig = mdb[:2]
    if sig not in (b"H+", b"HX"):
        return None
    uid = _hfs_uuid(mdb[0x68:0x70])
    return FsInfo("hfsplus", _hfsplus_label(src, mdb, off), uid)


def _hfsplus_label(src: ByteSource, vh: bytes, off: int) -> str | None:
    be32 = lambda o: int.from_bytes(vh[o : o + 4], "big")  # noqa: E731
    blocksize = be32(0x28)
    if blocksize < 512:
        return None
    cat = 0x110  # catalog file fork: logical size 8, clump 4, blocks 4, 8 extents
    extents = [(be32(cat + 16 + 8 * k), be32(cat + 20 + 8 * k)) for k in range(8)]
    node0 = read_inside(src, off + extents[0][0] * blocksize, 512)
    if node0 is None:
        return None
    leaf_head = int.from_bytes(node0[24:28], "big")
    node_size = int.from_bytes(node0[32:34], "big")
    leaf_count = int.from_bytes(node0[14:18], "big")
    if node_size < 14 + 8 or leaf_count == 0:
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
    if node is None or node[8] != 0xFF or int.from_bytes(node[10:12], "big") == 0:
        return None
    parent = int.from_bytes(node[16:20], "big")
    n = int.from_bytes(node[20:22], "big")
    if parent != 1 or n > 255:
        return None
    return _label(node[22 : 22 + 2 * n].decode("utf-16-be", "replace"))


def probe_apfs(src: ByteSource, head: bytes) -> FsInfo | None:
    """An APFS container; ``apfs_encrypted`` (blkid says apfs) when a volume in it is
    encrypted (FileVault), VERSION then saying how many of how many."""
    if len(head) < 1024 or head[32:36] != b"NXSB":
        return None
    out = FsInfo("apfs", uuid=uuid_text(head[72:88]))
    from .apfs_layout import encrypted_volumes

    got = encrypted_volumes(src, head)
    if got is not None and got[0]:
        out.type, out.version = "apfs_encrypted", f"{got[0]} of {got[1]} volumes encrypted"
    return out


def probe_zfs(src: ByteSource) -> FsInfo | None:
    for k in range(4):
        ub = read_inside(src, 0x20000 + 1024 * k, 8)
        if ub is None:
            return None
        if ub in (b"\x0c\xb1\xba\x00\x00\x00\x00\x00", b"\x00\x00\x00\x00\x00\xba\xb1\x0c"):
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
    if bs[3:11] == b"-FVE-FS-":
        return FsInfo("BitLocker")
    if bs[3:7] == b"ReFS":
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


def disk_signature(src: ByteSource) -> str | None:
    """What marks ``src`` as a disk or volume: ``"gpt"``, ``"mbr"`` (the 55AA boot signature,
    which FAT/NTFS/exFAT boot sectors carry too), a filesystem type, or None when nothing
    known is there (a raw image that may be no disk at all: a mistyped path, a format we
    do not know)."""
    for at in (512, 4096):
        if read_inside(src, at, 8) == b"EFI PART":
            return "gpt"
    if read_inside(src, 510, 2) == b"\x55\xaa":
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
    if sector0[3:11] in (b"NTFS    ", b"EXFAT   "):
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
