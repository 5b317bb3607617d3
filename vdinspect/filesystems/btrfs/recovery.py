"""Deleted files of a Btrfs volume: what older tree roots and orphan items still hold.

Copy on write leaves the trees of the last few commits on disk until their blocks are
reused. The superblock keeps the root tree of four recent commits (``super_roots``); each
names the FS trees of that commit. An inode one of those trees holds, under a name in
one of its directories, that the live tree no longer has is a deleted file: it is listed
in that directory with ``deleted=True`` and ``found_by='backup'``, read from the old tree.
Root tree leaves of commits older still are found by scanning the metadata chunks (as
``btrfs-find-root`` does); what their FS trees hold is listed with ``found_by='scan'``.
A block of an old tree that was since reused (a newer generation, a bad checksum, another
address) is skipped, so an old tree can be partly or wholly gone. Such a file is
``recoverable`` when none of its data extents is allocated in the live extent tree (its
bytes were freed and may still be there; a live extent may hold another file's data).

An orphan item (objectid ORPHAN, the inode number as offset) names an inode unlinked
while still open: its inode and extents are still in the live tree. Orphans are listed
in ``/$OrphanFiles`` of their subvolume (``found_by='inode-table'``, recoverable).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ...errors import CorruptImage, NotFound
from ...layout import field_slice, numpy_dtype
from . import structs as S
from .subvols import RootInfo, parse_root_item
from .tree import walk_blocks

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .fs import BtrfsFileSystem
    from .index import TreeIndex

MAX_GONE = 100_000  # deleted entries kept per volume (a hostile tree may name more)
MAX_OLD_TREES = 64  # older FS trees compared with the live ones
MAX_SCAN = 512 << 20  # metadata chunk bytes scanned for root tree leaves of older commits
SCAN_STEP = 1 << 20
_HDR_DT = numpy_dtype(S.Header)
_FSID = field_slice(S.Header, "fsid")
ORPHANS_NAME = "$OrphanFiles"


@dataclass
class Gone:
    """A deleted inode: where its items are read, its name and what it is."""

    tree: object  # a key of fs.roots (orphans) or of fs.old_roots (an older tree)
    subvolume: int
    ino: int
    name: str
    rec: bytes  # the INODE_ITEM
    ftype: int
    found_by: str
    recoverable: bool
    note: str
    deleted: bool = True  # False: an inode in use that no name reaches (listed unnamed)


@dataclass
class Deleted:
    """Deleted entries by (subvolume, directory inode); orphans by subvolume."""

    children: dict[tuple[int, int], list[Gone]] = field(default_factory=dict)
    orphans: dict[int, list[Gone]] = field(default_factory=dict)
    count: int = 0


@dataclass
class _OldIndex:
    inodes: dict[int, bytes] = field(default_factory=dict)
    dirs: dict[int, list[tuple[str, int, int, int]]] = field(default_factory=dict)
    extents: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # disk extents


def find_deleted(fs: BtrfsFileSystem, live_index: Callable[[int], TreeIndex | None],
                 plain: Iterable[np.ndarray] = ()) -> Deleted:
    """Deleted entries of every subvolume ``fs.roots`` has (``live_index(tree)`` gives a
    subvolume's live :class:`~.index.TreeIndex`, or None; ``plain`` the ``plain`` leaves
    of those already read, which the scan for older root tree leaves passes over)."""
    out = Deleted()
    _orphans(fs, out, live_index)
    seen: set[tuple[int, int]] = set()
    extents = _LiveExtents(fs)
    trees = [(b.tree_root, b.tree_root_gen, "backup") for b in sorted(
        fs.sb.super_roots, key=lambda b: -b.tree_root_gen)
        if b.tree_root and b.tree_root_gen < fs.sb.generation]
    known = {t[0] for t in trees}
    skip: set[int] = set()
    for p in plain:
        skip.update(p.tolist())
    trees += [(at, gen, "scan") for at, gen in scan_root_leaves(fs, skip)
              if at not in known]
    done: set[tuple[int, int]] = set()
    for tree_root, tree_gen, how in trees:
        for old in _old_roots(fs, tree_root, tree_gen):
            if fs.roots[old.id].bytenr == old.bytenr or (old.id, old.bytenr) in done:
                continue
            if len(done) >= MAX_OLD_TREES:
                return out
            done.add((old.id, old.bytenr))
            try:
                live = live_index(old.id)
            except CorruptImage as e:  # strict mode: the live tree is damaged somewhere
                fs.finding("info", "FS tree", None, f"deleted files of subvolume {old.id} "
                           f"not searched: {e.detail}")
                continue
            if live is None:
                continue
            key = (how, old.generation, old.id)
            fs.old_roots[key] = old
            _compare(fs, out, key, old, _index(fs, old, live.blocks), live, seen, extents,
                     how)
    return out


def _getter(fs: BtrfsFileSystem, generation: int, shared: set[int] | frozenset = frozenset()):
    """A node reader for an old tree: blocks that fail or are newer than it are None, and
    so are blocks of the live tree (``shared``: the same block, whose subtree holds
    nothing the live tree lacks, or one reused since)."""
    def get(bytenr: int, level: int | None):
        if bytenr in shared:
            return None
        fs.lenient += 1  # a bad old block raises (no finding): it was reused, not damaged
        try:
            node = fs.node(bytenr, level)
        except CorruptImage:
            return None
        finally:
            fs.lenient -= 1
        if node is None or node.generation > generation:
            return None
        return node
    return get


def scan_root_leaves(fs: BtrfsFileSystem, skip: set[int] | frozenset = frozenset()
                     ) -> list[tuple[int, int]]:
    """(address, generation) of root tree leaves of older commits still in the metadata
    chunks, newest first. Only the block headers are read (a small read each, a MiB of
    blocks at a time), but not those of the blocks at an address in ``skip`` (known to be
    no root tree leaf); they are checked together (own address, filesystem id, owner,
    level, an older generation); the checksum when the leaf is read."""
    ns, budget = fs.nodesize, MAX_SCAN
    meta = [c for c in fs.chunks.chunks if c.type & S.BG_METADATA]
    total = sum(c.length for c in meta)
    if total > MAX_SCAN:
        fs.finding("info", "metadata chunks", None, f"deleted files: only the first "
                   f"{MAX_SCAN >> 20} MiB of {total >> 20} MiB of metadata chunks were "
                   "scanned for older root trees")
    steps = []  # (address, blocks) of each MiB scanned
    for c in meta:
        for base in range(c.logical, c.logical + c.length, SCAN_STEP):
            n = min(SCAN_STEP, c.logical + c.length - base) // ns
            if n <= 0 or budget <= 0:
                break
            budget -= n * ns
            steps.append((base, n))
    counts = np.array([n for _b, n in steps], dtype=np.int64)
    num = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    at = np.repeat(np.array([b for b, _n in steps], dtype=np.uint64), counts) + (
        num.astype(np.uint64) * np.uint64(ns))
    known = np.array(sorted(skip), dtype=np.uint64)
    sel = np.arange(len(at))
    if len(known):
        sel = np.flatnonzero(known[np.searchsorted(known, at).clip(max=len(known) - 1)] != at)
    cut = np.searchsorted(sel, np.cumsum(counts) - counts).tolist() + [len(sel)]
    nums, parts, got = num[sel].tolist(), [], []
    for k, (base, n) in enumerate(steps):
        try:
            parts.append(fs.block_heads(base, n, _HDR_DT.itemsize, nums[cut[k]:cut[k + 1]]))
        except CorruptImage:
            continue
        got.append(sel[cut[k]:cut[k + 1]])
    heads = np.frombuffer(b"".join(parts), dtype=_HDR_DT)
    rows = heads.view(np.uint8).reshape(-1, _HDR_DT.itemsize)
    at = at[np.concatenate(got)] if got else at[:0]
    ok = ((heads["bytenr"] == at) & (heads["owner"] == S.ROOT_TREE_OBJECTID)
          & (heads["level"] == 0) & (heads["generation"] < fs.sb.generation)
          & (rows[:, _FSID] == np.frombuffer(fs.meta_fsid, np.uint8)).all(axis=1))
    found = list(zip(at[ok].tolist(), heads["generation"][ok].tolist()))
    return sorted(found, key=lambda x: -x[1])


def _skip(_node, _message) -> None:
    """A child out of place in an old tree: skipped (its blocks were reused)."""


def _old_roots(fs: BtrfsFileSystem, tree_root: int, generation: int) -> list[RootInfo]:
    """The FS tree ROOT_ITEMs of the root tree of an older commit."""
    out = []
    get = _getter(fs, generation)
    try:
        for node in walk_blocks(get, tree_root, None, _skip):
            if node.level or node.cols is None:
                continue
            for i, (obj, typ, _off) in enumerate(node.keys):
                if typ == S.ROOT_ITEM and obj in fs.roots and (
                        obj == S.FS_TREE_OBJECTID or
                        S.FIRST_FREE_OBJECTID <= obj <= S.LAST_FREE_OBJECTID):
                    r = parse_root_item(obj, node.data(i), node.bytenr)
                    if r is not None and r.generation <= generation:
                        out.append(r)
    except CorruptImage:
        pass
    return out


def _index(fs: BtrfsFileSystem, old: RootInfo, shared: set[int]) -> _OldIndex:
    """The inodes, names and data extents of an older FS tree, from its blocks that the
    live tree does not share."""
    idx = _OldIndex()
    isize, head = S.INODE_ITEM_SIZE, S.FILE_EXTENT_FMT.size
    try:
        for node in walk_blocks(_getter(fs, old.generation, shared), old.bytenr, old.level,
                                _skip):
            if node.level or node.cols is None:
                continue
            for i, (obj, typ, _off) in enumerate(node.keys):
                data = node.data(i)
                if typ == S.INODE_ITEM and len(data) >= isize:
                    idx.inodes[obj] = bytes(data[:isize])
                elif typ == S.DIR_INDEX:
                    for name, loc, ftype in _names(fs, data, node.bytenr):
                        if loc[1] == S.INODE_ITEM and name and b"/" not in name:
                            idx.dirs.setdefault(obj, []).append(
                                (name.decode("utf-8", "surrogateescape"), loc[0], ftype, 0))
                elif typ == S.EXTENT_DATA and len(data) >= S.FILE_EXTENT_SIZE:
                    if S.FILE_EXTENT_FMT.unpack_from(data, 0)[-1] != 0:  # not inline
                        bytenr, n = S.FILE_EXTENT_REGULAR_FMT.unpack_from(data, head)[:2]
                        if bytenr:
                            idx.extents.setdefault(obj, []).append((bytenr, n))
    except CorruptImage:
        pass
    return idx


def _names(fs: BtrfsFileSystem, data: bytes, where: int) -> list[tuple[bytes, tuple, int]]:
    """The entries of a DIR_INDEX item of an old tree (none when it is garbled)."""
    fs.lenient += 1
    try:
        return [(n, loc, t) for n, loc, t, _v in fs.dir_items(data, where)]
    except CorruptImage:
        return []
    finally:
        fs.lenient -= 1


class _LiveExtents:
    """The data extents the live extent tree allocates, read once when first asked."""

    def __init__(self, fs: BtrfsFileSystem) -> None:
        self.fs = fs
        self.starts: list[int] | None = None
        self.ends: list[int] = []

    def _load(self) -> None:
        pairs = []
        try:
            for node, i in self.fs.tree_items(S.EXTENT_TREE_OBJECTID, (0, 0, 0),
                                              ((1 << 64) - 1, 255, (1 << 64) - 1)):
                obj, typ, off = node.keys[i]
                if typ == S.EXTENT_ITEM:
                    pairs.append((obj, obj + off))
        except (CorruptImage, NotFound):
            pairs = [(0, 1 << 64)]  # cannot tell: every extent counts as allocated
        pairs.sort()
        self.starts = [a for a, _b in pairs]
        ends, top = [], 0
        for _a, b in pairs:  # the furthest end so far: overlaps found by one bisection
            top = max(top, b)
            ends.append(top)
        self.ends = ends

    def overlaps(self, start: int, length: int) -> bool:
        """Whether a live extent overlaps ``[start, start + length)``."""
        if self.starts is None:
            self._load()
        i = bisect.bisect_left(self.starts, start + length) - 1
        return i >= 0 and self.ends[i] > start


def _compare(fs: BtrfsFileSystem, out: Deleted, key, old: RootInfo, idx: _OldIndex,
             live: TreeIndex, seen: set, extents: _LiveExtents, how: str) -> None:
    sid = old.id
    for dir_ino, kids in idx.dirs.items():
        for name, ino, ftype, _x in kids:
            if ino in live.inodes or ino not in idx.inodes or (sid, ino) in seen:
                continue
            if out.count >= MAX_GONE:
                return
            seen.add((sid, ino))
            used = [b for b, n in idx.extents.get(ino, ()) if extents.overlaps(b, n)]
            rec = idx.inodes[ino]
            isdir = ftype == 2
            note = (f"deleted: found in the FS tree of generation {old.generation} (" +
                    ("a superblock backup root)" if how == "backup" else
                     "its root tree found by scanning the metadata chunks)"))
            if used:
                note += (f"; {len(used)} of its extents overlap space allocated again "
                         "(not recoverable)")
            out.children.setdefault((sid, dir_ino), []).append(Gone(
                key, sid, ino, name, rec, ftype, how, not used and not isdir, note))
            out.count += 1


def _orphans(fs: BtrfsFileSystem, out: Deleted, live_index) -> None:
    for sid in list(fs.roots):
        if not (sid == S.FS_TREE_OBJECTID or
                S.FIRST_FREE_OBJECTID <= sid <= S.LAST_FREE_OBJECTID):
            continue
        try:
            inos = [node.keys[i][2] for node, i in fs.tree_items(
                sid, (S.ORPHAN_OBJECTID, S.ORPHAN_ITEM, 0),
                (S.ORPHAN_OBJECTID, S.ORPHAN_ITEM, (1 << 64) - 1))]
        except CorruptImage:
            continue
        if not inos:
            continue
        try:
            live = live_index(sid)
        except CorruptImage:
            continue
        for ino in inos[:MAX_GONE]:
            rec = live.inodes.get(ino) if live is not None else None
            if rec is None:
                continue
            out.orphans.setdefault(sid, []).append(Gone(
                sid, sid, ino, f"OrphanFile-{ino}", rec, 0, "inode-table", True,
                "unlinked while still open (orphan item): its inode and extents are kept"))
            out.count += 1
