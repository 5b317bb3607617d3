"""exFAT directories: entry sets with their checksums, names and times, listed as Entries.

Entries are 32 bytes. A file is a set: a File entry (0x85: attributes, times, the count
of secondary entries and the set checksum), a Stream Extension (0xC0: size, valid size,
first cluster, NoFatChain flag, name length and hash) and File Name entries (0xC1, 15
UTF-16 units each). Clearing bit 7 of the entry types (0x05, 0x40, 0x41) deletes a set.
The root directory also holds the allocation bitmap, up-case table, label and GUID
entries, read once by :meth:`DirectoryMixin.scan_root`.

Times: each timestamp has a 10 ms increment and a UTC offset byte. When the offset is
marked valid the time is converted to real UTC; otherwise (as on FAT) the wall-clock
value is stored in the UTC columns unchanged.
"""

from __future__ import annotations

import bisect
import datetime as dt
import uuid as uuidlib

import numpy as np
from construct import Container

from ...errors import CorruptImage, InvalidArgument
from ..base import DIR, FILE, Entry
from ..fat.clusters import directory_extents
from ..fat.directory import FatKey
from ..fat.structs import attr_text
from ..fat.times import dos_datetime
from .sets import (
    MAX_SECONDARY,
    MIN_SECONDARY,
    TYPE_CODE,
    FileRecord,
    StreamRecord,
    slot_sums,
)
from .structs import (
    ATTR_DIRECTORY,
    ENTRY_SIZE,
    FILE_ENTRY,
    FILE_NAME,
    FLAG_NO_FAT_CHAIN,
    IN_USE,
    NAME_UNIT_DTYPE,
    SECONDARY_COUNT,
    SET_CHECKSUM_SKIP,
    STREAM_ENTRY,
    T_BITMAP,
    T_END,
    T_FILE,
    T_GUID,
    T_LABEL,
    T_NAME,
    T_STREAM,
    T_UPCASE,
    AllocationBitmapEntry,
    FileEntry,
    StreamExtensionEntry,
    UpcaseTableEntry,
    VolumeGuidEntry,
    volume_label_text,
)

NAME_FROM, NAME_TO = FILE_NAME.start, FILE_NAME.stop  # the units in a File Name entry
#: the type byte of a File Name entry, deleted (0) or in use: what the names run over
NAME_TYPES = {state: bytes([(T_NAME & TYPE_CODE) | state]) for state in (0, IN_USE)}
LOST_CLUSTER = -1  # ExfatKey.cluster of the synthetic /$Lost folder (see .scan)
MAX_DIR_BYTES = 64 << 20  # read at most this much of a directory (the spec allows 256 MiB;
# 2 million entries is far beyond real folders and keeps a hostile one bounded)
SECOND_BITMAP = 0x01  # BitmapFlags: the second allocation bitmap (TexFAT)



def set_checksum(data: bytes) -> int:
    """The checksum of a directory entry set (bytes 2 and 3 of the first entry skipped)."""
    c = 0
    for i, b in enumerate(data):
        if i in SET_CHECKSUM_SKIP:
            continue
        c = ((c >> 1) | ((c & 1) << 15)) + b & 0xFFFF
    return c



def name_hash(upcased: bytes) -> int:
    """The NameHash of an up-cased UTF-16-LE name."""
    h = 0
    for b in upcased:
        h = ((h >> 1) | ((h & 1) << 15)) + b & 0xFFFF
    return h


def exfat_time(stamp: int, tens: int, offset: int) -> tuple[dt.datetime | None, int | None]:
    """(UTC datetime, UTC offset in minutes or None) of an exFAT timestamp."""
    t = dos_datetime(stamp >> 16, stamp & 0xFFFF, tens)
    if offset & 0x80:
        steps = offset & 0x7F
        if steps >= 64:
            steps -= 128
        minutes = steps * 15
        if t is not None:
            t = t - dt.timedelta(minutes=minutes)
        return t, minutes
    return t, None



class ExfatKey(FatKey):
    """What the driver needs to find a stream's clusters again: FAT's key, plus the
    valid data length and whether the stream is contiguous (NoFatChain)."""

    __slots__ = ("valid", "contiguous")

    def __init__(self, cluster: int, size: int, valid: int, contiguous: bool,
                 deleted: bool = False, root: bool = False) -> None:
        super().__init__(cluster, size, deleted, root)
        self.valid = valid
        self.contiguous = contiguous

    def __repr__(self) -> str:
        return f"<cluster {self.cluster}{' contiguous' if self.contiguous else ''}>"


class EntrySet:
    """A directory entry set as found on disk (``raw`` holds its bytes)."""

    __slots__ = ("offset", "raw")

    def __init__(self, offset: int, raw: bytes) -> None:
        self.offset = offset
        self.raw = raw

    @property
    def file(self) -> Container:
        """The File entry, parsed with :data:`~.structs.FileEntry`."""
        return FileEntry.parse(self.raw[:ENTRY_SIZE])

    @property
    def stream(self) -> Container:
        """The Stream Extension entry, parsed with :data:`~.structs.StreamExtensionEntry`."""
        return StreamExtensionEntry.parse(self.raw[ENTRY_SIZE : 2 * ENTRY_SIZE])

    def __repr__(self) -> str:
        return f"<EntrySet {len(self.raw) // ENTRY_SIZE} entries at {self.offset:#x}>"



class DirectoryMixin:
    """Listing directories (mixed into :class:`~.filesystem.ExfatFileSystem`)."""

    _root_cache: list[Entry] | None = None  # the root is parsed once, then copied
    label: str | None = None
    guid: str | None = None

    def scan_root(self) -> None:
        """Read the root's bitmap, up-case table, label and GUID entries."""
        root = self.root()
        raw = self._dir_raw(root)
        bitmaps = {}
        upcase = None
        for off, ent in self._iter_slots(raw):
            t = ent[0]
            if t == T_END:
                break
            if t == T_BITMAP:
                bm = AllocationBitmapEntry.parse(ent)
                bitmaps.setdefault(bm.BitmapFlags & SECOND_BITMAP, (off, bm))
            elif t == T_UPCASE and upcase is None:
                upcase = (off, UpcaseTableEntry.parse(ent))
            elif t == T_LABEL and self.label is None:
                self.label = volume_label_text(ent) or None
            elif t == T_GUID and self.guid is None:
                g = VolumeGuidEntry.parse(ent)
                if set_checksum(ent) != g.SetChecksum:
                    self.finding("warning", "volume GUID entry", off, "set checksum mismatch")
                self.guid = str(uuidlib.UUID(bytes_le=g.VolumeGuid))
        want = self.active if self.active in bitmaps else 0
        if want not in bitmaps:
            msg = "no allocation bitmap entry in the root directory"
            if self.strict:
                rc = self.boot.FirstClusterOfRootDirectory
                self.fail(CorruptImage, msg, "root directory", self.cluster_offset(rc))
            self.finding(
                "error", "root directory", None, msg + "; every cluster is treated as in use"
            )
        else:
            off, bm = bitmaps[want]
            self.bitmap_entry = (off, bm)
            self.load_bitmap(off, bm)
        if upcase is None:
            self.finding(
                "warning",
                "root directory",
                None,
                "no up-case table; names compare with Unicode case folding",
            )
        else:
            self.load_upcase(*upcase)

    def root(self) -> Entry:
        rc = self.boot.FirstClusterOfRootDirectory
        key = ExfatKey(rc, 0, 0, False, root=True)
        return Entry(name="", kind=DIR, path="/", inode=2, key=key)

    def dir_id(self, entry: Entry) -> tuple[str, int]:
        return ("cluster", entry.key.cluster)

    def can_list_deleted_dir(self, entry: Entry) -> bool:
        runs, problem = self.stream_runs(entry.key, min(entry.key.size, MAX_DIR_BYTES), "")
        return problem is None and bool(runs)

    def _dir_raw(self, entry: Entry) -> list[tuple[int, bytes]]:
        """The directory's content as (volume offset, bytes) segments."""
        return [(off, self.source.read(off, n)) for off, n in self._dir_extents(entry)]

    def directory_damage(self, entry: Entry) -> int:
        """Bytes of a directory's clusters that could not be read."""
        return sum(n for off, length in self._dir_extents(entry)
                   for _a, n in self.source.damaged_ranges(off, length))

    def _dir_extents(self, entry: Entry) -> list[tuple[int, int]]:
        """Where the directory's content lies, as (volume offset, length) pieces."""
        k: ExfatKey = entry.key
        if k.cluster == LOST_CLUSTER:  # /$Lost is not on the volume
            return []
        if k.root:
            runs, problem, ended = self.fat.chain(
                k.cluster, MAX_DIR_BYTES // self.cluster_size, self.max_cluster
            )
            if problem:
                self.finding(
                    "error",
                    "root directory",
                    self.cluster_offset(k.cluster),
                    f"/: {problem}; listing what was read",
                )
        else:
            nbytes = min(k.size, MAX_DIR_BYTES)
            if k.size > MAX_DIR_BYTES:
                self.finding(
                    "warning",
                    "directory",
                    None,
                    f"{entry.path}: larger than {MAX_DIR_BYTES >> 20} MiB; the rest is not read",
                )
            runs, problem = self.stream_runs(k, nbytes, entry.path)
            if problem:
                self.finding(
                    "error",
                    "directory",
                    self.cluster_offset(k.cluster) if 2 <= k.cluster <= self.max_cluster else None,
                    f"{entry.path}: {problem}; listing what was read",
                )
            runs = runs or []
        return directory_extents(self, runs, entry.path)

    class _Slots:
        """A directory's 32-byte slots over one buffer, with their volume offsets."""

        def __init__(self, segs: list[tuple[int, bytes]]) -> None:
            self.buf = b"".join(b for _, b in segs)
            self.n = len(self.buf) // ENTRY_SIZE
            self.starts = []  # slot index where each segment starts
            self.bases = []
            pos = 0
            for base, b in segs:
                self.starts.append(pos)
                self.bases.append(base)
                pos += len(b) // ENTRY_SIZE

        def __len__(self) -> int:
            return self.n

        def entry(self, i: int) -> bytes:
            return self.buf[ENTRY_SIZE * i : ENTRY_SIZE * (i + 1)]

        def offset(self, i: int) -> int:
            k = bisect.bisect_right(self.starts, i) - 1
            return self.bases[k] + ENTRY_SIZE * (i - self.starts[k])

    @classmethod
    def _iter_slots(cls, segs):
        slots = cls._Slots(segs)
        for i in range(len(slots)):
            yield slots.offset(i), slots.entry(i)

    def list_dir(self, entry: Entry) -> list[Entry]:
        if entry.kind != DIR:
            raise InvalidArgument(f"{self.name}: {entry.path} is not a directory")
        if entry.key.root and self._root_cache is not None:
            return [e.copy() for e in self._root_cache] + self.lost_children(entry)
        k = entry.key
        kept = self.listings.pop(self.folder_id(k), None) if self.listings else None
        if kept is not None and not entry.deleted:  # listed by the lost-folder scan
            if not isinstance(kept, list):  # plain rows (.columns): the Entries now
                kept = self._parse(entry, kept.segs)
            return kept + self.lost_children(entry)
        ahead = self.taken_ahead(entry.key)
        if ahead is not None:
            out = self._parse(entry, *ahead)
        else:
            out = self._parse(entry, self._dir_raw(entry))
        if entry.key.root:
            self._root_cache = out
            out = [e.copy() for e in out]
        return out + self.lost_children(entry)

    def _parse(self, d: Entry, segs, sums=None, hashes=None) -> list[Entry]:
        """The Entries of a folder's bytes; ``sums``, ``hashes``: each slot's set checksum
        and name hash (:func:`.sets.slot_sums`), computed here when not given."""
        slots = self._Slots(segs)
        buf = slots.buf
        if sums is None:
            (sums, hashes), = slot_sums(np.frombuffer(buf, dtype=np.uint8), [0], [len(slots)],
                                        self.upcase)
        sums, hashes = sums.tolist(), hashes.tolist()  # read one at a time
        out: list[Entry] = []
        n = len(slots)
        i = 0
        where = d.path or "/"
        while i < n:
            t = buf[ENTRY_SIZE * i]
            if t == T_END:
                break
            if t & TYPE_CODE != T_FILE & TYPE_CODE:
                i += 1
                continue
            at = ENTRY_SIZE * i
            off = slots.offset(i)
            deleted = not t & IN_USE
            sc = buf[at + SECONDARY_COUNT]
            if sc < MIN_SECONDARY or sc > MAX_SECONDARY or i + sc >= n:
                if not deleted:
                    self.finding(
                        "error",
                        "directory",
                        off,
                        f"{where}: file entry with {sc} secondary entries",
                    )
                i += 1
                continue
            types = buf[at + ENTRY_SIZE : at + ENTRY_SIZE * (sc + 1) : ENTRY_SIZE]
            state = 0 if deleted else IN_USE
            if types[0] != (T_STREAM & TYPE_CODE) | state:
                if not deleted:
                    self.finding(
                        "error",
                        "directory",
                        off,
                        f"{where}: file entry not followed by a stream extension",
                    )
                i += 1
                continue
            rest = types[1:]
            nnames = len(rest) - len(rest.lstrip(NAME_TYPES[state]))
            if nnames == 0 or (min(types) < IN_USE if state else max(types) >= IN_USE):
                if not deleted:
                    self.finding(
                        "error", "directory", off, f"{where}: entry set without file name entries"
                    )
                i += 1
                continue
            raw = buf[at : at + ENTRY_SIZE * (sc + 1)]
            fe = FileRecord._make(FILE_ENTRY.unpack_from(buf, at))
            ok = sums[i] == fe.SetChecksum
            st = StreamRecord._make(STREAM_ENTRY.unpack_from(buf, at + ENTRY_SIZE))
            first = at + 2 * ENTRY_SIZE
            units = (buf[first + NAME_FROM : first + NAME_TO] if nnames == 1 else b"".join(
                buf[first + ENTRY_SIZE * k + NAME_FROM : first + ENTRY_SIZE * k + NAME_TO]
                for k in range(nnames)))
            name = units[: 2 * st.NameLength].decode("utf-16-le", "replace")
            if not ok:
                if deleted:
                    i += 1  # slots partly reused: not a whole deleted set
                    continue
                self.finding(
                    "error", "directory", off, f"{where}: set checksum mismatch for {name!r}"
                )
            if not deleted and self.upcase is not None:
                h = hashes[i]
                if h < 0:  # names not summed with the others (.sets.name_hashes)
                    up = self.upcase[np.frombuffer(units[: 2 * st.NameLength],
                                                   dtype=NAME_UNIT_DTYPE)]
                    h = name_hash(up.tobytes())
                if h != st.NameHash:
                    self.finding(
                        "warning", "directory", off, f"{where}: name hash mismatch for {name!r}"
                    )
            out.append(self._entry(d, off, raw, fe, st, name, deleted or d.deleted))
            i += 1 + sc
        return out

    def _entry(
        self, d: Entry, off: int, raw: bytes, fe: FileRecord, st: StreamRecord, name: str,
        deleted: bool
    ) -> Entry:
        created, c_off = exfat_time(
            fe.CreateTimestamp, fe.Create10msIncrement, fe.CreateUtcOffset
        )
        modified, m_off = exfat_time(
            fe.LastModifiedTimestamp, fe.LastModified10msIncrement, fe.LastModifiedUtcOffset
        )
        accessed, a_off = exfat_time(fe.LastAccessedTimestamp, 0, fe.LastAccessedUtcOffset)
        is_dir = bool(fe.FileAttributes & ATTR_DIRECTORY)
        contiguous = bool(st.GeneralSecondaryFlags & FLAG_NO_FAT_CHAIN)
        first = st.FirstCluster
        size = st.DataLength
        valid = min(st.ValidDataLength, size)
        if st.ValidDataLength > size and not deleted:
            self.finding(
                "warning",
                "stream extension",
                off + ENTRY_SIZE,
                f"{name!r}: ValidDataLength is larger than DataLength",
            )
        key = ExfatKey(first, size, valid, contiguous, deleted)
        e = Entry(
            name=name,
            kind=DIR if is_dir else FILE,
            size=size,
            created=created,
            modified=modified,
            accessed=accessed,
            inode=self.inode_of(off),
            deleted=deleted,
            key=key,
            raw=EntrySet(off, raw),
        )
        csize = self.cluster_size
        if deleted:
            e.allocated = 0
            runs, problem = self.stream_runs(key, size, name) if size else ([], None)
            e.recoverable = problem is None
        else:
            e.allocated = -(-size // csize) * csize
        e.extra = {
            "attributes": attr_text(fe.FileAttributes),
            "first_cluster": first,
            "no_fat_chain": contiguous,
            "valid_size": valid,
            "created_utc_offset": c_off,
            "modified_utc_offset": m_off,
            "accessed_utc_offset": a_off,
        }
        return e

