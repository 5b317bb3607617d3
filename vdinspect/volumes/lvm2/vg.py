"""LVM2 volume groups and logical volumes: the VG a metadata text describes, its LVs and
their segments, and the bytes of an LV (linear, striped or zero segments over PV extents).

Sizes in the metadata text are 512-byte sectors; a segment maps logical extents
``[start_extent, +extent_count)`` onto (PV, first extent) areas, round-robin in
``stripe_size`` chunks when it has several stripes (dm-stripe).
"""

from __future__ import annotations

from collections.abc import Iterator

from ...errors import CorruptImage, MissingFile, UnsupportedFeature
from ...io import ByteSource, Concat, HostPieces, HostRanges, Slice, Zero, join_host_ranges
from .. import ScanContext
from .pv import MetadataCopy, PhysicalVolume
from .structs import SECTOR
from .text import section, string_or_none


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
        self.id = string_or_none(raw.get("id"))
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
        return b"".join(s.read(at, take) for s, at, take in self._pieces(offset, length))

    def _pieces(self, offset: int, length: int) -> Iterator[tuple[ByteSource, int, int]]:
        """(stripe, offset in it, bytes) of ``[offset, +length)``, chunk by chunk."""
        ss, n = self.stripe_size, len(self.stripes)
        while length > 0:
            chunk, within = divmod(offset, ss)
            row, k = divmod(chunk, n)
            take = min(ss - within, length)
            yield self.stripes[k], row * ss + within, take
            offset += take
            length -= take

    def readinto(self, offset: int, buffer) -> None:
        """Fill ``buffer`` chunk by chunk from the stripes, with no joined copy."""
        mv = memoryview(buffer).cast("B")
        self._check_range(offset, len(mv))
        at = 0
        for stripe, local, take in self._pieces(offset, len(mv)):
            stripe.readinto(local, mv[at:at + take])
            at += take

    def host_ranges(self, offset: int, length: int) -> HostRanges:
        """The stripes' host ranges chunk by chunk (see ``ByteSource.host_ranges``), pieces
        that follow each other in one host file joined; None when a stripe cannot say."""
        self._check_range(offset, length)
        out: list = []
        for stripe, local, take in self._pieces(offset, length):
            got = stripe.host_ranges(local, take)
            if got is None:
                return None
            join_host_ranges(out, got)
        return out

    def host_pieces(self, offset: int, length: int) -> HostPieces:
        """The stripes' host pieces chunk by chunk (see ``ByteSource.host_pieces``)."""
        self._check_range(offset, length)
        out: list = []
        for stripe, local, take in self._pieces(offset, length):
            join_host_ranges(out, stripe.host_pieces(local, take))
        return out

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


def _int(ctx, value, what: str, where: int, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        ctx.fail(CorruptImage, f"{what} is {value!r}", "LVM2 metadata text", where)
    return value


def build_vg(ctx: ScanContext, copy: MetadataCopy, pvs_by_id: dict) -> VolumeGroup:
    """The VG of one metadata copy, its PVs matched by uuid to those found on the disk."""
    vg = VolumeGroup(copy)
    where = copy.offset
    _int(ctx, vg.extent_size, f"VG {vg.name}: extent_size", where, 1)
    seen_ids: dict[str, str] = {}
    for name, sec in section(vg.raw, "physical_volumes").items():
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
    for name, sec in section(vg.raw, "logical_volumes").items():
        if isinstance(sec, dict):
            vg.lvs[name] = LogicalVolume(vg, name, sec)
    return vg


def lv_type(lv: LogicalVolume, cow_of: dict) -> str:
    """snapshot, striped, linear, or the first segment's type."""
    if lv.name in cow_of:
        return "snapshot"
    types = {s.type for s in lv.segments}
    if types <= {"striped"}:
        striped = any(isinstance(s.stripe_count, int) and s.stripe_count > 1 for s in lv.segments)
        return "striped" if striped else "linear"
    return lv.segments[0].type if lv.segments else "?"


def lv_source(ctx: ScanContext, vg: VolumeGroup, lv: LogicalVolume) -> tuple[ByteSource, int]:
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
