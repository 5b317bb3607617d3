"""The LVM2 scan: physical volumes among a disk's volumes, the newest metadata of each
volume group, and its visible logical volumes as :class:`~vdinspect.volumes.Volume` s."""

from __future__ import annotations

from ...errors import CorruptImage, MissingFile, UnsupportedFeature
from ...io import Slice
from .. import LOGICAL_VOLUME, ScanContext, Volume
from .pv import PhysicalVolume, read_pv
from .structs import SECTOR
from .vg import LogicalVolume, VolumeGroup, build_vg, lv_source, lv_type

#: Segment types vdinspect reads; every other type is listed as unsupported.
READABLE = {"striped", "linear", "zero"}


def scan_lvm(ctx: ScanContext, members: list[Volume]) -> tuple[list[Volume], list[VolumeGroup]]:
    """Logical volumes of the VGs whose PVs are among ``members`` (LVM2_member volumes)."""
    pvs: list[PhysicalVolume] = []
    by_id: dict[str, PhysicalVolume] = {}
    for v in members:
        base = v.start
        disk = v.disk if v.disk is not None else ctx.source  # PVs may sit on several disks
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
            vg = build_vg(ctx, copy, by_id)
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
    kind = lv_type(lv, cow_of)
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
        src, first = lv_source(ctx, vg, lv)
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
    vol.set_source(src)
    vol.start = first
    return vol
