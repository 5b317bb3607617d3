"""The ``files()`` frame of an XFS volume, built column-wise.

The walk is the one of :mod:`..walk` (same order and rules as every listing). Live
files and directories whose inodes decode in bulk (:func:`.bulk.live_values`) are kept
as columns: per directory, one block of inode values and the names; their children carry
a row number (0 and up) as payload. Everything else (removed names, orphans, symlinks,
special files, odd inodes) goes through the driver's Entry path and becomes a row tuple
(payload: -1 and down). The two are merged into the frame's columns in walk order by
``frames.merge_columns``.
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING

import numpy as np

from ...frames import merge_columns
from ..base import DIR, FILE, Entry
from ..entry import decode_names
from ..walk import HANDLE, IDENT, PATH, PAYLOAD, Batch, Walk
from .bulk import S_IFDIR, S_IFMT, live_values
from .inode import Inode
from .replay import LOG_NOTE

if TYPE_CHECKING:
    from .dirs import Dirents
    from .fs import XfsFileSystem

NAT = np.iinfo(np.int64).min
# tuple layout of a row
(ROW_PATH, NAME, PARENT, KIND, SIZE, ALLOC, MODE, UID, GID, CR, MT, AT, CT, INO, LINKS, DELETED,
 RECOVERABLE, TARGET, FLAGS, NOTE, FOUND_BY) = range(21)


#: the text columns (lists; the others are numpy arrays)
_TEXT = ("path", "name", "parent", "kind", "target", "found_by", "note")


class Rows:
    """The rows of one walk as they are made: bulk rows (blocks of :func:`.bulk.decode`
    values with their paths, names and parents) and Entry rows (tuples)."""

    def __init__(self) -> None:
        self.blocks: list[np.ndarray] = []
        self.paths: list[str] = []
        self.names: list[str] = []
        self.parents: list[str] = []
        self.journal: list[int] = []  # bulk rows whose name only the log replay put there
        self.tuples: list[tuple] = []

    def entry_row(self, fs: XfsFileSystem, e: Entry, handle) -> tuple:
        """The walk's child of an Entry row (its payload: -1 and down)."""
        self.tuples.append(_row_of_entry(e))
        return _child(fs, e, handle, -len(self.tuples))


def _join(parent: str, name: str) -> str:
    return ("/" if parent in ("", "/") else parent + "/") + name


def _row_of_entry(e: Entry) -> tuple:
    x = e.extra
    return (e.path, e.name, e.parent, e.kind, e.size, e.allocated, e.mode, e.uid, e.gid,
            x.get("crtime_ns"), x.get("mtime_ns"), x.get("atime_ns"), x.get("ctime_ns"),
            e.inode, e.links, e.deleted, e.recoverable, e.target, x.get("flags"), e.note,
            e.found_by)


def walk_columns(fs: XfsFileSystem, top: Entry, recursive: bool, deleted: bool) -> dict:
    """The files() columns (:func:`rows_columns`) of the rows below directory ``top``,
    through the one walk (:mod:`..walk`)."""
    start = top.raw if (isinstance(top.raw, Inode) and not top.deleted
                        and top.key != ("orphans",)) else top
    ident = start.number if isinstance(start, Inode) else fs.dir_id(top)
    rows = Rows()
    order: list[np.ndarray] = []  # each listing's payloads

    def damage(d) -> int:  # a directory read from its inode (nothing lost silently)
        h = d[HANDLE]
        if not isinstance(h, int | Inode):
            return 0
        return fs.directory_damage(Entry(name="", kind=DIR, path=d[PATH] or "/",
                                         inode=d[IDENT], key=d[IDENT]))

    walk = Walk(fs, (top.path, True, ident, top.deleted, start, None),
                lambda d: _children(fs, rows, d[HANDLE], d[PATH]), recursive=recursive,
                deleted=deleted, listable=lambda c: fs.can_list_deleted(c[HANDLE]),
                damage=damage)
    payload = itemgetter(PAYLOAD)
    for _d, kids in walk:
        if isinstance(kids, Batch):  # bulk rows first.. first + size - 1, in order
            first = kids.columns
            order.append(np.arange(first, first + kids.size, dtype=np.int64))
        else:
            order.append(np.fromiter(map(payload, kids), dtype=np.int64))
    cols = _columns(fs, rows, np.concatenate(order) if order else np.zeros(0, np.int64),
                    top.path)
    if walk.notes:
        col = cols["note"]
        for at, why in walk.notes.items():
            col[at] = why if not col[at] else f"{col[at]}; {why}"
    return cols


def _columns(fs: XfsFileSystem, rows: Rows, order: np.ndarray, top: str) -> dict:
    """The columns of the walk's rows, ``order`` holding each row's payload (``top``: the
    path of the directory walked)."""
    bulk = order >= 0
    if bulk.all():
        cols = _bulk_columns(fs, rows, order)
    elif not bulk.any():
        cols = rows_columns([rows.tuples[-1 - i] for i in order.tolist()])
    else:  # numbers merged by numpy, text spliced as lists (cheaper than object arrays)
        tuples = [rows.tuples[-1 - i] for i in order[~bulk].tolist()]
        at = np.flatnonzero(~bulk).tolist()
        try:
            cols = _merged_columns(fs, rows, order, bulk, tuples, at)
        except (TypeError, OverflowError, ValueError):  # a value no int64 holds
            a = _bulk_columns(fs, rows, order[bulk])
            b = rows_columns(tuples)
            nums = merge_columns(bulk, {k: v for k, v in a.items() if k not in _TEXT},
                                 {k: v for k, v in b.items() if k not in _TEXT})
            cols = {k: _splice(a[k], b[k], at) if k in _TEXT else nums[k] for k in a}
    # every path is a listed directory's path (the top's, or made of names) and a name:
    # when the names and the top's path are all UTF-8, so are the paths and parents
    clean = _is_utf8(cols["name"]) and _is_utf8([top])
    for k in ("target",) if clean else ("path", "name", "parent", "target"):
        cols[k] = _strings(cols[k])
    return cols


def _is_utf8(vals) -> bool:
    """Whether every text of ``vals`` (None skipped) encodes as UTF-8 (no surrogates)."""
    try:
        "".join(filter(None, vals)).encode("utf-8")  # None and "" add nothing
        return True
    except UnicodeEncodeError:
        return False


#: the tuple fields of an Entry row that are the 12 values of :func:`.bulk.decode`
_VALUE_FIELDS = (SIZE, ALLOC, MODE, UID, GID, CR, MT, AT, CT, INO, LINKS, FLAGS)


def _in_order(rows: Rows, at: np.ndarray) -> bool:
    """Whether ``at`` numbers every bulk row in the order made (a whole listing's case)."""
    n = len(at)
    return n == len(rows.paths) and (n == 0 or (int(at[0]) == 0 and bool(
        (np.diff(at) == 1).all())))


def _bulk_values(rows: Rows, at: np.ndarray) -> np.ndarray:
    """The (n, 12) values of the bulk rows numbered ``at``, in that order."""
    v = np.concatenate(rows.blocks) if rows.blocks else np.zeros((0, 12), np.int64)
    return v if _in_order(rows, at) else v[at]


def _merged_columns(fs: XfsFileSystem, rows: Rows, order: np.ndarray, bulk: np.ndarray,
                    tuples: list[tuple], at: list[int]) -> dict:
    """The columns of bulk rows and Entry rows (``tuples``, at rows ``at``) together: the
    numbers as one (n, 12) block of values and one of NA flags (raises OverflowError for
    a value no int64 holds)."""
    n = len(order)
    vals = np.empty((n, 12), dtype=np.int64)
    vals[bulk] = _bulk_values(rows, order[bulk])
    missing = np.zeros((n, 12), dtype=bool)
    ent = [[t[f] for f in _VALUE_FIELDS] for t in tuples]
    gone = np.array([[v is None for v in r] for r in ent], dtype=bool).reshape(-1, 12)
    vals[~bulk] = np.array([[0 if v is None else v for v in r] for r in ent],
                           dtype=np.int64).reshape(-1, 12)
    missing[~bulk] = gone
    if not fs.geo.crc:
        missing[bulk, 5] = True  # no creation time before v5
    a = _bulk_columns(fs, rows, order[bulk], vals[bulk])

    def num(j: int):
        m = missing[:, j]
        return np.ma.MaskedArray(vals[:, j], m) if m.any() else vals[:, j].copy()

    def when(j: int):
        t = vals[:, j].copy()
        t[missing[:, j]] = NAT
        return t.view("datetime64[ns]")

    b_deleted = np.fromiter((t[DELETED] for t in tuples), dtype=bool, count=len(tuples))
    b_recov = np.fromiter((t[RECOVERABLE] for t in tuples), dtype=bool, count=len(tuples))
    deleted = np.zeros(n, dtype=bool)
    recoverable = np.zeros(n, dtype=bool)
    deleted[~bulk] = b_deleted
    recoverable[~bulk] = b_recov
    text = {"path": ROW_PATH, "name": NAME, "parent": PARENT, "kind": KIND, "target": TARGET,
            "found_by": FOUND_BY, "note": NOTE}
    cols = {k: _splice(a[k], [t[f] for t in tuples], at) for k, f in text.items()}
    cols.update({
        "size": vals[:, 0].copy(), "allocated": num(1), "mode": num(2), "uid": num(3),
        "gid": num(4), "created": when(5), "modified": when(6), "accessed": when(7),
        "changed": when(8), "inode": num(9), "links": num(10), "deleted": deleted,
        "recoverable": recoverable, "mtime_ns": num(6), "atime_ns": num(7),
        "ctime_ns": num(8), "crtime_ns": num(5), "flags": num(11)})
    return {k: cols[k] for k in a}  # in the columns' order


def _splice(a: list, b: list, at: list[int]) -> list:
    """List ``a`` with the items of ``b`` put at positions ``at`` (ascending) of the
    result."""
    out: list = []
    i = 0
    for pos, v in zip(at, b):
        take = pos - len(out)
        out += a[i:i + take]
        i += take
        out.append(v)
    out += a[i:]
    return out


def _bulk_columns(fs: XfsFileSystem, rows: Rows, at: np.ndarray,
                  vals: np.ndarray | None = None) -> dict:
    """The columns of the bulk rows numbered ``at``, in that order (given their ``vals``:
    the text columns only, with the numbers' names as keys in order)."""
    n = len(at)
    v = _bulk_values(rows, at) if vals is None else vals
    note: list = [None] * n
    found = ["index"] * n
    if rows.journal:
        for i in np.flatnonzero(np.isin(at, rows.journal)).tolist():
            note[i], found[i] = LOG_NOTE, "journal"
    kind = [FILE] * n  # one shared str per row, the directories' put in after
    for i in np.flatnonzero((v[:, 2] & S_IFMT) == S_IFDIR).tolist():
        kind[i] = DIR
    if _in_order(rows, at):  # the lists as they are
        path, name, parent = rows.paths, rows.names, rows.parents
    else:
        idx = at.tolist()
        path = [rows.paths[i] for i in idx]
        name = [rows.names[i] for i in idx]
        parent = [rows.parents[i] for i in idx]
    if vals is not None:
        return {"path": path, "name": name, "parent": parent, "kind": kind, "size": None,
                "allocated": None, "mode": None, "uid": None, "gid": None, "created": None,
                "modified": None, "accessed": None, "changed": None, "inode": None,
                "links": None, "deleted": None, "recoverable": None, "target": [None] * n,
                "found_by": found, "note": note, "mtime_ns": None, "atime_ns": None,
                "ctime_ns": None, "crtime_ns": None, "flags": None}
    none = np.zeros(n, dtype=bool)
    cr = np.ma.MaskedArray(v[:, 5], np.full(n, not fs.geo.crc))  # no crtime before v5
    created = v[:, 5].copy() if fs.geo.crc else np.full(n, NAT, dtype=np.int64)
    return {
        "path": path, "name": name, "parent": parent, "kind": kind, "size": v[:, 0],
        "allocated": v[:, 1], "mode": v[:, 2], "uid": v[:, 3], "gid": v[:, 4],
        "created": created.view("datetime64[ns]"),
        "modified": v[:, 6].view("datetime64[ns]"),
        "accessed": v[:, 7].view("datetime64[ns]"),
        "changed": v[:, 8].view("datetime64[ns]"), "inode": v[:, 9], "links": v[:, 10],
        "deleted": none, "recoverable": none.copy(), "target": [None] * n, "found_by": found,
        "note": note, "mtime_ns": v[:, 6], "atime_ns": v[:, 7], "ctime_ns": v[:, 8],
        "crtime_ns": cr, "flags": v[:, 11],
    }


def column_entries(cols: dict) -> list[Entry]:
    """The rows of ``files()`` columns as Entries (name, kind, path, parent, inode,
    deleted, recoverable): what the ``damaged`` column needs."""
    ino = cols["inode"]
    ino = ino.tolist() if isinstance(ino, np.ndarray) else list(ino)
    return [Entry(name=nm, kind=k, path=p, parent=par, inode=i, key=i, deleted=d,
                  recoverable=r)
            for p, nm, par, k, i, d, r in zip(
                cols["path"], cols["name"], cols["parent"], cols["kind"], ino,
                np.asarray(cols["deleted"]).tolist(), np.asarray(cols["recoverable"]).tolist())]


def _child(fs: XfsFileSystem, e: Entry, handle, payload: int) -> tuple:
    """An Entry as a child of the walk: directories carry their inode (or Entry) handle."""
    if e.kind != DIR:
        return (e.path, False, None, e.deleted, None, payload)
    ident = e.inode if isinstance(handle, int | Inode) else fs.dir_id(handle)
    return (e.path, True, ident, e.deleted, handle, payload)


def _bulk_children(rows: Rows, raws: Dirents, vals: np.ndarray, first: int, dpath: str
                   ) -> Batch:
    """The listing of a directory whose entries are all bulk rows (the common case): its
    rows kept in ``rows`` as columns, the walk handed a :class:`~..walk.Batch` (columns:
    the first row's number) with a Child for each subdirectory only."""
    prefix = "/" if dpath in ("", "/") else dpath + "/"
    names = decode_names(raws.names)
    paths = [prefix + nm for nm in names]
    n = len(paths)
    fts = raws.ftypes  # each 0 or the inode's type (live_values checked): 2 a directory
    if 2 in fts or 0 in fts:
        isdir = (vals[:, 2] & S_IFMT) == S_IFDIR
        subdirs = [(k, (paths[k], True, i, False, i, first + k)) for k, i in zip(
            np.flatnonzero(isdir).tolist(), vals[isdir, 9].tolist())]
    else:  # files only (a folder of files: no numpy call)
        subdirs = []
    if n:
        rows.blocks.append(vals)
        rows.paths += paths
        rows.names += names
        rows.parents += [dpath] * n
    return Batch(n, subdirs, first)


def _children(fs: XfsFileSystem, rows: Rows, d, dpath: str) -> list[tuple] | Batch:
    """The walk's children of a directory: the handle is the inode number of a bulk
    directory row (or the Inode itself), else the Entry."""
    if isinstance(d, int):
        d = fs.inode(d)
    if isinstance(d, Inode):
        raws = fs.dir_entries(d)
        keep, vals = live_values(fs, raws, fs.inode_table)
        new = fs.log_new_names(d, raws)
        first = len(rows.paths)
        if len(keep) == len(raws) and not new and not (d.number == fs.geo.rootino
                                                        and dpath == "/"):
            return _bulk_children(rows, raws, vals, first, dpath)
        slot: list = [None] * len(raws)
        for j, i in enumerate(keep.tolist()):
            slot[i] = j
        dirs = ((vals[:, 2] & S_IFMT) == S_IFDIR).tolist()
        inos = vals[:, 9].tolist()
        prefix = "/" if dpath in ("", "/") else dpath + "/"
        paths: list[str] = []  # kept only once the whole directory is read
        names: list[str] = []
        journal: list[int] = []
        out = []
        for raw, j in zip(raws, slot):
            if j is not None:
                name = raw.name.decode("utf-8", "surrogateescape")
                path = prefix + name
                paths.append(path)
                names.append(name)
                if new and raw.name in new:  # a name only the log replay put there
                    journal.append(first + j)
                if dirs[j]:
                    out.append((path, True, inos[j], False, inos[j], first + j))
                else:
                    out.append((path, False, None, False, None, first + j))
                continue
            e = fs.entry_of(raw, listing=True)
            e.parent, e.path = dpath, _join(dpath, e.name)
            if not raw.deleted and raw.name in new:
                e.found_by, e.note = "journal", LOG_NOTE
            out.append(rows.entry_row(fs, e, e))
        if len(keep):
            rows.blocks.append(vals)
            rows.paths += paths
            rows.names += names
            rows.parents += [dpath] * len(keep)
            rows.journal += journal
        if d.number == fs.geo.rootino and dpath == "/":
            e = fs.orphan_dir_entry()
            e.parent, e.path = dpath, _join(dpath, e.name)
            out.append(rows.entry_row(fs, e, e))
        return out
    out = []
    for e in fs.list_dir(d):
        e.parent, e.path = dpath, _join(dpath, e.name)
        handle = e.raw if (isinstance(e.raw, Inode) and not e.deleted and e.kind == DIR
                           and e.key != ("orphans",)) else e
        out.append(rows.entry_row(fs, e, handle))
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


def _strings(vals) -> list:
    """A text column as the frame shows it (:func:`frame_text`)."""
    if _is_utf8(vals):
        return list(vals)
    return [frame_text(v) for v in vals]  # names that are not UTF-8: shown as \xNN escapes


def rows_columns(rows: list[tuple]) -> dict:
    """The files() columns of the rows (FILES_COLUMNS, then mtime_ns..crtime_ns, flags);
    times in nanoseconds, as the inodes keep them."""
    n = len(rows)
    cols = list(zip(*rows)) if n else [()] * 21

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
        "path": _strings(cols[ROW_PATH]), "name": _strings(cols[NAME]),
        "parent": _strings(cols[PARENT]), "kind": list(cols[KIND]),
        "size": np.fromiter(cols[SIZE], dtype=np.int64, count=n),
        "allocated": ints(cols[ALLOC]), "mode": ints(cols[MODE]), "uid": ints(cols[UID]),
        "gid": ints(cols[GID]), "created": times(cols[CR]), "modified": times(cols[MT]),
        "accessed": times(cols[AT]), "changed": times(cols[CT]), "inode": ints(cols[INO]),
        "links": ints(cols[LINKS]),
        "deleted": np.fromiter(cols[DELETED], dtype=bool, count=n),
        "recoverable": np.fromiter(cols[RECOVERABLE], dtype=bool, count=n),
        "target": _strings(cols[TARGET]), "found_by": list(cols[FOUND_BY]),
        "note": list(cols[NOTE]),
        "mtime_ns": ints(cols[MT]), "atime_ns": ints(cols[AT]), "ctime_ns": ints(cols[CT]),
        "crtime_ns": ints(cols[CR]), "flags": ints(cols[FLAGS]),
    }


#: the dtypes of the XFS extra columns
EXTRA_DTYPES = dict.fromkeys(("mtime_ns", "atime_ns", "ctime_ns", "crtime_ns", "flags"),
                             "Int64")
