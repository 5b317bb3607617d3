"""Virtual machine files: which disks a VM uses and the named snapshots it keeps.

Three kinds are read, each detected by content (never by the file name):

- VirtualBox ``.vbox`` XML (:mod:`.vbox`): a media registry of hard disks (differencing
  images nested under their parents), the attachments of the current state, and a tree of
  snapshots, each with its own attachments;
- VMware ``.vmx`` text (:mod:`.vmware`): ``scsi0:0.fileName``-style disk entries, with the
  ``.vmsd`` beside it listing the snapshots and the disk file each one froze;
- a Parallels ``.pvm`` bundle (:mod:`.parallels_vm`): ``config.pvs`` naming its ``.hdd``
  disks and ``Snapshots.xml`` its named snapshots;
- a Parallels ``.hdd`` bundle (:mod:`.parallels_bundle`): ``DiskDescriptor.xml`` naming the
  storages (consecutive sector ranges) and the snapshot images of each.

A :class:`Machine` answers with the attached disks and its snapshots; :meth:`Machine.open`
gives a :class:`~vdinspect.disk.Disk` of the current state or of a snapshot. ``vdinspect.open``
does the same for the first disk; ``Disk.open(path, disk=k)`` chooses another.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import (
    CorruptImage,
    EncryptedImage,
    InvalidArgument,
    MissingFile,
    NotFound,
    NotRecognized,
)
from ..io import FileSource, paths
from ..io.paths import PathPolicy
from ..io.xmltext import child, child_text, children, local, parse_xml_bytes

if TYPE_CHECKING:
    import pandas as pd

    from ..chain import Chain, ParentsArg
    from ..disk import Disk

MAX_MACHINE_FILE = 16 << 20  # machine files are small text: refuse anything bigger
MAX_SNAPSHOTS = 100_000
PROBE_SIZE = 4096
DESCRIPTOR = "DiskDescriptor.xml"

_VMX_DISK_KEY = re.compile(rb"^\s*(scsi|sata|ide|nvme)\d+:\d+\.filename\s*=", re.I | re.M)
_VMX_MARK_KEY = re.compile(rb"^\s*(virtualhw\.version|config\.version)\s*=", re.I | re.M)
#: an encrypted .vmx keeps little but these in the clear (a VMDK descriptor may have them
#: too, but it also has createType)
_VMX_CRYPT_KEY = re.compile(rb"^\s*encryption\.keysafe\s*=", re.I | re.M)
_VMDK_KEY = re.compile(rb"^\s*createtype\s*=", re.I | re.M)


# --- detection --------------------------------------------------------------------------


def detect_machine(path: str | os.PathLike) -> str | None:
    """``"virtualbox"``, ``"vmware"``, ``"parallels"`` (a ``.hdd`` bundle), ``"parallels_vm"``
    (a ``.pvm`` bundle) or None, from the file's first bytes.

    A folder is a Parallels bundle when it holds a ``DiskDescriptor.xml`` that says so.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        pvs = os.path.join(path, "config.pvs")
        if paths.current().refusal(pvs, pvs) is None and _probe_file(pvs, pvs) == "parallels_vm":
            return "parallels_vm"
        inner = os.path.join(path, DESCRIPTOR)
        why = paths.current().refusal(inner, inner)
        if why == paths.MISSING:
            return None
        if why is not None:  # a link out of the bundle, a FIFO...: the bundle refuses it
            return "parallels"
        return "parallels" if _probe_file(inner, inner) == "parallels" else None
    if not os.path.isfile(path):
        return None
    return _probe_file(path)


def _probe_file(path: str, referrer: str | None = None) -> str | None:
    with _open_file(path, referrer) as src:
        head = src.read(0, min(PROBE_SIZE, src.size))
    return probe(head)


def probe(head: bytes) -> str | None:
    """The machine-file kind of these first bytes, or None (binary data is never one)."""
    if not head or b"\0" in head:
        return None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<"):
        for mark, kind in ((b"<VirtualBox", "virtualbox"), (b"<Parallels_disk_image", "parallels"),
                           (b"<ParallelsVirtualMachine", "parallels_vm")):
            if _root_is(text, mark):
                return kind
        return None
    if _VMX_MARK_KEY.search(text) or _VMX_DISK_KEY.search(text):
        return "vmware"
    if _VMX_CRYPT_KEY.search(text) and not _VMDK_KEY.search(text):
        return "vmware"
    return None


def _root_is(text: bytes, mark: bytes) -> bool:
    """True when the first element (after the XML declaration and comments) is ``mark``."""
    at = text.find(mark)
    if at < 0:
        return False
    # the XML declaration, comments and a DOCTYPE (refused later, when parsing) may come first
    before = re.sub(
        rb"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", b"", text[:at], flags=re.S | re.I
    )
    after = text[at + len(mark) : at + len(mark) + 1]
    return not before.strip() and (after in (b" ", b">", b"/", b"\t", b"\r", b"\n"))


# --- reading machine files safely --------------------------------------------------------


def _open_file(path: str, referrer: str | None) -> FileSource:
    """A machine file: the one the caller named (``referrer`` None), or one found by name
    beside another (``referrer``: through the path policy, vdinspect.io.paths)."""
    return FileSource(path) if referrer is None else paths.current().open(path, referrer)


def read_text_file(path: str, what: str, referrer: str | None = None) -> bytes:
    """The bytes of a small machine file (MissingFile / CorruptImage when absent or huge);
    ``referrer``: the file it was found beside (the path policy then applies)."""
    if not os.path.isfile(path):
        raise MissingFile(f"{what} not found", tried=[path], path=path)
    with _open_file(path, referrer) as src:
        if src.size > MAX_MACHINE_FILE:
            raise CorruptImage(
                f"{src.size} bytes is too big for a {what} (limit {MAX_MACHINE_FILE})",
                path=path,
                structure=what,
            )
        return src.read(0, src.size)


def parse_xml(path: str, what: str, referrer: str | None = None, *,
              root: str | None = None) -> ET.Element:
    """The root element of an XML machine file, which must be named ``root`` (namespace
    aside) when given; DTDs and entities are refused (no bombs)."""
    element = parse_xml_bytes(read_text_file(path, what, referrer), path, what)
    if root is not None and local(element.tag) != root:
        raise CorruptImage(f"the root element is not {root}", path=path, structure="xml")
    return element


def resolve(base_file: str, name: str) -> str:
    """A file named in a machine file: relative names are relative to its folder."""
    name = name.replace("\\", "/") if "\\" in name and "/" not in name else name
    if os.path.isabs(name):
        return name
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(base_file)), name))


def plain_guid(text: str | None, null: str | None = None) -> str | None:
    """A GUID or UUID as machine files write it, without braces, lower case; None when it
    is empty or the format's ``null`` value (one spelling for every machine format)."""
    g = text.strip().strip("{}").lower() if text else None
    return None if not g or g == null else g


# --- the machine model -------------------------------------------------------------------


@dataclass
class Attachment:
    """One hard disk attached to a VM: where (``slot``) and which file (``path``)."""

    slot: str  # "SATA:0:0", "scsi0:0", "storage"
    path: str | None
    id: str | None = None  # the medium's UUID / GUID when the machine file names one
    extra: dict = field(default_factory=dict)
    #: the file name as the machine file records it (``path`` is it made absolute)
    name: str | None = None

    def __repr__(self) -> str:
        return f"<Attachment {self.slot} {os.path.basename(self.path or '?')}>"


@dataclass
class MachineSnapshot:
    """A named snapshot: its identity, place in the tree and the disks it froze."""

    id: str
    name: str | None
    parent: str | None
    created: datetime | None = None
    description: str | None = None
    disks: list[Attachment] = field(default_factory=list)
    raw: Any = field(default=None, repr=False)

    def matches(self, ident: str | int) -> bool:
        want = str(ident).strip().strip("{}").lower()
        return want in (self.id.strip("{}").lower(), (self.name or "").lower()) and bool(want)

    def __repr__(self) -> str:
        return f"<MachineSnapshot {self.id} {self.name!r} parent={self.parent}>"


class Machine:
    """A VM's machine file: the attached disks of the current state and its snapshots."""

    kind = "?"

    def __init__(self, path: str) -> None:
        self.path = path
        #: the file whose folder the recorded file names are relative to
        self.referrer = path
        self.name: str | None = None
        self.disks: list[Attachment] = []
        self.snapshots: list[MachineSnapshot] = []
        self.current: str | None = None  # the snapshot the current state descends from
        #: (scheme, key material needed, structure) when the whole VM is encrypted; a disk
        #: encrypted on its own says so in its Attachment's ``extra["encryption"]``
        self.encryption: tuple[str, str, str] | None = None

    # -- choosing ------------------------------------------------------------------------
    def snapshot(self, ident: str | int) -> MachineSnapshot:
        """The snapshot with this id or name (NotFound lists the known ones)."""
        for s in self.snapshots:
            if s.matches(ident):
                return s
        known = ", ".join(f"{s.name!r} ({s.id})" if s.name else s.id for s in self.snapshots)
        raise NotFound(f"{self.path}: no snapshot {ident!r}; known: {known or 'none'}")

    def has_snapshot(self, ident: str | int) -> bool:
        return any(s.matches(ident) for s in self.snapshots)

    def attachment(self, disk: int = 0, snapshot: str | int | None = None) -> Attachment:
        """The ``disk``-th attached hard disk, now or as attached in ``snapshot``."""
        if not self.disks:
            raise NotFound(f"{self.path}: the {self.kind} machine has no hard disk attached")
        if not isinstance(disk, int) or not 0 <= disk < len(self.disks):
            slots = ", ".join(f"{i}: {a.slot}" for i, a in enumerate(self.disks))
            raise InvalidArgument(f"{self.path}: no disk {disk!r}; attached: {slots}")
        now = self.disks[disk]
        if snapshot is None:
            return now
        snap = self.snapshot(snapshot)
        for a in snap.disks:
            if a.slot == now.slot:
                return a
        raise NotFound(f"{self.path}: snapshot {snap.name or snap.id!r} has no disk at {now.slot}")

    # -- opening -------------------------------------------------------------------------
    def open_chain(
        self,
        *,
        disk: int = 0,
        snapshot: str | int | None = None,
        strict: bool = True,
        parents=None,
        policy: PathPolicy | None = None,
    ) -> Chain:
        """The layers of the chosen disk, current state or at ``snapshot``. The disk's file
        name and every name its layers record go through ``policy`` (that of
        ``vdinspect.open(self.path, parents=parents)`` by default)."""
        from ..chain import open_chain

        if policy is None:
            policy = PathPolicy.for_open(self.path, parents=parents)
        if self.encryption is not None and (strict or not self.disks):
            raise self.encrypted_error(self.encryption)
        att = self.attachment(disk, snapshot)
        enc = att.extra.get("encryption") or self.encryption
        if enc is not None and strict:
            raise self.encrypted_error(enc)
        found = self.locate(att.name or att.path, policy, f"disk {att.id or att.slot}",
                            att.slot)
        chain = open_chain(found.path, strict=strict, parents=self.parents_for(parents),
                           policy=policy, referrer=self.referrer)
        paths.report_outside(chain.top, att.slot, found, f"disk file of {att.slot}")
        if enc is not None:  # salvage mode: opened, and said loudly what the bytes are
            chain.top.encryption = enc[0]
            chain.top.finding("error", enc[2], None, f"the disk is encrypted ({enc[0]}): "
                              "its data reads as ciphertext, not the guest's bytes; opening "
                              f"it would need {enc[1]}")
        return chain

    def encrypted_error(self, enc: tuple[str, str, str]) -> EncryptedImage:
        """The error that refuses an encrypted disk of this machine."""
        scheme, needs, structure = enc
        return EncryptedImage("the disk is encrypted; vdinspect does not decrypt",
                              scheme=scheme, needs=needs, path=self.path, structure=structure)

    def locate(self, name: str | None, policy: PathPolicy, what: str, structure: str
               ) -> paths.Lookup:
        """Where the file this machine file records as ``name`` is, by the path policy
        (MissingFile when nowhere it may be opened)."""
        found = policy.find([name] if name else [], self.referrer)
        if found.path is None:
            raise found.missing(what, self.referrer, structure)
        return found

    def parents_for(self, parents) -> ParentsArg:
        """Where parents are: the user's choice, merged with what the machine file knows."""
        return parents

    def open(self, *, disk: int = 0, snapshot: str | int | None = None, **kw) -> Disk:
        """A read-only Disk of the chosen disk, current state or at ``snapshot``."""
        from ..disk import Disk

        return Disk.open(self.path, disk=disk, snapshot=snapshot, **kw)

    # -- reports -------------------------------------------------------------------------
    def snapshot_rows(self, disk: int = 0, chain: Chain | None = None) -> list[dict]:
        """Rows for :func:`vdinspect.frames.snapshots_frame`; ``layer`` if in ``chain``."""
        where = {}
        if chain is not None:
            for k, img in enumerate(chain.layers):
                for f in img.host_files:
                    where.setdefault(os.path.realpath(f), k)
        rows = []
        slot = self.disks[disk].slot if 0 <= disk < len(self.disks) else None
        for s in self.snapshots:
            att = next((a for a in s.disks if a.slot == slot), None)
            p = att.path if att else None
            rows.append(
                dict(
                    id=s.id,
                    name=s.name,
                    parent=s.parent,
                    created=s.created,
                    description=s.description,
                    layer=where.get(os.path.realpath(p)) if p else None,
                    path=p,
                )
            )
        return rows

    def snapshots_frame(self, disk: int = 0) -> pd.DataFrame:
        """The snapshots as the DataFrame ``Disk.snapshots()`` returns (no disk opened)."""
        from ..frames import snapshots_frame

        return snapshots_frame(self.snapshot_rows(disk))

    def check_tree(self) -> None:
        """CorruptImage when a snapshot's parents loop or name unknown snapshots."""
        by_id = {s.id: s for s in self.snapshots}
        if len(by_id) != len(self.snapshots):
            raise CorruptImage("two snapshots share an id", path=self.path, structure="snapshots")
        done: set[str] = set()
        for s in self.snapshots:
            seen: list[str] = []
            cur: MachineSnapshot | None = s
            while cur is not None and cur.id not in done:
                if cur.id in seen:
                    loop = " -> ".join(seen[seen.index(cur.id) :] + [cur.id])
                    raise CorruptImage(
                        f"snapshot parents form a loop: {loop}",
                        path=self.path,
                        structure="snapshots",
                    )
                seen.append(cur.id)
                cur = by_id.get(cur.parent) if cur.parent else None
            done.update(seen)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {os.path.basename(self.path)} {self.name!r}: "
            f"{len(self.disks)} disk(s), {len(self.snapshots)} snapshot(s)>"
        )


def open_machine(path: str | os.PathLike, kind: str | None = None) -> Machine:
    """Read a machine file (``.vbox``, ``.vmx``, ``.hdd`` bundle or its DiskDescriptor.xml)."""
    path = os.fspath(path)
    kind = kind or detect_machine(path)
    if kind == "virtualbox":
        from .vbox import VBoxMachine

        return VBoxMachine(path)
    if kind == "vmware":
        from .vmware import VmxMachine

        return VmxMachine(path)
    if kind == "parallels_vm":
        from .parallels_vm import ParallelsVm

        return ParallelsVm(path)
    if kind == "parallels":
        from .parallels_bundle import ParallelsBundle

        return ParallelsBundle(path)
    if not os.path.exists(path):
        raise NotFound(f"{path}: no such file")
    raise NotRecognized("not a VirtualBox, VMware or Parallels machine file", path=path)


__all__ = [
    "Attachment",
    "child",
    "child_text",
    "children",
    "local",
    "Machine",
    "MachineSnapshot",
    "detect_machine",
    "open_machine",
    "parse_xml",
    "probe",
]
