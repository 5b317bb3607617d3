"""VirtualBox machine settings (``.vbox``): disks, differencing media and snapshots.

Facts from VirtualBox's VirtualBox-settings.xsd. The root ``VirtualBox`` element (namespace
``http://www.virtualbox.org/``) holds one ``Machine`` (uuid, name, currentSnapshot). Its
``MediaRegistry/HardDisks`` lists hard disks by uuid with a ``location`` relative to the
.vbox folder; a differencing image is a ``HardDisk`` nested inside its parent's. The current
state's disks are the ``StorageControllers/StorageController/AttachedDevice[@type="HardDisk"]``
entries (port, device) whose ``Image/@uuid`` names a medium. Each ``Snapshot`` (uuid, name,
timeStamp, ``Description``) has its own StorageControllers (the disks as they were when it
was taken: the images frozen by it) and nested ``Snapshots/Snapshot`` children.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from xml.etree.ElementTree import Element

from ..errors import CorruptImage, MissingFile
from . import (
    MAX_SNAPSHOTS,
    Attachment,
    Machine,
    MachineSnapshot,
    child,
    child_text,
    children,
    parse_xml,
    plain_guid,
    resolve,
)

if TYPE_CHECKING:
    from ..chain import Chain, ParentsArg

MAX_DEPTH = 10_000  # nesting of media or snapshots


def _time(text: str | None) -> datetime | None:
    """``timeStamp`` (xsd:dateTime, UTC with a trailing Z) as an aware datetime."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class Medium:
    """One ``HardDisk`` of the media registry."""

    def __init__(self, el: Element, path: str, parent: str | None) -> None:
        self.raw = el
        self.uuid = plain_guid(el.get("uuid")) or ""
        self.location = el.get("location") or ""
        self.format = el.get("format")
        self.path = resolve(path, self.location) if self.location else None
        self.parent = parent
        self.properties = {p.get("name"): p.get("value") for p in children(el, "Property")
                           if p.get("name")}

    def __repr__(self) -> str:
        return f"<Medium {{{self.uuid}}} {self.location} {self.format}>"


class VBoxMachine(Machine):
    """A VirtualBox ``.vbox`` file."""

    kind = "virtualbox"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.root = parse_xml(path, "VirtualBox settings", root="VirtualBox")
        self.machine = child(self.root, "Machine")
        if self.machine is None:
            raise CorruptImage("no Machine element", path=path, structure="VirtualBox")
        self.uuid = plain_guid(self.machine.get("uuid"))
        self.name = self.machine.get("name")
        self.current = plain_guid(self.machine.get("currentSnapshot"))
        self.media: dict[str, Medium] = {}
        self._read_media()
        self.disks = self._attachments(self.machine)
        self._read_snapshots()
        if self.current and not any(s.id == self.current for s in self.snapshots):
            raise CorruptImage(
                f"currentSnapshot {{{self.current}}} is not in the snapshot tree",
                path=path,
                structure="Machine.currentSnapshot",
            )

    def _read_media(self) -> None:
        reg = child(self.machine, "MediaRegistry")
        stack = [(el, None, 0) for el in children(child(reg, "HardDisks"), "HardDisk")]
        while stack:
            el, parent, depth = stack.pop()
            if depth > MAX_DEPTH or len(self.media) > MAX_SNAPSHOTS:
                raise CorruptImage(
                    "media registry too deep or too big", path=self.path, structure="MediaRegistry"
                )
            m = Medium(el, self.path, parent)
            if not m.uuid:
                raise CorruptImage(
                    "a HardDisk without uuid", path=self.path, structure="MediaRegistry/HardDisk"
                )
            if m.uuid in self.media:
                raise CorruptImage(
                    f"hard disk {{{m.uuid}}} is registered twice",
                    path=self.path,
                    structure="MediaRegistry/HardDisk",
                )
            self.media[m.uuid] = m
            stack += [(c, m.uuid, depth + 1) for c in children(el, "HardDisk")]

    def _attachments(self, owner: Element) -> list[Attachment]:
        """The hard disks attached in ``owner`` (the Machine or a Snapshot), in order."""
        ctrls = child(owner, "StorageControllers")
        if ctrls is None:  # some versions keep it inside Hardware
            ctrls = child(child(owner, "Hardware"), "StorageControllers")
        out = []
        for ctl in children(ctrls, "StorageController"):
            for dev in children(ctl, "AttachedDevice"):
                if dev.get("type") != "HardDisk":
                    continue
                img = child(dev, "Image")
                uuid = plain_guid(img.get("uuid") if img is not None else dev.get("uuid"))
                slot = f"{ctl.get('name')}:{dev.get('port', '0')}:{dev.get('device', '0')}"
                medium = self.media.get(uuid) if uuid else None
                extra = dict(controller=ctl.get("name"),
                             format=medium.format if medium else None)
                enc = self._encryption(medium)
                if enc is not None:
                    extra["encryption"] = enc
                out.append(
                    Attachment(
                        slot,
                        medium.path if medium else None,
                        id=uuid,
                        extra=extra,
                        name=medium.location if medium else None,
                    )
                )
        return out

    def _encryption(self, medium: Medium | None) -> tuple[str, str, str] | None:
        """VirtualBox full-disk encryption of ``medium`` or a medium it descends from: the
        ``CRYPT/KeyStore`` property (the data key, sealed with the VM's password) and
        ``CRYPT/KeyId`` (the password's id)."""
        for _ in range(len(self.media) + 1):
            if medium is None:
                return None
            if "CRYPT/KeyStore" in medium.properties or "CRYPT/KeyId" in medium.properties:
                key_id = medium.properties.get("CRYPT/KeyId")
                return ("VirtualBox full-disk encryption",
                        "the VM's disk encryption password" + (f" (password id {key_id!r})"
                                                               if key_id else "")
                        + ", which unseals the data key in the medium's CRYPT/KeyStore",
                        f"MediaRegistry/HardDisk {{{medium.uuid}}}")
            medium = self.media.get(medium.parent) if medium.parent else None
        return None

    def _read_snapshots(self) -> None:
        stack = [(el, None, 0) for el in reversed(children(self.machine, "Snapshot"))]
        while stack:
            el, parent, depth = stack.pop()
            if depth > MAX_DEPTH or len(self.snapshots) > MAX_SNAPSHOTS:
                raise CorruptImage(
                    "snapshot tree too deep or too big", path=self.path, structure="Snapshot"
                )
            sid = plain_guid(el.get("uuid"))
            if not sid:
                raise CorruptImage("a Snapshot without uuid", path=self.path, structure="Snapshot")
            desc = child_text(el, "Description") or el.get("Description")
            self.snapshots.append(
                MachineSnapshot(
                    sid,
                    el.get("name"),
                    parent,
                    _time(el.get("timeStamp")),
                    desc,
                    self._attachments(el),
                    raw=el,
                )
            )
            kids = children(child(el, "Snapshots"), "Snapshot")
            stack += [(c, sid, depth + 1) for c in reversed(kids)]
        self.check_tree()

    # -- opening -------------------------------------------------------------------------
    def open_chain(self, *, disk=0, snapshot=None, strict=True, parents=None, policy=None) -> Chain:
        att = self.attachment(disk, snapshot)
        if att.path is None:
            raise MissingFile(
                f"hard disk {{{att.id}}} attached at {att.slot} is not in the media registry",
                path=self.path,
                structure="MediaRegistry",
            )
        return super().open_chain(disk=disk, snapshot=snapshot, strict=strict, parents=parents,
                                  policy=policy)

    def parents_for(self, parents) -> ParentsArg:
        """The registry as a mapping (UUID, ``{uuid}.vdi``, location, file name -> path).
        Its paths come from the .vbox: the path policy checks them like any recorded name
        (only the caller's own ``parents`` are trusted as they are)."""
        if parents is not None and not isinstance(parents, Mapping):
            return parents
        out: dict[str, str] = {}
        for m in self.media.values():
            if not m.path:
                continue
            for key in (
                m.uuid,
                f"{{{m.uuid}}}",
                f"{{{m.uuid}}}.vdi",
                f"{m.uuid}.vdi",
                m.location,
                os.path.basename(m.location.replace("\\", "/")),
            ):
                out.setdefault(key, m.path)
        if parents:
            out.update({str(k): os.fspath(v) for k, v in parents.items()})
        return out
