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
    T_END,
    T_FILE,
    T_NAME,
    FileEntry,
    FileNameEntry,
    StreamExtensionEntry,
)

TYPE_CODE = 0x7F  # EntryType without the InUse bit
MIN_SECONDARY, MAX_SECONDARY = 2, 18  # a File entry's SecondaryCount: stream + 1..17 names
CHUNK = 1 << 15  # sets summed together at most (bounds the gathered bytes to ~20 MiB)
MAX_AHEAD_BYTES = 256 << 20  # folder bytes read ahead at most
ATTRIBUTES_AT = offset_of(FileEntry, "FileAttributes")
NAME_LENGTH_AT = offset_of(StreamExtensionEntry, "NameLength")
NAME_AT = offset_of(FileNameEntry, "FileName")

# the fast path: File and Stream Extension entries as tuples of integers, named as declared
FileRecord = namedtuple("FileRecord", [sc.name for sc in FileEntry.subcons])
StreamRecord = namedtuple("StreamRecord", [sc.name for sc in StreamExtensionEntry.subcons])


def rotate_sums(cols: np.ndarray) -> np.ndarray:
    """The exFAT 16-bit rotate-right-and-add sum down each column of ``cols`` (bytes by
    rows, one column per sum; leading zero bytes leave a sum at 0)."""
    c = np.zeros(cols.shape[1], dtype=np.uint32)
    for col in cols.astype(np.uint32):
        c = ((c >> 1) | ((c & 1) << 15)) + col & 0xFFFF
    return c


def set_checksums(buf: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The SetChecksum of the sets of ``counts`` entries at byte ``starts`` of ``buf`` (a
    flat uint8 array), as int64: every entry type counted with InUse set (a deleted set
    was summed while in use), the SetChecksum bytes skipped."""
    starts = np.asarray(starts, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64)
    out = np.zeros(len(starts), dtype=np.int64)
    skip = sorted(SET_CHECKSUM_SKIP)
    aligned = len(buf) % ENTRY_SIZE == 0 and not (starts % ENTRY_SIZE).any()
    rows = buf.reshape(-1, ENTRY_SIZE) if aligned else None  # sets start on entries
    for cnt in np.unique(counts).tolist():
        where = np.flatnonzero(counts == cnt)
        pos = np.delete(np.arange(cnt * ENTRY_SIZE), skip)  # the bytes summed, in order
        heads = np.flatnonzero(pos % ENTRY_SIZE == 0)  # the entry type bytes
        for lo in range(0, len(where), CHUNK):
            w = where[lo : lo + CHUNK]
            if rows is not None:  # whole entries gathered, then the bytes picked
                got = rows[starts[w][:, None] // ENTRY_SIZE + np.arange(cnt)[None, :]]
                cols = got.reshape(len(w), cnt * ENTRY_SIZE)[:, pos].T
            else:
                cols = buf[pos[:, None] + starts[w][None, :]]  # (bytes, sets)
            cols[heads] |= IN_USE
            out[w] = rotate_sums(cols)
    return out


def name_hashes(buf: np.ndarray, starts: np.ndarray, upcase: np.ndarray | None) -> np.ndarray:
    """The NameHash of the up-cased names of the in-use sets at byte ``starts`` of ``buf``
    (a File entry, its Stream Extension, then File Name entries), -1 for a set whose
    name entries do not hold NameLength units (:func:`.entries.name_hash` then sums it)."""
    starts = np.asarray(starts, dtype=np.int64)
    out = np.full(len(starts), -1, dtype=np.int64)
    if upcase is None or not len(starts):
        return out
    sc = buf[starts + SECONDARY_COUNT].astype(np.int64)
    length = buf[starts + ENTRY_SIZE + NAME_LENGTH_AT].astype(np.int64)
    fits = 15 * (sc - 1) >= length
    width = int(length[fits].max()) if fits.any() else 0
    if not width:
        return out
    for k in range(2, 2 + (width + 14) // 15):  # the slots holding the units: names
        need = fits & (15 * (k - 2) < length)
        fits &= ~need | (buf[starts + np.where(need, k, 0) * ENTRY_SIZE] == T_NAME)
    q = np.arange(width)[:, None] - (width - length)[None, :]  # unit index, left padded
    real = (q >= 0) & fits[None, :]
    qq = np.where(real, q, 0)
    at = starts[None, :] + (2 + qq // 15) * ENTRY_SIZE + NAME_AT + 2 * (qq % 15)
    if len(buf) % 2 == 0 and not (starts % 2).any():  # units on even bytes: one gather
        units = buf.view("<u2")[at // 2]
    else:
        units = buf[at].astype(np.uint16) | buf[at + 1].astype(np.uint16) << 8
    up = np.where(real, upcase[units], 0).astype(np.uint16)
    cols = np.empty((2 * width, len(starts)), dtype=np.uint8)
    cols[0::2], cols[1::2] = up & 0xFF, up >> 8  # UTF-16-LE bytes, in order
    out[fits] = rotate_sums(cols[:, fits])
    return out


def slot_sums(buf: np.ndarray, bases: list[int], counts: list[int],
              upcase: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each folder of ``counts[j]`` slots at byte ``bases[j]`` of ``buf`` (a flat uint8
    array), all summed together: (the checksum of the set a File entry in each slot
    starts, the name hash of an in-use one), -1 for other slots, sets that do not fit
    and names :func:`name_hashes` leaves."""
    at_all, own = [], []
    for base, n in zip(bases, counts):
        types = buf[base : base + n * ENTRY_SIZE : ENTRY_SIZE]
        at = np.flatnonzero(types & TYPE_CODE == T_FILE & TYPE_CODE)
        sc = buf[base + at * ENTRY_SIZE + SECONDARY_COUNT].astype(np.int64)
        at = at[(sc >= MIN_SECONDARY) & (sc <= MAX_SECONDARY) & (at + sc < n)]
        at_all.append(base + at * ENTRY_SIZE)
        own.append(at)
    starts = np.concatenate(at_all) if at_all else np.zeros(0, np.int64)
    counts_of = buf[starts + SECONDARY_COUNT].astype(np.int64) + 1
    sums = set_checksums(buf, starts, counts_of)
    hashes = np.full(len(starts), -1, dtype=np.int64)
    live = np.flatnonzero(buf[starts] == T_FILE)
    hashes[live] = name_hashes(buf, starts[live], upcase)
    out, k = [], 0
    for n, at in zip(counts, own):
        a, b = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
        a[at], b[at] = sums[k : k + len(at)], hashes[k : k + len(at)]
        k += len(at)
        out.append((a, b))
    return out


class SetsMixin:
    """Folders read ahead with their sets' checksums (mixed into the exFAT reader)."""

    #: :meth:`folder_id` of a folder -> (its bytes as read, slot checksums)
    ahead: dict = {}
    #: while the lost-folder scan walks (and until the walk after it takes them):
    #: :meth:`folder_id` -> the live folder's Entries, so that each is parsed once
    listings: dict | None = None

    @staticmethod
    def folder_id(key) -> tuple[int, int, bool]:
        """What names a folder's bytes: (first cluster, size, contiguous)."""
        return (key.cluster, key.size, key.contiguous)

    def taken_ahead(self, key) -> tuple[list, np.ndarray, np.ndarray] | None:
        """The bytes, slot checksums and name hashes read ahead for the folder with ``key`` (once)."""
        if not self.ahead or key.root or key.deleted:
            return None
        return self.ahead.pop(self.folder_id(key), None)

    def quiet_extents(self, cluster: int, size: int,
                      contiguous: bool) -> list[tuple[int, int]] | None:
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
            bufs = [b"".join(b for _o, b in segs) for _key, segs in level]
            bases = np.cumsum([0] + [len(b) for b in bufs[:-1]]).tolist()
            flat = np.frombuffer(b"".join(bufs), dtype=np.uint8)
            ns = [len(b) // ENTRY_SIZE for b in bufs]
            sums = slot_sums(flat, bases, ns, self.upcase)
            nxt = []
            for (key, segs), b, (cs, hs) in zip(level, bufs, sums):
                if key is not None:
                    self.ahead[key] = (segs, cs, hs)
                # the live folders named before the end mark: the next level
                raw = np.frombuffer(b, np.uint8)
                end = np.flatnonzero(raw[::ENTRY_SIZE] == T_END)
                live = np.flatnonzero(cs >= 0)
                live = live[raw[live * ENTRY_SIZE] == T_FILE]
                if end.size:
                    live = live[live < end[0]]
                attr = raw[live * ENTRY_SIZE + ATTRIBUTES_AT]
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
            level = nxt
