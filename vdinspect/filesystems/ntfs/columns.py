"""files() of the whole volume as columns, without an Entry or an ``extra`` dict per file.

The walk (:mod:`..walk`) lists each directory as a :class:`~..walk.Batch`: its ordinary
files (a base record with one unnamed $DATA at most, no reparse point, not a directory,
not rescued by the volume scan) become one row tuple each, straight from the catalog's
Info and $FILE_NAME, and the tuples of a directory are moved into per-column lists at
once; everything else (directories, named streams, reparse points, slack and orphan
rows, directories listed through their index) goes through :func:`.listing.entries` and
is read back as columns, so both kinds of row carry the same values.
"""

from __future__ import annotations

from operator import attrgetter
from typing import TYPE_CHECKING

import numpy as np

from ..base import DIR, FILE, Entry
from ..walk import HANDLE, Batch, Walk, note_entry
from .attributes import FA_ENCRYPTED
from .catalog import Info, short_name
from .listing import (
    EXTRA_KEYS,
    TIME_FIELDS,
    dir_id,
    entries,
    sort_rows,
    time_columns,
)
from .mft import ATTR_COMPRESSED, ATTR_ENCRYPTED, ATTR_SPARSE
from .recovery import ORPHANS_KEY, name_only, orphan_dir, recoverable

if TYPE_CHECKING:
    from .attributes import FileNameAttr
    from .fs import NTFS


#: files() columns the rows leave out (NTFS has no mode, uid, gid; times come at the end)
UNSET = ("mode", "uid", "gid", *TIME_FIELDS)


def ordinary(info: Info) -> bool:
    """Whether a file's rows can be made without an Entry: one row, nothing unusual
    (its $DATA streams have distinct names: at most one, the unnamed)."""
    data = info.data
    return (
        not info.is_dir
        and info.reparse is None
        and (not data or (len(data) == 1 and data[0][0] == ""))
    )


def file_row(fs: NTFS, info: Info, fn: FileNameAttr, deleted: bool, path: str,
             parent: str) -> tuple:
    """The row of an ordinary file (:func:`ordinary`), in the order of the columns
    (frames.FILES_DTYPES but UNSET, then EXTRA_KEYS): what ``listing.entries`` gives."""
    si = info.si
    main = info.data[0] if info.data else None
    flags = main[3] if main is not None else 0
    attrs = si.attributes if si is not None else fn.attributes
    encrypted = bool(attrs & FA_ENCRYPTED) or bool(flags & ATTR_ENCRYPTED)
    number = info.number
    return (
        path, fn.name, parent, FILE,
        main[1] if main is not None else 0,
        main[2] if main is not None else 0,
        number, info.link_count, deleted,
        deleted and recoverable(fs, info),
        None, "mft" if deleted else "index", None,
        # EXTRA_KEYS
        None,
        f"{number}-128-{main[4]}" if main is not None else None,
        attrs, None, encrypted,
        "lznt1" if flags & ATTR_COMPRESSED else None,
        bool(flags & ATTR_SPARSE),
        si.owner_id if si is not None else None,
        si.security_id if si is not None else None,
        short_name(info, fn),
        info.sequence,
        si.created if si is not None else None,
        si.modified if si is not None else None,
        si.accessed if si is not None else None,
        si.changed if si is not None else None,
        fn.created, fn.modified, fn.accessed, fn.changed,
    )


def volume_columns(fs: NTFS, deleted: bool) -> dict:
    """The ``files()`` columns of the whole volume (not ``damaged``), as
    ``listing.volume_columns(list(listing.walk_volume(...)))`` gives them."""
    from ...frames import FILES_DTYPES

    cat = fs.catalog()
    top = fs.root()
    rescued = fs.rescued
    fold = fs.fold
    # mode, uid, gid: never set on NTFS; the times: made from the raw FILETIMEs at the end
    names = [c for c in FILES_DTYPES if c not in UNSET]
    base = attrgetter(*names)
    nbase = len(names)
    acc: list[list] = [[] for _ in range(nbase + len(EXTRA_KEYS))]
    order: dict[str, None] = {}  # extra keys in order of first appearance (entry_columns)
    others: dict[str, dict[int, object]] = {}  # extra keys past EXTRA_KEYS: row -> value
    dirs: list[tuple[int, Entry]] = []  # rows of directories: the walk may note them later
    partial: set[int] = set()
    nrows = 0
    full = False  # whether an ordinary row (all of EXTRA_KEYS) has been made

    def entry_row(e: Entry, row: int) -> tuple:
        x = e.extra
        if x.keys() != order.keys():
            order.update(dict.fromkeys(x))
        for k in x:
            if k not in EXTRA_KEYS:
                others.setdefault(k, {})[row] = x[k]
        return base(e) + tuple(map(x.get, EXTRA_KEYS))

    def groups_of(d: Entry) -> list[tuple[tuple, object]]:
        """The directory's rows to sort: (key, (info, fn, deleted)) or (key, [Entry...])."""
        n = d.inode
        info = cat.infos.get(n)
        out: list[tuple[tuple, object]] = []
        listed: list[tuple[int, str]] = []
        for group, dead in ((() if d.deleted else cat.live.get(n, ())), False), (
            cat.dead.get(n, ()), True
        ):
            for c, fn in group:
                name = fn.name
                folded = fold(name)
                listed.append((c.number, folded))
                if ordinary(c) and c.number not in rescued:
                    out.append(((dead, folded, name, c.number), (c, fn, dead)))
                else:
                    rows = entries(fs, c, fn, deleted=dead, short=short_name(c, fn),
                                   times=False)
                    out.append(((dead, folded, name, c.number), rows))
        if deleted and not d.deleted and info is not None and info.index_blocks:
            for e in fs.slack_rows(n, listed):
                out.append(((e.deleted, fold(e.name), e.name, e.inode or 0), [e]))
        out.sort(key=lambda g: g[0])
        return out

    def children(dc: tuple) -> Batch:
        nonlocal nrows, full
        d = dc[HANDLE]
        info = cat.infos.get(d.inode) if d.key != ORPHANS_KEY and not d.deleted else None
        if d.key == ORPHANS_KEY:
            groups = [(None, e) for e in sort_rows(fs, fs.list_dir(d))]
        elif (
            d.inode in cat.virtual
            or id(d) in partial
            or (deleted and info is not None and info.index_blocks and fs.index_slack(d.inode)[1])
        ):
            # part of its index is unreadable (or it has none): listed as the index walk
            # does (listing.walk_volume has the reasons)
            kids = [k for k in fs.list_dir(d) if k.key != ORPHANS_KEY]
            groups = [(None, e) for e in sort_rows(fs, kids)]
        else:
            groups = groups_of(d)
        if d is top:
            groups.append((None, orphan_dir()))
        dpath = d.path
        prefix = "/" if dpath in ("", "/") else dpath + "/"
        rows: list[tuple] = []
        subdirs: list = []
        for _key, g in groups:
            if type(g) is tuple:
                c, fn, dead = g
                if dead and not deleted:
                    continue
                if not full:  # the first ordinary row: its keys, as entry_row does
                    order.update(dict.fromkeys(EXTRA_KEYS))
                    full = True
                rows.append(file_row(fs, c, fn, dead, prefix + fn.name, dpath))
                continue
            for e in (g if type(g) is list else (g,)):
                if e.deleted and not deleted:
                    continue
                e.parent = dpath
                e.path = prefix + e.name
                i = len(rows)
                rows.append(entry_row(e, nrows + i))
                if e.kind == DIR and e.extra.get("stream") is None and not name_only(e):
                    subdirs.append((i, (e.path, True, dir_id(e), e.deleted, e, e)))
                    dirs.append((nrows + i, e))
        if rows:
            for col, vals in zip(acc, zip(*rows)):
                col.extend(vals)
        nrows += len(rows)
        return Batch(len(rows), subdirs, None)

    walk = Walk(fs, fs.entry_child(top), children, deleted=deleted,
                listable=fs.entry_listable, damage=fs.entry_damage, note=note_entry,
                on_partial=lambda d, _why: partial.add(id(d[HANDLE])))
    for _d, _kids in walk:
        pass
    note = acc[names.index("note")]
    for row, e in dirs:  # notes the walk put on directories after their rows were made
        note[row] = e.note
    cols = dict(zip(names, acc))
    extras = dict(zip(EXTRA_KEYS, acc[nbase:]))
    for k in order:
        cols[k] = extras[k] if k in extras else [others[k].get(i) for i in range(nrows)]
    cols.update(time_columns(extras))
    for k in INT_COLUMNS:
        if k in cols:
            cols[k] = int_column(cols[k])
    return cols


#: columns of whole numbers (None: absent): given to the frame as masked int64 arrays
INT_COLUMNS = ("allocated", "inode", "links", "attributes", "owner_id", "security_id",
               "sequence", *(f"{w}_{c}_ft" for w in ("si", "fn") for c in TIME_FIELDS))


def int_column(values: list) -> list | np.ma.MaskedArray:
    """A column of ints or None as a masked int64 array (what the frame makes of it, at C
    speed); unchanged when no value is present or one is past int64 (the frame decides)."""
    obj = np.array(values, dtype=object)
    mask = obj == None  # noqa: E711 (elementwise)
    if mask.all():
        return values
    obj[mask] = 0
    try:
        data = obj.astype(np.int64)
    except (TypeError, OverflowError, ValueError):
        return values
    return np.ma.MaskedArray(data, mask)
