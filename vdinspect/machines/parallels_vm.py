"""A Parallels virtual machine bundle (``.pvm`` folder): ``config.pvs``, the VM's settings,
names its hard disks (``.hdd`` bundles); ``Snapshots.xml`` names its snapshots.

``config.pvs`` (root ``ParallelsVirtualMachine``) lists each disk as
``Hardware/Hdd`` with ``Enabled``, ``EmulatedType`` (1 = an image file) and ``SystemName``
(the ``.hdd`` bundle, relative to the ``.pvm`` folder); the VM's name is
``Identification/VmName``. ``Snapshots.xml`` (root ``ParallelsSavedStates``; layout as
Virtuozzo's libvzctl reads and writes it) is a tree of ``SavedStateItem`` elements: the
first has ``guid=""`` and stands for the state before any snapshot; each real one has a
``guid``, ``current="yes"`` on the one the running state descends from, and ``Name``,
``DateTime`` (``YYYY-MM-DD HH:MM:SS``), ``Description`` children, its children nested in
it. A snapshot's guid is the ``Shot`` GUID of its frozen image in each disk's
``DiskDescriptor.xml``, so a snapshot opens as that Shot of the disk. Checked against
ploop's snapshot code (the disk library Virtuozzo and Parallels share): the top image's
GUID is always ``{5fbaabe3-6958-40ff-92a7-860e329aab41}`` (``TopGUID``); taking snapshot S
renames the GUID of the image then on top to S and adds a new top image whose ParentGUID
is S; vzctl passes the ``Snapshots.xml`` guid to ploop as S.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..errors import CorruptImage, NotFound
from ..io import paths
from ..io.paths import PathPolicy
from . import (
    DESCRIPTOR,
    MAX_SNAPSHOTS,
    Attachment,
    Machine,
    MachineSnapshot,
    child,
    child_text,
    children,
    parse_xml,
    plain_guid,
)

if TYPE_CHECKING:
    from ..chain import Chain

CONFIG = "config.pvs"
SNAPSHOTS = "Snapshots.xml"
MAX_DEPTH = 10_000


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:  # Parallels writes local time without a zone; shown as written, labelled UTC
        return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None


class ParallelsVm(Machine):
    """A Parallels ``.pvm`` bundle (the folder or its ``config.pvs``)."""

    kind = "parallels_vm"

    def __init__(self, path: str) -> None:
        folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        config = os.path.join(folder, CONFIG) if os.path.isdir(path) else path
        super().__init__(path)
        self.config = config
        self.referrer = config  # names in config.pvs are relative to the .pvm folder
        self.root = parse_xml(config, CONFIG, config if os.path.isdir(path) else None,
                              root="ParallelsVirtualMachine")
        self.name = child_text(child(self.root, "Identification"), "VmName")
        self.disks = self._disks()
        snaps = os.path.join(folder, SNAPSHOTS)
        if paths.current().refusal(snaps, config) is None:
            self._read_snapshots(snaps)

    def _disks(self) -> list[Attachment]:
        out = []
        for hdd in children(child(self.root, "Hardware"), "Hdd"):
            if child_text(hdd, "Enabled") == "0" or child_text(hdd, "EmulatedType") not in (
                    None, "1"):
                continue
            name = child_text(hdd, "SystemName")
            if not name:
                continue
            slot = f"hdd{hdd.get('id', len(out))}"
            out.append(Attachment(slot, os.path.join(os.path.dirname(self.config), name),
                                  name=name, extra=dict(
                                      friendly=child_text(hdd, "UserFriendlyName"))))
        return out

    def _read_snapshots(self, where: str) -> None:
        root = parse_xml(where, SNAPSHOTS, self.config, root="ParallelsSavedStates")
        stack = [(el, None, 0) for el in reversed(children(root, "SavedStateItem"))]
        while stack:
            el, parent, depth = stack.pop()
            if depth > MAX_DEPTH or len(self.snapshots) > MAX_SNAPSHOTS:
                raise CorruptImage("snapshot tree too deep or too big", path=where,
                                   structure="SavedStateItem")
            sid = plain_guid(el.get("guid"))
            if sid is not None:  # guid="" is the state before the first snapshot
                self.snapshots.append(MachineSnapshot(
                    sid, child_text(el, "Name") or None, parent,
                    _time(child_text(el, "DateTime")), child_text(el, "Description") or None,
                    [Attachment(a.slot, a.path, id=sid, name=a.name) for a in self.disks],
                    raw=el))
                if (el.get("current") or "").lower() == "yes":
                    self.current = sid
            kids = children(el, "SavedStateItem")
            stack += [(c, sid, depth + 1) for c in reversed(kids)]
        self.check_tree()

    def open_chain(self, *, disk=0, snapshot=None, strict=True, parents=None, policy=None) -> Chain:
        """The chosen disk's ``.hdd`` bundle, now or as the snapshot froze it."""
        from .parallels_bundle import ParallelsBundle

        if policy is None:
            policy = PathPolicy.for_open(self.path, parents=parents)
        att = self.attachment(disk)
        # the .hdd is a folder: what is opened is the DiskDescriptor.xml inside it
        found = self.locate(f"{att.name.rstrip('/')}/{DESCRIPTOR}", policy,
                            f"hard disk {att.slot}", att.slot)
        with policy.active():
            bundle = ParallelsBundle(found.path)
        guid = None
        if snapshot is not None:
            guid = self.snapshot(snapshot).id
            if not bundle.has_snapshot(guid):
                raise NotFound(f"{found.path}: has no image for snapshot {{{guid}}} "
                               f"({self.snapshot(snapshot).name or ''})")
        return bundle.open_chain(snapshot=guid, strict=strict, parents=parents, policy=policy)
