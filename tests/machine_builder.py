"""Write VM machine files from their documented layouts, for tests.

- VirtualBox ``.vbox`` (VirtualBox-settings.xsd): ``VirtualBox/Machine`` with
  ``MediaRegistry/HardDisks`` (differencing disks nested in their parent), the current
  ``StorageControllers`` and a nested ``Snapshot`` tree, each with its own controllers;
- Parallels ``DiskDescriptor.xml`` (QEMU docs/interop/prl-xml): ``Disk_Parameters``,
  ``StorageData/Storage`` with ``Image`` entries, ``Snapshots`` with ``TopGUID``/``Shot``;
- VMware ``.vmx`` and ``.vmsd``: ``key = "value"`` lines.

The XML is written with xml.etree (independently of the reader's parsing code); the disks
they point to are made by the tests with qemu-img / qemu-io / tests/vdi_builder.py.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

VBOX_NS = "http://www.virtualbox.org/"


# --- VirtualBox --------------------------------------------------------------------------


@dataclass
class Medium:
    uuid: str
    location: str
    format: str = "VDI"
    children: list[Medium] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)  # <Property name= value=/>


@dataclass
class Snap:
    uuid: str
    name: str
    time: str  # xsd:dateTime, e.g. "2024-05-06T07:08:09Z"
    attach: list[tuple[str, int, int, str]]  # (controller, port, device, medium uuid)
    description: str | None = None
    children: list[Snap] = field(default_factory=list)


def _controllers(parent: ET.Element, attach: list[tuple[str, int, int, str]]) -> None:
    ctrls = ET.SubElement(parent, "StorageControllers")
    by_ctl: dict[str, ET.Element] = {}
    for ctl, port, dev, uuid in attach:
        if ctl not in by_ctl:
            by_ctl[ctl] = ET.SubElement(
                ctrls,
                "StorageController",
                name=ctl,
                type="AHCI",
                PortCount="30",
                useHostIOCache="false",
                Bootable="true",
            )
        ad = ET.SubElement(
            by_ctl[ctl],
            "AttachedDevice",
            type="HardDisk",
            hotpluggable="false",
            port=str(port),
            device=str(dev),
        )
        ET.SubElement(ad, "Image", uuid=f"{{{uuid}}}")
    # a DVD drive, which must be ignored
    if by_ctl:
        first = next(iter(by_ctl.values()))
        dvd = ET.SubElement(
            first, "AttachedDevice", passthrough="false", type="DVD", port="29", device="0"
        )
        ET.SubElement(dvd, "Image", uuid="{00000000-1111-2222-3333-444444444444}")


def _medium(parent: ET.Element, m: Medium) -> None:
    el = ET.SubElement(
        parent, "HardDisk", uuid=f"{{{m.uuid}}}", location=m.location, format=m.format
    )
    if not isinstance(parent, ET.Element) or parent.tag == "HardDisks":
        el.set("type", "Normal")
    for k, v in m.properties.items():
        ET.SubElement(el, "Property", name=k, value=v)
    for c in m.children:
        _medium(el, c)


def _snapshot(parent: ET.Element, s: Snap) -> None:
    el = ET.SubElement(parent, "Snapshot", uuid=f"{{{s.uuid}}}", name=s.name, timeStamp=s.time)
    if s.description is not None:
        ET.SubElement(el, "Description").text = s.description
    ET.SubElement(el, "Hardware")
    _controllers(el, s.attach)
    if s.children:
        kids = ET.SubElement(el, "Snapshots")
        for c in s.children:
            _snapshot(kids, c)


def vbox_xml(
    name: str,
    uuid: str,
    media: list[Medium],
    attach,
    snapshot: Snap | None = None,
    current: str | None = None,
) -> str:
    """A .vbox settings file (the format VirtualBox 6/7 writes, trimmed to what matters)."""
    root = ET.Element("VirtualBox", xmlns=VBOX_NS, version="1.19-linux")
    attrs = dict(uuid=f"{{{uuid}}}", name=name, OSType="Linux_64", snapshotFolder="Snapshots")
    if current:
        attrs["currentSnapshot"] = f"{{{current}}}"
    mach = ET.SubElement(root, "Machine", **attrs)
    reg = ET.SubElement(ET.SubElement(mach, "MediaRegistry"), "HardDisks")
    for m in media:
        _medium(reg, m)
    if snapshot is not None:
        _snapshot(mach, snapshot)
    ET.SubElement(mach, "Hardware")
    _controllers(mach, attach)
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0"?>\n<!-- settings written by a test -->\n' + body


# --- Parallels ----------------------------------------------------------------------------


def hdd_descriptor(disk_sectors: int, storages, shots, top: str | None = None) -> str:
    """``storages``: [(start, end, blocksize, [(guid, "Plain"|"Compressed", file)])];
    ``shots``: [(guid, parent guid or None)]."""
    root = ET.Element("Parallels_disk_image", Version="1.0")
    p = ET.SubElement(root, "Disk_Parameters")
    heads, secs = 16, 32
    for k, v in (
        ("Disk_size", disk_sectors),
        ("Cylinders", disk_sectors // (heads * secs)),
        ("PhysicalSectorSize", 4096),
        ("LogicSectorSize", 512),
        ("Heads", heads),
        ("Sectors", secs),
        ("Padding", 0),
    ):
        ET.SubElement(p, k).text = str(v)
    ET.SubElement(p, "UID").text = "{18162a18-c23a-4f90-8a9d-b7c93a4ef2a6}"
    ET.SubElement(p, "Name").text = "test"
    sd = ET.SubElement(root, "StorageData")
    for start, end, bs, images in storages:
        st = ET.SubElement(sd, "Storage")
        ET.SubElement(st, "Start").text = str(start)
        ET.SubElement(st, "End").text = str(end)
        ET.SubElement(st, "Blocksize").text = str(bs)
        for guid, kind, f in images:
            im = ET.SubElement(st, "Image")
            ET.SubElement(im, "GUID").text = f"{{{guid}}}"
            ET.SubElement(im, "Type").text = kind
            ET.SubElement(im, "File").text = f
    sn = ET.SubElement(root, "Snapshots")
    if top:
        ET.SubElement(sn, "TopGUID").text = f"{{{top}}}"
    for guid, parent in shots:
        sh = ET.SubElement(sn, "Shot")
        ET.SubElement(sh, "GUID").text = f"{{{guid}}}"
        ET.SubElement(sh, "ParentGUID").text = "{%s}" % (
            parent or "00000000-0000-0000-0000-000000000000"
        )
    return "<?xml version='1.0' encoding='UTF-8'?>\n" + ET.tostring(root, encoding="unicode")


# --- VMware -------------------------------------------------------------------------------


def _kv(pairs) -> str:
    return "".join(f'{k} = "{v}"\n' for k, v in pairs)


def vmx_text(disks: list[tuple[str, str, bool]], name: str = "test vm", extra=()) -> str:
    """``disks``: [(node like "scsi0:0", file name, present)]."""
    pairs = [
        (".encoding", "UTF-8"),
        ("config.version", "8"),
        ("virtualHW.version", "19"),
        ("displayName", name),
        ("memsize", "1024"),
    ]
    for node, f, present in disks:
        bus = node.split(":")[0]
        pairs += [
            (f"{bus}.present", "TRUE"),
            (f"{node}.fileName", f),
            (f"{node}.present", "TRUE" if present else "FALSE"),
        ]
    pairs += list(extra)
    return "# written by a test\n" + _kv(pairs)


def split_time(us: int) -> tuple[int, int]:
    """createTimeHigh, createTimeLow (the low half written as a signed 32-bit number)."""
    hi, lo = us >> 32, us & 0xFFFFFFFF
    return hi, lo - (1 << 32) if lo >= 1 << 31 else lo


def vmsd_text(snapshots: list[dict], current: str | None) -> str:
    """``snapshots``: dicts uid, name, description, parent, time_us, disks [(file, node)]."""
    pairs = [
        (".encoding", "UTF-8"),
        ("snapshot.lastUID", str(len(snapshots))),
        ("snapshot.numSnapshots", str(len(snapshots))),
    ]
    if current:
        pairs.append(("snapshot.current", current))
    for k, s in enumerate(snapshots):
        p = f"snapshot{k}."
        pairs += [
            (p + "uid", s["uid"]),
            (p + "filename", f"vm-Snapshot{s['uid']}.vmsn"),
            (p + "displayName", s["name"]),
        ]
        if s.get("parent"):
            pairs.append((p + "parent", s["parent"]))
        if s.get("description"):
            pairs.append((p + "description", s["description"]))
        hi, lo = split_time(s["time_us"])
        pairs += [
            (p + "createTimeHigh", hi),
            (p + "createTimeLow", lo),
            (p + "numDisks", len(s["disks"])),
        ]
        for j, (f, node) in enumerate(s["disks"]):
            pairs += [(f"{p}disk{j}.fileName", f), (f"{p}disk{j}.node", node)]
    return _kv(pairs)


def write(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
