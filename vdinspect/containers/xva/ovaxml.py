"""``ova.xml``, the first member of an XVA export: an XML-RPC value (``struct``, ``array``,
``string`` ...) holding the export's ``version`` and its ``objects`` (``class`` VM, VBD, VDI,
..., each with an ``id`` like ``Ref:12`` and a ``snapshot`` struct of its fields). A VDI's
chunks live in the tar folder named by its ``id``; a VBD joins a VM to a VDI at a
``userdevice`` number."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import CorruptImage
from ...io.xmltext import child, child_text, children, local, parse_xml_bytes

MAX_DEPTH = 64  # nesting of XML-RPC values
MAX_OVA_XML = 64 << 20


@dataclass
class Vdi:
    ref: str
    name: str | None
    uuid: str | None
    virtual_size: int | None
    userdevice: str | None = None  # where the VM's VBD attaches it


def decode(value, depth: int = 0) -> dict | list | str | None:
    """An XML-RPC ``<value>`` as Python: dict, list or str (numbers stay text)."""
    if value is None:
        return None
    if depth > MAX_DEPTH:
        raise ValueError("values nested too deep")
    kids = list(value)
    if not kids:
        return value.text or ""
    k = kids[0]
    kind = local(k.tag)
    if kind == "struct":
        return {child_text(m, "name") or "": decode(child(m, "value"), depth + 1)
                for m in children(k, "member")}
    if kind == "array":
        return [decode(v, depth + 1) for v in children(child(k, "data"), "value")]
    return k.text or ""


@dataclass
class Export:
    version: dict
    vm_name: str | None
    vm_uuid: str | None
    vdis: list[Vdi]  # the VM's disks (VBD type Disk, by userdevice), then other VDIs
    cpus: int | None = None  # VCPUs_max
    memory: int | None = None  # memory_static_max, bytes


def parse_ova_xml(data: bytes, path: str | None) -> Export:
    """The VM and its VDIs from ``ova.xml`` (CorruptImage when it is not that)."""
    if len(data) > MAX_OVA_XML:
        raise CorruptImage(f"ova.xml of {len(data)} bytes is too big", path=path,
                           structure="ova.xml")
    root = parse_xml_bytes(data, path, "ova.xml")
    try:
        top = decode(root if local(root.tag) == "value" else child(root, "value"))
    except ValueError as e:
        raise CorruptImage(str(e), path=path, structure="ova.xml") from None
    if not isinstance(top, dict) or not isinstance(top.get("objects"), list):
        raise CorruptImage("no 'objects' array: not an XVA ova.xml", path=path,
                           structure="ova.xml")
    objects = [o for o in top["objects"] if isinstance(o, dict)]

    def snap(o):
        s = o.get("snapshot")
        return s if isinstance(s, dict) else {}

    vms = [o for o in objects if o.get("class") == "VM"
           and snap(o).get("is_control_domain") != "1"]
    vm = vms[0] if vms else None
    vdis = {}
    for o in objects:
        if o.get("class") == "VDI" and isinstance(o.get("id"), str):
            s = snap(o)
            try:
                size = int(s.get("virtual_size", ""))
            except ValueError:
                size = None
            vdis[o["id"]] = Vdi(o["id"], s.get("name_label") or None, s.get("uuid") or None,
                                size)
    for o in objects:
        s = snap(o)
        if o.get("class") == "VBD" and s.get("VDI") in vdis and s.get("type", "Disk") == "Disk":
            if vm is None or s.get("VM") == vm.get("id"):
                vdis[s["VDI"]].userdevice = s.get("userdevice")

    def order(v: Vdi):
        dev = v.userdevice
        return (dev is None, int(dev) if dev and dev.isdigit() else 1 << 30, v.ref)

    version = top.get("version") if isinstance(top.get("version"), dict) else {}
    vs = snap(vm) if vm else {}
    return Export(version, vs.get("name_label"), vs.get("uuid"),
                  sorted(vdis.values(), key=order), _int(vs.get("VCPUs_max")),
                  _int(vs.get("memory_static_max")))


def _int(text) -> int | None:
    try:
        return int(text) if isinstance(text, str) else None
    except ValueError:
        return None
