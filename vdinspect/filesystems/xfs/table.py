"""The ``files()`` frame of an XFS volume, built column-wise.

The walk is the one of :mod:`..walk` (same order and rules as every listing), but live
files and directories become plain tuples of inode fields instead of Entry objects with
datetimes, and the frame is made from their columns by ``frames.files_columns_frame``. Everything
else (removed names, orphans, symlinks, special files, odd inodes) goes through the
driver's Entry path and is turned into the same tuple.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from ...containers.vhdx import crc32c
from ..base import DIR, FILE, Entry
from ..walk import HANDLE, IDENT, PATH, PAYLOAD, Walk
from . import structs as S
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
        fast = _bulk(fs, [r for r in raws if not r.deleted], dpath, bs)
        new = fs.log_new_names(d, raws)
        if new:  # names only the log replay put there
            for r in raws:
                got = fast.get(id(r))
                if got is not None and r.name in new:
                    fast[id(r)] = (got[0][:NOTE] + (LOG_NOTE, "journal"), got[1])
        out = []
        for raw in raws:
            got = fast.get(id(raw))
            if got is not None:
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


@functools.lru_cache(maxsize=8)
def _core_dtype(isz: int, v3: bool) -> np.dtype:
    """The inode core's fields (structs.Dinode) at their offsets in an ``isz``-byte record."""
    base = S.dtype(S.Dinode)
    names = [n for n in base.names if v3 or n in S.DINODE_FIELDS[:S.DINODE_FIELDS.index(
        "di_crc")]]
    return np.dtype({"names": names, "formats": [base.fields[n][0] for n in names],
                     "offsets": [base.fields[n][1] for n in names], "itemsize": isz})


def _bulk(fs: XfsFileSystem, live: list, dpath: str, bs: int) -> dict[int, tuple]:
    """Rows of the live entries whose inodes are plain files or directories that pass
    every check (magic, version, CRC, number, file type), decoded together with numpy;
    keyed by id() of the raw entry. The others are left to the Entry path."""
    g = fs.geo
    if not live:
        return {}
    bits = g.agblklog + g.inopblog
    inos = np.fromiter((r.ino for r in live), dtype=np.uint64, count=len(live))
    agno = (inos >> np.uint64(bits)).astype(np.int64)
    agino = (inos & np.uint64((1 << bits) - 1)).astype(np.int64)
    agbno = agino >> g.inopblog
    ok = (inos > 0) & (agno < g.agcount) & (agbno < g.agblocks)
    offs = (agno * g.agblocks + agbno) * bs + (agino & ((1 << g.inopblog) - 1)) * g.inode_size
    ok &= offs + g.inode_size <= fs.dev.size
    if not ok.all():
        keep = np.flatnonzero(ok)
        live = [live[i] for i in keep.tolist()]
        inos, offs = inos[keep], offs[keep]
        if not live:
            return {}
    isz = g.inode_size
    data = fs.inode_bytes(offs.tolist(), isz)
    recs = np.frombuffer(data, dtype=_core_dtype(isz, g.crc))
    mode = recs["di_mode"].astype(np.int64)
    fmt = mode & 0o170000
    ver = recs["di_version"]
    good = (recs["di_magic"] == S.XFS_DINODE_MAGIC) & ((fmt == 0o100000) | (fmt == 0o40000))
    good &= recs["di_size"] < np.uint64(1 << 63)
    good &= (ver == 3) if g.crc else ((ver == 1) | (ver == 2))
    ft = np.fromiter((r.ftype for r in live), dtype=np.int64, count=len(live))
    good &= (ft == 0) | ((ft == 1) & (fmt == 0o100000)) | ((ft == 2) & (fmt == 0o40000))
    if g.crc:
        good &= recs["di_ino"] == inos
        flat = np.frombuffer(data, dtype=np.uint8).reshape(len(live), isz).copy()
        stored = flat[:, S.DINODE_CRC_OFF:S.DINODE_CRC_OFF + 4].copy().view("<u4").ravel()
        flat[:, S.DINODE_CRC_OFF:S.DINODE_CRC_OFF + 4] = 0
        for i in np.flatnonzero(good).tolist():
            if crc32c(flat[i].tobytes()) != int(stored[i]):
                good[i] = False
        bigtime = (recs["di_flags2"] & np.uint64(S.DIFLAG2_BIGTIME)) != 0
    else:
        bigtime = np.zeros(len(live), dtype=bool)

    def times(field):
        raw = recs[field].astype(np.uint64)
        big = (raw - np.uint64(S.BIGTIME_EPOCH_OFFSET * 10**9)).view(np.int64)
        sec = (raw >> np.uint64(32)).astype(np.uint32).view(np.int32).astype(np.int64)
        old = sec * 10**9 + (raw & np.uint64(0xFFFFFFFF)).astype(np.int64)
        return np.where(bigtime, big, old).tolist()

    idx = np.flatnonzero(good)
    if not len(idx):
        return {}
    recs, live_ok = recs[idx], [live[i] for i in idx.tolist()]
    bigtime = bigtime[idx]
    at, mt, ct = times("di_atime"), times("di_mtime"), times("di_ctime")
    cr = times("di_crtime") if g.crc else [None] * len(idx)
    links = np.where(recs["di_version"] == 1, recs["di_onlink"], recs["di_nlink"]).tolist()
    kinds = np.where(mode[idx] & 0o170000 == 0o40000, 1, 0).tolist()
    out = {}
    cols = zip(live_ok, kinds, recs["di_size"].tolist(),
               (recs["di_nblocks"] * np.uint64(bs)).tolist(), mode[idx].tolist(),
               recs["di_uid"].tolist(), recs["di_gid"].tolist(), cr, mt, at, ct, links,
               recs["di_flags"].tolist())
    for raw, isdir, size, alloc, md, uid, gid, c, m, a, t, nl, fl in cols:
        name = raw.name.decode("utf-8", "surrogateescape")
        path = _join(dpath, name)
        row = (path, name, dpath, DIR if isdir else FILE, size, alloc, md, uid, gid, c, m, a,
               t, raw.ino, nl, False, False, None, fl, None, "index")
        out[id(raw)] = (row, raw.ino if isdir else None)
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

    def times(vals):
        return np.fromiter((NAT if v is None else v for v in vals), dtype=np.int64,
                           count=n).view("datetime64[ns]")

    return {
        "path": strings(cols[ROW_PATH]), "name": strings(cols[NAME]),
        "parent": strings(cols[PARENT]), "kind": list(cols[KIND]),
        "size": np.fromiter(cols[SIZE], dtype=np.int64, count=n),
        "allocated": list(cols[ALLOC]), "mode": list(cols[MODE]), "uid": list(cols[UID]),
        "gid": list(cols[GID]), "created": times(cols[CR]), "modified": times(cols[MT]),
        "accessed": times(cols[AT]), "changed": times(cols[CT]), "inode": list(cols[INO]),
        "links": list(cols[LINKS]),
        "deleted": np.fromiter(cols[DELETED], dtype=bool, count=n),
        "recoverable": np.fromiter(cols[RECOVERABLE], dtype=bool, count=n),
        "target": strings(cols[TARGET]), "found_by": list(cols[FOUND_BY]),
        "note": list(cols[NOTE]),
        "mtime_ns": list(cols[MT]), "atime_ns": list(cols[AT]), "ctime_ns": list(cols[CT]),
        "crtime_ns": list(cols[CR]), "flags": list(cols[FLAGS]),
    }


#: the dtypes of the XFS extra columns
EXTRA_DTYPES = dict.fromkeys(("mtime_ns", "atime_ns", "ctime_ns", "crtime_ns", "flags"),
                             "Int64")
