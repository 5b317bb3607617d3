"""LVM2 physical volumes, volume groups and logical volumes (lvm2's "text" format).

Facts from lvm2's lib/format_text (layout.h, format-text.c, import_vsn1.c), checked
against volumes made by lvm2 itself. A physical volume (PV) has a label in one of its
first four 512-byte sectors: "LABELONE", then a PV header (uuid, device size, lists of
data areas and metadata areas). A metadata area starts with a 512-byte header
(" LVM2 x[5A%r0N*>") whose raw locations point at the current metadata text inside the
area (a ring buffer that wraps back to just after the header). The text describes the
volume group (VG): its extent size, its PVs (with ``pe_start``) and its logical volumes
(LVs), each a list of segments mapping logical extents onto (PV, first extent) areas,
linear or striped. Sizes in the text are 512-byte sectors. Checksums are CRC-32 with the
initial value 0xf597a6cf and no final inversion.
"""

from __future__ import annotations

import re
import zlib

from construct import Bytes, Int32ul, Int64ul, Struct

from ..errors import CorruptImage, MissingFile, UnsupportedFeature
from ..io import ByteSource, Concat, Slice, Zero
from . import LOGICAL_VOLUME, ScanContext, Volume

# --- on-disk structures ----------------------------------------------------------------

LabelHeader = Struct(
    "id" / Bytes(8) * "LABELONE",
    "sector_xl" / Int64ul * "sector number of this label within the PV",
    "crc_xl" / Int32ul * "CRC of bytes 20..511 of this sector",
    "offset_xl" / Int32ul * "offset of the PV header from the start of this sector, bytes",
    "type" / Bytes(8) * "LVM2 001",
)  # 32 bytes

PvHeader = Struct(
    "pv_uuid" / Bytes(32) * "PV uuid, 32 characters without dashes",
    "device_size_xl" / Int64ul * "size of the PV, bytes",
)  # then disk_locn lists: data areas, {0,0}, metadata areas, {0,0}, then an extension

DiskLocn = Struct(
    "offset" / Int64ul * "bytes from the start of the PV",
    "size" / Int64ul * "bytes (0 for a data area: to the end of the PV)",
)  # 16 bytes

PvHeaderExtension = Struct(
    "version" / Int32ul * "extension version (2)",
    "flags" / Int32ul * "bit 0: the PV is in use by a VG",
)  # then bootloader area disk_locns, {0,0}

MdaHeader = Struct(
    "checksum_xl" / Int32ul * "CRC of bytes 4..511 of this header",
    "magic" / Bytes(16) * "\\x20LVM2 x[5A%r0N*>",
    "version" / Int32ul * "1",
    "start" / Int64ul * "offset of this metadata area from the start of the PV, bytes",
    "size" / Int64ul * "size of the metadata area, bytes (including this header)",
)  # 40 bytes, then raw_locns up to a zero one

RawLocn = Struct(
    "offset" / Int64ul * "offset of the text from the start of the area, bytes",
    "size" / Int64ul * "length of the text, bytes (including a final NUL)",
    "checksum" / Int32ul * "CRC of the text",
    "flags" / Int32ul * "bit 0: ignored (this area holds no current copy)",
)  # 24 bytes

LABEL_ID = b"LABELONE"
LABEL_TYPE = b"LVM2 001"
MDA_MAGIC = b"\x20LVM2 x[5A%r0N*>"
MDA_HEADER_SIZE = 512
INITIAL_CRC = 0xF597A6CF
RAW_LOCN_IGNORED = 1
SECTOR = 512
MAX_LOCNS = 16
MAX_DEPTH = 32
MAX_TEXT = 64 << 20
#: Segment types vdinspect reads; every other type is listed as unsupported.
READABLE = {"striped", "linear", "zero"}


def lvm_crc(data: bytes, initial: int = INITIAL_CRC) -> int:
    """lvm2's calc_crc: reflected CRC-32, seeded with ``initial``, no final inversion."""
    return zlib.crc32(data, initial ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def format_uuid(raw: str) -> str:
    """A 32-character LVM uuid with lvm2's dashes (6-4-4-4-4-4-6)."""
    cuts = (6, 4, 4, 4, 4, 4, 6)
    out, pos = [], 0
    for c in cuts:
        out.append(raw[pos : pos + c])
        pos += c
    return "-".join(out)


# --- the metadata text ------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\n\f\v\0]+)
  | (?P<comment>\#[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<punct>[=\[\]{},])
  | (?P<word>[^\s=\[\]{},"\#\0]+)
    """,
    re.VERBOSE | re.DOTALL,
)
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?\d+\.\d*(?:[eE][+-]?\d+)?")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


class TextError(ValueError):
    """A syntax error in metadata text (position in characters)."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(f"{message} at character {pos}")
        self.pos = pos


def tokenize(text: str):
    """Yield (kind, value, position) for the LVM text format; comments dropped."""
    pos, n = 0, len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise TextError(f"unexpected {text[pos]!r}", pos)
        kind = m.lastgroup
        if kind == "str":
            yield "str", _ESCAPE.sub(r"\1", m.group()[1:-1]), pos
        elif kind in ("punct", "word"):
            yield kind, m.group(), pos
        pos = m.end()


def _scalar(kind: str, value: str):
    if kind == "str":
        return value
    if _INT.fullmatch(value):
        return int(value)
    if _FLOAT.fullmatch(value):
        return float(value)
    return value


def parse_text(text: str) -> dict:
    """Parse LVM metadata text into nested dicts (sections) of values, lists and dicts.

    Grammar: ``name { ... }`` opens a section, ``name = value`` sets a value; a value is
    a string, a number or ``[v, v, ...]``. Duplicate names in one section are an error.
    """
    root: dict = {}
    stack = [root]
    toks = tokenize(text)
    for kind, value, pos in toks:
        if kind == "punct":
            if value == "}":
                if len(stack) == 1:
                    raise TextError("'}' without a section to close", pos)
                stack.pop()
                continue
            raise TextError(f"unexpected {value!r}", pos)
        name = value
        try:
            k2, v2, p2 = next(toks)
        except StopIteration:
            raise TextError(f"{name!r} at the end of the text", pos) from None
        cur = stack[-1]
        if name in cur:
            raise TextError(f"{name!r} is defined twice in one section", pos)
        if v2 == "{" and k2 == "punct":
            if len(stack) > MAX_DEPTH:
                raise TextError(f"sections nested deeper than {MAX_DEPTH}", p2)
            cur[name] = new = {}
            stack.append(new)
        elif v2 == "=" and k2 == "punct":
            cur[name] = _value(toks, p2)
        else:
            raise TextError(f"expected '=' or '{{' after {name!r}", p2)
    if len(stack) != 1:
        raise TextError("unclosed section", len(text))
    return root


def _value(toks, pos: int):
    try:
        kind, value, pos = next(toks)
    except StopIteration:
        raise TextError("missing value", pos) from None
    if kind != "punct":
        return _scalar(kind, value)
    if value != "[":
        raise TextError(f"unexpected {value!r} as a value", pos)
    out = []
    expect_item = True
    for kind, value, pos in toks:
        if kind == "punct":
            if value == "]":
                return out
            if value == "," and not expect_item:
                expect_item = True
                continue
            raise TextError(f"unexpected {value!r} in a list", pos)
        if not expect_item:
            raise TextError("missing ',' in a list", pos)
        out.append(_scalar(kind, value))
        expect_item = False
    raise TextError("unclosed list", pos)


# --- physical volumes --------------------------------------------------------------------


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
        self.vg_id = _str_or_none(self.vg.get("id"))


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
    for s in range(4):
        if (s + 1) * SECTOR > source.size:
            return None
        data = source.read(s * SECTOR, SECTOR)
        if data[:8] == LABEL_ID and data[24:32] == LABEL_TYPE:
            return s, data
    return None


def read_pv(ctx: ScanContext, volume: Volume, source: ByteSource, base: int):
    """Parse the PV label, header and metadata areas of one volume (None if not a PV)."""
    found = find_label(source)
    if found is None:
        return None
    sector, data = found
    where = base + sector * SECTOR
    pv = PhysicalVolume(volume, source, base)
    pv.label = LabelHeader.parse(data)
    crc = lvm_crc(data[20:])
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
    if not 32 <= off <= SECTOR - 40:
        ctx.problem("LVM2 PV header", where, f"PV header offset {off} outside the label sector")
        return None
    pv.header = PvHeader.parse(data[off:])
    pv.uuid = pv.header.pv_uuid.decode("ascii", "replace")
    pv.device_size = pv.header.device_size_xl
    pos = off + 40
    lists: list[list] = [[], []]
    for which in (0, 1):
        for _ in range(MAX_LOCNS):
            if pos + 16 > SECTOR:
                break
            loc = DiskLocn.parse(data[pos : pos + 16])
            pos += 16
            if loc.offset == 0:
                break
            lists[which].append(loc)
    pv.data_areas, pv.metadata_areas = lists
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
    crc = lvm_crc(hdr[4:])
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
    pos = 40
    for _ in range(MAX_LOCNS):
        if pos + 24 > MDA_HEADER_SIZE:
            break
        rl = RawLocn.parse(hdr[pos : pos + 24])
        pos += 24
        if rl.offset == 0:
            break
        if rl.flags & RAW_LOCN_IGNORED:
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


# --- volume groups and logical volumes ------------------------------------------------------


class Segment:
    """One segment of an LV: logical extents [start_extent, +extent_count) of one type."""

    def __init__(self, name: str, raw: dict) -> None:
        self.name = name
        self.raw = raw
        self.start_extent = raw.get("start_extent")
        self.extent_count = raw.get("extent_count")
        kind = raw.get("type", "?")
        self.type = kind if isinstance(kind, str) else f"invalid ({kind!r})"
        self.stripe_count = raw.get("stripe_count", 1)
        self.stripe_size = raw.get("stripe_size", 0)  # sectors
        stripes = raw.get("stripes", [])
        self.areas = list(zip(stripes[0::2], stripes[1::2])) if isinstance(stripes, list) else []

    def __repr__(self) -> str:
        return f"<LVM2 segment {self.type} +{self.start_extent} x{self.extent_count}>"


class LogicalVolume:
    """An LV of a VG: its metadata section and segments."""

    def __init__(self, vg: VolumeGroup, name: str, raw: dict) -> None:
        self.vg = vg
        self.name = name
        self.raw = raw
        self.id = _str_or_none(raw.get("id"))
        status = raw.get("status", [])
        self.status = status if isinstance(status, list) else []
        self.visible = "VISIBLE" in self.status
        segs = [Segment(k, v) for k, v in raw.items() if isinstance(v, dict)]
        self.segments = sorted(
            segs, key=lambda s: s.start_extent if isinstance(s.start_extent, int) else -1
        )

    @property
    def full_name(self) -> str:
        return f"{self.vg.name}/{self.name}"

    def __repr__(self) -> str:
        return f"<LVM2 LV {self.full_name} {len(self.segments)} segment(s)>"


class VolumeGroup:
    """A VG as described by its newest metadata copy on this disk."""

    def __init__(self, copy: MetadataCopy) -> None:
        self.copy = copy
        self.raw = copy.vg
        self.name = copy.vg_name
        self.id = copy.vg_id
        self.seqno = copy.seqno
        self.extent_size = self.raw.get("extent_size")  # sectors
        self.pvs: dict[str, dict] = {}
        self.pv_found: dict[str, PhysicalVolume] = {}
        self.lvs: dict[str, LogicalVolume] = {}

    def __repr__(self) -> str:
        return (
            f"<LVM2 VG {self.name} seqno={self.seqno} {len(self.pvs)} PV(s) {len(self.lvs)} LV(s)>"
        )


class StripedSource(ByteSource):
    """Equal-size areas read round-robin in ``stripe_size``-byte chunks (dm-stripe)."""

    def __init__(self, stripes: list[ByteSource], stripe_size: int, name: str) -> None:
        self.stripes = stripes
        self.stripe_size = stripe_size
        self.size = sum(s.size for s in stripes)
        self.name = name

    def _read(self, offset: int, length: int) -> bytes:
        ss, n = self.stripe_size, len(self.stripes)
        parts = []
        while length > 0:
            chunk, within = divmod(offset, ss)
            row, k = divmod(chunk, n)
            take = min(ss - within, length)
            parts.append(self.stripes[k].read(row * ss + within, take))
            offset += take
            length -= take
        return b"".join(parts)

    def _damage_pairs(self, start: int, end: int) -> list[tuple[int, int]]:
        ss, n = self.stripe_size, len(self.stripes)
        out = []
        for k, stripe in enumerate(self.stripes):
            for a, b in stripe._damage_pairs(0, stripe.size):
                # stripe bytes [a, b) lie in chunks of ss bytes spread n chunks apart
                pos = a
                while pos < b:
                    row, within = divmod(pos, ss)
                    take = min(ss - within, b - pos)
                    logical = (row * n + k) * ss + within
                    if logical < end and logical + take > start:
                        out.append((max(start, logical), min(end, logical + take)))
                    pos += take
        return out


def _str_or_none(value) -> str | None:
    return value if isinstance(value, str) else None


def _section(parent: dict, name: str) -> dict:
    value = parent.get(name)
    return value if isinstance(value, dict) else {}


def _int(ctx, value, what: str, where: int, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        ctx.fail(CorruptImage, f"{what} is {value!r}", "LVM2 metadata text", where)
    return value


def _build_vg(ctx: ScanContext, copy: MetadataCopy, pvs_by_id: dict) -> VolumeGroup:
    vg = VolumeGroup(copy)
    where = copy.offset
    _int(ctx, vg.extent_size, f"VG {vg.name}: extent_size", where, 1)
    seen_ids: dict[str, str] = {}
    for name, sec in _section(vg.raw, "physical_volumes").items():
        if not isinstance(sec, dict):
            continue
        pid = sec.get("id")
        if not isinstance(pid, str):
            ctx.fail(CorruptImage, f"VG {vg.name}: PV {name} has no id", "LVM2 metadata text", where)
        if pid in seen_ids:
            ctx.fail(CorruptImage, f"VG {vg.name}: PV {pid} is listed twice ({seen_ids[pid]} and {name})", "LVM2 metadata text", where)
        seen_ids[pid] = name
        _int(ctx, sec.get("pe_start"), f"PV {name}: pe_start", where)
        _int(ctx, sec.get("pe_count"), f"PV {name}: pe_count", where)
        vg.pvs[name] = sec
        if pid in pvs_by_id:
            vg.pv_found[name] = pvs_by_id[pid]
    for name, sec in _section(vg.raw, "logical_volumes").items():
        if isinstance(sec, dict):
            vg.lvs[name] = LogicalVolume(vg, name, sec)
    return vg


def _lv_type(lv: LogicalVolume, cow_of: dict) -> str:
    if lv.name in cow_of:
        return "snapshot"
    types = {s.type for s in lv.segments}
    if types <= {"striped"}:
        striped = any(isinstance(s.stripe_count, int) and s.stripe_count > 1 for s in lv.segments)
        return "striped" if striped else "linear"
    return lv.segments[0].type if lv.segments else "?"


def _lv_source(ctx: ScanContext, vg: VolumeGroup, lv: LogicalVolume) -> tuple[ByteSource, int]:
    """The LV's bytes and the disk offset of its first extent (raises if unreadable)."""
    where = vg.copy.offset
    ext_bytes = vg.extent_size * SECTOR
    parts: list[ByteSource] = []
    expect = 0
    first_offset = None
    for seg in lv.segments:
        what = f"LV {lv.full_name} {seg.name}"
        start = _int(ctx, seg.start_extent, f"{what}: start_extent", where)
        count = _int(ctx, seg.extent_count, f"{what}: extent_count", where, 1)
        if start != expect:
            ctx.fail(CorruptImage, f"{what} starts at extent {start}, expected {expect} (segments must be contiguous)", "LVM2 metadata text", where)
        expect = start + count
        if (expect * ext_bytes) >> 63:
            ctx.fail(CorruptImage, f"{what}: size overflows", "LVM2 metadata", where)
        if seg.type == "zero":
            parts.append(Zero(count * ext_bytes))
            continue
        if seg.type not in ("striped", "linear"):
            raise UnsupportedFeature(
                f"LV {lv.full_name} uses segment type {seg.type!r}, which vdinspect cannot "
                "read yet",
                path=ctx.path,
                structure="LVM2 segment",
                offset=where,
            )
        n = _int(ctx, seg.stripe_count, f"{what}: stripe_count", where, 1)
        if len(seg.areas) != n:
            ctx.fail(CorruptImage, f"{what}: stripe_count {n} but {len(seg.areas)} stripes listed", "LVM2 metadata text", where)
        if count % n:
            ctx.fail(CorruptImage, f"{what}: {count} extents do not divide into {n} stripes", "LVM2 metadata text", where)
        area_len = count // n
        slices = []
        for pv_name, pe in seg.areas:
            pe = _int(ctx, pe, f"{what}: first extent on {pv_name}", where)
            sec = vg.pvs.get(pv_name)
            if sec is None:
                ctx.fail(CorruptImage, f"{what} refers to PV {pv_name!r}, which the VG does not list", "LVM2 metadata text", where)
            if pe + area_len > sec["pe_count"]:
                ctx.fail(CorruptImage, f"{what}: extents [{pe}, {pe + area_len}) on {pv_name} exceed its "
                    f"pe_count {sec['pe_count']}", "LVM2 metadata text", where)
            pv = vg.pv_found.get(pv_name)
            off = sec["pe_start"] * SECTOR + pe * ext_bytes
            length = area_len * ext_bytes
            if pv is None:
                msg = (
                    f"LV {lv.full_name} needs PV {pv_name} ({sec.get('id')}), which is not on "
                    "this disk"
                )
                if ctx.strict:
                    raise MissingFile(msg, path=ctx.path, structure="LVM2 PV")
                ctx.finding("warning", "LVM2 logical volume", where, msg + "; read as zeros")
                slices.append(Zero(length))
                continue
            if off + length > pv.source.size:
                ctx.fail(CorruptImage, f"{what}: extents [{pe}, {pe + area_len}) on {pv_name} lie past the end of "
                    f"the PV ({pv.source.size} bytes)", "LVM2 metadata text", where)
            if first_offset is None:
                first_offset = pv.base + off
            slices.append(Slice(pv.source, off, length, name=f"{pv.volume.key or 'disk'}+{off:#x}"))
        if n == 1:
            parts.append(slices[0])
        else:
            ss = _int(ctx, seg.stripe_size, f"{what}: stripe_size", where, 1) * SECTOR
            if (area_len * ext_bytes) % ss:
                raise UnsupportedFeature(
                    f"{what}: stripe size {ss} does not divide the area size",
                    path=ctx.path,
                    structure="LVM2 segment",
                    offset=where,
                )
            parts.append(StripedSource(slices, ss, name=f"{lv.full_name}:{seg.name}"))
    if not parts:
        ctx.fail(CorruptImage, f"LV {lv.full_name} has no segments", "LVM2 metadata", where)
    src = parts[0] if len(parts) == 1 else Concat(parts, name=f"{ctx.path}#{lv.full_name}")
    return src, first_offset if first_offset is not None else 0


def scan_lvm(ctx: ScanContext, members: list[Volume]) -> tuple[list[Volume], list[VolumeGroup]]:
    """Logical volumes of the VGs whose PVs are among ``members`` (LVM2_member volumes)."""
    pvs: list[PhysicalVolume] = []
    by_id: dict[str, PhysicalVolume] = {}
    for v in members:
        base = v.start
        disk = v._disk if v._disk is not None else ctx.source  # PVs may sit on several disks
        src = Slice(disk, v.start, min(v.length, disk.size - v.start))
        pv = read_pv(ctx, v, src, base)
        if pv is None:
            continue
        if pv.id in by_id:
            other = by_id[pv.id].volume.key or "disk"
            ctx.problem(
                "LVM2 label",
                base,
                f"PV uuid {pv.id} appears twice: on {other} and on {v.key or 'disk'} "
                "(a cloned PV?); the second is ignored",
            )
            continue
        by_id[pv.id] = pv
        pvs.append(pv)

    newest: dict = {}
    for pv in pvs:
        for copy in pv.copies:
            if copy.vg_name is None:
                continue
            key = copy.vg_id or copy.vg_name
            if key not in newest or copy.seqno > newest[key].seqno:
                if key in newest:
                    ctx.finding(
                        "info",
                        "LVM2 metadata text",
                        newest[key].offset,
                        f"VG {copy.vg_name}: older metadata (seqno {newest[key].seqno}) "
                        f"next to seqno {copy.seqno}",
                    )
                newest[key] = copy
    vgs = []
    out: list[Volume] = []
    for copy in newest.values():
        try:
            vg = _build_vg(ctx, copy, by_id)
        except CorruptImage as e:
            if ctx.strict:
                raise
            ctx.finding("error", "LVM2 metadata text", copy.offset, str(e.detail))
            continue
        vgs.append(vg)
        missing = [n for n in vg.pvs if n not in vg.pv_found]
        if missing:
            ctx.finding(
                "warning",
                "LVM2 volume group",
                copy.offset,
                f"VG {vg.name}: PV(s) {', '.join(missing)} are not on this disk",
            )
        cow_of = {}
        for lv in vg.lvs.values():
            for seg in lv.segments:
                if seg.type == "snapshot" and isinstance(seg.raw.get("cow_store"), str):
                    cow_of[seg.raw["cow_store"]] = lv
        for lv in vg.lvs.values():
            if not lv.visible:
                continue
            try:
                out.append(_lv_volume(ctx, vg, lv, cow_of))
            except CorruptImage as e:
                if ctx.strict:
                    raise
                ctx.finding("error", "LVM2 logical volume", copy.offset, str(e.detail))
    return out, vgs


def _lv_volume(ctx: ScanContext, vg: VolumeGroup, lv: LogicalVolume, cow_of: dict) -> Volume:
    kind = _lv_type(lv, cow_of)
    ext_bytes = vg.extent_size * SECTOR
    total = 0
    for seg in lv.segments:
        if isinstance(seg.extent_count, int) and seg.extent_count > 0:
            total += seg.extent_count
    length = total * ext_bytes
    if length >> 63:
        ctx.fail(CorruptImage, f"LV {lv.full_name}: size overflows", "LVM2 metadata", vg.copy.offset)
    vol = Volume(
        scheme="lvm2",
        type=kind,
        type_name=f"LVM2 {kind} volume",
        start=0,
        length=length,
        name=lv.full_name,
        kind=LOGICAL_VOLUME,
        raw=lv,
        key=lv.full_name,
    )
    vol.part_uuid = lv.id
    vol.flags = list(lv.status)
    if kind == "snapshot" or not {s.type for s in lv.segments} <= READABLE:
        reason = (
            kind
            if kind == "snapshot"
            else next(s.type for s in lv.segments if s.type not in READABLE)
        )
        vol.filesystem = f"unsupported: {reason}"
        path, where = ctx.path, vg.copy.offset
        vol.set_unreadable(
            lambda: UnsupportedFeature(
                f"LV {lv.full_name} is a {reason} volume, which vdinspect cannot read yet",
                path=path,
                structure="LVM2 logical volume",
                offset=where,
            )
        )
        return vol
    try:
        src, first = _lv_source(ctx, vg, lv)
    except MissingFile as e:
        err = e
        vol.set_unreadable(lambda: err)
        vol.filesystem = "unavailable: missing PV"
        ctx.finding("warning", "LVM2 logical volume", vg.copy.offset, str(e.detail))
        return vol
    except CorruptImage as e:
        if ctx.strict:
            raise
        ctx.finding("error", "LVM2 logical volume", vg.copy.offset, str(e.detail))
        err = e
        vol.set_unreadable(lambda: err)
        return vol
    vol._source = src
    vol.start = first
    return vol
