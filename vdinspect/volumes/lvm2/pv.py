"""LVM2 physical volumes: the label and PV header, the metadata areas and the metadata
text their ring buffers hold.

A PV has a label in one of its first four 512-byte sectors: "LABELONE", then a PV header
(uuid, device size, lists of data areas and metadata areas). A metadata area starts with a
512-byte header whose raw locations point at the current metadata text inside the area (a
ring buffer that wraps back to just after the header).
"""

from __future__ import annotations

from ...io import ByteSource
from .. import ScanContext, Volume
from .structs import (
    LABEL_SCAN_SECTORS,
    MAX_LOCNS,
    MDA_CRC_FROM,
    MDA_HEADER_SIZE,
    MDA_MAGIC,
    SECTOR,
    DiskLocn,
    LabelHeader,
    MdaHeader,
    PvHeader,
    RawLocn,
    format_uuid,
    is_label,
    label_crc,
    lvm_crc,
)
from .text import TextError, parse_text, string_or_none

MAX_TEXT = 64 << 20  # metadata text longer than this is corrupt


class MetadataCopy:
    """One metadata text found in a PV's metadata area."""

    def __init__(self, text: str, tree: dict, offset: int, size: int) -> None:
        self.text = text
        self.tree = tree
        self.offset = offset  # on the scanned disk
        self.size = size
        self.vg_name = next((k for k, v in tree.items() if isinstance(v, dict)), None)
        self.vg = tree.get(self.vg_name, {}) if self.vg_name else {}
        seq = self.vg.get("seqno", 0)
        self.seqno = seq if isinstance(seq, int) else 0
        self.vg_id = string_or_none(self.vg.get("id"))


class PhysicalVolume:
    """A PV found on the disk: its label, header, areas and metadata copies."""

    def __init__(self, volume: Volume, source: ByteSource, base: int) -> None:
        self.volume = volume
        self.source = source
        self.base = base  # offset of the PV on the scanned disk
        self.label = None
        self.header = None
        self.uuid = ""
        self.device_size = 0
        self.data_areas: list = []
        self.metadata_areas: list = []
        self.mda_headers: list = []
        self.copies: list[MetadataCopy] = []

    @property
    def id(self) -> str:
        return format_uuid(self.uuid)

    def __repr__(self) -> str:
        return f"<LVM2 PV {self.id} on {self.volume.key or 'disk'}>"


def find_label(source: ByteSource) -> tuple[int, bytes] | None:
    """(sector, bytes) of the LABELONE sector among the first four, or None."""
    for s in range(LABEL_SCAN_SECTORS):
        if (s + 1) * SECTOR > source.size:
            return None
        data = source.read(s * SECTOR, SECTOR)
        if is_label(data):
            return s, data
    return None


def _locn_list(data: bytes, pos: int, entry, end: int) -> tuple[list, int]:
    """The ``entry`` records (disk_locn, raw_locn) from ``pos`` up to the one with offset 0
    that ends the list, or ``end``, at most MAX_LOCNS; and where the next list starts."""
    size = entry.sizeof()
    out: list = []
    for _ in range(MAX_LOCNS):
        if pos + size > end:
            break
        loc = entry.parse(data[pos : pos + size])
        pos += size
        if loc.offset == 0:
            break
        out.append(loc)
    return out, pos


def _locn_lists(data: bytes, pos: int) -> list[list]:
    """The data-area and metadata-area disk_locn lists, each ended by a zero entry."""
    areas, pos = _locn_list(data, pos, DiskLocn, SECTOR)
    return [areas, _locn_list(data, pos, DiskLocn, SECTOR)[0]]


def read_pv(ctx: ScanContext, volume: Volume, source: ByteSource, base: int):
    """Parse the PV label, header and metadata areas of one volume (None if not a PV)."""
    found = find_label(source)
    if found is None:
        return None
    sector, data = found
    where = base + sector * SECTOR
    pv = PhysicalVolume(volume, source, base)
    pv.label = LabelHeader.parse(data)
    crc = label_crc(data)
    if crc != pv.label.crc_xl:
        ctx.finding(
            "warning",
            "LVM2 label",
            where,
            f"label CRC {pv.label.crc_xl:#010x} != computed {crc:#010x}; not used as a PV",
        )
        return None
    ctx.structure("LVM2 label", where, SECTOR, "LVM2 PV label and PV header")
    off = pv.label.offset_xl
    if not LabelHeader.sizeof() <= off <= SECTOR - PvHeader.sizeof():
        ctx.problem("LVM2 PV header", where, f"PV header offset {off} outside the label sector")
        return None
    pv.header = PvHeader.parse(data[off:])
    pv.uuid = pv.header.pv_uuid.decode("ascii", "replace")
    pv.device_size = pv.header.device_size_xl
    pv.data_areas, pv.metadata_areas = _locn_lists(data, off + PvHeader.sizeof())
    if pv.device_size > source.size:
        ctx.finding(
            "warning",
            "LVM2 PV header",
            where + off,
            f"PV {pv.id} says it is {pv.device_size} bytes, but its partition holds {source.size}",
        )
    for loc in pv.metadata_areas:
        _read_mda(ctx, pv, loc)
    return pv


def _read_mda(ctx: ScanContext, pv: PhysicalVolume, loc) -> None:
    src, base = pv.source, pv.base
    where = base + loc.offset
    if loc.size < MDA_HEADER_SIZE or loc.offset + loc.size > src.size:
        ctx.finding(
            "warning",
            "LVM2 metadata area",
            where,
            f"metadata area [{loc.offset}, +{loc.size}) does not fit the PV ({src.size} bytes)",
        )
        return
    hdr = src.read(loc.offset, MDA_HEADER_SIZE)
    h = MdaHeader.parse(hdr)
    if h.magic != MDA_MAGIC:
        ctx.finding("warning", "LVM2 metadata area", where, "metadata area header: bad magic")
        return
    crc = lvm_crc(hdr[MDA_CRC_FROM:])
    if crc != h.checksum_xl:
        ctx.finding(
            "warning",
            "LVM2 metadata area",
            where,
            f"metadata area header CRC {h.checksum_xl:#010x} != computed {crc:#010x}",
        )
        return
    if h.start != loc.offset or h.size != loc.size:
        ctx.finding(
            "warning",
            "LVM2 metadata area",
            where,
            f"metadata area header says [{h.start}, +{h.size}), the PV header "
            f"[{loc.offset}, +{loc.size})",
        )
    pv.mda_headers.append(h)
    ctx.structure("LVM2 metadata area", where, MDA_HEADER_SIZE, "metadata area header")
    for rl in _locn_list(hdr, MdaHeader.sizeof(), RawLocn, MDA_HEADER_SIZE)[0]:
        if rl.flags.RAW_LOCN_IGNORED:
            continue
        text = _read_ring(ctx, pv, loc, rl)
        if text is None:
            continue
        body = text.rstrip(b"\0").decode("utf-8", "replace")
        try:
            tree = parse_text(body)
        except TextError as e:
            ctx.problem("LVM2 metadata text", where + rl.offset, f"metadata text: {e}")
            continue
        pv.copies.append(MetadataCopy(body, tree, where + rl.offset, rl.size))
        ctx.structure(
            "LVM2 metadata text", where + rl.offset, rl.size, "current VG metadata (text)"
        )
        break  # the first live raw location is the committed one


def _read_ring(ctx: ScanContext, pv: PhysicalVolume, loc, rl) -> bytes | None:
    """The text of one raw location, following the ring buffer's wrap."""
    where = pv.base + loc.offset + rl.offset
    ring = loc.size - MDA_HEADER_SIZE
    if rl.offset < MDA_HEADER_SIZE or rl.offset >= loc.size or rl.size > ring:
        ctx.problem(
            "LVM2 metadata area",
            where,
            f"raw location [{rl.offset}, +{rl.size}) does not fit the {loc.size}-byte area",
        )
        return None
    if rl.size > MAX_TEXT:
        ctx.problem("LVM2 metadata area", where, f"metadata text of {rl.size} bytes is absurd")
        return None
    first = min(rl.size, loc.size - rl.offset)
    text = pv.source.read(loc.offset + rl.offset, first)
    if first < rl.size:
        text += pv.source.read(loc.offset + MDA_HEADER_SIZE, rl.size - first)
    crc = lvm_crc(text)
    if crc != rl.checksum:
        ctx.finding(
            "warning",
            "LVM2 metadata text",
            where,
            f"metadata text CRC {rl.checksum:#010x} != computed {crc:#010x}; copy ignored",
        )
        return None
    return text
