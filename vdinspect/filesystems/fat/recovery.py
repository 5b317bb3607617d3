"""Deleted files on FAT: their lost first name byte, and their clusters, as TSK guesses them.

Deleting a file writes 0xE5 over the first byte of its short name and frees its chain in
the FAT; the directory entry keeps the size and the first cluster. The first byte comes
back from the checksum the long-name entries kept (:func:`lfn_first_byte`); the content is
taken, as The Sleuth Kit does, to be ``size`` bytes on the free clusters from the first
one on, skipping clusters that are allocated now (:func:`~.clusters.take_free`).
"""

from __future__ import annotations

import numpy as np

from ..base import Entry
from .clusters import take_free

#: bytes a short name may hold (fatgen103), upper case; 0x80.. are OEM code page letters
SHORT_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'()-@^_`{}~") | set(
    range(0x80, 0x100)
)


#: bytes a short name may never hold (fatgen103): control codes and these punctuation marks
NOT_IN_SHORT_NAMES = frozenset(range(0x20)) | frozenset(b'"*+,./:;<=>?[\\]|')
RESERVED_ATTR_BITS = 0xC0  # DIR_Attr bits no entry sets


def lfn_first_byte(short: bytes, checksum: int) -> int:
    """The first byte a short name must have for its checksum to be ``checksum``.

    Each checksum step (rotate right, add a byte) can be undone, so the deleted entry's
    lost first byte follows from the checksum its long-name entries kept.
    """
    s = checksum
    for c in reversed(short[1:]):
        t = (s - c) & 0xFF
        s = ((t << 1) | (t >> 7)) & 0xFF
    return s


class RecoveryMixin:
    """Deleted-file questions of :class:`~.filesystem.FatFileSystem` (mixed into it)."""

    def is_free(self, c: int) -> bool:
        """Whether cluster ``c`` exists and is free in the active FAT."""
        return 2 <= c <= self.max_cluster and self.fat.get(c) == 0

    def can_list_deleted_dir(self, entry: Entry) -> bool:
        return self.is_free(entry.key.cluster)

    def not_an_entry(self, name11: bytes, attr: int, first: int, size: int) -> str | None:
        """Why the bytes of a deleted slot are no directory entry (None if they may be).

        A slot a deletion left, or a slot of a deleted folder's cluster, may hold anything
        since (a long-name piece, file data): such bytes are not listed as files. A real
        entry has no reserved attribute bits and no forbidden name byte, names a cluster
        of the volume, and is not larger than the volume.
        """
        if attr & RESERVED_ATTR_BITS:
            return "reserved attribute bits set"
        if any(b in NOT_IN_SHORT_NAMES for b in name11[1:]):
            return "a byte no short name holds"
        if first == 1 or first > self.max_cluster:
            return f"first cluster {first} is not on the volume"
        if size > self.clusters * self.cluster_size:
            return f"{size} bytes is more than the volume holds"
        return None

    #: free clusters known to hold a deleted folder's entries (found by .scan): sorted
    #: numpy array; a deleted file's guessed clusters skip them
    dir_clusters = None

    def free_for_files(self, start: int, stop: int):
        """True where clusters [start, stop) are free and hold no deleted folder's entries:
        where a deleted file's data may be."""
        m = self.fat.free_mask(start, stop)
        dc = self.dir_clusters
        if dc is not None and len(dc):
            lo, hi = np.searchsorted(dc, [start, stop])
            m[dc[lo:hi] - start] = False
        return m

    def recoverable(self, first: int, size: int) -> bool:
        """Whether a deleted file of ``size`` bytes from cluster ``first`` can be read back."""
        if size == 0:
            return True
        return self.deleted_runs(first, -(-size // self.cluster_size)) is not None

    def deleted_runs(self, first: int, needed: int) -> list[tuple[int, int]] | None:
        """The cluster runs of a deleted file's ``needed`` clusters; None if in use again
        (or its first cluster holds a deleted folder's entries)."""
        if not 2 <= first <= self.max_cluster or not self.free_for_files(first, first + 1)[0]:
            return None
        return take_free(self.free_for_files, first, needed, self.max_cluster)
