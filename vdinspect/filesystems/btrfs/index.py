"""A subvolume's inodes and directory entries as columns, from one bulk pass over its tree.

:class:`TreeIndex` reads every leaf of an FS tree once (:mod:`.bulk`), keeping the
INODE_ITEMs (decoded together through the InodeItem dtype) and the DIR_INDEX entries
(headers decoded together; only the names are cut out one by one). Entries of one
directory are contiguous, in DIR_INDEX order, because the items are in key order. The
tree log's inodes and names (:mod:`.treelog`) are laid over them, and its removals
applied (:func:`.treelog.removals`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np

from ...layout import numpy_dtype
from ..base import DIR, FILE, OTHER, SYMLINK
from ..entry import decode_names
from . import structs as S

if TYPE_CHECKING:
    from .fs import BtrfsFileSystem

INODE_DT = numpy_dtype(S.InodeItem)
DIR_DT = numpy_dtype(S.DirItem)
_DIR_N = DIR_DT.itemsize
_ISIZE = INODE_DT.itemsize
_SLASH, _DOT = ord("/"), ord(".")
MAX_NAME = 4095


class InodeView(Mapping):
    """The INODE_ITEMs of a :class:`TreeIndex` as a mapping inode -> raw item bytes."""

    def __init__(self, index: TreeIndex) -> None:
        self.index = index

    def __getitem__(self, ino: int) -> bytes:
        row = self.index.row(ino)
        if row < 0:
            raise KeyError(ino)
        return self.index.recs[row].tobytes()

    def __contains__(self, ino: object) -> bool:
        return isinstance(ino, int) and self.index.row(ino) >= 0

    def __iter__(self) -> Iterator[int]:
        return iter(self.index.ino_ids.tolist())

    def __len__(self) -> int:
        return len(self.index.ino_ids)


class DirView(Mapping):
    """The directories of a :class:`TreeIndex` as a mapping inode -> [(name bytes,
    location objectid, location type, file type)]."""

    def __init__(self, index: TreeIndex) -> None:
        self.index = index

    def __getitem__(self, ino: int) -> list[tuple[bytes, int, int, int]]:
        ix = self.index
        sel = ix.children(ino)
        if not len(sel):
            raise KeyError(ino)
        return list(zip([ix.names[i] for i in sel.tolist()], ix.loc[sel].tolist(),
                        ix.ltype[sel].tolist(), ix.ftype[sel].tolist()))

    def __iter__(self) -> Iterator[int]:
        return iter(dict.fromkeys(self.index.dir_of[self.index.live].tolist()))

    def __len__(self) -> int:
        return len(np.unique(self.index.dir_of[self.index.live]))


class TreeIndex:
    """A subvolume's INODE_ITEMs (``recs``, InodeItem records sorted by ``ino_ids``) and
    directory entries (``dir_of``, ``names``, ``loc``, ``ltype``, ``ftype``, ``badname``,
    ``journal``: added by the tree log, ``backup``: placed by :mod:`.rescue`, ``live``:
    False when the log's replay removes it); ``inodes``/``dirs`` show them as mappings,
    ``blocks`` are the tree's blocks (``plain``: its leaves that are no root tree leaf, as
    their first copies say); ``rescued``, ``lost_dirs`` and ``unnamed`` are what
    :func:`.rescue.rescue` finds of names lost with unreadable leaves."""

    def __init__(self, fs: BtrfsFileSystem, tree: int) -> None:
        self.blocks: set[int] = set()  # the tree's blocks (an older tree shares some)
        plain = []  # leaves a scan for older root tree leaves can pass over
        r = fs._tree_root(tree)
        ids, recs = [], []
        # dir, location, type, file type, bad, index: arrays of each batch
        cols: list[list[np.ndarray]] = [[] for _dt in _COL_DT]
        names: list[bytes] = []
        for above, b in fs.leaf_batches(r.bytenr, r.level):
            if above is not None:
                self.blocks.add(above.bytenr)
            if b is None:
                continue
            self.blocks.update(b.bytenr.tolist())
            plain.append(b.not_root_tree())
            sel = b.sorted(np.flatnonzero(b.typ == S.INODE_ITEM))
            short = b.size[sel] < _ISIZE
            for k in sel[short].tolist():
                fs.problem(f"inode {int(b.obj[k])}", b.address(k), "INODE_ITEM cut short")
            sel = sel[~short]
            ids.append(b.obj[sel])
            recs.append(b.gather(sel, _ISIZE))
            sel = b.sorted(np.flatnonzero(b.typ == S.DIR_INDEX))
            if len(sel):
                _dir_index(fs, b, sel, cols, names)
        self.plain = np.concatenate(plain) if plain else np.zeros(0, np.uint64)
        self.ino_ids = np.concatenate(ids) if ids else np.zeros(0, np.uint64)
        raw = np.concatenate(recs) if recs else np.zeros((0, _ISIZE), np.uint8)
        self.recs = np.ascontiguousarray(raw).view(INODE_DT).reshape(-1)
        self.dir_of, self.loc, self.ltype, self.ftype, self.badname, self.index_of = (
            np.concatenate(c).astype(dt, copy=False) if c else np.zeros(0, dt)
            for c, dt in zip(cols, _COL_DT))  # index_of: the DIR_INDEX key offset
        self.names = names
        n = len(names)
        self.journal = np.zeros(n, dtype=bool)
        self.backup = np.zeros(n, dtype=bool)  # placed by :mod:`.rescue` (back references)
        self.live = np.ones(n, dtype=bool)
        self.extra: dict[int, list[int]] = {}  # entries added after the tree's, by directory
        self.tree_part = n  # entries before this are the tree's, sorted by directory
        self.notes: dict[int, str] = {}  # entry -> why the log's replay or rescue adds it
        # set by :func:`.rescue.rescue`: names lost with an unreadable leaf
        self.rescued: dict[tuple[int, bytes], str] = {}  # (directory, name) -> note
        self.lost_dirs: dict[int, int] = {}  # directories that lost names -> name bytes
        self.unnamed: list = []  # recovery.Gone of in-use inodes no name reaches
        self._rows: dict[int, int] | None = None
        self._fast: FastDirs | None = None
        self.inodes = InodeView(self)
        self.dirs = DirView(self)
        rp = fs.log_replay(tree)
        if rp is not None:
            self._replay(rp)

    # --- lookups --------------------------------------------------------------------
    def row(self, ino: int) -> int:
        """The row of inode ``ino`` in ``recs`` (-1: no INODE_ITEM)."""
        if self._rows is None:
            self._rows = dict(zip(self.ino_ids.tolist(), range(len(self.ino_ids))))
        return self._rows.get(ino, -1)

    def rows(self, inos: np.ndarray) -> np.ndarray:
        """The rows of many inodes at once (-1 where there is no INODE_ITEM)."""
        ids = self.ino_ids
        if not len(ids):
            return np.full(len(inos), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(ids, inos), len(ids) - 1)
        return np.where(ids[pos] == inos, pos, -1).astype(np.int64)

    def children(self, ino: int, removed: bool = False) -> np.ndarray:
        """The entries of directory ``ino``, in DIR_INDEX order then those the tree log
        adds (without the ones its replay removes, unless ``removed``)."""
        d = self.dir_of[:self.tree_part]
        a, b = np.searchsorted(d, [ino, ino + 1]) if ino < (1 << 64) - 1 else (
            np.searchsorted(d, ino), len(d))
        sel = np.arange(a, b, dtype=np.int64)
        if ino in self.extra:
            sel = np.concatenate([sel, np.array(self.extra[ino], dtype=np.int64)])
        return sel if removed else sel[self.live[sel]]

    def fast(self) -> FastDirs:
        """The directories every entry of which is plain (computed once)."""
        if self._fast is None:
            self._fast = FastDirs(self)
        return self._fast

    def add(self, entries: list[tuple[int, bytes, int, int, int]], *, journal: bool = False,
            notes: list[str] | None = None) -> None:
        """Append entries (directory, name, location objectid, location type, file type)
        after the tree's: the tree log's (``journal``) or, with ``notes``, names
        :mod:`.rescue` places through back references (``backup``)."""
        if not entries:
            return
        n = len(self.names)
        for j, (d, raw, *_rest) in enumerate(entries):
            self.extra.setdefault(d, []).append(n + j)
            self.names.append(raw)
            if notes is not None:
                self.notes[n + j] = notes[j]
        d_, _r, lobj, ltyp, ftype = zip(*entries)
        k = len(entries)
        self.dir_of = np.concatenate([self.dir_of, np.array(d_, dtype=np.uint64)])
        self.loc = np.concatenate([self.loc, np.array(lobj, dtype=np.uint64)])
        self.ltype = np.concatenate([self.ltype, np.array(ltyp, dtype=np.uint8)])
        self.ftype = np.concatenate([self.ftype, np.array(ftype, dtype=np.uint8)])
        self.badname = np.concatenate([self.badname, np.zeros(k, dtype=bool)])
        self.index_of = np.concatenate([self.index_of, np.zeros(k, np.uint64)])
        self.journal = np.concatenate([self.journal, np.full(k, journal, dtype=bool)])
        self.backup = np.concatenate([self.backup, np.full(k, notes is not None, dtype=bool)])
        self.live = np.concatenate([self.live, np.ones(k, dtype=bool)])
        self._fast = None

    # --- the tree log ---------------------------------------------------------------
    def _replay(self, rp) -> None:
        """Lay the log's inode items and names over the tree's, and apply its removals."""
        from .treelog import removals

        if rp.inodes:
            log_ids = np.array(list(rp.inodes), dtype=np.uint64)
            log_recs = np.frombuffer(b"".join(rp.inodes.values()), dtype=INODE_DT)
            keep = ~np.isin(self.ino_ids, log_ids)
            ids = np.concatenate([self.ino_ids[keep], log_ids])
            recs = np.concatenate([self.recs[keep], log_recs])
            order = np.argsort(ids, kind="stable")
            self.ino_ids, self.recs, self._rows = ids[order], recs[order], None
        add: list[tuple[int, bytes, int, int, int]] = []
        for d, kids in rp.dirs.items():  # a name the tree gives another inode is replaced
            have = {self.names[i]: int(self.loc[i]) for i in self.children(d).tolist()}
            for raw, lobj, ltyp, ftype in kids:
                if have.get(raw) != lobj:
                    have[raw] = lobj
                    add.append((d, raw, lobj, ltyp, ftype))
        self.add(add, journal=True)
        for i, why in removals(self, rp).items():
            self.live[i] = False
            self.notes[i] = why


class FastDirs:
    """What a listing needs of the directories whose entries are all plain (a good name,
    an INODE_ITEM that is there, nothing the tree log adds or removes), computed for the
    whole tree at once: each directory's entry span, the entries' names as text, inode
    rows and kind codes (``KIND_CODES``, ``isdir`` as a list), and its subdirectory
    entries."""

    def __init__(self, ix: TreeIndex) -> None:
        n = ix.tree_part
        d = ix.dir_of[:n]
        self.row = ix.rows(ix.loc[:n])
        have = self.row >= 0
        mode = np.zeros(n, dtype=np.uint32)
        mode[have] = ix.recs["mode"][self.row[have]]
        self.code = kind_codes(mode, have, ix.ftype[:n])
        odd = ix.badname[:n] | ~have | (ix.ltype[:n] != S.INODE_ITEM) | ~ix.live[:n] | \
            ix.journal[:n]
        dirs, first, count = np.unique(d, return_index=True, return_counts=True)
        bad = set(d[odd].tolist()) | set(ix.extra)
        self.span = {k: (a, a + c) for k, a, c in zip(dirs.tolist(), first.tolist(),
                                                     count.tolist()) if k not in bad}
        self.text = decode_names(ix.names[:n])
        self.isdir = (self.code == 1).tolist()  # a directory entry, by entry
        self.subdirs: dict[int, list[int]] = {}
        for i in np.flatnonzero(self.code == 1).tolist():
            self.subdirs.setdefault(int(d[i]), []).append(i)


_MODE_CODE = {0o040000: 1, 0o100000: 0, 0o120000: 2}  # S_IFMT -> code
_FT_CODE = {1: 0, 2: 1, 7: 2}  # directory entry file type -> code
KIND_CODES = (FILE, DIR, SYMLINK, OTHER)


def kind_codes(mode: np.ndarray, have: np.ndarray, ftype: np.ndarray) -> np.ndarray:
    """KIND_CODES indices: by the inode's mode, else (no inode, or mode 0) by the
    entry's file type."""
    fmt = mode & 0o170000
    code = np.full(len(mode), 3, dtype=np.int8)
    for m, c in _MODE_CODE.items():
        code[have & (fmt == m)] = c
    by_type = ~have | (mode == 0)
    for t, c in _FT_CODE.items():
        code[by_type & (ftype == t)] = c
    return code


_COL_DT = (np.uint64, np.uint64, np.uint8, np.uint8, bool, np.uint64)


def _dir_index(fs: BtrfsFileSystem, b, sel: np.ndarray, cols: list[list],
               names: list[bytes]) -> None:
    """The DIR_INDEX items ``sel`` of a batch: each holds one entry, whose headers are
    decoded together and whose names are checked with numpy (an item that is not exactly
    one entry goes through ``fs.dir_items``)."""
    sizes = b.size[sel]
    whole = sizes >= _DIR_N
    heads = np.zeros(len(sel), dtype=DIR_DT)
    if whole.any():
        heads[whole] = np.ascontiguousarray(b.gather(sel[whole], _DIR_N)).view(
            DIR_DT).reshape(-1)
    nlen = heads["name_len"].astype(np.int64)
    one = whole & (_DIR_N + nlen + heads["data_len"] == sizes) & (nlen > 0) & (
        nlen <= MAX_NAME)
    # the items' data copied in runs that lie back to back in their leaf (a folder's
    # DIR_INDEX items do: each one's data ends where the previous one's starts), one
    # slice a run; ``pos``: where each name starts in that copy. A name is bad when it
    # is ".", ".." or holds a "/" (counted with numpy).
    at = b.at(sel)
    end = at + sizes
    new = np.ones(len(sel), dtype=bool)
    new[1:] = end[1:] != at[:-1]
    first_item = np.flatnonzero(new)
    last_item = np.append(first_item[1:], len(sel)) - 1
    lo, hi = at[last_item], end[first_item]
    mv = memoryview(b.flat)
    blob = b"".join([mv[x:y] for x, y in zip(lo.tolist(), hi.tolist())])
    run = np.cumsum(new) - 1
    pos = (np.cumsum(hi - lo) - (hi - lo))[run] + at - lo[run] + _DIR_N
    nl = np.where(one, nlen, 0)
    total = len(blob)
    raw = np.frombuffer(blob + b"\0\0", dtype=np.uint8)
    slash = np.flatnonzero(raw == _SLASH)
    bad = np.searchsorted(slash, pos + nl) > np.searchsorted(slash, pos)
    first, second = raw[np.minimum(pos, total)], raw[np.minimum(pos + 1, total)]
    bad |= one & (first == _DOT) & ((nl == 1) | ((nl == 2) & (second == _DOT)))
    if one.all():
        for c, v in zip(cols, (b.obj[sel], heads["location.objectid"], heads["location.type"],
                               heads["type"], bad, b.off[sel])):
            c.append(v)
        names += [blob[p:p + n] for p, n in zip(pos.tolist(), nl.tolist())]
        return
    rows = zip(one.tolist(), sel.tolist(), b.obj[sel].tolist(), pos.tolist(), nl.tolist(),
               heads["location.objectid"].tolist(), heads["location.type"].tolist(),
               heads["type"].tolist(), bad.tolist(), b.off[sel].tolist())
    out: list[list] = [[] for _c in cols]
    for simple, k, obj, p, n, lobj, ltyp, ftype, isbad, key_off in rows:
        if simple:
            entries = [(blob[p:p + n], lobj, ltyp, ftype, isbad)]
        else:
            entries = [(name, loc[0], loc[1], ft, not name or b"/" in name or
                        name in (b".", b".."))
                       for name, loc, ft, _v in fs.dir_items(b.data(k), b.address(k))]
        for name, lobj_, ltyp_, ft_, bad_ in entries:
            for o, v in zip(out, (obj, lobj_, ltyp_, ft_, bad_, key_off)):
                o.append(v)
            names.append(name)
    for c, o, dt in zip(cols, out, _COL_DT):
        c.append(np.array(o, dtype=dt))
