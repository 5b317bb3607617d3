"""Lost exFAT directories found by scanning the cluster heap (issue 16).

exFAT directories have no "." or ".." entries, so a directory whose entry set is gone (its
parent's clusters are unreadable or were overwritten) is recognised by what it holds: a
cluster marked in use in the allocation bitmap, reached by no live file or folder, whose
first entry starts an entry set (File entry, Stream Extension, File Names) with a valid
SetChecksum. Following clusters in the same state whose first entry is a directory entry
continue it. Each such directory is listed under ``/$Lost`` (exFAT keeps no link to the
parent) with ``found_by="scan"``; a lost directory that another lost one names is listed
only there.

Bounded: at most :data:`MAX_CANDIDATES` clusters are examined; a finding says what was not.
"""

from __future__ import annotations

import numpy as np

from ..base import DIR, Entry
from .entries import (
    LOST_CLUSTER,
    MAX_DIR_BYTES,
    MAX_SECONDARY,
    MIN_SECONDARY,
    ExfatKey,
    set_checksum,
)
from .structs import (
    ENTRY_SIZE,
    IN_USE,
    SECONDARY_COUNT,
    SET_CHECKSUM_AT,
    T_FILE,
    T_NAME,
    T_STREAM,
)

MAX_CANDIDATES = 1 << 18  # unreached in-use clusters whose first entry is read
LOST_DIR = "$Lost"
#: entry types a directory cluster may start with (a set can straddle clusters)
DIR_TYPES = frozenset(t & m for t in (T_FILE, T_STREAM, T_NAME) for m in (0xFF, ~IN_USE))


def starts_entry_set(raw: bytes) -> bool:
    """Whether ``raw`` begins with a whole File entry set (in use or deleted) whose
    SetChecksum is right: a File entry, a Stream Extension, then File Name entries."""
    t = raw[0]
    if t & ~IN_USE != T_FILE & ~IN_USE:
        return False
    sc = raw[SECONDARY_COUNT]
    if not MIN_SECONDARY <= sc <= MAX_SECONDARY or (sc + 1) * ENTRY_SIZE > len(raw):
        return False
    state = t & IN_USE
    types = [raw[i * ENTRY_SIZE] for i in range(1, sc + 1)]
    if types[0] != (T_STREAM & ~IN_USE) | state:
        return False
    if any(x != (T_NAME & ~IN_USE) | state for x in types[1:]):
        return False
    data = bytearray(raw[: (sc + 1) * ENTRY_SIZE])
    for i in range(sc + 1):
        data[i * ENTRY_SIZE] |= IN_USE  # the checksum was taken while the set was in use
    want = int.from_bytes(raw[SET_CHECKSUM_AT : SET_CHECKSUM_AT + 2], "little")
    return set_checksum(bytes(data)) == want


class ScanMixin:
    """Finding lost directories (mixed into :class:`~.filesystem.ExfatFileSystem`)."""

    #: [Entry] of the lost directories listed under /$Lost; None: not scanned yet ({}
    #: while the volume is being opened or scanned)
    _lost: list | dict | None = {}

    def lost_directories(self) -> list[Entry]:
        """The lost directories listed under ``/$Lost`` (found once, on first use)."""
        if self._lost is None:
            self._lost = {}
            self._lost = self._scan_lost()
        return self._lost or []

    def _scan_lost(self) -> list[Entry]:
        if self.bitmap is None:
            return []
        used = self.reached_clusters()
        n = min(len(self.bitmap), self.max_cluster - 1)
        cand = np.flatnonzero(self.bitmap[:n] & ~used[2 : 2 + n]) + 2
        if len(cand) > MAX_CANDIDATES:
            self.finding("info", "cluster heap", self.cluster_offset(int(cand[MAX_CANDIDATES])),
                         f"{len(cand) - MAX_CANDIDATES} unreached clusters in use were not "
                         "examined for lost directories")
            cand = cand[:MAX_CANDIDATES]
        cset = set(cand.tolist())
        csize = self.cluster_size
        head = min(csize, (MAX_SECONDARY + 1) * ENTRY_SIZE)
        groups: list[tuple[int, int]] = []
        taken: set[int] = set()
        for c in cand.tolist():
            if c in taken or self.cluster_offset(c) + csize > self.source.size:
                continue
            if not starts_entry_set(self.source.read(self.cluster_offset(c), head)):
                continue
            n = 1
            while (c + n in cset and n < MAX_DIR_BYTES // csize
                   and self.cluster_offset(c + n) + csize <= self.source.size
                   and self.source.read(self.cluster_offset(c + n), 1)[0] in DIR_TYPES):
                n += 1
            taken.update(range(c, c + n))
            groups.append((c, n))
        out = []
        named: set[int] = set()
        for c, n in groups:
            e = Entry(name=f"lost_dir_{c}", kind=DIR, size=n * csize, allocated=n * csize,
                      found_by="scan", key=ExfatKey(c, n * csize, n * csize, True),
                      note=(f"no directory entry names it (name unknown): found by scanning, "
                            f"clusters {c}..{c + n - 1} are in use, reached by no file, and "
                            "start with a checksummed entry set"))
            e.extra = {"attributes": "D", "first_cluster": c, "no_fat_chain": True}
            e.path = f"/{LOST_DIR}/{e.name}"
            named.update(k.key.cluster for k in self.list_dir(e) if k.kind == DIR)
            out.append(e)
        out = [e for e in out if e.key.cluster not in named]
        for e in out:
            self.finding("warning", "directory", self.cluster_offset(e.key.cluster),
                         f"lost directory at cluster {e.key.cluster} (no entry names it); "
                         f"listed as /{LOST_DIR}/{e.name}")
        return out

    def lost_children(self, entry: Entry) -> list[Entry]:
        """What the scan adds to a folder's listing: ``/$Lost`` in the root, the lost
        directories in ``/$Lost`` (copies a caller may change)."""
        k = entry.key
        if entry.deleted or self._lost == {} or not (k.root or k.cluster == LOST_CLUSTER):
            return []
        lost = self.lost_directories()
        if not lost:
            return []
        if k.root:
            return [Entry(name=LOST_DIR, kind=DIR, found_by="scan",
                          key=ExfatKey(LOST_CLUSTER, 0, 0, False),
                          note="not on the volume: lost directories found by scanning")]
        return [e.copy() for e in lost]
