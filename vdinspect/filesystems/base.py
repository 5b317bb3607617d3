"""The FileSystem protocol every filesystem driver implements, and what they share.

A driver subclasses :class:`FileSystem` and implements four things: ``root()``,
``list_dir(entry)`` (live and deleted children), ``content(entry)`` (the file's bytes as a
ByteSource) and, for symlinks, ``readlink_entry(entry)``. Path lookup, walking, the
``files()`` DataFrame, streaming file objects and safe extraction live here once.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import errno
import io
import os
import re
import stat as statmod
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import CorruptImage, InvalidArgument, NotFound, VDInspectError
from ..findings import Findings
from ..frames import FILES_COLUMNS
from ..io import ByteSource, Concat, Zero, all_zero
from ..progress import Progress, reporter

if TYPE_CHECKING:
    import pandas as pd

#: ``kind`` values of the files() schema
FILE, DIR, SYMLINK, OTHER = "file", "dir", "symlink", "other"

MAX_DEPTH = 4096  # directory nesting deeper than this is treated as a loop
MAX_PATH = 32767  # characters (the Windows limit): longer paths are not followed, so a
# hostile tree of long names cannot make the listing's paths grow without bound


@dataclass(slots=True, eq=False)
class Entry:
    """One directory entry: a row of ``files()``. ``raw`` keeps the parsed structures.

    ``inode`` identifies the file inside the filesystem (inode number, MFT record, or the
    first cluster / directory-entry position for FAT); ``key`` is what the driver needs
    to find the content again (anything hashable). Times are aware UTC datetimes or None.
    """

    name: str
    kind: str
    size: int = 0
    path: str = ""
    parent: str = ""
    allocated: int | None = None  # bytes the filesystem has allocated for the content
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    created: dt.datetime | None = None
    modified: dt.datetime | None = None
    accessed: dt.datetime | None = None
    changed: dt.datetime | None = None
    inode: int | None = None
    links: int | None = None
    deleted: bool = False
    recoverable: bool = False
    target: str | None = None
    key: Any = None
    raw: Any = field(default=None, repr=False)
    extra: dict = field(default_factory=dict, repr=False)  # driver-specific columns

    @property
    def is_dir(self) -> bool:
        return self.kind == DIR

    def copy(self) -> Entry:
        """A copy a caller may change (path, parent) without touching a driver's cache."""
        return dataclasses.replace(self, extra=dict(self.extra))

    def row(self) -> dict:
        d = {c: getattr(self, c) for c in FILES_COLUMNS}
        d.update(self.extra)
        return d

    def __repr__(self) -> str:
        flag = " deleted" if self.deleted else ""
        return f"<Entry {self.kind} {self.path or self.name!r} size={self.size}{flag}>"

    def _repr_html_(self) -> str:
        from ..reprs import card

        state = "deleted" if self.deleted else "live"
        if self.deleted:
            state += ", recoverable" if self.recoverable else ", not recoverable"
        facts = [("kind", self.kind), ("path", self.path or self.name),
                 ("size", f"{self.size} bytes"), ("modified", self.modified),
                 ("created", self.created), ("accessed", self.accessed),
                 ("changed", self.changed), ("inode", self.inode), ("state", state)]
        if self.target is not None:
            facts.append(("target", self.target))
        where = self.path or self.name
        steps = ([f"fs.files({where!r})"] if self.kind == DIR
                 else [f"fs.open({where!r})", f"fs.read({where!r})"])
        return card("Entry", facts, steps + [f"fs.extract({where!r}, dest)"])




class FileSystem(Findings):
    """Base class of the filesystem drivers (FAT, exFAT, ext, NTFS).

    ``case_sensitive`` says how ``lookup`` compares names. Subclasses set ``fstype``
    (e.g. "fat32") and ``label``/``uuid`` when they have them.
    """

    fstype: str = "?"
    case_sensitive: bool = True
    label: str | None = None
    uuid: str | None = None

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

    def info(self) -> dict:
        """Facts about the volume (type, label, uuid, sizes, flags)."""
        return dict(fstype=self.fstype, label=self.label, uuid=self.uuid)

    def check(self) -> list[dict]:
        """Findings: rows with severity, structure, host_offset, message."""
        return self.findings_rows()

    def structures(self) -> list[dict]:
        """On-disk structures as rows name, host_offset, length, description."""
        return []

    # --- paths ----------------------------------------------------------------------
    def _same(self, a: str, b: str) -> bool:
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
            live = [c for c in children if not c.deleted and self._same(c.name, part)]
            dead = [c for c in children if c.deleted and self._same(c.name, part)]
            exact = [c for c in live if c.name == part]
            pick = (exact or live or (dead if deleted else []))
            if not pick:
                raise NotFound(f"{self.name}: no such file or directory: {path}")
            child = pick[0]
            child.parent = entry.path
            child.path = _join(entry.path, child.name)
            entry = child
        return entry

    def stat(self, path: str) -> Entry:
        """The entry at ``path`` (its ``row()`` is one row of ``files()``)."""
        return self.lookup(path, deleted=True)

    def readlink(self, path: str) -> str:
        return self.readlink_entry(self.lookup(path))

    # --- walking --------------------------------------------------------------------
    def iter_entries(self, path: str = "/", *, recursive: bool = True,
                     deleted: bool = True) -> Iterator[Entry]:
        """Every entry below ``path`` (depth first), with ``path``/``parent`` filled in.

        Directory loops (an entry naming a directory already on the way down) are
        reported as findings and not followed.
        """
        for e, _ in self._walk(path, recursive=recursive, deleted=deleted):
            yield e

    def _walk(self, path: str = "/", *, recursive: bool = True, deleted: bool = True,
              on_skip=None) -> Iterator[tuple[Entry, Entry | None]]:
        """``iter_entries`` as (entry, parent entry) pairs; ``on_skip(entry, reason)`` hears
        of every directory not listed (loops, too deep, unreadable)."""
        top = self.lookup(path, deleted=deleted)
        if top.kind != DIR:
            yield top, None
            return

        def skip(entry: Entry, reason: str) -> None:
            self.finding("error", "directory", None, f"{entry.path or '/'}: {reason}")
            if on_skip is not None:
                on_skip(entry, reason)

        # depth-first with an explicit stack; ``way`` holds the directories from the top to
        # the one being listed (and ``on_way`` the same as a set, for loop checks)
        stack: list[tuple[Entry, int]] = [(top, 0)]
        way: list = []
        on_way: set = set()
        # each directory is listed once (live and deleted apart): two names for one
        # directory at every level (directory hard links) would double the tree each time
        listed: set = {(self._dir_id(top), top.deleted)}
        while stack:
            d, depth = stack.pop()
            while len(way) > depth:
                on_way.discard(way.pop())
            ident = self._dir_id(d)
            way.append(ident)
            on_way.add(ident)
            try:
                children = self.list_dir(d)
            except VDInspectError as e:
                if self.strict and not isinstance(e, CorruptImage):
                    raise
                skip(d, f"unreadable directory: {e}")
                continue
            subdirs = []
            for c in children:
                if c.deleted and not deleted:
                    continue
                c.parent = d.path
                c.path = _join(d.path, c.name)
                yield c, d
                if recursive and c.kind == DIR:
                    cid = self._dir_id(c)
                    if cid is not None and cid in on_way:
                        skip(c, "directory loop (points back to an ancestor); not followed")
                        continue
                    if cid is not None and (cid, c.deleted) in listed:
                        skip(c, "directory already listed under another name (a directory "
                                "hard link); not followed")
                        continue
                    if len(way) >= MAX_DEPTH:
                        skip(c, f"deeper than {MAX_DEPTH} levels; not followed")
                        continue
                    if len(c.path) > MAX_PATH:
                        skip(c, f"path longer than {MAX_PATH} characters; not followed")
                        continue
                    if c.deleted and not self._can_list_deleted_dir(c):
                        continue
                    listed.add((cid, c.deleted))
                    subdirs.append((c, depth + 1))
            stack.extend(reversed(subdirs))

    def _hardlink_key(self, entry: Entry):
        """What makes two file entries names of one file (extraction links them), or None.
        Drivers with hard links override it; the default links nothing."""
        return None

    def _dir_id(self, entry: Entry):
        """What identifies a directory for loop detection (its inode by default)."""
        return entry.inode if entry.inode is not None else entry.key

    def _can_list_deleted_dir(self, entry: Entry) -> bool:
        """Whether a deleted directory's contents may still be listed."""
        return True

    def walk(self, path: str = "/", *, deleted: bool = False):
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
        from ..frames import files_frame

        entries = list(self.iter_entries(path, recursive=recursive, deleted=deleted))
        return self._add_damage(files_frame([e.row() for e in entries]), lambda: entries)

    # --- damage: bytes that cannot be read ------------------------------------------
    def volume_damaged(self) -> bool:
        """Whether any byte of the volume cannot be read: a damaged or missing range of
        the disk below (salvage mode reads zeros there, strict mode raises)."""
        return bool(self.source.size and self.source._damage_pairs(0, self.source.size))

    def damaged_ranges(self, path: str | Entry) -> list[tuple[int, int]]:
        """(offset, length) ranges of a file's data that could not be read: reads give
        zeros there. Empty for a file whose every byte is real."""
        entry = path if isinstance(path, Entry) else self.lookup(path, deleted=True)
        return self.content(entry).damaged_ranges()

    def damaged(self, path: str | Entry) -> int | None:
        """How many bytes of a file's data could not be read (the ``damaged`` column);
        None when the entry has no content to check (a directory, an unreadable file)."""
        entry = path if isinstance(path, Entry) else self.lookup(path, deleted=True)
        if entry.kind == DIR:
            return None
        try:
            return sum(n for _a, n in self.content(entry).damaged_ranges())
        except VDInspectError:
            return None

    def _add_damage(self, df: pd.DataFrame, entries, sound=None) -> pd.DataFrame:
        """Insert the ``damaged`` column after ``target``; ``entries()`` gives the rows'
        Entries and is called only when the volume has damaged ranges at all. A driver may
        pass ``sound()``: per row, True where it already knows the data misses the damage
        (a bulk test cheaper than building each file's content)."""
        import numpy as np
        import pandas as pd

        if len(df) and self.volume_damaged():
            ok = sound() if sound is not None else None
            col = pd.array([0 if ok is not None and ok[i] else self.damaged(e)
                            for i, e in enumerate(entries())], dtype="Int64")
        else:  # nothing on the volume is damaged: 0 for every file, NA for directories
            is_dir = df["kind"].to_numpy(dtype=object) == DIR
            col = pd.arrays.IntegerArray(np.zeros(len(df), dtype=np.int64), is_dir)
        df.insert(df.columns.get_loc("target") + 1, "damaged", col)
        return df

    def plot_sizes(self, path: str = "/", ax=None, depth: int = 2, **kw):
        """A treemap of the file sizes below ``path`` (matplotlib; see vdinspect.viz)."""
        from ..viz.treemap import plot_sizes

        return plot_sizes(self, path, ax, depth, **kw)

    # --- reading ----------------------------------------------------------------------
    def open(self, path: str | Entry) -> FileReader:
        """A seekable, streaming, read-only binary file object for a file."""
        entry = path if isinstance(path, Entry) else self.lookup(path, deleted=True)
        if entry.kind == DIR:
            raise InvalidArgument(f"{self.name}: {entry.path} is a directory")
        return FileReader(self.content(entry), name=entry.path or entry.name)

    def read(self, path: str | Entry) -> bytes:
        """The whole content of a (small) file."""
        with self.open(path) as f:
            return f.read()

    # --- extraction ----------------------------------------------------------------
    def extract(self, path: str, dest: str | os.PathLike, *, recursive: bool = True,
                deleted: bool = False, progress: Progress = None
                ) -> ExtractReport:
        """Copy ``path`` (a file or a tree) into the host folder ``dest``, safely.

        Writes only below ``dest``: names are sanitised, symlinks are recreated only when
        they stay inside ``dest``, files are written to a temporary name and renamed,
        content streams in constant memory, and modification times are applied.
        """
        return _Extractor(self, os.fspath(dest), progress).run(path, recursive, deleted)

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


def _join(parent: str, name: str) -> str:
    return ("/" if parent in ("", "/") else parent + "/") + name


class FileReader(io.RawIOBase):
    """A seekable read-only file object over a ByteSource (reads stream, never the whole)."""

    def __init__(self, source: ByteSource, name: str = "") -> None:
        super().__init__()
        self._src = source
        self._pos = 0
        self.name = name

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    @property
    def size(self) -> int:
        return self._src.size

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._src.size + offset
        else:
            raise InvalidArgument(f"bad whence {whence}")
        if pos < 0:
            raise InvalidArgument("negative seek position")
        self._pos = pos
        return pos

    def readinto(self, b) -> int:
        mv = memoryview(b).cast("B")
        n = max(0, min(len(mv), self._src.size - self._pos))
        if n:
            self._src.readinto(self._pos, mv[:n])
            self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self._src.size - self._pos)
        n = max(0, min(size, self._src.size - self._pos))
        if not n:
            return b""
        data = self._src.read(self._pos, n)
        self._pos += n
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def damaged_ranges(self) -> list[tuple[int, int]]:
        """(offset, length) ranges of the file that could not be read (they read as zeros)."""
        return self._src.damaged_ranges()


# --- extraction -------------------------------------------------------------------------

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {
    f"LPT{i}" for i in range(1, 10)}
_BAD_CHARS = re.compile(r'[\x00-\x1f/\\:*?"<>|]')


def safe_name(name: str) -> str:
    """A host-safe version of one path component (never '', '.', '..' or a separator)."""
    n = unicodedata.normalize("NFC", name)
    n = _BAD_CHARS.sub("_", n).strip()
    n = n.rstrip(". ") or "_"
    if n in (".", ".."):
        n = "_" * len(n)
    if n.split(".")[0].upper() in _WINDOWS_RESERVED:
        n = "_" + n
    return _fit(n[:255]).rstrip(". ") or "_"


def _fit(name: str, limit: int = 255) -> str:
    """``name`` cut to at most ``limit`` bytes of UTF-8 (hosts count NAME_MAX in bytes)."""
    while len(name.encode("utf-8", "surrogatepass")) > limit:
        name = name[:-1]
    return name


def _next_data(src: ByteSource, pos: int) -> int:
    """The first offset at or after ``pos`` that may hold non-zero bytes (``src.size`` if
    none): sources that know their holes answer ``seek_data(pos)`` (like SEEK_DATA), so
    extracting a sparse 2 TiB file skips its holes instead of reading them."""
    if isinstance(src, Zero):
        return src.size
    if isinstance(src, Concat):
        for i in range(max(0, bisect.bisect_right(src.starts, pos) - 1), len(src.sources)):
            start, part = src.starts[i], src.sources[i]
            at = _next_data(part, max(0, pos - start))
            if at < part.size:
                return start + at
        return src.size
    seek = getattr(src, "seek_data", None)
    return pos if seek is None else min(max(seek(pos), pos), src.size)


@dataclass
class ExtractReport:
    """What ``extract`` did: files written, bytes, and what was skipped and why."""

    dest: str
    written: list[str] = field(default_factory=list)
    bytes_written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (volume path, reason)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (volume path, host path)
    incomplete: list[tuple[str, str]] = field(default_factory=list)  # written, but cut short
    #: written, but with ranges that could not be read (zeros there): (volume path, host
    #: path, [(offset, length), ...]) — salvage mode's damaged ranges reaching a file
    damaged: list[tuple[str, str, list[tuple[int, int]]]] = field(default_factory=list)
    #: hard links: (volume path, the volume path whose host file it is linked to)
    linked: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        s = f"{len(self.written)} files, {self.bytes_written} bytes written to {self.dest}"
        if self.renamed:
            s += f"; {len(self.renamed)} renamed"
        if self.linked:
            s += f"; {len(self.linked)} hard links"
        if self.incomplete:
            s += f"; {len(self.incomplete)} incomplete"
        if self.damaged:
            s += f"; {len(self.damaged)} with unreadable ranges written as zeros"
        if self.skipped:
            s += f"; {len(self.skipped)} skipped"
        return s

    def __repr__(self) -> str:
        return f"<ExtractReport {self.summary()}>"

    def _repr_html_(self) -> str:
        import html

        from ..reprs import table

        shown = self.skipped[:20]
        body = table(("volume path", "why skipped"), shown) if shown else ""
        more = len(self.skipped) - len(shown)
        if more:
            body += f"<div>... and {more} more in <code>.skipped</code></div>"
        bad = [(p, damage_text(r)) for p, _h, r in self.damaged[:20]]
        if bad:
            body += table(("volume path", "unreadable (written as zeros)"), bad)
        return (f"<div><b>ExtractReport</b> {html.escape(self.summary())}{body}"
                "<div>See: <code>.written</code>, <code>.skipped</code>, "
                "<code>.renamed</code>, <code>.incomplete</code>, "
                "<code>.damaged</code></div></div>")


def damage_text(ranges: list[tuple[int, int]]) -> str:
    """A short human description of damaged ranges: bytes and where."""
    total = sum(n for _a, n in ranges)
    shown = ", ".join(f"[{a:#x}, +{n:#x})" for a, n in ranges[:3])
    more = f" and {len(ranges) - 3} more" if len(ranges) > 3 else ""
    return f"{total} bytes in {len(ranges)} ranges: {shown}{more}"


class _Extractor:
    CHUNK = 1 << 20

    def __init__(self, fs: FileSystem, dest: str, progress) -> None:
        self.fs = fs
        self.dest = os.path.realpath(dest)
        self.report = ExtractReport(self.dest)
        self.progress = progress
        self.links: dict = {}  # hard-link key -> (host path written, volume path)

    def _link(self, e: Entry, host: str) -> bool:
        """Make a second name of a file already written a hard link to it (as tar does):
        a thousand names for one big file cost one copy. False when it must be written."""
        key = self.fs._hardlink_key(e)
        first = self.links.get(key) if key is not None else None
        if first is None or os.path.lexists(host):
            return False
        try:
            os.link(first[0], host, follow_symlinks=False)
        except OSError:
            return False  # a host without hard links: write the copy instead
        self.report.written.append(host)
        self.report.linked.append((e.path, first[1]))
        self.done = min(self.total, self.done + e.size)
        return True

    def run(self, path: str, recursive: bool, deleted: bool) -> ExtractReport:
        os.makedirs(self.dest, exist_ok=True)
        top = self.fs.lookup(path, deleted=deleted)
        skipped = self.report.skipped
        not_followed: set[int] = set()  # directories the walk refused (loops, too deep)

        def on_skip(e: Entry, why: str) -> None:
            skipped.append((e.path, why))
            not_followed.add(id(e))

        if top.kind == DIR:
            pairs = list(self.fs._walk(path, recursive=recursive, deleted=deleted,
                                       on_skip=on_skip))
        else:
            pairs = [(top, None)]
        walk_top = pairs[0][1] if pairs else None
        total = sum(e.size for e, _ in pairs if e.kind == FILE)
        self.total = total
        self.done = 0
        self.report_fn = reporter(self.progress, total)
        dirs_times = []
        used: set[str] = set()
        hosts: dict[int, str] = {}  # id(directory entry) -> its host folder
        for e, parent in pairs:
            if id(e) in not_followed:
                continue  # reported as skipped; no empty folder stands in for it
            if parent is None or parent is walk_top:
                parent_host = self.dest
            else:
                parent_host = hosts.get(id(parent))
                if parent_host is None:
                    skipped.append((e.path, "its folder was not extracted"))
                    continue
            name = safe_name(e.name)
            host = os.path.join(parent_host, name)
            if _host_key(host) in used:
                stem, i = host, 1
                while _host_key(host) in used:
                    host = f"{stem}~{i}"
                    i += 1
            used.add(_host_key(host))
            if os.path.basename(host) != e.name:
                self.report.renamed.append((e.path, host))
            try:
                if e.kind == DIR:
                    # parent_host is a real folder inside dest (checked when made) and the
                    # name has no separator, so a real folder made here is inside too
                    if os.path.islink(host) or (os.path.lexists(host)
                                                and not os.path.isdir(host)):
                        skipped.append((e.path, f"{host} exists and is not a folder"))
                        continue
                    if not os.path.isdir(host):
                        os.mkdir(host, 0o755)
                    hosts[id(e)] = host
                    dirs_times.append((host, e))
                elif e.kind == FILE and self._link(e, host):
                    pass
                elif e.kind == FILE:
                    n, cut, bad = self._write_file(e, host)
                    key = self.fs._hardlink_key(e)
                    if key is not None and not cut and not bad:
                        self.links.setdefault(key, (host, e.path))
                    self.report.written.append(host)
                    self.report.bytes_written += n
                    if cut:
                        self.report.incomplete.append((e.path, cut))
                    if bad:
                        self.report.damaged.append((e.path, host, bad))
                elif e.kind == SYMLINK:
                    self._symlink(e, host)
                else:
                    skipped.append((e.path, f"{e.kind} entries are not extracted"))
            except VDInspectError as exc:
                skipped.append((e.path, f"unreadable: {exc}"))
            except OSError as exc:
                skipped.append((e.path, f"could not write {host}: {exc.strerror or exc}"))
        for host, e in reversed(dirs_times):
            _set_times(host, e)
        if self.report_fn and self.done < total:
            self.report_fn(total, total)
        return self.report

    def _write_file(self, e: Entry, host: str
                    ) -> tuple[int, str | None, list[tuple[int, int]]]:
        """Write one file (temporary name, then rename); (bytes, why it is short or None,
        the ranges that could not be read and were written as zeros)."""
        src = self.fs.content(e)
        if os.path.islink(host) or (os.path.exists(host) and not os.path.isfile(host)):
            raise FileExistsError(errno.EEXIST, "exists and is not a regular file", host)
        tmp = os.path.join(os.path.dirname(host),
                           f".{_fit(os.path.basename(host), 200)}.vdinspect-part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0),
                     0o644)
        written = 0
        start = self.done
        try:
            buf = bytearray(min(self.CHUNK, max(src.size, 1)))
            pos = 0
            while pos < src.size:
                n = _next_data(src, pos) - pos  # a hole the source knows of: not read
                if n > 0:
                    os.lseek(fd, n, os.SEEK_CUR)
                else:
                    n = min(len(buf), src.size - pos)
                    mv = memoryview(buf)[:n]
                    src.readinto(pos, mv)
                    if all_zero(mv):  # leave a hole: sparse files stay sparse on the host
                        os.lseek(fd, n, os.SEEK_CUR)
                    else:
                        os.write(fd, mv)
                pos += n
                written += n
                if self.report_fn:
                    self.done = min(self.total, start + written)
                    self.report_fn(self.done, self.total)
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        try:
            os.ftruncate(fd, written)  # a trailing hole needs the size set explicitly
        finally:
            os.close(fd)
        os.replace(tmp, host)
        _set_times(host, e)
        self.done = min(self.total, start + e.size)
        cut = None
        if written < e.size:
            cut = f"only {written} of {e.size} bytes could be read"
        try:  # after the copy: decoders learn of undecodable units while reading
            bad = src.damaged_ranges()
        except VDInspectError:
            bad = []
        return written, cut, bad

    def _symlink(self, e: Entry, host: str) -> None:
        target = self.fs.readlink_entry(e)
        if os.path.isabs(target) or "\\" in target or "\0" in target:
            self.report.skipped.append((e.path, f"symlink to {target!r} points outside"))
            return
        # ".." only as a prefix: after a name it could climb out of a link made earlier
        # (a link to "." followed by "..") where the lexical check below would not see it
        parts = [p for p in target.split("/") if p not in ("", ".")]
        while parts and parts[0] == "..":
            parts.pop(0)
        resolved = os.path.normpath(os.path.join(os.path.dirname(host), target))
        if ".." in parts or not (resolved == self.dest
                                 or resolved.startswith(self.dest + os.sep)):
            self.report.skipped.append((e.path, f"symlink to {target!r} points outside"))
            return
        os.makedirs(os.path.dirname(host), exist_ok=True)
        if os.path.lexists(host):
            os.unlink(host)
        os.symlink(target, host)
        self.report.written.append(host)


def _host_key(host: str) -> str:
    """How a host path is compared for collisions: without case, on every host, so an
    extraction gives the same names on Linux as on macOS or Windows (where README.TXT
    would overwrite Readme.txt)."""
    return os.path.normcase(host).casefold()


def _set_times(host: str, e: Entry) -> None:
    m = e.modified
    a = e.accessed or m
    if m is None:
        return
    try:
        os.utime(host, ns=(_ns(a), _ns(m)), follow_symlinks=False)
    except (OSError, OverflowError, ValueError):
        pass


def _ns(t: dt.datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def mode_kind(mode: int | None) -> str:
    """The files() ``kind`` of a POSIX mode."""
    if mode is None:
        return OTHER
    if statmod.S_ISDIR(mode):
        return DIR
    if statmod.S_ISREG(mode):
        return FILE
    if statmod.S_ISLNK(mode):
        return SYMLINK
    return OTHER
