"""exFAT entry-set checksums many at once, and the folders read ahead for them (issue 23).

A set's SetChecksum is a 16-bit rotate-right-and-add over its bytes (the checksum field
itself skipped): a sequential sum per set, but the same steps for every set of one
length, so :func:`set_checksums` runs the steps once per byte position over a column of
sets with numpy. :meth:`SetsMixin.read_ahead` reads the live folders below the root a
level at a time and sums every File entry of a level together; :meth:`_parse
<.entries.DirectoryMixin._parse>` then takes the bytes and sums from there instead of
reading and summing a folder at a time. It records nothing: a folder whose clusters show
any problem is left to the listing (which reports it).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ...layout import offset_of
from ..fat.clusters import readable_runs
from .structs import (
    ATTR_DIRECTORY,
    ENTRY_SIZE,
    FLAG_NO_FAT_CHAIN,
    IN_USE,
    SECONDARY_COUNT,
    SET_CHECKSUM_SKIP,
    STREAM_ENTRY,
    T_FILE,
    FileEntry,
    StreamExtensionEntry,
)

TYPE_CODE = 0x7F  # EntryType without the InUse bit
MIN_SECONDARY, MAX_SECONDARY = 2, 18  # a File entry's SecondaryCount: stream + 1..17 names
CHUNK = 1 << 15  # sets summed together at most (bounds the gathered bytes to ~20 MiB)
MAX_AHEAD_BYTES = 256 << 20  # folder bytes read ahead at most
ATTRIBUTES_AT = offset_of(FileEntry, "FileAttributes")

# the fast path: File and Stream Extension entries as tuples of integers, named as declared
FileRecord = namedtuple("FileRecord", [sc.name for sc in FileEntry.subcons])
StreamRecord = namedtuple("StreamRecord", [sc.name for sc in StreamExtensionEntry.subcons])


def set_checksums(buf: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The SetChecksum of the sets of ``counts`` entries at byte ``starts`` of ``buf`` (a
    flat uint8 array), as int64: every entry type counted with InUse set (a deleted set
    was summed while in use), the SetChecksum bytes skipped."""
    starts = np.asarray(starts, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    out = np.zeros(len(starts), dtype=np.int64)
    skip = sorted(SET_CHECKSUM_SKIP)
    for cnt in np.unique(counts).tolist():
        where = np.flatnonzero(counts == cnt)
        pos = np.delete(np.arange(cnt * ENTRY_SIZE), skip)  # the bytes summed, in order
        heads = np.flatnonzero(pos % ENTRY_SIZE == 0)  # the entry type bytes
        for lo in range(0, len(where), CHUNK):
            w = where[lo : lo + CHUNK]
            cols = buf[pos[:, None] + starts[w][None, :]].astype(np.uint32)  # (bytes, sets)
            cols[heads] |= IN_USE
            c = np.zeros(len(w), dtype=np.uint32)
            for col in cols:
                c = ((c >> 1) | ((c & 1) << 15)) + col & 0xFFFF
            out[w] = c
    return out


def slot_checksums(buf: np.ndarray, base: int = 0, n: int | None = None) -> np.ndarray:
    """For each 32-byte slot of a folder's bytes (``n`` slots from byte ``base`` of the flat
    uint8 array ``buf``): the checksum of the set a File entry there (in use or deleted)
    starts, -1 for other slots and for sets that do not fit."""
    if n is None:
        n = (len(buf) - base) // ENTRY_SIZE
    out = np.full(n, -1, dtype=np.int64)
    if not n:
        return out
    types = buf[base : base + n * ENTRY_SIZE : ENTRY_SIZE]
    at = np.flatnonzero(types & TYPE_CODE == T_FILE & TYPE_CODE)
    sc = buf[base + at * ENTRY_SIZE + SECONDARY_COUNT].astype(np.int64)
    ok = (sc >= MIN_SECONDARY) & (sc <= MAX_SECONDARY) & (at + sc < n)
    at, sc = at[ok], sc[ok]
    out[at] = set_checksums(buf, base + at * ENTRY_SIZE, sc + 1)
    return out


class SetsMixin:
    """Folders read ahead with their sets' checksums (mixed into the exFAT reader)."""

    #: :meth:`folder_id` of a folder -> (its bytes as read, slot checksums)
    ahead: dict = {}
    #: while the lost-folder scan walks (and until the walk after it takes them):
    #: :meth:`folder_id` -> the live folder's Entries, so that each is parsed once
    listings: dict | None = None
    keeping = False  # whether listings are being kept (the scan's walk)

    @staticmethod
    def folder_id(key) -> tuple[int, int, bool]:
        """What names a folder's bytes: (first cluster, size, contiguous)."""
        return (key.cluster, key.size, key.contiguous)

    def taken_ahead(self, key) -> tuple[list, np.ndarray] | None:
        """The bytes and slot checksums read ahead for the folder with ``key`` (once)."""
        if not self.ahead or key.root or key.deleted:
            return None
        return self.ahead.pop(self.folder_id(key), None)

    def quiet_extents(self, cluster: int, size: int, contiguous: bool):
        """A live folder's (volume offset, length) pieces, or None when finding them would
        record anything (the listing then reads it the usual way)."""
        from .entries import MAX_DIR_BYTES, ExfatKey

        if size > MAX_DIR_BYTES or cluster < 2:
            return None
        runs, problem = self.stream_runs(ExfatKey(cluster, size, size, contiguous), size, "")
        if problem or not runs:
            return None
        if readable_runs(self, runs) != runs:
            return None
        return [(self.cluster_offset(s), k * self.cluster_size) for s, k in runs]

    def read_ahead(self, root: list[tuple[int, int]]) -> None:
        """Read every live folder the root (its (volume offset, length) pieces) reaches, a
        level at a time, and sum the sets of each level together (kept in :attr:`ahead`
        for the listings that follow)."""
        self.ahead = {}
        level = [(None, [(o, self.source.read(o, k)) for o, k in root])]
        seen: set = set()
        total = 0
        while level:
            bufs, bases = [], []
            pos = 0
            for _key, segs in level:
                b = b"".join(s for _o, s in segs)
                bufs.append(b)
                bases.append(pos)
                pos += len(b)
            flat = np.frombuffer(b"".join(bufs), dtype=np.uint8)
            nxt = []
            sums_of = []
            starts, counts, owner = [], [], []
            for j, b in enumerate(bufs):
                n = len(b) // ENTRY_SIZE
                types = flat[bases[j] : bases[j] + n * ENTRY_SIZE : ENTRY_SIZE]
                at = np.flatnonzero(types & TYPE_CODE == T_FILE & TYPE_CODE)
                sc = flat[bases[j] + at * ENTRY_SIZE + SECONDARY_COUNT].astype(np.int64)
                ok = (sc >= MIN_SECONDARY) & (sc <= MAX_SECONDARY) & (at + sc < n)
                at, sc = at[ok], sc[ok]
                starts.append(bases[j] + at * ENTRY_SIZE)
                counts.append(sc + 1)
                owner.append(at)
                sums_of.append(n)
                # live folders named here: the next level
                live = at[types[at] == T_FILE]
                attr = flat[bases[j] + live * ENTRY_SIZE + ATTRIBUTES_AT]
                for i in live[attr & ATTR_DIRECTORY != 0].tolist():
                    st = StreamRecord._make(STREAM_ENTRY.unpack_from(b, (i + 1) * ENTRY_SIZE))
                    key = (st.FirstCluster, st.DataLength,
                           bool(st.GeneralSecondaryFlags & FLAG_NO_FAT_CHAIN))
                    if key in seen or total > MAX_AHEAD_BYTES:
                        continue
                    ext = self.quiet_extents(*key)
                    if ext is None:
                        continue
                    seen.add(key)
                    total += sum(k for _o, k in ext)
                    nxt.append((key, [(o, self.source.read(o, k)) for o, k in ext]))
            sums = set_checksums(flat, np.concatenate(starts), np.concatenate(counts))
            k = 0
            for j, (key, segs) in enumerate(level):
                slots = np.full(sums_of[j], -1, dtype=np.int64)
                m = len(owner[j])
                slots[owner[j]] = sums[k : k + m]
                k += m
                if key is not None:
                    self.ahead[key] = (segs, slots)
            level = nxt
