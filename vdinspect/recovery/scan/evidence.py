"""What each signature hit says about where a partition starts, checked before it counts.

A hit becomes :class:`Evidence`: a proposed start (and length where the structure says),
the filesystem, which structure said so and how much that is worth. Copies that do not
sit at the start give the start through their own fields (an ext backup superblock's
``s_block_group_nr``, Btrfs's ``bytenr``, an XFS AGF's ``agf_seqno``, the LVM2 label's
``sector_xl``, a LUKS2 secondary header's ``hdr_offset``); boot-sector copies whose place is
fixed (NTFS at the volume's last sector, FAT32 at ``BPB_BkBootSec``, exFAT at sector 12)
give two possible starts, and only a start whose own structures are where the boot
sector says (the $MFT record, the first FAT entry) is kept. Weights are combined per start
in :mod:`.partitions`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from functools import cache

from construct import Construct, ConstructError, Container

from ...filesystems.xfs.structs import AGF, XFS_AGF_MAGIC
from ...io import ByteSource, Slice, crc32c, read_inside
from ...layout import field_slice, flag_values, offset_of, plain, struct_format
from ...units import is_pow2, uuid_text
from ...volumes.btrfs_layout import SUPER_MIRRORS as BTRFS_COPIES
from ...volumes.btrfs_layout import Superblock as BtrfsSuperblock
from ...volumes.exfat_layout import BootSector as ExfatBootSector
from ...volumes.exfat_layout import boot_sector_problem
from ...volumes.ext_layout import SUPERBLOCK_OFFSET, IncompatFeatures
from ...volumes.ext_layout import Superblock as ExtSuperblock
from ...volumes.fat_layout import check_bpb
from ...volumes.gpt import MAX_ARRAY_BYTES, GptEntry, GptHeader, guid_str, header_crc
from ...volumes.linux_layout import (
    SWAP_HEADER_AT,
    SWAP_PAGE_SIZES,
    Luks1Header,
    Luks2BinaryHeader,
    LuksHeaderStart,
    SwapHeader,
)
from ...volumes.lvm2 import LabelHeader, PvHeader, format_uuid, is_label, label_crc
from ...volumes.mbr import BOOT_SIGNATURE, ENTRY_OFFSET, MasterBootRecord
from ...volumes.ntfs_layout import FILE_RECORD_MAGIC, cluster_sectors
from ...volumes.ntfs_layout import BootSector as NtfsBootSector
from ...volumes.probes import is_filesystem_boot_sector, probe_ext
from ...volumes.types import MBR_EXTENDED, MBR_GPT_PROTECTIVE
from ...volumes.xfs_layout import Superblock as XfsSuperblock
from .structs import SECTOR

EXFAT_BACKUP_SECTOR = 12  # the backup boot region starts at sector 12 of the volume
MAX_TABLE_ENTRIES = 256  # GPT entries taken from one header


@dataclass
class Evidence:
    """One reason to believe a partition starts at ``start`` (bytes on the scanned disk)."""

    start: int
    length: int | None  # None: the structure does not say (LUKS, BitLocker)
    filesystem: str | None  # the probe's name (ntfs, fat32, ext4, ...); None for table entries
    found_by: str  # which structure, where
    at: int  # byte offset of that structure
    weight: float  # 0..1: how much this alone is worth
    table: str | None = None  # "mbr", "gpt" for table entries
    type: str | None = None  # the table entry's type (MBR byte as hex, GPT type GUID)
    name: str | None = None  # a GPT entry's name
    uuid: str | None = None


@cache
def _size(st: Construct) -> int:
    return st.sizeof()  # (construct computes it again on every call)


def _parsed(src: ByteSource, pos: int, st: Construct) -> Container | None:
    """The structure ``st`` read at ``pos`` (None when it would reach past the end)."""
    raw = read_inside(src, pos, _size(st))
    return None if raw is None else st.parse(raw)


_FILE_MAGIC = len(FILE_RECORD_MAGIC)  # bytes of an MFT record's magic


def ntfs(src: ByteSource, pos: int) -> list[Evidence]:
    """An NTFS boot sector: the volume starts here, or ``total_sectors`` back (backup)."""
    b = _parsed(src, pos, NtfsBootSector)
    if b is None:
        return []
    ss, spc = b.bytes_per_sector, cluster_sectors(b.sectors_per_cluster)
    if not (is_pow2(ss) and 256 <= ss <= 4096 and is_pow2(spc)) or b.total_sectors == 0:
        return []
    cs = ss * spc
    out = []
    for start, what, w in ((pos, "ntfs boot sector", 0.6),
                           (pos - b.total_sectors * ss, "ntfs backup boot sector", 0.5)):
        if read_inside(src, start + b.mft_lcn * cs, _FILE_MAGIC) == FILE_RECORD_MAGIC:
            length = (b.total_sectors + 1) * ss
            out.append(Evidence(start, length, "ntfs", f"{what} at {pos:#x}", pos, w))
            if b.hidden_sectors and b.hidden_sectors * ss == start:
                out.append(Evidence(start, length, "ntfs", "ntfs hidden sectors", pos, 0.2))
    return out


def fat(src: ByteSource, pos: int) -> list[Evidence]:
    """A FAT boot sector: here, or ``BPB_BkBootSec`` sectors back (a FAT32 backup)."""
    bs = read_inside(src, pos, SECTOR)
    if bs is None:
        return []
    g = check_bpb(bs)
    if isinstance(g, str) or not (g.bpb.BPB_Media >= 0xF8 or g.bpb.BPB_Media == 0xF0):
        return []
    ss = g.sector_size
    places = [(pos, "fat boot sector", 0.6)]
    if g.fat32_layout and 0 < g.ext.BPB_BkBootSec < g.bpb.BPB_RsvdSecCnt:
        places.append((pos - g.ext.BPB_BkBootSec * ss, "fat32 backup boot sector", 0.5))
    out = []
    for start, what, w in places:
        fat0 = read_inside(src, start + g.bpb.BPB_RsvdSecCnt * ss, 2)
        if fat0 is None or fat0[0] != g.bpb.BPB_Media or fat0[1] != 0xFF:
            continue
        length = g.total_sectors * ss
        out.append(Evidence(start, length, g.fstype, f"{what} at {pos:#x}", pos, w))
        if g.bpb.BPB_HiddSec and g.bpb.BPB_HiddSec * ss == start:
            out.append(Evidence(start, length, g.fstype, "fat hidden sectors", pos, 0.2))
    return out


def exfat(src: ByteSource, pos: int) -> list[Evidence]:
    """An exFAT boot sector: here, or 12 sectors back (the backup boot region)."""
    bs = read_inside(src, pos, SECTOR)
    if bs is None or boot_sector_problem(bs) is not None:
        return []
    b = ExfatBootSector.parse(bs)
    ss = 1 << b.BytesPerSectorShift
    out = []
    for start, what, w in ((pos, "exfat boot sector", 0.6),
                           (pos - EXFAT_BACKUP_SECTOR * ss, "exfat backup boot sector", 0.5)):
        if read_inside(src, start + b.FatOffset * ss, 4) == b"\xf8\xff\xff\xff":
            length = b.VolumeLength * ss
            out.append(Evidence(start, length, "exfat", f"{what} at {pos:#x}", pos, w))
    return out


_EXT_SB = ExtSuperblock.sizeof()
_EXT_PLAIN = plain(ExtSuperblock)  # flags as integers
_INCOMPAT_64BIT = flag_values(IncompatFeatures)["64bit"]


def ext(src: ByteSource, pos: int) -> list[Evidence]:
    """An ext superblock: its ``s_block_group_nr`` says how far back group 0 starts."""
    sb = _parsed(src, pos, _EXT_PLAIN)
    if sb is None:
        return []
    if sb.s_log_block_size > 6 or sb.s_rev_level > 1 or sb.s_inodes_per_group == 0:
        return []
    bsize = 1024 << sb.s_log_block_size
    if sb.s_first_data_block != (1 if bsize == 1024 else 0):
        return []
    if not 0 < sb.s_blocks_per_group <= 8 * bsize or sb.s_inodes_count == 0:
        return []
    blocks = sb.s_blocks_count_lo | (
        sb.s_blocks_count_hi << 32 if sb.s_feature_incompat & _INCOMPAT_64BIT else 0)
    nr = sb.s_block_group_nr
    if nr == 0:
        start, what, w = pos - SUPERBLOCK_OFFSET, "ext superblock", 0.6
    else:
        block = nr * sb.s_blocks_per_group + sb.s_first_data_block
        start, what, w = pos - block * bsize, f"ext superblock backup (group {nr})", 0.35
    if start < 0 or blocks == 0 or nr * sb.s_blocks_per_group >= blocks:
        return []
    # which ext (2, 3, 4) the probe's rules say, read from this copy as if it were the primary
    kind = probe_ext(Slice(src, pos - SUPERBLOCK_OFFSET, SUPERBLOCK_OFFSET + _EXT_SB))
    return [Evidence(start, blocks * bsize, kind.type if kind else "ext", f"{what} at {pos:#x}",
                     pos, w, uuid=uuid_text(sb.s_uuid))]


def xfs(src: ByteSource, pos: int) -> list[Evidence]:
    """An XFS superblock: the AGF after it numbers its allocation group."""
    sb = _parsed(src, pos, XfsSuperblock)
    if sb is None:
        return []
    bsize, ssize = sb.sb_blocksize, sb.sb_sectsize
    if not (is_pow2(bsize) and 512 <= bsize <= 65536 and is_pow2(ssize) and 512 <= ssize <= 32768):
        return []
    if sb.sb_agblocks == 0 or sb.sb_agcount == 0 or sb.sb_dblocks == 0:
        return []
    agf = _parsed(src, pos + ssize, AGF)
    if agf is None or agf.agf_magicnum != XFS_AGF_MAGIC or agf.agf_seqno >= sb.sb_agcount:
        return []
    ag = agf.agf_seqno
    start = pos - ag * sb.sb_agblocks * bsize
    if start < 0:
        return []
    what, w = ("xfs superblock", 0.6) if ag == 0 else (f"xfs superblock (AG {ag})", 0.35)
    return [Evidence(start, sb.sb_dblocks * bsize, "xfs", f"{what} at {pos:#x}", pos, w,
                     uuid=uuid_text(sb.sb_uuid))]


_BTRFS_SB = BtrfsSuperblock.sizeof()
_BTRFS_CSUM_END = offset_of(BtrfsSuperblock, "fsid")


def btrfs(src: ByteSource, pos: int) -> list[Evidence]:
    """A Btrfs superblock copy: ``bytenr`` is its own offset in the device."""
    raw = read_inside(src, pos, _BTRFS_SB)
    if raw is None:
        return []
    sb = BtrfsSuperblock.parse(raw)
    if sb.bytenr not in BTRFS_COPIES or pos - sb.bytenr < 0:
        return []
    if sb.csum_type == "crc32c":  # crc32c: a copy whose checksum fails is not evidence
        if struct.pack("<I", crc32c(raw[_BTRFS_CSUM_END:])) != sb.csum[:4]:
            return []
    k = BTRFS_COPIES.index(sb.bytenr)
    what, w = ("btrfs superblock", 0.6) if k == 0 else (f"btrfs superblock mirror {k}", 0.4)
    return [Evidence(pos - sb.bytenr, sb.dev_item.total_bytes, "btrfs", f"{what} at {pos:#x}",
                     pos, w, uuid=uuid_text(sb.fsid))]


_PV_SIZE = PvHeader.sizeof()


def lvm2(src: ByteSource, pos: int) -> list[Evidence]:
    """An LVM2 PV label: ``sector_xl`` is its sector in the PV; the PV header its size."""
    data = read_inside(src, pos, SECTOR)
    if data is None or not is_label(data):
        return []
    label = LabelHeader.parse(data)
    if label_crc(data) != label.crc_xl or not label.offset_xl <= SECTOR - _PV_SIZE:
        return []
    pv = PvHeader.parse(data[label.offset_xl:])
    start = pos - label.sector_xl * SECTOR
    if start < 0 or label.sector_xl > 3:
        return []
    uuid = format_uuid(pv.pv_uuid.decode("ascii", "replace"))
    return [Evidence(start, pv.device_size_xl or None, "LVM2_member",
                     f"lvm2 pv label at {pos:#x}", pos, 0.7, uuid=uuid)]


def swap(src: ByteSource, pos: int) -> list[Evidence]:
    """A Linux swap signature ending a page: the header 1024 bytes in gives the size."""
    for page in SWAP_PAGE_SIZES:
        start = pos + SECTOR - page
        raw = read_inside(src, start + SWAP_HEADER_AT, _size(SwapHeader))
        if raw is None:
            continue
        h = SwapHeader.parse(raw)
        if h.version == 1 and h.last_page > 0:
            uuid = uuid_text(h.sws_uuid) if any(h.sws_uuid) else None
            return [Evidence(start, (h.last_page + 1) * page, "swap",
                             f"swap signature at {pos:#x}", pos, 0.6, uuid=uuid)]
    return []


def luks(src: ByteSource, pos: int, secondary: bool = False) -> list[Evidence]:
    """A LUKS1/LUKS2 header (or LUKS2's secondary, ``hdr_offset`` bytes in)."""
    raw = read_inside(src, pos, _size(Luks2BinaryHeader))
    if raw is None:
        return []
    version = int.from_bytes(raw[_LUKS_VERSION], "big")
    if version == 1 and not secondary:
        h = Luks1Header.parse(raw)
        if h.payloadOffset == 0:
            return []
        uuid = h.uuid.split(b"\0", 1)[0].decode("ascii", "replace") or None
        return [Evidence(pos, None, "crypto_LUKS", f"luks1 header at {pos:#x}", pos, 0.6,
                         uuid=uuid)]
    if version != 2:
        return []
    h = Luks2BinaryHeader.parse(raw)
    if not 0x4000 <= h.hdr_size <= 0x400000 or (h.hdr_offset == 0) == secondary:
        return []
    uuid = h.uuid.split(b"\0", 1)[0].decode("ascii", "replace") or None
    what, w = ("luks2 secondary header", 0.4) if secondary else ("luks2 header", 0.6)
    return [Evidence(pos - h.hdr_offset, None, "crypto_LUKS", f"{what} at {pos:#x}", pos, w,
                     uuid=uuid)]


def bitlocker(src: ByteSource, pos: int) -> list[Evidence]:
    """A BitLocker volume's boot sector (its size only when the BPB gives one)."""
    bs = read_inside(src, pos, SECTOR)
    if bs is None or bs[_NTFS_END] != BOOT_SIGNATURE:
        return []
    b = NtfsBootSector.parse(bs)
    ss = b.bytes_per_sector if is_pow2(b.bytes_per_sector) else SECTOR
    length = b.total_sectors * ss if b.total_sectors else None
    return [Evidence(pos, length, "BitLocker", f"bitlocker boot sector at {pos:#x}", pos, 0.5)]


_NTFS_END = field_slice(NtfsBootSector, "end_of_sector_marker")
_LUKS_VERSION = field_slice(LuksHeaderStart, "version")
_GPT_HDR = GptHeader.sizeof()
_GPT_ENTRY = struct_format(GptEntry, "partition_type_guid", "starting_lba", "ending_lba",
                           "partition_name")


def gpt(src: ByteSource, pos: int) -> list[Evidence]:
    """A GPT header (CRC-checked, at its own ``my_lba``): one piece per used entry."""
    raw = read_inside(src, pos, SECTOR)
    if raw is None:
        return []
    h = GptHeader.parse(raw)
    if not _GPT_HDR <= h.header_size <= SECTOR:
        return []
    if header_crc(raw, h.header_size) != h.header_crc32:
        return []
    ss = next((s for s in (512, 4096) if h.my_lba * s == pos), None)
    if ss is None:  # the GPT of some other disk stored inside this one
        return []
    which = "primary" if h.my_lba < h.alternate_lba else "backup"
    n, esize = min(h.num_partition_entries, 4096), h.size_of_partition_entry
    if esize < GptEntry.sizeof() or n * esize > MAX_ARRAY_BYTES:
        return []
    array = read_inside(src, h.partition_entry_lba * ss, n * esize)
    if array is None:
        return []
    good = zlib.crc32(array) == h.partition_entry_array_crc32
    out = []
    for i in range(n):
        tguid, first, last, pname = _GPT_ENTRY.unpack_from(array, i * esize)
        if not any(tguid) or last < first:
            continue
        name = pname.decode("utf-16-le", "replace").split("\0", 1)[0] or None
        out.append(Evidence(first * ss, (last - first + 1) * ss, None,
                            f"gpt {which} entry {i + 1}", pos, 0.5 if good else 0.25,
                            table="gpt", type=guid_str(tguid), name=name))
        if len(out) >= MAX_TABLE_ENTRIES:
            break
    return out


def mbr(src: ByteSource, pos: int) -> list[Evidence]:
    """An MBR (at sector 0) or an EBR (elsewhere) whose entries look like a table's."""
    raw = read_inside(src, pos, SECTOR)
    if raw is None or is_filesystem_boot_sector(raw):
        return []
    try:
        m = MasterBootRecord.parse(raw)
    except ConstructError:  # pragma: no cover - a 512-byte sector always parses
        return []
    used = []
    for slot, e in enumerate(m.partitions):
        if e.status not in (0, 0x80):
            return []
        if e.type == 0 and e.lba_start == 0 and e.num_sectors == 0:
            continue
        if e.type == 0 or e.lba_start == 0 or e.num_sectors == 0:
            return []
        used.append((slot, e))
    if not used:
        return []
    out = []
    if pos == 0:
        for slot, e in used:
            if e.type in MBR_EXTENDED or e.type == MBR_GPT_PROTECTIVE:
                continue
            out.append(Evidence(e.lba_start * SECTOR, e.num_sectors * SECTOR, None,
                                f"mbr entry {slot + 1}", ENTRY_OFFSET + 16 * slot, 0.4,
                                table="mbr", type=f"{e.type:#04x}"))
        return out
    if any(slot > 1 for slot, _ in used) or used[0][0] != 0 or used[0][1].type in MBR_EXTENDED:
        return []  # not an EBR: the table of some other disk stored inside this one
    e = used[0][1]
    return [Evidence(pos + e.lba_start * SECTOR, e.num_sectors * SECTOR, None,
                     f"ebr at {pos:#x}", pos, 0.35, table="mbr", type=f"{e.type:#04x}")]


#: signature name -> interpreter
INTERPRETERS = {
    "ntfs": ntfs, "fat": fat, "exfat": exfat, "ext": ext, "xfs": xfs, "btrfs": btrfs,
    "lvm2": lvm2, "swap": swap, "luks": luks,
    "luks2-secondary": lambda src, pos: luks(src, pos, secondary=True),
    "bitlocker": bitlocker, "gpt": gpt, "mbr": mbr,
}
