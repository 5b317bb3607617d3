"""The FileSystem protocol every filesystem driver implements, and what they share.

A driver subclasses :class:`FileSystem` and implements four things: ``root()``,
``list_dir(entry)`` (live and deleted children), ``content(entry)`` (the file's bytes as a
ByteSource) and, for symlinks, ``readlink_entry(entry)``. Path lookup, walking, the
``files()`` DataFrame, streaming file objects and safe extraction live here once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, TypeVar

from ..errors import CorruptImage, InvalidArgument, NotFound, VDInspectError
from ..findings import Findings
from ..io import ByteSource
from ..progress import Progress
from ..schemas import FILES_COLUMNS  # noqa: F401 (re-exported for drivers)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from matplotlib.axes import Axes

    from ..recovery.carve import CarveResult

from .entry import (  # noqa: F401 (re-exported: drivers import these from here)
    DIR,
    FILE,
    MAX_DEPTH,
    MAX_PATH,
    OTHER,
    SYMLINK,
    Entry,
    join_path,
    mode_kind,
)
from .extract import Extractor, ExtractReport, damage_text, safe_name  # noqa: F401
from .reader import FileReader  # noqa: F401
from .walk import HANDLE, PAYLOAD, Child, Walk, note_entry

R = TypeVar("R")  # an inode record type (inode_record)


class FileSystem(Findings):
    """Base class of the filesystem drivers (FAT, exFAT, ext, NTFS).

    ``case_sensitive`` says how ``lookup`` compares names. Subclasses set ``fstype``
    (e.g. "fat32") and ``label``/``uuid`` when they have them.
    """

    fstype: str = "?"
    case_sensitive: bool = True
    label: str | None = None
    uuid: str | None = None
    checks_run: bool = False  # run_checks() has been run (check() runs it once)
    #: the allocation unit in bytes (FAT/exFAT/NTFS cluster, ext/XFS block) where the
    #: driver says; carving aligns its search to it. None: not said (searched per sector)
    block_size: int | None = None
    #: ``column_batches(path, *, recursive, deleted, rows)``: the rows of ``files()``
    #: streamed as columns a run of directories at a time, where the driver has such a
    #: walk (ext, NTFS); None: listings go through the Entry walk
    column_batches: Callable[..., Iterator[tuple[dict, dict]]] | None = None

    def __init__(self, source: ByteSource, *, name: str | None = None, strict: bool = True):
        self.source = source
        self.name = name or source.name
        self.strict = strict

    # --- what a driver provides ----------------------------------------------------
    def root(self) -> Entry:
        """The root directory's entry (path "/")."""
        raise NotImplementedError

    def list_dir(self, entry: Entry) -> list[Entry]:
        """The children of a directory, deleted ones included (``deleted=True``).

        Leave out "." and "..". ``path`` and ``parent`` are filled in by the caller.
        """
        raise NotImplementedError

    def content(self, entry: Entry) -> ByteSource:
        """The bytes of a file (or a deleted file's recoverable bytes) as a ByteSource."""
        raise NotImplementedError

    def readlink_entry(self, entry: Entry) -> str:
        """The target of a symbolic link."""
        if entry.target is not None:
            return entry.target
        raise InvalidArgument(f"{self.name}: {entry.path} is not a symbolic link")

    def xattrs(self, path: str | Entry) -> dict[str, bytes]:
        """Extended attributes of a file, name -> value ({} where the filesystem has none:
        FAT, exFAT; NTFS keeps named streams instead, listed by ``files()`` as path:stream)."""
        if isinstance(path, str):
            self.lookup(path)  # NotFound for a file that is not there
        return {}

    def free_ranges(self) -> list[tuple[int, int]]:
        """(offset, length) byte ranges of the volume its allocation map marks free: where a
        deleted file's data may still lie, and all that ``carve()`` reads. A driver without
        such a map answers the whole volume, with a finding saying so."""
        self.finding("info", "allocation map", None, f"{self.fstype}: which clusters are "
                     "free is not known here; the whole volume is searched")
        return [(0, self.source.size)] if self.source.size else []

    def carve(self, dest: str | os.PathLike | None = None, **kw) -> CarveResult:
        """Files found by their content in the volume's free space (a CarveResult: its
        ``frame()`` lists them, and with ``dest`` they are written there); see
        :func:`vdinspect.recovery.carve.carve_filesystem` for the options."""
        from ..recovery.carve import carve_filesystem

        return carve_filesystem(self, dest, **kw)

    def info_fields(self) -> dict:
        """The volume's facts as a dict; drivers extend it (``info()`` shows it)."""
        return dict(fstype=self.fstype, label=self.label, uuid=self.uuid)

    def run_checks(self) -> None:
        """The volume-wide checks ``check()`` adds to what reading found (its findings);
        drivers override it. Run once, on the first ``check()``."""

    def check_rows(self) -> list[dict]:
        """Findings as rows (severity, structure, host_offset, message): what reading met,
        after ``run_checks()`` (once)."""
        if not self.checks_run:
            self.checks_run = True
            self.run_checks()
        return self.findings_rows()

    def structure_rows(self) -> list[dict]:
        """On-disk structures as rows (name, host_offset, length, description)."""
        return []

    def info(self) -> pd.Series:
        """Facts about the volume: ``fstype, label, uuid, size`` (bytes), ``block_size``
        (bytes), ``dirty`` first, as every filesystem names them, then its own."""
        from ..frames import fs_info_series

        return fs_info_series(self.info_fields())

    def check(self) -> pd.DataFrame:
        """Integrity findings, in the ``check()`` schema (empty for a sound volume)."""
        from ..frames import check_frame

        return check_frame(self.check_rows())

    def structures(self) -> pd.DataFrame:
        """Where each on-disk structure lies, in the ``structures()`` schema."""
        from ..frames import structures_frame

        return structures_frame(self.structure_rows())

    # --- paths ----------------------------------------------------------------------
    def same_name(self, a: str, b: str) -> bool:
        """Whether two names are one name on this volume (``case_sensitive``; drivers
        with their own folding override it)."""
        if self.case_sensitive:
            return a == b
        return a.casefold() == b.casefold()

    def lookup(self, path: str, *, deleted: bool = False) -> Entry:
        """The entry at a POSIX-style path from the volume root (live entries first)."""
        if not isinstance(path, str):
            raise InvalidArgument(f"path must be a str, not {type(path).__name__}")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        entry = self.root()
        entry.path, entry.parent = "/", ""
        for i, part in enumerate(parts):
            if part == "..":
                raise InvalidArgument(f"{self.name}: '..' is not allowed in {path!r}")
            if entry.kind != DIR:
                raise NotFound(f"{self.name}: {'/' + '/'.join(parts[:i])} is not a directory")
            children = self.list_dir(entry)
            live = [c for c in children if not c.deleted and self.same_name(c.name, part)]
            dead = [c for c in children if c.deleted and self.same_name(c.name, part)]
            exact = [c for c in live if c.name == part]
            pick = (exact or live or (dead if deleted else []))
            if not pick:
                raise NotFound(f"{self.name}: no such file or directory: {path}")
            child = pick[0]
            child.parent = entry.path
            child.path = join_path(entry.path, child.name)
            entry = child
        return entry

    def as_entry(self, path: str | Entry, *, deleted: bool = True) -> Entry:
        """The Entry a method was given, or the one at a path (deleted ones too, unless
        ``deleted=False``): every method taking a file accepts either."""
        return path if isinstance(path, Entry) else self.lookup(path, deleted=deleted)

    def path_of(self, path: str | Entry) -> str:
        """The volume path a method was given, or its Entry's (one ``lookup`` or a listing
        gave, whose ``path`` is filled in)."""
        if not isinstance(path, Entry):
            return path
        if not path.path:
            raise InvalidArgument(f"{self.name}: the entry {path.name!r} has no path "
                                  "(take it from lookup() or a listing)")
        return path.path

    def stat(self, path: str | Entry) -> Entry:
        """The entry at ``path`` (its ``row()`` is one row of ``files()``)."""
        return self.as_entry(path)

    def readlink(self, path: str | Entry) -> str:
        """The target of the symbolic link at ``path``."""
        return self.readlink_entry(self.as_entry(path, deleted=False))

    # --- walking --------------------------------------------------------------------
    def iter_entries(self, path: str = "/", *, recursive: bool = True,
                     deleted: bool = True) -> Iterator[Entry]:
        """Every entry below ``path`` (depth first), with ``path``/``parent`` filled in.

        Directory loops (an entry naming a directory already on the way down) are
        reported as findings and not followed.
        """
        for e, _ in self.walk_entries(path, recursive=recursive, deleted=deleted):
            yield e

    def walk_entries(self, path: str = "/", *, recursive: bool = True, deleted: bool = True,
                     on_skip=None, on_partial=None) -> Iterator[tuple[Entry, Entry | None]]:
        """``iter_entries`` as (entry, parent entry) pairs, through the one walk
        (:mod:`.walk`); ``on_skip(entry, reason)`` hears of every directory not listed
        (loops, too deep, unreadable), ``on_partial(entry, reason)`` of every directory
        listed only in part (some of its bytes unreadable)."""
        top = self.lookup(path, deleted=deleted)
        if top.kind != DIR:
            yield top, None
            return

        def each(cb):
            return None if cb is None else (lambda c, why: cb(c[PAYLOAD], why))

        walk = Walk(self, self.entry_child(top), self.entry_children, recursive=recursive,
                    deleted=deleted, listable=self.entry_listable, damage=self.entry_damage,
                    note=note_entry, on_skip=each(on_skip), on_partial=each(on_partial))
        for d, kids in walk:
            parent = d[PAYLOAD]
            for c in kids:
                yield c[PAYLOAD], parent

    # --- the walk's protocol: what a driver may override ----------------------------
    def entry_child(self, e: Entry) -> Child:
        """An Entry as a child record of the walk (:mod:`.walk`): handle and payload are
        the Entry itself."""
        return (e.path, e.kind == DIR, self.dir_id(e), e.deleted, e, e)

    def entry_children(self, d: Child) -> Iterator[Child]:
        """The walk's listing of a directory whose handle is an Entry: ``list_dir`` (asked
        at once, so that its errors are the walk's; taken lazily), with ``path`` and
        ``parent`` filled in."""
        parent = d[HANDLE]
        kids = self.list_dir(parent)
        dpath = parent.path
        prefix = "/" if dpath in ("", "/") else dpath + "/"
        dir_id = self.dir_id

        def each() -> Iterator[Child]:
            for c in kids:
                c.parent = dpath
                c.path = prefix + c.name
                yield (c.path, c.kind == DIR, dir_id(c), c.deleted, c, c)
        return each()

    def entry_listable(self, c: Child) -> bool:
        """Whether the walk may list a deleted directory whose handle is an Entry."""
        return self.can_list_deleted_dir(c[HANDLE])

    def entry_damage(self, d: Child) -> int:
        """Bytes of a directory (handle: an Entry) that could not be read."""
        return self.directory_damage(d[HANDLE])

    def hardlink_key(self, entry: Entry) -> Hashable | None:
        """What makes two file entries names of one file (extraction links them), or None.
        Drivers with hard links override it; the default links nothing."""
        return None

    def dir_id(self, entry: Entry) -> Hashable | None:
        """What identifies a directory for the walk's loop and hard-link checks (its inode
        by default); None: not checked."""
        return entry.inode if entry.inode is not None else entry.key

    def probed_listing(self, entry: Entry, children: Callable[[], list[Entry]]
                       ) -> list[Entry]:
        """``children()`` of a directory; a deleted one is listed while probing (its
        problems raise, even in salvage mode) and lists nothing when its bytes are not a
        directory any more."""
        if not entry.deleted:
            return children()
        try:
            with self.probing():
                return children()
        except CorruptImage:
            return []

    def fill_target(self, e: Entry, read: Callable[[], str | None],
                    errors: type[Exception] | tuple = VDInspectError) -> None:
        """A symlink Entry's ``target`` from ``read()``; a target that cannot be read
        (``errors``) raises for a live entry in strict mode, else becomes a note."""
        try:
            e.target = read()
        except errors as exc:
            if not e.deleted and self.strict:
                raise
            e.note = (e.note + "; " if e.note else "") + f"target unreadable: {exc}"

    def can_list_deleted_dir(self, entry: Entry) -> bool:
        """Whether a deleted directory's contents may still be listed."""
        return True

    def walk(self, path: str = "/", *, deleted: bool = False
             ) -> Iterator[tuple[str, list[str], list[str]]]:
        """Like ``os.walk``: (dirpath, dirnames, filenames) for each directory below ``path``."""
        groups: dict[str, tuple[list[str], list[str]]] = {}
        order: list[str] = []
        top = self.lookup(path)
        start = top.path if top.path else "/"
        groups[start] = ([], [])
        order.append(start)
        for e in self.iter_entries(path, deleted=deleted):
            dirs, files = groups.setdefault(e.parent, ([], []))
            if e.parent not in order:
                order.append(e.parent)
            (dirs if e.kind == DIR else files).append(e.name)
            if e.kind == DIR:
                groups.setdefault(e.path, ([], []))
                if e.path not in order:
                    order.append(e.path)
        for p in order:
            yield p, groups[p][0], groups[p][1]

    def files(self, path: str = "/", *, recursive: bool = True,
              deleted: bool = True) -> pd.DataFrame:
        """The docs/design.md ``files()`` frame for everything below ``path``."""
        from ..frames import entry_columns, files_columns_frame

        entries = list(self.iter_entries(path, recursive=recursive, deleted=deleted))
        cols = entry_columns(entries)
        cols["damaged"] = self.damaged_column(cols["kind"], lambda: entries)
        return files_columns_frame(cols)

    # --- damage: bytes that cannot be read ------------------------------------------
    def volume_damaged(self) -> bool:
        """Whether any byte of the volume cannot be read: a damaged or missing range of
        the disk below (salvage mode reads zeros there, strict mode raises)."""
        return bool(self.source.size and self.source._damage_pairs(0, self.source.size))

    def damaged_ranges(self, path: str | Entry) -> list[tuple[int, int]]:
        """(offset, length) ranges of a file's data that could not be read: reads give
        zeros there. Empty for a file whose every byte is real."""
        entry = self.as_entry(path)
        return self.content(entry).damaged_ranges()

    def directory_damage(self, entry: Entry) -> int:
        """How many bytes of a directory's own data could not be read (its listing misses
        what was there). Drivers whose directories are not plain content override it."""
        try:
            return sum(n for _a, n in self.content(entry).damaged_ranges())
        except VDInspectError:
            return 0

    def damaged(self, path: str | Entry) -> int | None:
        """How many bytes of a file's data could not be read (the ``damaged`` column);
        None when the entry has no content to check (a directory, an unreadable file)."""
        entry = self.as_entry(path)
        if entry.kind == DIR:
            return None
        try:
            return sum(n for _a, n in self.content(entry).damaged_ranges())
        except VDInspectError:
            return None

    def damaged_column(self, kinds, entries, sound=None) -> np.ma.MaskedArray:
        """The ``damaged`` column of a listing (a numpy masked array: NA for folders)
        from its ``kind`` column; ``entries()`` gives the rows' Entries and is called only
        when the volume has damaged ranges at all. A driver may pass ``sound()``: per row,
        True where it already knows the data misses the damage (a bulk test cheaper than
        building each file's content)."""
        import numpy as np

        n = len(kinds)
        if n and self.volume_damaged():
            ok = sound() if sound is not None else None
            vals = [0 if ok is not None and ok[i] else self.damaged(e)
                    for i, e in enumerate(entries())]
            return np.ma.MaskedArray([v or 0 for v in vals], [v is None for v in vals],
                                     dtype=np.int64)
        # nothing on the volume is damaged: 0 for every file, NA for directories
        return np.ma.MaskedArray(np.zeros(n, dtype=np.int64),
                                 np.asarray(kinds, dtype=object) == DIR)

    def plot_sizes(self, path: str = "/", ax=None, depth: int = 2, **kw) -> Axes:
        """A treemap of the file sizes below ``path`` (matplotlib; see vdinspect.viz)."""
        from ..viz.treemap import plot_sizes

        return plot_sizes(self, path, ax, depth, **kw)

    # --- reading ----------------------------------------------------------------------
    def open(self, path: str | Entry) -> FileReader:
        """A seekable, streaming, read-only binary file object for a file."""
        entry = self.as_entry(path)
        if entry.kind == DIR:
            raise InvalidArgument(f"{self.name}: {entry.path} is a directory")
        return FileReader(self.content(entry), name=entry.path or entry.name)

    def read(self, path: str | Entry) -> bytes:
        """The whole content of a (small) file."""
        with self.open(path) as f:
            return f.read()

    # --- extraction ----------------------------------------------------------------
    def extract(self, path: str | Entry, dest: str | os.PathLike, *, recursive: bool = True,
                deleted: bool = False, progress: Progress = None
                ) -> ExtractReport:
        """Copy ``path`` (a file or a tree) into the host folder ``dest``, safely.

        Writes only below ``dest``: names are sanitised, symlinks are recreated only when
        they stay inside ``dest``, files are written to a temporary name and renamed,
        content streams in constant memory, and modification times are applied.
        """
        return Extractor(self, os.fspath(dest), progress).run(self.path_of(path), recursive,
                                                              deleted)

    def __repr__(self) -> str:
        label = f" {self.label!r}" if self.label else ""
        return f"<{type(self).__name__} {self.fstype}{label} on {self.name}>"

    def _repr_html_(self) -> str:
        from ..reprs import card, human

        size = getattr(self.source, "size", None)
        facts = [("type", self.fstype), ("label", self.label), ("uuid", self.uuid),
                 ("size", f"{human(size)} ({size} bytes)" if size is not None else None),
                 ("on", self.name)]
        if self.findings:
            facts.append(("findings", len(self.findings)))
        return card(type(self).__name__, facts,
                    (".files()", ".open(path)", ".extract(path, dest)", ".check()"))


def free_runs(masks, unit: int, limit: int) -> list[tuple[int, int]]:
    """Byte ranges from bit masks: ``masks`` yields (byte offset of element 0, bool array
    True where a unit is free), in ascending order; adjacent runs merge and every range is
    cut at ``limit`` (the volume's size). The one helper behind each driver's free_ranges."""
    import numpy as np

    out: list[tuple[int, int]] = []
    for base, mask in masks:
        m = np.asarray(mask, dtype=bool)
        if not m.size:
            continue
        edges = np.flatnonzero(np.diff(np.concatenate(([False], m, [False])).astype(np.int8)))
        for a, b in zip(edges[0::2].tolist(), edges[1::2].tolist()):
            start, end = base + a * unit, min(limit, base + b * unit)
            if end <= start:
                continue
            if out and out[-1][0] + out[-1][1] == start:
                out[-1] = (out[-1][0], end - out[-1][0])
            else:
                out.append((start, end - start))
    return out


def inode_record(fs: FileSystem, path, record_type: type[R]) -> R:
    """The inode record (a ``record_type``) of a record, an inode number, an Entry or a
    path, on a driver with numbered inodes (``fs.inode(n)``); InvalidArgument for an entry
    without one (the virtual orphan folder)."""
    if isinstance(path, record_type):
        return path
    if isinstance(path, int):
        return fs.inode(path)
    e = fs.as_entry(path)
    if isinstance(e.raw, record_type):
        return e.raw
    if e.inode is None or e.key == ("orphans",):
        raise InvalidArgument(f"{fs.name}: {e.path or e.name} has no inode")
    return fs.inode(e.inode)
