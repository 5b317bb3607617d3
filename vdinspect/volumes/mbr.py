"""MBR (DOS) partition tables: four primary entries, extended partitions and their EBR chain.

Facts from the de-facto IBM PC layout as util-linux (libfdisk, libblkid), the Linux kernel
and The Sleuth Kit read it. Sector 0 holds boot code, a 32-bit disk signature at 440, four
16-byte entries at 446 and 55 AA at 510. An extended partition (type 0x05, 0x0F or 0x85)
starts a chain of extended boot records (EBRs): in each, a data entry whose start is
relative to that EBR and a link entry whose start is relative to the first EBR (the
start of the extended partition). Linux numbers the logical partitions 5, 6, ... along
the chain. CHS addresses are kept in ``.raw`` but never used: LBA fields are authoritative.
"""

from __future__ import annotations

from construct import Array, Bytes, Int8ul, Int16ul, Int32ul, Struct

from ..layout import offset_of
from . import CONTAINER, PARTITION, ScanContext, Volume
from .signatures import BOOT_SIGNATURE, BOOT_SIGNATURE_AT  # noqa: F401  (the driver's names)
from .types import MBR_EXTENDED, MBR_GPT_PROTECTIVE, mbr_type_name

# --- on-disk structures ----------------------------------------------------------------

PartitionEntry = Struct(
    "status" / Int8ul * "0x80 = bootable (active), 0x00 = not bootable",
    "chs_first" / Bytes(3) * "CHS address of the first sector (head, sector|cyl hi, cyl lo)",
    "type" / Int8ul * "partition type byte (types.MBR_TYPES)",
    "chs_last" / Bytes(3) * "CHS address of the last sector",
    "lba_start" / Int32ul * "first sector; in an EBR relative to the EBR or to the chain start",
    "num_sectors" / Int32ul * "length, sectors",
)  # 16 bytes

MasterBootRecord = Struct(
    "bootstrap" / Bytes(440) * "boot code",
    "disk_signature" / Int32ul * "disk identifier (blkid's PTUUID)",
    "reserved" / Int16ul * "0, or 0x5A5A for copy-protected",
    "partitions" / Array(4, PartitionEntry) * "the four primary entries at 446",
    "boot_signature" / Bytes(2) * "55 AA",
)  # 512 bytes; an EBR has the same layout (only the first two entries are used)

ENTRY_OFFSET = offset_of(MasterBootRecord, "partitions")  # 446
ENTRY_SIZE = PartitionEntry.sizeof()  # 16
#: where a boot sector (an MBR, an EBR, a FAT/NTFS/exFAT boot sector) ends in 55 AA:
#: signatures.py's BOOT_SIGNATURE_AT and BOOT_SIGNATURE (tests/volumes/test_signatures.py
#: checks the place against ``boot_signature``)
#: Refuse chains longer than this (a loop-free chain this long is corrupt anyway).
MAX_LOGICALS = 4096


def decode_chs(b: bytes) -> dict:
    """A CHS triple as cylinder/head/sector (shown, never trusted)."""
    return dict(cylinder=((b[1] & 0xC0) << 2) | b[2], head=b[0], sector=b[1] & 0x3F)


def _entry_raw(entry, host_offset: int, slot: int, ebr: int | None = None) -> dict:
    """What ``Volume.raw`` keeps for an entry: the fields, decoded CHS and where it sits."""
    return _Raw(
        status=entry.status,
        type=entry.type,
        lba_start=entry.lba_start,
        num_sectors=entry.num_sectors,
        chs_first=decode_chs(entry.chs_first),
        chs_last=decode_chs(entry.chs_last),
        host_offset=host_offset,
        slot=slot,
        ebr_offset=ebr,
    )


class _Raw(dict):
    """A dict whose keys read as attributes too (``raw.type``)."""

    __getattr__ = dict.__getitem__


def looks_like_mbr(sector0: bytes) -> bool:
    """55 AA at 510 and every boot indicator 0x00 or 0x80 (libblkid's test)."""
    if len(sector0) < 512 or sector0[BOOT_SIGNATURE_AT] != BOOT_SIGNATURE:
        return False
    return all(sector0[ENTRY_OFFSET + ENTRY_SIZE * i] in (0x00, 0x80) for i in range(4))


class MbrTable:
    """A parsed MBR: ``header`` (the construct Container) and the partitions it describes."""

    def __init__(self, header, sector_size: int) -> None:
        self.header = header
        self.sector_size = sector_size
        self.disk_signature: int = header.disk_signature
        self.entries = list(header.partitions)

    @property
    def protective(self) -> bool:
        """True when an entry is of type 0xEE (a GPT disk's protective MBR)."""
        return any(e.type == MBR_GPT_PROTECTIVE for e in self.entries)

    @property
    def hybrid(self) -> bool:
        """A protective 0xEE entry next to ordinary entries (a hybrid MBR)."""
        return self.protective and any(
            e.type not in (0, MBR_GPT_PROTECTIVE) and e.num_sectors for e in self.entries
        )

    def volumes(self, ctx: ScanContext) -> list[Volume]:
        """Primary entries, extended containers and the logical partitions of their chains."""
        ss = self.sector_size
        out: list[Volume] = []
        next_logical = 5
        for i, e in enumerate(self.entries):
            if e.type == 0 or e.num_sectors == 0:
                continue
            slot = i + 1
            off = ENTRY_OFFSET + ENTRY_SIZE * i
            extended = e.type in MBR_EXTENDED
            v = Volume(
                scheme="mbr",
                type=f"0x{e.type:02x}",
                type_name=mbr_type_name(e.type),
                start=e.lba_start * ss,
                length=e.num_sectors * ss,
                index=slot,
                bootable=e.status == 0x80,
                kind=CONTAINER if extended else PARTITION,
                raw=_entry_raw(e, off, slot),
                disk=ctx.source,
            )
            v.part_uuid = f"{self.disk_signature:08x}-{slot:02x}"
            if e.lba_start == 0:
                ctx.finding("warning", "MBR entry", off, f"partition {slot} starts at sector 0")
            out.append(v)
            if extended:
                logicals = self._walk_chain(ctx, v, next_logical)
                next_logical += len(logicals)
                out.extend(logicals)
        return out

    def _walk_chain(self, ctx: ScanContext, ext: Volume, first_index: int) -> list[Volume]:
        """Follow the EBR chain of extended partition ``ext`` (loops detected)."""
        ss = self.sector_size
        ext_start = ext.raw.lba_start
        ext_end = ext_start + ext.raw.num_sectors
        out: list[Volume] = []
        seen: set[int] = set()
        cur = ext_start
        index = first_index
        while True:
            off = cur * ss
            if cur in seen:
                ctx.problem(
                    "EBR chain",
                    off,
                    f"loop in the extended partition's EBR chain: the EBR at sector {cur} "
                    f"is reached a second time (after {len(seen)} EBRs)",
                )
                break
            if len(seen) >= MAX_LOGICALS:
                ctx.problem("EBR chain", off, f"more than {MAX_LOGICALS} EBRs in the chain")
                break
            seen.add(cur)
            if off + 512 > ctx.size:
                ctx.problem("EBR", off, f"EBR at sector {cur} lies past the end of the disk")
                break
            if not ext_start <= cur < ext_end:
                ctx.finding(
                    "warning",
                    "EBR",
                    off,
                    f"EBR at sector {cur} lies outside its extended partition "
                    f"[{ext_start}, {ext_end})",
                )
            data = ctx.source.read(off, 512)
            ctx.structure("EBR", off, 512, f"extended boot record #{len(seen)}")
            if data[BOOT_SIGNATURE_AT] != BOOT_SIGNATURE:
                ctx.finding(
                    "warning", "EBR", off + 510, f"EBR at sector {cur} lacks 55 AA; chain ends"
                )
                break
            ebr = MasterBootRecord.parse(data)
            link = None
            for k, e in enumerate(ebr.partitions):
                if e.type == 0 or e.num_sectors == 0:
                    continue
                if e.type in MBR_EXTENDED:
                    if link is None:
                        link = e
                    continue
                start = cur + e.lba_start
                v = Volume(
                    scheme="mbr",
                    type=f"0x{e.type:02x}",
                    type_name=mbr_type_name(e.type),
                    start=start * ss,
                    length=e.num_sectors * ss,
                    index=index,
                    bootable=e.status == 0x80,
                    raw=_entry_raw(e, off + ENTRY_OFFSET + ENTRY_SIZE * k, k + 1, ebr=off),
                    disk=ctx.source,
                    parent=ext,
                )
                v.part_uuid = f"{self.disk_signature:08x}-{index:02x}"
                if start < ext_start or start + e.num_sectors > ext_end:
                    ctx.finding(
                        "warning",
                        "EBR entry",
                        off + ENTRY_OFFSET + ENTRY_SIZE * k,
                        f"logical partition {index} [{start}, {start + e.num_sectors}) "
                        f"is not inside its extended partition [{ext_start}, {ext_end})",
                    )
                out.append(v)
                index += 1
            if link is None:
                break
            cur = ext_start + link.lba_start
        return out


def read_mbr(ctx: ScanContext, sector0: bytes, sector_size: int = 512) -> MbrTable | None:
    """The MBR of sector 0, or None when it is none (no 55 AA, a filesystem boot sector)."""
    from .probes import is_filesystem_boot_sector

    if not looks_like_mbr(sector0):
        return None
    header = MasterBootRecord.parse(sector0[:512])
    protective = any(e.type == MBR_GPT_PROTECTIVE for e in header.partitions)
    if not protective and is_filesystem_boot_sector(sector0):
        return None
    ctx.structure("MBR", 0, 512, "master boot record: boot code, disk signature, 4 entries")
    return MbrTable(header, sector_size)
