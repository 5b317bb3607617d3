"""The OVF descriptor (DMTF DSP0243, "Open Virtualization Format Specification"): the
package's files, its virtual disks and a summary of each virtual system's hardware.

Only what locating and describing the disks needs is read: ``References/File``
(``ovf:href``, ``ovf:size``, ``ovf:compression``, ``ovf:chunkSize``), ``DiskSection/Disk``
(``ovf:diskId``, ``ovf:fileRef``, ``ovf:capacity`` in ``ovf:capacityAllocationUnits``,
``ovf:populatedSize``, ``ovf:format``, ``ovf:parentRef``) and, per ``VirtualSystem``, its
name, operating system and the ``VirtualHardwareSection`` items (CIM resource types 3 =
processor, 4 = memory, 10 = Ethernet adapter, 17 = disk drive).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...errors import CorruptImage
from ...io.xmltext import attr, child, child_text, children, local, parse_xml_bytes

MAX_DESCRIPTOR = 16 << 20  # an OVF is small XML: refuse anything bigger
MAX_ITEMS = 10_000  # files, disks, systems or hardware items read from one descriptor

#: CIM_ResourceAllocationSettingData.ResourceType values (DSP1041 / CIM schema)
RESOURCE_TYPES = {3: "processor", 4: "memory", 10: "ethernet", 17: "disk drive",
                  5: "ide controller", 6: "scsi controller", 20: "other storage",
                  15: "cd drive", 14: "floppy drive", 23: "usb controller"}

_UNITS = re.compile(r"^\s*byte\s*((\*\s*\d+\s*\^\s*-?\d+\s*)*)$", re.I)
_OLD_UNITS = {"bytes": 1, "kilobytes": 1 << 10, "megabytes": 1 << 20, "gigabytes": 1 << 30,
              "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}


@dataclass
class FileRef:
    """``References/File``: a file of the package."""

    id: str
    href: str
    size: int | None = None  # bytes in the package (compressed size when compressed)
    compression: str | None = None  # "gzip" or None
    chunk_size: int | None = None  # the file split into href.000000000, .000000001, ...


@dataclass
class DiskRef:
    """``DiskSection/Disk``: a virtual disk, the file holding it and its capacity."""

    id: str
    file_id: str | None
    capacity: int | None  # bytes
    format: str | None  # the ovf:format URI
    populated_size: int | None = None
    parent: str | None = None


@dataclass
class VirtualSystem:
    """A ``VirtualSystem``: its name and the hardware summary of its first section."""

    id: str | None
    name: str | None = None
    os: str | None = None
    cpus: int | None = None
    memory: int | None = None  # bytes
    nics: list[str] = field(default_factory=list)
    disks: list[str] = field(default_factory=list)  # diskIds the drives name


@dataclass
class Envelope:
    files: dict[str, FileRef]
    disks: list[DiskRef]
    systems: list[VirtualSystem]
    version: str | None = None


def allocation_units(text: str | None) -> int | None:
    """The byte multiplier of a DSP0004 programmatic unit (``byte * 2^20``), or of an older
    spelling (``MegaBytes``); None when it is not one."""
    if text is None:
        return 1
    key = text.strip().lower()
    if key in _OLD_UNITS:
        return _OLD_UNITS[key]
    m = _UNITS.match(text)
    if not m:
        return None
    mult = 1
    for base, exp in re.findall(r"(\d+)\s*\^\s*(-?\d+)", m.group(1)):
        b, e = int(base), int(exp)
        if e < 0 or e > 80 or b > 1024:
            return None
        mult *= b**e
    return mult


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def parse_envelope(data: bytes, path: str | None) -> Envelope:
    """The package facts of the OVF descriptor ``data`` (CorruptImage when it is no OVF
    envelope or a required attribute is missing or not a number)."""
    if len(data) > MAX_DESCRIPTOR:
        raise CorruptImage(f"{len(data)} bytes is too big for an OVF descriptor",
                           path=path, structure="OVF descriptor")
    root = parse_xml_bytes(data, path, "OVF descriptor")
    if local(root.tag) != "Envelope":
        raise CorruptImage(f"root element is {local(root.tag)!r}, not an OVF Envelope",
                           path=path, structure="OVF descriptor")

    def bad(message: str) -> CorruptImage:
        return CorruptImage(message, path=path, structure="OVF descriptor")

    files: dict[str, FileRef] = {}
    for f in children(child(root, "References"), "File")[:MAX_ITEMS]:
        fid, href = attr(f, "id"), attr(f, "href")
        if not fid or not href:
            raise bad("a References/File has no ovf:id or ovf:href")
        size = _int(attr(f, "size"))
        chunk = _int(attr(f, "chunkSize"))
        if (attr(f, "size") is not None and size is None) or (chunk is not None and chunk <= 0):
            raise bad(f"File {fid!r}: ovf:size or ovf:chunkSize is not a positive number")
        comp = attr(f, "compression")
        files[fid] = FileRef(fid, href, size, comp.lower() if comp else None, chunk)
    disks = []
    for section in _sections(root, "DiskSection"):
        for d in children(section, "Disk")[:MAX_ITEMS]:
            did = attr(d, "diskId")
            if not did:
                raise bad("a DiskSection/Disk has no ovf:diskId")
            cap = _int(attr(d, "capacity"))
            mult = allocation_units(attr(d, "capacityAllocationUnits"))
            if cap is None or cap < 0 or mult is None:
                raise bad(f"Disk {did!r}: capacity {attr(d, 'capacity')!r} in units "
                          f"{attr(d, 'capacityAllocationUnits')!r} is not a size")
            disks.append(DiskRef(did, attr(d, "fileRef"), cap * mult, attr(d, "format"),
                                 _int(attr(d, "populatedSize")), attr(d, "parentRef")))
    systems = [_system(vs) for vs in root.iter() if local(vs.tag) == "VirtualSystem"]
    return Envelope(files, disks, systems[:MAX_ITEMS], attr(root, "version"))


def _sections(root, name: str):
    """Sections called ``name`` (directly under the Envelope, or DSP0243 1.x's
    ``Section xsi:type="ovf:DiskSection_Type"``)."""
    for el in root:
        if local(el.tag) == name or (local(el.tag) == "Section"
                                     and (attr(el, "type") or "").endswith(name + "_Type")):
            yield el


def _system(vs) -> VirtualSystem:
    out = VirtualSystem(attr(vs, "id"), child_text(vs, "Name") or attr(vs, "id"))
    ossec = child(vs, "OperatingSystemSection")
    if ossec is not None:
        # a description, VirtualBox's vbox:OSType, VMware's vmw:osType, else the CIM number
        out.os = (child_text(ossec, "Description") or
                  next((c.text.strip() for c in ossec if local(c.tag) == "OSType" and c.text),
                       None) or attr(ossec, "osType") or attr(ossec, "id"))
    hw = child(vs, "VirtualHardwareSection")
    for item in children(hw, "Item")[:MAX_ITEMS]:
        fields = {local(c.tag): (c.text or "").strip() for c in item}
        kind = _int(fields.get("ResourceType"))
        qty = _int(fields.get("VirtualQuantity"))
        if kind == 3 and qty is not None:
            out.cpus = (out.cpus or 0) + qty
        elif kind == 4 and qty is not None:
            mult = allocation_units(fields.get("AllocationUnits") or "byte * 2^20")
            out.memory = qty * mult if mult else None
        elif kind == 10:
            out.nics.append(" ".join(x for x in (fields.get("ResourceSubType"),
                                                 fields.get("Connection")) if x) or "ethernet")
        elif kind == 17:
            res = fields.get("HostResource", "")
            m = re.match(r"^ovf:/+disk/(.+)$", res)
            if m:
                out.disks.append(m.group(1))
    return out
