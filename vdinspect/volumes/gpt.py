"""GUID partition tables (UEFI specification, chapter "GUID Partition Table Disk Layout").

LBA 0 holds a protective MBR (one entry of type 0xEE); LBA 1 the primary header
("EFI PART"), which points at the partition entry array (usually LBA 2); the last LBA holds
the backup header, which points at a backup array just before it. Both headers and arrays
carry CRC32s. The logical sector (LBA) size is 512 or 4096 bytes: found here by looking for
the signature at each. GUIDs are stored mixed-endian (first three fields little-endian).
"""

from __future__ import annotations

import uuid
import zlib

from construct import Bytes, Int32ul, Int64ul, Struct

from ..layout import field_slice
from ..lazy import np
from ..units import SECTOR_PROBE_ORDER, is_pow2
from . import PARTITION, ScanContext, Volume
from .signatures import GPT_SIGNATURE
from .types import gpt_attribute_flags, gpt_type_name

# --- on-disk structures ----------------------------------------------------------------

GptHeader = Struct(
    "signature" / Bytes(8) * "EFI PART",
    "revision" / Int32ul * "0x00010000 for version 1.0",
    "header_size" / Int32ul * "bytes covered by header_crc32 (92 .. logical block size)",
    "header_crc32" / Int32ul * "CRC32 of the header_size bytes with this field zero",
    "reserved" / Int32ul * "must be zero",
    "my_lba" / Int64ul * "LBA of this header",
    "alternate_lba" / Int64ul * "LBA of the other header (backup or primary)",
    "first_usable_lba" / Int64ul * "first LBA a partition may use",
    "last_usable_lba" / Int64ul * "last LBA a partition may use (inclusive)",
    "disk_guid" / Bytes(16) * "disk GUID, mixed-endian",
    "partition_entry_lba" / Int64ul * "first LBA of the partition entry array",
    "num_partition_entries" / Int32ul * "entries in the array (128 usual)",
    "size_of_partition_entry" / Int32ul * "bytes per entry: 128 x 2^n",
    "partition_entry_array_crc32" / Int32ul * "CRC32 of num x size bytes of the array",
)  # 92 bytes; the rest of the block is reserved (zero)

GptEntry = Struct(
    "partition_type_guid" / Bytes(16) * "type GUID (all zero = unused entry)",
    "unique_partition_guid" / Bytes(16) * "this partition's GUID (blkid's PARTUUID)",
    "starting_lba" / Int64ul * "first LBA",
    "ending_lba" / Int64ul * "last LBA, inclusive",
    "attributes" / Int64ul * "bit 0 required, 1 no block IO, 2 legacy BIOS bootable, 48-63 type",
    "partition_name" / Bytes(72) * "UTF-16LE name, NUL padded (36 code units)",
)  # 128 bytes (an entry may be larger; the rest is reserved)

SIGNATURE = GPT_SIGNATURE  # (signatures.py: construct-free, for the disk probe)
HEADER_SIZE = GptHeader.sizeof()  # 92
_HEADER_CRC = field_slice(GptHeader, "header_crc32")  # zeroed while the CRC is computed
_SIGNATURE_AT = field_slice(GptHeader, "signature")
#: Refuse entry arrays larger than this (sfdisk and sgdisk stay far below).
MAX_ARRAY_BYTES = 32 << 20
SECTOR_SIZES = SECTOR_PROBE_ORDER  # where the header may sit, likeliest first


def header_crc(raw: bytes, header_size: int) -> int:
    """The CRC32 of a header's first ``header_size`` bytes with ``header_crc32`` taken as
    zero: what ``header_crc32`` must hold (UEFI spec, 5.3.2)."""
    check = bytearray(raw[:header_size])
    check[_HEADER_CRC] = bytes(_HEADER_CRC.stop - _HEADER_CRC.start)
    return zlib.crc32(check)


def guid_str(b: bytes) -> str:
    """A mixed-endian on-disk GUID as blkid prints it (lower case, dashed)."""
    return str(uuid.UUID(bytes_le=bytes(b)))


def _entry_dtype(entry_size: int) -> np.dtype:
    return np.dtype(
        {
            "names": ["type", "uuid", "first", "last", "attrs", "name"],
            "formats": ["V16", "V16", "<u8", "<u8", "<u8", "V72"],
            "offsets": [0, 16, 32, 40, 48, 56],
            "itemsize": entry_size,
        }
    )


class GptHeaderCopy:
    """One header (primary or backup) with what was wrong with it."""

    def __init__(self, which: str, lba: int, sector_size: int, raw, data: bytes) -> None:
        self.which = which
        self.lba = lba
        self.sector_size = sector_size
        self.raw = raw
        self.data = data
        self.problems: list[str] = []
        self.array: bytes | None = None

    @property
    def offset(self) -> int:
        return self.lba * self.sector_size

    @property
    def ok(self) -> bool:
        return not self.problems and self.array is not None

    def __repr__(self) -> str:
        state = "ok" if self.ok else "; ".join(self.problems)
        return f"<GPT {self.which} header LBA {self.lba} ({state})>"


def wanted(ctx: ScanContext, mbr_table) -> bool:
    """Look for a GPT: a protective MBR entry, or the signature at LBA 1 of either size."""
    if mbr_table is not None and mbr_table.protective:
        return True
    return any(ctx.size >= ss + 8 and ctx.source.read(ss, 8) == SIGNATURE for ss in SECTOR_SIZES)


def _load(ctx: ScanContext, which: str, lba: int, ss: int) -> GptHeaderCopy | None:
    """The header at ``lba`` if it has the signature; problems recorded, array loaded."""
    off = lba * ss
    if lba <= 0 or off + ss > ctx.size:
        return None
    data = ctx.source.read(off, ss)
    if data[_SIGNATURE_AT] != SIGNATURE:
        return None
    h = GptHeader.parse(data)
    copy = GptHeaderCopy(which, lba, ss, h, data)
    disk_lbas = ctx.size // ss
    if not HEADER_SIZE <= h.header_size <= ss:
        copy.problems.append(f"header_size {h.header_size} outside {HEADER_SIZE}..{ss}")
        return copy
    crc = header_crc(data, h.header_size)
    if crc != h.header_crc32:
        copy.problems.append(f"header CRC32 {h.header_crc32:#010x} != computed {crc:#010x}")
    if h.my_lba != lba:
        copy.problems.append(f"my_lba {h.my_lba} but the header sits at LBA {lba}")
    n, esz = h.num_partition_entries, h.size_of_partition_entry
    if esz < 128 or not is_pow2(esz) or esz > 1 << 20:
        copy.problems.append(f"size_of_partition_entry {esz} is not 128 x 2^n")
        return copy
    nbytes = n * esz
    if nbytes > MAX_ARRAY_BYTES or nbytes > ctx.size:
        copy.problems.append(
            f"entry array of {n} x {esz} bytes is absurd for a {ctx.size}-byte disk"
        )
        return copy
    arr_off = h.partition_entry_lba * ss
    if h.partition_entry_lba == 0 or arr_off + nbytes > ctx.size:
        copy.problems.append(
            f"entry array at LBA {h.partition_entry_lba} ({nbytes} bytes) lies outside the disk"
        )
        return copy
    if h.first_usable_lba > h.last_usable_lba:
        copy.problems.append(
            f"first_usable_lba {h.first_usable_lba} > last_usable_lba {h.last_usable_lba}"
        )
    elif h.last_usable_lba >= disk_lbas:
        ctx.finding(
            "warning",
            f"GPT {which} header",
            off,
            f"last_usable_lba {h.last_usable_lba} is past the disk's last LBA {disk_lbas - 1}"
            " (the disk was truncated or the image is shorter than the disk was)",
        )
    array = ctx.source.read(arr_off, nbytes)
    acrc = zlib.crc32(array)
    if acrc != h.partition_entry_array_crc32:
        copy.problems.append(
            f"entry array CRC32 {h.partition_entry_array_crc32:#010x} != computed {acrc:#010x}"
        )
    copy.array = array
    return copy


class GptTable:
    """The GPT that was used (``header``: primary, or backup when the primary is damaged)."""

    def __init__(self, used: GptHeaderCopy, primary, backup) -> None:
        self.used = used
        self.primary = primary
        self.backup = backup
        self.header = used.raw
        self.sector_size = used.sector_size
        self.disk_guid = guid_str(used.raw.disk_guid)

    @property
    def entries(self) -> np.ndarray:
        """The entry array as a numpy structured array (type, uuid, first, last, attrs, name)."""
        h = self.header
        return np.frombuffer(
            self.used.array,
            dtype=_entry_dtype(h.size_of_partition_entry),
            count=h.num_partition_entries,
        )

    def volumes(self, ctx: ScanContext) -> list[Volume]:
        """One Volume per used entry; the index is the entry's slot (1-based)."""
        h, ss = self.header, self.sector_size
        esz = h.size_of_partition_entry
        arr_off = h.partition_entry_lba * ss
        ents = self.entries
        used = np.nonzero(
            np.frombuffer(ents["type"].tobytes(), dtype="<u8").reshape(-1, 2).any(axis=1)
        )[0]
        out = []
        for i in used.tolist():
            off = arr_off + i * esz
            e = GptEntry.parse(self.used.array[i * esz : i * esz + 128])
            slot = i + 1
            if e.ending_lba < e.starting_lba:
                ctx.problem(
                    "GPT entry",
                    off,
                    f"partition {slot}: ending_lba {e.ending_lba} < starting_lba {e.starting_lba}",
                )
                continue
            if e.starting_lba < h.first_usable_lba or e.ending_lba > h.last_usable_lba:
                ctx.finding(
                    "warning",
                    "GPT entry",
                    off,
                    f"partition {slot} [{e.starting_lba}, {e.ending_lba}] is outside the "
                    f"usable LBAs [{h.first_usable_lba}, {h.last_usable_lba}]",
                )
            tguid = guid_str(e.partition_type_guid)
            name = bytes(e.partition_name).decode("utf-16-le", "replace").split("\0", 1)[0]
            v = Volume(
                scheme="gpt",
                type=tguid,
                type_name=gpt_type_name(tguid),
                start=e.starting_lba * ss,
                length=(e.ending_lba - e.starting_lba + 1) * ss,
                index=slot,
                name=name or None,
                bootable=bool(e.attributes & 4),
                kind=PARTITION,
                raw=e,
                disk=ctx.source,
            )
            e.host_offset = off
            v.part_uuid = guid_str(e.unique_partition_guid)
            v.flags = gpt_attribute_flags(e.attributes, tguid)
            out.append(v)
        return out


def read_gpt(ctx: ScanContext, mbr_table, sector_size: int | None = None) -> GptTable | None:
    """The GPT of the disk: the primary if sound, else the backup (reported), else None."""
    sizes = (sector_size,) if sector_size else SECTOR_SIZES
    primary = None
    for ss in sizes:
        primary = _load(ctx, "primary", 1, ss)
        if primary is not None:
            break
    protective = mbr_table is not None and mbr_table.protective
    if primary is None and not protective:
        return None
    if mbr_table is None:
        ctx.finding(
            "warning", "protective MBR", 0, "GPT header present but no protective MBR at LBA 0"
        )
    elif not protective:
        ctx.finding(
            "warning",
            "protective MBR",
            0,
            "GPT header present but the MBR has no 0xEE entry; the GPT is used",
        )

    # where the backup should be: alternate_lba of a sound primary, else the last LBA
    backup = None
    tried = []
    cand_sizes = (primary.sector_size,) if primary is not None else sizes
    for ss in cand_sizes:
        lbas = []
        if primary is not None and not primary.problems:
            lbas.append(primary.raw.alternate_lba)
        lbas.append(ctx.size // ss - 1)
        for lba in dict.fromkeys(lbas):
            tried.append(f"LBA {lba} ({ss}-byte sectors)")
            backup = _load(ctx, "backup", lba, ss)
            if backup is not None:
                break
        if backup is not None:
            break

    if primary is not None and primary.ok:
        ctx.structure("GPT header", primary.offset, primary.sector_size, "primary GPT header")
        _array_structure(ctx, primary, "primary")
        if backup is None:
            ctx.finding(
                "warning",
                "GPT backup header",
                primary.raw.alternate_lba * primary.sector_size,
                f"no backup GPT header found (tried {', '.join(tried)})",
            )
        elif not backup.ok:
            ctx.finding(
                "warning",
                "GPT backup header",
                backup.offset,
                f"backup GPT header at LBA {backup.lba} is damaged: {'; '.join(backup.problems)}",
            )
        else:
            _array_structure(ctx, backup, "backup")
            ctx.structure("GPT header", backup.offset, backup.sector_size, "backup GPT header")
            if backup.raw.partition_entry_array_crc32 != primary.raw.partition_entry_array_crc32:
                ctx.finding(
                    "warning",
                    "GPT backup header",
                    backup.offset,
                    "backup entry array differs from the primary's (CRC32s differ)",
                )
        return GptTable(primary, primary, backup)

    if backup is not None and backup.ok:
        if primary is None:
            why = "no 'EFI PART' signature at LBA 1"
            where = backup.sector_size  # LBA 1, in the sectors the backup header uses
        else:
            why = "; ".join(primary.problems)
            where = primary.offset
        ctx.finding(
            "warning",
            "GPT primary header",
            where,
            f"primary GPT damaged ({why}); using the backup header at LBA {backup.lba}",
        )
        ctx.structure("GPT header", backup.offset, backup.sector_size, "backup GPT header")
        _array_structure(ctx, backup, "backup")
        return GptTable(backup, primary, backup)

    # neither copy is sound
    parts = []
    if primary is None:
        parts.append("no primary header at LBA 1")
    else:
        parts.append(f"primary: {'; '.join(primary.problems)}")
    if backup is None:
        parts.append(f"no backup header ({', '.join(tried)})")
    else:
        parts.append(f"backup at LBA {backup.lba}: {'; '.join(backup.problems)}")
    if primary is not None:
        where = primary.offset
    else:  # LBA 1 in the sector size the backup was found with (512 if none was)
        where = backup.sector_size if backup is not None else min(sizes)
    ctx.problem("GPT header", where, "no sound GPT header: " + "; ".join(parts))
    # salvage: use a copy whose array could at least be read
    for copy in (primary, backup):
        if copy is not None and copy.array is not None:
            ctx.finding(
                "warning", "GPT header", copy.offset, f"salvage: reading the {copy.which} table"
            )
            return GptTable(copy, primary, backup)
    return None


def _array_structure(ctx: ScanContext, copy: GptHeaderCopy, which: str) -> None:
    h = copy.raw
    ctx.structure(
        "GPT entry array",
        h.partition_entry_lba * copy.sector_size,
        h.num_partition_entries * h.size_of_partition_entry,
        f"{which} partition entry array: {h.num_partition_entries} x "
        f"{h.size_of_partition_entry} bytes",
    )
