"""The ``files()`` columns of a Btrfs subvolume, built from one pass over its tree.

Listing directory by directory searches the tree once per inode (a descent from the root
each time); a recursive listing instead indexes the FS tree once (:class:`.index.TreeIndex`:
every leaf read in bulk), then walks the directories in memory through the one walk
(:mod:`..walk`), a directory's entries at a time as columns: each child's payload is its
directory's chunk (names, paths and a span of the index or its columns), which the walk
does not read. The rows and their order are the walk's (a directory's children in
DIR_INDEX order, then each subdirectory's, depth first); subvolumes met on the way are
indexed the same way when reached. Only the names and paths are Python objects per entry;
the inode fields are gathered with numpy after the walk.
"""

from __future__ import annotations

from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np

from ...errors import VDInspectError
from ..base import Entry
from ..walk import HANDLE, PATH, PAYLOAD, Walk
from . import structs as S
from .index import INODE_DT, KIND_CODES, TreeIndex, kind_codes
from .rescue import lost_dir_note

if TYPE_CHECKING:
    from .fs import BtrfsFileSystem

_NAT = -(1 << 63)
_BIG = np.uint64(1 << 63)
NO_INODE_NOTE = ("no INODE_ITEM for this name (its tree block is unreadable or the item "
                 "is gone): size and content unknown")
JOURNAL_NOTE = "replayed from the tree log (fsync'd)"
KINDS = np.array(KIND_CODES, dtype=object)


class _Chunk:
    """One directory's rows: names, paths, parent; ``deleted``, ``found`` and ``note``
    lists (None: a plain directory's, not deleted, ``index``, no note); ``part``: a span
    of its tree's index (tree, start, end) or columns (see :func:`_columns`)."""

    __slots__ = ("names", "paths", "parent", "deleted", "found", "note", "part")

    def __init__(self, names, paths, parent, deleted, found, note, part) -> None:
        self.names, self.paths, self.parent = names, paths, parent
        self.deleted, self.found, self.note, self.part = deleted, found, note, part


def files_columns(fs: BtrfsFileSystem, top: Entry) -> tuple[dict, _Keys]:
    """Every entry below the directory ``top`` (recursive), through the one walk: the
    files() columns (with ``subvolume``) and each row's (tree, inode) key (an iterable)."""
    index = fs.tree_index

    def children(d: tuple) -> list[tuple]:
        tree, ino = d[HANDLE]
        idx = index(tree)
        if idx is None:
            return []
        dpath = "/" if d[PATH] in ("", "/") else d[PATH]
        prefix = "/" if dpath == "/" else dpath + "/"
        return _list(fs, idx, tree, ino, dpath, prefix)

    chunks: list[_Chunk] = []
    walk = Walk(fs, (top.path, True, top.key, False, top.key, None), children)
    for _d, kids in walk:
        if kids:
            chunks.append(kids[0][PAYLOAD])
    return _frame_columns(fs, chunks, walk.notes)


def _kids(chunk: _Chunk, isdir: list[bool], handles: list) -> list[tuple]:
    """The walk's child tuples of a directory's rows (each payload: the chunk)."""
    return list(zip(chunk.paths, isdir, handles, repeat(False), handles,
                    repeat(chunk, len(isdir))))


def _list(fs: BtrfsFileSystem, idx: TreeIndex, tree: int, ino: int, dpath: str,
          prefix: str) -> list[tuple]:
    """The children of directory ``ino`` (a plain directory's from the spans computed for
    the whole tree)."""
    fast = idx.fast()
    span = fast.span.get(ino)
    if span is None:
        sel = idx.children(ino, removed=True)
        return _list_dir(fs, idx, tree, ino, sel, dpath, prefix) if len(sel) else []
    a, b = span
    names = fast.text[a:b]
    chunk = _Chunk(names, [prefix + n for n in names], dpath, None, None, None, (tree, a, b))
    handles: list = [None] * (b - a)
    loc = idx.loc
    for i in fast.subdirs.get(ino, ()):
        handles[i - a] = (tree, int(loc[i]))
    return _kids(chunk, fast.isdir[a:b], handles)


def _list_dir(fs: BtrfsFileSystem, idx: TreeIndex, tree: int, ino: int, sel: np.ndarray,
              dpath: str, prefix: str) -> list[tuple]:
    """The children of directory ``ino``: its entries ``sel``."""
    bad = idx.badname[sel]
    if bad.any():
        for i in sel[bad].tolist():
            fs.problem("DIR_INDEX", None, f"bad name {idx.names[i]!r} in directory {ino} of "
                       f"tree {tree}")
        sel = sel[~bad]
    ltype = idx.ltype[sel]
    other = (ltype != S.INODE_ITEM) & (ltype != S.ROOT_ITEM)
    if other.any():
        for i in sel[other].tolist():
            name = idx.names[i].decode("utf-8", "surrogateescape")
            fs.problem("DIR_INDEX", None, f"{name!r}: location type {int(idx.ltype[i])}")
        sel, ltype = sel[~other], ltype[~other]
    k = len(sel)
    if not k:
        return []
    names = [idx.names[i].decode("utf-8", "surrogateescape") for i in sel.tolist()]
    paths = [prefix + n for n in names]
    cino = idx.loc[sel]
    rows = idx.rows(cino)
    ctree = np.full(k, tree, dtype=np.uint64)
    noino = np.zeros(k, dtype=bool)
    sub = ltype == S.ROOT_ITEM
    have = (rows >= 0) & ~sub
    for j in np.flatnonzero(~have & ~sub).tolist():
        fs.problem("DIR_INDEX", None,
                   f"{names[j]!r} names inode {int(cino[j])} which has no INODE_ITEM")
    mode = np.zeros(k, dtype=np.uint32)
    mode[have] = idx.recs["mode"][rows[have]]
    for j in np.flatnonzero(sub).tolist():  # a subvolume linked here: its top directory
        sid = int(cino[j])
        ctree[j] = sid
        r = fs.roots.get(sid)
        cidx = fs.tree_index(sid) if r is not None else None
        if r is None:
            noino[j] = True
            continue
        cino[j] = r.root_dirid or 256
        rows[j] = cidx.row(int(cino[j])) if cidx is not None else -1
        if rows[j] >= 0:
            have[j] = True
            mode[j] = cidx.recs["mode"][rows[j]]
    ftype = np.where(sub, 2, idx.ftype[sel])
    codes = kind_codes(mode, have, ftype)
    gone = ~idx.live[sel]  # names the tree log's replay removes: listed as deleted
    journal = idx.journal[sel] | gone
    backup = idx.backup[sel]  # names rescue placed through back references
    notes = idx.notes
    found = ["journal" if jn else "backup" if bk else "index"
             for jn, bk in zip(journal.tolist(), backup.tolist())]
    note = [NO_INODE_NOTE if not h and c != 1 and not n else
            notes.get(i, JOURNAL_NOTE if jn else None)
            for h, c, n, i, jn in zip(have.tolist(), codes.tolist(), noino.tolist(),
                                      sel.tolist(), journal.tolist())]
    chunk = _Chunk(names, paths, dpath, gone.tolist(), found, note,
                   (ctree, cino, rows, codes, have, noino))
    isdir = (codes == 1) & ~noino & ~gone  # a removed directory is not entered
    handles: list = [None] * k
    ct, ci = ctree.tolist(), cino.tolist()
    for j in np.flatnonzero(isdir).tolist():
        handles[j] = (ct[j], ci[j])
    return _kids(chunk, isdir.tolist(), handles)


def _columns(fs: BtrfsFileSystem, parts: list[tuple]) -> list[tuple]:
    """The parts as (tree, inode, row, kind code, has an inode, no inode number) arrays:
    the spans of plain directories (tree, start, end) taken from their tree's index,
    neighbouring spans of one tree together."""
    out: list[tuple] = []
    run: list[tuple[int, int]] = []
    tree = None

    def flush() -> None:
        if not run:
            return
        fast = fs.tree_index(tree).fast()
        starts = np.array([a for a, _b in run], dtype=np.int64)
        lens = np.array([b - a for a, b in run], dtype=np.int64)
        total = int(lens.sum())
        e = np.repeat(starts - (np.cumsum(lens) - lens), lens) + np.arange(total)
        out.append((np.full(total, tree, dtype=np.uint64), fs.tree_index(tree).loc[e],
                    fast.row[e], fast.code[e], np.ones(total, dtype=bool),
                    np.zeros(total, dtype=bool)))
        run.clear()

    for p in parts:
        if len(p) == 3:
            if p[0] != tree:
                flush()
                tree = p[0]
            run.append((p[1], p[2]))
        else:
            flush()
            out.append(p)
    flush()
    return out


def _times(recs: np.ndarray, have: np.ndarray, field: str) -> np.ndarray:
    """One timestamp column (NaT where there is no inode or the time is 0)."""
    sec = recs[f"{field}.sec"].view(np.int64)
    nsec = np.minimum(recs[f"{field}.nsec"], 999_999_999).astype(np.int64)
    ok = have & ((sec != 0) | (nsec != 0)) & (np.abs(sec) < 1 << 42)
    return np.where(ok, sec * 1_000_000 + nsec // 1000, _NAT).view("datetime64[us]")


def _take(recs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``recs[rows]``, the records moved as rows of bytes (numpy gathers a packed record
    dtype field by field: twice as slow)."""
    flat = np.ascontiguousarray(recs).view(np.uint8).reshape(len(recs), INODE_DT.itemsize)
    return flat[rows].view(INODE_DT).reshape(-1)


def _masked(values: np.ndarray, have: np.ndarray) -> np.ma.MaskedArray:
    return np.ma.MaskedArray(values.astype(np.int64), ~have)


def _frame_columns(fs: BtrfsFileSystem, chunks: list[_Chunk], walk_notes: dict[int, str]
                   ) -> tuple[dict, _Keys]:
    """The rows the walk gave, as columns: inode fields taken from each tree's index in
    bulk; the walk's notes on their rows."""
    path: list[str] = []
    name: list[str] = []
    parent: list[str] = []
    found: list[str] = []
    note: list[str | None] = []
    gone: list[int] = []  # rows the tree log's replay removes
    for c in chunks:
        k = len(c.names)
        if c.deleted is not None and any(c.deleted):
            gone += [len(path) + j for j, x in enumerate(c.deleted) if x]
        path += c.paths
        name += c.names
        parent += [c.parent] * k
        found += ["index"] * k if c.found is None else c.found
        note += [None] * k if c.note is None else c.note
    parts = _columns(fs, [c.part for c in chunks])
    if parts:
        ctree, cino, rows, codes, have, noino = (np.concatenate(c) for c in zip(*parts))
    else:
        ctree = cino = np.zeros(0, dtype=np.uint64)
        rows = np.zeros(0, dtype=np.int64)
        codes = np.zeros(0, dtype=np.int8)
        have = noino = np.zeros(0, dtype=bool)
    n = len(rows)
    trees = np.unique(ctree[have]).tolist()
    if len(trees) == 1:  # one subvolume: one gather (rows without an inode masked below)
        recs = _take(fs.tree_index(trees[0]).recs, np.where(have, rows, 0))
    else:
        recs = np.zeros(n, dtype=INODE_DT)
        for t in trees:
            m = np.flatnonzero(have & (ctree == t))
            recs[m] = _take(fs.tree_index(t).recs, rows[m])
    targets: list[str | None] = [None] * n
    for j in np.flatnonzero(have & (codes == 2)).tolist():
        try:
            src = fs._content(int(ctree[j]), int(cino[j]), min(int(recs["size"][j]), 4096),
                              path[j])
            targets[j] = src.read(0, src.size).split(b"\0", 1)[0].decode(
                "utf-8", "surrogateescape")
        except VDInspectError:
            if fs.strict:
                raise
    for t in np.unique(ctree[(codes == 1) & ~noino]).tolist():  # folders that lost names
        li = fs.tree_index(t)
        if li is None or not li.lost_dirs:
            continue
        lost = li.lost_dirs
        m = (ctree == t) & (codes == 1) & ~noino & np.isin(cino, list(lost))
        for j in np.flatnonzero(m).tolist():
            note[j] = lost_dir_note(lost[int(cino[j])])
    for at, why in walk_notes.items():
        old = note[at]
        note[at] = why if old is None else f"{old}; {why}"
    dele = np.zeros(n, dtype=bool)
    dele[gone] = True
    cols = {
        "path": path, "name": name, "parent": parent, "kind": KINDS[codes],
        "size": np.where(have, recs["size"].view(np.int64), 0),
        "allocated": _masked(recs["nbytes"], have & (recs["nbytes"] < _BIG)),
        "mode": _masked(recs["mode"], have), "uid": _masked(recs["uid"], have),
        "gid": _masked(recs["gid"], have),
        "created": _times(recs, have, "otime"), "modified": _times(recs, have, "mtime"),
        "accessed": _times(recs, have, "atime"), "changed": _times(recs, have, "ctime"),
        "inode": _masked(cino, ~noino & (cino < _BIG)),
        "links": _masked(recs["nlink"], have),
        "deleted": dele, "recoverable": dele & have & (codes == 0),
        "target": targets, "found_by": found, "note": note,
        "subvolume": _masked(ctree, ctree < _BIG),
    }
    return cols, _Keys(ctree, cino, noino)


class _Keys:
    """The rows' (tree, inode) keys (inode None where the entry has no inode number),
    made when iterated: only a volume with damaged ranges asks for them."""

    def __init__(self, ctree: np.ndarray, cino: np.ndarray, noino: np.ndarray) -> None:
        self.ctree, self.cino, self.noino = ctree, cino, noino

    def __len__(self) -> int:
        return len(self.ctree)

    def __iter__(self):
        inos = self.cino.tolist()
        for j in np.flatnonzero(self.noino).tolist():
            inos[j] = None
        return zip(self.ctree.tolist(), inos)
