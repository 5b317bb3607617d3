"""The ``files()`` frame of a Btrfs subvolume, built column-wise from one pass over its tree.

Listing directory by directory searches the tree once per inode (a descent from the root
each time); a recursive listing instead reads every leaf of the FS tree once, in key order,
keeping the INODE_ITEMs and DIR_INDEX entries, then walks the directories in memory. The
rows and their order are those of the generic walk (a directory's children in DIR_INDEX
order, then each subdirectory's, depth first: the one walk of :mod:`..walk`); subvolumes
met on the way are scanned the same way when reached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...errors import VDInspectError
from ..base import DIR, FILE, OTHER, SYMLINK, Entry
from ..walk import HANDLE, PATH, PAYLOAD, Walk
from . import structs as S
from .rescue import lost_dir_note

if TYPE_CHECKING:
    from .fs import BtrfsFileSystem

_MODE_KIND = {0o040000: DIR, 0o100000: FILE, 0o120000: SYMLINK}
_FT_KIND = {1: FILE, 2: DIR, 7: SYMLINK}
_NAT = -(1 << 63)
_NO_TIMES = (0,) * 8  # an entry without an inode: no times
_DIR_DT = S.np_dtype(S.DirItem)
_DIR_N = _DIR_DT.itemsize


class TreeIndex:
    """A subvolume's INODE_ITEMs (raw bytes by inode) and directories (children lists)."""

    def __init__(self, fs: BtrfsFileSystem, tree: int) -> None:
        self.inodes: dict[int, bytes] = {}
        self.dirs: dict[int, list[tuple[bytes, int, int, int]]] = {}
        self.journal: set[tuple[int, bytes]] = set()  # (directory, name) the tree log adds
        self.blocks: set[int] = set()  # the tree's blocks (an older tree shares some)
        self.rescued: dict[tuple[int, bytes], str] = {}  # (directory, name) -> note
        self.lost_dirs: dict[int, int] = {}  # directories that lost names -> name bytes
        self.unnamed: list = []  # recovery.Gone of in-use inodes no name reaches
        r = fs._tree_root(tree)
        isize = S.INODE_ITEM_SIZE
        for node in fs.walk(r.bytenr, r.level):
            self.blocks.add(node.bytenr)
            if node.level:
                continue
            buf = node.buf
            if node.cols is None:  # an empty leaf
                continue
            objs, types, _offs, starts, sizes = node.cols
            sel = np.flatnonzero(types == S.INODE_ITEM)
            for obj, a, n in zip(objs[sel].tolist(), starts[sel].tolist(),
                                 sizes[sel].tolist()):
                if n >= isize:
                    self.inodes[obj] = buf[a:a + isize]
                else:
                    fs.problem(f"inode {obj}", node.bytenr, "INODE_ITEM cut short")
            sel = np.flatnonzero(types == S.DIR_INDEX)
            if len(sel):
                self._dir_index(fs, node, objs[sel], starts[sel], sizes[sel])
        rp = fs.log_replay(tree)
        if rp is not None:  # the tree log's inodes and names laid over the tree
            self.inodes.update(rp.inodes)
            for d, kids in rp.dirs.items():
                have = {k[0] for k in self.dirs.get(d, ())}
                for kid in kids:
                    if kid[0] not in have:
                        self.dirs.setdefault(d, []).append(kid)
                        self.journal.add((d, kid[0]))

    def _dir_index(self, fs: BtrfsFileSystem, node, objs, starts, sizes) -> None:
        """A leaf's DIR_INDEX items: each holds one entry, whose headers are decoded
        together (an item that is not exactly one entry goes through ``dir_items``)."""
        buf = node.buf
        whole = sizes >= _DIR_N
        heads = np.zeros(len(starts), dtype=_DIR_DT)
        if whole.any():
            raw = np.frombuffer(buf, dtype=np.uint8)
            at = starts[whole][:, None] + np.arange(_DIR_N)
            heads[whole] = raw[at].reshape(-1).view(_DIR_DT)
        nlen = heads["name_len"].astype(np.int64)
        one = whole & (_DIR_N + nlen + heads["data_len"] == sizes) & (nlen > 0) & (
            nlen <= 4095)
        rows = zip(one.tolist(), objs.tolist(), starts.tolist(), sizes.tolist(),
                   nlen.tolist(), heads["location_objectid"].tolist(),
                   heads["location_type"].tolist(), heads["type"].tolist())
        dirs = self.dirs
        for simple, obj, a, n, nl, lobj, ltyp, ftype in rows:
            kids = dirs.get(obj)
            if kids is None:
                kids = dirs[obj] = []
            if simple:
                kids.append((buf[a + _DIR_N:a + _DIR_N + nl], lobj, ltyp, ftype))
                continue
            for name, loc, ft, _v in fs.dir_items(buf[a:a + n], node.bytenr):
                kids.append((name, loc[0], loc[1], ft))


JOURNAL_NOTE = "replayed from the tree log (fsync'd)"
NO_INODE_NOTE = ("no INODE_ITEM for this name (its tree block is unreadable or the item "
                 "is gone): size and content unknown")


def files_columns(fs: BtrfsFileSystem, top: Entry) -> tuple[dict, list]:
    """Every entry below the directory ``top`` (recursive), through the one walk
    (:mod:`..walk`): the files() columns (with ``subvolume``) and each row's (tree,
    inode) key."""
    unpack = S.INODE_ITEM_FMT.unpack
    index = fs.tree_index

    def children(d: tuple) -> list[tuple]:
        tree, ino = d[HANDLE]
        idx = index(tree)
        if idx is None:
            return []
        dpath = "/" if d[PATH] in ("", "/") else d[PATH]
        prefix = "/" if dpath == "/" else dpath + "/"
        out = []
        for raw, loc_obj, loc_type, ftype in idx.dirs.get(ino, ()):
            name = raw.decode("utf-8", "surrogateescape")
            if not raw or b"/" in raw or raw in (b".", b".."):
                fs.problem("DIR_INDEX", None, f"bad name {raw!r} in directory {ino} of "
                           f"tree {tree}")
                continue
            ctree, cino = tree, loc_obj
            if loc_type == S.ROOT_ITEM:
                ctree = loc_obj
                r = fs.roots.get(ctree)
                cino = (r.root_dirid or 256) if r is not None else None
                cidx = index(ctree) if r is not None else None
                rec = cidx.inodes.get(cino) if cidx is not None else None
            elif loc_type == S.INODE_ITEM:
                rec = idx.inodes.get(cino)
                if rec is None:
                    fs.problem("DIR_INDEX", None,
                               f"{name!r} names inode {cino} which has no INODE_ITEM")
            else:
                fs.problem("DIR_INDEX", None, f"{name!r}: location type {loc_type}")
                continue
            path = prefix + name
            key = (ino, raw)
            found = ("journal" if key in idx.journal else
                     "backup" if key in idx.rescued else "index")
            note = (None if found == "index" else idx.rescued[key] if found == "backup"
                    else JOURNAL_NOTE)
            target = None
            if rec is None:
                kind = DIR if loc_type == S.ROOT_ITEM else _FT_KIND.get(ftype, OTHER)
                row = (path, name, dpath, kind, 0, None, None, None, None, _NO_TIMES,
                       cino, None, None, ctree, found, note)
            else:
                f = unpack(rec)
                mode = f[8]
                kind = _MODE_KIND.get(mode & 0o170000) or (OTHER if mode else
                                                           _FT_KIND.get(ftype, OTHER))
                if kind == SYMLINK:
                    try:
                        src = fs._content(ctree, cino, min(f[2], 4096), path)
                        target = src.read(0, src.size).split(b"\0", 1)[0].decode(
                            "utf-8", "surrogateescape")
                    except VDInspectError:
                        if fs.strict:
                            raise
                row = (path, name, dpath, kind, f[2], f[3], mode, f[6], f[7], f[16:24],
                       cino, f[5], target, ctree, found, note)
            if kind == DIR and cino is not None:
                out.append((path, True, (ctree, cino), False, (ctree, cino), row))
            else:
                out.append((path, False, None, False, None, row))
        return out

    rows: list[tuple] = []
    walk = Walk(fs, (top.path, True, top.key, False, top.key, None), children)
    for _d, kids in walk:
        rows += [c[PAYLOAD] for c in kids]

    names = ("path", "name", "parent", "kind", "size", "allocated", "mode", "uid", "gid",
             "times", "inode", "links", "target", "subvolume", "found_by", "note")
    n = len(rows)
    cols = dict(zip(names, (list(c) for c in zip(*rows)))) if rows else {c: [] for c in names}
    keys = list(zip(cols["subvolume"], cols["inode"]))
    # the inode's timespecs (atime, ctime, mtime, otime: seconds, nanoseconds), in bulk
    ts = np.array(cols.pop("times"), dtype=np.uint64).reshape(n, 8)
    for c, k in (("accessed", 0), ("changed", 2), ("modified", 4), ("created", 6)):
        sec, nsec = ts[:, k].view(np.int64), np.minimum(ts[:, k + 1], 999_999_999)
        ok = ((sec != 0) | (nsec != 0)) & (np.abs(sec) < 1 << 42)
        us = np.where(ok, sec * 1_000_000 + (nsec // 1000).astype(np.int64), _NAT)
        cols[c] = us.view("datetime64[us]")
    for i, r in enumerate(rows):
        if r[10] is not None and r[5] is None and r[3] != DIR:  # no inode item: no bytes
            cols["note"][i] = NO_INODE_NOTE
        elif r[3] == DIR and r[10] is not None and (li := index(keys[i][0])) is not None \
                and r[10] in li.lost_dirs:  # a folder that lost names with a leaf
            cols["note"][i] = lost_dir_note(li.lost_dirs[r[10]])
    for at, why in walk.notes.items():
        old = cols["note"][at]
        cols["note"][at] = why if old is None else f"{old}; {why}"
    cols["deleted"] = cols["recoverable"] = np.zeros(n, dtype=bool)
    cols["subvolume"] = cols.pop("subvolume")  # the extra column, after the schema's
    return cols, keys
