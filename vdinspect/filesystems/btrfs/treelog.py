"""The tree log: what fsync wrote after the last transaction commit.

A crash (or a copy of a mounted volume) between an fsync and the next commit leaves
``log_root`` set in the superblock. It points at the log root tree, whose ROOT_ITEMs
(objectid TREE_LOG) name one log tree per subvolume; a log tree holds copies of the
INODE_ITEMs, names (INODE_REF) and file extents of the inodes fsync'd since the commit.
A mount replays them into the subvolumes; vdinspect lays them over its view of each
subvolume (:func:`log_replays`, :func:`merge_pieces`): a logged inode item replaces the
tree's, logged extents replace the tree's over the file ranges they cover, and the names
of the log's INODE_REFs are added to their directories. The names a replay removes are
removed too (:func:`removals`, the kernel's replay rules): in a logged directory, every
DIR_INDEX entry whose index lies in a range a DIR_LOG_INDEX item makes the log
authoritative for, and that the log does not hold; a name of a logged inode in a parent
the log holds its refs for, that the log's refs no longer give; and an entry whose name
the log gives to another inode. Items of a logged inode whose link count is 0 are
ignored, as a replay ignores them. A logged regular file's extents past its logged size
are dropped (a truncation; :func:`replay_pieces`), and the log's hole items replace the
ranges they cover (a punched hole). A logged inode's extended attributes are the log's
(the kernel's ``replay_xattr_deletes`` removes the others; ``log_xattr_tree``). The
checksums the log holds for logged data are not read (that data is not verified).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ...errors import CorruptImage
from . import structs as S
from .content import COMPRESSED, INLINE, PLAIN, Piece
from .subvols import parse_root_item

if TYPE_CHECKING:
    from .fs import BtrfsFileSystem

MAX_LOGGED = 100_000  # inodes listed from a log (a hostile log may claim more)
_FTYPE = {0o100000: 1, 0o040000: 2, 0o020000: 3, 0o060000: 4, 0o010000: 5, 0o140000: 6,
          0o120000: 7}  # file type of a directory entry by the inode's S_IFMT


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


def log_roots(fs: BtrfsFileSystem) -> list:
    """The tree log's root items (one per logged subvolume), as the log root tree lists
    them; raises what reading the log's blocks raises."""
    sb = fs.sb
    roots = []
    for node, i in fs.search(sb.log_root, sb.log_root_level,
                             (S.TREE_LOG_OBJECTID, S.ROOT_ITEM, 0),
                             (S.TREE_LOG_OBJECTID, S.ROOT_ITEM, S.TREE_LOG_OBJECTID)):
        r = parse_root_item(node.keys[i][2], node.data(i), node.bytenr)
        if r is not None:
            roots.append(r)
    return roots


def read_tree_log(fs: BtrfsFileSystem) -> TreeLog | None:
    """The inodes in the tree log of ``fs`` (None when there is no log; never raises for
    a damaged log: the reason is in ``error``)."""
    sb = fs.sb
    if not sb.log_root:
        return None
    out = TreeLog(sb.log_root)
    try:
        roots = log_roots(fs)
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
                    rec.names += [(off, n) for n in ref_names(data)]
            out.inodes += found.values()
    except CorruptImage as exc:
        out.error = exc.detail
    return out


def extref_names(data: bytes) -> list[tuple[int, str]]:
    """(parent directory, name) of each entry packed in an INODE_EXTREF item."""
    out, pos, hdr = [], 0, S.INODE_EXTREF_FMT.size
    while pos + hdr <= len(data):
        parent, _index, n = S.INODE_EXTREF_FMT.unpack_from(data, pos)
        if pos + hdr + n > len(data):
            break
        out.append((parent, bytes(data[pos + hdr:pos + hdr + n]).decode(
            "utf-8", "surrogateescape")))
        pos += hdr + n
    return out


def ref_names(data: bytes) -> list[str]:
    names, pos, hdr = [], 0, S.INODE_REF_FMT.size
    while pos + hdr <= len(data):
        _index, n = S.INODE_REF_FMT.unpack_from(data, pos)
        if pos + hdr + n > len(data):
            break
        names.append(bytes(data[pos + hdr:pos + hdr + n]).decode("utf-8", "surrogateescape"))
        pos += hdr + n
    return names


# --- replaying: the log's items laid over a subvolume's view ----------------------------------


@dataclass
class LogReplay:
    """What the tree log of one subvolume adds to it, read once: the inode items it holds
    (raw), the inodes whose extents it holds, and the names (DIR_INDEX entries) by
    directory. ``key`` names the log tree in ``fs.old_roots``."""

    key: tuple
    inodes: dict[int, bytes] = field(default_factory=dict)
    extents: set[int] = field(default_factory=set)
    dirs: dict[int, list[tuple[bytes, int, int, int]]] = field(default_factory=dict)
    ranges: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # DIR_LOG_INDEX
    logged: dict[int, set[tuple[int, bytes]]] = field(default_factory=dict)  # (index, name)
    refs: dict[int, dict[int, set[bytes]]] = field(default_factory=dict)  # ino -> parent
    logged_dirs: set[int] = field(default_factory=set)  # directories whose inode is logged


def log_replays(fs: BtrfsFileSystem) -> dict[int, LogReplay]:
    """The log tree of each subvolume, indexed (empty without a log or when it cannot be
    read: the reason is then in ``fs.tree_log().error``)."""
    sb = fs.sb
    out: dict[int, LogReplay] = {}
    if not sb.log_root:
        return out
    try:
        roots = [r for r in log_roots(fs) if r.id in fs.roots]
        for r in roots:
            rp = LogReplay(("log", r.id))
            ignored = None  # a logged inode with no link: the replay skips its items
            for node, i in fs.search(r.bytenr, r.level):
                ino, typ, _off = node.keys[i]
                data = node.data(i)
                if len(rp.inodes) + len(rp.dirs) > MAX_LOGGED:
                    break
                if typ == S.INODE_ITEM and len(data) >= S.INODE_ITEM_SIZE:
                    f = S.INODE_ITEM_FMT.unpack_from(data, 0)
                    if f[S.INODE_FIELDS["nlink"]] == 0:
                        ignored = ino
                        continue
                    if f[S.INODE_FIELDS["mode"]] & 0o170000 == 0o040000:
                        rp.logged_dirs.add(ino)
                    rp.inodes[ino] = bytes(data[:S.INODE_ITEM_SIZE])
                elif ino == ignored:
                    continue
                elif typ == S.DIR_LOG_INDEX and len(data) >= S.DIR_LOG_ITEM_FMT.size:
                    end = S.DIR_LOG_ITEM_FMT.unpack_from(data, 0)[0]
                    rp.ranges.setdefault(ino, []).append((_off, end))
                elif typ == S.EXTENT_DATA:
                    rp.extents.add(ino)
                elif typ in (S.INODE_REF, S.INODE_EXTREF):  # names: replay adds them
                    mode = (S.INODE_ITEM_FMT.unpack(rp.inodes[ino])[S.INODE_FIELDS["mode"]]
                            if ino in rp.inodes else 0)
                    ftype = _FTYPE.get(mode & 0o170000, 0)
                    refs = ([(_off, n) for n in ref_names(data)] if typ == S.INODE_REF
                            else extref_names(data))
                    for parent, name in refs:
                        raw = name.encode("utf-8", "surrogateescape")
                        rp.refs.setdefault(ino, {}).setdefault(parent, set()).add(raw)
                        if raw and b"/" not in raw and raw not in (b".", b".."):
                            rp.dirs.setdefault(parent, []).append((raw, ino, S.INODE_ITEM,
                                                                   ftype))
                elif typ == S.DIR_INDEX:
                    for name, loc, ftype, _v in fs.dir_items(data, node.bytenr):
                        rp.logged.setdefault(ino, set()).add((_off, name))
                        if name and b"/" not in name and name not in (b".", b".."):
                            rp.dirs.setdefault(ino, []).append((name, loc[0], loc[1], ftype))
            fs.old_roots[rp.key] = r
            out[r.id] = rp
    except CorruptImage:
        return {}
    return out


def log_xattr_tree(rp: LogReplay | None, tree: tuple, ino: int) -> tuple:
    """The tree whose XATTR_ITEMs are ``ino``'s after the replay: the log's when it holds
    the inode (a replay deletes the attributes the log lacks and writes its own)."""
    return rp.key if rp is not None and ino in rp.inodes else tree


def _cut(p: Piece, a: int, b: int) -> Piece | None:
    """The part of piece ``p`` inside ``[a, b)`` (None when empty)."""
    lo, hi = max(p.start, a), min(p.start + p.length, b)
    if lo >= hi:
        return None
    shift = lo - p.start
    q = copy.copy(p)
    q.start, q.length = lo, hi - lo
    if p.kind == PLAIN:
        q.addr = p.addr + shift
    elif p.kind == COMPRESSED:
        q.offset = p.offset + shift
    elif p.kind == INLINE:
        q.data = p.data[shift:shift + q.length]
    return q


def replay_pieces(base: list[Piece], logged: list[Piece], inode: bytes | None,
                  sectorsize: int) -> list[Piece]:
    """A logged file's pieces after the replay (the kernel's ``replay_one_buffer``): a
    regular file whose INODE_ITEM the log holds loses the tree's extents from its logged
    size (rounded up to a sector) on, as a truncation logged by fsync says; then the
    log's extents, holes included, replace the ranges they cover (:func:`merge_pieces`)."""
    if inode is not None:
        f = S.INODE_ITEM_FMT.unpack(inode)
        if f[S.INODE_FIELDS["mode"]] & 0o170000 == 0o100000:
            end = -(-f[S.INODE_FIELDS["size"]] // sectorsize) * sectorsize
            base = [q for q in (_cut(p, p.start, end) for p in base) if q is not None]
    return merge_pieces(base, logged, sectorsize)


def merge_pieces(base: list[Piece], logged: list[Piece], sectorsize: int = 1) -> list[Piece]:
    """``base`` with the file ranges the log holds taken out, and the log's pieces in
    their place, in file order (what replaying the logged extents does: an inline
    extent's range ends at a sector boundary, as ``replay_one_extent`` drops it)."""
    if not logged:
        return base
    cuts = sorted((p.start, p.start + (-(-p.length // sectorsize) * sectorsize
                                       if p.kind == INLINE else p.length)) for p in logged)
    out = list(logged)
    for p in base:
        rest = [p]
        for a, b in cuts:
            nxt = []
            for q in rest:
                nxt += [x for x in (_cut(q, q.start, a), _cut(q, b, q.start + q.length))
                        if x is not None]
            rest = nxt
        out += rest
    return sorted(out, key=lambda p: p.start)


GONE_DIR = ("removed by the tree log's replay: the logged directory no longer holds "
            "this name (unlinked or renamed before the fsync)")
GONE_REF = ("removed by the tree log's replay: the logged inode no longer has this name "
            "(renamed before the fsync)")
GONE_NAME = "removed by the tree log's replay: the log gives this name to another inode"
ORPHANED = "; no name is left to its inode (an orphan the mount deletes)"


def removals(ix, rp: LogReplay) -> dict[int, str]:
    """The entries of the tree index ``ix`` (a :class:`~.index.TreeIndex`, the log's
    names already added to it) that replaying the log ``rp`` removes: entry -> why."""
    out: dict[int, str] = {}
    for d in rp.logged_dirs:  # the kernel's replay_dir_deletes
        ranges = sorted(rp.ranges.get(d, ()))
        if not ranges:
            continue
        firsts = np.array([a for a, _b in ranges], dtype=np.uint64)
        lasts = np.maximum.accumulate(np.array([b for _a, b in ranges], dtype=np.uint64))
        kids = ix.children(d, removed=True)
        k = ix.index_of[kids]
        j = np.searchsorted(firsts, k, side="right") - 1  # the last range starting <= k
        inside = (j >= 0) & (k <= lasts[np.maximum(j, 0)]) & ~ix.journal[kids]
        logged = rp.logged.get(d, set())
        for i, key in zip(kids[inside].tolist(), k[inside].tolist()):
            if (key, ix.names[i]) not in logged:
                out[i] = GONE_DIR
    by_parent: dict[int, dict[int, set[bytes]]] = {}  # a logged inode's old names
    for ino, parents in rp.refs.items():
        for parent, names in parents.items():
            by_parent.setdefault(parent, {})[ino] = names
    for parent, inos in by_parent.items():
        for i in ix.children(parent, removed=True).tolist():
            names = inos.get(int(ix.loc[i]))
            if names is not None and not ix.journal[i] and ix.ltype[i] == S.INODE_ITEM \
                    and ix.names[i] not in names:
                out.setdefault(i, GONE_REF)
    for d, kids in rp.dirs.items():  # a name the log gives to another inode
        mine = {raw: lobj for raw, lobj, _t, _f in kids}
        for i in ix.children(d, removed=True).tolist():
            want = mine.get(ix.names[i])
            if not ix.journal[i] and want is not None and want != int(ix.loc[i]):
                out.setdefault(i, GONE_NAME)
    if out:  # an inode left with no name: an orphan after the replay
        gone = np.fromiter(out, dtype=np.int64, count=len(out))
        live = np.ones(len(ix.names), dtype=bool)
        live[gone] = False
        named = set(ix.loc[live & (ix.ltype == S.INODE_ITEM)].tolist())
        for i in gone.tolist():
            if int(ix.loc[i]) not in named and ix.ltype[i] == S.INODE_ITEM:
                out[i] += ORPHANED
    return out
