"""Btrfs inodes that no directory entry reaches: names lost with a DIR_INDEX leaf.

A tree block that cannot be read takes its items with it. When it held a directory's
DIR_INDEX items, the inodes those entries named are still in the FS tree (their items are
keyed by their own number, in other leaves), and each keeps back references to its names:
INODE_REF (key offset: the parent directory; index and name in the data) and INODE_EXTREF
(parent, index and name in the data), which ``btrfs check --repair`` also relinks from.
Such an inode is listed at its path, in the directory its reference names, with
``found_by='backup'`` (the back reference) and a note; one whose references lead to no
directory is listed under ``/$OrphanFiles`` as ``OrphanFile-<inode>`` (``found_by=
'inode-table'``), as ext and NTFS list inodes no name reaches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import structs as S
from .recovery import Gone
from .tree import KEY_MAX
from .treelog import extref_names, ref_names

if TYPE_CHECKING:
    from .fs import BtrfsFileSystem
    from .index import TreeIndex

MAX_RESCUED = 100_000  # unreached inodes examined per subvolume (a hostile tree may hold more)
MAX_REFS = 64  # back references read per inode
MAX_CHAIN = 4096  # parents followed up from one placed inode
BACKREF_NOTE = ("not in its directory's index (the tree block holding that entry is "
                "unreadable): named by its inode's back reference (INODE_REF)")
HASHED_NOTE = ("not in its directory's index, nor named by a back reference (tree blocks "
               "holding them are unreadable): named by the directory's DIR_ITEM (its "
               "name-hash copy of the entry)")
UNNAMED_NOTE = ("in use, but no directory entry or back reference leads to it (its names "
                "were in unreadable tree blocks)")
LOST_DIR_NOTE = ("part of this directory's index is in an unreadable tree block: names "
                 "found through their inodes' back references are listed (found_by "
                 "'backup'); names whose inode went with it are lost")


def lost_dir_note(missing: int) -> str:
    """The note of a directory that lost names; ``missing``: name bytes its size counts
    that no entry found has (the size is twice the bytes of its names)."""
    if not missing:
        return LOST_DIR_NOTE
    return f"{LOST_DIR_NOTE}: names of {missing} bytes are not found"
_S_IFMT, _S_IFDIR = 0o170000, 0o040000
#: the directory entry file type of each inode mode (btrfs_dir_item type: 1 regular,
#: 2 directory, 3 char, 4 block, 5 FIFO, 6 socket, 7 symlink)
_MODE_FT = {0o100000: 1, 0o040000: 2, 0o020000: 3, 0o060000: 4, 0o010000: 5, 0o140000: 6,
            0o120000: 7}


def back_refs(fs: BtrfsFileSystem, tree: int, ino: int) -> list[tuple[int, str]]:
    """(parent directory, name) of every INODE_REF and INODE_EXTREF of ``ino``."""
    out: list[tuple[int, str]] = []
    for node, i in fs.tree_items(tree, (ino, S.INODE_REF, 0), (ino, S.INODE_EXTREF,
                                                                KEY_MAX[2])):
        _obj, typ, off = node.keys[i]
        data = node.data(i)
        out += ([(off, n) for n in ref_names(data)] if typ == S.INODE_REF
                else extref_names(data))
        if len(out) >= MAX_REFS:
            break
    return out[:MAX_REFS]


def rescue(fs: BtrfsFileSystem, tree: int, idx: TreeIndex) -> None:
    """Give every in-use inode of ``idx`` that no name reaches a place: its back
    reference's directory (``idx.rescued``, ``idx.lost_dirs``) or ``idx.unnamed``."""
    root = (fs.roots[tree].root_dirid or 256) if tree in fs.roots else 256
    # every name the index holds reaches its inode (one the tree log's replay removes too:
    # that name is listed, deleted)
    reached = np.sort(np.append(idx.loc[idx.ltype == S.INODE_ITEM], np.uint64(root)))
    ids = idx.ino_ids
    named = reached[np.minimum(np.searchsorted(reached, ids), len(reached) - 1)] == ids
    lost = ids[~named & (ids >= S.FIRST_FREE_OBJECTID)
               & (ids <= S.LAST_FREE_OBJECTID)].tolist()
    if not lost:
        _report(fs, tree, idx)
        return
    if len(lost) > MAX_RESCUED:
        fs.finding("error", "FS tree", None, f"subvolume {tree}: {len(lost)} inodes no name "
                   f"reaches; only the first {MAX_RESCUED} examined")
        lost = lost[:MAX_RESCUED]
    unpack, nlink, mode = S.INODE_ITEM_FMT.unpack, S.INODE_FIELDS["nlink"], S.INODE_FIELDS["mode"]
    fields = {ino: unpack(idx.inodes[ino]) for ino in lost}
    lost = [ino for ino in lost if fields[ino][nlink]]  # nlink 0: an orphan item's inode
    placed: dict[int, int] = {}
    names: dict[int, set[bytes]] = {}  # the names of each directory a name is placed in
    new: list[tuple[int, bytes, int, int, int]] = []
    notes: list[str] = []

    def place(parent: int, raw: bytes, ino: int, note: str) -> None:
        rec = idx.inodes.get(parent)
        if (not raw or b"/" in raw or raw in (b".", b"..") or rec is None
                or unpack(rec)[mode] & _S_IFMT != _S_IFDIR):
            return
        have = names.get(parent)
        if have is None:
            have = names[parent] = {idx.names[i] for i in
                                    idx.children(parent, removed=True).tolist()}
        if raw in have:
            return
        have.add(raw)
        new.append((parent, raw, ino, S.INODE_ITEM,
                    _MODE_FT.get(fields[ino][mode] & _S_IFMT, 0)))
        notes.append(note)
        idx.rescued[(parent, raw)] = note
        idx.lost_dirs.setdefault(parent, 0)
        placed.setdefault(ino, parent)

    for ino in lost:
        for parent, name in back_refs(fs, tree, ino):
            place(parent, name.encode("utf-8", "surrogateescape"), ino, BACKREF_NOTE)
    left = {ino for ino in lost if ino not in placed}
    if left:  # the directories' DIR_ITEMs (keyed by name hash) may still name them
        r = fs.roots.get(tree)
        for node in (fs.walk(r.bytenr, r.level) if r is not None else ()):
            if node.level or node.cols is None:
                continue
            for i in np.flatnonzero(node.cols[1] == S.DIR_ITEM).tolist():
                for raw, loc, _t, _v in fs.dir_items(node.data(i), node.bytenr):
                    if loc[1] == S.INODE_ITEM and loc[0] in left:
                        place(int(node.cols[0][i]), raw, loc[0], HASHED_NOTE)
    idx.add(new, notes=notes)  # listed with found_by 'backup' and their notes
    listed, todo = {root}, [root]  # what the names, old and placed, reach from the top
    while todo:
        for k in idx.dirs.get(todo.pop(), ()):
            if k[2] == S.INODE_ITEM and k[1] not in listed:
                listed.add(k[1])
                todo.append(k[1])
    for ino in lost:  # the topmost inodes no name reaches (or a loop of placed names)
        if ino in listed:
            continue
        up, steps = placed.get(ino), 0
        while up is not None and up != ino and steps < MAX_CHAIN:
            up, steps = placed.get(up), steps + 1
        if up is None and ino in placed:
            continue  # below a lost directory that is listed unnamed itself
        idx.unnamed.append(Gone(tree, tree, ino, f"OrphanFile-{ino}", idx.inodes[ino],
                                _MODE_FT.get(fields[ino][mode] & _S_IFMT, 0), "inode-table",
                                True, UNNAMED_NOTE, deleted=False))
    _report(fs, tree, idx)


def _missing_names(idx: TreeIndex) -> None:
    """Directories whose size (twice the bytes of their names: each name is in a DIR_ITEM
    and a DIR_INDEX) counts more than the names found: names lost with their inodes."""
    unpack, mode, size = (S.INODE_ITEM_FMT.unpack, S.INODE_FIELDS["mode"],
                          S.INODE_FIELDS["size"])
    for d, rec in idx.inodes.items():
        f = unpack(rec)
        if f[mode] & _S_IFMT != _S_IFDIR:
            continue
        missing = (f[size] - 2 * sum(len(k[0]) for k in idx.dirs.get(d, ()))) // 2
        if missing > 0 or d in idx.lost_dirs:
            idx.lost_dirs[d] = max(0, missing)


def _relink(fs: BtrfsFileSystem, tree: int, idx: TreeIndex) -> None:
    """Names of directories that still miss some (by their size) found through back
    references of inodes that other names reach (a hard link's lost name): one pass over
    the tree's INODE_REF and INODE_EXTREF items."""
    want = {d for d, n in idx.lost_dirs.items() if n}
    r = fs.roots.get(tree)
    if not want or r is None:
        return
    have = {d: {k[0] for k in idx.dirs.get(d, ())} for d in want}
    new: list[tuple[int, bytes, int, int, int]] = []
    unpack, mode = S.INODE_ITEM_FMT.unpack, S.INODE_FIELDS["mode"]
    for node in fs.walk(r.bytenr, r.level):
        if node.level or node.cols is None:
            continue
        objs, types, offs = node.cols[0], node.cols[1], node.cols[2]
        sel = np.flatnonzero(((types == S.INODE_REF) & np.isin(offs, list(want)))
                             | (types == S.INODE_EXTREF)).tolist()
        for i in sel:
            ino, data = int(objs[i]), node.data(i)
            refs = ([(int(offs[i]), n) for n in ref_names(data)] if types[i] == S.INODE_REF
                    else extref_names(data))
            for parent, name in refs[:MAX_REFS]:
                raw = name.encode("utf-8", "surrogateescape")
                rec = idx.inodes.get(ino)
                if parent not in want or raw in have[parent] or rec is None or not raw \
                        or b"/" in raw:
                    continue
                new.append((parent, raw, ino, S.INODE_ITEM,
                            _MODE_FT.get(unpack(rec)[mode] & _S_IFMT, 0)))
                idx.rescued[(parent, raw)] = BACKREF_NOTE
                have[parent].add(raw)
    idx.add(new, notes=[BACKREF_NOTE] * len(new))
    _missing_names(idx)


def _report(fs: BtrfsFileSystem, tree: int, idx: TreeIndex) -> None:
    """Findings for the directories that lost names and the inodes listed unnamed."""
    if fs.bad_blocks:
        _missing_names(idx)
        _relink(fs, tree, idx)
    for d in sorted(idx.lost_dirs):
        n = sum(1 for k in idx.dirs.get(d, ()) if (d, k[0]) in idx.rescued)
        fs.finding("error", "directory", None, f"subvolume {tree} directory inode {d}: part "
                   f"of its index is unreadable; {n} names found through back references "
                   "and DIR_ITEMs" + (f"; names of {idx.lost_dirs[d]} bytes that its size "
                                      "counts are not found" if idx.lost_dirs[d] else ""))
    if idx.unnamed:
        fs.finding("error", "FS tree", None, f"subvolume {tree}: {len(idx.unnamed)} inodes in "
                   "use that no name reaches, listed in /$OrphanFiles")

