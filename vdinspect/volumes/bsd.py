"""BSD disklabels: inside an MBR partition of type 0xA5/0xA6/0xA9, or alone on a disk.

Facts from the BSDs' <sys/disklabel.h> (the i386 layout: the label sits at sector 1 of the
slice, little-endian; alpha and sparc put it at byte 64 or 128 of sector 0) as libblkid
reads it. Offsets in the entries count sectors from the start of the whole disk. Entries
of fstype 0 (unused) are skipped; numbering follows libblkid: the MBR's numbers first,
then the label's partitions in table order (#5, #6 ... on a disk with primaries only).
"""

from __future__ import annotations

import struct

from construct import Array, Bytes, Int8ul, Int16ul, Int32ul, Struct

from . import PARTITION, ScanContext, Volume
from .types import MBR_BSD, bsd_fstype_name

# --- on-disk structures ----------------------------------------------------------------

BsdPartition = Struct(
    "p_size" / Int32ul * "length, sectors",
    "p_offset" / Int32ul * "first sector, counted from the start of the disk",
    "p_fsize" / Int32ul * "filesystem fragment size, bytes",
    "p_fstype" / Int8ul * "filesystem type (types.BSD_FSTYPES; 0 = unused)",
    "p_frag" / Int8ul * "fragments per block",
    "p_cpg" / Int16ul * "cylinders per group",
)  # 16 bytes

BsdDisklabel = Struct(
    "d_magic" / Int32ul * "0x82564557",
    "d_type" / Int16ul * "drive type",
    "d_subtype" / Int16ul * "controller specific",
    "d_typename" / Bytes(16) * "type name",
    "d_packname" / Bytes(16) * "pack identifier",
    "d_secsize" / Int32ul * "bytes per sector",
    "d_nsectors" / Int32ul * "sectors per track",
    "d_ntracks" / Int32ul * "tracks per cylinder",
    "d_ncylinders" / Int32ul * "cylinders",
    "d_secpercyl" / Int32ul * "sectors per cylinder",
    "d_secperunit" / Int32ul * "sectors per unit",
    "d_sparespertrack" / Int16ul * "spare sectors per track",
    "d_sparespercyl" / Int16ul * "spare sectors per cylinder",
    "d_acylinders" / Int32ul * "alternate cylinders",
    "d_rpm" / Int16ul * "rotational speed",
    "d_interleave" / Int16ul * "hardware sector interleave",
    "d_trackskew" / Int16ul * "sector 0 skew per track",
    "d_cylskew" / Int16ul * "sector 0 skew per cylinder",
    "d_headswitch" / Int32ul * "head switch time, microseconds",
    "d_trkseek" / Int32ul * "track-to-track seek, microseconds",
    "d_flags" / Int32ul * "generic flags",
    "d_drivedata" / Array(5, Int32ul) * "drive-type specific",
    "d_spare" / Array(5, Int32ul) * "reserved",
    "d_magic2" / Int32ul * "0x82564557 again",
    "d_checksum" / Int16ul * "XOR of the 16-bit words of the label and its entries = 0",
    "d_npartitions" / Int16ul * "entries that follow",
    "d_bbsize" / Int32ul * "boot area size, bytes",
    "d_sbsize" / Int32ul * "max superblock size, bytes",
)  # 148 bytes, then d_npartitions x BsdPartition

MAGIC = 0x82564557
MAGIC_BYTES = struct.pack("<I", MAGIC)
LABEL_SIZE = 148
MAX_PARTITIONS = 16
#: Where a label may sit, bytes from the start of the slice (i386 first).
LOCATIONS = (512, 64, 128)
PARENT_TYPES = frozenset(MBR_BSD)
LETTERS = "abcdefghijklmnop"


class BsdLabel:
    """A parsed disklabel: ``header`` and its partition entries."""

    def __init__(
        self, header, entries, offset: int, parent: Volume | None, first: int, sector_size: int
    ) -> None:
        self.header = header
        self.entries = entries
        self.offset = offset
        self.parent = parent
        self.first_index = first
        self.sector_size = sector_size
        self.flavour = MBR_BSD.get(parent.raw.type, "bsd") if parent is not None else "bsd"

    def volumes(self, ctx: ScanContext) -> list[Volume]:
        """The used entries as Volumes (entries outside the parent slice are reported)."""
        out = []
        index = self.first_index
        ss = self.sector_size
        p = self.parent
        for k, e in enumerate(self.entries):
            if e.p_fstype == 0:
                continue
            start, length = e.p_offset * ss, e.p_size * ss
            where = self.offset + LABEL_SIZE + 16 * k
            if p is not None:
                if start == p.start and length == p.length:
                    continue
                if start < p.start or start + length > p.end:
                    ctx.finding(
                        "warning",
                        "BSD disklabel entry",
                        where,
                        f"BSD partition {LETTERS[k]} [{e.p_offset}, +{e.p_size}) lies outside "
                        f"its slice (partition {p.index}); ignored",
                    )
                    continue
            v = Volume(
                scheme="bsd",
                type=f"0x{e.p_fstype:02x}",
                type_name=bsd_fstype_name(e.p_fstype),
                start=start,
                length=length,
                index=index,
                name=LETTERS[k],
                kind=PARTITION,
                raw=e,
                disk=ctx.source,
                parent=p,
            )
            e.host_offset = where
            out.append(v)
            index += 1
        return out


def read_disklabel(
    ctx: ScanContext, parent: Volume | None, first_index: int, sector_size: int = 512
) -> BsdLabel | None:
    """The disklabel of ``parent`` (or of the whole disk when None), or None if absent."""
    base = parent.start if parent is not None else 0
    limit = min(parent.end, ctx.size) if parent is not None else ctx.size
    for loc in LOCATIONS:
        off = base + loc
        if off + LABEL_SIZE > limit:
            continue
        if ctx.source.read(off, 4) != MAGIC_BYTES:
            continue
        room = min(512 - (loc % 512), limit - off)
        data = ctx.source.read(off, room)
        h = BsdDisklabel.parse(data)
        if h.d_magic2 != MAGIC:
            continue
        n = h.d_npartitions
        if n > MAX_PARTITIONS:
            ctx.finding(
                "info",
                "BSD disklabel",
                off,
                f"d_npartitions {n} > {MAX_PARTITIONS}; the first {MAX_PARTITIONS} are read",
            )
            n = MAX_PARTITIONS
        n = min(n, (room - LABEL_SIZE) // 16)
        body = data[: LABEL_SIZE + 16 * n]
        words = struct.unpack(f"<{len(body) // 2}H", body[: len(body) // 2 * 2])
        x = 0
        for w in words:
            x ^= w
        if x != 0:
            ctx.finding("warning", "BSD disklabel", off, "d_checksum does not match the label")
        entries = [BsdPartition.parse(body[LABEL_SIZE + 16 * i :]) for i in range(n)]
        ctx.structure("BSD disklabel", off, LABEL_SIZE + 16 * n, f"disklabel, {n} entries")
        return BsdLabel(h, entries, off, parent, first_index, sector_size)
    return None
