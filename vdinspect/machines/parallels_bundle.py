"""A Parallels ``.hdd`` bundle: a folder whose ``DiskDescriptor.xml`` says how to read it.

Facts from QEMU's docs/interop/prl-xml (checked against a real Parallels Desktop bundle).
The root ``Parallels_disk_image`` holds ``Disk_Parameters`` (``Disk_size`` in 512-byte
sectors, the guest geometry ``Cylinders``/``Heads``/``Sectors``, ``Padding``),
``StorageData`` with one or more ``Storage`` elements (``Start``/``End`` in sectors: a disk
split in several storages is their consecutive ranges put end to end; ``Blocksize`` in
sectors; one ``Image`` per snapshot with ``GUID``, ``Type`` — ``Plain`` (raw data) or
``Compressed`` (an expandable ``.hds``) — and ``File`` relative to the bundle) and
``Snapshots`` (``TopGUID``: the current state; ``Shot`` elements with ``GUID`` and
``ParentGUID``, all zeros for the base). A snapshot's image is a delta over its
ParentGUID's image; reading a snapshot reads its image over all its ancestors.
"""

from __future__ import annotations

import os

from ..chain import Chain
from ..containers.base import UNALLOCATED, Image, Run
from ..errors import CorruptImage, NotFound
from ..io import Zero, paths
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
    resolve,
)

SECTOR = 512
NULL_GUID = "00000000-0000-0000-0000-000000000000"
MAX_STORAGES = 4096


def _guid(text: str | None) -> str | None:
    return plain_guid(text, NULL_GUID)


class Storage:
    """One ``Storage``: a sector range of the disk and the image of each snapshot in it."""

    def __init__(self, start: int, end: int, blocksize: int | None, images: dict) -> None:
        self.start, self.end, self.blocksize = start, end, blocksize
        self.images = images  # GUID -> (Type, absolute file path, File as written)

    def __repr__(self) -> str:
        return f"<Storage sectors {self.start}..{self.end} {len(self.images)} image(s)>"


class SplitLayer(Image):
    """One snapshot layer of a disk split over several storages: their images end to end."""

    format = "parallels"
    subformat = "split"

    def __init__(self, parts: list[tuple[int, int, Image]], size: int, path: str) -> None:
        super().__init__(Zero(size, name=path), path=path, strict=True)
        self.size = size
        self.parts = parts  # (virtual start, virtual end, image)

    def _runs(self, start: int, end: int):
        for a, b, img in self.parts:
            s, e = max(start, a), min(end, b)
            if s >= e:
                continue
            have = min(e, a + img.size)
            if s < have:
                for r in img.runs(s - a, have - s):
                    r.start += a
                    yield r
            if have < e:
                yield Run(max(s, have), e - max(s, have), UNALLOCATED)

    @property
    def host_files(self) -> list[str]:
        return [f for _, _, img in self.parts for f in img.host_files]

    def structure_rows(self) -> list[dict]:
        return [r for _, _, img in self.parts for r in img.structure_rows()]

    def check_rows(self) -> list[dict]:
        return [r for _, _, img in self.parts for r in img.check_rows()] + list(self.findings)

    def close(self) -> None:
        for _, _, img in self.parts:
            img.close()


class ParallelsBundle(Machine):
    """A Parallels ``.hdd`` bundle (the folder or its DiskDescriptor.xml)."""

    kind = "parallels"

    def __init__(self, path: str) -> None:
        inner = os.path.isdir(path)
        xml = os.path.join(path, DESCRIPTOR) if inner else path
        super().__init__(path)
        self.descriptor = xml
        self.referrer = xml  # the image files are named relative to the descriptor's folder
        # DiskDescriptor.xml inside a bundle folder is found by name: the path policy applies
        self.root = parse_xml(xml, DESCRIPTOR, xml if inner else None,
                              root="Parallels_disk_image")
        params = child(self.root, "Disk_Parameters")
        self.sectors = self._int(params, "Disk_size", required=True)
        self.geometry = tuple(self._int(params, k) for k in ("Cylinders", "Heads", "Sectors"))
        self.padding = self._int(params, "Padding")
        self.name = child_text(params, "Name")
        self.uid = _guid(child_text(params, "UID"))
        self.storages = self._read_storages()
        self._read_snapshots()
        top = self.top_guid
        self.disks = [Attachment("storage", self._first_file(top), id=top)]

    def _int(self, el, name: str, required: bool = False) -> int | None:
        text = child_text(el, name)
        if text is None:
            if required:
                raise CorruptImage(f"no {name}", path=self.descriptor, structure=name)
            return None
        try:
            v = int(text, 10)
        except ValueError:
            raise CorruptImage(
                f"{name} {text!r} is not a number", path=self.descriptor, structure=name
            ) from None
        if v < 0 or v > (1 << 63) // SECTOR:
            raise CorruptImage(f"{name} {v} out of range", path=self.descriptor, structure=name)
        return v

    def _read_storages(self) -> list[Storage]:
        els = children(child(self.root, "StorageData"), "Storage")
        if not els:
            raise CorruptImage(
                "no StorageData/Storage", path=self.descriptor, structure="StorageData"
            )
        if len(els) > MAX_STORAGES:
            raise CorruptImage(
                f"{len(els)} storages", path=self.descriptor, structure="StorageData"
            )
        out: list[Storage] = []
        pos = 0
        for i, el in enumerate(els):
            start = self._int(el, "Start", required=True)
            end = self._int(el, "End", required=True)
            where = f"StorageData/Storage[{i}]"
            if start != pos or end <= start or end > self.sectors:
                raise CorruptImage(
                    f"covers sectors {start}..{end}; expected to start at {pos} and end by "
                    f"Disk_size {self.sectors}",
                    path=self.descriptor,
                    structure=where,
                )
            pos = end
            images = {}
            for im in children(el, "Image"):
                g = _guid(child_text(im, "GUID"))
                f = child_text(im, "File")
                kind = child_text(im, "Type") or "Compressed"
                if not g or not f:
                    raise CorruptImage(
                        "an Image without GUID or File", path=self.descriptor, structure=where
                    )
                if kind not in ("Plain", "Compressed"):
                    raise CorruptImage(
                        f"unknown image Type {kind!r}", path=self.descriptor, structure=where
                    )
                images[g] = (kind, resolve(self.descriptor, f), f)
            out.append(Storage(start, end, self._int(el, "Blocksize"), images))
        if pos != self.sectors:
            raise CorruptImage(
                f"storages end at sector {pos}, Disk_size is {self.sectors}",
                path=self.descriptor,
                structure="StorageData",
            )
        return out

    def _read_snapshots(self) -> None:
        snaps = child(self.root, "Snapshots")
        shots = children(snaps, "Shot")
        if len(shots) > MAX_SNAPSHOTS:
            raise CorruptImage("too many snapshots", path=self.descriptor, structure="Snapshots")
        for el in shots:
            g = _guid(child_text(el, "GUID"))
            if not g:
                raise CorruptImage(
                    "a Shot without GUID", path=self.descriptor, structure="Snapshots/Shot"
                )
            self.snapshots.append(
                MachineSnapshot(
                    g,
                    None,
                    _guid(child_text(el, "ParentGUID")),
                    disks=[Attachment("storage", self._first_file(g), id=g)],
                    raw=el,
                )
            )
        self.check_tree()
        ids = {s.id for s in self.snapshots}
        for s in self.snapshots:
            if s.parent and s.parent not in ids:
                raise CorruptImage(
                    f"Shot {{{s.id}}} names an unknown ParentGUID {{{s.parent}}}",
                    path=self.descriptor,
                    structure="Snapshots/Shot",
                )
        top = _guid(child_text(snaps, "TopGUID"))
        if top is None and self.snapshots:
            parents = {s.parent for s in self.snapshots}
            leaves = [s.id for s in self.snapshots if s.id not in parents]
            top = leaves[-1] if leaves else self.snapshots[-1].id
        if top is None:  # no Snapshots at all: the one image every storage has
            guids = set.intersection(*(set(st.images) for st in self.storages))
            if len(guids) != 1:
                raise CorruptImage(
                    "no Snapshots and not exactly one image per storage",
                    path=self.descriptor,
                    structure="Snapshots",
                )
            top = guids.pop()
        elif self.snapshots and top not in ids:
            raise CorruptImage(
                f"TopGUID {{{top}}} is not a Shot",
                path=self.descriptor,
                structure="Snapshots/TopGUID",
            )
        self.top_guid = top
        self.current = top

    def _first_file(self, guid: str) -> str | None:
        got = self.storages[0].images.get(guid)
        return got[1] if got else None

    def lineage(self, guid: str) -> list[str]:
        """The GUIDs from the base to ``guid`` (check_tree has ruled out loops)."""
        by_id = {s.id: s for s in self.snapshots}
        out = [guid]
        while (s := by_id.get(out[-1])) is not None and s.parent:
            out.append(s.parent)
        return out[::-1]

    # -- opening -------------------------------------------------------------------------
    def open_chain(self, *, disk=0, snapshot=None, strict=True, parents=None, policy=None
                   ) -> Chain:
        if policy is None:
            policy = PathPolicy.for_open(self.path, parents=parents)
        self.attachment(disk)
        guid = self.snapshot(snapshot).id if snapshot is not None else self.top_guid
        layers: list[Image] = []
        try:
            for g in self.lineage(guid):
                parts = []
                for i, st in enumerate(self.storages):
                    below = None
                    if layers:
                        prev = layers[-1]
                        below = prev.parts[i][2] if isinstance(prev, SplitLayer) else prev
                    with policy.active():
                        img = self._open_image(st, i, g, below, strict, policy)
                    parts.append((st.start * SECTOR, st.end * SECTOR, img))
                if len(parts) == 1 and parts[0][2].size == self.sectors * SECTOR:
                    layers.append(parts[0][2])
                else:
                    layers.append(SplitLayer(parts, self.sectors * SECTOR, f"{self.path}#{{{g}}}"))
        except BaseException:
            for layer in layers:
                layer.close()
            raise
        return Chain(layers)

    def _open_image(self, st: Storage, i: int, guid: str, below: Image | None, strict: bool,
                    policy: PathPolicy):
        from ..containers import parallels, registry

        where = f"StorageData/Storage[{i}]"
        if guid not in st.images:
            raise NotFound(f"{self.descriptor}: {where} has no image for snapshot {{{guid}}}")
        kind, _, name = st.images[guid]
        found = self.locate(name, policy, f"image {{{guid}}} of {where}", where)
        path = found.path
        src = policy.open(path, self.referrer)
        try:
            if kind == "Plain":
                img = registry.open_image(path, format="raw", strict=strict, source=src)
                paths.report_outside(img, where, found, f"image {{{guid}}} file")
                return img
            if not parallels.probe(src.read(0, min(64, src.size))):
                raise CorruptImage(
                    f"image {{{guid}}} is not a Parallels expandable image",
                    path=path,
                    structure="header",
                    offset=0,
                )
            img = parallels.open_image(src, path=path, strict=strict, parent=below)
            paths.report_outside(img, where, found, f"image {{{guid}}} file")
            return img
        except BaseException:
            src.close()
            raise

    def info_fields(self) -> dict:
        return dict(
            disk_size=self.sectors * SECTOR,
            geometry=self.geometry,
            padding=self.padding,
            uid=self.uid,
            storages=len(self.storages),
            top_guid=self.top_guid,
        )
