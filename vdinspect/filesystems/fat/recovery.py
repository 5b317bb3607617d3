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


#: characters a long name may hold that a short name may not: the basis name has "_"
LOSSY_CHARS = frozenset("+,;=[]")


def _fits(short: bytes, text: str) -> bool:
    """Whether short-name bytes are ``text`` as the basis-name rule writes it: upper case,
    a character no short name holds as "_", any other non-ASCII one as an OEM code page
    byte (or "_" where the code page has none)."""
    if len(short) != len(text):
        return False
    for b, c in zip(short, text):
        if c >= "\x80":
            if b < 0x80 and b != 0x5F:
                return False
        elif b != (0x5F if c in LOSSY_CHARS or c < " " else ord(c.upper())):
            return False
    return True


def short_fits_long(short: bytes, long_name: str) -> bool:
    """Whether an 11-byte short name can be the one made from ``long_name`` by the basis-name
    rule of the FAT specification (fatgen103 "Basis-Name Generation"; Linux and mtools
    follow it): spaces and leading periods removed, the extension after the last period,
    upper case; the base cut with a numeric tail (``~N``; Windows may keep only two
    characters and a hash in hex before it) or whole when it fits in 8 characters.

    A deleted entry's first byte is lost, so its long-name slots' checksum always fits
    some first byte: this is what keeps the long name of another file off it."""
    name = long_name.replace(" ", "").lstrip(".")
    base, dot, ext = name.rpartition(".")
    if not dot:
        base, ext = name, ""
    base = base.replace(".", "")
    if not base:
        return True  # nothing to compare with
    sbase, sext = short[:8].rstrip(b" "), short[8:11].rstrip(b" ")
    if not _fits(sext, ext[:3]):
        return False
    if not sbase:
        return False
    prefix, tilde, tail = sbase.rpartition(b"~")
    if not tilde or not tail.isdigit() or not prefix:
        return _fits(sbase, base)
    if _fits(prefix, base[:len(prefix)]):
        return True
    head = min(2, len(base))  # Windows: two characters, then four hex digits of a hash
    return (len(prefix) == head + 4 and _fits(prefix[:head], base[:head])
            and all(c in b"0123456789ABCDEF" for c in prefix[head:]))


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

    def free_for_files(self, start: int, stop: int) -> np.ndarray:
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
