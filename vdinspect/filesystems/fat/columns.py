"""FAT ``files()`` column-wise: a folder's 32-byte entries decoded together with numpy.

A folder whose entries are all plain (live short entries, each with no long name or a
sound one: the ordinals count down to 1 and every piece carries the short name's
checksum) is decoded as columns (:class:`DirRows`): names, sizes, times, first clusters,
with no Entry, tuple or parse per entry. Anything else (a deleted entry, a broken long
name, a 0x05 lead byte, the root, a deleted or found folder) is listed the full way,
:meth:`~.directory.DirectoryMixin.list_dir`, so its rows and findings are what they were;
``frames.merge_columns`` puts the two back in walk order. The dtype of an entry and the
long-name pieces come from the declarations in :mod:`.structs` (``layout``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ...layout import numpy_dtype
from ...lazy import np
from ..base import DIR, FILE, Entry
from ..walk import HANDLE, Batch, Walk, paused_gc
from .directory import DOT_NAMES, FatDirent, FatKey
from .structs import (
    ATTR_DIRECTORY,
    ATTR_LONG_NAME,
    ATTR_LONG_NAME_MASK,
    ATTR_VOLUME_ID,
    DELETED,
    DIRENT,
    KANJI_E5,
    LFN_CHKSUM,
    LFN_LAST,
    LFN_NAME_PARTS,
    NT_LOWER_BASE,
    NT_LOWER_EXT,
    DirEntry,
    attr_text,
)
from .times import dos_datetime

if TYPE_CHECKING:
    import pandas as pd

NAT = -(1 << 63)  # numpy's NaT as int64
US = 1_000_000
_ENTRY = DIRENT.size
_TIMES = ("created", "modified", "accessed")


def entry_dtype() -> np.dtype:
    """The structured dtype of a short entry (:data:`~.structs.DirEntry`)."""
    return numpy_dtype(DirEntry)


def dos_times(date: np.ndarray, time: np.ndarray | None = None,
              tenths: np.ndarray | None = None) -> np.ndarray:
    """DOS dates (and times, 10 ms counts) as datetime64[us], NaT where
    :func:`~.times.dos_datetime` gives None: a zero or impossible date or time."""
    date = date.astype(np.int64)
    day, month, year = date & 0x1F, (date >> 5) & 0x0F, 1980 + (date >> 9)
    ok = (date != 0) & (month >= 1) & (month <= 12) & (day >= 1)
    first = ((year - 1970) * 12 + np.clip(month, 1, 12) - 1).astype("datetime64[M]")
    start = first.astype("datetime64[D]")
    ok &= day - 1 < ((first + 1).astype("datetime64[D]") - start).astype(np.int64)
    us = (start.astype(np.int64) + day - 1) * 86400 * US
    if time is not None:
        time = time.astype(np.int64)
        sec2, minute, hour = time & 0x1F, (time >> 5) & 0x3F, time >> 11
        ok &= (hour <= 23) & (minute <= 59) & (sec2 <= 29)
        us += ((hour * 60 + minute) * 60 + sec2 * 2) * US
    if tenths is not None:
        t = tenths.astype(np.int64)
        us += np.where(t > 199, 0, t) * 10_000
    return np.where(ok, us, NAT).view("datetime64[us]")


def us_column(values: list) -> np.ndarray:
    """Aware datetimes (or None) as datetime64[us], NaT for None (Entry rows merged with
    the column rows: the merge keeps one numeric time column)."""
    import datetime as dt

    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    out = np.full(len(values), NAT, dtype=np.int64)
    for i, v in enumerate(values):
        if v is not None:
            d = v - epoch
            out[i] = (d.days * 86400 + d.seconds) * US + d.microseconds
    return out.view("datetime64[us]")


def lfn_checksums(names: np.ndarray) -> np.ndarray:
    """The VFAT checksum of each row of an (n, 11) uint8 array of short names."""
    s = np.zeros(len(names), dtype=np.int64)
    for i in range(11):
        s = (((s & 1) << 7) + (s >> 1) + names[:, i]) & 0xFF
    return s


class DirRows:
    """A plain folder's rows as columns (see the module docstring); ``segs`` are the
    folder's bytes as read, for a listing that wants Entries after all."""

    __slots__ = ("segs", "names", "cols", "subdirs")

    def __init__(self, segs, names: list[str], cols: dict, subdirs: list) -> None:
        self.segs = segs
        self.names = names
        self.cols = cols
        self.subdirs = subdirs  # (row, Entry) of each subfolder

    def __len__(self) -> int:
        return len(self.names)


class ColumnsMixin:
    """The column-wise ``files()`` of :class:`~.filesystem.FatFileSystem`."""

    def decode_dir(self, d: Entry, segs: list[tuple[int, bytes]]) -> DirRows | list[Entry]:
        """A folder's listing: :class:`DirRows` when all its entries are plain, else
        its Entries the full way (``_parse_dir``, which makes the findings)."""
        got = None if d.deleted or d.key.root else self.plain_rows(segs)
        return self._parse_dir(d, segs) if got is None else got

    def plain_rows(self, segs: list[tuple[int, bytes]]) -> DirRows | None:
        """The rows of a folder's bytes as columns, or None when any slot is not plain."""
        parts, offs = [], []
        for base, buf in segs:
            n = len(buf) // _ENTRY
            if not n:
                continue
            a = np.frombuffer(buf, dtype=np.uint8, count=n * _ENTRY).reshape(n, _ENTRY)
            end = np.flatnonzero(a[:, 0] == 0)  # the end mark ends this piece's slots
            if end.size:
                a = a[: int(end[0])]
            parts.append(a)
            offs.append(base + _ENTRY * np.arange(len(a), dtype=np.int64))
        if not parts:
            return DirRows(segs, [], self.row_columns(np.zeros((0, _ENTRY), np.uint8),
                                                      np.zeros(0, np.int64)), [])
        raw = parts[0] if len(parts) == 1 else np.concatenate(parts)
        off = offs[0] if len(offs) == 1 else np.concatenate(offs)
        b0, attr = raw[:, 0], raw[:, 11]
        if (b0 == DELETED).any():
            return None
        lfn = attr & ATTR_LONG_NAME_MASK == ATTR_LONG_NAME
        short = ~lfn
        if (short & (b0 == KANJI_E5)).any():
            return None
        names = raw[:, :11]
        skip = short & ((attr & ATTR_VOLUME_ID != 0)
                        | (names == np.frombuffer(DOT_NAMES[0], np.uint8)).all(1)
                        | (names == np.frombuffer(DOT_NAMES[1], np.uint8)).all(1))
        rows = short & ~skip
        if (names[rows] == 0).any():
            return None
        sidx = np.flatnonzero(short)
        prev = np.concatenate(([-1], sidx[:-1]))
        glen = sidx - prev - 1  # long-name slots before each short entry
        # each long-name slot's short entry (past the last one: never used)
        li = np.flatnonzero(lfn)
        owner = np.searchsorted(sidx, li)
        used = owner < len(sidx)
        li, owner = li[used], owner[used]
        keep = rows[sidx[owner]]  # those before a skipped entry are dropped unread
        li, owner = li[keep], owner[keep]
        k = li - prev[owner] - 1  # position in its group
        ordb = b0[li].astype(np.int64)
        sums = lfn_checksums(names[sidx[owner]])
        if len(li) and ((ordb & 0x1F != glen[owner] - k) | ((ordb & LFN_LAST != 0) != (k == 0))
                        | (raw[li, LFN_CHKSUM] != sums)).any():
            return None
        ridx = np.flatnonzero(rows)
        text = self.short_names(raw[ridx])
        g = glen[np.searchsorted(sidx, ridx)]
        has = np.flatnonzero(g)
        if has.size:
            for j, name in zip(has.tolist(), self.long_names(raw, ridx[has], g[has])):
                if name:
                    text[1][j] = name
        cols = self.row_columns(raw[ridx], off[ridx])
        cols["short_name"] = text[0]
        subdirs = []
        for j in np.flatnonzero(cols["is_dir"]).tolist():
            i = int(ridx[j])
            g0 = i - int(glen[np.searchsorted(sidx, i)])
            e = Entry(name=text[1][j], kind=DIR, size=int(cols["size"][j]),
                      inode=int(cols["inode"][j]), allocated=int(cols["size"][j]),
                      raw=FatDirent(int(off[i]), raw[i].tobytes(),
                                    [raw[x].tobytes() for x in range(g0, i)]),
                      key=FatKey(int(cols["first_cluster"][j]), 0, False))
            f = DIRENT.unpack(raw[i].tobytes())
            e.created, e.modified = dos_datetime(f[5], f[4], f[3]), dos_datetime(f[9], f[8])
            e.accessed = dos_datetime(f[6])
            e.extra = {"attributes": cols["attributes"][j], "short_name": text[0][j],
                       "first_cluster": int(cols["first_cluster"][j])}
            subdirs.append((j, e))
        return DirRows(segs, text[1], cols, subdirs)

    @staticmethod
    def short_names(raw) -> tuple[list[str], list[str]]:
        """The 8.3 names of short entries (rows of raw bytes; no NUL in a name) as
        ``_short_name`` writes them, twice (short names, and names the long ones are to
        replace): spaces stripped and the NT case bits applied to every row at once (one
        decode), row by row where a lowered part holds a byte past ASCII."""
        n = len(raw)
        if not n:
            return [], []
        name = raw[:, :11]
        parts = []
        for lo, hi, bit in ((0, 8, NT_LOWER_BASE), (8, 11, NT_LOWER_EXT)):
            p = name[:, lo:hi].copy()
            filled = p != 0x20
            length = np.where(filled.any(1), hi - lo - filled[:, ::-1].argmax(1), 0)
            low = (raw[:, 12] & bit != 0)[:, None]
            if (low & (p >= 0x80)).any():
                return ColumnsMixin.short_names_slow(raw)
            p += (low & (p >= 0x41) & (p <= 0x5A)) * np.uint8(0x20)
            parts.append((p, np.arange(hi - lo)[None, :] < length[:, None], length))
        (base, bkeep, _bl), (ext, xkeep, xlen) = parts
        buf = np.zeros((n, 13), dtype=np.uint8)
        buf[:, :8], buf[:, 8], buf[:, 9:12] = base, 0x2E, ext
        keep = np.ones((n, 13), dtype=bool)
        keep[:, :8], keep[:, 8], keep[:, 9:12] = bkeep, xlen > 0, xkeep
        out = buf[keep].tobytes().decode("cp850", "replace").split("\0")[:n]
        return out, list(out)

    @staticmethod
    def short_names_slow(raw) -> tuple[list[str], list[str]]:
        """:meth:`short_names` row by row (str.lower() past ASCII)."""
        full = np.concatenate([raw[:, :11], np.zeros((len(raw), 1), np.uint8)], axis=1)
        out = []
        for s, f in zip(full.tobytes().decode("cp850", "replace").split("\0"),
                        raw[:, 12].tolist()):
            b, x = s[:8].rstrip(" "), s[8:].rstrip(" ")
            if f & NT_LOWER_BASE:
                b = b.lower()
            if f & NT_LOWER_EXT:
                x = x.lower()
            out.append(f"{b}.{x}" if x else b)
        return out, list(out)

    @staticmethod
    def long_names(raw, at, count) -> list[str]:
        """The long names of the short entries at rows ``at``, each after ``count``
        sound long-name slots: UCS-2 pieces, last slot first, cut at the first NUL."""
        pieces = np.concatenate([raw[:, s] for s in LFN_NAME_PARTS], axis=1)  # (n, 26)
        width = int(count.max())
        j = np.arange(width)
        idx = at[:, None] - 1 - j[None, :]  # slot of the j-th piece of each name
        valid = j[None, :] < count[:, None]
        units = np.where(valid[:, :, None], pieces[np.where(valid, idx, 0)], 0)
        units = np.ascontiguousarray(units).view("<u2").reshape(len(at), width * 13)
        units = np.concatenate([units, np.zeros((len(at), 1), dtype="<u2")], axis=1)
        ln = (units == 0).argmax(axis=1)
        keep = np.arange(units.shape[1])[None, :] <= ln[:, None]
        return units[keep].tobytes().decode("utf-16-le", "replace").split("\0")[: len(at)]

    def row_columns(self, raw, off) -> dict:
        """The files() columns of plain short entries (rows of raw bytes at ``off``)."""
        rec = raw.view(entry_dtype()).ravel() if len(raw) else np.zeros(0, entry_dtype())
        attr = rec["DIR_Attr"]
        is_dir = attr & ATTR_DIRECTORY != 0
        lo = rec["DIR_FstClusLO"].astype(np.int64)
        first = lo | rec["DIR_FstClusHI"].astype(np.int64) << 16 if self.bits == 32 else lo
        size = rec["DIR_FileSize"].astype(np.int64)
        csize = self.cluster_size
        alloc = -(-size // csize) * csize
        for j in np.flatnonzero(is_dir).tolist():
            size[j] = alloc[j] = self._dir_size(int(first[j]))
        n = len(rec)
        zero = np.zeros(n, dtype=np.int64)  # the access date has no time
        times = dos_times(
            np.concatenate([rec["DIR_CrtDate"], rec["DIR_WrtDate"], rec["DIR_LstAccDate"]]),
            np.concatenate([rec["DIR_CrtTime"], rec["DIR_WrtTime"], zero]),
            np.concatenate([rec["DIR_CrtTimeTenth"], zero, zero]))  # one call: 3 columns
        return {
            "is_dir": is_dir, "size": size, "allocated": alloc,
            "created": times[:n], "modified": times[n : 2 * n], "accessed": times[2 * n :],
            "inode": (off - self.first_data_offset) // _ENTRY + 3,
            "attributes": list(map(attr_text, attr.tolist())),
            "first_cluster": first,
        }

    # --- the walk ---------------------------------------------------------------------
    def files(self, path: str = "/", *, recursive: bool = True,
              deleted: bool = True) -> pd.DataFrame:
        """The ``files()`` frame (the rows of the Entry walk, plain folders column-wise).

        Extra columns: ``attributes`` (R H S V D A), ``short_name`` (8.3), ``first_cluster``.
        """
        from ...frames import files_columns_frame

        if self.volume_damaged():  # the damaged column needs every row's content
            return super().files(path, recursive=recursive, deleted=deleted)
        with paused_gc():
            if self._lost is None:
                self.lost_directories()
            top = self.lookup(path, deleted=deleted)
            if top.kind != DIR:
                return super().files(path, recursive=recursive, deleted=deleted)
            cols = self.walk_columns(top, recursive, deleted)
            cols["damaged"] = self.damaged_column(cols["kind"], list)
            return files_columns_frame(cols)

    def column_batches(self, path: str = "/", *, recursive: bool = True,
                       deleted: bool = True, rows: int = 1024) -> Iterator[tuple[dict, dict]]:
        """The rows of ``files()`` streamed (``ls``): ``(columns, notes)`` for each run of
        whole folders reaching ``rows`` rows, ``notes`` the walk's notes so far by row."""
        if self._lost is None:
            self.lost_directories()
        top = self.lookup(path, deleted=deleted)
        held: tuple[list, list, list] = ([], [], [])
        notes: dict = {}
        for part, notes in self.column_parts(top, recursive, deleted):
            for h, p in zip(held, part):
                h += p
            if len(held[0]) >= rows:
                yield self.columns_of(*held), notes
                held = ([], [], [])
        if held[0]:
            yield self.columns_of(*held), notes

    def walk_columns(self, top: Entry, recursive: bool, deleted: bool) -> dict:
        """The files() columns of the walk below ``top`` (a folder), notes included."""
        held: tuple[list, list, list] = ([], [], [])
        notes: dict = {}
        for part, now in self.column_parts(top, recursive, deleted):
            for h, p in zip(held, part):
                h += p
            notes = now
        cols = self.columns_of(*held)
        if notes:
            note = cols["note"] = list(cols["note"])
            for row, why in notes.items():
                note[row] = why if not note[row] else f"{note[row]}; {why}"
        return cols

    def column_parts(self, top: Entry, recursive: bool, deleted: bool
                     ) -> Iterator[tuple[tuple[list, list, list], dict]]:
        """The walk below ``top`` a folder at a time: ``((which, plain, entries), notes)``:
        per row whether it is a plain one, the plain folders' :class:`DirRows` (with
        their paths), the other rows' Entries; the walk's notes so far."""
        dir_id = self.dir_id

        def child(e: Entry, dpath: str, prefix: str) -> tuple:
            e.parent = dpath
            e.path = prefix + e.name
            return (e.path, e.kind == DIR, dir_id(e), e.deleted, e, e)

        def children(dc: tuple) -> Batch:
            d = dc[HANDLE]
            dpath = d.path
            prefix = "/" if dpath in ("", "/") else dpath + "/"
            got = None
            if not (d.key.root or d.deleted or d.found_by != "index" or d.key.cluster < 2):
                got = self.folder_listing(d)
                extra = self.lost_children(d)
                if isinstance(got, list):
                    got, extra = None, got + extra
            else:
                extra = self.list_dir(d)
            subdirs, which, plain, entries = [], [], [], []
            if got is not None:
                plain.append((got, dpath, prefix))
                which += [True] * len(got)
                for j, e in got.subdirs:
                    e.parent = dpath
                    e.path = prefix + e.name
                    subdirs.append((j, (e.path, True, dir_id(e), False, e, None)))
            for e in extra:
                if e.deleted and not deleted:
                    continue
                c = child(e, dpath, prefix)
                if c[1]:
                    subdirs.append((len(which), c))
                which.append(False)
                entries.append(e)
            return Batch(len(which), subdirs, (which, plain, entries))

        walk = Walk(self, self.entry_child(top), children, recursive=recursive,
                    deleted=deleted, listable=self.entry_listable, damage=self.entry_damage)
        for _d, kids in walk:
            yield kids.columns, walk.notes

    def columns_of(self, which: list[bool], plain: list, entries: list[Entry]) -> dict:
        """The files() columns of a run of rows of :meth:`column_parts` (no notes)."""
        from ...frames import entry_columns, merge_columns

        if not which:  # no rows: the columns of an empty Entry listing
            return entry_columns([])
        b = entry_columns(entries) if entries else None
        if b is not None:
            for c in _TIMES:
                b[c] = us_column(b[c])
            if not plain:
                return b
        a = self.plain_columns(plain)
        return a if b is None else merge_columns(np.array(which, dtype=bool), a, b,
                                                 consume=True)

    def folder_listing(self, d: Entry) -> DirRows | list[Entry]:
        """A live folder's listing for the column walk: the scan's, else decoded now."""
        got = self.listings.pop(d.key.cluster, None)
        return self.decode_dir(d, self._dir_bytes(d)) if got is None else got

    #: the driver's extra columns of plain rows, in order (arrays or lists in DirRows.cols)
    plain_extras = ("attributes", "short_name", "first_cluster")

    @classmethod
    def plain_columns(cls, plain: list[tuple[DirRows, str, str]]) -> dict:
        """The plain folders' columns, joined in walk order."""
        names = [nm for r, _d, _p in plain for nm in r.names]
        n = len(names)

        def joined(k):
            arrs = [r.cols[k] for r, _d, _p in plain]
            return np.concatenate(arrs) if arrs else np.zeros(0, np.int64)

        is_dir = joined("is_dir") if plain else np.zeros(0, bool)
        return {
            "path": [p + nm for r, _d, p in plain for nm in r.names],
            "name": names,
            "parent": [d for r, d, _p in plain for _ in range(len(r))],
            "kind": np.where(is_dir, DIR, FILE).tolist(),
            "size": joined("size"), "allocated": joined("allocated"),
            **{c: (joined(c) if plain else np.zeros(0, "datetime64[us]")) for c in _TIMES},
            "inode": joined("inode"),
            **dict.fromkeys(("mode", "uid", "gid", "links"),
                            np.ma.MaskedArray(np.zeros(n, np.int64), np.ones(n, bool))),
            "changed": np.full(n, NAT, np.int64).view("datetime64[us]"),
            "target": [None] * n, "note": [None] * n,
            "deleted": np.zeros(n, dtype=bool), "recoverable": np.zeros(n, dtype=bool),
            "found_by": ["index"] * n,
            **{k: (joined(k) if plain and isinstance(plain[0][0].cols[k], np.ndarray)
                   else [x for r, _d, _p in plain for x in r.cols[k]])
               for k in cls.plain_extras},
        }
