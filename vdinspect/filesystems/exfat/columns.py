"""exFAT ``files()`` column-wise: FAT's column walk (:mod:`..fat.columns`) over exFAT
folders, a folder's entry sets decoded together with numpy.

A folder is plain when its slots up to the end mark are whole in-use sets one after the
other (a File entry, its Stream Extension, then only File Name entries holding the
NameLength units, no NUL among them), every SetChecksum and NameHash right and no
ValidDataLength past DataLength: then nothing about it is a finding and its rows are
columns (:class:`~..fat.columns.DirRows`). Anything else (a deleted set, a broken sum,
another entry type, the root, a deleted or scan-found folder) is listed the full way,
:meth:`~.entries.DirectoryMixin._parse`, so its rows and findings are what they were.
The entry layouts are :data:`~.structs.FileEntry` and :data:`~.structs.StreamExtensionEntry`
as ``layout.numpy_dtype`` gives them.
"""

from __future__ import annotations

from ...errors import CorruptImage, VDInspectError
from ...layout import numpy_dtype
from ...lazy import np
from ..base import DIR, Entry
from ..entry import MAX_DEPTH, MAX_PATH
from ..fat.columns import NAT, ColumnsMixin, DirRows, dos_times
from ..fat.structs import attr_text
from .entries import ExfatKey
from .sets import (
    NAME_AT,
    FileRecord,
    StreamRecord,
    slot_sums,
)
from .structs import (
    ATTR_DIRECTORY,
    ENTRY_SIZE,
    FILE_ENTRY,
    FLAG_NO_FAT_CHAIN,
    STREAM_ENTRY,
    T_END,
    T_FILE,
    T_NAME,
    T_STREAM,
    FileEntry,
    StreamExtensionEntry,
)

US_MINUTE = 60_000_000


def utc_times(stamp, tens, offset) -> tuple:
    """exFAT timestamps as datetime64[us] (UTC where the offset is recorded, as
    :func:`~.entries.exfat_time`) and the offsets in minutes (None where not recorded)."""
    stamp = stamp.astype(np.int64)
    t = dos_times(stamp >> 16, stamp & 0xFFFF, tens).view(np.int64)
    offset = offset.astype(np.int64)
    valid = offset & 0x80 != 0
    steps = offset & 0x7F
    minutes = np.where(steps >= 64, steps - 128, steps) * 15
    t = np.where(valid & (t != NAT), t - minutes * US_MINUTE, t)
    return t.view("datetime64[us]"), [m if v else None for m, v in
                                      zip(minutes.tolist(), valid.tolist())]


class ExfatColumnsMixin(ColumnsMixin):
    """The column-wise ``files()`` of :class:`~.filesystem.ExfatFileSystem`."""

    plain_extras = ("attributes", "first_cluster", "no_fat_chain", "valid_size",
                    "created_utc_offset", "modified_utc_offset", "accessed_utc_offset")

    def folder_listing(self, d: Entry) -> DirRows | list[Entry]:
        got = self.listings.pop(self.folder_id(d.key), None) if self.listings else None
        if got is None:
            ahead = self.taken_ahead(d.key)
            got = self.decode_dir(d, *(ahead or (self._dir_raw(d),)))
        return got

    def decode_dir(self, d: Entry, segs, sums=None, hashes=None) -> DirRows | list[Entry]:
        """A folder's listing: :class:`DirRows` when it is plain, else its Entries."""
        got = (None if d.deleted or d.key.root or d.found_by != "index"
               else self.plain_sets(segs, sums, hashes))
        return self._parse(d, segs, sums, hashes) if got is None else got

    def plain_sets(self, segs, sums=None, hashes=None) -> DirRows | None:
        """The rows of a plain folder's bytes as columns, or None when it is not plain."""
        buf = b"".join(b for _o, b in segs)
        n = len(buf) // ENTRY_SIZE
        flat = np.frombuffer(buf, dtype=np.uint8, count=n * ENTRY_SIZE)
        if sums is None:
            (sums, hashes), = slot_sums(flat, [0], [n], self.upcase)
        raw = flat.reshape(n, ENTRY_SIZE)
        types = raw[:, 0]
        end = np.flatnonzero(types == T_END)
        m = int(end[0]) if end.size else n
        types = types[:m]
        at = np.flatnonzero(types == T_FILE)
        if not at.size:
            return None
        sc = raw[at, 1].astype(np.int64)
        nxt = at + sc + 1
        if at[0] != 0 or (at[1:] != nxt[:-1]).any() or nxt[-1] != m:
            return None
        if (types[at + 1] != T_STREAM).any():
            return None
        kind = np.full(m, T_NAME, dtype=np.uint8)
        kind[at], kind[at + 1] = T_FILE, T_STREAM
        if (types != kind).any():
            return None
        fe = raw[at].copy().view(numpy_dtype(FileEntry)).ravel()
        st = raw[at + 1].copy().view(numpy_dtype(StreamExtensionEntry)).ravel()
        length = st["NameLength"].astype(np.int64)
        size = st["DataLength"].astype(np.int64)
        valid = st["ValidDataLength"].astype(np.int64)
        if ((sums[at] != fe["SetChecksum"]).any() or (15 * (sc - 1) < length).any()
                or (valid > size).any() or (size < 0).any()):
            return None
        if self.upcase is not None and (hashes[at] != st["NameHash"]).any():
            return None
        # the names: every set's units, one after the other, NUL between names
        k = len(at)
        rep = np.repeat(np.arange(k), length)
        q = np.arange(int(length.sum())) - np.repeat(np.cumsum(length) - length, length)
        pos = (at[rep] + 2 + q // 15) * ENTRY_SIZE + NAME_AT + 2 * (q % 15)
        units = flat[pos].astype(np.uint16) | flat[pos + 1].astype(np.uint16) << 8
        if not units.all():
            return None
        text = np.zeros(len(units) + k, dtype=np.uint16)
        text[np.arange(len(units)) + rep] = units
        names = text.astype("<u2").tobytes().decode("utf-16-le", "replace").split("\0")[:k]
        # volume offsets of the File entries
        offs = [base + ENTRY_SIZE * np.arange(len(b) // ENTRY_SIZE, dtype=np.int64)
                for base, b in segs]
        off = np.concatenate(offs)[at] if offs else np.zeros(0, np.int64)
        attr = fe["FileAttributes"].astype(np.int64)
        is_dir = attr & ATTR_DIRECTORY != 0
        csize = self.cluster_size
        created, c_off = utc_times(fe["CreateTimestamp"], fe["Create10msIncrement"],
                                   fe["CreateUtcOffset"])
        modified, m_off = utc_times(fe["LastModifiedTimestamp"],
                                    fe["LastModified10msIncrement"], fe["LastModifiedUtcOffset"])
        accessed, a_off = utc_times(fe["LastAccessedTimestamp"], None,
                                    fe["LastAccessedUtcOffset"])
        first = st["FirstCluster"].astype(np.int64)
        cols = {
            "is_dir": is_dir, "size": size, "allocated": -(-size // csize) * csize,
            "created": created, "modified": modified, "accessed": accessed,
            "inode": (off - self.heap_offset) // ENTRY_SIZE + 3,
            "attributes": list(map(attr_text, attr.tolist())),
            "first_cluster": first.tolist(),
            "no_fat_chain": (st["GeneralSecondaryFlags"] & FLAG_NO_FAT_CHAIN != 0).tolist(),
            "valid_size": valid.tolist(),
            "created_utc_offset": c_off, "modified_utc_offset": m_off,
            "accessed_utc_offset": a_off,
        }
        subdirs = []
        for j in np.flatnonzero(is_dir).tolist():
            i = int(at[j])
            b = buf[ENTRY_SIZE * i : ENTRY_SIZE * (i + 1 + int(sc[j]))]
            e = self._entry(None, int(off[j]), b, FileRecord._make(FILE_ENTRY.unpack_from(b)),
                            StreamRecord._make(STREAM_ENTRY.unpack_from(b, ENTRY_SIZE)),
                            names[j], False)
            subdirs.append((j, e))
        return DirRows(segs, names, cols, subdirs)



    def reached_runs(self) -> list[tuple[int, int]]:
        """The cluster runs of every live file and folder the root reaches, listing each
        folder once (plain ones as columns) and keeping the listings for the walk that
        follows: what the lost-folder scan needs from the tree."""
        out: list[tuple[int, int]] = []
        root = self.root()
        seen = {root.key.cluster}
        stack = [(root, 0)]
        csize, top = self.cluster_size, self.max_cluster
        while stack:
            d, depth = stack.pop()
            try:
                if d.key.root:
                    kids = self.list_dir(d)
                else:
                    ahead = self.taken_ahead(d.key)
                    kids = self.decode_dir(d, *(ahead or (self._dir_raw(d),)))
                    self.listings[self.folder_id(d.key)] = kids
            except CorruptImage:
                continue  # the walk that follows lists it again, and reports it
            except VDInspectError:
                if self.strict:
                    raise
                continue
            if isinstance(kids, DirRows):
                c = kids.cols
                first = np.asarray(c["first_cluster"], dtype=np.int64)
                need = -(-c["size"] // csize)
                contiguous = np.asarray(c["no_fat_chain"], dtype=bool)
                some = (c["size"] > 0) & (first != 0)
                fit = some & contiguous & (first >= 2) & (first + need - 1 <= top)
                out += zip(first[fit].tolist(), need[fit].tolist())
                for j in np.flatnonzero(some & ~contiguous).tolist():
                    key = ExfatKey(int(first[j]), int(c["size"][j]), int(c["valid_size"][j]), False)
                    runs, _ = self.stream_runs(key, key.size, "")
                    out += runs or []
                subs = [e for _j, e in kids.subdirs]
            else:
                subs = []
                for e in kids:
                    if e.deleted:
                        continue
                    k = e.key
                    if k.size and k.cluster:
                        runs, _ = self.stream_runs(k, k.size, "")
                        out += runs or []
                    if e.kind == DIR:
                        subs.append(e)
            prefix = "/" if d.path in ("", "/") else d.path + "/"
            for e in reversed(subs):
                e.parent, e.path = d.path, prefix + e.name
                if (e.key.cluster in seen or depth + 1 > MAX_DEPTH
                        or len(e.path) > MAX_PATH):
                    continue
                seen.add(e.key.cluster)
                stack.append((e, depth + 1))
        return out
