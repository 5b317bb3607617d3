"""Btrfs subvolumes and snapshots: the ROOT_ITEMs, ROOT_REFs and ROOT_BACKREFs of the
root tree, and the default subvolume (the ``default`` DIR_ITEM of the root tree directory).

Every subvolume (and snapshot, which is a subvolume sharing blocks with another) is its
own FS tree with its own inode numbers; the top-level one is tree 5. A subvolume appears
in its parent's tree as a directory entry whose location is the child's ROOT_ITEM key.
TREE_RELOC roots (relocation in progress) and other internal trees are not subvolumes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from . import structs as S


@dataclass(slots=True)
class RootInfo:
    """One tree's ROOT_ITEM: where its root block is and the subvolume facts."""

    id: int
    bytenr: int
    level: int
    generation: int
    flags: int
    refs: int
    root_dirid: int
    uuid: bytes
    parent_uuid: bytes
    otime: dt.datetime | None
    ctime: dt.datetime | None
    leaf: int  # logical address of the leaf holding the item

    @property
    def readonly(self) -> bool:
        return bool(self.flags & S.ROOT_SUBVOL_RDONLY)


@dataclass(slots=True)
class BackRef:
    """Where a subvolume is linked: parent tree, directory inode there, name."""

    parent: int
    dirid: int
    index: int
    name: str


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def timespec(sec: int, nsec: int) -> dt.datetime | None:
    """An aware UTC datetime from a Btrfs timespec (seconds are signed 64-bit)."""
    if sec >= 1 << 63:
        sec -= 1 << 64
    if not sec and not nsec:
        return None
    try:
        return EPOCH + dt.timedelta(seconds=sec, microseconds=min(nsec, 999_999_999) // 1000)
    except OverflowError:
        return None


def parse_root_item(objectid: int, data: bytes, leaf: int) -> RootInfo | None:
    """A ROOT_ITEM's facts (older, shorter items are padded with zeros), or None if it is
    too short to hold even the root pointer."""
    if len(data) < S.ROOT_ITEM_OLD_SIZE:
        return None
    if len(data) < S.ROOT_ITEM_SIZE:
        data = bytes(data) + bytes(S.ROOT_ITEM_SIZE - len(data))
    r = S.RootItem.parse(data[:S.ROOT_ITEM_SIZE])
    v2 = r.generation_v2 == r.generation
    return RootInfo(
        id=objectid, bytenr=r.bytenr, level=r.level, generation=r.generation,
        flags=r.flags, refs=r.refs, root_dirid=r.root_dirid,
        uuid=bytes(r.uuid) if v2 else bytes(16),
        parent_uuid=bytes(r.parent_uuid) if v2 else bytes(16),
        otime=timespec(r.otime.sec, r.otime.nsec) if v2 else None,
        ctime=timespec(r.ctime.sec, r.ctime.nsec) if v2 else None,
        leaf=leaf,
    )


def parse_root_ref(data: bytes) -> tuple[int, int, str] | None:
    """(dirid, sequence, name) of a ROOT_REF/ROOT_BACKREF, None when cut short."""
    n = S.ROOT_REF_FMT.size
    if len(data) < n:
        return None
    dirid, seq, name_len = S.ROOT_REF_FMT.unpack_from(data, 0)
    if n + name_len > len(data):
        return None
    return dirid, seq, bytes(data[n:n + name_len]).decode("utf-8", "surrogateescape")


def is_subvolume(objectid: int) -> bool:
    """FS trees: the top level (5) and the subvolume ids (256 up to the reserved ids)."""
    return objectid == S.FS_TREE_OBJECTID or (
        S.FIRST_FREE_OBJECTID <= objectid <= S.LAST_FREE_OBJECTID)
