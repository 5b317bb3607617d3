"""The ``files()`` frame of an XFS volume, built column-wise.

The walk is the one of :mod:`..walk` (same order and rules as every listing), but live
files and directories become plain tuples of inode fields instead of Entry objects with
datetimes, and the frame is made from their columns by ``frames.files_columns_frame``. Everything
else (removed names, orphans, symlinks, special files, odd inodes) goes through the
driver's Entry path and is turned into the same tuple.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..base import DIR, Entry
from ..walk import HANDLE, IDENT, PATH, PAYLOAD, Walk
from .bulk import live_rows
from .inode import Inode
from .replay import LOG_NOTE

if TYPE_CHECKING:
    from .fs import XfsFileSystem

NAT = np.iinfo(np.int64).min
# tuple layout of a row
(ROW_PATH, NAME, PARENT, KIND, SIZE, ALLOC, MODE, UID, GID, CR, MT, AT, CT, INO, LINKS, DELETED,
 RECOVERABLE, TARGET, FLAGS, NOTE, FOUND_BY) = range(21)


def _join(parent: str, name: str) -> str:
    return ("/" if parent in ("", "/") else parent + "/") + name


def _row_of_entry(e: Entry) -> tuple:
    x = e.extra
    return (e.path, e.name, e.parent, e.kind, e.size, e.allocated, e.mode, e.uid, e.gid,
            x.get("crtime_ns"), x.get("mtime_ns"), x.get("atime_ns"), x.get("ctime_ns"),
            e.inode, e.links, e.deleted, e.recoverable, e.target, x.get("flags"), e.note,
            e.found_by)


def walk_rows(fs: XfsFileSystem, top: Entry, recursive: bool, deleted: bool) -> list[tuple]:
    """The rows below directory ``top`` through the one walk (:mod:`..walk`)."""
    bs = fs.block_size
    start = top.raw if (isinstance(top.raw, Inode) and not top.deleted
                        and top.key != ("orphans",)) else top
    ident = start.number if isinstance(start, Inode) else fs.dir_id(top)
    rows: list[tuple] = []

    def damage(d) -> int:  # a directory read from its inode (nothing lost silently)
        h = d[HANDLE]
        if not isinstance(h, int | Inode):
            return 0
        return fs.directory_damage(Entry(name="", kind=DIR, path=d[PATH] or "/",
                                         inode=d[IDENT], key=d[IDENT]))

    walk = Walk(fs, (top.path, True, ident, top.deleted, start, None),
                lambda d: _children(fs, d[HANDLE], d[PATH], bs), recursive=recursive,
                deleted=deleted, listable=lambda c: fs.can_list_deleted(c[HANDLE]),
                damage=damage)
    for _d, kids in walk:
        rows += [c[PAYLOAD] for c in kids]
    for at, why in walk.notes.items():
        r = list(rows[at])
        r[NOTE] = why if not r[NOTE] else f"{r[NOTE]}; {why}"
        rows[at] = tuple(r)
    return rows


def _child(fs: XfsFileSystem, row: tuple, handle) -> tuple:
    """A row as a child of the walk: directories carry their inode (or Entry) handle."""
    if row[KIND] != DIR:
        return (row[ROW_PATH], False, None, row[DELETED], None, row)
    ident = row[INO] if isinstance(handle, int | Inode) else fs.dir_id(handle)
    return (row[ROW_PATH], True, ident, row[DELETED], handle, row)


def _children(fs: XfsFileSystem, d, dpath: str, bs: int) -> list[tuple]:
    """The walk's children of a directory (:func:`_child`): the handle is the inode
    number of a fast directory row (or the Inode itself), else the Entry."""
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
                out.append(_child(fs, *got))
                continue
            e = fs.entry_of(raw)
            e.parent, e.path = dpath, _join(dpath, e.name)
            if not raw.deleted and raw.name in new:
                e.found_by, e.note = "journal", LOG_NOTE
            out.append(_child(fs, _row_of_entry(e), e))
        if d.number == fs.geo.rootino and dpath == "/":
            e = fs.orphan_dir_entry()
            e.parent, e.path = dpath, _join(dpath, e.name)
            out.append(_child(fs, _row_of_entry(e), e))
        return out
    out = []
    for e in fs.list_dir(d):
        e.parent, e.path = dpath, _join(dpath, e.name)
        handle = e.raw if (isinstance(e.raw, Inode) and not e.deleted and e.kind == DIR
                           and e.key != ("orphans",)) else e
        out.append(_child(fs, _row_of_entry(e), handle))
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


def rows_columns(rows: list[tuple]) -> dict:
    """The files() columns of the rows (FILES_COLUMNS, then mtime_ns..crtime_ns, flags);
    times in nanoseconds, as the inodes keep them."""
    n = len(rows)
    cols = list(zip(*rows)) if n else [()] * 21

    def strings(vals):
        try:
            "".join(v for v in vals if v is not None).encode("utf-8")
            return list(vals)
        except UnicodeEncodeError:  # names that are not UTF-8: shown as \xNN escapes
            return [frame_text(v) for v in vals]

    def ints(vals):  # Int64 columns: a masked array (masked: NA), built at C speed
        mask = np.fromiter((v is None for v in vals), dtype=bool, count=n)
        try:
            data = np.fromiter((0 if v is None else v for v in vals), dtype=np.int64,
                               count=n)
        except (TypeError, OverflowError, ValueError):
            return list(vals)  # a value no int64 holds: the frame builder makes it NA
        return np.ma.MaskedArray(data, mask)

    def times(vals):
        return np.fromiter((NAT if v is None else v for v in vals), dtype=np.int64,
                           count=n).view("datetime64[ns]")

    return {
        "path": strings(cols[ROW_PATH]), "name": strings(cols[NAME]),
        "parent": strings(cols[PARENT]), "kind": list(cols[KIND]),
        "size": np.fromiter(cols[SIZE], dtype=np.int64, count=n),
        "allocated": ints(cols[ALLOC]), "mode": ints(cols[MODE]), "uid": ints(cols[UID]),
        "gid": ints(cols[GID]), "created": times(cols[CR]), "modified": times(cols[MT]),
        "accessed": times(cols[AT]), "changed": times(cols[CT]), "inode": ints(cols[INO]),
        "links": ints(cols[LINKS]),
        "deleted": np.fromiter(cols[DELETED], dtype=bool, count=n),
        "recoverable": np.fromiter(cols[RECOVERABLE], dtype=bool, count=n),
        "target": strings(cols[TARGET]), "found_by": list(cols[FOUND_BY]),
        "note": list(cols[NOTE]),
        "mtime_ns": ints(cols[MT]), "atime_ns": ints(cols[AT]), "ctime_ns": ints(cols[CT]),
        "crtime_ns": ints(cols[CR]), "flags": ints(cols[FLAGS]),
    }


#: the dtypes of the XFS extra columns
EXTRA_DTYPES = dict.fromkeys(("mtime_ns", "atime_ns", "ctime_ns", "crtime_ns", "flags"),
                             "Int64")
