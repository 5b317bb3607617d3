"""The ``files()`` fast path: one walk over the tree that keeps plain live files and
directories as raw inode records, then decodes them column-wise into the frame.
"""

from __future__ import annotations

import bisect
import datetime as dt
from typing import TYPE_CHECKING

import numpy as np

from ...errors import CorruptImage, InvalidArgument, VDInspectError
from ...layout import offset_of, struct_format
from ..base import DIR, FILE, MAX_DEPTH, Entry
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
        self.column_walk += 1
        self.dirent_cache = {}  # the orphan search reads every directory again
        try:
            order, fast, entries, notes = self._walk_columns(path, recursive, deleted)
        finally:
            self.column_walk -= 1
            self.dirent_cache = None
        df = assemble_files(order, fast, entries, self.huge_file, self.block_size)
        for row, why in notes.items():  # directories listed from partly unreadable blocks
            old = df.at[row, "note"]
            df.at[row, "note"] = why if not isinstance(old, str) else f"{old}; {why}"

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

        return self._add_damage(df, all_entries, lambda: self._sound_rows(order, fast))

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
        """The walk of ``FileSystem.iter_entries`` (same order, loop and depth rules), with
        plain live files and directories kept as raw inode records instead of Entries.

        Returns (order, fast, entries, notes): ``order`` says for each row whether it
        comes from ``fast`` (path, name, parent, inode, record bytes) or ``entries`` (Entry
        objects); ``notes`` maps rows of directories with unreadable blocks to a note.
        """
        top = self.lookup(path, deleted=deleted)
        order: list[bool] = []
        fast: list[tuple] = []
        entries: list[Entry] = []
        if top.kind != DIR:
            order.append(False)
            entries.append(top)
            return order, fast, entries, {}
        ipg = self.inodes_per_group
        count = self.sb.inodes_count
        unpack = _FAST_FIELDS.unpack_from
        stack: list[tuple[Entry, tuple, int | None]] = [(top, (self._dir_id(top),), None)]
        listed = {(self._dir_id(top), top.deleted)}  # as FileSystem._walk: each dir once
        notes: dict[int, str] = {}
        damaged_volume = self.volume_damaged()
        while stack:
            d, ancestors, row = stack.pop()
            try:
                kids = self._children_for_walk(d)
            except VDInspectError as e:
                if self.strict and not isinstance(e, CorruptImage):
                    raise
                self.finding(
                    "error", "directory", None, f"{d.path or '/'}: unreadable directory: {e}"
                )
                if row is not None:
                    notes[row] = f"unreadable directory: {e}"
                continue
            if damaged_volume:  # as FileSystem._walk: say what could not be listed
                why = self.report_directory_damage(d)
                if why and row is not None:
                    notes[row] = why
            subdirs = []
            dpath = d.path
            prefix = "/" if dpath in ("", "/") else dpath + "/"
            parent_rec = d.raw if isinstance(d.raw, InodeRecord) else None
            for c in kids:
                if isinstance(c, Entry):
                    if c.deleted and not deleted:
                        continue
                    c.parent = dpath
                    c.path = prefix + c.name
                    order.append(False)
                    entries.append(c)
                    child_dir = c.kind == DIR
                    ident = self._dir_id(c)
                    node = c
                else:  # a live dirent: cheap when it is a plain file or directory
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
                    if (
                        raw is None
                        or ino in self.journal_inodes
                        or not links
                        or dtime
                        or iflags & _FLAGS_NOTED
                        or ftype not in (S_IFREG, S_IFDIR)
                    ):
                        e = self.child_entry(c, parent_rec)  # anything unusual: the full way
                        e.parent = dpath
                        e.path = prefix + e.name
                        order.append(False)
                        entries.append(e)
                        child_dir = e.kind == DIR
                        ident = self._dir_id(e)
                        node = e
                    else:
                        name = self.entry_name(c.name, parent_rec)
                        p = prefix + name
                        order.append(True)
                        fast.append((p, name, dpath, ino, raw))
                        child_dir = ftype == S_IFDIR
                        if child_dir and recursive:
                            rec = InodeRecord(ino, raw, off, self.huge_file, self.block_size)
                            node = Entry(
                                name=name,
                                kind=DIR,
                                path=p,
                                parent=dpath,
                                inode=ino,
                                key=ino,
                                raw=rec,
                                size=rec.size,
                                links=links,
                            )
                        ident = ino
                if recursive and child_dir:
                    if ident is not None and ident in ancestors:
                        self.finding(
                            "error",
                            "directory",
                            None,
                            f"{node.path}: directory "
                            "loop (points back to an ancestor); not followed",
                        )
                        continue
                    if ident is not None and (ident, node.deleted) in listed:
                        self.finding(
                            "error",
                            "directory",
                            None,
                            f"{node.path}: directory already listed under another name "
                            "(a directory hard link); not followed",
                        )
                        continue
                    if len(ancestors) >= MAX_DEPTH:
                        self.finding(
                            "error",
                            "directory",
                            None,
                            f"{node.path}: deeper than {MAX_DEPTH} levels; not followed",
                        )
                        continue
                    if node.deleted and not self._can_list_deleted_dir(node):
                        continue
                    listed.add((ident, node.deleted))
                    subdirs.append((node, ancestors + (ident,), len(order) - 1))
            stack.extend(reversed(subdirs))
        return order, fast, entries, notes

    def _children_for_walk(self, d: Entry) -> list:
        """A directory's children for the column walk: live dirents stay raw, the rest
        (deleted entries, orphans, the virtual directory) are Entries."""
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


def _int_array(vals: list, pd):
    """A nullable Int64 array from Python ints and None, built through numpy."""
    mask = np.array([v is None for v in vals], dtype=bool)
    data = np.array([0 if v is None else v for v in vals], dtype=np.int64)
    return pd.arrays.IntegerArray(data, mask)


def files_table(entries: list[Entry]) -> pd.DataFrame:
    """Entries as the ``files()`` frame: the schema of ``frames.files_frame`` with the ext
    extra columns typed (nanosecond times and flags as Int64, note as string)."""
    import pandas as pd

    from ...frames import FILES_COLUMNS, text_array

    n = len(entries)
    # times: decoded in bulk from the inode records of the entries built by files()
    bulk = [
        i
        for i, e in enumerate(entries)
        if isinstance(e.raw, InodeRecord) and "mtime_ns" not in e.extra
    ]
    ns = {k: np.full(n, _NAT, dtype=np.int64) for _, k in _TIME_COLS}
    if bulk:
        by_size: dict[int, list[int]] = {}
        for i in bulk:
            by_size.setdefault(len(entries[i].raw.raw), []).append(i)
        for size, idx in by_size.items():
            recs = np.frombuffer(b"".join(entries[i].raw.raw for i in idx), dtype=np.uint8).reshape(
                len(idx), size
            )
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
    us_cols = {}
    for col, k in _TIME_COLS:
        a = ns[k]
        us = np.where(a == _NAT, _NAT, a // 1000)
        for i in others:
            e = entries[i]
            if e.extra.get(f"{k}_ns") is None and getattr(e, col) is not None:
                us[i] = _us_of(getattr(e, col))  # an entry with a datetime but no ns column
        us_cols[col] = pd.Series(us.view("datetime64[us]")).dt.tz_localize("UTC").array

    def strings(vals):
        return text_array(vals)

    cols: dict = {}
    cols["path"] = strings([e.path for e in entries])
    cols["name"] = strings([e.name for e in entries])
    cols["parent"] = strings([e.parent for e in entries])
    cols["kind"] = strings([e.kind for e in entries])
    cols["size"] = np.array([e.size for e in entries], dtype=np.int64)
    cols["allocated"] = _int_array([e.allocated for e in entries], pd)
    cols["mode"] = _int_array([e.mode for e in entries], pd)
    cols["uid"] = _int_array([e.uid for e in entries], pd)
    cols["gid"] = _int_array([e.gid for e in entries], pd)
    cols.update(us_cols)
    cols["inode"] = _int_array([e.inode for e in entries], pd)
    cols["links"] = _int_array([e.links for e in entries], pd)
    cols["deleted"] = np.array([e.deleted for e in entries], dtype=bool)
    cols["recoverable"] = np.array([e.recoverable for e in entries], dtype=bool)
    cols["target"] = strings([e.target for e in entries])
    cols["found_by"] = strings([e.found_by for e in entries])
    cols["note"] = strings([e.note for e in entries])
    cols = {c: cols[c] for c in FILES_COLUMNS}
    for col, k in (
        ("mtime_ns", "mtime"),
        ("atime_ns", "atime"),
        ("ctime_ns", "ctime"),
        ("crtime_ns", "crtime"),
    ):
        a = ns[k]
        cols[col] = pd.arrays.IntegerArray(np.where(a == _NAT, 0, a), a == _NAT)
    cols["dtime"] = _int_array([e.extra.get("dtime") for e in entries], pd)
    cols["flags"] = _int_array([e.extra.get("flags") for e in entries], pd)
    return pd.DataFrame(cols)


def _sizes(rec: np.ndarray) -> np.ndarray:
    """i_size of every record; one Linux would read as negative (corrupt) counts as 0."""
    hi = rec["i_size_high"].astype(np.int64)
    bad = hi >= 1 << 31
    return np.where(bad, 0, rec["i_size_lo"].astype(np.int64) | (np.where(bad, 0, hi) << 32))


def _u(rec: np.ndarray, name: str) -> np.ndarray:
    """Field ``name`` of every inode record, as int64."""
    return rec[name].astype(np.int64)


def fast_table(fast: list[tuple], huge_file: bool, block_size: int) -> pd.DataFrame:
    """Rows of live plain files and directories, decoded column-wise from their records."""
    import pandas as pd

    from ...frames import text_array

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
    times = decode_times_bulk(recs)
    nat = np.iinfo(np.int64).min

    def ints(a):
        return pd.arrays.IntegerArray(np.asarray(a, dtype=np.int64), np.zeros(n, dtype=bool))

    def tcol(a):
        us = np.where(a == nat, nat, a // 1000)
        return pd.Series(us.view("datetime64[us]")).dt.tz_localize("UTC").array

    def nsint(a):
        return pd.arrays.IntegerArray(np.where(a == nat, 0, a), a == nat)

    cols = {
        "path": text_array(list(paths)),
        "name": text_array(list(names)),
        "parent": text_array(list(parents)),
        "kind": text_array(np.where(mode & S_IFMT == S_IFDIR, DIR, FILE).tolist()),
        "size": _sizes(rec),
        "allocated": ints(allocated),
        "mode": ints(mode),
        "uid": ints(_u(rec, "i_uid") | (_u(rec, "l_i_uid_high") << 16)),
        "gid": ints(_u(rec, "i_gid") | (_u(rec, "l_i_gid_high") << 16)),
        "created": tcol(times["crtime"]),
        "modified": tcol(times["mtime"]),
        "accessed": tcol(times["atime"]),
        "changed": tcol(times["ctime"]),
        "inode": ints(inos),
        "links": ints(_u(rec, "i_links_count")),
        "deleted": np.zeros(n, dtype=bool),
        "recoverable": np.zeros(n, dtype=bool),
        "target": text_array([None] * n),
        "found_by": text_array(["index"] * n),
        "note": text_array([None] * n),
        "mtime_ns": nsint(times["mtime"]),
        "atime_ns": nsint(times["atime"]),
        "ctime_ns": nsint(times["ctime"]),
        "crtime_ns": nsint(times["crtime"]),
        "dtime": pd.arrays.IntegerArray(np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)),
        "flags": ints(flags),
    }
    return pd.DataFrame(cols)


def assemble_files(
    order: list[bool], fast: list[tuple], entries: list[Entry], huge_file: bool, block_size: int
) -> pd.DataFrame:
    """The files() frame from the column walk: fast rows and Entry rows, in walk order."""
    import pandas as pd


    if not fast:
        return files_table(entries)
    a = fast_table(fast, huge_file, block_size)
    if not entries:
        return a
    b = files_table(entries)
    flags = np.array(order, dtype=bool)
    a.index = np.flatnonzero(flags)
    b.index = np.flatnonzero(~flags)
    return pd.concat([a, b]).sort_index(kind="stable").reset_index(drop=True)
