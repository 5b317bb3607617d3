"""The ``files()`` fast path: one walk over the tree that keeps plain live files and
directories as raw inode records, then decodes them column-wise into the frame.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ...errors import InvalidArgument
from ...lazy import np
from ..base import DIR, FILE, Entry
from ..walk import HANDLE, PAYLOAD, Batch, Walk, paused_gc
from .dirs import LiveColumns
from .extents import EXTENT, EXTENT_HEADER, EXTENT_MAGIC, INIT_MAX_LEN
from .inode import (
    EPOCH,
    FL_CASEFOLD,
    FL_COMPRESSED_ANY,
    FL_ENCRYPT,
    FL_EXTENTS,
    FL_HUGE_FILE,
    I_BLOCK_SIZE,
    ROOT_INO,
    S_IFDIR,
    S_IFMT,
    S_IFREG,
    InodeRecord,
    decode_times_bulk,
    inode_dtype,
)

if TYPE_CHECKING:
    import pandas as pd


_ROOT_NODE = (I_BLOCK_SIZE - EXTENT_HEADER.size) // EXTENT.size  # 4 extents fit in i_block
_FLAGS_NOTED = FL_ENCRYPT | FL_COMPRESSED_ANY


#: the inode fields the files() columns are decoded from (:func:`fast_columns`)
_COLUMN_FIELDS = ("i_mode", "i_uid", "i_size_lo", "i_atime", "i_ctime", "i_mtime",
                  "i_dtime", "i_gid", "i_links_count", "i_blocks_lo", "i_flags",
                  "i_size_high", "l_i_blocks_high", "l_i_uid_high", "l_i_gid_high",
                  "i_extra_isize", "i_ctime_extra", "i_mtime_extra", "i_atime_extra",
                  "i_crtime", "i_crtime_extra")


def column_dtype(inode_size: int, extents: bool) -> np.dtype:
    """The packed record the column walk keeps per row (~70 bytes, not the inode's 256):
    the fields of :data:`_COLUMN_FIELDS` the inode size holds, and with ``extents`` (a
    volume with damaged ranges) ``i_block``."""
    full = inode_dtype(inode_size)
    want = _COLUMN_FIELDS + (("i_block",) if extents else ())
    return np.dtype([(f, full.fields[f][0]) for f in want if f in full.names])


def column_bytes(inode_size: int, extents: bool) -> np.ndarray:
    """The positions, in an inode record, of the bytes of a :func:`column_dtype` record
    in its order: a directory's records are packed with one gather (``recs[:, at]``)."""
    full = inode_dtype(inode_size)
    keep = column_dtype(inode_size, extents)
    at = [np.arange(full.fields[f][1], full.fields[f][1] + keep.fields[f][0].itemsize)
          for f in keep.names]
    return np.concatenate(at)


class WalkMixin:
    """The column-wise ``files()`` of :class:`ExtFileSystem`."""

    # --- the files() frame --------------------------------------------------------------
    def files(
        self, path: str = "/", *, recursive: bool = True, deleted: bool = True
    ) -> pd.DataFrame:
        """The ``files()`` frame (same rows as the generic walk, built column-wise).

        Extra columns: ``mtime_ns``, ``atime_ns``, ``ctime_ns``, ``crtime_ns`` (full
        precision, nanoseconds since the epoch), ``dtime`` (deletion time, seconds),
        ``flags`` (i_flags) and ``note`` (why a deleted file is or is not recoverable).
        """
        from ...frames import files_columns_frame

        with paused_gc():
            self.column_walk += 1
            self.dirent_cache = {}  # the orphan search reads every directory again
            if deleted and not self.orphans_found:  # and every inode table
                self.piece_orphans = {}
            try:
                order, fast, entries, notes = self._walk_columns(path, recursive, deleted)
            finally:
                self.column_walk -= 1
                self.dirent_cache = self.piece_orphans = None
            cols = self._columns(order, fast, entries)
            if notes:  # directories listed from partly unreadable blocks
                col = cols["note"] = list(cols["note"])
                for row, why in notes.items():
                    col[row] = why if not isinstance(col[row], str) else f"{col[row]}; {why}"

            def all_entries() -> list[Entry]:  # only asked for when the volume has damage
                paths, names, parents, inos, recs = fast
                mode = recs["i_mode"]
                is_dir = (mode & S_IFMT == S_IFDIR).tolist()
                e = iter(entries)
                out = []
                k = 0
                for is_fast in order.tolist():
                    if is_fast:
                        ino = int(inos[k])
                        out.append(Entry(name=names[k], kind=DIR if is_dir[k] else FILE,
                                         path=paths[k], parent=parents[k], inode=ino, key=ino))
                        k += 1
                    else:
                        out.append(next(e))
                return out

            cols["damaged"] = self.damaged_column(cols["kind"], all_entries,
                                                  lambda: self._sound_rows(order, fast))
            fast = entries = None  # the rows: now in the columns (memory for the frame)
            return files_columns_frame(cols, EXTRA_DTYPES)

    def _sound_rows(self, order: np.ndarray, fast: tuple) -> list[bool]:
        """Per row of the column walk, True for a plain file whose extents (all in the
        inode: a depth-0 tree) lie inside the volume and miss every damaged range — its
        ``damaged`` value is 0 without building its content. Others are left to the
        exact path (False)."""
        ranges = self.dev.damaged_ranges()
        starts = [a for a, _n in ranges]
        ends = [a + n for a, n in ranges]
        bs, limit = self.block_size, self.block_limit
        out = [False] * len(order)
        recs = fast[4]
        modes, flags_ = recs["i_mode"].tolist(), recs["i_flags"].tolist()
        for row, k in zip(np.flatnonzero(order).tolist(), range(len(recs))):
            if modes[k] & S_IFMT != S_IFREG or not flags_[k] & FL_EXTENTS:
                continue
            iblock = recs["i_block"][k : k + 1].tobytes()  # all 60 bytes (no NUL strip)
            magic, count, _max, depth, _gen = EXTENT_HEADER.unpack_from(iblock, 0)
            if magic != EXTENT_MAGIC or depth or count > _ROOT_NODE:
                continue
            ok = True
            for j in range(count):
                at = EXTENT_HEADER.size + EXTENT.size * j
                _lb, ln, hi, lo = EXTENT.unpack_from(iblock, at)
                ln = ln - INIT_MAX_LEN if ln > INIT_MAX_LEN else ln
                pb = (hi << 32) | lo
                if ln and (pb == 0 or pb + ln > limit):
                    ok = False  # outside the volume: the exact path reports it
                    break
                a, b = pb * bs, (pb + ln) * bs
                i = bisect.bisect_right(ends, a)
                if i < len(starts) and starts[i] < b:
                    ok = False
                    break
            out[row] = ok
        return out

    def _columns(self, order: np.ndarray, fast: tuple, entries: list[Entry]) -> dict:
        """The files() columns of rows of :meth:`_walk_columns` (``fast`` rows decoded
        column-wise, Entries the full way, merged back in row order)."""
        from ...frames import merge_columns

        if not entries:
            return fast_columns(fast, self.huge_file, self.block_size, self.inode_size)
        if not len(fast[0]):
            return entry_columns(entries)
        return merge_columns(order, fast_columns(fast, self.huge_file, self.block_size,
                                                 self.inode_size),
                             entry_columns(entries), consume=True)

    def column_batches(self, path: str = "/", *, recursive: bool = True,
                       deleted: bool = True, rows: int = 1024) -> Iterator[tuple[dict, dict]]:
        """The rows of ``files()`` streamed: ``(columns, notes)`` for each run of whole
        directories reaching ``rows`` rows (in walk order), ``notes`` the walk's notes so
        far by row number (a directory's note is made when it is listed, after its row
        was handed out). Memory holds one batch (and, with ``deleted``, the raw entries
        of every directory for the orphan search)."""
        self.column_walk += 1
        if deleted:
            self.dirent_cache = {}
            if not self.orphans_found:
                self.piece_orphans = {}
        try:
            keep = column_dtype(self.inode_size, self.volume_damaged())
            parts: list = []
            held = 0
            notes: dict = {}
            for part, notes in self._column_dirs(path, recursive, deleted):
                parts.append(part)
                held += len(part[0])
                if held >= rows:
                    yield self._columns(*_joined(parts, keep)), notes
                    parts, held = [], 0
            if parts:
                yield self._columns(*_joined(parts, keep)), notes
        finally:
            self.column_walk -= 1
            self.dirent_cache = self.piece_orphans = None

    def _walk_columns(self, path: str, recursive: bool, deleted: bool):
        """The rows below ``path`` through the one walk (:mod:`..walk`), plain live files
        and directories kept column-wise (a :class:`~..walk.Batch` per directory) with
        their raw inode records instead of Entries.

        Returns (order, fast, entries, notes): ``order`` (a bool array) says for each row
        whether it comes from ``fast`` (paths, names, parents: lists; inode numbers; an
        (n, inode size) array of records) or ``entries`` (Entry objects); ``notes`` maps
        rows of directories listed in part (or not at all) to a note.
        """
        parts: list = []
        notes: dict = {}
        for part, now in self._column_dirs(path, recursive, deleted):
            parts.append(part)
            notes = now
        keep = column_dtype(self.inode_size, self.volume_damaged())
        if not parts:  # the top directory itself could not be listed
            parts.append(([], [], [], [], np.zeros(0, dtype=np.int64),
                          np.zeros((0, keep.itemsize), dtype=np.uint8), []))
        return (*_joined(parts, keep), notes)

    def _column_dirs(self, path: str, recursive: bool, deleted: bool) -> Iterator[tuple]:
        """The walk of :meth:`_walk_columns` a directory at a time: ``(part, notes)``,
        ``part`` a directory's (order, paths, names, parents, inode numbers, records,
        entries), ``notes`` the walk's notes so far."""
        isz = self.inode_size
        top = self.lookup(path, deleted=deleted)
        if top.kind != DIR:
            yield ([False], [], [], [], np.zeros(0, dtype=np.int64),
                   np.zeros((0, column_dtype(isz, self.volume_damaged()).itemsize),
                            dtype=np.uint8), [top]), {}
            return
        dir_id = self.dir_id
        dtype = inode_dtype(isz)
        keep_at = column_bytes(isz, self.volume_damaged())
        i0, r0 = np.zeros(0, dtype=np.int64), np.zeros((0, len(keep_at)), dtype=np.uint8)

        def entry_child(e: Entry, dpath: str, prefix: str) -> tuple:
            e.parent = dpath
            e.path = prefix + e.name
            return (e.path, e.kind == DIR, dir_id(e), e.deleted, e, e)

        def children(dc: tuple) -> list[tuple] | Batch:
            d = dc[HANDLE]
            dpath = d.path
            prefix = "/" if dpath in ("", "/") else dpath + "/"
            if d.key == ("orphans",) or d.deleted or not isinstance(d.raw, InodeRecord):
                return [entry_child(e, dpath, prefix) for e in self.list_dir(d)]
            rec = d.raw
            if not rec.is_dir:
                raise InvalidArgument(f"{self.name}: {d.path or d.name} is not a directory")
            raws = self.dir_columns(rec)
            # live entries named by the directory: their inodes read in bulk, and the
            # plain ones (files and directories in use, nothing to note) kept as columns
            if isinstance(raws, LiveColumns):  # nothing but live entries
                live, raw_names = raws.inodes, raws.names
            else:
                live = [r.inode for r in raws
                        if not r.deleted and r.inode and r.found_by == "index"]
                raw_names = None
            inos = np.array(live, dtype=np.int64)
            recs, ok = self.inode_records(inos)
            v = recs.view(dtype).ravel()
            ftype = v["i_mode"] & S_IFMT
            plain = (ok & (v["i_links_count"] != 0) & (v["i_dtime"] == 0)
                     & (v["i_flags"] & _FLAGS_NOTED == 0)
                     & ((ftype == S_IFREG) | (ftype == S_IFDIR)))
            if self.journal_inodes:
                plain &= ~np.isin(inos, list(self.journal_inodes))
            decode = not (rec.encrypted and not rec.flags & FL_CASEFOLD)

            def subdir(k: int, name: str) -> tuple:  # the Child of plain directory k
                p = prefix + name
                ino = live[k]
                node = None
                if recursive:  # what the walk lists it with
                    g = (ino - 1) // self.inodes_per_group
                    raw, off = self.inode_bytes(g, ino - 1 - g * self.inodes_per_group)
                    drec = InodeRecord(ino, raw, off, self.huge_file, self.block_size)
                    node = Entry(name=name, kind=DIR, path=p, parent=dpath, inode=ino,
                                 key=ino, raw=drec, size=drec.size, links=drec.links)
                return (p, True, ino, False, node, None)

            entries: list[Entry] = []
            if len(live) == len(raws) and plain.all():  # the common case, in bulk
                if raw_names is None:
                    raw_names = [r.name for r in raws]
                names = (decoded_names(raw_names) if decode
                         else [self.entry_name(n, rec) for n in raw_names])
                order = [True] * len(names)
                rows = None
                subdirs = [(k, subdir(k, names[k]))
                           for k in np.flatnonzero(ftype == S_IFDIR).tolist()]
            else:
                if isinstance(raws, LiveColumns):
                    raws = raws.raws()
                plain_l, dir_l = plain.tolist(), (ftype == S_IFDIR).tolist()
                order, rows, names, subdirs = [], [], [], []
                k = -1
                for r in raws:
                    if not r.deleted and r.inode and r.found_by == "index":
                        k += 1
                        if plain_l[k]:
                            name = (r.name.decode("utf-8", "surrogateescape") if decode
                                    else self.entry_name(r.name, rec))
                            if dir_l[k]:
                                subdirs.append((len(order), subdir(k, name)))
                            order.append(True)
                            rows.append(k)
                            names.append(name)
                            continue
                    e = self.child_entry(r, rec)  # anything unusual: the full way
                    if e.deleted and not deleted:
                        continue
                    c = entry_child(e, dpath, prefix)
                    if c[1]:
                        subdirs.append((len(order), c))
                    order.append(False)
                    entries.append(e)
            if rec.number == ROOT_INO and d.path in ("/", ""):
                e = self.orphan_dir_entry()
                if deleted or not e.deleted:
                    c = entry_child(e, dpath, prefix)
                    if c[1]:
                        subdirs.append((len(order), c))
                    order.append(False)
                    entries.append(e)
            if rows is not None:
                idx = np.array(rows, dtype=np.intp)
                inos, recs = inos[idx], recs[idx]
            packed = np.take(recs, keep_at, axis=1)  # the bytes of the fields needed (C order)
            cols = (order, list(map(prefix.__add__, names)), names, dpath, inos, packed,
                    entries)
            return Batch(len(order), subdirs, cols)

        walk = Walk(self, self.entry_child(top), children, recursive=recursive,
                    deleted=deleted, listable=self.entry_listable, damage=self.entry_damage)
        notes = walk.notes
        for _d, kids in walk:
            if isinstance(kids, Batch):
                o, p, n, parent, i, r, e = kids.columns
                yield (o, p, n, [parent] * len(n), i, r, e), notes
            else:
                got = [c[PAYLOAD] for c in kids]
                yield ([False] * len(got), [], [], [], i0, r0, got), notes


def decoded_names(raw: list[bytes]) -> list[str]:
    """Names as ``bytes.decode("utf-8", "surrogateescape")`` gives each, decoded in one
    call: joined by "/" (which no name holds: checked), decoded, split. UTF-8 resumes at
    every ASCII byte, so each name decodes as it would alone."""
    joined = b"/".join(raw)
    if joined.count(b"/") != len(raw) - 1:  # a name with "/" in it: one at a time
        return [n.decode("utf-8", "surrogateescape") for n in raw]
    return joined.decode("utf-8", "surrogateescape").split("/") if raw else []


def _joined(parts: list, keep: np.dtype) -> tuple:
    """Directories of :meth:`WalkMixin._column_dirs` as one run of rows: (order, fast,
    entries) as :meth:`WalkMixin._walk_columns` returns them (the packed bytes of the
    records joined, then read as ``keep`` records)."""
    order: list[bool] = []
    paths: list[str] = []
    names: list[str] = []
    parents: list[str] = []
    entries: list[Entry] = []
    for o, p, n, par, _i, _r, e in parts:
        order += o
        paths += p
        names += n
        parents += par
        if e:
            entries += e
    inos = [part[4] for part in parts if len(part[4])]
    recs = [part[5] for part in parts if len(part[5])]
    packed = np.concatenate(recs) if len(recs) > 1 else recs[0] if recs else parts[0][5]
    fast = (paths, names, parents,
            np.concatenate(inos) if len(inos) > 1 else inos[0] if inos else parts[0][4],
            np.ascontiguousarray(packed).view(keep).ravel())
    return np.array(order, dtype=bool), fast, entries


# --- helpers -----------------------------------------------------------------------------

_NAT = -(1 << 63)  # int64 min: numpy.datetime64 NaT, "no time" in the int64 columns
_TIME_COLS = (
    ("created", "crtime"),
    ("modified", "mtime"),
    ("accessed", "atime"),
    ("changed", "ctime"),
)


def _us_of(t: dt.datetime | None) -> int:
    if t is None:
        return _NAT
    d = t - EPOCH
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


#: the dtypes of the ext extra columns
EXTRA_DTYPES = dict.fromkeys(("mtime_ns", "atime_ns", "ctime_ns", "crtime_ns", "dtime",
                              "flags"), "Int64")


def _ns_columns(cols: dict, ns: dict) -> None:
    """Times (nanoseconds, int64 min where absent) as the schema's time columns
    (microseconds) and the full-precision ``*_ns`` columns."""
    for col, k in _TIME_COLS:
        if col not in cols:
            a = ns[k]
            cols[col] = np.where(a == _NAT, _NAT, a // 1000).view("datetime64[us]")
    for k in ("mtime", "atime", "ctime", "crtime"):
        a = ns[k]
        cols[f"{k}_ns"] = np.ma.MaskedArray(np.where(a == _NAT, 0, a), a == _NAT)


def entry_columns(entries: list[Entry]) -> dict:
    """The files() columns of Entries: times decoded in bulk from the inode records of
    the entries files() built, the ext extra columns typed."""
    from ...frames import entry_columns as base_columns

    n = len(entries)
    bulk = [i for i, e in enumerate(entries)
            if isinstance(e.raw, InodeRecord) and "mtime_ns" not in e.extra]
    ns = {k: np.full(n, _NAT, dtype=np.int64) for _, k in _TIME_COLS}
    if bulk:
        by_size: dict[int, list[int]] = {}
        for i in bulk:
            by_size.setdefault(len(entries[i].raw.raw), []).append(i)
        for size, idx in by_size.items():
            recs = np.frombuffer(b"".join(entries[i].raw.raw for i in idx),
                                 dtype=np.uint8).reshape(len(idx), size)
            dec = decode_times_bulk(recs)
            for _, k in _TIME_COLS:
                ns[k][idx] = dec[k]
    bulk_set = set(bulk)
    others = [i for i in range(n) if i not in bulk_set] if len(bulk) != n else []
    for i in others:
        x = entries[i].extra
        for _, k in _TIME_COLS:
            v = x.get(f"{k}_ns")
            if v is not None:
                ns[k][i] = v
    cols = base_columns(entries, extra=False)
    for col, k in _TIME_COLS:
        a = ns[k]
        us = np.where(a == _NAT, _NAT, a // 1000)
        for i in others:
            e = entries[i]
            if e.extra.get(f"{k}_ns") is None and getattr(e, col) is not None:
                us[i] = _us_of(getattr(e, col))  # an entry with a datetime but no ns column
        cols[col] = us.view("datetime64[us]")
    _ns_columns(cols, ns)
    cols["dtime"] = [e.extra.get("dtime") for e in entries]
    cols["flags"] = [e.extra.get("flags") for e in entries]
    return cols


def _sizes(rec: np.ndarray) -> np.ndarray:
    """i_size of every record; one Linux would read as negative (corrupt) counts as 0."""
    hi = rec["i_size_high"].astype(np.int64)
    bad = hi >= 1 << 31
    return np.where(bad, 0, rec["i_size_lo"].astype(np.int64) | (np.where(bad, 0, hi) << 32))


def _u(rec: np.ndarray, name: str) -> np.ndarray:
    """Field ``name`` of every inode record, as int64."""
    return rec[name].astype(np.int64)


def fast_columns(fast: tuple, huge_file: bool, block_size: int, inode_size: int) -> dict:
    """The files() columns of live plain files and directories, decoded column-wise from
    their inode records (``fast``: paths, names, parents, inode numbers, records of
    :func:`column_dtype`)."""
    paths, names, parents, inos, rec = fast
    n = len(rec)
    mode = _u(rec, "i_mode")
    flags = _u(rec, "i_flags")
    blocks = _u(rec, "i_blocks_lo")
    if huge_file:
        blocks = blocks | (_u(rec, "l_i_blocks_high") << 32)
        allocated = blocks * np.where(flags & FL_HUGE_FILE, block_size, 512)
    else:
        allocated = blocks * 512
    # text columns as lists of one shared str (an object array costs more to fill)
    kind = [FILE] * n
    for i in np.flatnonzero(mode & S_IFMT == S_IFDIR).tolist():
        kind[i] = DIR
    cols = {
        "path": paths,
        "name": names,
        "parent": parents,
        "kind": kind,
        "size": _sizes(rec),
        "allocated": np.ma.MaskedArray(allocated, False),
        "mode": np.ma.MaskedArray(mode, False),
        "uid": np.ma.MaskedArray(_u(rec, "i_uid") | (_u(rec, "l_i_uid_high") << 16), False),
        "gid": np.ma.MaskedArray(_u(rec, "i_gid") | (_u(rec, "l_i_gid_high") << 16), False),
        "inode": np.ma.MaskedArray(inos.astype(np.int64), False),
        "links": np.ma.MaskedArray(_u(rec, "i_links_count"), False),
        "deleted": np.zeros(n, dtype=bool),
        "recoverable": np.zeros(n, dtype=bool),
        "target": [None] * n,
        "found_by": ["index"] * n,
        "note": [None] * n,
    }
    _ns_columns(cols, decode_times_bulk(rec, inode_size))
    cols["dtime"] = np.ma.MaskedArray(np.zeros(n, dtype=np.int64), True)
    cols["flags"] = np.ma.MaskedArray(flags, False)
    return cols
