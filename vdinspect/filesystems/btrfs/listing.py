"""The ``files()`` frame of a Btrfs subvolume, built column-wise from one pass over its tree.

Listing directory by directory searches the tree once per inode (a descent from the root
each time); a recursive listing instead indexes the FS tree once (:class:`.index.TreeIndex`:
every leaf read in bulk), then walks the directories in memory, a directory's entries at a
time as columns. The rows and their order are those of the generic walk (a directory's
children in DIR_INDEX order, then each subdirectory's, depth first); subvolumes met on the
way are indexed the same way when reached. Only the names and paths are Python objects
per entry; the inode fields are gathered with numpy at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...errors import VDInspectError
from ..base import MAX_DEPTH, MAX_PATH, Entry
from . import structs as S
from .index import INODE_DT, KIND_CODES, TreeIndex, kind_codes

if TYPE_CHECKING:
    import pandas as pd

    from .fs import BtrfsFileSystem

_NAT = -(1 << 63)
NO_INODE_NOTE = ("no INODE_ITEM for this name (its tree block is unreadable or the item "
                 "is gone): size and content unknown")
JOURNAL_NOTE = "replayed from the tree log (fsync'd)"
KINDS = np.array(KIND_CODES, dtype=object)


class _Rows:
    """The frame's rows, a directory's entries at a time (columns)."""

    def __init__(self) -> None:
        self.path: list[str] = []
        self.name: list[str] = []
        self.parent: list[str] = []
        self.found: list[str] = []
        self.deleted: list[bool] = []
        self.note: list[str | None] = []
        self.keys: list[tuple] = []
        self.parts: list[tuple] = []  # (tree, start, end) spans or columns (_columns)


def _times(recs: np.ndarray, have: np.ndarray, field: str):
    """One timestamp column (NaT where there is no inode or the time is 0)."""
    import pandas as pd

    sec = recs[f"{field}.sec"].view(np.int64)
    nsec = np.minimum(recs[f"{field}.nsec"], 999_999_999).astype(np.int64)
    ok = have & ((sec != 0) | (nsec != 0)) & (np.abs(sec) < 1 << 42)
    us = np.where(ok, sec * 1_000_000 + nsec // 1000, _NAT)
    return pd.DatetimeIndex(us.view("datetime64[us]")).tz_localize("UTC").array


def _nullable(values: np.ndarray, have: np.ndarray):
    import pandas as pd

    return pd.arrays.IntegerArray(values.astype(np.int64), ~have)


def files_frame(fs: BtrfsFileSystem, top: Entry) -> pd.DataFrame:
    """Every entry below the directory ``top`` (recursive), as the files() frame."""
    index = fs.tree_index
    out = _Rows()
    tree0, ino0 = top.key
    stack = [(tree0, ino0, "/" if top.path in ("", "/") else top.path, 0)]
    listed = {(tree0, ino0)}
    way: list[tuple[int, int]] = []
    while stack:
        tree, ino, dpath, depth = stack.pop()
        del way[depth:]
        way.append((tree, ino))
        idx = index(tree)
        if idx is None:
            continue
        prefix = "/" if dpath == "/" else dpath + "/"
        subdirs = []
        for ctree, cino, path in _list(fs, idx, tree, ino, dpath, prefix, out):
            cid = (ctree, cino)
            if cid in way:
                fs.finding("error", "directory", None,
                           f"{path}: directory loop (points back to an ancestor); not followed")
            elif cid in listed:
                fs.finding("error", "directory", None, f"{path}: directory already listed "
                           "under another name (a directory hard link); not followed")
            elif depth + 1 >= MAX_DEPTH:
                fs.finding("error", "directory", None, f"{path}: deeper than {MAX_DEPTH} "
                           "levels; not followed")
            elif len(path) > MAX_PATH:
                fs.finding("error", "directory", None,
                           f"{path}: path longer than {MAX_PATH} characters; not followed")
            else:
                listed.add(cid)
                subdirs.append((ctree, cino, path, depth + 1))
        stack.extend(reversed(subdirs))
    return _frame(fs, out)


def _list(fs: BtrfsFileSystem, idx: TreeIndex, tree: int, ino: int, dpath: str,
          prefix: str, out: _Rows) -> list[tuple[int, int, str]]:
    """Add the entries of directory ``ino`` to ``out`` (a plain directory's from the
    spans computed for the whole tree); its subdirectories (tree, inode, path)."""
    fast = idx.fast()
    span = fast.span.get(ino)
    if span is None:
        sel = idx.children(ino, removed=True)
        return _list_dir(fs, idx, tree, ino, sel, dpath, prefix, out) if len(sel) else []
    a, b = span
    names = fast.text[a:b]
    out.path += [prefix + n for n in names]
    out.name += names
    k = b - a
    out.parent += [dpath] * k
    out.deleted += [False] * k
    out.found += ["index"] * k
    out.note += [None] * k
    out.parts.append((tree, a, b))
    loc = idx.loc
    return [(tree, int(loc[i]), prefix + fast.text[i]) for i in fast.subdirs.get(ino, ())]


def _list_dir(fs: BtrfsFileSystem, idx: TreeIndex, tree: int, ino: int, sel: np.ndarray,
              dpath: str, prefix: str, out: _Rows) -> list[tuple[int, int, str]]:
    """Add the entries ``sel`` of directory ``ino`` to ``out``; its subdirectories
    (tree, inode, path) in order."""
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
    size = np.zeros(k, dtype=np.uint64)
    size[have] = idx.recs["size"][rows[have]]
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
            size[j] = cidx.recs["size"][rows[j]]
    ftype = np.where(sub, 2, idx.ftype[sel])
    codes = kind_codes(mode, have, ftype)
    gone = ~idx.live[sel]  # names the tree log's replay removes: listed as deleted
    journal = idx.journal[sel] | gone
    notes = idx.notes
    out.path += paths
    out.name += names
    out.parent += [dpath] * k
    out.deleted += gone.tolist()
    out.found += ["journal" if x else "index" for x in journal.tolist()]
    out.note += [NO_INODE_NOTE if not h and c != 1 and not n else
                 notes.get(i, JOURNAL_NOTE if jn else None)
                 for h, c, n, i, jn in zip(have.tolist(), codes.tolist(), noino.tolist(),
                                           sel.tolist(), journal.tolist())]
    out.parts.append((ctree, cino, rows, codes, have, noino))
    isdir = (codes == 1) & ~noino & ~gone
    ct, ci = ctree.tolist(), cino.tolist()
    return [(ct[j], ci[j], paths[j]) for j in np.flatnonzero(isdir).tolist()]


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


def _frame(fs: BtrfsFileSystem, out: _Rows) -> pd.DataFrame:
    """The rows gathered: inode fields taken from each tree's index in bulk."""
    import pandas as pd

    from ...frames import FILES_DTYPES, text_array

    parts = _columns(fs, out.parts)
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
        recs = fs.tree_index(trees[0]).recs[np.where(have, rows, 0)]
    else:
        recs = np.zeros(n, dtype=INODE_DT)
        for t in trees:
            m = np.flatnonzero(have & (ctree == t))
            recs[m] = fs.tree_index(t).recs[rows[m]]
    targets: list[str | None] = [None] * n
    for j in np.flatnonzero(have & (codes == 2)).tolist():
        try:
            src = fs._content(int(ctree[j]), int(cino[j]), min(int(recs["size"][j]), 4096),
                              out.path[j])
            targets[j] = src.read(0, src.size).split(b"\0", 1)[0].decode(
                "utf-8", "surrogateescape")
        except VDInspectError:
            if fs.strict:
                raise
    deleted = np.array(out.deleted, dtype=bool)
    big = np.uint64(1 << 63)
    data = {
        "path": text_array(out.path), "name": text_array(out.name),
        "parent": text_array(out.parent), "kind": text_array(KINDS[codes]),
        "size": np.where(have, recs["size"].view(np.int64), 0),
        "allocated": _nullable(recs["nbytes"], have & (recs["nbytes"] < big)),
        "mode": _nullable(recs["mode"], have), "uid": _nullable(recs["uid"], have),
        "gid": _nullable(recs["gid"], have),
        "created": _times(recs, have, "otime"), "modified": _times(recs, have, "mtime"),
        "accessed": _times(recs, have, "atime"), "changed": _times(recs, have, "ctime"),
        "inode": _nullable(cino, ~noino & (cino < big)),
        "links": _nullable(recs["nlink"], have),
        "deleted": deleted, "recoverable": deleted & have & (codes == 0),
        "target": text_array(targets), "found_by": text_array(out.found),
        "note": text_array(out.note),
    }
    data["subvolume"] = _nullable(ctree, ctree < big)
    df = pd.DataFrame(data, columns=list(FILES_DTYPES) + ["subvolume"], copy=False)
    def entries() -> list[Entry]:  # only asked for when the volume has damaged ranges
        keys = [(t, None if no else i) for t, i, no in zip(ctree.tolist(), cino.tolist(),
                                                           noino.tolist())]
        return [Entry(name=nm, kind=k, size=s or 0, path=p, inode=key[1], key=key)
                for nm, k, s, p, key in zip(out.name, KINDS[codes].tolist(),
                                            data["size"].tolist(), out.path, keys)]

    return fs._add_damage(df, entries)
