"""The ``files()`` frame of an XFS volume, built column-wise.

The walk is the generic one of :meth:`FileSystem._walk` (same order: a directory's
children together, subdirectories depth first; same loop, hard-link, depth and path-length
rules), but live files and directories become plain tuples of inode fields instead of
Entry objects with datetimes, and the frame is made from columns in one go. Everything
else (removed names, orphans, symlinks, special files, odd inodes) goes through the
driver's Entry path and is turned into the same tuple.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...errors import CorruptImage, VDInspectError
from ..base import DIR, MAX_DEPTH, MAX_PATH, Entry
from .bulk import live_rows
from .inode import Inode
from .replay import LOG_NOTE

if TYPE_CHECKING:
    import pandas as pd

    from .fs import XfsFileSystem

NAT = np.iinfo(np.int64).min
# tuple layout of a row
(PATH, NAME, PARENT, KIND, SIZE, ALLOC, MODE, UID, GID, CR, MT, AT, CT, INO, LINKS, DELETED,
 RECOVERABLE, TARGET, FLAGS, NOTE, FOUND_BY) = range(21)


def _ident(entry: Entry):
    """What identifies a directory for loop checks (as ``FileSystem._dir_id``)."""
    return entry.inode if entry.inode is not None else entry.key


def _join(parent: str, name: str) -> str:
    return ("/" if parent in ("", "/") else parent + "/") + name


def _row_of_entry(e: Entry) -> tuple:
    x = e.extra
    return (e.path, e.name, e.parent, e.kind, e.size, e.allocated, e.mode, e.uid, e.gid,
            x.get("crtime_ns"), x.get("mtime_ns"), x.get("atime_ns"), x.get("ctime_ns"),
            e.inode, e.links, e.deleted, e.recoverable, e.target, x.get("flags"), e.note,
            e.found_by)


def walk_rows(fs: XfsFileSystem, top: Entry, recursive: bool, deleted: bool) -> list[tuple]:
    """The rows below directory ``top`` in the generic walk's order."""
    bs = fs.block_size
    rows: list[tuple] = []
    start = top.raw if (isinstance(top.raw, Inode) and not top.deleted
                        and top.key != ("orphans",)) else top
    stack: list[tuple[object, str, int, bool, int | None]] = [
        (start, top.path, 0, top.deleted, None)]
    way: list = []
    on_way: set = set()
    listed = {(_ident(top), top.deleted)}
    damaged_volume = fs.volume_damaged()

    def skip(path: str, reason: str) -> None:
        fs.finding("error", "directory", None, f"{path or '/'}: {reason}")

    while stack:
        d, dpath, depth, ddel, at = stack.pop()
        while len(way) > depth:
            on_way.discard(way.pop())
        ident = d if isinstance(d, int) else d.number if isinstance(d, Inode) else _ident(d)
        way.append(ident)
        on_way.add(ident)
        try:
            kids = _children(fs, d, dpath, bs)
        except VDInspectError as e:
            if fs.strict and not isinstance(e, CorruptImage):
                raise
            skip(dpath, f"unreadable directory: {e}")
            continue
        if damaged_volume and isinstance(d, int | Inode):  # nothing lost silently
            probe = Entry(name="", kind=DIR, path=dpath or "/", inode=ident, key=ident)
            why = fs.report_directory_damage(probe)
            if why and at is not None:
                r = list(rows[at])
                r[NOTE] = why if not r[NOTE] else f"{r[NOTE]}; {why}"
                rows[at] = tuple(r)
        subdirs = []
        for row, handle in kids:
            if row[DELETED] and not deleted:
                continue
            rows.append(row)
            if not recursive or row[KIND] != DIR:
                continue
            cid = row[INO] if isinstance(handle, int | Inode) else _ident(handle)
            if cid is not None and cid in on_way:
                skip(row[PATH], "directory loop (points back to an ancestor); not followed")
                continue
            if cid is not None and (cid, row[DELETED]) in listed:
                skip(row[PATH], "directory already listed under another name (a directory "
                                "hard link); not followed")
                continue
            if len(way) >= MAX_DEPTH:
                skip(row[PATH], f"deeper than {MAX_DEPTH} levels; not followed")
                continue
            if len(row[PATH]) > MAX_PATH:
                skip(row[PATH], f"path longer than {MAX_PATH} characters; not followed")
                continue
            if row[DELETED] and not fs.can_list_deleted(handle):
                continue
            listed.add((cid, row[DELETED]))
            subdirs.append((handle, row[PATH], depth + 1, row[DELETED], len(rows) - 1))
        stack.extend(reversed(subdirs))
    return rows


def _children(fs: XfsFileSystem, d, dpath: str, bs: int) -> list[tuple[tuple, object]]:
    """(row, handle) of each child: the handle is the inode number of a fast directory
    row (or the Inode itself), else the Entry."""
    if isinstance(d, int):
        d = fs.inode(d)
    if isinstance(d, Inode):
        raws = fs.dir_entries(d)
        fast = live_rows(fs, raws, dpath, fs.inode_table)
        new = fs.log_new_names(d, raws)
        out = []
        for raw, got in zip(raws, fast):
            if got is not None:
                if new and raw.name in new:  # a name only the log replay put there
                    got = (got[0][:NOTE] + (LOG_NOTE, "journal"), got[1])
                out.append(got)
                continue
            e = fs.entry_of(raw)
            e.parent, e.path = dpath, _join(dpath, e.name)
            if not raw.deleted and raw.name in new:
                e.found_by, e.note = "journal", LOG_NOTE
            out.append((_row_of_entry(e), e))
        if d.number == fs.geo.rootino and dpath == "/":
            e = fs.orphan_dir_entry()
            e.parent, e.path = dpath, _join(dpath, e.name)
            out.append((_row_of_entry(e), e))
        return out
    out = []
    for e in fs.list_dir(d):
        e.parent, e.path = dpath, _join(dpath, e.name)
        handle = e.raw if (isinstance(e.raw, Inode) and not e.deleted and e.kind == DIR
                           and e.key != ("orphans",)) else e
        out.append((_row_of_entry(e), handle))
    return out


def frame_text(v: str | None) -> str | None:
    """A name as the frame shows it: bytes that are not UTF-8 (kept as surrogates by the
    driver) become ``\\xNN`` escapes, which ``lookup`` also accepts."""
    if v is None:
        return None
    try:
        v.encode("utf-8")
        return v
    except UnicodeEncodeError:
        return v.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def rows_frame(rows: list[tuple]) -> pd.DataFrame:
    """The files() frame (FILES_COLUMNS, then mtime_ns..crtime_ns, flags)."""
    import pandas as pd

    from ...frames import FILES_COLUMNS

    n = len(rows)
    cols = list(zip(*rows)) if n else [()] * 21

    lo, hi = -(1 << 63), 1 << 63

    def ints(vals):  # a value no int64 holds is garbage from a damaged inode: NA
        try:  # the common case, every value present and in range, at C speed
            return pd.arrays.IntegerArray(np.array(vals, dtype=np.int64),
                                          np.zeros(n, dtype=bool))
        except (TypeError, OverflowError):
            pass
        obj = np.array(vals, dtype=object)
        mask = np.equal(obj, None)
        try:  # some absent (NA), the rest in range: still without a Python loop
            return pd.arrays.IntegerArray(np.where(mask, 0, obj).astype(np.int64), mask)
        except (TypeError, OverflowError):
            pass
        vals = [v if v is None or lo <= v < hi else None for v in vals]
        mask = np.fromiter((v is None for v in vals), dtype=bool, count=n)
        arr = np.fromiter((0 if v is None else v for v in vals), dtype=np.int64, count=n)
        return pd.arrays.IntegerArray(arr, mask)

    def strings(vals):
        try:
            return pd.array(list(vals), dtype="string")
        except UnicodeEncodeError:  # names that are not UTF-8: shown as \xNN escapes
            return pd.array([frame_text(v) for v in vals], dtype="string")

    def times(vals):
        a = ints(vals)  # ns, NA where absent: microseconds, NaT where absent
        a = np.where(a.isna(), NAT, a.to_numpy(dtype=np.int64, na_value=0) // 1000)
        return pd.Series(a.view("datetime64[us]")).dt.tz_localize("UTC").array

    out = {
        "path": strings(cols[PATH]), "name": strings(cols[NAME]),
        "parent": strings(cols[PARENT]), "kind": strings(cols[KIND]),
        "size": np.fromiter(cols[SIZE], dtype=np.int64, count=n),
        "allocated": ints(cols[ALLOC]), "mode": ints(cols[MODE]), "uid": ints(cols[UID]),
        "gid": ints(cols[GID]), "created": times(cols[CR]), "modified": times(cols[MT]),
        "accessed": times(cols[AT]), "changed": times(cols[CT]), "inode": ints(cols[INO]),
        "links": ints(cols[LINKS]),
        "deleted": np.fromiter(cols[DELETED], dtype=bool, count=n),
        "recoverable": np.fromiter(cols[RECOVERABLE], dtype=bool, count=n),
        "target": strings(cols[TARGET]), "found_by": strings(cols[FOUND_BY]),
        "note": strings(cols[NOTE]),
    }
    out = {c: out[c] for c in FILES_COLUMNS}
    out.update({"mtime_ns": ints(cols[MT]), "atime_ns": ints(cols[AT]),
                "ctime_ns": ints(cols[CT]), "crtime_ns": ints(cols[CR]),
                "flags": ints(cols[FLAGS])})
    return pd.DataFrame(out)
