"""The listing: an MFT file's rows (one per name, one per named stream), sorted as
NTFS sorts, and the whole volume from the catalog without reading a directory index.

The rows follow The Sleuth Kit's ``fls -r -p``: metadata files at the root, named $DATA
streams as ``file:stream`` rows right after their file, deleted files in their old
directory, ``/$OrphanFiles`` last. :func:`volume_columns` gives the files() columns for the
whole volume, times straight from the raw FILETIMEs with numpy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..base import DIR, FILE, SYMLINK, Entry
from ..walk import HANDLE, PAYLOAD, Walk, note_entry
from .attributes import FA_ENCRYPTED, MAX_FILETIME, UNIX_EPOCH_US, FileNameAttr, filetime
from .catalog import Info, short_name
from .mft import ATTR_COMPRESSED, ATTR_ENCRYPTED, ATTR_SPARSE
from .recovery import ORPHANS_KEY, name_only, orphan_dir, recoverable
from .wof import WOF_STREAM

if TYPE_CHECKING:
    from .fs import NTFS

TIME_FIELDS = ("created", "modified", "accessed", "changed")
#: the driver's columns, in the order of the ``extra`` dict :func:`entries` makes
EXTRA_KEYS = ("stream", "tsk_addr", "attributes", "reparse_tag", "encrypted", "compressed",
              "sparse", "owner_id", "security_id", "short_name", "sequence",
              "si_created_ft", "si_modified_ft", "si_accessed_ft", "si_changed_ft",
              "fn_created_ft", "fn_modified_ft", "fn_accessed_ft", "fn_changed_ft")


def same(fs: NTFS, a: str, b: str) -> bool:
    """Whether two names are the same name on this volume (compared as NTFS does)."""
    return a == b or fs.fold(a) == fs.fold(b)


def entries(
    fs: NTFS,
    info: Info,
    fn: FileNameAttr | None,
    deleted: bool,
    name: str | None = None,
    short: str | None = None,
    times: bool = True,
    found_by: str | None = None,
    note: str | None = None,
) -> list[Entry]:
    """The rows of one name of a file: the file itself, then its named $DATA streams.

    ``found_by`` defaults to ``mft`` for a deleted file (its record, not an index, names
    it) and ``index`` for a live one; ``note`` says why an unusual row is listed.
    """
    if info.number in fs.rescued:  # its record was found by the FILE record scan
        why = "its MFT record was found by scanning the volume (the $MFT runlist lost it)"
        note = why if note is None else f"{note}; {why}"
        if deleted and found_by is None:
            found_by = "scan"
    if found_by is None:
        found_by = "mft" if deleted else "index"
    si = info.si
    if name is None:
        name = fn.name if fn is not None else f"OrphanFile-{info.number}"
    rp = info.reparse
    kind = DIR if info.is_dir else FILE
    target = None
    if rp is not None and rp.is_link:
        kind = SYMLINK
        target = rp.target
    main = next((d for d in info.data if d[0] == ""), None)
    size = main[1] if main is not None and kind != DIR else 0
    attrs = si.attributes if si is not None else (fn.attributes if fn else 0)
    if si is not None:
        ft = [si.created, si.modified, si.accessed, si.changed]
        times = [filetime(t) for t in ft] if times else [None, None, None, None]
    else:
        ft = times = [None, None, None, None]
    fnt = [fn.created, fn.modified, fn.accessed, fn.changed] if fn is not None else [None] * 4
    encrypted = bool(attrs & FA_ENCRYPTED) or any(d[3] & ATTR_ENCRYPTED for d in info.data)
    can_recover = deleted and recoverable(fs, info)
    if info.is_dir:
        tsk = f"{info.number}-144-{info.i30_id}" if info.i30_id is not None else None
    else:
        tsk = f"{info.number}-128-{main[4]}" if main is not None else None
    extra = dict(
        stream=None,
        tsk_addr=tsk,
        attributes=attrs,
        reparse_tag=rp.tag_name if rp is not None else None,
        encrypted=encrypted,
        compressed=(info.wof or ("lznt1" if main and main[3] & ATTR_COMPRESSED else None)),
        sparse=bool(main and main[3] & ATTR_SPARSE),
        owner_id=si.owner_id if si else None,
        security_id=si.security_id if si else None,
        short_name=short,
        sequence=info.sequence,
        si_created_ft=ft[0],
        si_modified_ft=ft[1],
        si_accessed_ft=ft[2],
        si_changed_ft=ft[3],
        fn_created_ft=fnt[0],
        fn_modified_ft=fnt[1],
        fn_accessed_ft=fnt[2],
        fn_changed_ft=fnt[3],
    )
    e = Entry(
        name=name,
        kind=kind,
        size=size,
        allocated=main[2] if main is not None and kind != DIR else 0,
        created=times[0],
        modified=times[1],
        accessed=times[2],
        changed=times[3],
        inode=info.number,
        links=info.link_count,
        deleted=deleted,
        recoverable=can_recover,
        target=target,
        found_by=found_by,
        note=note,
        key=(info.number, "", info.sequence),
        raw=info,
        extra=extra,
    )
    out = [e]
    for sname, ssize, salloc, sflags, sid in info.data:
        if sname == "" or (info.wof and sname == WOF_STREAM):
            continue
        x = dict(extra)
        x.update(
            stream=sname,
            tsk_addr=f"{info.number}-128-{sid}",
            encrypted=encrypted or bool(sflags & ATTR_ENCRYPTED),
            compressed="lznt1" if sflags & ATTR_COMPRESSED else None,
            sparse=bool(sflags & ATTR_SPARSE),
            reparse_tag=None,
        )
        # a named stream: the file's row with the stream's name, size and key
        out.append(dataclasses.replace(e, name=f"{name}:{sname}", kind=FILE, size=ssize,
                                       allocated=salloc, target=None,
                                       key=(info.number, sname, info.sequence), extra=x))
    return out


def sort_rows(fs: NTFS, rows: list[Entry]) -> list[Entry]:
    """Index (upcase) order, live before deleted; streams stay after their file."""
    groups: list[list[Entry]] = []
    for e in rows:
        if e.extra.get("stream") is not None and groups:
            groups[-1].append(e)
        else:
            groups.append([e])
    fold = fs.fold
    groups.sort(key=lambda g: (g[0].deleted, fold(g[0].name), g[0].name, g[0].inode or 0))
    return [e for g in groups for e in g]


def listed_names(fs: NTFS, rows: list[Entry]) -> list[tuple[int | None, str]]:
    """``(record, name folded by fs.fold)`` of the rows that are files, not named
    streams: what ``slack.slack_rows`` needs of a directory's listing."""
    fold = fs.fold
    return [(e.inode, fold(e.name)) for e in rows if e.extra.get("stream") is None]


def hardlink_key(entry: Entry) -> tuple | None:
    """Live names of one MFT record (each stream on its own) are hard links."""
    if entry.deleted or entry.inode is None or not entry.links or entry.links < 2:
        return None
    return entry.inode, entry.extra.get("stream")


def dir_id(entry: Entry) -> int | tuple:
    """What identifies a directory for loop detection: its MFT record."""
    return entry.inode if entry.inode is not None else entry.key


def walk_volume(fs: NTFS, deleted: bool, times: bool) -> Iterator[Entry]:
    """The whole volume from the catalog, through the one walk (:mod:`..walk`).

    ``times=False`` leaves the datetime fields empty (files() fills its time columns
    from the raw FILETIMEs at once).
    """
    cat = fs.catalog()
    top = fs.root()
    partial: set[int] = set()  # directories with unreadable index bytes (id of the Entry)

    def catalog_children(d: Entry) -> list[Entry]:
        if d.key == ORPHANS_KEY:
            return fs.list_dir(d)
        n = d.inode
        rows: list[Entry] = []
        if not d.deleted:
            for c, fn in cat.live.get(n, []):
                rows += entries(fs, c, fn, deleted=False, short=short_name(c, fn), times=times)
        for c, fn in cat.dead.get(n, []):
            rows += entries(fs, c, fn, deleted=True, short=short_name(c, fn), times=times)
        info = cat.infos.get(n)
        if deleted and not d.deleted and info is not None and info.index_blocks:
            rows += fs.slack_rows(n, listed_names(fs, rows))
        return rows

    def children(dc: tuple) -> list[tuple]:
        d = dc[HANDLE]
        info = cat.infos.get(d.inode) if d.key != ORPHANS_KEY and not d.deleted else None
        if (
            d.inode in cat.virtual
            or id(d) in partial
            or (deleted and info is not None and info.index_blocks and fs.index_slack(d.inode)[1])
        ):
            # part of its index is unreadable (or it has none): list it as the index walk
            # does, so that the rows say which names the index still holds (found_by)
            kids = [k for k in fs.list_dir(d) if k.key != ORPHANS_KEY]
        else:
            kids = catalog_children(d)
        kids = sort_rows(fs, kids)
        if d is top:
            kids.append(orphan_dir())
        prefix = "/" if d.path in ("", "/") else d.path + "/"
        out = []
        for c in kids:
            c.parent = d.path
            c.path = prefix + c.name
            is_dir = c.kind == DIR and c.extra.get("stream") is None and not name_only(c)
            out.append((c.path, is_dir, dir_id(c), c.deleted, c, c))
        return out

    walk = Walk(fs, fs.entry_child(top), children, deleted=deleted,
                listable=fs.entry_listable, damage=fs.entry_damage, note=note_entry,
                on_partial=lambda d, _why: partial.add(id(d[HANDLE])))
    for _d, kids in walk:
        for c in kids:
            yield c[PAYLOAD]


def volume_columns(rows: list[Entry]) -> dict:
    """The files() columns of ``rows`` (made with ``times=False``): the times straight
    from the raw FILETIMEs with numpy, the rest from the Entries."""
    from ...frames import entry_columns

    cols = entry_columns(rows)
    cols.update(time_columns({f"si_{c}_ft": [e.extra.get(f"si_{c}_ft") for e in rows]
                              for c in TIME_FIELDS}))
    return cols


def time_columns(raw: dict) -> dict:
    """The four time columns (datetime64, NaT where absent or out of range) from the
    raw $STANDARD_INFORMATION FILETIME columns ``si_<time>_ft`` of ``raw`` (None: absent)."""
    out = {}
    for c in TIME_FIELDS:
        ft = np.array([v or 0 for v in raw[f"si_{c}_ft"]], dtype=np.uint64)
        bad = (ft == 0) | (ft >= MAX_FILETIME)
        us = np.where(bad, 0, ft).astype(np.int64) // 10 - UNIX_EPOCH_US
        us[bad] = np.iinfo(np.int64).min  # NaT
        out[c] = us.view("datetime64[us]")
    return out
