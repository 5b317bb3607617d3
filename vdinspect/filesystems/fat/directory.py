"""FAT directories: 32-byte entries, 8.3 short names and VFAT long names, listed as Entries.

A directory is an array of 32-byte entries (:data:`~.structs.DirEntry`): an 8.3 short
entry per file, preceded by VFAT long-name entries (:data:`~.structs.LfnEntry`: UCS-2,
13 characters each, last part first, each with the checksum of the short name). The root
directory of FAT12/16 is a fixed area after the FATs; every other directory (and the
FAT32 root) is a cluster chain. Deleted entries (first byte 0xE5) are listed too.
"""

from __future__ import annotations

from construct import Container

from ...errors import InvalidArgument
from ..base import DIR, FILE, Entry
from .clusters import directory_extents
from .recovery import SHORT_NAME_CHARS, lfn_first_byte, short_fits_long
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
    MAX_DIR_BYTES,
    NT_LOWER_BASE,
    NT_LOWER_EXT,
    DirEntry,
    attr_text,
)
from .times import dos_datetime

DOT_NAMES = (b".          ", b"..         ")  # the "." and ".." entries of a subdirectory
LOST_CLUSTER = -1  # FatKey.cluster of the synthetic /$Lost folder (see .scan)
_N1, _N2, _N3 = LFN_NAME_PARTS


def lfn_checksum(short: bytes) -> int:
    """The VFAT checksum of an 11-byte short name."""
    s = 0
    for c in short:
        s = (((s & 1) << 7) + (s >> 1) + c) & 0xFF
    return s


class FatDirent:
    """A short directory entry as found on disk, with the long-name entries before it."""

    __slots__ = ("offset", "data", "lfn")

    def __init__(self, offset: int, data: bytes, lfn: list[bytes] | None = None) -> None:
        self.offset = offset  # byte offset of the short entry in the volume
        self.data = data
        self.lfn = lfn or []

    @property
    def parsed(self) -> Container:
        """The short entry parsed with :data:`DirEntry`."""
        return DirEntry.parse(self.data)

    @property
    def raw(self) -> bytes:
        """The long-name entries and the short entry, as stored."""
        return b"".join(self.lfn) + self.data

    def __repr__(self) -> str:
        return f"<FatDirent {self.data[:11]!r} at {self.offset:#x} +{len(self.lfn)} LFN>"


class FatKey:
    """What the driver needs to find an entry's data again."""

    __slots__ = ("cluster", "size", "deleted", "root")

    def __init__(self, cluster: int, size: int, deleted: bool = False, root: bool = False):
        self.cluster = cluster
        self.size = size
        self.deleted = deleted
        self.root = root

    def __repr__(self) -> str:
        return f"<cluster {self.cluster}{' deleted' if self.deleted else ''}>"


class DirectoryMixin:
    """Listing directories (mixed into :class:`~.filesystem.FatFileSystem`)."""

    _root_entries_cache: list[Entry] | None = None  # the root is listed once, then copied
    root_label: str | None = None  # the root directory's volume-label entry, if any

    def root(self) -> Entry:
        if self.bits == 32:
            first = self.ext.BPB_RootClus
        else:
            first = 0
        e = Entry(name="", kind=DIR, path="/", inode=2, key=FatKey(first, 0, root=True))
        return e

    def dir_id(self, entry: Entry) -> tuple[str, int]:
        k = entry.key
        if k.root or k.cluster == 0:
            return ("cluster", self.ext.BPB_RootClus if self.bits == 32 else 0)
        return ("cluster", k.cluster)

    def _dir_extents(self, entry: Entry) -> list[tuple[int, int]]:
        """Where the directory's content lies, as (volume offset, length) pieces."""
        k = entry.key
        if k.root and self.bits != 32:
            length = self.root_entries * 32
            avail = max(0, min(length, self.source.size - self.root_offset))
            if avail < length:
                self.finding(
                    "error",
                    "root directory",
                    self.root_offset,
                    "the root directory is cut short by the end of the volume",
                )
            return [(self.root_offset, avail)]
        first = k.cluster
        if first == LOST_CLUSTER:  # /$Lost is not on the volume
            return []
        if first == 0 and not k.root:  # a ".."-style reference to the root
            return self._dir_extents(self.root())
        if k.deleted:
            if not self.is_free(first):
                return []
            runs = [(first, 1)]
        else:
            limit = max(1, MAX_DIR_BYTES // self.cluster_size)
            runs, problem, ended, _ = self.chain_runs(first, limit, f"directory {entry.path}")
            if problem:
                self.finding(
                    "error",
                    "directory",
                    self.cluster_offset(first) if 2 <= first <= self.max_cluster else None,
                    f"{entry.path or '/'}: {problem}; listing what was read",
                )
            elif not ended:
                self.finding(
                    "warning",
                    "directory",
                    self.cluster_offset(first),
                    f"{entry.path or '/'}: longer than 65536 entries; rest ignored",
                )
        return directory_extents(self, runs, entry.path)

    def _dir_bytes(self, entry: Entry) -> list[tuple[int, bytes]]:
        """The directory's content as (volume offset, bytes) segments."""
        return [(off, self.source.read(off, n)) for off, n in self._dir_extents(entry)]

    def directory_damage(self, entry: Entry) -> int:
        """Bytes of a directory's clusters (or fixed root area) that could not be read."""
        return sum(n for off, length in self._dir_extents(entry)
                   for _a, n in self.source.damaged_ranges(off, length))

    def list_dir(self, entry: Entry) -> list[Entry]:
        if entry.kind != DIR:
            raise InvalidArgument(f"{self.name}: {entry.path} is not a directory")
        is_root = entry.key.root
        if self._lost is None:
            self.lost_directories()  # the first listing scans (and may renew the cache)
        if is_root and self._root_entries_cache is not None:
            return [e.copy() for e in self._root_entries_cache] + self.lost_children(entry)
        if self.listings and not is_root and not entry.deleted:
            done = self.listings.pop(entry.key.cluster, None)
            if done is not None:  # parsed by the scan (its findings recorded there)
                if not isinstance(done, list):  # plain rows (.columns): the Entries now
                    done = self._parse_dir(entry, done.segs)
                return done + self.lost_children(entry)
        out = self._parse_dir(entry, self._dir_bytes(entry))
        if is_root:
            self._root_entries_cache = out
            out = [e.copy() for e in out]
        return out + self.lost_children(entry)

    def _parse_dir(self, d: Entry, segs: list[tuple[int, bytes]]) -> list[Entry]:
        out: list[Entry] = []
        parent_deleted = d.deleted
        lfn: list[tuple[int, bytes]] = []  # (ordinal byte, raw entry), in disk order
        lfn_chk = -1
        csize = self.cluster_size
        is_root = d.key.root
        unpack = DIRENT.iter_unpack
        for base, buf in segs:
            n = len(buf) // 32
            if not n:
                continue
            pos = 0
            for (
                name11,
                attr,
                ntres,
                ctenth,
                ctime,
                cdate,
                adate,
                hi,
                wtime,
                wdate,
                lo,
                size,
            ) in unpack(buf[: n * 32]):
                off = base + pos
                pos += 32
                b0 = name11[0]
                if b0 == 0:
                    break
                if attr & ATTR_LONG_NAME_MASK == ATTR_LONG_NAME:
                    raw = buf[pos - 32 : pos]
                    ordb = raw[0]
                    chk = raw[LFN_CHKSUM]
                    if (ordb != DELETED and ordb & LFN_LAST) or chk != lfn_chk or not lfn:
                        lfn = []
                        lfn_chk = chk
                    lfn.append((ordb, raw))
                    continue
                pending, lfn, lfn_chk = lfn, [], -1
                if attr & ATTR_VOLUME_ID:
                    if is_root and b0 != DELETED and self.root_label is None:
                        self.root_label = name11.decode("cp850", "replace").rstrip(" ")
                    continue
                deleted = b0 == DELETED or parent_deleted
                if name11 in DOT_NAMES:
                    continue
                first = (hi << 16 | lo) if self.bits == 32 else lo
                if deleted and self.not_an_entry(name11, attr, first, size):
                    continue  # no phantoms: leftover bytes, not a deleted file
                short = self._short_name(name11, ntres)
                long_name = None
                if pending:
                    long_name = self._long_name(name11, pending, off, d)
                if b0 == DELETED:
                    short = "_" + short[1:]  # the first byte is gone (fls shows "_" too)
                    if long_name:  # ... but the long name's checksum tells what it was
                        chk = [p for p in pending if p[0] == DELETED][0][1][LFN_CHKSUM]
                        was = bytes([lfn_first_byte(name11, chk)]) + name11[1:]
                        short = self._short_name(was, ntres)
                    name = long_name or "_" + self._short_name(name11, ntres)[1:]
                else:
                    name = long_name or short
                is_dir = bool(attr & ATTR_DIRECTORY)
                e = Entry(
                    name=name,
                    kind=DIR if is_dir else FILE,
                    size=size,
                    created=dos_datetime(cdate, ctime, ctenth),
                    modified=dos_datetime(wdate, wtime),
                    accessed=dos_datetime(adate),
                    inode=self.inode_of(off),
                    deleted=deleted,
                    raw=FatDirent(off, buf[pos - 32 : pos], [r for _, r in pending]),
                )
                e.extra = {
                    "attributes": attr_text(attr),
                    "short_name": short,
                    "first_cluster": first,
                }
                if is_dir:
                    e.size = 0
                    e.key = FatKey(first, 0, deleted)
                    if deleted:
                        free = self.is_free(first)
                        e.size = csize if free else 0
                        e.recoverable = free
                        e.allocated = 0
                    else:
                        e.size = self._dir_size(first)
                        e.allocated = e.size
                else:
                    e.key = FatKey(first, size, deleted)
                    if deleted:
                        e.recoverable = self.recoverable(first, size)
                        e.allocated = 0
                    else:
                        e.allocated = -(-size // csize) * csize
                out.append(e)
        # no phantoms: a deleted slot with a live entry's short name (past the first
        # byte), clusters and size is a stale copy of it (left by a tool that rewrites an
        # entry elsewhere), not another file
        def same(e: Entry) -> tuple:
            return e.raw.data[1:11], e.extra["first_cluster"], e.size, e.kind

        live = {same(e) for e in out if not e.deleted}
        return [e for e in out if not e.deleted or e.extra["first_cluster"] < 2
                or same(e) not in live]

    def _dir_size(self, first: int) -> int:
        if not 2 <= first <= self.max_cluster:
            return 0
        limit = max(1, MAX_DIR_BYTES // self.cluster_size)
        runs, _, _ = self.fat.chain(first, limit, self.max_cluster)
        return sum(n for _, n in runs) * self.cluster_size
    @staticmethod
    def _short_name(name11: bytes, ntres: int) -> str:
        base = name11[:8]
        if base[0] == KANJI_E5:
            base = b"\xe5" + base[1:]
        b = base.decode("cp850", "replace").rstrip(" ")
        x = name11[8:].decode("cp850", "replace").rstrip(" ")
        if ntres & NT_LOWER_BASE:
            b = b.lower()
        if ntres & NT_LOWER_EXT:
            x = x.lower()
        return f"{b}.{x}" if x else b

    def _long_name(
        self, name11: bytes, pending: list[tuple[int, bytes]], off: int, d: Entry
    ) -> str | None:
        """The long name the LFN entries before a short entry spell, if they belong to it."""
        deleted = name11[0] == DELETED
        # long-name slots of a deleted file may precede a live short entry that reused the
        # slot after them (and the other way round): use only slots in the same state
        pending = [p for p in pending if (p[0] == DELETED) == deleted]
        if not pending:
            return None
        chk = pending[0][1][LFN_CHKSUM]
        if deleted:
            first = lfn_first_byte(name11, chk)
            if first not in SHORT_NAME_CHARS or first == DELETED:
                return None
        else:
            if lfn_checksum(name11) != chk:
                self.finding(
                    "warning",
                    "directory",
                    off,
                    f"{d.path or '/'}: long name entries before "
                    f"{name11.decode('cp850', 'replace')!r} have checksum {chk:#04x}, "
                    f"not {lfn_checksum(name11):#04x}; using the short name",
                )
                return None
            # live sequence: ordinals count down to 1
            want = len(pending)
            for i, (ordb, _) in enumerate(pending):
                o = ordb & 0x1F
                if o != want - i or (i == 0) != bool(ordb & LFN_LAST):
                    self.finding(
                        "warning",
                        "directory",
                        off,
                        f"{d.path or '/'}: long name entries out of sequence "
                        f"before {name11!r}; using the short name",
                    )
                    return None
        units = b"".join(r[_N1] + r[_N2] + r[_N3] for _, r in reversed(pending))
        text = units.decode("utf-16-le", "replace")
        end = text.find("\0")
        if end >= 0:
            text = text[:end]
        if deleted and text and not short_fits_long(bytes([first]) + name11[1:], text):
            return None  # slots of another file: the checksum fits some first byte always
        return text or None

