"""The tree log: what fsync wrote after the last transaction commit.

A crash (or a copy of a mounted volume) between an fsync and the next commit leaves
``log_root`` set in the superblock. It points at the log root tree, whose ROOT_ITEMs
(objectid TREE_LOG) name one log tree per subvolume; a log tree holds copies of the
INODE_ITEMs, names (INODE_REF) and file extents of the inodes fsync'd since the commit.
A mount replays them into the subvolumes; vdinspect does not (the volume is read as of
the last commit) and says which inodes, under which names, the log holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...errors import CorruptImage
from . import structs as S
from .subvols import parse_root_item

if TYPE_CHECKING:
    from .fs import BtrfsFileSystem

MAX_LOGGED = 100_000  # inodes listed from a log (a hostile log may claim more)


@dataclass
class LoggedInode:
    """One inode copied into a log tree: its subvolume, number, size and names."""

    subvolume: int
    ino: int
    size: int | None = None
    names: list[tuple[int, str]] = field(default_factory=list)  # (parent inode, name)


@dataclass
class TreeLog:
    """The log trees the superblock's ``log_root`` leads to, or why they are unreadable."""

    bytenr: int
    inodes: list[LoggedInode] = field(default_factory=list)
    error: str | None = None


def read_tree_log(fs: BtrfsFileSystem) -> TreeLog | None:
    """The inodes in the tree log of ``fs`` (None when there is no log; never raises for
    a damaged log: the reason is in ``error``)."""
    sb = fs.sb
    if not sb.log_root:
        return None
    out = TreeLog(sb.log_root)
    try:
        roots = []
        for node, i in fs.search(sb.log_root, sb.log_root_level,
                                 (S.TREE_LOG_OBJECTID, S.ROOT_ITEM, 0),
                                 (S.TREE_LOG_OBJECTID, S.ROOT_ITEM, S.TREE_LOG_OBJECTID)):
            r = parse_root_item(node.keys[i][2], node.data(i), node.bytenr)
            if r is not None:
                roots.append(r)
        for r in roots:
            found: dict[int, LoggedInode] = {}
            for node, i in fs.search(r.bytenr, r.level):
                ino, typ, off = node.keys[i]
                if typ not in (S.INODE_ITEM, S.INODE_REF) or len(found) >= MAX_LOGGED:
                    continue
                rec = found.setdefault(ino, LoggedInode(r.id, ino))
                data = node.data(i)
                if typ == S.INODE_ITEM and len(data) >= S.INODE_ITEM_SIZE:
                    rec.size = S.INODE_ITEM_FMT.unpack_from(data, 0)[S.INODE_FIELDS["size"]]
                elif typ == S.INODE_REF:
                    rec.names += [(off, n) for n in _ref_names(data)]
            out.inodes += found.values()
    except CorruptImage as exc:
        out.error = exc.detail
    return out


def _ref_names(data: bytes) -> list[str]:
    names, pos, hdr = [], 0, S.INODE_REF_FMT.size
    while pos + hdr <= len(data):
        _index, n = S.INODE_REF_FMT.unpack_from(data, pos)
        if pos + hdr + n > len(data):
            break
        names.append(bytes(data[pos + hdr:pos + hdr + n]).decode("utf-8", "surrogateescape"))
        pos += hdr + n
    return names
