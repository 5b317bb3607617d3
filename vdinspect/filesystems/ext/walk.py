"""The ``files()`` fast path: one walk over the tree that keeps plain live files and
directories as raw inode records, then decodes them column-wise into the frame.
"""

from __future__ import annotations

import bisect
import datetime as dt
from typing import TYPE_CHECKING

import numpy as np

from ...errors import InvalidArgument
from ...layout import offset_of, struct_format
from ..base import DIR, FILE, Entry
from ..walk import HANDLE, PAYLOAD, Walk, paused_gc
from .extents import EXTENT, EXTENT_HEADER, EXTENT_MAGIC, INIT_MAX_LEN
from .inode import (
    EPOCH,
    FL_COMPRESSED_ANY,
    FL_ENCRYPT,
    FL_EXTENTS,
    FL_HUGE_FILE,
    I_BLOCK_SIZE,
    INODE_CLASSIC,
    ROOT_INO,
    S_IFDIR,
    S_IFMT,
    S_IFREG,
    Inode,
    InodeRecord,
    decode_times_bulk,
    inode_dtype,
)

if TYPE_CHECKING:
    import pandas as pd


_FAST_FIELDS = struct_format(Inode, "i_mode", "i_dtime", "i_links_count", "i_flags")
_I_BLOCK_AT = offset_of(Inode, "i_block")
_ROOT_NODE = (I_BLOCK_SIZE - EXTENT_HEADER.size) // EXTENT.size  # 4 extents fit in i_block
_FLAGS_NOTED = FL_ENCRYPT | FL_COMPRESSED_ANY


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
        from ...frames import files_columns_frame, merge_columns

        with paused_gc():
            self.column_walk += 1
            self.dirent_cache = {}  # the orphan search reads every directory again
            try:
                order, fast, entries, notes = self._walk_columns(path, recursive, deleted)
            finally:
                self.column_walk -= 1
                self.dirent_cache = None
            if not entries:
                cols = fast_columns(fast, self.huge_file, self.block_size)
            elif not fast:
                cols = entry_columns(entries)
            else:
                cols = merge_columns(np.array(order, dtype=bool),
                                     fast_columns(fast, self.huge_file, self.block_size),
                                     entry_columns(entries))
            if notes:  # directories listed from partly unreadable blocks
                col = cols["note"] = list(cols["note"])
                for row, why in notes.items():
                    col[row] = why if not isinstance(col[row], str) else f"{col[row]}; {why}"

            def all_entries() -> list[Entry]:  # only asked for when the volume has damage
                f, e = iter(fast), iter(entries)
                out = []
                for is_fast in order:
                    if is_fast:
                        p, name, parent, ino, raw = next(f)
                        kind = DIR if _FAST_FIELDS.unpack_from(raw, 0)[0] & S_IFMT == S_IFDIR else FILE
                        out.append(
                            Entry(name=name, kind=kind, path=p, parent=parent, inode=ino, key=ino)
                        )
                    else:
                        out.append(next(e))
                return out

            cols["damaged"] = self.damaged_column(cols["kind"], all_entries,
                                                  lambda: self._sound_rows(order, fast))
            return files_columns_frame(cols, EXTRA_DTYPES)

    def _sound_rows(self, order: list[bool], fast: list[tuple]) -> list[bool]:
        """Per row of the column walk, True for a plain file whose extents (all in the
        inode: a depth-0 tree) lie inside the volume and miss every damaged range — its
        ``damaged`` value is 0 without building its content. Others are left to the
        exact path (False)."""
        ranges = self.dev.damaged_ranges()
        starts = [a for a, _n in ranges]
        ends = [a + n for a, n in ranges]
        bs, limit = self.block_size, self.block_limit
        out = [False] * len(order)
        rows = (i for i, is_fast in enumerate(order) if is_fast)
        for row, (_p, _n, _d, _ino, raw) in zip(rows, fast):
            mode, _dt, _links, flags = _FAST_FIELDS.unpack_from(raw, 0)
            if mode & S_IFMT != S_IFREG or not flags & FL_EXTENTS:
                continue
            magic, count, _max, depth, _gen = EXTENT_HEADER.unpack_from(raw, _I_BLOCK_AT)
            if magic != EXTENT_MAGIC or depth or count > _ROOT_NODE:
                continue
            ok = True
            for k in range(count):
                at = _I_BLOCK_AT + EXTENT_HEADER.size + EXTENT.size * k
                _lb, ln, hi, lo = EXTENT.unpack_from(raw, at)
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

    def _walk_columns(self, path: str, recursive: bool, deleted: bool):
        """The rows below ``path`` through the one walk (:mod:`..walk`), with plain live
        files and directories kept as raw inode records instead of Entries.

        Returns (order, fast, entries, notes): ``order`` says for each row whether it
        comes from ``fast`` (path, name, parent, inode, record bytes) or ``entries`` (Entry
        objects); ``notes`` maps rows of directories listed in part (or not at all) to a
        note.
        """
        top = self.lookup(path, deleted=deleted)
        if top.kind != DIR:
            return [False], [], [top], {}
        ipg = self.inodes_per_group
        count = self.sb.inodes_count
        unpack = _FAST_FIELDS.unpack_from
        dir_id = self.dir_id

        def entry_child(e: Entry, dpath: str, prefix: str) -> tuple:
            e.parent = dpath
            e.path = prefix + e.name
            return (e.path, e.kind == DIR, dir_id(e), e.deleted, e, e)

        def children(dc: tuple) -> list[tuple]:
            d = dc[HANDLE]
            dpath = d.path
            prefix = "/" if dpath in ("", "/") else dpath + "/"
            parent_rec = d.raw if isinstance(d.raw, InodeRecord) else None
            out = []
            for c in self._children_for_walk(d):
                if isinstance(c, Entry):
                    out.append(entry_child(c, dpath, prefix))
                    continue
                # a live dirent: cheap when it is a plain file or directory
                ino = c.inode
                raw = None
                if 1 <= ino <= count:
                    g = (ino - 1) // ipg
                    if g < len(self.itable_ok) and self.itable_ok[g]:
                        raw, off = self.inode_bytes(g, ino - 1 - g * ipg)
                mode = links = dtime = iflags = 0
                if raw is not None:
                    mode, dtime, links, iflags = unpack(raw, 0)
                ftype = mode & S_IFMT
                if (raw is None or ino in self.journal_inodes or not links or dtime
                        or iflags & _FLAGS_NOTED or ftype not in (S_IFREG, S_IFDIR)):
                    # anything unusual: the full way
                    out.append(entry_child(self.child_entry(c, parent_rec), dpath, prefix))
                    continue
                name = self.entry_name(c.name, parent_rec)
                p = prefix + name
                row = (p, name, dpath, ino, raw)
                if ftype != S_IFDIR:
                    out.append((p, False, None, False, None, row))
                    continue
                node = None
                if recursive:  # what the walk lists it with
                    rec = InodeRecord(ino, raw, off, self.huge_file, self.block_size)
                    node = Entry(name=name, kind=DIR, path=p, parent=dpath, inode=ino,
                                 key=ino, raw=rec, size=rec.size, links=links)
                out.append((p, True, ino, False, node, row))
            return out

        walk = Walk(self, self.entry_child(top), children, recursive=recursive,
                    deleted=deleted, listable=self.entry_listable, damage=self.entry_damage)
        rows: list = []
        for _d, kids in walk:
            rows += [c[PAYLOAD] for c in kids]
        order = [type(r) is tuple for r in rows]
        fast = [r for r, f in zip(rows, order) if f]
        entries = [r for r, f in zip(rows, order) if not f]
        return order, fast, entries, walk.notes

    def _children_for_walk(self, d: Entry) -> list:
        """A directory's children for the column walk of ``files()``: live dirents stay
        raw, the rest (deleted entries, orphans, the virtual directory) are Entries."""
        if d.key == ("orphans",) or d.deleted or not isinstance(d.raw, InodeRecord):
            return self.list_dir(d)
        rec = d.raw
        if not rec.is_dir:
            raise InvalidArgument(f"{self.name}: {d.path or d.name} is not a directory")
        out: list = []
        for r in self.dir_entries(rec):
            if r.deleted or not r.inode or r.found_by != "index":
                out.append(self.child_entry(r, rec))
            else:
                out.append(r)
        if rec.number == ROOT_INO and d.path in ("/", ""):
            out.append(self.orphan_dir_entry())
        return out


# --- helpers -----------------------------------------------------------------------------

_NAT = np.iinfo(np.int64).min
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


def fast_columns(fast: list[tuple], huge_file: bool, block_size: int) -> dict:
    """The files() columns of live plain files and directories, decoded column-wise from
    their inode records."""
    n = len(fast)
    paths, names, parents, inos, raws = zip(*fast) if n else ((), (), (), (), ())
    isz = len(raws[0]) if n else INODE_CLASSIC
    joined = b"".join(raws)
    recs = np.frombuffer(joined, dtype=np.uint8).reshape(n, isz)
    rec = np.frombuffer(joined, dtype=inode_dtype(isz))
    mode = _u(rec, "i_mode")
    flags = _u(rec, "i_flags")
    blocks = _u(rec, "i_blocks_lo")
    if huge_file:
        blocks = blocks | (_u(rec, "l_i_blocks_high") << 32)
        allocated = blocks * np.where(flags & FL_HUGE_FILE, block_size, 512)
    else:
        allocated = blocks * 512
    cols = {
        "path": list(paths),
        "name": list(names),
        "parent": list(parents),
        "kind": np.where(mode & S_IFMT == S_IFDIR, DIR, FILE).astype(object),
        "size": _sizes(rec),
        "allocated": np.ma.MaskedArray(allocated, False),
        "mode": np.ma.MaskedArray(mode, False),
        "uid": np.ma.MaskedArray(_u(rec, "i_uid") | (_u(rec, "l_i_uid_high") << 16), False),
        "gid": np.ma.MaskedArray(_u(rec, "i_gid") | (_u(rec, "l_i_gid_high") << 16), False),
        "inode": np.ma.MaskedArray(np.array(inos, dtype=np.int64), False),
        "links": np.ma.MaskedArray(_u(rec, "i_links_count"), False),
        "deleted": np.zeros(n, dtype=bool),
        "recoverable": np.zeros(n, dtype=bool),
        "target": np.full(n, None, dtype=object),
        "found_by": np.full(n, "index", dtype=object),
        "note": np.full(n, None, dtype=object),
    }
    _ns_columns(cols, decode_times_bulk(recs))
    cols["dtime"] = np.ma.MaskedArray(np.zeros(n, dtype=np.int64), True)
    cols["flags"] = np.ma.MaskedArray(flags, False)
    return cols
