"""Virtual disk images stored inside a disk: where each starts, how far it reaches, and
whether it opens.

A header signature gives the start (a fixed VHD's footer gives it from ``current_size``;
a dynamic VHD's header from the footer copy before it). The extent comes from the image's
own metadata: it is opened by its reader over the rest of the disk (salvage mode) and its
end is the furthest byte any of its structures or data clusters uses (the L1/L2 and
refcount tables, the last grain or block the BAT or block map points to), plus a dynamic
VHD's trailing footer. It is then opened again over exactly that extent, strictly: a
find that opens is what ``vdinspect.open(host, offset=start, length=length)`` reads.
"""

from __future__ import annotations

from construct import ConstructError

from ...containers.qcow2.structs import QCowHeader
from ...containers.registry import open_image
from ...containers.vhd.structs import HardDiskFooter
from ...containers.vmdk.structs import SPARSE_MAGIC, SparseExtentHeader
from ...errors import VDInspectError
from ...io import ByteSource, Slice
from ...layout import offset_of
from .structs import SECTOR

MAX_IMAGES = 1000  # starts examined (each one is opened)
_OVERHEAD = offset_of(SparseExtentHeader, "overHead")
MAX_PARENT_CHECKS = 2000  # (child, candidate parent) pairs opened and verified
_FOOTER = HardDiskFooter.sizeof()
_VHD_FIXED, _VHD_DYNAMIC, _VHD_DIFFERENCING = 2, 3, 4

_FORMAT_OF = {"qcow": "qcow2", "vmdk-sparse": "vmdk", "vmdk-cowd": "vmdk",
              "vmdk-sesparse": "vmdk", "vmdk-descriptor": "vmdk", "vhd-footer": "vhd",
              "vhd-dynamic-header": "vhd", "vhdx": "vhdx", "vdi": "vdi",
              "parallels": "parallels"}

_QCOW_VERSIONS = {1: "qcow", 2: "qcow2", 3: "qcow2"}
_QCOW_VERSION = offset_of(QCowHeader, "version")  # the same place in qcow (v1) headers
_ERRORS = (VDInspectError, ConstructError, ValueError, IndexError, OverflowError, OSError)


Start = tuple[int, str, "str | None", "int | None"]  # start, found by, format, known length


def starts(src: ByteSource, hits: dict[str, list[int]]) -> list[Start]:
    """(start, what was found, format, length if the header says) for every header hit
    that gives an image's start."""
    out: dict[int, Start] = {}
    for name, fmt in _FORMAT_OF.items():
        for pos in hits.get(name, ()):
            start, what, length = pos, f"{name} at {pos:#x}", None
            if name == "vhd-footer":
                start, length = _vhd_start(src, pos)
                if start is None:
                    continue
                what = ("vhd footer" if start != pos else "vhd footer copy") + f" at {pos:#x}"
            elif name == "vhd-dynamic-header":
                start = pos - SECTOR
            elif name == "qcow":  # the version says which reader: 1 qcow, 2 and 3 qcow2
                fmt = _QCOW_VERSIONS.get(int.from_bytes(src.read(pos + _QCOW_VERSION, 4), "big"))
                if fmt is None:
                    continue
            if start >= 0 and start not in out:
                out[start] = (start, what, fmt, length)
    return [out[k] for k in sorted(out)]


def _vhd_start(src: ByteSource, pos: int) -> tuple[int | None, int | None]:
    """A fixed disk's footer follows its data (current_size bytes); a dynamic disk's first
    footer copy precedes its dynamic header (the copy at the end repeats it)."""
    if pos + _FOOTER > src.size:
        return None, None
    f = HardDiskFooter.parse(src.read(pos, _FOOTER))
    if f.disk_type == _VHD_FIXED and f.current_size % SECTOR == 0:
        return pos - f.current_size, f.current_size + _FOOTER
    if f.disk_type in (_VHD_DYNAMIC, _VHD_DIFFERENCING):
        at = pos + f.data_offset
        if f.data_offset < 2**40 and at + 8 <= src.size and src.read(at, 8) == b"cxsparse":
            return pos, None
    return None, None


def extent(src: ByteSource, start: int, fmt: str | None) -> tuple[int | None, str | None]:
    """(bytes the image at ``start`` takes, why not known) from its own metadata."""
    rest = Slice(src, start, src.size - start)
    try:
        img = open_image(f"{src.name}@{start}", format=fmt, strict=False, source=rest)
    except _ERRORS as e:
        return None, f"does not open: {e}"
    if img.format == "raw":  # never a find: every byte string is a raw image
        img.close()
        return None, "not recognised"
    try:
        end = 0
        for r in img.structure_rows():
            off, n = r.get("host_offset"), r.get("length")
            if off is not None and n and off + n < rest.size:  # not the slice's tail
                end = max(end, off + n)
        for r in img.runs():
            if r.host_offset is not None and r.state == "data" and not r.compressed:
                end = max(end, r.host_offset + r.length)
        if rest.read(0, 4) == SPARSE_MAGIC:  # grains start after overHead sectors, even none
            overhead = int.from_bytes(rest.read(_OVERHEAD, 8), "little") * SECTOR
            end = max(end, min(overhead, rest.size))
        if img.format == "vhd" and end + _FOOTER <= rest.size \
                and rest.read(end, 8) == b"conectix":
            end += _FOOTER
    except _ERRORS as e:
        return None, f"its tables cannot be read: {e}"
    finally:
        img.close()
    return (end, None) if end > 0 else (None, "its metadata names no extent")


def image_rows(ctx, src: ByteSource, hits: dict[str, list[int]]) -> list[dict]:
    """One row per image found: start, extent, format, virtual size, whether it opens."""
    rows: list[dict] = []
    covered_to = 0
    found = starts(src, hits)
    if len(found) > MAX_IMAGES:
        ctx.finding("warning", "image scan", found[MAX_IMAGES][0],
                    f"{len(found) - MAX_IMAGES} more image headers are not examined (only the "
                    f"first {MAX_IMAGES} are): the disk may be hostile")
        found = found[:MAX_IMAGES]
    for start, what, fmt, length in found:
        if ctx.out_of_time("image scan", start):
            break
        if start < covered_to:
            continue  # inside an image already found (its own embedded descriptor, footer)
        why = None
        if length is None:
            length, why = extent(src, start, fmt)
        row = dict(index=len(rows) + 1, start=start, length=length,
                   end=None if length is None else start + length, format=fmt,
                   subformat=None, virtual_size=None, found_by=what, confidence=0.2,
                   opened=False, errors=None, note=why)
        if length is not None:
            _try_open(src, row, fmt)
            if row["opened"] and not row["errors"]:
                covered_to = start + length
        rows.append(row)
    _link_parents(ctx, src, rows)
    return rows


def _open_row(src: ByteSource, row: dict):
    return open_image(f"{src.name}@{row['start']}", format=row["format"], strict=True,
                      source=Slice(src, row["start"], row["length"]))


def _link_parents(ctx, src: ByteSource, rows: list[dict]) -> None:
    """For each differencing image, the image found here that its own check accepts as
    its parent (VHD/VHDX/VDI/VMDK identities: ``verify_parent``), named in its note."""
    budget = MAX_PARENT_CHECKS
    for row in rows:
        name = row.pop("parent_name", None)
        if name is None:
            continue
        child = _open_row(src, row)
        try:
            verify = child.verify_parent
            found = None
            for other in rows:
                if other is row or not other["opened"] or other["errors"] or verify is None \
                    or found:
                    continue
                if budget <= 0:
                    ctx.finding("warning", "image scan", row["start"],
                                f"parents were not looked for past {MAX_PARENT_CHECKS} "
                                "checks: the disk may be hostile")
                    return
                budget -= 1
                try:
                    parent = _open_row(src, other)
                except _ERRORS:
                    continue
                try:
                    verify(parent)
                    found = other
                except _ERRORS:
                    pass
                finally:
                    parent.close()
        finally:
            child.close()
        if found is not None:
            row["note"] += (f"; found here at {found['start']:#x} (its identity checked): "
                            "open the chain with parents= naming a copy of it")


def _try_open(src: ByteSource, row: dict, fmt: str | None) -> None:
    start, length = row["start"], row["length"]
    try:
        img = open_image(f"{src.name}@{start}", format=fmt, strict=True,
                         source=Slice(src, start, length))
    except _ERRORS as e:
        row["note"] = f"does not open over its extent: {e}"
        row["confidence"] = 0.4
        return
    try:
        row.update(format=img.format, subformat=img.subformat, virtual_size=img.size,
                   opened=True, confidence=0.9, errors=0)
        try:
            errors = [r for r in img.check_rows() if r.get("severity") == "error"]
        except _ERRORS as e:  # check() should never raise; if it does, that is an error too
            errors = [dict(structure="check", message=str(e))]
        if errors:  # opens, but its own tables disagree: pieces of it are elsewhere or gone
            row.update(confidence=0.5, errors=len(errors),
                       note=f"opens, but its check finds {len(errors)} error(s), first: "
                            f"{errors[0].get('structure')}: {errors[0].get('message')}")
        hint = img.parent_hint
        if hint is not None and hint.path:
            row["note"] = "; ".join(filter(None, [
                row["note"], f"a differencing image: its parent is {hint.path!r}"]))
            row["parent_name"] = hint.path
    finally:
        img.close()
